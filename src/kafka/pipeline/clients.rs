//! The pipeline's consumer and transactional producer: their settings, and moving the
//! consumer's partitions.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::TopicPartitionListElem;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::Settings;
use crate::telemetry::Telemetry;

use crate::kafka::{client_config, set_default};

use super::context::KafkaEvents;
use super::layout::MAX_PRODUCED_BYTES;
use super::transaction::TRANSACTION_TIMEOUT;

/// The pipeline consumer's settings: what exactness needs (refused in `[kafka.properties]`,
/// see `config.rs`), then defaults that the properties override.
pub(super) fn consumer_config(settings: &Settings) -> ClientConfig {
    let mut consumer_config = client_config(&settings.kafka);
    if let Some(id) = &settings.kafka.instance_id {
        consumer_config.set("group.instance.id", id);
    }
    consumer_config
        .set("group.id", &settings.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // A dead instance's partitions move to the others after this long.
        .set("session.timeout.ms", settings.session_timeout.as_millis().to_string())
        .set("heartbeat.interval.ms", settings.heartbeat_interval.as_millis().to_string())
        // Consumer lag per partition, for the metrics and to tell idle inputs.
        .set("statistics.interval.ms", "5000");
    // librdkafka pauses fetching a partition for this long whenever its local queue is over
    // its thresholds: at its default (1 s) the loop polled an empty queue half the time.
    set_default(&mut consumer_config, "fetch.queue.backoff.ms", "10");
    // Prefetch a few megabytes, not librdkafka's 64 MB (its fetches shrink to match, unless
    // `fetch.max.bytes` is set): at 1 million cases the default was a third of the process's
    // memory, and a catch-up ran no slower without it.
    set_default(&mut consumer_config, "queued.max.messages.kbytes", "4096");
    set_default(
        &mut consumer_config,
        "max.poll.interval.ms",
        &crate::config::DEFAULT_MAX_POLL_INTERVAL.as_millis().to_string(),
    );
    consumer_config
}

/// The transactional producer's settings, as `consumer_config`.
pub(super) fn producer_config(settings: &Settings, instance: &str) -> ClientConfig {
    let kafka = &settings.kafka;
    let mut producer_config = client_config(kafka);
    producer_config.set("transactional.id", format!("{}-{instance}", kafka.group_id));
    // A dead letter must always fit: `[kafka.properties]` may raise this, never lower it.
    let max_bytes = producer_config.get("message.max.bytes").and_then(|v| v.parse::<usize>().ok());
    if max_bytes.is_none_or(|n| n < MAX_PRODUCED_BYTES) {
        producer_config.set("message.max.bytes", MAX_PRODUCED_BYTES.to_string());
    }
    // An instance that dies mid-transaction holds up its partitions' readers this long.
    set_default(&mut producer_config, "transaction.timeout.ms", "10000");
    set_default(&mut producer_config, "linger.ms", "5");
    set_default(&mut producer_config, "compression.type", "lz4");
    producer_config
}

pub(super) fn consumer(
    settings: &Settings,
    telemetry: &Telemetry,
    rebalanced: &Arc<AtomicBool>,
) -> Result<BaseConsumer<KafkaEvents>> {
    let consumer: BaseConsumer<KafkaEvents> = consumer_config(settings)
        .create_with_context(KafkaEvents {
            telemetry: telemetry.clone(),
            rebalanced: rebalanced.clone(),
            joined: Arc::default(),
            resets_seen: Arc::default(),
            lags: Arc::default(),
        })
        .context("creating the consumer")?;
    let t = &settings.topics;
    let mut subscribed: Vec<&str> = t.inputs().to_vec();
    subscribed.extend([t.case_events.as_str(), t.partials.as_str()]);
    consumer.subscribe(&subscribed).context("subscribing")?;
    Ok(consumer)
}

/// The committed offsets (with their metadata) of `topic`'s first `partitions` partitions.
pub(super) fn committed_offsets(
    consumer: &BaseConsumer<KafkaEvents>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<TopicPartitionList> {
    let mut all = TopicPartitionList::new();
    for p in 0..partitions {
        all.add_partition(topic, p);
    }
    consumer.committed_offsets(all, timeout).context("reading committed offsets")
}

/// Each partition's committed offset, `None` where there is none yet.
pub(super) fn offsets(committed: &[TopicPartitionListElem<'_>]) -> Vec<(i32, Option<i64>)> {
    let offset = |p: &TopicPartitionListElem<'_>| if let Offset::Offset(n) = p.offset() { Some(n) } else { None };
    committed.iter().map(|p| (p.partition(), offset(p))).collect()
}

/// Stops fetching one partition.
pub(super) fn pause(consumer: &BaseConsumer<KafkaEvents>, topic: &str, partition: i32) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    consumer.pause(&tpl).with_context(|| format!("pausing {topic}[{partition}]"))
}

/// Moves every assigned partition to its committed offset (the beginning where none is
/// committed yet), dropping whatever was read after the last commit; the partials partition
/// goes to where the publisher's restore stopped reading.
pub(super) fn seek(
    consumer: &BaseConsumer<KafkaEvents>,
    committed: &TopicPartitionList,
    partials: &str,
    partials_next: Option<i64>,
) -> Result<()> {
    if committed.count() == 0 {
        return Ok(());
    }
    let mut positions = TopicPartitionList::new();
    for p in committed.elements() {
        let offset = match (p.topic() == partials, partials_next, p.offset()) {
            (true, Some(next), _) => Offset::Offset(next),
            (_, _, Offset::Offset(n)) => Offset::Offset(n),
            _ => Offset::Beginning,
        };
        positions.add_partition_offset(p.topic(), p.partition(), offset)?;
    }
    for p in consumer.seek_partitions(positions, TRANSACTION_TIMEOUT)?.elements() {
        if let Err(e) = p.error() {
            return Err(e).with_context(|| format!("seeking {}[{}]", p.topic(), p.partition()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(kafka: &str) -> Settings {
        Config::parse(&format!("[kafka]\nbrokers = \"a:1\"\ninstance_id = \"hotline-0\"\n{kafka}"), [])
            .unwrap()
            .settings()
            .unwrap()
    }

    #[test]
    fn the_session_survives_a_broker_restart_by_default() {
        let c = consumer_config(&settings(""));
        assert_eq!(c.get("session.timeout.ms"), Some("45000"));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("3000"));
        assert_eq!(c.get("group.instance.id"), Some("hotline-0"));
        let c = consumer_config(&settings("session_timeout = \"20s\"\nheartbeat_interval = \"2s\"\n"));
        assert_eq!(c.get("session.timeout.ms"), Some("20000"));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("2000"));
    }

    #[test]
    fn kafka_properties_win_over_defaults() {
        let s = settings(
            "[kafka.properties]\n\"queue.buffering.max.ms\" = \"50\"\n\"compression.type\" = \"zstd\"\n\
             \"max.poll.interval.ms\" = \"600000\"\n\"transaction.timeout.ms\" = \"60000\"\n",
        );
        let p = producer_config(&s, "hotline-0");
        // Set under librdkafka's other name for linger.ms: not set twice.
        assert_eq!((p.get("queue.buffering.max.ms"), p.get("linger.ms")), (Some("50"), None));
        assert_eq!(p.get("compression.type"), Some("zstd"));
        assert_eq!(p.get("transaction.timeout.ms"), Some("60000"));
        assert_eq!(p.get("transactional.id"), Some("hotline-hotline-0"));
        assert_eq!(consumer_config(&s).get("max.poll.interval.ms"), Some("600000"));
        // Dead letters must fit: raised, never lowered.
        let small = settings("[kafka.properties]\n\"message.max.bytes\" = \"1000\"\n");
        assert_eq!(
            producer_config(&small, "i").get("message.max.bytes"),
            Some(MAX_PRODUCED_BYTES.to_string().as_str())
        );
        let large = settings("[kafka.properties]\n\"message.max.bytes\" = \"100000000\"\n");
        assert_eq!(producer_config(&large, "i").get("message.max.bytes"), Some("100000000"));
        // Untouched defaults stay.
        let d = producer_config(&settings(""), "hotline-0");
        assert_eq!(d.get("linger.ms"), Some("5"));
        assert_eq!(d.get("compression.type"), Some("lz4"));
        let c = consumer_config(&settings(""));
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("4096"));
    }
}
