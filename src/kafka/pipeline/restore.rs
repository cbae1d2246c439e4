//! The start of a life: a new transactional producer, which fences its predecessor; the
//! committed offsets of the instance's share; that share's state restored (counting
//! partitions from their changelog, the publisher from `partials` and the snapshots); and the
//! partitions an earlier life stopped, tried again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{Producer, ThreadedProducer};

use crate::avro::Framing;
use crate::config::Settings;
use crate::domain::routing::Source;
use crate::telemetry::{StateRestored, Telemetry};

use super::Life;
use super::clients::{committed_offsets, offsets, pause, producer_config, seek};
use super::context::KafkaEvents;
use super::count::Counting;
use super::guard::{BlockedCalls, CallGuard};
use super::ingest::Ingest;
use super::layout::{Layout, OtherCount, made_for};
use super::publish::Publishing;
use super::stopped::StoppedPartitions;
use super::transaction::{CALL_GRACE, Output, TRANSACTION_TIMEOUT};

/// How long a restore may wait for the end of a topic partition (the changelog, `partials`,
/// the snapshots) before it gives up and the life starts over.
pub(super) const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);

/// What every life of this instance shares.
pub(super) struct Instance {
    pub settings: Settings,
    pub telemetry: Telemetry,
    pub framing: Framing,
    /// `kafka.instance_id`, or one picked at random for this process.
    pub id: String,
    pub layout: Layout,
    pub blocked: BlockedCalls,
}

impl<'a> Life<'a> {
    /// Starts a life of `instance`: a new transactional producer, the committed offsets of
    /// the consumer's share, that share's state restored, and the stopped partitions tried
    /// again.
    pub(super) fn start(
        instance: &'a Instance,
        consumer: &'a BaseConsumer<KafkaEvents>,
        rebalanced: &'a AtomicBool,
        stopped: &'a mut StoppedPartitions,
    ) -> Result<Life<'a>> {
        let Instance { settings, telemetry, framing, id, layout, blocked } = instance;
        // One transactional id per instance: a restarted instance fences its predecessor, whose
        // open transaction is aborted. Instances fence each other's stale work through the
        // group's generation, sent with the offsets (KIP-447).
        let producer: ThreadedProducer<KafkaEvents> = producer_config(settings, id)
            .create_with_context(KafkaEvents::new(telemetry))
            .context("creating the transactional producer")?;
        let guard = CallGuard::new(producer, telemetry, TRANSACTION_TIMEOUT + CALL_GRACE, blocked.clone());
        let t = &settings.topics;
        let dead_letters = (t.dead_letters.as_str(), layout.dead_letter_max_payload);
        let out = Output::new(guard, telemetry, dead_letters, (&t.case_events, layout.counting_partitions));
        out.call("initialising transactions", |p| p.init_transactions(TRANSACTION_TIMEOUT))?;
        telemetry.progress();

        // Whatever the previous life did since its last commit will be done again.
        telemetry.discard_uncommitted();
        // Rebalance callbacks run only inside `poll`: the share read here holds until the
        // next poll, which notices any change.
        rebalanced.store(false, Ordering::SeqCst);
        let assignment = consumer.assignment().context("reading the assignment")?;
        // Partitions an earlier life stopped are tried again.
        consumer.resume(&assignment).context("resuming the assignment")?;
        // Committed offsets first: with read_committed this waits for a previous owner's
        // pending transaction; the restore then reads the changelog until it covers them.
        let committed = if assignment.count() == 0 {
            TopicPartitionList::new()
        } else {
            consumer.committed_offsets(assignment, TRANSACTION_TIMEOUT).context("reading committed offsets")?
        };
        check_offsets_made_for(consumer, &t.case_events, layout.counting_partitions)?;
        let counted = offsets(&committed.elements_for_topic(&t.case_events));
        telemetry.progress();
        let counting = Counting::restore(settings, telemetry, layout.counting_partitions, &counted, &layout.inputs)?;
        counting.check_made_for(layout.counting_partitions, &t.case_events)?;
        let publishing = match committed.elements_for_topic(&t.partials).is_empty() {
            true => None,
            false => Some(Publishing::restore(settings, telemetry, *framing, layout.counting_partitions)?),
        };
        seek(consumer, &committed, &t.partials, publishing.as_ref().map(|p| p.next_offset))?;
        // What an earlier life stopped shows stopped until read past; partitions no longer
        // held (and changelog partitions restored now) stop showing.
        let held = |topic: &str, p: i32| {
            let topic = if topic == t.changelog { &t.case_events } else { topic };
            committed.elements().iter().any(|a| a.partition() == p && a.topic() == topic)
        };
        stopped.new_life(&t.changelog, held, |_, p| counting.unreadable.contains_key(&p), telemetry);
        for (&p, (offset, why)) in &counting.unreadable {
            stopped.stop_restore((&t.changelog, &t.case_events), p, *offset, why, telemetry);
            pause(consumer, &t.case_events, p)?;
        }
        match publishing.as_ref().map(|p| &p.unreadable) {
            Some(None) => stopped.read(&t.partials, 0, telemetry),
            Some(Some((offset, why))) => {
                stopped.stop(&t.partials, 0, *offset, why, telemetry);
                pause(consumer, &t.partials, 0)?;
            }
            None => {}
        }
        let inputs: Vec<Source> = t
            .inputs()
            .iter()
            .flat_map(|topic| committed.elements_for_topic(topic))
            .map(|p| Source { topic: p.topic().into(), partition: p.partition() })
            .collect();
        telemetry.emit(StateRestored {
            counting_partitions: &counted,
            publishing: publishing.is_some(),
            cases: counting.held().0,
        });
        Ok(Life {
            settings,
            telemetry,
            consumer,
            rebalanced,
            out,
            ingest: Ingest::new(settings, layout.counting_partitions, inputs),
            counting,
            publishing,
            stopped,
        })
    }
}

/// Refuses offsets committed for another count of counting partitions than `case_events` has,
/// on any of its partitions: whichever partitions this instance holds, a count grown by hand
/// would route cases where their state is not.
fn check_offsets_made_for(consumer: &BaseConsumer<KafkaEvents>, case_events: &str, partitions: i32) -> Result<()> {
    let committed = committed_offsets(consumer, case_events, partitions, TRANSACTION_TIMEOUT)?;
    let other = committed.elements().iter().find_map(|p| made_for(p.metadata()).filter(|n| *n != partitions));
    match other {
        Some(made_for) => Err(OtherCount {
            what: format!("the offsets committed on {case_events} were"),
            made_for,
            topic: case_events.to_owned(),
            counting_partitions: partitions,
        }
        .into()),
        None => Ok(()),
    }
}
