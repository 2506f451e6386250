//! How keys are built, keyspace by keyspace.
//!
//! Every integer in a key is big-endian, so byte order is numeric order and
//! a range over keys is a range over times or indexes. Variable-length parts
//! (service and metric names) are length-prefixed (`len16`: u16 BE), so one
//! name is never a prefix of another's keys.
//!
//! Indexes over spans, logs and metric points lead with a time bucket (an
//! hour for spans' `by_service`, a day for the log and metric indexes): new
//! keys then only overlap the current bucket's tables, so compaction never
//! re-merges older history (a name-first key would interleave every new
//! table with all of it).

use sha2::{Digest, Sha256};

use crate::metric_rollup::{Resolution, SeriesId};
use crate::model::TraceId;

/// Span key: trace id ++ span id.
pub(super) const SPAN_KEY_LEN: usize = 16 + 8;
/// Span time key: start ++ span key.
pub(super) const TIME_KEY_LEN: usize = 8 + SPAN_KEY_LEN;
/// Length of the content key that identifies a log record or metric point.
const CONTENT_KEY_LEN: usize = 16;
/// Time ++ content key: the tail of every log and metric key.
pub(super) const RECORD_KEY_LEN: usize = 8 + CONTENT_KEY_LEN;
/// Width of the time buckets that lead `by_service` keys.
pub(super) const SERVICE_BUCKET_NANOS: u64 = 3600 * 1_000_000_000;
/// Width of the time buckets that lead the service, severity and name
/// indexes of logs and metrics. A day keeps the buckets a long window
/// visits few.
pub(super) const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

/// `meta`: `Option<LogId>` of the last applied entry.
pub(super) const META_LAST_APPLIED: &[u8] = b"last_applied";
/// `meta`: the last applied `StoredMembership`.
pub(super) const META_MEMBERSHIP: &[u8] = b"membership";
/// `meta`: ids of nodes removed from the membership: never admitted again.
pub(super) const META_RETIRED_NODES: &[u8] = b"retired_node_ids";
/// The API key set (`auth::KeySet`), as JSON.
pub(super) const META_API_KEYS: &[u8] = b"api_keys";
/// `meta`: entries apply rejected ([`super::RejectedEntries`], JSON).
pub(super) const META_REJECTED_ENTRIES: &[u8] = b"rejected_entries";
/// `meta`: set once every stored span's trace has its mark in `trace_marks`.
pub(super) const META_TRACE_MARKS_COMPLETE: &[u8] = b"trace_marks_complete";

/// `spool_applied` key kinds (the byte after the origin).
pub(super) const SPOOL_KIND_FLOOR: u8 = 0;
pub(super) const SPOOL_KIND_GENERATION: u8 = 1;

/// `spans`: trace id ++ span id.
pub(super) fn span_key(t: &TraceId, s: &[u8; 8]) -> [u8; SPAN_KEY_LEN] {
    let mut k = [0u8; SPAN_KEY_LEN];
    k[..16].copy_from_slice(t);
    k[16..].copy_from_slice(s);
    k
}

/// `by_time` and `by_error`: start ++ span key.
pub(super) fn time_key(start: u64, span: &[u8; SPAN_KEY_LEN]) -> [u8; TIME_KEY_LEN] {
    let mut k = [0u8; TIME_KEY_LEN];
    k[..8].copy_from_slice(&start.to_be_bytes());
    k[8..].copy_from_slice(span);
    k
}

/// The lowest and highest time keys of spans that started in `[from, to]`.
pub(super) fn time_key_bounds(from: u64, to: u64) -> ([u8; TIME_KEY_LEN], [u8; TIME_KEY_LEN]) {
    let mut lo = [0u8; TIME_KEY_LEN];
    lo[..8].copy_from_slice(&from.to_be_bytes());
    let mut hi = [0xffu8; TIME_KEY_LEN];
    hi[..8].copy_from_slice(&to.to_be_bytes());
    (lo, hi)
}

/// len16 ++ name: a service or metric name inside a key.
pub(super) fn service_prefix(service: &str) -> Vec<u8> {
    // Apply never stores a name this long (`payload::MAX_INDEX_NAME_BYTES`),
    // so a longer one (a query's) gets a prefix no stored key has.
    let len = u16::try_from(service.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + service.len() + 32);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(service.as_bytes());
    k
}

/// `by_service` keys of one hour and service: hour ++ len16 ++ service.
pub(super) fn service_bucket_prefix(bucket: u64, service: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + 2 + service.len() + 32);
    k.extend_from_slice(&bucket.to_be_bytes());
    k.extend_from_slice(&service_prefix(service));
    k
}

/// `by_service`: hour ++ len16 ++ service ++ start ++ span key.
pub(super) fn service_key(service: &str, start: u64, span: &[u8; SPAN_KEY_LEN]) -> Vec<u8> {
    let mut k = service_bucket_prefix(start / SERVICE_BUCKET_NANOS, service);
    k.extend_from_slice(&time_key(start, span));
    k
}

/// `svc_traces`: len16 ++ service ++ trace id.
pub(super) fn svc_trace_key(service: &str, trace: &TraceId) -> Vec<u8> {
    let mut k = service_prefix(service);
    k.extend_from_slice(trace);
    k
}

/// `rollups`: minute ++ len16 ++ service ++ operation. Minute first, like
/// the other time-bucketed indexes: new keys only touch the current minute,
/// and a window is one range.
pub(super) fn rollup_key(minute: u64, service: &str, operation: &str) -> Vec<u8> {
    let mut k = Vec::new();
    rollup_key_into(&mut k, minute, service, operation);
    k
}

/// [`rollup_key`] into `k` (cleared first).
pub(super) fn rollup_key_into(k: &mut Vec<u8>, minute: u64, service: &str, operation: &str) {
    k.clear();
    k.extend_from_slice(&minute.to_be_bytes());
    k.extend_from_slice(&name_len16(service));
    k.extend_from_slice(service.as_bytes());
    k.extend_from_slice(operation.as_bytes());
}

/// `rollups` keys of one minute.
pub(super) fn rollup_minute_prefix(minute: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + 2 + 64);
    k.extend_from_slice(&minute.to_be_bytes());
    k
}

/// `metric_rollups` keys of one resolution and day: resolution ++ day.
/// The day (of the bucket's start) leads, as in the other day-bucketed
/// indexes, so new rollups only overlap the current day's tables.
pub(super) fn metric_rollup_day_key(res: Resolution, day: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 8 + 2 + 64 + 16 + 8);
    k.push(res.key_byte());
    k.extend_from_slice(&day.to_be_bytes());
    k
}

/// `metric_rollups` keys of one resolution, day and metric name:
/// resolution ++ day ++ len16 ++ name.
pub(super) fn metric_rollup_name_prefix(res: Resolution, day: u64, name: &str) -> Vec<u8> {
    let mut k = metric_rollup_day_key(res, day);
    k.extend_from_slice(&service_prefix(name));
    k
}

/// `metric_rollups`: resolution ++ day ++ len16 ++ name ++ series id ++
/// bucket, into `k` (cleared first). A series' buckets of one day are one
/// prefix, in time order.
pub(super) fn metric_rollup_key_into(
    k: &mut Vec<u8>,
    res: Resolution,
    name: &str,
    series: &SeriesId,
    bucket: u64,
) {
    k.clear();
    k.push(res.key_byte());
    k.extend_from_slice(&(res.bucket_start(bucket) / DAY_NANOS).to_be_bytes());
    k.extend_from_slice(&name_len16(name));
    k.extend_from_slice(name.as_bytes());
    k.extend_from_slice(&series.0);
    k.extend_from_slice(&bucket.to_be_bytes());
}

/// The series id and bucket that end a `metric_rollups` key.
pub(super) fn split_metric_rollup_key(k: &[u8]) -> Option<(SeriesId, u64)> {
    let tail = k.len().checked_sub(16 + 8)?;
    let series = SeriesId(k[tail..tail + 16].try_into().ok()?);
    let bucket = u64::from_be_bytes(k[tail + 16..].try_into().ok()?);
    Some((series, bucket))
}

/// `tags` key kinds (the first byte): a tag name, a tag value, an operation.
/// Scopes and value types come as the bytes `tags::TagScope::byte` and
/// `tags::TagType::byte` give.
const TAG_KIND_NAME: u8 = b'n';
const TAG_KIND_VALUE: u8 = b'v';
const TAG_KIND_OPERATION: u8 = b'o';

/// `tags`: n ++ scope, the prefix of one scope's tag names.
pub(super) fn tag_names_prefix(scope: u8) -> Vec<u8> {
    vec![TAG_KIND_NAME, scope]
}

/// `tags`: n ++ scope ++ name. The name ends the key, so it needs no length.
#[cfg(test)]
pub(super) fn tag_name_key(scope: u8, name: &str) -> Vec<u8> {
    let mut k = Vec::new();
    tag_name_key_into(&mut k, scope, name);
    k
}

/// [`tag_name_key`] into `k` (cleared first): apply builds keys in one
/// buffer and allocates only for keys its batch lacks.
pub(super) fn tag_name_key_into(k: &mut Vec<u8>, scope: u8, name: &str) {
    k.clear();
    k.extend_from_slice(&[TAG_KIND_NAME, scope]);
    k.extend_from_slice(name.as_bytes());
}

/// `tags`: v ++ scope ++ len16 ++ name, the prefix of one tag's values.
pub(super) fn tag_values_prefix(scope: u8, name: &str) -> Vec<u8> {
    let mut k = vec![TAG_KIND_VALUE, scope];
    k.extend_from_slice(&service_prefix(name));
    k
}

/// `tags`: v ++ scope ++ len16 ++ name ++ type ++ value (its string form).
#[cfg(test)]
pub(super) fn tag_value_key(scope: u8, name: &str, ty: u8, value: &str) -> Vec<u8> {
    let mut k = Vec::new();
    tag_value_key_into(&mut k, scope, name, ty, value);
    k
}

/// [`tag_value_key`] into `k` (cleared first).
pub(super) fn tag_value_key_into(k: &mut Vec<u8>, scope: u8, name: &str, ty: u8, value: &str) {
    k.clear();
    k.extend_from_slice(&[TAG_KIND_VALUE, scope]);
    k.extend_from_slice(&name_len16(name));
    k.extend_from_slice(name.as_bytes());
    k.push(ty);
    k.extend_from_slice(value.as_bytes());
}

/// `tags`: o ++ len16 ++ service, the prefix of one service's operations.
pub(super) fn operations_prefix(service: &str) -> Vec<u8> {
    let mut k = vec![TAG_KIND_OPERATION];
    k.extend_from_slice(&service_prefix(service));
    k
}

/// `tags`: o ++ len16 ++ service ++ operation.
#[cfg(test)]
pub(super) fn operation_key(service: &str, operation: &str) -> Vec<u8> {
    let mut k = Vec::new();
    operation_key_into(&mut k, service, operation);
    k
}

/// [`operation_key`] into `k` (cleared first).
pub(super) fn operation_key_into(k: &mut Vec<u8>, service: &str, operation: &str) {
    k.clear();
    k.push(TAG_KIND_OPERATION);
    k.extend_from_slice(&name_len16(service));
    k.extend_from_slice(service.as_bytes());
    k.extend_from_slice(operation.as_bytes());
}

/// The len16 of a name inside a key, as [`service_prefix`] writes it.
fn name_len16(name: &str) -> [u8; 2] {
    u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes()
}

/// `logs` and `metrics`: time ++ a hash of the record's encoding. The same
/// record always gets the same key, on every replica and on every retry.
pub(super) fn record_key(time_unix_nanos: u64, encoded: &[u8]) -> [u8; RECORD_KEY_LEN] {
    let digest = Sha256::digest(encoded);
    let mut k = [0u8; RECORD_KEY_LEN];
    k[..8].copy_from_slice(&time_unix_nanos.to_be_bytes());
    k[8..].copy_from_slice(&digest[..CONTENT_KEY_LEN]);
    k
}

/// The leading time of a key that starts with one (record and time keys).
pub(super) fn leading_time(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[..8].try_into().expect("the key leads with a time"))
}

/// day ++ prefix: where a day-bucketed index's keys of one prefix start.
pub(super) fn day_prefix(day: u64, prefix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + prefix.len() + RECORD_KEY_LEN);
    k.extend_from_slice(&day.to_be_bytes());
    k.extend_from_slice(prefix);
    k
}

/// `log_by_service`, `log_by_severity`, `metric_by_name`: day ++ prefix ++
/// record key, the day taken from the record's time.
pub(super) fn bucketed(prefix: &[u8], record_key: &[u8; RECORD_KEY_LEN]) -> Vec<u8> {
    prefixed(
        &day_prefix(leading_time(record_key) / DAY_NANOS, prefix),
        record_key,
    )
}

/// `log_by_trace` (prefix: trace id), and the day-bucketed indexes: prefix
/// ++ record key.
pub(super) fn prefixed(prefix: &[u8], record_key: &[u8; RECORD_KEY_LEN]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + RECORD_KEY_LEN);
    k.extend_from_slice(prefix);
    k.extend_from_slice(record_key);
    k
}

/// `comments`: trace id ++ log index of the entry that carried it.
pub(super) fn comment_key(trace: &TraceId, log_index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(trace);
    k.extend_from_slice(&log_index.to_be_bytes());
    k
}

/// `ft_pending`: log index ++ u32 BE number of the document in its entry.
pub(super) fn pending_doc_key(log_index: u64, doc_in_entry: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&log_index.to_be_bytes());
    k.extend_from_slice(&doc_in_entry.to_be_bytes());
    k
}

/// `spool_applied`: origin ++ 0 → that origin's SpoolFloor.
pub(super) fn spool_floor_key(origin: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.extend_from_slice(&origin.to_be_bytes());
    k.push(SPOOL_KIND_FLOOR);
    k
}

/// `spool_applied`: origin ++ 1, the prefix of its generations' marks.
pub(super) fn spool_generations_prefix(origin: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.extend_from_slice(&origin.to_be_bytes());
    k.push(SPOOL_KIND_GENERATION);
    k
}

/// `spool_applied`: origin ++ 1 ++ generation → highest seq applied.
pub(super) fn spool_generation_key(origin: u64, generation: u64) -> Vec<u8> {
    let mut k = spool_generations_prefix(origin);
    k.extend_from_slice(&generation.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_key_sorts_by_hour_then_service_then_start() {
        let span = span_key(&[1; 16], &[2; 8]);
        let early_b = service_key("b", 10, &span);
        let late_a = service_key("a", SERVICE_BUCKET_NANOS + 5, &span);
        let late_b = service_key("b", SERVICE_BUCKET_NANOS + 5, &span);
        let later_b = service_key("b", SERVICE_BUCKET_NANOS + 6, &span);
        assert!(early_b < late_a && late_a < late_b && late_b < later_b);
        assert!(late_b.ends_with(&time_key(SERVICE_BUCKET_NANOS + 5, &span)));
    }

    #[test]
    fn a_record_key_depends_on_time_and_content_only() {
        assert_eq!(record_key(5, b"x"), record_key(5, b"x"));
        assert_ne!(record_key(5, b"x"), record_key(5, b"y"));
        assert_eq!(leading_time(&record_key(5, b"x")), 5);
        assert!(record_key(5, b"z") < record_key(6, b"a"));
    }

    #[test]
    fn a_bucketed_key_leads_with_the_records_day() {
        let key = record_key(3 * DAY_NANOS + 7, b"r");
        let k = bucketed(&service_prefix("svc"), &key);
        assert_eq!(k.len(), 8 + 2 + 3 + RECORD_KEY_LEN);
        assert!(k.starts_with(&day_prefix(3, &service_prefix("svc"))));
        assert!(k.ends_with(&key));
    }

    #[test]
    fn names_that_prefix_each_other_have_disjoint_keys() {
        assert!(!service_prefix("ab").starts_with(&service_prefix("a")));
    }

    #[test]
    fn tag_keys_of_one_kind_scope_and_name_share_a_prefix_no_other_has() {
        // Scope and type bytes as `tags::TagScope` and `tags::TagType` give them.
        const SPAN: u8 = b's';
        const RESOURCE: u8 = b'r';
        const STRING: u8 = b's';
        let v = tag_value_key(SPAN, "http.route", STRING, "/pay");
        assert!(v.starts_with(&tag_values_prefix(SPAN, "http.route")));
        assert!(!v.starts_with(&tag_values_prefix(SPAN, "http")));
        assert!(!v.starts_with(&tag_values_prefix(RESOURCE, "http.route")));
        assert_eq!(v.len(), 2 + 2 + "http.route".len() + 1 + "/pay".len());
        let n = tag_name_key(RESOURCE, "service.name");
        assert!(n.starts_with(&tag_names_prefix(RESOURCE)));
        assert!(!n.starts_with(&tag_names_prefix(SPAN)));
        let o = operation_key("ab", "GET /");
        assert!(o.starts_with(&operations_prefix("ab")));
        assert!(!o.starts_with(&operations_prefix("a")));
        assert!(operation_key("ab", "x").starts_with(&operations_prefix("ab")));
        // Kinds never share a prefix.
        for (a, b) in [(&n, &v), (&n, &o), (&v, &o)] {
            assert_ne!(a[0], b[0]);
        }
    }

    #[test]
    fn a_spool_generation_key_lies_under_its_origins_prefix_only() {
        let k = spool_generation_key(7, 3);
        assert!(k.starts_with(&spool_generations_prefix(7)));
        assert!(!k.starts_with(&spool_floor_key(7)));
        assert_eq!(k.len(), 17);
    }
}
