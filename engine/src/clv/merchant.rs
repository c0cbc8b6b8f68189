//! Per-merchant repeat-purchase forecasts for `recur run`: a daily BG/NBD and Gamma-Gamma fit
//! on the merchant's kept orders, turned into the fields every profile shows.
//!
//! Days are the merchant's local calendar days and the calibration ends on the run's as-of
//! day. A merchant with too few repeat buyers for a stable fit gets no forecasts (and a
//! reason in the manifest), never made-up numbers.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::bgnbd::{self, BgNbdParams};
use super::gamma_gamma::{self, GammaGammaParams};
use super::io::SummaryColumns;
use super::predict::{Horizon, forecast};
use super::summary::{SummaryOptions, TimeUnit, summarize};
use super::{GroupedSpend, GroupedSummary};
use crate::analytics::period::{TimeZoneName, local_date};
use crate::error::{Error, Result};
use crate::jobs::purchases::{NET_CENTS, ORDERED_AT, money};
use crate::store::USER_ID;

pub const P_ALIVE: &str = "p_alive";
pub const EXPECTED_PURCHASES_30D: &str = "expected_purchases_30d";
pub const EXPECTED_ORDER_VALUE: &str = "expected_order_value";
pub const CLV_12M: &str = "clv_12m";
/// Fits need this many customers with a repeat purchase.
pub const MIN_REPEAT_CUSTOMERS: u64 = 20;
const PENALIZER: f64 = 0.001;
const HORIZON: Horizon = Horizon {
    periods: 30.0,
    clv_months: 12,
    periods_per_month: 30.0,
    monthly_discount: 0.01,
};

/// The fitted parameters, as the snapshot manifest records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantModels {
    pub customers: u64,
    /// BG/NBD r, α (per day), a, b; null when not fitted.
    pub bgnbd: Option<[f64; 4]>,
    /// Gamma-Gamma p, q, v; null when not fitted.
    pub gamma_gamma: Option<[f64; 3]>,
    /// Why a model was not fitted, if one was not.
    pub note: Option<String>,
    /// Logistic regression vs BG/NBD at "buys again within 30 days", when there was enough
    /// history to compare them.
    #[serde(default)]
    pub repurchase: Option<super::repurchase::RepurchaseComparison>,
}

/// The lifetimes-style daily summary of kept `orders` (local days in `zone`) with the
/// calibration ending on the local day of `cutoff_ms`; orders after it are ignored.
pub fn daily_summary(
    orders: LazyFrame,
    zone: &TimeZoneName,
    cutoff_ms: i64,
    with_amount: bool,
) -> Result<DataFrame> {
    let transactions = orders
        .filter(col(ORDERED_AT).lt_eq(lit(cutoff_ms)))
        .select([
            col(USER_ID),
            local_date(col(ORDERED_AT), zone)
                .cast(DataType::Int32)
                .cast(DataType::Int64)
                .alias("day"),
            money(col(NET_CENTS)).alias("amount"),
        ])
        // Kept orders come from a parallel group-by in no fixed order; floating-point sums
        // (spend per period) and the fits' likelihood sums depend on order, so fix it.
        .sort(
            [USER_ID, "day", "amount"],
            SortMultipleOptions::default().with_multithreaded(false),
        );
    let options = SummaryOptions {
        calibration_end: zone.local_date(cutoff_ms),
        observation_end: None,
        unit: TimeUnit::Day,
    };
    summarize(transactions, USER_ID, with_amount, options)?
        .collect()
        .map_err(Error::polars(
            "summarizing orders for the repeat-purchase models",
        ))
}

/// Forecasts for each customer with a kept order: `user_id`, `p_alive`,
/// `expected_purchases_30d`, `expected_order_value`, `clv_12m` (the last two null without a
/// spend model), and what was fitted.
pub fn forecasts(
    orders: LazyFrame,
    zone: &TimeZoneName,
    as_of_ms: i64,
) -> Result<(Option<DataFrame>, MerchantModels)> {
    let summary = daily_summary(orders, zone, as_of_ms, true)?;
    let columns = SummaryColumns::from_frame(&summary)?;
    let customers = columns.frequency.len() as u64;
    let repeaters = columns.frequency.iter().filter(|f| **f > 0.0).count() as u64;
    let mut models = MerchantModels {
        customers,
        bgnbd: None,
        gamma_gamma: None,
        note: None,
        repurchase: None,
    };
    if repeaters < MIN_REPEAT_CUSTOMERS {
        models.note = Some(format!(
            "{repeaters} customers with a repeat purchase; the models need at least {MIN_REPEAT_CUSTOMERS}"
        ));
        return Ok((None, models));
    }
    let grouped = GroupedSummary::from_columns(&columns.frequency, &columns.recency, &columns.age)?;
    let counts: BgNbdParams = match bgnbd::fit(&grouped, PENALIZER) {
        Ok(fit) => fit.params,
        Err(e) => {
            models.note = Some(e.to_string());
            return Ok((None, models));
        }
    };
    models.bgnbd = Some([counts.r, counts.alpha, counts.a, counts.b]);
    let monetary = columns.monetary_value.clone().unwrap_or_default();
    let spend: Option<GammaGammaParams> = GroupedSpend::from_columns(&columns.frequency, &monetary)
        .and_then(|g| gamma_gamma::fit(&g, PENALIZER))
        .map(|fit| fit.params)
        .map_err(|e| models.note = Some(format!("no spend model: {e}")))
        .ok();
    models.gamma_gamma = spend.map(|g| [g.p, g.q, g.v]);
    let n = columns.frequency.len();
    let (mut alive, mut expected, mut value, mut clv) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let f = forecast(
            &counts,
            spend.as_ref(),
            HORIZON,
            columns.frequency[i],
            columns.recency[i],
            columns.age[i],
            monetary.get(i).copied().unwrap_or(0.0),
        );
        alive.push(f.probability_alive);
        expected.push(f.expected_purchases);
        value.push(f.expected_spend);
        clv.push(f.clv);
    }
    let frame = DataFrame::new(
        n,
        vec![
            Column::new(USER_ID.into(), &columns.customer_ids),
            Column::new(P_ALIVE.into(), alive),
            Column::new(EXPECTED_PURCHASES_30D.into(), expected),
            Column::new(EXPECTED_ORDER_VALUE.into(), value),
            Column::new(CLV_12M.into(), clv),
        ],
    )
    .map_err(Error::polars("assembling forecasts"))?;
    Ok((Some(frame), models))
}
