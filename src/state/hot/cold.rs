//! Applying a move to the cold tier (`TAG_COLD_MOVE`, see
//! [`crate::state::cold`]): the oldest records of one signal leave the hot
//! tier for a Parquet file, and the manifest (in `meta`) names the file.
//!
//! A move is applied in a batch of its own (`state::apply` ends the batch
//! before and after it), so it reads the store as committed: the same
//! records on every replica, so the same file. The file is written and made
//! durable before the batch that removes the records commits; a crash in
//! between leaves the records hot and the file an orphan, and the move
//! applies again after the restart (rewriting the same file).
//!
//! What stays in the hot tier: service counters (`svc_stats`,
//! `svc_traces`: they count retained spans in either tier), trace marks,
//! tags, comments, blobs and blob references (cold spans and logs still
//! reference their texts). A retention cut releases those when it drops
//! the file (`retention.rs`).

use std::path::{Path, PathBuf};

use fjall::Readable;

use super::keys::{time_key_bounds, RECORD_KEY_LEN, SPAN_KEY_LEN};
use super::{ApplyBatch, HotStore, StoreError, StoreResult};
use crate::codec::decode;
use crate::model::{LogRecord, MetricPoint, SpanRecord};
use crate::state::cold::{
    self, record_digest, write_durably, write_file, ColdFile, ColdManifest, ColdMove, ColdRow,
    ColdUpload, MovedRecord, Signal, MAX_RECORD_BYTES_PER_MOVE, MAX_ROWS_PER_MOVE,
};

/// `meta`: the [`ColdManifest`], as JSON.
pub(super) const META_COLD_MANIFEST: &[u8] = b"cold_manifest";
/// `meta`: per object of the shared store, `cold_ledger/<object>`: what a
/// retention cut needs of its records to take them out of the counters and
/// blob references (see [`ledger_record`]), written when the upload is
/// applied. A cut cannot read the object: apply never touches the network.
const META_COLD_LEDGER_PREFIX: &str = "cold_ledger/";

/// The `meta` key of `object`'s ledger.
pub(super) fn ledger_key(object: &str) -> Vec<u8> {
    format!("{META_COLD_LEDGER_PREFIX}{object}").into_bytes()
}

/// The hot key length of `signal`'s records: what a [`MovedRecord`] names.
pub fn moved_key_len(signal: Signal) -> usize {
    match signal {
        Signal::Spans => SPAN_KEY_LEN,
        Signal::Logs | Signal::Metrics => RECORD_KEY_LEN,
    }
}

/// What an upload's apply did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Records taken out of the hot tier (now served by the object).
    pub removed: u64,
    /// Records of the object still hot: replaced since the upload, or
    /// already gone (a retention cut). Reads remove the duplicates.
    pub kept_hot: u64,
}

/// What the leader uploads for a move, and the entry it proposes then.
#[derive(Debug)]
pub struct PreparedUpload {
    pub upload: ColdUpload,
    /// The Parquet file: the object's bytes.
    pub file: Vec<u8>,
}

/// The stored record of a row, cut down to what a retention cut uses when
/// it drops the row's object: a span's ids, service, status, times and LLM
/// payload hashes; a log record's body hash; nothing of a metric point.
fn ledger_record(signal: Signal, record: &[u8]) -> StoreResult<Vec<u8>> {
    Ok(match signal {
        Signal::Spans => {
            let s: SpanRecord = decode(record)?;
            crate::codec::encode(&SpanRecord {
                trace_id: s.trace_id,
                span_id: s.span_id,
                service: s.service,
                status: s.status,
                start_unix_nanos: s.start_unix_nanos,
                end_unix_nanos: s.end_unix_nanos,
                llm: s.llm,
                ..Default::default()
            })
        }
        Signal::Logs => {
            let l: LogRecord = decode(record)?;
            crate::codec::encode(&LogRecord {
                body_sha256: l.body_sha256,
                ..Default::default()
            })
        }
        Signal::Metrics => Vec::new(),
    })
}

/// What a move did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoveOutcome {
    pub rows: u64,
    pub bytes: u64,
    /// Records of the range remain hot: the move stopped at its limit.
    pub pending: bool,
}

/// Whether a move holding `rows` takes no more: at [`MAX_ROWS_PER_MOVE`]
/// rows, or at [`MAX_RECORD_BYTES_PER_MOVE`] bytes of records (a move
/// holds its rows and its file in memory). Deterministic in the rows, so
/// every replica stops at the same record.
fn move_is_full(rows: usize, record_bytes: usize) -> bool {
    rows >= MAX_ROWS_PER_MOVE || record_bytes >= MAX_RECORD_BYTES_PER_MOVE
}

impl HotStore {
    /// Where this store's cold files live.
    pub fn cold_dir(&self) -> &Path {
        &self.cold_dir
    }

    /// The cold manifest (empty before the first move).
    pub fn cold_manifest(&self) -> StoreResult<ColdManifest> {
        self.cold_manifest_in(&self.read_view())
    }

    /// [`Self::cold_manifest`] as of `view`.
    pub fn cold_manifest_in(&self, view: &fjall::Snapshot) -> StoreResult<ColdManifest> {
        match view.get(&self.keyspaces.meta, META_COLD_MANIFEST)? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("cold manifest: {e}"))),
            None => Ok(ColdManifest::default()),
        }
    }

    /// Removes cold files the committed manifest does not name (see
    /// [`cold::remove_orphans`]).
    pub fn remove_cold_orphans(&self) -> StoreResult<usize> {
        Ok(cold::remove_orphans(
            &self.cold_dir,
            &self.cold_manifest()?,
        )?)
    }

    /// Whether the hot tier holds records of `signal` older than
    /// `to_unix_nanos`: the leader proposes no move that would take nothing.
    pub fn has_hot_records_before(&self, signal: Signal, to_unix_nanos: u64) -> StoreResult<bool> {
        let ks = &self.keyspaces;
        let space = match signal {
            Signal::Spans => &ks.by_time,
            Signal::Logs => &ks.logs,
            Signal::Metrics => &ks.metrics,
        };
        Ok(match space.first_key_value() {
            Some(g) => super::keys::leading_time(&g.key()?) < to_unix_nanos,
            None => false,
        })
    }

    /// Manifest files this node lacks: a node that installed a snapshot
    /// does not receive cold files, and its reads of them fail clearly.
    pub fn missing_cold_files(&self) -> StoreResult<Vec<PathBuf>> {
        Ok(self
            .cold_manifest()?
            .files
            .iter()
            .filter(|f| f.object.is_none())
            .map(|f| f.path(&self.cold_dir))
            .filter(|p| !p.exists())
            .collect())
    }

    /// The rows `object`'s ledger holds (see [`META_COLD_LEDGER_PREFIX`]),
    /// as of `view`: each row's key and cut-down record.
    pub(super) fn cold_ledger_in(
        &self,
        view: &fjall::Snapshot,
        object: &str,
    ) -> StoreResult<Vec<ColdRow>> {
        let Some(v) = view.get(&self.keyspaces.meta, ledger_key(object))? else {
            return Err(StoreError::Corrupt(format!(
                "the ledger of cold object {object} is missing"
            )));
        };
        let rows: Vec<(Vec<u8>, Vec<u8>)> = decode(&v)?;
        Ok(rows
            .into_iter()
            .map(|(key, record)| ColdRow {
                key,
                trace_id: Vec::new(),
                name: String::new(),
                time_unix_nanos: 0,
                duration_nanos: 0,
                status: 0,
                record,
            })
            .collect())
    }

    /// On the leader, before it proposes a move to the shared store: the
    /// records `mv` would take, oldest first up to the move's limit, as of
    /// the committed store now; `None` when there are none. Reads only:
    /// what leaves the hot tier is decided when the upload is applied.
    pub fn prepare_cold_upload(&self, mv: &ColdMove) -> StoreResult<Option<PreparedUpload>> {
        let view = self.read_view();
        let applied = self.applied_state_in(&view)?.0.map_or(0, |l| l.index);
        let rows = self.collect_rows(&view, mv.signal, (mv.from_unix_nanos, mv.to_unix_nanos))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let pending = move_is_full(rows.len(), rows.iter().map(|r| r.record.len()).sum());
        let records = rows
            .iter()
            .map(|r| MovedRecord {
                key: r.key.clone(),
                digest: record_digest(&r.record),
            })
            .collect();
        let min = rows.iter().map(|r| r.time_unix_nanos).min().expect("rows");
        let max = rows.iter().map(|r| r.time_unix_nanos).max().expect("rows");
        let count = rows.len() as u64;
        let file = write_file(mv.signal, rows)?;
        let upload = ColdUpload {
            signal: mv.signal,
            from_unix_nanos: mv.from_unix_nanos,
            to_unix_nanos: mv.to_unix_nanos,
            object: cold::objects::new_object_name(mv.signal, applied),
            min_time_unix_nanos: min,
            max_time_unix_nanos: max,
            rows: count,
            bytes: file.len() as u64,
            pending,
            records,
        };
        upload
            .check(moved_key_len(mv.signal))
            .map_err(StoreError::Corrupt)?;
        Ok(Some(PreparedUpload { upload, file }))
    }

    /// The rows a move of `signal` over `[from, to)` takes, as of `view`,
    /// without staging anything.
    fn collect_rows(
        &self,
        view: &fjall::Snapshot,
        signal: Signal,
        (from, to): (u64, u64),
    ) -> StoreResult<Vec<ColdRow>> {
        let mut rows = Vec::new();
        if to == 0 || from >= to {
            return Ok(rows);
        }
        let ks = &self.keyspaces;
        let mut record_bytes = 0;
        if signal == Signal::Spans {
            let (lo, hi) = time_key_bounds(from, to - 1);
            for kv in view.range(&ks.by_time, lo.to_vec()..=hi.to_vec()) {
                if move_is_full(rows.len(), record_bytes) {
                    break;
                }
                let (k, _) = kv.into_inner()?;
                let key = &k[8..];
                let Some(bytes) = view.get(&ks.spans, key)? else {
                    return Err(StoreError::Corrupt("by_time entry without its span".into()));
                };
                record_bytes += bytes.len();
                rows.push(span_row(key, &decode(&bytes)?, &bytes));
            }
            return Ok(rows);
        }
        let space = if signal == Signal::Logs {
            &ks.logs
        } else {
            &ks.metrics
        };
        for kv in view.range(
            space,
            from.to_be_bytes().to_vec()..to.to_be_bytes().to_vec(),
        ) {
            if move_is_full(rows.len(), record_bytes) {
                break;
            }
            let (k, v) = kv.into_inner()?;
            record_bytes += v.len();
            rows.push(if signal == Signal::Logs {
                log_row(&k, &decode(&v)?, &v)
            } else {
                metric_row(&k, &decode(&v)?, &v)
            });
        }
        Ok(rows)
    }
}

fn span_row(key: &[u8], span: &SpanRecord, bytes: &[u8]) -> ColdRow {
    ColdRow {
        key: key.to_vec(),
        trace_id: span.trace_id.to_vec(),
        name: span.service.clone(),
        time_unix_nanos: span.start_unix_nanos,
        duration_nanos: span.duration_nanos(),
        status: cold::span_status_code(span.status),
        record: bytes.to_vec(),
    }
}

fn log_row(key: &[u8], log: &LogRecord, bytes: &[u8]) -> ColdRow {
    ColdRow {
        key: key.to_vec(),
        trace_id: log.trace_id.map(|t| t.to_vec()).unwrap_or_default(),
        name: log.service.clone(),
        time_unix_nanos: log.timestamp_unix_nanos,
        duration_nanos: 0,
        status: i32::from(log.severity.code()),
        record: bytes.to_vec(),
    }
}

fn metric_row(key: &[u8], point: &MetricPoint, bytes: &[u8]) -> ColdRow {
    ColdRow {
        key: key.to_vec(),
        trace_id: Vec::new(),
        name: point.name.clone(),
        time_unix_nanos: point.timestamp_unix_nanos,
        duration_nanos: 0,
        status: 0,
        record: bytes.to_vec(),
    }
}

impl ApplyBatch<'_> {
    /// Applies the move carried by the entry at `log_index`.
    pub fn apply_cold_move(&mut self, log_index: u64, mv: &ColdMove) -> StoreResult<MoveOutcome> {
        assert!(
            self.is_single_entry(log_index),
            "a cold move is applied in a batch of its own (entry {log_index})"
        );
        let store = self.store;
        let view = store.read_view();
        let mut manifest = store.cold_manifest_in(&view)?;
        let range = (mv.from_unix_nanos, mv.to_unix_nanos);
        let rows = match mv.signal {
            Signal::Spans => self.take_spans(&view, range)?,
            Signal::Logs => self.take_logs(&view, range)?,
            Signal::Metrics => self.take_metrics(&view, range)?,
        };
        assert!(
            rows.len() <= MAX_ROWS_PER_MOVE,
            "a move takes at most its limit"
        );
        let mut outcome = MoveOutcome {
            rows: rows.len() as u64,
            pending: move_is_full(rows.len(), rows.iter().map(|r| r.record.len()).sum()),
            ..MoveOutcome::default()
        };
        if outcome.pending {
            manifest.pending.insert(mv.signal);
        } else {
            manifest.pending.remove(&mv.signal);
        }
        manifest.last_move_index = log_index;
        if !rows.is_empty() {
            let min = rows.iter().map(|r| r.time_unix_nanos).min().expect("rows");
            let max = rows.iter().map(|r| r.time_unix_nanos).max().expect("rows");
            let bytes = write_file(mv.signal, rows)?;
            let file = ColdFile {
                signal: mv.signal,
                log_index,
                from_unix_nanos: mv.from_unix_nanos,
                to_unix_nanos: mv.to_unix_nanos,
                min_time_unix_nanos: min,
                max_time_unix_nanos: max,
                rows: outcome.rows,
                bytes: bytes.len() as u64,
                llm_released: false,
                object: None,
            };
            assert!(
                !manifest
                    .files
                    .iter()
                    .any(|f| f.file_name() == file.file_name()),
                "a move's file is new to the manifest (entry {log_index})"
            );
            // Durable before the records leave the hot tier: a crash after
            // the commit must find the file.
            write_durably(&file.path(&store.cold_dir), &bytes)?;
            outcome.bytes = file.bytes;
            manifest.files.push(file);
        }
        self.stage_manifest(&manifest);
        Ok(outcome)
    }

    /// Applies the upload carried by the entry at `log_index` (checked by
    /// [`ColdUpload::check`]): every listed record the hot tier still holds
    /// with the listed digest leaves it (with its index entries, as a move
    /// takes it), and no other; the manifest names the object and the
    /// object's ledger keeps what a retention cut needs of the records
    /// removed. Reads the committed store only, so every replica removes
    /// the same records. Touches no file and no network.
    pub fn apply_cold_upload(
        &mut self,
        log_index: u64,
        up: &ColdUpload,
    ) -> StoreResult<UploadOutcome> {
        assert!(
            self.is_single_entry(log_index),
            "a cold upload is applied in a batch of its own (entry {log_index})"
        );
        let store = self.store;
        let view = store.read_view();
        let mut manifest = store.cold_manifest_in(&view)?;
        // An upload proposed twice names its object again: applied once.
        if manifest
            .files
            .iter()
            .any(|f| f.object.as_ref() == Some(&up.object))
        {
            tracing::warn!(log_index, object = %up.object, "cold upload applied before; skipped");
            return Ok(UploadOutcome {
                removed: 0,
                kept_hot: up.records.len() as u64,
            });
        }
        let mut outcome = UploadOutcome::default();
        let mut ledger: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for r in &up.records {
            match self.take_if_unchanged(&view, up.signal, r)? {
                Some(bytes) => {
                    ledger.push((r.key.clone(), ledger_record(up.signal, &bytes)?));
                    outcome.removed += 1;
                }
                None => outcome.kept_hot += 1,
            }
        }
        assert_eq!(
            outcome.removed + outcome.kept_hot,
            up.records.len() as u64,
            "every listed record is either taken or kept (entry {log_index})"
        );
        let file = ColdFile {
            signal: up.signal,
            log_index,
            from_unix_nanos: up.from_unix_nanos,
            to_unix_nanos: up.to_unix_nanos,
            min_time_unix_nanos: up.min_time_unix_nanos,
            max_time_unix_nanos: up.max_time_unix_nanos,
            rows: up.rows,
            bytes: up.bytes,
            llm_released: false,
            object: Some(up.object.clone()),
        };
        if up.pending {
            manifest.pending.insert(up.signal);
        } else {
            manifest.pending.remove(&up.signal);
        }
        manifest.last_move_index = log_index;
        manifest.files.push(file);
        self.batch.insert(
            &store.keyspaces.meta,
            ledger_key(&up.object),
            crate::codec::encode(&ledger),
        );
        self.stage_manifest(&manifest);
        Ok(outcome)
    }

    /// Stages the removal of the record `r` names if the hot tier holds it
    /// with `r`'s digest (as of `view`); returns its stored bytes then.
    fn take_if_unchanged(
        &mut self,
        view: &fjall::Snapshot,
        signal: Signal,
        r: &MovedRecord,
    ) -> StoreResult<Option<Vec<u8>>> {
        let ks = &self.store.keyspaces;
        let space = match signal {
            Signal::Spans => &ks.spans,
            Signal::Logs => &ks.logs,
            Signal::Metrics => &ks.metrics,
        };
        let Some(bytes) = view.get(space, &r.key)? else {
            return Ok(None);
        };
        if record_digest(&bytes) != r.digest {
            return Ok(None);
        }
        match signal {
            Signal::Spans => {
                let key: [u8; SPAN_KEY_LEN] = r.key[..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("span key".into()))?;
                let span: SpanRecord = decode(&bytes)?;
                self.remove_span_time_entries(&key, &span);
                self.batch.remove(&ks.spans, key.to_vec());
            }
            Signal::Logs => {
                let key: [u8; RECORD_KEY_LEN] = r.key[..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("record key".into()))?;
                self.remove_log_entries(&key, &decode(&bytes)?);
            }
            Signal::Metrics => {
                let key: [u8; RECORD_KEY_LEN] = r.key[..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("record key".into()))?;
                self.remove_metric_entries(&key, &decode(&bytes)?);
            }
        }
        Ok(Some(bytes.to_vec()))
    }

    pub(super) fn stage_manifest(&mut self, manifest: &ColdManifest) {
        self.batch.insert(
            &self.store.keyspaces.meta,
            META_COLD_MANIFEST.to_vec(),
            serde_json::to_vec(manifest).expect("the manifest serializes"),
        );
    }

    /// Stages the removal of the spans that started in `[from, to)`, oldest
    /// first, at most [`MAX_ROWS_PER_MOVE`]; returns their rows.
    fn take_spans(
        &mut self,
        view: &fjall::Snapshot,
        (from, to): (u64, u64),
    ) -> StoreResult<Vec<ColdRow>> {
        let mut rows = Vec::new();
        if to == 0 || from >= to {
            return Ok(rows);
        }
        let ks = &self.store.keyspaces;
        let (lo, hi) = time_key_bounds(from, to - 1);
        let mut record_bytes = 0;
        for kv in view.range(&ks.by_time, lo.to_vec()..=hi.to_vec()) {
            if move_is_full(rows.len(), record_bytes) {
                break;
            }
            let (k, _) = kv.into_inner()?;
            let key: [u8; SPAN_KEY_LEN] = k[8..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("by_time key".into()))?;
            let Some(bytes) = view.get(&ks.spans, key)? else {
                return Err(StoreError::Corrupt("by_time entry without its span".into()));
            };
            let span: SpanRecord = decode(&bytes)?;
            record_bytes += bytes.len();
            self.remove_span_time_entries(&key, &span);
            self.batch.remove(&ks.spans, key.to_vec());
            rows.push(span_row(&key, &span, &bytes));
        }
        Ok(rows)
    }

    /// Stages the removal of the log records stamped in `[from, to)`.
    fn take_logs(
        &mut self,
        view: &fjall::Snapshot,
        range: (u64, u64),
    ) -> StoreResult<Vec<ColdRow>> {
        let logs = &self.store.keyspaces.logs;
        self.take_records(view, logs, range, |b, key, bytes| {
            let log: LogRecord = decode(bytes)?;
            b.remove_log_entries(key, &log);
            Ok(log_row(key, &log, bytes))
        })
    }

    /// Stages the removal of the metric points stamped in `[from, to)`.
    fn take_metrics(
        &mut self,
        view: &fjall::Snapshot,
        range: (u64, u64),
    ) -> StoreResult<Vec<ColdRow>> {
        let metrics = &self.store.keyspaces.metrics;
        self.take_records(view, metrics, range, |b, key, bytes| {
            let point: MetricPoint = decode(bytes)?;
            b.remove_metric_entries(key, &point);
            Ok(metric_row(key, &point, bytes))
        })
    }

    /// Walks `space` (`logs` or `metrics`, keys: time ++ content key) over
    /// `[from, to)`, oldest first, at most [`MAX_ROWS_PER_MOVE`] records,
    /// each staged for removal by `take`.
    fn take_records(
        &mut self,
        view: &fjall::Snapshot,
        space: &fjall::Keyspace,
        (from, to): (u64, u64),
        mut take: impl FnMut(&mut Self, &[u8; RECORD_KEY_LEN], &[u8]) -> StoreResult<ColdRow>,
    ) -> StoreResult<Vec<ColdRow>> {
        let mut rows = Vec::new();
        if from >= to {
            return Ok(rows);
        }
        let mut record_bytes = 0;
        for kv in view.range(
            space,
            from.to_be_bytes().to_vec()..to.to_be_bytes().to_vec(),
        ) {
            if move_is_full(rows.len(), record_bytes) {
                break;
            }
            let (k, v) = kv.into_inner()?;
            record_bytes += v.len();
            let key: [u8; RECORD_KEY_LEN] = k[..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("record key".into()))?;
            rows.push(take(self, &key, &v)?);
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::test_support::{
        apply_spans, assert_log_and_metric_keyspaces_hold, keyspace_len, log_id, open_store,
        test_log, test_point, test_span,
    };
    use super::*;
    use crate::model::Severity;
    use crate::state::cold::ColdReader;

    const SEC: u64 = 1_000_000_000;

    fn apply_move(store: &HotStore, index: u64, signal: Signal, to: u64) -> MoveOutcome {
        let mut b = store.begin();
        b.begin_entry(index);
        let mv = ColdMove {
            signal,
            from_unix_nanos: 0,
            to_unix_nanos: to,
        };
        let out = b.apply_cold_move(index, &mv).unwrap();
        b.commit(Some(log_id(index)), None).unwrap();
        out
    }

    #[test]
    fn old_spans_leave_the_hot_tier_for_a_file_and_keep_their_counters() {
        let (_dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![
                test_span(1, 1, 10 * SEC),
                test_span(1, 2, 20 * SEC),
                test_span(2, 1, 90 * SEC),
            ],
        );
        let stats_before = store.services().unwrap();
        let out = apply_move(&store, 2, Signal::Spans, 50 * SEC);
        assert_eq!((out.rows, out.pending), (2, false));
        assert!(store.trace(&[1; 16]).unwrap().is_empty());
        assert_eq!(store.trace(&[2; 16]).unwrap().len(), 1);
        let ks = &store.keyspaces;
        assert_eq!(keyspace_len(&store, &ks.by_time), 1);
        assert_eq!(keyspace_len(&store, &ks.by_service), 1);
        assert_eq!(
            store.services().unwrap(),
            stats_before,
            "counters cover both tiers"
        );
        let manifest = store.cold_manifest().unwrap();
        assert_eq!(manifest.files.len(), 1);
        let f = &manifest.files[0];
        assert_eq!(
            (f.rows, f.min_time_unix_nanos, f.max_time_unix_nanos),
            (2, 10 * SEC, 20 * SEC)
        );
        assert!(f.path(store.cold_dir()).exists());
        assert_eq!(
            f.bytes,
            std::fs::metadata(f.path(store.cold_dir())).unwrap().len()
        );

        let store = Arc::new(store);
        let cold = ColdReader::open(&store).unwrap();
        let spans: Vec<SpanRecord> = cold
            .trace(&[1; 16])
            .unwrap()
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            spans,
            vec![test_span(1, 1, 10 * SEC), test_span(1, 2, 20 * SEC)]
        );
        assert!(cold.trace(&[2; 16]).unwrap().is_empty());
        let newest = cold
            .spans((0, u64::MAX), Some("checkout"), false, 100)
            .unwrap();
        let starts: Vec<u64> = newest
            .records
            .iter()
            .map(|(_, s)| s.start_unix_nanos)
            .collect();
        assert_eq!(starts, [20 * SEC, 10 * SEC]);
        let key = span_key_of(1, 2);
        assert_eq!(
            cold.span_by_key(&key).unwrap(),
            Some(test_span(1, 2, 20 * SEC))
        );
    }

    fn span_key_of(trace: u8, span: u8) -> Vec<u8> {
        super::super::keys::span_key(&[trace; 16], &[span; 8]).to_vec()
    }

    #[test]
    fn two_replicas_write_the_same_file_for_the_same_move() {
        let (_d1, a) = open_store();
        let (_d2, b) = open_store();
        for store in [&a, &b] {
            apply_spans(
                store,
                1,
                (0..40)
                    .map(|i| test_span(i, 1, (i as u64 + 1) * SEC))
                    .collect(),
            );
            apply_move(store, 2, Signal::Spans, 30 * SEC);
        }
        let (ma, mb) = (a.cold_manifest().unwrap(), b.cold_manifest().unwrap());
        assert_eq!(ma, mb);
        let read =
            |s: &HotStore, m: &ColdManifest| std::fs::read(m.files[0].path(s.cold_dir())).unwrap();
        assert_eq!(read(&a, &ma), read(&b, &mb));
    }

    #[test]
    fn logs_and_metric_points_move_with_their_indexes_and_read_back_by_key() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        b.put_log(&test_log(10 * SEC, "old"));
        b.put_log(&test_log(90 * SEC, "new"));
        b.put_metric(&test_point(10 * SEC)).unwrap();
        b.put_metric(&test_point(90 * SEC)).unwrap();
        b.commit(Some(log_id(1)), None).unwrap();
        let old_key = store
            .read_view()
            .iter(&store.keyspaces.logs)
            .next()
            .unwrap()
            .key()
            .unwrap()
            .to_vec();
        assert_eq!(apply_move(&store, 2, Signal::Logs, 50 * SEC).rows, 1);
        assert_eq!(apply_move(&store, 3, Signal::Metrics, 50 * SEC).rows, 1);
        assert_log_and_metric_keyspaces_hold(&store, 1);
        let store = Arc::new(store);
        let cold = ColdReader::open(&store).unwrap();
        assert_eq!(
            cold.log_by_key(&old_key).unwrap(),
            Some(test_log(10 * SEC, "old"))
        );
        let logs = cold
            .logs((0, u64::MAX), Some("checkout"), Some(&[9; 16]), 10)
            .unwrap();
        assert_eq!(logs.records.len(), 1);
        assert_eq!(logs.records[0].0, old_key);
        assert!(cold
            .logs((0, u64::MAX), Some("other"), None, 10)
            .unwrap()
            .records
            .is_empty());
        let points = cold.metrics((0, u64::MAX), Some("requests"), 10).unwrap();
        assert_eq!(points.records.len(), 1);
        assert_eq!(points.records[0].1, test_point(10 * SEC));
    }

    #[test]
    fn a_newest_first_read_stops_before_files_that_cannot_make_the_limit() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        for i in 0..4 {
            b.put_log(&test_log(10 * SEC + i, &format!("early {i}")));
            b.put_log(&test_log(30 * SEC + i, &format!("late {i}")));
        }
        b.commit(Some(log_id(1)), None).unwrap();
        apply_move(&store, 2, Signal::Logs, 20 * SEC);
        apply_move(&store, 3, Signal::Logs, 40 * SEC);
        let store = Arc::new(store);
        let cold = ColdReader::open(&store).unwrap();
        let found = cold
            .newest_logs((0, u64::MAX), (None, None), (2, usize::MAX), |_| true)
            .unwrap();
        let bodies: Vec<String> = found
            .records
            .iter()
            .map(|(_, l)| l.body_text().to_string())
            .collect();
        assert_eq!(bodies, ["late 3", "late 2"]);
        assert_eq!(found.examined, 4, "the older file was never read");
        let found = cold
            .newest_logs((0, u64::MAX), (None, None), (2, usize::MAX), |l| {
                l.body_text().starts_with("early")
            })
            .unwrap();
        assert_eq!(found.records.len(), 2);
        assert_eq!(found.examined, 8);
        let (points, names) = cold.metric_point_names((0, u64::MAX), None).unwrap();
        assert_eq!((points, names.len()), (0, 0));
        let counts = cold
            .log_severity_counts((0, 25 * SEC), Some("checkout"))
            .unwrap();
        assert_eq!(counts.get(&Severity::Warn), Some(&4));
    }

    #[test]
    fn a_move_stops_at_its_limit_and_says_so() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        for i in 0..(MAX_ROWS_PER_MOVE as u64 + 3) {
            b.put_metric(&test_point(SEC + i)).unwrap();
        }
        b.commit(Some(log_id(1)), None).unwrap();
        let first = apply_move(&store, 2, Signal::Metrics, 100 * SEC);
        assert_eq!(
            (first.rows, first.pending),
            (MAX_ROWS_PER_MOVE as u64, true)
        );
        assert!(store
            .cold_manifest()
            .unwrap()
            .pending
            .contains(&Signal::Metrics));
        let second = apply_move(&store, 3, Signal::Metrics, 100 * SEC);
        assert_eq!((second.rows, second.pending), (3, false));
        let m = store.cold_manifest().unwrap();
        assert!(m.pending.is_empty());
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.stats().metric_points.rows, MAX_ROWS_PER_MOVE as u64 + 3);
        assert_eq!(keyspace_len(&store, &store.keyspaces.metrics), 0);
    }

    #[test]
    fn a_move_is_full_at_its_row_or_byte_limit() {
        assert!(!move_is_full(0, 0));
        assert!(!move_is_full(
            MAX_ROWS_PER_MOVE - 1,
            MAX_RECORD_BYTES_PER_MOVE - 1
        ));
        assert!(move_is_full(MAX_ROWS_PER_MOVE, 0));
        assert!(move_is_full(1, MAX_RECORD_BYTES_PER_MOVE));
    }

    #[test]
    fn a_move_with_nothing_to_take_writes_no_file() {
        let (_dir, store) = open_store();
        apply_spans(&store, 1, vec![test_span(1, 1, 90 * SEC)]);
        assert_eq!(apply_move(&store, 2, Signal::Spans, 50 * SEC).rows, 0);
        let m = store.cold_manifest().unwrap();
        assert!(m.files.is_empty());
        assert_eq!(m.last_move_index, 2);
    }

    #[test]
    fn a_crash_before_the_commit_leaves_the_records_hot_and_the_file_an_orphan() {
        let (_dir, store) = open_store();
        apply_spans(&store, 1, vec![test_span(1, 1, 10 * SEC)]);
        {
            let mut b = store.begin();
            b.begin_entry(2);
            let mv = ColdMove {
                signal: Signal::Spans,
                from_unix_nanos: 0,
                to_unix_nanos: 50 * SEC,
            };
            b.apply_cold_move(2, &mv).unwrap();
            // Dropped uncommitted: as a crash after the file's write.
        }
        assert_eq!(store.trace(&[1; 16]).unwrap().len(), 1);
        assert!(store.cold_manifest().unwrap().files.is_empty());
        assert_eq!(store.remove_cold_orphans().unwrap(), 1);
        // Applied again after the restart: the same file, committed.
        assert_eq!(apply_move(&store, 2, Signal::Spans, 50 * SEC).rows, 1);
        assert!(store.trace(&[1; 16]).unwrap().is_empty());
        assert_eq!(store.remove_cold_orphans().unwrap(), 0);
    }

    fn apply_upload(store: &HotStore, index: u64, up: &ColdUpload) -> UploadOutcome {
        let mut b = store.begin();
        b.begin_entry(index);
        let out = b.apply_cold_upload(index, up).unwrap();
        b.commit(Some(log_id(index)), None).unwrap();
        out
    }

    fn prepared(store: &HotStore, signal: Signal, to: u64) -> PreparedUpload {
        let mv = ColdMove {
            signal,
            from_unix_nanos: 0,
            to_unix_nanos: to,
        };
        store
            .prepare_cold_upload(&mv)
            .unwrap()
            .expect("records to move")
    }

    #[test]
    fn an_upload_removes_exactly_the_listed_records_still_unchanged() {
        let (_dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![
                test_span(1, 1, 10 * SEC),
                test_span(2, 1, 20 * SEC),
                test_span(3, 1, 90 * SEC),
            ],
        );
        let stats_before = store.services().unwrap();
        let p = prepared(&store, Signal::Spans, 50 * SEC);
        let up = &p.upload;
        assert_eq!((up.rows, up.records.len(), up.pending), (2, 2, false));
        assert_eq!(
            (up.min_time_unix_nanos, up.max_time_unix_nanos),
            (10 * SEC, 20 * SEC)
        );
        assert_eq!(up.bytes, p.file.len() as u64);
        // Preparing reads only: everything is still hot.
        assert_eq!(keyspace_len(&store, &store.keyspaces.spans), 3);
        // Between the upload and the apply: span (2, 1) is replaced, and an
        // old span the object does not hold arrives.
        apply_spans(
            &store,
            2,
            vec![test_span(2, 1, 21 * SEC), test_span(4, 1, 15 * SEC)],
        );
        let out = apply_upload(&store, 3, up);
        assert_eq!(
            out,
            UploadOutcome {
                removed: 1,
                kept_hot: 1
            }
        );
        assert!(store.trace(&[1; 16]).unwrap().is_empty(), "moved");
        let kept = store.trace(&[2; 16]).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept[0].start_unix_nanos,
            21 * SEC,
            "the replaced span stays hot"
        );
        assert_eq!(
            store.trace(&[4; 16]).unwrap().len(),
            1,
            "never listed: stays hot"
        );
        assert_eq!(keyspace_len(&store, &store.keyspaces.by_time), 3);
        // Counters cover both tiers: only the new span (4, 1) was added.
        let stats = store.services().unwrap();
        let count = |s: &Vec<(String, super::super::ServiceStats)>| {
            s.iter().map(|(_, v)| v.span_count).sum::<u64>()
        };
        assert_eq!(count(&stats), count(&stats_before) + 1);
        let m = store.cold_manifest().unwrap();
        assert_eq!(m.files.len(), 1);
        let f = &m.files[0];
        assert_eq!(f.object.as_deref(), Some(up.object.as_str()));
        assert_eq!((f.log_index, f.rows, f.bytes), (3, 2, up.bytes));
        assert_eq!(m.last_move_index, 3);
        assert!(
            !f.path(store.cold_dir()).exists(),
            "nothing written locally"
        );
        let ledger = store
            .cold_ledger_in(&store.read_view(), &up.object)
            .unwrap();
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].key, span_key_of(1, 1));
        // Applied again (the same entry proposed twice): no effect.
        assert_eq!(
            apply_upload(&store, 4, up),
            UploadOutcome {
                removed: 0,
                kept_hot: 2
            }
        );
        assert_eq!(store.cold_manifest().unwrap().files.len(), 1);
    }

    #[test]
    fn replicas_applying_one_upload_end_equal() {
        let (_d1, a) = open_store();
        let (_d2, b) = open_store();
        for store in [&a, &b] {
            let mut batch = store.begin();
            batch.begin_entry(1);
            for t in 0..20 {
                batch.put_log(&test_log((t + 1) * SEC, &format!("log {t}")));
            }
            batch.commit(Some(log_id(1)), None).unwrap();
        }
        // Only the leader (a) prepares; both apply what it proposed.
        let p = prepared(&a, Signal::Logs, 10 * SEC);
        assert_eq!(p.upload.rows, 9);
        for store in [&a, &b] {
            assert_eq!(
                apply_upload(store, 2, &p.upload),
                UploadOutcome {
                    removed: 9,
                    kept_hot: 0
                }
            );
            assert_eq!(keyspace_len(store, &store.keyspaces.logs), 11);
            assert_eq!(keyspace_len(store, &store.keyspaces.log_by_service), 11);
        }
        assert_eq!(a.cold_manifest().unwrap(), b.cold_manifest().unwrap());
        let view = |s: &HotStore| s.cold_ledger_in(&s.read_view(), &p.upload.object).unwrap();
        assert_eq!(view(&a), view(&b));
    }

    #[test]
    fn a_crash_before_an_upload_commits_leaves_every_record_hot() {
        let (_dir, store) = open_store();
        apply_spans(&store, 1, vec![test_span(1, 1, 10 * SEC)]);
        let p = prepared(&store, Signal::Spans, 50 * SEC);
        {
            let mut b = store.begin();
            b.begin_entry(2);
            b.apply_cold_upload(2, &p.upload).unwrap();
            // Dropped uncommitted: a crash.
        }
        assert_eq!(store.trace(&[1; 16]).unwrap().len(), 1);
        assert!(store.cold_manifest().unwrap().files.is_empty());
        assert_eq!(apply_upload(&store, 2, &p.upload).removed, 1);
        assert!(store.trace(&[1; 16]).unwrap().is_empty());
    }

    #[test]
    #[should_panic(expected = "a cold move is applied in a batch of its own")]
    fn a_move_sharing_a_batch_panics() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        b.begin_entry(2);
        let mv = ColdMove {
            signal: Signal::Spans,
            from_unix_nanos: 0,
            to_unix_nanos: 1,
        };
        let _ = b.apply_cold_move(2, &mv);
    }
}

#[cfg(test)]
mod sizing {
    //! Bytes per span in each tier, for docs/operations.md: run with
    //! `--nocapture` to see the numbers.
    use super::super::test_support::{log_id, open_store};
    use super::*;
    use crate::cmd::bench_cold::http_service_span;

    const SPANS: u64 = 20_000;
    /// What format 2 reaches on these spans, with a byte to spare.
    const MAX_COLD_BYTES_PER_SPAN: u64 = 50;

    /// Bytes per span of each column of the file at `path`, compressed.
    fn print_column_bytes(path: &std::path::Path, spans: u64) {
        use parquet::file::reader::FileReader;
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(
            std::fs::File::open(path).unwrap(),
        )
        .unwrap();
        let meta = reader.metadata();
        let mut columns = std::collections::BTreeMap::new();
        for rg in meta.row_groups() {
            for c in rg.columns() {
                let bytes = c.compressed_size() + i64::from(c.bloom_filter_length().unwrap_or(0));
                *columns.entry(c.column_path().string()).or_insert(0) += bytes;
            }
        }
        for (name, bytes) in columns {
            println!("  {name}: {:.1} B/span", bytes as f64 / spans as f64);
        }
    }

    #[test]
    fn a_cold_span_takes_fewer_bytes_than_a_hot_one() {
        let (_dir, store) = open_store();
        for batch in 0..(SPANS / 1_000) {
            let mut b = store.begin();
            b.begin_entry(batch + 1);
            for i in batch * 1_000..(batch + 1) * 1_000 {
                b.put_span(http_service_span(i)).unwrap();
            }
            b.commit(Some(log_id(batch + 1)), None).unwrap();
        }
        let ks = &store.keyspaces;
        for k in [&ks.spans, &ks.by_time, &ks.by_service, &ks.by_error] {
            k.rotate_memtable().unwrap();
        }
        // Flushes run in the background: wait until the size settles.
        let mut hot_bytes = 0;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = store.stats().unwrap().spans.disk_bytes;
            if now > 0 && now == hot_bytes {
                break;
            }
            hot_bytes = now;
        }
        let mut b = store.begin();
        let index = SPANS / 1_000 + 1;
        b.begin_entry(index);
        let mv = ColdMove {
            signal: Signal::Spans,
            from_unix_nanos: 0,
            to_unix_nanos: u64::MAX,
        };
        let out = b.apply_cold_move(index, &mv).unwrap();
        b.commit(Some(log_id(index)), None).unwrap();
        assert_eq!(out.rows, SPANS);
        let (hot_per_span, cold_per_span) = (hot_bytes / SPANS, out.bytes / SPANS);
        println!("bytes per span: hot {hot_per_span}, cold {cold_per_span}");
        let file = &store.cold_manifest().unwrap().files[0];
        print_column_bytes(&file.path(store.cold_dir()), SPANS);
        assert!(hot_per_span > 0);
        assert!(
            cold_per_span < hot_per_span,
            "cold {cold_per_span} B/span, hot {hot_per_span} B/span"
        );
        // Format 1 took 71 B/span: the span id twice, times in plain.
        assert!(
            cold_per_span <= MAX_COLD_BYTES_PER_SPAN,
            "cold {cold_per_span} B/span"
        );
    }
}
