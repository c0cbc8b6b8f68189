//! Lists for other systems: every user's recommendations as JSONL, and the customers worth
//! showing first.
//!
//! The export names every id a customer is known by, so a push system keyed by any of a
//! stitched customer's user ids finds the same list the API serves for it.

use std::io::Write;
use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

use super::{ListFilter, ServingSnapshot, SnapshotTable, require_current, scan_current};
use crate::error::{Error, Result};
use crate::store::{MERCHANT_ID, USER_ID};

/// Writes every user's top-`k` as JSONL: `{"merchant_id","user_id","customer_id","items":[...]}`,
/// sorted by merchant and user id, one line for each id of a stitched customer; `filter`
/// narrows each list as the API's does (`exclude_purchased` gives the explore lists). Returns
/// the number of lines written.
pub fn export_recommendations(
    data_dir: &Path,
    k: usize,
    merchant: Option<&str>,
    filter: &ListFilter,
    out: &mut dyn Write,
) -> Result<u64> {
    let name = require_current(data_dir)?;
    let snapshot = ServingSnapshot::load(data_dir, &name)?;
    let mut lines = 0u64;
    for merchant_id in snapshot.merchant_ids() {
        if merchant.is_some_and(|m| m != merchant_id) {
            continue;
        }
        // The merchant's business rules, as they stand now.
        let rules = crate::settings::MerchantSettings::load(data_dir, merchant_id)?.list_rules;
        let mut rendered: Option<(&str, Vec<super::RecommendedItem>)> = None;
        for (user, customer) in snapshot.list_owners(merchant_id) {
            let items = match &rendered {
                Some((c, items)) if *c == customer => items.clone(),
                _ => snapshot.items_of(merchant_id, customer, k, filter, &rules),
            };
            let line = serde_json::json!({
                "merchant_id": merchant_id,
                "user_id": user,
                "customer_id": customer,
                "items": items,
            });
            write_line(out, &line)?;
            rendered = Some((customer, items));
            lines += 1;
        }
    }
    Ok(lines)
}

/// Writes every item's `k` most frequent companions as JSONL:
/// `{"merchant_id","item_id","similar":[{"item_id","score","reason","detail"}]}`, sorted by
/// merchant and item id. Returns the number of lines written.
pub fn export_similar(
    data_dir: &Path,
    k: usize,
    merchant: Option<&str>,
    out: &mut dyn Write,
) -> Result<u64> {
    let name = require_current(data_dir)?;
    let snapshot = ServingSnapshot::load(data_dir, &name)?;
    let mut lines = 0u64;
    for merchant_id in snapshot.merchant_ids() {
        if merchant.is_some_and(|m| m != merchant_id) {
            continue;
        }
        for item_id in snapshot.items_with_similar(merchant_id) {
            let similar = snapshot
                .similar(merchant_id, item_id, k)
                .flatten()
                .unwrap_or_default();
            let line = serde_json::json!({
                "merchant_id": merchant_id,
                "item_id": item_id,
                "similar": similar,
            });
            write_line(out, &line)?;
            lines += 1;
        }
    }
    Ok(lines)
}

/// Writes one JSON value and a newline.
fn write_line(out: &mut dyn Write, line: &serde_json::Value) -> Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(|e| Error::io("write", "stdout")(e.into()))?;
    out.write_all(b"\n").map_err(Error::io("write", "stdout"))
}

/// A customer worth showing first: the most frequent buyers of a merchant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerHighlight {
    pub merchant_id: String,
    pub user_id: String,
    pub orders: u32,
    pub revenue: f64,
    pub last_purchase_ms: Option<i64>,
}

/// The `per_merchant` customers with the most orders in each merchant (ties by user id).
pub fn top_customers(data_dir: &Path, per_merchant: usize) -> Result<Vec<CustomerHighlight>> {
    let frame = scan_current(data_dir, SnapshotTable::Profiles)?
        .filter(col("orders").gt(lit(0u32)))
        .sort(
            [MERCHANT_ID, "orders", USER_ID],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
        .group_by_stable([col(MERCHANT_ID)])
        .head(Some(per_merchant))
        .select([
            col(MERCHANT_ID),
            col(USER_ID),
            col("orders"),
            col("revenue"),
            col("last_purchase_ms"),
        ])
        .collect()
        .map_err(Error::polars("finding top customers"))?;
    let typed = (|| -> PolarsResult<_> {
        Ok((
            frame.column(MERCHANT_ID)?.str()?.clone(),
            frame.column(USER_ID)?.str()?.clone(),
            frame.column("orders")?.u32()?.clone(),
            frame.column("revenue")?.f64()?.clone(),
            frame.column("last_purchase_ms")?.i64()?.clone(),
        ))
    })()
    .map_err(Error::polars("reading top customers"))?;
    let (m, u, o, r, l) = typed;
    Ok(m.iter()
        .zip(u.iter())
        .zip(o.iter())
        .zip(r.iter())
        .zip(l.iter())
        .filter_map(|((((m, u), o), r), l)| {
            Some(CustomerHighlight {
                merchant_id: m?.to_owned(),
                user_id: u?.to_owned(),
                orders: o.unwrap_or_default(),
                revenue: r.unwrap_or_default(),
                last_purchase_ms: l,
            })
        })
        .collect())
}
