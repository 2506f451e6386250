//! Server side of the node-to-node transport.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::async_runtime::WatchReceiver;
use openraft::raft::StreamAppendError;
use openraft::storage::RaftStateMachine;
use openraft::{ReadPolicy, ServerState};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::*;
use crate::failover::{LeaderContact, LeaderProbe};
use crate::pb;
use crate::pb::raft_transport_server::RaftTransport;
use crate::types::{
    Raft, Record, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, BATCH_KEY_LEN,
    FIRST_APP_TAG,
};
use crate::{ClusterIdentity, LogStore, SnapshotFile};

/// The state machine's latest consistency-check digest: the check entry's
/// index and the digest, as the application computes it.
pub type StateDigestSource = Arc<dyn Fn() -> Option<(u64, String)> + Send + Sync>;

/// This node's view of the cluster, as served by `NodeStatus`.
pub fn node_status<SM>(
    raft: &Raft<SM>,
    node_id: u64,
    log: &LogStore,
    rest_addr: &str,
    state_digest: Option<(u64, String)>,
    cold_file_writer: u32,
) -> pb::NodeStatusResponse
where
    SM: RaftStateMachine<TypeConfig>,
{
    let m = raft.metrics().borrow_watched().clone();
    let state = match m.state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    };
    let (purged, _) = log.bounds();
    pb::NodeStatusResponse {
        node_id,
        term: m.current_term,
        state: state.to_string(),
        current_leader: m.current_leader.unwrap_or(0),
        has_leader: m.current_leader.is_some(),
        last_log_index: m.last_log_index.unwrap_or(0),
        committed_index: m.local_committed.map_or(0, |l| l.index),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        snapshot_index: m.snapshot.map_or(0, |l| l.index),
        purged_index: purged.map_or(0, |l| l.index),
        rest_addr: rest_addr.to_string(),
        state_digest_index: state_digest.as_ref().map_or(0, |d| d.0),
        state_digest: state_digest.map(|d| d.1).unwrap_or_default(),
        applies_consistency_checks: true,
        applies_retention_cuts: true,
        applies_cold_moves: true,
        applies_rollup_retention: true,
        applies_cold_uploads: true,
        cold_file_writer,
    }
}

/// Upper bound on a received snapshot, to refuse a runaway sender.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;

/// Run by the leader on each forwarded record just before proposing it, so
/// the application can refuse what it could not apply (undecodable bytes,
/// unknown tags, invalid contents: the sender may run another version, or be
/// hostile) and fill in values chosen once, by the leader (ids, times).
/// Returns the record to propose and bytes to return to the sender; an error
/// is the sender's fault (INVALID_ARGUMENT) and nothing reaches the log.
pub type LeaderStamp = Arc<dyn Fn(Record) -> Result<(Record, Vec<u8>), String> + Send + Sync>;

pub struct RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    pub raft: Raft<SM>,
    pub node_id: u64,
    pub identity: Arc<ClusterIdentity>,
    pub log: LogStore,
    /// Where received snapshots are written before the state machine installs them.
    pub incoming_snapshot_dir: PathBuf,
    /// This node's REST address, reported by `NodeStatus`.
    pub rest_addr: String,
    pub snapshots_received: Arc<AtomicU64>,
    /// When forwarded writes are acknowledged.
    pub ack: crate::AckLevel,
    pub leader_stamp: LeaderStamp,
    pub state_digest: StateDigestSource,
    /// The application's cold file writer version, reported by `NodeStatus`.
    pub cold_file_writer: u32,
    /// Touched whenever the leader reaches this node; read by the failover
    /// watcher (`failover::spawn_watcher`).
    pub leader_contact: Arc<LeaderContact>,
    /// Proves the known leader gone, for votes (see `vote`).
    pub leader_probe: LeaderProbe,
}

/// Removes what snapshot transfers left in `dir` when the process died in
/// the middle of one (`incoming-<pid>-<n>.snap`: the next process never uses
/// these names, so nothing else would ever remove them). Call before serving.
/// Returns how many files were removed.
pub fn remove_incoming_leftovers(dir: &std::path::Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        let is_leftover = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("incoming-") && n.ends_with(".snap"));
        if is_leftover {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        crate::log_store::sync_dir(dir)?;
    }
    Ok(removed)
}

/// How long a forwarded write may wait for its acknowledgement.
pub const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type BoxStatusStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl<SM> RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    fn check_cluster(&self, cluster_id: &str) -> Result<(), Status> {
        check_cluster(&self.identity, cluster_id)
    }
}

fn check_cluster(identity: &ClusterIdentity, cluster_id: &str) -> Result<(), Status> {
    match identity.get() {
        Some(ours) if ours == cluster_id => Ok(()),
        Some(ours) => Err(Status::failed_precondition(format!(
            "request for cluster {cluster_id:?} refused: this node belongs to cluster {ours}"
        ))),
        None => Err(Status::failed_precondition(
            "this node has not joined a cluster yet",
        )),
    }
}

fn fatal<E: std::fmt::Display>(e: E) -> Status {
    Status::internal(format!("raft: {e}"))
}

#[tonic::async_trait]
impl<SM> RaftTransport for RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    async fn vote(
        &self,
        req: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let mut req = vote_request_from_pb(req)?;
        // A voter refuses any vote while its lease on a leader runs (up to
        // the longest election timeout after the leader's last heartbeat),
        // which is what makes lease reads on that leader safe: no other
        // leader can be elected while it may still serve them. When that
        // leader's raft address refuses connections, its process is gone,
        // and it serves nothing: a restarted process starts as a follower
        // without a lease, and must win an election to lead again. Then the
        // lease protects no one, and waiting it out only delays failover, so
        // the vote is handled as openraft handles a leadership transfer's
        // (lease skipped; term and log checks unchanged, so election safety
        // does not depend on this). Any other probe result (accepted, timed
        // out) leaves the request as it came. `leader_proven_gone` checks
        // that the same leader and term are still known after the probe; a
        // new leader elected between that check and openraft handling the
        // vote would need a quorum within microseconds, and would see its
        // lease bypassed only for this one request.
        if !req.leadership_transfer && self.leader_probe.leader_proven_gone(&self.raft).await {
            tracing::info!(
                vote = %req.vote,
                "known leader's raft address refuses connections: handling the vote without its lease"
            );
            req.leadership_transfer = true;
        }
        let resp = self.raft.vote(req).await.map_err(fatal)?;
        Ok(Response::new(vote_response_to_pb(&resp)))
    }

    async fn pre_vote(
        &self,
        req: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let resp = self
            .raft
            .pre_vote(vote_request_from_pb(req)?)
            .await
            .map_err(fatal)?;
        Ok(Response::new(vote_response_to_pb(&resp)))
    }

    async fn append(
        &self,
        req: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        self.leader_contact.touch();
        let resp = self
            .raft
            .append_entries(append_request_from_pb(req, self.log.integrity())?)
            .await
            .map_err(fatal)?;
        Ok(Response::new(append_response_to_pb(&resp)))
    }

    type StreamAppendStream = BoxStatusStream<pb::AppendResponse>;

    async fn stream_append(
        &self,
        req: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        let identity = self.identity.clone();
        let integrity = self.log.integrity().clone();
        let contact = self.leader_contact.clone();
        // The input ends at the first request that is malformed or for another
        // cluster; the leader sees the stream end and starts over.
        let input = req.into_inner().scan((), move |_, item| {
            let next = match item {
                Ok(r) => match check_cluster(&identity, &r.cluster_id)
                    .and_then(|_| append_request_from_pb(r, &integrity))
                {
                    Ok(r) => {
                        contact.touch();
                        Some(r)
                    }
                    Err(status) => {
                        tracing::warn!(%status, "stream append: refusing request");
                        None
                    }
                },
                Err(_) => None,
            };
            futures::future::ready(next)
        });
        let output = self.raft.stream_append(Box::pin(input)).map(|item| {
            use pb::append_response::Result as R;
            let result = match item.map_err(fatal)? {
                Ok(last) => R::PartialSuccess(pb::PartialSuccess {
                    last: last.as_ref().map(log_id_to_pb),
                }),
                Err(StreamAppendError::Conflict(l)) => R::Conflict(log_id_to_pb(&l)),
                Err(StreamAppendError::HigherVote(v)) => R::HigherVote(vote_to_pb(&v)),
            };
            Ok(pb::AppendResponse {
                result: Some(result),
            })
        });
        Ok(Response::new(Box::pin(output)))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let mut chunks = req.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        self.check_cluster(&first.cluster_id)?;
        self.leader_contact.touch();
        let meta = first
            .meta
            .clone()
            .ok_or_else(|| Status::invalid_argument("first snapshot chunk has no meta"))?;
        if meta.total_bytes > MAX_SNAPSHOT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "snapshot of {} bytes is too large",
                meta.total_bytes
            )));
        }
        let vote = vote_from_pb(meta.vote)?;
        let last_log_id = log_id_from_pb(meta.last_log_id)?;
        let last_membership: StoredMembership = serde_json::from_slice(&meta.last_membership_json)
            .map_err(|e| Status::invalid_argument(format!("snapshot membership: {e}")))?;

        tokio::fs::create_dir_all(&self.incoming_snapshot_dir)
            .await
            .map_err(fatal)?;
        let n = self.snapshots_received.fetch_add(1, Ordering::Relaxed);
        let path = self
            .incoming_snapshot_dir
            .join(format!("incoming-{}-{n}.snap", std::process::id()));
        let received = receive_chunks(&path, first, &mut chunks, meta.total_bytes).await;
        if let Err(status) = received {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(status);
        }
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
            },
            snapshot: SnapshotFile { path: path.clone() },
        };
        let resp = self.raft.install_full_snapshot(vote, snapshot).await;
        // The state machine keeps its own copy; the received file is ours to remove.
        let _ = tokio::fs::remove_file(&path).await;
        let resp = resp.map_err(fatal)?;
        Ok(Response::new(pb::SnapshotResponse {
            vote: Some(vote_to_pb(&resp.vote)),
        }))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let r = openraft::raft::TransferLeaderRequest::new(
            vote_from_pb(req.from_leader)?,
            req.to_node_id,
            log_id_from_pb(req.last_log_id)?,
        );
        self.raft
            .handle_transfer_leader(r)
            .await
            .map_err(fatal)?
            .map_err(|e| Status::aborted(e.to_string()))?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let tag = u8::try_from(req.tag)
            .ok()
            .filter(|t| *t >= FIRST_APP_TAG)
            .ok_or_else(|| Status::invalid_argument(format!("invalid record tag {}", req.tag)))?;
        let batch_key: [u8; BATCH_KEY_LEN] = req
            .batch_key
            .as_slice()
            .try_into()
            .map_err(|_| Status::invalid_argument("batch key must be 16 bytes"))?;
        let record = Record {
            tag,
            batch_key,
            payload: req.payload,
        };
        let (record, response) = (self.leader_stamp)(record).map_err(Status::invalid_argument)?;
        let log_index =
            crate::write::propose(&self.raft, &self.log, record, self.ack, FORWARD_TIMEOUT).await?;
        Ok(Response::new(pb::ForwardResponse {
            log_index,
            response,
        }))
    }

    async fn read_index(
        &self,
        req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let policy = if req.lease {
            ReadPolicy::LeaseRead
        } else {
            ReadPolicy::ReadIndex
        };
        let linearizer = self
            .raft
            .get_read_linearizer(policy)
            .await
            .map_err(|e| Status::unavailable(format!("read index: {e}")))?;
        Ok(Response::new(pb::ReadIndexResponse {
            read_index: linearizer.read_log_id().index(),
            leader_id: self.node_id,
        }))
    }

    async fn node_status(
        &self,
        req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        self.check_cluster(&req.into_inner().cluster_id)?;
        Ok(Response::new(node_status(
            &self.raft,
            self.node_id,
            &self.log,
            &self.rest_addr,
            (self.state_digest)(),
            self.cold_file_writer,
        )))
    }

    async fn adopt_cluster(
        &self,
        req: Request<pb::AdoptClusterRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        if req.node_id != self.node_id {
            return Err(Status::invalid_argument(format!(
                "this address is node {}, not node {}",
                self.node_id, req.node_id
            )));
        }
        self.identity
            .adopt(&req.cluster_id)
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn init_probe(
        &self,
        req: Request<pb::InitProbeRequest>,
    ) -> Result<Response<pb::InitProbeResponse>, Status> {
        let req = req.into_inner();
        if req.node_id != self.node_id {
            return Err(Status::invalid_argument(format!(
                "this address is node {}, not node {}",
                self.node_id, req.node_id
            )));
        }
        let initialized = self.raft.is_initialized().await.map_err(fatal)?;
        Ok(Response::new(pb::InitProbeResponse {
            cluster_id: self.identity.get().unwrap_or_default(),
            initialized,
        }))
    }
}

async fn receive_chunks(
    path: &std::path::Path,
    first: pb::SnapshotChunk,
    rest: &mut Streaming<pb::SnapshotChunk>,
    total_bytes: u64,
) -> Result<(), Status> {
    let mut file = tokio::fs::File::create(path).await.map_err(fatal)?;
    let mut offset = 0u64;
    let mut next = Some(first);
    loop {
        let chunk = match next.take() {
            Some(c) => c,
            None => rest
                .message()
                .await?
                .ok_or_else(|| Status::aborted("snapshot stream ended before its last chunk"))?,
        };
        if chunk.offset != offset {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk at {} where {offset} was expected",
                chunk.offset
            )));
        }
        if crc32c::crc32c(&chunk.data) != chunk.crc32c {
            return Err(Status::data_loss(format!(
                "snapshot chunk at offset {offset} failed its checksum"
            )));
        }
        offset += chunk.data.len() as u64;
        if offset > total_bytes {
            return Err(Status::invalid_argument(
                "snapshot is longer than announced",
            ));
        }
        file.write_all(&chunk.data).await.map_err(fatal)?;
        if chunk.done {
            break;
        }
    }
    if offset != total_bytes {
        return Err(Status::invalid_argument(format!(
            "snapshot has {offset} bytes, {total_bytes} announced"
        )));
    }
    file.sync_all().await.map_err(fatal)?;
    Ok(())
}

#[cfg(test)]
mod leftover_tests {
    use super::remove_incoming_leftovers;

    #[test]
    fn leftovers_of_dead_transfers_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["incoming-41-0.snap", "incoming-41-1.snap", "keep.txt"] {
            std::fs::write(dir.path().join(name), b"partial").unwrap();
        }
        assert_eq!(remove_incoming_leftovers(dir.path()).unwrap(), 2);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["keep.txt".to_string()]);
        assert_eq!(
            remove_incoming_leftovers(&dir.path().join("absent")).unwrap(),
            0
        );
    }
}
