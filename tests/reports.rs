//! Customer analytics end to end on a dozen hand-made events, every expected table worked
//! out by hand in the comments: the Shanghai month boundary, a fully refunded order, a
//! duplicated event, two user ids stitched by unionid and a customer who resurrects.

mod common;

use std::path::{Path, PathBuf};

use common::{event, path_str, recur, run_json, run_ok, write_lines};
use serde_json::Value;

const M: &str = "m1";

fn buy(id: &str, user: &str, ts: &str, order: &str, item: &str, extra: &str) -> String {
    let (category, price) = if item == "A" {
        ("bread", 10.0)
    } else {
        ("cake", 20.0)
    };
    let fields = format!(
        r#""order_id":"{order}","item_id":"{item}","category":"{category}","price":{price}{extra}"#
    );
    event(id, M, user, "purchase", ts, &fields)
}

/// alice and alice_store share unionid U1 (mini program, then micro-store). bob's second
/// order is 2026-02-01 00:30 in Shanghai, still January in UTC. carol's first order is
/// refunded in full. dave skips February. e9 arrives twice.
fn events() -> Vec<String> {
    let u1 = r#","unionid":"U1""#;
    let store = r#","unionid":"U1","channel":"micro_store""#;
    let mut lines = vec![
        buy("e1", "alice", "2026-01-10T10:00:00+08:00", "o1", "A", u1),
        buy(
            "e2",
            "alice_store",
            "2026-02-15T10:00:00+08:00",
            "o2",
            "B",
            store,
        ),
        buy("e3", "bob", "2026-01-20T12:00:00+08:00", "o3", "A", ""),
        buy("e4", "bob", "2026-02-01T00:30:00+08:00", "o4", "A", ""),
        buy("e5", "carol", "2026-01-05T09:00:00+08:00", "o5", "B", ""),
        event(
            "e6",
            M,
            "carol",
            "refund",
            "2026-01-06T09:00:00+08:00",
            r#""order_id":"o5","item_id":"B","category":"cake","price":20.0"#,
        ),
        buy("e7", "carol", "2026-03-03T09:00:00+08:00", "o6", "A", ""),
        buy("e8", "dave", "2026-01-25T09:00:00+08:00", "o7", "A", ""),
        buy("e9", "dave", "2026-03-20T09:00:00+08:00", "o8", "B", ""),
        buy("e9", "dave", "2026-03-20T09:00:00+08:00", "o8", "B", ""),
        event(
            "e11",
            M,
            "alice",
            "view",
            "2026-03-05T12:00:00+08:00",
            r#""item_id":"A""#,
        ),
        buy(
            "e12",
            "alice_store",
            "2026-03-10T10:00:00+08:00",
            "o9",
            "A",
            store,
        ),
    ];
    // Another merchant's customer who must never show up in m1's reports.
    lines.push(event(
        "x1",
        "m2",
        "zed",
        "purchase",
        "2026-02-02T10:00:00+08:00",
        r#""order_id":"z1","item_id":"A","price":99.0"#,
    ));
    lines
}

fn store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = write_lines(dir.path(), "events.ndjson", &events());
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&file)]);
    (dir, data)
}

fn report(data: &Path, kind: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "report",
        kind,
        "--data-dir",
        path_str(data),
        "--merchant",
        M,
        "--as-of",
        "2026-03-31",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    run_json(&args)
}

fn column(doc: &Value, name: &str) -> Vec<Value> {
    doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r[name].clone())
        .collect()
}

fn strings(values: &[&str]) -> Vec<Value> {
    values.iter().map(|s| Value::from(*s)).collect()
}

fn ints(values: &[i64]) -> Vec<Value> {
    values.iter().map(|v| Value::from(*v)).collect()
}

#[test]
fn monthly_lifecycle_counts_in_shanghai_time_nets_refunds_and_stitches() {
    let (_dir, data) = store();
    let doc = report(&data, "lifecycle", &["--period", "month"]);
    assert_eq!(doc["time_zone"], "Asia/Shanghai");
    // Jan: alice, bob, dave new (carol's only January order was refunded).
    // Feb: alice (as alice_store) and bob (00:30 Shanghai) return; dave goes dormant.
    // Mar: alice returns, carol is new, dave resurrects, bob goes dormant.
    assert_eq!(
        column(&doc, "period_start"),
        strings(&["2026-01", "2026-02", "2026-03"])
    );
    assert_eq!(column(&doc, "new"), ints(&[3, 0, 1]));
    assert_eq!(column(&doc, "returning"), ints(&[0, 2, 1]));
    assert_eq!(column(&doc, "resurrecting"), ints(&[0, 0, 1]));
    assert_eq!(column(&doc, "dormant"), ints(&[0, 1, 1]));
    assert_eq!(column(&doc, "active"), ints(&[3, 2, 3]));
}

#[test]
fn monthly_retention_in_both_modes() {
    let (_dir, data) = store();
    // First-time cohorts: Jan {alice, bob, dave}, Mar {carol}. Jan retained: Feb alice, bob;
    // Mar alice, dave.
    let doc = report(&data, "retention", &["--period", "month"]);
    assert_eq!(
        column(&doc, "cohort_start"),
        strings(&["2026-01", "2026-01", "2026-01", "2026-03"])
    );
    assert_eq!(column(&doc, "offset"), ints(&[0, 1, 2, 0]));
    assert_eq!(column(&doc, "cohort_size"), ints(&[3, 3, 3, 1]));
    assert_eq!(column(&doc, "retained"), ints(&[3, 2, 2, 1]));
    // Recurring: a cohort per active month. Jan 3 → 2, 2; Feb {alice, bob} → Mar alice;
    // Mar {alice, carol, dave}.
    let doc = report(
        &data,
        "retention",
        &["--period", "month", "--mode", "recurring"],
    );
    assert_eq!(
        column(&doc, "cohort_start"),
        strings(&[
            "2026-01", "2026-01", "2026-01", "2026-02", "2026-02", "2026-03"
        ])
    );
    assert_eq!(column(&doc, "cohort_size"), ints(&[3, 3, 3, 2, 2, 3]));
    assert_eq!(column(&doc, "retained"), ints(&[3, 2, 2, 2, 1, 3]));
    // Retention of views by purchase cohorts: only alice viewed, in March.
    let doc = report(
        &data,
        "retention",
        &["--period", "month", "--return-event", "view"],
    );
    assert_eq!(column(&doc, "retained"), ints(&[0, 0, 1, 0]));
}

#[test]
fn repeat_rates_count_matured_windows_only() {
    let (_dir, data) = store();
    let doc = report(&data, "repeat", &["--period", "month"]);
    // Second order after: alice 36 d, bob 11.5 d, dave 54 d; carol has one kept order.
    // As of the end of 03-31, windows of 30 d have passed for the three January buyers,
    // 60 d too, 90 d for nobody.
    assert_eq!(
        column(&doc, "cohort_start"),
        strings(&["all", "2026-01", "2026-03"])
    );
    assert_eq!(column(&doc, "buyers"), ints(&[4, 3, 1]));
    assert_eq!(column(&doc, "repeat_buyers"), ints(&[3, 3, 0]));
    assert_eq!(column(&doc, "matured_30"), ints(&[3, 3, 0]));
    assert_eq!(column(&doc, "matured_60"), ints(&[3, 3, 0]));
    assert_eq!(column(&doc, "matured_90"), ints(&[0, 0, 0]));
    let row = &doc["rows"][0];
    assert_eq!(row["repeat_rate"], 0.75);
    assert!((row["repeat_rate_30"].as_f64().expect("rate") - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(row["repeat_rate_60"], 1.0);
    assert_eq!(row["repeat_rate_90"], Value::Null);
}

#[test]
fn rfm_scores_segments_and_value_classes_by_hand() {
    let (_dir, data) = store();
    let doc = report(&data, "rfm", &["--customers"]);
    // Recency in whole days before 03-31 24:00: alice 21, bob 58, carol 28, dave 11.
    // Orders 3, 2, 1, 2 (e9 once); spend 40, 20, 10, 30 (the refund netted).
    assert_eq!(
        column(&doc, "user_id"),
        strings(&["alice", "bob", "carol", "dave"])
    );
    assert_eq!(column(&doc, "recency_days"), ints(&[21, 58, 28, 11]));
    assert_eq!(column(&doc, "frequency"), ints(&[3, 2, 1, 2]));
    assert_eq!(
        column(&doc, "monetary"),
        vec![
            Value::from(40.0),
            Value::from(20.0),
            Value::from(10.0),
            Value::from(30.0)
        ]
    );
    // n = 4: score = ⌊5(rank−1)/4⌋+1 → ranks 1,2,3,4 score 1,2,3,4; bob and dave tie on F.
    assert_eq!(column(&doc, "r_score"), ints(&[3, 1, 2, 4]));
    assert_eq!(column(&doc, "f_score"), ints(&[4, 2, 1, 2]));
    assert_eq!(column(&doc, "m_score"), ints(&[4, 2, 1, 3]));
    // FM: 4, 2, 1, 3 → (3,4) loyal, (1,2) lost, (2,1) hibernating, (4,3) loyal.
    assert_eq!(
        column(&doc, "rfm_segment"),
        strings(&["loyal", "lost", "hibernating", "loyal"])
    );
    // Means: recency 29.5, orders 2, spend 25.
    assert_eq!(
        column(&doc, "value_class"),
        strings(&[
            "important_value",
            "general_retention",
            "general_development",
            "important_development"
        ])
    );
}

#[test]
fn identities_intervals_and_tenancy() {
    let (_dir, data) = store();
    let doc = report(&data, "identities", &[]);
    assert_eq!(column(&doc, "user_id"), strings(&["alice_store"]));
    assert_eq!(column(&doc, "customer_id"), strings(&["alice"]));
    // Bread gaps: alice 01-10 → 03-10 = 59 d; bob 01-20 12:00 → 02-01 00:30 = 11.52 d.
    let doc = report(&data, "intervals", &[]);
    assert_eq!(column(&doc, "category"), strings(&["bread"]));
    assert_eq!(column(&doc, "gaps"), ints(&[2]));
    let median = doc["rows"][0]["median_days"].as_f64().expect("median");
    assert!(
        (median - (59.0 + 11.520_833_333) / 2.0).abs() < 1e-6,
        "{median}"
    );
    // m2's customer never appears in m1's tables.
    let doc = report(&data, "rfm", &["--customers"]);
    assert!(!doc.to_string().contains("zed"));
}

#[test]
fn audiences_are_validated_previewed_exported_and_stored_by_run() {
    let (dir, data) = store();
    let d = path_str(&data);
    let rule = r#"{"and":[{"rfm_segment":"loyal"},{"used_channel":{"channel":"micro_store"}}]}"#;
    run_ok(&[
        "audience",
        "create",
        "--data-dir",
        d,
        "--merchant",
        M,
        "--name",
        "loyal-store",
        "--rule",
        rule,
    ]);
    let bad = recur()
        .args([
            "audience",
            "create",
            "--data-dir",
            d,
            "--merchant",
            M,
            "--name",
            "bad",
            "--rule",
            r#"{"or":[{"lifecycle":"new"},{"performed":{"event":"buy","in_last_days":7}}]}"#,
        ])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("at or[1].performed.event: unknown event type \"buy\""),
        "{stderr}"
    );

    // alice is loyal and used the micro-store under her stitched id; dave is loyal but not.
    let preview = run_json(&[
        "audience",
        "preview",
        "--data-dir",
        d,
        "--merchant",
        M,
        "--name",
        "loyal-store",
        "--as-of",
        "2026-03-31",
        "--format",
        "json",
    ]);
    assert_eq!(preview["customers"], 1);
    assert_eq!(preview["sample"][0]["user_id"], "alice");
    let csv = run_ok(&[
        "audience",
        "export",
        "--data-dir",
        d,
        "--merchant",
        M,
        "--name",
        "loyal-store",
        "--as-of",
        "2026-03-31",
    ]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "user_id,linked_user_ids,openid,unionid");
    assert_eq!(lines[1], "alice,alice|alice_store,,U1");
    assert_eq!(lines.len(), 2);

    // Dormant customers by stage in March: bob.
    let dormant = run_json(&[
        "audience",
        "preview",
        "--data-dir",
        d,
        "--merchant",
        M,
        "--rule",
        r#"{"lifecycle":"dormant"}"#,
        "--as-of",
        "2026-03-31",
        "--format",
        "json",
    ]);
    assert_eq!(dormant["sample"][0]["user_id"], "bob");
    assert_eq!(dormant["customers"], 1);

    let manifest = run_json(&["run", "--data-dir", d, "--as-of", "2026-04-01", "--json"]);
    let m1 = manifest["merchants"]
        .as_array()
        .expect("merchants")
        .iter()
        .find(|m| m["merchant_id"] == M)
        .expect("m1");
    assert_eq!(m1["audiences"][0]["name"], "loyal-store");
    assert_eq!(m1["audiences"][0]["customers"], 1);
    assert_eq!(m1["stitched_user_ids"], 1);
    assert_eq!(m1["customers"], 4, "alice and alice_store are one customer");
    drop(dir);
}

#[test]
fn the_api_serves_reports_profiles_and_audiences_from_the_snapshot() {
    let (_dir, data) = store();
    let d = path_str(&data);
    // 2026-03-31T16:00Z is 04-01 00:00 in Shanghai; one ms before ends March there.
    run_ok(&["run", "--data-dir", d]);
    let server = common::Server::start(&data, &[]);

    let (status, lifecycle) = server.get("/v1/merchants/m1/reports/lifecycle?period=month");
    assert_eq!(status, 200, "{lifecycle}");
    assert_eq!(column(&lifecycle, "new"), ints(&[3, 0, 1]));
    assert_eq!(column(&lifecycle, "dormant"), ints(&[0, 1, 1]));
    let (_, retention) =
        server.get("/v1/merchants/m1/reports/retention?period=month&mode=recurring");
    assert_eq!(column(&retention, "retained"), ints(&[3, 2, 2, 2, 1, 3]));
    let (_, rfm) = server.get("/v1/merchants/m1/reports/rfm");
    let loyal = rfm["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["segment"] == "loyal")
        .expect("loyal");
    assert_eq!(loyal["customers"], 2);
    assert_eq!(loyal["name_zh"], "忠诚客户");
    let (_, repeat) = server.get("/v1/merchants/m1/reports/repeat");
    assert_eq!(repeat["rows"][0]["buyers"], 4);
    let (status, error) = server.get("/v1/merchants/m1/reports/retention?period=day");
    assert_eq!(status, 400, "{error}");
    let (status, _) = server.get("/v1/merchants/m9/reports/rfm");
    assert_eq!(status, 404);

    // Either of alice's ids finds her one profile, with her orders from both.
    let (status, body) = server.get("/v1/merchants/m1/users/alice_store/profile");
    assert_eq!(status, 200, "{body}");
    let profile = &body["profile"];
    assert_eq!(profile["user_id"], "alice");
    assert_eq!(profile["orders"], 3);
    assert_eq!(profile["rfm_segment"], "loyal");
    assert_eq!(profile["lifecycle_stage"], "returning");
    let orders: Vec<Value> = profile["recent_orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| o["order_id"].clone())
        .collect();
    assert_eq!(orders, strings(&["o9", "o2", "o1"]));
    let (status, _) = server.get("/v1/merchants/m1/users/zed/profile");
    assert_eq!(status, 404, "m2's user is not m1's");

    let rule = br#"{"name":"dormant","rule":{"lifecycle":"dormant"}}"#;
    let (status, created) = server.post("/v1/merchants/m1/audiences", "application/json", rule);
    assert_eq!(status, 201, "{created}");
    let (status, again) = server.post("/v1/merchants/m1/audiences", "application/json", rule);
    assert_eq!(status, 409, "{again}");
    let (status, bad) = server.post(
        "/v1/merchants/m1/audiences",
        "application/json",
        br#"{"name":"x","rule":{"and":[{"cluster":"two"}]}}"#,
    );
    assert_eq!(status, 400);
    assert!(bad.to_string().contains("and[0].cluster"), "{bad}");
    let (_, list) = server.get("/v1/merchants/m1/audiences");
    assert_eq!(list["audiences"][0]["name"], "dormant");
    assert_eq!(
        list["audiences"][0]["customers"],
        Value::Null,
        "not evaluated before a run"
    );
}
