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
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, coordinator_partition};
use common::fleet::{Fleet, Watch};
use common::process::http_get;
use hotline::kafka::sender::Sender;

const MONTH: &str = "2022-04";
/// One failover test at a time: they kill brokers of the same cluster.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The longest time the count stood still in the minute after `at`.
fn pause_after(watch: &Watch, at: Instant) -> Duration {
    watch.longest_stall(at, at + Duration::from_secs(60))
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
    let fleet = Fleet::start(file, &logs, ids.into_iter().map(|id| (id, None)).collect()).await;

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
                let id = fleet.instances.lock().unwrap()[0]
                    .transactional_id()
                    .expect("the instance logged its transactional id");
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
        for i in fleet.instances.lock().unwrap().iter() {
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
            // What the instance said that was not routine.
            eprintln!("{}, last warnings and errors:\n{}", i.name(), i.notable(30));
        }
    })
    .await;
    assert_eq!(last.figures.totals.received, 3000);
    let revisions = common::assert_revisions(settings, MONTH, "failover");
    common::assert_dead_letters(&config.kafka, &config.topics.dead_letters, &bad, "failover").await;

    let exits = fleet.exits();
    assert!(exits.is_empty(), "no instance exits on a broker failover: {exits:?}");
    let recovered = fleet.metric("hotline_consumer_recreated_total").await;
    let restarts = fleet.metric("hotline_pipeline_restarts_total").await;
    let abandoned = fleet.metric("hotline_producers_abandoned_total").await;
    let seen = fleet.seen.clone();
    fleet.stop_watching().await;
    let seen = seen.lock().unwrap();
    assert!(seen.ready_while_still.is_empty(), "ready while the loop stood still: {:?}", seen.ready_while_still);
    let pauses: Vec<String> = kills
        .iter()
        .map(|(target, node, at)| format!("{target} (node {node}): {:.1} s", pause_after(&seen, *at).as_secs_f64()))
        .collect();
    eprintln!(
        "{} membership, session timeout {}: exact after 3 broker kills; {} revisions; consumers recreated {recovered}, producers abandoned \
         {abandoned}, pipeline restarts {restarts}; longest pause in counting after each kill: {}",
        if static_membership { "static" } else { "dynamic" },
        session_timeout.unwrap_or("45s (default)"),
        revisions,
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
