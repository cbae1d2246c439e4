//! One record per case, and what a case contributes to its month's figures.
//!
//! A record only gathers facts (its `created`, its transfers, its first `closed`), so events can
//! arrive in any order: the record's *contribution* is derived from the facts, sorted by event
//! time, whenever it is needed.

use std::num::NonZeroI64;
use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use thin_vec::ThinVec;

use super::calendar::{MissingYear, WorkCalendar};
use super::code::Code;
use super::event::{Board, CaseEvent, Change, Channel, Created, Rejection, RequestKind, Transferred};
use super::month::Month;

/// How cases are counted: the office's zone and its deadlines.
#[derive(Clone, Debug)]
pub struct CountingRules {
    pub zone: TimeZone,
    /// Deadline for an assignment that came without `due_at`, counted from the assignment in
    /// calendar time, unless `working_days` gives its request kind a number of working days.
    pub default_sla: Span,
    /// Working days to answer an assignment without `due_at`, by request kind.
    pub working_days: Option<WorkingDays>,
}

#[derive(Clone, Debug)]
pub struct WorkingDays {
    pub calendar: Arc<WorkCalendar>,
    /// Indexed by `RequestKind as usize`; a kind without a number uses `default_sla`.
    pub by_kind: [Option<u16>; RequestKind::ALL.len()],
}

impl CountingRules {
    /// The reference office's rules, which `config/hotline.toml` ships: Shanghai time, 15
    /// calendar days for an assignment without `due_at`. What tests and benchmarks count by.
    pub fn reference() -> CountingRules {
        CountingRules {
            zone: TimeZone::get("Asia/Shanghai").expect("the bundled tz database knows Shanghai"),
            default_sla: Span::new().days(15),
            working_days: None,
        }
    }

    /// When an assignment made at `assigned` without a `due_at` is due: midnight ending the
    /// kind's number of working days after the day of the assignment, or `default_sla` later.
    pub(crate) fn deadline(&self, assigned: Nanos, kind: Option<RequestKind>) -> Result<Timestamp, MissingYear> {
        let working_days = self.working_days.as_ref().and_then(|w| Some((w, w.by_kind[kind? as usize]?)));
        match working_days {
            Some((w, n)) => w.calendar.deadline(assigned.timestamp(), n, &self.zone),
            None => Ok(assigned
                .timestamp()
                .to_zoned_datetime(self.zone.clone())
                .checked_add(self.default_sla)
                .map(|z| z.timestamp())
                .unwrap_or(Timestamp::MAX)),
        }
    }
}

/// What a case record keeps of its events: no more than its figures need, so a million cases
/// fit in little memory. An event is known by the hash of its id (`EventKey`), times are
/// nanoseconds, and codes are `Code`s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseRecord {
    pub created: Option<Fact<Intake>>,
    /// Sorted by (at, event), whatever order they arrived in. Most cases have none: a
    /// `ThinVec` takes one word for them where a `Vec` takes three.
    pub transfers: ThinVec<Fact<Assignment>>,
    pub closed: Option<Fact<()>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fact<T> {
    pub event: EventKey,
    pub at: Nanos,
    pub data: T,
}

/// What a `created` event says of the case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intake {
    pub channel: Channel,
    pub board: Option<Board>,
    pub request_kind: Option<RequestKind>,
    pub category: Code,
    pub department: Option<Code>,
    pub due: Option<Nanos>,
}

/// What a `transferred` event says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub to: Code,
    pub from: Option<Code>,
    pub due: Option<Nanos>,
}

impl From<&Created> for Intake {
    fn from(c: &Created) -> Intake {
        Intake {
            channel: c.channel,
            board: c.board,
            request_kind: c.request_kind,
            category: c.category,
            department: c.department,
            due: c.due_at.map(Nanos::from),
        }
    }
}

impl From<&Transferred> for Assignment {
    fn from(t: &Transferred) -> Assignment {
        Assignment { to: t.to_department, from: t.from_department, due: t.due_at.map(Nanos::from) }
    }
}

/// An event, as a case record knows it: the XXH3-64 hash of its id. Duplicates are found by
/// it, and facts that happened at the same instant are ordered by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey(pub u64);

impl EventKey {
    pub fn of(event_id: &str) -> EventKey {
        EventKey(xxhash_rust::xxh3::xxh3_64(event_id.as_bytes()))
    }
}

/// An event as a case record takes it: its key and time, computed once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Incoming<'a> {
    pub event: &'a CaseEvent,
    key: EventKey,
    at: Nanos,
}

impl<'a> From<&'a CaseEvent> for Incoming<'a> {
    fn from(event: &'a CaseEvent) -> Incoming<'a> {
        Incoming { event, key: EventKey::of(&event.event_id), at: event.occurred_at.into() }
    }
}

/// An instant as nanoseconds since the Unix epoch, which `i64` holds from 1677 to 2262. The
/// contract admits events from 2000 on and deadlines up to five years after them, so every
/// time a record holds is positive; conversion saturates to that range all the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(NonZeroI64);

impl From<Timestamp> for Nanos {
    fn from(t: Timestamp) -> Nanos {
        let nanos = t.as_nanosecond().clamp(1, i64::MAX as i128) as i64;
        Nanos(NonZeroI64::new(nanos).expect("clamped to at least 1"))
    }
}

impl Nanos {
    pub(crate) fn from_i64(nanos: i64) -> Option<Nanos> {
        NonZeroI64::new(nanos).filter(|n| n.get() > 0).map(Nanos)
    }

    pub fn get(self) -> i64 {
        self.0.get()
    }

    pub fn timestamp(self) -> Timestamp {
        Timestamp::from_nanosecond(i128::from(self.0.get())).expect("jiff holds every i64 of nanoseconds")
    }
}

/// What applying an event did to its case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// The event id was applied before: nothing changes.
    Duplicate,
}

impl CaseRecord {
    /// Roughly the memory this record takes, for the state-size metric.
    pub(crate) fn approx_bytes(&self) -> usize {
        // A non-empty ThinVec's header (length and capacity) is on the heap with its items.
        let transfers = if self.transfers.is_empty() { 0 } else { 16 + std::mem::size_of_val(&*self.transfers) };
        std::mem::size_of::<CaseRecord>() + transfers
    }

    fn has_event(&self, event: EventKey) -> bool {
        self.created.is_some_and(|f| f.event == event)
            || self.closed.is_some_and(|f| f.event == event)
            || self.transfers.iter().any(|f| f.event == event)
    }

    /// What applying `event` would do: change the record, nothing (a duplicate), or why not.
    pub(crate) fn admits(&self, incoming: &Incoming) -> Result<Applied, Rejection> {
        let Incoming { event, key, at } = *incoming;
        if self.has_event(key) {
            return Ok(Applied::Duplicate);
        }
        let order = (at, key);
        match &event.change {
            Change::Created(_) if self.created.is_some() => Err(Rejection::ConflictingCreated),
            // A case is closed from its first `closed` by event time, whatever order they
            // arrive in; a later one arriving afterwards is rejected.
            Change::Closed if self.closed.is_some_and(|c| (c.at, c.event) <= order) => Err(Rejection::AlreadyClosed),
            _ => Ok(Applied::Changed),
        }
    }

    /// Adds the fact of an event `admits` says changes the record.
    pub(crate) fn add(&mut self, incoming: &Incoming) {
        let Incoming { event, key, at } = *incoming;
        match &event.change {
            Change::Created(created) => self.created = Some(Fact { event: key, at, data: created.into() }),
            Change::Transferred(transfer) => {
                let i = self.transfers.partition_point(|t| (t.at, t.event) < (at, key));
                self.transfers.insert(i, Fact { event: key, at, data: transfer.into() });
            }
            Change::Closed => self.closed = Some(Fact { event: key, at, data: () }),
        }
    }

    /// The month the case would count in with `event` added.
    pub(crate) fn month_with(&self, event: &CaseEvent, rules: &CountingRules) -> Option<Month> {
        match (&self.created, &event.change) {
            (Some(created), _) => Some(Month::containing(created.at.timestamp(), &rules.zone)),
            (None, Change::Created(_)) => Some(Month::containing(event.occurred_at, &rules.zone)),
            (None, _) => None,
        }
    }

    /// When the latest of its facts happened.
    pub(crate) fn latest_fact(&self) -> Option<Timestamp> {
        let created = self.created.map(|f| f.at);
        let closed = self.closed.map(|f| f.at);
        let moved = self.transfers.last().map(|f| f.at);
        created.max(closed).max(moved).map(Nanos::timestamp)
    }

    pub fn month(&self, rules: &CountingRules) -> Option<Month> {
        self.created.map(|c| Month::containing(c.at.timestamp(), &rules.zone))
    }

    /// The case's share of its month's figures; `None` until its `created` event is known.
    /// An error when its deadline needs a year the working-day calendar lacks.
    pub(crate) fn contribution(&self, rules: &CountingRules) -> Result<Option<Contribution<'_>>, MissingYear> {
        let Some(created) = self.created.as_ref() else { return Ok(None) };
        let closed_at = self.closed.map(|c| c.at);

        let mut transfers_in = Vec::new();
        let mut transfers_out = Vec::new();
        let mut holders: Vec<Code> = created.data.department.into_iter().collect();
        let mut holder = created.data.department;
        let mut assigned_at = created.at;
        let mut returns: Vec<(&str, &str)> = Vec::new();
        // The latest deadline given, by when it was given; the created event counts as the first.
        let mut due_given = created.data.due;
        for t in &self.transfers {
            let to = t.data.to;
            // A transfer back to an earlier holder always has a sender: the holder before it.
            if let Some(from) = t.data.from.or(holder) {
                transfers_out.push(from.as_str());
                holders.push(from);
                if holders.contains(&to) {
                    returns.push((from.as_str(), to.as_str()));
                }
            }
            transfers_in.push(to.as_str());
            holders.push(to);
            holder = Some(to);
            assigned_at = t.at;
            if t.data.due.is_some() {
                due_given = t.data.due;
            }
        }

        let holding = match holder {
            None => None,
            Some(department) => {
                let due = match due_given {
                    Some(due) => due.timestamp(),
                    None => rules.deadline(assigned_at, created.data.request_kind)?,
                };
                Some(Holding {
                    department: department.as_str(),
                    due,
                    state: match closed_at {
                        None => HoldingState::Open,
                        Some(at) if at.timestamp() <= due => HoldingState::ClosedOnTime,
                        Some(_) => HoldingState::ClosedLate,
                    },
                })
            }
        };

        returns.sort_unstable();
        returns.dedup();
        Ok(Some(Contribution {
            month: Month::containing(created.at.timestamp(), &rules.zone),
            channel: created.data.channel,
            board: created.data.board,
            category: created.data.category.as_str(),
            request_kind: created.data.request_kind,
            closed: closed_at.is_some(),
            holding,
            transfers_in,
            transfers_out,
            returns,
        }))
    }
}

/// One case's share of its month's figures, borrowing the case's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution<'a> {
    pub month: Month,
    pub channel: Channel,
    pub board: Option<Board>,
    pub category: &'a str,
    pub request_kind: Option<RequestKind>,
    pub closed: bool,
    /// The department holding the case now, if any was ever assigned.
    pub holding: Option<Holding<'a>>,
    /// One entry per transfer: its receiving department.
    pub transfers_in: Vec<&'a str>,
    /// One entry per transfer whose sender is known.
    pub transfers_out: Vec<&'a str>,
    /// Each (sender, receiver) pair, once, of the transfers that sent the case back to a
    /// department that had held it before: buck-passing.
    pub returns: Vec<(&'a str, &'a str)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding<'a> {
    pub department: &'a str,
    pub due: Timestamp,
    pub state: HoldingState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldingState {
    Open,
    ClosedOnTime,
    ClosedLate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_record_stays_small() {
        // What a million cases cost: the ledger's figure per case is this plus its id (24)
        // and its place in the table.
        assert_eq!(std::mem::size_of::<CaseRecord>(), 64);
    }
}
