//! Errors of the push crate.

/// What can stop a send as a whole (single messages fail into the delivery log instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] recur_engine::Error),

    /// The merchant's channel is not set up; the message says how to set it.
    #[error("{0}")]
    NotConfigured(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
