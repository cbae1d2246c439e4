//! The counting rules a deployment counts by, in a canonical form, and their fingerprint: the
//! SHA-256 of that form's JSON (keys sorted, no spaces). Every snapshot names the fingerprint
//! of the rules that made it, with the build's version, so a published figure can be traced to
//! its rules, and `hotline rules --config FILE` prints both for an office to record.
//!
//! The form holds what the figures depend on: the zone; the deadlines (`[sla]`: the default,
//! the sign-for window, the working days by request kind and, with them, every year of the
//! working-day calendar as its holidays and worked weekends); the registry (departments and
//! categories with their names and groups, and how many codes outside it keep rows of their
//! own); and the ranking's bound, size and weights. A province's form holds each city's, and
//! the city events without `city` belong to.

use std::collections::BTreeMap;

use jiff::Span;
use jiff::civil::{Date, Weekday};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{CitySettings, Settings};
use crate::domain::calendar::WorkCalendar;
use crate::domain::case::CountingRules;
use crate::domain::event::RequestKind;
use crate::domain::ranking::RankingRules;
use crate::labels::LabelRegistry;

/// The version of the build that publishes.
pub const BUILD: &str = env!("CARGO_PKG_VERSION");

/// Rules in their canonical form, and its fingerprint.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub canonical: Value,
    /// SHA-256 of `canonical`'s compact JSON, in hex.
    pub fingerprint: String,
}

impl Rules {
    fn of(canonical: Value) -> Rules {
        let text = serde_json::to_string(&canonical).expect("JSON values serialize");
        let fingerprint = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        Rules { canonical, fingerprint }
    }

    /// The province's: each of its cities', by division code.
    pub fn of_province(settings: &Settings) -> Rules {
        let cities: serde_json::Map<String, Value> =
            settings.cities.iter().map(|c| (c.code.to_string(), city_of(settings, c))).collect();
        let default_city = settings.default_city.map(|c| c.to_string());
        Rules::of(json!({"province": cities, "default_city": default_city}))
    }

    /// The rules of the whole deployment: the province's in province mode, else its city's.
    pub fn of_settings(settings: &Settings) -> Rules {
        match settings.province {
            Some(_) => Rules::of_province(settings),
            None => Rules::of(city_of(settings, &settings.cities[0])),
        }
    }

    /// Each city's rules, as its snapshots name them.
    pub fn of_cities(settings: &Settings) -> Vec<(&CitySettings, Rules)> {
        settings.cities.iter().map(|c| (c, Rules::of(city_of(settings, c)))).collect()
    }
}

fn city_of(settings: &Settings, c: &CitySettings) -> Value {
    city(&settings.zone_name, &c.rules, &c.labels, settings.unregistered_rows, &settings.ranking)
}

fn city(
    zone: &str,
    counting: &CountingRules,
    registry: &LabelRegistry,
    unregistered_rows: usize,
    ranking: &RankingRules,
) -> Value {
    let working_days: BTreeMap<&str, u16> = match &counting.working_days {
        None => BTreeMap::new(),
        Some(w) => RequestKind::ALL.iter().filter_map(|k| Some((k.code(), w.by_kind[*k as usize]?))).collect(),
    };
    let calendar = counting.working_days.as_ref().map(|w| calendar(&w.calendar));
    let categories: BTreeMap<&String, Value> =
        registry.categories.iter().map(|(code, c)| (code, json!({"name": c.name, "group": c.group}))).collect();
    let w = &ranking.weights;
    json!({
        "zone": zone,
        "sla": {
            "default": span(counting.default_sla),
            "accept": span(counting.accept_within),
            "working_days": working_days,
            "calendar": calendar,
        },
        "registry": {
            "departments": registry.departments,
            "categories": categories,
            "unregistered_rows": unregistered_rows,
        },
        "ranking": {
            "min_assigned": ranking.min_assigned,
            "size": ranking.size,
            "weights": {
                "on_time": w.on_time, "satisfaction": w.satisfaction, "sign_for": w.sign_for,
                "returns": w.returns, "reopens": w.reopens,
            },
        },
    })
}

/// A span in one spelling for each length: weeks as 7 days, and the clock units (hours to
/// nanoseconds) balanced from the largest, so `2h` and `120m` are one rule. Days stay days
/// and months months: a calendar day is not always 24 hours.
fn span(s: Span) -> String {
    let nanos = i128::from(s.get_hours()) * 3_600_000_000_000
        + i128::from(s.get_minutes()) * 60_000_000_000
        + i128::from(s.get_seconds()) * 1_000_000_000
        + i128::from(s.get_milliseconds()) * 1_000_000
        + i128::from(s.get_microseconds()) * 1_000
        + i128::from(s.get_nanoseconds());
    let (hours, rest) = (nanos / 3_600_000_000_000, nanos % 3_600_000_000_000);
    let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let (seconds, nanos) = (rest / 1_000_000_000, rest % 1_000_000_000);
    let days = i64::from(s.get_days()) + 7 * i64::from(s.get_weeks());
    let balanced = Span::new()
        .try_years(s.get_years())
        .and_then(|b| b.try_months(s.get_months()))
        .and_then(|b| b.try_days(days))
        .and_then(|b| b.try_hours(hours as i64))
        .and_then(|b| b.try_minutes(minutes as i64))
        .and_then(|b| b.try_seconds(seconds as i64))
        .and_then(|b| b.try_nanoseconds(nanos as i64));
    // A span too long to balance is written as given.
    balanced.unwrap_or(s).to_string()
}

/// Each year of the calendar as its weekdays off and weekend days worked, `MM-DD`.
fn calendar(calendar: &WorkCalendar) -> Value {
    let mut years = serde_json::Map::new();
    for year in calendar.years() {
        let (mut holidays, mut worked) = (Vec::new(), Vec::new());
        let mut day = Date::new(year, 1, 1).expect("calendar years are from 2000 to 2100");
        while day.year() == year {
            let weekend = matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
            let working = calendar.is_working_day(day).expect("a year of the calendar");
            let md = format!("{:02}-{:02}", day.month(), day.day());
            match (weekend, working) {
                (false, false) => holidays.push(md),
                (true, true) => worked.push(md),
                _ => {}
            }
            day = day.tomorrow().expect("within the year");
        }
        years.insert(year.to_string(), json!({"holidays": holidays, "working_weekends": worked}));
    }
    Value::Object(years)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(sections: &str) -> Settings {
        Config::parse(&format!("[kafka]\nbrokers = \"a:1\"\n{sections}"), []).unwrap().settings().unwrap()
    }

    fn fingerprint(sections: &str) -> String {
        Rules::of_cities(&settings(sections))[0].1.fingerprint.clone()
    }

    #[test]
    fn the_fingerprint_moves_with_every_rule_and_only_with_them() {
        let base = fingerprint("");
        assert_eq!(base.len(), 64);
        assert_eq!(fingerprint(""), base, "the same rules, the same fingerprint");
        assert_eq!(fingerprint("[snapshot]\nmin_interval = \"5s\"\n"), base, "not a counting rule");
        for changed in [
            "[sla]\ndefault = \"10d\"\n",
            "[sla]\naccept = \"1h\"\n",
            "[sla.working_days]\nhelp = 3\n",
            "[ranking]\nmin_assigned = 20\n",
            "[ranking.weights]\non_time = 0.5\n",
            "[time]\nzone = \"Asia/Urumqi\"\n",
            "[labels]\nunregistered_rows = 10\n",
        ] {
            assert_ne!(fingerprint(changed), base, "{changed}");
        }
        // A year added to the calendar is a change of the rules.
        let calendar = format!(
            "{}\n[2027]\nnotice = \"test\"\nholidays = [\"01-01\"]\nworking_weekends = []\n",
            crate::domain::calendar::BUILT_IN
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calendar.toml");
        std::fs::write(&path, calendar).unwrap();
        let days = "[sla.working_days]\nhelp = 3\n";
        let with_2027 = format!("[sla]\ncalendar = {:?}\n{days}", path.display().to_string());
        assert_ne!(fingerprint(&with_2027), fingerprint(days));
    }

    #[test]
    fn one_length_spelled_two_ways_is_one_rule() {
        assert_eq!(fingerprint("[sla]\naccept = \"120m\"\n"), fingerprint("[sla]\naccept = \"2h\"\n"));
        assert_eq!(fingerprint("[sla]\naccept = \"5400s\"\n"), fingerprint("[sla]\naccept = \"1h30m\"\n"));
        assert_eq!(fingerprint("[sla]\ndefault = \"2w\"\n"), fingerprint("[sla]\ndefault = \"14d\"\n"));
        assert_ne!(
            fingerprint("[sla]\ndefault = \"1d\"\n"),
            fingerprint("[sla]\ndefault = \"24h\"\n"),
            "a day is a date"
        );
        let settings = settings("[sla]\naccept = \"120m\"\n");
        let c = &Rules::of_cities(&settings)[0].1.canonical;
        assert_eq!(c["sla"]["accept"], "PT2H", "written as the shipped configuration's 2h was");
    }

    #[test]
    fn the_canonical_form_reads_as_the_rules() {
        let settings = settings("[sla.working_days]\nhelp = 3\n");
        let c = &Rules::of_cities(&settings)[0].1.canonical;
        assert_eq!(c["zone"], "Asia/Shanghai");
        assert_eq!(c["sla"]["working_days"]["help"], 3);
        assert_eq!(c["sla"]["calendar"]["2022"]["working_weekends"][0], "01-29");
        assert_eq!(c["registry"]["departments"]["tiexi_district"], "铁西区政府");
        assert_eq!(c["ranking"]["weights"]["on_time"], 0.3);
    }
}
