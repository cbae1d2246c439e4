//! `hotline snapshot show`: the latest revision of a month, read back from the snapshots topic.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use rdkafka::message::Message;

use crate::avro::{Framing, SnapshotCodec};
use crate::config::{Config, KafkaConfig};
use crate::domain::month::Month;
use crate::domain::snapshot::Snapshot;
use crate::kafka::topics::{key_str, read_to_end};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Json,
    Table,
}

pub async fn show(config: &Path, month: &str, format: Format) -> Result<()> {
    let config = Config::load(config)?;
    let month: Month = month.parse().with_context(|| format!("--month {month:?}"))?;
    let kafka = config.kafka.clone();
    let topic = config.topics.snapshots.clone();
    let latest = tokio::task::spawn_blocking(move || latest(&kafka, &topic, month)).await??;
    let Some(snapshot) = latest else {
        bail!("no snapshot of {month} has been published to {}", config.topics.snapshots);
    };
    match format {
        Format::Json => println!("{}", snapshot.to_json()),
        Format::Table => print!("{}", snapshot.to_table()),
    }
    Ok(())
}

/// The highest revision of `month` on the snapshots topic.
pub fn latest(kafka: &KafkaConfig, topic: &str, month: Month) -> Result<Option<Snapshot>> {
    Ok(latest_of(kafka, topic, &[month])?.remove(&month))
}

/// The highest revision of each of `months` that has one, in one read of the topic.
pub(crate) fn latest_of(kafka: &KafkaConfig, topic: &str, months: &[Month]) -> Result<BTreeMap<Month, Snapshot>> {
    let codec = SnapshotCodec::new(Framing::SingleObject);
    let keys: Vec<String> = months.iter().map(Month::to_string).collect();
    let mut latest: BTreeMap<Month, Snapshot> = BTreeMap::new();
    read_to_end(kafka, topic, Duration::from_secs(30), |m| {
        if !key_str(m).is_some_and(|k| keys.iter().any(|key| key == k)) {
            return Ok(());
        }
        if let Some(bytes) = m.payload() {
            let s =
                codec.decode(bytes).with_context(|| format!("snapshot at offset {} does not decode", m.offset()))?;
            if latest.get(&s.month).is_none_or(|l| s.revision > l.revision) {
                latest.insert(s.month, s);
            }
        }
        Ok(())
    })?;
    Ok(latest)
}
