//! Two snapshots of one month side by side (`hotline diff`): every figure that differs, the
//! month's and each department's, under the report's Chinese labels and the registry's names,
//! with the rules each side was counted by. What an office reads before it adopts new rules:
//! last year's month under the rules in force against the same month under the new ones.

use serde::Serialize;

use crate::domain::figures::{
    DepartmentFigures, Figures, ON_TIME, REOPEN, RETURN, SATISFACTION, SIGN_FOR, saturating_sum,
};
use crate::domain::snapshot::Snapshot;
use crate::labels::LabelRegistry;

use super::{cell, percent};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diff {
    pub month: String,
    pub a: Side,
    pub b: Side,
    /// The figures that differ, the month's first, then by department in the registry's order.
    pub rows: Vec<Row>,
}

/// One side: what it was called on the command line, and what made it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Side {
    pub source: String,
    pub revision: u64,
    pub status: &'static str,
    pub rules_fingerprint: String,
    pub build: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// 全市, or the department's name.
    pub scope: String,
    pub figure: &'static str,
    pub a: String,
    pub b: String,
}

/// How a figure is read from a department's.
type Figure = fn(&DepartmentFigures) -> Value;

/// A department's figures the diff compares, as the report names them: counts, and rates as
/// (part, whole).
const DEPARTMENT: [(&str, Figure); 10] = [
    ("承办件数", |d| Value::Count(d.assigned)),
    ("按期办结", |d| Value::Count(d.closed_on_time)),
    ("超期办结", |d| Value::Count(d.closed_late)),
    ("正在办理", |d| Value::Count(d.in_progress)),
    ("超期未办结", |d| Value::Count(d.overdue)),
    ("按期办结率", |d| Value::Rate(ON_TIME(d))),
    ("签收及时率", |d| Value::Rate(SIGN_FOR(d))),
    ("退单率", |d| Value::Rate(RETURN(d))),
    ("重办率", |d| Value::Rate(REOPEN(d))),
    ("满意率", |d| Value::Rate(SATISFACTION(d))),
];

#[derive(Clone, Copy, PartialEq)]
enum Value {
    Count(u64),
    /// (part, whole)
    Rate((u64, u64)),
}

impl Value {
    fn text(self) -> String {
        match self {
            Value::Count(n) => n.to_string(),
            Value::Rate((_, 0)) => "—".into(),
            Value::Rate((part, whole)) => format!("{}%", percent(part, whole)),
        }
    }
}

impl Side {
    pub fn of(source: &str, s: &Snapshot) -> Side {
        Side {
            source: source.to_owned(),
            revision: s.revision,
            status: s.status.code(),
            rules_fingerprint: s.made_by.rules_fingerprint.clone(),
            build: s.made_by.build.clone(),
        }
    }
}

impl Diff {
    /// What differs between `a` and `b` (one month), named by `registry`.
    pub fn new(a: (&str, &Snapshot), b: (&str, &Snapshot), registry: &LabelRegistry) -> Diff {
        let (fa, fb) = (&a.1.figures, &b.1.figures);
        let mut rows = Vec::new();
        let mut compare = |scope: &str, figure: &'static str, x: Value, y: Value| {
            if x != y {
                rows.push(Row { scope: scope.to_owned(), figure, a: x.text(), b: y.text() });
            }
        };
        let totals = |f: &Figures| {
            let t = &f.totals;
            [
                ("受理", Value::Count(t.received)),
                ("办结", Value::Count(t.closed)),
                ("正在办理", Value::Count(t.in_progress)),
                ("办结率", Value::Rate((t.closed, t.received))),
            ]
        };
        for ((figure, x), (_, y)) in totals(fa).into_iter().zip(totals(fb)) {
            compare("全市", figure, x, y);
        }
        for (figure, value) in DEPARTMENT {
            compare("全部部门", figure, value(&fa.all_departments), value(&fb.all_departments));
        }
        let provisional = |f: &Figures| saturating_sum(f.provisional_deadlines.iter().map(|p| p.cases));
        compare("全市", "办理时限暂按周末计算", Value::Count(provisional(fa)), Value::Count(provisional(fb)));
        let mut departments: Vec<&String> = fa.by_department.keys().chain(fb.by_department.keys()).collect();
        departments.sort_by_key(|code| (registry.department_rank(code), (*code).clone()));
        departments.dedup();
        let none = DepartmentFigures::default();
        for code in departments {
            let name = registry.department_name(code);
            let (x, y) = (fa.by_department.get(code).unwrap_or(&none), fb.by_department.get(code).unwrap_or(&none));
            for (figure, value) in DEPARTMENT {
                compare(&name, figure, value(x), value(y));
            }
        }
        Diff { month: a.1.month.to_string(), a: Side::of(a.0, a.1), b: Side::of(b.0, b.1), rows }
    }

    pub fn markdown(&self) -> String {
        let side = |name: &str, s: &Side| {
            let rules: String = s.rules_fingerprint.chars().take(12).collect();
            format!(
                "- {name}：{}，第{}版（{}），计数规则指纹 {}，hotline {}\n",
                s.source,
                s.revision,
                if s.status == "closed" { "已结账" } else { "未结账" },
                if rules.is_empty() { "—" } else { &rules },
                if s.build.is_empty() { "—" } else { &s.build }
            )
        };
        let mut out = format!("# {} 月度快照对比\n\n{}{}\n", self.month, side("A", &self.a), side("B", &self.b));
        if self.rows.is_empty() {
            out.push_str("两份快照的各项数字相同。\n");
            return out;
        }
        out.push_str("| 范围 | 项目 | A | B |\n|---|---|---:|---:|\n");
        for r in &self.rows {
            out.push_str(&format!("| {} | {} | {} | {} |\n", cell(&r.scope), r.figure, r.a, r.b));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::case::{CountingRules, WorkingDays};
    use crate::domain::event::RequestKind;
    use crate::generator::{self, Plan};

    /// The reference month as the core counts it by `rules`, closed as of 6 May.
    fn counted(rules: CountingRules) -> Snapshot {
        let mut s = generator::reference_snapshot();
        let plan = Plan {
            month: s.month,
            zone: rules.zone.clone(),
            cases: generator::REFERENCE_CASES,
            next_month_days: 3,
            seed: 2022,
            v2_events: true,
            city: None,
        };
        let mut f = generator::count(&plan, rules).figures(s.month, s.as_of).unwrap();
        f.ranking = crate::domain::ranking::RankingRules::default().rank(&f.by_department);
        s.figures = f;
        s
    }

    #[test]
    fn the_reference_month_under_working_days_against_calendar_days() {
        let calendar_days = counted(CountingRules::reference());
        let mut by_kind = [None; RequestKind::ALL.len()];
        for (kind, days) in [(RequestKind::Consultation, 1), (RequestKind::Help, 3), (RequestKind::Complaint, 5)] {
            by_kind[kind as usize] = Some(days);
        }
        let calendar = std::sync::Arc::new(crate::domain::calendar::WorkCalendar::default());
        let working =
            CountingRules { working_days: Some(WorkingDays { calendar, by_kind }), ..CountingRules::reference() };
        let working_days = counted(working);
        let registry = LabelRegistry::default();

        let same = Diff::new(("a", &calendar_days), ("b", &calendar_days), &registry);
        assert!(same.rows.is_empty());
        assert!(same.markdown().contains("两份快照的各项数字相同"));

        let diff = Diff::new(("calendar days", &calendar_days), ("working days", &working_days), &registry);
        assert!(!diff.rows.is_empty(), "shorter deadlines move cases from on time to late");
        assert!(diff.rows.iter().all(|r| r.a != r.b));
        assert!(diff.rows.iter().all(|r| r.figure != "受理"), "received is the same under any deadlines");
        let all = diff.rows.iter().find(|r| r.scope == "全部部门" && r.figure == "按期办结").expect("on time moved");
        assert_eq!(all.a, calendar_days.figures.all_departments.closed_on_time.to_string());
        assert_eq!(all.b, working_days.figures.all_departments.closed_on_time.to_string());
        let markdown = diff.markdown();
        assert!(markdown.contains("| 全部部门 | 按期办结 |"), "{markdown}");
        assert!(markdown.contains("| 铁西区政府 |"), "departments under their names: {markdown}");
    }
}
