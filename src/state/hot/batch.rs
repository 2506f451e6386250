//! The write side of an apply: [`ApplyBatch`] stages everything one run of
//! committed entries writes, and commits it atomically with the new applied
//! position.
//!
//! Spans are staged in `spans.rs`, spooled-record marks in
//! `spool_marks.rs`; logs, metric points, comments, full-text documents and
//! the membership's retired nodes here.

use std::collections::{BTreeSet, HashMap, HashSet};

use fjall::OwnedWriteBatch;
use tael_consensus::{LogId, StoredMembership, BATCH_KEY_LEN};

use super::keys::{
    bucketed, comment_key, pending_doc_key, prefixed, record_key, service_prefix, META_API_KEYS,
    META_LAST_APPLIED, META_MEMBERSHIP, META_REJECTED_ENTRIES, META_RETIRED_NODES,
};
use super::retention::{blob_ref_key, REF_KIND_LOG};
use super::DocKind;
use super::{HotStore, PendingDoc, ServiceStats, StoreResult};
use crate::auth::{KeyCommand, KeySet};
use crate::codec::encode;
use crate::comments::Comment;
use crate::model::{LogRecord, MetricPoint, TraceId};

/// Log bodies beyond this go to the blob store; the record keeps a preview.
pub const LARGE_LOG_BODY_BYTES: usize = 16 * 1024;
const LOG_BODY_PREVIEW_BYTES: usize = 1024;
/// Rejected entries remembered with their reason (the count covers all).
pub const REJECTED_ENTRIES_KEPT: usize = 16;
/// A rejection reason is kept up to this length.
const REJECTION_REASON_BYTES: usize = 512;

/// Entries apply could not apply (see `state::apply`): replicated state,
/// equal on every replica at the same applied index.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RejectedEntries {
    /// Every entry ever rejected.
    pub count: u64,
    /// The latest [`REJECTED_ENTRIES_KEPT`], oldest first.
    pub recent: Vec<RejectedEntry>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RejectedEntry {
    pub log_index: u64,
    pub reason: String,
}

/// One atomic apply: everything staged here lands in a single fjall batch
/// together with `last_applied`.
///
/// A fjall batch cannot be read back, so what later entries of the same
/// batch must see (spans, counters, marks) is also kept here, in maps.
pub struct ApplyBatch<'a> {
    pub(super) store: &'a HotStore,
    pub(super) batch: OwnedWriteBatch,
    /// Spans written earlier in this batch, as encoded (decoded again only
    /// when a later entry of the batch carries the same span). Not the
    /// records: a batch can hold tens of thousands of spans of several
    /// hundred bytes each, and a table of them was copied whole at every
    /// growth and its memory faulted in afresh for every batch.
    pub(super) spans: HashMap<[u8; 24], fjall::Slice>,
    pub(super) stats: HashMap<String, ServiceStats>,
    pub(super) svc_traces: HashMap<Vec<u8>, u32>,
    /// Rollups (by key) as changed by this batch (see `rollups.rs`).
    pub(super) rollups: HashMap<Vec<u8>, crate::rollup::Rollup>,
    /// A buffer for rollup keys (see `rollups.rs`, `metric_rollups.rs`).
    pub(super) rollup_key: Vec<u8>,
    /// Metric rollups (by key) as changed by this batch.
    pub(super) metric_rollups: HashMap<Vec<u8>, crate::metric_rollup::MetricRollup>,
    /// Keys of the metric points staged in this batch: a point already
    /// among them is not folded into rollups again.
    pub(super) metric_keys: HashSet<[u8; super::keys::RECORD_KEY_LEN]>,
    /// Traces looked up in `trace_marks` in this batch: true when the trace
    /// may have spans stored before this batch.
    pub(super) trace_stored: HashMap<TraceId, bool>,
    /// The first and the current entry of this batch (see `begin_entry`),
    /// and how many full-text documents the current one queued.
    first_entry: Option<u64>,
    last_entry: Option<u64>,
    text_docs_in_entry: u32,
    /// `spool_applied` values staged in this batch (None: removed).
    pub(super) spool_marks: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The key set as changed by this batch, when a key command was applied.
    key_set: Option<KeySet>,
    /// The rejected entries as changed by this batch, when one was rejected.
    rejected: Option<RejectedEntries>,
    /// Batch keys claimed in this batch (see `claim_batch_key`).
    batch_keys: HashSet<[u8; BATCH_KEY_LEN]>,
    /// Tag index keys staged in this batch (see `tags.rs`).
    pub(super) tag_keys: super::tags::StagedTagKeys,
    /// Cold files a retention cut in this batch took out of the manifest:
    /// deleted once the batch committed (see `take_dropped_cold_files`).
    pub(super) dropped_cold_files: Vec<std::path::PathBuf>,
}

impl<'a> ApplyBatch<'a> {
    pub(super) fn new(store: &'a HotStore) -> ApplyBatch<'a> {
        ApplyBatch {
            store,
            batch: store.db.batch(),
            spans: HashMap::new(),
            stats: HashMap::new(),
            svc_traces: HashMap::new(),
            rollups: HashMap::new(),
            rollup_key: Vec::new(),
            metric_rollups: HashMap::new(),
            metric_keys: HashSet::new(),
            trace_stored: HashMap::new(),
            first_entry: None,
            last_entry: None,
            text_docs_in_entry: 0,
            spool_marks: HashMap::new(),
            key_set: None,
            rejected: None,
            batch_keys: HashSet::new(),
            tag_keys: Default::default(),
            dropped_cold_files: Vec::new(),
        }
    }
}

impl ApplyBatch<'_> {
    /// Marks the start of the entry at `log_index`; what follows belongs to
    /// it. Every entry of the batch is begun, in log order.
    pub fn begin_entry(&mut self, log_index: u64) {
        if let Some(last) = self.last_entry {
            assert!(
                log_index > last,
                "entries apply in increasing log order: entry {log_index} after entry {last}"
            );
        }
        self.first_entry.get_or_insert(log_index);
        self.last_entry = Some(log_index);
        self.text_docs_in_entry = 0;
    }

    /// Cold files this batch drops from the manifest: the caller deletes
    /// them after the commit (before it, a crash would leave the manifest
    /// naming files that are gone).
    pub fn take_dropped_cold_files(&mut self) -> Vec<std::path::PathBuf> {
        std::mem::take(&mut self.dropped_cold_files)
    }

    /// Whether the entry at `log_index` is the only one in this batch.
    pub(super) fn is_single_entry(&self, log_index: u64) -> bool {
        self.first_entry == Some(log_index) && self.last_entry == Some(log_index)
    }

    /// The entry being applied.
    fn current_entry(&self) -> u64 {
        self.last_entry
            .expect("begin_entry comes before anything an entry stages")
    }

    /// Queues `text` for the full-text index, pointing at `key`.
    pub fn queue_text(&mut self, kind: DocKind, key: Vec<u8>, time_unix_nanos: u64, text: String) {
        let k = pending_doc_key(self.current_entry(), self.text_docs_in_entry);
        self.text_docs_in_entry += 1;
        let doc = PendingDoc {
            kind,
            key,
            time_unix_nanos,
            text,
        };
        self.batch
            .insert(&self.store.keyspaces.ft_pending, k, encode(&doc));
    }

    /// Adds `ids` to the retired node ids (they left the membership).
    pub fn retire_nodes(&mut self, ids: &BTreeSet<u64>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut all = self.store.retired_node_ids()?;
        all.extend(ids);
        self.batch.insert(
            &self.store.keyspaces.meta,
            META_RETIRED_NODES.to_vec(),
            serde_json::to_vec(&all).expect("a set of ids serializes"),
        );
        Ok(())
    }

    /// Applies a key command; `Ok(Err(why))` when it could take no effect
    /// (the same on every replica: the key set is replicated state).
    pub fn apply_key_command(&mut self, cmd: KeyCommand) -> StoreResult<Result<(), String>> {
        let set = match self.key_set.take() {
            Some(set) => set,
            None => self.store.key_set()?,
        };
        let mut set = set;
        let outcome = set.apply(cmd);
        self.key_set = Some(set);
        Ok(outcome)
    }

    /// Records that the current entry was rejected (it staged nothing).
    pub fn reject_entry(&mut self, log_index: u64, reason: &str) -> StoreResult<()> {
        assert_eq!(
            log_index,
            self.current_entry(),
            "a rejection is recorded for the entry being applied"
        );
        let mut rejected = match self.rejected.take() {
            Some(r) => r,
            None => self.store.rejected_entries()?,
        };
        rejected.count += 1;
        rejected.recent.push(RejectedEntry {
            log_index,
            reason: preview(reason, REJECTION_REASON_BYTES),
        });
        let excess = rejected.recent.len().saturating_sub(REJECTED_ENTRIES_KEPT);
        rejected.recent.drain(..excess);
        self.rejected = Some(rejected);
        Ok(())
    }

    /// Whether this batch changed the key set.
    pub fn changes_keys(&self) -> bool {
        self.key_set.is_some()
    }

    /// Claims `key` for the current entry: false when an earlier entry
    /// already claimed it (a proposal made again, e.g. a retried request).
    pub fn claim_batch_key(&mut self, key: [u8; BATCH_KEY_LEN]) -> StoreResult<bool> {
        let ks = &self.store.keyspaces.batch_keys;
        if self.batch_keys.contains(&key) || ks.get(key)?.is_some() {
            return Ok(false);
        }
        let index = self.current_entry();
        self.batch
            .insert(ks, key.to_vec(), index.to_be_bytes().to_vec());
        self.batch_keys.insert(key);
        Ok(true)
    }

    pub fn put_comment(&mut self, log_index: u64, c: &Comment) {
        assert_eq!(
            log_index,
            self.current_entry(),
            "a comment is keyed by the entry that carries it"
        );
        let key = comment_key(&c.trace_id, log_index);
        self.batch
            .insert(&self.store.keyspaces.comments, key, encode(c));
    }

    /// Stages a log record and its index entries. A record already stored
    /// has the same keys, so storing it again changes nothing.
    pub fn put_log(&mut self, log: &LogRecord) {
        let store = self.store;
        let ks = &store.keyspaces;
        let value = encode(log);
        // The key comes from the record as sent, so a retry lands on it again.
        let key = record_key(log.timestamp_unix_nanos, &value);
        let body = log.body_text();
        self.queue_text(
            DocKind::Log,
            key.to_vec(),
            log.timestamp_unix_nanos,
            body.to_string(),
        );
        let value = if body.len() > LARGE_LOG_BODY_BYTES {
            let sha = crate::llm::sha256(body.as_bytes());
            self.batch
                .insert(&ks.blobs, sha.to_vec(), body.as_bytes().to_vec());
            self.batch.insert(
                &ks.blob_refs,
                blob_ref_key(&sha, REF_KIND_LOG, &key),
                b"".to_vec(),
            );
            encode(&log.with_body_in_blob(sha, preview(&body, LOG_BODY_PREVIEW_BYTES)))
        } else {
            value
        };
        self.batch.insert(
            &ks.log_by_service,
            bucketed(&service_prefix(&log.service), &key),
            b"".to_vec(),
        );
        self.batch.insert(
            &ks.log_by_severity,
            bucketed(&[log.severity.code()], &key),
            b"".to_vec(),
        );
        if let Some(t) = &log.trace_id {
            self.batch
                .insert(&ks.log_by_trace, prefixed(t, &key), b"".to_vec());
        }
        self.batch.insert(&ks.logs, key.to_vec(), value);
    }

    /// Stages a metric point, its index entry and, for a point new to the
    /// store, its rollups (idempotent like [`Self::put_log`]).
    pub fn put_metric(&mut self, point: &MetricPoint) -> StoreResult<()> {
        let store = self.store;
        let ks = &store.keyspaces;
        let value = encode(point);
        let key = record_key(point.timestamp_unix_nanos, &value);
        self.add_to_metric_rollups(point, &key)?;
        self.batch.insert(
            &ks.metric_by_name,
            bucketed(&service_prefix(&point.name), &key),
            b"".to_vec(),
        );
        self.batch.insert(&ks.metrics, key.to_vec(), value);
        Ok(())
    }

    /// Writes everything staged, with the new applied position, atomically.
    ///
    /// `last_applied` is the last entry begun (None only for a batch of no
    /// entries), and the batch's entries all lie above the applied position
    /// stored so far: applying an entry twice, or out of order, would make
    /// this replica diverge from the others.
    pub fn commit(
        mut self,
        last_applied: Option<LogId>,
        membership: Option<&StoredMembership>,
    ) -> StoreResult<()> {
        let store = self.store;
        let ks = &store.keyspaces;
        assert_eq!(
            last_applied.map(|l| l.index),
            self.last_entry,
            "the applied position a batch commits is the index of its last entry"
        );
        if let Some(first) = self.first_entry {
            let stored = store.last_applied_in(&store.read_view())?;
            assert!(
                stored.is_none_or(|s| first > s.index),
                "entry {first} applied again: the store has applied up to {stored:?}"
            );
        }
        for (svc, stats) in self.stats.drain() {
            assert!(
                stats.error_count <= stats.span_count && stats.trace_count <= stats.span_count,
                "service {svc}: counters out of step: {stats:?}"
            );
            if stats.span_count == 0 {
                self.batch.remove(&ks.svc_stats, svc.into_bytes());
            } else {
                self.batch
                    .insert(&ks.svc_stats, svc.into_bytes(), encode(&stats));
            }
        }
        for (k, n) in self.svc_traces.drain() {
            if n == 0 {
                self.batch.remove(&ks.svc_traces, k);
            } else {
                self.batch
                    .insert(&ks.svc_traces, k, n.to_le_bytes().to_vec());
            }
        }
        self.stage_rollups();
        self.stage_metric_rollups();
        if let Some(keys) = self.key_set.take() {
            self.batch.insert(
                &ks.meta,
                META_API_KEYS.to_vec(),
                serde_json::to_vec(&keys).expect("a key set serializes"),
            );
        }
        if let Some(rejected) = self.rejected.take() {
            self.batch.insert(
                &ks.meta,
                META_REJECTED_ENTRIES.to_vec(),
                serde_json::to_vec(&rejected).expect("rejected entries serialize"),
            );
        }
        let json = serde_json::to_vec(&last_applied).expect("log id serializes");
        self.batch
            .insert(&ks.meta, META_LAST_APPLIED.to_vec(), json);
        if let Some(m) = membership {
            self.batch.insert(
                &ks.meta,
                META_MEMBERSHIP.to_vec(),
                serde_json::to_vec(m).expect("membership serializes"),
            );
        }
        self.batch.commit()?;
        store.stored_tag_keys.remember(self.tag_keys.take_keys());
        Ok(())
    }
}

/// The first `max_bytes` of `s`, cut at a character boundary.
fn preview(s: &str, max_bytes: usize) -> String {
    let mut end = max_bytes.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{apply_spans, log_id, open_store, test_span};

    #[test]
    #[should_panic(expected = "entries apply in increasing log order")]
    fn an_entry_begun_out_of_order_panics() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(5);
        b.begin_entry(4);
    }

    #[test]
    #[should_panic(expected = "entry 3 applied again")]
    fn an_entry_at_or_below_the_applied_position_panics() {
        let (_dir, store) = open_store();
        apply_spans(&store, 3, vec![test_span(1, 1, 100)]);
        apply_spans(&store, 3, vec![test_span(1, 1, 100)]);
    }

    #[test]
    #[should_panic(expected = "the index of its last entry")]
    fn a_commit_at_another_position_than_its_last_entry_panics() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        b.begin_entry(2);
        b.commit(Some(log_id(1)), None).unwrap();
    }

    #[test]
    #[should_panic(expected = "begin_entry comes before")]
    fn a_log_staged_outside_an_entry_panics() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.put_log(&crate::model::LogRecord {
            timestamp_unix_nanos: 1,
            severity: crate::model::Severity::Info,
            body: Some(crate::model::AnyValue::String("b".into())),
            service: "s".into(),
            ..Default::default()
        });
    }

    #[test]
    fn consecutive_batches_advance_the_applied_position() {
        let (_dir, store) = open_store();
        apply_spans(&store, 1, vec![test_span(1, 1, 100)]);
        apply_spans(&store, 2, vec![test_span(2, 1, 100)]);
        assert_eq!(store.applied_state().unwrap().0, Some(log_id(2)));
        // An empty batch (no entries) leaves nothing to check and may
        // write no position.
        store.begin().commit(None, None).unwrap();
    }
}
