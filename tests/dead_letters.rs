//! A dead-letter topic that existed before `hotline` with the broker's default 1 MiB
//! `max.message.bytes`: a rejected message that nearly fills that limit still becomes a dead
//! letter (its payload dropped, the headers saying so) instead of a commit the broker refuses
//! at every retry.

mod common;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Headers, Message};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_limit_message_is_dead_lettered_into_a_small_dead_letter_topic() {
    // Upstream (the test's sender) may send messages of up to 17 MB.
    let deployment = common::Deployment::new("", "[kafka.properties]\n\"message.max.bytes\" = \"17825792\"").await;
    let config = &deployment.config;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).create().unwrap();
    let small =
        NewTopic::new(&config.topics.dead_letters, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "1048576");
    admin.create_topics(&[small], &AdminOptions::new()).await.unwrap()[0].as_ref().unwrap();

    let pipeline = deployment.start().await;
    let mut sender = deployment.sender();
    // Under the input limit (1 MiB), so it is decoded and rejected as invalid JSON; with a
    // dead letter's headers it would not fit the topic.
    let near_limit = vec![b'{'; 1_048_400];
    sender.send(&config.topics.cases, Some(b"x"), &near_limit).await.unwrap();
    let good = json!({"event_id":"e1","case_id":"c1","type":"created","occurred_at":"2022-04-10T10:00:00+08:00",
        "channel":"hotline","category":"water"});
    common::send_all(&mut sender, &config.topics, &[good]).await;
    sender.finish().await.unwrap();

    let dead = common::committed_messages(&config.kafka, &config.topics.dead_letters, 1).await;
    assert_eq!(dead.len(), 1);
    let headers: Vec<(String, String)> = dead[0]
        .headers()
        .unwrap()
        .iter()
        .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap()).into_owned()))
        .collect();
    assert!(headers.contains(&("hotline.reason_kind".into(), "invalid_json".into())), "{headers:?}");
    assert!(headers.iter().any(|(k, _)| k == "hotline.payload_omitted"), "{headers:?}");
    assert!(dead[0].payload().is_none());
    pipeline.wait_processed(2, Duration::from_secs(60)).await;
    let (_, metrics) = pipeline.get("/metrics").await;
    assert!(metrics.contains("hotline_pipeline_restarts_total 0"), "no commit was refused");
    pipeline.stop().await;
}
