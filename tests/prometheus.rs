//! The metrics as the office's Grafana wall sees them: a real Prometheus server (Debian's,
//! installed by `scripts/prometheus.sh`) scrapes a pipeline counting a month of two cities of a
//! province through the real broker. Checked through Prometheus's HTTP API: each city's
//! running month's received count equals what was produced, `promtool check metrics` accepts
//! `/metrics`, and every panel of the Grafana dashboard returns data, for all cities and for
//! one.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const MONTH: &str = "2022-04";

/// Two cities: 四平, the default, and 延边, whose events name it.
const CITIES: &str = r#"
[province]
name = "吉林省"
office = "吉林省政务服务和数字化建设管理局"
default_city = "220300"
[cities.220300]
name = "四平市"
[cities.222400]
name = "延边朝鲜族自治州"
"#;

/// A Prometheus server scraping `target` every second, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: hotline\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed by scripts/prometheus.sh (Debian's package)");
        Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// The value of the single series `query` returns, if it returns one.
    async fn value(&self, query: &str) -> Option<f64> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/query", self.url), [("query", query)]).ok()?;
        let r = reqwest::get(url).await.ok()?;
        let body: Value = r.json().await.ok()?;
        let result = body["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Waits until `query` returns `expected`.
    async fn wait_for(&self, query: &str, expected: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.value(query).await;
            if got == Some(expected) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{query} is {got:?}, expected {expected}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_sees_the_running_month_and_every_dashboard_panel_has_data() {
    let deployment = common::Deployment::new("", CITIES).await;
    let (config, settings) = (&deployment.config, &deployment.settings);
    let pipeline = deployment.start().await;
    let prometheus = Prometheus::start(&pipeline.http.to_string());
    // Rates and quantiles need samples from before the events: wait for the first scrapes.
    prometheus.wait_for(r#"up{job="hotline"}"#, 1.0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let siping = common::generated_month(MONTH, &settings.zone, 800, 5);
    let mut yanbian = common::generated_month(MONTH, &settings.zone, 300, 6);
    for e in &mut yanbian {
        e["city"] = serde_json::json!("222400");
    }
    let events: Vec<Value> = siping.iter().chain(&yanbian).cloned().collect();
    let mut sender = deployment.sender();
    // In two halves some seconds apart, so rates and latency quantiles have samples to work on.
    let (first, second) = events.split_at(events.len() / 2);
    common::send_all(&mut sender, &config.topics, first).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    common::send_all(&mut sender, &config.topics, second).await;
    sender.finish().await.unwrap();
    let last = common::wait_for_exact_snapshot(settings, MONTH, &siping, 1).await;

    // What Prometheus scraped matches what was produced and published, city by city.
    let siping_received = format!(r#"hotline_month_cases{{city="220300",month="{MONTH}",status="received"}}"#);
    prometheus.wait_for(&siping_received, 800.0).await;
    let yanbian_received = format!(r#"hotline_month_cases{{city="222400",month="{MONTH}",status="received"}}"#);
    prometheus.wait_for(&yanbian_received, 300.0).await;
    let closed = last.figures.totals.closed as f64;
    prometheus
        .wait_for(&format!(r#"hotline_month_cases{{city="220300",month="{MONTH}",status="closed"}}"#), closed)
        .await;
    let by_channel = format!(r#"sum(hotline_month_channel_cases{{month="{MONTH}",status="received"}})"#);
    prometheus.wait_for(&by_channel, 1100.0).await;
    prometheus.wait_for(&format!(r#"hotline_month_closed{{city="222400",month="{MONTH}"}}"#), 1.0).await;
    let revision = format!(r#"hotline_snapshot_revision{{city="220300",month="{MONTH}"}}"#);
    prometheus.wait_for(&revision, last.revision as f64).await;
    prometheus.wait_for("sum(hotline_messages_processed_total)", events.len() as f64).await;
    prometheus.wait_for(r#"hotline_transactions_total{outcome="aborted"}"#, 0.0).await;

    // promtool accepts the exposition.
    let (_, metrics) = pipeline.get("/metrics").await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed with prometheus");
    use std::io::Write;
    promtool.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every panel of the dashboard returns data (lag comes with librdkafka's 5 s statistics).
    let dashboard = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/dashboards/hotline.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard_queries.py");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut cities = vec![None, Some("city=222400")];
    while let Some(city) = cities.first().copied() {
        let out = Command::new("python3")
            .args([script, "--prometheus", &prometheus.url, "--dashboard", dashboard])
            .args(city.map(|var| ["--var", var]).into_iter().flatten())
            .output()
            .unwrap();
        if out.status.success() {
            cities.remove(0);
            continue;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dashboard panels without data:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    pipeline.stop().await;
}
