//! Working days, for deadlines counted in them: Monday to Friday, minus the official
//! holidays, plus the weekend days worked in exchange (调休), from a calendar of published
//! years (`config/calendar.toml`).
//!
//! The State Council publishes a year's holidays only weeks before it begins, so a deadline
//! may need days of a year the calendar lacks. Such a deadline is counted by weekends alone
//! and says so (`Deadline::provisional`): counting never stops for it, the figures it decides
//! are marked, and once the year is added, the next start counts it again by the calendar.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

/// The calendar `hotline` ships: the State Council's notices from 2022 on.
pub const BUILT_IN: &str = include_str!("../../config/calendar.toml");

/// Each year's working days, one bit per day of the year.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkCalendar {
    years: BTreeMap<i16, [u64; 6]>,
}

/// A day of a year the calendar lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the working-day calendar lacks the year {0}")]
pub struct MissingYear(pub i16);

/// When a deadline counted in working days falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub at: Timestamp,
    /// The first year it needed that the calendar lacks, whose days were counted by weekends
    /// alone: the deadline may move once that year is published.
    pub provisional: Option<i16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishedYear {
    /// Which notice the year comes from; for the reader.
    #[allow(dead_code)]
    notice: String,
    holidays: Vec<String>,
    working_weekends: Vec<String>,
}

impl Default for WorkCalendar {
    fn default() -> WorkCalendar {
        WorkCalendar::parse(BUILT_IN).expect("the built-in calendar is valid")
    }
}

impl WorkCalendar {
    /// Reads and checks a calendar: each year's dates exist in it, ranges run forward, worked
    /// days are Saturdays or Sundays, and no day is both a holiday and worked.
    pub fn parse(text: &str) -> Result<WorkCalendar> {
        let published: BTreeMap<String, PublishedYear> = toml::from_str(text)?;
        let mut years = BTreeMap::new();
        for (key, year) in published {
            let y: i16 = key
                .parse()
                .ok()
                .filter(|y| (2000..=2100).contains(y))
                .with_context(|| format!("[{key}] is not a year from 2000 to 2100"))?;
            let holidays = days(y, &year.holidays).with_context(|| format!("[{key}] holidays"))?;
            let worked = days(y, &year.working_weekends).with_context(|| format!("[{key}] working_weekends"))?;
            let mut bits = [0u64; 6];
            let mut day = Date::new(y, 1, 1)?;
            while day.year() == y {
                let weekend = matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
                let working = if worked.contains(&day) {
                    ensure!(weekend, "[{key}] working_weekends: {day} is a {:?}, not a weekend day", day.weekday());
                    ensure!(!holidays.contains(&day), "[{key}]: {day} is both a holiday and a working weekend");
                    true
                } else {
                    !weekend && !holidays.contains(&day)
                };
                let i = usize::try_from(day.day_of_year() - 1).expect("days of a year are positive");
                if working {
                    bits[i / 64] |= 1 << (i % 64);
                }
                day = day.tomorrow()?;
            }
            years.insert(y, bits);
        }
        ensure!(!years.is_empty(), "the calendar has no year");
        Ok(WorkCalendar { years })
    }

    /// The years the calendar covers.
    pub fn years(&self) -> impl Iterator<Item = i16> + '_ {
        self.years.keys().copied()
    }

    pub fn is_working_day(&self, day: Date) -> Result<bool, MissingYear> {
        let bits = self.years.get(&day.year()).ok_or(MissingYear(day.year()))?;
        let i = usize::try_from(day.day_of_year() - 1).expect("days of a year are positive");
        Ok(bits[i / 64] & (1 << (i % 64)) != 0)
    }

    /// Midnight ending the `n`th working day after the day of `assigned` in `zone`; the days
    /// of years the calendar lacks counted by weekends alone.
    pub fn deadline(&self, assigned: Timestamp, n: u16, zone: &TimeZone) -> Deadline {
        let mut day = assigned.to_zoned_datetime(zone.clone()).date();
        let mut left = n;
        let mut provisional = None;
        let never = Deadline { at: Timestamp::MAX, provisional: None };
        while left > 0 {
            let Ok(tomorrow) = day.tomorrow() else { return never };
            day = tomorrow;
            let worked = self.is_working_day(day).unwrap_or_else(|MissingYear(year)| {
                provisional = provisional.or(Some(year));
                !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
            });
            if worked {
                left -= 1;
            }
        }
        let Ok(end) = day.tomorrow() else { return never };
        let at = end.to_zoned_datetime(zone.clone()).map(|z| z.timestamp()).unwrap_or(Timestamp::MAX);
        Deadline { at, provisional }
    }
}

/// The dates of "MM-DD" and "MM-DD..MM-DD" entries in `year`.
fn days(year: i16, entries: &[String]) -> Result<Vec<Date>> {
    let date = |md: &str| -> Result<Date> {
        let (m, d) = md.split_once('-').with_context(|| format!("{md:?} is not MM-DD"))?;
        let (m, d): (i8, i8) = (m.parse()?, d.parse()?);
        Date::new(year, m, d).with_context(|| format!("{md:?} is not a day of {year}"))
    };
    let mut days = Vec::new();
    for entry in entries {
        let (first, last) = match entry.split_once("..") {
            Some((a, b)) => (date(a)?, date(b)?),
            None => (date(entry)?, date(entry)?),
        };
        if last < first {
            bail!("{entry:?} runs backwards");
        }
        let mut day = first;
        while day <= last {
            days.push(day);
            day = day.tomorrow()?;
        }
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    #[test]
    fn the_2022_holidays_and_swapped_weekends() {
        let c = WorkCalendar::default();
        let working = |d: &str| c.is_working_day(day(d)).unwrap();
        // Qingming: Saturday 2 April worked, 3-5 April off.
        assert!(working("2022-04-02"));
        for d in ["2022-04-03", "2022-04-04", "2022-04-05"] {
            assert!(!working(d), "{d}");
        }
        assert!(working("2022-04-06"));
        // Labour Day: 30 April to 4 May off, Sunday 24 April and Saturday 7 May worked.
        for d in ["2022-04-30", "2022-05-01", "2022-05-02", "2022-05-03", "2022-05-04"] {
            assert!(!working(d), "{d}");
        }
        assert!(working("2022-04-24"));
        assert!(working("2022-05-07"));
        // An ordinary weekend and weekday.
        assert!(!working("2022-04-09") && !working("2022-04-10"));
        assert!(working("2022-04-11"));
    }

    #[test]
    fn every_published_year_from_2022_is_built_in() {
        let c = WorkCalendar::default();
        assert_eq!(c.years().collect::<Vec<_>>(), [2022, 2023, 2024, 2025, 2026]);
        // One edge of each later year.
        assert!(!c.is_working_day(day("2023-06-22")).unwrap());
        assert!(c.is_working_day(day("2023-06-25")).unwrap());
        assert!(c.is_working_day(day("2024-02-18")).unwrap());
        assert!(!c.is_working_day(day("2025-10-08")).unwrap());
        assert!(c.is_working_day(day("2026-01-04")).unwrap());
        assert!(!c.is_working_day(day("2026-02-23")).unwrap());
    }

    #[test]
    fn a_deadline_is_midnight_ending_the_nth_working_day_after_the_assignment() {
        let c = WorkCalendar::default();
        let deadline = |at: &str, n| c.deadline(at.parse().unwrap(), n, &shanghai()).at.to_string();
        // Friday 1 April 2022, 10:00 in Shanghai: the next working day is Saturday 2 April.
        assert_eq!(deadline("2022-04-01T02:00:00Z", 1), "2022-04-02T16:00:00Z");
        // Then 3-5 April are off: the 2nd working day after is Wednesday 6 April.
        assert_eq!(deadline("2022-04-01T02:00:00Z", 2), "2022-04-06T16:00:00Z");
        // Friday 29 April, 5 working days: 5, 6, 7 (a Saturday worked), 9 and 10 May.
        assert_eq!(deadline("2022-04-29T02:00:00Z", 5), "2022-05-10T16:00:00Z");
        // The day is the zone's: 23:30 in Shanghai on Friday 8 April is still that Friday.
        assert_eq!(deadline("2022-04-08T15:30:00Z", 1), "2022-04-11T16:00:00Z");
    }

    #[test]
    fn a_year_the_calendar_lacks_counts_by_weekends_and_says_so() {
        let c = WorkCalendar::default();
        assert_eq!(c.is_working_day(day("2021-05-10")), Err(MissingYear(2021)));
        let deadline = |n| c.deadline("2026-12-28T02:00:00Z".parse().unwrap(), n, &shanghai());
        // Monday 28 December 2026, 3 working days: 29, 30 and 31 December, all in the calendar.
        assert_eq!(deadline(3), Deadline { at: "2026-12-31T16:00:00Z".parse().unwrap(), provisional: None });
        // 5: 29-31 December, then Friday 1 January 2027 and Monday 4 January by weekends alone,
        // until 2027's holidays are published (New Year's Day will likely be one).
        let five = deadline(5);
        assert_eq!(five, Deadline { at: "2027-01-04T16:00:00Z".parse().unwrap(), provisional: Some(2027) });
        // A calendar that has the year gives the same day without the mark, or another.
        let with_2027 = WorkCalendar::parse(&format!(
            "{BUILT_IN}\n[2027]\nnotice = \"test\"\nholidays = [\"01-01\"]\nworking_weekends = []\n"
        ))
        .unwrap();
        let counted = with_2027.deadline("2026-12-28T02:00:00Z".parse().unwrap(), 5, &shanghai());
        assert_eq!(counted, Deadline { at: "2027-01-05T16:00:00Z".parse().unwrap(), provisional: None });
        // The end of time is never a panic.
        assert_eq!(c.deadline(Timestamp::MAX, 5, &shanghai()).at, Timestamp::MAX);
    }

    #[test]
    fn a_calendar_that_contradicts_itself_is_refused() {
        let err = |text: &str| format!("{:#}", WorkCalendar::parse(text).unwrap_err());
        let year = |holidays: &str, worked: &str| {
            format!("[2022]\nnotice = \"n\"\nholidays = [{holidays}]\nworking_weekends = [{worked}]\n")
        };
        assert!(err(&year("", "\"04-04\"")).contains("2022-04-04 is a Monday"));
        assert!(err(&year("\"04-02\"", "\"04-02\"")).contains("both a holiday and a working weekend"));
        assert!(err(&year("\"02-30\"", "")).contains("not a day of 2022"));
        assert!(err(&year("\"05-04..05-01\"", "")).contains("runs backwards"));
        assert!(err("[1999]\nnotice = \"n\"\nholidays = []\nworking_weekends = []\n").contains("not a year"));
        assert!(err("").contains("no year"));
    }
}
