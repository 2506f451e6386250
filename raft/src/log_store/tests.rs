use std::fs::{self, OpenOptions};

use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::type_config::TypeConfigExt;

use super::recovery::{list_segments, segment_path};
use super::*;
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

#[tokio::test]
async fn torn_tail_is_cut_off_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append(&mut s, (0..10).map(|i| entry(1, i)).collect()).await;
    }
    let seg = last_segment(dir.path());
    let len = fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..9).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 1);
    // The repaired log takes new appends where the good data ended.
    append(&mut s, vec![entry(2, 9)]).await;
    drop(s);
    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..10).collect::<Vec<_>>());
    assert_eq!(
        s.stats().torn_tail_repairs.load(Ordering::Relaxed),
        0,
        "the repair was durable"
    );
}

#[tokio::test]
async fn corrupt_last_record_and_garbage_tail_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
        append(&mut s, (0..10).map(|i| entry(1, i)).collect()).await;
    }
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x40; // inside the last record's payload
    bytes.extend_from_slice(&[0u8; 100]); // zero-filled preallocation after a crash
    fs::write(&seg, &bytes).unwrap();

    let mut s = LogStore::open(dir.path(), LogStoreOptions::default()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..9).collect::<Vec<_>>());
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
    // A torn write: the last frame's end never reached the disk (zeros).
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let written = super::prealloc::written_len(&bytes);
    bytes[written - 20..written].fill(0);
    fs::write(&seg, &bytes).unwrap();

    let mut s = LogStore::open(dir.path(), prealloc_opts()).unwrap();
    assert_eq!(indexes(&mut s).await, (0..next - 1).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_tail_repairs.load(Ordering::Relaxed), 1);

    // A truncation inside a preallocated segment stays truncated.
    append(
        &mut s,
        (next - 1..next + 3)
            .map(|i| sized_entry(1, i, 100))
            .collect(),
    )
    .await;
    s.truncate_after(Some(log_id(1, next))).await.unwrap();
    append(&mut s, vec![sized_entry(2, next + 1, 50)]).await;
    drop(s);
    let mut s = LogStore::open(dir.path(), prealloc_opts()).unwrap();
    let entries = s.try_get_log_entries(0..u64::MAX).await.unwrap();
    assert_eq!(entries.len() as u64, next + 2);
    assert_eq!(entries.last().unwrap().log_id, log_id(2, next + 1));
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
