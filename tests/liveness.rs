//! A pipeline that ends ends the process, and a consumer fenced for good is replaced:
//! - librdkafka's mock cluster answers the group's requests with FENCED_INSTANCE_ID, which
//!   fails the consumer for good: a few such answers (the consumer's own past self, after a
//!   broker failover) are recovered with a new consumer and the count stays exact; answers
//!   that go on for longer than the session timeout end the pipeline, and from then on
//!   `/healthz` and `/readyz` answer 503;
//! - on the real broker, two `hotline run` processes with one `instance_id` fence each other
//!   until one gives up and exits non-zero with an error naming the id.

mod common;

use std::time::{Duration, Instant};

use common::process::{Hotline, Options};

use hotline::kafka::sender::Sender;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const MONTH: &str = "2022-04";
const FENCED: RDKafkaRespErr = RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A configuration with a static `instance_id` (and `kafka_keys`) on a mock cluster, whose
/// topics it creates.
fn mock_config(mock: &Mock, instance: &str, kafka_keys: &str) -> hotline::config::Config {
    let text =
        common::config_text_on(&mock.bootstrap_servers(), &format!("instance_id = \"{instance}\"\n{kafka_keys}"), "");
    let config = common::parse(&text);
    let t = &config.topics;
    for topic in [&t.cases, &t.letters, &t.boards, &t.snapshots, &t.dead_letters, &t.changelog, &t.case_events] {
        mock.create_topic(topic, 3, 1).unwrap();
    }
    mock.create_topic(&t.partials, 1, 1).unwrap();
    config
}

/// A pipeline with a static `instance_id` and 6 s sessions on a new mock cluster.
async fn on_mock(mock: &Mock, instance: &str) -> (common::Running, hotline::config::Settings) {
    let config = mock_config(mock, instance, "session_timeout = \"6s\"\nheartbeat_interval = \"1s\"");
    let settings = config.settings().unwrap();
    (common::Running::start(settings.clone()).await, settings)
}

async fn metric(pipeline: &common::Running, name: &str) -> f64 {
    common::metric(&pipeline.get("/metrics").await.1, name)
}

async fn wait_ready(pipeline: &common::Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipeline.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_fenced_by_its_own_past_self_is_replaced_and_counts_exactly() {
    let mock = MockCluster::new(3).unwrap();
    let (pipeline, settings) = on_mock(&mock, &common::unique("instance")).await;
    wait_ready(&pipeline).await;

    let events = common::generated_month(MONTH, &settings.zone, 600, 8);
    let (first, second) = events.split_at(events.len() / 2);
    let mut sender = Sender::new(&settings.kafka).unwrap();
    common::send_all(&mut sender, &settings.topics, first).await;
    sender.finish().await.unwrap();
    pipeline.wait_processed(first.len() as u64, Duration::from_secs(60)).await;

    // The coordinator says another member holds this instance id: the consumer's next
    // heartbeat fails it for good. The new consumer's join is fenced once more.
    mock.request_errors(RDKafkaApiKey::Heartbeat, &[FENCED]);
    mock.request_errors(RDKafkaApiKey::JoinGroup, &[FENCED]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&pipeline, "hotline_consumer_recreated_total{reason=\"FencedInstanceId\"}").await < 1.0 {
        assert!(Instant::now() < deadline, "the fenced consumer was never replaced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut sender = Sender::new(&settings.kafka).unwrap();
    common::send_all(&mut sender, &settings.topics, second).await;
    sender.finish().await.unwrap();

    let last = common::wait_for_exact_snapshot(&settings, MONTH, &events, 1).await;
    assert_eq!(last.figures.totals.received, 600);
    let revisions: Vec<u64> = common::revisions(&settings, MONTH).iter().map(|s| s.revision).collect();
    assert_eq!(revisions, (1..=revisions.len() as u64).collect::<Vec<_>>());
    assert_eq!(pipeline.get("/healthz").await.0, 200);
    assert_eq!(pipeline.get("/readyz").await.0, 200);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_that_never_stops_ends_the_pipeline_and_fails_the_probes() {
    let mock = MockCluster::new(3).unwrap();
    let instance = common::unique("instance");
    let (mut pipeline, _) = on_mock(&mock, &instance).await;
    wait_ready(&pipeline).await;
    assert_eq!(pipeline.get("/healthz").await.0, 200);

    // Every consumer is fenced at once, for longer than the 6 s session timeout.
    mock.request_errors(RDKafkaApiKey::Heartbeat, &[FENCED; 1000]);
    mock.request_errors(RDKafkaApiKey::JoinGroup, &[FENCED; 1000]);
    mock.request_errors(RDKafkaApiKey::SyncGroup, &[FENCED; 1000]);
    let ended = Instant::now();
    let error = pipeline.ended(Duration::from_secs(60)).await.unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains(&instance) && text.contains("kafka.instance_id"), "{text}");
    assert!(
        ended.elapsed() > Duration::from_secs(5),
        "gave up after {:?}, before the session timeout",
        ended.elapsed()
    );
    assert!(metric(&pipeline, "hotline_consumer_recreated_total").await >= 1.0);
    // From the moment it ended, neither probe passes.
    let (status, body) = pipeline.get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(pipeline.get("/readyz").await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_with_one_instance_id_stop_fighting() {
    let instance = common::unique("twin");
    let deployment = common::Deployment::new("session_timeout = \"6s\"\nheartbeat_interval = \"1s\"", "").await;
    let (dir, file) = (&deployment.dir, &deployment.file);
    let start = |name: &str| {
        let options =
            Options { instance_id: Some(instance.clone()), log: Some(dir.path().join(name)), ..Options::default() };
        Hotline::start(file, &options)
    };
    let mut a = start("a.log");
    a.wait_ready(Duration::from_secs(60)).await;
    let mut b = start("b.log");
    let twins = Instant::now();
    let (status, log) = loop {
        if let Some(status) = a.try_wait() {
            break (status, "a.log");
        }
        if let Some(status) = b.try_wait() {
            break (status, "b.log");
        }
        assert!(
            twins.elapsed() < Duration::from_secs(120),
            "two processes with one instance_id still fight after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let fought = twins.elapsed();
    a.kill();
    b.kill();
    assert!(fought > Duration::from_secs(6), "gave up after {fought:?}, before a 6 s session timeout");
    assert!(!status.success(), "a process that gave up exits non-zero: {status}");
    let logged = std::fs::read_to_string(dir.path().join(log)).unwrap();
    assert!(logged.contains("a new one takes its place"), "it first tried a new consumer:\n{logged}");
    let last = logged.lines().last().unwrap_or_default();
    assert!(last.contains(&instance) && last.contains("kafka.instance_id"), "the error names the id: {last}");
    eprintln!("gave up after {fought:?}: {last}");
}

/// librdkafka's `send_offsets_to_transaction` can wait past its timeout, for ever, once the
/// group coordinator's broker is gone (librdkafka issues #5456, #5511): the mock cluster's
/// group coordinator goes down while events stream in and stays down for longer than the
/// pipeline's 35 s deadline on a transactional call. The call is abandoned with its producer,
/// a new life takes over once the broker is back, and the count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_call_stuck_on_a_lost_coordinator_is_abandoned_and_counts_exactly() {
    use rdkafka::mocking::MockCoordinator;
    const COORDINATOR: i32 = 3;
    let mock = MockCluster::new(3).unwrap();
    let instance = common::unique("instance");
    let config = mock_config(&mock, &instance, "session_timeout = \"60s\"");
    let t = &config.topics;
    // Partitions led by the other brokers only: what stops is the coordinator alone.
    for topic in [&t.cases, &t.letters, &t.boards, &t.snapshots, &t.dead_letters, &t.changelog, &t.case_events] {
        for p in 0..3 {
            mock.partition_leader(topic, p, Some(1 + p % 2)).unwrap();
        }
    }
    mock.partition_leader(&t.partials, 0, Some(1)).unwrap();
    mock.coordinator(MockCoordinator::Group(config.kafka.group_id.clone()), COORDINATOR).unwrap();
    mock.coordinator(MockCoordinator::Transaction(format!("{}-{instance}", config.kafka.group_id)), 1).unwrap();
    let settings = config.settings().unwrap();
    let pipeline = common::Running::start(settings.clone()).await;
    wait_ready(&pipeline).await;

    let events = common::generated_month(MONTH, &settings.zone, 600, 9);
    let sending = {
        let (settings, events) = (settings.clone(), events.clone());
        tokio::spawn(async move {
            let mut sender = Sender::new(&settings.kafka).unwrap();
            for chunk in events.chunks(events.len() / 60 + 1) {
                common::send_all(&mut sender, &settings.topics, chunk).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            sender.finish().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    mock.broker_down(COORDINATOR).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&pipeline, "hotline_producers_abandoned_total").await < 1.0 {
        assert!(Instant::now() < deadline, "no stuck transactional call was abandoned within 60 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    mock.broker_up(COORDINATOR).unwrap();
    sending.await.unwrap();

    let last = common::wait_for_exact_snapshot(&settings, MONTH, &events, 1).await;
    assert_eq!(last.figures.totals.received, 600);
    let revisions: Vec<u64> = common::revisions(&settings, MONTH).iter().map(|s| s.revision).collect();
    assert_eq!(revisions, (1..=revisions.len() as u64).collect::<Vec<_>>());
    assert_eq!(pipeline.get("/healthz").await.0, 200);
    pipeline.stop().await;
}
