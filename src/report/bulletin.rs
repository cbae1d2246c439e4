//! The provincial office's monthly bulletin (全省12345热线工单办理情况通报), made from the
//! province's snapshot as any subscriber could make it: the province's intake by channel, its
//! cities side by side with the closure rate and the five rates of the department table, the
//! cities' red and black lists, and each city's month over month; in Markdown, HTML (a chart
//! per rate) or JSON. Pure, as `Report` is.
//!
//! Every rate is printed from counts (`percent`), as the city report's are; a rate with
//! nothing to measure is "—".

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::domain::figures::{
    CityRow, DepartmentFigures, Figures, ON_TIME, ProvisionalDeadlines, REOPEN, RETURN, Ranked, SATISFACTION, SIGN_FOR,
    Totals,
};
use crate::domain::snapshot::{MadeBy, Snapshot, Status};

use super::{
    Percent, RankRow, STYLE, bar_chart, bar_chart_to, cell, chinese, escape, made_by, percent, provisional_notes,
};

/// The channels, in the bulletin's order, as it names them.
const CHANNELS: [(&str, &str); 7] = [
    ("hotline", "12345热线电话"),
    ("provincial_platform", "政务服务热线转办平台"),
    ("state_council_inspection", "国务院“互联网+督查”平台"),
    ("gov_website", "中国政府网网民留言"),
    ("governor_mailbox", "省长信箱"),
    ("mayor_mailbox", "市长信箱"),
    ("leader_board", "人民网领导留言板"),
];

/// A rate's (part, whole) from a city's counts.
type Rate = fn(&Totals, &DepartmentFigures) -> (u64, u64);

/// The rates of the cities' table, in its order: their title, and each from a city's counts.
const RATES: [(&str, Rate); 6] = [
    ("办结率", |t, _| (t.closed, t.received)),
    ("按期办结率", |_, d| ON_TIME(d)),
    ("签收及时率", |_, d| SIGN_FOR(d)),
    ("退单率", |_, d| RETURN(d)),
    ("重办率", |_, d| REOPEN(d)),
    ("满意率", |_, d| SATISFACTION(d)),
];

/// The cities' tables have ten columns: a city's name stays on one line.
const CITIES_STYLE: &str = "table.cities{font-size:.85em}table.cities td:first-child{white-space:nowrap}";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bulletin {
    /// The provincial office, and the province as the title names it.
    pub office: String,
    pub province: String,
    /// The publication date, printed 2022年5月6日.
    pub date: Date,
    pub year: i16,
    pub month: i8,
    pub revision: u64,
    pub closed: bool,
    /// The province's cases by channel, only channels with cases.
    pub channels: Vec<ChannelTotal>,
    /// The province's row (全省), then a row per city by division code.
    pub total: CityLine,
    pub cities: Vec<CityLine>,
    /// Cities with fewer cases held by departments are not ranked.
    pub min_assigned: u64,
    pub top: Vec<RankRow>,
    pub bottom: Vec<RankRow>,
    pub month_over_month: Option<MonthOverMonth>,
    /// Years the working-day calendar lacks that some deadline needed, with their cases.
    pub provisional_deadlines: Vec<ProvisionalDeadlines>,
    /// The rules of all its cities, and the build.
    pub made_by: MadeBy,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChannelTotal {
    pub channel: &'static str,
    pub name: &'static str,
    pub received: u64,
    pub closed: u64,
}

/// A city's (or the province's) month: its counts, and its rates in `RATES`' order as
/// printed, "99.8%" or "—".
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CityLine {
    pub code: String,
    pub name: String,
    pub received: u64,
    pub closed: u64,
    pub in_progress: u64,
    pub rates: Vec<Percent>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MonthOverMonth {
    pub previous: String,
    /// Per city, by division code: (this month, the month before).
    pub cities: Vec<CityChange>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CityChange {
    pub name: String,
    pub received: (u64, u64),
    pub closure_rate: (Percent, Percent),
    pub on_time: (Percent, Percent),
    pub satisfaction: (Percent, Percent),
}

impl CityLine {
    fn new(code: String, name: String, totals: &Totals, departments: &DepartmentFigures) -> CityLine {
        let counts: Vec<(u64, u64)> = RATES.iter().map(|(_, rate)| rate(totals, departments)).collect();
        CityLine {
            code,
            name,
            received: totals.received,
            closed: totals.closed,
            in_progress: totals.in_progress,
            rates: counts.iter().map(|&(part, whole)| Percent::of(part, whole)).collect(),
        }
    }

    fn of(row: &CityRow) -> CityLine {
        CityLine::new(row.city.to_string(), row.name.clone(), &row.totals, &row.departments)
    }
}

impl Bulletin {
    /// The bulletin of the province's `snapshot`, dated `date` (by default the day its figures
    /// are as of), with the month before's for comparison.
    pub fn new(
        snapshot: &Snapshot,
        previous: Option<&Snapshot>,
        province: &str,
        office: &str,
        date: Option<Date>,
    ) -> Bulletin {
        let f: &Figures = &snapshot.figures;
        let empty = Default::default();
        let p = f.province.as_ref().unwrap_or(&empty);
        let zone = TimeZone::get(&snapshot.timezone).unwrap_or(TimeZone::UTC);
        let date = date.unwrap_or_else(|| snapshot.as_of.to_zoned_datetime(zone).date());
        let name = |code: &str| {
            p.cities.iter().find(|c| c.city.to_string() == code).map_or_else(|| code.to_owned(), |c| c.name.clone())
        };
        let ranked = |list: &[Ranked]| -> Vec<RankRow> {
            list.iter().map(|r| RankRow { name: name(&r.department), score: r.score, assigned: r.assigned }).collect()
        };
        let before = previous.and_then(|p| p.figures.province.as_ref());
        let month_over_month = previous.zip(before).map(|(previous, before)| MonthOverMonth {
            previous: previous.month.to_string(),
            cities: p
                .cities
                .iter()
                .map(|row| {
                    let now = CityLine::of(row);
                    let was = before.cities.iter().find(|b| b.city == row.city).map(CityLine::of);
                    let rate = |i: usize| (now.rates[i], was.as_ref().map_or(Percent::of(0, 0), |w| w.rates[i]));
                    CityChange {
                        name: row.name.clone(),
                        received: (now.received, was.as_ref().map_or(0, |w| w.received)),
                        closure_rate: rate(0),
                        on_time: rate(1),
                        satisfaction: rate(5),
                    }
                })
                .collect(),
        });
        Bulletin {
            office: office.to_owned(),
            province: province.to_owned(),
            date,
            year: snapshot.month.year(),
            month: snapshot.month.number(),
            revision: snapshot.revision,
            closed: snapshot.status == Status::Closed,
            channels: CHANNELS
                .iter()
                .filter_map(|&(channel, name)| {
                    let c = f.by_channel.get(channel).filter(|c| c.received > 0)?;
                    Some(ChannelTotal { channel, name, received: c.received, closed: c.closed })
                })
                .collect(),
            total: CityLine::new("province".into(), "全省".into(), &f.totals, &f.all_departments),
            cities: p.cities.iter().map(CityLine::of).collect(),
            min_assigned: p.ranking.min_assigned,
            top: ranked(&p.ranking.top),
            bottom: ranked(&p.ranking.bottom),
            month_over_month,
            provisional_deadlines: f.provisional_deadlines.clone(),
            made_by: snapshot.made_by.clone(),
        }
    }

    fn title(&self) -> String {
        format!("{}{}年{}月份12345热线工单办理情况通报", self.province, self.year, self.month)
    }

    /// The intake paragraph: the province's totals, then each channel with cases.
    fn intake(&self) -> String {
        let t = &self.total;
        let mut text = format!(
            "{}年{}月份，全省12345政务服务便民热线共受理群众诉求{}件，办结{}件，正在办理{}件，办结率{}。",
            self.year, self.month, t.received, t.closed, t.in_progress, t.rates[0]
        );
        let channels: Vec<String> = self
            .channels
            .iter()
            .map(|c| {
                let share = percent(c.received, t.received);
                format!("{}{}件（占{share}%），办结{}件", c.name, c.received, c.closed)
            })
            .collect();
        if !channels.is_empty() {
            text.push_str(&format!("其中，{}。", channels.join("；")));
        }
        text
    }

    /// The red and the black list, each as its title and its cities with their scores.
    fn lists(&self) -> Vec<(&'static str, String)> {
        [("红榜", &self.top), ("黑榜", &self.bottom)]
            .into_iter()
            .filter(|(_, list)| !list.is_empty())
            .map(|(title, list)| {
                let names: Vec<String> = list.iter().map(|r| format!("{}（{:.1}分）", r.name, r.score)).collect();
                (title, names.join("、"))
            })
            .collect()
    }

    fn footer(&self) -> String {
        format!(
            "数据：hotline 全省月度快照第{}版（{}）。{}",
            self.revision,
            if self.closed { "已结账" } else { "本月尚未结账，数字仍会更新" },
            made_by(&self.made_by)
        )
    }

    pub fn markdown(&self) -> String {
        let mut out =
            format!("**{}**　{}\n\n# {}\n\n{}\n\n", self.office, chinese(self.date), self.title(), self.intake());
        out.push_str("## 一、各市（州）工单办理情况\n\n| 地区 | 受理 | 办结 | 正在办理 |");
        for (title, _) in RATES {
            out.push_str(&format!(" {title} |"));
        }
        out.push_str("\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for c in self.cities.iter().chain([&self.total]) {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                cell(&c.name),
                c.received,
                c.closed,
                c.in_progress,
                c.rates.iter().map(Percent::to_string).collect::<Vec<_>>().join(" | ")
            ));
        }
        out.push_str("\n## 二、综合排名（红黑榜）\n");
        for (title, names) in self.lists() {
            out.push_str(&format!("\n**{title}**（承办{}件以上的市（州），按综合得分）：{names}\n", self.min_assigned));
        }
        if let Some(m) = &self.month_over_month {
            out.push_str(&format!(
                "\n## 三、与上月（{}）对比\n\n| 地区 | 受理 | 上月受理 | 办结率 | 上月办结率 | 按期办结率 | 上月按期办结率 | 满意率 | 上月满意率 |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                m.previous
            ));
            for c in &m.cities {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    cell(&c.name),
                    c.received.0,
                    c.received.1,
                    c.closure_rate.0,
                    c.closure_rate.1,
                    c.on_time.0,
                    c.on_time.1,
                    c.satisfaction.0,
                    c.satisfaction.1
                ));
            }
        }
        for note in provisional_notes(&self.provisional_deadlines) {
            out.push_str(&format!("\n{note}\n"));
        }
        out.push_str(&format!("\n{}\n", self.footer()));
        out
    }

    /// One self-contained HTML page, as the city report's: inline SVG, a chart per rate, no
    /// script, nothing fetched.
    pub fn html(&self) -> String {
        let mut out = format!(
            "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}</title>\
             <style>{STYLE}{CITIES_STYLE}</style></head><body>\n<div class=\"masthead\"><span>{}</span><span>{}</span></div>\n\
             <h1>{}</h1>\n<p class=\"intake\">{}</p>\n",
            escape(&self.title()),
            escape(&self.office),
            escape(&chinese(self.date)),
            escape(&self.title()),
            escape(&self.intake())
        );
        out.push_str(
            "<h2>一、各市（州）工单办理情况</h2>\n<table class=\"cities\"><thead><tr><th>地区</th><th>受理</th><th>办结</th><th>正在办理</th>",
        );
        for (title, _) in RATES {
            out.push_str(&format!("<th>{title}</th>"));
        }
        out.push_str("</tr></thead><tbody>\n");
        for c in self.cities.iter().chain([&self.total]) {
            let rates: String = c.rates.iter().map(|r| format!("<td class=\"n\">{r}</td>")).collect();
            out.push_str(&format!(
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>{rates}</tr>\n",
                escape(&c.name),
                c.received,
                c.closed,
                c.in_progress
            ));
        }
        out.push_str("</tbody></table>\n");
        let received: Vec<(String, u64, Option<u64>, String)> = self
            .cities
            .iter()
            .map(|c| (c.name.clone(), c.received, Some(c.closed), format!("{} / {}", c.closed, c.received)))
            .collect();
        out.push_str(&bar_chart("受理与办结（深色为办结）", &received));
        for (i, (title, _)) in RATES.iter().enumerate() {
            let rows: Vec<(String, u64, Option<u64>, String)> = self
                .cities
                .iter()
                .map(|c| (c.name.clone(), c.rates[i].tenths().unwrap_or(0), None, c.rates[i].to_string()))
                .collect();
            out.push_str(&bar_chart_to(title, &rows, 1000));
        }
        out.push_str("<h2>二、综合排名（红黑榜）</h2>\n");
        for (title, names) in self.lists() {
            out.push_str(&format!(
                "<p><b>{title}</b>（承办{}件以上的市（州），按综合得分）：{}</p>\n",
                self.min_assigned,
                escape(&names)
            ));
        }
        if let Some(m) = &self.month_over_month {
            out.push_str(&format!(
                "<h2>三、与上月（{}）对比</h2>\n<table class=\"cities\"><thead><tr><th>地区</th><th>受理</th><th>上月受理</th>\
                 <th>办结率</th><th>上月办结率</th><th>按期办结率</th><th>上月按期办结率</th><th>满意率</th>\
                 <th>上月满意率</th></tr></thead><tbody>\n",
                escape(&m.previous)
            ));
            for c in &m.cities {
                let cells: String = [
                    c.received.0.to_string(),
                    c.received.1.to_string(),
                    c.closure_rate.0.to_string(),
                    c.closure_rate.1.to_string(),
                    c.on_time.0.to_string(),
                    c.on_time.1.to_string(),
                    c.satisfaction.0.to_string(),
                    c.satisfaction.1.to_string(),
                ]
                .iter()
                .map(|v| format!("<td class=\"n\">{v}</td>"))
                .collect();
                out.push_str(&format!("<tr><td>{}</td>{cells}</tr>\n", escape(&c.name)));
            }
            out.push_str("</tbody></table>\n");
        }
        for note in provisional_notes(&self.provisional_deadlines) {
            out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(&note)));
        }
        out.push_str(&format!("<footer>{}</footer>\n</body></html>\n", escape(&self.footer())));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::jilin;

    /// A small generated province month (each city a few hundred cases), closed.
    fn province(month: &str, seed: u64) -> Snapshot {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let mut plans = jilin::plans(month.parse().unwrap(), &zone, 0.01);
        for plan in &mut plans {
            plan.cases = plan.cases.clamp(300, 2_000);
            plan.seed += seed;
        }
        jilin::province_snapshot(&plans, "2022-05-05T16:00:00Z".parse().unwrap())
    }

    #[test]
    fn the_bulletin_sets_the_cities_side_by_side_with_rates_from_their_counts() {
        let april = province("2022-04", 0);
        let bulletin = Bulletin::new(&april, None, "吉林省", "吉林省政务服务和数字化建设管理局", None);
        let markdown = bulletin.markdown();
        assert!(markdown.starts_with("**吉林省政务服务和数字化建设管理局**　2022年5月6日"), "{markdown}");
        assert!(markdown.contains("# 吉林省2022年4月份12345热线工单办理情况通报"), "{markdown}");
        let f = &april.figures;
        let t = &f.totals;
        let intake = format!(
            "共受理群众诉求{}件，办结{}件，正在办理{}件，办结率{}%。",
            t.received,
            t.closed,
            t.in_progress,
            percent(t.closed, t.received)
        );
        assert!(markdown.contains(&intake), "{intake} not in {markdown}");
        let rows = &f.province.as_ref().unwrap().cities;
        assert_eq!(rows.len(), 9);
        for row in rows {
            let d = &row.departments;
            let line = format!(
                "| {} | {} | {} | {} | {}% | {}% |",
                row.name,
                row.totals.received,
                row.totals.closed,
                row.totals.in_progress,
                percent(row.totals.closed, row.totals.received),
                percent(d.closed_on_time, d.closed_on_time + d.closed_late)
            );
            assert!(markdown.contains(&line), "{line} not in {markdown}");
        }
        assert!(markdown.contains(&format!("| 全省 | {} | {} | {} |", t.received, t.closed, t.in_progress)));
        let best = &bulletin.top[0];
        assert!(markdown.contains(&format!(
            "**红榜**（承办10件以上的市（州），按综合得分）：{}（{:.1}分）",
            best.name, best.score
        )));
        assert!(markdown.contains("**黑榜**") && !markdown.contains("与上月"), "{markdown}");
        let html = bulletin.html();
        assert_eq!(html.matches("<figure>").count(), 1 + RATES.len(), "received and a chart per rate");
    }

    #[test]
    fn month_over_month_is_per_city() {
        let (march, april) = (province("2022-03", 7), province("2022-04", 0));
        let bulletin = Bulletin::new(&april, Some(&march), "吉林省", "x", None);
        let m = bulletin.month_over_month.as_ref().expect("the month before is given");
        assert_eq!(m.previous, "2022-03");
        let now = &april.figures.province.as_ref().unwrap().cities;
        let before = &march.figures.province.as_ref().unwrap().cities;
        for ((change, now), before) in m.cities.iter().zip(now).zip(before) {
            assert_eq!(change.name, now.name);
            assert_eq!(change.received, (now.totals.received, before.totals.received));
        }
        assert!(bulletin.markdown().contains("## 三、与上月（2022-03）对比"));
    }
}
