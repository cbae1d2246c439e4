//! Three `hotline run` processes in one consumer group on the same input, one of them killed
//! mid-stream: they share the counting partitions (each holds a share of the cases), the dead
//! one's partitions and their state move to the others, and the month still gets exactly one
//! snapshot stream with exact figures and revisions 1, 2, 3, ... published once each.

mod common;

use std::time::Duration;

use common::process::{Hotline, Options};

const MONTH: &str = "2022-04";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_killed_publish_one_exact_snapshot_stream() {
    // The killed instance's partitions move once its session times out.
    let deployment = common::Deployment::new("session_timeout = \"10s\"", "[limits]\nmax_batch = 300\n").await;
    let (config, settings, file) = (&deployment.config, &deployment.settings, &deployment.file);

    let events = common::generated_month(MONTH, &settings.zone, 1500, 3);
    let mut instances: Vec<Hotline> = ["a", "b", "c"]
        .iter()
        .map(|i| Hotline::start(file, &Options { instance_id: Some(common::unique(i)), ..Options::default() }))
        .collect();

    let mut sender = deployment.sender();
    let (first, second) = events.split_at(events.len() / 2);
    common::send_all(&mut sender, &config.topics, first).await;
    // Every instance counts a share: each holds cases of its own counting partition.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut held = Vec::new();
        for i in &instances {
            held.push(i.metric("hotline_cases_held").await);
        }
        if held.iter().all(|h| *h > 0.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not every instance holds cases: {held:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    instances[0].kill(); // SIGKILL, mid-stream
    common::send_all(&mut sender, &config.topics, second).await;
    sender.finish().await.unwrap();

    let last = common::wait_for_exact_snapshot(settings, MONTH, &events, 1).await;
    assert_eq!(last.figures.totals.received, 1500);
    let revisions: Vec<u64> = common::revisions(settings, MONTH).iter().map(|s| s.revision).collect();
    let expected: Vec<u64> = (1..=revisions.len() as u64).collect();
    assert_eq!(revisions, expected, "one snapshot stream, each revision published once");

    // The killed instance's partition and its cases moved to the two survivors.
    let cases: std::collections::HashSet<&str> = events.iter().map(|e| e["case_id"].as_str().unwrap()).collect();
    tokio::time::sleep(Duration::from_secs(2)).await; // gauges refresh every second
    let held = instances[1].metric("hotline_cases_held").await + instances[2].metric("hotline_cases_held").await;
    assert_eq!(held, cases.len() as f64, "the survivors hold every case");
}
