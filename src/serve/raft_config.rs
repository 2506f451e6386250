//! Raft's configuration, from the node's.

use openraft::{Config, SnapshotPolicy};

use crate::config::ServeConfig;

pub fn from(c: &ServeConfig) -> Result<Config, String> {
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
