//! Order lines net of refunds: the base every purchase-driven job builds on.
//!
//! A refund cancels the quantity and amount of the same (order_id, item_id). An order whose
//! every line was refunded is not a purchase; an item the user bought and fully refunded is
//! "refunded only" and is never recommended back to them.

use polars::prelude::*;

use crate::event::EventType;
use crate::store::{CHANNEL, EVENT_TYPE, ITEM_ID, ORDER_ID, PRICE, QUANTITY, TS, USER_ID};

pub const NET_QUANTITY: &str = "net_quantity";
pub const NET_AMOUNT: &str = "net_amount";
pub const ORDERED_AT: &str = "ordered_at";
/// Value refunded on the line (≥ 0); gross = net + refunded.
pub const REFUNDED_AMOUNT: &str = "refunded_amount";
/// The channel the line was bought through.
pub const ORDER_CHANNEL: &str = "order_channel";

/// One row per (user, order, item): what was bought and kept, what was refunded, when and
/// through which channel it was ordered. `ordered_at` is in epoch milliseconds.
pub fn net_order_lines(events: LazyFrame) -> LazyFrame {
    let is_purchase = col(EVENT_TYPE).eq(lit(EventType::Purchase.as_str()));
    let value = col(PRICE) * col(QUANTITY).cast(DataType::Float64);
    // Signed and masked values as plain columns first: plain sums and mins are the fast
    // aggregations; filters inside `agg` are much slower over millions of groups.
    events
        .filter(
            col(EVENT_TYPE)
                .eq(lit(EventType::Purchase.as_str()))
                .or(col(EVENT_TYPE).eq(lit(EventType::Refund.as_str()))),
        )
        .select([
            col(USER_ID),
            col(ORDER_ID),
            col(ITEM_ID),
            when(is_purchase.clone())
                .then(col(QUANTITY).cast(DataType::Int64))
                .otherwise(-col(QUANTITY).cast(DataType::Int64))
                .alias(NET_QUANTITY),
            when(is_purchase.clone())
                .then(value.clone())
                .otherwise(-value.clone())
                .alias(NET_AMOUNT),
            when(is_purchase.clone())
                .then(lit(0.0))
                .otherwise(value)
                .alias(REFUNDED_AMOUNT),
            when(is_purchase.clone())
                .then(col(TS).cast(DataType::Int64))
                .otherwise(lit(NULL).cast(DataType::Int64))
                .alias(ORDERED_AT),
            when(is_purchase)
                .then(col(CHANNEL))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias(ORDER_CHANNEL),
        ])
        .group_by([col(USER_ID), col(ORDER_ID), col(ITEM_ID)])
        .agg([
            col(NET_QUANTITY).sum(),
            col(NET_AMOUNT).sum(),
            col(REFUNDED_AMOUNT).sum(),
            col(ORDERED_AT).min(),
            // One line is bought in one channel; min picks it and skips refunds' nulls.
            col(ORDER_CHANNEL).min(),
        ])
        // A refund without its purchase in the data (bought before the window) has no order time.
        .filter(col(ORDERED_AT).is_not_null())
}

/// The item's category as events name it: the most recent non-null value per item.
pub fn item_categories(events: LazyFrame) -> LazyFrame {
    use crate::store::CATEGORY;
    events
        .filter(col(ITEM_ID).is_not_null().and(col(CATEGORY).is_not_null()))
        .group_by([col(ITEM_ID)])
        .agg([col(CATEGORY).get(col(TS).arg_max(), false)])
}

/// One row per kept order: `user_id`, `order_id`, `ordered_at` (epoch ms) and `net_amount`.
/// An order is kept when its net amount after refunds is positive; a fully refunded order is
/// not a purchase anywhere in Recur.
pub fn kept_orders(lines: LazyFrame) -> LazyFrame {
    lines
        .group_by([col(USER_ID), col(ORDER_ID)])
        .agg([col(NET_AMOUNT).sum(), col(ORDERED_AT).min()])
        .filter(col(NET_AMOUNT).gt(lit(0.0)))
}

/// Kept order lines (net quantity > 0) with their item's category; lines of items without a
/// known category are left out.
pub fn kept_lines_with_category(lines: LazyFrame, categories: LazyFrame) -> LazyFrame {
    lines.filter(col(NET_QUANTITY).gt(lit(0i64))).join(
        categories,
        [col(ITEM_ID)],
        [col(ITEM_ID)],
        JoinArgs::new(JoinType::Inner),
    )
}
