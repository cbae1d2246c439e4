//! `hotline replay FILE`: sends an NDJSON file of contract events to the input topics, as an
//! upstream platform would (history backfill). Each line is checked as `run` checks a message;
//! a line `run` would dead-letter is reported by number and reason and skipped (sent with
//! `--send-invalid`). Lines are sent unchanged; routing only peeks at `type`, `channel` and
//! `case_id`. It ends with a summary: lines read, sent by topic, refused by reason.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Topics};
use crate::domain::routing::Router;
use crate::kafka::sender::Sender;

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, rename = "type")]
    type_: Option<&'a str>,
    channel: Option<&'a str>,
    case_id: Option<&'a str>,
}

/// The topic an upstream platform would publish this line to: mailboxes to letters, the
/// leader board to boards, the rest to cases; later events follow their case's `created`.
pub fn route<'t>(
    topics: &'t Topics,
    line: &str,
    case_topics: &mut HashMap<String, &'t str>,
) -> (&'t str, Option<String>) {
    let Ok(peek) = serde_json::from_str::<Peek>(line) else { return (&topics.cases, None) };
    let key = peek.case_id.map(str::to_owned);
    let topic = match (peek.type_, peek.channel) {
        (Some("created"), Some("governor_mailbox" | "mayor_mailbox")) => topics.letters.as_str(),
        (Some("created"), Some("leader_board")) => topics.boards.as_str(),
        (Some("created"), _) => topics.cases.as_str(),
        _ => key.as_ref().and_then(|k| case_topics.get(k).copied()).unwrap_or(topics.cases.as_str()),
    };
    if let (Some("created"), Some(k)) = (peek.type_, &key) {
        case_topics.insert(k.clone(), topic);
    }
    (topic, key)
}

/// What `replay` is asked to do.
pub struct Options {
    /// One event per line; `-` reads standard input.
    pub file: PathBuf,
    /// Send lines `run` would dead-letter too (to test the dead letters).
    pub send_invalid: bool,
    /// How long to wait for a broker before sending.
    pub timeout: Duration,
    /// The summary as a JSON log line.
    pub json_log: bool,
}

/// Bad lines reported one by one; past this many, only counted.
const REPORTED: u64 = 100;
/// A send waiting this long says so on the progress line.
const WAITING: Duration = Duration::from_secs(5);

/// What a replay did.
#[derive(Default, Serialize)]
struct Summary {
    lines: u64,
    sent: u64,
    /// Lines `run` would dead-letter, by reason (sent anyway with `--send-invalid`).
    refused: BTreeMap<&'static str, u64>,
    /// Messages sent, by topic.
    topics: BTreeMap<String, u64>,
}

pub async fn replay(config: &Path, options: Options) -> Result<()> {
    let config = Config::load(config)?;
    let settings = config.clone().settings()?;
    super::reach(&config.kafka, options.timeout).await?;
    // `run`'s own check of each line, without its counting.
    let router = Router::new(
        settings.kafka.partitions,
        settings.cities(),
        settings.limits.max_message_bytes,
        settings.max_future,
    );
    let file = &options.file;
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?))
    };
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})").expect("a valid template"),
    );
    let mut sender = Sender::patient(&config.kafka)?;
    let mut summary = Summary::default();
    let mut case_topics = HashMap::new();
    for line in input.lines() {
        let line = line.context("reading the input file")?;
        summary.lines += 1;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Err(why) = router.admit(line.as_bytes(), jiff::Timestamp::now()) {
            let refused = summary.refused.entry(why.kind()).or_default();
            *refused += 1;
            if summary.refused.values().sum::<u64>() <= REPORTED {
                // The reason names fields, never their values: nothing personal is printed.
                let skipped = if options.send_invalid { "sent anyway" } else { "skipped" };
                let n = summary.lines;
                progress.suspend(|| tracing::warn!(line = n, reason = why.kind(), "line {n}: {why}; {skipped}"));
            }
            if !options.send_invalid {
                continue;
            }
        }
        let (topic, key) = route(&config.topics, &line, &mut case_topics);
        let sending = sender.send(topic, key.as_deref().map(str::as_bytes), line.as_bytes());
        waiting_said(sending, &progress, summary.sent).await?;
        summary.sent += 1;
        *summary.topics.entry(topic.to_owned()).or_default() += 1;
        if summary.sent.is_multiple_of(10_000) {
            progress.set_message(format!("{} events", summary.sent));
        }
    }
    waiting_said(sender.finish(), &progress, summary.sent).await?;
    progress.finish_and_clear();
    let refused: u64 = summary.refused.values().sum();
    if options.json_log {
        super::json_line("INFO", "replay finished", serde_json::to_value(&summary).expect("a summary serializes"));
    } else {
        let by_topic: Vec<String> = summary.topics.iter().map(|(t, n)| format!("{n} to {t}")).collect();
        let by_reason: Vec<String> = summary.refused.iter().map(|(r, n)| format!("{n} {r}")).collect();
        eprintln!(
            "replay: {} lines read, {} sent ({}), {refused} refused{}{}",
            summary.lines,
            summary.sent,
            if by_topic.is_empty() { "none".to_owned() } else { by_topic.join(", ") },
            if by_reason.is_empty() { String::new() } else { format!(" ({})", by_reason.join(", ")) },
            if refused > 0 && options.send_invalid { ", sent anyway" } else { "" },
        );
    }
    Ok(())
}

/// Awaits a send, saying on the progress line when Kafka keeps it waiting (a broker lost
/// midway is waited for: librdkafka retries until it is back).
async fn waiting_said<T>(sending: impl Future<Output = Result<T>>, progress: &ProgressBar, sent: u64) -> Result<T> {
    tokio::pin!(sending);
    let started = tokio::time::Instant::now();
    loop {
        tokio::select! {
            done = &mut sending => {
                if started.elapsed() > WAITING {
                    progress.set_message(format!("{sent} events"));
                    progress.suspend(|| tracing::info!(after = ?started.elapsed(), "Kafka answers again"));
                }
                return done;
            }
            _ = tokio::time::sleep(WAITING) => {
                let waited = started.elapsed().as_secs();
                progress.set_message(format!("{sent} events; waiting for Kafka for {waited} s"));
                if waited < WAITING.as_secs() + 1 {
                    progress.suspend(|| tracing::warn!("Kafka does not answer; waiting for it"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_their_case_to_its_channel_topic() {
        let topics = Topics::default();
        let mut seen = HashMap::new();
        let created = r#"{"type":"created","case_id":"c1","channel":"mayor_mailbox"}"#;
        assert_eq!(route(&topics, created, &mut seen), ("hotline.letters", Some("c1".into())));
        assert_eq!(route(&topics, r#"{"type":"closed","case_id":"c1"}"#, &mut seen).0, "hotline.letters");
        assert_eq!(route(&topics, r#"{"type":"closed","case_id":"c2"}"#, &mut seen).0, "hotline.cases");
        assert_eq!(
            route(&topics, r#"{"type":"created","case_id":"c3","channel":"leader_board"}"#, &mut seen).0,
            "hotline.boards"
        );
        assert_eq!(route(&topics, "not json", &mut seen), ("hotline.cases", None));
    }
}
