//! `hotline recount` against the raw read, as ratios measured in one run (the machines are
//! shared and noisy). The input topics (6, 3 and 4 partitions) are filled with a year of a
//! busy city from the generator (HOTLINE_BENCH_RECOUNT_MONTHS months from January 2022 of
//! HOTLINE_BENCH_RECOUNT_CASES cases each; by default 12 of 420,000, about 10.3 million
//! messages), then, three rounds, alternating:
//! - raw read: kcat reads the three topics to their end, one consumer per topic;
//! - recount: the release `hotline recount --from 2022-01` over all of it, with the shipped
//!   defaults, into JSON files: its time, the ratio of its rate to the raw read's, its peak
//!   RSS per case held at the end, and the time to its first month's snapshot;
//! - the last month only (`--from` the last month: about a twelfth of the messages), for the
//!   rate's growth with the input and the state.
//!
//! Prints one table and writes `target/bench/recount.json`, which the end-to-end bench folds
//! into its report. Run with `scripts/bench.sh`. Under `cargo test` it only checks that it
//! builds.

#[path = "../tests/common/mod.rs"]
mod common;
mod shared;

use std::process::Command;
use std::time::{Duration, Instant};

use hotline::config::Config;
use hotline::domain::month::Month;
use hotline::generator::{self, Plan};
use serde_json::{Value, json};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let brokers = std::env::var("HOTLINE_TEST_BROKERS").expect("HOTLINE_TEST_BROKERS: run scripts/bench.sh");
    let number = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let months = number("HOTLINE_BENCH_RECOUNT_MONTHS", 12);
    let cases = number("HOTLINE_BENCH_RECOUNT_CASES", 420_000);
    let prefix = hotline::random_id("bench-recount");
    let env: Vec<(String, String)> = vec![
        ("HOTLINE_KAFKA__BROKERS".into(), brokers.clone()),
        ("HOTLINE_KAFKA__GROUP_ID".into(), format!("{prefix}-group")),
        ("HOTLINE_TOPICS__CASES".into(), format!("{prefix}.cases")),
        ("HOTLINE_TOPICS__LETTERS".into(), format!("{prefix}.letters")),
        ("HOTLINE_TOPICS__BOARDS".into(), format!("{prefix}.boards")),
    ];
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hotline.toml");
    let config = Config::parse(&std::fs::read_to_string(shipped).unwrap(), env.clone()).unwrap();
    let settings = config.clone().settings().unwrap();
    let t = &config.topics;
    let inputs = [(t.cases.as_str(), 6), (t.letters.as_str(), 3), (t.boards.as_str(), 4)];

    // A month at a time, as upstream sends them; the last runs three days into the next.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    kept_forever(&runtime, &brokers, &inputs);
    let first: Month = "2022-01".parse().unwrap();
    let mut month = first;
    let (mut messages, mut bytes, mut last_month_messages) = (0, 0, 0);
    let fill = Instant::now();
    for i in 0..months {
        let last = i + 1 == months;
        let plan = Plan {
            month,
            zone: settings.zone.clone(),
            cases,
            next_month_days: if last { 3 } else { 0 },
            seed: 100 + i as u64,
            v2_events: false,
            city: None,
        };
        let generated = generator::generate(&plan);
        // Stamped with their event time, as an upstream that sends each event as it happens.
        let at: Vec<i64> = generated.iter().map(|g| g.occurred_at.as_millisecond()).collect();
        let lines: Vec<String> = generated.into_iter().map(|g| g.json.to_string()).collect();
        messages += lines.len();
        bytes += lines.iter().map(String::len).sum::<usize>();
        if last {
            last_month_messages = lines.len();
        } else {
            month = month.next();
        }
        shared::send_at(&runtime, &config, &inputs, &lines, Some(&at));
    }
    let last_month = month;
    eprintln!(
        "{messages} messages ({} MB) of {months} months on {prefix}.cases/letters/boards, sent in {:.0?}",
        bytes / 1_000_000,
        fill.elapsed()
    );

    let mut rounds = Vec::new();
    for round in 1..=3 {
        let raw_read = shared::raw_read(&brokers, &inputs);
        let all = recount(shipped, &env, first);
        let last = recount(shipped, &env, last_month);
        eprintln!(
            "round {round}: raw read {raw_read:.2?}, recount {:.2?} (first snapshot after {:.1} s), the last month \
             {:.2?}",
            all.elapsed, all.first_snapshot_s, last.elapsed
        );
        rounds.push((raw_read, all, last));
    }

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!("\n| round | raw read s | recount s | recount / raw read | events/s | the last month s | its events/s |");
    println!("|---|---|---|---|---|---|---|");
    for (i, (raw, all, last)) in rounds.iter().enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {:.0} | {:.1} | {:.0} |",
            i + 1,
            raw.as_secs_f64(),
            all.elapsed.as_secs_f64(),
            rate(messages, all.elapsed) / rate(messages, *raw),
            rate(all.messages, all.elapsed),
            last.elapsed.as_secs_f64(),
            rate(last.messages, last.elapsed),
        );
    }
    let spread = |f: &dyn Fn(&(Duration, Recounted, Recounted)) -> f64| shared::spread(rounds.iter().map(f).collect());
    let ratio = spread(&|(raw, all, _)| rate(messages, all.elapsed) / rate(messages, *raw));
    let events_per_s = spread(&|(_, all, _)| rate(all.messages, all.elapsed));
    let last_events_per_s = spread(&|(_, _, last)| rate(last.messages, last.elapsed));
    let per_case = spread(&|(_, all, _)| all.peak_rss_bytes as f64 / all.cases_held as f64);
    let first_snapshot = spread(&|(_, all, _)| all.first_snapshot_s);
    let m = |v: &Value, k: &str| v[k].as_f64().unwrap();
    println!(
        "\nrecount: {messages} messages, {:.2}x the raw read's rate (median of 3, min {:.2}, max {:.2}); {:.0} events/s \
         ({:.0} for the last month's {last_month_messages}); peak RSS {:.0} bytes per case held ({} held); first \
         snapshot after {:.1} s",
        m(&ratio, "median"),
        m(&ratio, "min"),
        m(&ratio, "max"),
        m(&events_per_s, "median"),
        m(&last_events_per_s, "median"),
        m(&per_case, "median"),
        rounds[0].1.cases_held,
        m(&first_snapshot, "median"),
    );
    let report = json!({
        "messages": messages, "bytes": bytes, "months": months, "cases_per_month": cases,
        "last_month_messages": rounds[0].2.messages,
        "rounds": rounds.iter().map(|(raw, all, last)| json!({
            "raw_read_s": raw.as_secs_f64(), "recount_s": all.elapsed.as_secs_f64(),
            "first_snapshot_s": all.first_snapshot_s, "peak_rss_bytes": all.peak_rss_bytes,
            "last_month_s": last.elapsed.as_secs_f64(),
        })).collect::<Vec<_>>(),
        "cases_held": rounds[0].1.cases_held,
        "recount_vs_raw_read": ratio, "events_per_s": events_per_s, "last_month_events_per_s": last_events_per_s,
        "rss_bytes_per_case": per_case, "first_snapshot_s": first_snapshot,
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/recount.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("written to target/bench/recount.json");
}

/// Makes the input topics with no time retention: their messages carry 2022's timestamps.
fn kept_forever(runtime: &tokio::runtime::Runtime, brokers: &str, inputs: &[(&str, i32)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let topics: Vec<NewTopic<'_>> = inputs
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1")
        })
        .collect();
    for result in runtime.block_on(admin.create_topics(&topics, &AdminOptions::new())).unwrap() {
        result.expect("creating an input topic");
    }
}

/// What one recount measured, from its summary.
struct Recounted {
    elapsed: Duration,
    messages: usize,
    cases_held: usize,
    peak_rss_bytes: u64,
    first_snapshot_s: f64,
}

/// `hotline recount --from` (the release build beside this benchmark) into a new folder.
fn recount(config: &str, env: &[(String, String)], from: Month) -> Recounted {
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["recount", "--config", config, "--from", &from.to_string(), "--output"])
        .arg(out.path())
        .envs(env.iter().cloned())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(status.success(), "hotline recount failed");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("recount.json")).unwrap()).unwrap();
    Recounted {
        elapsed,
        messages: summary["messages"].as_u64().unwrap() as usize,
        cases_held: summary["cases_held"].as_u64().unwrap() as usize,
        peak_rss_bytes: summary["peak_rss_bytes"].as_u64().unwrap_or(0),
        first_snapshot_s: summary["first_snapshot_seconds"].as_f64().unwrap_or(f64::NAN),
    }
}
