//! A campaign's measured effect: the customers it delivered to (treated) against its holdout,
//! over a window after each one's send time (the planned time for the holdout).
//!
//! A converter has a kept order (net of refunds) in `(t, t + window]`; revenue is those
//! orders' net amount. The lift is the difference of conversion rates with a 95% Wald
//! interval, and the relative lift (ratio − 1) with a 95% interval on the log of the ratio
//! (delta method) — the textbook two-proportion comparison an analyst can check by hand.

use polars::prelude::*;
use serde::Serialize;

use super::outbox::{OutboxState, Status};
use crate::error::{Error, Result};
use crate::event::EventType;
use crate::jobs::purchases::{NET_CENTS, ORDERED_AT};
use crate::store::{EVENT_TYPE, TS, USER_ID};

const DAY_MS: i64 = 86_400_000;
/// The two-sided 95% normal quantile.
const Z95: f64 = 1.959_963_984_540_054;

/// One arm of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arm {
    pub customers: u64,
    pub converters: u64,
    pub conversion_rate: Option<f64>,
    pub revenue: f64,
    pub revenue_per_customer: Option<f64>,
    /// Treated only: share with a `push_open` in the window.
    pub push_open_rate: Option<f64>,
}

/// Treated against holdout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lift {
    /// Treated rate − holdout rate.
    pub absolute: Option<f64>,
    pub absolute_ci: Option<[f64; 2]>,
    /// Treated rate ÷ holdout rate − 1.
    pub relative: Option<f64>,
    pub relative_ci: Option<[f64; 2]>,
    /// Whether the absolute interval excludes zero.
    pub distinguishable: bool,
}

/// `recur report campaign`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignReport {
    pub merchant_id: String,
    pub campaign: String,
    pub window_days: u32,
    pub treated: Arm,
    pub holdout: Arm,
    pub lift: Lift,
    /// Messages planned and not delivered yet, failed, or refused: not in either arm.
    pub pending: u64,
    pub failed: u64,
    pub refused: u64,
    /// A plain sentence on the result.
    pub summary: String,
    /// An uplift-targeted campaign: the past campaign its model learned from, with that
    /// campaign's Qini table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplift: Option<super::uplift::UpliftTraining>,
}

/// Measures `campaign` of `merchant_id` over `window_days` from the delivery log and the
/// merchant's stored events (stitched as the snapshots stitch them).
pub fn measure(
    data_dir: &std::path::Path,
    store: &mut dyn crate::store::EventStore,
    merchant_id: &str,
    campaign: &str,
    window_days: u32,
) -> Result<CampaignReport> {
    let settings = crate::settings::MerchantSettings::load(data_dir, merchant_id)?;
    let outbox = super::outbox::read_outbox(data_dir, merchant_id)?;
    let (orders, events) =
        match crate::analytics::MerchantAnalytics::load(store, merchant_id, &settings, None)? {
            Some(analytics) => (analytics.orders.lazy(), analytics.events.lazy()),
            None => (empty_orders(), empty_events()),
        };
    let mut report = campaign_report(
        merchant_id,
        campaign,
        &outbox,
        orders.clone(),
        events,
        window_days,
    )?;
    report.uplift = targeting_model(data_dir, merchant_id, campaign, &outbox, orders)?;
    Ok(report)
}

/// What an uplift-targeted campaign's model learned from, as it was when the campaign was
/// first planned (None for other campaigns, or before anything was planned).
fn targeting_model(
    data_dir: &std::path::Path,
    merchant_id: &str,
    campaign: &str,
    outbox: &OutboxState,
    orders: LazyFrame,
) -> Result<Option<super::uplift::UpliftTraining>> {
    let campaigns = super::definition::load_campaigns(data_dir, merchant_id)?;
    let Some(definition) = campaigns.iter().find(|c| c.name == campaign) else {
        return Ok(None);
    };
    if definition.target.is_none() {
        return Ok(None);
    }
    let Some(planned_at) = outbox
        .of_campaign(campaign)
        .map(|e| e.message.planned_at_ms)
        .min()
    else {
        return Ok(None);
    };
    let Some(past) = super::uplift::past_campaign(&campaigns, outbox, definition, planned_at)
    else {
        return Ok(None);
    };
    // The campaign was planned with this model, so it learned then; should it not now (the
    // events were compacted away, say), the report still measures the lift without it.
    Ok(super::uplift::learn(outbox, &past, orders, planned_at)
        .ok()
        .map(|learned| learned.training))
}

fn empty_orders() -> LazyFrame {
    df!(
        USER_ID => Vec::<String>::new(),
        ORDERED_AT => Vec::<i64>::new(),
        NET_CENTS => Vec::<i64>::new(),
    )
    .unwrap_or_default()
    .lazy()
}

fn empty_events() -> LazyFrame {
    df!(
        USER_ID => Vec::<String>::new(),
        EVENT_TYPE => Vec::<String>::new(),
        TS => Vec::<i64>::new(),
    )
    .unwrap_or_default()
    .lazy()
}

/// Measures `campaign` from its delivery log entries and the merchant's stitched `orders`
/// (`user_id`, `ordered_at`, `net_cents`: kept orders) and `events` (`user_id`, `type`, `ts`).
pub fn campaign_report(
    merchant_id: &str,
    campaign: &str,
    outbox: &OutboxState,
    orders: LazyFrame,
    events: LazyFrame,
    window_days: u32,
) -> Result<CampaignReport> {
    let (mut users, mut starts, mut treated) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pending, mut failed, mut refused) = (0, 0, 0);
    for entry in outbox.of_campaign(campaign) {
        let start = match entry.status {
            Status::Delivered { at_ms } => (at_ms, true),
            Status::HeldOut => (entry.message.send_at_ms, false),
            Status::Pending => {
                pending += 1;
                continue;
            }
            Status::Failed { .. } => {
                failed += 1;
                continue;
            }
            Status::Refused => {
                refused += 1;
                continue;
            }
        };
        users.push(entry.message.user_id.clone());
        starts.push(start.0);
        treated.push(start.1);
    }
    let window_ms = i64::from(window_days) * DAY_MS;
    let arms = df!(
        USER_ID => users,
        "start_ms" => starts,
        "treated" => treated,
    )
    .map_err(Error::polars("listing the campaign's customers"))?
    .lazy()
    .with_row_index(ROW, None);
    let arms = with_conversions(arms, orders, window_ms);
    let opened = arms
        .clone()
        .join(
            events
                .filter(col(EVENT_TYPE).eq(lit(EventType::PushOpen.as_str())))
                .select([col(USER_ID), col(TS).cast(DataType::Int64).alias("open_ms")]),
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(in_window(col("open_ms"), window_ms))
        .group_by([col(ROW)])
        .agg([len().alias("opens")]);
    let per_arm = arms
        .join(
            opened,
            [col(ROW)],
            [col(ROW)],
            JoinArgs::new(JoinType::Left),
        )
        .group_by([col("treated")])
        .agg([
            len().cast(DataType::UInt64).alias("customers"),
            col("cents")
                .is_not_null()
                .cast(DataType::UInt64)
                .sum()
                .alias("converters"),
            col("cents").fill_null(lit(0i64)).sum().alias("cents"),
            col("opens")
                .is_not_null()
                .cast(DataType::UInt64)
                .sum()
                .alias("openers"),
        ])
        .collect()
        .map_err(Error::polars("measuring the campaign"))?;
    let arm = |is_treated: bool| -> Result<Arm> {
        let row = per_arm
            .clone()
            .lazy()
            .filter(col("treated").eq(lit(is_treated)))
            .collect()
            .map_err(Error::polars("measuring the campaign"))?;
        // An arm nobody is in has no row (and polars panics on `get(0)` of nothing).
        let present = row.height() > 0;
        let get = |name: &str| -> u64 {
            if !present {
                return 0;
            }
            row.column(name)
                .ok()
                .and_then(|c| c.cast(&DataType::UInt64).ok())
                .and_then(|c| c.u64().ok().and_then(|c| c.get(0)))
                .unwrap_or(0)
        };
        let customers = get("customers");
        let converters = get("converters");
        let revenue = present
            .then(|| row.column("cents").ok())
            .flatten()
            .and_then(|c| c.i64().ok().and_then(|c| c.get(0)))
            .unwrap_or(0) as f64
            / 100.0;
        let share = |n: u64| (customers > 0).then(|| n as f64 / customers as f64);
        Ok(Arm {
            customers,
            converters,
            conversion_rate: share(converters),
            revenue,
            revenue_per_customer: (customers > 0).then(|| revenue / customers as f64),
            push_open_rate: if is_treated {
                share(get("openers"))
            } else {
                None
            },
        })
    };
    let (treated, holdout) = (arm(true)?, arm(false)?);
    let lift = lift(&treated, &holdout);
    let summary = summary(&treated, &holdout, &lift, window_days);
    Ok(CampaignReport {
        merchant_id: merchant_id.to_owned(),
        campaign: campaign.to_owned(),
        window_days,
        treated,
        holdout,
        lift,
        pending,
        failed,
        refused,
        summary,
        uplift: None,
    })
}

/// The row index of a customer's window (a triggered campaign may reach one customer more
/// than once, each time with its own window).
pub(crate) const ROW: &str = "row";

/// Whether `at` falls in the window `(start_ms, start_ms + window_ms]`.
fn in_window(at: Expr, window_ms: i64) -> Expr {
    at.clone()
        .gt(col("start_ms"))
        .and(at.lt_eq(col("start_ms") + lit(window_ms)))
}

/// `arms` (`row`, `user_id`, `start_ms`, …) with `cents`: the net amount of the customer's
/// kept orders in `(start_ms, start_ms + window_ms]`, null for a customer who bought nothing
/// then (a converter is a row with `cents` not null).
pub(crate) fn with_conversions(arms: LazyFrame, orders: LazyFrame, window_ms: i64) -> LazyFrame {
    let bought = arms
        .clone()
        .select([col(ROW), col(USER_ID), col("start_ms")])
        .join(
            orders.select([col(USER_ID), col(ORDERED_AT), col(NET_CENTS)]),
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(in_window(col(ORDERED_AT), window_ms))
        .group_by([col(ROW)])
        .agg([col(NET_CENTS).sum().alias("cents")]);
    arms.join(
        bought,
        [col(ROW)],
        [col(ROW)],
        JoinArgs::new(JoinType::Left),
    )
}

/// The two-proportion comparison.
pub fn lift(treated: &Arm, holdout: &Arm) -> Lift {
    let (Some(pt), Some(ph)) = (treated.conversion_rate, holdout.conversion_rate) else {
        return Lift {
            absolute: None,
            absolute_ci: None,
            relative: None,
            relative_ci: None,
            distinguishable: false,
        };
    };
    let (nt, nh) = (treated.customers as f64, holdout.customers as f64);
    let absolute = pt - ph;
    let se = (pt * (1.0 - pt) / nt + ph * (1.0 - ph) / nh).sqrt();
    let absolute_ci = [absolute - Z95 * se, absolute + Z95 * se];
    let (relative, relative_ci) = if pt > 0.0 && ph > 0.0 {
        let log_ratio = (pt / ph).ln();
        let se_log = ((1.0 - pt) / (nt * pt) + (1.0 - ph) / (nh * ph)).sqrt();
        (
            Some(pt / ph - 1.0),
            Some([
                (log_ratio - Z95 * se_log).exp() - 1.0,
                (log_ratio + Z95 * se_log).exp() - 1.0,
            ]),
        )
    } else {
        (None, None)
    };
    Lift {
        absolute: Some(absolute),
        absolute_ci: Some(absolute_ci),
        relative,
        relative_ci,
        // A zero-width interval (both rates 0 or 1) proves nothing.
        distinguishable: se > 0.0 && (absolute_ci[0] > 0.0 || absolute_ci[1] < 0.0),
    }
}

fn summary(treated: &Arm, holdout: &Arm, lift: &Lift, window_days: u32) -> String {
    let points = |x: f64| format!("{:+.1} points", x * 100.0);
    match (lift.absolute, lift.absolute_ci) {
        (Some(absolute), Some([lo, hi])) => {
            let verdict = if lift.distinguishable && absolute > 0.0 {
                "the push raised repeat purchases: the lift is distinguishable from zero"
            } else if lift.distinguishable {
                "the push lowered repeat purchases: the drop is distinguishable from zero"
            } else {
                "the lift is not distinguishable from zero: it may be chance"
            };
            format!(
                "Within {window_days} days, {} of {} treated customers bought against {} of {} held out: {} (95% interval {} to {}); {verdict}.",
                treated.converters,
                treated.customers,
                holdout.converters,
                holdout.customers,
                points(absolute),
                points(lo),
                points(hi),
            )
        }
        _ if treated.customers == 0 => {
            "Nothing delivered yet: no lift to measure (run `recur campaign send`).".to_owned()
        }
        _ => format!(
            "{} treated customers and no holdout: without a holdout the lift cannot be measured.",
            treated.customers
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(customers: u64, converters: u64) -> Arm {
        Arm {
            customers,
            converters,
            conversion_rate: Some(converters as f64 / customers as f64),
            revenue: 0.0,
            revenue_per_customer: None,
            push_open_rate: None,
        }
    }

    #[test]
    fn the_lift_and_its_interval_match_a_hand_computation() {
        // 300/1000 against 200/1000: +10 points, se = sqrt(.21/1000 + .16/1000) = 0.019235.
        let lift = lift(&arm(1000, 300), &arm(1000, 200));
        let [lo, hi] = lift.absolute_ci.expect("interval");
        assert!((lift.absolute.expect("lift") - 0.1).abs() < 1e-12);
        assert!((lo - (0.1 - Z95 * 0.019_235_384)).abs() < 1e-6, "{lo}");
        assert!((hi - (0.1 + Z95 * 0.019_235_384)).abs() < 1e-6, "{hi}");
        assert!(lift.distinguishable);
        assert!((lift.relative.expect("relative") - 0.5).abs() < 1e-12);
        let [rlo, rhi] = lift.relative_ci.expect("interval");
        assert!(rlo > 0.0 && rhi > 0.5 && rlo < 0.5, "{rlo} {rhi}");

        // 21/100 against 20/100: not distinguishable.
        let small = super::lift(&arm(100, 21), &arm(100, 20));
        assert!(!small.distinguishable);
        let text = summary(&arm(100, 21), &arm(100, 20), &small, 7);
        assert!(text.contains("not distinguishable"), "{text}");
    }
}
