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
pub mod members;
pub mod period;
pub mod rfm;
pub mod summaries;

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

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::event::EventType;
use crate::jobs::purchases::{self, ORDERED_AT};
use crate::settings::MerchantSettings;
use crate::store::{
    CATEGORY, CHANNEL, EVENT_TYPE, EventStore, ITEM_ID, OPENID, ORDER_ID, PRICE, PROPERTIES,
    QUANTITY, SCENE, TS, TimeRange, UNIONID, USER_ID,
};
use activity::{Activity, ActivitySources, LOCAL_DAY};
use period::{AsOf, Period, TimeZoneName, local_day};

/// One merchant's events, stitched, with the tables every report derives from, computed
/// once. Frames are materialized so each report re-reads memory, not Parquet.
pub struct MerchantAnalytics {
    pub merchant_id: String,
    pub zone: TimeZoneName,
    /// The "now" of every report: recency, the current period, forecasts.
    pub as_of_ms: i64,
    /// [`identity::identity_map`]: every user_id with a unionid and its customer id.
    pub identities: DataFrame,
    /// Events with `user_id` rewritten to the customer id (see [`identity::stitch`]), without
    /// the wide text columns (openid, properties) that only profiles and one audience rule
    /// read: those come from [`Self::openids`] and [`Self::subscriptions`].
    pub events: DataFrame,
    /// Net order lines, kept orders (with their local day) and item categories of the
    /// stitched events.
    pub lines: DataFrame,
    pub orders: DataFrame,
    pub categories: DataFrame,
    /// [`crate::jobs::profiles::customer_activity`], when merged from a store's summaries.
    activity: Option<DataFrame>,
    /// `user_id`, `ts`, `openid`: events with an openid, or each user_id's latest one.
    openid_rows: LazyFrame,
    /// Lazy reads of the purchase, subscribe and identify events only.
    purchases: LazyFrame,
    subscribes: LazyFrame,
    identifies: LazyFrame,
    stitched: DataFrame,
    /// Distinct (customer, period) pairs per activity and period, computed on first use:
    /// lifecycle, retention and stages share them.
    active: Mutex<HashMap<(Activity, Period), DataFrame>>,
}

impl MerchantAnalytics {
    /// Reads and prepares `merchant_id`'s events up to `as_of` (default: all of them, and
    /// "now" is the newest event); `None` if it has none by then. Events after `as_of` are
    /// not read at all, so no output can depend on them.
    pub fn load(
        store: &mut dyn EventStore,
        merchant_id: &str,
        settings: &MerchantSettings,
        as_of: Option<AsOf>,
    ) -> Result<Option<Self>> {
        let as_of_ms = as_of
            .map(|a| a.cutoff_ms(&settings.time_zone))
            .transpose()?;
        let range = TimeRange {
            start_ms: None,
            end_ms: as_of_ms.map(|t| t.saturating_add(1)),
        };
        let Some(scan) = store.scan(merchant_id, range)? else {
            return Ok(None);
        };
        let context = |step: &str| format!("{step} for merchant {merchant_id}");
        let mut columns = vec![
            col(USER_ID),
            col(EVENT_TYPE),
            col(TS),
            col(CHANNEL),
            col(ITEM_ID),
            col(CATEGORY),
            col(ORDER_ID),
            col(PRICE),
            col(QUANTITY),
        ];
        // Unionids serve stitching and profiles, which a store that aggregates answers itself.
        let summaries = match store.aggregates() {
            Some(aggregates) => Some(aggregates.user_summaries(merchant_id, range)?.lazy()),
            None => {
                columns.push(col(UNIONID));
                None
            }
        };
        let raw = scan
            .clone()
            .select(columns)
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
        // The first phase of identities, order lines, categories and openids: from the
        // store where it aggregates itself (ClickHouse's GROUP BY), else from these rows.
        let aggregates = store.aggregates();
        // Reads of one event type: the server filters where it aggregates, else the scan
        // already planned (the same files, so every table is of the same events).
        let of_type = |kind: EventType| match aggregates {
            Some(store) => store.scan_types(merchant_id, range, &[kind]),
            None => Ok(scan.clone().filter(col(EVENT_TYPE).eq(lit(kind.as_str())))),
        };
        let purchases = of_type(EventType::Purchase)?;
        let subscribes = of_type(EventType::Subscribe)?;
        let identifies = of_type(EventType::Identify)?;
        let users = match &summaries {
            Some(summaries) => summaries::user_unionids(summaries.clone()),
            None => identity::user_unionids(raw.clone().lazy()),
        };
        let identities = identity::identity_map_of_users(users)
            .collect()
            .map_err(Error::polars(context("stitching identities")))?;
        let stitched = identity::stitched_only(identities.clone().lazy())
            .collect()
            .map_err(Error::polars(context("stitching identities")))?;
        let events = identity::stitch(raw.lazy(), &stitched)
            .collect()
            .map_err(Error::polars(context("stitching identities")))?;
        let line_values = match aggregates {
            // Sums per buyer: stitched, they merge into the same lines as the rows would.
            Some(store) => {
                identity::stitch(store.order_line_sums(merchant_id, range)?.lazy(), &stitched)
            }
            None => purchases::order_line_values(events.clone().lazy()),
        };
        let lines = purchases::merge_order_lines(line_values)
            .collect()
            .map_err(Error::polars(context("netting refunds")))?;
        let orders = purchases::kept_orders(lines.clone().lazy())
            .with_column(local_day(col(ORDERED_AT), &settings.time_zone).alias(LOCAL_DAY))
            .collect()
            .map_err(Error::polars(context("finding kept orders")))?;
        let categories = match aggregates {
            Some(store) => store.item_categories(merchant_id, range)?.lazy(),
            None => purchases::item_categories(events.clone().lazy()),
        }
        .collect()
        .map_err(Error::polars(context("finding item categories")))?;
        // Per-customer activity for profiles, merged from the summaries when there are some.
        let activity = summaries
            .as_ref()
            .map(|summaries| {
                summaries::customer_activity(identity::stitch(summaries.clone(), &stitched))
                    .collect()
                    .map_err(Error::polars(context("merging user summaries")))
            })
            .transpose()?;
        let openid_rows = match summaries {
            // Each user_id's latest openid: the customer's latest is the latest of those.
            Some(summaries) => summaries::openid_rows(summaries),
            None => scan
                .clone()
                .select([col(USER_ID), col(TS), col(OPENID)])
                .filter(col(OPENID).is_not_null()),
        };
        Ok(Some(Self {
            merchant_id: merchant_id.to_owned(),
            zone: settings.time_zone.clone(),
            as_of_ms,
            identities,
            events,
            lines,
            orders,
            categories,
            activity,
            openid_rows,
            purchases,
            subscribes,
            identifies,
            stitched,
            active: Mutex::new(HashMap::new()),
        }))
    }

    /// `user_id` (stitched) and its most recent openid, for customers that have one.
    pub fn openids(&self) -> LazyFrame {
        identity::stitch(self.openid_rows.clone(), &self.stitched)
            .group_by([col(USER_ID)])
            .agg([col(OPENID)
                .sort_by([col(TS)], SortMultipleOptions::default())
                .last()])
    }

    /// Purchase events with where they happened (stitched `user_id`, `item_id`, `scene`,
    /// `channel`, `ts`): the cold-start lists per scene and channel.
    pub fn purchases_in_context(&self) -> LazyFrame {
        let events = self.purchases.clone().select([
            col(USER_ID),
            col(ITEM_ID),
            col(SCENE),
            col(CHANNEL),
            col(TS),
        ]);
        identity::stitch(events, &self.stitched)
    }

    /// Subscribe events (stitched `user_id`, `ts`, `properties`): the consents audiences test.
    pub fn subscriptions(&self) -> LazyFrame {
        let events = self
            .subscribes
            .clone()
            .select([col(USER_ID), col(TS), col(PROPERTIES)]);
        identity::stitch(events, &self.stitched)
    }

    /// Identify events (stitched `user_id`, `ts`, `properties`): member attributes.
    pub fn identifications(&self) -> LazyFrame {
        let events = self
            .identifies
            .clone()
            .select([col(USER_ID), col(TS), col(PROPERTIES)]);
        identity::stitch(events, &self.stitched)
    }

    /// [`crate::jobs::profiles::profiles`] of the stitched events.
    pub fn base_profiles(&self) -> Result<DataFrame> {
        let members = members::member_attributes(self.identifications())?;
        let hours = activity::active_hours(self.events.clone().lazy(), &self.zone);
        let customer_activity = match &self.activity {
            Some(merged) => merged.clone().lazy(),
            None => crate::jobs::profiles::customer_activity(self.events.clone().lazy()),
        };
        crate::jobs::profiles::profiles(
            &self.merchant_id,
            customer_activity,
            self.lines.clone().lazy(),
            self.categories.clone().lazy(),
            self.openids(),
            members.lazy().join(
                hours,
                [col(USER_ID)],
                [col(USER_ID)],
                JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
            ),
        )
        .collect()
        .map_err(Error::polars(self.context("building profiles")))
    }

    /// Distinct `user_id`, `period` pairs of `activity`, cached.
    pub fn active_periods(&self, activity: Activity, period: Period) -> PolarsResult<LazyFrame> {
        let mut cache = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(frame) = cache.get(&(activity, period)) {
            return Ok(frame.clone().lazy());
        }
        let frame = self.sources().active_periods(activity, period).collect()?;
        cache.insert((activity, period), frame.clone());
        Ok(frame.lazy())
    }

    fn context(&self, step: &str) -> String {
        format!("{step} for merchant {}", self.merchant_id)
    }

    pub fn sources(&self) -> ActivitySources {
        ActivitySources {
            events: self.events.clone().lazy(),
            orders: self.orders.clone().lazy(),
            zone: self.zone.clone(),
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

    pub fn lifecycle(&self, period: Period, activity: Activity) -> Result<DataFrame> {
        let active = self
            .active_periods(activity, period)
            .map_err(Error::polars(self.context("finding active periods")))?;
        lifecycle::lifecycle_counts(active, self.current(period))
            .map_err(Error::polars(self.context("counting lifecycle stages")))
    }

    /// Each customer's purchase lifecycle stage in the current `period`.
    pub fn customer_stages(&self, period: Period) -> Result<DataFrame> {
        let active = self
            .active_periods(Activity::Purchase, period)
            .map_err(Error::polars(self.context("finding active periods")))?;
        lifecycle::customer_stages(active, self.current(period))
            .and_then(LazyFrame::collect)
            .map_err(Error::polars(self.context("finding lifecycle stages")))
    }

    pub fn retention(&self, spec: &cohort::RetentionSpec) -> Result<DataFrame> {
        let active = |activity: Activity| self.active_periods(activity, spec.period);
        cohort::retention(&active, spec, self.current(spec.period))
            .map_err(Error::polars(self.context("computing retention")))
    }

    pub fn repeat_rates(&self, period: Period) -> Result<DataFrame> {
        cohort::repeat_rates(&self.sources(), period, self.as_of_ms)
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
            self.lines.clone().lazy(),
            self.categories.clone().lazy(),
        )
        .map_err(Error::polars(self.context("building cluster features")))?;
        cluster::cluster(&frame, &names)
    }
}
