//! Replicas prove they agree: a consistency check and the comparison of
//! the digests every replica computes for it (`state::digest`).
//!
//! [`Cluster::run_check`] proposes a check entry, waits for every member to
//! report a digest for it (each node serves its latest in its status), and
//! compares. A replica whose digest differs from the others' is named in
//! the report, logged as an error and counted in
//! `tael_consistency_mismatches_total`; a replica that did not answer in
//! time (down, busy with a previous digest, or past the check through a
//! snapshot install) is listed as missing, which is not a mismatch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::status::ClusterStatus;
use super::{Cluster, ClusterError};
use crate::payload;

/// How often `run_check` asks the members for their digests while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The outcome of one check.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CheckReport {
    /// The log index of the check entry.
    pub index: u64,
    /// Node id → digest, for every member that reported one for `index`.
    pub digests: BTreeMap<u64, String>,
    /// Members whose digest differs from the others'. When no digest is
    /// held by more members than any other, every reporting member is named.
    pub differing: Vec<u64>,
    /// Members that reported no digest for `index` in time.
    pub missing: Vec<u64>,
    /// No member differs and none is missing.
    pub agree: bool,
}

/// Counters and the last report, for `/metrics` and the status.
#[derive(Default)]
pub struct CheckStats {
    pub checks: AtomicU64,
    pub mismatches: AtomicU64,
    pub last: Mutex<Option<CheckReport>>,
}

/// Compares the digests members reported for the check at `index`.
pub fn compare(index: u64, members: &[u64], reported: &BTreeMap<u64, String>) -> CheckReport {
    let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
    for d in reported.values() {
        *votes.entry(d.as_str()).or_default() += 1;
    }
    let most = votes.values().copied().max().unwrap_or(0);
    let leaders: Vec<&str> = votes
        .iter()
        .filter(|(_, &n)| n == most)
        .map(|(d, _)| *d)
        .collect();
    let differing: Vec<u64> = if votes.len() <= 1 {
        Vec::new()
    } else if let [majority] = leaders.as_slice() {
        reported
            .iter()
            .filter(|(_, d)| d.as_str() != *majority)
            .map(|(id, _)| *id)
            .collect()
    } else {
        reported.keys().copied().collect()
    };
    let missing: Vec<u64> = members
        .iter()
        .copied()
        .filter(|id| !reported.contains_key(id))
        .collect();
    CheckReport {
        index,
        digests: reported.clone(),
        agree: differing.is_empty() && missing.is_empty(),
        differing,
        missing,
    }
}

/// Whether every member answered and applies consistency checks: a node of
/// an older version would record a check entry as rejected, and its state
/// would then differ from the others' in that record.
pub fn every_member_applies_checks(status: &ClusterStatus) -> bool {
    status.every_member_reports(|s| s.applies_consistency_checks)
}

impl Cluster {
    /// This node's latest digest: the check's index and the digest.
    pub fn local_digest(&self) -> Option<(u64, String)> {
        self.sm.digests.latest().map(|d| (d.index, d.sha256))
    }

    pub fn check_stats(&self) -> &CheckStats {
        &self.checks
    }

    /// Proposes a check, waits up to `wait` for every member's digest of
    /// it, and compares them.
    pub async fn run_check(&self, wait: Duration) -> Result<CheckReport, ClusterError> {
        let index = self.propose(payload::check_record()).await?;
        let deadline = tokio::time::Instant::now() + wait;
        let (members, reported) = loop {
            let status = self.status().await;
            let members: Vec<u64> = status.members.iter().map(|m| m.id).collect();
            let reported: BTreeMap<u64, String> = status
                .members
                .iter()
                .filter_map(|m| {
                    let s = m.status.as_ref()?;
                    (s.state_digest_index == index).then(|| (m.id, s.state_digest.clone()))
                })
                .collect();
            if reported.len() == members.len() || tokio::time::Instant::now() >= deadline {
                break (members, reported);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let report = compare(index, &members, &reported);
        self.record_check(&report);
        Ok(report)
    }

    fn record_check(&self, report: &CheckReport) {
        self.checks.checks.fetch_add(1, Ordering::Relaxed);
        if !report.differing.is_empty() {
            self.checks.mismatches.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                index = report.index,
                differing = ?report.differing,
                digests = ?report.digests,
                "CONSISTENCY CHECK FAILED: replicas hold different state at the same log \
                 position; the differing nodes must be rebuilt from their peers \
                 (docs/operations.md, Damage and recovery)"
            );
        } else if !report.missing.is_empty() {
            tracing::warn!(
                index = report.index,
                missing = ?report.missing,
                "consistency check incomplete: some members reported no digest in time"
            );
        } else {
            tracing::info!(
                index = report.index,
                "consistency check: all replicas agree"
            );
        }
        *self.checks.last.lock().unwrap() = Some(report.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(pairs: &[(u64, &str)]) -> BTreeMap<u64, String> {
        pairs.iter().map(|(id, d)| (*id, d.to_string())).collect()
    }

    #[test]
    fn equal_digests_agree() {
        let r = compare(9, &[1, 2, 3], &digests(&[(1, "a"), (2, "a"), (3, "a")]));
        assert!(r.agree);
        assert!(r.differing.is_empty() && r.missing.is_empty());
    }

    #[test]
    fn the_odd_one_out_is_named() {
        let r = compare(9, &[1, 2, 3], &digests(&[(1, "a"), (2, "b"), (3, "a")]));
        assert_eq!(r.differing, vec![2]);
        assert!(!r.agree);
    }

    #[test]
    fn without_a_majority_every_reporter_is_named() {
        let r = compare(9, &[1, 2], &digests(&[(1, "a"), (2, "b")]));
        assert_eq!(r.differing, vec![1, 2]);
        let r = compare(9, &[1, 2, 3], &digests(&[(1, "a"), (2, "b"), (3, "c")]));
        assert_eq!(r.differing, vec![1, 2, 3]);
    }

    #[test]
    fn a_silent_member_is_missing_not_differing() {
        let r = compare(9, &[1, 2, 3], &digests(&[(1, "a"), (3, "a")]));
        assert_eq!(r.missing, vec![2]);
        assert!(r.differing.is_empty());
        assert!(!r.agree);
        let none = compare(9, &[1, 2, 3], &BTreeMap::new());
        assert_eq!(none.missing, vec![1, 2, 3]);
        assert!(none.differing.is_empty());
    }

    fn status_of(members: Vec<Option<bool>>) -> ClusterStatus {
        use super::super::status::MemberStatus;
        ClusterStatus {
            cluster_id: Some("c".into()),
            node_id: 1,
            leader: Some(1),
            term: 1,
            voters: vec![1, 2, 3],
            learners: vec![],
            members: members
                .into_iter()
                .enumerate()
                .map(|(i, applies)| MemberStatus {
                    id: i as u64 + 1,
                    raft_addr: String::new(),
                    voter: true,
                    status: applies.map(|a| tael_consensus::pb::NodeStatusResponse {
                        applies_consistency_checks: a,
                        ..Default::default()
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn periodic_checks_wait_for_every_member_to_apply_them() {
        assert!(every_member_applies_checks(&status_of(vec![Some(true); 3])));
        // A node of an older version (the field absent reads as false).
        assert!(!every_member_applies_checks(&status_of(vec![
            Some(true),
            Some(false),
            Some(true)
        ])));
        // A member that did not answer.
        assert!(!every_member_applies_checks(&status_of(vec![
            Some(true),
            None,
            Some(true)
        ])));
    }
}
