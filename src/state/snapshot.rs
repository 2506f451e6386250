//! The state machine's snapshot file: a consistent export of every keyspace.
//!
//! ```text
//! "TAELSNP1"
//! u32 LE meta_len, meta (JSON SnapshotMeta)
//! records: u8 keyspace, u32 LE key_len, key, u32 LE value_len, value
//! cold files: u8 0xFE, u32 LE name_len, name (`<signal>/<file name>`),
//!   chunks (u32 LE len, bytes; at most 1 MiB each), u32 LE 0,
//!   u32 LE CRC32C of the file's bytes
//! u8 0xFF end marker
//! u32 LE CRC32C of everything before it
//! ```
//!
//! Written to a temporary name, fsynced, renamed, directory fsynced.
//!
//! Cold files (`state::cold`) are local to each node, so a snapshot carries
//! every file its manifest names: a node that installs it can read what the
//! manifest says is cold. Each file is checked on its own (its CRC) before
//! it is renamed into place, so a damaged snapshot never replaces a good
//! file; a file of the same name is the same move's file, the same bytes.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use fjall::Readable;
use tael_consensus::log_store::sync_dir;
use tael_consensus::SnapshotMeta;

use super::hot::{HotStore, StoreError, StoreResult, KEYSPACES};

const MAGIC: &[u8; 8] = b"TAELSNP1";
const END: u8 = 0xFF;
/// A cold file follows.
const COLD_FILE: u8 = 0xFE;
// A record's first byte is its keyspace's position, COLD_FILE or END.
const _: () = assert!(KEYSPACES.len() < COLD_FILE as usize);
/// Cold file bytes are copied in chunks of at most this size.
const COLD_CHUNK_BYTES: usize = 1 << 20;
/// A cold file larger than this in a snapshot means a damaged snapshot.
const MAX_COLD_FILE_BYTES: u64 = 4 << 30;
const MAX_COLD_NAME_BYTES: u32 = 256;
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
    // Opened before anything is written: a cut that drops a file after
    // `view` was taken deletes it only after its commit, and an open file
    // stays readable.
    let cold_files = open_cold_files(store, view)?;
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
    for (name, file) in cold_files {
        write_cold_file(&mut w, &name, file)?;
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

/// The cold files `view`'s manifest names, opened, with their names in a
/// snapshot. A file already gone (dropped by a cut committed after `view`)
/// is [`StoreError::ColdFileMissing`]: the caller takes a newer view.
fn open_cold_files(store: &HotStore, view: &fjall::Snapshot) -> StoreResult<Vec<(String, File)>> {
    let manifest = store.cold_manifest_in(view)?;
    let mut out = Vec::with_capacity(manifest.files.len());
    // Objects of the shared store are read by every node from the store:
    // the snapshot carries only the manifest naming them.
    for f in manifest.files.iter().filter(|f| f.object.is_none()) {
        let path = f.path(store.cold_dir());
        match File::open(&path) {
            Ok(file) => out.push((format!("{}/{}", f.signal.name(), f.file_name()), file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::ColdFileMissing(path.display().to_string()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn write_cold_file(w: &mut impl Write, name: &str, mut file: File) -> StoreResult<()> {
    w.write_all(&[COLD_FILE])?;
    w.write_all(&(name.len() as u32).to_le_bytes())?;
    w.write_all(name.as_bytes())?;
    let mut buf = vec![0u8; COLD_CHUNK_BYTES];
    let mut crc = 0u32;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        w.write_all(&(n as u32).to_le_bytes())?;
        w.write_all(&buf[..n])?;
    }
    w.write_all(&0u32.to_le_bytes())?;
    w.write_all(&crc.to_le_bytes())?;
    Ok(())
}

/// Reads a cold file record (after its tag) into `into`'s cold directory:
/// a temp file, checked against its CRC, fsynced, renamed, the directory
/// fsynced.
fn import_cold_file(r: &mut impl Read, path: &Path, into: &HotStore) -> StoreResult<()> {
    let name_len = read_u32(r)?;
    if name_len > MAX_COLD_NAME_BYTES {
        return Err(corrupt(path, format!("cold file name of {name_len} bytes")));
    }
    let mut name = vec![0u8; name_len as usize];
    r.read_exact(&mut name)?;
    let name = String::from_utf8(name).map_err(|_| corrupt(path, "cold file name"))?;
    let target = cold_file_target(into.cold_dir(), &name)
        .ok_or_else(|| corrupt(path, format!("cold file name {name:?}")))?;
    let dir = target.parent().expect("a cold file has a directory");
    fs::create_dir_all(dir)?;
    let tmp = target.with_extension("tmp");
    let mut out = BufWriter::new(File::create(&tmp)?);
    let (mut crc, mut total) = (0u32, 0u64);
    loop {
        let n = read_u32(r)? as usize;
        if n == 0 {
            break;
        }
        if n > COLD_CHUNK_BYTES {
            return Err(corrupt(path, format!("cold file chunk of {n} bytes")));
        }
        total += n as u64;
        if total > MAX_COLD_FILE_BYTES {
            return Err(corrupt(path, "a cold file beyond the size limit"));
        }
        let mut chunk = vec![0u8; n];
        r.read_exact(&mut chunk)?;
        crc = crc32c::crc32c_append(crc, &chunk);
        out.write_all(&chunk)?;
    }
    let stored = read_u32(r)?;
    if stored != crc {
        drop(out);
        let _ = fs::remove_file(&tmp);
        return Err(corrupt(
            path,
            format!("cold file {name}: checksum mismatch"),
        ));
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &target)?;
    sync_dir(dir)?;
    Ok(())
}

/// Where a cold file named `name` (`<signal>/<file name>`) goes; `None`
/// for a name no cold file has (so a hostile name cannot leave the
/// directory).
fn cold_file_target(cold_dir: &Path, name: &str) -> Option<PathBuf> {
    let (signal, file) = name.split_once('/')?;
    let known = crate::state::cold::Signal::ALL
        .iter()
        .any(|s| s.name() == signal);
    let plain = file.ends_with(".parquet")
        && file.starts_with(signal)
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !file.contains("..");
    (known && plain).then(|| cold_dir.join(signal).join(file))
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
        if tag[0] == COLD_FILE {
            import_cold_file(&mut r, path, into)?;
            continue;
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
    into.backfill_metric_rollups()?;
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
    use crate::state::hot::test_support::log_id;
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
    fn cold_files_travel_in_the_snapshot_and_read_back_on_the_other_side() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(&dir.path().join("a"), 1, 1 << 20).unwrap();
        let mut batch = store.begin();
        batch.begin_entry(1);
        for i in 0..10 {
            batch.put_log(&log(i));
        }
        batch.commit(Some(log_id(1)), None).unwrap();
        let mut batch = store.begin();
        batch.begin_entry(2);
        let mv = crate::state::cold::ColdMove {
            signal: crate::state::cold::Signal::Logs,
            from_unix_nanos: 0,
            to_unix_nanos: 1_005,
        };
        assert_eq!(batch.apply_cold_move(2, &mv).unwrap().rows, 5);
        batch.commit(Some(log_id(2)), None).unwrap();

        let path = dir.path().join("s.snap");
        export(&store, &store.read_view(), &SnapshotMeta::default(), &path).unwrap();
        let mut restored = HotStore::open(&dir.path().join("b"), 1, 1 << 20).unwrap();
        restored.cold_dir = dir.path().join("b-cold");
        import(&path, &restored).unwrap();
        let manifest = restored.cold_manifest().unwrap();
        assert_eq!(manifest, store.cold_manifest().unwrap());
        let file = &manifest.files[0];
        assert_eq!(
            fs::read(file.path(restored.cold_dir())).unwrap(),
            fs::read(file.path(store.cold_dir())).unwrap()
        );
        assert!(restored.missing_cold_files().unwrap().is_empty());
        let cold = crate::state::cold::ColdReader::open(&std::sync::Arc::new(restored)).unwrap();
        let logs = cold.logs((0, u64::MAX), None, None, 100).unwrap();
        assert_eq!(logs.records.len(), 5);

        // A damaged cold file in the snapshot is refused, never renamed in.
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.windows(4).position(|w| w == b"PAR1").unwrap() + 8;
        bytes[at] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let mut other = HotStore::open(&dir.path().join("c"), 1, 1 << 20).unwrap();
        other.cold_dir = dir.path().join("c-cold");
        let err = import(&path, &other).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(!file.path(other.cold_dir()).exists());
    }

    #[test]
    fn hostile_cold_file_names_stay_inside_the_cold_directory() {
        let d = Path::new("/cold");
        assert_eq!(
            cold_file_target(d, "spans/spans-00000000000000000007.parquet"),
            Some(d.join("spans").join("spans-00000000000000000007.parquet"))
        );
        for bad in [
            "spans/../x.parquet",
            "other/spans-1.parquet",
            "spans/logs-1.parquet",
            "spans/spans-1.txt",
            "spans",
            "spans/spans/1.parquet",
        ] {
            assert_eq!(cold_file_target(d, bad), None, "{bad}");
        }
    }

    #[test]
    fn logs_and_metrics_survive_export_and_import() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(&dir.path().join("a"), 1, 1 << 20).unwrap();
        let mut batch = store.begin();
        batch.begin_entry(1);
        for i in 0..10 {
            batch.put_log(&log(i));
            batch.put_metric(&point(i)).unwrap();
        }
        // Re-applying the same records changes nothing.
        for i in 0..10 {
            batch.put_log(&log(i));
            batch.put_metric(&point(i)).unwrap();
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
