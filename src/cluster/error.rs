//! What can go wrong when the server asks the cluster for something. Each
//! transport maps these to its status codes in one place (`rest::error`,
//! `otlp::grpc::status_from`, `otlp::http`).

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No leader, no quorum, a peer that did not answer, or an outcome that is
    /// unknown: the client should retry.
    #[error("{0}")]
    Unavailable(String),
    /// The request itself is wrong; retrying it unchanged cannot succeed.
    #[error("{0}")]
    Invalid(String),
    /// The request is valid but contradicts the cluster's state (already
    /// initialized, already a member, the last voter).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// Only the leader does this; its REST address when known.
    #[error("this node is not the leader")]
    NotLeader { leader_rest: Option<String> },
    /// A fault of this node (a broken invariant, local I/O).
    #[error("{0}")]
    Internal(String),
}

impl ClusterError {
    pub fn unavailable(what: &str, e: impl std::fmt::Display) -> ClusterError {
        ClusterError::Unavailable(format!("{what}: {e}"))
    }
}
