//! Reading the cold tier: the records of every file the manifest names
//! that a query wants, below the retention floors filtered out.
//!
//! A reader takes the manifest when it is opened. Whoever merges its answers
//! with the hot tier's reads the hot tier first: a record a move took out of
//! the hot tier after that read is in a file the (later) manifest names, so
//! nothing is missed, and duplicates are removed by key (`query::view`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::file::{read_rows, read_rows_from, ColdRow, FileRead, RowFilter};
use super::{ColdFile, ColdManifest, Signal};
use crate::codec::decode;
use crate::model::{LogRecord, MetricPoint, Severity, SpanRecord, SpanStatus, TraceId};
use crate::retention::Floors;
use crate::state::hot::{HotStore, StoreError, StoreResult};

/// The cold tier as of one manifest.
pub struct ColdReader {
    hot: Arc<HotStore>,
    dir: PathBuf,
    manifest: ColdManifest,
    floors: Floors,
}

/// Records a cold scan found, newest first, with their keys.
#[derive(Debug)]
pub struct ColdFound<T> {
    pub records: Vec<(Vec<u8>, T)>,
    /// Rows examined (in the window, in row groups not skipped).
    pub examined: usize,
    /// The budget ran out before every file in the window was read.
    pub truncated: bool,
}

impl<T> Default for ColdFound<T> {
    fn default() -> Self {
        ColdFound {
            records: Vec::new(),
            examined: 0,
            truncated: false,
        }
    }
}

impl ColdReader {
    /// The cold tier as `hot`'s manifest names it now.
    pub fn open(hot: &Arc<HotStore>) -> StoreResult<ColdReader> {
        let view = hot.read_view();
        Ok(ColdReader {
            hot: hot.clone(),
            dir: hot.cold_dir().to_path_buf(),
            manifest: hot.cold_manifest_in(&view)?,
            floors: hot.retention_state_in(&view)?.floors,
        })
    }

    pub fn manifest(&self) -> &ColdManifest {
        &self.manifest
    }

    fn floor(&self, signal: Signal) -> u64 {
        match signal {
            Signal::Spans => self.floors.traces,
            Signal::Logs => self.floors.logs,
            Signal::Metrics => self.floors.metrics,
        }
    }

    /// `window` raised to `signal`'s retention floor: a file straddling the
    /// floor keeps its older rows until a cut drops it whole.
    fn clamp(&self, signal: Signal, (from, to): (u64, u64)) -> Option<(u64, u64)> {
        let from = from.max(self.floor(signal));
        (from <= to).then_some((from, to))
    }

    /// `signal`'s files that may hold records in `window`, newest first.
    fn files(&self, signal: Signal, window: (u64, u64)) -> Vec<&ColdFile> {
        let mut files: Vec<&ColdFile> = self
            .manifest
            .files_of(signal)
            .filter(|f| f.overlaps(window))
            .collect();
        files.sort_by(|a, b| {
            (b.max_time_unix_nanos, b.log_index).cmp(&(a.max_time_unix_nanos, a.log_index))
        });
        files
    }

    /// Reads `file`. A file the manifest names but this node lacks is an
    /// error, never a silent gap, unless a retention cut dropped it since
    /// this reader took the manifest.
    fn read(&self, file: &ColdFile, filter: &RowFilter<'_>) -> StoreResult<FileRead> {
        if let Some(object) = &file.object {
            return self.read_object(file, object, filter);
        }
        let path = file.path(&self.dir);
        match read_rows(&path, filter) {
            Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let now = self.hot.cold_manifest()?;
                if now.files.contains(file) {
                    Err(StoreError::ColdFileMissing(path.display().to_string()))
                } else {
                    Ok(FileRead::default())
                }
            }
            other => other,
        }
    }

    /// Reads `file` from the shared store, as ranged reads of `object`
    /// (its footer, then the row groups the filter cannot skip). Any
    /// failure names the range the query cannot have: the store is down or
    /// unreachable, or this node was started without it.
    fn read_object(
        &self,
        file: &ColdFile,
        object: &str,
        filter: &RowFilter<'_>,
    ) -> StoreResult<FileRead> {
        let unavailable = |reason: String| StoreError::ColdRangeUnavailable {
            signal: file.signal.name(),
            from_unix_nanos: file.min_time_unix_nanos,
            to_unix_nanos: file.max_time_unix_nanos,
            reason,
        };
        let Some(objects) = &self.hot.cold_objects else {
            return Err(unavailable(format!(
                "it is in the shared cold store (object {object}), and this node was \
                 started without --cold-store s3://..."
            )));
        };
        match read_rows_from(objects.file(object, file.bytes), filter) {
            Ok(read) => Ok(read),
            // Dropped by a retention cut since this reader took the
            // manifest (and removed by the leader since): nothing to read.
            Err(_) if !self.hot.cold_manifest()?.files.contains(file) => Ok(FileRead::default()),
            Err(e) => Err(unavailable(format!("object {object}: {e}"))),
        }
    }

    /// Rows of `signal` in `window` that `filter` narrows further, from the
    /// newest files first, until `budget` rows were examined.
    fn scan(
        &self,
        signal: Signal,
        window: (u64, u64),
        filter: RowFilter<'_>,
        budget: usize,
    ) -> StoreResult<(Vec<ColdRow>, usize, bool)> {
        let Some(window) = self.clamp(signal, window) else {
            return Ok((Vec::new(), 0, false));
        };
        let filter = RowFilter { window, ..filter };
        let mut rows = Vec::new();
        let mut examined = 0;
        for file in self.files(signal, window) {
            if examined >= budget {
                return Ok((rows, examined, true));
            }
            let read = self.read(file, &filter)?;
            examined += read.examined;
            rows.extend(read.rows);
        }
        Ok((rows, examined, false))
    }

    /// The newest `limit` records of `signal` in `window` that `filter`
    /// and `keep` want, newest first (by time, then key: the hot tier's
    /// order). Files are read newest first, and reading stops once `limit`
    /// records are found and the next file holds only older ones, or once
    /// `budget` rows were examined (then the answer says it is truncated).
    fn newest<T: serde::de::DeserializeOwned>(
        &self,
        signal: Signal,
        window: (u64, u64),
        filter: RowFilter<'_>,
        (limit, budget): (usize, usize),
        keep: impl Fn(&T) -> bool,
    ) -> StoreResult<ColdFound<T>> {
        let mut out = ColdFound::default();
        let Some(window) = self.clamp(signal, window) else {
            return Ok(out);
        };
        let filter = RowFilter { window, ..filter };
        let mut found: Vec<(u64, Vec<u8>, T)> = Vec::new();
        for file in self.files(signal, window) {
            let full = found.len() >= limit;
            if full
                && found
                    .last()
                    .is_some_and(|(t, _, _)| file.max_time_unix_nanos < *t)
            {
                break;
            }
            if out.examined >= budget {
                out.truncated = true;
                break;
            }
            let read = self.read(file, &filter)?;
            out.examined += read.examined;
            for row in read.rows {
                let record: T = decode(&row.record)?;
                if keep(&record) {
                    found.push((row.time_unix_nanos, row.key, record));
                }
            }
            found.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
            found.truncate(limit);
        }
        out.records = found.into_iter().map(|(_, k, r)| (k, r)).collect();
        Ok(out)
    }

    /// Calls `f` with every row of `signal` in `window` that `filter`
    /// wants, one file at a time (so only one file's rows are in memory).
    fn for_each_row(
        &self,
        signal: Signal,
        window: (u64, u64),
        filter: RowFilter<'_>,
        mut f: impl FnMut(&ColdRow) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let Some(window) = self.clamp(signal, window) else {
            return Ok(());
        };
        let filter = RowFilter { window, ..filter };
        for file in self.files(signal, window) {
            for row in &self.read(file, &filter)?.rows {
                f(row)?;
            }
        }
        Ok(())
    }

    /// The newest `limit` cold spans in `window` that `keep` wants,
    /// optionally of one service or with status error only.
    pub fn newest_spans(
        &self,
        window: (u64, u64),
        (service, errors_only): (Option<&str>, bool),
        (limit, budget): (usize, usize),
        keep: impl Fn(&SpanRecord) -> bool,
    ) -> StoreResult<ColdFound<SpanRecord>> {
        let filter = RowFilter {
            name: service,
            ..RowFilter::window(window)
        };
        self.newest(
            Signal::Spans,
            window,
            filter,
            (limit, budget),
            |s: &SpanRecord| (!errors_only || s.status == SpanStatus::Error) && keep(s),
        )
    }

    /// The newest `limit` cold log records in `window` that `keep` wants,
    /// optionally of one service or trace.
    pub fn newest_logs(
        &self,
        window: (u64, u64),
        (service, trace): (Option<&str>, Option<&TraceId>),
        (limit, budget): (usize, usize),
        keep: impl Fn(&LogRecord) -> bool,
    ) -> StoreResult<ColdFound<LogRecord>> {
        let filter = RowFilter {
            name: service,
            trace_id: trace.map(|t| &t[..]),
            ..RowFilter::window(window)
        };
        self.newest(Signal::Logs, window, filter, (limit, budget), keep)
    }

    /// The newest `limit` cold metric points in `window` that `keep`
    /// wants, optionally of one metric name.
    pub fn newest_metrics(
        &self,
        window: (u64, u64),
        name: Option<&str>,
        (limit, budget): (usize, usize),
        keep: impl Fn(&MetricPoint) -> bool,
    ) -> StoreResult<ColdFound<MetricPoint>> {
        let filter = RowFilter {
            name,
            ..RowFilter::window(window)
        };
        self.newest(Signal::Metrics, window, filter, (limit, budget), keep)
    }

    /// Cold metric points in `window`, optionally of one service, and
    /// their distinct names.
    pub fn metric_point_names(
        &self,
        window: (u64, u64),
        service: Option<&str>,
    ) -> StoreResult<(u64, HashSet<String>)> {
        let (mut points, mut names) = (0, HashSet::new());
        self.for_each_row(Signal::Metrics, window, RowFilter::window(window), |row| {
            let m: MetricPoint = decode(&row.record)?;
            if service.is_none_or(|s| s == m.service) {
                points += 1;
                names.insert(m.name);
            }
            Ok(())
        })?;
        Ok((points, names))
    }

    /// Every cold span of a trace: only files whose bloom filter may hold
    /// the id are read.
    pub fn trace(&self, id: &TraceId) -> StoreResult<Vec<(Vec<u8>, SpanRecord)>> {
        let filter = RowFilter {
            trace_id: Some(id),
            ..RowFilter::window((0, u64::MAX))
        };
        let (rows, _, _) = self.scan(Signal::Spans, (0, u64::MAX), filter, usize::MAX)?;
        decode_rows(rows)
    }

    /// The cold span stored under `key` (trace id ++ span id).
    pub fn span_by_key(&self, key: &[u8]) -> StoreResult<Option<SpanRecord>> {
        if key.len() != 24 {
            return Ok(None);
        }
        let filter = RowFilter {
            trace_id: Some(&key[..16]),
            key: Some(key),
            ..RowFilter::window((0, u64::MAX))
        };
        let (rows, _, _) = self.scan(Signal::Spans, (0, u64::MAX), filter, usize::MAX)?;
        Ok(decode_rows::<SpanRecord>(rows)?.pop().map(|(_, s)| s))
    }

    /// Cold spans that started in `window`, optionally of one service or
    /// with status error only, newest first (by start, trace id, span id).
    pub fn spans(
        &self,
        window: (u64, u64),
        service: Option<&str>,
        errors_only: bool,
        budget: usize,
    ) -> StoreResult<ColdFound<SpanRecord>> {
        let filter = RowFilter {
            name: service,
            ..RowFilter::window(window)
        };
        let (mut rows, examined, truncated) = self.scan(Signal::Spans, window, filter, budget)?;
        if errors_only {
            rows.retain(|r| r.status == span_status_code(SpanStatus::Error));
        }
        rows.sort_by(|a, b| (b.time_unix_nanos, &b.key).cmp(&(a.time_unix_nanos, &a.key)));
        Ok(ColdFound {
            records: decode_rows(rows)?,
            examined,
            truncated,
        })
    }

    /// Cold log records in `window`, optionally of one service or trace,
    /// newest first (by key: time ++ content hash, as the hot tier orders).
    pub fn logs(
        &self,
        window: (u64, u64),
        service: Option<&str>,
        trace: Option<&TraceId>,
        budget: usize,
    ) -> StoreResult<ColdFound<LogRecord>> {
        let filter = RowFilter {
            name: service,
            trace_id: trace.map(|t| &t[..]),
            ..RowFilter::window(window)
        };
        self.records(Signal::Logs, window, filter, budget)
    }

    /// The cold log record stored under `key` (time ++ content hash).
    pub fn log_by_key(&self, key: &[u8]) -> StoreResult<Option<LogRecord>> {
        let Some(time) = key.get(..8) else {
            return Ok(None);
        };
        let t = u64::from_be_bytes(time.try_into().expect("8 bytes"));
        let filter = RowFilter {
            key: Some(key),
            ..RowFilter::window((t, t))
        };
        let found = self.records::<LogRecord>(Signal::Logs, (t, t), filter, usize::MAX)?;
        Ok(found.records.into_iter().next().map(|(_, l)| l))
    }

    /// Cold metric points in `window`, optionally of one metric name,
    /// newest first.
    pub fn metrics(
        &self,
        window: (u64, u64),
        name: Option<&str>,
        budget: usize,
    ) -> StoreResult<ColdFound<MetricPoint>> {
        let filter = RowFilter {
            name,
            ..RowFilter::window(window)
        };
        self.records(Signal::Metrics, window, filter, budget)
    }

    fn records<T: serde::de::DeserializeOwned>(
        &self,
        signal: Signal,
        window: (u64, u64),
        filter: RowFilter<'_>,
        budget: usize,
    ) -> StoreResult<ColdFound<T>> {
        let (mut rows, examined, truncated) = self.scan(signal, window, filter, budget)?;
        rows.sort_by(|a, b| b.key.cmp(&a.key));
        Ok(ColdFound {
            records: decode_rows(rows)?,
            examined,
            truncated,
        })
    }

    /// Cold log records in `window` by severity, optionally of one service.
    pub fn log_severity_counts(
        &self,
        window: (u64, u64),
        service: Option<&str>,
    ) -> StoreResult<BTreeMap<Severity, u64>> {
        let mut counts = BTreeMap::new();
        let filter = RowFilter {
            name: service,
            ..RowFilter::window(window)
        };
        self.for_each_row(Signal::Logs, window, filter, |row| {
            let l: LogRecord = decode(&row.record)?;
            *counts.entry(l.severity).or_insert(0) += 1;
            Ok(())
        })?;
        Ok(counts)
    }
}

/// The `status` column's code of a span status.
pub(crate) fn span_status_code(s: SpanStatus) -> i32 {
    match s {
        SpanStatus::Unset => 0,
        SpanStatus::Ok => 1,
        SpanStatus::Error => 2,
    }
}

fn decode_rows<T: serde::de::DeserializeOwned>(
    rows: Vec<ColdRow>,
) -> StoreResult<Vec<(Vec<u8>, T)>> {
    rows.into_iter()
        .map(|r| Ok((r.key, decode::<T>(&r.record)?)))
        .collect()
}
