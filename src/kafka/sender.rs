//! Sending many messages with a bounded number in flight, as an upstream platform does
//! (`hotline replay`, the demo, tests).

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

use super::{client_config, log_librdkafka, set_default};

const IN_FLIGHT: usize = 10_000;

pub struct Sender {
    producer: FutureProducer<Quiet>,
    in_flight: VecDeque<DeliveryFuture>,
    sent: u64,
}

impl Sender {
    pub fn new(kafka: &KafkaConfig) -> Result<Sender> {
        Sender::with(kafka, |_| {})
    }

    /// A sender whose messages wait for a lost broker as long as it takes (librdkafka's
    /// `message.timeout.ms` 0, unless `[kafka.properties]` sets it), for `replay`.
    pub fn patient(kafka: &KafkaConfig) -> Result<Sender> {
        Sender::with(kafka, |c| set_default(c, "message.timeout.ms", "0"))
    }

    fn with(kafka: &KafkaConfig, more: impl FnOnce(&mut rdkafka::ClientConfig)) -> Result<Sender> {
        let mut config = client_config(kafka);
        config.set("enable.idempotence", "true");
        set_default(&mut config, "linger.ms", "20");
        more(&mut config);
        let producer = config.create_with_context(Quiet).context("creating the producer")?;
        Ok(Sender { producer, in_flight: VecDeque::new(), sent: 0 })
    }

    pub async fn send(&mut self, topic: &str, key: Option<&[u8]>, payload: &[u8]) -> Result<()> {
        self.send_at(topic, key, payload, None).await
    }

    /// `send` with the message's Kafka timestamp (milliseconds), as an upstream that sends each
    /// event as it happens stamps it; the producer's clock when `None`.
    pub async fn send_at(&mut self, topic: &str, key: Option<&[u8]>, payload: &[u8], at: Option<i64>) -> Result<()> {
        self.send_record(topic, key, Some(payload), at).await
    }

    /// A tombstone of `key`: on a compacted topic, the key's record goes.
    pub async fn send_tombstone(&mut self, topic: &str, key: &[u8]) -> Result<()> {
        self.send_record(topic, Some(key), None, None).await
    }

    async fn send_record(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        at: Option<i64>,
    ) -> Result<()> {
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic);
            if let Some(p) = payload {
                record = record.payload(p);
            }
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(at) = at {
                record = record.timestamp(at);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push_back(delivery);
                    self.sent += 1;
                    if self.in_flight.len() > IN_FLIGHT {
                        self.wait_one().await?;
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if self.in_flight.is_empty() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    } else {
                        self.wait_one().await?;
                    }
                }
                Err((e, _)) => return Err(e).context("sending a message"),
            }
        }
    }

    async fn wait_one(&mut self) -> Result<()> {
        if let Some(d) = self.in_flight.pop_front() {
            d.await
                .map_err(|_| anyhow!("the producer went away"))?
                .map_err(|(e, _)| e)
                .context("delivering a message")?;
        }
        Ok(())
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Waits until every message sent is acknowledged.
    pub async fn finish(mut self) -> Result<u64> {
        while !self.in_flight.is_empty() {
            self.wait_one().await?;
        }
        self.producer.flush(Duration::from_secs(60))?;
        Ok(self.sent)
    }
}

/// The client's lines and errors under the `librdkafka` target, which the commands that send
/// and exit leave out unless `--verbose`: a lost broker shows as `replay`'s waiting line.
pub struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "Kafka client error");
    }
}
