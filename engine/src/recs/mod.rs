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
pub mod repeat;
pub mod sequence;
pub mod signals;
pub mod tifu;
pub mod tifu_prefix;
pub mod trend;

/// The hash maps of the recommenders' loops, keyed by item and customer indices or the
/// merchant's ids: foldhash, several times cheaper than std's SipHash on such short keys (none
/// is keyed by a request, and none is read in iteration order without a sort after it).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
