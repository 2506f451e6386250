//! What the cluster looks like from this node: `GET /api/v1/cluster`,
//! `/readyz`, `tael-raft status`.

use std::time::Duration;

use tael_consensus::pb::NodeStatusResponse;

use super::Cluster;

const PEER_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// One member as seen from here; `status` is its own answer, `None` when it
/// did not give one in time.
pub struct MemberStatus {
    pub id: u64,
    pub raft_addr: String,
    pub voter: bool,
    pub status: Option<NodeStatusResponse>,
}

pub struct ClusterStatus {
    pub cluster_id: Option<String>,
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub members: Vec<MemberStatus>,
}

impl ClusterStatus {
    /// Whether every member answered and its answer says `applies`: what
    /// the leader checks before it proposes an entry an older version could
    /// not apply (a node that rejects an entry the others apply differs
    /// from them from then on).
    pub fn every_member_reports(&self, applies: impl Fn(&NodeStatusResponse) -> bool) -> bool {
        self.members_lacking(applies).is_empty()
    }

    /// The members that did not answer, or whose answer does not say
    /// `applies`: whom the leader waits for (named in its logs).
    pub fn members_lacking(&self, applies: impl Fn(&NodeStatusResponse) -> bool) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| !m.status.as_ref().is_some_and(&applies))
            .map(|m| m.id)
            .collect()
    }

    /// The leader's last log index, when the leader answered.
    pub fn leader_last_log_index(&self) -> Option<u64> {
        self.members
            .iter()
            .filter(|m| Some(m.id) == self.leader)
            .find_map(|m| m.status.as_ref().map(|s| s.last_log_index))
    }
}

/// Ready: a leader is known, everything committed here is applied, and the
/// state machine is back at least where it was before this node restarted.
pub struct Readiness {
    pub ready: bool,
    pub leader: Option<u64>,
    pub committed_index: u64,
    pub applied_index: u64,
    /// The committed index saved before this start (0 if none).
    pub recovered_committed_index: u64,
}

impl Readiness {
    /// `local_committed` alone is not enough: right after a restart it can
    /// be what the state machine recovered, not what it had applied before
    /// the crash; `recovered_committed_index` is that, from the log store.
    pub fn new(
        leader: Option<u64>,
        committed_index: u64,
        applied_index: u64,
        recovered_committed_index: u64,
    ) -> Readiness {
        Readiness {
            ready: leader.is_some()
                && applied_index >= committed_index
                && applied_index >= recovered_committed_index,
            leader,
            committed_index,
            applied_index,
            recovered_committed_index,
        }
    }
}

impl Cluster {
    /// This node's own status, as it answers peers.
    pub fn local_status(&self) -> NodeStatusResponse {
        tael_consensus::server::node_status(
            &self.raft,
            self.settings.node_id,
            &self.log,
            &self.settings.rest_addr,
            self.local_digest(),
            crate::state::cold::FILE_WRITER_VERSION,
        )
    }

    /// Every member's status, asked of each (one second each at most).
    pub async fn status(&self) -> ClusterStatus {
        let m = self.metrics();
        let membership = m.membership_config.membership().clone();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let mut members = Vec::new();
        for (id, node) in membership.nodes() {
            let status = if *id == self.settings.node_id {
                Some(self.local_status())
            } else {
                self.peers
                    .node_status(&node.addr, PEER_STATUS_TIMEOUT)
                    .await
                    .ok()
            };
            members.push(MemberStatus {
                id: *id,
                raft_addr: node.addr.clone(),
                voter: voters.contains(id),
                status,
            });
        }
        ClusterStatus {
            cluster_id: self.identity.get(),
            node_id: self.settings.node_id,
            leader: m.current_leader,
            term: m.current_term,
            voters,
            learners,
            members,
        }
    }

    pub fn readiness(&self) -> Readiness {
        let m = self.metrics();
        Readiness::new(
            m.current_leader,
            m.local_committed.map_or(0, |l| l.index),
            m.last_applied.map_or(0, |l| l.index),
            self.log.recovered_committed().map_or(0, |l| l.index),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn not_ready_before_applying_what_was_committed_before_the_restart() {
        assert!(Readiness::new(Some(1), 10, 10, 10).ready);
        assert!(!Readiness::new(None, 10, 10, 0).ready);
        assert!(!Readiness::new(Some(1), 10, 9, 0).ready);
        // Committed here looks applied, but the node had applied 12 before.
        assert!(!Readiness::new(Some(1), 10, 10, 12).ready);
    }
}
