//! `hotline`: counts 12345 government-service hotline cases from Kafka into monthly figures.
//! See ARCHITECTURE.md for how an event travels through the modules.

pub mod avro;
pub mod commands;
pub mod config;
pub mod domain;
pub mod generator;
pub mod http;
pub mod kafka;
pub mod labels;
pub mod records;
pub mod report;
pub mod rules;
pub mod schema_registry;
pub mod telemetry;

/// A name no other process will pick: `prefix` and 64 random bits.
pub fn random_id(prefix: &str) -> String {
    use rand::RngExt;
    format!("{prefix}-{:016x}", rand::rng().random::<u64>())
}
