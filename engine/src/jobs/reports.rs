//! The report tables a run stores in the snapshot, so the API serves them without reading
//! events: lifecycle (day, week, month), retention (week and month, both modes), repeat
//! rates (week and month cohorts), RFM summaries and time between orders, all of purchases.
//! Other activities and periods are computed live by `recur report`.

use polars::prelude::*;

use crate::analytics::MerchantAnalytics;
use crate::analytics::activity::{Activity, PERIOD};
use crate::analytics::cohort::{COHORT, RetentionMode, RetentionSpec};
use crate::analytics::period::Period;
use crate::error::{Error, Result};
use crate::snapshot::SnapshotTable;

pub const PERIOD_KIND: &str = "period_kind";
pub const PERIOD_START: &str = "period_start";
pub const COHORT_START: &str = "cohort_start";

/// Adds a text label next to the period index column `index`, e.g. `2026-03-09` or
/// `2026-03`. Report tables have one row per period, so this maps a few hundred values.
pub fn with_period_label(
    frame: DataFrame,
    period: Period,
    index: &str,
    label: &str,
) -> PolarsResult<DataFrame> {
    let labels: StringChunked = frame
        .column(index)?
        .i32()?
        .iter()
        .map(|p| p.map(|p| period.label(p)))
        .collect();
    let mut frame = frame;
    frame.with_column(labels.with_name(label.into()).into_column())?;
    Ok(frame)
}

/// Prepends `merchant_id` and the constant `tags` columns.
pub(crate) fn tagged(
    frame: DataFrame,
    tags: &[(&str, &str)],
    merchant_id: &str,
) -> PolarsResult<DataFrame> {
    let mut columns = vec![lit(merchant_id).alias(crate::store::MERCHANT_ID)];
    columns.extend(tags.iter().map(|(name, value)| lit(*value).alias(*name)));
    columns.push(all().as_expr());
    frame.lazy().select(columns).collect()
}

fn stack(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    concat(
        frames.into_iter().map(IntoLazy::lazy).collect::<Vec<_>>(),
        UnionArgs::default(),
    )?
    .collect()
}

/// Every stored report of one merchant, by snapshot table.
pub fn report_tables(analytics: &MerchantAnalytics) -> Result<Vec<(SnapshotTable, DataFrame)>> {
    let m = analytics.merchant_id.as_str();
    let err = |what: &str| Error::polars(format!("tabulating {what} for merchant {m}"));
    let mut lifecycle = Vec::new();
    for period in Period::ALL {
        let counts = analytics.lifecycle(period, Activity::Purchase)?;
        let counts =
            with_period_label(counts, period, PERIOD, PERIOD_START).map_err(err("lifecycle"))?;
        lifecycle
            .push(tagged(counts, &[(PERIOD_KIND, period.as_str())], m).map_err(err("lifecycle"))?);
    }
    let mut retention = Vec::new();
    let mut repeat = Vec::new();
    for period in [Period::Week, Period::Month] {
        for mode in [RetentionMode::FirstTime, RetentionMode::Recurring] {
            let spec = RetentionSpec {
                period,
                mode,
                ..RetentionSpec::default()
            };
            let table = analytics.retention(&spec)?;
            let table =
                with_period_label(table, period, COHORT, COHORT_START).map_err(err("retention"))?;
            retention.push(
                tagged(
                    table,
                    &[(PERIOD_KIND, period.as_str()), ("mode", mode.as_str())],
                    m,
                )
                .map_err(err("retention"))?,
            );
        }
        let rates = analytics.repeat_rates(period)?;
        let rates =
            with_period_label(rates, period, COHORT, COHORT_START).map_err(err("repeat rates"))?;
        repeat.push(
            tagged(rates, &[(PERIOD_KIND, period.as_str())], m).map_err(err("repeat rates"))?,
        );
    }
    let intervals =
        tagged(analytics.time_between_orders()?, &[], m).map_err(err("time between orders"))?;
    Ok(vec![
        (
            SnapshotTable::Lifecycle,
            stack(lifecycle).map_err(err("lifecycle"))?,
        ),
        (
            SnapshotTable::Retention,
            stack(retention).map_err(err("retention"))?,
        ),
        (
            SnapshotTable::Repeat,
            stack(repeat).map_err(err("repeat rates"))?,
        ),
        (SnapshotTable::TimeBetweenOrders, intervals),
    ])
}
