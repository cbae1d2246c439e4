//! Ingesting: input messages are decoded (personal data dropped) and routed by case id to
//! their counting partition, or sent to the dead letters with their reason.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use jiff::Timestamp;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::BaseRecord;

use crate::config::Settings;
use crate::domain::routing::{Input, Router, Source};
use crate::records;
use crate::telemetry::{EventRejected, MessageIngested, Telemetry};

use super::transaction::Output;

pub(crate) struct Ingest {
    router: Router,
    /// The input partitions seen, so a message's names no new string.
    sources: Vec<Source>,
    /// The internal topic.
    case_events: String,
    idle_partition: Duration,
}

impl Ingest {
    /// Follows the input partitions this instance reads, with or without events.
    pub fn new(settings: &Settings, counting_partitions: i32, sources: impl IntoIterator<Item = Source>) -> Ingest {
        let limits = &settings.limits;
        let mut router =
            Router::new(counting_partitions, settings.cities(), limits.max_message_bytes, settings.max_future);
        let now = Instant::now();
        let sources: Vec<Source> = sources.into_iter().collect();
        for source in &sources {
            router.track(source.clone(), now);
        }
        Ingest {
            router,
            sources,
            case_events: settings.topics.case_events.clone(),
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
        let source = match self.sources.iter().find(|s| &*s.topic == m.topic() && s.partition == m.partition()) {
            Some(source) => source.clone(),
            None => {
                self.sources.push(Source { topic: m.topic().into(), partition: m.partition() });
                self.sources[self.sources.len() - 1].clone()
            }
        };
        let payload = m.payload().unwrap_or_default();
        let input = Input { source: &source, offset: m.offset(), timestamp: m.timestamp().to_millis(), payload };
        match self.router.route(input, wall, now) {
            Ok((to, routed)) => {
                let key = routed.event.as_ref().map(|e| e.event.case_id.as_bytes()).unwrap_or_default();
                let payload = records::encode(&routed);
                out.send(BaseRecord::to(&self.case_events).partition(to).key(key).payload(&payload))
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
        let caught_up = |s: &Source| lags.get(&(s.topic.to_string(), s.partition)) == Some(&0);
        self.router.mark_idle(Instant::now(), self.idle_partition, caught_up);
        for (to, marker) in self.router.markers() {
            let payload = records::encode(&marker);
            out.send(BaseRecord::<[u8], [u8]>::to(&self.case_events).partition(to).payload(&payload))?;
        }
        Ok(())
    }
}
