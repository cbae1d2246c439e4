//! Ingesting: input messages are decoded (personal data dropped) and routed by case id to
//! their counting partition, or sent to the dead letters with their reason.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use jiff::Timestamp;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::BaseRecord;

use crate::config::Settings;
use crate::domain::event::{self, DecodeLimits};
use crate::domain::province::Cities;
use crate::domain::routing::{Progress, Routed, RoutedEvent, Source, partition_of};
use crate::records;
use crate::telemetry::{EventRejected, MessageIngested, Telemetry};

use super::transaction::Output;

pub(crate) struct Ingest {
    counting_partitions: i32,
    /// Which cities events may name, and which one those naming none belong to.
    cities: Cities,
    progress: Progress,
    /// The internal topic.
    case_events: String,
    max_message_bytes: usize,
    max_future: Duration,
    idle_partition: Duration,
}

impl Ingest {
    /// Follows the input partitions this instance reads, with or without events.
    pub fn new(settings: &Settings, counting_partitions: i32, sources: impl IntoIterator<Item = Source>) -> Ingest {
        let mut progress = Progress::default();
        let now = Instant::now();
        for source in sources {
            progress.track(source, now);
        }
        Ingest {
            counting_partitions,
            cities: settings.cities(),
            progress,
            case_events: settings.topics.case_events.clone(),
            max_message_bytes: settings.limits.max_message_bytes,
            max_future: settings.max_future,
            idle_partition: settings.idle_partition,
        }
    }

    /// Routes one input message; `wall` and `now` are the batch's clock readings (events may
    /// not be later than `wall` plus `time.max_future`: up to a commit interval stricter than
    /// the clock at the message, which the allowance dwarfs).
    pub(crate) fn handle(
        &mut self,
        out: &Output<'_>,
        telemetry: &Telemetry,
        m: &BorrowedMessage<'_>,
        wall: Timestamp,
        now: Instant,
    ) -> Result<()> {
        telemetry.emit(MessageIngested);
        let limits =
            DecodeLimits { max_message_bytes: self.max_message_bytes, latest_occurred_at: wall + self.max_future };
        // The city is resolved here, so a city the deployment does not count is a dead letter
        // with its input's origin; the routed event names it unless it is the default.
        let decoded = event::decode(m.payload().unwrap_or_default(), &limits).and_then(|mut event| {
            event.city = self.cities.key(self.cities.resolve(event.city)?);
            Ok(event)
        });
        match decoded {
            Ok(event) => {
                let to = partition_of(&event.case_id, self.counting_partitions);
                let source = Source { topic: m.topic().to_owned(), partition: m.partition() };
                // A clock running ahead upstream must not close months early.
                let watermark = self.progress.route(&source, event.occurred_at.min(wall), to, now);
                let case_id = event.case_id.clone();
                let input_timestamp = m.timestamp().to_millis();
                let event = Some(RoutedEvent { offset: m.offset(), input_timestamp, event });
                let routed = Routed { source, watermark: Some(watermark), idle: false, event };
                let payload = records::encode(&routed);
                out.send(BaseRecord::to(&self.case_events).partition(to).key(case_id.as_bytes()).payload(&payload))
            }
            Err(rejection) => {
                telemetry.emit(EventRejected {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    rejection: &rejection,
                });
                out.dead_letter(&rejection, Some((m.topic(), m.partition(), m.offset())), m.key(), m.payload())
            }
        }
    }

    /// Tells every counting partition how far each input partition has got, where the
    /// batch's events did not already, and which input partitions are idle: read to their end
    /// (`lags`, from librdkafka's statistics) with no event for `snapshot.idle_partition`.
    pub(crate) fn send_markers(&mut self, out: &Output<'_>, lags: &HashMap<(String, i32), i64>) -> Result<()> {
        let caught_up = |s: &Source| lags.get(&(s.topic.clone(), s.partition)) == Some(&0);
        self.progress.mark_idle(Instant::now(), self.idle_partition, caught_up);
        for (to, marker) in self.progress.markers(self.counting_partitions) {
            let payload = records::encode(&marker);
            out.send(BaseRecord::<[u8], [u8]>::to(&self.case_events).partition(to).payload(&payload))?;
        }
        Ok(())
    }
}
