//! Customer analytics: identity stitching, RFM, lifecycle, cohorts, repeat rates, time
//! between orders, behavioural clusters and rule-based audiences.
//!
//! Every function here is a lazy Polars plan over one merchant's stitched events (or tables
//! derived from them), so a report can never mix merchants: callers pass in the scan of a
//! single merchant. [`MerchantAnalytics`] derives the shared tables once and answers every
//! report from them; `recur run` uses it for the snapshot, `recur report` for live reports.

pub mod activity;
pub mod audience;
pub mod cluster;
pub mod cohort;
pub mod identity;
pub mod intervals;
pub mod lifecycle;
pub mod period;
pub mod rfm;

use polars::prelude::*;

/// `value` shifted by `n` rows, or null where the shifted row belongs to another key.
/// The frame must be sorted by `keys`; on sorted data this is much cheaper than a window.
pub(crate) fn shift_within(value: Expr, keys: &[&str], n: i64) -> Expr {
    let same = keys
        .iter()
        .map(|k| col(*k).eq(col(*k).shift(lit(n))))
        .reduce(Expr::and)
        .unwrap_or_else(|| lit(true));
    when(same).then(value.shift(lit(n))).otherwise(lit(NULL))
}

use crate::error::{Error, Result};
use crate::jobs::purchases;
use crate::settings::MerchantSettings;
use crate::store::{
    CATEGORY, CHANNEL, EVENT_TYPE, EventStore, ITEM_ID, OPENID, ORDER_ID, PRICE, PROPERTIES,
    QUANTITY, TS, TimeRange, UNIONID, USER_ID,
};
use activity::ActivitySources;
use period::{Period, TimeZoneName};

/// One merchant's events, stitched, with the tables every report derives from, computed
/// once. Frames are materialized so each report re-reads memory, not Parquet.
pub struct MerchantAnalytics {
    pub merchant_id: String,
    pub zone: TimeZoneName,
    /// The "now" of every report: recency, the current period, forecasts.
    pub as_of_ms: i64,
    /// [`identity::identity_map`]: every user_id and its customer id.
    pub identities: DataFrame,
    /// Events with `user_id` rewritten to the customer id (see [`identity::stitch`]).
    pub events: DataFrame,
    /// Net order lines, kept orders and item categories of the stitched events.
    pub lines: DataFrame,
    pub orders: DataFrame,
    pub categories: DataFrame,
}

impl MerchantAnalytics {
    /// Reads and prepares `merchant_id`'s events; `None` if it has none. `as_of_ms` defaults to
    /// the newest event.
    pub fn load(
        store: &mut dyn EventStore,
        merchant_id: &str,
        settings: &MerchantSettings,
        as_of_ms: Option<i64>,
    ) -> Result<Option<Self>> {
        let Some(scan) = store.scan(merchant_id, TimeRange::ALL)? else {
            return Ok(None);
        };
        let context = |step: &str| format!("{step} for merchant {merchant_id}");
        let raw = scan
            .select([
                col(USER_ID),
                col(EVENT_TYPE),
                col(TS),
                col(CHANNEL),
                col(ITEM_ID),
                col(CATEGORY),
                col(ORDER_ID),
                col(PRICE),
                col(QUANTITY),
                col(OPENID),
                col(UNIONID),
                col(PROPERTIES),
            ])
            .collect()
            .map_err(Error::polars(context("reading events")))?;
        if raw.height() == 0 {
            return Ok(None);
        }
        let as_of_ms = match as_of_ms {
            Some(t) => t,
            None => raw
                .column(TS)
                .and_then(|c| c.cast(&DataType::Int64))
                .map_err(Error::polars(context("finding the newest event")))?
                .i64()
                .map_err(Error::polars(context("finding the newest event")))?
                .max()
                .unwrap_or_default(),
        };
        let identities = identity::identity_map(raw.clone().lazy())
            .collect()
            .map_err(Error::polars(context("stitching identities")))?;
        let stitched = identity::stitched_only(identities.clone().lazy())
            .collect()
            .map_err(Error::polars(context("stitching identities")))?;
        let events = identity::stitch(raw.lazy(), &stitched)
            .collect()
            .map_err(Error::polars(context("stitching identities")))?;
        let lines = purchases::net_order_lines(events.clone().lazy())
            .collect()
            .map_err(Error::polars(context("netting refunds")))?;
        let orders = purchases::kept_orders(lines.clone().lazy())
            .collect()
            .map_err(Error::polars(context("finding kept orders")))?;
        let categories = purchases::item_categories(events.clone().lazy())
            .collect()
            .map_err(Error::polars(context("finding item categories")))?;
        Ok(Some(Self {
            merchant_id: merchant_id.to_owned(),
            zone: settings.time_zone.clone(),
            as_of_ms,
            identities,
            events,
            lines,
            orders,
            categories,
        }))
    }

    fn context(&self, step: &str) -> String {
        format!("{step} for merchant {}", self.merchant_id)
    }

    pub fn sources(&self) -> ActivitySources {
        ActivitySources {
            events: self.events.clone().lazy(),
            orders: self.orders.clone().lazy(),
        }
    }

    /// The index of the period containing `as_of`, in the merchant's zone.
    pub fn current(&self, period: Period) -> i32 {
        period.index_of_date(self.zone.local_date(self.as_of_ms))
    }

    /// The user ids folded into another customer: `user_id`, `customer_id`, `unionid`.
    pub fn stitched(&self) -> Result<DataFrame> {
        identity::stitched_only(self.identities.clone().lazy())
            .collect()
            .map_err(Error::polars(self.context("listing stitched identities")))
    }

    pub fn rfm(&self) -> Result<DataFrame> {
        rfm::rfm(self.orders.clone().lazy(), self.as_of_ms)
            .collect()
            .map_err(Error::polars(self.context("scoring RFM")))
    }

    pub fn lifecycle(&self, period: Period, activity: activity::Activity) -> Result<DataFrame> {
        let active = self.sources().active_periods(activity, period, &self.zone);
        lifecycle::lifecycle_counts(active, self.current(period))
            .map_err(Error::polars(self.context("counting lifecycle stages")))
    }

    /// Each customer's purchase lifecycle stage in the current `period`.
    pub fn customer_stages(&self, period: Period) -> Result<DataFrame> {
        let active =
            self.sources()
                .active_periods(activity::Activity::Purchase, period, &self.zone);
        lifecycle::customer_stages(active, self.current(period))
            .and_then(LazyFrame::collect)
            .map_err(Error::polars(self.context("finding lifecycle stages")))
    }

    pub fn retention(&self, spec: &cohort::RetentionSpec) -> Result<DataFrame> {
        cohort::retention(&self.sources(), spec, &self.zone, self.current(spec.period))
            .map_err(Error::polars(self.context("computing retention")))
    }

    pub fn repeat_rates(&self, period: Period) -> Result<DataFrame> {
        cohort::repeat_rates(&self.sources(), period, &self.zone, self.as_of_ms)
            .map_err(Error::polars(self.context("computing repeat rates")))
    }

    pub fn time_between_orders(&self) -> Result<DataFrame> {
        intervals::time_between_orders(self.lines.clone().lazy(), self.categories.clone().lazy())
            .collect()
            .map_err(Error::polars(self.context("measuring time between orders")))
    }

    /// Clusters the customers of `rfm` (from [`Self::rfm`]).
    pub fn clusters(&self, rfm: &DataFrame) -> Result<Option<cluster::Clustering>> {
        let (frame, names) = cluster::features(
            rfm.clone().lazy(),
            self.events.clone().lazy(),
            self.lines.clone().lazy(),
            self.categories.clone().lazy(),
        )
        .map_err(Error::polars(self.context("building cluster features")))?;
        cluster::cluster(&frame, &names)
    }
}
