//! Application records carried in the Raft log, and how each is applied.
//!
//! The consensus layer sees a tag, a batch key and opaque bytes; this module
//! gives them meaning. A record's payload is encoded once, on the node that
//! received the export, and decoded once per replica at apply time.

use tael_consensus::{Record, BATCH_KEY_LEN, FIRST_APP_TAG};

use crate::model::SpanRecord;
use crate::state::hot::{decode, encode, ApplyBatch, StoreError, StoreResult};

/// A batch of spans from one export request.
pub const TAG_SPANS: u8 = FIRST_APP_TAG;

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

/// Applies one record into `batch`; returns the number of telemetry records.
pub fn apply(batch: &mut ApplyBatch<'_>, record: &Record) -> StoreResult<u64> {
    match record.tag {
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
