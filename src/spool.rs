//! Store-and-forward ingest (`--ingest-ack spooled`).
//!
//! An export is appended to this node's local spool, fsynced, and
//! acknowledged; a forwarder task proposes spooled records into the Raft log
//! whenever a leader is reachable, one at a time, and lets the spool forget a
//! record only once its proposal committed. The state machine applies each
//! spooled record at most once (see [`crate::payload::SpooledRecord`]); the
//! forwarder retries until it commits, so it is applied exactly once as long
//! as this node's spool disk survives.
//!
//! The spool is a walrus-rust 0.2.0 WAL. What this module relies on, checked
//! in that version's source (the reasons are on the code that depends on
//! them):
//!
//! - `batch_append_for_topic` writes with io_uring, checks every completion,
//!   and `sync_all`s the file before it returns Ok. `append_for_topic` is never
//!   used: it drops `pwrite` errors and leaves the fsync to a background thread.
//! - Start-up recovery rebuilds each topic's entries from the files, oldest
//!   file first (file names are creation times in ms), each entry checked by
//!   its checksum; a torn tail ends its block.
//! - Read cursors are NOT trusted across restarts. Walrus persists a cursor as
//!   a block id or block position, and block ids are renumbered at each start
//!   (recovered blocks count from 1, and so does the allocator of the new
//!   process), so a persisted cursor can point into the wrong block. The
//!   spool deletes walrus's cursor file before every open, so walrus reads
//!   from its oldest entry, and skips what it forwarded already by its own
//!   durable watermark (`state.json`: per generation, the highest seq
//!   forwarded).
//! - Reads use `read_next`, one entry at a time, never `batch_read_for_topic`:
//!   a batch read that stops inside a sealed block can jump over the rest of
//!   that block when the active block has data too.
//! - A block is marked consumed (and its file, once fully consumed and full,
//!   deleted by walrus's background thread) only when a read moves past the
//!   block's end. The forwarder reads the next entry only after the previous
//!   one committed, so no file holding an unforwarded record is deleted.
//! - Appends and reads run under one mutex: walrus's reader and writer race
//!   when a block is sealed during a read.
//! - Walrus keeps global state (block trackers, one deletion channel), so
//!   there is one spool per process, opened once ([`Spool::open`] refuses a
//!   second).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tael_consensus::log_store::{read_meta_file, sync_dir, write_meta_file_atomic};
use tael_consensus::{Record, BATCH_KEY_LEN};
use tokio::sync::{watch, Notify};
use walrus_rust::{FsyncSchedule, ReadConsistency, Walrus};

use crate::cluster::{Cluster, ClusterError};
use crate::codec::{decode, encode};
use crate::payload;

/// Under the data directory.
pub const SPOOL_DIR: &str = "spool";
/// Walrus's directory under [`SPOOL_DIR`] (its namespace key).
const WALRUS_KEY: &str = "walrus";
/// Walrus's persisted read cursors, which the spool does not trust.
const WALRUS_CURSOR_FILE: &str = "read_offset_idx_index.db";
const TOPIC: &str = "exports";
const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;
const ENTRY_VERSION: u8 = 1;
/// Largest spooled record. Walrus blocks are 10 MB and its recovery scan
/// misreads an entry that spans blocks; larger exports bypass the spool and
/// are acknowledged at commit.
pub const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;
/// How long the forwarder sleeps when it has nothing to do and hears nothing.
const IDLE_POLL: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Entries skipped (already forwarded before a restart) per lock hold.
const MAX_SKIPS_PER_READ: usize = 1024;
/// How far the clock may trail the newest spool file's name before open
/// waits it out rather than refusing (a new file named like an old one would
/// truncate it).
const MAX_CLOCK_WAIT: Duration = Duration::from_secs(2);

static OPENED: AtomicBool = AtomicBool::new(false);

/// Walrus's root directory, read from the environment when it opens.
const WALRUS_DATA_DIR_VAR: &str = "WALRUS_DATA_DIR";
/// Present: walrus prints nothing (it reads this at every operation).
const WALRUS_QUIET_VAR: &str = "WALRUS_QUIET";

/// The environment walrus needs for a spool under `data_dir`.
///
/// Walrus 0.2.0 takes its directory and its quiet switch only from the
/// process environment, and reads them from its own threads. Changing the
/// environment while other threads run is undefined behaviour (a concurrent
/// `getenv` can read freed memory), so the process sets these once, at the
/// start of `main`, before any thread exists; [`Spool::open`] only checks
/// that they are there. Tests start a child process with them instead.
pub fn walrus_environment(data_dir: &Path) -> [(&'static str, std::ffi::OsString); 2] {
    [
        (WALRUS_QUIET_VAR, "1".into()),
        (
            WALRUS_DATA_DIR_VAR,
            data_dir.join(SPOOL_DIR).into_os_string(),
        ),
    ]
}

/// Refuses to open walrus unless the process started with
/// [`walrus_environment`]: walrus would otherwise write elsewhere.
fn check_walrus_environment(data_dir: &Path) -> Result<(), String> {
    for (name, want) in walrus_environment(data_dir) {
        if std::env::var_os(name).as_ref() != Some(&want) {
            return Err(format!(
                "the spool's write-ahead log (walrus) reads {name} from the environment, \
                 and this process did not start with it set to {want:?}; it is set at \
                 start-up, before any thread runs (spool::walrus_environment)"
            ));
        }
    }
    Ok(())
}

/// One spooled export as stored in walrus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SpoolEntry {
    generation: u64,
    seq: u64,
    tag: u8,
    batch_key: [u8; BATCH_KEY_LEN],
    payload: Vec<u8>,
}

fn encode_entry(e: &SpoolEntry) -> Vec<u8> {
    let mut out = vec![ENTRY_VERSION];
    out.extend_from_slice(&encode(e));
    out
}

fn decode_entry(bytes: &[u8]) -> Result<SpoolEntry, String> {
    match bytes.split_first() {
        Some((&ENTRY_VERSION, rest)) => decode(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("unknown spool entry version {v}")),
        None => Err("empty spool entry".into()),
    }
}

/// The spool's own durable state, rewritten atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SpoolState {
    version: u32,
    /// The current process's generation; each open takes the next one.
    generation: u64,
    /// The oldest generation that may still have records in walrus.
    min_live_generation: u64,
    /// Per generation, the highest seq whose proposal committed.
    forwarded: BTreeMap<u64, u64>,
    /// Every spooled record was forwarded and nothing was appended since:
    /// the next open may wipe walrus's files.
    drained: bool,
}

/// Why an append was refused.
#[derive(Debug)]
pub enum SpoolRefusal {
    /// Too large for the spool: propose it directly instead.
    TooLarge,
    /// The spool failed earlier in this process; use the direct path.
    Failed(String),
    /// Over `spool_max_pending_mb`: the client should retry later.
    Full { pending_bytes: u64 },
}

#[derive(Debug, Default)]
pub struct SpoolMetrics {
    pub appended_total: AtomicU64,
    pub forwarded_total: AtomicU64,
    /// Entries read back that an earlier process had forwarded already.
    pub skipped_forwarded_total: AtomicU64,
    pub refused_full_total: AtomicU64,
    pub bypassed_total: AtomicU64,
    pub forward_retries_total: AtomicU64,
    /// Records this process knows are spooled and not yet committed.
    pub pending_records: AtomicU64,
    pub pending_bytes: AtomicU64,
    /// On-disk size of files left by earlier processes, counted as pending
    /// until the forwarder has read past all of them.
    pub recovered_bytes: AtomicU64,
    pub failed: AtomicBool,
}

struct Inner {
    wal: Walrus,
    state: SpoolState,
    next_seq: u64,
    failed: Option<String>,
}

pub struct Spool {
    dir: PathBuf,
    origin: u64,
    generation: u64,
    min_live_generation: u64,
    max_pending_bytes: u64,
    inner: Mutex<Inner>,
    pub metrics: SpoolMetrics,
    wake: Notify,
}

/// What one read from the spool gave.
enum Next {
    Entry(SpoolEntry, u64),
    /// Only entries forwarded before; read again.
    Skipped,
    /// Everything spooled has been forwarded.
    Empty,
}

/// Fails unless this kernel lets the process use io_uring: walrus's batch
/// writes need it, and its background thread panics without it.
fn probe_io_uring() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        io_uring::IoUring::new(8).map(|_| ()).map_err(|e| {
            format!(
                "ingest_ack = spooled needs io_uring, which this kernel refuses ({e}); \
                 check the sysctl kernel.io_uring_disabled and any seccomp profile, \
                 or use ingest_ack = committed"
            )
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("ingest_ack = spooled needs Linux (io_uring)".into())
    }
}

/// Bytes the files in `dir` occupy on disk (walrus preallocates sparse files).
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// The newest walrus file's name, a creation time in ms.
fn newest_file_millis(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .max()
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Spool {
    /// Opens the spool under `data_dir`, for node `origin`. Once per process.
    /// The process must have started with [`walrus_environment`] for
    /// `data_dir`.
    pub fn open(data_dir: &Path, origin: u64, max_pending_bytes: u64) -> Result<Spool, String> {
        check_walrus_environment(data_dir)?;
        probe_io_uring()?;
        if OPENED.swap(true, Ordering::SeqCst) {
            return Err(
                "ingest_ack = spooled allows one spooled node per process: its \
                        spool (walrus) keeps process-wide state"
                    .into(),
            );
        }
        let dir = data_dir.join(SPOOL_DIR);
        let wal_dir = dir.join(WALRUS_KEY);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut state: SpoolState = read_meta_file(&dir, STATE_FILE)
            .map_err(|e| format!("reading the spool state: {e}"))?
            .unwrap_or_default();
        if state.version > STATE_VERSION {
            return Err(format!(
                "the spool in {} was written by a newer tael-raft (state version {})",
                dir.display(),
                state.version
            ));
        }
        let generation = state.generation + 1;
        if state.drained || !wal_dir.exists() {
            // Everything in it was forwarded: start from empty files, which
            // is also how the spool's disk use is bounded across restarts.
            if wal_dir.exists() {
                std::fs::remove_dir_all(&wal_dir)
                    .map_err(|e| format!("clearing the drained spool: {e}"))?;
                sync_dir(&dir).map_err(|e| format!("syncing {}: {e}", dir.display()))?;
            }
            state.forwarded.clear();
            state.min_live_generation = generation;
        }
        if state.min_live_generation == 0 {
            state.min_live_generation = generation;
        }
        state
            .forwarded
            .retain(|&g, _| g >= state.min_live_generation);
        state.version = STATE_VERSION;
        state.generation = generation;
        // Durable before any record carries it, so a generation is never reused.
        write_meta_file_atomic(&dir, STATE_FILE, &state)
            .map_err(|e| format!("writing the spool state: {e}"))?;

        for name in [
            WALRUS_CURSOR_FILE.to_string(),
            format!("{WALRUS_CURSOR_FILE}.tmp"),
        ] {
            match std::fs::remove_file(wal_dir.join(&name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("removing walrus's read cursor {name}: {e}")),
            }
        }
        if let Some(newest) = newest_file_millis(&wal_dir) {
            let behind_ms = (newest + 1).saturating_sub(now_millis());
            if behind_ms > MAX_CLOCK_WAIT.as_millis() as u64 {
                return Err(format!(
                    "the clock is {behind_ms} ms behind the newest spool file in {}; \
                     walrus names new files by the time and would overwrite it",
                    wal_dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(behind_ms));
        }
        let recovered_bytes = allocated_bytes(&wal_dir);

        // Walrus finds `dir` in the environment (checked above).
        let wal = Walrus::with_consistency_and_schedule_for_key(
            WALRUS_KEY,
            // Cursors are not trusted across restarts (see the module docs);
            // persisting them less often saves fsyncs.
            ReadConsistency::AtLeastOnce {
                persist_every: u32::MAX,
            },
            // Appends fsync themselves (batch_append_for_topic); this paces
            // the background thread, which deletes consumed files every
            // 1000 ticks.
            FsyncSchedule::Milliseconds(200),
        )
        .map_err(|e| format!("opening the spool in {}: {e}", wal_dir.display()))?;

        let metrics = SpoolMetrics::default();
        metrics
            .recovered_bytes
            .store(recovered_bytes, Ordering::Relaxed);
        tracing::info!(
            dir = %dir.display(),
            generation,
            min_live_generation = state.min_live_generation,
            recovered_bytes,
            "spool open"
        );
        Ok(Spool {
            dir,
            origin,
            generation,
            min_live_generation: state.min_live_generation,
            max_pending_bytes,
            inner: Mutex::new(Inner {
                wal,
                state,
                next_seq: 1,
                failed: None,
            }),
            metrics,
            wake: Notify::new(),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn persist_state(&self, state: &SpoolState) -> Result<(), String> {
        write_meta_file_atomic(&self.dir, STATE_FILE, state)
            .map_err(|e| format!("writing the spool state: {e}"))
    }

    fn fail(&self, inner: &mut Inner, why: String) -> SpoolRefusal {
        tracing::error!(error = %why, "the spool failed; exports bypass it until restart");
        self.metrics.failed.store(true, Ordering::Relaxed);
        inner.failed = Some(why.clone());
        SpoolRefusal::Failed(why)
    }

    /// Appends `record` and returns once it is fsynced. Blocking.
    pub fn append(&self, record: &Record) -> Result<(), SpoolRefusal> {
        debug_assert!(payload::spoolable(record.tag));
        let mut inner = self.inner.lock().unwrap();
        if let Some(why) = &inner.failed {
            return Err(SpoolRefusal::Failed(why.clone()));
        }
        let entry = SpoolEntry {
            generation: self.generation,
            seq: inner.next_seq,
            tag: record.tag,
            batch_key: record.batch_key,
            payload: record.payload.clone(),
        };
        let bytes = encode_entry(&entry);
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(SpoolRefusal::TooLarge);
        }
        let pending = self.metrics.pending_bytes.load(Ordering::Relaxed)
            + self.metrics.recovered_bytes.load(Ordering::Relaxed);
        if pending + bytes.len() as u64 > self.max_pending_bytes {
            self.metrics
                .refused_full_total
                .fetch_add(1, Ordering::Relaxed);
            return Err(SpoolRefusal::Full {
                pending_bytes: pending,
            });
        }
        if inner.state.drained {
            // The next open must not wipe the spool once this record is in it.
            inner.state.drained = false;
            let state = inner.state.clone();
            if let Err(e) = self.persist_state(&state) {
                return Err(self.fail(&mut inner, e));
            }
        }
        // Not append_for_topic: it drops write errors and does not fsync.
        if let Err(e) = inner.wal.batch_append_for_topic(TOPIC, &[&bytes]) {
            // Walrus's rollback of a failed batch leaves its writer
            // inconsistent, so no more appends in this process.
            return Err(self.fail(&mut inner, format!("spool append: {e}")));
        }
        inner.next_seq += 1;
        drop(inner);
        self.metrics.appended_total.fetch_add(1, Ordering::Relaxed);
        self.metrics.pending_records.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .pending_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.wake.notify_one();
        Ok(())
    }

    /// The next entry to forward. Blocking.
    fn next(&self) -> Result<Next, String> {
        let mut inner = self.inner.lock().unwrap();
        for _ in 0..MAX_SKIPS_PER_READ {
            let Some(raw) = inner
                .wal
                .read_next(TOPIC, true)
                .map_err(|e| format!("reading the spool: {e}"))?
            else {
                // Walrus read everything appended (appends hold this lock),
                // and the forwarder reads only after forwarding what it
                // read: the spool is drained.
                self.metrics.recovered_bytes.store(0, Ordering::Relaxed);
                if !inner.state.drained {
                    inner.state.drained = true;
                    let state = inner.state.clone();
                    self.persist_state(&state)?;
                }
                return Ok(Next::Empty);
            };
            let entry = match decode_entry(&raw.data) {
                Ok(e) => e,
                Err(e) => {
                    // Walrus checked its checksum, so this is a format this
                    // build cannot read, never a torn write.
                    tracing::error!(error = %e, "skipping an unreadable spool entry");
                    continue;
                }
            };
            let done = inner
                .state
                .forwarded
                .get(&entry.generation)
                .copied()
                .unwrap_or(0);
            if entry.seq <= done {
                self.metrics
                    .skipped_forwarded_total
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if entry.seq != done + 1 {
                // Walrus returns a generation's records in append order, so
                // this means records it could not read back (logged by walrus
                // as a checksum failure) or ones this build could not decode.
                tracing::warn!(
                    generation = entry.generation,
                    expected_seq = done + 1,
                    seq = entry.seq,
                    "gap in the spool: records before this one were not read back"
                );
            }
            return Ok(Next::Entry(entry, raw.data.len() as u64));
        }
        Ok(Next::Skipped)
    }

    /// Records that `entry`'s proposal committed. Blocking.
    fn mark_forwarded(&self, entry: &SpoolEntry, bytes: u64) -> Result<(), String> {
        let mut inner = self.inner.lock().unwrap();
        let done = inner.state.forwarded.entry(entry.generation).or_insert(0);
        *done = (*done).max(entry.seq);
        let state = inner.state.clone();
        self.persist_state(&state)?;
        drop(inner);
        self.metrics.forwarded_total.fetch_add(1, Ordering::Relaxed);
        if entry.generation == self.generation {
            let _ = self.metrics.pending_records.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |n| Some(n.saturating_sub(1)),
            );
            let _ = self.metrics.pending_bytes.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |n| Some(n.saturating_sub(bytes)),
            );
        }
        Ok(())
    }

    fn record_for(&self, entry: &SpoolEntry) -> Record {
        payload::spooled_record(
            entry.batch_key,
            &payload::SpooledRecord {
                origin: self.origin,
                generation: entry.generation,
                seq: entry.seq,
                min_live_generation: self.min_live_generation,
                tag: entry.tag,
                payload: entry.payload.clone(),
            },
        )
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("spool task: {e}"))?
}

/// Sleeps `d` unless shutdown comes first; false on shutdown.
async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.wait_for(|s| *s) => false,
    }
}

/// Forwards spooled records into the Raft log, oldest first, one at a time:
/// the next is read only after the previous one committed (see the module
/// docs for why both the order and the one-at-a-time matter).
pub async fn forward(
    cluster: Arc<Cluster>,
    spool: Arc<Spool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut retry = RETRY_MIN;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let s = spool.clone();
        let (entry, bytes) = match blocking(move || s.next()).await {
            Ok(Next::Entry(e, b)) => (e, b),
            Ok(Next::Skipped) => continue,
            Ok(Next::Empty) => {
                tokio::select! {
                    _ = spool.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "spool read failed");
                if !pause(RETRY_MAX, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        let record = spool.record_for(&entry);
        loop {
            match cluster.propose(record.clone()).await {
                Ok(_) => break,
                Err(ClusterError::Invalid(why)) => {
                    // Validated before it was spooled, so a refusal here is a
                    // bug; holding the spool up behind it would lose more.
                    tracing::error!(
                        generation = entry.generation,
                        seq = entry.seq,
                        error = %why,
                        "the leader refused a spooled record; dropping it"
                    );
                    break;
                }
                Err(e) => {
                    spool
                        .metrics
                        .forward_retries_total
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = ?e, "spooled record not committed yet; retrying");
                    if !pause(retry, &mut shutdown).await {
                        return;
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
        retry = RETRY_MIN;
        let s = spool.clone();
        if let Err(e) = blocking(move || s.mark_forwarded(&entry, bytes)).await {
            // The record committed; after a restart it is proposed again and
            // skipped by the state machine.
            tracing::error!(error = %e, "recording a forwarded spool entry");
            if !pause(RETRY_MAX, &mut shutdown).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_unknown_versions_are_refused() {
        let e = SpoolEntry {
            generation: 3,
            seq: 9,
            tag: payload::TAG_LOGS,
            batch_key: [7; BATCH_KEY_LEN],
            payload: vec![1, 2, 3],
        };
        let bytes = encode_entry(&e);
        assert_eq!(decode_entry(&bytes).unwrap(), e);
        let mut newer = bytes.clone();
        newer[0] = ENTRY_VERSION + 1;
        assert!(decode_entry(&newer).unwrap_err().contains("version"));
        assert!(decode_entry(&[]).is_err());
    }

    /// Runs test `name` of this module in a child process of this test
    /// binary that starts with walrus's environment (set by `Command`, so
    /// no thread of this process ever changes its own environment). In the
    /// child, returns the data directory to use; in the parent, checks the
    /// child ran exactly that test and passed, and returns `None`.
    fn in_prepared_child(name: &str) -> Option<PathBuf> {
        const CHILD_DATA_DIR_VAR: &str = "TAEL_SPOOL_TEST_DATA_DIR";
        if let Some(dir) = std::env::var_os(CHILD_DATA_DIR_VAR) {
            return Some(PathBuf::from(dir));
        }
        let dir = tempfile::tempdir().unwrap();
        let module = module_path!().split_once("::").unwrap().1;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args(["--exact", &format!("{module}::{name}"), "--test-threads=1"])
            .env(CHILD_DATA_DIR_VAR, dir.path());
        for (var, value) in walrus_environment(dir.path()) {
            child.env(var, value);
        }
        let out = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the child process running {name} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        None
    }

    /// Opening never touches the process environment: a process that did
    /// not start with walrus's variables is refused, and still has none.
    #[test]
    fn open_refuses_a_process_not_started_with_the_walrus_environment() {
        if std::env::var_os(WALRUS_DATA_DIR_VAR).is_some() {
            // A child started for another test of this module.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let err = Spool::open(dir.path(), 4, 1 << 20).err().unwrap();
        assert!(
            err.contains(WALRUS_DATA_DIR_VAR) || err.contains(WALRUS_QUIET_VAR),
            "{err}"
        );
        assert_eq!(std::env::var_os(WALRUS_DATA_DIR_VAR), None);
        assert_eq!(std::env::var_os(WALRUS_QUIET_VAR), None);
        assert!(!dir.path().join(SPOOL_DIR).exists());
    }

    /// The only test that opens a spool (one per process), in a child process.
    #[test]
    fn append_read_forward_drain_and_a_second_spool_is_refused() {
        let Some(data_dir) =
            in_prepared_child("append_read_forward_drain_and_a_second_spool_is_refused")
        else {
            return;
        };
        let spool = Spool::open(&data_dir, 4, 1 << 20).unwrap();
        assert_eq!(spool.generation(), 1);
        let record = |n: u8| Record {
            tag: payload::TAG_LOGS,
            batch_key: [n; BATCH_KEY_LEN],
            payload: vec![n; 100],
        };
        spool.append(&record(1)).unwrap();
        spool.append(&record(2)).unwrap();
        assert_eq!(spool.metrics.pending_records.load(Ordering::Relaxed), 2);

        let Next::Entry(first, bytes) = spool.next().unwrap() else {
            panic!("the first record is there")
        };
        assert_eq!(
            (first.generation, first.seq, first.batch_key),
            (1, 1, [1; 16])
        );
        let r = spool.record_for(&first);
        assert_eq!(r.tag, payload::TAG_SPOOLED);
        let wrapped: payload::SpooledRecord = decode(&r.payload).unwrap();
        assert_eq!(
            (
                wrapped.origin,
                wrapped.generation,
                wrapped.seq,
                wrapped.min_live_generation
            ),
            (4, 1, 1, 1)
        );
        assert_eq!(wrapped.payload, vec![1; 100]);
        spool.mark_forwarded(&first, bytes).unwrap();
        let Next::Entry(second, bytes) = spool.next().unwrap() else {
            panic!("the second record is there")
        };
        assert_eq!(second.seq, 2);
        spool.mark_forwarded(&second, bytes).unwrap();
        assert!(matches!(spool.next().unwrap(), Next::Empty));
        assert_eq!(spool.metrics.pending_records.load(Ordering::Relaxed), 0);
        assert_eq!(spool.metrics.pending_bytes.load(Ordering::Relaxed), 0);
        let state: SpoolState = read_meta_file(&spool.dir, STATE_FILE).unwrap().unwrap();
        assert!(state.drained, "{state:?}");
        assert_eq!(state.forwarded.get(&1), Some(&2));

        // Full: refused with the pending size, nothing appended.
        let big = Record {
            payload: vec![0; 2 << 20],
            ..record(3)
        };
        assert!(matches!(spool.append(&big), Err(SpoolRefusal::Full { .. })));
        // Too large for a walrus block: handed back for the direct path.
        let huge = Record {
            payload: vec![0; MAX_ENTRY_BYTES + 1],
            ..record(4)
        };
        assert!(matches!(spool.append(&huge), Err(SpoolRefusal::TooLarge)));
        spool.append(&record(5)).unwrap();
        let state: SpoolState = read_meta_file(&spool.dir, STATE_FILE).unwrap().unwrap();
        assert!(!state.drained, "an append clears the drained mark first");

        let err = Spool::open(&data_dir, 5, 1 << 20).err().unwrap();
        assert!(err.contains("one spooled node per process"), "{err}");
    }
}
