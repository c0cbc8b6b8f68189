//! recur.toml: unknown keys stop every command with their line; the file's settings are
//! defaults that `RECUR_*` variables and flags override; serve and ingest take their
//! settings from it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("recur.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

/// A data directory holding `n` distinct events.
fn data_with_events(dir: &Path, name: &str, n: usize) -> PathBuf {
    let data = dir.join(name);
    let lines: Vec<String> = (0..n).map(|i| one_view(&format!("{name}-{i}"))).collect();
    let file = write_lines(dir, &format!("{name}.ndjson"), &lines);
    run_ok(&[
        "ingest",
        "--data-dir",
        path_str(&data),
        "--json",
        path_str(&file),
    ]);
    data
}

fn one_view(id: &str) -> String {
    event(
        id,
        "m1",
        "u1",
        "view",
        "2026-05-30T09:00:00+08:00",
        r#""item_id":"i1""#,
    )
}

fn total(output: &std::process::Output) -> u64 {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON stats");
    stats["total"].as_u64().expect("total")
}

#[test]
fn an_unknown_key_stops_the_command_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[serve]\nlisten = \"127.0.0.1:0\"\nmax_bodybytes = 5\n",
    );
    for through_variable in [false, true] {
        let mut command = recur();
        command.args(["stats", "--data-dir", path_str(dir.path()), "--json"]);
        if through_variable {
            command.env("RECUR_CONFIG", &config);
        } else {
            command.args(["--config", path_str(&config)]);
        }
        let output = command.output().expect("recur runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("line 3") && stderr.contains("max_bodybytes"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing ran");
    }
}

#[test]
fn the_file_is_a_default_that_variables_and_flags_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = data_with_events(dir.path(), "one", 1);
    let two = data_with_events(dir.path(), "two", 2);
    let config = write_config(
        dir.path(),
        &format!("[store]\ndata_dir = {:?}\n", path_str(&one)),
    );
    let stats = || {
        let mut command = recur();
        command.args(["stats", "--json", "--config", path_str(&config)]);
        command
    };
    assert_eq!(total(&stats().output().expect("runs")), 1, "from the file");
    assert_eq!(
        total(&stats().env("RECUR_DATA_DIR", &two).output().expect("runs")),
        2,
        "the variable overrides the file"
    );
    assert_eq!(
        total(
            &stats()
                .env("RECUR_DATA_DIR", &two)
                .args(["--data-dir", path_str(&one)])
                .output()
                .expect("runs")
        ),
        1,
        "the flag overrides both"
    );
}

#[test]
fn serve_takes_its_limits_from_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "[serve]\nmax_body_bytes = 600\n");
    let server = Server::start(&data, &["--config", path_str(&config)]);
    let line = one_view("e1");
    let (status, body) = server.post("/v1/events", "application/x-ndjson", line.as_bytes());
    assert_eq!(status, 200, "{body}");
    let big = vec![line; 10].join("\n");
    let (status, body) = server.post("/v1/events", "application/x-ndjson", big.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], json!("body_too_large"), "{body}");
}

#[test]
fn files_named_on_the_command_line_win_over_configured_brokers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Nothing listens there: consuming would fail, reading the file must not.
    let config = write_config(
        dir.path(),
        "[kafka]\nbrokers = \"127.0.0.1:9\"\ntopic = \"events\"\noptions = { \"client.id\" = \"recur-test\" }\n",
    );
    let line = one_view("e1");
    let file = write_lines(dir.path(), "events.ndjson", &[line]);
    let summary = run_json(&[
        "ingest",
        "--config",
        path_str(&config),
        "--data-dir",
        path_str(&data),
        "--json",
        path_str(&file),
    ]);
    assert_eq!(
        summary,
        json!({"accepted": 1, "duplicates": 0, "rejected": 0})
    );
}

#[test]
fn ingest_without_files_or_brokers_says_what_to_give() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = recur()
        .args(["ingest", "--data-dir", path_str(&dir.path().join("data"))])
        .output()
        .expect("recur runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nothing to ingest") && stderr.contains("--kafka"),
        "{stderr}"
    );
}
