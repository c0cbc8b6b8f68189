//! Order lines net of refunds: the base every purchase-driven job builds on.
//!
//! A refund cancels the quantity and amount of the same (order_id, item_id), whichever user id
//! it was sent under; the line belongs to the buyer. An order whose every line was refunded is
//! not a purchase; an item the user bought and fully refunded is "refunded only" and is never
//! recommended back to them.
//!
//! Money is counted in integer cents (the line amount rounded to the currency's cent), so
//! every sum is exact and the same in any order: parallel aggregation cannot make two runs
//! on the same data differ in the last digit. [`money`] turns cents back into currency
//! units at the edge.

use polars::prelude::*;

use crate::event::EventType;
use crate::store::{CHANNEL, EVENT_TYPE, ITEM_ID, ORDER_ID, PRICE, QUANTITY, TS, USER_ID};

pub const NET_QUANTITY: &str = "net_quantity";
/// What the line is worth after refunds, in integer cents (Int64).
pub const NET_CENTS: &str = "net_cents";
pub const ORDERED_AT: &str = "ordered_at";
/// Value refunded on the line (≥ 0), in integer cents; gross = net + refunded.
pub const REFUNDED_CENTS: &str = "refunded_cents";
/// Cents per unit of the merchant's currency (yuan: 100 fen).
pub const CENTS_PER_UNIT: f64 = 100.0;

/// Integer cents as currency units (Float64).
pub fn money(cents: Expr) -> Expr {
    cents.cast(DataType::Float64) / lit(CENTS_PER_UNIT)
}

/// The exact sum of a currency column, as currency units: each value is rounded to the cent
/// and summed as integers, so the order rows arrive in cannot change the result.
pub fn money_sum(amount: Expr) -> Expr {
    money(
        (amount * lit(CENTS_PER_UNIT))
            .round(0, RoundMode::HalfToEven)
            .cast(DataType::Int64)
            .sum(),
    )
}
/// The channel the line was bought through.
pub const ORDER_CHANNEL: &str = "order_channel";

/// One row per (order, item) with its buyer: what was bought and kept, what was refunded,
/// when and through which channel it was ordered. `ordered_at` is in epoch milliseconds.
pub fn net_order_lines(events: LazyFrame) -> LazyFrame {
    merge_order_lines(order_line_values(events))
}

/// Each purchase and refund as signed line values (`user_id`, `order_id`, `item_id` and the
/// columns [`merge_order_lines`] sums), before any grouping. A store that aggregates where the
/// events live (ClickHouse) computes the same values and pre-sums them per (order, item, buyer);
/// merging such partial sums gives the same lines, because sums and minimums merge exactly.
pub fn order_line_values(events: LazyFrame) -> LazyFrame {
    let is_purchase = col(EVENT_TYPE).eq(lit(EventType::Purchase.as_str()));
    // Price and quantity are bounded by validation, so a line fits an i64 of cents easily.
    let value = (col(PRICE) * col(QUANTITY).cast(DataType::Float64) * lit(CENTS_PER_UNIT))
        .round(0, RoundMode::HalfToEven)
        .cast(DataType::Int64);
    // Signed and masked values as plain columns first: plain sums and mins are the fast
    // aggregations; filters inside `agg` are much slower over millions of groups.
    events
        .filter(
            col(EVENT_TYPE)
                .eq(lit(EventType::Purchase.as_str()))
                .or(col(EVENT_TYPE).eq(lit(EventType::Refund.as_str()))),
        )
        .select([
            // The buyer is the purchase's user: a refund sent under another id of theirs (or
            // by a back office under a service account) still cancels the line.
            when(is_purchase.clone())
                .then(col(USER_ID))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias(USER_ID),
            col(ORDER_ID),
            col(ITEM_ID),
            when(is_purchase.clone())
                .then(col(QUANTITY).cast(DataType::Int64))
                .otherwise(-col(QUANTITY).cast(DataType::Int64))
                .alias(NET_QUANTITY),
            when(is_purchase.clone())
                .then(value.clone())
                .otherwise(-value.clone())
                .alias(NET_CENTS),
            when(is_purchase.clone())
                .then(lit(0i64))
                .otherwise(value)
                .alias(REFUNDED_CENTS),
            when(is_purchase.clone())
                .then(col(TS).cast(DataType::Int64))
                .otherwise(lit(NULL).cast(DataType::Int64))
                .alias(ORDERED_AT),
            when(is_purchase)
                .then(col(CHANNEL))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias(ORDER_CHANNEL),
        ])
}

/// Order lines from [`order_line_values`] (or partial sums of them per order, item and buyer,
/// with the buyer already stitched): one row per (order, item).
pub fn merge_order_lines(values: LazyFrame) -> LazyFrame {
    values
        .group_by([col(ORDER_ID), col(ITEM_ID)])
        .agg([
            // One order has one buyer; min skips the refunds' nulls.
            col(USER_ID).min(),
            col(NET_QUANTITY).sum(),
            col(NET_CENTS).sum(),
            col(REFUNDED_CENTS).sum(),
            col(ORDERED_AT).min(),
            // One line is bought in one channel; min picks it and skips refunds' nulls.
            col(ORDER_CHANNEL).min(),
        ])
        // A refund without its purchase in the data (bought before the window) has no order time.
        .filter(col(ORDERED_AT).is_not_null())
        .select([
            col(USER_ID),
            col(ORDER_ID),
            col(ITEM_ID),
            col(NET_QUANTITY),
            col(NET_CENTS),
            col(REFUNDED_CENTS),
            col(ORDERED_AT),
            col(ORDER_CHANNEL),
        ])
}

/// The item's category as events name it: the most recent non-null value per item.
pub fn item_categories(events: LazyFrame) -> LazyFrame {
    use crate::store::CATEGORY;
    events
        .filter(col(ITEM_ID).is_not_null().and(col(CATEGORY).is_not_null()))
        .group_by([col(ITEM_ID)])
        .agg([col(CATEGORY).get(col(TS).arg_max(), false)])
}

/// One row per kept order: `user_id`, `order_id`, `ordered_at` (epoch ms) and `net_cents`.
/// An order is kept when its net amount after refunds is positive; a fully refunded order is
/// not a purchase anywhere in Recur.
pub fn kept_orders(lines: LazyFrame) -> LazyFrame {
    lines
        .group_by([col(USER_ID), col(ORDER_ID)])
        .agg([col(NET_CENTS).sum(), col(ORDERED_AT).min()])
        .filter(col(NET_CENTS).gt(lit(0i64)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events_to_frame;

    fn events(lines: &[&str]) -> LazyFrame {
        let validator = crate::event::EventValidator::new(i64::MAX / 4);
        let events: Vec<crate::event::Event> = lines
            .iter()
            .map(|l| validator.validate(l.as_bytes()).expect("valid test event"))
            .collect();
        let refs: Vec<&crate::event::Event> = events.iter().collect();
        events_to_frame(&refs).expect("frame").lazy()
    }

    #[test]
    fn a_refund_cancels_the_line_whatever_user_id_it_was_sent_under() {
        let frame = events(&[
            r#"{"event_id":"1","merchant_id":"m","user_id":"alice","type":"purchase","ts":1777600800000,"item_id":"tart","price":10,"quantity":2,"order_id":"o1"}"#,
            r#"{"event_id":"2","merchant_id":"m","user_id":"backoffice","type":"refund","ts":1777687200000,"item_id":"tart","price":10,"quantity":2,"order_id":"o1"}"#,
        ]);
        let lines = net_order_lines(frame.clone()).collect().expect("lines");
        assert_eq!(lines.height(), 1);
        let row = |name: &str| {
            lines
                .column(name)
                .expect(name)
                .get(0)
                .expect("row")
                .to_string()
        };
        assert_eq!(row(USER_ID), "\"alice\"");
        assert_eq!(row(NET_QUANTITY), "0");
        assert_eq!(row(NET_CENTS), "0");
        assert_eq!(row(REFUNDED_CENTS), "2000");
        let kept = kept_orders(lines.lazy()).collect().expect("orders");
        assert_eq!(kept.height(), 0, "a fully refunded order is not a purchase");
    }

    #[test]
    fn money_sums_are_exact_in_any_order() {
        let amounts: Vec<f64> = (0..1000).map(|i| 0.1 + f64::from(i % 7) * 0.01).collect();
        let mut reversed = amounts.clone();
        reversed.reverse();
        let sum = |values: Vec<f64>| {
            df!("a" => values)
                .expect("frame")
                .lazy()
                .select([money_sum(col("a"))])
                .collect()
                .expect("sum")
                .column("a")
                .expect("a")
                .f64()
                .expect("f64")
                .get(0)
                .expect("value")
        };
        let forward = sum(amounts);
        assert_eq!(forward, sum(reversed));
        // A plain float sum gives 129.96999999999963, and another in reverse order.
        assert_eq!(forward, 129.97);
    }
}
