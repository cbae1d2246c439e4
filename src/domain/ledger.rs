//! The ledger: every case held, and each month's tally kept equal to the sum of its cases'
//! contributions.
//!
//! Applying an event removes the case's old contribution and adds its new one, so the order
//! of events does not matter and duplicates change nothing. The ledger also remembers which
//! cases and months changed since the last commit, for the changelog and the publisher.

use std::collections::{BTreeMap, BTreeSet};

use compact_str::CompactString;

use jiff::Timestamp;

use super::case::{Applied, CaseRecord, Contribution, CountingRules, Incoming};
use super::cases::Cases;
use super::code::Codes;
use super::event::{CaseEvent, Rejection};
use super::figures::{Figures, Tally};
use super::month::Month;

#[derive(Clone, Debug)]
pub struct Ledger {
    rules: CountingRules,
    cases: Cases,
    /// The codes the cases' records name, and no others once months are evicted.
    codes: Codes,
    totals: Totals,
    changed_cases: BTreeSet<String>,
    /// Whether changed cases are noted for a changelog (a recount keeps none).
    notes_cases: bool,
    /// Months before this one are evicted: their cases are dropped and late events for them
    /// are rejected.
    kept_from: Option<Month>,
    /// Facts of cases evicted without their `created`, for the dead letters.
    orphans: Vec<Orphan>,
}

/// A fact of a case whose `created` never arrived within the retention: the case was
/// evicted without being counted. The record keeps the hash of the event's id, not the id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Orphan {
    pub case_id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub occurred_at: Timestamp,
    /// The XXH3-64 hash of its `event_id`, in hex.
    pub event_key: String,
}

impl Ledger {
    pub fn new(rules: CountingRules) -> Ledger {
        Ledger {
            rules,
            cases: Cases::default(),
            codes: Codes::default(),
            totals: Totals::default(),
            changed_cases: BTreeSet::new(),
            notes_cases: true,
            kept_from: None,
            orphans: Vec::new(),
        }
    }

    /// A ledger without a changelog: `take_changes` gives no cases.
    pub(crate) fn without_changelog(mut self) -> Ledger {
        self.notes_cases = false;
        self
    }

    pub fn rules(&self) -> &CountingRules {
        &self.rules
    }

    /// Applies one event. A rejected event changes nothing.
    pub fn apply(&mut self, event: &CaseEvent) -> Result<Applied, Rejection> {
        let evicted = |month: Month, kept_from: Option<Month>| kept_from.is_some_and(|kept| month < kept);
        // The record is taken out of the map (not cloned) while it changes, and put back.
        let position = self.cases.position(&event.case_id);
        let held = position.map(|i| std::mem::take(self.cases.at_mut(i)));
        // A case not held whose event belongs to an evicted month cannot be counted right.
        if held.is_none() && evicted(Month::containing(event.occurred_at, &self.rules.zone), self.kept_from) {
            return Err(Rejection::MonthEvicted);
        }
        let mut record = held.unwrap_or_default();
        let incoming = Incoming::from(event);
        let result = record.admits(&incoming).and_then(|admitted| {
            // A waiting case whose `created` turns out to be in an evicted month.
            let month = record.month_with(event, &self.rules);
            match month {
                Some(m) if admitted == Applied::Changed && evicted(m, self.kept_from) => Err(Rejection::MonthEvicted),
                _ => Ok(admitted),
            }
        });
        let mut result = result;
        if result == Ok(Applied::Changed) {
            let fact = incoming.fact(&mut self.codes);
            let old = record.contribution(&self.rules, &self.codes);
            let size = Size::of(&event.case_id, &record);
            record.add(&incoming, fact);
            let new = record.contribution(&self.rules, &self.codes);
            self.totals.resize(size, Size::of(&event.case_id, &record));
            // Kept (a later event may give it effect), but no figure moved.
            if old.is_some() && old == new {
                result = Ok(Applied::Redundant);
            } else {
                self.totals.replace(old.as_ref(), new.as_ref());
            }
            if self.notes_cases {
                self.changed_cases.insert(event.case_id.to_string());
            }
        }
        if let Some(i) = position {
            *self.cases.at_mut(i) = record;
        } else if record != CaseRecord::default() {
            self.cases.insert_new(&event.case_id, record);
        }
        result
    }

    /// Puts back a case read from the changelog (its codes read into `codes_mut()`),
    /// replacing whatever was held for it; an empty record (a tombstone) removes the case. The
    /// case is counted under this ledger's rules, whatever rules wrote it.
    pub fn restore(&mut self, case_id: String, record: CaseRecord) {
        let empty = record == CaseRecord::default();
        let new = record.contribution(&self.rules, &self.codes);
        let size = Size::of(&case_id, &record);
        match self.cases.position(&case_id) {
            Some(i) => {
                let held = std::mem::take(self.cases.at_mut(i));
                let old = held.contribution(&self.rules, &self.codes);
                self.totals.resize(Size::of(&case_id, &held), size);
                self.totals.replace(old.as_ref(), new.as_ref());
                if empty {
                    self.cases.remove(&case_id);
                } else {
                    *self.cases.at_mut(i) = record;
                }
            }
            None => {
                self.totals.resize(Size::default(), size);
                self.totals.replace(None, new.as_ref());
                if !empty {
                    self.cases.insert_new(&case_id, record);
                }
            }
        }
    }

    /// Drops the cases of months before `kept_from` (and waiting cases whose events all
    /// happened before it) and returns their ids; they count as changed, so the next commit
    /// writes their tombstones. Later events of those months are rejected.
    pub(crate) fn evict_before(&mut self, kept_from: Month) -> Vec<String> {
        if self.kept_from.is_some_and(|k| k >= kept_from) {
            return Vec::new();
        }
        self.kept_from = Some(kept_from);
        let start = kept_from.start(&self.rules.zone);
        let evicted: Vec<String> = self
            .cases
            .iter()
            .filter(|(_, r)| match r.month(&self.rules) {
                Some(m) => m < kept_from,
                None => r.latest_fact().is_some_and(|at| at < start),
            })
            .map(|(id, _)| id.to_string())
            .collect();
        for id in &evicted {
            let record = self.cases.remove(id).expect("listed above");
            self.totals.resize(Size::of(id, &record), Size::default());
            if self.notes_cases {
                self.changed_cases.insert(id.clone());
            }
            if record.created.is_none() {
                self.orphans.extend(record.facts().map(|(event, at, kind)| Orphan {
                    case_id: id.clone(),
                    kind,
                    occurred_at: at.timestamp(),
                    event_key: format!("{:016x}", event.0),
                }));
            }
        }
        self.totals.months.retain(|m, _| *m >= kept_from);
        self.totals.changed_months.retain(|m| *m >= kept_from);
        if !evicted.is_empty() {
            self.compact_codes();
        }
        evicted
    }

    /// Rebuilds the code table from the records held, so a code lasts as long as a case names
    /// it: the junk of one month leaves with the month.
    fn compact_codes(&mut self) {
        let mut kept = Codes::default();
        let held = &self.codes;
        self.cases.for_each_mut(|record| record.recode(&mut |code| kept.intern(held.name(code))));
        self.codes = kept;
    }

    /// The table the records' codes name.
    pub fn codes(&self) -> &Codes {
        &self.codes
    }

    /// The table to read a restored record's codes into.
    pub fn codes_mut(&mut self) -> &mut Codes {
        &mut self.codes
    }

    pub fn case(&self, case_id: &str) -> Option<&CaseRecord> {
        self.cases.get(case_id)
    }

    /// Estimated bytes of the cases held.
    pub fn bytes(&self) -> usize {
        self.totals.bytes + self.codes.approx_bytes()
    }

    pub fn cases(&self) -> impl Iterator<Item = (&str, &CaseRecord)> {
        self.cases.iter()
    }

    pub fn cases_held(&self) -> usize {
        self.cases.len()
    }

    pub(crate) fn waiting_for_created(&self) -> usize {
        self.totals.waiting_for_created
    }

    pub fn months(&self) -> impl Iterator<Item = (Month, &Tally)> {
        self.totals.months.iter().map(|(m, t)| (*m, t))
    }

    pub fn tally(&self, month: Month) -> Option<&Tally> {
        self.totals.months.get(&month)
    }

    /// The first month still held, once months have been evicted.
    pub(crate) fn kept_from(&self) -> Option<Month> {
        self.kept_from
    }

    pub fn figures(&self, month: Month, as_of: Timestamp) -> Option<Figures> {
        self.totals.months.get(&month).map(|t| t.figures(as_of))
    }

    /// The facts of cases evicted without their `created` since the last call.
    pub(crate) fn take_orphans(&mut self) -> Vec<Orphan> {
        std::mem::take(&mut self.orphans)
    }

    /// The cases and months changed since the last call.
    pub fn take_changes(&mut self) -> (BTreeSet<String>, BTreeSet<Month>) {
        (std::mem::take(&mut self.changed_cases), std::mem::take(&mut self.totals.changed_months))
    }
}

/// What the cases held add up to: each month's tally and the state's size.
#[derive(Clone, Debug, Default)]
struct Totals {
    months: BTreeMap<Month, Tally>,
    /// Cases whose `created` event has not arrived yet.
    waiting_for_created: usize,
    /// Estimated bytes of the cases held (ids and records).
    bytes: usize,
    changed_months: BTreeSet<Month>,
}

impl Totals {
    /// Moves a case's share of the figures from `old` to `new`.
    fn replace(&mut self, old: Option<&Contribution>, new: Option<&Contribution>) {
        if let Some(old) = old {
            let tally = self.months.get_mut(&old.month).expect("a counted case's month is held");
            tally.remove(old);
            if tally.is_empty() {
                self.months.remove(&old.month);
            }
            self.changed_months.insert(old.month);
        }
        if let Some(new) = new {
            self.months.entry(new.month).or_default().add(new);
            self.changed_months.insert(new.month);
        }
    }

    fn resize(&mut self, old: Size, new: Size) {
        self.bytes = self.bytes - old.bytes + new.bytes;
        self.waiting_for_created = self.waiting_for_created - old.waiting + new.waiting;
    }
}

/// What holding a case costs: its bytes, roughly, and 1 while it waits for its `created`.
/// Nothing for an empty record.
#[derive(Clone, Copy, Default)]
struct Size {
    bytes: usize,
    waiting: usize,
}

impl Size {
    fn of(case_id: &str, record: &CaseRecord) -> Size {
        if *record == CaseRecord::default() {
            return Size::default();
        }
        // The id, and the entry's position in the table (with the table's spare room).
        const ENTRY: usize = std::mem::size_of::<CompactString>() + 8;
        let id_on_heap = if case_id.len() > std::mem::size_of::<CompactString>() { case_id.len() } else { 0 };
        Size { bytes: ENTRY + id_on_heap + record.approx_bytes(), waiting: usize::from(record.created.is_none()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Change, Channel, Created, Rating, RequestKind, Transferred};

    use crate::domain::fixtures::rules;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn created(id: &str, case: &str, at: &str, dept: Option<&str>, due: Option<&str>) -> CaseEvent {
        CaseEvent {
            event_id: id.into(),
            case_id: case.into(),
            city: None,
            occurred_at: ts(at),
            change: Change::Created(Created {
                channel: Channel::Hotline,
                category: "epidemic".into(),
                board: None,
                request_kind: Some(RequestKind::Help),
                department: dept.map(Into::into),
                due_at: due.map(ts),
            }),
        }
    }

    fn transferred(id: &str, case: &str, at: &str, to: &str, from: Option<&str>) -> CaseEvent {
        CaseEvent {
            event_id: id.into(),
            case_id: case.into(),
            city: None,
            occurred_at: ts(at),
            change: Change::Transferred(Transferred {
                to_department: to.into(),
                from_department: from.map(Into::into),
                due_at: None,
            }),
        }
    }

    fn closed(id: &str, case: &str, at: &str) -> CaseEvent {
        CaseEvent { event_id: id.into(), case_id: case.into(), city: None, occurred_at: ts(at), change: Change::Closed }
    }

    fn april() -> Month {
        "2022-04".parse().unwrap()
    }

    #[test]
    fn a_closed_case_counts_as_received_and_closed() {
        let mut l = Ledger::new(rules());
        l.apply(&created("e1", "c1", "2022-04-03T09:00:00+08:00", None, None)).unwrap();
        l.apply(&created("e2", "c2", "2022-04-03T09:00:00+08:00", None, None)).unwrap();
        l.apply(&closed("e3", "c1", "2022-04-04T09:00:00+08:00")).unwrap();
        let f = l.figures(april(), ts("2022-05-01T00:00:00Z")).unwrap();
        assert_eq!((f.totals.received, f.totals.closed, f.totals.in_progress), (2, 1, 1));
        assert_eq!(f.totals.closure_rate, Some(0.5));
        assert_eq!(f.by_category["epidemic"].share, 1.0);
        assert_eq!(f.by_channel["hotline"].closed, 1);
        assert!(f.by_department.is_empty(), "unassigned cases have no department row");
    }

    #[test]
    fn events_before_created_wait_and_then_count() {
        let mut l = Ledger::new(rules());
        l.apply(&closed("e3", "c1", "2022-04-05T09:00:00+08:00")).unwrap();
        l.apply(&transferred("e2", "c1", "2022-04-04T09:00:00+08:00", "tiexi", None)).unwrap();
        assert_eq!(l.waiting_for_created(), 1);
        assert!(l.figures(april(), Timestamp::MAX).is_none());
        l.apply(&created("e1", "c1", "2022-04-03T09:00:00+08:00", Some("city"), None)).unwrap();
        assert_eq!(l.waiting_for_created(), 0);
        let f = l.figures(april(), ts("2022-05-01T00:00:00Z")).unwrap();
        assert_eq!(f.totals.closed, 1);
        assert_eq!(f.by_department["tiexi"].closed_on_time, 1);
        assert_eq!(f.by_department["tiexi"].transferred_in, 1);
        assert_eq!(f.by_department["city"].transferred_out, 1);
        assert_eq!(f.by_department["city"].assigned, 0);
    }

    #[test]
    fn duplicates_change_nothing_and_conflicts_are_rejected() {
        let mut l = Ledger::new(rules());
        let e = created("e1", "c1", "2022-04-03T09:00:00+08:00", Some("a"), None);
        assert_eq!(l.apply(&e), Ok(Applied::Changed));
        assert_eq!(l.apply(&e), Ok(Applied::Duplicate));
        let other = created("e9", "c1", "2022-04-09T09:00:00+08:00", Some("b"), None);
        assert_eq!(l.apply(&other), Err(Rejection::ConflictingCreated));
        l.apply(&closed("e2", "c1", "2022-04-04T00:00:00Z")).unwrap();
        // A second `closed` is kept (a reopen may come between them) but changes nothing.
        assert_eq!(l.apply(&closed("e3", "c1", "2022-04-05T00:00:00Z")), Ok(Applied::Redundant));
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        assert_eq!((f.totals.received, f.totals.closed), (1, 1));
        assert_eq!(f.by_department["a"].assigned, 1);
    }

    #[test]
    fn the_earliest_closed_counts_whatever_the_arrival_order() {
        let mut l = Ledger::new(rules());
        l.apply(&created("1", "c", "2022-04-01T00:00:00Z", Some("a"), Some("2022-04-05T00:00:00Z"))).unwrap();
        l.apply(&closed("late", "c", "2022-04-06T00:00:00Z")).unwrap();
        assert_eq!(l.apply(&closed("early", "c", "2022-04-04T00:00:00Z")), Ok(Applied::Changed));
        assert_eq!(l.apply(&closed("later", "c", "2022-04-07T00:00:00Z")), Ok(Applied::Redundant));
        let d = l.figures(april(), Timestamp::MAX).unwrap().by_department["a"];
        assert_eq!((d.closed_on_time, d.closed_late), (1, 0));
    }

    #[test]
    fn a_waiting_case_keeps_every_closed_and_counts_the_earliest() {
        let mut l = Ledger::new(rules());
        l.apply(&closed("e2", "c1", "2022-04-05T00:00:00Z")).unwrap();
        assert_eq!(l.apply(&closed("e1", "c1", "2022-04-04T00:00:00Z")), Ok(Applied::Changed));
        assert_eq!((l.cases_held(), l.waiting_for_created()), (1, 1));
        l.apply(&created("e0", "c1", "2022-04-01T00:00:00Z", Some("a"), Some("2022-04-04T12:00:00Z"))).unwrap();
        let d = l.figures(april(), Timestamp::MAX).unwrap().by_department["a"];
        assert_eq!((d.closed_on_time, d.closed_late, l.waiting_for_created()), (1, 0, 0));
    }

    #[test]
    fn deadlines_decide_on_time_late_and_overdue() {
        let mut l = Ledger::new(rules());
        // Explicit deadline, closed on it exactly: on time.
        l.apply(&created("a1", "a", "2022-04-01T09:00:00+08:00", Some("d"), Some("2022-04-02T09:00:00+08:00")))
            .unwrap();
        l.apply(&closed("a2", "a", "2022-04-02T09:00:00+08:00")).unwrap();
        // Default SLA of 15 days from assignment: closed one second late.
        l.apply(&created("b1", "b", "2022-04-01T09:00:00+08:00", Some("d"), None)).unwrap();
        l.apply(&closed("b2", "b", "2022-04-16T09:00:01+08:00")).unwrap();
        // Open, due 2022-04-05: overdue once as_of passes it.
        l.apply(&created("c1", "c", "2022-04-01T09:00:00+08:00", Some("d"), Some("2022-04-05T00:00:00+08:00")))
            .unwrap();
        let f = l.figures(april(), ts("2022-04-05T00:00:00+08:00")).unwrap();
        let d = f.by_department["d"];
        assert_eq!((d.assigned, d.closed_on_time, d.closed_late, d.in_progress, d.overdue), (3, 1, 1, 1, 0));
        let f = l.figures(april(), ts("2022-04-05T00:00:01+08:00")).unwrap();
        assert_eq!(f.by_department["d"].overdue, 1);
    }

    fn event(id: &str, case: &str, at: &str, change: Change) -> CaseEvent {
        CaseEvent { event_id: id.into(), case_id: case.into(), city: None, occurred_at: ts(at), change }
    }

    fn department(figures: &Figures, code: &str) -> crate::domain::figures::DepartmentFigures {
        figures.by_department.get(code).copied().unwrap_or_default()
    }

    #[test]
    fn a_sign_for_counts_once_per_assignment_by_its_holder_on_time_within_two_hours() {
        let mut l = Ledger::new(rules());
        l.apply(&created("c", "1", "2022-04-01T08:00:00+08:00", Some("a"), None)).unwrap();
        let accepted = |d: &str| Change::Accepted { department: d.into() };
        assert_eq!(l.apply(&event("s0", "1", "2022-04-01T09:00:00+08:00", accepted("b"))), Ok(Applied::Redundant));
        assert_eq!(l.apply(&event("s1", "1", "2022-04-01T10:00:00+08:00", accepted("a"))), Ok(Applied::Changed));
        assert_eq!(l.apply(&event("s2", "1", "2022-04-01T10:30:00+08:00", accepted("a"))), Ok(Applied::Redundant));
        l.apply(&transferred("t", "1", "2022-04-02T08:00:00+08:00", "b", None)).unwrap();
        l.apply(&event("s3", "1", "2022-04-02T10:00:01+08:00", accepted("b"))).unwrap();
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        assert_eq!((department(&f, "a").accepted_on_time, department(&f, "a").accepted_late), (1, 0));
        assert_eq!((department(&f, "b").accepted_on_time, department(&f, "b").accepted_late), (0, 1));
        assert_eq!((f.all_departments.accepted_on_time, f.all_departments.accepted_late), (1, 1));
    }

    #[test]
    fn a_return_ends_the_assignment_until_the_next_transfer() {
        let mut l = Ledger::new(rules());
        l.apply(&created("c", "1", "2022-04-01T08:00:00+08:00", Some("a"), None)).unwrap();
        l.apply(&created("c2", "2", "2022-04-01T08:00:00+08:00", Some("a"), None)).unwrap();
        let returned = Change::Returned { department: "a".into() };
        l.apply(&event("r", "1", "2022-04-01T09:00:00+08:00", returned)).unwrap();
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        let a = department(&f, "a");
        // a kept one case and sent one back: a return rate of 1 / (1 + 1).
        assert_eq!((a.assigned, a.returned, a.return_rate), (1, 1, Some(0.5)));
        assert_eq!(f.totals.in_progress, 2, "the returned case still counts, held by no department");
        l.apply(&transferred("t", "1", "2022-04-01T10:00:00+08:00", "b", None)).unwrap();
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        assert_eq!((department(&f, "b").assigned, department(&f, "a").transferred_out), (1, 0));
    }

    #[test]
    fn an_extension_moves_the_deadline_of_the_holders_open_case() {
        let mut l = Ledger::new(rules());
        l.apply(&created("c", "1", "2022-04-01T00:00:00Z", Some("a"), Some("2022-04-05T00:00:00Z"))).unwrap();
        l.apply(&closed("x", "1", "2022-04-08T00:00:00Z")).unwrap();
        assert_eq!(department(&l.figures(april(), Timestamp::MAX).unwrap(), "a").closed_late, 1);
        let extended = |d: &str| Change::Extended { department: d.into(), due_at: ts("2022-04-10T00:00:00Z") };
        assert_eq!(l.apply(&event("e0", "1", "2022-04-04T00:00:00Z", extended("b"))), Ok(Applied::Redundant));
        l.apply(&event("e1", "1", "2022-04-04T00:00:00Z", extended("a"))).unwrap();
        let a = department(&l.figures(april(), Timestamp::MAX).unwrap(), "a");
        assert_eq!((a.closed_on_time, a.closed_late, a.extended, a.on_time_rate), (1, 0, 1, Some(1.0)));
    }

    #[test]
    fn a_reopen_opens_a_closed_case_as_a_new_assignment_judged_at_its_last_close() {
        let mut l = Ledger::new(rules());
        l.apply(&created("c", "1", "2022-04-01T00:00:00Z", Some("a"), Some("2022-04-05T00:00:00Z"))).unwrap();
        l.apply(&closed("x1", "1", "2022-04-04T00:00:00Z")).unwrap();
        let reopened = |due: Option<&str>| Change::Reopened { department: "b".into(), due_at: due.map(ts) };
        l.apply(&event("o", "1", "2022-04-06T00:00:00Z", reopened(Some("2022-04-09T00:00:00Z")))).unwrap();
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        assert_eq!((f.totals.closed, f.totals.in_progress), (0, 1));
        assert_eq!(
            (department(&f, "b").assigned, department(&f, "b").reopened, department(&f, "a").assigned),
            (1, 1, 0)
        );
        // A reopen of an open case changes nothing; the close after the reopen is the one in force.
        assert_eq!(l.apply(&event("o2", "1", "2022-04-07T00:00:00Z", reopened(None))), Ok(Applied::Redundant));
        l.apply(&closed("x2", "1", "2022-04-10T00:00:00Z")).unwrap();
        let b = department(&l.figures(april(), Timestamp::MAX).unwrap(), "b");
        assert_eq!((b.closed_on_time, b.closed_late, b.reopen_rate), (0, 1, Some(1.0)));
        // A close that arrives late, between the first close and the reopen, is redundant.
        assert_eq!(l.apply(&closed("x3", "1", "2022-04-05T00:00:00Z")), Ok(Applied::Redundant));
    }

    #[test]
    fn the_latest_rating_counts_for_the_holder_at_the_last_close() {
        let mut l = Ledger::new(rules());
        let rated = |r: Rating| Change::Rated { result: r };
        l.apply(&created("c", "1", "2022-04-01T00:00:00Z", Some("a"), None)).unwrap();
        // Never closed: the rating counts nowhere yet.
        l.apply(&event("r1", "1", "2022-04-03T00:00:00Z", rated(Rating::Dissatisfied))).unwrap();
        assert_eq!(l.figures(april(), Timestamp::MAX).unwrap().all_departments.dissatisfied, 0);
        l.apply(&closed("x1", "1", "2022-04-02T00:00:00Z")).unwrap();
        assert_eq!(department(&l.figures(april(), Timestamp::MAX).unwrap(), "a").dissatisfied, 1);
        // Reopened to b, closed again, rated again: b has the rating, and only the latest.
        let reopened = Change::Reopened { department: "b".into(), due_at: None };
        l.apply(&event("o", "1", "2022-04-04T00:00:00Z", reopened)).unwrap();
        l.apply(&closed("x2", "1", "2022-04-05T00:00:00Z")).unwrap();
        l.apply(&event("r2", "1", "2022-04-06T00:00:00Z", rated(Rating::BasicallySatisfied))).unwrap();
        assert_eq!(
            l.apply(&event("r0", "1", "2022-04-02T12:00:00Z", rated(Rating::Satisfied))),
            Ok(Applied::Redundant)
        );
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        assert_eq!((department(&f, "a").dissatisfied, department(&f, "b").basically_satisfied), (0, 1));
        assert_eq!(
            (f.all_departments.satisfaction_rate, department(&f, "b").satisfaction_rate),
            (Some(1.0), Some(1.0))
        );
    }

    /// The reference rules with help answered in 3 working days and complaints not listed.
    fn working_day_rules() -> CountingRules {
        let mut by_kind = [None; RequestKind::ALL.len()];
        by_kind[RequestKind::Help as usize] = Some(3);
        let calendar = std::sync::Arc::new(crate::domain::calendar::WorkCalendar::default());
        CountingRules { working_days: Some(crate::domain::case::WorkingDays { calendar, by_kind }), ..rules() }
    }

    #[test]
    fn working_day_deadlines_skip_weekends_and_holidays_and_count_swapped_weekends() {
        let mut l = Ledger::new(working_day_rules());
        // Friday 1 April 2022: Saturday 2 April is worked, 3-5 April are Qingming, so the 3rd
        // working day after is Thursday 7 April: due at midnight ending it.
        l.apply(&created("1", "on-time", "2022-04-01T10:00:00+08:00", Some("a"), None)).unwrap();
        l.apply(&closed("2", "on-time", "2022-04-07T23:59:59+08:00")).unwrap();
        l.apply(&created("3", "late", "2022-04-01T10:00:00+08:00", Some("a"), None)).unwrap();
        l.apply(&closed("4", "late", "2022-04-08T00:00:01+08:00")).unwrap();
        // A kind the table does not list keeps the calendar-day default (15 days).
        let mut complaint = created("5", "complaint", "2022-04-01T10:00:00+08:00", Some("a"), None);
        if let Change::Created(c) = &mut complaint.change {
            c.request_kind = Some(RequestKind::Complaint);
        }
        l.apply(&complaint).unwrap();
        let f = |at: &str| l.figures(april(), ts(at)).unwrap().by_department["a"];
        assert_eq!((f("2022-04-08T00:00:00+08:00").closed_on_time, f("2022-04-08T00:00:00+08:00").closed_late), (1, 1));
        assert_eq!(f("2022-04-16T10:00:00+08:00").overdue, 0);
        assert_eq!(f("2022-04-16T10:00:01+08:00").overdue, 1);
    }

    #[test]
    fn a_deadline_in_a_year_the_calendar_lacks_counts_by_weekends_marked_until_the_year_is_added() {
        use crate::domain::figures::ProvisionalDeadlines;
        let december = Month::containing(ts("2026-12-29T02:00:00Z"), &rules().zone);
        // Help from Tuesday 29 December 2026 (3 working days) is due in 2027, whose holidays
        // are not published: by weekends alone, 30 and 31 December and Friday 1 January.
        let help = created("1", "c", "2026-12-29T10:00:00+08:00", Some("a"), None);
        let closed_monday = closed("2", "c", "2027-01-04T09:00:00+08:00");
        // An upstream deadline needs no calendar.
        let given = created("3", "e", "2026-12-29T10:00:00+08:00", Some("a"), Some("2027-01-10T00:00:00Z"));
        let mut l = Ledger::new(working_day_rules());
        for e in [&help, &closed_monday, &given] {
            assert_eq!(l.apply(e), Ok(Applied::Changed), "counted, never dead-lettered");
        }
        let f = l.figures(december, Timestamp::MAX).unwrap();
        assert_eq!((f.by_department["a"].closed_late, f.by_department["a"].in_progress), (1, 1));
        assert_eq!(f.provisional_deadlines, [ProvisionalDeadlines { year: 2027, cases: 1 }], "only the computed one");

        // 2027 published with New Year's Day off: the next start counts the case again, due
        // Monday 4 January, and on time.
        let calendar = format!(
            "{}\n[2027]\nnotice = \"test\"\nholidays = [\"01-01\"]\nworking_weekends = []\n",
            crate::domain::calendar::BUILT_IN
        );
        let mut rules = working_day_rules();
        if let Some(w) = &mut rules.working_days {
            w.calendar = std::sync::Arc::new(crate::domain::calendar::WorkCalendar::parse(&calendar).unwrap());
        }
        let mut restarted = Ledger::new(rules);
        for case in ["c", "e"] {
            let record = l.case(case).unwrap().moved(l.codes(), restarted.codes_mut());
            restarted.restore(case.into(), record);
        }
        let f = restarted.figures(december, Timestamp::MAX).unwrap();
        assert_eq!((f.by_department["a"].closed_on_time, f.by_department["a"].closed_late), (1, 0));
        assert!(f.provisional_deadlines.is_empty());
    }

    #[test]
    fn a_transfer_restarts_the_default_deadline_but_keeps_a_given_one() {
        let mut l = Ledger::new(rules());
        l.apply(&created("a1", "a", "2022-04-01T00:00:00Z", Some("x"), None)).unwrap();
        l.apply(&transferred("a2", "a", "2022-04-10T00:00:00Z", "y", None)).unwrap();
        l.apply(&closed("a3", "a", "2022-04-20T00:00:00Z")).unwrap(); // 19 days after creation
        l.apply(&created("b1", "b", "2022-04-01T00:00:00Z", Some("x"), Some("2022-04-03T00:00:00Z"))).unwrap();
        l.apply(&transferred("b2", "b", "2022-04-02T00:00:00Z", "y", None)).unwrap();
        l.apply(&closed("b3", "b", "2022-04-04T00:00:00Z")).unwrap();
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        assert_eq!(f.by_department["y"].closed_on_time, 1);
        assert_eq!(f.by_department["y"].closed_late, 1);
    }

    #[test]
    fn buck_passing_counts_returned_cases() {
        let mut l = Ledger::new(rules());
        l.apply(&created("1", "c", "2022-04-01T00:00:00Z", Some("market"), None)).unwrap();
        l.apply(&transferred("2", "c", "2022-04-02T00:00:00Z", "commerce", None)).unwrap();
        l.apply(&transferred("3", "c", "2022-04-03T00:00:00Z", "market", Some("commerce"))).unwrap();
        l.apply(&created("4", "d", "2022-04-01T00:00:00Z", None, None)).unwrap();
        l.apply(&transferred("5", "d", "2022-04-02T00:00:00Z", "water", None)).unwrap();
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        assert_eq!(f.transfers.total, 3);
        assert_eq!(f.transfers.cases_transferred, 2);
        assert_eq!(f.transfers.returned_cases, 1);
        assert_eq!(f.by_department["market"].transferred_in, 1);
        assert_eq!(f.by_department["market"].transferred_out, 1);
        assert_eq!(f.by_department["market"].assigned, 1);
        assert_eq!(f.by_department["commerce"].assigned, 0);
        assert_eq!(f.by_department["water"].transferred_out, 0);
    }

    #[test]
    fn the_latest_transfer_by_event_time_holds_the_case() {
        let mut l = Ledger::new(rules());
        l.apply(&transferred("3", "c", "2022-04-03T00:00:00Z", "late", None)).unwrap();
        l.apply(&transferred("2", "c", "2022-04-02T00:00:00Z", "early", None)).unwrap();
        l.apply(&created("1", "c", "2022-04-01T00:00:00Z", Some("first"), None)).unwrap();
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        assert_eq!(f.by_department["late"].assigned, 1);
        assert_eq!(f.by_department["early"].transferred_out, 1);
        assert_eq!(f.by_department["first"].transferred_out, 1);
    }

    #[test]
    fn restoring_from_the_changelog_rebuilds_the_same_figures() {
        let mut l = Ledger::new(rules());
        l.apply(&created("1", "c", "2022-04-01T00:00:00Z", Some("a"), None)).unwrap();
        l.apply(&transferred("2", "c", "2022-04-02T00:00:00Z", "b", None)).unwrap();
        l.apply(&created("3", "d", "2022-04-30T16:30:00Z", None, None)).unwrap();
        l.apply(&closed("4", "e", "2022-04-02T00:00:00Z")).unwrap();
        let (cases, months) = l.take_changes();
        assert_eq!(cases.len(), 3);
        assert_eq!(months.iter().map(ToString::to_string).collect::<Vec<_>>(), ["2022-04", "2022-05"]);
        let mut r = Ledger::new(rules());
        for id in cases {
            let record = l.case(&id).unwrap().moved(l.codes(), r.codes_mut());
            r.restore(id.clone(), record);
        }
        for m in ["2022-04", "2022-05"] {
            let m = m.parse().unwrap();
            assert_eq!(r.figures(m, Timestamp::MAX), l.figures(m, Timestamp::MAX));
        }
        assert_eq!(r.waiting_for_created(), 1);
        r.restore("e".into(), CaseRecord::default());
        assert_eq!((r.cases_held(), r.waiting_for_created()), (2, 0), "a tombstone removes the case");
    }

    #[test]
    fn a_flood_of_codes_leaves_the_code_table_with_its_month() {
        let mut l = Ledger::new(rules());
        for n in 0..5_000 {
            let junk = format!("junk_{n}");
            l.apply(&created(&format!("j{n}"), &format!("junk-{n}"), "2022-03-10T00:00:00Z", Some(&junk), None))
                .unwrap();
        }
        l.apply(&created("1", "kept", "2022-04-10T00:00:00Z", Some("tiexi_district"), None)).unwrap();
        l.apply(&transferred("2", "kept", "2022-04-11T00:00:00Z", "unicom", None)).unwrap();
        assert_eq!(l.codes().len(), 5_003, "the flood's 5,000 departments, the category and April's two departments");
        let april_before = l.figures(april(), Timestamp::MAX);
        assert_eq!(l.evict_before(april()).len(), 5_000);
        assert_eq!(l.codes().len(), 3, "only the codes April's case names");
        assert_eq!(l.figures(april(), Timestamp::MAX), april_before);
        // The kept case still reads back and moves on with its codes.
        l.apply(&transferred("3", "kept", "2022-04-12T00:00:00Z", "tiexi_district", None)).unwrap();
        let f = l.figures(april(), Timestamp::MAX).unwrap();
        assert_eq!((f.by_department["tiexi_district"].assigned, f.by_department["unicom"].transferred_out), (1, 1));
        assert_eq!(l.codes().len(), 3);
    }

    #[test]
    fn evicted_months_are_dropped_and_their_late_events_rejected() {
        let mut l = Ledger::new(rules());
        l.apply(&created("1", "old", "2022-03-10T00:00:00Z", Some("a"), None)).unwrap();
        l.apply(&closed("2", "orphan", "2022-03-11T00:00:00Z")).unwrap();
        l.apply(&created("3", "new", "2022-04-10T00:00:00Z", Some("a"), None)).unwrap();
        l.take_changes();
        let mut evicted = l.evict_before(april());
        evicted.sort();
        assert_eq!(evicted, ["old", "orphan"]);
        assert_eq!((l.cases_held(), l.waiting_for_created()), (1, 0));
        assert_eq!(l.months().map(|(m, _)| m).collect::<Vec<_>>(), [april()]);
        assert_eq!(l.apply(&closed("4", "old", "2022-03-20T00:00:00Z")), Err(Rejection::MonthEvicted));
        assert_eq!(l.apply(&created("5", "late", "2022-03-31T15:00:00Z", None, None)), Err(Rejection::MonthEvicted));
        // A held case still takes events dated before the cut, and new cases after it count.
        assert_eq!(l.apply(&closed("6", "new", "2022-04-11T00:00:00Z")), Ok(Applied::Changed));
        assert_eq!(l.apply(&created("7", "april", "2022-03-31T16:00:00Z", None, None)), Ok(Applied::Changed));
        // A waiting case held since before the cut whose `created` is in an evicted month.
        l.apply(&closed("8", "waiting", "2022-04-12T00:00:00Z")).unwrap();
        assert_eq!(l.apply(&created("9", "waiting", "2022-03-12T00:00:00Z", None, None)), Err(Rejection::MonthEvicted));
        assert_eq!(l.months().count(), 1, "no evicted month comes back");
        assert!(l.evict_before(april()).is_empty(), "eviction only moves forward");
        let (changed, _) = l.take_changes();
        assert!(changed.contains("old") && changed.contains("orphan"), "tombstones are due");
        assert!(l.case("waiting").is_some_and(|r| r.created.is_none()));
        assert!(l.case("old").is_none());
        // The facts of the case evicted without its `created` go to the dead letters, once.
        let orphans = l.take_orphans();
        assert_eq!(
            orphans,
            [Orphan {
                case_id: "orphan".into(),
                kind: "closed",
                occurred_at: ts("2022-03-11T00:00:00Z"),
                event_key: format!("{:016x}", crate::domain::case::EventKey::of("2").0),
            }]
        );
        assert!(l.take_orphans().is_empty());
    }
}
