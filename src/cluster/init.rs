//! `tael-raft init`: a new cluster, exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use tael_consensus::Node as RaftNodeAddr;
use tonic::Code;

use super::peers::{PeerError, PeerErrorOr};
use super::{Cluster, ClusterError};

const ADOPT_TIMEOUT: Duration = Duration::from_secs(5);

impl Cluster {
    /// Joins every member to a new cluster id, then initializes Raft with
    /// them. Refused if this node is already in a cluster.
    pub async fn init(&self, members: BTreeMap<u64, String>) -> Result<String, ClusterError> {
        let me = self.settings.node_id;
        if !members.contains_key(&me) {
            return Err(ClusterError::Invalid(format!(
                "the member list must include this node ({me})"
            )));
        }
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Internal(e.to_string()))?;
        if self.identity.get().is_some() || initialized {
            return Err(ClusterError::Conflict("cluster already initialized".into()));
        }
        let cluster_id = tael_consensus::hex(&rand::random::<[u8; 16]>());
        // Claim this node first: a concurrent second init fails here.
        self.identity
            .adopt(&cluster_id)
            .map_err(ClusterError::Conflict)?;
        for (&id, addr) in members.iter().filter(|(id, _)| **id != me) {
            self.adopt_member(id, addr, &cluster_id).await?;
        }
        let nodes: BTreeMap<u64, RaftNodeAddr> = members
            .into_iter()
            .map(|(id, addr)| (id, RaftNodeAddr { addr }))
            .collect();
        self.raft
            .initialize(nodes)
            .await
            .map_err(|e| ClusterError::Invalid(format!("initializing raft: {e}")))?;
        Ok(cluster_id)
    }

    async fn adopt_member(
        &self,
        id: u64,
        addr: &str,
        cluster_id: &str,
    ) -> Result<(), ClusterError> {
        match self.peers.adopt(addr, cluster_id, id, ADOPT_TIMEOUT).await {
            Ok(()) => Ok(()),
            Err(PeerErrorOr::Local(e)) => Err(e),
            Err(PeerErrorOr::Peer(PeerError::Refused(s))) => {
                let why = format!("member {id} at {addr}: {}", s.message());
                Err(match s.code() {
                    Code::FailedPrecondition => ClusterError::Conflict(why),
                    _ => ClusterError::Invalid(why),
                })
            }
            Err(PeerErrorOr::Peer(PeerError::NoAnswer)) => Err(ClusterError::Unavailable(format!(
                "member {id} at {addr} did not answer"
            ))),
        }
    }
}
