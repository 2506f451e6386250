//! Node configuration: flag > environment (`TAEL_*`) > TOML file > default.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use tael_consensus::AckLevel;

use crate::auth::AuthMode;
use crate::faults::{FaultConfig, Mutation};
use crate::retention::RetentionPolicy;
use crate::tls::{PeerTlsFiles, TlsFiles};

/// The settings of one node, fully resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub raft_addr: String,
    pub rest_addr: String,
    pub otlp_grpc_addr: String,
    pub otlp_http_addr: String,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every_entries: u64,
    pub log_entries_kept_after_snapshot: u64,
    pub storage_threads: usize,
    pub cache_mb: u64,
    pub runtime_threads: usize,
    /// The ack level of proposals. With `ingest_spooled` this is `Committed`:
    /// what the spool forwarder waits for before it lets a record go.
    pub ingest_ack: AckLevel,
    /// `--ingest-ack spooled`: OTLP exports are acknowledged once fsynced in
    /// this node's local spool and forwarded into the Raft log later (see
    /// crate::spool).
    pub ingest_spooled: bool,
    /// Spooled bytes not yet forwarded beyond which exports are refused
    /// (UNAVAILABLE / 503 with a retry hint).
    pub spool_max_pending_mb: u64,
    /// OTLP exports (gRPC and HTTP) being decoded, validated and committed
    /// at once; more wait up to a second, then are shed (429 /
    /// RESOURCE_EXHAUSTED with a retry hint). See `otlp::limits`.
    pub otlp_max_inflight_exports: usize,
    /// MiB of OTLP request bodies being received or held at once; a body
    /// that does not fit is shed at once.
    pub otlp_body_budget_mb: u64,
    /// An OTLP request body must arrive whole within this (HTTP 408, gRPC
    /// DEADLINE_EXCEEDED otherwise).
    pub otlp_body_read_timeout_ms: u64,
    /// Largest OTLP export accepted (gRPC and HTTP), after decompression;
    /// larger ones get 413 / RESOURCE_EXHAUSTED.
    pub max_export_bytes: usize,
    /// REST queries scanning storage at once, on the blocking pool beside
    /// the state machine's apply; more wait up to a second, then get 429.
    pub query_max_concurrent_scans: usize,
    /// Peers to dial somewhere other than their membership address
    /// (membership address → address dialed), e.g. through a test proxy.
    pub dial_overrides: Vec<(String, String)>,
    /// Whether clients must present an API key (docs/security.md).
    pub auth: AuthMode,
    /// The secret every node of the cluster shares; peers prove they know it
    /// on every node-to-node call.
    pub cluster_secret_file: Option<PathBuf>,
    /// How Raft log records are protected (docs/security.md).
    pub log_integrity: LogIntegrity,
    /// The leader runs a consistency check this often; 0: never.
    pub consistency_check_interval_secs: u64,
    /// How long each signal is kept (`crate::retention`).
    pub retention: RetentionPolicy,
    /// The leader proposes a retention cut this often; 0: never.
    pub compaction_interval_secs: u64,
    /// Records older than this move to the cold tier (`state::cold`); 0:
    /// never.
    pub hot_window_secs: u64,
    /// Where the cold tier lives: under the data directory, or one shared
    /// bucket for the cluster (`state::cold::objects`).
    pub cold_store: crate::state::cold::objects::ColdStoreKind,
    /// TLS on the client-facing listeners (REST, OTLP/gRPC, OTLP/HTTP).
    pub tls: Option<TlsFiles>,
    /// Mutual TLS on the node-to-node port, both as server and as client.
    pub peer_tls: Option<PeerTlsFiles>,
    pub faults: FaultConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            node_id: 1,
            data_dir: PathBuf::from("./tael-data"),
            raft_addr: "127.0.0.1:7702".into(),
            rest_addr: "127.0.0.1:7701".into(),
            otlp_grpc_addr: "127.0.0.1:4317".into(),
            otlp_http_addr: "127.0.0.1:4318".into(),
            heartbeat_interval_ms: 200,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            // Snapshots are mostly triggered by log size (see node.rs); this
            // count is an upper bound for logs of many tiny entries.
            snapshot_every_entries: 500_000,
            log_entries_kept_after_snapshot: 5_000,
            // One: fjall 3.1's worker 0 of a larger pool hands compaction
            // requests back to the queue while it waits for flushes, and so
            // spins at full CPU whenever another worker is compacting. On the
            // benchmark host that spin was half of all CPU after a burst of
            // writes, and ack latency suffered; one worker doing flushes and
            // compactions in turn measured better.
            storage_threads: 1,
            cache_mb: 128,
            runtime_threads: 2,
            ingest_ack: AckLevel::Committed,
            ingest_spooled: false,
            spool_max_pending_mb: 1024,
            otlp_max_inflight_exports: 64,
            otlp_body_budget_mb: 256,
            otlp_body_read_timeout_ms: 30_000,
            max_export_bytes: crate::otlp::DEFAULT_MAX_EXPORT_BYTES,
            // Two cores per node on the benchmark hosts: more concurrent
            // scans only queue for CPU that apply also needs.
            query_max_concurrent_scans: 4,
            dial_overrides: Vec::new(),
            auth: AuthMode::Off,
            cluster_secret_file: None,
            log_integrity: LogIntegrity::Crc32c,
            // Each check reads every replica's whole state once.
            consistency_check_interval_secs: 3600,
            retention: RetentionPolicy::default(),
            compaction_interval_secs: 300,
            hot_window_secs: 86_400,
            cold_store: crate::state::cold::objects::ColdStoreKind::Local,
            tls: None,
            peer_tls: None,
            faults: FaultConfig::default(),
        }
    }
}

/// `--log-integrity`: what protects each Raft log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogIntegrity {
    Crc32c,
    Hmac,
}

impl LogIntegrity {
    fn parse(s: &str) -> Result<LogIntegrity, String> {
        match s {
            "crc32c" => Ok(LogIntegrity::Crc32c),
            "hmac" => Ok(LogIntegrity::Hmac),
            other => Err(format!(
                "log_integrity must be crc32c or hmac, not {other:?}"
            )),
        }
    }
}

/// `serve` flags. Every one can also come from `TAEL_<NAME>` or the file.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "TAEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id; never reuse the id of a wiped node.
    #[arg(long, env = "TAEL_NODE_ID")]
    pub node_id: Option<u64>,
    #[arg(long, env = "TAEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Node-to-node gRPC address (also what peers use to reach this node).
    #[arg(long, env = "TAEL_RAFT_ADDR")]
    pub raft_addr: Option<String>,
    #[arg(long, env = "TAEL_REST_ADDR")]
    pub rest_addr: Option<String>,
    #[arg(long, env = "TAEL_OTLP_GRPC_ADDR")]
    pub otlp_grpc_addr: Option<String>,
    /// OTLP/HTTP address (`POST /v1/traces`, `/v1/logs`, `/v1/metrics`).
    #[arg(long, env = "TAEL_OTLP_HTTP_ADDR")]
    pub otlp_http_addr: Option<String>,
    #[arg(long, env = "TAEL_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    #[arg(long, env = "TAEL_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    #[arg(long, env = "TAEL_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after this many new log entries.
    #[arg(long, env = "TAEL_SNAPSHOT_EVERY_ENTRIES")]
    pub snapshot_every_entries: Option<u64>,
    /// Log entries kept behind a snapshot for lagging followers.
    #[arg(long, env = "TAEL_LOG_ENTRIES_KEPT_AFTER_SNAPSHOT")]
    pub log_entries_kept_after_snapshot: Option<u64>,
    /// Background threads of the storage engine (default 1; see the
    /// default in code for why more can cost CPU).
    #[arg(long, env = "TAEL_STORAGE_THREADS")]
    pub storage_threads: Option<usize>,
    /// Block cache of the storage engine, MiB.
    #[arg(long, env = "TAEL_CACHE_MB")]
    pub cache_mb: Option<u64>,
    /// Async runtime worker threads.
    #[arg(long, env = "TAEL_RUNTIME_THREADS")]
    pub runtime_threads: Option<usize>,
    /// When an export is acknowledged: `committed` (fsynced on a quorum),
    /// `applied` (also applied on the leader) or `spooled` (fsynced in this
    /// node's local spool, forwarded to the Raft log when a leader is
    /// reachable; see docs/consistency.md for what that does not promise).
    #[arg(long, env = "TAEL_INGEST_ACK")]
    pub ingest_ack: Option<String>,
    /// With `--ingest-ack spooled`: spooled MiB not yet forwarded beyond
    /// which exports are refused with a retry hint.
    #[arg(long, env = "TAEL_SPOOL_MAX_PENDING_MB")]
    pub spool_max_pending_mb: Option<u64>,
    /// OTLP exports (gRPC and HTTP) decoded and committed at once (default
    /// 64); more are shed with 429 / RESOURCE_EXHAUSTED and a retry hint.
    #[arg(long, env = "TAEL_OTLP_MAX_INFLIGHT_EXPORTS")]
    pub otlp_max_inflight_exports: Option<usize>,
    /// MiB of OTLP request bodies received or held at once (default 256);
    /// a body that does not fit is shed.
    #[arg(long, env = "TAEL_OTLP_BODY_BUDGET_MB")]
    pub otlp_body_budget_mb: Option<u64>,
    /// Milliseconds an OTLP request body may take to arrive (default 30000).
    #[arg(long, env = "TAEL_OTLP_BODY_READ_TIMEOUT_MS")]
    pub otlp_body_read_timeout_ms: Option<u64>,
    /// Largest OTLP export accepted (gRPC and HTTP), in bytes after
    /// decompression (default 20 MiB); larger ones get 413 /
    /// RESOURCE_EXHAUSTED. At most 64 MiB and at most the body budget.
    #[arg(long, env = "TAEL_MAX_EXPORT_BYTES")]
    pub max_export_bytes: Option<usize>,
    /// REST queries scanning storage at once (default 4); more wait up to a
    /// second, then get 429 with Retry-After.
    #[arg(long, env = "TAEL_QUERY_MAX_CONCURRENT_SCANS")]
    pub query_max_concurrent_scans: Option<usize>,
    /// `RAFT_ADDR=DIAL_ADDR`: reach the peer whose membership address is
    /// RAFT_ADDR at DIAL_ADDR instead (a proxy, a NAT). Repeatable.
    #[arg(
        long = "dial-override",
        env = "TAEL_DIAL_OVERRIDES",
        value_delimiter = ','
    )]
    pub dial_overrides: Vec<String>,
    /// `required`: every request but /healthz and /readyz needs an API key
    /// of the right role; `off`: none does. Default: `required` when any
    /// listener binds an address other than loopback, else `off`.
    #[arg(long, env = "TAEL_AUTH")]
    pub auth: Option<String>,
    /// A file holding the secret shared by every node of the cluster (at
    /// least 32 bytes). Needed with `--auth required`.
    #[arg(long, env = "TAEL_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// `crc32c` (default): Raft log records carry a checksum, which catches
    /// damage. `hmac`: they also carry an HMAC-SHA256 under a key derived
    /// from the cluster secret, checked on every append from a peer, every
    /// read and at recovery, which catches deliberate changes. Needs
    /// --cluster-secret-file; every node should run the same mode.
    #[arg(long, env = "TAEL_LOG_INTEGRITY")]
    pub log_integrity: Option<String>,
    /// The leader proposes a consistency check this often (every replica
    /// digests its state at the same log position; docs/operations.md).
    /// 0 turns periodic checks off; `POST /api/v1/cluster/check` still runs one.
    #[arg(long, env = "TAEL_CONSISTENCY_CHECK_INTERVAL_SECS")]
    pub consistency_check_interval_secs: Option<u64>,
    /// How long spans are kept (default 7d; `30m`, `24h`, `7d`; 0 keeps
    /// them for ever). Older ones are deleted on every node.
    #[arg(long, env = "TAEL_RETENTION_TRACES")]
    pub retention_traces: Option<String>,
    /// How long log records are kept (default 14d).
    #[arg(long, env = "TAEL_RETENTION_LOGS")]
    pub retention_logs: Option<String>,
    /// How long metric points are kept (default 30d).
    #[arg(long, env = "TAEL_RETENTION_METRICS")]
    pub retention_metrics: Option<String>,
    /// How long LLM prompts and completions are kept (default 3d); the
    /// spans stay, with the payloads' hashes.
    #[arg(long, env = "TAEL_RETENTION_LLM_PAYLOADS")]
    pub retention_llm_payloads: Option<String>,
    /// How long per-minute span rollups are kept (default 365d): window
    /// analytics over older minutes still answer after their spans are gone.
    #[arg(long, env = "TAEL_RETENTION_ROLLUPS")]
    pub retention_rollups: Option<String>,
    /// How often the leader applies the retention (default 5m; 0: never).
    #[arg(long, env = "TAEL_COMPACTION_INTERVAL")]
    pub compaction_interval: Option<String>,
    /// Records older than this leave the hot tier for Parquet files in
    /// `<data-dir>/cold` (default 24h; 0: never), at every compaction
    /// interval.
    #[arg(long, env = "TAEL_HOT_WINDOW")]
    pub hot_window: Option<String>,
    /// Where cold files live: `file` (default: under the data directory,
    /// every node keeps its own copy) or `s3://BUCKET/PREFIX` (one copy for
    /// the cluster, written by the leader and read by every node; settings
    /// from the standard AWS_* environment variables). Every node of a
    /// cluster uses the same.
    #[arg(long, env = "TAEL_COLD_STORE")]
    pub cold_store: Option<String>,
    /// PEM certificate (chain, leaf first) served by the REST, OTLP/gRPC and
    /// OTLP/HTTP listeners; with --tls-key. Re-read when the file changes.
    #[arg(long, env = "TAEL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TAEL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate this node presents on the node-to-node port, as
    /// server and as client (mutual TLS); it needs an IP SAN of the raft
    /// address. With --peer-tls-key and --peer-tls-ca.
    #[arg(long, env = "TAEL_PEER_TLS_CERT")]
    pub peer_tls_cert: Option<PathBuf>,
    /// PEM private key of --peer-tls-cert.
    #[arg(long, env = "TAEL_PEER_TLS_KEY")]
    pub peer_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): a peer's certificate must be signed by it.
    #[arg(long, env = "TAEL_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
    /// Fault harness only (`fault-injection` builds): run with a known bug.
    #[arg(long, env = "TAEL_MUTATION")]
    pub mutation: Option<String>,
    /// Fault harness only (`fault-injection` builds): a SIGKILL of this node
    /// drops whatever its Raft log had not fsynced, like a power cut.
    #[arg(long, env = "TAEL_POWER_LOSS_SIM", num_args = 0..=1, default_missing_value = "true")]
    pub power_loss_sim: Option<bool>,
}

fn parse_dial_override(s: &str) -> Result<(String, String), String> {
    let (from, to) = s
        .split_once('=')
        .ok_or_else(|| format!("dial override {s:?} is not RAFT_ADDR=DIAL_ADDR"))?;
    for addr in [from, to] {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "dial override {s:?}: {addr:?} is not a host:port socket address"
            ));
        }
    }
    Ok((from.to_string(), to.to_string()))
}

/// `--tls-cert` and `--tls-key`: both or neither.
fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<TlsFiles>, String> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (Some(_), None) => Err("tls_cert is set but tls_key is not: give both or neither".into()),
        (None, Some(_)) => Err("tls_key is set but tls_cert is not: give both or neither".into()),
    }
}

/// `--peer-tls-cert`, `--peer-tls-key` and `--peer-tls-ca`: all or none.
fn peer_tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<PeerTlsFiles>, String> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(PeerTlsFiles {
            own: TlsFiles { cert, key },
            ca,
        })),
        (cert, key, ca) => {
            let missing: Vec<&str> = [
                ("peer_tls_cert", cert.is_none()),
                ("peer_tls_key", key.is_none()),
                ("peer_tls_ca", ca.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            Err(format!(
                "peer TLS needs peer_tls_cert, peer_tls_key and peer_tls_ca together; missing: {}",
                missing.join(", ")
            ))
        }
    }
}

/// The ack level of proposals, and whether exports go through the spool.
fn parse_ack(s: &str) -> Result<(AckLevel, bool), String> {
    match s {
        "committed" => Ok((AckLevel::Committed, false)),
        "applied" => Ok((AckLevel::Applied, false)),
        "spooled" => Ok((AckLevel::Committed, true)),
        other => Err(format!(
            "ingest_ack must be committed, applied or spooled, not {other:?}"
        )),
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<u64>,
    data_dir: Option<PathBuf>,
    raft_addr: Option<String>,
    rest_addr: Option<String>,
    otlp_grpc_addr: Option<String>,
    otlp_http_addr: Option<String>,
    heartbeat_interval_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    snapshot_every_entries: Option<u64>,
    log_entries_kept_after_snapshot: Option<u64>,
    storage_threads: Option<usize>,
    cache_mb: Option<u64>,
    runtime_threads: Option<usize>,
    ingest_ack: Option<String>,
    spool_max_pending_mb: Option<u64>,
    otlp_max_inflight_exports: Option<usize>,
    otlp_body_budget_mb: Option<u64>,
    otlp_body_read_timeout_ms: Option<u64>,
    max_export_bytes: Option<usize>,
    query_max_concurrent_scans: Option<usize>,
    dial_overrides: Option<Vec<String>>,
    auth: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    log_integrity: Option<String>,
    consistency_check_interval_secs: Option<u64>,
    retention_traces: Option<String>,
    retention_logs: Option<String>,
    retention_metrics: Option<String>,
    retention_llm_payloads: Option<String>,
    retention_rollups: Option<String>,
    compaction_interval: Option<String>,
    hot_window: Option<String>,
    cold_store: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    peer_tls_cert: Option<PathBuf>,
    peer_tls_key: Option<PathBuf>,
    peer_tls_ca: Option<PathBuf>,
    mutation: Option<String>,
    power_loss_sim: Option<bool>,
}

/// A duration setting (`--NAME`): its value in seconds, or `default`.
fn duration_setting(name: &str, value: Option<&String>, default: u64) -> Result<u64, String> {
    match value {
        Some(v) => crate::retention::parse_duration_secs(v).map_err(|e| format!("--{name}: {e}")),
        None => Ok(default),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

impl ServeArgs {
    /// Resolves the settings. Clap has already applied flag > env.
    pub fn resolve(&self) -> Result<ServeConfig, String> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let d = ServeConfig::default();
        macro_rules! pick {
            ($f:ident) => {
                self.$f.clone().or(file.$f.clone()).unwrap_or(d.$f.clone())
            };
        }
        let (ingest_ack, ingest_spooled) = match self.ingest_ack.clone().or(file.ingest_ack.clone())
        {
            Some(s) => parse_ack(&s)?,
            None => (d.ingest_ack, d.ingest_spooled),
        };
        let c = ServeConfig {
            node_id: pick!(node_id),
            data_dir: pick!(data_dir),
            raft_addr: pick!(raft_addr),
            rest_addr: pick!(rest_addr),
            otlp_grpc_addr: pick!(otlp_grpc_addr),
            otlp_http_addr: pick!(otlp_http_addr),
            heartbeat_interval_ms: pick!(heartbeat_interval_ms),
            election_timeout_min_ms: pick!(election_timeout_min_ms),
            election_timeout_max_ms: pick!(election_timeout_max_ms),
            snapshot_every_entries: pick!(snapshot_every_entries),
            log_entries_kept_after_snapshot: pick!(log_entries_kept_after_snapshot),
            storage_threads: pick!(storage_threads),
            cache_mb: pick!(cache_mb),
            runtime_threads: pick!(runtime_threads),
            ingest_ack,
            ingest_spooled,
            spool_max_pending_mb: pick!(spool_max_pending_mb),
            otlp_max_inflight_exports: pick!(otlp_max_inflight_exports),
            otlp_body_budget_mb: pick!(otlp_body_budget_mb),
            otlp_body_read_timeout_ms: pick!(otlp_body_read_timeout_ms),
            max_export_bytes: match self.max_export_bytes.or(file.max_export_bytes) {
                Some(bytes) => bytes,
                // Unset: the default, but never above the body budget (a
                // node given a small budget before this setting existed
                // must still start).
                None => {
                    let budget_mb = self
                        .otlp_body_budget_mb
                        .or(file.otlp_body_budget_mb)
                        .unwrap_or(d.otlp_body_budget_mb);
                    let budget_bytes = budget_mb.saturating_mul(1024 * 1024);
                    d.max_export_bytes
                        .min(usize::try_from(budget_bytes).unwrap_or(usize::MAX))
                }
            },
            query_max_concurrent_scans: pick!(query_max_concurrent_scans),
            dial_overrides: {
                let raw = if self.dial_overrides.is_empty() {
                    file.dial_overrides.clone().unwrap_or_default()
                } else {
                    self.dial_overrides.clone()
                };
                raw.iter()
                    .map(|s| parse_dial_override(s))
                    .collect::<Result<_, _>>()?
            },
            auth: AuthMode::Off,
            cluster_secret_file: self
                .cluster_secret_file
                .clone()
                .or(file.cluster_secret_file.clone()),
            log_integrity: match self.log_integrity.clone().or(file.log_integrity.clone()) {
                Some(s) => LogIntegrity::parse(&s)?,
                None => d.log_integrity,
            },
            consistency_check_interval_secs: pick!(consistency_check_interval_secs),
            retention: RetentionPolicy {
                traces_secs: duration_setting(
                    "retention-traces",
                    self.retention_traces
                        .as_ref()
                        .or(file.retention_traces.as_ref()),
                    d.retention.traces_secs,
                )?,
                logs_secs: duration_setting(
                    "retention-logs",
                    self.retention_logs
                        .as_ref()
                        .or(file.retention_logs.as_ref()),
                    d.retention.logs_secs,
                )?,
                metrics_secs: duration_setting(
                    "retention-metrics",
                    self.retention_metrics
                        .as_ref()
                        .or(file.retention_metrics.as_ref()),
                    d.retention.metrics_secs,
                )?,
                llm_payloads_secs: duration_setting(
                    "retention-llm-payloads",
                    self.retention_llm_payloads
                        .as_ref()
                        .or(file.retention_llm_payloads.as_ref()),
                    d.retention.llm_payloads_secs,
                )?,
                rollups_secs: duration_setting(
                    "retention-rollups",
                    self.retention_rollups
                        .as_ref()
                        .or(file.retention_rollups.as_ref()),
                    d.retention.rollups_secs,
                )?,
            },
            compaction_interval_secs: duration_setting(
                "compaction-interval",
                self.compaction_interval
                    .as_ref()
                    .or(file.compaction_interval.as_ref()),
                d.compaction_interval_secs,
            )?,
            hot_window_secs: duration_setting(
                "hot-window",
                self.hot_window.as_ref().or(file.hot_window.as_ref()),
                d.hot_window_secs,
            )?,
            cold_store: match self.cold_store.as_ref().or(file.cold_store.as_ref()) {
                Some(s) => crate::state::cold::objects::ColdStoreKind::parse(s)
                    .map_err(|e| format!("--cold-store: {e}"))?,
                None => d.cold_store.clone(),
            },
            tls: tls_files(
                self.tls_cert.clone().or(file.tls_cert.clone()),
                self.tls_key.clone().or(file.tls_key.clone()),
            )?,
            peer_tls: peer_tls_files(
                self.peer_tls_cert.clone().or(file.peer_tls_cert.clone()),
                self.peer_tls_key.clone().or(file.peer_tls_key.clone()),
                self.peer_tls_ca.clone().or(file.peer_tls_ca.clone()),
            )?,
            faults: FaultConfig {
                mutation: self
                    .mutation
                    .clone()
                    .or(file.mutation.clone())
                    .map(|s| Mutation::parse(&s))
                    .transpose()?,
                power_loss_sim: self.power_loss_sim.or(file.power_loss_sim).unwrap_or(false),
            },
        };
        let mut c = c;
        c.auth = match self.auth.clone().or(file.auth.clone()) {
            Some(s) => AuthMode::parse(&s)
                .ok_or_else(|| format!("auth must be required or off, not {s:?}"))?,
            None if c.non_loopback_listener().is_some() => AuthMode::Required,
            None => AuthMode::Off,
        };
        c.validate()?;
        Ok(c)
    }
}

impl ServeConfig {
    /// A listener bound to an address other than loopback, if any.
    pub fn non_loopback_listener(&self) -> Option<&str> {
        [
            &self.raft_addr,
            &self.rest_addr,
            &self.otlp_grpc_addr,
            &self.otlp_http_addr,
        ]
        .into_iter()
        .find(|a| {
            a.parse::<std::net::SocketAddr>()
                .is_ok_and(|s| !s.ip().is_loopback())
        })
        .map(String::as_str)
    }

    /// An export must fit one Raft message and the body budget (a body
    /// larger than the budget could never be received).
    fn check_max_export_bytes(&self) -> Result<(), String> {
        let max = self.max_export_bytes;
        let limit = crate::otlp::MAX_EXPORT_BYTES_LIMIT;
        let budget_bytes = self.otlp_body_budget_mb.saturating_mul(1024 * 1024);
        if max == 0 {
            return Err("max_export_bytes must be at least 1".into());
        }
        if max > limit {
            return Err(format!(
                "max_export_bytes {max} exceeds {limit}: an export's records must fit the \
                 node-to-node messages"
            ));
        }
        if max as u64 > budget_bytes {
            return Err(format!(
                "max_export_bytes {max} exceeds otlp_body_budget_mb ({budget_bytes} bytes): \
                 an export that large could never be received"
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), String> {
        match (self.auth, self.non_loopback_listener()) {
            (AuthMode::Off, Some(addr)) => Err(format!(
                "refusing auth = off with a listener on {addr}: anyone who can reach it could \
                 read, write and administer the cluster. Use --auth required with \
                 --cluster-secret-file, or bind loopback addresses only (docs/security.md)"
            )),
            (AuthMode::Required, _) if self.cluster_secret_file.is_none() => Err(
                "auth = required needs --cluster-secret-file FILE, the secret every node of \
                 the cluster shares (create one with `head -c 32 /dev/urandom | base64 > FILE`, \
                 copy it to every node; docs/security.md)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.validate_auth()?;
        if self.log_integrity == LogIntegrity::Hmac && self.cluster_secret_file.is_none() {
            return Err(
                "log_integrity = hmac needs --cluster-secret-file FILE: the HMAC key \
                 of log records is derived from the cluster secret (docs/security.md)"
                    .into(),
            );
        }
        if self.node_id == 0 {
            return Err("node_id must be at least 1".into());
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return Err("election_timeout_min_ms must exceed heartbeat_interval_ms".into());
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err("election_timeout_max_ms must exceed election_timeout_min_ms".into());
        }
        if self.snapshot_every_entries == 0 {
            return Err("snapshot_every_entries must be at least 1".into());
        }
        for (name, addr) in [
            ("raft_addr", &self.raft_addr),
            ("rest_addr", &self.rest_addr),
            ("otlp_grpc_addr", &self.otlp_grpc_addr),
            ("otlp_http_addr", &self.otlp_http_addr),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!("{name} {addr:?} is not a host:port socket address"));
            }
        }
        if self.runtime_threads == 0 || self.storage_threads == 0 {
            return Err("thread counts must be at least 1".into());
        }
        for (name, value) in [
            (
                "otlp_max_inflight_exports",
                self.otlp_max_inflight_exports as u64,
            ),
            ("otlp_body_budget_mb", self.otlp_body_budget_mb),
            ("otlp_body_read_timeout_ms", self.otlp_body_read_timeout_ms),
            (
                "query_max_concurrent_scans",
                self.query_max_concurrent_scans as u64,
            ),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        self.check_max_export_bytes()?;
        if self.ingest_spooled {
            if self.spool_max_pending_mb == 0 {
                return Err(
                    "spool_max_pending_mb must be at least 1 with ingest_ack = spooled".into(),
                );
            }
            if !cfg!(target_os = "linux") {
                return Err(
                    "ingest_ack = spooled needs Linux: its spool (walrus) writes with io_uring"
                        .into(),
                );
            }
            // The forwarder lets a record go once its proposal is acknowledged.
            if self.faults.mutation == Some(Mutation::AckBeforeCommit) {
                return Err(
                    "ingest_ack = spooled cannot be combined with the ack-before-commit mutation"
                        .into(),
                );
            }
        }
        self.faults.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "node_id = 7\nrest_addr = \"127.0.0.1:9001\"\ncache_mb = 3\notlp_http_addr = \"127.0.0.1:9318\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            node_id: Some(9),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.node_id, 9, "flag wins over file");
        assert_eq!(c.rest_addr, "127.0.0.1:9001", "file wins over default");
        assert_eq!(c.cache_mb, 3);
        assert_eq!(c.otlp_http_addr, "127.0.0.1:9318");
        assert_eq!(
            c.raft_addr,
            ServeConfig::default().raft_addr,
            "default fills the rest"
        );
    }

    #[test]
    fn the_default_export_limit_follows_a_smaller_body_budget() {
        let args = ServeArgs {
            otlp_body_budget_mb: Some(4),
            ..Default::default()
        };
        assert_eq!(args.resolve().unwrap().max_export_bytes, 4 * 1024 * 1024);
        let explicit = ServeArgs {
            otlp_body_budget_mb: Some(4),
            max_export_bytes: Some(8 * 1024 * 1024),
            ..Default::default()
        };
        assert!(
            explicit.resolve().is_err(),
            "an explicit limit above the budget"
        );
    }

    #[test]
    fn max_export_bytes_from_flag_or_file_within_its_bounds() {
        let default = ServeArgs::default().resolve().unwrap();
        assert_eq!(default.max_export_bytes, 20 * 1024 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "max_export_bytes = 1048576\n").unwrap();
        let from_file = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        assert_eq!(from_file.resolve().unwrap().max_export_bytes, 1 << 20);
        let flag_wins = ServeArgs {
            config: Some(path),
            max_export_bytes: Some(4096),
            ..Default::default()
        };
        assert_eq!(flag_wins.resolve().unwrap().max_export_bytes, 4096);
        for (bytes, budget_mb, complaint) in [
            (0, None, "at least 1"),
            (65 << 20, Some(1024), "node-to-node"),
            (2 << 20, Some(1), "otlp_body_budget_mb"),
        ] {
            let err = ServeArgs {
                max_export_bytes: Some(bytes),
                otlp_body_budget_mb: budget_mb,
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert!(err.contains(complaint), "{bytes}: {err}");
        }
    }

    #[test]
    fn ingest_ack_defaults_to_committed_and_is_validated() {
        assert_eq!(
            ServeArgs::default().resolve().unwrap().ingest_ack,
            AckLevel::Committed
        );
        let args = ServeArgs {
            ingest_ack: Some("applied".into()),
            ..Default::default()
        };
        assert_eq!(args.resolve().unwrap().ingest_ack, AckLevel::Applied);
        let err = ServeArgs {
            ingest_ack: Some("eventually".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("ingest_ack"), "{err}");
        assert!(err.contains("spooled"), "the error lists every mode: {err}");
    }

    #[test]
    fn spooled_mode_parses_and_proposes_at_commit() {
        let c = ServeArgs {
            ingest_ack: Some("spooled".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(c.ingest_spooled);
        assert_eq!(
            c.ingest_ack,
            AckLevel::Committed,
            "the forwarder lets a record go once committed"
        );
        assert_eq!(c.spool_max_pending_mb, 1024);
        assert!(!ServeArgs::default().resolve().unwrap().ingest_spooled);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "ingest_ack = \"spooled\"\nspool_max_pending_mb = 64\n",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(c.ingest_spooled);
        assert_eq!(c.spool_max_pending_mb, 64);
        let c = ServeArgs {
            config: Some(path),
            ingest_ack: Some("committed".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(!c.ingest_spooled, "the flag wins over the file");

        let err = ServeArgs {
            ingest_ack: Some("spooled".into()),
            spool_max_pending_mb: Some(0),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("spool_max_pending_mb"), "{err}");
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "node_idd = 1\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("node_idd"), "{err}");
        let err = ServeArgs {
            rest_addr: Some("nowhere".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("rest_addr"), "{err}");
        let err = ServeArgs {
            otlp_http_addr: Some("localhost".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("otlp_http_addr"), "{err}");
        assert_eq!(
            ServeArgs::default().resolve().unwrap().otlp_http_addr,
            "127.0.0.1:4318"
        );
    }

    #[test]
    fn dial_overrides_parse_and_bad_ones_are_named() {
        let c = ServeArgs {
            dial_overrides: vec!["127.0.0.1:7702=127.0.0.1:17702".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            c.dial_overrides,
            vec![("127.0.0.1:7702".to_string(), "127.0.0.1:17702".to_string())]
        );
        let err = ServeArgs {
            dial_overrides: vec!["127.0.0.1:7702".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("RAFT_ADDR=DIAL_ADDR"), "{err}");
        let err = ServeArgs {
            mutation: Some("skip-fsync-please".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("unknown mutation"), "{err}");
    }

    #[test]
    fn tls_files_come_in_pairs_and_flags_beat_the_file() {
        let err = ServeArgs {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("tls_key is not"), "{err}");
        let err = ServeArgs {
            peer_tls_cert: Some("c.pem".into()),
            peer_tls_key: Some("k.pem".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("missing: peer_tls_ca"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "tls_cert = \"file.crt\"\ntls_key = \"file.key\"\npeer_tls_cert = \"p.crt\"\npeer_tls_key = \"p.key\"\npeer_tls_ca = \"ca.crt\"\n",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(path),
            tls_cert: Some("flag.crt".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "flag.crt".into(),
                key: "file.key".into()
            })
        );
        assert_eq!(c.peer_tls.unwrap().ca, PathBuf::from("ca.crt"));
        assert_eq!(ServeArgs::default().resolve().unwrap().tls, None);
    }

    #[test]
    fn auth_defaults_to_required_off_loopback_and_is_refused_without_what_it_needs() {
        let on_loopback = ServeArgs::default().resolve().unwrap();
        assert_eq!(on_loopback.auth, AuthMode::Off);

        let public = ServeArgs {
            rest_addr: Some("0.0.0.0:7701".into()),
            ..Default::default()
        };
        let err = public.resolve().unwrap_err();
        assert!(err.contains("cluster-secret-file"), "{err}");
        let with_secret = ServeArgs {
            cluster_secret_file: Some("/etc/tael/secret".into()),
            ..public.clone()
        };
        assert_eq!(with_secret.resolve().unwrap().auth, AuthMode::Required);

        let off_in_public = ServeArgs {
            auth: Some("off".into()),
            ..with_secret.clone()
        };
        let err = off_in_public.resolve().unwrap_err();
        assert!(err.contains("refusing auth = off"), "{err}");

        let bad = ServeArgs {
            auth: Some("maybe".into()),
            ..Default::default()
        };
        assert!(bad.resolve().unwrap_err().contains("required or off"));
    }

    #[test]
    fn log_integrity_defaults_to_crc32c_and_hmac_needs_the_secret() {
        assert_eq!(
            ServeArgs::default().resolve().unwrap().log_integrity,
            LogIntegrity::Crc32c
        );
        let hmac = ServeArgs {
            log_integrity: Some("hmac".into()),
            ..Default::default()
        };
        let err = hmac.resolve().unwrap_err();
        assert!(err.contains("needs --cluster-secret-file"), "{err}");
        let with_secret = ServeArgs {
            cluster_secret_file: Some("/etc/tael/secret".into()),
            ..hmac
        };
        assert_eq!(
            with_secret.resolve().unwrap().log_integrity,
            LogIntegrity::Hmac
        );
        let bad = ServeArgs {
            log_integrity: Some("sha1".into()),
            ..Default::default()
        };
        assert!(bad.resolve().unwrap_err().contains("crc32c or hmac"));
    }
}
