//! End to end: the guarantees a code review found broken — nothing after `--as-of` reaches an
//! output, a stitched customer's every id gets their list, concurrent writers lose nothing,
//! the same input gives the same bytes, a closed pipe ends a command quietly, and the server
//! answers from memory even when its snapshot's files are gone.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use serde_json::{Value, json};

fn buy(id: &str, user: &str, ts: &str, item: &str, order: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    event(
        id,
        "m1",
        user,
        "purchase",
        ts,
        &format!(
            r#""item_id":"{item}","category":"pastry","price":9.9,"order_id":"{order}"{extra}"#
        ),
    )
}

/// Events up to the end of 2026-05-31 in Shanghai (the default zone of a merchant).
fn before_cutoff() -> Vec<String> {
    vec![
        buy(
            "1",
            "alice",
            "2026-05-01T09:00:00+08:00",
            "croissant",
            "o1",
            r#""unionid":"U1""#,
        ),
        buy(
            "2",
            "alice",
            "2026-05-20T09:00:00+08:00",
            "croissant",
            "o2",
            "",
        ),
        // Late on the as-of day, local time: included (it is 15:30 UTC).
        buy("3", "alice", "2026-05-31T23:30:00+08:00", "tart", "o3", ""),
        buy(
            "4",
            "bob",
            "2026-05-25T09:00:00+08:00",
            "baguette",
            "o4",
            "",
        ),
        event(
            "5",
            "m1",
            "carol",
            "view",
            "2026-05-28T09:00:00+08:00",
            r#""item_id":"tart""#,
        ),
    ]
}

/// Events after the cutoff that would change every table if they leaked in.
fn after_cutoff() -> Vec<String> {
    vec![
        // Ten minutes after local midnight: still 2026-05-31 in UTC.
        buy(
            "6",
            "alice",
            "2026-06-01T00:10:00+08:00",
            "baguette",
            "o5",
            "",
        ),
        event(
            "7",
            "m1",
            "alice",
            "refund",
            "2026-06-02T09:00:00+08:00",
            r#""item_id":"croissant","price":9.9,"order_id":"o2""#,
        ),
        buy("8", "dave", "2026-06-03T09:00:00+08:00", "tart", "o6", ""),
        buy("9", "dave", "2026-06-04T09:00:00+08:00", "eclair", "o7", ""),
        // bob's id would be folded into alice's customer by this unionid.
        buy(
            "10",
            "bob",
            "2026-06-05T09:00:00+08:00",
            "tart",
            "o8",
            r#""unionid":"U1""#,
        ),
        event(
            "11",
            "m1",
            "carol",
            "subscribe",
            "2026-06-03T09:00:00+08:00",
            r#""properties":{"template_id":"T1"}"#,
        ),
    ]
}

fn snapshot_dir(data: &Path, name: &str) -> PathBuf {
    data.join("snapshots").join(name)
}

/// Every Parquet table of a snapshot, by file name, as bytes.
fn tables(data: &Path, name: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(snapshot_dir(data, name))
        .expect("snapshot dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect()
}

fn run_as_of(data: &Path, as_of: &str) -> Value {
    run_json(&[
        "run",
        "--data-dir",
        path_str(data),
        "--json",
        "--as-of",
        as_of,
    ])
}

#[test]
fn events_after_the_as_of_change_no_byte_of_any_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d = path_str(&data);
    run_ok(&[
        "audience",
        "create",
        "--data-dir",
        d,
        "--merchant",
        "m1",
        "--name",
        "subscribers",
        "--rule",
        r#"{"subscribed":{"template_id":"T1"}}"#,
    ]);
    let first = write_lines(dir.path(), "first.ndjson", &before_cutoff());
    run_ok(&["ingest", "--data-dir", d, path_str(&first)]);
    let before = run_as_of(&data, "2026-05-31");
    let merchant = &before["merchants"][0];
    assert_eq!(
        merchant["orders"], 4,
        "the order at 23:30 local time on the as-of day is in: {merchant}"
    );
    assert_eq!(merchant["as_of_ms"], 1_780_243_200_000_i64 - 1);
    let report_args = |report: &str| -> Vec<String> {
        [
            "report",
            report,
            "--data-dir",
            d,
            "--merchant",
            "m1",
            "--format",
            "json",
            "--as-of",
            "2026-05-31",
        ]
        .iter()
        .map(ToString::to_string)
        .collect()
    };
    let live = |report: &str, extra: &[&str]| {
        let mut args = report_args(report);
        args.extend(extra.iter().map(ToString::to_string));
        run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let reports_before = [
        live("rfm", &["--customers"]),
        live("retention", &["--period", "week"]),
        live("lifecycle", &["--period", "day"]),
        live("identities", &[]),
    ];

    let second = write_lines(dir.path(), "second.ndjson", &after_cutoff());
    run_ok(&["ingest", "--data-dir", d, path_str(&second)]);
    let after = run_as_of(&data, "2026-05-31");
    assert_ne!(before["store_seq"], after["store_seq"]);
    assert_eq!(before["merchants"], after["merchants"]);
    let (old, new) = (
        tables(&data, before["name"].as_str().expect("name")),
        tables(&data, after["name"].as_str().expect("name")),
    );
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        new.keys().collect::<Vec<_>>()
    );
    for (file, bytes) in &old {
        assert!(
            bytes == &new[file],
            "{file} changed although every new event is after the as-of"
        );
    }
    let reports_after = [
        live("rfm", &["--customers"]),
        live("retention", &["--period", "week"]),
        live("lifecycle", &["--period", "day"]),
        live("identities", &[]),
    ];
    assert_eq!(reports_before, reports_after);

    // An instant is exact: noon on the as-of day leaves out the tart bought at 23:30.
    let noon = run_as_of(&data, "2026-05-31T12:00:00+08:00");
    assert_eq!(noon["merchants"][0]["orders"], 3);
    // Without --as-of everything counts: o2 refunded, o5 to o8 added.
    let now = run_json(&["run", "--data-dir", d, "--json"]);
    assert_eq!(now["merchants"][0]["orders"], 7);
}

#[test]
fn every_id_of_a_stitched_customer_gets_the_customers_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d = path_str(&data);
    let lines = vec![
        buy(
            "1",
            "app-77",
            "2026-05-01T09:00:00+08:00",
            "croissant",
            "o1",
            r#""unionid":"U9""#,
        ),
        buy(
            "2",
            "app-77",
            "2026-05-08T09:00:00+08:00",
            "croissant",
            "o2",
            "",
        ),
        // The same person in the micro-store, known by another user id and the same unionid.
        buy(
            "3",
            "shop-12",
            "2026-05-10T09:00:00+08:00",
            "tart",
            "o3",
            r#""unionid":"U9""#,
        ),
        buy(
            "4",
            "bob",
            "2026-05-11T09:00:00+08:00",
            "baguette",
            "o4",
            "",
        ),
    ];
    let file = write_lines(dir.path(), "events.ndjson", &lines);
    run_ok(&["ingest", "--data-dir", d, path_str(&file)]);
    run_ok(&["run", "--data-dir", d, "--k", "3"]);

    let export = run_ok(&["export", "recommendations", "--data-dir", d, "--k", "3"]);
    let lines: BTreeMap<String, Value> = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSONL"))
        .map(|l| (l["user_id"].as_str().expect("id").to_owned(), l))
        .collect();
    assert_eq!(
        lines.keys().collect::<Vec<_>>(),
        vec!["app-77", "bob", "shop-12"]
    );
    assert_eq!(lines["shop-12"]["customer_id"], "app-77");
    assert_eq!(lines["shop-12"]["items"], lines["app-77"]["items"]);
    assert_eq!(
        item_reasons(&lines["shop-12"])[..2],
        pairs(&[("croissant", "bought_before"), ("tart", "bought_before")])[..]
    );

    let server = Server::start(&data, &[]);
    let (status, by_second_id) = server.get("/v1/merchants/m1/users/shop-12/recommendations?k=3");
    assert_eq!(status, 200);
    assert_eq!(by_second_id["personalized"], true);
    assert_eq!(by_second_id["customer_id"], "app-77");
    let (_, by_first_id) = server.get("/v1/merchants/m1/users/app-77/recommendations?k=3");
    assert_eq!(by_second_id["items"], by_first_id["items"]);
    let (status, profile) = server.get("/v1/merchants/m1/users/shop-12/profile");
    assert_eq!(status, 200);
    assert_eq!(profile["profile"]["user_id"], "app-77");
    assert_eq!(profile["profile"]["orders"], 3);
}

#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d = path_str(&data);
    let children: Vec<_> = (0..20)
        .map(|i| {
            recur()
                .args([
                    "audience",
                    "create",
                    "--data-dir",
                    d,
                    "--merchant",
                    "m1",
                    "--name",
                    &format!("audience-{i:02}"),
                    "--rule",
                    r#"{"lifecycle":"new"}"#,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let listed = run_json(&[
        "audience",
        "list",
        "--data-dir",
        d,
        "--merchant",
        "m1",
        "--format",
        "json",
    ]);
    let names = listed["audiences"].as_array().expect("audiences");
    assert_eq!(names.len(), 20, "{listed}");

    // Runs racing each other: whatever order they finish in, CURRENT ends on the snapshot of
    // the newest store state.
    let file = write_lines(dir.path(), "a.ndjson", &before_cutoff());
    run_ok(&["ingest", "--data-dir", d, path_str(&file)]);
    for round in 0..3 {
        let older = recur()
            .args(["run", "--data-dir", d])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        let more = write_lines(
            dir.path(),
            &format!("more-{round}.ndjson"),
            &[buy(
                &format!("extra-{round}"),
                "erin",
                "2026-05-30T09:00:00+08:00",
                "tart",
                &format!("x{round}"),
                "",
            )],
        );
        run_ok(&["ingest", "--data-dir", d, path_str(&more)]);
        let newer = recur()
            .args(["run", "--data-dir", d])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        for mut child in [older, newer] {
            assert!(child.wait().expect("wait").success());
        }
        let current = std::fs::read_to_string(data.join("snapshots/CURRENT")).expect("CURRENT");
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(snapshot_dir(&data, current.trim()).join("manifest.json"))
                .expect("manifest"),
        )
        .expect("JSON");
        let stats = run_json(&["stats", "--data-dir", d, "--json"]);
        assert_eq!(
            manifest["store_seq"], stats["commits"],
            "round {round}: CURRENT names a snapshot of an older store state"
        );
    }
}

#[test]
fn the_same_store_gives_the_same_bytes_and_closed_pipes_end_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d = path_str(&data);
    let file = dir.path().join("events.ndjson.gz");
    run_ok(&[
        "generate",
        "--out",
        path_str(&file),
        "--users",
        "3000",
        "--days",
        "300",
        "--seed",
        "11",
    ]);
    run_ok(&["ingest", "--data-dir", d, path_str(&file)]);
    let first = run_json(&["run", "--data-dir", d, "--json"]);
    let second = run_json(&["run", "--data-dir", d, "--json"]);
    assert_eq!(first["merchants"], second["merchants"]);
    let (a, b) = (
        tables(&data, first["name"].as_str().expect("name")),
        tables(&data, second["name"].as_str().expect("name")),
    );
    for (file, bytes) in &a {
        assert!(
            bytes == &b[file],
            "{file} differs between two runs on the same store"
        );
    }
    let rfm = |_: u32| {
        run_ok(&[
            "report",
            "rfm",
            "--data-dir",
            d,
            "--merchant",
            "m_bakery",
            "--customers",
            "--format",
            "json",
        ])
    };
    assert_eq!(rfm(1), rfm(2));

    // A reader that stops after one line: the command ends with success, no panic.
    for args in [
        vec!["export", "recommendations", "--data-dir", d],
        vec![
            "report",
            "rfm",
            "--data-dir",
            d,
            "--merchant",
            "m_bakery",
            "--customers",
            "--format",
            "csv",
        ],
        vec![
            "audience",
            "export",
            "--data-dir",
            d,
            "--merchant",
            "m_bakery",
            "--name",
            "everyone",
        ],
    ] {
        if args[0] == "audience" {
            run_ok(&[
                "audience",
                "create",
                "--data-dir",
                d,
                "--merchant",
                "m_bakery",
                "--name",
                "everyone",
                "--rule",
                r#"{"not":{"cluster":999}}"#,
            ]);
        }
        let mut child = recur()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("first line");
        assert!(!line.is_empty(), "recur {} printed nothing", args.join(" "));
        drop(reader);
        let output = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && !stderr.contains("panicked"),
            "recur {} on a closed pipe: {} {stderr}",
            args.join(" "),
            output.status
        );
    }
}

#[test]
fn the_server_answers_from_memory_when_its_snapshot_files_are_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d = path_str(&data);
    let file = write_lines(dir.path(), "events.ndjson", &before_cutoff());
    run_ok(&["ingest", "--data-dir", d, path_str(&file)]);
    let manifest = run_json(&["run", "--data-dir", d, "--json"]);
    let server = Server::start(&data, &["--reload-every", "3600"]);
    let (_, profile_before) = server.get("/v1/merchants/m1/users/alice/profile");
    // Pruned by later runs (or removed by hand): the served copy is in memory.
    std::fs::remove_dir_all(snapshot_dir(
        &data,
        manifest["name"].as_str().expect("name"),
    ))
    .expect("remove");
    for path in [
        "/v1/merchants/m1/reports/retention?period=month&mode=recurring",
        "/v1/merchants/m1/reports/lifecycle?period=day",
        "/v1/merchants/m1/reports/rfm?scheme=value-class",
        "/v1/merchants/m1/reports/identities",
        "/v1/merchants/m1/users/alice/profile",
    ] {
        let (status, body) = server.get(path);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, profile) = server.get("/v1/merchants/m1/users/alice/profile");
    assert_eq!(profile, profile_before);
    let orders: Vec<&str> = profile["profile"]["recent_orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| o["order_id"].as_str().expect("id"))
        .collect();
    assert_eq!(orders, vec!["o3", "o2", "o1"]);
    assert_eq!(
        profile["profile"]["recent_orders"][0],
        json!({"order_id": "o3", "ordered_at": 1_780_241_400_000_i64, "amount": 9.9, "items": 1})
    );
}

#[test]
fn compaction_merges_many_small_commits_and_keeps_every_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d = path_str(&data);
    let file = dir.path().join("events.ndjson");
    let counts = {
        run_ok(&[
            "generate",
            "--out",
            path_str(&file),
            "--users",
            "300",
            "--days",
            "60",
            "--seed",
            "4",
        ]);
        truth_counts(&dir.path().join("events.truth.jsonl"))
    };
    let unique = counts["unique_events"].as_u64().expect("n");
    // Tiny batches: hundreds of commits, as HTTP posts or a slow Kafka topic make them.
    let first = run_json(&[
        "ingest",
        "--data-dir",
        d,
        "--json",
        "--batch-events",
        "40",
        path_str(&file),
    ]);
    assert_eq!(first["accepted"].as_u64(), Some(unique));
    let stats = run_json(&["stats", "--data-dir", d, "--json"]);
    assert_eq!(stats["total"].as_u64(), Some(unique));
    let rfm = || {
        run_ok(&[
            "report",
            "rfm",
            "--data-dir",
            d,
            "--merchant",
            "m_bakery",
            "--customers",
            "--format",
            "json",
        ])
    };
    let report_before = rfm();

    let compacted = run_json(&["compact", "--data-dir", d, "--json", "--grace", "0"]);
    assert_eq!(compacted["events"].as_u64(), Some(unique));
    let files_after = compacted["files_after"].as_u64().expect("files");
    assert!(
        files_after <= 3 * 3,
        "one file per merchant and month after a full compaction: {compacted}"
    );
    let log_records = std::fs::read_dir(data.join("_log"))
        .expect("log")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
        .count();
    assert!(
        log_records <= 3,
        "the log is a checkpoint and a few records: {log_records}"
    );
    assert_eq!(rfm(), report_before);
    // Everything is still known: the same file again stores nothing.
    let again = run_json(&[
        "ingest",
        "--data-dir",
        d,
        "--json",
        "--batch-events",
        "40",
        path_str(&file),
    ]);
    assert_eq!(again["accepted"], 0);
    assert_eq!(
        again["duplicates"].as_u64(),
        Some(unique + counts["duplicate_lines"].as_u64().expect("n"))
    );
}
