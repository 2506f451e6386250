//! The batch header: what lets start-up recovery tell a torn write from damage.
//!
//! Segment format 2 (`seg-<first index>.v2.wal`) is a sequence of batches. Each
//! group commit writes one batch, a header followed by the entry frames, with
//! one `write` and one `fdatasync`:
//!
//! ```text
//! [u8; 4]  BATCH_MAGIC
//! u64 LE   first index of the segment (binds the header to its file)
//! u64 LE   offset of this header in the segment (binds it to its place)
//! u64 LE   synced_len: bytes of the segment fsynced before this batch was written
//! u32 LE   frames_len: bytes of entry frames that follow
//! u32 LE   CRC32C of everything above
//! ```
//!
//! `synced_len` is the durable high-water mark, piggybacked on the writes the
//! log makes anyway: a header that survived proves everything before its
//! `synced_len` had been fsynced, so damage there is corruption, never a
//! torn write. After the last batch of a busy period the writer also leaves an
//! empty header (`frames_len` 0) at the end of the data, without an fsync, so
//! the last fsynced batch is proven too unless a power cut takes that header
//! with it; the next batch overwrites it. A truncation that cuts a batch
//! short ends it with an empty header too (fsynced, kept): the next batch
//! then never starts inside an earlier one.
//!
//! The magic read as a format-1 length field is larger than any record may be
//! (`frame::MAX_BODY_BYTES`), so a header is never mistaken for a frame.

use crate::frame;

pub const BATCH_MAGIC: [u8; 4] = [0xB7, b'T', b'L', b'B'];
pub const BATCH_HEADER_BYTES: usize = 4 + 8 + 8 + 8 + 4 + 4;

const _: () = assert!(
    u32::from_le_bytes(BATCH_MAGIC) as usize > frame::MAX_BODY_BYTES,
    "a batch header must never read as a frame length"
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub segment_first: u64,
    pub offset: u64,
    pub synced_len: u64,
    pub frames_len: u32,
}

impl BatchHeader {
    pub fn encode(&self) -> [u8; BATCH_HEADER_BYTES] {
        let mut out = [0u8; BATCH_HEADER_BYTES];
        out[..4].copy_from_slice(&BATCH_MAGIC);
        out[4..12].copy_from_slice(&self.segment_first.to_le_bytes());
        out[12..20].copy_from_slice(&self.offset.to_le_bytes());
        out[20..28].copy_from_slice(&self.synced_len.to_le_bytes());
        out[28..32].copy_from_slice(&self.frames_len.to_le_bytes());
        let crc = crc32c::crc32c(&out[..32]);
        out[32..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The header at `buf[offset..]` of the segment starting at
    /// `segment_first`, if one is there: magic, checksum, segment and offset
    /// must all match, and the mark may not lie ahead of the header itself.
    pub fn parse_at(buf: &[u8], offset: usize, segment_first: u64) -> Option<BatchHeader> {
        let b = buf.get(offset..offset.checked_add(BATCH_HEADER_BYTES)?)?;
        if b[..4] != BATCH_MAGIC {
            return None;
        }
        let stored = u32::from_le_bytes(b[32..36].try_into().unwrap());
        if crc32c::crc32c(&b[..32]) != stored {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        let h = BatchHeader {
            segment_first: u64_at(4),
            offset: u64_at(12),
            synced_len: u64_at(20),
            frames_len: u32::from_le_bytes(b[28..32].try_into().unwrap()),
        };
        let placed = h.segment_first == segment_first && h.offset == offset as u64;
        (placed && h.synced_len <= h.offset).then_some(h)
    }
}

/// The highest `synced_len` of any intact header in `buf[from..to]`: how far
/// the segment is proven durable, read past damage that stops a frame walk.
pub fn highest_mark_in(buf: &[u8], from: usize, to: usize, segment_first: u64) -> u64 {
    let to = to.min(buf.len());
    let mut mark = 0;
    let mut at = from;
    while at < to {
        let Some(hit) = buf[at..to].iter().position(|&b| b == BATCH_MAGIC[0]) else {
            break;
        };
        let pos = at + hit;
        if let Some(h) = BatchHeader::parse_at(buf, pos, segment_first) {
            mark = mark.max(h.synced_len);
        }
        at = pos + 1;
    }
    mark
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BatchHeader {
        BatchHeader {
            segment_first: 7,
            offset: 40,
            synced_len: 40,
            frames_len: 123,
        }
    }

    #[test]
    fn round_trips_only_in_its_own_place() {
        let mut buf = vec![0u8; 40];
        buf.extend_from_slice(&header().encode());
        assert_eq!(BatchHeader::parse_at(&buf, 40, 7), Some(header()));
        assert_eq!(BatchHeader::parse_at(&buf, 40, 8), None, "other segment");
        let mut moved = vec![0u8; 41];
        moved.extend_from_slice(&header().encode());
        assert_eq!(BatchHeader::parse_at(&moved, 41, 7), None, "other offset");
        assert_eq!(BatchHeader::parse_at(&buf, 41, 7), None);
        assert_eq!(BatchHeader::parse_at(&buf[..60], 40, 7), None, "cut short");
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = vec![0u8; 40];
        buf.extend_from_slice(&header().encode());
        for byte in 40..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert_eq!(BatchHeader::parse_at(&bad, 40, 7), None, "{byte}/{bit}");
            }
        }
    }

    #[test]
    fn a_mark_ahead_of_its_header_is_rejected() {
        let h = BatchHeader {
            synced_len: 41,
            ..header()
        };
        let mut buf = vec![0u8; 40];
        buf.extend_from_slice(&h.encode());
        assert_eq!(BatchHeader::parse_at(&buf, 40, 7), None);
    }

    #[test]
    fn the_highest_mark_is_found_among_garbage() {
        let mut buf = vec![0xB7u8; 40];
        buf.extend_from_slice(&header().encode());
        buf.extend_from_slice(&[0xB7, b'T', 1, 2, 3]);
        let second = BatchHeader {
            offset: buf.len() as u64,
            synced_len: 30,
            ..header()
        };
        buf.extend_from_slice(&second.encode());
        assert_eq!(highest_mark_in(&buf, 0, buf.len(), 7), 40);
        assert_eq!(highest_mark_in(&buf, 41, buf.len(), 7), 30);
        assert_eq!(highest_mark_in(&buf, 0, buf.len(), 9), 0);
    }
}
