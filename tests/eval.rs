//! `recur eval`: the next-basket protocol from the command line, its JSON contract, and that
//! orders after the held-out cut never change a score.

mod common;

use common::*;
use serde_json::Value;

const MODELS: [&str; 7] = [
    "popularity",
    "p_topfreq",
    "tifu_knn",
    "repeat_timing",
    "co_purchase",
    "blend",
    "blend_explore",
];

fn ingest_generated(dir: &std::path::Path) -> std::path::PathBuf {
    let events = dir.join("events.ndjson");
    let data = dir.join("data");
    run_ok(&[
        "generate",
        "--out",
        path_str(&events),
        "--users",
        "600",
        "--days",
        "150",
        "--seed",
        "11",
    ]);
    run_ok(&["ingest", "--data-dir", path_str(&data), path_str(&events)]);
    data
}

#[test]
fn every_model_is_scored_per_merchant_in_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = ingest_generated(dir.path());
    let report = run_json(&["eval", "--data-dir", path_str(&data), "--k", "5", "--json"]);
    let merchants = report["merchants"].as_array().expect("merchants");
    assert!(!merchants.is_empty());
    for merchant in merchants {
        assert_eq!(merchant["k"], 5);
        assert_eq!(merchant["holdout"], "last-order");
        assert!(merchant["customers"].as_u64().expect("customers") > 0);
        let names: Vec<&str> = merchant["models"]
            .as_array()
            .expect("models")
            .iter()
            .map(|m| m["model"].as_str().expect("name"))
            .collect();
        assert_eq!(names, MODELS);
        for model in merchant["models"].as_array().expect("models") {
            for metric in [
                "recall",
                "precision",
                "ndcg",
                "hit_rate",
                "coverage",
                "recall_new",
            ] {
                let value = model[metric].as_f64().unwrap_or_else(|| {
                    panic!("{metric} of {} is missing: {model}", model["model"])
                });
                assert!((0.0..=1.0).contains(&value), "{metric} = {value}");
            }
        }
        let score = |name: &str, metric: &str| -> f64 {
            merchant["models"]
                .as_array()
                .expect("models")
                .iter()
                .find(|m| m["model"] == name)
                .and_then(|m| m[metric].as_f64())
                .expect("metric")
        };
        // Personal frequency never recommends an item the customer did not buy.
        assert_eq!(score("p_topfreq", "recall_new"), 0.0);
        assert!(score("tifu_knn", "recall") > 0.0);
    }
}

#[test]
fn bad_arguments_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = ingest_generated(dir.path());
    for (args, expected) in [
        (
            vec!["--holdout", "yesterday"],
            "--holdout must be last-order or days:N",
        ),
        (vec!["--k", "0"], "--k must be between 1 and 100"),
        (vec!["--merchant", "nobody"], "has no kept orders"),
    ] {
        let mut full = vec!["eval", "--data-dir", path_str(&data)];
        full.extend(args);
        let output = output_within(recur().args(&full), COMMAND_DEADLINE, &full);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{full:?}: {stderr}");
    }
}

#[test]
fn a_days_holdout_scores_the_same_run_after_run() {
    // The blend samples customers and negatives and the generators run in parallel: a fixed
    // seed and fixed orders must still give the same scores every time.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = ingest_generated(dir.path());
    let args = [
        "eval",
        "--data-dir",
        path_str(&data),
        "--holdout",
        "days:30",
        "--json",
    ];
    let without_timings = |mut v: Value| {
        for merchant in v["merchants"].as_array_mut().expect("merchants") {
            assert_eq!(merchant["holdout"], "days:30");
            for model in merchant["models"].as_array_mut().expect("models") {
                model["seconds"] = Value::Null;
            }
        }
        v
    };
    let first = without_timings(run_json(&args));
    let second = without_timings(run_json(&args));
    assert_eq!(first, second);
}
