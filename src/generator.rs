//! A realistic month of upstream events, shaped like the reference report (Siping, April
//! 2022): its channel mix, category shares, department table, closure and on-time rates.
//! Used by the demo, the integration tests and the benchmark. Events carry fake personal
//! data, as upstream messages do, so every run also checks that none of it leaks.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::domain::month::Month;

/// Cases in the reference month.
pub const REFERENCE_CASES: usize = 31_681;

const CHANNELS: &[(&str, u32)] = &[
    ("provincial_platform", 2034),
    ("state_council_inspection", 64),
    ("gov_website", 25),
    ("governor_mailbox", 12),
    ("mayor_mailbox", 22),
    ("leader_board", 77),
    ("hotline", 29_447),
];

pub const CATEGORIES: &[(&str, u32)] = &[
    ("epidemic", 17_883),
    ("social_security", 1802),
    ("housing_construction", 621),
    ("medical_insurance", 505),
    ("transport", 453),
    ("housing_fund", 358),
    ("water", 2900),
    ("electricity", 2300),
    ("gas", 1400),
    ("agriculture", 1600),
    ("heating", 900),
    ("telecom", 500),
    ("other", 459),
];

/// The department table of the reference report: code, cases assigned, closed on time.
pub const DEPARTMENTS: &[(&str, u32, u32)] = &[
    ("tiexi_district", 2285, 2279),
    ("tiedong_district", 2063, 2050),
    ("lishu_county", 1969, 1943),
    ("yitong_county", 1695, 1693),
    ("shuangliao_city", 601, 594),
    ("health_commission", 481, 481),
    ("market_regulation", 77, 77),
    ("transport_bureau", 60, 59),
    ("medical_security", 53, 53),
    ("social_security_bureau", 52, 52),
    ("public_security", 48, 48),
    ("housing_bureau", 29, 29),
    ("agriculture_bureau", 28, 28),
    ("unicom", 24, 20),
    ("hr_bureau", 23, 23),
    ("housing_fund_center", 23, 23),
    ("china_mobile", 21, 21),
    ("banking_regulation", 17, 17),
    ("education_bureau", 13, 13),
    ("power_supply", 11, 10),
    ("commerce_bureau", 7, 7),
    ("government_affairs", 6, 6),
    ("natural_resources", 5, 5),
    ("siping_heating", 4, 4),
    ("water_resources", 4, 4),
    ("jilin_tv", 4, 4),
    ("china_telecom", 3, 3),
    ("law_enforcement", 2, 2),
    ("grain_reserve", 2, 2),
    ("civil_affairs", 1, 1),
    ("ecology_environment", 1, 1),
    ("tax_bureau", 1, 1),
    ("culture_tourism", 1, 1),
    ("industry_it", 1, 1),
];

const REQUEST_KINDS: &[(&str, u32)] =
    &[("help", 40), ("complaint", 25), ("report", 5), ("consultation", 25), ("suggestion", 5)];

fn pick<'a, T>(rng: &mut StdRng, table: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
    let total: u32 = table.iter().map(&weight).sum();
    let mut n = rng.random_range(0..total);
    for row in table {
        let w = weight(row);
        if n < w {
            return row;
        }
        n -= w;
    }
    &table[table.len() - 1]
}

/// One generated upstream message.
#[derive(Clone, Debug)]
pub struct Generated {
    pub case_id: String,
    pub occurred_at: Timestamp,
    pub json: Value,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Plan {
    pub month: Month,
    pub zone: TimeZone,
    pub cases: usize,
    /// Also generate this many days of the next month, at the same daily rate, so event time
    /// moves past the month's end and the month closes.
    pub next_month_days: i64,
    pub seed: u64,
}

/// Generates the events of `plan.cases` cases created in the month (plus the next month's
/// first days), sorted by event time, with a few re-sent duplicates.
pub fn generate(plan: &Plan) -> Vec<Generated> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let start = plan.month.start(&plan.zone);
    let end = plan.month.end(&plan.zone);
    let month_secs = end.duration_since(start).as_secs();
    let extra = (plan.cases as i64 * plan.next_month_days * 86_400 / month_secs) as usize;
    let mut out = Vec::new();
    for i in 0..plan.cases + extra {
        let created_at = if i < plan.cases {
            start + SignedDuration::from_secs(rng.random_range(0..month_secs))
        } else {
            end + SignedDuration::from_secs(rng.random_range(0..plan.next_month_days * 86_400))
        };
        case_events(&mut rng, &format!("{}-{:06}", plan.month, i), created_at, &mut out);
    }
    out.sort_by_key(|g| g.occurred_at);
    // Upstream platforms deliver at least once: now and then an event already sent comes again.
    let mut delivered = Vec::with_capacity(out.len() + out.len() / 100);
    for g in out {
        delivered.push(g);
        if rng.random_bool(0.005) {
            let again = delivered[rng.random_range(0..delivered.len())].clone();
            delivered.push(again);
        }
    }
    delivered
}

fn case_events(rng: &mut StdRng, case_id: &str, created_at: Timestamp, out: &mut Vec<Generated>) {
    let channel = pick(rng, CHANNELS, |(_, w)| *w).0;
    let kind = pick(rng, REQUEST_KINDS, |(_, w)| *w).0;
    let assigned_share = 9_600.0 / REFERENCE_CASES as f64;
    let department = rng.random_bool(assigned_share).then(|| pick(rng, DEPARTMENTS, |(_, a, _)| *a).0);
    let on_time_rate = department
        .and_then(|d| DEPARTMENTS.iter().find(|(c, _, _)| *c == d))
        .map_or(1.0, |(_, a, o)| *o as f64 / *a as f64);
    let sla_days = if kind == "consultation" { 3 } else { 13 };
    let due =
        department.filter(|_| rng.random_bool(0.8)).map(|_| created_at + SignedDuration::from_hours(24 * sla_days));
    let mut created = json!({
        "event_id": format!("{case_id}-c"),
        "case_id": case_id,
        "type": "created",
        "occurred_at": created_at.to_string(),
        "channel": channel,
        "category": pick(rng, CATEGORIES, |(_, w)| *w).0,
        "request_kind": kind,
        "caller_name": "张三",
        "caller_phone": format!("1380000{:04}", rng.random_range(0..10_000)),
        "address": "四平市铁西区英雄大街1号",
        "content": "反映人称小区供暖不热，请求协调解决。",
    });
    if channel == "leader_board" {
        created["board"] = json!(if rng.random_bool(33.0 / 77.0) { "party_secretary" } else { "mayor" });
    }
    if let Some(d) = department {
        created["department"] = json!(d);
    }
    if let Some(d) = due {
        created["due_at"] = json!(d.to_string());
    }
    out.push(Generated { case_id: case_id.into(), occurred_at: created_at, json: created });

    let mut now = created_at;
    if let Some(first) = department
        && rng.random_bool(0.06)
    {
        let to = loop {
            let to = pick(rng, DEPARTMENTS, |(_, a, _)| *a).0;
            if to != first {
                break to;
            }
        };
        now += SignedDuration::from_secs(rng.random_range(600..86_400));
        out.push(Generated {
            case_id: case_id.into(),
            occurred_at: now,
            json: json!({"event_id": format!("{case_id}-t1"), "case_id": case_id, "type": "transferred",
                "occurred_at": now.to_string(), "to_department": to, "from_department": first}),
        });
        // Buck-passing: the case comes back to its first department.
        if rng.random_bool(0.1) {
            now += SignedDuration::from_secs(rng.random_range(600..86_400));
            out.push(Generated {
                case_id: case_id.into(),
                occurred_at: now,
                json: json!({"event_id": format!("{case_id}-t2"), "case_id": case_id, "type": "transferred",
                    "occurred_at": now.to_string(), "to_department": first,
                    "due_at": (now + SignedDuration::from_hours(24 * 5)).to_string()}),
            });
        }
    }
    if rng.random_bool(31_620.0 / 31_681.0) {
        let late = !rng.random_bool(on_time_rate);
        let hours = if department.is_none() {
            rng.random_range(0..48)
        } else if late {
            24 * 16 + rng.random_range(0..240)
        } else {
            rng.random_range(1..24 * 3)
        };
        let closed_at = now + SignedDuration::from_hours(hours) + SignedDuration::from_secs(rng.random_range(0..3600));
        out.push(Generated {
            case_id: case_id.into(),
            occurred_at: closed_at,
            json: json!({"event_id": format!("{case_id}-x"), "case_id": case_id, "type": "closed",
                "occurred_at": closed_at.to_string()}),
        });
    }
}
