//! Retention cuts and moves to the cold tier through the log (see
//! `crate::retention`, `crate::state::cold`): the leader proposes one, and
//! every replica applies it at the same index.

use super::status::ClusterStatus;
use super::{Cluster, ClusterError, READ_TIMEOUT};
use crate::payload;
use crate::retention::RetentionPolicy;
use crate::state::cold::{ColdMove, ColdUpload};

impl Cluster {
    /// Proposes a retention cut under `policy` and waits until this node
    /// applied it; returns its log index.
    pub async fn cut_retention(&self, policy: RetentionPolicy) -> Result<u64, ClusterError> {
        let index = self.propose(payload::retention_record(policy)).await?;
        self.raft
            .wait(Some(READ_TIMEOUT))
            .applied_index_at_least(Some(index), "retention cut")
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!("waiting to apply retention cut {index}: {e}"))
            })?;
        Ok(index)
    }

    /// Proposes a move to the cold tier and waits until this node applied
    /// it; returns its log index.
    pub async fn move_to_cold(&self, mv: ColdMove) -> Result<u64, ClusterError> {
        let index = self.propose(payload::cold_move_record(&mv)).await?;
        self.raft
            .wait(Some(READ_TIMEOUT))
            .applied_index_at_least(Some(index), "cold move")
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!("waiting to apply cold move {index}: {e}"))
            })?;
        Ok(index)
    }

    /// Proposes a move to the shared cold store whose object is already
    /// written, and waits until this node applied it; returns its index.
    pub async fn upload_to_cold(&self, up: &ColdUpload) -> Result<u64, ClusterError> {
        let index = self.propose(payload::cold_upload_record(up)).await?;
        self.raft
            .wait(Some(READ_TIMEOUT))
            .applied_index_at_least(Some(index), "cold upload")
            .await
            .map_err(|e| {
                ClusterError::Unavailable(format!("waiting to apply cold upload {index}: {e}"))
            })?;
        Ok(index)
    }
}

/// The members that hold back moves to the local cold tier: those that did
/// not answer, or do not apply moves (a node of an older version would
/// reject the move and keep the records in its hot tier only, while the
/// others' manifests name a file).
///
/// Each member writes its own copy of every file (the local cold store), so
/// they must also write the same bytes: a member whose file writer differs
/// (a rolling upgrade across a change of it) postpones moves too, as its
/// manifest would differ from the others' in each file's size.
pub fn cold_move_holdouts(status: &ClusterStatus) -> Vec<u64> {
    status.members_lacking(|s| {
        s.applies_cold_moves && s.cold_file_writer == crate::state::cold::FILE_WRITER_VERSION
    })
}

/// The members that hold back moves to the shared cold store: those that
/// did not answer, or do not apply them (a node of an older version would
/// reject them and keep the records hot while the others remove them).
pub fn cold_upload_holdouts(status: &ClusterStatus) -> Vec<u64> {
    status.members_lacking(|s| s.applies_cold_moves && s.applies_cold_uploads)
}

/// The members that hold back retention cuts: those that did not answer,
/// or do not apply cuts as this version encodes them (with a rollups
/// retention): a node of an older version would reject the cut, keep what
/// the others deleted, and differ from them from then on.
pub fn retention_holdouts(status: &ClusterStatus) -> Vec<u64> {
    status.members_lacking(|s| s.applies_retention_cuts && s.applies_rollup_retention)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::status::MemberStatus;
    use crate::state::cold::FILE_WRITER_VERSION;

    fn status_of(writers: &[u32]) -> ClusterStatus {
        ClusterStatus {
            cluster_id: Some("c".into()),
            node_id: 1,
            leader: Some(1),
            term: 1,
            voters: (1..=writers.len() as u64).collect(),
            learners: vec![],
            members: writers
                .iter()
                .enumerate()
                .map(|(i, &writer)| MemberStatus {
                    id: i as u64 + 1,
                    raft_addr: String::new(),
                    voter: true,
                    status: Some(tael_consensus::pb::NodeStatusResponse {
                        applies_cold_moves: true,
                        applies_cold_uploads: true,
                        applies_retention_cuts: true,
                        applies_rollup_retention: true,
                        cold_file_writer: writer,
                        ..Default::default()
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn local_moves_wait_for_every_member_to_write_the_same_files() {
        let v = FILE_WRITER_VERSION;
        assert!(cold_move_holdouts(&status_of(&[v, v, v])).is_empty());
        // A node of the version before (the field absent reads as 0), or
        // of a later writer: its copies would differ in their bytes.
        assert!(!cold_move_holdouts(&status_of(&[v, 0, v])).is_empty());
        assert!(!cold_move_holdouts(&status_of(&[v, v, v + 1])).is_empty());
        // The shared store's files are written once, by the leader.
        assert!(cold_upload_holdouts(&status_of(&[v, 0, v])).is_empty());
        // The leader's log names whom it waits for.
        assert_eq!(cold_move_holdouts(&status_of(&[v, 0, v, 7])), vec![2, 4]);
        let mut silent = status_of(&[v, v, v]);
        silent.members[2].status = None;
        assert_eq!(cold_move_holdouts(&silent), vec![3]);
        assert_eq!(retention_holdouts(&silent), vec![3]);
    }
}
