//! The broker stopped for 30 s mid-stream and started again: the pipeline waits, reports it on
//! /readyz, resumes, and the month's figures are still exact; and a `hotline run` told to stop
//! during the outage exits 0 within seconds. Uses a broker of its own, so the rest of the suite
//! keeps its broker.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hotline::generator::{self, Plan};
use hotline::kafka::sender::Sender;
use serde_json::Value;

const MONTH: &str = "2022-04";

fn broker(command: &str, dir: &std::path::Path) -> String {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/broker.sh"))
        .args([command, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "broker.sh {command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A `hotline run` process, killed if the test fails before it exits.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Broker(std::path::PathBuf);

impl Drop for Broker {
    fn drop(&mut self) {
        broker("stop", &self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_waited_out_with_exact_results() {
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    let brokers = broker("start", &broker_dir);
    let _guard = Broker(broker_dir.clone());

    let text = common::config_text_on(&brokers, "", "");
    let config = common::parse(&text);
    let settings = config.clone().settings().unwrap();
    common::create_inputs(&config).await;
    let plan =
        Plan { month: MONTH.parse().unwrap(), zone: settings.zone.clone(), cases: 1500, next_month_days: 3, seed: 5 };
    let events: Vec<Value> = generator::generate(&plan).into_iter().map(|g| g.json).collect();
    let (first, second) = events.split_at(events.len() / 2);

    let pipeline = common::Running::start(settings.clone()).await;
    let mut sender = Sender::new(&config.kafka).unwrap();
    common::send_all(&mut sender, &config, first).await;
    sender.finish().await.unwrap();
    pipeline.wait_processed(first.len() as u64, Duration::from_secs(60)).await;
    assert_eq!(pipeline.get("/readyz").await.0, 200);

    // A second, separate pipeline as a process, to be stopped while the broker is down.
    let (_dir, other_config) = common::write_config(&common::config_text_on(&brokers, "", ""));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut other = Process(
        Command::new(env!("CARGO_BIN_EXE_hotline"))
            .args(["run", "--config", other_config.to_str().unwrap()])
            .env("HOTLINE_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(ready.elapsed() < Duration::from_secs(60), "the second pipeline never got ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    broker("stop", &broker_dir);
    let down = Instant::now();
    let mut seen_unready = false;
    let mut stopped = false;
    while down.elapsed() < Duration::from_secs(30) {
        seen_unready |= pipeline.get("/readyz").await.0 == 503;
        if !stopped && down.elapsed() > Duration::from_secs(5) {
            let term = Instant::now();
            Command::new("kill").args(["-TERM", &other.0.id().to_string()]).status().unwrap();
            let status = loop {
                if let Some(status) = other.0.try_wait().unwrap() {
                    break status;
                }
                assert!(term.elapsed() < Duration::from_secs(30), "still running 30 s after SIGTERM");
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert!(status.success(), "exit status after SIGTERM during the outage: {status}");
            assert!(term.elapsed() < Duration::from_secs(12), "stopped in {:?}", term.elapsed());
            stopped = true;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(stopped);
    assert!(seen_unready, "/readyz reported the outage");
    assert_eq!(pipeline.get("/healthz").await.0, 200, "alive all along");
    broker("resume", &broker_dir);

    let mut sender = Sender::new(&config.kafka).unwrap();
    common::send_all(&mut sender, &config, second).await;
    sender.finish().await.unwrap();
    let last = common::wait_for_exact_snapshot(&settings, MONTH, &events, 1).await;
    assert_eq!(last.figures.totals.received, 1500);
    assert_eq!(pipeline.get("/readyz").await.0, 200, "ready again");
    pipeline.stop().await;
}
