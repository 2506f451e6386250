//! Reads: the barrier that makes local state fresh enough for a consistency
//! level (docs/consistency.md).

use std::time::Duration;

use openraft::ReadPolicy;

use super::peers::{PeerError, PeerErrorOr};
use super::{Cluster, ClusterError};

/// How long a read may wait for a read index and for local apply.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Lease,
    Local,
}

impl Consistency {
    pub fn parse(s: &str) -> Option<Consistency> {
        match s {
            "linearizable" => Some(Consistency::Linearizable),
            "lease" => Some(Consistency::Lease),
            "local" => Some(Consistency::Local),
            _ => None,
        }
    }
}

/// What a read was served from: returned with every query response.
#[derive(Clone, Copy, Debug)]
pub struct ReadBarrier {
    pub node_id: u64,
    pub applied_index: u64,
}

impl Cluster {
    /// Makes the local state machine fresh enough for `level` and says what
    /// it reflects.
    pub async fn read_barrier(&self, level: Consistency) -> Result<ReadBarrier, ClusterError> {
        let m = self.metrics();
        if level == Consistency::Local || self.settings.stale_local_reads {
            return Ok(ReadBarrier {
                node_id: self.settings.node_id,
                applied_index: m.last_applied.map_or(0, |l| l.index),
            });
        }
        let lease = level == Consistency::Lease;
        let read_index = if m.current_leader == Some(self.settings.node_id) {
            self.leader_read_index(lease).await?
        } else {
            self.read_index_from_leader(&m, lease).await?
        };
        let m = self
            .raft
            .wait(Some(READ_TIMEOUT))
            .applied_index_at_least(Some(read_index), "read barrier")
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!(
                    "waiting to apply up to the read index {read_index}: {e}"
                ))
            })?;
        let applied = m.last_applied.map_or(0, |l| l.index);
        assert!(
            applied >= read_index,
            "read barrier passed at applied index {applied} below the read index {read_index}"
        );
        Ok(ReadBarrier {
            node_id: self.settings.node_id,
            applied_index: applied,
        })
    }

    /// On the leader: confirm leadership (a quorum round, or the lease).
    async fn leader_read_index(&self, lease: bool) -> Result<u64, ClusterError> {
        let policy = if lease {
            ReadPolicy::LeaseRead
        } else {
            ReadPolicy::ReadIndex
        };
        let lin = tokio::time::timeout(READ_TIMEOUT, self.raft.get_read_linearizer(policy))
            .await
            .map_err(|_| ClusterError::Unavailable("timed out confirming leadership".into()))?
            .map_err(|e| ClusterError::Unavailable(format!("confirming leadership: {e}")))?;
        Ok(lin.read_log_id().index())
    }

    async fn read_index_from_leader(
        &self,
        m: &openraft::RaftMetrics<tael_consensus::TypeConfig>,
        lease: bool,
    ) -> Result<u64, ClusterError> {
        let (leader, addr) = self.leader_addr(m)?;
        match self.peers.read_index(&addr, lease, READ_TIMEOUT).await {
            Ok(index) => Ok(index),
            Err(PeerErrorOr::Local(e)) => Err(e),
            Err(PeerErrorOr::Peer(PeerError::Refused(s))) => Err(ClusterError::Unavailable(
                format!("read index from leader {leader}: {}", s.message()),
            )),
            Err(PeerErrorOr::Peer(PeerError::NoAnswer)) => Err(ClusterError::Unavailable(format!(
                "timed out asking leader {leader} for a read index"
            ))),
        }
    }
}
