//! Aggregations a store computes where its events live (ClickHouse's `GROUP BY`), so that
//! jobs pull per-user, per-line and per-item tables instead of event rows.
//!
//! Each table is the first phase of a job's aggregation and merges exactly into the second,
//! which stays in Polars and is shared by every store: sums and minimums of partial sums and
//! minimums are the same numbers, and identity stitching (which needs every user's table
//! first) is applied between the two phases. A store without these (the embedded one, whose
//! events are local Parquet that Polars reads faster than any hand-off) returns `None` from
//! [`crate::store::EventStore::aggregates`] and the jobs compute the same tables in Polars.

use polars::prelude::DataFrame;

use super::TimeRange;
use crate::error::Result;

/// Per-user, per-line and per-item tables of one merchant's events in a time range.
pub trait StoreAggregates {
    /// [`crate::analytics::identity::user_unionids`]: `user_id`, `first_seen_ms`, `unionid`
    /// for every user_id whose events carry a unionid.
    fn user_unionids(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame>;

    /// Each user_id's most recent openid: `user_id`, `ts` (of that event), `openid`.
    fn user_openids(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame>;

    /// [`crate::jobs::purchases::order_line_values`] summed per order, item and buyer (the
    /// purchase's user_id; null for refunds): the columns of those values, summed (quantity
    /// and cents) or minimised (`ordered_at`, `order_channel`).
    fn order_line_sums(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame>;

    /// [`crate::jobs::purchases::item_categories`]: `item_id`, `category` (most recent).
    fn item_categories(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame>;
}
