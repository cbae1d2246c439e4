//! Counting: this instance's partitions of the internal topic, each a
//! `domain::partition::CountingPartition`.
//!
//! Partition p of `case_events` holds every event of the cases that hash to p, and partition
//! p of the changelog holds their records, so a partition's state moves with the partition:
//! on assignment it is rebuilt from its changelog partition. Each partition also tells the
//! publisher its monthly tallies and its watermark through the `partials` topic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::message::{BorrowedMessage, Message};

use crate::config::{KafkaConfig, Settings};
use crate::domain::case::{Applied, CountingRules};
use crate::domain::event::Rejection;
use crate::domain::ledger::Ledger;
use crate::domain::partition::{CountingPartition, Flush, Unrestorable};
use crate::domain::routing::{Routed, RoutedEvent};
use crate::kafka::topics;
use crate::records::{self, ChangelogKey, PartialKey, Unreadable, Watermark};
use crate::telemetry::{
    CasesEvicted, ChangelogBehind, ChangelogWithoutProgress, EventCounted, EventDuplicate, EventRedundant,
    EventRejected, Telemetry,
};

use super::layout::OtherCount;
use super::restore::RESTORE_TIMEOUT;
use super::transaction::Output;

/// How long a restore waits for a changelog partition to show the state its committed offset
/// says was written.
const COVERED_WITHIN: Duration = Duration::from_secs(30);

pub struct Counting {
    partitions: BTreeMap<i32, CountingPartition>,
    changelog: String,
    partials: String,
    /// Partitions not restored: the changelog offset of a record this build cannot read, and why.
    pub unreadable: UnreadableAt,
}

/// Counting partition -> the changelog offset of a record this build cannot read, and why.
pub(crate) type UnreadableAt = BTreeMap<i32, (i64, Unreadable)>;

impl Counting {
    /// Rebuilds the given partitions (with the committed offset of each, where one is) from
    /// their changelog partitions. `inputs` are every input partition: each holds a
    /// partition's watermark until it has told its progress. Each record read is progress of
    /// the loop, however long the restore takes.
    ///
    /// A changelog partition may not yet show the last transaction whose offsets are
    /// committed (`CountingPartition::covers_committed`): such a partition is read again
    /// until it covers them.
    pub fn restore(
        settings: &Settings,
        telemetry: &Telemetry,
        counting_partitions: i32,
        partitions: &[(i32, Option<i64>)],
        inputs: &[(String, i32)],
    ) -> Result<Counting> {
        let ids: Vec<i32> = partitions.iter().map(|(p, _)| *p).collect();
        let (mut restored, mut unreadable) = read_changelog(settings, telemetry, counting_partitions, &ids)?;
        let started = Instant::now();
        loop {
            let behind: Vec<i32> = partitions
                .iter()
                .filter(|(p, committed)| restored.get(p).is_some_and(|r| !r.covers_committed(*committed)))
                .map(|(p, _)| *p)
                .collect();
            if behind.is_empty() {
                break;
            }
            if started.elapsed() > COVERED_WITHIN {
                // A partition with no progress record at all may hold state of an earlier
                // version, which committed offsets without one: it is taken as it is.
                if behind.iter().all(|p| !restored[p].has_progress()) {
                    telemetry.emit(ChangelogWithoutProgress { partitions: &behind });
                    break;
                }
                bail!(
                    "changelog partitions {behind:?} still do not show the state their committed offsets cover after \
                     {COVERED_WITHIN:?}"
                );
            }
            telemetry.emit(ChangelogBehind { partitions: &behind });
            std::thread::sleep(Duration::from_millis(200));
            let (again, still_unreadable) = read_changelog(settings, telemetry, counting_partitions, &behind)?;
            restored.extend(again);
            for (p, at) in still_unreadable {
                restored.remove(&p);
                unreadable.insert(p, at);
            }
        }
        // An input no longer configured must not hold the watermark forever.
        let configured = settings.topics.inputs();
        for (p, committed) in partitions {
            if let Some(restored) = restored.get_mut(p) {
                restored.resume(*committed, inputs, &configured);
            }
        }
        let t = &settings.topics;
        Ok(Counting { partitions: restored, changelog: t.changelog.clone(), partials: t.partials.clone(), unreadable })
    }

    /// Refuses a state made for another count of counting partitions than the topics have:
    /// cases sit where their id hashes among the count their state was made for.
    pub(crate) fn check_made_for(&self, counting_partitions: i32, case_events: &str) -> Result<(), OtherCount> {
        let other = self.partitions.iter().find_map(|(p, r)| Some((*p, r.made_for()?)));
        match other.filter(|(_, n)| *n != counting_partitions) {
            Some((partition, made_for)) => Err(OtherCount {
                what: format!("counting partition {partition}'s state was"),
                made_for,
                topic: case_events.to_owned(),
                counting_partitions,
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn partitions(&self) -> impl Iterator<Item = (i32, &CountingPartition)> {
        self.partitions.iter().map(|(p, c)| (*p, c))
    }

    /// Takes the restored state as made for `n` counting partitions, as its progress will say.
    pub(crate) fn made_for_partitions(&mut self, n: i32) {
        for p in self.partitions.values_mut() {
            p.made_for_partitions(n);
        }
    }

    pub(crate) fn into_partitions(self) -> BTreeMap<i32, CountingPartition> {
        self.partitions
    }

    /// Cases held, cases waiting for their `created` and their estimated bytes, over all
    /// partitions.
    pub fn held(&self) -> (usize, usize, usize) {
        self.partitions
            .values()
            .flat_map(|p| p.ledgers().map(|(_, l)| l))
            .fold((0, 0, 0), |(h, w, b), l| (h + l.cases_held(), w + l.waiting_for_created(), b + l.bytes()))
    }

    /// The next `case_events` offset a partition's state covers, once known.
    pub(crate) fn covers(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition)?.covers()
    }

    /// Counts one record of the internal topic. `Some`: this build cannot read it, and the
    /// partition must stop before it (its state then covers the records before it only).
    pub(crate) fn handle(
        &mut self,
        out: &Output<'_>,
        telemetry: &Telemetry,
        m: &BorrowedMessage<'_>,
    ) -> Result<Option<Unreadable>> {
        let Some(p) = self.partitions.get_mut(&m.partition()) else {
            bail!("a record of counting partition {} arrived before its state was restored", m.partition());
        };
        let routed: Routed = match records::decode(m.payload()) {
            Ok(routed) => routed,
            Err(unreadable) => return Ok(Some(unreadable)),
        };
        let Some(applied) = p.apply(m.offset(), &routed) else { return Ok(None) };
        let (source, RoutedEvent { offset, input_timestamp, event }) =
            (&routed.source, routed.event.as_ref().expect("applied an event"));
        match applied {
            Ok(Applied::Changed) => telemetry.emit(EventCounted {
                topic: &source.topic,
                event_type: event.change.type_code(),
                occurred_at: event.occurred_at,
                kafka_timestamp: *input_timestamp,
            }),
            Ok(Applied::Duplicate) => telemetry.emit(EventDuplicate),
            Ok(Applied::Redundant) => telemetry.emit(EventRedundant { event_type: event.change.type_code() }),
            Err(rejection) => {
                telemetry.emit(EventRejected {
                    topic: &source.topic,
                    partition: source.partition,
                    offset: *offset,
                    rejection: &rejection,
                });
                // The dead letter carries the event as routed: the input's personal data is gone.
                let payload = records::readable(&routed);
                out.dead_letter(&rejection, Some((&source.topic, source.partition, *offset)), m.key(), Some(&payload))?;
            }
        }
        Ok(None)
    }

    /// Writes what each partition's flush returns: case records and progress to the
    /// changelog, tallies and the watermark to `partials`.
    pub(crate) fn flush(&mut self, out: &Output<'_>, now: Instant, stopping: bool) -> Result<()> {
        let topics = (self.changelog.as_str(), self.partials.as_str());
        for (&partition, p) in &mut self.partitions {
            let flush = p.flush(now, stopping);
            write(out, topics, partition, p, flush)?;
        }
        Ok(())
    }
}

/// The state of the given counting partitions, read from their changelog partitions; and the
/// partitions that hold a record this build cannot read, with its offset. Partitions are
/// independent: they are read in as many lanes (threads, each with its own reader) as there
/// are cores.
fn read_changelog(
    settings: &Settings,
    telemetry: &Telemetry,
    counting_partitions: i32,
    partitions: &[i32],
) -> Result<(BTreeMap<i32, CountingPartition>, UnreadableAt)> {
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get()).min(partitions.len());
    if lanes <= 1 {
        return read_changelog_lane(settings, telemetry, counting_partitions, partitions);
    }
    let groups: Vec<Vec<i32>> =
        (0..lanes).map(|lane| partitions.iter().copied().skip(lane).step_by(lanes).collect()).collect();
    std::thread::scope(|scope| {
        let lanes: Vec<_> = groups
            .iter()
            .map(|group| scope.spawn(move || read_changelog_lane(settings, telemetry, counting_partitions, group)))
            .collect();
        let (mut restored, mut unreadable) = (BTreeMap::new(), BTreeMap::new());
        for lane in lanes {
            let (r, u) = lane.join().map_err(|_| anyhow::anyhow!("a restore lane panicked"))??;
            restored.extend(r);
            unreadable.extend(u);
        }
        Ok((restored, unreadable))
    })
}

/// `read_changelog` for some partitions, in one reader.
fn read_changelog_lane(
    settings: &Settings,
    telemetry: &Telemetry,
    counting_partitions: i32,
    partitions: &[i32],
) -> Result<(BTreeMap<i32, CountingPartition>, UnreadableAt)> {
    let cities = settings.cities();
    let new = |_| CountingPartition::new(cities.clone(), counting_partitions, settings.retention_months);
    let mut restored: BTreeMap<i32, CountingPartition> = partitions.iter().map(|p| (*p, new(p))).collect();
    let mut unreadable = BTreeMap::new();
    if partitions.is_empty() {
        return Ok((restored, unreadable));
    }
    let mut read = 0u64;
    let (kafka, changelog) = (&settings.kafka, &settings.topics.changelog);
    topics::read_partitions_to_end(kafka, changelog, Some(partitions), RESTORE_TIMEOUT, |m| {
        // The loop moves, however long the restore (a clock reading per 4,096 records).
        if read.is_multiple_of(4096) {
            telemetry.progress();
        }
        read += 1;
        if unreadable.contains_key(&m.partition()) {
            return Ok(());
        }
        let p = restored.get_mut(&m.partition()).context("a changelog partition not asked for")?;
        if let Err(why) = restore_record(p, m.key(), m.payload()) {
            restored.remove(&m.partition());
            unreadable.insert(m.partition(), (m.offset(), why));
        }
        Ok(())
    })?;
    Ok((restored, unreadable))
}

/// Puts one changelog record back into a partition's state.
fn restore_record(p: &mut CountingPartition, key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<(), Unreadable> {
    match records::key(key)? {
        ChangelogKey::Progress => p.restore_progress(records::decode(payload)?),
        ChangelogKey::Case(keyed, case_id) => {
            let city = p.cities().of_key(keyed).ok_or(Unreadable::NoDefaultCity)?;
            let record = records::decode_case(payload, p.codes_mut(city).ok_or(Unreadable::City(city))?)?;
            p.restore_case(city, case_id, record).map_err(|Unrestorable::UnknownCity(city)| Unreadable::City(city))?
        }
    }
    Ok(())
}

/// Writes what `p`'s flush returned, as counting partition `partition`: case records and
/// progress to the changelog, tallies and the watermark to `partials`, the facts of cases
/// never created to the dead letters.
pub(super) fn write(
    out: &Output<'_>,
    (changelog, partials): (&str, &str),
    partition: i32,
    p: &CountingPartition,
    flush: Flush,
) -> Result<()> {
    for (city, month, tally) in &flush.tallies {
        let key = PartialKey::Tally { partition, city: p.cities().key(*city), month: *month }.to_string();
        out.send_keyed(partials, 0, &key, tally.as_ref().map(records::encode).as_deref())?;
    }
    if flush.evicted > 0 || !flush.orphans.is_empty() {
        out.telemetry.emit(CasesEvicted { partition, cases: flush.evicted, uncounted: flush.orphans.len() });
    }
    for (_, orphan) in &flush.orphans {
        let payload = records::readable(orphan);
        out.dead_letter(&Rejection::NeverCreated, None, Some(orphan.case_id.as_bytes()), Some(&payload))?;
    }
    for (city, case_id) in &flush.cases {
        let ledger = p.ledger(*city).expect("a city with changed cases has a ledger");
        let record = ledger.case(case_id).map(|r| records::encode_case(r, ledger.codes()));
        let key = ChangelogKey::Case(p.cities().key(*city), case_id.clone()).to_string();
        out.send_keyed(changelog, partition, &key, record.as_deref())?;
    }
    if let Some(at) = flush.watermark {
        let key = PartialKey::Watermark { partition }.to_string();
        out.send_keyed(partials, 0, &key, Some(&records::encode(&Watermark(at))))?;
    }
    if let Some(progress) = flush.progress {
        let key = ChangelogKey::Progress.to_string();
        out.send_keyed(changelog, partition, &key, Some(&records::encode(&progress)))?;
    }
    Ok(())
}

/// Rebuilds one ledger from every partition of a single city's changelog; returns it with the
/// number of records read. (The benchmark's measure of a restart.)
pub fn restore_ledger(kafka: &KafkaConfig, changelog: &str, rules: CountingRules) -> Result<(Ledger, u64)> {
    let mut ledger = Ledger::new(rules);
    let read = topics::read_to_end(kafka, changelog, RESTORE_TIMEOUT, |m| match records::key(m.key())? {
        ChangelogKey::Progress => Ok(()),
        ChangelogKey::Case(Some(city), _) => Err(Unreadable::City(city).into()),
        ChangelogKey::Case(None, case_id) => {
            let record = records::decode_case(m.payload(), ledger.codes_mut())?;
            ledger.restore(case_id, record.unwrap_or_default());
            Ok(())
        }
    })?;
    ledger.take_changes();
    Ok((ledger, read))
}
