//! Codes the registry does not list, and the row they overflow into.
//!
//! Rules:
//! - every department and category the registry lists keeps its own rows;
//! - of the codes it does not list, a month keeps the `keep` first of each kind (in code
//!   order) as rows of their own, and counts every other one under `unregistered`: a case
//!   is counted whatever codes it carries, and a flood of junk codes from one upstream
//!   leaves a month's figures, and its message sizes, bounded;
//! - the code `unregistered` itself always means that row.
//!
//! Which codes a month keeps depends only on the codes its cases carry, never on arrival
//! order, partitions or restarts: folding each partition's tally and then their sum gives the
//! fold of the sum. (A code kept in the sum is one of the `keep` first of the whole month, so
//! of every partition's, and was kept by each; the codes each partition kept include all of
//! those, so the sum keeps the same.) Counting partitions fold the tallies they publish, and
//! the publisher folds their sum.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::figures::Tally;
use crate::labels::LabelRegistry;

/// The row of the codes a month does not keep.
pub const UNREGISTERED: &str = "unregistered";

#[derive(Clone, Debug)]
pub(crate) struct Overflow {
    registry: Arc<LabelRegistry>,
    /// Codes outside the registry kept as rows per month, of each kind.
    keep: usize,
}

impl Overflow {
    pub fn new(registry: Arc<LabelRegistry>, keep: usize) -> Overflow {
        Overflow { registry, keep }
    }

    /// The tally with the codes past the bound counted under `unregistered` (itself when there
    /// are none); its `folded` counts them, on top of what `tally` had folded already.
    pub fn fold(&self, tally: Tally) -> Tally {
        let departments = self.past_bound(tally.department_codes(), |c| self.registry.departments.contains_key(c));
        let categories = self.past_bound(tally.category_codes(), |c| self.registry.categories.contains_key(c));
        if departments.is_empty() && categories.is_empty() {
            return tally;
        }
        let mut folded = tally.recoded(&|code| read(&departments, code), &|code| read(&categories, code));
        folded.folded.departments += departments.len() as u64;
        folded.folded.categories += categories.len() as u64;
        folded
    }

    /// Of `codes` (in order, each once), those outside the registry past the first `keep`.
    fn past_bound<'a>(
        &self,
        codes: impl IntoIterator<Item = &'a String>,
        registered: impl Fn(&str) -> bool,
    ) -> BTreeSet<&'a str> {
        codes.into_iter().map(String::as_str).filter(|c| *c != UNREGISTERED && !registered(c)).skip(self.keep).collect()
    }
}

/// The row `code` is counted in.
fn read<'a>(past_bound: &BTreeSet<&str>, code: &'a str) -> &'a str {
    if past_bound.contains(code) { UNREGISTERED } else { code }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::domain::event::{CaseEvent, Change, Transferred};
    use crate::domain::figures::Figures;
    use crate::domain::fixtures::{phoned, rules};
    use crate::domain::ledger::Ledger;
    use crate::domain::month::Month;

    fn april() -> Month {
        "2022-04".parse().unwrap()
    }

    fn event(id: String, case: &str, day: u32, change: Change) -> CaseEvent {
        let occurred_at = format!("2022-04-{day:02}T02:00:00Z").parse().unwrap();
        CaseEvent { event_id: id.into(), case_id: case.into(), city: None, occurred_at, change }
    }

    /// Case `n` of April: created for `department` under `category`; every third is moved on
    /// to `transfer_to`, which sends it back to dispatch (even `n`) or to `department`
    /// (odd); every second closed.
    fn case(n: u32, department: &str, category: &str, transfer_to: &str) -> Vec<CaseEvent> {
        let id = format!("case-{n}");
        let day = 1 + n % 20;
        let mut events = vec![event(format!("{n}-c"), &id, day, Change::Created(phoned(department, category)))];
        if n.is_multiple_of(3) {
            let to = Transferred { to_department: transfer_to.into(), from_department: None, due_at: None };
            events.push(event(format!("{n}-t"), &id, day + 1, Change::Transferred(to)));
            let back = match n % 2 {
                0 => Change::Returned { department: transfer_to.into() },
                _ => Change::Transferred(Transferred {
                    to_department: department.into(),
                    from_department: None,
                    due_at: None,
                }),
            };
            events.push(event(format!("{n}-r"), &id, day + 2, back));
        }
        if n.is_multiple_of(2) {
            events.push(event(format!("{n}-x"), &id, day + 3, Change::Closed));
        }
        events
    }

    /// April: the registry's `tiexi_district` and `water` on every fifth case, junk codes
    /// (one per case, a few shared) on the others.
    fn month() -> Vec<Vec<CaseEvent>> {
        (0..60)
            .map(|n| match n % 5 {
                0 => case(n, "tiexi_district", "water", "tiedong_district"),
                _ => case(
                    n,
                    &format!("junk_d{:02}", n % 17),
                    &format!("junk_c{:02}", n % 13),
                    &format!("junk_t{}", n % 4),
                ),
            })
            .collect()
    }

    fn ledger<'a>(cases: impl IntoIterator<Item = &'a Vec<CaseEvent>>) -> Ledger {
        let mut ledger = Ledger::new(rules());
        for event in cases.into_iter().flatten() {
            ledger.apply(event).unwrap();
        }
        ledger
    }

    fn overflow(keep: usize) -> Overflow {
        Overflow::new(Arc::new(LabelRegistry::default()), keep)
    }

    fn figures(tally: &Tally) -> Figures {
        tally.figures(Timestamp::MAX)
    }

    #[test]
    fn codes_past_the_bound_are_counted_under_unregistered_and_the_registrys_keep_their_rows() {
        let whole = ledger(&month());
        let tally = whole.tally(april()).unwrap();
        let before = figures(tally);
        let folded = overflow(3).fold(tally.clone());
        let after = figures(&folded);

        assert_eq!(after.totals, before.totals, "every case is still counted");
        assert_eq!(after.by_channel, before.by_channel);
        assert_eq!(after.all_departments, before.all_departments);
        assert_eq!(after.transfers.total, before.transfers.total);
        assert_eq!(after.transfers.returned_cases, before.transfers.returned_cases);
        for code in ["tiexi_district", "tiedong_district"] {
            assert_eq!(after.by_department[code], before.by_department[code], "{code} keeps its row");
        }
        assert_eq!(after.by_category["water"].received, before.by_category["water"].received);
        // Departments outside the registry: junk_d00..16 and junk_t0..3; the first three kept.
        let kept: Vec<&str> = after.by_department.keys().map(String::as_str).collect();
        assert_eq!(kept, ["junk_d00", "junk_d01", "junk_d02", "tiedong_district", "tiexi_district", UNREGISTERED]);
        let categories: Vec<&str> = after.by_category.keys().map(String::as_str).collect();
        assert_eq!(categories, ["junk_c00", "junk_c01", "junk_c02", UNREGISTERED, "water"]);
        assert_eq!(folded.folded.departments, 21 - 3, "junk_d03..d16 and junk_t0..t3");
        assert_eq!(folded.folded.categories, 13 - 3);
        let past: Vec<&String> =
            before.by_department.keys().filter(|c| c.starts_with("junk_") && c.as_str() > "junk_d02").collect();
        let sum = |f: fn(&crate::domain::figures::DepartmentFigures) -> u64| -> u64 {
            past.iter().map(|c| f(&before.by_department[*c])).sum()
        };
        let unregistered = after.by_department[UNREGISTERED];
        assert_eq!(unregistered.assigned, sum(|d| d.assigned));
        assert_eq!(unregistered.returned, sum(|d| d.returned));
        assert_eq!(unregistered.in_progress, sum(|d| d.in_progress));
        assert!(
            before
                .transfers
                .returned_pairs
                .iter()
                .all(|p| p.from.starts_with("junk_t") || p.from == "tiedong_district")
        );
        assert!(after.transfers.returned_pairs.iter().any(|p| p.from == UNREGISTERED && p.to == UNREGISTERED));
        let pairs = |f: &Figures| f.transfers.returned_pairs.iter().map(|p| p.cases).sum::<u64>();
        assert_eq!(pairs(&after), pairs(&before));
        assert_eq!(overflow(3).fold(folded.clone()), folded, "a folded tally folds to itself");
        assert_eq!(&overflow(100).fold(tally.clone()), tally, "under the bound nothing folds");
    }

    #[test]
    fn folding_each_partition_then_the_sum_is_the_fold_of_the_sum() {
        let cases = month();
        let whole = ledger(&cases);
        for keep in [0, 1, 3, 8, 30] {
            let overflow = overflow(keep);
            let expected = figures(&overflow.fold(whole.tally(april()).unwrap().clone()));
            for partitions in [1, 2, 3, 7] {
                let mut sum = Tally::default();
                for p in 0..partitions {
                    let mine = ledger(cases.iter().enumerate().filter(|(n, _)| n % partitions == p).map(|(_, c)| c));
                    if let Some(tally) = mine.tally(april()) {
                        sum.merge(&overflow.fold(tally.clone()));
                    }
                }
                assert_eq!(figures(&overflow.fold(sum)), expected, "keep {keep}, {partitions} partitions");
            }
        }
    }

    #[test]
    fn a_restored_ledger_folds_to_the_same_rows() {
        let cases = month();
        let live = ledger(&cases);
        // Restored record by record, in another order, into a fresh code table.
        let mut restored = Ledger::new(rules());
        for n in (0..cases.len()).rev() {
            let id = format!("case-{n}");
            let record = live.case(&id).unwrap().moved(live.codes(), restored.codes_mut());
            restored.restore(id, record);
        }
        let overflow = overflow(2);
        let fold = |l: &Ledger| overflow.fold(l.tally(april()).unwrap().clone());
        assert_eq!(fold(&restored), fold(&live));
    }
}
