//! Full-text search (tantivy) over LLM prompts and completions and log
//! bodies.
//!
//! The index is derived, per node, from the state machine; it is not
//! replicated. Applying a record that carries text also queues a document in
//! the state machine's `ft_pending` keyspace, in the same atomic batch. One
//! indexer thread moves queued documents into tantivy and commits with a
//! payload naming the applied index it now covers (the watermark) and the
//! state machine generation it belongs to. Queued documents at or below the
//! watermark are skipped and then deleted, so a crash between the tantivy
//! commit and the deletion indexes nothing twice. A state machine replaced by
//! a snapshot install (new generation) gets a full rebuild.
//!
//! A `linearizable` query waits until the watermark reaches the applied index
//! its read barrier returned, so it never misses an acknowledged record.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, Value, FAST, INDEXED, STORED, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument};
use tokio::sync::watch;

use crate::state::hot::{HotStore, PendingDoc};
use crate::state::Shared as StateShared;

pub use crate::state::hot::DocKind;

pub const MAX_QUERY_BYTES: usize = 1024;
/// Most hits one query considers (the newest ones) before its other filters
/// apply.
pub const MAX_HITS: usize = 10_000;
const WRITER_MEMORY_BYTES: usize = 32 * 1024 * 1024;
/// Documents moved into tantivy per commit, at most.
const MAX_DOCS_PER_COMMIT: usize = 50_000;
const IDLE_POLL: Duration = Duration::from_millis(200);

#[derive(Serialize, Deserialize, Debug, Default, PartialEq)]
struct CommitPayload {
    generation: u64,
    watermark: u64,
}

struct Fields {
    kind: Field,
    key: Field,
    /// The record's time (span start, log timestamp): hits come newest first.
    time: Field,
    text: Field,
}

const TIME_FIELD: &str = "time";

pub struct FullText {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    watermark_tx: watch::Sender<u64>,
    /// Wakes the indexer early (a query is waiting).
    nudge: (Mutex<bool>, Condvar),
    stop: AtomicBool,
    pub docs_indexed: AtomicU64,
    pub rebuilds: AtomicU64,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        kind: b.add_u64_field("kind", INDEXED | STORED),
        key: b.add_bytes_field("key", STORED),
        time: b.add_u64_field(TIME_FIELD, FAST),
        text: b.add_text_field("text", TEXT),
    };
    (b.build(), fields)
}

fn open_index(dir: &Path) -> tantivy::Result<Index> {
    std::fs::create_dir_all(dir)?;
    let (schema, _) = schema();
    let mmap = MmapDirectory::open(dir)?;
    Index::open_or_create(mmap, schema)
}

fn read_payload(index: &Index) -> CommitPayload {
    index
        .load_metas()
        .ok()
        .and_then(|m| m.payload)
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or_default()
}

impl FullText {
    /// Opens (or creates) the index under `dir` and starts its indexer
    /// thread. A damaged index is deleted and rebuilt from the state machine.
    pub fn start(dir: &Path, sm: Arc<StateShared>) -> Result<Arc<FullText>, String> {
        let index = match open_index(dir) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "full-text index unreadable; rebuilding it");
                std::fs::remove_dir_all(dir)
                    .map_err(|e| format!("removing {}: {e}", dir.display()))?;
                open_index(dir).map_err(|e| format!("creating the full-text index: {e}"))?
            }
        };
        let (_, fields) = schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| format!("full-text reader: {e}"))?;
        let writer: IndexWriter = index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(|e| format!("full-text writer: {e}"))?;
        let payload = read_payload(&index);
        let (watermark_tx, _) = watch::channel(0);
        let ft = Arc::new(FullText {
            index,
            reader,
            fields,
            watermark_tx,
            nudge: (Mutex::new(false), Condvar::new()),
            stop: AtomicBool::new(false),
            docs_indexed: AtomicU64::new(0),
            rebuilds: AtomicU64::new(0),
        });
        let indexer = Indexer {
            ft: ft.clone(),
            sm,
            writer,
            state: payload,
            dir: dir.to_path_buf(),
            deleted_below: (0, 0),
        };
        std::thread::Builder::new()
            .name("fulltext-indexer".into())
            .spawn(move || indexer.run())
            .map_err(|e| format!("starting the full-text indexer: {e}"))?;
        Ok(ft)
    }

    pub fn watermark(&self) -> u64 {
        *self.watermark_tx.borrow()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        let (lock, cv) = &self.nudge;
        *lock.lock().unwrap() = true;
        cv.notify_one();
    }

    /// Waits until every record applied up to `applied_index` is searchable.
    pub async fn wait_indexed(&self, applied_index: u64, timeout: Duration) -> Result<(), String> {
        let mut rx = self.watermark_tx.subscribe();
        if *rx.borrow() >= applied_index {
            return Ok(());
        }
        self.wake();
        tokio::time::timeout(timeout, rx.wait_for(|w| *w >= applied_index))
            .await
            .map_err(|_| {
                format!(
                    "the full-text index has not caught up to applied index {applied_index} \
                     (it covers {}); retry",
                    self.watermark()
                )
            })?
            .map_err(|_| "the full-text indexer stopped".to_string())?;
        Ok(())
    }

    /// Keys of the newest documents matching `query` (tantivy query syntax,
    /// parsed leniently, so stray syntax never fails a search), newest
    /// first, at most `limit`.
    pub fn search(&self, query: &str, kind: DocKind, limit: usize) -> Result<Vec<Vec<u8>>, String> {
        debug_assert!(query.len() <= MAX_QUERY_BYTES);
        let parser = QueryParser::for_index(&self.index, vec![self.fields.text]);
        let (text_query, _ignored) = parser.parse_query_lenient(query);
        let kind_term = tantivy::Term::from_field_u64(self.fields.kind, kind as u64);
        let kind_query =
            tantivy::query::TermQuery::new(kind_term, tantivy::schema::IndexRecordOption::Basic);
        let query =
            tantivy::query::BooleanQuery::intersection(vec![text_query, Box::new(kind_query)]);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(
                &query,
                &TopDocs::with_limit(limit.min(MAX_HITS))
                    .order_by_u64_field(TIME_FIELD, tantivy::Order::Desc),
            )
            .map_err(|e| format!("full-text search: {e}"))?;
        let mut keys = Vec::with_capacity(top.len());
        // A retried export indexes the same record twice: report it once.
        let mut seen = std::collections::HashSet::new();
        for (_time, addr) in top {
            let d: TantivyDocument = searcher
                .doc(addr)
                .map_err(|e| format!("full-text document: {e}"))?;
            debug_assert_eq!(
                d.get_first(self.fields.kind)
                    .and_then(|v| v.as_u64())
                    .and_then(DocKind::from_u64),
                Some(kind)
            );
            if let Some(k) = d.get_first(self.fields.key).and_then(|v| v.as_bytes()) {
                if seen.insert(k.to_vec()) {
                    keys.push(k.to_vec());
                }
            }
        }
        Ok(keys)
    }
}

struct Indexer {
    ft: Arc<FullText>,
    sm: Arc<StateShared>,
    writer: IndexWriter,
    state: CommitPayload,
    dir: PathBuf,
    /// The retention floors (span texts, log bodies) documents were last
    /// deleted below; 0 after a start, so the first round deletes again
    /// (deleting is idempotent).
    deleted_below: (u64, u64),
}

impl Indexer {
    fn run(mut self) {
        tracing::info!(dir = %self.dir.display(), watermark = self.state.watermark, "full-text indexer started");
        while !self.ft.stop.load(Ordering::SeqCst) {
            match self.step() {
                Ok(true) => continue, // more may be queued
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "full-text indexing failed; retrying"),
            }
            let (lock, cv) = &self.ft.nudge;
            let woken = lock.lock().unwrap();
            let (mut woken, _) = cv.wait_timeout_while(woken, IDLE_POLL, |w| !*w).unwrap();
            *woken = false;
        }
        tracing::debug!("full-text indexer stopped");
    }

    /// One round; returns whether it hit its batch limit.
    fn step(&mut self) -> Result<bool, String> {
        // Together: a store read apart from its generation could be the
        // one a snapshot install just replaced.
        let (store, generation) = self.sm.store_with_generation();
        if generation != self.state.generation {
            self.rebuild(&store, generation)?;
            return Ok(true);
        }
        let view = store.read_view();
        let (applied, _) = store
            .applied_state_in(&view)
            .map_err(|e| format!("reading the applied index: {e}"))?;
        let applied = applied.map_or(0, |l| l.index);
        if applied <= self.state.watermark {
            self.publish();
            return Ok(false);
        }
        let mut pending = store
            .pending_docs_in(&view, self.state.watermark, MAX_DOCS_PER_COMMIT + 1)
            .map_err(|e| format!("reading queued documents: {e}"))?;
        let mut watermark = applied;
        let full = pending.len() > MAX_DOCS_PER_COMMIT;
        if full {
            // Stop at an entry boundary: an entry's documents go in together.
            let cut_index = pending[MAX_DOCS_PER_COMMIT].0;
            pending.retain(|(i, _)| *i < cut_index);
            watermark = cut_index - 1;
        }
        debug_assert!(pending
            .iter()
            .all(|(i, _)| *i > self.state.watermark && *i <= applied));
        for (_, d) in &pending {
            self.add(d)?;
        }
        self.delete_below_retention(&store, &view)?;
        self.commit(generation, watermark)?;
        self.ft
            .docs_indexed
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        store
            .remove_pending_upto(watermark)
            .map_err(|e| format!("dropping indexed documents from the queue: {e}"))?;
        Ok(full)
    }

    fn add(&mut self, d: &PendingDoc) -> Result<(), String> {
        let f = &self.ft.fields;
        self.writer
            .add_document(doc!(
                f.kind => d.kind as u64,
                f.key => d.key.clone(),
                f.time => d.time_unix_nanos,
                f.text => d.text.as_str(),
            ))
            .map(|_| ())
            .map_err(|e| format!("adding a document: {e}"))
    }

    /// Deletes the documents of records a retention cut removed: those
    /// older than its floors (`crate::retention`). After the adds of the
    /// same round, so documents queued before the cut go too.
    fn delete_below_retention(
        &mut self,
        store: &HotStore,
        view: &fjall::Snapshot,
    ) -> Result<(), String> {
        let floors = store
            .retention_state_in(view)
            .map_err(|e| format!("reading the retention state: {e}"))?
            .floors;
        let below = (floors.llm_texts(), floors.logs);
        for (kind, floor, done) in [
            (DocKind::Span, below.0, self.deleted_below.0),
            (DocKind::Log, below.1, self.deleted_below.1),
        ] {
            if floor > done {
                self.delete_older(kind, floor)?;
            }
        }
        self.deleted_below = below;
        Ok(())
    }

    /// Deletes the documents of `kind` timed before `floor_unix_nanos`.
    fn delete_older(&mut self, kind: DocKind, floor_unix_nanos: u64) -> Result<(), String> {
        use std::ops::Bound;
        use tantivy::query::{BooleanQuery, Occur, RangeQuery, TermQuery};
        use tantivy::Term;
        let f = &self.ft.fields;
        let of_kind = TermQuery::new(
            Term::from_field_u64(f.kind, kind as u64),
            tantivy::schema::IndexRecordOption::Basic,
        );
        let older = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_u64(f.time, floor_unix_nanos)),
        );
        let query = BooleanQuery::new(vec![
            (Occur::Must, Box::new(of_kind)),
            (Occur::Must, Box::new(older)),
        ]);
        self.writer
            .delete_query(Box::new(query))
            .map(|_| ())
            .map_err(|e| format!("deleting documents past the retention: {e}"))
    }

    fn commit(&mut self, generation: u64, watermark: u64) -> Result<(), String> {
        let payload = CommitPayload {
            generation,
            watermark,
        };
        let mut prepared = self
            .writer
            .prepare_commit()
            .map_err(|e| format!("preparing a full-text commit: {e}"))?;
        prepared.set_payload(&serde_json::to_string(&payload).expect("payload serializes"));
        prepared
            .commit()
            .map_err(|e| format!("committing the full-text index: {e}"))?;
        // tantivy fsyncs the directory before it renames the new
        // `meta.json` into place, not after: without this the commit's
        // rename could be lost in a power cut, after the queued documents
        // it covers were dropped from `ft_pending` (tael-lazyfs's tests
        // show the lost rename).
        tael_consensus::log_store::sync_dir(&self.dir)
            .map_err(|e| format!("syncing the full-text index directory: {e}"))?;
        self.ft
            .reader
            .reload()
            .map_err(|e| format!("reloading the full-text reader: {e}"))?;
        self.state = payload;
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.ft.watermark_tx.send_if_modified(|w| {
            let changed = *w != self.state.watermark;
            *w = self.state.watermark;
            changed
        });
    }

    /// Reindexes everything in `store` (after a snapshot install, or for an
    /// index that belongs to another state machine generation).
    fn rebuild(&mut self, store: &Arc<HotStore>, generation: u64) -> Result<(), String> {
        tracing::info!(
            generation,
            "rebuilding the full-text index from the state machine"
        );
        self.ft.rebuilds.fetch_add(1, Ordering::Relaxed);
        self.writer
            .delete_all_documents()
            .map_err(|e| format!("clearing the full-text index: {e}"))?;
        let view = store.read_view();
        let (applied, _) = store
            .applied_state_in(&view)
            .map_err(|e| format!("reading the applied index: {e}"))?;
        let applied = applied.map_or(0, |l| l.index);
        let docs = store
            .all_text_docs_in(&view, &mut |d| self.add(&d))
            .map_err(|e| format!("reading documents for a rebuild: {e}"))?;
        self.commit(generation, applied)?;
        self.ft.docs_indexed.fetch_add(docs, Ordering::Relaxed);
        store
            .remove_pending_upto(applied)
            .map_err(|e| format!("dropping indexed documents from the queue: {e}"))?;
        Ok(())
    }
}
