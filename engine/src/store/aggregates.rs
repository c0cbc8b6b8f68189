//! Aggregations a store computes where its events live (ClickHouse's `GROUP BY`), so that
//! jobs pull per-user, per-line and per-item tables instead of event rows.
//!
//! Each table is the first phase of a job's aggregation and merges exactly into the second,
//! which stays in Polars and is shared by every store: sums and minimums of partial sums and
//! minimums are the same numbers, and identity stitching (which needs every user's table
//! first) is applied between the two phases. A store without these (the embedded one, whose
//! events are local Parquet that Polars reads faster than any hand-off) returns `None` from
//! [`crate::store::EventStore::aggregates`] and the jobs compute the same tables in Polars.

use polars::prelude::{DataFrame, LazyFrame};

use super::TimeRange;
use crate::error::Result;
use crate::event::EventType;

/// Per-user, per-line and per-item tables of one merchant's events in a time range.
pub trait StoreAggregates {
    /// One row per user_id: `user_id` and, in this order, [`FIRST_EVENT_MS`],
    /// [`LAST_EVENT_MS`], [`EVENT_COUNT`], [`FIRST_UNIONID_MS`], [`LATEST_UNIONID`],
    /// [`LATEST_UNIONID_MS`], [`LATEST_OPENID`], [`LATEST_OPENID_MS`] (the unionid and
    /// openid columns null when the user_id never had one).
    fn user_summaries(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame>;

    /// [`crate::jobs::purchases::order_line_values`] summed per order, item and buyer (the
    /// purchase's user_id; null for refunds): the columns of those values, summed (quantity
    /// and cents) or minimised (`ordered_at`, `order_channel`).
    fn order_line_sums(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame>;

    /// [`crate::jobs::purchases::item_categories`]: `item_id`, `category` (most recent).
    fn item_categories(&self, merchant_id: &str, range: TimeRange) -> Result<DataFrame>;

    /// A lazy scan of the merchant's events of `types` only (empty if there are none): reads
    /// that want a few kinds of events, such as subscriptions, ask only for those rows.
    fn scan_types(
        &self,
        merchant_id: &str,
        range: TimeRange,
        types: &[EventType],
    ) -> Result<LazyFrame>;
}

/// First and last event (epoch ms), Int64.
pub const FIRST_EVENT_MS: &str = "first_event_ms";
pub const LAST_EVENT_MS: &str = "last_event_ms";
/// Events of the user_id, Int64.
pub const EVENT_COUNT: &str = "event_count";
/// The first event that carried a unionid (Int64, null: none did).
pub const FIRST_UNIONID_MS: &str = "first_unionid_ms";
/// The most recent unionid and openid (String) and when each was last seen (Int64).
pub const LATEST_UNIONID: &str = "latest_unionid";
pub const LATEST_UNIONID_MS: &str = "latest_unionid_ms";
pub const LATEST_OPENID: &str = "latest_openid";
pub const LATEST_OPENID_MS: &str = "latest_openid_ms";
