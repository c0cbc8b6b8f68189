//! The per-customer table of a run: the profile plus RFM, lifecycle stage, cluster and
//! repeat-purchase forecasts, and the audiences evaluated over it.
//!
//! Every user with an event keeps one row (keyed by the stitched customer id); analytics
//! that only exist for buyers are null for the others.

use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::analytics::MerchantAnalytics;
use crate::analytics::audience::{self, AudienceInputs};
use crate::analytics::cluster::{CLUSTER, ClusterSummary};
use crate::analytics::identity::CUSTOMER_ID;
use crate::analytics::lifecycle::LIFECYCLE_STAGE;
use crate::analytics::period::{DAY_MS, Period};
use crate::analytics::rfm::{F_SCORE, M_SCORE, R_SCORE, RECENCY_DAYS, RFM_SEGMENT, VALUE_CLASS};
use crate::clv::merchant::{
    CLV_12M, EXPECTED_ORDER_VALUE, EXPECTED_PURCHASES_30D, MerchantModels, P_ALIVE, forecasts,
};
use crate::clv::repurchase::{self, REPURCHASE_SCORE};
use crate::error::{Error, Result};
use crate::store::{MERCHANT_ID, USER_ID};

/// The period a customer's current lifecycle stage is measured in.
pub const STAGE_PERIOD: Period = Period::Month;
pub const LINKED_USER_IDS: &str = "linked_user_ids";

/// What [`customer_tables`] produces.
pub struct CustomerTables {
    pub profiles: DataFrame,
    /// `merchant_id`, `cluster`, `customers`, `description`.
    pub clusters: DataFrame,
    pub cluster_summaries: Vec<ClusterSummary>,
    pub models: MerchantModels,
}

/// An audience and how many customers it holds after this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceSize {
    pub name: String,
    pub customers: u64,
}

/// Audience membership of a run.
pub struct AudienceResults {
    /// `merchant_id`, `audience`, `user_id`.
    pub members: DataFrame,
    pub sizes: Vec<AudienceSize>,
}

fn left_join(frame: LazyFrame, other: LazyFrame) -> LazyFrame {
    frame.join(
        other,
        [col(USER_ID)],
        [col(USER_ID)],
        JoinArgs::new(JoinType::Left),
    )
}

/// Extends `base_profiles` ([`super::profiles::profiles`]) with every per-customer analytic.
pub fn customer_tables(
    analytics: &MerchantAnalytics,
    base_profiles: DataFrame,
    on_step: &mut dyn FnMut(&str),
) -> Result<CustomerTables> {
    let merchant_id = analytics.merchant_id.as_str();
    let context = |step: &str| format!("{step} for merchant {merchant_id}");
    let rfm = analytics.rfm()?;
    on_step("rfm");
    let stages = analytics.customer_stages(STAGE_PERIOD)?;
    on_step("lifecycle stages");
    let clustering = analytics.clusters(&rfm)?;
    on_step("clusters");
    let (forecast, mut models) = forecasts(
        analytics.orders.clone().lazy(),
        &analytics.zone,
        analytics.as_of_ms,
    )?;
    on_step("forecasts");
    let fitted = models
        .bgnbd
        .map(|p| crate::clv::bgnbd::BgNbdParams::from_slice(&p));
    let repurchase_scores = match repurchase::compare(
        analytics.orders.clone().lazy(),
        &analytics.zone,
        analytics.as_of_ms,
        fitted,
    ) {
        Ok(Some((comparison, scores))) => {
            models.repurchase = Some(comparison);
            scores
        }
        Ok(None) => empty_scores().map_err(Error::polars(context("assembling empty scores")))?,
        Err(e) => {
            warn!(merchant = merchant_id, error = %e, "repurchase comparison skipped");
            empty_scores().map_err(Error::polars(context("assembling empty scores")))?
        }
    };
    if let Some(note) = &models.note {
        warn!(
            merchant = merchant_id,
            note = note.as_str(),
            "repeat-purchase models incomplete"
        );
    }
    on_step("repurchase comparison");
    let forecast = match forecast {
        Some(f) => f.lazy(),
        None => df!(
            USER_ID => Vec::<String>::new(),
            P_ALIVE => Vec::<f64>::new(),
            EXPECTED_PURCHASES_30D => Vec::<f64>::new(),
            EXPECTED_ORDER_VALUE => Vec::<f64>::new(),
            CLV_12M => Vec::<f64>::new(),
        )
        .map_err(Error::polars(context("assembling empty forecasts")))?
        .lazy(),
    };
    let (assignments, clusters, summaries) = match clustering {
        Some(c) => {
            let summaries = c.clusters;
            let ids: Vec<u32> = summaries.iter().map(|s| s.cluster).collect();
            let sizes: Vec<u64> = summaries.iter().map(|s| s.customers).collect();
            let words: Vec<&str> = summaries.iter().map(|s| s.description.as_str()).collect();
            let table = df!(CLUSTER => ids, "customers" => sizes, "description" => words)
                .map_err(Error::polars(context("tabulating clusters")))?;
            (c.assignments, table, summaries)
        }
        None => (
            df!(USER_ID => Vec::<String>::new(), CLUSTER => Vec::<u32>::new())
                .map_err(Error::polars(context("tabulating clusters")))?,
            df!(CLUSTER => Vec::<u32>::new(), "customers" => Vec::<u64>::new(), "description" => Vec::<String>::new())
                .map_err(Error::polars(context("tabulating clusters")))?,
            Vec::new(),
        ),
    };
    let linked = analytics
        .identities
        .clone()
        .lazy()
        .group_by([col(CUSTOMER_ID).alias(USER_ID)])
        .agg([col(USER_ID)
            .sort(SortOptions::default())
            .alias(LINKED_USER_IDS)]);
    let rfm = rfm.lazy().select([
        col(USER_ID),
        col(RECENCY_DAYS),
        col(R_SCORE),
        col(F_SCORE),
        col(M_SCORE),
        col(RFM_SEGMENT),
        col(VALUE_CLASS),
    ]);
    let mut profiles = base_profiles.lazy();
    // Customers without a unionid are not in the identity map: their only id is their own.
    let linked_or_self = when(col(LINKED_USER_IDS).is_null())
        .then(concat_list([col(USER_ID)]).map_err(Error::polars(context("listing linked ids")))?)
        .otherwise(col(LINKED_USER_IDS))
        .alias(LINKED_USER_IDS);
    for table in [
        rfm,
        stages.lazy(),
        assignments.lazy(),
        forecast,
        repurchase_scores.lazy(),
        linked,
    ] {
        profiles = left_join(profiles, table);
    }
    let orders = col("orders").cast(DataType::Float64);
    let gap_days = ((col("last_purchase_ms") - col("first_purchase_ms")).cast(DataType::Float64)
        / lit(DAY_MS as f64))
        / (orders.clone() - lit(1.0));
    let profiles = profiles
        .with_columns([
            linked_or_self,
            col("revenue").alias("historic_clv"),
            when(orders.clone().gt(lit(0.0)))
                .then(col("revenue") / orders.clone())
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("avg_order_value"),
            when(orders.gt(lit(1.0)))
                .then(gap_days)
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("avg_days_between_orders"),
        ])
        .with_column(
            (col("last_purchase_ms")
                + (col("avg_days_between_orders") * lit(DAY_MS as f64))
                    .round(0, RoundMode::HalfToEven)
                    .cast(DataType::Int64))
            .alias("expected_next_order_ms"),
        )
        .sort([USER_ID], SortMultipleOptions::default())
        .collect()
        .map_err(Error::polars(context("assembling customer profiles")))?;
    let clusters = super::with_merchant(merchant_id, clusters)
        .map_err(Error::polars(context("labelling clusters")))?;
    Ok(CustomerTables {
        profiles,
        clusters,
        cluster_summaries: summaries,
        models,
    })
}

fn empty_scores() -> PolarsResult<DataFrame> {
    df!(USER_ID => Vec::<String>::new(), REPURCHASE_SCORE => Vec::<f64>::new())
}

/// Evaluates the merchant's stored audiences over this run's customers.
pub fn evaluate_audiences(
    data_dir: &Path,
    analytics: &MerchantAnalytics,
    profiles: &DataFrame,
) -> Result<AudienceResults> {
    let merchant_id = analytics.merchant_id.as_str();
    let definitions = audience::load_definitions(data_dir, merchant_id)?;
    let inputs = audience_inputs(analytics, profiles);
    let mut members = Vec::new();
    let mut sizes = Vec::new();
    for definition in &definitions {
        let users = audience::evaluate(&definition.rule, &inputs)
            .collect()
            .map_err(Error::polars(format!(
                "evaluating audience {} of merchant {merchant_id}",
                definition.name
            )))?;
        sizes.push(AudienceSize {
            name: definition.name.clone(),
            customers: users.height() as u64,
        });
        members.push(users.lazy().select([
            lit(merchant_id).alias(MERCHANT_ID),
            lit(definition.name.as_str()).alias("audience"),
            col(USER_ID),
        ]));
    }
    let members = if members.is_empty() {
        df!(MERCHANT_ID => Vec::<String>::new(), "audience" => Vec::<String>::new(), USER_ID => Vec::<String>::new())
            .map_err(Error::polars("an empty audience table"))?
    } else {
        concat(members, UnionArgs::default())
            .and_then(LazyFrame::collect)
            .map_err(Error::polars(format!(
                "collecting audiences of merchant {merchant_id}"
            )))?
    };
    Ok(AudienceResults { members, sizes })
}

/// The inputs rules are evaluated against, from a run's analytics and profiles.
pub fn audience_inputs(analytics: &MerchantAnalytics, profiles: &DataFrame) -> AudienceInputs {
    AudienceInputs {
        sources: analytics.sources(),
        lines: analytics.lines.clone().lazy(),
        categories: analytics.categories.clone().lazy(),
        subscriptions: analytics.subscriptions(),
        customers: profiles.clone().lazy().select([
            col(USER_ID),
            col(RFM_SEGMENT),
            col(VALUE_CLASS),
            col(LIFECYCLE_STAGE),
            col(CLUSTER),
            col(P_ALIVE),
            col(CLV_12M),
        ]),
        as_of_ms: analytics.as_of_ms,
    }
}
