//! Version 2 of the records written once per event (routed events, case records): postcard, a
//! compact binary serde format, over these mirrors of the domain types. Strings are borrowed
//! from the record while it is read; codes (channel, board, request kind) go as their text, so
//! the domain's enums may grow or reorder. Postcard writes neither names nor lengths of
//! structs, only values in order: any change to these types is a new version byte (a field
//! added anywhere shifts what follows it). Only a variant added at the end of an enum reads as
//! before, and an older build refuses it (and stops the partition).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::case::{CaseRecord, Fact as DomainFact};
use crate::domain::event::{self, Board, CaseEvent, Change as DomainChange, Channel, RequestKind};
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

#[derive(Serialize, Deserialize)]
pub struct Routed<'a> {
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

#[derive(Serialize, Deserialize)]
pub struct Case<'a> {
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
        let code = |what: &str, c: &str| format!("unknown {what} code {c:?}");
        Ok(event::Created {
            channel: event::from_code(&Channel::ALL, Channel::code, self.channel)
                .ok_or_else(|| code("channel", self.channel))?,
            category: event::code(self.category),
            board: self
                .board
                .map(|b| event::from_code(&Board::ALL, Board::code, b).ok_or_else(|| code("board", b)))
                .transpose()?,
            request_kind: self
                .request_kind
                .map(|k| {
                    event::from_code(&RequestKind::ALL, RequestKind::code, k).ok_or_else(|| code("request kind", k))
                })
                .transpose()?,
            department: self.department.map(event::code),
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
            to_department: event::code(self.to_department),
            from_department: self.from_department.map(event::code),
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
                    event_id: e.event_id.to_owned(),
                    case_id: e.case_id.to_owned(),
                    occurred_at: e.occurred_at.read()?,
                    change: match e.change {
                        Change::Created(c) => DomainChange::Created(c.read()?),
                        Change::Transferred(t) => DomainChange::Transferred(t.read()?),
                        Change::Closed => DomainChange::Closed,
                    },
                },
            }),
        };
        Ok(DomainRouted {
            source: Source { topic: self.topic.to_owned(), partition: self.partition },
            watermark: read_time(self.watermark)?,
            idle: self.idle,
            event,
        })
    }
}

impl<'a> Case<'a> {
    pub fn of(r: &'a CaseRecord) -> Case<'a> {
        fn fact<'a, T, W>(f: &'a DomainFact<T>, data: impl FnOnce(&'a T) -> W) -> Fact<'a, W> {
            Fact { event_id: &f.event_id, at: f.at.into(), data: data(&f.data) }
        }
        Case {
            created: r.created.as_ref().map(|f| fact(f, Created::of)),
            transfers: r.transfers.iter().map(|f| fact(f, Transferred::of)).collect(),
            closed: r.closed.as_ref().map(|f| fact(f, |_| ())),
        }
    }

    pub fn read(self) -> Result<CaseRecord, String> {
        fn fact<T, W>(f: Fact<'_, W>, data: impl FnOnce(W) -> Result<T, String>) -> Result<DomainFact<T>, String> {
            Ok(DomainFact { event_id: f.event_id.to_owned(), at: f.at.read()?, data: data(f.data)? })
        }
        Ok(CaseRecord {
            created: self.created.map(|f| fact(f, Created::read)).transpose()?,
            transfers: self.transfers.into_iter().map(|f| fact(f, Transferred::read)).collect::<Result<_, _>>()?,
            closed: self.closed.map(|f| fact(f, Ok)).transpose()?,
        })
    }
}
