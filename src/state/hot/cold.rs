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
    self, write_durably, write_file, ColdFile, ColdManifest, ColdMove, ColdRow, Signal,
    MAX_RECORD_BYTES_PER_MOVE, MAX_ROWS_PER_MOVE,
};

/// `meta`: the [`ColdManifest`], as JSON.
pub(super) const META_COLD_MANIFEST: &[u8] = b"cold_manifest";

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
            .map(|f| f.path(&self.cold_dir))
            .filter(|p| !p.exists())
            .collect())
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
            rows.push(ColdRow {
                key: key.to_vec(),
                trace_id: span.trace_id.to_vec(),
                name: span.service.clone(),
                time_unix_nanos: span.start_unix_nanos,
                duration_nanos: span.duration_nanos(),
                status: cold::span_status_code(span.status),
                record: bytes.to_vec(),
            });
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
            Ok(ColdRow {
                key: key.to_vec(),
                trace_id: log.trace_id.map(|t| t.to_vec()).unwrap_or_default(),
                name: log.service.clone(),
                time_unix_nanos: log.timestamp_unix_nanos,
                duration_nanos: 0,
                status: i32::from(log.severity.code()),
                record: bytes.to_vec(),
            })
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
            Ok(ColdRow {
                key: key.to_vec(),
                trace_id: Vec::new(),
                name: point.name.clone(),
                time_unix_nanos: point.timestamp_unix_nanos,
                duration_nanos: 0,
                status: 0,
                record: bytes.to_vec(),
            })
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
        b.put_metric(&test_point(10 * SEC));
        b.put_metric(&test_point(90 * SEC));
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
            b.put_metric(&test_point(SEC + i));
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
