//! A realistic month of upstream events that reproduces the reference report (Siping, April
//! 2022) exactly: at `REFERENCE_CASES` cases its snapshot carries the report's every figure
//! (each channel received and closed, the board's split, each category, each department's
//! cases and on-time closures); at other sizes, the same shares. Cases are dealt their
//! figures from exact quotas, then their events are made as upstream sends them: transfers
//! (some passed back to where they started), deadlines, re-sent duplicates, and time order
//! across three topics. Used by the demo, the integration tests and the benchmark. Events
//! carry fake personal data, as upstream messages do, so every run also checks that none of
//! it leaks.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::domain::month::Month;

pub mod jilin;

/// Cases in the reference month.
pub const REFERENCE_CASES: usize = 31_681;

/// Channels of the reference month: code, received, closed.
const CHANNELS: &[(&str, u32, u32)] = &[
    ("provincial_platform", 2034, 1990),
    ("state_council_inspection", 64, 64),
    ("gov_website", 25, 25),
    ("governor_mailbox", 12, 12),
    ("mayor_mailbox", 22, 22),
    ("leader_board", 77, 77),
    ("hotline", 29_447, 29_430),
];

/// The leader board's sections: 33 messages to the party secretary, 44 to the mayor.
const BOARDS: &[(&str, u32)] = &[("party_secretary", 33), ("mayor", 44)];

pub(crate) const CATEGORIES: &[(&str, u32)] = &[
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
    /// Also the office's loop (contract v2): sign-fors, returns, extensions, reopens and
    /// ratings, none of which changes a v1 figure.
    pub v2_events: bool,
    /// Another city of the province than the reference's (`jilin::CITIES`): its events name
    /// it, its departments take the places of the reference's districts and counties, and its
    /// loop has its own rates. `None`: the reference city, whose events name no city.
    pub city: Option<&'static jilin::GeneratedCity>,
}

/// How a city's departments work the office's loop (contract v2).
#[derive(Clone, Copy, Debug)]
pub struct LoopRates {
    /// Of the sign-fors, the share within the two hours allowed.
    pub sign_for_on_time: f64,
    /// Of the cases closed on time, the share the call-back reopens.
    pub reopened: f64,
    /// The call-back results' weights, in `RESULTS`' order.
    pub results: [u32; 4],
}

impl LoopRates {
    /// The reference city's.
    pub const REFERENCE: LoopRates = LoopRates { sign_for_on_time: 0.8, reopened: 0.03, results: [75, 15, 6, 4] };
}

/// Splits `total` in proportion to `weights`, each part rounded down and the rest handed out
/// by largest remainder: at the weights' own total, each part is its weight.
fn apportion(total: usize, weights: &[u32]) -> Vec<usize> {
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<(usize, u64)> = weights
        .iter()
        .map(|&w| {
            let n = total as u64 * u64::from(w);
            ((n / sum) as usize, n % sum)
        })
        .collect();
    let mut parts: Vec<usize> = exact.iter().map(|(part, _)| *part).collect();
    let mut by_remainder: Vec<usize> = (0..weights.len()).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse(exact[i].1));
    for &i in by_remainder.iter().take(total - parts.iter().sum::<usize>()) {
        parts[i] += 1;
    }
    parts
}

/// `reference` scaled from the reference month's cases to `cases`.
fn scaled(reference: u32, cases: usize) -> usize {
    ((u64::from(reference) * cases as u64 + REFERENCE_CASES as u64 / 2) / REFERENCE_CASES as u64) as usize
}

/// How a case assigned to a department ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    OnTime,
    Late,
    Open,
}

/// The figures one case is dealt.
#[derive(Clone, Debug)]
struct Dealt {
    channel: &'static str,
    board: Option<&'static str>,
    category: &'static str,
    closed: bool,
    /// The department holding the case at the end, and how it ends there.
    holder: Option<(&'static str, Outcome)>,
}

/// Deals `cases` cases the reference month's figures, scaled, in random order.
fn deal(rng: &mut StdRng, cases: usize) -> Vec<Dealt> {
    let received = apportion(cases, &CHANNELS.iter().map(|c| c.1).collect::<Vec<_>>());
    let reference_open: u32 = CHANNELS.iter().map(|c| c.1 - c.2).sum();
    let open = apportion(scaled(reference_open, cases), &CHANNELS.iter().map(|c| c.1 - c.2).collect::<Vec<_>>());
    let mut dealt = Vec::with_capacity(cases);
    for (i, (channel, _, _)) in CHANNELS.iter().enumerate() {
        let boards = if *channel == "leader_board" {
            let split = apportion(received[i], &BOARDS.iter().map(|b| b.1).collect::<Vec<_>>());
            BOARDS.iter().zip(split).flat_map(|((b, _), n)| std::iter::repeat_n(Some(*b), n)).collect()
        } else {
            vec![None; received[i]]
        };
        for (n, board) in boards.into_iter().enumerate() {
            let closed = n >= open[i].min(received[i]);
            dealt.push(Dealt { channel, board, category: "", closed, holder: None });
        }
    }
    dealt.shuffle(rng);

    let categories = apportion(cases, &CATEGORIES.iter().map(|c| c.1).collect::<Vec<_>>());
    let mut category_of: Vec<&'static str> =
        CATEGORIES.iter().zip(categories).flat_map(|((c, _), n)| std::iter::repeat_n(*c, n)).collect();
    category_of.shuffle(rng);
    for (case, category) in dealt.iter_mut().zip(category_of) {
        case.category = category;
    }

    // Departments: each its cases, on time or not; of those not on time, every third is still
    // open (if open cases remain) and the others were closed late.
    let assigned_total: u32 = DEPARTMENTS.iter().map(|d| d.1).sum();
    let assigned = apportion(scaled(assigned_total, cases), &DEPARTMENTS.iter().map(|d| d.1).collect::<Vec<_>>());
    let mut open_slots: Vec<usize> = (0..dealt.len()).filter(|&i| !dealt[i].closed).collect();
    let mut closed_slots: Vec<usize> = (0..dealt.len()).filter(|&i| dealt[i].closed).collect();
    let mut late = 0;
    for ((department, reference_assigned, reference_on_time), n) in DEPARTMENTS.iter().zip(assigned) {
        let on_time = ((u64::from(*reference_on_time) * n as u64 + u64::from(*reference_assigned) / 2)
            / u64::from(*reference_assigned)) as usize;
        for k in 0..n {
            let outcome = if k < on_time {
                Outcome::OnTime
            } else {
                late += 1;
                if late % 3 == 1 && !open_slots.is_empty() { Outcome::Open } else { Outcome::Late }
            };
            let slot = match outcome {
                Outcome::Open => open_slots.pop(),
                _ => closed_slots.pop(),
            };
            if let Some(slot) = slot {
                dealt[slot].holder = Some((department, outcome));
            }
        }
    }
    dealt
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
    let this_month = deal(&mut rng, plan.cases);
    let next_month = deal(&mut rng, extra);
    for (i, case) in this_month.iter().chain(&next_month).enumerate() {
        let created_at = if i < plan.cases {
            start + SignedDuration::from_secs(rng.random_range(0..month_secs))
        } else {
            end + SignedDuration::from_secs(rng.random_range(0..plan.next_month_days * 86_400))
        };
        case_events(&mut rng, &format!("{}-{:06}", plan.month, i), case, created_at, plan, &mut out);
    }
    if let Some(city) = plan.city {
        out.iter_mut().for_each(|g| city.claim(&mut g.json));
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

/// The plan's events counted by the core, in the order generated: what a pipeline would count.
pub fn count(plan: &Plan, rules: crate::domain::case::CountingRules) -> crate::domain::ledger::Ledger {
    let limits = crate::domain::event::DecodeLimits { max_message_bytes: 1 << 20, latest_occurred_at: Timestamp::MAX };
    let mut ledger = crate::domain::ledger::Ledger::new(rules);
    for g in generate(plan) {
        let event =
            crate::domain::event::decode(g.json.to_string().as_bytes(), &limits).expect("generated events decode");
        // Re-sent duplicates change nothing; nothing generated is rejected otherwise.
        let _ = ledger.apply(&event);
    }
    ledger
}

/// The reference month (seed 2022, as the demo generates it) counted by the core, as the closed
/// snapshot of 2022-05-06 in Shanghai: what the report's tests render.
pub fn reference_snapshot() -> crate::domain::snapshot::Snapshot {
    let rules = crate::domain::case::CountingRules::reference();
    let month: Month = "2022-04".parse().expect("a valid month");
    let plan = Plan {
        month,
        zone: rules.zone.clone(),
        cases: REFERENCE_CASES,
        next_month_days: 3,
        seed: 2022,
        v2_events: true,
        city: None,
    };
    let ledger = count(&plan, rules);
    let as_of: Timestamp = "2022-05-05T16:00:00Z".parse().expect("a valid instant");
    crate::domain::snapshot::Snapshot {
        city: None,
        month,
        timezone: "Asia/Shanghai".into(),
        revision: 9,
        status: crate::domain::snapshot::Status::Closed,
        as_of,
        published_at: as_of,
        figures: {
            let mut figures = ledger.figures(month, as_of).unwrap_or_default();
            figures.ranking = crate::domain::ranking::RankingRules::default().rank(&figures.by_department);
            figures
        },
        made_by: Default::default(),
    }
}

/// A department other than `not`, picked by the reference's weights.
fn other_department(rng: &mut StdRng, not: &str) -> &'static str {
    loop {
        let d = pick(rng, DEPARTMENTS, |(_, a, _)| *a).0;
        if d != not {
            return d;
        }
    }
}

fn case_events(
    rng: &mut StdRng,
    case_id: &str,
    case: &Dealt,
    created_at: Timestamp,
    plan: &Plan,
    out: &mut Vec<Generated>,
) {
    let kind = pick(rng, REQUEST_KINDS, |(_, w)| *w).0;
    let sla = SignedDuration::from_hours(24 * if kind == "consultation" { 3 } else { 13 });
    let mut created = json!({
        "event_id": format!("{case_id}-c"),
        "case_id": case_id,
        "type": "created",
        "occurred_at": created_at.to_string(),
        "channel": case.channel,
        "category": case.category,
        "request_kind": kind,
        "caller_name": "张三",
        "caller_phone": format!("1380000{:04}", rng.random_range(0..10_000)),
        "address": "四平市铁西区英雄大街1号",
        "content": "反映人称小区供暖不热，请求协调解决。",
    });
    if let Some(board) = case.board {
        created["board"] = json!(board);
    }
    let mut events = vec![(created_at, created)];

    // Who holds the case, how it got there, and the deadline of its last assignment: given
    // upstream, except for a fifth of the cases closed on time, which take the configured one.
    let mut last_assigned = created_at;
    let mut due = None;
    if let Some((holder, outcome)) = case.holder {
        let transfer = |events: &mut Vec<(Timestamp, Value)>, n: usize, at: Timestamp, to: &str, from: Option<&str>| {
            let mut t = json!({"event_id": format!("{case_id}-t{n}"), "case_id": case_id, "type": "transferred",
                "occurred_at": at.to_string(), "to_department": to});
            if let Some(from) = from {
                t["from_department"] = json!(from);
            }
            events.push((at, t));
        };
        let step =
            |at: &mut Timestamp, rng: &mut StdRng| *at += SignedDuration::from_secs(rng.random_range(600..86_400));
        if rng.random_bool(0.06) {
            let other = other_department(rng, holder);
            if rng.random_bool(0.1) {
                // Buck-passing: sent on to another department, which passes it back.
                events[0].1["department"] = json!(holder);
                step(&mut last_assigned, rng);
                transfer(&mut events, 1, last_assigned, other, Some(holder));
                step(&mut last_assigned, rng);
                transfer(&mut events, 2, last_assigned, holder, None);
            } else {
                events[0].1["department"] = json!(other);
                step(&mut last_assigned, rng);
                transfer(&mut events, 1, last_assigned, holder, Some(other));
            }
        } else {
            events[0].1["department"] = json!(holder);
        }
        if outcome != Outcome::OnTime || rng.random_bool(0.8) {
            let at = last_assigned + sla;
            events.last_mut().expect("the created event at least").1["due_at"] = json!(at.to_string());
            due = Some(at);
        }
        let closed_at = match outcome {
            Outcome::OnTime => Some(last_assigned + SignedDuration::from_secs(rng.random_range(3600..3 * 86_400))),
            Outcome::Late => {
                Some(due.expect("set above") + SignedDuration::from_secs(rng.random_range(3600..10 * 86_400)))
            }
            Outcome::Open => None,
        };
        if let Some(at) = closed_at {
            events.push((at, closed(case_id, at)));
        }
        if plan.v2_events {
            let month_end = plan.month.end(&plan.zone);
            let rates = plan.city.map_or(LoopRates::REFERENCE, |c| c.rates);
            let v2 = V2 { case_id, holder, outcome, last_assigned, due, closed_at, month_end, rates };
            v2.events(plan.seed, &mut events);
        }
    } else if case.closed {
        let at = created_at + SignedDuration::from_secs(rng.random_range(60..48 * 3600));
        events.push((at, closed(case_id, at)));
    }
    out.extend(events.into_iter().map(|(occurred_at, json)| Generated { occurred_at, json }));
}

/// What a case's v2 events are made from. They come from a random stream of their own (seeded
/// by the case), so the v1 events are the same with or without them.
struct V2<'a> {
    case_id: &'a str,
    holder: &'a str,
    outcome: Outcome,
    last_assigned: Timestamp,
    due: Option<Timestamp>,
    closed_at: Option<Timestamp>,
    month_end: Timestamp,
    rates: LoopRates,
}

impl V2<'_> {
    fn events(&self, seed: u64, events: &mut Vec<(Timestamp, Value)>) {
        let V2 { case_id, holder, outcome, last_assigned, due, closed_at, month_end, rates } = *self;
        let mut rng = StdRng::seed_from_u64(seed ^ xxhash_rust::xxh3::xxh3_64(case_id.as_bytes()));
        let secs = |rng: &mut StdRng, from: i64, to: i64| SignedDuration::from_secs(rng.random_range(from..to));
        let event = |suffix: &str, kind: &str, at: Timestamp| {
            json!({"event_id": format!("{case_id}-{suffix}"), "case_id": case_id, "type": kind,
                "occurred_at": at.to_string()})
        };
        // Most holders sign for the case, four in five within the two hours allowed.
        if rng.random_bool(0.9) {
            let at = last_assigned
                + if rng.random_bool(rates.sign_for_on_time) {
                    secs(&mut rng, 60, 7_000)
                } else {
                    secs(&mut rng, 7_300, 40_000)
                };
            let mut e = event("a", "accepted", at);
            e["department"] = json!(holder);
            events.push((at, e));
        }
        // A department first given the case sends it back to dispatch before it goes on: the
        // transfer names it as the sender, so the v1 figures are the same.
        if events.len() >= 2 && events[1].1["type"] == "transferred" && events[1].1["from_department"].is_string() {
            let first = events[0].1["department"].as_str().map(str::to_owned);
            if let (Some(first), true) = (first, rng.random_bool(0.6)) {
                let at = events[1].0 - secs(&mut rng, 1, 300);
                let mut e = event("r", "returned", at.max(events[0].0));
                e["department"] = json!(first);
                e["reason"] = json!("not_ours");
                events.push((at.max(events[0].0), e));
            }
        }
        let Some(closed_at) = closed_at else { return };
        if outcome == Outcome::OnTime {
            // An extension granted before an on-time close leaves it on time.
            if let (Some(due), true) = (due, rng.random_bool(0.05)) {
                let at = last_assigned + (closed_at - last_assigned) / 2;
                let mut e = event("e", "extended", at);
                e["department"] = json!(holder);
                e["due_at"] = json!((due + SignedDuration::from_hours(5 * 24)).to_string());
                events.push((at, e));
            }
            // The call-back finds a few cases unresolved: reopened to the holder, closed again
            // (within the month, and well before the default deadline from the reopen).
            let reopen = closed_at + secs(&mut rng, 3_600, 6 * 3_600);
            let closed_again = reopen + secs(&mut rng, 3_600, 4 * 3_600);
            if closed_again < month_end && rng.random_bool(rates.reopened) {
                let mut e = event("o", "reopened", reopen);
                e["department"] = json!(holder);
                events.push((reopen, e));
                events.push((closed_again, event("x2", "closed", closed_again)));
            }
        }
        // Most closed cases are called back and rated.
        if rng.random_bool(0.7) {
            let at = closed_at + secs(&mut rng, 3_600, 3 * 86_400);
            let results: Vec<(&str, u32)> = RESULTS.into_iter().zip(rates.results).collect();
            let result = pick(&mut rng, &results, |(_, w)| *w).0;
            let mut e = event("s", "rated", at);
            e["result"] = json!(result);
            events.push((at, e));
        }
    }
}

/// Call-back results (their weights are each city's, `LoopRates::results`).
const RESULTS: [&str; 4] = ["satisfied", "basically_satisfied", "dissatisfied", "unreachable"];

fn closed(case_id: &str, at: Timestamp) -> Value {
    json!({"event_id": format!("{case_id}-x"), "case_id": case_id, "type": "closed", "occurred_at": at.to_string()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::case::Applied;
    use crate::domain::fixtures::rules;

    #[test]
    fn apportioning_keeps_the_total_and_exact_weights() {
        assert_eq!(apportion(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(apportion(0, &[5, 7]), vec![0, 0]);
        assert_eq!(
            apportion(31_681, &CHANNELS.iter().map(|c| c.1).collect::<Vec<_>>()),
            vec![2034, 64, 25, 12, 22, 77, 29_447]
        );
    }

    /// The generated reference month counts, through the real core, to the report's figures.
    #[test]
    fn the_reference_month_counts_to_the_reports_figures() {
        let month: Month = "2022-04".parse().unwrap();
        let plan = Plan {
            month,
            zone: rules().zone,
            cases: REFERENCE_CASES,
            next_month_days: 3,
            seed: 2022,
            v2_events: true,
            city: None,
        };
        let f = count(&plan, rules()).figures(month, "2022-05-06T00:00:00Z".parse().unwrap()).unwrap();
        assert_eq!((f.totals.received, f.totals.closed, f.totals.in_progress), (31_681, 31_620, 61));
        for (channel, received, closed) in CHANNELS {
            let c = &f.by_channel[*channel];
            assert_eq!((c.received, c.closed), (u64::from(*received), u64::from(*closed)), "{channel}");
        }
        assert_eq!((f.by_board["party_secretary"].received, f.by_board["mayor"].received), (33, 44));
        for (category, n) in CATEGORIES {
            assert_eq!(f.by_category[*category].received, u64::from(*n), "{category}");
        }
        assert_eq!(f.by_department.len(), DEPARTMENTS.len());
        for (department, assigned, on_time) in DEPARTMENTS {
            let d = &f.by_department[*department];
            assert_eq!((d.assigned, d.closed_on_time), (u64::from(*assigned), u64::from(*on_time)), "{department}");
        }
        assert!(f.transfers.total > 300 && f.transfers.returned_cases > 20, "{:?}", f.transfers);
        // The office's loop on top, which changed none of the figures above.
        let all = f.all_departments;
        assert!(all.accepted_on_time > 6_000 && all.accepted_late > 1_000, "{all:?}");
        assert!(all.returned > 200 && all.extended > 200 && all.reopened > 150, "{all:?}");
        assert!(all.satisfaction_rate.is_some_and(|r| (0.9..0.97).contains(&r)), "{all:?}");
    }

    #[test]
    fn every_generated_event_counts_once() {
        let plan = Plan {
            month: "2022-04".parse().unwrap(),
            zone: rules().zone,
            cases: 3_000,
            next_month_days: 3,
            seed: 5,
            v2_events: true,
            city: None,
        };
        let limits =
            crate::domain::event::DecodeLimits { max_message_bytes: 1 << 20, latest_occurred_at: Timestamp::MAX };
        let mut ledger = crate::domain::ledger::Ledger::new(rules());
        let mut seen = std::collections::HashSet::new();
        for g in generate(&plan) {
            let event = crate::domain::event::decode(g.json.to_string().as_bytes(), &limits).unwrap();
            let first = seen.insert(event.event_id.clone());
            let applied = ledger.apply(&event);
            let expected = if first { Applied::Changed } else { Applied::Duplicate };
            assert_eq!(applied, Ok(expected), "{}", g.json);
        }
    }

    #[test]
    fn other_sizes_keep_the_shares() {
        let month: Month = "2022-04".parse().unwrap();
        let plan =
            Plan { month, zone: rules().zone, cases: 3_000, next_month_days: 0, seed: 1, v2_events: true, city: None };
        let f = count(&plan, rules()).figures(month, Timestamp::MAX).unwrap();
        assert_eq!((f.totals.received, f.totals.in_progress), (3_000, 6));
        assert_eq!(f.by_category["epidemic"].received, 1693);
        assert_eq!(f.by_department["tiexi_district"].assigned, 216);
    }
}
