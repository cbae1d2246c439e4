//! Telemetry: each thing that happens in the pipeline is a small type in `events` that writes
//! its log line and moves its metrics together (`Telemetry::emit`), so telemetry cannot drift
//! from behaviour. `metrics` names every metric once; `health` answers `/healthz` and
//! `/readyz`. Figures are computed in the core (`domain::gauges`); telemetry only shows them.
//!
//! Labels are bounded: topics, partitions, event types, rejection kinds, months held, and
//! department and category codes from the label registry (others count as `unknown`); never
//! ids or payloads.
//!
//! Counts of what a batch did are held back until its transaction commits, so an aborted
//! batch, which is read again, is not counted twice.

mod events;
mod health;
mod metrics;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::Registry;

pub(crate) use events::*;
pub(crate) use health::{Health, Liveness};
use metrics::Metrics;

/// Something that happened, told once: its log line and its metrics.
pub(crate) trait InternalEvent {
    fn emit(self, telemetry: &Telemetry);
}

#[derive(Clone)]
pub struct Telemetry {
    pub registry: Registry,
    metrics: Arc<Metrics>,
    pending: Arc<Mutex<Pending>>,
    health: Arc<Health>,
}

/// What a transaction did, counted once it commits.
#[derive(Default)]
pub(crate) struct Pending {
    /// (topic, event type) -> events: a few rows, looked up per event without allocating.
    events: Vec<(String, &'static str, u64)>,
    rejected: HashMap<&'static str, u64>,
    duplicates: u64,
    /// Event type -> events that changed no figure.
    redundant: Vec<(&'static str, u64)>,
    processed: u64,
    /// Events' occurred_at and their input messages' Kafka timestamps (ms), for the latency
    /// histograms, measured at the commit.
    occurred: Vec<i64>,
    appended: Vec<i64>,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        let registry = Registry::new();
        Telemetry {
            metrics: Arc::new(Metrics::new(&registry)),
            registry,
            pending: Arc::default(),
            health: Arc::new(Health::default()),
        }
    }
}

impl Telemetry {
    pub(crate) fn emit(&self, event: impl InternalEvent) {
        event.emit(self);
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the open transaction did, set apart as its commit starts: the next transaction's
    /// work begins before that commit ends.
    pub(crate) fn seal_transaction(&self) -> Pending {
        std::mem::take(&mut *self.pending())
    }

    /// Forgets what the open transaction did: it will be done again from the last commit.
    pub(crate) fn discard_uncommitted(&self) {
        *self.pending() = Pending::default();
    }

    pub(crate) fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// From now on `/healthz` fails when the pipeline loop shows no progress for `stalled_after`.
    pub(crate) fn watch_progress(&self, stalled_after: Duration) {
        self.health.stalled_after.store(stalled_after.as_millis().max(1) as u64, Ordering::Relaxed);
        self.progress();
    }

    /// The pipeline loop is moving (it started a life, waits out a backoff, ...).
    pub fn progress(&self) {
        self.health.progressed_at(Instant::now());
    }

    /// Whether this instance has its share of the work and its state restored.
    pub fn ready(&self, ready: bool) {
        self.health.ready.store(ready, Ordering::Relaxed);
        self.health.kafka_ok.store(ready, Ordering::Relaxed);
    }

    /// Input messages ingested and committed so far.
    pub fn messages_processed(&self) -> u64 {
        self.metrics.processed.get()
    }

    pub(crate) fn render(&self) -> String {
        self.metrics.ready.set(i64::from(self.health.is_ready()));
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}
