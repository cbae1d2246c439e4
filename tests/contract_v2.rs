//! Contract v2 through `hotline run` and the real broker: a month of the office's whole loop
//! (sign-fors, returns, extensions, reopens, ratings), sent out of order and partly twice,
//! counted with working-day deadlines over the 2022 holidays, beside each bad v2 input. The
//! closed snapshot equals the independent reference figure for figure, and every bad input
//! is a dead letter with its reason.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::process::{Hotline, Options};
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};

const MONTH: &str = "2022-04";

/// Whether `day` was a working day, from the State Council's notice for 2022 (written out
/// here, apart from `config/calendar.toml`): Qingming 3-5 April off with Saturday 2 April
/// worked; Labour Day 30 April-4 May off with Sunday 24 April and Saturday 7 May worked;
/// the Dragon Boat Festival on Friday 3 June.
fn working(day: Date) -> bool {
    assert!(day.year() == 2022 && (3..=6).contains(&day.month()), "only spring 2022 is written out here: {day}");
    let listed = |days: &[&str]| days.iter().any(|d| d.parse::<Date>().unwrap() == day);
    let off = ["2022-04-03", "2022-04-04", "2022-04-05", "2022-04-30", "2022-05-01", "2022-05-02", "2022-05-03"];
    if listed(&off) || listed(&["2022-05-04", "2022-06-03"]) {
        return false;
    }
    listed(&["2022-04-02", "2022-04-24", "2022-05-07"]) || !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// Midnight ending the kind's Nth working day after the assignment's day in Shanghai; 15
/// calendar days for a kind without a number.
fn deadline(assigned: Timestamp, kind: Option<&str>) -> Timestamp {
    let zone = TimeZone::get("Asia/Shanghai").unwrap();
    let Some(mut left) = common::reference::working_days(kind) else {
        return assigned.to_zoned_datetime(zone).checked_add(Span::new().days(15)).unwrap().timestamp();
    };
    let mut day = assigned.to_zoned_datetime(zone.clone()).date();
    while left > 0 {
        day = day.tomorrow().unwrap();
        if working(day) {
            left -= 1;
        }
    }
    day.tomorrow().unwrap().to_zoned_datetime(zone).unwrap().timestamp()
}

/// Hand-made cases that the generated month does not have.
fn edge_cases() -> Vec<Value> {
    let e = |id: &str, case: &str, kind: &str, at: &str, more: Value| {
        let mut v = json!({"event_id": id, "case_id": case, "type": kind, "occurred_at": at});
        v.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        v
    };
    let created = |id: &str, case: &str, at: &str, kind: &str| {
        e(
            id,
            case,
            "created",
            at,
            json!({"channel":"hotline","category":"water","request_kind":kind,
            "department":"tiexi_district","caller_phone":"13912345678"}),
        )
    };
    vec![
        // Help from Friday 1 April 10:00: due at midnight ending Thursday 7 April (Saturday 2
        // April worked, 3-5 April off). One closes a second before, one a second after.
        created("w1-c", "w1", "2022-04-01T10:00:00+08:00", "help"),
        e("w1-x", "w1", "closed", "2022-04-07T23:59:59+08:00", json!({})),
        created("w2-c", "w2", "2022-04-01T10:00:00+08:00", "help"),
        e("w2-x", "w2", "closed", "2022-04-08T00:00:01+08:00", json!({})),
        // Closed, reopened to another department, closed again and rated twice: the later
        // rating counts, for the department that closed it last.
        created("r-c", "r", "2022-04-08T10:00:00+08:00", "complaint"),
        e("r-s", "r", "accepted", "2022-04-08T10:30:00+08:00", json!({"department":"tiexi_district"})),
        e("r-x1", "r", "closed", "2022-04-09T10:00:00+08:00", json!({})),
        e("r-v1", "r", "rated", "2022-04-09T18:00:00+08:00", json!({"result":"dissatisfied"})),
        e("r-o", "r", "reopened", "2022-04-10T10:00:00+08:00", json!({"department":"tiedong_district"})),
        e("r-x2", "r", "closed", "2022-04-12T10:00:00+08:00", json!({})),
        e("r-v2", "r", "rated", "2022-04-13T10:00:00+08:00", json!({"result":"satisfied"})),
        // A second close of a closed case and a sign-for by a department not holding it:
        // kept, counted nowhere.
        e("r-x3", "r", "closed", "2022-04-09T12:00:00+08:00", json!({})),
        e("r-s2", "r", "accepted", "2022-04-08T11:00:00+08:00", json!({"department":"unicom"})),
        // Returned to dispatch and sent on; an extension by the new holder.
        created("t-c", "t", "2022-04-11T09:00:00+08:00", "report"),
        e(
            "t-r",
            "t",
            "returned",
            "2022-04-11T09:30:00+08:00",
            json!({"department":"tiexi_district","reason":"not_ours"}),
        ),
        e("t-t", "t", "transferred", "2022-04-11T11:00:00+08:00", json!({"to_department":"unicom"})),
        e(
            "t-e",
            "t",
            "extended",
            "2022-04-15T09:00:00+08:00",
            json!({"department":"unicom","due_at":"2022-04-29T00:00:00+08:00"}),
        ),
        e("t-x", "t", "closed", "2022-04-27T09:00:00+08:00", json!({})),
    ]
}

/// Each bad v2 input, with the reason it must be dead-lettered with.
fn bad_inputs() -> Vec<(Value, &'static str)> {
    let e = |id: &str, more: Value| {
        let mut v = json!({"event_id": id, "case_id": "bad", "occurred_at": "2022-04-12T10:00:00+08:00",
            "caller_name": "李四"});
        v.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        v
    };
    vec![
        (e("b1", json!({"type":"rated","result":"thrilled"})), "unknown_result"),
        (e("b2", json!({"type":"rated"})), "missing_field"),
        (e("b3", json!({"type":"extended","department":"tiexi_district"})), "missing_field"),
        (e("b4", json!({"type":"accepted"})), "missing_field"),
        (e("b5", json!({"type":"returned","department":"tiexi_district","reason":"李四 13800000000"})), "invalid_code"),
        (e("b6", json!({"type":"reopened","department":"tiexi_district","due_at":"next week"})), "bad_timestamp"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_month_through_hotline_run_counts_to_the_reference() {
    let deployment = common::Deployment::new("", common::reference::WORKING_DAYS).await;
    let (config, settings) = (&deployment.config, &deployment.settings);

    let mut good = common::generated_month(MONTH, &settings.zone, 1200, 21);
    good.extend(edge_cases());
    // Out of order, and a few events twice.
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let mut sent = good.clone();
    for _ in 0..good.len() / 50 {
        sent.push(good[rng.random_range(0..good.len())].clone());
    }
    sent.shuffle(&mut rng);
    let mut sender = deployment.sender();
    common::send_all(&mut sender, &config.topics, &sent).await;
    for (bad, _) in bad_inputs() {
        sender.send(&config.topics.cases, None, bad.to_string().as_bytes()).await.unwrap();
    }

    let hotline = Hotline::start(&deployment.file, &Options::default());
    hotline.wait_ready(Duration::from_secs(60)).await;
    let zone = settings.zone.clone();
    let snapshot = common::wait_for_snapshot_of(settings, MONTH, 1, |as_of| {
        common::reference::figures_by(&good, MONTH, &zone, &|at, kind| (deadline(at, kind), None), as_of)
    })
    .await;

    // Working days decided: with calendar days the figures would differ.
    let calendar_days = common::reference::figures(&good, MONTH, &zone, settings.default_sla, snapshot.as_of);
    assert_ne!(
        (calendar_days.all_departments.closed_on_time, calendar_days.all_departments.closed_late),
        (snapshot.figures.all_departments.closed_on_time, snapshot.figures.all_departments.closed_late)
    );

    // The edge cases, read off the snapshot.
    let f = &snapshot.figures;
    let d = |code: &str| f.by_department[code];
    assert!(d("tiedong_district").satisfied >= 1 && d("tiedong_district").reopened >= 1);
    assert!(d("unicom").extended >= 1 && d("tiexi_district").returned >= 1);
    let all = f.all_departments;
    assert!(all.accepted_on_time > 100 && all.returned > 10 && all.reopened > 5 && all.satisfied > 100, "{all:?}");
    assert!(!f.ranking.top.is_empty() && !f.ranking.bottom.is_empty(), "{:?}", f.ranking);
    assert!(!snapshot.to_json().contains("13912345678"));

    // Every bad input is a dead letter with its reason, and nothing else is.
    let bad = bad_inputs();
    let dead = common::committed_messages(&config.kafka, &config.topics.dead_letters, bad.len()).await;
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for m in &dead {
        let header = |key: &str| {
            let h = m.headers().unwrap().iter().find(|h| h.key == key).unwrap();
            String::from_utf8(h.value.unwrap().to_vec()).unwrap()
        };
        let payload: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert!(!header("hotline.reason").contains("李四") && !header("hotline.reason").contains("13800000000"));
        got.insert(payload["event_id"].as_str().unwrap().to_owned(), header("hotline.reason_kind"));
    }
    let expected: BTreeMap<String, String> =
        bad.iter().map(|(v, reason)| (v["event_id"].as_str().unwrap().to_owned(), (*reason).to_owned())).collect();
    assert_eq!(got, expected);
    // The second close and the stranger's sign-for were kept and counted as redundant.
    assert!(hotline.metric(r#"hotline_events_redundant_total{type="closed"}"#).await >= 1.0);
    assert!(hotline.metric(r#"hotline_events_redundant_total{type="accepted"}"#).await >= 1.0);
    // The gauges are read from the sums about once a second: they may follow the snapshot.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hotline.metric("hotline_month_department_loop").await == 0.0 {
        assert!(std::time::Instant::now() < deadline, "no office loop in the gauges 10 s after the snapshot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
