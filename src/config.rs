//! Node configuration: flag > environment (`TAEL_*`) > TOML file > default.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use tael_consensus::AckLevel;

use crate::faults::{FaultConfig, Mutation};

/// The settings of one node, fully resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub raft_addr: String,
    pub rest_addr: String,
    pub otlp_grpc_addr: String,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every_entries: u64,
    pub log_entries_kept_after_snapshot: u64,
    pub storage_threads: usize,
    pub cache_mb: u64,
    pub runtime_threads: usize,
    pub ingest_ack: AckLevel,
    /// Peers to dial somewhere other than their membership address
    /// (membership address → address dialed), e.g. through a test proxy.
    pub dial_overrides: Vec<(String, String)>,
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
            heartbeat_interval_ms: 200,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            // Snapshots are mostly triggered by log size (see node.rs); this
            // count is an upper bound for logs of many tiny entries.
            snapshot_every_entries: 500_000,
            log_entries_kept_after_snapshot: 5_000,
            storage_threads: 2,
            cache_mb: 128,
            runtime_threads: 2,
            ingest_ack: AckLevel::Committed,
            dial_overrides: Vec::new(),
            faults: FaultConfig::default(),
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
    /// Background threads of the storage engine.
    #[arg(long, env = "TAEL_STORAGE_THREADS")]
    pub storage_threads: Option<usize>,
    /// Block cache of the storage engine, MiB.
    #[arg(long, env = "TAEL_CACHE_MB")]
    pub cache_mb: Option<u64>,
    /// Async runtime worker threads.
    #[arg(long, env = "TAEL_RUNTIME_THREADS")]
    pub runtime_threads: Option<usize>,
    /// When an export is acknowledged: `committed` (fsynced on a quorum) or
    /// `applied` (also applied on the leader).
    #[arg(long, env = "TAEL_INGEST_ACK")]
    pub ingest_ack: Option<String>,
    /// `RAFT_ADDR=DIAL_ADDR`: reach the peer whose membership address is
    /// RAFT_ADDR at DIAL_ADDR instead (a proxy, a NAT). Repeatable.
    #[arg(
        long = "dial-override",
        env = "TAEL_DIAL_OVERRIDES",
        value_delimiter = ','
    )]
    pub dial_overrides: Vec<String>,
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

fn parse_ack(s: &str) -> Result<AckLevel, String> {
    match s {
        "committed" => Ok(AckLevel::Committed),
        "applied" => Ok(AckLevel::Applied),
        other => Err(format!(
            "ingest_ack must be committed or applied, not {other:?}"
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
    heartbeat_interval_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    snapshot_every_entries: Option<u64>,
    log_entries_kept_after_snapshot: Option<u64>,
    storage_threads: Option<usize>,
    cache_mb: Option<u64>,
    runtime_threads: Option<usize>,
    ingest_ack: Option<String>,
    dial_overrides: Option<Vec<String>>,
    mutation: Option<String>,
    power_loss_sim: Option<bool>,
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
        let c = ServeConfig {
            node_id: pick!(node_id),
            data_dir: pick!(data_dir),
            raft_addr: pick!(raft_addr),
            rest_addr: pick!(rest_addr),
            otlp_grpc_addr: pick!(otlp_grpc_addr),
            heartbeat_interval_ms: pick!(heartbeat_interval_ms),
            election_timeout_min_ms: pick!(election_timeout_min_ms),
            election_timeout_max_ms: pick!(election_timeout_max_ms),
            snapshot_every_entries: pick!(snapshot_every_entries),
            log_entries_kept_after_snapshot: pick!(log_entries_kept_after_snapshot),
            storage_threads: pick!(storage_threads),
            cache_mb: pick!(cache_mb),
            runtime_threads: pick!(runtime_threads),
            ingest_ack: match self.ingest_ack.clone().or(file.ingest_ack.clone()) {
                Some(s) => parse_ack(&s)?,
                None => d.ingest_ack,
            },
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
        c.validate()?;
        Ok(c)
    }
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), String> {
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
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!("{name} {addr:?} is not a host:port socket address"));
            }
        }
        if self.runtime_threads == 0 || self.storage_threads == 0 {
            return Err("thread counts must be at least 1".into());
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
            "node_id = 7\nrest_addr = \"127.0.0.1:9001\"\ncache_mb = 3\n",
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
        assert_eq!(
            c.raft_addr,
            ServeConfig::default().raft_addr,
            "default fills the rest"
        );
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
}
