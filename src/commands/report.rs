//! `hotline report`: the office's monthly report, from the latest revision of the month on
//! the snapshots topic (and the month before's, for comparison); with `--province`, the
//! provincial bulletin from the province's snapshots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use jiff::civil::Date;

use crate::config::Config;

use crate::domain::month::Month;
use crate::report::Report;
use crate::report::bulletin::Bulletin;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Markdown,
    Html,
    Json,
}

pub struct Options {
    pub month: String,
    /// A city's division code: its report, under its registry's names and its office.
    pub city: Option<String>,
    /// The provincial bulletin instead of a city's report.
    pub province: bool,
    pub format: Format,
    pub output: Option<PathBuf>,
    pub notes: Option<PathBuf>,
    pub date: Option<String>,
    /// How long to wait for a Kafka broker to answer.
    pub timeout: Duration,
}

pub async fn report(config: &Path, options: Options) -> Result<()> {
    let settings = Config::load(config)?.settings()?;
    let (shown, scope) = super::snapshot::scope_of(&settings, options.city.as_deref(), options.province)?;
    let mut labels = settings.labels.clone();
    if let Some(c) = settings.cities.iter().find(|c| Some(c.code) == shown) {
        labels = c.labels.clone();
        if let Some(office) = &c.office {
            labels.report.office = office.clone();
        }
    }
    let month: Month = options.month.parse().with_context(|| format!("--month {:?}", options.month))?;
    let date: Option<Date> = options
        .date
        .as_deref()
        .map(|d| d.parse().with_context(|| format!("--date {d:?} is not YYYY-MM-DD")))
        .transpose()?;
    let notes = options
        .notes
        .as_deref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading the notes {}", p.display())))
        .transpose()?;
    for unused in notes.as_deref().map(crate::report::unused_notes).unwrap_or_default() {
        tracing::warn!(
            section = %unused,
            "a part of --notes fills no section of the report: a `## ` heading must name 突出, 意见 or 建议, or 解决"
        );
    }
    super::reach(&settings.kafka, options.timeout).await?;
    let (kafka, topic) = (settings.kafka.clone(), settings.topics.snapshots.clone());
    let months = [month, month.previous()];
    let mut latest =
        tokio::task::spawn_blocking(move || super::snapshot::latest_of(&kafka, &topic, scope, &months)).await??;
    let previous = latest.remove(&month.previous());
    let Some(snapshot) = latest.remove(&month) else {
        bail!("no snapshot of {month} has been published to {}", settings.topics.snapshots);
    };
    let text = match &settings.province {
        Some(province) if options.province => {
            let bulletin = Bulletin::new(&snapshot, previous.as_ref(), &province.name, &province.office, date);
            match options.format {
                Format::Markdown => bulletin.markdown(),
                Format::Html => bulletin.html(),
                Format::Json => serde_json::to_string_pretty(&bulletin).expect("a bulletin serializes") + "\n",
            }
        }
        _ => {
            let report = Report::new(&snapshot, previous.as_ref(), &labels, date, notes.as_deref());
            match options.format {
                Format::Markdown => report.markdown(),
                Format::Html => report.html(),
                Format::Json => serde_json::to_string_pretty(&report).expect("a report serializes") + "\n",
            }
        }
    };
    match &options.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
