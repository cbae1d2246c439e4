//! The binary records: postcard, a compact binary serde format, over these mirrors of the
//! domain types. Routed events are version 2 (contract v2's event types are variants added at
//! the end); case records are version 3 (`Case`) while they hold only contract v1's facts,
//! and version 4 (`Case` followed by the `later` facts) once they hold more, so that records
//! of v1 streams stay readable by builds before v2; this build still reads their version 2
//! (`CaseV2`) and JSON (`JsonCase`). Strings are borrowed
//! from the record while it is read; codes (channel, board, request kind, department,
//! category) go as their text, so the domain's enums may grow or reorder and a `Code`'s
//! number never leaves the process. Postcard writes neither names nor lengths of structs,
//! only values in order: any change to these types is a new version byte (a field added
//! anywhere shifts what follows it). Only a variant added at the end of an enum reads as
//! before, and an older build refuses it (and stops the partition).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::case::{Assignment, CaseRecord, EventKey, Fact as DomainFact, Intake, Nanos, Step};
use crate::domain::code::{Code, Codes};
use crate::domain::event::{self, Board, CaseEvent, Change as DomainChange, Channel, CodeText, Rating, RequestKind};
use crate::domain::routing::{Routed as DomainRouted, RoutedEvent as DomainRoutedEvent, Source};

/// A timestamp: seconds and nanoseconds since the Unix epoch.
#[derive(Serialize, Deserialize)]
struct Time(i64, i32);

impl From<Timestamp> for Time {
    fn from(t: Timestamp) -> Time {
        Time(t.as_second(), t.subsec_nanosecond())
    }
}

impl Time {
    fn read(self) -> Result<Timestamp, String> {
        Timestamp::new(self.0, self.1).map_err(|e| format!("a timestamp out of range: {e}"))
    }
}

fn read_time(t: Option<Time>) -> Result<Option<Timestamp>, String> {
    t.map(Time::read).transpose()
}

fn read_enum<T: Copy>(all: &[T], code: impl Fn(T) -> &'static str, what: &str, text: &str) -> Result<T, String> {
    event::from_code(all, code, text).ok_or_else(|| format!("unknown {what} code {text:?}"))
}

fn read_channel(text: &str) -> Result<Channel, String> {
    read_enum(&Channel::ALL, Channel::code, "channel", text)
}

fn read_board(text: Option<&str>) -> Result<Option<Board>, String> {
    text.map(|b| read_enum(&Board::ALL, Board::code, "board", b)).transpose()
}

fn read_rating(text: &str) -> Result<Rating, String> {
    read_enum(&Rating::ALL, Rating::code, "rating", text)
}

fn read_request_kind(text: Option<&str>) -> Result<Option<RequestKind>, String> {
    text.map(|k| read_enum(&RequestKind::ALL, RequestKind::code, "request kind", k)).transpose()
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Routed<'a> {
    topic: &'a str,
    partition: i32,
    watermark: Option<Time>,
    idle: bool,
    #[serde(borrow)]
    event: Option<RoutedEvent<'a>>,
}

#[derive(Serialize, Deserialize)]
struct RoutedEvent<'a> {
    offset: i64,
    input_timestamp: Option<i64>,
    event_id: &'a str,
    case_id: &'a str,
    occurred_at: Time,
    #[serde(borrow)]
    change: Change<'a>,
}

#[derive(Serialize, Deserialize)]
enum Change<'a> {
    #[serde(borrow)]
    Created(Created<'a>),
    #[serde(borrow)]
    Transferred(Transferred<'a>),
    Closed,
    Accepted(&'a str),
    Returned(&'a str),
    Extended(&'a str, Time),
    Reopened(&'a str, Option<Time>),
    Rated(&'a str),
}

#[derive(Serialize, Deserialize)]
struct Created<'a> {
    channel: &'a str,
    category: &'a str,
    #[serde(borrow)]
    board: Option<&'a str>,
    #[serde(borrow)]
    request_kind: Option<&'a str>,
    #[serde(borrow)]
    department: Option<&'a str>,
    due_at: Option<Time>,
}

#[derive(Serialize, Deserialize)]
struct Transferred<'a> {
    to_department: &'a str,
    #[serde(borrow)]
    from_department: Option<&'a str>,
    due_at: Option<Time>,
}

impl<'a> Created<'a> {
    fn of(c: &'a event::Created) -> Created<'a> {
        Created {
            channel: c.channel.code(),
            category: &c.category,
            board: c.board.map(Board::code),
            request_kind: c.request_kind.map(RequestKind::code),
            department: c.department.as_deref(),
            due_at: c.due_at.map(Time::from),
        }
    }

    fn read(self) -> Result<event::Created, String> {
        Ok(event::Created {
            channel: read_channel(self.channel)?,
            category: CodeText::from(self.category),
            board: read_board(self.board)?,
            request_kind: read_request_kind(self.request_kind)?,
            department: self.department.map(CodeText::from),
            due_at: read_time(self.due_at)?,
        })
    }
}

impl<'a> Transferred<'a> {
    fn of(t: &'a event::Transferred) -> Transferred<'a> {
        Transferred {
            to_department: &t.to_department,
            from_department: t.from_department.as_deref(),
            due_at: t.due_at.map(Time::from),
        }
    }

    fn read(self) -> Result<event::Transferred, String> {
        Ok(event::Transferred {
            to_department: CodeText::from(self.to_department),
            from_department: self.from_department.map(CodeText::from),
            due_at: read_time(self.due_at)?,
        })
    }
}

impl<'a> Routed<'a> {
    pub fn of(r: &'a DomainRouted) -> Routed<'a> {
        Routed {
            topic: &r.source.topic,
            partition: r.source.partition,
            watermark: r.watermark.map(Time::from),
            idle: r.idle,
            event: r.event.as_ref().map(|e| RoutedEvent {
                offset: e.offset,
                input_timestamp: e.input_timestamp,
                event_id: &e.event.event_id,
                case_id: &e.event.case_id,
                occurred_at: e.event.occurred_at.into(),
                change: match &e.event.change {
                    DomainChange::Created(c) => Change::Created(Created::of(c)),
                    DomainChange::Transferred(t) => Change::Transferred(Transferred::of(t)),
                    DomainChange::Closed => Change::Closed,
                    DomainChange::Accepted { department } => Change::Accepted(department),
                    DomainChange::Returned { department } => Change::Returned(department),
                    DomainChange::Extended { department, due_at } => Change::Extended(department, (*due_at).into()),
                    DomainChange::Reopened { department, due_at } => {
                        Change::Reopened(department, due_at.map(Time::from))
                    }
                    DomainChange::Rated { result } => Change::Rated(result.code()),
                },
            }),
        }
    }

    pub fn read(self) -> Result<DomainRouted, String> {
        let event = match self.event {
            None => None,
            Some(e) => Some(DomainRoutedEvent {
                offset: e.offset,
                input_timestamp: e.input_timestamp,
                event: CaseEvent {
                    event_id: e.event_id.into(),
                    case_id: e.case_id.into(),
                    city: None,
                    occurred_at: e.occurred_at.read()?,
                    change: match e.change {
                        Change::Created(c) => DomainChange::Created(c.read()?),
                        Change::Transferred(t) => DomainChange::Transferred(t.read()?),
                        Change::Closed => DomainChange::Closed,
                        Change::Accepted(d) => DomainChange::Accepted { department: CodeText::from(d) },
                        Change::Returned(d) => DomainChange::Returned { department: CodeText::from(d) },
                        Change::Extended(d, due) => {
                            DomainChange::Extended { department: CodeText::from(d), due_at: due.read()? }
                        }
                        Change::Reopened(d, due) => {
                            DomainChange::Reopened { department: CodeText::from(d), due_at: read_time(due)? }
                        }
                        Change::Rated(r) => DomainChange::Rated { result: read_rating(r)? },
                    },
                },
            }),
        };
        Ok(DomainRouted {
            source: Source { topic: self.topic.into(), partition: self.partition },
            watermark: read_time(self.watermark)?,
            idle: self.idle,
            event,
        })
    }
}

/// A case record, version 3: what the domain's record holds, event ids as their hashes.
/// Version 4 is the same followed by `Later`: the facts contract v1 does not have.
#[derive(Serialize, Deserialize)]
pub(crate) struct Case<'a> {
    #[serde(borrow)]
    created: Option<CompactFact<CompactIntake<'a>>>,
    #[serde(borrow)]
    transfers: Vec<CompactFact<CompactAssignment<'a>>>,
    closed: Option<CompactFact<()>>,
}

/// The facts of a case record of version 4 after those of version 3.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Later<'a>(#[serde(borrow)] Vec<CompactFact<CompactStep<'a>>>);

impl Later<'_> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
enum CompactStep<'a> {
    Closed,
    Accepted(&'a str),
    Returned(&'a str),
    Extended(&'a str, i64),
    Reopened(&'a str, Option<i64>),
    Rated(&'a str),
}

#[derive(Serialize, Deserialize)]
struct CompactFact<T> {
    /// A hash takes all 64 bits: fixed width is shorter than a varint.
    #[serde(with = "postcard::fixint::le")]
    event: u64,
    at: i64,
    data: T,
}

#[derive(Serialize, Deserialize)]
struct CompactIntake<'a> {
    channel: &'a str,
    #[serde(borrow)]
    board: Option<&'a str>,
    #[serde(borrow)]
    request_kind: Option<&'a str>,
    category: &'a str,
    #[serde(borrow)]
    department: Option<&'a str>,
    due: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct CompactAssignment<'a> {
    to: &'a str,
    #[serde(borrow)]
    from: Option<&'a str>,
    due: Option<i64>,
}

fn read_nanos(n: i64) -> Result<Nanos, String> {
    Nanos::from_i64(n).ok_or_else(|| format!("a time before 1970: {n} ns"))
}

fn fact<T: Copy, W>(f: &DomainFact<T>, data: impl FnOnce(T) -> W) -> CompactFact<W> {
    CompactFact { event: f.event.0, at: f.at.get(), data: data(f.data) }
}

fn read_fact<T, W>(f: CompactFact<W>, data: impl FnOnce(W) -> Result<T, String>) -> Result<DomainFact<T>, String> {
    Ok(DomainFact { event: EventKey(f.event), at: read_nanos(f.at)?, data: data(f.data)? })
}

impl<'a> Case<'a> {
    /// The record's facts of contract v1, and those after them (empty for a v1 case), its
    /// codes as their text in `codes`.
    pub fn of(r: &CaseRecord, codes: &'a Codes) -> (Case<'a>, Later<'a>) {
        let name = |code: Code| codes.name(code);
        let mut transfers = Vec::new();
        let mut later = Vec::new();
        for step in &r.steps {
            let compact = match step.data {
                Step::Transferred(t) => {
                    transfers.push(fact(step, |_| CompactAssignment {
                        to: name(t.to),
                        from: t.from.map(name),
                        due: t.due.map(Nanos::get),
                    }));
                    continue;
                }
                Step::Closed => CompactStep::Closed,
                Step::Accepted(d) => CompactStep::Accepted(name(d)),
                Step::Returned(d) => CompactStep::Returned(name(d)),
                Step::Extended { department, due } => CompactStep::Extended(name(department), due.get()),
                Step::Reopened { department, due } => CompactStep::Reopened(name(department), due.map(Nanos::get)),
                Step::Rated(r) => CompactStep::Rated(r.code()),
            };
            later.push(fact(step, |_| compact));
        }
        let case = Case {
            created: r.created.as_ref().map(|f| {
                fact(f, |c: Intake| CompactIntake {
                    channel: c.channel.code(),
                    board: c.board.map(Board::code),
                    request_kind: c.request_kind.map(RequestKind::code),
                    category: name(c.category),
                    department: c.department.map(name),
                    due: c.due.map(Nanos::get),
                })
            }),
            transfers,
            closed: r.closed.as_ref().map(|f| fact(f, |()| ())),
        };
        (case, Later(later))
    }

    /// The record, its codes read into `codes`.
    pub fn read(self, later: Later<'_>, codes: &mut Codes) -> Result<CaseRecord, String> {
        let created = self
            .created
            .map(|f| {
                read_fact(f, |c| {
                    Ok(Intake {
                        channel: read_channel(c.channel)?,
                        board: read_board(c.board)?,
                        request_kind: read_request_kind(c.request_kind)?,
                        category: codes.intern(c.category),
                        department: c.department.map(|d| codes.intern(d)),
                        due: c.due.map(read_nanos).transpose()?,
                    })
                })
            })
            .transpose()?;
        let mut steps = self
            .transfers
            .into_iter()
            .map(|f| {
                read_fact(f, |t| {
                    Ok(Step::Transferred(Assignment {
                        to: codes.intern(t.to),
                        from: t.from.map(|d| codes.intern(d)),
                        due: t.due.map(read_nanos).transpose()?,
                    }))
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        for f in later.0 {
            steps.push(read_fact(f, |s| {
                Ok(match s {
                    CompactStep::Closed => Step::Closed,
                    CompactStep::Accepted(d) => Step::Accepted(codes.intern(d)),
                    CompactStep::Returned(d) => Step::Returned(codes.intern(d)),
                    CompactStep::Extended(d, due) => {
                        Step::Extended { department: codes.intern(d), due: read_nanos(due)? }
                    }
                    CompactStep::Reopened(d, due) => {
                        Step::Reopened { department: codes.intern(d), due: due.map(read_nanos).transpose()? }
                    }
                    CompactStep::Rated(r) => Step::Rated(read_rating(r)?),
                })
            })?);
        }
        let closed = self.closed.map(|f| read_fact(f, Ok)).transpose()?;
        Ok(record(created, steps, closed))
    }
}

/// A record with its steps in the domain's order, whatever order they were read in. (Of
/// two `closed` at one instant, a record of version 2 or before kept the one whose id sorts
/// first as text, where this build keeps the one whose hash does: the figures are the same.)
fn record(
    created: Option<DomainFact<Intake>>,
    mut steps: Vec<DomainFact<Step>>,
    closed: Option<DomainFact<()>>,
) -> CaseRecord {
    steps.sort_by_key(|t| (t.at, t.event));
    CaseRecord { created, steps: steps.into(), closed }
}

/// A case record, version 2: event ids as their text, which version 3 hashes.
#[derive(Serialize, Deserialize)]
pub(crate) struct CaseV2<'a> {
    #[serde(borrow)]
    created: Option<Fact<'a, Created<'a>>>,
    #[serde(borrow)]
    transfers: Vec<Fact<'a, Transferred<'a>>>,
    #[serde(borrow)]
    closed: Option<Fact<'a, ()>>,
}

#[derive(Serialize, Deserialize)]
struct Fact<'a, T> {
    event_id: &'a str,
    at: Time,
    data: T,
}

impl CaseV2<'_> {
    pub fn read(self, codes: &mut Codes) -> Result<CaseRecord, String> {
        fn fact<T, W>(f: Fact<'_, W>, data: impl FnOnce(W) -> Result<T, String>) -> Result<DomainFact<T>, String> {
            Ok(DomainFact { event: EventKey::of(f.event_id), at: f.at.read()?.into(), data: data(f.data)? })
        }
        Ok(record(
            self.created.map(|f| fact(f, |c| c.read().map(|c| Intake::of(&c, codes)))).transpose()?,
            self.transfers
                .into_iter()
                .map(|f| fact(f, |t| t.read().map(|t| Step::Transferred(Assignment::of(&t, codes)))))
                .collect::<Result<_, _>>()?,
            self.closed.map(|f| fact(f, Ok)).transpose()?,
        ))
    }
}

/// A case record in JSON, as builds before the version byte wrote it (version 0) and version
/// 1 did.
#[derive(Deserialize)]
pub(crate) struct JsonCase {
    created: Option<JsonFact<event::Created>>,
    transfers: Vec<JsonFact<event::Transferred>>,
    closed: Option<JsonFact<()>>,
}

#[derive(Deserialize)]
struct JsonFact<T> {
    event_id: String,
    at: Timestamp,
    #[serde(flatten)]
    data: T,
}

impl JsonCase {
    pub fn read(self, codes: &mut Codes) -> CaseRecord {
        fn fact<T, W>(f: JsonFact<W>, data: impl FnOnce(&W) -> T) -> DomainFact<T> {
            DomainFact { event: EventKey::of(&f.event_id), at: f.at.into(), data: data(&f.data) }
        }
        record(
            self.created.map(|f| fact(f, |c| Intake::of(c, codes))),
            self.transfers.into_iter().map(|f| fact(f, |t| Step::Transferred(Assignment::of(t, codes)))).collect(),
            self.closed.map(|f| fact(f, |()| ())),
        )
    }
}

#[cfg(test)]
impl<'a> CaseV2<'a> {
    /// A version 2 record as earlier builds wrote it, for tests of reading it.
    pub(crate) fn example(event_id: &'a str, at: Timestamp, category: &'a str) -> CaseV2<'a> {
        CaseV2 {
            created: Some(Fact {
                event_id,
                at: at.into(),
                data: Created {
                    channel: "hotline",
                    category,
                    board: None,
                    request_kind: None,
                    department: None,
                    due_at: None,
                },
            }),
            transfers: Vec::new(),
            closed: None,
        }
    }
}
