//! Registers the snapshot schema with a Confluent-compatible schema registry, for the
//! Confluent wire format.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

/// Registers `schema` under `subject` and returns its id (the registry returns the existing
/// id when the schema is already registered).
pub async fn register(url: &str, subject: &str, schema: &str) -> Result<u32> {
    let endpoint = format!("{}/subjects/{subject}/versions", url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&endpoint)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema }))
        .send()
        .await
        .with_context(|| format!("registering the snapshot schema at {endpoint}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("the schema registry at {endpoint} answered {status}");
    }
    Ok(response.json::<Registered>().await.context("the schema registry's answer has no id")?.id)
}
