//! What the core's unit tests share: the reference office's zone, counting rules and registry.

use std::sync::Arc;

use jiff::tz::TimeZone;

use super::case::CountingRules;
use super::event::{Channel, Created};
use super::overflow::Overflow;
use super::province::{Cities, CityCode, CityRules};
use crate::labels::LabelRegistry;

pub fn zone() -> TimeZone {
    CountingRules::reference().zone
}

/// A case created on the phone line under `category`, for `department`.
pub fn phoned(department: &str, category: &str) -> Created {
    Created {
        channel: Channel::Hotline,
        category: category.into(),
        board: None,
        request_kind: None,
        department: Some(department.into()),
        due_at: None,
    }
}

/// The built-in registry, and the configuration's default bound on other codes.
pub fn overflow() -> Overflow {
    Overflow::new(Arc::new(LabelRegistry::default()), crate::config::LabelsConfig::default().unregistered_rows)
}

/// Shanghai time, 15 calendar days to answer an assignment without `due_at`.
pub fn rules() -> CountingRules {
    CountingRules::reference()
}

/// One unnamed city counted by `rules()` and `overflow()`.
pub fn one_city() -> Cities {
    Cities::single(None, CityRules { counting: rules(), overflow: overflow() })
}

/// The unnamed city of `one_city()`.
pub const CITY: CityCode = CityCode::UNNAMED;
