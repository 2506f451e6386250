//! Keeping the engine healthy between applies, and bringing stores written
//! by older versions up to date.
//!
//! - [`HotStore::maintain`] (called periodically by the node) syncs the
//!   journal and flushes small memtables so journals do not pile up.
//! - The trace-mark backfill gives every stored trace its `trace_marks`
//!   entry, once, in a store (or snapshot) written before marks existed;
//!   the blob-reference backfill (`retention.rs`) does the same for
//!   `blob_refs`.

use std::fs;
use std::io;
use std::path::PathBuf;

use fjall::AbstractTree;

use super::keys::META_TRACE_MARKS_COMPLETE;
use super::keyspaces::MEMTABLE_BYTES;
use super::retention::META_BLOB_REFS_COMPLETE;
use super::{HotStore, StoreError, StoreResult, KEYSPACES};

/// Journal files beyond which the small keyspaces are flushed (see [`HotStore::maintain`]).
const MAX_PINNED_JOURNALS: usize = 2;
/// Marks written per batch while backfilling them on open.
const TRACE_MARK_BACKFILL_BATCH: usize = 10_000;

impl HotStore {
    /// Syncs the journal written so far (see `storage_maintenance` in node.rs
    /// for why), and flushes the small keyspaces once journals pile up: they
    /// rarely fill a memtable, so they would pin every journal file until
    /// fjall's journal limit forces all keyspaces to flush at once, which
    /// halts writes while the flushes queue up. Flushing a small memtable is
    /// cheap.
    ///
    /// Log and metric keyspaces are small or large depending on the
    /// workload, so they are flushed only while their memtable is well
    /// below the size at which it would flush by itself.
    pub fn maintain(&self) -> StoreResult<()> {
        self.sync_active_journal()?;
        if self.db.journal_count() > MAX_PINNED_JOURNALS {
            for ks in self.keyspaces.small() {
                ks.rotate_memtable()?;
            }
            for ks in self.keyspaces.workload_sized() {
                let active = ks.tree.active_memtable();
                if !active.is_empty() && active.size() < MEMTABLE_BYTES / 4 {
                    ks.rotate_memtable()?;
                }
            }
        }
        Ok(())
    }

    /// Fsyncs the newest journal file through a handle of our own.
    ///
    /// fjall's `persist` fsyncs while holding the journal lock, and every
    /// write batch (so every apply) waits for that lock; on a busy disk such
    /// an fsync can take hundreds of milliseconds. Syncing the same file
    /// from outside the lock writes its data back without blocking anyone,
    /// so the fsync fjall still does under the lock when it flushes a
    /// memtable finds little left to write. Durability does not depend on
    /// this: the Raft log is the durable copy of everything applied.
    fn sync_active_journal(&self) -> StoreResult<()> {
        let mut newest: Option<(u64, PathBuf)> = None;
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jnl"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                if newest.as_ref().is_none_or(|(best, _)| id > *best) {
                    newest = Some((id, path));
                }
            }
        }
        if let Some((_, path)) = newest {
            match fs::File::open(&path) {
                Ok(f) => f.sync_data()?,
                // Rotated and removed since the listing: nothing to sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The storage engine's flush and compaction backlog, for diagnostics.
    pub fn backlog(&self) -> String {
        let per_keyspace: Vec<String> = KEYSPACES
            .iter()
            .zip(self.keyspaces.in_snapshot_order())
            .map(|(name, ks)| {
                format!(
                    "{name}:sealed={},tables={}",
                    ks.sealed_memtable_count(),
                    ks.table_count()
                )
            })
            .collect();
        format!(
            "journals={} {}",
            self.db.journal_count(),
            per_keyspace.join(" ")
        )
    }

    /// Makes the next [`HotStore::backfill_trace_marks`] run in full (before
    /// a snapshot is imported into this store).
    pub(crate) fn forget_trace_marks_complete(&self) -> StoreResult<()> {
        self.keyspaces.meta.remove(META_TRACE_MARKS_COMPLETE)?;
        self.keyspaces.meta.remove(META_BLOB_REFS_COMPLETE)?;
        self.keyspaces
            .meta
            .remove(super::rollups::META_ROLLUPS_COMPLETE)?;
        Ok(())
    }

    /// Gives every stored span's trace its mark, once, for a store written
    /// before marks existed (or restored from such a snapshot).
    pub(crate) fn backfill_trace_marks(&self) -> StoreResult<()> {
        let ks = &self.keyspaces;
        if ks.meta.get(META_TRACE_MARKS_COMPLETE)?.is_some() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        let mut staged = 0usize;
        let mut last: Option<[u8; 16]> = None;
        for key in ks.spans.iter().map(|kv| kv.key()) {
            let key = key?;
            let trace: [u8; 16] = key[..16]
                .try_into()
                .map_err(|_| StoreError::Corrupt("span key".into()))?;
            if last == Some(trace) {
                continue; // keys are sorted: a trace's spans are adjacent
            }
            last = Some(trace);
            batch.insert(&ks.trace_marks, trace.to_vec(), b"".to_vec());
            staged += 1;
            if staged == TRACE_MARK_BACKFILL_BATCH {
                batch.commit()?;
                batch = self.db.batch();
                staged = 0;
            }
        }
        // Only after every mark: an interrupted backfill starts over.
        batch.insert(&ks.meta, META_TRACE_MARKS_COMPLETE.to_vec(), b"".to_vec());
        batch.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        apply_spans, as_before_trace_marks, only_service_stats, test_span,
    };
    use super::*;

    #[test]
    fn a_snapshot_without_trace_marks_gets_them_on_import() {
        let dir = tempfile::tempdir().unwrap();
        let old = HotStore::open(&dir.path().join("old"), 1, 1 << 20).unwrap();
        apply_spans(&old, 1, vec![test_span(9, 1, 100)]);
        as_before_trace_marks(&old, [9; 16]);
        let path = dir.path().join("old.snap");
        let meta = tael_consensus::SnapshotMeta::default();
        crate::state::snapshot::export(&old, &old.read_view(), &meta, &path).unwrap();

        let new = HotStore::open(&dir.path().join("new"), 1, 1 << 20).unwrap();
        crate::state::snapshot::import(&path, &new).unwrap();
        assert!(new.keyspaces.trace_marks.get([9u8; 16]).unwrap().is_some());
        apply_spans(&new, 2, vec![test_span(9, 1, 900)]);
        assert_eq!(
            only_service_stats(&new).span_count,
            1,
            "replaced, not counted twice"
        );
    }

    #[test]
    fn a_store_without_trace_marks_gets_them_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
            apply_spans(&store, 1, vec![test_span(7, 1, 100)]);
            as_before_trace_marks(&store, [7; 16]);
        }
        let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
        assert!(store
            .keyspaces
            .trace_marks
            .get([7u8; 16])
            .unwrap()
            .is_some());
        apply_spans(&store, 2, vec![test_span(7, 1, 900)]);
        let stats = only_service_stats(&store);
        assert_eq!(stats.span_count, 1, "replaced, not counted twice");
        assert_eq!(
            store.span_digests(0, u64::MAX, None, 100).unwrap().0.len(),
            1
        );
    }

    #[test]
    fn maintain_syncs_and_flushes_without_losing_data() {
        let (_dir, store) = super::super::test_support::open_store();
        for i in 1..=5 {
            apply_spans(&store, i, vec![test_span(i as u8, 1, 100 * i)]);
            store.maintain().unwrap();
        }
        assert_eq!(only_service_stats(&store).span_count, 5);
        assert!(store.backlog().starts_with("journals="));
        assert!(store.backlog().contains("trace_marks:sealed="));
    }
}
