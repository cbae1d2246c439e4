//! A counting partition: the ledger of the cases that hash to it, how far each input partition
//! has got as its records told it, and what a commit must write.
//!
//! The shell decodes a record of `case_events` and `apply`s it; at each commit it writes what
//! `flush` returns: changed cases and the partition's progress to the changelog, changed
//! tallies and the watermark to `partials`. A restore reads the changelog back through
//! `restore_case` and `restore_progress`, then `resume`s.
//!
//! Rules that keep event time right across restarts:
//! - progress goes out with every commit that read the partition, in the same transaction as
//!   the offsets of the records that told it (a restore resumes after those records, so
//!   progress written later would be lost for good);
//! - an input partition never heard from holds the watermark back until it tells an event
//!   time or that it is idle, and silence is never idleness;
//! - the watermark goes to `partials` only together with every tally it covers, so the
//!   publisher never sees a partition further in event time than its figures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::case::{Applied, CaseRecord};
use super::code::Codes;
use super::event::Rejection;
use super::figures::Tally;
use super::ledger::{Ledger, Orphan};
use super::month::Month;
use super::province::{Cities, CityCode};
use super::publisher::Watermarks;
use super::routing::{Routed, partition_of};

/// How often a partition's changed tallies go to `partials` while events flow. A tally
/// carries the deadline of each open case, so it is not written on every commit.
pub(crate) const PARTIAL_INTERVAL: Duration = Duration::from_secs(1);

/// How far a counting partition had got, kept in its changelog partition so a restore does
/// not start from nothing: every input partition's event time, the partition's own, and the
/// `case_events` offset its state covers (absent in records of earlier versions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartitionProgress {
    pub watermark: Option<Timestamp>,
    pub sources: Vec<InputProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers: Option<i64>,
    /// How many counting partitions the state was made for (absent in records of earlier
    /// versions): cases sit on the partition their id hashes to among that many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
}

/// How far one input partition had got; written as `[topic, partition, event time, idle]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "(String, i32, Option<Timestamp>, bool)", into = "(String, i32, Option<Timestamp>, bool)")]
pub(crate) struct InputProgress {
    pub topic: String,
    pub partition: i32,
    pub event_time: Option<Timestamp>,
    pub idle: bool,
}

impl From<(String, i32, Option<Timestamp>, bool)> for InputProgress {
    fn from((topic, partition, event_time, idle): (String, i32, Option<Timestamp>, bool)) -> InputProgress {
        InputProgress { topic, partition, event_time, idle }
    }
}

impl From<InputProgress> for (String, i32, Option<Timestamp>, bool) {
    fn from(p: InputProgress) -> Self {
        (p.topic, p.partition, p.event_time, p.idle)
    }
}

/// What a commit must write for one partition.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Flush {
    /// Cases for the changelog: each with `case()`'s record, a tombstone where there is none.
    pub cases: Vec<(CityCode, String)>,
    /// Tallies for `partials`, as they were before any eviction of this flush (a month being
    /// evicted still goes out with its last figures: the publisher forgets it only once every
    /// partition is past it); `None`, a tombstone, for a month with no case left.
    pub tallies: Vec<(CityCode, Month, Option<Tally>)>,
    /// The partition's new watermark, for `partials`.
    pub watermark: Option<Timestamp>,
    /// The partition's new progress, for the changelog.
    pub progress: Option<PartitionProgress>,
    /// Cases evicted (months past the retention), among `cases`.
    pub evicted: usize,
    /// Facts of cases evicted without their `created`, for the dead letters.
    pub orphans: Vec<(CityCode, Orphan)>,
}

/// Why a changelog record of a case cannot be put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unrestorable {
    /// The case is of a city the configuration no longer lists.
    UnknownCity(CityCode),
}

#[derive(Debug)]
pub(crate) struct CountingPartition {
    /// Each city's rules, and the overflow that folds its tallies written to `partials`, so a
    /// flood of codes leaves them bounded.
    cities: Cities,
    /// A ledger per city that has cases here: a case is its city's and its id's.
    ledgers: BTreeMap<CityCode, Ledger>,
    /// How many counting partitions there are: the one this is holds the cases whose id
    /// hashes to it among them.
    partitions: i32,
    retention_months: u32,
    /// No month before this one is counted, whatever the watermark (a recount's first month).
    counted_from: Option<Month>,
    /// Whether flushes list changed cases for the changelog (a recount keeps none).
    changelog: bool,
    /// How far each input partition has got, as its records told this partition.
    sources: Watermarks,
    /// The watermark last written to `partials`.
    written_watermark: Option<Timestamp>,
    /// The progress last written to the changelog.
    written_progress: Option<PartitionProgress>,
    /// Cities' months whose tally changed since it was last written to `partials`.
    dirty: BTreeSet<(CityCode, Month)>,
    partials_written: Option<Instant>,
    /// The next `case_events` offset: what the state covers.
    next_offset: Option<i64>,
}

impl CountingPartition {
    pub fn new(cities: Cities, partitions: i32, retention_months: u32) -> CountingPartition {
        CountingPartition {
            cities,
            ledgers: BTreeMap::new(),
            partitions,
            retention_months,
            counted_from: None,
            changelog: true,
            sources: Watermarks::new(),
            written_watermark: None,
            written_progress: None,
            dirty: BTreeSet::new(),
            partials_written: None,
            next_offset: None,
        }
    }

    /// Puts one changelog record of a case of `city` back (its codes read into
    /// `codes_mut(city)`); `None` (a tombstone) removes the case.
    pub(crate) fn restore_case(
        &mut self,
        city: CityCode,
        case_id: String,
        record: Option<CaseRecord>,
    ) -> Result<(), Unrestorable> {
        let ledger = self.ledger_mut(city).ok_or(Unrestorable::UnknownCity(city))?;
        ledger.restore(case_id, record.unwrap_or_default());
        Ok(())
    }

    /// Puts the partition's progress back, as last written.
    pub(crate) fn restore_progress(&mut self, progress: PartitionProgress) {
        if let Some(at) = progress.watermark {
            self.sources.raise_floor(at);
        }
        for input in &progress.sources {
            if let Some(at) = input.event_time {
                self.sources.observe(&input.topic, input.partition, at);
            }
            self.sources.set_idle(&input.topic, input.partition, input.idle);
        }
        self.written_watermark = progress.watermark;
        self.written_progress = Some(progress);
    }

    /// Whether the restored state covers the committed `case_events` offset. A transaction's
    /// markers reach each partition's leader in their own time, so the changelog may not yet
    /// show the last commit: a state older than its offsets would never count what it missed.
    /// A progress record of an earlier version says nothing and counts as covering.
    pub(crate) fn covers_committed(&self, committed: Option<i64>) -> bool {
        match (self.written_progress.as_ref().map(|p| p.covers), committed) {
            (_, None | Some(0)) => true,
            (None, Some(_)) => false,
            (Some(None), Some(_)) => true,
            (Some(Some(covers)), Some(committed)) => covers >= committed,
        }
    }

    /// Keeps no changelog: flushes list no cases (a recount, whose state lives only in memory).
    pub(crate) fn without_changelog(mut self) -> CountingPartition {
        self.changelog = false;
        self
    }

    /// Counts no month before `month`: events of earlier months are rejected as evicted, as
    /// `hotline recount --from` needs.
    pub(crate) fn count_from(&mut self, month: Month) {
        self.counted_from = Some(month);
        for ledger in self.ledgers.values_mut() {
            ledger.evict_before(month);
        }
    }

    /// Takes the state as made for `n` counting partitions, as its next progress will say.
    pub(crate) fn made_for_partitions(&mut self, n: i32) {
        self.partitions = n;
    }

    /// How many counting partitions the restored state was made for, when its progress says.
    pub(crate) fn made_for(&self) -> Option<i32> {
        self.written_progress.as_ref()?.partitions
    }

    /// Whether a progress record was restored (state of an earlier version has none).
    pub(crate) fn has_progress(&self) -> bool {
        self.written_progress.is_some()
    }

    /// Ends a restore: the state resumes at the `committed` offset; `inputs` are every input
    /// partition, each holding the watermark back until it has told its progress, and inputs
    /// of topics no longer `configured` are forgotten.
    pub fn resume(&mut self, committed: Option<i64>, inputs: &[(String, i32)], configured: &[&str]) {
        self.next_offset = committed;
        // Tallies changed before a crash may not have been written yet: write them all.
        self.dirty.clear();
        for (&city, ledger) in &mut self.ledgers {
            ledger.take_changes();
            self.dirty.extend(ledger.months().map(|(m, _)| (city, m)));
        }
        self.sources.retain(|topic, _| configured.contains(&topic));
        self.sources.expect(inputs.iter().cloned());
        // Before consuming, so late events of evicted months are rejected from the first batch.
        // Their tombstones go out with the first flush.
        if let Some(kept_from) = self.kept_from() {
            for ledger in self.ledgers.values_mut() {
                ledger.evict_before(kept_from);
            }
        }
    }

    /// Applies the record at `offset`: its input partition's progress, then its event, if it
    /// carries one (a marker does not).
    pub fn apply(&mut self, offset: i64, routed: &Routed) -> Option<Result<Applied, Rejection>> {
        self.next_offset = Some(offset + 1);
        let source = &routed.source;
        if let Some(at) = routed.watermark {
            self.sources.observe(&source.topic, source.partition, at);
        }
        self.sources.set_idle(&source.topic, source.partition, routed.idle);
        let event = &routed.event.as_ref()?.event;
        Some(match self.cities.resolve(event.city).map(|city| self.ledger_mut(city)) {
            Ok(Some(ledger)) => ledger.apply(event),
            Ok(None) => Err(Rejection::UnknownCity),
            Err(rejection) => Err(rejection),
        })
    }

    /// The ledger of `city`, started when the city has no case here yet; `None` for a city
    /// the deployment does not count.
    fn ledger_mut(&mut self, city: CityCode) -> Option<&mut Ledger> {
        let (kept_from, changelog) = (self.kept_from(), self.changelog);
        let rules = &self.cities.rules(city)?.counting;
        Some(self.ledgers.entry(city).or_insert_with(|| {
            let mut ledger = Ledger::new(rules.clone());
            if !changelog {
                ledger = ledger.without_changelog();
            }
            if let Some(kept_from) = kept_from {
                ledger.evict_before(kept_from);
            }
            ledger
        }))
    }

    /// What the commit at `now` must write; tallies at most every `PARTIAL_INTERVAL`, and
    /// always when `stopping` or evicting.
    pub(crate) fn flush(&mut self, now: Instant, stopping: bool) -> Flush {
        let kept_from = self.kept_from();
        let evicting =
            kept_from.is_some_and(|k| self.ledgers.values().any(|l| l.kept_from().is_none_or(|held| k > held)));
        let mut flush = Flush::default();
        for (&city, ledger) in &mut self.ledgers {
            let (cases, months) = ledger.take_changes();
            flush.cases.extend(cases.into_iter().map(|c| (city, c)));
            self.dirty.extend(months.into_iter().map(|m| (city, m)));
        }
        let partials_due =
            stopping || evicting || self.partials_written.is_none_or(|at| now.duration_since(at) >= PARTIAL_INTERVAL);
        if !self.dirty.is_empty() && partials_due {
            let (ledgers, cities) = (&self.ledgers, &self.cities);
            let tally = |city: CityCode, month: Month| {
                let tally = ledgers.get(&city)?.tally(month)?.clone();
                Some(cities.rules(city)?.overflow.fold(tally))
            };
            flush.tallies =
                std::mem::take(&mut self.dirty).into_iter().map(|(city, m)| (city, m, tally(city, m))).collect();
            self.partials_written = Some(now);
        }
        if let (Some(kept_from), true) = (kept_from, evicting) {
            for (&city, ledger) in &mut self.ledgers {
                flush.evicted += ledger.evict_before(kept_from).len();
                flush.cases.extend(ledger.take_changes().0.into_iter().map(|c| (city, c)));
            }
        }
        // Evicted here or when the partition was restored.
        for (&city, ledger) in &mut self.ledgers {
            flush.orphans.extend(ledger.take_orphans().into_iter().map(|o| (city, o)));
        }
        let watermark = self.sources.current();
        if self.dirty.is_empty() && watermark.is_some() && watermark != self.written_watermark {
            flush.watermark = watermark;
            self.written_watermark = watermark;
        }
        let progress = PartitionProgress {
            watermark: self.written_watermark.max(self.sources.floor()),
            sources: self.sources.partition_times().into_iter().map(InputProgress::from).collect(),
            covers: self.next_offset,
            partitions: Some(self.partitions),
        };
        if self.written_progress.as_ref() != Some(&progress) {
            flush.progress = Some(progress.clone());
            self.written_progress = Some(progress);
        }
        flush
    }

    #[cfg(test)]
    pub fn case(&self, city: CityCode, case_id: &str) -> Option<&CaseRecord> {
        self.ledgers.get(&city)?.case(case_id)
    }

    /// The table to read a restored record of `city`'s codes into; `None` for a city the
    /// deployment does not count.
    pub(crate) fn codes_mut(&mut self, city: CityCode) -> Option<&mut Codes> {
        Some(self.ledger_mut(city)?.codes_mut())
    }

    /// The next `case_events` offset the state covers, once known.
    pub(crate) fn covers(&self) -> Option<i64> {
        self.next_offset
    }

    /// The ledger of `city`, if it has cases here.
    pub fn ledger(&self, city: CityCode) -> Option<&Ledger> {
        self.ledgers.get(&city)
    }

    pub fn ledgers(&self) -> impl Iterator<Item = (CityCode, &Ledger)> {
        self.ledgers.iter().map(|(c, l)| (*c, l))
    }

    /// The cities counted here and the record keys that name them.
    pub(crate) fn cities(&self) -> &Cities {
        &self.cities
    }

    /// The first month to keep, by this partition's watermark.
    fn kept_from(&self) -> Option<Month> {
        let by_watermark = self
            .sources
            .current()
            .map(|watermark| Month::containing(watermark, self.cities.zone()).months_before(self.retention_months));
        by_watermark.max(self.counted_from)
    }
}

/// Moves the cases of every counting partition (`old`, restored and resumed, in partition
/// order) onto `to` partitions, each case of each city to `partition_of(case_id, to)`, as
/// `hotline rescale` does. Each new partition knows of each input partition the least that
/// any old one knew (the earliest event time, idle only if idle for all), so no watermark
/// moves forward; the new partitions' tallies add up to the old ones'.
pub(crate) fn repartition(old: &[CountingPartition], to: i32) -> Result<Vec<CountingPartition>, Unrestorable> {
    let Some(first) = old.first() else { return Ok(Vec::new()) };
    let mut sources = Watermarks::new();
    let mut known: BTreeMap<(String, i32), (Option<Timestamp>, bool)> = BTreeMap::new();
    for p in old {
        for (topic, partition, at, idle) in p.sources.partition_times() {
            let entry = known.entry((topic, partition)).or_insert((at, idle));
            // `None` sorts first: an input one partition never heard from is never heard from.
            entry.0 = entry.0.min(at);
            entry.1 &= idle;
        }
    }
    if let Some(floor) = old.iter().map(|p| p.sources.floor()).min().flatten() {
        sources.raise_floor(floor);
    }
    for ((topic, partition), (at, idle)) in known {
        sources.expect([(topic.clone(), partition)]);
        if let Some(at) = at {
            sources.observe(&topic, partition, at);
        }
        sources.set_idle(&topic, partition, idle);
    }
    let mut new: Vec<CountingPartition> = (0..to)
        .map(|_| {
            let mut p = CountingPartition::new(first.cities.clone(), to, first.retention_months);
            p.counted_from = first.counted_from;
            p.sources = sources.clone();
            p
        })
        .collect();
    for p in old {
        for (&city, ledger) in &p.ledgers {
            for (case_id, record) in ledger.cases() {
                let target = &mut new[partition_of(case_id, to) as usize];
                let codes = target.codes_mut(city).ok_or(Unrestorable::UnknownCity(city))?;
                let record = record.moved(ledger.codes(), codes);
                target.restore_case(city, case_id.to_owned(), Some(record))?;
            }
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::domain::event::{CaseEvent, Change, Channel, Created};
    use crate::domain::routing::{RoutedEvent, Source};

    use crate::domain::fixtures::{CITY, one_city, overflow, rules};
    use crate::domain::province::CityRules;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn source(topic: &str, partition: i32) -> Source {
        Source { topic: topic.into(), partition }
    }

    fn created(case_id: &str, occurred_at: &str) -> CaseEvent {
        CaseEvent {
            event_id: format!("{case_id}-created").into(),
            case_id: case_id.into(),
            city: None,
            occurred_at: at(occurred_at),
            change: Change::Created(Created {
                channel: Channel::Hotline,
                category: "water".into(),
                board: None,
                request_kind: None,
                department: Some("tiexi_district".into()),
                due_at: None,
            }),
        }
    }

    /// A routed event from `from`, whose event time has reached the event's.
    fn event(from: Source, offset: i64, e: CaseEvent) -> Routed {
        Routed {
            source: from,
            watermark: Some(e.occurred_at),
            idle: false,
            event: Some(RoutedEvent { offset, input_timestamp: None, event: e }),
        }
    }

    fn marker(from: Source, watermark: Option<Timestamp>, idle: bool) -> Routed {
        Routed { source: from, watermark, idle, event: None }
    }

    fn months(flush: &Flush) -> Vec<Month> {
        flush.tallies.iter().map(|(_, m, _)| *m).collect()
    }

    /// A partition fed by input partition cases/0 alone, keeping `retention_months`.
    fn fed_by_one_input(retention_months: u32) -> CountingPartition {
        let mut p = CountingPartition::new(one_city(), 3, retention_months);
        p.resume(None, &[("cases".into(), 0)], &["cases"]);
        p
    }

    /// A partition fed by input partitions cases/0 and cases/1.
    fn partition() -> CountingPartition {
        let mut p = CountingPartition::new(one_city(), 3, 2);
        p.resume(None, &[("cases".into(), 0), ("cases".into(), 1)], &["cases"]);
        p
    }

    #[test]
    fn an_input_never_heard_from_holds_the_watermark_back() {
        let mut p = partition();
        let now = Instant::now();
        p.apply(0, &event(source("cases", 0), 0, created("c1", "2022-04-10T02:00:00Z")));
        let flush = p.flush(now, false);
        assert_eq!(flush.watermark, None, "cases/1 has told nothing yet");
        assert_eq!(months(&flush), vec!["2022-04".parse().unwrap()]);
        p.apply(1, &marker(source("cases", 1), None, true));
        let flush = p.flush(now + PARTIAL_INTERVAL, false);
        assert_eq!(flush.watermark, Some(at("2022-04-10T02:00:00Z")), "cases/1 is idle: cases/0 alone counts");
    }

    #[test]
    fn silence_is_not_idleness() {
        let mut p = partition();
        let now = Instant::now();
        p.apply(0, &marker(source("cases", 1), Some(at("2022-04-01T00:00:00Z")), false));
        for (n, day) in (10..30).enumerate() {
            let e = created(&format!("c{n}"), &format!("2022-04-{day}T02:00:00Z"));
            p.apply(n as i64 + 1, &event(source("cases", 0), n as i64, e));
        }
        // cases/1 has said nothing for 20 days of event time: it still holds the watermark.
        let flush = p.flush(now, false);
        assert_eq!(flush.watermark, Some(at("2022-04-01T00:00:00Z")));
    }

    #[test]
    fn progress_goes_out_with_every_commit_that_read_the_partition() {
        let mut p = partition();
        let now = Instant::now();
        p.apply(0, &event(source("cases", 0), 0, created("c1", "2022-04-10T02:00:00Z")));
        p.apply(1, &marker(source("cases", 1), Some(at("2022-04-11T00:00:00Z")), false));
        let first = p.flush(now, false).progress.expect("progress with the first commit");
        assert_eq!(first.covers, Some(2));
        // A marker alone, before tallies are due again: its progress still goes out now.
        p.apply(2, &marker(source("cases", 1), Some(at("2022-04-12T00:00:00Z")), false));
        let flush = p.flush(now + Duration::from_millis(10), false);
        assert!(flush.tallies.is_empty() && flush.cases.is_empty());
        let second = flush.progress.expect("progress with the commit of the marker");
        assert_eq!(second.covers, Some(3));
        assert_eq!(second.sources[1].event_time, Some(at("2022-04-12T00:00:00Z")));
        assert_eq!(p.flush(now + Duration::from_millis(20), false).progress, None, "nothing new read");
    }

    #[test]
    fn a_restored_partition_resumes_where_its_progress_was() {
        let mut p = partition();
        let now = Instant::now();
        p.apply(0, &event(source("cases", 0), 0, created("c1", "2022-04-10T02:00:00Z")));
        p.apply(1, &event(source("cases", 1), 0, created("c2", "2022-04-12T02:00:00Z")));
        let flush = p.flush(now, false);
        assert_eq!(flush.watermark, Some(at("2022-04-10T02:00:00Z")));

        // A new owner reads the changelog back.
        let mut restored = CountingPartition::new(one_city(), 3, 2);
        for (city, case_id) in &flush.cases {
            let ledger = p.ledger(*city).unwrap();
            let record = ledger.case(case_id).map(|r| r.moved(ledger.codes(), restored.codes_mut(*city).unwrap()));
            restored.restore_case(*city, case_id.clone(), record).unwrap();
        }
        restored.restore_progress(flush.progress.clone().unwrap());
        assert!(restored.covers_committed(Some(2)));
        assert!(!restored.covers_committed(Some(3)), "a later commit is not visible yet");
        restored.resume(Some(2), &[("cases".into(), 0), ("cases".into(), 1)], &["cases"]);
        assert_eq!(restored.ledger(CITY).unwrap().cases_held(), 2);
        // Its event time is where it was, with no input heard from again; every tally goes
        // out again (it may not have been written before the crash), then the watermark.
        let again = restored.flush(now, false);
        assert_eq!(
            again.tallies,
            vec![(
                CITY,
                "2022-04".parse().unwrap(),
                p.ledger(CITY).unwrap().tally("2022-04".parse().unwrap()).cloned()
            )]
        );
        assert_eq!(again.watermark, None, "already written");
        assert_eq!(again.progress, None, "unchanged");
        // cases/0 moves on: the watermark follows cases/1's restored event time.
        restored.apply(2, &marker(source("cases", 0), Some(at("2022-04-20T00:00:00Z")), false));
        assert_eq!(restored.flush(now, false).watermark, Some(at("2022-04-12T02:00:00Z")));
    }

    #[test]
    fn the_watermark_goes_out_only_with_the_tallies_it_covers() {
        let mut p = partition();
        p.apply(0, &marker(source("cases", 1), None, true));
        let now = Instant::now();
        p.apply(1, &event(source("cases", 0), 0, created("c1", "2022-04-10T02:00:00Z")));
        assert_eq!(p.flush(now, false).watermark, Some(at("2022-04-10T02:00:00Z")));
        // A tally changed, but tallies are not due for a second: the watermark waits with it.
        p.apply(2, &event(source("cases", 0), 1, created("c2", "2022-04-11T02:00:00Z")));
        let early = p.flush(now + Duration::from_millis(100), false);
        assert!(early.tallies.is_empty());
        assert_eq!(early.watermark, None);
        let due = p.flush(now + PARTIAL_INTERVAL, false);
        assert_eq!(due.tallies.len(), 1);
        assert_eq!(due.watermark, Some(at("2022-04-11T02:00:00Z")));
        // Stopping writes what is owed at once.
        p.apply(3, &event(source("cases", 0), 2, created("c3", "2022-04-12T02:00:00Z")));
        let stopping = p.flush(now + PARTIAL_INTERVAL + Duration::from_millis(1), true);
        assert_eq!((stopping.tallies.len(), stopping.watermark), (1, Some(at("2022-04-12T02:00:00Z"))));
    }

    #[test]
    fn months_past_the_retention_are_evicted_with_tombstones() {
        let mut p = fed_by_one_input(0);
        let now = Instant::now();
        p.apply(0, &event(source("cases", 0), 0, created("march", "2022-03-10T02:00:00Z")));
        p.flush(now, false);
        p.apply(1, &event(source("cases", 0), 1, created("april", "2022-04-10T02:00:00Z")));
        let flush = p.flush(now, false);
        assert_eq!(flush.evicted, 1);
        assert!(flush.cases.contains(&(CITY, "march".to_owned())) && p.case(CITY, "march").is_none(), "a tombstone");
        // March's tally is gone here; the publisher tombstones it in `partials` once every
        // partition is past March.
        assert!(p.ledger(CITY).unwrap().tally("2022-03".parse().unwrap()).is_none());
        assert_eq!(months(&flush), vec!["2022-04".parse().unwrap()]);
        let late = event(source("cases", 0), 2, created("march-2", "2022-03-11T02:00:00Z"));
        assert_eq!(p.apply(2, &late), Some(Err(Rejection::MonthEvicted)));
    }

    #[test]
    fn facts_of_cases_never_created_go_to_the_dead_letters_when_evicted_even_after_a_restore() {
        let rated = |case: &str, when: &str| CaseEvent {
            event_id: format!("{case}-rated").into(),
            case_id: case.into(),
            city: None,
            occurred_at: at(when),
            change: Change::Rated { result: crate::domain::event::Rating::Satisfied },
        };
        let mut p = fed_by_one_input(0);
        let now = Instant::now();
        p.apply(0, &event(source("cases", 0), 0, rated("lost", "2022-03-10T02:00:00Z")));
        p.apply(1, &event(source("cases", 0), 1, rated("kept", "2022-03-12T02:00:00Z")));
        assert!(p.flush(now, false).orphans.is_empty(), "still within the retention");
        // A restored owner evicts before it consumes: the facts go out with its first flush.
        let mut restored = CountingPartition::new(one_city(), 3, 0);
        for case in ["lost", "kept"] {
            restored.restore_case(CITY, case.into(), p.case(CITY, case).cloned()).unwrap();
        }
        restored
            .restore_progress(PartitionProgress { watermark: Some(at("2022-04-02T00:00:00Z")), ..Default::default() });
        restored.resume(Some(2), &[("cases".into(), 0)], &["cases"]);
        let flush = restored.flush(now, false);
        let mut kinds: Vec<(&str, &str)> = flush.orphans.iter().map(|(_, o)| (o.case_id.as_str(), o.kind)).collect();
        kinds.sort();
        assert_eq!(kinds, [("kept", "rated"), ("lost", "rated")]);
        assert!(flush.cases.contains(&(CITY, "lost".to_owned())), "with their tombstones");
        assert!(restored.flush(now, false).orphans.is_empty(), "once");
    }

    #[test]
    fn a_month_evicted_right_after_a_change_goes_out_with_its_last_figures() {
        let mut p = fed_by_one_input(0);
        let now = Instant::now();
        p.apply(0, &event(source("cases", 0), 0, created("march", "2022-03-10T02:00:00Z")));
        p.flush(now, false);
        // March's case closes late, and in the same batch event time moves into April.
        let closed = CaseEvent {
            event_id: "march-closed".into(),
            case_id: "march".into(),
            city: None,
            occurred_at: at("2022-03-31T02:00:00Z"),
            change: Change::Closed,
        };
        p.apply(1, &event(source("cases", 0), 1, closed));
        p.apply(2, &event(source("cases", 0), 2, created("april", "2022-04-10T02:00:00Z")));
        let flush = p.flush(now + Duration::from_millis(10), false);
        assert_eq!(flush.evicted, 1);
        let (_, _, march) =
            flush.tallies.iter().find(|(_, m, _)| *m == "2022-03".parse().unwrap()).expect("March goes out");
        let march = march.as_ref().expect("with its figures, not a tombstone");
        assert_eq!(march.figures(at("2022-04-10T00:00:00Z")).totals.closed, 1);
    }

    #[test]
    fn a_restore_waits_for_the_state_its_committed_offset_covers() {
        let mut p = CountingPartition::new(one_city(), 3, 2);
        assert!(p.covers_committed(None) && p.covers_committed(Some(0)), "nothing committed, nothing to wait for");
        assert!(!p.covers_committed(Some(120)), "the first transaction's records are not visible yet");
        p.restore_progress(PartitionProgress { covers: None, ..PartitionProgress::default() });
        assert!(p.covers_committed(Some(120)), "a record of an earlier version says nothing");
        p.restore_progress(PartitionProgress { covers: Some(120), ..PartitionProgress::default() });
        assert!(p.covers_committed(Some(120)));
        assert!(!p.covers_committed(Some(121)), "the last transaction's changelog records are not visible yet");
        p.restore_progress(PartitionProgress { covers: Some(122), ..PartitionProgress::default() });
        assert!(p.covers_committed(Some(121)), "a later commit landed between the two reads");
    }

    #[test]
    fn each_city_has_its_own_cases_and_tallies_in_one_partition() {
        let (sp, yb): (CityCode, CityCode) = ("220300".parse().unwrap(), "222400".parse().unwrap());
        let city_rules = || CityRules { counting: rules(), overflow: overflow() };
        let jilin = |default| Cities::province(rules().zone, default, [(sp, city_rules()), (yb, city_rules())].into());
        let in_city = |city: Option<CityCode>, e: CaseEvent| CaseEvent { city, ..e };
        let mut p = CountingPartition::new(jilin(Some(sp)), 3, 2);
        p.resume(None, &[("cases".into(), 0)], &["cases"]);
        let now = Instant::now();
        // The same case id in two cities is two cases; an event without `city` is the default's.
        p.apply(0, &event(source("cases", 0), 0, in_city(None, created("A-1", "2022-04-10T02:00:00Z"))));
        p.apply(1, &event(source("cases", 0), 1, in_city(Some(yb), created("A-1", "2022-04-11T02:00:00Z"))));
        let unknown = in_city(Some("220100".parse().unwrap()), created("A-2", "2022-04-11T02:00:00Z"));
        assert_eq!(p.apply(2, &event(source("cases", 0), 2, unknown)), Some(Err(Rejection::UnknownCity)));
        let flush = p.flush(now, false);
        assert_eq!(flush.cases, [(sp, "A-1".to_owned()), (yb, "A-1".to_owned())]);
        let april: Month = "2022-04".parse().unwrap();
        let tallies: Vec<(CityCode, Month, u64)> = flush
            .tallies
            .iter()
            .map(|(c, m, t)| (*c, *m, t.as_ref().unwrap().figures(at("2022-05-01T00:00:00Z")).totals.received))
            .collect();
        assert_eq!(tallies, [(sp, april, 1), (yb, april, 1)]);
        assert_ne!(p.case(sp, "A-1"), p.case(yb, "A-1"), "created at different times");

        // A restore puts each case back into its city's ledger.
        let mut restored = CountingPartition::new(jilin(Some(sp)), 3, 2);
        for (city, case_id) in &flush.cases {
            let ledger = p.ledger(*city).unwrap();
            let record = ledger.case(case_id).map(|r| r.moved(ledger.codes(), restored.codes_mut(*city).unwrap()));
            restored.restore_case(*city, case_id.clone(), record).unwrap();
        }
        assert_eq!(restored.case(yb, "A-1"), p.case(yb, "A-1"));
        let dropped: CityCode = "220100".parse().unwrap();
        assert!(restored.codes_mut(dropped).is_none());
        assert_eq!(
            restored.restore_case(dropped, "A-1".into(), None),
            Err(Unrestorable::UnknownCity(dropped)),
            "a city no longer configured stops the restore, never drops its cases"
        );

        // Without a default city, an event must name its city.
        let mut province = CountingPartition::new(jilin(None), 3, 2);
        province.resume(None, &[("cases".into(), 0)], &["cases"]);
        let unnamed = event(source("cases", 0), 0, created("A-3", "2022-04-12T02:00:00Z"));
        assert_eq!(province.apply(0, &unnamed), Some(Err(Rejection::MissingField("city"))));
    }

    #[test]
    fn repartitioning_moves_each_case_to_its_new_partition_and_keeps_every_figure() {
        let (sp, yb): (CityCode, CityCode) = ("220300".parse().unwrap(), "222400".parse().unwrap());
        let city_rules = || CityRules { counting: rules(), overflow: overflow() };
        let jilin = Cities::province(rules().zone, Some(sp), [(sp, city_rules()), (yb, city_rules())].into());
        let inputs = [("cases".to_owned(), 0), ("cases".to_owned(), 1)];
        let mut old: Vec<CountingPartition> = (0..3)
            .map(|_| {
                let mut p = CountingPartition::new(jilin.clone(), 3, 2);
                p.resume(None, &inputs, &["cases"]);
                p
            })
            .collect();
        let mut offsets = [0i64; 3];
        for n in 0..300 {
            let case_id = format!("SP-{n}");
            let city = (n % 3 == 0).then_some(yb);
            let day = 1 + n % 28;
            let from = source("cases", n % 2);
            let p = partition_of(&case_id, 3) as usize;
            let created = CaseEvent { city, ..created(&case_id, &format!("2022-04-{day:02}T02:00:00Z")) };
            old[p].apply(offsets[p], &event(from.clone(), n as i64, created));
            offsets[p] += 1;
            if n % 4 != 0 {
                let closed = CaseEvent {
                    event_id: format!("{case_id}-closed").into(),
                    case_id: case_id.as_str().into(),
                    city,
                    occurred_at: at(&format!("2022-04-{day:02}T09:00:00Z")),
                    change: Change::Closed,
                };
                old[p].apply(offsets[p], &event(from, n as i64, closed));
                offsets[p] += 1;
            }
        }
        let now = Instant::now();
        for p in &mut old {
            p.flush(now, true);
        }
        let new = repartition(&old, 12).unwrap();
        assert_eq!(new.len(), 12);

        let as_of = at("2022-05-02T00:00:00Z");
        let sums = |parts: &[CountingPartition]| {
            let mut sums: BTreeMap<(CityCode, Month), Tally> = BTreeMap::new();
            for p in parts {
                for (city, ledger) in p.ledgers() {
                    for (month, tally) in ledger.months() {
                        sums.entry((city, month)).or_default().merge(tally);
                    }
                }
            }
            sums.into_iter().map(|(k, t)| (k, t.figures(as_of))).collect::<Vec<_>>()
        };
        let before = sums(&old);
        assert_eq!(before.len(), 2, "two cities' April");
        assert_eq!(sums(&new), before, "every figure of every city's month");
        let held = |parts: &[CountingPartition]| {
            parts.iter().flat_map(|p| p.ledgers()).map(|(_, l)| l.cases_held()).sum::<usize>()
        };
        assert_eq!((held(&old), held(&new)), (300, 300));
        for (q, p) in new.iter().enumerate() {
            for (city, ledger) in p.ledgers() {
                for (case_id, _) in ledger.cases() {
                    assert_eq!(partition_of(case_id, 12), q as i32, "{case_id}");
                    let was = &old[partition_of(case_id, 3) as usize];
                    assert_eq!(
                        ledger.case(case_id),
                        was.case(city, case_id)
                            .map(|r| r.moved(was.ledger(city).unwrap().codes(), &mut ledger.codes().clone()))
                            .as_ref()
                    );
                }
            }
        }
        // No watermark moves forward: each new partition is where the slowest old one was.
        let slowest = old.iter().map(|p| p.sources.current()).min().flatten();
        assert!(slowest.is_some());
        assert!(new.iter().all(|p| p.sources.current() == slowest));
    }

    /// A city's case: created hours after the start, maybe transferred and closed later.
    type CaseShape = (i64, Option<(usize, i64)>, Option<i64>);

    fn case_events(city: Option<CityCode>, id: usize, (created_h, transfer, closed_h): CaseShape) -> Vec<CaseEvent> {
        let case_id = format!("c{id}");
        let hour = |h: i64| (at("2022-04-28T00:00:00Z") + jiff::SignedDuration::from_hours(h)).to_string();
        let event = |kind: &str, h: i64, change: Change| CaseEvent {
            event_id: format!("{case_id}-{kind}").into(),
            case_id: case_id.as_str().into(),
            city,
            occurred_at: at(&hour(h)),
            change,
        };
        let mut events = vec![CaseEvent { city, ..created(&case_id, &hour(created_h)) }];
        if let Some((to, after)) = transfer {
            let to = ["tiedong_district", "lishu_county", "unicom", "junk"][to].into();
            let moved = Change::Transferred(crate::domain::event::Transferred {
                to_department: to,
                from_department: None,
                due_at: None,
            });
            events.push(event("transferred", created_h + after, moved));
        }
        if let Some(after) = closed_h {
            events.push(event("closed", created_h + after, Change::Closed));
        }
        events
    }

    proptest::proptest! {
        /// Cities counted together, in any order, with repeats, on any number of partitions,
        /// give each city's figures as that city's events counted alone: a case id used by
        /// several cities is several cases.
        #[test]
        fn cities_counted_together_equal_each_city_counted_alone(
            cities in proptest::collection::vec(
                proptest::collection::vec((0i64..200, proptest::option::of((0usize..4, 0i64..100)), proptest::option::of(1i64..400)), 0..12),
                3,
            ),
            partitions in 1i32..5,
            order in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..200),
        ) {
            let codes: [CityCode; 3] = ["220300", "220100", "222400"].map(|c| c.parse().unwrap());
            let city_rules = || CityRules { counting: rules(), overflow: overflow() };
            let province = Cities::province(rules().zone, Some(codes[0]), codes.map(|c| (c, city_rules())).into());
            // The default city's events name no city.
            let named = |i: usize| (i > 0).then_some(codes[i]);
            let mut stream: Vec<CaseEvent> = cities
                .iter()
                .enumerate()
                .flat_map(|(i, cases)| cases.iter().enumerate().flat_map(move |(id, shape)| case_events(named(i), id, *shape)))
                .collect();
            // Any order, some events twice.
            for (k, n) in order.iter().enumerate() {
                let len = stream.len();
                if len == 0 { break; }
                if k % 3 == 0 { stream.push(stream[*n as usize % len].clone()); } else { stream.swap(k % len, *n as usize % len); }
            }
            let mut counted: Vec<CountingPartition> = (0..partitions)
                .map(|_| { let mut p = CountingPartition::new(province.clone(), partitions, 24); p.resume(None, &[], &[]); p })
                .collect();
            for (offset, e) in stream.iter().enumerate() {
                let p = partition_of(&e.case_id, partitions) as usize;
                let routed = Routed { source: source("cases", 0), watermark: None, idle: false, event: Some(RoutedEvent { offset: offset as i64, input_timestamp: None, event: e.clone() }) };
                let _ = counted[p].apply(offset as i64, &routed);
            }
            let as_of = at("2022-06-01T00:00:00Z");
            for (i, cases) in cities.iter().enumerate() {
                let mut alone = Ledger::new(rules());
                for (id, shape) in cases.iter().enumerate() {
                    for e in case_events(None, id, *shape) {
                        alone.apply(&e).unwrap();
                    }
                }
                let mut together: BTreeMap<Month, Tally> = BTreeMap::new();
                for p in &counted {
                    for (month, tally) in p.ledger(codes[i]).into_iter().flat_map(|l| l.months()) {
                        together.entry(month).or_default().merge(tally);
                    }
                }
                let figures = |m: &BTreeMap<Month, Tally>| m.iter().filter(|(_, t)| !t.is_empty()).map(|(m, t)| (*m, t.figures(as_of))).collect::<Vec<_>>();
                let expected: BTreeMap<Month, Tally> = alone.months().map(|(m, t)| (m, t.clone())).collect();
                proptest::prop_assert_eq!(figures(&together), figures(&expected), "city {}", codes[i]);
            }
        }
    }
}
