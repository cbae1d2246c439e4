//! Speed, measured as ratios in one run (the machines are shared and noisy):
//! - counting: events applied per second by the pure core, and the resident memory its
//!   state takes per case;
//! - restart: how long an instance takes to rebuild the tracked cases from the changelog on a
//!   real broker, against how long it took to write them; three restores, the median with
//!   min and max, in seconds per million cases.
//!
//! HOTLINE_BENCH_CASES sets the cases (default 1,000,000; `scripts/bench.sh` holds 5 million,
//! a province's month, where the targets are at most 150 resident bytes and 2.5 s of restart
//! per case and million cases). Writes `target/bench/state.json`, which the end-to-end bench
//! folds into its report. Run with `scripts/bench.sh` (starts a broker), or
//! `cargo bench --bench throughput` with HOTLINE_TEST_BROKERS set. Under `cargo test` it only checks that it builds. The cases are
//! contract v1's, as the performance targets were set on; HOTLINE_BENCH_V2=1 adds the
//! office's loop (sign-fors, returns, extensions, reopens, ratings).

use std::time::{Duration, Instant};

use hotline::config::Config;
use hotline::domain::case::CountingRules;
use hotline::domain::event::{DecodeLimits, decode};
use hotline::domain::ledger::Ledger;
use hotline::generator::{self, Plan};
use hotline::kafka::pipeline::restore_ledger;
use hotline::kafka::sender::Sender;
use hotline::kafka::topics::{TopicSpec, ensure};
use jiff::Timestamp;

fn rules() -> CountingRules {
    CountingRules::reference()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let cases: usize = std::env::var("HOTLINE_BENCH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let zone = rules().zone;

    // Counting: generate, encode as upstream JSON, then decode + apply.
    let t = Instant::now();
    let v2_events = std::env::var("HOTLINE_BENCH_V2").is_ok_and(|v| v == "1");
    let plan =
        Plan { month: "2022-04".parse().unwrap(), zone, cases, next_month_days: 0, seed: 1, v2_events, city: None };
    let lines: Vec<String> = generator::generate(&plan).into_iter().map(|g| g.json.to_string()).collect();
    let generated = t.elapsed();
    let limits = DecodeLimits { max_message_bytes: 1 << 20, latest_occurred_at: Timestamp::MAX };
    let mut ledger = Ledger::new(rules());
    let before = resident_bytes();
    let t = Instant::now();
    for (i, line) in lines.iter().enumerate() {
        let event = decode(line.as_bytes(), &limits).unwrap();
        let _ = ledger.apply(&event);
        // As a counting partition does at each commit.
        if i % 5_000 == 0 {
            ledger.take_changes();
        }
    }
    ledger.take_changes();
    let counting = t.elapsed();
    let held = resident_bytes().saturating_sub(before);
    println!("generated {} events of {cases} cases in {generated:.2?}", lines.len());
    println!(
        "counting (decode + apply): {:.2?}, {:.0} events/s",
        counting,
        lines.len() as f64 / counting.as_secs_f64()
    );
    println!(
        "state: {} cases held in {} MB resident, {:.0} bytes per case",
        ledger.cases_held(),
        held / 1_000_000,
        held as f64 / ledger.cases_held() as f64
    );

    // Restart: write every case record to a changelog topic, then rebuild a ledger from it.
    let Ok(brokers) = std::env::var("HOTLINE_TEST_BROKERS") else {
        println!("restart: skipped (HOTLINE_TEST_BROKERS is not set)");
        return;
    };
    let config = Config::parse(&format!("[kafka]\nbrokers = \"{brokers}\"\npartitions = 3\n"), []).unwrap();
    let topic = format!("bench-changelog-{}", std::process::id());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let written = runtime.block_on(async {
        ensure(&config.kafka, &[TopicSpec { name: &topic, partitions: 3, compacted: true, max_message_bytes: None }])
            .await
            .unwrap();
        let mut sender = Sender::new(&config.kafka).unwrap();
        let t = Instant::now();
        for (case_id, record) in ledger.cases() {
            sender
                .send(&topic, Some(case_id.as_bytes()), &hotline::records::encode_case(record, ledger.codes()))
                .await
                .unwrap();
        }
        sender.finish().await.unwrap();
        t.elapsed()
    });
    println!("changelog: {} records written in {written:.2?}", ledger.cases_held());
    let held_cases = ledger.cases_held();
    let month = "2022-04".parse().unwrap();
    let expected = ledger.figures(month, Timestamp::MAX);
    drop(ledger);
    let mut restores = Vec::new();
    for run in 1..=3 {
        let t = Instant::now();
        let (restored, read) = restore_ledger(&config.kafka, &topic, rules()).unwrap();
        let restore = t.elapsed();
        assert_eq!(restored.cases_held(), held_cases);
        assert_eq!(restored.figures(month, Timestamp::MAX), expected);
        println!(
            "restart {run}: {held_cases} cases restored in {restore:.2?} ({:.0} records/s), {:.2}x the time to write them",
            read as f64 / restore.as_secs_f64(),
            restore.as_secs_f64() / written.max(Duration::from_millis(1)).as_secs_f64()
        );
        restores.push(restore.as_secs_f64() * 1e6 / held_cases as f64);
    }
    restores.sort_by(f64::total_cmp);
    let bytes_per_case = held as f64 / held_cases as f64;
    println!(
        "restart per million cases: median {:.2} s (min {:.2}, max {:.2}); target <= 2.5 s. Resident state: {bytes_per_case:.0} \
         bytes per case; target <= 150",
        restores[1], restores[0], restores[2]
    );
    let report = serde_json::json!({
        "cases": held_cases, "resident_bytes_per_case": bytes_per_case,
        "counting_events_per_s": lines.len() as f64 / counting.as_secs_f64(),
        "restart_s_per_million_cases": {"median": restores[1], "min": restores[0], "max": restores[2]},
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/state.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
}

/// The process's resident set, from /proc/self/statm (pages of 4 KiB).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()).unwrap_or(0) * 4096
}
