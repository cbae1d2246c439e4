//! The monthly report as an office prints it: the HTML page rendered by headless Chromium
//! (Debian's `chromium`) to PNG and to PDF, and the PDF's text (`pdftotext`) carrying the
//! reference month's figures. No broker: the month is counted by the core.

use std::path::Path;
use std::process::Command;

use hotline::domain::case::CountingRules;
use hotline::domain::month::Month;
use hotline::domain::snapshot::{Snapshot, Status};
use hotline::generator::{self, Plan};
use hotline::labels::LabelRegistry;
use hotline::report::Report;
use jiff::Timestamp;

fn reference_month() -> Snapshot {
    let rules = CountingRules::reference();
    let month: Month = "2022-04".parse().unwrap();
    let plan =
        Plan { month, zone: rules.zone.clone(), cases: generator::REFERENCE_CASES, next_month_days: 3, seed: 2022 };
    let ledger = generator::count(&plan, rules);
    let as_of: Timestamp = "2022-05-05T16:00:00Z".parse().unwrap();
    Snapshot {
        month,
        timezone: "Asia/Shanghai".into(),
        revision: 9,
        status: Status::Closed,
        as_of,
        published_at: as_of,
        figures: ledger.figures(month, as_of).unwrap(),
    }
}

fn chromium(page: &Path, out: &[&str]) {
    let status = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-pdf-header-footer"])
        .args(out)
        .arg(format!("file://{}", page.display()))
        .status()
        .expect("chromium (apt-get install chromium; scripts/test.sh does)");
    assert!(status.success());
}

#[test]
fn the_html_report_prints_to_pdf_and_png_with_every_figure() {
    let report = Report::new(&reference_month(), None, &LabelRegistry::default(), None, None);
    let html = report.html();
    assert!(!html.contains("<script"), "no JavaScript");
    let addresses = html.matches("http").count();
    let svg_namespaces = html.matches("http://www.w3.org/2000/svg").count();
    assert!(addresses == svg_namespaces && !html.contains("src="), "nothing is fetched");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();

    let pdf = dir.join("report.pdf");
    chromium(&page, &[&format!("--print-to-pdf={}", pdf.display())]);
    let png = dir.join("report.png");
    chromium(&page, &["--window-size=900,2400", &format!("--screenshot={}", png.display())]);
    let png_bytes = std::fs::read(&png).unwrap();
    assert!(png_bytes.starts_with(b"\x89PNG") && png_bytes.len() > 50_000, "{} bytes", png_bytes.len());

    let text = Command::new("pdftotext").args(["-layout", pdf.to_str().unwrap(), "-"]).output().expect("pdftotext");
    assert!(text.status.success());
    let text: String = String::from_utf8(text.stdout).unwrap().chars().filter(|c| !c.is_whitespace()).collect();
    for figure in [
        "四平市政务服务和数字化建设管理局",
        "4月份12345市长公开电话办理情况",
        "办理《吉林省政务服务热线转办平台》2034件，办结1990件",
        "问题31681件，办结31620件，正在办理61件，办结率99.8%",
        "疫情问题17883件，占56.4%",
        "水、电、气和农业农村等其它问题10059件",
    ] {
        assert!(text.contains(figure), "{figure} is not in the PDF's text:\n{text}");
    }
    let registry = LabelRegistry::default();
    for (code, assigned, on_time) in generator::DEPARTMENTS {
        let row = format!("{}{assigned}{on_time}", registry.departments[*code]);
        assert!(text.contains(&row), "{row} is not in the PDF's text");
    }
}
