//! An independent, batch restatement of the counting rules (issue #2, "What is counted", and
//! contract v2 of issue #12), written straight from the contract's JSON: the figures the pipeline publishes must equal
//! what this computes from everything that was sent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hotline::domain::figures::{
    CategoryCounts, CityRow, Counts, DepartmentFigures, Figures, ProvinceFigures, ProvisionalDeadlines, Ranked,
    Ranking, ReturnedPair, Totals, TransferFigures,
};
use hotline::domain::province::CityCode;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

/// How long a department has to sign for an assignment: `sla.accept`'s default.
const ACCEPT_WITHIN: jiff::SignedDuration = jiff::SignedDuration::from_hours(2);

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str().map(|s| s.parse().expect("test events have valid timestamps"))
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

pub fn figures(events: &[Value], month: &str, zone: &TimeZone, sla: Span, as_of: Timestamp) -> Figures {
    let calendar_days = |assigned: Timestamp, _kind: Option<&str>| {
        (assigned.to_zoned_datetime(zone.clone()).checked_add(sla).unwrap().timestamp(), None)
    };
    figures_by(events, month, zone, &calendar_days, as_of)
}

/// The working-day table the tests count by (`[sla.working_days]`).
pub const WORKING_DAYS: &str =
    "[sla.working_days]\nconsultation = 1\nhelp = 3\ncomplaint = 5\nreport = 5\nsuggestion = 10\n";

/// Working days to answer, by request kind, as `WORKING_DAYS` sets them.
pub fn working_days(kind: Option<&str>) -> Option<i32> {
    match kind? {
        "consultation" => Some(1),
        "help" => Some(3),
        "complaint" | "report" => Some(5),
        "suggestion" => Some(10),
        _ => None,
    }
}

/// An assignment's deadline (at, request kind) -> (due, the year the calendar lacks that it
/// needed, if any).
pub type Deadline<'a> = dyn Fn(Timestamp, Option<&str>) -> (Timestamp, Option<i16>) + 'a;

/// `figures` with `deadline(assigned, request_kind)` the deadline of an assignment made
/// without `due_at`, and the year the working-day calendar lacks that it needed, if any.
pub fn figures_by(events: &[Value], month: &str, zone: &TimeZone, deadline: &Deadline, as_of: Timestamp) -> Figures {
    let mut seen = HashSet::new();
    let mut by_case: HashMap<String, Vec<&Value>> = HashMap::new();
    for e in events {
        if seen.insert(e["event_id"].as_str().unwrap().to_owned()) {
            by_case.entry(s(&e["case_id"]).unwrap()).or_default().push(e);
        }
    }

    let mut received = 0u64;
    let mut closed_total = 0u64;
    let mut by_channel: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut by_board: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut by_category: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut departments: BTreeMap<String, DepartmentFigures> = BTreeMap::new();
    let mut transfers = TransferFigures::default();
    let mut returned_pairs: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut provisional_deadlines: BTreeMap<i16, u64> = BTreeMap::new();

    for events in by_case.values() {
        let Some(created) = events.iter().find(|e| e["type"] == "created") else { continue };
        let created_at = ts(&created["occurred_at"]).unwrap();
        if created_at.to_zoned_datetime(zone.clone()).strftime("%Y-%m").to_string() != month {
            continue;
        }
        // Everything after `created`, by event time; events at one instant in the order of
        // their event ids' XXH3-64 hashes.
        let mut later: Vec<&&Value> = events.iter().filter(|e| e["type"] != "created").collect();
        later.sort_by_key(|e| (ts(&e["occurred_at"]).unwrap(), xxh3_64(e["event_id"].as_str().unwrap().as_bytes())));

        // Who held the case, in event-time order.
        let mut holders: Vec<String> = s(&created["department"]).into_iter().collect();
        let mut holder = s(&created["department"]);
        let mut assigned_at = created_at;
        let mut due = ts(&created["due_at"]);
        let mut signed = false;
        // The close in force (none after a reopen), and who held the case at the last close.
        let mut closed_at: Option<Timestamp> = None;
        let mut closer: Option<Option<String>> = None;
        let mut rating: Option<String> = None;
        let mut moves = 0u64;
        // Buck-passing: each (sender, receiver) pair that sent the case back, once.
        let mut returned: BTreeSet<(String, String)> = BTreeSet::new();
        for e in &later {
            let at = ts(&e["occurred_at"]).unwrap();
            let department = s(&e["department"]);
            let holds = department.is_some() && department == holder;
            match e["type"].as_str().unwrap() {
                "transferred" => {
                    moves += 1;
                    let to = s(&e["to_department"]).unwrap();
                    let from = s(&e["from_department"]).or(holder.clone());
                    if let Some(f) = from {
                        departments.entry(f.clone()).or_default().transferred_out += 1;
                        holders.push(f.clone());
                        if holders.contains(&to) {
                            returned.insert((f, to.clone()));
                        }
                    }
                    departments.entry(to.clone()).or_default().transferred_in += 1;
                    holders.push(to.clone());
                    holder = Some(to);
                    assigned_at = at;
                    signed = false;
                    if let Some(d) = ts(&e["due_at"]) {
                        due = Some(d);
                    }
                }
                "closed" if closed_at.is_none() => {
                    closed_at = Some(at);
                    closer = Some(holder.clone());
                }
                "accepted" if holds && !signed => {
                    signed = true;
                    let d = departments.entry(department.unwrap()).or_default();
                    if at <= assigned_at + ACCEPT_WITHIN {
                        d.accepted_on_time += 1;
                    } else {
                        d.accepted_late += 1;
                    }
                }
                "returned" if holds && closed_at.is_none() => {
                    departments.entry(department.unwrap()).or_default().returned += 1;
                    holder = None;
                    signed = false;
                }
                "extended" if holds && closed_at.is_none() => {
                    departments.entry(department.unwrap()).or_default().extended += 1;
                    due = ts(&e["due_at"]);
                }
                "reopened" if closed_at.is_some() => {
                    let d = department.unwrap();
                    departments.entry(d.clone()).or_default().reopened += 1;
                    closed_at = None;
                    holders.push(d.clone());
                    holder = Some(d);
                    assigned_at = at;
                    signed = false;
                    due = ts(&e["due_at"]);
                }
                "rated" => rating = s(&e["result"]),
                _ => {}
            }
        }
        let closed = u64::from(closed_at.is_some());

        received += 1;
        closed_total += closed;
        for (table, key) in [
            (&mut by_channel, s(&created["channel"])),
            (&mut by_board, s(&created["board"])),
            (&mut by_kind, s(&created["request_kind"])),
            (&mut by_category, s(&created["category"])),
        ] {
            if let Some(k) = key {
                let e = table.entry(k).or_default();
                e.0 += 1;
                e.1 += closed;
            }
        }
        transfers.total += moves;
        transfers.cases_transferred += u64::from(moves > 0);
        transfers.returned_cases += u64::from(!returned.is_empty());
        for pair in returned {
            *returned_pairs.entry(pair).or_default() += 1;
        }
        if let (Some(result), Some(Some(d))) = (rating, closer) {
            let d = departments.entry(d).or_default();
            match result.as_str() {
                "satisfied" => d.satisfied += 1,
                "basically_satisfied" => d.basically_satisfied += 1,
                "dissatisfied" => d.dissatisfied += 1,
                _ => d.unreachable += 1,
            }
        }

        if let Some(h) = holder {
            let (due, provisional) = match due {
                Some(due) => (due, None),
                None => deadline(assigned_at, created["request_kind"].as_str()),
            };
            if let Some(year) = provisional {
                *provisional_deadlines.entry(year).or_insert(0u64) += 1;
            }
            let d = departments.entry(h).or_default();
            d.assigned += 1;
            match closed_at {
                Some(c) if c <= due => d.closed_on_time += 1,
                Some(_) => d.closed_late += 1,
                None => {
                    d.in_progress += 1;
                    if due < as_of {
                        d.overdue += 1;
                    }
                }
            }
        }
    }

    transfers.returned_pairs =
        returned_pairs.into_iter().map(|((from, to), cases)| ReturnedPair { from, to, cases }).collect();
    // Most first; among equals, by the pair.
    transfers.returned_pairs.sort_by_key(|p| std::cmp::Reverse(p.cases));
    let counts = |m: BTreeMap<String, (u64, u64)>| -> BTreeMap<String, Counts> {
        m.into_iter().map(|(k, (r, c))| (k, Counts { received: r, closed: c, in_progress: r - c })).collect()
    };
    Figures {
        totals: Totals {
            received,
            closed: closed_total,
            in_progress: received - closed_total,
            closure_rate: (received > 0).then(|| closed_total as f64 / received as f64),
        },
        by_category: by_category
            .into_iter()
            .map(|(k, (r, c))| {
                (k, CategoryCounts { received: r, closed: c, in_progress: r - c, share: r as f64 / received as f64 })
            })
            .collect(),
        by_channel: counts(by_channel),
        by_board: counts(by_board),
        by_request_kind: counts(by_kind),
        all_departments: rates(departments.values().fold(DepartmentFigures::default(), sum_of)),
        ranking: ranking(&departments.iter().map(|(k, d)| (k.clone(), rates(*d))).collect()),
        by_department: departments.into_iter().map(|(k, d)| (k, rates(d))).collect(),
        transfers,
        province: None,
        provisional_deadlines: provisional_deadlines
            .into_iter()
            .map(|(year, cases)| ProvisionalDeadlines { year, cases })
            .collect(),
    }
}

/// The province's month from its cities' (code, name, figures), by code: every count summed,
/// every rate taken from the sums, a row per city, and the cities ranked as departments are.
pub fn province(cities: &[(CityCode, &str, Figures)]) -> Figures {
    let mut f = Figures::default();
    let add = |sum: &mut BTreeMap<String, Counts>, counts: &BTreeMap<String, Counts>| {
        for (k, c) in counts {
            let s = sum.entry(k.clone()).or_default();
            (s.received, s.closed, s.in_progress) =
                (s.received + c.received, s.closed + c.closed, s.in_progress + c.in_progress);
        }
    };
    let mut departments = DepartmentFigures::default();
    let mut rows = Vec::new();
    for (city, name, c) in cities {
        f.totals.received += c.totals.received;
        f.totals.closed += c.totals.closed;
        f.totals.in_progress += c.totals.in_progress;
        add(&mut f.by_channel, &c.by_channel);
        add(&mut f.by_board, &c.by_board);
        add(&mut f.by_request_kind, &c.by_request_kind);
        f.transfers.total += c.transfers.total;
        f.transfers.cases_transferred += c.transfers.cases_transferred;
        f.transfers.returned_cases += c.transfers.returned_cases;
        let d = c.all_departments;
        departments = sum_of(departments, &d);
        rows.push(CityRow { city: *city, name: (*name).to_owned(), totals: c.totals.clone(), departments: d });
    }
    f.totals.closure_rate = (f.totals.received > 0).then(|| f.totals.closed as f64 / f.totals.received as f64);
    f.all_departments = rates(departments);
    let ranking = ranking(&rows.iter().map(|r| (r.city.to_string(), r.departments)).collect());
    f.province = Some(ProvinceFigures { cities: rows, ranking });
    f
}

/// The red and black lists with `[ranking]`'s defaults: departments of 10 cases or more,
/// scored by the weighted mean of the rates they have (on time 0.3, satisfaction 0.3, sign-for
/// 0.1, not returned 0.15, not reopened 0.15), five best and five worst of the rest.
fn ranking(departments: &BTreeMap<String, DepartmentFigures>) -> Ranking {
    let mut scored: Vec<Ranked> = Vec::new();
    for (code, d) in departments.iter().filter(|(_, d)| d.assigned >= 10) {
        let closed = d.closed_on_time + d.closed_late;
        let rated = d.satisfied + d.basically_satisfied + d.dissatisfied;
        let signed = d.accepted_on_time + d.accepted_late;
        let (mut sum, mut weights) = (0.0, 0.0);
        let mut weigh = |weight: f64, rate: f64| {
            sum += weight * rate;
            weights += weight;
        };
        if closed > 0 {
            weigh(0.3, d.on_time_rate.expect("closed cases"));
        }
        if rated > 0 {
            weigh(0.3, d.satisfaction_rate.expect("ratings"));
        }
        if signed > 0 {
            weigh(0.1, d.accepted_on_time as f64 / signed as f64);
        }
        weigh(0.15, 1.0 - d.return_rate.expect("assigned cases"));
        if closed > 0 {
            weigh(0.15, 1.0 - d.reopen_rate.expect("closed cases").min(1.0));
        }
        let score = (sum / weights * 1000.0).round() / 10.0;
        scored.push(Ranked { department: code.clone(), score, assigned: d.assigned });
    }
    scored.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then(b.assigned.cmp(&a.assigned)).then(a.department.cmp(&b.department))
    });
    let top: Vec<Ranked> = scored.iter().take(5).cloned().collect();
    let bottom = scored[top.len()..].iter().rev().take(5).cloned().collect();
    Ranking { min_assigned: 10, top, bottom }
}

/// The counts of `sum` and `d` added, without rates.
fn sum_of(sum: DepartmentFigures, d: &DepartmentFigures) -> DepartmentFigures {
    DepartmentFigures {
        assigned: sum.assigned + d.assigned,
        closed_on_time: sum.closed_on_time + d.closed_on_time,
        closed_late: sum.closed_late + d.closed_late,
        in_progress: sum.in_progress + d.in_progress,
        overdue: sum.overdue + d.overdue,
        transferred_in: sum.transferred_in + d.transferred_in,
        transferred_out: sum.transferred_out + d.transferred_out,
        accepted_on_time: sum.accepted_on_time + d.accepted_on_time,
        accepted_late: sum.accepted_late + d.accepted_late,
        returned: sum.returned + d.returned,
        extended: sum.extended + d.extended,
        reopened: sum.reopened + d.reopened,
        satisfied: sum.satisfied + d.satisfied,
        basically_satisfied: sum.basically_satisfied + d.basically_satisfied,
        dissatisfied: sum.dissatisfied + d.dissatisfied,
        unreachable: sum.unreachable + d.unreachable,
        ..DepartmentFigures::default()
    }
}

/// The rates of contract v2, from a department's counts.
fn rates(d: DepartmentFigures) -> DepartmentFigures {
    let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
    let closed = d.closed_on_time + d.closed_late;
    DepartmentFigures {
        on_time_rate: ratio(d.closed_on_time, closed),
        sign_for_rate: ratio(d.accepted_on_time, d.accepted_on_time + d.accepted_late),
        return_rate: ratio(d.returned, d.assigned + d.returned),
        reopen_rate: ratio(d.reopened, closed),
        satisfaction_rate: ratio(
            d.satisfied + d.basically_satisfied,
            d.satisfied + d.basically_satisfied + d.dissatisfied,
        ),
        ..d
    }
}
