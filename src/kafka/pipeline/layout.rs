//! The topics the pipeline owns and the partition counts it relies on.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::config::Settings;

use crate::kafka::topics::{self, TopicSpec};

/// How long to wait for a topic's configuration (a broker answers in milliseconds).
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A topic's `max.message.bytes` unless set otherwise.
pub const KAFKA_DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Dead letters keep the rejected payload unchanged up to this size, or less when the
/// dead-letter topic takes less; a larger payload is dropped (the headers still say where it
/// was), so the broker never refuses a dead letter and no input can stall the pipeline.
pub const DEAD_LETTER_MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// Room for a dead letter's key, headers and batch framing besides its payload.
pub(super) const DEAD_LETTER_HEADROOM: usize = 64 * 1024;
/// Largest message the pipeline produces: a dead letter's payload plus its key and headers.
pub(super) const MAX_PRODUCED_BYTES: usize = DEAD_LETTER_MAX_PAYLOAD + DEAD_LETTER_HEADROOM;

pub(super) fn owned_topics(settings: &Settings) -> Vec<TopicSpec<'_>> {
    let t = &settings.topics;
    let n = settings.kafka.partitions;
    vec![
        TopicSpec { name: &t.case_events, partitions: n, compacted: false, max_message_bytes: None },
        TopicSpec { name: &t.changelog, partitions: n, compacted: true, max_message_bytes: None },
        // A month's tally carries every open case's deadline: let it grow.
        TopicSpec { name: &t.partials, partitions: 1, compacted: true, max_message_bytes: Some(MAX_PRODUCED_BYTES) },
        TopicSpec { name: &t.snapshots, partitions: n, compacted: true, max_message_bytes: None },
        TopicSpec {
            name: &t.dead_letters,
            partitions: n,
            compacted: false,
            max_message_bytes: Some(MAX_PRODUCED_BYTES),
        },
    ]
}

/// State or offsets made for another count of counting partitions than the topics have: no
/// life can count on them, and the pipeline ends.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} made for {made_for} counting partitions, but {topic} has {counting_partitions}: a partition count \
     grows only through `hotline rescale --partitions {counting_partitions}`, which also finishes a rescale it \
     started"
)]
pub(crate) struct OtherCount {
    /// What was made for another count.
    pub what: String,
    pub made_for: i32,
    pub topic: String,
    pub counting_partitions: i32,
}

/// The metadata committed with each `case_events` offset: the count of counting partitions the
/// state behind it was made for, which every instance checks, whatever partitions it holds.
pub(super) fn offsets_metadata(counting_partitions: i32) -> String {
    format!("{OFFSETS_METADATA}{counting_partitions}")
}

/// The count `offsets_metadata` names; `None` for metadata of earlier builds (empty).
pub(super) fn made_for(metadata: &str) -> Option<i32> {
    metadata.strip_prefix(OFFSETS_METADATA)?.parse().ok()
}

const OFFSETS_METADATA: &str = "hotline.counting_partitions=";

/// The partition counts the pipeline relies on.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    /// Partitions of `case_events` and of the changelog: the counting partitions.
    pub counting_partitions: i32,
    /// Every input partition when the pipeline started.
    pub inputs: Vec<(String, i32)>,
    /// Largest payload a dead letter keeps.
    pub dead_letter_max_payload: usize,
}

impl Layout {
    pub fn check(settings: &Settings, partitions: &HashMap<String, i32>) -> Result<Layout> {
        let t = &settings.topics;
        let count = |name: &str| partitions.get(name).copied().unwrap_or(0);
        let counting_partitions = count(&t.case_events);
        if count(&t.changelog) != counting_partitions {
            bail!(
                "{} has {} partitions but {} has {}: partition p of the changelog holds the cases of partition p \
                 of the events, so both need the same count",
                t.changelog,
                count(&t.changelog),
                t.case_events,
                counting_partitions
            );
        }
        if count(&t.partials) != 1 {
            bail!("{} must have exactly one partition (it has {})", t.partials, count(&t.partials));
        }
        let inputs = t.inputs().iter().flat_map(|topic| (0..count(topic)).map(|p| (topic.to_string(), p))).collect();
        Ok(Layout { counting_partitions, inputs, dead_letter_max_payload: DEAD_LETTER_MAX_PAYLOAD })
    }

    /// Sets the largest payload a dead letter keeps from the dead-letter topic's limit.
    pub async fn read_dead_letter_limit(&mut self, settings: &Settings) {
        // A dead-letter topic made before hotline may take less than it would create. A broker
        // that does not say is taken to have Kafka's default limit, so that no dead letter can be
        // refused.
        let dead_letters = &settings.topics.dead_letters;
        let described = match settings.dead_letter_topic_limit {
            Some(known) => Ok(known),
            None => topics::max_message_bytes(&settings.kafka, dead_letters, DESCRIBE_TIMEOUT).await,
        };
        let limit = match described {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), default = KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
                    "could not read the dead-letter topic's max.message.bytes; assuming Kafka's default");
                KAFKA_DEFAULT_MAX_MESSAGE_BYTES
            }
        };
        self.dead_letter_max_payload = limit.saturating_sub(DEAD_LETTER_HEADROOM).min(DEAD_LETTER_MAX_PAYLOAD);
    }
}
