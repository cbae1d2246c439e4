//! A calendar year that is missing never stops the count (issue 19), through the real broker.
//! With working-day deadlines and a calendar that ends with 2022, as the built-in one ends with
//! 2026 today, December 2022's cases whose deadlines run into 2023 are counted, by weekends
//! alone, and the closed snapshot says how many, by year. Once the calendar has 2023 (the
//! built-in one, from the State Council's notice), the next start counts them again by it, and
//! the next revision carries the new figures and no mark, names the new rules' fingerprint, and
//! the restart counts the month as changed by the rules.

mod common;

use common::reference::{self, WORKING_DAYS};

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

const MONTH: &str = "2022-12";

/// The deadline of an assignment without `due_at`, and 2023 when it needed a day of 2023 while
/// the calendar lacks it. December 2022 has neither holiday nor worked weekend; 2023 counts by
/// weekends alone, or with `published`, by the State Council's notice for 2023 (written out
/// here, apart from `config/calendar.toml`): 1-2 January and 21-27 January off, Saturday 28
/// and Sunday 29 January worked.
fn deadline(assigned: Timestamp, kind: Option<&str>, published: bool) -> (Timestamp, Option<i16>) {
    let zone = TimeZone::get("Asia/Shanghai").unwrap();
    let Some(mut left) = reference::working_days(kind) else {
        return (assigned.to_zoned_datetime(zone).checked_add(Span::new().days(15)).unwrap().timestamp(), None);
    };
    let january = |d: i8| Date::new(2023, 1, d).unwrap();
    let mut day = assigned.to_zoned_datetime(zone.clone()).date();
    let mut provisional = None;
    while left > 0 {
        day = day.tomorrow().unwrap();
        let weekday = !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
        let worked = match (day.year(), published) {
            (2023, false) => {
                provisional = Some(2023);
                weekday
            }
            (2023, true) => {
                let off = day <= january(2) || (january(21)..=january(27)).contains(&day);
                (weekday && !off) || day == january(28) || day == january(29)
            }
            _ => weekday,
        };
        if worked {
            left -= 1;
        }
    }
    (day.tomorrow().unwrap().to_zoned_datetime(zone).unwrap().timestamp(), provisional)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_in_a_year_the_calendar_lacks_count_on_marked_and_are_counted_again_once_it_is_added() {
    // A calendar of 2022 alone: the built-in one's first year.
    let built_in = include_str!("../config/calendar.toml");
    let only_2022 = built_in.split("\n[").find(|s| s.starts_with("2022]")).expect("the built-in calendar has 2022");
    let dir = tempfile::tempdir().unwrap();
    let calendar = dir.path().join("calendar-2022.toml");
    std::fs::write(&calendar, format!("[{only_2022}")).unwrap();
    let calendar_key = format!("calendar = {:?}\n", calendar.display().to_string());
    let deployment = common::Deployment::new("", &format!("[sla]\n{calendar_key}{WORKING_DAYS}")).await;
    let settings = &deployment.settings;
    let zone = settings.zone.clone();
    let events = common::generated_month(MONTH, &zone, 600, 27);
    let running = deployment.start().await;
    deployment.send(&events).await;
    let by_weekends = |at, kind: Option<&str>| deadline(at, kind, false);
    let first = common::wait_for_snapshot_of(settings, MONTH, 1, |as_of| {
        common::reference::figures_by(&events, MONTH, &zone, &by_weekends, as_of)
    })
    .await;
    let marked = &first.figures.provisional_deadlines;
    assert!(marked.len() == 1 && marked[0].year == 2023 && marked[0].cases > 0, "{marked:?}");
    let metrics = running.get("/metrics").await.1;
    assert_eq!(common::metric(&metrics, "hotline_events_rejected_total"), 0.0, "nothing dead-lettered");
    running.stop().await;

    // 2023 added (the built-in calendar): the next start counts those deadlines again, and
    // publishes the month's new figures without the mark.
    let text = std::fs::read_to_string(&deployment.file).unwrap().replace(&calendar_key, "");
    let with_2023 = common::parse(&text).settings().unwrap();
    assert_eq!(with_2023.calendar, None, "the built-in calendar");
    let restarted = common::Running::start(with_2023.clone()).await;
    let by_notice = |at, kind: Option<&str>| deadline(at, kind, true);
    let second = common::wait_for_snapshot_of(&with_2023, MONTH, first.revision + 1, |as_of| {
        common::reference::figures_by(&events, MONTH, &zone, &by_notice, as_of)
    })
    .await;
    assert!(second.figures.provisional_deadlines.is_empty());
    // Each revision names the rules that made it; the restart says the rules changed the month.
    assert_eq!(first.made_by.rules_fingerprint.len(), 64);
    assert_ne!(second.made_by.rules_fingerprint, first.made_by.rules_fingerprint);
    assert_eq!(second.made_by.build, env!("CARGO_PKG_VERSION"));
    let metrics = restarted.get("/metrics").await.1;
    // December, and January's first days, whose deadlines were in 2023 too.
    assert!(common::metric(&metrics, "hotline_figures_changed_by_rules_total") >= 1.0);
    restarted.stop().await;

    // `hotline diff`: the first revision, from a file, against the live one.
    let first_file = dir.path().join("first.json");
    std::fs::write(&first_file, first.to_json()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["diff", first_file.to_str().unwrap(), "live", "--month", MONTH])
        .args(["--config", deployment.file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let diff = String::from_utf8(out.stdout).unwrap();
    let cases = first.figures.provisional_deadlines[0].cases;
    assert!(diff.contains(&format!("| 全市 | 办理时限暂按周末计算 | {cases} | 0 |")), "{diff}");
    for side in [&first, &second] {
        assert!(diff.contains(&side.made_by.rules_fingerprint[..12]), "{diff}");
    }
}
