//! Broker failover on a three-node cluster (`scripts/broker.sh cluster`, started by
//! `scripts/test.sh`; each node broker and controller, replication factor 3 and
//! `min.insync.replicas=2` on inputs and internal topics). While a month streams in through
//! three `hotline run` instances, the broker leading an instance's transaction coordinator,
//! then the one leading the group coordinator, then one leading input and changelog
//! partitions are killed with SIGKILL in turn, each restarted after 20 s. The final snapshot
//! must equal the reference, revisions run 1, 2, 3, ..., dead letters are exact, no instance
//! exits, and none ever answers `/readyz` 200 while its loop stands still. Once with static
//! membership (`instance_id` set, as deployed), once with a session timeout shorter than the
//! outages, once with dynamic membership; they share the cluster, one after the other.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{Hotline, Options, broker_script, http_get};
use hotline::kafka::sender::Sender;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;

const MONTH: &str = "2022-04";
/// Partitions of `__consumer_offsets` and `__transaction_state` in the cluster's configuration.
const COORDINATOR_PARTITIONS: i32 = 3;
/// `http.stalled_after` of the instances: a loop that stands still this long fails the probes.
const STALLED_AFTER: &str = "90s";
/// A ready instance must have polled within this long (a dead or wedged loop never polls):
/// `STALLED_AFTER` and the watcher's period.
const STILL: Duration = Duration::from_secs(92);

/// One failover test at a time: they kill brokers of the same cluster.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cluster `scripts/test.sh` started.
#[derive(Clone)]
struct Cluster {
    dir: PathBuf,
    bootstrap: String,
}

impl Cluster {
    fn from_env() -> Cluster {
        let dir = PathBuf::from(std::env::var("HOTLINE_TEST_CLUSTER").expect(
            "HOTLINE_TEST_CLUSTER is not set: run the tests with scripts/test.sh, which starts a three-broker cluster",
        ));
        let bootstrap = std::fs::read_to_string(dir.join("bootstrap")).unwrap().trim().to_owned();
        Cluster { dir, bootstrap }
    }

    fn metadata(&self) -> rdkafka::metadata::Metadata {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().unwrap();
        consumer.fetch_metadata(None, Duration::from_secs(20)).unwrap()
    }

    /// The node leading each partition of the topics named.
    fn leaders(&self, topics: &[&str]) -> Vec<i32> {
        let m = self.metadata();
        m.topics()
            .iter()
            .filter(|t| topics.contains(&t.name()))
            .flat_map(|t| t.partitions().iter().map(|p| p.leader()))
            .collect()
    }

    fn leader(&self, topic: &str, partition: i32) -> i32 {
        let m = self.metadata();
        let t = m.topics().iter().find(|t| t.name() == topic).unwrap_or_else(|| panic!("no topic {topic}"));
        t.partitions().iter().find(|p| p.id() == partition).unwrap().leader()
    }

    /// Every partition of the cluster has all its replicas in sync.
    fn fully_replicated(&self) -> bool {
        let m = self.metadata();
        m.brokers().len() == 3
            && m.topics().iter().all(|t| t.partitions().iter().all(|p| p.isr().len() == p.replicas().len()))
    }

    /// Partitions of `topics` whose last stable offset (the end a read_committed reader can
    /// reach) stays behind the high watermark: an open, or hanging, transaction holds them.
    fn held_by_transactions(&self, topics: &[&str]) -> Vec<String> {
        let end = |isolation: &str, topic: &str, partition: i32| {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &self.bootstrap)
                .set("group.id", "failover-diagnosis")
                .set("isolation.level", isolation)
                .create()
                .unwrap();
            c.fetch_watermarks(topic, partition, Duration::from_secs(10)).map(|w| w.1).unwrap_or(-1)
        };
        let m = self.metadata();
        let mut held = Vec::new();
        for t in m.topics().iter().filter(|t| topics.contains(&t.name())) {
            for p in t.partitions() {
                let (stable, high) =
                    (end("read_committed", t.name(), p.id()), end("read_uncommitted", t.name(), p.id()));
                if stable != high {
                    held.push(format!("{}[{}]: last stable offset {stable}, high watermark {high}", t.name(), p.id()));
                }
            }
        }
        held
    }

    fn node(&self, id: i32) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    fn kill(&self, id: i32) {
        let pid = std::fs::read_to_string(self.node(id).join("pid")).unwrap();
        Command::new("kill").args(["-9", pid.trim()]).status().unwrap();
        while Command::new("kill").args(["-0", pid.trim()]).stderr(Stdio::null()).status().unwrap().success() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn resume(&self, id: i32) {
        broker_script("resume", &self.node(id));
    }

    async fn wait_fully_replicated(&self) {
        let started = Instant::now();
        loop {
            let c = self.clone();
            if tokio::task::spawn_blocking(move || c.fully_replicated()).await.unwrap() {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(90), "replicas not back in sync within 90 s");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The partition of `__consumer_offsets` or `__transaction_state` whose leader coordinates
/// `key` (a group id or a transactional id): Kafka takes the Java hash code of the string.
fn coordinator_partition(key: &str) -> i32 {
    let hash = key.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % COORDINATOR_PARTITIONS
}

/// A `hotline run` process, restarted like a supervisor would if it exits.
struct Instance {
    process: Hotline,
    log: PathBuf,
    instance_id: Option<String>,
    exits: Vec<String>,
    /// When its poll count last moved.
    polls: (f64, Instant),
    processed: f64,
}

impl Instance {
    fn start(config: &Path, log: PathBuf, instance_id: Option<String>) -> Instance {
        let options = Options {
            instance_id: instance_id.clone(),
            log: Some(log.clone()),
            env: vec![("HOTLINE_HTTP__STALLED_AFTER".into(), STALLED_AFTER.into())],
        };
        let process = Hotline::start(config, &options);
        Instance { process, log, instance_id, exits: Vec::new(), polls: (0.0, Instant::now()), processed: 0.0 }
    }

    /// The transactional id it logged at start.
    fn transactional_id(&self) -> Option<String> {
        let logged = std::fs::read_to_string(&self.log).ok()?;
        logged.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find_map(|e| {
            (e["fields"]["message"] == "pipeline starting")
                .then(|| e["fields"]["transactional_id"].as_str())?
                .map(str::to_owned)
        })
    }
}

/// What the watcher saw.
#[derive(Default)]
struct Watch {
    /// `/readyz` answered 200 while the instance's loop had not polled for `STILL`.
    ready_while_still: Vec<String>,
    /// When the instances' total of committed input messages grew.
    progress: Vec<Instant>,
    total: f64,
}

/// Every 250 ms: restarts exited instances (recording how they exited), reads `/readyz` and
/// `/metrics` of each.
async fn watch(
    instances: Arc<Mutex<Vec<Instance>>>,
    config: PathBuf,
    seen: Arc<Mutex<Watch>>,
    done: Arc<tokio::sync::Notify>,
) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    loop {
        let targets: Vec<(usize, String)> = {
            let mut all = instances.lock().unwrap();
            for i in all.iter_mut() {
                if let Some(status) = i.process.try_wait() {
                    let exit = format!("{} exited: {status}", i.instance_id.as_deref().unwrap_or("(dynamic)"));
                    let mut again = Instance::start(&config, i.log.clone(), i.instance_id.clone());
                    again.exits = std::mem::take(&mut i.exits);
                    again.exits.push(exit);
                    *i = again;
                }
            }
            all.iter().enumerate().map(|(n, i)| (n, i.process.listen.clone())).collect()
        };
        let mut total = 0.0;
        for (n, listen) in targets {
            let ready = http.get(format!("http://{listen}/readyz")).send().await.map(|r| r.status().as_u16()).ok();
            let Ok(text) = async { http.get(format!("http://{listen}/metrics")).send().await?.text().await }.await
            else {
                continue;
            };
            let mut all = instances.lock().unwrap();
            let i = &mut all[n];
            let polls = common::metric(&text, "hotline_polls_total");
            if polls != i.polls.0 {
                i.polls = (polls, Instant::now());
            }
            if ready == Some(200) && i.polls.1.elapsed() > STILL {
                seen.lock()
                    .unwrap()
                    .ready_while_still
                    .push(format!("{listen}: ready, no poll for {:?}", i.polls.1.elapsed()));
            }
            i.processed = common::metric(&text, "hotline_messages_processed_total");
            total += i.processed;
        }
        {
            let mut seen = seen.lock().unwrap();
            if total > seen.total {
                seen.total = total;
                seen.progress.push(Instant::now());
            }
        }
        tokio::select! {
            _ = done.notified() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// The longest time the count stood still in the minute after `at`.
fn pause_after(progress: &[Instant], at: Instant) -> Duration {
    let window: Vec<Instant> =
        progress.iter().copied().filter(|t| *t >= at && *t <= at + Duration::from_secs(60)).collect();
    let mut longest = window.first().map_or(Duration::from_secs(60), |first| first.duration_since(at));
    for pair in window.windows(2) {
        longest = longest.max(pair[1].duration_since(pair[0]));
    }
    longest
}

/// `session_timeout`: the consumer group's, when not the default.
async fn failover(static_membership: bool, session_timeout: Option<&str>) {
    let _one_at_a_time = CLUSTER.lock().await;
    let cluster = Cluster::from_env();
    cluster.wait_fully_replicated().await;
    let session = session_timeout.map(|s| format!("\nsession_timeout = \"{s}\"")).unwrap_or_default();
    let deployment = common::Deployment::on(
        &cluster.bootstrap,
        3,
        &format!("replication_factor = 3{session}"),
        "[limits]\nmax_batch = 500\n",
    )
    .await;
    let (config, settings, file) = (&deployment.config, &deployment.settings, &deployment.file);
    // The instances' logs outlive the test, to read when it fails.
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("failover-logs"));
    std::fs::create_dir_all(&logs).unwrap();
    eprintln!("instances' logs: {}", logs.display());

    let events = common::generated_month(MONTH, &settings.zone, 3000, 31);
    let bad: Vec<Vec<u8>> = (0..40).map(|n| format!("{{\"event_id\":\"bad-{n}\",\"case_id\":").into_bytes()).collect();

    let ids: Vec<Option<String>> =
        ["a", "b", "c"].iter().map(|n| static_membership.then(|| common::unique(&format!("failover-{n}")))).collect();
    let instances: Vec<Instance> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| Instance::start(file, logs.join(format!("{n}.log")), id.clone()))
        .collect();
    let instances = Arc::new(Mutex::new(instances));
    let seen = Arc::new(Mutex::new(Watch::default()));
    let done = Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(watch(instances.clone(), file.clone(), seen.clone(), done.clone()));
    let ready = Instant::now();
    loop {
        let listens: Vec<String> = instances.lock().unwrap().iter().map(|i| i.process.listen.clone()).collect();
        let mut all = true;
        for l in listens {
            all &= reqwest::get(format!("http://{l}/readyz")).await.map(|r| r.status().as_u16()).ok() == Some(200);
        }
        if all {
            break;
        }
        assert!(ready.elapsed() < Duration::from_secs(90), "the instances were not all ready within 90 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Upstream publishes the month over about two minutes, with bad input among it.
    let producing = {
        let (config, events, bad) = (config.clone(), events.clone(), bad.clone());
        tokio::spawn(async move {
            let mut sender = Sender::new(&config.kafka).unwrap();
            let mut bad = bad.iter();
            for (n, chunk) in events.chunks(events.len() / 140 + 1).enumerate() {
                common::send_all(&mut sender, &config.topics, chunk).await;
                if n % 3 == 0
                    && let Some(b) = bad.next()
                {
                    sender.send(&config.topics.cases, None, b).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
            for b in bad {
                sender.send(&config.topics.cases, None, b).await.unwrap();
            }
            sender.finish().await.unwrap()
        })
    };

    let mut kills: Vec<(&str, i32, Instant)> = Vec::new();
    for target in ["transaction coordinator", "group coordinator", "input and changelog partitions"] {
        tokio::time::sleep(Duration::from_secs(8)).await;
        let node = match target {
            "transaction coordinator" => {
                let id =
                    instances.lock().unwrap()[0].transactional_id().expect("the instance logged its transactional id");
                cluster.leader("__transaction_state", coordinator_partition(&id))
            }
            "group coordinator" => cluster.leader("__consumer_offsets", coordinator_partition(&config.kafka.group_id)),
            _ => {
                let t = &config.topics;
                let leaders = cluster.leaders(&[&t.cases, &t.letters, &t.boards, &t.changelog]);
                let mut led: HashMap<i32, usize> = HashMap::new();
                for l in leaders {
                    *led.entry(l).or_default() += 1;
                }
                led.into_iter().max_by_key(|(_, n)| *n).unwrap().0
            }
        };
        eprintln!("killing node {node}, leader of the {target}");
        cluster.kill(node);
        kills.push((target, node, Instant::now()));
        tokio::time::sleep(Duration::from_secs(20)).await;
        cluster.resume(node);
        cluster.wait_fully_replicated().await;
    }
    let sent = producing.await.unwrap();
    assert_eq!(sent, (events.len() + bad.len()) as u64);

    let last = common::wait_for_exact_snapshot_or(settings, MONTH, &events, 1, || {
        let t = &config.topics;
        let topics = [&t.cases, &t.letters, &t.boards, &t.case_events, &t.changelog, &t.partials, &t.snapshots];
        let topics: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
        eprintln!("partitions held by a transaction: {:?}", cluster.held_by_transactions(&topics));
        for i in instances.lock().unwrap().iter() {
            let lines: Vec<String> = http_get(&i.process.listen, "/metrics")
                .lines()
                .filter(|l| {
                    ["hotline_consumer_lag", "hotline_messages_processed_total", "hotline_polls_total", "hotline_ready"]
                        .iter()
                        .any(|m| l.starts_with(m))
                })
                .map(str::to_owned)
                .collect();
            eprintln!("instance on {}:\n{}", i.process.listen, lines.join("\n"));
            // Where its threads stand (gdb is there on the test machine; skipped if not).
            let stacks = Command::new("gdb")
                .args(["-p", &i.process.pid().to_string(), "-batch", "-ex", "thread apply all bt 12"])
                .output();
            if let Ok(out) = stacks {
                let text = String::from_utf8_lossy(&out.stdout);
                let frames: Vec<&str> =
                    text.lines().filter(|l| l.starts_with('#') || l.starts_with("Thread")).collect();
                eprintln!("threads of {}:\n{}", i.process.listen, frames.join("\n"));
            }
        }
        // What the instances said that was not routine.
        for n in 0..3 {
            let logged = std::fs::read_to_string(logs.join(format!("{n}.log"))).unwrap_or_default();
            let notable: Vec<&str> = logged.lines().filter(|l| !l.contains("\"level\":\"INFO\"")).collect();
            eprintln!(
                "instance {n}, last warnings and errors:\n{}",
                notable[notable.len().saturating_sub(30)..].join("\n")
            );
        }
    })
    .await;
    assert_eq!(last.figures.totals.received, 3000);
    let revisions: Vec<u64> = common::revisions(settings, MONTH).iter().map(|s| s.revision).collect();
    assert_eq!(revisions, (1..=revisions.len() as u64).collect::<Vec<_>>(), "revisions 1, 2, 3, ... once each");
    let mut dead: Vec<Vec<u8>> = common::committed_messages(&config.kafka, &config.topics.dead_letters, bad.len())
        .await
        .iter()
        .map(|m| rdkafka::Message::payload(m).unwrap_or_default().to_vec())
        .collect();
    dead.sort();
    let mut expected = bad.clone();
    expected.sort();
    assert_eq!(dead, expected, "every bad message dead-lettered exactly once");

    done.notify_one();
    watcher.await.unwrap();
    let (exits, listens): (Vec<String>, Vec<String>) = {
        let instances = instances.lock().unwrap();
        (
            instances.iter().flat_map(|i| i.exits.clone()).collect(),
            instances.iter().map(|i| i.process.listen.clone()).collect(),
        )
    };
    assert!(exits.is_empty(), "no instance exits on a broker failover: {exits:?}");
    let mut recovered = 0.0;
    let mut restarts = 0.0;
    let mut abandoned = 0.0;
    for listen in listens {
        let text = reqwest::get(format!("http://{listen}/metrics")).await.unwrap().text().await.unwrap();
        recovered += common::metric(&text, "hotline_consumer_recreated_total");
        restarts += common::metric(&text, "hotline_pipeline_restarts_total");
        abandoned += common::metric(&text, "hotline_producers_abandoned_total");
    }
    let seen = seen.lock().unwrap();
    assert!(seen.ready_while_still.is_empty(), "ready while the loop stood still: {:?}", seen.ready_while_still);
    let pauses: Vec<String> = kills
        .iter()
        .map(|(target, node, at)| {
            format!("{target} (node {node}): {:.1} s", pause_after(&seen.progress, *at).as_secs_f64())
        })
        .collect();
    eprintln!(
        "{} membership, session timeout {}: exact after 3 broker kills; {} revisions; consumers recreated {recovered}, producers abandoned \
         {abandoned}, pipeline restarts {restarts}; longest pause in counting after each kill: {}",
        if static_membership { "static" } else { "dynamic" },
        session_timeout.unwrap_or("45s (default)"),
        revisions.len(),
        pauses.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_failover_with_static_membership_counts_exactly() {
    failover(true, None).await;
}

/// Sessions shorter than a broker's outage may expire: librdkafka then fences a static member
/// against its own earlier membership (librdkafka issue #3437), and a new consumer must take
/// its place. Whether a session expires depends on how soon the group's coordinator moves;
/// `tests/liveness.rs` fences a consumer for certain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_failover_that_outlasts_the_session_is_recovered() {
    failover(true, Some("6s")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_failover_with_dynamic_membership_counts_exactly() {
    failover(false, None).await;
}
