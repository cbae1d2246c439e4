//! Growing the count of counting partitions of a stopped deployment (`hotline rescale`): every
//! case moves to the partition its id hashes to among the new count, and no case is lost or
//! counted twice.
//!
//! 1. No instance may run: the consumer group has no member.
//! 2. Every counting partition is restored from its changelog; the events routed to it and
//!    not yet counted are counted, and committed with its offsets and a progress record that
//!    names the old count (the drain).
//! 3. `case_events` and the changelog grow to the new count.
//! 4. One transaction moves the cases (a record on the new partition, a tombstone on the old),
//!    writes each new partition's progress, tallies and watermark (the old tallies
//!    tombstoned), and commits every `case_events` offset at its end.
//!
//! Until step 4 commits, the changelog says the old count, and `hotline run` refuses to start
//! on topics of another: a rescale stopped anywhere is finished by running it again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Settings;
use crate::domain::partition::{CountingPartition, repartition};
use crate::domain::routing::partition_of;
use crate::kafka::{client_config, topics};
use crate::records::{self, ChangelogKey, PartialKey};
use crate::telemetry::Telemetry;

use super::clients::{committed_offsets, consumer_config, offsets, producer_config};
use super::context::KafkaEvents;
use super::count::{self, Counting};
use super::guard::{BlockedCalls, CallGuard};
use super::layout::{DEAD_LETTER_MAX_PAYLOAD, Layout, owned_topics};
use super::transaction::{CALL_GRACE, Output};

/// How long the rescale's transactions may take: the move writes every case that moves.
const RESCALE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a metadata or group request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a rescale did.
#[derive(Debug, PartialEq, Eq)]
pub struct Rescaled {
    pub from: i32,
    pub to: i32,
    /// Cases held, and those that moved to another partition.
    pub cases: usize,
    pub moved: usize,
    /// Events routed but not yet counted, counted by the drain.
    pub drained: usize,
}

/// Grows the counting partitions to `to`; see the module's doc.
pub async fn rescale(settings: Settings, telemetry: Telemetry, to: i32) -> Result<Rescaled> {
    ensure!(to >= 1, "--partitions must be at least 1");
    let mut partitions = topics::ensure(&settings.kafka, &owned_topics(&settings)).await?;
    let t = &settings.topics;
    // A rescale stopped while growing the two topics: the shorter grows to the longer first.
    let (events, changelog) = (partitions[&t.case_events], partitions[&t.changelog]);
    if events != changelog {
        let longer = events.max(changelog);
        ensure!(
            longer == to,
            "{} has {events} partitions and {} {changelog}: finish that rescale with `hotline rescale \
             --partitions {longer}` first",
            t.case_events,
            t.changelog
        );
        grow(&settings, to).await?;
        partitions.insert(t.case_events.clone(), to);
        partitions.insert(t.changelog.clone(), to);
    }
    let layout = Layout::check(&settings, &partitions)?;
    if to < layout.counting_partitions {
        bail!(
            "{} has {} partitions: Kafka cannot take partitions away, so a rescale only grows the count",
            t.case_events,
            layout.counting_partitions
        );
    }
    let (settings, telemetry) = (Arc::new(settings), Arc::new(telemetry));
    let (s, tm) = (settings.clone(), telemetry.clone());
    let drained = tokio::task::spawn_blocking(move || Rescale::new(&s, &tm, layout)?.drain(to))
        .await
        .context("the rescale thread panicked")??;
    let Some(drained) = drained else {
        return Ok(Rescaled { from: to, to, cases: 0, moved: 0, drained: 0 });
    };
    grow(&settings, to).await?;
    let partitions = topics::ensure(&settings.kafka, &owned_topics(&settings)).await?;
    let layout = Layout::check(&settings, &partitions)?;
    tokio::task::spawn_blocking(move || Rescale::new(&settings, &telemetry, layout)?.move_cases(drained, to))
        .await
        .context("the rescale thread panicked")?
}

/// Grows `case_events` and the changelog to `to` partitions where they have fewer, and waits
/// until the brokers say so.
async fn grow(settings: &Settings, to: i32) -> Result<()> {
    let t = &settings.topics;
    let admin: AdminClient<DefaultClientContext> =
        client_config(&settings.kafka).create().context("creating the admin client")?;
    let partitions = |topic: &str| -> Result<i32> {
        let metadata = admin.inner().fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        Ok(metadata.topics().first().map_or(0, |t| t.partitions().len() as i32))
    };
    let mut short = Vec::new();
    for topic in [&t.case_events, &t.changelog] {
        if partitions(topic)? < to {
            short.push(NewPartitions::new(topic, to as usize));
        }
    }
    if !short.is_empty() {
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        for result in admin.create_partitions(&short, &options).await? {
            result.map_err(|(topic, e)| anyhow::anyhow!("growing {topic}: {e}"))?;
        }
    }
    let started = Instant::now();
    for topic in [&t.case_events, &t.changelog] {
        while partitions(topic)? < to {
            ensure!(started.elapsed() < REQUEST_TIMEOUT, "the brokers do not show {to} partitions of {topic} yet");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// What the drain leaves for the move: every counting partition's state, and the count it
/// was made for.
struct Drained {
    partitions: Vec<CountingPartition>,
    made_for: i32,
    events: usize,
}

struct Rescale<'a> {
    settings: &'a Settings,
    telemetry: &'a Telemetry,
    layout: Layout,
    consumer: BaseConsumer<KafkaEvents>,
}

impl<'a> Rescale<'a> {
    fn new(settings: &'a Settings, telemetry: &'a Telemetry, layout: Layout) -> Result<Rescale<'a>> {
        // Assigned by hand, outside the group's rebalances: the offsets it commits carry no
        // generation, which only an empty group takes.
        let consumer: BaseConsumer<KafkaEvents> = consumer_config(settings)
            .remove("group.instance.id")
            .create_with_context(KafkaEvents::new(telemetry))
            .context("creating the consumer")?;
        let rescale = Rescale { settings, telemetry, layout, consumer };
        rescale.no_instance_runs()?;
        Ok(rescale)
    }

    /// Checked at the start and before each commit: an instance started meanwhile would
    /// count on the state the rescale is moving.
    fn no_instance_runs(&self) -> Result<()> {
        let group = &self.settings.kafka.group_id;
        let groups = self.consumer.fetch_group_list(Some(group), REQUEST_TIMEOUT).context("describing the group")?;
        if let Some(g) = groups.groups().iter().find(|g| !g.members().is_empty()) {
            bail!(
                "consumer group {group} has {} members: stop every `hotline run` of this deployment before a rescale",
                g.members().len()
            );
        }
        Ok(())
    }

    /// Restores every counting partition, counts what was routed to it and not counted yet,
    /// and commits that; `None` when the state is already made for `to` partitions.
    fn drain(&self, to: i32) -> Result<Option<Drained>> {
        let t = &self.settings.topics;
        let topic_count = self.layout.counting_partitions;
        let committed = self.committed(topic_count)?;
        let mut counting =
            Counting::restore(self.settings, self.telemetry, topic_count, &committed, &self.layout.inputs)?;
        if let Some((p, (offset, why))) = counting.unreadable.iter().next() {
            bail!("changelog partition {p} holds a record this build cannot read at offset {offset}: {why}");
        }
        // The count the state was made for: the topics' until they were grown.
        let made_for = counting.made_for()?.unwrap_or(topic_count);
        if made_for == to && topic_count == to {
            return Ok(None);
        }
        ensure!(
            made_for == topic_count || topic_count == to,
            "the changelog was made for {made_for} counting partitions and {} has {topic_count}: finish that \
             rescale with `hotline rescale --partitions {topic_count}` first",
            t.case_events
        );
        // Partitions past that count were added since: they must hold nothing yet.
        for p in made_for..topic_count {
            let (_, high) = self.consumer.fetch_watermarks(&t.case_events, p, REQUEST_TIMEOUT)?;
            ensure!(
                high == 0
                    && counting.partitions().find(|(q, _)| *q == p).is_none_or(|(_, c)| c.ledgers().next().is_none()),
                "{}[{p}] holds records routed among {topic_count} partitions while the state was made for \
                 {made_for}: an instance ran on topics grown by hand; this rescale cannot place them",
                t.case_events
            );
        }
        counting.made_for_partitions(made_for);
        let committed: Vec<(i32, Option<i64>)> = committed.into_iter().filter(|(p, _)| *p < made_for).collect();
        let events = self.count_routed(&mut counting, &committed, made_for)?;
        let partitions = counting.into_partitions().into_values().take(made_for as usize).collect();
        Ok(Some(Drained { partitions, made_for, events }))
    }

    /// The committed offset of each `case_events` partition.
    fn committed(&self, partitions: i32) -> Result<Vec<(i32, Option<i64>)>> {
        let topic = &self.settings.topics.case_events;
        Ok(offsets(&committed_offsets(&self.consumer, topic, partitions, REQUEST_TIMEOUT)?.elements()))
    }

    /// A transactional producer of its own, which fences any other with its id; its offsets
    /// say they were committed for `counting_partitions`.
    fn output(&self, counting_partitions: i32) -> Result<Output<'a>> {
        let producer: ThreadedProducer<KafkaEvents> = producer_config(self.settings, "rescale")
            .set("transaction.timeout.ms", RESCALE_TIMEOUT.as_millis().to_string())
            .create_with_context(KafkaEvents::new(self.telemetry))
            .context("creating the transactional producer")?;
        let guard = CallGuard::new(producer, self.telemetry, RESCALE_TIMEOUT + CALL_GRACE, BlockedCalls::default());
        let t = &self.settings.topics;
        let dead_letters = (t.dead_letters.as_str(), DEAD_LETTER_MAX_PAYLOAD);
        let out = Output::new(guard, self.telemetry, dead_letters, (&t.case_events, counting_partitions));
        out.call("initialising transactions", |p| p.init_transactions(REQUEST_TIMEOUT))?;
        Ok(out)
    }

    /// Counts the events routed to the partitions but not counted yet, and commits them with
    /// each partition's offset at what its state covers; returns how many events it counted.
    fn count_routed(&self, counting: &mut Counting, committed: &[(i32, Option<i64>)], made_for: i32) -> Result<usize> {
        let t = &self.settings.topics;
        let out = self.output(made_for)?;
        let mut positions = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for (p, offset) in committed {
            let (_, high) = self.consumer.fetch_watermarks(&t.case_events, *p, REQUEST_TIMEOUT)?;
            if offset.unwrap_or(0) < high {
                positions.add_partition_offset(&t.case_events, *p, Offset::Offset(offset.unwrap_or(0)))?;
                ends.insert((t.case_events.clone(), *p), high);
            }
        }
        let mut events = 0;
        if positions.count() > 0 {
            self.consumer.assign(&positions).context("assigning case_events")?;
        }
        // Read to the end: the position passes the transaction markers no message shows.
        let started = Instant::now();
        while !ends.is_empty() && !self.read_to(&ends)? {
            ensure!(started.elapsed() < RESCALE_TIMEOUT, "case_events was not read to its end in {RESCALE_TIMEOUT:?}");
            let Some(m) = self.consumer.poll(Duration::from_millis(100)) else { continue };
            let m = m.context("reading case_events")?;
            if let Some(why) = counting.handle(&out, self.telemetry, &m)? {
                bail!(
                    "case_events[{}] holds a record this build cannot read at offset {}: {why}",
                    m.partition(),
                    m.offset()
                );
            }
            // A routed event has its case id for key; a marker has none.
            events += usize::from(m.key().is_some());
        }
        counting.flush(&out, Instant::now(), true)?;
        // Each partition commits at what its state covers, as the pipeline does.
        let offsets: HashMap<(String, i32), i64> = committed
            .iter()
            .filter_map(|(p, offset)| Some(((t.case_events.clone(), *p), counting.covers(*p).or(*offset)?)))
            .collect();
        self.commit(&out, &offsets)?;
        Ok(events)
    }

    /// Whether the consumer's position is at `ends` or past, on every partition it reads.
    fn read_to(&self, ends: &HashMap<(String, i32), i64>) -> Result<bool> {
        let positions = self.consumer.position().context("reading positions")?;
        Ok(positions.elements().iter().all(|p| match p.offset() {
            Offset::Offset(n) => ends.get(&(p.topic().to_owned(), p.partition())).is_none_or(|end| n >= *end),
            _ => false,
        }))
    }

    /// Moves each case of the drained partitions to its partition among `to`, in one
    /// transaction with every `case_events` offset at its end.
    fn move_cases(&self, drained: Drained, to: i32) -> Result<Rescaled> {
        let t = &self.settings.topics;
        let Drained { partitions: old, made_for, events } = drained;
        let out = self.output(to)?;
        let (mut cases, mut moved) = (0, 0);
        // Tombstones first: a key written again further down keeps its new value.
        for (p, partition) in old.iter().enumerate() {
            let p = p as i32;
            for (city, ledger) in partition.ledgers() {
                let city_key = partition.cities().key(city);
                for (case_id, _) in ledger.cases() {
                    cases += 1;
                    if partition_of(case_id, to) != p {
                        moved += 1;
                        let key = ChangelogKey::Case(city_key, case_id.to_owned()).to_string();
                        out.send_keyed(&t.changelog, p, &key, None)?;
                    }
                }
                for (month, _) in ledger.months() {
                    let key = PartialKey::Tally { partition: p, city: city_key, month }.to_string();
                    out.send_keyed(&t.partials, 0, &key, None)?;
                }
            }
        }
        let mut new = repartition(&old, to).map_err(|e| anyhow::anyhow!("moving the cases: {e:?}"))?;
        let mut ends = HashMap::new();
        let configured = t.inputs();
        for (q, partition) in new.iter_mut().enumerate() {
            let q = q as i32;
            let (_, end) = self.consumer.fetch_watermarks(&t.case_events, q, REQUEST_TIMEOUT)?;
            ends.insert((t.case_events.clone(), q), end);
            partition.resume(Some(end), &self.layout.inputs, &configured);
            for (city, ledger) in partition.ledgers() {
                let city_key = partition.cities().key(city);
                for (case_id, record) in ledger.cases() {
                    if partition_of(case_id, made_for) != q {
                        let key = ChangelogKey::Case(city_key, case_id.to_owned()).to_string();
                        out.send_keyed(&t.changelog, q, &key, Some(&records::encode_case(record, ledger.codes())))?;
                    }
                }
            }
            let flush = partition.flush(Instant::now(), true);
            // No watermark is further than an old partition's: nothing is evicted here.
            ensure!(flush.cases.is_empty() && flush.orphans.is_empty(), "a moved partition evicted cases");
            ensure!(flush.progress.is_some(), "a new partition writes its progress");
            count::write(&out, (&t.changelog, &t.partials), q, partition, flush)?;
        }
        self.commit(&out, &ends)?;
        Ok(Rescaled { from: made_for, to, cases, moved, drained: events })
    }

    /// Commits the open transaction with `offsets`, every record flushed first, unless an
    /// instance has started meanwhile.
    fn commit(&self, out: &Output<'_>, offsets: &HashMap<(String, i32), i64>) -> Result<()> {
        out.call("flushing", |p| p.flush(RESCALE_TIMEOUT))?;
        self.no_instance_runs()?;
        out.commit(offsets, &self.consumer, |_| None, &[])?;
        out.settle()
    }
}

/// The counts of partitions a restored state says it was made for.
impl Counting {
    fn made_for(&self) -> Result<Option<i32>> {
        let counts: BTreeMap<i32, Vec<i32>> = self.partitions().fold(BTreeMap::new(), |mut m, (p, c)| {
            if let Some(n) = c.made_for() {
                m.entry(n).or_insert_with(Vec::new).push(p);
            }
            m
        });
        match counts.len() {
            0 => Ok(None),
            1 => Ok(counts.into_keys().next()),
            _ => bail!("the changelog's partitions were made for different counts: {counts:?}"),
        }
    }
}
