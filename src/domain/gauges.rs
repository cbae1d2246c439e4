//! What the publishing instance's gauges show of the city, read from the summed tallies.
//!
//! Rules:
//! - every month held shows its totals and whether event time has closed it;
//! - only the running month (the watermark's) and the one before are broken down by channel,
//!   category and department, which keeps the number of series bounded;
//! - open and overdue cases are per department over every month held, overdue judged at the
//!   watermark (nothing is overdue before there is one);
//! - codes become bounded labels (`LabelRegistry`: codes it lacks read `unknown`), and rows
//!   that share a label are summed.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::figures::{Counts, Figures, Folded, LOOP_FIGURES, Tally};
use super::month::Month;
use crate::labels::LabelRegistry;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CityGauges {
    pub watermark: Option<Timestamp>,
    pub months: Vec<MonthGauges>,
    /// Department label -> what it holds open now, over every month.
    pub open: BTreeMap<String, Open>,
    /// Per month: the latest published revision and whether it is closed.
    pub published: Vec<(Month, u64, bool)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MonthGauges {
    pub month: Month,
    pub totals: Counts,
    /// Event time has passed the month's end plus the grace period.
    pub closed: bool,
    /// Codes outside the registry counted under `unregistered`.
    pub folded: Folded,
    /// The running and the previous month only.
    pub breakdown: Option<Breakdown>,
}

/// A month's counts by label; a department's `received` is the cases assigned to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Breakdown {
    pub channels: BTreeMap<String, Counts>,
    pub categories: BTreeMap<String, Counts>,
    pub departments: BTreeMap<String, Counts>,
    /// Contract v2's counts by department label and figure (`LOOP_FIGURES`); departments
    /// without any are left out.
    pub office_loop: BTreeMap<String, [u64; LOOP_FIGURES.len()]>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Open {
    pub cases: u64,
    pub overdue: u64,
}

impl CityGauges {
    /// `months`: each month's summed tally and whether event time has closed it.
    pub fn read<'a>(
        months: impl IntoIterator<Item = (Month, &'a Tally, bool)>,
        watermark: Option<Timestamp>,
        zone: &TimeZone,
        published: Vec<(Month, u64, bool)>,
        labels: &LabelRegistry,
    ) -> CityGauges {
        let running = watermark.map(|w| Month::containing(w, zone));
        let mut gauges = CityGauges { watermark, published, ..CityGauges::default() };
        for (month, tally, closed) in months {
            let f = tally.figures(watermark.unwrap_or(Timestamp::MIN));
            for (department, d) in &f.by_department {
                let open = gauges.open.entry(labels.department(department).to_owned()).or_default();
                open.cases += d.in_progress;
                open.overdue += d.overdue;
            }
            let breakdown =
                running.is_some_and(|r| month == r || month == r.months_before(1)).then(|| Breakdown::of(&f, labels));
            let t = &f.totals;
            let totals = Counts { received: t.received, closed: t.closed, in_progress: t.in_progress };
            gauges.months.push(MonthGauges { month, totals, closed, folded: tally.folded, breakdown });
        }
        gauges
    }
}

impl Breakdown {
    fn of(f: &Figures, labels: &LabelRegistry) -> Breakdown {
        let mut b = Breakdown { channels: f.by_channel.clone(), ..Breakdown::default() };
        for (category, c) in &f.by_category {
            add(&mut b.categories, labels.category(category), c.received, c.closed, c.in_progress);
        }
        for (department, d) in &f.by_department {
            let closed = d.closed_on_time + d.closed_late;
            add(&mut b.departments, labels.department(department), d.assigned, closed, d.in_progress);
            if d.has_office_loop() {
                let row = b.office_loop.entry(labels.department(department).to_owned()).or_default();
                row.iter_mut().zip(d.office_loop()).for_each(|(sum, n)| *sum += n);
            }
        }
        b
    }
}

fn add(rows: &mut BTreeMap<String, Counts>, label: &str, received: u64, closed: u64, in_progress: u64) {
    let row = rows.entry(label.to_owned()).or_default();
    row.received += received;
    row.closed += closed;
    row.in_progress += in_progress;
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::event::{CaseEvent, Change, Rating};
    use crate::domain::fixtures::{phoned, rules, zone};
    use crate::domain::ledger::Ledger;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn created(case: &str, day: &str, department: &str, category: &str) -> CaseEvent {
        CaseEvent {
            event_id: format!("{case}-created").into(),
            case_id: case.into(),
            city: None,
            occurred_at: at(&format!("{day}T02:00:00Z")),
            change: Change::Created(phoned(department, category)),
        }
    }

    fn closed(case: &str, day: &str) -> CaseEvent {
        CaseEvent {
            event_id: format!("{case}-closed").into(),
            case_id: case.into(),
            city: None,
            occurred_at: at(&format!("{day}T03:00:00Z")),
            change: Change::Closed,
        }
    }

    /// Three months of cases: February's one open past its deadline, March's and April's
    /// partly closed, with codes the registry lacks.
    fn city() -> Ledger {
        let mut ledger = Ledger::new(rules());
        for event in [
            created("feb", "2022-02-10", "tiexi_district", "water"),
            created("mar1", "2022-03-30", "tiexi_district", "heating"),
            created("mar2", "2022-03-30", "typo_bureau", "water"),
            closed("mar2", "2022-03-31"),
            created("apr1", "2022-04-10", "tiexi_district", "zhang_san"),
            created("apr2", "2022-04-11", "13912345678", "heating"),
            closed("apr2", "2022-04-12"),
        ] {
            ledger.apply(&event).unwrap();
        }
        ledger
    }

    fn read(ledger: &Ledger, watermark: Option<&str>) -> CityGauges {
        let months = ledger.months().map(|(m, t)| (m, t, m < "2022-03".parse().unwrap()));
        let published = vec![("2022-02".parse().unwrap(), 7, true)];
        CityGauges::read(months, watermark.map(at), &zone(), published, &LabelRegistry::default())
    }

    fn counts(received: u64, closed: u64) -> Counts {
        Counts { received, closed, in_progress: received - closed }
    }

    #[test]
    fn every_month_shows_its_totals_and_the_running_two_their_breakdown() {
        let gauges = read(&city(), Some("2022-04-20T00:00:00Z"));
        let months: Vec<(String, Counts, bool, bool)> =
            gauges.months.iter().map(|m| (m.month.to_string(), m.totals, m.closed, m.breakdown.is_some())).collect();
        assert_eq!(
            months,
            [
                ("2022-02".into(), counts(1, 0), true, false),
                ("2022-03".into(), counts(2, 1), false, true),
                ("2022-04".into(), counts(2, 1), false, true),
            ]
        );
        assert_eq!(gauges.published, [("2022-02".parse().unwrap(), 7, true)]);
        assert_eq!(gauges.watermark, Some(at("2022-04-20T00:00:00Z")));
    }

    #[test]
    fn codes_outside_the_registry_are_summed_under_unknown() {
        let gauges = read(&city(), Some("2022-04-20T00:00:00Z"));
        let april = gauges.months[2].breakdown.as_ref().unwrap();
        assert_eq!(april.departments["tiexi_district"], counts(1, 0));
        assert_eq!(april.departments["unknown"], counts(1, 1));
        assert_eq!(april.categories["heating"], counts(1, 1));
        assert_eq!(april.categories["unknown"], counts(1, 0));
        assert_eq!(april.channels["hotline"], counts(2, 1));
        let march = gauges.months[1].breakdown.as_ref().unwrap();
        assert_eq!(march.departments["unknown"], counts(1, 1));
        assert!(april.office_loop.is_empty(), "a v1 stream has no loop figures: {:?}", april.office_loop);
        let labels: Vec<&String> = gauges
            .months
            .iter()
            .filter_map(|m| m.breakdown.as_ref())
            .flat_map(|b| b.departments.keys().chain(b.categories.keys()))
            .chain(gauges.open.keys())
            .collect();
        for personal in ["13912345678", "zhang_san", "typo_bureau"] {
            assert!(!labels.iter().any(|l| *l == personal), "{personal} became a label");
        }
    }

    #[test]
    fn open_and_overdue_cases_are_summed_over_months_and_judged_at_the_watermark() {
        // February's case is 15 days past due by 20 April; March's open one is due 14 April.
        let gauges = read(&city(), Some("2022-04-20T00:00:00Z"));
        assert_eq!(gauges.open["tiexi_district"], Open { cases: 3, overdue: 2 });
        assert_eq!(gauges.open["unknown"], Open { cases: 0, overdue: 0 });
        let earlier = read(&city(), Some("2022-04-12T00:00:00Z"));
        assert_eq!(earlier.open["tiexi_district"], Open { cases: 3, overdue: 1 });
    }

    #[test]
    fn the_office_loop_is_summed_by_department_label() {
        let mut ledger = city();
        let rated = |id: &str, case: &str, result| CaseEvent {
            event_id: id.into(),
            case_id: case.into(),
            city: None,
            occurred_at: at("2022-04-13T00:00:00Z"),
            change: Change::Rated { result },
        };
        ledger.apply(&rated("r1", "apr2", Rating::Dissatisfied)).unwrap();
        let returned = CaseEvent {
            event_id: "ret".into(),
            case_id: "apr1".into(),
            city: None,
            occurred_at: at("2022-04-11T00:00:00Z"),
            change: Change::Returned { department: "tiexi_district".into() },
        };
        ledger.apply(&returned).unwrap();
        let gauges = read(&ledger, Some("2022-04-20T00:00:00Z"));
        let april = gauges.months[2].breakdown.as_ref().unwrap();
        let figure = |d: &str, name: &str| april.office_loop[d][LOOP_FIGURES.iter().position(|f| *f == name).unwrap()];
        assert_eq!(figure("unknown", "dissatisfied"), 1, "13912345678 closed it: counted as unknown");
        assert_eq!(figure("tiexi_district", "returned"), 1);
        assert_eq!(april.departments["tiexi_district"], Counts::default(), "it holds nothing now");
    }

    #[test]
    fn before_a_watermark_nothing_is_overdue_or_broken_down() {
        let gauges = read(&city(), None);
        assert!(gauges.months.iter().all(|m| m.breakdown.is_none()));
        assert_eq!(gauges.open["tiexi_district"], Open { cases: 3, overdue: 0 });
    }
}
