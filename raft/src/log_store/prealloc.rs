//! Zero-filled spare segments, prepared off the writer thread.
//!
//! An `fdatasync` after an append that grows a file must also commit the
//! file's new size through the filesystem journal, and on ext4 (ordered
//! mode) that commit waits for other files' pending data: a storage engine
//! flushing a table on the same disk can hold a log fsync for most of a
//! second. Overwriting blocks that were already written and synced changes
//! nothing the data depends on, so its fsync is a plain data write. So the
//! writer appends into segments that were created at full size, zero-filled
//! and synced ahead of time by this thread; it renames the spare into place
//! when it starts a new segment. The zeros after the last frame read as the
//! end of the log (see `recovery`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

/// The ready spare. Not a `.wal` name: recovery never reads it as log.
pub const SPARE_FILE: &str = "segment.spare";
/// A spare being written; never used.
const SPARE_TMP_FILE: &str = "segment.spare.tmp";
const ZERO_CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Preparing,
    Ready,
}

/// Keeps at most one spare segment of `size_bytes` ready in `dir`.
pub struct Spares {
    dir: PathBuf,
    size_bytes: u64,
    state: Arc<Mutex<State>>,
    wake: SyncSender<()>,
}

impl Spares {
    /// Starts the preparing thread; it stops when this handle is dropped.
    /// Nothing is prepared until [`Spares::request`].
    pub fn start(dir: &Path, size_bytes: u64) -> io::Result<Spares> {
        debug_assert!(size_bytes > 0);
        // A spare left by an earlier run may be incomplete or unsynced.
        for name in [SPARE_TMP_FILE, SPARE_FILE] {
            match fs::remove_file(dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let state = Arc::new(Mutex::new(State::Idle));
        let (wake, requests) = sync_channel::<()>(1);
        let (thread_dir, thread_state) = (dir.to_path_buf(), state.clone());
        std::thread::Builder::new()
            .name("raft-log-prealloc".into())
            .spawn(move || {
                for () in requests {
                    let next = match prepare(&thread_dir, size_bytes) {
                        Ok(()) => State::Ready,
                        Err(e) => {
                            // The writer falls back to growing segments.
                            tracing::warn!(dir = %thread_dir.display(), error = %e, "preparing a spare log segment");
                            State::Idle
                        }
                    };
                    *thread_state.lock().unwrap() = next;
                }
            })?;
        Ok(Spares {
            dir: dir.to_path_buf(),
            size_bytes,
            state,
            wake,
        })
    }

    /// Asks for a spare unless one is ready or on its way.
    pub fn request(&self) {
        let mut state = self.state.lock().unwrap();
        if *state == State::Idle {
            *state = State::Preparing;
            let sent = self.wake.try_send(());
            debug_assert!(sent.is_ok(), "one request at a time");
        }
    }

    pub fn is_ready(&self) -> bool {
        *self.state.lock().unwrap() == State::Ready
    }

    /// Moves the ready spare to `path` and returns its size, or `None` when
    /// no spare is ready. The caller syncs the directory.
    pub fn take_into(&self, path: &Path) -> io::Result<Option<u64>> {
        let mut state = self.state.lock().unwrap();
        if *state != State::Ready {
            return Ok(None);
        }
        *state = State::Idle;
        fs::rename(self.dir.join(SPARE_FILE), path)?;
        Ok(Some(self.size_bytes))
    }
}

unsafe extern "C" {
    fn sync_file_range(fd: i32, offset: i64, nbytes: i64, flags: u32) -> i32;
}
const SYNC_FILE_RANGE_WAIT_BEFORE: u32 = 1;
const SYNC_FILE_RANGE_WRITE: u32 = 2;
const SYNC_FILE_RANGE_WAIT_AFTER: u32 = 4;

/// Writes `size_bytes` of zeros, syncs them, and publishes the file as the
/// spare.
///
/// Each chunk is written back, and waited for, before the next: left to one
/// final fsync, the whole segment would reach the disk queue at once and the
/// log's own small fsyncs would wait behind it.
fn prepare(dir: &Path, size_bytes: u64) -> io::Result<()> {
    let tmp = dir.join(SPARE_TMP_FILE);
    let mut file = File::create(&tmp)?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut offset = 0u64;
    while offset < size_bytes {
        let n = (size_bytes - offset).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all(&zeros[..n])?;
        write_back(&file, offset, n as u64)?;
        offset += n as u64;
    }
    file.sync_all()?;
    fs::rename(&tmp, dir.join(SPARE_FILE))
}

/// Starts writeback of `[offset, offset + len)` and waits for it. Not a
/// durability point (no metadata, no device flush): `sync_all` is.
fn write_back(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: the descriptor is open for the whole call; sync_file_range(2)
    // touches no memory of ours.
    let rc = unsafe { sync_file_range(file.as_raw_fd(), offset as i64, len as i64, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Length of `buf` without its trailing zeros: where written data ends in a
/// preallocated segment (for tools and tests that damage a segment's data).
pub fn written_len(buf: &[u8]) -> usize {
    buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_spare_is_zero_filled_at_full_size_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::start(dir.path(), 3 * 1024 * 1024 + 5).unwrap();
        let target = dir.path().join("seg.wal");
        assert_eq!(
            spares.take_into(&target).unwrap(),
            None,
            "nothing asked yet"
        );
        spares.request();
        for _ in 0..500 {
            if spares.is_ready() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            spares.take_into(&target).unwrap(),
            Some(3 * 1024 * 1024 + 5)
        );
        let bytes = fs::read(&target).unwrap();
        assert_eq!(bytes.len(), 3 * 1024 * 1024 + 5);
        assert_eq!(written_len(&bytes), 0);
        assert_eq!(spares.take_into(&target).unwrap(), None, "taken once");
        assert!(!dir.path().join(SPARE_FILE).exists());
    }

    #[test]
    fn written_len_ignores_trailing_zeros_only() {
        assert_eq!(written_len(&[]), 0);
        assert_eq!(written_len(&[0, 0]), 0);
        assert_eq!(written_len(&[1, 0, 2, 0, 0]), 3);
    }
}
