//! The framed WAL record: the on-disk and on-the-wire form of one log entry.
//!
//! ```text
//! u32 LE  body_len
//! body:   u8  format version (FORMAT_VERSION, or FORMAT_VERSION_HMAC)
//!         u8  signal tag (0 blank, 1 membership, >= FIRST_APP_TAG application)
//!         u64 LE term of the proposing leader
//!         u64 LE node id of the proposing leader
//!         u64 LE log index
//!         [u8; 16] batch key (zero for blank and membership entries)
//!         payload (application bytes, or JSON membership)
//!         [u8; 32] HMAC-SHA256 of the body before it (FORMAT_VERSION_HMAC only)
//! u32 LE  CRC32C of body
//! ```
//!
//! The same bytes are appended to the log, shipped to followers and read back, so
//! a record is checksummed from the moment the leader frames it until it is applied.
//!
//! The checksum catches damage; it cannot catch a deliberate change, since
//! anyone can recompute it. With `--log-integrity hmac` ([`RecordIntegrity`])
//! every record also carries an HMAC under a key derived from the cluster
//! secret, checked wherever a record is decoded: on append from a peer, on
//! every read and at recovery. A record whose checksum holds but whose HMAC
//! does not was changed by someone without the secret: an integrity failure
//! ([`FrameError::Integrity`]), never mistaken for a torn write.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::types::{
    Entry, EntryPayload, LeaderId, LogId, Membership, Record, BATCH_KEY_LEN, FIRST_APP_TAG,
};

/// A record protected by its checksum only.
pub const FORMAT_VERSION: u8 = 1;
/// A record that also carries an HMAC (`RecordIntegrity::Hmac`).
pub const FORMAT_VERSION_HMAC: u8 = 2;
pub const MAC_BYTES: usize = 32;
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
    /// The checksum holds but the HMAC does not, or the record carries none
    /// where one is required: a change made without the cluster secret.
    Integrity(String),
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
            FrameError::Integrity(m) => write!(f, "record failed its integrity check: {m}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// How records are protected against deliberate change (`--log-integrity`).
/// Every node of a cluster should run the same mode: a node in `Hmac` mode
/// refuses records without a valid HMAC, whoever sends them.
#[derive(Clone, Debug, Default)]
pub enum RecordIntegrity {
    /// The checksum only. Records written in `Hmac` mode are still read
    /// (their HMAC unchecked: this mode has no key).
    #[default]
    Crc32c,
    /// The checksum and an HMAC-SHA256 under a key derived from the cluster
    /// secret (`peer_auth::PeerSecret::log_integrity_key`).
    Hmac(Arc<IntegrityKey>),
}

/// The HMAC key, ready to use, and the count of records that failed it.
pub struct IntegrityKey {
    /// Keyed once: cloning it per record skips re-hashing the key pads.
    mac: Hmac<Sha256>,
    failures: AtomicU64,
}

impl fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

impl RecordIntegrity {
    pub fn hmac(key: [u8; 32]) -> RecordIntegrity {
        let mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
        RecordIntegrity::Hmac(Arc::new(IntegrityKey {
            mac,
            failures: AtomicU64::new(0),
        }))
    }

    /// The name operators use (`--log-integrity`).
    pub fn name(&self) -> &'static str {
        match self {
            RecordIntegrity::Crc32c => "crc32c",
            RecordIntegrity::Hmac(_) => "hmac",
        }
    }

    /// Records refused for a bad or missing HMAC since the process started
    /// (`log_integrity_failures_total`).
    pub fn failures(&self) -> u64 {
        match self {
            RecordIntegrity::Crc32c => 0,
            RecordIntegrity::Hmac(k) => k.failures.load(Ordering::Relaxed),
        }
    }

    fn mac_of(key: &IntegrityKey, signed: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = key.mac.clone();
        mac.update(signed);
        mac.finalize().into_bytes().into()
    }

    /// Checks the body of a record against this mode; returns the body
    /// without its HMAC.
    fn check<'a>(&self, body: &'a [u8]) -> Result<&'a [u8], FrameError> {
        let signed = match body[0] {
            FORMAT_VERSION => None,
            FORMAT_VERSION_HMAC if body.len() >= BODY_HEADER_BYTES + MAC_BYTES => {
                Some(body.split_at(body.len() - MAC_BYTES))
            }
            FORMAT_VERSION_HMAC => {
                return Err(FrameError::Malformed("too short for its HMAC".into()));
            }
            v => return Err(FrameError::UnknownVersion(v)),
        };
        let key = match self {
            RecordIntegrity::Crc32c => return Ok(signed.map_or(body, |(b, _)| b)),
            RecordIntegrity::Hmac(key) => key,
        };
        let outcome = match signed {
            None => Err("the record carries no HMAC"),
            Some((b, stored)) => {
                let mut mac = key.mac.clone();
                mac.update(b);
                // verify_slice compares in constant time.
                mac.verify_slice(stored)
                    .map(|_| b)
                    .map_err(|_| "HMAC mismatch")
            }
        };
        outcome.map_err(|why| {
            key.failures.fetch_add(1, Ordering::Relaxed);
            let index = header_log_id(body).index;
            tracing::error!(
                target: "tael::security",
                index,
                "SECURITY: a raft log record failed its integrity check ({why}): it was changed \
                 by someone without the cluster secret, or written by a node without \
                 --log-integrity hmac; it is not applied or served"
            );
            FrameError::Integrity(format!("entry {index}: {why}"))
        })
    }
}

/// Encodes one entry as a framed record, protected as `integrity` says.
pub fn encode_entry(entry: &Entry, integrity: &RecordIntegrity) -> Vec<u8> {
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
    let (version, mac_len) = match integrity {
        RecordIntegrity::Crc32c => (FORMAT_VERSION, 0),
        RecordIntegrity::Hmac(_) => (FORMAT_VERSION_HMAC, MAC_BYTES),
    };
    let body_len = BODY_HEADER_BYTES + payload.len() + mac_len;
    assert!(
        body_len <= MAX_BODY_BYTES,
        "record of {body_len} bytes exceeds MAX_BODY_BYTES"
    );
    let mut out = Vec::with_capacity(LEN_BYTES + body_len + CRC_BYTES);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.push(version);
    out.push(tag);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    out.extend_from_slice(&batch_key);
    out.extend_from_slice(&payload);
    if let RecordIntegrity::Hmac(key) = integrity {
        let mac = RecordIntegrity::mac_of(key, &out[LEN_BYTES..]);
        out.extend_from_slice(&mac);
    }
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

/// Checks the frame at the start of `buf` and returns its length and body
/// (without any HMAC).
fn checked_body<'a>(
    buf: &'a [u8],
    integrity: &RecordIntegrity,
) -> Result<(usize, &'a [u8]), FrameError> {
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
    Ok((total, integrity.check(body)?))
}

/// The log id of the frame at the start of `buf`, checksum verified.
pub fn decode_log_id(
    buf: &[u8],
    integrity: &RecordIntegrity,
) -> Result<(usize, LogId), FrameError> {
    let (total, body) = checked_body(buf, integrity)?;
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
pub fn decode_entry(buf: &[u8], integrity: &RecordIntegrity) -> Result<(usize, Entry), FrameError> {
    let (total, body) = checked_body(buf, integrity)?;
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

    const CRC: RecordIntegrity = RecordIntegrity::Crc32c;

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
            let buf = encode_entry(&e, &CRC);
            let (len, back) = decode_entry(&buf, &CRC).unwrap();
            assert_eq!(len, buf.len());
            assert_eq!(back, e);
            assert_eq!(decode_log_id(&buf, &CRC).unwrap().1, e.log_id);
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let buf = encode_entry(&app_entry(9, b"payload bytes"), &CRC);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_entry(&bad, &CRC).is_err(),
                    "flip at byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let buf = encode_entry(&app_entry(9, b"payload bytes"), &CRC);
        for cut in 0..buf.len() {
            assert!(matches!(
                decode_entry(&buf[..cut], &CRC),
                Err(FrameError::Truncated { .. }) | Err(FrameError::BadLength(_))
            ));
        }
    }

    #[test]
    fn zero_fill_is_a_bad_length() {
        assert_eq!(
            decode_entry(&[0u8; 64], &CRC),
            Err(FrameError::BadLength(0))
        );
    }

    fn hmac(byte: u8) -> RecordIntegrity {
        RecordIntegrity::hmac([byte; 32])
    }

    /// Re-seals a changed body with a correct checksum, as anyone without
    /// the secret could.
    fn recompute_crc(buf: &mut [u8]) {
        let end = buf.len() - CRC_BYTES;
        let crc = crc32c::crc32c(&buf[LEN_BYTES..end]);
        buf[end..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn hmac_records_round_trip_and_read_without_the_key() {
        let key = hmac(1);
        let e = app_entry(4, b"signed payload");
        let buf = encode_entry(&e, &key);
        assert_eq!(buf.len(), encode_entry(&e, &CRC).len() + MAC_BYTES);
        assert_eq!(decode_entry(&buf, &key).unwrap(), (buf.len(), e.clone()));
        // A node without the key still reads the entry (mode switched off).
        assert_eq!(decode_entry(&buf, &CRC).unwrap(), (buf.len(), e));
        assert_eq!(key.failures(), 0);
    }

    #[test]
    fn a_change_with_a_recomputed_checksum_fails_only_the_hmac() {
        let key = hmac(1);
        let mut buf = encode_entry(&app_entry(4, b"amount=100"), &key);
        let at = buf.len() - CRC_BYTES - MAC_BYTES - 1;
        buf[at] = b'9';
        recompute_crc(&mut buf);
        // The checksum alone cannot tell: this is what HMAC mode is for.
        assert!(decode_entry(&buf, &CRC).is_ok());
        assert!(matches!(
            decode_entry(&buf, &key),
            Err(FrameError::Integrity(m)) if m.contains("entry 4")
        ));
        assert!(matches!(
            decode_log_id(&buf, &key),
            Err(FrameError::Integrity(_))
        ));
        assert_eq!(key.failures(), 2);
    }

    #[test]
    fn another_key_and_unsigned_records_are_integrity_failures() {
        let key = hmac(1);
        let signed_elsewhere = encode_entry(&app_entry(4, b"x"), &hmac(2));
        let unsigned = encode_entry(&app_entry(4, b"x"), &CRC);
        for buf in [signed_elsewhere, unsigned] {
            assert!(matches!(
                decode_entry(&buf, &key),
                Err(FrameError::Integrity(_))
            ));
        }
        assert_eq!(key.failures(), 2);
    }

    #[test]
    fn every_single_bit_flip_of_a_signed_record_is_detected() {
        let key = hmac(3);
        let buf = encode_entry(&app_entry(9, b"payload bytes"), &key);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(decode_entry(&bad, &key).is_err(), "{byte}/{bit}");
                if byte >= buf.len() - CRC_BYTES {
                    continue; // redoing the checksum would undo this flip
                }
                // Even with the checksum redone, only the length field
                // can change without the HMAC noticing, and it then fails
                // the framing.
                recompute_crc(&mut bad);
                assert!(decode_entry(&bad, &key).is_err(), "{byte}/{bit} re-sealed");
            }
        }
    }
}
