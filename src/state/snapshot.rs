//! The state machine's snapshot file: a consistent export of every keyspace.
//!
//! ```text
//! "TAELSNP1"
//! u32 LE meta_len, meta (JSON SnapshotMeta)
//! records: u8 keyspace, u32 LE key_len, key, u32 LE value_len, value
//! u8 0xFF end marker
//! u32 LE CRC32C of everything before it
//! ```
//!
//! Written to a temporary name, fsynced, renamed, directory fsynced.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use fjall::Readable;
use tael_consensus::log_store::sync_dir;
use tael_consensus::SnapshotMeta;

use super::hot::{HotStore, StoreError, StoreResult, KEYSPACES};

const MAGIC: &[u8; 8] = b"TAELSNP1";
const END: u8 = 0xFF;
// A record's first byte is its keyspace's position, or END.
const _: () = assert!(KEYSPACES.len() < END as usize);
/// Bounds that no valid snapshot exceeds; larger values mean a damaged file.
const MAX_META_BYTES: u32 = 64 * 1024 * 1024;
const MAX_KEY_BYTES: u32 = 64 * 1024;
const MAX_VALUE_BYTES: u32 = 512 * 1024 * 1024;
/// Entries per write batch while importing.
const IMPORT_BATCH_ENTRIES: usize = 20_000;

struct CrcWriter<W: Write> {
    inner: W,
    crc: u32,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct CrcReader<R: Read> {
    inner: R,
    crc: u32,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("snapshot {}: {why}", path.display()))
}

/// Writes `view` of `store` to `path` (atomically) and returns its size.
pub fn export(
    store: &HotStore,
    view: &fjall::Snapshot,
    meta: &SnapshotMeta,
    path: &Path,
) -> StoreResult<u64> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp)?;
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        crc: 0,
    };
    w.write_all(MAGIC)?;
    let meta_json = serde_json::to_vec(meta).expect("snapshot meta serializes");
    w.write_all(&(meta_json.len() as u32).to_le_bytes())?;
    w.write_all(&meta_json)?;
    for (i, ks) in store.keyspaces.in_snapshot_order().into_iter().enumerate() {
        for g in view.iter(ks) {
            let (k, v) = g.into_inner()?;
            w.write_all(&[i as u8])?;
            w.write_all(&(k.len() as u32).to_le_bytes())?;
            w.write_all(&k)?;
            w.write_all(&(v.len() as u32).to_le_bytes())?;
            w.write_all(&v)?;
        }
    }
    w.write_all(&[END])?;
    let crc = w.crc;
    let mut buf = w.inner;
    buf.write_all(&crc.to_le_bytes())?;
    let file = buf.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let len = file.metadata()?.len();
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().expect("snapshot path has a directory"))?;
    Ok(len)
}

/// Reads only the meta of a snapshot file.
pub fn read_meta(path: &Path) -> StoreResult<SnapshotMeta> {
    let mut r = BufReader::new(File::open(path)?);
    read_header(&mut r, path)
}

fn read_header(r: &mut impl Read, path: &Path) -> StoreResult<SnapshotMeta> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(corrupt(path, "not a tael-raft snapshot (bad magic)"));
    }
    let len = read_u32(r)?;
    if len > MAX_META_BYTES {
        return Err(corrupt(path, format!("meta of {len} bytes")));
    }
    let mut meta = vec![0u8; len as usize];
    r.read_exact(&mut meta)?;
    serde_json::from_slice(&meta).map_err(|e| corrupt(path, e))
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Loads a snapshot file into an empty store and verifies its checksum. The
/// caller discards `into` if this fails.
pub fn import(path: &Path, into: &HotStore) -> StoreResult<SnapshotMeta> {
    let mut r = CrcReader {
        inner: BufReader::with_capacity(1 << 20, File::open(path)?),
        crc: 0,
    };
    let meta = read_header(&mut r, path)?;
    // The file brings its own trace marks, or (written before marks
    // existed) none: then they are backfilled below.
    into.forget_trace_marks_complete()?;
    let mut batch = into.db.batch();
    let mut in_batch = 0;
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        if tag[0] == END {
            break;
        }
        let ks = into
            .keyspaces
            .by_snapshot_position(tag[0] as usize)
            .ok_or_else(|| corrupt(path, format!("keyspace {}", tag[0])))?;
        let klen = read_u32(&mut r)?;
        if klen > MAX_KEY_BYTES {
            return Err(corrupt(path, format!("key of {klen} bytes")));
        }
        let mut k = vec![0u8; klen as usize];
        r.read_exact(&mut k)?;
        let vlen = read_u32(&mut r)?;
        if vlen > MAX_VALUE_BYTES {
            return Err(corrupt(path, format!("value of {vlen} bytes")));
        }
        let mut v = vec![0u8; vlen as usize];
        r.read_exact(&mut v)?;
        batch.insert(ks, k, v);
        in_batch += 1;
        if in_batch >= IMPORT_BATCH_ENTRIES {
            batch.commit()?;
            batch = into.db.batch();
            in_batch = 0;
        }
    }
    let computed = r.crc;
    let stored = read_u32(&mut r.inner)?;
    if computed != stored {
        return Err(corrupt(
            path,
            format!("checksum mismatch: stored {stored:#x}, computed {computed:#x}"),
        ));
    }
    let mut trailing = [0u8; 1];
    if r.inner.read(&mut trailing)? != 0 {
        return Err(corrupt(path, "trailing bytes after the checksum"));
    }
    batch.commit()?;
    into.backfill_trace_marks()?;
    into.backfill_blob_refs()?;
    into.backfill_rollups()?;
    into.persist()?;
    Ok(meta)
}

pub fn snapshot_file_name(meta: &SnapshotMeta) -> PathBuf {
    let (term, node, index) = meta.last_log_id.map_or((0, 0, 0), |l| {
        (l.leader_id.term, l.leader_id.node_id, l.index)
    });
    PathBuf::from(format!("snap-{index:020}-{term}-{node}.snap"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LogRecord, MetricPoint, MetricType, Severity};
    use crate::state::hot::{LogQuery, MetricQuery};

    fn log(i: u64) -> LogRecord {
        LogRecord {
            timestamp_unix_nanos: 1_000 + i,
            observed_unix_nanos: 2_000 + i,
            trace_id: i.is_multiple_of(2).then_some([7; 16]),
            span_id: None,
            severity: if i.is_multiple_of(3) {
                Severity::Error
            } else {
                Severity::Info
            },
            body: Some(crate::model::AnyValue::String(format!("body {i}"))),
            service: format!("svc{}", i % 2),
            attributes: vec![crate::model::KeyValue::string("k", i.to_string())],
            ..Default::default()
        }
    }

    fn point(i: u64) -> MetricPoint {
        MetricPoint {
            timestamp_unix_nanos: 5_000 + i,
            start_unix_nanos: 0,
            service: "m".into(),
            name: format!("metric{}", i % 3),
            metric_type: MetricType::Gauge,
            value: i as f64,
            unit: "1".into(),
            attributes: vec![],
            temporality: None,
            is_monotonic: None,
            histogram: None,
            quantiles: vec![],
        }
    }

    fn all_logs(store: &HotStore) -> Vec<LogRecord> {
        store
            .search_logs(&LogQuery {
                limit: 1000,
                max_scanned: 10_000,
                ..Default::default()
            })
            .unwrap()
            .records
    }

    fn all_points(store: &HotStore) -> Vec<MetricPoint> {
        store
            .search_metrics(&MetricQuery {
                limit: 1000,
                max_scanned: 10_000,
                ..Default::default()
            })
            .unwrap()
            .records
    }

    #[test]
    fn logs_and_metrics_survive_export_and_import() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(&dir.path().join("a"), 1, 1 << 20).unwrap();
        let log_id = |i| {
            tael_consensus::LogId::new(
                tael_consensus::LeaderId {
                    term: 1,
                    node_id: 1,
                },
                i,
            )
        };
        let mut batch = store.begin();
        batch.begin_entry(1);
        for i in 0..10 {
            batch.put_log(&log(i));
            batch.put_metric(&point(i));
        }
        // Re-applying the same records changes nothing.
        for i in 0..10 {
            batch.put_log(&log(i));
            batch.put_metric(&point(i));
        }
        batch.commit(Some(log_id(1)), None).unwrap();
        let mut batch = store.begin();
        batch.begin_entry(2);
        batch.put_log(&log(3));
        batch.commit(Some(log_id(2)), None).unwrap();
        assert_eq!(all_logs(&store).len(), 10);
        assert_eq!(all_points(&store).len(), 10);

        let meta = SnapshotMeta::default();
        let path = dir.path().join("s.snap");
        export(&store, &store.read_view(), &meta, &path).unwrap();
        let restored = HotStore::open(&dir.path().join("b"), 1, 1 << 20).unwrap();
        import(&path, &restored).unwrap();

        assert_eq!(all_logs(&restored), all_logs(&store));
        assert_eq!(all_points(&restored), all_points(&store));
        // The indexes came along too.
        let by_trace = restored
            .search_logs(&LogQuery {
                trace_id: Some([7; 16]),
                limit: 100,
                max_scanned: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_trace.records.len(), 5);
        assert_eq!(by_trace.scanned, 5, "walks the trace index, not every log");
        let errors = restored
            .search_logs(&LogQuery {
                severity: Some(Severity::Error),
                service: None,
                limit: 100,
                max_scanned: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            errors
                .records
                .iter()
                .map(|l| l.body_text().into_owned())
                .collect::<Vec<_>>(),
            vec!["body 9", "body 6", "body 3", "body 0"],
            "newest first"
        );
        assert_eq!(errors.scanned, 4);
        let svc = restored
            .search_logs(&LogQuery {
                service: Some("svc1".into()),
                limit: 2,
                max_scanned: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(svc.records.len(), 2);
        assert_eq!(svc.records[0].body_text(), "body 9");
        let named = restored
            .search_metrics(&MetricQuery {
                name: Some("metric1".into()),
                limit: 100,
                max_scanned: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            named.records.iter().map(|p| p.value).collect::<Vec<_>>(),
            vec![7.0, 4.0, 1.0]
        );
        assert_eq!(named.scanned, 3);
        let windowed = restored
            .search_metrics(&MetricQuery {
                since_unix_nanos: Some(5_008),
                limit: 100,
                max_scanned: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(windowed.records.len(), 2);
    }

    #[test]
    fn a_spooled_record_proposed_twice_is_applied_once_even_after_a_snapshot() {
        use crate::payload::{self, SpooledRecord, TAG_LOGS};
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(&dir.path().join("a"), 1, 1 << 20).unwrap();
        let spooled = |generation: u64, seq: u64, min_live: u64, body: u64| {
            payload::spooled_record(
                [seq as u8; 16],
                &SpooledRecord {
                    origin: 2,
                    generation,
                    seq,
                    min_live_generation: min_live,
                    tag: TAG_LOGS,
                    payload: payload::logs_record(vec![log(body)]).payload,
                },
            )
        };
        // One log for all stores: each continues from its snapshot's position.
        let next_index = std::cell::Cell::new(1u64);
        let apply = |store: &HotStore, records: &[tael_consensus::Record]| {
            let mut batch = store.begin();
            let mut applied = 0;
            let mut duplicates = 0;
            let mut last = None;
            for r in records {
                let index = next_index.replace(next_index.get() + 1);
                batch.begin_entry(index);
                let c = crate::state::apply::apply(&mut batch, index, r)
                    .unwrap()
                    .unwrap();
                applied += c.spooled_applied;
                duplicates += c.spooled_duplicates;
                last = Some(tael_consensus::LogId::new(
                    tael_consensus::LeaderId {
                        term: 1,
                        node_id: 1,
                    },
                    index,
                ));
            }
            batch.commit(last, None).unwrap();
            (applied, duplicates)
        };
        let applied_total = |store: &HotStore| {
            store
                .spooled_applied_by_origin()
                .unwrap()
                .into_iter()
                .find(|(o, _)| *o == 2)
                .map_or(0, |(_, f)| f.applied_total)
        };

        // Twice in one apply batch (the batch is not readable: staged marks count).
        assert_eq!(
            apply(&store, &[spooled(1, 1, 1, 1), spooled(1, 1, 1, 1)]),
            (1, 1)
        );
        // Again in a later batch, next to a new one.
        assert_eq!(
            apply(&store, &[spooled(1, 1, 1, 1), spooled(1, 2, 1, 2)]),
            (1, 1)
        );
        assert_eq!(apply(&store, &[spooled(1, 2, 1, 2)]), (0, 1));
        assert_eq!(applied_total(&store), 2);
        assert_eq!(all_logs(&store).len(), 2);

        // A snapshot carries the marks: the restored replica skips them too.
        let path = dir.path().join("s.snap");
        export(&store, &store.read_view(), &SnapshotMeta::default(), &path).unwrap();
        let restored = HotStore::open(&dir.path().join("b"), 1, 1 << 20).unwrap();
        import(&path, &restored).unwrap();
        assert_eq!(applied_total(&restored), 2);
        assert_eq!(
            apply(&restored, &[spooled(1, 1, 1, 1), spooled(1, 2, 1, 2)]),
            (0, 2)
        );
        assert_eq!(restored.spool_generations(2).unwrap(), vec![(1, 2)]);

        // The origin restarted with generation 1 gone from its spool: its
        // mark is dropped, and a late copy of a generation-1 record is
        // still a duplicate.
        assert_eq!(apply(&restored, &[spooled(2, 1, 2, 3)]), (1, 0));
        assert_eq!(restored.spool_generations(2).unwrap(), vec![(2, 1)]);
        assert_eq!(
            apply(&restored, &[spooled(1, 2, 1, 2), spooled(1, 9, 1, 9)]),
            (0, 2)
        );
        assert_eq!(applied_total(&restored), 3);
        assert_eq!(all_logs(&restored).len(), 3);

        // Persisted: a reopened store still knows.
        drop(restored);
        let reopened = HotStore::open(&dir.path().join("b"), 1, 1 << 20).unwrap();
        assert_eq!(apply(&reopened, &[spooled(2, 1, 2, 3)]), (0, 1));
        assert_eq!(applied_total(&reopened), 3);
    }
}
