//! The openraft type configuration shared by every tael-raft node.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Tags below this value are reserved for consensus-internal entries
/// (blank, membership); application tags start here.
pub const FIRST_APP_TAG: u8 = 16;

/// Length of the idempotency key every application record carries.
pub const BATCH_KEY_LEN: usize = 16;

/// One application write: what the state machine applies for one log entry.
///
/// `batch_key` identifies the batch across client retries and re-proposals, so
/// the state machine can make a second apply of the same batch a no-op.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub tag: u8,
    pub batch_key: [u8; BATCH_KEY_LEN],
    pub payload: Vec<u8>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("tag", &self.tag)
            .field("batch_key", &hex(&self.batch_key))
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record(tag={}, key={}, {} bytes)",
            self.tag,
            hex(&self.batch_key),
            self.payload.len()
        )
    }
}

/// What applying a record returned, opaque to the consensus layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied(pub Vec<u8>);

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

openraft::declare_raft_types!(
    /// tael-raft's Raft type configuration: u64 node ids, `BasicNode { addr }`
    /// holding the node-to-node address, and [`Record`] as application data.
    pub TypeConfig:
        D = Record,
        R = Applied,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, u64>;
pub type LogId = openraft::LogId<LeaderId>;
pub type Vote = openraft::impls::Vote<LeaderId>;
pub type Entry = openraft::Entry<LeaderId, openraft::EntryPayload<Record, u64, Node>>;
pub type EntryPayload = openraft::EntryPayload<Record, u64, Node>;
pub type Membership = openraft::Membership<NodeId, Node>;
pub type StoredMembership = openraft::StoredMembership<LeaderId, NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<LeaderId, NodeId, Node>;
pub type Snapshot = openraft::Snapshot<LeaderId, NodeId, Node, crate::SnapshotFile>;
pub type Raft<SM> = openraft::Raft<TypeConfig, SM>;
