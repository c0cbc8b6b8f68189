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
pub mod pareto;
pub mod special;
pub mod summary;

pub use data::{GroupedSpend, GroupedSummary};
