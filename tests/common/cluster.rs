//! The three-node cluster `scripts/test.sh` starts (`scripts/broker.sh cluster`), its nodes
//! killed and resumed, and the Toxiproxy proxies in front of it: each lane is a listener of
//! every node advertised as its own proxy, so a client bootstrapped through a lane makes
//! every connection through that lane's proxies.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

use super::process::broker_script;

/// Partitions of `__consumer_offsets` and `__transaction_state` in the cluster's configuration.
const COORDINATOR_PARTITIONS: i32 = 3;
/// The cluster's nodes.
pub const NODES: [i32; 3] = [1, 2, 3];

/// The cluster `scripts/test.sh` started.
#[derive(Clone)]
pub struct Cluster {
    dir: PathBuf,
    /// Its direct listener: for the tests' own clients.
    pub bootstrap: String,
}

impl Cluster {
    pub fn from_env() -> Cluster {
        Cluster::at(PathBuf::from(std::env::var("HOTLINE_TEST_CLUSTER").expect(
            "HOTLINE_TEST_CLUSTER is not set: run the tests with scripts/test.sh, which starts a three-broker cluster",
        )))
    }

    pub fn metadata(&self) -> rdkafka::metadata::Metadata {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().unwrap();
        consumer.fetch_metadata(None, Duration::from_secs(20)).unwrap()
    }

    /// The node leading each partition of the topics named.
    pub fn leaders(&self, topics: &[&str]) -> Vec<i32> {
        let m = self.metadata();
        m.topics()
            .iter()
            .filter(|t| topics.contains(&t.name()))
            .flat_map(|t| t.partitions().iter().map(|p| p.leader()))
            .collect()
    }

    pub fn leader(&self, topic: &str, partition: i32) -> i32 {
        let m = self.metadata();
        let t = m.topics().iter().find(|t| t.name() == topic).unwrap_or_else(|| panic!("no topic {topic}"));
        t.partitions().iter().find(|p| p.id() == partition).unwrap().leader()
    }

    /// Every partition of the cluster has all its replicas in sync.
    pub fn fully_replicated(&self) -> bool {
        let m = self.metadata();
        m.brokers().len() == 3
            && m.topics().iter().all(|t| t.partitions().iter().all(|p| p.isr().len() == p.replicas().len()))
    }

    /// Partitions of `topics` whose last stable offset (the end a read_committed reader can
    /// reach) stays behind the high watermark: an open, or hanging, transaction holds them.
    pub fn held_by_transactions(&self, topics: &[&str]) -> Vec<String> {
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

    pub fn node(&self, id: i32) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    pub fn kill(&self, id: i32) {
        let pid = std::fs::read_to_string(self.node(id).join("pid")).unwrap();
        Command::new("kill").args(["-9", pid.trim()]).status().unwrap();
        while Command::new("kill").args(["-0", pid.trim()]).stderr(Stdio::null()).status().unwrap().success() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn resume(&self, id: i32) {
        broker_script("resume", &self.node(id));
    }

    pub async fn wait_fully_replicated(&self) {
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
pub fn coordinator_partition(key: &str) -> i32 {
    let hash = key.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % COORDINATOR_PARTITIONS
}

impl Cluster {
    /// The cluster in `dir` (started by `scripts/broker.sh cluster`).
    pub fn at(dir: PathBuf) -> Cluster {
        let bootstrap = std::fs::read_to_string(dir.join("bootstrap")).unwrap().trim().to_owned();
        Cluster { dir, bootstrap }
    }

    /// The bootstrap addresses of lane `lane` (1, 2, ...): its proxies.
    pub fn lane(&self, lane: usize) -> String {
        let file = self.dir.join(format!("lane{lane}/bootstrap"));
        std::fs::read_to_string(&file)
            .unwrap_or_else(|_| panic!("no {}: start the cluster with BROKER_LANES", file.display()))
            .trim()
            .to_owned()
    }

    /// The Toxiproxy in front of its lanes.
    pub fn proxies(&self) -> Toxiproxy {
        let api = std::fs::read_to_string(self.dir.join("toxiproxy")).unwrap().trim().to_owned();
        Toxiproxy { api: format!("http://{api}"), http: reqwest::Client::new() }
    }

    /// For the input `topics`: the sum of their partitions' end offsets, and of `group`'s
    /// committed offsets on them.
    pub fn ends_and_committed(&self, group: &str, topics: &[&str]) -> (i64, i64) {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &self.bootstrap).set("group.id", group).create().unwrap();
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(20)).unwrap();
        let mut partitions = rdkafka::TopicPartitionList::new();
        let mut ends = 0;
        for t in metadata.topics().iter().filter(|t| topics.contains(&t.name())) {
            for p in t.partitions() {
                partitions.add_partition(t.name(), p.id());
                ends += consumer.fetch_watermarks(t.name(), p.id(), Duration::from_secs(20)).unwrap().1;
            }
        }
        let committed = consumer.committed_offsets(partitions, Duration::from_secs(20)).unwrap();
        let committed = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => 0,
            })
            .sum();
        (ends, committed)
    }

    /// The process id of node `id`.
    pub fn pid(&self, id: i32) -> String {
        std::fs::read_to_string(self.node(id).join("pid")).unwrap().trim().to_owned()
    }
}

/// The name of the proxy of lane `lane` to node `node`.
pub fn proxy(lane: usize, node: i32) -> String {
    format!("lane{lane}-node{node}")
}

/// Toxiproxy's HTTP API: toxics added to and removed from its proxies.
#[derive(Clone)]
pub struct Toxiproxy {
    api: String,
    http: reqwest::Client,
}

/// Which way a toxic acts: on what the client receives, or on what it sends.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Downstream,
    Upstream,
}

impl Toxiproxy {
    /// Adds a toxic named `name` of `kind` with `attributes` to `proxy`, acting on every
    /// connection.
    pub async fn add(&self, proxy: &str, name: &str, kind: &str, stream: Stream, attributes: Value) {
        let stream = match stream {
            Stream::Downstream => "downstream",
            Stream::Upstream => "upstream",
        };
        let body = json!({"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes});
        let r = self.http.post(format!("{}/proxies/{proxy}/toxics", self.api)).json(&body).send().await.unwrap();
        let status = r.status();
        assert!(status.is_success(), "adding toxic {name} to {proxy}: {status} {}", r.text().await.unwrap());
    }

    /// Removes every toxic of every proxy.
    pub async fn heal(&self) {
        let r = self.http.post(format!("{}/reset", self.api)).send().await.unwrap();
        assert!(r.status().is_success(), "resetting Toxiproxy: {}", r.status());
    }

    /// Removes the toxic `name` of `proxy`.
    pub async fn remove(&self, proxy: &str, name: &str) {
        let r = self.http.delete(format!("{}/proxies/{proxy}/toxics/{name}", self.api)).send().await.unwrap();
        assert!(r.status().is_success(), "removing toxic {name} of {proxy}: {}", r.status());
    }

    /// Data through `proxy` stops both ways, its connections staying open, until the toxics
    /// `name`-down and `name`-up are removed (`lift`) or healed.
    pub async fn black_hole(&self, proxy: &str, name: &str) {
        for (way, stream) in [("down", Stream::Downstream), ("up", Stream::Upstream)] {
            self.add(proxy, &format!("{name}-{way}"), "timeout", stream, json!({"timeout": 0})).await;
        }
    }

    /// Removes the black hole `name` of `proxy`.
    pub async fn lift(&self, proxy: &str, name: &str) {
        for way in ["down", "up"] {
            self.remove(proxy, &format!("{name}-{way}")).await;
        }
    }
}
