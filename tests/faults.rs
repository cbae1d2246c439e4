//! Faults a real broker cannot produce cheaply, injected with librdkafka's mock cluster (beside
//! the real-broker tests, not instead of them): failed and fenced transaction commits and
//! coordinator moves. Each makes the pipeline abort and start over from its last commit; the
//! month's figures must still be exact.

mod common;

use std::time::Duration;

use hotline::kafka::sender::Sender;
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::Value;

const MONTH: &str = "2022-04";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_and_coordinator_moves_leave_the_figures_exact() {
    let mock = MockCluster::new(3).unwrap();
    let instance = common::unique("instance");
    let text = common::config_text_on(
        &mock.bootstrap_servers(),
        &format!("instance_id = \"{instance}\""),
        "[limits]\nmax_batch = 200\n",
    );
    let config = common::parse(&text);
    let settings = config.clone().settings().unwrap();
    let t = &config.topics;
    // The mock cluster does not serve CreateTopics.
    for topic in [&t.cases, &t.letters, &t.boards, &t.snapshots, &t.dead_letters, &t.changelog, &t.case_events] {
        mock.create_topic(topic, 3, 1).unwrap();
    }
    mock.create_topic(&t.partials, 1, 1).unwrap();
    let events = common::generated_month(MONTH, &settings.zone, 1200, 11);

    let pipeline = common::Running::start(settings.clone()).await;
    let mut sender = Sender::new(&config.kafka).unwrap();
    let transactional_id = format!("{}-{instance}", config.kafka.group_id);
    let chunks: Vec<&[Value]> = events.chunks(events.len() / 5 + 1).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        match i {
            // A commit refused outright (abortable), then a fenced producer (fatal for it).
            1 => mock.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID]),
            2 => mock.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED]),
            // Offsets refused inside the transaction, retriably.
            3 => mock.request_errors(
                RDKafkaApiKey::TxnOffsetCommit,
                &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 3],
            ),
            // The transaction and group coordinators move to other brokers.
            4 => {
                mock.coordinator(MockCoordinator::Transaction(transactional_id.clone()), 2).unwrap();
                mock.coordinator(MockCoordinator::Group(config.kafka.group_id.clone()), 3).unwrap();
            }
            _ => {}
        }
        common::send_all(&mut sender, &config.topics, chunk).await;
        sender = {
            sender.finish().await.unwrap();
            Sender::new(&config.kafka).unwrap()
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let last = common::wait_for_exact_snapshot(&settings, MONTH, &events, 1).await;
    assert_eq!(last.figures.totals.received, 1200);
    let (_, metrics) = pipeline.get("/metrics").await;
    let restarts: f64 =
        metrics.lines().find_map(|l| l.strip_prefix("hotline_pipeline_restarts_total ")).unwrap().parse().unwrap();
    // The refused commit and the fencing may hit the same commit and its abort: one restart
    // at least.
    assert!(restarts >= 1.0, "the refused and fenced commits restarted the pipeline: {restarts}");
    pipeline.stop().await;
}
