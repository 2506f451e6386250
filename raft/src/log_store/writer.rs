//! The single log writer thread: every write to the log directory happens here,
//! in the order openraft issued it.
//!
//! Consecutive appends are group-committed: their frames are written as one
//! batch (see `batch`) with one `write` and made durable with one
//! `fdatasync`, and only then are their callbacks fired. Any other command
//! (vote, truncate, purge) first makes every earlier append durable, so a
//! vote is never on disk ahead of log entries that were appended before it.
//!
//! Each batch header records how much of the segment was fsynced before it;
//! when the queue runs empty the writer also leaves an empty header after the
//! data (no fsync), which proves the last batch fsynced. Recovery uses these
//! marks to tell a torn write from damage.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::IOFlushed;
use tokio::sync::{mpsc, oneshot};

use crate::log_store::batch::{BatchHeader, BATCH_HEADER_BYTES};
use crate::log_store::index::Loc;
use crate::log_store::meta_file;
use crate::log_store::power_loss::SyncedLengths;
use crate::log_store::prealloc::Spares;
use crate::log_store::recovery::{legacy_segment_path, segment_path};
use crate::log_store::Shared;
use crate::types::{LogId, TypeConfig, Vote};

pub const VOTE_FILE: &str = "vote";
pub const PURGED_FILE: &str = "purged";

pub enum Command {
    Append {
        frames: Vec<(LogId, Arc<Vec<u8>>)>,
        callback: IOFlushed<TypeConfig>,
    },
    SaveVote {
        vote: Vote,
        done: oneshot::Sender<io::Result<()>>,
    },
    TruncateAfter {
        keep_upto: Option<LogId>,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Nobody waits for a purge (see `LogStore::purge`): `done`'s receiver
    /// may be gone.
    Purge {
        upto: LogId,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Replies once every earlier command is done and durable.
    Barrier {
        done: oneshot::Sender<io::Result<()>>,
    },
}

impl Command {
    fn bytes(&self) -> usize {
        match self {
            Command::Append { frames, .. } => frames.iter().map(|(_, f)| f.len()).sum(),
            _ => 0,
        }
    }
}

pub struct Writer {
    shared: Arc<Shared>,
    /// Segment first index → length in bytes. The last one is the active segment.
    segments: BTreeMap<u64, u64>,
    active: File,
    active_first: u64,
    /// Physical length of the active segment file. Appends within it
    /// overwrite preallocated zeros; beyond it they grow the file.
    active_capacity: u64,
    spares: Spares,
    segment_max_bytes: u64,
    max_write_batch_bytes: usize,
    /// Set after an I/O error: the file state is unknown, so nothing more is written.
    failed: Option<String>,
    /// Only under simulated power loss: what each segment has made durable.
    synced: Option<SyncedLengths>,
    /// Bytes of the active segment really fsynced: the mark the next batch
    /// header carries. Behind `active_len` only when fsync is skipped.
    active_synced_len: u64,
    /// Where an idle mark (an empty batch header, not fsynced) lies after
    /// the active segment's data, if one was written since the last batch.
    idle_mark_at: Option<u64>,
    /// Segments of format 1, read but never written to.
    legacy: BTreeSet<u64>,
}

/// Frames written but not yet fsynced, with the callbacks waiting for them.
#[derive(Default)]
struct Pending {
    /// The batch: room for its header, then the frames.
    buf: Vec<u8>,
    locs: Vec<(LogId, Loc)>,
    callbacks: Vec<IOFlushed<TypeConfig>>,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        mut segments: BTreeMap<u64, u64>,
        mut legacy: BTreeSet<u64>,
        first_index_if_empty: u64,
        segment_max_bytes: u64,
        max_write_batch_bytes: usize,
    ) -> io::Result<Self> {
        let spares = Spares::start(&shared.dir, segment_max_bytes)?;
        // New batches never go into a format-1 segment: an empty one is
        // replaced, a written one is closed and a new segment started.
        if let Some((&last, &len)) = segments.iter().next_back() {
            if legacy.contains(&last) && len == 0 {
                segments.remove(&last);
                legacy.remove(&last);
                shared.files.lock().unwrap().remove(&last);
                fs::remove_file(legacy_segment_path(&shared.dir, last))?;
                meta_file::sync_dir(&shared.dir)?;
            }
        }
        let start_new = match segments.keys().next_back() {
            None => true,
            Some(last) => legacy.contains(last),
        };
        if start_new {
            create_segment(&shared, first_index_if_empty, &spares)?;
            segments.insert(first_index_if_empty, 0);
        }
        let (&active_first, &len) = segments.iter().next_back().unwrap();
        let active = OpenOptions::new()
            .write(true)
            .open(segment_path(&shared.dir, active_first))?;
        let active_capacity = active.metadata()?.len();
        assert!(
            active_capacity >= len,
            "recovery found the written data inside the active segment"
        );
        let synced = if shared.fault.simulate_power_loss() {
            Some(SyncedLengths::new(&shared.dir, &segments)?)
        } else {
            None
        };
        Ok(Writer {
            shared,
            synced,
            segments,
            active,
            active_first,
            active_capacity,
            spares,
            segment_max_bytes,
            max_write_batch_bytes,
            failed: None,
            // Recovery made the active segment's data durable.
            active_synced_len: len,
            idle_mark_at: None,
            legacy,
        })
    }

    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while bytes < self.max_write_batch_bytes {
                match rx.try_recv() {
                    Ok(cmd) => {
                        bytes += cmd.bytes();
                        batch.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            self.process(batch, &rx);
            let bytes = self.segments.values().sum();
            self.shared
                .disk_bytes
                .store(bytes, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::debug!("log writer stopped");
    }

    /// Runs one batch of commands. When it drains the queue, the idle mark
    /// is written before the last completion is signalled, so the writer
    /// touches no file after its last reply.
    fn process(&mut self, batch: Vec<Command>, rx: &mpsc::Receiver<Command>) {
        let mut pending = Pending::default();
        let count = batch.len();
        for (i, cmd) in batch.into_iter().enumerate() {
            let idle_after = i + 1 == count && rx.is_empty();
            let result = match cmd {
                Command::Append { frames, callback } => {
                    for (log_id, frame) in frames {
                        if let Err(e) = self.stage(&mut pending, log_id, &frame) {
                            self.fail(&e);
                        }
                    }
                    pending.callbacks.push(callback);
                    continue;
                }
                Command::SaveVote { vote, done } => {
                    self.flush(&mut pending, false);
                    (self.guarded(|w| w.save_vote(&vote)), done)
                }
                Command::TruncateAfter { keep_upto, done } => {
                    self.flush(&mut pending, false);
                    (self.guarded(|w| w.truncate_after(keep_upto)), done)
                }
                Command::Purge { upto, done } => {
                    self.flush(&mut pending, false);
                    (self.guarded(|w| w.purge(upto)), done)
                }
                Command::Barrier { done } => {
                    self.flush(&mut pending, false);
                    (self.guarded(|_| Ok(())), done)
                }
            };
            if idle_after {
                self.write_idle_mark();
            }
            let (result, done) = result;
            let _ = done.send(result);
        }
        let idle = rx.is_empty();
        self.flush(&mut pending, idle);
    }

    fn guarded(&mut self, op: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(io::Error::other(format!(
                "log writer stopped after an earlier I/O error: {why}"
            )));
        }
        let result = op(self);
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    fn fail(&mut self, e: &io::Error) {
        if self.failed.is_none() {
            tracing::error!(error = %e, "raft log I/O failed; the log accepts no more writes");
            self.failed = Some(e.to_string());
        }
    }

    fn active_len(&self) -> u64 {
        self.segments[&self.active_first]
    }

    /// Adds one frame to the pending write, rolling to a new segment when the
    /// active one is full, or when it has no preallocated room left and a
    /// spare is ready.
    fn stage(&mut self, pending: &mut Pending, log_id: LogId, frame: &[u8]) -> io::Result<()> {
        let used = self.active_len() + pending.buf.len() as u64;
        let header = if pending.buf.is_empty() {
            BATCH_HEADER_BYTES as u64
        } else {
            0
        };
        let end = used + header + frame.len() as u64;
        let full = end > self.segment_max_bytes;
        let grows_file = end > self.active_capacity;
        if used > 0 && (full || grows_file && self.spares.is_ready()) {
            self.flush(pending, false);
            self.rotate(log_id.index)?;
        }
        if pending.buf.is_empty() {
            // Filled in by `write_durable`, which knows the mark.
            pending.buf.resize(BATCH_HEADER_BYTES, 0);
        }
        let offset = self.active_len() + pending.buf.len() as u64;
        pending.locs.push((
            log_id,
            Loc {
                segment: self.active_first,
                offset,
                len: frame.len() as u32,
            },
        ));
        pending.buf.extend_from_slice(frame);
        Ok(())
    }

    /// Writes and fsyncs everything pending, then (after the idle mark, when
    /// `idle`) fires the callbacks.
    fn flush(&mut self, pending: &mut Pending, idle: bool) {
        if pending.callbacks.is_empty() && pending.buf.is_empty() {
            return;
        }
        let result = self.guarded(|w| w.write_durable(&mut pending.buf));
        if idle {
            self.write_idle_mark();
        }
        if result.is_ok() {
            let mut index = self.shared.index.lock().unwrap();
            for (log_id, loc) in pending.locs.drain(..) {
                index.set_loc(log_id, loc);
            }
            index.evict(self.shared.cache_max_bytes);
        }
        pending.buf.clear();
        pending.locs.clear();
        for cb in pending.callbacks.drain(..) {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            cb.io_completed(r);
        }
    }

    /// Writes the batch in `buf` (header room, then frames) and fsyncs it.
    fn write_durable(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let at = self.active_len();
        if !buf.is_empty() {
            let header = BatchHeader {
                segment_first: self.active_first,
                offset: at,
                synced_len: self.active_synced_len,
                frames_len: u32::try_from(buf.len() - BATCH_HEADER_BYTES)
                    .map_err(|_| io::Error::other("a write batch exceeds 4 GiB"))?,
            };
            buf[..BATCH_HEADER_BYTES].copy_from_slice(&header.encode());
            // Overwrites an idle mark at `at`, if there is one.
            self.active.write_all_at(buf, at)?;
            self.idle_mark_at = None;
        }
        let started = Instant::now();
        let new_len = at + buf.len() as u64;
        if !self.shared.fault.skip_fsync() {
            self.active.sync_data()?;
            self.active_synced_len = new_len;
            if let Some(synced) = &mut self.synced {
                synced.set(self.active_first, new_len)?;
            }
        }
        self.shared.stats.record_fsync(started.elapsed(), buf.len());
        *self.segments.get_mut(&self.active_first).unwrap() = new_len;
        self.active_capacity = self.active_capacity.max(new_len);
        if new_len >= PREPARE_SPARE_AFTER_BYTES.min(self.segment_max_bytes / 2) {
            // The log is in use: have the next segment ready before this one
            // fills (or, if this one grows, to move off it soon).
            self.spares.request();
        }
        Ok(())
    }

    /// Leaves an empty batch header after the active segment's data, without
    /// an fsync: it proves the data before it was fsynced (see `batch`). The
    /// next batch overwrites it.
    fn write_idle_mark(&mut self) {
        let at = self.active_len();
        if self.failed.is_some() || self.active_synced_len == 0 || self.idle_mark_at == Some(at) {
            return;
        }
        let mark = BatchHeader {
            segment_first: self.active_first,
            offset: at,
            synced_len: self.active_synced_len,
            frames_len: 0,
        };
        match self.active.write_all_at(&mark.encode(), at) {
            Ok(()) => self.idle_mark_at = Some(at),
            Err(e) => self.fail(&e),
        }
    }

    fn rotate(&mut self, first_index: u64) -> io::Result<()> {
        debug_assert!(
            !self.segments.contains_key(&first_index) || self.segments[&first_index] == 0
        );
        if self.idle_mark_at.take().is_some() {
            // A closed segment must hold nothing unsynced: recovery takes
            // any damage in it for corruption.
            self.active.sync_data()?;
        }
        let (file, capacity) = create_segment(&self.shared, first_index, &self.spares)?;
        if let Some(synced) = &mut self.synced {
            synced.set(first_index, 0)?;
        }
        self.segments.insert(first_index, 0);
        self.active = file;
        self.active_first = first_index;
        self.active_capacity = capacity;
        self.active_synced_len = 0;
        Ok(())
    }

    fn path(&self, first: u64) -> std::path::PathBuf {
        if self.legacy.contains(&first) {
            legacy_segment_path(&self.shared.dir, first)
        } else {
            segment_path(&self.shared.dir, first)
        }
    }

    fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        if self.shared.fault.vote_in_memory_only() {
            *self.shared.vote.lock().unwrap() = Some(*vote);
            return Ok(());
        }
        meta_file::write_atomic(&self.shared.dir, VOTE_FILE, vote)?;
        *self.shared.vote.lock().unwrap() = Some(*vote);
        Ok(())
    }

    /// Removes entries after `keep_upto`, newest segment first, so a crash part
    /// way leaves a prefix of the log and never a hole.
    fn truncate_after(&mut self, keep_upto: Option<LogId>) -> io::Result<()> {
        let first_removed = keep_upto.map_or(0, |l| l.index + 1);
        let cut = {
            let index = self.shared.index.lock().unwrap();
            // None: nothing after keep_upto.
            index.get(first_removed).map(|slot| {
                slot.loc
                    .expect("every earlier append was flushed before a truncate")
            })
        };
        if let Some(cut) = cut {
            let later: Vec<u64> = self
                .segments
                .range(cut.segment + 1..)
                .map(|(&k, _)| k)
                .rev()
                .collect();
            for seg in later {
                self.remove_segment(seg)?;
            }
            if self.active_first != cut.segment {
                self.active = OpenOptions::new()
                    .write(true)
                    .open(self.path(cut.segment))?;
                self.active_first = cut.segment;
            }
            // A segment is named by its first entry: when that one goes, the
            // segment is emptied whole (its first batch header too), so a
            // later rotation may recreate it under the same name.
            let keep_bytes = if cut.segment == first_removed {
                0
            } else {
                cut.offset
            };
            // Shrinking the file (not zeroing the cut frames) makes the cut
            // durable in one step; the segment grows again from here, after
            // the seal that ends the cut batch.
            self.active.set_len(keep_bytes)?;
            self.active.sync_all()?;
            self.active_capacity = keep_bytes;
            self.active_synced_len = keep_bytes;
            self.idle_mark_at = None;
            if let Some(synced) = &mut self.synced {
                let was = synced.get(cut.segment).unwrap_or(0);
                synced.set(cut.segment, was.min(keep_bytes))?;
            }
            self.segments.insert(cut.segment, keep_bytes);
            meta_file::sync_dir(&self.shared.dir)?;
            if keep_bytes > 0 && !self.legacy.contains(&cut.segment) {
                self.seal_cut(keep_bytes)?;
            }
            if self.legacy.contains(&cut.segment) {
                // Appends go on in a new segment of the current format.
                if keep_bytes == 0 {
                    self.remove_segment(cut.segment)?;
                }
                self.rotate(first_removed)?;
            }
        }
        self.shared
            .index
            .lock()
            .unwrap()
            .truncate_after(keep_upto.map(|l| l.index));
        Ok(())
    }

    /// Ends the batch a truncation cut short with a durable, empty batch
    /// header at the cut. Without it the next batch would start inside the
    /// cut one, and a power cut tearing that next batch would look like a
    /// torn tail of the cut batch, whose kept frames are fsynced. One fsync,
    /// on truncation only. Crashing before it leaves the file ending at the
    /// cut (or zeros after it), which recovery reads as the end of the data.
    fn seal_cut(&mut self, at: u64) -> io::Result<()> {
        let seal = BatchHeader {
            segment_first: self.active_first,
            offset: at,
            synced_len: at,
            frames_len: 0,
        };
        self.active.write_all_at(&seal.encode(), at)?;
        self.active.sync_data()?;
        let len = at + BATCH_HEADER_BYTES as u64;
        self.segments.insert(self.active_first, len);
        self.active_capacity = len;
        self.active_synced_len = len;
        if let Some(synced) = &mut self.synced {
            synced.set(self.active_first, len)?;
        }
        Ok(())
    }

    /// Records the purge point durably, then deletes whole segments behind it.
    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        meta_file::write_atomic(&self.shared.dir, PURGED_FILE, &Some(upto))?;
        // The index was purged when the purge was queued (`LogStore::purge`),
        // and may already hold entries queued after it. Every entry queued
        // before it is written (flushed above), so the segments hold an entry
        // after `upto` exactly when the index knows where that entry is.
        let nothing_after_on_disk = {
            let index = self.shared.index.lock().unwrap();
            index
                .get(upto.index + 1)
                .is_none_or(|slot| slot.loc.is_none())
        };
        if nothing_after_on_disk && self.active_len() > 0 {
            // Everything in the active segment is purged: start a fresh one so
            // the old segments can all go.
            self.rotate(upto.index + 1)?;
        }
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        for pair in firsts.windows(2) {
            let (seg, next_first) = (pair[0], pair[1]);
            if next_first <= upto.index + 1 {
                self.remove_segment(seg)?;
            }
        }
        Ok(())
    }

    fn remove_segment(&mut self, first: u64) -> io::Result<()> {
        self.segments.remove(&first);
        if let Some(synced) = &mut self.synced {
            synced.remove(first)?;
        }
        self.shared.files.lock().unwrap().remove(&first);
        fs::remove_file(self.path(first))?;
        self.legacy.remove(&first);
        meta_file::sync_dir(&self.shared.dir)
    }
}

/// Once the active segment holds this much, a spare is prepared.
const PREPARE_SPARE_AFTER_BYTES: u64 = 1024 * 1024;

/// Creates the segment starting at `first_index` from the ready spare, or
/// empty when there is none. Returns it with its physical length.
fn create_segment(shared: &Shared, first_index: u64, spares: &Spares) -> io::Result<(File, u64)> {
    let path = segment_path(&shared.dir, first_index);
    let (file, capacity) = match spares.take_into(&path)? {
        Some(size) => (OpenOptions::new().write(true).open(&path)?, size),
        None => {
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)?;
            file.sync_all()?;
            (file, 0)
        }
    };
    meta_file::sync_dir(&shared.dir)?;
    shared
        .files
        .lock()
        .unwrap()
        .insert(first_index, Arc::new(File::open(&path)?));
    Ok((file, capacity))
}
