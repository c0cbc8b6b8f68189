//! Customer profiles: first and last purchase, orders, revenue, favourite categories.
//!
//! Every user with an event gets a row; users who never kept a purchase have zero orders and
//! null purchase dates. An order counts when its net amount after refunds is positive.

use polars::prelude::*;

use super::purchases::{NET_CENTS, ORDERED_AT, money};
use crate::store::{CATEGORY, MERCHANT_ID, OPENID, TS, UNIONID, USER_ID};

/// How many favourite categories a profile lists.
pub const FAVOURITE_CATEGORIES: usize = 3;

/// Builds the profile table of one merchant. `lines` are [`super::purchases::net_order_lines`].
/// `openids` holds each user's most recent openid (`user_id`, `openid`).
pub fn profiles(
    merchant_id: &str,
    events: LazyFrame,
    lines: LazyFrame,
    categories: LazyFrame,
    openids: LazyFrame,
) -> LazyFrame {
    let orders = super::purchases::kept_orders(lines.clone())
        .group_by([col(USER_ID)])
        .agg([
            col(ORDERED_AT).min().alias("first_purchase_ms"),
            col(ORDERED_AT).max().alias("last_purchase_ms"),
            len().cast(DataType::UInt32).alias("orders"),
            money(col(NET_CENTS).sum()).alias("revenue"),
        ]);
    let favourites = super::purchases::kept_lines_with_category(lines, categories)
        .group_by([col(USER_ID), col(CATEGORY)])
        .agg([col(NET_CENTS).sum().alias("spend")])
        .sort(
            [USER_ID, "spend", CATEGORY],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
        .group_by_stable([col(USER_ID)])
        .agg([col(CATEGORY)
            .head(Some(FAVOURITE_CATEGORIES))
            .alias("favourite_categories")]);
    let activity = events.group_by([col(USER_ID)]).agg([
        col(TS).cast(DataType::Int64).min().alias("first_seen_ms"),
        col(TS).cast(DataType::Int64).max().alias("last_seen_ms"),
        len().cast(DataType::UInt32).alias("events"),
        col(UNIONID)
            .sort_by([col(TS)], SortMultipleOptions::default())
            .drop_nulls()
            .last()
            .alias(UNIONID),
    ]);
    activity
        .join(
            openids,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            orders,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            favourites,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            lit(merchant_id).alias(MERCHANT_ID),
            col(USER_ID),
            col("first_seen_ms"),
            col("last_seen_ms"),
            col("events"),
            col("first_purchase_ms"),
            col("last_purchase_ms"),
            col("orders").fill_null(lit(0u32)),
            col("revenue").fill_null(lit(0.0)),
            col("favourite_categories"),
            col(OPENID),
            col(UNIONID),
        ])
        .sort([USER_ID], SortMultipleOptions::default())
}
