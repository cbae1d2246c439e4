//! End to end, as ratios measured in one run against baselines of the same run (the machines
//! are shared and noisy). The input topics (6, 3 and 4 partitions) are filled with a busy month
//! from the generator (personal data, duplicates and disorder included, ~1 million messages by
//! default), then:
//! - raw read: kcat (librdkafka's CLI) reads the three topics, one consumer per topic;
//! - raw copy: kcat reads them and pipes them into a second kcat producing to one topic;
//! - keyed raw copy: per input topic, kcat reads it and pipes key and value into a kcat of its
//!   own producing to a topic of as many partitions, partitioned by key;
//! - hotline: `hotline run` with the defaults of `config/hotline.toml` (only brokers, topic
//!   names and group change), from empty until the month is closed with every case counted;
//!   its CPU share (`/proc/PID/stat`) and peak RSS (`VmHWM`);
//! - nine cities: the same in province mode (the shipped configuration with Jilin's nine
//!   cities in `[cities]`), on as many cases spread over the cities by population, every
//!   event naming its city, until the province's month is closed;
//! - the three runs above are repeated three times, alternating, each against the raw copy of
//!   its own round; the report gives each ratio's median, min and max;
//! - restart: SIGTERM, then a new `hotline run` on the same state, until `/readyz` answers 200;
//! - latency: that instance then gets the next month's events at a sustained rate
//!   (HOTLINE_BENCH_RATE events/s, default 50,000, for 10 s), and its own histogram
//!   `hotline_event_latency_seconds{from="kafka_timestamp"}` gives the p99 from an event's
//!   append to the input topic until it is counted (to the histogram's bucket bounds).
//!
//! Prints one table and writes `target/bench/report.json`; with HOTLINE_BENCH_PERF=1, `perf`
//! records the hotline run into `target/bench/perf.data`. HOTLINE_* variables reach the
//! `hotline run` process, to try a setting. Run with `scripts/bench.sh`, which
//! starts a broker and builds in release mode; HOTLINE_BENCH_E2E_CASES sets the cases
//! (default 475,000, about a million messages). Under `cargo test` it only checks that it builds.

// The tests' harness: its metric reader, plain HTTP GET and process samples.
#[path = "../tests/common/mod.rs"]
mod common;
mod shared;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::metric;
use common::process::{ProcessSample, http_get};
use hotline::commands::replay::route;
use hotline::commands::snapshot::{latest, latest_in};
use hotline::config::Config;
use hotline::domain::month::Month;
use hotline::domain::snapshot::{Scope, Snapshot, Status};
use hotline::generator::{self, Plan, jilin};
use hotline::kafka::sender::Sender;
use hotline::kafka::topics::{TopicSpec, ensure};
use serde_json::json;

const MONTH: &str = "2022-04";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let brokers = std::env::var("HOTLINE_TEST_BROKERS").expect("HOTLINE_TEST_BROKERS: run scripts/bench.sh");
    let cases: usize = std::env::var("HOTLINE_BENCH_E2E_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(475_000);
    let prefix = hotline::random_id("bench");
    let env: Vec<(String, String)> = vec![
        ("HOTLINE_KAFKA__BROKERS".into(), brokers.clone()),
        ("HOTLINE_KAFKA__GROUP_ID".into(), format!("{prefix}-group")),
        ("HOTLINE_TOPICS__CASES".into(), format!("{prefix}.cases")),
        ("HOTLINE_TOPICS__LETTERS".into(), format!("{prefix}.letters")),
        ("HOTLINE_TOPICS__BOARDS".into(), format!("{prefix}.boards")),
        ("HOTLINE_TOPICS__SNAPSHOTS".into(), format!("{prefix}.snapshots")),
        ("HOTLINE_TOPICS__DEAD_LETTERS".into(), format!("{prefix}.dead_letters")),
        ("HOTLINE_TOPICS__CHANGELOG".into(), format!("{prefix}.case_state")),
        ("HOTLINE_TOPICS__CASE_EVENTS".into(), format!("{prefix}.case_events")),
        ("HOTLINE_TOPICS__PARTIALS".into(), format!("{prefix}.partials")),
    ];
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hotline.toml");
    let config = Config::parse(&std::fs::read_to_string(shipped).unwrap(), env.clone()).unwrap();
    let settings = config.clone().settings().unwrap();
    let t = &config.topics;
    let inputs = [(t.cases.as_str(), 6), (t.letters.as_str(), 3), (t.boards.as_str(), 4)];

    // The input, sent the way upstream does (each case's events to its channel's topic).
    let plan = Plan {
        month: MONTH.parse().unwrap(),
        zone: settings.zone.clone(),
        cases,
        next_month_days: 3,
        seed: 7,
        v2_events: false,
        city: None,
    };
    let lines: Vec<String> = generator::generate(&plan).into_iter().map(|g| g.json.to_string()).collect();
    let bytes: usize = lines.iter().map(String::len).sum();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    shared::send(&runtime, &config, &inputs, &lines);
    let messages = lines.len();
    drop(lines);
    eprintln!("{messages} messages ({} MB) of {cases} cases on {prefix}.cases/letters/boards", bytes / 1_000_000);

    // The province's input: as many cases over Jilin's nine cities, by population.
    let province_prefix = format!("{prefix}-province");
    let mut province_env = env.clone();
    for (name, topic) in [("CASES", "cases"), ("LETTERS", "letters"), ("BOARDS", "boards")] {
        province_env.retain(|(k, _)| *k != format!("HOTLINE_TOPICS__{name}"));
        province_env.push((format!("HOTLINE_TOPICS__{name}"), format!("{province_prefix}.{topic}")));
    }
    let province_config = Config::parse(&std::fs::read_to_string(shipped).unwrap(), province_env.clone()).unwrap();
    let pt = &province_config.topics;
    let province_inputs = [(pt.cases.as_str(), 6), (pt.letters.as_str(), 3), (pt.boards.as_str(), 4)];
    let province_lines = nine_cities(cases, &settings.zone);
    shared::send(&runtime, &province_config, &province_inputs, &province_lines);
    let province_messages = province_lines.len();
    drop(province_lines);
    let province_file = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/province.toml");
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench")).unwrap();
    std::fs::write(province_file, province_toml(shipped)).unwrap();
    eprintln!("{province_messages} messages of {cases} cases in nine cities on {province_prefix}.cases/letters/boards");

    let keyed_prefix = format!("{prefix}.keyed_copy");
    shared::keyed_copy_topics(&runtime, &config, &inputs, &keyed_prefix);

    // Three rounds, alternating: raw read, raw copies, hotline, hotline with nine cities.
    let copy_topic = format!("{prefix}.raw_copy");
    runtime.block_on(async {
        let spec = TopicSpec { name: &copy_topic, partitions: 3, compacted: false, max_message_bytes: None };
        ensure(&config.kafka, &[spec]).await.unwrap();
    });
    let month: Month = MONTH.parse().unwrap();
    let mut rounds = Vec::new();
    let mut last_single_env = env.clone();
    for round in 1..=3 {
        let raw_read = shared::raw_read(&brokers, &inputs);
        let raw_copy = shared::raw_copy(&brokers, &inputs, &copy_topic);
        let keyed_copy = shared::raw_copy_keyed(&brokers, &inputs, &keyed_prefix);
        // Each hotline run from empty: its own group and internal topics.
        let single_env = fresh_internals(&env, &format!("{prefix}-{round}"));
        let single_config = Config::parse(&std::fs::read_to_string(shipped).unwrap(), single_env.clone()).unwrap();
        let single = run_until_closed(shipped, &single_env, cases, round == 3, || {
            latest(&single_config.kafka, &single_config.topics.snapshots, month).ok().flatten()
        });
        let nine_env = fresh_internals(&province_env, &format!("{prefix}-{round}-nine"));
        let nine_config = Config::parse(&province_toml(shipped), nine_env.clone()).unwrap();
        let nine = run_until_closed(province_file, &nine_env, cases, false, || {
            latest_in(&nine_config.kafka, &nine_config.topics.snapshots, Scope::Province, month).ok().flatten()
        });
        eprintln!(
            "round {round}: raw read {raw_read:.2?}, raw copy {raw_copy:.2?}, keyed copy {keyed_copy:.2?}, hotline \
             {:.2?}, nine cities {:.2?}",
            single.0, nine.0
        );
        rounds.push(Round { raw_read, raw_copy, keyed_copy, single, nine });
        last_single_env = single_env;
    }

    // Restart: a new process on the last round's state, until ready.
    let started = Instant::now();
    let (mut child, listen_again) = start(shipped, &last_single_env);
    while !ready(&listen_again) {
        assert!(started.elapsed() < Duration::from_secs(300), "not ready within 5 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let restart = started.elapsed();
    let last_config = Config::parse(&std::fs::read_to_string(shipped).unwrap(), last_single_env).unwrap();
    let latency = sustained_latency(&runtime, &last_config, &listen_again);
    stop(&mut child);

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "\n| round | raw read s | raw copy s | keyed copy s | hotline s | nine cities s | hotline / raw copy | hotline / \
         keyed copy | nine cities / raw copy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} |",
            i + 1,
            r.raw_read.as_secs_f64(),
            r.raw_copy.as_secs_f64(),
            r.keyed_copy.as_secs_f64(),
            r.single.0.as_secs_f64(),
            r.nine.0.as_secs_f64(),
            rate(messages, r.single.0) / rate(messages, r.raw_copy),
            rate(messages, r.single.0) / rate(messages, r.keyed_copy),
            rate(province_messages, r.nine.0) / rate(messages, r.raw_copy)
        );
    }
    let spread = |f: &dyn Fn(&Round) -> f64| shared::spread(rounds.iter().map(f).collect());
    let ratio = spread(&|r| rate(messages, r.single.0) / rate(messages, r.raw_copy));
    let keyed_ratio = spread(&|r| rate(messages, r.single.0) / rate(messages, r.keyed_copy));
    let nine_ratio = spread(&|r| rate(province_messages, r.nine.0) / rate(messages, r.raw_copy));
    let cpu_share = spread(&|r| r.single.1.cpu_seconds / r.single.0.as_secs_f64());
    let per_case = spread(&|r| r.single.1.peak_rss_bytes as f64 / cases as f64);
    let nine_per_case = spread(&|r| r.nine.1.peak_rss_bytes as f64 / cases as f64);
    println!(
        "\nhotline: {:.2}x the raw-copy rate (median of 3, min {:.2}, max {:.2}), {:.2}x the keyed copy's (min {:.2}, \
         max {:.2}); nine cities: {:.2}x (min {:.2}, max \
         {:.2}); CPU {:.0}% of one core; peak RSS {:.0} bytes per case ({:.0} with nine cities); restart to ready {:.1} s \
         ({:.1} s per million cases)",
        ratio["median"].as_f64().unwrap(),
        ratio["min"].as_f64().unwrap(),
        ratio["max"].as_f64().unwrap(),
        keyed_ratio["median"].as_f64().unwrap(),
        keyed_ratio["min"].as_f64().unwrap(),
        keyed_ratio["max"].as_f64().unwrap(),
        nine_ratio["median"].as_f64().unwrap(),
        nine_ratio["min"].as_f64().unwrap(),
        nine_ratio["max"].as_f64().unwrap(),
        cpu_share["median"].as_f64().unwrap() * 100.0,
        per_case["median"].as_f64().unwrap(),
        nine_per_case["median"].as_f64().unwrap(),
        restart.as_secs_f64(),
        restart.as_secs_f64() * 1e6 / cases as f64
    );
    println!(
        "latency at {:.0} events/s sustained for {:.1} s ({} events): p99 <= {} s from append to counted",
        latency.rate, latency.seconds, latency.events, latency.p99_bound
    );
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench");
    // The counting state's figures and the recount's, when their benches ran first (scripts/bench.sh).
    let earlier = |name: &str| -> serde_json::Value {
        std::fs::read_to_string(format!("{dir}/{name}.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let report = json!({
        "messages": messages, "nine_city_messages": province_messages, "cases": cases, "bytes": bytes,
        "rounds": rounds.iter().map(|r| json!({
            "raw_read_s": r.raw_read.as_secs_f64(), "raw_copy_s": r.raw_copy.as_secs_f64(),
            "keyed_copy_s": r.keyed_copy.as_secs_f64(),
            "hotline_s": r.single.0.as_secs_f64(), "nine_cities_s": r.nine.0.as_secs_f64(),
        })).collect::<Vec<_>>(),
        "hotline_vs_raw_copy": ratio, "hotline_vs_keyed_copy": keyed_ratio, "nine_cities_vs_raw_copy": nine_ratio,
        "hotline_cpu_share": cpu_share, "rss_bytes_per_case": per_case, "nine_cities_rss_bytes_per_case": nine_per_case,
        "restart_to_ready_s": restart.as_secs_f64(),
        "sustained_rate": latency.rate, "sustained_events": latency.events,
        "latency_p99_at_most_s": latency.p99_bound,
        "state": earlier("state"),
        "recount": earlier("recount"),
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/report.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("written to target/bench/report.json");
}

/// One round: the baselines, and each hotline run's time and process sample.
struct Round {
    raw_read: Duration,
    raw_copy: Duration,
    keyed_copy: Duration,
    single: (Duration, ProcessSample),
    nine: (Duration, ProcessSample),
}

/// `cases` cases of April over Jilin's nine cities in proportion to their residents, each
/// event naming its city, in event-time order.
fn nine_cities(cases: usize, zone: &jiff::tz::TimeZone) -> Vec<String> {
    let population: usize = jilin::CITIES.iter().map(|c| c.population as usize).sum();
    let mut shares: Vec<usize> = jilin::CITIES.iter().map(|c| cases * c.population as usize / population).collect();
    // What the division left over goes to the largest city.
    shares[0] += cases - shares.iter().sum::<usize>();
    let mut events = Vec::new();
    for (i, (city, share)) in jilin::CITIES.iter().zip(shares).enumerate() {
        let plan = Plan {
            month: MONTH.parse().unwrap(),
            zone: zone.clone(),
            cases: share,
            next_month_days: 3,
            seed: 70 + i as u64,
            v2_events: false,
            city: Some(city),
        };
        events.extend(generator::generate(&plan));
    }
    events.sort_by_key(|g| g.occurred_at);
    events.into_iter().map(|g| g.json.to_string()).collect()
}

/// The shipped configuration in province mode: Jilin's nine cities, no default city.
fn province_toml(shipped: &str) -> String {
    let mut text = std::fs::read_to_string(shipped).unwrap().replace("code = \"220300\"\n", "");
    text.push_str("\n[province]\nname = \"吉林省\"\noffice = \"吉林省政务服务和数字化建设管理局\"\n");
    for city in &jilin::CITIES {
        text.push_str(&format!("[cities.{}]\nname = \"{}\"\n", city.code, city.name));
    }
    text
}

/// `env` with a group and internal topics of its own, named after `prefix`.
fn fresh_internals(env: &[(String, String)], prefix: &str) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    for (key, value) in &mut env {
        let internal = match key.as_str() {
            "HOTLINE_KAFKA__GROUP_ID" => "group",
            "HOTLINE_TOPICS__SNAPSHOTS" => "snapshots",
            "HOTLINE_TOPICS__DEAD_LETTERS" => "dead_letters",
            "HOTLINE_TOPICS__CHANGELOG" => "case_state",
            "HOTLINE_TOPICS__CASE_EVENTS" => "case_events",
            "HOTLINE_TOPICS__PARTIALS" => "partials",
            _ => continue,
        };
        *value = format!("{prefix}.{internal}");
    }
    env
}

/// `hotline run` on `config` from empty until `closed_snapshot` gives a closed month with
/// all `cases`; its time and a sample of its process. With `profile` and HOTLINE_BENCH_PERF=1,
/// `perf` records it into target/bench/perf.data.
fn run_until_closed(
    config: &str,
    env: &[(String, String)],
    cases: usize,
    profile: bool,
    closed_snapshot: impl Fn() -> Option<Snapshot>,
) -> (Duration, ProcessSample) {
    let started = Instant::now();
    let mut child = start(config, env).0;
    let mut perf = (profile && std::env::var_os("HOTLINE_BENCH_PERF").is_some()).then(|| {
        let out = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/perf.data");
        Command::new("perf")
            .args(["record", "-F", "499", "-g", "-o", out, "-p", &child.0.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf (apt-get install linux-perf)")
    });
    let mut last_sample = ProcessSample::default();
    loop {
        // The snapshots topic exists once hotline has made it.
        if let Some(s) = closed_snapshot()
            && s.status == Status::Closed
            && s.figures.totals.received == cases as u64
        {
            break;
        }
        last_sample = ProcessSample::of(child.0.id());
        assert!(child.0.try_wait().unwrap().is_none(), "hotline run exited");
        assert!(started.elapsed() < Duration::from_secs(900), "the month was not closed within 15 minutes");
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = started.elapsed();
    if let Some(p) = &mut perf {
        Command::new("kill").args(["-INT", &p.id().to_string()]).status().unwrap();
        p.wait().unwrap();
    }
    let end = ProcessSample::of(child.0.id());
    stop(&mut child);
    (elapsed, if end.cpu_seconds > 0.0 { end } else { last_sample })
}

/// What the sustained-rate phase measured.
struct Latency {
    /// Events per second actually sent, over `seconds`.
    rate: f64,
    seconds: f64,
    events: usize,
    /// The upper bound of the histogram bucket holding the 99th percentile.
    p99_bound: f64,
}

/// Sends the next month's events at HOTLINE_BENCH_RATE events/s (default 50,000) for 10 s to
/// the running instance on `listen`, waits until they are counted, and reads the p99 of
/// append-to-count latency off the instance's histogram (the counts since the phase began).
fn sustained_latency(runtime: &tokio::runtime::Runtime, config: &Config, listen: &str) -> Latency {
    const SECONDS: usize = 10;
    let rate: usize = std::env::var("HOTLINE_BENCH_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let settings = config.clone().settings().unwrap();
    // About 2.2 events per case.
    let plan = Plan {
        month: "2022-05".parse().unwrap(),
        zone: settings.zone,
        cases: rate * SECONDS * 10 / 22,
        next_month_days: 0,
        seed: 8,
        v2_events: false,
        city: None,
    };
    let lines: Vec<String> = generator::generate(&plan).into_iter().map(|g| g.json.to_string()).collect();
    let before = latency_buckets(&http_get(listen, "/metrics"));
    let processed_before = metric(&http_get(listen, "/metrics"), "hotline_messages_processed_total");
    let started = Instant::now();
    runtime.block_on(async {
        let mut sender = Sender::new(&config.kafka).unwrap();
        let mut case_topics = HashMap::new();
        // In ticks of 10 ms, each sending its share.
        for (tick, chunk) in lines.chunks((rate / 100).max(1)).enumerate() {
            for line in chunk {
                let (topic, key) = route(&config.topics, line, &mut case_topics);
                sender.send(topic, key.as_deref().map(str::as_bytes), line.as_bytes()).await.unwrap();
            }
            let due = started + Duration::from_millis(10 * (tick as u64 + 1));
            tokio::time::sleep_until(due.into()).await;
        }
        sender.finish().await.unwrap();
    });
    let seconds = started.elapsed().as_secs_f64();
    // Counted once every message is processed and the histogram has not moved for 3 s (a
    // commit interval is 200 ms).
    let waited = Instant::now();
    let (mut last, mut still) = (0.0, 0);
    loop {
        let text = http_get(listen, "/metrics");
        let count = latency_buckets(&text).last().map_or(0.0, |(_, n)| *n);
        let processed = metric(&text, "hotline_messages_processed_total") - processed_before;
        still = if count == last { still + 1 } else { 0 };
        if processed >= lines.len() as f64 && still >= 3 {
            break;
        }
        last = count;
        assert!(waited.elapsed() < Duration::from_secs(300), "the sustained events were not counted within 5 minutes");
        std::thread::sleep(Duration::from_secs(1));
    }
    let after = latency_buckets(&http_get(listen, "/metrics"));
    let deltas: Vec<(f64, f64)> =
        after.iter().map(|(le, n)| (*le, n - before.iter().find(|(b, _)| b == le).map_or(0.0, |(_, m)| *m))).collect();
    let total = deltas.last().map_or(0.0, |(_, n)| *n);
    let p99_bound = deltas.iter().find(|(_, n)| *n >= 0.99 * total).map_or(f64::INFINITY, |(le, _)| *le);
    Latency { rate: lines.len() as f64 / seconds, seconds, events: lines.len(), p99_bound }
}

/// The cumulative buckets (upper bound, count) of the append-to-count latency histogram,
/// `+Inf` last.
fn latency_buckets(metrics: &str) -> Vec<(f64, f64)> {
    const PREFIX: &str = "hotline_event_latency_seconds_bucket{from=\"kafka_timestamp\",le=\"";
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(PREFIX))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// A `hotline run` process, killed if the benchmark fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hotline run` (the release build beside this benchmark) with its HTTP listener on a free port.
fn start(config: &str, env: &[(String, String)]) -> (Running, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["run", "--config", config])
        .envs(env.iter().cloned())
        .env("HOTLINE_HTTP__LISTEN", &listen)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (Running(child), listen)
}

fn stop(child: &mut Running) {
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    child.0.wait().unwrap();
}

fn ready(listen: &str) -> bool {
    http_get(listen, "/readyz").split(' ').nth(1) == Some("200")
}
