//! Partitions stopped before a record this build cannot read (written by a newer version,
//! say, during a rolling upgrade), over every life of the pipeline.
//!
//! Rules:
//! - a partition stops before its unreadable record for the rest of the life: its records are
//!   skipped, and the others go on;
//! - it shows stopped (`hotline_partitions_stopped`) until it is past that record;
//! - a new life tries every partition again: one it still holds shows stopped until a record
//!   of it is read (a changelog partition, until its restore reads it); one it no longer holds
//!   stops showing;
//! - a partition resumes (and says so) only once.

use std::collections::{BTreeSet, HashSet};

use crate::records::Unreadable;
use crate::telemetry::{PartitionResumed, PartitionStopped, Telemetry};

type Partition = (String, i32);

#[derive(Debug, Default)]
pub(super) struct StoppedPartitions {
    /// Shown stopped, whichever life stopped them.
    shown: BTreeSet<Partition>,
    /// Stopped in this life: their records are skipped.
    now: HashSet<Partition>,
    /// Stopped by an earlier life and held again: shown until one of their records is read.
    before: HashSet<Partition>,
}

impl StoppedPartitions {
    /// A new life begins. `held(topic, partition)`: whether it holds the partition (for the
    /// changelog: the `case_events` partition it restores); `unreadable_again(topic,
    /// partition)`: whether its restore stopped there again.
    pub fn new_life(
        &mut self,
        changelog: &str,
        held: impl Fn(&str, i32) -> bool,
        unreadable_again: impl Fn(&str, i32) -> bool,
        telemetry: &Telemetry,
    ) {
        self.now.clear();
        self.before.clear();
        for (topic, partition) in self.shown.clone() {
            let held = held(&topic, partition);
            if held && topic != changelog {
                self.before.insert((topic, partition));
            } else if !(held && unreadable_again(&topic, partition)) {
                self.resume(&topic, partition, telemetry);
            }
        }
    }

    /// Stops `partition` of `topic` before the record at `offset`, for the rest of this life.
    pub fn stop(&mut self, topic: &str, partition: i32, offset: i64, why: &Unreadable, telemetry: &Telemetry) {
        telemetry.emit(PartitionStopped { topic, partition, offset, why });
        self.shown.insert((topic.to_owned(), partition));
        self.now.insert((topic.to_owned(), partition));
    }

    /// The restore of counting partition `partition` stopped before the record at `offset` of
    /// its changelog partition: its `case_events` partition is skipped for this life.
    pub fn stop_restore(
        &mut self,
        (changelog, case_events): (&str, &str),
        partition: i32,
        offset: i64,
        why: &Unreadable,
        telemetry: &Telemetry,
    ) {
        telemetry.emit(PartitionStopped { topic: changelog, partition, offset, why });
        self.shown.insert((changelog.to_owned(), partition));
        self.now.insert((case_events.to_owned(), partition));
    }

    /// Whether this life skips the partition's records.
    pub fn skips(&self, topic: &str, partition: i32) -> bool {
        !self.now.is_empty() && self.now.contains(&(topic.to_owned(), partition))
    }

    /// A record of the partition was read (or its state restored): an earlier life's stop is
    /// over.
    pub fn read(&mut self, topic: &str, partition: i32, telemetry: &Telemetry) {
        if !self.before.is_empty() && self.before.remove(&(topic.to_owned(), partition)) {
            self.resume(topic, partition, telemetry);
        }
    }

    fn resume(&mut self, topic: &str, partition: i32, telemetry: &Telemetry) {
        if self.shown.remove(&(topic.to_owned(), partition)) {
            telemetry.emit(PartitionResumed { topic, partition });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGELOG: &str = "hotline.case_state";

    fn shown(t: &Telemetry) -> Vec<String> {
        t.render().lines().filter(|l| l.starts_with("hotline_partitions_stopped{")).map(str::to_owned).collect()
    }

    #[test]
    fn a_partition_stopped_in_this_life_is_skipped_and_shown() {
        let (t, mut s) = (Telemetry::default(), StoppedPartitions::default());
        assert!(!s.skips("hotline.partials", 0));
        s.stop("hotline.partials", 0, 41, &Unreadable::Key, &t);
        assert!(s.skips("hotline.partials", 0) && !s.skips("hotline.partials", 1));
        assert_eq!(shown(&t), [r#"hotline_partitions_stopped{partition="0",topic="hotline.partials"} 1"#]);
        s.read("hotline.partials", 0, &t);
        assert!(s.skips("hotline.partials", 0), "reading on in this life does not lift it");
    }

    #[test]
    fn a_new_life_shows_a_partition_it_holds_until_a_record_of_it_is_read() {
        let (t, mut s) = (Telemetry::default(), StoppedPartitions::default());
        s.stop("hotline.partials", 0, 41, &Unreadable::Key, &t);
        s.stop("hotline.case_events", 2, 7, &Unreadable::Key, &t);
        s.new_life(CHANGELOG, |topic, _| topic == "hotline.partials", |_, _| false, &t);
        assert!(!s.skips("hotline.partials", 0), "tried again");
        assert_eq!(shown(&t).len(), 1, "case_events 2 is no longer held: {:?}", shown(&t));
        s.read("hotline.partials", 0, &t);
        assert!(shown(&t).is_empty());
        s.read("hotline.partials", 0, &t);
    }

    #[test]
    fn a_changelog_partition_stays_shown_while_its_restore_stops_again() {
        let (t, mut s) = (Telemetry::default(), StoppedPartitions::default());
        s.stop_restore((CHANGELOG, "hotline.case_events"), 1, 9, &Unreadable::Key, &t);
        assert!(s.skips("hotline.case_events", 1) && !s.skips(CHANGELOG, 1));
        s.new_life(CHANGELOG, |_, p| p == 1, |_, p| p == 1, &t);
        s.stop_restore((CHANGELOG, "hotline.case_events"), 1, 9, &Unreadable::Key, &t);
        assert_eq!(shown(&t).len(), 1);
        // Read back by a build that can: the next life's restore succeeds.
        s.new_life(CHANGELOG, |_, p| p == 1, |_, _| false, &t);
        assert!(shown(&t).is_empty());
    }
}
