//! A month of events through the real broker: every figure of the published snapshot is
//! checked against an independent computation, across a restart, with a time-zone boundary,
//! cross-topic out-of-order events, duplicates and dead letters.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use hotline::domain::snapshot::{Snapshot, Status};
use hotline::kafka::topics::{key_str, read_to_end};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};

use common::{Deployment, reference};

const MONTH: &str = "2022-04";

fn hand_made_events() -> (Vec<(&'static str, Value)>, Vec<Value>) {
    // Sent to explicit topics, in this order: a case's events arriving before its `created`,
    // on other topics than the `created`.
    let routed = vec![
        (
            "boards",
            json!({"event_id":"x1-close","case_id":"x1","type":"closed","occurred_at":"2022-04-20T10:00:00+08:00"}),
        ),
        (
            "cases",
            json!({"event_id":"x1-move","case_id":"x1","type":"transferred","occurred_at":"2022-04-12T10:00:00+08:00",
            "to_department":"commerce_bureau","due_at":"2022-04-25T00:00:00+08:00"}),
        ),
        (
            "letters",
            json!({"event_id":"x1-new","case_id":"x1","type":"created","occurred_at":"2022-04-10T10:00:00+08:00",
            "channel":"mayor_mailbox","category":"epidemic","department":"market_regulation","caller_phone":"13912345678"}),
        ),
        (
            "letters",
            json!({"event_id":"x1-new","case_id":"x1","type":"created","occurred_at":"2022-04-10T10:00:00+08:00",
            "channel":"mayor_mailbox","category":"epidemic","department":"market_regulation","caller_phone":"13912345678"}),
        ),
    ];
    // Either side of the month's end in Asia/Shanghai (2022-04-30T16:00:00Z).
    let boundary = vec![
        json!({"event_id":"tz-a","case_id":"tz-april","type":"created","occurred_at":"2022-04-30T15:59:59Z","channel":"hotline","category":"gas"}),
        json!({"event_id":"tz-m","case_id":"tz-may","type":"created","occurred_at":"2022-04-30T16:30:00Z","channel":"hotline","category":"gas"}),
    ];
    (routed, boundary)
}

/// Bad input and the reason each must be dead-lettered with.
fn bad_messages(good: &[Value]) -> Vec<(Vec<u8>, &'static str)> {
    let created_case = good.iter().find(|e| e["type"] == "created").unwrap()["case_id"].clone();
    let base = json!({"event_id":"bad","case_id":"bad-1","type":"created","occurred_at":"2022-04-03T09:00:00+08:00",
        "channel":"hotline","category":"epidemic","caller_name":"李四"});
    let with = |k: &str, v: Value| {
        let mut e = base.clone();
        e[k] = v;
        e.to_string().into_bytes()
    };
    let without = |k: &str| {
        let mut e = base.clone();
        e.as_object_mut().unwrap().remove(k);
        e.to_string().into_bytes()
    };
    let mut bad = vec![
        (Vec::new(), "empty"),
        (vec![0xC3, 0x28, b'{', b'}'], "invalid_utf8"),
        (b"{not json".to_vec(), "invalid_json"),
        (b"[1,2,3]".to_vec(), "not_an_object"),
        (with("occurred_at", json!("2022-04-03 09:00:00")), "bad_timestamp"),
        (with("occurred_at", json!("2022-02-30T09:00:00Z")), "bad_timestamp"),
        (with("occurred_at", json!("9999-01-01T00:00:00Z")), "timestamp_out_of_range"),
        (with("type", json!("escalated")), "unknown_type"),
        (with("channel", json!("fax")), "unknown_channel"),
        (with("case_id", json!(17)), "wrong_type"),
        (with("content", json!("x".repeat(70_000))), "too_large"),
        (format!("{}1{}", "[".repeat(500), "]".repeat(500)).into_bytes(), "invalid_json"),
        (
            json!({"event_id":"bad-t","case_id":"bad-2","type":"transferred","occurred_at":"2022-04-03T09:00:00Z"})
                .to_string()
                .into_bytes(),
            "missing_field",
        ),
        (
            json!({"event_id":"bad-c2","case_id":created_case,"type":"created","occurred_at":"2022-04-05T09:00:00Z",
            "channel":"gov_website","category":"water"})
            .to_string()
            .into_bytes(),
            "conflicting_created",
        ),
        (with("content", json!("大".repeat(3_500_000))), "too_large"), // 10.5 MB
        (b"null".to_vec(), "not_an_object"),
        (with("channel", json!(["hotline"])), "wrong_type"),
        (with("due_at", json!({"at": "2022-04-09"})), "wrong_type"),
        (with("category", json!("13800000000 张三")), "invalid_code"),
    ];
    for field in ["event_id", "case_id", "type", "occurred_at", "channel", "category"] {
        bad.push((without(field), "missing_field"));
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_through_the_real_broker_gives_exact_figures() {
    let deployment = Deployment::new(
        "[kafka.properties]\n\"message.max.bytes\" = \"17825792\"",
        "[limits]\nmax_message_bytes = 65536\n",
    )
    .await;
    let (config, settings) = (&deployment.config, &deployment.settings);
    let mut sender = deployment.sender();

    // Phase 1: a generated month plus hand-made edge cases.
    let generated = common::generated_month(MONTH, &settings.zone, 3000, 7);
    let (routed, boundary) = hand_made_events();
    let topic_of = |name: &str| match name {
        "cases" => config.topics.cases.clone(),
        "letters" => config.topics.letters.clone(),
        _ => config.topics.boards.clone(),
    };
    for (topic, e) in &routed {
        sender.send(&topic_of(topic), Some(b"x1"), e.to_string().as_bytes()).await.unwrap();
    }
    common::send_all(&mut sender, &config.topics, &boundary).await;
    common::send_all(&mut sender, &config.topics, &generated).await;
    let mut good: Vec<Value> = routed.iter().map(|(_, e)| e.clone()).chain(boundary).chain(generated).collect();
    let phase1 = sender.sent();
    assert!(phase1 > 6000, "several thousand events: {phase1}");

    let pipeline = deployment.start().await;
    pipeline.wait_processed(phase1, Duration::from_secs(120)).await;

    // Phase 2: bad input, once the good events are counted, and a second `closed` of a closed
    // case, which is kept but changes nothing.
    let bad = bad_messages(&good);
    for (payload, _) in &bad {
        sender.send(&config.topics.cases, None, payload).await.unwrap();
    }
    let closed_case = good.iter().find(|e| e["type"] == "closed").unwrap()["case_id"].clone();
    let closed_again =
        json!({"event_id":"x2-again","case_id":closed_case,"type":"closed","occurred_at":"2022-04-28T09:00:00Z"});
    sender.send(&config.topics.cases, None, closed_again.to_string().as_bytes()).await.unwrap();
    good.push(closed_again);
    pipeline.wait_processed(phase1 + bad.len() as u64 + 1, Duration::from_secs(60)).await;

    let first = common::wait_for_exact_snapshot(settings, MONTH, &good, 1).await;
    assert_eq!(first.timezone, "Asia/Shanghai");
    let json = first.to_json();
    for personal in ["13912345678", "李四", "张三", "英雄大街", "13800"] {
        assert!(!json.contains(personal), "personal data in the snapshot: {personal}");
    }
    let x1 = &first.figures.by_department["commerce_bureau"];
    assert!(x1.assigned >= 1 && x1.transferred_in >= 1);

    // The generated month's cases, x1 (out of order, across topics) and the case of
    // 30 April 23:59:59 local time; not the one of 1 May 00:30 local time (16:30Z).
    assert_eq!(first.figures.totals.received, 3000 + 2);

    // Live metrics of the same figures.
    let (status, metrics) = pipeline.get("/metrics").await;
    assert_eq!(status, 200);
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no series {series} in /metrics"))
    };
    assert_eq!(value(r#"hotline_month_cases{city="",month="2022-04",status="received"}"#), 3002.0);
    assert_eq!(
        value(r#"hotline_month_cases{city="",month="2022-04",status="closed"}"#),
        first.figures.totals.closed as f64
    );
    assert_eq!(value(r#"hotline_events_rejected_total{reason="invalid_json"}"#), 2.0);
    assert_eq!(value(r#"hotline_events_redundant_total{type="closed"}"#), 1.0);
    assert!(value("hotline_events_duplicate_total") >= 1.0, "the generator re-sends some events");
    assert!(value("hotline_snapshots_published_total") >= 1.0);
    let open_total: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("hotline_department_open_cases{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    let may = reference::figures(&good, "2022-05", &settings.zone, settings.default_sla, first.as_of);
    let held_open: u64 =
        [&first.figures, &may].iter().flat_map(|f| f.by_department.values()).map(|d| d.in_progress).sum();
    assert_eq!(open_total, held_open as f64, "open cases per department, over the months held");
    assert!(!metrics.contains("李四") && !metrics.contains("13912345678"));
    assert_eq!(pipeline.get("/healthz").await.0, 200);
    assert_eq!(pipeline.get("/readyz").await.0, 200);
    assert_eq!(pipeline.get("/admin").await.0, 404);

    // Dead letters: every bad message, unchanged, with its reason and source.
    let mut dead: Vec<(Vec<u8>, String, String)> = Vec::new();
    for m in common::committed_messages(&config.kafka, &config.topics.dead_letters, bad.len()).await {
        let headers: BTreeMap<String, String> = m
            .headers()
            .unwrap()
            .iter()
            .map(|h| (h.key.to_owned(), String::from_utf8(h.value.unwrap().to_vec()).unwrap()))
            .collect();
        assert_eq!(headers["hotline.source_topic"], config.topics.cases);
        assert!(headers["hotline.source_offset"].parse::<i64>().is_ok());
        assert!(!headers["hotline.reason"].contains("李四"));
        dead.push((
            m.payload().unwrap_or_default().to_vec(),
            headers["hotline.reason_kind"].clone(),
            headers["hotline.reason"].clone(),
        ));
    }
    // Rejected while counting (after routing), a dead letter carries the event as routed,
    // without the input's personal data: compare those by event id.
    let identity = |payload: &[u8], reason: &str, routed: bool| -> Vec<u8> {
        if reason != "conflicting_created" {
            return payload.to_vec();
        }
        let json: Value = serde_json::from_slice(payload).unwrap();
        let event = if routed { &json["event"] } else { &json };
        if routed {
            assert!(!String::from_utf8_lossy(payload).contains("李四"), "no personal data in a routed record");
        }
        event["event_id"].as_str().unwrap().as_bytes().to_vec()
    };
    let mut expected_dead: Vec<(Vec<u8>, String)> =
        bad.iter().map(|(p, r)| (identity(p, r, false), (*r).to_owned())).collect();
    let mut got_dead: Vec<(Vec<u8>, String)> = dead.iter().map(|(p, r, _)| (identity(p, r, true), r.clone())).collect();
    expected_dead.sort();
    got_dead.sort();
    assert_eq!(got_dead, expected_dead);

    // Phase 3: a restart, then late closures of April's open cases.
    pipeline.stop().await;
    let open: Vec<String> = {
        let mut closed = std::collections::HashSet::new();
        for e in good.iter().filter(|e| e["type"] == "closed") {
            closed.insert(e["case_id"].as_str().unwrap().to_owned());
        }
        good.iter()
            .filter(|e| e["type"] == "created" && !closed.contains(e["case_id"].as_str().unwrap()))
            .filter(|e| e["occurred_at"].as_str().unwrap() < "2022-04-30")
            .map(|e| e["case_id"].as_str().unwrap().to_owned())
            .take(3)
            .collect()
    };
    assert!(!open.is_empty());
    let late: Vec<Value> = open
        .iter()
        .map(|c| json!({"event_id": format!("{c}-late"), "case_id": c, "type": "closed", "occurred_at": "2022-06-01T09:00:00+08:00"}))
        .collect();
    let pipeline = deployment.start().await;
    // Sent as a backfill would be, with `hotline replay`.
    let (dir, file) = (&deployment.dir, &deployment.file);
    let ndjson = dir.path().join("late.ndjson");
    std::fs::write(&ndjson, late.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["replay", ndjson.to_str().unwrap(), "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    good.extend(late);
    pipeline.wait_processed(open.len() as u64, Duration::from_secs(60)).await;
    let second = common::wait_for_exact_snapshot(settings, MONTH, &good, first.revision + 1).await;
    assert_eq!(second.status, Status::Closed, "a closed month stays closed");
    assert_eq!(
        second.figures.totals.closed,
        first.figures.totals.closed + open.len() as u64,
        "nothing counted twice after the restart"
    );

    // `hotline snapshot show` prints the same latest revision; a month without one fails clearly.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["snapshot", "show", "--config", file.to_str().unwrap(), "--month", MONTH, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Snapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown, second);
    // A subscriber with only the schema files (Python's confluent-kafka and fastavro, the
    // documented way: examples/subscribe.py) reads the same latest revision.
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .arg(format!("{root}/examples/subscribe.py"))
        .args(["--brokers", &config.kafka.brokers, "--topic", &config.topics.snapshots, "--month", MONTH])
        .args(["--schema", &format!("{root}/schemas/snapshot.avsc")])
        .args(["--schema", &format!("{root}/schemas/snapshot.v3.avsc")])
        .args(["--schema", &format!("{root}/schemas/snapshot.v2.avsc")])
        .args(["--schema", &format!("{root}/schemas/snapshot.v1.avsc")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let subscribed: Snapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(subscribed, second, "what a subscriber reads is what hotline snapshot show prints");
    let unmeasured = |d: &hotline::domain::figures::DepartmentFigures| {
        [d.on_time_rate, d.sign_for_rate, d.return_rate, d.reopen_rate, d.satisfaction_rate].contains(&None)
    };
    assert!(
        second.figures.by_department.values().any(unmeasured),
        "a rate with nothing to measure, 0 in the Avro, is null for both"
    );

    // `hotline report` renders that revision in the office's words, every department counted.
    let notes = dir.path().join("notes.md");
    std::fs::write(&notes, "## 突出问题\n供暖不热。\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["report", "--config", file.to_str().unwrap(), "--month", MONTH, "--notes", notes.to_str().unwrap()])
        .args(["--date", "2022-05-06"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let markdown = String::from_utf8(out.stdout).unwrap();
    let t = &second.figures.totals;
    let totals = format!(
        "问题{}件，办结{}件，正在办理{}件，办结率{:.1}%。",
        t.received,
        t.closed,
        t.in_progress,
        t.closed as f64 * 100.0 / t.received as f64
    );
    assert!(markdown.contains(&totals), "{totals} is not in\n{markdown}");
    assert!(markdown.contains("2022年5月6日") && markdown.contains("供暖不热。"), "{markdown}");
    let report_json = dir.path().join("report.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["report", "--config", file.to_str().unwrap(), "--month", MONTH, "--format", "json"])
        .args(["--output", report_json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(&report_json).unwrap()).unwrap();
    assert_eq!(report["received"], json!(t.received));
    // Numbers as numbers, the date an ISO date.
    let rate = (t.closed * 1000 + t.received / 2) / t.received;
    assert_eq!(report["closure_rate"], json!(rate as f64 / 10.0));
    assert!(report["date"].as_str().unwrap().parse::<jiff::civil::Date>().is_ok(), "{}", report["date"]);
    let rows = report["departments"].as_array().unwrap();
    assert_eq!(rows.len(), second.figures.by_department.values().filter(|d| d.assigned > 0).count());
    for row in rows {
        let d = &second.figures.by_department[row["code"].as_str().unwrap()];
        assert_eq!(
            (row["assigned"].as_u64(), row["closed_on_time"].as_u64()),
            (Some(d.assigned), Some(d.closed_on_time))
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["snapshot", "show", "--config", file.to_str().unwrap(), "--month", "2021-01"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot of 2021-01"));

    // A third-party Avro decoder (Python's fastavro) reads the published bytes.
    let mut raw = None;
    read_to_end(&config.kafka, &config.topics.snapshots, Duration::from_secs(30), |m| {
        if key_str(m) == Some(MONTH) {
            raw = m.payload().map(<[u8]>::to_vec);
        }
        Ok(())
    })
    .unwrap();
    let bytes_file = dir.path().join("snapshot.avro");
    std::fs::write(&bytes_file, raw.unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/avro_decode.py"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/snapshot.avsc"),
        ])
        .arg(&bytes_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "fastavro failed: {}", String::from_utf8_lossy(&out.stderr));
    let decoded: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decoded["month"], MONTH);
    assert_eq!(decoded["revision"], second.revision);
    assert_eq!(decoded["status"], "closed");
    assert_eq!(decoded["totals"]["received"], second.figures.totals.received);
    assert_eq!(decoded["totals"]["closed"], second.figures.totals.closed);
    for (code, d) in &second.figures.by_department {
        assert_eq!(decoded["by_department"][code]["assigned"], d.assigned, "{code}");
        assert_eq!(decoded["by_department"][code]["closed_on_time"], d.closed_on_time, "{code}");
    }

    pipeline.stop().await;
}
