//! Kafka over TLS and SASL: a broker of this test's own whose client listener is SASL_SSL, with
//! a CA and certificate generated for the run (`BROKER_SASL_SSL=1 scripts/broker.sh start`) and
//! users for SCRAM-SHA-512 and PLAIN. With the right credentials the pipeline counts a month
//! exactly, over either mechanism, with the password from a file or from the environment. With
//! a wrong password, or without trusting the CA, `hotline run` exits with an error that names
//! the user, the mechanism and what to check, and never prints the password.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hotline::config::{Config, PASSWORD_VARIABLE};
use hotline::kafka::sender::Sender;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

const MONTH: &str = "2022-05";
const SCRAM_USER: &str = "hotline-scram";
const PLAIN_USER: &str = "hotline-plain";

fn broker(command: &str, dir: &Path, users: &str) -> String {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/broker.sh"))
        .args([command, dir.to_str().unwrap()])
        .env("BROKER_SASL_SSL", "1")
        .env("BROKER_SASL_USERS", users)
        .output()
        .unwrap();
    assert!(out.status.success(), "broker.sh {command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct Broker(PathBuf);

impl Drop for Broker {
    fn drop(&mut self) {
        broker("stop", &self.0, "");
    }
}

/// `[kafka.security]` for SASL_SSL with the given mechanism and user; `extra` adds keys.
fn security(mechanism: &str, user: &str, ca: Option<&Path>, extra: &str) -> String {
    let ca = ca.map(|ca| format!("ca_file = {:?}\n", ca.to_str().unwrap())).unwrap_or_default();
    format!(
        "[kafka.security]\nprotocol = \"SASL_SSL\"\nmechanism = \"{mechanism}\"\nusername = \"{user}\"\n{ca}{extra}\n"
    )
}

fn password_file(dir: &Path, name: &str, password: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, format!("{password}\n")).unwrap();
    format!("password_file = {:?}\n", file.to_str().unwrap())
}

/// The input topics, created over the secured listener.
async fn create_inputs(config: &Config) {
    let admin: AdminClient<DefaultClientContext> = hotline::kafka::client_config(&config.kafka).create().unwrap();
    let t = &config.topics;
    let topics = [&t.cases, &t.letters, &t.boards].map(|name| NewTopic::new(name, 2, TopicReplication::Fixed(1)));
    for r in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
        r.expect("creating an input topic");
    }
}

/// Runs the pipeline in-process over the secured listener and checks the month's figures.
async fn counts_a_month_exactly(config: Config, password: &str, seed: u64) {
    let settings = config.clone().settings().unwrap();
    let debug = format!("{settings:?}");
    assert!(!debug.contains(password), "the configuration's Debug shows the password: {debug}");
    hotline::kafka::check_access(&config.kafka).await.expect("the right credentials are accepted");
    create_inputs(&config).await;
    let events = common::generated_month(MONTH, &settings.zone, 200, seed);

    let pipeline = common::Running::start(settings.clone()).await;
    let mut sender = Sender::new(&config.kafka).unwrap();
    common::send_all(&mut sender, &config.topics, &events).await;
    sender.finish().await.unwrap();
    let snapshot = common::wait_for_exact_snapshot(&settings, MONTH, &events, 1).await;
    assert_eq!(snapshot.figures.totals.received, 200);
    assert_eq!(pipeline.get("/readyz").await.0, 200);
    pipeline.stop().await;
}

/// Runs `hotline run` until it exits (at most 60 s) and returns whether it succeeded and all it
/// printed on stdout and stderr.
fn hotline_run(config_text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let (dir, file) = common::write_config(config_text);
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["run", "--config", file.to_str().unwrap()])
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "hotline run did not stop within 60 s; it printed:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
    (status.success(), printed)
}

/// `hotline run` stops with an error containing every one of `expected`, and `password` is
/// nowhere in what it printed.
async fn refused(config_text: String, env: Vec<(&'static str, String)>, password: String, expected: Vec<String>) {
    let (ok, printed) = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hotline_run(&config_text, &env)
    })
    .await
    .unwrap();
    assert!(!ok, "hotline run succeeded:\n{printed}");
    let last = printed.lines().last().unwrap_or_default();
    eprintln!("hotline run stopped: {last}");
    for e in &expected {
        assert!(last.contains(e.as_str()), "the error does not say {e:?}:\n{printed}");
    }
    assert!(!printed.contains(&password), "hotline printed the password:\n{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_works_with_the_right_credentials_and_fails_clearly_with_wrong_ones() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    let (scram_password, plain_password) = (common::unique("scram"), common::unique("plain"));
    let users = format!("{SCRAM_USER}:{scram_password} {PLAIN_USER}:{plain_password}");
    let brokers = broker("start", &broker_dir, &users);
    let _guard = Broker(broker_dir.clone());
    let ca = broker_dir.join("tls/ca.pem");
    eprintln!("SASL_SSL broker on {brokers} after {:?}", started.elapsed());

    // SCRAM-SHA-512, the password in a file.
    let scram = security("SCRAM-SHA-512", SCRAM_USER, Some(&ca), &password_file(dir.path(), "scram", &scram_password));
    let scram_config = Config::parse(&common::config_text_on(&brokers, "", &scram), []).unwrap();
    // PLAIN, the password in the environment.
    let plain = security("PLAIN", PLAIN_USER, Some(&ca), "");
    let plain_env = [(PASSWORD_VARIABLE.to_owned(), plain_password.clone())];
    let plain_config = Config::parse(&common::config_text_on(&brokers, "", &plain), plain_env).unwrap();

    // A wrong SCRAM password in the environment.
    let wrong_scram = common::unique("wrong-scram");
    let scram_by_env = security("SCRAM-SHA-512", SCRAM_USER, Some(&ca), "");
    let wrong_scram_run = refused(
        common::config_text_on(&brokers, "", &scram_by_env),
        vec![(PASSWORD_VARIABLE, wrong_scram.clone())],
        wrong_scram,
        ["Kafka refused the login", &format!("user \"{SCRAM_USER}\""), "SCRAM-SHA-512", PASSWORD_VARIABLE]
            .map(str::to_owned)
            .to_vec(),
    );
    // A wrong PLAIN password in a file.
    let wrong_plain = common::unique("wrong-plain");
    let plain_by_file = security("PLAIN", PLAIN_USER, Some(&ca), &password_file(dir.path(), "wrong", &wrong_plain));
    let wrong_plain_run = refused(
        common::config_text_on(&brokers, "", &plain_by_file),
        vec![],
        wrong_plain,
        ["Kafka refused the login", &format!("user \"{PLAIN_USER}\""), "PLAIN", "password_file"]
            .map(str::to_owned)
            .to_vec(),
    );
    // The right password, but the test CA is not trusted.
    let untrusted = security("SCRAM-SHA-512", SCRAM_USER, None, "");
    let untrusted_run = refused(
        common::config_text_on(&brokers, "", &untrusted),
        vec![(PASSWORD_VARIABLE, scram_password.clone())],
        scram_password.clone(),
        ["TLS handshake", "kafka.security.ca_file"].map(str::to_owned).to_vec(),
    );

    tokio::join!(
        counts_a_month_exactly(scram_config, &scram_password, 11),
        counts_a_month_exactly(plain_config, &plain_password, 12),
        wrong_scram_run,
        wrong_plain_run,
        untrusted_run,
    );
    eprintln!("done after {:?}", started.elapsed());
}
