//! When a consumer failed for good is replaced by a new one, and when the process gives up.
//!
//! With static membership (`kafka.instance_id`), librdkafka fences a consumer for good when
//! the group coordinator answers that another member holds its `group.instance.id`. After a
//! broker failover that other member is this process's own past self, whose session ran out
//! while the coordinator was away: a new consumer with the same id takes the place back, and
//! the fencing stops. A second live process with the same id fences the new consumer in turn,
//! and the two would fence each other forever: fencing that goes on for longer than the
//! session timeout is that, and ends the process.

use std::time::{Duration, Instant};

/// A run of fatal consumer failures, each replacement failing within `window` of its start.
#[derive(Debug)]
pub struct FatalStreak {
    window: Duration,
    first: Option<Instant>,
    /// When the latest replacement started.
    replaced: Option<Instant>,
}

impl FatalStreak {
    /// `window` is the group's session timeout: a replacement that held for that long without
    /// failing again ends the streak.
    pub fn new(window: Duration) -> FatalStreak {
        FatalStreak { window, first: None, replaced: None }
    }

    /// A consumer failed for good at `now`: whether to replace it after `wait` (`true`) or
    /// give up. The wait does not count as holding: a backoff longer than the window must not
    /// end a streak.
    pub fn failed(&mut self, now: Instant, wait: Duration) -> bool {
        if self.replaced.is_some_and(|replaced| now.saturating_duration_since(replaced) > self.window) {
            self.first = None;
        }
        let first = *self.first.get_or_insert(now);
        self.replaced = Some(now + wait);
        now.saturating_duration_since(first) <= self.window
    }

    /// How long the current streak has lasted at `now`.
    pub fn length(&self, now: Instant) -> Duration {
        self.first.map_or(Duration::ZERO, |first| now.saturating_duration_since(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(45);

    #[test]
    fn a_fencing_after_a_failover_is_recovered_each_time() {
        let start = Instant::now();
        let mut streak = FatalStreak::new(SESSION);
        // One fencing per broker failover, minutes apart: each is recovered.
        for minute in [0, 3, 7, 8] {
            assert!(streak.failed(start + Duration::from_secs(60 * minute), Duration::from_secs(1)));
        }
    }

    #[test]
    fn a_few_fencings_in_a_row_are_recovered() {
        let start = Instant::now();
        let mut streak = FatalStreak::new(SESSION);
        // The replacement joined while the coordinator was still moving: fenced again soon.
        for s in [0, 2, 7, 20, 44] {
            assert!(streak.failed(start + Duration::from_secs(s), Duration::from_secs(1)), "at {s} s");
        }
        // ... and once it held for a session timeout, a later fencing starts a new streak.
        assert!(streak.failed(start + Duration::from_secs(45 + 46), Duration::from_secs(1)));
        assert_eq!(streak.length(start + Duration::from_secs(45 + 46)), Duration::ZERO);
    }

    #[test]
    fn two_processes_with_one_id_give_up_after_a_session_timeout() {
        let start = Instant::now();
        // The other process fences each replacement within seconds of its start, even once
        // the backoff between replacements has grown past the session timeout.
        for wait in [1, 60] {
            let mut streak = FatalStreak::new(SESSION);
            let mut t = 0;
            while streak.failed(start + Duration::from_secs(t), Duration::from_secs(wait)) {
                t += wait + 3;
                assert!(t < 600, "never gave up");
            }
            assert!(t > SESSION.as_secs(), "gave up after {t} s, before a session timeout");
            assert!(streak.length(start + Duration::from_secs(t)) > SESSION);
        }
    }
}
