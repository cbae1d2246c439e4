//! Every publisher of a deployment: a `Publisher` per city and, in province mode, the
//! province's, whose month is its cities' sums with a row for each city. The live publishing
//! stage and `hotline recount` both ask it which revisions are due.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use jiff::Timestamp;

use super::figures::Tally;
use super::month::Month;
use super::province::{CityCode, ProvinceMonth};
use super::publisher::Publisher;
use super::snapshot::{Scope, Snapshot};

/// Each city's month's sum over the counting partitions (`CityView::sums`).
pub(crate) type Sums = BTreeMap<(CityCode, Month), Tally>;

#[derive(Debug)]
pub(crate) struct Publishers {
    /// A publisher per city, by city code.
    cities: BTreeMap<CityCode, Publisher>,
    /// Province mode: the province's publisher, and the name of each city, for its row.
    province: Option<(Publisher, BTreeMap<CityCode, String>)>,
}

/// A month whose first revision under these rules followed one counted by other rules.
#[derive(Debug, PartialEq)]
pub(crate) struct RulesChange {
    pub key: String,
    pub before: String,
    pub now: String,
}

impl Publishers {
    pub fn new(
        cities: BTreeMap<CityCode, Publisher>,
        province: Option<(Publisher, BTreeMap<CityCode, String>)>,
    ) -> Publishers {
        Publishers { cities, province }
    }

    /// The publisher of `city`'s months.
    pub fn city(&self, city: CityCode) -> Option<&Publisher> {
        self.cities.get(&city)
    }

    /// Remembers a revision read back from the snapshots topic: `city` is the city it names
    /// (`None` for the province's), so numbering continues.
    pub fn restore(&mut self, city: Option<CityCode>, snapshot: &Snapshot) {
        let publisher = match (snapshot.scope(), city) {
            (Scope::Province, _) => self.province.as_mut().map(|(p, _)| p),
            (Scope::City(_), Some(city)) => self.cities.get_mut(&city),
            (Scope::City(_), None) => None,
        };
        if let Some(publisher) = publisher {
            publisher.restore(snapshot.month, snapshot);
        }
    }

    /// Forgets the months before `kept_from` (past the retention).
    pub fn forget_before(&mut self, kept_from: Month) {
        for publisher in self.cities.values_mut().chain(self.province.as_mut().map(|(p, _)| p)) {
            publisher.forget_before(kept_from);
        }
    }

    /// Whether `month` is closed at `watermark`: all publishers share the zone and grace.
    pub fn is_closed(&self, month: Month, watermark: Timestamp) -> bool {
        self.cities.values().next().is_some_and(|p| p.is_closed(month, watermark))
    }

    /// The revisions due now of the months `wanted` holds, each city's and then the
    /// province's, with the city each names (`None`: the province).
    pub fn due(
        &mut self,
        sums: &Sums,
        watermark: Option<Timestamp>,
        now: Instant,
        published_at: Timestamp,
        wanted: impl Fn(Month) -> bool,
    ) -> Vec<(Option<CityCode>, Snapshot)> {
        let mut due = Vec::new();
        for (&city, publisher) in &mut self.cities {
            let months = sums.iter().filter(|((c, m), _)| *c == city && wanted(*m)).map(|((_, m), t)| (*m, t));
            due.extend(publisher.due(months, watermark, now, published_at).into_iter().map(|s| (Some(city), s)));
        }
        if let Some((province, names)) = &mut self.province {
            // Every city has its row, a city without cases in the month a row of zeros.
            let empty = Tally::default();
            let held: BTreeSet<Month> = sums.keys().map(|(_, m)| *m).filter(|m| wanted(*m)).collect();
            let months = held.into_iter().map(|month| {
                let cities = names
                    .iter()
                    .map(|(city, name)| (*city, name.as_str(), sums.get(&(*city, month)).unwrap_or(&empty)))
                    .collect();
                (month, ProvinceMonth { cities })
            });
            due.extend(province.due(months, watermark, now, published_at).into_iter().map(|s| (None, s)));
        }
        due
    }

    /// The months given their first revision under these rules since the last call, whose
    /// latest revision before was counted by other rules.
    pub fn take_rules_changes(&mut self) -> Vec<RulesChange> {
        let cities = self.cities.values_mut().map(|p| (Scope::City(p.city_key()), p));
        let province = self.province.as_mut().map(|(p, _)| (Scope::Province, p));
        let mut changes = Vec::new();
        for (scope, publisher) in cities.chain(province) {
            let now = publisher.made_by().rules_fingerprint.clone();
            for (month, before) in publisher.take_rules_changes() {
                changes.push(RulesChange { key: scope.key(month), before, now: now.clone() });
            }
        }
        changes
    }
}
