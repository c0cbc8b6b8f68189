//! Per-customer repeat-purchase summaries from transactions, as Polars lazy expressions,
//! following the conventions of lifetimes' `summary_data_from_transaction_data`:
//! transactions are bucketed into periods (days, or Monday-based weeks) and purchases in one
//! period are merged; `frequency` counts repeat periods, `recency` is the age at the last
//! purchase period and `T` the age at the end of calibration, both in periods from the first
//! purchase; `monetary_value` is the mean value of the repeat periods (0 without repeats).
//! With an observation end after the calibration end, `frequency_holdout` counts purchase
//! periods after calibration and `duration_holdout` is the holdout length.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::error::{Error, Result};

/// The period transactions are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    Day,
    #[default]
    Week,
}

impl TimeUnit {
    /// Period index of a day number (days since 1970-01-01, a Thursday). Weeks start on
    /// Monday, as pandas' weekly periods do.
    pub(crate) fn period(self, day: Expr) -> Expr {
        match self {
            Self::Day => day,
            Self::Week => (day + lit(3i64)).floor_div(lit(7i64)),
        }
    }

    pub(crate) fn period_of(self, date: NaiveDate) -> i64 {
        let day = i64::from(
            (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32,
        );
        match self {
            Self::Day => day,
            Self::Week => (day + 3).div_euclid(7),
        }
    }
}

/// Column names of the summary table.
pub const CUSTOMER: &str = "customer_id";
pub const FREQUENCY: &str = "frequency";
pub const RECENCY: &str = "recency";
pub const AGE: &str = "T";
pub const MONETARY: &str = "monetary_value";
pub const FREQUENCY_HOLDOUT: &str = "frequency_holdout";
pub const DURATION_HOLDOUT: &str = "duration_holdout";

/// How to summarize.
#[derive(Debug, Clone, Copy)]
pub struct SummaryOptions {
    pub calibration_end: NaiveDate,
    /// End of the holdout period; `None` for no holdout.
    pub observation_end: Option<NaiveDate>,
    pub unit: TimeUnit,
}

/// Summarizes `transactions`, which has a customer column (any type, cast to text), a `day`
/// column (Int64 days since 1970-01-01) and optionally an `amount` column (Float64).
pub fn summarize(
    transactions: LazyFrame,
    customer: &str,
    has_amount: bool,
    options: SummaryOptions,
) -> Result<LazyFrame> {
    let unit = options.unit;
    let cal_end = unit.period_of(options.calibration_end);
    let obs_end = options
        .observation_end
        .map_or(cal_end, |d| unit.period_of(d));
    if obs_end < cal_end {
        return Err(Error::InvalidArgument(
            "the observation end is before the calibration end".to_owned(),
        ));
    }
    let amount = if has_amount {
        col("amount").cast(DataType::Float64)
    } else {
        lit(0.0)
    };
    // Customer ids keep their type until the end: casting millions of integer ids to text
    // before grouping costs more than the grouping.
    let periods = transactions
        .select([
            col(customer).alias(CUSTOMER),
            unit.period(col("day").cast(DataType::Int64))
                .alias("period"),
            amount.alias("amount"),
        ])
        .filter(col("period").lt_eq(lit(obs_end)))
        // Stable: each customer's period sums then reach the next aggregation in input order,
        // so the floating-point totals (and everything fitted on them) repeat exactly.
        .group_by_stable([col(CUSTOMER), col("period")])
        .agg([col("amount").sum()]);
    // Calibration values as masked plain columns, then plain aggregations (no sort, no
    // filters inside `agg`).
    let in_calibration = col("period").lt_eq(lit(cal_end));
    let summary = periods
        .with_columns([
            when(in_calibration.clone())
                .then(col("period"))
                .otherwise(lit(NULL).cast(DataType::Int64))
                .alias("cal_period"),
            when(in_calibration.clone())
                .then(col("amount"))
                .otherwise(lit(0.0))
                .alias("cal_amount"),
            in_calibration
                .not()
                .cast(DataType::UInt32)
                .alias("in_holdout"),
        ])
        .group_by([col(CUSTOMER)])
        .agg([
            col("cal_period").min().alias("first"),
            col("cal_period").max().alias("last"),
            col("cal_period").count().alias("periods"),
            col("cal_amount").sum().alias("total"),
            col("amount")
                .get(col("cal_period").arg_min(), true)
                .alias("first_amount"),
            col("in_holdout").sum().alias("holdout_periods"),
        ])
        // Customers whose first purchase falls after calibration are not part of the cohort.
        .filter(col("first").is_not_null())
        // In the ids' own order (numeric ids numerically), before they become text.
        .sort([CUSTOMER], SortMultipleOptions::default())
        .select([
            col(CUSTOMER).cast(DataType::String),
            (col("periods").cast(DataType::Float64) - lit(1.0)).alias(FREQUENCY),
            (col("last") - col("first"))
                .cast(DataType::Float64)
                .alias(RECENCY),
            (lit(cal_end) - col("first"))
                .cast(DataType::Float64)
                .alias(AGE),
            when(col("periods").gt(lit(1)))
                .then(
                    (col("total") - col("first_amount"))
                        / (col("periods").cast(DataType::Float64) - lit(1.0)),
                )
                .otherwise(lit(0.0))
                .alias(MONETARY),
            col("holdout_periods")
                .cast(DataType::Float64)
                .alias(FREQUENCY_HOLDOUT),
            lit((obs_end - cal_end) as f64).alias(DURATION_HOLDOUT),
        ]);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> i64 {
        (NaiveDate::from_ymd_opt(y, m, d).expect("date")
            - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
        .num_days()
    }

    fn column(frame: &DataFrame, name: &str) -> Vec<f64> {
        frame
            .column(name)
            .expect("column")
            .f64()
            .expect("f64")
            .iter()
            .map(|v| v.expect("value"))
            .collect()
    }

    /// Worked by hand: calibration ends Sunday 2026-03-29 (daily periods), holdout to 04-12.
    /// a: buys 03-02 (10), 03-02 again (5, same day → merged 15), 03-09 (20), 03-20 (40),
    ///    holdout 04-05 (7): frequency 2, recency 18, T 27, monetary (20+40)/2 = 30, holdout 1.
    /// b: one purchase 03-29: frequency 0, recency 0, T 0... T is 0 on the last day, kept.
    /// c: first purchase in the holdout only: not in the calibration cohort.
    #[test]
    fn daily_summary_matches_hand_computation() {
        let frame = df!(
            "customer" => ["a", "a", "a", "a", "a", "b", "c"],
            "day" => [day(2026, 3, 2), day(2026, 3, 2), day(2026, 3, 9), day(2026, 3, 20), day(2026, 4, 5), day(2026, 3, 29), day(2026, 4, 1)],
            "amount" => [10.0, 5.0, 20.0, 40.0, 7.0, 12.0, 3.0],
        )
        .expect("frame");
        let options = SummaryOptions {
            calibration_end: NaiveDate::from_ymd_opt(2026, 3, 29).expect("date"),
            observation_end: NaiveDate::from_ymd_opt(2026, 4, 12),
            unit: TimeUnit::Day,
        };
        let summary = summarize(frame.lazy(), "customer", true, options)
            .expect("plan")
            .collect()
            .expect("summary");
        let ids: Vec<&str> = summary
            .column(CUSTOMER)
            .expect("id")
            .str()
            .expect("str")
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
        assert_eq!(column(&summary, FREQUENCY), vec![2.0, 0.0]);
        assert_eq!(column(&summary, RECENCY), vec![18.0, 0.0]);
        assert_eq!(column(&summary, AGE), vec![27.0, 0.0]);
        assert_eq!(column(&summary, MONETARY), vec![30.0, 0.0]);
        assert_eq!(column(&summary, FREQUENCY_HOLDOUT), vec![1.0, 0.0]);
        assert_eq!(column(&summary, DURATION_HOLDOUT), vec![14.0, 14.0]);
    }

    /// Weekly periods start on Monday: Sunday 03-08 and Monday 03-02 are one period, Monday
    /// 03-09 the next; calibration ending Wednesday 03-25 is in the week of 03-23.
    #[test]
    fn weekly_summary_merges_purchases_in_one_week() {
        let frame = df!(
            "customer" => ["a", "a", "a"],
            "day" => [day(2026, 3, 2), day(2026, 3, 8), day(2026, 3, 9)],
        )
        .expect("frame");
        let options = SummaryOptions {
            calibration_end: NaiveDate::from_ymd_opt(2026, 3, 25).expect("date"),
            observation_end: None,
            unit: TimeUnit::Week,
        };
        let summary = summarize(frame.lazy(), "customer", false, options)
            .expect("plan")
            .collect()
            .expect("summary");
        assert_eq!(column(&summary, FREQUENCY), vec![1.0]);
        assert_eq!(column(&summary, RECENCY), vec![1.0]);
        assert_eq!(column(&summary, AGE), vec![3.0]);
    }
}
