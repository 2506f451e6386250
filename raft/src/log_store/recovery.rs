//! Start-up scan of the log segments.
//!
//! Every frame is read and checksummed. A bad frame at the very end of the last
//! segment is a torn write (a crash during an append that was never
//! acknowledged): it is reported and cut off. A bad frame anywhere else is
//! damage to data that may have been acknowledged; the node refuses to start
//! rather than serve or replicate a log with a hole in it.
//!
//! Segments may be preallocated: the written frames are followed by zeros up
//! to the file's end. All-zero bytes where a frame would start are the end of
//! the segment's data, not damage.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::frame::{self, FrameError};
use crate::log_store::index::{Loc, LogIndex, Slot};
use crate::log_store::prealloc::written_len;
use crate::types::LogId;

pub const SEGMENT_PREFIX: &str = "seg-";
pub const SEGMENT_SUFFIX: &str = ".wal";

pub fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_index:020}{SEGMENT_SUFFIX}"))
}

/// Segment files in `dir`, ordered by the first index in their name.
pub fn list_segments(dir: &Path) -> io::Result<BTreeMap<u64, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        else {
            continue;
        };
        let first: u64 = num.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected log file name {name}"),
            )
        })?;
        out.insert(first, entry.path());
    }
    Ok(out)
}

/// What the scan found.
pub struct Recovered {
    pub index: LogIndex,
    /// Segment first index → current length in bytes (after any tail repair).
    pub segments: BTreeMap<u64, u64>,
    /// Bytes cut off a torn tail (0 when the log was clean).
    pub torn_tail_bytes: u64,
}

/// Scans every segment. `max_torn_tail_bytes` bounds how much data a torn tail
/// may hold: more than one write batch can never be un-fsynced at once, so a
/// larger damaged region is corruption, not a torn write.
pub fn recover(
    dir: &Path,
    purged: Option<LogId>,
    max_torn_tail_bytes: u64,
) -> io::Result<Recovered> {
    let paths = list_segments(dir)?;
    let mut index = LogIndex::new(purged);
    let mut segments = BTreeMap::new();
    let mut torn_tail_bytes = 0;
    let last_segment = paths.keys().next_back().copied();

    for (&first, path) in &paths {
        let buf = fs::read(path)?;
        // Past this, only preallocated zeros.
        let written = written_len(&buf);
        let mut offset = 0usize;
        while offset < written {
            match frame::decode_log_id(&buf[offset..]) {
                Ok((len, log_id)) => {
                    accept(&index, path, offset, log_id)?;
                    if purged.is_none_or(|p| log_id.index > p.index) {
                        let loc = Loc {
                            segment: first,
                            offset: offset as u64,
                            len: len as u32,
                        };
                        index.push(Slot {
                            log_id,
                            loc: Some(loc),
                            frame: None,
                        });
                    }
                    offset += len;
                }
                Err(err) => {
                    let is_tail = Some(first) == last_segment
                        && (written - offset) as u64 <= max_torn_tail_bytes
                        && !valid_frame_follows(&buf[offset..], &err);
                    if !is_tail {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "log record at {} offset {offset} is damaged ({err}) and is not a torn tail; \
                                 refusing to start. Restore this node from its peers (see docs/operations.md)",
                                path.display()
                            ),
                        ));
                    }
                    let cut = written - offset;
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        cut_bytes = cut,
                        error = %err,
                        "torn tail in the raft log: cutting off an unacknowledged partial write"
                    );
                    let f = OpenOptions::new().write(true).open(path)?;
                    f.set_len(offset as u64)?;
                    f.sync_all()?;
                    torn_tail_bytes = cut as u64;
                    break;
                }
            }
        }
        segments.insert(first, offset as u64);
    }
    Ok(Recovered {
        index,
        segments,
        torn_tail_bytes,
    })
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
             the log has a hole or an overlap, refusing to start",
            path.display(),
            log_id.index
        ),
    ))
}

/// True when the bytes after a damaged frame still hold a valid frame, which
/// means the damage is in the middle of written data rather than at its end.
fn valid_frame_follows(rest: &[u8], err: &FrameError) -> bool {
    let Ok(claimed) = frame::frame_len(rest) else {
        return false;
    };
    if matches!(err, FrameError::Truncated { .. }) || claimed >= rest.len() {
        return false;
    }
    frame::decode_log_id(&rest[claimed..]).is_ok()
}
