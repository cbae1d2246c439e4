//! When a month gets a new snapshot revision, and with which status.
//!
//! Event time decides status: a month is `closed` once the watermark passes its end plus the
//! grace period. Wall time only throttles: a month gets at most one revision per
//! `min_interval`, except the one that closes it, which goes out at once. Revisions only
//! grow, and a month never goes back from `closed`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use super::figures::{Figures, Tally};
use super::month::Month;
use super::province::CityCode;
use super::ranking::RankingRules;
use super::snapshot::{MadeBy, Snapshot, Status};

/// What a month's revision carries, read at the watermark `as_of`: a city's tally, or the
/// province's month (`province::ProvinceMonth`).
pub(crate) trait MonthFigures {
    fn figures(&self, as_of: Timestamp, ranking: &RankingRules) -> Figures;
}

impl MonthFigures for &Tally {
    fn figures(&self, as_of: Timestamp, ranking: &RankingRules) -> Figures {
        let mut figures = Tally::figures(self, as_of);
        figures.ranking = ranking.rank(&figures.by_department);
        figures
    }
}

#[derive(Clone, Debug)]
pub(crate) struct PublishRules {
    /// How the snapshots name their city: not at all for the default city, nor for the
    /// province.
    pub city: Option<CityCode>,
    pub zone: TimeZone,
    pub zone_name: String,
    pub grace: Span,
    pub min_interval: Duration,
    pub ranking: RankingRules,
    /// The rules' fingerprint and the build, as every snapshot names them.
    pub made_by: MadeBy,
}

#[derive(Clone, Debug, Default)]
struct Published {
    revision: u64,
    status: Option<Status>,
    figures: Option<Figures>,
    /// When this process last published or checked the month (wall clock).
    last_checked: Option<Instant>,
    /// The fingerprint of the rules of its latest revision.
    made_by: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Publisher {
    rules: PublishRules,
    months: BTreeMap<Month, Published>,
    rules_changed: Vec<(Month, String)>,
}

impl Publisher {
    pub fn new(rules: PublishRules) -> Publisher {
        Publisher { rules, months: BTreeMap::new(), rules_changed: Vec::new() }
    }

    /// Remembers a revision read back from the snapshots topic, so numbering continues.
    pub fn restore(&mut self, month: Month, snapshot: &Snapshot) {
        let p = self.months.entry(month).or_default();
        if snapshot.revision >= p.revision {
            p.revision = snapshot.revision;
            p.status = Some(snapshot.status);
            p.figures = Some(snapshot.figures.clone());
            p.made_by = Some(snapshot.made_by.rules_fingerprint.clone());
        }
    }

    /// Forgets months evicted from the ledger.
    pub(crate) fn forget_before(&mut self, kept_from: Month) {
        self.months.retain(|m, _| *m >= kept_from);
    }

    /// Each month's latest revision and whether it is closed.
    pub fn published(&self) -> impl Iterator<Item = (Month, u64, bool)> + '_ {
        self.months
            .iter()
            .filter(|(_, p)| p.revision > 0)
            .map(|(m, p)| (*m, p.revision, p.status == Some(Status::Closed)))
    }

    pub(crate) fn is_closed(&self, month: Month, watermark: Timestamp) -> bool {
        let end = month.end(&self.rules.zone).to_zoned_datetime(self.rules.zone.clone());
        let closes_at = end.checked_add(self.rules.grace).map_or(Timestamp::MAX, |z| z.timestamp());
        watermark >= closes_at
    }

    /// The revisions due now: one per month whose figures or status changed since its last
    /// revision, and whose last revision is at least `min_interval` old.
    pub fn due<T: MonthFigures>(
        &mut self,
        months: impl IntoIterator<Item = (Month, T)>,
        watermark: Option<Timestamp>,
        now: Instant,
        published_at: Timestamp,
    ) -> Vec<Snapshot> {
        let Some(as_of) = watermark else { return Vec::new() };
        let mut due = Vec::new();
        for (month, month_figures) in months {
            let closed_now = self.is_closed(month, as_of);
            let p = self.months.entry(month).or_default();
            let status =
                if closed_now || p.status == Some(Status::Closed) { Status::Closed } else { Status::Provisional };
            // The revision that closes a month is not held back: downstream waits for it.
            let closing = status == Status::Closed && p.status != Some(Status::Closed);
            if !closing && p.last_checked.is_some_and(|t| now.duration_since(t) < self.rules.min_interval) {
                continue;
            }
            let figures = month_figures.figures(as_of, &self.rules.ranking);
            if p.status == Some(status) && p.figures.as_ref() == Some(&figures) {
                continue;
            }
            p.revision += 1;
            p.status = Some(status);
            p.figures = Some(figures.clone());
            p.last_checked = Some(now);
            due.push(Snapshot {
                city: self.rules.city,
                month,
                timezone: self.rules.zone_name.clone(),
                revision: p.revision,
                status,
                as_of,
                published_at,
                figures,
                made_by: self.rules.made_by.clone(),
            });
            // The first revision of a month whose last one was counted by other rules: its
            // figures changed since, by the rules or by events counted under them.
            if let Some(before) = p.made_by.replace(self.rules.made_by.rules_fingerprint.clone())
                && before != self.rules.made_by.rules_fingerprint
                && !before.is_empty()
                && p.revision > 1
            {
                self.rules_changed.push((month, before));
            }
        }
        due
    }

    /// How its snapshots name their city: `None` for the default city's and the province's.
    pub(crate) fn city_key(&self) -> Option<CityCode> {
        self.rules.city
    }

    /// The rules and build its snapshots name.
    pub(crate) fn made_by(&self) -> &MadeBy {
        &self.rules.made_by
    }

    /// The months given their first revision under these rules since the last call (their
    /// latest revision before was counted by other rules), with the fingerprint of those.
    pub(crate) fn take_rules_changes(&mut self) -> Vec<(Month, String)> {
        std::mem::take(&mut self.rules_changed)
    }
}

/// Event time per partition; the watermark is the slowest partition that is not idle.
/// Idleness is told explicitly (a partition read to its end with nothing new), never guessed
/// from silence: a partition that stops talking because its reader is down or slow holds the
/// watermark back, which delays a month's closing but never closes it early. A partition
/// `expect`ed but not heard from yet holds it at the floor.
#[derive(Clone, Debug, Default)]
pub(crate) struct Watermarks {
    /// (topic, partition) -> (event time reached, if told one; idle).
    partitions: HashMap<(String, i32), (Option<Timestamp>, bool)>,
    /// The watermark of an earlier life (the latest snapshot's `as_of`): event time never
    /// goes back across a restart, and revisions throttled before a crash still go out.
    floor: Option<Timestamp>,
}

impl Watermarks {
    pub fn new() -> Watermarks {
        Watermarks::default()
    }

    pub(crate) fn raise_floor(&mut self, at: Timestamp) {
        self.floor = self.floor.max(Some(at));
    }

    pub(crate) fn floor(&self) -> Option<Timestamp> {
        self.floor
    }

    /// Partitions that exist whether or not they have told anything yet: until each has told
    /// an event time or that it is idle, the watermark stays at the floor.
    pub fn expect(&mut self, partitions: impl IntoIterator<Item = (String, i32)>) {
        for key in partitions {
            self.partitions.entry(key).or_insert((None, false));
        }
    }

    /// Forgets partitions outside `keep` (an input dropped from the configuration).
    pub(crate) fn retain(&mut self, keep: impl Fn(&str, i32) -> bool) {
        self.partitions.retain(|(topic, p), _| keep(topic, *p));
    }

    /// How many partitions have reported an event time.
    pub fn partitions(&self) -> usize {
        self.partitions.values().filter(|(at, _)| at.is_some()).count()
    }

    /// Each partition's event time and idleness, sorted, to keep across restarts.
    pub(crate) fn partition_times(&self) -> Vec<(String, i32, Option<Timestamp>, bool)> {
        let mut times: Vec<_> =
            self.partitions.iter().map(|((topic, p), (at, idle))| (topic.clone(), *p, *at, *idle)).collect();
        times.sort();
        times
    }

    /// A partition reached `at` in event time; it is not idle.
    pub(crate) fn observe(&mut self, topic: &str, partition: i32, at: Timestamp) {
        let entry = self.partitions.entry((topic.to_owned(), partition)).or_insert((None, false));
        entry.0 = entry.0.max(Some(at));
        entry.1 = false;
    }

    /// A partition was read to its end and has nothing new, or is being read again.
    pub(crate) fn set_idle(&mut self, topic: &str, partition: i32, idle: bool) {
        self.partitions.entry((topic.to_owned(), partition)).or_insert((None, idle)).1 = idle;
    }

    /// The minimum event time over partitions that are not idle; when all are idle, the
    /// maximum over all (everything has been read); the floor while a partition that is not
    /// idle has told no event time; never below the floor.
    pub(crate) fn current(&self) -> Option<Timestamp> {
        if self.partitions.values().any(|(at, idle)| at.is_none() && !idle) {
            return self.floor;
        }
        let active = self.partitions.values().filter(|(_, idle)| !idle).filter_map(|(t, _)| *t).min();
        let current = active.or_else(|| self.partitions.values().filter_map(|(t, _)| *t).max());
        current.max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::event::{CaseEvent, Change, Channel, Created};
    use crate::domain::ledger::Ledger;
    use jiff::ToSpan;

    fn rules() -> PublishRules {
        PublishRules {
            city: None,
            zone: TimeZone::get("Asia/Shanghai").unwrap(),
            zone_name: "Asia/Shanghai".into(),
            grace: 1.day(),
            min_interval: Duration::from_secs(10),
            ranking: RankingRules::default(),
            made_by: MadeBy { rules_fingerprint: "new".into(), build: "0.1.0".into() },
        }
    }

    fn ledger_with(n: usize) -> Ledger {
        let mut l = Ledger::new(crate::domain::fixtures::rules());
        for i in 0..n {
            l.apply(&CaseEvent {
                event_id: format!("e{i}").into(),
                case_id: format!("c{i}").into(),
                city: None,
                occurred_at: "2022-04-10T00:00:00Z".parse().unwrap(),
                change: Change::Created(Created {
                    channel: Channel::Hotline,
                    category: "epidemic".into(),
                    board: None,
                    request_kind: None,
                    department: None,
                    due_at: None,
                }),
            })
            .unwrap();
        }
        l
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn revisions_grow_with_changes_and_respect_min_interval() {
        let mut p = Publisher::new(rules());
        let t0 = Instant::now();
        let wm = Some(ts("2022-04-20T00:00:00Z"));
        let s = p.due(ledger_with(1).months(), wm, t0, Timestamp::UNIX_EPOCH);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].revision, s[0].status), (1, Status::Provisional));
        assert!(
            p.due(ledger_with(1).months(), wm, t0 + Duration::from_secs(60), Timestamp::UNIX_EPOCH).is_empty(),
            "no change, no revision"
        );
        assert!(p.due(ledger_with(2).months(), wm, t0 + Duration::from_secs(65), Timestamp::UNIX_EPOCH).len() == 1);
        assert!(
            p.due(ledger_with(3).months(), wm, t0 + Duration::from_secs(66), Timestamp::UNIX_EPOCH).is_empty(),
            "throttled"
        );
        let s = p.due(ledger_with(3).months(), wm, t0 + Duration::from_secs(76), Timestamp::UNIX_EPOCH);
        assert_eq!(s[0].revision, 3);
        assert_eq!(s[0].figures.totals.received, 3);
    }

    #[test]
    fn a_month_closes_after_its_end_plus_grace_in_the_zone() {
        let mut p = Publisher::new(rules());
        let t0 = Instant::now();
        let l = ledger_with(1);
        // April ends at 2022-04-30T16:00Z in Shanghai; grace is one day.
        let s = p.due(l.months(), Some(ts("2022-05-01T15:59:59Z")), t0, Timestamp::UNIX_EPOCH);
        assert_eq!(s[0].status, Status::Provisional);
        // The closing revision goes out at once, within min_interval of the last one.
        let s = p.due(l.months(), Some(ts("2022-05-01T16:00:00Z")), t0 + Duration::from_secs(1), Timestamp::UNIX_EPOCH);
        assert_eq!((s[0].revision, s[0].status), (2, Status::Closed));
        // Later changes of a closed month are throttled again.
        let more = ledger_with(2);
        assert!(
            p.due(more.months(), Some(ts("2022-05-02T00:00:00Z")), t0 + Duration::from_secs(2), Timestamp::UNIX_EPOCH)
                .is_empty()
        );
        let s =
            p.due(more.months(), Some(ts("2022-05-02T00:00:00Z")), t0 + Duration::from_secs(11), Timestamp::UNIX_EPOCH);
        assert_eq!((s[0].revision, s[0].status), (3, Status::Closed));
    }

    #[test]
    fn restored_revisions_continue_and_closed_stays_closed() {
        let mut p = Publisher::new(rules());
        let l = ledger_with(1);
        let april = "2022-04".parse().unwrap();
        let mut old =
            p.due(l.months(), Some(ts("2022-06-01T00:00:00Z")), Instant::now(), Timestamp::UNIX_EPOCH).remove(0);
        old.revision = 7;
        let mut fresh = Publisher::new(rules());
        fresh.restore(april, &old);
        assert!(
            fresh.due(l.months(), Some(ts("2022-06-01T00:00:00Z")), Instant::now(), Timestamp::UNIX_EPOCH).is_empty()
        );
        let s =
            fresh.due(ledger_with(2).months(), Some(ts("2022-04-20T00:00:00Z")), Instant::now(), Timestamp::UNIX_EPOCH);
        assert_eq!((s[0].revision, s[0].status), (8, Status::Closed));
    }

    #[test]
    fn a_revision_names_its_rules_and_one_that_new_rules_made_says_so() {
        let april = "2022-04".parse().unwrap();
        let wm = Some(ts("2022-04-20T00:00:00Z"));
        let mut old =
            Publisher::new(rules()).due(ledger_with(1).months(), wm, Instant::now(), Timestamp::UNIX_EPOCH).remove(0);
        assert_eq!(old.made_by, rules().made_by);
        old.made_by.rules_fingerprint = "old".into();
        // Restarted under other rules that leave the figures as they were: nothing is published
        // or said.
        let mut p = Publisher::new(rules());
        p.restore(april, &old);
        assert!(p.due(ledger_with(1).months(), wm, Instant::now(), Timestamp::UNIX_EPOCH).is_empty());
        assert!(p.take_rules_changes().is_empty());
        // Changed figures: the month's first revision under the new rules names them, said once.
        let later = Instant::now() + Duration::from_secs(60);
        let s = p.due(ledger_with(2).months(), wm, later, Timestamp::UNIX_EPOCH);
        assert_eq!((s[0].revision, s[0].made_by.rules_fingerprint.as_str()), (2, "new"));
        assert_eq!(p.take_rules_changes(), [(april, "old".to_owned())]);
        assert!(p.take_rules_changes().is_empty());
    }

    #[test]
    fn the_watermark_never_goes_below_an_earlier_life() {
        let mut w = Watermarks::new();
        assert_eq!(w.current(), None);
        w.raise_floor(ts("2022-05-10T00:00:00Z"));
        assert_eq!(w.current(), Some(ts("2022-05-10T00:00:00Z")));
        w.observe("cases", 0, ts("2022-05-01T00:00:00Z"));
        assert_eq!(w.current(), Some(ts("2022-05-10T00:00:00Z")));
        w.observe("cases", 0, ts("2022-05-11T00:00:00Z"));
        assert_eq!(w.current(), Some(ts("2022-05-11T00:00:00Z")));
    }

    #[test]
    fn only_a_partition_told_idle_stops_holding_the_watermark() {
        let mut w = Watermarks::new();
        w.observe("cases", 0, ts("2022-04-01T00:00:00Z"));
        w.observe("cases", 1, ts("2022-05-03T00:00:00Z"));
        assert_eq!(w.current(), Some(ts("2022-04-01T00:00:00Z")), "silence is not idleness");
        w.set_idle("cases", 0, true);
        assert_eq!(w.current(), Some(ts("2022-05-03T00:00:00Z")));
        w.set_idle("cases", 1, true);
        assert_eq!(w.current(), Some(ts("2022-05-03T00:00:00Z")), "all idle: everything is read");
        w.observe("cases", 0, ts("2022-04-02T00:00:00Z"));
        assert_eq!(w.current(), Some(ts("2022-04-02T00:00:00Z")), "an event wakes it");
        w.set_idle("letters", 0, true);
        assert_eq!(w.current(), Some(ts("2022-04-02T00:00:00Z")), "an idle partition without events holds nothing");
    }

    #[test]
    fn an_expected_partition_not_heard_from_holds_the_watermark_at_the_floor() {
        let mut w = Watermarks::new();
        w.expect([("cases".to_owned(), 0), ("letters".to_owned(), 0)]);
        w.observe("cases", 0, ts("2022-06-05T00:00:00Z"));
        assert_eq!(w.current(), None, "letters/0 may still hold April's events");
        w.raise_floor(ts("2022-04-10T00:00:00Z"));
        assert_eq!(w.current(), Some(ts("2022-04-10T00:00:00Z")));
        w.set_idle("letters", 0, false);
        assert_eq!(w.current(), Some(ts("2022-04-10T00:00:00Z")), "being read, no time yet");
        w.observe("letters", 0, ts("2022-04-20T00:00:00Z"));
        assert_eq!(w.current(), Some(ts("2022-04-20T00:00:00Z")));
        w.set_idle("letters", 0, true);
        assert_eq!(w.current(), Some(ts("2022-06-05T00:00:00Z")));
    }
}
