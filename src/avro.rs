//! Snapshots on the wire: Avro with the schema in `schemas/snapshot.avsc`, framed either as
//! Avro single-object encoding (the default) or in the Confluent wire format (magic byte and
//! a schema-registry id) when a registry is configured. Every released schema version stays in
//! `schemas/` (`snapshot.v1.avsc`, ...): snapshots written with any of them still decode, by
//! Avro's schema resolution, and a test holds each new version backward compatible.

use std::collections::{BTreeMap, HashMap};

use apache_avro::types::Value;
use apache_avro::{GenericSingleObjectReader, GenericSingleObjectWriter, Schema};
use jiff::Timestamp;

use crate::domain::figures::{
    CategoryCounts, CityRow, Counts, DepartmentFigures, Figures, ProvinceFigures, ProvisionalDeadlines, Ranked,
    Ranking, ReturnedPair, Totals, TransferFigures,
};
use crate::domain::snapshot::{MadeBy, Snapshot, Status};

pub const SCHEMA_JSON: &str = include_str!("../schemas/snapshot.avsc");

/// The schemas of earlier releases, oldest first.
pub(crate) const EARLIER_SCHEMAS: &[&str] = &[
    include_str!("../schemas/snapshot.v1.avsc"),
    include_str!("../schemas/snapshot.v2.avsc"),
    include_str!("../schemas/snapshot.v3.avsc"),
    include_str!("../schemas/snapshot.v4.avsc"),
];

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("Avro: {0}")]
    Avro(#[from] apache_avro::Error),
    #[error("message is not a snapshot: {0}")]
    Shape(&'static str),
}

/// How snapshot bytes are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    SingleObject,
    /// Confluent wire format with this schema-registry id.
    Confluent(u32),
}

pub struct SnapshotCodec {
    schema: Schema,
    header: Vec<u8>,
    framing: Framing,
    /// Earlier schemas by their single-object headers, to read what older builds wrote.
    earlier: Vec<(Vec<u8>, Schema)>,
}

/// The single-object header: C3 01 and the CRC-64-AVRO fingerprint of the schema's Parsing
/// Canonical Form, little-endian.
///
/// apache-avro 0.22 leaves logical types of primitives as `{"type":"long"}` in the canonical
/// form instead of the spec's `"long"` (AVRO-4004), so its own fingerprint differs from Java's
/// and fastavro's. We fingerprint the spec's form, which `tests/avro_decode.py` checks.
pub(crate) fn single_object_header(schema: &Schema) -> Vec<u8> {
    use apache_avro::rabin::Rabin;
    use digest::Digest;
    let mut canonical = schema.canonical_form();
    for primitive in ["null", "boolean", "int", "long", "float", "double", "bytes", "string"] {
        canonical = canonical.replace(&format!(r#"{{"type":"{primitive}"}}"#), &format!(r#""{primitive}""#));
    }
    let mut header = vec![0xC3, 0x01];
    header.extend_from_slice(&Rabin::digest(canonical.as_bytes()));
    header
}

struct Header<'a>(&'a [u8]);

impl apache_avro::headers::HeaderBuilder for Header<'_> {
    fn build_header(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl SnapshotCodec {
    pub fn new(framing: Framing) -> SnapshotCodec {
        let schema = schema();
        let earlier = EARLIER_SCHEMAS
            .iter()
            .map(|json| {
                let schema = Schema::parse_str(json).expect("the schemas in schemas/ are valid");
                (single_object_header(&schema), schema)
            })
            .collect();
        SnapshotCodec { header: single_object_header(&schema), schema, framing, earlier }
    }

    pub fn encode(&self, s: &Snapshot) -> Result<Vec<u8>, CodecError> {
        let mut single = Vec::with_capacity(1024);
        GenericSingleObjectWriter::new_with_capacity_and_header_builder(&self.schema, 1024, &Header(&self.header))?
            .write_value(to_value(s), &mut single)?;
        Ok(match self.framing {
            Framing::SingleObject => single,
            Framing::Confluent(id) => {
                // Same datum, different header: 0x00 and the registry id instead of C3 01 + fingerprint.
                let mut out = Vec::with_capacity(single.len() - 5);
                out.push(0);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&single[10..]);
                out
            }
        })
    }

    /// Decodes either framing, recognised by its first byte.
    pub fn decode(&self, bytes: &[u8]) -> Result<Snapshot, CodecError> {
        let value = match bytes.first() {
            Some(0xC3) if bytes.len() > 10 && bytes[..10] != self.header[..] => {
                let Some((_, writer)) = self.earlier.iter().find(|(header, _)| bytes[..10] == header[..]) else {
                    return Err(CodecError::Shape("a schema fingerprint of no released snapshot schema"));
                };
                apache_avro::reader::datum::GenericDatumReader::builder(writer)
                    .reader_schema(&self.schema)
                    .build()?
                    .read_value(&mut &bytes[10..])?
            }
            Some(0xC3) => GenericSingleObjectReader::builder()
                .schema(self.schema.clone())
                .header(self.header.clone())
                .build()?
                .read_value(&mut &bytes[..])?,
            Some(0x00) if bytes.len() > 5 => self.datum_of_any_version(&bytes[5..])?,
            _ => return Err(CodecError::Shape("unknown framing")),
        };
        from_value(value)
    }
}

impl SnapshotCodec {
    /// A datum in the Confluent framing, which names its schema by a registry id this codec
    /// cannot look up: read by the newest released schema that takes it whole.
    fn datum_of_any_version(&self, datum: &[u8]) -> Result<Value, CodecError> {
        let mut failed = CodecError::Shape("no released schema reads it");
        for writer in std::iter::once(&self.schema).chain(self.earlier.iter().rev().map(|(_, s)| s)) {
            let mut rest = datum;
            let reader = apache_avro::reader::datum::GenericDatumReader::builder(writer).reader_schema(&self.schema);
            match reader.build()?.read_value(&mut rest) {
                Ok(value) if rest.is_empty() => return Ok(value),
                Ok(_) => failed = CodecError::Shape("bytes left over"),
                Err(e) => failed = e.into(),
            }
        }
        Err(failed)
    }
}

pub fn schema() -> Schema {
    Schema::parse_str(SCHEMA_JSON).expect("schemas/snapshot.avsc is valid")
}

fn long(n: u64) -> Value {
    Value::Long(n as i64)
}

fn micros(t: Timestamp) -> Value {
    Value::TimestampMicros(t.as_microsecond())
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn map<T>(m: &BTreeMap<String, T>, f: impl Fn(&T) -> Value) -> Value {
    Value::Map(m.iter().map(|(k, v)| (k.clone(), f(v))).collect::<HashMap<_, _>>())
}

fn counts(c: &Counts) -> Value {
    record(vec![("received", long(c.received)), ("closed", long(c.closed)), ("in_progress", long(c.in_progress))])
}

fn to_value(s: &Snapshot) -> Value {
    let f = &s.figures;
    record(vec![
        ("month", Value::String(s.month.to_string())),
        ("timezone", Value::String(s.timezone.clone())),
        ("revision", long(s.revision)),
        (
            "status",
            match s.status {
                Status::Provisional => Value::Enum(0, "provisional".into()),
                Status::Closed => Value::Enum(1, "closed".into()),
            },
        ),
        ("as_of", micros(s.as_of)),
        ("published_at", micros(s.published_at)),
        ("totals", totals(&f.totals)),
        ("by_channel", map(&f.by_channel, counts)),
        ("by_board", map(&f.by_board, counts)),
        ("by_request_kind", map(&f.by_request_kind, counts)),
        (
            "by_category",
            map(&f.by_category, |c| {
                record(vec![
                    ("received", long(c.received)),
                    ("closed", long(c.closed)),
                    ("in_progress", long(c.in_progress)),
                    ("share", Value::Double(c.share)),
                ])
            }),
        ),
        ("by_department", map(&f.by_department, department)),
        (
            "transfers",
            record(vec![
                ("total", long(f.transfers.total)),
                ("cases_transferred", long(f.transfers.cases_transferred)),
                ("returned_cases", long(f.transfers.returned_cases)),
                (
                    "returned_pairs",
                    Value::Array(
                        f.transfers
                            .returned_pairs
                            .iter()
                            .map(|p| {
                                record(vec![
                                    ("from", Value::String(p.from.clone())),
                                    ("to", Value::String(p.to.clone())),
                                    ("cases", long(p.cases)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ]),
        ),
        ("all_departments", department(&f.all_departments)),
        ("ranking", ranking(&f.ranking)),
        (
            "city",
            match s.city {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(city) => Value::Union(1, Box::new(Value::String(city.to_string()))),
            },
        ),
        (
            "province",
            match &f.province {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(p) => Value::Union(1, Box::new(province(p))),
            },
        ),
        ("rules_fingerprint", Value::String(s.made_by.rules_fingerprint.clone())),
        ("build", Value::String(s.made_by.build.clone())),
        (
            "provisional_deadlines",
            Value::Array(
                f.provisional_deadlines
                    .iter()
                    .map(|p| record(vec![("year", Value::Int(i32::from(p.year))), ("cases", long(p.cases))]))
                    .collect(),
            ),
        ),
    ])
}

fn totals(t: &Totals) -> Value {
    record(vec![
        ("received", long(t.received)),
        ("closed", long(t.closed)),
        ("in_progress", long(t.in_progress)),
        ("closure_rate", rate(t.closure_rate)),
    ])
}

fn ranking(r: &Ranking) -> Value {
    record(vec![
        ("min_assigned", long(r.min_assigned)),
        ("top", Value::Array(r.top.iter().map(ranked).collect())),
        ("bottom", Value::Array(r.bottom.iter().map(ranked).collect())),
    ])
}

fn province(p: &ProvinceFigures) -> Value {
    let row = |r: &CityRow| {
        record(vec![
            ("city", Value::String(r.city.to_string())),
            ("name", Value::String(r.name.clone())),
            ("totals", totals(&r.totals)),
            ("departments", department(&r.departments)),
        ])
    };
    record(vec![("cities", Value::Array(p.cities.iter().map(row).collect())), ("ranking", ranking(&p.ranking))])
}

fn ranked(r: &Ranked) -> Value {
    record(vec![
        ("department", Value::String(r.department.clone())),
        ("score", Value::Double(r.score)),
        ("assigned", long(r.assigned)),
    ])
}

fn department(d: &DepartmentFigures) -> Value {
    record(vec![
        ("assigned", long(d.assigned)),
        ("closed_on_time", long(d.closed_on_time)),
        ("closed_late", long(d.closed_late)),
        ("in_progress", long(d.in_progress)),
        ("overdue", long(d.overdue)),
        ("transferred_in", long(d.transferred_in)),
        ("transferred_out", long(d.transferred_out)),
        ("accepted_on_time", long(d.accepted_on_time)),
        ("accepted_late", long(d.accepted_late)),
        ("returned", long(d.returned)),
        ("extended", long(d.extended)),
        ("reopened", long(d.reopened)),
        ("satisfied", long(d.satisfied)),
        ("basically_satisfied", long(d.basically_satisfied)),
        ("dissatisfied", long(d.dissatisfied)),
        ("unreachable", long(d.unreachable)),
        ("on_time_rate", rate(d.on_time_rate)),
        ("sign_for_rate", rate(d.sign_for_rate)),
        ("return_rate", rate(d.return_rate)),
        ("reopen_rate", rate(d.reopen_rate)),
        ("satisfaction_rate", rate(d.satisfaction_rate)),
    ])
}

/// A rate with nothing to measure is 0 on the wire: the schema's rates are doubles, and a union
/// with null would break the readers of earlier versions.
fn rate(r: Option<f64>) -> Value {
    Value::Double(r.unwrap_or(0.0))
}

/// The rates are read back from the counts, not from the wire, which cannot tell 0 from nothing
/// to measure (and lacks `sign_for_rate` before version 5).
fn department_from(mut d: Rec) -> Result<DepartmentFigures, CodecError> {
    Ok(DepartmentFigures {
        assigned: d.u64("assigned")?,
        closed_on_time: d.u64("closed_on_time")?,
        closed_late: d.u64("closed_late")?,
        in_progress: d.u64("in_progress")?,
        overdue: d.u64("overdue")?,
        transferred_in: d.u64("transferred_in")?,
        transferred_out: d.u64("transferred_out")?,
        accepted_on_time: d.u64("accepted_on_time")?,
        accepted_late: d.u64("accepted_late")?,
        returned: d.u64("returned")?,
        extended: d.u64("extended")?,
        reopened: d.u64("reopened")?,
        satisfied: d.u64("satisfied")?,
        basically_satisfied: d.u64("basically_satisfied")?,
        dissatisfied: d.u64("dissatisfied")?,
        unreachable: d.u64("unreachable")?,
        ..DepartmentFigures::default()
    }
    .with_rates())
}

/// Field access on a decoded record.
struct Rec(HashMap<String, Value>);

impl Rec {
    fn new(v: Value) -> Result<Rec, CodecError> {
        match v {
            Value::Record(fields) => Ok(Rec(fields.into_iter().collect())),
            _ => Err(CodecError::Shape("expected a record")),
        }
    }
    fn take(&mut self, k: &'static str) -> Result<Value, CodecError> {
        self.0.remove(k).ok_or(CodecError::Shape(k))
    }
    fn u64(&mut self, k: &'static str) -> Result<u64, CodecError> {
        match self.take(k)? {
            Value::Long(n) if n >= 0 => Ok(n as u64),
            _ => Err(CodecError::Shape(k)),
        }
    }
    /// A snapshot's doubles (shares, rates, scores) are finite: a NaN, which equals nothing,
    /// not even itself, or an infinity is no figure (the fuzz target `snapshot_avro` found a
    /// NaN share read back).
    fn f64(&mut self, k: &'static str) -> Result<f64, CodecError> {
        match self.take(k)? {
            Value::Double(n) if n.is_finite() => Ok(n),
            _ => Err(CodecError::Shape(k)),
        }
    }
    fn string(&mut self, k: &'static str) -> Result<String, CodecError> {
        match self.take(k)? {
            Value::String(s) => Ok(s),
            _ => Err(CodecError::Shape(k)),
        }
    }
    fn timestamp(&mut self, k: &'static str) -> Result<Timestamp, CodecError> {
        match self.take(k)? {
            Value::TimestampMicros(n) => Timestamp::from_microsecond(n).map_err(|_| CodecError::Shape(k)),
            _ => Err(CodecError::Shape(k)),
        }
    }
    fn record(&mut self, k: &'static str) -> Result<Rec, CodecError> {
        Rec::new(self.take(k)?)
    }
    fn array<T>(&mut self, k: &'static str, f: impl Fn(Rec) -> Result<T, CodecError>) -> Result<Vec<T>, CodecError> {
        match self.take(k)? {
            Value::Array(items) => items.into_iter().map(|v| f(Rec::new(v)?)).collect(),
            _ => Err(CodecError::Shape(k)),
        }
    }
    fn map<T>(
        &mut self,
        k: &'static str,
        f: impl Fn(Rec) -> Result<T, CodecError>,
    ) -> Result<BTreeMap<String, T>, CodecError> {
        match self.take(k)? {
            Value::Map(m) => m.into_iter().map(|(key, v)| Ok((key, f(Rec::new(v)?)?))).collect(),
            _ => Err(CodecError::Shape(k)),
        }
    }
}

fn ranked_from(mut r: Rec) -> Result<Ranked, CodecError> {
    Ok(Ranked { department: r.string("department")?, score: r.f64("score")?, assigned: r.u64("assigned")? })
}

fn totals_from(mut t: Rec) -> Result<Totals, CodecError> {
    Ok(Totals { in_progress: t.u64("in_progress")?, ..Totals::of(t.u64("received")?, t.u64("closed")?) })
}

fn ranking_from(mut r: Rec) -> Result<Ranking, CodecError> {
    Ok(Ranking {
        min_assigned: r.u64("min_assigned")?,
        top: r.array("top", ranked_from)?,
        bottom: r.array("bottom", ranked_from)?,
    })
}

fn province_from(mut p: Rec) -> Result<ProvinceFigures, CodecError> {
    Ok(ProvinceFigures {
        cities: p.array("cities", |mut r| {
            Ok(CityRow {
                city: r.string("city")?.parse().map_err(|_| CodecError::Shape("city"))?,
                name: r.string("name")?,
                totals: totals_from(r.record("totals")?)?,
                departments: department_from(r.record("departments")?)?,
            })
        })?,
        ranking: ranking_from(p.record("ranking")?)?,
    })
}

/// A union of null and one other type: `None` for null (or a field older schemas lack).
fn optional(v: Option<Value>, field: &'static str) -> Result<Option<Value>, CodecError> {
    match v {
        None => Ok(None),
        Some(Value::Union(_, v)) => Ok(match *v {
            Value::Null => None,
            v => Some(v),
        }),
        Some(_) => Err(CodecError::Shape(field)),
    }
}

fn counts_from(mut r: Rec) -> Result<Counts, CodecError> {
    Ok(Counts { received: r.u64("received")?, closed: r.u64("closed")?, in_progress: r.u64("in_progress")? })
}

fn from_value(v: Value) -> Result<Snapshot, CodecError> {
    let mut r = Rec::new(v)?;
    let mut transfers = r.record("transfers")?;
    let mut text = |k: &'static str| match r.0.remove(k) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(CodecError::Shape(k)),
    };
    let made_by = MadeBy { rules_fingerprint: text("rules_fingerprint")?, build: text("build")? };
    Ok(Snapshot {
        made_by,
        city: match optional(r.0.remove("city"), "city")? {
            None => None,
            Some(Value::String(code)) => Some(code.parse().map_err(|_| CodecError::Shape("city"))?),
            Some(_) => return Err(CodecError::Shape("city")),
        },
        month: r.string("month")?.parse().map_err(|_| CodecError::Shape("month"))?,
        timezone: r.string("timezone")?,
        revision: r.u64("revision")?,
        status: match r.take("status")? {
            Value::Enum(_, s) if s == "provisional" => Status::Provisional,
            Value::Enum(_, s) if s == "closed" => Status::Closed,
            _ => return Err(CodecError::Shape("status")),
        },
        as_of: r.timestamp("as_of")?,
        published_at: r.timestamp("published_at")?,
        figures: Figures {
            totals: totals_from(r.record("totals")?)?,
            by_channel: r.map("by_channel", counts_from)?,
            by_board: r.map("by_board", counts_from)?,
            by_request_kind: r.map("by_request_kind", counts_from)?,
            by_category: r.map("by_category", |mut c| {
                Ok(CategoryCounts {
                    received: c.u64("received")?,
                    closed: c.u64("closed")?,
                    in_progress: c.u64("in_progress")?,
                    share: c.f64("share")?,
                })
            })?,
            by_department: r.map("by_department", department_from)?,
            all_departments: department_from(r.record("all_departments")?)?,
            ranking: ranking_from(r.record("ranking")?)?,
            transfers: TransferFigures {
                total: transfers.u64("total")?,
                cases_transferred: transfers.u64("cases_transferred")?,
                returned_cases: transfers.u64("returned_cases")?,
                returned_pairs: transfers.array("returned_pairs", |mut p| {
                    Ok(ReturnedPair { from: p.string("from")?, to: p.string("to")?, cases: p.u64("cases")? })
                })?,
            },
            province: optional(r.0.remove("province"), "province")?.map(|p| province_from(Rec::new(p)?)).transpose()?,
            provisional_deadlines: match r.0.remove("provisional_deadlines") {
                None => Vec::new(),
                Some(Value::Array(years)) => years
                    .into_iter()
                    .map(|v| {
                        let mut p = Rec::new(v)?;
                        let year = match p.take("year")? {
                            Value::Int(y) => i16::try_from(y).map_err(|_| CodecError::Shape("year"))?,
                            _ => return Err(CodecError::Shape("year")),
                        };
                        Ok(ProvisionalDeadlines { year, cases: p.u64("cases")? })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(CodecError::Shape("provisional_deadlines")),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut figures = Figures { totals: Totals::of(3, 2), ..Figures::default() };
        figures.by_channel.insert("hotline".into(), Counts { received: 3, closed: 2, in_progress: 1 });
        figures
            .by_category
            .insert("epidemic".into(), CategoryCounts { received: 3, closed: 2, in_progress: 1, share: 1.0 });
        let tiexi = DepartmentFigures {
            assigned: 2,
            closed_on_time: 1,
            closed_late: 1,
            returned: 1,
            satisfied: 1,
            dissatisfied: 1,
            accepted_on_time: 2,
            ..Default::default()
        }
        .with_rates();
        assert_eq!(
            (tiexi.on_time_rate, tiexi.return_rate, tiexi.sign_for_rate),
            (Some(0.5), Some(1.0 / 3.0), Some(1.0))
        );
        figures.by_department.insert("tiexi".into(), tiexi);
        figures.all_departments = tiexi;
        figures.ranking = Ranking {
            min_assigned: 2,
            top: vec![Ranked { department: "tiexi".into(), score: 61.7, assigned: 2 }],
            bottom: vec![],
        };
        figures.transfers.total = 4;
        Snapshot {
            city: None,
            month: "2022-04".parse().unwrap(),
            timezone: "Asia/Shanghai".into(),
            revision: 3,
            status: Status::Closed,
            as_of: "2022-05-02T00:00:00Z".parse().unwrap(),
            published_at: "2026-11-27T10:00:00.123456Z".parse().unwrap(),
            figures,
            made_by: MadeBy { rules_fingerprint: "ab".repeat(32), build: "0.1.0".into() },
        }
    }

    #[test]
    fn single_object_encoding_round_trips_with_its_header() {
        let codec = SnapshotCodec::new(Framing::SingleObject);
        let bytes = codec.encode(&with_returns()).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(codec.decode(&bytes).unwrap(), with_returns());
    }

    #[test]
    fn the_header_fingerprints_the_spec_canonical_form() {
        // The same fingerprint fastavro and Java compute for schemas/snapshot.v1.avsc (for
        // snapshot.avsc, tests/avro_decode.py checks it against fastavro's).
        let v1 = Schema::parse_str(EARLIER_SCHEMAS[0]).unwrap();
        let hex: String = single_object_header(&v1)[2..].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "308601bf0ff727ee");
    }

    fn with_returns() -> Snapshot {
        let mut s = sample();
        s.figures.transfers.returned_cases = 2;
        s.figures.transfers.returned_pairs = vec![
            ReturnedPair { from: "market".into(), to: "commerce".into(), cases: 2 },
            ReturnedPair { from: "".into(), to: "tiexi".into(), cases: 1 },
        ];
        s.city = Some("222400".parse().unwrap());
        s.figures.provisional_deadlines = vec![ProvisionalDeadlines { year: 2027, cases: 2 }];
        s
    }

    /// A reader of every released schema reads what this build writes (its new fields
    /// ignored), and this build reads what they wrote (new fields at their defaults).
    #[test]
    fn every_released_schema_and_this_one_read_each_others_snapshots() {
        let codec = SnapshotCodec::new(Framing::SingleObject);
        let written = codec.encode(&with_returns()).unwrap();
        assert_eq!(codec.decode(&written).unwrap(), with_returns(), "the city too");
        for json in EARLIER_SCHEMAS.iter().chain([&SCHEMA_JSON]) {
            let reader = Schema::parse_str(json).unwrap();
            let value = apache_avro::reader::datum::GenericDatumReader::builder(&codec.schema)
                .reader_schema(&reader)
                .build()
                .unwrap()
                .read_value(&mut &written[10..])
                .expect("an earlier reader resolves this build's snapshots");
            let mut r = Rec::new(value).unwrap();
            assert_eq!(r.u64("revision").unwrap(), 3);
            assert_eq!(r.record("transfers").unwrap().u64("returned_cases").unwrap(), 2);
        }
        for (version, json) in EARLIER_SCHEMAS.iter().enumerate().map(|(i, json)| (i + 1, json)) {
            let writer = Schema::parse_str(json).unwrap();
            // What a build of that version wrote: without the fields added since.
            let Value::Record(mut fields) = to_value(&with_returns()) else { unreachable!("a record") };
            fields.retain(|(name, _)| {
                !["province", "provisional_deadlines", "rules_fingerprint", "build"].contains(&name.as_str())
                    && (version >= 4 || name != "city")
            });
            let without_sign_for_rate = |d: &mut Value| {
                let Value::Record(d) = d else { unreachable!("a record") };
                d.retain(|(field, _)| field != "sign_for_rate");
            };
            if version < 3 {
                fields.retain(|(name, _)| name != "all_departments" && name != "ranking");
            }
            for (name, value) in &mut fields {
                match (name.as_str(), value) {
                    ("transfers", Value::Record(transfers)) if version < 2 => {
                        transfers.retain(|(field, _)| field != "returned_pairs")
                    }
                    ("by_department", Value::Map(departments)) if version < 3 => {
                        for d in departments.values_mut() {
                            let Value::Record(d) = d else { unreachable!("a record") };
                            d.truncate(7);
                        }
                    }
                    ("by_department", Value::Map(departments)) => {
                        departments.values_mut().for_each(without_sign_for_rate)
                    }
                    ("all_departments", d) => without_sign_for_rate(d),
                    _ => {}
                }
            }
            let mut old = Vec::new();
            GenericSingleObjectWriter::new_with_capacity_and_header_builder(
                &writer,
                1024,
                &Header(&single_object_header(&writer)),
            )
            .unwrap()
            .write_value(Value::Record(fields), &mut old)
            .unwrap();
            let read = codec.decode(&old).expect("this build reads what an earlier one wrote");
            if version < 2 {
                assert_eq!(read.figures.transfers.returned_pairs, vec![], "a new field takes its default");
            }
            assert_eq!(read.figures.transfers.returned_cases, 2);
            if version < 4 {
                assert_eq!(read.city, None, "a snapshot of before cities is the default city's");
            }
            // Rates are taken from the counts, those older versions lack included.
            let tiexi = read.figures.by_department["tiexi"];
            assert_eq!(tiexi.on_time_rate, Some(0.5));
            let sign_for = if version < 3 { None } else { Some(1.0) };
            assert_eq!(tiexi.sign_for_rate, sign_for, "no accepted counts before version 3, no sign-for rate before 5");
            if version < 3 {
                assert_eq!(read.figures.all_departments, DepartmentFigures::default());
                assert_eq!(read.figures.ranking, Ranking::default());
            }
            assert_eq!(read.figures.by_department["tiexi"].closed_late, 1);
            // The same datum in the Confluent framing, whose registry id names no schema here.
            let confluent = [&[0, 0, 0, 0, 7][..], &old[10..]].concat();
            assert_eq!(SnapshotCodec::new(Framing::Confluent(8)).decode(&confluent).unwrap(), read);
        }
    }

    /// The province's snapshot round-trips, and a reader of version 4 reads it without its
    /// cities (its key, `province/2022-04`, keeps it from a city's).
    #[test]
    fn the_provinces_snapshot_carries_its_cities() {
        let codec = SnapshotCodec::new(Framing::SingleObject);
        let mut s = sample();
        let row = |city: &str, received| CityRow {
            city: city.parse().unwrap(),
            name: format!("{city}市"),
            totals: Totals::of(received, 0),
            departments: DepartmentFigures {
                assigned: received,
                accepted_on_time: 1,
                accepted_late: 1,
                ..DepartmentFigures::default()
            }
            .with_rates(),
        };
        let ranked = Ranked { department: "220100".into(), score: 88.5, assigned: 2 };
        s.figures.province = Some(ProvinceFigures {
            cities: vec![row("220100", 2), row("220300", 1)],
            ranking: Ranking { min_assigned: 1, top: vec![ranked], bottom: vec![] },
        });
        assert_eq!(codec.decode(&codec.encode(&s).unwrap()).unwrap(), s);
        let v4 = Schema::parse_str(EARLIER_SCHEMAS[3]).unwrap();
        let written = codec.encode(&s).unwrap();
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&codec.schema)
            .reader_schema(&v4)
            .build()
            .unwrap()
            .read_value(&mut &written[10..])
            .unwrap();
        assert_eq!(Rec::new(value).unwrap().record("totals").unwrap().u64("received").unwrap(), 3);
    }

    /// A share that is no number is refused, never read back as a figure.
    #[test]
    fn a_share_that_is_not_finite_is_refused() {
        let codec = SnapshotCodec::new(Framing::SingleObject);
        for share in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut s = sample();
            s.figures.by_category.get_mut("epidemic").unwrap().share = share;
            assert!(matches!(codec.decode(&codec.encode(&s).unwrap()), Err(CodecError::Shape("share"))), "{share}");
        }
    }

    /// Counts as large as a long holds, read back: rates taken from them without overflow.
    #[test]
    fn the_largest_counts_read_back_without_overflow() {
        let codec = SnapshotCodec::new(Framing::SingleObject);
        let mut s = sample();
        let most = i64::MAX as u64;
        let d =
            DepartmentFigures { satisfied: most, basically_satisfied: most, dissatisfied: most, ..Default::default() };
        s.figures.by_department.insert("huge".into(), d.with_rates());
        let read = codec.decode(&codec.encode(&s).unwrap()).unwrap();
        assert_eq!(read.figures.by_department["huge"].satisfaction_rate, Some(1.0));
    }

    #[test]
    fn confluent_framing_carries_the_registry_id() {
        let codec = SnapshotCodec::new(Framing::Confluent(42));
        let bytes = codec.encode(&sample()).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 42]);
        assert_eq!(codec.decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let codec = SnapshotCodec::new(Framing::SingleObject);
        let unknown_fingerprint = b"\xC3\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02";
        for bytes in [&b""[..], b"\xC3\x01", b"\x00\x00\x00\x00\x01\xff\xff", b"{}", unknown_fingerprint] {
            assert!(codec.decode(bytes).is_err());
        }
    }
}
