//! One deployment for several cities through the real broker (issue 18): three cities of
//! Jilin, each a generated April with the same case ids, one with its own deadline. Each city's
//! closed snapshot equals the reference computed from that city's events alone, with its own
//! rules; events naming a city not configured, or a malformed code, are dead letters; and
//! `hotline snapshot show --city` and `hotline report --city` read a city's snapshot.

mod common;

use hotline::domain::province::CityCode;
use hotline::domain::snapshot::Scope;
use jiff::{Span, ToSpan};
use serde_json::{Value, json};

const SECTIONS: &str = r#"
[province]
name = "吉林省"
office = "吉林省政务服务和数字化建设管理局"
default_city = "220300"
[cities.220300]
name = "四平市"
[cities.220100]
name = "长春市"
office = "长春市政务服务和数字化建设管理局"
[cities.220100.sla]
default = "2d"
[cities.222400]
name = "延边朝鲜族自治州"
"#;

/// `events` naming `city`.
fn in_city(city: &str, mut events: Vec<Value>) -> Vec<Value> {
    for e in &mut events {
        e["city"] = json!(city);
    }
    events
}

/// `events` without upstream deadlines, so that the city's own `sla.default` decides.
fn without_due_dates(mut events: Vec<Value>) -> Vec<Value> {
    for e in events.iter_mut().filter(|e| e["type"] != "extended") {
        e.as_object_mut().unwrap().remove("due_at");
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_city_of_a_province_is_counted_apart_and_exactly() {
    let deployment = common::Deployment::new("", SECTIONS).await;
    let (settings, file) = (&deployment.settings, &deployment.file);
    let zone = &settings.zone;
    // The default city's events name no city; the ids are the same in every city.
    let siping = common::generated_month("2022-04", zone, 700, 1);
    let changchun = in_city("220100", without_due_dates(common::generated_month("2022-04", zone, 900, 2)));
    let yanbian = in_city("222400", common::generated_month("2022-04", zone, 500, 3));
    let has = |events: &[Value], id: &str| events.iter().any(|e| e["case_id"] == id);
    assert!(has(&siping, "2022-04-000001") && has(&changchun, "2022-04-000001"), "one case id in several cities");
    let strays = vec![
        json!({"event_id": "x-1", "case_id": "x", "type": "closed", "occurred_at": "2022-04-10T00:00:00Z", "city": "220200"}),
        json!({"event_id": "x-2", "case_id": "x", "type": "closed", "occurred_at": "2022-04-10T00:00:00Z", "city": "22030"}),
    ];
    let mut all: Vec<Value> = Vec::new();
    for i in 0..siping.len().max(changchun.len()).max(yanbian.len()) {
        all.extend([&siping, &changchun, &yanbian].iter().filter_map(|city| city.get(i).cloned()));
    }
    all.extend(strays);

    let running = deployment.start().await;
    deployment.send(&all).await;
    let code = |s: &str| Some(s.parse::<CityCode>().unwrap());
    for (city, events, sla) in
        [(None, &siping, 15.days()), (code("220100"), &changchun, 2.days()), (code("222400"), &yanbian, 15.days())]
    {
        let sla: Span = sla;
        let snapshot = common::wait_for_snapshot_in(settings, Scope::City(city), "2022-04", 1, |as_of| {
            common::reference::figures(events, "2022-04", zone, sla, as_of)
        })
        .await;
        assert_eq!(snapshot.city, city);
    }
    // The province's month: its cities' sums, a row per city, the cities ranked; closed once
    // theirs are.
    let province = common::wait_for_snapshot_in(settings, Scope::Province, "2022-04", 1, |as_of| {
        let city = |code: &str, name, events, sla| {
            (code.parse().unwrap(), name, common::reference::figures(events, "2022-04", zone, sla, as_of))
        };
        common::reference::province(&[
            city("220100", "长春市", &changchun, 2.days()),
            city("220300", "四平市", &siping, 15.days()),
            city("222400", "延边朝鲜族自治州", &yanbian, 15.days()),
        ])
    })
    .await;
    let rows = &province.figures.province.as_ref().unwrap().cities;
    assert_eq!(rows.iter().map(|r| r.totals.received).collect::<Vec<_>>(), [900, 700, 500]);
    assert_eq!(province.figures.totals.received, 2100);
    let metrics = running.get("/metrics").await.1;
    assert_eq!(common::metric(&metrics, r#"hotline_events_rejected_total{reason="unknown_city"}"#), 1.0);
    assert_eq!(common::metric(&metrics, r#"hotline_events_rejected_total{reason="invalid_code"}"#), 1.0);
    running.stop().await;

    // A recount in province mode: each city's file and the province's equal the reference.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["recount", "--config", file.to_str().unwrap(), "--from", "2022-04", "--to", "2022-04", "--output"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |key: &str| -> hotline::domain::snapshot::Snapshot {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("{key}.json"))).unwrap()).unwrap()
    };
    let recounted = read("province/2022-04");
    let as_of = recounted.as_of;
    let reference = |events, sla| common::reference::figures(events, "2022-04", zone, sla, as_of);
    assert_eq!(read("2022-04").figures, reference(&siping, 15.days()), "the default city's file is unprefixed");
    assert_eq!(read("220100/2022-04").figures, reference(&changchun, 2.days()));
    assert_eq!(read("222400/2022-04").figures, reference(&yanbian, 15.days()));
    let expected = common::reference::province(&[
        ("220100".parse().unwrap(), "长春市", reference(&changchun, 2.days())),
        ("220300".parse().unwrap(), "四平市", reference(&siping, 15.days())),
        ("222400".parse().unwrap(), "延边朝鲜族自治州", reference(&yanbian, 15.days())),
    ]);
    assert_eq!(recounted.figures, expected);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("recount.json")).unwrap()).unwrap();
    assert_eq!(summary["dead_letters"], json!({"invalid_code": 1, "unknown_city": 1}));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["snapshot", "show", "--config", file.to_str().unwrap(), "--month", "2022-04", "--city", "222400"])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: hotline::domain::snapshot::Snapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((shown.city, shown.figures.totals.received), (code("222400"), 500));
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["snapshot", "show", "--config", file.to_str().unwrap(), "--month", "2022-04", "--city", "220200"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not count that city"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["snapshot", "show", "--config", file.to_str().unwrap(), "--month", "2022-04", "--province"])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: hotline::domain::snapshot::Snapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown, province, "the province's snapshot, read back as JSON");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .arg(format!("{root}/examples/subscribe.py"))
        .args(["--brokers", &settings.kafka.brokers, "--topic", &settings.topics.snapshots, "--month", "2022-04"])
        .args(["--schema", &format!("{root}/schemas/snapshot.avsc"), "--province"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let subscribed: hotline::domain::snapshot::Snapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(subscribed, province, "what a subscriber reads of the province");

    // A city's report is headed by its office and carries its own figures.
    let report = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["report", "--config", file.to_str().unwrap(), "--month", "2022-04", "--city", "220100"])
        .args(["--date", "2022-05-06"])
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let markdown = String::from_utf8(report.stdout).unwrap();
    assert!(markdown.starts_with("**长春市政务服务和数字化建设管理局**"), "{markdown}");
    assert!(markdown.contains("问题900件"), "its 900 cases: {markdown}");

    // The provincial bulletin: the province's office, its cities side by side.
    let bulletin = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["report", "--config", file.to_str().unwrap(), "--month", "2022-04", "--province"])
        .args(["--date", "2022-05-06"])
        .output()
        .unwrap();
    assert!(bulletin.status.success(), "{}", String::from_utf8_lossy(&bulletin.stderr));
    let markdown = String::from_utf8(bulletin.stdout).unwrap();
    assert!(markdown.starts_with("**吉林省政务服务和数字化建设管理局**　2022年5月6日"), "{markdown}");
    assert!(markdown.contains("共受理群众诉求2100件"), "{markdown}");
    for (name, received) in [("长春市", 900), ("四平市", 700), ("延边朝鲜族自治州", 500)] {
        assert!(markdown.contains(&format!("| {name} | {received} |")), "{name}: {markdown}");
    }
}
