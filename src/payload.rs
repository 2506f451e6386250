//! Application records carried in the Raft log, and how each is applied.
//!
//! The consensus layer sees a tag, a batch key and opaque bytes; this module
//! gives them meaning. A record's payload is encoded once, on the node that
//! received the export, and decoded once per replica at apply time.

use tael_consensus::{Record, BATCH_KEY_LEN, FIRST_APP_TAG};

use crate::comments::{self, Comment};
use crate::model::{LogRecord, MetricPoint, SpanRecord};
use crate::state::hot::{decode, encode, ApplyBatch, StoreError, StoreResult};

/// A batch of spans from one export request.
pub const TAG_SPANS: u8 = FIRST_APP_TAG;
/// A batch of log records from one export request.
pub const TAG_LOGS: u8 = FIRST_APP_TAG + 1;
/// A batch of metric points from one export request.
pub const TAG_METRICS: u8 = FIRST_APP_TAG + 2;

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

pub fn logs_record(logs: &[LogRecord]) -> Record {
    Record {
        tag: TAG_LOGS,
        batch_key: new_batch_key(),
        payload: encode(&logs),
    }
}

pub fn metrics_record(points: &[MetricPoint]) -> Record {
    Record {
        tag: TAG_METRICS,
        batch_key: new_batch_key(),
        payload: encode(&points),
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

/// What one applied record contained.
#[derive(Debug, Default, Clone, Copy)]
pub struct AppliedCounts {
    pub spans: u64,
    pub logs: u64,
    pub metric_points: u64,
}

/// Applies one record, the entry at `log_index`, into `batch`.
pub fn apply(
    batch: &mut ApplyBatch<'_>,
    log_index: u64,
    record: &Record,
) -> StoreResult<AppliedCounts> {
    let mut counts = AppliedCounts::default();
    match record.tag {
        TAG_COMMENT => {
            let c: Comment = decode(&record.payload)?;
            if !c.is_stamped() {
                return Err(StoreError::Corrupt(format!(
                    "comment at log index {log_index} was never stamped by a leader"
                )));
            }
            batch.put_comment(log_index, &c);
        }
        TAG_SPANS => {
            let spans: Vec<SpanRecord> = decode(&record.payload)?;
            counts.spans = spans.len() as u64;
            for span in spans {
                batch.put_span(span)?;
            }
        }
        TAG_LOGS => {
            let logs: Vec<LogRecord> = decode(&record.payload)?;
            counts.logs = logs.len() as u64;
            for log in logs {
                batch.put_log(&log);
            }
        }
        TAG_METRICS => {
            let points: Vec<MetricPoint> = decode(&record.payload)?;
            counts.metric_points = points.len() as u64;
            for p in points {
                batch.put_metric(&p);
            }
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "log entry with unknown record tag {other}; was it written by a newer tael-raft?"
            )))
        }
    }
    Ok(counts)
}
