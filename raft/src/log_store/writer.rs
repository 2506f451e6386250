//! The single log writer thread: every write to the log directory happens here,
//! in the order openraft issued it.
//!
//! Consecutive appends are group-committed: their frames are written with one
//! `write` and made durable with one `fdatasync`, and only then are their
//! callbacks fired. Any other command (vote, truncate, purge) first makes every
//! earlier append durable, so a vote is never on disk ahead of log entries that
//! were appended before it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::IOFlushed;
use tokio::sync::{mpsc, oneshot};

use crate::log_store::index::Loc;
use crate::log_store::meta_file;
use crate::log_store::power_loss::SyncedLengths;
use crate::log_store::prealloc::Spares;
use crate::log_store::recovery::segment_path;
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
    Purge {
        upto: LogId,
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
}

/// Frames written but not yet fsynced, with the callbacks waiting for them.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    locs: Vec<(LogId, Loc)>,
    callbacks: Vec<IOFlushed<TypeConfig>>,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        mut segments: BTreeMap<u64, u64>,
        first_index_if_empty: u64,
        segment_max_bytes: u64,
        max_write_batch_bytes: usize,
    ) -> io::Result<Self> {
        let spares = Spares::start(&shared.dir, segment_max_bytes)?;
        if segments.is_empty() {
            create_segment(&shared, first_index_if_empty, &spares)?;
            segments.insert(first_index_if_empty, 0);
        }
        let (&active_first, &len) = segments.iter().next_back().unwrap();
        let active = OpenOptions::new()
            .write(true)
            .open(segment_path(&shared.dir, active_first))?;
        let active_capacity = active.metadata()?.len();
        debug_assert!(
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
            self.process(batch);
            let bytes = self.segments.values().sum();
            self.shared
                .disk_bytes
                .store(bytes, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::debug!("log writer stopped");
    }

    fn process(&mut self, batch: Vec<Command>) {
        let mut pending = Pending::default();
        for cmd in batch {
            match cmd {
                Command::Append { frames, callback } => {
                    for (log_id, frame) in frames {
                        if let Err(e) = self.stage(&mut pending, log_id, &frame) {
                            self.fail(&e);
                        }
                    }
                    pending.callbacks.push(callback);
                }
                Command::SaveVote { vote, done } => {
                    self.flush(&mut pending);
                    let _ = done.send(self.guarded(|w| w.save_vote(&vote)));
                }
                Command::TruncateAfter { keep_upto, done } => {
                    self.flush(&mut pending);
                    let _ = done.send(self.guarded(|w| w.truncate_after(keep_upto)));
                }
                Command::Purge { upto, done } => {
                    self.flush(&mut pending);
                    let _ = done.send(self.guarded(|w| w.purge(upto)));
                }
            }
        }
        self.flush(&mut pending);
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
        let end = used + frame.len() as u64;
        let full = end > self.segment_max_bytes;
        let grows_file = end > self.active_capacity;
        if used > 0 && (full || grows_file && self.spares.is_ready()) {
            self.flush(pending);
            self.rotate(log_id.index)?;
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

    /// Writes and fsyncs everything pending, then fires the callbacks.
    fn flush(&mut self, pending: &mut Pending) {
        if pending.callbacks.is_empty() && pending.buf.is_empty() {
            return;
        }
        let result = self.guarded(|w| w.write_durable(&pending.buf));
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

    fn write_durable(&mut self, buf: &[u8]) -> io::Result<()> {
        let at = self.active_len();
        if !buf.is_empty() {
            self.active.write_all_at(buf, at)?;
        }
        let started = Instant::now();
        let new_len = at + buf.len() as u64;
        if !self.shared.fault.skip_fsync() {
            self.active.sync_data()?;
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

    fn rotate(&mut self, first_index: u64) -> io::Result<()> {
        debug_assert!(
            !self.segments.contains_key(&first_index) || self.segments[&first_index] == 0
        );
        let (file, capacity) = create_segment(&self.shared, first_index, &self.spares)?;
        if let Some(synced) = &mut self.synced {
            synced.set(first_index, 0)?;
        }
        self.segments.insert(first_index, 0);
        self.active = file;
        self.active_first = first_index;
        self.active_capacity = capacity;
        Ok(())
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
                    .open(segment_path(&self.shared.dir, cut.segment))?;
                self.active_first = cut.segment;
            }
            // Shrinking the file (not zeroing the cut frames) makes the cut
            // durable in one step; the segment grows again from here.
            self.active.set_len(cut.offset)?;
            self.active.sync_all()?;
            self.active_capacity = cut.offset;
            if let Some(synced) = &mut self.synced {
                let was = synced.get(cut.segment).unwrap_or(0);
                synced.set(cut.segment, was.min(cut.offset))?;
            }
            self.segments.insert(cut.segment, cut.offset);
            meta_file::sync_dir(&self.shared.dir)?;
        }
        self.shared
            .index
            .lock()
            .unwrap()
            .truncate_after(keep_upto.map(|l| l.index));
        Ok(())
    }

    /// Records the purge point durably, then deletes whole segments behind it.
    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        meta_file::write_atomic(&self.shared.dir, PURGED_FILE, &Some(upto))?;
        let log_empty = {
            let mut index = self.shared.index.lock().unwrap();
            index.purge(upto);
            index.len() == 0
        };
        if log_empty && self.active_len() > 0 {
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
        fs::remove_file(segment_path(&self.shared.dir, first))?;
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
