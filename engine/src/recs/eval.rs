//! `recur eval`: the next-basket protocol on one merchant's kept orders. Customers' held-out
//! orders ([`super::baskets::Holdout`]) are predicted by every model from the training
//! baskets only, and each model's lists are scored ([`super::metrics`]).

use std::time::Instant;

use polars::prelude::IntoLazy;
use serde::Serialize;

use super::baskets::{BasketHistory, Holdout, split};
use super::blend::Blend;
use super::cooccur::CoPurchase;
use super::metrics::{ListMetrics, evaluate};
use super::models::{GlobalPopularity, NextBasketModel, PersonalTopFrequency};
use super::repeat::RepeatTiming;
use super::tifu::TifuKnn;
use crate::analytics::MerchantAnalytics;
use crate::error::Result;
use crate::settings::MerchantSettings;
use crate::store::EventStore;

/// What `recur eval` measures.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// List length.
    pub k: usize,
    pub holdout: Holdout,
}

/// One model's scores.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEval {
    pub model: &'static str,
    #[serde(flatten)]
    pub metrics: ListMetrics,
    pub seconds: f64,
}

/// One merchant's evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct MerchantEval {
    pub merchant_id: String,
    pub holdout: String,
    pub k: usize,
    /// Customers whose held-out orders were predicted.
    pub customers: usize,
    /// Items the merchant sold in the data.
    pub catalogue: usize,
    pub models: Vec<ModelEval>,
}

/// The models compared: baselines first, then each generator alone, then the blend and its
/// explore list.
pub fn models() -> Vec<Box<dyn NextBasketModel>> {
    vec![
        Box::new(GlobalPopularity),
        Box::new(PersonalTopFrequency),
        Box::new(TifuKnn::default()),
        Box::new(RepeatTiming::default()),
        Box::new(CoPurchase::default()),
        Box::new(Blend::default()),
        // The exclude-purchased list: scored on new items, against popularity.
        Box::new(Blend {
            explore: true,
            ..Blend::default()
        }),
    ]
}

/// Evaluates every model on `history`.
pub fn evaluate_history(
    merchant_id: &str,
    history: &BasketHistory,
    options: EvalOptions,
) -> MerchantEval {
    let split = split(history, options.holdout);
    let models = models()
        .iter()
        .map(|model| {
            let started = Instant::now();
            let lists = model.recommend(&split.train, &split.cases, options.k);
            ModelEval {
                model: model.name(),
                metrics: evaluate(&split.cases, &lists, options.k, history.items.len()),
                seconds: started.elapsed().as_secs_f64(),
            }
        })
        .collect();
    MerchantEval {
        merchant_id: merchant_id.to_owned(),
        holdout: match options.holdout {
            Holdout::LastOrder => "last-order".to_owned(),
            Holdout::Days(n) => format!("days:{n}"),
        },
        k: options.k,
        customers: split.cases.len(),
        catalogue: history.items.len(),
        models,
    }
}

/// Evaluates one merchant of the store; `None` if it has no kept orders.
pub fn evaluate_merchant(
    store: &mut dyn EventStore,
    merchant_id: &str,
    settings: &MerchantSettings,
    options: EvalOptions,
) -> Result<Option<MerchantEval>> {
    let Some(analytics) = MerchantAnalytics::load(store, merchant_id, settings, None)? else {
        return Ok(None);
    };
    let history = BasketHistory::from_lines(analytics.lines.clone().lazy())?;
    if history.baskets.is_empty() {
        return Ok(None);
    }
    Ok(Some(evaluate_history(merchant_id, &history, options)))
}
