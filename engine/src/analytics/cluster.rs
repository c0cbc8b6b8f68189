//! Behavioural clusters: KMeans (linfa) on standardised per-customer features, k chosen by
//! silhouette, each cluster described in words from its members' averages.
//!
//! Features per customer with a kept order: recency (days), log orders, log spend, the share
//! of spend in each of the merchant's top categories (and "other"), the share of events per
//! channel, and the refunded share of purchased value. Each is z-scored so no unit dominates.
//!
//! KMeans is fitted on a fixed-seed sample of at most [`FIT_SAMPLE`] customers for each k in
//! [`K_RANGE`]; the silhouette (O(n²)) is measured on at most [`SILHOUETTE_SAMPLE`] of them,
//! the best k wins, and every customer is then assigned to the nearest centroid. The same
//! data and seed give the same clusters, run after run.

use std::ops::RangeInclusive;

use linfa::DatasetBase;
use linfa::metrics::SilhouetteScore;
use linfa::prelude::{Fit, Predict};
use linfa_clustering::KMeans;
use ndarray::{Array1, Array2, Axis};
use polars::prelude::*;
use rand::SeedableRng;
use rand::seq::index::sample;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::Channel;
use crate::jobs::purchases::{NET_CENTS, NET_QUANTITY, ORDER_CHANNEL, REFUNDED_CENTS};
use crate::store::{CATEGORY, ITEM_ID, USER_ID};

use super::rfm::{FREQUENCY, MONETARY, RECENCY_DAYS};

pub const CLUSTER: &str = "cluster";
pub const K_RANGE: RangeInclusive<usize> = 2..=6;
pub const FIT_SAMPLE: usize = 10_000;
pub const SILHOUETTE_SAMPLE: usize = 1_000;
/// Categories with their own share feature; the rest are summed into "other".
pub const TOP_CATEGORIES: usize = 6;
const SEED: u64 = 0x5EED_C1A5;
const REFUND_SHARE: &str = "refund_share";

/// One cluster: its id, size and the words that describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSummary {
    pub cluster: u32,
    pub customers: u64,
    pub description: String,
    pub mean_orders: f64,
    pub mean_spend: f64,
    pub mean_recency_days: f64,
    /// The category with the largest mean spend share, and that share.
    pub top_category: Option<(String, f64)>,
    /// The channel with the largest mean event share, and that share.
    pub top_channel: Option<(String, f64)>,
    pub mean_refund_share: f64,
}

/// The outcome of clustering one merchant's customers.
pub struct Clustering {
    /// `user_id`, `cluster` (UInt32).
    pub assignments: DataFrame,
    pub k: usize,
    /// Silhouette of every k tried, in order.
    pub silhouettes: Vec<(usize, f64)>,
    pub clusters: Vec<ClusterSummary>,
}

fn category_column(name: &str) -> String {
    format!("cat:{name}")
}

fn channel_column(channel: Channel) -> String {
    format!("ch:{}", channel.as_str())
}

/// Per-customer features: `rfm` columns plus category, channel and refund shares, for the
/// customers in `rfm`, all from net order `lines` (one pass): category shares of kept spend,
/// channel shares of order lines, and refunded / gross value.
pub fn features(
    rfm: LazyFrame,
    lines: LazyFrame,
    categories: LazyFrame,
) -> PolarsResult<(DataFrame, Vec<String>)> {
    let lines = lines
        .join(
            categories,
            [col(ITEM_ID)],
            [col(ITEM_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .collect()?;
    let kept = col(NET_QUANTITY).gt(lit(0i64));
    let top: Vec<String> = lines
        .clone()
        .lazy()
        .filter(kept.clone().and(col(CATEGORY).is_not_null()))
        .group_by([col(CATEGORY)])
        .agg([col(NET_CENTS).sum()])
        .sort(
            [NET_CENTS, CATEGORY],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .limit(TOP_CATEGORIES as u32)
        .collect()?
        .column(CATEGORY)?
        .str()?
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    // Per-line contributions as plain columns, then plain per-customer sums: filters inside
    // `agg` are much slower over a million groups.
    // Integer cents: the per-customer sums are exact whatever order the lines come in.
    let kept_spend = when(kept.clone()).then(col(NET_CENTS)).otherwise(lit(0i64));
    let mut contributions = vec![col(USER_ID), kept_spend.clone().alias("__spend")];
    for c in &top {
        contributions.push(
            when(col(CATEGORY).eq(lit(c.as_str())).fill_null(lit(false)))
                .then(kept_spend.clone())
                .otherwise(lit(0i64))
                .alias(category_column(c)),
        );
    }
    for ch in Channel::ALL {
        contributions.push(
            col(ORDER_CHANNEL)
                .eq(lit(ch.as_str()))
                .fill_null(lit(false))
                .cast(DataType::Float64)
                .alias(channel_column(ch)),
        );
    }
    contributions.push(col(NET_CENTS));
    contributions.push(col(REFUNDED_CENTS));
    let as_float = |name: &str| col(name).sum().cast(DataType::Float64).alias(name);
    let mut per_user: Vec<Expr> = vec![
        as_float("__spend"),
        len().cast(DataType::Float64).alias("__lines"),
        as_float(NET_CENTS),
        as_float(REFUNDED_CENTS),
    ];
    per_user.extend(top.iter().map(|c| as_float(&category_column(c))));
    per_user.extend(Channel::ALL.iter().map(|ch| col(channel_column(*ch)).sum()));
    let mut shares: Vec<Expr> = top
        .iter()
        .map(|c| (col(category_column(c)) / col("__spend")).alias(category_column(c)))
        .collect();
    let listed = top
        .iter()
        .fold(lit(0.0), |sum, c| sum + col(category_column(c)));
    shares.push(((col("__spend") - listed) / col("__spend")).alias(category_column("other")));
    shares.extend(
        Channel::ALL
            .iter()
            .map(|ch| (col(channel_column(*ch)) / col("__lines")).alias(channel_column(*ch))),
    );
    let gross = col(NET_CENTS) + col(REFUNDED_CENTS);
    shares.push(
        when(gross.clone().gt(lit(0.0)))
            .then((col(REFUNDED_CENTS) / gross).clip(lit(0.0), lit(1.0)))
            .otherwise(lit(0.0))
            .alias(REFUND_SHARE),
    );
    let behaviour = lines
        .lazy()
        .select(contributions)
        .group_by([col(USER_ID)])
        .agg(per_user)
        .with_columns(shares)
        .drop(by_name(
            ["__spend", "__lines", NET_CENTS, REFUNDED_CENTS],
            true,
            false,
        ));

    let mut names = vec![
        RECENCY_DAYS.to_owned(),
        "log_orders".to_owned(),
        "log_spend".to_owned(),
    ];
    names.extend(top.iter().map(|c| category_column(c)));
    names.push(category_column("other"));
    names.extend(Channel::ALL.iter().map(|c| channel_column(*c)));
    names.push(REFUND_SHARE.to_owned());

    let frame = rfm
        .select([
            col(USER_ID),
            col(RECENCY_DAYS),
            col(FREQUENCY),
            col(MONETARY),
        ])
        .join(
            behaviour,
            [col(USER_ID)],
            [col(USER_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col(FREQUENCY)
                .cast(DataType::Float64)
                .log1p()
                .alias("log_orders"),
            col(MONETARY).clip_min(lit(0.0)).log1p().alias("log_spend"),
            col(RECENCY_DAYS).cast(DataType::Float64),
        ])
        .with_columns(
            names
                .iter()
                .map(|n| {
                    col(n.as_str())
                        .cast(DataType::Float64)
                        .fill_null(lit(0.0))
                        .fill_nan(lit(0.0))
                })
                .collect::<Vec<_>>(),
        )
        .sort([USER_ID], SortMultipleOptions::default())
        .collect()?;
    Ok((frame, names))
}

/// The z-scored feature matrix, one row per row of `frame`.
fn standardized(frame: &DataFrame, names: &[String]) -> PolarsResult<Array2<f64>> {
    let mut matrix = Array2::<f64>::zeros((frame.height(), names.len()));
    for (j, name) in names.iter().enumerate() {
        let values = frame.column(name)?.f64()?;
        let mean = values.mean().unwrap_or(0.0);
        let std = values.std(1).unwrap_or(0.0);
        let scale = if std > 1e-12 { 1.0 / std } else { 0.0 };
        for (target, value) in matrix
            .column_mut(j)
            .iter_mut()
            .zip(values.into_no_null_iter())
        {
            *target = (value - mean) * scale;
        }
    }
    Ok(matrix)
}

fn fit_error(reason: impl std::fmt::Display) -> Error {
    Error::FitFailed {
        model: "KMeans",
        reason: reason.to_string(),
    }
}

/// Clusters the customers of `features` (see [`features`]). `None` when there are too few
/// customers to split (fewer than 3 per cluster at the smallest k).
pub fn cluster(frame: &DataFrame, names: &[String]) -> Result<Option<Clustering>> {
    let n = frame.height();
    if n < 3 * K_RANGE.start() {
        return Ok(None);
    }
    let matrix = standardized(frame, names).map_err(Error::polars("standardising features"))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let fit_rows = if n > FIT_SAMPLE {
        let mut rows = sample(&mut rng, n, FIT_SAMPLE).into_vec();
        rows.sort_unstable();
        matrix.select(Axis(0), &rows)
    } else {
        matrix.clone()
    };
    let silhouette_rows: Vec<usize> = if fit_rows.nrows() > SILHOUETTE_SAMPLE {
        let mut rows = sample(&mut rng, fit_rows.nrows(), SILHOUETTE_SAMPLE).into_vec();
        rows.sort_unstable();
        rows
    } else {
        (0..fit_rows.nrows()).collect()
    };
    let silhouette_points = fit_rows.select(Axis(0), &silhouette_rows);
    let fit_data = DatasetBase::from(fit_rows);
    // Each k is independent: fit them on all cores (CPU-bound, so rayon, not async).
    let ks: Vec<usize> = K_RANGE.clone().filter(|k| *k * 3 <= n).collect();
    let fits = ks
        .into_par_iter()
        .map(|k| -> Result<_> {
            let model = KMeans::params(k)
                .n_runs(3)
                .max_n_iterations(100)
                .tolerance(1e-4)
                .fit(&fit_data)
                .map_err(fit_error)?;
            let labels: Array1<usize> = model.predict(&silhouette_points);
            let score = DatasetBase::new(silhouette_points.view(), labels)
                .silhouette_score()
                .map_err(fit_error)?;
            Ok((k, score, model))
        })
        .collect::<Result<Vec<_>>>()?;
    let silhouettes: Vec<(usize, f64)> = fits.iter().map(|(k, s, _)| (*k, *s)).collect();
    // The smallest k among the best scores, so ties resolve the same way every run.
    let mut best: Option<(usize, f64, KMeans<f64, _>)> = None;
    for (k, score, model) in fits {
        if best.as_ref().is_none_or(|(_, s, _)| score > *s + 1e-9) {
            best = Some((k, score, model));
        }
    }
    let Some((k, _, model)) = best else {
        return Ok(None);
    };
    let labels: Array1<usize> = model.predict(&matrix);
    let cluster_ids: UInt32Chunked = labels.iter().map(|l| Some(*l as u32)).collect();
    let mut assigned = frame.clone();
    assigned
        .with_column(cluster_ids.with_name(CLUSTER.into()).into_column())
        .map_err(Error::polars("labelling clusters"))?;
    let clusters = describe(&assigned, names).map_err(Error::polars("describing clusters"))?;
    let assignments = assigned
        .select([USER_ID, CLUSTER])
        .map_err(Error::polars("selecting cluster labels"))?;
    Ok(Some(Clustering {
        assignments,
        k,
        silhouettes,
        clusters,
    }))
}

/// Means of the raw features per cluster, turned into a sentence.
fn describe(assigned: &DataFrame, names: &[String]) -> PolarsResult<Vec<ClusterSummary>> {
    let mut means: Vec<Expr> = names.iter().map(|n| col(n.as_str()).mean()).collect();
    means.push(
        col(FREQUENCY)
            .cast(DataType::Float64)
            .mean()
            .alias("mean_orders"),
    );
    means.push(col(MONETARY).mean().alias("mean_spend"));
    means.push(len().cast(DataType::UInt64).alias("customers"));
    let overall = assigned.clone().lazy().select(means.clone()).collect()?;
    let per_cluster = assigned
        .clone()
        .lazy()
        .group_by([col(CLUSTER)])
        .agg(means)
        .sort([CLUSTER], SortMultipleOptions::default())
        .collect()?;
    let get = |frame: &DataFrame, name: &str, row: usize| -> PolarsResult<f64> {
        Ok(frame
            .column(name)?
            .cast(&DataType::Float64)?
            .f64()?
            .get(row)
            .unwrap_or(0.0))
    };
    let argmax = |prefix: &str, row: usize| -> PolarsResult<Option<(String, f64)>> {
        let mut best: Option<(String, f64)> = None;
        for name in names.iter().filter(|n| n.starts_with(prefix)) {
            let value = get(&per_cluster, name, row)?;
            if best.as_ref().is_none_or(|(_, b)| value > *b) {
                best = Some((name[prefix.len()..].to_owned(), value));
            }
        }
        Ok(best)
    };
    let overall_orders = get(&overall, "mean_orders", 0)?;
    let overall_spend = get(&overall, "mean_spend", 0)?;
    let overall_recency = get(&overall, RECENCY_DAYS, 0)?;
    let mut out = Vec::with_capacity(per_cluster.height());
    for row in 0..per_cluster.height() {
        let summary = ClusterSummary {
            cluster: per_cluster
                .column(CLUSTER)?
                .u32()?
                .get(row)
                .unwrap_or_default(),
            customers: per_cluster
                .column("customers")?
                .u64()?
                .get(row)
                .unwrap_or_default(),
            description: String::new(),
            mean_orders: get(&per_cluster, "mean_orders", row)?,
            mean_spend: get(&per_cluster, "mean_spend", row)?,
            mean_recency_days: get(&per_cluster, RECENCY_DAYS, row)?,
            top_category: argmax("cat:", row)?,
            top_channel: argmax("ch:", row)?,
            mean_refund_share: get(&per_cluster, REFUND_SHARE, row)?,
        };
        let description = sentence(&summary, overall_orders, overall_spend, overall_recency);
        out.push(ClusterSummary {
            description,
            ..summary
        });
    }
    Ok(out)
}

/// "frequent, recent bakery buyers, mostly micro-store": adjectives only where the cluster
/// differs clearly (×1.5 or ×0.67) from the merchant's average customer.
pub fn sentence(c: &ClusterSummary, orders: f64, spend: f64, recency: f64) -> String {
    let mut adjectives = Vec::new();
    if c.mean_orders >= 1.5 * orders {
        adjectives.push("frequent");
    } else if c.mean_orders <= 0.67 * orders {
        adjectives.push("occasional");
    }
    if c.mean_spend >= 1.5 * spend {
        adjectives.push("high-spending");
    } else if c.mean_spend <= 0.67 * spend {
        adjectives.push("low-spending");
    }
    if c.mean_recency_days <= 0.67 * recency {
        adjectives.push("recent");
    } else if c.mean_recency_days >= 1.5 * recency {
        adjectives.push("lapsed");
    }
    let noun = match &c.top_category {
        Some((category, share)) if *share >= 0.4 && category != "other" => {
            format!("{category} buyers")
        }
        _ => "mixed-basket buyers".to_owned(),
    };
    let mut text = if adjectives.is_empty() {
        format!("average {noun}")
    } else {
        format!("{} {noun}", adjectives.join(", "))
    };
    if let Some((channel, share)) = &c.top_channel
        && *share >= 0.5
    {
        text.push_str(&format!(", mostly {}", channel.replace('_', "-")));
    }
    if c.mean_refund_share >= 0.2 {
        text.push_str(", often refund");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::purchases::{NET_CENTS, ORDERED_AT};
    use crate::store::ORDER_ID;

    /// 20 regulars who buy bread in the micro-store every few days, 20 one-off cake buyers in
    /// the mini program: two clusters, described by category, frequency and channel.
    #[test]
    fn two_obvious_groups_become_two_described_clusters() {
        let (mut users, mut orders, mut items, mut channels, mut amounts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut rfm_rows: Vec<(String, i64, u32, f64)> = Vec::new();
        for i in 0..20 {
            let user = format!("r{i:02}");
            for o in 0..(8 + i % 3) {
                users.push(user.clone());
                orders.push(format!("{user}-{o}"));
                items.push("baguette".to_owned());
                channels.push("micro_store");
                amounts.push(12.0);
            }
            rfm_rows.push((
                user,
                2 + i64::from(i % 4),
                8 + i % 3,
                12.0 * f64::from(8 + i % 3),
            ));
        }
        // Each regular also had a line fully refunded: not kept, but in the refund share.
        for i in 0..20 {
            users.push(format!("r{i:02}"));
            orders.push(format!("r{i:02}-refunded"));
            items.push("cheesecake".to_owned());
            channels.push("micro_store");
            amounts.push(0.0);
        }
        for i in 0..20 {
            let user = format!("s{i:02}");
            users.push(user.clone());
            orders.push(format!("{user}-0"));
            items.push("cheesecake".to_owned());
            channels.push("mini_program");
            amounts.push(40.0 + f64::from(i % 5));
            rfm_rows.push((user, 60 + i64::from(i), 1, 40.0 + f64::from(i % 5)));
        }
        let n = users.len();
        let lines = df!(
            USER_ID => users,
            ORDER_ID => orders,
            ITEM_ID => items,
            NET_QUANTITY => amounts.iter().map(|a| i64::from(*a > 0.0)).collect::<Vec<_>>(),
            REFUNDED_CENTS => amounts.iter().map(|a| if *a > 0.0 { 0 } else { 500i64 }).collect::<Vec<_>>(),
            NET_CENTS => amounts.iter().map(|a| (a * 100.0) as i64).collect::<Vec<_>>(),
            ORDERED_AT => vec![0i64; n],
            ORDER_CHANNEL => channels,
        )
        .expect("lines");
        let categories = df!(ITEM_ID => ["baguette", "cheesecake"], CATEGORY => ["bread", "cake"])
            .expect("categories");
        let rfm = df!(
            USER_ID => rfm_rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            RECENCY_DAYS => rfm_rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            FREQUENCY => rfm_rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            MONETARY => rfm_rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        )
        .expect("rfm");
        let (frame, names) =
            features(rfm.lazy(), lines.lazy(), categories.lazy()).expect("features");
        let clustering = cluster(&frame, &names)
            .expect("fit")
            .expect("enough customers");
        assert_eq!(clustering.k, 2, "{:?}", clustering.silhouettes);
        let mut descriptions: Vec<(u64, String)> = clustering
            .clusters
            .iter()
            .map(|c| (c.customers, c.description.clone()))
            .collect();
        descriptions.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(descriptions[0].0, 20);
        assert_eq!(
            descriptions[0].1,
            "frequent, recent bread buyers, mostly micro-store"
        );
        assert_eq!(
            descriptions[1].1,
            "occasional, low-spending, lapsed cake buyers, mostly mini-program"
        );
    }
}
