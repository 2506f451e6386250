//! Applying a retention cut (`crate::retention`): deleting, in one batch,
//! what lies below the floors, with every index entry, counter and blob
//! that pointed at it.
//!
//! A cut is applied in a batch of its own (`state::apply` ends the batch
//! before it and after it), so it reads the store as committed: the same
//! records on every replica, however openraft grouped the entries.
//!
//! One cut deletes at most [`MAX_RECORDS_PER_CUT`] records; what remains
//! below the floors waits for the next cut (`RetentionState::pending`), which
//! the leader proposes at once. A cut therefore never stalls apply for long,
//! however much aged out since the last.
//!
//! Blobs (LLM texts, large log bodies) are content-addressed and may be
//! shared by several records, so each reference is kept in `blob_refs`
//! (sha ++ kind ++ record key); a blob is deleted when a cut removed its last
//! reference.

use std::collections::{BTreeSet, HashSet};

use fjall::Readable;

use super::keys::{bucketed, prefixed, service_prefix, RECORD_KEY_LEN, SPAN_KEY_LEN, TIME_KEY_LEN};
use super::{ApplyBatch, HotStore, StoreError, StoreResult};
use crate::codec::decode;
use crate::llm::Sha256Digest;
use crate::model::{LogRecord, MetricPoint, SpanRecord, TraceId};
use crate::retention::{DeletedCounts, Floors, RetentionCut, RetentionState};
use crate::state::cold::{
    read_rows, ColdFile, ColdRow, RowFilter, Signal, MAX_FILES_DROPPED_PER_CUT,
};

/// Records one cut deletes (or, for LLM payloads, visits) at most.
pub const MAX_RECORDS_PER_CUT: usize = 20_000;

/// `meta`: the [`RetentionState`], as JSON.
pub(super) const META_RETENTION: &[u8] = b"retention";

/// `meta`: set once every stored record's blobs have their `blob_refs`.
pub(super) const META_BLOB_REFS_COMPLETE: &[u8] = b"blob_refs_complete";
/// References written per batch while backfilling them.
const BLOB_REF_BACKFILL_BATCH: usize = 10_000;

/// `blob_refs` key kinds (the byte after the sha).
pub(super) const REF_KIND_SPAN: u8 = b's';
pub(super) const REF_KIND_LOG: u8 = b'l';

/// `blob_refs`: sha ++ kind ++ the referencing record's key.
pub(super) fn blob_ref_key(sha: &Sha256Digest, kind: u8, record: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + 1 + record.len());
    k.extend_from_slice(sha);
    k.push(kind);
    k.extend_from_slice(record);
    k
}

/// The blobs a span's LLM texts went to.
pub(super) fn llm_blobs(s: &SpanRecord) -> impl Iterator<Item = Sha256Digest> + '_ {
    s.llm
        .iter()
        .flat_map(|l| [l.prompt_sha256, l.completion_sha256])
        .flatten()
}

/// What one cut does, bounded by its budget.
struct Cutter<'v> {
    view: &'v fjall::Snapshot,
    /// Records left to delete or visit in this cut.
    budget: usize,
    deleted: DeletedCounts,
    /// Blob references removed by this cut: a blob whose every reference is
    /// in here is deleted at the end.
    released: HashSet<Vec<u8>>,
    /// Traces some of whose spans this cut deleted, and those spans.
    traces: BTreeSet<TraceId>,
    removed_spans: HashSet<[u8; SPAN_KEY_LEN]>,
}

impl Cutter<'_> {
    fn take_one(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }
}

impl HotStore {
    /// The retention state (the default before the first cut).
    pub fn retention_state(&self) -> StoreResult<RetentionState> {
        self.retention_state_in(&self.read_view())
    }

    /// [`Self::retention_state`] as of `view`.
    pub fn retention_state_in(&self, view: &fjall::Snapshot) -> StoreResult<RetentionState> {
        match view.get(&self.keyspaces.meta, META_RETENTION)? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("retention state: {e}"))),
            None => Ok(RetentionState::default()),
        }
    }
}

impl HotStore {
    /// Gives every stored span's and log record's blobs their references,
    /// once, for a store (or snapshot) written before references existed:
    /// without them a cut would take a blob that an older record shares.
    /// Deterministic in the stored data, so every replica writes the same.
    pub(crate) fn backfill_blob_refs(&self) -> StoreResult<()> {
        let ks = &self.keyspaces;
        if ks.meta.get(META_BLOB_REFS_COMPLETE)?.is_some() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        let mut staged = 0usize;
        let mut stage = |batch: &mut fjall::OwnedWriteBatch, key: Vec<u8>| -> StoreResult<()> {
            batch.insert(&ks.blob_refs, key, b"".to_vec());
            staged += 1;
            if staged % BLOB_REF_BACKFILL_BATCH == 0 {
                std::mem::replace(batch, self.db.batch()).commit()?;
            }
            Ok(())
        };
        for kv in ks.spans.iter() {
            let (k, v) = kv.into_inner()?;
            let span: SpanRecord = decode(&v)?;
            for sha in llm_blobs(&span) {
                stage(&mut batch, blob_ref_key(&sha, REF_KIND_SPAN, &k))?;
            }
        }
        for kv in ks.logs.iter() {
            let (k, v) = kv.into_inner()?;
            let log: LogRecord = decode(&v)?;
            if let Some(sha) = &log.body_sha256 {
                stage(&mut batch, blob_ref_key(sha, REF_KIND_LOG, &k))?;
            }
        }
        // Only after every reference: an interrupted backfill starts over.
        batch.insert(&ks.meta, META_BLOB_REFS_COMPLETE.to_vec(), b"".to_vec());
        batch.commit()?;
        Ok(())
    }
}

impl ApplyBatch<'_> {
    /// Applies the cut carried by the entry at `log_index`: raises the
    /// floors and deletes what lies below them, up to the per-cut budget.
    pub fn apply_retention(
        &mut self,
        log_index: u64,
        cut: &RetentionCut,
    ) -> StoreResult<DeletedCounts> {
        assert!(
            self.is_single_entry(log_index),
            "a retention cut is applied in a batch of its own (entry {log_index})"
        );
        let store = self.store;
        let mut state = store.retention_state()?;
        state.floors = state.floors.raised_to(cut.floors());
        let view = store.read_view();
        let mut cutter = Cutter {
            view: &view,
            budget: MAX_RECORDS_PER_CUT,
            deleted: DeletedCounts::default(),
            released: HashSet::new(),
            traces: BTreeSet::new(),
            removed_spans: HashSet::new(),
        };
        let floors = state.floors;
        self.drop_spans(&mut cutter, floors.traces)?;
        self.drop_aged_rollups(&mut cutter, floors.rollups)?;
        state.llm_released_until = self.release_llm_payloads(
            &mut cutter,
            floors.llm_payloads,
            state.llm_released_until.take(),
        )?;
        self.drop_logs(&mut cutter, floors.logs)?;
        self.drop_metrics(&mut cutter, floors.metrics)?;
        let cold_remaining = self.drop_cold_files(&mut cutter, floors)?;
        self.drop_unreferenced_blobs(&mut cutter)?;
        self.forget_emptied_traces(&mut cutter)?;
        state.pending = cutter.budget == 0 || cold_remaining;
        state.last_cut_index = log_index;
        state.last_cut_unix_nanos = cut.stamped_unix_nanos;
        state.deleted.add(cutter.deleted);
        self.batch.insert(
            &store.keyspaces.meta,
            META_RETENTION.to_vec(),
            serde_json::to_vec(&state).expect("retention state serializes"),
        );
        Ok(cutter.deleted)
    }

    /// Deletes spans that started before `floor`, oldest first.
    fn drop_spans(&mut self, c: &mut Cutter<'_>, floor: u64) -> StoreResult<()> {
        let ks = &self.store.keyspaces;
        let below = floor.to_be_bytes();
        for kv in c.view.range(&ks.by_time, ..below.to_vec()) {
            if !c.take_one() {
                return Ok(());
            }
            let (k, _) = kv.into_inner()?;
            let span_key: [u8; SPAN_KEY_LEN] = k[8..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("by_time key".into()))?;
            let Some(bytes) = c.view.get(&ks.spans, span_key)? else {
                return Err(StoreError::Corrupt(format!(
                    "by_time entry without its span ({})",
                    hex(&span_key)
                )));
            };
            let span: SpanRecord = decode(&bytes)?;
            // The span ages out; its minute's rollup keeps it.
            self.unindex_aged(&span_key, &span)?;
            self.batch.remove(&ks.spans, span_key.to_vec());
            for sha in llm_blobs(&span) {
                c.released
                    .insert(blob_ref_key(&sha, REF_KIND_SPAN, &span_key));
            }
            c.traces.insert(span.trace_id);
            c.removed_spans.insert(span_key);
            c.deleted.spans += 1;
        }
        Ok(())
    }

    /// Deletes span rollups of minutes below `floor` (`rollups.rs`) and
    /// metric rollups of days below it (`metric_rollups.rs`).
    fn drop_aged_rollups(&mut self, c: &mut Cutter<'_>, floor: u64) -> StoreResult<()> {
        let dropped = self.drop_rollups(c.view, floor, c.budget)?;
        c.budget -= dropped;
        c.deleted.rollups += dropped as u64;
        let dropped = self.drop_metric_rollups(c.view, floor, c.budget)?;
        c.budget -= dropped;
        c.deleted.metric_rollups += dropped as u64;
        Ok(())
    }

    /// Releases the LLM payloads of spans that started before `floor`
    /// (the spans stay, with their payloads' hashes), resuming after the
    /// `by_time` key (hex) where the last cut stopped. Returns where this
    /// one stopped.
    fn release_llm_payloads(
        &mut self,
        c: &mut Cutter<'_>,
        floor: u64,
        resume_after: Option<String>,
    ) -> StoreResult<Option<String>> {
        let ks = &self.store.keyspaces;
        let from = match &resume_after {
            Some(h) => unhex(h).ok_or_else(|| StoreError::Corrupt("llm_released_until".into()))?,
            None => Vec::new(),
        };
        let mut last = resume_after;
        let below = floor.to_be_bytes().to_vec();
        if from >= below {
            return Ok(last);
        }
        let range = (
            std::ops::Bound::Excluded(from.clone()),
            std::ops::Bound::Excluded(below),
        );
        let range = if from.is_empty() {
            (std::ops::Bound::Unbounded, range.1)
        } else {
            range
        };
        for kv in c.view.range(&ks.by_time, range) {
            if !c.take_one() {
                break;
            }
            let (k, _) = kv.into_inner()?;
            debug_assert_eq!(k.len(), TIME_KEY_LEN);
            let span_key = &k[8..];
            if let Some(bytes) = c.view.get(&ks.spans, span_key)? {
                let span: SpanRecord = decode(&bytes)?;
                for sha in llm_blobs(&span) {
                    let r = blob_ref_key(&sha, REF_KIND_SPAN, span_key);
                    self.batch.remove(&ks.blob_refs, r.clone());
                    c.released.insert(r);
                }
            }
            last = Some(hex(&k));
        }
        Ok(last)
    }

    /// Deletes log records stamped before `floor`, with their index entries.
    fn drop_logs(&mut self, c: &mut Cutter<'_>, floor: u64) -> StoreResult<()> {
        let store = self.store;
        self.drop_records_below(
            c,
            &store.keyspaces.logs,
            floor,
            |batch, c, key, log: LogRecord| {
                batch.remove_log_entries(key, &log);
                batch.release_log_blob(c, key, &log);
                c.deleted.logs += 1;
            },
        )
    }

    /// Deletes metric points stamped before `floor`, with their index entry.
    fn drop_metrics(&mut self, c: &mut Cutter<'_>, floor: u64) -> StoreResult<()> {
        let store = self.store;
        self.drop_records_below(
            c,
            &store.keyspaces.metrics,
            floor,
            |batch, c, key, point: MetricPoint| {
                batch.remove_metric_entries(key, &point);
                c.deleted.metric_points += 1;
            },
        )
    }

    /// Hands each record of `primary` (keys: time ++ content hash) stamped
    /// before `floor` to `remove`, which stages its removal: oldest first,
    /// while the cut's budget lasts.
    fn drop_records_below<T: serde::de::DeserializeOwned>(
        &mut self,
        c: &mut Cutter<'_>,
        primary: &fjall::Keyspace,
        floor: u64,
        mut remove: impl FnMut(&mut Self, &mut Cutter<'_>, &[u8; RECORD_KEY_LEN], T),
    ) -> StoreResult<()> {
        let view = c.view;
        for kv in view.range(primary, ..floor.to_be_bytes().to_vec()) {
            if !c.take_one() {
                return Ok(());
            }
            let (k, v) = kv.into_inner()?;
            let key: [u8; RECORD_KEY_LEN] = k[..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("a record key of the wrong length".into()))?;
            remove(self, c, &key, decode(&v)?);
        }
        Ok(())
    }

    /// Removes the log record `log` stored under `key` from `logs` and its
    /// indexes: what a move to the cold tier and a retention cut both do.
    /// Its blob reference stays (see [`Self::release_log_blob`]).
    pub(super) fn remove_log_entries(&mut self, key: &[u8; RECORD_KEY_LEN], log: &LogRecord) {
        let ks = &self.store.keyspaces;
        self.batch.remove(
            &ks.log_by_service,
            bucketed(&service_prefix(&log.service), key),
        );
        self.batch
            .remove(&ks.log_by_severity, bucketed(&[log.severity.code()], key));
        if let Some(t) = &log.trace_id {
            self.batch.remove(&ks.log_by_trace, prefixed(t, key));
        }
        self.batch.remove(&ks.logs, key.to_vec());
    }

    /// Releases the blob reference of a log record leaving the store.
    fn release_log_blob(&mut self, c: &mut Cutter<'_>, key: &[u8], log: &LogRecord) {
        if let Some(sha) = &log.body_sha256 {
            let r = blob_ref_key(sha, REF_KIND_LOG, key);
            self.batch
                .remove(&self.store.keyspaces.blob_refs, r.clone());
            c.released.insert(r);
        }
    }

    /// Removes the metric point stored under `key` from `metrics` and its
    /// index (a move and a cut both do).
    pub(super) fn remove_metric_entries(
        &mut self,
        key: &[u8; RECORD_KEY_LEN],
        point: &MetricPoint,
    ) {
        let ks = &self.store.keyspaces;
        self.batch.remove(
            &ks.metric_by_name,
            bucketed(&service_prefix(&point.name), key),
        );
        self.batch.remove(&ks.metrics, key.to_vec());
    }

    /// Drops cold files whose every record lies below its signal's floor,
    /// at most [`MAX_FILES_DROPPED_PER_CUT`]: out of the manifest in this
    /// batch, their records out of the service counters, their blob
    /// references released; the files are deleted after the commit. A file
    /// straddling a floor stays (reads filter its older rows) until it is
    /// wholly below. Then releases the LLM payloads of span files wholly
    /// below the payload floor (the spans stay, with the hashes), as many
    /// files again. Returns whether more such files remain.
    fn drop_cold_files(&mut self, c: &mut Cutter<'_>, floors: Floors) -> StoreResult<bool> {
        let store = self.store;
        let mut manifest = store.cold_manifest_in(c.view)?;
        let below = |f: &ColdFile| {
            let floor = match f.signal {
                Signal::Spans => floors.traces,
                Signal::Logs => floors.logs,
                Signal::Metrics => floors.metrics,
            };
            f.max_time_unix_nanos < floor
        };
        let doomed: Vec<ColdFile> = manifest
            .files
            .iter()
            .filter(|f| below(f))
            .cloned()
            .collect();
        let released: Vec<ColdFile> = manifest
            .files
            .iter()
            .filter(|f| {
                f.signal == Signal::Spans
                    && !f.llm_released
                    && !below(f)
                    && f.max_time_unix_nanos < floors.llm_payloads
            })
            .cloned()
            .collect();
        if doomed.is_empty() && released.is_empty() {
            return Ok(false);
        }
        let remaining =
            doomed.len() > MAX_FILES_DROPPED_PER_CUT || released.len() > MAX_FILES_DROPPED_PER_CUT;
        for file in doomed.into_iter().take(MAX_FILES_DROPPED_PER_CUT) {
            for row in self.cold_file_rows(c.view, &file)? {
                self.forget_cold_row(c, file.signal, &row)?;
            }
            manifest.files.retain(|f| f != &file);
            match &file.object {
                // The leader removes the object once no manifest names it
                // (`cold::objects::orphans_to_remove`): apply stays local.
                Some(object) => self
                    .batch
                    .remove(&store.keyspaces.meta, super::cold::ledger_key(object)),
                None => self.dropped_cold_files.push(file.path(&store.cold_dir)),
            }
        }
        for file in released.into_iter().take(MAX_FILES_DROPPED_PER_CUT) {
            for row in self.cold_file_rows(c.view, &file)? {
                let span: SpanRecord = decode(&row.record)?;
                for sha in llm_blobs(&span) {
                    let r = blob_ref_key(&sha, REF_KIND_SPAN, &row.key);
                    self.batch.remove(&store.keyspaces.blob_refs, r.clone());
                    c.released.insert(r);
                }
            }
            let listed = manifest
                .files
                .iter_mut()
                .find(|f| **f == file)
                .expect("a file of the manifest");
            listed.llm_released = true;
        }
        self.stage_manifest(&manifest);
        Ok(remaining)
    }

    /// The rows of `file` a cut works on: a local file's rows, or an
    /// object's ledger (the records its upload took out of the hot tier,
    /// cut down to what a cut uses); never the object itself.
    fn cold_file_rows(&self, view: &fjall::Snapshot, file: &ColdFile) -> StoreResult<Vec<ColdRow>> {
        match &file.object {
            Some(object) => self.store.cold_ledger_in(view, object),
            None => read_cold_file(&file.path(&self.store.cold_dir)),
        }
    }

    /// Takes one record of a dropped cold file out of the store's counters
    /// and blob references.
    fn forget_cold_row(
        &mut self,
        c: &mut Cutter<'_>,
        signal: Signal,
        row: &ColdRow,
    ) -> StoreResult<()> {
        match signal {
            Signal::Spans => {
                let key: [u8; SPAN_KEY_LEN] = row.key[..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("cold span key".into()))?;
                let span: SpanRecord = decode(&row.record)?;
                self.uncount_span(&key, &span)?;
                for sha in llm_blobs(&span) {
                    c.released.insert(blob_ref_key(&sha, REF_KIND_SPAN, &key));
                }
                c.traces.insert(span.trace_id);
                c.deleted.spans += 1;
            }
            Signal::Logs => {
                let log: LogRecord = decode(&row.record)?;
                self.release_log_blob(c, &row.key, &log);
                c.deleted.logs += 1;
            }
            Signal::Metrics => c.deleted.metric_points += 1,
        }
        Ok(())
    }

    /// Deletes every blob whose references this cut all removed.
    fn drop_unreferenced_blobs(&mut self, c: &mut Cutter<'_>) -> StoreResult<()> {
        let ks = &self.store.keyspaces;
        let shas: BTreeSet<[u8; 32]> = c
            .released
            .iter()
            .map(|r| r[..32].try_into().expect("a ref key starts with a sha"))
            .collect();
        for sha in shas {
            let mut still_referenced = false;
            for kv in c.view.prefix(&ks.blob_refs, sha) {
                let k = kv.key()?;
                if !c.released.contains(&k[..]) {
                    still_referenced = true;
                    break;
                }
            }
            if !still_referenced && c.view.get(&ks.blobs, sha)?.is_some() {
                self.batch.remove(&ks.blobs, sha.to_vec());
                c.deleted.blobs += 1;
            }
        }
        Ok(())
    }

    /// Forgets traces none of whose spans remain: their mark (so a span of
    /// that id arriving later is known to be new) and their comments.
    fn forget_emptied_traces(&mut self, c: &mut Cutter<'_>) -> StoreResult<()> {
        let ks = &self.store.keyspaces;
        for trace in std::mem::take(&mut c.traces) {
            let mut remains = false;
            for kv in c.view.prefix(&ks.spans, trace) {
                let k = kv.key()?;
                if !c.removed_spans.contains(&k[..]) {
                    remains = true;
                    break;
                }
            }
            if remains {
                continue;
            }
            self.batch.remove(&ks.trace_marks, trace.to_vec());
            for kv in c.view.prefix(&ks.comments, trace) {
                self.batch.remove(&ks.comments, kv.key()?.to_vec());
            }
        }
        Ok(())
    }
}

/// Every row of the cold file at `path`. Every replica holds the same
/// counters and references, so all must take the same records out: a node
/// without the file cannot, and stops here rather than diverge.
fn read_cold_file(path: &std::path::Path) -> StoreResult<Vec<ColdRow>> {
    match read_rows(path, &RowFilter::window((0, u64::MAX))) {
        Ok(read) => Ok(read.rows),
        Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(StoreError::ColdFileMissing(path.display().to_string()))
        }
        Err(e) => Err(e),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        apply_spans, assert_log_and_metric_keyspaces_hold, keyspace_len, log_id, open_store,
        test_log, test_point, test_span,
    };
    use super::*;
    use crate::model::llm::LlmInfo;
    use crate::retention::{RetentionPolicy, RetentionState};

    const SEC: u64 = 1_000_000_000;

    /// A cut stamped at `now` keeping every signal `keep_secs`.
    fn cut_at(now: u64, keep_secs: u64) -> RetentionCut {
        RetentionCut {
            policy: RetentionPolicy {
                traces_secs: keep_secs,
                logs_secs: keep_secs,
                metrics_secs: keep_secs,
                llm_payloads_secs: keep_secs,
                rollups_secs: keep_secs,
            },
            stamped_unix_nanos: now,
        }
    }

    fn apply_cut(store: &HotStore, index: u64, cut: RetentionCut) -> DeletedCounts {
        let mut b = store.begin();
        b.begin_entry(index);
        let deleted = b.apply_retention(index, &cut).unwrap();
        b.commit(Some(log_id(index)), None).unwrap();
        deleted
    }

    fn llm_span(trace: u8, span: u8, start: u64, prompt: &str) -> SpanRecord {
        let mut s = test_span(trace, span, start);
        s.llm = Some(LlmInfo {
            prompt_text: Some(prompt.into()),
            prompt_sha256: Some(crate::llm::sha256(prompt.as_bytes())),
            ..Default::default()
        });
        s
    }

    #[test]
    fn spans_below_the_floor_go_with_their_indexes_counters_and_marks() {
        let (_dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![test_span(1, 1, 10 * SEC), test_span(1, 2, 10 * SEC)],
        );
        apply_spans(
            &store,
            2,
            vec![test_span(2, 1, 10 * SEC), test_span(2, 2, 100 * SEC)],
        );
        let deleted = apply_cut(&store, 3, cut_at(150 * SEC, 100));
        assert_eq!(deleted.spans, 3);
        assert!(store.trace(&[1; 16]).unwrap().is_empty());
        assert_eq!(store.trace(&[2; 16]).unwrap().len(), 1);
        let ks = &store.keyspaces;
        assert_eq!(keyspace_len(&store, &ks.by_time), 1);
        assert_eq!(keyspace_len(&store, &ks.by_service), 1);
        let stats = store.services().unwrap();
        assert_eq!(stats.len(), 1);
        assert_eq!((stats[0].1.span_count, stats[0].1.trace_count), (1, 1));
        let view = store.read_view();
        assert!(view.get(&ks.trace_marks, [1u8; 16]).unwrap().is_none());
        assert!(
            view.get(&ks.trace_marks, [2u8; 16]).unwrap().is_some(),
            "trace 2 keeps a span, so its mark stays"
        );
        let state = store.retention_state().unwrap();
        assert_eq!(state.floors.traces, 50 * SEC);
        assert!(!state.pending);
        assert_eq!((state.last_cut_index, state.deleted.spans), (3, 3));
    }

    #[test]
    fn a_span_of_a_forgotten_trace_arriving_later_is_stored_and_counted_once() {
        let (_dir, store) = open_store();
        apply_spans(&store, 1, vec![test_span(1, 1, 10 * SEC)]);
        apply_cut(&store, 2, cut_at(100 * SEC, 10));
        apply_spans(&store, 3, vec![test_span(1, 1, 95 * SEC)]);
        apply_spans(&store, 4, vec![test_span(1, 1, 95 * SEC)]);
        assert_eq!(store.trace(&[1; 16]).unwrap().len(), 1);
        let stats = store.services().unwrap();
        assert_eq!((stats[0].1.span_count, stats[0].1.trace_count), (1, 1));
    }

    #[test]
    fn a_shared_llm_blob_lives_while_one_span_references_it() {
        let (_dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![
                llm_span(1, 1, 10 * SEC, "shared prompt"),
                llm_span(2, 1, 90 * SEC, "shared prompt"),
            ],
        );
        let sha = crate::llm::sha256(b"shared prompt");
        let deleted = apply_cut(&store, 2, cut_at(100 * SEC, 50));
        assert_eq!((deleted.spans, deleted.blobs), (1, 0));
        assert!(store.blob(&sha).unwrap().is_some(), "span 2 still uses it");
        let deleted = apply_cut(&store, 3, cut_at(200 * SEC, 50));
        assert_eq!((deleted.spans, deleted.blobs), (1, 1));
        assert!(store.blob(&sha).unwrap().is_none());
        assert_eq!(keyspace_len(&store, &store.keyspaces.blob_refs), 0);
    }

    #[test]
    fn llm_payloads_go_before_their_spans_which_keep_the_hash() {
        let (_dir, store) = open_store();
        apply_spans(&store, 1, vec![llm_span(1, 1, 10 * SEC, "old prompt")]);
        apply_spans(&store, 2, vec![llm_span(2, 1, 90 * SEC, "new prompt")]);
        let mut cut = cut_at(100 * SEC, 1000);
        cut.policy.llm_payloads_secs = 50;
        let deleted = apply_cut(&store, 3, cut);
        assert_eq!((deleted.spans, deleted.blobs), (0, 1));
        let old = &store.trace(&[1; 16]).unwrap()[0];
        let sha = old.llm.as_ref().unwrap().prompt_sha256.unwrap();
        assert!(store.blob(&sha).unwrap().is_none());
        assert!(store
            .blob(&crate::llm::sha256(b"new prompt"))
            .unwrap()
            .is_some());
        let state: RetentionState = store.retention_state().unwrap();
        assert!(state.llm_released_until.is_some());
        // The next cut resumes after the released span: nothing to do.
        let deleted = apply_cut(&store, 4, cut);
        assert_eq!(deleted, DeletedCounts::default());
    }

    #[test]
    fn logs_and_metric_points_below_their_floors_go_with_their_indexes() {
        let (_dir, store) = open_store();
        let big = "x".repeat(super::super::LARGE_LOG_BODY_BYTES + 1);
        let mut b = store.begin();
        b.begin_entry(1);
        b.put_log(&test_log(10 * SEC, "old"));
        b.put_log(&test_log(20 * SEC, &big));
        b.put_log(&test_log(90 * SEC, "new"));
        b.put_metric(&test_point(10 * SEC)).unwrap();
        b.put_metric(&test_point(90 * SEC)).unwrap();
        b.commit(Some(log_id(1)), None).unwrap();
        let deleted = apply_cut(&store, 2, cut_at(100 * SEC, 50));
        assert_eq!(
            (deleted.logs, deleted.metric_points, deleted.blobs),
            (2, 1, 1)
        );
        let ks = &store.keyspaces;
        assert_log_and_metric_keyspaces_hold(&store, 1);
        assert_eq!(keyspace_len(&store, &ks.blobs), 0);
        assert_eq!(keyspace_len(&store, &ks.blob_refs), 0);
    }

    #[test]
    fn a_cut_stops_at_its_budget_and_the_next_one_continues() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        for i in 0..(MAX_RECORDS_PER_CUT as u64 + 5) {
            b.put_metric(&test_point(SEC + i)).unwrap();
        }
        b.commit(Some(log_id(1)), None).unwrap();
        let cut = cut_at(1000 * SEC, 10);
        assert_eq!(
            apply_cut(&store, 2, cut).metric_points,
            MAX_RECORDS_PER_CUT as u64
        );
        assert!(store.retention_state().unwrap().pending);
        assert_eq!(apply_cut(&store, 3, cut).metric_points, 5);
        let state = store.retention_state().unwrap();
        assert!(!state.pending);
        assert_eq!(state.deleted.metric_points, MAX_RECORDS_PER_CUT as u64 + 5);
    }

    #[test]
    fn floors_stay_up_when_a_later_cut_has_an_earlier_clock() {
        let (_dir, store) = open_store();
        apply_cut(&store, 1, cut_at(100 * SEC, 10));
        apply_spans(&store, 2, vec![test_span(1, 1, 50 * SEC)]);
        apply_cut(&store, 3, cut_at(20 * SEC, 10));
        assert_eq!(store.retention_state().unwrap().floors.traces, 90 * SEC);
        assert!(
            store.trace(&[1; 16]).unwrap().is_empty(),
            "a span below the standing floor goes at the next cut"
        );
    }

    #[test]
    fn references_missing_from_an_older_store_are_backfilled_before_a_cut() {
        let (_dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![
                llm_span(1, 1, 10 * SEC, "shared prompt"),
                llm_span(2, 1, 90 * SEC, "shared prompt"),
            ],
        );
        // As a version without references left it.
        let ks = &store.keyspaces;
        let mut b = store.db.batch();
        for kv in store.read_view().iter(&ks.blob_refs) {
            b.remove(&ks.blob_refs, kv.key().unwrap().to_vec());
        }
        b.remove(&ks.meta, META_BLOB_REFS_COMPLETE.to_vec());
        b.commit().unwrap();
        store.backfill_blob_refs().unwrap();
        assert_eq!(keyspace_len(&store, &ks.blob_refs), 2);
        apply_cut(&store, 2, cut_at(100 * SEC, 50));
        assert!(
            store
                .blob(&crate::llm::sha256(b"shared prompt"))
                .unwrap()
                .is_some(),
            "the younger span still uses the blob"
        );
    }

    fn apply_move(store: &HotStore, index: u64, signal: Signal, to: u64) {
        let mut b = store.begin();
        b.begin_entry(index);
        let mv = crate::state::cold::ColdMove {
            signal,
            from_unix_nanos: 0,
            to_unix_nanos: to,
        };
        b.apply_cold_move(index, &mv).unwrap();
        b.commit(Some(log_id(index)), None).unwrap();
    }

    #[test]
    fn a_cold_file_wholly_below_the_floor_goes_with_its_counters_and_blobs() {
        let (_dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![
                llm_span(1, 1, 10 * SEC, "cold prompt"),
                test_span(2, 1, 20 * SEC),
                test_span(3, 1, 90 * SEC),
            ],
        );
        apply_move(&store, 2, Signal::Spans, 15 * SEC);
        apply_move(&store, 3, Signal::Spans, 50 * SEC);
        let files = store.cold_manifest().unwrap().files;
        assert_eq!(files.len(), 2);
        // The floor at 15 s: the first file (10 s) is wholly below, the
        // second (20 s) is not.
        let mut b = store.begin();
        b.begin_entry(4);
        let deleted = b.apply_retention(4, &cut_at(115 * SEC, 100)).unwrap();
        let dropped = b.take_dropped_cold_files();
        b.commit(Some(log_id(4)), None).unwrap();
        assert_eq!((deleted.spans, deleted.blobs), (1, 1));
        assert_eq!(dropped, vec![files[0].path(store.cold_dir())]);
        assert_eq!(store.cold_manifest().unwrap().files, vec![files[1].clone()]);
        let stats = store.services().unwrap();
        assert_eq!((stats[0].1.span_count, stats[0].1.trace_count), (2, 2));
        assert!(store
            .blob(&crate::llm::sha256(b"cold prompt"))
            .unwrap()
            .is_none());
        assert_eq!(keyspace_len(&store, &store.keyspaces.blob_refs), 0);
        // A later floor above the second file drops it too.
        apply_cut(&store, 5, cut_at(150 * SEC, 100));
        assert!(store.cold_manifest().unwrap().files.is_empty());
        let stats = store.services().unwrap();
        assert_eq!((stats[0].1.span_count, stats[0].1.trace_count), (1, 1));
    }

    #[test]
    fn an_uploaded_object_below_the_floor_goes_with_its_counters_and_blobs_by_its_ledger() {
        let (_dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![
                llm_span(1, 1, 10 * SEC, "object prompt"),
                test_span(2, 1, 12 * SEC),
                test_span(3, 1, 90 * SEC),
            ],
        );
        let mv = crate::state::cold::ColdMove {
            signal: Signal::Spans,
            from_unix_nanos: 0,
            to_unix_nanos: 50 * SEC,
        };
        let up = store.prepare_cold_upload(&mv).unwrap().unwrap().upload;
        // Span (2, 1) is replaced after the upload: it stays hot and
        // counted once, and the object's copy is never uncounted.
        apply_spans(&store, 2, vec![test_span(2, 1, 95 * SEC)]);
        let mut b = store.begin();
        b.begin_entry(3);
        b.apply_cold_upload(3, &up).unwrap();
        b.commit(Some(log_id(3)), None).unwrap();
        let object = store.cold_manifest().unwrap().files[0].clone();
        assert_eq!(object.object.as_deref(), Some(up.object.as_str()));

        let mut b = store.begin();
        b.begin_entry(4);
        let deleted = b.apply_retention(4, &cut_at(120 * SEC, 100)).unwrap();
        let dropped = b.take_dropped_cold_files();
        b.commit(Some(log_id(4)), None).unwrap();
        assert_eq!((deleted.spans, deleted.blobs), (1, 1));
        assert!(dropped.is_empty(), "an object is never deleted at apply");
        assert!(store.cold_manifest().unwrap().files.is_empty());
        assert!(store
            .cold_ledger_in(&store.read_view(), &up.object)
            .is_err());
        let stats = store.services().unwrap();
        assert_eq!((stats[0].1.span_count, stats[0].1.trace_count), (2, 2));
        assert!(store
            .blob(&crate::llm::sha256(b"object prompt"))
            .unwrap()
            .is_none());
        assert_eq!(store.trace(&[2; 16]).unwrap().len(), 1);
    }

    #[test]
    fn llm_payloads_of_cold_spans_go_at_their_floor_and_the_spans_stay() {
        let (_dir, store) = open_store();
        apply_spans(&store, 1, vec![llm_span(1, 1, 10 * SEC, "cold prompt")]);
        apply_move(&store, 2, Signal::Spans, 50 * SEC);
        let mut cut = cut_at(100 * SEC, 1000);
        cut.policy.llm_payloads_secs = 50;
        let deleted = apply_cut(&store, 3, cut);
        assert_eq!((deleted.spans, deleted.blobs), (0, 1));
        assert!(store
            .blob(&crate::llm::sha256(b"cold prompt"))
            .unwrap()
            .is_none());
        let manifest = store.cold_manifest().unwrap();
        assert!(manifest.files[0].llm_released);
        // The span stays cold, with its hash; a later cut releases nothing.
        let store = std::sync::Arc::new(store);
        let cold = crate::state::cold::ColdReader::open(&store).unwrap();
        assert_eq!(cold.trace(&[1; 16]).unwrap().len(), 1);
        assert_eq!(apply_cut(&store, 4, cut), DeletedCounts::default());
        // Dropping the file later counts no blob twice.
        let deleted = apply_cut(&store, 5, cut_at(2000 * SEC, 1000));
        assert_eq!((deleted.spans, deleted.blobs), (1, 0));
    }

    #[test]
    fn cold_reads_hide_records_below_the_floor_of_a_straddling_file() {
        let (_dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![test_span(1, 1, 10 * SEC), test_span(2, 1, 30 * SEC)],
        );
        apply_move(&store, 2, Signal::Spans, 50 * SEC);
        apply_cut(&store, 3, cut_at(120 * SEC, 100));
        assert_eq!(
            store.cold_manifest().unwrap().files.len(),
            1,
            "it straddles"
        );
        let store = std::sync::Arc::new(store);
        let cold = crate::state::cold::ColdReader::open(&store).unwrap();
        assert!(cold.trace(&[1; 16]).unwrap().is_empty());
        assert_eq!(cold.trace(&[2; 16]).unwrap().len(), 1);
    }

    #[test]
    #[should_panic(expected = "a retention cut is applied in a batch of its own")]
    fn a_cut_sharing_a_batch_panics() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        b.begin_entry(2);
        let _ = b.apply_retention(2, &cut_at(100 * SEC, 10));
    }
}
