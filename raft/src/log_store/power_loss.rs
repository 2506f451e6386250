//! Simulated power loss for the fault harness (`LogFaults::simulate_power_loss`).
//!
//! Killing a process loses nothing it wrote: the kernel still holds the dirty
//! pages and writes them out later. A power cut loses every byte that was not
//! fsynced. To let a SIGKILL stand in for a power cut, the writer records, after
//! every fsync it really performs, how long each segment is known to be on disk;
//! on the next open every segment is cut back to that length, so whatever was
//! written but never fsynced is gone, exactly as after a power cut.
//!
//! The record itself is not fsynced: it only has to survive a kill, which it
//! does for the same reason. The vote and purge point need no record: they are
//! always written with fsync (or, under the vote mutation, not at all).
//!
//! What this does not cover: files of other components (the state machine's
//! storage engine keeps its un-fsynced writes across the simulated cut).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::log_store::prealloc::written_len;
use crate::log_store::recovery::list_segments;

pub(crate) const RECORD_FILE: &str = "power-loss-synced.json";

/// Fsynced length of every segment, as the writer last made it durable.
pub(crate) struct SyncedLengths {
    dir: PathBuf,
    lengths: BTreeMap<u64, u64>,
}

impl SyncedLengths {
    /// Starts from the segments as they are after recovery: all of it was
    /// either fsynced before or cut back by [`drop_unsynced`].
    pub fn new(dir: &Path, segments: &BTreeMap<u64, u64>) -> io::Result<Self> {
        let s = SyncedLengths {
            dir: dir.to_path_buf(),
            lengths: segments.clone(),
        };
        s.save()?;
        Ok(s)
    }

    pub fn set(&mut self, segment_first: u64, synced_len: u64) -> io::Result<()> {
        self.lengths.insert(segment_first, synced_len);
        self.save()
    }

    pub fn get(&self, segment_first: u64) -> Option<u64> {
        self.lengths.get(&segment_first).copied()
    }

    pub fn remove(&mut self, segment_first: u64) -> io::Result<()> {
        self.lengths.remove(&segment_first);
        self.save()
    }

    fn save(&self) -> io::Result<()> {
        let json = serde_json::to_vec(&self.lengths).map_err(io::Error::other)?;
        let tmp = self.dir.join(format!("{RECORD_FILE}.tmp"));
        fs::write(&tmp, json)?;
        fs::rename(tmp, self.dir.join(RECORD_FILE))
    }
}

/// Cuts every segment back to its last fsynced length. A segment missing from
/// the record was created after it was last saved and holds nothing durable.
/// Returns the bytes dropped.
pub(crate) fn drop_unsynced(dir: &Path) -> io::Result<u64> {
    let record = match fs::read(dir.join(RECORD_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let lengths: BTreeMap<u64, u64> = serde_json::from_slice(&record).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", dir.join(RECORD_FILE).display()),
        )
    })?;
    let mut dropped = 0;
    let segments = list_segments(dir)?;
    let lowest = segments.keys().next().copied();
    for (first, path) in segments {
        let synced = lengths.get(&first).copied().unwrap_or(0);
        if synced == 0 && Some(first) != lowest {
            // Created after the last durable point: as if never created.
            dropped += written_len(&fs::read(&path)?) as u64;
            fs::remove_file(&path)?;
            tracing::warn!(segment = %path.display(), "simulated power loss: dropped a segment that was never fsynced");
            continue;
        }
        let len = fs::metadata(&path)?.len();
        if len > synced {
            // Preallocated zeros past the written data are not data lost.
            let written = written_len(&fs::read(&path)?) as u64;
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(synced)?;
            if written <= synced {
                continue;
            }
            dropped += written - synced;
            tracing::warn!(
                segment = %path.display(),
                from_bytes = written,
                to_bytes = synced,
                "simulated power loss: dropped bytes that were never fsynced"
            );
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_segments_back_to_their_synced_length() {
        let dir = tempfile::tempdir().unwrap();
        let seg = crate::log_store::recovery::segment_path(dir.path(), 1);
        fs::write(&seg, vec![7u8; 100]).unwrap();
        let mut synced = SyncedLengths::new(dir.path(), &BTreeMap::from([(1, 0)])).unwrap();
        synced.set(1, 60).unwrap();
        let later = crate::log_store::recovery::segment_path(dir.path(), 9);
        fs::write(&later, vec![1u8; 10]).unwrap();

        assert_eq!(drop_unsynced(dir.path()).unwrap(), 40 + 10);
        assert_eq!(fs::metadata(&seg).unwrap().len(), 60);
        assert!(!later.exists(), "a never-synced later segment is gone");
        assert_eq!(drop_unsynced(dir.path()).unwrap(), 0, "idempotent");
    }

    #[test]
    fn no_record_means_nothing_to_drop() {
        let dir = tempfile::tempdir().unwrap();
        let seg = crate::log_store::recovery::segment_path(dir.path(), 1);
        fs::write(&seg, vec![7u8; 100]).unwrap();
        assert_eq!(drop_unsynced(dir.path()).unwrap(), 0);
        assert_eq!(fs::metadata(&seg).unwrap().len(), 100);
    }
}
