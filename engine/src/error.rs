//! The engine's one error type: each variant carries what a person needs to act on it.

use std::path::PathBuf;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("polars failed while {context}: {source}")]
    Polars {
        context: String,
        #[source]
        source: polars::error::PolarsError,
    },

    #[error(
        "the store at {path} is damaged: {reason}; restore it from a backup or re-ingest the events"
    )]
    CorruptStore { path: PathBuf, reason: String },

    #[error("no snapshot in {data_dir} yet: run `recur run --data-dir {data_dir}` first")]
    NoSnapshot { data_dir: PathBuf },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Something named does not exist (a campaign, an audience).
    #[error("{0}")]
    NotFound(String),

    /// A name already taken, or a change that contradicts what is recorded.
    #[error("{0}")]
    Conflict(String),

    /// ClickHouse refused a query or could not be reached. The message is the server's or the
    /// client's; no credentials are part of it.
    #[error(
        "ClickHouse at {url} (database {database}) failed while {doing}: {message}; check that the server is up and reachable (scripts/services start-clickhouse starts the test server)"
    )]
    ClickHouse {
        doing: String,
        url: String,
        database: String,
        message: String,
        /// The server could not be reached or did not answer in time: worth retrying.
        transient: bool,
    },

    #[error("the {model} fit failed: {reason}")]
    FitFailed { model: &'static str, reason: String },
}

impl Error {
    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// Whether trying again later may succeed (a store that is down, not a bad request).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::ClickHouse {
                transient: true,
                ..
            }
        )
    }

    /// Wraps a Polars error with the step that failed.
    pub fn polars(context: impl Into<String>) -> impl FnOnce(polars::error::PolarsError) -> Self {
        let context = context.into();
        move |source| Self::Polars { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
