//! Counting: the cases of this instance's partitions of the internal topic.
//!
//! Partition p of `case_events` holds every event of the cases that hash to p, and partition
//! p of the changelog holds their records, so a partition's state moves with the partition:
//! on assignment it is rebuilt from its changelog partition. Each partition also tells the
//! publisher its monthly tallies and its watermark through the `partials` topic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::BaseRecord;

use crate::config::{KafkaConfig, Settings};
use crate::domain::case::{Applied, CaseRecord, CountingRules};
use crate::domain::ledger::Ledger;
use crate::domain::month::Month;
use crate::domain::publisher::Watermarks;
use crate::domain::routing::{Routed, RoutedEvent};
use crate::kafka::topics;
use crate::records::{self, ChangelogKey, InputProgress, PartialKey, PartitionProgress, Unreadable, Watermark};
use crate::telemetry::Telemetry;

use super::{Output, RESTORE_TIMEOUT};

/// How long a restore waits for a changelog partition to show the state its committed offset
/// says was written.
const COVERED_WITHIN: Duration = Duration::from_secs(30);
/// How often a partition's changed tallies are written to `partials` while events flow. A
/// tally carries the deadline of each open case, so it is not written on every commit.
const PARTIAL_INTERVAL: Duration = Duration::from_secs(1);

pub struct Counting {
    rules: CountingRules,
    retention_months: u32,
    partitions: BTreeMap<i32, Partition>,
    /// Partitions not restored: the changelog offset of a record this build cannot read, and why.
    pub unreadable: UnreadableAt,
}

/// Counting partition -> the changelog offset of a record this build cannot read, and why.
pub type UnreadableAt = BTreeMap<i32, (i64, Unreadable)>;

struct Partition {
    ledger: Ledger,
    /// How far each input partition has got, as its records told this partition.
    sources: Watermarks,
    /// The watermark last written to `partials`.
    written_watermark: Option<Timestamp>,
    /// The progress last written to the changelog.
    written_progress: Option<PartitionProgress>,
    /// Months whose tally changed since it was last written to `partials`.
    dirty: BTreeSet<Month>,
    partials_written: Option<Instant>,
    /// The next `case_events` offset of the partition: what its state covers.
    next_offset: Option<i64>,
}

impl Counting {
    /// Rebuilds the given partitions (with the committed offset of each, where one is) from
    /// their changelog partitions. `inputs` are every input partition: each holds a
    /// partition's watermark until it has told its progress. Each record read is progress of
    /// the loop, however long the restore takes.
    ///
    /// A changelog partition may not yet show the last transaction whose offsets are
    /// committed: the transaction's markers reach each partition's leader in their own time,
    /// and a state older than its offsets would never count what it missed. A partition whose
    /// progress covers less than its committed offset is read again until it covers it.
    pub fn restore(
        settings: &Settings,
        telemetry: &Telemetry,
        partitions: &[(i32, Option<i64>)],
        inputs: &[(String, i32)],
    ) -> Result<Counting> {
        let rules = CountingRules { zone: settings.zone.clone(), default_sla: settings.default_sla };
        let ids: Vec<i32> = partitions.iter().map(|(p, _)| *p).collect();
        let (mut restored, mut unreadable) = read_changelog(settings, telemetry, &rules, &ids)?;
        let started = Instant::now();
        loop {
            let behind: Vec<i32> = partitions
                .iter()
                .filter(|(p, _)| restored.contains_key(p))
                .filter(|(p, committed)| !covered(restored[p].written_progress.as_ref().map(|w| w.covers), *committed))
                .map(|(p, _)| *p)
                .collect();
            if behind.is_empty() {
                break;
            }
            if started.elapsed() > COVERED_WITHIN {
                // A partition with no progress record at all may hold state of an earlier
                // version, which committed offsets without one: it is taken as it is.
                if behind.iter().all(|p| restored[p].written_progress.is_none()) {
                    tracing::warn!(partitions = ?behind, "changelog partitions with committed offsets but no progress record: restored as they are");
                    break;
                }
                bail!(
                    "changelog partitions {behind:?} still do not show the state their committed offsets cover after \
                     {COVERED_WITHIN:?}"
                );
            }
            tracing::info!(partitions = ?behind, "the changelog does not yet show the last commit; reading it again");
            std::thread::sleep(Duration::from_millis(200));
            let (again, still_unreadable) = read_changelog(settings, telemetry, &rules, &behind)?;
            restored.extend(again);
            for (p, at) in still_unreadable {
                restored.remove(&p);
                unreadable.insert(p, at);
            }
        }
        for (p, committed) in partitions {
            if let Some(restored) = restored.get_mut(p) {
                restored.next_offset = *committed;
            }
        }
        let config = &settings.config;
        let mut counting =
            Counting { rules, retention_months: config.state.retention_months, partitions: restored, unreadable };
        // An input no longer configured must not hold the watermark forever.
        let configured = settings.config.topics.inputs();
        for p in counting.partitions.values_mut() {
            p.ledger.take_changes();
            // Tallies changed before a crash may not have been written yet: write them all.
            p.dirty = p.ledger.months().map(|(m, _)| m).collect();
            p.sources.retain(|topic, _| configured.contains(&topic));
            p.sources.expect(inputs.iter().cloned());
        }
        // Before consuming, so late events of evicted months are rejected from the first batch.
        let (zone, retention) = (counting.rules.zone.clone(), counting.retention_months);
        for p in counting.partitions.values_mut() {
            if let Some(kept_from) = p.kept_from(&zone, retention) {
                p.ledger.evict_before(kept_from);
            }
        }
        Ok(counting)
    }

    /// Cases held, cases waiting for their `created` and their estimated bytes, over all
    /// partitions.
    pub fn held(&self) -> (usize, usize, usize) {
        self.partitions.values().fold((0, 0, 0), |(h, w, b), p| {
            (h + p.ledger.cases_held(), w + p.ledger.waiting_for_created(), b + p.ledger.bytes())
        })
    }

    /// The next `case_events` offset a partition's state covers, once known.
    pub fn covers(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition)?.next_offset
    }

    /// Counts one record of the internal topic. `Some`: this build cannot read it, and the
    /// partition must stop before it (its state then covers the records before it only).
    pub fn handle(
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
        p.next_offset = Some(m.offset() + 1);
        let source = &routed.source;
        if let Some(at) = routed.watermark {
            p.sources.observe(&source.topic, source.partition, at);
        }
        p.sources.set_idle(&source.topic, source.partition, routed.idle);
        let Some(RoutedEvent { offset, input_timestamp, event }) = &routed.event else { return Ok(None) };
        match p.ledger.apply(event) {
            Ok(Applied::Changed) => {
                telemetry.event_counted(&source.topic, event.change.type_code(), event.occurred_at, *input_timestamp)
            }
            Ok(Applied::Duplicate) => telemetry.event_duplicate(),
            Err(rejection) => {
                telemetry.event_rejected(&source.topic, source.partition, *offset, &rejection);
                // The dead letter carries the event as routed: the input's personal data is gone.
                out.dead_letter(&rejection, (&source.topic, source.partition, *offset), m.key(), m.payload())?;
            }
        }
        Ok(None)
    }

    /// Writes what changed in each partition: case records to the changelog, tallies (at most
    /// every `PARTIAL_INTERVAL`, and always when `stopping`) and the watermark to `partials`.
    pub fn flush(&mut self, out: &Output<'_>, now: Instant, stopping: bool) -> Result<()> {
        let t = &out.settings.config.topics;
        for (&partition, p) in &mut self.partitions {
            let kept_from = p.kept_from(&self.rules.zone, self.retention_months);
            let evicting = kept_from.is_some_and(|k| p.ledger.kept_from().is_none_or(|held| k > held));
            let (mut cases, months) = p.ledger.take_changes();
            p.dirty.extend(months);
            let partials_due = stopping || evicting || p.partials_written.is_none_or(|at| now - at >= PARTIAL_INTERVAL);
            if !p.dirty.is_empty() && partials_due {
                for month in std::mem::take(&mut p.dirty) {
                    let key = PartialKey::Tally { partition, month }.to_string();
                    let payload = p.ledger.tally(month).map(records::encode);
                    send(out, &t.partials, 0, key.as_bytes(), payload.as_deref())?;
                }
                p.partials_written = Some(now);
            }
            if let (Some(kept_from), true) = (kept_from, evicting) {
                let evicted = p.ledger.evict_before(kept_from);
                if !evicted.is_empty() {
                    tracing::info!(partition, cases = evicted.len(), %kept_from, "evicted cases of months past the retention");
                }
                cases.extend(p.ledger.take_changes().0);
            }
            for case_id in &cases {
                let payload = p.ledger.case(case_id).map(records::encode);
                send(out, &t.changelog, partition, case_id.as_bytes(), payload.as_deref())?;
            }
            // The watermark goes out only with every tally it covers, so the publisher never
            // sees a partition further in event time than its figures.
            let watermark = p.sources.current();
            if let Some(at) = watermark.filter(|_| p.dirty.is_empty() && watermark != p.written_watermark) {
                let key = PartialKey::Watermark { partition }.to_string();
                send(out, &t.partials, 0, key.as_bytes(), Some(&records::encode(&Watermark(at))))?;
                p.written_watermark = watermark;
            }
            // Progress goes out in the same transaction as the offsets of the records that
            // told it, every time it changes: a restore resumes after those records, so
            // progress written later would be lost for good.
            let progress = PartitionProgress {
                watermark: p.written_watermark.max(p.sources.floor()),
                sources: p.sources.partition_times().into_iter().map(InputProgress::from).collect(),
                covers: p.next_offset,
            };
            if p.written_progress.as_ref() != Some(&progress) {
                let key = ChangelogKey::Progress.to_string();
                send(out, &t.changelog, partition, key.as_bytes(), Some(&records::encode(&progress)))?;
                p.written_progress = Some(progress);
            }
        }
        Ok(())
    }
}

impl Partition {
    /// The first month to keep, by this partition's watermark.
    fn kept_from(&self, zone: &jiff::tz::TimeZone, retention_months: u32) -> Option<Month> {
        let watermark = self.sources.current()?;
        Some(Month::containing(watermark, zone).months_before(retention_months))
    }
}

/// The state of the given counting partitions, read from their changelog partitions; and the
/// partitions that hold a record this build cannot read, with its offset.
fn read_changelog(
    settings: &Settings,
    telemetry: &Telemetry,
    rules: &CountingRules,
    partitions: &[i32],
) -> Result<(BTreeMap<i32, Partition>, UnreadableAt)> {
    let mut restored: BTreeMap<i32, Partition> = partitions
        .iter()
        .map(|p| {
            let partition = Partition {
                ledger: Ledger::new(rules.clone()),
                sources: Watermarks::new(),
                written_watermark: None,
                written_progress: None,
                dirty: BTreeSet::new(),
                partials_written: None,
                next_offset: None,
            };
            (*p, partition)
        })
        .collect();
    let mut unreadable = BTreeMap::new();
    if partitions.is_empty() {
        return Ok((restored, unreadable));
    }
    let config = &settings.config;
    topics::read_partitions_to_end(&config.kafka, &config.topics.changelog, Some(partitions), RESTORE_TIMEOUT, |m| {
        telemetry.progress();
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
fn restore_record(p: &mut Partition, key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<(), Unreadable> {
    match records::key(key)? {
        ChangelogKey::Progress => {
            let progress: PartitionProgress = records::decode(payload)?;
            if let Some(at) = progress.watermark {
                p.sources.raise_floor(at);
            }
            for input in &progress.sources {
                if let Some(at) = input.event_time {
                    p.sources.observe(&input.topic, input.partition, at);
                }
                p.sources.set_idle(&input.topic, input.partition, input.idle);
            }
            p.written_watermark = progress.watermark;
            p.written_progress = Some(progress);
        }
        ChangelogKey::Case(case_id) => restore_case(&mut p.ledger, case_id, payload)?,
    }
    Ok(())
}

/// Whether a restored state covers the committed offset, by the progress record read (`None`:
/// none yet). A record of an earlier version says nothing and counts as covering.
fn covered(progress: Option<Option<i64>>, committed: Option<i64>) -> bool {
    match (progress, committed) {
        (_, None | Some(0)) => true,
        (None, Some(_)) => false,
        (Some(None), Some(_)) => true,
        (Some(Some(covers)), Some(committed)) => covers >= committed,
    }
}

fn send(out: &Output<'_>, topic: &str, partition: i32, key: &[u8], payload: Option<&[u8]>) -> Result<()> {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic).partition(partition).key(key);
    if let Some(p) = payload {
        record = record.payload(p);
    }
    out.send(record)
}

/// Puts one case's record back into `ledger`; a tombstone removes the case.
fn restore_case(ledger: &mut Ledger, case_id: String, payload: Option<&[u8]>) -> Result<(), Unreadable> {
    let record = match payload {
        Some(_) => records::decode(payload)?,
        None => CaseRecord::default(),
    };
    ledger.restore(case_id, record);
    Ok(())
}

/// Rebuilds one ledger from every partition of a changelog; returns it with the number of
/// records read. (The benchmark's measure of a restart.)
pub fn restore_ledger(kafka: &KafkaConfig, changelog: &str, rules: CountingRules) -> Result<(Ledger, u64)> {
    let mut ledger = Ledger::new(rules);
    let read = topics::read_to_end(kafka, changelog, RESTORE_TIMEOUT, |m| match records::key(m.key())? {
        ChangelogKey::Progress => Ok(()),
        ChangelogKey::Case(case_id) => Ok(restore_case(&mut ledger, case_id, m.payload())?),
    })?;
    ledger.take_changes();
    Ok((ledger, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_waits_for_the_state_its_committed_offset_covers() {
        assert!(covered(Some(Some(120)), Some(120)));
        assert!(covered(Some(Some(121)), Some(120)), "a later commit landed between the two reads");
        assert!(!covered(Some(Some(119)), Some(120)), "the last transaction's changelog records are not visible yet");
        assert!(!covered(None, Some(120)), "the first transaction's records are not visible yet");
        assert!(covered(Some(None), Some(120)), "a record of an earlier version says nothing");
        assert!(covered(Some(Some(7)), None));
        assert!(covered(None, None) && covered(None, Some(0)), "nothing committed, nothing to wait for");
    }
}
