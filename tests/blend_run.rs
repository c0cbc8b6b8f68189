//! End to end: on a merchant with enough history, `recur run` stores the learned blend's
//! lists — worded reasons from every generator, nothing refunded, the same bytes every run,
//! and no item of another merchant.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use serde_json::Value;

fn export(data: &std::path::Path) -> Vec<Value> {
    run_ok(&["export", "recommendations", "--data-dir", path_str(data)])
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSONL"))
        .collect()
}

#[test]
fn generated_merchants_get_blended_lists_with_worded_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events.ndjson");
    let data = dir.path().join("data");
    run_ok(&[
        "generate",
        "--out",
        path_str(&events),
        "--users",
        "1500",
        "--days",
        "180",
        "--seed",
        "3",
        // Clean lines, so the test can net refunds from the raw file itself.
        "--duplicate-rate",
        "0",
        "--malformed-rate",
        "0",
    ]);
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&events)]);
    run_ok(&["run", "--data-dir", path_str(&data)]);
    let first = export(&data);
    assert!(!first.is_empty());

    // Reasons per merchant: the blend's codes, each with its sentence.
    let mut reasons: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for line in &first {
        let merchant = line["merchant_id"].as_str().expect("merchant").to_owned();
        for item in line["items"].as_array().expect("items") {
            let reason = item["reason"].as_str().expect("reason").to_owned();
            let detail = item["detail"].as_str().expect("detail");
            match reason.as_str() {
                "due" => assert!(detail.starts_with("due: bought about every "), "{detail}"),
                "bought_together" => assert!(
                    detail.starts_with("bought with ") && detail.ends_with("% of its orders"),
                    "{detail}"
                ),
                _ => assert!(!detail.is_empty()),
            }
            reasons.entry(merchant.clone()).or_default().insert(reason);
        }
    }
    for (merchant, seen) in &reasons {
        assert!(
            seen.contains("due") || seen.contains("bought_before"),
            "{merchant}: repeat items are listed: {seen:?}"
        );
        assert!(
            seen.contains("bought_together") || seen.contains("similar_customers"),
            "{merchant}: items never bought are lent by co-purchase or neighbours: {seen:?}"
        );
    }

    // Nothing fully refunded comes back (the generator refunds some orders in full).
    let (refunded, person) = refunded_only_pairs(&events);
    assert!(!refunded.is_empty(), "the generated data has refunds");
    for line in &first {
        let user = line["user_id"].as_str().expect("user");
        let who = person.get(user).cloned().unwrap_or_else(|| user.to_owned());
        for item in line["items"].as_array().expect("items") {
            let id = item["item_id"].as_str().expect("item");
            assert!(
                !refunded.contains(&(who.clone(), id.to_owned())),
                "{user} got back {id}, which they refunded"
            );
        }
    }

    // The explore lists hold no item the customer bought and kept, and are not empty.
    let kept = kept_pairs(&events, &person);
    let explore: Vec<Value> = run_ok(&[
        "export",
        "recommendations",
        "--data-dir",
        path_str(&data),
        "--exclude-purchased",
    ])
    .lines()
    .map(|l| serde_json::from_str(l).expect("JSONL"))
    .collect();
    assert_eq!(
        explore.len(),
        first.len(),
        "every customer has an explore list"
    );
    let mut listed = 0;
    for line in &explore {
        let user = line["user_id"].as_str().expect("user");
        let who = person.get(user).cloned().unwrap_or_else(|| user.to_owned());
        for item in line["items"].as_array().expect("items") {
            let id = item["item_id"].as_str().expect("item");
            assert!(
                !kept.contains(&(who.clone(), id.to_owned())),
                "{user}'s explore list has {id}, which they bought"
            );
            listed += 1;
        }
    }
    assert!(
        listed >= explore.len() * 5,
        "explore lists are filled: {listed} items"
    );

    // Similar items: the generator puts a latte with a croissant in 45% of its orders; no
    // other item comes along as often.
    let similar: Vec<Value> = run_ok(&[
        "export",
        "similar",
        "--data-dir",
        path_str(&data),
        "--merchant",
        "m_bakery",
        "--k",
        "3",
    ])
    .lines()
    .map(|l| serde_json::from_str(l).expect("JSONL"))
    .collect();
    let croissant = similar
        .iter()
        .find(|l| l["item_id"] == "sku_croissant")
        .expect("the croissant has companions");
    assert_eq!(
        croissant["similar"][0]["item_id"], "sku_latte",
        "{croissant}"
    );
    assert!(croissant["similar"].as_array().expect("list").len() <= 3);

    // The same store gives the same lists, byte for byte.
    run_ok(&["run", "--data-dir", path_str(&data)]);
    assert_eq!(first, export(&data));
}

/// (person, item) pairs bought and kept (net quantity above zero), from the raw events.
fn kept_pairs(
    events: &std::path::Path,
    person: &BTreeMap<String, String>,
) -> HashSet<(String, String)> {
    let text = std::fs::read_to_string(events).expect("events");
    let mut net: BTreeMap<(String, String), i64> = BTreeMap::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(user), Some(item)) = (event["user_id"].as_str(), event["item_id"].as_str())
        else {
            continue;
        };
        let who = person.get(user).cloned().unwrap_or_else(|| user.to_owned());
        let quantity = event["quantity"].as_i64().unwrap_or(1);
        match event["type"].as_str() {
            Some("purchase") => *net.entry((who, item.to_owned())).or_default() += quantity,
            Some("refund") => *net.entry((who, item.to_owned())).or_default() -= quantity,
            _ => {}
        }
    }
    net.into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(key, _)| key)
        .collect()
}

/// (person, item) pairs whose every purchase was refunded in full, from the raw events, and
/// each user id's person: their unionid if they have one (a customer stitched from two user
/// ids buys under one and may refund under the other), else the user id.
fn refunded_only_pairs(
    events: &std::path::Path,
) -> (HashSet<(String, String)>, BTreeMap<String, String>) {
    let text = std::fs::read_to_string(events).expect("events");
    let mut person: BTreeMap<String, String> = BTreeMap::new();
    let mut bought: BTreeMap<(String, String), i64> = BTreeMap::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(user) = event["user_id"].as_str() else {
            continue;
        };
        let who = event["unionid"].as_str().unwrap_or(user).to_owned();
        person.insert(user.to_owned(), who.clone());
        let Some(item) = event["item_id"].as_str() else {
            continue;
        };
        let quantity = event["quantity"].as_i64().unwrap_or(1);
        let key = (who, item.to_owned());
        match event["type"].as_str() {
            Some("purchase") => *bought.entry(key).or_default() += quantity,
            Some("refund") => *bought.entry(key).or_default() -= quantity,
            _ => {}
        }
    }
    let refunded = bought
        .into_iter()
        .filter(|(_, net)| *net <= 0)
        .map(|(key, _)| key)
        .collect();
    (refunded, person)
}
