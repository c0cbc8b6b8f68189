//! Time between orders, per category: how long customers take to buy from a category again.
//!
//! For each customer and category, the kept orders containing that category are put in time
//! order and the gaps between consecutive ones measured in days. Per category the report
//! gives the number of gaps, the customers they come from, and their median, mean and
//! quartiles. The median is what replenishment reminders will be timed from.

use polars::prelude::*;

use super::period::DAY_MS;
use super::shift_within;
use crate::jobs::purchases::{ORDERED_AT, kept_lines_with_category};
use crate::store::{CATEGORY, ORDER_ID, USER_ID};

pub const GAP_DAYS: &str = "gap_days";

/// `category`, `repeat_customers`, `gaps`, `median_days`, `mean_days`, `p25_days`,
/// `p75_days`, sorted by gaps (most evidence first). `lines` are net order lines,
/// `categories` the item → category table.
pub fn time_between_orders(lines: LazyFrame, categories: LazyFrame) -> LazyFrame {
    let gaps = kept_lines_with_category(lines, categories)
        .group_by([col(USER_ID), col(CATEGORY), col(ORDER_ID)])
        .agg([col(ORDERED_AT).min()])
        .sort(
            [USER_ID, CATEGORY, ORDERED_AT],
            SortMultipleOptions::default(),
        )
        .with_column(
            ((col(ORDERED_AT) - shift_within(col(ORDERED_AT), &[USER_ID, CATEGORY], 1))
                .cast(DataType::Float64)
                / lit(DAY_MS as f64))
            .alias(GAP_DAYS),
        )
        .filter(col(GAP_DAYS).is_not_null());
    gaps.group_by([col(CATEGORY)])
        .agg([
            col(USER_ID)
                .n_unique()
                .cast(DataType::UInt32)
                .alias("repeat_customers"),
            len().cast(DataType::UInt32).alias("gaps"),
            col(GAP_DAYS).median().alias("median_days"),
            col(GAP_DAYS).mean().alias("mean_days"),
            col(GAP_DAYS)
                .quantile(lit(0.25), QuantileMethod::Linear)
                .alias("p25_days"),
            col(GAP_DAYS)
                .quantile(lit(0.75), QuantileMethod::Linear)
                .alias("p75_days"),
        ])
        .sort(
            ["gaps", CATEGORY],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
}
