//! Start-up scan of the log segments, and the rule that tells a torn write
//! from damage.
//!
//! Every frame is read and checksummed. Where the walk stops on a bad record,
//! the batch headers (see `batch`) say how much of the segment had been
//! fsynced: the highest `synced_len` of any intact header, read past the
//! damage. Damage before that mark hit data that was fsynced and may have
//! been acknowledged: the node refuses to start, naming the file, offset and
//! entry, rather than vote or serve with a shorter log. Damage at or after
//! the mark, in the last segment, is a torn write (a crash during an append
//! that was never acknowledged): the batch it is in is cut off, never
//! anything before the mark. The pages of an unsynced batch may reach the disk
//! in any order, so intact frames after the damage are no evidence of
//! corruption; only a header's mark is. Earlier segments were fsynced whole
//! before the next one was started, so any damage in them is corruption.
//! Data that simply stops inside a batch (a truncation cut it there) is kept
//! and the batch sealed with an empty header, unless none of its frames
//! arrived.
//!
//! Segments may be preallocated: the written data is followed by zeros up to
//! the file's end. All-zero bytes where a record would start are the end of
//! the segment's data, not damage.
//!
//! Segments of format 1 (`seg-<n>.wal`, written before batch headers) are
//! still read; having no marks, any damage in them is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::frame::{self, FrameError, RecordIntegrity};
use crate::log_store::batch::{highest_mark_in, BatchHeader, BATCH_HEADER_BYTES};
use crate::log_store::index::{Loc, LogIndex, Slot};
use crate::log_store::prealloc::written_len;
use crate::types::LogId;

pub const SEGMENT_PREFIX: &str = "seg-";
/// Segment format 2: batches with sync marks.
pub const SEGMENT_SUFFIX: &str = ".v2.wal";
/// Segment format 1: bare frames. Read, never written.
pub const LEGACY_SEGMENT_SUFFIX: &str = ".wal";

/// Path of a (format 2) segment starting at `first_index`.
pub fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_index:020}{SEGMENT_SUFFIX}"))
}

pub fn legacy_segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!(
        "{SEGMENT_PREFIX}{first_index:020}{LEGACY_SEGMENT_SUFFIX}"
    ))
}

/// True for a segment of format 1.
pub fn is_legacy(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.ends_with(SEGMENT_SUFFIX))
}

/// Segment files in `dir`, of either format, ordered by the first index in
/// their name.
pub fn list_segments(dir: &Path) -> io::Result<BTreeMap<u64, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|n| n.strip_suffix(LEGACY_SEGMENT_SUFFIX))
        else {
            continue;
        };
        let num = num.strip_suffix(".v2").unwrap_or(num);
        let first: u64 = num.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected log file name {name}"),
            )
        })?;
        if let Some(other) = out.insert(first, entry.path()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "two log segments start at index {first}: {} and {name}",
                    other.display()
                ),
            ));
        }
    }
    Ok(out)
}

/// What the scan found.
pub struct Recovered {
    pub index: LogIndex,
    /// Segment first index → current length in bytes (after any tail repair).
    pub segments: BTreeMap<u64, u64>,
    /// Segment first index → its file.
    pub paths: BTreeMap<u64, PathBuf>,
    /// Bytes cut off a torn tail (0 when the log was clean).
    pub torn_tail_bytes: u64,
}

/// Why damage is not a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTorn {
    /// Batch headers prove the segment was fsynced up to this offset.
    SyncedThrough(u64),
    /// Not the last segment: it was fsynced whole before the next began.
    ClosedSegment,
    /// A format-1 segment has no sync marks to tell a torn write by.
    LegacyFormat,
    /// The record's checksum holds but its HMAC does not: a deliberate
    /// change, wherever it lies (a torn write cannot produce a valid checksum).
    Integrity,
}

/// Damage to log data that may have been acknowledged. Carried inside the
/// `io::Error` that `LogStore::open` returns (kind `InvalidData`).
#[derive(Debug)]
pub struct LogDamage {
    pub path: PathBuf,
    pub offset: u64,
    /// Index of the first entry that cannot be read.
    pub entry: u64,
    pub cause: String,
    pub not_torn: NotTorn,
}

impl fmt::Display for LogDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the raft log is damaged in {} at offset {} (entry {}): {}. {} \
             The node is refusing to start: it must not vote or serve with a shorter log than it \
             acknowledged. To recover, discard this node's log and rejoin it from its peers \
             (see docs/operations.md, \"Damage and recovery\").",
            self.path.display(),
            self.offset,
            self.entry,
            self.cause,
            self.reason_text()
        )
    }
}

impl std::error::Error for LogDamage {}

impl LogDamage {
    fn reason_text(&self) -> String {
        match self.not_torn {
            NotTorn::SyncedThrough(n) => format!(
                "The segment was fsynced through offset {n}, so this is damage, not a torn write."
            ),
            NotTorn::ClosedSegment => {
                "Only the last segment can end in an unsynced write.".to_string()
            }
            NotTorn::LegacyFormat => "The segment predates sync marks (format 1), so a torn \
                 write cannot be told from damage."
                .to_string(),
            NotTorn::Integrity => "Its checksum is intact, so this is a change made without the \
                 cluster secret (or by a node without --log-integrity hmac), not a torn write: \
                 treat it as a security event."
                .to_string(),
        }
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// Scans every segment, cuts a torn tail off the last one and makes the last
/// one durable (a killed process may have left written, unsynced frames that
/// this node is about to report as part of its log).
pub fn recover(
    dir: &Path,
    purged: Option<LogId>,
    integrity: &RecordIntegrity,
    faults: &super::LogFaults,
) -> io::Result<Recovered> {
    let paths = list_segments(dir)?;
    let mut index = LogIndex::new(purged);
    let mut segments = BTreeMap::new();
    let mut torn_tail_bytes = 0;
    let last_segment = paths.keys().next_back().copied();

    for (&first, path) in &paths {
        let buf = fs::read(path)?;
        let seg = Segment {
            path,
            first,
            buf: &buf,
            is_last: Some(first) == last_segment,
            integrity,
            cut_durable: faults.cut_durable_log(),
        };
        let scanned = if is_legacy(path) {
            seg.walk_legacy(&mut index)?
        } else {
            seg.walk(&mut index)?
        };
        if seg.is_last {
            torn_tail_bytes = scanned.torn_bytes;
            if scanned.torn_bytes == 0 && scanned.len > 0 {
                OpenOptions::new().write(true).open(path)?.sync_data()?;
            }
        }
        segments.insert(first, scanned.len);
    }
    Ok(Recovered {
        index,
        segments,
        paths,
        torn_tail_bytes,
    })
}

struct Segment<'a> {
    path: &'a Path,
    first: u64,
    buf: &'a [u8],
    is_last: bool,
    integrity: &'a RecordIntegrity,
    /// The `cut-durable-log` mutation: ignore the mark, cut like a torn tail.
    cut_durable: bool,
}

struct Scanned {
    /// Where the segment's data ends (after any cut).
    len: u64,
    torn_bytes: u64,
}

/// The batch the walk is in.
struct OpenBatch {
    start: usize,
    frames_end: usize,
    /// Offsets of the frames of this batch already added to the index.
    indexed: Vec<usize>,
    /// Frames of this batch read so far (also those behind the purge point).
    frames: usize,
}

impl Segment<'_> {
    /// Walks a format-2 segment: batch headers, each followed by its frames.
    fn walk(&self, index: &mut LogIndex) -> io::Result<Scanned> {
        let written = written_len(self.buf);
        let mut pos = 0usize;
        let mut mark = 0u64;
        let mut batch: Option<OpenBatch> = None;
        while pos < written {
            // A header where a frame could start ends the batch early: the
            // log was truncated there and written on.
            if let Some(h) = BatchHeader::parse_at(self.buf, pos, self.first) {
                mark = mark.max(h.synced_len);
                let frames_at = pos + BATCH_HEADER_BYTES;
                batch = Some(OpenBatch {
                    start: pos,
                    frames_end: frames_at + h.frames_len as usize,
                    indexed: Vec::new(),
                    frames: 0,
                });
                pos = frames_at;
                continue;
            }
            let cause = match batch.as_mut().filter(|b| pos < b.frames_end) {
                None => "no intact batch header where one must start".to_string(),
                Some(b) => match frame::decode_log_id(&self.buf[pos..], self.integrity) {
                    Ok((len, _)) if pos + len > b.frames_end => {
                        "a record runs past the end of its batch".to_string()
                    }
                    Ok((len, log_id)) => {
                        if self.index_frame(index, pos, len, log_id)? {
                            b.indexed.push(pos);
                        }
                        b.frames += 1;
                        pos += len;
                        continue;
                    }
                    Err(e @ FrameError::Integrity(_)) => {
                        return Err(self.damage(index, pos, e.to_string(), NotTorn::Integrity));
                    }
                    Err(e) => e.to_string(),
                },
            };
            let in_batch = batch.filter(|b| pos < b.frames_end);
            return self.torn_or_damaged(index, pos, cause, mark, in_batch);
        }
        // Data that stops inside a batch: the rest of the batch never reached
        // the disk, or a truncation cut the batch short and stopped before
        // sealing the cut (see `Writer::seal_cut`). A batch with none of its
        // frames goes; frames that did arrive stay, sealed.
        if let Some(b) = batch.filter(|b| pos < b.frames_end) {
            if b.frames == 0 {
                let cause = "a batch header without any of its records".to_string();
                return self.torn_or_damaged(index, pos, cause, mark, Some(b));
            }
            if self.is_last {
                return self.seal_at(pos);
            }
        }
        Ok(Scanned {
            len: pos as u64,
            torn_bytes: 0,
        })
    }

    /// Walks a format-1 segment: bare frames.
    fn walk_legacy(&self, index: &mut LogIndex) -> io::Result<Scanned> {
        let written = written_len(self.buf);
        let mut pos = 0usize;
        while pos < written {
            match frame::decode_log_id(&self.buf[pos..], self.integrity) {
                Ok((len, log_id)) => {
                    self.index_frame(index, pos, len, log_id)?;
                    pos += len;
                }
                Err(e) => {
                    return Err(self.damage(index, pos, e.to_string(), NotTorn::LegacyFormat))
                }
            }
        }
        Ok(Scanned {
            len: pos as u64,
            torn_bytes: 0,
        })
    }

    /// Adds a good frame to the index; false when it is behind the purge point.
    fn index_frame(
        &self,
        index: &mut LogIndex,
        offset: usize,
        len: usize,
        log_id: LogId,
    ) -> io::Result<bool> {
        accept(index, self.path, offset, log_id)?;
        if index.purged.is_some_and(|p| log_id.index <= p.index) {
            return Ok(false);
        }
        index.push(Slot {
            log_id,
            loc: Some(Loc {
                segment: self.first,
                offset: offset as u64,
                len: len as u32,
            }),
            frame: None,
        });
        Ok(true)
    }

    /// The walk stopped at `at`: refuse if that was fsynced, else cut the
    /// torn batch (`in_batch`, or the one that should have started at `at`).
    fn torn_or_damaged(
        &self,
        index: &mut LogIndex,
        at: usize,
        cause: String,
        mark_before: u64,
        in_batch: Option<OpenBatch>,
    ) -> io::Result<Scanned> {
        let written = written_len(self.buf);
        let mut synced = mark_before.max(highest_mark_in(self.buf, at + 1, written, self.first));
        if self.cut_durable && self.is_last {
            synced = 0; // the defect: no mark protects anything
        }
        if (at as u64) < synced {
            return Err(self.damage(index, at, cause, NotTorn::SyncedThrough(synced)));
        }
        if !self.is_last {
            return Err(self.damage(index, at, cause, NotTorn::ClosedSegment));
        }
        // The whole torn batch goes, but never a byte the marks prove synced.
        let cut = in_batch
            .as_ref()
            .map_or(at, |b| b.start)
            .max(synced as usize);
        let unindexed = in_batch.map_or(0, |b| b.indexed.iter().filter(|&&o| o >= cut).count());
        if unindexed > 0 {
            let keep_upto = (index.next_index() - unindexed as u64).checked_sub(1);
            index.truncate_after(keep_upto);
        }
        let cut_bytes = written.saturating_sub(cut) as u64;
        tracing::warn!(
            segment = %self.path.display(),
            offset = at,
            cut_at = cut,
            synced_through = synced,
            cut_bytes,
            cause = %cause,
            "torn tail in the raft log: cutting off a partial write made after the last fsync"
        );
        let f = OpenOptions::new().write(true).open(self.path)?;
        f.set_len(cut as u64)?;
        f.sync_all()?;
        Ok(Scanned {
            len: cut as u64,
            torn_bytes: cut_bytes,
        })
    }

    /// Ends the batch the data stops in with a durable, empty batch header
    /// at `at`, so the next batch does not start inside it: a power cut
    /// tearing that one would otherwise look like a torn tail of this one.
    fn seal_at(&self, at: usize) -> io::Result<Scanned> {
        let f = OpenOptions::new().write(true).open(self.path)?;
        // The frames first, then the header that claims them synced.
        f.set_len(at as u64)?;
        f.sync_all()?;
        let seal = BatchHeader {
            segment_first: self.first,
            offset: at as u64,
            synced_len: at as u64,
            frames_len: 0,
        };
        f.write_all_at(&seal.encode(), at as u64)?;
        f.sync_data()?;
        tracing::info!(segment = %self.path.display(), offset = at, "sealed a raft log batch cut short");
        Ok(Scanned {
            len: (at + BATCH_HEADER_BYTES) as u64,
            torn_bytes: 0,
        })
    }

    fn damage(&self, index: &LogIndex, at: usize, cause: String, not_torn: NotTorn) -> io::Error {
        LogDamage {
            path: self.path.to_path_buf(),
            offset: at as u64,
            entry: index.next_index(),
            cause,
            not_torn,
        }
        .into_io()
    }
}

/// Checks that `log_id` continues the log without a hole or an overlap.
fn accept(index: &LogIndex, path: &Path, offset: usize, log_id: LogId) -> io::Result<()> {
    let purged_upto = index.purged.map(|p| p.index);
    if purged_upto.is_some_and(|p| log_id.index <= p) && index.len() == 0 {
        return Ok(()); // behind the purge point: ignored, may overlap anything
    }
    let expected = index.next_index();
    if index.len() == 0 && purged_upto.is_none() || log_id.index == expected {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "log record at {} offset {offset} has index {} where {expected} was expected; \
             the log has a hole or an overlap, refusing to start. Discard this node's log and \
             rejoin it from its peers (see docs/operations.md, \"Damage and recovery\")",
            path.display(),
            log_id.index
        ),
    ))
}
