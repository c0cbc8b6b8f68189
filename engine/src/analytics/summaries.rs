//! The second phase of per-customer aggregates whose first phase a store computed per user_id
//! ([`crate::store::StoreAggregates::user_summaries`]): identity stitching's input, each
//! customer's latest openid and the activity columns of profiles.
//!
//! Each function gives exactly what its row-level counterpart gives from the events: minimums
//! of minimums, maximums of maximums, sums of counts, and the latest value of the latest ones.

use polars::prelude::*;

use super::identity::FIRST_SEEN_MS;
use crate::jobs::profiles::{EVENTS, LAST_SEEN_MS};
use crate::store::{
    EVENT_COUNT, FIRST_EVENT_MS, FIRST_UNIONID_MS, LAST_EVENT_MS, LATEST_OPENID, LATEST_OPENID_MS,
    LATEST_UNIONID, LATEST_UNIONID_MS, OPENID, TS, UNIONID, USER_ID,
};

/// [`super::identity::user_unionids`] from the summaries.
pub fn user_unionids(summaries: LazyFrame) -> LazyFrame {
    summaries
        .filter(col(FIRST_UNIONID_MS).is_not_null())
        .select([
            col(USER_ID),
            col(FIRST_UNIONID_MS).alias(FIRST_SEEN_MS),
            col(LATEST_UNIONID).alias(UNIONID),
        ])
}

/// `user_id`, `ts`, `openid` of each user_id's latest openid: what
/// [`super::MerchantAnalytics::openids`] picks the customer's latest from.
pub fn openid_rows(summaries: LazyFrame) -> LazyFrame {
    summaries.filter(col(LATEST_OPENID).is_not_null()).select([
        col(USER_ID),
        col(LATEST_OPENID_MS).alias(TS),
        col(LATEST_OPENID).alias(OPENID),
    ])
}

/// [`crate::jobs::profiles::customer_activity`] from summaries whose `user_id` was stitched.
pub fn customer_activity(stitched_summaries: LazyFrame) -> LazyFrame {
    stitched_summaries.group_by([col(USER_ID)]).agg([
        col(FIRST_EVENT_MS).min().alias(FIRST_SEEN_MS),
        col(LAST_EVENT_MS).max().alias(LAST_SEEN_MS),
        col(EVENT_COUNT).sum().cast(DataType::UInt32).alias(EVENTS),
        col(LATEST_UNIONID)
            .sort_by([col(LATEST_UNIONID_MS)], SortMultipleOptions::default())
            .drop_nulls()
            .last()
            .alias(UNIONID),
    ])
}
