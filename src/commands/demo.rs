//! `hotline demo`: the real pipeline on a generated month, against librdkafka's in-process
//! mock cluster, so it runs with no broker installed. The generated month is the reference
//! month: once it has closed and every event is counted, the demo prints the office's report
//! of it (`report.rs`), with the reference's figures, then serves /metrics until Ctrl-C.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use crate::avro::Framing;
use crate::commands::replay::route;
use crate::config::Config;
use crate::domain::month::Month;
use crate::domain::snapshot::Status;
use crate::generator::{self, Plan};
use crate::kafka::pipeline;
use crate::kafka::sender::Sender;
use crate::report::Report;
use crate::telemetry::Telemetry;

pub async fn demo(listen: &str, scale: f64, exit: bool) -> Result<()> {
    let mock = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
    let brokers = mock.bootstrap_servers();
    let config = Config::parse(
        &format!(
            "[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"hotline-demo\"\n\
             [snapshot]\nmin_interval = \"1s\"\nidle_partition = \"2s\"\n[http]\nlisten = \"{listen}\"\n"
        ),
        [],
    )?;
    let mut settings = config.clone().settings()?;
    // The mock cluster makes topics with Kafka's default limit, and never says so.
    settings.dead_letter_topic_limit = Some(pipeline::KAFKA_DEFAULT_MAX_MESSAGE_BYTES);
    let topics = &config.topics;
    // The mock cluster does not serve CreateTopics: make every topic up front.
    let partitioned = [&*topics.snapshots, &topics.dead_letters, &topics.changelog, &topics.case_events];
    for t in topics.inputs().into_iter().chain(partitioned) {
        mock.create_topic(t, 3, 1)?;
    }
    mock.create_topic(&topics.partials, 1, 1)?;

    let month: Month = "2022-04".parse().expect("a valid month");
    let cases = ((generator::REFERENCE_CASES as f64) * scale).round().max(1.0) as usize;
    let events = generator::generate(&Plan {
        month,
        zone: settings.zone.clone(),
        cases,
        next_month_days: 3,
        seed: 2022,
        v2_events: true,
        city: None,
    });
    eprintln!("Generated {} events of {cases} cases of {month} (and the first days of the next month).", events.len());

    let registry = settings.labels.clone();
    let telemetry = Telemetry::default();
    let (stop, http_stop) = (CancellationToken::new(), CancellationToken::new());
    let server = crate::http::serve(settings.listen, telemetry.clone(), http_stop.clone()).await?;
    let pipeline = tokio::spawn(pipeline::run(settings, telemetry.clone(), Framing::SingleObject, stop.clone()));

    let mut sender = Sender::new(&config.kafka)?;
    let progress = ProgressBar::new(events.len() as u64)
        .with_style(ProgressStyle::with_template("producing {bar:40} {pos}/{len} events").expect("a valid template"));
    let mut case_topics = std::collections::HashMap::new();
    for e in &events {
        let line = e.json.to_string();
        let (topic, key) = route(topics, &line, &mut case_topics);
        sender.send(topic, key.as_deref().map(str::as_bytes), line.as_bytes()).await?;
        progress.inc(1);
        // The mock cluster keeps only a few MB per partition: stay within reach of the pipeline
        // so nothing is deleted before it is consumed.
        while sender.sent() > telemetry.messages_processed() + 30_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sender.finish().await?;
    progress.finish();

    eprintln!("Waiting for the pipeline to count every event and close {month}...");
    let started = Instant::now();
    // Done once a closed revision with every case has been the latest for a few seconds.
    let mut candidate: Option<u64> = None;
    let snapshot = loop {
        if pipeline.is_finished() {
            pipeline.await??;
            bail!("the pipeline ended before {month} was closed");
        }
        let (kafka, topic) = (config.kafka.clone(), config.topics.snapshots.clone());
        let latest = tokio::task::spawn_blocking(move || super::snapshot::latest(&kafka, &topic, month)).await??;
        match latest {
            Some(s) if s.status == Status::Closed && s.figures.totals.received == cases as u64 => {
                if candidate == Some(s.revision) {
                    break s;
                }
                candidate = Some(s.revision);
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            _ if started.elapsed() > Duration::from_secs(300) => {
                bail!("the pipeline did not publish a closed snapshot of {month} with {cases} cases in 5 minutes")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    println!("{}", Report::new(&snapshot, None, &registry, None, None).markdown());
    if !exit {
        eprintln!("Metrics: http://{}/metrics  (Ctrl-C to stop)", server.bound);
        tokio::signal::ctrl_c().await?;
    }
    stop.cancel();
    pipeline.await??;
    http_stop.cancel();
    server.stopped().await;
    Ok(())
}
