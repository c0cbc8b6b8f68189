//! Lifecycle per period: how many customers are new, returning, resurrecting or dormant.
//!
//! For period p, an active customer is *new* if p is their first active period, *returning*
//! if they were also active in p − 1, and *resurrecting* if they were active before p − 1 but
//! not in p − 1. *Dormant* counts customers active in p − 1 but not in p: the ones the
//! merchant just lost. Every period from the first activity to the current one appears, with
//! zeros where nothing happened.
//!
//! Per customer, the stage at the current period uses the same words, except that *dormant*
//! there means any customer with past activity and none in the current period.

use polars::prelude::*;

use super::activity::PERIOD;
use super::shift_within;
use crate::store::USER_ID;

pub const NEW: &str = "new";
pub const RETURNING: &str = "returning";
pub const RESURRECTING: &str = "resurrecting";
pub const DORMANT: &str = "dormant";
pub const STAGES: [&str; 4] = [NEW, RETURNING, RESURRECTING, DORMANT];
pub const LIFECYCLE_STAGE: &str = "lifecycle_stage";
const STAGE: &str = "stage";

/// Each active (user, period) labelled new, returning or resurrecting, plus a dormant row at
/// the period after each run of activity ends (up to `current`).
fn transitions(active: LazyFrame, current: i32) -> PolarsResult<LazyFrame> {
    let ordered = active
        .sort([USER_ID, PERIOD], SortMultipleOptions::default())
        .with_columns([
            shift_within(col(PERIOD), &[USER_ID], 1).alias("previous"),
            shift_within(col(PERIOD), &[USER_ID], -1).alias("next"),
        ]);
    let stage = when(col("previous").is_null())
        .then(lit(NEW))
        .when(col("previous").eq(col(PERIOD) - lit(1i32)))
        .then(lit(RETURNING))
        .otherwise(lit(RESURRECTING));
    let activity = ordered
        .clone()
        .select([col(USER_ID), col(PERIOD), stage.alias(STAGE)]);
    let dormant = ordered
        .filter(
            col("next")
                .is_null()
                .or(col("next").neq(col(PERIOD) + lit(1i32)))
                .and((col(PERIOD) + lit(1i32)).lt_eq(lit(current))),
        )
        .select([
            col(USER_ID),
            (col(PERIOD) + lit(1i32)).alias(PERIOD),
            lit(DORMANT).alias(STAGE),
        ]);
    concat([activity, dormant], UnionArgs::default())
}

/// Counts per period from the first active period to `current`: `period`, `new`,
/// `returning`, `resurrecting`, `dormant` (UInt32) and `active` (the first three summed).
pub fn lifecycle_counts(active: LazyFrame, current: i32) -> PolarsResult<DataFrame> {
    let counts = transitions(active, current)?
        .filter(col(PERIOD).lt_eq(lit(current)))
        .group_by([col(PERIOD)])
        .agg(
            STAGES
                .iter()
                .map(|s| {
                    col(STAGE)
                        .eq(lit(*s))
                        .sum()
                        .cast(DataType::UInt32)
                        .alias(*s)
                })
                .collect::<Vec<_>>(),
        )
        .collect()?;
    let first = counts.column(PERIOD)?.i32()?.min();
    let Some(first) = first else {
        return counts
            .lazy()
            .with_column(lit(0u32).alias("active"))
            .collect();
    };
    let periods: Vec<i32> = (first..=current.max(first)).collect();
    df!(PERIOD => periods)?
        .lazy()
        .join(
            counts.lazy(),
            [col(PERIOD)],
            [col(PERIOD)],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns(STAGES.map(|s| col(s).fill_null(lit(0u32))))
        .with_column((col(NEW) + col(RETURNING) + col(RESURRECTING)).alias("active"))
        .sort([PERIOD], SortMultipleOptions::default())
        .collect()
}

/// Each customer's stage at period `current`: new, returning or resurrecting if active in it,
/// dormant if active only before it.
pub fn customer_stages(active: LazyFrame, current: i32) -> PolarsResult<LazyFrame> {
    let now = transitions(
        active.clone().filter(col(PERIOD).lt_eq(lit(current))),
        current,
    )?
    .filter(
        col(PERIOD)
            .eq(lit(current))
            .and(col(STAGE).neq(lit(DORMANT))),
    )
    .select([col(USER_ID), col(STAGE).alias(LIFECYCLE_STAGE)]);
    let seen = active
        .filter(col(PERIOD).lt(lit(current)))
        .select([col(USER_ID)])
        .unique(None, UniqueKeepStrategy::Any);
    let dormant = seen
        .join(
            now.clone(),
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Anti),
        )
        .with_column(lit(DORMANT).alias(LIFECYCLE_STAGE));
    concat([now, dormant], UnionArgs::default())
}
