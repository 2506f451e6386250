use std::fs::{self, OpenOptions};

use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::type_config::TypeConfigExt;

use super::batch::{BatchHeader, BATCH_HEADER_BYTES};
use super::recovery::{legacy_segment_path, list_segments, segment_path};
use super::*;
use crate::frame::RecordIntegrity;
use crate::types::{EntryPayload, LeaderId, Record};

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(LeaderId { term, node_id: 1 }, index)
}

fn entry(term: u64, index: u64) -> Entry {
    let payload = format!("payload of entry {index}").into_bytes();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Record {
            tag: crate::FIRST_APP_TAG,
            batch_key: [index as u8; 16],
            payload,
        }),
    }
}

fn small_segments() -> LogStoreOptions {
    LogStoreOptions {
        segment_max_bytes: 300,
        cache_max_bytes: 0,
        ..Default::default()
    }
}

async fn append(store: &mut LogStore, entries: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

async fn indexes(store: &mut LogStore) -> Vec<u64> {
    store
        .try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[tokio::test]
async fn entries_vote_truncate_and_purge_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
        append(&mut s, (0..20).map(|i| entry(1, i)).collect()).await;
        s.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        s.truncate_after(Some(log_id(1, 14))).await.unwrap();
        append(&mut s, (15..18).map(|i| entry(2, i)).collect()).await;
        s.purge(log_id(1, 4)).await.unwrap();
        s.barrier().await.unwrap();
        assert!(
            list_segments(dir.path()).unwrap().len() > 1,
            "small segments should have rolled over"
        );
    }
    let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
    assert_eq!(indexes(&mut s).await, (5..18).collect::<Vec<_>>());
    let got = s.try_get_log_entries(15..18).await.unwrap();
    assert!(
        got.iter().all(|e| e.log_id.leader_id.term == 2),
        "entries after the truncation are the new ones"
    );
    assert_eq!(
        s.read_vote().await.unwrap(),
        Some(Vote::new_committed(2, 1))
    );
    let state = s.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 4)));
    assert_eq!(state.last_log_id, Some(log_id(2, 17)));
    // Purged segments are gone from disk, not just hidden.
    let first_segment = *list_segments(dir.path()).unwrap().keys().next().unwrap();
    assert!(
        first_segment > 0,
        "the segment holding entries 0.. should have been deleted"
    );
}

#[tokio::test]
async fn purge_beyond_the_last_entry_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append(&mut s, (0..5).map(|i| entry(1, i)).collect()).await;
        s.purge(log_id(3, 100)).await.unwrap();
        append(&mut s, vec![entry(3, 101)]).await;
    }
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(indexes(&mut s).await, vec![101]);
    assert_eq!(
        s.get_log_state().await.unwrap().last_purged_log_id,
        Some(log_id(3, 100))
    );
}

fn last_segment(dir: &Path) -> PathBuf {
    list_segments(dir)
        .unwrap()
        .into_values()
        .next_back()
        .unwrap()
}

/// The newest segment and the first index in its name.
fn last_segment_with_first(dir: &Path) -> (u64, PathBuf) {
    list_segments(dir).unwrap().into_iter().next_back().unwrap()
}

/// Where the frame of `e` starts in a segment's bytes.
fn frame_at(bytes: &[u8], e: &Entry) -> usize {
    frame_at_in(bytes, e, &RecordIntegrity::Crc32c)
}

fn frame_at_in(bytes: &[u8], e: &Entry, integrity: &RecordIntegrity) -> usize {
    let frame = frame::encode_entry(e, integrity);
    bytes
        .windows(frame.len())
        .position(|w| w == &frame[..])
        .expect("the entry's frame is in the segment")
}

/// Offset of the idle mark after a segment's last batch: where the data the
/// writer fsynced ends. Walks the batch headers from the start.
fn idle_mark_at(bytes: &[u8], first: u64) -> usize {
    let mut pos = 0;
    loop {
        let h = BatchHeader::parse_at(bytes, pos, first).expect("a header at every batch");
        if h.frames_len == 0 {
            return pos;
        }
        pos += BATCH_HEADER_BYTES + h.frames_len as usize;
    }
}

/// The bytes a group commit of `entries` at offset `at` writes before its
/// fsync, and the offsets of its frames.
fn unsynced_batch(first: u64, at: usize, entries: &[Entry]) -> (Vec<u8>, Vec<usize>) {
    unsynced_batch_in(first, at, entries, &RecordIntegrity::Crc32c)
}

fn unsynced_batch_in(
    first: u64,
    at: usize,
    entries: &[Entry],
    integrity: &RecordIntegrity,
) -> (Vec<u8>, Vec<usize>) {
    let frames: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| frame::encode_entry(e, integrity))
        .collect();
    let frames_len: usize = frames.iter().map(Vec::len).sum();
    let header = BatchHeader {
        segment_first: first,
        offset: at as u64,
        synced_len: at as u64,
        frames_len: frames_len as u32,
    };
    let mut out = header.encode().to_vec();
    let mut offsets = Vec::new();
    for f in frames {
        offsets.push(at + out.len());
        out.extend_from_slice(&f);
    }
    (out, offsets)
}

async fn open_err(dir: &Path) -> io::Error {
    match LogStore::open(dir, LogStoreOptions::default()) {
        Ok(_) => panic!("the log must refuse to open"),
        Err(e) => e,
    }
}

fn damage_of(err: &io::Error) -> &LogDamage {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<LogDamage>())
        .unwrap_or_else(|| panic!("not a LogDamage: {err}"))
}

/// The refusal says what an operator needs: file, offset, entry, and how
/// to recover.
fn assert_guidance(err: &io::Error, seg: &Path, offset: usize, entry: u64) {
    let d = damage_of(err);
    assert_eq!(d.path, seg);
    assert_eq!(d.offset, offset as u64);
    assert_eq!(d.entry, entry);
    let text = err.to_string();
    for needle in [
        &seg.display().to_string(),
        &format!("offset {offset}"),
        &format!("entry {entry}"),
        "refusing to start",
        "rejoin it from its peers",
        "docs/operations.md",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}

/// Appends `0..count` in group commits of 1 to 7 entries.
async fn append_in_batches(s: &mut LogStore, count: u64) {
    let mut next = 0;
    let mut size = 1;
    while next < count {
        let end = (next + size).min(count);
        append(s, (next..end).map(|i| entry(1, i)).collect()).await;
        next = end;
        size = size % 7 + 1;
    }
}

/// The reported defect: one byte of a length field in the middle of a
/// stopped follower's active segment made start-up cut every entry from
/// there on. It is damage to fsynced data and must refuse, cutting nothing.
#[tokio::test]
async fn a_flipped_length_byte_mid_segment_refuses_with_guidance() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append_in_batches(&mut s, 1589).await;
    }
    let (_, seg) = last_segment_with_first(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let at = frame_at(&bytes, &entry(1, 870));
    bytes[at + 1] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();

    let err = open_err(dir.path()).await;
    assert_guidance(&err, &seg, at, 870);
    assert!(
        matches!(damage_of(&err).not_torn, NotTorn::SyncedThrough(n) if n > at as u64),
        "{err}"
    );
    assert_eq!(fs::read(&seg).unwrap(), bytes, "nothing was cut");
}

#[tokio::test]
async fn a_zeroed_region_before_the_last_sync_refuses() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append_in_batches(&mut s, 40).await;
    }
    let (_, seg) = last_segment_with_first(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let at = frame_at(&bytes, &entry(1, 10));
    bytes[at..at + 512].fill(0);
    fs::write(&seg, &bytes).unwrap();

    let err = open_err(dir.path()).await;
    assert_guidance(&err, &seg, at, 10);
    assert_eq!(fs::read(&seg).unwrap(), bytes, "nothing was cut");
}

/// The last batch is proven fsynced by the idle mark after it, so damage to
/// the newest entry is damage too, not a torn write.
#[tokio::test]
async fn damage_in_the_last_synced_batch_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append_in_batches(&mut s, 10).await;
    }
    let (_, seg) = last_segment_with_first(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let at = frame_at(&bytes, &entry(1, 9));
    bytes[at + 60] ^= 0x40; // inside the payload
    fs::write(&seg, &bytes).unwrap();

    let err = open_err(dir.path()).await;
    assert_guidance(&err, &seg, at, 9);
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

/// The idle mark is written without an fsync, so a power cut may tear it:
/// that is a torn tail, and it costs no entry.
#[tokio::test]
async fn a_torn_idle_mark_is_cut_off_and_keeps_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append(&mut s, (0..10).map(|i| entry(1, i)).collect()).await;
    }
    let (first, seg) = last_segment_with_first(dir.path());
    let bytes = fs::read(&seg).unwrap();
    let synced = idle_mark_at(&bytes, first);
    assert_eq!(bytes.len(), synced + BATCH_HEADER_BYTES);
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(bytes.len() as u64 - 7)
        .unwrap();

    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..10).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 1);
    assert_eq!(fs::metadata(&seg).unwrap().len(), synced as u64);
    append(&mut s, vec![entry(2, 10)]).await;
    drop(s);
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..11).collect::<Vec<_>>());
    assert_eq!(
        s.stats().torn_tail_repairs.load(Ordering::Relaxed),
        0,
        "the repair was durable"
    );
}

/// Writes entries 0..12 (fsynced), lays an unsynced batch of 12..16 where
/// the next group commit would go, lets `tear` damage it as a power cut
/// might, and checks that recovery cuts exactly back to the synced data.
async fn torn_unsynced_batch_is_cut_exactly(tear: impl FnOnce(&mut Vec<u8>, usize, &[usize])) {
    torn_unsynced_batch_is_cut_exactly_in(LogStoreOptions::default(), tear).await
}

async fn torn_unsynced_batch_is_cut_exactly_in(
    opts: LogStoreOptions,
    tear: impl FnOnce(&mut Vec<u8>, usize, &[usize]),
) {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), opts.clone()).unwrap();
        for i in (0..12).step_by(3) {
            append(&mut s, (i..i + 3).map(|i| entry(1, i)).collect()).await;
        }
    }
    let (first, seg) = last_segment_with_first(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let synced = idle_mark_at(&bytes, first);
    let unsynced: Vec<Entry> = (12..16).map(|i| entry(1, i)).collect();
    let (batch, frames) = unsynced_batch_in(first, synced, &unsynced, &opts.integrity);
    bytes.truncate(synced);
    bytes.extend_from_slice(&batch);
    tear(&mut bytes, synced, &frames);
    fs::write(&seg, &bytes).unwrap();

    let mut s = LogStore::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        synced as u64,
        "cut exactly at the end of the last synced frame"
    );
    assert_eq!(indexes(&mut s).await, (0..12).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 1);
    append(&mut s, vec![entry(2, 12)]).await;
    drop(s);
    let mut s = LogStore::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..13).collect::<Vec<_>>());
    assert_eq!(
        opts.integrity.failures(),
        0,
        "a torn write is not tampering"
    );
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_partial_frame_after_the_last_sync_is_cut() {
    torn_unsynced_batch_is_cut_exactly(|bytes, _, frames| bytes.truncate(frames[1] + 20)).await;
}

#[tokio::test]
async fn garbage_after_the_last_sync_is_cut() {
    torn_unsynced_batch_is_cut_exactly(|bytes, _, frames| {
        let mut x: u32 = 0x9E37_79B9;
        for b in &mut bytes[frames[1]..] {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (x >> 24) as u8;
        }
    })
    .await;
}

/// A preallocated segment after a power cut: the header reached the disk,
/// the frames did not.
#[tokio::test]
async fn zeros_after_the_last_sync_are_cut() {
    torn_unsynced_batch_is_cut_exactly(|bytes, at, _| {
        bytes[at + BATCH_HEADER_BYTES..].fill(0);
        bytes.resize(bytes.len() + 4096, 0);
    })
    .await;
}

/// The pages of an unsynced batch reach the disk in any order: a later frame
/// intact after an earlier torn one is still a torn tail.
#[tokio::test]
async fn an_out_of_order_torn_batch_is_a_torn_tail() {
    torn_unsynced_batch_is_cut_exactly(|bytes, _, frames| {
        bytes[frames[0] + 10..frames[1]].fill(0); // length field intact
    })
    .await;
}

#[tokio::test]
async fn a_torn_batch_header_with_intact_frames_is_a_torn_tail() {
    torn_unsynced_batch_is_cut_exactly(|bytes, at, _| {
        bytes[at..at + BATCH_HEADER_BYTES].fill(0);
    })
    .await;
}

/// Appends 0..10 as one batch and truncates after 5, which cuts the batch
/// short and seals the cut. Returns the segment and where the seal is.
async fn truncated_mid_batch(dir: &Path) -> (PathBuf, usize) {
    {
        let mut s = LogStore::open(dir, LogStoreOptions::default()).unwrap();
        append(&mut s, (0..10).map(|i| entry(1, i)).collect()).await;
        s.truncate_after(Some(log_id(1, 5))).await.unwrap();
    }
    let (first, seg) = last_segment_with_first(dir);
    let bytes = fs::read(&seg).unwrap();
    let cut = frame_at(&bytes, &entry(1, 5))
        + frame::encode_entry(&entry(1, 5), &RecordIntegrity::Crc32c).len();
    let seal = BatchHeader::parse_at(&bytes, cut, first).expect("the cut is sealed");
    assert_eq!((seal.frames_len, seal.synced_len), (0, cut as u64));
    (seg, cut)
}

async fn assert_reopens_with(dir: &Path, upto: u64, repairs: u64) {
    let mut s = LogStore::open(dir, LogStoreOptions::default()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..=upto).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), repairs);
    append(&mut s, vec![entry(2, upto + 1)]).await;
    drop(s);
    let mut s = LogStore::open(dir, LogStoreOptions::default()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..=upto + 1).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_truncation_inside_a_batch_reopens_exactly() {
    let dir = tempfile::tempdir().unwrap();
    truncated_mid_batch(dir.path()).await;
    assert_reopens_with(dir.path(), 5, 0).await;
}

/// The batch written after a truncation is torn by a power cut: the frames
/// kept before the cut were fsynced and stay.
#[tokio::test]
async fn a_torn_batch_after_a_truncation_keeps_the_entries_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, cut) = truncated_mid_batch(dir.path()).await;
    let mut bytes = fs::read(&seg).unwrap();
    bytes.truncate(cut + BATCH_HEADER_BYTES);
    bytes.extend_from_slice(&[0x5A; 200]);
    fs::write(&seg, &bytes).unwrap();
    assert_reopens_with(dir.path(), 5, 1).await;
}

/// A crash after the cut but before its seal leaves the file ending inside
/// the cut batch, or zeros after it: the kept frames stay and are sealed,
/// so a torn batch after them cannot take them along.
#[tokio::test]
async fn a_truncation_that_stopped_before_its_seal_keeps_its_frames() {
    for zeros_after in [0, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let (seg, cut) = truncated_mid_batch(dir.path()).await;
        let mut bytes = fs::read(&seg).unwrap();
        bytes.truncate(cut);
        bytes.resize(cut + zeros_after, 0);
        fs::write(&seg, &bytes).unwrap();
        {
            let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
            assert_eq!(indexes(&mut s).await, (0..=5).collect::<Vec<_>>());
        }
        let (first, _) = last_segment_with_first(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        assert!(
            BatchHeader::parse_at(&bytes, cut, first).is_some(),
            "sealed at start"
        );
        bytes.truncate(cut + BATCH_HEADER_BYTES);
        bytes.extend_from_slice(&[0x5A; 200]);
        fs::write(&seg, &bytes).unwrap();
        assert_reopens_with(dir.path(), 5, 1).await;
    }
}

/// Truncating a segment's first entry empties the segment (its first
/// batch header too): a header left alone there would let the next append
/// rotate, from a ready spare, to a new segment of the same name.
#[tokio::test]
async fn truncating_a_segments_first_entry_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
    append(&mut s, (0..20).map(|i| entry(1, i)).collect()).await;
    let (first, seg) = last_segment_with_first(dir.path());
    assert!(first > 0);
    s.truncate_after(Some(log_id(1, first - 1))).await.unwrap();
    assert_eq!(fs::metadata(&seg).unwrap().len(), 0, "emptied whole");
    append(&mut s, vec![entry(2, first)]).await;
    assert_eq!(last_segment_with_first(dir.path()).0, first);
    drop(s);
    let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..=first).collect::<Vec<_>>());
    let last = s.try_get_log_entries(first..=first).await.unwrap();
    assert_eq!(last[0].log_id, log_id(2, first));
}

/// Segments written before batch headers (format 1) are read; new entries
/// go to a new segment; damage in an old one is refused, as it cannot be
/// told from a torn write.
#[tokio::test]
async fn format_1_segments_are_read_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_segment_path(dir.path(), 0);
    let old: Vec<u8> = (0..5)
        .flat_map(|i| frame::encode_entry(&entry(1, i), &RecordIntegrity::Crc32c))
        .collect();
    fs::write(&legacy, &old).unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        assert_eq!(indexes(&mut s).await, (0..5).collect::<Vec<_>>());
        append(&mut s, (5..8).map(|i| entry(1, i)).collect()).await;
    }
    assert_eq!(
        fs::read(&legacy).unwrap(),
        old,
        "the old segment is untouched"
    );
    assert!(segment_path(dir.path(), 5).exists());
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..8).collect::<Vec<_>>());
    drop(s);

    let mut bytes = old.clone();
    let n = bytes.len();
    bytes[n - 10] ^= 0x01;
    fs::write(&legacy, &bytes).unwrap();
    let err = open_err(dir.path()).await;
    assert_eq!(damage_of(&err).not_torn, NotTorn::LegacyFormat, "{err}");
}

#[tokio::test]
async fn corruption_in_the_middle_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append(&mut s, (0..10).map(|i| entry(1, i)).collect()).await;
    }
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    bytes[60] ^= 0x01; // inside the second record, valid records follow
    fs::write(&seg, &bytes).unwrap();

    let err = LogStore::open(dir.path(), LogStoreOptions::default())
        .err()
        .expect("must refuse to start");
    assert!(err.to_string().contains("refusing to start"), "{err}");
    assert_eq!(
        fs::read(&seg).unwrap(),
        bytes,
        "a refused start changes nothing on disk"
    );
}

#[tokio::test]
async fn corruption_in_an_older_segment_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
        append(&mut s, (0..20).map(|i| entry(1, i)).collect()).await;
    }
    let first = list_segments(dir.path())
        .unwrap()
        .into_values()
        .next()
        .unwrap();
    let len = fs::metadata(&first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    assert!(LogStore::open(dir.path(), small_segments()).is_err());
}

#[tokio::test]
async fn a_gap_between_segments_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
        append(&mut s, (0..20).map(|i| entry(1, i)).collect()).await;
    }
    let segs = list_segments(dir.path()).unwrap();
    assert!(segs.len() >= 3);
    let middle = segs.values().nth(1).unwrap();
    fs::remove_file(middle).unwrap();
    let err = LogStore::open(dir.path(), small_segments())
        .err()
        .expect("a hole must be refused");
    assert!(err.to_string().contains("hole"), "{err}");
}

#[tokio::test]
async fn many_concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    let mut waits = Vec::new();
    for i in 0..200 {
        let (tx, rx) = TypeConfig::oneshot();
        s.append(vec![entry(1, i)], IOFlushed::signal(tx))
            .await
            .unwrap();
        waits.push(rx);
    }
    for w in waits {
        w.await.unwrap().unwrap();
    }
    let fsyncs = s.stats().fsync_latency.count();
    assert!(
        fsyncs < 200,
        "200 queued appends took {fsyncs} fsyncs; group commit is not batching"
    );
    assert_eq!(indexes(&mut s).await.len(), 200);
}

#[tokio::test]
async fn appended_entries_are_readable_before_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    s.append(vec![entry(1, 0), entry(1, 1)], IOFlushed::noop())
        .await
        .unwrap();
    assert_eq!(indexes(&mut s).await, vec![0, 1]);
}

#[test]
fn segment_names_sort_by_index() {
    let d = Path::new("/x");
    assert!(segment_path(d, 9) < segment_path(d, 10));
}

/// Simulated power loss keeps exactly what was fsynced: everything with a
/// correct log, and nothing appended since start when fsync is skipped. The
/// second half is what lets the fault harness catch the skipped fsync.
#[cfg(feature = "fault-injection")]
#[tokio::test]
async fn simulated_power_loss_drops_exactly_what_was_not_fsynced() {
    let power_loss = |skip_fsync| LogStoreOptions {
        faults: LogFaults {
            skip_fsync,
            simulate_power_loss: true,
            ..Default::default()
        },
        ..small_segments()
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), power_loss(false)).unwrap();
        append(&mut s, (0..20).map(|i| entry(1, i)).collect()).await;
    }
    let mut s = LogStore::open(dir.path(), power_loss(false)).unwrap();
    assert_eq!(indexes(&mut s).await, (0..20).collect::<Vec<_>>());
    drop(s);

    {
        let mut s = LogStore::open(dir.path(), power_loss(true)).unwrap();
        append(&mut s, (20..40).map(|i| entry(1, i)).collect()).await;
        assert_eq!(indexes(&mut s).await.len(), 40, "readable before the cut");
    }
    let mut s = LogStore::open(dir.path(), power_loss(false)).unwrap();
    assert_eq!(
        indexes(&mut s).await,
        (0..20).collect::<Vec<_>>(),
        "the un-fsynced appends are gone, the fsynced ones stay"
    );
}

/// A real group commit whose fsync never happened, torn out of order by
/// the (simulated) power cut: recovery cuts back to exactly what the
/// simulation recorded as fsynced.
#[cfg(feature = "fault-injection")]
#[tokio::test]
async fn a_torn_unsynced_group_commit_is_cut_back_to_the_synced_length() {
    let power_loss = |skip_fsync| LogStoreOptions {
        faults: LogFaults {
            skip_fsync,
            simulate_power_loss: true,
            ..Default::default()
        },
        ..LogStoreOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), power_loss(false)).unwrap();
        append_in_batches(&mut s, 20).await;
    }
    {
        let mut s = LogStore::open(dir.path(), power_loss(true)).unwrap();
        append(&mut s, (20..26).map(|i| entry(1, i)).collect()).await;
    }
    let (first, seg) = last_segment_with_first(dir.path());
    let record = fs::read(dir.path().join(super::power_loss::RECORD_FILE)).unwrap();
    let synced_lengths: BTreeMap<u64, u64> = serde_json::from_slice(&record).unwrap();
    let synced = synced_lengths[&first] as usize;
    let mut bytes = fs::read(&seg).unwrap();
    let header = BatchHeader::parse_at(&bytes, synced, first).expect("the unsynced batch");
    assert_eq!(header.synced_len, synced as u64);
    // The first frame's page never landed; the later frames did.
    let at = frame_at(&bytes, &entry(1, 20));
    bytes[at + 8..at + 40].fill(0);
    assert!(frame::decode_log_id(
        &bytes[frame_at(&bytes, &entry(1, 25))..],
        &RecordIntegrity::Crc32c
    )
    .is_ok());
    fs::write(&seg, &bytes).unwrap();

    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(fs::metadata(&seg).unwrap().len(), synced as u64);
    assert_eq!(indexes(&mut s).await, (0..20).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 1);
}

fn sized_entry(term: u64, index: u64, payload_bytes: usize) -> Entry {
    let mut e = entry(term, index);
    if let EntryPayload::Normal(r) = &mut e.payload {
        r.payload = vec![(index % 251) as u8 + 1; payload_bytes];
    }
    e
}

const PREALLOC_SEGMENT_BYTES: u64 = 64 * 1024;

/// Appends 2 KiB entries from `next` until the log writes into a
/// preallocated segment (one longer than its data); returns the next index.
async fn append_until_preallocated(s: &mut LogStore, dir: &Path, mut next: u64) -> u64 {
    for _ in 0..400 {
        append(s, vec![sized_entry(1, next, 2048)]).await;
        next += 1;
        let seg = last_segment(dir);
        let bytes = fs::read(&seg).unwrap();
        let written = super::prealloc::written_len(&bytes);
        if bytes.len() as u64 == PREALLOC_SEGMENT_BYTES && written > 0 {
            return next;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the log never moved to a preallocated segment");
}

fn prealloc_opts() -> LogStoreOptions {
    LogStoreOptions {
        segment_max_bytes: PREALLOC_SEGMENT_BYTES,
        cache_max_bytes: 0,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_busy_log_moves_to_preallocated_segments_and_reopens_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let next = {
        let mut s = LogStore::open(dir.path(), prealloc_opts()).unwrap();
        let mut next = append_until_preallocated(&mut s, dir.path(), 0).await;
        // Fill it past its end: the next segment comes from a spare as well.
        for _ in 0..40 {
            append(&mut s, vec![sized_entry(1, next, 2048)]).await;
            next += 1;
        }
        next
    };
    assert!(
        !list_segments(dir.path())
            .unwrap()
            .values()
            .any(|p| p.ends_with(super::prealloc::SPARE_FILE)),
        "the spare is never read as log"
    );
    let mut s = LogStore::open(dir.path(), prealloc_opts()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..next).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 0);
    // Appends continue after the zeros' start, not at the file's end.
    append(&mut s, vec![sized_entry(1, next, 10)]).await;
    drop(s);
    let mut s = LogStore::open(dir.path(), prealloc_opts()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..=next).collect::<Vec<_>>());
}

#[tokio::test]
async fn torn_and_truncated_tails_in_a_preallocated_segment() {
    let dir = tempfile::tempdir().unwrap();
    let next = {
        let mut s = LogStore::open(dir.path(), prealloc_opts()).unwrap();
        let next = append_until_preallocated(&mut s, dir.path(), 0).await;
        append(&mut s, vec![sized_entry(1, next, 100)]).await;
        next + 1
    };
    // A torn write: an unsynced batch whose last frame's end never reached
    // the disk (zeros, as the segment was preallocated).
    let (first, seg) = last_segment_with_first(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let synced = idle_mark_at(&bytes, first);
    let unsynced: Vec<Entry> = (next..next + 2).map(|i| sized_entry(1, i, 100)).collect();
    let (batch, _) = unsynced_batch(first, synced, &unsynced);
    let end = synced + batch.len();
    bytes[synced..end].copy_from_slice(&batch);
    bytes[end - 20..end].fill(0);
    fs::write(&seg, &bytes).unwrap();

    let mut s = LogStore::open(dir.path(), prealloc_opts()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..next).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 1);
    assert_eq!(fs::metadata(&seg).unwrap().len(), synced as u64);

    // A truncation inside a preallocated segment stays truncated.
    append(
        &mut s,
        (next..next + 4).map(|i| sized_entry(1, i, 100)).collect(),
    )
    .await;
    s.truncate_after(Some(log_id(1, next + 1))).await.unwrap();
    append(&mut s, vec![sized_entry(2, next + 2, 50)]).await;
    drop(s);
    let mut s = LogStore::open(dir.path(), prealloc_opts()).unwrap();
    let entries = s.try_get_log_entries(0..u64::MAX).await.unwrap();
    assert_eq!(entries.len() as u64, next + 3);
    assert_eq!(entries.last().unwrap().log_id, log_id(2, next + 2));
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn damage_before_the_zeros_of_a_preallocated_segment_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), prealloc_opts()).unwrap();
        let next = append_until_preallocated(&mut s, dir.path(), 0).await;
        append(
            &mut s,
            (next..next + 8).map(|i| sized_entry(1, i, 2048)).collect(),
        )
        .await;
    }
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    let err = LogStore::open(dir.path(), prealloc_opts()).err().unwrap();
    assert!(err.to_string().contains("refusing to start"), "{err}");
}

fn hmac_opts(integrity: &RecordIntegrity) -> LogStoreOptions {
    LogStoreOptions {
        cache_max_bytes: 0,
        integrity: integrity.clone(),
        ..Default::default()
    }
}

/// Changes one payload byte of `e`'s frame and redoes its checksum, as
/// anyone with write access but without the cluster secret could.
fn forge(bytes: &mut [u8], e: &Entry, integrity: &RecordIntegrity) {
    let at = frame_at_in(bytes, e, integrity);
    let len = frame::encode_entry(e, integrity).len();
    let payload_byte = at + len - 4 - frame::MAC_BYTES - 1;
    bytes[payload_byte] ^= 0x20;
    let crc = crc32c::crc32c(&bytes[at + 4..at + len - 4]);
    bytes[at + len - 4..at + len].copy_from_slice(&crc.to_le_bytes());
}

#[tokio::test]
async fn a_forged_record_refuses_to_start_in_hmac_mode_even_at_the_tail() {
    let key = RecordIntegrity::hmac([7; 32]);
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), hmac_opts(&key)).unwrap();
        append(&mut s, (0..10).map(|i| entry(1, i)).collect()).await;
    }
    // The very last record: where a torn write would be cut, a forgery
    // must still refuse.
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    forge(&mut bytes, &entry(1, 9), &key);
    fs::write(&seg, &bytes).unwrap();

    let err = LogStore::open(dir.path(), hmac_opts(&key))
        .err()
        .expect("must refuse to start");
    let text = err.to_string();
    assert!(
        text.contains("integrity check") && text.contains("entry 9"),
        "{text}"
    );
    assert!(text.contains("security event"), "{text}");
    assert_eq!(key.failures(), 1);
    assert_eq!(fs::read(&seg).unwrap(), bytes, "nothing is cut");

    // The checksum alone cannot see it: in crc32c mode the forgery reads
    // as data. This is what the HMAC is for.
    let mut s = LogStore::open(dir.path(), hmac_opts(&RecordIntegrity::Crc32c)).unwrap();
    let got = s.try_get_log_entries(9..10).await.unwrap();
    assert_ne!(got[0], entry(1, 9));
}

#[tokio::test]
async fn every_read_checks_the_hmac() {
    let key = RecordIntegrity::hmac([7; 32]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = LogStore::open(dir.path(), hmac_opts(&key)).unwrap();
    append(&mut s, (0..10).map(|i| entry(1, i)).collect()).await;
    assert_eq!(indexes(&mut s).await.len(), 10);
    // Changed behind the running node's back (no frame cache: reads hit the disk).
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    forge(&mut bytes, &entry(1, 4), &key);
    fs::write(&seg, &bytes).unwrap();

    let err = s.try_get_log_entries(0..10).await.unwrap_err();
    assert!(err.to_string().contains("entry 4"), "{err}");
    assert_eq!(key.failures(), 1);
    assert_eq!(s.try_get_log_entries(5..10).await.unwrap().len(), 5);
}

#[tokio::test]
async fn unsigned_records_and_another_key_are_refused_in_hmac_mode() {
    for writer in [RecordIntegrity::Crc32c, RecordIntegrity::hmac([8; 32])] {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(dir.path(), hmac_opts(&writer)).unwrap();
            append(&mut s, (0..3).map(|i| entry(1, i)).collect()).await;
        }
        let key = RecordIntegrity::hmac([7; 32]);
        let err = LogStore::open(dir.path(), hmac_opts(&key))
            .err()
            .expect("must refuse to start");
        assert!(err.to_string().contains("integrity check"), "{err}");
        assert_eq!(key.failures(), 1);
    }
}

/// HMAC mode tells a torn write (the checksum fails) from tampering (only
/// the HMAC fails): a torn tail after the last sync is still cut.
#[tokio::test]
async fn in_hmac_mode_a_torn_tail_is_still_cut() {
    for tear_at in [20usize, 60] {
        let opts = hmac_opts(&RecordIntegrity::hmac([7; 32]));
        torn_unsynced_batch_is_cut_exactly_in(opts, |bytes, _, frames| {
            bytes.truncate(frames[1] + tear_at)
        })
        .await;
    }
}

async fn wait_durable_committed(s: &LogStore, want: Option<LogId>) {
    for _ in 0..500 {
        if s.durable_committed() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "committed {want:?} not durable within 5s (on disk: {:?})",
        s.durable_committed()
    );
}

#[tokio::test]
async fn the_committed_log_id_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
        assert_eq!(s.read_committed().await.unwrap(), None);
        append(&mut s, (0..10).map(|i| entry(1, i)).collect()).await;
        s.save_committed(Some(log_id(1, 7))).await.unwrap();
        assert_eq!(s.read_committed().await.unwrap(), Some(log_id(1, 7)));
        wait_durable_committed(&s, Some(log_id(1, 7))).await;
    }
    let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
    assert_eq!(s.recovered_committed(), Some(log_id(1, 7)));
    assert_eq!(s.read_committed().await.unwrap(), Some(log_id(1, 7)));
    // Later values replace it; a purge behind it keeps it valid.
    s.save_committed(Some(log_id(1, 9))).await.unwrap();
    wait_durable_committed(&s, Some(log_id(1, 9))).await;
    s.purge(log_id(1, 9)).await.unwrap();
    s.barrier().await.unwrap();
    drop(s);
    let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
    assert_eq!(s.read_committed().await.unwrap(), Some(log_id(1, 9)));
}

#[tokio::test]
async fn a_committed_id_the_log_does_not_hold_is_ignored_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
        append(&mut s, (0..5).map(|i| entry(1, i)).collect()).await;
    }
    // As if the log had been discarded and rebuilt shorter, or had another
    // entry at that index: start-up could not re-apply up to it.
    let (mut f, _) = super::committed::CommittedFile::open(dir.path()).unwrap();
    f.write(Some(log_id(1, 40))).unwrap();
    drop(f);
    let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
    assert_eq!(s.read_committed().await.unwrap(), None);
    drop(s);
    let (mut f, _) = super::committed::CommittedFile::open(dir.path()).unwrap();
    f.write(Some(log_id(3, 4))).unwrap();
    drop(f);
    let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
    assert_eq!(s.read_committed().await.unwrap(), None);
}

/// The raft core awaits `purge`; it must not wait for the writer (which may
/// be stuck in a stalled fsync), yet later commands see the purge done.
#[tokio::test]
#[allow(clippy::await_holding_lock)]
async fn purge_returns_without_waiting_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
    append(&mut s, (0..20).map(|i| entry(1, i)).collect()).await;
    let segments_before = list_segments(dir.path()).unwrap().len();
    // The writer blocks on the file table when the purge removes a segment.
    let shared = s.shared.clone();
    let busy_writer = shared.files.lock().unwrap();
    tokio::time::timeout(Duration::from_secs(2), s.purge(log_id(1, 9)))
        .await
        .expect("purge waited for the writer")
        .unwrap();
    drop(busy_writer);
    assert_eq!(s.bounds().0, Some(log_id(1, 9)));
    append(&mut s, vec![entry(1, 20)]).await;
    assert!(
        list_segments(dir.path()).unwrap().len() < segments_before,
        "the purge removed no segment, so it never waited for the file table"
    );
    drop(s);
    let mut s = LogStore::open(dir.path(), small_segments()).unwrap();
    assert_eq!(indexes(&mut s).await, (10..21).collect::<Vec<_>>());
}

/// `inspect` reads a stopped log without changing it: the idle mark proves
/// every batch durable; an unsynced batch after it adds entries that are
/// not.
#[tokio::test]
async fn inspect_tells_durable_entries_from_an_unsynced_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append_in_batches(&mut s, 30).await;
    }
    let (first, seg) = last_segment_with_first(dir.path());
    let clean = fs::read(&seg).unwrap();
    let mark = idle_mark_at(&clean, first);
    let seen = inspect(dir.path()).unwrap();
    assert_eq!(seen.active_segment, seg);
    assert_eq!(seen.synced_bytes, mark as u64);
    assert_eq!(seen.frames.len(), 30);
    assert_eq!(
        seen.frames[10].offset,
        frame_at(&clean, &entry(1, 10)) as u64
    );
    assert_eq!(seen.last_index, Some(29));
    assert_eq!(seen.durable_last_index, Some(29));

    let (batch, _) = unsynced_batch(first, mark, &[entry(1, 30), entry(1, 31)]);
    let mut bytes = clean[..mark].to_vec();
    bytes.extend_from_slice(&batch);
    fs::write(&seg, &bytes).unwrap();
    let seen = inspect(dir.path()).unwrap();
    assert_eq!(seen.last_index, Some(31));
    assert_eq!(
        seen.durable_last_index,
        Some(29),
        "the new batch is unproven"
    );
    assert_eq!(seen.written_bytes, bytes.len() as u64);
    assert_eq!(fs::read(&seg).unwrap(), bytes, "inspect writes nothing");
}

/// The `cut-durable-log` mutation brings back the old defect: damage before
/// the mark is cut off like a torn tail, and the log comes back shorter.
#[cfg(feature = "fault-injection")]
#[tokio::test]
async fn the_cut_durable_log_mutation_cuts_what_was_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append_in_batches(&mut s, 40).await;
    }
    let (_, seg) = last_segment_with_first(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let at = frame_at(&bytes, &entry(1, 20));
    bytes[at + 1] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    let opts = LogStoreOptions {
        faults: LogFaults {
            cut_durable_log: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut s = LogStore::open(dir.path(), opts).unwrap();
    let kept = indexes(&mut s).await;
    assert!(kept.len() <= 20, "entries from 20 on are cut: {kept:?}");
}
