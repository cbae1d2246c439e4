//! Configuration: a TOML file (see `config/hotline.toml`), each key overridable by an
//! environment variable `HOTLINE_<SECTION>__<KEY>`, e.g. `HOTLINE_KAFKA__BROKERS`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use jiff::tz::TimeZone;
use jiff::{Span, SpanRelativeTo};
use serde::Deserialize;

use crate::labels::LabelRegistry;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: Topics,
    #[serde(default)]
    pub time: TimeConfig,
    #[serde(default)]
    pub sla: SlaConfig,
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub labels: LabelsConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelsConfig {
    /// The departments and categories allowed as metric labels; the built-in
    /// `config/registry.toml` when unset.
    pub registry: Option<std::path::PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Months held before the watermark's month; older cases are evicted (tombstoned in the
    /// changelog) and late events for them are dead-lettered.
    pub retention_months: u32,
}

impl Default for StateConfig {
    fn default() -> StateConfig {
        StateConfig { retention_months: 13 }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Static group membership (`group.instance.id`): a restarted instance takes its place back
    /// at once instead of waiting for the session timeout. One distinct id per instance.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Partitions for the topics `hotline` creates when they are missing.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client (security settings, for example).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    pub cases: String,
    pub letters: String,
    pub boards: String,
    pub snapshots: String,
    pub dead_letters: String,
    /// Compacted topic holding every case record, from which state is rebuilt. As many
    /// partitions as `case_events`: partition p holds the cases counted by partition p.
    pub changelog: String,
    /// Internal: valid events without personal data, keyed and partitioned by case id.
    pub case_events: String,
    /// Internal, compacted, one partition: each counting partition's monthly tallies and
    /// watermark, which the publisher adds up.
    pub partials: String,
}

impl Default for Topics {
    fn default() -> Topics {
        Topics {
            cases: "hotline.cases".into(),
            letters: "hotline.letters".into(),
            boards: "hotline.boards".into(),
            snapshots: "hotline.snapshots".into(),
            dead_letters: "hotline.dead_letters".into(),
            changelog: "hotline.case_state".into(),
            case_events: "hotline.case_events".into(),
            partials: "hotline.partials".into(),
        }
    }
}

impl Topics {
    pub fn inputs(&self) -> [&str; 3] {
        [&self.cases, &self.letters, &self.boards]
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    pub zone: String,
    /// How far past the wall clock an event's `occurred_at` may be before it is rejected.
    pub max_future: String,
}

impl Default for TimeConfig {
    fn default() -> TimeConfig {
        TimeConfig { zone: "Asia/Shanghai".into(), max_future: "1d".into() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    pub default: String,
}

impl Default for SlaConfig {
    fn default() -> SlaConfig {
        SlaConfig { default: "15d".into() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    pub grace: String,
    pub min_interval: String,
    /// A partition with no new event for this long stops holding the watermark back.
    pub idle_partition: String,
    /// When set, snapshots use the Confluent wire format with the id this registry assigns.
    pub schema_registry_url: Option<String>,
}

impl Default for SnapshotConfig {
    fn default() -> SnapshotConfig {
        SnapshotConfig {
            grace: "1d".into(),
            min_interval: "10s".into(),
            idle_partition: "30s".into(),
            schema_registry_url: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig { listen: "127.0.0.1:9464".into() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_bytes: usize,
    /// Longest time between transaction commits while events flow.
    pub commit_interval: String,
    /// Most input messages in one transaction.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_message_bytes: 1024 * 1024, commit_interval: "200ms".into(), max_batch: 5000 }
    }
}

fn default_group_id() -> String {
    "hotline".into()
}
fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    1
}

/// Configuration with its durations and zone parsed and checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: Config,
    pub zone: TimeZone,
    pub max_future: Duration,
    pub default_sla: Span,
    pub grace: Span,
    pub min_interval: Duration,
    pub idle_partition: Duration,
    pub commit_interval: Duration,
    pub listen: SocketAddr,
    pub labels: LabelRegistry,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Config::parse(&text, std::env::vars())
    }

    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let mut table: toml::Table = text.parse().context("the configuration is not valid TOML")?;
        for (name, value) in env {
            let Some(path) = name.strip_prefix("HOTLINE_") else { continue };
            if path == "CONFIG" || !path.contains("__") {
                continue;
            }
            let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
            set(&mut table, &keys, &value).with_context(|| format!("applying {name}"))?;
        }
        table.try_into().context("the configuration does not match the expected keys")
    }

    pub fn settings(self) -> Result<Settings> {
        let zone = TimeZone::get(&self.time.zone)
            .with_context(|| format!("time.zone {:?} is not an IANA time zone", self.time.zone))?;
        let listen = self
            .http
            .listen
            .parse()
            .with_context(|| format!("http.listen {:?} is not an address:port", self.http.listen))?;
        if self.kafka.partitions < 1 {
            bail!("kafka.partitions must be at least 1");
        }
        let labels = match &self.labels.registry {
            Some(path) => LabelRegistry::load(path)?,
            None => LabelRegistry::default(),
        };
        Ok(Settings {
            labels,
            max_future: wall(&self.time.max_future, "time.max_future")?,
            default_sla: span(&self.sla.default, "sla.default")?,
            grace: span(&self.snapshot.grace, "snapshot.grace")?,
            min_interval: wall(&self.snapshot.min_interval, "snapshot.min_interval")?,
            idle_partition: wall(&self.snapshot.idle_partition, "snapshot.idle_partition")?,
            commit_interval: wall(&self.limits.commit_interval, "limits.commit_interval")?,
            zone,
            listen,
            config: self,
        })
    }
}

/// Sets a dotted key from an environment variable; the value is read as a TOML value
/// (number, boolean) when it is one, else as a string.
fn set(table: &mut toml::Table, keys: &[String], value: &str) -> Result<()> {
    let (last, parents) = keys.split_last().expect("split always yields a key");
    let mut t = table;
    for k in parents {
        t = t
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .with_context(|| format!("{k} is not a section"))?;
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_str() && !v.is_table() && !v.is_array())
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    t.insert(last.clone(), parsed);
    Ok(())
}

fn span(s: &str, key: &str) -> Result<Span> {
    let span: Span = s.parse().with_context(|| format!("{key} {s:?} is not a duration such as 15d, 36h or 90s"))?;
    if span.is_negative() {
        bail!("{key} must not be negative");
    }
    Ok(span)
}

fn wall(s: &str, key: &str) -> Result<Duration> {
    let d = span(s, key)?.to_duration(SpanRelativeTo::days_are_24_hours())?;
    Ok(d.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../config/hotline.toml");
        let settings = Config::parse(text, []).unwrap().settings().unwrap();
        assert_eq!(settings.config.topics.cases, "hotline.cases");
        assert_eq!(settings.min_interval, Duration::from_secs(10));
    }

    #[test]
    fn environment_variables_override_keys() {
        let env = [
            ("HOTLINE_KAFKA__BROKERS".to_owned(), "10.0.0.1:9092".to_owned()),
            ("HOTLINE_LIMITS__MAX_BATCH".to_owned(), "7".to_owned()),
            ("HOTLINE_TOPICS__CASES".to_owned(), "city.cases".to_owned()),
            ("HOTLINE_SNAPSHOT__SCHEMA_REGISTRY_URL".to_owned(), "http://127.0.0.1:8081".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = Config::parse("[kafka]\nbrokers = \"a:1\"\n", env).unwrap();
        assert_eq!(c.kafka.brokers, "10.0.0.1:9092");
        assert_eq!(c.limits.max_batch, 7);
        assert_eq!(c.topics.cases, "city.cases");
        assert_eq!(c.snapshot.schema_registry_url.as_deref(), Some("http://127.0.0.1:8081"));
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::parse("[kafka]\nbrokers = \"a:1\"\n[time]\nzone = \"Mars/Olympus\"\n", [])
            .unwrap()
            .settings()
            .unwrap_err();
        assert!(err.to_string().contains("time.zone"), "{err}");
        let err = Config::parse("[kafka]\nbrokers = \"a:1\"\n[sla]\ndefault = \"soon\"\n", [])
            .unwrap()
            .settings()
            .unwrap_err();
        assert!(err.to_string().contains("sla.default"), "{err}");
        assert!(Config::parse("[kafka]\nbrokers = \"a:1\"\nbrokerz = 1\n", []).is_err());
    }
}
