//! End to end: `recur run` then `recur export recommendations`, with a known answer, and the
//! guarantee that no merchant's items reach another merchant's users.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use serde_json::{Value, json};

fn known_answer_lines() -> Vec<String> {
    let buy = |id: &str,
               merchant: &str,
               user: &str,
               ts: &str,
               item: &str,
               category: &str,
               order: &str| {
        event(
            id,
            merchant,
            user,
            "purchase",
            ts,
            &format!(
                r#""item_id":"{item}","category":"{category}","price":10,"order_id":"{order}""#
            ),
        )
    };
    vec![
        buy(
            "1",
            "m1",
            "alice",
            "2026-05-01T09:00:00+08:00",
            "croissant",
            "pastry",
            "o1",
        ),
        buy(
            "2",
            "m1",
            "alice",
            "2026-05-21T09:00:00+08:00",
            "croissant",
            "pastry",
            "o2",
        ),
        buy(
            "3",
            "m1",
            "alice",
            "2026-05-26T09:00:00+08:00",
            "tart",
            "pastry",
            "o3",
        ),
        event(
            "4",
            "m1",
            "alice",
            "refund",
            "2026-05-27T09:00:00+08:00",
            r#""item_id":"tart","price":10,"order_id":"o3""#,
        ),
        buy(
            "5",
            "m1",
            "bob",
            "2026-05-29T09:00:00+08:00",
            "baguette",
            "bread",
            "o4",
        ),
        buy(
            "6",
            "m1",
            "carol",
            "2026-05-30T09:00:00+08:00",
            "croissant",
            "pastry",
            "o5",
        ),
        // Another merchant sells a hugely popular item; m1's users must never see it.
        buy(
            "1",
            "m2",
            "alice",
            "2026-05-30T09:00:00+08:00",
            "m2-bestseller",
            "pastry",
            "x1",
        ),
        buy(
            "2",
            "m2",
            "zed",
            "2026-05-30T09:00:00+08:00",
            "m2-bestseller",
            "pastry",
            "x2",
        ),
        buy(
            "3",
            "m2",
            "yan",
            "2026-05-30T09:00:00+08:00",
            "m2-bestseller",
            "pastry",
            "x3",
        ),
    ]
}

#[test]
fn run_then_export_gives_the_known_lists_and_keeps_merchants_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = write_lines(dir.path(), "events.ndjson", &known_answer_lines());
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&file)]);
    let manifest = run_json(&[
        "run",
        "--data-dir",
        path_str(&data),
        "--json",
        "--as-of",
        "2026-05-31",
    ]);
    assert_eq!(manifest["merchants"][0]["merchant_id"], json!("m1"));
    assert_eq!(manifest["merchants"][0]["customers"], json!(3));
    assert_eq!(
        manifest["merchants"][0]["repeat_customers"],
        json!(1),
        "alice's refunded order does not count"
    );
    assert_eq!(manifest["merchants"][0]["orders"], json!(4));

    let export = run_ok(&[
        "export",
        "recommendations",
        "--data-dir",
        path_str(&data),
        "--k",
        "2",
    ]);
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSONL"))
        .collect();
    let users: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["merchant_id"].as_str().expect("m").to_owned(),
                l["user_id"].as_str().expect("u").to_owned(),
            )
        })
        .collect();
    let expected_users = [
        ("m1", "alice"),
        ("m1", "bob"),
        ("m1", "carol"),
        ("m2", "alice"),
        ("m2", "yan"),
        ("m2", "zed"),
    ];
    assert_eq!(
        users,
        expected_users.map(|(m, u)| (m.to_owned(), u.to_owned()))
    );

    // alice at m1: croissant twice (last 10 days before as-of), tart refunded → never shown,
    // then the popular pastry... only croissant is a pastry with kept buyers, so bread fills.
    let alice = &lines[0];
    let items = item_reasons(alice);
    assert_eq!(
        items,
        pairs(&[("croissant", "bought_before"), ("baguette", "popular")])
    );
    assert_eq!(
        alice["items"][0]["detail"],
        json!("bought 2 times, last 10 days ago")
    );
    // --as-of 2026-05-31 is the end of that day in Shanghai, 2026-05-31T16:00Z (less 1 ms);
    // from 2026-05-21T01:00Z that is 10 days 15 hours.
    let f = 2.0 * 0.5f64.powf((10.0 + 15.0 / 24.0) / 30.0);
    let score = alice["items"][0]["score"].as_f64().expect("score");
    assert!((score - (2.0 + f / (1.0 + f))).abs() < 2e-4, "{score}");

    // Tenancy: each merchant's lists only hold that merchant's items.
    let mut catalog: HashMap<&str, HashSet<&str>> = HashMap::new();
    catalog.insert("m1", HashSet::from(["croissant", "tart", "baguette"]));
    catalog.insert("m2", HashSet::from(["m2-bestseller"]));
    for line in &lines {
        let merchant = line["merchant_id"].as_str().expect("m");
        for item in line["items"].as_array().expect("items") {
            let id = item["item_id"].as_str().expect("id");
            assert!(catalog[merchant].contains(id), "{merchant} got {id}");
        }
        assert!(line["items"].as_array().expect("items").len() <= 2);
    }
}

#[test]
fn generated_data_runs_and_exports_only_own_catalogue_items() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = dir.path().join("events.ndjson.gz");
    run_ok(&[
        "generate",
        "--out",
        path_str(&file),
        "--users",
        "400",
        "--days",
        "90",
        "--seed",
        "3",
    ]);
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&file)]);
    run_ok(&["run", "--data-dir", path_str(&data)]);
    let export = run_ok(&[
        "export",
        "recommendations",
        "--data-dir",
        path_str(&data),
        "--k",
        "10",
    ]);
    let prefix = |merchant: &str| match merchant {
        "m_bakery" => "sku_",
        "m_kids_edu" => "crs_",
        "m_laundry" => "svc_",
        other => panic!("unexpected merchant {other}"),
    };
    let mut users = 0;
    for line in export.lines() {
        let line: Value = serde_json::from_str(line).expect("JSONL");
        let merchant = line["merchant_id"].as_str().expect("m");
        let items = line["items"].as_array().expect("items");
        assert!(!items.is_empty() && items.len() <= 10);
        let mut last_score = f64::INFINITY;
        for item in items {
            assert!(
                item["item_id"]
                    .as_str()
                    .expect("id")
                    .starts_with(prefix(merchant)),
                "{line}"
            );
            let score = item["score"].as_f64().expect("score");
            assert!(score <= last_score, "items are ordered by score: {line}");
            last_score = score;
        }
        users += 1;
    }
    assert!(users > 300, "every user with events gets a list: {users}");
}

#[test]
fn export_before_any_run_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = recur()
        .args([
            "export",
            "recommendations",
            "--data-dir",
            path_str(dir.path()),
        ])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("run `recur run --data-dir"), "{stderr}");
}
