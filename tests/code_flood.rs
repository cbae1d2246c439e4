//! A flood of distinct codes through `hotline run` and the real broker (issue 21): one
//! upstream sends 70,000 June `created` events, each with its own department and category
//! code; the instance is killed (SIGKILL) once it has counted them, a new one restores that
//! state, and then the reference month (April 2022, the report's every figure) arrives. April
//! is exact figure for figure, June counts every flood case, its codes past the bound are
//! counted under `unregistered`, and the overflow metric says how many.

mod common;

use std::time::{Duration, Instant};

use common::process::{Hotline, Options};
use hotline::domain::snapshot::Snapshot;
use hotline::generator;
use serde_json::{Value, json};

const FLOOD: usize = 70_000;
/// `labels.unregistered_rows`' default.
const KEPT: usize = 1_000;

/// One junk department and one junk category per case, none in the registry.
fn flood() -> Vec<Value> {
    (0..FLOOD)
        .map(|n| {
            let minute = n % (29 * 24 * 60);
            let at = format!("2022-06-{:02}T{:02}:{:02}:00+08:00", 1 + minute / 1440, minute / 60 % 24, minute % 60);
            json!({
                "event_id": format!("flood-{n}"), "case_id": format!("flood-case-{n}"), "type": "created",
                "occurred_at": at, "channel": "provincial_platform",
                "department": format!("junk_d{n:05}"), "category": format!("junk_c{n:05}"),
                "caller_phone": "13912345678",
            })
        })
        .collect()
}

async fn latest(settings: &hotline::config::Settings, month: &str) -> Option<Snapshot> {
    let (kafka, topic) = (settings.kafka.clone(), settings.topics.snapshots.clone());
    let month = month.parse().unwrap();
    tokio::task::spawn_blocking(move || hotline::commands::snapshot::latest(&kafka, &topic, month))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_codes_leaves_the_citys_own_month_exact_across_a_kill() {
    let deployment = common::Deployment::new(&format!(r#"instance_id = "{}""#, common::unique("instance")), "").await;
    let (config, settings, file) = (&deployment.config, &deployment.settings, &deployment.file);
    let log = deployment.dir.path().join("hotline.log");
    let logged = Options { log: Some(log.clone()), ..Options::default() };

    // The flood, counted (June's gauge shows every case), then kill -9.
    let flood = flood();
    deployment.send(&flood).await;
    let started = Instant::now();
    let mut first = Hotline::start(file, &logged);
    first.wait_ready(Duration::from_secs(60)).await;
    while first.metric(r#"hotline_month_cases{city="",month="2022-06",status="received"}"#).await < FLOOD as f64 {
        assert!(started.elapsed() < Duration::from_secs(180), "the flood was not counted in 180 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counted = started.elapsed();
    first.kill();

    // A new process restores the flood's cases, then the city's month arrives.
    let second = Hotline::start(file, &logged);
    let month = common::generated_month("2022-04", &settings.zone, generator::REFERENCE_CASES, 2022);
    deployment.send(&month).await;
    second.wait_ready(Duration::from_secs(120)).await;

    let april = common::wait_for_exact_snapshot_or(settings, "2022-04", &month, 1, || {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = logged.lines().rev().take(40).collect();
        eprintln!("last lines of the instances' log:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    })
    .await;
    assert_eq!(april.figures.totals.received, generator::REFERENCE_CASES as u64);
    assert!(april.figures.by_category.contains_key("housing_fund"));
    assert!(!april.figures.by_department.contains_key("unregistered"));

    // June: every flood case counted; the first 1,000 codes of each kind keep rows, the other
    // 69,000 are counted under `unregistered`, and the metric says so.
    let june = latest(settings, "2022-06").await.expect("June was published");
    let f = &june.figures;
    assert_eq!(f.totals.received, FLOOD as u64);
    assert_eq!(f.by_channel["provincial_platform"].received, FLOOD as u64);
    assert_eq!(f.by_department.len(), KEPT + 1);
    assert_eq!(f.by_department.keys().next().map(String::as_str), Some("junk_d00000"));
    assert!(f.by_department.contains_key("junk_d00999") && !f.by_department.contains_key("junk_d01000"));
    assert_eq!(f.by_department["unregistered"].assigned, (FLOOD - KEPT) as u64);
    assert_eq!(f.by_category.len(), KEPT + 1);
    assert_eq!(f.by_category["unregistered"].received, (FLOOD - KEPT) as u64);
    assert_eq!(f.all_departments.assigned, FLOOD as u64);
    assert!(f.ranking.top.iter().chain(&f.ranking.bottom).all(|r| r.department != "unregistered"));
    for kind in ["department", "category"] {
        let folded =
            second.metric(&format!(r#"hotline_month_codes_folded{{city="",kind="{kind}",month="2022-06"}}"#)).await;
        assert_eq!(folded, (FLOOD - KEPT) as f64, "{kind} codes folded");
    }
    let dead = common::committed_messages(&config.kafka, &config.topics.dead_letters, 0).await;
    assert!(dead.is_empty(), "{} dead letters", dead.len());

    // The report prints April as the reference does.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["report", "--config", file.to_str().unwrap(), "--month", "2022-04"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8(out.stdout).unwrap();
    for figure in common::REFERENCE_FIGURES.iter().map(|s| s.to_string()).chain(common::reference_department_rows()) {
        assert!(report.contains(&figure), "{figure} is missing from\n{report}");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("13912345678"), "personal data in the logs");
    eprintln!(
        "flood of {FLOOD} cases counted in {counted:.1?}; April exact at revision {}; June: {} rows, {} cases \
         under unregistered",
        april.revision,
        f.by_department.len(),
        f.by_department["unregistered"].assigned
    );
}
