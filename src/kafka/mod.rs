//! The imperative shell around the counting core: Kafka clients, topics and the transactional
//! consume-count-produce loop.

pub mod pipeline;
pub mod recount;
pub mod sender;
pub mod topics;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{KafkaConfig, KafkaSecurity, PASSWORD_VARIABLE};

/// A librdkafka configuration with the brokers, `[kafka.security]` and the configured extra
/// properties. It holds the password: never print it (its `Debug` shows every property).
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    let security = &kafka.security;
    c.set("security.protocol", security.protocol.as_str());
    if let Some(mechanism) = security.mechanism {
        c.set("sasl.mechanism", mechanism.as_str());
    }
    if let Some(username) = &security.username {
        c.set("sasl.username", username);
    }
    if let Some(password) = &security.password {
        c.set("sasl.password", password.expose());
    }
    if security.protocol.tls() {
        if let Some(ca) = &security.ca_file {
            c.set("ssl.ca.location", ca.to_string_lossy());
        }
        c.set("ssl.endpoint.identification.algorithm", if security.verify_hostname { "https" } else { "none" });
    }
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// librdkafka properties known by two names.
const ALIASES: &[(&str, &str)] = &[("linger.ms", "queue.buffering.max.ms"), ("compression.type", "compression.codec")];

/// Sets `key` unless `[kafka.properties]` set it, under either of its names: there the
/// operator's word wins.
pub(crate) fn set_default(config: &mut ClientConfig, key: &str, value: &str) {
    let other = ALIASES.iter().find(|(a, b)| *a == key || *b == key).map(|&(a, b)| if a == key { b } else { a });
    if config.get(key).is_none() && other.is_none_or(|o| config.get(o).is_none()) {
        config.set(key, value);
    }
}

/// Waits until the cluster answers a metadata request, as long as it takes for the brokers to
/// come up. A refused login or a failed TLS handshake ends the wait with an error that says
/// which user, mechanism and file to check: neither fixes itself by waiting, while a restart
/// of the process reads the password file again.
pub async fn check_access(kafka: &KafkaConfig) -> Result<()> {
    let consumer: BaseConsumer<Access> =
        client_config(kafka).create_with_context(Access::default()).map_err(|e| scrub(kafka, anyhow!(e)))?;
    let consumer = Arc::new(consumer);
    let started = Instant::now();
    let mut waiting_logged = false;
    loop {
        let c = consumer.clone();
        let answered = tokio::task::spawn_blocking(move || answered(&c)).await?;
        if answered {
            return Ok(());
        }
        if let Some((code, reason)) = consumer.context().refused.lock().unwrap().take() {
            return Err(scrub(kafka, refused(&kafka.security, code, &reason)));
        }
        if !waiting_logged && started.elapsed() > Duration::from_secs(10) {
            tracing::warn!(brokers = %kafka.brokers, "no Kafka broker answers yet; waiting for one");
            waiting_logged = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Checks that a broker answers within `timeout`, for the commands that read or send and then
/// exit (`run` waits with `check_access` instead). A refused login or a failed TLS handshake
/// is said as `check_access` says it; silence, as the brokers tried, the security protocol and
/// what to check.
pub fn reach(kafka: &KafkaConfig, timeout: Duration) -> Result<()> {
    let consumer: BaseConsumer<Access> =
        client_config(kafka).create_with_context(Access::default()).map_err(|e| scrub(kafka, anyhow!(e)))?;
    let started = Instant::now();
    loop {
        if answered(&consumer) {
            return Ok(());
        }
        if let Some((code, reason)) = consumer.context().refused.lock().unwrap().take() {
            return Err(scrub(kafka, refused(&kafka.security, code, &reason)));
        }
        if started.elapsed() >= timeout {
            return Err(anyhow!(
                "no Kafka broker answered within {timeout:?} at {} (security protocol {}): check that the brokers run \
                 and that kafka.brokers (or HOTLINE_KAFKA__BROKERS) names their addresses; --kafka-timeout waits longer",
                kafka.brokers,
                kafka.security.protocol.as_str()
            ));
        }
    }
}

/// Whether the cluster answers a metadata request within a second. When not, serves the
/// client's queued events (logs, then errors) so that `Access` sees its errors: a poll that
/// served a log returns nothing either, so it polls for a while.
fn answered(consumer: &BaseConsumer<Access>) -> bool {
    if consumer.fetch_metadata(None, Duration::from_secs(1)).is_ok() {
        return true;
    }
    let until = Instant::now() + Duration::from_millis(100);
    while Instant::now() < until {
        consumer.poll(Duration::from_millis(10));
    }
    false
}

/// Keeps the first refused login or failed TLS handshake a client reports.
#[derive(Default)]
struct Access {
    refused: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ClientContext for Access {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(code @ (RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)) => {
                self.refused.lock().unwrap().get_or_insert_with(|| (code, reason.to_owned()));
            }
            // An unreachable broker is waited for.
            _ => tracing::debug!(%error, reason, "Kafka client error while checking access"),
        }
    }
}

impl ConsumerContext for Access {}

/// What went wrong and what to check, naming the user and the password's source, never the
/// password.
fn refused(security: &KafkaSecurity, code: RDKafkaErrorCode, reason: &str) -> anyhow::Error {
    if code == RDKafkaErrorCode::SSL {
        let trusted = match &security.ca_file {
            Some(ca) => format!("the certificate authorities in kafka.security.ca_file {}", ca.display()),
            None => "the system's certificate authorities (set kafka.security.ca_file to trust others)".to_owned(),
        };
        return anyhow!(
            "the TLS handshake with Kafka failed ({reason}). The broker's certificate must be signed by {trusted} \
             and name the address in kafka.brokers"
        );
    }
    let mechanism = security.mechanism.map_or("SASL", |m| m.as_str());
    let user = security.username.as_deref().unwrap_or_default();
    let password = match &security.password_file {
        Some(file) => format!("the password in kafka.security.password_file {}", file.display()),
        None => format!("the password in {PASSWORD_VARIABLE}"),
    };
    anyhow!(
        "Kafka refused the login of user {user:?} with SASL {mechanism} over {} ({reason}). Check \
         kafka.security.username and {password}",
        security.protocol.as_str()
    )
}

/// The error's text with the password, should any library ever quote it, blotted out.
fn scrub(kafka: &KafkaConfig, error: anyhow::Error) -> anyhow::Error {
    match &kafka.security.password {
        Some(p) if !p.expose().is_empty() => anyhow!(format!("{error:#}").replace(p.expose(), "<redacted>")),
        _ => error,
    }
}

/// A librdkafka log line as a tracing event of the same level.
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    use RDKafkaLogLevel::*;
    match level {
        Emerg | Alert | Critical | Error => tracing::error!(target: "librdkafka", facility, "{message}"),
        Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        Notice | Info => tracing::info!(target: "librdkafka", facility, "{message}"),
        Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}
