//! The `rollups` keyspace: per minute, service and operation, a
//! [`Rollup`] of the spans that started in it (see `crate::rollup`).
//!
//! Apply keeps it in step with the spans, in the same batch: indexing a
//! span adds it to its minute's rollup, replacing a span removes the old
//! version (`spans.rs`). Retention and moves to the cold tier remove spans
//! but not their rollups, which outlive them under a retention of their
//! own: a rollup's minute goes only when the rollups floor passes it.
//!
//! A batch loads each rollup it touches once and writes it once at commit
//! (like the service counters), so ten thousand spans of one operation in
//! one minute cost one read and one write of its rollup.

use fjall::Readable;

use super::keys::{rollup_key, rollup_key_into, rollup_minute_prefix, service_prefix};
use super::{ApplyBatch, HotStore, StoreError, StoreResult};
use crate::analytics::SpanDigest;
use crate::codec::{decode, encode};
use crate::rollup::{minute_of, Rollup, WindowRollups};

/// `meta`: set once the rollups of every stored span exist.
pub(super) const META_ROLLUPS_COMPLETE: &[u8] = b"rollups_complete";
/// Rollups written per batch while backfilling them.
const ROLLUP_BACKFILL_BATCH: usize = 10_000;

impl ApplyBatch<'_> {
    /// The rollup of `d`'s minute, service and operation as of this batch,
    /// loaded on first use. The key is built in a buffer kept by the batch:
    /// only a rollup new to the batch allocates one of its own.
    fn rollup_of(&mut self, d: &SpanDigest) -> StoreResult<&mut Rollup> {
        let mut key = std::mem::take(&mut self.rollup_key);
        rollup_key_into(
            &mut key,
            minute_of(d.start_unix_nanos),
            &d.service,
            &d.operation,
        );
        if !self.rollups.contains_key(&key[..]) {
            let cur = match self.store.keyspaces.rollups.get(&key)? {
                Some(v) => decode(&v)?,
                None => Rollup::default(),
            };
            self.rollups.insert(key.clone(), cur);
        }
        let rollup = self.rollups.get_mut(&key[..]).expect("inserted above");
        self.rollup_key = key;
        Ok(rollup)
    }

    /// Counts the span `d` in its minute's rollup.
    pub(super) fn add_to_rollup(&mut self, d: &SpanDigest) -> StoreResult<()> {
        self.rollup_of(d)?.add(d);
        Ok(())
    }

    /// Forgets the span `d` in its minute's rollup (it was replaced).
    pub(super) fn remove_from_rollup(&mut self, d: &SpanDigest) -> StoreResult<()> {
        self.rollup_of(d)?.remove(d);
        Ok(())
    }

    /// Stages every rollup this batch changed (an emptied one is deleted).
    pub(super) fn stage_rollups(&mut self) {
        let ks = &self.store.keyspaces.rollups;
        for (k, r) in self.rollups.drain() {
            if r.is_empty() {
                self.batch.remove(ks, k);
            } else {
                self.batch.insert(ks, k, encode(&r));
            }
        }
    }

    /// Deletes rollups of minutes that started before `floor_unix_nanos`,
    /// at most `budget`; returns how many.
    pub(super) fn drop_rollups(
        &mut self,
        view: &fjall::Snapshot,
        floor_unix_nanos: u64,
        budget: usize,
    ) -> StoreResult<usize> {
        let ks = &self.store.keyspaces.rollups;
        // Minutes wholly below the floor: a minute the floor cuts through
        // stays until the floor passes its end.
        let below = minute_of(floor_unix_nanos).to_be_bytes().to_vec();
        let mut dropped = 0;
        for kv in view.range(ks, ..below) {
            if dropped == budget {
                break;
            }
            self.batch.remove(ks, kv.key()?.to_vec());
            dropped += 1;
        }
        Ok(dropped)
    }
}

impl HotStore {
    /// The rollups of minutes `[first, last]`, optionally of one service,
    /// merged into `into` per service and operation.
    pub fn merge_rollups(
        &self,
        (first, last): (u64, u64),
        service: Option<&str>,
        into: &mut WindowRollups,
    ) -> StoreResult<()> {
        let ks = &self.keyspaces.rollups;
        let mut visit = |k: &[u8], v: &[u8]| -> StoreResult<()> {
            let (svc, op) = split_rollup_key(k)?;
            into.merge(svc, op, &decode(v)?);
            Ok(())
        };
        match service {
            // Keys lead with the minute: one prefix per minute and service.
            Some(svc) => {
                for minute in first..=last {
                    let mut prefix = rollup_minute_prefix(minute);
                    prefix.extend_from_slice(&service_prefix(svc));
                    for kv in ks.prefix(&prefix) {
                        let (k, v) = kv.into_inner()?;
                        visit(&k, &v)?;
                    }
                }
            }
            None => {
                let lo = rollup_minute_prefix(first);
                let hi = rollup_minute_prefix(last.saturating_add(1));
                let range = if last == u64::MAX {
                    ks.range(lo..)
                } else {
                    ks.range(lo..hi)
                };
                for kv in range {
                    let (k, v) = kv.into_inner()?;
                    visit(&k, &v)?;
                }
            }
        }
        Ok(())
    }

    /// Builds the rollups of every stored span, once, for a store (or
    /// snapshot) written before rollups existed. Deterministic in the
    /// stored spans, so every replica writes the same.
    pub(crate) fn backfill_rollups(&self) -> StoreResult<()> {
        let ks = &self.keyspaces;
        if ks.meta.get(META_ROLLUPS_COMPLETE)?.is_some() {
            return Ok(());
        }
        // The time index is in start order, so a minute is complete once a
        // later one shows up: rollups are written a few minutes at a time.
        let mut pending: std::collections::BTreeMap<Vec<u8>, Rollup> = Default::default();
        let mut pending_minute = None;
        let flush = |pending: &mut std::collections::BTreeMap<Vec<u8>, Rollup>| {
            let mut batch = self.db.batch();
            for (k, r) in std::mem::take(pending) {
                batch.insert(&ks.rollups, k, encode(&r));
            }
            batch.commit()
        };
        for kv in ks.by_time.iter() {
            let (_, v) = kv.into_inner()?;
            let d: SpanDigest = decode(&v)?;
            let minute = minute_of(d.start_unix_nanos);
            if pending_minute != Some(minute) && pending.len() >= ROLLUP_BACKFILL_BATCH {
                flush(&mut pending)?;
            }
            pending_minute = Some(minute);
            pending
                .entry(rollup_key(minute, &d.service, &d.operation))
                .or_default()
                .add(&d);
        }
        flush(&mut pending)?;
        // Only after every rollup: an interrupted backfill starts over.
        ks.meta.insert(META_ROLLUPS_COMPLETE, b"")?;
        Ok(())
    }
}

/// The service and operation of a rollup key.
fn split_rollup_key(k: &[u8]) -> StoreResult<(&str, &str)> {
    let bad = || StoreError::Corrupt("rollup key".into());
    let len = u16::from_be_bytes(
        k.get(8..10)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let svc_end = 10 + usize::from(len);
    let svc = std::str::from_utf8(k.get(10..svc_end).ok_or_else(bad)?).map_err(|_| bad())?;
    let op = std::str::from_utf8(&k[svc_end..]).map_err(|_| bad())?;
    Ok((svc, op))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{apply_spans, log_id, open_store, test_span};
    use super::*;
    use crate::model::SpanStatus;
    use crate::retention::{RetentionCut, RetentionPolicy};
    use crate::rollup::MINUTE_NANOS;

    fn window(store: &HotStore, minutes: (u64, u64), svc: Option<&str>) -> WindowRollups {
        let mut w = WindowRollups::default();
        store.merge_rollups(minutes, svc, &mut w).unwrap();
        w
    }

    fn count(store: &HotStore) -> usize {
        store.read_view().iter(&store.keyspaces.rollups).count()
    }

    #[test]
    fn spans_are_counted_in_their_minutes_rollup() {
        let (_dir, store) = open_store();
        let mut b = test_span(2, 1, MINUTE_NANOS + 5);
        b.status = SpanStatus::Error;
        let mut other = test_span(3, 1, MINUTE_NANOS + 7);
        other.service = "cart".into();
        apply_spans(
            &store,
            1,
            vec![test_span(1, 1, 5), test_span(1, 2, 6), b, other],
        );
        assert_eq!(
            count(&store),
            3,
            "(minute 0, checkout), (1, checkout), (1, cart)"
        );
        let w = window(&store, (1, 1), Some("checkout"));
        assert_eq!(w.by_operation.len(), 1);
        let s = w.total().stats();
        assert_eq!((s.span_count, s.error_count), (1, 1));
        let w = window(&store, (0, 1), None);
        assert_eq!(w.total().span_count, 4);
        assert_eq!(w.by_service()["cart"].span_count, 1);
    }

    #[test]
    fn a_replaced_span_leaves_its_old_minute_and_counts_once() {
        let (_dir, store) = open_store();
        apply_spans(&store, 1, vec![test_span(1, 1, 5), test_span(1, 2, 6)]);
        // Same ids, another minute and duration: moves, not added.
        let mut moved = test_span(1, 1, 3 * MINUTE_NANOS);
        moved.end_unix_nanos = moved.start_unix_nanos + 1_000;
        apply_spans(&store, 2, vec![moved.clone(), test_span(1, 2, 6)]);
        let old = window(&store, (0, 0), None).total();
        assert_eq!(old.span_count, 1);
        let new = window(&store, (3, 3), None).total();
        assert_eq!((new.span_count, new.max_nanos), (1, 1_000));
        assert_eq!(window(&store, (0, u64::MAX), None).total().span_count, 2);
        // Replaced within the minute: count unchanged, figures follow.
        let mut longer = moved;
        longer.end_unix_nanos = longer.start_unix_nanos + 5_000;
        apply_spans(&store, 3, vec![longer]);
        let r = window(&store, (3, 3), None).total();
        assert_eq!(
            (r.span_count, r.duration_sum_nanos, r.max_nanos),
            (1, 5_000, 5_000)
        );
    }

    #[test]
    fn a_batch_of_many_spans_writes_each_rollup_once() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        for i in 0..10_000u32 {
            let mut s = test_span(0, 0, 5 + u64::from(i));
            s.trace_id[..4].copy_from_slice(&i.to_be_bytes());
            b.put_span(s).unwrap();
        }
        assert_eq!(b.rollups.len(), 1, "one rollup cached for the batch");
        b.commit(Some(log_id(1)), None).unwrap();
        assert_eq!(window(&store, (0, 0), None).total().span_count, 10_000);
    }

    #[test]
    fn retention_deletes_spans_but_keeps_their_rollups_until_the_rollups_floor() {
        let (_dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![test_span(1, 1, 5), test_span(2, 1, 10 * MINUTE_NANOS)],
        );
        let cut = |index: u64, now: u64, traces_secs: u64, rollups_secs: u64| {
            let c = RetentionCut {
                policy: RetentionPolicy {
                    traces_secs,
                    rollups_secs,
                    ..Default::default()
                },
                stamped_unix_nanos: now,
            };
            let mut b = store.begin();
            b.begin_entry(index);
            b.apply_retention(index, &c).unwrap();
            b.commit(Some(log_id(index)), None).unwrap();
        };
        // Spans older than a minute go; rollups are kept a day.
        cut(2, 20 * MINUTE_NANOS, 60, 86_400);
        assert!(store.trace(&[1; 16]).unwrap().is_empty());
        assert!(store.trace(&[2; 16]).unwrap().is_empty());
        let all = window(&store, (0, u64::MAX), None);
        assert_eq!(all.total().span_count, 2, "the minutes outlive their spans");
        // The rollups floor passes minute 0 only.
        cut(3, 5 * MINUTE_NANOS + 86_400 * 1_000_000_000, 60, 86_400);
        assert_eq!(count(&store), 1);
        assert_eq!(window(&store, (10, 10), None).total().span_count, 1);
        assert_eq!(store.retention_state().unwrap().deleted.rollups, 1);
    }

    #[test]
    fn a_store_without_rollups_gets_them_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
            let spans = (0..50u8).map(|i| test_span(i, 1, u64::from(i) * MINUTE_NANOS / 7));
            apply_spans(&store, 1, spans.collect());
            // As a version without rollups left it.
            let mut b = store.db.batch();
            for kv in store.read_view().iter(&store.keyspaces.rollups) {
                b.remove(&store.keyspaces.rollups, kv.key().unwrap().to_vec());
            }
            b.remove(&store.keyspaces.meta, META_ROLLUPS_COMPLETE.to_vec());
            b.commit().unwrap();
            assert_eq!(count(&store), 0);
        }
        let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
        assert_eq!(count(&store), 8, "minutes 0 to 7");
        assert_eq!(window(&store, (0, u64::MAX), None).total().span_count, 50);
        // Replacing a backfilled span finds it counted.
        apply_spans(&store, 2, vec![test_span(3, 1, 3 * MINUTE_NANOS / 7)]);
        assert_eq!(window(&store, (0, u64::MAX), None).total().span_count, 50);
    }

    /// Exports `store` and imports the file into a fresh store.
    fn through_a_snapshot(dir: &std::path::Path, store: &HotStore) -> HotStore {
        let path = dir.join("s.snap");
        let meta = tael_consensus::SnapshotMeta::default();
        crate::state::snapshot::export(store, &store.read_view(), &meta, &path).unwrap();
        let new = HotStore::open(&dir.join("imported"), 1, 1 << 20).unwrap();
        crate::state::snapshot::import(&path, &new).unwrap();
        new
    }

    #[test]
    fn a_snapshot_brings_its_rollups_as_they_are_and_an_old_one_gets_them_built() {
        let (dir, store) = open_store();
        apply_spans(
            &store,
            1,
            vec![test_span(1, 1, 5), test_span(2, 1, 10 * MINUTE_NANOS)],
        );
        let c = RetentionCut {
            policy: RetentionPolicy {
                traces_secs: 60,
                ..Default::default()
            },
            stamped_unix_nanos: 5 * MINUTE_NANOS,
        };
        let mut b = store.begin();
        b.begin_entry(2);
        b.apply_retention(2, &c).unwrap();
        b.commit(Some(log_id(2)), None).unwrap();
        // Minute 0 lost its span but keeps its rollup; the import must not
        // rebuild rollups from the spans it holds.
        let new = through_a_snapshot(dir.path(), &store);
        assert_eq!(window(&new, (0, u64::MAX), None).total().span_count, 2);

        // A snapshot of a version without rollups: built on import.
        let old_dir = tempfile::tempdir().unwrap();
        let old = HotStore::open(&old_dir.path().join("old"), 1, 1 << 20).unwrap();
        apply_spans(
            &old,
            1,
            vec![test_span(1, 1, 5), test_span(2, 1, MINUTE_NANOS)],
        );
        let mut b = old.db.batch();
        for kv in old.read_view().iter(&old.keyspaces.rollups) {
            b.remove(&old.keyspaces.rollups, kv.key().unwrap().to_vec());
        }
        b.remove(&old.keyspaces.meta, META_ROLLUPS_COMPLETE.to_vec());
        b.commit().unwrap();
        let new = through_a_snapshot(old_dir.path(), &old);
        assert_eq!(count(&new), 2);
        assert_eq!(window(&new, (0, u64::MAX), None).total().span_count, 2);
    }
}
