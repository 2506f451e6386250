//! Writes: every record goes through the leader.

use std::time::Duration;

use tael_consensus::Record;
use tonic::Code;

use super::peers::{PeerError, PeerErrorOr};
use super::{Cluster, ClusterError};
use crate::payload;

/// How long a write may wait for commit before the client is told to retry.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// Commits `record` through the leader (this node or a forward) and
    /// returns its log index once it reaches the configured ack level
    /// (committed on a quorum, or also applied on the leader).
    pub async fn propose(&self, record: Record) -> Result<u64, ClusterError> {
        self.propose_for_response(record)
            .await
            .map(|(index, _)| index)
    }

    /// [`Cluster::propose`], also returning what the leader's stamp produced
    /// (see [`payload::stamp_local`]).
    pub async fn propose_for_response(
        &self,
        record: Record,
    ) -> Result<(u64, Vec<u8>), ClusterError> {
        self.peers.cluster_id()?;
        let m = self.metrics();
        if m.current_leader == Some(self.settings.node_id) {
            let (record, response) = payload::stamp_local(record).map_err(ClusterError::Invalid)?;
            let index = self.propose_here(record).await?;
            return Ok((index, response));
        }
        let (leader, addr) = self.leader_addr(&m)?;
        match self.peers.forward(&addr, record, WRITE_TIMEOUT).await {
            Ok(answer) => Ok(answer),
            Err(PeerErrorOr::Local(e)) => Err(e),
            Err(PeerErrorOr::Peer(PeerError::Refused(s))) if s.code() == Code::InvalidArgument => {
                Err(ClusterError::Invalid(s.message().into()))
            }
            Err(PeerErrorOr::Peer(PeerError::Refused(s))) => Err(ClusterError::Unavailable(
                format!("forwarding to leader {leader}: {}", s.message()),
            )),
            Err(PeerErrorOr::Peer(PeerError::NoAnswer)) => Err(ClusterError::Unavailable(format!(
                "timed out forwarding to leader {leader}; the write may or may not apply"
            ))),
        }
    }

    /// Proposes `record` on this node, the leader, and waits for its ack.
    async fn propose_here(&self, record: Record) -> Result<u64, ClusterError> {
        tael_consensus::write::propose(
            &self.raft,
            &self.log,
            record,
            self.settings.ack,
            WRITE_TIMEOUT,
        )
        .await
        .map_err(|s| ClusterError::Unavailable(s.message().to_string()))
    }
}

#[cfg(feature = "fault-injection")]
impl Cluster {
    /// Fault harness only: proposes `record` as it is, skipping the leader's
    /// check and stamp (`payload::leader_stamp`), to put an entry no replica
    /// can apply into the log (`faults::poison`). Leader only: a forward
    /// would be checked by the leader it reaches. Returns the log index once
    /// the entry reaches the ack level.
    pub async fn propose_unchecked(&self, record: Record) -> Result<u64, ClusterError> {
        self.peers.cluster_id()?;
        if self.metrics().current_leader != Some(self.settings.node_id) {
            return Err(ClusterError::NotLeader { leader_rest: None });
        }
        self.propose_here(record).await
    }
}
