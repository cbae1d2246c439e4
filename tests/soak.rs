//! The soak, run by `scripts/soak.sh --minutes N` (ignored by a plain `cargo test`): three
//! `hotline run` instances, each through its own lane of Toxiproxy proxies to a three-node
//! cluster, count the seed-shaped month (31,681 cases) again and again, one calendar month
//! after another, while faults strike at random, one or two at a time, each for at most 70 s:
//! a link cut, latency, a hung node, a slow link, connection resets, a paused instance (SIGSTOP),
//! an instance killed (SIGKILL, restarted at once) and a broker killed (SIGKILL, resumed
//! within 30 s). When the time is up the faults stop, and every month's closed snapshot must
//! equal the reference, its revisions run 1, 2, ..., every bad message be a dead letter once;
//! it prints a table of the faults applied, the longest stall, the aborted transactions and
//! whether the figures were exact.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, NODES, Stream, Toxiproxy, coordinator_partition, proxy};
use common::fleet::Fleet;
use hotline::config::Config;
use hotline::kafka::sender::Sender;
use rand::RngExt;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

/// The seed month's cases.
const CASES: usize = 31_681;
/// Input messages per second.
const RATE: usize = 1000;
const LANES: usize = 3;
/// Bad messages among each month.
const BAD: usize = 10;
/// The longest a fault acts.
const LONGEST: u64 = 70;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Cut,
    Latency,
    HungNode,
    SlowLink,
    Resets,
    Paused,
    InstanceKilled,
    BrokerKilled,
}

const FAULTS: [Fault; 8] = [
    Fault::Cut,
    Fault::Latency,
    Fault::HungNode,
    Fault::SlowLink,
    Fault::Resets,
    Fault::Paused,
    Fault::InstanceKilled,
    Fault::BrokerKilled,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by scripts/soak.sh"]
async fn soak() {
    let minutes: f64 = std::env::var("HOTLINE_SOAK_MINUTES").map_or(10.0, |m| m.parse().expect("minutes"));
    let cluster = Cluster::at(PathBuf::from(std::env::var("HOTLINE_SOAK_CLUSTER").expect("HOTLINE_SOAK_CLUSTER")));
    cluster.wait_fully_replicated().await;
    let proxies = cluster.proxies();
    proxies.heal().await;
    let deployment = common::Deployment::on(&cluster.bootstrap, 3, "replication_factor = 3", "").await;
    let logs = PathBuf::from(std::env::var("HOTLINE_SOAK_LOGS").expect("HOTLINE_SOAK_LOGS"));
    std::fs::create_dir_all(&logs).unwrap();
    let members =
        (1..=LANES).map(|lane| (Some(common::unique(&format!("soak-{lane}"))), Some(cluster.lane(lane)))).collect();
    let fleet = Arc::new(Fleet::start(&deployment.file, &logs, members).await);
    let (config, settings) = (deployment.config.clone(), deployment.settings.clone());

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(minutes * 60.0);
    let streaming = tokio::spawn(stream(config.clone(), settings.zone.clone(), until));
    let faulting = Arc::new(AtomicBool::new(true));
    let drivers: Vec<_> = (0..2)
        .map(|d| {
            let (cluster, proxies, fleet, config, faulting) =
                (cluster.clone(), proxies.clone(), fleet.clone(), config.clone(), faulting.clone());
            tokio::spawn(async move {
                // The second driver starts later, so that faults overlap only part of the time.
                tokio::time::sleep(Duration::from_secs(20 * d)).await;
                let mut applied = Vec::new();
                while faulting.load(Ordering::SeqCst) && Instant::now() + Duration::from_secs(LONGEST) < until {
                    let fault = *FAULTS.choose(&mut rand::rng()).unwrap();
                    let lasted = strike(fault, d, started, &cluster, &proxies, &fleet, &config).await;
                    applied.push((fault, lasted));
                    let gap = rand::rng().random_range(5..20);
                    tokio::time::sleep(Duration::from_secs(gap)).await;
                }
                applied
            })
        })
        .collect();
    let (months, bad) = streaming.await.unwrap();
    let streamed = started.elapsed();
    faulting.store(false, Ordering::SeqCst);
    let mut applied: Vec<(Fault, Duration)> = Vec::new();
    for d in drivers {
        applied.extend(d.await.unwrap());
    }
    proxies.heal().await;
    cluster.wait_fully_replicated().await;

    let mut exact = Vec::new();
    for (n, (month, events)) in months.iter().enumerate() {
        // The month before's stream ends with the first days of this one.
        let sent = match n {
            0 => events.clone(),
            _ => [months[n - 1].1.clone(), events.clone()].concat(),
        };
        let snapshot = common::wait_for_exact_snapshot_or(&settings, month, &sent, 1, || {
            for i in fleet.instances.lock().unwrap().iter() {
                eprintln!("{}, last warnings and errors:\n{}", i.name(), i.notable(30));
            }
        })
        .await;
        let revisions = common::assert_revisions(&settings, month, month);
        exact.push(format!("{month} ({} cases, {revisions} revisions)", snapshot.figures.totals.received));
    }
    common::assert_dead_letters(&config.kafka, &config.topics.dead_letters, &bad, "the soak").await;
    let seen = fleet.seen.lock().unwrap();
    let ready_while_still = seen.ready_while_still.clone();
    let stall = seen.longest_stall(started, started + streamed);
    let unpolled = seen.ready_unpolled;
    drop(seen);
    // After the lock is let go: the watch goes on until the fleet is dropped.
    assert!(ready_while_still.is_empty(), "ready while stuck: {ready_while_still:?}");
    let exits = fleet.exits();

    let mut by_kind: BTreeMap<Fault, (usize, Duration)> = BTreeMap::new();
    for (fault, lasted) in &applied {
        let e = by_kind.entry(*fault).or_default();
        e.0 += 1;
        e.1 += *lasted;
    }
    let total: f64 = fleet.counter(0);
    println!("\nSoak of {minutes} minutes: {} input messages counted", total);
    println!("| fault | applied | total time |\n|---|---:|---:|");
    for (fault, (n, time)) in &by_kind {
        println!("| {fault:?} | {n} | {:.0} s |", time.as_secs_f64());
    }
    println!("\n| measure | value |\n|---|---|");
    println!("| faults applied | {} |", applied.len());
    println!("| longest stall in counting while input streamed | {:.1} s |", stall.as_secs_f64());
    println!("| longest /readyz 200 since the loop last polled | {:.1} s |", unpolled.as_secs_f64());
    println!("| aborted transactions | {} |", fleet.counter(1));
    println!("| pipeline restarts | {} |", fleet.counter(2));
    println!(
        "| instances killed and restarted by the soak | {} |",
        by_kind.get(&Fault::InstanceKilled).map_or(0, |k| k.0)
    );
    println!("| instance exits not caused by the soak | {} |", exits.len());
    println!(
        "| Toxiproxy restarts (it hung changing a toxic, every toxic gone) | {} |",
        proxies.restarts.load(std::sync::atomic::Ordering::SeqCst)
    );
    println!("| months exact | {} of {}: {} |", exact.len(), months.len(), exact.join(", "));
    println!("| dead letters | {} bad messages, each a dead letter once |", bad.len());
    assert!(exits.is_empty(), "no instance exits on its own: {exits:?}");
}

/// Applies one fault for driver `d` of the soak started at `soak`, and returns how long it
/// acted.
async fn strike(
    fault: Fault,
    d: u64,
    soak: Instant,
    cluster: &Cluster,
    proxies: &Toxiproxy,
    fleet: &Fleet,
    config: &Config,
) -> Duration {
    let (length, lane, node, at_coordinator, reset_after) = {
        let mut rng = rand::rng();
        (
            Duration::from_secs(rng.random_range(10..=LONGEST)),
            rng.random_range(1..=LANES),
            *NODES.choose(&mut rng).unwrap(),
            rng.random_bool(0.5),
            rng.random_range(0..2000),
        )
    };
    // Toxics of the two drivers have names of their own.
    let name = |what: &str| format!("{what}-{d}");
    // A node hangs or is down for at most 30 s.
    let length = match fault {
        Fault::HungNode | Fault::BrokerKilled => length.min(Duration::from_secs(30)),
        _ => length,
    };
    let started = Instant::now();
    eprintln!("{:>6.0} s: {fault:?} for up to {length:?}", started.duration_since(soak).as_secs_f64());
    match fault {
        Fault::Cut => {
            for node in NODES {
                proxies.black_hole(&proxy(lane, node), &name("hole")).await;
            }
            tokio::time::sleep(length).await;
            for node in NODES {
                proxies.lift(&proxy(lane, node), &name("hole")).await;
            }
        }
        Fault::HungNode => {
            let node = if at_coordinator {
                let (c, group) = (cluster.clone(), config.kafka.group_id.clone());
                tokio::task::spawn_blocking(move || c.leader("__consumer_offsets", coordinator_partition(&group)))
                    .await
                    .unwrap()
            } else {
                node
            };
            for lane in 1..=LANES {
                proxies.black_hole(&proxy(lane, node), &name("hole")).await;
            }
            tokio::time::sleep(length).await;
            for lane in 1..=LANES {
                proxies.lift(&proxy(lane, node), &name("hole")).await;
            }
        }
        Fault::Latency | Fault::SlowLink | Fault::Resets => {
            let (kind, attributes) = match fault {
                Fault::Latency => ("latency", json!({"latency": 300, "jitter": 100})),
                Fault::SlowLink => ("bandwidth", json!({"rate": 100})),
                _ => ("reset_peer", json!({"timeout": reset_after})),
            };
            let links: Vec<String> = match fault {
                Fault::Latency => (1..=LANES).flat_map(|l| NODES.map(|n| proxy(l, n))).collect(),
                _ => vec![proxy(lane, node)],
            };
            for link in &links {
                proxies.add(link, &name(kind), kind, Stream::Downstream, attributes.clone()).await;
            }
            tokio::time::sleep(length).await;
            for link in &links {
                proxies.remove(link, &name(kind)).await;
            }
        }
        Fault::Paused => {
            let pid = fleet.instances.lock().unwrap()[lane - 1].process.pid();
            signal("-STOP", pid);
            tokio::time::sleep(length).await;
            signal("-CONT", pid);
        }
        Fault::InstanceKilled => {
            fleet.restart(lane - 1);
        }
        Fault::BrokerKilled => {
            // One broker down at a time: the other driver waits for this one.
            let _one = BROKER.lock().await;
            cluster.wait_fully_replicated().await;
            // Blocking calls, off the runtime's two workers (the watcher and the stream run there).
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.kill(node)).await.unwrap();
            tokio::time::sleep(length).await;
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.resume(node)).await.unwrap();
        }
    }
    started.elapsed()
}

static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends a signal; the process may be gone (the other driver killed that instance meanwhile).
fn signal(signal: &str, pid: u32) {
    if !common::process::signal(signal, pid) {
        eprintln!("kill {signal} {pid}: the process is gone");
    }
}

/// Streams seed-shaped months one after another at `RATE` messages a second until `until`,
/// finishing the month under way, and returns each month's events and the bad messages.
async fn stream(config: Config, zone: jiff::tz::TimeZone, until: Instant) -> (Vec<(String, Vec<Value>)>, Vec<Vec<u8>>) {
    let mut sender = Sender::new(&config.kafka).unwrap();
    let (mut months, mut bad) = (Vec::new(), Vec::new());
    let mut month: hotline::domain::month::Month = "2022-01".parse().unwrap();
    while Instant::now() < until {
        let name = month.to_string();
        let events = common::generated_month(&name, &zone, CASES, months.len() as u64 + 1);
        let bad_here: Vec<Vec<u8>> =
            (0..BAD).map(|n| format!("{{\"event_id\":\"bad-{name}-{n}\",\"case_id\":").into_bytes()).collect();
        eprintln!("streaming {name}: {} events", events.len());
        let tick = Duration::from_millis(100);
        let chunks: Vec<&[Value]> = events.chunks(RATE / 10).collect();
        let every = chunks.len() / BAD + 1;
        let mut next = tokio::time::Instant::now();
        for (n, chunk) in chunks.iter().enumerate() {
            common::send_all(&mut sender, &config.topics, chunk).await;
            if n % every == 0 {
                sender.send(&config.topics.cases, None, &bad_here[n / every]).await.unwrap();
            }
            next += tick;
            tokio::time::sleep_until(next).await;
        }
        bad.extend(bad_here.into_iter().take(chunks.len().div_ceil(every)));
        months.push((name, events));
        month = month.next();
    }
    sender.finish().await.unwrap();
    (months, bad)
}
