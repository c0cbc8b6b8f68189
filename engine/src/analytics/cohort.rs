//! Cohort retention and repeat-purchase rates.
//!
//! Retention: customers are grouped by the period of their cohort activity (first purchase
//! by default) and followed through later periods: `retained` at offset k counts cohort
//! members with the return activity in period cohort + k. In *first-time* mode each
//! customer joins one cohort, at their first cohort activity; in *recurring* mode they join a
//! cohort in every period they perform it (as in Mixpanel's recurring retention), so a
//! regular shows up in many cohorts. Offsets run up to the current period, which may be
//! incomplete.
//!
//! Repeat-purchase rate: per cohort of first order, the share of buyers with two or more
//! orders, and with a second order within 30, 60 and 90 days of the first. A window rate is
//! taken over the buyers whose window has fully passed (`matured_*`), so young cohorts are
//! not shown as worse than they are.

use std::fmt;
use std::str::FromStr;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::activity::{AT_MS, Activity, ActivitySources, LOCAL_DAY, PERIOD};
use super::period::{DAY_MS, Period, period_of_day};
use crate::error::{Error, Result};
use crate::store::USER_ID;

pub const COHORT: &str = "cohort";
pub const OFFSET: &str = "offset";
pub const COHORT_SIZE: &str = "cohort_size";
pub const RETAINED: &str = "retained";
pub const RATE: &str = "rate";
/// The windows (days after the first order) repeat rates are reported for.
pub const REPEAT_WINDOWS: [i64; 3] = [30, 60, 90];

/// How customers join cohorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetentionMode {
    #[default]
    FirstTime,
    Recurring,
}

impl RetentionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstTime => "first_time",
            Self::Recurring => "recurring",
        }
    }
}

impl fmt::Display for RetentionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RetentionMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "first_time" | "first-time" => Ok(Self::FirstTime),
            "recurring" => Ok(Self::Recurring),
            _ => Err(Error::InvalidArgument(format!(
                "unknown retention mode {text:?}: use first_time or recurring"
            ))),
        }
    }
}

/// What a retention report follows.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSpec {
    pub period: Period,
    pub mode: RetentionMode,
    /// The activity that puts a customer in a cohort.
    pub cohort_activity: Activity,
    /// The activity that counts as coming back.
    pub return_activity: Activity,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        Self {
            period: Period::Week,
            mode: RetentionMode::FirstTime,
            cohort_activity: Activity::Purchase,
            return_activity: Activity::Purchase,
        }
    }
}

/// Retention, long form: `cohort` (period index), `offset`, `cohort_size`, `retained`,
/// `rate`, for every cohort and every offset from 0 to `current − cohort`. `active` gives
/// the distinct (user_id, period) pairs of an activity (see
/// [`ActivitySources::active_periods`]).
pub fn retention(
    active: &dyn Fn(Activity) -> PolarsResult<LazyFrame>,
    spec: &RetentionSpec,
    current: i32,
) -> PolarsResult<DataFrame> {
    let cohort_periods = active(spec.cohort_activity)?.filter(col(PERIOD).lt_eq(lit(current)));
    let members = match spec.mode {
        RetentionMode::FirstTime => cohort_periods
            .group_by([col(USER_ID)])
            .agg([col(PERIOD).min().alias(COHORT)]),
        RetentionMode::Recurring => {
            cohort_periods.select([col(USER_ID), col(PERIOD).alias(COHORT)])
        }
    };
    let returns = active(spec.return_activity)?.filter(col(PERIOD).lt_eq(lit(current)));
    let sizes = members
        .clone()
        .group_by([col(COHORT)])
        .agg([len().cast(DataType::UInt32).alias(COHORT_SIZE)]);
    let retained = members
        .join(
            returns,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col(PERIOD).gt_eq(col(COHORT)))
        .group_by([col(COHORT), (col(PERIOD) - col(COHORT)).alias(OFFSET)])
        .agg([len().cast(DataType::UInt32).alias(RETAINED)]);
    let sizes = sizes.collect()?;
    let span = sizes
        .column(COHORT)?
        .i32()?
        .min()
        .map_or(0, |first| current - first);
    let offsets: Vec<i32> = (0..=span.max(0)).collect();
    sizes
        .lazy()
        .cross_join(df!(OFFSET => offsets)?.lazy(), None)
        .filter((col(COHORT) + col(OFFSET)).lt_eq(lit(current)))
        .join(
            retained,
            [col(COHORT), col(OFFSET)],
            [col(COHORT), col(OFFSET)],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col(RETAINED).fill_null(lit(0u32)))
        .with_column(
            (col(RETAINED).cast(DataType::Float64) / col(COHORT_SIZE).cast(DataType::Float64))
                .alias(RATE),
        )
        .select([
            col(COHORT),
            col(OFFSET),
            col(COHORT_SIZE),
            col(RETAINED),
            col(RATE),
        ])
        .sort([COHORT, OFFSET], SortMultipleOptions::default())
        .collect()
}

/// Repeat-purchase rates per cohort of first order, plus an `all` row (cohort null) first.
/// Columns: `cohort`, `buyers`, `repeat_buyers`, `repeat_rate`, and for each window W in
/// [`REPEAT_WINDOWS`]: `matured_W`, `repeat_W`, `repeat_rate_W`.
pub fn repeat_rates(
    sources: &ActivitySources,
    period: Period,
    as_of_ms: i64,
) -> PolarsResult<DataFrame> {
    let firsts = sources
        .occurrences(Activity::Purchase)
        .filter(col(AT_MS).lt_eq(lit(as_of_ms)))
        .sort([USER_ID, AT_MS], SortMultipleOptions::default())
        .group_by([col(USER_ID)])
        .agg([
            col(AT_MS).first().alias("first_ms"),
            col(LOCAL_DAY).first().alias("first_day"),
            col(AT_MS)
                .slice(lit(1i64), lit(1u32))
                .first()
                .alias("second_ms"),
            len().cast(DataType::UInt32).alias("orders"),
        ])
        .with_column(period_of_day(col("first_day"), period).alias(COHORT));
    let mut aggregates = vec![
        len().cast(DataType::UInt32).alias("buyers"),
        col("orders")
            .gt_eq(lit(2u32))
            .sum()
            .cast(DataType::UInt32)
            .alias("repeat_buyers"),
    ];
    for window in REPEAT_WINDOWS {
        let matured = (lit(as_of_ms) - col("first_ms")).gt_eq(lit(window * DAY_MS));
        let repeated = (col("second_ms") - col("first_ms"))
            .lt_eq(lit(window * DAY_MS))
            .fill_null(lit(false));
        aggregates.push(
            matured
                .clone()
                .sum()
                .cast(DataType::UInt32)
                .alias(format!("matured_{window}")),
        );
        aggregates.push(
            matured
                .and(repeated)
                .sum()
                .cast(DataType::UInt32)
                .alias(format!("repeat_{window}")),
        );
    }
    let per_cohort = firsts
        .clone()
        .group_by([col(COHORT)])
        .agg(aggregates.clone())
        .sort([COHORT], SortMultipleOptions::default());
    let overall = firsts.select(aggregates).select([
        lit(NULL).cast(DataType::Int32).alias(COHORT),
        all().as_expr(),
    ]);
    let mut rates = vec![
        (col("repeat_buyers").cast(DataType::Float64) / col("buyers").cast(DataType::Float64))
            .alias("repeat_rate"),
    ];
    for window in REPEAT_WINDOWS {
        let matured = col(format!("matured_{window}"));
        rates.push(
            when(matured.clone().gt(lit(0u32)))
                .then(
                    col(format!("repeat_{window}")).cast(DataType::Float64)
                        / matured.cast(DataType::Float64),
                )
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias(format!("repeat_rate_{window}")),
        );
    }
    concat([overall, per_cohort], UnionArgs::default())?
        .with_columns(rates)
        .collect()
}
