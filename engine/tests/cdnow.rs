//! The repeat-purchase models against the published CDNOW estimates (2,357 customers,
//! 39-week calibration). Each estimate must match within 1%.
//!
//! BG/NBD: Fader, Hardie and Lee (2005), Marketing Science. Pareto/NBD: the same paper's
//! comparison (and Fader and Hardie's note). Gamma-Gamma: Fader, Hardie and Lee (2005), JMR.

use std::path::PathBuf;

use polars::prelude::*;
use recur_engine::clv::io::read_summary_csv;
use recur_engine::clv::{GroupedSpend, GroupedSummary, bgnbd, gamma_gamma, pareto};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn within_one_percent(name: &str, got: f64, published: f64) {
    let error = (got - published).abs() / published.abs();
    assert!(
        error < 0.01,
        "{name}: got {got}, published {published} ({:.2}% off)",
        error * 100.0
    );
}

fn cdnow() -> GroupedSummary {
    let columns = read_summary_csv(&fixture("cdnow_customers_summary.csv")).expect("fixture reads");
    assert_eq!(columns.frequency.len(), 2357);
    GroupedSummary::from_columns(&columns.frequency, &columns.recency, &columns.age)
        .expect("valid summary")
}

#[test]
fn bg_nbd_matches_the_published_cdnow_estimates() {
    let fit = bgnbd::fit(&cdnow(), 0.0).expect("converges");
    within_one_percent("r", fit.params.r, 0.243);
    within_one_percent("alpha", fit.params.alpha, 4.414);
    within_one_percent("a", fit.params.a, 0.793);
    within_one_percent("b", fit.params.b, 2.426);
    within_one_percent("log-likelihood", fit.log_likelihood, -9582.4);
    let se = fit
        .std_errors
        .expect("standard errors at an interior optimum");
    assert!(se.iter().all(|s| s.is_finite() && *s > 0.0), "{se:?}");
}

#[test]
fn pareto_nbd_matches_the_published_cdnow_estimates() {
    let fit = pareto::fit(&cdnow(), 0.0).expect("converges");
    within_one_percent("r", fit.params.r, 0.553);
    within_one_percent("alpha", fit.params.alpha, 10.578);
    within_one_percent("s", fit.params.s, 0.606);
    within_one_percent("beta", fit.params.beta, 11.669);
    within_one_percent("log-likelihood", fit.log_likelihood, -9595.0);
}

#[test]
fn gamma_gamma_matches_the_published_cdnow_estimates() {
    let path = fixture("cdnow_customers_summary_with_transactions.csv");
    let frame = LazyCsvReader::new(PlRefPath::new(path.to_string_lossy().as_ref()))
        .with_has_header(true)
        .finish()
        .and_then(LazyFrame::collect)
        .expect("fixture reads");
    let column = |name: &str| -> Vec<f64> {
        let c = frame
            .column(name)
            .expect("column")
            .cast(&DataType::Float64)
            .expect("numeric");
        c.f64()
            .expect("f64")
            .iter()
            .map(|v| v.expect("value"))
            .collect()
    };
    let spend = GroupedSpend::from_columns(&column("x"), &column("zbar")).expect("valid");
    assert_eq!(spend.customers, 946);
    let fit = gamma_gamma::fit(&spend, 0.0).expect("converges");
    within_one_percent("p", fit.params.p, 6.25);
    within_one_percent("q", fit.params.q, 3.74);
    within_one_percent("gamma", fit.params.v, 15.44);
}
