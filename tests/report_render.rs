//! The monthly report as an office prints it: the HTML page rendered by headless Chromium
//! (Debian's `chromium`) to PNG and to PDF, and the PDF's text (`pdftotext`) carrying the
//! reference month's figures. No broker: the month is counted by the core.

mod common;

use std::path::Path;
use std::process::Command;

use hotline::generator;
use hotline::labels::LabelRegistry;
use hotline::report::Report;

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
    let report = Report::new(&generator::reference_snapshot(), None, &LabelRegistry::default(), None, None);
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
    assert!(text.contains("四平市政务服务和数字化建设管理局") && text.contains("4月份12345市长公开电话办理情况"));
    for figure in common::REFERENCE_FIGURES {
        assert!(text.contains(figure), "{figure} is not in the PDF's text:\n{text}");
    }
    for row in common::reference_department_rows() {
        assert!(text.contains(&row.replace(['|', ' '], "")), "{row} is not in the PDF's text");
    }
}

/// The provincial bulletin, printed the same way: every city's figures and rates, the
/// province's row and the red and black lists read back from the PDF.
#[test]
fn the_provincial_bulletin_prints_to_pdf_with_every_figure() {
    use hotline::generator::jilin;
    use hotline::report::bulletin::Bulletin;
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let plans = |month: &str| jilin::plans(month.parse().unwrap(), &zone, 0.02);
    let as_of = "2022-05-05T16:00:00Z".parse().unwrap();
    let april = jilin::province_snapshot(&plans("2022-04"), as_of);
    let march = jilin::province_snapshot(&plans("2022-03"), as_of);
    let bulletin = Bulletin::new(&april, Some(&march), "吉林省", "吉林省政务服务和数字化建设管理局", None);
    let html = bulletin.html();
    assert!(!html.contains("<script") && !html.contains("src="), "nothing runs, nothing is fetched");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bulletin");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("bulletin.html");
    std::fs::write(&page, &html).unwrap();
    let pdf = dir.join("bulletin.pdf");
    chromium(&page, &[&format!("--print-to-pdf={}", pdf.display())]);
    let png = dir.join("bulletin.png");
    chromium(&page, &["--window-size=900,3000", &format!("--screenshot={}", png.display())]);
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));

    let text = Command::new("pdftotext").args(["-layout", pdf.to_str().unwrap(), "-"]).output().expect("pdftotext");
    assert!(text.status.success());
    let text: String = String::from_utf8(text.stdout).unwrap().chars().filter(|c| !c.is_whitespace()).collect();
    assert!(text.contains("吉林省2022年4月份12345热线工单办理情况通报"), "{text}");
    assert_eq!(bulletin.cities.len(), 9);
    for c in bulletin.cities.iter().chain([&bulletin.total]) {
        // A row of the table, as the PDF's text runs it together.
        let row = format!(
            "{}{}{}{}{}",
            c.name,
            c.received,
            c.closed,
            c.in_progress,
            c.rates.iter().map(|r| r.to_string()).collect::<String>()
        );
        assert!(text.contains(&row), "{row} is not in the PDF's text:\n{text}");
    }
    for r in bulletin.top.iter().chain(&bulletin.bottom) {
        let ranked = format!("{}（{:.1}分）", r.name, r.score);
        assert!(text.contains(&ranked), "{ranked} is not in the PDF's text");
    }
    let changes = &bulletin.month_over_month.as_ref().expect("March is given").cities;
    for c in changes {
        let row = format!("{}{}{}{}{}", c.name, c.received.0, c.received.1, c.closure_rate.0, c.closure_rate.1);
        assert!(text.contains(&row), "{row} is not in the PDF's text");
    }
}
