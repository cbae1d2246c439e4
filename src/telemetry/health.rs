//! Liveness and readiness: what `/healthz` and `/readyz` answer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Liveness and readiness as `/healthz` and `/readyz` report them.
pub(crate) struct Health {
    pub(super) ready: AtomicBool,
    pub(super) kafka_ok: AtomicBool,
    /// The pipeline has ended: nothing is counted any more.
    pub(super) ended: AtomicBool,
    /// When the pipeline loop last showed progress, in milliseconds since `born`, plus one
    /// (0: not yet started, not watched).
    progress: AtomicU64,
    /// How long without progress makes the loop stalled, in milliseconds (0: not watched).
    pub(super) stalled_after: AtomicU64,
    born: Instant,
}

/// What `/healthz` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    Alive,
    /// The pipeline returned or panicked: the process must exit.
    Ended,
    /// The pipeline loop has not moved (not even an empty poll) for this long.
    Stalled(Duration),
}

impl Default for Health {
    fn default() -> Health {
        Health {
            ready: AtomicBool::new(false),
            kafka_ok: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            stalled_after: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
}

impl Health {
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self.kafka_ok.load(Ordering::Relaxed)
            && self.liveness() == Liveness::Alive
    }

    pub fn liveness(&self) -> Liveness {
        self.liveness_at(Instant::now())
    }

    fn liveness_at(&self, now: Instant) -> Liveness {
        if self.ended.load(Ordering::Relaxed) {
            return Liveness::Ended;
        }
        let (progress, stalled_after) =
            (self.progress.load(Ordering::Relaxed), self.stalled_after.load(Ordering::Relaxed));
        if progress == 0 || stalled_after == 0 {
            return Liveness::Alive;
        }
        let since = now.saturating_duration_since(self.born + Duration::from_millis(progress - 1));
        if since > Duration::from_millis(stalled_after) { Liveness::Stalled(since) } else { Liveness::Alive }
    }

    pub(super) fn progressed_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.born).as_millis() as u64 + 1;
        self.progress.store(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_fails_once_the_pipeline_ends_or_stalls() {
        let h = Health::default();
        let t0 = h.born;
        // Not watched before the pipeline starts (it may wait a long time for the brokers).
        assert_eq!(h.liveness_at(t0 + Duration::from_secs(3600)), Liveness::Alive);
        h.stalled_after.store(120_000, Ordering::Relaxed);
        h.progressed_at(t0 + Duration::from_secs(10));
        assert_eq!(h.liveness_at(t0 + Duration::from_secs(130)), Liveness::Alive);
        assert_eq!(h.liveness_at(t0 + Duration::from_secs(131)), Liveness::Stalled(Duration::from_secs(121)));
        h.progressed_at(t0 + Duration::from_secs(131));
        assert_eq!(h.liveness_at(t0 + Duration::from_secs(132)), Liveness::Alive);

        // Readiness needs a live pipeline as well as Kafka and a restored state.
        h.ready.store(true, Ordering::Relaxed);
        h.kafka_ok.store(true, Ordering::Relaxed);
        h.progressed_at(Instant::now());
        assert!(h.is_ready());
        h.ended.store(true, Ordering::Relaxed);
        assert_eq!(h.liveness(), Liveness::Ended);
        assert!(!h.is_ready());
    }
}
