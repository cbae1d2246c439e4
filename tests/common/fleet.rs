//! Several `hotline run` processes of one deployment, restarted like a supervisor would when
//! one exits, and a watcher of their probes and of what they committed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{Hotline, Options};

/// `http.stalled_after` of the instances: a loop that stands still this long fails the probes.
pub const STALLED_AFTER: &str = "90s";
/// A ready instance must have polled within this long (a dead or wedged loop never polls):
/// `STALLED_AFTER` and the watcher's period.
pub const STILL: Duration = Duration::from_secs(92);

/// A `hotline run` process.
pub struct Instance {
    pub process: Hotline,
    log: PathBuf,
    instance_id: Option<String>,
    /// `kafka.brokers`, when not the configuration's (a lane of proxies).
    brokers: Option<String>,
    /// How earlier processes of this instance exited on their own.
    pub exits: Vec<String>,
    /// When its poll count last moved.
    polls: (f64, Instant),
    /// Since when `/readyz` has answered 200 without a break.
    ready_since: Option<Instant>,
    /// Its `COUNTERS`, earlier processes of this instance included.
    pub counters: [f64; 3],
    /// What earlier processes of this instance counted.
    before: [f64; 3],
}

/// Counters of every instance kept over its restarts: input messages committed, transactions
/// aborted, and pipeline restarts.
pub const COUNTERS: [&str; 3] = [
    "hotline_messages_processed_total",
    "hotline_transactions_total{outcome=\"aborted\"}",
    "hotline_pipeline_restarts_total",
];

impl Instance {
    pub fn start(config: &Path, log: PathBuf, instance_id: Option<String>, brokers: Option<String>) -> Instance {
        let mut env = vec![("HOTLINE_HTTP__STALLED_AFTER".to_owned(), STALLED_AFTER.to_owned())];
        if let Some(b) = &brokers {
            env.push(("HOTLINE_KAFKA__BROKERS".to_owned(), b.clone()));
        }
        let options = Options { instance_id: instance_id.clone(), log: Some(log.clone()), env };
        let process = Hotline::start(config, &options);
        Instance {
            process,
            log,
            instance_id,
            brokers,
            exits: Vec::new(),
            polls: (0.0, Instant::now()),
            ready_since: None,
            counters: [0.0; 3],
            before: [0.0; 3],
        }
    }

    /// A new process in its place, keeping what the earlier ones did.
    fn again(&self, config: &Path) -> Instance {
        let mut again = Instance::start(config, self.log.clone(), self.instance_id.clone(), self.brokers.clone());
        again.exits = self.exits.clone();
        again.before = self.counters;
        again.counters = self.counters;
        again
    }

    pub fn name(&self) -> &str {
        self.instance_id.as_deref().unwrap_or("(dynamic)")
    }

    /// The transactional id it logged at start.
    pub fn transactional_id(&self) -> Option<String> {
        let logged = std::fs::read_to_string(&self.log).ok()?;
        logged.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find_map(|e| {
            (e["fields"]["message"] == "pipeline starting")
                .then(|| e["fields"]["transactional_id"].as_str())?
                .map(str::to_owned)
        })
    }

    /// When the current process logged its state restored for the first time.
    pub fn restored_at(&self) -> Option<jiff::Timestamp> {
        let logged = std::fs::read_to_string(&self.log).ok()?;
        let mut restored = None;
        for e in logged.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
            match e["fields"]["message"].as_str() {
                // An earlier process's lines come before this one's start.
                Some("pipeline starting") => restored = None,
                Some("state restored for this instance's partitions") if restored.is_none() => {
                    restored = e["timestamp"].as_str().and_then(|t| t.parse().ok());
                }
                _ => {}
            }
        }
        restored
    }

    /// Its log's warnings and errors, the last `n`.
    pub fn notable(&self, n: usize) -> String {
        let logged = std::fs::read_to_string(&self.log).unwrap_or_default();
        let notable: Vec<&str> = logged.lines().filter(|l| !l.contains("\"level\":\"INFO\"")).collect();
        notable[notable.len().saturating_sub(n)..].join("\n")
    }
}

/// What the watcher saw.
#[derive(Default)]
pub struct Watch {
    /// `/readyz` answered 200 while the instance's loop had not polled for `STILL`.
    pub ready_while_still: Vec<String>,
    /// The longest an instance answered `/readyz` 200, without a break, since its loop last
    /// polled.
    pub ready_unpolled: Duration,
    /// When the instances' total of committed input messages grew, and to what.
    pub progress: Vec<(Instant, f64)>,
    pub total: f64,
}

impl Watch {
    /// The longest time the count stood still between `from` and its last growth before `to`
    /// (time after it, with maybe nothing left to count, is no stall).
    pub fn longest_stall(&self, from: Instant, to: Instant) -> Duration {
        let mut last = from;
        let mut longest = Duration::ZERO;
        for (t, _) in self.progress.iter().filter(|(t, _)| *t > from && *t <= to) {
            longest = longest.max(t.duration_since(last));
            last = *t;
        }
        longest
    }

    /// When the count first grew after `at`.
    pub fn first_progress_after(&self, at: Instant) -> Option<Instant> {
        self.progress.iter().find(|(t, _)| *t > at).map(|(t, _)| *t)
    }
}

/// The instances of a deployment, watched every 250 ms.
pub struct Fleet {
    pub instances: Arc<Mutex<Vec<Instance>>>,
    pub seen: Arc<Mutex<Watch>>,
    config: PathBuf,
    done: Arc<tokio::sync::Notify>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Fleet {
    /// Starts one instance per `(instance_id, brokers)` with its log in `logs`, and waits until
    /// all are ready.
    pub async fn start(config: &Path, logs: &Path, members: Vec<(Option<String>, Option<String>)>) -> Fleet {
        let instances: Vec<Instance> = members
            .into_iter()
            .enumerate()
            .map(|(n, (id, brokers))| Instance::start(config, logs.join(format!("{n}.log")), id, brokers))
            .collect();
        let instances = Arc::new(Mutex::new(instances));
        let seen = Arc::new(Mutex::new(Watch::default()));
        let done = Arc::new(tokio::sync::Notify::new());
        let watcher = tokio::spawn(watch(instances.clone(), config.to_owned(), seen.clone(), done.clone()));
        let fleet = Fleet { instances, seen, config: config.to_owned(), done, watcher };
        fleet.wait_all_ready(Duration::from_secs(90)).await;
        fleet
    }

    pub fn listens(&self) -> Vec<String> {
        self.instances.lock().unwrap().iter().map(|i| i.process.listen.clone()).collect()
    }

    pub async fn wait_all_ready(&self, within: Duration) {
        let started = Instant::now();
        loop {
            let mut all = true;
            for l in self.listens() {
                all &= ready(&l).await;
            }
            if all {
                return;
            }
            assert!(started.elapsed() < within, "the instances were not all ready within {within:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Kills instance `n` with SIGKILL and starts it again at once.
    pub fn restart(&self, n: usize) {
        let mut all = self.instances.lock().unwrap();
        all[n].process.kill();
        let again = all[n].again(&self.config);
        all[n] = again;
    }

    /// The sum of counter `COUNTERS[n]` over the instances and their restarts.
    pub fn counter(&self, n: usize) -> f64 {
        self.instances.lock().unwrap().iter().map(|i| i.counters[n]).sum()
    }

    /// Every exit so far.
    pub fn exits(&self) -> Vec<String> {
        self.instances.lock().unwrap().iter().flat_map(|i| i.exits.clone()).collect()
    }

    /// The sum over the instances of a metric.
    pub async fn metric(&self, name: &str) -> f64 {
        let mut sum = 0.0;
        for l in self.listens() {
            if let Ok(text) = get(&l, "/metrics").await {
                sum += super::metric(&text, name);
            }
        }
        sum
    }

    /// Stops the watcher; the processes are killed when dropped.
    pub async fn stop_watching(self) {
        self.done.notify_one();
        self.watcher.await.unwrap();
    }
}

/// Whether `/readyz` answers 200 within 2 s.
pub async fn ready(listen: &str) -> bool {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    http.get(format!("http://{listen}/readyz")).send().await.is_ok_and(|r| r.status().as_u16() == 200)
}

async fn get(listen: &str, path: &str) -> reqwest::Result<String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    http.get(format!("http://{listen}{path}")).send().await?.text().await
}

/// Every 250 ms: restarts exited instances (recording how they exited), reads `/readyz` and
/// `/metrics` of each.
async fn watch(
    instances: Arc<Mutex<Vec<Instance>>>,
    config: PathBuf,
    seen: Arc<Mutex<Watch>>,
    done: Arc<tokio::sync::Notify>,
) {
    loop {
        let targets: Vec<(usize, String)> = {
            let mut all = instances.lock().unwrap();
            for i in all.iter_mut() {
                if let Some(status) = i.process.try_wait() {
                    let exit = format!("{} exited: {status}", i.name());
                    let mut again = i.again(&config);
                    again.exits.push(exit);
                    *i = again;
                }
            }
            all.iter().enumerate().map(|(n, i)| (n, i.process.listen.clone())).collect()
        };
        for (n, listen) in targets {
            let ready = ready(&listen).await;
            let Ok(text) = get(&listen, "/metrics").await else {
                continue;
            };
            let mut all = instances.lock().unwrap();
            let i = &mut all[n];
            if i.process.listen != listen {
                continue;
            }
            let polls = super::metric(&text, "hotline_polls_total");
            if polls != i.polls.0 {
                i.polls = (polls, Instant::now());
            }
            // Stuck is ready all along without a poll: a loop that comes back from a restart
            // answers ready a moment before its first poll, which is no stall.
            if !ready {
                i.ready_since = None;
            }
            if ready {
                let since = *i.ready_since.get_or_insert_with(Instant::now);
                let unpolled = i.polls.1.max(since).elapsed();
                let mut seen = seen.lock().unwrap();
                seen.ready_unpolled = seen.ready_unpolled.max(unpolled);
                if unpolled > STILL {
                    seen.ready_while_still.push(format!("{listen}: ready, no poll for {unpolled:?}"));
                }
            }
            for (n, name) in COUNTERS.iter().enumerate() {
                i.counters[n] = i.before[n] + super::metric(&text, name);
            }
        }
        {
            let total: f64 = instances.lock().unwrap().iter().map(|i| i.counters[0]).sum();
            let mut seen = seen.lock().unwrap();
            if total > seen.total {
                seen.total = total;
                seen.progress.push((Instant::now(), total));
            }
        }
        tokio::select! {
            _ = done.notified() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
