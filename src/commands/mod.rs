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

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logs go to stderr, as text or JSON; `RUST_LOG` filters them (default `info`).
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
