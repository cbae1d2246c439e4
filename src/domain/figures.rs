//! A month's figures as the sum of its cases' contributions.
//!
//! `Tally` adds and subtracts contributions, so a changed case is counted by removing its old
//! contribution and adding its new one, and tallies of disjoint sets of cases add up.
//! `Figures` is what a snapshot carries: the tally read at an instant (`as_of`), which decides
//! which open cases are overdue.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::case::{Contribution, HoldingState};
use super::event::Rating;
use super::province::CityCode;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Count {
    received: i64,
    closed: i64,
}

impl Count {
    fn is_zero(&self) -> bool {
        *self == Count::default()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DepartmentCount {
    assigned: i64,
    closed_on_time: i64,
    closed_late: i64,
    transferred_in: i64,
    transferred_out: i64,
    // Contract v2; partials of earlier builds have none.
    #[serde(default)]
    accepted_on_time: i64,
    #[serde(default)]
    accepted_late: i64,
    #[serde(default)]
    returned: i64,
    #[serde(default)]
    extended: i64,
    #[serde(default)]
    reopened: i64,
    #[serde(default)]
    satisfied: i64,
    #[serde(default)]
    basically_satisfied: i64,
    #[serde(default)]
    dissatisfied: i64,
    #[serde(default)]
    unreachable: i64,
}

impl DepartmentCount {
    fn add(&mut self, other: &DepartmentCount) {
        let DepartmentCount {
            assigned,
            closed_on_time,
            closed_late,
            transferred_in,
            transferred_out,
            accepted_on_time,
            accepted_late,
            returned,
            extended,
            reopened,
            satisfied,
            basically_satisfied,
            dissatisfied,
            unreachable,
        } = other;
        self.assigned += assigned;
        self.closed_on_time += closed_on_time;
        self.closed_late += closed_late;
        self.transferred_in += transferred_in;
        self.transferred_out += transferred_out;
        self.accepted_on_time += accepted_on_time;
        self.accepted_late += accepted_late;
        self.returned += returned;
        self.extended += extended;
        self.reopened += reopened;
        self.satisfied += satisfied;
        self.basically_satisfied += basically_satisfied;
        self.dissatisfied += dissatisfied;
        self.unreachable += unreachable;
    }

    fn rating(&mut self, rating: Rating) -> &mut i64 {
        match rating {
            Rating::Satisfied => &mut self.satisfied,
            Rating::BasicallySatisfied => &mut self.basically_satisfied,
            Rating::Dissatisfied => &mut self.dissatisfied,
            Rating::Unreachable => &mut self.unreachable,
        }
    }

    /// The figures of these counts, with `overdue` open cases.
    fn figures(&self, overdue: u64) -> DepartmentFigures {
        let d = self;
        let closed = d.closed_on_time + d.closed_late;
        DepartmentFigures {
            assigned: u(d.assigned),
            closed_on_time: u(d.closed_on_time),
            closed_late: u(d.closed_late),
            in_progress: u(d.assigned - closed),
            overdue,
            transferred_in: u(d.transferred_in),
            transferred_out: u(d.transferred_out),
            accepted_on_time: u(d.accepted_on_time),
            accepted_late: u(d.accepted_late),
            returned: u(d.returned),
            extended: u(d.extended),
            reopened: u(d.reopened),
            satisfied: u(d.satisfied),
            basically_satisfied: u(d.basically_satisfied),
            dissatisfied: u(d.dissatisfied),
            unreachable: u(d.unreachable),
            ..DepartmentFigures::default()
        }
        .with_rates()
    }
}

impl DepartmentCount {
    fn is_zero(&self) -> bool {
        *self == DepartmentCount::default()
    }
}

/// Running counters of one month. Serializable, because a counting partition publishes its
/// tallies for the publisher to add up (`merge`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    total: Count,
    by_channel: BTreeMap<String, Count>,
    by_board: BTreeMap<String, Count>,
    by_request_kind: BTreeMap<String, Count>,
    by_category: BTreeMap<String, Count>,
    by_department: BTreeMap<String, DepartmentCount>,
    /// Open cases each department holds, by deadline: department -> due -> cases. Enough to
    /// judge overdue at any `as_of`, and it adds up across partitions.
    open_by_due: BTreeMap<String, BTreeMap<Timestamp, i64>>,
    transfers: i64,
    cases_transferred: i64,
    returned_cases: i64,
    /// Cases sent back, by the department that sent them back and the one they came back to.
    #[serde(default)]
    returned_by_pair: BTreeMap<String, BTreeMap<String, i64>>,
    /// Codes outside the registry counted under `unregistered` (`Overflow::fold`); a ledger's
    /// own tallies fold nothing.
    #[serde(default, skip_serializing_if = "Folded::is_zero")]
    pub(crate) folded: Folded,
    /// Cases whose deadline needed a year the working-day calendar lacks, by that year: their
    /// on-time or overdue standing is provisional (`calendar::Deadline`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    provisional_deadlines: BTreeMap<i16, i64>,
}

/// How many distinct codes of each kind a tally counts under `unregistered`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Folded {
    pub departments: u64,
    pub categories: u64,
}

impl Folded {
    fn is_zero(&self) -> bool {
        *self == Folded::default()
    }
}

/// Adds each row of `from` into `into` under the key `key` gives it.
fn add_rows<K, Q, V>(
    into: &mut BTreeMap<K, V>,
    from: &BTreeMap<K, V>,
    key: &dyn Fn(&K) -> &Q,
    f: impl Fn(&mut V, &V),
    is_zero: fn(&V) -> bool,
) where
    K: Ord + Borrow<Q>,
    Q: Ord + ToOwned<Owned = K> + ?Sized,
    V: Default,
{
    for (k, v) in from {
        bump(into, key(k), |mine| f(mine, v), is_zero);
    }
}

/// A code read as itself.
fn same<K>(k: &K) -> &K {
    k
}

/// Changes the row `key` by `f`. Keyed maps only hold rows some case contributes to (a row
/// that falls to zero goes), so a tally built incrementally equals one built from scratch. The
/// key is copied only for a new row.
fn bump<K, Q, V>(map: &mut BTreeMap<K, V>, key: &Q, f: impl FnOnce(&mut V), is_zero: fn(&V) -> bool)
where
    K: Ord + Borrow<Q>,
    Q: Ord + ToOwned<Owned = K> + ?Sized,
    V: Default,
{
    if let Some(row) = map.get_mut(key) {
        f(row);
        if is_zero(row) {
            map.remove(key);
        }
    } else {
        let mut row = V::default();
        f(&mut row);
        if !is_zero(&row) {
            map.insert(key.to_owned(), row);
        }
    }
}

impl Tally {
    pub(crate) fn add(&mut self, c: &Contribution) {
        self.apply(c, 1);
    }

    pub fn remove(&mut self, c: &Contribution) {
        self.apply(c, -1);
    }

    fn apply(&mut self, c: &Contribution, sign: i64) {
        let closed = if c.closed { sign } else { 0 };
        let count = |n: &mut Count| {
            n.received += sign;
            n.closed += closed;
        };
        count(&mut self.total);
        bump(&mut self.by_channel, c.channel.code(), count, Count::is_zero);
        if let Some(board) = c.board {
            bump(&mut self.by_board, board.code(), count, Count::is_zero);
        }
        if let Some(kind) = c.request_kind {
            bump(&mut self.by_request_kind, kind.code(), count, Count::is_zero);
        }
        bump(&mut self.by_category, c.category, count, Count::is_zero);

        if let Some(h) = &c.holding {
            bump(
                &mut self.by_department,
                h.department,
                |d| {
                    d.assigned += sign;
                    match h.state {
                        HoldingState::Open => {}
                        HoldingState::ClosedOnTime => d.closed_on_time += sign,
                        HoldingState::ClosedLate => d.closed_late += sign,
                    }
                },
                DepartmentCount::is_zero,
            );
            if h.state == HoldingState::Open {
                let dues = match self.open_by_due.get_mut(h.department) {
                    Some(dues) => dues,
                    None => self.open_by_due.entry(h.department.to_owned()).or_default(),
                };
                bump(dues, &h.due, |n| *n += sign, |n| *n == 0);
                if dues.is_empty() {
                    self.open_by_due.remove(h.department);
                }
            }
            if let Some(year) = h.provisional {
                bump(&mut self.provisional_deadlines, &year, |n| *n += sign, |n| *n == 0);
            }
        }
        for d in &c.transfers_in {
            bump(&mut self.by_department, *d, |d| d.transferred_in += sign, DepartmentCount::is_zero);
        }
        for d in &c.transfers_out {
            bump(&mut self.by_department, *d, |d| d.transferred_out += sign, DepartmentCount::is_zero);
        }
        for (d, on_time) in &c.accepted {
            let count = |d: &mut DepartmentCount| match on_time {
                true => d.accepted_on_time += sign,
                false => d.accepted_late += sign,
            };
            bump(&mut self.by_department, *d, count, DepartmentCount::is_zero);
        }
        for d in &c.returned {
            bump(&mut self.by_department, *d, |d| d.returned += sign, DepartmentCount::is_zero);
        }
        for d in &c.extended {
            bump(&mut self.by_department, *d, |d| d.extended += sign, DepartmentCount::is_zero);
        }
        for d in &c.reopened {
            bump(&mut self.by_department, *d, |d| d.reopened += sign, DepartmentCount::is_zero);
        }
        if let Some((d, rating)) = c.rating {
            bump(&mut self.by_department, d, |d| *d.rating(rating) += sign, DepartmentCount::is_zero);
        }
        self.transfers += sign * c.transfers_in.len() as i64;
        if !c.transfers_in.is_empty() {
            self.cases_transferred += sign;
        }
        if !c.returns.is_empty() {
            self.returned_cases += sign;
        }
        for (from, to) in &c.returns {
            let tos = match self.returned_by_pair.get_mut(*from) {
                Some(tos) => tos,
                None => self.returned_by_pair.entry((*from).to_owned()).or_default(),
            };
            bump(tos, *to, |n| *n += sign, |n| *n == 0);
            if tos.is_empty() {
                self.returned_by_pair.remove(*from);
            }
        }
    }

    /// Adds another tally of disjoint cases (another partition's) to this one.
    pub fn merge(&mut self, other: &Tally) {
        self.add_recoded(other, &String::as_str, &String::as_str);
    }

    /// Adds `other` with each department code `d` read as `department(d)` and each category
    /// `c` as `category(c)`; rows that come to share a code add up.
    fn add_recoded(&mut self, other: &Tally, department: &dyn Fn(&String) -> &str, category: &dyn Fn(&String) -> &str) {
        let count = |a: &mut Count, b: &Count| {
            a.received += b.received;
            a.closed += b.closed;
        };
        count(&mut self.total, &other.total);
        add_rows(&mut self.by_channel, &other.by_channel, &same, count, Count::is_zero);
        add_rows(&mut self.by_board, &other.by_board, &same, count, Count::is_zero);
        add_rows(&mut self.by_request_kind, &other.by_request_kind, &same, count, Count::is_zero);
        add_rows(&mut self.by_category, &other.by_category, category, count, Count::is_zero);
        add_rows(
            &mut self.by_department,
            &other.by_department,
            department,
            DepartmentCount::add,
            DepartmentCount::is_zero,
        );
        add_rows(
            &mut self.open_by_due,
            &other.open_by_due,
            department,
            |a, b| add_rows(a, b, &same, |x, y| *x += y, |n| *n == 0),
            BTreeMap::is_empty,
        );
        self.transfers += other.transfers;
        self.cases_transferred += other.cases_transferred;
        self.returned_cases += other.returned_cases;
        add_rows(
            &mut self.returned_by_pair,
            &other.returned_by_pair,
            department,
            |a, b| add_rows(a, b, department, |x, y| *x += y, |n| *n == 0),
            BTreeMap::is_empty,
        );
        self.folded.departments += other.folded.departments;
        self.folded.categories += other.folded.categories;
        add_rows(&mut self.provisional_deadlines, &other.provisional_deadlines, &same, |a, b| *a += b, |n| *n == 0);
    }

    /// This tally with each department code `d` read as `department(d)` and each category
    /// `c` as `category(c)`; rows that come to share a code add up.
    pub(crate) fn recoded(&self, department: &dyn Fn(&String) -> &str, category: &dyn Fn(&String) -> &str) -> Tally {
        let mut recoded = Tally::default();
        recoded.add_recoded(self, department, category);
        recoded
    }

    /// Every department code the tally names, once each, in order.
    pub(crate) fn department_codes(&self) -> BTreeSet<&String> {
        let mut codes: BTreeSet<&String> = self.by_department.keys().collect();
        codes.extend(self.open_by_due.keys());
        for (from, tos) in &self.returned_by_pair {
            codes.insert(from);
            codes.extend(tos.keys());
        }
        codes
    }

    /// Every category code the tally names, in order.
    pub(crate) fn category_codes(&self) -> impl Iterator<Item = &String> {
        self.by_category.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.total.is_zero() && self.by_department.is_empty()
    }

    /// The figures a snapshot carries, with overdue cases judged at `as_of`.
    pub fn figures(&self, as_of: Timestamp) -> Figures {
        let total = self.total.received;
        let counts = |m: &BTreeMap<String, Count>| -> BTreeMap<String, Counts> {
            m.iter().map(|(k, v)| (k.clone(), Counts::from(*v))).collect()
        };
        let overdue: BTreeMap<&str, u64> = self
            .open_by_due
            .iter()
            .map(|(department, dues)| (department.as_str(), u(dues.range(..as_of).map(|(_, n)| n).sum())))
            .collect();
        Figures {
            totals: Totals::of(u(self.total.received), u(self.total.closed)),
            by_channel: counts(&self.by_channel),
            by_board: counts(&self.by_board),
            by_request_kind: counts(&self.by_request_kind),
            by_category: self
                .by_category
                .iter()
                .map(|(k, v)| {
                    let c = Counts::from(*v);
                    let share = if total > 0 { v.received as f64 / total as f64 } else { 0.0 };
                    (
                        k.clone(),
                        CategoryCounts { received: c.received, closed: c.closed, in_progress: c.in_progress, share },
                    )
                })
                .collect(),
            by_department: self
                .by_department
                .iter()
                .map(|(k, d)| (k.clone(), d.figures(overdue.get(k.as_str()).copied().unwrap_or(0))))
                .collect(),
            all_departments: {
                let mut sum = DepartmentCount::default();
                self.by_department.values().for_each(|d| sum.add(d));
                sum.figures(overdue.values().sum())
            },
            ranking: Ranking::default(),
            province: None,
            provisional_deadlines: self
                .provisional_deadlines
                .iter()
                .map(|(year, cases)| ProvisionalDeadlines { year: *year, cases: u(*cases) })
                .collect(),
            transfers: TransferFigures {
                total: u(self.transfers),
                cases_transferred: u(self.cases_transferred),
                returned_cases: u(self.returned_cases),
                returned_pairs: {
                    let mut pairs: Vec<ReturnedPair> = self
                        .returned_by_pair
                        .iter()
                        .flat_map(|(from, tos)| {
                            tos.iter().map(|(to, n)| ReturnedPair { from: from.clone(), to: to.clone(), cases: u(*n) })
                        })
                        .collect();
                    pairs.sort_by(|a, b| b.cases.cmp(&a.cases).then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to))));
                    pairs
                },
            },
        }
    }
}

fn u(n: i64) -> u64 {
    debug_assert!(n >= 0, "a tally never goes below zero");
    n.max(0) as u64
}

/// The sum of `counts`, saturating: a snapshot read back may hold any counts, and must not
/// panic on them.
pub(crate) fn saturating_sum(counts: impl IntoIterator<Item = u64>) -> u64 {
    counts.into_iter().fold(0u64, u64::saturating_add)
}

/// part / whole; `None` when there is nothing to measure (`whole` is 0).
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The figures of one month, in the snapshot's JSON shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub totals: Totals,
    pub by_channel: BTreeMap<String, Counts>,
    pub by_board: BTreeMap<String, Counts>,
    pub by_request_kind: BTreeMap<String, Counts>,
    pub by_category: BTreeMap<String, CategoryCounts>,
    pub by_department: BTreeMap<String, DepartmentFigures>,
    /// The sum over departments, its rates computed from the sums.
    #[serde(default)]
    pub all_departments: DepartmentFigures,
    /// The red and black lists (`[ranking]`); empty until the publisher ranks the month.
    #[serde(default)]
    pub ranking: Ranking,
    pub transfers: TransferFigures,
    /// The province's snapshot only: its cities side by side. Its other figures are the sums
    /// of its cities', without departments and categories, which are each city's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province: Option<ProvinceFigures>,
    /// Years the working-day calendar lacks that some case's deadline needed, counted by
    /// weekends alone until the year is published: the on-time and overdue figures of those
    /// cases may change then. Empty when no figure depends on such a deadline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisional_deadlines: Vec<ProvisionalDeadlines>,
}

/// Of a month's cases, those whose deadline needed `year`, which the calendar lacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionalDeadlines {
    pub year: i16,
    pub cases: u64,
}

/// What the province's snapshot adds: a row per city, and the cities ranked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProvinceFigures {
    /// By division code.
    pub cities: Vec<CityRow>,
    /// The cities ranked by `[ranking]`'s weights over their departments' rates, as
    /// departments are; `Ranked::department` holds the city's division code.
    pub ranking: Ranking,
}

/// One city's month in the province's snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CityRow {
    pub city: CityCode,
    pub name: String,
    pub totals: Totals,
    /// The sum over the city's departments (its `all_departments`), rates from the sums.
    pub departments: DepartmentFigures,
}
/// The red and black lists a snapshot carries (`ranking::RankingRules::rank`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    /// Departments with fewer cases are not ranked.
    pub min_assigned: u64,
    /// The best, best first (红榜).
    pub top: Vec<Ranked>,
    /// The worst of the others, worst first (黑榜).
    pub bottom: Vec<Ranked>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub department: String,
    /// 0 to 100, one decimal.
    pub score: f64,
    pub assigned: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub received: u64,
    pub closed: u64,
    pub in_progress: u64,
    /// closed / received; `None` (null in JSON) when nothing was received.
    pub closure_rate: Option<f64>,
}

impl Totals {
    pub fn of(received: u64, closed: u64) -> Totals {
        Totals { received, closed, in_progress: received.saturating_sub(closed), closure_rate: ratio(closed, received) }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub received: u64,
    pub closed: u64,
    pub in_progress: u64,
}

impl From<Count> for Counts {
    fn from(c: Count) -> Counts {
        Counts { received: u(c.received), closed: u(c.closed), in_progress: u(c.received - c.closed) }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryCounts {
    pub received: u64,
    pub closed: u64,
    pub in_progress: u64,
    pub share: f64,
}

/// A department's figures of a month. The counts after `transferred_out` are contract v2's:
/// zero for a v1 stream, and absent from snapshots of earlier builds. Each rate is taken from
/// the counts (`with_rates`), and is `None` (null in JSON; 0 in the Avro snapshot, whose schema
/// predates the distinction) when there is nothing to measure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DepartmentFigures {
    /// Cases the department holds or closed (v1).
    pub assigned: u64,
    pub closed_on_time: u64,
    pub closed_late: u64,
    pub in_progress: u64,
    /// Open cases past their deadline at `as_of`.
    pub overdue: u64,
    pub transferred_in: u64,
    pub transferred_out: u64,
    /// Assignments signed for within `sla.accept` of the assignment (签收及时).
    #[serde(default)]
    pub accepted_on_time: u64,
    #[serde(default)]
    pub accepted_late: u64,
    /// Assignments sent back to dispatch (退单).
    #[serde(default)]
    pub returned: u64,
    /// Extensions granted (延期).
    #[serde(default)]
    pub extended: u64,
    /// Reopens: cases sent back to the department after a call-back (重办).
    #[serde(default)]
    pub reopened: u64,
    /// Cases by their latest rating, credited to the department that held them at their last
    /// close.
    #[serde(default)]
    pub satisfied: u64,
    #[serde(default)]
    pub basically_satisfied: u64,
    #[serde(default)]
    pub dissatisfied: u64,
    #[serde(default)]
    pub unreachable: u64,
    /// closed_on_time / (closed_on_time + closed_late).
    #[serde(default)]
    pub on_time_rate: Option<f64>,
    /// accepted_on_time / (accepted_on_time + accepted_late) (签收及时率).
    #[serde(default)]
    pub sign_for_rate: Option<f64>,
    /// returned / (assigned + returned): of the cases the department kept or sent back, the
    /// share it sent back.
    #[serde(default)]
    pub return_rate: Option<f64>,
    /// reopened / (closed_on_time + closed_late).
    #[serde(default)]
    pub reopen_rate: Option<f64>,
    /// (satisfied + basically_satisfied) / (satisfied + basically_satisfied + dissatisfied).
    #[serde(default)]
    pub satisfaction_rate: Option<f64>,
}

/// The office's loop (contract v2) of a department, in `DepartmentFigures::office_loop`'s
/// order: what the gauges show per department.
pub(crate) const LOOP_FIGURES: [&str; 9] = [
    "accepted_on_time",
    "accepted_late",
    "returned",
    "extended",
    "reopened",
    "satisfied",
    "basically_satisfied",
    "dissatisfied",
    "unreachable",
];

/// A rate's (part, whole) from a department's counts; the one definition of each rate, which
/// the snapshot, the report, the bulletin and the diff share. Sums saturate: a snapshot read
/// back may hold any counts.
pub(crate) type Share = fn(&DepartmentFigures) -> (u64, u64);

/// 按期办结率: closed on time of those closed.
pub(crate) const ON_TIME: Share = |d| (d.closed_on_time, saturating_sum([d.closed_on_time, d.closed_late]));
/// 签收及时率: signed for on time of those signed for.
pub(crate) const SIGN_FOR: Share = |d| (d.accepted_on_time, saturating_sum([d.accepted_on_time, d.accepted_late]));
/// 退单率: returned of those assigned or returned.
pub(crate) const RETURN: Share = |d| (d.returned, saturating_sum([d.assigned, d.returned]));
/// 重办率: reopened of those closed.
pub(crate) const REOPEN: Share = |d| (d.reopened, saturating_sum([d.closed_on_time, d.closed_late]));
/// 满意率: satisfied or basically satisfied of those who rated.
pub(crate) const SATISFACTION: Share = |d| {
    let satisfied = saturating_sum([d.satisfied, d.basically_satisfied]);
    (satisfied, saturating_sum([satisfied, d.dissatisfied]))
};

impl DepartmentFigures {
    /// These counts with their rates.
    pub(crate) fn with_rates(self) -> DepartmentFigures {
        let rate = |share: Share| {
            let (part, whole) = share(&self);
            ratio(part, whole)
        };
        DepartmentFigures {
            on_time_rate: rate(ON_TIME),
            sign_for_rate: rate(SIGN_FOR),
            return_rate: rate(RETURN),
            reopen_rate: rate(REOPEN),
            satisfaction_rate: rate(SATISFACTION),
            ..self
        }
    }

    /// Its contract v2 counts, in `LOOP_FIGURES`' order.
    pub(crate) fn office_loop(&self) -> [u64; LOOP_FIGURES.len()] {
        [
            self.accepted_on_time,
            self.accepted_late,
            self.returned,
            self.extended,
            self.reopened,
            self.satisfied,
            self.basically_satisfied,
            self.dissatisfied,
            self.unreachable,
        ]
    }

    /// Whether it has any contract v2 count: a v1 stream has none.
    pub(crate) fn has_office_loop(&self) -> bool {
        self.office_loop().iter().any(|n| *n > 0)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferFigures {
    pub total: u64,
    pub cases_transferred: u64,
    pub returned_cases: u64,
    /// Returned cases by the pair of departments, most first; a case sent back by several
    /// pairs counts under each.
    #[serde(default)]
    pub returned_pairs: Vec<ReturnedPair>,
}

/// Cases `from` sent back to `to`, which had held them before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedPair {
    pub from: String,
    pub to: String,
    pub cases: u64,
}
