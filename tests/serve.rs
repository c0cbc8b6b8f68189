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
    assert_eq!(stats["total"], json!(5));
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
