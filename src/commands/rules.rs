//! `hotline rules`: the counting rules a configuration counts by, in their canonical form, and
//! their fingerprint, as every snapshot counted by them names it, so an office can record which
//! rules it adopted.

use std::path::Path;

use anyhow::Result;

use crate::config::Config;
use crate::rules::{BUILD, Rules};

pub fn rules(config: &Path) -> Result<()> {
    let settings = Config::load(config)?.settings()?;
    let mut out = serde_json::Map::new();
    for (city, rules) in Rules::of_cities(&settings) {
        let name = if settings.province.is_some() { city.code.to_string() } else { "city".to_owned() };
        out.insert(name, serde_json::json!({"fingerprint": rules.fingerprint, "rules": rules.canonical}));
    }
    if settings.province.is_some() {
        out.insert("province".into(), serde_json::json!({"fingerprint": Rules::of_province(&settings).fingerprint}));
    }
    out.insert("build".into(), BUILD.into());
    let text = serde_json::to_string_pretty(&out)? + "\n";
    // A reader that stops early (`| head`) is not an error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
