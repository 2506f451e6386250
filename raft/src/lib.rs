//! The consensus log of tael-raft.
//!
//! This crate knows about Raft, durable logs and the node-to-node transport; it
//! knows nothing about spans, logs or metrics. Application data travels as an
//! opaque [`Record`] (a signal tag, a batch key and payload bytes) and the
//! application supplies the state machine through openraft's
//! `RaftStateMachine` contract, with [`SnapshotFile`] as its snapshot data.

pub mod convert;
pub mod failover;
pub mod frame;
pub mod histogram;
pub mod identity;
pub mod log_store;
pub mod network;
pub mod peer_auth;
pub mod peer_tls;
pub mod server;
pub mod snapshot_file;
pub mod types;
pub mod write;

pub mod pb {
    tonic::include_proto!("tael.raft.v1");
}

pub use identity::ClusterIdentity;
pub use log_store::{LogStore, LogStoreOptions, LogStoreStats};
pub use snapshot_file::SnapshotFile;
pub use types::*;
pub use write::AckLevel;
