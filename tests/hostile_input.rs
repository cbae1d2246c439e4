//! Hostile input at volume through `hotline run` and the real broker: the reference month
//! (April 2022) mixed with a corpus of adversarial messages, each shaped as the `created`
//! event of a June case of its own: nesting 100,000 deep, 1 MB strings, invalid UTF-8 and NUL
//! bytes, duplicate keys, numbers out of range, timestamps in years 0 and 9999, every field of
//! every wrong type, and 200,000 distinct department and category codes. Every adversarial
//! message is a dead letter with its reason or, where valid, a June case; April stays exact
//! figure for figure; the process neither exits nor panics, and its memory stays bounded.

mod common;

use std::time::{Duration, Instant};

use common::process::{Hotline, Options, ProcessSample};
use hotline::generator;
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};

/// Distinct department and category codes in the flood.
const CODES: usize = 200_000;
/// What the process may hold at its peak (debug build, the flood's 200,000 cases and the
/// reference month's 31,681 among them; 348 MiB measured).
const PEAK_RSS: u64 = 768 << 20;
/// The corpus's dead letters (the reasons below add up to it).
const DEAD_LETTERS: usize = 89;
/// Bytes of each long string.
const LONG: usize = 1_000_000;

/// A June `created` event of case `n`.
fn created(n: usize) -> Value {
    json!({
        "event_id": format!("hostile-{n}"), "case_id": format!("hostile-case-{n}"), "type": "created",
        "occurred_at": format!("2022-06-{:02}T10:00:00+08:00", 1 + n % 28), "channel": "hotline",
        "department": "sp_water", "category": "water", "caller_phone": "13900001111",
    })
}

/// The adversarial messages but the code flood, each naming (where it can) a case of its own
/// from `first` on.
fn corpus(first: usize) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = Vec::new();
    let mut n = first;
    let mut next = || {
        n += 1;
        created(n)
    };
    // Nesting 100,000 deep: a whole message, and a field's value.
    all.push("[".repeat(100_000).into_bytes());
    let mut deep = next();
    deep["extra"] = json!(null);
    let text = deep
        .to_string()
        .replace("\"extra\":null", &format!("\"extra\":{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)));
    all.push(text.into_bytes());
    // 1 MB strings, in a known field, in an unknown one, as the content.
    for field in ["category", "department", "case_id", "content", "unknown_field"] {
        let mut e = next();
        e[field] = json!("x".repeat(LONG));
        all.push(e.to_string().into_bytes());
    }
    // Invalid UTF-8, raw NUL bytes, and an escaped NUL in a value.
    for bad in [&b"\xff\xfe"[..], b"\xc3\x28", b"\xed\xa0\x80", b"\x00"] {
        let e = next().to_string();
        let (head, tail) = e.split_at(e.find("hotline\"").unwrap());
        all.push([head.as_bytes(), bad, tail.as_bytes()].concat());
    }
    all.push(vec![0; 100]);
    let mut e = next();
    e["case_id"] = json!(format!("nul\u{0}case-{n}", n = first));
    all.push(e.to_string().into_bytes());
    // Duplicate keys: the same field twice, with equal and with different values.
    for (field, other) in
        [("case_id", "\"dup-other\""), ("type", "\"closed\""), ("occurred_at", "\"2022-06-02T10:00:00+08:00\"")]
    {
        let e = next().to_string();
        all.push(e.replacen('{', &format!("{{\"{field}\":{other},"), 1).into_bytes());
    }
    // Numbers out of range, timestamps in years 0 and 9999.
    for (field, value) in [
        ("occurred_at", "1e400"),
        ("occurred_at", "-9223372036854775809"),
        ("occurred_at", "18446744073709551616"),
        ("working_days", "1e999"),
        ("working_days", "-1"),
        ("working_days", "4294967296"),
        ("occurred_at", "\"0000-01-01T00:00:00Z\""),
        ("occurred_at", "\"9999-12-31T23:59:59Z\""),
        ("occurred_at", "\"+10000-01-01T00:00:00Z\""),
        ("occurred_at", "\"2022-06-01T10:00:00+99:00\""),
    ] {
        let e = next().to_string();
        let at = e.find(&format!("\"{field}\":")).map(|i| i + field.len() + 3);
        let text = match at {
            // Replaces the value that follows `"field":`.
            Some(i) => {
                let end = i + e[i..].find([',', '}']).unwrap();
                format!("{}{value}{}", &e[..i], &e[end..])
            }
            None => e.replacen('{', &format!("{{\"{field}\":{value},"), 1),
        };
        all.push(text.into_bytes());
    }
    // Every field of every wrong type.
    let fields =
        ["event_id", "case_id", "type", "occurred_at", "channel", "department", "category", "caller_phone", "city"];
    let wrong = [json!(null), json!(true), json!(12), json!(-1.5), json!([]), json!(["a"]), json!({}), json!({"a": 1})];
    for field in fields {
        for value in &wrong {
            let mut e = next();
            e[field] = value.clone();
            all.push(e.to_string().into_bytes());
        }
    }
    // Not objects at all, and empty.
    for text in ["", "null", "[]", "\"created\"", "12", "{", "}", "{}"] {
        all.push(text.as_bytes().to_vec());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_dead_lettered_or_counted_and_the_month_stays_exact() {
    // Upstream (the test's sender) may send messages of up to 17 MB.
    let deployment = common::Deployment::new("", "[kafka.properties]\n\"message.max.bytes\" = \"17825792\"").await;
    let (config, settings, file) = (&deployment.config, &deployment.settings, &deployment.file);
    let log = deployment.dir.path().join("hotline.log");
    let mut instance = Hotline::start(file, &Options { log: Some(log.clone()), ..Options::default() });
    instance.wait_ready(Duration::from_secs(60)).await;

    let april = common::generated_month("2022-04", &settings.zone, generator::REFERENCE_CASES, 2022);
    let flood: Vec<Vec<u8>> = (0..CODES)
        .map(|n| {
            let mut e = created(n);
            e["department"] = json!(format!("junk_d{n:06}"));
            e["category"] = json!(format!("junk_c{n:06}"));
            e.to_string().into_bytes()
        })
        .collect();
    let corpus = corpus(CODES);
    let hostile: Vec<&Vec<u8>> = flood.iter().chain(&corpus).collect();

    // Upstream sends April with the hostile messages spread among it, at volume.
    let started = Instant::now();
    let mut sender = deployment.sender();
    let every = hostile.len() / april.len() + 1;
    let mut hostile_left = hostile.iter();
    for chunk in april.chunks(1) {
        common::send_all(&mut sender, &config.topics, chunk).await;
        for h in hostile_left.by_ref().take(every) {
            sender.send(&config.topics.cases, None, h).await.unwrap();
        }
    }
    for h in hostile_left {
        sender.send(&config.topics.cases, None, h).await.unwrap();
    }
    let sent = sender.finish().await.unwrap();
    assert_eq!(sent as usize, april.len() + hostile.len());

    let snapshot = common::wait_for_exact_snapshot_or(settings, "2022-04", &april, 1, || {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let notable: Vec<&str> = logged.lines().filter(|l| !l.contains("dead letters")).collect();
        eprintln!("the instance's last lines:\n{}", notable[notable.len().saturating_sub(40)..].join("\n"));
    })
    .await;
    assert_eq!(snapshot.figures.totals.received, generator::REFERENCE_CASES as u64);
    let counted_in = started.elapsed();

    // Every hostile message: a dead letter with its reason, or a June case.
    let dead = common::committed_messages(&config.kafka, &config.topics.dead_letters, DEAD_LETTERS).await;
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for d in &dead {
        let reason = d
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "hotline.reason_kind").and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("every dead letter has its reason");
        *reasons.entry(reason).or_default() += 1;
        if let Some(payload) = d.payload() {
            assert!(hostile.iter().any(|h| h.as_slice() == payload), "a dead letter that was not hostile");
        }
    }
    let june = {
        let (kafka, topic) = (settings.kafka.clone(), settings.topics.snapshots.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (kafka, topic) = (kafka.clone(), topic.clone());
            let latest = tokio::task::spawn_blocking(move || {
                hotline::commands::snapshot::latest(&kafka, &topic, "2022-06".parse().unwrap())
            })
            .await
            .unwrap()
            .unwrap();
            let received = latest.map_or(0, |s| s.figures.totals.received);
            if received as usize + dead.len() >= hostile.len() || Instant::now() > deadline {
                break received as usize;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    assert_eq!(
        june + dead.len(),
        hostile.len(),
        "each hostile message a dead letter ({}) or a June case ({june})",
        dead.len()
    );
    // What the corpus holds, message by message: the flood's cases and 17 valid ones (long
    // strings where no code is read, duplicate keys, out-of-range numbers in fields no figure
    // reads, wrong types there) are counted; the rest are dead letters for these reasons.
    assert_eq!(june, CODES + 17, "June's cases");
    let expected: std::collections::BTreeMap<String, usize> = [
        ("bad_timestamp", 3),
        ("empty", 1),
        ("invalid_code", 4),
        ("invalid_json", 8),
        ("invalid_utf8", 3),
        ("missing_field", 7),
        ("not_an_object", 4),
        ("timestamp_out_of_range", 1),
        ("wrong_type", 58),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(reasons, expected, "the dead letters' reasons");

    let sample = ProcessSample::of(instance.pid());
    assert!(instance.try_wait().is_none(), "the instance exited");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("panicked"), "a panic was logged");
    for personal in ["13900001111", &"x".repeat(64)] {
        assert!(!logged.contains(personal), "the log holds an event's data");
    }
    assert!(
        sample.peak_rss_bytes < PEAK_RSS,
        "peak memory {} MiB over {} MiB",
        sample.peak_rss_bytes >> 20,
        PEAK_RSS >> 20
    );
    eprintln!(
        "{} hostile messages among {} of April: April exact after {counted_in:.1?}; {} dead letters {reasons:?}; \
         {june} June cases; peak RSS {} MiB, CPU {:.1} s",
        hostile.len(),
        april.len(),
        dead.len(),
        sample.peak_rss_bytes >> 20,
        sample.cpu_seconds
    );
    instance.kill();
}
