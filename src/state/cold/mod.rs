//! The cold tier: records older than the hot window, in Parquet files under
//! `<data-dir>/cold/<signal>/`.
//!
//! Which files exist is replicated state: the [`ColdManifest`] lives in the
//! hot store's `meta` keyspace and changes only when a committed entry is
//! applied (a move, `TAG_COLD_MOVE`, adds a file; a retention cut drops files
//! wholly below its floors). The files themselves are local: every replica
//! writes the same bytes for the same move (the writer is deterministic and
//! the name comes from the signal and the move's log index), before the
//! batch that removes the records from the hot tier commits. A crash between
//! the two leaves the records in the hot tier and a file no manifest names:
//! re-applying the move rewrites it, and start-up removes such orphans.
//!
//! With the shared store (`--cold-store s3://...`, `objects.rs`) a move is
//! an upload instead (`TAG_COLD_UPLOAD`, [`ColdUpload`]): the leader writes
//! the object before it proposes the move, and the move names the records
//! the object holds; every replica deletes exactly those of them that it
//! still holds unchanged (see `state::hot::cold`). Apply never touches the
//! network. A crash before the commit leaves the records hot and the object
//! an orphan, which the leader removes after a grace period.
//!
//! `file.rs` writes and reads one file (columns, sort order, row groups,
//! pruning); `reads.rs` answers queries over every file of the manifest.

mod file;
pub mod objects;
mod reads;

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::file::{read_rows, read_rows_from, write_file, ColdRow, RowFilter};

/// The version of this build's cold file writer: raised whenever the same
/// rows would give other bytes (layout, encodings, row group sizes, the
/// parquet library's output), so members of a cluster that write their own
/// copies can tell they would differ (`cluster::retention`). 1: format 2
/// with row groups of 8,192 rows; 2: spans' row groups of 2,048.
pub const FILE_WRITER_VERSION: u32 = 2;
pub(crate) use self::reads::span_status_code;
pub use self::reads::{ColdFound, ColdReader};

/// Rows one move writes at most (one file): bounds the time a move holds
/// apply, and the memory a file's write and a full read of it take.
pub const MAX_ROWS_PER_MOVE: usize = 50_000;
/// Bytes of records one move takes at most (at least one record): spans
/// with large attributes reach it before [`MAX_ROWS_PER_MOVE`].
pub const MAX_RECORD_BYTES_PER_MOVE: usize = 128 * 1024 * 1024;
/// Cold files one retention cut drops at most (each counts its rows against
/// the cut's budget too).
pub const MAX_FILES_DROPPED_PER_CUT: usize = 16;

/// The signals the cold tier holds, one directory each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Spans,
    Logs,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Spans, Signal::Logs, Signal::Metrics];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Spans => "spans",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The wire code in a move record.
    pub fn code(self) -> u8 {
        match self {
            Signal::Spans => 0,
            Signal::Logs => 1,
            Signal::Metrics => 2,
        }
    }
}

/// One cold file, as the manifest lists it. Every field is computed the
/// same way on every replica (from the move and the rows it took).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdFile {
    pub signal: Signal,
    /// The log index of the move that wrote it (part of its name).
    pub log_index: u64,
    /// The move's range, `[from, to)` in unix nanoseconds.
    pub from_unix_nanos: u64,
    pub to_unix_nanos: u64,
    /// The oldest and newest record time in the file (inclusive).
    pub min_time_unix_nanos: u64,
    pub max_time_unix_nanos: u64,
    pub rows: u64,
    pub bytes: u64,
    /// A retention cut released the LLM payloads of this file's spans
    /// (the spans stay, with the payloads' hashes).
    #[serde(default)]
    pub llm_released: bool,
    /// The object holding it, relative to the shared store's prefix; `None`
    /// for a file every node keeps under its data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

impl ColdFile {
    pub fn file_name(&self) -> String {
        file_name(self.signal, self.log_index)
    }

    /// Where a local file lives (meaningless for an object).
    pub fn path(&self, cold_dir: &Path) -> PathBuf {
        cold_dir.join(self.signal.name()).join(self.file_name())
    }

    /// Whether the file may hold records in `[from, to]`.
    pub fn overlaps(&self, (from, to): (u64, u64)) -> bool {
        self.min_time_unix_nanos <= to && self.max_time_unix_nanos >= from
    }
}

/// The name of the file the move at `log_index` writes for `signal`.
pub fn file_name(signal: Signal, log_index: u64) -> String {
    format!("{}-{log_index:020}.parquet", signal.name())
}

/// Which ranges are cold: replicated, in the hot store's `meta`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdManifest {
    /// Every cold file, in the order the moves wrote them.
    pub files: Vec<ColdFile>,
    /// Signals whose last move stopped at [`MAX_ROWS_PER_MOVE`]: the leader
    /// proposes another at once.
    pub pending: BTreeSet<Signal>,
    /// The log index of the last move applied (0: none).
    pub last_move_index: u64,
}

impl ColdManifest {
    pub fn files_of(&self, signal: Signal) -> impl Iterator<Item = &ColdFile> + '_ {
        self.files.iter().filter(move |f| f.signal == signal)
    }
}

/// One signal's share of the cold tier (`GET /api/v1/storage`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ColdSignalStats {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    pub oldest_unix_nanos: Option<u64>,
    pub newest_unix_nanos: Option<u64>,
    /// The last move stopped at its limit; another follows.
    pub pending: bool,
}

/// The cold tier per signal, as the manifest lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ColdStats {
    pub spans: ColdSignalStats,
    pub logs: ColdSignalStats,
    pub metric_points: ColdSignalStats,
    pub last_move_index: u64,
    /// Files the manifest names that this node lacks (it installed a
    /// snapshot, which carries no cold files): reads of them fail.
    pub missing_files: Vec<String>,
}

impl ColdManifest {
    pub fn stats(&self) -> ColdStats {
        let of = |signal: Signal| {
            let mut s = ColdSignalStats {
                pending: self.pending.contains(&signal),
                ..Default::default()
            };
            for f in self.files_of(signal) {
                s.files += 1;
                s.rows += f.rows;
                s.bytes += f.bytes;
                s.oldest_unix_nanos = Some(
                    s.oldest_unix_nanos
                        .map_or(f.min_time_unix_nanos, |o| o.min(f.min_time_unix_nanos)),
                );
                s.newest_unix_nanos = Some(
                    s.newest_unix_nanos
                        .map_or(f.max_time_unix_nanos, |n| n.max(f.max_time_unix_nanos)),
                );
            }
            s
        };
        ColdStats {
            spans: of(Signal::Spans),
            logs: of(Signal::Logs),
            metric_points: of(Signal::Metrics),
            last_move_index: self.last_move_index,
            missing_files: Vec::new(),
        }
    }
}

/// The leader's decision to move one signal's records with times in
/// `[from, to)` to the cold tier (`TAG_COLD_MOVE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdMove {
    pub signal: Signal,
    pub from_unix_nanos: u64,
    pub to_unix_nanos: u64,
}

/// The leader's move of one signal's records to an object it already
/// uploaded (`TAG_COLD_UPLOAD`): the move as a [`ColdMove`] names it, what
/// the manifest lists for the object, and the records the object holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdUpload {
    pub signal: Signal,
    pub from_unix_nanos: u64,
    pub to_unix_nanos: u64,
    /// The object, relative to the store's prefix (`<signal>/<name>`).
    pub object: String,
    pub min_time_unix_nanos: u64,
    pub max_time_unix_nanos: u64,
    /// Rows and bytes of the object.
    pub rows: u64,
    pub bytes: u64,
    /// The leader's read stopped at the move's limit: records of the range
    /// remain, and another move follows.
    pub pending: bool,
    /// Every record in the object, by hot key, with the digest of the
    /// bytes the object holds for it. Apply deletes a record from the hot
    /// tier only while the hot tier holds exactly those bytes: a record
    /// replaced after the upload stays hot (and wins over the object's copy
    /// on reads, which prefer the hot tier).
    pub records: Vec<MovedRecord>,
}

/// One record of a [`ColdUpload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedRecord {
    pub key: Vec<u8>,
    pub digest: u64,
}

/// The digest of a stored record's bytes that a [`MovedRecord`] carries:
/// the first 8 bytes of their SHA-256.
pub fn record_digest(bytes: &[u8]) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

impl ColdUpload {
    /// Whether every replica can apply this upload as it stands (run on
    /// the decoded entry, so deterministic): the object under the signal's
    /// directory with a plain name, at most [`MAX_ROWS_PER_MOVE`] records,
    /// each key once and of the signal's length, times inside the range.
    pub fn check(&self, key_len: usize) -> Result<(), String> {
        let name_ok = self
            .object
            .strip_prefix(self.signal.name())
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|f| {
                f.ends_with(".parquet")
                    && !f.contains("..")
                    && f.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            });
        if !name_ok {
            return Err(format!("a cold upload names object {:?}", self.object));
        }
        if self.records.is_empty() || self.records.len() > MAX_ROWS_PER_MOVE {
            return Err(format!(
                "a cold upload carries {} records (1 to {MAX_ROWS_PER_MOVE})",
                self.records.len()
            ));
        }
        if self.rows != self.records.len() as u64 {
            return Err(format!(
                "a cold upload of {} rows lists {} records",
                self.rows,
                self.records.len()
            ));
        }
        if self.records.iter().any(|r| r.key.len() != key_len) {
            return Err(format!("a cold upload's keys are not all {key_len} bytes"));
        }
        let distinct: BTreeSet<&[u8]> = self.records.iter().map(|r| &r.key[..]).collect();
        if distinct.len() != self.records.len() {
            return Err("a cold upload lists a record twice".into());
        }
        let (from, to) = (self.from_unix_nanos, self.to_unix_nanos);
        let (min, max) = (self.min_time_unix_nanos, self.max_time_unix_nanos);
        if !((from..to).contains(&min) && (min..to).contains(&max)) {
            return Err(format!(
                "a cold upload's times [{min}, {max}] are not inside its range [{from}, {to})"
            ));
        }
        Ok(())
    }
}

/// Moves align their upper bound down to this: every move of one interval
/// names a round time, whatever the leader's clock read.
pub const MOVE_ALIGN_NANOS: u64 = 1_000_000_000;

impl ColdMove {
    /// The move a leader whose clock reads `now_unix_nanos` proposes for
    /// `signal` under `hot_window_secs` (everything older than the window).
    pub fn at(signal: Signal, now_unix_nanos: u64, hot_window_secs: u64) -> ColdMove {
        let to = now_unix_nanos.saturating_sub(hot_window_secs.saturating_mul(1_000_000_000));
        ColdMove {
            signal,
            from_unix_nanos: 0,
            to_unix_nanos: to - to % MOVE_ALIGN_NANOS,
        }
    }
}

/// Writes `bytes` to `path` durably: a temp file, fsync, rename, fsync of
/// the directory. A crash leaves the old file, the new one, or a temp file
/// that [`remove_orphans`] removes.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("a cold file has a directory");
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Removes every file under `cold_dir` that `manifest` does not name: files
/// of a move whose commit a crash prevented, temp files, files a retention
/// cut dropped, files of a store a snapshot install replaced. Returns how
/// many it removed.
pub fn remove_orphans(cold_dir: &Path, manifest: &ColdManifest) -> io::Result<usize> {
    let named: BTreeSet<PathBuf> = manifest.files.iter().map(|f| f.path(cold_dir)).collect();
    let mut removed = 0;
    for signal in Signal::ALL {
        let dir = cold_dir.join(signal.name());
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if !named.contains(&path) {
                tracing::info!(path = %path.display(), "removing cold file no manifest names");
                fs::remove_file(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_names_everything_older_than_the_window_on_a_round_second() {
        let now = 10_000 * MOVE_ALIGN_NANOS + 123;
        let m = ColdMove::at(Signal::Logs, now, 60);
        assert_eq!(m.to_unix_nanos, (10_000 - 60) * MOVE_ALIGN_NANOS);
        assert_eq!(m.from_unix_nanos, 0);
        assert_eq!(ColdMove::at(Signal::Logs, 5, 60).to_unix_nanos, 0);
    }

    fn upload() -> ColdUpload {
        ColdUpload {
            signal: Signal::Logs,
            from_unix_nanos: 0,
            to_unix_nanos: 100,
            object: "logs/logs-00000000000000000007-00ff.parquet".into(),
            min_time_unix_nanos: 10,
            max_time_unix_nanos: 20,
            rows: 2,
            bytes: 500,
            pending: false,
            records: vec![
                MovedRecord {
                    key: vec![1; 24],
                    digest: 1,
                },
                MovedRecord {
                    key: vec![2; 24],
                    digest: 2,
                },
            ],
        }
    }

    #[test]
    fn an_upload_every_replica_can_apply_passes_its_check() {
        assert_eq!(upload().check(24), Ok(()));
        let bad: Vec<(&str, Box<dyn Fn(&mut ColdUpload)>)> = vec![
            ("wrong key length", Box::new(|u| u.records[0].key.push(0))),
            ("a key twice", Box::new(|u| u.records[1].key = vec![1; 24])),
            ("rows differ", Box::new(|u| u.rows = 3)),
            (
                "no records",
                Box::new(|u| {
                    u.records.clear();
                    u.rows = 0;
                }),
            ),
            (
                "outside the range",
                Box::new(|u| u.max_time_unix_nanos = 100),
            ),
            (
                "another signal's directory",
                Box::new(|u| u.object = "spans/logs-1.parquet".into()),
            ),
            (
                "a path out of the prefix",
                Box::new(|u| u.object = "logs/../../x.parquet".into()),
            ),
        ];
        for (what, change) in bad {
            let mut u = upload();
            change(&mut u);
            assert!(u.check(24).is_err(), "{what} is refused");
        }
    }

    #[test]
    fn a_record_digest_tells_stored_bytes_apart() {
        assert_eq!(record_digest(b"abc"), record_digest(b"abc"));
        assert_ne!(record_digest(b"abc"), record_digest(b"abd"));
    }

    #[test]
    fn orphans_go_and_named_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let kept = ColdFile {
            signal: Signal::Spans,
            log_index: 7,
            from_unix_nanos: 0,
            to_unix_nanos: 10,
            min_time_unix_nanos: 1,
            max_time_unix_nanos: 9,
            rows: 1,
            bytes: 3,
            llm_released: false,
            object: None,
        };
        write_durably(&kept.path(dir.path()), b"abc").unwrap();
        let orphan = dir.path().join("spans").join(file_name(Signal::Spans, 8));
        write_durably(&orphan, b"x").unwrap();
        fs::write(dir.path().join("spans").join("y.tmp"), b"t").unwrap();
        let manifest = ColdManifest {
            files: vec![kept.clone()],
            ..Default::default()
        };
        assert_eq!(remove_orphans(dir.path(), &manifest).unwrap(), 2);
        assert!(kept.path(dir.path()).exists());
        assert!(!orphan.exists());
    }
}
