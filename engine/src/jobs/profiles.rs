//! Customer profiles: first and last purchase, orders, revenue, favourite categories, and
//! member attributes (birthday, member level, points, tags) from `identify` events, and the
//! local hour the customer is most often active (when pushes go out).
//!
//! Every user with an event gets a row; users who never kept a purchase have zero orders and
//! null purchase dates. An order counts when its net amount after refunds is positive.

use polars::prelude::*;

use super::purchases::{NET_CENTS, ORDERED_AT, money};
use crate::analytics::activity::ACTIVE_HOUR;
use crate::analytics::identity::FIRST_SEEN_MS;
use crate::analytics::members::{BIRTHDAY, MEMBER_LEVEL, POINTS, TAGS};
use crate::store::{CATEGORY, MERCHANT_ID, OPENID, TS, UNIONID, USER_ID};

/// How many favourite categories a profile lists.
pub const FAVOURITE_CATEGORIES: usize = 3;

/// Each customer's first and last event, event count and most recent unionid (`user_id`,
/// `first_seen_ms`, `last_seen_ms`, `events`, `unionid`) from stitched events.
pub fn customer_activity(events: LazyFrame) -> LazyFrame {
    events.group_by([col(USER_ID)]).agg([
        col(TS).cast(DataType::Int64).min().alias(FIRST_SEEN_MS),
        col(TS).cast(DataType::Int64).max().alias(LAST_SEEN_MS),
        len().cast(DataType::UInt32).alias(EVENTS),
        col(UNIONID)
            .sort_by([col(TS)], SortMultipleOptions::default())
            .drop_nulls()
            .last()
            .alias(UNIONID),
    ])
}

pub const LAST_SEEN_MS: &str = "last_seen_ms";
pub const EVENTS: &str = "events";

/// Builds the profile table of one merchant. `activity` is [`customer_activity`]; `lines` are
/// [`super::purchases::net_order_lines`]. `openids` holds each user's most recent openid
/// (`user_id`, `openid`); `members` their [`crate::analytics::members::member_attributes`]
/// and their [`crate::analytics::activity::active_hours`] (either may be missing for a user).
pub fn profiles(
    merchant_id: &str,
    activity: LazyFrame,
    lines: LazyFrame,
    categories: LazyFrame,
    openids: LazyFrame,
    members: LazyFrame,
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
        .join(
            members,
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
            col(BIRTHDAY),
            col(MEMBER_LEVEL),
            col(POINTS),
            col(TAGS),
            col(ACTIVE_HOUR),
        ])
        .sort([USER_ID], SortMultipleOptions::default())
}

/// Kept orders a profile lists.
pub const RECENT_ORDERS: u32 = 10;

/// Each customer's [`RECENT_ORDERS`] most recent kept orders, newest first: `merchant_id`,
/// `user_id`, `rank` (1 = newest), `order_id`, `ordered_at` (epoch ms), `amount` (net, in
/// currency units) and `items` (net quantity). Built by `recur run` so the profile endpoint
/// answers from memory instead of scanning the customer's history.
pub fn recent_orders(merchant_id: &str, lines: LazyFrame) -> PolarsResult<LazyFrame> {
    use super::purchases::NET_QUANTITY;
    use crate::store::ORDER_ID;
    let rank = col(ORDER_ID)
        .cum_count(false)
        .cast(DataType::UInt32)
        .over([col(USER_ID)])?;
    Ok(lines
        .group_by([col(USER_ID), col(ORDER_ID)])
        .agg([
            col(ORDERED_AT).min(),
            col(NET_CENTS).sum(),
            col(NET_QUANTITY).sum().alias("items"),
        ])
        .filter(col(NET_CENTS).gt(lit(0i64)))
        // Newest first across customers; the window numbers each customer's orders in that
        // order. Not sorted by customer first: the snapshot orders the rows by customer and
        // rank when it writes them, and a sort led by id strings (a few orders each) took
        // most of this step's seconds comparing them.
        .sort(
            [ORDERED_AT, ORDER_ID],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .with_column(rank.alias("rank"))
        .filter(col("rank").lt_eq(lit(RECENT_ORDERS)))
        .select([
            lit(merchant_id).alias(MERCHANT_ID),
            col(USER_ID),
            col("rank"),
            col(ORDER_ID),
            col(ORDERED_AT),
            money(col(NET_CENTS)).alias("amount"),
            col("items"),
        ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::purchases::{NET_QUANTITY, ORDER_CHANNEL, REFUNDED_CENTS};
    use crate::store::{ITEM_ID, ORDER_ID};

    #[test]
    fn recent_orders_are_the_newest_kept_ones_ranked_from_one() {
        let n = 13;
        let mut users: Vec<&str> = vec!["a"; n];
        users.push("b");
        let orders: Vec<String> = (0..=n).map(|i| format!("o{i:02}")).collect();
        let at: Vec<i64> = (0..=n as i64).collect();
        // o05 was refunded in full: not an order.
        let cents: Vec<i64> = (0..=n).map(|i| if i == 5 { 0 } else { 100 }).collect();
        let lines = df!(
            USER_ID => users,
            ORDER_ID => orders,
            ITEM_ID => vec!["i"; n + 1],
            NET_QUANTITY => vec![1i64; n + 1],
            NET_CENTS => cents,
            REFUNDED_CENTS => vec![0i64; n + 1],
            ORDERED_AT => at,
            ORDER_CHANNEL => vec!["h5"; n + 1],
        )
        .expect("lines");
        let recent = recent_orders("m", lines.lazy())
            .and_then(LazyFrame::collect)
            .expect("recent")
            .sort(["user_id", "rank"], SortMultipleOptions::default())
            .expect("sorted");
        let strings = |name: &str| -> Vec<String> {
            recent
                .column(name)
                .expect(name)
                .as_materialized_series()
                .iter()
                .map(|v| v.to_string().trim_matches('"').to_owned())
                .collect()
        };
        assert_eq!(
            strings("order_id"),
            vec![
                "o12", "o11", "o10", "o09", "o08", "o07", "o06", "o04", "o03", "o02", "o13"
            ]
        );
        assert_eq!(
            strings("rank"),
            vec!["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "1"]
        );
        assert_eq!(strings("amount")[0], "1.0");
    }
}
