#![allow(dead_code)] // each benchmark uses some of it

//! What the benchmarks share: sending the input as upstream does, and kcat's baselines.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hotline::commands::replay::route;
use hotline::config::Config;
use hotline::kafka::sender::Sender;
use hotline::kafka::topics::{TopicSpec, ensure};
use serde_json::json;

/// Sends `lines` to the input topics of `config` (made first), as upstream does.
pub fn send(runtime: &tokio::runtime::Runtime, config: &Config, inputs: &[(&str, i32)], lines: &[String]) {
    send_at(runtime, config, inputs, lines, None)
}

/// `send`, each line with its Kafka timestamp when `at` gives them (milliseconds).
pub fn send_at(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    inputs: &[(&str, i32)],
    lines: &[String],
    at: Option<&[i64]>,
) {
    runtime.block_on(async {
        let specs: Vec<TopicSpec<'_>> = inputs
            .iter()
            .map(|(name, partitions)| TopicSpec {
                name,
                partitions: *partitions,
                compacted: false,
                max_message_bytes: None,
            })
            .collect();
        ensure(&config.kafka, &specs).await.unwrap();
        let mut sender = Sender::new(&config.kafka).unwrap();
        let mut case_topics = HashMap::new();
        for (i, line) in lines.iter().enumerate() {
            let (topic, key) = route(&config.topics, line, &mut case_topics);
            let at = at.map(|at| at[i]);
            sender.send_at(topic, key.as_deref().map(str::as_bytes), line.as_bytes(), at).await.unwrap();
        }
        sender.finish().await.unwrap();
    });
}

/// Raw read: one kcat per topic, all at once.
pub fn raw_read(brokers: &str, inputs: &[(&str, i32)]) -> Duration {
    timed(|| {
        let readers: Vec<Child> = inputs
            .iter()
            .map(|(topic, _)| {
                Command::new("kcat")
                    .args(["-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("kcat (apt-get install kcat; scripts/bench.sh does)")
            })
            .collect();
        for mut r in readers {
            assert!(r.wait().unwrap().success());
        }
    })
}

/// Raw copy: the same, piped into one kcat producing to a 3-partition topic.
pub fn raw_copy(brokers: &str, inputs: &[(&str, i32)], copy_topic: &str) -> Duration {
    timed(|| {
        let readers = inputs
            .iter()
            .map(|(topic, _)| format!("kcat -C -b {brokers} -t {topic} -o beginning -e -q -f '%s\\n'"))
            .collect::<Vec<_>>()
            .join(" & ");
        let script = format!("({readers} & wait) | kcat -P -b {brokers} -t {copy_topic} -q");
        assert!(Command::new("bash").args(["-c", &script]).status().unwrap().success());
    })
}

/// Keyed raw copy: per input topic, kcat reads it and pipes it, key and value, into a kcat
/// of its own producing to `<copy_prefix>.<topic>` (made with as many partitions), which
/// partitions by key as a keyed re-partitioning does.
pub fn raw_copy_keyed(brokers: &str, inputs: &[(&str, i32)], copy_prefix: &str) -> Duration {
    timed(|| {
        let pipes = inputs
            .iter()
            .map(|(topic, _)| {
                format!(
                    "(kcat -C -b {brokers} -t {topic} -o beginning -e -q -f '%k\\t%s\\n' | kcat -P -b {brokers} \
                     -t {copy_prefix}.{topic} -K '\\t' -q)"
                )
            })
            .collect::<Vec<_>>()
            .join(" & ");
        let script = format!("{pipes} & wait");
        assert!(Command::new("bash").args(["-c", &script]).status().unwrap().success());
    })
}

/// The topics `raw_copy_keyed` writes to, made with the partitions of their inputs.
pub fn keyed_copy_topics(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    inputs: &[(&str, i32)],
    copy_prefix: &str,
) {
    let names: Vec<String> = inputs.iter().map(|(topic, _)| format!("{copy_prefix}.{topic}")).collect();
    let specs: Vec<TopicSpec<'_>> = names
        .iter()
        .zip(inputs)
        .map(|(name, (_, partitions))| TopicSpec {
            name,
            partitions: *partitions,
            compacted: false,
            max_message_bytes: None,
        })
        .collect();
    runtime.block_on(async { ensure(&config.kafka, &specs).await.unwrap() });
}

pub fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// The median, min and max of three rounds.
pub fn spread(mut values: Vec<f64>) -> serde_json::Value {
    values.sort_by(f64::total_cmp);
    json!({"median": values[values.len() / 2], "min": values[0], "max": values[values.len() - 1]})
}
