//! The internal topic between ingesting and counting.
//!
//! Upstream producers partition their topics as they like, so the ingest stage re-keys every
//! valid event by case id onto the internal topic: all events of a case meet on one counting
//! partition whatever partitioner upstream used. Each record also carries the event time its
//! input partition has reached, so a counting partition knows how far every input partition
//! has got even when few of its events land there; when an input partition moves on without
//! sending a counting partition anything, a record without an event (a marker) tells it.

use std::collections::HashMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::event::CaseEvent;

/// The counting partition of a case: CRC-32 of its id modulo the partitions of the internal
/// topic. Fixed forever for a given partition count, which therefore must not change.
pub fn partition_of(case_id: &str, partitions: i32) -> i32 {
    (crc32fast::hash(case_id.as_bytes()) % partitions.max(1) as u32) as i32
}

/// An input partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
}

/// A record of the internal topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed {
    pub source: Source,
    /// The event time `source` has reached: every earlier event of `source` routed to this
    /// counting partition comes before this record.
    pub watermark: Timestamp,
    /// The event and its offset in `source`; none in a marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<RoutedEvent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedEvent {
    pub offset: i64,
    /// The input message's Kafka timestamp (milliseconds), for the latency metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_timestamp: Option<i64>,
    #[serde(flatten)]
    pub event: CaseEvent,
}

/// What the ingest stage has told each counting partition about each input partition.
#[derive(Debug, Default)]
pub struct Progress {
    sources: HashMap<Source, SourceProgress>,
}

#[derive(Debug)]
struct SourceProgress {
    watermark: Timestamp,
    /// The watermark each counting partition was last sent.
    told: HashMap<i32, Timestamp>,
}

impl Progress {
    /// Notes an event of `source` at `occurred_at` routed to counting partition `to`, and
    /// returns the watermark its record carries.
    pub fn route(&mut self, source: &Source, occurred_at: Timestamp, to: i32) -> Timestamp {
        let p = self
            .sources
            .entry(source.clone())
            .or_insert_with(|| SourceProgress { watermark: occurred_at, told: HashMap::new() });
        p.watermark = p.watermark.max(occurred_at);
        p.told.insert(to, p.watermark);
        p.watermark
    }

    /// The markers owed: for each input partition, every counting partition in `0..partitions`
    /// that has not been told its latest watermark. Afterwards all are up to date.
    pub fn markers(&mut self, partitions: i32) -> Vec<(i32, Routed)> {
        let mut out = Vec::new();
        for (source, p) in &mut self.sources {
            for to in 0..partitions {
                if p.told.get(&to) != Some(&p.watermark) {
                    p.told.insert(to, p.watermark);
                    out.push((to, Routed { source: source.clone(), watermark: p.watermark, event: None }));
                }
            }
        }
        out
    }

    /// Forgets everything, for input partitions that may have moved to another instance.
    pub fn clear(&mut self) {
        self.sources.clear();
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
        assert_eq!(p.route(&source(0), ts("2022-04-02T00:00:00Z"), 1), ts("2022-04-02T00:00:00Z"));
        assert_eq!(p.route(&source(0), ts("2022-04-01T00:00:00Z"), 1), ts("2022-04-02T00:00:00Z"), "late event");
        assert_eq!(p.route(&source(1), ts("2022-04-01T00:00:00Z"), 1), ts("2022-04-01T00:00:00Z"), "per source");
    }

    #[test]
    fn markers_go_only_to_partitions_behind_and_only_once() {
        let mut p = Progress::default();
        p.route(&source(0), ts("2022-04-01T00:00:00Z"), 0);
        p.route(&source(0), ts("2022-04-02T00:00:00Z"), 1);
        let markers = p.markers(3);
        let to: Vec<i32> = {
            let mut v: Vec<i32> = markers.iter().map(|(to, _)| *to).collect();
            v.sort();
            v
        };
        assert_eq!(to, [0, 2], "partition 1 already has the latest watermark");
        assert!(markers.iter().all(|(_, r)| r.watermark == ts("2022-04-02T00:00:00Z") && r.event.is_none()));
        assert!(p.markers(3).is_empty(), "nothing new, no markers");
    }

    #[test]
    fn records_round_trip_as_json() {
        let event = CaseEvent {
            event_id: "e1".into(),
            case_id: "c1".into(),
            occurred_at: ts("2022-04-02T00:00:00Z"),
            change: super::super::event::Change::Closed,
        };
        for r in [
            Routed { source: source(2), watermark: ts("2022-04-02T00:00:00Z"), event: None },
            Routed {
                source: source(2),
                watermark: ts("2022-04-03T00:00:00Z"),
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
