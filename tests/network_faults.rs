//! Faults between the pipeline and the brokers, through Toxiproxy (`scripts/broker.sh cluster`
//! with `BROKER_LANES=3`, started by `scripts/test.sh`): three `hotline run` instances with
//! static membership, each bootstrapped through its own lane of proxies, so that every
//! connection an instance makes goes through a proxy that a fault can act on. Six faults in
//! turn, each while a month of its own streams in at about 2,000 messages/s with bad messages
//! among it:
//!
//! 1. cut: instance 1's links to every broker stop passing data for 60 s, longer than its
//!    session; its partitions move, and what it had in flight must never count;
//! 2. latency: 300 ms ± 100 ms on every link for 60 s;
//! 3. hung coordinator: the group coordinator's node stops answering every instance, its
//!    connections open, for 30 s;
//! 4. slow restore: instance 3 is killed and restarted while its links to the changelog's
//!    leaders pass 100 KB/s, until it is ready (60 s at most);
//! 5. resets: connections reset (`reset_peer`) at random moments on random links for 60 s;
//! 6. paused instance: instance 1 stopped with SIGSTOP for 70 s, then continued.
//!
//! After each: the month's closed snapshot equals the reference, its revisions run 1, 2, ...,
//! every bad message so far is a dead letter once, no instance exited, none answered
//! `/readyz` 200 while its loop stood still, and everything sent before the fault ended is
//! counted within `CAUGHT_UP_WITHIN`. The table printed at the end gives, per fault, the
//! longest stall in counting, when counting resumed and when it caught up.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, NODES, Stream, Toxiproxy, coordinator_partition, proxy};
use common::fleet::Fleet;
use hotline::config::Config;
use hotline::kafka::sender::Sender;
use rand::RngExt;
use serde_json::{Value, json};

/// Input messages per second while a fault acts.
const RATE: usize = 2000;
/// The stream starts this long before each fault and goes on this long after it.
const LEAD: Duration = Duration::from_secs(5);
const TAIL: Duration = Duration::from_secs(10);
/// Everything sent before a fault ended is counted within this long after it ended.
const CAUGHT_UP_WITHIN: Duration = Duration::from_secs(90);
/// Bad messages among each month.
const BAD: usize = 20;
const LANES: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Cut,
    Latency,
    HungCoordinator,
    SlowRestore,
    Resets,
    Paused,
}

impl Fault {
    /// How long it acts at most.
    fn length(self) -> Duration {
        Duration::from_secs(match self {
            Fault::HungCoordinator => 30,
            Fault::Paused => 70,
            _ => 60,
        })
    }
}

/// What one fault did.
struct Row {
    fault: Fault,
    lasted: Duration,
    stall: Duration,
    resumed: Option<Duration>,
    caught_up: Duration,
    aborted: f64,
    restarts: f64,
    /// Append to counted over the fault and its catching up: the 99th percentile, and the
    /// bucket of the slowest message.
    p99: Option<f64>,
    slowest: Option<f64>,
}

struct Test {
    cluster: Cluster,
    proxies: Toxiproxy,
    config: Config,
    settings: hotline::config::Settings,
    fleet: Fleet,
    /// The bad messages sent so far.
    bad: Vec<Vec<u8>>,
    /// The events of the last month: its first days of the next month count there.
    previous: Vec<Value>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_faults_delay_the_figures_but_never_change_them() {
    let cluster = Cluster::from_env();
    cluster.wait_fully_replicated().await;
    let deployment = common::Deployment::on(&cluster.bootstrap, 3, "replication_factor = 3", "").await;
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("network-faults-logs"));
    std::fs::create_dir_all(&logs).unwrap();
    eprintln!("instances' logs: {}", logs.display());
    let members =
        (1..=LANES).map(|lane| (Some(common::unique(&format!("faults-{lane}"))), Some(cluster.lane(lane)))).collect();
    let fleet = Fleet::start(&deployment.file, &logs, members).await;
    let mut test = Test {
        proxies: cluster.proxies(),
        cluster,
        config: deployment.config.clone(),
        settings: deployment.settings.clone(),
        fleet,
        bad: Vec::new(),
        previous: Vec::new(),
    };
    test.proxies.heal().await;

    let faults = [Fault::Cut, Fault::Latency, Fault::HungCoordinator, Fault::SlowRestore, Fault::Resets, Fault::Paused];
    let mut rows = Vec::new();
    for (n, fault) in faults.into_iter().enumerate() {
        let row = test.scenario(fault, &format!("2022-{:02}", n + 1), n as u64).await;
        rows.push(row);
    }
    // The harness restarts Toxiproxy when it hangs (`Toxiproxy::send`): the restarted one keeps
    // its proxies and has no toxic, and the instances ride out its connections' reset.
    let first = proxy(1, NODES[0]);
    test.proxies.add(&first, "before-restart", "latency", Stream::Downstream, json!({"latency": 1})).await;
    test.proxies.restart("the test checks a restart").await;
    assert_eq!(test.proxies.toxics(&first).await, Vec::<String>::new(), "toxics after a restart");
    test.proxies.remove(&first, "before-restart").await;
    let exits = test.fleet.exits();
    let unpolled = test.fleet.seen.lock().unwrap().ready_unpolled;
    eprintln!("the longest an instance answered /readyz 200 since its loop last polled: {unpolled:.1?}");
    test.fleet.stop_watching().await;
    eprintln!(
        "\n| fault | lasted | longest stall | counting resumed after the fault | all sent before its end counted after | \
         aborted transactions | pipeline restarts | p99 append to counted | slowest |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        eprintln!(
            "| {:?} | {:.0} s | {:.1} s | {} | {:.1} s | {} | {} | {} | {} |",
            r.fault,
            r.lasted.as_secs_f64(),
            r.stall.as_secs_f64(),
            r.resumed.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            r.caught_up.as_secs_f64(),
            r.aborted,
            r.restarts,
            r.p99.map_or("-".into(), |s| format!("{s:.1} s")),
            r.slowest.map_or("-".into(), |s| format!("≤ {s} s")),
        );
    }
    assert!(exits.is_empty(), "no instance exits: {exits:?}");
}

impl Test {
    async fn scenario(&mut self, fault: Fault, month: &str, seed: u64) -> Row {
        self.cluster.wait_fully_replicated().await;
        self.fleet.wait_all_ready(Duration::from_secs(120)).await;
        let seconds = (LEAD + fault.length() + TAIL).as_secs() as usize;
        let events = common::generated_month(month, &self.settings.zone, RATE * seconds * 10 / 28, 100 + seed);
        let bad: Vec<Vec<u8>> =
            (0..BAD).map(|n| format!("{{\"event_id\":\"bad-{month}-{n}\",\"case_id\":").into_bytes()).collect();
        self.bad.extend(bad.iter().cloned());
        let (aborted, restarts) = (self.fleet.counter(1), self.fleet.counter(2));
        let latency_before = self.latency_buckets().await;
        eprintln!("{fault:?}: streaming {} events of {month} at {RATE}/s", events.len());
        let streaming = tokio::spawn(stream(self.config.clone(), events.clone(), bad));

        tokio::time::sleep(LEAD).await;
        let started = Instant::now();
        self.apply(fault).await;
        let ended = Instant::now();
        let lasted = ended - started;
        let sent_by_end = self.ends().await.0;
        let caught_up = self.caught_up(sent_by_end, ended).await;
        let latency = histogram_delta(&latency_before, &self.latency_buckets().await);
        streaming.await.unwrap();

        let sent = [std::mem::take(&mut self.previous), events.clone()].concat();
        let snapshot = common::wait_for_exact_snapshot_or(&self.settings, month, &sent, 1, || {
            for i in self.fleet.instances.lock().unwrap().iter() {
                eprintln!("{}, last warnings and errors:\n{}", i.name(), i.notable(30));
            }
        })
        .await;
        assert!(snapshot.figures.totals.received > 0);
        let revisions = common::assert_revisions(&self.settings, month, &format!("{fault:?}"));
        let t = &self.config.topics;
        common::assert_dead_letters(&self.config.kafka, &t.dead_letters, &self.bad, &format!("{fault:?}")).await;
        let exits = self.fleet.exits();
        assert!(exits.is_empty(), "{fault:?}: no instance exits: {exits:?}");
        let seen = self.fleet.seen.lock().unwrap();
        assert!(seen.ready_while_still.is_empty(), "{fault:?}: ready while stuck: {:?}", seen.ready_while_still);
        let row = Row {
            fault,
            lasted,
            stall: seen.longest_stall(started, ended + caught_up),
            resumed: seen.first_progress_after(ended).map(|t| t - ended),
            caught_up,
            aborted: 0.0,
            restarts: 0.0,
            p99: quantile(&latency, 0.99),
            slowest: latency
                .last()
                .filter(|(_, total)| *total > 0.0)
                .and_then(|(_, total)| latency.iter().find(|(_, n)| n >= total))
                .map(|(le, _)| *le),
        };
        drop(seen);
        let row = Row { aborted: self.fleet.counter(1) - aborted, restarts: self.fleet.counter(2) - restarts, ..row };
        if let Fault::Latency = fault {
            assert!(row.aborted <= 5.0, "latency alone aborts no transaction after transaction: {}", row.aborted);
        }
        self.previous = events;
        eprintln!(
            "{fault:?}: exact, revisions 1..{}; lasted {:.0} s, longest stall {:.1} s, caught up {:.1} s after, \
             {} aborted transactions, {} restarts",
            revisions,
            row.lasted.as_secs_f64(),
            row.stall.as_secs_f64(),
            row.caught_up.as_secs_f64(),
            row.aborted,
            row.restarts
        );
        row
    }

    /// Applies the fault and returns when it is over.
    async fn apply(&self, fault: Fault) {
        let p = &self.proxies;
        match fault {
            Fault::Cut => {
                for node in NODES {
                    p.black_hole(&proxy(1, node), "cut").await;
                }
                tokio::time::sleep(fault.length()).await;
            }
            Fault::Latency => {
                for lane in 1..=LANES {
                    for node in NODES {
                        let attributes = json!({"latency": 300, "jitter": 100});
                        p.add(&proxy(lane, node), "latency", "latency", Stream::Downstream, attributes).await;
                    }
                }
                tokio::time::sleep(fault.length()).await;
            }
            Fault::HungCoordinator => {
                let node = self.coordinator();
                eprintln!("the group coordinator is node {node}");
                for lane in 1..=LANES {
                    p.black_hole(&proxy(lane, node), "hung").await;
                }
                tokio::time::sleep(fault.length()).await;
            }
            Fault::SlowRestore => {
                let t = &self.config.topics;
                let mut leaders = self.cluster.leaders(&[&t.changelog]);
                leaders.sort();
                leaders.dedup();
                eprintln!("the changelog's leaders: nodes {leaders:?}");
                for node in leaders {
                    p.add(&proxy(3, node), "slow", "bandwidth", Stream::Downstream, json!({"rate": 100})).await;
                }
                let others = |fleet: &Fleet| -> Vec<f64> {
                    fleet.instances.lock().unwrap()[..2].iter().map(|i| i.counters[0]).collect()
                };
                let counted_before = others(&self.fleet);
                self.fleet.restart(2);
                let started = Instant::now();
                let listen = self.fleet.listens()[2].clone();
                let mut ready_at = None;
                while started.elapsed() < fault.length() {
                    if common::fleet::ready(&listen).await {
                        ready_at = Some((started.elapsed(), jiff::Timestamp::now()));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let counted_after = others(&self.fleet);
                assert!(
                    counted_before.iter().zip(&counted_after).all(|(b, a)| a > b),
                    "the other instances went on counting while one restored: {counted_before:?} -> {counted_after:?}"
                );
                p.heal().await;
                // Still restoring: it finishes on a healed link.
                while ready_at.is_none() {
                    assert!(started.elapsed() < fault.length() * 3, "the restarted instance never got ready");
                    if common::fleet::ready(&listen).await {
                        ready_at = Some((started.elapsed(), jiff::Timestamp::now()));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let (after, at) = ready_at.unwrap();
                let restored = self.fleet.instances.lock().unwrap()[2].restored_at();
                let restored = restored.expect("the instance logged its restore before it was ready");
                assert!(restored <= at, "ready at {at}, before its state was restored at {restored}");
                eprintln!(
                    "the restarted instance was ready {after:.1?} after its start, its link throttled for 60 s at most"
                );
            }
            Fault::Resets => {
                let started = Instant::now();
                let mut rng = rand::rng();
                let mut active: Vec<(String, String, Instant)> = Vec::new();
                let mut n = 0;
                while started.elapsed() < fault.length() {
                    let proxy = proxy(rng.random_range(1..=LANES), NODES[rng.random_range(0..NODES.len())]);
                    let name = format!("reset-{n}");
                    n += 1;
                    let stream = if rng.random_bool(0.5) { Stream::Downstream } else { Stream::Upstream };
                    let after = rng.random_range(0..2000);
                    p.add(&proxy, &name, "reset_peer", stream, json!({"timeout": after})).await;
                    active.push((proxy, name, Instant::now() + Duration::from_millis(rng.random_range(500..3000))));
                    tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
                    for (proxy, name, until) in std::mem::take(&mut active) {
                        if until <= Instant::now() {
                            p.remove(&proxy, &name).await;
                        } else {
                            active.push((proxy, name, until));
                        }
                    }
                }
                eprintln!("{n} resets");
            }
            Fault::Paused => {
                let pid = self.fleet.instances.lock().unwrap()[0].process.pid();
                assert!(common::process::signal("-STOP", pid));
                tokio::time::sleep(fault.length()).await;
                assert!(common::process::signal("-CONT", pid));
            }
        }
        p.heal().await;
    }

    /// The node of the group's coordinator.
    fn coordinator(&self) -> i32 {
        self.cluster.leader("__consumer_offsets", coordinator_partition(&self.config.kafka.group_id))
    }

    /// The input topics' end offsets and the group's committed offsets on them, summed.
    async fn ends(&self) -> (i64, i64) {
        let (cluster, group, t) =
            (self.cluster.clone(), self.config.kafka.group_id.clone(), self.config.topics.clone());
        tokio::task::spawn_blocking(move || {
            cluster.ends_and_committed(&group, &[t.cases.as_str(), t.letters.as_str(), t.boards.as_str()])
        })
        .await
        .unwrap()
    }

    /// How long after `ended` the group committed `sent` input offsets.
    async fn caught_up(&self, sent: i64, ended: Instant) -> Duration {
        loop {
            let committed = self.ends().await.1;
            if committed >= sent {
                return ended.elapsed();
            }
            assert!(
                ended.elapsed() < CAUGHT_UP_WITHIN,
                "{} of {sent} messages sent before the fault ended are not counted {CAUGHT_UP_WITHIN:?} after it",
                sent - committed
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Each instance's append-to-counted latency buckets, by its listener (a restarted
    /// instance listens elsewhere): (upper bound, cumulative count).
    async fn latency_buckets(&self) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut all = Vec::new();
        for listen in self.fleet.listens() {
            let text = common::process::http_get(&listen, "/metrics");
            let prefix = "hotline_event_latency_seconds_bucket{from=\"kafka_timestamp\",le=\"";
            let mut buckets: Vec<(f64, f64)> = text
                .lines()
                .filter_map(|l| l.strip_prefix(prefix)?.split_once("\"} "))
                .filter_map(|(le, n)| Some((le.parse::<f64>().unwrap_or(f64::INFINITY), n.parse::<f64>().ok()?)))
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            all.push((listen, buckets));
        }
        all
    }
}

/// What each instance added to each cumulative bucket between two readings, summed; an
/// instance not in the first reading (restarted since) added all it has.
fn histogram_delta(before: &[(String, Vec<(f64, f64)>)], after: &[(String, Vec<(f64, f64)>)]) -> Vec<(f64, f64)> {
    let mut sum: Vec<(f64, f64)> = Vec::new();
    for (listen, buckets) in after {
        let earlier = before.iter().find(|(l, _)| l == listen).map(|(_, b)| b.as_slice()).unwrap_or_default();
        for (le, n) in buckets {
            let added = n - earlier.iter().find(|(b, _)| b == le).map_or(0.0, |(_, m)| *m);
            match sum.iter_mut().find(|(b, _)| b == le) {
                Some(b) => b.1 += added,
                None => sum.push((*le, added)),
            }
        }
    }
    sum.sort_by(|a, b| a.0.total_cmp(&b.0));
    sum
}

/// Quantile `q` of cumulative buckets, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, n) in buckets {
        if *n >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            return Some(lower + (le - lower) * (rank - below) / (n - below).max(f64::MIN_POSITIVE));
        }
        (lower, below) = (*le, *n);
    }
    None
}

/// Sends `events` at `RATE` a second, the bad messages spread among them.
async fn stream(config: Config, events: Vec<Value>, bad: Vec<Vec<u8>>) {
    let mut sender = Sender::new(&config.kafka).unwrap();
    let tick = Duration::from_millis(100);
    let per_tick = RATE / 10;
    let chunks: Vec<&[Value]> = events.chunks(per_tick).collect();
    let every = chunks.len() / bad.len() + 1;
    let mut bad = bad.iter();
    let mut next = tokio::time::Instant::now();
    for (n, chunk) in chunks.iter().enumerate() {
        common::send_all(&mut sender, &config.topics, chunk).await;
        if n % every == 0
            && let Some(b) = bad.next()
        {
            sender.send(&config.topics.cases, None, b).await.unwrap();
        }
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    for b in bad {
        sender.send(&config.topics.cases, None, b).await.unwrap();
    }
    sender.finish().await.unwrap();
}
