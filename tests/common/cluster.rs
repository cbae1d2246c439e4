//! The three-node cluster `scripts/test.sh` starts (`scripts/broker.sh cluster`), its nodes
//! killed and resumed, and the Toxiproxy proxies in front of it: each lane is a listener of
//! every node advertised as its own proxy, so a client bootstrapped through a lane makes
//! every connection through that lane's proxies.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
        Toxiproxy {
            api: format!("http://{api}"),
            http: reqwest::Client::new(),
            dir: self.dir.clone(),
            restarting: Arc::default(),
            restarts: Arc::default(),
        }
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
    /// The cluster's directory, for `scripts/broker.sh toxiproxy-restart`.
    dir: PathBuf,
    /// Held while Toxiproxy restarts: no request is sent meanwhile.
    restarting: Arc<tokio::sync::Mutex<()>>,
    /// How many times it was restarted, every toxic gone each time.
    pub restarts: Arc<AtomicUsize>,
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
        let url = format!("{}/proxies/{proxy}/toxics", self.api);
        // Added again after a restart, which took every toxic away.
        let r = loop {
            if let Some(r) = self.send(&format!("adding {name} to {proxy}"), || self.http.post(&url).json(&body)).await
            {
                break r;
            }
        };
        let status = r.status();
        assert!(status.is_success(), "adding toxic {name} to {proxy}: {status} {}", r.text().await.unwrap());
    }

    /// Removes every toxic of every proxy.
    pub async fn heal(&self) {
        if let Some(r) = self.send("resetting", || self.http.post(format!("{}/reset", self.api))).await {
            assert!(r.status().is_success(), "resetting Toxiproxy: {}", r.status());
        }
    }

    /// Removes the toxic `name` of `proxy`.
    pub async fn remove(&self, proxy: &str, name: &str) {
        let url = format!("{}/proxies/{proxy}/toxics/{name}", self.api);
        let Some(r) = self.send(&format!("removing {name} of {proxy}"), || self.http.delete(&url)).await else {
            return;
        };
        // A restart since it was added took it away.
        let gone = r.status() == reqwest::StatusCode::NOT_FOUND && self.restarts.load(Ordering::SeqCst) > 0;
        assert!(r.status().is_success() || gone, "removing toxic {name} of {proxy}: {}", r.status());
    }

    /// The names of `proxy`'s toxics.
    pub async fn toxics(&self, proxy: &str) -> Vec<String> {
        let url = format!("{}/proxies/{proxy}/toxics", self.api);
        let r = self.send(&format!("listing the toxics of {proxy}"), || self.http.get(&url)).await.expect("no hang");
        let toxics: Vec<Value> = r.json().await.unwrap();
        toxics.iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }

    /// Sends the request `make` builds and returns its response, or `None` when Toxiproxy hung
    /// on it: it can hang changing the toxics of a blocked link, answering 503 after its 25 s
    /// write timeout from then on (Shopify/toxiproxy#500, #558). It is then restarted with its
    /// proxies and no toxic, which resets every connection through it.
    async fn send(&self, what: &str, make: impl Fn() -> reqwest::RequestBuilder) -> Option<reqwest::Response> {
        for _ in 0..60 {
            drop(self.restarting.lock().await);
            match make().send().await {
                Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    self.restart(&format!("it hung {what}: 503")).await;
                    return None;
                }
                Ok(r) => return Some(r),
                // Refused while another caller restarts it.
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        panic!("Toxiproxy did not answer {what} for 30 s");
    }

    /// Restarts Toxiproxy with its proxies and no toxic, on the same ports.
    pub async fn restart(&self, why: &str) {
        let _restarting = self.restarting.lock().await;
        eprintln!("restarting Toxiproxy ({why}): every toxic gone");
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || broker_script("toxiproxy-restart", &dir)).await.unwrap();
        self.restarts.fetch_add(1, Ordering::SeqCst);
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
