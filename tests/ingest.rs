//! End to end: `recur ingest` and `recur stats` on good, bad and duplicate lines, stdin, gzip,
//! and SIGKILL in the middle of a file.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;

fn sample_lines() -> Vec<String> {
    vec![
        event(
            "e1",
            "m1",
            "u1",
            "purchase",
            "2026-05-01T10:00:00+08:00",
            r#""item_id":"i1","price":12.5,"order_id":"o1""#,
        ),
        event(
            "e2",
            "m1",
            "u1",
            "view",
            "2026-05-01T09:59:00+08:00",
            r#""item_id":"i2""#,
        ),
        event(
            "e1",
            "m1",
            "u1",
            "purchase",
            "2026-05-01T10:00:00+08:00",
            r#""item_id":"i1","price":12.5,"order_id":"o1""#,
        ),
        event(
            "e3",
            "m1",
            "u2",
            "purchase",
            "2026-05-02T10:00:00+08:00",
            r#""item_id":"i1","price":-3,"order_id":"o2""#,
        ),
        String::new(),
        r#"{"event_id":"e4","merchant_id":"m2""#.to_owned(),
        event(
            "e1",
            "m2",
            "u9",
            "search",
            "2026-06-01T10:00:00Z",
            r#""properties":{"query":"cake"}"#,
        ),
    ]
}

#[test]
fn good_bad_and_duplicate_lines_are_counted_exactly_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = write_lines(dir.path(), "events.ndjson", &sample_lines());
    let args = [
        "ingest",
        "--data-dir",
        path_str(&data),
        "--json",
        path_str(&file),
    ];

    assert_eq!(
        run_json(&args),
        json!({"accepted": 3, "duplicates": 1, "rejected": 2})
    );
    let rejected = rejected_lines(&data);
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["source"], json!(path_str(&file)));
    assert_eq!(rejected[0]["line"], json!(4));
    assert_eq!(rejected[0]["reason"], json!("price must be >= 0, got -3"));
    assert_eq!(rejected[0]["raw"], json!(sample_lines()[3]));
    assert_eq!(rejected[1]["line"], json!(6));
    assert!(
        rejected[1]["reason"]
            .as_str()
            .expect("text")
            .starts_with("not valid JSON"),
        "{}",
        rejected[1]
    );

    let stats = run_json(&["stats", "--data-dir", path_str(&data), "--json"]);
    let expected_stats = json!({
        "total": 3,
        "per_merchant": {"m1": 2, "m2": 1},
        "per_type": {"purchase": 1, "search": 1, "view": 1},
        "files": 2,
        "commits": 1,
    });
    assert_eq!(stats, expected_stats);

    // Same file again: every valid event is a duplicate, nothing new is stored or rejected twice.
    assert_eq!(
        run_json(&args),
        json!({"accepted": 0, "duplicates": 4, "rejected": 2})
    );
    assert_eq!(
        run_json(&["stats", "--data-dir", path_str(&data), "--json"]),
        expected_stats
    );
    assert_eq!(rejected_lines(&data).len(), 2);
}

#[test]
fn stdin_and_gzip_are_read_and_the_table_summary_is_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let lines = sample_lines();
    let gz = dir.path().join("events.ndjson.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).expect("create"),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(lines[..2].join("\n").as_bytes())
        .expect("write");
    encoder.finish().expect("finish");
    assert_eq!(
        run_json(&[
            "ingest",
            "--data-dir",
            path_str(&data),
            "--json",
            path_str(&gz)
        ]),
        json!({"accepted": 2, "duplicates": 0, "rejected": 0})
    );

    let mut child = recur()
        .args(["ingest", "--data-dir", path_str(&data), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.join("\n").as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert_success(&output, &["ingest", "-"]);
    let table = String::from_utf8(output.stdout).expect("utf-8");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.contains(&vec!["accepted", "1"]), "{table}");
    assert!(rows.contains(&vec!["duplicates", "3"]), "{table}");
    assert!(rows.contains(&vec!["rejected", "2"]), "{table}");
    assert!(table.contains("rejected"), "{table}");
    let stdin_rejects: Vec<_> = rejected_lines(&data)
        .into_iter()
        .filter(|r| r["source"] == json!("stdin"))
        .collect();
    assert_eq!(stdin_rejects.len(), 2);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = recur()
        .args([
            "ingest",
            "--data-dir",
            path_str(dir.path()),
            "/nonexistent/events.ndjson",
        ])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/events.ndjson"),
        "{stderr}"
    );
}

#[test]
fn ingest_killed_with_sigkill_and_rerun_stores_every_valid_event_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = dir.path().join("events.ndjson");
    run_ok(&[
        "generate",
        "--out",
        path_str(&file),
        "--users",
        "1500",
        "--days",
        "120",
        "--seed",
        "7",
    ]);
    let counts = truth_counts(&dir.path().join("events.truth.jsonl"));
    let unique = counts["unique_events"].as_u64().expect("count");
    let malformed = counts["malformed_lines"].as_u64().expect("count");
    assert!(
        unique > 20_000,
        "the file is large enough to kill mid-way: {unique}"
    );

    let args = [
        "ingest",
        "--data-dir",
        path_str(&data),
        "--json",
        "--batch-events",
        "1500",
        path_str(&file),
    ];
    let log_dir = data.join("_log");
    let commits = || {
        std::fs::read_dir(&log_dir).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count()
        })
    };
    // Kill at different points: after the first commits, then further along.
    for wait_for_commits in [2usize, 5, 9] {
        let mut child = recur()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while commits() < wait_for_commits && std::time::Instant::now() < deadline {
            if child.try_wait().expect("poll").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    let killed_at = commits();
    assert!(
        killed_at >= 2,
        "at least one run was killed after committing"
    );

    let last = run_json(&args);
    let stats = run_json(&["stats", "--data-dir", path_str(&data), "--json"]);
    assert_eq!(
        stats["total"].as_u64(),
        Some(unique),
        "every valid event stored exactly once"
    );
    assert_eq!(last["rejected"].as_u64(), Some(malformed));
    assert_eq!(
        last["accepted"].as_u64().expect("n") + last["duplicates"].as_u64().expect("n"),
        counts["unique_events"].as_u64().expect("n")
            + counts["duplicate_lines"].as_u64().expect("n")
    );
    assert_eq!(
        rejected_lines(&data).len() as u64,
        malformed,
        "each bad line recorded once"
    );
    let leftovers: Vec<_> = walk(&data)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temp files remain: {leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
