//! The ClickHouse backend end to end, against the real server `scripts/services` starts (URL in
//! `RECUR_TEST_CLICKHOUSE_URL`): the same events give the same counts, profiles, reports and
//! recommendations as the embedded store; every read of events names one merchant in the SQL
//! the server received; the server killed mid-ingest loses and doubles nothing.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{path_str, recur, run_json, run_ok, truth_counts};
use polars::prelude::*;
use serde_json::Value;

fn clickhouse_url() -> String {
    std::env::var("RECUR_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| {
        panic!("RECUR_TEST_CLICKHOUSE_URL is not set: run the tests with scripts/test, which starts ClickHouse (scripts/services up)")
    })
}

/// Runs SQL on the test server and returns its answer as text.
fn sql(query: &str) -> String {
    ureq::post(&clickhouse_url())
        .send(query)
        .unwrap_or_else(|e| panic!("ClickHouse refused {query:?}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("answer")
}

/// A database of the test's own, dropped first in case an earlier run left it.
fn fresh_database(name: &str) -> String {
    let database = format!("recur_e2e_{name}_{}", std::process::id());
    sql(&format!("DROP DATABASE IF EXISTS {database}"));
    database
}

fn store_flags(database: &str) -> Vec<String> {
    [
        "--store",
        "clickhouse",
        "--clickhouse-url",
        &clickhouse_url(),
        "--clickhouse-database",
        database,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn with(args: &[&str], extra: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| (*a).to_owned())
        .chain(extra.iter().cloned())
        .collect()
}

fn run_args(args: &[String]) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&refs)
}

fn json_args(args: &[String]) -> Value {
    serde_json::from_str(run_args(args).trim()).expect("JSON output")
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// A table of the current snapshot, sorted by every column so row order does not matter.
fn snapshot_table(data: &Path, table: &str) -> DataFrame {
    let name = recur_engine::snapshot::current_name(data)
        .expect("snapshot")
        .expect("a current snapshot");
    let path = data
        .join("snapshots")
        .join(name)
        .join(format!("{table}.parquet"));
    let frame = LazyFrame::scan_parquet(
        PlRefPath::new(path.to_string_lossy().as_ref()),
        ScanArgsParquet::default(),
    )
    .and_then(LazyFrame::collect)
    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let by: Vec<PlSmallStr> = frame
        .get_column_names()
        .into_iter()
        .filter(|name| {
            frame
                .column(name.as_str())
                .is_ok_and(|c| !matches!(c.dtype(), DataType::List(_)))
        })
        .cloned()
        .collect();
    frame
        .sort(by, SortMultipleOptions::default())
        .expect("sort")
}

/// Waits until `at_least` appends are recorded in `database`: the ingest is under way.
fn wait_for_appends(database: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let count = |sql_text: String| -> u64 { sql(&sql_text).trim().parse().expect("a count") };
    while count(format!(
        "SELECT count() FROM system.tables WHERE database = '{database}' AND name = 'appends'"
    )) == 0
        || count(format!("SELECT count() FROM {database}.appends")) < at_least
    {
        assert!(Instant::now() < deadline, "the ingest did not get going");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Generated events in `dir/events.ndjson` (truth beside them).
fn generate(dir: &Path, merchants: &str, users: &str, days: &str) -> std::path::PathBuf {
    let events = dir.join("events.ndjson");
    run_ok(&[
        "generate",
        "--out",
        path_str(&events),
        "--merchants",
        merchants,
        "--users",
        users,
        "--days",
        days,
    ]);
    events
}

#[test]
fn the_same_events_give_the_same_results_in_clickhouse_as_in_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = generate(dir.path(), "2", "600", "120");
    let embedded = dir.path().join("embedded");
    let clickhouse = dir.path().join("clickhouse");
    let database = fresh_database("parity");
    let flags = store_flags(&database);

    let into_embedded = run_json(&[
        "ingest",
        "--data-dir",
        path_str(&embedded),
        "--json",
        path_str(&events),
    ]);
    let ingest = with(
        &[
            "ingest",
            "--data-dir",
            path_str(&clickhouse),
            "--json",
            path_str(&events),
        ],
        &flags,
    );
    let into_clickhouse = json_args(&ingest);
    assert_eq!(into_clickhouse, into_embedded);
    assert!(into_clickhouse["accepted"].as_u64().expect("accepted") > 1000);
    // The same file again stores nothing: every event is a duplicate.
    let again = json_args(&ingest);
    assert_eq!(again["accepted"], 0);
    assert_eq!(
        again["duplicates"].as_u64(),
        Some(
            into_clickhouse["accepted"].as_u64().expect("a")
                + into_clickhouse["duplicates"].as_u64().expect("d")
        )
    );

    let stats_e = run_json(&["stats", "--data-dir", path_str(&embedded), "--json"]);
    let stats_c = json_args(&with(
        &["stats", "--data-dir", path_str(&clickhouse), "--json"],
        &flags,
    ));
    for field in ["total", "per_merchant", "per_type"] {
        assert_eq!(stats_c[field], stats_e[field], "{field}");
    }

    let started = sql("SELECT toString(now())");
    run_ok(&["run", "--data-dir", path_str(&embedded)]);
    run_args(&with(&["run", "--data-dir", path_str(&clickhouse)], &flags));

    for table in ["profiles", "items", "popular"] {
        let (c, e) = (
            snapshot_table(&clickhouse, table),
            snapshot_table(&embedded, table),
        );
        assert!(c.equals_missing(&e), "{table} differ:\n{c}\n{e}");
    }
    let export = |data: &Path, extra: &[String]| {
        sorted_lines(&run_args(&with(
            &["export", "recommendations", "--data-dir", path_str(data)],
            extra,
        )))
    };
    let recommendations = export(&clickhouse, &flags);
    assert!(!recommendations.is_empty());
    assert_eq!(
        recommendations,
        export(&embedded, &[]),
        "recommendations differ"
    );
    let retention = |data: &Path, extra: &[String]| {
        run_args(&with(
            &[
                "report",
                "retention",
                "--data-dir",
                path_str(data),
                "--merchant",
                "m_bakery",
                "--period",
                "month",
                "--format",
                "json",
            ],
            extra,
        ))
    };
    assert_eq!(retention(&clickhouse, &flags), retention(&embedded, &[]));

    // Every read of event rows the server received names exactly one merchant.
    sql("SYSTEM FLUSH LOGS");
    let reads = sql(&format!(
        "SELECT query FROM system.query_log WHERE type = 1 AND event_time >= toDateTime('{}') \
         AND query LIKE '%FROM events%WHERE%' AND query NOT LIKE '%system.query_log%' FORMAT TSVRaw",
        started.trim()
    ));
    let reads: Vec<&str> = reads.lines().collect();
    assert!(!reads.is_empty(), "no reads of events were logged");
    let mut merchants_read = std::collections::BTreeSet::new();
    for query in &reads {
        let named: Vec<&str> = ["m_bakery", "m_kids_edu"]
            .into_iter()
            .filter(|m| query.contains(&format!("merchant_id = '{m}'")))
            .collect();
        assert_eq!(
            named.len(),
            1,
            "a read of events must name one merchant: {query}"
        );
        merchants_read.insert(named[0]);
    }
    assert_eq!(merchants_read.len(), 2);
    // Per-user, per-line and per-item aggregates are computed by the server.
    for aggregate in [
        "GROUP BY user_id",
        "GROUP BY order_id, item_id, buyer",
        "GROUP BY item_id",
    ] {
        assert!(
            reads.iter().any(|query| query.contains(aggregate)),
            "no read did {aggregate}: {reads:#?}"
        );
    }

    // The store chosen by variables and by the config file, not only by flags.
    let by_env = recur()
        .args(["stats", "--data-dir", path_str(&clickhouse), "--json"])
        .env("RECUR_STORE", "clickhouse")
        .env("RECUR_CLICKHOUSE_URL", clickhouse_url())
        .env("RECUR_CLICKHOUSE_DATABASE", &database)
        .output()
        .expect("stats");
    let by_env: Value = serde_json::from_slice(&by_env.stdout).expect("stats by variables");
    assert_eq!(by_env["total"], stats_e["total"]);
    let config = dir.path().join("recur.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"clickhouse\"\n\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\n",
            clickhouse_url()
        ),
    )
    .expect("config");
    let by_config = run_json(&[
        "--config",
        path_str(&config),
        "stats",
        "--data-dir",
        path_str(&clickhouse),
        "--json",
    ]);
    assert_eq!(by_config["total"], stats_e["total"]);

    sql(&format!("DROP DATABASE IF EXISTS {database}"));
}

#[test]
fn clickhouse_killed_and_restarted_mid_ingest_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = generate(dir.path(), "3", "3000", "150");
    let truth = truth_counts(&dir.path().join("events.truth.jsonl"));
    let unique = truth["unique_events"]
        .as_u64()
        .expect("unique_events in the truth file");
    let database = fresh_database("restart");
    let data = dir.path().join("data");
    let args = with(
        &[
            "ingest",
            "--data-dir",
            path_str(&data),
            "--json",
            "--batch-events",
            "2000",
            path_str(&events),
        ],
        &store_flags(&database),
    );
    let child = recur()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ingest starts");
    // Kill the server once some batches are in, while the ingest is still going.
    wait_for_appends(&database, 3);
    common::kafka::services("restart-clickhouse");
    let output = common::finish_within(child, common::COMMAND_DEADLINE, &["ingest"]);
    common::assert_success(&output, &["ingest"]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("store unreachable"),
        "the ingest should have waited for the restarted server:\n{log}"
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["accepted"].as_u64(), Some(unique), "{summary}");
    let stats = json_args(&with(
        &["stats", "--data-dir", path_str(&data), "--json"],
        &store_flags(&database),
    ));
    assert_eq!(stats["total"].as_u64(), Some(unique));
    // A rerun finds everything stored.
    let rerun = json_args(&args);
    assert_eq!(rerun["accepted"], 0);
    sql(&format!("DROP DATABASE IF EXISTS {database}"));
}

/// ClickHouse down while serving: lists are still served from the snapshot, /healthz says
/// degraded, posted events get 503 `store_unavailable` (nothing stored); once it is back,
/// /healthz is ok and posting works again.
#[test]
fn serve_keeps_serving_and_says_degraded_while_clickhouse_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = generate(dir.path(), "1", "300", "60");
    let database = fresh_database("outage");
    let flags = store_flags(&database);
    let data = dir.path().join("data");
    run_args(&with(
        &["ingest", "--data-dir", path_str(&data), path_str(&events)],
        &flags,
    ));
    run_args(&with(&["run", "--data-dir", path_str(&data)], &flags));
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = common::Server::start(&data, &flag_refs);
    let (status, health) = server.get("/healthz");
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );
    let list = "/v1/merchants/m_bakery/users/u0000000/recommendations?k=3";
    let (before, lists) = server.get(list);
    assert_eq!(before, 200, "{lists}");
    let event = |id: &str| {
        format!(
            r#"{{"event_id":"{id}","merchant_id":"m_bakery","user_id":"u_new","type":"view","item_id":"x","ts":{}}}"#,
            chrono_now_ms()
        )
    };

    common::kafka::services("stop-clickhouse");
    let degraded = server.wait_for(Duration::from_secs(20), |s| {
        s.get("/healthz").1["status"] == "degraded"
    });
    let (status, body) = server.post("/v1/events", "application/x-ndjson", event("o1").as_bytes());
    let during = server.get(list);
    common::kafka::services("start-clickhouse");
    assert!(
        degraded,
        "/healthz did not say degraded with ClickHouse down"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert_eq!(
        during,
        (before, lists),
        "lists are served from the snapshot whatever the store does"
    );

    let healthy = server.wait_for(Duration::from_secs(30), |s| {
        s.get("/healthz").1["status"] == "ok"
    });
    assert!(healthy, "/healthz did not recover once ClickHouse was back");
    let (status, body) = server.post("/v1/events", "application/x-ndjson", event("o2").as_bytes());
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    drop(server);
    sql(&format!("DROP DATABASE IF EXISTS {database}"));
}

fn chrono_now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

/// Kafka into ClickHouse through a ClickHouse outage: the consumer waits, commits no offset
/// for what is not stored, and in the end every event is stored exactly once and every
/// offset committed.
#[test]
fn kafka_into_clickhouse_through_an_outage_stores_everything_once() {
    use common::kafka::{
        GROUP_OPTIONS, assert_all_committed, brokers, create_topic, exclusive_broker, unique_topic,
    };
    let _broker = exclusive_broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let events = generate(dir.path(), "2", "1500", "90");
    let unique = truth_counts(&dir.path().join("events.truth.jsonl"))["unique_events"]
        .as_u64()
        .expect("unique_events");
    let topic = unique_topic("ch-outage");
    create_topic(&topic, 2);
    run_ok(&[
        "produce",
        "--kafka",
        &brokers(),
        "--topic",
        &topic,
        path_str(&events),
    ]);
    let database = fresh_database("kafka");
    let data = dir.path().join("data");
    let group = format!("{topic}-group");
    let mut args = with(
        &[
            "ingest",
            "--data-dir",
            path_str(&data),
            "--json",
            "--kafka",
            &brokers(),
            "--topic",
            &topic,
            "--group",
            &group,
            "--until-idle",
            "8",
            "--batch-events",
            "1000",
            "--max-batch-wait-ms",
            "50",
        ],
        &store_flags(&database),
    );
    args.extend(GROUP_OPTIONS.iter().map(|o| (*o).to_owned()));
    let child = recur()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("consumer starts");
    wait_for_appends(&database, 2);
    common::kafka::services("stop-clickhouse");
    std::thread::sleep(Duration::from_secs(3));
    common::kafka::services("start-clickhouse");
    let output = common::finish_within(child, common::COMMAND_DEADLINE, &["ingest", "--kafka"]);
    common::assert_success(&output, &["ingest", "--kafka"]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("nothing committed, retrying"),
        "the consumer should have waited for ClickHouse:\n{log}"
    );
    let stats = json_args(&with(
        &["stats", "--data-dir", path_str(&data), "--json"],
        &store_flags(&database),
    ));
    assert_eq!(stats["total"].as_u64(), Some(unique));
    assert_all_committed(&group, &topic, 2);
    sql(&format!("DROP DATABASE IF EXISTS {database}"));
}
