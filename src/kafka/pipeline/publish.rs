//! Publishing: the instance holding the single `partials` partition adds up the counting
//! partitions' tallies (`domain::city::CityView`) and publishes each month's snapshot
//! revisions (`domain::publisher::Publisher`).
//!
//! A partial is the latest tally of one month on one counting partition or a partition's
//! watermark (`records::PartialKey`). The topic is compacted and every record replaces the
//! previous one with its key, so reading it from the beginning rebuilds the publisher, and
//! revision numbers continue from the snapshots topic.

use std::time::Instant;

use anyhow::Result;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::BaseRecord;

use crate::avro::{Framing, SnapshotCodec};
use crate::config::Settings;
use crate::domain::city::CityView;
use crate::domain::figures::Tally;
use crate::domain::gauges::CityGauges;
use crate::domain::publisher::{PublishRules, Publisher};
use crate::kafka::topics;
use crate::labels::LabelRegistry;
use crate::records::{self, PartialKey, Unreadable, Watermark};
use crate::telemetry::{SnapshotDue, SnapshotUndecodable, Telemetry};

use super::restore::RESTORE_TIMEOUT;
use super::transaction::Output;

pub(crate) struct Publishing {
    /// The `partials` and snapshots topics.
    partials: String,
    snapshots: String,
    zone: TimeZone,
    /// Codes that show as labels of their own in the gauges.
    labels: LabelRegistry,
    city: CityView,
    publisher: Publisher,
    codec: SnapshotCodec,
    /// Where consuming the partials partition resumes after the restore.
    pub next_offset: i64,
    /// A partial this build cannot read, and its offset: the sums would miss it, so nothing
    /// is published in this life.
    pub unreadable: Option<(i64, Unreadable)>,
}

impl Publishing {
    /// Rebuilt from the partials and snapshots topics; each record read is progress of the loop.
    pub fn restore(
        settings: &Settings,
        telemetry: &Telemetry,
        framing: Framing,
        counting_partitions: i32,
    ) -> Result<Publishing> {
        let mut publishing = Publishing {
            partials: settings.topics.partials.clone(),
            snapshots: settings.topics.snapshots.clone(),
            zone: settings.zone.clone(),
            labels: settings.labels.clone(),
            city: CityView::new(
                settings.zone.clone(),
                settings.overflow(),
                settings.retention_months,
                counting_partitions as usize,
            ),
            publisher: Publisher::new(PublishRules {
                zone: settings.zone.clone(),
                zone_name: settings.zone_name.clone(),
                grace: settings.grace,
                min_interval: settings.min_interval,
                ranking: settings.ranking.clone(),
            }),
            codec: SnapshotCodec::new(framing),
            next_offset: 0,
            unreadable: None,
        };
        let p = &mut publishing;
        topics::read_to_end(&settings.kafka, &settings.topics.partials, RESTORE_TIMEOUT, |m| {
            telemetry.progress();
            if p.unreadable.is_none() && p.handle(m).is_none() {
                p.next_offset = m.offset() + 1;
            }
            Ok(())
        })?;
        topics::read_to_end(&settings.kafka, &settings.topics.snapshots, RESTORE_TIMEOUT, |m| {
            telemetry.progress();
            match m.payload().map(|bytes| p.codec.decode(bytes)) {
                Some(Ok(s)) => {
                    p.city.raise_floor(s.as_of);
                    p.publisher.restore(s.month, &s);
                }
                Some(Err(e)) => telemetry.emit(SnapshotUndecodable { offset: m.offset(), error: &e }),
                None => {}
            }
            Ok(())
        })?;
        Ok(publishing)
    }

    /// Takes in one partial. `Some`: this build cannot read it, and publishing stops.
    pub(crate) fn handle(&mut self, m: &BorrowedMessage<'_>) -> Option<Unreadable> {
        let why = self.take(m).err()?;
        self.unreadable = Some((m.offset(), why.clone()));
        Some(why)
    }

    fn take(&mut self, m: &BorrowedMessage<'_>) -> Result<(), Unreadable> {
        let key: PartialKey = records::key(m.key())?;
        let (PartialKey::Tally { partition, .. } | PartialKey::Watermark { partition }) = key;
        if !self.city.counts(partition) {
            return Err(Unreadable::Key);
        }
        match key {
            // Only the default city is published yet.
            PartialKey::Tally { city: Some(city), .. } => return Err(Unreadable::City(city)),
            PartialKey::Tally { partition, city: None, month } => {
                let tally: Option<Tally> = records::decode_or_tombstone(m.payload())?;
                self.city.tally(partition, month, tally, m.timestamp().to_millis());
            }
            PartialKey::Watermark { partition } => {
                let Watermark(at) = records::decode(m.payload())?;
                self.city.partition_reached(partition, at);
            }
        }
        Ok(())
    }

    /// What the city's gauges show.
    pub(crate) fn city(&mut self) -> CityGauges {
        let watermark = self.city.watermark();
        let published = self.publisher.published().collect();
        let publisher = &self.publisher;
        let months =
            self.city.sums().iter().map(|(m, t)| (*m, t, watermark.is_some_and(|w| publisher.is_closed(*m, w))));
        CityGauges::read(months, watermark, &self.zone, published, &self.labels)
    }

    /// Sends the snapshot revisions due now; returns, for each, how long it waited since the
    /// partial that changed its month (seconds), where a partial did.
    pub(crate) fn publish_due(&mut self, out: &Output<'_>, now: Instant) -> Result<Vec<Option<f64>>> {
        if self.unreadable.is_some() {
            return Ok(Vec::new());
        }
        if let Some((kept_from, tombstones)) = self.city.forget_past_retention() {
            // Every counting partition is at least this far, so none writes these months
            // again: their tallies can go from the compacted topic too.
            for (partition, month) in tombstones {
                let key = PartialKey::Tally { partition, city: None, month }.to_string();
                out.send(BaseRecord::<[u8], [u8]>::to(&self.partials).partition(0).key(key.as_bytes()))?;
            }
            self.publisher.forget_before(kept_from);
        }
        let watermark = self.city.watermark();
        let due = self.publisher.due(self.city.sums().iter().map(|(m, t)| (*m, t)), watermark, now, Timestamp::now());
        let topic = &self.snapshots;
        let mut latencies = Vec::new();
        for snapshot in &due {
            let changed_at = self.city.take_changed_at(snapshot.month);
            latencies.push(changed_at.map(|ms| (Timestamp::now().as_millisecond() - ms).max(0) as f64 / 1000.0));
            let bytes = self.codec.encode(snapshot)?;
            let key = snapshot.month.to_string();
            out.send(BaseRecord::to(topic).key(key.as_bytes()).payload(&bytes))?;
            out.telemetry.emit(SnapshotDue {
                month: &snapshot.month,
                revision: snapshot.revision,
                status: snapshot.status.code(),
                received: snapshot.figures.totals.received,
            });
        }
        Ok(latencies)
    }
}
