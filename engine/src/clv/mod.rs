//! Repeat-purchase models: who will buy again, how often, and what they are worth.
//!
//! `summary` turns transactions into per-customer (frequency, recency, T, monetary value)
//! following lifetimes' `summary_data_from_transaction_data`; `bgnbd`, `pareto` and
//! `gamma_gamma` fit the classic models by maximum likelihood (`fit`), and `predict` turns a
//! fit into the per-customer fields a profile shows: P(alive), expected purchases, CLV.

pub mod bgnbd;
pub mod data;
pub mod fit;
pub mod gamma_gamma;
pub mod io;
pub mod merchant;
pub mod pareto;
pub mod predict;
pub mod repurchase;
pub mod special;
pub mod summary;
pub mod tracking;

pub use data::{GroupedSpend, GroupedSummary};

use serde::Serialize;

use crate::error::Result;

/// Everything `recur clv fit` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ClvFitReport {
    pub customers: u64,
    pub bgnbd: bgnbd::BgNbdFit,
    pub pareto_nbd: Option<pareto::ParetoNbdFit>,
    /// Present when the input has spend.
    pub gamma_gamma: Option<gamma_gamma::GammaGammaFit>,
}

/// Fits BG/NBD, optionally Pareto/NBD, and Gamma-Gamma when spend is known.
pub fn fit_all(
    columns: &io::SummaryColumns,
    penalizer: f64,
    with_pareto: bool,
) -> Result<ClvFitReport> {
    let grouped = GroupedSummary::from_columns(&columns.frequency, &columns.recency, &columns.age)?;
    let bgnbd = bgnbd::fit(&grouped, penalizer)?;
    let pareto_nbd = if with_pareto {
        Some(pareto::fit(&grouped, penalizer)?)
    } else {
        None
    };
    let gamma_gamma = match &columns.monetary_value {
        Some(monetary) => Some(gamma_gamma::fit(
            &GroupedSpend::from_columns(&columns.frequency, monetary)?,
            penalizer,
        )?),
        None => None,
    };
    Ok(ClvFitReport {
        customers: grouped.customers,
        bgnbd,
        pareto_nbd,
        gamma_gamma,
    })
}
