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
mod guard;
mod ingest;
mod layout;
mod owner;
mod publish;
mod recovery;
mod rescale;
mod restore;
mod stopped;
mod supervise;
mod transaction;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;

use tokio_util::sync::CancellationToken;

use crate::avro::Framing;
use crate::config::Settings;
use crate::telemetry::{
    CitiesRead, KafkaAvailable, KafkaUnavailable, PipelineEnded, Polled, StateMeasured, StoppedAfterLastTransaction,
    Telemetry,
};

use clients::pause;
use context::KafkaEvents;
use stopped::StoppedPartitions;
use transaction::{Output, TRANSACTION_TIMEOUT};

pub use count::restore_ledger;
pub use layout::{DEAD_LETTER_MAX_PAYLOAD, KAFKA_DEFAULT_MAX_MESSAGE_BYTES};
pub use owner::{refuse_another_owner, take_over};
pub(crate) use publish::publishers;
pub use rescale::{Rescaled, rescale};

/// Runs the pipeline until `stop` is cancelled, starting over after failures. However it ends,
/// `/healthz` and `/readyz` fail from then on: the caller is to exit.
pub async fn run(settings: Settings, telemetry: Telemetry, framing: Framing, stop: CancellationToken) -> Result<()> {
    telemetry.watch_progress(settings.stalled_after);
    let ended = supervise::run_until_stopped(settings, telemetry.clone(), framing, stop.clone()).await;
    telemetry.emit(PipelineEnded { stopped: stop.is_cancelled(), error: ended.as_ref().err() });
    ended
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
    /// Partitions stopped before a record this build cannot read, over every life.
    stopped: &'a mut StoppedPartitions,
}

impl<'a> Life<'a> {
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
        self.telemetry.emit(CitiesRead(self.publishing.as_mut().map(|p| p.cities())));
    }

    /// Handles messages for up to one commit interval inside an open transaction, and returns
    /// the next offset of each partition read; `None` when the group moved partitions.
    fn consume_batch(&mut self, stopping: bool) -> Result<Option<HashMap<(String, i32), i64>>> {
        let mut offsets = HashMap::new();
        if stopping {
            return Ok(Some(offsets));
        }
        let t = &self.settings.topics;
        self.telemetry.progress();
        // One reading of the clock per message: a wall-clock time for the batch (which lasts at
        // most a commit interval) and the monotonic time after each poll.
        let (mut now, wall) = (Instant::now(), jiff::Timestamp::now());
        let deadline = now + self.settings.commit_interval;
        let mut messages = 0;
        while messages < self.settings.limits.max_batch && now < deadline {
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
            if self.stopped.skips(m.topic(), m.partition()) {
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
            if let Some(why) = unreadable {
                // Stopped before the record: its offset is what the transaction commits.
                self.stopped.stop(m.topic(), m.partition(), m.offset(), &why, self.telemetry);
                self.consumer
                    .seek(m.topic(), m.partition(), Offset::Offset(m.offset()), TRANSACTION_TIMEOUT)
                    .with_context(|| format!("seeking {}[{}] back", m.topic(), m.partition()))?;
                pause(self.consumer, m.topic(), m.partition())?;
                continue;
            }
            self.stopped.read(m.topic(), m.partition(), self.telemetry);
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
