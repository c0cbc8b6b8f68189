//! The batch jobs `recur run` executes, one merchant at a time, and the snapshot they publish.
//!
//! Each merchant's events are read once (only its own files), projected to the columns the
//! jobs use, and every job is a lazy Polars plan over that frame. Tenancy is structural: a
//! merchant's outputs are computed from a scan that cannot contain another merchant's rows.
//!
//! To add a job: write a `fn(LazyFrame, ...) -> LazyFrame` module here, call it in
//! [`run_merchant`], add its table to [`MerchantOutput`] and to the snapshot writer.

pub mod profiles;
pub mod purchases;
pub mod recommend;

use polars::prelude::*;
use tracing::info;

use crate::error::{Error, Result};
use crate::snapshot::MerchantSummary;
use crate::store::{
    CATEGORY, EVENT_TYPE, EventStore, ITEM_ID, OPENID, ORDER_ID, PRICE, QUANTITY, TS, TimeRange,
    UNIONID, USER_ID,
};

/// Options of `recur run`.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Recommendations kept per user.
    pub k: usize,
    /// Reference "now" for recency; defaults to each merchant's newest event.
    pub as_of_ms: Option<i64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            k: 20,
            as_of_ms: None,
        }
    }
}

/// The tables one merchant contributes to a snapshot.
pub struct MerchantOutput {
    pub profiles: DataFrame,
    pub recommendations: DataFrame,
    pub popular: DataFrame,
    pub summary: MerchantSummary,
}

/// Runs every job for every merchant and publishes the result as the new current snapshot
/// under `data_dir`. `on_merchant` hears of each merchant before its jobs start.
pub fn run_all(
    store: &mut dyn EventStore,
    data_dir: &std::path::Path,
    options: RunOptions,
    on_merchant: &mut dyn FnMut(usize, usize, &str),
) -> Result<crate::snapshot::SnapshotManifest> {
    if options.k == 0 {
        return Err(Error::InvalidArgument("k must be at least 1".to_owned()));
    }
    let version = store.version()?;
    let merchants = store.merchants()?;
    let mut outputs = Vec::with_capacity(merchants.len());
    for (i, merchant_id) in merchants.iter().enumerate() {
        on_merchant(i, merchants.len(), merchant_id);
        outputs.extend(run_merchant(store, merchant_id, options)?);
    }
    crate::snapshot::publish(data_dir, outputs, version, options.k)
}

/// Runs every job for one merchant; `None` if it has no events.
pub fn run_merchant(
    store: &mut dyn EventStore,
    merchant_id: &str,
    options: RunOptions,
) -> Result<Option<MerchantOutput>> {
    let Some(scan) = store.scan(merchant_id, TimeRange::ALL)? else {
        return Ok(None);
    };
    let context = |step: &str| format!("{step} for merchant {merchant_id}");
    let events = scan
        .select([
            col(USER_ID),
            col(EVENT_TYPE),
            col(TS),
            col(ITEM_ID),
            col(CATEGORY),
            col(ORDER_ID),
            col(PRICE),
            col(QUANTITY),
            col(OPENID),
            col(UNIONID),
        ])
        .collect()
        .map_err(Error::polars(context("reading events")))?;
    if events.height() == 0 {
        return Ok(None);
    }
    let as_of_ms = match options.as_of_ms {
        Some(t) => t,
        None => {
            newest_event_ms(&events).map_err(Error::polars(context("finding the newest event")))?
        }
    };
    let events = events.lazy();
    let lines = purchases::net_order_lines(events.clone())
        .collect()
        .map_err(Error::polars(context("netting refunds")))?
        .lazy();
    let categories = purchases::item_categories(events.clone())
        .collect()
        .map_err(Error::polars(context("finding item categories")))?
        .lazy();

    let profiles = profiles::profiles(
        merchant_id,
        events.clone(),
        lines.clone(),
        categories.clone(),
    )
    .collect()
    .map_err(Error::polars(context("building profiles")))?;
    let popular = recommend::popular_items(lines.clone(), categories, as_of_ms)
        .collect()
        .map_err(Error::polars(context("ranking popular items")))?;
    let params = recommend::RecommendParams {
        k: options.k,
        as_of_ms,
    };
    let recommendations =
        recommend::recommendations(merchant_id, events, lines, popular.clone().lazy(), params)
            .and_then(LazyFrame::collect)
            .map_err(Error::polars(context("recommending")))?;
    let popular = popular
        .lazy()
        .select([
            lit(merchant_id).alias(crate::store::MERCHANT_ID),
            all().as_expr(),
        ])
        .collect()
        .map_err(Error::polars(context("labelling popular items")))?;
    let summary = summarize(merchant_id, as_of_ms, &profiles)
        .map_err(Error::polars(context("summarizing")))?;
    info!(
        merchant = merchant_id,
        users = summary.users,
        customers = summary.customers,
        recommendations = recommendations.height(),
        "merchant jobs done"
    );
    Ok(Some(MerchantOutput {
        profiles,
        recommendations,
        popular,
        summary,
    }))
}

fn newest_event_ms(events: &DataFrame) -> PolarsResult<i64> {
    let newest = events
        .clone()
        .lazy()
        .select([col(TS).cast(DataType::Int64).max()])
        .collect()?;
    Ok(newest.column(TS)?.i64()?.get(0).unwrap_or_default())
}

fn summarize(
    merchant_id: &str,
    as_of_ms: i64,
    profiles: &DataFrame,
) -> PolarsResult<MerchantSummary> {
    let totals = profiles
        .clone()
        .lazy()
        .select([
            len().cast(DataType::UInt64).alias("users"),
            col("orders")
                .gt(lit(0u32))
                .sum()
                .cast(DataType::UInt64)
                .alias("customers"),
            col("orders")
                .gt(lit(1u32))
                .sum()
                .cast(DataType::UInt64)
                .alias("repeat_customers"),
            col("orders").cast(DataType::UInt64).sum().alias("orders"),
            col("revenue").sum().alias("revenue"),
        ])
        .collect()?;
    let get_u64 = |name: &str| -> PolarsResult<u64> {
        Ok(totals.column(name)?.u64()?.get(0).unwrap_or_default())
    };
    Ok(MerchantSummary {
        merchant_id: merchant_id.to_owned(),
        as_of_ms,
        users: get_u64("users")?,
        customers: get_u64("customers")?,
        repeat_customers: get_u64("repeat_customers")?,
        orders: get_u64("orders")?,
        revenue: totals.column("revenue")?.f64()?.get(0).unwrap_or_default(),
    })
}
