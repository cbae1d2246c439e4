//! What can happen in the pipeline, each as one function that writes the log line and moves
//! the metric together, so telemetry cannot drift from behaviour. Labels are bounded: topics,
//! event types, rejection kinds, months held and department codes; never ids or payloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::domain::event::Rejection;
use crate::domain::figures::Tally;
use crate::domain::month::Month;

#[derive(Clone)]
pub struct Telemetry {
    pub registry: Registry,
    events: IntCounterVec,
    rejected: IntCounterVec,
    duplicates: IntCounter,
    month_cases: IntGaugeVec,
    department_open: IntGaugeVec,
    department_overdue: IntGaugeVec,
    snapshots_published: IntCounter,
    transactions: IntCounterVec,
    cases_held: IntGauge,
    cases_waiting: IntGauge,
    watermark: IntGauge,
    processed: IntCounter,
    restarts: IntCounter,
    rebalances: IntCounter,
    health: Arc<Health>,
}

/// Liveness and readiness as `/healthz` and `/readyz` report them.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    kafka_ok: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.kafka_ok.load(Ordering::Relaxed)
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let r = Registry::new();
        Telemetry {
            events: counter_vec(
                &r,
                "hotline_events_total",
                "Case events counted, by input topic and event type.",
                &["topic", "type"],
            ),
            rejected: counter_vec(
                &r,
                "hotline_events_rejected_total",
                "Input messages sent to the dead letters, by reason.",
                &["reason"],
            ),
            duplicates: counter(&r, "hotline_events_duplicate_total", "Events whose event_id was already applied."),
            month_cases: gauge_vec(
                &r,
                "hotline_month_cases",
                "Cases of each month held, by status (received, closed, in_progress).",
                &["month", "status"],
            ),
            department_open: gauge_vec(
                &r,
                "hotline_department_open_cases",
                "Open cases each department holds now.",
                &["department"],
            ),
            department_overdue: gauge_vec(
                &r,
                "hotline_department_overdue_cases",
                "Open cases past their deadline at the watermark.",
                &["department"],
            ),
            snapshots_published: counter(
                &r,
                "hotline_snapshots_published_total",
                "Snapshot revisions committed to the snapshots topic.",
            ),
            transactions: counter_vec(
                &r,
                "hotline_transactions_total",
                "Kafka transactions, by outcome (committed, aborted).",
                &["outcome"],
            ),
            cases_held: gauge(&r, "hotline_cases_held", "Case records held in memory."),
            cases_waiting: gauge(
                &r,
                "hotline_cases_waiting_for_created",
                "Cases with events but no created event yet.",
            ),
            watermark: gauge(&r, "hotline_watermark_seconds", "Event-time watermark, Unix seconds."),
            processed: counter(
                &r,
                "hotline_messages_processed_total",
                "Input messages handled: counted, duplicate or rejected.",
            ),
            restarts: counter(
                &r,
                "hotline_pipeline_restarts_total",
                "Times the pipeline started over from the last commit.",
            ),
            rebalances: counter(
                &r,
                "hotline_rebalances_total",
                "Times the consumer group moved partitions to or from this instance.",
            ),
            health: Arc::new(Health::default()),
            registry: r,
        }
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// An input message was ingested: routed to its counting partition or dead-lettered.
    pub fn message_ingested(&self) {
        self.processed.inc();
    }

    pub fn event_counted(&self, topic: &str, event_type: &str) {
        self.events.with_label_values(&[topic, event_type]).inc();
    }

    pub fn event_duplicate(&self) {
        self.duplicates.inc();
    }

    pub fn event_rejected(&self, topic: &str, partition: i32, offset: i64, rejection: &Rejection) {
        tracing::warn!(topic, partition, offset, reason = rejection.kind(), detail = %rejection, "input message sent to the dead letters");
        self.rejected.with_label_values(&[rejection.kind()]).inc();
    }

    pub fn transaction_committed(&self, snapshots: usize) {
        tracing::debug!(snapshots, "transaction committed");
        self.transactions.with_label_values(&["committed"]).inc();
        self.snapshots_published.inc_by(snapshots as u64);
    }

    pub fn transaction_aborted(&self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "transaction could not commit; aborting it");
        self.transactions.with_label_values(&["aborted"]).inc();
    }

    /// The pipeline drops its in-memory state and starts over from the last commit.
    pub fn restarting(&self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "restarting from the last committed point");
        self.restarts.inc();
    }

    pub fn ready(&self, ready: bool) {
        self.health.ready.store(ready, Ordering::Relaxed);
        self.health.kafka_ok.store(ready, Ordering::Relaxed);
    }

    pub fn kafka_unavailable(&self, error: &dyn std::fmt::Display) {
        if self.health.kafka_ok.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "Kafka is unavailable; waiting for it");
        }
    }

    pub fn kafka_available(&self) {
        if !self.health.kafka_ok.swap(true, Ordering::Relaxed) {
            tracing::info!("Kafka is reachable again");
        }
    }

    /// The consumer group moved partitions; the pipeline restores state for its new share.
    pub fn rebalanced(&self) {
        tracing::info!("partitions reassigned; restoring state for this instance's share");
        self.rebalances.inc();
    }

    /// Refreshes the gauges of the cases this instance's counting partitions hold.
    pub fn cases_held(&self, held: usize, waiting_for_created: usize) {
        self.cases_held.set(held as i64);
        self.cases_waiting.set(waiting_for_created as i64);
    }

    /// Refreshes the city's gauges from the publisher's sums (only the instance publishing
    /// has them; the others show none).
    pub fn figures_changed<'a>(
        &self,
        months: impl IntoIterator<Item = (Month, &'a Tally)>,
        watermark: Option<Timestamp>,
    ) {
        let as_of = watermark.unwrap_or(Timestamp::MIN);
        if let Some(w) = watermark {
            self.watermark.set(w.as_second());
        }
        self.month_cases.reset();
        self.department_open.reset();
        self.department_overdue.reset();
        let mut open = std::collections::BTreeMap::<String, (i64, i64)>::new();
        for (month, tally) in months {
            let f = tally.figures(as_of);
            let m = month.to_string();
            self.month_cases.with_label_values(&[&m, "received"]).set(f.totals.received as i64);
            self.month_cases.with_label_values(&[&m, "closed"]).set(f.totals.closed as i64);
            self.month_cases.with_label_values(&[&m, "in_progress"]).set(f.totals.in_progress as i64);
            for (d, figures) in f.by_department {
                let e = open.entry(d).or_default();
                e.0 += figures.in_progress as i64;
                e.1 += figures.overdue as i64;
            }
        }
        for (d, (o, od)) in open {
            self.department_open.with_label_values(&[&d]).set(o);
            self.department_overdue.with_label_values(&[&d]).set(od);
        }
    }

    /// Input messages handled so far: counted, duplicate or rejected.
    pub fn messages_processed(&self) -> u64 {
        self.processed.get()
    }

    pub fn render(&self) -> String {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}
