//! End to end: `recur clv fit|predict` — published CDNOW estimates through the CLI, a
//! hand-computed transaction summary, and BG/NBD recovering the parameters that generated
//! `recur generate`'s customers.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("engine/tests/fixtures")
        .join(name)
}

fn assert_within(name: &str, got: &Value, published: f64, relative: f64) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{name} is a number"));
    assert!(
        ((got - published) / published).abs() < relative,
        "{name}: got {got}, expected {published}"
    );
}

#[test]
fn fit_reports_the_published_cdnow_estimates() {
    let fit = run_json(&[
        "clv",
        "fit",
        "--summary",
        path_str(&fixture("cdnow_customers_summary.csv")),
    ]);
    assert_eq!(fit["customers"], 2357);
    for (key, published) in [
        ("r", 0.243),
        ("alpha", 4.414),
        ("a", 0.793),
        ("b", 2.426),
        ("log_likelihood", -9582.4),
    ] {
        assert_within(key, &fit["bgnbd"][key], published, 0.01);
    }
    for (key, published) in [
        ("r", 0.553),
        ("alpha", 10.578),
        ("s", 0.606),
        ("beta", 11.669),
        ("log_likelihood", -9595.0),
    ] {
        assert_within(key, &fit["pareto_nbd"][key], published, 0.01);
    }
    assert!(fit.get("gamma_gamma").is_none(), "no spend, no Gamma-Gamma");
}

/// Hand-computed, weekly periods (Monday-based), calibration ends Sunday 1997-03-30:
/// c1 buys Thu 01-02 ($10), Sat 01-04 ($5: same week, merged to $15), Mon 01-13 ($20),
/// Tue 03-04 ($40): frequency 2, recency 9 weeks (week of 12-30 → week of 03-03), T 12,
/// monetary (20 + 40) / 2 = 30. c2 buys once on 03-25: frequency 0, recency 0, T 0.
#[test]
fn transactions_are_summarized_by_lifetimes_conventions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("tx.csv");
    std::fs::write(
        &csv,
        "customer,date,amount\nc1,19970102,10\nc1,19970104,5\nc1,19970113,20\nc1,19970304,40\nc2,19970325,12\nc3,19970402,9\n",
    )
    .expect("write");
    let output = run_ok(&[
        "clv",
        "predict",
        "--transactions",
        path_str(&csv),
        "--customer-col",
        "customer",
        "--date-col",
        "date",
        "--date-format",
        "%Y%m%d",
        "--amount-col",
        "amount",
        "--calibration-end",
        "1997-03-30",
        "--penalizer",
        "0.1",
    ]);
    let rows: Vec<Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSONL"))
        .collect();
    let summary: Vec<(String, f64, f64, f64, f64)> = rows
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_f64().expect("number");
            (
                r["customer_id"].as_str().expect("id").to_owned(),
                f("frequency"),
                f("recency"),
                f("T"),
                f("monetary_value"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("c1".to_owned(), 2.0, 9.0, 12.0, 30.0),
            ("c2".to_owned(), 0.0, 0.0, 0.0, 0.0)
        ],
        "c3 first bought after calibration and is not in the cohort"
    );
}

#[test]
fn a_bad_date_format_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("tx.csv");
    std::fs::write(&csv, "customer,date\nc1,1997-01-02\n").expect("write");
    let output = recur()
        .args([
            "clv",
            "fit",
            "--transactions",
            path_str(&csv),
            "--customer-col",
            "customer",
            "--date-col",
            "date",
        ])
        .args(["--date-format", "%Y%m%d", "--calibration-end", "1997-03-30"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--date-format"), "{stderr}");
}

/// The generator draws each buyer's λ ~ Gamma(r, α) and p ~ Beta(a, b) (laundry: r 0.7,
/// α 20 days, a 0.7, b 5; weekday thinning makes the realised α 20 / mean weekday weight).
/// A daily BG/NBD fit on its purchases must recover them. Tolerance: three standard errors
/// of the fit (sampling error, ~99.7% per parameter if the model holds) plus 5% of the value
/// for the generator's known departures from the model: two orders on one day merge into one
/// period, and the first purchase is not thinned by weekday.
#[test]
fn bg_nbd_recovers_the_parameters_that_generated_the_customers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events.ndjson");
    run_ok(&[
        "generate",
        "--out",
        path_str(&events),
        "--merchants",
        "3",
        "--users",
        "15000",
        "--days",
        "365",
        "--seed",
        "9",
    ]);
    let truth_text = std::fs::read_to_string(dir.path().join("events.truth.jsonl")).expect("truth");
    let truth: Value =
        serde_json::from_str(truth_text.lines().next().expect("summary")).expect("JSON");
    let merchant = &truth["merchants"][2];
    assert_eq!(merchant["merchant_id"], "m_laundry");
    let end = truth["end"].as_str().expect("end date").to_owned();

    let mut csv_text = String::from("customer,date\n");
    let mut seen = std::collections::HashSet::new();
    for line in std::fs::read_to_string(&events).expect("events").lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let is_laundry_purchase =
            event["type"] == "purchase" && event["merchant_id"] == "m_laundry";
        if !is_laundry_purchase || event["price"].as_f64().is_none_or(|p| p < 0.0) {
            continue;
        }
        if !seen.insert(event["event_id"].as_str().unwrap_or_default().to_owned()) {
            continue; // a resent duplicate
        }
        // The generator writes local (+08:00) RFC 3339 or epoch milliseconds; days are local.
        let date = match &event["ts"] {
            Value::String(text) => match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(t) => t.date_naive().format("%Y-%m-%d").to_string(),
                Err(_) => continue,
            },
            Value::Number(ms) => {
                chrono::DateTime::from_timestamp_millis(ms.as_i64().expect("ms") + 8 * 3_600_000)
                    .expect("a valid time")
                    .format("%Y-%m-%d")
                    .to_string()
            }
            _ => continue,
        };
        let Some(user) = event["user_id"].as_str() else {
            continue;
        };
        // A second account of the same person (same unionid) is the same customer here.
        csv_text.push_str(&format!("{},{date}\n", user.trim_end_matches('b')));
    }
    let csv = dir.path().join("purchases.csv");
    std::fs::write(&csv, csv_text).expect("write");

    let fit = run_json(&[
        "clv",
        "fit",
        "--transactions",
        path_str(&csv),
        "--customer-col",
        "customer",
        "--date-col",
        "date",
        "--calibration-end",
        &end,
        "--time-unit",
        "day",
        "--no-pareto",
    ]);
    let bgnbd = &fit["bgnbd"];
    let se: Vec<f64> = bgnbd["std_errors"]
        .as_array()
        .expect("standard errors")
        .iter()
        .map(|v| v.as_f64().expect("n"))
        .collect();
    let expected = [
        ("r", merchant["r"].as_f64().expect("r")),
        (
            "alpha",
            merchant["alpha_days_effective"].as_f64().expect("alpha"),
        ),
        ("a", merchant["a"].as_f64().expect("a")),
        ("b", merchant["b"].as_f64().expect("b")),
    ];
    for ((name, generated), se) in expected.iter().zip(se) {
        let got = bgnbd[*name].as_f64().expect("estimate");
        let tolerance = 3.0 * se + 0.05 * generated;
        assert!(
            (got - generated).abs() <= tolerance,
            "{name}: fitted {got}, generated {generated}, tolerance {tolerance} ({fit})"
        );
    }
}

/// The model check on CDNOW's 2,357-customer sample (Fader, Hardie and Lee 2005): daily
/// periods reproduce the paper's calibration counts (1,411 customers without a repeat
/// purchase, 2,457 repeat transactions in the 39 calibration weeks), the fit tracks the
/// calibration period, and the 39-week holdout forecast stays within 5% of what happened.
#[test]
fn the_model_check_tracks_cdnow_through_calibration_and_holdout() {
    let transactions = fixture("cdnow_sample_transactions.csv");
    let report = run_json(&[
        "clv",
        "check",
        "--transactions",
        path_str(&transactions),
        "--customer-col",
        "customer_id",
        "--date-col",
        "date",
        "--date-format",
        "%Y%m%d",
        "--calibration-end",
        "1997-09-30",
        "--observation-end",
        "1998-06-30",
        "--time-unit",
        "day",
        "--no-pareto",
        "--format",
        "json",
    ]);
    assert_eq!(report["customers"], 2357);
    let zero = &report["frequency_buckets"][0];
    assert_eq!(zero["frequency"], "0");
    assert_eq!(zero["customers"], 1411);
    // Customers without a calibration repeat: 334 holdout repeats among 1,411.
    assert!(
        (zero["actual"].as_f64().expect("actual") - 334.0 / 1411.0).abs() < 1e-9,
        "{zero}"
    );
    assert!(
        (zero["bgnbd"].as_f64().expect("bgnbd") - zero["actual"].as_f64().expect("actual")).abs()
            < 0.03
    );
    let tracking = report["tracking"].as_array().expect("tracking");
    let calibration_end = tracking
        .iter()
        .rev()
        .find(|r| r["holdout"] == false)
        .expect("calibration");
    assert_eq!(calibration_end["period_start"], "1997-09-30");
    assert_eq!(calibration_end["actual_cumulative"], 2457.0);
    let relative = |row: &Value| {
        let actual = row["actual_cumulative"].as_f64().expect("actual");
        (row["bgnbd_cumulative"].as_f64().expect("expected") - actual).abs() / actual
    };
    assert!(relative(calibration_end) < 0.02, "{calibration_end}");
    let end = tracking.last().expect("rows");
    assert_eq!(end["period_start"], "1998-06-30");
    assert!(relative(end) < 0.05, "{end}");
}

/// Integer dates (CDNOW's 19970101 form) take the arithmetic path; an impossible one is
/// refused with its row, not turned into some other day.
#[test]
fn an_impossible_integer_date_is_refused_with_its_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("tx.csv");
    std::fs::write(&csv, "customer,date\nc1,19970102\nc1,19970229\n").expect("write");
    let output = recur()
        .args([
            "clv",
            "fit",
            "--transactions",
            path_str(&csv),
            "--customer-col",
            "customer",
        ])
        .args([
            "--date-col",
            "date",
            "--date-format",
            "%Y%m%d",
            "--calibration-end",
            "1997-03-30",
        ])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("row 3: date is not a date in %Y%m%d"),
        "{stderr}"
    );
}
