//! Snapshot data as openraft sees it: a complete, fsynced file on local disk.
//!
//! The state machine writes it; the transport streams it to peers in bounded,
//! checksummed chunks; the receiver writes a new file and hands it to the
//! state machine to install. Its format belongs to the state machine.

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}
