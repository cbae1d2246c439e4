//! `hotline recount` against the live pipeline, through the real broker: under the live
//! configuration's rules, the recount's snapshot of each month equals the live pipeline's
//! latest revision figure for figure, and its table of dead letters equals the dead letters
//! the live pipeline wrote; on the reference month with calendar-day deadlines and on a v2
//! month with working days. The live snapshots topic is never written unless asked, and
//! never while the live pipeline runs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{Hotline, Options};
use hotline::commands::snapshot::latest_in;
use hotline::domain::month::Month;
use hotline::domain::snapshot::{Scope, Snapshot, Status};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};

/// Events that are dead letters, each for its own reason, and one of March: read in the
/// margin before April and not counted by the recount, as the live pipeline counts it in
/// March.
fn odd_inputs() -> Vec<String> {
    vec![
        "not json".into(),
        json!({"event_id":"b1","case_id":"b1","type":"created","occurred_at":"2022-04-02T10:00:00+08:00",
               "channel":"fax","category":"water"})
        .to_string(),
        json!({"event_id":"b2","case_id":"b2","type":"created","occurred_at":"2022-04-02T10:00:00",
               "channel":"hotline","category":"water"})
        .to_string(),
        json!({"event_id":"m1","case_id":"m1","type":"created","occurred_at":"2022-03-31T23:00:00+08:00",
               "channel":"hotline","category":"water","department":"tiexi_district"})
        .to_string(),
    ]
}

/// Sends `good` out of order with a few events twice, and the odd inputs.
async fn send(deployment: &common::Deployment, good: &[Value]) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut sent = good.to_vec();
    for _ in 0..good.len() / 50 {
        sent.push(good[rng.random_range(0..good.len())].clone());
    }
    sent.shuffle(&mut rng);
    let mut sender = deployment.sender();
    common::send_all(&mut sender, &deployment.config.topics, &sent).await;
    for odd in odd_inputs() {
        sender.send(&deployment.config.topics.cases, None, odd.as_bytes()).await.unwrap();
    }
    sender.finish().await.unwrap();
}

/// The live pipeline's latest revision of `month`, once its figures stop changing: every
/// input idle, event time at its last event.
async fn settled(deployment: &common::Deployment, month: &str) -> Snapshot {
    let (kafka, topic) = (deployment.settings.kafka.clone(), deployment.settings.topics.snapshots.clone());
    let month: Month = month.parse().unwrap();
    let latest = move || {
        let (kafka, topic) = (kafka.clone(), topic.clone());
        tokio::task::spawn_blocking(move || latest_in(&kafka, &topic, Scope::City(None), month).unwrap())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut last: Option<Snapshot> = None;
    loop {
        let now = latest().await.unwrap();
        // Unchanged for 6 s: three times the inputs' idle time and many times min_interval.
        if let (Some(a), Some(b)) = (&last, &now)
            && a.revision == b.revision
            && b.status == Status::Closed
        {
            return b.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "the live snapshot of {month} never settled");
        last = now;
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
}

/// The live dead letters by reason, once there are `at_least`.
async fn live_dead_letters(deployment: &common::Deployment, at_least: usize) -> BTreeMap<String, u64> {
    let config = &deployment.config;
    let dead = common::committed_messages(&config.kafka, &config.topics.dead_letters, at_least).await;
    let mut by_reason = BTreeMap::new();
    for m in &dead {
        let h = m.headers().unwrap().iter().find(|h| h.key == "hotline.reason_kind").unwrap();
        *by_reason.entry(String::from_utf8(h.value.unwrap().to_vec()).unwrap()).or_default() += 1;
    }
    by_reason
}

fn recount(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["recount", "--config", config.to_str().unwrap()])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recount_of_the_reference_month_equals_the_live_figures_and_dead_letters() {
    let deployment = common::Deployment::new("", "").await;
    let settings = &deployment.settings;
    let good = common::generated_month("2022-04", &settings.zone, hotline::generator::REFERENCE_CASES, 2022);
    send(&deployment, &good).await;
    let hotline = Hotline::start(&deployment.file, &Options::default());
    hotline.wait_ready(Duration::from_secs(60)).await;
    let live = settled(&deployment, "2022-04").await;
    let last_event = good.iter().map(|e| e["occurred_at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap()).max();
    let reference =
        common::reference::figures(&good, "2022-04", &settings.zone, settings.default_sla, last_event.unwrap());
    assert_eq!(live.figures, reference, "the live pipeline settled on the reference at its last event");
    let live_dead = live_dead_letters(&deployment, 3).await;
    let live_may =
        latest_in(&settings.kafka, &settings.topics.snapshots, Scope::City(None), "2022-05".parse().unwrap());
    let live_revisions = common::revisions(settings, "2022-04").len();

    let out = tempfile::tempdir().unwrap();
    let run = recount(&deployment.file, &["--from", "2022-04", "--output", out.path().to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let april: Snapshot = read_json(&out.path().join("2022-04.json"));
    assert_eq!(april.status, Status::Closed);
    assert_eq!(
        serde_json::to_string_pretty(&april.figures).unwrap(),
        serde_json::to_string_pretty(&live.figures).unwrap(),
        "the recount's April is the live April, figure for figure"
    );
    assert_eq!(april.made_by, live.made_by, "the same rules, the same build");
    let may: Snapshot = read_json(&out.path().join("2022-05.json"));
    assert_eq!((may.status, Some(&may.figures)), (Status::Provisional, live_may.unwrap().as_ref().map(|s| &s.figures)));
    assert!(!out.path().join("2022-03.json").exists(), "March is before --from");

    let summary: Value = read_json(&out.path().join("recount.json"));
    let dead: BTreeMap<String, u64> = serde_json::from_value(summary["dead_letters"].clone()).unwrap();
    assert_eq!(dead, live_dead, "the dead letters the live pipeline wrote, by reason");
    assert!(summary["before_from"].as_u64().unwrap() >= 1, "March's case was read in the margin: {summary}");
    assert!(summary["messages"].as_u64().unwrap() as usize > good.len());
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(table.contains("| 2022-04 | ") && table.contains("| invalid_json | 1 |"), "{table}");

    assert_eq!(common::revisions(settings, "2022-04").len(), live_revisions, "the live topic was not written");
    drop(hotline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recount_of_a_v2_month_with_working_days_equals_the_live_figures_on_a_topic_of_its_own() {
    let deployment = common::Deployment::new("", common::reference::WORKING_DAYS).await;
    let settings = &deployment.settings;
    let good = common::generated_month("2022-04", &settings.zone, 1500, 31);
    send(&deployment, &good).await;
    let hotline = Hotline::start(&deployment.file, &Options::default());
    hotline.wait_ready(Duration::from_secs(60)).await;
    let live = settled(&deployment, "2022-04").await;
    assert!(live.figures.all_departments.accepted_on_time > 0, "a v2 month: {:?}", live.figures.all_departments);

    // Never the live snapshots topic without --replace-live, and never while the pipeline runs.
    let snapshots = &settings.topics.snapshots;
    let refused = recount(&deployment.file, &["--from", "2022-04", "--topic", snapshots]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--replace-live"));
    let refused = recount(&deployment.file, &["--from", "2022-04", "--topic", snapshots, "--replace-live"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("running member"), "{refused:?}");

    let topic = common::unique("recounted");
    let run = recount(&deployment.file, &["--from", "2022-04", "--to", "2022-04", "--topic", &topic]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let april = latest_in(&settings.kafka, &topic, Scope::City(None), "2022-04".parse().unwrap()).unwrap().unwrap();
    assert_eq!(april.status, Status::Closed);
    assert_eq!(
        serde_json::to_string_pretty(&april.figures).unwrap(),
        serde_json::to_string_pretty(&live.figures).unwrap(),
        "the recount's April is the live April, figure for figure"
    );
    let may = latest_in(&settings.kafka, &topic, Scope::City(None), "2022-05".parse().unwrap()).unwrap();
    assert!(may.is_none(), "May is after --to");
    drop(hotline);
}
