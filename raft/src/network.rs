//! Client side of the node-to-node transport.
//!
//! One long-lived HTTP/2 channel per peer address, shared by replication,
//! heartbeats, snapshots and request forwarding. Every unary call has a
//! deadline; the cluster id goes on every request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::convert::*;
use crate::frame::RecordIntegrity;
use crate::pb;
use crate::pb::raft_transport_client::RaftTransportClient;
use crate::peer_auth::{PeerProof, PeerSecret};
use crate::types::{Node, NodeId, Snapshot, TypeConfig, Vote};
use crate::ClusterIdentity;

/// Largest message either side accepts; entries are also bounded by
/// openraft's `max_payload_entries`.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Snapshot data goes out in chunks of at most this size.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

type RpcError = RPCError<TypeConfig>;

/// A client of a peer's transport: every call carries the proof of the
/// cluster secret (see `peer_auth`).
pub type PeerClient =
    RaftTransportClient<tonic::service::interceptor::InterceptedService<Channel, PeerProof>>;

/// What a connection carries. Each purpose gets its own HTTP/2 connection to
/// a peer, so a heartbeat never waits behind megabytes of replication or a
/// snapshot transfer on the same TCP stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    Replication,
    Heartbeat,
    Snapshot,
    /// Forwarded writes, read index requests, status.
    Client,
}

/// Channels to peers, keyed by address and purpose, created lazily and kept
/// for the life of the process (tonic reconnects a broken channel by itself).
#[derive(Clone, Default)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<(String, Purpose), Channel>>>,
    /// Membership address → address actually dialed (a proxy in fault tests).
    dial_overrides: Arc<HashMap<String, String>>,
    proof: PeerProof,
    /// Mutual TLS towards every peer (`peer_tls`), or plain TCP.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// How records sent to followers are protected (as in the local log).
    integrity: RecordIntegrity,
}

impl PeerChannels {
    pub fn with_dial_overrides(overrides: impl IntoIterator<Item = (String, String)>) -> Self {
        PeerChannels {
            channels: Default::default(),
            dial_overrides: Arc::new(overrides.into_iter().collect()),
            proof: PeerProof::default(),
            tls: None,
            integrity: RecordIntegrity::default(),
        }
    }

    /// Dial every peer with mutual TLS under `config`.
    pub fn with_tls(mut self, config: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = config;
        self
    }

    /// Records sent to followers carry what `integrity` asks for.
    pub fn with_integrity(mut self, integrity: RecordIntegrity) -> Self {
        self.integrity = integrity;
        self
    }

    /// Every call proves knowledge of `secret` to the peer.
    pub fn with_secret(mut self, secret: Option<PeerSecret>) -> Self {
        self.proof = PeerProof::new(secret);
        self
    }

    /// The address dialed for the membership address `addr` (an override,
    /// or `addr` itself).
    pub fn dial_addr(&self, addr: &str) -> String {
        self.dial_overrides
            .get(addr)
            .map_or(addr, |s| s.as_str())
            .to_string()
    }

    pub fn client(&self, addr: &str) -> Result<PeerClient, String> {
        self.client_for(addr, Purpose::Client)
    }

    pub fn client_for(&self, addr: &str, purpose: Purpose) -> Result<PeerClient, String> {
        let mut map = self.channels.lock().unwrap();
        let channel = match map.get(&(addr.to_string(), purpose)) {
            Some(c) => c.clone(),
            None => {
                let dial = self.dial_overrides.get(addr).map_or(addr, |s| s.as_str());
                let endpoint = Endpoint::from_shared(format!("http://{dial}"))
                    .map_err(|e| format!("bad peer address {dial}: {e}"))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .initial_stream_window_size(Some(4 * 1024 * 1024))
                    .initial_connection_window_size(Some(16 * 1024 * 1024));
                let c = match &self.tls {
                    None => endpoint.connect_lazy(),
                    // The URI stays http://: tonic refuses https:// unless
                    // its own TLS does the handshake, and here the
                    // connector does.
                    Some(config) => endpoint.connect_with_connector_lazy(
                        crate::peer_tls::PeerTlsConnector::new(config.clone(), addr)?,
                    ),
                };
                map.insert((addr.to_string(), purpose), c.clone());
                c
            }
        };
        Ok(
            RaftTransportClient::with_interceptor(channel, self.proof.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
    }
}

#[derive(Clone)]
pub struct NetworkFactory {
    identity: Arc<ClusterIdentity>,
    channels: PeerChannels,
}

impl NetworkFactory {
    pub fn new(identity: Arc<ClusterIdentity>, channels: PeerChannels) -> Self {
        NetworkFactory { identity, channels }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerConnection {
        self.connection(target, node, Purpose::Replication)
    }

    async fn new_heartbeat_client(&mut self, target: NodeId, node: &Node) -> PeerConnection {
        self.connection(target, node, Purpose::Heartbeat)
    }

    async fn new_snapshot_client(&mut self, target: NodeId, node: &Node) -> PeerConnection {
        self.connection(target, node, Purpose::Snapshot)
    }
}

impl NetworkFactory {
    fn connection(&self, target: NodeId, node: &Node, purpose: Purpose) -> PeerConnection {
        PeerConnection {
            target,
            addr: node.addr.clone(),
            client: self.channels.client_for(&node.addr, purpose),
            identity: self.identity.clone(),
            integrity: self.channels.integrity.clone(),
        }
    }
}

pub struct PeerConnection {
    target: NodeId,
    addr: String,
    client: Result<PeerClient, String>,
    identity: Arc<ClusterIdentity>,
    integrity: RecordIntegrity,
}

fn status_to_rpc_error(s: Status) -> RpcError {
    match s.code() {
        // Down, refused, or not (yet) in our cluster: back off before retrying.
        Code::Unavailable | Code::FailedPrecondition | Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&s))
        }
        _ => RPCError::Network(NetworkError::new(&s)),
    }
}

impl PeerConnection {
    fn prepare(&self) -> Result<(PeerClient, String), RpcError> {
        let client = self
            .client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))?;
        let cluster_id = self.identity.get().ok_or_else(|| {
            RPCError::Unreachable(Unreachable::from_string(
                "this node has not joined a cluster yet",
            ))
        })?;
        Ok((client, cluster_id))
    }

    async fn deadline<T>(
        &self,
        option: &RPCOption,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, RpcError> {
        match tokio::time::timeout(option.hard_ttl(), fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(status_to_rpc_error(status)),
            Err(_) => Err(RPCError::Network(NetworkError::from_string(format!(
                "rpc to node {} at {} exceeded its {:?} deadline",
                self.target,
                self.addr,
                option.hard_ttl()
            )))),
        }
    }
}

fn stream_result_from_pb(
    r: pb::AppendResponse,
) -> Result<StreamAppendResult<TypeConfig>, RpcError> {
    use pb::append_response::Result as R;
    let bad = |m: &str| RPCError::Network(NetworkError::from_string(m.to_string()));
    match r
        .result
        .ok_or_else(|| bad("stream append response without a result"))?
    {
        R::PartialSuccess(p) => Ok(Ok(log_id_from_pb(p.last).map_err(|e| bad(e.message()))?)),
        R::Conflict(l) => {
            let l = log_id_from_pb(Some(l))
                .map_err(|e| bad(e.message()))?
                .expect("Some in, Some out");
            Ok(Err(StreamAppendError::Conflict(l)))
        }
        R::HigherVote(v) => Ok(Err(StreamAppendError::HigherVote(
            vote_from_pb(Some(v)).map_err(|e| bad(e.message()))?,
        ))),
        R::Success(_) => Err(bad("stream append answered with a unary success")),
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = crate::SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RpcError> {
        let (mut client, cluster_id) = self.prepare()?;
        let req = append_request_to_pb(cluster_id, &rpc, &self.integrity);
        let resp = self.deadline(&option, client.append(req)).await?;
        append_response_from_pb(resp).map_err(status_to_rpc_error)
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RpcError>>, RpcError>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let (mut client, cluster_id) = self.prepare()?;
            let integrity = self.integrity.clone();
            let requests =
                input.map(move |r| append_request_to_pb(cluster_id.clone(), &r, &integrity));
            let resp = client
                .stream_append(requests)
                .await
                .map_err(status_to_rpc_error)?;
            let out = resp.into_inner().map(|item| match item {
                Ok(r) => stream_result_from_pb(r),
                Err(status) => Err(status_to_rpc_error(status)),
            });
            Ok(Box::pin(out) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcError> {
        let (mut client, cluster_id) = self.prepare()?;
        let resp = self
            .deadline(&option, client.vote(vote_request_to_pb(cluster_id, &rpc)))
            .await?;
        vote_response_from_pb(resp).map_err(status_to_rpc_error)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcError> {
        let (mut client, cluster_id) = self.prepare()?;
        let resp = self
            .deadline(
                &option,
                client.pre_vote(vote_request_to_pb(cluster_id, &rpc)),
            )
            .await?;
        vote_response_from_pb(resp).map_err(status_to_rpc_error)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let (mut client, cluster_id) = self.prepare()?;
        let chunks = snapshot_chunks(cluster_id, vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let send = client.install_snapshot(chunks);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            resp = send => {
                let resp = resp.map_err(|s| StreamingError::from(status_to_rpc_error(s)))?.into_inner();
                let vote = vote_from_pb(resp.vote).map_err(|s| StreamingError::from(status_to_rpc_error(s)))?;
                Ok(SnapshotResponse { vote })
            }
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RpcError> {
        let (mut client, cluster_id) = self.prepare()?;
        let pb_req = pb::TransferLeaderRequest {
            cluster_id,
            from_leader: Some(vote_to_pb(req.from_leader())),
            to_node_id: *req.to_node_id(),
            last_log_id: req.last_log_id().map(log_id_to_pb),
        };
        self.deadline(&option, client.transfer_leader(pb_req))
            .await?;
        Ok(Ok(()))
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(200))))
    }
}

/// The request stream for one snapshot: meta first, then checksummed chunks.
async fn snapshot_chunks(
    cluster_id: String,
    vote: Vote,
    snapshot: Snapshot,
) -> std::io::Result<impl Stream<Item = pb::SnapshotChunk> + Send + 'static> {
    let file = tokio::fs::File::open(&snapshot.snapshot.path).await?;
    let total_bytes = file.metadata().await?.len();
    let meta = pb::SnapshotMeta {
        vote: Some(vote_to_pb(&vote)),
        last_log_id: snapshot.meta.last_log_id.as_ref().map(log_id_to_pb),
        last_membership_json: serde_json::to_vec(&snapshot.meta.last_membership)
            .map_err(std::io::Error::other)?,
        snapshot_id: snapshot
            .snapshot
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        total_bytes,
    };
    struct State {
        file: tokio::fs::File,
        offset: u64,
        meta: Option<pb::SnapshotMeta>,
        done: bool,
        cluster_id: String,
    }
    let state = State {
        file,
        offset: 0,
        meta: Some(meta),
        done: false,
        cluster_id,
    };
    Ok(futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let mut data = vec![0u8; SNAPSHOT_CHUNK_BYTES];
        let mut filled = 0;
        while filled < data.len() {
            match st.file.read(&mut data[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    // Ending the stream without `done` makes the receiver discard it.
                    tracing::warn!(error = %e, "reading snapshot file for transfer");
                    return None;
                }
            }
        }
        data.truncate(filled);
        let done = filled < SNAPSHOT_CHUNK_BYTES;
        let chunk = pb::SnapshotChunk {
            cluster_id: st.cluster_id.clone(),
            meta: st.meta.take(),
            offset: st.offset,
            crc32c: crc32c::crc32c(&data),
            data,
            done,
        };
        st.offset += filled as u64;
        st.done = done;
        Some((chunk, st))
    }))
}
