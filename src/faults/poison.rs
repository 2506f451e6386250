//! Poison entries: records no replica can apply, for the fault harness's
//! `poison` nemesis.
//!
//! A leader validates what peers forward (`payload::leader_stamp`), so a
//! normal node can never put these in the log. A fault-injection build
//! proposes them raw (`POST /api/v1/fault/poison`, leader only), standing
//! for a hostile or newer peer whose record got past that check. Every
//! replica must then reject each one the same way (`state::apply`) and keep
//! serving.

use std::fmt;

use tael_consensus::{Record, BATCH_KEY_LEN, FIRST_APP_TAG};

use crate::model::SpanRecord;
use crate::payload;

/// What makes a poison entry unapplicable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoisonKind {
    /// A tag no version of this program wrote (≥ the first application tag).
    UnknownTag,
    /// A known tag (spans) over bytes that do not decode.
    Undecodable,
    /// Spans whose service name is longer than the store's keys can hold.
    LongServiceName,
}

/// An unknown tag: far above every tag in use, so no future record type
/// is likely to take it.
const UNKNOWN_TAG: u8 = FIRST_APP_TAG + 200;

impl PoisonKind {
    pub const ALL: [PoisonKind; 3] = [
        PoisonKind::UnknownTag,
        PoisonKind::Undecodable,
        PoisonKind::LongServiceName,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PoisonKind::UnknownTag => "unknown-tag",
            PoisonKind::Undecodable => "undecodable",
            PoisonKind::LongServiceName => "long-service-name",
        }
    }

    pub fn parse(s: &str) -> Result<PoisonKind, String> {
        PoisonKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PoisonKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown poison kind {s:?}; known: {}", names.join(", "))
            })
    }

    /// The record to propose; `nonce` makes its batch key (and so the
    /// entry) unique, so no deduplication ever hides an injection.
    pub fn record(self, nonce: u64) -> Record {
        let mut batch_key = [0u8; BATCH_KEY_LEN];
        batch_key[..8].copy_from_slice(b"poison!!");
        batch_key[8..].copy_from_slice(&nonce.to_be_bytes());
        let record = match self {
            PoisonKind::UnknownTag => Record {
                tag: UNKNOWN_TAG,
                batch_key,
                payload: b"a record from a version that does not exist".to_vec(),
            },
            PoisonKind::Undecodable => Record {
                tag: payload::TAG_SPANS,
                batch_key,
                payload: vec![0xff; 32],
            },
            PoisonKind::LongServiceName => payload::spans_record(vec![SpanRecord {
                trace_id: [0x9f; 16],
                span_id: nonce.to_be_bytes(),
                service: "s".repeat(payload::MAX_INDEX_NAME_BYTES + 1),
                operation: "poison".into(),
                start_unix_nanos: 1_000,
                end_unix_nanos: 2_000,
                ..Default::default()
            }]),
        };
        Record {
            batch_key,
            ..record
        }
    }
}

impl fmt::Display for PoisonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in PoisonKind::ALL {
            assert_eq!(PoisonKind::parse(k.name()).unwrap(), k);
        }
        assert!(PoisonKind::parse("nope")
            .unwrap_err()
            .contains("undecodable"));
    }

    /// Each kind is something the leader's own check refuses: only the
    /// fault route gets it into the log.
    #[test]
    fn every_poison_is_refused_by_the_leaders_check() {
        for k in PoisonKind::ALL {
            let r = k.record(7);
            assert!(payload::leader_stamp(r).is_err(), "{k} passed the check");
        }
    }

    #[test]
    fn nonces_make_distinct_entries() {
        for k in PoisonKind::ALL {
            assert_ne!(k.record(1).batch_key, k.record(2).batch_key);
        }
    }
}
