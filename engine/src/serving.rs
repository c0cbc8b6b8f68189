//! Read-side queries on a published snapshot for the API: one merchant's report rows, its
//! RFM summary and one customer's profile. Each scans the snapshot's Parquet files with the
//! merchant as a filter, so an answer can only hold that merchant's rows.
//!
//! These touch disk and Polars: call them off the async executor (spawn_blocking).

use std::path::Path;

use polars::prelude::*;
use serde_json::{Value, json};

use crate::analytics::identity::CUSTOMER_ID;
use crate::analytics::rfm;
use crate::error::{Error, Result};
use crate::frame_json;
use crate::jobs::purchases::{self, NET_CENTS, ORDERED_AT};
use crate::jobs::reports::PERIOD_KIND;
use crate::snapshot::{scan_profiles_of, scan_report};
use crate::store::{EventStore, MERCHANT_ID, ORDER_ID, TimeRange, USER_ID};

/// Orders listed on a profile.
pub const RECENT_ORDERS: usize = 10;

/// Rows of report `table` for `merchant_id`, optionally narrowed by `period_kind` and
/// `mode`, without the tag columns.
pub fn report_rows(
    data_dir: &Path,
    snapshot: &str,
    merchant_id: &str,
    table: &str,
    period_kind: Option<&str>,
    mode: Option<&str>,
) -> Result<Vec<Value>> {
    let mut scan =
        scan_report(data_dir, snapshot, table)?.filter(col(MERCHANT_ID).eq(lit(merchant_id)));
    let mut drop = vec![MERCHANT_ID];
    if let Some(kind) = period_kind {
        scan = scan.filter(col(PERIOD_KIND).eq(lit(kind)));
        drop.push(PERIOD_KIND);
    }
    if let Some(mode) = mode {
        scan = scan.filter(col("mode").eq(lit(mode)));
        drop.push("mode");
    }
    let frame = scan
        .drop(by_name(drop, true, false))
        .collect()
        .map_err(Error::polars(format!(
            "reading {table} of merchant {merchant_id}"
        )))?;
    Ok(frame_json::rows(&frame))
}

/// The merchant's RFM segments (or value classes) from the snapshot's profiles.
pub fn rfm_rows(
    data_dir: &Path,
    snapshot: &str,
    merchant_id: &str,
    by_value_class: bool,
) -> Result<Vec<Value>> {
    let profiles = scan_profiles_of(data_dir, snapshot)?
        .filter(
            col(MERCHANT_ID)
                .eq(lit(merchant_id))
                .and(col(rfm::RFM_SEGMENT).is_not_null()),
        )
        .select([
            col(USER_ID),
            col(rfm::RECENCY_DAYS),
            col("orders").alias(rfm::FREQUENCY),
            col("revenue").alias(rfm::MONETARY),
            col(rfm::RFM_SEGMENT),
            col(rfm::VALUE_CLASS),
        ]);
    let summary = rfm::summary(profiles, by_value_class).map_err(Error::polars(format!(
        "summarizing RFM of merchant {merchant_id}"
    )))?;
    let mut rows = frame_json::rows(&summary);
    for row in &mut rows {
        let key = row["segment"].as_str().unwrap_or_default().to_owned();
        let (name, name_zh, rule) = if by_value_class {
            rfm::value_class(&key).map_or(("", "", ""), |c| (c.name, c.name_zh, ""))
        } else {
            rfm::segment(&key).map_or(("", "", ""), |s| (s.name, s.name_zh, s.rule))
        };
        row["name"] = json!(name);
        row["name_zh"] = json!(name_zh);
        if !by_value_class {
            row["rule"] = json!(rule);
        }
    }
    Ok(rows)
}

/// One customer's profile (any of their linked user ids finds it) with their most recent
/// kept orders from the store; `None` if the merchant has no such user.
pub fn customer_profile(
    data_dir: &Path,
    snapshot: &str,
    store: &mut dyn EventStore,
    merchant_id: &str,
    user_id: &str,
) -> Result<Option<Value>> {
    let customer = scan_report(data_dir, snapshot, "identities")?
        .filter(
            col(MERCHANT_ID)
                .eq(lit(merchant_id))
                .and(col(USER_ID).eq(lit(user_id))),
        )
        .select([col(CUSTOMER_ID)])
        .collect()
        .map_err(Error::polars("resolving the customer id"))?;
    let customer_id = frame_json::rows(&customer)
        .first()
        .and_then(|row| row[CUSTOMER_ID].as_str().map(str::to_owned))
        .unwrap_or_else(|| user_id.to_owned());
    let profile = scan_profiles_of(data_dir, snapshot)?
        .filter(
            col(MERCHANT_ID)
                .eq(lit(merchant_id))
                .and(col(USER_ID).eq(lit(customer_id.as_str()))),
        )
        .collect()
        .map_err(Error::polars("reading the profile"))?;
    let Some(mut profile) = frame_json::rows(&profile).into_iter().next() else {
        return Ok(None);
    };
    let linked: Vec<String> = profile["linked_user_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_else(|| vec![customer_id.clone()]);
    profile["recent_orders"] = Value::Array(recent_orders(store, merchant_id, &linked)?);
    Ok(Some(profile))
}

fn recent_orders(
    store: &mut dyn EventStore,
    merchant_id: &str,
    user_ids: &[String],
) -> Result<Vec<Value>> {
    let Some(scan) = store.scan(merchant_id, TimeRange::ALL)? else {
        return Ok(Vec::new());
    };
    let ids = Series::new("ids".into(), user_ids);
    let events = scan.filter(col(USER_ID).is_in(lit(ids).implode(false), false));
    let orders = purchases::net_order_lines(events)
        .group_by([col(ORDER_ID)])
        .agg([
            col(ORDERED_AT).min(),
            purchases::money(col(NET_CENTS).sum()).alias("amount"),
            col(purchases::NET_QUANTITY).sum().alias("items"),
        ])
        .filter(col("amount").gt(lit(0.0)))
        .sort(
            [ORDERED_AT],
            SortMultipleOptions::default().with_order_descending(true),
        )
        .limit(RECENT_ORDERS as u32)
        .collect()
        .map_err(Error::polars("reading recent orders"))?;
    Ok(frame_json::rows(&orders))
}
