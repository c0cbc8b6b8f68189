//! End to end: `recur demo --no-serve` on a fresh directory, then again (idempotent), and
//! `recur generate` writing the same bytes for the same seed.

mod common;

use common::*;

#[test]
fn demo_runs_from_nothing_and_again_without_double_counting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo");
    let args = [
        "demo",
        "--data-dir",
        path_str(&data),
        "--no-serve",
        "--users",
        "300",
        "--days",
        "60",
    ];
    let first = run_ok(&args);
    for expected in [
        "repeat rate",
        "m_bakery",
        "m_kids_edu",
        "m_laundry",
        "/healthz",
        "best customers",
        "/recommendations",
        "autumn-repeat replayed for 3 merchants",
        "measured against its holdout",
    ] {
        assert!(
            first.contains(expected),
            "the demo shows {expected:?}:\n{first}"
        );
    }
    let total = run_json(&["stats", "--data-dir", path_str(&data), "--json"])["total"].clone();
    let campaign = campaign_report(&data);
    let second = run_ok(&args);
    assert!(second.contains(" 0 accepted"), "{second}");
    assert_eq!(
        run_json(&["stats", "--data-dir", path_str(&data), "--json"])["total"],
        total
    );
    // The replayed campaign is decided once: a second demo sends nobody anew.
    assert_eq!(campaign_report(&data), campaign);
}

/// The demo replays a past campaign for every merchant: the bakery's has both arms, the
/// holdout about the share the generator drew, and a lift with its interval.
fn campaign_report(data: &std::path::Path) -> serde_json::Value {
    let report = run_json(&[
        "report",
        "campaign",
        "--data-dir",
        path_str(data),
        "--merchant",
        "m_bakery",
        "--name",
        "autumn-repeat",
        "--format",
        "json",
    ]);
    let treated = report["treated"]["customers"].as_u64().expect("treated");
    let holdout = report["holdout"]["customers"].as_u64().expect("holdout");
    assert!(treated > 20 && holdout > 0, "{report}");
    assert!(holdout * 3 < treated, "a 10% holdout: {report}");
    assert!(report["lift"]["absolute_ci"].is_array(), "{report}");
    report
}

#[test]
fn generate_is_byte_for_byte_reproducible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.ndjson");
    let b = dir.path().join("b.ndjson");
    for out in [&a, &b] {
        run_ok(&[
            "generate",
            "--out",
            path_str(out),
            "--users",
            "200",
            "--days",
            "30",
            "--seed",
            "11",
        ]);
    }
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    assert_eq!(
        std::fs::read(dir.path().join("a.truth.jsonl")).expect("a"),
        std::fs::read(dir.path().join("b.truth.jsonl")).expect("b")
    );
}
