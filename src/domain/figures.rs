//! A month's figures as the sum of its cases' contributions.
//!
//! `Tally` adds and subtracts contributions, so a changed case is counted by removing its old
//! contribution and adding its new one, and tallies of disjoint sets of cases add up.
//! `Figures` is what a snapshot carries: the tally read at an instant (`as_of`), which decides
//! which open cases are overdue.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::case::{Contribution, HoldingState};

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
        }
        for d in &c.transfers_in {
            bump(&mut self.by_department, *d, |d| d.transferred_in += sign, DepartmentCount::is_zero);
        }
        for d in &c.transfers_out {
            bump(&mut self.by_department, *d, |d| d.transferred_out += sign, DepartmentCount::is_zero);
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
        fn add<K: Ord + Clone, V: Default>(
            into: &mut BTreeMap<K, V>,
            from: &BTreeMap<K, V>,
            f: impl Fn(&mut V, &V),
            is_zero: fn(&V) -> bool,
        ) {
            for (k, v) in from {
                bump(into, k, |mine| f(mine, v), is_zero);
            }
        }
        let count = |a: &mut Count, b: &Count| {
            a.received += b.received;
            a.closed += b.closed;
        };
        count(&mut self.total, &other.total);
        add(&mut self.by_channel, &other.by_channel, count, Count::is_zero);
        add(&mut self.by_board, &other.by_board, count, Count::is_zero);
        add(&mut self.by_request_kind, &other.by_request_kind, count, Count::is_zero);
        add(&mut self.by_category, &other.by_category, count, Count::is_zero);
        add(
            &mut self.by_department,
            &other.by_department,
            |a, b| {
                a.assigned += b.assigned;
                a.closed_on_time += b.closed_on_time;
                a.closed_late += b.closed_late;
                a.transferred_in += b.transferred_in;
                a.transferred_out += b.transferred_out;
            },
            DepartmentCount::is_zero,
        );
        add(
            &mut self.open_by_due,
            &other.open_by_due,
            |a, b| add(a, b, |x, y| *x += y, |n| *n == 0),
            BTreeMap::is_empty,
        );
        self.transfers += other.transfers;
        self.cases_transferred += other.cases_transferred;
        self.returned_cases += other.returned_cases;
        add(
            &mut self.returned_by_pair,
            &other.returned_by_pair,
            |a, b| add(a, b, |x, y| *x += y, |n| *n == 0),
            BTreeMap::is_empty,
        );
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
            totals: Totals {
                received: u(self.total.received),
                closed: u(self.total.closed),
                in_progress: u(self.total.received - self.total.closed),
                closure_rate: ratio(self.total.closed, self.total.received),
            },
            by_channel: counts(&self.by_channel),
            by_board: counts(&self.by_board),
            by_request_kind: counts(&self.by_request_kind),
            by_category: self
                .by_category
                .iter()
                .map(|(k, v)| {
                    let c = Counts::from(*v);
                    let share = ratio(v.received, total);
                    (
                        k.clone(),
                        CategoryCounts { received: c.received, closed: c.closed, in_progress: c.in_progress, share },
                    )
                })
                .collect(),
            by_department: self
                .by_department
                .iter()
                .map(|(k, d)| {
                    (
                        k.clone(),
                        DepartmentFigures {
                            assigned: u(d.assigned),
                            closed_on_time: u(d.closed_on_time),
                            closed_late: u(d.closed_late),
                            in_progress: u(d.assigned - d.closed_on_time - d.closed_late),
                            overdue: overdue.get(k.as_str()).copied().unwrap_or(0),
                            transferred_in: u(d.transferred_in),
                            transferred_out: u(d.transferred_out),
                        },
                    )
                })
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

fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 { 0.0 } else { part as f64 / whole as f64 }
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
    pub transfers: TransferFigures,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub received: u64,
    pub closed: u64,
    pub in_progress: u64,
    pub closure_rate: f64,
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentFigures {
    pub assigned: u64,
    pub closed_on_time: u64,
    pub closed_late: u64,
    pub in_progress: u64,
    pub overdue: u64,
    pub transferred_in: u64,
    pub transferred_out: u64,
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
