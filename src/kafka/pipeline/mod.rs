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

mod clients;
mod context;
mod count;
mod ingest;
mod layout;
mod publish;
mod recovery;
mod transaction;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use tokio_util::sync::CancellationToken;

use crate::avro::Framing;
use crate::config::Settings;
use crate::domain::routing::Source;
use crate::telemetry::{
    CityRead, ConsumerRecreated, KafkaAvailable, KafkaUnavailable, PartitionResumed, PartitionStopped, PipelineEnded,
    PipelineRestarting, PipelineStarting, Polled, Rebalanced, StateMeasured, StateRestored,
    StoppedAfterLastTransaction, Telemetry,
};

use super::topics;
use clients::{consumer, pause, producer_config, seek};
use context::KafkaEvents;
use layout::{DEAD_LETTER_HEADROOM, Layout, owned_topics};
use transaction::Output;

pub use count::restore_ledger;
pub use layout::DEAD_LETTER_MAX_PAYLOAD;

const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a topic's configuration (a broker answers in milliseconds).
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A topic's `max.message.bytes` unless set otherwise.
pub(crate) const KAFKA_DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past `TRANSACTION_TIMEOUT` a transactional call may take before its producer is
/// abandoned.
const CALL_GRACE: Duration = Duration::from_secs(5);
/// Abandoned producers whose calls are still blocked, each holding its threads and buffers:
/// past this many the pipeline ends, for the process to start afresh.
const MAX_CALLS_BLOCKED: i64 = 3;

/// Runs the pipeline until `stop` is cancelled, starting over after failures. However it ends,
/// `/healthz` and `/readyz` fail from then on: the caller is to exit.
pub async fn run(settings: Settings, telemetry: Telemetry, framing: Framing, stop: CancellationToken) -> Result<()> {
    telemetry.watch_progress(settings.stalled_after);
    let ended = run_until_stopped(settings, telemetry.clone(), framing, stop.clone()).await;
    telemetry.emit(PipelineEnded { stopped: stop.is_cancelled(), error: ended.as_ref().err() });
    ended
}

async fn run_until_stopped(
    settings: Settings,
    telemetry: Telemetry,
    framing: Framing,
    stop: CancellationToken,
) -> Result<()> {
    // Kafka may not be up yet when we start: wait for it.
    let mut backoff = Backoff::default();
    let partitions = loop {
        telemetry.progress();
        match topics::ensure(&settings.config.kafka, &owned_topics(&settings)).await {
            Ok(p) => break p,
            Err(e) if !stop.is_cancelled() => {
                telemetry.emit(KafkaUnavailable { error: &format!("{e:#}") });
                tokio::time::sleep(backoff.next()).await;
            }
            Err(_) => return Ok(()),
        }
    };
    let mut layout = Layout::check(&settings, &partitions)?;
    // A dead-letter topic made before hotline may take less than it would create. A broker
    // that does not say is taken to have Kafka's default limit, so that no dead letter can be
    // refused.
    let dead_letters = &settings.config.topics.dead_letters;
    let described = match settings.dead_letter_topic_limit {
        Some(known) => Ok(known),
        None => topics::max_message_bytes(&settings.config.kafka, dead_letters, DESCRIBE_TIMEOUT).await,
    };
    let limit = match described {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), default = KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
                "could not read the dead-letter topic's max.message.bytes; assuming Kafka's default");
            KAFKA_DEFAULT_MAX_MESSAGE_BYTES
        }
    };
    layout.dead_letter_max_payload = limit.saturating_sub(DEAD_LETTER_HEADROOM).min(DEAD_LETTER_MAX_PAYLOAD);
    tokio::task::spawn_blocking(move || {
        let instance = settings.config.kafka.instance_id.clone().unwrap_or_else(|| crate::random_id("instance"));
        telemetry.emit(PipelineStarting {
            group_id: &settings.config.kafka.group_id,
            transactional_id: &format!("{}-{instance}", settings.config.kafka.group_id),
            static_membership: settings.config.kafka.instance_id.is_some(),
        });
        let mut backoff = Backoff::default();
        let mut fatal = recovery::FatalStreak::new(settings.session_timeout, MAX_BACKOFF);
        while !stop.is_cancelled() {
            // A consumer outlives the pipeline's lives: starting over rewinds it to the
            // committed offsets instead of leaving and rejoining the group. Only a consumer
            // failed for good is replaced.
            let rebalanced = Arc::new(AtomicBool::new(false));
            let consumer = consumer(&settings, &telemetry, &rebalanced)?;
            while !stop.is_cancelled() {
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
                        telemetry.emit(Rebalanced);
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
                    Some((code, _)) => telemetry.emit(ConsumerRecreated {
                        reason: &format!("{code:?}"),
                        error: &format!("{error:#}"),
                        wait,
                    }),
                    None => telemetry.emit(PipelineRestarting { error: &format!("{error:#}") }),
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
        let out = Output::new(
            producer,
            settings,
            telemetry,
            layout.dead_letter_max_payload,
            TRANSACTION_TIMEOUT + CALL_GRACE,
        );
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
                telemetry.emit(PartitionResumed { topic: &topic, partition: p });
            }
        }
        let mut stopped = HashSet::new();
        for (&p, (offset, why)) in &counting.unreadable {
            telemetry.emit(PartitionStopped { topic: &t.changelog, partition: p, offset: *offset, why });
            pause(consumer, &t.case_events, p)?;
            stopped.insert((t.case_events.clone(), p));
        }
        if publishing.as_ref().is_some_and(|p| p.unreadable.is_none())
            && stopped_before.remove(&(t.partials.clone(), 0))
        {
            telemetry.emit(PartitionResumed { topic: &t.partials, partition: 0 });
        }
        if let Some((offset, why)) = publishing.as_ref().and_then(|p| p.unreadable.as_ref()) {
            telemetry.emit(PartitionStopped { topic: &t.partials, partition: 0, offset: *offset, why });
            pause(consumer, &t.partials, 0)?;
            stopped.insert((t.partials.clone(), 0));
        }
        let inputs: Vec<Source> = t
            .inputs()
            .iter()
            .flat_map(|topic| committed.elements_for_topic(topic))
            .map(|p| Source { topic: p.topic().to_owned(), partition: p.partition() })
            .collect();
        telemetry.emit(StateRestored {
            counting_partitions: &counted,
            publishing: publishing.is_some(),
            cases: counting.held().0,
        });
        Ok(Life {
            settings,
            telemetry,
            consumer,
            rebalanced,
            out,
            ingest: ingest::Ingest::new(settings, layout.counting_partitions, inputs),
            counting,
            publishing,
            stopped,
            stopped_before,
        })
    }

    fn run(&mut self, stop: &CancellationToken) -> Result<End> {
        // Ready once the group has given this instance its share and its state is restored.
        self.telemetry.ready(self.consumer.context().joined.load(Ordering::SeqCst));
        let mut last_gauges = None::<Instant>;
        loop {
            let stopping = stop.is_cancelled();
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
                self.telemetry.emit(StoppedAfterLastTransaction);
                return Ok(End::Stopped);
            }
        }
    }

    fn refresh_gauges(&mut self) {
        let (held, waiting, bytes) = self.counting.held();
        self.telemetry.emit(StateMeasured { cases: held, waiting_for_created: waiting, bytes });
        self.telemetry.emit(CityRead(self.publishing.as_mut().map(|p| p.city())));
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
        // One reading of the clock per message: a wall-clock time for the batch (which lasts at
        // most a commit interval) and the monotonic time after each poll.
        let (mut now, wall) = (Instant::now(), jiff::Timestamp::now());
        let deadline = now + self.settings.commit_interval;
        let mut messages = 0;
        while messages < self.settings.config.limits.max_batch && now < deadline {
            let polled = self.consumer.poll(deadline.saturating_duration_since(now));
            now = Instant::now();
            self.telemetry.emit(Polled);
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
                    self.telemetry.emit(KafkaUnavailable { error: &e });
                    continue;
                }
            };
            self.telemetry.emit(KafkaAvailable);
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
                self.ingest.handle(&self.out, self.telemetry, &m, wall, now)?;
                None
            };
            if unreadable.is_none()
                && !self.stopped_before.is_empty()
                && self.stopped_before.remove(&(m.topic().to_owned(), m.partition()))
            {
                self.telemetry.emit(PartitionResumed { topic: m.topic(), partition: m.partition() });
            }
            if let Some(why) = unreadable {
                // Stopped before the record: its offset is what the transaction commits.
                self.telemetry.emit(PartitionStopped {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    why: &why,
                });
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
