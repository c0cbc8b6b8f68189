//! Next-basket recommendation: one merchant's kept orders as baskets, the models that predict a
//! customer's next basket from them, and the offline evaluation that compares the models on
//! held-out orders (`recur eval`).
//!
//! Everything here works on [`baskets::BasketHistory`], built once per merchant from the net
//! order lines with Polars; the models are numeric code over its item indices.

pub mod accumulate;
pub mod als;
pub mod baskets;
pub mod blend;
pub mod cooccur;
pub mod eval;
pub mod feedback;
pub mod lists;
pub mod metrics;
pub mod models;
pub mod regression;
pub mod repeat;
pub mod sequence;
pub mod signals;
pub mod tifu;
pub mod tifu_prefix;
pub mod trend;
