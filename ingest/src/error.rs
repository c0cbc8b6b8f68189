//! The ingest crate's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] recur_engine::Error),

    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the body is empty: send NDJSON (one event per line) or a JSON array of events")]
    EmptyBody,

    #[error("the body is not a JSON array of events: {0}")]
    BadArray(String),

    #[error("kafka: {0}")]
    Kafka(String),

    #[error("kafka configuration: {0}")]
    KafkaConfig(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
