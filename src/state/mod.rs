//! The replicated state machine: applies committed records to the hot tier.
//!
//! Layout under the node's data directory:
//! - `sm/CURRENT` names the live fjall database directory (`sm/db-N`);
//! - `snapshots/snap-<index>-<term>-<node>.snap` are snapshot files;
//! - `cold/<signal>/<signal>-<log index>.parquet` are cold files
//!   (`cold`), named by the live store's manifest.
//!
//! Installing a snapshot loads it into a new `db-N+1` and keeps a copy of the
//! file, fsyncs both, then switches `CURRENT` with an atomic rename: a crash
//! leaves the old state or the new one, never a switch to data not on disk.

pub mod apply;
pub mod cold;
pub mod digest;
pub mod hot;
pub mod snapshot;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::OptionalSend;
use tael_consensus::log_store::{read_meta_file, sync_dir, write_meta_file_atomic};
use tael_consensus::{LogId, Snapshot, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig};

use self::hot::{HotStore, StoreError, StoreResult};

const CURRENT_FILE: &str = "CURRENT";
/// Snapshot files kept: the newest, plus one that may still be streaming out.
const SNAPSHOTS_KEPT: usize = 2;
/// Exports tried before a snapshot build fails (see `build_snapshot`).
const SNAPSHOT_ATTEMPTS: usize = 5;

#[derive(Clone, Debug)]
pub struct StateMachineOptions {
    pub fjall_worker_threads: usize,
    pub fjall_cache_bytes: u64,
    /// The `double-apply-retries` mutation; false outside fault tests.
    pub duplicate_retries: bool,
    /// The shared cold store (`--cold-store s3://...`); `None`: local.
    pub cold_objects: Option<Arc<cold::objects::ColdObjects>>,
    /// The `poison-is-fatal` mutation: an entry that cannot be applied
    /// panics the apply instead of being rejected; false outside fault tests.
    pub poison_is_fatal: bool,
}

impl Default for StateMachineOptions {
    fn default() -> Self {
        StateMachineOptions {
            fjall_worker_threads: 1,
            fjall_cache_bytes: 64 * 1024 * 1024,
            duplicate_retries: false,
            cold_objects: None,
            poison_is_fatal: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct StateMachineStats {
    pub entries_applied: AtomicU64,
    pub spans_applied: AtomicU64,
    pub logs_applied: AtomicU64,
    pub metric_points_applied: AtomicU64,
    /// Spooled records applied here, and re-proposed ones skipped here.
    pub spooled_applied: AtomicU64,
    pub spooled_duplicates_skipped: AtomicU64,
    pub apply_batches: AtomicU64,
    pub apply_micros_total: AtomicU64,
    pub apply_latency: tael_consensus::histogram::LatencyHistogram,
    pub snapshots_built: AtomicU64,
    pub snapshots_installed: AtomicU64,
}

/// State shared by the state machine (owned by openraft), its snapshot
/// builders and the query engine.
pub struct Shared {
    /// Applied spans and logs for live-tail clients.
    pub tail: Arc<crate::live_tail::LiveTail>,
    sm_dir: PathBuf,
    snapshot_dir: PathBuf,
    /// `<data-dir>/cold`: every store generation's cold files.
    cold_dir: PathBuf,
    opts: StateMachineOptions,
    store: RwLock<Arc<HotStore>>,
    generation: AtomicU64,
    /// Bumped whenever the API key set may have changed (a key command
    /// applied, a snapshot installed): edges cache the set until it moves.
    keys_version: AtomicU64,
    current_snapshot: Mutex<Option<(SnapshotMeta, PathBuf)>>,
    pub stats: StateMachineStats,
    /// Consistency-check digests of this replica (see `digest`).
    pub digests: Arc<digest::Digests>,
}

impl crate::auth::KeySource for Shared {
    fn keys_version(&self) -> u64 {
        self.keys_version.load(Ordering::SeqCst)
    }

    fn load_keys(&self) -> Result<crate::auth::KeySet, String> {
        self.store().key_set().map_err(|e| e.to_string())
    }
}

impl Shared {
    /// The live hot store. Queries hold this `Arc` for their duration; an
    /// install swaps in a new store without disturbing them.
    pub fn store(&self) -> Arc<HotStore> {
        self.store.read().unwrap().clone()
    }

    /// Bumped by every snapshot install (which replaces the store).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The live store and the generation it belongs to, read together: an
    /// install changes both under the store's write lock, so this never
    /// pairs a store with another store's generation. Whoever keys work by
    /// generation (the full-text indexer) must read them here, not one after
    /// the other: an old store read under the new generation would be
    /// indexed as the new one, and its rebuild never repeated.
    pub fn store_with_generation(&self) -> (Arc<HotStore>, u64) {
        let store = self.store.read().unwrap();
        (store.clone(), self.generation.load(Ordering::SeqCst))
    }

    /// The shared cold store, when the node runs with one.
    pub fn cold_objects(&self) -> Option<Arc<cold::objects::ColdObjects>> {
        self.opts.cold_objects.clone()
    }

    pub fn current_snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.current_snapshot
            .lock()
            .unwrap()
            .as_ref()
            .map(|(m, _)| m.clone())
    }
}

#[derive(Clone)]
pub struct StateMachine {
    pub shared: Arc<Shared>,
}

fn db_dir_name(generation: u64) -> String {
    format!("db-{generation}")
}

impl StateMachine {
    pub fn open(data_dir: &Path, opts: StateMachineOptions) -> io::Result<StateMachine> {
        let sm_dir = data_dir.join("sm");
        let snapshot_dir = data_dir.join("snapshots");
        let cold_dir = data_dir.join("cold");
        fs::create_dir_all(&sm_dir)?;
        fs::create_dir_all(&snapshot_dir)?;
        let generation: u64 = match read_meta_file::<u64>(&sm_dir, CURRENT_FILE)? {
            Some(g) => g,
            None => {
                write_meta_file_atomic(&sm_dir, CURRENT_FILE, &0u64)?;
                0
            }
        };
        // Directories of other generations are leftovers of an install that
        // crashed before its switch, or of a store replaced by one.
        for entry in fs::read_dir(&sm_dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("db-") && name != db_dir_name(generation) {
                tracing::info!(dir = %entry.path().display(), "removing stale state machine directory");
                fs::remove_dir_all(entry.path())?;
            }
        }
        let mut store = HotStore::open(
            &sm_dir.join(db_dir_name(generation)),
            opts.fjall_worker_threads,
            opts.fjall_cache_bytes,
        )?;
        store.duplicate_retries = opts.duplicate_retries;
        store.cold_dir = cold_dir.clone();
        store.cold_objects = opts.cold_objects.clone();
        // Files of a move a crash kept from committing, of a cut that
        // committed but had not deleted them yet, of a replaced store.
        store.remove_cold_orphans()?;
        let current_snapshot = latest_snapshot(&snapshot_dir)?;
        Ok(StateMachine {
            shared: Arc::new(Shared {
                tail: Arc::default(),
                sm_dir,
                snapshot_dir,
                cold_dir,
                opts,
                store: RwLock::new(Arc::new(store)),
                generation: AtomicU64::new(generation),
                keys_version: AtomicU64::new(0),
                current_snapshot: Mutex::new(current_snapshot),
                stats: StateMachineStats::default(),
                digests: Default::default(),
            }),
        })
    }
}

/// The newest readable snapshot file; removes temporary and older files.
fn latest_snapshot(dir: &Path) -> io::Result<Option<(SnapshotMeta, PathBuf)>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("snap") => files.push(path),
            Some("tmp") => fs::remove_file(&path)?,
            _ => {}
        }
    }
    files.sort();
    while let Some(path) = files.pop() {
        match snapshot::read_meta(&path) {
            Ok(meta) => return Ok(Some((meta, path))),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable snapshot file")
            }
        }
    }
    Ok(None)
}

fn prune_snapshots(dir: &Path) -> io::Result<()> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(SNAPSHOTS_KEPT);
    for p in &files[..excess] {
        fs::remove_file(p)?;
    }
    Ok(())
}

impl Shared {
    fn build_snapshot(&self) -> StoreResult<Snapshot> {
        // A cut may delete a cold file the view's manifest names between
        // the view and the export's open of it: then a newer view.
        let mut attempt = 0;
        let (store, meta, path) = loop {
            attempt += 1;
            let store = self.store();
            let view = store.read_view();
            let (last_log_id, last_membership) = store.applied_state_in(&view)?;
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
            };
            let path = self.snapshot_dir.join(snapshot::snapshot_file_name(&meta));
            match snapshot::export(&store, &view, &meta, &path) {
                Ok(_) => break (store, meta, path),
                Err(StoreError::ColdFileMissing(_)) if attempt < SNAPSHOT_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        };
        // Logs are purged behind this snapshot next: everything it covers
        // must be durable in the store too, not only in the file.
        store.persist()?;
        self.set_current_snapshot(meta.clone(), path.clone());
        prune_snapshots(&self.snapshot_dir)?;
        self.stats.snapshots_built.fetch_add(1, Ordering::Relaxed);
        Ok(Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        })
    }

    fn set_current_snapshot(&self, meta: SnapshotMeta, path: PathBuf) {
        let mut cur = self.current_snapshot.lock().unwrap();
        if cur
            .as_ref()
            .is_none_or(|(m, _)| m.last_log_id <= meta.last_log_id)
        {
            *cur = Some((meta, path));
        }
    }

    /// Installs a snapshot received from the leader. The order is what makes
    /// a crash at any point safe: first everything the switch will point at
    /// is written and fsynced (the new store, its directory entry, the kept
    /// copy of the file and its directory entry), and only then is `CURRENT`
    /// switched (temp file, fsync, rename, fsync of the directory). A crash
    /// before the switch restarts on the old store, next to a kept snapshot
    /// newer than it, which start-up installs again; a crash after it
    /// restarts on the new store with its snapshot on disk to serve.
    fn install_snapshot(&self, meta: &SnapshotMeta, file: &Path) -> StoreResult<()> {
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let store = self.load_snapshot_store(meta, file, generation)?;
        let kept = match self.keep_snapshot_copy(meta, file) {
            Ok(kept) => kept,
            Err(e) => {
                // Not switched to: the next start-up would remove it too.
                drop(store);
                let _ = fs::remove_dir_all(self.sm_dir.join(db_dir_name(generation)));
                return Err(e);
            }
        };

        // The switch: from here on a restart opens the new store.
        write_meta_file_atomic(&self.sm_dir, CURRENT_FILE, &generation)?;
        let old = {
            // Both at once, under the lock (see `store_with_generation`).
            let mut live = self.store.write().unwrap();
            self.generation.store(generation, Ordering::SeqCst);
            std::mem::replace(&mut *live, Arc::new(store))
        };
        // After the swap: a check that sees the new version reads the new store.
        self.keys_version.fetch_add(1, Ordering::SeqCst);
        let old_dir = self.sm_dir.join(db_dir_name(generation - 1));
        retire_store(old, old_dir);
        // The snapshot brought the files its manifest names; the old
        // store's other files go. A file still missing (never expected)
        // makes reads of it fail clearly.
        // Best effort: the switch is done, and the next start removes
        // orphans again.
        let store = self.store();
        if let Err(e) = store.remove_cold_orphans() {
            tracing::warn!(error = %e, "removing cold files the installed snapshot does not name");
        }
        match store.missing_cold_files() {
            Ok(missing) if !missing.is_empty() => tracing::warn!(
                missing = missing.len(),
                "the installed snapshot names cold files this node lacks: reads of them fail"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checking the cold files"),
        }

        self.set_current_snapshot(meta.clone(), kept);
        prune_snapshots(&self.snapshot_dir)?;
        self.stats
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Loads `file` into a new store directory for `generation`, durable
    /// (data fsynced by the import, the directory entry by `sync_dir`).
    /// Nothing is left behind when it fails.
    fn load_snapshot_store(
        &self,
        meta: &SnapshotMeta,
        file: &Path,
        generation: u64,
    ) -> StoreResult<HotStore> {
        let new_dir = self.sm_dir.join(db_dir_name(generation));
        if new_dir.exists() {
            fs::remove_dir_all(&new_dir)?;
        }
        let loaded = HotStore::open(
            &new_dir,
            self.opts.fjall_worker_threads,
            self.opts.fjall_cache_bytes,
        )
        .and_then(|mut store| {
            store.duplicate_retries = self.opts.duplicate_retries;
            store.cold_dir = self.cold_dir.clone();
            store.cold_objects = self.opts.cold_objects.clone();
            snapshot::import(file, &store).map(|m| (store, m))
        })
        .and_then(|(store, file_meta)| {
            if file_meta.last_log_id != meta.last_log_id {
                return Err(StoreError::Corrupt(format!(
                    "snapshot file covers {:?}, the leader announced {:?}",
                    file_meta.last_log_id, meta.last_log_id
                )));
            }
            sync_dir(&self.sm_dir)?;
            Ok(store)
        });
        if loaded.is_err() {
            let _ = fs::remove_dir_all(&new_dir);
        }
        loaded
    }

    /// Keeps a durable copy of `file` to serve to other nodes (the received
    /// file belongs to the transport) and returns its path.
    fn keep_snapshot_copy(&self, meta: &SnapshotMeta, file: &Path) -> StoreResult<PathBuf> {
        let kept = self.snapshot_dir.join(snapshot::snapshot_file_name(meta));
        if file != kept {
            let tmp = kept.with_extension("tmp");
            fs::copy(file, &tmp)?;
            fs::File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &kept)?;
            sync_dir(&self.snapshot_dir)?;
        }
        Ok(kept)
    }
}

/// Drops a replaced store once no query holds it, then deletes its files.
/// If that takes too long the directory is left for the next start-up.
fn retire_store(old: Arc<HotStore>, dir: PathBuf) {
    std::thread::spawn(move || {
        for _ in 0..600 {
            if Arc::strong_count(&old) == 1 {
                drop(old);
                if let Err(e) = fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing replaced state machine directory");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::from)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let shared = self.shared.clone();
        blocking(move || shared.store().applied_state()).await
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            batch.push(entry);
            responders.push(responder);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let responses = blocking(move || shared.apply_entries(&batch)).await?;
        for (responder, response) in responders.into_iter().zip(responses) {
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let shared = self.shared.clone();
        let meta = meta.clone();
        blocking(move || shared.install_snapshot(&meta, &snapshot.path)).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .shared
            .current_snapshot
            .lock()
            .unwrap()
            .as_ref()
            .map(|(meta, path)| Snapshot {
                meta: meta.clone(),
                snapshot: SnapshotFile { path: path.clone() },
            }))
    }
}

pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let shared = self.shared.clone();
        blocking(move || shared.build_snapshot()).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tael_consensus::{Entry, EntryPayload, LeaderId, LogId};

    use super::*;

    /// A fresh state machine that has applied one blank entry.
    fn one_entry_applied() -> (tempfile::TempDir, Arc<Shared>) {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path(), StateMachineOptions::default()).unwrap();
        let blank = Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 1,
                    node_id: 1,
                },
                1,
            ),
            payload: EntryPayload::Blank,
        };
        sm.shared.apply_entries(&[blank]).unwrap();
        (dir, sm.shared)
    }

    #[test]
    fn a_store_is_never_seen_with_another_stores_generation() {
        let (_dir, shared) = one_entry_applied();
        let snapshot = shared.build_snapshot().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (shared, done) = (shared.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::SeqCst) {
                    let (store, generation) = shared.store_with_generation();
                    assert!(
                        store.dir().ends_with(db_dir_name(generation)),
                        "store {} read with generation {generation}",
                        store.dir().display()
                    );
                    reads += 1;
                }
                reads
            })
        };
        for _ in 0..5 {
            shared
                .install_snapshot(&snapshot.meta, &snapshot.snapshot.path)
                .unwrap();
        }
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(shared.store_with_generation().1, 5);
    }

    /// `CURRENT` is switched only once the kept copy of the snapshot is on
    /// disk: when keeping it fails, the node stays on its old store (and a
    /// crash at that point would too), not on a store whose snapshot is gone.
    #[test]
    fn current_is_not_switched_before_the_kept_snapshot_copy_is_durable() {
        let (dir, shared) = one_entry_applied();
        let built = shared.build_snapshot().unwrap();
        // As the transport hands it over: a file outside the snapshot directory.
        let received = dir.path().join("received.snap");
        fs::copy(&built.snapshot.path, &received).unwrap();
        fs::remove_file(&built.snapshot.path).unwrap();
        // Keeping the copy fails: its temporary name is taken by a directory.
        let kept = shared
            .snapshot_dir
            .join(snapshot::snapshot_file_name(&built.meta));
        fs::create_dir(kept.with_extension("tmp")).unwrap();

        assert!(shared.install_snapshot(&built.meta, &received).is_err());
        assert_eq!(
            read_meta_file::<u64>(&shared.sm_dir, CURRENT_FILE).unwrap(),
            Some(0),
            "CURRENT switched to a store whose snapshot copy never reached the disk"
        );
        assert_eq!(shared.generation(), 0);
        assert!(!shared.sm_dir.join(db_dir_name(1)).exists());

        // Once the copy can be kept, the install goes through.
        fs::remove_dir(kept.with_extension("tmp")).unwrap();
        shared.install_snapshot(&built.meta, &received).unwrap();
        assert_eq!(
            read_meta_file::<u64>(&shared.sm_dir, CURRENT_FILE).unwrap(),
            Some(1)
        );
        assert!(kept.exists());
    }
}
