//! The cities as the publisher sees them: each counting partition's latest tally of each
//! city's month (a partial), their sums, and how far each partition has got in event time.
//!
//! Rules:
//! - a city's month's figures are the sum of its partitions' latest tallies, with the codes
//!   past the bound of that city's registry counted under `unregistered` (`Overflow`); a
//!   tombstone removes a partition's tally;
//! - the month watermark is the slowest counting partition's, and exists only once every
//!   partition has told one (before that a month could look complete with some missing);
//!   counting partitions are never idle, so a silent one is behind, not done;
//! - months past the retention at the month watermark are forgotten: every partition is at
//!   least that far, so none writes them again, and their partials can be tombstoned.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::figures::Tally;
use super::month::Month;
use super::province::{Cities, CityCode};
use super::publisher::Watermarks;

/// `Watermarks` follows partitions of topics; counting partitions are all of one.
const COUNTING: &str = "counting";

/// A counting partition's tally of a city's month in `partials`.
pub(crate) type PartialTally = (i32, CityCode, Month);

#[derive(Debug)]
pub(crate) struct CityView {
    /// Each city's registry folds its sums.
    cities: Cities,
    retention_months: u32,
    counting_partitions: usize,
    /// (city, month) -> counting partition -> its latest tally.
    partials: BTreeMap<(CityCode, Month), BTreeMap<i32, Tally>>,
    /// The sum over partitions of each city's month, up to date for those not in `changed`.
    sums: BTreeMap<(CityCode, Month), Tally>,
    changed: BTreeSet<(CityCode, Month)>,
    /// When (ms, the partial's Kafka timestamp) the latest partial changed each city's month.
    changed_at: BTreeMap<(CityCode, Month), i64>,
    watermarks: Watermarks,
}

impl CityView {
    pub fn new(cities: Cities, retention_months: u32, counting_partitions: usize) -> CityView {
        CityView {
            cities,
            retention_months,
            counting_partitions,
            partials: BTreeMap::new(),
            sums: BTreeMap::new(),
            changed: BTreeSet::new(),
            changed_at: BTreeMap::new(),
            watermarks: Watermarks::new(),
        }
    }

    /// Whether `partition` is one of the counting partitions.
    pub fn counts(&self, partition: i32) -> bool {
        (0..self.counting_partitions as i32).contains(&partition)
    }

    /// A partition's latest tally of `city`'s `month` (`None`: a tombstone), written at `at_ms`.
    pub fn tally(&mut self, partition: i32, city: CityCode, month: Month, tally: Option<Tally>, at_ms: Option<i64>) {
        let tallies = self.partials.entry((city, month)).or_default();
        match tally {
            Some(t) => tallies.insert(partition, t),
            None => tallies.remove(&partition),
        };
        self.changed.insert((city, month));
        if let Some(ms) = at_ms {
            self.changed_at.insert((city, month), ms);
        }
    }

    pub(crate) fn cities(&self) -> &Cities {
        &self.cities
    }

    /// A partition's watermark.
    pub(crate) fn partition_reached(&mut self, partition: i32, at: Timestamp) {
        self.watermarks.observe(COUNTING, partition, at);
    }

    /// Event time never goes back across a restart: the latest snapshot's `as_of`.
    pub(crate) fn raise_floor(&mut self, at: Timestamp) {
        self.watermarks.raise_floor(at);
    }

    /// The month watermark, once every counting partition has told its own.
    pub fn watermark(&self) -> Option<Timestamp> {
        (self.watermarks.partitions() >= self.counting_partitions).then(|| self.watermarks.current()).flatten()
    }

    /// Forgets the months past the retention at the month watermark; returns the first month
    /// kept and the partials (partition, city, month) to tombstone.
    pub(crate) fn forget_past_retention(&mut self) -> Option<(Month, Vec<PartialTally>)> {
        let kept_from = Month::containing(self.watermark()?, self.cities.zone()).months_before(self.retention_months);
        let kept = |(_, m): &(CityCode, Month)| *m >= kept_from;
        let (kept_partials, forgotten) = std::mem::take(&mut self.partials).into_iter().partition(|(k, _)| kept(k));
        self.partials = kept_partials;
        self.sums.retain(|k, _| kept(k));
        self.changed.retain(kept);
        self.changed_at.retain(|k, _| kept(k));
        let forgotten: BTreeMap<(CityCode, Month), BTreeMap<i32, Tally>> = forgotten;
        let tombstones = forgotten
            .into_iter()
            .flat_map(|((city, month), tallies)| tallies.into_keys().map(move |p| (p, city, month)))
            .collect();
        Some((kept_from, tombstones))
    }

    /// Each city's month's sum over partitions, folded by the city's registry.
    pub(crate) fn sums(&mut self) -> &BTreeMap<(CityCode, Month), Tally> {
        for (city, month) in std::mem::take(&mut self.changed) {
            let mut sum = Tally::default();
            for tally in self.partials.get(&(city, month)).into_iter().flat_map(|p| p.values()) {
                sum.merge(tally);
            }
            match self.cities.rules(city) {
                Some(rules) if !sum.is_empty() => {
                    self.sums.insert((city, month), rules.overflow.fold(sum));
                }
                _ => {
                    self.sums.remove(&(city, month));
                }
            }
        }
        &self.sums
    }

    /// When the partial that last changed a city's month was written, once per change.
    pub(crate) fn take_changed_at(&mut self, city: CityCode, month: Month) -> Option<i64> {
        self.changed_at.remove(&(city, month))
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    use crate::domain::event::{CaseEvent, Change, Channel, Created};
    use crate::domain::ledger::Ledger;

    use crate::domain::fixtures::{CITY, one_city, rules};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn april() -> Month {
        "2022-04".parse().unwrap()
    }

    /// The tally of one partition holding `cases` hotline cases created in April.
    fn tally_of(cases: &[&str]) -> Tally {
        let mut ledger = Ledger::new(rules());
        for id in cases {
            let created = Created {
                channel: Channel::Hotline,
                category: "water".into(),
                board: None,
                request_kind: None,
                department: None,
                due_at: None,
            };
            let event = CaseEvent {
                event_id: format!("{id}-c").into(),
                case_id: (*id).into(),
                city: None,
                occurred_at: at("2022-04-10T02:00:00Z"),
                change: Change::Created(created),
            };
            ledger.apply(&event).unwrap();
        }
        ledger.tally(april()).unwrap().clone()
    }

    fn received(city: &mut CityView, month: Month) -> Option<u64> {
        city.sums().get(&(CITY, month)).map(|t| t.figures(at("2022-05-01T00:00:00Z")).totals.received)
    }

    #[test]
    fn no_month_watermark_until_every_partition_has_told_one() {
        let mut city = CityView::new(one_city(), 2, 3);
        city.raise_floor(at("2022-04-01T00:00:00Z"));
        city.partition_reached(0, at("2022-04-20T00:00:00Z"));
        city.partition_reached(2, at("2022-04-25T00:00:00Z"));
        assert_eq!(city.watermark(), None, "partition 1 is silent: behind, not done");
        city.partition_reached(1, at("2022-04-22T00:00:00Z"));
        assert_eq!(city.watermark(), Some(at("2022-04-20T00:00:00Z")), "the slowest partition");
        city.partition_reached(0, at("2022-04-30T00:00:00Z"));
        assert_eq!(city.watermark(), Some(at("2022-04-22T00:00:00Z")));
    }

    #[test]
    fn a_month_is_the_sum_of_its_partitions_latest_tallies() {
        let mut city = CityView::new(one_city(), 2, 2);
        city.tally(0, CITY, april(), Some(tally_of(&["a"])), Some(1));
        city.tally(1, CITY, april(), Some(tally_of(&["b", "c"])), Some(2));
        assert_eq!(received(&mut city, april()), Some(3));
        // A partition's newer tally replaces its older one.
        city.tally(0, CITY, april(), Some(tally_of(&["a", "d"])), Some(3));
        assert_eq!(received(&mut city, april()), Some(4));
        assert_eq!(city.take_changed_at(CITY, april()), Some(3));
        assert_eq!(city.take_changed_at(CITY, april()), None, "once per change");
        // Tombstones remove a partition's tally; a month with nothing left is gone.
        city.tally(1, CITY, april(), None, None);
        assert_eq!(received(&mut city, april()), Some(2));
        city.tally(0, CITY, april(), None, None);
        assert_eq!(received(&mut city, april()), None);
    }

    #[test]
    fn months_past_the_retention_are_forgotten_once_every_partition_is_past_them() {
        let march: Month = "2022-03".parse().unwrap();
        let mut city = CityView::new(one_city(), 0, 2);
        city.tally(0, CITY, march, Some(tally_of(&["a"])), None);
        city.tally(1, CITY, march, Some(tally_of(&["b"])), None);
        city.tally(1, CITY, april(), Some(tally_of(&["c"])), None);
        city.partition_reached(0, at("2022-04-10T00:00:00Z"));
        city.sums();
        assert_eq!(city.forget_past_retention(), None, "partition 1 has told nothing: it may still write March");
        city.partition_reached(1, at("2022-03-31T00:00:00Z"));
        let (kept_from, tombstones) = city.forget_past_retention().unwrap();
        assert_eq!((kept_from, tombstones), (march, vec![]), "partition 1 is still in March");
        city.partition_reached(1, at("2022-04-02T00:00:00Z"));
        let (kept_from, tombstones) = city.forget_past_retention().unwrap();
        assert_eq!(kept_from, april());
        assert_eq!(tombstones, vec![(0, CITY, march), (1, CITY, march)]);
        assert!(!city.sums().contains_key(&(CITY, march)));
        assert_eq!(received(&mut city, april()), Some(1));
    }

    #[test]
    fn each_citys_month_is_summed_apart() {
        use crate::domain::fixtures::overflow;
        use crate::domain::province::CityRules;
        let (sp, yb): (CityCode, CityCode) = ("220300".parse().unwrap(), "222400".parse().unwrap());
        let city_rules = || CityRules { counting: rules(), overflow: overflow() };
        let cities = Cities::province(rules().zone, Some(sp), [(sp, city_rules()), (yb, city_rules())].into());
        let mut view = CityView::new(cities, 0, 2);
        view.tally(0, sp, april(), Some(tally_of(&["a", "b"])), None);
        view.tally(1, sp, april(), Some(tally_of(&["c"])), None);
        view.tally(0, yb, april(), Some(tally_of(&["a"])), None);
        let received = |view: &mut CityView, city| {
            view.sums().get(&(city, april())).map(|t| t.figures(at("2022-05-01T00:00:00Z")).totals.received)
        };
        assert_eq!((received(&mut view, sp), received(&mut view, yb)), (Some(3), Some(1)));
        let unknown: CityCode = "220100".parse().unwrap();
        view.tally(0, unknown, april(), Some(tally_of(&["z"])), None);
        assert_eq!(received(&mut view, unknown), None, "a city not counted has no sums");
        view.partition_reached(0, at("2022-05-02T00:00:00Z"));
        view.partition_reached(1, at("2022-05-02T00:00:00Z"));
        let (_, tombstones) = view.forget_past_retention().unwrap();
        assert_eq!(tombstones, vec![(0, unknown, april()), (0, sp, april()), (1, sp, april()), (0, yb, april())]);
    }
}
