//! Feedback from pushes: an item a campaign delivered to a customer who then neither opened
//! the push nor bought the item is worth less in their next list. Each such push halves the
//! item's odds in the blend ([`PENALTY_PER_IGNORED`] off its log-odds).
//!
//! A push counts as ignored once [`OPEN_GRACE_DAYS`] have passed since its delivery with no
//! `push_open` from the customer naming the item (or naming no item: the message was opened)
//! and no kept order of the item. Only deliveries and events up to the as-of are read, so a
//! snapshot at an as-of knows nothing of later pushes.

use polars::prelude::*;

use crate::campaign::outbox::{OutboxState, Status};
use crate::event::EventType;
use crate::jobs::purchases::{NET_QUANTITY, ORDERED_AT};
use crate::store::{EVENT_TYPE, ITEM_ID, TS, USER_ID};

const DAY_MS: i64 = 86_400_000;
/// Days a customer has to open a push before it counts as ignored.
pub const OPEN_GRACE_DAYS: i64 = 2;
/// Log-odds taken off an item per ignored push of it (ln 2: the odds halve).
pub const PENALTY_PER_IGNORED: f64 = std::f64::consts::LN_2;
/// The column of ignored pushes per (customer, item).
pub const IGNORED: &str = "ignored";
const PUSHED_MS: &str = "pushed_ms";

/// Every (customer, item, delivery time) the delivery log holds as delivered by `as_of_ms`.
pub fn deliveries(outbox: &OutboxState, as_of_ms: i64) -> PolarsResult<DataFrame> {
    let (mut users, mut items, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for entry in outbox.entries.values() {
        let Status::Delivered { at_ms } = entry.status else {
            continue;
        };
        if at_ms > as_of_ms {
            continue;
        }
        for item in &entry.message.items {
            users.push(entry.message.user_id.as_str());
            items.push(item.item_id.as_str());
            times.push(at_ms);
        }
    }
    df!(USER_ID => users, ITEM_ID => items, PUSHED_MS => times)
}

/// `user_id, item_id, ignored`: pushes of the item to the customer delivered at least
/// [`OPEN_GRACE_DAYS`] before `as_of_ms` and followed (up to the as-of) by neither an open nor
/// a kept order of it. `events` and `lines` (net order lines) end at the as-of.
pub fn ignored_pushes(
    deliveries: DataFrame,
    events: LazyFrame,
    lines: LazyFrame,
    as_of_ms: i64,
) -> LazyFrame {
    let settled = deliveries
        .lazy()
        .filter(col(PUSHED_MS).lt_eq(lit(as_of_ms - OPEN_GRACE_DAYS * DAY_MS)));
    let opens = events
        .filter(col(EVENT_TYPE).eq(lit(EventType::PushOpen.as_str())))
        .select([
            col(USER_ID),
            col(ITEM_ID).alias("opened_item"),
            col(TS).cast(DataType::Int64).alias("opened_ms"),
        ]);
    let bought = lines.filter(col(NET_QUANTITY).gt(lit(0i64))).select([
        col(USER_ID),
        col(ITEM_ID),
        col(ORDERED_AT),
    ]);
    // A push answered by an open of its item (or of the message) after its delivery.
    let opened = settled
        .clone()
        .join(
            opens,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(
            col("opened_ms").gt_eq(col(PUSHED_MS)).and(
                col("opened_item")
                    .is_null()
                    .or(col("opened_item").eq(col(ITEM_ID))),
            ),
        )
        .select([col(USER_ID), col(ITEM_ID), col(PUSHED_MS)]);
    let purchased = settled
        .clone()
        .join(
            bought,
            [col(USER_ID), col(ITEM_ID)],
            [col(USER_ID), col(ITEM_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col(ORDERED_AT).gt_eq(col(PUSHED_MS)))
        .select([col(USER_ID), col(ITEM_ID), col(PUSHED_MS)]);
    let answered = concat([opened, purchased], UnionArgs::default())
        .map(|frame| frame.unique(None, UniqueKeepStrategy::Any))
        .unwrap_or_else(|_| settled.clone().limit(0));
    settled
        .unique(None, UniqueKeepStrategy::Any)
        .join(
            answered,
            [col(USER_ID), col(ITEM_ID), col(PUSHED_MS)],
            [col(USER_ID), col(ITEM_ID), col(PUSHED_MS)],
            JoinArgs::new(JoinType::Anti),
        )
        .group_by([col(USER_ID), col(ITEM_ID)])
        .agg([len().cast(DataType::UInt32).alias(IGNORED)])
        .sort([USER_ID, ITEM_ID], SortMultipleOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_790_000_000_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_push_neither_opened_nor_bought_is_ignored() {
        let deliveries = df!(
            USER_ID => ["u1", "u1", "u2", "u3", "u4"],
            ITEM_ID => ["milk", "bread", "milk", "milk", "milk"],
            PUSHED_MS => [T, T, T, T, T + 3 * DAY_MS],
        )
        .expect("frame");
        let events = df!(
            USER_ID => ["u2", "u3"],
            EVENT_TYPE => ["push_open", "push_open"],
            ITEM_ID => [Some("milk"), None],
            TS => [T + HOUR, T + 2 * HOUR],
        )
        .expect("frame")
        .lazy();
        let lines = df!(
            USER_ID => ["u1"],
            ITEM_ID => ["bread"],
            NET_QUANTITY => [1i64],
            ORDERED_AT => [T + DAY_MS],
        )
        .expect("frame")
        .lazy();
        let ignored = ignored_pushes(deliveries, events, lines, T + 4 * DAY_MS)
            .collect()
            .expect("collect");
        // u1's milk: never opened, never bought. u1's bread was bought, u2 opened the milk,
        // u3 opened the message; u4's push is too recent to judge.
        assert_eq!(ignored.height(), 1, "{ignored}");
        let user = ignored.column(USER_ID).expect("u").str().expect("s").get(0);
        let item = ignored.column(ITEM_ID).expect("i").str().expect("s").get(0);
        assert_eq!((user, item), (Some("u1"), Some("milk")));
    }
}
