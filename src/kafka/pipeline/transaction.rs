//! The transaction of one life: records held while a commit runs, dead letters, and the
//! guard on librdkafka's blocking transactional calls.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Settings;
use crate::domain::event::Rejection;
use crate::telemetry::{
    AbandonedCallReturned, AbortFailed, KafkaAvailable, ProducerAbandoned, Telemetry, TransactionAborted,
    TransactionCommitted,
};

use super::TRANSACTION_TIMEOUT;
use super::context::KafkaEvents;

/// The transactional producer of one life. A transaction opens with its first record; its
/// commit runs while the loop goes on with the next batch, whose records wait in `held` until
/// that commit has ended (one producer has one transaction at a time).
pub(super) struct Output<'a> {
    producer: Arc<ThreadedProducer<KafkaEvents>>,
    settings: &'a Settings,
    pub telemetry: &'a Telemetry,
    dead_letter_max_payload: usize,
    in_transaction: Cell<bool>,
    /// How long a transactional call may take: `TRANSACTION_TIMEOUT` plus `CALL_GRACE`.
    call_deadline: Duration,
    /// A call did not return in time: the producer is left to it, and this life must end.
    abandoned: Cell<bool>,
    /// The previous transaction's commit, under way.
    committing: RefCell<Option<InFlight<()>>>,
    /// Records sent while a commit is under way, for the next transaction.
    held: RefCell<Vec<HeldRecord>>,
}

/// A record waiting for the next transaction.
pub(super) struct HeldRecord {
    topic: String,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
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

impl<'a> Output<'a> {
    /// `call_deadline`: how long a transactional call may take before its producer is
    /// abandoned.
    pub fn new(
        producer: ThreadedProducer<KafkaEvents>,
        settings: &'a Settings,
        telemetry: &'a Telemetry,
        dead_letter_max_payload: usize,
        call_deadline: Duration,
    ) -> Output<'a> {
        Output {
            producer: Arc::new(producer),
            settings,
            telemetry,
            dead_letter_max_payload,
            in_transaction: Cell::new(false),
            call_deadline,
            abandoned: Cell::new(false),
            committing: RefCell::new(None),
            held: RefCell::new(Vec::new()),
        }
    }
}

impl Output<'_> {
    /// Starts one blocking transactional call (`what`) on a thread of its own, to be waited for
    /// at most `call_deadline`. librdkafka bounds these calls by the timeout given, except when
    /// it does not: `send_offsets_to_transaction` waits for ever once
    /// the group coordinator's broker has left the cluster (librdkafka issues #5456, #5511, seen
    /// in `tests/failover.rs`), and the loop would stand still with every probe green. A call
    /// past its deadline is abandoned with its producer; the next life's producer, with the
    /// same transactional id, fences it and aborts its transaction.
    fn start<T: Send + 'static>(
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
        std::thread::Builder::new()
            .name("hotline-txn".into())
            .spawn(move || {
                let _ = sent.send(call(&producer));
                if call_state.compare_exchange(RUNNING, RETURNED, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                    telemetry.emit(AbandonedCallReturned);
                }
            })
            .context("starting a thread for a transactional call")?;
        Ok(InFlight { what, result, state, deadline: Instant::now() + self.call_deadline })
    }

    /// Waits for a call `start`ed before.
    fn wait<T>(&self, call: InFlight<T>) -> Result<T> {
        let InFlight { what, result, state, deadline } = call;
        match result.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(returned) => returned.context(what),
            Err(RecvTimeoutError::Disconnected) => bail!("{what}: the call's thread ended without an answer"),
            Err(RecvTimeoutError::Timeout)
                if state.compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst).is_ok() =>
            {
                self.abandoned.set(true);
                self.telemetry.emit(ProducerAbandoned { call: what, after: self.call_deadline });
                bail!("{what}: no answer from librdkafka in time; the producer is abandoned")
            }
            // It returned just now.
            Err(RecvTimeoutError::Timeout) => {
                result.recv().context("a transactional call's thread ended")?.context(what)
            }
        }
    }

    /// One blocking transactional call, waited for.
    pub fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        call: impl FnOnce(&ThreadedProducer<KafkaEvents>) -> KafkaResult<T> + Send + 'static,
    ) -> Result<T> {
        let started = self.start(what, call)?;
        self.wait(started)
    }

    /// Opens a transaction unless one is open.
    fn begin(&self) -> Result<()> {
        if !self.in_transaction.get() {
            self.call("beginning a transaction", |p| p.begin_transaction())?;
            self.in_transaction.set(true);
        }
        Ok(())
    }

    pub fn send(&self, record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
        if self.committing.borrow().is_some() {
            self.held.borrow_mut().push(HeldRecord {
                topic: record.topic.to_owned(),
                partition: record.partition,
                key: record.key.map(<[u8]>::to_vec),
                payload: record.payload.map(<[u8]>::to_vec),
                headers: record.headers,
            });
            return Ok(());
        }
        self.produce(record)
    }

    fn produce(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
        self.begin()?;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e).context("producing"),
            }
        }
    }

    /// Sends a rejected message to the dead letters with its reason and origin.
    pub(crate) fn dead_letter(
        &self,
        rejection: &Rejection,
        origin: Option<(&str, i32, i64)>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<()> {
        let kept = payload.filter(|p| p.len() <= self.dead_letter_max_payload);
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: "hotline.reason", value: Some(&rejection.to_string()) })
            .insert(Header { key: "hotline.reason_kind", value: Some(rejection.kind()) });
        // Facts of a case evicted uncounted have no input message of their own any more.
        if let Some((topic, partition, offset)) = origin {
            headers = headers
                .insert(Header { key: "hotline.source_topic", value: Some(topic) })
                .insert(Header { key: "hotline.source_partition", value: Some(&partition.to_string()) })
                .insert(Header { key: "hotline.source_offset", value: Some(&offset.to_string()) });
        }
        if kept.is_none() && payload.is_some() {
            headers = headers
                .insert(Header { key: "hotline.payload_omitted", value: Some("larger than the dead-letter limit") });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.settings.config.topics.dead_letters).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = kept {
            record = record.payload(p);
        }
        self.send(record)
    }

    /// Waits for the commit under way, if any, and counts what its transaction did; then
    /// opens the next transaction with the records held meanwhile. A failed commit aborts,
    /// and the life must end.
    pub(crate) fn settle(&self) -> Result<()> {
        if let Err(e) = self.finish_commit() {
            self.held.borrow_mut().clear();
            let _ = self.call("aborting the transaction", |p| p.abort_transaction(TRANSACTION_TIMEOUT));
            return Err(e);
        }
        for held in self.held.take() {
            let mut record = BaseRecord::<[u8], [u8]>::to(&held.topic);
            record.partition = held.partition;
            record.key = held.key.as_deref();
            record.payload = held.payload.as_deref();
            record.headers = held.headers;
            self.produce(record)?;
        }
        Ok(())
    }

    /// Waits for the commit under way, if any (which counted its transaction itself once
    /// committed), and counts it as aborted if it failed.
    fn finish_commit(&self) -> Result<()> {
        let Some(call) = self.committing.take() else {
            return Ok(());
        };
        match self.wait(call) {
            Ok(()) => {
                self.telemetry.emit(KafkaAvailable);
                Ok(())
            }
            Err(e) => {
                self.telemetry.emit(TransactionAborted { error: &format!("{e:#}") });
                Err(e)
            }
        }
    }

    /// Starts committing the open transaction (opening one if only offsets are to commit)
    /// with the consumed offsets; `settle` waits for it. `covers`: the next offset each counting
    /// partition's state covers; `published`: the publish latencies of the snapshots in it,
    /// where known.
    pub fn commit(
        &self,
        offsets: &HashMap<(String, i32), i64>,
        consumer: &BaseConsumer<KafkaEvents>,
        covers: impl Fn(i32) -> Option<i64>,
        published: &[Option<f64>],
    ) -> Result<()> {
        // One transaction at a time (the loop has usually settled already, so that the batch's
        // last records went straight into this transaction).
        self.settle()?;
        if offsets.is_empty() && !self.in_transaction.get() {
            return Ok(());
        }
        let started = self.start_commit(offsets, consumer, covers, published);
        if let Err(e) = &started {
            self.telemetry.emit(TransactionAborted { error: &format!("{e:#}") });
        }
        self.in_transaction.set(false);
        *self.committing.borrow_mut() = Some(started?);
        Ok(())
    }

    fn start_commit(
        &self,
        offsets: &HashMap<(String, i32), i64>,
        consumer: &BaseConsumer<KafkaEvents>,
        covers: impl Fn(i32) -> Option<i64>,
        published: &[Option<f64>],
    ) -> Result<InFlight<()>> {
        self.begin()?;
        // Offsets go with every transaction, the positions of the partitions held when the
        // batch read nothing: they carry the group generation, which fences the work of an
        // instance that lost its partitions without noticing (KIP-447). A counting partition
        // goes at what its state covers: its position may be past a transaction marker, and
        // a restore waits until the changelog covers the committed offset.
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        if offsets.is_empty() {
            let counting = &self.settings.config.topics.case_events;
            for p in consumer.position()?.elements() {
                let at = match p.offset() {
                    _ if p.topic() == counting => covers(p.partition()),
                    Offset::Offset(n) => Some(n),
                    _ => None,
                };
                if let Some(n) = at {
                    tpl.add_partition_offset(p.topic(), p.partition(), Offset::Offset(n))?;
                }
            }
        }
        let group = consumer.group_metadata().context("no consumer group metadata")?;
        // What the transaction did counts the moment it commits, whatever the loop is doing.
        let (telemetry, sealed) = (self.telemetry.clone(), self.telemetry.seal_transaction());
        let (snapshots, latencies) = (published.len(), published.iter().flatten().copied().collect::<Vec<f64>>());
        // Both calls share one `TRANSACTION_TIMEOUT`.
        self.start("committing the transaction", move |p| {
            let started = Instant::now();
            if tpl.count() > 0 {
                p.send_offsets_to_transaction(&tpl, &group, TRANSACTION_TIMEOUT)?;
            }
            p.commit_transaction(TRANSACTION_TIMEOUT.saturating_sub(started.elapsed()))?;
            telemetry.emit(TransactionCommitted { sealed, snapshots, publish_latencies: &latencies });
            Ok(())
        })
    }

    /// Lets the commit under way end, then aborts the open transaction, if any; records held
    /// for the next transaction are dropped.
    pub fn abort(&self) {
        self.held.borrow_mut().clear();
        if let Err(e) = self.settle() {
            self.telemetry.emit(AbortFailed { what: "the last commit failed", error: &format!("{e:#}") });
        }
        if self.in_transaction.replace(false)
            && let Err(e) = self.call("aborting the transaction", |p| p.abort_transaction(TRANSACTION_TIMEOUT))
        {
            self.telemetry.emit(AbortFailed { what: "aborting the transaction", error: &format!("{e:#}") });
        }
    }
}

/// A life that ends with a commit under way waits for it.
impl Drop for Output<'_> {
    fn drop(&mut self) {
        let _ = self.finish_commit();
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::ClientConfig;

    use super::*;
    use crate::config::Config;

    #[test]
    fn a_transactional_call_that_never_returns_abandons_the_producer() {
        let settings = Config::parse("[kafka]\nbrokers = \"a:1\"\n", []).unwrap().settings().unwrap();
        let telemetry = Telemetry::default();
        // Never contacted: the calls below do not reach librdkafka.
        let producer = ClientConfig::new().set("bootstrap.servers", "127.0.0.1:9").create_with_context(KafkaEvents {
            telemetry: telemetry.clone(),
            rebalanced: Arc::default(),
            joined: Arc::default(),
            resets_seen: Arc::default(),
            lags: Arc::default(),
        });
        let out = Output::new(producer.unwrap(), &settings, &telemetry, 0, Duration::from_millis(500));
        assert_eq!(out.call("answering", |_| Ok(7)).unwrap(), 7);
        let refused = out.call("refusing", |_| Err::<(), _>(KafkaError::Canceled)).unwrap_err();
        assert!(format!("{refused:#}").starts_with("refusing: "), "{refused:#}");
        assert!(!out.abandoned.get(), "a call that fails in time leaves the producer usable");

        let stuck = out.call("hanging", |_| {
            std::thread::sleep(Duration::from_millis(2000));
            Ok(())
        });
        assert!(format!("{:#}", stuck.unwrap_err()).contains("the producer is abandoned"));
        assert!(out.abandoned.get());
        assert_eq!(telemetry.calls_blocked(), 1);
        let after = out.call("answering", |_| Ok(7)).unwrap_err();
        assert!(format!("{after:#}").contains("was abandoned"), "no call reaches an abandoned producer");
        // The blocked call returns at last: no longer counted as blocked.
        std::thread::sleep(Duration::from_millis(3000));
        assert_eq!(telemetry.calls_blocked(), 0);
    }
}
