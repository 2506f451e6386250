//! A read-only look at a stopped node's log: where each entry of the newest
//! (active) segment lies, and how far the batch headers prove it fsynced.
//!
//! For tools outside the server, such as the fault harness, which must know
//! before damaging a segment which bytes are durable (damage there must be
//! refused at start) and which are not (a cut there is a torn tail, to be
//! accepted), and which entries the node must still hold if it starts.
//! Unlike `recovery` it never writes: it stops at the first record it cannot
//! read.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::frame::{self, RecordIntegrity};
use crate::log_store::batch::{highest_mark_in, BatchHeader, BATCH_HEADER_BYTES};
use crate::log_store::prealloc::written_len;
use crate::log_store::recovery::{is_legacy, list_segments};

/// One intact entry frame of the active segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAt {
    pub index: u64,
    /// Offset of the frame's length field in the segment.
    pub offset: u64,
    pub len: u64,
}

/// What `inspect` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The newest segment: the only one a torn write can end.
    pub active_segment: PathBuf,
    /// Bytes of data in it (preallocated zeros after them not counted).
    pub written_bytes: u64,
    /// The durable high-water mark: the active segment is proven fsynced
    /// through this offset by an intact batch header.
    pub synced_bytes: u64,
    /// Every intact frame of the active segment, in order.
    pub frames: Vec<FrameAt>,
    /// Index of the last readable entry of the whole log.
    pub last_index: Option<u64>,
    /// Index of the last entry the node proved durable: in a closed segment,
    /// or wholly before `synced_bytes` in the active one. A node that starts
    /// with a shorter log lost an entry it may have acknowledged.
    pub durable_last_index: Option<u64>,
}

/// Inspects the log in `dir` (a node's `raft-log` directory) without
/// changing it. Errors when there is no segment, or the newest one predates
/// batch headers (format 1 has no marks).
pub fn inspect(dir: &Path) -> io::Result<Inspection> {
    let segments = list_segments(dir)?;
    let (&first, path) = segments
        .iter()
        .next_back()
        .ok_or_else(|| invalid(format!("no log segment in {}", dir.display())))?;
    if is_legacy(path) {
        return Err(invalid(format!(
            "{} is of format 1: it has no sync marks",
            path.display()
        )));
    }
    let closed_last_index = segments
        .range(..first)
        .next_back()
        .map(|(_, p)| last_index_of(p))
        .transpose()?
        .flatten();
    let buf = fs::read(path)?;
    let written = written_len(&buf);
    let frames = frames_of(&buf[..written], first);
    let synced = highest_mark_in(&buf, 0, written, first);
    let last_in = |upto: u64| {
        frames
            .iter()
            .rev()
            .find(|f| f.offset + f.len <= upto)
            .map(|f| f.index)
            .or(closed_last_index)
    };
    Ok(Inspection {
        active_segment: path.clone(),
        written_bytes: written as u64,
        synced_bytes: synced,
        last_index: last_in(written as u64),
        durable_last_index: last_in(synced),
        frames,
    })
}

/// The last readable entry of a closed segment of either format.
fn last_index_of(path: &Path) -> io::Result<Option<u64>> {
    let buf = fs::read(path)?;
    let written = written_len(&buf);
    let last = if is_legacy(path) {
        let mut pos = 0;
        let mut last = None;
        while let Ok((len, id)) = frame::decode_log_id(&buf[pos..written], &RecordIntegrity::Crc32c)
        {
            last = Some(id.index);
            pos += len;
        }
        last
    } else {
        let first = segment_first(path)?;
        frames_of(&buf[..written], first).last().map(|f| f.index)
    };
    Ok(last)
}

fn segment_first(path: &Path) -> io::Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    list_segments(dir)?
        .into_iter()
        .find(|(_, p)| p == path)
        .map(|(f, _)| f)
        .ok_or_else(|| invalid(format!("{} is not a log segment", path.display())))
}

/// The frames of a format-2 segment's data, up to the first unreadable byte.
/// Records are read whatever their integrity mode (no key here).
fn frames_of(data: &[u8], segment_first: u64) -> Vec<FrameAt> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut batch_end = 0usize;
    while pos < data.len() {
        if let Some(h) = BatchHeader::parse_at(data, pos, segment_first) {
            pos += BATCH_HEADER_BYTES;
            batch_end = pos + h.frames_len as usize;
            continue;
        }
        if pos >= batch_end {
            break;
        }
        match frame::decode_log_id(
            &data[pos..batch_end.min(data.len())],
            &RecordIntegrity::Crc32c,
        ) {
            Ok((len, id)) => {
                out.push(FrameAt {
                    index: id.index,
                    offset: pos as u64,
                    len: len as u64,
                });
                pos += len;
            }
            Err(_) => break,
        }
    }
    out
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
