//! The commands behind the CLI. Each is a thin shell over the pipeline and the core.

pub mod demo;
pub mod diff;
pub mod recount;
pub mod replay;
pub mod report;
pub mod rescale;
pub mod rules;
pub mod run;
pub mod snapshot;
pub mod take_over;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logging to stderr, as text or JSON lines, at `info` unless `RUST_LOG` says otherwise;
/// without `kafka_lines`, the Kafka client's own lines are left out.
pub fn init_logging(json: bool, kafka_lines: bool) {
    let default = if kafka_lines { "info" } else { "info,librdkafka=off" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// A duration flag such as `10s` or `2m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::config::duration(s, "the duration").map_err(|e| format!("{e:#}"))
}

/// A line in the JSON log's shape, written whatever `RUST_LOG` filters: the lines a command
/// must always say (its fatal error, `replay`'s summary).
pub fn json_line(level: &str, message: &str, fields: serde_json::Value) {
    let mut all = serde_json::json!({ "message": message });
    if let (Some(all), serde_json::Value::Object(more)) = (all.as_object_mut(), fields) {
        all.extend(more);
    }
    let line = serde_json::json!({
        "timestamp": jiff::Timestamp::now().to_string(),
        "level": level,
        "fields": all,
        "target": "hotline",
    });
    eprintln!("{line}");
}

/// Fails within `timeout` when no broker answers (`kafka::reach`): the first step of each
/// command that reads or sends and exits.
pub(crate) async fn reach(kafka: &crate::config::KafkaConfig, timeout: std::time::Duration) -> anyhow::Result<()> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || crate::kafka::reach(&kafka, timeout)).await?
}
