//! Recur's engine: the event contract, the store, the batch jobs and the snapshots they produce.
//!
//! No network servers live here; ingest and the API call into this crate.

pub mod analytics;
pub mod campaign;
pub mod clv;
pub mod error;
pub mod event;
pub mod frame_json;
pub mod jobs;
pub mod keys;
pub mod logit;
pub mod recommendation;
pub mod recs;
pub mod settings;
pub mod snapshot;
pub mod store;
pub mod synth;

pub use error::{Error, Result};

/// Hash maps keyed by ids and indices the engine builds itself (from the store, never keyed by
/// what a request inserts): foldhash, several times cheaper than std's SipHash on such short
/// keys. None is read in iteration order without a sort after it.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
