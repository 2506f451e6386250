//! The committed log id, kept durable beside the log (`save_committed`).
//!
//! With it, a restarted node re-applies its log up to what was committed
//! before the crash (openraft does so at start-up), so its state machine
//! never starts behind what it had applied, even when the state machine
//! itself lost an unsynced tail.
//!
//! Two rules keep it safe and cheap:
//! - It is written only once the log entry it names is durable here (or
//!   purged behind a snapshot): start-up re-applies up to it, so it must
//!   never name an entry a power cut could take away. A value that lags is
//!   harmless (less is re-applied; the leader brings the rest).
//! - It is written by its own thread, at most every
//!   [`MIN_WRITE_INTERVAL`], always the newest value: the writer thread and
//!   the appends it fsyncs never wait for it.
//!
//! File format: two 64-byte slots, written alternately in place and
//! fdatasynced. A slot holds `seq u64, present u8, term u64, node_id u64,
//! index u64, crc32c u32` (little endian), the CRC over the bytes before it.
//! A torn write damages only the slot being written; the other holds the
//! value before. Reading takes the valid slot with the higher `seq`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use super::meta_file::sync_dir;
use super::Shared;
use crate::types::{LeaderId, LogId};

pub const COMMITTED_FILE: &str = "committed";
const SLOT_BYTES: u64 = 64;
const SLOT_DATA_BYTES: usize = 8 + 1 + 8 + 8 + 8;
/// Bounds the fsyncs spent on the committed id: at most 50 a second.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(20);
/// How often a waiting persister looks again (the entry not yet durable,
/// or the store gone).
const POLL_INTERVAL: Duration = Duration::from_millis(5);
const IDLE_WAIT: Duration = Duration::from_millis(100);

fn encode_slot(seq: u64, committed: Option<LogId>) -> [u8; SLOT_BYTES as usize] {
    let mut b = [0u8; SLOT_BYTES as usize];
    b[..8].copy_from_slice(&seq.to_le_bytes());
    if let Some(c) = committed {
        b[8] = 1;
        b[9..17].copy_from_slice(&c.leader_id.term.to_le_bytes());
        b[17..25].copy_from_slice(&c.leader_id.node_id.to_le_bytes());
        b[25..33].copy_from_slice(&c.index.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b[..SLOT_DATA_BYTES]);
    b[SLOT_DATA_BYTES..SLOT_DATA_BYTES + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// `(seq, value)` of a slot whose checksum holds.
fn decode_slot(b: &[u8]) -> Option<(u64, Option<LogId>)> {
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let stored = u32::from_le_bytes(b[SLOT_DATA_BYTES..SLOT_DATA_BYTES + 4].try_into().unwrap());
    if stored != crc32c::crc32c(&b[..SLOT_DATA_BYTES]) {
        return None;
    }
    let value = match b[8] {
        0 => None,
        1 => Some(LogId::new(
            LeaderId {
                term: u64_at(9),
                node_id: u64_at(17),
            },
            u64_at(25),
        )),
        _ => return None,
    };
    Some((u64_at(0), value))
}

/// The file of two slots.
pub(crate) struct CommittedFile {
    file: File,
    /// The `seq` of the newest slot on disk.
    seq: u64,
}

impl CommittedFile {
    /// Opens (creating it durably if absent) and returns the stored value.
    pub fn open(dir: &Path) -> io::Result<(CommittedFile, Option<LogId>)> {
        let path = dir.join(COMMITTED_FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        if !existed {
            file.set_len(2 * SLOT_BYTES)?;
            file.sync_all()?;
            sync_dir(dir)?;
        }
        let mut bytes = vec![0u8; (2 * SLOT_BYTES) as usize];
        let len = file.metadata()?.len().min(2 * SLOT_BYTES) as usize;
        file.read_exact_at(&mut bytes[..len], 0)?;
        let newest = bytes
            .chunks(SLOT_BYTES as usize)
            .filter_map(decode_slot)
            .max_by_key(|(seq, _)| *seq);
        let (seq, value) = newest.unwrap_or((0, None));
        Ok((CommittedFile { file, seq }, value))
    }

    /// Writes `committed` into the older slot and fdatasyncs it.
    pub fn write(&mut self, committed: Option<LogId>) -> io::Result<()> {
        let seq = self.seq + 1;
        self.file
            .write_all_at(&encode_slot(seq, committed), (seq % 2) * SLOT_BYTES)?;
        self.file.sync_data()?;
        self.seq = seq;
        Ok(())
    }
}

#[derive(Default)]
struct Wanted {
    /// The newest value openraft saved.
    latest: Option<LogId>,
    /// The newest value on disk.
    written: Option<LogId>,
}

/// Hands committed ids to the persisting thread; the store keeps one.
pub(crate) struct CommittedPersister {
    wanted: Mutex<Wanted>,
    wake: Condvar,
}

impl CommittedPersister {
    /// Starts the thread that writes `file` for `shared`'s log. It stops
    /// once the log store is dropped.
    pub fn start(
        file: CommittedFile,
        recovered: Option<LogId>,
        shared: Weak<Shared>,
    ) -> io::Result<Arc<CommittedPersister>> {
        let persister = Arc::new(CommittedPersister {
            wanted: Mutex::new(Wanted {
                latest: recovered,
                written: recovered,
            }),
            wake: Condvar::new(),
        });
        let p = persister.clone();
        std::thread::Builder::new()
            .name("raft-committed".into())
            .spawn(move || p.run(file, shared))?;
        Ok(persister)
    }

    pub fn save(&self, committed: Option<LogId>) {
        let mut w = self.wanted.lock().unwrap();
        if committed > w.latest {
            w.latest = committed;
            self.wake.notify_one();
        }
    }

    pub fn latest(&self) -> Option<LogId> {
        self.wanted.lock().unwrap().latest
    }

    pub fn written(&self) -> Option<LogId> {
        self.wanted.lock().unwrap().written
    }

    fn run(&self, mut file: CommittedFile, shared: Weak<Shared>) {
        loop {
            let target = {
                let w = self.wanted.lock().unwrap();
                let (w, _) = self
                    .wake
                    .wait_timeout_while(w, IDLE_WAIT, |w| w.latest == w.written)
                    .unwrap();
                (w.latest != w.written).then_some(w.latest)
            };
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let Some(target) = target else {
                continue;
            };
            if !is_durable(&shared, target) {
                drop(shared);
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
            drop(shared);
            if let Err(e) = file.write(target) {
                // Only re-application at start-up is lost: the value on
                // disk stays an older, still true one.
                tracing::error!(error = %e, "writing the committed log id failed; no longer persisting it");
                return;
            }
            self.wanted.lock().unwrap().written = target;
            std::thread::sleep(MIN_WRITE_INTERVAL);
        }
    }
}

/// True when the entry `committed` names survives a power cut here: fsynced
/// (its slot has a place on disk, set only after the fsync) or purged
/// behind a snapshot.
fn is_durable(shared: &Shared, committed: Option<LogId>) -> bool {
    let Some(c) = committed else {
        return true;
    };
    let index = shared.index.lock().unwrap();
    if index.purged.is_some_and(|p| p.index >= c.index) {
        return true;
    }
    index
        .get(c.index)
        .is_some_and(|slot| slot.log_id == c && slot.loc.is_some())
}

/// The value recovered at start-up, if the log still holds what it names.
/// Anything else (the log was discarded and rebuilt from peers) is ignored:
/// start-up could not re-apply up to it.
pub(crate) fn usable(recovered: Option<LogId>, shared: &Shared) -> Option<LogId> {
    let c = recovered?;
    if is_durable(shared, Some(c)) {
        Some(c)
    } else {
        tracing::warn!(committed = %c, "the saved committed log id names an entry this log does not hold; ignoring it");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(LeaderId { term, node_id: 2 }, index)
    }

    #[test]
    fn the_newest_intact_slot_wins_and_a_torn_one_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, v) = CommittedFile::open(dir.path()).unwrap();
        assert_eq!(v, None);
        f.write(Some(id(1, 5))).unwrap();
        f.write(Some(id(2, 9))).unwrap();
        drop(f);
        let (mut f, v) = CommittedFile::open(dir.path()).unwrap();
        assert_eq!(v, Some(id(2, 9)));
        f.write(Some(id(2, 12))).unwrap();
        drop(f);
        assert_eq!(CommittedFile::open(dir.path()).unwrap().1, Some(id(2, 12)));

        // Tear the newest slot: the one before it is read.
        let path = dir.path().join(COMMITTED_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // Three writes: seq 3 went to slot 3 % 2 = 1.
        let newest = SLOT_BYTES as usize;
        bytes[newest + 26] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(CommittedFile::open(dir.path()).unwrap().1, Some(id(2, 9)));
    }
}
