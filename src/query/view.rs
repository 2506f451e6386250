//! A read of the whole data set: every storage read a query makes.
//! Blocking; [`super::QueryService::read`] runs it off the async workers.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::TracesData;

use crate::analytics::SpanDigest;
use crate::comments::Comment;
use crate::fulltext::{DocKind, FullText, MAX_HITS};
use crate::llm::Sha256Digest;
use crate::model::{LogRecord, MetricPoint, Severity, SpanRecord, TraceId};
use crate::rollup::{minute_of, minutes_starting_in, WindowRollups};
use crate::state::hot::{
    Found, HotStore, LogQuery, MetricQuery, ServiceStats, SpanQuery, SpanScan, SpanWalk,
    StoreError, StoreResult, TagScope, TagType,
};

pub struct View {
    hot: Arc<HotStore>,
    fulltext: Arc<FullText>,
}

impl View {
    pub(super) fn new(hot: Arc<HotStore>, fulltext: Arc<FullText>) -> View {
        View { hot, fulltext }
    }

    /// Every span of a trace (empty when there is none).
    pub fn trace(&self, id: &TraceId) -> StoreResult<Vec<SpanRecord>> {
        self.hot.trace(id)
    }

    /// A trace as OTLP `TracesData`, exactly as it was sent (see
    /// `otlp::encode`); `None` when there is no such trace.
    pub fn trace_as_otlp(&self, id: &TraceId) -> StoreResult<Option<TracesData>> {
        let spans = self.hot.trace(id)?;
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
        Ok(self.hot.search(q)?.spans)
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
        for k in keys {
            if spans.len() == q.limit {
                break;
            }
            if let Some(s) = self.hot.get_span_by_key(&k)? {
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
        visit: impl FnMut(SpanRecord) -> StoreResult<ControlFlow<()>>,
    ) -> StoreResult<SpanScan> {
        self.hot.visit_spans(window, walk, max_scanned, visit)
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
        self.hot.search_logs(q)
    }

    /// Full-text hits among log records, narrowed by `q`, newest first.
    pub fn search_logs_text(&self, text: &str, q: &LogQuery) -> StoreResult<Vec<LogRecord>> {
        let keys = self
            .fulltext
            .search(text, DocKind::Log, MAX_HITS)
            .map_err(StoreError::Index)?;
        // Hits come newest first: stop loading at `limit` matches.
        let mut logs = Vec::new();
        for k in keys {
            if logs.len() == q.limit {
                break;
            }
            if let Some(l) = self.hot.get_log_by_key(&k)? {
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
        self.hot.search_metrics(q)
    }

    /// Digests of the spans that started in `[since, until]`, at most `max`
    /// (and whether there were more).
    pub fn span_digests(
        &self,
        (since, until): (u64, u64),
        service: Option<&str>,
        max: usize,
    ) -> StoreResult<(Vec<SpanDigest>, bool)> {
        self.hot.span_digests(since, until, service, max)
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
            let (digests, truncated) = self.hot.span_digests(since, until, service, max_spans)?;
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
        self.hot.log_severity_counts(since, until, service)
    }

    /// Metric points in the window and their distinct names.
    pub fn metric_point_counts(
        &self,
        (since, until): (u64, u64),
        service: Option<&str>,
    ) -> StoreResult<(u64, u64)> {
        self.hot.metric_point_counts(since, until, service)
    }

    pub fn trace_comments(&self, trace: &TraceId, limit: usize) -> StoreResult<Vec<Comment>> {
        self.hot.trace_comments(trace, limit)
    }

    /// What the hot tier holds per signal, and the retention state.
    pub fn storage_stats(&self) -> StoreResult<crate::state::hot::HotStats> {
        self.hot.stats()
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
