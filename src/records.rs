//! The records hotline writes for itself, in one place: their keys, their values and the
//! encoding of both.
//!
//! | topic | key | value |
//! |---|---|---|
//! | `case_events` | the case id; none for a marker | [`Routed`] |
//! | changelog | [`ChangelogKey::Case`]: the case id, after its city and `\x1f` unless the city is the default | [`CaseRecord`]; a tombstone when the case is gone |
//! | changelog | [`ChangelogKey::Progress`] | [`PartitionProgress`] |
//! | `partials` | [`PartialKey::Tally`] | [`Tally`]; a tombstone when the month is forgotten |
//! | `partials` | [`PartialKey::Watermark`] | [`Watermark`] |
//! | dead letters | the input's key | the input's payload, unchanged, with `dead_letter_headers` |
//!
//! Every value starts with a byte naming its format's version:
//! - version 3, case records: postcard over what the domain's record holds, event ids as their
//!   64-bit hashes (`wire::Case`);
//! - version 5, routed events naming a city (not the deployment's default): version 2's body
//!   followed by the city's code;
//! - version 2, routed events: postcard (`wire::Routed`); case records of earlier builds;
//! - version 1, the rest (progress, tallies, watermarks): JSON;
//! - version 0: values of earlier builds, JSON with no version byte (they start with `{`, `[`
//!   or `"`, never with a byte below 0x20).
//!
//! Every build writes each value in the newest version it has for it, and reads every version
//! it knows; another encoding is one more version here.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::case::CaseRecord;
use crate::domain::code::Codes;
use crate::domain::event::Rejection;
use crate::domain::figures::Tally;
use crate::domain::month::Month;
use crate::domain::partition::PartitionProgress;
use crate::domain::province::CityCode;
use crate::domain::routing::Routed;

mod wire;

const JSON: u8 = 1;
const BINARY: u8 = 2;
const COMPACT: u8 = 3;
/// Case records holding facts contract v1 does not have.
const COMPACT_V2: u8 = 4;
/// Routed events naming a city: version 2's body followed by the city's code.
const BINARY_CITY: u8 = 5;

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("record format version {0} is not one this build reads for this record")]
    Version(u8),
    #[error("a record of format version {version} does not decode: {detail}")]
    Malformed { version: u8, detail: String },
    #[error("the record has no value")]
    Empty,
    #[error("the record's key is not one this topic holds")]
    Key,
    #[error("the record is of city {0}, which the configuration does not list")]
    City(CityCode),
    #[error("the record names no city, as the default city's do, but the configuration has no province.default_city")]
    NoDefaultCity,
}

impl Unreadable {
    /// A low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Unreadable::Version(_) => "unknown_version",
            Unreadable::Malformed { .. } => "malformed",
            Unreadable::Empty => "empty",
            Unreadable::Key => "unknown_key",
            Unreadable::City(_) | Unreadable::NoDefaultCity => "unknown_city",
        }
    }
}

/// A value of an internal record: only these are encoded.
pub trait Value: Sized {
    /// The version this build writes the value in.
    const WRITES: u8;

    /// The version this value is written in: `WRITES`, unless an older version holds it.
    fn version(&self) -> u8 {
        Self::WRITES
    }

    /// Appends the value's body, in `version()`, to `out`.
    fn write(&self, out: &mut Vec<u8>);

    /// Reads a body of `version`; `None` for a version this type does not have.
    fn read(version: u8, body: &[u8]) -> Option<Result<Self, String>>;
}

/// A JSON value: version 1, and version 0 read the same.
macro_rules! json_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            const WRITES: u8 = JSON;
            fn write(&self, out: &mut Vec<u8>) {
                serde_json::to_writer(out, self).expect("internal records serialize");
            }
            fn read(version: u8, body: &[u8]) -> Option<Result<Self, String>> {
                (version <= JSON).then(|| json(body))
            }
        }
    )*};
}

json_value!(PartitionProgress, Tally, Watermark);

/// serde_json's own message may quote a value: only where and what kind of error.
fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()))
}

impl Value for Routed {
    const WRITES: u8 = BINARY_CITY;

    /// Version 2 unless the event names a city: events of the default city stay readable by
    /// builds before cities.
    fn version(&self) -> u8 {
        match self.event.as_ref().and_then(|e| e.event.city) {
            Some(_) => BINARY_CITY,
            None => BINARY,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let routed = wire::Routed::of(self);
        match self.event.as_ref().and_then(|e| e.event.city) {
            Some(city) => postcard::to_io(&(routed, city.get()), out),
            None => postcard::to_io(&routed, out),
        }
        .expect("routed records serialize");
    }

    fn read(version: u8, body: &[u8]) -> Option<Result<Routed, String>> {
        match version {
            0 | JSON => Some(json(body)),
            BINARY => Some(whole::<wire::Routed>(body).and_then(wire::Routed::read)),
            BINARY_CITY => Some(whole::<(wire::Routed, u32)>(body).and_then(|(routed, city)| {
                let city = CityCode::from_u32(city).ok_or_else(|| format!("{city} is not a city's code"))?;
                let mut routed = routed.read()?;
                let event = routed.event.as_mut().ok_or("a marker names no city")?;
                event.event.city = Some(city);
                Ok(routed)
            })),
            _ => None,
        }
    }
}

/// A case record for the changelog, its codes written as their text in `codes` (the
/// ledger's table): version 3 while the case has only contract v1's facts, which builds
/// before v2 read, else version 4.
pub fn encode_case(record: &CaseRecord, codes: &Codes) -> Vec<u8> {
    let v1 = record.steps.iter().all(|s| matches!(s.data, crate::domain::case::Step::Transferred(_)));
    let mut out = Vec::with_capacity(128);
    out.push(if v1 { COMPACT } else { COMPACT_V2 });
    let (case, later) = wire::Case::of(record, codes);
    postcard::to_io(&case, &mut out).expect("case records serialize");
    if !later.is_empty() {
        postcard::to_io(&later, &mut out).expect("case records serialize");
    }
    out
}

/// A changelog record's case, its codes read into `codes` (the ledger's table); `None` for a
/// tombstone.
pub fn decode_case(bytes: Option<&[u8]>, codes: &mut Codes) -> Result<Option<CaseRecord>, Unreadable> {
    let Some(bytes) = bytes else { return Ok(None) };
    let (version, body) = versioned(bytes)?;
    let read = match version {
        0 | JSON => json::<wire::JsonCase>(body).map(|case| case.read(codes)),
        BINARY => whole::<wire::CaseV2>(body).and_then(|case| case.read(codes)),
        COMPACT => whole::<wire::Case>(body).and_then(|case| case.read(wire::Later::default(), codes)),
        COMPACT_V2 => whole::<(wire::Case, wire::Later)>(body).and_then(|(case, later)| case.read(later, codes)),
        _ => return Err(Unreadable::Version(version)),
    };
    read.map(Some).map_err(|detail| Unreadable::Malformed { version, detail })
}

/// A postcard value that takes the whole body: bytes left over are another format.
fn whole<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(body).map_err(|e| e.to_string())? {
        (value, []) => Ok(value),
        (_, rest) => Err(format!("{} bytes left over", rest.len())),
    }
}

/// `value` in the version this build writes it in, after that version's byte.
pub fn encode<T: Value>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128);
    bytes.push(value.version());
    value.write(&mut bytes);
    bytes
}

/// The value as plain JSON, whatever the internal encoding: what a dead letter carries.
pub(crate) fn readable<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("internal records serialize")
}

/// The value of a record of a compacted topic: `None` for a tombstone (no payload).
pub(crate) fn decode_or_tombstone<T: Value>(bytes: Option<&[u8]>) -> Result<Option<T>, Unreadable> {
    bytes.map(|b| decode(Some(b))).transpose()
}

/// A value's format version and body.
fn versioned(bytes: &[u8]) -> Result<(u8, &[u8]), Unreadable> {
    match bytes.first() {
        None => Err(Unreadable::Empty),
        Some(b'{' | b'[' | b'"') => Ok((0, bytes)),
        Some(&v) => Ok((v, &bytes[1..])),
    }
}

pub fn decode<T: Value>(bytes: Option<&[u8]>) -> Result<T, Unreadable> {
    let (version, body) = versioned(bytes.ok_or(Unreadable::Empty)?)?;
    match T::read(version, body) {
        None => Err(Unreadable::Version(version)),
        Some(read) => read.map_err(|detail| Unreadable::Malformed { version, detail }),
    }
}

/// Reads `bytes` as every value and key hotline writes for itself, keeping nothing but
/// checking that a routed event read back is written back the same: what the fuzz targets in
/// `fuzz/` call. Every read gives a value or an `Unreadable`, and never panics.
#[doc(hidden)]
pub fn read_every_kind(bytes: &[u8]) {
    if let Ok(routed) = decode::<Routed>(Some(bytes)) {
        assert_eq!(decode::<Routed>(Some(&encode(&routed))).as_ref(), Ok(&routed), "a routed event round-trips");
    }
    let _ = decode::<PartitionProgress>(Some(bytes));
    let _ = decode::<Tally>(Some(bytes));
    let _ = decode::<Watermark>(Some(bytes));
    let _ = decode_case(Some(bytes), &mut Codes::default());
    let _ = key::<ChangelogKey>(Some(bytes));
    let _ = key::<PartialKey>(Some(bytes));
}

/// The key of a changelog record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChangelogKey {
    /// A case's record: its city (none for the deployment's default city, as before cities)
    /// and its id, written `<city>\x1f<id>` (an id has no control character).
    Case(Option<CityCode>, String),
    /// The partition's progress, under the one key no case may have.
    Progress,
}

const PROGRESS_KEY: &str = crate::domain::event::RESERVED_CASE_ID;

/// Between a city and a case id in a changelog key: the ASCII unit separator, which no id has.
const CITY_SEPARATOR: char = '\x1f';

impl fmt::Display for ChangelogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangelogKey::Case(None, id) => f.write_str(id),
            ChangelogKey::Case(Some(city), id) => write!(f, "{city}{CITY_SEPARATOR}{id}"),
            ChangelogKey::Progress => f.write_str(PROGRESS_KEY),
        }
    }
}

impl FromStr for ChangelogKey {
    type Err = Unreadable;
    fn from_str(s: &str) -> Result<ChangelogKey, Unreadable> {
        match s {
            PROGRESS_KEY => Ok(ChangelogKey::Progress),
            "" => Err(Unreadable::Key),
            key => match key.split_once(CITY_SEPARATOR) {
                None => Ok(ChangelogKey::Case(None, key.to_owned())),
                Some((_, "")) => Err(Unreadable::Key),
                Some((city, id)) => {
                    Ok(ChangelogKey::Case(Some(city.parse().map_err(|_| Unreadable::Key)?), id.to_owned()))
                }
            },
        }
    }
}

/// The key of a `partials` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartialKey {
    /// A counting partition's tally of a city's month (none: the deployment's default city),
    /// written `tally/<partition>/<month>` or `tally/<partition>/<city>/<month>`.
    Tally { partition: i32, city: Option<CityCode>, month: Month },
    /// A counting partition's watermark.
    Watermark { partition: i32 },
}

impl fmt::Display for PartialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartialKey::Tally { partition, city: None, month } => write!(f, "tally/{partition}/{month}"),
            PartialKey::Tally { partition, city: Some(city), month } => write!(f, "tally/{partition}/{city}/{month}"),
            PartialKey::Watermark { partition } => write!(f, "watermark/{partition}"),
        }
    }
}

impl FromStr for PartialKey {
    type Err = Unreadable;
    fn from_str(s: &str) -> Result<PartialKey, Unreadable> {
        let partition = |p: &str| p.parse::<i32>().ok().filter(|p| *p >= 0).ok_or(Unreadable::Key);
        if let Some(rest) = s.strip_prefix("tally/") {
            let (p, rest) = rest.split_once('/').ok_or(Unreadable::Key)?;
            let (city, month) = match rest.split_once('/') {
                None => (None, rest),
                Some((city, month)) => (Some(city.parse().map_err(|_| Unreadable::Key)?), month),
            };
            let month = month.parse().map_err(|_| Unreadable::Key)?;
            Ok(PartialKey::Tally { partition: partition(p)?, city, month })
        } else if let Some(p) = s.strip_prefix("watermark/") {
            Ok(PartialKey::Watermark { partition: partition(p)? })
        } else {
            Err(Unreadable::Key)
        }
    }
}

/// Parses a record's key as UTF-8 text into `K`.
pub fn key<K: FromStr<Err = Unreadable>>(bytes: Option<&[u8]>) -> Result<K, Unreadable> {
    std::str::from_utf8(bytes.ok_or(Unreadable::Key)?).map_err(|_| Unreadable::Key)?.parse()
}

/// The headers of a dead letter: why it was rejected (the reason names fields, never their
/// values) and, when it has one, the input message it was (`(topic, partition, offset)`);
/// `payload_omitted` when its payload was too large to carry.
pub(crate) fn dead_letter_headers(
    rejection: &Rejection,
    origin: Option<(&str, i32, i64)>,
    payload_omitted: bool,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![("hotline.reason", rejection.to_string()), ("hotline.reason_kind", rejection.kind().into())];
    // Facts of a case evicted uncounted have no input message of their own any more.
    if let Some((topic, partition, offset)) = origin {
        headers.push(("hotline.source_topic", topic.to_owned()));
        headers.push(("hotline.source_partition", partition.to_string()));
        headers.push(("hotline.source_offset", offset.to_string()));
    }
    if payload_omitted {
        headers.push(("hotline.payload_omitted", "larger than the dead-letter limit".into()));
    }
    headers
}

/// A counting partition's event time, as it tells the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Watermark(pub Timestamp);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::partition::InputProgress;

    #[test]
    fn a_dead_letter_says_why_and_where_it_came_from() {
        let rejection = Rejection::NeverCreated;
        let headers = dead_letter_headers(&rejection, Some(("hotline.cases", 2, 41)), false);
        let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "hotline.reason",
                "hotline.reason_kind",
                "hotline.source_topic",
                "hotline.source_partition",
                "hotline.source_offset"
            ]
        );
        assert_eq!(headers[1].1, rejection.kind());
        assert_eq!((headers[3].1.as_str(), headers[4].1.as_str()), ("2", "41"));
        let evicted = dead_letter_headers(&rejection, None, true);
        assert_eq!(
            evicted.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["hotline.reason", "hotline.reason_kind", "hotline.payload_omitted"]
        );
    }

    #[test]
    fn keys_read_back_as_written() {
        let month: Month = "2022-04".parse().unwrap();
        let yanbian = Some("222400".parse().unwrap());
        for key in [
            PartialKey::Tally { partition: 3, city: None, month },
            PartialKey::Tally { partition: 3, city: yanbian, month },
            PartialKey::Watermark { partition: 0 },
        ] {
            assert_eq!(key.to_string().parse::<PartialKey>(), Ok(key));
        }
        assert_eq!(PartialKey::Tally { partition: 3, city: None, month }.to_string(), "tally/3/2022-04");
        assert_eq!(PartialKey::Tally { partition: 3, city: yanbian, month }.to_string(), "tally/3/222400/2022-04");
        assert_eq!(PartialKey::Watermark { partition: 11 }.to_string(), "watermark/11");
        for bad in [
            "tally/3",
            "tally/x/2022-04",
            "tally/-1/2022-04",
            "tally/3/April",
            "tally/3/22240/2022-04",
            "tally/3/222400/x",
            "watermark/",
            "sum/3",
            "",
        ] {
            assert_eq!(bad.parse::<PartialKey>(), Err(Unreadable::Key), "{bad}");
        }
        for key in [
            ChangelogKey::Case(None, "SP-2022-000123".into()),
            ChangelogKey::Case(yanbian, "SP-2022-000123".into()),
            ChangelogKey::Case(None, "220300/with a slash".into()),
            ChangelogKey::Progress,
        ] {
            assert_eq!(key.to_string().parse::<ChangelogKey>(), Ok(key));
        }
        assert_eq!(ChangelogKey::Case(yanbian, "A-1".into()).to_string(), "222400\x1fA-1");
        for bad in ["22240\x1fA-1", "222400\x1f", "x\x1fA-1"] {
            assert_eq!(bad.parse::<ChangelogKey>(), Err(Unreadable::Key), "{bad:?}");
        }
        assert_eq!(ChangelogKey::Progress.to_string(), "#watermark");
        assert_eq!(
            "#other".parse::<ChangelogKey>(),
            Ok(ChangelogKey::Case(None, "#other".into())),
            "a case id may start with #"
        );
        assert_eq!("".parse::<ChangelogKey>(), Err(Unreadable::Key));
        assert_eq!(key::<ChangelogKey>(Some(&[0xff, 0xfe])), Err(Unreadable::Key));
        assert_eq!(key::<ChangelogKey>(None), Err(Unreadable::Key));
    }

    #[test]
    fn values_carry_their_version_and_read_back() {
        let progress = PartitionProgress {
            watermark: Some("2022-04-30T16:00:00Z".parse().unwrap()),
            sources: vec![InputProgress { topic: "cases".into(), partition: 2, event_time: None, idle: true }],
            covers: Some(42),
            partitions: Some(12),
        };
        let bytes = encode(&progress);
        assert_eq!(bytes[0], JSON);
        assert_eq!(decode::<PartitionProgress>(Some(&bytes)), Ok(progress));
        let at = Watermark("2022-05-01T00:00:00Z".parse().unwrap());
        assert_eq!(decode::<Watermark>(Some(&encode(&at))), Ok(at));
    }

    #[test]
    fn values_of_earlier_builds_read_as_version_0() {
        let old = br#"{"watermark":"2022-04-30T16:00:00Z","sources":[["cases",0,null,true]]}"#;
        let progress: PartitionProgress = decode(Some(old)).unwrap();
        assert_eq!(progress.covers, None);
        assert_eq!(
            progress.sources[0],
            InputProgress { topic: "cases".into(), partition: 0, event_time: None, idle: true }
        );
        let old_watermark = br#""2022-05-01T00:00:00Z""#;
        assert_eq!(decode::<Watermark>(Some(old_watermark)), Ok(Watermark("2022-05-01T00:00:00Z".parse().unwrap())));
    }

    fn routed_transfer() -> Routed {
        use crate::domain::event::{CaseEvent, Change, Transferred};
        use crate::domain::routing::{RoutedEvent, Source};
        Routed {
            source: Source { topic: "hotline.cases".into(), partition: 3 },
            watermark: Some("2022-04-10T01:02:03.456789Z".parse().unwrap()),
            idle: false,
            event: Some(RoutedEvent {
                offset: 1234,
                input_timestamp: Some(1_650_000_000_123),
                event: CaseEvent {
                    event_id: "e-42".into(),
                    case_id: "SP-2022-000123".into(),
                    city: None,
                    occurred_at: "2022-04-10T01:02:03.456789Z".parse().unwrap(),
                    change: Change::Transferred(Transferred {
                        to_department: "lishu_county".into(),
                        from_department: Some("tiexi_district".into()),
                        due_at: Some("2022-04-25T00:00:00Z".parse().unwrap()),
                    }),
                },
            }),
        }
    }

    fn case_record(codes: &mut Codes) -> CaseRecord {
        use crate::domain::case::{Assignment, EventKey, Fact, Intake, Step};
        use crate::domain::event::{Board, Channel, RequestKind};
        let at = |s: &str| -> Timestamp { s.parse().unwrap() };
        CaseRecord {
            created: Some(Fact {
                event: EventKey::of("e-1"),
                at: at("2022-04-01T08:00:00.5Z").into(),
                data: Intake {
                    channel: Channel::LeaderBoard,
                    category: codes.intern("epidemic"),
                    board: Some(Board::Mayor),
                    request_kind: Some(RequestKind::Complaint),
                    department: Some(codes.intern("tiexi_district")),
                    due: None,
                },
            }),
            steps: vec![Fact {
                event: EventKey::of("e-2"),
                at: at("2022-04-02T08:00:00Z").into(),
                data: Step::Transferred(Assignment {
                    to: codes.intern("unicom"),
                    from: None,
                    due: Some(at("2022-04-20T00:00:00Z").into()),
                }),
            }]
            .into(),
            closed: Some(Fact { event: EventKey::of("e-3"), at: at("2022-04-03T08:00:00Z").into(), data: () }),
        }
    }

    /// `case_record()` as builds before version 3 wrote it in JSON.
    const JSON_CASE: &str = r#"{"created":{"event_id":"e-1","at":"2022-04-01T08:00:00.5Z","channel":"leader_board",
        "category":"epidemic","board":"mayor","request_kind":"complaint","department":"tiexi_district","due_at":null},
        "transfers":[{"event_id":"e-2","at":"2022-04-02T08:00:00Z","to_department":"unicom","from_department":null,
        "due_at":"2022-04-20T00:00:00Z"}],"closed":{"event_id":"e-3","at":"2022-04-03T08:00:00Z"}}"#;

    #[test]
    fn records_are_binary_and_read_back() {
        let routed = routed_transfer();
        let bytes = encode(&routed);
        assert_eq!(bytes[0], BINARY);
        assert!(
            bytes.len() < readable(&routed).len() / 2,
            "{} bytes against {} in JSON",
            bytes.len(),
            readable(&routed).len()
        );
        assert_eq!(decode::<Routed>(Some(&bytes)), Ok(routed));
        let marker = Routed { event: None, idle: true, ..routed_transfer() };
        assert_eq!(decode::<Routed>(Some(&encode(&marker))), Ok(marker));
        // An event naming a city (not the default) is version 5; the default's stays version 2.
        let mut yanbian = routed_transfer();
        yanbian.event.as_mut().unwrap().event.city = Some("222400".parse().unwrap());
        let with_city = encode(&yanbian);
        assert_eq!((with_city[0], with_city.len()), (BINARY_CITY, bytes.len() + 3));
        assert_eq!(decode::<Routed>(Some(&with_city)), Ok(yanbian));
        let mut no_city_code = bytes.clone();
        no_city_code[0] = BINARY_CITY;
        no_city_code.push(7);
        assert!(matches!(decode::<Routed>(Some(&no_city_code)), Err(Unreadable::Malformed { version: 5, .. })));
        let mut codes = Codes::default();
        let case = case_record(&mut codes);
        let bytes = encode_case(&case, &codes);
        assert_eq!(bytes[0], COMPACT);
        assert!(bytes.len() < JSON_CASE.len() / 3, "{} bytes", bytes.len());
        assert_eq!(decode_case(Some(&bytes), &mut codes), Ok(Some(case.clone())));
        let empty = encode_case(&CaseRecord::default(), &codes);
        assert_eq!(decode_case(Some(&empty), &mut codes), Ok(Some(CaseRecord::default())));
        assert_eq!(decode_case(None, &mut codes), Ok(None), "a tombstone");
        // Another ledger's table numbers the codes its own way; the text is what is written.
        let mut other = Codes::default();
        other.intern("first_in_this_table");
        let read = decode_case(Some(&bytes), &mut other).unwrap().unwrap();
        assert_ne!(read, case);
        assert_eq!(encode_case(&read, &other), bytes);
    }

    #[test]
    fn a_case_with_contract_v2_facts_is_version_4_and_a_v1_case_stays_version_3() {
        use crate::domain::case::{EventKey, Fact, Step};
        use crate::domain::event::Rating;
        let mut codes = Codes::default();
        let mut case = case_record(&mut codes);
        assert_eq!(encode_case(&case, &codes)[0], COMPACT, "builds before contract v2 read a v1 case");
        let (unicom, x) = (codes.intern("unicom"), codes.intern("x"));
        let at = |s: &str| -> crate::domain::case::Nanos { s.parse::<Timestamp>().unwrap().into() };
        let step = |id: &str, when: &str, data: Step| Fact { event: EventKey::of(id), at: at(when), data };
        for s in [
            step("e-4", "2022-04-02T09:00:00Z", Step::Accepted(unicom)),
            step("e-5", "2022-04-04T00:00:00Z", Step::Reopened { department: unicom, due: None }),
            step("e-6", "2022-04-05T00:00:00Z", Step::Closed),
            step("e-7", "2022-04-05T01:00:00Z", Step::Returned(unicom)),
            step("e-8", "2022-04-05T02:00:00Z", Step::Extended { department: x, due: at("2022-05-01T00:00:00Z") }),
            step("e-9", "2022-04-06T00:00:00Z", Step::Rated(Rating::BasicallySatisfied)),
        ] {
            case.steps.push(s);
        }
        let bytes = encode_case(&case, &codes);
        assert_eq!(bytes[0], COMPACT_V2);
        assert_eq!(decode_case(Some(&bytes), &mut codes), Ok(Some(case)));
        // A build of version 3 reads the first part only, and refuses the rest.
        assert!(matches!(whole::<wire::Case>(&bytes[1..]), Err(detail) if detail.contains("left over")));
    }

    #[test]
    fn records_of_earlier_builds_still_read() {
        let mut codes = Codes::default();
        for version in [&b""[..], &[JSON][..]] {
            let routed = [version, &readable(&routed_transfer())].concat();
            assert_eq!(decode::<Routed>(Some(&routed)), Ok(routed_transfer()));
            let case = [version, JSON_CASE.as_bytes()].concat();
            assert_eq!(decode_case(Some(&case), &mut codes), Ok(Some(case_record(&mut codes))));
        }
        let at: Timestamp = "2022-04-01T08:00:00Z".parse().unwrap();
        let mut v2 = vec![BINARY];
        postcard::to_io(&wire::CaseV2::example("e-7", at, "water"), &mut v2).unwrap();
        let read = decode_case(Some(&v2), &mut codes).unwrap().unwrap();
        let created = read.created.unwrap();
        assert_eq!(
            (created.event, created.at.timestamp(), codes.name(created.data.category)),
            (crate::domain::case::EventKey::of("e-7"), at, "water")
        );
        assert_eq!(
            decode_case(Some(&[BINARY, 9, 9]), &mut codes).map_err(|e| e.kind()),
            Err("malformed"),
            "a version 2 case record that does not decode"
        );
    }

    #[test]
    fn transfers_read_from_any_version_are_in_the_domains_order() {
        // Two transfers at one instant: the domain orders them by their event ids' hashes,
        // where earlier builds ordered them by the ids' text.
        let json = r#"{"created":null,"closed":null,"transfers":[
            {"event_id":"a","at":"2022-04-02T08:00:00Z","to_department":"x","from_department":null,"due_at":null},
            {"event_id":"b","at":"2022-04-02T08:00:00Z","to_department":"y","from_department":null,"due_at":null}]}"#;
        let mut codes = Codes::default();
        let read = decode_case(Some(json.as_bytes()), &mut codes).unwrap().unwrap();
        let keys: Vec<_> = read.steps.iter().map(|t| t.event).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(decode_case(Some(&encode_case(&read, &codes)), &mut codes), Ok(Some(read)));
    }

    #[test]
    fn a_record_this_build_cannot_read_says_why() {
        let bytes = encode(&routed_transfer());
        let Err(Unreadable::Malformed { version: 2, .. }) = decode::<Routed>(Some(&bytes[..bytes.len() - 3])) else {
            panic!("a truncated binary record is malformed")
        };
        let longer = [&bytes[..], &[0, 0]].concat();
        let Err(Unreadable::Malformed { version: 2, detail }) = decode::<Routed>(Some(&longer)) else {
            panic!("a binary record with bytes left over is malformed")
        };
        assert!(detail.contains("left over"), "{detail}");
        assert_eq!(decode::<Tally>(Some(&[7, b'{', b'}'])), Err(Unreadable::Version(7)));
        assert_eq!(decode::<Tally>(Some(&[])), Err(Unreadable::Empty));
        assert_eq!(decode::<Tally>(None), Err(Unreadable::Empty));
        let Err(Unreadable::Malformed { version: 1, detail }) =
            decode::<PartitionProgress>(Some(b"\x01{\"watermark\":3"))
        else {
            panic!("a truncated record is malformed")
        };
        assert!(detail.contains("line 1"), "{detail}");
        assert!(matches!(decode::<Tally>(Some(b"{oops")), Err(Unreadable::Malformed { version: 0, .. })));
        assert_eq!(Unreadable::Version(9).kind(), "unknown_version");
    }
}
