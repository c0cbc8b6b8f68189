//! Identity stitching: user ids that share a WeChat unionid are one customer.
//!
//! A person who orders in the mini program and again in the micro-store arrives under two
//! user_ids (each app has its own openid) but one unionid. Every analytics output counts
//! them once, under a canonical customer id: the user_id of that unionid first seen (ties
//! broken by the smaller id). The rule depends only on the oldest events, so the id stays
//! the same run after run as new events arrive. A user_id whose events carry several
//! unionids is linked by the most recent one. Only events that carry a unionid are read, so
//! the map lists the user ids that have one; every other user id is its own customer.

use polars::prelude::*;

use crate::store::{TS, UNIONID, USER_ID};

/// The canonical customer id column.
pub const CUSTOMER_ID: &str = "customer_id";
pub const FIRST_SEEN_MS: &str = "first_seen_ms";

/// One row per user_id with a unionid: `user_id`, `unionid`, `first_seen_ms` (its first
/// event carrying a unionid), `customer_id`.
pub fn identity_map(events: LazyFrame) -> LazyFrame {
    identity_map_of_users(user_unionids(events))
}

/// One row per user_id whose events carry a unionid: `user_id`, `first_seen_ms`, `unionid`
/// (the most recent). A store that aggregates where the events live computes this table
/// itself and hands it to [`identity_map_of_users`].
pub fn user_unionids(events: LazyFrame) -> LazyFrame {
    events
        .filter(col(UNIONID).is_not_null())
        .group_by([col(USER_ID)])
        .agg([
            col(TS).cast(DataType::Int64).min().alias(FIRST_SEEN_MS),
            col(UNIONID)
                .sort_by([col(TS)], SortMultipleOptions::default())
                .last()
                .alias(UNIONID),
        ])
}

/// [`identity_map`] from [`user_unionids`]' table.
pub fn identity_map_of_users(users: LazyFrame) -> LazyFrame {
    let canonical = users.clone().group_by([col(UNIONID)]).agg([col(USER_ID)
        .sort_by(
            [col(FIRST_SEEN_MS), col(USER_ID)],
            SortMultipleOptions::default(),
        )
        .first()
        .alias(CUSTOMER_ID)]);
    users
        .join(
            canonical,
            [col(UNIONID)],
            [col(UNIONID)],
            JoinArgs::new(JoinType::Left),
        )
        .sort([USER_ID], SortMultipleOptions::default())
}

/// Only the user ids that were folded into another customer: `user_id`, `customer_id`,
/// `unionid`. This is the mapping reports show.
pub fn stitched_only(map: LazyFrame) -> LazyFrame {
    map.filter(col(USER_ID).neq(col(CUSTOMER_ID))).select([
        col(USER_ID),
        col(CUSTOMER_ID),
        col(UNIONID),
    ])
}

/// Rewrites `user_id` in `events` to the canonical customer id, keeping the original in
/// `source_user_id`. When nothing is stitched the events pass through unjoined.
pub fn stitch(events: LazyFrame, stitched: &DataFrame) -> LazyFrame {
    if stitched.height() == 0 {
        return events.with_column(col(USER_ID).alias(SOURCE_USER_ID));
    }
    events
        .join(
            stitched
                .clone()
                .lazy()
                .select([col(USER_ID), col(CUSTOMER_ID)]),
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col(USER_ID).alias(SOURCE_USER_ID),
            when(col(CUSTOMER_ID).is_null())
                .then(col(USER_ID))
                .otherwise(col(CUSTOMER_ID))
                .alias(USER_ID),
        ])
        .drop(by_name([CUSTOMER_ID], true, false))
}

/// The user_id an event arrived under, before stitching.
pub const SOURCE_USER_ID: &str = "source_user_id";
