//! The framed WAL record: the on-disk and on-the-wire form of one log entry.
//!
//! ```text
//! u32 LE  body_len
//! body:   u8  format version (FORMAT_VERSION)
//!         u8  signal tag (0 blank, 1 membership, >= FIRST_APP_TAG application)
//!         u64 LE term of the proposing leader
//!         u64 LE node id of the proposing leader
//!         u64 LE log index
//!         [u8; 16] batch key (zero for blank and membership entries)
//!         payload (application bytes, or JSON membership)
//! u32 LE  CRC32C of body
//! ```
//!
//! The same bytes are appended to the log, shipped to followers and read back, so
//! a record is checksummed from the moment the leader frames it until it is applied.

use std::fmt;

use crate::types::{
    Entry, EntryPayload, LeaderId, LogId, Membership, Record, BATCH_KEY_LEN, FIRST_APP_TAG,
};

pub const FORMAT_VERSION: u8 = 1;
pub const TAG_BLANK: u8 = 0;
pub const TAG_MEMBERSHIP: u8 = 1;

const LEN_BYTES: usize = 4;
const CRC_BYTES: usize = 4;
/// version + tag + term + leader node + index + batch key.
pub const BODY_HEADER_BYTES: usize = 1 + 1 + 8 + 8 + 8 + BATCH_KEY_LEN;
/// Framing overhead around a payload.
pub const FRAME_OVERHEAD_BYTES: usize = LEN_BYTES + BODY_HEADER_BYTES + CRC_BYTES;
/// Hard upper bound for one record; anything larger is corruption, not data.
pub const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs: a torn write or the end of the data.
    Truncated {
        needed: usize,
        available: usize,
    },
    /// The length field is impossible (zero-filled or garbage).
    BadLength(usize),
    /// The checksum does not match the body.
    Checksum {
        stored: u32,
        computed: u32,
    },
    UnknownVersion(u8),
    /// The body decoded but does not describe a valid entry.
    Malformed(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated record: needs {needed} bytes, {available} available"
                )
            }
            FrameError::BadLength(n) => write!(f, "impossible record length {n}"),
            FrameError::Checksum { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            FrameError::UnknownVersion(v) => write!(f, "unknown record format version {v}"),
            FrameError::Malformed(m) => write!(f, "malformed record: {m}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes one entry as a framed record.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let (tag, batch_key, payload): (u8, [u8; BATCH_KEY_LEN], std::borrow::Cow<'_, [u8]>) =
        match &entry.payload {
            EntryPayload::Blank => (TAG_BLANK, [0; BATCH_KEY_LEN], (&[][..]).into()),
            EntryPayload::Membership(m) => {
                let json = serde_json::to_vec(m).expect("membership always serializes");
                (TAG_MEMBERSHIP, [0; BATCH_KEY_LEN], json.into())
            }
            EntryPayload::Normal(r) => {
                debug_assert!(
                    r.tag >= FIRST_APP_TAG,
                    "application tag {} collides with internal tags",
                    r.tag
                );
                (r.tag, r.batch_key, (&r.payload[..]).into())
            }
        };
    let body_len = BODY_HEADER_BYTES + payload.len();
    assert!(
        body_len <= MAX_BODY_BYTES,
        "record of {body_len} bytes exceeds MAX_BODY_BYTES"
    );
    let mut out = Vec::with_capacity(LEN_BYTES + body_len + CRC_BYTES);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.push(FORMAT_VERSION);
    out.push(tag);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    out.extend_from_slice(&batch_key);
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out[LEN_BYTES..]);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), LEN_BYTES + body_len + CRC_BYTES);
    out
}

/// Total length of the frame starting at `buf`, after validating the length
/// field only (no checksum). Used to walk a buffer of frames.
pub fn frame_len(buf: &[u8]) -> Result<usize, FrameError> {
    if buf.len() < LEN_BYTES {
        return Err(FrameError::Truncated {
            needed: LEN_BYTES,
            available: buf.len(),
        });
    }
    let body_len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
    if !(BODY_HEADER_BYTES..=MAX_BODY_BYTES).contains(&body_len) {
        return Err(FrameError::BadLength(body_len));
    }
    Ok(LEN_BYTES + body_len + CRC_BYTES)
}

/// Checks the frame at the start of `buf` and returns its length and body.
fn checked_body(buf: &[u8]) -> Result<(usize, &[u8]), FrameError> {
    let total = frame_len(buf)?;
    if buf.len() < total {
        return Err(FrameError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    let body = &buf[LEN_BYTES..total - CRC_BYTES];
    let stored = u32::from_le_bytes(buf[total - CRC_BYTES..total].try_into().unwrap());
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    if body[0] != FORMAT_VERSION {
        return Err(FrameError::UnknownVersion(body[0]));
    }
    Ok((total, body))
}

/// The log id of the frame at the start of `buf`, checksum verified.
pub fn decode_log_id(buf: &[u8]) -> Result<(usize, LogId), FrameError> {
    let (total, body) = checked_body(buf)?;
    Ok((total, header_log_id(body)))
}

fn header_log_id(body: &[u8]) -> LogId {
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
    LogId::new(
        LeaderId {
            term: u64_at(2),
            node_id: u64_at(10),
        },
        u64_at(18),
    )
}

/// Decodes the frame at the start of `buf` into an entry; returns the frame length.
pub fn decode_entry(buf: &[u8]) -> Result<(usize, Entry), FrameError> {
    let (total, body) = checked_body(buf)?;
    let tag = body[1];
    let log_id = header_log_id(body);
    let key_at = 26;
    let batch_key: [u8; BATCH_KEY_LEN] = body[key_at..key_at + BATCH_KEY_LEN].try_into().unwrap();
    let payload = &body[BODY_HEADER_BYTES..];
    let payload = match tag {
        TAG_BLANK => EntryPayload::Blank,
        TAG_MEMBERSHIP => {
            let m: Membership = serde_json::from_slice(payload)
                .map_err(|e| FrameError::Malformed(format!("membership: {e}")))?;
            EntryPayload::Membership(m)
        }
        t if t >= FIRST_APP_TAG => EntryPayload::Normal(Record {
            tag: t,
            batch_key,
            payload: payload.to_vec(),
        }),
        t => return Err(FrameError::Malformed(format!("reserved tag {t}"))),
    };
    Ok((total, Entry { log_id, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_entry(index: u64, payload: &[u8]) -> Entry {
        Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 3,
                    node_id: 2,
                },
                index,
            ),
            payload: EntryPayload::Normal(Record {
                tag: FIRST_APP_TAG,
                batch_key: [7; 16],
                payload: payload.to_vec(),
            }),
        }
    }

    #[test]
    fn round_trips_every_payload_kind() {
        let blank = Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 1,
                    node_id: 1,
                },
                0,
            ),
            payload: EntryPayload::Blank,
        };
        let members = Membership::new_with_defaults(vec![[1, 2, 3].into()], []);
        let member = Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 1,
                    node_id: 1,
                },
                1,
            ),
            payload: EntryPayload::Membership(members),
        };
        for e in [blank, member, app_entry(2, b"hello")] {
            let buf = encode_entry(&e);
            let (len, back) = decode_entry(&buf).unwrap();
            assert_eq!(len, buf.len());
            assert_eq!(back, e);
            assert_eq!(decode_log_id(&buf).unwrap().1, e.log_id);
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let buf = encode_entry(&app_entry(9, b"payload bytes"));
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_entry(&bad).is_err(),
                    "flip at byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let buf = encode_entry(&app_entry(9, b"payload bytes"));
        for cut in 0..buf.len() {
            assert!(matches!(
                decode_entry(&buf[..cut]),
                Err(FrameError::Truncated { .. }) | Err(FrameError::BadLength(_))
            ));
        }
    }

    #[test]
    fn zero_fill_is_a_bad_length() {
        assert_eq!(decode_entry(&[0u8; 64]), Err(FrameError::BadLength(0)));
    }
}
