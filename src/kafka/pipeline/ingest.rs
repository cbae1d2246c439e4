//! Ingesting: input messages are decoded (personal data dropped) and routed by case id to
//! their counting partition, or sent to the dead letters with their reason.

use anyhow::Result;
use jiff::Timestamp;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::BaseRecord;

use crate::domain::event::{self, DecodeLimits};
use crate::domain::routing::{Progress, Routed, RoutedEvent, Source, partition_of};
use crate::telemetry::Telemetry;

use super::Output;

pub struct Ingest {
    counting_partitions: i32,
    progress: Progress,
}

impl Ingest {
    pub fn new(counting_partitions: i32) -> Ingest {
        Ingest { counting_partitions, progress: Progress::default() }
    }

    pub fn handle(&mut self, out: &Output<'_>, telemetry: &Telemetry, m: &BorrowedMessage<'_>) -> Result<()> {
        telemetry.message_ingested();
        let settings = out.settings;
        let limits = DecodeLimits {
            max_message_bytes: settings.config.limits.max_message_bytes,
            latest_occurred_at: Timestamp::now() + settings.max_future,
        };
        match event::decode(m.payload().unwrap_or_default(), &limits) {
            Ok(event) => {
                let to = partition_of(&event.case_id, self.counting_partitions);
                let source = Source { topic: m.topic().to_owned(), partition: m.partition() };
                // A clock running ahead upstream must not close months early.
                let watermark = self.progress.route(&source, event.occurred_at.min(Timestamp::now()), to);
                let case_id = event.case_id.clone();
                let input_timestamp = m.timestamp().to_millis();
                let routed = Routed {
                    source,
                    watermark,
                    event: Some(RoutedEvent { offset: m.offset(), input_timestamp, event }),
                };
                let payload = serde_json::to_vec(&routed).expect("routed records serialize");
                out.send(
                    BaseRecord::to(&settings.config.topics.case_events)
                        .partition(to)
                        .key(case_id.as_bytes())
                        .payload(&payload),
                )
            }
            Err(rejection) => {
                telemetry.event_rejected(m.topic(), m.partition(), m.offset(), &rejection);
                out.dead_letter(&rejection, (m.topic(), m.partition(), m.offset()), m.key(), m.payload())
            }
        }
    }

    /// Tells every counting partition how far each input partition has got, where the
    /// batch's events did not already.
    pub fn send_markers(&mut self, out: &Output<'_>) -> Result<()> {
        for (to, marker) in self.progress.markers(self.counting_partitions) {
            let payload = serde_json::to_vec(&marker).expect("routed records serialize");
            out.send(
                BaseRecord::<[u8], [u8]>::to(&out.settings.config.topics.case_events).partition(to).payload(&payload),
            )?;
        }
        Ok(())
    }
}
