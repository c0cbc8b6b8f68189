//! "Buys again within 30 days": a logistic-regression classifier (linfa) against the BG/NBD
//! forecast, compared on the same time-based split by AUC.
//!
//! Split: the test cutoff is 30 days before as-of (labels: a kept order in the 30 days after
//! it), the training cutoff 30 days before that (labels likewise). Features at a cutoff use
//! only orders up to it: log orders, days since the last order, days since the first, the
//! mean gap, orders in the last 30 and 90 days, log mean order value. BG/NBD is fitted on the
//! daily summary at the test cutoff and scores each customer by expected purchases in the
//! next 30 days. The better AUC feeds `repurchase_score_30d`: for the classifier it is
//! refitted with the test window's labels and applied at as-of.

use linfa::DatasetBase;
use linfa::prelude::Fit;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::bgnbd::{self, BgNbdParams};
use super::data::GroupedSummary;
use super::io::SummaryColumns;

use crate::analytics::period::{DAY_MS, TimeZoneName};
use crate::error::{Error, Result};
use crate::jobs::purchases::{CENTS_PER_UNIT, NET_CENTS, ORDERED_AT};
use crate::store::USER_ID;

pub const WINDOW_DAYS: i64 = 30;
pub const REPURCHASE_SCORE: &str = "repurchase_score_30d";
const FEATURES: [&str; 7] = [
    "log_orders",
    "recency",
    "age",
    "mean_gap",
    "orders_30",
    "orders_90",
    "log_aov",
];
/// Each split needs this many customers of each label.
const MIN_PER_CLASS: usize = 10;

/// How the two models ranked the test window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepurchaseComparison {
    pub train_customers: u64,
    pub test_customers: u64,
    /// Share of test customers who did buy again within 30 days.
    pub test_positive_share: f64,
    pub auc_logistic: f64,
    pub auc_bgnbd: f64,
    /// `logistic` or `bgnbd`: the one behind `repurchase_score_30d`.
    pub chosen: String,
}

/// Features at `cutoff` and the label "ordered in (cutoff, cutoff + 30 days]".
fn features_at(orders: &LazyFrame, cutoff: i64) -> PolarsResult<DataFrame> {
    let day = lit(DAY_MS as f64);
    let before = orders.clone().filter(col(ORDERED_AT).lt_eq(lit(cutoff)));
    let after = orders
        .clone()
        .filter(
            col(ORDERED_AT)
                .gt(lit(cutoff))
                .and(col(ORDERED_AT).lt_eq(lit(cutoff + WINDOW_DAYS * DAY_MS))),
        )
        .select([col(USER_ID)])
        .unique(None, UniqueKeepStrategy::Any)
        .with_column(lit(true).alias("label"));
    let since = |days: i64| {
        col(ORDERED_AT)
            .gt(lit(cutoff - days * DAY_MS))
            .sum()
            .cast(DataType::Float64)
    };
    let age = (lit(cutoff) - col(ORDERED_AT).min()).cast(DataType::Float64) / day.clone();
    let span =
        (col(ORDERED_AT).max() - col(ORDERED_AT).min()).cast(DataType::Float64) / day.clone();
    before
        .group_by([col(USER_ID)])
        .agg([
            len().cast(DataType::Float64).log1p().alias("log_orders"),
            ((lit(cutoff) - col(ORDERED_AT).max()).cast(DataType::Float64) / day).alias("recency"),
            age.alias("age"),
            (span / (len().cast(DataType::Float64) - lit(1.0)).clip_min(lit(1.0)))
                .alias("mean_gap"),
            since(30).alias("orders_30"),
            since(90).alias("orders_90"),
            (col(NET_CENTS).mean() / lit(CENTS_PER_UNIT))
                .log1p()
                .alias("log_aov"),
        ])
        .join(
            after,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("label").fill_null(lit(false)))
        .sort([USER_ID], SortMultipleOptions::default())
        .collect()
}

fn matrix(frame: &DataFrame) -> PolarsResult<Array2<f64>> {
    let mut x = Array2::<f64>::zeros((frame.height(), FEATURES.len()));
    for (j, name) in FEATURES.iter().enumerate() {
        let values = frame.column(name)?.f64()?;
        for (target, v) in x.column_mut(j).iter_mut().zip(values.iter()) {
            *target = v.unwrap_or(0.0);
        }
    }
    Ok(x)
}

fn labels(frame: &DataFrame) -> PolarsResult<Vec<bool>> {
    Ok(frame
        .column("label")?
        .bool()?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect())
}

/// Column means and standard deviations of the training matrix.
fn scaler(x: &Array2<f64>) -> (Array1<f64>, Array1<f64>) {
    let mean = x
        .mean_axis(ndarray::Axis(0))
        .unwrap_or_else(|| Array1::zeros(x.ncols()));
    let std = x
        .std_axis(ndarray::Axis(0), 0.0)
        .mapv(|s| if s > 1e-12 { s } else { 1.0 });
    (mean, std)
}

fn logistic(train: &DataFrame) -> Result<impl Fn(&DataFrame) -> Result<Vec<f64>>> {
    let x = matrix(train).map_err(Error::polars("building classifier features"))?;
    let (mean, std) = scaler(&x);
    let y = Array1::from(labels(train).map_err(Error::polars("reading labels"))?);
    let data = DatasetBase::new(crate::logit::standardized(&x, &mean, &std), y);
    let model = LogisticRegression::default()
        .alpha(1e-3)
        .max_iterations(200)
        .fit(&data)
        .map_err(|e| Error::FitFailed {
            model: "logistic regression",
            reason: e.to_string(),
        })?;
    Ok(move |frame: &DataFrame| -> Result<Vec<f64>> {
        let x = matrix(frame).map_err(Error::polars("building classifier features"))?;
        let p = model.predict_probabilities(&((&x - &mean) / &std));
        // linfa calls the larger class "positive"; turn it into P(buys again).
        let flip = !model.labels().pos.class;
        Ok(p.iter().map(|p| if flip { 1.0 - p } else { *p }).collect())
    })
}

/// Area under the ROC curve by the rank-sum (Mann–Whitney) identity, ties averaged.
pub fn auc(scores: &[f64], labels: &[bool]) -> PolarsResult<f64> {
    let frame = df!("score" => scores, "label" => labels)?;
    let out = frame
        .lazy()
        .with_column(
            col("score")
                .rank(
                    RankOptions {
                        method: RankMethod::Average,
                        descending: false,
                    },
                    None,
                )
                .cast(DataType::Float64)
                .alias("rank"),
        )
        .select([
            col("rank").filter(col("label")).sum().alias("rank_sum"),
            col("label").sum().cast(DataType::Float64).alias("pos"),
            (len().cast(DataType::Float64) - col("label").sum().cast(DataType::Float64))
                .alias("neg"),
        ])
        .collect()?;
    let get = |n: &str| -> PolarsResult<f64> { Ok(out.column(n)?.f64()?.get(0).unwrap_or(0.0)) };
    let (rank_sum, pos, neg) = (get("rank_sum")?, get("pos")?, get("neg")?);
    Ok((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// BG/NBD expected purchases in the next 30 days at `cutoff`, fitted there unless `fitted`
/// already holds that fit.
fn bgnbd_scores(
    orders: &LazyFrame,
    zone: &TimeZoneName,
    cutoff: i64,
    customers: &DataFrame,
    fitted: Option<BgNbdParams>,
) -> Result<Vec<f64>> {
    let summary = super::merchant::daily_summary(orders.clone(), zone, cutoff, false)?;
    let columns = SummaryColumns::from_frame(&summary)?;
    let params = match fitted {
        Some(params) => params,
        None => {
            let grouped =
                GroupedSummary::from_columns(&columns.frequency, &columns.recency, &columns.age)?;
            bgnbd::fit(&grouped, 0.001)?.params
        }
    };
    let expected: Vec<f64> = (0..columns.frequency.len())
        .map(|i| {
            params.conditional_expected_purchases(
                WINDOW_DAYS as f64,
                columns.frequency[i],
                columns.recency[i],
                columns.age[i],
            )
        })
        .collect();
    // Align with the classifier's customers (both sorted by user id, same customers).
    let scored = df!(USER_ID => columns.customer_ids.clone(), "score" => expected)
        .map_err(Error::polars("scoring"))?;
    let aligned = customers
        .clone()
        .lazy()
        .select([col(USER_ID)])
        .join(
            scored.lazy(),
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .collect()
        .map_err(Error::polars("aligning BG/NBD scores"))?;
    Ok(aligned
        .column("score")
        .map_err(Error::polars("score"))?
        .f64()
        .map_err(Error::polars("score"))?
        .iter()
        .map(|v| v.unwrap_or(0.0))
        .collect())
}

/// Compares the two models on the merchant's kept `orders` and scores every customer at
/// `as_of_ms` with the better one. `None` when a split has too few customers of a label.
/// `at_as_of` is the merchant's BG/NBD fit at `as_of_ms`, when already made.
pub fn compare(
    orders: LazyFrame,
    zone: &TimeZoneName,
    as_of_ms: i64,
    at_as_of: Option<BgNbdParams>,
) -> Result<Option<(RepurchaseComparison, DataFrame)>> {
    let window = WINDOW_DAYS * DAY_MS;
    let (train_cut, test_cut) = (as_of_ms - 2 * window, as_of_ms - window);
    let train =
        features_at(&orders, train_cut).map_err(Error::polars("building training features"))?;
    let test = features_at(&orders, test_cut).map_err(Error::polars("building test features"))?;
    let enough = |frame: &DataFrame| -> Result<bool> {
        let y = labels(frame).map_err(Error::polars("reading labels"))?;
        let positives = y.iter().filter(|l| **l).count();
        Ok(positives >= MIN_PER_CLASS && y.len() - positives >= MIN_PER_CLASS)
    };
    if !enough(&train)? || !enough(&test)? {
        return Ok(None);
    }
    let truth = labels(&test).map_err(Error::polars("reading labels"))?;
    let auc_logistic = auc(&logistic(&train)?(&test)?, &truth).map_err(Error::polars("AUC"))?;
    let auc_bgnbd = auc(&bgnbd_scores(&orders, zone, test_cut, &test, None)?, &truth)
        .map_err(Error::polars("AUC"))?;
    let chosen = if auc_logistic > auc_bgnbd {
        "logistic"
    } else {
        "bgnbd"
    };
    let now = features_at(&orders, as_of_ms).map_err(Error::polars("building current features"))?;
    let scores = if chosen == "logistic" {
        logistic(&test)?(&now)?
    } else {
        bgnbd_scores(&orders, zone, as_of_ms, &now, at_as_of)?
    };
    let scored = DataFrame::new(
        now.height(),
        vec![
            now.column(USER_ID).map_err(Error::polars("ids"))?.clone(),
            Column::new(REPURCHASE_SCORE.into(), scores),
        ],
    )
    .map_err(Error::polars("assembling repurchase scores"))?;
    let comparison = RepurchaseComparison {
        train_customers: train.height() as u64,
        test_customers: test.height() as u64,
        test_positive_share: truth.iter().filter(|l| **l).count() as f64 / truth.len() as f64,
        auc_logistic,
        auc_bgnbd,
        chosen: chosen.to_owned(),
    };
    Ok(Some((comparison, scored)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_is_the_share_of_correctly_ordered_pairs() {
        // Pairs (pos, neg): (0.9,0.1) ok, (0.9,0.5) ok, (0.4,0.1) ok, (0.4,0.5) wrong → 3/4.
        let auc = auc(&[0.9, 0.4, 0.1, 0.5], &[true, true, false, false]).expect("auc");
        assert!((auc - 0.75).abs() < 1e-12);
        // A tie between a positive and a negative counts half.
        let tied = super::auc(&[0.5, 0.5], &[true, false]).expect("auc");
        assert!((tied - 0.5).abs() < 1e-12);
    }
}
