//! The input contract, versions 1 and 2: decoding a Kafka message's bytes into a case event.
//! Version 2 only adds event types (`accepted`, `returned`, `extended`, `reopened`, `rated`):
//! every version 1 message decodes as before.
//!
//! Decoding is pure and never echoes the payload: upstream messages carry personal data
//! (names, phones, addresses, content), so a rejection names the field and the kind of
//! problem, never a value.

use std::borrow::Cow;

use compact_str::CompactString;
use std::fmt;

use jiff::{Timestamp, ToSpan};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::province::CityCode;

/// Where a case came from. The codes are the contract's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Hotline,
    ProvincialPlatform,
    StateCouncilInspection,
    GovWebsite,
    GovernorMailbox,
    MayorMailbox,
    LeaderBoard,
}

impl Channel {
    pub(crate) const ALL: [Channel; 7] = [
        Channel::Hotline,
        Channel::ProvincialPlatform,
        Channel::StateCouncilInspection,
        Channel::GovWebsite,
        Channel::GovernorMailbox,
        Channel::MayorMailbox,
        Channel::LeaderBoard,
    ];
    pub fn code(self) -> &'static str {
        match self {
            Channel::Hotline => "hotline",
            Channel::ProvincialPlatform => "provincial_platform",
            Channel::StateCouncilInspection => "state_council_inspection",
            Channel::GovWebsite => "gov_website",
            Channel::GovernorMailbox => "governor_mailbox",
            Channel::MayorMailbox => "mayor_mailbox",
            Channel::LeaderBoard => "leader_board",
        }
    }
}

/// The section of the People's Daily leader message board a message was left on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Board {
    PartySecretary,
    Mayor,
}

impl Board {
    pub(crate) const ALL: [Board; 2] = [Board::PartySecretary, Board::Mayor];
    pub fn code(self) -> &'static str {
        match self {
            Board::PartySecretary => "party_secretary",
            Board::Mayor => "mayor",
        }
    }
}

/// 求助、投诉、举报、咨询、建议.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Help,
    Complaint,
    Report,
    Consultation,
    Suggestion,
}

impl RequestKind {
    pub(crate) const ALL: [RequestKind; 5] = [
        RequestKind::Help,
        RequestKind::Complaint,
        RequestKind::Report,
        RequestKind::Consultation,
        RequestKind::Suggestion,
    ];
    pub fn code(self) -> &'static str {
        match self {
            RequestKind::Help => "help",
            RequestKind::Complaint => "complaint",
            RequestKind::Report => "report",
            RequestKind::Consultation => "consultation",
            RequestKind::Suggestion => "suggestion",
        }
    }
}

/// A call-back's result (回访评价).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    Satisfied,
    BasicallySatisfied,
    Dissatisfied,
    /// The citizen could not be reached: counted, but in no rate.
    Unreachable,
}

impl Rating {
    pub(crate) const ALL: [Rating; 4] =
        [Rating::Satisfied, Rating::BasicallySatisfied, Rating::Dissatisfied, Rating::Unreachable];
    pub fn code(self) -> &'static str {
        match self {
            Rating::Satisfied => "satisfied",
            Rating::BasicallySatisfied => "basically_satisfied",
            Rating::Dissatisfied => "dissatisfied",
            Rating::Unreachable => "unreachable",
        }
    }
}

/// A department or category code as an event carries it: its checked text (1-64 letters,
/// digits, `_`, `-`, `.` or `:`), inline up to 24 bytes. A ledger keeps it as a `Code`.
pub type CodeText = compact_str::CompactString;

/// The one case id the changelog keeps for itself (`records::ChangelogKey::Progress`).
pub(crate) const RESERVED_CASE_ID: &str = "#watermark";

pub(crate) fn from_code<T: Copy>(all: &[T], code: impl Fn(T) -> &'static str, s: &str) -> Option<T> {
    all.iter().copied().find(|v| code(*v) == s)
}

/// A validated case event, free of personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseEvent {
    pub event_id: CompactString,
    pub case_id: CompactString,
    /// The city the event named; without one, the deployment's default city's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<CityCode>,
    pub occurred_at: Timestamp,
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    Created(Created),
    Transferred(Transferred),
    Closed,
    /// The department signs for the case it was assigned (签收).
    Accepted {
        department: CodeText,
    },
    /// The department sends the case back to dispatch as not its own (退单); `reason` is
    /// checked as a code and not kept.
    Returned {
        department: CodeText,
    },
    /// An approved extension (延期): the current assignment is due at `due_at`.
    Extended {
        department: CodeText,
        due_at: Timestamp,
    },
    /// The call-back found the case unresolved (重办): a new assignment to `department`.
    Reopened {
        department: CodeText,
        due_at: Option<Timestamp>,
    },
    /// The call-back's result (回访评价).
    Rated {
        result: Rating,
    },
}

impl Change {
    /// Every `type_code`, so metrics can start each at zero.
    pub(crate) const TYPES: [&'static str; 8] =
        ["created", "transferred", "closed", "accepted", "returned", "extended", "reopened", "rated"];

    pub(crate) fn type_code(&self) -> &'static str {
        match self {
            Change::Created(_) => "created",
            Change::Transferred(_) => "transferred",
            Change::Closed => "closed",
            Change::Accepted { .. } => "accepted",
            Change::Returned { .. } => "returned",
            Change::Extended { .. } => "extended",
            Change::Reopened { .. } => "reopened",
            Change::Rated { .. } => "rated",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub channel: Channel,
    pub category: CodeText,
    pub board: Option<Board>,
    pub request_kind: Option<RequestKind>,
    #[serde(default)]
    pub department: Option<CodeText>,
    pub due_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transferred {
    pub to_department: CodeText,
    #[serde(default)]
    pub from_department: Option<CodeText>,
    pub due_at: Option<Timestamp>,
}

/// Why a message was not counted. `kind()` is a bounded metric label; `Display` is the
/// dead-letter reason and names fields, never their values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("message is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("message is empty")]
    Empty,
    #[error("message is not valid UTF-8")]
    InvalidUtf8,
    #[error("message is not valid JSON (line {line}, column {column})")]
    InvalidJson { line: usize, column: usize },
    #[error("message is not a JSON object")]
    NotAnObject,
    #[error("required field `{0}` is missing")]
    MissingField(&'static str),
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    #[error("field `{0}` is not an RFC 3339 timestamp with an offset")]
    BadTimestamp(&'static str),
    #[error("field `{0}` is outside the accepted time range")]
    TimestampOutOfRange(&'static str),
    #[error("field `{0}` is not a valid code (1-64 letters, digits, '_', '-', '.', ':')")]
    InvalidCode(&'static str),
    #[error("field `city` is not a city's administrative division code (six digits, the first not zero)")]
    InvalidCity,
    #[error("field `city` names a city this deployment does not count")]
    UnknownCity,
    #[error("unknown event type")]
    UnknownType,
    #[error("unknown channel")]
    UnknownChannel,
    #[error("unknown board")]
    UnknownBoard,
    #[error("unknown request kind")]
    UnknownRequestKind,
    #[error("unknown rating `result`")]
    UnknownResult,
    #[error("a different `created` event was already applied to this case")]
    ConflictingCreated,
    #[error("the event belongs to a month older than the retention, whose cases are no longer held")]
    MonthEvicted,
    #[error("case id `#watermark` is reserved")]
    ReservedCaseId,
    #[error("the case's `created` event never arrived within the retention: the case was evicted uncounted")]
    NeverCreated,
}

impl Rejection {
    /// Every `kind()`, so metrics can start each at zero.
    pub(crate) const KINDS: &'static [&'static str] = &[
        "too_large",
        "empty",
        "invalid_utf8",
        "invalid_json",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "bad_timestamp",
        "timestamp_out_of_range",
        "invalid_code",
        "unknown_city",
        "unknown_type",
        "unknown_channel",
        "unknown_board",
        "unknown_request_kind",
        "unknown_result",
        "conflicting_created",
        "month_evicted",
        "reserved_case_id",
        "never_created",
    ];

    /// A low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Empty => "empty",
            Rejection::InvalidUtf8 => "invalid_utf8",
            Rejection::InvalidJson { .. } => "invalid_json",
            Rejection::NotAnObject => "not_an_object",
            Rejection::MissingField(_) => "missing_field",
            Rejection::WrongType(_) => "wrong_type",
            Rejection::BadTimestamp(_) => "bad_timestamp",
            Rejection::TimestampOutOfRange(_) => "timestamp_out_of_range",
            Rejection::InvalidCode(_) | Rejection::InvalidCity => "invalid_code",
            Rejection::UnknownCity => "unknown_city",
            Rejection::UnknownType => "unknown_type",
            Rejection::UnknownChannel => "unknown_channel",
            Rejection::UnknownBoard => "unknown_board",
            Rejection::UnknownRequestKind => "unknown_request_kind",
            Rejection::UnknownResult => "unknown_result",
            Rejection::ConflictingCreated => "conflicting_created",
            Rejection::MonthEvicted => "month_evicted",
            Rejection::ReservedCaseId => "reserved_case_id",
            Rejection::NeverCreated => "never_created",
        }
    }
}

/// Limits applied while decoding.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub max_message_bytes: usize,
    /// Events may not claim to have happened later than this (wall clock plus allowed skew).
    pub latest_occurred_at: Timestamp,
}

/// The earliest `occurred_at` accepted: the 12345 hotlines date from the 2000s.
fn earliest_accepted() -> Timestamp {
    Timestamp::from_second(946_684_800).expect("2000-01-01T00:00:00Z") // 2000-01-01
}

/// Deadlines further out than this are data errors, not deadlines.
fn latest_due(occurred_at: Timestamp) -> Timestamp {
    occurred_at.checked_add(24 * 366 * 5_i64.hours()).unwrap_or(occurred_at)
}

/// `decode`, checked against serde_json's own reading of `payload` as a JSON tree: what is not
/// JSON, or not an object, is never an event, and neither is valid JSON refused as invalid nor
/// an object as none. Panics when they disagree: the oracle of the fuzz target `event_decoder`
/// and of the seed test (`tests/fuzz_seeds.rs`).
#[doc(hidden)]
pub fn decode_agreeing_with_json(payload: &[u8], limits: &DecodeLimits) -> Result<CaseEvent, Rejection> {
    let decoded = decode(payload, limits);
    let tree = serde_json::from_slice::<serde_json::Value>(payload);
    match (&decoded, &tree) {
        (Ok(_), Ok(serde_json::Value::Object(_))) => {}
        (Ok(event), _) => panic!("decoded {event} from bytes that are not a JSON object: {tree:?}"),
        (Err(Rejection::InvalidJson { .. }), Ok(_)) => panic!("valid JSON rejected as invalid"),
        (Err(Rejection::NotAnObject), Ok(serde_json::Value::Object(_))) => panic!("an object rejected as none"),
        _ => {}
    }
    decoded
}

pub fn decode(payload: &[u8], limits: &DecodeLimits) -> Result<CaseEvent, Rejection> {
    if payload.len() > limits.max_message_bytes {
        return Err(Rejection::TooLarge { size: payload.len(), limit: limits.max_message_bytes });
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::Empty);
    }
    let text = std::str::from_utf8(payload).map_err(|_| Rejection::InvalidUtf8)?;
    let invalid = |e: serde_json::Error| Rejection::InvalidJson { line: e.line(), column: e.column() };
    let fields: Fields<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        // Not an object, or not JSON at all past its first character (nesting deeper than
        // serde_json's limit of 128 counts as not JSON, as it does within an object).
        serde_json::error::Category::Data => {
            serde_json::from_str::<serde_json::Value>(text).map_or_else(invalid, |_| Rejection::NotAnObject)
        }
        _ => invalid(e),
    })?;

    let event_id = fields.id("event_id")?;
    let case_id = fields.id("case_id")?;
    let city = match fields.optional_str("city")? {
        None => None,
        Some(c) => Some(c.parse().map_err(|_| Rejection::InvalidCity)?),
    };
    let type_ = fields.required_str("type")?;
    let occurred_at = fields.required_timestamp("occurred_at")?;
    if occurred_at < earliest_accepted() || occurred_at > limits.latest_occurred_at {
        return Err(Rejection::TimestampOutOfRange("occurred_at"));
    }
    let due_at = match fields.optional_timestamp("due_at")? {
        Some(due) if due > latest_due(occurred_at) || due < earliest_accepted() => {
            return Err(Rejection::TimestampOutOfRange("due_at"));
        }
        due => due,
    };

    let change = match type_ {
        "created" => {
            let channel = from_code(&Channel::ALL, Channel::code, fields.required_str("channel")?)
                .ok_or(Rejection::UnknownChannel)?;
            let board = match fields.optional_str("board")? {
                None => None,
                Some(b) => Some(from_code(&Board::ALL, Board::code, b).ok_or(Rejection::UnknownBoard)?),
            };
            let request_kind = match fields.optional_str("request_kind")? {
                None => None,
                Some(k) => {
                    Some(from_code(&RequestKind::ALL, RequestKind::code, k).ok_or(Rejection::UnknownRequestKind)?)
                }
            };
            Change::Created(Created {
                channel,
                category: fields.code("category")?,
                board,
                request_kind,
                department: fields.optional_code("department")?,
                due_at,
            })
        }
        "transferred" => Change::Transferred(Transferred {
            to_department: fields.code("to_department")?,
            from_department: fields.optional_code("from_department")?,
            due_at,
        }),
        "closed" => Change::Closed,
        "accepted" => Change::Accepted { department: fields.code("department")? },
        "returned" => {
            // Checked as a code, but not kept: no figure needs it.
            if fields.optional_str("reason")?.is_some_and(|r| !is_code(r)) {
                return Err(Rejection::InvalidCode("reason"));
            }
            Change::Returned { department: fields.code("department")? }
        }
        "extended" => Change::Extended {
            department: fields.code("department")?,
            due_at: due_at.ok_or(Rejection::MissingField("due_at"))?,
        },
        "reopened" => Change::Reopened { department: fields.code("department")?, due_at },
        "rated" => Change::Rated {
            result: from_code(&Rating::ALL, Rating::code, fields.required_str("result")?)
                .ok_or(Rejection::UnknownResult)?,
        },
        _ => return Err(Rejection::UnknownType),
    };
    Ok(CaseEvent { event_id, case_id, city, occurred_at, change })
}

/// The fields of the contract that an event's object may carry.
const KNOWN: [&str; 15] = [
    "event_id",
    "case_id",
    "city",
    "type",
    "occurred_at",
    "due_at",
    "channel",
    "board",
    "request_kind",
    "category",
    "department",
    "to_department",
    "from_department",
    "reason",
    "result",
];

/// An event's known fields, their strings borrowed from the message where no escape
/// prevents it; every other field (personal data among them) is skipped unread. A field
/// given twice is taken as last given, as a JSON object reads.
#[derive(Default)]
struct Fields<'a>([Option<Field<'a>>; KNOWN.len()]);

/// A known field's value: a string, null, or anything else (of the wrong type).
enum Field<'a> {
    Null,
    Str(Cow<'a, str>),
    Other,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    match KNOWN.iter().position(|k| *k == key) {
                        Some(i) => fields.0[i] = Some(map.next_value()?),
                        None => {
                            map.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(Object)
    }
}

/// A key, borrowed where it has no escape.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(AnyValue).and_then(|field| match field {
            Field::Str(s) => Ok(Text(s)),
            _ => Err(de::Error::custom("a key that is not a string")),
        })
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyValue)
    }
}

/// A value read and dropped: read as a JSON tree is (strings checked, numbers in range,
/// nesting within serde_json's limit of 128), so a message is valid JSON or not whatever
/// fields this build knows, but nothing of it is kept.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyValue).map(|_| Skip)
    }
}

/// Reads any value, keeping only a string (borrowed where it has no escape).
struct AnyValue;

impl<'de> Visitor<'de> for AnyValue {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }
    fn visit_none<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Field<'de>, E> {
        Ok(Field::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Field::Other)
    }
}

impl Fields<'_> {
    fn optional_str(&self, name: &'static str) -> Result<Option<&str>, Rejection> {
        match KNOWN.iter().position(|k| *k == name).and_then(|i| self.0[i].as_ref()) {
            None | Some(Field::Null) => Ok(None),
            Some(Field::Str(s)) => Ok(Some(s)),
            Some(Field::Other) => Err(Rejection::WrongType(name)),
        }
    }

    fn required_str(&self, name: &'static str) -> Result<&str, Rejection> {
        self.optional_str(name)?.ok_or(Rejection::MissingField(name))
    }

    /// Event and case ids: any non-empty string up to 128 bytes without control characters;
    /// a case id is not `RESERVED_CASE_ID`, the changelog's key for a partition's progress.
    fn id(&self, name: &'static str) -> Result<CompactString, Rejection> {
        let s = self.required_str(name)?;
        if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
            return Err(Rejection::InvalidCode(name));
        }
        if name == "case_id" && s == RESERVED_CASE_ID {
            return Err(Rejection::ReservedCaseId);
        }
        Ok(s.into())
    }

    fn optional_code(&self, name: &'static str) -> Result<Option<CodeText>, Rejection> {
        match self.optional_str(name)? {
            None => Ok(None),
            Some(s) if is_code(s) => Ok(Some(s.into())),
            Some(_) => Err(Rejection::InvalidCode(name)),
        }
    }

    fn code(&self, name: &'static str) -> Result<CodeText, Rejection> {
        self.optional_code(name)?.ok_or(Rejection::MissingField(name))
    }

    fn optional_timestamp(&self, name: &'static str) -> Result<Option<Timestamp>, Rejection> {
        match self.optional_str(name)? {
            None => Ok(None),
            Some(s) => parse_rfc3339(s).map(Some).ok_or(Rejection::BadTimestamp(name)),
        }
    }

    fn required_timestamp(&self, name: &'static str) -> Result<Timestamp, Rejection> {
        self.optional_timestamp(name)?.ok_or(Rejection::MissingField(name))
    }
}

/// Codes (departments, categories) become metric labels and snapshot keys, so they are
/// restricted to a small, printable alphabet.
fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// RFC 3339 requires a date, a `T` (or space), a time and an offset (`Z` or `±hh:mm`).
fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    // jiff's Timestamp parser already insists on an offset; it also accepts a bracketed
    // time-zone annotation, which RFC 3339 does not have.
    if s.contains('[') {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for CaseEvent {
    /// Events print as ids and codes only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} of case {}", self.change.type_code(), self.event_id, self.case_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DecodeLimits {
        DecodeLimits { max_message_bytes: 64 * 1024, latest_occurred_at: "2030-01-01T00:00:00Z".parse().unwrap() }
    }

    fn decode_json(v: serde_json::Value) -> Result<CaseEvent, Rejection> {
        decode(v.to_string().as_bytes(), &limits())
    }

    fn created() -> serde_json::Value {
        serde_json::json!({
            "event_id": "e1", "case_id": "c1", "type": "created",
            "occurred_at": "2022-04-03T09:15:00+08:00",
            "channel": "leader_board", "board": "mayor", "category": "epidemic",
            "request_kind": "help", "department": "tiexi", "due_at": "2022-04-10T09:15:00+08:00",
            "caller_name": "张三", "caller_phone": "13800000000", "content": "私人信息"
        })
    }

    #[test]
    fn a_full_created_event_decodes_and_drops_personal_fields() {
        let event = decode_json(created()).unwrap();
        assert_eq!(event.case_id, "c1");
        assert_eq!(event.occurred_at.to_string(), "2022-04-03T01:15:00Z");
        let Change::Created(c) = &event.change else { panic!() };
        assert_eq!(c.channel, Channel::LeaderBoard);
        assert_eq!(c.board, Some(Board::Mayor));
        assert_eq!(c.request_kind, Some(RequestKind::Help));
        assert_eq!(c.department.as_deref(), Some("tiexi"));
        let serialized = serde_json::to_string(&event).unwrap();
        assert!(!serialized.contains("张三") && !serialized.contains("13800000000"));
    }

    #[test]
    fn an_event_may_name_its_city() {
        assert_eq!(decode_json(created()).unwrap().city, None);
        let mut named = created();
        named["city"] = "222400".into();
        assert_eq!(decode_json(named.clone()).unwrap().city, Some("222400".parse().unwrap()));
        for (bad, kind) in
            [("22240".into(), "invalid_code"), ("延边".into(), "invalid_code"), (222400.into(), "wrong_type")]
        {
            named["city"] = bad;
            let rejection = decode_json(named.clone()).unwrap_err();
            assert_eq!(rejection.kind(), kind);
            assert!(!rejection.to_string().contains("延边"), "{rejection}");
        }
        named["city"] = serde_json::Value::Null;
        assert_eq!(decode_json(named).unwrap().city, None);
    }

    #[test]
    fn transferred_and_closed_decode() {
        let t = decode_json(serde_json::json!({"event_id":"e2","case_id":"c1","type":"transferred",
            "occurred_at":"2022-04-03T10:00:00Z","to_department":"tiedong"}))
        .unwrap();
        assert!(
            matches!(t.change, Change::Transferred(Transferred { ref to_department, from_department: None, due_at: None }) if &**to_department == "tiedong")
        );
        let c = decode_json(serde_json::json!({"event_id":"e3","case_id":"c1","type":"closed",
            "occurred_at":"2022-04-03T10:00:00.5Z"}))
        .unwrap();
        assert_eq!(c.change, Change::Closed);
    }

    #[test]
    fn fields_are_read_as_a_json_object_reads_them() {
        // Escaped keys and values, a field given twice (the last counts), other fields of any
        // shape skipped.
        let text = r#"{"event\u005fid":"e1","case_id":"c\u0031","type":"closed","type":"closed",
            "occurred_at":"2022-04-03T09:15:00+08:00","content":{"a":[1,{"b":null}],"c":"\"x\""},
            "caller_phone":13800000000,"category":["x"]}"#;
        let event = decode(text.as_bytes(), &limits()).unwrap();
        assert_eq!((event.event_id.as_str(), event.case_id.as_str()), ("e1", "c1"));
        assert_eq!(event.change, Change::Closed);
        let twice = r#"{"event_id":"e1","case_id":"c1","type":"created","occurred_at":"2022-04-03T09:15:00+08:00",
            "channel":"hotline","category":7,"category":"water"}"#;
        let Change::Created(created) = decode(twice.as_bytes(), &limits()).unwrap().change else { panic!() };
        assert_eq!(created.category.as_str(), "water");
        let wrong = r#"{"event_id":"e1","case_id":"c1","type":"created","occurred_at":"2022-04-03T09:15:00+08:00",
            "channel":"hotline","category":"water","category":{"x":1}}"#;
        assert_eq!(decode(wrong.as_bytes(), &limits()), Err(Rejection::WrongType("category")));
        // What is not JSON stays not JSON in a field this build does not read.
        let closed = r#"{"event_id":"e1","case_id":"c1","type":"closed","occurred_at":"2022-04-03T09:15:00+08:00""#;
        for other in [
            r#""content":"\ud83d""#.to_owned(),
            r#""n":1e400"#.to_owned(),
            format!(r#""deep":{}1{}"#, "[".repeat(200), "]".repeat(200)),
        ] {
            let text = format!("{closed},{other}}}");
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
            assert_eq!(decode(text.as_bytes(), &limits()).map_err(|r| r.kind()), Err("invalid_json"), "{other}");
        }
        let fine = format!("{closed},\"deep\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert!(decode(fine.as_bytes(), &limits()).is_ok());
    }

    #[test]
    fn each_bad_input_gets_its_reason() {
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "empty"),
            (b"  \n".to_vec(), "empty"),
            (vec![0xff, 0xfe, b'{'], "invalid_utf8"),
            (b"{\"event_id\":".to_vec(), "invalid_json"),
            (b"[1,2]".to_vec(), "not_an_object"),
            (b"\"created\"".to_vec(), "not_an_object"),
            ("[".repeat(10_000).into_bytes(), "invalid_json"),
            (vec![b' '; 70 * 1024], "too_large"),
        ];
        for field in ["event_id", "case_id", "type", "occurred_at", "channel", "category"] {
            let mut v = created();
            v.as_object_mut().unwrap().remove(field);
            cases.push((v.to_string().into_bytes(), "missing_field"));
        }
        let mut with = |field: &str, value: serde_json::Value, reason: &'static str| {
            let mut v = created();
            v[field] = value;
            cases.push((v.to_string().into_bytes(), reason));
        };
        with("case_id", serde_json::json!(42), "wrong_type");
        with("occurred_at", serde_json::json!(1650000000), "wrong_type");
        with("occurred_at", serde_json::json!("2022-04-03T09:15:00"), "bad_timestamp");
        with("occurred_at", serde_json::json!("2022-02-30T09:15:00Z"), "bad_timestamp");
        with("occurred_at", serde_json::json!("9999-04-03T09:15:00Z"), "timestamp_out_of_range");
        with("occurred_at", serde_json::json!("1970-01-01T00:00:00Z"), "timestamp_out_of_range");
        with("due_at", serde_json::json!("yesterday"), "bad_timestamp");
        with("type", serde_json::json!("escalated"), "unknown_type");
        with("channel", serde_json::json!("fax"), "unknown_channel");
        with("board", serde_json::json!("governor"), "unknown_board");
        with("request_kind", serde_json::json!("praise"), "unknown_request_kind");
        with("department", serde_json::json!("铁西区 13800000000"), "invalid_code");
        with("case_id", serde_json::json!(""), "invalid_code");
        with("case_id", serde_json::json!("#watermark"), "reserved_case_id");
        cases.push((
            serde_json::json!({"event_id":"e","case_id":"c","type":"transferred",
                "occurred_at":"2022-04-03T10:00:00Z"})
            .to_string()
            .into_bytes(),
            "missing_field",
        ));
        // Contract v2's bad inputs.
        let v2 = |fields: serde_json::Value| {
            let mut v = serde_json::json!({"event_id":"e","case_id":"c","occurred_at":"2022-04-03T10:00:00Z"});
            v.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
            v.to_string().into_bytes()
        };
        cases.extend([
            (v2(serde_json::json!({"type":"rated","result":"delighted"})), "unknown_result"),
            (v2(serde_json::json!({"type":"rated"})), "missing_field"),
            (v2(serde_json::json!({"type":"extended","department":"tiexi"})), "missing_field"),
            (v2(serde_json::json!({"type":"accepted"})), "missing_field"),
            (
                v2(serde_json::json!({"type":"returned","department":"tiexi","reason":"不归我管 13800000000"})),
                "invalid_code",
            ),
            (v2(serde_json::json!({"type":"reopened","department":"tiexi","due_at":"soon"})), "bad_timestamp"),
        ]);
        for (payload, reason) in cases {
            let got = decode(&payload, &limits()).expect_err(reason);
            assert_eq!(got.kind(), reason, "{got}");
        }
    }

    #[test]
    fn contract_v2_events_decode() {
        let event = |fields: serde_json::Value| {
            let mut v = serde_json::json!({"event_id":"e","case_id":"c","occurred_at":"2022-04-03T10:00:00Z",
                "caller_phone":"13800000000"});
            v.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
            decode_json(v).unwrap().change
        };
        let due: Timestamp = "2022-04-20T00:00:00Z".parse().unwrap();
        assert_eq!(
            event(serde_json::json!({"type":"accepted","department":"tiexi"})),
            Change::Accepted { department: "tiexi".into() }
        );
        assert_eq!(
            event(serde_json::json!({"type":"returned","department":"tiexi","reason":"not_ours"})),
            Change::Returned { department: "tiexi".into() }
        );
        assert_eq!(
            event(serde_json::json!({"type":"extended","department":"tiexi","due_at":"2022-04-20T00:00:00Z"})),
            Change::Extended { department: "tiexi".into(), due_at: due }
        );
        assert_eq!(
            event(serde_json::json!({"type":"reopened","department":"tiexi"})),
            Change::Reopened { department: "tiexi".into(), due_at: None }
        );
        for (code, result) in [
            ("satisfied", Rating::Satisfied),
            ("basically_satisfied", Rating::BasicallySatisfied),
            ("dissatisfied", Rating::Dissatisfied),
            ("unreachable", Rating::Unreachable),
        ] {
            assert_eq!(event(serde_json::json!({"type":"rated","result":code})), Change::Rated { result });
        }
    }

    #[test]
    fn any_number_of_distinct_codes_decode() {
        // Past the 65,536 codes a process-wide table once held: decoding keeps no table.
        for n in 0..70_000 {
            let event = decode_json(serde_json::json!({"event_id":format!("e{n}"),"case_id":"c1","type":"created",
                "occurred_at":"2022-06-03T10:00:00Z","channel":"hotline","category":format!("junk_category_{n}"),
                "department":format!("junk_department_{n}")}))
            .expect("a valid event");
            let Change::Created(created) = event.change else { unreachable!("a created") };
            assert_eq!(created.category, format!("junk_category_{n}"));
        }
    }

    #[test]
    fn rejections_never_echo_values() {
        let mut v = created();
        v["department"] = serde_json::json!("13800000000 张三");
        let message = decode_json(v).unwrap_err().to_string();
        assert!(!message.contains("13800000000") && !message.contains("张三"), "{message}");
    }
}
