//! The office's monthly report, made from a snapshot as any subscriber could make it: the
//! reference report's structure and wording (the intake paragraph by channel, the totals, the
//! category groups with their shares, the two-column department table), in Markdown, HTML or JSON.
//! Pure: the shell reads the snapshots and writes the result.
//!
//! The prose sections are the office's own, written from case content that `hotline` never
//! keeps: they come from a notes file, or stand as titled placeholders.

use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::domain::figures::{DepartmentFigures, ON_TIME, ProvisionalDeadlines, RETURN, SATISFACTION, SIGN_FOR, Share};
use crate::domain::overflow::UNREGISTERED;
use crate::domain::snapshot::{MadeBy, Snapshot, Status};
use crate::labels::LabelRegistry;

pub mod bulletin;
pub mod diff;

/// The group that gathers every category without a named group of its own.
pub(crate) const OTHER_GROUP: &str = "其它";

/// Everything the report says, in the order it says it; `markdown()` lays it out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub office: String,
    pub line: String,
    /// The publication date, printed 2022年5月6日.
    pub date: Date,
    pub year: i16,
    pub month: i8,
    pub revision: u64,
    pub closed: bool,
    pub channels: Vec<ChannelLine>,
    pub received: u64,
    pub closed_cases: u64,
    pub in_progress: u64,
    pub closure_rate: Percent,
    pub groups: Vec<GroupLine>,
    pub departments: Vec<DepartmentRow>,
    pub sections: Vec<Section>,
    /// Cases sent back to a department that had held them: how many, and the pairs that sent
    /// most back (at most `RETURN_ROWS`).
    pub returned_cases: u64,
    pub returns: Vec<ReturnRow>,
    /// Contract v2's figures, when the month has any.
    pub service: Option<Service>,
    pub month_over_month: Option<MonthOverMonth>,
    /// Years the working-day calendar lacks that some deadline needed, with their cases: the
    /// report says those figures are provisional.
    pub provisional_deadlines: Vec<ProvisionalDeadlines>,
    /// The rules the figures were counted by, and the build (`hotline rules` prints them).
    pub made_by: MadeBy,
}

/// Sign-for, returns, reopens and satisfaction (contract v2), and the red and black lists.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Service {
    /// In the department table's order, and all departments last.
    pub rows: Vec<ServiceRow>,
    pub total: ServiceRow,
    /// Departments with fewer cases are not ranked.
    pub min_assigned: u64,
    pub top: Vec<RankRow>,
    pub bottom: Vec<RankRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceRow {
    pub name: String,
    pub accepted_on_time: Percent,
    pub on_time: Percent,
    pub returned: u64,
    pub return_rate: Percent,
    pub reopened: u64,
    pub satisfaction: Percent,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RankRow {
    pub name: String,
    pub score: f64,
    pub assigned: u64,
}

/// Pairs of departments listed in the report's buck-passing table.
pub(crate) const RETURN_ROWS: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReturnRow {
    /// The department that sent cases back.
    pub from: String,
    /// The department they came back to.
    pub to: String,
    pub cases: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelLine {
    pub channel: &'static str,
    pub received: u64,
    pub closed: u64,
    /// The leader board's sections: the party secretary's and the mayor's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boards: Option<(u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupLine {
    pub group: String,
    /// As the sentence names it, before "问题".
    pub label: String,
    pub received: u64,
    /// Of the month's cases.
    pub share: Percent,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DepartmentRow {
    pub code: String,
    /// The registry's name, or the code when the registry has none.
    pub name: String,
    pub assigned: u64,
    pub closed_on_time: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Section {
    pub title: String,
    /// The office's text; `None` stands as a placeholder.
    pub body: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MonthOverMonth {
    pub previous: String,
    pub received: (u64, u64),
    pub closure_rate: (Percent, Percent),
    /// Each group of this month: its count this month and the month before.
    pub groups: Vec<(String, u64, u64)>,
}

/// A share in tenths of a percent, halves rounded up in integers (no float rounding to even):
/// 10,059 of 31,681 is 31.8%; `None` when there is nothing to measure. Tables print it `31.8%`
/// or `—`; JSON carries the percent as a number (31.8) or null.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percent(Option<u64>);

impl Percent {
    pub(crate) fn of(part: u64, whole: u64) -> Percent {
        Percent(tenths(part, whole))
    }

    pub(crate) fn tenths(self) -> Option<u64> {
        self.0
    }

    /// The digits prose prints before its `%`: "31.8", and "0.0" of nothing.
    pub(crate) fn digits(self) -> String {
        let tenths = self.0.unwrap_or(0);
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => write!(f, "{}%", self.digits()),
            None => f.write_str("—"),
        }
    }
}

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(tenths) => serializer.serialize_f64(tenths as f64 / 10.0),
            None => serializer.serialize_none(),
        }
    }
}

/// `part` of `whole` in percent to one decimal, as prose prints it: "31.8" ("0.0" of nothing).
fn percent(part: u64, whole: u64) -> String {
    Percent::of(part, whole).digits()
}

/// The date a report is dated, as it prints it: 2022年5月6日.
fn chinese(date: Date) -> String {
    format!("{}年{}月{}日", date.year(), date.month(), date.day())
}

/// `part` of `whole` in tenths of a percent, halves rounded up (`percent`); `None` of nothing.
fn tenths(part: u64, whole: u64) -> Option<u64> {
    (whole > 0).then(|| ((u128::from(part) * 1000 + u128::from(whole) / 2) / u128::from(whole)) as u64)
}

impl ServiceRow {
    /// The figures after the name, in the table's order.
    fn cells(&self) -> [String; 6] {
        [
            self.accepted_on_time.to_string(),
            self.on_time.to_string(),
            self.returned.to_string(),
            self.return_rate.to_string(),
            self.reopened.to_string(),
            self.satisfaction.to_string(),
        ]
    }
}

impl Service {
    /// The red and the black list, each as its title and its departments with their scores.
    fn lists(&self, name: impl Fn(&str) -> String) -> Vec<(&'static str, String)> {
        [("红榜", &self.top), ("黑榜", &self.bottom)]
            .into_iter()
            .filter(|(_, list)| !list.is_empty())
            .map(|(title, list)| {
                let names: Vec<String> =
                    list.iter().map(|r| format!("{}（{:.1}分）", name(&r.name), r.score)).collect();
                (title, names.join("、"))
            })
            .collect()
    }
}

fn rate(d: &DepartmentFigures, share: Share) -> Percent {
    let (part, whole) = share(d);
    Percent::of(part, whole)
}

fn service_row(name: String, d: &DepartmentFigures) -> ServiceRow {
    ServiceRow {
        name,
        accepted_on_time: rate(d, SIGN_FOR),
        on_time: rate(d, ON_TIME),
        returned: d.returned,
        return_rate: rate(d, RETURN),
        reopened: d.reopened,
        satisfaction: rate(d, SATISFACTION),
    }
}

/// A table cell's text in Markdown: a `|` would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The report group of each category: its registry group, or 其它.
fn group_of<'a>(registry: &'a LabelRegistry, category: &str) -> &'a str {
    registry.categories.get(category).map_or(OTHER_GROUP, |c| c.group.as_str())
}

/// The month's cases by report group, largest first, 其它 last; the counts sum to the total.
fn by_group(snapshot: &Snapshot, registry: &LabelRegistry) -> Vec<(String, u64)> {
    let mut by_group: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (category, counts) in &snapshot.figures.by_category {
        let group = by_group.entry(group_of(registry, category)).or_default();
        *group = group.saturating_add(counts.received);
    }
    let other = by_group.remove(OTHER_GROUP);
    let mut named: Vec<(String, u64)> = by_group.into_iter().map(|(g, n)| (g.to_owned(), n)).collect();
    named.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    named.extend(other.map(|n| (OTHER_GROUP.to_owned(), n)));
    named
}

/// What each prose section's `## ` heading in the notes must name.
const SECTION_WORDS: [&[&str]; 3] = [&["突出"], &["意见", "建议"], &["解决"]];

/// The parts of the office's notes that fill no section, to warn about: each `## ` heading
/// naming none of the sections' subjects, and text before the first heading.
pub fn unused_notes(notes: &str) -> Vec<String> {
    let mut unused = Vec::new();
    let before = notes.lines().take_while(|l| !l.starts_with("## ")).any(|l| !l.trim().is_empty());
    if before {
        unused.push("(text before the first `## ` heading)".to_owned());
    }
    for heading in notes.lines().filter_map(|l| l.strip_prefix("## ")) {
        if !SECTION_WORDS.iter().any(|words| words.iter().any(|w| heading.contains(w))) {
            unused.push(heading.trim().to_owned());
        }
    }
    unused
}

/// The three prose sections, from the office's Markdown notes where they have them: a
/// section is the text under a `## ` heading naming its subject (突出, 建议 or 意见, 解决).
fn sections(month: i8, notes: Option<&str>) -> Vec<Section> {
    let titles = [
        (format!("一、{month}月份反映比较突出的几个问题"), SECTION_WORDS[0]),
        (format!("二、{month}月份群众的意见和建议"), SECTION_WORDS[1]),
        (format!("三、{month}月份解决比较好的几个问题"), SECTION_WORDS[2]),
    ];
    let mut found: Vec<Option<String>> = vec![None; titles.len()];
    if let Some(notes) = notes {
        let mut current: Option<usize> = None;
        for line in notes.lines() {
            if let Some(heading) = line.strip_prefix("## ") {
                current = titles.iter().position(|(_, words)| words.iter().any(|w| heading.contains(w)));
                continue;
            }
            if let Some(i) = current {
                let body = found[i].get_or_insert_with(String::new);
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    titles
        .into_iter()
        .zip(found)
        .map(|((title, _), body)| Section { title, body: body.map(|b| b.trim().to_owned()).filter(|b| !b.is_empty()) })
        .collect()
}

impl Report {
    /// The report of `snapshot`, dated `date` (by default the day its figures are as of), with
    /// the month before's snapshot for comparison and the office's notes when there are any.
    pub fn new(
        snapshot: &Snapshot,
        previous: Option<&Snapshot>,
        registry: &LabelRegistry,
        date: Option<Date>,
        notes: Option<&str>,
    ) -> Report {
        let f = &snapshot.figures;
        let zone = TimeZone::get(&snapshot.timezone).unwrap_or(TimeZone::UTC);
        let date = date.unwrap_or_else(|| snapshot.as_of.to_zoned_datetime(zone).date());
        let counts = |channel: &str| f.by_channel.get(channel).map_or((0, 0), |c| (c.received, c.closed));
        let channels = [
            "state_council_inspection",
            "gov_website",
            "provincial_platform",
            "governor_mailbox",
            "mayor_mailbox",
            "leader_board",
        ]
        .into_iter()
        .map(|channel| {
            let (received, closed) = counts(channel);
            let boards = (channel == "leader_board").then(|| {
                let board = |b: &str| f.by_board.get(b).map_or(0, |c| c.received);
                (board("party_secretary"), board("mayor"))
            });
            ChannelLine { channel, received, closed, boards }
        })
        .collect();
        let total = f.totals.received;
        let counted = by_group(snapshot, registry);
        let groups: Vec<GroupLine> = counted
            .iter()
            .cloned()
            .map(|(group, received)| GroupLine {
                label: if group == OTHER_GROUP { registry.report.other.clone() } else { group.clone() },
                share: Percent::of(received, total),
                group,
                received,
            })
            .collect();
        let name = |code: &str| registry.department_name(code);
        let mut departments: Vec<DepartmentRow> = f
            .by_department
            .iter()
            .filter(|(_, d)| d.assigned > 0)
            .map(|(code, d)| DepartmentRow {
                code: code.clone(),
                name: name(code),
                assigned: d.assigned,
                closed_on_time: d.closed_on_time,
            })
            .collect();
        // Most cases first; among equals, in the registry's order, then by code; the codes
        // counted together under `unregistered` last.
        departments.sort_by_cached_key(|d| {
            let last = d.code == UNREGISTERED;
            (last, std::cmp::Reverse(d.assigned), registry.department_rank(&d.code), d.code.clone())
        });
        let month_over_month = previous.map(|p| MonthOverMonth {
            previous: p.month.to_string(),
            received: (total, p.figures.totals.received),
            closure_rate: (
                Percent::of(f.totals.closed, total),
                Percent::of(p.figures.totals.closed, p.figures.totals.received),
            ),
            groups: {
                let before = by_group(p, registry);
                counted
                    .iter()
                    .cloned()
                    .map(|(g, n)| {
                        let was = before.iter().find(|(b, _)| *b == g).map_or(0, |(_, n)| *n);
                        (g, n, was)
                    })
                    .collect()
            },
        });
        let all = &f.all_departments;
        let service = all.has_office_loop().then(|| {
            let ranked = |list: &[crate::domain::figures::Ranked]| -> Vec<RankRow> {
                list.iter()
                    .map(|r| RankRow { name: name(&r.department), score: r.score, assigned: r.assigned })
                    .collect()
            };
            // The department table's rows, then departments that hold nothing but signed for,
            // returned or were rated (in the registry's order).
            let mut others: Vec<(&String, &DepartmentFigures)> =
                f.by_department.iter().filter(|(_, d)| d.assigned == 0 && d.has_office_loop()).collect();
            others.sort_by_key(|(code, _)| (registry.department_rank(code), (*code).clone()));
            Service {
                rows: departments
                    .iter()
                    .map(|d| service_row(d.name.clone(), &f.by_department[&d.code]))
                    .chain(others.into_iter().map(|(code, d)| service_row(name(code), d)))
                    .collect(),
                total: service_row("合计".into(), all),
                min_assigned: f.ranking.min_assigned,
                top: ranked(&f.ranking.top),
                bottom: ranked(&f.ranking.bottom),
            }
        });
        Report {
            office: registry.report.office.clone(),
            line: registry.report.line.clone(),
            date,
            year: snapshot.month.year(),
            month: snapshot.month.number(),
            revision: snapshot.revision,
            closed: snapshot.status == Status::Closed,
            channels,
            received: total,
            closed_cases: f.totals.closed,
            in_progress: f.totals.in_progress,
            closure_rate: Percent::of(f.totals.closed, total),
            groups,
            departments,
            sections: sections(snapshot.month.number(), notes),
            returned_cases: f.transfers.returned_cases,
            returns: f
                .transfers
                .returned_pairs
                .iter()
                .take(RETURN_ROWS)
                .map(|p| ReturnRow { from: name(&p.from), to: name(&p.to), cases: p.cases })
                .collect(),
            service,
            month_over_month,
            provisional_deadlines: f.provisional_deadlines.clone(),
            made_by: snapshot.made_by.clone(),
        }
    }

    /// The intake paragraph: each channel in the reference's order and words.
    fn intake(&self) -> String {
        let done = |c: &ChannelLine| {
            if c.closed == c.received { "全部办结".to_owned() } else { format!("办结{}件", c.closed) }
        };
        let mut text = format!("{}年{}月份，{}", self.year, self.month, self.line);
        // A channel without cases is left out, as the reference leaves out what it did not get.
        for c in self.channels.iter().filter(|c| c.received > 0) {
            let part = match c.channel {
                "state_council_inspection" => format!(
                    "收到省长公开电话办公室转来的《国务院“互联网+督查”平台群众留言》承办单{}件，{}。",
                    c.received,
                    done(c)
                ),
                "gov_website" => format!("省政数局转来的《中国政府网网民留言》{}件，{}。", c.received, done(c)),
                "provincial_platform" => {
                    format!("办理《吉林省政务服务热线转办平台》{}件，{}；", c.received, done(c))
                }
                "governor_mailbox" => format!("《省长信箱》{}件，{}；", c.received, done(c)),
                "mayor_mailbox" => format!("《市长信箱》{}件，{}；", c.received, done(c)),
                _ => {
                    let (secretary, mayor) = c.boards.unwrap_or_default();
                    format!(
                        "《人民网领导留言板》{}件，其中市委书记留言板块{secretary}件，市长留言板块{mayor}件，{}。",
                        c.received,
                        done(c)
                    )
                }
            };
            text.push_str(&part);
        }
        text.push_str(&format!(
            "{}年{}月份共受理群众求助、投诉、举报、咨询和建议等问题{}件，办结{}件，正在办理{}件，办结率{}%。",
            self.year,
            self.month,
            self.received,
            self.closed_cases,
            self.in_progress,
            self.closure_rate.digits()
        ));
        let groups: Vec<String> =
            self.groups.iter().map(|g| format!("{}问题{}件，占{}%", g.label, g.received, g.share.digits())).collect();
        if !groups.is_empty() {
            text.push_str(&format!("其中{}。", groups.join("；")));
        }
        text
    }

    pub fn markdown(&self) -> String {
        let mut out =
            format!("**{}**　{}\n\n# {}月份{}办理情况\n\n", self.office, chinese(self.date), self.month, self.line);
        out.push_str(&self.intake());
        out.push_str("\n\n");
        for s in &self.sections {
            out.push_str(&format!("## {}\n\n", s.title));
            match &s.body {
                Some(body) => out.push_str(body),
                None => out.push_str("（由办公室根据诉求内容撰写：hotline 不保存诉求内容，可用 `--notes` 文件并入。）"),
            }
            out.push_str("\n\n");
        }
        out.push_str("## 县（市）区、市政府有关部门办理情况\n\n");
        out.push_str("| 部门 | 承办件数 | 按期办结 | 部门 | 承办件数 | 按期办结 |\n|---|---:|---:|---|---:|---:|\n");
        let half = self.departments.len().div_ceil(2);
        let (left, right) = self.departments.split_at(half);
        for (i, l) in left.iter().enumerate() {
            let r = right
                .get(i)
                .map_or(" | | ".to_owned(), |r| format!("{} | {} | {}", r.name, r.assigned, r.closed_on_time));
            out.push_str(&format!("| {} | {} | {} | {r} |\n", l.name, l.assigned, l.closed_on_time));
        }
        if self.returned_cases > 0 {
            out.push_str(&format!(
                "\n## 部门间退回（踢皮球）\n\n本月{}件诉求被转回曾经承办过的部门。退回最多的部门：\n\n| 退回部门 | 退回给 | 件数 |\n|---|---|---:|\n",
                self.returned_cases
            ));
            for r in &self.returns {
                out.push_str(&format!("| {} | {} | {} |\n", cell(&r.from), cell(&r.to), r.cases));
            }
        }
        if let Some(s) = &self.service {
            out.push_str(
                "\n## 签收、退单、重办与满意度\n\n| 部门 | 签收及时率 | 按期办结率 | 退单 | 退单率 | 重办 | 满意率 |\n\
                 |---|---:|---:|---:|---:|---:|---:|\n",
            );
            for r in s.rows.iter().chain([&s.total]) {
                out.push_str(&format!("| {} | {} |\n", cell(&r.name), r.cells().join(" | ")));
            }
            for (title, names) in s.lists(|name| name.to_owned()) {
                out.push_str(&format!("\n**{title}**（承办{}件以上的部门，按综合得分）：{names}\n", s.min_assigned));
            }
        }
        if let Some(m) = &self.month_over_month {
            out.push_str(&format!(
                "\n## 与上月（{}）对比\n\n| 项目 | 本月 | 上月 |\n|---|---:|---:|\n| 受理 | {} | {} |\n| 办结率 | {}% | {}% |\n",
                m.previous,
                m.received.0,
                m.received.1,
                m.closure_rate.0.digits(),
                m.closure_rate.1.digits()
            ));
            for (group, now, before) in &m.groups {
                out.push_str(&format!("| {group}问题 | {now} | {before} |\n"));
            }
        }
        for note in provisional_notes(&self.provisional_deadlines) {
            out.push_str(&format!("\n{note}\n"));
        }
        out.push_str(&format!(
            "\n数据：hotline 月度快照第{}版（{}）。{}\n",
            self.revision,
            if self.closed { "已结账" } else { "本月尚未结账，数字仍会更新" },
            made_by(&self.made_by)
        ));
        out
    }
}

/// The footer's words on the rules and the build, when the snapshot names them.
fn made_by(m: &MadeBy) -> String {
    let short: String = m.rules_fingerprint.chars().take(12).collect();
    if short.is_empty() { String::new() } else { format!("计数规则指纹 {short}，hotline {}。", m.build) }
}

/// The notes on deadlines counted without a year's published holidays, one per year.
fn provisional_notes(years: &[ProvisionalDeadlines]) -> Vec<String> {
    years
        .iter()
        .map(|ProvisionalDeadlines { year, cases }| {
            format!(
                "注：本月有{cases}件诉求的办理时限跨入{year}年。{year}年节假日安排尚未公布，其工作日暂按周一至周五计算，\
                 有关按期办结、超期的数字待安排公布、补入日历后重新计算。"
            )
        })
        .collect()
}

/// Text for HTML: the registry's names and the office's notes are not ours to trust.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A horizontal bar chart as inline SVG: one row per `(label, value, inner value, note)`, the
/// inner value drawn darker over the value (on-time closures within cases assigned).
fn bar_chart(title: &str, rows: &[(String, u64, Option<u64>, String)]) -> String {
    bar_chart_to(title, rows, rows.iter().map(|r| r.1).max().unwrap_or(0))
}

/// `bar_chart` with the full width standing for `max` (1000 for rates in tenths of a percent).
fn bar_chart_to(title: &str, rows: &[(String, u64, Option<u64>, String)], max: u64) -> String {
    const ROW: usize = 18;
    const LABEL: usize = 150;
    const BARS: usize = 380;
    let max = max.max(1);
    let height = rows.len() * ROW + 10;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         role=\"img\" aria-label=\"{}\">",
        escape(title),
        LABEL + BARS + 130,
        escape(title)
    );
    for (i, (label, value, inner, note)) in rows.iter().enumerate() {
        let y = i * ROW + 4;
        let width = |v: u64| (v as f64 / max as f64 * BARS as f64).max(if v > 0 { 1.0 } else { 0.0 });
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{}\" y=\"{y}\" width=\"{:.1}\" \
             height=\"{}\" class=\"bar\"/>",
            LABEL - 6,
            y + 12,
            escape(label),
            LABEL,
            width(*value),
            ROW - 5
        ));
        if let Some(inner) = inner {
            svg.push_str(&format!(
                "<rect x=\"{LABEL}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" class=\"inner\"/>",
                width(*inner),
                ROW - 5
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\">{}</text>",
            LABEL as f64 + width(*value) + 6.0,
            y + 12,
            escape(note)
        ));
    }
    svg.push_str("</svg></figure>\n");
    svg
}

const STYLE: &str = "body{font-family:'Noto Serif CJK SC','Source Han Serif SC','WenQuanYi Zen Hei',serif;\
max-width:46em;margin:2em auto;padding:0 1em;line-height:1.7;color:#111}\
.masthead{display:flex;justify-content:space-between;font-weight:bold}\
h1{text-align:center;font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}\
p.intake{text-indent:2em}.placeholder{color:#777}\
table{border-collapse:collapse;width:100%;font-size:.92em}th,td{border:1px solid #444;padding:.15em .4em}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1em 0}figcaption{font-weight:bold;margin-bottom:.3em}\
svg text{font-size:12px;dominant-baseline:auto}svg .bar{fill:#9bb7d4}svg .inner{fill:#2d5f8b}\
footer{margin-top:2em;font-size:.85em;color:#555}\
@page{size:A4;margin:16mm}@media print{body{margin:0;max-width:none}figure,table,tr{break-inside:avoid}}";

impl Report {
    /// The report as one self-contained HTML page: inline SVG charts and print CSS, no script,
    /// nothing fetched.
    pub fn html(&self) -> String {
        let mut out = format!(
            "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}年{}月份{}办理情况</title>\
             <style>{STYLE}</style></head><body>\n<div class=\"masthead\"><span>{}</span><span>{}</span></div>\n\
             <h1>{}月份{}办理情况</h1>\n<p class=\"intake\">{}</p>\n",
            self.year,
            self.month,
            escape(&self.line),
            escape(&self.office),
            escape(&chinese(self.date)),
            self.month,
            escape(&self.line),
            escape(&self.intake())
        );
        let groups: Vec<(String, u64, Option<u64>, String)> = self
            .groups
            .iter()
            .map(|g| (format!("{}问题", g.group), g.received, None, format!("{}件 {}%", g.received, g.share.digits())))
            .collect();
        out.push_str(&bar_chart("按问题类别", &groups));
        for s in &self.sections {
            out.push_str(&format!("<h2>{}</h2>\n", escape(&s.title)));
            match &s.body {
                Some(body) => {
                    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
                        out.push_str(&format!("<p>{}</p>\n", escape(line)));
                    }
                }
                None => out.push_str("<p class=\"placeholder\">（由办公室根据诉求内容撰写：hotline 不保存诉求内容，可用 --notes 文件并入。）</p>\n"),
            }
        }
        out.push_str("<h2>县（市）区、市政府有关部门办理情况</h2>\n<table><thead><tr><th>部门</th><th>承办件数</th><th>按期办结</th>\
                      <th>部门</th><th>承办件数</th><th>按期办结</th></tr></thead><tbody>\n");
        let half = self.departments.len().div_ceil(2);
        let (left, right) = self.departments.split_at(half);
        let cells = |d: Option<&DepartmentRow>| match d {
            Some(d) => format!(
                "<td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                escape(&d.name),
                d.assigned,
                d.closed_on_time
            ),
            None => "<td></td><td></td><td></td>".to_owned(),
        };
        for (i, l) in left.iter().enumerate() {
            out.push_str(&format!("<tr>{}{}</tr>\n", cells(Some(l)), cells(right.get(i))));
        }
        out.push_str("</tbody></table>\n");
        let departments: Vec<(String, u64, Option<u64>, String)> = self
            .departments
            .iter()
            .map(|d| {
                (d.name.clone(), d.assigned, Some(d.closed_on_time), format!("{} / {}", d.closed_on_time, d.assigned))
            })
            .collect();
        out.push_str(&bar_chart("各部门承办件数（深色为按期办结）", &departments));
        if self.returned_cases > 0 {
            out.push_str(&format!(
                "<h2>部门间退回（踢皮球）</h2>\n<p>本月{}件诉求被转回曾经承办过的部门。退回最多的部门：</p>\n\
                 <table><thead><tr><th>退回部门</th><th>退回给</th><th>件数</th></tr></thead><tbody>\n",
                self.returned_cases
            ));
            for r in &self.returns {
                out.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>\n",
                    escape(&r.from),
                    escape(&r.to),
                    r.cases
                ));
            }
            out.push_str("</tbody></table>\n");
        }
        if let Some(s) = &self.service {
            out.push_str(
                "<h2>签收、退单、重办与满意度</h2>\n<table><thead><tr><th>部门</th><th>签收及时率</th><th>按期办结率</th>\
                 <th>退单</th><th>退单率</th><th>重办</th><th>满意率</th></tr></thead><tbody>\n",
            );
            for r in s.rows.iter().chain([&s.total]) {
                let cells: String = r.cells().iter().map(|c| format!("<td class=\"n\">{c}</td>")).collect();
                out.push_str(&format!("<tr><td>{}</td>{cells}</tr>\n", escape(&r.name)));
            }
            out.push_str("</tbody></table>\n");
            for (title, names) in s.lists(escape) {
                out.push_str(&format!(
                    "<p><b>{title}</b>（承办{}件以上的部门，按综合得分）：{names}</p>\n",
                    s.min_assigned
                ));
            }
        }
        if let Some(m) = &self.month_over_month {
            out.push_str(&format!(
                "<h2>与上月（{}）对比</h2>\n<table><thead><tr><th>项目</th><th>本月</th><th>上月</th></tr></thead><tbody>\n\
                 <tr><td>受理</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n\
                 <tr><td>办结率</td><td class=\"n\">{}%</td><td class=\"n\">{}%</td></tr>\n",
                escape(&m.previous),
                m.received.0,
                m.received.1,
                m.closure_rate.0.digits(),
                m.closure_rate.1.digits()
            ));
            for (group, now, before) in &m.groups {
                out.push_str(&format!(
                    "<tr><td>{}问题</td><td class=\"n\">{now}</td><td class=\"n\">{before}</td></tr>\n",
                    escape(group)
                ));
            }
            out.push_str("</tbody></table>\n");
        }
        for note in provisional_notes(&self.provisional_deadlines) {
            out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(&note)));
        }
        out.push_str(&format!(
            "<footer>数据：hotline 月度快照第{}版（{}）。{}</footer>\n</body></html>\n",
            self.revision,
            if self.closed { "已结账" } else { "本月尚未结账，数字仍会更新" },
            escape(&made_by(&self.made_by))
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator;

    /// The generated reference month counted by the core, as a closed snapshot.
    #[test]
    fn json_carries_numbers_an_iso_date_and_null_for_nothing_to_measure() {
        let mut month = reference_month();
        month
            .figures
            .by_department
            .insert("idle".into(), DepartmentFigures { assigned: 1, ..Default::default() }.with_rates());
        let report = Report::new(&month, None, &LabelRegistry::default(), Some("2022-05-06".parse().unwrap()), None);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["date"], "2022-05-06");
        assert_eq!(json["closure_rate"], 99.8);
        assert_eq!(
            (&json["groups"][0]["label"], &json["groups"][0]["share"]),
            (&serde_json::json!("疫情"), &serde_json::json!(56.4))
        );
        let idle = json["service"]["rows"].as_array().unwrap().iter().find(|r| r["name"] == "idle").unwrap();
        assert_eq!((&idle["satisfaction"], &idle["on_time"]), (&serde_json::Value::Null, &serde_json::Value::Null));
        // The snapshot's JSON (`hotline snapshot show --format json`) says the same.
        let snapshot: serde_json::Value = serde_json::from_str(&month.to_json()).unwrap();
        let idle = &snapshot["by_department"]["idle"];
        assert_eq!(
            (&idle["satisfaction_rate"], &idle["on_time_rate"]),
            (&serde_json::Value::Null, &serde_json::Value::Null)
        );
        assert_eq!(idle["return_rate"], 0.0, "one case kept, none returned: measured");
        // Markdown prints them as before.
        let markdown = report.markdown();
        assert!(markdown.starts_with(&format!("**{}**　2022年5月6日", report.office)), "{markdown}");
        assert!(markdown.contains("办结率99.8%") && markdown.contains("疫情问题17883件，占56.4%"), "{markdown}");
    }

    fn reference_month() -> Snapshot {
        static COUNTED: std::sync::LazyLock<Snapshot> = std::sync::LazyLock::new(generator::reference_snapshot);
        COUNTED.clone()
    }

    #[test]
    fn the_reference_month_reads_as_the_reference_lays_it_out() {
        // Every figure against the reference: tests/demo.rs, on what the demo prints.
        let report = Report::new(&reference_month(), None, &LabelRegistry::default(), None, None);
        let markdown = report.markdown();
        assert!(markdown.contains("**四平市政务服务和数字化建设管理局**　2022年5月6日"), "{markdown}");
        assert!(markdown.contains("# 4月份12345市长公开电话办理情况"));
        assert!(markdown.contains("办理《吉林省政务服务热线转办平台》2034件，办结1990件；"));
        assert!(markdown.contains("问题31681件，办结31620件，正在办理61件，办结率99.8%。"));
        // Two columns: the first half on the left, the rest on the right, in the registry's
        // order among equals, as the reference lays them out.
        assert_eq!(report.departments.len(), 34);
        assert!(markdown.contains("| 铁西区政府 | 2285 | 2279 | 市银保监局 | 17 | 17 |"), "{markdown}");
        assert!(markdown.contains("| 市市场监督管理局 | 77 | 77 | 四平热力有限公司 | 4 | 4 |"), "{markdown}");
        assert!(markdown.contains("| 移动四平分公司 | 21 | 21 | 市工信局 | 1 | 1 |"), "{markdown}");
    }

    #[test]
    fn figures_that_hang_on_a_year_the_calendar_lacks_carry_a_note() {
        let mut snapshot = reference_month();
        let plain = Report::new(&snapshot, None, &LabelRegistry::default(), None, None).markdown();
        assert!(!plain.contains("节假日安排尚未公布"));
        snapshot.figures.provisional_deadlines =
            vec![crate::domain::figures::ProvisionalDeadlines { year: 2027, cases: 12 }];
        let report = Report::new(&snapshot, None, &LabelRegistry::default(), None, None);
        let note = "注：本月有12件诉求的办理时限跨入2027年。2027年节假日安排尚未公布";
        assert!(report.markdown().contains(note), "{}", report.markdown());
        assert!(report.html().contains(note));
    }

    #[test]
    fn the_footer_names_the_rules_and_the_build() {
        let mut snapshot = reference_month();
        let plain = Report::new(&snapshot, None, &LabelRegistry::default(), None, None).markdown();
        assert!(plain.contains("数据：hotline 月度快照第9版（已结账）。\n"), "no rules named, no words on them");
        snapshot.made_by = MadeBy { rules_fingerprint: "3c5f8819aea6a540".into(), build: "0.1.0".into() };
        let report = Report::new(&snapshot, None, &LabelRegistry::default(), None, None);
        assert!(report.markdown().contains("（已结账）。计数规则指纹 3c5f8819aea6，hotline 0.1.0。"));
    }

    #[test]
    fn the_office_loop_and_the_red_and_black_lists_follow_the_department_table() {
        let report = Report::new(&reference_month(), None, &LabelRegistry::default(), None, None);
        let service = report.service.as_ref().expect("the generated month has the office's loop");
        assert!(service.rows.len() >= report.departments.len());
        assert_eq!(service.rows[0].name, report.departments[0].name);
        assert!((service.top.len(), service.bottom.len()) == (5, 5), "{service:?}");
        let markdown = report.markdown();
        let section = markdown.split("## 签收、退单、重办与满意度").nth(1).expect(&markdown);
        assert!(
            section.contains("| 合计 |") && section.contains("**红榜**") && section.contains("**黑榜**"),
            "{section}"
        );
        let html = report.html();
        assert!(html.contains("<h2>签收、退单、重办与满意度</h2>") && html.contains("<b>黑榜</b>"));
        // A department that returned every case it was given still has its row.
        let mut returned_all = reference_month();
        returned_all.figures.by_department.insert(
            "sent_everything_back".into(),
            DepartmentFigures { returned: 3, ..Default::default() }.with_rates(),
        );
        let report = Report::new(&returned_all, None, &LabelRegistry::default(), None, None);
        let row = report.service.unwrap().rows.into_iter().find(|r| r.name == "sent_everything_back").expect("its row");
        assert_eq!((row.returned, row.return_rate.to_string().as_str()), (3, "100.0%"));
        // A month of contract v1 only has no such section.
        let mut v1 = reference_month();
        v1.figures.all_departments = Default::default();
        assert_eq!(Report::new(&v1, None, &LabelRegistry::default(), None, None).service, None);
    }

    /// A snapshot read back may hold counts as large as a long: its report renders, no panic.
    #[test]
    fn the_largest_counts_render_without_overflow() {
        let most = i64::MAX as u64;
        let mut snapshot = reference_month();
        let huge = DepartmentFigures {
            assigned: most,
            returned: most,
            closed_on_time: most,
            closed_late: most,
            satisfied: most,
            basically_satisfied: most,
            ..Default::default()
        };
        snapshot.figures.by_department.insert("huge".into(), huge.with_rates());
        snapshot.figures.all_departments = huge.with_rates();
        for counts in snapshot.figures.by_category.values_mut() {
            counts.received = most;
        }
        let report = Report::new(&snapshot, None, &LabelRegistry::default(), None, None);
        let row = report.service.as_ref().unwrap().rows.iter().find(|r| r.name == "huge").expect("its row");
        assert_eq!((row.return_rate.to_string().as_str(), row.on_time.to_string().as_str()), ("50.0%", "50.0%"));
        assert_eq!(report.groups.iter().map(|g| g.received).max(), Some(u64::MAX), "a group's sum saturates");
        assert!(report.markdown().contains("| huge |"));
    }

    #[test]
    fn percentages_round_halves_up() {
        assert_eq!(percent(1, 16), "6.3", "6.25");
        assert_eq!(percent(10_059, 31_681), "31.8");
        assert_eq!(percent(1_802, 31_681), "5.7");
        assert_eq!(percent(0, 0), "0.0");
        assert_eq!(percent(3, 3), "100.0");
        assert_eq!(cell("a|b"), "a\\|b");
    }

    #[test]
    fn buck_passing_is_listed_by_department_pair() {
        let report = Report::new(&reference_month(), None, &LabelRegistry::default(), None, None);
        assert!(report.returned_cases > 0);
        assert!(!report.returns.is_empty() && report.returns.len() <= RETURN_ROWS);
        assert!(report.returns.windows(2).all(|w| w[0].cases >= w[1].cases), "most first");
        let markdown = report.markdown();
        let first = &report.returns[0];
        assert!(markdown.contains(&format!("| {} | {} | {} |", first.from, first.to, first.cases)), "{markdown}");
        assert!(markdown.contains(&format!("本月{}件诉求被转回", report.returned_cases)));
    }

    #[test]
    fn groups_sum_to_the_total_whatever_the_registry_names() {
        let mut snapshot = reference_month();
        let mut unknown = snapshot.figures.by_category["epidemic"].clone();
        unknown.received = 5;
        snapshot.figures.by_category.insert("not_in_registry".into(), unknown);
        snapshot.figures.totals.received += 5;
        let report = Report::new(&snapshot, None, &LabelRegistry::default(), None, None);
        assert_eq!(report.groups.iter().map(|g| g.received).sum::<u64>(), report.received);
        let other = report.groups.last().unwrap();
        assert_eq!((other.group.as_str(), other.received), (OTHER_GROUP, 10_064));
    }

    #[test]
    fn notes_fill_their_sections_and_the_rest_stay_placeholders() {
        let notes = "## 突出问题\n1. 药店行业管理。\n\n## 解决较好\n（一）取药难。\n## 别的\n不并入。\n";
        let report = Report::new(&reference_month(), None, &LabelRegistry::default(), None, Some(notes));
        assert_eq!(report.sections[0].body.as_deref(), Some("1. 药店行业管理。"));
        assert_eq!(report.sections[1].body, None);
        assert_eq!(report.sections[2].body.as_deref(), Some("（一）取药难。"));
        let markdown = report.markdown();
        assert!(markdown.contains("## 二、4月份群众的意见和建议\n\n（由办公室"), "{markdown}");
        assert!(!markdown.contains("不并入"));
        assert_eq!(unused_notes(notes), ["别的"]);
        assert_eq!(unused_notes("只有一段。\n"), ["(text before the first `## ` heading)"]);
        assert!(unused_notes("## 突出\n一。\n## 意见\n二。\n## 解决\n三。\n").is_empty());
    }

    #[test]
    fn a_channel_without_cases_is_left_out_of_the_intake_paragraph() {
        let full = Report::new(&reference_month(), None, &LabelRegistry::default(), None, None).markdown();
        assert!(full.contains("《国务院“互联网+督查”平台群众留言》承办单"), "the reference month has every channel");
        let mut snapshot = reference_month();
        snapshot.figures.by_channel.remove("state_council_inspection");
        let markdown = Report::new(&snapshot, None, &LabelRegistry::default(), None, None).markdown();
        assert!(!markdown.contains("互联网+督查") && !markdown.contains("承办单0件"), "{markdown}");
        assert!(markdown.contains("《中国政府网网民留言》"));
    }

    #[test]
    fn a_department_missing_from_the_registry_shows_its_code_and_partial_closure_is_counted() {
        let mut snapshot = reference_month();
        let row = snapshot.figures.by_department["tax_bureau"];
        snapshot.figures.by_department.insert("new_bureau".into(), row);
        let mut previous = snapshot.clone();
        previous.month = "2022-03".parse().unwrap();
        previous.figures.totals.received = 30_000;
        let report = Report::new(&snapshot, Some(&previous), &LabelRegistry::default(), None, None);
        assert!(report.departments.iter().any(|d| d.name == "new_bureau"));
        let markdown = report.markdown();
        assert!(markdown.contains("办理《吉林省政务服务热线转办平台》2034件，办结1990件；"));
        assert!(markdown.contains("| 受理 | 31681 | 30000 |"), "{markdown}");
        assert!(markdown.contains("| 疫情问题 | 17883 | 17883 |"), "{markdown}");
        let mut flooded = snapshot.clone();
        let most = flooded.figures.by_department.values().map(|d| d.assigned).max().unwrap();
        let junk = DepartmentFigures { assigned: most + 1, ..row };
        flooded.figures.by_department.insert(UNREGISTERED.into(), junk);
        let report = Report::new(&flooded, None, &LabelRegistry::default(), None, None);
        let last = report.departments.last().unwrap();
        assert_eq!(
            (last.name.as_str(), last.assigned),
            ("未登记编码（合计）", most + 1),
            "the overflow row comes last"
        );
    }
}
