//! An independent, batch restatement of the counting rules (issue #2, "What is counted"),
//! written straight from the contract's JSON: the figures the pipeline publishes must equal
//! what this computes from everything that was sent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hotline::domain::figures::{
    CategoryCounts, Counts, DepartmentFigures, Figures, ReturnedPair, Totals, TransferFigures,
};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str().map(|s| s.parse().expect("test events have valid timestamps"))
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

pub fn figures(events: &[Value], month: &str, zone: &TimeZone, sla: Span, as_of: Timestamp) -> Figures {
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

    for events in by_case.values() {
        let Some(created) = events.iter().find(|e| e["type"] == "created") else { continue };
        let created_at = ts(&created["occurred_at"]).unwrap();
        if created_at.to_zoned_datetime(zone.clone()).strftime("%Y-%m").to_string() != month {
            continue;
        }
        let mut moves: Vec<&&Value> = events.iter().filter(|e| e["type"] == "transferred").collect();
        // Transfers at one instant go in the order of their event ids' XXH3-64 hashes.
        moves.sort_by_key(|e| (ts(&e["occurred_at"]).unwrap(), xxh3_64(e["event_id"].as_str().unwrap().as_bytes())));
        let closed_at = events.iter().filter(|e| e["type"] == "closed").filter_map(|e| ts(&e["occurred_at"])).min();
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

        // Who held the case, in event-time order.
        let mut holders: Vec<String> = s(&created["department"]).into_iter().collect();
        let mut holder = s(&created["department"]);
        let mut assigned_at = created_at;
        let mut due = ts(&created["due_at"]);
        // Buck-passing: each (sender, receiver) pair that sent the case back, once.
        let mut returned: BTreeSet<(String, String)> = BTreeSet::new();
        for t in &moves {
            let to = s(&t["to_department"]).unwrap();
            let from = s(&t["from_department"]).or(holder.clone());
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
            assigned_at = ts(&t["occurred_at"]).unwrap();
            if let Some(d) = ts(&t["due_at"]) {
                due = Some(d);
            }
        }
        transfers.total += moves.len() as u64;
        transfers.cases_transferred += u64::from(!moves.is_empty());
        transfers.returned_cases += u64::from(!returned.is_empty());
        for pair in returned {
            *returned_pairs.entry(pair).or_default() += 1;
        }

        if let Some(h) = holder {
            let due = due
                .unwrap_or_else(|| assigned_at.to_zoned_datetime(zone.clone()).checked_add(sla).unwrap().timestamp());
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
            closure_rate: if received == 0 { 0.0 } else { closed_total as f64 / received as f64 },
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
        by_department: departments,
        transfers,
    }
}
