//! `recur eval`: the next-basket protocol from the command line, its JSON contract, and that
//! orders after the held-out cut never change a score.

mod common;

use common::*;
use serde_json::Value;

const MODELS: [&str; 10] = [
    "popularity",
    "p_topfreq",
    "tifu_knn",
    "repeat_timing",
    "co_purchase",
    "bought_after",
    "viewed_then_bought",
    "als",
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

/// The models of one merchant's evaluation, in table order.
fn model_names(merchant: &Value) -> Vec<&str> {
    merchant["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["model"].as_str().expect("name"))
        .collect()
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
        assert_eq!(model_names(merchant), MODELS);
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
        (
            vec!["--models", "als,alss"],
            "unknown model \"alss\" in --models; the models are popularity",
        ),
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
fn chosen_models_and_the_training_matrix_for_other_libraries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = ingest_generated(dir.path());
    let matrix = dir.path().join("matrix");
    let report = run_json(&[
        "eval",
        "--data-dir",
        path_str(&data),
        "--merchant",
        "m_bakery",
        "--models",
        "als,popularity",
        "--write-matrix",
        path_str(&matrix),
        "--json",
    ]);
    let merchant = &report["merchants"][0];
    assert_eq!(
        model_names(merchant),
        ["popularity", "als"],
        "table order, only those asked"
    );
    assert!(merchant["models"][1]["recall"].as_f64().expect("recall") > 0.0);

    // Matrix Market: header, "rows columns entries", then 1-based entries with confidences ≥ 1.
    let text = std::fs::read_to_string(matrix.join("m_bakery.mtx")).expect("matrix");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("%%MatrixMarket matrix coordinate real general")
    );
    let size: Vec<usize> = lines
        .next()
        .expect("size line")
        .split(' ')
        .map(|n| n.parse().expect("number"))
        .collect();
    let entries: Vec<(usize, usize, f64)> = lines
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            (
                f[0].parse().expect("row"),
                f[1].parse().expect("column"),
                f[2].parse().expect("value"),
            )
        })
        .collect();
    assert_eq!(entries.len(), size[2]);
    assert!(
        entries
            .iter()
            .all(|(r, c, v)| (1..=size[0]).contains(r) && (1..=size[1]).contains(c) && *v >= 1.0)
    );
    // One case per customer predicted, each pointing at a matrix row.
    let cases = std::fs::read_to_string(matrix.join("m_bakery.cases.jsonl")).expect("cases");
    let cases: Vec<Value> = cases
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        cases.len() as u64,
        merchant["customers"].as_u64().expect("n")
    );
    assert!(cases.iter().all(|c| {
        (c["user"].as_u64().expect("user") as usize) < size[0]
            && !c["target"].as_array().expect("target").is_empty()
    }));
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
