//! `hotline snapshot show`: the latest revision of a month, read back from the snapshots topic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use jiff::tz::TimeZone;
use rdkafka::message::Message;

use crate::avro::{Framing, SnapshotCodec};
use crate::config::{Config, KafkaConfig, Settings};
use crate::domain::figures::{Figures, ProvinceFigures, Ranked};
use crate::domain::month::Month;
use crate::domain::province::CityCode;
use crate::domain::snapshot::{Scope, Snapshot};
use crate::kafka::topics::{key_str, read_to_end};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Json,
    Table,
}

pub async fn show(
    config: &Path,
    month: &str,
    city: Option<&str>,
    province: bool,
    format: Format,
    timeout: Duration,
) -> Result<()> {
    let settings = Config::load(config)?.settings()?;
    let month: Month = month.parse().with_context(|| format!("--month {month:?}"))?;
    let (_, scope) = scope_of(&settings, city, province)?;
    super::reach(&settings.kafka, timeout).await?;
    let kafka = settings.kafka.clone();
    let topic = settings.topics.snapshots.clone();
    let latest = tokio::task::spawn_blocking(move || latest_in(&kafka, &topic, scope, month)).await??;
    let Some(snapshot) = latest else {
        bail!("no snapshot of {month} has been published to {}", settings.topics.snapshots);
    };
    match format {
        Format::Json => println!("{}", snapshot.to_json()),
        Format::Table => print!("{}", table(&snapshot)),
    }
    Ok(())
}

/// Whose snapshots `--city CODE` or `--province` name: the city (one the configuration
/// counts; the default city without either flag; none for the province), and how its
/// snapshots are keyed.
pub(crate) fn scope_of(settings: &Settings, city: Option<&str>, province: bool) -> Result<(Option<CityCode>, Scope)> {
    if province {
        if settings.province.is_none() {
            bail!("--province: the configuration counts a single city; a province's are listed under [cities]");
        }
        return Ok((None, Scope::Province));
    }
    let Some(city) = city else { return Ok((settings.default_city, Scope::City(None))) };
    let code: CityCode = city.parse().with_context(|| format!("--city {city:?}"))?;
    let cities = settings.cities();
    if cities.rules(code).is_none() {
        bail!("--city {code}: the configuration does not count that city");
    }
    Ok((Some(code), Scope::City(cities.key(code))))
}

/// The highest revision of the default city's `month` on the snapshots topic.
pub fn latest(kafka: &KafkaConfig, topic: &str, month: Month) -> Result<Option<Snapshot>> {
    latest_in(kafka, topic, Scope::City(None), month)
}

/// The highest revision of a city's or the province's `month`.
pub fn latest_in(kafka: &KafkaConfig, topic: &str, scope: Scope, month: Month) -> Result<Option<Snapshot>> {
    Ok(latest_of(kafka, topic, scope, &[month])?.remove(&month))
}

/// The highest revision of each of `months` that has one, in one read of the topic.
pub(crate) fn latest_of(
    kafka: &KafkaConfig,
    topic: &str,
    scope: Scope,
    months: &[Month],
) -> Result<BTreeMap<Month, Snapshot>> {
    let codec = SnapshotCodec::new(Framing::SingleObject);
    let keys: Vec<String> = months.iter().map(|m| scope.key(*m)).collect();
    let mut latest: BTreeMap<Month, Snapshot> = BTreeMap::new();
    read_to_end(kafka, topic, Duration::from_secs(30), |m| {
        if !key_str(m).is_some_and(|k| keys.iter().any(|key| key == k)) {
            return Ok(());
        }
        if let Some(bytes) = m.payload() {
            let s =
                codec.decode(bytes).with_context(|| format!("snapshot at offset {} does not decode", m.offset()))?;
            if latest.get(&s.month).is_none_or(|l| s.revision > l.revision) {
                latest.insert(s.month, s);
            }
        }
        Ok(())
    })?;
    Ok(latest)
}

/// A rate as a percentage with one decimal; "—" when there is nothing to measure, as the
/// report prints it.
fn pct(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// The month's report for people, laid out like the office's monthly report.
fn table(snapshot: &Snapshot) -> String {
    let zone = TimeZone::get(&snapshot.timezone).unwrap_or(TimeZone::UTC);
    let f = &snapshot.figures;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Month {} ({}), revision {}, {}; as of {}{}",
        snapshot.month,
        snapshot.timezone,
        snapshot.revision,
        snapshot.status.code(),
        snapshot.as_of.to_zoned_datetime(zone).strftime("%Y-%m-%d %H:%M %Z"),
        match &snapshot.made_by.rules_fingerprint {
            f if f.is_empty() => String::new(),
            f => format!("; rules {f}, build {}", snapshot.made_by.build),
        }
    );
    let t = &f.totals;
    let _ = writeln!(
        out,
        "Received {}, closed {}, in progress {}, closure rate {}\n",
        t.received,
        t.closed,
        t.in_progress,
        pct(t.closure_rate)
    );
    let counts = |out: &mut String, title: &str, rows: Vec<(&String, u64, u64, u64)>| {
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(out, "{title:<28}{:>10}{:>10}{:>12}", "received", "closed", "in progress");
        for (k, r, c, p) in rows {
            let _ = writeln!(out, "  {k:<26}{r:>10}{c:>10}{p:>12}");
        }
        out.push('\n');
    };
    counts(
        &mut out,
        "By channel",
        f.by_channel.iter().map(|(k, v)| (k, v.received, v.closed, v.in_progress)).collect(),
    );
    counts(&mut out, "By board", f.by_board.iter().map(|(k, v)| (k, v.received, v.closed, v.in_progress)).collect());
    counts(
        &mut out,
        "By request kind",
        f.by_request_kind.iter().map(|(k, v)| (k, v.received, v.closed, v.in_progress)).collect(),
    );
    if let Some(province) = &f.province {
        cities(&mut out, province);
    } else {
        departments(&mut out, f);
    }
    let _ = writeln!(
        out,
        "\nTransfers {}, cases transferred {}, returned to an earlier holder {}",
        f.transfers.total, f.transfers.cases_transferred, f.transfers.returned_cases
    );
    for p in &f.provisional_deadlines {
        let _ = writeln!(
            out,
            "Provisional: {} cases have deadlines in {}, which the working-day calendar lacks (counted by weekends \
             alone until it is added)",
            p.cases, p.year
        );
    }
    out
}

/// The province's cities side by side, and their ranking.
fn cities(out: &mut String, province: &ProvinceFigures) {
    let _ = writeln!(
        out,
        "{:<22}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "By city", "received", "closed", "open", "closure", "on time", "sign-for", "return", "reopen", "satisf."
    );
    for row in &province.cities {
        let (t, d) = (&row.totals, &row.departments);
        let _ = writeln!(
            out,
            "  {:<20}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
            format!("{} {}", row.city, row.name),
            t.received,
            t.closed,
            t.in_progress,
            pct(t.closure_rate),
            pct(d.on_time_rate),
            pct(d.sign_for_rate),
            pct(d.return_rate),
            pct(d.reopen_rate),
            pct(d.satisfaction_rate)
        );
    }
    let ranked = |list: &[Ranked]| list.iter().map(|r| format!("{} {:.1}", r.department, r.score)).collect::<Vec<_>>();
    let _ = writeln!(
        out,
        "\nRanked (at least {} cases): best {:?}",
        province.ranking.min_assigned,
        ranked(&province.ranking.top)
    );
    let _ = writeln!(out, "  worst {:?}", ranked(&province.ranking.bottom));
}

/// A city's categories and departments.
fn departments(out: &mut String, f: &Figures) {
    let mut categories: Vec<_> = f.by_category.iter().collect();
    categories.sort_by(|a, b| b.1.received.cmp(&a.1.received).then(a.0.cmp(b.0)));
    let _ = writeln!(out, "{:<28}{:>10}{:>8}", "By category", "received", "share");
    for (k, v) in categories {
        let _ = writeln!(out, "  {k:<26}{:>10}{:>7.1}%", v.received, v.share * 100.0);
    }
    let mut departments: Vec<_> = f.by_department.iter().collect();
    departments.sort_by(|a, b| b.1.assigned.cmp(&a.1.assigned).then(a.0.cmp(b.0)));
    let _ = writeln!(
        out,
        "\n{:<26}{:>9}{:>9}{:>7}{:>9}{:>9}{:>6}{:>6}",
        "By department", "assigned", "on time", "late", "open", "overdue", "in", "out"
    );
    for (k, d) in &departments {
        let _ = writeln!(
            out,
            "  {k:<24}{:>9}{:>9}{:>7}{:>9}{:>9}{:>6}{:>6}",
            d.assigned, d.closed_on_time, d.closed_late, d.in_progress, d.overdue, d.transferred_in, d.transferred_out
        );
    }
    // Contract v2's figures, once a stream has any.
    let all = &f.all_departments;
    if all.has_office_loop() {
        let _ = writeln!(
            out,
            "\n{:<26}{:>8}{:>6}{:>6}{:>6}{:>6}{:>11}{:>9}{:>8}{:>8}{:>8}{:>8}",
            "Sign-for, returns, ratings",
            "signed",
            "late",
            "ret.",
            "ext.",
            "reop.",
            "sat/basic",
            "dissat.",
            "on time",
            "return",
            "reopen",
            "satisf."
        );
        let all_row = [(&"all departments".to_owned(), all)];
        for (k, d) in departments.iter().map(|(k, d)| (*k, *d)).chain(all_row) {
            let _ = writeln!(
                out,
                "  {k:<24}{:>8}{:>6}{:>6}{:>6}{:>6}{:>11}{:>9}{:>8}{:>8}{:>8}{:>8}",
                d.accepted_on_time,
                d.accepted_late,
                d.returned,
                d.extended,
                d.reopened,
                format!("{}/{}", d.satisfied, d.basically_satisfied),
                d.dissatisfied,
                pct(d.on_time_rate),
                pct(d.return_rate),
                pct(d.reopen_rate),
                pct(d.satisfaction_rate)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::figures::DepartmentFigures;
    use crate::domain::snapshot::Status;

    fn snapshot(figures: Figures) -> Snapshot {
        Snapshot {
            city: None,
            month: "2022-04".parse().unwrap(),
            timezone: "Asia/Shanghai".into(),
            revision: 2,
            status: Status::Provisional,
            as_of: "2022-04-20T00:00:00Z".parse().unwrap(),
            published_at: "2022-04-20T00:00:05Z".parse().unwrap(),
            figures,
            made_by: Default::default(),
        }
    }

    #[test]
    fn the_table_shows_contract_v2_figures_once_a_stream_has_any() {
        let v1 = DepartmentFigures { assigned: 4, closed_on_time: 3, closed_late: 1, ..Default::default() };
        let mut figures = Figures::default();
        figures.by_department.insert("tiexi".into(), v1);
        figures.all_departments = v1;
        let printed = table(&snapshot(figures.clone()));
        assert!(printed.contains("tiexi") && !printed.contains("Sign-for"), "{printed}");

        let v2 =
            DepartmentFigures { accepted_on_time: 3, returned: 1, satisfied: 2, dissatisfied: 1, ..v1 }.with_rates();
        figures.by_department.insert("tiexi".into(), v2);
        figures.all_departments = v2;
        let printed = table(&snapshot(figures));
        assert!(printed.contains("Sign-for, returns, ratings"), "{printed}");
        let row = printed.lines().find(|l| l.trim_start().starts_with("all departments")).expect(&printed);
        for cell in ["75.0%", "20.0%", "66.7%", "2/0"] {
            assert!(row.contains(cell), "{cell} missing from {row}");
        }
    }
    #[test]
    fn the_provinces_table_shows_its_cities_side_by_side() {
        use crate::domain::figures::{CityRow, ProvinceFigures, Totals};
        let row = CityRow {
            city: "222400".parse().unwrap(),
            name: "延边朝鲜族自治州".into(),
            totals: Totals::of(500, 450),
            departments: DepartmentFigures {
                closed_on_time: 8,
                closed_late: 2,
                accepted_on_time: 19,
                accepted_late: 1,
                ..Default::default()
            }
            .with_rates(),
        };
        let figures = Figures {
            province: Some(ProvinceFigures { cities: vec![row], ..Default::default() }),
            ..Default::default()
        };
        let printed = table(&snapshot(figures));
        let row = printed.lines().find(|l| l.contains("222400 延边朝鲜族自治州")).expect(&printed);
        for cell in ["500", "450", "90.0%", "80.0%", "95.0%"] {
            assert!(row.contains(cell), "{cell} missing from {row}");
        }
        assert_eq!(
            row.matches('—').count(),
            2,
            "no assignment kept or returned and no rating: nothing to measure: {row}"
        );
        assert!(!printed.contains("By department"), "{printed}");
    }
}
