//! `hotline rescale --partitions N`: grows the counting partitions of a stopped deployment
//! (`kafka::pipeline::rescale`).

use std::path::Path;

use anyhow::Result;

use crate::config::Config;
use crate::kafka::pipeline;
use crate::telemetry::Telemetry;

pub async fn rescale(config: &Path, partitions: i32) -> Result<()> {
    let settings = Config::load(config)?.settings()?;
    crate::kafka::check_access(&settings.kafka).await?;
    pipeline::refuse_another_owner(&settings).await?;
    let case_events = settings.topics.case_events.clone();
    let done = pipeline::rescale(settings, Telemetry::default(), partitions).await?;
    if done.from == done.to {
        println!("{case_events} already has {} counting partitions: nothing to do", done.to);
    } else {
        println!(
            "{case_events}: {} -> {} counting partitions; {} cases held, {} moved; {} routed events counted first",
            done.from, done.to, done.cases, done.moved, done.drained
        );
    }
    Ok(())
}
