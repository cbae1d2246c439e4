//! The transaction of one life: its lifecycle over the guarded producer (`guard.rs`), and
//! the records held while a commit runs.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::domain::event::Rejection;
use crate::records;
use crate::telemetry::{AbortFailed, KafkaAvailable, Telemetry, TransactionAborted, TransactionCommitted};

use super::context::KafkaEvents;
use super::guard::{CallGuard, InFlight};
use super::layout::offsets_metadata;

/// How long Kafka lets a transaction stay open, and how long each transactional call may
/// take; `CALL_GRACE` more and the guard abandons the call.
pub(super) const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past `TRANSACTION_TIMEOUT` a transactional call may take before its producer is
/// abandoned.
pub(super) const CALL_GRACE: Duration = Duration::from_secs(5);

/// The transactional producer of one life. A transaction opens with its first record; its
/// commit runs while the loop goes on with the next batch, whose records wait in `held` until
/// that commit has ended (one producer has one transaction at a time).
pub(super) struct Output<'a> {
    guard: CallGuard,
    pub telemetry: &'a Telemetry,
    /// The dead-letter topic, and the largest payload a dead letter carries.
    dead_letters: String,
    dead_letter_max_payload: usize,
    /// The counting partitions' topic, whose offsets commit at what their state covers, and
    /// how many partitions that state was made for.
    case_events: String,
    counting_partitions: i32,
    in_transaction: Cell<bool>,
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

impl<'a> Output<'a> {
    pub fn new(
        guard: CallGuard,
        telemetry: &'a Telemetry,
        (dead_letters, dead_letter_max_payload): (&str, usize),
        (case_events, counting_partitions): (&str, i32),
    ) -> Output<'a> {
        Output {
            guard,
            telemetry,
            dead_letters: dead_letters.to_owned(),
            dead_letter_max_payload,
            case_events: case_events.to_owned(),
            counting_partitions,
            in_transaction: Cell::new(false),
            committing: RefCell::new(None),
            held: RefCell::new(Vec::new()),
        }
    }
}

impl Output<'_> {
    /// One blocking transactional call, waited for at most its deadline (`guard`).
    pub fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        call: impl FnOnce(&ThreadedProducer<KafkaEvents>) -> KafkaResult<T> + Send + 'static,
    ) -> Result<T> {
        self.guard.call(what, call)
    }

    /// Opens a transaction unless one is open.
    fn begin(&self) -> Result<()> {
        if !self.in_transaction.get() {
            self.call("beginning a transaction", |p| p.begin_transaction())?;
            self.in_transaction.set(true);
        }
        Ok(())
    }

    /// A record of one of hotline's own topics, keyed `key`, to `partition`; a tombstone
    /// without `payload`.
    pub fn send_keyed(&self, topic: &str, partition: i32, key: &str, payload: Option<&[u8]>) -> Result<()> {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).partition(partition).key(key.as_bytes());
        if let Some(p) = payload {
            record = record.payload(p);
        }
        self.send(record)
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
            match self.guard.producer().send(record) {
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
        let omitted = kept.is_none() && payload.is_some();
        let headers = records::dead_letter_headers(rejection, origin, omitted)
            .iter()
            .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value) }));
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.dead_letters).headers(headers);
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
        match self.guard.wait(call) {
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
            for p in consumer.position()?.elements() {
                let at = match p.offset() {
                    _ if p.topic() == self.case_events => covers(p.partition()),
                    Offset::Offset(n) => Some(n),
                    _ => None,
                };
                if let Some(n) = at {
                    tpl.add_partition_offset(p.topic(), p.partition(), Offset::Offset(n))?;
                }
            }
        }
        for mut p in tpl.elements_for_topic(&self.case_events) {
            p.set_metadata(offsets_metadata(self.counting_partitions));
        }
        let group = consumer.group_metadata().context("no consumer group metadata")?;
        // What the transaction did counts the moment it commits, whatever the loop is doing.
        let (telemetry, sealed) = (self.telemetry.clone(), self.telemetry.seal_transaction());
        let (snapshots, latencies) = (published.len(), published.iter().flatten().copied().collect::<Vec<f64>>());
        // Both calls share one `TRANSACTION_TIMEOUT`.
        self.guard.start("committing the transaction", move |p| {
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
