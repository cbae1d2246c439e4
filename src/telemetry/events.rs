//! What can happen in the pipeline, one type each, in the style of Vector's `internal_events`:
//! `emit` writes the event's log line and moves its metrics, and nothing else does either.
//! The fields are what the log line may show: names of topics and partitions, offsets,
//! bounded kinds and error texts that name fields, never the values of an event.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use prometheus::IntGaugeVec;

use super::{InternalEvent, Pending, Telemetry};
use crate::domain::event::Rejection;
use crate::domain::figures::{Counts, LOOP_FIGURES};
use crate::domain::gauges::CityGauges;
use crate::records::Unreadable;

/// An input message was ingested: routed to its counting partition or dead-lettered.
pub(crate) struct MessageIngested;

impl InternalEvent for MessageIngested {
    fn emit(self, t: &Telemetry) {
        t.pending().processed += 1;
    }
}

/// An event changed its case's figures.
pub(crate) struct EventCounted<'a> {
    pub topic: &'a str,
    pub event_type: &'static str,
    pub occurred_at: Timestamp,
    /// The input message's Kafka timestamp (ms).
    pub kafka_timestamp: Option<i64>,
}

impl InternalEvent for EventCounted<'_> {
    fn emit(self, t: &Telemetry) {
        let mut p = t.pending();
        match p.events.iter_mut().find(|(topic, e, _)| *e == self.event_type && topic == self.topic) {
            Some((_, _, n)) => *n += 1,
            None => p.events.push((self.topic.to_owned(), self.event_type, 1)),
        }
        p.occurred.push(self.occurred_at.as_millisecond());
        if let Some(ms) = self.kafka_timestamp {
            p.appended.push(ms);
        }
    }
}

/// An event whose `event_id` was already applied.
pub(crate) struct EventDuplicate;

impl InternalEvent for EventDuplicate {
    fn emit(self, t: &Telemetry) {
        t.pending().duplicates += 1;
    }
}

/// An event kept for its case that changed no figure (a `closed` of a closed case, ...): a
/// later event may give it effect.
pub(crate) struct EventRedundant {
    pub event_type: &'static str,
}

impl InternalEvent for EventRedundant {
    fn emit(self, t: &Telemetry) {
        let mut p = t.pending();
        match p.redundant.iter_mut().find(|(e, _)| *e == self.event_type) {
            Some((_, n)) => *n += 1,
            None => p.redundant.push((self.event_type, 1)),
        }
    }
}

/// A message went to the dead letters.
pub(crate) struct EventRejected<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub rejection: &'a Rejection,
}

impl InternalEvent for EventRejected<'_> {
    fn emit(self, t: &Telemetry) {
        let EventRejected { topic, partition, offset, rejection } = self;
        tracing::warn!(topic, partition, offset, reason = rejection.kind(), detail = %rejection, "message sent to the dead letters");
        *t.pending().rejected.entry(rejection.kind()).or_default() += 1;
    }
}

/// A transaction committed: what it did (`sealed`, from `Telemetry::seal_transaction`)
/// counts now.
pub(crate) struct TransactionCommitted<'a> {
    pub sealed: Pending,
    pub snapshots: usize,
    /// Seconds from the partial that changed a month to this commit, per snapshot where known.
    pub publish_latencies: &'a [f64],
}

impl InternalEvent for TransactionCommitted<'_> {
    fn emit(self, t: &Telemetry) {
        let m = &t.metrics;
        tracing::debug!(snapshots = self.snapshots, "transaction committed");
        m.transactions.with_label_values(&["committed"]).inc();
        m.snapshots_published.inc_by(self.snapshots as u64);
        for l in self.publish_latencies {
            m.publish_latency.observe(*l);
        }
        let p = self.sealed;
        for (topic, kind, n) in p.events {
            m.events.with_label_values(&[&topic, kind]).inc_by(n);
        }
        for (reason, n) in p.rejected {
            m.rejected.with_label_values(&[reason]).inc_by(n);
        }
        m.duplicates.inc_by(p.duplicates);
        for (kind, n) in p.redundant {
            m.redundant.with_label_values(&[kind]).inc_by(n);
        }
        m.processed.inc_by(p.processed);
        // Until the commit made the counts visible.
        let now = Timestamp::now().as_millisecond();
        for (from, times) in [("occurred_at", p.occurred), ("kafka_timestamp", p.appended)] {
            let histogram = m.latency.with_label_values(&[from]);
            for ms in times {
                histogram.observe((now - ms).max(0) as f64 / 1000.0);
            }
        }
    }
}

/// A transaction could not commit: what it did is forgotten, to be done again.
pub(crate) struct TransactionAborted<'a> {
    pub error: &'a dyn Display,
}

impl InternalEvent for TransactionAborted<'_> {
    fn emit(self, t: &Telemetry) {
        tracing::error!(error = %self.error, "transaction could not commit; aborting it");
        t.metrics.transactions.with_label_values(&["aborted"]).inc();
        t.discard_uncommitted();
    }
}

/// The last commit or the abort of an open transaction failed while a life ended.
pub(crate) struct AbortFailed<'a> {
    pub what: &'static str,
    pub error: &'a dyn Display,
}

impl InternalEvent for AbortFailed<'_> {
    fn emit(self, _: &Telemetry) {
        tracing::warn!(error = %self.error, "{}", self.what);
    }
}

/// The pipeline drops its in-memory state and starts over from the last commit.
pub(crate) struct PipelineRestarting<'a> {
    pub error: &'a dyn Display,
}

impl InternalEvent for PipelineRestarting<'_> {
    fn emit(self, t: &Telemetry) {
        tracing::error!(error = %self.error, "restarting from the last committed point");
        t.metrics.restarts.inc();
    }
}

/// A consumer failed for good (`reason`, a librdkafka error name) and a new one takes its
/// place after `wait`.
pub(crate) struct ConsumerRecreated<'a> {
    pub reason: &'a str,
    pub error: &'a dyn Display,
    pub wait: Duration,
}

impl InternalEvent for ConsumerRecreated<'_> {
    fn emit(self, t: &Telemetry) {
        let ConsumerRecreated { reason, error, wait } = self;
        tracing::warn!(%error, reason, ?wait, "the Kafka consumer failed for good; a new one takes its place");
        t.metrics.consumers_recreated.with_label_values(&[reason]).inc();
    }
}

/// A transactional call (`call`) has not returned `after` its deadline: its producer is left
/// to the thread that waits in it.
pub(crate) struct ProducerAbandoned<'a> {
    pub call: &'a str,
    pub after: Duration,
}

impl InternalEvent for ProducerAbandoned<'_> {
    fn emit(self, t: &Telemetry) {
        let ProducerAbandoned { call, after } = self;
        tracing::error!(call, ?after, "a Kafka transactional call did not return in time; its producer is abandoned");
        t.metrics.producers_abandoned.inc();
        t.metrics.calls_blocked.inc();
    }
}

/// An abandoned producer's call returned at last.
pub(crate) struct AbandonedCallReturned;

impl InternalEvent for AbandonedCallReturned {
    fn emit(self, t: &Telemetry) {
        t.metrics.calls_blocked.dec();
    }
}

/// A record this build cannot read (`offset` of `topic`'s `partition`): the partition it
/// holds up stops before it for the rest of this life, which goes on with the others.
pub(crate) struct PartitionStopped<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub why: &'a Unreadable,
}

impl InternalEvent for PartitionStopped<'_> {
    fn emit(self, t: &Telemetry) {
        let PartitionStopped { topic, partition, offset, why } = self;
        tracing::error!(
            topic,
            partition,
            offset,
            reason = why.kind(),
            error = %why,
            "an internal record this build cannot read (written by a newer version of hotline?): its partition \
             stops before it until a build that reads it takes over"
        );
        t.metrics.partitions_stopped.with_label_values(&[topic, &partition.to_string()]).set(1);
    }
}

/// A partition shown stopped got past its record (read, restored, or no longer this
/// instance's).
pub(crate) struct PartitionResumed<'a> {
    pub topic: &'a str,
    pub partition: i32,
}

impl InternalEvent for PartitionResumed<'_> {
    fn emit(self, t: &Telemetry) {
        let PartitionResumed { topic, partition } = self;
        tracing::info!(topic, partition, "a stopped partition goes on");
        let _ = t.metrics.partitions_stopped.remove_label_values(&[topic, &partition.to_string()]);
    }
}

/// The pipeline loop polled the consumer, whether it got anything or not. (Progress is told
/// once per batch: a batch lasts at most one commit interval.)
pub(crate) struct Polled;

impl InternalEvent for Polled {
    fn emit(self, t: &Telemetry) {
        t.metrics.polls.inc();
    }
}

/// The pipeline started: its group and transactional id.
pub(crate) struct PipelineStarting<'a> {
    pub group_id: &'a str,
    pub transactional_id: &'a str,
    pub static_membership: bool,
}

impl InternalEvent for PipelineStarting<'_> {
    fn emit(self, _: &Telemetry) {
        let PipelineStarting { group_id, transactional_id, static_membership } = self;
        tracing::info!(group_id, transactional_id, static_membership, "pipeline starting");
    }
}

/// The working-day calendar at start: the last year it covers, and the years the counts may
/// need that it lacks (deadlines in them count by weekends alone, marked provisional).
pub(crate) struct CalendarRead<'a> {
    pub last_year: Option<i16>,
    /// The start of the year after `last_year`, in the office's zone.
    pub covered_until: Option<Timestamp>,
    pub missing: &'a [i16],
    /// Where it was read from; built in when `None`.
    pub file: Option<&'a std::path::Path>,
}

impl InternalEvent for CalendarRead<'_> {
    fn emit(self, t: &Telemetry) {
        let Some(last_year) = self.last_year else { return };
        t.metrics.calendar_last_year.set(i64::from(last_year));
        t.metrics.calendar_covered_until.set(self.covered_until.map_or(0, |at| at.as_second()));
        if !self.missing.is_empty() {
            let file = self.file.map_or("built in or a city's".to_owned(), |p| p.display().to_string());
            tracing::warn!(
                calendar = %file,
                missing = ?self.missing,
                "the working-day calendar lacks years the counts may need: deadlines in them are counted by weekends \
                 alone and the snapshots say so (provisional_deadlines) until the State Council's notice is added \
                 and hotline restarted"
            );
        }
    }
}

/// A month's first revision under rules other than its last revision's: after a restart under
/// new rules, the months whose figures they changed.
pub(crate) struct FiguresChangedByRules<'a> {
    /// The snapshot's key (the month, after its city or `province/`).
    pub key: &'a str,
    pub before: &'a str,
    pub now: &'a str,
}

impl InternalEvent for FiguresChangedByRules<'_> {
    fn emit(self, t: &Telemetry) {
        t.metrics.figures_changed_by_rules.inc();
        tracing::warn!(
            snapshot = self.key,
            rules_before = self.before,
            rules_now = self.now,
            "a month published under other rules has new figures: its revision names the rules now in force"
        );
    }
}

/// The pipeline ended, `stopped` when asked to. From now on `/healthz` and `/readyz` fail.
pub(crate) struct PipelineEnded<'a> {
    pub stopped: bool,
    pub error: Option<&'a anyhow::Error>,
}

impl InternalEvent for PipelineEnded<'_> {
    fn emit(self, t: &Telemetry) {
        t.health.ended.store(true, Ordering::Relaxed);
        t.health.ready.store(false, Ordering::Relaxed);
        match self.error {
            Some(error) => tracing::error!(error = %format!("{error:#}"), "the pipeline ended"),
            None if !self.stopped => tracing::error!("the pipeline ended though no stop was asked for"),
            None => tracing::info!("the pipeline stopped"),
        }
    }
}

/// A stop was asked for and the last transaction has committed.
pub(crate) struct StoppedAfterLastTransaction;

impl InternalEvent for StoppedAfterLastTransaction {
    fn emit(self, _: &Telemetry) {
        tracing::info!("stopped after the last transaction");
    }
}

/// The consumer group moved partitions; the pipeline restores state for its new share.
pub(crate) struct Rebalanced;

impl InternalEvent for Rebalanced {
    fn emit(self, t: &Telemetry) {
        tracing::info!("partitions reassigned; restoring state for this instance's share");
        t.metrics.rebalances.inc();
    }
}

/// A life restored its state: the counting partitions with the offsets they resume from,
/// whether it publishes, and the cases it holds.
pub(crate) struct StateRestored<'a> {
    pub counting_partitions: &'a [(i32, Option<i64>)],
    pub publishing: bool,
    pub cases: usize,
}

impl InternalEvent for StateRestored<'_> {
    fn emit(self, _: &Telemetry) {
        let StateRestored { counting_partitions, publishing, cases } = self;
        tracing::info!(?counting_partitions, publishing, cases, "state restored for this instance's partitions");
    }
}

/// Changelog partitions do not yet show what their committed offsets cover (their
/// transaction markers are not visible yet): they are read again.
pub(crate) struct ChangelogBehind<'a> {
    pub partitions: &'a [i32],
}

impl InternalEvent for ChangelogBehind<'_> {
    fn emit(self, _: &Telemetry) {
        tracing::info!(partitions = ?self.partitions, "the changelog does not yet show the last commit; reading it again");
    }
}

/// Changelog partitions of an earlier version, with committed offsets but no progress
/// record: restored as they are.
pub(crate) struct ChangelogWithoutProgress<'a> {
    pub partitions: &'a [i32],
}

impl InternalEvent for ChangelogWithoutProgress<'_> {
    fn emit(self, _: &Telemetry) {
        tracing::warn!(partitions = ?self.partitions,
            "changelog partitions with committed offsets but no progress record: restored as they are");
    }
}

/// A counting partition let go of the cases of months past the retention; `uncounted` facts
/// of cases whose `created` never came go to the dead letters (`never_created`).
pub(crate) struct CasesEvicted {
    pub partition: i32,
    pub cases: usize,
    pub uncounted: usize,
}

impl InternalEvent for CasesEvicted {
    fn emit(self, t: &Telemetry) {
        let CasesEvicted { partition, cases, uncounted } = self;
        tracing::info!(partition, cases, uncounted, "evicted cases of months past the retention");
        if uncounted > 0 {
            *t.pending().rejected.entry(Rejection::NeverCreated.kind()).or_default() += uncounted as u64;
        }
    }
}

/// A snapshot revision goes into the transaction.
pub(crate) struct SnapshotDue<'a> {
    /// Its key: the month, after its city's code or `province/` but for the default city's.
    pub key: &'a str,
    pub revision: u64,
    pub status: &'static str,
    pub received: u64,
}

impl InternalEvent for SnapshotDue<'_> {
    fn emit(self, _: &Telemetry) {
        let SnapshotDue { key, revision, status, received } = self;
        tracing::info!(snapshot = key, revision, status, received, "publishing snapshot");
    }
}

/// A record of the snapshots topic did not decode: revisions go on from the others.
pub(crate) struct SnapshotUndecodable<'a> {
    pub offset: i64,
    pub error: &'a dyn Display,
}

impl InternalEvent for SnapshotUndecodable<'_> {
    fn emit(self, _: &Telemetry) {
        tracing::warn!(error = %self.error, offset = self.offset, "skipping an undecodable snapshot");
    }
}

/// The consumer's position was deleted by retention before it was read: the messages in
/// between are lost to the counts. Never silent.
pub(crate) struct OffsetReset<'a> {
    pub error: &'a dyn Display,
}

impl InternalEvent for OffsetReset<'_> {
    fn emit(self, t: &Telemetry) {
        tracing::error!(error = %self.error, "input deleted before it was read; consuming resumes at the earliest offset kept");
        t.metrics.offset_resets.inc();
    }
}

/// No broker answers: `/readyz` fails until one does.
pub(crate) struct KafkaUnavailable<'a> {
    pub error: &'a dyn Display,
}

impl InternalEvent for KafkaUnavailable<'_> {
    fn emit(self, t: &Telemetry) {
        if t.health.kafka_ok.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %self.error, "Kafka is unavailable; waiting for it");
        }
    }
}

/// A call to Kafka succeeded again.
pub(crate) struct KafkaAvailable;

impl InternalEvent for KafkaAvailable {
    fn emit(self, t: &Telemetry) {
        if !t.health.kafka_ok.swap(true, Ordering::Relaxed) {
            tracing::info!("Kafka is reachable again");
        }
    }
}

/// Any other error a Kafka client reports (librdkafka retries on its own).
pub(crate) struct KafkaClientError<'a> {
    pub error: &'a dyn Display,
    pub reason: &'a str,
}

impl InternalEvent for KafkaClientError<'_> {
    fn emit(self, _: &Telemetry) {
        tracing::error!(error = %self.error, reason = self.reason, "Kafka client error");
    }
}

/// librdkafka's statistics: messages not yet consumed per assigned partition.
pub(crate) struct ConsumerLagRead<'a> {
    pub lags: &'a HashMap<(String, i32), i64>,
}

impl InternalEvent for ConsumerLagRead<'_> {
    fn emit(self, t: &Telemetry) {
        t.metrics.lag.reset();
        for ((topic, partition), lag) in self.lags {
            t.metrics.lag.with_label_values(&[topic, &partition.to_string()]).set(*lag);
        }
    }
}

/// What this instance's counting partitions hold.
pub(crate) struct StateMeasured {
    pub cases: usize,
    pub waiting_for_created: usize,
    pub bytes: usize,
}

impl InternalEvent for StateMeasured {
    fn emit(self, t: &Telemetry) {
        t.metrics.cases_held.set(self.cases as i64);
        t.metrics.cases_waiting.set(self.waiting_for_created as i64);
        t.metrics.state_bytes.set(self.bytes as i64);
    }
}

/// Each city's figures as the publishing instance reads them, by the `city` label (its
/// division code; empty for the unnamed city of a single-city deployment). `None` on the
/// other instances, which show none, so sums over instances stay right.
pub(crate) struct CitiesRead(pub Option<Vec<(String, CityGauges)>>);

impl InternalEvent for CitiesRead {
    fn emit(self, t: &Telemetry) {
        let m = &t.metrics;
        for g in [
            &m.month_cases,
            &m.month_channel,
            &m.month_category,
            &m.month_department,
            &m.month_department_loop,
            &m.department_open,
            &m.department_overdue,
            &m.month_closed,
            &m.month_codes_folded,
            &m.snapshot_closed,
            &m.snapshot_revision,
        ] {
            g.reset();
        }
        let Some(cities) = self.0 else { return };
        for (code, city) in &cities {
            let code = code.as_str();
            if let Some(w) = city.watermark {
                m.watermark.set(w.as_second());
            }
            for month in &city.months {
                let label = month.month.to_string();
                set_counts(&m.month_cases, &[code, &label], &month.totals);
                m.month_closed.with_label_values(&[code, &label]).set(i64::from(month.closed));
                for (kind, n) in [("department", month.folded.departments), ("category", month.folded.categories)] {
                    m.month_codes_folded.with_label_values(&[code, &label, kind]).set(n as i64);
                }
                let Some(b) = &month.breakdown else { continue };
                for (gauge, rows) in [
                    (&m.month_channel, &b.channels),
                    (&m.month_category, &b.categories),
                    (&m.month_department, &b.departments),
                ] {
                    for (key, counts) in rows {
                        set_counts(gauge, &[code, &label, key], counts);
                    }
                }
                for (department, figures) in &b.office_loop {
                    for (figure, n) in LOOP_FIGURES.iter().zip(figures) {
                        m.month_department_loop.with_label_values(&[code, &label, department, figure]).set(*n as i64);
                    }
                }
            }
            for (department, open) in &city.open {
                m.department_open.with_label_values(&[code, department]).set(open.cases as i64);
                m.department_overdue.with_label_values(&[code, department]).set(open.overdue as i64);
            }
            for (month, revision, closed) in &city.published {
                let label = month.to_string();
                m.snapshot_revision.with_label_values(&[code, &label]).set(*revision as i64);
                m.snapshot_closed.with_label_values(&[code, &label]).set(i64::from(*closed));
            }
        }
    }
}

fn set_counts(g: &IntGaugeVec, labels: &[&str], c: &Counts) {
    for (status, n) in [("received", c.received), ("closed", c.closed), ("in_progress", c.in_progress)] {
        let mut values = labels.to_vec();
        values.push(status);
        g.with_label_values(&values).set(n as i64);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::figures::Folded;
    use crate::domain::gauges::{Breakdown, MonthGauges, Open};

    #[test]
    fn what_a_transaction_did_counts_only_once_it_commits() {
        let t = Telemetry::default();
        let counted = |t: &Telemetry| {
            EventCounted {
                topic: "hotline.cases",
                event_type: "created",
                occurred_at: Timestamp::now(),
                kafka_timestamp: None,
            }
            .emit(t)
        };
        counted(&t);
        t.emit(MessageIngested);
        t.emit(TransactionAborted { error: &"fenced" });
        let sealed = t.seal_transaction();
        t.emit(TransactionCommitted { sealed, snapshots: 0, publish_latencies: &[] });
        assert_eq!(t.messages_processed(), 0, "an aborted batch is read again and must not count twice");

        counted(&t);
        t.emit(MessageIngested);
        let sealed = t.seal_transaction();
        // Work of the next batch, done while the first commits, waits for its own commit.
        counted(&t);
        t.emit(TransactionCommitted { sealed, snapshots: 1, publish_latencies: &[0.5] });
        assert_eq!(t.messages_processed(), 1);
        let text = t.render();
        assert!(text.contains(r#"hotline_events_total{topic="hotline.cases",type="created"} 1"#), "{text}");
        assert!(text.contains(r#"hotline_transactions_total{outcome="aborted"} 1"#), "{text}");
        assert!(text.contains("hotline_snapshots_published_total 1"), "{text}");
    }

    #[test]
    fn the_calendar_tells_its_last_year_and_end() {
        let t = Telemetry::default();
        let covered_until = "2026-12-31T16:00:00Z".parse().unwrap();
        t.emit(CalendarRead {
            last_year: Some(2026),
            covered_until: Some(covered_until),
            missing: &[2027],
            file: None,
        });
        let text = t.render();
        assert!(text.contains("hotline_calendar_last_year 2026"), "{text}");
        assert!(text.contains("hotline_calendar_covered_until_seconds 1798732800"), "{text}");
    }

    #[test]
    fn the_city_shows_what_the_core_read() {
        let t = Telemetry::default();
        let counts = Counts { received: 3, closed: 1, in_progress: 2 };
        let folded = Folded { departments: 1_200, categories: 0 };
        let month = |m: &str, breakdown| MonthGauges {
            month: m.parse().unwrap(),
            totals: counts,
            closed: false,
            folded,
            breakdown,
        };
        let breakdown = Breakdown {
            channels: BTreeMap::from([("hotline".into(), counts)]),
            categories: BTreeMap::from([("unknown".into(), counts)]),
            departments: BTreeMap::from([("tiexi_district".into(), counts)]),
            office_loop: BTreeMap::from([("tiexi_district".into(), [5, 1, 2, 0, 0, 3, 1, 1, 0])]),
        };
        let siping = CityGauges {
            watermark: Some("2022-04-20T00:00:00Z".parse().unwrap()),
            months: vec![month("2022-02", None), month("2022-04", Some(breakdown))],
            open: BTreeMap::from([("tiexi_district".into(), Open { cases: 2, overdue: 1 })]),
            published: vec![("2022-02".parse().unwrap(), 4, true)],
        };
        let yanbian = CityGauges { months: vec![month("2022-04", None)], ..siping.clone() };
        t.emit(CitiesRead(Some(vec![("220300".into(), siping), ("222400".into(), yanbian)])));
        let text = t.render();
        for line in [
            r#"hotline_month_cases{city="220300",month="2022-02",status="in_progress"} 2"#,
            r#"hotline_month_cases{city="222400",month="2022-04",status="received"} 3"#,
            r#"hotline_month_codes_folded{city="220300",kind="department",month="2022-04"} 1200"#,
            r#"hotline_month_codes_folded{city="220300",kind="category",month="2022-04"} 0"#,
            r#"hotline_month_category_cases{category="unknown",city="220300",month="2022-04",status="received"} 3"#,
            r#"hotline_month_department_cases{city="220300",department="tiexi_district",month="2022-04",status="closed"} 1"#,
            r#"hotline_month_channel_cases{channel="hotline",city="220300",month="2022-04",status="received"} 3"#,
            r#"hotline_department_overdue_cases{city="220300",department="tiexi_district"} 1"#,
            r#"hotline_snapshot_revision{city="220300",month="2022-02"} 4"#,
            r#"hotline_watermark_seconds 1650412800"#,
            r#"hotline_month_department_loop{city="220300",department="tiexi_district",figure="dissatisfied",month="2022-04"} 1"#,
            r#"hotline_month_department_loop{city="220300",department="tiexi_district",figure="accepted_on_time",month="2022-04"} 5"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains(r#"hotline_month_channel_cases{channel="hotline",city="220300",month="2022-02""#));
        assert!(!text.contains(r#"hotline_month_channel_cases{channel="hotline",city="222400""#));

        // An instance that stops publishing shows no city any more.
        t.emit(CitiesRead(None));
        assert!(!t.render().contains("hotline_month_cases{"));
    }
}
