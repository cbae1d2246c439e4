//! A monthly snapshot: one revision of a month's figures, as downstream report services read it.

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::figures::Figures;
use super::month::Month;

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
    #[serde(with = "month_string")]
    pub month: Month,
    pub timezone: String,
    pub revision: u64,
    pub status: Status,
    pub as_of: Timestamp,
    pub published_at: Timestamp,
    #[serde(flatten)]
    pub figures: Figures,
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

impl Snapshot {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a snapshot always serializes")
    }

    /// The month's report for people, laid out like the office's monthly report.
    pub(crate) fn to_table(&self) -> String {
        let zone = TimeZone::get(&self.timezone).unwrap_or(TimeZone::UTC);
        let f = &self.figures;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Month {} ({}), revision {}, {}; as of {}",
            self.month,
            self.timezone,
            self.revision,
            self.status.code(),
            self.as_of.to_zoned_datetime(zone).strftime("%Y-%m-%d %H:%M %Z")
        );
        let t = &f.totals;
        let _ = writeln!(
            out,
            "Received {}, closed {}, in progress {}, closure rate {:.1}%\n",
            t.received,
            t.closed,
            t.in_progress,
            t.closure_rate * 100.0
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
        counts(
            &mut out,
            "By board",
            f.by_board.iter().map(|(k, v)| (k, v.received, v.closed, v.in_progress)).collect(),
        );
        counts(
            &mut out,
            "By request kind",
            f.by_request_kind.iter().map(|(k, v)| (k, v.received, v.closed, v.in_progress)).collect(),
        );
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
        for (k, d) in departments {
            let _ = writeln!(
                out,
                "  {k:<24}{:>9}{:>9}{:>7}{:>9}{:>9}{:>6}{:>6}",
                d.assigned,
                d.closed_on_time,
                d.closed_late,
                d.in_progress,
                d.overdue,
                d.transferred_in,
                d.transferred_out
            );
        }
        let _ = writeln!(
            out,
            "\nTransfers {}, cases transferred {}, returned to an earlier holder {}",
            f.transfers.total, f.transfers.cases_transferred, f.transfers.returned_cases
        );
        out
    }
}
