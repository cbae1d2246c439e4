//! `hotline demo`: the real pipeline on a generated month of a province, against librdkafka's
//! in-process mock cluster, so it runs with no broker installed. The province is Jilin's nine
//! cities in province mode (`generator::jilin`): 四平 is the reference month, the default city,
//! whose events name no city; each other city names itself and has its own departments and
//! office. Once the month has closed and every event is counted, the demo prints 四平's report
//! (`report.rs`), with the reference's figures, and the provincial bulletin
//! (`report::bulletin`), then serves /metrics until Ctrl-C.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use crate::avro::Framing;
use crate::commands::replay::route;
use crate::config::Config;
use crate::domain::month::Month;
use crate::domain::snapshot::{Scope, Snapshot, Status};
use crate::generator::{self, jilin};
use crate::kafka::pipeline;
use crate::kafka::sender::Sender;
use crate::report::Report;
use crate::report::bulletin::Bulletin;
use crate::telemetry::Telemetry;

/// The provincial office, as the bulletin's header names it.
const PROVINCE: (&str, &str) = ("吉林省", "吉林省政务服务和数字化建设管理局");

/// The `--scale`s the demo takes: at 10, some 3.6 million events of 1.3 million cases.
const SCALES: std::ops::RangeInclusive<f64> = 0.001..=10.0;
/// The largest `--province-rate`: other cities as busy per resident as 四平, ten times over.
const MAX_RATE: f64 = 10.0;

/// `scale`: of every city's cases; `rate`: the other cities' cases per resident, of 四平's.
pub async fn demo(listen: &str, scale: f64, rate: f64, exit: bool) -> Result<()> {
    if !(SCALES.contains(&scale) && (0.0..=MAX_RATE).contains(&rate)) {
        bail!(
            "--scale must be from {} to {} (1 is the reference month's size) and --province-rate from 0 to {MAX_RATE}",
            SCALES.start(),
            SCALES.end()
        );
    }
    let mock = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
    let brokers = mock.bootstrap_servers();
    let mut text = format!(
        "[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"hotline-demo\"\n\
         [snapshot]\nmin_interval = \"1s\"\nidle_partition = \"2s\"\n[http]\nlisten = \"{listen}\"\n\
         [province]\nname = \"{}\"\noffice = \"{}\"\ndefault_city = \"{}\"\n",
        PROVINCE.0,
        PROVINCE.1,
        jilin::SIPING.code
    );
    for city in &jilin::CITIES {
        text.push_str(&format!("[cities.{}]\nname = \"{}\"\noffice = \"{}\"\n", city.code, city.name, city.office()));
    }
    let config = Config::parse(&text, [])?;
    let mut settings = config.clone().settings()?;
    // Each city's own departments: the generated registries, in place of files.
    for city in &mut settings.cities {
        if let Some(generated) = jilin::CITIES.iter().find(|g| g.code == city.code.to_string()) {
            city.labels = generated.registry();
        }
    }
    // The mock cluster makes topics with Kafka's default limit, and never says so.
    settings.dead_letter_topic_limit = Some(pipeline::KAFKA_DEFAULT_MAX_MESSAGE_BYTES);
    let topics = &config.topics;
    // The mock cluster does not serve CreateTopics: make every topic up front.
    let partitioned = [&*topics.snapshots, &topics.dead_letters, &topics.changelog, &topics.case_events];
    for t in topics.inputs().into_iter().chain(partitioned) {
        mock.create_topic(t, 3, 1)?;
    }
    mock.create_topic(&topics.partials, 1, 1)?;

    // The listener first: a busy port fails before the month is generated.
    let telemetry = Telemetry::default();
    let (stop, http_stop) = (CancellationToken::new(), CancellationToken::new());
    let server = crate::http::serve(settings.listen, telemetry.clone(), http_stop.clone())
        .await
        .with_context(|| format!("listening on {} (--listen)", settings.listen))?;

    let month: Month = "2022-04".parse().expect("a valid month");
    let mut plans = jilin::plans(month, &settings.zone, rate);
    for plan in &mut plans {
        plan.cases = ((plan.cases as f64) * scale).round().max(1.0) as usize;
    }
    let siping_cases = plans.iter().find(|p| p.city.is_none()).map_or(0, |p| p.cases) as u64;
    let province_cases: u64 = plans.iter().map(|p| p.cases as u64).sum();
    let mut events: Vec<generator::Generated> = plans.iter().flat_map(generator::generate).collect();
    events.sort_by_key(|g| g.occurred_at);
    eprintln!(
        "Generated {} events of {province_cases} cases of {month} in {} cities ({siping_cases} in {}), and the first \
         days of the next month.",
        events.len(),
        plans.len(),
        jilin::SIPING.name
    );

    let registry = jilin::SIPING.registry();
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
    // Done once closed revisions with every case, of 四平 and of the province, have been the
    // latest for a few seconds.
    let mut candidate: Option<(u64, u64)> = None;
    let (siping, province) = loop {
        if pipeline.is_finished() {
            pipeline.await??;
            bail!("the pipeline ended before {month} was closed");
        }
        let (kafka, topic) = (config.kafka.clone(), config.topics.snapshots.clone());
        let latest = tokio::task::spawn_blocking(move || {
            let siping = super::snapshot::latest_in(&kafka, &topic, Scope::City(None), month)?;
            let province = super::snapshot::latest_in(&kafka, &topic, Scope::Province, month)?;
            anyhow::Ok((siping, province))
        })
        .await??;
        let complete = |s: &Option<Snapshot>, cases: u64| {
            s.as_ref().filter(|s| s.status == Status::Closed && s.figures.totals.received == cases).map(|s| s.revision)
        };
        match (complete(&latest.0, siping_cases), complete(&latest.1, province_cases)) {
            (Some(a), Some(b)) => {
                if candidate == Some((a, b)) {
                    break (latest.0.expect("complete"), latest.1.expect("complete"));
                }
                candidate = Some((a, b));
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            _ if started.elapsed() > Duration::from_secs(300) => {
                bail!("the pipeline did not publish closed snapshots of {month} with every case in 5 minutes")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    println!("{}", Report::new(&siping, None, &registry, None, None).markdown());
    println!("{}", Bulletin::new(&province, None, PROVINCE.0, PROVINCE.1, None).markdown());
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
