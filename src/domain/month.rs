//! Calendar months in the office's time zone.
//!
//! A case belongs to the month of its `created` event in the configured IANA zone, so month
//! boundaries are computed with jiff's time-zone database, never with a fixed offset.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// A calendar month such as `2022-04`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i16,
    month: i8,
}

impl Month {
    pub fn new(year: i16, month: i8) -> Option<Month> {
        (1..=12).contains(&month).then_some(Month { year, month })
    }

    pub(crate) fn year(self) -> i16 {
        self.year
    }

    /// 1 to 12.
    pub(crate) fn number(self) -> i8 {
        self.month
    }

    /// The month that `at` falls in, in zone `tz`.
    pub fn containing(at: Timestamp, tz: &TimeZone) -> Month {
        let date = tz.to_datetime(at).date();
        Month { year: date.year(), month: date.month() }
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month { year: self.year + 1, month: 1 }
        } else {
            Month { year: self.year, month: self.month + 1 }
        }
    }

    pub(crate) fn previous(self) -> Month {
        if self.month == 1 {
            Month { year: self.year - 1, month: 12 }
        } else {
            Month { year: self.year, month: self.month - 1 }
        }
    }

    pub(crate) fn months_before(self, n: u32) -> Month {
        let index = i64::from(self.year) * 12 + i64::from(self.month - 1) - i64::from(n);
        Month { year: index.div_euclid(12) as i16, month: (index.rem_euclid(12) + 1) as i8 }
    }

    /// The first instant of the month in zone `tz`.
    pub fn start(self, tz: &TimeZone) -> Timestamp {
        let date = Date::new(self.year, self.month, 1).expect("a Month is always a valid date");
        // Midnight may not exist in zones that skip it; jiff resolves such gaps forward.
        date.to_zoned_datetime(tz.clone()).expect("the first of a month is in jiff's range").timestamp()
    }

    /// The first instant after the month in zone `tz`.
    pub fn end(self, tz: &TimeZone) -> Timestamp {
        self.next().start(tz)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a month is written YYYY-MM, e.g. 2022-04")]
pub struct ParseMonthError;

impl FromStr for Month {
    type Err = ParseMonthError;
    fn from_str(s: &str) -> Result<Month, ParseMonthError> {
        let (y, m) = s.split_once('-').ok_or(ParseMonthError)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(ParseMonthError);
        }
        let year = y.parse().map_err(|_| ParseMonthError)?;
        let month = m.parse().map_err(|_| ParseMonthError)?;
        Month::new(year, month).ok_or(ParseMonthError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    #[test]
    fn utc_evening_of_april_30_is_may_in_shanghai() {
        let at: Timestamp = "2022-04-30T16:30:00Z".parse().unwrap();
        assert_eq!(Month::containing(at, &shanghai()).to_string(), "2022-05");
        let before: Timestamp = "2022-04-30T15:59:59Z".parse().unwrap();
        assert_eq!(Month::containing(before, &shanghai()).to_string(), "2022-04");
    }

    #[test]
    fn month_bounds_follow_the_zone() {
        let april: Month = "2022-04".parse().unwrap();
        assert_eq!(april.start(&shanghai()).to_string(), "2022-03-31T16:00:00Z");
        assert_eq!(april.end(&shanghai()).to_string(), "2022-04-30T16:00:00Z");
        // New York changes offset inside March: the month's end uses April's offset (EDT).
        let ny = TimeZone::get("America/New_York").unwrap();
        let march: Month = "2022-03".parse().unwrap();
        assert_eq!(march.start(&ny).to_string(), "2022-03-01T05:00:00Z");
        assert_eq!(march.end(&ny).to_string(), "2022-04-01T04:00:00Z");
    }

    #[test]
    fn december_rolls_into_the_next_year() {
        let dec: Month = "2021-12".parse().unwrap();
        assert_eq!(dec.next().to_string(), "2022-01");
        assert_eq!(dec.next().previous(), dec);
        assert_eq!(dec.months_before(12).to_string(), "2020-12");
        assert_eq!(dec.months_before(13).to_string(), "2020-11");
        assert_eq!(dec.months_before(0), dec);
    }

    #[test]
    fn malformed_months_are_rejected() {
        for bad in ["2022-13", "2022-4", "22-04", "2022/04", "", "2022-00"] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }
}
