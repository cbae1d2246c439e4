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

use super::calendar::{Deadline, WorkCalendar};
use super::code::{Code, Codes};
use super::event::{Board, CaseEvent, Change, Channel, Created, Rating, Rejection, RequestKind, Transferred};
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
    /// How long a department has to sign for an assignment (calendar time).
    pub accept_within: Span,
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
            accept_within: Span::new().hours(2),
        }
    }

    /// By when an assignment made at `assigned` is signed for in time.
    pub(crate) fn accept_deadline(&self, assigned: Nanos) -> Timestamp {
        later(assigned, self.accept_within, &self.zone)
    }

    /// When an assignment made at `assigned` without a `due_at` is due: midnight ending the
    /// kind's number of working days after the day of the assignment (provisional when it
    /// needs a year the calendar lacks), or `default_sla` later.
    pub(crate) fn deadline(&self, assigned: Nanos, kind: Option<RequestKind>) -> Deadline {
        let working_days = self.working_days.as_ref().and_then(|w| Some((w, w.by_kind[kind? as usize]?)));
        match working_days {
            Some((w, n)) => w.calendar.deadline(assigned.timestamp(), n, &self.zone),
            None => Deadline { at: later(assigned, self.default_sla, &self.zone), provisional: None },
        }
    }
}

/// `span` after `at` in `zone` (days are calendar days there).
fn later(at: Nanos, span: Span, zone: &TimeZone) -> Timestamp {
    at.timestamp().to_zoned_datetime(zone.clone()).checked_add(span).map(|z| z.timestamp()).unwrap_or(Timestamp::MAX)
}

/// What a case record keeps of its events: no more than its figures need, so a million cases
/// fit in little memory. An event is known by the hash of its id (`EventKey`), times are
/// nanoseconds, and codes are `Code`s of the ledger's table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseRecord {
    pub created: Option<Fact<Intake>>,
    /// Every other fact but the earliest `closed`, sorted by (at, event), whatever order they
    /// arrived in. Most cases have none: a `ThinVec` takes one word for them where a `Vec`
    /// takes three.
    pub steps: ThinVec<Fact<Step>>,
    /// The earliest `closed` by (at, event): most cases have one, and no step.
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

/// A fact of a case after its `created`, as the record keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Transferred(Assignment),
    /// A `closed` after the record's earliest one: it counts after a reopen.
    Closed,
    Accepted(Code),
    Returned(Code),
    Extended {
        department: Code,
        due: Nanos,
    },
    Reopened {
        department: Code,
        due: Option<Nanos>,
    },
    Rated(Rating),
}

impl Intake {
    pub(crate) fn of(c: &Created, codes: &mut Codes) -> Intake {
        Intake {
            channel: c.channel,
            board: c.board,
            request_kind: c.request_kind,
            category: codes.intern(&c.category),
            department: c.department.as_deref().map(|d| codes.intern(d)),
            due: c.due_at.map(Nanos::from),
        }
    }
}

impl Assignment {
    pub(crate) fn of(t: &Transferred, codes: &mut Codes) -> Assignment {
        Assignment {
            to: codes.intern(&t.to_department),
            from: t.from_department.as_deref().map(|d| codes.intern(d)),
            due: t.due_at.map(Nanos::from),
        }
    }
}

impl Step {
    /// The step with each of its codes passed through `f`.
    fn recode(self, f: &mut impl FnMut(Code) -> Code) -> Step {
        match self {
            Step::Transferred(t) => {
                Step::Transferred(Assignment { to: f(t.to), from: t.from.map(&mut *f), due: t.due })
            }
            Step::Accepted(d) => Step::Accepted(f(d)),
            Step::Returned(d) => Step::Returned(f(d)),
            Step::Extended { department, due } => Step::Extended { department: f(department), due },
            Step::Reopened { department, due } => Step::Reopened { department: f(department), due },
            Step::Closed | Step::Rated(_) => self,
        }
    }
}

/// An event's fact with its codes in the ledger's table, ready to be added to its record.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NewFact {
    Created(Intake),
    Closed,
    Step(Step),
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

impl Incoming<'_> {
    /// The event's fact, its codes taken into `codes`.
    pub(crate) fn fact(&self, codes: &mut Codes) -> NewFact {
        NewFact::Step(match &self.event.change {
            Change::Created(created) => return NewFact::Created(Intake::of(created, codes)),
            Change::Closed => return NewFact::Closed,
            Change::Transferred(transfer) => Step::Transferred(Assignment::of(transfer, codes)),
            Change::Accepted { department } => Step::Accepted(codes.intern(department)),
            Change::Returned { department } => Step::Returned(codes.intern(department)),
            Change::Extended { department, due_at } => {
                Step::Extended { department: codes.intern(department), due: Nanos::from(*due_at) }
            }
            Change::Reopened { department, due_at } => {
                Step::Reopened { department: codes.intern(department), due: due_at.map(Nanos::from) }
            }
            Change::Rated { result } => Step::Rated(*result),
        })
    }
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
    /// Kept, but it changed no figure: a `closed` of a case closed already, a `reopened` of
    /// an open case, a sign-for, return or extension by a department not holding the case,
    /// or a rating older than the case's latest. A later event may still give it effect.
    Redundant,
}

impl CaseRecord {
    /// Roughly the memory this record takes, for the state-size metric.
    pub(crate) fn approx_bytes(&self) -> usize {
        // A non-empty ThinVec's header (length and capacity) is on the heap with its items.
        let steps = if self.steps.is_empty() { 0 } else { 16 + std::mem::size_of_val(&*self.steps) };
        std::mem::size_of::<CaseRecord>() + steps
    }

    fn has_event(&self, event: EventKey) -> bool {
        self.created.is_some_and(|f| f.event == event)
            || self.closed.is_some_and(|f| f.event == event)
            || self.steps.iter().any(|f| f.event == event)
    }

    /// What applying `event` would do: change the record, nothing (a duplicate), or why not.
    /// Whether it changes a figure is for the ledger to see.
    pub(crate) fn admits(&self, incoming: &Incoming) -> Result<Applied, Rejection> {
        let Incoming { event, key, .. } = *incoming;
        if self.has_event(key) {
            return Ok(Applied::Duplicate);
        }
        match &event.change {
            Change::Created(_) if self.created.is_some() => Err(Rejection::ConflictingCreated),
            _ => Ok(Applied::Changed),
        }
    }

    /// Adds the fact of an event `admits` says changes the record.
    pub(crate) fn add(&mut self, incoming: &Incoming, fact: NewFact) {
        let Incoming { key, at, .. } = *incoming;
        let step = match fact {
            NewFact::Created(intake) => {
                self.created = Some(Fact { event: key, at, data: intake });
                return;
            }
            NewFact::Closed => match self.closed {
                Some(earliest) if (earliest.at, earliest.event) < (at, key) => Step::Closed,
                earlier => {
                    self.closed = Some(Fact { event: key, at, data: () });
                    let Some(earliest) = earlier else { return };
                    self.insert(Fact { event: earliest.event, at: earliest.at, data: Step::Closed });
                    return;
                }
            },
            NewFact::Step(step) => step,
        };
        self.insert(Fact { event: key, at, data: step });
    }

    /// The record with its codes in the table `to`, where they are in `from` here.
    pub(crate) fn moved(&self, from: &Codes, to: &mut Codes) -> CaseRecord {
        let mut record = self.clone();
        record.recode(&mut |code| to.intern(from.name(code)));
        record
    }

    /// Passes each code of the record through `f`: to move it to another table.
    pub(crate) fn recode(&mut self, f: &mut impl FnMut(Code) -> Code) {
        if let Some(created) = &mut self.created {
            created.data.category = f(created.data.category);
            created.data.department = created.data.department.map(&mut *f);
        }
        for step in self.steps.iter_mut() {
            step.data = step.data.recode(f);
        }
    }

    fn insert(&mut self, step: Fact<Step>) {
        let i = self.steps.partition_point(|s| (s.at, s.event) < (step.at, step.event));
        self.steps.insert(i, step);
    }

    /// The facts after `created` in event-time order (ties by event key), the earliest
    /// `closed` merged in.
    fn replay(&self) -> impl Iterator<Item = Fact<Step>> + '_ {
        let mut closed = self.closed.map(|c| Fact { event: c.event, at: c.at, data: Step::Closed });
        let mut steps = self.steps.iter().copied().peekable();
        std::iter::from_fn(move || match (closed, steps.peek()) {
            (Some(c), Some(s)) if (s.at, s.event) < (c.at, c.event) => steps.next(),
            (Some(c), _) => {
                closed = None;
                Some(c)
            }
            (None, _) => steps.next(),
        })
    }

    /// Every fact after `created` in event-time order: its event, when, and its type.
    pub(crate) fn facts(&self) -> impl Iterator<Item = (EventKey, Nanos, &'static str)> + '_ {
        self.replay().map(|f| {
            let kind = match f.data {
                Step::Transferred(_) => "transferred",
                Step::Closed => "closed",
                Step::Accepted(_) => "accepted",
                Step::Returned(_) => "returned",
                Step::Extended { .. } => "extended",
                Step::Reopened { .. } => "reopened",
                Step::Rated(_) => "rated",
            };
            (f.event, f.at, kind)
        })
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
        let step = self.steps.last().map(|f| f.at);
        created.max(closed).max(step).map(Nanos::timestamp)
    }

    pub fn month(&self, rules: &CountingRules) -> Option<Month> {
        self.created.map(|c| Month::containing(c.at.timestamp(), &rules.zone))
    }

    /// The case's share of its month's figures; `None` until its `created` event is known.
    ///
    /// The facts are replayed in event-time order after `created`:
    /// - a transfer moves the case to its receiver (sent by `from_department`, or else by the
    ///   holder), a new assignment that keeps the latest `due_at` given so far;
    /// - a sign-for counts for the holder's current assignment, once, on time within
    ///   `accept_within` of the assignment; a return ends the holder's assignment, and the case
    ///   waits for the next transfer; an extension by the holder of an open case sets its
    ///   deadline;
    /// - a `closed` of an open case closes it (one of a closed case is redundant); a reopen of
    ///   a closed case opens it again as a new assignment to its department, due at its
    ///   `due_at` or the default deadline from the reopen;
    /// - the latest rating counts, credited to the holder at the case's last close, if it was
    ///   ever closed.
    ///
    /// At the end the holder holds the case; closed, it was on time if its last close came by
    /// its deadline: the latest `due_at` given (it holds across transfers and returns, as in
    /// v1), else the default from its last assignment. Without v2 events this is contract v1:
    /// the earliest `closed` counts, and transfers after it still move the case.
    pub(crate) fn contribution<'a>(&self, rules: &CountingRules, codes: &'a Codes) -> Option<Contribution<'a>> {
        let name = |code: Code| codes.name(code);
        let created = self.created.as_ref()?;

        let mut transfers_in = Vec::new();
        let mut transfers_out = Vec::new();
        let mut holders: Vec<Code> = created.data.department.into_iter().collect();
        let mut holder = created.data.department;
        let mut assigned_at = created.at;
        let mut returns: Vec<(&'a str, &'a str)> = Vec::new();
        // The latest deadline given, by when it was given; the created event counts as the first.
        let mut due_given = created.data.due;
        let mut signed = false;
        // The last close in force (when, and who held the case), unless reopened since.
        let mut closed: Option<Nanos> = None;
        let mut last_closer: Option<Option<Code>> = None;
        let mut rating: Option<Rating> = None;
        let (mut accepted, mut returned, mut extended, mut reopened) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for step in self.replay() {
            match step.data {
                Step::Transferred(t) => {
                    let to = t.to;
                    // A transfer back to an earlier holder always has a sender: the holder before it.
                    if let Some(from) = t.from.or(holder) {
                        transfers_out.push(name(from));
                        holders.push(from);
                        if holders.contains(&to) {
                            returns.push((name(from), name(to)));
                        }
                    }
                    transfers_in.push(name(to));
                    holders.push(to);
                    holder = Some(to);
                    assigned_at = step.at;
                    signed = false;
                    if t.due.is_some() {
                        due_given = t.due;
                    }
                }
                Step::Closed if closed.is_none() => {
                    closed = Some(step.at);
                    last_closer = Some(holder);
                }
                Step::Closed => {}
                Step::Accepted(d) if holder == Some(d) && !signed => {
                    signed = true;
                    let on_time = step.at.timestamp() <= rules.accept_deadline(assigned_at);
                    accepted.push((name(d), on_time));
                }
                Step::Returned(d) if holder == Some(d) && closed.is_none() => {
                    returned.push(name(d));
                    holder = None;
                    signed = false;
                }
                Step::Extended { department, due } if holder == Some(department) && closed.is_none() => {
                    extended.push(name(department));
                    due_given = Some(due);
                }
                Step::Reopened { department, due } if closed.is_some() => {
                    reopened.push(name(department));
                    closed = None;
                    holders.push(department);
                    holder = Some(department);
                    assigned_at = step.at;
                    signed = false;
                    due_given = due;
                }
                Step::Rated(r) => rating = Some(r),
                Step::Accepted(_) | Step::Returned(_) | Step::Extended { .. } | Step::Reopened { .. } => {}
            }
        }

        let holding = match holder {
            None => None,
            Some(department) => {
                let Deadline { at: due, provisional } = match due_given {
                    Some(due) => Deadline { at: due.timestamp(), provisional: None },
                    None => rules.deadline(assigned_at, created.data.request_kind),
                };
                Some(Holding {
                    department: name(department),
                    due,
                    provisional,
                    state: match closed {
                        None => HoldingState::Open,
                        Some(at) if at.timestamp() <= due => HoldingState::ClosedOnTime,
                        Some(_) => HoldingState::ClosedLate,
                    },
                })
            }
        };

        returns.sort_unstable();
        returns.dedup();
        Some(Contribution {
            month: Month::containing(created.at.timestamp(), &rules.zone),
            channel: created.data.channel,
            board: created.data.board,
            category: name(created.data.category),
            request_kind: created.data.request_kind,
            closed: closed.is_some(),
            holding,
            transfers_in,
            transfers_out,
            returns,
            accepted,
            returned,
            extended,
            reopened,
            rating: rating.zip(last_closer.flatten()).map(|(r, d)| (name(d), r)),
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
    /// Each (sender, receiver) pair, once, of the transfers that sent the case back to a
    /// department that had held it before: buck-passing.
    pub returns: Vec<(&'a str, &'a str)>,
    /// One entry per assignment signed for: the department, and whether it signed in time.
    pub accepted: Vec<(&'a str, bool)>,
    /// One entry per assignment sent back to dispatch: the department that sent it.
    pub returned: Vec<&'a str>,
    /// One entry per extension: the department granted it.
    pub extended: Vec<&'a str>,
    /// One entry per reopen: the department the case went back to.
    pub reopened: Vec<&'a str>,
    /// The case's latest rating, with the department that held it at its last close.
    pub rating: Option<(&'a str, Rating)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding<'a> {
    pub department: &'a str,
    pub due: Timestamp,
    /// The year the calendar lacked when `due` was counted by weekends alone
    /// (`calendar::Deadline`): the case's figures may change once it is published.
    pub provisional: Option<i16>,
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
