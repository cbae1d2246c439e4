//! End to end, as ratios measured in one run against baselines of the same run (the machines
//! are shared and noisy). The input topics (6, 3 and 4 partitions) are filled with a busy month
//! from the generator (personal data, duplicates and disorder included, ~1 million messages by
//! default), then:
//! - raw read: kcat (librdkafka's CLI) reads the three topics, one consumer per topic;
//! - raw copy: kcat reads them and pipes them into a second kcat producing to one topic;
//! - hotline: `hotline run` with the defaults of `config/hotline.toml` (only brokers, topic
//!   names and group change), from empty until the month is closed with every case counted;
//!   its CPU share (`/proc/PID/stat`) and peak RSS (`VmHWM`);
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

// The tests' harness: its metric reader and plain HTTP GET.
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::metric;
use common::process::http_get;
use hotline::commands::replay::route;
use hotline::commands::snapshot::latest;
use hotline::config::Config;
use hotline::domain::month::Month;
use hotline::domain::snapshot::Status;
use hotline::generator::{self, Plan};
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
    runtime.block_on(async {
        let specs: Vec<TopicSpec<'_>> = inputs
            .iter()
            .map(|(name, partitions)| TopicSpec {
                name,
                partitions: *partitions,
                compacted: false,
                max_message_bytes: None,
            })
            .collect();
        ensure(&config.kafka, &specs).await.unwrap();
        let mut sender = Sender::new(&config.kafka).unwrap();
        let mut case_topics = HashMap::new();
        for line in &lines {
            let (topic, key) = route(&config.topics, line, &mut case_topics);
            sender.send(topic, key.as_deref().map(str::as_bytes), line.as_bytes()).await.unwrap();
        }
        sender.finish().await.unwrap();
    });
    let messages = lines.len();
    drop(lines);
    eprintln!("{messages} messages ({} MB) of {cases} cases on {prefix}.cases/letters/boards", bytes / 1_000_000);

    // Raw read: one kcat per topic, all at once.
    let raw_read = timed(|| {
        let readers: Vec<Child> = inputs
            .iter()
            .map(|(topic, _)| {
                Command::new("kcat")
                    .args(["-C", "-b", &brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("kcat (apt-get install kcat; scripts/bench.sh does)")
            })
            .collect();
        for mut r in readers {
            assert!(r.wait().unwrap().success());
        }
    });

    eprintln!("raw read: {raw_read:.2?}");

    // Raw copy: the same, piped into one kcat producing to a 3-partition topic.
    let copy_topic = format!("{prefix}.raw_copy");
    runtime.block_on(async {
        let spec = TopicSpec { name: &copy_topic, partitions: 3, compacted: false, max_message_bytes: None };
        ensure(&config.kafka, &[spec]).await.unwrap();
    });
    let raw_copy = timed(|| {
        let readers = inputs
            .iter()
            .map(|(topic, _)| format!("kcat -C -b {brokers} -t {topic} -o beginning -e -q -f '%s\\n'"))
            .collect::<Vec<_>>()
            .join(" & ");
        let script = format!("({readers} & wait) | kcat -P -b {brokers} -t {copy_topic} -q");
        assert!(Command::new("bash").args(["-c", &script]).status().unwrap().success());
    });

    eprintln!("raw copy: {raw_copy:.2?}");

    // hotline, from empty until the month is closed with every case counted.
    let month: Month = MONTH.parse().unwrap();
    let started = Instant::now();
    let mut child = start(shipped, &env).0;
    // HOTLINE_BENCH_PERF=1: a call-graph profile of the run in target/bench/perf.data.
    let mut perf = std::env::var_os("HOTLINE_BENCH_PERF").map(|_| {
        let out = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/perf.data");
        std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench")).unwrap();
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
        if let Ok(Some(s)) = latest(&config.kafka, &config.topics.snapshots, month)
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
    let hotline = started.elapsed();
    if let Some(p) = &mut perf {
        Command::new("kill").args(["-INT", &p.id().to_string()]).status().unwrap();
        p.wait().unwrap();
    }
    let end = ProcessSample::of(child.0.id());
    let sample = if end.cpu_seconds > 0.0 { end } else { last_sample };
    stop(&mut child);

    // Restart: a new process on the state just written, until ready.
    let started = Instant::now();
    let (mut child, listen_again) = start(shipped, &env);
    while !ready(&listen_again) {
        assert!(started.elapsed() < Duration::from_secs(300), "not ready within 5 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let restart = started.elapsed();
    let latency = sustained_latency(&runtime, &config, &listen_again);
    stop(&mut child);

    let rate = |d: Duration| messages as f64 / d.as_secs_f64();
    let rows = [
        ("raw read (kcat, one consumer per topic)", raw_read),
        ("raw copy (kcat into kcat)", raw_copy),
        ("hotline run, until the month is closed", hotline),
    ];
    println!("\n| what | seconds | messages/s |\n|---|---|---|");
    for (what, d) in rows {
        println!("| {what} | {:.1} | {:.0} |", d.as_secs_f64(), rate(d));
    }
    let ratio = raw_copy.as_secs_f64() / hotline.as_secs_f64();
    let cpu_share = sample.cpu_seconds / hotline.as_secs_f64();
    let per_case = sample.peak_rss_bytes as f64 / cases as f64;
    println!(
        "\nhotline: {ratio:.2}x the raw-copy rate; CPU {:.0}% of one core; peak RSS {} MB, {per_case:.0} bytes per case; \
         restart to ready {:.1} s ({:.1} s per million cases)",
        cpu_share * 100.0,
        sample.peak_rss_bytes / 1_000_000,
        restart.as_secs_f64(),
        restart.as_secs_f64() * 1e6 / cases as f64
    );
    println!(
        "latency at {:.0} events/s sustained for {:.1} s ({} events): p99 <= {} s from append to counted",
        latency.rate, latency.seconds, latency.events, latency.p99_bound
    );
    let report = json!({
        "messages": messages, "cases": cases, "bytes": bytes,
        "raw_read_s": raw_read.as_secs_f64(), "raw_copy_s": raw_copy.as_secs_f64(),
        "hotline_s": hotline.as_secs_f64(), "hotline_vs_raw_copy": ratio,
        "hotline_cpu_share": cpu_share, "peak_rss_bytes": sample.peak_rss_bytes, "rss_bytes_per_case": per_case,
        "restart_to_ready_s": restart.as_secs_f64(),
        "sustained_rate": latency.rate, "sustained_events": latency.events,
        "latency_p99_at_most_s": latency.p99_bound,
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/report.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("written to target/bench/report.json");
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

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
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

/// CPU time used and peak resident memory of a process, from /proc.
#[derive(Default)]
struct ProcessSample {
    cpu_seconds: f64,
    peak_rss_bytes: u64,
}

impl ProcessSample {
    fn of(pid: u32) -> ProcessSample {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let peak_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        // Clock ticks are 100 per second on Linux.
        ProcessSample { cpu_seconds: ticks / 100.0, peak_rss_bytes: peak_kb * 1024 }
    }
}
