//! Internal records this build cannot read (written by a newer version of hotline during a
//! rolling upgrade, say): the partition that holds one stops before it, with an error and a
//! metric, while the others go on counting; nothing is skipped and nothing restarts in a loop.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use hotline::config::Settings;
use hotline::domain::routing::partition_of;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

const MONTH: &str = "2022-04";

/// A record of format version 9, which no build knows yet.
const FROM_THE_FUTURE: &[u8] = b"\x09{\"whatever\":true}";

async fn write_raw(settings: &Settings, topic: &str, partition: i32, key: &str) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &settings.kafka.brokers).create().unwrap();
    let record = FutureRecord::to(topic).partition(partition).key(key).payload(FROM_THE_FUTURE);
    producer.send(record, Duration::from_secs(10)).await.unwrap();
}

fn partition(e: &Value) -> i32 {
    partition_of(e["case_id"].as_str().unwrap(), 3)
}

/// Waits for a snapshot with exactly the figures of `counted`.
async fn wait_for_figures(settings: &Settings, counted: &[Value]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || common::revisions(&settings, MONTH)).await.unwrap()
        };
        if let Some(s) = all.last() {
            let expected = common::reference::figures(counted, MONTH, &settings.zone, settings.default_sla, s.as_of);
            if s.figures == expected {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                assert_eq!(s.figures, expected, "revision {} never matched what was counted", s.revision);
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no snapshot of {MONTH} was published");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_for_metric(pipeline: &common::Running, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while common::metric(&pipeline.get("/metrics").await.1, name) != value {
        assert!(tokio::time::Instant::now() < deadline, "{name} never reached {value}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_this_build_cannot_read_stops_its_partition_and_no_other() {
    let deployment = common::Deployment::new("", "").await;
    let settings = &deployment.settings;
    let t = &deployment.config.topics;

    let events = common::generated_month(MONTH, &settings.zone, 400, 12);
    // Half the cases of counting partition 2 come last, after a restart.
    let mut on_2: Vec<&str> =
        events.iter().filter(|e| partition(e) == 2).map(|e| e["case_id"].as_str().unwrap()).collect();
    on_2.sort();
    on_2.dedup();
    let last_cases: HashSet<&str> = on_2.iter().step_by(2).copied().collect();
    let (last, rest): (Vec<Value>, Vec<Value>) =
        events.iter().cloned().partition(|e| last_cases.contains(e["case_id"].as_str().unwrap()));
    let (first, second) = rest.split_at(rest.len() / 2);

    let pipeline = deployment.start().await;
    deployment.send(first).await;
    // Every counting partition has told the publisher its watermark.
    wait_for_figures(settings, first).await;

    // A routed record of an unknown version on counting partition 1, then the rest of the
    // events: partition 1 stops before it, the others count everything.
    write_raw(settings, &t.case_events, 1, "case-from-the-future").await;
    deployment.send(second).await;
    let stopped_1 = format!("hotline_partitions_stopped{{partition=\"1\",topic=\"{}\"}}", t.case_events);
    wait_for_metric(&pipeline, &stopped_1, 1.0).await;
    let mut counted: Vec<Value> = first.to_vec();
    counted.extend(second.iter().filter(|e| partition(e) != 1).cloned());
    wait_for_figures(settings, &counted).await;
    let metrics = pipeline.get("/metrics").await.1;
    assert_eq!(common::metric(&metrics, "hotline_pipeline_restarts_total"), 0.0, "no restart loop");
    assert_eq!(common::metric(&metrics, "hotline_events_rejected_total"), 0.0, "nothing dead-lettered");
    assert_eq!(pipeline.get("/healthz").await.0, 200);
    pipeline.stop().await;

    // A changelog record of an unknown version on partition 0: after a restart, partition 0
    // is not restored and stops; partition 1 stops again at the same record; partition 2
    // counts what comes next, once.
    write_raw(settings, &t.changelog, 0, "case-from-the-future").await;
    let pipeline = deployment.start().await;
    let stopped_0 = format!("hotline_partitions_stopped{{partition=\"0\",topic=\"{}\"}}", t.changelog);
    wait_for_metric(&pipeline, &stopped_0, 1.0).await;
    deployment.send(&last).await;
    wait_for_metric(&pipeline, &stopped_1, 1.0).await;
    counted.extend(last.iter().cloned());
    wait_for_figures(settings, &counted).await;
    let metrics = pipeline.get("/metrics").await.1;
    assert_eq!(common::metric(&metrics, "hotline_pipeline_restarts_total"), 0.0, "no restart loop");
    assert_eq!(common::metric(&metrics, "hotline_partitions_stopped"), 2.0);
    let revisions: Vec<u64> = common::revisions(settings, MONTH).iter().map(|s| s.revision).collect();
    assert_eq!(revisions, (1..=revisions.len() as u64).collect::<Vec<_>>(), "revisions 1, 2, 3, ... once each");
    pipeline.stop().await;
}
