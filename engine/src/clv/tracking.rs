//! Model check: calibration vs holdout, as the BTYD papers show it.
//!
//! Fit on the calibration period; then (1) per frequency bucket, the mean repeat purchases
//! each model expects in the holdout (conditional on the customer's calibration history)
//! against the mean observed, and (2) the tracking plot as a table: cumulative repeat
//! purchases of the calibration cohort per period, observed and expected (each customer's
//! unconditional E[X(age)], summed). Fader, Hardie and Lee (2005), figures 2–4.

use polars::prelude::*;
use serde::Serialize;

use super::bgnbd::BgNbdParams;
use super::io::floats;
use super::pareto::ParetoNbdParams;
use super::summary::{
    AGE, CUSTOMER, DURATION_HOLDOUT, FREQUENCY, FREQUENCY_HOLDOUT, RECENCY, SummaryOptions,
};
use crate::error::{Error, Result};

/// One frequency bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketRow {
    /// `0`, `1`, …, or `7+` for the last bucket.
    pub frequency: String,
    pub customers: u64,
    pub actual: f64,
    pub bgnbd: f64,
    pub pareto_nbd: Option<f64>,
}

/// One period of the tracking plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackingRow {
    /// Period index in the summary's unit (days or Monday-based weeks since 1970-01-01).
    pub period: i64,
    pub holdout: bool,
    pub actual_cumulative: f64,
    pub bgnbd_cumulative: f64,
    pub pareto_nbd_cumulative: Option<f64>,
}

/// Per-bucket conditional expectations against the holdout. `summary` comes from
/// [`super::summary::summarize`] with an observation end.
pub fn frequency_buckets(
    summary: &DataFrame,
    bgnbd: &BgNbdParams,
    pareto: Option<&ParetoNbdParams>,
    max_frequency: u32,
) -> Result<Vec<BucketRow>> {
    let read = |name: &str| floats(summary, name);
    let (x, tx, t) = (read(FREQUENCY)?, read(RECENCY)?, read(AGE)?);
    let holdout = read(DURATION_HOLDOUT)?;
    // Model math per customer (closed forms); the grouping is Polars.
    let expected_bg: Vec<f64> = (0..x.len())
        .map(|i| bgnbd.conditional_expected_purchases(holdout[i], x[i], tx[i], t[i]))
        .collect();
    let expected_pareto: Vec<f64> = (0..x.len())
        .map(|i| {
            pareto.map_or(f64::NAN, |p| {
                p.conditional_expected_purchases(holdout[i], x[i], tx[i], t[i])
            })
        })
        .collect();
    let cap = f64::from(max_frequency);
    let frame = df!(
        "bucket" => x.iter().map(|v| v.min(cap)).collect::<Vec<_>>(),
        "actual" => read(FREQUENCY_HOLDOUT)?,
        "bgnbd" => expected_bg,
        "pareto" => expected_pareto,
    )
    .map_err(Error::polars("tabulating buckets"))?
    .lazy()
    .group_by([col("bucket")])
    .agg([
        len().cast(DataType::UInt64).alias("customers"),
        col("actual").mean(),
        col("bgnbd").mean(),
        col("pareto").mean(),
    ])
    .sort(["bucket"], SortMultipleOptions::default())
    .collect()
    .map_err(Error::polars("grouping frequency buckets"))?;
    let get = |name: &str| floats(&frame, name);
    let (buckets, customers) = (get("bucket")?, get("customers")?);
    let (actual, bg, pa) = (get("actual")?, get("bgnbd")?, get("pareto")?);
    Ok((0..buckets.len())
        .map(|i| BucketRow {
            frequency: if buckets[i] >= cap {
                format!("{max_frequency}+")
            } else {
                format!("{}", buckets[i] as u32)
            },
            customers: customers[i] as u64,
            actual: actual[i],
            bgnbd: bg[i],
            pareto_nbd: pareto.map(|_| pa[i]),
        })
        .collect())
}

/// The tracking table from the first purchase period to the end of the holdout.
/// `transactions` has `customer` (as named), `day` (Int64 days since 1970-01-01).
pub fn tracking(
    transactions: LazyFrame,
    customer: &str,
    options: SummaryOptions,
    bgnbd: &BgNbdParams,
    pareto: Option<&ParetoNbdParams>,
) -> Result<Vec<TrackingRow>> {
    let unit = options.unit;
    let cal_end = unit.period_of(options.calibration_end);
    let obs_end = options
        .observation_end
        .map_or(cal_end, |d| unit.period_of(d));
    let periods = transactions
        .select([
            col(customer).cast(DataType::String).alias(CUSTOMER),
            unit.period(col("day")).alias("period"),
        ])
        .filter(col("period").lt_eq(lit(obs_end)))
        .unique(None, UniqueKeepStrategy::Any)
        .with_column(
            col("period")
                .min()
                .over([col(CUSTOMER)])
                .map_err(Error::polars("finding births"))?
                .alias("birth"),
        )
        // The calibration cohort: customers whose first purchase is in calibration.
        .filter(col("birth").lt_eq(lit(cal_end)));
    let births = periods
        .clone()
        .group_by([col(CUSTOMER)])
        .agg([col("birth").first()])
        .group_by([col("birth")])
        .agg([len().cast(DataType::Float64).alias("customers")])
        .sort(["birth"], SortMultipleOptions::default())
        .collect()
        .map_err(Error::polars("counting births"))?;
    let repeats = periods
        .filter(col("period").gt(col("birth")))
        .group_by([col("period")])
        .agg([len().cast(DataType::Float64).alias("repeats")])
        .sort(["period"], SortMultipleOptions::default())
        .collect()
        .map_err(Error::polars("counting repeat purchases"))?;
    let ints = |frame: &DataFrame, name: &str| -> Result<Vec<i64>> {
        Ok(frame
            .column(name)
            .map_err(Error::polars(name.to_owned()))?
            .i64()
            .map_err(Error::polars(name.to_owned()))?
            .into_no_null_iter()
            .collect())
    };
    let (birth, born) = (ints(&births, "birth")?, floats(&births, "customers")?);
    let (repeat_period, repeat_count) = (ints(&repeats, "period")?, floats(&repeats, "repeats")?);
    let Some(&first) = birth.first() else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    let mut actual = 0.0;
    let mut next_repeat = 0;
    for period in first..=obs_end {
        while next_repeat < repeat_period.len() && repeat_period[next_repeat] <= period {
            actual += repeat_count[next_repeat];
            next_repeat += 1;
        }
        // Expected repeats by the end of `period` for customers born at b: E[X(period − b)].
        let expected = |e: &dyn Fn(f64) -> f64| -> f64 {
            birth
                .iter()
                .zip(&born)
                .filter(|(b, _)| **b <= period)
                .map(|(b, n)| n * e((period - b) as f64))
                .sum()
        };
        rows.push(TrackingRow {
            period,
            holdout: period > cal_end,
            actual_cumulative: actual,
            bgnbd_cumulative: expected(&|age| bgnbd.expected_purchases(age)),
            pareto_nbd_cumulative: pareto.map(|p| expected(&|age| p.expected_purchases(age))),
        });
    }
    Ok(rows)
}
