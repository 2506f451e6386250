//! A read of the whole data set: every storage read a query makes.
//! Blocking; [`super::QueryService::read`] runs it off the async workers.
//!
//! The only code that knows there are two tiers. Every read of records
//! reads the hot tier first and the cold tier (`state::cold`) after, with
//! the manifest as of then: a record a move took out of the hot tier in
//! between is in a file that manifest names, so nothing is missed; a record
//! found in both (a span sent again after its move, or a read racing a move)
//! is answered once, by key, from the hot tier. So a move never changes an
//! answer. What moves leave in the hot tier (service counters, tags,
//! comments, blobs) is read there alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::TracesData;

use crate::analytics::SpanDigest;
use crate::comments::Comment;
use crate::fulltext::{DocKind, FullText, MAX_HITS};
use crate::llm::Sha256Digest;
use crate::metric_rollup::Resolution;
use crate::model::{LogRecord, MetricPoint, Severity, SpanRecord, TraceId};
use crate::rollup::{minute_of, minutes_starting_in, WindowRollups};
use crate::state::cold::{ColdReader, ColdStats};
use crate::state::hot::{
    Found, HotStore, LogQuery, LogWalk, MetricQuery, NameRollups, Order, ServiceStats, SpanQuery,
    SpanScan, SpanWalk, StoreError, StoreResult, TagScope, TagType,
};

pub struct View {
    hot: Arc<HotStore>,
    fulltext: Arc<FullText>,
}

impl View {
    pub(super) fn new(hot: Arc<HotStore>, fulltext: Arc<FullText>) -> View {
        View { hot, fulltext }
    }

    /// The cold tier as the manifest names it now: opened after the hot
    /// tier was read (see the module documentation).
    fn cold(&self) -> StoreResult<ColdReader> {
        ColdReader::open(&self.hot)
    }

    /// Every span of a trace (empty when there is none), ordered by start.
    pub fn trace(&self, id: &TraceId) -> StoreResult<Vec<SpanRecord>> {
        let mut spans = self.hot.trace(id)?;
        let hot: HashSet<[u8; 8]> = spans.iter().map(|s| s.span_id).collect();
        let cold = self.cold()?.trace(id)?;
        spans.extend(
            cold.into_iter()
                .map(|(_, s)| s)
                .filter(|s| !hot.contains(&s.span_id)),
        );
        spans.sort_by(|a, b| {
            a.start_unix_nanos
                .cmp(&b.start_unix_nanos)
                .then(a.span_id.cmp(&b.span_id))
        });
        Ok(spans)
    }

    /// A trace as OTLP `TracesData`, exactly as it was sent (see
    /// `otlp::encode`); `None` when there is no such trace.
    pub fn trace_as_otlp(&self, id: &TraceId) -> StoreResult<Option<TracesData>> {
        let spans = self.trace(id)?;
        if spans.is_empty() {
            return Ok(None);
        }
        let blobs = self.llm_texts(&spans)?;
        Ok(Some(crate::otlp::encode::traces_data(&spans, |sha| {
            blobs.get(sha).cloned()
        })))
    }

    /// The LLM texts the spans' attributes were moved to, read up front so a
    /// storage error fails the read instead of leaving attributes out.
    fn llm_texts(&self, spans: &[SpanRecord]) -> StoreResult<HashMap<Sha256Digest, Vec<u8>>> {
        let mut out = HashMap::new();
        let shas = spans
            .iter()
            .filter_map(|s| s.llm.as_ref())
            .flat_map(|l| [l.prompt_sha256, l.completion_sha256])
            .flatten();
        for sha in shas {
            if let std::collections::hash_map::Entry::Vacant(slot) = out.entry(sha) {
                if let Some(bytes) = self.hot.blob(&sha)? {
                    slot.insert(bytes);
                }
            }
        }
        Ok(out)
    }

    /// Spans matching `q`, newest first.
    pub fn search_spans(&self, q: &SpanQuery) -> StoreResult<Vec<SpanRecord>> {
        let hot = self.hot.search(q)?.spans;
        let window = (
            q.since_unix_nanos.unwrap_or(0),
            q.until_unix_nanos.unwrap_or(u64::MAX),
        );
        let errors_only = q.status == Some(crate::model::SpanStatus::Error);
        // A full answer from the hot tier leaves the cold tier only spans
        // as new as its oldest: usually none (cold is older).
        let window = match hot.last() {
            Some(oldest) if hot.len() >= q.limit => {
                (window.0.max(oldest.start_unix_nanos), window.1)
            }
            _ => window,
        };
        let cold = self.cold()?.newest_spans(
            window,
            (q.service.as_deref(), errors_only),
            (q.limit, q.max_scanned),
            |s| q.matches(s),
        )?;
        let cold = cold.records.into_iter().map(|(_, s)| s);
        Ok(newest_spans(hot, cold, q.limit))
    }

    /// The best full-text hits for `text` among spans, narrowed by `q`,
    /// newest first. Only the best [`MAX_HITS`] hits are considered.
    pub fn search_spans_text(&self, text: &str, q: &SpanQuery) -> StoreResult<Vec<SpanRecord>> {
        let keys = self
            .fulltext
            .search(text, DocKind::Span, MAX_HITS)
            .map_err(StoreError::Index)?;
        // Hits come newest first: stop loading at `limit` matches.
        let mut spans = Vec::new();
        let mut cold = None;
        for k in keys {
            if spans.len() == q.limit {
                break;
            }
            let span = match self.hot.get_span_by_key(&k)? {
                Some(s) => Some(s),
                None => lazy_cold(&mut cold, &self.hot)?.span_by_key(&k)?,
            };
            if let Some(s) = span {
                if q.matches(&s) {
                    spans.push(s);
                }
            }
        }
        debug_assert!(spans
            .windows(2)
            .all(|w| w[0].start_unix_nanos >= w[1].start_unix_nanos));
        Ok(spans)
    }

    /// Visits the spans that started in `[from, to]` (unix nanoseconds),
    /// newest first, through the index `walk` names, until `visit` breaks or
    /// `max_scanned` spans were visited; the answer says which.
    pub fn visit_spans(
        &self,
        window: (u64, u64),
        walk: SpanWalk<'_>,
        max_scanned: usize,
        mut visit: impl FnMut(SpanRecord) -> StoreResult<ControlFlow<()>>,
    ) -> StoreResult<SpanScan> {
        // The hot tier first, then the cold tier's spans it did not have.
        // Cold spans are older than the hot window, so this is newest first
        // but for spans that arrived after their range moved.
        let mut visited = HashSet::new();
        let mut stopped = false;
        let mut scan = self.hot.visit_spans(window, walk, max_scanned, |s| {
            visited.insert((s.trace_id, s.span_id));
            let flow = visit(s)?;
            stopped = flow.is_break();
            Ok(flow)
        })?;
        if stopped || scan.truncated {
            return Ok(scan);
        }
        let (service, errors_only) = match walk {
            SpanWalk::Time => (None, false),
            SpanWalk::Errors => (None, true),
            SpanWalk::Service(s) => (Some(s), false),
        };
        let budget = max_scanned - scan.scanned;
        let cold = self.cold()?.spans(window, service, errors_only, budget)?;
        for (_, s) in cold.records {
            if scan.scanned >= max_scanned {
                scan.truncated = true;
                break;
            }
            if visited.contains(&(s.trace_id, s.span_id)) {
                continue;
            }
            scan.scanned += 1;
            if visit(s)?.is_break() {
                return Ok(scan);
            }
        }
        scan.truncated |= cold.truncated;
        Ok(scan)
    }

    /// Tag names ever seen in `scope` (span or resource), at most `max`,
    /// from the tag index.
    pub fn tag_names(&self, scope: TagScope, max: usize) -> StoreResult<Vec<String>> {
        self.hot.tag_names(scope, max)
    }

    /// Values ever seen of the tag `name` in `scope`, at most `max`, from
    /// the tag index.
    pub fn tag_values(
        &self,
        scope: TagScope,
        name: &str,
        max: usize,
    ) -> StoreResult<Vec<(TagType, String)>> {
        self.hot.tag_values(scope, name, max)
    }

    /// Span names ever seen in `service`, at most `max`, from the tag index.
    pub fn operations(&self, service: &str, max: usize) -> StoreResult<Vec<String>> {
        self.hot.operations(service, max)
    }

    pub fn services(&self) -> StoreResult<Vec<(String, ServiceStats)>> {
        self.hot.services()
    }

    pub fn search_logs(&self, q: &LogQuery) -> StoreResult<Found<LogRecord>> {
        let hot = self.hot.search_logs(q)?;
        let cold = self.cold()?.newest_logs(
            cold_window(
                &hot,
                q.limit,
                window(q.since_unix_nanos, q.until_unix_nanos),
            ),
            (q.service.as_deref(), q.trace_id.as_ref()),
            (q.limit, q.max_scanned),
            |l| q.matches(l),
        )?;
        let (examined, truncated) = (cold.examined, cold.truncated);
        let cold = cold.records.into_iter();
        Ok(newest_records(hot, cold, q.limit, examined, truncated))
    }

    /// Visits the log records of `[from, to]` (unix nanoseconds) in
    /// `order`, through the index `walk` names, until `visit` breaks or
    /// `max_scanned` records were visited; the answer says which.
    pub fn visit_logs(
        &self,
        window: (u64, u64),
        walk: LogWalk<'_>,
        order: Order,
        max_scanned: usize,
        mut visit: impl FnMut(LogRecord) -> StoreResult<ControlFlow<()>>,
    ) -> StoreResult<SpanScan> {
        let cold = self.cold()?;
        // Records as new as the newest cold one may be in both tiers while
        // a move commits: the hot copies visited are remembered, and the
        // cold copies of those skipped.
        let cold_until = cold
            .manifest()
            .files_of(crate::state::cold::Signal::Logs)
            .filter(|f| f.overlaps(window))
            .map(|f| f.max_time_unix_nanos)
            .max();
        let Some(cold_until) = cold_until else {
            return self
                .hot
                .visit_logs(window, walk, order, max_scanned, |_, l| visit(l));
        };
        let mut in_hot = std::collections::HashSet::new();
        let mut broke = false;
        let mut hot_visit = |key: &[u8], l: LogRecord| {
            if l.timestamp_unix_nanos <= cold_until {
                in_hot.insert(key.to_vec());
            }
            let flow = visit(l)?;
            broke |= flow.is_break();
            Ok(flow)
        };
        let cold_visit = |visit: &mut dyn FnMut(LogRecord) -> StoreResult<ControlFlow<()>>,
                          budget: usize,
                          skip: &std::collections::HashSet<Vec<u8>>|
         -> StoreResult<(SpanScan, bool)> {
            let (service, severity) = match walk {
                LogWalk::Time => (None, None),
                LogWalk::Service(s) => (Some(s), None),
                LogWalk::Severity(sev) => (None, Some(sev)),
            };
            let found = cold.logs(window, service, None, budget)?;
            let mut records = found.records;
            if order == Order::OldestFirst {
                records.reverse();
            }
            let mut scan = SpanScan {
                scanned: found.examined,
                truncated: found.truncated,
            };
            for (key, l) in records {
                if skip.contains(&key) || severity.is_some_and(|s| l.severity != s) {
                    continue;
                }
                if visit(l)?.is_break() {
                    scan.truncated = false;
                    return Ok((scan, true));
                }
            }
            Ok((scan, false))
        };
        // Cold records are older than hot ones: newest first visits the hot
        // tier first, oldest first the cold tier first.
        match order {
            Order::NewestFirst => {
                let mut scan =
                    self.hot
                        .visit_logs(window, walk, order, max_scanned, &mut hot_visit)?;
                if broke || scan.truncated {
                    return Ok(scan);
                }
                let budget = max_scanned.saturating_sub(scan.scanned);
                let (c, _) = cold_visit(&mut visit, budget, &in_hot)?;
                scan.scanned += c.scanned;
                scan.truncated |= c.truncated;
                Ok(scan)
            }
            Order::OldestFirst => {
                let none = std::collections::HashSet::new();
                let (mut scan, stopped) = cold_visit(&mut visit, max_scanned, &none)?;
                if stopped || scan.truncated {
                    return Ok(scan);
                }
                let budget = max_scanned.saturating_sub(scan.scanned);
                let h = self
                    .hot
                    .visit_logs(window, walk, order, budget, |_, l| visit(l))?;
                scan.scanned += h.scanned;
                scan.truncated |= h.truncated;
                Ok(scan)
            }
        }
    }

    /// Full-text hits among log records, narrowed by `q`, newest first.
    pub fn search_logs_text(&self, text: &str, q: &LogQuery) -> StoreResult<Vec<LogRecord>> {
        let keys = self
            .fulltext
            .search(text, DocKind::Log, MAX_HITS)
            .map_err(StoreError::Index)?;
        // Hits come newest first: stop loading at `limit` matches.
        let mut logs = Vec::new();
        let mut cold = None;
        for k in keys {
            if logs.len() == q.limit {
                break;
            }
            let log = match self.hot.get_log_by_key(&k)? {
                Some(l) => Some(l),
                None => lazy_cold(&mut cold, &self.hot)?.log_by_key(&k)?,
            };
            if let Some(l) = log {
                let in_window = q
                    .since_unix_nanos
                    .is_none_or(|s| l.timestamp_unix_nanos >= s);
                if in_window && q.matches(&l) {
                    logs.push(l);
                }
            }
        }
        Ok(logs)
    }

    pub fn search_metrics(&self, q: &MetricQuery) -> StoreResult<Found<MetricPoint>> {
        let hot = self.hot.search_metrics(q)?;
        let cold = self.cold()?.newest_metrics(
            cold_window(
                &hot,
                q.limit,
                window(q.since_unix_nanos, q.until_unix_nanos),
            ),
            q.name.as_deref(),
            (q.limit, q.max_scanned),
            |m| q.matches(m),
        )?;
        let (examined, truncated) = (cold.examined, cold.truncated);
        let cold = cold.records.into_iter();
        Ok(newest_records(hot, cold, q.limit, examined, truncated))
    }

    /// The metric points named `name` that lie in `[since, until]` (unix
    /// nanoseconds, inclusive), newest first, through the `metric_by_name`
    /// index; at most `max_points` (the answer says when there were more).
    pub fn metric_points_by_name(
        &self,
        name: &str,
        (since, until): (u64, u64),
        max_points: usize,
    ) -> StoreResult<Found<MetricPoint>> {
        self.hot.search_metrics(&MetricQuery {
            name: Some(name.to_string()),
            since_unix_nanos: Some(since),
            until_unix_nanos: Some(until),
            // One above the budget, so running out of it is reported.
            limit: max_points.saturating_add(1),
            max_scanned: max_points,
            ..Default::default()
        })
    }

    /// Metric names stored on the days that overlap `[since, until]`, at
    /// most `max_names` (from the index, without reading points).
    pub fn metric_names(
        &self,
        window: (u64, u64),
        max_names: usize,
    ) -> StoreResult<std::collections::BTreeSet<String>> {
        self.hot.metric_names(window, max_names)
    }

    /// The rollups at `res` of metric `name` for buckets `[first, last]`,
    /// per series, at most `max_rollups` (and whether there were more).
    /// Rollups live in the hot tier only: moves leave them there.
    pub fn metric_rollups(
        &self,
        name: &str,
        res: Resolution,
        buckets: (u64, u64),
        max_rollups: usize,
    ) -> StoreResult<(NameRollups, bool)> {
        self.hot.metric_rollups(name, res, buckets, max_rollups)
    }

    /// Metric names with rollups at `res` on the days of buckets
    /// `[first, last]`, at most `max_names`.
    pub fn metric_rollup_names(
        &self,
        res: Resolution,
        buckets: (u64, u64),
        max_names: usize,
    ) -> StoreResult<std::collections::BTreeSet<String>> {
        self.hot.metric_rollup_names(res, buckets, max_names)
    }

    /// Below this time (unix nanoseconds) retention deleted the raw metric
    /// points of both tiers; their rollups remain.
    pub fn metrics_retention_floor(&self) -> StoreResult<u64> {
        Ok(self.hot.retention_state()?.floors.metrics)
    }

    /// Below this time (unix nanoseconds) raw metric points may be gone
    /// from the hot tier, which series selection reads: the metrics
    /// retention floor, or the end of the newest move of points to the
    /// cold tier, whichever is later. Rollups answer below it.
    pub fn raw_metrics_floor(&self) -> StoreResult<u64> {
        let retained = self.metrics_retention_floor()?;
        let moved = self
            .hot
            .cold_manifest()?
            .files_of(crate::state::cold::Signal::Metrics)
            .map(|f| f.to_unix_nanos)
            .max()
            .unwrap_or(0);
        Ok(retained.max(moved))
    }

    /// Digests of the spans that started in `[since, until]`, at most `max`
    /// (and whether there were more).
    pub fn span_digests(
        &self,
        (since, until): (u64, u64),
        service: Option<&str>,
        max: usize,
    ) -> StoreResult<(Vec<SpanDigest>, bool)> {
        let (mut digests, mut more) = self.hot.span_digests(since, until, service, max)?;
        let cold = self.cold()?.spans((since, until), service, false, max)?;
        let hot: HashSet<([u8; 16], [u8; 8])> =
            digests.iter().map(|d| (d.trace_id, d.span_id)).collect();
        more |= cold.truncated;
        digests.extend(
            cold.records
                .iter()
                .filter(|(_, s)| !hot.contains(&(s.trace_id, s.span_id)))
                .map(|(_, s)| SpanDigest::of(s)),
        );
        digests.sort_by(|a, b| {
            (a.start_unix_nanos, a.trace_id, a.span_id).cmp(&(
                b.start_unix_nanos,
                b.trace_id,
                b.span_id,
            ))
        });
        if digests.len() > max {
            digests.truncate(max);
            more = true;
        }
        Ok((digests, more))
    }

    /// The window `[since, until]`'s spans per service and operation, from
    /// the rollups of the minutes that start within it
    /// ([`minutes_starting_in`]). A window shorter than a minute holds no
    /// minute start: it is read from span digests (at most `max_spans`, else
    /// `truncated`), or, when it lies below the spans' retention floor (its
    /// spans may be gone, their rollups are not), from the rollups of the
    /// minutes it touches.
    pub fn window_rollups(
        &self,
        (since, until): (u64, u64),
        service: Option<&str>,
        max_spans: usize,
    ) -> StoreResult<WindowRollups> {
        let mut w = WindowRollups::default();
        if let Some(minutes) = minutes_starting_in(since, until) {
            self.hot.merge_rollups(minutes, service, &mut w)?;
        } else if since < self.hot.retention_state()?.floors.traces {
            let minutes = (minute_of(since), minute_of(until));
            self.hot.merge_rollups(minutes, service, &mut w)?;
        } else {
            // Both tiers: a short window of moved spans is still theirs.
            let (digests, truncated) = self.span_digests((since, until), service, max_spans)?;
            w.truncated = truncated;
            digests.iter().for_each(|d| w.add_digest(d));
        }
        Ok(w)
    }

    pub fn log_severity_counts(
        &self,
        (since, until): (u64, u64),
        service: Option<&str>,
    ) -> StoreResult<BTreeMap<Severity, u64>> {
        let mut counts = self.hot.log_severity_counts(since, until, service)?;
        for (severity, n) in self.cold()?.log_severity_counts((since, until), service)? {
            *counts.entry(severity).or_insert(0) += n;
        }
        Ok(counts)
    }

    /// Metric points in the window and their distinct names.
    pub fn metric_point_counts(
        &self,
        (since, until): (u64, u64),
        service: Option<&str>,
    ) -> StoreResult<(u64, u64)> {
        let (mut points, mut names) = self.hot.metric_point_names(since, until, service)?;
        let (cold_points, cold_names) = self.cold()?.metric_point_names((since, until), service)?;
        points += cold_points;
        names.extend(cold_names);
        Ok((points, names.len() as u64))
    }

    pub fn trace_comments(&self, trace: &TraceId, limit: usize) -> StoreResult<Vec<Comment>> {
        self.hot.trace_comments(trace, limit)
    }

    /// What each tier holds per signal, and the retention state.
    pub fn storage_stats(&self) -> StoreResult<(crate::state::hot::HotStats, ColdStats)> {
        let mut cold = self.hot.cold_manifest()?.stats();
        cold.missing_files = self
            .hot
            .missing_cold_files()?
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        Ok((self.hot.stats()?, cold))
    }

    /// The API key set.
    pub fn keys(&self) -> StoreResult<crate::auth::KeySet> {
        self.hot.key_set()
    }

    /// A stored LLM payload or large log body, by content hash.
    pub fn blob(&self, sha256: &Sha256Digest) -> StoreResult<Option<Vec<u8>>> {
        self.hot.blob(sha256)
    }
}

/// The cold reader, opened on first use (after the hot read it follows).
fn lazy_cold<'a>(
    cold: &'a mut Option<ColdReader>,
    hot: &Arc<HotStore>,
) -> StoreResult<&'a ColdReader> {
    if cold.is_none() {
        *cold = Some(ColdReader::open(hot)?);
    }
    Ok(cold.as_ref().expect("just opened"))
}

/// The window left to the cold tier by a hot answer: from the oldest hot
/// record on when the hot tier filled the limit (anything older cannot be
/// among the newest `limit`).
fn cold_window<T>(hot: &Found<T>, limit: usize, (from, to): (u64, u64)) -> (u64, u64) {
    match hot.keys.last() {
        Some(k) if hot.records.len() >= limit && k.len() >= 8 => {
            let oldest = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
            (from.max(oldest), to)
        }
        _ => (from, to),
    }
}

/// A query's optional bounds as an inclusive window.
fn window(since: Option<u64>, until: Option<u64>) -> (u64, u64) {
    (since.unwrap_or(0), until.unwrap_or(u64::MAX))
}

/// The newest `limit` of two tiers' spans (each newest first), a span in
/// both answered from the hot tier: ordered as the hot tier orders them
/// (start, trace id, span id; descending).
fn newest_spans(
    hot: Vec<SpanRecord>,
    cold: impl Iterator<Item = SpanRecord>,
    limit: usize,
) -> Vec<SpanRecord> {
    let keys: HashSet<([u8; 16], [u8; 8])> = hot.iter().map(|s| (s.trace_id, s.span_id)).collect();
    let mut all = hot;
    all.extend(cold.filter(|s| !keys.contains(&(s.trace_id, s.span_id))));
    all.sort_by(|a, b| {
        (b.start_unix_nanos, b.trace_id, b.span_id).cmp(&(
            a.start_unix_nanos,
            a.trace_id,
            a.span_id,
        ))
    });
    all.truncate(limit);
    all
}

/// The newest `limit` of two tiers' log records or metric points, by key
/// (time ++ content key, descending, as the hot tier orders them), a
/// record in both answered from the hot tier.
fn newest_records<T>(
    hot: Found<T>,
    cold: impl Iterator<Item = (Vec<u8>, T)>,
    limit: usize,
    cold_examined: usize,
    cold_truncated: bool,
) -> Found<T> {
    let Found {
        records,
        keys,
        scanned,
        truncated,
    } = hot;
    let hot_keys: HashSet<Vec<u8>> = keys.iter().cloned().collect();
    let mut all: Vec<(Vec<u8>, T)> = keys.into_iter().zip(records).collect();
    all.extend(cold.filter(|(k, _)| !hot_keys.contains(k)));
    all.sort_by(|a, b| b.0.cmp(&a.0));
    all.truncate(limit);
    let (keys, records) = all.into_iter().unzip();
    Found {
        records,
        keys,
        scanned: scanned + cold_examined,
        truncated: truncated || cold_truncated,
    }
}
