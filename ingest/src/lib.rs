//! Getting events into Recur: files, stdin, HTTP bodies and Kafka.
//!
//! Every path validates with the engine's contract and appends through the store interface,
//! which stores each (merchant_id, event_id) once; rejected lines are kept with their reason.

pub mod batch;
pub mod body;
pub mod error;
pub mod file;
pub mod kafka;
pub mod source;

pub use batch::{BatchLimits, Batcher};
pub use error::{Error, Result};
pub use file::{Progress, ingest_sources};
pub use source::Source;
