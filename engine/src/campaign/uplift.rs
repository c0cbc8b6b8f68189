//! Uplift targeting: send to the customers a push moves, not to those who buy anyway.
//!
//! A two-model ("T-learner") estimate, as in Radcliffe and Surry's survey of uplift modelling
//! (2011) and Künzel et al. (PNAS 2019): one logistic regression (linfa) learns P(buys within
//! the window | pushed) from a past campaign's treated customers, another P(buys | not pushed)
//! from its holdout, both on features of each customer's kept orders before that campaign was
//! planned (never after: the outcome must not leak into its own features). A customer's
//! estimated uplift is the difference. The past campaign is the newest of the merchant's
//! others with the same goal and a holdout whose window has ended.
//!
//! How well the ranking separates is shown by the past campaign's Qini table (Radcliffe 2007):
//! customers ordered by uplift estimated by cross-fitting (each half scored by models learned
//! from the other half, so no customer is scored by a model that saw them), and at each tenth
//! the incremental converters against the line of random targeting.

use linfa::DatasetBase;
use linfa::prelude::Fit;
use linfa_logistic::{FittedLogisticRegression, LogisticRegression};
use ndarray::{Array1, Array2, Axis};
use polars::prelude::*;
use serde::Serialize;

use super::definition::Campaign;
use super::outbox::{OutboxState, Status, message_key};
use super::plan::{Decision, ONCE, PlanLine, SkipReason};
use super::report::{ROW, with_conversions};
use crate::error::{Error, Result};
use crate::jobs::purchases::{NET_CENTS, ORDERED_AT};
use crate::store::USER_ID;

const DAY_MS: i64 = 86_400_000;
/// Days after a send an order counts as the push's outcome (the report's default window).
pub const UPLIFT_WINDOW_DAYS: u32 = 7;
/// Customers per arm, and converters and non-converters per arm, below which nothing is
/// learned (a holdout of a dozen proves nothing about anyone).
const MIN_PER_ARM: usize = 30;
const MIN_PER_CLASS: usize = 5;
/// Orders in this many days before the cut count as recent.
const RECENT_DAYS: i64 = 90;
/// The recency given to a customer with no order yet.
const NO_ORDER_RECENCY_DAYS: f64 = 365.0;
/// Rows of the Qini table: the top 10%, 20%, … 100%.
const QINI_STEPS: usize = 10;

/// The model's features, in order: each customer's kept orders before the cut.
pub const FEATURES: [&str; 7] = [
    "log_orders",
    "log_recency_days",
    "log_recency_days_squared",
    "log_order_value",
    "log_tenure_days",
    "log_orders_last_90_days",
    "has_orders",
];

/// One row of a Qini table: the customers of the top `top_share` by estimated uplift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QiniRow {
    pub top_share: f64,
    pub treated: u64,
    pub treated_converters: u64,
    pub holdout: u64,
    pub holdout_converters: u64,
    /// Treated conversion rate − holdout conversion rate among them.
    pub uplift: Option<f64>,
    /// The Qini value: treated converters − holdout converters × treated ÷ holdout, the
    /// converters the push added among them.
    pub incremental_converters: Option<f64>,
    /// What random targeting of the same share adds: that share of the whole's.
    pub random: Option<f64>,
}

/// What an uplift model was learned from, and how well it ranks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpliftTraining {
    /// The past campaign.
    pub trained_on: String,
    pub window_days: u32,
    pub treated: u64,
    pub holdout: u64,
    pub features: Vec<&'static str>,
    /// Cross-fitted; empty when a half had too little data to learn from.
    pub qini: Vec<QiniRow>,
    /// The mean gap between the model's Qini curve and random targeting over the ten rows,
    /// per treated customer: above 0 the ranking finds customers the push moves more.
    pub qini_coefficient: Option<f64>,
}

/// A logistic regression and which of linfa's classes is "bought".
struct Logit {
    model: FittedLogisticRegression<f64, bool>,
    flip: bool,
}

impl Logit {
    fn fit(x: Array2<f64>, y: Array1<bool>) -> Result<Self> {
        let model = LogisticRegression::default()
            .alpha(1e-2)
            .max_iterations(200)
            .fit(&DatasetBase::new(crate::logit::column_major(&x), y))
            .map_err(|e| Error::FitFailed {
                model: "uplift logistic regression",
                reason: e.to_string(),
            })?;
        // linfa calls the larger class "positive": turn it into P(bought).
        let flip = !model.labels().pos.class;
        Ok(Self { model, flip })
    }

    fn probability(&self, x: &Array2<f64>) -> Array1<f64> {
        let p = self.model.predict_probabilities(x);
        if self.flip { p.mapv(|p| 1.0 - p) } else { p }
    }
}

/// The two models and the feature scaling they were learned with.
pub struct UpliftModel {
    treated: Logit,
    control: Logit,
    mean: Array1<f64>,
    std: Array1<f64>,
}

impl UpliftModel {
    /// Learns from rows `x` with outcomes `bought`, split by `treated`.
    fn fit(x: &Array2<f64>, bought: &[bool], treated: &[bool]) -> Result<Self> {
        let mean = x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(x.ncols()));
        let std = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 1e-12 { s } else { 1.0 });
        let scaled = (x - &mean) / &std;
        let arm = |pushed: bool| -> Result<Logit> {
            let rows: Vec<usize> = (0..treated.len())
                .filter(|&i| treated[i] == pushed)
                .collect();
            let y: Array1<bool> = rows.iter().map(|&i| bought[i]).collect();
            Logit::fit(scaled.select(Axis(0), &rows), y)
        };
        Ok(Self {
            treated: arm(true)?,
            control: arm(false)?,
            mean,
            std,
        })
    }

    /// Estimated uplift of each row of `x`: P(buys | pushed) − P(buys | not).
    pub fn uplift(&self, x: &Array2<f64>) -> Array1<f64> {
        let scaled = (x - &self.mean) / &self.std;
        self.treated.probability(&scaled) - self.control.probability(&scaled)
    }
}

/// A model learned from a past campaign, with its Qini table.
pub struct Learned {
    pub model: UpliftModel,
    pub training: UpliftTraining,
}

/// The past campaign an uplift-targeted `current` learns from: the newest (by when it was
/// planned) of the merchant's other campaigns with the same goal that held customers out and
/// whose window has ended by `at_ms`.
pub fn past_campaign(
    campaigns: &[Campaign],
    outbox: &OutboxState,
    current: &Campaign,
    at_ms: i64,
) -> Option<String> {
    let window_ms = i64::from(UPLIFT_WINDOW_DAYS) * DAY_MS;
    campaigns
        .iter()
        .filter(|c| c.goal == current.goal && c.name != current.name)
        .filter_map(|c| {
            let planned = outbox
                .of_campaign(&c.name)
                .filter(|e| e.status == Status::HeldOut)
                .filter(|e| e.message.send_at_ms + window_ms <= at_ms)
                .map(|e| e.message.planned_at_ms)
                .max()?;
            Some((planned, c.name.clone()))
        })
        .max()
        .map(|(_, name)| name)
}

/// Learns the uplift model from `past`'s delivered and held-out customers whose window ended
/// by `at_ms`, with their kept `orders` (stitched `user_id`, `ordered_at`, `net_cents`).
pub fn learn(outbox: &OutboxState, past: &str, orders: LazyFrame, at_ms: i64) -> Result<Learned> {
    let window_ms = i64::from(UPLIFT_WINDOW_DAYS) * DAY_MS;
    let (mut users, mut starts, mut cuts, mut treated) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for entry in outbox.of_campaign(past) {
        let (start, pushed) = match entry.status {
            Status::Delivered { at_ms } => (at_ms, true),
            Status::HeldOut => (entry.message.send_at_ms, false),
            _ => continue,
        };
        if start + window_ms > at_ms {
            continue;
        }
        users.push(entry.message.user_id.clone());
        starts.push(start);
        cuts.push(entry.message.planned_at_ms);
        treated.push(pushed);
    }
    let rows = df!(
        USER_ID => &users,
        "start_ms" => starts,
        "cut_ms" => cuts,
    )
    .map_err(Error::polars("listing the past campaign's customers"))?
    .lazy()
    .with_row_index(ROW, None);
    let bought: Vec<bool> = with_conversions(rows.clone(), orders.clone(), window_ms)
        .sort([ROW], SortMultipleOptions::default())
        .select([col("cents").is_not_null().alias("bought")])
        .collect()
        .map_err(Error::polars("finding the past campaign's converters"))?
        .column("bought")
        .and_then(|c| c.bool().cloned())
        .map_err(Error::polars("finding the past campaign's converters"))?
        .iter()
        .map(|b| b.unwrap_or(false))
        .collect();
    enough_to_learn(past, &bought, &treated)?;
    let x = features(rows, orders)?;
    let model = UpliftModel::fit(&x, &bought, &treated)?;
    // Cross-fitting: each half scored by models learned from the other half.
    let half: Vec<bool> = users
        .iter()
        .map(|u| xxhash_rust::xxh3::xxh3_64(u.as_bytes()) & 1 == 1)
        .collect();
    let mut scores = vec![0.0; users.len()];
    let mut cross_fitted = true;
    for side in [false, true] {
        let (learn_rows, score_rows): (Vec<usize>, Vec<usize>) =
            (0..users.len()).partition(|&i| half[i] != side);
        let pick = |v: &[bool]| -> Vec<bool> { learn_rows.iter().map(|&i| v[i]).collect() };
        let fitted = UpliftModel::fit(
            &x.select(Axis(0), &learn_rows),
            &pick(&bought),
            &pick(&treated),
        );
        match fitted {
            Ok(half_model) => {
                let estimated = half_model.uplift(&x.select(Axis(0), &score_rows));
                for (row, value) in score_rows.iter().zip(estimated) {
                    scores[*row] = value;
                }
            }
            Err(_) => cross_fitted = false,
        }
    }
    let qini = if cross_fitted {
        qini_table(&scores, &bought, &treated)
    } else {
        Vec::new()
    };
    let treated_count = treated.iter().filter(|t| **t).count() as u64;
    let training = UpliftTraining {
        trained_on: past.to_owned(),
        window_days: UPLIFT_WINDOW_DAYS,
        treated: treated_count,
        holdout: treated.len() as u64 - treated_count,
        features: FEATURES.to_vec(),
        qini_coefficient: qini_coefficient(&qini, treated_count),
        qini,
    };
    Ok(Learned { model, training })
}

fn enough_to_learn(past: &str, bought: &[bool], treated: &[bool]) -> Result<()> {
    for pushed in [true, false] {
        let arm: Vec<bool> = bought
            .iter()
            .zip(treated)
            .filter(|(_, t)| **t == pushed)
            .map(|(b, _)| *b)
            .collect();
        let converters = arm.iter().filter(|b| **b).count();
        if arm.len() < MIN_PER_ARM
            || converters < MIN_PER_CLASS
            || arm.len() - converters < MIN_PER_CLASS
        {
            return Err(Error::InvalidArgument(format!(
                "campaign {past:?} is too small to learn uplift from: its {} arm has {} customers \
                 with a finished {UPLIFT_WINDOW_DAYS}-day window, {converters} of them converters \
                 (at least {MIN_PER_ARM} customers and {MIN_PER_CLASS} converters and \
                 non-converters per arm are needed); run a bigger campaign with a holdout first",
                if pushed { "treated" } else { "holdout" },
                arm.len(),
            )));
        }
    }
    Ok(())
}

/// The cumulative Qini table of customers ordered by `scores` (highest first; ties by row).
fn qini_table(scores: &[f64], bought: &[bool], treated: &[bool]) -> Vec<QiniRow> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
    let counts_at = |n: usize| -> (u64, u64, u64, u64) {
        let mut c = (0, 0, 0, 0);
        for &i in &order[..n] {
            if treated[i] {
                c.0 += 1;
                c.1 += u64::from(bought[i]);
            } else {
                c.2 += 1;
                c.3 += u64::from(bought[i]);
            }
        }
        c
    };
    let incremental = |(nt, yt, nc, yc): (u64, u64, u64, u64)| -> Option<f64> {
        (nc > 0).then(|| yt as f64 - yc as f64 * nt as f64 / nc as f64)
    };
    let whole = incremental(counts_at(order.len()));
    (1..=QINI_STEPS)
        .map(|step| {
            let share = step as f64 / QINI_STEPS as f64;
            let n = (order.len() * step).div_ceil(QINI_STEPS);
            let counts = counts_at(n);
            let (nt, yt, nc, yc) = counts;
            QiniRow {
                top_share: share,
                treated: nt,
                treated_converters: yt,
                holdout: nc,
                holdout_converters: yc,
                uplift: (nt > 0 && nc > 0).then(|| yt as f64 / nt as f64 - yc as f64 / nc as f64),
                incremental_converters: incremental(counts),
                random: whole.map(|w| w * share),
            }
        })
        .collect()
}

fn qini_coefficient(qini: &[QiniRow], treated: u64) -> Option<f64> {
    if qini.is_empty() || treated == 0 {
        return None;
    }
    let gaps: Option<f64> = qini
        .iter()
        .map(|r| Some(r.incremental_converters? - r.random?))
        .sum();
    gaps.map(|g| g / (qini.len() as f64 * treated as f64))
}

/// Each row's features of its customer's kept orders strictly before its `cut_ms`, as a
/// matrix in row order. `rows`: `row`, `user_id`, `cut_ms`.
fn features(rows: LazyFrame, orders: LazyFrame) -> Result<Array2<f64>> {
    let days_before_cut =
        |t: Expr| (col("cut_ms") - t).cast(DataType::Float64) / lit(DAY_MS as f64);
    let history = rows
        .clone()
        .select([col(ROW), col(USER_ID), col("cut_ms")])
        .join(
            orders.select([col(USER_ID), col(ORDERED_AT), col(NET_CENTS)]),
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col(ORDERED_AT).lt(col("cut_ms")))
        .with_column(
            col(ORDERED_AT)
                .gt(col("cut_ms") - lit(RECENT_DAYS * DAY_MS))
                .alias("recent"),
        )
        .group_by([col(ROW)])
        .agg([
            len().cast(DataType::Float64).alias("orders"),
            col(ORDERED_AT).max().alias("last"),
            col(ORDERED_AT).min().alias("first"),
            col(NET_CENTS).sum().cast(DataType::Float64).alias("cents"),
            col("recent")
                .sum()
                .cast(DataType::Float64)
                .alias("recent_orders"),
        ]);
    let frame = rows
        .select([col(ROW), col("cut_ms")])
        .join(
            history,
            [col(ROW)],
            [col(ROW)],
            JoinArgs::new(JoinType::Left),
        )
        .sort([ROW], SortMultipleOptions::default())
        .with_columns([
            col("orders").fill_null(lit(0.0)),
            days_before_cut(col("last"))
                .fill_null(lit(NO_ORDER_RECENCY_DAYS))
                .log1p()
                .alias("recency"),
        ])
        .select([
            col("orders").log1p().alias(FEATURES[0]),
            col("recency").alias(FEATURES[1]),
            (col("recency") * col("recency")).alias(FEATURES[2]),
            (col("cents").fill_null(lit(0.0))
                / lit(100.0)
                / when(col("orders").gt(lit(1.0)))
                    .then(col("orders"))
                    .otherwise(lit(1.0)))
            .log1p()
            .alias(FEATURES[3]),
            days_before_cut(col("first"))
                .fill_null(lit(0.0))
                .log1p()
                .alias(FEATURES[4]),
            col("recent_orders")
                .fill_null(lit(0.0))
                .log1p()
                .alias(FEATURES[5]),
            col("orders")
                .gt(lit(0.0))
                .cast(DataType::Float64)
                .alias(FEATURES[6]),
        ])
        .collect()
        .map_err(Error::polars("building uplift features"))?;
    let mut x = Array2::zeros((frame.height(), FEATURES.len()));
    for (j, name) in FEATURES.iter().enumerate() {
        let values = frame
            .column(name)
            .and_then(|c| c.f64().cloned())
            .map_err(Error::polars("building uplift features"))?;
        x.column_mut(j).assign(
            &values
                .iter()
                .map(|v| v.unwrap_or(0.0))
                .collect::<Array1<f64>>(),
        );
    }
    Ok(x)
}

/// Keeps the `share` of the plan's new send and holdout lines with the highest estimated
/// uplift (ties: by user id); the rest are skipped as `low_uplift`. Lines already decided in
/// the delivery log are left as they are. The holdout, drawn by hash before this, stays a
/// random part of the targeted customers, so the report measures the targeted lift.
#[allow(clippy::too_many_arguments)]
pub fn target(
    lines: &mut [PlanLine],
    model: &UpliftModel,
    orders: LazyFrame,
    merchant_id: &str,
    campaign: &Campaign,
    outbox: &OutboxState,
    at_ms: i64,
    share: f64,
) -> Result<()> {
    let fresh: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].decision != Decision::Skip)
        .filter(|&i| {
            let line = &lines[i];
            let occurrence = line.occurrence.as_deref().unwrap_or(ONCE);
            let key = message_key(merchant_id, &campaign.name, &line.user_id, occurrence);
            !outbox.entries.contains_key(&key)
        })
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let rows = df!(
        USER_ID => fresh.iter().map(|&i| lines[i].user_id.as_str()).collect::<Vec<_>>(),
        "cut_ms" => vec![at_ms; fresh.len()],
    )
    .map_err(Error::polars("listing the customers to target"))?
    .lazy()
    .with_row_index(ROW, None);
    let scores = model.uplift(&features(rows, orders)?);
    let mut order: Vec<usize> = (0..fresh.len()).collect();
    order.sort_by(|a, b| {
        scores[*b]
            .total_cmp(&scores[*a])
            .then_with(|| lines[fresh[*a]].user_id.cmp(&lines[fresh[*b]].user_id))
    });
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let keep = (share * fresh.len() as f64).ceil() as usize;
    for &position in &order[keep.min(order.len())..] {
        let line = &mut lines[fresh[position]];
        line.decision = Decision::Skip;
        line.reason = Some(SkipReason::LowUplift);
        line.send_at = None;
        line.send_at_ms = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_ranking_puts_the_incremental_converters_first() {
        // 40 customers: the first 20 (highest scores) buy when pushed and not otherwise; the
        // other 20 buy either way. Arms alternate.
        let n = 40;
        let scores: Vec<f64> = (0..n).map(|i| f64::from(n - i)).collect();
        let treated: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
        let bought: Vec<bool> = (0..n).map(|i| i >= 20 || i % 2 == 0).collect();
        let table = qini_table(&scores, &bought, &treated);
        assert_eq!(table.len(), QINI_STEPS);
        let half = &table[4];
        assert_eq!((half.treated, half.treated_converters), (10, 10));
        assert_eq!((half.holdout, half.holdout_converters), (10, 0));
        assert_eq!(half.incremental_converters, Some(10.0));
        assert_eq!(half.uplift, Some(1.0));
        // All of them: 20 treated converters, 10 held-out converters of 20 → 10 added, the
        // same as the top half: the random line reaches it only at 100%.
        let all = &table[9];
        assert_eq!(all.incremental_converters, Some(10.0));
        assert_eq!(half.random, Some(5.0));
        assert!(qini_coefficient(&table, 20).expect("coefficient") > 0.0);
        // The reverse ranking finds nothing at the top.
        let reversed: Vec<f64> = scores.iter().map(|s| -s).collect();
        let worst = qini_table(&reversed, &bought, &treated);
        assert_eq!(worst[4].incremental_converters, Some(0.0));
        assert!(qini_coefficient(&worst, 20).expect("coefficient") < 0.0);
    }

    #[test]
    fn features_see_only_orders_before_the_cut() {
        let day = DAY_MS;
        let orders = df!(
            USER_ID => ["a", "a", "a", "b"],
            ORDERED_AT => [10 * day, 40 * day, 100 * day, 95 * day],
            NET_CENTS => [1_000i64, 3_000, 50_000, 2_000],
        )
        .expect("orders")
        .lazy();
        let rows = df!(
            USER_ID => ["a", "b", "c"],
            "cut_ms" => [50 * day, 50 * day, 50 * day],
        )
        .expect("rows")
        .lazy()
        .with_row_index(ROW, None);
        let x = features(rows, orders).expect("features");
        // a: two orders before day 50 (the one on day 100 is the future), last 10 days ago,
        // 20.00 per order, first 40 days ago, both within 90 days.
        let expected = [
            3f64.ln(),
            11f64.ln(),
            11f64.ln().powi(2),
            21f64.ln(),
            41f64.ln(),
            3f64.ln(),
            1.0,
        ];
        for (got, want) in x.row(0).iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{:?}", x.row(0));
        }
        // b and c: nothing before the cut.
        for row in [1, 2] {
            assert_eq!(x[[row, 0]], 0.0);
            assert!((x[[row, 1]] - (NO_ORDER_RECENCY_DAYS + 1.0).ln()).abs() < 1e-9);
            assert_eq!(x[[row, 6]], 0.0);
        }
    }
}
