//! One record per case, and what a case contributes to its month's figures.
//!
//! A record only gathers facts (its `created`, its transfers, its first `closed`), so events can
//! arrive in any order: the record's *contribution* is derived from the facts, sorted by event
//! time, whenever it is needed.

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};

use super::event::{Board, CaseEvent, Change, Channel, Created, Rejection, RequestKind, Transferred};
use super::month::Month;

/// How cases are counted: the office's zone and its default deadline.
#[derive(Clone, Debug)]
pub struct CountingRules {
    pub zone: TimeZone,
    /// Deadline for an assignment that came without `due_at`, counted from the assignment.
    pub default_sla: Span,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub created: Option<Fact<Created>>,
    /// Sorted by (occurred_at, event_id), whatever order they arrived in.
    pub transfers: Vec<Fact<Transferred>>,
    pub closed: Option<Fact<()>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact<T> {
    pub event_id: String,
    pub at: Timestamp,
    #[serde(flatten)]
    pub data: T,
}

impl<T> Fact<T> {
    fn of(event: &CaseEvent, data: T) -> Fact<T> {
        Fact { event_id: event.event_id.clone(), at: event.occurred_at, data }
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
    /// Roughly the heap this record takes, for the state-size metric.
    pub fn approx_bytes(&self) -> usize {
        // Codes are shared (`event::code`): only the event ids are the record's own.
        let created = self.created.as_ref().map_or(0, |f| f.event_id.len());
        let transfers: usize =
            self.transfers.iter().map(|f| std::mem::size_of::<Fact<Transferred>>() + f.event_id.len()).sum();
        std::mem::size_of::<CaseRecord>() + created + transfers + self.closed.as_ref().map_or(0, |f| f.event_id.len())
    }

    fn has_event(&self, event_id: &str) -> bool {
        self.created.as_ref().is_some_and(|f| f.event_id == event_id)
            || self.closed.as_ref().is_some_and(|f| f.event_id == event_id)
            || self.transfers.iter().any(|f| f.event_id == event_id)
    }

    /// What applying `event` would do: change the record, nothing (a duplicate), or why not.
    pub fn admits(&self, event: &CaseEvent) -> Result<Applied, Rejection> {
        if self.has_event(&event.event_id) {
            return Ok(Applied::Duplicate);
        }
        let key = (event.occurred_at, event.event_id.as_str());
        match &event.change {
            Change::Created(_) if self.created.is_some() => Err(Rejection::ConflictingCreated),
            // A case is closed from its first `closed` by event time, whatever order they
            // arrive in; a later one arriving afterwards is rejected.
            Change::Closed if self.closed.as_ref().is_some_and(|c| (c.at, c.event_id.as_str()) <= key) => {
                Err(Rejection::AlreadyClosed)
            }
            _ => Ok(Applied::Changed),
        }
    }

    /// Adds the fact of an event `admits` says changes the record.
    pub(crate) fn add(&mut self, event: &CaseEvent) {
        match &event.change {
            Change::Created(created) => self.created = Some(Fact::of(event, created.clone())),
            Change::Transferred(transfer) => {
                let key = (event.occurred_at, event.event_id.as_str());
                let at = self.transfers.partition_point(|t| (t.at, t.event_id.as_str()) < key);
                self.transfers.insert(at, Fact::of(event, transfer.clone()));
            }
            Change::Closed => self.closed = Some(Fact::of(event, ())),
        }
    }

    /// The month the case would count in with `event` added.
    pub fn month_with(&self, event: &CaseEvent, rules: &CountingRules) -> Option<Month> {
        match (&self.created, &event.change) {
            (Some(created), _) => Some(Month::containing(created.at, &rules.zone)),
            (None, Change::Created(_)) => Some(Month::containing(event.occurred_at, &rules.zone)),
            (None, _) => None,
        }
    }

    /// When the latest of its facts happened.
    pub fn latest_fact(&self) -> Option<Timestamp> {
        let created = self.created.as_ref().map(|f| f.at);
        let closed = self.closed.as_ref().map(|f| f.at);
        let moved = self.transfers.last().map(|f| f.at);
        created.max(closed).max(moved)
    }

    pub fn month(&self, rules: &CountingRules) -> Option<Month> {
        self.created.as_ref().map(|c| Month::containing(c.at, &rules.zone))
    }

    /// The case's share of its month's figures; `None` until its `created` event is known.
    pub fn contribution(&self, rules: &CountingRules) -> Option<Contribution<'_>> {
        let created = self.created.as_ref()?;
        let closed_at = self.closed.as_ref().map(|c| c.at);

        let mut transfers_in = Vec::new();
        let mut transfers_out = Vec::new();
        let mut holders: Vec<&str> = created.data.department.iter().map(|d| &**d).collect();
        let mut holder = created.data.department.as_deref();
        let mut assigned_at = created.at;
        let mut returned = false;
        // The latest deadline given, by when it was given; the created event counts as the first.
        let mut due_given = created.data.due_at;
        for t in &self.transfers {
            let to: &str = &t.data.to_department;
            let from = t.data.from_department.as_deref().or(holder);
            if let Some(from) = from {
                transfers_out.push(from);
                holders.push(from);
            }
            returned |= holders.contains(&to);
            transfers_in.push(to);
            holders.push(to);
            holder = Some(to);
            assigned_at = t.at;
            if t.data.due_at.is_some() {
                due_given = t.data.due_at;
            }
        }

        let holding = holder.map(|department| {
            let due = due_given.unwrap_or_else(|| {
                assigned_at
                    .to_zoned_datetime(rules.zone.clone())
                    .checked_add(rules.default_sla)
                    .map(|z| z.timestamp())
                    .unwrap_or(Timestamp::MAX)
            });
            Holding {
                department,
                due,
                state: match closed_at {
                    None => HoldingState::Open,
                    Some(at) if at <= due => HoldingState::ClosedOnTime,
                    Some(_) => HoldingState::ClosedLate,
                },
            }
        });

        Some(Contribution {
            month: Month::containing(created.at, &rules.zone),
            channel: created.data.channel,
            board: created.data.board,
            category: &created.data.category,
            request_kind: created.data.request_kind,
            closed: closed_at.is_some(),
            holding,
            transfers_in,
            transfers_out,
            returned,
        })
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
    /// Transferred at least once to a department that had held it before.
    pub returned: bool,
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
