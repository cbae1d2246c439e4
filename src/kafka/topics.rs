//! Topics `hotline` owns (created when missing) and reading a topic to its end, which is how
//! state and revision numbers are rebuilt on start.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;

use super::client_config;

/// A topic to create when missing.
pub struct TopicSpec<'a> {
    pub name: &'a str,
    pub partitions: i32,
    pub compacted: bool,
    /// `max.message.bytes` for the topic, when it must hold larger messages than the default.
    pub max_message_bytes: Option<usize>,
}

/// Creates the topics that do not exist yet (existing topics are left as they are) and returns
/// the partition count of each.
pub async fn ensure(kafka: &KafkaConfig, topics: &[TopicSpec<'_>]) -> Result<HashMap<String, i32>> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(kafka).create().context("creating the Kafka admin client")?;
    let metadata =
        admin.inner().fetch_metadata(None, Duration::from_secs(30)).context("reading the cluster's metadata")?;
    let mut partitions: HashMap<String, i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect();
    let max_bytes: Vec<Option<String>> = topics.iter().map(|t| t.max_message_bytes.map(|n| n.to_string())).collect();
    let new: Vec<NewTopic> = topics
        .iter()
        .zip(&max_bytes)
        .filter(|(t, _)| !partitions.contains_key(t.name))
        .map(|(t, max_bytes)| {
            let mut topic = NewTopic::new(t.name, t.partitions, TopicReplication::Fixed(kafka.replication_factor));
            if t.compacted {
                topic = topic.set("cleanup.policy", "compact");
            }
            if let Some(n) = max_bytes {
                topic = topic.set("max.message.bytes", n);
            }
            topic
        })
        .collect();
    for t in topics {
        partitions.entry(t.name.to_owned()).or_insert(t.partitions);
    }
    if new.is_empty() {
        return Ok(partitions);
    }
    let results = admin
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))))
        .await
        .context("creating topics")?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("could not create topic {name}: {code}"),
        }
    }
    Ok(partitions)
}

/// The topic's `max.message.bytes`, as the broker reports it.
pub async fn max_message_bytes(kafka: &KafkaConfig, topic: &str, timeout: Duration) -> Result<usize> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(kafka).create().context("creating the Kafka admin client")?;
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options).await?;
    let resource = results.into_iter().next().context("no answer")?.map_err(|e| anyhow::anyhow!("{e}"))?;
    let value = resource.get("max.message.bytes").and_then(|e| e.value.clone()).context("not reported")?;
    value.parse().with_context(|| format!("max.message.bytes of {topic} is {value:?}"))
}

/// A client context that does not report reaching a partition's end as an error: when
/// reading to the end, that is the point. Nor, once the reader is `done`, its connections
/// closing as it is dropped: over SASL that cuts short a login still under way (the group
/// coordinator's), which librdkafka reports as a failed authentication.
#[derive(Default)]
pub(crate) struct ReadToEnd {
    done: AtomicBool,
}

impl ClientContext for ReadToEnd {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if self.done.load(Ordering::Relaxed) {
            tracing::debug!(target: "librdkafka", facility, "{message} (closing a reader)");
        } else {
            super::log_librdkafka(level, facility, message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            return;
        }
        if self.done.load(Ordering::Relaxed) {
            tracing::debug!(%error, reason, "Kafka client error while closing a reader");
        } else {
            tracing::error!(target: "librdkafka", %error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for ReadToEnd {}

impl ReadToEnd {
    /// Done reading: what the client logs while it closes is not an error.
    pub(crate) fn done(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Reads every committed message of `topic` from the beginning up to its current end, calling
/// `f` for each. Gives up after `timeout` without progress.
pub fn read_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
    f: impl FnMut(&BorrowedMessage<'_>) -> Result<()>,
) -> Result<u64> {
    read_partitions_to_end(kafka, topic, None, timeout, f)
}

/// `read_to_end` for some partitions of `topic` only (all when `only` is `None`).
pub(crate) fn read_partitions_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    only: Option<&[i32]>,
    timeout: Duration,
    mut f: impl FnMut(&BorrowedMessage<'_>) -> Result<()>,
) -> Result<u64> {
    let consumer: BaseConsumer<ReadToEnd> = reader_config(kafka, "hotline-restore")
        .create_with_context(ReadToEnd::default())
        .context("creating a restore consumer")?;
    let Some(count) = partitions_of(&consumer, topic, timeout)? else { bail!("topic {topic} does not exist") };
    let partitions: Vec<i32> = (0..count).filter(|p| only.is_none_or(|only| only.contains(p))).collect();
    if partitions.is_empty() {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let mut at_end: HashSet<i32> = HashSet::new();
    let mut read = 0;
    // Since when nothing came (the clock is read only then, not per record).
    let mut idle_since: Option<Instant> = None;
    while at_end.len() < partitions.len() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() > timeout {
                    bail!("no progress reading {topic} for {timeout:?}");
                }
                continue;
            }
            Some(Ok(m)) => {
                f(&m)?;
                read += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            // An error is no progress: errors without end still time out.
            Some(Err(e)) => {
                tracing::debug!(error = %e, topic, "while reading to the end");
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() > timeout {
                    bail!("no progress reading {topic} for {timeout:?}: {e}");
                }
                continue;
            }
        }
        idle_since = None;
    }
    consumer.context().done();
    Ok(read)
}

/// A consumer that reads committed messages to partitions' ends under `group` (never
/// committing to it) and tells each end.
pub(crate) fn reader_config(kafka: &KafkaConfig, group: &str) -> rdkafka::ClientConfig {
    let mut config = client_config(kafka);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    // The end of an idle partition is only seen when a fetch returns empty: don't let the
    // broker hold that fetch open.
    super::set_default(&mut config, "fetch.wait.max.ms", "10");
    // Nor pause fetching for a second whenever the local queue is over its thresholds.
    super::set_default(&mut config, "fetch.queue.backoff.ms", "10");
    config
}

/// How many partitions `topic` has; `None` when it does not exist. Any other error the
/// brokers report of it (a leader not yet elected, no authorization) is an error.
pub(crate) fn partitions_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>> {
    let metadata =
        consumer.fetch_metadata(Some(topic), timeout).with_context(|| format!("reading metadata of {topic}"))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    match t.error().map(RDKafkaErrorCode::from) {
        None => Ok(Some(t.partitions().len() as i32).filter(|n| *n > 0)),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(None),
        Some(e) => bail!("reading metadata of {topic}: {e}"),
    }
}

/// The message key as UTF-8, if it is.
pub fn key_str<'a>(m: &'a BorrowedMessage<'_>) -> Option<&'a str> {
    m.key().and_then(|k| std::str::from_utf8(k).ok())
}

/// The running members of consumer group `group` (asked by a client that never joins it).
pub async fn members(kafka: &KafkaConfig, group: &str) -> Result<usize> {
    let consumer: BaseConsumer = client_config(kafka).set("group.id", format!("{group}-members")).create()?;
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || -> Result<usize> {
        let groups = consumer.fetch_group_list(Some(&group), Duration::from_secs(30))?;
        Ok(groups.groups().iter().map(|g| g.members().len()).sum())
    })
    .await?
}
