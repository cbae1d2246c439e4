//! Which deployment the internal topics belong to. The first consumer group to run on them
//! records itself at the start of `partials` (key `owner/<group_id>`), and a `hotline run` of
//! another group refuses to start: two groups writing one changelog would each count the
//! other's cases as its own. `hotline take-over` hands the topics to another group on purpose,
//! once the owner's instances have stopped, by releasing the owner's record (a tombstone) and
//! writing its own.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Settings;
use crate::kafka::sender::Sender;
use crate::kafka::{client_config, topics};

use super::restore::RESTORE_TIMEOUT;

/// How long a request to the brokers may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The key prefix of an owner's record in `partials`.
pub(crate) const OWNER: &str = "owner/";

/// The owners' records read in offset order: a group's record claims the topics, its
/// tombstone releases them; the earliest claim standing owns them.
#[derive(Debug, Default)]
pub(crate) struct Owners(BTreeMap<i64, String>);

impl Owners {
    /// Takes in a `partials` record; records of other keys are left alone.
    pub(crate) fn read(&mut self, key: &str, offset: i64, released: bool) {
        let Some(group) = key.strip_prefix(OWNER) else { return };
        self.0.retain(|_, g| g != group);
        if !released {
            self.0.insert(offset, group.to_owned());
        }
    }

    pub(crate) fn owner(&self) -> Option<&str> {
        self.0.values().next().map(String::as_str)
    }

    fn others<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a str> {
        self.0.values().map(String::as_str).filter(move |g| *g != group)
    }
}

/// Refuses to run on topics another group owns (`OwnedBy`); claims them when none does. Other
/// errors are Kafka's, to be tried again (a topic just created may not be known to every
/// broker yet).
pub(super) async fn claim(settings: &Settings) -> Result<()> {
    let group = &settings.kafka.group_id;
    if let Some(owner) = owners(settings).await?.owner() {
        return if owner == group { Ok(()) } else { Err(owned_by(settings, owner)) };
    }
    write(settings, &[], Some(group)).await?;
    // Two groups may claim at once: the first claim read back wins.
    match owners(settings).await?.owner() {
        Some(owner) if owner == group => {
            tracing::info!(group, topic = %settings.topics.partials, "this deployment's group now owns its internal topics");
            Ok(())
        }
        Some(owner) => Err(owned_by(settings, owner)),
        None => bail!("the claim of {} by group {group} was not read back", settings.topics.partials),
    }
}

/// Refuses a command that rewrites a deployment's state or snapshots (`hotline rescale`,
/// `hotline recount --replace-live`) when another group owns the internal topics. Claims
/// nothing, and lets topics no group has claimed yet (none has run, or only builds from before
/// owners' records) pass: a deployment's `hotline run` claims them.
pub async fn refuse_another_owner(settings: &Settings) -> Result<()> {
    if !partials_exist(settings).await? {
        return Ok(());
    }
    match owners(settings).await?.owner() {
        Some(owner) if owner != settings.kafka.group_id => Err(owned_by(settings, owner)),
        _ => Ok(()),
    }
}

async fn partials_exist(settings: &Settings) -> Result<bool> {
    let (kafka, topic) = (settings.kafka.clone(), settings.topics.partials.clone());
    tokio::task::spawn_blocking(move || -> Result<bool> {
        let consumer: BaseConsumer = client_config(&kafka).create().context("creating a metadata consumer")?;
        Ok(topics::partitions_of(&consumer, &topic, REQUEST_TIMEOUT)?.is_some())
    })
    .await
    .context("the owner check panicked")?
}

/// Hands the internal topics to this deployment's group: refused while the owner's group has
/// members. Returns the group that owned them, if another did.
pub async fn take_over(settings: &Settings) -> Result<Option<String>> {
    let group = &settings.kafka.group_id;
    let owners = owners(settings).await?;
    let others: Vec<String> = owners.others(group).map(str::to_owned).collect();
    for other in &others {
        let members = topics::members(&settings.kafka, other).await?;
        if members > 0 {
            bail!(
                "group {other} has {members} running member(s) on these topics: stop every `hotline run` of that \
                 deployment before taking its topics over"
            );
        }
    }
    if topics::members(&settings.kafka, group).await? > 0 {
        bail!("group {group} has running members: stop them before they take the topics over");
    }
    let Some(owner) = owners.owner().filter(|o| o != group).map(str::to_owned) else {
        write(settings, &others, Some(group)).await?;
        return Ok(None);
    };
    // The new group goes on where the owner stopped: its offsets, with their metadata (the
    // partition count each state was made for), become this group's.
    let moved = move_offsets(settings, &owner).await?;
    tracing::info!(from = %owner, to = %group, partitions = moved, "committed offsets moved");
    write(settings, &others, Some(group)).await?;
    Ok(Some(owner))
}

/// Commits group `from`'s committed offsets, metadata included, on every topic the pipeline
/// consumes, as this deployment's group's; returns how many partitions had one.
async fn move_offsets(settings: &Settings, from: &str) -> Result<usize> {
    let t = &settings.topics;
    let mut consumed: Vec<String> = t.inputs().iter().map(|s| s.to_string()).collect();
    consumed.extend([t.case_events.clone(), t.partials.clone()]);
    let (kafka, from, to) = (settings.kafka.clone(), from.to_owned(), settings.kafka.group_id.clone());
    tokio::task::spawn_blocking(move || -> Result<usize> {
        let reader: BaseConsumer = client_config(&kafka).set("group.id", &from).create()?;
        let metadata = reader.fetch_metadata(None, REQUEST_TIMEOUT).context("reading the topics' partitions")?;
        let mut all = TopicPartitionList::new();
        for topic in metadata.topics().iter().filter(|m| consumed.iter().any(|c| c == m.name())) {
            for p in topic.partitions() {
                all.add_partition(topic.name(), p.id());
            }
        }
        let committed = reader.committed_offsets(all, REQUEST_TIMEOUT).context("reading the owner's offsets")?;
        let mut moved = TopicPartitionList::new();
        for e in committed.elements().iter().filter(|e| matches!(e.offset(), Offset::Offset(_))) {
            let mut m = moved.add_partition(e.topic(), e.partition());
            m.set_offset(e.offset())?;
            m.set_metadata(e.metadata());
        }
        if moved.count() > 0 {
            let writer: BaseConsumer =
                client_config(&kafka).set("group.id", &to).set("enable.auto.commit", "false").create()?;
            writer.commit(&moved, CommitMode::Sync).context("committing the offsets as this group's")?;
        }
        Ok(moved.count())
    })
    .await?
}

async fn owners(settings: &Settings) -> Result<Owners> {
    let (kafka, topic) = (settings.kafka.clone(), settings.topics.partials.clone());
    tokio::task::spawn_blocking(move || {
        let mut owners = Owners::default();
        topics::read_to_end(&kafka, &topic, RESTORE_TIMEOUT, |m| {
            if let Some(key) = topics::key_str(m) {
                owners.read(key, m.offset(), m.payload().is_none());
            }
            Ok(())
        })
        .with_context(|| format!("reading the owner of {topic}"))?;
        Ok(owners)
    })
    .await?
}

/// Releases the records of `released` groups, then claims the topics for `claimed`.
async fn write(settings: &Settings, released: &[String], claimed: Option<&str>) -> Result<()> {
    let topic = &settings.topics.partials;
    let mut sender = Sender::new(&settings.kafka)?;
    for group in released {
        sender.send_tombstone(topic, format!("{OWNER}{group}").as_bytes()).await?;
    }
    if let Some(group) = claimed {
        sender.send(topic, Some(format!("{OWNER}{group}").as_bytes()), group.as_bytes()).await?;
    }
    sender.finish().await.with_context(|| format!("recording the owner of {topic}"))?;
    Ok(())
}

/// The internal topics belong to another group: not to be waited out, unlike Kafka's errors.
#[derive(Debug, thiserror::Error)]
#[error(
    "the internal topics {case_events}, {changelog} and {partials} belong to the deployment of consumer group \
     {owner}, and this one is group {group}: two groups on them would count each other's cases. Give this \
     deployment topics of its own in [topics], or, to take them over on purpose, stop every `hotline run` of group \
     {owner} and run `hotline take-over` with this configuration"
)]
pub(super) struct OwnedBy {
    owner: String,
    group: String,
    case_events: String,
    changelog: String,
    partials: String,
}

fn owned_by(settings: &Settings, owner: &str) -> anyhow::Error {
    let t = &settings.topics;
    anyhow::Error::new(OwnedBy {
        owner: owner.to_owned(),
        group: settings.kafka.group_id.clone(),
        case_events: t.case_events.clone(),
        changelog: t.changelog.clone(),
        partials: t.partials.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_claim_standing_owns_the_topics() {
        let mut owners = Owners::default();
        owners.read("tally/0/2022-04", 0, false);
        assert_eq!(owners.owner(), None);
        owners.read("owner/a", 1, false);
        owners.read("owner/b", 2, false);
        assert_eq!(owners.owner(), Some("a"), "the first claim wins a race");
        owners.read("owner/a", 5, false);
        assert_eq!(owners.owner(), Some("b"), "a claim again is a later claim");
        // A take-over by c: the others released, then its own claim.
        owners.read("owner/a", 6, true);
        owners.read("owner/b", 7, true);
        owners.read("owner/c", 8, false);
        assert_eq!(owners.owner(), Some("c"));
        assert_eq!(owners.others("c").count(), 0);
    }
}
