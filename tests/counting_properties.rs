//! Properties of the pure counting core: any permutation and duplication of a valid event
//! stream gives the same figures, and those figures equal the independent reference.

mod common;

use hotline::domain::case::CountingRules;
use hotline::domain::event::{DecodeLimits, decode};
use hotline::domain::figures::{Figures, Tally};
use hotline::domain::ledger::Ledger;
use hotline::domain::month::Month;
use hotline::domain::province::ProvinceMonth;
use hotline::domain::ranking::RankingRules;
use hotline::domain::routing::partition_of;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

const DEPARTMENTS: [&str; 4] = ["tiexi", "tiedong", "market", "commerce"];
const CHANNELS: [&str; 3] = ["hotline", "mayor_mailbox", "leader_board"];

fn base() -> Timestamp {
    // Near the end of April in Shanghai, so cases fall either side of the month boundary.
    "2022-04-28T00:00:00Z".parse().unwrap()
}

/// What contract v2 adds to a case, hours after its `created`.
const V2_TYPES: [&str; 6] = ["accepted", "returned", "extended", "reopened", "rated", "closed"];
const RESULTS: [&str; 4] = ["satisfied", "basically_satisfied", "dissatisfied", "unreachable"];

/// One case's events: created (hours after base), transfers, maybe closed, and contract v2's
/// events by departments that may or may not hold the case then.
fn case_strategy(id: usize) -> impl Strategy<Value = Vec<Value>> {
    (
        0i64..120,
        0usize..3,
        prop::option::of(0usize..4),
        prop::option::of(1i64..200),
        // A step of 0 puts two transfers at one instant.
        prop::collection::vec((0i64..100, 0usize..4, any::<bool>(), prop::option::of(1i64..300)), 0..4),
        prop::option::of(1i64..400),
        prop::option::of(1i64..400),
        0usize..2,
        prop::collection::vec((0i64..400, 0usize..6, 0usize..4, prop::option::of(1i64..300), 0usize..4), 0..6),
    )
        .prop_map(move |(created_h, channel, dept, due_h, moves, closed_h, reclosed_h, kind, v2)| {
            let case = format!("c{id}");
            let at = |h: i64| (base() + SignedDuration::from_hours(h)).to_string();
            let mut created = json!({"event_id": format!("{case}-c"), "case_id": case, "type": "created",
                "occurred_at": at(created_h), "channel": CHANNELS[channel], "category": if kind == 0 { "water" } else { "epidemic" },
                "request_kind": if kind == 0 { "help" } else { "complaint" }});
            if CHANNELS[channel] == "leader_board" {
                created["board"] = json!("mayor");
            }
            if let Some(d) = dept {
                created["department"] = json!(DEPARTMENTS[d]);
            }
            if let Some(h) = due_h {
                created["due_at"] = json!(at(created_h + h));
            }
            let mut events = vec![created];
            let mut t = created_h;
            for (i, (dh, to, with_from, due)) in moves.into_iter().enumerate() {
                t += dh;
                let mut e = json!({"event_id": format!("{case}-t{i}"), "case_id": case, "type": "transferred",
                    "occurred_at": at(t), "to_department": DEPARTMENTS[to]});
                if with_from {
                    e["from_department"] = json!(DEPARTMENTS[(to + 1) % 4]);
                }
                if let Some(d) = due {
                    e["due_at"] = json!(at(t + d));
                }
                events.push(e);
            }
            if let Some(h) = closed_h {
                events.push(json!({"event_id": format!("{case}-x"), "case_id": case, "type": "closed", "occurred_at": at(created_h + h)}));
                // Another platform closing it too, earlier or later: the earliest counts.
                if let Some(h) = reclosed_h {
                    events.push(json!({"event_id": format!("{case}-y"), "case_id": case, "type": "closed", "occurred_at": at(created_h + h)}));
                }
            }
            for (i, (h, kind, d, due, result)) in v2.into_iter().enumerate() {
                let kind = V2_TYPES[kind];
                let mut e = json!({"event_id": format!("{case}-v{i}"), "case_id": case, "type": kind,
                    "occurred_at": at(created_h + h)});
                match kind {
                    "rated" => e["result"] = json!(RESULTS[result]),
                    "closed" => {}
                    _ => e["department"] = json!(DEPARTMENTS[d]),
                }
                if kind == "extended" {
                    e["due_at"] = json!(at(created_h + h + due.unwrap_or(48)));
                } else if let (Some(due), "reopened") = (due, kind) {
                    e["due_at"] = json!(at(created_h + h + due));
                }
                if kind == "returned" && result == 0 {
                    e["reason"] = json!("not_ours");
                }
                events.push(e);
            }
            events
        })
}

fn stream_strategy() -> impl Strategy<Value = (Vec<Value>, Vec<Value>)> {
    (1usize..25)
        .prop_flat_map(|n| (0..n).map(case_strategy).collect::<Vec<_>>())
        .prop_flat_map(|cases| {
            let events: Vec<Value> = cases.into_iter().flatten().collect();
            let len = events.len();
            let shuffled = Just(events.clone()).prop_shuffle();
            let duplicates = prop::collection::vec(0..len, 0..5);
            (Just(events), shuffled, duplicates)
        })
        .prop_map(|(ordered, mut shuffled, duplicates)| {
            for (i, d) in duplicates.into_iter().enumerate() {
                let e = ordered[d].clone();
                shuffled.insert((i * 7) % (shuffled.len() + 1), e);
            }
            (ordered, shuffled)
        })
}

fn rules() -> CountingRules {
    CountingRules::reference()
}

/// The figures with the red and black lists the publisher adds, by `[ranking]`'s defaults.
fn ranked(mut f: Figures) -> Figures {
    f.ranking = RankingRules::default().rank(&f.by_department);
    f
}

fn ledger_of(events: &[Value]) -> Ledger {
    let limits = DecodeLimits { max_message_bytes: 1 << 20, latest_occurred_at: Timestamp::MAX };
    let mut ledger = Ledger::new(rules());
    for e in events {
        let event = decode(e.to_string().as_bytes(), &limits).expect("generated events are valid");
        match ledger.apply(&event) {
            Ok(_) => {}
            Err(other) => panic!("a valid stream was rejected: {other}"),
        }
    }
    ledger
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_order_and_duplication_gives_the_reference_figures((ordered, shuffled) in stream_strategy(), as_of_h in 0i64..800) {
        let as_of = base() + SignedDuration::from_hours(as_of_h);
        let in_order = ledger_of(&ordered);
        let disordered = ledger_of(&shuffled);
        for month in ["2022-04", "2022-05"] {
            let m: Month = month.parse().unwrap();
            let expected = common::reference::figures(&ordered, month, &rules().zone, rules().default_sla, as_of);
            let got = disordered.figures(m, as_of).unwrap_or_default();
            prop_assert_eq!(&in_order.figures(m, as_of).unwrap_or_default(), &got);
            prop_assert_eq!(ranked(got), expected);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Several instances: each counting partition sees only the events of its cases, and the
    /// publisher adds up the tallies it reads back from JSON.
    #[test]
    fn partition_tallies_add_up_to_the_reference((ordered, shuffled) in stream_strategy(), partitions in 1i32..5, as_of_h in 0i64..800) {
        let as_of = base() + SignedDuration::from_hours(as_of_h);
        let ledgers: Vec<Ledger> = (0..partitions)
            .map(|p| {
                let mine: Vec<Value> = shuffled
                    .iter()
                    .filter(|e| partition_of(e["case_id"].as_str().unwrap(), partitions) == p)
                    .cloned()
                    .collect();
                ledger_of(&mine)
            })
            .collect();
        for month in ["2022-04", "2022-05"] {
            let m: Month = month.parse().unwrap();
            let mut sum = Tally::default();
            for tally in ledgers.iter().filter_map(|l| l.tally(m)) {
                let read_back: Tally = serde_json::from_slice(&serde_json::to_vec(tally).unwrap()).unwrap();
                sum.merge(&read_back);
            }
            let expected = common::reference::figures(&ordered, month, &rules().zone, rules().default_sla, as_of);
            prop_assert_eq!(ranked(sum.figures(as_of)), expected);
        }
    }
}

/// Jilin's nine cities (division code, name), as the province's snapshot names them.
fn jilin() -> impl Iterator<Item = (&'static str, &'static str)> {
    hotline::generator::jilin::CITIES.iter().map(|c| (c.code, c.name))
}

/// Nine cities' streams, each naming its city, with the same case ids in every city: each
/// city's events in order, and all of them interleaved in any order with duplicates.
fn province_strategy() -> impl Strategy<Value = (Vec<Vec<Value>>, Vec<Value>)> {
    let city = (1usize..6).prop_flat_map(|n| (0..n).map(case_strategy).collect::<Vec<_>>());
    prop::collection::vec(city, jilin().count())
        .prop_map(|cities| {
            cities
                .into_iter()
                .zip(jilin())
                .map(|(cases, (code, _))| {
                    let mut events: Vec<Value> = cases.into_iter().flatten().collect();
                    events.iter_mut().for_each(|e| e["city"] = json!(code));
                    events
                })
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|cities| {
            let all: Vec<Value> = cities.iter().flatten().cloned().collect();
            let duplicates = prop::collection::vec(0..all.len(), 0..10);
            (Just(cities), Just(all).prop_shuffle(), duplicates)
        })
        .prop_map(|(cities, mut shuffled, duplicates)| {
            for (i, d) in duplicates.into_iter().enumerate() {
                let e = shuffled[d].clone();
                shuffled.insert((i * 11) % (shuffled.len() + 1), e);
            }
            (cities, shuffled)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    /// A province: one interleaved stream of nine cities, counted per city (a case is its
    /// city's and its id's), gives each city's reference figures and the province's: its
    /// cities' sums, rates from the sums, a row per city, the cities ranked.
    #[test]
    fn a_nine_city_stream_gives_each_citys_and_the_provinces_reference_figures((cities, shuffled) in province_strategy(), as_of_h in 0i64..800) {
        let as_of = base() + SignedDuration::from_hours(as_of_h);
        let of_city = |code: &str| -> Vec<Value> { shuffled.iter().filter(|e| e["city"] == code).cloned().collect() };
        let ledgers: Vec<Ledger> = jilin().map(|(code, _)| ledger_of(&of_city(code))).collect();
        for month in ["2022-04", "2022-05"] {
            let m: Month = month.parse().unwrap();
            let mut expected_cities = Vec::new();
            for ((code, name), (ledger, ordered)) in jilin().zip(ledgers.iter().zip(&cities)) {
                let expected = common::reference::figures(ordered, month, &rules().zone, rules().default_sla, as_of);
                prop_assert_eq!(ranked(ledger.figures(m, as_of).unwrap_or_default()), expected.clone());
                expected_cities.push((code.parse().unwrap(), name, expected));
            }
            // As the publisher gives them: every city, one without cases with an empty tally.
            let empty = Tally::default();
            let tallies: Vec<_> = jilin().zip(&ledgers).map(|((code, name), l)| (code.parse().unwrap(), name, l.tally(m).unwrap_or(&empty))).collect();
            let province = ProvinceMonth { cities: tallies }.figures(as_of, &RankingRules::default());
            prop_assert_eq!(province, common::reference::province(&expected_cities));
        }
    }
}
