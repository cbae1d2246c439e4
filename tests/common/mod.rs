//! Shared test harness: the real broker started by `scripts/test.sh`, randomly named topics
//! and groups per test, and a pipeline running in-process.

#![allow(dead_code)]

pub mod cluster;
pub mod fleet;
pub mod process;
pub mod reference;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use hotline::avro::Framing;
use hotline::commands::replay::route;
use hotline::commands::snapshot::latest_in;
use hotline::config::{Config, Settings, Topics};
use hotline::domain::month::Month;
use hotline::domain::snapshot::{Scope, Snapshot, Status};
use hotline::generator::{self, Plan};
use hotline::kafka::pipeline;
use hotline::kafka::sender::Sender;
use hotline::telemetry::Telemetry;
use jiff::tz::TimeZone;
use rand::RngExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What the reference report (四平, April 2022) says of its month, as `hotline report` words
/// it: every channel, the totals and each category group. The reference prints 其它's share as
/// 31.7%: 10,059 / 31,681 is 31.75%, which it cut where it rounded every other share (1,802 /
/// 31,681 = 5.688% as 5.7%); shares here round.
pub const REFERENCE_FIGURES: &[&str] = &[
    "收到省长公开电话办公室转来的《国务院“互联网+督查”平台群众留言》承办单64件，全部办结。",
    "省政数局转来的《中国政府网网民留言》25件，全部办结。",
    "办理《吉林省政务服务热线转办平台》2034件，办结1990件；",
    "《省长信箱》12件，全部办结；《市长信箱》22件，全部办结；",
    "《人民网领导留言板》77件，其中市委书记留言板块33件，市长留言板块44件，全部办结。",
    "共受理群众求助、投诉、举报、咨询和建议等问题31681件，办结31620件，正在办理61件，办结率99.8%。",
    "其中疫情问题17883件，占56.4%；社保问题1802件，占5.7%；住建问题621件，占2.0%；",
    "医保问题505件，占1.6%；交通问题453件，占1.4%；住房公积金问题358件，占1.1%；",
    "水、电、气和农业农村等其它问题10059件，占31.8%。",
];

/// The reference's 34 department rows as the report's Markdown table cells:
/// `| name | cases assigned | closed on time |`.
pub fn reference_department_rows() -> Vec<String> {
    let registry = hotline::labels::LabelRegistry::default();
    hotline::generator::DEPARTMENTS
        .iter()
        .map(|(code, assigned, on_time)| format!("| {} | {assigned} | {on_time} |", registry.departments[*code]))
        .collect()
}

/// The bootstrap address of the test broker.
pub fn brokers() -> String {
    std::env::var("HOTLINE_TEST_BROKERS")
        .expect("HOTLINE_TEST_BROKERS is not set: run the tests with scripts/test.sh, which starts a Kafka broker")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::rng().random::<u64>())
}

/// A configuration file's text with its own topics and group on the test broker;
/// `kafka_keys` go into `[kafka]`, `sections` are appended.
pub fn config_text(kafka_keys: &str, sections: &str) -> String {
    config_text_on(&brokers(), kafka_keys, sections)
}

/// `config_text` for another broker than the suite's.
pub fn config_text_on(brokers: &str, kafka_keys: &str, sections: &str) -> String {
    let id = unique("t");
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{id}-group"
partitions = 3
{kafka_keys}
[topics]
cases = "{id}.cases"
letters = "{id}.letters"
boards = "{id}.boards"
snapshots = "{id}.snapshots"
dead_letters = "{id}.dead_letters"
changelog = "{id}.case_state"
case_events = "{id}.case_events"
partials = "{id}.partials"
[snapshot]
grace = "1d"
min_interval = "500ms"
idle_partition = "2s"
[http]
listen = "127.0.0.1:0"
{sections}
"#
    )
}

/// Writes a configuration file for the `hotline` binary into a new temporary folder.
pub fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hotline.toml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

pub fn parse(text: &str) -> Config {
    Config::parse(text, []).expect("a valid test configuration")
}

/// Creates the input topics with different partition counts, as upstream platforms do, with
/// `replication` copies of each partition.
pub async fn create_inputs(config: &Config, replication: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).create().unwrap();
    let t = &config.topics;
    let topics = [(&t.cases, 4), (&t.letters, 2), (&t.boards, 1)].map(|(name, partitions)| {
        NewTopic::new(name, partitions, TopicReplication::Fixed(replication)).set("max.message.bytes", "17825792")
    });
    for r in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
        r.expect("creating an input topic");
    }
}

/// A test's own deployment: its configuration (its own topics and group), the settings built
/// from it, its input topics, and its configuration file for the `hotline` binary.
pub struct Deployment {
    pub config: Config,
    pub settings: Settings,
    /// Holds the configuration file; a test keeps its other files (logs, notes) here too.
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

impl Deployment {
    /// On the suite's broker: `kafka_keys` go into `[kafka]`, `sections` are appended.
    pub async fn new(kafka_keys: &str, sections: &str) -> Deployment {
        Deployment::on(&brokers(), 1, kafka_keys, sections).await
    }

    /// On another broker, with `replication` copies of each input partition.
    pub async fn on(brokers: &str, replication: i32, kafka_keys: &str, sections: &str) -> Deployment {
        let text = config_text_on(brokers, kafka_keys, sections);
        let config = parse(&text);
        let settings = config.clone().settings().unwrap();
        create_inputs(&config, replication).await;
        let (dir, file) = write_config(&text);
        Deployment { config, settings, dir, file }
    }

    /// An upstream sender to its input topics.
    pub fn sender(&self) -> Sender {
        Sender::new(&self.config.kafka).unwrap()
    }

    /// Sends `events` to their input topics with a sender of their own, and waits until every
    /// one is delivered.
    pub async fn send(&self, events: &[Value]) {
        let mut sender = self.sender();
        send_all(&mut sender, &self.config.topics, events).await;
        sender.finish().await.unwrap();
    }

    /// Its pipeline, running in this process.
    pub async fn start(&self) -> Running {
        Running::start(self.settings.clone()).await
    }
}

/// The generator's `month` of `cases` cases (`YYYY-MM`, in `zone`), with contract v2's events
/// and three days of the next month, so that the month closes.
pub fn generated_month(month: &str, zone: &TimeZone, cases: usize, seed: u64) -> Vec<Value> {
    let plan = Plan {
        month: month.parse().unwrap(),
        zone: zone.clone(),
        cases,
        next_month_days: 3,
        seed,
        v2_events: true,
        city: None,
    };
    generator::generate(&plan).into_iter().map(|g| g.json).collect()
}

/// A pipeline running in this process until `stop`.
pub struct Running {
    pub telemetry: Telemetry,
    /// Where its /metrics, /healthz and /readyz are served.
    pub http: std::net::SocketAddr,
    /// Stops the pipeline and the HTTP listener.
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A failing test still stops its pipeline, so the test process can exit.
impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Running {
    pub async fn start(settings: Settings) -> Running {
        hotline::commands::init_logging(false, true); // shown with --nocapture or on failure
        let telemetry = Telemetry::default();
        let stop = CancellationToken::new();
        let http = hotline::http::serve(settings.listen, telemetry.clone(), stop.clone()).await.unwrap().bound;
        let task = tokio::spawn(pipeline::run(settings, telemetry.clone(), Framing::SingleObject, stop.clone()));
        Running { telemetry, http, stop, task: Some(task) }
    }

    /// Waits until `n` input messages were handled.
    pub async fn wait_processed(&self, n: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.telemetry.messages_processed() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} messages processed",
                self.telemetry.messages_processed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.http)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Waits until the pipeline ends by itself, and returns how.
    pub async fn ended(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let task = self.task.take().expect("ended once");
        tokio::time::timeout(timeout, task).await.expect("the pipeline ended in time").unwrap()
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        let task = self.task.take().expect("stopped once");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the pipeline stops within 30 s")
            .unwrap()
            .unwrap();
    }
}

/// The sum of a metric over all its label sets in a `/metrics` text (`name` may include
/// labels, `name{reason="x"}`); 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends `events` to the input topics of `topics`, as upstream platforms do.
pub async fn send_all(sender: &mut Sender, topics: &Topics, events: &[Value]) {
    let mut case_topics = HashMap::new();
    for e in events {
        let line = e.to_string();
        let (topic, key) = route(topics, &line, &mut case_topics);
        sender.send(topic, key.as_deref().map(str::as_bytes), line.as_bytes()).await.unwrap();
    }
}

/// Waits for a snapshot of the month equal to the reference computed at its `as_of`.
pub async fn wait_for_exact_snapshot(settings: &Settings, month: &str, good: &[Value], min_revision: u64) -> Snapshot {
    let (zone, sla) = (&settings.zone, settings.default_sla);
    wait_for_snapshot_of(settings, month, min_revision, |as_of| reference::figures(good, month, zone, sla, as_of)).await
}

/// Waits for a closed snapshot of the month, of at least `min_revision`, whose figures are
/// `expected` at its `as_of`.
pub async fn wait_for_snapshot_of(
    settings: &Settings,
    month: &str,
    min_revision: u64,
    expected: impl Fn(jiff::Timestamp) -> hotline::domain::figures::Figures,
) -> Snapshot {
    wait_for_snapshot_in(settings, Scope::City(None), month, min_revision, expected).await
}

/// `wait_for_snapshot_of` for a city's or the province's snapshots.
pub async fn wait_for_snapshot_in(
    settings: &Settings,
    scope: Scope,
    month: &str,
    min_revision: u64,
    expected: impl Fn(jiff::Timestamp) -> hotline::domain::figures::Figures,
) -> Snapshot {
    // Only a closed revision counts: by then event time has passed the month's end plus grace.
    let name = month;
    let month: Month = month.parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (kafka, topic) = (settings.kafka.clone(), settings.topics.snapshots.clone());
        let snapshot =
            tokio::task::spawn_blocking(move || latest_in(&kafka, &topic, scope, month)).await.unwrap().unwrap();
        if let Some(s) = snapshot {
            let expected = expected(s.as_of);
            if s.figures == expected && s.revision >= min_revision && s.status == Status::Closed {
                return s;
            }
            if tokio::time::Instant::now() > deadline {
                assert_eq!(
                    serde_json::to_string_pretty(&s.figures).unwrap(),
                    serde_json::to_string_pretty(&expected).unwrap(),
                    "the latest snapshot (revision {}) never matched the reference",
                    s.revision
                );
                assert_eq!(
                    s.status,
                    Status::Closed,
                    "revision {} as of {} has every figure right",
                    s.revision,
                    s.as_of
                );
            }
        } else {
            assert!(tokio::time::Instant::now() < deadline, "no snapshot of {name} was published");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `wait_for_exact_snapshot`, calling `explain` (to print what the pipeline logged) before
/// failing when no such snapshot comes.
pub async fn wait_for_exact_snapshot_or(
    settings: &Settings,
    month: &str,
    good: &[Value],
    min_revision: u64,
    explain: impl FnOnce(),
) -> Snapshot {
    let waiting = {
        let (settings, month, good) = (settings.clone(), month.to_owned(), good.to_vec());
        tokio::spawn(async move { wait_for_exact_snapshot(&settings, &month, &good, min_revision).await })
    };
    match waiting.await {
        Ok(last) => last,
        Err(failed) => {
            explain();
            std::panic::resume_unwind(failed.into_panic());
        }
    }
}

/// Every committed message of `topic`, once there are at least `at_least` of them: what a
/// pipeline applied shows up only when its transaction commits.
pub async fn committed_messages(
    kafka: &hotline::config::KafkaConfig,
    topic: &str,
    at_least: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (kafka, topic) = (kafka.clone(), topic.to_owned());
        let all = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            hotline::kafka::topics::read_to_end(&kafka, &topic, Duration::from_secs(30), |m| {
                all.push(m.detach());
                Ok(())
            })
            .unwrap();
            all
        })
        .await
        .unwrap();
        if all.len() >= at_least || tokio::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every committed revision of `month` on the snapshots topic, in topic order.
pub fn revisions(settings: &Settings, month: &str) -> Vec<Snapshot> {
    let codec = hotline::avro::SnapshotCodec::new(Framing::SingleObject);
    let mut all = Vec::new();
    hotline::kafka::topics::read_to_end(&settings.kafka, &settings.topics.snapshots, Duration::from_secs(30), |m| {
        if hotline::kafka::topics::key_str(m) == Some(month) {
            all.push(codec.decode(rdkafka::message::Message::payload(m).unwrap()).unwrap());
        }
        Ok(())
    })
    .unwrap();
    all
}

/// Asserts that the dead letters of `topic` are the `bad` messages, each once.
pub async fn assert_dead_letters(kafka: &hotline::config::KafkaConfig, topic: &str, bad: &[Vec<u8>], what: &str) {
    let mut dead: Vec<Vec<u8>> = committed_messages(kafka, topic, bad.len())
        .await
        .iter()
        .map(|m| rdkafka::Message::payload(m).unwrap_or_default().to_vec())
        .collect();
    dead.sort();
    let mut expected = bad.to_vec();
    expected.sort();
    assert_eq!(dead, expected, "{what}: every bad message dead-lettered exactly once");
}

/// Asserts that `month`'s revisions run 1, 2, 3, ... once each, and returns how many there are.
pub fn assert_revisions(settings: &Settings, month: &str, what: &str) -> usize {
    let revisions: Vec<u64> = revisions(settings, month).iter().map(|s| s.revision).collect();
    assert_eq!(revisions, (1..=revisions.len() as u64).collect::<Vec<_>>(), "{what}: revisions 1, 2, 3, ... once each");
    revisions.len()
}
