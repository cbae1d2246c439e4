//! `hotline replay FILE`: sends an NDJSON file of contract events to the input topics, as an
//! upstream platform would (history backfill). Lines are sent unchanged; routing only peeks
//! at `type`, `channel` and `case_id`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::config::{Config, Topics};
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

pub async fn replay(config: &Path, file: &Path) -> Result<()> {
    let config = Config::load(config)?;
    let mut sender = Sender::new(&config.kafka)?;
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?))
    };
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})").expect("a valid template"),
    );
    let mut case_topics = HashMap::new();
    for line in input.lines() {
        let line = line.context("reading the input file")?;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let (topic, key) = route(&config.topics, &line, &mut case_topics);
        sender.send(topic, key.as_deref().map(str::as_bytes), line.as_bytes()).await?;
        if sender.sent() % 10_000 == 0 {
            progress.set_message(format!("{} events", sender.sent()));
        }
    }
    let sent = sender.finish().await?;
    progress.finish_with_message(format!("{sent} events sent"));
    Ok(())
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
