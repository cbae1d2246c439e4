//! `hotline run`: the pipeline and its HTTP listener until SIGTERM or Ctrl-C.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio_util::sync::CancellationToken;

use crate::avro::Framing;
use crate::config::{Config, Settings};
use crate::kafka::pipeline;
use crate::telemetry::{CalendarRead, PipelineEnded, Telemetry};

pub async fn run(config: &Path) -> Result<()> {
    let settings = Config::load(config)?.settings()?;
    let telemetry = Telemetry::default();
    let today = jiff::Timestamp::now().to_zoned_datetime(settings.zone.clone()).date();
    let last_year = settings.calendar_last_year();
    let covered_until = last_year.and_then(|y| {
        let next = jiff::civil::Date::new(y.checked_add(1)?, 1, 1).ok()?;
        next.to_zoned_datetime(settings.zone.clone()).map(|z| z.timestamp()).ok()
    });
    telemetry.emit(CalendarRead {
        last_year,
        covered_until,
        missing: &settings.calendar_gaps(today),
        file: settings.calendar.as_deref(),
    });
    // A stop reaches the pipeline first, then the HTTP listener, which serves the probes and
    // the last counts until the pipeline has finished; both are awaited.
    let stop = CancellationToken::new();
    let http_stop = CancellationToken::new();
    let server = crate::http::serve(settings.listen, telemetry.clone(), http_stop.clone())
        .await
        .with_context(|| format!("listening on {} (http.listen, or HOTLINE_HTTP__LISTEN)", settings.listen))?;
    // Wrong credentials or an untrusted certificate stop the process here with a clear error
    // rather than leaving it waiting, unready, as for a broker outage.
    tokio::select! {
        checked = crate::kafka::check_access(&settings.kafka) => checked?,
        _ = shutdown_signal() => return Ok(()),
    }
    let framing = framing(&settings).await?;
    let mut pipeline = tokio::spawn(pipeline::run(settings, telemetry.clone(), framing, stop.clone()));
    tokio::select! {
        // The pipeline ended by itself: nothing counts any more, so the process must not stay
        // up looking healthy. Exiting non-zero hands the restart to the supervisor.
        ended = &mut pipeline => {
            // A panic never reached `pipeline::run`'s own bookkeeping.
            let error = match ended {
                Ok(Ok(())) => anyhow!("the pipeline ended though no stop was asked for"),
                Ok(Err(e)) => e,
                Err(panicked) => {
                    let e = anyhow!("the pipeline panicked: {panicked}");
                    telemetry.emit(PipelineEnded { stopped: false, error: Some(&e) });
                    e
                }
            };
            return Err(error.context("the pipeline ended"));
        }
        _ = shutdown_signal() => {}
    }
    tracing::info!("stopping: finishing the current transaction");
    stop.cancel();
    let stopped = match tokio::time::timeout(STOP_TIMEOUT, pipeline).await {
        Ok(finished) => finished?,
        // Kafka is unreachable and a transaction call is waiting on it. Nothing of the open
        // transaction is committed, so leaving it to be aborted loses nothing: the next start
        // redoes it from the last commit.
        Err(_) => {
            tracing::warn!(timeout = ?STOP_TIMEOUT, "Kafka did not answer; exiting without the open transaction");
            Ok(())
        }
    };
    // Requests under way get a moment to finish; a slow client does not hold the exit.
    http_stop.cancel();
    let _ = tokio::time::timeout(HTTP_STOP_TIMEOUT, server.stopped()).await;
    stopped
}

/// How long a stop waits for HTTP requests under way.
const HTTP_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a stop may wait for the current transaction.
const STOP_TIMEOUT: Duration = Duration::from_secs(8);

/// Single-object encoding, or the Confluent wire format with the id the registry assigns.
pub async fn framing(settings: &Settings) -> Result<Framing> {
    match &settings.schema_registry_url {
        None => Ok(Framing::SingleObject),
        Some(url) => {
            let subject = format!("{}-value", settings.topics.snapshots);
            let id = crate::schema_registry::register(url, &subject, crate::avro::SCHEMA_JSON).await?;
            tracing::info!(subject, id, "snapshot schema registered");
            Ok(Framing::Confluent(id))
        }
    }
}

async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
