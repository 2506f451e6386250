//! Application records carried in the Raft log, and how each is applied.
//!
//! The consensus layer sees a tag, a batch key and opaque bytes; this module
//! gives them meaning. A record's payload is encoded once, on the node that
//! received the export, and decoded once per replica at apply time.

use tael_consensus::{Record, BATCH_KEY_LEN, FIRST_APP_TAG};

use crate::comments::{self, Comment};
use crate::model::SpanRecord;
use crate::state::hot::{decode, encode, ApplyBatch, StoreError, StoreResult};

/// A batch of spans from one export request.
pub const TAG_SPANS: u8 = FIRST_APP_TAG;

/// One trace comment, stamped by the leader (see [`leader_stamp`]).
pub const TAG_COMMENT: u8 = FIRST_APP_TAG + 8;

pub fn new_batch_key() -> [u8; BATCH_KEY_LEN] {
    rand::random()
}

pub fn spans_record(spans: &[SpanRecord]) -> Record {
    Record {
        tag: TAG_SPANS,
        batch_key: new_batch_key(),
        payload: encode(&spans),
    }
}

pub fn comment_record(draft: &Comment) -> Record {
    Record {
        tag: TAG_COMMENT,
        batch_key: new_batch_key(),
        payload: encode(draft),
    }
}

/// Run by the leader on every record just before proposing it: fills in the
/// values that must be chosen exactly once (a comment's id and time). Returns
/// the record to propose and the bytes to hand back to the writer.
pub fn leader_stamp(record: Record, now_unix_nanos: u64) -> Result<(Record, Vec<u8>), String> {
    match record.tag {
        TAG_COMMENT => {
            let draft: Comment =
                decode(&record.payload).map_err(|e| format!("undecodable comment: {e}"))?;
            comments::validate(&draft)?;
            let stamped = comments::stamp(draft, now_unix_nanos);
            let payload = encode(&stamped);
            Ok((
                Record {
                    payload: payload.clone(),
                    ..record
                },
                payload,
            ))
        }
        _ => Ok((record, Vec::new())),
    }
}

/// Applies one record, the entry at `log_index`, into `batch`; returns the
/// number of telemetry records.
pub fn apply(batch: &mut ApplyBatch<'_>, log_index: u64, record: &Record) -> StoreResult<u64> {
    match record.tag {
        TAG_COMMENT => {
            let c: Comment = decode(&record.payload)?;
            if !c.is_stamped() {
                return Err(StoreError::Corrupt(format!(
                    "comment at log index {log_index} was never stamped by a leader"
                )));
            }
            batch.put_comment(log_index, &c);
            Ok(0)
        }
        TAG_SPANS => {
            let spans: Vec<SpanRecord> = decode(&record.payload)?;
            let n = spans.len() as u64;
            for span in spans {
                batch.put_span(span)?;
            }
            Ok(n)
        }
        other => Err(StoreError::Corrupt(format!(
            "log entry with unknown record tag {other}; was it written by a newer tael-raft?"
        ))),
    }
}
