//! A recount's publishing: the counting partitions' flushes summed as the live publisher sums
//! them (`CityView`), and each month's snapshot when it is final.
//!
//! The live pipeline publishes a revision whenever a month's figures change, at most once per
//! `snapshot.min_interval`. A recount reads history as fast as it can, so it publishes a
//! month's revision only:
//! - when the month closes (event time past its end plus grace), so the first months come out
//!   while the rest is read;
//! - before the month is forgotten, past the retention, if it changed since;
//! - at the end of the input, if it changed since (the months still open then go out
//!   provisional, as the live pipeline would show them).
//!
//! Months before `from` are not counted (their cases began before the input read) and months
//! after `to` are counted but not published.

use std::collections::BTreeSet;
use std::time::Instant;

use jiff::Timestamp;

use super::city::CityView;
use super::figures::Tally;
use super::month::Month;
use super::province::{Cities, CityCode};
use super::publishers::Publishers;
use super::snapshot::{Snapshot, Status};

#[derive(Debug)]
pub(crate) struct Recount {
    view: CityView,
    publishers: Publishers,
    retention_months: u32,
    from: Month,
    to: Option<Month>,
    /// Months whose closing revision has gone out.
    closed: BTreeSet<Month>,
}

impl Recount {
    pub fn new(
        cities: Cities,
        publishers: Publishers,
        counting_partitions: usize,
        retention_months: u32,
        from: Month,
        to: Option<Month>,
    ) -> Recount {
        Recount {
            view: CityView::new(cities, retention_months, counting_partitions),
            publishers,
            retention_months,
            from,
            to,
            closed: BTreeSet::new(),
        }
    }

    /// What a counting partition's flush wrote for `partials`: its changed tallies and its
    /// watermark.
    pub fn take(
        &mut self,
        partition: i32,
        tallies: Vec<(CityCode, Month, Option<Tally>)>,
        watermark: Option<Timestamp>,
    ) {
        for (city, month, tally) in tallies {
            self.view.tally(partition, city, month, tally, None);
        }
        if let Some(at) = watermark {
            self.view.partition_reached(partition, at);
        }
    }

    /// The revisions due: each month's closing one, and the last of months about to be
    /// forgotten; at the `end` of the input, the last of every month. `published_at` is the
    /// wall clock.
    pub fn due(&mut self, end: bool, published_at: Timestamp) -> Vec<(Option<CityCode>, Snapshot)> {
        let Some(watermark) = self.view.watermark() else { return Vec::new() };
        let kept_from = Month::containing(watermark, self.view.cities().zone()).months_before(self.retention_months);
        let (from, to) = (self.from, self.to);
        let sums = self.view.sums();
        let wanted: BTreeSet<Month> = sums
            .keys()
            .map(|(_, m)| *m)
            .filter(|m| *m >= from && to.is_none_or(|to| *m <= to))
            .filter(|m| end || *m < kept_from || (!self.closed.contains(m) && self.publishers.is_closed(*m, watermark)))
            .collect();
        let due = self.publishers.due(sums, Some(watermark), Instant::now(), published_at, |m| wanted.contains(&m));
        self.closed.extend(due.iter().filter(|(_, s)| s.status == Status::Closed).map(|(_, s)| s.month));
        if let Some((kept_from, _)) = self.view.forget_past_retention() {
            self.publishers.forget_before(kept_from);
            self.closed.retain(|m| *m >= kept_from);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::fixtures::{CITY, one_city};
    use crate::domain::partition::CountingPartition;
    use crate::domain::publisher::{PublishRules, Publisher};
    use crate::domain::ranking::RankingRules;
    use crate::domain::routing::{Input, Router, Source};
    use crate::domain::snapshot::MadeBy;
    use crate::generator::{self, Plan};
    use jiff::ToSpan;

    const PARTITIONS: i32 = 3;

    fn plan() -> Plan {
        Plan {
            month: "2022-04".parse().unwrap(),
            zone: crate::domain::fixtures::zone(),
            cases: 1_500,
            next_month_days: 3,
            seed: 11,
            v2_events: true,
            city: None,
        }
    }

    fn publishers() -> Publishers {
        let rules = PublishRules {
            city: None,
            zone: crate::domain::fixtures::zone(),
            zone_name: "Asia/Shanghai".into(),
            grace: 1.day(),
            min_interval: Duration::ZERO,
            ranking: RankingRules::default(),
            made_by: MadeBy::default(),
        };
        Publishers::new([(CITY, Publisher::new(rules))].into(), None)
    }

    /// The plan's events spread over four input partitions by case, recounted from `from`
    /// the way the shell does, with a flush every `flush_every` messages; the snapshots, in
    /// the order published, and the rejections.
    fn recount(plan: &Plan, from: &str, flush_every: usize) -> (Vec<Snapshot>, Vec<&'static str>) {
        let now = Instant::now();
        let wall: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let mut router = Router::new(PARTITIONS, one_city(), 1 << 20, Duration::from_secs(600));
        let sources: Vec<Source> = (0..4).map(|p| Source { topic: "cases".into(), partition: p }).collect();
        let from: Month = from.parse().unwrap();
        let mut partitions: Vec<CountingPartition> = (0..PARTITIONS)
            .map(|_| {
                let mut p = CountingPartition::new(one_city(), PARTITIONS, 13);
                let inputs: Vec<(String, i32)> = sources.iter().map(|s| (s.topic.to_string(), s.partition)).collect();
                p.resume(None, &inputs, &["cases"]);
                p.count_from(from);
                p
            })
            .collect();
        let mut recount = Recount::new(one_city(), publishers(), PARTITIONS as usize, 13, from, None);
        let (mut snapshots, mut rejected) = (Vec::new(), Vec::new());
        let mut flush = |partitions: &mut Vec<CountingPartition>, recount: &mut Recount, end: bool| {
            for (i, p) in partitions.iter_mut().enumerate() {
                let flush = p.flush(now, true);
                recount.take(i as i32, flush.tallies, flush.watermark);
            }
            snapshots.extend(recount.due(end, wall).into_iter().map(|(_, s)| s));
        };
        let messages: Vec<String> = generator::generate(plan).into_iter().map(|g| g.json.to_string()).collect();
        for (offset, json) in messages.iter().enumerate() {
            let case = serde_json::from_str::<serde_json::Value>(json).unwrap()["case_id"].to_string();
            let source = &sources[crate::domain::routing::partition_of(&case, 4) as usize];
            let input = Input { source, offset: offset as i64, timestamp: None, payload: json.as_bytes() };
            match router.route(input, wall, now) {
                Ok((to, routed)) => {
                    if let Some(Err(r)) = partitions[to as usize].apply(offset as i64, &routed) {
                        rejected.push(r.kind());
                    }
                }
                Err(r) => rejected.push(r.kind()),
            }
            if offset % flush_every == 0 {
                for (to, marker) in router.markers() {
                    partitions[to as usize].apply(offset as i64, &marker);
                }
                flush(&mut partitions, &mut recount, false);
            }
        }
        router.mark_idle(now, Duration::ZERO, |_| true);
        for (to, marker) in router.markers() {
            partitions[to as usize].apply(0, &marker);
        }
        flush(&mut partitions, &mut recount, true);
        (snapshots, rejected)
    }

    #[test]
    fn a_recount_gives_the_figures_of_the_events_counted_at_once_at_the_last_event_time() {
        let plan = plan();
        let last = generator::generate(&plan).iter().map(|g| g.occurred_at).max().unwrap();
        let april: Month = "2022-04".parse().unwrap();
        let ledger = generator::count(&plan, crate::domain::fixtures::rules());
        let mut expected = ledger.figures(april, last).unwrap();
        expected.ranking = RankingRules::default().rank(&expected.by_department);
        for flush_every in [1, 97, usize::MAX] {
            let (snapshots, rejected) = recount(&plan, "2022-04", flush_every);
            assert!(rejected.iter().all(|r| *r == "conflicting_created"), "{rejected:?}");
            let april_revisions: Vec<&Snapshot> = snapshots.iter().filter(|s| s.month == april).collect();
            let last_revision = april_revisions.last().unwrap();
            assert_eq!(last_revision.status, Status::Closed);
            assert_eq!(last_revision.as_of, last);
            assert_eq!(last_revision.figures, expected, "flushing every {flush_every}");
            assert!(april_revisions.len() <= 2, "one when closing, one at the end: {}", april_revisions.len());
            let may = snapshots.iter().find(|s| s.month == april.next()).unwrap();
            assert_eq!(may.status, Status::Provisional, "May is still open at the end of the input");
        }
    }

    #[test]
    fn months_before_the_first_are_neither_counted_nor_published() {
        let (snapshots, rejected) = recount(&plan(), "2022-05", 50);
        let months: BTreeSet<String> = snapshots.iter().map(|s| s.month.to_string()).collect();
        assert_eq!(months.into_iter().collect::<Vec<_>>(), ["2022-05"]);
        assert!(rejected.iter().filter(|r| **r == "month_evicted").count() > 1_500, "April's events are rejected");
    }
}
