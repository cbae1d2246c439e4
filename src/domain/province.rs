//! The cities one deployment counts: their division codes, the city an event without `city`
//! belongs to, and each city's own counting rules and registry.
//!
//! A case is identified by its city and its id: two cities may use one id for two cases. A
//! single-city deployment counts one city, its default, and every event without `city` is
//! that city's, so events and records of builds before cities mean what they meant.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use jiff::Timestamp;

use super::case::CountingRules;
use super::event::Rejection;
use super::figures::{CityRow, Figures, ProvinceFigures, Tally};
use super::overflow::Overflow;
use super::publisher::MonthFigures;
use super::ranking::RankingRules;

/// A city's administrative division code (GB/T 2260): six digits, the first not zero.
/// `UNNAMED` is the one city of a deployment that does not name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CityCode(u32);

impl CityCode {
    pub const UNNAMED: CityCode = CityCode(0);

    pub fn get(self) -> u32 {
        self.0
    }

    /// A code as written in records (`get()`); `None` for a number that is not one.
    pub(crate) fn from_u32(code: u32) -> Option<CityCode> {
        (100_000..1_000_000).contains(&code).then_some(CityCode(code))
    }
}

impl fmt::Display for CityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a city's administrative division code (six digits, the first not zero)")]
pub struct NotACityCode;

impl FromStr for CityCode {
    type Err = NotACityCode;
    fn from_str(s: &str) -> Result<CityCode, NotACityCode> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NotACityCode);
        }
        s.parse().ok().and_then(CityCode::from_u32).ok_or(NotACityCode)
    }
}

impl TryFrom<String> for CityCode {
    type Error = NotACityCode;
    fn try_from(s: String) -> Result<CityCode, NotACityCode> {
        s.parse()
    }
}

impl From<CityCode> for String {
    fn from(c: CityCode) -> String {
        c.to_string()
    }
}

/// How one city's cases are counted: its deadlines and its registry's codes.
#[derive(Clone, Debug)]
pub(crate) struct CityRules {
    pub counting: CountingRules,
    pub overflow: Overflow,
}

/// The cities a deployment counts. The zone is one for all of them.
#[derive(Clone, Debug)]
pub(crate) struct Cities {
    zone: TimeZone,
    default: Option<CityCode>,
    rules: BTreeMap<CityCode, CityRules>,
}

impl Cities {
    /// One city, `code` or `UNNAMED`, the default.
    pub fn single(code: Option<CityCode>, rules: CityRules) -> Cities {
        let code = code.unwrap_or(CityCode::UNNAMED);
        Cities { zone: rules.counting.zone.clone(), default: Some(code), rules: BTreeMap::from([(code, rules)]) }
    }

    /// Several cities under one zone; events without `city` are `default`'s, if there is one.
    pub fn province(zone: TimeZone, default: Option<CityCode>, rules: BTreeMap<CityCode, CityRules>) -> Cities {
        Cities { zone, default, rules }
    }

    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    pub fn rules(&self, city: CityCode) -> Option<&CityRules> {
        self.rules.get(&city)
    }

    /// The city an event belongs to, from the `city` it named, if any.
    pub fn resolve(&self, named: Option<CityCode>) -> Result<CityCode, Rejection> {
        let city = named.or(self.default).ok_or(Rejection::MissingField("city"))?;
        if self.rules.contains_key(&city) { Ok(city) } else { Err(Rejection::UnknownCity) }
    }

    /// How a record names `city`: not at all for the default city.
    pub fn key(&self, city: CityCode) -> Option<CityCode> {
        (Some(city) != self.default).then_some(city)
    }

    /// The city a record's key names (`None`: the default city); `None` when there is none.
    pub fn of_key(&self, keyed: Option<CityCode>) -> Option<CityCode> {
        keyed.or(self.default)
    }
}

/// A month of the province: each city's tally of it (summed over partitions and folded by
/// the city's registry), by division code, with the city's name.
pub struct ProvinceMonth<'a> {
    pub cities: Vec<(CityCode, &'a str, &'a Tally)>,
}

impl MonthFigures for ProvinceMonth<'_> {
    fn figures(&self, as_of: Timestamp, ranking: &RankingRules) -> Figures {
        ProvinceMonth::figures(self, as_of, ranking)
    }
}

impl ProvinceMonth<'_> {
    /// The sums of the cities' counts, the rates taken from the sums; a row per city; the
    /// cities ranked as departments are. Departments, categories and the pairs that sent cases
    /// back are each city's own codes, so the province adds none of them up.
    pub fn figures(&self, as_of: Timestamp, ranking: &RankingRules) -> Figures {
        let mut sum = Tally::default();
        let mut rows = Vec::with_capacity(self.cities.len());
        for (city, name, tally) in &self.cities {
            sum.merge(tally);
            let f = Tally::figures(tally, as_of);
            rows.push(CityRow {
                city: *city,
                name: (*name).to_owned(),
                totals: f.totals,
                departments: f.all_departments,
            });
        }
        let mut figures = sum.figures(as_of);
        figures.by_category.clear();
        figures.by_department.clear();
        figures.transfers.returned_pairs.clear();
        let departments = rows.iter().map(|r| (r.city.to_string(), r.departments)).collect();
        figures.province = Some(ProvinceFigures { cities: rows, ranking: ranking.rank(&departments) });
        figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{overflow, rules};

    fn code(s: &str) -> CityCode {
        s.parse().unwrap()
    }

    fn city_rules() -> CityRules {
        CityRules { counting: rules(), overflow: overflow() }
    }

    fn jilin(default: Option<&str>) -> Cities {
        let rules = ["220100", "220300", "222400"].map(|c| (code(c), city_rules())).into();
        Cities::province(rules_zone(), default.map(code), rules)
    }

    fn rules_zone() -> TimeZone {
        rules().zone
    }

    #[test]
    fn a_city_code_is_six_digits_not_starting_with_zero() {
        assert_eq!(code("220300").get(), 220300);
        assert_eq!(code("220300").to_string(), "220300");
        for bad in ["", "22030", "2203000", "022030", "22030a", " 220300", "+22030", "２２０３００"] {
            assert_eq!(bad.parse::<CityCode>(), Err(NotACityCode), "{bad:?}");
        }
        assert_eq!(CityCode::from_u32(99_999), None);
        assert_eq!(CityCode::from_u32(222_400), Some(code("222400")));
        let json = serde_json::to_string(&code("222400")).unwrap();
        assert_eq!(json, "\"222400\"");
        assert_eq!(serde_json::from_str::<CityCode>(&json).unwrap(), code("222400"));
        assert!(serde_json::from_str::<CityCode>("\"22240\"").is_err());
    }

    #[test]
    fn an_event_belongs_to_the_city_it_names_or_to_the_default() {
        let with_default = jilin(Some("220300"));
        assert_eq!(with_default.resolve(None), Ok(code("220300")));
        assert_eq!(with_default.resolve(Some(code("222400"))), Ok(code("222400")));
        assert_eq!(with_default.resolve(Some(code("220200"))), Err(Rejection::UnknownCity));

        let without = jilin(None);
        assert_eq!(without.resolve(None), Err(Rejection::MissingField("city")));
        assert_eq!(without.resolve(Some(code("220100"))), Ok(code("220100")));
    }

    #[test]
    fn a_single_city_deployment_counts_events_without_city_and_those_naming_it() {
        let unnamed = Cities::single(None, city_rules());
        assert_eq!(unnamed.resolve(None), Ok(CityCode::UNNAMED));
        assert_eq!(unnamed.resolve(Some(code("220300"))), Err(Rejection::UnknownCity));
        let named = Cities::single(Some(code("220300")), city_rules());
        assert_eq!(named.resolve(None), Ok(code("220300")));
        assert_eq!(named.resolve(Some(code("220300"))), Ok(code("220300")));
        assert_eq!(named.resolve(Some(code("220100"))), Err(Rejection::UnknownCity));
    }

    #[test]
    fn records_name_every_city_but_the_default() {
        let cities = jilin(Some("220300"));
        assert_eq!(cities.key(code("220300")), None);
        assert_eq!(cities.key(code("220100")), Some(code("220100")));
        assert_eq!(cities.of_key(None), Some(code("220300")));
        assert_eq!(cities.of_key(Some(code("220100"))), Some(code("220100")));
        assert_eq!(jilin(None).of_key(None), None);
    }

    /// The tally of April of `cases` cases created for `department`, the first `closed` of
    /// them closed the next day.
    fn april(department: &str, cases: usize, closed: usize) -> Tally {
        use crate::domain::event::{CaseEvent, Change};
        use crate::domain::fixtures::phoned;
        let mut ledger = crate::domain::ledger::Ledger::new(rules());
        for i in 0..cases {
            let event = |n: &str, day: &str, change| CaseEvent {
                event_id: format!("{i}-{n}").into(),
                case_id: format!("{i}").into(),
                city: None,
                occurred_at: format!("2022-04-{day}T02:00:00Z").parse().unwrap(),
                change,
            };
            ledger.apply(&event("c", "10", Change::Created(phoned(department, "water")))).unwrap();
            if i < closed {
                ledger.apply(&event("x", "11", Change::Closed)).unwrap();
            }
        }
        ledger.tally("2022-04".parse().unwrap()).unwrap().clone()
    }

    #[test]
    fn the_provinces_month_sums_its_cities_and_takes_its_rates_from_the_sums() {
        let (changchun, siping) = (april("dept", 30, 10), april("dept", 10, 10));
        let month = ProvinceMonth {
            cities: vec![(code("220100"), "长春市", &changchun), (code("220300"), "四平市", &siping)],
        };
        let as_of = "2022-05-02T00:00:00Z".parse().unwrap();
        let ranking = RankingRules::default();
        let f = month.figures(as_of, &ranking);
        assert_eq!((f.totals.received, f.totals.closed, f.totals.in_progress), (40, 20, 20));
        assert_eq!(f.totals.closure_rate, Some(0.5), "20 of 40, not the mean of 1/3 and 1");
        assert_eq!((f.all_departments.assigned, f.all_departments.closed_on_time), (40, 20));
        assert_eq!(f.by_channel["hotline"].received, 40);
        assert!(f.by_department.is_empty() && f.by_category.is_empty(), "codes are each city's own");
        let p = f.province.unwrap();
        let rows: Vec<_> =
            p.cities.iter().map(|r| (r.city, r.name.as_str(), r.totals.received, r.totals.closed)).collect();
        assert_eq!(rows, [(code("220100"), "长春市", 30, 10), (code("220300"), "四平市", 10, 10)]);
        assert_eq!(p.cities[0].departments, Tally::figures(&changchun, as_of).all_departments);
        let ranked: Vec<_> = p.ranking.top.iter().map(|r| r.department.as_str()).collect();
        assert_eq!(ranked, ["220100", "220300"], "ranked as departments are: all on time, ties to more cases");
        assert_eq!(p.ranking.top[0].score, ranking.score(&p.cities[0].departments).unwrap());
    }
}
