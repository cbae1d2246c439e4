//! The rdkafka client context: connection errors, offset resets, statistics and rebalances.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

use crate::telemetry::{ConsumerLagRead, KafkaClientError, KafkaUnavailable, OffsetReset, Telemetry};

/// Turns the clients' connection errors into readiness (`/readyz` fails while no broker can
/// be reached, even while the loop waits inside a blocking transaction call), and notes that
/// the group moved partitions.
#[derive(Clone)]
pub(super) struct KafkaEvents {
    pub telemetry: Telemetry,
    pub rebalanced: Arc<AtomicBool>,
    pub joined: Arc<AtomicBool>,
    /// Offset resets already reported.
    pub resets_seen: Arc<Mutex<HashSet<String>>>,
    /// Messages left to read per assigned partition, as of the latest statistics.
    pub lags: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

impl KafkaEvents {
    /// A context whose flags are its own (a producer's, or a test's).
    pub fn new(telemetry: &Telemetry) -> KafkaEvents {
        KafkaEvents {
            telemetry: telemetry.clone(),
            rebalanced: Arc::default(),
            joined: Arc::default(),
            resets_seen: Arc::default(),
            lags: Arc::default(),
        }
    }
}

impl ClientContext for KafkaEvents {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // librdkafka only logs that a position was gone and it reset to the earliest offset:
        // input was lost, and that must show. Logged once per partition and position.
        if facility == "OFFSET" && message.contains("offset reset") {
            let position = message.split(" to offset").next().unwrap_or(message).to_owned();
            if self.resets_seen.lock().unwrap_or_else(|e| e.into_inner()).insert(position) {
                self.telemetry.emit(OffsetReset { error: &message });
            }
            return;
        }
        crate::kafka::log_librdkafka(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        // librdkafka's own `consumer_lag` counts from offsets the consumer committed itself,
        // which a transactional pipeline never does: count from the position instead, to the
        // last stable offset (the end a read_committed consumer can reach).
        // Only figures fresh from a fetching partition whose leader is reachable: otherwise a
        // lag of 0 may be an old one.
        let up: HashSet<i32> = statistics.brokers.values().filter(|b| b.state == "UP").map(|b| b.nodeid).collect();
        let lags: HashMap<(String, i32), i64> = statistics
            .topics
            .into_iter()
            .flat_map(|(topic, t)| {
                let up = up.clone();
                t.partitions
                    .into_values()
                    .filter(move |p| p.fetch_state == "active" && up.contains(&p.leader))
                    .filter_map(move |p| {
                        // The fetch position is past transaction markers, which are never handed out.
                        let position = p.app_offset.max(p.next_offset);
                        (p.partition >= 0 && position >= 0 && p.ls_offset >= 0)
                            .then(|| ((topic.clone(), p.partition), (p.ls_offset - position).max(0)))
                    })
            })
            .collect();
        self.telemetry.emit(ConsumerLagRead { lags: &lags });
        *self.lags.lock().unwrap_or_else(|e| e.into_inner()) = lags;
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                self.telemetry.emit(KafkaUnavailable { error: &error });
            }
            _ => self.telemetry.emit(KafkaClientError { error: &error, reason }),
        }
    }
}

impl ConsumerContext for KafkaEvents {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.rebalanced.store(true, Ordering::SeqCst);
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            // Joined the group: from now on a life holds this instance's share of the work.
            self.joined.store(true, Ordering::SeqCst);
        }
    }
}

impl ProducerContext for KafkaEvents {
    type DeliveryOpaque = ();
    // Delivery failures surface as a failed commit, which aborts and restarts the life.
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}
