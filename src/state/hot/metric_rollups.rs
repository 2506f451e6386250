//! The `metric_rollups` keyspace: per resolution (minute, hour), series
//! and bucket, a [`MetricRollup`] of the points stamped in it (see
//! `crate::metric_rollup`).
//!
//! Apply keeps it in step with the points, in the same batch: a point new
//! to the store is folded into its minute's and its hour's rollup. A point
//! already stored (the same content, so the same record key) is not folded
//! again: a retried or re-sent export changes no rollup (see
//! `ApplyBatch::add_to_metric_rollups` for how that is known without a
//! read per point). Retention and moves
//! to the cold tier remove points but not their rollups, which go when the
//! rollups floor passes their day.
//!
//! Like the span rollups, a batch loads each rollup it touches once and
//! writes it once at commit.
//!
//! Known limit: a point re-sent after its raw copy left the hot tier (moved
//! to the cold tier, or cut by retention) is new to the hot tier and is
//! counted again.

use std::collections::{BTreeMap, BTreeSet};

use fjall::Readable;

use super::keys::{
    metric_rollup_day_key, metric_rollup_key_into, metric_rollup_name_prefix,
    split_metric_rollup_key, DAY_NANOS, RECORD_KEY_LEN,
};
use super::{ApplyBatch, HotStore, StoreError, StoreResult};
use crate::codec::{decode, encode};
use crate::metric_rollup::{MetricRollup, Resolution, SeriesId};
use crate::model::MetricPoint;

/// `meta`: set once the rollups of every stored metric point exist.
pub(super) const META_METRIC_ROLLUPS_COMPLETE: &[u8] = b"metric_rollups_complete";
/// Rollups a backfill holds before writing them.
const METRIC_ROLLUP_BACKFILL_BATCH: usize = 10_000;

/// The rollups of one metric name read for a range: per series, its
/// buckets in time order.
pub type NameRollups = BTreeMap<SeriesId, Vec<(u64, MetricRollup)>>;

impl ApplyBatch<'_> {
    /// Folds the point `p`, stored under `key`, into its minute's and its
    /// hour's rollup, unless it was folded before: staged earlier in this
    /// batch, or stored already (the same content re-sent). Asking the
    /// store costs a read per point, so it is asked only when the rollups
    /// cannot tell: a point later than its minute's last, or the first of
    /// its series in an hour that has rollups, cannot have been folded
    /// (minute and hour rollups are kept and deleted together, by day).
    pub(super) fn add_to_metric_rollups(
        &mut self,
        p: &MetricPoint,
        key: &[u8; RECORD_KEY_LEN],
    ) -> StoreResult<()> {
        if !self.metric_keys.insert(*key) {
            return Ok(());
        }
        let series = SeriesId::of(p);
        let mut k = std::mem::take(&mut self.rollup_key);
        let bucket = |res: Resolution| res.bucket_of(p.timestamp_unix_nanos);
        metric_rollup_key_into(
            &mut k,
            Resolution::Hour,
            &p.name,
            &series,
            bucket(Resolution::Hour),
        );
        let hour_known = self.metric_rollup_mut(&k)?.is_some();
        metric_rollup_key_into(
            &mut k,
            Resolution::Minute,
            &p.name,
            &series,
            bucket(Resolution::Minute),
        );
        let may_be_stored = match self.metric_rollup_mut(&k)? {
            Some(minute) => p.timestamp_unix_nanos <= minute.last.timestamp_unix_nanos,
            None => !hour_known,
        };
        if !(may_be_stored && self.store.keyspaces.metrics.contains_key(key)?) {
            for res in Resolution::ALL {
                metric_rollup_key_into(&mut k, res, &p.name, &series, bucket(res));
                // Both were looked up above: one not in the batch's map
                // is in neither the batch nor the store.
                match self.metric_rollups.get_mut(&k[..]) {
                    Some(r) => r.add(p),
                    None => {
                        self.metric_rollups.insert(k.clone(), MetricRollup::of(p));
                    }
                }
            }
        }
        self.rollup_key = k;
        Ok(())
    }

    /// The rollup under `key` as of this batch (loaded from the store on
    /// first use); None when there is none yet.
    fn metric_rollup_mut(&mut self, key: &[u8]) -> StoreResult<Option<&mut MetricRollup>> {
        if !self.metric_rollups.contains_key(key) {
            let Some(v) = self.store.keyspaces.metric_rollups.get(key)? else {
                return Ok(None);
            };
            self.metric_rollups.insert(key.to_vec(), decode(&v)?);
        }
        Ok(self.metric_rollups.get_mut(key))
    }

    /// Stages every metric rollup this batch changed.
    pub(super) fn stage_metric_rollups(&mut self) {
        let ks = &self.store.keyspaces.metric_rollups;
        for (k, r) in self.metric_rollups.drain() {
            self.batch.insert(ks, k, encode(&r));
        }
    }

    /// Deletes metric rollups of days that ended by `floor_unix_nanos`, at
    /// most `budget`; returns how many. A day the floor cuts through stays
    /// until the floor passes its end (so rollups are kept up to a day
    /// longer than `--retention-rollups`).
    pub(super) fn drop_metric_rollups(
        &mut self,
        view: &fjall::Snapshot,
        floor_unix_nanos: u64,
        budget: usize,
    ) -> StoreResult<usize> {
        let ks = &self.store.keyspaces.metric_rollups;
        let floor_day = floor_unix_nanos / DAY_NANOS;
        let mut dropped = 0;
        for res in Resolution::ALL {
            let range = metric_rollup_day_key(res, 0)..metric_rollup_day_key(res, floor_day);
            for kv in view.range(ks, range) {
                if dropped == budget {
                    return Ok(dropped);
                }
                self.batch.remove(ks, kv.key()?.to_vec());
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}

impl HotStore {
    /// The rollups at `res` of metric `name` for buckets `[first, last]`,
    /// per series; at most `max_rollups` (true when more were left out).
    pub fn metric_rollups(
        &self,
        name: &str,
        res: Resolution,
        (first, last): (u64, u64),
        max_rollups: usize,
    ) -> StoreResult<(NameRollups, bool)> {
        let ks = &self.keyspaces.metric_rollups;
        let mut out = NameRollups::new();
        let mut read = 0usize;
        let Some(days) = self.stored_days(res, (first, last))? else {
            return Ok((out, false));
        };
        for day in days.0..=days.1 {
            for kv in ks.prefix(metric_rollup_name_prefix(res, day, name)) {
                let (k, v) = kv.into_inner()?;
                let (series, bucket) = split_metric_rollup_key(&k)
                    .ok_or_else(|| StoreError::Corrupt("metric rollup key".into()))?;
                if bucket < first || bucket > last {
                    continue;
                }
                if read == max_rollups {
                    return Ok((out, true));
                }
                read += 1;
                out.entry(series).or_default().push((bucket, decode(&v)?));
            }
        }
        Ok((out, false))
    }

    /// Metric names with rollups at `res` on the days of buckets
    /// `[first, last]`, at most `max_names`: one seek per name and day,
    /// not a read of every rollup.
    pub fn metric_rollup_names(
        &self,
        res: Resolution,
        (first, last): (u64, u64),
        max_names: usize,
    ) -> StoreResult<BTreeSet<String>> {
        let ks = &self.keyspaces.metric_rollups;
        let mut names = BTreeSet::new();
        let Some(days) = self.stored_days(res, (first, last))? else {
            return Ok(names);
        };
        for day in days.0..=days.1 {
            let end = metric_rollup_day_key(res, day.saturating_add(1));
            let mut from = metric_rollup_day_key(res, day);
            while names.len() < max_names {
                let Some(kv) = ks.range(from.clone()..end.clone()).next() else {
                    break;
                };
                let k = kv.key()?;
                let name = rollup_key_name(&k)?;
                // Past every key of this name: series id and bucket are 24
                // bytes, so 25 bytes of 0xff sort after all of them.
                from = metric_rollup_name_prefix(res, day, name);
                from.extend_from_slice(&[0xff; 25]);
                names.insert(name.to_string());
            }
        }
        Ok(names)
    }

    /// The days of buckets `[first, last]` at `res`, narrowed to the days
    /// that hold rollups (a window from 0 to the end of time visits only
    /// those); None when none do.
    fn stored_days(
        &self,
        res: Resolution,
        (first, last): (u64, u64),
    ) -> StoreResult<Option<(u64, u64)>> {
        let ks = &self.keyspaces.metric_rollups;
        let day_of = |k: &[u8]| -> StoreResult<u64> {
            k.get(1..9)
                .and_then(|d| d.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt("metric rollup key".into()))
        };
        // Two iterators: one drained from both ends would give a lone key
        // to the first end only.
        let lo = ks.prefix([res.key_byte()]).next();
        let hi = ks.prefix([res.key_byte()]).next_back();
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(None);
        };
        let stored = (day_of(&lo.key()?)?, day_of(&hi.key()?)?);
        let wanted = (
            res.bucket_start(first) / DAY_NANOS,
            res.bucket_start(last) / DAY_NANOS,
        );
        let days = (wanted.0.max(stored.0), wanted.1.min(stored.1));
        Ok((days.0 <= days.1).then_some(days))
    }

    /// Builds the rollups of every stored metric point, once, for a store
    /// (or snapshot) written before metric rollups existed. Deterministic
    /// in the stored points, so every replica writes the same.
    pub(crate) fn backfill_metric_rollups(&self) -> StoreResult<()> {
        let ks = &self.keyspaces;
        if ks.meta.get(META_METRIC_ROLLUPS_COMPLETE)?.is_some() {
            return Ok(());
        }
        // Rollups present without the flag are from a backfill that was
        // interrupted: start over from none, or they would count twice.
        let mut clear = self.db.batch();
        for kv in ks.metric_rollups.iter() {
            clear.remove(&ks.metric_rollups, kv.key()?.to_vec());
        }
        clear.commit()?;
        let mut pending: BTreeMap<Vec<u8>, MetricRollup> = BTreeMap::new();
        // Written a batch at a time, each merged into what an earlier
        // batch wrote (an hour's points may span batches).
        let flush = |pending: &mut BTreeMap<Vec<u8>, MetricRollup>| -> StoreResult<()> {
            let mut batch = self.db.batch();
            for (k, mut r) in std::mem::take(pending) {
                if let Some(v) = ks.metric_rollups.get(&k)? {
                    let mut stored: MetricRollup = decode(&v)?;
                    stored.merge(&r);
                    r = stored;
                }
                batch.insert(&ks.metric_rollups, k, encode(&r));
            }
            batch.commit()?;
            Ok(())
        };
        let mut key = Vec::new();
        for kv in ks.metrics.iter() {
            let (_, v) = kv.into_inner()?;
            let p: MetricPoint = decode(&v)?;
            let series = SeriesId::of(&p);
            for res in Resolution::ALL {
                let bucket = res.bucket_of(p.timestamp_unix_nanos);
                metric_rollup_key_into(&mut key, res, &p.name, &series, bucket);
                match pending.get_mut(&key) {
                    Some(r) => r.add(&p),
                    None => {
                        pending.insert(key.clone(), MetricRollup::of(&p));
                    }
                }
            }
            if pending.len() >= METRIC_ROLLUP_BACKFILL_BATCH {
                flush(&mut pending)?;
            }
        }
        flush(&mut pending)?;
        // Only after every rollup: an interrupted backfill starts over.
        ks.meta.insert(META_METRIC_ROLLUPS_COMPLETE, b"")?;
        Ok(())
    }
}

/// The metric name in a `metric_rollups` key.
fn rollup_key_name(k: &[u8]) -> StoreResult<&str> {
    let bad = || StoreError::Corrupt("metric rollup key".into());
    let len = u16::from_be_bytes(
        k.get(9..11)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let end = 11 + usize::from(len);
    std::str::from_utf8(k.get(11..end).ok_or_else(bad)?).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{keyspace_len, log_id, open_store, test_point};
    use super::*;
    use crate::retention::{RetentionCut, RetentionPolicy};

    const SEC: u64 = 1_000_000_000;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;

    fn point(route: &str, t: u64, value: f64) -> MetricPoint {
        let mut p = test_point(t);
        p.value = value;
        p.attributes = vec![("route".into(), route.into())];
        p
    }

    fn apply(store: &HotStore, index: u64, points: &[MetricPoint]) {
        let mut b = store.begin();
        b.begin_entry(index);
        for p in points {
            b.put_metric(p).unwrap();
        }
        b.commit(Some(log_id(index)), None).unwrap();
    }

    fn all(store: &HotStore, res: Resolution) -> NameRollups {
        let (r, truncated) = store
            .metric_rollups("requests", res, (0, u64::MAX), usize::MAX)
            .unwrap();
        assert!(!truncated);
        r
    }

    /// Per series (by route), its (bucket, count, sum, min, max, last).
    fn figures(store: &HotStore, res: Resolution) -> BTreeMap<String, Vec<[f64; 6]>> {
        all(store, res)
            .into_values()
            .map(|buckets| {
                let route = buckets[0].1.last.attributes[0].1.clone();
                let rows = buckets
                    .iter()
                    .map(|(b, r)| [*b as f64, r.count as f64, r.sum, r.min, r.max, r.last.value])
                    .collect();
                (route, rows)
            })
            .collect()
    }

    #[test]
    fn points_fold_per_series_into_minutes_and_hours() {
        let (_dir, store) = open_store();
        apply(
            &store,
            1,
            &[
                point("/a", 5 * SEC, 1.0),
                point("/a", 50 * SEC, 3.0),
                point("/b", 20 * SEC, 100.0),
                point("/a", MIN + 1, 2.0),
            ],
        );
        apply(&store, 2, &[point("/a", HOUR + 7 * SEC, 9.0)]);
        let minutes = figures(&store, Resolution::Minute);
        assert_eq!(
            minutes["/a"],
            [
                [0.0, 2.0, 4.0, 1.0, 3.0, 3.0],
                [1.0, 1.0, 2.0, 2.0, 2.0, 2.0],
                [60.0, 1.0, 9.0, 9.0, 9.0, 9.0],
            ]
        );
        assert_eq!(minutes["/b"], [[0.0, 1.0, 100.0, 100.0, 100.0, 100.0]]);
        let hours = figures(&store, Resolution::Hour);
        assert_eq!(
            hours["/a"],
            [
                [0.0, 3.0, 6.0, 1.0, 3.0, 2.0],
                [1.0, 1.0, 9.0, 9.0, 9.0, 9.0]
            ]
        );
        assert_eq!(hours["/b"], [[0.0, 1.0, 100.0, 100.0, 100.0, 100.0]]);
        // A bucket range leaves the others out.
        let (hour_one, _) = store
            .metric_rollups("requests", Resolution::Minute, (1, 59), usize::MAX)
            .unwrap();
        assert_eq!(hour_one.values().map(Vec::len).sum::<usize>(), 1);
        let (_, truncated) = store
            .metric_rollups("requests", Resolution::Minute, (0, 60), 2)
            .unwrap();
        assert!(truncated);
    }

    #[test]
    fn applying_the_same_points_again_counts_them_once() {
        let (_dir, store) = open_store();
        let points = [point("/a", 5 * SEC, 1.0), point("/a", 6 * SEC, 2.0)];
        // Twice in one batch, then again in a later one.
        let mut b = store.begin();
        b.begin_entry(1);
        for p in points.iter().chain(&points) {
            b.put_metric(p).unwrap();
        }
        b.commit(Some(log_id(1)), None).unwrap();
        apply(&store, 2, &points);
        let once = [[0.0, 2.0, 3.0, 1.0, 2.0, 2.0]];
        assert_eq!(figures(&store, Resolution::Minute)["/a"], once);
        assert_eq!(figures(&store, Resolution::Hour)["/a"], once);
        // A point differing in its value is another point.
        apply(&store, 3, &[point("/a", 6 * SEC, 4.0)]);
        assert_eq!(figures(&store, Resolution::Minute)["/a"][0][1], 3.0);
    }

    #[test]
    fn a_stored_point_without_rollups_is_not_folded_again() {
        let (_dir, store) = open_store();
        apply(&store, 1, &[point("/a", 5 * SEC, 1.0)]);
        // Its rollups gone (a rollups retention shorter than the points'),
        // the point itself kept: sent again, the store says it is known.
        let mut b = store.db.batch();
        for kv in store.read_view().iter(&store.keyspaces.metric_rollups) {
            b.remove(&store.keyspaces.metric_rollups, kv.key().unwrap().to_vec());
        }
        b.commit().unwrap();
        apply(&store, 2, &[point("/a", 5 * SEC, 1.0)]);
        assert_eq!(keyspace_len(&store, &store.keyspaces.metric_rollups), 0);
        // A point earlier than its minute's last but new is folded.
        apply(
            &store,
            3,
            &[point("/a", 7 * SEC, 2.0), point("/a", 6 * SEC, 3.0)],
        );
        assert_eq!(
            figures(&store, Resolution::Minute)["/a"],
            [[0.0, 2.0, 5.0, 2.0, 3.0, 2.0]]
        );
    }

    #[test]
    fn retention_deletes_points_and_keeps_rollups_until_the_rollups_floor() {
        let (_dir, store) = open_store();
        let day = DAY_NANOS;
        apply(
            &store,
            1,
            &[point("/a", 5 * SEC, 1.0), point("/a", 2 * day + 5, 2.0)],
        );
        let cut = |index: u64, now: u64, metrics_secs: u64, rollups_secs: u64| {
            let c = RetentionCut {
                policy: RetentionPolicy {
                    metrics_secs,
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
        // Points older than a minute go; rollups are kept ten days.
        cut(2, 3 * day, 60, 10 * 86_400);
        assert_eq!(keyspace_len(&store, &store.keyspaces.metrics), 0);
        assert_eq!(
            all(&store, Resolution::Minute)[&SeriesId::of(&point("/a", 0, 0.0))].len(),
            2
        );
        assert_eq!(keyspace_len(&store, &store.keyspaces.metric_rollups), 4);
        // The rollups floor passes day 0 (by its end) but not day 2.
        cut(3, 11 * day + HOUR, 60, 10 * 86_400);
        let left = figures(&store, Resolution::Hour);
        assert_eq!(left["/a"], [[48.0, 1.0, 2.0, 2.0, 2.0, 2.0]]);
        assert_eq!(keyspace_len(&store, &store.keyspaces.metric_rollups), 2);
        assert_eq!(store.retention_state().unwrap().deleted.metric_rollups, 2);
    }

    #[test]
    fn names_are_read_from_rollups_one_seek_each() {
        let (_dir, store) = open_store();
        let mut points = Vec::new();
        for (i, name) in ["a", "b", "bb", "c"].into_iter().enumerate() {
            for t in 0..5 {
                let mut p = point("/", t * MIN + i as u64, t as f64);
                p.name = name.into();
                points.push(p);
            }
        }
        apply(&store, 1, &points);
        let names = |res, window, max| -> Vec<String> {
            store
                .metric_rollup_names(res, window, max)
                .unwrap()
                .into_iter()
                .collect()
        };
        assert_eq!(
            names(Resolution::Minute, (0, u64::MAX), 10),
            ["a", "b", "bb", "c"]
        );
        assert_eq!(names(Resolution::Hour, (0, 0), 2), ["a", "b"]);
        assert!(names(Resolution::Hour, (25, 30), 10).is_empty());
    }

    #[test]
    fn a_store_without_metric_rollups_gets_them_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let expected;
        {
            let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
            let points: Vec<_> = (0..40u64)
                .map(|i| point(if i % 3 == 0 { "/a" } else { "/b" }, i * 7 * SEC, i as f64))
                .collect();
            apply(&store, 1, &points);
            expected = (
                figures(&store, Resolution::Minute),
                figures(&store, Resolution::Hour),
            );
            // As a version without metric rollups left it, with a
            // backfill interrupted half way.
            let mut b = store.db.batch();
            let ks = &store.keyspaces;
            for (i, kv) in store.read_view().iter(&ks.metric_rollups).enumerate() {
                if i % 2 == 0 {
                    b.remove(&ks.metric_rollups, kv.key().unwrap().to_vec());
                }
            }
            b.remove(&ks.meta, META_METRIC_ROLLUPS_COMPLETE.to_vec());
            b.commit().unwrap();
        }
        let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
        assert_eq!(figures(&store, Resolution::Minute), expected.0);
        assert_eq!(figures(&store, Resolution::Hour), expected.1);
    }
}
