//! Exactly once under `kill -9`: the `hotline` binary is killed at random moments while a month
//! streams in, restarted each time, and the final snapshot must equal the reference computed
//! from everything sent. Revisions must only grow. SIGTERM must stop it cleanly.

mod common;

use std::time::{Duration, Instant};

use common::process::{Hotline, Options};

use hotline::kafka::sender::Sender;
use rand::RngExt;
use serde_json::Value;

const MONTH: &str = "2022-04";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_and_counts_nothing_twice() {
    let deployment = common::Deployment::new(
        &format!(r#"instance_id = "{}""#, common::unique("instance")),
        "[limits]\nmax_batch = 150\ncommit_interval = \"50ms\"\n",
    )
    .await;
    let (settings, file) = (&deployment.settings, &deployment.file);
    let log = deployment.dir.path().join("hotline.log");

    let events = common::generated_month(MONTH, &settings.zone, 2500, 99);

    // Upstream keeps publishing while the pipeline is killed and restarted.
    let producer_config = deployment.config.clone();
    let to_send = events.clone();
    let producing = tokio::spawn(async move {
        let mut sender = Sender::new(&producer_config.kafka).unwrap();
        for chunk in to_send.chunks(150) {
            common::send_all(&mut sender, &producer_config.topics, chunk).await;
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        sender.finish().await.unwrap()
    });

    let mut kills = 0;
    let logged = Options { log: Some(log.clone()), ..Options::default() };
    let mut instance = Hotline::start(file, &logged);
    let started = Instant::now();
    while kills < 12 {
        // Killed at a random moment once it consumes: mid-batch, mid-transaction or publishing.
        instance.wait_ready(Duration::from_secs(60)).await;
        let wait = rand::rng().random_range(0..2500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        instance.kill(); // SIGKILL
        kills += 1;
        instance = Hotline::start(file, &logged);
    }
    let sent = producing.await.unwrap();
    assert_eq!(sent, events.len() as u64);
    assert!(started.elapsed() < Duration::from_secs(180));

    let last = common::wait_for_exact_snapshot_or(settings, MONTH, &events, 1, || {
        // Show what the instance was doing.
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = logged.lines().rev().take(60).collect();
        eprintln!("last lines of the instances' log:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    })
    .await;
    assert_eq!(last.figures.totals.received, 2500);

    // Every committed revision of the month, in topic order, grows by one.
    let all = common::revisions(settings, MONTH);
    for pair in all.windows(2) {
        assert_eq!(pair[1].revision, pair[0].revision + 1, "revisions go 1, 2, 3, ... across {kills} kills");
    }

    // SIGTERM: finishes its transaction and exits 0 within a few seconds.
    let term = Instant::now();
    let status = instance.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(term.elapsed() < Duration::from_secs(10), "stopped in {:?}", term.elapsed());

    let logged = std::fs::read_to_string(&log).unwrap();
    // Structured: every line is a JSON object with a level and a message.
    for line in logged.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(entry["level"].is_string() && entry["fields"]["message"].is_string(), "{line}");
    }
    // Restarts rebuilt ever larger states: the kills landed while the month streamed in.
    let held: std::collections::BTreeSet<u64> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["fields"]["message"].as_str().is_some_and(|m| m.starts_with("state restored")))
        .filter_map(|e| e["fields"]["cases"].as_u64())
        .collect();
    assert!(
        held.len() >= 5,
        "distinct restored state sizes: {held:?}\n{}",
        logged.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    for personal in ["张三", "1380000", "英雄大街", "供暖"] {
        assert!(!logged.contains(personal), "personal data in the logs: {personal}");
    }
    eprintln!("survived {kills} kills; {} revisions of {MONTH}; restored states of {held:?} cases", all.len());
}
