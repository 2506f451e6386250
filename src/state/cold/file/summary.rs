//! What pruning needs of a cold file (its footer and its trace-id bloom
//! filters), kept in memory across reads: a trace by id must rule out
//! every file of the tier, and re-reading each file's footer and bloom
//! filters for every query cost more than the rest of the read.
//!
//! A file never changes once written (its name is its move's log index, and
//! a rewrite after a crash writes the same bytes), but every use still
//! checks it with one `stat`: a file this node lacks must stay an error
//! (see `reads.rs`), and an entry whose file's length or modification time
//! differs is loaded afresh.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::{format_of, pq, Columns};
use crate::state::hot::StoreResult;

/// Bytes of summaries kept at most: a file of `MAX_ROWS_PER_MOVE` spans
/// takes some tens of KiB (footer and bloom filters), so over a thousand
/// files.
const MAX_CACHED_SUMMARY_BYTES: usize = 64 << 20;

/// Which file a summary was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    len: u64,
    modified: Option<SystemTime>,
}

/// One file's footer and trace-id bloom filters.
pub(super) struct Summary {
    pub meta: ParquetMetaData,
    pub columns: &'static Columns,
    /// The trace-id column's bloom filter of each row group.
    pub trace_blooms: Vec<Option<Sbbf>>,
    identity: Identity,
    bytes: usize,
}

struct Entry {
    summary: Arc<Summary>,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<PathBuf, Entry>,
    bytes: usize,
    clock: u64,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Default::default);

impl Cache {
    fn get(&mut self, path: &Path, identity: Identity) -> Option<Arc<Summary>> {
        self.clock += 1;
        let entry = self.entries.get_mut(path)?;
        if entry.summary.identity != identity {
            return None;
        }
        entry.last_used = self.clock;
        Some(entry.summary.clone())
    }

    /// Keeps `summary`, dropping the least recently used beyond the bound.
    fn insert(&mut self, path: PathBuf, summary: Arc<Summary>) {
        self.clock += 1;
        let added = Entry {
            summary,
            last_used: self.clock,
        };
        self.bytes += added.summary.bytes;
        if let Some(old) = self.entries.insert(path, added) {
            self.bytes -= old.summary.bytes;
        }
        while self.bytes > MAX_CACHED_SUMMARY_BYTES && self.entries.len() > 1 {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(p, _)| p.clone())
                .expect("more than one entry");
            let gone = self.entries.remove(&oldest).expect("present");
            self.bytes -= gone.summary.bytes;
        }
    }
}

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    // A panic while the lock was held left at worst a stale byte count.
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The summary of the file at `path`, from memory when the file is the one
/// it was read from. A missing file is an `Io` error (`NotFound`).
pub(super) fn get(path: &Path) -> StoreResult<Arc<Summary>> {
    let stat = fs::metadata(path)?;
    let identity = Identity {
        len: stat.len(),
        modified: stat.modified().ok(),
    };
    if let Some(s) = cache().get(path, identity) {
        return Ok(s);
    }
    let summary = Arc::new(load(path, identity)?);
    cache().insert(path.to_path_buf(), summary.clone());
    Ok(summary)
}

fn load(path: &Path, identity: Identity) -> StoreResult<Summary> {
    let file = fs::File::open(path)?;
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(pq)?;
    let columns = format_of(&meta)?;
    let trace_blooms = meta
        .row_groups()
        .iter()
        .map(|rg| Sbbf::read_from_column_chunk(rg.column(columns.trace_id), &file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(pq)?;
    let bytes = meta.memory_size()
        + trace_blooms
            .iter()
            .flatten()
            .map(|b| b.num_blocks() * 32)
            .sum::<usize>();
    Ok(Summary {
        meta,
        columns,
        trace_blooms,
        identity,
        bytes,
    })
}

#[cfg(test)]
pub(super) fn cached(path: &Path) -> bool {
    cache().entries.contains_key(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(bytes: usize) -> Arc<Summary> {
        Arc::new(Summary {
            meta: ParquetMetaData::new(
                parquet::file::metadata::FileMetaData::new(
                    2,
                    0,
                    None,
                    None,
                    Arc::new(parquet::schema::types::SchemaDescriptor::new(Arc::new(
                        parquet::schema::parser::parse_message_type("message m {}").unwrap(),
                    ))),
                    None,
                ),
                Vec::new(),
            ),
            columns: &super::super::FORMAT_2,
            trace_blooms: Vec::new(),
            identity: Identity {
                len: 1,
                modified: None,
            },
            bytes,
        })
    }

    #[test]
    fn the_least_recently_used_summary_goes_beyond_the_bound() {
        let mut c = Cache::default();
        let id = Identity {
            len: 1,
            modified: None,
        };
        let third = MAX_CACHED_SUMMARY_BYTES / 3 + 1;
        c.insert("a".into(), summary(third));
        c.insert("b".into(), summary(third));
        assert!(c.get(Path::new("a"), id).is_some(), "a is now the newer");
        c.insert("c".into(), summary(third));
        assert!(c.get(Path::new("b"), id).is_none(), "b went");
        assert!(c.get(Path::new("a"), id).is_some());
        assert!(c.bytes <= MAX_CACHED_SUMMARY_BYTES);
        assert_eq!(c.bytes, 2 * third);
        let other = Identity { len: 2, ..id };
        assert!(c.get(Path::new("a"), other).is_none(), "a changed file");
    }
}
