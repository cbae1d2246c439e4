//! The README's first command: `hotline demo` runs the real pipeline on librdkafka's mock
//! cluster over a generated reference month, and prints the office's report, which must carry
//! every figure of the reference report (四平, April 2022).

use std::process::Command;
use std::time::{Duration, Instant};

use hotline::generator;
use hotline::labels::LabelRegistry;

#[test]
fn the_demo_prints_the_reference_months_report_figure_for_figure() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["demo", "--exit", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(180), "the demo took {:?}", started.elapsed());
    let report = String::from_utf8(out.stdout).unwrap();
    for figure in [
        "4月份12345市长公开电话办理情况",
        "收到省长公开电话办公室转来的《国务院“互联网+督查”平台群众留言》承办单64件，全部办结。",
        "省政数局转来的《中国政府网网民留言》25件，全部办结。",
        "办理《吉林省政务服务热线转办平台》2034件，办结1990件；",
        "《省长信箱》12件，全部办结；《市长信箱》22件，全部办结；",
        "《人民网领导留言板》77件，其中市委书记留言板块33件，市长留言板块44件，全部办结。",
        "共受理群众求助、投诉、举报、咨询和建议等问题31681件，办结31620件，正在办理61件，办结率99.8%。",
        "其中疫情问题17883件，占56.4%；社保问题1802件，占5.7%；住建问题621件，占2.0%；",
        "医保问题505件，占1.6%；交通问题453件，占1.4%；住房公积金问题358件，占1.1%；",
        // The reference prints 31.7%: 10,059 / 31,681 is 31.75%, which it cut where it rounded
        // every other share (1,802 / 31,681 = 5.688% as 5.7%). Shares here round.
        "水、电、气和农业农村等其它问题10059件，占31.8%。",
    ] {
        assert!(report.contains(figure), "{figure} is missing from\n{report}");
    }
    // All 34 departments: cases assigned and closed on time, under the reference's names.
    let registry = LabelRegistry::default();
    for (code, assigned, on_time) in generator::DEPARTMENTS {
        let row = format!("| {} | {assigned} | {on_time} |", registry.departments[*code]);
        assert!(report.contains(&row), "{row} is missing from\n{report}");
    }

    // Where the workplace keeps the reference itself (not in the repository: it is the
    // office's document), its intake paragraph word for word up to that last share, and every
    // department row as it prints it.
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/reference/000_4ed6640a6ec2fd82.txt");
    if let Ok(text) = std::fs::read_to_string(reference) {
        let squeeze = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let (reference, printed) = (squeeze(&text), squeeze(&report));
        let start = reference.find("收到省长").unwrap();
        let end = reference.find("10059件，占").unwrap() + "10059件，占".len();
        assert!(printed.contains(&reference[start..end]), "{report}");
        for (code, assigned, on_time) in generator::DEPARTMENTS {
            let row = format!("{}{assigned}{on_time}", registry.departments[*code]);
            assert!(reference.contains(&row), "{row} is not how the reference prints it");
        }
    }
}
