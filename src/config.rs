//! Configuration: a TOML file (see `config/hotline.toml`), each key overridable by an
//! environment variable `HOTLINE_<SECTION>__<KEY>`, e.g. `HOTLINE_KAFKA__BROKERS`.
//!
//! Secrets (the Kafka password) come from a file or the environment only, never from the
//! configuration file or the command line, and are never printed: see [`Secret`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use jiff::tz::TimeZone;
use jiff::{Span, SpanRelativeTo};
use serde::{Deserialize, Deserializer};

use crate::domain::calendar::WorkCalendar;
use crate::domain::case::{CountingRules, WorkingDays};
use crate::domain::event::{RequestKind, from_code};
use crate::domain::overflow::Overflow;
use crate::domain::province::{Cities, CityCode, CityRules};
use crate::domain::ranking::RankingRules;
use crate::labels::LabelRegistry;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    /// The city this deployment counts (single-city mode).
    #[serde(default)]
    pub city: CityConfig,
    /// Province mode: the province whose cities `[cities]` lists.
    #[serde(default)]
    pub province: Option<ProvinceConfig>,
    /// Province mode: each city counted, by its division code.
    #[serde(default)]
    pub cities: BTreeMap<String, CityEntry>,
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
    /// The red and black lists of departments each snapshot carries.
    #[serde(default)]
    pub ranking: RankingRules,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityConfig {
    /// Its administrative division code (GB/T 2260): events naming it are counted with those
    /// naming none, and events naming another city are dead letters (`unknown_city`).
    pub code: Option<CityCode>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvinceConfig {
    /// As the bulletin names it (吉林省).
    pub name: String,
    /// The office that publishes the provincial bulletin.
    pub office: String,
    /// The city events without `city` belong to; without it, every event must name its city.
    pub default_city: Option<CityCode>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityEntry {
    /// As reports name it (四平市).
    pub name: String,
    /// The office in its report's header; its registry's `[report] office` when unset.
    pub office: Option<String>,
    /// Its departments and categories; `labels.registry` (or the built-in one) when unset.
    pub registry: Option<PathBuf>,
    /// Its own deadlines; the top-level `[sla]` when unset. The calendar stays national.
    pub sla: Option<SlaConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelsConfig {
    /// The departments and categories allowed as metric labels; the built-in
    /// `config/registry.toml` when unset.
    pub registry: Option<std::path::PathBuf>,
    /// Codes outside the registry that a month keeps as rows of their own, of each kind; the
    /// others are counted together under `unregistered` (`domain::overflow`).
    pub unregistered_rows: usize,
}

impl Default for LabelsConfig {
    fn default() -> LabelsConfig {
        LabelsConfig { registry: None, unregistered_rows: 1000 }
    }
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
    /// The consumer group's session timeout: how long the group waits for a silent instance
    /// before moving its partitions. Long enough to outlast a broker restart (45 s by default,
    /// as Kafka's own consumers), at the price of a crashed instance's partitions moving later.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: String,
    /// How often each instance tells the group it is alive; well under `session_timeout`.
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: String,
    /// TLS and SASL: `[kafka.security]`.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka properties for every client. Not for what `[kafka.security]` sets, and
    /// never a password.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// How the clients connect and log in: `security.protocol`, SASL and TLS for librdkafka.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    pub protocol: Protocol,
    /// SASL mechanism, with `SASL_SSL` or `SASL_PLAINTEXT`.
    pub mechanism: Option<Mechanism>,
    pub username: Option<String>,
    /// A file holding the password (one trailing line break is ignored): a mounted secret.
    pub password_file: Option<PathBuf>,
    /// The password: from the environment variable `HOTLINE_KAFKA__SECURITY__PASSWORD` only,
    /// or, once parsed, read from `password_file`.
    pub password: Option<Secret>,
    /// PEM file of the certificate authorities to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Whether the broker's certificate must name the host (or IP address) connected to.
    pub verify_hostname: bool,
}

impl Default for KafkaSecurity {
    fn default() -> KafkaSecurity {
        KafkaSecurity {
            protocol: Protocol::Plaintext,
            mechanism: None,
            username: None,
            password_file: None,
            password: None,
            ca_file: None,
            verify_hostname: true,
        }
    }
}

/// librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Protocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    pub(crate) fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// The SASL mechanisms `hotline` supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "PLAIN")]
    Plain,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::Plain => "PLAIN",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password. `Debug` prints `<redacted>`; nothing else prints it, and errors about it never
/// quote it. [`Secret::expose`] hands it to the Kafka client.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the Kafka client's configuration only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        // Serde's own type errors quote the value they got: this visitor never does.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string"))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string"))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The environment variable that may hold the Kafka password.
pub const PASSWORD_VARIABLE: &str = "HOTLINE_KAFKA__SECURITY__PASSWORD";

/// librdkafka properties that carry secrets: refused in `kafka.properties`.
const SECRET_PROPERTIES: &[&str] =
    &["sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem", "sasl.oauthbearer.client.secret"];

/// librdkafka properties that `hotline` sets itself, because counting exactly depends on them
/// or because a key of its own says it: refused in `kafka.properties`, with why. Every other
/// property there wins over `hotline`'s defaults (`linger.ms`, `compression.type`, ...).
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set kafka.brokers"),
    ("metadata.broker.list", "set kafka.brokers"),
    ("group.id", "set kafka.group_id"),
    ("group.instance.id", "set kafka.instance_id"),
    ("transactional.id", "it is \"<kafka.group_id>-<kafka.instance_id>\", so that a restart fences its predecessor"),
    (
        "session.timeout.ms",
        "set kafka.session_timeout, which hotline also reads to tell its own fencing from a duplicate",
    ),
    ("heartbeat.interval.ms", "set kafka.heartbeat_interval"),
    ("enable.auto.commit", "offsets are committed in the transaction of what they produced"),
    ("enable.auto.offset.store", "offsets are committed in the transaction of what they produced"),
    ("isolation.level", "read_committed keeps aborted transactions out of the counts"),
    ("auto.offset.reset", "a partition with no committed offset is read from its start, or cases would be missed"),
    ("enable.partition.eof", "restores need to see each partition's end"),
    ("enable.idempotence", "transactions need it"),
    ("statistics.interval.ms", "an input partition is only told idle from fresh statistics"),
];

/// librdkafka properties `[kafka.security]` sets: refused in `kafka.properties`.
const SECURITY_PROPERTIES: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "ssl.ca.location",
    "ssl.endpoint.identification.algorithm",
];

impl KafkaSecurity {
    /// Checks that the keys fit together and reads the password file.
    fn resolve(&mut self) -> Result<()> {
        if self.protocol.sasl() {
            let Some(mechanism) = self.mechanism else {
                bail!("kafka.security.protocol {} needs kafka.security.mechanism", self.protocol.as_str());
            };
            if self.username.as_deref().is_none_or(str::is_empty) {
                bail!("kafka.security.mechanism {mechanism} needs kafka.security.username");
            }
            match (&self.password_file, &self.password) {
                (Some(_), Some(_)) => bail!(
                    "the Kafka password is given twice, in kafka.security.password_file and in {PASSWORD_VARIABLE}: \
                     keep one"
                ),
                (None, None) => bail!(
                    "kafka.security.mechanism {mechanism} needs a password: name a file holding it in \
                     kafka.security.password_file, or set {PASSWORD_VARIABLE}"
                ),
                (Some(file), None) => {
                    let text = std::fs::read_to_string(file).with_context(|| {
                        format!("reading the Kafka password from kafka.security.password_file {}", file.display())
                    })?;
                    let password = text.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&text);
                    if password.is_empty() {
                        bail!("kafka.security.password_file {} is empty", file.display());
                    }
                    self.password = Some(Secret::new(password));
                }
                (None, Some(p)) if p.expose().is_empty() => bail!("{PASSWORD_VARIABLE} is empty"),
                (None, Some(_)) => {}
            }
        } else {
            let sasl_keys = [
                ("mechanism", self.mechanism.is_some()),
                ("username", self.username.is_some()),
                ("password_file", self.password_file.is_some()),
                ("password", self.password.is_some()),
            ];
            if let Some((key, _)) = sasl_keys.iter().find(|(_, set)| *set) {
                bail!(
                    "kafka.security.{key} is set but kafka.security.protocol is {}: SASL needs SASL_SSL (or \
                     SASL_PLAINTEXT)",
                    self.protocol.as_str()
                );
            }
        }
        if let Some(ca) = &self.ca_file {
            if !self.protocol.tls() {
                bail!(
                    "kafka.security.ca_file is set but kafka.security.protocol {} uses no TLS",
                    self.protocol.as_str()
                );
            }
            std::fs::metadata(ca).with_context(|| format!("kafka.security.ca_file {}", ca.display()))?;
        }
        Ok(())
    }
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
    /// Deadline after an assignment without `due_at`, in calendar time, for request kinds
    /// `working_days` does not list.
    pub default: String,
    /// Working days to answer an assignment without `due_at`, by request kind (`help`,
    /// `complaint`, `report`, `consultation`, `suggestion`). Empty: every deadline is `default`.
    pub working_days: BTreeMap<String, u16>,
    /// The working-day calendar; the one built in (`config/calendar.toml`) when unset.
    pub calendar: Option<PathBuf>,
    /// How long a department has to sign for an assignment (`accepted`), in calendar time.
    pub accept: String,
}

impl Default for SlaConfig {
    fn default() -> SlaConfig {
        SlaConfig { default: "15d".into(), working_days: BTreeMap::new(), calendar: None, accept: "2h".into() }
    }
}

impl SlaConfig {
    fn working_days(&self) -> Result<Option<WorkingDays>> {
        if self.working_days.is_empty() {
            return Ok(None);
        }
        let mut by_kind = [None; RequestKind::ALL.len()];
        for (kind, days) in &self.working_days {
            let k = from_code(&RequestKind::ALL, RequestKind::code, kind).with_context(|| {
                format!("sla.working_days: {kind:?} is not a request kind (help, complaint, report, consultation, suggestion)")
            })?;
            if !(1..=60).contains(days) {
                bail!("sla.working_days.{kind} = {days}: a deadline is 1 to 60 working days");
            }
            by_kind[k as usize] = Some(*days);
        }
        let calendar = match &self.calendar {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                WorkCalendar::parse(&text).with_context(|| format!("checking the calendar {}", path.display()))?
            }
            None => WorkCalendar::default(),
        };
        Ok(Some(WorkingDays { calendar: Arc::new(calendar), by_kind }))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    pub grace: String,
    pub min_interval: String,
    /// An input partition read to its end with no new event for this long stops holding the
    /// watermark back (until its next event).
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
    /// `/healthz` fails once the pipeline loop has made no progress (not even an empty poll)
    /// for this long, so that a supervisor restarts a wedged process.
    pub stalled_after: String,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig { listen: "127.0.0.1:9464".into(), stalled_after: "2m".into() }
    }
}

/// The pipeline consumer's `max.poll.interval.ms` unless `[kafka.properties]` sets it.
pub(crate) const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Shortest `http.stalled_after`: longer than the longest single call the loop makes (a
/// restore may read for up to a minute).
const MIN_STALLED_AFTER: Duration = Duration::from_secs(90);

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
        Limits { max_message_bytes: 1024 * 1024, commit_interval: "200ms".into(), max_batch: 50_000 }
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
fn default_session_timeout() -> String {
    "45s".into()
}
fn default_heartbeat_interval() -> String {
    "3s".into()
}

/// The configuration parsed and checked (durations, zone, registry, calendar), section by
/// section: each part of the pipeline is built from the few values it uses.
#[derive(Clone, Debug)]
pub struct Settings {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub limits: Limits,
    /// `state.retention_months`.
    pub retention_months: u32,
    /// The cities counted: one in single-city mode (`city.code`, maybe unnamed), each of
    /// `[cities]` in province mode.
    pub cities: Vec<CitySettings>,
    /// The city events without `city` belong to.
    pub default_city: Option<CityCode>,
    /// `[province]`, in province mode.
    pub province: Option<ProvinceConfig>,
    pub zone: TimeZone,
    /// `time.zone`: `zone`'s IANA name.
    pub zone_name: String,
    pub ranking: RankingRules,
    /// `snapshot.schema_registry_url`.
    pub schema_registry_url: Option<String>,
    /// `labels.unregistered_rows`.
    pub unregistered_rows: usize,
    /// `sla.calendar`: where the working-day calendar was read from, when not built in.
    pub calendar: Option<PathBuf>,
    pub max_future: Duration,
    pub default_sla: Span,
    /// Working-day deadlines, when `sla.working_days` lists any kind.
    pub working_days: Option<WorkingDays>,
    pub accept_within: Span,
    pub grace: Span,
    pub min_interval: Duration,
    pub idle_partition: Duration,
    pub commit_interval: Duration,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub listen: SocketAddr,
    /// `/healthz` fails once the pipeline loop has made no progress for this long.
    pub stalled_after: Duration,
    pub labels: LabelRegistry,
    /// The dead-letter topic's `max.message.bytes`, when known without asking the broker
    /// (the demo's mock cluster never answers DescribeConfigs).
    pub dead_letter_topic_limit: Option<usize>,
}

/// One city of the deployment, its registry and counting rules.
#[derive(Clone, Debug)]
pub struct CitySettings {
    pub code: CityCode,
    /// Its name, in province mode.
    pub name: Option<String>,
    /// The office in its report's header, when not its registry's.
    pub office: Option<String>,
    pub labels: LabelRegistry,
    pub rules: CountingRules,
}

impl Settings {
    /// The cities counted, each with its rules.
    pub(crate) fn cities(&self) -> Cities {
        let rules = |c: &CitySettings| CityRules {
            counting: c.rules.clone(),
            overflow: Overflow::new(Arc::new(c.labels.clone()), self.unregistered_rows),
        };
        match &self.province {
            None => Cities::single(self.default_city, rules(&self.cities[0])),
            Some(_) => Cities::province(
                self.zone.clone(),
                self.default_city,
                self.cities.iter().map(|c| (c.code, rules(c))).collect(),
            ),
        }
    }

    /// The working-day calendars in use: the top-level `[sla]`'s and each city's own.
    fn calendars(&self) -> impl Iterator<Item = &crate::domain::calendar::WorkCalendar> {
        self.working_days
            .iter()
            .chain(self.cities.iter().filter_map(|c| c.rules.working_days.as_ref()))
            .map(|w| &*w.calendar)
    }

    /// With working-day deadlines, the last year every calendar in use covers.
    pub fn calendar_last_year(&self) -> Option<i16> {
        self.calendars().filter_map(|c| c.years().max()).min()
    }

    /// With working-day deadlines, the years from the first month the retention holds on
    /// `today` to `today`'s, and in December the next, that a calendar in use lacks: deadlines
    /// that need them count by weekends alone, marked provisional, until they are added.
    pub fn calendar_gaps(&self, today: jiff::civil::Date) -> Vec<i16> {
        let first = today.first_of_month().checked_sub(jiff::Span::new().months(self.retention_months));
        let first = first.map_or(today.year(), |d| d.year());
        let last = if today.month() == 12 { today.year().saturating_add(1) } else { today.year() };
        let mut gaps: Vec<i16> =
            self.calendars().flat_map(|c| (first..=last).filter(|y| !c.years().any(|c| c == *y))).collect();
        gaps.sort_unstable();
        gaps.dedup();
        gaps
    }
}

impl Config {
    pub(crate) fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Config::parse_from(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses the configuration, applies the environment's overrides, checks the Kafka
    /// security keys and reads the password file.
    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        Config::parse_from(text, "the configuration", env)
    }

    /// `parse` of the text of `origin` (a file's path): an error names the file and line, or
    /// the environment variable, it comes from.
    fn parse_from(text: &str, origin: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let env: Vec<(String, String)> = env.into_iter().filter(|(name, _)| name.starts_with("HOTLINE_")).collect();
        Config::parse_table(text, &env).map_err(|combined| locate(text, origin, &env, combined))
    }

    fn parse_table(text: &str, env: &[(String, String)]) -> Result<Config> {
        let mut table: toml::Table = text.parse().context(Shape("the configuration is not valid TOML"))?;
        let security = table.get("kafka").and_then(|k| k.get("security"));
        if security.is_some_and(|s| s.get("password").is_some()) {
            bail!(
                "kafka.security.password must not be written in the configuration file: name a file holding it \
                 in kafka.security.password_file, or set {PASSWORD_VARIABLE}"
            );
        }
        for (name, value) in env {
            let Some(path) = name.strip_prefix("HOTLINE_") else { continue };
            if path == "CONFIG" || !path.contains("__") {
                continue;
            }
            let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
            // A password is taken as it is, never read as a number or a date.
            let raw = keys == ["kafka", "security", "password"];
            set(&mut table, &keys, value, raw).with_context(|| format!("applying {name}"))?;
        }
        let mut config: Config =
            table.try_into().context(Shape("the configuration does not match the expected keys"))?;
        let from_env = env.iter().any(|(name, _)| name == "HOTLINE_KAFKA__BROKERS");
        check_brokers(&config.kafka.brokers).map_err(|e| match from_env {
            true => anyhow!("the environment variable HOTLINE_KAFKA__BROKERS: {e:#}"),
            false => e,
        })?;
        config.kafka.security.resolve()?;
        for key in config.kafka.properties.keys() {
            if SECRET_PROPERTIES.contains(&key.as_str()) {
                bail!(
                    "kafka.properties must not hold {key:?}: secrets come from kafka.security.password_file or \
                     {PASSWORD_VARIABLE}"
                );
            }
            if SECURITY_PROPERTIES.contains(&key.as_str()) {
                bail!("kafka.properties must not set {key:?}: [kafka.security] does");
            }
            if let Some((_, why)) = OWNED_PROPERTIES.iter().find(|(owned, _)| owned == key) {
                bail!("kafka.properties must not set {key:?}: {why}");
            }
        }
        Ok(config)
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
        let session_timeout = duration(&self.kafka.session_timeout, "kafka.session_timeout")?;
        let heartbeat_interval = duration(&self.kafka.heartbeat_interval, "kafka.heartbeat_interval")?;
        if heartbeat_interval.is_zero() || heartbeat_interval * 2 > session_timeout {
            bail!(
                "kafka.heartbeat_interval ({}) must be above zero and at most half of kafka.session_timeout ({}), \
                 or one late heartbeat ends the session",
                self.kafka.heartbeat_interval,
                self.kafka.session_timeout
            );
        }
        let max_poll_interval = match self.kafka.properties.get("max.poll.interval.ms") {
            Some(ms) => Duration::from_millis(
                ms.parse().with_context(|| format!("kafka.properties max.poll.interval.ms {ms:?} is not a number"))?,
            ),
            None => DEFAULT_MAX_POLL_INTERVAL,
        };
        if session_timeout > max_poll_interval {
            bail!(
                "kafka.session_timeout ({}) must not exceed max.poll.interval.ms ({} ms): Kafka refuses such a consumer",
                self.kafka.session_timeout,
                max_poll_interval.as_millis()
            );
        }
        let stalled_after = duration(&self.http.stalled_after, "http.stalled_after")?;
        if stalled_after < MIN_STALLED_AFTER {
            bail!(
                "http.stalled_after ({}) must be at least {}s: one Kafka call may legitimately take that long",
                self.http.stalled_after,
                MIN_STALLED_AFTER.as_secs()
            );
        }
        let w = &self.ranking.weights;
        let weights = [w.on_time, w.satisfaction, w.sign_for, w.returns, w.reopens];
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0 {
            bail!("ranking.weights must be finite, not negative, and not all zero");
        }
        let labels = match &self.labels.registry {
            Some(path) => LabelRegistry::load(path)?,
            None => LabelRegistry::default(),
        };
        let counting = CountingRules {
            zone: zone.clone(),
            default_sla: span(&self.sla.default, "sla.default")?,
            working_days: self.sla.working_days()?,
            accept_within: span(&self.sla.accept, "sla.accept")?,
        };
        let (cities, default_city) = match (&self.province, self.cities.is_empty()) {
            (None, true) => {
                let city = self.city.code.unwrap_or(CityCode::UNNAMED);
                let only = CitySettings {
                    code: city,
                    name: None,
                    office: None,
                    labels: labels.clone(),
                    rules: counting.clone(),
                };
                (vec![only], Some(city))
            }
            (Some(province), false) => {
                if self.city.code.is_some() {
                    bail!("[city] is for a single city: with [cities], name the default city in province.default_city");
                }
                let mut cities = Vec::new();
                for (code, entry) in &self.cities {
                    let at = format!("cities.{code}");
                    let code: CityCode = code.parse().with_context(|| format!("[{at}]: {code:?}"))?;
                    let labels = match entry.registry.as_ref().or(self.labels.registry.as_ref()) {
                        Some(path) => LabelRegistry::load(path).with_context(|| format!("{at}.registry"))?,
                        None => LabelRegistry::default(),
                    };
                    let rules = match &entry.sla {
                        None => counting.clone(),
                        Some(sla) => CountingRules {
                            zone: zone.clone(),
                            default_sla: span(&sla.default, &format!("{at}.sla.default"))?,
                            working_days: sla.working_days().with_context(|| format!("{at}.sla"))?,
                            accept_within: span(&sla.accept, &format!("{at}.sla.accept"))?,
                        },
                    };
                    let (name, office) = (Some(entry.name.clone()), entry.office.clone());
                    cities.push(CitySettings { code, name, office, labels, rules });
                }
                if let Some(default) = province.default_city
                    && !cities.iter().any(|c| c.code == default)
                {
                    bail!("province.default_city {default} is not one of [cities]");
                }
                (cities, province.default_city)
            }
            (None, false) => bail!("[cities] lists the cities of a province: name it in [province]"),
            (Some(_), true) => bail!("[province] needs its cities in [cities.\"<division code>\"]"),
        };
        Ok(Settings {
            cities,
            default_city,
            province: self.province,
            labels,
            max_future: duration(&self.time.max_future, "time.max_future")?,
            default_sla: counting.default_sla,
            working_days: counting.working_days,
            accept_within: counting.accept_within,
            grace: span(&self.snapshot.grace, "snapshot.grace")?,
            min_interval: duration(&self.snapshot.min_interval, "snapshot.min_interval")?,
            idle_partition: duration(&self.snapshot.idle_partition, "snapshot.idle_partition")?,
            commit_interval: duration(&self.limits.commit_interval, "limits.commit_interval")?,
            session_timeout,
            heartbeat_interval,
            stalled_after,
            zone,
            listen,
            dead_letter_topic_limit: None,
            retention_months: self.state.retention_months,
            zone_name: self.time.zone,
            schema_registry_url: self.snapshot.schema_registry_url,
            unregistered_rows: self.labels.unregistered_rows,
            calendar: self.sla.calendar,
            kafka: self.kafka,
            topics: self.topics,
            limits: self.limits,
            ranking: self.ranking,
        })
    }
}

/// An error in the configuration's shape: not TOML, or keys and values that do not match what
/// is expected (as against a value refused by a check).
#[derive(Debug)]
struct Shape(&'static str);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Where an error in the configuration's shape comes from: the file, at its line (as TOML
/// reads the file alone, with its spans; the message only, never the line's text, which may
/// hold a secret), or the first environment variable whose override brings it. Other errors
/// (a refused value, a missing password) name their key already and are left as they are.
fn locate(text: &str, origin: &str, env: &[(String, String)], combined: anyhow::Error) -> anyhow::Error {
    if combined.downcast_ref::<Shape>().is_none() {
        return combined;
    }
    // Keys the environment may still give are not missing from the file.
    let missing = |e: &str| e.contains("missing field");
    if let Err(e) = toml::from_str::<Config>(text)
        && !missing(e.message())
    {
        let line =
            e.span().map(|s| text.as_bytes()[..s.start.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1);
        return match line {
            Some(line) => anyhow!("{origin}, line {line}: {}", e.message()),
            None => anyhow!("{origin}: {}", e.message()),
        };
    }
    for n in 1..=env.len() {
        let shape = |r: Result<Config>| r.err().is_some_and(|e| e.downcast_ref::<Shape>().is_some());
        if shape(Config::parse_table(text, &env[..n])) && !shape(Config::parse_table(text, &env[..n - 1])) {
            return anyhow!("the environment variable {}: {combined:#}", env[n - 1].0);
        }
    }
    anyhow!("{origin}: {combined:#}")
}

/// `kafka.brokers`: comma-separated `host:port`s (a `scheme://` before each, and no port for
/// 9092, as librdkafka allows).
fn check_brokers(brokers: &str) -> Result<()> {
    let example = "such as kafka-1:9092,kafka-2:9092";
    if brokers.trim().is_empty() {
        bail!("kafka.brokers is empty: name the brokers as host:port, {example}");
    }
    for broker in brokers.split(',').map(str::trim) {
        let address = broker.split_once("://").map_or(broker, |(_, a)| a);
        // Without a port, librdkafka's 9092.
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && !address.starts_with('[') || host.ends_with(']') => {
                (host, port)
            }
            _ => (address, "9092"),
        };
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let valid_host =
            !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !valid_host || !port.parse::<u16>().is_ok_and(|p| p > 0) {
            bail!("kafka.brokers: {broker:?} is not a host:port, {example}");
        }
    }
    Ok(())
}

/// Sets a dotted key from an environment variable; unless `raw`, the value is read as a TOML
/// value (number, boolean) when it is one, else as a string.
fn set(table: &mut toml::Table, keys: &[String], value: &str, raw: bool) -> Result<()> {
    let (last, parents) = keys.split_last().expect("split always yields a key");
    let mut t = table;
    for k in parents {
        t = t
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .with_context(|| format!("{k} is not a section"))?;
    }
    let parsed = (!raw)
        .then(|| format!("v = {value}").parse::<toml::Table>().ok())
        .flatten()
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

/// A wall-clock duration such as `90s` or `1d` (a day of 24 hours), named `key` in errors.
pub(crate) fn duration(s: &str, key: &str) -> Result<Duration> {
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
        assert_eq!(settings.topics.cases, "hotline.cases");
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

    const PROVINCE: &str = r#"
[kafka]
brokers = "a:1"
[province]
name = "吉林省"
office = "吉林省政务服务和数字化建设管理局"
default_city = "220300"
[cities.220300]
name = "四平市"
[cities.220100]
name = "长春市"
office = "长春市12345热线"
[cities.220100.sla]
default = "10d"
accept = "1h"
[cities.222400]
name = "延边朝鲜族自治州"
"#;

    #[test]
    fn province_mode_lists_each_city_with_its_own_rules() {
        let settings = Config::parse(PROVINCE, []).unwrap().settings().unwrap();
        let codes: Vec<String> = settings.cities.iter().map(|c| c.code.to_string()).collect();
        assert_eq!(codes, ["220100", "220300", "222400"]);
        assert_eq!(settings.default_city, Some("220300".parse().unwrap()));
        let changchun = &settings.cities[0];
        assert_eq!((changchun.name.as_deref(), changchun.office.as_deref()), (Some("长春市"), Some("长春市12345热线")));
        assert_eq!(changchun.rules.default_sla.get_days(), 10, "its own [sla]");
        assert_eq!(settings.cities[1].rules.default_sla.get_days(), 15, "the top-level [sla]");
        let cities = settings.cities();
        assert_eq!(cities.resolve(None), Ok("220300".parse().unwrap()));
        assert_eq!(cities.resolve(Some("220200".parse().unwrap())), Err(crate::domain::event::Rejection::UnknownCity));
        // A single city is one city, named or not.
        let single = Config::parse("[kafka]\nbrokers = \"a:1\"\n[city]\ncode = \"220300\"\n", []).unwrap();
        let single = single.settings().unwrap();
        assert_eq!((single.cities.len(), single.default_city), (1, Some("220300".parse().unwrap())));
    }

    #[test]
    fn province_mode_is_refused_when_incomplete() {
        let refused = |text: &str| format!("{:#}", Config::parse(text, []).and_then(Config::settings).unwrap_err());
        let no_province = PROVINCE.replace("[province]", "[ignored]").replace("[ignored]\n", "[x]\n");
        assert!(Config::parse(&no_province, []).is_err(), "an unknown section");
        let without = PROVINCE.split("[province]").next().unwrap().to_owned()
            + &PROVINCE[PROVINCE.find("[cities.220300]").unwrap()..];
        assert!(refused(&without).contains("name it in [province]"), "{}", refused(&without));
        let bad_default = PROVINCE.replace("default_city = \"220300\"", "default_city = \"220200\"");
        assert!(refused(&bad_default).contains("not one of [cities]"), "{}", refused(&bad_default));
        let bad_code = PROVINCE.replace("[cities.222400]", "[cities.22240]");
        assert!(refused(&bad_code).contains("cities.22240"), "{}", refused(&bad_code));
        let both = PROVINCE.replace("[province]", "[city]\ncode = \"220300\"\n[province]");
        assert!(refused(&both).contains("province.default_city"), "{}", refused(&both));
        let empty = "[kafka]\nbrokers = \"a:1\"\n[province]\nname = \"吉林省\"\noffice = \"x\"\n";
        assert!(refused(empty).contains("needs its cities"), "{}", refused(empty));
    }

    const SASL: &str = "[kafka]\nbrokers = \"a:1\"\n[kafka.security]\nprotocol = \"SASL_SSL\"\n\
                        mechanism = \"SCRAM-SHA-512\"\nusername = \"hotline\"\n";

    fn password_env(password: &str) -> [(String, String); 1] {
        [(PASSWORD_VARIABLE.to_owned(), password.to_owned())]
    }

    #[test]
    fn working_day_deadlines_need_known_kinds_and_a_calendar_that_covers_the_retention() {
        let base = "[kafka]\nbrokers = \"a:1\"\n";
        let settings = Config::parse(base, []).unwrap().settings().unwrap();
        assert!(settings.working_days.is_none(), "no table: v1's calendar-day deadlines");
        let date = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        assert_eq!(settings.calendar_gaps(date("1999-01-01")), Vec::<i16>::new());
        assert_eq!(settings.calendar_last_year(), None);

        let text = format!("{base}[sla.working_days]\nhelp = 3\nconsultation = 1\n");
        let settings = Config::parse(&text, []).unwrap().settings().unwrap();
        let by_kind = settings.working_days.as_ref().unwrap().by_kind;
        assert_eq!(by_kind[RequestKind::Help as usize], Some(3));
        assert_eq!(by_kind[RequestKind::Complaint as usize], None);
        // The built-in calendar covers 2022 to 2026: 13 months of retention from April 2023
        // reach March 2022, from January 2023 they reach December 2021; and next year counts.
        assert_eq!(settings.calendar_last_year(), Some(2026));
        assert_eq!(settings.calendar_gaps(date("2023-04-15")), Vec::<i16>::new());
        assert_eq!(settings.calendar_gaps(date("2023-01-15")), [2021]);
        assert_eq!(settings.calendar_gaps(date("2026-11-30")), Vec::<i16>::new());
        assert_eq!(settings.calendar_gaps(date("2026-12-06")), [2027], "from December, next year");
        assert_eq!(settings.calendar_gaps(date("2027-02-01")), [2027]);

        let err = Config::parse(&format!("{base}[sla.working_days]\nhelpp = 3\n"), []).unwrap().settings().unwrap_err();
        assert!(err.to_string().contains("\"helpp\" is not a request kind"), "{err:#}");
        let err =
            Config::parse(&format!("{base}[ranking.weights]\non_time = -1\n"), []).unwrap().settings().unwrap_err();
        assert!(err.to_string().contains("ranking.weights"), "{err:#}");
        let err = Config::parse(&format!("{base}[sla.working_days]\nhelp = 0\n"), []).unwrap().settings().unwrap_err();
        assert!(err.to_string().contains("1 to 60"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("calendar.toml");
        std::fs::write(&file, "[2022]\nnotice = \"n\"\nholidays = []\nworking_weekends = [\"04-04\"]\n").unwrap();
        let text = format!("{base}[sla]\ncalendar = {file:?}\n[sla.working_days]\nhelp = 3\n");
        let err = Config::parse(&text, []).unwrap().settings().unwrap_err();
        assert!(format!("{err:#}").contains("2022-04-04 is a Monday"), "{err:#}");
    }

    #[test]
    fn the_password_comes_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let text = format!("{SASL}password_file = {:?}\nca_file = {:?}\n", file, file);
        let c = Config::parse(&text, []).unwrap();
        let s = &c.kafka.security;
        assert_eq!(s.protocol, Protocol::SaslSsl);
        assert_eq!(s.mechanism, Some(Mechanism::ScramSha512));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("s3cret-from-file"));
        assert!(s.verify_hostname);
        let debug = format!("{:?}", c.settings().unwrap());
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");

        std::fs::write(&file, "").unwrap();
        let err = Config::parse(&text, []).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err:#}");
        let missing = format!("{SASL}password_file = \"/nonexistent/password\"\n");
        let err = Config::parse(&missing, []).unwrap_err();
        assert!(format!("{err:#}").contains("kafka.security.password_file /nonexistent/password"), "{err:#}");
    }

    #[test]
    fn the_password_comes_from_the_environment_as_it_is() {
        // Values that TOML would read as numbers, dates or booleans stay the exact string.
        for password in ["0x1F", "1_000", "+5", "1979-05-27", "true", "\"quoted\"", "a b#c"] {
            let c = Config::parse(SASL, password_env(password)).unwrap();
            assert_eq!(c.kafka.security.password.as_ref().map(Secret::expose), Some(password));
        }
        let c = Config::parse(SASL, password_env("s3cret-from-env")).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
    }

    #[test]
    fn broker_addresses_are_checked_when_the_configuration_loads() {
        for good in [
            "kafka:9092",
            "localhost",
            "kafka-1,kafka-2:9093",
            "a:1,b:2",
            "10.0.0.1:9092, 10.0.0.2:9092",
            "[::1]:9092",
            "SSL://k.example.com:9093",
        ] {
            assert!(check_brokers(good).is_ok(), "{good}");
        }
        for bad in ["", " ", "a:1,", "not a host:9092", "not a host", "k:0", "k:65536", ":9092", "k:port"] {
            assert!(check_brokers(bad).is_err(), "{bad:?}");
        }
        let env = [("HOTLINE_KAFKA__BROKERS".to_owned(), "k:0".to_owned())];
        let err = Config::parse("[kafka]\nbrokers = \"k:9092\"\n", env).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("the environment variable HOTLINE_KAFKA__BROKERS: kafka.brokers: \"k:0\""),
            "{err:#}"
        );
    }

    #[test]
    fn an_error_names_its_line_or_its_variable() {
        let text = "[kafka]\nbrokers = \"k:9092\"\nbroker = \"k:9092\"\n";
        let err = Config::parse_from(text, "hotline.toml", []).unwrap_err().to_string();
        assert!(err.starts_with("hotline.toml, line 3: unknown field `broker`"), "{err}");
        // The line is named, never quoted: it may hold a secret.
        let text = "[kafka]\nbrokers = \"k:9092\"\n[kafka.security]\nprotocol = \"SASL_SSL\"\npasword = \"s3cret\"\n";
        let err = Config::parse_from(text, "hotline.toml", []).unwrap_err().to_string();
        assert!(err.starts_with("hotline.toml, line 5: unknown field `pasword`") && !err.contains("s3cret"), "{err}");
        // A missing password is not the file's error when the environment gives the rest.
        let sasl = "[kafka]\nbrokers = \"k:9092\"\n[kafka.security]\nprotocol = \"SASL_SSL\"\nmechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\n";
        let env =
            [(PASSWORD_VARIABLE.to_owned(), "p".to_owned()), ("HOTLINE_KAFKA__GROUPID".to_owned(), "g".to_owned())];
        let err = Config::parse_from(sasl, "hotline.toml", env).unwrap_err().to_string();
        assert!(err.starts_with("the environment variable HOTLINE_KAFKA__GROUPID: "), "{err}");
        let env = [
            ("HOTLINE_KAFKA__GROUP_ID".to_owned(), "g".to_owned()),
            ("HOTLINE_SNAPSHOT__GRAZE".to_owned(), "1d".to_owned()),
        ];
        let err = Config::parse_from("[kafka]\nbrokers = \"k:9092\"\n", "hotline.toml", env).unwrap_err();
        assert!(err.to_string().starts_with("the environment variable HOTLINE_SNAPSHOT__GRAZE: "), "{err}");
        // Keys the file leaves to the environment are not errors of the file.
        let env = [("HOTLINE_KAFKA__BROKERS".to_owned(), "k:9092".to_owned())];
        assert!(Config::parse_from("[kafka]\n", "hotline.toml", env).is_ok());
    }

    #[test]
    fn secrets_are_refused_where_they_would_leak() {
        let err = Config::parse(&format!("{SASL}password = \"in-the-file\"\n"), []).unwrap_err();
        assert!(err.to_string().contains("password_file"), "{err:#}");
        assert!(!format!("{err:#}").contains("in-the-file"));
        let text = "[kafka]\nbrokers = \"a:1\"\n[kafka.properties]\n\"sasl.password\" = \"in-properties\"\n";
        let err = Config::parse(text, []).unwrap_err();
        assert!(!format!("{err:#}").contains("in-properties"), "{err:#}");
        let err = Config::parse(SASL, []).unwrap_err();
        assert!(err.to_string().contains(PASSWORD_VARIABLE), "{err:#}");
        let text = "[kafka]\nbrokers = \"a:1\"\n[kafka.security]\nusername = \"u\"\n";
        let err = Config::parse(text, []).unwrap_err();
        assert!(err.to_string().contains("SASL_SSL"), "{err:#}");
        let text = "[kafka]\nbrokers = \"a:1\"\n[kafka.properties]\n\"security.protocol\" = \"SSL\"\n";
        assert!(Config::parse(text, []).is_err());
        // A password with no mechanism to use it is a mistake, not silently dropped.
        let text = "[kafka]\nbrokers = \"a:1\"\n";
        let err = Config::parse(text, password_env("unused-secret")).unwrap_err();
        assert!(!format!("{err:#}").contains("unused-secret"), "{err:#}");
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
        let err = Config::parse("[kafka]\nbrokers = \"a:1\"\n[state]\nrecord_version = 0\n", []).unwrap_err();
        assert!(format!("{err:#}").contains("record_version"), "a removed key is refused by name: {err:#}");
    }

    #[test]
    fn properties_hotline_relies_on_are_refused_with_why() {
        for (key, hint) in [
            ("session.timeout.ms", "kafka.session_timeout"),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "transaction"),
            ("group.instance.id", "kafka.instance_id"),
            ("statistics.interval.ms", "idle"),
        ] {
            let text = format!("[kafka]\nbrokers = \"a:1\"\n[kafka.properties]\n{key:?} = \"1\"\n");
            let err = Config::parse(&text, []).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(hint), "{key}: {err}");
        }
        let text = "[kafka]\nbrokers = \"a:1\"\n[kafka.properties]\n\"linger.ms\" = \"50\"\n";
        assert!(Config::parse(text, []).is_ok());
    }

    #[test]
    fn session_and_heartbeat_fit_together() {
        let s = Config::parse("[kafka]\nbrokers = \"a:1\"\n", []).unwrap().settings().unwrap();
        assert_eq!((s.session_timeout, s.heartbeat_interval), (Duration::from_secs(45), Duration::from_secs(3)));
        assert_eq!(s.stalled_after, Duration::from_secs(120));
        for kafka in ["session_timeout = \"5s\"\nheartbeat_interval = \"3s\"", "heartbeat_interval = \"0s\""] {
            let text = format!("[kafka]\nbrokers = \"a:1\"\n{kafka}\n");
            let err = Config::parse(&text, []).unwrap().settings().unwrap_err();
            assert!(err.to_string().contains("kafka.heartbeat_interval"), "{err}");
        }
        let text = "[kafka]\nbrokers = \"a:1\"\nsession_timeout = \"90s\"\n[kafka.properties]\n\
                    \"max.poll.interval.ms\" = \"60000\"\n";
        let err = Config::parse(text, []).unwrap().settings().unwrap_err();
        assert!(err.to_string().contains("max.poll.interval.ms"), "{err}");
        let text = "[kafka]\nbrokers = \"a:1\"\n[http]\nstalled_after = \"10s\"\n";
        let err = Config::parse(text, []).unwrap().settings().unwrap_err();
        assert!(err.to_string().contains("http.stalled_after"), "{err}");
    }
}
