//! The consume-count-produce loop, exactly once through Kafka transactions.
//!
//! One transaction carries everything a batch of input caused: dead letters, the changed case
//! records (changelog), snapshot revisions and the consumed input offsets. On any failure the
//! transaction is aborted and the pipeline starts over from the last commit: state is rebuilt
//! from the changelog, revision numbers from the snapshots topic, and input resumes at the
//! committed offsets, so nothing is lost or counted twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jiff::Timestamp;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::avro::{Framing, SnapshotCodec};
use crate::config::{KafkaConfig, Settings};
use crate::domain::case::{Applied, CaseRecord, CountingRules};
use crate::domain::event::{self, DecodeLimits};
use crate::domain::ledger::Ledger;
use crate::domain::month::Month;
use crate::domain::publisher::{PublishRules, Publisher, Watermarks};
use crate::telemetry::Telemetry;

use super::client_config;
use super::topics::{self, TopicSpec, key_str};

const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Dead letters keep the rejected payload unchanged up to this size; a larger payload is
/// dropped (the headers still say where it was), so the broker never refuses a dead letter and
/// no input can stall the pipeline.
pub const DEAD_LETTER_MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// Largest message the pipeline produces: a dead letter's payload plus its key and headers.
const MAX_PRODUCED_BYTES: usize = DEAD_LETTER_MAX_PAYLOAD + 64 * 1024;

/// Runs the pipeline until `stop` is set, starting over after failures.
pub async fn run(settings: Settings, telemetry: Telemetry, framing: Framing, stop: Arc<AtomicBool>) -> Result<()> {
    let t = &settings.config.topics;
    let owned = [
        TopicSpec { name: &t.snapshots, compacted: true, max_message_bytes: None },
        TopicSpec { name: &t.changelog, compacted: true, max_message_bytes: None },
        TopicSpec { name: &t.dead_letters, compacted: false, max_message_bytes: Some(MAX_PRODUCED_BYTES) },
    ];
    // Kafka may not be up yet when we start: wait for it.
    let mut backoff = Backoff::default();
    while let Err(e) = topics::ensure(&settings.config.kafka, &owned).await {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        telemetry.kafka_unavailable(&format!("{e:#}"));
        tokio::time::sleep(backoff.next()).await;
    }
    tokio::task::spawn_blocking(move || {
        // The consumer outlives the pipeline's lives: starting over rewinds it to the committed
        // offsets instead of leaving and rejoining the group.
        let consumer = consumer(&settings, &telemetry)?;
        let mut backoff = Backoff::default();
        let mut fresh = true;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let life = Counter::start(&settings, &telemetry, framing, &consumer, fresh);
            fresh = false;
            match life.and_then(|mut c| c.run(&stop)) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    telemetry.ready(false);
                    telemetry.restarting(&format!("{e:#}"));
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = Backoff::default();
                    }
                    std::thread::sleep(backoff.next());
                }
            }
        }
        Ok(())
    })
    .await
    .context("the pipeline thread panicked")?
}

/// Waits between attempts: 0.5 s, doubling up to 10 s.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(Duration::from_millis(500))
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
        wait
    }
}

/// Turns the clients' connection errors into readiness: `/readyz` fails while no broker can
/// be reached, even while the loop waits inside a blocking transaction call.
#[derive(Clone)]
struct KafkaEvents(Telemetry);

impl ClientContext for KafkaEvents {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                self.0.kafka_unavailable(&error);
            }
            _ => tracing::error!(%error, reason, "Kafka client error"),
        }
    }
}

impl ConsumerContext for KafkaEvents {}

impl ProducerContext for KafkaEvents {
    type DeliveryOpaque = ();
    // Delivery failures surface as a failed commit, which aborts and restarts the life.
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// One life of the pipeline, from a restore to a failure or a stop.
struct Counter<'a> {
    settings: &'a Settings,
    telemetry: &'a Telemetry,
    codec: SnapshotCodec,
    producer: ThreadedProducer<KafkaEvents>,
    consumer: &'a BaseConsumer<KafkaEvents>,
    ledger: Ledger,
    publisher: Publisher,
    watermarks: Watermarks,
}

impl<'a> Counter<'a> {
    fn start(
        settings: &'a Settings,
        telemetry: &'a Telemetry,
        framing: Framing,
        consumer: &'a BaseConsumer<KafkaEvents>,
        fresh: bool,
    ) -> Result<Counter<'a>> {
        let config = &settings.config;
        // A fixed transactional id: a restarted instance fences its predecessor, whose open
        // transaction is aborted before we read the changelog.
        let producer: ThreadedProducer<KafkaEvents> = client_config(&config.kafka)
            .set("transactional.id", format!("{}-counter", config.kafka.group_id))
            .set("transaction.timeout.ms", "60000")
            .set("linger.ms", "5")
            .set("message.max.bytes", MAX_PRODUCED_BYTES.to_string())
            .create_with_context(KafkaEvents(telemetry.clone()))
            .context("creating the transactional producer")?;
        producer.init_transactions(TRANSACTION_TIMEOUT).context("initialising transactions")?;

        let rules = CountingRules { zone: settings.zone.clone(), default_sla: settings.default_sla };
        let (mut ledger, restored) = restore_ledger(&config.kafka, &config.topics.changelog, rules)?;

        let codec = SnapshotCodec::new(framing);
        let mut watermarks = Watermarks::new(settings.idle_partition);
        let mut publisher = Publisher::new(PublishRules {
            zone: settings.zone.clone(),
            zone_name: config.time.zone.clone(),
            grace: settings.grace,
            min_interval: settings.min_interval,
        });
        topics::read_to_end(&config.kafka, &config.topics.snapshots, RESTORE_TIMEOUT, |m| {
            if let Some(bytes) = m.payload() {
                match codec.decode(bytes) {
                    Ok(s) => {
                        watermarks.raise_floor(s.as_of);
                        publisher.restore(s.month, &s);
                    }
                    Err(e) => tracing::warn!(error = %e, offset = m.offset(), "skipping an undecodable snapshot"),
                }
            }
            Ok(())
        })?;
        tracing::info!(cases = restored, held = ledger.cases_held(), "state restored from the changelog");
        // Before consuming, so late events of evicted months are rejected from the first batch.
        evict(settings, &mut ledger, &mut publisher, watermarks.current(Instant::now()));

        // A fresh consumer starts at the committed offsets by itself.
        if !fresh {
            rewind(consumer)?;
        }

        telemetry.ledger_changed(&ledger, None);
        Ok(Counter { settings, telemetry, codec, producer, consumer, ledger, publisher, watermarks })
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        self.telemetry.ready(true);
        let mut last_gauges = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let offsets = self.consume_batch(stopping)?;
            let committed = self.commit(offsets)?;
            if committed || last_gauges.elapsed() > Duration::from_secs(1) {
                self.telemetry.ledger_changed(&self.ledger, self.watermarks.current(Instant::now()));
                last_gauges = Instant::now();
            }
            if stopping {
                tracing::info!("stopped after the last transaction");
                return Ok(());
            }
        }
    }

    /// Applies input messages for up to one commit interval inside an open transaction, and
    /// returns the next offset of each partition read.
    fn consume_batch(&mut self, stopping: bool) -> Result<HashMap<(String, i32), i64>> {
        let mut offsets = HashMap::new();
        if stopping {
            return Ok(offsets);
        }
        let deadline = Instant::now() + self.settings.commit_interval;
        let mut messages = 0;
        while messages < self.settings.config.limits.max_batch && Instant::now() < deadline {
            let Some(polled) = self.consumer.poll(deadline.saturating_duration_since(Instant::now())) else { break };
            let m = match polled {
                Ok(m) => m,
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => continue,
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => return Err(e).context("consuming"),
                Err(e) => {
                    self.telemetry.kafka_unavailable(&e);
                    continue;
                }
            };
            self.telemetry.kafka_available();
            // The first message of the batch opens its transaction; `commit` opens one itself when
            // a batch brought none.
            if offsets.is_empty() {
                self.producer.begin_transaction().context("beginning a transaction")?;
            }
            apply(self.settings, self.telemetry, &self.producer, &mut self.ledger, &mut self.watermarks, &m)?;
            offsets.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            messages += 1;
        }
        Ok(offsets)
    }

    /// Writes the changed cases and due snapshots and commits them with the input offsets.
    /// Returns whether a transaction was committed.
    fn commit(&mut self, offsets: HashMap<(String, i32), i64>) -> Result<bool> {
        let now = Instant::now();
        let watermark = self.watermarks.current(now);
        evict(self.settings, &mut self.ledger, &mut self.publisher, watermark);
        let (changed_cases, _) = self.ledger.take_changes();
        let due = self.publisher.due(&self.ledger, watermark, now, Timestamp::now());
        if offsets.is_empty() && due.is_empty() && changed_cases.is_empty() {
            return Ok(false);
        }
        if offsets.is_empty() {
            self.producer.begin_transaction().context("beginning a transaction")?;
        }
        let topics = &self.settings.config.topics;
        for case_id in &changed_cases {
            let payload = self.ledger.case(case_id).map(|r| serde_json::to_vec(r).expect("records serialize"));
            let mut record = BaseRecord::<[u8], [u8]>::to(&topics.changelog).key(case_id.as_bytes());
            if let Some(p) = &payload {
                record = record.payload(p);
            }
            send(&self.producer, record)?;
        }
        for snapshot in &due {
            let bytes = self.codec.encode(snapshot)?;
            let key = snapshot.month.to_string();
            send(&self.producer, BaseRecord::to(&topics.snapshots).key(key.as_bytes()).payload(&bytes))?;
            tracing::info!(month = %snapshot.month, revision = snapshot.revision, status = snapshot.status.code(),
                received = snapshot.figures.totals.received, "publishing snapshot");
        }
        if !offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), offset) in &offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
            }
            let group = self.consumer.group_metadata().context("no consumer group metadata")?;
            self.producer
                .send_offsets_to_transaction(&tpl, &group, TRANSACTION_TIMEOUT)
                .context("sending offsets to the transaction")?;
        }
        if let Err(e) = self.producer.commit_transaction(TRANSACTION_TIMEOUT) {
            self.telemetry.transaction_aborted(&e);
            let _ = self.producer.abort_transaction(TRANSACTION_TIMEOUT);
            return Err(e).context("committing the transaction");
        }
        self.telemetry.transaction_committed(due.len());
        self.telemetry.kafka_available();
        Ok(true)
    }
}

fn consumer(settings: &Settings, telemetry: &Telemetry) -> Result<BaseConsumer<KafkaEvents>> {
    let config = &settings.config;
    let mut consumer_config = client_config(&config.kafka);
    if let Some(id) = &config.kafka.instance_id {
        consumer_config.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<KafkaEvents> = consumer_config
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("max.poll.interval.ms", "300000")
        .create_with_context(KafkaEvents(telemetry.clone()))
        .context("creating the consumer")?;
    consumer.subscribe(&config.topics.inputs()).context("subscribing to the input topics")?;
    Ok(consumer)
}

/// Moves every assigned partition back to its committed offset (the beginning where none is
/// committed yet), dropping whatever was read after the last commit.
fn rewind(consumer: &BaseConsumer<KafkaEvents>) -> Result<()> {
    let assignment = consumer.assignment().context("reading the assignment")?;
    if assignment.count() == 0 {
        return Ok(());
    }
    let committed = consumer.committed_offsets(assignment, TRANSACTION_TIMEOUT).context("reading committed offsets")?;
    let mut positions = TopicPartitionList::new();
    for p in committed.elements() {
        let offset = match p.offset() {
            Offset::Offset(n) => Offset::Offset(n),
            _ => Offset::Beginning,
        };
        positions.add_partition_offset(p.topic(), p.partition(), offset)?;
    }
    for p in consumer.seek_partitions(positions, TRANSACTION_TIMEOUT)?.elements() {
        if let Err(e) = p.error() {
            return Err(e).with_context(|| format!("rewinding {}[{}]", p.topic(), p.partition()));
        }
    }
    Ok(())
}

/// Evicts the months older than the retention before the watermark's month. Their tombstones
/// go out with the next commit.
fn evict(settings: &Settings, ledger: &mut Ledger, publisher: &mut Publisher, watermark: Option<Timestamp>) {
    let Some(watermark) = watermark else { return };
    let kept_from = Month::containing(watermark, &settings.zone).months_before(settings.config.state.retention_months);
    let evicted = ledger.evict_before(kept_from);
    publisher.forget_before(kept_from);
    if !evicted.is_empty() {
        tracing::info!(cases = evicted.len(), %kept_from, "evicted cases of months past the retention");
    }
}

/// Rebuilds the ledger from the compacted changelog; returns it with the number of records read.
pub fn restore_ledger(kafka: &KafkaConfig, changelog: &str, rules: CountingRules) -> Result<(Ledger, u64)> {
    let mut ledger = Ledger::new(rules);
    let read = topics::read_to_end(kafka, changelog, RESTORE_TIMEOUT, |m| {
        let Some(case_id) = key_str(m) else { return Ok(()) };
        let record = match m.payload() {
            Some(bytes) => serde_json::from_slice(bytes).context("a changelog record does not decode")?,
            None => CaseRecord::default(), // a tombstone
        };
        ledger.restore(case_id.to_owned(), record);
        Ok(())
    })?;
    ledger.take_changes();
    Ok((ledger, read))
}

/// Counts one input message, or sends it to the dead letters with its reason.
fn apply(
    settings: &Settings,
    telemetry: &Telemetry,
    producer: &ThreadedProducer<KafkaEvents>,
    ledger: &mut Ledger,
    watermarks: &mut Watermarks,
    m: &BorrowedMessage<'_>,
) -> Result<()> {
    let limits = DecodeLimits {
        max_message_bytes: settings.config.limits.max_message_bytes,
        latest_occurred_at: Timestamp::now() + settings.max_future,
    };
    let outcome = event::decode(m.payload().unwrap_or_default(), &limits).and_then(|e| {
        let applied = ledger.apply(&e)?;
        Ok((e, applied))
    });
    match outcome {
        Ok((e, Applied::Changed)) => {
            telemetry.event_counted(m.topic(), e.change.type_code());
            // A clock running ahead upstream must not close months early.
            watermarks.observe(m.topic(), m.partition(), e.occurred_at.min(Timestamp::now()), Instant::now());
        }
        Ok((_, Applied::Duplicate)) => telemetry.event_duplicate(),
        Err(rejection) => {
            telemetry.event_rejected(m.topic(), m.partition(), m.offset(), &rejection);
            let payload = m.payload().filter(|p| p.len() <= DEAD_LETTER_MAX_PAYLOAD);
            let mut headers = OwnedHeaders::new()
                .insert(Header { key: "hotline.reason", value: Some(&rejection.to_string()) })
                .insert(Header { key: "hotline.reason_kind", value: Some(rejection.kind()) })
                .insert(Header { key: "hotline.source_topic", value: Some(m.topic()) })
                .insert(Header { key: "hotline.source_partition", value: Some(&m.partition().to_string()) })
                .insert(Header { key: "hotline.source_offset", value: Some(&m.offset().to_string()) });
            if payload.is_none() && m.payload().is_some() {
                headers = headers.insert(Header {
                    key: "hotline.payload_omitted",
                    value: Some("larger than the dead-letter limit"),
                });
            }
            let mut record = BaseRecord::<[u8], [u8]>::to(&settings.config.topics.dead_letters).headers(headers);
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(p) = payload {
                record = record.payload(p);
            }
            send(producer, record)?;
        }
    }
    Ok(())
}

fn send(producer: &ThreadedProducer<KafkaEvents>, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e).context("producing"),
        }
    }
}
