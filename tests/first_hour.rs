//! What a newcomer and an operator meet when something is wrong (issue 22), through the
//! `hotline` binary: each command that reads or sends and exits, pointed at an address where
//! nothing listens, says one line naming the brokers and the security protocol and exits
//! non-zero within its bound; configuration errors name the file and line or the environment
//! variable; a busy port names the address and the setting; with `--log-format json` the fatal
//! error is a JSON line.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A configuration whose broker is an address where nothing listens.
fn nowhere() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let (dir, file) = common::write_config(&common::config_text_on(&address, "", ""));
    (dir, file, address)
}

fn hotline(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hotline"));
    // What the shell running the tests may have set changes what the commands say.
    for (name, _) in std::env::vars().filter(|(n, _)| n == "RUST_LOG" || n.starts_with("HOTLINE_")) {
        command.env_remove(name);
    }
    let out = command.args(args).envs(env.iter().copied()).output().unwrap();
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command against no broker with `--kafka-timeout 2s` (and once with the default 10 s)
/// and checks its one line, exit code and time.
fn gives_up_clearly(args: &[&str], config: &Path, address: &str, timeout: Option<u64>) {
    let config = config.to_str().unwrap();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config]);
    let flag = timeout.map(|t| format!("{t}s"));
    if let Some(f) = &flag {
        all.extend(["--kafka-timeout", f]);
    }
    let (out, took) = hotline(&all, &[]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
    let bound = Duration::from_secs(timeout.unwrap_or(10));
    assert!(took >= bound && took < bound + Duration::from_secs(5), "{args:?} gave up after {took:?}, bound {bound:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line, not\n{text}");
    assert!(
        lines[0].starts_with(&format!(
            "hotline: no Kafka broker answered within {bound:?} at {address} (security protocol PLAINTEXT): check \
             that the brokers run"
        )),
        "{args:?}: {text}"
    );
}

#[test]
fn every_command_that_reads_or_sends_gives_up_on_no_broker_in_one_line() {
    let (dir, config, address) = nowhere();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "{}\n").unwrap();
    let commands: [&[&str]; 4] = [
        &["snapshot", "show", "--month", "2022-04"],
        &["report", "--month", "2022-04"],
        &["diff", "live", "live", "--month", "2022-04"],
        &["replay", events.to_str().unwrap()],
    ];
    for args in commands {
        gives_up_clearly(args, &config, &address, Some(2));
    }
    // The default bound.
    gives_up_clearly(&["snapshot", "show", "--month", "2022-04"], &config, &address, None);
}

#[test]
fn configuration_errors_name_their_file_and_line_or_their_variable() {
    let text = common::config_text_on("127.0.0.1:9092", "broker = \"127.0.0.1:9092\"", "");
    let (_dir, file) = common::write_config(&text);
    let line = text.lines().position(|l| l.starts_with("broker =")).unwrap() + 1;
    let (out, _) = hotline(&["snapshot", "show", "--month", "2022-04", "--config", file.to_str().unwrap()], &[]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains(&format!("{}, line {line}: unknown field `broker`", file.display())), "{text}");
    assert!(text.contains("unknown field `broker`"), "{text}");

    let (_dir, file) = common::write_config(&common::config_text_on("127.0.0.1:9092", "", ""));
    let config = file.to_str().unwrap();
    let (out, _) =
        hotline(&["snapshot", "show", "--month", "2022-04", "--config", config], &[("HOTLINE_KAFKA__BROKER", "x:1")]);
    let text = stderr(&out);
    assert!(text.contains("the environment variable HOTLINE_KAFKA__BROKER"), "{text}");
    assert!(text.contains("unknown field `broker`"), "{text}");

    for bad in ["", "not a host:9092", "kafka:0", "kafka:99999", "a:1,"] {
        let (out, took) = hotline(
            &["snapshot", "show", "--month", "2022-04", "--config", config],
            &[("HOTLINE_KAFKA__BROKERS", bad)],
        );
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        // Refused at load: well before the 10 s a broker is waited for.
        assert!(took < Duration::from_secs(5), "{bad:?} refused when the configuration loads: {took:?}");
        assert!(text.contains("HOTLINE_KAFKA__BROKERS") && text.contains("kafka.brokers"), "{bad:?}: {text}");
    }
}

#[test]
fn a_busy_port_is_named_with_its_setting_and_fatal_errors_can_be_json() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let (_dir, config, _) = nowhere();
    let config = config.to_str().unwrap();
    let (out, _) = hotline(&["run", "--config", config], &[("HOTLINE_HTTP__LISTEN", &address)]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    let last = text.lines().last().unwrap();
    assert!(last.starts_with(&format!("hotline: listening on {address} (http.listen")), "{text}");

    let (out, took) = hotline(&["demo", "--listen", &address, "--exit"], &[]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains(&format!("listening on {address} (--listen)")), "{text}");
    // Generating the month takes the debug build half a minute.
    assert!(took < Duration::from_secs(10), "the demo fails before it generates its month: {took:?}");

    let (out, _) = hotline(&["--log-format", "json", "run", "--config", config], &[("HOTLINE_HTTP__LISTEN", &address)]);
    assert_eq!(out.status.code(), Some(1));
    for line in stderr(&out).lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if entry["level"] == "ERROR" {
            assert!(entry["fields"]["error"].as_str().unwrap().contains(&address), "{line}");
        }
    }
    assert!(stderr(&out).contains("\"level\":\"ERROR\""));

    for scale in ["0", "-1", "11", "NaN", "inf"] {
        let (out, _) = hotline(&["demo", &format!("--scale={scale}"), "--exit"], &[]);
        assert_eq!(out.status.code(), Some(1), "--scale {scale}");
        assert!(stderr(&out).contains("--scale must be from 0.001 to 10"), "--scale {scale}: {}", stderr(&out));
    }
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_each_bad_line_and_always_ends_with_a_summary() {
    let deployment = common::Deployment::new("", "").await;
    let config = deployment.file.to_str().unwrap();
    let good = |n: u32, channel: &str| {
        format!(
            r#"{{"event_id":"e{n}","case_id":"c{n}","type":"created","occurred_at":"2022-04-10T10:00:00+08:00","channel":"{channel}","category":"water","caller_phone":"13900002222"}}"#
        )
    };
    let lines = [
        good(1, "hotline"),
        "not json at all".to_owned(),
        good(2, "carrier_pigeon"),
        good(3, "mayor_mailbox").replace("+08:00", ""),
        String::new(),
        good(4, "mayor_mailbox"),
    ];
    let file = deployment.dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (out, _) = hotline(&["replay", file.to_str().unwrap(), "--config", config], &[]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for (line, reason) in [(2, "invalid_json"), (3, "unknown_channel"), (4, "bad_timestamp")] {
        assert!(
            text.lines().any(|l| l.contains(&format!("line {line}: ")) && l.contains(&format!("reason=\"{reason}\""))),
            "line {line} reported as {reason}:\n{text}"
        );
    }
    let summary = text.lines().last().unwrap();
    let t = &deployment.config.topics;
    assert_eq!(
        summary,
        format!(
            "replay: 6 lines read, 2 sent (1 to {}, 1 to {}), 3 refused (1 bad_timestamp, 1 invalid_json, 1 unknown_channel)",
            t.cases, t.letters
        )
    );
    assert!(!text.contains("13900002222"), "personal data printed");
    let sent = common::committed_messages(&deployment.config.kafka, &t.cases, 1).await;
    assert_eq!(sent.len(), 1);

    // --send-invalid sends them too; the summary is JSON with --log-format json.
    let (out, _) =
        hotline(&["--log-format", "json", "replay", file.to_str().unwrap(), "--config", config, "--send-invalid"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let last: serde_json::Value = serde_json::from_str(stderr(&out).lines().last().unwrap()).unwrap();
    let summary = &last["fields"];
    assert_eq!(summary["message"], "replay finished");
    assert_eq!(summary["lines"], 6);
    assert_eq!(summary["sent"], 5);
    assert_eq!(summary["refused"]["invalid_json"], 1);
}
