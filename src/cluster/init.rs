//! `tael-raft init`: a new cluster, exactly once, and retryable.
//!
//! Init asks every member about itself before anything is written: a member
//! that cannot be reached (still starting) makes init UNAVAILABLE, and the
//! caller retries; nothing was adopted, so the retry starts clean. If an
//! earlier init got further (some members adopted its cluster id, then one
//! failed or the coordinator crashed), a retry with the same member list
//! reuses that cluster id, so the members that adopted it are not stuck
//! with a cluster that never forms. Refused only when a member is in a
//! cluster whose Raft is initialized, or members hold different cluster ids.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tael_consensus::Node as RaftNodeAddr;
use tonic::Code;

use super::peers::{PeerError, PeerErrorOr};
use super::{Cluster, ClusterError};

const ADOPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one member said about itself.
struct MemberState {
    /// The cluster id it adopted, if any.
    cluster_id: Option<String>,
    initialized: bool,
}

impl Cluster {
    /// Joins every member to a cluster id, then initializes Raft with them.
    /// Refused if this node, or any member, is in an initialized cluster.
    pub async fn init(&self, members: BTreeMap<u64, String>) -> Result<String, ClusterError> {
        let me = self.settings.node_id;
        if !members.contains_key(&me) {
            return Err(ClusterError::Invalid(format!(
                "the member list must include this node ({me})"
            )));
        }
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Internal(e.to_string()))?;
        if initialized {
            return Err(ClusterError::Conflict("cluster already initialized".into()));
        }
        // Ask everyone first: nothing is adopted until every member answered.
        let mut states = BTreeMap::new();
        states.insert(
            me,
            MemberState {
                cluster_id: self.identity.get(),
                initialized: false,
            },
        );
        for (&id, addr) in members.iter().filter(|(id, _)| **id != me) {
            states.insert(id, self.probe_member(id, addr).await?);
        }
        let cluster_id = cluster_id_for(&states)?;
        self.identity
            .adopt(&cluster_id)
            .map_err(ClusterError::Conflict)?;
        for (&id, addr) in members.iter().filter(|(id, _)| **id != me) {
            self.adopt_member(id, addr, &cluster_id).await?;
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

    async fn probe_member(&self, id: u64, addr: &str) -> Result<MemberState, ClusterError> {
        match self.peers.init_probe(addr, id, ADOPT_TIMEOUT).await {
            Ok(r) => Ok(MemberState {
                cluster_id: (!r.cluster_id.is_empty()).then_some(r.cluster_id),
                initialized: r.initialized,
            }),
            Err(e) => Err(member_error(id, addr, e)),
        }
    }

    async fn adopt_member(
        &self,
        id: u64,
        addr: &str,
        cluster_id: &str,
    ) -> Result<(), ClusterError> {
        self.peers
            .adopt(addr, cluster_id, id, ADOPT_TIMEOUT)
            .await
            .map_err(|e| member_error(id, addr, e))
    }
}

/// The cluster id init gives every member: the one an earlier, unfinished
/// init of these members left behind, or a new one.
fn cluster_id_for(states: &BTreeMap<u64, MemberState>) -> Result<String, ClusterError> {
    if let Some((id, s)) = states.iter().find(|(_, s)| s.initialized) {
        return Err(ClusterError::Conflict(format!(
            "member {id} is already in initialized cluster {}",
            s.cluster_id.as_deref().unwrap_or("(unknown)")
        )));
    }
    let held: BTreeSet<&str> = states
        .values()
        .filter_map(|s| s.cluster_id.as_deref())
        .collect();
    match held.len() {
        0 => Ok(tael_consensus::hex(&rand::random::<[u8; 16]>())),
        1 => {
            let id = held.into_iter().next().unwrap().to_string();
            tracing::info!(cluster_id = %id, "completing an earlier, unfinished init");
            Ok(id)
        }
        _ => {
            let by_member: Vec<String> = states
                .iter()
                .map(|(id, s)| format!("{id}: {}", s.cluster_id.as_deref().unwrap_or("none")))
                .collect();
            Err(ClusterError::Conflict(format!(
                "members belong to different clusters ({}); an init with another member list ran before",
                by_member.join(", ")
            )))
        }
    }
}

/// A member's failure as the caller should see it: unreachable is
/// retryable (UNAVAILABLE), a member of another cluster is a conflict.
fn member_error(id: u64, addr: &str, e: PeerErrorOr) -> ClusterError {
    match e {
        PeerErrorOr::Local(e) => e,
        PeerErrorOr::Peer(PeerError::Refused(s)) => {
            let why = format!("member {id} at {addr}: {}", s.message());
            match s.code() {
                Code::FailedPrecondition => ClusterError::Conflict(why),
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => {
                    ClusterError::Unavailable(format!("{why} (is it running?)"))
                }
                _ => ClusterError::Invalid(why),
            }
        }
        PeerErrorOr::Peer(PeerError::NoAnswer) => {
            ClusterError::Unavailable(format!("member {id} at {addr} did not answer"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(cluster_id: Option<&str>, initialized: bool) -> MemberState {
        MemberState {
            cluster_id: cluster_id.map(str::to_string),
            initialized,
        }
    }

    #[test]
    fn a_half_done_init_is_completed_under_its_cluster_id() {
        let states = BTreeMap::from([
            (1, state(Some("abc"), false)),
            (2, state(Some("abc"), false)),
            (3, state(None, false)),
        ]);
        assert_eq!(cluster_id_for(&states).unwrap(), "abc");
        let fresh = BTreeMap::from([(1, state(None, false)), (2, state(None, false))]);
        assert_eq!(cluster_id_for(&fresh).unwrap().len(), 32);
    }

    #[test]
    fn initialized_or_disagreeing_members_are_refused() {
        let init = BTreeMap::from([(1, state(None, false)), (2, state(Some("x"), true))]);
        assert!(matches!(
            cluster_id_for(&init),
            Err(ClusterError::Conflict(m)) if m.contains("member 2")
        ));
        let split = BTreeMap::from([(1, state(Some("x"), false)), (2, state(Some("y"), false))]);
        assert!(matches!(
            cluster_id_for(&split),
            Err(ClusterError::Conflict(m)) if m.contains("different clusters")
        ));
    }
}
