//! Internal topics belong to one deployment (issue 22), against the real broker: a `hotline
//! run` of another consumer group on the same topics refuses to start, naming both groups and
//! the way to take over, and so do its `rescale` and `recount --replace-live`; `hotline
//! take-over` is refused while the owner runs, and once it has stopped hands the topics and the
//! owner's offsets to the new group, which goes on counting where the owner stopped: the month
//! is exact, nothing counted twice.

mod common;

use std::time::{Duration, Instant};

use common::process::{Hotline, Options};

const MONTH: &str = "2022-04";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_group_on_the_same_internal_topics_is_refused_until_it_takes_them_over() {
    let deployment = common::Deployment::new("", "").await;
    let (settings, file) = (&deployment.settings, &deployment.file);
    let owner = &settings.kafka.group_id;
    let events = common::generated_month(MONTH, &settings.zone, 600, 5);
    let (first, second) = events.split_at(events.len() / 2);

    let mut running = Hotline::start(file, &Options::default());
    running.wait_ready(Duration::from_secs(60)).await;
    deployment.send(first).await;

    // The same topics under another group.
    let other = common::unique("other-group");
    let text = std::fs::read_to_string(file)
        .unwrap()
        .replace(&format!("group_id = \"{owner}\""), &format!("group_id = \"{other}\""));
    assert!(text.contains(&other));
    let other_file = deployment.dir.path().join("other.toml");
    std::fs::write(&other_file, text).unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["run", "--config", other_file.to_str().unwrap()])
        .env("HOTLINE_HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let last = said.lines().last().unwrap();
    assert!(
        last.contains(&format!("belong to the deployment of consumer group {owner}, and this one is group {other}"))
            && last.contains("hotline take-over"),
        "{said}"
    );
    eprintln!("refused after {:.1?}", started.elapsed());

    // Nor may that group rewrite the owner's state or snapshots.
    let other_config = other_file.to_str().unwrap();
    let snapshots = settings.topics.snapshots.as_str();
    for command in [
        &["rescale", "--config", other_config, "--partitions", "4"][..],
        &["recount", "--config", other_config, "--from", MONTH, "--topic", snapshots, "--replace-live"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline")).args(command).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {said}");
        assert!(
            said.contains(&format!("consumer group {owner}, and this one is group {other}")),
            "{command:?}: {said}"
        );
    }

    let take_over = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
            .args(["take-over", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let refused = take_over(&other_file);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("running member"), "{refused:?}");

    // The owner stops; the other group takes over and counts the rest of the month.
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.metric("hotline_messages_processed_total").await < first.len() as f64 {
        assert!(Instant::now() < deadline, "the owner did not count the first half");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while common::revisions(settings, MONTH).is_empty() {
        assert!(Instant::now() < deadline, "the owner published nothing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(running.terminate().success());
    let published_by_owner = common::revisions(settings, MONTH).len();
    let taken = take_over(&other_file);
    assert!(taken.status.success(), "{}", String::from_utf8_lossy(&taken.stderr));
    assert!(String::from_utf8_lossy(&taken.stderr).contains(&format!("where group {owner} stopped")));
    let successor = Hotline::start(&other_file, &Options::default());
    successor.wait_ready(Duration::from_secs(60)).await;
    deployment.send(second).await;
    let last = common::wait_for_exact_snapshot(settings, MONTH, &events, published_by_owner as u64 + 1).await;
    assert_eq!(last.figures.totals.received, 600);
    let revisions: Vec<u64> = common::revisions(settings, MONTH).iter().map(|s| s.revision).collect();
    assert_eq!(revisions, (1..=revisions.len() as u64).collect::<Vec<_>>(), "revisions go on, once each");

    // And now the first group is the stranger.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["run", "--config", file.to_str().unwrap()])
        .env("HOTLINE_HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("consumer group {other}, and this one is group {owner}"))
    );
}
