//! One tael-raft node: log store, state machine, Raft, and its three servers
//! (node-to-node gRPC, OTLP gRPC, REST).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{Config, RaftMetrics, ReadPolicy, SnapshotPolicy};
use tael_consensus::network::{NetworkFactory, PeerChannels, MAX_MESSAGE_BYTES};
use tael_consensus::pb;
use tael_consensus::pb::raft_transport_server::RaftTransportServer;
use tael_consensus::server::RaftService;
use tael_consensus::{
    ClusterIdentity, LogStore, LogStoreOptions, Node as RaftNodeAddr, Raft, Record, TypeConfig,
};
use tokio::sync::watch;
use tonic::Code;

use crate::config::ServeConfig;
use crate::faults::{FaultConfig, Mutation};
use crate::ingest::IngestMetrics;
use crate::payload;
use crate::state::{self, StateMachine, StateMachineOptions};

/// How long a write may wait for commit before the client is told to retry.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read may wait for a read index and for local apply.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No leader, no quorum, or the outcome is unknown: the client should retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
}

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

pub struct Node {
    pub id: u64,
    pub config: ServeConfig,
    pub raft: Raft<StateMachine>,
    pub sm: Arc<state::Shared>,
    pub log: LogStore,
    pub identity: Arc<ClusterIdentity>,
    pub peers: PeerChannels,
    pub ingest: IngestMetrics,
    pub fulltext: Arc<crate::fulltext::FullText>,
    /// With `--ingest-ack spooled`: where exports wait to be forwarded.
    pub spool: Option<Arc<crate::spool::Spool>>,
}

pub struct RunningNode {
    pub node: Arc<Node>,
    shutdown_tx: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

fn raft_config(c: &ServeConfig) -> Result<Config, String> {
    let config = Config {
        cluster_name: "tael-raft".into(),
        heartbeat_interval: c.heartbeat_interval_ms,
        election_timeout_min: c.election_timeout_min_ms,
        election_timeout_max: c.election_timeout_max_ms,
        install_snapshot_timeout: 60_000,
        max_payload_entries: 64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every_entries),
        max_in_snapshot_log_to_keep: c.log_entries_kept_after_snapshot,
        // Purge in steps no larger than half a snapshot interval, so small
        // intervals (used by tests) still purge.
        purge_batch_size: (c.snapshot_every_entries / 2).clamp(1, 256),
        enable_pre_vote: Some(true),
        // A follower whose log lost acknowledged entries (a damaged tail cut
        // off at start-up, a disk that lied about fsync) is re-replicated
        // rather than crashing the leader. Data is safe as long as a quorum
        // of disks keeps what it acknowledged.
        allow_log_reversion: Some(true),
        // A restarted leader must win a new election. Resuming leadership
        // in the same term after a power cut dropped its unsynced log tail
        // would write different entries under (term, index) ids a follower
        // may already hold, and the logs would diverge for good (found by
        // tael-jepsen's power-loss-fast profile).
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| format!("raft configuration: {e}"))
}

async fn bind(addr: &str, what: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("binding the {what} address {addr}: {e}"))
    })
}

impl Node {
    pub async fn start(config: ServeConfig) -> Result<RunningNode, String> {
        // Before anything opens the directory: refuse data in an older format.
        crate::data_format::check_and_mark(&config.data_dir)?;
        let data_dir: PathBuf = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let identity = Arc::new(
            ClusterIdentity::load(&data_dir).map_err(|e| format!("reading cluster id: {e}"))?,
        );
        let log_opts = LogStoreOptions {
            faults: config.faults.log_faults(),
            ..LogStoreOptions::default()
        };
        let log = LogStore::open(&data_dir.join("raft-log"), log_opts)
            .map_err(|e| format!("opening the raft log: {e}"))?;
        let sm_opts = StateMachineOptions {
            fjall_worker_threads: config.storage_threads,
            fjall_cache_bytes: config.cache_mb * 1024 * 1024,
            duplicate_retries: config.faults.is_active(Mutation::DoubleApplyRetries),
        };
        if config.faults != FaultConfig::default() {
            tracing::warn!(
                mutation = ?config.faults.mutation.map(|m| m.name()),
                power_loss_sim = config.faults.power_loss_sim,
                "FAULT INJECTION ACTIVE: this node runs with a deliberate defect; never use it for real data"
            );
        }
        let sm = StateMachine::open(&data_dir, sm_opts).map_err(|e| {
            format!(
                "the state machine in {} cannot be opened ({e}); refusing to start. \
                     If its files are damaged, restore this node from its peers \
                     (docs/operations.md, Damage and recovery)",
                data_dir.join("sm").display()
            )
        })?;
        let sm_shared = sm.shared.clone();
        let fulltext =
            crate::fulltext::FullText::start(&data_dir.join("fulltext"), sm_shared.clone())?;
        let spool = if config.ingest_spooled {
            Some(Arc::new(crate::spool::Spool::open(
                &data_dir,
                config.node_id,
                config.spool_max_pending_mb.saturating_mul(1024 * 1024),
            )?))
        } else {
            None
        };
        let peers = PeerChannels::with_dial_overrides(config.dial_overrides.clone());
        let network = NetworkFactory::new(identity.clone(), peers.clone());
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config(&config)?),
            network,
            log.clone(),
            sm,
        )
        .await
        .map_err(|e| format!("starting raft: {e}"))?;

        // Bind every socket before serving, so a port conflict fails start-up.
        let raft_listener = bind(&config.raft_addr, "raft")
            .await
            .map_err(|e| e.to_string())?;
        let otlp_listener = bind(&config.otlp_grpc_addr, "OTLP gRPC")
            .await
            .map_err(|e| e.to_string())?;
        let otlp_http_listener = bind(&config.otlp_http_addr, "OTLP HTTP")
            .await
            .map_err(|e| e.to_string())?;
        let rest_listener = bind(&config.rest_addr, "REST")
            .await
            .map_err(|e| e.to_string())?;

        let node = Arc::new(Node {
            id: config.node_id,
            config: config.clone(),
            raft: raft.clone(),
            sm: sm_shared,
            log: log.clone(),
            identity: identity.clone(),
            peers,
            ingest: IngestMetrics::default(),
            fulltext,
            spool: spool.clone(),
        });

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut servers = Vec::new();

        let raft_service = RaftService {
            raft: raft.clone(),
            node_id: config.node_id,
            identity,
            log,
            incoming_snapshot_dir: data_dir.join("snapshots-incoming"),
            rest_addr: config.rest_addr.clone(),
            snapshots_received: Arc::new(AtomicU64::new(0)),
            ack: config.faults.ack_level(config.ingest_ack),
            leader_stamp: Arc::new(payload::leader_stamp),
        };
        let svc = RaftTransportServer::new(raft_service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        servers.push(spawn_grpc(
            tonic::transport::Server::builder().add_service(svc),
            raft_listener,
            shutdown_rx.clone(),
            "raft",
        ));
        servers.push(spawn_grpc(
            crate::otlp::grpc::router(node.clone()),
            otlp_listener,
            shutdown_rx.clone(),
            "otlp-grpc",
        ));
        servers.push(spawn_http(
            crate::otlp::http::router(node.clone()),
            otlp_http_listener,
            shutdown_rx.clone(),
            "otlp-http",
        ));
        servers.push(spawn_http(
            crate::rest::router(node.clone()),
            rest_listener,
            shutdown_rx.clone(),
            "rest",
        ));
        servers.push(tokio::spawn(snapshot_by_size(
            node.clone(),
            shutdown_rx.clone(),
        )));
        if let Some(spool) = spool {
            servers.push(tokio::spawn(crate::spool::forward(
                node.clone(),
                spool,
                shutdown_rx.clone(),
            )));
        }
        servers.push(tokio::spawn(storage_maintenance(
            node.clone(),
            shutdown_rx.clone(),
        )));
        tracing::info!(
            node_id = config.node_id,
            raft = %config.raft_addr,
            rest = %config.rest_addr,
            otlp_grpc = %config.otlp_grpc_addr,
            otlp_http = %config.otlp_http_addr,
            "node started"
        );
        Ok(RunningNode {
            node,
            shutdown_tx,
            servers,
        })
    }

    pub fn metrics(&self) -> RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    fn cluster_id(&self) -> Result<String, ClusterError> {
        self.identity.get().ok_or_else(|| {
            ClusterError::Unavailable(
                "this node is not part of an initialized cluster yet (run `tael-raft init`)".into(),
            )
        })
    }

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

    /// Commits `record` through the leader (this node or a forward) and
    /// returns its log index once it reaches the configured ack level
    /// (committed on a quorum, or also applied on the leader).
    pub async fn propose(&self, record: Record) -> Result<u64, ClusterError> {
        self.propose_for_response(record)
            .await
            .map(|(index, _)| index)
    }

    /// [`Node::propose`], also returning what the leader's stamp produced
    /// (see [`payload::leader_stamp`]).
    pub async fn propose_for_response(
        &self,
        record: Record,
    ) -> Result<(u64, Vec<u8>), ClusterError> {
        let cluster_id = self.cluster_id()?;
        let m = self.metrics();
        if m.current_leader == Some(self.id) {
            let (record, response) =
                payload::leader_stamp(record).map_err(ClusterError::Invalid)?;
            let index = tael_consensus::write::propose(
                &self.raft,
                &self.log,
                record,
                self.config.faults.ack_level(self.config.ingest_ack),
                WRITE_TIMEOUT,
            )
            .await
            .map_err(|s| ClusterError::Unavailable(s.message().to_string()))?;
            return Ok((index, response));
        }
        let (leader, addr) = self.leader_addr(&m)?;
        let mut client = self.peers.client(&addr).map_err(ClusterError::Internal)?;
        let req = pb::ForwardRequest {
            cluster_id,
            tag: record.tag as u32,
            batch_key: record.batch_key.to_vec(),
            payload: record.payload,
        };
        match tokio::time::timeout(WRITE_TIMEOUT, client.forward(req)).await {
            Ok(Ok(resp)) => {
                let resp = resp.into_inner();
                Ok((resp.log_index, resp.response))
            }
            Ok(Err(s)) if s.code() == Code::InvalidArgument => {
                Err(ClusterError::Invalid(s.message().into()))
            }
            Ok(Err(s)) => Err(ClusterError::Unavailable(format!(
                "forwarding to leader {leader}: {}",
                s.message()
            ))),
            Err(_) => Err(ClusterError::Unavailable(format!(
                "timed out forwarding to leader {leader}; the write may or may not apply"
            ))),
        }
    }

    /// Makes the local state machine fresh enough for `level` and says what
    /// it reflects.
    pub async fn read_barrier(&self, level: Consistency) -> Result<ReadBarrier, ClusterError> {
        let m = self.metrics();
        if level == Consistency::Local || self.config.faults.is_active(Mutation::StaleLocalReads) {
            return Ok(ReadBarrier {
                node_id: self.id,
                applied_index: m.last_applied.map_or(0, |l| l.index),
            });
        }
        let lease = level == Consistency::Lease;
        let read_index = if m.current_leader == Some(self.id) {
            let policy = if lease {
                ReadPolicy::LeaseRead
            } else {
                ReadPolicy::ReadIndex
            };
            let lin = tokio::time::timeout(READ_TIMEOUT, self.raft.get_read_linearizer(policy))
                .await
                .map_err(|_| ClusterError::Unavailable("timed out confirming leadership".into()))?
                .map_err(|e| ClusterError::Unavailable(format!("confirming leadership: {e}")))?;
            lin.read_log_id().index()
        } else {
            let cluster_id = self.cluster_id()?;
            let (leader, addr) = self.leader_addr(&m)?;
            let mut client = self.peers.client(&addr).map_err(ClusterError::Internal)?;
            let req = pb::ReadIndexRequest { cluster_id, lease };
            match tokio::time::timeout(READ_TIMEOUT, client.read_index(req)).await {
                Ok(Ok(r)) => r.into_inner().read_index,
                Ok(Err(s)) => {
                    return Err(ClusterError::Unavailable(format!(
                        "read index from leader {leader}: {}",
                        s.message()
                    )))
                }
                Err(_) => {
                    return Err(ClusterError::Unavailable(format!(
                        "timed out asking leader {leader} for a read index"
                    )))
                }
            }
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
        debug_assert!(applied >= read_index);
        Ok(ReadBarrier {
            node_id: self.id,
            applied_index: applied,
        })
    }

    /// `tael-raft init`: joins every member to a new cluster id, then
    /// initializes Raft with them. Refused if this node is already in a cluster.
    pub async fn init_cluster(
        &self,
        members: BTreeMap<u64, String>,
    ) -> Result<String, ClusterError> {
        if !members.contains_key(&self.id) {
            return Err(ClusterError::Invalid(format!(
                "the member list must include this node ({})",
                self.id
            )));
        }
        if self.identity.get().is_some()
            || self
                .raft
                .is_initialized()
                .await
                .map_err(|e| ClusterError::Internal(e.to_string()))?
        {
            return Err(ClusterError::Invalid("cluster already initialized".into()));
        }
        let cluster_id = tael_consensus::hex(&rand::random::<[u8; 16]>());
        // Claim this node first: a concurrent second init fails here.
        self.identity
            .adopt(&cluster_id)
            .map_err(ClusterError::Invalid)?;
        for (&id, addr) in &members {
            if id == self.id {
                continue;
            }
            let mut client = self.peers.client(addr).map_err(ClusterError::Invalid)?;
            let req = pb::AdoptClusterRequest {
                cluster_id: cluster_id.clone(),
                node_id: id,
            };
            match tokio::time::timeout(Duration::from_secs(5), client.adopt_cluster(req)).await {
                Ok(Ok(_)) => {}
                Ok(Err(s)) => {
                    return Err(ClusterError::Invalid(format!(
                        "member {id} at {addr}: {}",
                        s.message()
                    )))
                }
                Err(_) => {
                    return Err(ClusterError::Unavailable(format!(
                        "member {id} at {addr} did not answer"
                    )))
                }
            }
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
}

const STORAGE_MAINTENANCE_INTERVAL: Duration = Duration::from_millis(250);
/// fjall names its flush and compaction threads like this.
const STORAGE_THREAD_PREFIX: &str = "fjall:";
const STORAGE_THREAD_NICE: i32 = 10;
/// About every 5 s at the maintenance interval.
const RENICE_EVERY_TICKS: u64 = 20;

/// Keeps the state machine's journal mostly on disk and its small keyspaces
/// flushed. The Raft log is the durable copy of every write, so the state
/// machine never needs to fsync on the apply path; but fjall fsyncs its
/// journal under the journal lock whenever it flushes a memtable, and a
/// journal full of unsynced data then stalls every apply for hundreds of
/// milliseconds. Syncing it in the background, in small steps and outside
/// that lock, leaves those fsyncs little to do.
async fn storage_maintenance(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    for tick in 0u64.. {
        tokio::select! {
            _ = tokio::time::sleep(STORAGE_MAINTENANCE_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let store = node.sm.store();
        // Compaction must not take CPU from consensus and apply: on a busy
        // host a starved apply thread stalls acknowledgements for hundreds of
        // milliseconds. Renewed now and then, since a snapshot install starts
        // new storage threads; rescanning the thread list every tick is waste.
        if tick % RENICE_EVERY_TICKS == 0 {
            crate::sys::renice_threads(STORAGE_THREAD_PREFIX, STORAGE_THREAD_NICE);
        }
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.maintain()).await {
            tracing::warn!(error = %e, "storage maintenance");
        }
    }
}

/// Below this much log, no size-triggered snapshot.
const SNAPSHOT_MIN_LOG_BYTES: u64 = 256 * 1024 * 1024;
const SNAPSHOT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Triggers a snapshot when the retained log outgrows the state it would
/// replace (and at least [`SNAPSHOT_MIN_LOG_BYTES`]). A snapshot copies the
/// whole state, so tying it to the bytes written since the last one keeps its
/// cost at about one copy per state-size of writes, however large the state
/// grows; a fixed entry count would copy a growing state ever more often.
async fn snapshot_by_size(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SNAPSHOT_CHECK_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let log_bytes = node.log.disk_bytes();
        if log_bytes < SNAPSHOT_MIN_LOG_BYTES {
            continue;
        }
        let store = node.sm.store();
        let state_bytes = match tokio::task::spawn_blocking(move || store.db.disk_space()).await {
            Ok(Ok(b)) => b,
            _ => continue,
        };
        if log_bytes > state_bytes {
            tracing::info!(
                log_bytes,
                state_bytes,
                "log outgrew the state: building a snapshot"
            );
            if node.raft.trigger().snapshot().await.is_err() {
                return; // raft stopped
            }
        }
    }
}

fn spawn_grpc(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, server = what, "gRPC server failed");
        }
    })
}

fn spawn_http(
    app: axum::Router,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, server = what, "HTTP server failed");
        }
    })
}

impl RunningNode {
    /// Stops serving, then stops Raft (which flushes nothing more: every
    /// acknowledged write is already durable).
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for s in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
        }
        if let Err(e) = self.node.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.node.fulltext.stop();
    }
}
