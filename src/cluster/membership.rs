//! Membership changes: a new node joins as a learner, catches up, and is
//! promoted to voter; a voter or learner is removed. Changes of voters go
//! through openraft's joint consensus. Only the leader changes membership.
//!
//! A removed node's id is retired for good (the state machine keeps the set):
//! a wiped node that came back under its old id could have voted in terms it
//! no longer remembers.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ChangeMembers;
use serde::Serialize;
use tael_consensus::Node as RaftNodeAddr;

use super::peers::{PeerError, PeerErrorOr};
use super::{Cluster, ClusterError};

/// Bounds a caller's wait for a learner to catch up.
pub const MAX_CATCH_UP_WAIT: Duration = Duration::from_secs(600);
const ADOPT_TIMEOUT: Duration = Duration::from_secs(5);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize)]
pub struct Member {
    pub node_id: u64,
    pub raft_addr: String,
    pub role: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Members {
    pub leader: Option<u64>,
    pub members: Vec<Member>,
    /// Ids removed from the cluster; never admitted again.
    pub retired_node_ids: Vec<u64>,
    /// The membership is in its joint (two-configuration) phase.
    pub joint: bool,
}

/// Whether this node, as leader, is on its way out: the newest voter set of
/// its membership (`configs`, two of them while a change is joint) leaves
/// it out. Such a leader steps down once that set commits; a further change
/// proposed by it meanwhile reaches a state openraft does not expect (a
/// debug build panics: only a leader may append a membership, and the
/// leaving one no longer counts as leader), so it takes none.
fn leader_is_leaving(configs: &[BTreeSet<u64>], me: u64) -> bool {
    configs.last().is_some_and(|newest| !newest.contains(&me))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::unavailable(what, e)
}

impl Cluster {
    pub fn members(&self) -> Result<Members, ClusterError> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| Member {
                node_id: *id,
                raft_addr: n.addr.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                },
            })
            .collect();
        let retired = self
            .sm
            .store()
            .retired_node_ids()
            .map_err(|e| unavailable("reading retired node ids", e))?;
        Ok(Members {
            leader: m.current_leader,
            members,
            retired_node_ids: retired.into_iter().collect(),
            joint: membership.get_joint_config().len() > 1,
        })
    }

    /// The leader's REST address, asked of the leader itself.
    pub async fn leader_rest_addr(&self) -> Option<String> {
        let m = self.metrics();
        let leader = m.current_leader?;
        if leader == self.settings.node_id {
            return Some(self.settings.rest_addr.clone());
        }
        let (_, addr) = self.leader_addr(&m).ok()?;
        let status = self.peers.node_status(&addr, ADOPT_TIMEOUT).await.ok()?;
        Some(status.rest_addr)
    }

    async fn require_leader(&self) -> Result<(), ClusterError> {
        if self.is_leader() {
            return Ok(());
        }
        Err(ClusterError::NotLeader {
            leader_rest: self.leader_rest_addr().await,
        })
    }

    /// Adds `node_id` at `raft_addr` as a learner and, if `catch_up_wait`
    /// is set, waits that long for it to catch up. Returns whether it did.
    pub async fn add_learner(
        &self,
        node_id: u64,
        raft_addr: &str,
        catch_up_wait: Option<Duration>,
    ) -> Result<bool, ClusterError> {
        self.require_leader().await?;
        if node_id == 0 {
            return Err(ClusterError::Invalid("node ids start at 1".into()));
        }
        if raft_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ClusterError::Invalid(format!(
                "raft_addr {raft_addr:?} is not a host:port socket address"
            )));
        }
        let members = self.members()?;
        if members.retired_node_ids.contains(&node_id) {
            return Err(ClusterError::Conflict(format!(
                "node id {node_id} was removed from this cluster and is never reused; \
                 start the new node with a new id"
            )));
        }
        if let Some(m) = members.members.iter().find(|m| m.node_id == node_id) {
            return Err(ClusterError::Conflict(format!(
                "node {node_id} is already a {} at {}",
                m.role, m.raft_addr
            )));
        }
        if let Some(m) = members.members.iter().find(|m| m.raft_addr == raft_addr) {
            return Err(ClusterError::Conflict(format!(
                "{raft_addr} is already the address of node {}",
                m.node_id
            )));
        }
        self.adopt(node_id, raft_addr).await?;
        let node = RaftNodeAddr {
            addr: raft_addr.to_string(),
        };
        // Not blocking inside openraft: the membership entry commits first,
        // then we wait (bounded) for replication to reach the learner.
        tokio::time::timeout(CHANGE_TIMEOUT, self.raft.add_learner(node_id, node, false))
            .await
            .map_err(|_| unavailable("adding the learner", "timed out"))?
            .map_err(|e| unavailable("adding the learner", e))?;
        let Some(wait) = catch_up_wait else {
            return Ok(false);
        };
        Ok(self
            .wait_caught_up(node_id, wait.min(MAX_CATCH_UP_WAIT))
            .await)
    }

    /// The new node must belong to this cluster before it takes replication.
    async fn adopt(&self, node_id: u64, raft_addr: &str) -> Result<(), ClusterError> {
        let cluster_id = self
            .identity
            .get()
            .ok_or_else(|| ClusterError::Unavailable("this node has no cluster yet".into()))?;
        let who = format!("node {node_id} at {raft_addr}");
        match self
            .peers
            .adopt(raft_addr, &cluster_id, node_id, ADOPT_TIMEOUT)
            .await
        {
            Ok(()) => Ok(()),
            Err(PeerErrorOr::Local(e)) => Err(e),
            Err(PeerErrorOr::Peer(PeerError::Refused(s)))
                if s.code() == tonic::Code::Unavailable =>
            {
                Err(unavailable(&who, s.message()))
            }
            Err(PeerErrorOr::Peer(PeerError::Refused(s))) => Err(ClusterError::Conflict(format!(
                "{who} refused to join: {}",
                s.message()
            ))),
            Err(PeerErrorOr::Peer(PeerError::NoAnswer)) => {
                Err(unavailable(&who, "did not answer (is it running?)"))
            }
        }
    }

    /// Waits until the leader has replicated everything to `node_id`.
    async fn wait_caught_up(&self, node_id: u64, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let m = self.metrics();
            let last = m.last_log_index;
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&node_id).cloned().flatten())
                .map(|l| l.index);
            if last.is_some() && matched >= last {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes learner `node_id` a voter (joint consensus).
    pub async fn promote(&self, node_id: u64) -> Result<(), ClusterError> {
        self.require_leader().await?;
        let members = self.members()?;
        match members.members.iter().find(|m| m.node_id == node_id) {
            None => {
                return Err(ClusterError::Invalid(format!(
                    "node {node_id} is not a member; add it as a learner first"
                )))
            }
            Some(m) if m.role == "voter" => {
                return Err(ClusterError::Conflict(format!(
                    "node {node_id} is already a voter"
                )))
            }
            Some(_) => {}
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])))
            .await
    }

    /// Removes `node_id` from the cluster (a voter leaves through joint
    /// consensus). Its id is retired.
    pub async fn remove(&self, node_id: u64) -> Result<(), ClusterError> {
        self.require_leader().await?;
        let members = self.members()?;
        let voters: Vec<u64> = members
            .members
            .iter()
            .filter(|m| m.role == "voter")
            .map(|m| m.node_id)
            .collect();
        match members.members.iter().find(|m| m.node_id == node_id) {
            None => Err(ClusterError::Invalid(format!(
                "node {node_id} is not a member"
            ))),
            Some(m) if m.role == "voter" => {
                if voters.len() == 1 {
                    return Err(ClusterError::Conflict(
                        "refusing to remove the last voter".into(),
                    ));
                }
                self.change(ChangeMembers::RemoveVoters(BTreeSet::from([node_id])))
                    .await
            }
            Some(_) => {
                self.change(ChangeMembers::RemoveNodes(BTreeSet::from([node_id])))
                    .await
            }
        }
    }

    async fn change(&self, change: ChangeMembers<u64, RaftNodeAddr>) -> Result<(), ClusterError> {
        let what = change.to_string();
        let m = self.metrics();
        let configs = m.membership_config.membership().get_joint_config();
        if leader_is_leaving(configs, self.node_id()) {
            return Err(unavailable(
                &format!("membership change {what}"),
                "this leader is not a voter of the configuration the cluster is moving to and \
                 steps down once that commits; retry, and the next leader takes the change",
            ));
        }
        tokio::time::timeout(CHANGE_TIMEOUT, self.raft.change_membership(change, false))
            .await
            .map_err(|_| unavailable(&format!("membership change {what}"), "timed out"))?
            .map_err(|e| unavailable(&format!("membership change {what}"), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod leaving_tests {
    use super::*;

    #[test]
    fn a_leader_outside_the_newest_voter_set_is_leaving() {
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<u64>>();
        assert!(!leader_is_leaving(&[set(&[1, 2, 3])], 1));
        // Joint: old {3,4,5}, new {3,4}; leader 5 is leaving, 3 is not.
        assert!(leader_is_leaving(&[set(&[3, 4, 5]), set(&[3, 4])], 5));
        assert!(!leader_is_leaving(&[set(&[3, 4, 5]), set(&[3, 4])], 3));
        // Uniform but without the leader (removed, not yet stepped down).
        assert!(leader_is_leaving(&[set(&[3, 4])], 5));
        assert!(!leader_is_leaving(&[], 5));
    }
}
