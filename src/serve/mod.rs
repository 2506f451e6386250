//! The composition root: builds one node from its configuration.
//!
//! Start-up, in order: open the durable parts (cluster identity, Raft log,
//! state machine, full-text index, spool), start Raft over them, build the
//! services the edges use (the [`Cluster`] handle, [`Ingest`],
//! [`QueryService`], [`SelfMetrics`]), bind every listener (so a port
//! conflict fails start-up before anything serves), then serve and start the
//! background work. Nothing below this module knows the other services exist:
//! each edge gets only the services it uses.

mod background;
mod listeners;
mod raft_config;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tael_consensus::failover::{self, FailoverTimings, LeaderContact, LeaderProbe};
use tael_consensus::frame::RecordIntegrity;
use tael_consensus::network::{NetworkFactory, PeerChannels, MAX_MESSAGE_BYTES};
use tael_consensus::pb::raft_transport_server::RaftTransportServer;
use tael_consensus::peer_auth::{PeerCheck, PeerSecret};
use tael_consensus::server::RaftService;
use tael_consensus::{ClusterIdentity, LogStore, LogStoreOptions, Raft};
use tokio::sync::watch;

use crate::admin::KeyAdmin;
use crate::auth::{Authenticator, KeySource};
use crate::cluster::{Cluster, ClusterSettings, Peers};
use crate::config::{LogIntegrity, ServeConfig};
use crate::faults::{FaultConfig, Mutation};
use crate::fulltext::FullText;
use crate::ingest::Ingest;
use crate::otlp::limits::{OtlpLimits, OtlpLimitsConfig};
use crate::payload;
use crate::query::QueryService;
use crate::rest::{Guard, RestScheme, RestState};
use crate::self_metrics::SelfMetrics;
use crate::spool::Spool;
use crate::state::cold::objects::{ColdObjects, ColdStoreKind};
use crate::state::{StateMachine, StateMachineOptions};
use crate::tls::NodeTls;
use listeners::{bind, spawn_grpc, spawn_http, ListenerTls};

/// Under the data directory: snapshots being received from the leader.
const INCOMING_SNAPSHOT_DIR: &str = "snapshots-incoming";

/// A started node: its services, and what stops it.
pub struct RunningNode {
    pub cluster: Arc<Cluster>,
    raft: Raft<StateMachine>,
    fulltext: Arc<FullText>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The durable parts of a node, opened but not yet serving.
struct Stores {
    identity: Arc<ClusterIdentity>,
    log: LogStore,
    sm: StateMachine,
    fulltext: Arc<FullText>,
    spool: Option<Arc<Spool>>,
}

fn open_stores(config: &ServeConfig, integrity: &RecordIntegrity) -> Result<Stores, String> {
    // Before anything opens the directory: refuse data in an older format.
    crate::data_format::check_and_mark(&config.data_dir)?;
    let data_dir: &Path = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let identity =
        Arc::new(ClusterIdentity::load(data_dir).map_err(|e| format!("reading cluster id: {e}"))?);
    let log_opts = LogStoreOptions {
        faults: config.faults.log_faults(),
        integrity: integrity.clone(),
        ..LogStoreOptions::default()
    };
    let log = LogStore::open(&data_dir.join("raft-log"), log_opts)
        .map_err(|e| format!("opening the raft log: {e}"))?;
    let cold_objects = match &config.cold_store {
        ColdStoreKind::Local => None,
        ColdStoreKind::S3 { bucket, prefix } => {
            let objects = ColdObjects::connect(bucket, prefix)?;
            tracing::info!(
                store = objects.url(),
                "cold tier in the shared object store"
            );
            Some(Arc::new(objects))
        }
    };
    let sm_opts = StateMachineOptions {
        fjall_worker_threads: config.storage_threads,
        fjall_cache_bytes: config.cache_mb * 1024 * 1024,
        duplicate_retries: config.faults.is_active(Mutation::DoubleApplyRetries),
        cold_objects,
        poison_is_fatal: config.faults.is_active(Mutation::PoisonIsFatal),
    };
    let sm = StateMachine::open(data_dir, sm_opts).map_err(|e| {
        format!(
            "the state machine in {} cannot be opened ({e}); refusing to start. \
             If its files are damaged, restore this node from its peers \
             (docs/operations.md, Damage and recovery)",
            data_dir.join("sm").display()
        )
    })?;
    let incoming = data_dir.join(INCOMING_SNAPSHOT_DIR);
    match tael_consensus::server::remove_incoming_leftovers(&incoming) {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed snapshot transfers a crash left behind"),
        Err(e) => return Err(format!("cleaning {}: {e}", incoming.display())),
    }
    let fulltext = FullText::start(&data_dir.join("fulltext"), sm.shared.clone())?;
    let spool = if config.ingest_spooled {
        Some(Arc::new(Spool::open(
            data_dir,
            config.node_id,
            config.spool_max_pending_mb.saturating_mul(1024 * 1024),
        )?))
    } else {
        None
    };
    Ok(Stores {
        identity,
        log,
        sm,
        fulltext,
        spool,
    })
}

/// What protects this node's log records (`--log-integrity`).
fn record_integrity(
    config: &ServeConfig,
    secret: Option<&PeerSecret>,
) -> Result<RecordIntegrity, String> {
    match (config.log_integrity, secret) {
        (LogIntegrity::Crc32c, _) => Ok(RecordIntegrity::Crc32c),
        (LogIntegrity::Hmac, Some(s)) => Ok(RecordIntegrity::hmac(s.log_integrity_key())),
        (LogIntegrity::Hmac, None) => {
            Err("log_integrity = hmac needs --cluster-secret-file".into())
        }
    }
}

fn warn_if_faulty(config: &ServeConfig) {
    if config.faults != FaultConfig::default() {
        tracing::warn!(
            mutation = ?config.faults.mutation.map(|m| m.name()),
            power_loss_sim = config.faults.power_loss_sim,
            "FAULT INJECTION ACTIVE: this node runs with a deliberate defect; never use it for real data"
        );
    }
}

/// Starts a node: opens its stores, starts Raft, binds and serves.
pub async fn start(config: ServeConfig) -> Result<RunningNode, String> {
    warn_if_faulty(&config);
    // Before the stores: a bad certificate fails start-up at once.
    let tls = NodeTls::load(config.tls.as_ref(), config.peer_tls.as_ref())
        .map_err(|e| format!("TLS: {e}"))?;
    let secret = match &config.cluster_secret_file {
        Some(path) => Some(PeerSecret::load(path)?),
        None => None,
    };
    let integrity = record_integrity(&config, secret.as_ref())?;
    let stores = open_stores(&config, &integrity)?;
    let sm_shared = stores.sm.shared.clone();
    let channels = PeerChannels::with_dial_overrides(config.dial_overrides.clone())
        .with_secret(secret.clone())
        .with_integrity(integrity)
        .with_tls(tls.peer_client.clone());
    let network = NetworkFactory::new(stores.identity.clone(), channels.clone());
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config::from(&config)?),
        network,
        stores.log.clone(),
        stores.sm,
    )
    .await
    .map_err(|e| format!("starting raft: {e}"))?;

    let ack = config.faults.ack_level(config.ingest_ack);
    let cluster = Arc::new(Cluster::new(
        ClusterSettings {
            node_id: config.node_id,
            rest_addr: config.rest_addr.clone(),
            ack,
            stale_local_reads: config.faults.is_active(Mutation::StaleLocalReads),
        },
        raft.clone(),
        stores.log.clone(),
        stores.identity.clone(),
        Peers::new(channels.clone(), stores.identity.clone()),
        sm_shared.clone(),
    ));
    let ingest = Arc::new(Ingest::new(cluster.clone(), stores.spool.clone()));
    let otlp_limits = OtlpLimits::new(OtlpLimitsConfig {
        max_inflight_exports: config.otlp_max_inflight_exports,
        body_budget_bytes: config.otlp_body_budget_mb.saturating_mul(1024 * 1024),
        max_export_bytes: config.max_export_bytes,
        body_read_timeout: Duration::from_millis(config.otlp_body_read_timeout_ms),
    });
    let auth = Arc::new(Authenticator::new(
        config.auth,
        sm_shared.clone() as Arc<dyn KeySource>,
    ));
    let guard = Guard {
        auth: auth.clone(),
        cluster: cluster.clone(),
    };
    let query = Arc::new(QueryService::new(
        cluster.clone(),
        sm_shared.clone(),
        stores.fulltext.clone(),
        config.query_max_concurrent_scans,
    ));
    let rest = RestState {
        query: query.clone(),
        ingest: ingest.clone(),
        cluster: cluster.clone(),
        keys: Arc::new(KeyAdmin::new(cluster.clone())),
        self_metrics: Arc::new(
            SelfMetrics::new(
                cluster.clone(),
                ingest.clone(),
                sm_shared.clone(),
                stores.fulltext.clone(),
                stores.spool.clone(),
            )
            .with_query(query),
        ),
        tail: sm_shared.tail.clone(),
        ingest_limits: otlp_limits.clone(),
        rest_scheme: RestScheme(if config.tls.is_some() {
            "https"
        } else {
            "http"
        }),
        lifecycle: crate::retention::Lifecycle {
            retention: config.retention,
            compaction_interval_secs: config.compaction_interval_secs,
            hot_window_secs: config.hot_window_secs,
        },
    };
    let leader_contact = Arc::new(LeaderContact::default());
    let leader_probe = LeaderProbe {
        me: config.node_id,
        dial_addr: {
            let channels = channels.clone();
            Arc::new(move |addr: &str| channels.dial_addr(addr))
        },
        timings: FailoverTimings::from_heartbeat_ms(config.heartbeat_interval_ms),
    };
    let raft_service = RaftService {
        raft: raft.clone(),
        node_id: config.node_id,
        identity: stores.identity.clone(),
        log: stores.log.clone(),
        incoming_snapshot_dir: config.data_dir.join(INCOMING_SNAPSHOT_DIR),
        rest_addr: config.rest_addr.clone(),
        snapshots_received: Arc::new(AtomicU64::new(0)),
        ack,
        leader_stamp: Arc::new(payload::leader_stamp),
        state_digest: {
            let cluster = cluster.clone();
            Arc::new(move || cluster.local_digest())
        },
        cold_file_writer: crate::state::cold::FILE_WRITER_VERSION,
        leader_contact: leader_contact.clone(),
        leader_probe: leader_probe.clone(),
    };

    // Bind every socket before serving, so a port conflict fails start-up.
    let raft_listener = bind(&config.raft_addr, "raft").await?;
    let otlp_grpc_listener = bind(&config.otlp_grpc_addr, "OTLP gRPC").await?;
    let otlp_http_listener = bind(&config.otlp_http_addr, "OTLP HTTP").await?;
    let rest_listener = bind(&config.rest_addr, "REST").await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The proof of the cluster secret is checked before a request's body
    // is read (`peer_auth`).
    let raft_svc = tonic::service::interceptor::InterceptedService::new(
        RaftTransportServer::new(raft_service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        PeerCheck::new(secret),
    );
    let mut tasks = vec![
        spawn_grpc(
            tonic::transport::Server::builder().add_service(raft_svc),
            raft_listener,
            ListenerTls::peer(tls.peer_server),
            shutdown_rx.clone(),
            "raft",
        )?,
        spawn_grpc(
            crate::otlp::grpc::router(ingest.clone(), auth.clone(), otlp_limits.clone()),
            otlp_grpc_listener,
            ListenerTls::client(tls.grpc),
            shutdown_rx.clone(),
            "otlp-grpc",
        )?,
        spawn_http(
            crate::otlp::http::router(ingest, auth, otlp_limits),
            otlp_http_listener,
            ListenerTls::client(tls.http.clone()),
            shutdown_rx.clone(),
            "otlp-http",
        )?,
        spawn_http(
            crate::rest::router(rest, guard),
            rest_listener,
            ListenerTls::client(tls.http),
            shutdown_rx.clone(),
            "rest",
        )?,
        tokio::spawn(background::snapshot_by_size(
            cluster.clone(),
            sm_shared.clone(),
            shutdown_rx.clone(),
        )),
        tokio::spawn(background::storage_maintenance(
            sm_shared.clone(),
            shutdown_rx.clone(),
        )),
        failover::spawn_watcher(
            raft.clone(),
            leader_contact,
            leader_probe,
            shutdown_rx.clone(),
        ),
    ];
    if config.compaction_interval_secs > 0 {
        let mut retention = config.retention;
        if config.faults.is_active(Mutation::RetentionWrongUnit) {
            retention.traces_secs /= 3600;
        }
        tasks.push(tokio::spawn(background::lifecycle(
            cluster.clone(),
            sm_shared,
            retention,
            config.hot_window_secs,
            Duration::from_secs(config.compaction_interval_secs),
            shutdown_rx.clone(),
        )));
    }
    if config.consistency_check_interval_secs > 0 {
        tasks.push(tokio::spawn(background::consistency_checks(
            cluster.clone(),
            Duration::from_secs(config.consistency_check_interval_secs),
            shutdown_rx.clone(),
        )));
    }
    if let Some(spool) = stores.spool {
        tasks.push(tokio::spawn(crate::spool::forward(
            cluster.clone(),
            spool,
            shutdown_rx,
        )));
    }
    tracing::info!(
        node_id = config.node_id,
        raft = %config.raft_addr,
        rest = %config.rest_addr,
        otlp_grpc = %config.otlp_grpc_addr,
        otlp_http = %config.otlp_http_addr,
        client_tls = config.tls.is_some(),
        peer_tls = config.peer_tls.is_some(),
        "node started"
    );
    Ok(RunningNode {
        cluster,
        raft,
        fulltext: stores.fulltext,
        shutdown_tx,
        tasks,
    })
}

impl RunningNode {
    /// Resolves when the consensus core stopped without being asked to
    /// (a storage error it cannot go on from: a full disk, a failed fsync),
    /// with the reason. The node must not stay up as a member that neither
    /// votes nor replicates: it exits, and its supervisor restarts it once
    /// the cause (e.g. the disk space) is back.
    pub async fn consensus_stopped(&self) -> String {
        use openraft::async_runtime::WatchReceiver;
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if let Err(fatal) = &m.running_state {
                    return fatal.to_string();
                }
                if m.state == openraft::ServerState::Shutdown {
                    return "the raft core shut down".to_string();
                }
            }
            if metrics.changed().await.is_err() {
                return "the raft core is gone".to_string();
            }
        }
    }

    /// Stops serving, then stops Raft (which flushes nothing more: every
    /// acknowledged write is already durable).
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.fulltext.stop();
    }
}
