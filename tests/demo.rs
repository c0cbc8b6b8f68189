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
    ] {
        assert!(
            first.contains(expected),
            "the demo shows {expected:?}:\n{first}"
        );
    }
    let total = run_json(&["stats", "--data-dir", path_str(&data), "--json"])["total"].clone();
    let second = run_ok(&args);
    assert!(second.contains(" 0 accepted"), "{second}");
    assert_eq!(
        run_json(&["stats", "--data-dir", path_str(&data), "--json"])["total"],
        total
    );
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
