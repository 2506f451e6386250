//! The cluster handle: everything the server asks of consensus, in one place.
//!
//! Edges (OTLP, REST) and the query service never touch openraft or a peer
//! connection themselves; they hold an `Arc<Cluster>` (or an interface built
//! on it) and ask:
//!
//! - [`Cluster::propose`]: commit a record through the leader. On the leader
//!   it is stamped (`payload::stamp_local`) and appended; elsewhere it is
//!   forwarded to the leader over the peer port, which checks and stamps it
//!   (`payload::leader_stamp`). Either way the answer comes
//!   once the entry reached the configured ack level.
//! - [`Cluster::read_barrier`]: make the local state machine fresh enough for
//!   a consistency level (a read index from the leader, then a wait for local
//!   apply) and say which applied index a read reflects.
//! - [`Cluster::init`], membership ([`membership`]) and status ([`status`]).
//! - [`Cluster::run_check`]: prove the replicas agree ([`consistency`]).
//!
//! Errors are [`ClusterError`]s; each transport maps them to its own status
//! codes in one place.

pub mod consistency;
pub mod error;
mod init;
pub mod membership;
pub mod peers;
mod propose;
mod read;
pub mod retention;
pub mod status;

use std::sync::Arc;

use openraft::async_runtime::WatchReceiver;
use openraft::RaftMetrics;
use tael_consensus::write::AckLevel;
use tael_consensus::{ClusterIdentity, LogStore, Raft, TypeConfig};

use crate::state::{self, StateMachine};

pub use error::ClusterError;
pub use membership::{Member, Members, MAX_CATCH_UP_WAIT};
pub use peers::Peers;
pub use propose::WRITE_TIMEOUT;
pub use read::{Consistency, ReadBarrier, READ_TIMEOUT};

/// How this node takes part, fixed at start-up.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: u64,
    /// Given to peers and clients that ask where this node's REST API is.
    pub rest_addr: String,
    /// When a write counts as done (committed, or also applied).
    pub ack: AckLevel,
    /// The `stale-local-reads` mutation: every read is served locally.
    pub stale_local_reads: bool,
}

pub struct Cluster {
    settings: ClusterSettings,
    raft: Raft<StateMachine>,
    log: LogStore,
    identity: Arc<ClusterIdentity>,
    peers: Peers,
    /// The replicated state, for what membership keeps there (retired ids)
    /// and this replica's consistency-check digests.
    sm: Arc<state::Shared>,
    checks: consistency::CheckStats,
}

impl Cluster {
    pub fn new(
        settings: ClusterSettings,
        raft: Raft<StateMachine>,
        log: LogStore,
        identity: Arc<ClusterIdentity>,
        peers: Peers,
        sm: Arc<state::Shared>,
    ) -> Cluster {
        Cluster {
            settings,
            raft,
            log,
            identity,
            peers,
            sm,
            checks: Default::default(),
        }
    }

    pub fn node_id(&self) -> u64 {
        self.settings.node_id
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.identity.get()
    }

    /// Raft's current view (leader, term, indexes, membership, replication).
    pub fn metrics(&self) -> RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.metrics().current_leader == Some(self.settings.node_id)
    }

    /// Asks Raft for a snapshot now (the size trigger in `serve`). Fails
    /// only once Raft has stopped.
    pub async fn trigger_snapshot(&self) -> Result<(), ClusterError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ClusterError::Internal(format!("raft stopped: {e}")))
    }

    pub fn log(&self) -> &LogStore {
        &self.log
    }

    /// The leader's id and node-to-node address, from the known membership.
    fn leader_addr(&self, m: &RaftMetrics<TypeConfig>) -> Result<(u64, String), ClusterError> {
        let leader = m
            .current_leader
            .ok_or_else(|| ClusterError::Unavailable("no leader is known".into()))?;
        let node = m
            .membership_config
            .membership()
            .get_node(&leader)
            .ok_or_else(|| {
                ClusterError::Unavailable(format!("leader {leader} is not in the known membership"))
            })?;
        Ok((leader, node.addr.clone()))
    }
}
