//! The consume-route-count-publish loop, exactly once through Kafka transactions.
//!
//! Every instance consumes, in one consumer group, the input topics, the internal
//! `case_events` topic and the one-partition `partials` topic, and plays the parts its share
//! of partitions gives it:
//! - **ingest** (input partitions, `ingest.rs`): decode, dead-letter what is invalid, and route
//!   each valid event by case id to its counting partition;
//! - **count** (`case_events` partitions, `count.rs`): hold the partition's cases, write the
//!   changed ones to the changelog and the partition's monthly tallies to `partials`;
//! - **publish** (the single `partials` partition, so one instance at a time, `publish.rs`):
//!   add up the partitions' tallies and publish snapshot revisions.
//!
//! One transaction per batch carries every output and every consumed offset. On any failure
//! the transaction is aborted and the pipeline starts over from the last commit; when the
//! group moves partitions, it aborts and restores the state of its new share. Either way
//! state, outputs and offsets never disagree.

mod count;
mod ingest;
mod publish;
mod recovery;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::avro::Framing;
use crate::config::Settings;
use crate::domain::event::Rejection;
use crate::domain::routing::Source;
use crate::telemetry::Telemetry;

use super::topics::{self, TopicSpec};
use super::{client_config, set_default};

pub use count::restore_ledger;

const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past `TRANSACTION_TIMEOUT` a transactional call may take before its producer is
/// abandoned.
const CALL_GRACE: Duration = Duration::from_secs(5);
/// Abandoned producers whose calls are still blocked, each holding its threads and buffers:
/// past this many the pipeline ends, for the process to start afresh.
const MAX_CALLS_BLOCKED: i64 = 3;

/// Dead letters keep the rejected payload unchanged up to this size, or less when the
/// dead-letter topic takes less; a larger payload is dropped (the headers still say where it
/// was), so the broker never refuses a dead letter and no input can stall the pipeline.
pub const DEAD_LETTER_MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// Room for a dead letter's key, headers and batch framing besides its payload.
const DEAD_LETTER_HEADROOM: usize = 64 * 1024;
/// Largest message the pipeline produces: a dead letter's payload plus its key and headers.
const MAX_PRODUCED_BYTES: usize = DEAD_LETTER_MAX_PAYLOAD + DEAD_LETTER_HEADROOM;

/// Runs the pipeline until `stop` is set, starting over after failures. However it ends,
/// `/healthz` and `/readyz` fail from then on: the caller is to exit.
pub async fn run(settings: Settings, telemetry: Telemetry, framing: Framing, stop: Arc<AtomicBool>) -> Result<()> {
    telemetry.watch_progress(settings.stalled_after);
    let ended = run_until_stopped(settings, telemetry.clone(), framing, stop.clone()).await;
    telemetry.pipeline_ended(stop.load(Ordering::Relaxed), ended.as_ref().err());
    ended
}

async fn run_until_stopped(
    settings: Settings,
    telemetry: Telemetry,
    framing: Framing,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    // Kafka may not be up yet when we start: wait for it.
    let mut backoff = Backoff::default();
    let partitions = loop {
        telemetry.progress();
        match topics::ensure(&settings.config.kafka, &owned_topics(&settings)).await {
            Ok(p) => break p,
            Err(e) if !stop.load(Ordering::Relaxed) => {
                telemetry.kafka_unavailable(&format!("{e:#}"));
                tokio::time::sleep(backoff.next()).await;
            }
            Err(_) => return Ok(()),
        }
    };
    let mut layout = Layout::check(&settings, &partitions)?;
    // A dead-letter topic made before hotline may take less than it would create.
    match topics::max_message_bytes(&settings.config.kafka, &settings.config.topics.dead_letters).await {
        Ok(n) => layout.dead_letter_max_payload = n.saturating_sub(DEAD_LETTER_HEADROOM).min(DEAD_LETTER_MAX_PAYLOAD),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not read the dead-letter topic's max.message.bytes"),
    }
    tokio::task::spawn_blocking(move || {
        let instance = settings.config.kafka.instance_id.clone().unwrap_or_else(|| crate::random_id("instance"));
        tracing::info!(
            group_id = %settings.config.kafka.group_id,
            transactional_id = %format!("{}-{instance}", settings.config.kafka.group_id),
            static_membership = settings.config.kafka.instance_id.is_some(),
            "pipeline starting"
        );
        let mut backoff = Backoff::default();
        let mut fatal = recovery::FatalStreak::new(settings.session_timeout, MAX_BACKOFF);
        while !stop.load(Ordering::Relaxed) {
            // A consumer outlives the pipeline's lives: starting over rewinds it to the
            // committed offsets instead of leaving and rejoining the group. Only a consumer
            // failed for good is replaced.
            let rebalanced = Arc::new(AtomicBool::new(false));
            let consumer = consumer(&settings, &telemetry, &rebalanced)?;
            while !stop.load(Ordering::Relaxed) {
                telemetry.progress();
                if telemetry.calls_blocked() > MAX_CALLS_BLOCKED {
                    bail!(
                        "{} transactional calls of abandoned producers are still blocked in librdkafka: starting \
                         the process afresh",
                        telemetry.calls_blocked()
                    );
                }
                let started = Instant::now();
                let life = Life::start(&settings, &telemetry, framing, &instance, &layout, &consumer, &rebalanced);
                let ended = life.and_then(|mut l| l.run(&stop));
                // Not ready again until the next life has restored its share.
                telemetry.ready(false);
                let error = match ended {
                    Ok(End::Stopped) => return Ok(()),
                    Ok(End::Rebalanced) => {
                        telemetry.rebalanced();
                        continue;
                    }
                    Err(e) => e,
                };
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Backoff::default();
                }
                let wait = backoff.next();
                let fatal_error = consumer.client().fatal_error();
                match &fatal_error {
                    Some((code, reason)) if !fatal.failed(Instant::now(), wait) => {
                        return Err(gave_up(&settings, &instance, *code, reason, &fatal));
                    }
                    Some((code, _)) => telemetry.consumer_recreated(&format!("{code:?}"), &format!("{error:#}"), wait),
                    None => telemetry.restarting(&format!("{error:#}")),
                }
                std::thread::sleep(wait);
                if fatal_error.is_some() {
                    break;
                }
            }
        }
        Ok(())
    })
    .await
    .context("the pipeline thread panicked")?
}

/// Why the process ends after its consumers kept failing for good.
fn gave_up(
    settings: &Settings,
    instance: &str,
    code: RDKafkaErrorCode,
    reason: &str,
    fatal: &recovery::FatalStreak,
) -> anyhow::Error {
    let lasted = fatal.length(Instant::now()).as_secs();
    if code == RDKafkaErrorCode::FencedInstanceId {
        anyhow!(
            "another process in consumer group {:?} uses kafka.instance_id {instance:?}: every new consumer was \
             fenced by it for {lasted} s, longer than the session timeout ({} s). Give each instance its own \
             kafka.instance_id",
            settings.config.kafka.group_id,
            settings.session_timeout.as_secs()
        )
    } else {
        anyhow!("the Kafka consumer failed for good again and again for {lasted} s ({code:?}): {reason}")
    }
}

fn owned_topics(settings: &Settings) -> Vec<TopicSpec<'_>> {
    let t = &settings.config.topics;
    let n = settings.config.kafka.partitions;
    vec![
        TopicSpec { name: &t.case_events, partitions: n, compacted: false, max_message_bytes: None },
        TopicSpec { name: &t.changelog, partitions: n, compacted: true, max_message_bytes: None },
        // A month's tally carries every open case's deadline: let it grow.
        TopicSpec { name: &t.partials, partitions: 1, compacted: true, max_message_bytes: Some(MAX_PRODUCED_BYTES) },
        TopicSpec { name: &t.snapshots, partitions: n, compacted: true, max_message_bytes: None },
        TopicSpec {
            name: &t.dead_letters,
            partitions: n,
            compacted: false,
            max_message_bytes: Some(MAX_PRODUCED_BYTES),
        },
    ]
}

/// The partition counts the pipeline relies on.
#[derive(Clone, Debug)]
struct Layout {
    /// Partitions of `case_events` and of the changelog: the counting partitions.
    counting_partitions: i32,
    /// Every input partition when the pipeline started.
    inputs: Vec<(String, i32)>,
    /// Largest payload a dead letter keeps.
    dead_letter_max_payload: usize,
}

impl Layout {
    fn check(settings: &Settings, partitions: &HashMap<String, i32>) -> Result<Layout> {
        let t = &settings.config.topics;
        let count = |name: &str| partitions.get(name).copied().unwrap_or(0);
        let counting_partitions = count(&t.case_events);
        if count(&t.changelog) != counting_partitions {
            bail!(
                "{} has {} partitions but {} has {}: partition p of the changelog holds the cases of partition p \
                 of the events, so both need the same count",
                t.changelog,
                count(&t.changelog),
                t.case_events,
                counting_partitions
            );
        }
        if count(&t.partials) != 1 {
            bail!("{} must have exactly one partition (it has {})", t.partials, count(&t.partials));
        }
        let inputs = t.inputs().iter().flat_map(|topic| (0..count(topic)).map(|p| (topic.to_string(), p))).collect();
        Ok(Layout { counting_partitions, inputs, dead_letter_max_payload: DEAD_LETTER_MAX_PAYLOAD })
    }
}

/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Waits between attempts: 0.5 s, doubling up to `MAX_BACKOFF`.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(Duration::from_millis(500))
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }
}

/// Turns the clients' connection errors into readiness (`/readyz` fails while no broker can
/// be reached, even while the loop waits inside a blocking transaction call), and notes that
/// the group moved partitions.
#[derive(Clone)]
struct KafkaEvents {
    telemetry: Telemetry,
    rebalanced: Arc<AtomicBool>,
    joined: Arc<AtomicBool>,
    /// Offset resets already reported.
    resets_seen: Arc<Mutex<HashSet<String>>>,
    /// Messages left to read per assigned partition, as of the latest statistics.
    lags: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

impl ClientContext for KafkaEvents {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // librdkafka only logs that a position was gone and it reset to the earliest offset:
        // input was lost, and that must show. Logged once per partition and position.
        if facility == "OFFSET" && message.contains("offset reset") {
            let position = message.split(" to offset").next().unwrap_or(message).to_owned();
            if self.resets_seen.lock().unwrap_or_else(|e| e.into_inner()).insert(position) {
                self.telemetry.offset_reset(&message);
            }
            return;
        }
        super::log_librdkafka(level, facility, message);
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
        self.telemetry.consumer_lag(lags.iter().map(|((topic, p), lag)| (topic.clone(), *p, *lag)));
        *self.lags.lock().unwrap_or_else(|e| e.into_inner()) = lags;
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                self.telemetry.kafka_unavailable(&error);
            }
            _ => tracing::error!(%error, reason, "Kafka client error"),
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

/// The pipeline consumer's settings: what exactness needs (refused in `[kafka.properties]`,
/// see `config.rs`), then defaults that the properties override.
fn consumer_config(settings: &Settings) -> ClientConfig {
    let config = &settings.config;
    let mut consumer_config = client_config(&config.kafka);
    if let Some(id) = &config.kafka.instance_id {
        consumer_config.set("group.instance.id", id);
    }
    consumer_config
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // A dead instance's partitions move to the others after this long.
        .set("session.timeout.ms", settings.session_timeout.as_millis().to_string())
        .set("heartbeat.interval.ms", settings.heartbeat_interval.as_millis().to_string())
        // Consumer lag per partition, for the metrics and to tell idle inputs.
        .set("statistics.interval.ms", "5000");
    // librdkafka pauses fetching a partition for this long whenever its local queue is over
    // its thresholds: at its default (1 s) the loop polled an empty queue half the time.
    set_default(&mut consumer_config, "fetch.queue.backoff.ms", "10");
    set_default(
        &mut consumer_config,
        "max.poll.interval.ms",
        &crate::config::DEFAULT_MAX_POLL_INTERVAL.as_millis().to_string(),
    );
    consumer_config
}

/// The transactional producer's settings, as `consumer_config`.
fn producer_config(settings: &Settings, instance: &str) -> ClientConfig {
    let kafka = &settings.config.kafka;
    let mut producer_config = client_config(kafka);
    producer_config.set("transactional.id", format!("{}-{instance}", kafka.group_id));
    // A dead letter must always fit: `[kafka.properties]` may raise this, never lower it.
    let max_bytes = producer_config.get("message.max.bytes").and_then(|v| v.parse::<usize>().ok());
    if max_bytes.is_none_or(|n| n < MAX_PRODUCED_BYTES) {
        producer_config.set("message.max.bytes", MAX_PRODUCED_BYTES.to_string());
    }
    // An instance that dies mid-transaction holds up its partitions' readers this long.
    set_default(&mut producer_config, "transaction.timeout.ms", "10000");
    set_default(&mut producer_config, "linger.ms", "5");
    set_default(&mut producer_config, "compression.type", "lz4");
    producer_config
}

fn consumer(
    settings: &Settings,
    telemetry: &Telemetry,
    rebalanced: &Arc<AtomicBool>,
) -> Result<BaseConsumer<KafkaEvents>> {
    let config = &settings.config;
    let consumer: BaseConsumer<KafkaEvents> = consumer_config(settings)
        .create_with_context(KafkaEvents {
            telemetry: telemetry.clone(),
            rebalanced: rebalanced.clone(),
            joined: Arc::default(),
            resets_seen: Arc::default(),
            lags: Arc::default(),
        })
        .context("creating the consumer")?;
    let t = &config.topics;
    let mut subscribed: Vec<&str> = t.inputs().to_vec();
    subscribed.extend([t.case_events.as_str(), t.partials.as_str()]);
    consumer.subscribe(&subscribed).context("subscribing")?;
    Ok(consumer)
}

/// How a life ended without an error.
enum End {
    Stopped,
    Rebalanced,
}

/// One life of the pipeline, from a restore to a failure, a rebalance or a stop.
struct Life<'a> {
    settings: &'a Settings,
    telemetry: &'a Telemetry,
    consumer: &'a BaseConsumer<KafkaEvents>,
    rebalanced: &'a AtomicBool,
    out: Output<'a>,
    ingest: ingest::Ingest,
    counting: count::Counting,
    publishing: Option<publish::Publishing>,
    /// Partitions stopped before a record this build cannot read, for the rest of this life.
    stopped: HashSet<(String, i32)>,
    /// Partitions an earlier life stopped, until a record of each is read.
    stopped_before: HashSet<(String, i32)>,
}

impl<'a> Life<'a> {
    fn start(
        settings: &'a Settings,
        telemetry: &'a Telemetry,
        framing: Framing,
        instance: &str,
        layout: &Layout,
        consumer: &'a BaseConsumer<KafkaEvents>,
        rebalanced: &'a AtomicBool,
    ) -> Result<Life<'a>> {
        let config = &settings.config;
        // One transactional id per instance: a restarted instance fences its predecessor, whose
        // open transaction is aborted. Instances fence each other's stale work through the
        // group's generation, sent with the offsets (KIP-447).
        let producer: ThreadedProducer<KafkaEvents> = producer_config(settings, instance)
            .create_with_context(KafkaEvents {
                telemetry: telemetry.clone(),
                rebalanced: Arc::default(),
                joined: Arc::default(),
                resets_seen: Arc::default(),
                lags: Arc::default(),
            })
            .context("creating the transactional producer")?;
        let out = Output {
            producer: Arc::new(producer),
            settings,
            telemetry,
            dead_letter_max_payload: layout.dead_letter_max_payload,
            in_transaction: Cell::new(false),
            call_deadline: TRANSACTION_TIMEOUT + CALL_GRACE,
            abandoned: Cell::new(false),
            committing: RefCell::new(None),
            held: RefCell::new(Vec::new()),
        };
        out.call("initialising transactions", |p| p.init_transactions(TRANSACTION_TIMEOUT))?;
        telemetry.progress();

        // Whatever the previous life did since its last commit will be done again.
        telemetry.discard_uncommitted();
        let t = &config.topics;
        // Rebalance callbacks run only inside `poll`: the share read here holds until the
        // next poll, which notices any change.
        rebalanced.store(false, Ordering::SeqCst);
        let assignment = consumer.assignment().context("reading the assignment")?;
        // Partitions an earlier life stopped are tried again.
        consumer.resume(&assignment).context("resuming the assignment")?;
        // Committed offsets first: with read_committed this waits for a previous owner's
        // pending transaction; the restore then reads the changelog until it covers them.
        let committed = if assignment.count() == 0 {
            TopicPartitionList::new()
        } else {
            consumer.committed_offsets(assignment, TRANSACTION_TIMEOUT).context("reading committed offsets")?
        };
        let counted: Vec<(i32, Option<i64>)> = committed
            .elements_for_topic(&t.case_events)
            .iter()
            .map(|p| (p.partition(), if let Offset::Offset(n) = p.offset() { Some(n) } else { None }))
            .collect();
        telemetry.progress();
        let counting = count::Counting::restore(settings, telemetry, &counted, &layout.inputs)?;
        let publishing = match committed.elements_for_topic(&t.partials).is_empty() {
            true => None,
            false => Some(publish::Publishing::restore(settings, telemetry, framing, layout.counting_partitions)?),
        };
        seek(consumer, &committed, &t.partials, publishing.as_ref().map(|p| p.next_offset))?;
        // What an earlier life stopped shows stopped until read past; partitions no longer
        // held (and changelog partitions restored now) stop showing.
        let mut stopped_before = HashSet::new();
        for (topic, p) in telemetry.stopped_partitions() {
            let held = committed.elements().iter().any(|a| {
                a.partition() == p && (a.topic() == topic || (topic == t.changelog && a.topic() == t.case_events))
            });
            if held && topic != t.changelog {
                stopped_before.insert((topic, p));
            } else if !(held && counting.unreadable.contains_key(&p)) {
                telemetry.partition_resumed(&topic, p);
            }
        }
        let mut stopped = HashSet::new();
        for (&p, (offset, why)) in &counting.unreadable {
            telemetry.partition_stopped(&t.changelog, p, *offset, why);
            pause(consumer, &t.case_events, p)?;
            stopped.insert((t.case_events.clone(), p));
        }
        if publishing.as_ref().is_some_and(|p| p.unreadable.is_none())
            && stopped_before.remove(&(t.partials.clone(), 0))
        {
            telemetry.partition_resumed(&t.partials, 0);
        }
        if let Some((offset, why)) = publishing.as_ref().and_then(|p| p.unreadable.as_ref()) {
            telemetry.partition_stopped(&t.partials, 0, *offset, why);
            pause(consumer, &t.partials, 0)?;
            stopped.insert((t.partials.clone(), 0));
        }
        let inputs: Vec<Source> = t
            .inputs()
            .iter()
            .flat_map(|topic| committed.elements_for_topic(topic))
            .map(|p| Source { topic: p.topic().to_owned(), partition: p.partition() })
            .collect();
        tracing::info!(
            counting_partitions = ?counted,
            publishing = publishing.is_some(),
            cases = counting.held().0,
            "state restored for this instance's partitions"
        );
        Ok(Life {
            settings,
            telemetry,
            consumer,
            rebalanced,
            out,
            ingest: ingest::Ingest::new(layout.counting_partitions, inputs),
            counting,
            publishing,
            stopped,
            stopped_before,
        })
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<End> {
        // Ready once the group has given this instance its share and its state is restored.
        self.telemetry.ready(self.consumer.context().joined.load(Ordering::SeqCst));
        let mut last_gauges = None::<Instant>;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let Some(offsets) = self.consume_batch(stopping)? else {
                self.out.abort();
                return Ok(End::Rebalanced);
            };
            self.commit(offsets, stopping)?;
            if last_gauges.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) || stopping {
                self.refresh_gauges();
                last_gauges = Some(Instant::now());
            }
            if stopping {
                tracing::info!("stopped after the last transaction");
                return Ok(End::Stopped);
            }
        }
    }

    fn refresh_gauges(&self) {
        let (held, waiting, bytes) = self.counting.held();
        self.telemetry.cases_held(held, waiting, bytes);
        self.telemetry.city_changed(self.publishing.as_ref().map(|p| p.city()));
    }

    /// Handles messages for up to one commit interval inside an open transaction, and returns
    /// the next offset of each partition read; `None` when the group moved partitions.
    fn consume_batch(&mut self, stopping: bool) -> Result<Option<HashMap<(String, i32), i64>>> {
        let mut offsets = HashMap::new();
        if stopping {
            return Ok(Some(offsets));
        }
        let t = &self.settings.config.topics;
        self.telemetry.progress();
        let deadline = Instant::now() + self.settings.commit_interval;
        let mut messages = 0;
        while messages < self.settings.config.limits.max_batch && Instant::now() < deadline {
            let polled = self.consumer.poll(deadline.saturating_duration_since(Instant::now()));
            self.telemetry.polled();
            if self.rebalanced.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let Some(polled) = polled else { break };
            let m = match polled {
                Ok(m) => m,
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => continue,
                // Failed for good: the caller replaces the consumer.
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => return Err(e).context("consuming"),
                Err(e) => {
                    self.telemetry.kafka_unavailable(&e);
                    continue;
                }
            };
            self.telemetry.kafka_available();
            if !self.stopped.is_empty() && self.stopped.contains(&(m.topic().to_owned(), m.partition())) {
                continue;
            }
            let unreadable = if m.topic() == t.case_events {
                self.counting.handle(&self.out, self.telemetry, &m)?
            } else if m.topic() == t.partials {
                match &mut self.publishing {
                    Some(p) => p.handle(&m),
                    None => bail!("a partials record arrived but this instance restored no publisher"),
                }
            } else {
                self.ingest.handle(&self.out, self.telemetry, &m)?;
                None
            };
            if unreadable.is_none()
                && !self.stopped_before.is_empty()
                && self.stopped_before.remove(&(m.topic().to_owned(), m.partition()))
            {
                self.telemetry.partition_resumed(m.topic(), m.partition());
            }
            if let Some(why) = unreadable {
                // Stopped before the record: its offset is what the transaction commits.
                self.telemetry.partition_stopped(m.topic(), m.partition(), m.offset(), &why);
                self.consumer
                    .seek(m.topic(), m.partition(), Offset::Offset(m.offset()), TRANSACTION_TIMEOUT)
                    .with_context(|| format!("seeking {}[{}] back", m.topic(), m.partition()))?;
                pause(self.consumer, m.topic(), m.partition())?;
                self.stopped.insert((m.topic().to_owned(), m.partition()));
                continue;
            }
            offsets.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            messages += 1;
        }
        Ok(Some(offsets))
    }

    /// Writes what the batch left owed (routing markers, changed cases, tallies, due
    /// snapshots) and starts committing it with the consumed offsets, once the previous
    /// commit has ended; when `stopping`, waits for this commit too.
    fn commit(&mut self, offsets: HashMap<(String, i32), i64>, stopping: bool) -> Result<()> {
        self.out.settle()?;
        let now = Instant::now();
        let lags = self.consumer.context().lags.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.ingest.send_markers(&self.out, &lags)?;
        self.counting.flush(&self.out, now, stopping)?;
        let mut published = Vec::new();
        if let Some(p) = &mut self.publishing {
            published = p.publish_due(&self.out, now)?;
        }
        let counting = &self.counting;
        self.out.commit(&offsets, self.consumer, |p| counting.covers(p), &published)?;
        if stopping {
            self.out.settle()?;
        }
        Ok(())
    }
}

/// Stops fetching one partition.
fn pause(consumer: &BaseConsumer<KafkaEvents>, topic: &str, partition: i32) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    consumer.pause(&tpl).with_context(|| format!("pausing {topic}[{partition}]"))
}

/// Moves every assigned partition to its committed offset (the beginning where none is
/// committed yet), dropping whatever was read after the last commit; the partials partition
/// goes to where the publisher's restore stopped reading.
fn seek(
    consumer: &BaseConsumer<KafkaEvents>,
    committed: &TopicPartitionList,
    partials: &str,
    partials_next: Option<i64>,
) -> Result<()> {
    if committed.count() == 0 {
        return Ok(());
    }
    let mut positions = TopicPartitionList::new();
    for p in committed.elements() {
        let offset = match (p.topic() == partials, partials_next, p.offset()) {
            (true, Some(next), _) => Offset::Offset(next),
            (_, _, Offset::Offset(n)) => Offset::Offset(n),
            _ => Offset::Beginning,
        };
        positions.add_partition_offset(p.topic(), p.partition(), offset)?;
    }
    for p in consumer.seek_partitions(positions, TRANSACTION_TIMEOUT)?.elements() {
        if let Err(e) = p.error() {
            return Err(e).with_context(|| format!("seeking {}[{}]", p.topic(), p.partition()));
        }
    }
    Ok(())
}

/// The transactional producer of one life. A transaction opens with its first record; its
/// commit runs while the loop goes on with the next batch, whose records wait in `held` until
/// that commit has ended (one producer has one transaction at a time).
struct Output<'a> {
    producer: Arc<ThreadedProducer<KafkaEvents>>,
    settings: &'a Settings,
    telemetry: &'a Telemetry,
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
struct HeldRecord {
    topic: String,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
}

/// A transactional call running on a thread of its own.
struct InFlight<T> {
    what: &'static str,
    result: std::sync::mpsc::Receiver<KafkaResult<T>>,
    state: Arc<AtomicU8>,
    deadline: Instant,
}

const RUNNING: u8 = 0;
const RETURNED: u8 = 1;
const ABANDONED: u8 = 2;

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
                    telemetry.abandoned_call_returned();
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
                self.telemetry.producer_abandoned(what, self.call_deadline);
                bail!("{what}: no answer from librdkafka in time; the producer is abandoned")
            }
            // It returned just now.
            Err(RecvTimeoutError::Timeout) => {
                result.recv().context("a transactional call's thread ended")?.context(what)
            }
        }
    }

    /// One blocking transactional call, waited for.
    fn call<T: Send + 'static>(
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

    fn send(&self, record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
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
    fn dead_letter(
        &self,
        rejection: &Rejection,
        origin: (&str, i32, i64),
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<()> {
        let (topic, partition, offset) = origin;
        let kept = payload.filter(|p| p.len() <= self.dead_letter_max_payload);
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: "hotline.reason", value: Some(&rejection.to_string()) })
            .insert(Header { key: "hotline.reason_kind", value: Some(rejection.kind()) })
            .insert(Header { key: "hotline.source_topic", value: Some(topic) })
            .insert(Header { key: "hotline.source_partition", value: Some(&partition.to_string()) })
            .insert(Header { key: "hotline.source_offset", value: Some(&offset.to_string()) });
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
    fn settle(&self) -> Result<()> {
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
                self.telemetry.kafka_available();
                Ok(())
            }
            Err(e) => {
                self.telemetry.transaction_aborted(&format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// Starts committing the open transaction (opening one if only offsets are to commit)
    /// with the consumed offsets; `settle` waits for it. `covers`: the next offset each counting
    /// partition's state covers; `published`: the publish latencies of the snapshots in it,
    /// where known.
    fn commit(
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
            self.telemetry.transaction_aborted(&format!("{e:#}"));
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
            telemetry.transaction_committed(sealed, snapshots, &latencies);
            Ok(())
        })
    }

    /// Lets the commit under way end, then aborts the open transaction, if any; records held
    /// for the next transaction are dropped.
    fn abort(&self) {
        self.held.borrow_mut().clear();
        if let Err(e) = self.settle() {
            tracing::warn!(error = %format!("{e:#}"), "the last commit failed");
        }
        if self.in_transaction.replace(false)
            && let Err(e) = self.call("aborting the transaction", |p| p.abort_transaction(TRANSACTION_TIMEOUT))
        {
            tracing::warn!(error = %format!("{e:#}"), "aborting the transaction");
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
    use super::*;
    use crate::config::Config;

    fn settings(kafka: &str) -> Settings {
        Config::parse(&format!("[kafka]\nbrokers = \"a:1\"\ninstance_id = \"hotline-0\"\n{kafka}"), [])
            .unwrap()
            .settings()
            .unwrap()
    }

    #[test]
    fn a_transactional_call_that_never_returns_abandons_the_producer() {
        let settings = settings("");
        let telemetry = Telemetry::new(Default::default());
        // Never contacted: the calls below do not reach librdkafka.
        let producer = ClientConfig::new().set("bootstrap.servers", "127.0.0.1:9").create_with_context(KafkaEvents {
            telemetry: telemetry.clone(),
            rebalanced: Arc::default(),
            joined: Arc::default(),
            resets_seen: Arc::default(),
            lags: Arc::default(),
        });
        let out = Output {
            producer: Arc::new(producer.unwrap()),
            settings: &settings,
            telemetry: &telemetry,
            dead_letter_max_payload: 0,
            in_transaction: Cell::new(false),
            call_deadline: Duration::from_millis(500),
            abandoned: Cell::new(false),
            committing: RefCell::new(None),
            held: RefCell::new(Vec::new()),
        };
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

    #[test]
    fn the_session_survives_a_broker_restart_by_default() {
        let c = consumer_config(&settings(""));
        assert_eq!(c.get("session.timeout.ms"), Some("45000"));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("3000"));
        assert_eq!(c.get("group.instance.id"), Some("hotline-0"));
        let c = consumer_config(&settings("session_timeout = \"20s\"\nheartbeat_interval = \"2s\"\n"));
        assert_eq!(c.get("session.timeout.ms"), Some("20000"));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("2000"));
    }

    #[test]
    fn kafka_properties_win_over_defaults() {
        let s = settings(
            "[kafka.properties]\n\"queue.buffering.max.ms\" = \"50\"\n\"compression.type\" = \"zstd\"\n\
             \"max.poll.interval.ms\" = \"600000\"\n\"transaction.timeout.ms\" = \"60000\"\n",
        );
        let p = producer_config(&s, "hotline-0");
        // Set under librdkafka's other name for linger.ms: not set twice.
        assert_eq!((p.get("queue.buffering.max.ms"), p.get("linger.ms")), (Some("50"), None));
        assert_eq!(p.get("compression.type"), Some("zstd"));
        assert_eq!(p.get("transaction.timeout.ms"), Some("60000"));
        assert_eq!(p.get("transactional.id"), Some("hotline-hotline-0"));
        assert_eq!(consumer_config(&s).get("max.poll.interval.ms"), Some("600000"));
        // Dead letters must fit: raised, never lowered.
        let small = settings("[kafka.properties]\n\"message.max.bytes\" = \"1000\"\n");
        assert_eq!(
            producer_config(&small, "i").get("message.max.bytes"),
            Some(MAX_PRODUCED_BYTES.to_string().as_str())
        );
        let large = settings("[kafka.properties]\n\"message.max.bytes\" = \"100000000\"\n");
        assert_eq!(producer_config(&large, "i").get("message.max.bytes"), Some("100000000"));
        // Untouched defaults stay.
        let d = producer_config(&settings(""), "hotline-0");
        assert_eq!(d.get("linger.ms"), Some("5"));
        assert_eq!(d.get("compression.type"), Some("lz4"));
        assert_eq!(consumer_config(&settings("")).get("fetch.queue.backoff.ms"), Some("10"));
    }
}
