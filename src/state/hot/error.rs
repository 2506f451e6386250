//! What can go wrong in the hot store.

use crate::codec::CodecError;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The manifest names a cold file this node does not have (lost or
    /// deleted by hand): reads of it fail instead of missing its records.
    #[error("cold file {0} is named by the replicated manifest but missing on this node; read from another node, or reinstall this node from a snapshot")]
    ColdFileMissing(String),
    /// A cold range lives in the shared object store, which did not answer
    /// (or this node has no store configured): the query needs it and
    /// fails, naming the range; hot data still answers other queries.
    #[error("cold {signal} data from {from_unix_nanos} to {to_unix_nanos} (unix ns) is unavailable: {reason}")]
    ColdRangeUnavailable {
        signal: &'static str,
        from_unix_nanos: u64,
        to_unix_nanos: u64,
        reason: String,
    },
    #[error("full-text index: {0}")]
    Index(String),
}

impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        }
    }
}
