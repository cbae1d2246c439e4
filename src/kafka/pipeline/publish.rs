//! Publishing: the instance holding the single `partials` partition adds up the counting
//! partitions' tallies (`domain::city::CityView`) and publishes each city's month's snapshot
//! revisions (`domain::publisher::Publisher`), then, in province mode, the province's, in the
//! same transaction: the province's month closes with the revisions that close its cities'.
//!
//! A partial is the latest tally of one month on one counting partition or a partition's
//! watermark (`records::PartialKey`). The topic is compacted and every record replaces the
//! previous one with its key, so reading it from the beginning rebuilds the publisher, and
//! revision numbers continue from the snapshots topic.

use std::collections::BTreeMap;
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
use crate::domain::month::Month;
use crate::domain::province::{Cities, CityCode};
use crate::domain::publisher::{PublishRules, Publisher};
use crate::domain::publishers::Publishers;
use crate::domain::snapshot::MadeBy;
use crate::kafka::topics;
use crate::labels::LabelRegistry;
use crate::records::{self, PartialKey, Unreadable, Watermark};
use crate::rules::{self, Rules};
use crate::telemetry::{FiguresChangedByRules, SnapshotDue, SnapshotUndecodable, Telemetry};

use super::restore::RESTORE_TIMEOUT;
use super::transaction::Output;

pub(crate) struct Publishing {
    /// The `partials` and snapshots topics.
    partials: String,
    snapshots: String,
    zone: TimeZone,
    /// Each city's codes that show as labels of their own in the gauges: its registry's.
    labels: BTreeMap<CityCode, LabelRegistry>,
    /// The partitions' tallies summed, per city.
    view: CityView,
    /// A publisher per city and the province's, their snapshots naming their rules' fingerprint.
    publishers: Publishers,
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
            labels: settings.cities.iter().map(|c| (c.code, c.labels.clone())).collect(),
            view: CityView::new(settings.cities(), settings.retention_months, counting_partitions as usize),
            publishers: Publishers::new(BTreeMap::new(), None),
            codec: SnapshotCodec::new(framing),
            next_offset: 0,
            unreadable: None,
        };
        publishing.publishers = publishers(settings, publishing.view.cities());
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
                    p.view.raise_floor(s.as_of);
                    p.publishers.restore(p.view.cities().of_key(s.city), &s);
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
        // Which deployment owns the topics (`owner.rs`): no figure.
        if m.key().is_some_and(|k| k.starts_with(super::owner::OWNER.as_bytes())) {
            return Ok(());
        }
        let key: PartialKey = records::key(m.key())?;
        let (PartialKey::Tally { partition, .. } | PartialKey::Watermark { partition }) = key;
        if !self.view.counts(partition) {
            return Err(Unreadable::Key);
        }
        match key {
            PartialKey::Tally { partition, city, month } => {
                let cities = self.view.cities();
                let city = cities.of_key(city).ok_or(Unreadable::NoDefaultCity)?;
                if cities.rules(city).is_none() {
                    return Err(Unreadable::City(city));
                }
                let tally: Option<Tally> = records::decode_or_tombstone(m.payload())?;
                self.view.tally(partition, city, month, tally, m.timestamp().to_millis());
            }
            PartialKey::Watermark { partition } => {
                let Watermark(at) = records::decode(m.payload())?;
                self.view.partition_reached(partition, at);
            }
        }
        Ok(())
    }

    /// What each city's gauges show, by its `city` label: its division code, empty for the
    /// unnamed city of a single-city deployment.
    pub(crate) fn cities(&mut self) -> Vec<(String, CityGauges)> {
        let watermark = self.view.watermark();
        let (sums, publishers) = (self.view.sums(), &self.publishers);
        let mut gauges = Vec::with_capacity(self.labels.len());
        for (&city, labels) in &self.labels {
            let publisher = publishers.city(city);
            let published = publisher.map(|p| p.published().collect()).unwrap_or_default();
            let is_closed = |m: Month| watermark.is_some_and(|w| publisher.is_some_and(|p| p.is_closed(m, w)));
            let months = sums.iter().filter(|((c, _), _)| *c == city).map(|((_, m), t)| (*m, t, is_closed(*m)));
            let label = if city == CityCode::UNNAMED { String::new() } else { city.to_string() };
            gauges.push((label, CityGauges::read(months, watermark, &self.zone, published, labels)));
        }
        gauges
    }

    /// Sends the snapshot revisions due now; returns, for each, how long it waited since the
    /// partial that changed its month (seconds), where a partial did.
    pub(crate) fn publish_due(&mut self, out: &Output<'_>, now: Instant) -> Result<Vec<Option<f64>>> {
        if self.unreadable.is_some() {
            return Ok(Vec::new());
        }
        if let Some((kept_from, tombstones)) = self.view.forget_past_retention() {
            // Every counting partition is at least this far, so none writes these months
            // again: their tallies can go from the compacted topic too.
            for (partition, city, month) in tombstones {
                let key = PartialKey::Tally { partition, city: self.view.cities().key(city), month }.to_string();
                out.send_keyed(&self.partials, 0, &key, None)?;
            }
            self.publishers.forget_before(kept_from);
        }
        let watermark = self.view.watermark();
        let due = self.publishers.due(self.view.sums(), watermark, now, Timestamp::now(), |_| true);
        // Months whose figures a restart under other rules changed: said once, with the new
        // revision that names the new rules.
        for change in self.publishers.take_rules_changes() {
            out.telemetry.emit(FiguresChangedByRules { key: &change.key, before: &change.before, now: &change.now });
        }
        let topic = &self.snapshots;
        let mut latencies = Vec::new();
        for (city, snapshot) in &due {
            // One entry per snapshot (the telemetry counts them); the province's has no partial of its own.
            let changed_at = city.and_then(|city| self.view.take_changed_at(city, snapshot.month));
            latencies.push(changed_at.map(|ms| (Timestamp::now().as_millisecond() - ms).max(0) as f64 / 1000.0));
            let bytes = self.codec.encode(snapshot)?;
            let key = snapshot.key();
            out.send(BaseRecord::to(topic).key(key.as_bytes()).payload(&bytes))?;
            out.telemetry.emit(SnapshotDue {
                key: &key,
                revision: snapshot.revision,
                status: snapshot.status.code(),
                received: snapshot.figures.totals.received,
            });
        }
        Ok(latencies)
    }
}

/// A publisher per city of `settings` and, in province mode, the province's, each naming the
/// fingerprint of its rules.
pub(crate) fn publishers(settings: &Settings, cities: &Cities) -> Publishers {
    let rules = |city: Option<CityCode>, made_by: &Rules| PublishRules {
        city,
        zone: settings.zone.clone(),
        zone_name: settings.zone_name.clone(),
        grace: settings.grace,
        min_interval: settings.min_interval,
        ranking: settings.ranking.clone(),
        made_by: MadeBy { rules_fingerprint: made_by.fingerprint.clone(), build: rules::BUILD.to_owned() },
    };
    let by_city = Rules::of_cities(settings)
        .into_iter()
        .map(|(city, made_by)| (city.code, Publisher::new(rules(cities.key(city.code), &made_by))));
    let province = settings.province.as_ref().map(|_| {
        let names = settings.cities.iter().map(|c| (c.code, c.name.clone().unwrap_or_default())).collect();
        (Publisher::new(rules(None, &Rules::of_province(settings))), names)
    });
    Publishers::new(by_city.collect(), province)
}
