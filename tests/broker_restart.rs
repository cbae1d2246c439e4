//! The broker stopped for 30 s mid-stream and started again: the pipeline waits, reports it on
//! /readyz, resumes, and the month's figures are still exact; and a `hotline run` told to stop
//! during the outage exits 0 within seconds. Uses a broker of its own, so the rest of the suite
//! keeps its broker.

mod common;

use std::time::{Duration, Instant};

use common::process::{Hotline, Options, broker_script};

const MONTH: &str = "2022-04";

fn broker(command: &str, dir: &std::path::Path) -> String {
    broker_script(command, dir)
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

    let deployment = common::Deployment::on(&brokers, 1, "", "").await;
    let settings = &deployment.settings;
    let events = common::generated_month(MONTH, &settings.zone, 1500, 5);
    let (first, second) = events.split_at(events.len() / 2);

    let pipeline = deployment.start().await;
    deployment.send(first).await;
    pipeline.wait_processed(first.len() as u64, Duration::from_secs(60)).await;
    assert_eq!(pipeline.get("/readyz").await.0, 200);

    // A second, separate pipeline as a process, to be stopped while the broker is down.
    let (_dir, other_config) = common::write_config(&common::config_text_on(&brokers, "", ""));
    let mut other = Hotline::start(&other_config, &Options::default());
    other.wait_ready(Duration::from_secs(60)).await;

    broker("stop", &broker_dir);
    let down = Instant::now();
    let mut seen_unready = false;
    let mut stopped = false;
    while down.elapsed() < Duration::from_secs(30) {
        seen_unready |= pipeline.get("/readyz").await.0 == 503;
        if !stopped && down.elapsed() > Duration::from_secs(5) {
            let term = Instant::now();
            other.term();
            let status = loop {
                if let Some(status) = other.try_wait() {
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

    deployment.send(second).await;
    let last = common::wait_for_exact_snapshot(settings, MONTH, &events, 1).await;
    assert_eq!(last.figures.totals.received, 1500);
    assert_eq!(pipeline.get("/readyz").await.0, 200, "ready again");
    pipeline.stop().await;
}
