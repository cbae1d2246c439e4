//! What can happen in the pipeline, each as one function that writes the log line and moves
//! the metric together, so telemetry cannot drift from behaviour. Labels are bounded: topics,
//! partitions, event types, rejection kinds, months held, and department and category codes
//! from the label registry (others count as `unknown`); never ids or payloads.
//!
//! Counts of what a batch did are held back until its transaction commits, so an aborted
//! batch, which is read again, is not counted twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::domain::event::Rejection;
use crate::domain::figures::{Counts, Figures, Tally};
use crate::domain::month::Month;
use crate::labels::LabelRegistry;

#[derive(Clone)]
pub struct Telemetry {
    pub registry: Registry,
    labels: Arc<LabelRegistry>,
    pending: Arc<Mutex<Pending>>,
    events: IntCounterVec,
    rejected: IntCounterVec,
    duplicates: IntCounter,
    processed: IntCounter,
    latency: HistogramVec,
    snapshots_published: IntCounter,
    publish_latency: Histogram,
    transactions: IntCounterVec,
    restarts: IntCounter,
    consumers_recreated: IntCounterVec,
    producers_abandoned: IntCounter,
    calls_blocked: IntGauge,
    partitions_stopped: IntGaugeVec,
    /// The (topic, partition) label pairs `partitions_stopped` shows at 1.
    stopped: Arc<Mutex<std::collections::BTreeSet<(String, i32)>>>,
    polls: IntCounter,
    rebalances: IntCounter,
    offset_resets: IntCounter,
    month_cases: IntGaugeVec,
    month_channel: IntGaugeVec,
    month_category: IntGaugeVec,
    month_department: IntGaugeVec,
    department_open: IntGaugeVec,
    department_overdue: IntGaugeVec,
    month_closed: IntGaugeVec,
    snapshot_closed: IntGaugeVec,
    snapshot_revision: IntGaugeVec,
    cases_held: IntGauge,
    cases_waiting: IntGauge,
    state_bytes: IntGauge,
    watermark: IntGauge,
    lag: IntGaugeVec,
    ready: IntGauge,
    health: Arc<Health>,
}

/// What a transaction did, counted once it commits.
#[derive(Default)]
pub(crate) struct Pending {
    /// (topic, event type) -> events: a few rows, looked up per event without allocating.
    events: Vec<(String, &'static str, u64)>,
    rejected: HashMap<&'static str, u64>,
    duplicates: u64,
    processed: u64,
    /// Events' occurred_at and their input messages' Kafka timestamps (ms), for the latency
    /// histograms, measured at the commit.
    occurred: Vec<i64>,
    appended: Vec<i64>,
}

/// Liveness and readiness as `/healthz` and `/readyz` report them.
pub(crate) struct Health {
    ready: AtomicBool,
    kafka_ok: AtomicBool,
    /// The pipeline has ended: nothing is counted any more.
    ended: AtomicBool,
    /// When the pipeline loop last showed progress, in milliseconds since `born`, plus one
    /// (0: not yet started, not watched).
    progress: AtomicU64,
    /// How long without progress makes the loop stalled, in milliseconds (0: not watched).
    stalled_after: AtomicU64,
    born: Instant,
}

/// What `/healthz` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    Alive,
    /// The pipeline returned or panicked: the process must exit.
    Ended,
    /// The pipeline loop has not moved (not even an empty poll) for this long.
    Stalled(Duration),
}

impl Default for Health {
    fn default() -> Health {
        Health {
            ready: AtomicBool::new(false),
            kafka_ok: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            stalled_after: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
}

impl Health {
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self.kafka_ok.load(Ordering::Relaxed)
            && self.liveness() == Liveness::Alive
    }

    pub fn liveness(&self) -> Liveness {
        self.liveness_at(Instant::now())
    }

    fn liveness_at(&self, now: Instant) -> Liveness {
        if self.ended.load(Ordering::Relaxed) {
            return Liveness::Ended;
        }
        let (progress, stalled_after) =
            (self.progress.load(Ordering::Relaxed), self.stalled_after.load(Ordering::Relaxed));
        if progress == 0 || stalled_after == 0 {
            return Liveness::Alive;
        }
        let since = now.saturating_duration_since(self.born + Duration::from_millis(progress - 1));
        if since > Duration::from_millis(stalled_after) { Liveness::Stalled(since) } else { Liveness::Alive }
    }

    fn progressed_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.born).as_millis() as u64 + 1;
        self.progress.store(ms, Ordering::Relaxed);
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, metric: T) -> T {
    r.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(r, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

/// Seconds, from 10 ms to a day: replays of old months land in the top buckets.
const LATENCY_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0];

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry::new(LabelRegistry::default())
    }
}

impl Telemetry {
    pub fn new(labels: LabelRegistry) -> Telemetry {
        let r = Registry::new();
        let t = Telemetry {
            labels: Arc::new(labels),
            pending: Arc::default(),
            events: counter_vec(
                &r,
                "hotline_events_total",
                "Case events counted, by input topic and event type.",
                &["topic", "type"],
            ),
            rejected: counter_vec(
                &r,
                "hotline_events_rejected_total",
                "Messages sent to the dead letters, by reason.",
                &["reason"],
            ),
            duplicates: counter(&r, "hotline_events_duplicate_total", "Events whose event_id was already applied."),
            processed: counter(
                &r,
                "hotline_messages_processed_total",
                "Input messages ingested (routed to counting or dead-lettered) and committed.",
            ),
            latency: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "hotline_event_latency_seconds",
                        "From an event's occurred_at, or its input message's Kafka timestamp, to the commit of the \
                         transaction that counted it.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["from"],
                )
                .expect("valid metric"),
            ),
            snapshots_published: counter(
                &r,
                "hotline_snapshots_published_total",
                "Snapshot revisions committed to the snapshots topic.",
            ),
            publish_latency: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "hotline_snapshot_publish_latency_seconds",
                        "From the partial that changed a month to the commit of its new revision.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            transactions: counter_vec(
                &r,
                "hotline_transactions_total",
                "Kafka transactions, by outcome (committed, aborted).",
                &["outcome"],
            ),
            restarts: counter(
                &r,
                "hotline_pipeline_restarts_total",
                "Times the pipeline started over from the last commit after a failure.",
            ),
            consumers_recreated: counter_vec(
                &r,
                "hotline_consumer_recreated_total",
                "Kafka consumers failed for good and replaced by a new one, by the error that failed them.",
                &["reason"],
            ),
            producers_abandoned: counter(
                &r,
                "hotline_producers_abandoned_total",
                "Transactional producers left behind because one of their calls did not return in time (the next \
                 one, with the same transactional id, fences them).",
            ),
            calls_blocked: gauge(
                &r,
                "hotline_transaction_calls_blocked",
                "Calls of abandoned transactional producers that have still not returned.",
            ),
            partitions_stopped: gauge_vec(
                &r,
                "hotline_partitions_stopped",
                "1 for a partition stopped before an internal record this build cannot read, by that record's topic and \
                 partition.",
                &["topic", "partition"],
            ),
            polls: counter(
                &r,
                "hotline_polls_total",
                "Polls of the Kafka consumer by the pipeline loop, empty ones included: it stands still only when \
                 the loop does.",
            ),
            rebalances: counter(
                &r,
                "hotline_rebalances_total",
                "Times the consumer group moved partitions to or from this instance.",
            ),
            offset_resets: counter(
                &r,
                "hotline_offset_resets_total",
                "Times a partition's position was gone from the broker (deleted by retention before it was read) \
                 and consuming restarted at the earliest offset: input was lost.",
            ),
            month_cases: gauge_vec(
                &r,
                "hotline_month_cases",
                "Cases of each month held, by status (received, closed, in_progress).",
                &["month", "status"],
            ),
            month_channel: gauge_vec(
                &r,
                "hotline_month_channel_cases",
                "Cases of the running and previous month by channel and status.",
                &["month", "channel", "status"],
            ),
            month_category: gauge_vec(
                &r,
                "hotline_month_category_cases",
                "Cases of the running and previous month by category and status.",
                &["month", "category", "status"],
            ),
            month_department: gauge_vec(
                &r,
                "hotline_month_department_cases",
                "Cases of the running and previous month by department: received (assigned), closed, in_progress.",
                &["month", "department", "status"],
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
            month_closed: gauge_vec(
                &r,
                "hotline_month_closed",
                "1 once event time has passed the month's end plus the grace period.",
                &["month"],
            ),
            snapshot_closed: gauge_vec(
                &r,
                "hotline_snapshot_closed",
                "1 once the month's latest published snapshot is closed.",
                &["month"],
            ),
            snapshot_revision: gauge_vec(
                &r,
                "hotline_snapshot_revision",
                "Revision of the month's latest published snapshot.",
                &["month"],
            ),
            cases_held: gauge(&r, "hotline_cases_held", "Case records this instance's counting partitions hold."),
            cases_waiting: gauge(
                &r,
                "hotline_cases_waiting_for_created",
                "Cases with events but no created event yet.",
            ),
            state_bytes: gauge(&r, "hotline_state_bytes", "Estimated bytes of the case records held in memory."),
            watermark: gauge(&r, "hotline_watermark_seconds", "Event-time watermark, Unix seconds."),
            lag: gauge_vec(
                &r,
                "hotline_consumer_lag_messages",
                "Messages not yet consumed, per assigned partition (librdkafka statistics).",
                &["topic", "partition"],
            ),
            ready: gauge(&r, "hotline_ready", "1 while /readyz answers 200."),
            health: Arc::new(Health::default()),
            stopped: Arc::default(),
            registry: r,
        };
        // Counters start at zero, so the first abort or dead letter shows in increase().
        t.transactions.with_label_values(&["committed"]);
        t.transactions.with_label_values(&["aborted"]);
        for kind in Rejection::KINDS {
            t.rejected.with_label_values(&[kind]);
        }
        t
    }

    pub(crate) fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An input message was ingested: routed to its counting partition or dead-lettered.
    pub(crate) fn message_ingested(&self) {
        self.pending().processed += 1;
    }

    /// An event was counted; `kafka_timestamp` is its input message's (milliseconds).
    pub(crate) fn event_counted(
        &self,
        topic: &str,
        event_type: &'static str,
        occurred_at: Timestamp,
        kafka_timestamp: Option<i64>,
    ) {
        let mut p = self.pending();
        match p.events.iter_mut().find(|(t, e, _)| *e == event_type && t == topic) {
            Some((_, _, n)) => *n += 1,
            None => p.events.push((topic.to_owned(), event_type, 1)),
        }
        p.occurred.push(occurred_at.as_millisecond());
        if let Some(ms) = kafka_timestamp {
            p.appended.push(ms);
        }
    }

    pub(crate) fn event_duplicate(&self) {
        self.pending().duplicates += 1;
    }

    pub(crate) fn event_rejected(&self, topic: &str, partition: i32, offset: i64, rejection: &Rejection) {
        tracing::warn!(topic, partition, offset, reason = rejection.kind(), detail = %rejection, "message sent to the dead letters");
        *self.pending().rejected.entry(rejection.kind()).or_default() += 1;
    }

    /// What the open transaction did, set apart as its commit starts: the next transaction's
    /// work begins before that commit ends.
    pub(crate) fn seal_transaction(&self) -> Pending {
        std::mem::take(&mut *self.pending())
    }

    /// A transaction committed: what it did (`sealed`) counts now.
    pub(crate) fn transaction_committed(&self, sealed: Pending, snapshots: usize, publish_latencies: &[f64]) {
        tracing::debug!(snapshots, "transaction committed");
        self.transactions.with_label_values(&["committed"]).inc();
        self.snapshots_published.inc_by(snapshots as u64);
        for l in publish_latencies {
            self.publish_latency.observe(*l);
        }
        let p = sealed;
        for (topic, kind, n) in p.events {
            self.events.with_label_values(&[&topic, kind]).inc_by(n);
        }
        for (reason, n) in p.rejected {
            self.rejected.with_label_values(&[reason]).inc_by(n);
        }
        self.duplicates.inc_by(p.duplicates);
        self.processed.inc_by(p.processed);
        // Until the commit made the counts visible.
        let now = Timestamp::now().as_millisecond();
        for (from, times) in [("occurred_at", p.occurred), ("kafka_timestamp", p.appended)] {
            let histogram = self.latency.with_label_values(&[from]);
            for ms in times {
                histogram.observe((now - ms).max(0) as f64 / 1000.0);
            }
        }
    }

    pub(crate) fn transaction_aborted(&self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "transaction could not commit; aborting it");
        self.transactions.with_label_values(&["aborted"]).inc();
        self.discard_uncommitted();
    }

    /// Forgets what the open transaction did: it will be done again from the last commit.
    pub(crate) fn discard_uncommitted(&self) {
        *self.pending() = Pending::default();
    }

    /// The pipeline drops its in-memory state and starts over from the last commit.
    pub(crate) fn restarting(&self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "restarting from the last committed point");
        self.restarts.inc();
    }

    /// A consumer failed for good (`reason`, a librdkafka error name) and a new one takes its
    /// place after `wait`.
    pub(crate) fn consumer_recreated(&self, reason: &str, error: &dyn std::fmt::Display, wait: Duration) {
        tracing::warn!(%error, reason, ?wait, "the Kafka consumer failed for good; a new one takes its place");
        self.consumers_recreated.with_label_values(&[reason]).inc();
    }

    /// A transactional call (`what`) has not returned `after` its deadline: its producer is left
    /// to the thread that waits in it.
    pub(crate) fn producer_abandoned(&self, what: &str, after: Duration) {
        tracing::error!(
            call = what,
            ?after,
            "a Kafka transactional call did not return in time; its producer is abandoned"
        );
        self.producers_abandoned.inc();
        self.calls_blocked.inc();
    }

    /// An abandoned producer's call returned at last.
    pub(crate) fn abandoned_call_returned(&self) {
        self.calls_blocked.dec();
    }

    /// A record this build cannot read (`offset` of `topic`'s `partition`): the partition it
    /// holds up stops before it for the rest of this life, which goes on with the others.
    pub(crate) fn partition_stopped(&self, topic: &str, partition: i32, offset: i64, why: &crate::records::Unreadable) {
        tracing::error!(
            topic,
            partition,
            offset,
            reason = why.kind(),
            error = %why,
            "an internal record this build cannot read (written by a newer version of hotline?): its partition \
             stops before it until a build that reads it takes over"
        );
        self.partitions_stopped.with_label_values(&[topic, &partition.to_string()]).set(1);
        self.stopped.lock().unwrap_or_else(|e| e.into_inner()).insert((topic.to_owned(), partition));
    }

    /// The partitions shown stopped, which a new life tries again.
    pub(crate) fn stopped_partitions(&self) -> std::collections::BTreeSet<(String, i32)> {
        self.stopped.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A partition shown stopped got past its record (read, restored, or no longer this
    /// instance's).
    pub(crate) fn partition_resumed(&self, topic: &str, partition: i32) {
        if self.stopped.lock().unwrap_or_else(|e| e.into_inner()).remove(&(topic.to_owned(), partition)) {
            let _ = self.partitions_stopped.remove_label_values(&[topic, &partition.to_string()]);
        }
    }

    /// Calls of abandoned producers still blocked.
    pub(crate) fn calls_blocked(&self) -> i64 {
        self.calls_blocked.get()
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

    /// The pipeline loop polled the consumer, whether it got anything or not. (Progress is
    /// told once per batch: a batch lasts at most one commit interval.)
    pub fn polled(&self) {
        self.polls.inc();
    }

    /// The pipeline ended, `stopped` when asked to. From now on `/healthz` and `/readyz` fail.
    pub(crate) fn pipeline_ended(&self, stopped: bool, error: Option<&anyhow::Error>) {
        self.health.ended.store(true, Ordering::Relaxed);
        self.health.ready.store(false, Ordering::Relaxed);
        match error {
            Some(error) => tracing::error!(error = %format!("{error:#}"), "the pipeline ended"),
            None if !stopped => tracing::error!("the pipeline ended though no stop was asked for"),
            None => tracing::info!("the pipeline stopped"),
        }
    }

    /// The consumer group moved partitions; the pipeline restores state for its new share.
    pub(crate) fn rebalanced(&self) {
        tracing::info!("partitions reassigned; restoring state for this instance's share");
        self.rebalances.inc();
    }

    /// The consumer's position was deleted by retention before it was read: the messages in
    /// between are lost to the counts. Never silent.
    pub(crate) fn offset_reset(&self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "input deleted before it was read; consuming resumes at the earliest offset kept");
        self.offset_resets.inc();
    }

    pub fn ready(&self, ready: bool) {
        self.health.ready.store(ready, Ordering::Relaxed);
        self.health.kafka_ok.store(ready, Ordering::Relaxed);
    }

    pub(crate) fn kafka_unavailable(&self, error: &dyn std::fmt::Display) {
        if self.health.kafka_ok.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "Kafka is unavailable; waiting for it");
        }
    }

    pub(crate) fn kafka_available(&self) {
        if !self.health.kafka_ok.swap(true, Ordering::Relaxed) {
            tracing::info!("Kafka is reachable again");
        }
    }

    /// Consumer lag per assigned partition.
    pub(crate) fn consumer_lag(&self, lags: impl IntoIterator<Item = (String, i32, i64)>) {
        self.lag.reset();
        for (topic, partition, lag) in lags {
            self.lag.with_label_values(&[&topic, &partition.to_string()]).set(lag);
        }
    }

    /// Refreshes the gauges of the cases this instance's counting partitions hold.
    pub fn cases_held(&self, held: usize, waiting_for_created: usize, bytes: usize) {
        self.cases_held.set(held as i64);
        self.cases_waiting.set(waiting_for_created as i64);
        self.state_bytes.set(bytes as i64);
    }

    /// Refreshes the city's gauges from the publisher's sums. Only the publishing instance has
    /// them; the others show none, so sums over instances stay right.
    pub(crate) fn city_changed<'a>(&self, city: Option<City<'a>>) {
        for g in [
            &self.month_cases,
            &self.month_channel,
            &self.month_category,
            &self.month_department,
            &self.department_open,
            &self.department_overdue,
            &self.month_closed,
            &self.snapshot_closed,
            &self.snapshot_revision,
        ] {
            g.reset();
        }
        let Some(city) = city else { return };
        let as_of = city.watermark.unwrap_or(Timestamp::MIN);
        if let Some(w) = city.watermark {
            self.watermark.set(w.as_second());
        }
        let running = city.watermark.map(|w| Month::containing(w, &city.zone));
        let mut open = BTreeMap::<String, (i64, i64)>::new();
        for (month, tally, closed) in city.months {
            let f = tally.figures(as_of);
            let m = month.to_string();
            let totals = &f.totals;
            let counts = Counts { received: totals.received, closed: totals.closed, in_progress: totals.in_progress };
            set_counts(&self.month_cases, &[&m], &counts);
            if running.is_some_and(|r| month == r || month == r.months_before(1)) {
                self.month_breakdown(&m, &f);
            }
            for (d, figures) in &f.by_department {
                let e = open.entry(self.labels.department(d).to_owned()).or_default();
                e.0 += figures.in_progress as i64;
                e.1 += figures.overdue as i64;
            }
            self.month_closed.with_label_values(&[&m]).set(i64::from(closed));
        }
        for (d, (o, od)) in open {
            self.department_open.with_label_values(&[&d]).set(o);
            self.department_overdue.with_label_values(&[&d]).set(od);
        }
        for (month, revision, closed) in city.published {
            let m = month.to_string();
            self.snapshot_revision.with_label_values(&[&m]).set(revision as i64);
            self.snapshot_closed.with_label_values(&[&m]).set(i64::from(closed));
        }
    }

    fn month_breakdown(&self, m: &str, f: &Figures) {
        for (channel, c) in &f.by_channel {
            set_counts(&self.month_channel, &[m, channel], c);
        }
        let mut categories = BTreeMap::<&str, Counts>::new();
        for (category, c) in &f.by_category {
            let sum = categories.entry(self.labels.category(category)).or_default();
            sum.received += c.received;
            sum.closed += c.closed;
            sum.in_progress += c.in_progress;
        }
        for (category, c) in categories {
            set_counts(&self.month_category, &[m, category], &c);
        }
        let mut departments = BTreeMap::<&str, Counts>::new();
        for (department, d) in &f.by_department {
            let sum = departments.entry(self.labels.department(department)).or_default();
            sum.received += d.assigned;
            sum.closed += d.closed_on_time + d.closed_late;
            sum.in_progress += d.in_progress;
        }
        for (department, c) in departments {
            set_counts(&self.month_department, &[m, department], &c);
        }
    }

    /// Input messages ingested and committed so far.
    pub fn messages_processed(&self) -> u64 {
        self.processed.get()
    }

    pub(crate) fn render(&self) -> String {
        self.ready.set(i64::from(self.health.is_ready()));
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

fn set_counts(g: &IntGaugeVec, labels: &[&str], c: &Counts) {
    for (status, n) in [("received", c.received), ("closed", c.closed), ("in_progress", c.in_progress)] {
        let mut values = labels.to_vec();
        values.push(status);
        g.with_label_values(&values).set(n as i64);
    }
}

/// What the publishing instance knows of the city.
pub(crate) struct City<'a> {
    /// Each month's summed tally, and whether event time has closed it.
    pub months: Vec<(Month, &'a Tally, bool)>,
    pub watermark: Option<Timestamp>,
    pub zone: jiff::tz::TimeZone,
    /// Per month: the latest published revision and whether it is closed.
    pub published: Vec<(Month, u64, bool)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::event::{CaseEvent, Change, Channel, Created};
    use crate::domain::ledger::Ledger;

    #[test]
    fn codes_outside_the_registry_are_counted_as_unknown() {
        let zone = crate::domain::fixtures::zone();
        let mut ledger = Ledger::new(crate::domain::fixtures::rules());
        for (i, (department, category)) in
            [("tiexi_district", "water"), ("13912345678", "zhang_san"), ("typo_bureau", "water")].iter().enumerate()
        {
            let created = Created {
                channel: Channel::Hotline,
                category: (*category).into(),
                board: None,
                request_kind: None,
                department: Some((*department).into()),
                due_at: None,
            };
            let event = CaseEvent {
                event_id: format!("e{i}"),
                case_id: format!("c{i}"),
                occurred_at: "2022-04-10T00:00:00Z".parse().unwrap(),
                change: Change::Created(created),
            };
            ledger.apply(&event).unwrap();
        }
        let t = Telemetry::default();
        let months: Vec<(Month, &Tally, bool)> = ledger.months().map(|(m, tally)| (m, tally, false)).collect();
        let watermark = Some("2022-04-20T00:00:00Z".parse().unwrap());
        t.city_changed(Some(City { months, watermark, zone, published: vec![] }));
        let text = t.render();
        assert!(text.contains(r#"hotline_department_open_cases{department="unknown"} 2"#), "{text}");
        assert!(text.contains(r#"hotline_department_open_cases{department="tiexi_district"} 1"#));
        assert!(text.contains(r#"category="unknown",month="2022-04",status="received"} 1"#), "{text}");
        assert!(!text.contains("13912345678") && !text.contains("zhang_san") && !text.contains("typo_bureau"));
    }

    #[test]
    fn health_fails_once_the_pipeline_ends_or_stalls() {
        let h = Health::default();
        let t0 = h.born;
        // Not watched before the pipeline starts (it may wait a long time for the brokers).
        assert_eq!(h.liveness_at(t0 + Duration::from_secs(3600)), Liveness::Alive);
        h.stalled_after.store(120_000, Ordering::Relaxed);
        h.progressed_at(t0 + Duration::from_secs(10));
        assert_eq!(h.liveness_at(t0 + Duration::from_secs(130)), Liveness::Alive);
        assert_eq!(h.liveness_at(t0 + Duration::from_secs(131)), Liveness::Stalled(Duration::from_secs(121)));
        h.progressed_at(t0 + Duration::from_secs(131));
        assert_eq!(h.liveness_at(t0 + Duration::from_secs(132)), Liveness::Alive);

        // Readiness needs a live pipeline as well as Kafka and a restored state.
        h.ready.store(true, Ordering::Relaxed);
        h.kafka_ok.store(true, Ordering::Relaxed);
        h.progressed_at(Instant::now());
        assert!(h.is_ready());
        h.ended.store(true, Ordering::Relaxed);
        assert_eq!(h.liveness(), Liveness::Ended);
        assert!(!h.is_ready());
    }
}
