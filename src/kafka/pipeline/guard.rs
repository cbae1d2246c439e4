//! The guard on librdkafka's blocking transactional calls.
//!
//! librdkafka bounds these calls by the timeout given, except when it does not:
//! `send_offsets_to_transaction` waits for ever once the group coordinator's broker has left
//! the cluster (librdkafka issues #5456, #5511, seen in `tests/failover.rs`), and the loop
//! would stand still with every probe green. So each call runs on a thread of its own and is
//! waited for at most a deadline. A call past it is abandoned with its producer; the next
//! life's producer, with the same transactional id, fences it and aborts its transaction.
//! `BlockedCalls` counts the abandoned calls still blocked, over every life: past a few the
//! process starts afresh.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::error::KafkaResult;
use rdkafka::producer::ThreadedProducer;

use crate::telemetry::{AbandonedCallReturned, ProducerAbandoned, Telemetry};

use super::context::KafkaEvents;

/// Calls of abandoned producers still blocked in librdkafka, each holding its threads and
/// buffers; shared by every life of the pipeline.
#[derive(Clone, Debug, Default)]
pub(super) struct BlockedCalls(Arc<AtomicI64>);

impl BlockedCalls {
    pub fn count(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The producer of one life, whose blocking calls are each waited for at most `deadline`.
pub(super) struct CallGuard {
    producer: Arc<ThreadedProducer<KafkaEvents>>,
    telemetry: Telemetry,
    deadline: Duration,
    blocked: BlockedCalls,
    /// A call did not return in time: the producer is left to it, and this life must end.
    abandoned: Cell<bool>,
}

/// A transactional call running on a thread of its own.
pub(super) struct InFlight<T> {
    what: &'static str,
    result: std::sync::mpsc::Receiver<KafkaResult<T>>,
    state: Arc<AtomicU8>,
    deadline: Instant,
}

const RUNNING: u8 = 0;
const RETURNED: u8 = 1;
const ABANDONED: u8 = 2;

impl CallGuard {
    pub fn new(
        producer: ThreadedProducer<KafkaEvents>,
        telemetry: &Telemetry,
        deadline: Duration,
        blocked: BlockedCalls,
    ) -> CallGuard {
        CallGuard {
            producer: Arc::new(producer),
            telemetry: telemetry.clone(),
            deadline,
            blocked,
            abandoned: Cell::new(false),
        }
    }

    /// The producer, for calls that do not block (sending a record).
    pub fn producer(&self) -> &ThreadedProducer<KafkaEvents> {
        &self.producer
    }

    /// Starts one blocking call (`what`) on a thread of its own; `wait` waits for it.
    pub fn start<T: Send + 'static>(
        &self,
        what: &'static str,
        call: impl FnOnce(&ThreadedProducer<KafkaEvents>) -> KafkaResult<T> + Send + 'static,
    ) -> Result<InFlight<T>> {
        if self.abandoned.get() {
            bail!("{what}: the transactional producer was abandoned");
        }
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (sent, result) = std::sync::mpsc::sync_channel(1);
        let (producer, telemetry, call_state) = (self.producer.clone(), self.telemetry.clone(), state.clone());
        let blocked = self.blocked.clone();
        std::thread::Builder::new()
            .name("hotline-txn".into())
            .spawn(move || {
                let _ = sent.send(call(&producer));
                if call_state.compare_exchange(RUNNING, RETURNED, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                    blocked.0.fetch_sub(1, Ordering::SeqCst);
                    telemetry.emit(AbandonedCallReturned);
                }
            })
            .context("starting a thread for a transactional call")?;
        Ok(InFlight { what, result, state, deadline: Instant::now() + self.deadline })
    }

    /// Waits for a call `start`ed before, at most until its deadline.
    pub fn wait<T>(&self, call: InFlight<T>) -> Result<T> {
        let InFlight { what, result, state, deadline } = call;
        match result.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(returned) => returned.context(what),
            Err(RecvTimeoutError::Disconnected) => bail!("{what}: the call's thread ended without an answer"),
            Err(RecvTimeoutError::Timeout)
                if state.compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst).is_ok() =>
            {
                self.abandoned.set(true);
                self.blocked.0.fetch_add(1, Ordering::SeqCst);
                self.telemetry.emit(ProducerAbandoned { call: what, after: self.deadline });
                bail!("{what}: no answer from librdkafka in time; the producer is abandoned")
            }
            // It returned just now.
            Err(RecvTimeoutError::Timeout) => {
                result.recv().context("a transactional call's thread ended")?.context(what)
            }
        }
    }

    /// One blocking call, waited for.
    pub fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        call: impl FnOnce(&ThreadedProducer<KafkaEvents>) -> KafkaResult<T> + Send + 'static,
    ) -> Result<T> {
        let started = self.start(what, call)?;
        self.wait(started)
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::ClientConfig;
    use rdkafka::error::KafkaError;

    use super::*;

    #[test]
    fn a_call_that_never_returns_abandons_the_producer_and_counts_as_blocked_until_it_returns() {
        let telemetry = Telemetry::default();
        // Never contacted: the calls below do not reach librdkafka.
        let producer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create_with_context(KafkaEvents::new(&telemetry))
            .unwrap();
        let blocked = BlockedCalls::default();
        let guard = CallGuard::new(producer, &telemetry, Duration::from_millis(500), blocked.clone());
        assert_eq!(guard.call("answering", |_| Ok(7)).unwrap(), 7);
        let refused = guard.call("refusing", |_| Err::<(), _>(KafkaError::Canceled)).unwrap_err();
        assert!(format!("{refused:#}").starts_with("refusing: "), "{refused:#}");
        assert!(!guard.abandoned.get(), "a call that fails in time leaves the producer usable");

        let stuck = guard.call("hanging", |_| {
            std::thread::sleep(Duration::from_millis(2000));
            Ok(())
        });
        assert!(format!("{:#}", stuck.unwrap_err()).contains("the producer is abandoned"));
        assert!(guard.abandoned.get());
        assert_eq!(blocked.count(), 1);
        assert!(telemetry.render().contains("hotline_transaction_calls_blocked 1"));
        let after = guard.call("answering", |_| Ok(7)).unwrap_err();
        assert!(format!("{after:#}").contains("was abandoned"), "no call reaches an abandoned producer");
        // The blocked call returns at last: no longer counted as blocked.
        std::thread::sleep(Duration::from_millis(3000));
        assert_eq!(blocked.count(), 0);
        assert!(telemetry.render().contains("hotline_transaction_calls_blocked 0"));
    }
}
