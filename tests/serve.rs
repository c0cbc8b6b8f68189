//! End to end: `recur serve` over a real socket — recommendations, unknown users and
//! merchants, event intake with bad input, size limits, and switching to a newer snapshot.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn prepared_data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let lines = vec![
        event(
            "1",
            "m1",
            "alice",
            "purchase",
            "2026-05-01T09:00:00+08:00",
            r#""item_id":"croissant","category":"pastry","price":9,"order_id":"o1""#,
        ),
        event(
            "2",
            "m1",
            "alice",
            "purchase",
            "2026-05-20T09:00:00+08:00",
            r#""item_id":"croissant","category":"pastry","price":9,"order_id":"o2""#,
        ),
        event(
            "3",
            "m1",
            "bob",
            "purchase",
            "2026-05-25T09:00:00+08:00",
            r#""item_id":"baguette","category":"bread","price":12,"order_id":"o3""#,
        ),
        event(
            "4",
            "m1",
            "bob",
            "purchase",
            "2026-05-26T09:00:00+08:00",
            r#""item_id":"croissant","category":"pastry","price":9,"order_id":"o4""#,
        ),
        // Baguette's price went up since bob bought it: filters use the latest price.
        event(
            "5",
            "m1",
            "bob",
            "view",
            "2026-05-25T12:00:00+08:00",
            r#""item_id":"baguette","category":"bread","price":13.5"#,
        ),
    ];
    let file = write_lines(dir.path(), "events.ndjson", &lines);
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&file)]);
    run_ok(&["run", "--data-dir", path_str(&data), "--k", "5"]);
    (dir, data)
}

#[test]
fn recommendations_health_and_errors_over_http() {
    let (_dir, data) = prepared_data_dir();
    let server = Server::start(&data, &[]);

    let (status, health) = server.get("/healthz");
    assert_eq!(status, 200);
    assert_eq!(health["status"], json!("ok"));
    assert!(health["snapshot"].is_string());

    let (status, body) = server.get("/v1/merchants/m1/users/alice/recommendations?k=2");
    assert_eq!(status, 200);
    assert_eq!(body["personalized"], json!(true));
    let items: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["item_id"].as_str().expect("id"))
        .collect();
    assert_eq!(items, vec!["croissant", "baguette"]);
    assert_eq!(body["items"][0]["reason"], json!("bought_before"));
    assert_eq!(
        body["items"][0]["detail"],
        json!("bought 2 times, last 6 days ago")
    );

    let (status, body) = server.get("/v1/merchants/m1/users/nobody/recommendations");
    assert_eq!(status, 200);
    assert_eq!(
        body["personalized"],
        json!(false),
        "an unknown user gets popular items, marked as such"
    );
    let popular = item_reasons(&body);
    assert_eq!(
        popular,
        pairs(&[("croissant", "popular"), ("baguette", "popular")])
    );

    let (status, body) = server.get("/v1/merchants/m404/users/alice/recommendations");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], json!("unknown_merchant"));

    let (status, body) = server.get("/v1/merchants/m1/users/alice/recommendations?k=0");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], json!("bad_k"));
    let (status, body) = server.get("/v1/merchants/m1/users/alice/recommendations?k=abc");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], json!("bad_query"));
    let (status, body) = server.get("/nowhere");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], json!("not_found"));

    // Filters: the explore list leaves out what alice bought, a category narrows the list,
    // an offset pages it, and a silly offset is refused.
    let (status, body) =
        server.get("/v1/merchants/m1/users/alice/recommendations?exclude_purchased=true");
    assert_eq!(status, 200);
    let explore: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["item_id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        explore,
        vec!["baguette"],
        "croissant is alice's: not in her explore list"
    );
    let (_, body) = server.get("/v1/merchants/m1/users/alice/recommendations?category=bread");
    let bread: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["item_id"].as_str().expect("id"))
        .collect();
    assert_eq!(bread, vec!["baguette"]);
    let (_, body) = server.get("/v1/merchants/m1/users/alice/recommendations?offset=1&k=1");
    assert_eq!(body["items"][0]["item_id"], json!("baguette"));
    let (status, body) = server.get("/v1/merchants/m1/users/alice/recommendations?offset=5000");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], json!("bad_offset"));

    // Price bands use each item's latest price (baguette 13.5 now, croissant 9).
    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["item_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let (_, body) = server.get("/v1/merchants/m1/users/alice/recommendations?min_price=13");
    assert_eq!(ids(&body), ["baguette"]);
    let (_, body) = server.get("/v1/merchants/m1/users/alice/recommendations?max_price=13");
    assert_eq!(ids(&body), ["croissant"]);
    let (_, body) =
        server.get("/v1/merchants/m1/users/alice/recommendations?min_price=9&max_price=13.5");
    assert_eq!(ids(&body), ["croissant", "baguette"]);
    for bad in ["min_price=-1", "min_price=5&max_price=2", "max_price=NaN"] {
        let (status, body) = server.get(&format!(
            "/v1/merchants/m1/users/alice/recommendations?{bad}"
        ));
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], json!("bad_price"), "{bad}");
    }
    // k: up to 100 (the list holds what `recur run --k` kept), never more.
    let (status, body) = server.get("/v1/merchants/m1/users/alice/recommendations?k=100");
    assert_eq!(status, 200);
    assert_eq!(ids(&body), ["croissant", "baguette"]);
    let (status, body) = server.get("/v1/merchants/m1/users/alice/recommendations?k=101");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], json!("bad_k"));

    // Similar items: no order here holds two items, so none has companions.
    let (status, body) = server.get("/v1/merchants/m1/items/croissant/similar");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], json!("unknown_item"));
    let (status, body) = server.get("/v1/merchants/m404/items/croissant/similar");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], json!("unknown_merchant"));
    let (status, body) = server.get("/v1/merchants/m1/items/croissant/similar?k=0");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], json!("bad_k"));
}

#[test]
fn posted_events_are_validated_stored_once_and_served_after_the_next_run() {
    let (_dir, data) = prepared_data_dir();
    let server = Server::start(&data, &["--max-body-bytes", "4096"]);
    let first = server.get("/healthz").1["snapshot"].clone();

    let good = event(
        "n1",
        "m1",
        "carol",
        "purchase",
        "2026-05-30T09:00:00+08:00",
        r#""item_id":"baguette","category":"bread","price":12,"order_id":"o9""#,
    );
    let bad = event(
        "n2",
        "m1",
        "carol",
        "purchase",
        "2026-05-30T09:00:00+08:00",
        r#""item_id":"baguette","price":-3,"order_id":"o9""#,
    );
    let body = format!("{good}\n{bad}\n{good}\n");
    let (status, summary) = server.post("/v1/events", "application/x-ndjson", body.as_bytes());
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        summary,
        json!({"accepted": 1, "duplicates": 1, "rejected": 1, "errors": [{"line": 2, "reason": "price must be >= 0, got -3"}]})
    );

    // A JSON array works too; resending is a duplicate, not a second purchase.
    let (status, summary) = server.post(
        "/v1/events",
        "application/json",
        format!("[{good}]").as_bytes(),
    );
    assert_eq!(status, 200);
    assert_eq!(summary["duplicates"], json!(1));

    let (status, body) = server.post(
        "/v1/events",
        "application/x-ndjson",
        format!("{bad}\n{{\"x\":1}}").as_bytes(),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], json!("no_valid_events"));
    assert_eq!(
        body["error"]["details"][0],
        json!({"line": 1, "reason": "price must be >= 0, got -3"})
    );
    assert_eq!(body["error"]["details"][1]["line"], json!(2));

    let (status, body) = server.post("/v1/events", "application/x-ndjson", b"");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], json!("bad_body"));

    let huge = format!("{good}\n").repeat(100);
    let (status, body) = server.post("/v1/events", "application/x-ndjson", huge.as_bytes());
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], json!("body_too_large"));

    // carol is unknown until the next run; then the server switches without a restart.
    assert_eq!(
        server.get("/v1/merchants/m1/users/carol/recommendations").1["personalized"],
        json!(false)
    );
    let stats = run_json(&["stats", "--data-dir", path_str(&data), "--json"]);
    assert_eq!(stats["total"], json!(6));
    run_ok(&["run", "--data-dir", path_str(&data), "--k", "5"]);
    let switched = server.wait_for(Duration::from_secs(20), |s| {
        s.get("/healthz").1["snapshot"] != first
    });
    assert!(switched, "the server picks up the new snapshot");
    let (_, carol) = server.get("/v1/merchants/m1/users/carol/recommendations?k=1");
    assert_eq!(carol["personalized"], json!(true));
    assert_eq!(carol["items"][0]["item_id"], json!("baguette"));
    assert_eq!(carol["items"][0]["reason"], json!("bought_before"));
}

#[test]
fn a_server_without_a_snapshot_says_how_to_make_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (status, body) = server.get("/v1/merchants/m1/users/u/recommendations");
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], json!("no_snapshot"));
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("text")
            .contains("recur run")
    );
}

#[test]
fn the_merchants_list_rules_hold_within_a_quarter_second() {
    let (_dir, data) = prepared_data_dir();
    let server = Server::start(&data, &[]);
    let rules_args = |rules: &'static str| {
        [
            "merchant",
            "set",
            "--data-dir",
            path_str(&data),
            "--merchant",
            "m1",
            "--list-rules",
            rules,
        ]
    };
    let set_rules = |rules: &'static str| {
        run_ok(&rules_args(rules));
    };
    let alice = "/v1/merchants/m1/users/alice/recommendations";
    // The server looks at the settings file at most every 250 ms: a change holds within that.
    let served_soon = |path: &str, expected: &[(&str, &str)]| {
        let expected = pairs(expected);
        server.wait_for(Duration::from_secs(2), |s| {
            item_reasons(&s.get(path).1) == expected
        });
        assert_eq!(item_reasons(&server.get(path).1), expected, "{path}");
    };
    assert_eq!(
        item_reasons(&server.get(alice).1),
        pairs(&[("croissant", "bought_before"), ("baguette", "popular")])
    );

    // Out of stock: gone within a quarter second, no new run.
    set_rules(r#"{"out_of_stock":["croissant"]}"#);
    served_soon(alice, &[("baguette", "popular")]);
    // Excluded category; pinned items head every list, an unknown user's too.
    set_rules(r#"{"excluded_categories":["pastry"],"pinned":["baguette"]}"#);
    served_soon(alice, &[("baguette", "pinned")]);
    let (_, nobody) = server.get("/v1/merchants/m1/users/nobody/recommendations");
    assert_eq!(item_reasons(&nobody), pairs(&[("baguette", "pinned")]));
    assert_eq!(nobody["items"][0]["detail"], json!("picked by the shop"));
    // At most one item per category: croissant (pastry) and baguette (bread) both stay;
    // pinned croissant comes first and the list's croissant is not repeated.
    set_rules(r#"{"pinned":["croissant"],"max_per_category":1}"#);
    served_soon(alice, &[("croissant", "pinned"), ("baguette", "popular")]);
    // The export follows the same rules.
    let export = run_ok(&[
        "export",
        "recommendations",
        "--data-dir",
        path_str(&data),
        "--merchant",
        "m1",
    ]);
    let alice_line: serde_json::Value = export
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|l| l["user_id"] == "alice")
        .expect("alice exported");
    assert_eq!(alice_line["items"][0]["reason"], json!("pinned"));

    // Bad rules are refused with where the mistake is, and change nothing.
    let args = rules_args(r#"{"pinned":"croissant"}"#);
    let output = output_within(recur().args(args), COMMAND_DEADLINE, &args);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad list rules at pinned"), "{stderr}");
    assert_eq!(
        item_reasons(&server.get(alice).1),
        pairs(&[("croissant", "pinned"), ("baguette", "popular")])
    );
}

#[test]
fn unknown_users_get_the_popular_items_of_their_scene_or_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut lines = Vec::new();
    let mut buy = |user: String, item: &str, extra: &str| {
        let n = lines.len();
        lines.push(event(
            &format!("e{n}"),
            "m1",
            &user,
            "purchase",
            "2026-05-20T09:00:00+08:00",
            &format!(r#""item_id":"{item}","price":5,"order_id":"o{n}"{extra}"#),
        ));
    };
    // Scene 1047 (a QR code at the mooncake stand): 12 buyers of mooncakes. The micro-store:
    // 12 buyers of tea. Everyone else, through the mini program: croissants.
    for u in 0..12 {
        buy(format!("s{u}"), "mooncake", r#","scene":1047"#);
        buy(format!("c{u}"), "tea", r#","channel":"micro_store""#);
    }
    for u in 0..30 {
        buy(format!("m{u}"), "croissant", "");
    }
    // Scene 1011 has too few buyers for a list of its own.
    buy("x1".to_owned(), "tea", r#","scene":1011"#);
    let file = write_lines(dir.path(), "events.ndjson", &lines);
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&file)]);
    run_ok(&["run", "--data-dir", path_str(&data), "--k", "5"]);
    let server = Server::start(&data, &[]);

    let first = |query: &str| {
        let (status, body) = server.get(&format!(
            "/v1/merchants/m1/users/newcomer/recommendations?{query}"
        ));
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["personalized"], json!(false));
        (
            body["items"][0]["item_id"]
                .as_str()
                .expect("item")
                .to_owned(),
            body["cold_start"].as_str().expect("cold_start").to_owned(),
        )
    };
    assert_eq!(first("scene=1047"), ("mooncake".into(), "scene".into()));
    assert_eq!(
        first("scene=1011&channel=micro_store"),
        ("tea".into(), "channel".into())
    );
    assert_eq!(
        first("channel=micro_store"),
        ("tea".into(), "channel".into())
    );
    assert_eq!(first(""), ("croissant".into(), "merchant".into()));
    assert_eq!(first("scene=1011"), ("croissant".into(), "merchant".into()));

    // Known customers keep their own list, whatever the scene.
    let (_, body) = server.get("/v1/merchants/m1/users/s1/recommendations?scene=1047");
    assert_eq!(body["personalized"], json!(true));
    assert!(body.get("cold_start").is_none(), "{body}");

    let (status, body) =
        server.get("/v1/merchants/m1/users/newcomer/recommendations?channel=wechat_pay");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], json!("bad_channel"));
}

#[test]
fn keys_are_shown_once_and_required_and_an_open_server_stays_on_loopback() {
    let (_dir, data) = prepared_data_dir();
    let data_arg = path_str(&data);
    // No key yet: the API would be open, so it may not listen beyond loopback.
    let refused = output_within(
        recur().args(["serve", "--data-dir", data_arg, "--listen", "0.0.0.0:0"]),
        Duration::from_secs(60),
        &["serve", "0.0.0.0"],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("recur keys create"), "{stderr}");

    // The key is the last line of stdout, shown once; only its hash is stored.
    let created = run_ok(&[
        "keys",
        "create",
        "--data-dir",
        data_arg,
        "--merchant",
        "m1",
        "--scope",
        "read",
    ]);
    let key = created.lines().last().expect("a line").trim().to_owned();
    assert!(key.starts_with("rk_"), "{created}");
    let other = run_json(&[
        "keys",
        "create",
        "--data-dir",
        data_arg,
        "--merchant",
        "m2",
        "--json",
    ]);
    assert_eq!(other["merchant_id"], "m2");
    assert_eq!(other["scope"], "read");
    let other_key = other["key"].as_str().expect("key").to_owned();
    let listed = run_ok(&["keys", "list", "--data-dir", data_arg, "--json"]);
    let stored = std::fs::read_to_string(data.join("keys.json")).expect("key file");
    for text in [&listed, &stored] {
        assert!(!text.contains(&key) && !text.contains(&other_key), "{text}");
    }
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&listed)
            .expect("JSON")
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let server = Server::start(&data, &[]);
    let path = "/v1/merchants/m1/users/alice/recommendations?k=2";
    let (status, body) = server.get(path);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, body) = server.get_with_key(path, &other_key);
    assert_eq!(status, 403, "{body}");
    let (status, body) = server.get_with_key(path, &key);
    assert_eq!(status, 200, "{body}");
    assert!(!body["items"].as_array().expect("items").is_empty());

    // Revoked: refused within a second or so.
    let id = key
        .strip_prefix("rk_")
        .and_then(|rest| rest.split('_').next())
        .expect("id");
    run_ok(&["keys", "revoke", "--data-dir", data_arg, "--id", id]);
    assert!(
        server.wait_for(Duration::from_secs(10), |s| s.get_with_key(path, &key).0
            == 401),
        "the revoked key still works"
    );
}

/// The list body is written by hand (`api/src/list_body.rs`), copying a merchant's ids and
/// sentences unescaped when all of them are plain: ids and categories with quotes,
/// backslashes and unicode must still come out as JSON that names them exactly.
#[test]
fn lists_of_items_with_quotes_and_backslashes_are_valid_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let cheese = r#"say "cheese" \ 1"#;
    let cake = "gâteau";
    let category = r#"les "pâtisseries" \ 2"#;
    let purchase = |id: &str, user: &str, ts: &str, name: &str, order: &str| {
        json!({
            "event_id": id, "merchant_id": "m2", "user_id": user, "type": "purchase", "ts": ts,
            "item_id": name, "category": category, "price": 9, "order_id": order,
        })
        .to_string()
    };
    let lines = vec![
        purchase("1", "alice", "2026-05-01T09:00:00+08:00", cheese, "o1"),
        purchase("2", "alice", "2026-05-20T09:00:00+08:00", cheese, "o2"),
        purchase("3", "bob", "2026-05-21T09:00:00+08:00", cake, "o3"),
        purchase("4", "carol", "2026-05-22T09:00:00+08:00", cake, "o4"),
    ];
    let file = write_lines(dir.path(), "events.ndjson", &lines);
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&file)]);
    run_ok(&["run", "--data-dir", path_str(&data), "--k", "5"]);
    let server = Server::start(&data, &[]);
    let (status, list) = server.get("/v1/merchants/m2/users/alice/recommendations");
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().expect("items");
    let ids: Vec<&str> = items.iter().filter_map(|i| i["item_id"].as_str()).collect();
    assert!(ids.contains(&cheese) && ids.contains(&cake), "{list}");
    let cake_detail = items
        .iter()
        .find(|i| i["item_id"] == json!(cake))
        .and_then(|i| i["detail"].as_str())
        .expect("a sentence for the cake");
    assert!(cake_detail.contains(category), "{cake_detail}");
}
