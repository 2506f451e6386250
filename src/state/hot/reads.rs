//! Point reads and whole-window totals: a span, a trace, a service's stats,
//! the applied position.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use fjall::Readable;
use tael_consensus::{LogId, StoredMembership};

use super::keys::{
    span_key, time_key_bounds, META_API_KEYS, META_LAST_APPLIED, META_MEMBERSHIP,
    META_REJECTED_ENTRIES, META_RETIRED_NODES,
};
use super::{HotStore, RejectedEntries, ServiceStats, StoreError, StoreResult};
use crate::analytics::SpanDigest;
use crate::codec::decode;
use crate::comments::Comment;
use crate::model::{LogRecord, MetricPoint, Severity, SpanRecord, TraceId};

impl HotStore {
    /// The span stored under `key` (trace id ++ span id).
    pub fn get_span_by_key(&self, key: &[u8]) -> StoreResult<Option<SpanRecord>> {
        Ok(self
            .keyspaces
            .spans
            .get(key)?
            .map(|v| decode::<SpanRecord>(&v))
            .transpose()?)
    }

    pub fn get_span(&self, trace: &TraceId, span: &[u8; 8]) -> StoreResult<Option<SpanRecord>> {
        self.get_span_by_key(&span_key(trace, span))
    }

    /// Every span of one trace, ordered by start time.
    pub fn trace(&self, trace: &TraceId) -> StoreResult<Vec<SpanRecord>> {
        let mut out = Vec::new();
        for g in self.keyspaces.spans.prefix(trace) {
            let (_, v) = g.into_inner()?;
            out.push(decode::<SpanRecord>(&v)?);
        }
        out.sort_by(|a, b| {
            a.start_unix_nanos
                .cmp(&b.start_unix_nanos)
                .then(a.span_id.cmp(&b.span_id))
        });
        Ok(out)
    }

    /// The log record stored under `key`.
    pub fn get_log_by_key(&self, key: &[u8]) -> StoreResult<Option<LogRecord>> {
        Ok(self
            .keyspaces
            .logs
            .get(key)?
            .map(|v| decode::<LogRecord>(&v))
            .transpose()?)
    }

    /// A trace's comments in commit order, at most `limit`.
    pub fn trace_comments(&self, trace: &TraceId, limit: usize) -> StoreResult<Vec<Comment>> {
        let mut out = Vec::new();
        for kv in self.keyspaces.comments.prefix(trace).take(limit) {
            let (_, v) = kv.into_inner()?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    pub fn blob(&self, sha256: &crate::llm::Sha256Digest) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.keyspaces.blobs.get(sha256)?.map(|v| v.to_vec()))
    }

    pub fn services(&self) -> StoreResult<Vec<(String, ServiceStats)>> {
        let mut out = Vec::new();
        for g in self.keyspaces.svc_stats.iter() {
            let (k, v) = g.into_inner()?;
            out.push((String::from_utf8_lossy(&k).into_owned(), decode(&v)?));
        }
        Ok(out)
    }

    /// Digests of the spans that started in `[since, until]`, in time
    /// order, optionally of one service; at most `max` (then `true`).
    pub fn span_digests(
        &self,
        since_unix_nanos: u64,
        until_unix_nanos: u64,
        service: Option<&str>,
        max: usize,
    ) -> StoreResult<(Vec<SpanDigest>, bool)> {
        let (lo, hi) = time_key_bounds(since_unix_nanos, until_unix_nanos);
        let mut out = Vec::new();
        for kv in self.keyspaces.by_time.range(lo..=hi) {
            let (_, v) = kv.into_inner()?;
            let d: SpanDigest = decode(&v)?;
            if service.is_some_and(|s| s != d.service) {
                continue;
            }
            if out.len() == max {
                return Ok((out, true));
            }
            out.push(d);
        }
        Ok((out, false))
    }

    /// Log records in `[since, until]` by severity, optionally of one service.
    pub fn log_severity_counts(
        &self,
        since_unix_nanos: u64,
        until_unix_nanos: u64,
        service: Option<&str>,
    ) -> StoreResult<BTreeMap<Severity, u64>> {
        let mut counts = BTreeMap::new();
        let (lo, hi) = (
            since_unix_nanos.to_be_bytes(),
            (until_unix_nanos.saturating_add(1)).to_be_bytes(),
        );
        for kv in self.keyspaces.logs.range(lo..hi) {
            let (_, v) = kv.into_inner()?;
            let l: LogRecord = decode(&v)?;
            if service.is_some_and(|s| s != l.service) {
                continue;
            }
            *counts.entry(l.severity).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Metric points in `[since, until]` and their distinct names,
    /// optionally of one service.
    pub fn metric_point_counts(
        &self,
        since_unix_nanos: u64,
        until_unix_nanos: u64,
        service: Option<&str>,
    ) -> StoreResult<(u64, u64)> {
        let (points, names) =
            self.metric_point_names(since_unix_nanos, until_unix_nanos, service)?;
        Ok((points, names.len() as u64))
    }

    /// [`Self::metric_point_counts`] with the distinct names themselves.
    pub fn metric_point_names(
        &self,
        since_unix_nanos: u64,
        until_unix_nanos: u64,
        service: Option<&str>,
    ) -> StoreResult<(u64, HashSet<String>)> {
        let mut points = 0;
        let mut names = HashSet::new();
        let (lo, hi) = (
            since_unix_nanos.to_be_bytes(),
            (until_unix_nanos.saturating_add(1)).to_be_bytes(),
        );
        for kv in self.keyspaces.metrics.range(lo..hi) {
            let (_, v) = kv.into_inner()?;
            let m: MetricPoint = decode(&v)?;
            if service.is_some_and(|s| s != m.service) {
                continue;
            }
            points += 1;
            names.insert(m.name);
        }
        Ok((points, names))
    }

    pub fn applied_state(&self) -> StoreResult<(Option<LogId>, StoredMembership)> {
        self.applied_state_in(&self.read_view())
    }

    pub fn applied_state_in(
        &self,
        view: &fjall::Snapshot,
    ) -> StoreResult<(Option<LogId>, StoredMembership)> {
        let last = self.last_applied_in(view)?;
        let membership = self.meta_json(view, META_MEMBERSHIP)?.unwrap_or_default();
        Ok((last, membership))
    }

    /// The log id of the last applied entry in `view`.
    pub(super) fn last_applied_in(&self, view: &fjall::Snapshot) -> StoreResult<Option<LogId>> {
        Ok(self
            .meta_json::<Option<LogId>>(view, META_LAST_APPLIED)?
            .flatten())
    }

    /// Node ids that were members once and were removed.
    pub fn retired_node_ids(&self) -> StoreResult<BTreeSet<u64>> {
        Ok(self
            .meta_json(&self.read_view(), META_RETIRED_NODES)?
            .unwrap_or_default())
    }

    /// The entries apply rejected so far (replicated state).
    pub fn rejected_entries(&self) -> StoreResult<RejectedEntries> {
        Ok(self
            .meta_json(&self.read_view(), META_REJECTED_ENTRIES)?
            .unwrap_or_default())
    }

    /// The API key set (empty before the first key is created).
    pub fn key_set(&self) -> StoreResult<crate::auth::KeySet> {
        Ok(self
            .meta_json(&self.read_view(), META_API_KEYS)?
            .unwrap_or_default())
    }

    fn meta_json<T: serde::de::DeserializeOwned>(
        &self,
        view: &fjall::Snapshot,
        key: &[u8],
    ) -> StoreResult<Option<T>> {
        view.get(&self.keyspaces.meta, key)?
            .map(|v| serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }
}
