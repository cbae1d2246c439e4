//! Bounded state: cases of months past the retention are evicted with tombstones in the
//! changelog, late events for them go to the dead letters, and so do the facts of a case
//! whose `created` never came.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use hotline::kafka::topics::{key_str, read_to_end};
use rdkafka::message::{Headers, Message};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn months_past_the_retention_are_evicted_and_their_late_events_dead_lettered() {
    // Keep only the watermark's month.
    let deployment = common::Deployment::new("", "[state]\nretention_months = 0\n").await;
    let config = &deployment.config;
    let pipeline = deployment.start().await;
    let mut sender = deployment.sender();

    let march = json!({"event_id":"m1","case_id":"march","type":"created","occurred_at":"2022-03-10T10:00:00+08:00",
        "channel":"hotline","category":"water","department":"tiexi_district"});
    let april = json!({"event_id":"a1","case_id":"april","type":"created","occurred_at":"2022-04-10T10:00:00+08:00",
        "channel":"hotline","category":"water"});
    // A March call-back for a case whose `created` never arrives.
    let orphan = json!({"event_id":"o1","case_id":"never-created","type":"rated","occurred_at":"2022-03-11T10:00:00+08:00",
        "result":"satisfied","caller_phone":"13912345678"});
    common::send_all(&mut sender, &config.topics, &[march, orphan, april]).await;
    pipeline.wait_processed(3, Duration::from_secs(60)).await;

    // Once the watermark is in April, March's case is evicted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut latest: HashMap<String, Option<Vec<u8>>> = HashMap::new();
        read_to_end(&config.kafka, &config.topics.changelog, Duration::from_secs(30), |m| {
            latest.insert(key_str(m).unwrap().to_owned(), m.payload().map(<[u8]>::to_vec));
            Ok(())
        })
        .unwrap();
        if latest.get("march") == Some(&None) && latest.get("never-created") == Some(&None) {
            assert!(matches!(latest.get("april"), Some(Some(_))), "April's case is kept");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no tombstone for March's case: {latest:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let late = [
        json!({"event_id":"m2","case_id":"march","type":"closed","occurred_at":"2022-03-20T10:00:00+08:00"}),
        json!({"event_id":"m3","case_id":"march-2","type":"created","occurred_at":"2022-03-31T23:00:00+08:00",
            "channel":"hotline","category":"gas"}),
    ];
    common::send_all(&mut sender, &config.topics, &late).await;
    let dead = common::committed_messages(&config.kafka, &config.topics.dead_letters, 3).await;
    let header = |m: &rdkafka::message::OwnedMessage, key: &str| {
        m.headers()
            .unwrap()
            .iter()
            .find(|h| h.key == key)
            .map(|h| String::from_utf8(h.value.unwrap().to_vec()).unwrap())
    };
    let mut reasons: Vec<String> = dead.iter().map(|m| header(m, "hotline.reason_kind").unwrap()).collect();
    reasons.sort();
    assert_eq!(reasons, ["month_evicted", "month_evicted", "never_created"]);
    let never = dead.iter().find(|m| header(m, "hotline.reason_kind").as_deref() == Some("never_created")).unwrap();
    let fact: serde_json::Value = serde_json::from_slice(never.payload().unwrap()).unwrap();
    assert_eq!((fact["case_id"].as_str(), fact["type"].as_str()), (Some("never-created"), Some("rated")));
    assert_eq!(fact["occurred_at"], "2022-03-11T02:00:00Z");
    assert_eq!(header(never, "hotline.source_topic"), None, "the input message is not known any more");
    assert!(!String::from_utf8_lossy(never.payload().unwrap()).contains("13912345678"));
    // The publisher forgets March once every counting partition is past it, and its gauges
    // go with the next refresh.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = pipeline.get("/metrics").await;
        assert!(metrics.contains(r#"hotline_events_rejected_total{reason="month_evicted"} 2"#), "{metrics}");
        assert!(metrics.contains(r#"hotline_events_rejected_total{reason="never_created"} 1"#), "{metrics}");
        if !metrics.contains(r#"month="2022-03""#) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "gauges for an evicted month: {metrics}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    pipeline.stop().await;
}

/// Input deleted by the broker's retention before the pipeline read it cannot be counted; the
/// loss is reported in a metric and the log, never silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_deleted_before_it_was_read_is_reported() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let deployment = common::Deployment::new("", "").await;
    let config = &deployment.config;
    let board = |i: usize| {
        json!({"event_id": format!("b{i}"), "case_id": format!("board-{i}"), "type": "created",
            "occurred_at": "2022-04-10T10:00:00+08:00", "channel": "leader_board", "board": "mayor", "category": "water"})
    };
    let mut sender = deployment.sender();
    let pipeline = deployment.start().await;
    common::send_all(&mut sender, &config.topics, &[board(0)]).await;
    pipeline.wait_processed(1, Duration::from_secs(60)).await;
    pipeline.stop().await;

    // While it is down, two messages come and go before it could read them.
    common::send_all(&mut sender, &config.topics, &[board(1), board(2), board(3)]).await;
    sender.finish().await.unwrap();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).create().unwrap();
    let mut up_to = TopicPartitionList::new();
    up_to.add_partition_offset(&config.topics.boards, 0, Offset::Offset(3)).unwrap();
    admin.delete_records(&up_to, &AdminOptions::new()).await.unwrap();

    let pipeline = deployment.start().await;
    pipeline.wait_processed(1, Duration::from_secs(60)).await; // the one message left
    let (_, metrics) = pipeline.get("/metrics").await;
    assert!(metrics.contains("hotline_offset_resets_total 1"), "{metrics}");
    pipeline.stop().await;
}
