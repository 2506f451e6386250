//! The durable Raft log: segment files of framed WAL records.
//!
//! `append` indexes the entries in memory (so they are readable at once, as
//! openraft requires) and hands the frames to the writer thread, which
//! group-commits them and fires the callback after the fsync. Reads come from a
//! bounded cache of recent frames or from the segment files.
//!
//! Directory layout: `seg-<first index>.v2.wal` segments (batches of frames,
//! see `batch`; zero-filled beyond their data when preallocated), possibly
//! older `seg-<first index>.wal` segments of format 1 (read, never written),
//! `vote`, `purged`, `committed` (see `committed`), and at most one
//! `segment.spare` being readied for the next segment.
//!
//! Start-up recovery cuts a torn write off the end of the log only when it
//! lies after the last fsync; damage before it refuses to start (see
//! `recovery`).

mod batch;
mod committed;
mod index;
mod inspect;
mod meta_file;
mod power_loss;
mod prealloc;
mod recovery;
mod writer;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use tokio::sync::{mpsc, oneshot};

use self::committed::{CommittedFile, CommittedPersister};
use self::index::{Loc, LogIndex, Slot};
pub use self::inspect::{inspect, FrameAt, Inspection};
pub use self::meta_file::{
    read as read_meta_file, sync_dir, write_atomic as write_meta_file_atomic,
};
pub use self::prealloc::written_len;
pub use self::recovery::{LogDamage, NotTorn};
use self::writer::{Command, Writer, PURGED_FILE, VOTE_FILE};
use crate::frame;
use crate::types::{Entry, LogId, TypeConfig, Vote};

#[derive(Clone, Debug)]
pub struct LogStoreOptions {
    /// A segment is closed and a new one started beyond this size.
    pub segment_max_bytes: u64,
    /// Upper bound on recent frames kept in memory for replication.
    pub cache_max_bytes: usize,
    /// Upper bound on bytes of frames queued into one group commit (a batch
    /// may exceed it by its last command).
    pub max_write_batch_bytes: usize,
    /// Upper bound on commands queued for the writer.
    pub queue_depth: usize,
    /// Off unless built with the `fault-injection` feature and asked for.
    pub faults: LogFaults,
    /// How records are protected (`--log-integrity`).
    pub integrity: frame::RecordIntegrity,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            segment_max_bytes: 64 * 1024 * 1024,
            cache_max_bytes: 64 * 1024 * 1024,
            max_write_batch_bytes: 16 * 1024 * 1024,
            queue_depth: 4096,
            faults: LogFaults::default(),
            integrity: frame::RecordIntegrity::default(),
        }
    }
}

/// Deliberate defects and fault simulation, for proving the fault harness
/// catches what it must. Only the `fault-injection` cargo feature can switch
/// them on; a normal build has no way to.
#[derive(Clone, Debug, Default)]
pub struct LogFaults {
    /// Never fsync appended entries (acknowledges writes a power cut loses).
    #[cfg(feature = "fault-injection")]
    pub skip_fsync: bool,
    /// Keep the vote in memory only (a restarted node can vote twice in a term).
    #[cfg(feature = "fault-injection")]
    pub vote_in_memory_only: bool,
    /// Simulated power loss: remember how much of each segment was fsynced,
    /// and on open cut every segment back to that, as a power cut would.
    #[cfg(feature = "fault-injection")]
    pub simulate_power_loss: bool,
    /// The old recovery defect: damage before the durable mark is taken for
    /// a torn tail and cut off, so the node starts with a shorter log than
    /// it acknowledged instead of refusing.
    #[cfg(feature = "fault-injection")]
    pub cut_durable_log: bool,
}

impl LogFaults {
    #[inline]
    pub fn skip_fsync(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.skip_fsync;
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    #[inline]
    pub fn vote_in_memory_only(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.vote_in_memory_only;
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    #[inline]
    pub fn cut_durable_log(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.cut_durable_log;
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    #[inline]
    pub fn simulate_power_loss(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.simulate_power_loss;
        #[cfg(not(feature = "fault-injection"))]
        false
    }
}

/// Counters for operators: exported on `/metrics` and in `status`.
#[derive(Debug, Default)]
pub struct LogStoreStats {
    pub torn_tail_repairs: AtomicU64,
    pub torn_tail_bytes: AtomicU64,
    pub bytes_written: AtomicU64,
    pub entries_appended: AtomicU64,
    pub fsync_latency: crate::histogram::LatencyHistogram,
}

impl LogStoreStats {
    fn record_fsync(&self, took: Duration, bytes: usize) {
        self.fsync_latency.record(took);
        self.bytes_written
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// State shared by the store handles and the writer thread.
pub(crate) struct Shared {
    dir: PathBuf,
    index: Mutex<LogIndex>,
    /// Read handles by segment first index; a removed segment stays readable
    /// through handles already taken.
    files: Mutex<BTreeMap<u64, Arc<File>>>,
    vote: Mutex<Option<Vote>>,
    cache_max_bytes: usize,
    pub(crate) stats: LogStoreStats,
    pub(crate) fault: LogFaults,
    integrity: frame::RecordIntegrity,
    /// Bytes in segment files, published by the writer after each batch.
    pub(crate) disk_bytes: AtomicU64,
}

/// Handle to the durable log; cheap to clone (it is also the log reader).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    committed: Arc<CommittedPersister>,
    /// The committed log id saved before this start, if the log holds it.
    recovered_committed: Option<LogId>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, scanning and repairing its tail.
    pub fn open(dir: &Path, opts: LogStoreOptions) -> io::Result<LogStore> {
        fs::create_dir_all(dir)?;
        if opts.faults.simulate_power_loss() {
            power_loss::drop_unsynced(dir)?;
        }
        let vote: Option<Vote> = meta_file::read(dir, VOTE_FILE)?;
        let (committed_file, saved_committed) = CommittedFile::open(dir)?;
        let purged: Option<LogId> = meta_file::read::<Option<LogId>>(dir, PURGED_FILE)?.flatten();
        let recovered = recovery::recover(dir, purged, &opts.integrity, &opts.faults)?;
        // Plain text in the message: tools compare this with what the log
        // held before the node stopped (a shorter log than it proved
        // durable is a lost acknowledged entry).
        let last_index = recovered.index.last_log_id().map(|l| l.index);
        tracing::info!(
            "raft log opened: last index {}, torn tail bytes cut {}",
            last_index.map_or("none".to_string(), |i| i.to_string()),
            recovered.torn_tail_bytes
        );

        let mut files = BTreeMap::new();
        let mut legacy = std::collections::BTreeSet::new();
        for (&first, path) in &recovered.paths {
            files.insert(first, Arc::new(File::open(path)?));
            if recovery::is_legacy(path) {
                legacy.insert(first);
            }
        }
        let stats = LogStoreStats::default();
        if recovered.torn_tail_bytes > 0 {
            stats.torn_tail_repairs.fetch_add(1, Ordering::Relaxed);
            stats
                .torn_tail_bytes
                .fetch_add(recovered.torn_tail_bytes, Ordering::Relaxed);
        }
        let first_index_if_empty = recovered.index.next_index();
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            index: Mutex::new(recovered.index),
            files: Mutex::new(files),
            vote: Mutex::new(vote),
            cache_max_bytes: opts.cache_max_bytes,
            stats,
            fault: opts.faults.clone(),
            integrity: opts.integrity.clone(),
            disk_bytes: AtomicU64::new(recovered.segments.values().sum()),
        });
        let writer = Writer::new(
            shared.clone(),
            recovered.segments,
            legacy,
            first_index_if_empty,
            opts.segment_max_bytes,
            opts.max_write_batch_bytes,
        )?;
        let recovered_committed = committed::usable(saved_committed, &shared);
        let committed = CommittedPersister::start(
            committed_file,
            recovered_committed,
            Arc::downgrade(&shared),
        )?;
        let (tx, rx) = mpsc::channel(opts.queue_depth);
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(LogStore {
            shared,
            tx,
            committed,
            recovered_committed,
        })
    }

    /// The committed log id saved before this start (start-up re-applies
    /// the log up to it). A node is not ready before it applied this far.
    pub fn recovered_committed(&self) -> Option<LogId> {
        self.recovered_committed
    }

    /// The committed log id on disk now (it trails the saved one by at
    /// most the time its entry takes to become durable, plus
    /// `committed::MIN_WRITE_INTERVAL`).
    pub fn durable_committed(&self) -> Option<LogId> {
        self.committed.written()
    }

    pub fn stats(&self) -> &LogStoreStats {
        &self.shared.stats
    }

    /// Bytes the log occupies on disk (all segments, purged entries included
    /// until their segment is deleted).
    pub fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes.load(Ordering::Relaxed)
    }

    /// How this log protects its records; peers' appends are checked the same way.
    pub fn integrity(&self) -> &frame::RecordIntegrity {
        &self.shared.integrity
    }

    pub fn faults(&self) -> &LogFaults {
        &self.shared.fault
    }

    /// Frame bytes of the entries after `index`: how much log a state
    /// machine applied up to `index` still has to apply.
    pub fn bytes_after(&self, index: u64) -> u64 {
        self.shared.index.lock().unwrap().bytes_after(index)
    }

    /// Last log id and purge point, without going through openraft.
    pub fn bounds(&self) -> (Option<LogId>, Option<LogId>) {
        let index = self.shared.index.lock().unwrap();
        (index.purged, index.last_log_id())
    }

    async fn send(&self, cmd: Command) -> io::Result<()> {
        self.tx
            .send(cmd)
            .await
            .map_err(|_| io::Error::other("raft log writer has stopped"))
    }

    /// Waits until every command sent before it is done and durable;
    /// reports the writer's failure, if any.
    pub async fn barrier(&self) -> io::Result<()> {
        self.call(|done| Command::Barrier { done }).await
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Command,
    ) -> io::Result<()> {
        let (done, rx) = oneshot::channel();
        self.send(make(done)).await?;
        rx.await
            .map_err(|_| io::Error::other("raft log writer has stopped"))?
    }

    fn read_frames(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        enum Src {
            Mem(Arc<Vec<u8>>),
            Disk(Loc),
        }
        let sources: Vec<(LogId, Src)> = {
            let index = self.shared.index.lock().unwrap();
            index
                .range(start, end)
                .map(|s: &Slot| {
                    let src = match (&s.frame, s.loc) {
                        (Some(f), _) => Src::Mem(f.clone()),
                        (None, Some(loc)) => Src::Disk(loc),
                        (None, None) => unreachable!("an unwritten slot always holds its frame"),
                    };
                    (s.log_id, src)
                })
                .collect()
        };
        let mut out = Vec::with_capacity(sources.len());
        let mut buf = Vec::new();
        for (log_id, src) in sources {
            let bytes: &[u8] = match &src {
                Src::Mem(f) => f,
                Src::Disk(loc) => {
                    let file = self
                        .shared
                        .files
                        .lock()
                        .unwrap()
                        .get(&loc.segment)
                        .cloned()
                        .ok_or_else(|| {
                            io::Error::other(format!(
                                "log segment {} vanished while reading {log_id}",
                                loc.segment
                            ))
                        })?;
                    buf.resize(loc.len as usize, 0);
                    file.read_exact_at(&mut buf, loc.offset)?;
                    &buf
                }
            };
            let (_, entry) = frame::decode_entry(bytes, &self.shared.integrity).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("log entry {log_id} failed its check on read: {e}"),
                )
            })?;
            debug_assert_eq!(entry.log_id, log_id);
            out.push(entry);
        }
        Ok(out)
    }
}

fn range_to_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_to_bounds(&range);
        let store = self.clone();
        // Disk reads and checksums off the async workers.
        tokio::task::spawn_blocking(move || store.read_frames(start, end))
            .await
            .map_err(io::Error::other)?
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(*self.shared.vote.lock().unwrap())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let (last_purged_log_id, last_log_id) = self.bounds();
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Never waits for the disk: the value is written by its own thread
    /// once the entry it names is durable (see `committed`).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.committed.save(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.committed.latest())
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        self.call(|done| Command::SaveVote { vote, done }).await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let frames: Vec<(LogId, Arc<Vec<u8>>)> = entries
            .into_iter()
            .map(|e| {
                (
                    e.log_id,
                    Arc::new(frame::encode_entry(&e, &self.shared.integrity)),
                )
            })
            .collect();
        {
            let mut index = self.shared.index.lock().unwrap();
            for (log_id, f) in &frames {
                index.push(Slot {
                    log_id: *log_id,
                    loc: None,
                    frame: Some(f.clone()),
                });
            }
        }
        self.shared
            .stats
            .entries_appended
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        self.send(Command::Append { frames, callback }).await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.call(|done| Command::TruncateAfter {
            keep_upto: last_log_id,
            done,
        })
        .await
    }

    /// Queues the purge and returns without waiting for it. The raft core
    /// awaits this call, and a purge first waits for every earlier append's
    /// fsync and then fsyncs twice itself: on a disk that stalls for a
    /// second, waiting would stop the core, and with it a leader's
    /// heartbeats, long enough for its followers to start an election. The
    /// writer runs the purge in order with everything else (so the log never
    /// has a hole: later commands see it done); the in-memory index
    /// forgets the entries at once. A failed purge
    /// stops the writer like any I/O error, and the next append or vote
    /// reports it.
    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // In memory at once, as `append` indexes at once: entries appended
        // after this call follow the purge point.
        self.shared.index.lock().unwrap().purge(log_id);
        let (done, _not_awaited) = oneshot::channel();
        self.send(Command::Purge { upto: log_id, done }).await
    }
}

#[cfg(test)]
mod tests;
