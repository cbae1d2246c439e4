//! `hotline recount`'s shell: the input topics read from a month on to their current end, and
//! counted in memory by the live pipeline's core, on every core.
//!
//! ```text
//!  poll (this thread) ──► decode: a Router per thread, ──► count: a thread per counting ──► Recount.due
//!   raw bytes, batched     input partitions split           partition, flushed every     (this thread)
//!   by input partition     among `--threads` threads        second and at the end
//! ```
//!
//! Each input partition is decoded by one thread, so its events keep their order, and each
//! counting partition is counted by one, so the state needs no lock. Nothing is written to
//! Kafka: no changelog, no internal topic, no transaction. Dead letters are counted by reason,
//! not written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use jiff::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Settings;
use crate::domain::event::Rejection;
use crate::domain::month::Month;
use crate::domain::partition::{CountingPartition, PARTIAL_INTERVAL};
use crate::domain::province::CityCode;
use crate::domain::recount::Recount;
use crate::domain::routing::{Input, Routed, Router, Source};
use crate::domain::snapshot::Snapshot;

use super::topics::ReadToEnd;

/// What to recount.
#[derive(Clone, Debug)]
pub struct Job {
    /// Read with these rules (`min_interval` is ignored: revisions follow `Recount::due`).
    pub settings: Settings,
    pub from: Month,
    pub to: Option<Month>,
    /// Reading starts this long before `from`'s start in Kafka time, for events whose Kafka
    /// timestamp is earlier than their own.
    pub margin: Duration,
    /// Counting partitions; by default the live pipeline's (`case_events`' partitions, or
    /// `kafka.partitions` before it exists), so codes past the registry's bound fold as live.
    pub counting_partitions: Option<i32>,
    /// Revisions continue from those on this topic (publishing to the live snapshots topic).
    pub continue_revisions_of: Option<String>,
    /// Decoding threads; each counting partition has a thread of its own.
    pub threads: usize,
    /// No message and no end of a partition for this long is an error.
    pub stall_timeout: Duration,
}

/// How far the reading has got.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub read: u64,
    /// Messages between the start offsets and the ends taken when reading began.
    pub total: u64,
    pub elapsed: Duration,
}

/// What a recount did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub messages: u64,
    /// The dead letters the live pipeline writes for this input, by reason.
    pub dead_letters: BTreeMap<&'static str, u64>,
    /// Events of months before `from`, not counted.
    pub before_from: u64,
    /// Events of cases whose `created` was not read, when reading did not start at the
    /// beginning of every input partition: created before the first month read, or never
    /// (the live pipeline dead-letters the latter as `never_created`).
    pub created_unread: u64,
    pub snapshots: usize,
    /// Cases held in memory at the end, over every counting partition.
    pub cases_held: usize,
    /// From the start until the first snapshot was handed over.
    pub first_snapshot: Option<Duration>,
    pub elapsed: Duration,
    /// The input partitions read, and the counting partitions.
    pub input_partitions: usize,
    pub counting_partitions: i32,
}

/// Messages handed to a decoding thread at once.
const BATCH: usize = 2048;

/// Messages read between two readings of the clock.
const CLOCK_EVERY: usize = 512;

/// Raw messages of the input partitions one decoding thread owns.
#[derive(Default)]
struct RawBatch {
    /// (index of its input partition, offset, Kafka timestamp, end of its payload in `bytes`)
    messages: Vec<(usize, i64, Option<i64>, usize)>,
    bytes: Vec<u8>,
}

enum ToDecoder {
    Batch(RawBatch),
    /// The input partition (its index) has been read to its end.
    Done(usize),
}

enum ToCounter {
    Records(Vec<Routed>),
    /// One decoding thread has sent everything.
    End,
}

enum Report {
    /// What a flush of a counting partition wrote for `partials`, and its uncounted facts.
    Flushed(i32, crate::domain::partition::Flush),
    /// A counting thread's rejections by reason, the events before `from`, and the cases it
    /// holds at the end.
    Done(BTreeMap<&'static str, u64>, u64, usize),
}

/// Reads and counts; hands every due snapshot to `publish` (with the city it names, `None`
/// for the province's) and tells `progress` how far the reading has got, about four times a
/// second.
pub fn recount(
    job: &Job,
    mut publish: impl FnMut(Option<CityCode>, &Snapshot) -> Result<()>,
    mut progress: impl FnMut(Reading),
) -> Result<Outcome> {
    let started = Instant::now();
    // Revisions follow `Recount::due`, never the wall clock.
    let settings = &Settings { min_interval: Duration::ZERO, ..job.settings.clone() };
    let consumer = consumer(settings)?;
    let inputs = start_and_end(&consumer, settings, job)?;
    let total: u64 = inputs.iter().map(|i| (i.end - i.start).max(0) as u64).sum();
    let sources: Arc<Vec<Source>> = Arc::new(inputs.iter().map(|i| i.source.clone()).collect());

    let threads = job.threads.max(1);
    let n = match job.counting_partitions {
        Some(n) => n,
        None => super::topics::partitions_of(&consumer, &settings.topics.case_events, job.stall_timeout)?
            .unwrap_or(settings.kafka.partitions),
    };
    let cities = settings.cities();
    let (report_tx, report_rx) = mpsc::channel::<Report>();
    let mut counter_txs = Vec::new();
    let mut counters = Vec::new();
    // A thread per counting partition: partitions are few, and a thread waiting on its
    // channel costs nothing.
    let all: Vec<(String, i32)> = sources.iter().map(|s| (s.topic.to_string(), s.partition)).collect();
    for partition in 0..n {
        let (tx, rx) = mpsc::sync_channel::<ToCounter>(8);
        counter_txs.push(tx);
        let mut counting = CountingPartition::new(cities.clone(), n, settings.retention_months).without_changelog();
        counting.resume(None, &all, &settings.topics.inputs());
        counting.count_from(job.from);
        let (report, zone, from) = (report_tx.clone(), settings.zone.clone(), job.from);
        counters.push(spawn(format!("recount-count-{partition}"), move || {
            count(rx, partition, counting, threads, report, &zone, from)
        })?);
    }
    drop(report_tx);
    let mut decoder_txs = Vec::new();
    let mut decoders = Vec::new();
    for d in 0..threads {
        let (tx, rx) = mpsc::sync_channel::<ToDecoder>(4);
        decoder_txs.push(tx);
        let mut router = Router::new(n, cities.clone(), settings.limits.max_message_bytes, settings.max_future);
        for (i, source) in sources.iter().enumerate() {
            if i % threads == d {
                router.track(source.clone(), Instant::now());
            }
        }
        let (sources, counters) = (sources.clone(), counter_txs.clone());
        decoders.push(spawn(format!("recount-decode-{d}"), move || decode(rx, router, &sources, &counters))?);
    }
    drop(counter_txs);

    let mut publishers = crate::kafka::pipeline::publishers(settings, &cities);
    if let Some(topic) = &job.continue_revisions_of {
        let codec = crate::avro::SnapshotCodec::new(crate::avro::Framing::SingleObject);
        super::topics::read_to_end(&settings.kafka, topic, job.stall_timeout, |m| {
            match m.payload().map(|bytes| codec.decode(bytes)) {
                Some(Ok(s)) => publishers.restore(cities.of_key(s.city), &s),
                // Its month's revisions would start again from 1.
                Some(Err(e)) => bail!("{topic} holds a snapshot this build cannot read at offset {}: {e}", m.offset()),
                None => {}
            }
            Ok(())
        })?;
    }
    let mut recount = Recount::new(cities, publishers, n as usize, settings.retention_months, job.from, job.to);
    let mut outcome = Outcome { input_partitions: inputs.len(), counting_partitions: n, ..Outcome::default() };
    let mut handed = |due: Vec<(Option<CityCode>, Snapshot)>, outcome: &mut Outcome| -> Result<()> {
        for (city, snapshot) in &due {
            publish(*city, snapshot)?;
            outcome.snapshots += 1;
            outcome.first_snapshot.get_or_insert_with(|| started.elapsed());
        }
        Ok(())
    };
    // Cases evicted without their `created` never had one only if nothing before was skipped.
    let read_from_beginning = inputs.iter().all(|i| i.from_beginning);
    let take = |report: Report, recount: &mut Recount, outcome: &mut Outcome| match report {
        Report::Flushed(partition, flush) => {
            let orphans = flush.orphans.len() as u64;
            if read_from_beginning && orphans > 0 {
                *outcome.dead_letters.entry(Rejection::NeverCreated.kind()).or_default() += orphans;
            } else {
                outcome.created_unread += orphans;
            }
            recount.take(partition, flush.tallies, flush.watermark);
        }
        Report::Done(rejected, before_from, cases_held) => {
            outcome.cases_held += cases_held;
            for (reason, n) in rejected {
                *outcome.dead_letters.entry(reason).or_default() += n;
            }
            outcome.before_from += before_from;
        }
    };

    // Reading, on this thread: raw bytes to the thread that decodes their input partition.
    let mut index: Vec<(&str, Vec<Option<usize>>)> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let at = match index.iter().position(|(topic, _)| **topic == *s.topic) {
            Some(at) => at,
            None => {
                index.push((&s.topic, Vec::new()));
                index.len() - 1
            }
        };
        let partitions = &mut index[at].1;
        partitions.resize(partitions.len().max(s.partition as usize + 1), None);
        partitions[s.partition as usize] = Some(i);
    }
    let index_of = |topic: &str, partition: i32| {
        let (_, partitions) = index.iter().find(|(t, _)| *t == topic)?;
        *partitions.get(usize::try_from(partition).ok()?)?
    };
    let mut batches: Vec<RawBatch> = (0..threads).map(|_| RawBatch::default()).collect();
    let mut done = vec![false; inputs.len()];
    for (i, input) in inputs.iter().enumerate() {
        if input.start >= input.end {
            done[i] = true;
            send(&decoder_txs[i % threads], ToDecoder::Done(i))?;
        }
    }
    let mut remaining = done.iter().filter(|d| !**d).count();
    let (mut last_progress, mut last_news, mut read_then) = (Instant::now(), Instant::now(), 0);
    let mut since_clock = 0;
    while remaining > 0 {
        let mut finished = Vec::new();
        since_clock += 1;
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => match index_of(m.topic(), m.partition()) {
                // Past the end taken at the start (after a transaction's marker): not read.
                Some(i) if !done[i] && m.offset() >= inputs[i].end => finished.push(i),
                Some(i) if !done[i] => {
                    outcome.messages += 1;
                    let batch = &mut batches[i % threads];
                    batch.bytes.extend_from_slice(m.payload().unwrap_or_default());
                    batch.messages.push((i, m.offset(), m.timestamp().to_millis(), batch.bytes.len()));
                    if batch.messages.len() >= BATCH {
                        send(&decoder_txs[i % threads], ToDecoder::Batch(std::mem::take(batch)))?;
                    }
                    if m.offset() >= inputs[i].end - 1 {
                        finished.push(i);
                    }
                }
                _ => {}
            },
            // A partition's end (librdkafka names only its number): those whose position has
            // reached the end taken at the start, past a transaction's last marker.
            Some(Err(KafkaError::PartitionEOF(p))) => {
                let positions = consumer.position()?;
                for (i, input) in inputs.iter().enumerate() {
                    let at = positions.find_partition(&input.source.topic, p).and_then(|e| e.offset().to_raw());
                    if !done[i] && input.source.partition == p && at.is_some_and(|at| at >= input.end) {
                        finished.push(i);
                    }
                }
            }
            // The first offset is gone (retention deleted it while the recount started):
            // history would be missing.
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                bail!("an input partition's first offset to read was deleted: try a later --from")
            }
            Some(Err(e)) => tracing::warn!(error = %e, "while recounting"),
            None => since_clock = CLOCK_EVERY,
        }
        for i in finished {
            done[i] = true;
            remaining -= 1;
            // Its new messages are not wanted: stop fetching them.
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&inputs[i].source.topic, inputs[i].source.partition);
            consumer.pause(&tpl)?;
            let d = i % threads;
            send(&decoder_txs[d], ToDecoder::Batch(std::mem::take(&mut batches[d])))?;
            send(&decoder_txs[d], ToDecoder::Done(i))?;
            last_news = Instant::now();
        }
        // The clock is read every so many messages, not for each.
        if since_clock < CLOCK_EVERY {
            continue;
        }
        since_clock = 0;
        if last_progress.elapsed() >= Duration::from_millis(250) {
            last_progress = Instant::now();
            let read = outcome.messages;
            progress(Reading { read, total, elapsed: started.elapsed() });
            let mut any = false;
            while let Ok(report) = report_rx.try_recv() {
                take(report, &mut recount, &mut outcome);
                any = true;
            }
            if any {
                handed(recount.due(false, Timestamp::now()), &mut outcome)?;
            }
            if read > read_then || any {
                last_news = last_news.max(Instant::now());
            }
            read_then = read;
        }
        if last_news.elapsed() > job.stall_timeout {
            bail!("no message from the input topics for {:?}: are the brokers reachable?", job.stall_timeout);
        }
    }
    for (d, tx) in decoder_txs.into_iter().enumerate() {
        send(&tx, ToDecoder::Batch(std::mem::take(&mut batches[d])))?;
    }
    progress(Reading { read: outcome.messages, total, elapsed: started.elapsed() });
    for report in report_rx {
        take(report, &mut recount, &mut outcome);
    }
    for thread in counters {
        thread.join().map_err(|_| anyhow!("a recount thread panicked"))??;
    }
    for thread in decoders {
        for (reason, n) in thread.join().map_err(|_| anyhow!("a recount thread panicked"))?? {
            *outcome.dead_letters.entry(reason).or_default() += n;
        }
    }
    consumer.context().done();
    handed(recount.due(true, Timestamp::now()), &mut outcome)?;
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

struct InputRange {
    source: Source,
    start: i64,
    /// The offset after the last message when reading began.
    end: i64,
    /// `start` is the partition's first offset kept.
    from_beginning: bool,
}

fn consumer(settings: &Settings) -> Result<BaseConsumer<ReadToEnd>> {
    let mut config = super::topics::reader_config(&settings.kafka, &format!("{}-recount", settings.kafka.group_id));
    // A first offset deleted before it is read is an error, never a jump to the end.
    config.set("auto.offset.reset", "error");
    config.create_with_context(ReadToEnd::default()).context("creating the recount's consumer")
}

/// Each input partition's first offset at `from` less the margin, and its current end; the
/// consumer is assigned them.
fn start_and_end(consumer: &BaseConsumer<ReadToEnd>, settings: &Settings, job: &Job) -> Result<Vec<InputRange>> {
    let timeout = job.stall_timeout;
    let since = job.from.start(&settings.zone).as_millisecond() - job.margin.as_millis() as i64;
    let mut wanted = TopicPartitionList::new();
    for topic in settings.topics.inputs() {
        let Some(count) = super::topics::partitions_of(consumer, topic, timeout)? else {
            bail!("the input topic {topic} does not exist");
        };
        for p in 0..count {
            wanted.add_partition_offset(topic, p, Offset::Offset(since.max(0)))?;
        }
    }
    let starts = consumer.offsets_for_times(wanted, timeout).context("looking up offsets by time")?;
    let mut inputs = Vec::new();
    let mut assigned = TopicPartitionList::new();
    for e in starts.elements() {
        let (topic, partition) = (e.topic().to_owned(), e.partition());
        let (low, high) = consumer.fetch_watermarks(&topic, partition, timeout).context("reading the input's ends")?;
        e.error().with_context(|| format!("looking up {topic} [{partition}]'s offset for the first month"))?;
        let start = match e.offset() {
            Offset::Offset(o) => o,
            // No message at or after the time: nothing to read.
            Offset::End => high,
            other => bail!("{topic} [{partition}] has no offset for the first month: {other:?}"),
        };
        let start = start.max(low);
        assigned.add_partition_offset(&topic, partition, Offset::Offset(start))?;
        let source = Source { topic: topic.into(), partition };
        inputs.push(InputRange { source, start, end: high, from_beginning: start == low });
    }
    consumer.assign(&assigned)?;
    Ok(inputs)
}

fn spawn<T: Send + 'static>(name: String, f: impl FnOnce() -> T + Send + 'static) -> Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name).spawn(f).context("starting a recount thread")
}

fn send<T>(tx: &SyncSender<T>, item: T) -> Result<()> {
    tx.send(item).map_err(|_| anyhow!("a recount thread ended early"))
}

/// A decoding thread: routes its input partitions' events to the counting threads and tells
/// them how far each input partition has got.
fn decode(
    rx: Receiver<ToDecoder>,
    mut router: Router,
    sources: &[Source],
    counters: &[SyncSender<ToCounter>],
) -> Result<BTreeMap<&'static str, u64>> {
    let mut out: Vec<Vec<Routed>> = vec![Vec::new(); counters.len()];
    let mut rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
    for work in rx {
        let now = Instant::now();
        match work {
            ToDecoder::Batch(batch) => {
                let wall_now = Timestamp::now();
                let mut begin = 0;
                for (i, offset, timestamp, end) in batch.messages {
                    let payload = &batch.bytes[begin..end];
                    begin = end;
                    // The clock the live pipeline read the message by, as near as the input tells
                    // (never later than now: a producer's clock running ahead moves no watermark).
                    let wall = timestamp
                        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
                        .map_or(wall_now, |t| t.min(wall_now));
                    let input = Input { source: &sources[i], offset, timestamp, payload };
                    match router.route(input, wall, now) {
                        Ok((to, routed)) => out[to as usize].push(routed),
                        Err(rejection) => *rejected.entry(rejection.kind()).or_default() += 1,
                    }
                }
            }
            ToDecoder::Done(i) => router.mark_idle(now, Duration::ZERO, |s| *s == sources[i]),
        }
        for (to, marker) in router.markers() {
            out[to as usize].push(marker);
        }
        for (c, records) in out.iter_mut().enumerate() {
            if !records.is_empty() {
                send(&counters[c], ToCounter::Records(std::mem::take(records)))?;
            }
        }
    }
    for counter in counters {
        send(counter, ToCounter::End)?;
    }
    Ok(rejected)
}

/// A counting thread: applies its counting partition's records, and flushes it every second
/// and at the end.
fn count(
    rx: Receiver<ToCounter>,
    partition: i32,
    mut counting: CountingPartition,
    decoders: usize,
    report: Sender<Report>,
    zone: &jiff::tz::TimeZone,
    from: Month,
) -> Result<()> {
    let mut rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut before_from = 0;
    let mut ended = 0;
    let mut flushed = Instant::now();
    let flush = |counting: &mut CountingPartition, now: Instant, stopping: bool| -> Result<()> {
        let flush = counting.flush(now, stopping);
        report.send(Report::Flushed(partition, flush)).map_err(|_| anyhow!("the recount ended early"))
    };
    for work in rx {
        match work {
            ToCounter::Records(records) => {
                for routed in &records {
                    let offset = routed.event.as_ref().map_or(0, |e| e.offset);
                    if let Some(Err(rejection)) = counting.apply(offset, routed) {
                        let event = routed.event.as_ref().map(|e| &e.event);
                        if rejection == Rejection::MonthEvicted
                            && event.is_some_and(|e| Month::containing(e.occurred_at, zone) < from)
                        {
                            before_from += 1;
                        } else {
                            *rejected.entry(rejection.kind()).or_default() += 1;
                        }
                    }
                }
            }
            ToCounter::End => {
                ended += 1;
                if ended == decoders {
                    break;
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(flushed) >= PARTIAL_INTERVAL {
            flushed = now;
            flush(&mut counting, now, false)?;
        }
    }
    flush(&mut counting, Instant::now(), true)?;
    let held = counting.ledgers().map(|(_, ledger)| ledger.cases_held()).sum();
    report.send(Report::Done(rejected, before_from, held)).map_err(|_| anyhow!("the recount ended early"))?;
    Ok(())
}
