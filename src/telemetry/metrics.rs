//! Every metric `hotline` exports, with its name and help, registered once per process.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::domain::event::{Change, Rejection};

pub(super) struct Metrics {
    pub events: IntCounterVec,
    pub rejected: IntCounterVec,
    pub duplicates: IntCounter,
    pub redundant: IntCounterVec,
    pub processed: IntCounter,
    pub latency: HistogramVec,
    pub snapshots_published: IntCounter,
    pub publish_latency: Histogram,
    pub transactions: IntCounterVec,
    pub restarts: IntCounter,
    pub consumers_recreated: IntCounterVec,
    pub producers_abandoned: IntCounter,
    pub calls_blocked: IntGauge,
    pub partitions_stopped: IntGaugeVec,
    pub polls: IntCounter,
    pub rebalances: IntCounter,
    pub offset_resets: IntCounter,
    pub month_cases: IntGaugeVec,
    pub month_channel: IntGaugeVec,
    pub month_category: IntGaugeVec,
    pub month_department: IntGaugeVec,
    pub month_department_loop: IntGaugeVec,
    pub department_open: IntGaugeVec,
    pub department_overdue: IntGaugeVec,
    pub month_closed: IntGaugeVec,
    pub month_codes_folded: IntGaugeVec,
    pub snapshot_closed: IntGaugeVec,
    pub snapshot_revision: IntGaugeVec,
    pub cases_held: IntGauge,
    pub cases_waiting: IntGauge,
    pub state_bytes: IntGauge,
    pub watermark: IntGauge,
    pub calendar_last_year: IntGauge,
    pub figures_changed_by_rules: IntCounter,
    pub calendar_covered_until: IntGauge,
    pub lag: IntGaugeVec,
    pub ready: IntGauge,
}

impl Metrics {
    pub fn new(r: &Registry) -> Metrics {
        let m = Metrics {
            events: counter_vec(
                r,
                "hotline_events_total",
                "Case events counted, by input topic and event type.",
                &["topic", "type"],
            ),
            rejected: counter_vec(
                r,
                "hotline_events_rejected_total",
                "Messages sent to the dead letters, by reason.",
                &["reason"],
            ),
            duplicates: counter(r, "hotline_events_duplicate_total", "Events whose event_id was already applied."),
            redundant: counter_vec(
                r,
                "hotline_events_redundant_total",
                "Events kept for their case that changed no figure, by type: a closed of a closed case, a reopened of \
             an open one, a sign-for, return or extension by a department not holding the case, an older rating.",
                &["type"],
            ),
            processed: counter(
                r,
                "hotline_messages_processed_total",
                "Input messages ingested (routed to counting or dead-lettered) and committed.",
            ),
            latency: register(
                r,
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
                r,
                "hotline_snapshots_published_total",
                "Snapshot revisions committed to the snapshots topic.",
            ),
            publish_latency: register(
                r,
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
                r,
                "hotline_transactions_total",
                "Kafka transactions, by outcome (committed, aborted).",
                &["outcome"],
            ),
            restarts: counter(
                r,
                "hotline_pipeline_restarts_total",
                "Times the pipeline started over from the last commit after a failure.",
            ),
            consumers_recreated: counter_vec(
                r,
                "hotline_consumer_recreated_total",
                "Kafka consumers failed for good and replaced by a new one, by the error that failed them.",
                &["reason"],
            ),
            producers_abandoned: counter(
                r,
                "hotline_producers_abandoned_total",
                "Transactional producers left behind because one of their calls did not return in time (the next \
             one, with the same transactional id, fences them).",
            ),
            calls_blocked: gauge(
                r,
                "hotline_transaction_calls_blocked",
                "Calls of abandoned transactional producers that have still not returned.",
            ),
            partitions_stopped: gauge_vec(
                r,
                "hotline_partitions_stopped",
                "1 for a partition stopped before an internal record this build cannot read, by that record's topic and \
             partition.",
                &["topic", "partition"],
            ),
            polls: counter(
                r,
                "hotline_polls_total",
                "Polls of the Kafka consumer by the pipeline loop, empty ones included: it stands still only when \
             the loop does.",
            ),
            rebalances: counter(
                r,
                "hotline_rebalances_total",
                "Times the consumer group moved partitions to or from this instance.",
            ),
            offset_resets: counter(
                r,
                "hotline_offset_resets_total",
                "Times a partition's position was gone from the broker (deleted by retention before it was read) \
             and consuming restarted at the earliest offset: input was lost.",
            ),
            month_cases: gauge_vec(
                r,
                "hotline_month_cases",
                "Cases of each month held, by status (received, closed, in_progress).",
                &["city", "month", "status"],
            ),
            month_channel: gauge_vec(
                r,
                "hotline_month_channel_cases",
                "Cases of the running and previous month by channel and status.",
                &["city", "month", "channel", "status"],
            ),
            month_category: gauge_vec(
                r,
                "hotline_month_category_cases",
                "Cases of the running and previous month by category and status.",
                &["city", "month", "category", "status"],
            ),
            month_department: gauge_vec(
                r,
                "hotline_month_department_cases",
                "Cases of the running and previous month by department: received (assigned), closed, in_progress.",
                &["city", "month", "department", "status"],
            ),
            month_department_loop: gauge_vec(
                r,
                "hotline_month_department_loop",
                "The office's loop (contract v2) of the running and previous month by department: assignments signed \
             for on time or late, returned, extended and reopened, and cases by their latest rating (credited to the \
             department holding them at their last close).",
                &["city", "month", "department", "figure"],
            ),
            department_open: gauge_vec(
                r,
                "hotline_department_open_cases",
                "Open cases each department holds now.",
                &["city", "department"],
            ),
            department_overdue: gauge_vec(
                r,
                "hotline_department_overdue_cases",
                "Open cases past their deadline at the watermark.",
                &["city", "department"],
            ),
            month_closed: gauge_vec(
                r,
                "hotline_month_closed",
                "1 once event time has passed the month's end plus the grace period.",
                &["city", "month"],
            ),
            month_codes_folded: gauge_vec(
                r,
                "hotline_month_codes_folded",
                "Codes outside the registry that the month counts under the row `unregistered` (past \
             labels.unregistered_rows of them), by kind: department or category. A code folded on several counting \
             partitions counts once on each.",
                &["city", "month", "kind"],
            ),
            snapshot_closed: gauge_vec(
                r,
                "hotline_snapshot_closed",
                "1 once the month's latest published snapshot is closed.",
                &["city", "month"],
            ),
            snapshot_revision: gauge_vec(
                r,
                "hotline_snapshot_revision",
                "Revision of the month's latest published snapshot.",
                &["city", "month"],
            ),
            cases_held: gauge(r, "hotline_cases_held", "Case records this instance's counting partitions hold."),
            cases_waiting: gauge(r, "hotline_cases_waiting_for_created", "Cases with events but no created event yet."),
            state_bytes: gauge(r, "hotline_state_bytes", "Estimated bytes of the case records held in memory."),
            watermark: gauge(r, "hotline_watermark_seconds", "Event-time watermark, Unix seconds."),
            figures_changed_by_rules: counter(
                r,
                "hotline_figures_changed_by_rules_total",
                "Months given their first revision under rules other than their last revision's: after a restart \
             under new rules, the months whose published figures changed (each revision names its rules' fingerprint).",
            ),
            calendar_last_year: gauge(
                r,
                "hotline_calendar_last_year",
                "With working-day deadlines, the last year the working-day calendar covers (0 without them).",
            ),
            calendar_covered_until: gauge(
                r,
                "hotline_calendar_covered_until_seconds",
                "With working-day deadlines, when the working-day calendar ends: the start of the year after its last, \
             in time.zone, Unix seconds (0 without them).",
            ),
            lag: gauge_vec(
                r,
                "hotline_consumer_lag_messages",
                "Messages not yet consumed, per assigned partition (librdkafka statistics).",
                &["topic", "partition"],
            ),
            ready: gauge(r, "hotline_ready", "1 while /readyz answers 200."),
        };
        // Counters start at zero, so the first abort or dead letter shows in increase().
        m.transactions.with_label_values(&["committed"]);
        m.transactions.with_label_values(&["aborted"]);
        for kind in Rejection::KINDS {
            m.rejected.with_label_values(&[kind]);
        }
        for kind in Change::TYPES {
            m.redundant.with_label_values(&[kind]);
        }
        m
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
