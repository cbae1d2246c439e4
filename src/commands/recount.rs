//! `hotline recount`: a bounded job that counts the input topics again, from a month on, under
//! the rules of a configuration, and writes every month's final snapshot as JSON files or to a
//! topic, never the live snapshots topic unless asked and no live pipeline runs.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::avro::SnapshotCodec;
use crate::config::{Config, Settings};
use crate::domain::month::Month;
use crate::domain::snapshot::Snapshot;
use crate::kafka::recount::{Job, Outcome, Reading};
use crate::kafka::sender::Sender;
use crate::kafka::topics::{self, TopicSpec};
use crate::rules::Rules;

pub struct Options {
    pub from: String,
    pub to: Option<String>,
    pub output: Option<PathBuf>,
    pub topic: Option<String>,
    /// Publish to the live snapshots topic: refused while the live pipeline's group has members.
    pub replace_live: bool,
    pub margin: String,
    pub threads: Option<usize>,
    pub partitions: Option<i32>,
    pub json_log: bool,
}

/// Where the snapshots go: files, or a topic with its producer and the snapshots' framing.
enum Sink {
    Files(PathBuf),
    Topic(String, Sender, Box<SnapshotCodec>),
}

pub async fn recount(config: &Path, options: Options) -> Result<()> {
    let settings = Config::load(config)?.settings()?;
    let month =
        |m: &str, flag: &str| m.parse::<Month>().with_context(|| format!("{flag} {m:?} is not a month (YYYY-MM)"));
    let from = month(&options.from, "--from")?;
    let to = options.to.as_deref().map(|m| month(m, "--to")).transpose()?;
    if to.is_some_and(|to| to < from) {
        bail!("--to {} is before --from {from}", options.to.unwrap_or_default());
    }
    if options.output.is_some() == options.topic.is_some() {
        bail!("give either --output DIR (JSON files) or --topic TOPIC");
    }
    let live = options.topic.as_ref() == Some(&settings.topics.snapshots);
    if live && !options.replace_live {
        bail!(
            "{} is the live pipeline's snapshots topic: a recount writes there only with --replace-live, and only \
             while no `hotline run` of group {} is running",
            settings.topics.snapshots,
            settings.kafka.group_id
        );
    }
    if live {
        refuse_while_running(&settings).await?;
        crate::kafka::pipeline::refuse_another_owner(&settings).await?;
    }
    let mut sink = match (options.output, options.topic) {
        (Some(dir), _) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Sink::Files(dir)
        }
        (None, Some(topic)) => {
            let spec = TopicSpec {
                name: &topic,
                partitions: settings.kafka.partitions,
                compacted: true,
                max_message_bytes: None,
            };
            topics::ensure(&settings.kafka, &[spec]).await?;
            let codec = SnapshotCodec::new(crate::commands::run::framing(&settings).await?);
            Sink::Topic(topic, Sender::new(&settings.kafka)?, Box::new(codec))
        }
        (None, None) => unreachable!("checked above"),
    };
    let margin = crate::config::duration(&options.margin, "--margin")?;
    let threads = options.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let job = Job {
        settings: settings.clone(),
        from,
        to,
        margin,
        counting_partitions: options.partitions,
        continue_revisions_of: live.then(|| settings.topics.snapshots.clone()),
        threads,
        stall_timeout: Duration::from_secs(60),
    };
    let fingerprint = Rules::of_settings(&settings).fingerprint;
    tracing::info!(from = %from, to = to.map(|m| m.to_string()), rules = %fingerprint, "recounting the input topics");

    // The job runs on its own threads; snapshots come back here to be written.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Snapshot>();
    let json_log = options.json_log;
    let counting = tokio::task::spawn_blocking(move || {
        let mut shown = Shown::new(json_log);
        let outcome = crate::kafka::recount::recount(
            &job,
            |_, snapshot| {
                let _ = tx.send(snapshot.clone());
                Ok(())
            },
            |reading| shown.update(reading),
        );
        shown.finish();
        outcome
    });
    let mut written = BTreeMap::new();
    while let Some(snapshot) = rx.recv().await {
        let key = snapshot.key();
        match &mut sink {
            Sink::Files(dir) => write_file(&dir.join(format!("{key}.json")), &snapshot.to_json())?,
            Sink::Topic(topic, sender, codec) => {
                sender.send(topic, Some(key.as_bytes()), &codec.encode(&snapshot)?).await?
            }
        }
        written.insert(key, (snapshot.revision, snapshot.status.code()));
    }
    let outcome = counting.await??;
    let summary = summary(&outcome, from, to, &fingerprint, &written);
    match sink {
        Sink::Topic(_, sender, _) => {
            sender.finish().await?;
        }
        Sink::Files(dir) => write_file(&dir.join("recount.json"), &serde_json::to_string_pretty(&summary)?)?,
    }
    if options.json_log {
        tracing::info!(summary = %summary, "recount done");
    } else {
        print!("{}", table(&outcome, &written));
    }
    Ok(())
}

/// Publishing to the live snapshots topic while the live pipeline runs would interleave two
/// publishers' revisions: refused while its group has members.
async fn refuse_while_running(settings: &Settings) -> Result<()> {
    let members = crate::kafka::topics::members(&settings.kafka, &settings.kafka.group_id).await?;
    if members > 0 {
        bail!(
            "the live pipeline (group {}) has {members} running member(s): stop every `hotline run` before a recount \
             replaces its snapshots",
            settings.kafka.group_id
        );
    }
    Ok(())
}

/// Written whole or not at all.
fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

fn summary(
    outcome: &Outcome,
    from: Month,
    to: Option<Month>,
    fingerprint: &str,
    written: &BTreeMap<String, (u64, &'static str)>,
) -> serde_json::Value {
    json!({
        "from": from.to_string(),
        "to": to.map(|m| m.to_string()),
        "rules_fingerprint": fingerprint,
        "messages": outcome.messages,
        "input_partitions": outcome.input_partitions,
        "counting_partitions": outcome.counting_partitions,
        "seconds": outcome.elapsed.as_secs_f64(),
        "first_snapshot_seconds": outcome.first_snapshot.map(|d| d.as_secs_f64()),
        "cases_held": outcome.cases_held,
        "peak_rss_bytes": peak_rss_bytes(),
        "dead_letters": outcome.dead_letters,
        "before_from": outcome.before_from,
        "created_unread": outcome.created_unread,
        "snapshots": written.iter().map(|(k, (revision, status))| json!({"key": k, "revision": revision, "status": status})).collect::<Vec<_>>(),
    })
}

/// This process's peak resident memory (`VmHWM`), where Linux tells it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse::<u64>();
    kb.ok().map(|kb| kb * 1024)
}

/// The end of a recount, for a person: the snapshots written and the dead letters by reason.
fn table(outcome: &Outcome, written: &BTreeMap<String, (u64, &'static str)>) -> String {
    let secs = outcome.elapsed.as_secs_f64();
    let mut out = format!(
        "{} messages in {:.1} s ({:.0}/s), {} input partitions, {} counting partitions\n\n| snapshot | revision | status |\n|---|---:|---|\n",
        outcome.messages,
        secs,
        outcome.messages as f64 / secs.max(1e-9),
        outcome.input_partitions,
        outcome.counting_partitions
    );
    for (key, (revision, status)) in written {
        out += &format!("| {key} | {revision} | {status} |\n");
    }
    out += "\n| dead letters, by reason (not written) | messages |\n|---|---:|\n";
    for (reason, n) in &outcome.dead_letters {
        out += &format!("| {reason} | {n} |\n");
    }
    if outcome.dead_letters.is_empty() {
        out += "| (none) | 0 |\n";
    }
    if outcome.created_unread > 0 {
        out += &format!(
            "\n{} events of cases whose created was not read (before the first month read, or never) were not \
             counted.\n",
            outcome.created_unread
        );
    }
    if outcome.before_from > 0 {
        out += &format!(
            "\n{} events of months before the first were read (the margin) and not counted.\n",
            outcome.before_from
        );
    }
    out
}

/// How far the reading has got: a bar on a terminal, a line every 10 s otherwise, and JSON
/// every 2 s with `--log-format json`.
struct Shown {
    bar: Option<ProgressBar>,
    json: bool,
    last: Option<Duration>,
}

impl Shown {
    fn new(json: bool) -> Shown {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            ProgressBar::new(0).with_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} messages, {per_sec}, ETA {eta}")
                    .expect("a valid template"),
            )
        });
        Shown { bar, json, last: None }
    }

    fn update(&mut self, r: Reading) {
        if let Some(bar) = &self.bar {
            bar.set_length(r.total);
            bar.set_position(r.read);
            return;
        }
        let every = if self.json { Duration::from_secs(2) } else { Duration::from_secs(10) };
        if self.last.is_some_and(|last| r.elapsed < last + every) {
            return;
        }
        self.last = Some(r.elapsed);
        let rate = r.read as f64 / r.elapsed.as_secs_f64().max(1e-3);
        let eta = r.total.saturating_sub(r.read) as f64 / rate.max(1.0);
        tracing::info!(read = r.read, total = r.total, events_per_s = rate.round(), eta_s = eta.round(), "recounting");
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
