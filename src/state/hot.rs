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
//! - `logs`            time BE ++ content key                 → log record (bincode)
//! - `log_by_service`  day ++ len16 ++ service ++ time ++ content key → ()
//! - `log_by_severity` day ++ severity code ++ time ++ content key   → ()
//! - `log_by_trace`    trace id ++ time ++ content key               → ()
//! - `metrics`         time BE ++ content key                 → metric point (bincode)
//! - `metric_by_name`  day ++ len16 ++ name ++ time ++ content key   → ()
//!
//! Re-ingesting a span replaces it: its old index entries and counters are
//! removed in the same batch, so a span never appears twice. Logs and metric
//! points have no id of their own; they are keyed by a hash of their whole
//! content, so a re-sent record lands on the same keys and replaces itself.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, OwnedWriteBatch, PersistMode,
    Readable,
};
use serde::{Deserialize, Serialize};
use tael_consensus::{LogId, StoredMembership};

use sha2::{Digest, Sha256};

use crate::analytics::SpanDigest;
use crate::model::{LogRecord, MetricPoint, MetricType, Severity, SpanRecord, SpanStatus, TraceId};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("full-text index: {0}")]
    Index(String),
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
/// New keyspaces are appended, so older snapshot files keep their meaning.
pub const KEYSPACES: [&str; 18] = [
    "spans",
    "by_time",
    "by_service",
    "by_error",
    "svc_stats",
    "svc_traces",
    "meta",
    "logs",
    "log_by_service",
    "log_by_severity",
    "log_by_trace",
    "metrics",
    "metric_by_name",
    // trace id ++ log index (big-endian) → Comment: a trace's comments in
    // commit order.
    "comments",
    // sha256 → bytes: LLM prompts and completions, content-addressed.
    "blobs",
    // log index ++ seq → PendingDoc: text waiting for the full-text indexer
    // (see crate::fulltext).
    "ft_pending",
    // Spooled-ingest marks (see `ApplyBatch::claim_spooled`):
    // origin ++ 0 → SpoolFloor; origin ++ 1 ++ generation → highest seq applied.
    "spool_applied",
    // trace id → empty: the trace may have stored spans. A span of a trace
    // without a mark is new, so applying it needs no read of the old version
    // (see `ApplyBatch::put_span`).
    "trace_marks",
];
const LOGS: usize = 7;
const LOG_BY_SERVICE: usize = 8;
const LOG_BY_SEVERITY: usize = 9;
const LOG_BY_TRACE: usize = 10;
const METRICS: usize = 11;
const METRIC_BY_NAME: usize = 12;
const COMMENTS: usize = 13;
/// Log bodies beyond this go to the blob store; the record keeps a preview.
pub const LARGE_LOG_BODY_BYTES: usize = 16 * 1024;
const LOG_BODY_PREVIEW_BYTES: usize = 1024;
const BLOBS: usize = 14;
const FT_PENDING: usize = 15;
const SPOOL_APPLIED: usize = 16;
const TRACE_MARKS: usize = 17;
/// Set once every stored span's trace has its mark in `trace_marks`.
const META_TRACE_MARKS_COMPLETE: &[u8] = b"trace_marks_complete";
/// Marks written per batch while backfilling them on open.
const TRACE_MARK_BACKFILL_BATCH: usize = 10_000;
const SPOOL_KIND_FLOOR: u8 = 0;
const SPOOL_KIND_GENERATION: u8 = 1;
/// Length of the content key that identifies a log record or metric point.
const CONTENT_KEY_LEN: usize = 16;
/// Time ++ content key: the tail of every log and metric key.
const RECORD_KEY_LEN: usize = 8 + CONTENT_KEY_LEN;
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

/// The first `max_bytes` of `s`, cut at a character boundary.
fn preview(s: &str, max_bytes: usize) -> String {
    let mut end = max_bytes.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Per origin node: generations below `floor_generation` are gone from its
/// spool, and how many of its spooled records were ever applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolFloor {
    pub floor_generation: u64,
    pub applied_total: u64,
}

fn spool_floor_key(origin: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.extend_from_slice(&origin.to_be_bytes());
    k.push(SPOOL_KIND_FLOOR);
    k
}

fn spool_generation_key(origin: u64, generation: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.extend_from_slice(&origin.to_be_bytes());
    k.push(SPOOL_KIND_GENERATION);
    k.extend_from_slice(&generation.to_be_bytes());
    k
}

/// Text queued for the full-text index by an apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDoc {
    pub kind: crate::fulltext::DocKind,
    pub key: Vec<u8>,
    pub time_unix_nanos: u64,
    pub text: String,
}

pub struct HotStore {
    pub db: Database,
    /// The database directory (its journal files live here).
    dir: std::path::PathBuf,
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
    if name == "spans" || name == "blobs" {
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

/// Time ++ a hash of the record's encoding: the same record always gets the
/// same key, on every replica and on every retry.
fn record_key(time_unix_nanos: u64, encoded: &[u8]) -> [u8; RECORD_KEY_LEN] {
    let digest = Sha256::digest(encoded);
    let mut k = [0u8; RECORD_KEY_LEN];
    k[..8].copy_from_slice(&time_unix_nanos.to_be_bytes());
    k[8..].copy_from_slice(&digest[..CONTENT_KEY_LEN]);
    k
}

/// How a log or metric search reaches its candidates.
enum Walk {
    /// The time-ordered primary keyspace.
    Primary,
    /// An index keyed prefix ++ time ++ content key.
    Prefixed(usize, Vec<u8>),
    /// An index keyed day ++ prefix ++ time ++ content key.
    DayBucketed(usize, Vec<u8>),
}

/// Width of the time buckets that lead the service, severity and name
/// indexes of logs and metrics: as for spans' `by_service`, new keys then
/// only overlap the current bucket's tables, so compaction never re-merges
/// older history. A day keeps the buckets a long window visits few.
const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

fn day_prefix(day: u64, prefix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + prefix.len() + RECORD_KEY_LEN);
    k.extend_from_slice(&day.to_be_bytes());
    k.extend_from_slice(prefix);
    k
}

fn bucketed(prefix: &[u8], record_key: &[u8; RECORD_KEY_LEN]) -> Vec<u8> {
    let time = u64::from_be_bytes(record_key[..8].try_into().expect("8 bytes"));
    prefixed(&day_prefix(time / DAY_NANOS, prefix), record_key)
}

fn prefixed(prefix: &[u8], record_key: &[u8; RECORD_KEY_LEN]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + RECORD_KEY_LEN);
    k.extend_from_slice(prefix);
    k.extend_from_slice(record_key);
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
        let store = HotStore {
            db,
            dir: dir.to_path_buf(),
            keyspaces,
            duplicate_retries: false,
        };
        store.backfill_trace_marks()?;
        Ok(store)
    }

    /// Makes the next [`HotStore::backfill_trace_marks`] run in full (before
    /// a snapshot is imported into this store).
    pub(crate) fn forget_trace_marks_complete(&self) -> StoreResult<()> {
        self.meta().remove(META_TRACE_MARKS_COMPLETE)?;
        Ok(())
    }

    /// Gives every stored span's trace its mark, once, for a store written
    /// before marks existed (or restored from such a snapshot).
    pub(crate) fn backfill_trace_marks(&self) -> StoreResult<()> {
        if self.meta().get(META_TRACE_MARKS_COMPLETE)?.is_some() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        let mut staged = 0usize;
        let mut last: Option<[u8; 16]> = None;
        for key in self.spans().iter().map(|kv| kv.key()) {
            let key = key?;
            let trace: [u8; 16] = key[..16]
                .try_into()
                .map_err(|_| StoreError::Corrupt("span key".into()))?;
            if last == Some(trace) {
                continue; // keys are sorted: a trace's spans are adjacent
            }
            last = Some(trace);
            batch.insert(self.trace_marks(), trace.to_vec(), b"".to_vec());
            staged += 1;
            if staged == TRACE_MARK_BACKFILL_BATCH {
                batch.commit()?;
                batch = self.db.batch();
                staged = 0;
            }
        }
        // Only after every mark: an interrupted backfill starts over.
        batch.insert(
            self.meta(),
            META_TRACE_MARKS_COMPLETE.to_vec(),
            b"".to_vec(),
        );
        batch.commit()?;
        Ok(())
    }

    fn trace_marks(&self) -> &Keyspace {
        &self.keyspaces[TRACE_MARKS]
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
        &self.keyspaces[COMMENTS]
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

    fn blobs(&self) -> &Keyspace {
        &self.keyspaces[BLOBS]
    }

    fn ft_pending(&self) -> &Keyspace {
        &self.keyspaces[FT_PENDING]
    }

    fn spool_applied(&self) -> &Keyspace {
        &self.keyspaces[SPOOL_APPLIED]
    }

    /// Spooled records applied per origin node (replicated state: the same on
    /// every replica at the same applied index).
    pub fn spooled_applied_by_origin(&self) -> StoreResult<Vec<(u64, SpoolFloor)>> {
        let mut out = Vec::new();
        for kv in self.spool_applied().iter() {
            let (k, v) = kv.into_inner()?;
            if k.len() == 9 && k[8] == SPOOL_KIND_FLOOR {
                let origin = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
                out.push((origin, decode(&v)?));
            }
        }
        Ok(out)
    }

    /// Generations of `origin` with a mark, and the highest seq applied in each.
    pub fn spool_generations(&self, origin: u64) -> StoreResult<Vec<(u64, u64)>> {
        let mut prefix = origin.to_be_bytes().to_vec();
        prefix.push(SPOOL_KIND_GENERATION);
        let mut out = Vec::new();
        for kv in self.spool_applied().prefix(&prefix) {
            let (k, v) = kv.into_inner()?;
            let generation = u64::from_be_bytes(
                k[9..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("spool_applied key".into()))?,
            );
            out.push((generation, decode(&v)?));
        }
        Ok(out)
    }

    /// Queued full-text documents of entries after `after_index`, in log
    /// order, at most `max`, with their entry's log index.
    pub fn pending_docs_in(
        &self,
        view: &fjall::Snapshot,
        after_index: u64,
        max: usize,
    ) -> StoreResult<Vec<(u64, PendingDoc)>> {
        let from = (after_index + 1).to_be_bytes().to_vec();
        let mut out = Vec::new();
        for kv in view.range(self.ft_pending(), from..).take(max) {
            let (k, v) = kv.into_inner()?;
            let index = u64::from_be_bytes(
                k[..8]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("ft_pending key".into()))?,
            );
            out.push((index, decode(&v)?));
        }
        Ok(out)
    }

    /// Drops queued documents of entries up to `upto_index` (indexed now).
    pub fn remove_pending_upto(&self, upto_index: u64) -> StoreResult<()> {
        let to = (upto_index + 1).to_be_bytes().to_vec();
        let mut batch = self.db.batch();
        let mut n = 0;
        for kv in self.ft_pending().range(..to) {
            batch.remove(self.ft_pending(), kv.key()?.to_vec());
            n += 1;
        }
        if n > 0 {
            batch.commit()?;
        }
        Ok(())
    }

    /// Every full-text document the stored data implies (for a rebuild).
    pub fn all_text_docs_in(
        &self,
        view: &fjall::Snapshot,
        f: &mut dyn FnMut(PendingDoc) -> Result<(), String>,
    ) -> StoreResult<u64> {
        let mut n = 0;
        for kv in view.iter(&self.keyspaces[LOGS]) {
            let (k, v) = kv.into_inner()?;
            let log: LogRecord = decode(&v)?;
            let text = match log.body_sha256 {
                Some(sha) => match view.get(self.blobs(), sha)? {
                    Some(b) => String::from_utf8_lossy(&b).into_owned(),
                    None => log.body_text().into_owned(),
                },
                None => log.body_text().into_owned(),
            };
            f(PendingDoc {
                kind: crate::fulltext::DocKind::Log,
                key: k.to_vec(),
                time_unix_nanos: log.timestamp_unix_nanos,
                text,
            })
            .map_err(StoreError::Index)?;
            n += 1;
        }
        for kv in view.iter(self.spans()) {
            let (k, v) = kv.into_inner()?;
            let span: SpanRecord = decode(&v)?;
            let Some(llm) = &span.llm else { continue };
            let mut texts = Vec::new();
            for sha in [llm.prompt_sha256, llm.completion_sha256]
                .into_iter()
                .flatten()
            {
                if let Some(b) = view.get(self.blobs(), sha)? {
                    texts.push(String::from_utf8_lossy(&b).into_owned());
                }
            }
            if texts.is_empty() {
                continue;
            }
            f(PendingDoc {
                kind: crate::fulltext::DocKind::Span,
                key: k.to_vec(),
                time_unix_nanos: span.start_unix_nanos,
                text: texts.join("\n\n"),
            })
            .map_err(StoreError::Index)?;
            n += 1;
        }
        Ok(n)
    }

    pub fn blob(&self, sha256: &crate::llm::Sha256Digest) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.blobs().get(sha256)?.map(|v| v.to_vec()))
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
    ///
    /// Log and metric keyspaces are small or large depending on the
    /// workload, so they are flushed only while their memtable is well
    /// below the size at which it would flush by itself.
    pub fn maintain(&self) -> StoreResult<()> {
        use fjall::AbstractTree;
        self.sync_active_journal()?;
        if self.db.journal_count() > MAX_PINNED_JOURNALS {
            for &i in &SMALL_KEYSPACES {
                self.keyspaces[i].rotate_memtable()?;
            }
            for i in LOGS..KEYSPACES.len() {
                let ks = &self.keyspaces[i];
                let active = ks.tree.active_memtable();
                if !active.is_empty() && active.size() < MEMTABLE_BYTES / 4 {
                    ks.rotate_memtable()?;
                }
            }
        }
        Ok(())
    }

    /// Fsyncs the newest journal file through a handle of our own.
    ///
    /// fjall's `persist` fsyncs while holding the journal lock, and every
    /// write batch (so every apply) waits for that lock; on a busy disk such
    /// an fsync can take hundreds of milliseconds. Syncing the same file
    /// from outside the lock writes its data back without blocking anyone,
    /// so the fsync fjall still does under the lock when it flushes a
    /// memtable finds little left to write. Durability does not depend on
    /// this: the Raft log is the durable copy of everything applied.
    fn sync_active_journal(&self) -> StoreResult<()> {
        let mut newest: Option<(u64, std::path::PathBuf)> = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jnl"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                if newest.as_ref().is_none_or(|(best, _)| id > *best) {
                    newest = Some((id, path));
                }
            }
        }
        if let Some((_, path)) = newest {
            match std::fs::File::open(&path) {
                Ok(f) => f.sync_data()?,
                // Rotated and removed since the listing: nothing to sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
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
            trace_stored: HashMap::new(),
            log_index: 0,
            text_docs_in_entry: 0,
            spool_marks: HashMap::new(),
        }
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
        let mut lo = [0u8; 32];
        lo[..8].copy_from_slice(&since_unix_nanos.to_be_bytes());
        let mut hi = [0xffu8; 32];
        hi[..8].copy_from_slice(&until_unix_nanos.to_be_bytes());
        let mut out = Vec::new();
        for kv in self.by_time().range(lo..=hi) {
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
        for kv in self.keyspaces[LOGS].range(lo..hi) {
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
        let mut points = 0;
        let mut names = std::collections::HashSet::new();
        let (lo, hi) = (
            since_unix_nanos.to_be_bytes(),
            (until_unix_nanos.saturating_add(1)).to_be_bytes(),
        );
        for kv in self.keyspaces[METRICS].range(lo..hi) {
            let (_, v) = kv.into_inner()?;
            let m: MetricPoint = decode(&v)?;
            if service.is_some_and(|s| s != m.service) {
                continue;
            }
            points += 1;
            names.insert(m.name);
        }
        Ok((points, names.len() as u64))
    }

    /// The log record stored under `key`.
    pub fn get_log_by_key(&self, key: &[u8]) -> StoreResult<Option<LogRecord>> {
        self.keyspaces[LOGS]
            .get(key)?
            .map(|v| decode::<LogRecord>(&v))
            .transpose()
    }

    /// The span stored under `key` (trace id ++ span id).
    pub fn get_span_by_key(&self, key: &[u8]) -> StoreResult<Option<SpanRecord>> {
        self.spans()
            .get(key)?
            .map(|v| decode::<SpanRecord>(&v))
            .transpose()
    }

    pub fn get_span(&self, trace: &TraceId, span: &[u8; 8]) -> StoreResult<Option<SpanRecord>> {
        self.get_span_by_key(&span_key(trace, span))
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

    /// Log records matching `q`, newest first, walking the most selective
    /// index (trace, service, severity, else time) over the time window.
    pub fn search_logs(&self, q: &LogQuery) -> StoreResult<Found<LogRecord>> {
        let walk = if let Some(t) = &q.trace_id {
            Walk::Prefixed(LOG_BY_TRACE, t.to_vec())
        } else if let Some(svc) = &q.service {
            Walk::DayBucketed(LOG_BY_SERVICE, service_prefix(svc))
        } else if let Some(sev) = q.severity {
            Walk::DayBucketed(LOG_BY_SEVERITY, vec![sev.code()])
        } else {
            Walk::Primary
        };
        let window = (q.since_unix_nanos, q.until_unix_nanos);
        self.scan_records(LOGS, walk, window, (q.limit, q.max_scanned), |l| {
            q.matches(l)
        })
    }

    /// Metric points matching `q`, newest first.
    pub fn search_metrics(&self, q: &MetricQuery) -> StoreResult<Found<MetricPoint>> {
        let walk = match &q.name {
            Some(n) => Walk::DayBucketed(METRIC_BY_NAME, service_prefix(n)),
            None => Walk::Primary,
        };
        let window = (q.since_unix_nanos, q.until_unix_nanos);
        self.scan_records(METRICS, walk, window, (q.limit, q.max_scanned), |m| {
            q.matches(m)
        })
    }

    /// Walks `primary` (keys: time ++ content key) or an index over it (keys
    /// end with time ++ content key) newest first within the time window,
    /// until `limit` records are kept or `max_scanned` candidates examined.
    fn scan_records<T: serde::de::DeserializeOwned>(
        &self,
        primary: usize,
        walk: Walk,
        (since, until): (Option<u64>, Option<u64>),
        (limit, max_scanned): (usize, usize),
        keep: impl Fn(&T) -> bool,
    ) -> StoreResult<Found<T>> {
        let mut found = Found {
            records: Vec::new(),
            scanned: 0,
            truncated: false,
        };
        let primary_ks = &self.keyspaces[primary];
        // Clamp the window to the data that exists: bucketed walks visit
        // every day in it.
        let time_of = |g: Option<fjall::Guard>| -> StoreResult<Option<u64>> {
            g.map(|g| {
                let k = g.key()?;
                Ok(u64::from_be_bytes(
                    k[..8].try_into().expect("record keys lead with time"),
                ))
            })
            .transpose()
        };
        let (Some(oldest), Some(newest)) = (
            time_of(primary_ks.first_key_value())?,
            time_of(primary_ks.last_key_value())?,
        ) else {
            return Ok(found);
        };
        let from = since.unwrap_or(0).max(oldest);
        let to = until.unwrap_or(u64::MAX).min(newest);
        if from > to {
            return Ok(found);
        }
        let mut lo = [0u8; RECORD_KEY_LEN];
        lo[..8].copy_from_slice(&from.to_be_bytes());
        let mut hi = [0xffu8; RECORD_KEY_LEN];
        hi[..8].copy_from_slice(&to.to_be_bytes());
        let is_index = !matches!(walk, Walk::Primary);
        let entries: Box<dyn Iterator<Item = fjall::Guard>> = match walk {
            Walk::Primary => Box::new(primary_ks.range(lo.to_vec()..=hi.to_vec()).rev()),
            Walk::Prefixed(i, prefix) => Box::new(
                self.keyspaces[i]
                    .range(prefixed(&prefix, &lo)..=prefixed(&prefix, &hi))
                    .rev(),
            ),
            Walk::DayBucketed(i, prefix) => {
                let ks = self.keyspaces[i].clone();
                Box::new(
                    (from / DAY_NANOS..=to / DAY_NANOS)
                        .rev()
                        .flat_map(move |day| {
                            let p = day_prefix(day, &prefix);
                            ks.range(prefixed(&p, &lo)..=prefixed(&p, &hi)).rev()
                        }),
                )
            }
        };
        for g in entries {
            if found.records.len() >= limit {
                break;
            }
            if found.scanned >= max_scanned {
                found.truncated = true;
                break;
            }
            found.scanned += 1;
            let record: T = if is_index {
                let k = g.key()?;
                let Some(v) = primary_ks.get(&k[k.len() - RECORD_KEY_LEN..])? else {
                    return Err(StoreError::Corrupt("index entry without its record".into()));
                };
                decode(&v)?
            } else {
                let (_, v) = g.into_inner()?;
                decode(&v)?
            };
            if keep(&record) {
                found.records.push(record);
            }
        }
        Ok(found)
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
    fn matches<'a>(&self, lookup: impl Fn(&str) -> Option<std::borrow::Cow<'a, str>>) -> bool {
        match self {
            AttributeFilter::Exact(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            AttributeFilter::Contains(k, v) => lookup(k).is_some_and(|a| a.contains(v.as_str())),
            AttributeFilter::Regex(k, re) => lookup(k).is_some_and(|a| re.is_match(&a)),
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
    pub fn matches(&self, s: &SpanRecord) -> bool {
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
            && self
                .attributes
                .iter()
                .all(|f| f.matches(|k| s.attribute(k)))
    }
}

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub service: Option<String>,
    pub severity: Option<Severity>,
    pub body_contains: Option<String>,
    pub trace_id: Option<TraceId>,
    pub since_unix_nanos: Option<u64>,
    pub until_unix_nanos: Option<u64>,
    pub attributes: Vec<AttributeFilter>,
    pub limit: usize,
    pub max_scanned: usize,
}

impl LogQuery {
    pub fn matches(&self, l: &LogRecord) -> bool {
        self.service.as_ref().is_none_or(|svc| &l.service == svc)
            && self.severity.is_none_or(|s| l.severity == s)
            && self
                .body_contains
                .as_ref()
                .is_none_or(|b| l.body_text().contains(b.as_str()))
            && self.trace_id.is_none_or(|t| l.trace_id == Some(t))
            && self
                .attributes
                .iter()
                .all(|f| f.matches(|k| l.attribute(k)))
    }
}

#[derive(Debug, Clone, Default)]
pub struct MetricQuery {
    pub service: Option<String>,
    pub name: Option<String>,
    pub metric_type: Option<MetricType>,
    pub since_unix_nanos: Option<u64>,
    pub until_unix_nanos: Option<u64>,
    pub limit: usize,
    pub max_scanned: usize,
}

impl MetricQuery {
    fn matches(&self, m: &MetricPoint) -> bool {
        self.service.as_ref().is_none_or(|svc| &m.service == svc)
            && self.name.as_ref().is_none_or(|n| &m.name == n)
            && self.metric_type.is_none_or(|t| m.metric_type == t)
    }
}

/// Records found by a log or metric search, newest first.
#[derive(Debug)]
pub struct Found<T> {
    pub records: Vec<T>,
    pub scanned: usize,
    /// The scan budget ran out before the window was exhausted.
    pub truncated: bool,
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
    /// Traces looked up in `trace_marks` in this batch: true when the trace
    /// may have spans stored before this batch.
    trace_stored: HashMap<TraceId, bool>,
    /// The entry being applied, and how many full-text documents it queued.
    log_index: u64,
    text_docs_in_entry: u32,
    /// `spool_applied` values staged in this batch (None: removed).
    spool_marks: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl ApplyBatch<'_> {
    /// Marks the start of the entry at `log_index`; what follows belongs to it.
    pub fn begin_entry(&mut self, log_index: u64) {
        debug_assert!(log_index > self.log_index || self.log_index == 0);
        self.log_index = log_index;
        self.text_docs_in_entry = 0;
    }

    fn spool_get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        if let Some(staged) = self.spool_marks.get(key) {
            return Ok(staged.clone());
        }
        Ok(self.store.spool_applied().get(key)?.map(|v| v.to_vec()))
    }

    fn spool_put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch
            .insert(self.store.spool_applied(), key.clone(), value.clone());
        self.spool_marks.insert(key, Some(value));
    }

    fn spool_remove(&mut self, key: Vec<u8>) {
        self.batch.remove(self.store.spool_applied(), key.clone());
        self.spool_marks.insert(key, None);
    }

    /// Decides whether the spooled export `(origin, generation, seq)` is
    /// applied now (true) or was applied before (false), and records it.
    ///
    /// Sound because an origin forwards a generation's exports in `seq`
    /// order, each only after the previous one committed: nothing above a
    /// generation's highest applied seq has been applied yet, and anything at
    /// or below it has. Generations below the origin's `min_live_generation`
    /// have left its spool (fully forwarded), so their marks are dropped and
    /// a late copy of one of their records (a forward that outlived a
    /// restart) is a duplicate too. State per origin: one floor plus one mark
    /// per generation still in its spool.
    pub fn claim_spooled(
        &mut self,
        origin: u64,
        generation: u64,
        seq: u64,
        min_live_generation: u64,
    ) -> StoreResult<bool> {
        let floor_key = spool_floor_key(origin);
        let mut floor: SpoolFloor = match self.spool_get(&floor_key)? {
            Some(v) => decode(&v)?,
            None => SpoolFloor::default(),
        };
        let floor_raised = min_live_generation > floor.floor_generation;
        if floor_raised {
            floor.floor_generation = min_live_generation;
            let mut prefix = origin.to_be_bytes().to_vec();
            prefix.push(SPOOL_KIND_GENERATION);
            let mut stale: Vec<Vec<u8>> = Vec::new();
            for kv in self.store.spool_applied().prefix(&prefix) {
                stale.push(kv.key()?.to_vec());
            }
            stale.extend(
                self.spool_marks
                    .iter()
                    .filter(|(k, v)| v.is_some() && k.starts_with(&prefix))
                    .map(|(k, _)| k.clone()),
            );
            for k in stale {
                let g = u64::from_be_bytes(
                    k[9..]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("spool_applied key".into()))?,
                );
                if g < floor.floor_generation {
                    self.spool_remove(k);
                }
            }
        }
        if generation < floor.floor_generation {
            if floor_raised {
                self.spool_put(floor_key, encode(&floor));
            }
            return Ok(false);
        }
        let gen_key = spool_generation_key(origin, generation);
        let applied_seq: u64 = match self.spool_get(&gen_key)? {
            Some(v) => decode(&v)?,
            None => 0,
        };
        if seq <= applied_seq {
            if floor_raised {
                self.spool_put(floor_key, encode(&floor));
            }
            return Ok(false);
        }
        floor.applied_total += 1;
        self.spool_put(gen_key, encode(&seq));
        self.spool_put(floor_key, encode(&floor));
        Ok(true)
    }

    /// Queues `text` for the full-text index, pointing at `key`.
    pub fn queue_text(
        &mut self,
        kind: crate::fulltext::DocKind,
        key: Vec<u8>,
        time_unix_nanos: u64,
        text: String,
    ) {
        debug_assert!(self.log_index > 0, "begin_entry comes first");
        let mut k = Vec::with_capacity(12);
        k.extend_from_slice(&self.log_index.to_be_bytes());
        k.extend_from_slice(&self.text_docs_in_entry.to_be_bytes());
        self.text_docs_in_entry += 1;
        let doc = PendingDoc {
            kind,
            key,
            time_unix_nanos,
            text,
        };
        self.batch.insert(self.store.ft_pending(), k, encode(&doc));
    }

    pub fn put_span(&mut self, mut span: SpanRecord) -> StoreResult<()> {
        let key = span_key(&span.trace_id, &span.span_id);
        if let Some(llm) = span.llm.as_mut() {
            let texts = llm.take_texts();
            if !texts.is_empty() {
                let joined: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
                let doc = joined.join("\n\n");
                let start = span.start_unix_nanos;
                self.queue_text(crate::fulltext::DocKind::Span, key.to_vec(), start, doc);
            }
            for (sha, text) in texts {
                // Content-addressed: writing the same text again is a no-op.
                self.batch
                    .insert(self.store.blobs(), sha.to_vec(), text.into_bytes());
            }
        }
        let old = match self.spans.get(&key).cloned() {
            Some(s) => Some(s),
            None if !self.trace_may_be_stored(&span.trace_id)? => None,
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

    /// Whether `trace` may have spans stored before this batch. One lookup
    /// per trace and batch instead of one per span: a trace's spans mostly
    /// arrive together, and a new trace (the common case) has no old spans
    /// to replace. Marks a trace seen for the first time.
    fn trace_may_be_stored(&mut self, trace: &TraceId) -> StoreResult<bool> {
        if let Some(&stored) = self.trace_stored.get(trace) {
            return Ok(stored);
        }
        let stored = self.store.trace_marks().get(trace)?.is_some();
        if !stored {
            self.batch
                .insert(self.store.trace_marks(), trace.to_vec(), b"".to_vec());
        }
        self.trace_stored.insert(*trace, stored);
        Ok(stored)
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
        // The time index carries a digest, so window analytics never read
        // span bodies.
        self.batch.insert(
            st.by_time(),
            time_key(s.start_unix_nanos, key).to_vec(),
            encode(&SpanDigest::of(s)),
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

    /// Stages a log record and its index entries. A record already stored
    /// has the same keys, so storing it again changes nothing.
    pub fn put_log(&mut self, log: &LogRecord) {
        let st = self.store;
        let value = encode(log);
        // The key comes from the record as sent, so a retry lands on it again.
        let key = record_key(log.timestamp_unix_nanos, &value);
        let body = log.body_text();
        self.queue_text(
            crate::fulltext::DocKind::Log,
            key.to_vec(),
            log.timestamp_unix_nanos,
            body.to_string(),
        );
        let value = if body.len() > LARGE_LOG_BODY_BYTES {
            let sha = crate::llm::sha256(body.as_bytes());
            self.batch
                .insert(&st.keyspaces[BLOBS], sha.to_vec(), body.as_bytes().to_vec());
            encode(&log.with_body_in_blob(sha, preview(&body, LOG_BODY_PREVIEW_BYTES)))
        } else {
            value
        };
        self.batch.insert(
            &st.keyspaces[LOG_BY_SERVICE],
            bucketed(&service_prefix(&log.service), &key),
            b"".to_vec(),
        );
        self.batch.insert(
            &st.keyspaces[LOG_BY_SEVERITY],
            bucketed(&[log.severity.code()], &key),
            b"".to_vec(),
        );
        if let Some(t) = &log.trace_id {
            self.batch
                .insert(&st.keyspaces[LOG_BY_TRACE], prefixed(t, &key), b"".to_vec());
        }
        self.batch.insert(&st.keyspaces[LOGS], key.to_vec(), value);
    }

    /// Stages a metric point and its index entry (idempotent like [`Self::put_log`]).
    pub fn put_metric(&mut self, point: &MetricPoint) {
        let st = self.store;
        let value = encode(point);
        let key = record_key(point.timestamp_unix_nanos, &value);
        self.batch.insert(
            &st.keyspaces[METRIC_BY_NAME],
            bucketed(&service_prefix(&point.name), &key),
            b"".to_vec(),
        );
        self.batch
            .insert(&st.keyspaces[METRICS], key.to_vec(), value);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

    fn log(day: u64, n: u64, service: &str, severity: Severity) -> LogRecord {
        LogRecord {
            timestamp_unix_nanos: day * DAY_NANOS + n,
            severity,
            body: Some(crate::model::AnyValue::String(format!(
                "{service} day {day} #{n}"
            ))),
            service: service.into(),
            ..Default::default()
        }
    }

    fn bodies(f: Found<LogRecord>) -> Vec<String> {
        f.records
            .into_iter()
            .map(|l| l.body_text().into_owned())
            .collect()
    }

    #[test]
    fn day_bucketed_indexes_answer_newest_first_across_days() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
        let mut batch = store.begin();
        batch.begin_entry(1);
        for (day, n, svc, sev) in [
            (20_000, 1, "a", Severity::Info),
            (20_003, 5, "a", Severity::Error),
            (20_003, 2, "b", Severity::Error),
            (20_010, 0, "a", Severity::Info),
            (20_010, 9, "b", Severity::Warn),
        ] {
            batch.put_log(&log(day, n, svc, sev));
        }
        batch.commit(None, None).unwrap();
        let q = |f: &dyn Fn(&mut LogQuery)| {
            let mut q = LogQuery {
                limit: 100,
                max_scanned: 100,
                ..Default::default()
            };
            f(&mut q);
            store.search_logs(&q).unwrap()
        };
        assert_eq!(
            bodies(q(&|q| q.service = Some("a".into()))),
            vec!["a day 20010 #0", "a day 20003 #5", "a day 20000 #1"]
        );
        let errors = q(&|q| q.severity = Some(Severity::Error));
        assert_eq!(errors.scanned, 2);
        assert_eq!(bodies(errors), vec!["a day 20003 #5", "b day 20003 #2"]);
        assert_eq!(
            bodies(q(&|q| {
                q.service = Some("a".into());
                q.since_unix_nanos = Some(20_003 * DAY_NANOS + 3);
            })),
            vec!["a day 20010 #0", "a day 20003 #5"]
        );
        assert_eq!(
            bodies(q(&|q| {
                q.service = Some("b".into());
                q.limit = 1;
            })),
            vec!["b day 20010 #9"]
        );
        assert!(bodies(q(&|q| q.service = Some("c".into()))).is_empty());
        assert!(bodies(q(&|q| q.since_unix_nanos = Some(u64::MAX - 1))).is_empty());
        assert_eq!(q(&|q| q.limit = 100).records.len(), 5);
    }

    fn test_span(trace: u8, span: u8, start: u64) -> SpanRecord {
        SpanRecord {
            trace_id: [trace; 16],
            span_id: [span; 8],
            parent_span_id: None,
            service: "checkout".into(),
            operation: "pay".into(),
            start_unix_nanos: start,
            end_unix_nanos: start + 10,
            status: SpanStatus::Ok,
            kind: crate::model::SpanKind::Server,
            ..Default::default()
        }
    }

    fn apply(store: &HotStore, index: u64, spans: Vec<SpanRecord>) {
        let mut b = store.begin();
        b.begin_entry(index);
        for s in spans {
            b.put_span(s).unwrap();
        }
        b.commit(None, None).unwrap();
    }

    /// Removes `trace`'s mark and the backfill flag, as a store written
    /// before marks existed would have them.
    fn as_before_trace_marks(store: &HotStore, trace: TraceId) {
        let mut b = store.db.batch();
        b.remove(store.trace_marks(), trace.to_vec());
        b.remove(store.meta(), META_TRACE_MARKS_COMPLETE.to_vec());
        b.commit().unwrap();
    }

    fn checkout_stats(store: &HotStore) -> ServiceStats {
        let all = store.services().unwrap();
        assert_eq!(all.len(), 1);
        all.into_iter().next().unwrap().1
    }

    #[test]
    fn a_span_ingested_again_in_a_later_batch_replaces_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
        apply(&store, 1, vec![test_span(1, 1, 100), test_span(1, 2, 100)]);
        // Same ids, new start time: the old time index entry must go.
        apply(&store, 2, vec![test_span(1, 1, 500), test_span(2, 1, 100)]);
        let stats = checkout_stats(&store);
        assert_eq!((stats.span_count, stats.trace_count), (3, 2));
        let (digests, _) = store.span_digests(0, u64::MAX, None, 100).unwrap();
        assert_eq!(digests.len(), 3, "one time index entry per span");
        assert_eq!(
            store
                .get_span(&[1; 16], &[1; 8])
                .unwrap()
                .unwrap()
                .start_unix_nanos,
            500
        );
    }

    #[test]
    fn a_snapshot_without_trace_marks_gets_them_on_import() {
        let dir = tempfile::tempdir().unwrap();
        let old = HotStore::open(&dir.path().join("old"), 1, 1 << 20).unwrap();
        apply(&old, 1, vec![test_span(9, 1, 100)]);
        as_before_trace_marks(&old, [9; 16]);
        let path = dir.path().join("old.snap");
        let meta = tael_consensus::SnapshotMeta::default();
        crate::state::snapshot::export(&old, &old.read_view(), &meta, &path).unwrap();

        let new = HotStore::open(&dir.path().join("new"), 1, 1 << 20).unwrap();
        crate::state::snapshot::import(&path, &new).unwrap();
        assert!(new.trace_marks().get([9u8; 16]).unwrap().is_some());
        apply(&new, 2, vec![test_span(9, 1, 900)]);
        assert_eq!(
            checkout_stats(&new).span_count,
            1,
            "replaced, not counted twice"
        );
    }

    #[test]
    fn a_store_without_trace_marks_gets_them_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
            apply(&store, 1, vec![test_span(7, 1, 100)]);
            as_before_trace_marks(&store, [7; 16]);
        }
        let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
        assert!(store.trace_marks().get([7u8; 16]).unwrap().is_some());
        apply(&store, 2, vec![test_span(7, 1, 900)]);
        let stats = checkout_stats(&store);
        assert_eq!(stats.span_count, 1, "replaced, not counted twice");
        assert_eq!(
            store.span_digests(0, u64::MAX, None, 100).unwrap().0.len(),
            1
        );
    }
}
