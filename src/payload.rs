//! Application records carried in the Raft log: their tags and formats.
//!
//! The consensus layer sees a tag, a batch key and opaque bytes; this module
//! gives them meaning. A record's payload is encoded once, on the node that
//! received the export, and decoded once per replica at apply time (see
//! [`crate::state::apply`], which also says how each is applied).

mod check;
mod grouped;

pub use check::MAX_INDEX_NAME_BYTES;

use tael_consensus::{Record, BATCH_KEY_LEN, FIRST_APP_TAG};

use crate::codec::{decode, encode};
use crate::comments::{self, Comment};
use crate::model::{LogRecord, MetricPoint, SpanRecord};

/// A batch of spans from one export request, in the lossless span format
/// (data format 2, see `data_format`). Not `FIRST_APP_TAG`, the tag of the
/// earlier, flattened span format: a log holding old entries must fail with
/// a clear "unknown tag" instead of mis-decoding them.
pub const TAG_SPANS: u8 = FIRST_APP_TAG + 10;
/// A batch of log records from one export request, in the lossless log
/// format. Not `FIRST_APP_TAG + 1`, the earlier format's tag (as above).
pub const TAG_LOGS: u8 = FIRST_APP_TAG + 11;
/// A batch of metric points from one export request.
pub const TAG_METRICS: u8 = FIRST_APP_TAG + 2;

/// The data format of these records: 2 since spans and logs are stored
/// losslessly (see `data_format`, which marks data directories with it).
pub const DATA_FORMAT_VERSION: u32 = 2;

/// Tags of record formats no longer read (spans and logs before data
/// format 2). Never reuse them.
pub const RETIRED_TAGS: [u8; 2] = [FIRST_APP_TAG, FIRST_APP_TAG + 1];

/// One trace comment, stamped by the leader (see [`leader_stamp`]).
pub const TAG_COMMENT: u8 = FIRST_APP_TAG + 8;
/// A change to the API key set ([`crate::auth::KeyCommand`]), stamped by
/// the leader.
pub const TAG_KEYS: u8 = FIRST_APP_TAG + 12;
/// A spans, logs or metrics record that went through a node's local spool
/// (`--ingest-ack spooled`), wrapped in a [`SpooledRecord`]. Only these pay
/// for the at-most-once check; records ingested directly skip it.
pub const TAG_SPOOLED: u8 = FIRST_APP_TAG + 9;
/// A consistency check (empty payload): every replica digests its state as
/// of the entry before it (see `state::digest`).
pub const TAG_CHECK: u8 = FIRST_APP_TAG + 13;
/// A retention cut ([`crate::retention::RetentionCut`]), stamped by the
/// leader: every replica deletes what the leader's clock puts past the
/// retention.
pub const TAG_RETENTION: u8 = FIRST_APP_TAG + 14;
/// A move of one signal's records in `[from, to)` to the cold tier
/// ([`crate::state::cold::ColdMove`]), its range chosen from the leader's
/// clock: every replica moves the same records at the same index.
pub const TAG_COLD_MOVE: u8 = FIRST_APP_TAG + 15;
/// A move to the shared cold store ([`crate::state::cold::ColdUpload`]):
/// the leader uploaded the object before proposing it, and every replica
/// deletes from its hot tier exactly the records the object holds.
pub const TAG_COLD_UPLOAD: u8 = FIRST_APP_TAG + 16;

/// What the spool forwarder proposes: the original record plus where it came
/// from. `(origin, generation, seq)` names one spooled export for ever: the
/// spool of node `origin` numbers its exports `seq` = 1, 2, ... within each
/// `generation` (one per start of that node), and forwards a generation's
/// exports in that order, each only after the one before it committed. So
/// the state machine keeps, per origin and generation, the highest `seq`
/// applied, and skips anything at or below it: a re-proposal after a crash or
/// a timed-out forward is applied at most once (see `ApplyBatch::claim_spooled`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpooledRecord {
    pub origin: u64,
    pub generation: u64,
    pub seq: u64,
    /// The origin's oldest generation still in its spool: older generations
    /// are fully forwarded, so their per-generation marks can be dropped.
    pub min_live_generation: u64,
    /// TAG_SPANS, TAG_LOGS or TAG_METRICS.
    pub tag: u8,
    pub payload: Vec<u8>,
}

pub fn spooled_record(batch_key: [u8; BATCH_KEY_LEN], spooled: &SpooledRecord) -> Record {
    Record {
        tag: TAG_SPOOLED,
        batch_key,
        payload: encode(spooled),
    }
}

/// Tags the spool accepts: plain telemetry, never stamped by a leader.
pub fn spoolable(tag: u8) -> bool {
    matches!(tag, TAG_SPANS | TAG_LOGS | TAG_METRICS)
}

pub fn new_batch_key() -> [u8; BATCH_KEY_LEN] {
    rand::random()
}

/// A new log record of `tag` carrying `value`, under a fresh batch key.
fn record<T: serde::Serialize>(tag: u8, value: &T) -> Record {
    Record {
        tag,
        batch_key: new_batch_key(),
        payload: encode(value),
    }
}

/// Spans travel with each distinct resource and scope once (see
/// [`grouped`]), compressed (see [`compressed`]).
pub fn spans_record(spans: Vec<SpanRecord>) -> Record {
    compressed_record(TAG_SPANS, &grouped::group(spans))
}

/// Log records travel like spans.
pub fn logs_record(logs: Vec<LogRecord>) -> Record {
    compressed_record(TAG_LOGS, &grouped::group(logs))
}

/// The spans of a `TAG_SPANS` payload.
pub fn decode_spans(payload: &[u8]) -> Result<Vec<SpanRecord>, String> {
    decode_grouped(payload).map_err(|e| format!("undecodable spans: {e}"))
}

/// The log records of a `TAG_LOGS` payload.
pub fn decode_logs(payload: &[u8]) -> Result<Vec<LogRecord>, String> {
    decode_grouped(payload).map_err(|e| format!("undecodable log records: {e}"))
}

fn decode_grouped<R>(payload: &[u8]) -> Result<Vec<R>, String>
where
    R: grouped::HasOrigin + serde::de::DeserializeOwned,
{
    let bytes = decompressed(payload)?;
    grouped::ungroup(decode(&bytes).map_err(|e| e.to_string())?)
}

/// The first byte of a compressed payload: an LZ4 block follows, led by its
/// decompressed size (u32, little endian).
const LZ4_BLOCK: u8 = 1;
/// Largest decompressed payload accepted: a payload claiming more is
/// refused before anything is allocated (exports are at most 20 MiB).
pub const MAX_DECOMPRESSED_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

fn compressed_record<T: serde::Serialize>(tag: u8, value: &T) -> Record {
    Record {
        tag,
        batch_key: new_batch_key(),
        payload: compressed(&encode(value)),
    }
}

/// Span and log payloads are LZ4-compressed: telemetry repeats itself (keys,
/// service and operation names, ids sharing a trace), and every byte of a
/// payload is written to the log, fsynced and sent to every follower. LZ4
/// costs far less CPU than those bytes do.
pub fn compressed(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + bytes.len() / 2);
    out.push(LZ4_BLOCK);
    out.extend_from_slice(&lz4_flex::block::compress_prepend_size(bytes));
    out
}

/// The bytes a [`compressed`] payload holds.
pub fn decompressed(payload: &[u8]) -> Result<Vec<u8>, String> {
    let Some((&LZ4_BLOCK, block)) = payload.split_first() else {
        return Err("a span or log payload that is not an LZ4 block".into());
    };
    let size = block
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")) as usize)
        .ok_or("an LZ4 block without its size")?;
    if size > MAX_DECOMPRESSED_PAYLOAD_BYTES {
        return Err(format!(
            "an LZ4 block that claims {size} bytes (at most {MAX_DECOMPRESSED_PAYLOAD_BYTES})"
        ));
    }
    lz4_flex::block::decompress_size_prepended(block).map_err(|e| format!("LZ4 block: {e}"))
}

pub fn metrics_record(points: &[MetricPoint]) -> Record {
    record(TAG_METRICS, &points)
}

/// A comment under a fresh batch key, or, when the client named its request
/// (`Idempotency-Key`), under a key derived from that name and the trace: a
/// retried request then carries the same key, and apply keeps the comment
/// once.
pub fn comment_record(draft: &Comment, idempotency_key: Option<&str>) -> Record {
    let batch_key = match idempotency_key {
        None => new_batch_key(),
        Some(name) => {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(b"tael comment\0");
            h.update(draft.trace_id);
            h.update(name.as_bytes());
            let digest = h.finalize();
            let mut key = [0u8; BATCH_KEY_LEN];
            key.copy_from_slice(&digest[..BATCH_KEY_LEN]);
            key
        }
    };
    Record {
        tag: TAG_COMMENT,
        batch_key,
        payload: encode(draft),
    }
}

/// A consistency check (see [`TAG_CHECK`]).
pub fn check_record() -> Record {
    Record {
        tag: TAG_CHECK,
        batch_key: new_batch_key(),
        payload: Vec::new(),
    }
}

/// A retention cut under `policy` (see [`TAG_RETENTION`]); the leader
/// stamps its clock on it.
pub fn retention_record(policy: crate::retention::RetentionPolicy) -> Record {
    record(
        TAG_RETENTION,
        &crate::retention::RetentionCut::unstamped(policy),
    )
}

/// A move to the cold tier (see [`TAG_COLD_MOVE`]).
pub fn cold_move_record(mv: &crate::state::cold::ColdMove) -> Record {
    record(TAG_COLD_MOVE, mv)
}

/// A move to the shared cold store (see [`TAG_COLD_UPLOAD`]).
pub fn cold_upload_record(up: &crate::state::cold::ColdUpload) -> Record {
    record(TAG_COLD_UPLOAD, up)
}

pub fn keys_record(cmd: &crate::auth::KeyCommand) -> Record {
    record(TAG_KEYS, cmd)
}

/// The decoded contents of a record of a known tag (spooled records
/// unwrapped by the caller).
#[derive(Debug)]
pub enum Contents {
    Spans(Vec<SpanRecord>),
    Logs(Vec<LogRecord>),
    Metrics(Vec<MetricPoint>),
    Comment(Comment),
    Keys(crate::auth::KeyCommand),
    /// A consistency check: changes nothing.
    Check,
    Retention(crate::retention::RetentionCut),
    ColdMove(crate::state::cold::ColdMove),
    ColdUpload(crate::state::cold::ColdUpload),
}

/// Decodes a plain (not spooled) record of `tag` and checks that the store
/// can hold it (`check::storable_*`). Apply runs this on every replica, so
/// it must stay deterministic: the same bytes give the same answer on every
/// node and version that knows the tag.
pub fn decode_contents(tag: u8, payload: &[u8]) -> Result<Contents, String> {
    match tag {
        TAG_SPANS => {
            let spans = decode_spans(payload)?;
            spans.iter().try_for_each(check::storable_span)?;
            Ok(Contents::Spans(spans))
        }
        TAG_LOGS => {
            let logs = decode_logs(payload)?;
            logs.iter().try_for_each(check::storable_log)?;
            Ok(Contents::Logs(logs))
        }
        TAG_METRICS => {
            let points: Vec<MetricPoint> =
                decode(payload).map_err(|e| format!("undecodable metric points: {e}"))?;
            points.iter().try_for_each(check::storable_metric)?;
            Ok(Contents::Metrics(points))
        }
        TAG_COMMENT => decode(payload)
            .map(Contents::Comment)
            .map_err(|e| format!("undecodable comment: {e}")),
        TAG_KEYS => decode(payload)
            .map(Contents::Keys)
            .map_err(|e| format!("undecodable key command: {e}")),
        TAG_RETENTION => crate::retention::RetentionCut::decode(payload)
            .map(Contents::Retention)
            .map_err(|e| format!("undecodable retention cut: {e}")),
        TAG_COLD_MOVE => {
            let mv: crate::state::cold::ColdMove =
                decode(payload).map_err(|e| format!("undecodable cold move: {e}"))?;
            if mv.from_unix_nanos > mv.to_unix_nanos {
                return Err(format!(
                    "a cold move's range ends before it starts ({} > {})",
                    mv.from_unix_nanos, mv.to_unix_nanos
                ));
            }
            Ok(Contents::ColdMove(mv))
        }
        TAG_COLD_UPLOAD => {
            let up: crate::state::cold::ColdUpload =
                decode(payload).map_err(|e| format!("undecodable cold upload: {e}"))?;
            up.check(crate::state::hot::moved_key_len(up.signal))?;
            Ok(Contents::ColdUpload(up))
        }
        TAG_CHECK if payload.is_empty() => Ok(Contents::Check),
        TAG_CHECK => Err(format!(
            "a consistency check carries no payload, this one {} bytes",
            payload.len()
        )),
        other if RETIRED_TAGS.contains(&other) => Err(retired_tag_message(other)),
        other => Err(format!(
            "unknown record tag {other}; was it written by a newer tael-raft?"
        )),
    }
}

/// The payload of a `TAG_SPOOLED` record, with the wrapped tag checked.
pub fn decode_spooled(payload: &[u8]) -> Result<SpooledRecord, String> {
    let spooled: SpooledRecord =
        decode(payload).map_err(|e| format!("undecodable spooled record: {e}"))?;
    if !spoolable(spooled.tag) {
        return Err(format!("spooled record wraps tag {}", spooled.tag));
    }
    Ok(spooled)
}

/// Run by the leader on a record forwarded by a peer, just before proposing
/// it: refuses anything this node's own ingest would not have produced
/// (undecodable bytes, unknown or retired tags, contents beyond the ingest
/// limits), then stamps it like [`stamp_local`]. The peer may run another
/// version or be hostile; a record that reached the log would be applied
/// (or rejected) by every replica, so refusing it here is the cheap place.
pub fn leader_stamp(record: Record) -> Result<(Record, Vec<u8>), String> {
    admissible(&record)?;
    stamp_local(record)
}

/// Whether the leader may propose `record` (see [`leader_stamp`]).
pub fn admissible(record: &Record) -> Result<(), String> {
    let (tag, payload) = if record.tag == TAG_SPOOLED {
        let spooled = decode_spooled(&record.payload)?;
        (spooled.tag, std::borrow::Cow::Owned(spooled.payload))
    } else {
        (record.tag, std::borrow::Cow::Borrowed(&record.payload))
    };
    match decode_contents(tag, &payload)? {
        Contents::Spans(spans) => spans.iter().try_for_each(check::admissible_span),
        Contents::Logs(logs) => logs.iter().try_for_each(check::admissible_log),
        Contents::Metrics(points) => points.iter().try_for_each(check::admissible_metric),
        // Checked when stamped.
        Contents::Comment(_) | Contents::Keys(_) => Ok(()),
        Contents::Check
        | Contents::Retention(_)
        | Contents::ColdMove(_)
        | Contents::ColdUpload(_) => Ok(()),
    }
}

/// Run by the leader on every record just before proposing it: fills in the
/// values that must be chosen exactly once (a comment's id and time). Returns
/// the record to propose and the bytes to hand back to the writer. Records
/// built by this process's own ingest go through this alone: their telemetry
/// was converted and checked here, and decoding it again would cost the
/// leader a second decode of every export.
pub fn stamp_local(record: Record) -> Result<(Record, Vec<u8>), String> {
    stamp_at(record, crate::model::now_unix_nanos())
}

fn stamp_at(record: Record, now_unix_nanos: u64) -> Result<(Record, Vec<u8>), String> {
    // Refused before it reaches the log: a node of an older version
    // forwarding a record this version no longer reads.
    if RETIRED_TAGS.contains(&record.tag) {
        return Err(retired_tag_message(record.tag));
    }
    match record.tag {
        TAG_COMMENT => {
            let draft: Comment =
                decode(&record.payload).map_err(|e| format!("undecodable comment: {e}"))?;
            comments::validate(&draft)?;
            let stamped = comments::stamp(draft, now_unix_nanos, &record.batch_key);
            let payload = encode(&stamped);
            Ok((
                Record {
                    payload: payload.clone(),
                    ..record
                },
                payload,
            ))
        }
        TAG_KEYS => {
            let mut cmd: crate::auth::KeyCommand =
                decode(&record.payload).map_err(|e| format!("undecodable key command: {e}"))?;
            cmd.validate()?;
            cmd.stamp(now_unix_nanos);
            let payload = encode(&cmd);
            Ok((
                Record {
                    payload: payload.clone(),
                    ..record
                },
                payload,
            ))
        }
        TAG_RETENTION => {
            let mut cut = crate::retention::RetentionCut::decode(&record.payload)
                .map_err(|e| format!("undecodable retention cut: {e}"))?;
            cut.stamped_unix_nanos = now_unix_nanos;
            Ok((
                Record {
                    payload: encode(&cut),
                    ..record
                },
                Vec::new(),
            ))
        }
        // A move's range was chosen from the proposing leader's clock.
        TAG_SPANS | TAG_LOGS | TAG_METRICS | TAG_SPOOLED | TAG_CHECK | TAG_COLD_MOVE
        | TAG_COLD_UPLOAD => Ok((record, Vec::new())),
        other => Err(format!(
            "unknown record tag {other}; was it written by a newer tael-raft?"
        )),
    }
}

pub fn retired_tag_message(tag: u8) -> String {
    format!(
        "record tag {tag} carries spans or logs in the format before data format {}, \
         which this version no longer reads; see docs/operations.md, \
         Upgrading across a data format change",
        DATA_FORMAT_VERSION
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cold_upload_every_replica_cannot_apply_is_rejected_at_decode() {
        use crate::state::cold::{ColdUpload, MovedRecord, Signal};
        let good = ColdUpload {
            signal: Signal::Spans,
            from_unix_nanos: 0,
            to_unix_nanos: 100,
            object: "spans/spans-00000000000000000003-0a.parquet".into(),
            min_time_unix_nanos: 5,
            max_time_unix_nanos: 5,
            rows: 1,
            bytes: 10,
            pending: false,
            records: vec![MovedRecord {
                key: vec![7; 24],
                digest: 9,
            }],
        };
        let r = cold_upload_record(&good);
        assert_eq!(r.tag, TAG_COLD_UPLOAD);
        assert!(matches!(
            decode_contents(r.tag, &r.payload),
            Ok(Contents::ColdUpload(u)) if u == good
        ));
        assert!(admissible(&r).is_ok());
        let mut short_key = good.clone();
        short_key.records[0].key.pop();
        let r = cold_upload_record(&short_key);
        assert!(decode_contents(r.tag, &r.payload).is_err());
        assert!(decode_contents(TAG_COLD_UPLOAD, &[1, 2, 3]).is_err());
    }

    use super::*;

    #[test]
    fn payloads_compress_and_come_back() {
        let text = b"checkout checkout checkout GET /api/cart 200 ".repeat(50);
        let packed = compressed(&text);
        assert!(packed.len() < text.len() / 4, "{} bytes", packed.len());
        assert_eq!(decompressed(&packed).unwrap(), text);
    }

    #[test]
    fn damaged_or_hostile_payloads_are_refused_without_a_panic() {
        let packed = compressed(b"some span bytes, some span bytes");
        let mut bomb = vec![LZ4_BLOCK];
        bomb.extend_from_slice(&u32::MAX.to_le_bytes());
        bomb.extend_from_slice(&[0; 16]);
        for bad in [
            &b""[..],
            &[0u8, 1, 2][..],
            &[LZ4_BLOCK][..],
            &[LZ4_BLOCK, 1, 0][..],
            &packed[..packed.len() - 3],
            &bomb[..],
        ] {
            assert!(decompressed(bad).is_err(), "{bad:?}");
        }
        assert!(decode_spans(&bomb).unwrap_err().contains("claims"));
    }

    fn draft(trace: u8) -> Comment {
        Comment {
            id: String::new(),
            trace_id: [trace; 16],
            span_id: None,
            author: "a".into(),
            body: "b".into(),
            created_at_unix_nanos: 0,
        }
    }

    #[test]
    fn a_named_comment_request_gets_the_same_batch_key_on_its_trace_only() {
        let key = |trace, name| comment_record(&draft(trace), name).batch_key;
        assert_eq!(key(1, Some("r")), key(1, Some("r")));
        assert_ne!(key(1, Some("r")), key(2, Some("r")));
        assert_ne!(key(1, Some("r")), key(1, Some("s")));
        assert_ne!(key(1, None), key(1, None));
    }

    #[test]
    fn a_comment_stamped_again_under_its_batch_key_gets_the_same_id() {
        let record = comment_record(&draft(1), Some("r"));
        let (a, _) = stamp_at(record.clone(), 10).unwrap();
        let (b, _) = stamp_at(record, 20).unwrap();
        let id = |r: &Record| decode::<Comment>(&r.payload).unwrap().id;
        assert_eq!(id(&a), id(&b));
    }

    #[test]
    fn the_leader_refuses_what_it_could_not_apply() {
        let unknown = Record {
            tag: FIRST_APP_TAG + 60,
            batch_key: [0; BATCH_KEY_LEN],
            payload: vec![],
        };
        assert!(leader_stamp(unknown)
            .unwrap_err()
            .contains("unknown record tag"));
        let garbage = Record {
            tag: TAG_LOGS,
            batch_key: [0; BATCH_KEY_LEN],
            payload: vec![0xff; 4],
        };
        assert!(leader_stamp(garbage).unwrap_err().contains("undecodable"));
        let fine = spans_record(vec![SpanRecord {
            trace_id: [1; 16],
            span_id: [1; 8],
            service: "svc".into(),
            ..Default::default()
        }]);
        assert!(leader_stamp(fine).is_ok());
    }
}
