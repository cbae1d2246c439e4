//! The internal topic between ingesting and counting.
//!
//! Upstream producers partition their topics as they like, so the ingest stage re-keys every
//! valid event by case id onto the internal topic: all events of a case meet on one counting
//! partition whatever partitioner upstream used. Each record also carries the event time its
//! input partition has reached, so a counting partition knows how far every input partition
//! has got even when few of its events land there; when an input partition moves on without
//! sending a counting partition anything, a record without an event (a marker) tells it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::event::{self, CaseEvent, DecodeLimits, Rejection};
use super::province::Cities;

/// The counting partition of a case: CRC-32 of its id modulo the partitions of the internal
/// topic. Fixed forever for a given partition count, which therefore must not change.
pub fn partition_of(case_id: &str, partitions: i32) -> i32 {
    (crc32fast::hash(case_id.as_bytes()) % partitions.max(1) as u32) as i32
}

/// An input partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Source {
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
}

/// A record of the internal topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Routed {
    pub source: Source,
    /// The event time `source` has reached: every earlier event of `source` routed to this
    /// counting partition comes before this record. None before its first event.
    pub watermark: Option<Timestamp>,
    /// `source` has been read to its end and has had nothing new for a while: it does not hold
    /// the counting partition's watermark back until it has events again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idle: bool,
    /// The event and its offset in `source`; none in a marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<RoutedEvent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoutedEvent {
    pub offset: i64,
    /// The input message's Kafka timestamp (milliseconds), for the latency metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_timestamp: Option<i64>,
    #[serde(flatten)]
    pub event: CaseEvent,
}

/// Decodes input messages and routes each event to its counting partition, as the ingest
/// stage does live and `hotline recount` does in memory.
#[derive(Debug)]
pub(crate) struct Router {
    partitions: i32,
    /// Which cities events may name, and which one those naming none belong to.
    cities: Cities,
    progress: Progress,
    max_message_bytes: usize,
    max_future: Duration,
}

/// One input message, as the router reads it.
pub(crate) struct Input<'a> {
    pub source: &'a Source,
    pub offset: i64,
    /// Its Kafka timestamp (milliseconds).
    pub timestamp: Option<i64>,
    pub payload: &'a [u8],
}

impl Router {
    pub fn new(partitions: i32, cities: Cities, max_message_bytes: usize, max_future: Duration) -> Router {
        Router { partitions, cities, progress: Progress::default(), max_message_bytes, max_future }
    }

    /// Follows an input partition read, with or without events.
    pub fn track(&mut self, source: Source, now: Instant) {
        self.progress.track(source, now);
    }

    /// The counting partition of a message's event and its routed record, or why it is a dead
    /// letter. Events may not be later than `wall` plus `time.max_future`; the city an event
    /// names is resolved here, and the record names it unless it is the default.
    pub fn route(&mut self, input: Input<'_>, wall: Timestamp, now: Instant) -> Result<(i32, Routed), Rejection> {
        let event = self.admit(input.payload, wall)?;
        let to = partition_of(&event.case_id, self.partitions);
        // A clock running ahead upstream must not close months early.
        let watermark = self.progress.route(input.source, event.occurred_at.min(wall), to, now);
        let event = Some(RoutedEvent { offset: input.offset, input_timestamp: input.timestamp, event });
        Ok((to, Routed { source: input.source.clone(), watermark: Some(watermark), idle: false, event }))
    }

    /// The event of a message, its city the key `route`'s record names, or why `route` would
    /// dead-letter it.
    pub fn admit(&self, payload: &[u8], wall: Timestamp) -> Result<CaseEvent, Rejection> {
        let latest_occurred_at = wall.checked_add(self.max_future).unwrap_or(Timestamp::MAX);
        let limits = DecodeLimits { max_message_bytes: self.max_message_bytes, latest_occurred_at };
        let mut event = event::decode(payload, &limits)?;
        event.city = self.cities.key(self.cities.resolve(event.city)?);
        Ok(event)
    }

    /// Marks idle every input partition without an event for `idle_after` that `caught_up`
    /// says has been read to its end.
    pub fn mark_idle(&mut self, now: Instant, idle_after: Duration, caught_up: impl Fn(&Source) -> bool) {
        self.progress.mark_idle(now, idle_after, caught_up);
    }

    /// The markers owed to the counting partitions (`Progress::markers`).
    pub fn markers(&mut self) -> Vec<(i32, Routed)> {
        self.progress.markers(self.partitions)
    }
}

/// What the ingest stage has told each counting partition about each input partition it
/// reads.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    sources: HashMap<Source, SourceProgress>,
}

#[derive(Debug)]
struct SourceProgress {
    watermark: Option<Timestamp>,
    idle: bool,
    /// When the last event came (wall clock); when reading started, before any.
    last_event: Instant,
    /// What each counting partition was last told: watermark and idleness.
    told: HashMap<i32, (Option<Timestamp>, bool)>,
}

impl SourceProgress {
    fn new(now: Instant) -> SourceProgress {
        SourceProgress { watermark: None, idle: false, last_event: now, told: HashMap::new() }
    }
}

impl Progress {
    /// Starts following an input partition this instance reads, events or not.
    pub(crate) fn track(&mut self, source: Source, now: Instant) {
        self.sources.entry(source).or_insert_with(|| SourceProgress::new(now));
    }

    /// Notes an event of `source` at `occurred_at` routed to counting partition `to`, and
    /// returns the watermark its record carries.
    pub fn route(&mut self, source: &Source, occurred_at: Timestamp, to: i32, now: Instant) -> Timestamp {
        let p = self.sources.entry(source.clone()).or_insert_with(|| SourceProgress::new(now));
        let watermark = p.watermark.map_or(occurred_at, |w| w.max(occurred_at));
        p.watermark = Some(watermark);
        p.idle = false;
        p.last_event = now;
        p.told.insert(to, (p.watermark, false));
        watermark
    }

    /// Marks idle every input partition without an event for `idle_after` that `caught_up`
    /// says has been read to its end.
    pub(crate) fn mark_idle(&mut self, now: Instant, idle_after: Duration, caught_up: impl Fn(&Source) -> bool) {
        for (source, p) in &mut self.sources {
            if !p.idle && now.duration_since(p.last_event) >= idle_after && caught_up(source) {
                p.idle = true;
            }
        }
    }

    /// The markers owed: for each input partition, every counting partition in `0..partitions`
    /// that has not been told its latest watermark and idleness. Afterwards all are up to date.
    pub(crate) fn markers(&mut self, partitions: i32) -> Vec<(i32, Routed)> {
        let mut out = Vec::new();
        for (source, p) in &mut self.sources {
            // Also a source with nothing to tell yet: that it is being read, not idle.
            for to in 0..partitions {
                if p.told.get(&to) != Some(&(p.watermark, p.idle)) {
                    p.told.insert(to, (p.watermark, p.idle));
                    let marker = Routed { source: source.clone(), watermark: p.watermark, idle: p.idle, event: None };
                    out.push((to, marker));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn source(partition: i32) -> Source {
        Source { topic: "cases".into(), partition }
    }

    #[test]
    fn records_carry_the_highest_event_time_of_their_source() {
        let mut p = Progress::default();
        let now = Instant::now();
        assert_eq!(p.route(&source(0), ts("2022-04-02T00:00:00Z"), 1, now), ts("2022-04-02T00:00:00Z"));
        assert_eq!(p.route(&source(0), ts("2022-04-01T00:00:00Z"), 1, now), ts("2022-04-02T00:00:00Z"), "late event");
        assert_eq!(p.route(&source(1), ts("2022-04-01T00:00:00Z"), 1, now), ts("2022-04-01T00:00:00Z"), "per source");
    }

    #[test]
    fn markers_go_only_to_partitions_behind_and_only_once() {
        let mut p = Progress::default();
        let now = Instant::now();
        p.route(&source(0), ts("2022-04-01T00:00:00Z"), 0, now);
        p.route(&source(0), ts("2022-04-02T00:00:00Z"), 1, now);
        let markers = p.markers(3);
        let mut to: Vec<i32> = markers.iter().map(|(to, _)| *to).collect();
        to.sort();
        assert_eq!(to, [0, 2], "partition 1 already has the latest watermark");
        assert!(markers.iter().all(|(_, r)| r.watermark == Some(ts("2022-04-02T00:00:00Z")) && r.event.is_none()));
        assert!(p.markers(3).is_empty(), "nothing new, no markers");
    }

    #[test]
    fn a_quiet_source_is_idle_only_once_read_to_its_end_and_wakes_with_its_next_event() {
        let mut p = Progress::default();
        let t0 = Instant::now();
        p.track(source(0), t0);
        p.route(&source(1), ts("2022-04-01T00:00:00Z"), 0, t0);
        let later = t0 + Duration::from_secs(60);
        let reading: Vec<_> = p.markers(2).into_iter().filter(|(_, r)| r.source == source(0)).collect();
        assert_eq!(reading.len(), 2, "the tracked source tells every partition it is being read");
        assert!(reading.iter().all(|(_, r)| !r.idle && r.watermark.is_none()));
        p.mark_idle(later, Duration::from_secs(30), |_| false);
        assert!(p.markers(2).is_empty(), "not read to the end: not idle");
        p.mark_idle(later, Duration::from_secs(30), |s| s.partition == 0);
        let idle = p.markers(2);
        assert_eq!(idle.len(), 2, "the source without events tells every partition it is idle");
        assert!(idle.iter().all(|(_, r)| r.idle && r.watermark.is_none() && r.source == source(0)));
        p.route(&source(0), ts("2022-04-03T00:00:00Z"), 1, later);
        let awake = p.markers(2);
        assert_eq!(awake.len(), 1, "partition 0 learns it is active again; partition 1 got the event");
        assert!(!awake[0].1.idle && awake[0].0 == 0);
    }

    #[test]
    fn records_round_trip_as_json() {
        let event = CaseEvent {
            event_id: "e1".into(),
            case_id: "c1".into(),
            city: None,
            occurred_at: ts("2022-04-02T00:00:00Z"),
            change: super::super::event::Change::Closed,
        };
        for r in [
            Routed { source: source(2), watermark: None, idle: true, event: None },
            Routed {
                source: source(2),
                watermark: Some(ts("2022-04-03T00:00:00Z")),
                idle: false,
                event: Some(RoutedEvent { offset: 7, input_timestamp: Some(1), event }),
            },
        ] {
            let json = serde_json::to_vec(&r).unwrap();
            assert_eq!(serde_json::from_slice::<Routed>(&json).unwrap(), r);
        }
    }

    #[test]
    fn a_case_always_lands_on_the_same_partition_and_all_partitions_are_used() {
        assert_eq!(partition_of("2022040100017", 6), partition_of("2022040100017", 6));
        let used: std::collections::BTreeSet<i32> = (0..200).map(|i| partition_of(&format!("case-{i}"), 6)).collect();
        assert_eq!(used.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
    }
}
