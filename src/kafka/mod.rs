//! The imperative shell around the counting core: Kafka clients, topics and the transactional
//! consume-count-produce loop.

pub mod pipeline;
pub mod sender;
pub mod topics;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// A librdkafka configuration with the brokers and the configured extra properties.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}
