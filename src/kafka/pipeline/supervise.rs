//! The lives of one instance: waits for Kafka and the topics it owns, then starts a life after
//! another on one consumer until `stop` is cancelled, with a backoff after failures; replaces
//! a consumer failed for good, and gives up when fenced too often in a row or when too many
//! abandoned producers are still blocked.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::Consumer;
use tokio_util::sync::CancellationToken;

use crate::avro::Framing;
use crate::config::Settings;
use crate::kafka::topics;
use crate::telemetry::{
    ConsumerRecreated, KafkaUnavailable, PipelineRestarting, PipelineStarting, Rebalanced, Telemetry,
};

use super::clients::consumer;
use super::guard::BlockedCalls;
use super::layout::OtherCount;
use super::layout::{Layout, owned_topics};
use super::recovery::{Backoff, FatalStreak, MAX_BACKOFF, gave_up};
use super::restore::Instance;
use super::stopped::StoppedPartitions;
use super::{End, Life};

/// Abandoned producers whose calls are still blocked, each holding its threads and buffers:
/// past this many the pipeline ends, for the process to start afresh.
const MAX_CALLS_BLOCKED: i64 = 3;

/// Tries `attempt` until it succeeds, reporting each failure as Kafka unavailable and backing
/// off; returns the error that `fatal` accepts, and `None` once `stop` is cancelled.
async fn until_done<T, F: Future<Output = Result<T>>>(
    telemetry: &Telemetry,
    stop: &CancellationToken,
    backoff: &mut Backoff,
    fatal: impl Fn(&anyhow::Error) -> bool,
    mut attempt: impl FnMut() -> F,
) -> Result<Option<T>> {
    loop {
        telemetry.progress();
        match attempt().await {
            Ok(done) => return Ok(Some(done)),
            Err(e) if fatal(&e) => return Err(e),
            Err(_) if stop.is_cancelled() => return Ok(None),
            Err(e) => {
                telemetry.emit(KafkaUnavailable { error: &format!("{e:#}") });
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}

pub(super) async fn run_until_stopped(
    settings: Settings,
    telemetry: Telemetry,
    framing: Framing,
    stop: CancellationToken,
) -> Result<()> {
    // Kafka may not be up yet when we start, nor know a topic just created: wait for it.
    let mut backoff = Backoff::default();
    let owned = owned_topics(&settings);
    let ensure = || topics::ensure(&settings.kafka, &owned);
    let Some(partitions) = until_done(&telemetry, &stop, &mut backoff, |_| false, ensure).await? else {
        return Ok(());
    };
    let mut layout = Layout::check(&settings, &partitions)?;
    // Only another group's ownership ends the pipeline.
    let owned_by = |e: &anyhow::Error| e.downcast_ref::<super::owner::OwnedBy>().is_some();
    let claim = || super::owner::claim(&settings);
    if until_done(&telemetry, &stop, &mut backoff, owned_by, claim).await?.is_none() {
        return Ok(());
    }
    layout.read_dead_letter_limit(&settings).await;
    tokio::task::spawn_blocking(move || {
        let id = settings.kafka.instance_id.clone().unwrap_or_else(|| crate::random_id("instance"));
        telemetry.emit(PipelineStarting {
            group_id: &settings.kafka.group_id,
            transactional_id: &format!("{}-{id}", settings.kafka.group_id),
            static_membership: settings.kafka.instance_id.is_some(),
        });
        let instance = Instance { settings, telemetry, framing, id, layout, blocked: BlockedCalls::default() };
        let Instance { settings, telemetry, blocked, .. } = &instance;
        let mut backoff = Backoff::default();
        let mut fatal = FatalStreak::new(settings.session_timeout, MAX_BACKOFF);
        let mut stopped = StoppedPartitions::default();
        while !stop.is_cancelled() {
            // A consumer outlives the pipeline's lives: starting over rewinds it to the
            // committed offsets instead of leaving and rejoining the group. Only a consumer
            // failed for good is replaced.
            let rebalanced = Arc::new(AtomicBool::new(false));
            let consumer = consumer(settings, telemetry, &rebalanced)?;
            while !stop.is_cancelled() {
                telemetry.progress();
                if blocked.count() > MAX_CALLS_BLOCKED {
                    bail!(
                        "{} transactional calls of abandoned producers are still blocked in librdkafka: starting \
                         the process afresh",
                        blocked.count()
                    );
                }
                let started = Instant::now();
                let life = Life::start(&instance, &consumer, &rebalanced, &mut stopped);
                let ended = life.and_then(|mut l| l.run(&stop));
                // Not ready again until the next life has restored its share.
                telemetry.ready(false);
                let error = match ended {
                    Ok(End::Stopped) => return Ok(()),
                    Ok(End::Rebalanced) => {
                        telemetry.emit(Rebalanced);
                        continue;
                    }
                    // No life can count on a state made for another partition count.
                    Err(e) if e.is::<OtherCount>() => return Err(e),
                    Err(e) => e,
                };
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Backoff::default();
                }
                let wait = backoff.next();
                let fatal_error = consumer.client().fatal_error();
                match &fatal_error {
                    Some((code, reason)) if !fatal.failed(Instant::now(), wait) => {
                        return Err(gave_up(settings, &instance.id, *code, reason, &fatal));
                    }
                    Some((code, _)) => telemetry.emit(ConsumerRecreated {
                        reason: &format!("{code:?}"),
                        error: &format!("{error:#}"),
                        wait,
                    }),
                    None => telemetry.emit(PipelineRestarting { error: &format!("{error:#}") }),
                }
                std::thread::sleep(wait);
                if fatal_error.is_some() {
                    break;
                }
            }
        }
        Ok(())
    })
    .await
    .context("the pipeline thread panicked")?
}
