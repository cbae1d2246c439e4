//! `hotline take-over`: hands a deployment's internal topics, and where it stopped, to this
//! configuration's consumer group on purpose (`kafka::pipeline::take_over`), once every
//! instance of the owning group has stopped.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::config::Config;
use crate::kafka::pipeline;

pub async fn take_over(config: &Path, timeout: Duration) -> Result<()> {
    let settings = Config::load(config)?.settings()?;
    super::reach(&settings.kafka, timeout).await?;
    let group = &settings.kafka.group_id;
    match pipeline::take_over(&settings).await? {
        Some(previous) => eprintln!(
            "the internal topics now belong to group {group}, which goes on where group {previous} stopped: start \
             its `hotline run`s"
        ),
        None => eprintln!("the internal topics belong to group {group}"),
    }
    Ok(())
}
