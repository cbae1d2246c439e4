//! Growing the counting partitions through the real broker (issue 18): a deployment with 3
//! counts half a month, is stopped, `hotline rescale --partitions 12` moves its cases, and
//! a pipeline on 12 partitions counts the other half: the closed month equals the
//! reference figure for figure. A rescale is refused while an instance runs, a second one has
//! nothing to do, a pipeline on topics grown by hand ends, naming the rescale, and the rescale
//! then finishes the move (as when one stopped after growing the topics): the last events,
//! counted on 16 partitions, leave the month exact.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use hotline::domain::event::{DecodeLimits, decode};
use hotline::domain::routing::partition_of;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

fn rescale(config: &std::path::Path, partitions: i32) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["rescale", "--config", config.to_str().unwrap(), "--partitions", &partitions.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Writes `events` to `case_events` as the ingest stage routes them, on their counting
/// partition among 3, as if read from `cases` partition 0.
async fn route_uncounted(config: &hotline::config::Config, events: &[serde_json::Value]) {
    let producer: FutureProducer = hotline::kafka::client_config(&config.kafka).create().unwrap();
    let limits =
        DecodeLimits { max_message_bytes: 1 << 20, latest_occurred_at: "2030-01-01T00:00:00Z".parse().unwrap() };
    for (offset, json) in events.iter().enumerate() {
        let event = decode(json.to_string().as_bytes(), &limits).unwrap();
        let mut routed = serde_json::to_value(&event).unwrap();
        routed["offset"] = offset.into();
        let record = serde_json::json!({
            "source": {"topic": config.topics.cases, "partition": 0},
            "watermark": event.occurred_at,
            "event": routed,
        })
        .to_string();
        let to = partition_of(&event.case_id, 3);
        let sent =
            FutureRecord::to(&config.topics.case_events).partition(to).key(event.case_id.as_str()).payload(&record);
        producer.send(sent, Duration::from_secs(10)).await.unwrap();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn partitions(config: &hotline::config::Config, topic: &str) -> usize {
    let consumer: BaseConsumer = hotline::kafka::client_config(&config.kafka).create().unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    metadata.topics()[0].partitions().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescale_from_3_to_12_partitions_keeps_every_figure() {
    let deployment = common::Deployment::new("", "").await;
    let (config, settings, file) = (&deployment.config, &deployment.settings, &deployment.file);
    let month = common::generated_month("2022-04", &settings.zone, 3_000, 18);
    // Events are in time order: cases created in the first half close in the second.
    let (first_half, second_half) = month.split_at(month.len() / 2);

    let running = deployment.start().await;
    deployment.send(first_half).await;
    running.wait_processed(first_half.len() as u64, Duration::from_secs(120)).await;
    let refused = rescale(file, 12);
    assert!(!refused.status.success(), "a rescale while an instance runs");
    assert!(text(&refused.stderr).contains("stop every `hotline run`"), "{}", text(&refused.stderr));
    running.stop().await;
    // Events routed but not counted yet when the deployment stopped: the rescale counts them
    // first. (Written as a build before the version byte routed them, in JSON.)
    let (routed, second_half) = second_half.split_at(600);
    route_uncounted(config, routed).await;

    let done = rescale(file, 12);
    let out = text(&done.stdout);
    assert!(done.status.success(), "{}\n{}", out, text(&done.stderr));
    assert!(out.contains("3 -> 12 counting partitions"), "{out}");
    assert!(out.contains("; 600 routed events counted first"), "{out}");
    let t = &config.topics;
    assert_eq!((partitions(config, &t.case_events), partitions(config, &t.changelog)), (12, 12));
    let again = rescale(file, 12);
    assert!(text(&again.stdout).contains("nothing to do"), "{}{}", text(&again.stdout), text(&again.stderr));
    let shrink = rescale(file, 6);
    assert!(text(&shrink.stderr).contains("only grows"), "{}", text(&shrink.stderr));

    // 12 counting partitions now: the second half finds every case where it moved.
    let (second_half, late) = second_half.split_at(second_half.len() - 100);
    let running = deployment.start().await;
    deployment.send(second_half).await;
    let sent = &month[..month.len() - 100];
    let closed = common::wait_for_exact_snapshot(settings, "2022-04", sent, 1).await;
    running.stop().await;

    // Topics grown by hand: the pipeline ends at once, naming the rescale.
    let admin: AdminClient<DefaultClientContext> = hotline::kafka::client_config(&config.kafka).create().unwrap();
    let grown = [NewPartitions::new(&t.case_events, 16), NewPartitions::new(&t.changelog, 16)];
    for r in admin.create_partitions(&grown, &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    let mut refusing = deployment.start().await;
    let ended = refusing.ended(Duration::from_secs(60)).await.expect_err("a state made for 12 on 16 partitions");
    assert!(format!("{ended:#}").contains("made for 12 counting partitions"), "{ended:#}");

    // As a rescale stopped after growing the topics: running it again finishes it.
    let finished = rescale(file, 16);
    let out = text(&finished.stdout);
    assert!(out.contains("12 -> 16 counting partitions"), "{out}{}", text(&finished.stderr));
    let running = deployment.start().await;
    deployment.send(late).await;
    let corrected = common::wait_for_exact_snapshot(settings, "2022-04", &month, closed.revision + 1).await;
    assert_eq!(corrected.figures.totals.received, 3_000);
    running.stop().await;
}
