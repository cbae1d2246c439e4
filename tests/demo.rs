//! The README's first command: `hotline demo` runs the real pipeline on librdkafka's mock
//! cluster over a generated province month, and prints 四平's report, which must carry every
//! figure of the reference report (四平, April 2022), then the provincial bulletin, whose
//! province row is the sum of its nine cities'.

mod common;

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
    let printed = String::from_utf8(out.stdout).unwrap();
    let (report, bulletin) = printed.split_once("**吉林省政务服务和数字化建设管理局**").expect(&printed);
    for figure in common::REFERENCE_FIGURES {
        assert!(report.contains(figure), "{figure} is missing from\n{report}");
    }
    for row in common::reference_department_rows() {
        assert!(report.contains(&row), "{row} is missing from\n{report}");
    }

    // Where the workplace keeps the reference itself (not in the repository: it is the
    // office's document), its intake paragraph word for word up to that last share, and every
    // department row as it prints it.
    // The bulletin: a row per city, 四平 the reference month, the province their sum.
    assert!(bulletin.contains("# 吉林省2022年4月份12345热线工单办理情况通报"), "{bulletin}");
    let rows: Vec<Vec<&str>> = bulletin
        .lines()
        .filter(|l| l.starts_with("| ") && l.ends_with("% |"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 10, "nine cities and the province: {bulletin}");
    let number = |row: &Vec<&str>, i: usize| row[i].parse::<u64>().unwrap();
    assert_eq!(&rows[2][..4], ["四平市", "31681", "31620", "61"]);
    let (cities, province) = rows.split_at(9);
    assert_eq!(province[0][0], "全省");
    for i in 1..4 {
        assert_eq!(cities.iter().map(|r| number(r, i)).sum::<u64>(), number(&province[0], i), "column {i}");
    }
    assert!(bulletin.contains("**红榜**") && bulletin.contains("**黑榜**"), "{bulletin}");

    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/reference/000_4ed6640a6ec2fd82.txt");
    let registry = LabelRegistry::default();
    if let Ok(text) = std::fs::read_to_string(reference) {
        let squeeze = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let (reference, printed) = (squeeze(&text), squeeze(report));
        let start = reference.find("收到省长").unwrap();
        let end = reference.find("10059件，占").unwrap() + "10059件，占".len();
        assert!(printed.contains(&reference[start..end]), "{report}");
        for (code, assigned, on_time) in generator::DEPARTMENTS {
            let row = format!("{}{assigned}{on_time}", registry.departments[*code]);
            assert!(reference.contains(&row), "{row} is not how the reference prints it");
        }
    }
}
