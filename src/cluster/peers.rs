//! Every call this node makes to a peer on the client's behalf (forwarded
//! writes, read indexes, status, joining a cluster), each bounded by a
//! timeout. Raft's own traffic (append, vote, snapshot) is not here: it goes
//! through `tael_consensus::network`.

use std::sync::Arc;
use std::time::Duration;

use tael_consensus::network::{PeerChannels, PeerClient};
use tael_consensus::pb;
use tael_consensus::{ClusterIdentity, Record};
use tonic::Status;

use super::ClusterError;

/// How a peer call failed.
#[derive(Debug)]
pub enum PeerError {
    /// The peer answered with an error.
    Refused(Status),
    /// No answer within the call's timeout.
    NoAnswer,
}

#[derive(Clone)]
pub struct Peers {
    channels: PeerChannels,
    identity: Arc<ClusterIdentity>,
}

impl Peers {
    pub fn new(channels: PeerChannels, identity: Arc<ClusterIdentity>) -> Peers {
        Peers { channels, identity }
    }

    /// The cluster this node belongs to; peers refuse calls without it.
    pub fn cluster_id(&self) -> Result<String, ClusterError> {
        self.identity.get().ok_or_else(|| {
            ClusterError::Unavailable(
                "this node is not part of an initialized cluster yet (run `tael-raft init`)".into(),
            )
        })
    }

    fn client(&self, addr: &str) -> Result<PeerClient, ClusterError> {
        self.channels.client(addr).map_err(ClusterError::Invalid)
    }

    /// Proposes `record` on the leader at `addr`: its log index and the
    /// leader stamp's response.
    pub async fn forward(
        &self,
        addr: &str,
        record: Record,
        timeout: Duration,
    ) -> Result<(u64, Vec<u8>), PeerErrorOr> {
        let req = pb::ForwardRequest {
            cluster_id: self.cluster_id()?,
            tag: record.tag as u32,
            batch_key: record.batch_key.to_vec(),
            payload: record.payload,
        };
        let mut client = self.client(addr)?;
        let resp = within(timeout, client.forward(req)).await?;
        Ok((resp.log_index, resp.response))
    }

    /// A read index from the leader at `addr` (a lease read when `lease`).
    pub async fn read_index(
        &self,
        addr: &str,
        lease: bool,
        timeout: Duration,
    ) -> Result<u64, PeerErrorOr> {
        let req = pb::ReadIndexRequest {
            cluster_id: self.cluster_id()?,
            lease,
        };
        let mut client = self.client(addr)?;
        Ok(within(timeout, client.read_index(req)).await?.read_index)
    }

    /// The node at `addr`'s own view of itself.
    pub async fn node_status(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<pb::NodeStatusResponse, PeerErrorOr> {
        let req = pb::NodeStatusRequest {
            cluster_id: self.cluster_id()?,
        };
        let mut client = self.client(addr)?;
        Ok(within(timeout, client.node_status(req)).await?)
    }

    /// Asks the node at `addr` to join `cluster_id` as `node_id`.
    pub async fn adopt(
        &self,
        addr: &str,
        cluster_id: &str,
        node_id: u64,
        timeout: Duration,
    ) -> Result<(), PeerErrorOr> {
        let req = pb::AdoptClusterRequest {
            cluster_id: cluster_id.to_string(),
            node_id,
        };
        let mut client = self.client(addr)?;
        within(timeout, client.adopt_cluster(req)).await?;
        Ok(())
    }

    /// Whether the node at `addr` (expected to be `node_id`) belongs to a
    /// cluster, and whether its Raft is initialized.
    pub async fn init_probe(
        &self,
        addr: &str,
        node_id: u64,
        timeout: Duration,
    ) -> Result<pb::InitProbeResponse, PeerErrorOr> {
        let req = pb::InitProbeRequest { node_id };
        let mut client = self.client(addr)?;
        Ok(within(timeout, client.init_probe(req)).await?)
    }
}

/// A peer call's failure: either the call could not be made here
/// (no cluster id, a bad address), or the peer's.
#[derive(Debug)]
pub enum PeerErrorOr {
    Local(ClusterError),
    Peer(PeerError),
}

impl From<ClusterError> for PeerErrorOr {
    fn from(e: ClusterError) -> Self {
        PeerErrorOr::Local(e)
    }
}

impl From<PeerError> for PeerErrorOr {
    fn from(e: PeerError) -> Self {
        PeerErrorOr::Peer(e)
    }
}

async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, PeerError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(PeerError::Refused(s)),
        Err(_) => Err(PeerError::NoAnswer),
    }
}
