//! The hot tier: spans and their indexes in fjall.
//!
//! Keyspaces (all written through one atomic batch per apply):
//! - `spans`       trace id ++ span id                      → span (bincode)
//! - `by_time`     start BE ++ trace id ++ span id          → ()
//! - `by_service`  len16 ++ service ++ start BE ++ ids      → ()
//! - `by_error`    start BE ++ trace id ++ span id          → () (status error only)
//! - `svc_stats`   service                                  → ServiceStats (bincode)
//! - `svc_traces`  len16 ++ service ++ trace id             → u32 LE spans of that trace
//! - `meta`        `last_applied`, `membership`             → JSON
//!
//! Re-ingesting a span replaces it: its old index entries and counters are
//! removed in the same batch, so a span never appears twice.

use std::collections::HashMap;
use std::path::Path;

use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, OwnedWriteBatch, PersistMode,
    Readable,
};
use serde::{Deserialize, Serialize};
use tael_consensus::{LogId, StoredMembership};

use crate::model::{SpanRecord, SpanStatus, TraceId};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

const BINCODE: bincode::config::Configuration = bincode::config::standard();

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, BINCODE).expect("in-memory encoding cannot fail")
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    let (v, read) = bincode::serde::decode_from_slice(bytes, BINCODE)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if read != bytes.len() {
        return Err(StoreError::Corrupt(format!(
            "{} trailing bytes",
            bytes.len() - read
        )));
    }
    Ok(v)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    pub span_count: u64,
    pub error_count: u64,
    pub duration_sum_nanos: u64,
    pub trace_count: u64,
}

/// Every keyspace, in a fixed order: snapshots refer to them by position.
pub const KEYSPACES: [&str; 8] = [
    "spans",
    "by_time",
    "by_service",
    "by_error",
    "svc_stats",
    "svc_traces",
    "meta",
    // trace id ++ log index (big-endian) → Comment: a trace's comments in
    // commit order.
    "comments",
];
const META_LAST_APPLIED: &[u8] = b"last_applied";
/// Journal files beyond which the small keyspaces are flushed (see [`HotStore::maintain`]).
const MAX_PINNED_JOURNALS: usize = 2;
/// Keyspaces that stay small: stats, per-trace counters, errors, meta.
const SMALL_KEYSPACES: [usize; 4] = [3, 4, 5, 6];
const SPAN_SEPARATION_THRESHOLD_BYTES: u32 = 128;
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;
const META_MEMBERSHIP: &[u8] = b"membership";
/// Ids of nodes removed from the membership: never admitted again.
const META_RETIRED_NODES: &[u8] = b"retired_node_ids";

pub struct HotStore {
    pub db: Database,
    /// Same order as [`KEYSPACES`].
    pub keyspaces: Vec<Keyspace>,
    /// The `double-apply-retries` mutation (fault-injection builds only):
    /// a re-ingested span is stored again instead of replacing itself.
    pub duplicate_retries: bool,
}

fn keyspace_options(name: &str) -> KeyspaceCreateOptions {
    // A full memtable is sealed, and the one it replaces freed, inline in the
    // applying thread; small memtables keep that pause short.
    let options = KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
    if name == "spans" {
        // Span bodies are keyed by random trace ids, so leveled compaction
        // would rewrite them again and again; stored in blob files, only
        // their small keys are compacted.
        options.with_kv_separation(Some(KvSeparationOptions {
            separation_threshold: SPAN_SEPARATION_THRESHOLD_BYTES,
            ..Default::default()
        }))
    } else {
        options
    }
}

fn span_key(t: &TraceId, s: &[u8; 8]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(t);
    k[16..].copy_from_slice(s);
    k
}

fn time_key(start: u64, span: &[u8; 24]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&start.to_be_bytes());
    k[8..].copy_from_slice(span);
    k
}

fn service_prefix(service: &str) -> Vec<u8> {
    let len = u16::try_from(service.len()).expect("service names are bounded at ingest");
    let mut k = Vec::with_capacity(2 + service.len() + 32);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(service.as_bytes());
    k
}

/// Width of the time buckets that lead `by_service` keys.
const SERVICE_BUCKET_NANOS: u64 = 3600 * 1_000_000_000;

/// `by_service` keys lead with the hour, so new keys only ever overlap the
/// current hour's tables and compaction never re-merges older history (a
/// service-first key would interleave every new table with all of it).
fn service_bucket_prefix(bucket: u64, service: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + 2 + service.len() + 32);
    k.extend_from_slice(&bucket.to_be_bytes());
    k.extend_from_slice(&service_prefix(service));
    k
}

fn service_key(service: &str, start: u64, span: &[u8; 24]) -> Vec<u8> {
    let mut k = service_bucket_prefix(start / SERVICE_BUCKET_NANOS, service);
    k.extend_from_slice(&time_key(start, span));
    k
}

fn svc_trace_key(service: &str, trace: &TraceId) -> Vec<u8> {
    let mut k = service_prefix(service);
    k.extend_from_slice(trace);
    k
}

impl HotStore {
    pub fn open(dir: &Path, worker_threads: usize, cache_bytes: u64) -> StoreResult<HotStore> {
        let db = Database::builder(dir)
            .worker_threads(worker_threads.max(1))
            .cache_size(cache_bytes)
            .open()?;
        let mut keyspaces = Vec::with_capacity(KEYSPACES.len());
        for name in KEYSPACES {
            keyspaces.push(db.keyspace(name, || keyspace_options(name))?);
        }
        Ok(HotStore {
            db,
            keyspaces,
            duplicate_retries: false,
        })
    }

    fn spans(&self) -> &Keyspace {
        &self.keyspaces[0]
    }
    fn by_time(&self) -> &Keyspace {
        &self.keyspaces[1]
    }
    fn by_service(&self) -> &Keyspace {
        &self.keyspaces[2]
    }
    fn by_error(&self) -> &Keyspace {
        &self.keyspaces[3]
    }
    fn svc_stats(&self) -> &Keyspace {
        &self.keyspaces[4]
    }
    fn svc_traces(&self) -> &Keyspace {
        &self.keyspaces[5]
    }
    fn comments(&self) -> &Keyspace {
        &self.keyspaces[7]
    }

    /// A trace's comments in commit order, at most `limit`.
    pub fn trace_comments(
        &self,
        trace: &TraceId,
        limit: usize,
    ) -> StoreResult<Vec<crate::comments::Comment>> {
        let mut out = Vec::new();
        for kv in self.comments().prefix(trace).take(limit) {
            let (_, v) = kv.into_inner()?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    fn meta(&self) -> &Keyspace {
        &self.keyspaces[6]
    }

    pub fn applied_state(&self) -> StoreResult<(Option<LogId>, StoredMembership)> {
        self.applied_state_in(&self.read_view())
    }

    /// Syncs the journal written so far (see `storage_maintenance` in node.rs
    /// for why), and flushes the small keyspaces once journals pile up: they
    /// rarely fill a memtable, so they would pin every journal file until
    /// fjall's journal limit forces all keyspaces to flush at once, which
    /// halts writes while the flushes queue up. Flushing a small memtable is
    /// cheap.
    pub fn maintain(&self) -> StoreResult<()> {
        self.db.persist(PersistMode::SyncData)?;
        if self.db.journal_count() > MAX_PINNED_JOURNALS {
            for &i in &SMALL_KEYSPACES {
                self.keyspaces[i].rotate_memtable()?;
            }
        }
        Ok(())
    }

    /// The storage engine's flush and compaction backlog, for diagnostics.
    pub fn backlog(&self) -> String {
        let per_keyspace: Vec<String> = KEYSPACES
            .iter()
            .zip(&self.keyspaces)
            .map(|(name, ks)| {
                format!(
                    "{name}:sealed={},tables={}",
                    ks.sealed_memtable_count(),
                    ks.table_count()
                )
            })
            .collect();
        format!(
            "journals={} {}",
            self.db.journal_count(),
            per_keyspace.join(" ")
        )
    }

    /// Fsyncs everything applied so far.
    pub fn persist(&self) -> StoreResult<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    pub fn begin(&self) -> ApplyBatch<'_> {
        ApplyBatch {
            store: self,
            batch: self.db.batch(),
            spans: HashMap::new(),
            stats: HashMap::new(),
            svc_traces: HashMap::new(),
        }
    }

    pub fn get_span(&self, trace: &TraceId, span: &[u8; 8]) -> StoreResult<Option<SpanRecord>> {
        self.spans()
            .get(span_key(trace, span))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Every span of one trace, ordered by start time.
    pub fn trace(&self, trace: &TraceId) -> StoreResult<Vec<SpanRecord>> {
        let mut out = Vec::new();
        for g in self.spans().prefix(trace) {
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

    pub fn services(&self) -> StoreResult<Vec<(String, ServiceStats)>> {
        let mut out = Vec::new();
        for g in self.svc_stats().iter() {
            let (k, v) = g.into_inner()?;
            out.push((String::from_utf8_lossy(&k).into_owned(), decode(&v)?));
        }
        Ok(out)
    }

    /// Spans matching `q`, newest first. Walks the most selective index over
    /// the time window and stops after `q.limit` matches or `q.max_scanned`
    /// candidates.
    pub fn search(&self, q: &SpanQuery) -> StoreResult<SearchResult> {
        let from = q.since_unix_nanos.unwrap_or(0);
        let to = q.until_unix_nanos.unwrap_or(u64::MAX);
        let mut lo = [0u8; 32];
        lo[..8].copy_from_slice(&from.to_be_bytes());
        let mut hi = [0xffu8; 32];
        hi[..8].copy_from_slice(&to.to_be_bytes());

        // Index entries newest first; each key ends with start ++ ids.
        let entries: Box<dyn Iterator<Item = fjall::Guard>> = if q.status == Some(SpanStatus::Error)
        {
            Box::new(self.by_error().range(lo.to_vec()..=hi.to_vec()).rev())
        } else if let Some(service) = &q.service {
            // Clamp the window to the data that exists, then walk its hour
            // buckets newest first.
            let newest = match self.by_time().last_key_value() {
                Some(g) => u64::from_be_bytes(g.key()?[..8].try_into().unwrap()),
                None => return Ok(SearchResult::default()),
            };
            let oldest = match self.by_time().first_key_value() {
                Some(g) => u64::from_be_bytes(g.key()?[..8].try_into().unwrap()),
                None => return Ok(SearchResult::default()),
            };
            let (from, to) = (from.max(oldest), to.min(newest));
            if from > to {
                return Ok(SearchResult::default());
            }
            let by_service = self.by_service().clone();
            let service = service.clone();
            Box::new(
                (from / SERVICE_BUCKET_NANOS..=to / SERVICE_BUCKET_NANOS)
                    .rev()
                    .flat_map(move |bucket| {
                        let mut a = service_bucket_prefix(bucket, &service);
                        let mut b = a.clone();
                        a.extend_from_slice(&lo);
                        b.extend_from_slice(&hi);
                        by_service.range(a..=b).rev()
                    }),
            )
        } else {
            Box::new(self.by_time().range(lo.to_vec()..=hi.to_vec()).rev())
        };

        let mut result = SearchResult::default();
        for g in entries {
            if result.spans.len() >= q.limit {
                break;
            }
            if result.scanned >= q.max_scanned {
                result.truncated = true;
                break;
            }
            result.scanned += 1;
            let k = g.key()?;
            let ids = &k[k.len() - 24..];
            let Some(v) = self.spans().get(ids)? else {
                return Err(StoreError::Corrupt("index entry without its span".into()));
            };
            let span: SpanRecord = decode(&v)?;
            if q.matches(&span) {
                result.spans.push(span);
            }
        }
        Ok(result)
    }

    /// A consistent read view across all keyspaces, unaffected by later applies.
    pub fn read_view(&self) -> fjall::Snapshot {
        self.db.snapshot()
    }

    pub fn applied_state_in(
        &self,
        view: &fjall::Snapshot,
    ) -> StoreResult<(Option<LogId>, StoredMembership)> {
        let last = self
            .meta_json::<Option<LogId>>(view, META_LAST_APPLIED)?
            .flatten();
        let membership = self.meta_json(view, META_MEMBERSHIP)?.unwrap_or_default();
        Ok((last, membership))
    }

    /// Node ids that were members once and were removed.
    pub fn retired_node_ids(&self) -> StoreResult<std::collections::BTreeSet<u64>> {
        Ok(self
            .meta_json(&self.read_view(), META_RETIRED_NODES)?
            .unwrap_or_default())
    }

    fn meta_json<T: serde::de::DeserializeOwned>(
        &self,
        view: &fjall::Snapshot,
        key: &[u8],
    ) -> StoreResult<Option<T>> {
        view.get(self.meta(), key)?
            .map(|v| serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }
}

#[derive(Debug, Clone)]
pub enum AttributeFilter {
    Exact(String, String),
    Contains(String, String),
    Regex(String, regex::Regex),
}

impl AttributeFilter {
    fn matches(&self, span: &SpanRecord) -> bool {
        match self {
            AttributeFilter::Exact(k, v) => span.attribute(k) == Some(v.as_str()),
            AttributeFilter::Contains(k, v) => {
                span.attribute(k).is_some_and(|a| a.contains(v.as_str()))
            }
            AttributeFilter::Regex(k, re) => span.attribute(k).is_some_and(|a| re.is_match(a)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SpanQuery {
    pub service: Option<String>,
    pub operation_contains: Option<String>,
    pub status: Option<SpanStatus>,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    pub since_unix_nanos: Option<u64>,
    pub until_unix_nanos: Option<u64>,
    pub attributes: Vec<AttributeFilter>,
    pub limit: usize,
    pub max_scanned: usize,
}

impl SpanQuery {
    fn matches(&self, s: &SpanRecord) -> bool {
        self.service.as_ref().is_none_or(|svc| &s.service == svc)
            && self
                .operation_contains
                .as_ref()
                .is_none_or(|op| s.operation.contains(op.as_str()))
            && self.status.is_none_or(|st| s.status == st)
            && self
                .min_duration_nanos
                .is_none_or(|m| s.duration_nanos() >= m)
            && self
                .max_duration_nanos
                .is_none_or(|m| s.duration_nanos() <= m)
            && self.attributes.iter().all(|f| f.matches(s))
    }
}

#[derive(Debug, Default)]
pub struct SearchResult {
    pub spans: Vec<SpanRecord>,
    pub scanned: usize,
    /// The scan budget ran out before the window was exhausted.
    pub truncated: bool,
}

/// One atomic apply: everything staged here lands in a single fjall batch
/// together with `last_applied`.
pub struct ApplyBatch<'a> {
    store: &'a HotStore,
    batch: OwnedWriteBatch,
    /// Spans written earlier in this batch (the batch itself is not readable).
    spans: HashMap<[u8; 24], SpanRecord>,
    stats: HashMap<String, ServiceStats>,
    svc_traces: HashMap<Vec<u8>, u32>,
}

impl ApplyBatch<'_> {
    pub fn put_span(&mut self, span: SpanRecord) -> StoreResult<()> {
        let key = span_key(&span.trace_id, &span.span_id);
        let old = match self.spans.get(&key) {
            Some(s) => Some(s.clone()),
            None => self
                .store
                .spans()
                .get(key)?
                .map(|v| decode::<SpanRecord>(&v))
                .transpose()?,
        };
        if old.is_some() && self.store.duplicate_retries {
            return self.put_duplicate(key, span);
        }
        if let Some(old) = old {
            if old == span {
                return Ok(()); // the same span again: nothing changes
            }
            self.unindex(&key, &old)?;
        }
        self.index(&key, &span)?;
        self.batch
            .insert(self.store.spans(), key.to_vec(), encode(&span));
        self.spans.insert(key, span);
        Ok(())
    }

    /// The `double-apply-retries` bug: the copy gets a key of its own (the
    /// span id with a salt), deterministic so every replica does the same.
    fn put_duplicate(&mut self, key: [u8; 24], span: SpanRecord) -> StoreResult<()> {
        debug_assert!(self.store.duplicate_retries);
        for salt in 1u64.. {
            let mut dup = key;
            for (b, s) in dup[16..].iter_mut().zip(salt.to_be_bytes()) {
                *b ^= s;
            }
            if self.spans.contains_key(&dup) || self.store.spans().get(dup)?.is_some() {
                continue;
            }
            self.index(&dup, &span)?;
            self.batch
                .insert(self.store.spans(), dup.to_vec(), encode(&span));
            self.spans.insert(dup, span);
            return Ok(());
        }
        unreachable!("some salt is free")
    }

    /// Adds `ids` to the retired node ids (they left the membership).
    pub fn retire_nodes(&mut self, ids: &std::collections::BTreeSet<u64>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut all = self.store.retired_node_ids()?;
        all.extend(ids);
        self.batch.insert(
            self.store.meta(),
            META_RETIRED_NODES.to_vec(),
            serde_json::to_vec(&all).expect("a set of ids serializes"),
        );
        Ok(())
    }

    pub fn put_comment(&mut self, log_index: u64, c: &crate::comments::Comment) {
        let mut key = Vec::with_capacity(24);
        key.extend_from_slice(&c.trace_id);
        key.extend_from_slice(&log_index.to_be_bytes());
        self.batch.insert(self.store.comments(), key, encode(c));
    }

    fn stats_mut(&mut self, service: &str) -> StoreResult<&mut ServiceStats> {
        if !self.stats.contains_key(service) {
            let cur = match self.store.svc_stats().get(service)? {
                Some(v) => decode(&v)?,
                None => ServiceStats::default(),
            };
            self.stats.insert(service.to_string(), cur);
        }
        Ok(self.stats.get_mut(service).unwrap())
    }

    fn svc_trace_count_mut(&mut self, k: Vec<u8>) -> StoreResult<&mut u32> {
        if !self.svc_traces.contains_key(&k) {
            let cur = match self.store.svc_traces().get(&k)? {
                Some(v) => u32::from_le_bytes(
                    v[..]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("svc_traces".into()))?,
                ),
                None => 0,
            };
            self.svc_traces.insert(k.clone(), cur);
        }
        Ok(self.svc_traces.get_mut(&k).unwrap())
    }

    fn index(&mut self, key: &[u8; 24], s: &SpanRecord) -> StoreResult<()> {
        let st = self.store;
        let service_key = service_key(&s.service, s.start_unix_nanos, key);
        self.batch.insert(
            st.by_time(),
            time_key(s.start_unix_nanos, key).to_vec(),
            b"".to_vec(),
        );
        self.batch
            .insert(st.by_service(), service_key, b"".to_vec());
        if s.status == SpanStatus::Error {
            self.batch.insert(
                st.by_error(),
                time_key(s.start_unix_nanos, key).to_vec(),
                b"".to_vec(),
            );
        }
        let n = self.svc_trace_count_mut(svc_trace_key(&s.service, &s.trace_id))?;
        *n += 1;
        let new_trace = *n == 1;
        let stats = self.stats_mut(&s.service)?;
        stats.span_count += 1;
        stats.error_count += (s.status == SpanStatus::Error) as u64;
        stats.duration_sum_nanos = stats.duration_sum_nanos.saturating_add(s.duration_nanos());
        stats.trace_count += new_trace as u64;
        Ok(())
    }

    fn unindex(&mut self, key: &[u8; 24], s: &SpanRecord) -> StoreResult<()> {
        let st = self.store;
        self.batch
            .remove(st.by_time(), time_key(s.start_unix_nanos, key).to_vec());
        self.batch.remove(
            st.by_service(),
            service_key(&s.service, s.start_unix_nanos, key),
        );
        self.batch
            .remove(st.by_error(), time_key(s.start_unix_nanos, key).to_vec());
        let n = self.svc_trace_count_mut(svc_trace_key(&s.service, &s.trace_id))?;
        debug_assert!(*n > 0, "a stored span is counted in its service's trace");
        *n = n.saturating_sub(1);
        let trace_gone = *n == 0;
        let stats = self.stats_mut(&s.service)?;
        stats.span_count = stats.span_count.saturating_sub(1);
        stats.error_count = stats
            .error_count
            .saturating_sub((s.status == SpanStatus::Error) as u64);
        stats.duration_sum_nanos = stats.duration_sum_nanos.saturating_sub(s.duration_nanos());
        stats.trace_count = stats.trace_count.saturating_sub(trace_gone as u64);
        Ok(())
    }

    /// Writes everything staged, with the new applied position, atomically.
    pub fn commit(
        mut self,
        last_applied: Option<LogId>,
        membership: Option<&StoredMembership>,
    ) -> StoreResult<()> {
        let st = self.store;
        for (svc, stats) in self.stats.drain() {
            if stats.span_count == 0 {
                self.batch.remove(st.svc_stats(), svc.into_bytes());
            } else {
                self.batch
                    .insert(st.svc_stats(), svc.into_bytes(), encode(&stats));
            }
        }
        for (k, n) in self.svc_traces.drain() {
            if n == 0 {
                self.batch.remove(st.svc_traces(), k);
            } else {
                self.batch
                    .insert(st.svc_traces(), k, n.to_le_bytes().to_vec());
            }
        }
        let json = serde_json::to_vec(&last_applied).expect("log id serializes");
        self.batch
            .insert(st.meta(), META_LAST_APPLIED.to_vec(), json);
        if let Some(m) = membership {
            self.batch.insert(
                st.meta(),
                META_MEMBERSHIP.to_vec(),
                serde_json::to_vec(m).expect("membership serializes"),
            );
        }
        self.batch.commit()?;
        Ok(())
    }
}
