//! The month's red and black lists (红黑榜): departments ranked by a weighted score of their
//! rates.
//!
//! Rules:
//! - departments holding at least `min_assigned` of the month's cases are ranked; the row
//!   `unregistered` (codes outside the registry, `domain::overflow`) is no department and is
//!   not;
//! - a department's score is the weighted mean, from 0 to 100, of its on-time rate, its
//!   satisfaction rate, its on-time sign-for rate, 1 − its return rate and 1 − its reopen
//!   rate (at most 1: reopens of cases open again have no close); a rate with nothing to
//!   measure (no case closed, rated or signed for) is left out and the others' weights count
//!   in full;
//! - the score is rounded to one decimal; the ranking puts ties to more cases, then to the
//!   code;
//! - the top list is the best `size`, best first; the bottom list the worst `size` of the
//!   rest, the ranking read from its end, so no department is on both.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::figures::{DepartmentFigures, Ranked, Ranking};
use super::overflow::UNREGISTERED;

/// What the score weighs, from `[ranking]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankingRules {
    pub min_assigned: u64,
    pub size: usize,
    pub weights: Weights,
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub on_time: f64,
    pub satisfaction: f64,
    pub sign_for: f64,
    pub returns: f64,
    pub reopens: f64,
}

impl Default for RankingRules {
    fn default() -> RankingRules {
        RankingRules { min_assigned: 10, size: 5, weights: Weights::default() }
    }
}

impl Default for Weights {
    fn default() -> Weights {
        Weights { on_time: 0.3, satisfaction: 0.3, sign_for: 0.1, returns: 0.15, reopens: 0.15 }
    }
}

impl RankingRules {
    /// A department's score; `None` when it has too few cases to rank.
    pub fn score(&self, d: &DepartmentFigures) -> Option<f64> {
        if d.assigned < self.min_assigned || d.assigned == 0 {
            return None;
        }
        let w = &self.weights;
        let parts = [
            (w.on_time, d.on_time_rate),
            (w.satisfaction, d.satisfaction_rate),
            (w.sign_for, d.sign_for_rate),
            (w.returns, d.return_rate.map(|r| 1.0 - r)),
            // A case reopened twice and open again counts two reopens and no close.
            (w.reopens, d.reopen_rate.map(|r| 1.0 - r.min(1.0))),
        ];
        let (weighed, weights) = parts
            .iter()
            .filter_map(|(weight, rate)| rate.map(|rate| (weight, rate)))
            .fold((0.0, 0.0), |(sum, weights), (weight, rate)| (sum + weight * rate, weights + weight));
        let mean = if weights > 0.0 { weighed / weights } else { 0.0 };
        Some((mean * 1000.0).round() / 10.0)
    }

    pub fn rank(&self, departments: &BTreeMap<String, DepartmentFigures>) -> Ranking {
        let mut ranked: Vec<Ranked> = departments
            .iter()
            .filter(|(code, _)| code.as_str() != UNREGISTERED)
            .filter_map(|(code, d)| {
                self.score(d).map(|score| Ranked { department: code.clone(), score, assigned: d.assigned })
            })
            .collect();
        ranked.sort_by(|a, b| {
            b.score.total_cmp(&a.score).then(b.assigned.cmp(&a.assigned)).then_with(|| a.department.cmp(&b.department))
        });
        let top: Vec<Ranked> = ranked.iter().take(self.size).cloned().collect();
        let bottom = ranked.iter().skip(top.len()).rev().take(self.size).cloned().collect();
        Ranking { min_assigned: self.min_assigned, top, bottom }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn department(assigned: u64, on_time: u64, late: u64, satisfied: u64, dissatisfied: u64) -> DepartmentFigures {
        DepartmentFigures {
            assigned,
            closed_on_time: on_time,
            closed_late: late,
            satisfied,
            dissatisfied,
            ..Default::default()
        }
        .with_rates()
    }

    #[test]
    fn the_score_weighs_only_the_rates_a_department_has() {
        let rules = RankingRules::default();
        // Everything on time, nobody rated, nothing signed for: on time (0.3), no returns
        // (0.15) and no reopens (0.15) count, each in full.
        assert_eq!(rules.score(&department(10, 10, 0, 0, 0)), Some(100.0));
        // Half on time, half satisfied: (0.3 × 0.5 + 0.3 × 0.5 + 0.15 + 0.15) / 0.9.
        assert_eq!(rules.score(&department(10, 5, 5, 1, 1)), Some(66.7));
        let returns = DepartmentFigures { returned: 10, ..department(10, 10, 0, 0, 0) }.with_rates();
        assert_eq!(rules.score(&returns), Some(87.5));
        // Reopened more often than closed: that part scores 0, never below.
        let reopens = DepartmentFigures { reopened: 20, ..department(10, 10, 0, 0, 0) }.with_rates();
        assert_eq!(rules.score(&reopens), Some(75.0));
        assert_eq!(rules.score(&department(9, 9, 0, 0, 0)), None, "below min_assigned");
    }

    #[test]
    fn the_lists_take_the_best_and_the_worst_of_the_rest() {
        let rules = RankingRules { size: 2, ..RankingRules::default() };
        let departments: BTreeMap<String, DepartmentFigures> = [
            ("a", department(10, 10, 0, 0, 0)),
            ("b", department(20, 10, 10, 0, 0)),
            ("c", department(10, 0, 10, 0, 0)),
            ("d", department(12, 10, 0, 0, 0)),
            ("small", department(3, 0, 3, 0, 0)),
            (UNREGISTERED, department(50, 0, 50, 0, 0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let ranking = rules.rank(&departments);
        fn names(list: &[Ranked]) -> Vec<&str> {
            list.iter().map(|r| r.department.as_str()).collect()
        }
        // a and d tie at 100: d has more cases.
        assert_eq!(names(&ranking.top), ["d", "a"]);
        assert_eq!(names(&ranking.bottom), ["c", "b"], "unregistered codes are not ranked");
        let three = RankingRules { size: 5, ..rules }.rank(&departments);
        assert_eq!((three.top.len(), three.bottom.len()), (4, 0), "nobody on both lists");
        assert_eq!(ranking.top[0], Ranked { department: "d".into(), score: 100.0, assigned: 12 });
    }
}
