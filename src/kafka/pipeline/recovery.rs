//! Starting over: the wait between lives (`Backoff`), when a consumer failed for good is
//! replaced by a new one, and when the process gives up.
//!
//! With static membership (`kafka.instance_id`), librdkafka fences a consumer for good when
//! the group coordinator answers that another member holds its `group.instance.id`. After a
//! broker failover that other member is this process's own past self, whose session ran out
//! while the coordinator was away: a new consumer with the same id takes the place back, and
//! the fencing stops. A second live process with the same id fences the new consumer in turn,
//! and the two would fence each other forever. One failover fences a consumer once or twice,
//! and brokers restarted one after another a few times, each replacement possibly within
//! seconds of the last: more than `TWIN_FENCINGS` fencings in a row over more than the
//! session timeout is a second process, and ends this one.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Settings;

/// Fencings in a row that failovers alone may cause: a twin process fences every replacement
/// after its own backoff, so it makes more within seconds.
const TWIN_FENCINGS: u32 = 4;

/// A run of fatal consumer failures, each replacement failing within `hold` of its start.
#[derive(Debug)]
pub(crate) struct FatalStreak {
    window: Duration,
    hold: Duration,
    first: Option<Instant>,
    failures: u32,
    /// When the latest replacement started.
    replaced: Option<Instant>,
}

impl FatalStreak {
    /// `window` is the group's session timeout: a streak of more than `TWIN_FENCINGS`
    /// failures may last that long. A replacement ends the streak once it has held for the
    /// window plus twice `max_backoff`: a twin process fences it only after its own backoff
    /// (up to `max_backoff`) and join, which may take longer than a short session timeout.
    pub fn new(window: Duration, max_backoff: Duration) -> FatalStreak {
        FatalStreak { window, hold: window + 2 * max_backoff, first: None, failures: 0, replaced: None }
    }

    /// A consumer failed for good at `now`: whether to replace it after `wait` (`true`) or
    /// give up. The wait does not count as holding: a backoff longer than the window must not
    /// end a streak.
    pub fn failed(&mut self, now: Instant, wait: Duration) -> bool {
        if self.replaced.is_some_and(|replaced| now.saturating_duration_since(replaced) > self.hold) {
            self.first = None;
            self.failures = 0;
        }
        let first = *self.first.get_or_insert(now);
        self.failures += 1;
        self.replaced = Some(now + wait);
        self.failures <= TWIN_FENCINGS || now.saturating_duration_since(first) <= self.window
    }

    /// How long the current streak has lasted at `now`.
    pub(crate) fn length(&self, now: Instant) -> Duration {
        self.first.map_or(Duration::ZERO, |first| now.saturating_duration_since(first))
    }
}

/// Why the process ends after its consumers kept failing for good.
pub(super) fn gave_up(
    settings: &Settings,
    instance: &str,
    code: RDKafkaErrorCode,
    reason: &str,
    fatal: &FatalStreak,
) -> anyhow::Error {
    let lasted = fatal.length(Instant::now()).as_secs();
    if code == RDKafkaErrorCode::FencedInstanceId {
        anyhow!(
            "another process in consumer group {:?} uses kafka.instance_id {instance:?}: every new consumer was \
             fenced by it for {lasted} s, longer than the session timeout ({} s). Give each instance its own \
             kafka.instance_id",
            settings.kafka.group_id,
            settings.session_timeout.as_secs()
        )
    } else {
        anyhow!("the Kafka consumer failed for good again and again for {lasted} s ({code:?}): {reason}")
    }
}

/// Longest wait between attempts.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Waits between attempts: 0.5 s, doubling up to `MAX_BACKOFF`.
pub(super) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(Duration::from_millis(500))
    }
}

impl Backoff {
    pub fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(45);
    const BACKOFF: Duration = Duration::from_secs(10);

    #[test]
    fn a_fencing_after_a_failover_is_recovered_each_time() {
        let start = Instant::now();
        let mut streak = FatalStreak::new(SESSION, BACKOFF);
        // One fencing per broker failover, minutes apart: each is recovered.
        for minute in [0, 3, 7, 10] {
            assert!(streak.failed(start + Duration::from_secs(60 * minute), Duration::from_secs(1)));
        }
    }

    #[test]
    fn a_few_fencings_in_a_row_are_recovered() {
        let start = Instant::now();
        let mut streak = FatalStreak::new(SESSION, BACKOFF);
        // The replacement joined while the coordinator was still moving: fenced again soon.
        for s in [0, 2, 7, 20, 44] {
            assert!(streak.failed(start + Duration::from_secs(s), Duration::from_secs(1)), "at {s} s");
        }
        // ... and once it held for the session timeout and two backoffs, a later fencing
        // starts a new streak.
        assert!(streak.failed(start + Duration::from_secs(45 + 66), Duration::from_secs(1)));
        assert_eq!(streak.length(start + Duration::from_secs(45 + 66)), Duration::ZERO);
    }

    /// Seen on the three-broker cluster with 6 s sessions: the group coordinator's broker
    /// killed, then 28 s later the broker it had moved to; fenced after each, 24 s apart,
    /// before the first replacement had held for the session timeout and two backoffs.
    #[test]
    fn fencings_after_failovers_in_quick_succession_are_recovered() {
        let start = Instant::now();
        let mut streak = FatalStreak::new(Duration::from_secs(6), BACKOFF);
        for s in [0, 24, 48, 70] {
            assert!(streak.failed(start + Duration::from_secs(s), Duration::from_secs(1)), "at {s} s");
        }
        assert_eq!(streak.length(start + Duration::from_secs(70)), Duration::from_secs(70), "one streak");
        assert!(!streak.failed(start + Duration::from_secs(80), Duration::from_secs(1)), "a fifth is a twin");
    }

    #[test]
    fn two_processes_with_one_id_give_up_after_a_session_timeout() {
        let start = Instant::now();
        // The other process fences each replacement once its own backoff and join are over:
        // seconds after it starts, up to the longest backoff, even past a short session.
        for (session, wait, twin) in [(SESSION, 1, 3), (SESSION, 10, 13), (Duration::from_secs(6), 10, 13)] {
            let mut streak = FatalStreak::new(session, BACKOFF);
            let mut t = 0;
            while streak.failed(start + Duration::from_secs(t), Duration::from_secs(wait)) {
                t += wait + twin;
                assert!(t < 600, "never gave up");
            }
            assert!(t > session.as_secs(), "gave up after {t} s, before a session timeout");
            assert!(streak.length(start + Duration::from_secs(t)) > session);
        }
    }
}
