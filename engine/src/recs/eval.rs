//! `recur eval`: the next-basket protocol on one merchant's kept orders. Customers' held-out
//! orders ([`super::baskets::Holdout`]) are predicted by every model from the training
//! baskets only, and each model's lists are scored ([`super::metrics`]).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::IntoLazy;
use serde::Serialize;

use super::als::Als;
use super::baskets::{BasketHistory, Holdout, Split, split};
use super::blend::Blend;
use super::cooccur::CoPurchase;
use super::metrics::{ListMetrics, evaluate};
use super::models::{GlobalPopularity, NextBasketModel, PersonalTopFrequency};
use super::repeat::RepeatTiming;
use super::sequence::{BoughtAfter, ViewedThenBought};
use super::signals::Signals;
use super::tifu::TifuKnn;
use crate::analytics::MerchantAnalytics;
use crate::error::{Error, Result};
use crate::settings::MerchantSettings;
use crate::store::EventStore;

/// What `recur eval` measures.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// List length.
    pub k: usize,
    pub holdout: Holdout,
    /// Only these models (names as [`models`] gives them); all when `None`.
    pub models: Option<Vec<String>>,
    /// Where to write each merchant's training matrix and cases ([`write_matrix`]).
    pub matrix_dir: Option<PathBuf>,
}

impl EvalOptions {
    /// Every model's name, in table order.
    pub fn model_names() -> Vec<&'static str> {
        models().iter().map(|m| m.name()).collect()
    }

    /// Checks the model names asked for.
    pub fn validate(&self) -> Result<()> {
        let known = Self::model_names();
        for name in self.models.iter().flatten() {
            if !known.contains(&name.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "unknown model {name:?} in --models; the models are {}",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
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
        Box::new(BoughtAfter),
        Box::new(ViewedThenBought),
        Box::new(Als::default()),
        Box::new(Blend::default()),
        // The exclude-purchased list: scored on new items, against popularity.
        Box::new(Blend {
            explore: true,
            ..Blend::default()
        }),
    ]
}

/// Evaluates every model (or those of `options.models`) on `history`.
pub fn evaluate_history(
    merchant_id: &str,
    history: &BasketHistory,
    options: &EvalOptions,
) -> Result<MerchantEval> {
    let split = split(history, options.holdout);
    if let Some(dir) = &options.matrix_dir {
        write_matrix(dir, merchant_id, &split)?;
    }
    let wanted = |name: &str| {
        options
            .models
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    };
    let models = models()
        .iter()
        .filter(|model| wanted(model.name()))
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
    Ok(MerchantEval {
        merchant_id: merchant_id.to_owned(),
        holdout: match options.holdout {
            Holdout::LastOrder => "last-order".to_owned(),
            Holdout::Days(n) => format!("days:{n}"),
        },
        k: options.k,
        customers: split.cases.len(),
        catalogue: history.items.len(),
        models,
    })
}

/// Writes the ALS input of `split` for other libraries to fit the very same problem:
/// `{merchant}.mtx`, the training customers × items confidences `1 + α·ln(1 + r)` in Matrix
/// Market coordinate format (1-based; the values are the confidences `implicit` and Spark
/// take), and `{merchant}.cases.jsonl`, one `{"user", "target"}` per held-out case (0-based
/// row and column indices of the matrix).
pub fn write_matrix(dir: &Path, merchant_id: &str, split: &Split) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    let name = crate::store::merchant_file_stem(merchant_id);
    let confidences = Als::default().confidences(&split.train);
    let path = dir.join(format!("{name}.mtx"));
    let file = std::fs::File::create(&path).map_err(Error::io("creating", &path))?;
    let mut out = BufWriter::new(file);
    let mut write = || -> std::io::Result<()> {
        writeln!(out, "%%MatrixMarket matrix coordinate real general")?;
        writeln!(
            out,
            "{} {} {}",
            confidences.rows(),
            confidences.columns,
            confidences.values.len()
        )?;
        for row in 0..confidences.rows() {
            for (column, value) in confidences.row(row) {
                writeln!(out, "{} {} {value}", row + 1, column + 1)?;
            }
        }
        out.flush()
    };
    write().map_err(Error::io("writing", &path))?;
    let path = dir.join(format!("{name}.cases.jsonl"));
    let file = std::fs::File::create(&path).map_err(Error::io("creating", &path))?;
    let mut out = BufWriter::new(file);
    let mut write = || -> std::io::Result<()> {
        for case in &split.cases {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({ "user": case.user, "target": case.target }),
            )?;
            out.write_all(b"\n")?;
        }
        out.flush()
    };
    write().map_err(Error::io("writing", &path))
}

/// Evaluates one merchant of the store; `None` if it has no kept orders.
pub fn evaluate_merchant(
    store: &mut dyn EventStore,
    merchant_id: &str,
    settings: &MerchantSettings,
    options: &EvalOptions,
) -> Result<Option<MerchantEval>> {
    let Some(analytics) = MerchantAnalytics::load(store, merchant_id, settings, None)? else {
        return Ok(None);
    };
    let mut history = BasketHistory::from_lines(analytics.lines.clone().lazy())?;
    if history.baskets.is_empty() {
        return Ok(None);
    }
    let events = analytics.events.clone().lazy();
    let items =
        crate::jobs::recommend::item_catalogue(events.clone(), analytics.lines.clone().lazy());
    Signals::load(&mut history, events, items)?;
    evaluate_history(merchant_id, &history, options).map(Some)
}
