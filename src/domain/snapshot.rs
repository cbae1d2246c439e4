//! A monthly snapshot: one revision of a month's figures, as downstream report services read it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::figures::Figures;
use super::month::Month;
use super::province::CityCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The month is still running, or within its grace period.
    Provisional,
    /// Event time has passed the month's end plus grace; later revisions are corrections.
    Closed,
}

impl Status {
    pub fn code(self) -> &'static str {
        match self {
            Status::Provisional => "provisional",
            Status::Closed => "closed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The city, unless it is the deployment's default city.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<CityCode>,
    #[serde(with = "month_string")]
    pub month: Month,
    pub timezone: String,
    pub revision: u64,
    pub status: Status,
    pub as_of: Timestamp,
    pub published_at: Timestamp,
    #[serde(flatten)]
    pub figures: Figures,
    /// Which rules and which build made it (empty in snapshots before schema version 5).
    #[serde(flatten)]
    pub made_by: MadeBy,
}

/// The rules a revision was counted by, and the build that published it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeBy {
    /// SHA-256 of the canonical counting rules (`rules::Rules`), hex.
    #[serde(default)]
    pub rules_fingerprint: String,
    /// The build's version.
    #[serde(default)]
    pub build: String,
}

mod month_string {
    use super::Month;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(m: &Month, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Month, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Whose figures a snapshot carries: a city's (`None`: the deployment's default city), or the
/// province's (province mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    City(Option<CityCode>),
    Province,
}

impl Scope {
    /// The key of its month's snapshots: the month, after the city's code and a slash unless
    /// it is the default city, or after `province/`.
    pub fn key(self, month: Month) -> String {
        match self {
            Scope::City(None) => month.to_string(),
            Scope::City(Some(city)) => format!("{city}/{month}"),
            Scope::Province => format!("province/{month}"),
        }
    }
}

impl Snapshot {
    pub fn scope(&self) -> Scope {
        if self.figures.province.is_some() { Scope::Province } else { Scope::City(self.city) }
    }

    pub fn key(&self) -> String {
        self.scope().key(self.month)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a snapshot always serializes")
    }
}
