//! What the core's unit tests share: the reference office's zone and counting rules.

use jiff::tz::TimeZone;

use super::case::CountingRules;

pub fn zone() -> TimeZone {
    CountingRules::reference().zone
}

/// Shanghai time, 15 calendar days to answer an assignment without `due_at`.
pub fn rules() -> CountingRules {
    CountingRules::reference()
}
