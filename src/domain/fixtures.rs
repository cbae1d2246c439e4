//! What the core's unit tests share: the office's zone and counting rules.

use jiff::ToSpan;
use jiff::tz::TimeZone;

use super::case::CountingRules;

pub fn zone() -> TimeZone {
    TimeZone::get("Asia/Shanghai").expect("the tz database knows Shanghai")
}

/// Shanghai time, 15 calendar days to answer an assignment without `due_at`.
pub fn rules() -> CountingRules {
    CountingRules { zone: zone(), default_sla: 15.days() }
}
