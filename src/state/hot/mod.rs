//! The hot tier: spans, logs, metric points and their indexes in fjall.
//!
//! One fjall database per store, one keyspace per kind of key; every apply
//! writes all of them through one atomic batch ([`ApplyBatch`]), together
//! with the applied position, so the keyspaces never disagree.
//!
//! | keyspace          | key                                            | value                 |
//! |-------------------|------------------------------------------------|-----------------------|
//! | `spans`           | trace id ++ span id                            | span                  |
//! | `by_time`         | start ++ trace id ++ span id                   | span digest           |
//! | `by_service`      | hour ++ len16 ++ service ++ start ++ ids       | empty                 |
//! | `by_error`        | start ++ trace id ++ span id (errors only)     | empty                 |
//! | `svc_stats`       | service                                        | [`ServiceStats`]      |
//! | `svc_traces`      | len16 ++ service ++ trace id                   | u32 LE spans of it    |
//! | `meta`            | `last_applied`, `membership`, `rejected_entries`, ... | JSON           |
//! | `logs`            | time ++ content key                            | log record            |
//! | `log_by_service`  | day ++ len16 ++ service ++ time ++ content key | empty                 |
//! | `log_by_severity` | day ++ severity code ++ time ++ content key    | empty                 |
//! | `log_by_trace`    | trace id ++ time ++ content key                | empty                 |
//! | `metrics`         | time ++ content key                            | metric point          |
//! | `metric_by_name`  | day ++ len16 ++ name ++ time ++ content key    | empty                 |
//! | `comments`        | trace id ++ log index                          | comment               |
//! | `blobs`           | sha256 of the content                          | the content           |
//! | `ft_pending`      | log index ++ doc number                        | [`PendingDoc`]        |
//! | `spool_applied`   | origin ++ kind (++ generation)                 | [`SpoolFloor`] or seq |
//! | `trace_marks`     | trace id                                       | empty                 |
//! | `batch_keys`      | batch key (comments only)                      | log index (u64 BE)    |
//! | `tags`            | tag name, tag value or operation (`tags.rs`)   | empty                 |
//! | `blob_refs`       | sha256 ++ kind ++ referencing record's key     | empty                 |
//! | `rollups`         | minute ++ len16 ++ service ++ operation        | [`crate::rollup::Rollup`] |
//! | `metric_rollups`  | resolution ++ day ++ len16 ++ name ++ series id ++ bucket | [`crate::metric_rollup::MetricRollup`] |
//!
//! Integers in keys are big-endian; values are bincode ([`crate::codec`])
//! unless said otherwise. `keys.rs` builds every key and says why it is
//! shaped so; `keyspaces.rs` names the keyspaces ([`Keyspaces`]) and fixes
//! their order in snapshots ([`KEYSPACES`]).
//!
//! Re-ingesting a span replaces it: its old index entries and counters are
//! removed in the same batch, so a span never appears twice. Logs and metric
//! points have no id of their own; they are keyed by a hash of their whole
//! content, so a re-sent record lands on the same keys and replaces itself.
//!
//! The code, by job: `batch.rs` stages an apply (`spans.rs` the spans and
//! their indexes, `spool_marks.rs` the at-most-once check of spooled
//! records, `tags.rs` the tag index); `reads.rs` and `search.rs` answer queries described in
//! `query.rs`; `text_queue.rs` hands text to the full-text indexer;
//! `retention.rs` applies retention cuts; `cold.rs` moves records to the
//! cold tier; `rollups.rs` keeps the per-minute span rollups window
//! analytics read; `metric_rollups.rs` the per-minute and per-hour metric
//! rollups long-range metric queries read; `stats.rs` tells what the tier
//! holds; `maintenance.rs` keeps the engine's journals short and backfills data
//! that older versions did not write.

mod batch;
mod cold;
mod error;
mod keys;
mod keyspaces;
mod maintenance;
mod metric_names;
mod metric_rollups;
mod query;
mod reads;
mod retention;
mod rollups;
mod search;
mod spans;
mod spool_marks;
mod stats;
mod tags;
#[cfg(test)]
pub(crate) mod test_support;
mod text_queue;

use std::path::{Path, PathBuf};

use fjall::{Database, PersistMode};

pub use self::batch::{ApplyBatch, RejectedEntries, RejectedEntry, LARGE_LOG_BODY_BYTES};
pub use self::cold::{moved_key_len, MoveOutcome, PreparedUpload, UploadOutcome};
pub use self::error::{StoreError, StoreResult};
pub use self::keyspaces::{Keyspaces, KEYSPACES};
pub use self::metric_rollups::NameRollups;
pub use self::query::{
    AttributeFilter, Found, LogQuery, MetricQuery, SearchResult, ServiceStats, SpanQuery,
};
pub use self::retention::MAX_RECORDS_PER_CUT;
pub use self::search::{LogWalk, Order, SpanScan, SpanWalk};
pub use self::spool_marks::SpoolFloor;
pub use self::stats::{HotStats, SignalStats};
pub use self::tags::{
    intrinsic, kind_keyword, TagScope, TagType, MAX_INDEXED_NAME_BYTES, MAX_INDEXED_VALUE_BYTES,
};
pub use self::text_queue::{DocKind, PendingDoc};
// Re-exported for code written before the codec had a module of its own.

pub struct HotStore {
    pub db: Database,
    /// The database directory (its journal files live here).
    dir: PathBuf,
    pub keyspaces: Keyspaces,
    /// The `double-apply-retries` mutation (fault-injection builds only):
    /// a re-ingested span is stored again instead of replacing itself.
    pub duplicate_retries: bool,
    /// Tag index keys known to be committed here (see `tags`).
    stored_tag_keys: tags::StoredTagKeys,
    /// Where the cold tier's files live (`crate::state::cold`); the state
    /// machine sets `<data-dir>/cold`.
    pub cold_dir: PathBuf,
    /// The shared cold store (`--cold-store s3://...`), where files the
    /// manifest names as objects are read; `None` with the local store.
    pub cold_objects: Option<std::sync::Arc<crate::state::cold::objects::ColdObjects>>,
}

impl HotStore {
    pub fn open(dir: &Path, worker_threads: usize, cache_bytes: u64) -> StoreResult<HotStore> {
        let db = Database::builder(dir)
            .worker_threads(worker_threads.max(1))
            .cache_size(cache_bytes)
            .open()?;
        let keyspaces = Keyspaces::open(&db)?;
        let store = HotStore {
            db,
            dir: dir.to_path_buf(),
            keyspaces,
            duplicate_retries: false,
            stored_tag_keys: Default::default(),
            cold_dir: dir.join("cold"),
            cold_objects: None,
        };
        store.backfill_trace_marks()?;
        store.backfill_blob_refs()?;
        store.backfill_rollups()?;
        store.backfill_metric_rollups()?;
        Ok(store)
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts an apply: nothing staged in it is visible until its commit.
    pub fn begin(&self) -> ApplyBatch<'_> {
        ApplyBatch::new(self)
    }

    /// A consistent read view across all keyspaces, unaffected by later applies.
    pub fn read_view(&self) -> fjall::Snapshot {
        self.db.snapshot()
    }

    /// Fsyncs everything applied so far.
    pub fn persist(&self) -> StoreResult<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}
