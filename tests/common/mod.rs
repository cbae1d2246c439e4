//! Shared test harness: the real broker started by `scripts/test.sh`, randomly named topics
//! and groups per test, and a pipeline running in-process.

#![allow(dead_code)]

pub mod reference;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hotline::avro::Framing;
use hotline::config::{Config, Settings};
use hotline::kafka::pipeline;
use hotline::telemetry::Telemetry;
use rand::RngExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// The bootstrap address of the test broker.
pub fn brokers() -> String {
    std::env::var("HOTLINE_TEST_BROKERS")
        .expect("HOTLINE_TEST_BROKERS is not set: run the tests with scripts/test.sh, which starts a Kafka broker")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::rng().random::<u64>())
}

/// A configuration with its own topics and group on the test broker.
pub fn config(extra: &str) -> Config {
    let id = unique("t");
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{id}-group"
partitions = 3
[topics]
cases = "{id}.cases"
letters = "{id}.letters"
boards = "{id}.boards"
snapshots = "{id}.snapshots"
dead_letters = "{id}.dead_letters"
changelog = "{id}.case_state"
[snapshot]
grace = "1d"
min_interval = "500ms"
idle_partition = "2s"
[http]
listen = "127.0.0.1:0"
[limits]
max_message_bytes = 65536
{extra}
"#,
        brokers = brokers()
    );
    Config::parse(&text, []).expect("a valid test configuration")
}

/// Creates the input topics with different partition counts, as upstream platforms do.
pub async fn create_inputs(config: &Config) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).create().unwrap();
    let t = &config.topics;
    let topics = [
        NewTopic::new(&t.cases, 4, TopicReplication::Fixed(1)),
        NewTopic::new(&t.letters, 2, TopicReplication::Fixed(1)),
        NewTopic::new(&t.boards, 1, TopicReplication::Fixed(1)),
    ];
    for r in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
        r.expect("creating an input topic");
    }
}

/// A pipeline running in this process until `stop`.
pub struct Running {
    pub telemetry: Telemetry,
    /// Where its /metrics, /healthz and /readyz are served.
    pub http: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A failing test still stops its pipeline, so the test process can exit.
impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Running {
    pub async fn start(settings: Settings) -> Running {
        let telemetry = Telemetry::new();
        let http = hotline::http::serve(settings.listen, telemetry.clone()).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(pipeline::run(settings, telemetry.clone(), Framing::SingleObject, stop.clone()));
        Running { telemetry, http, stop, task: Some(task) }
    }

    /// Waits until `n` input messages were handled.
    pub async fn wait_processed(&self, n: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.telemetry.messages_processed() < n {
            assert!(tokio::time::Instant::now() < deadline, "only {} of {n} messages processed", self.telemetry.messages_processed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.http)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let task = self.task.take().expect("stopped once");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the pipeline stops within 30 s")
            .unwrap()
            .unwrap();
    }
}
