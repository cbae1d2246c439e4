//! `hotline diff A B`: two snapshots of one month side by side, each a JSON file (as
//! `hotline snapshot show --format json` prints one) or `live`, the latest revision on the
//! snapshots topic.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use crate::config::Config;
use crate::domain::month::Month;
use crate::domain::snapshot::Snapshot;
use crate::report::diff::Diff;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Markdown,
    Json,
}

pub struct Options {
    pub a: String,
    pub b: String,
    /// The month of a `live` side.
    pub month: Option<String>,
    pub city: Option<String>,
    pub province: bool,
    pub format: Format,
    /// How long to wait for a Kafka broker to answer.
    pub timeout: Duration,
}

pub async fn diff(config: &Path, options: Options) -> Result<()> {
    let settings = Config::load(config)?.settings()?;
    let (shown, scope) = super::snapshot::scope_of(&settings, options.city.as_deref(), options.province)?;
    let month: Option<Month> =
        options.month.as_deref().map(|m| m.parse().with_context(|| format!("--month {m:?}"))).transpose()?;
    let mut sides = Vec::new();
    for source in [&options.a, &options.b] {
        let snapshot = if source == "live" {
            let Some(month) = month else { bail!("a `live` side needs --month") };
            super::reach(&settings.kafka, options.timeout).await?;
            let (kafka, topic) = (settings.kafka.clone(), settings.topics.snapshots.clone());
            let latest = tokio::task::spawn_blocking(move || super::snapshot::latest_in(&kafka, &topic, scope, month));
            latest.await??.with_context(|| format!("no snapshot of {month} on {}", settings.topics.snapshots))?
        } else {
            let text = std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?;
            serde_json::from_str::<Snapshot>(&text).with_context(|| format!("{source} is not a snapshot's JSON"))?
        };
        sides.push(snapshot);
    }
    if sides[0].month != sides[1].month {
        bail!("{} is of {} and {} of {}: compare one month", options.a, sides[0].month, options.b, sides[1].month);
    }
    let registry = settings.cities.iter().find(|c| Some(c.code) == shown).map_or(&settings.labels, |c| &c.labels);
    let diff = Diff::new((&options.a, &sides[0]), (&options.b, &sides[1]), registry);
    match options.format {
        Format::Markdown => print!("{}", diff.markdown()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&diff)?),
    }
    Ok(())
}
