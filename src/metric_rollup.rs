//! Metric rollups: per series, the points of each minute and of each hour
//! folded into one [`MetricRollup`] (count, sum, min, max, the last point,
//! merged histogram buckets), so a query over a long range, or over a range
//! whose raw points retention already deleted, reads one value per series
//! and minute (or hour) instead of every point.
//!
//! The hot tier keeps them in the `metric_rollups` keyspace
//! (`state::hot::metric_rollups`), maintained by apply in the same batch as
//! the points, so every replica holds the same rollups; retention deletes
//! raw points but not their rollups, which go under `--retention-rollups`.
//!
//! A series is everything that tells one stream of points from another:
//! name, service, type, unit, attributes, temporality and monotonicity
//! ([`SeriesId`]); two series are never folded together. The values folded
//! are each point's `value` (gauge and sum: the value; histogram and
//! summary: the sum of observations).
//!
//! What a rollup keeps and loses (docs/operations.md): count, sum, min and
//! max of the values are exact; `last` is the point with the latest
//! timestamp, whole (labels, value, histogram, quantiles), which is what
//! PromQL reads over ranges without raw points: one sample per minute or
//! hour. Histogram buckets are summed over the points whose bounds are equal
//! (meaningful for delta histograms; for cumulative ones read `last`); points
//! with other bounds keep buckets of their own, up to
//! [`MAX_BOUND_SETS_PER_ROLLUP`] sets, beyond which only their count is kept
//! (`unmerged_histogram_points`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{HistogramData, MetricPoint, Temporality};

/// Distinct histogram bound sets one rollup keeps buckets for. A series
/// whose bounds change every point would otherwise grow its rollups without
/// limit.
pub const MAX_BOUND_SETS_PER_ROLLUP: usize = 4;

/// The widths rollups are kept at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    /// Every resolution, finest first: apply writes each.
    pub const ALL: [Resolution; 2] = [Resolution::Minute, Resolution::Hour];

    pub fn width_nanos(self) -> u64 {
        match self {
            Resolution::Minute => 60 * 1_000_000_000,
            Resolution::Hour => 3_600 * 1_000_000_000,
        }
    }

    /// The bucket (unix minute or hour) `t_unix_nanos` falls in.
    pub fn bucket_of(self, t_unix_nanos: u64) -> u64 {
        t_unix_nanos / self.width_nanos()
    }

    /// Where `bucket` starts, in unix nanoseconds.
    pub fn bucket_start(self, bucket: u64) -> u64 {
        bucket.saturating_mul(self.width_nanos())
    }

    /// The byte that leads this resolution's keys.
    pub fn key_byte(self) -> u8 {
        match self {
            Resolution::Minute => b'm',
            Resolution::Hour => b'h',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Resolution::Minute => "1m",
            Resolution::Hour => "1h",
        }
    }

    /// The coarsest resolution whose width divides `step_nanos` evenly,
    /// None when the step is shorter than a minute or not a whole number
    /// of minutes (raw points answer those).
    pub fn for_step(step_nanos: u64) -> Option<Resolution> {
        Resolution::ALL
            .into_iter()
            .rev()
            .find(|r| step_nanos >= r.width_nanos() && step_nanos.is_multiple_of(r.width_nanos()))
    }
}

/// The identity of a series: a hash of every field that tells its points
/// from another series' points (not the time, value or start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesId(pub [u8; 16]);

impl SeriesId {
    /// The hash of the series fields, each string length-prefixed so no
    /// two different label sets hash the same bytes. This byte layout is a
    /// storage format: changing it would give stored series new ids.
    pub fn of(p: &MetricPoint) -> SeriesId {
        let mut h = Sha256::new();
        let mut text = |s: &str| {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        };
        text(&p.name);
        text(&p.service);
        text(p.metric_type.as_str());
        text(&p.unit);
        text(p.temporality.map_or("", Temporality::as_str));
        text(match p.is_monotonic {
            None => "",
            Some(true) => "monotonic",
            Some(false) => "not monotonic",
        });
        for (k, v) in &p.attributes {
            text(k);
            text(v);
        }
        let digest = h.finalize();
        SeriesId(digest[..16].try_into().expect("a sha256 has 16 bytes"))
    }
}

/// Histogram buckets summed over points with the same bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedBuckets {
    /// Upper bounds, as the points carried them.
    pub bounds: Vec<f64>,
    /// One more than `bounds`: per bucket, the sum over the points.
    pub counts: Vec<u64>,
    /// Observations over the points (the sum of their counts).
    pub count: u64,
    /// The sum of observations, over the points that carried one.
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Points merged in here.
    pub points: u64,
}

impl MergedBuckets {
    fn of(h: &HistogramData) -> MergedBuckets {
        MergedBuckets {
            bounds: h.bounds.clone(),
            counts: h.counts.clone(),
            count: h.count,
            sum: h.sum.unwrap_or(0.0),
            min: h.min,
            max: h.max,
            points: 1,
        }
    }

    fn merge(&mut self, other: &MergedBuckets) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.min = min_of(self.min, other.min);
        self.max = max_of(self.max, other.max);
        self.points += other.points;
    }
}

fn min_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The points of one series in one bucket (or, merged, in several).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRollup {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The point with the latest timestamp; of points stamped alike, the
    /// first folded in (apply order, the same on every replica).
    pub last: MetricPoint,
    /// Buckets per distinct bound set, in the order the sets first came.
    pub histograms: Vec<MergedBuckets>,
    /// Histogram points whose bounds found no room among
    /// [`MAX_BOUND_SETS_PER_ROLLUP`] sets: counted, buckets not kept.
    pub unmerged_histogram_points: u64,
}

impl MetricRollup {
    /// The rollup of the single point `p`.
    pub fn of(p: &MetricPoint) -> MetricRollup {
        let mut r = MetricRollup {
            count: 1,
            sum: p.value,
            min: p.value,
            max: p.value,
            last: p.clone(),
            histograms: Vec::new(),
            unmerged_histogram_points: 0,
        };
        if let Some(h) = p.histogram.as_ref().filter(|h| well_formed(h)) {
            r.histograms.push(MergedBuckets::of(h));
        }
        r
    }

    /// Folds in the point `p` of the same series. Apply calls this for
    /// every point twice (minute and hour), so it copies only what differs
    /// between points of a series: a later point's labels are this one's.
    pub fn add(&mut self, p: &MetricPoint) {
        self.count += 1;
        self.sum += p.value;
        self.min = self.min.min(p.value);
        self.max = self.max.max(p.value);
        if p.timestamp_unix_nanos > self.last.timestamp_unix_nanos {
            let last = &mut self.last;
            last.timestamp_unix_nanos = p.timestamp_unix_nanos;
            last.start_unix_nanos = p.start_unix_nanos;
            last.value = p.value;
            last.histogram.clone_from(&p.histogram);
            last.quantiles.clone_from(&p.quantiles);
        }
        if let Some(h) = p.histogram.as_ref().filter(|h| well_formed(h)) {
            self.merge_buckets(&MergedBuckets::of(h));
        }
    }

    /// Folds in `other`, of the same series (a later point, or the rollup
    /// of a neighbouring bucket). Not checked here: the caller keys rollups
    /// by [`SeriesId`], so only a series' own meet.
    pub fn merge(&mut self, other: &MetricRollup) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.last.timestamp_unix_nanos > self.last.timestamp_unix_nanos {
            self.last = other.last.clone();
        }
        for h in &other.histograms {
            self.merge_buckets(h);
        }
        self.unmerged_histogram_points += other.unmerged_histogram_points;
    }

    fn merge_buckets(&mut self, h: &MergedBuckets) {
        if let Some(mine) = self.histograms.iter_mut().find(|m| m.bounds == h.bounds) {
            mine.merge(h);
        } else if self.histograms.len() < MAX_BOUND_SETS_PER_ROLLUP {
            self.histograms.push(h.clone());
        } else {
            self.unmerged_histogram_points += h.points;
        }
    }

    /// The mean of the values folded in.
    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// A series' buckets at `res` (ascending) merged into steps of
/// `step_nanos`, a multiple of the resolution's width: steps start at
/// multiples of the step since the unix epoch, like Prometheus' range
/// queries align theirs. Returns (step start, unix nanoseconds; rollup).
pub fn into_steps(
    buckets: Vec<(u64, MetricRollup)>,
    res: Resolution,
    step_nanos: u64,
) -> Vec<(u64, MetricRollup)> {
    assert!(
        step_nanos >= res.width_nanos() && step_nanos.is_multiple_of(res.width_nanos()),
        "a step is a whole number of {} buckets",
        res.name()
    );
    let mut steps: Vec<(u64, MetricRollup)> = Vec::new();
    for (bucket, r) in buckets {
        let start = res.bucket_start(bucket) / step_nanos * step_nanos;
        match steps.last_mut() {
            Some((s, mine)) if *s == start => mine.merge(&r),
            _ => steps.push((start, r)),
        }
    }
    steps
}

impl MetricRollup {
    /// The REST representation of a step (docs/api.md): figures of the
    /// values, the last point's time and value, merged buckets.
    pub fn to_json(&self, start_unix_nanos: u64) -> serde_json::Value {
        use crate::model::json::json_f64;
        let opt = |x: Option<f64>| x.map_or(serde_json::Value::Null, json_f64);
        let histograms: Vec<serde_json::Value> = self
            .histograms
            .iter()
            .map(|h| {
                serde_json::json!({
                    "bounds": h.bounds.iter().map(|b| json_f64(*b)).collect::<Vec<_>>(),
                    "counts": h.counts,
                    "count": h.count,
                    "sum": json_f64(h.sum),
                    "min": opt(h.min),
                    "max": opt(h.max),
                    "points": h.points,
                })
            })
            .collect();
        serde_json::json!({
            "start": crate::model::rfc3339_nanos(start_unix_nanos),
            "start_unix_nanos": start_unix_nanos,
            "count": self.count,
            "sum": json_f64(self.sum),
            "min": json_f64(self.min),
            "max": json_f64(self.max),
            "avg": json_f64(self.avg()),
            "last": json_f64(self.last.value),
            "last_timestamp": crate::model::rfc3339_nanos(self.last.timestamp_unix_nanos),
            "histograms": histograms,
            "unmerged_histogram_points": self.unmerged_histogram_points,
        })
    }
}

/// Whether a histogram's counts fit its bounds (one more count than
/// bounds); a malformed one contributes its value but no buckets.
fn well_formed(h: &HistogramData) -> bool {
    h.counts.len() == h.bounds.len() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricType;

    fn point(t_secs: u64, value: f64) -> MetricPoint {
        MetricPoint {
            timestamp_unix_nanos: t_secs * 1_000_000_000,
            start_unix_nanos: 0,
            service: "api".into(),
            name: "requests".into(),
            metric_type: MetricType::Sum,
            value,
            unit: "1".into(),
            attributes: vec![("route".into(), "/a".into())],
            temporality: Some(Temporality::Cumulative),
            is_monotonic: Some(true),
            histogram: None,
            quantiles: vec![],
        }
    }

    fn histogram(t_secs: u64, bounds: &[f64], counts: &[u64]) -> MetricPoint {
        let mut p = point(t_secs, 0.0);
        p.metric_type = MetricType::Histogram;
        let count = counts.iter().sum();
        p.value = count as f64;
        p.histogram = Some(HistogramData {
            bounds: bounds.to_vec(),
            counts: counts.to_vec(),
            count,
            sum: Some(count as f64),
            min: Some(0.5),
            max: Some(bounds.last().copied().unwrap_or(1.0) + 1.0),
        });
        p
    }

    #[test]
    fn count_sum_min_max_and_last_follow_the_points() {
        let mut r = MetricRollup::of(&point(10, 4.0));
        for p in [point(30, -2.0), point(20, 9.0), point(30, 100.0)] {
            r.add(&p);
        }
        assert_eq!((r.count, r.sum, r.min, r.max), (4, 111.0, -2.0, 100.0));
        assert_eq!(r.avg(), 111.0 / 4.0);
        // Latest timestamp wins; of two stamped alike, the first folded in.
        assert_eq!(r.last.timestamp_unix_nanos, 30_000_000_000);
        assert_eq!(r.last.value, -2.0);
    }

    #[test]
    fn merging_rollups_equals_folding_their_points() {
        let points: Vec<_> = (0..6).map(|i| point(i * 7, (i * i) as f64)).collect();
        let mut all = MetricRollup::of(&points[0]);
        points[1..].iter().for_each(|p| all.add(p));
        let mut early = MetricRollup::of(&points[0]);
        points[1..3].iter().for_each(|p| early.add(p));
        let mut late = MetricRollup::of(&points[3]);
        points[4..].iter().for_each(|p| late.add(p));
        early.merge(&late);
        assert_eq!(early, all);
    }

    #[test]
    fn histograms_with_equal_bounds_merge_and_others_stay_apart() {
        let mut r = MetricRollup::of(&histogram(1, &[1.0, 5.0], &[1, 2, 3]));
        r.add(&histogram(2, &[1.0, 5.0], &[10, 20, 30]));
        r.add(&histogram(3, &[2.0], &[4, 4]));
        assert_eq!(r.histograms.len(), 2);
        let same = &r.histograms[0];
        assert_eq!(
            (&same.counts[..], same.count, same.points),
            (&[11, 22, 33][..], 66, 2)
        );
        assert_eq!((same.min, same.max), (Some(0.5), Some(6.0)));
        let other = &r.histograms[1];
        assert_eq!(
            (&other.bounds[..], &other.counts[..]),
            (&[2.0][..], &[4, 4][..])
        );
        assert_eq!(r.count, 3);
        assert_eq!(r.unmerged_histogram_points, 0);
    }

    #[test]
    fn bound_sets_beyond_the_limit_are_counted_not_kept() {
        let mut r = MetricRollup::of(&histogram(0, &[0.0], &[1, 1]));
        for i in 1..=MAX_BOUND_SETS_PER_ROLLUP as u64 + 2 {
            r.add(&histogram(i, &[i as f64], &[1, 1]));
        }
        assert_eq!(r.histograms.len(), MAX_BOUND_SETS_PER_ROLLUP);
        assert_eq!(r.unmerged_histogram_points, 3);
        assert_eq!(r.count, MAX_BOUND_SETS_PER_ROLLUP as u64 + 3);
        // A set already kept still merges.
        r.add(&histogram(99, &[0.0], &[5, 5]));
        assert_eq!(r.histograms[0].counts, [6, 6]);
    }

    #[test]
    fn a_malformed_histogram_adds_its_value_but_no_buckets() {
        let mut p = histogram(1, &[1.0], &[1, 2]);
        p.histogram.as_mut().unwrap().counts.pop();
        let r = MetricRollup::of(&p);
        assert!(r.histograms.is_empty());
        assert_eq!(r.count, 1);
    }

    #[test]
    fn series_differ_by_any_label_and_not_by_time_or_value() {
        let a = point(1, 1.0);
        let mut later = point(99, 7.0);
        later.start_unix_nanos = 5;
        assert_eq!(SeriesId::of(&a), SeriesId::of(&later));
        let mut other_route = a.clone();
        other_route.attributes[0].1 = "/b".into();
        let mut other_service = a.clone();
        other_service.service = "web".into();
        let mut delta = a.clone();
        delta.temporality = Some(Temporality::Delta);
        let mut gauge = a.clone();
        gauge.metric_type = MetricType::Gauge;
        for b in [other_route, other_service, delta, gauge] {
            assert_ne!(SeriesId::of(&a), SeriesId::of(&b));
        }
    }

    #[test]
    fn buckets_merge_into_steps_aligned_to_the_epoch() {
        let min = Resolution::Minute.width_nanos();
        let buckets: Vec<_> = [3u64, 4, 5, 9]
            .into_iter()
            .map(|b| (b, MetricRollup::of(&point(b * 60 + 1, b as f64))))
            .collect();
        let steps = into_steps(buckets, Resolution::Minute, 5 * min);
        let got: Vec<_> = steps
            .iter()
            .map(|(s, r)| (s / min, r.count, r.sum, r.last.value))
            .collect();
        assert_eq!(got, [(0, 2, 7.0, 4.0), (5, 2, 14.0, 9.0)]);
    }

    #[test]
    fn steps_pick_the_coarsest_resolution_that_divides_them() {
        let min = 60 * 1_000_000_000;
        assert_eq!(Resolution::for_step(min - 1), None);
        assert_eq!(Resolution::for_step(90 * 1_000_000_000), None);
        assert_eq!(Resolution::for_step(min), Some(Resolution::Minute));
        assert_eq!(Resolution::for_step(5 * min), Some(Resolution::Minute));
        assert_eq!(Resolution::for_step(60 * min), Some(Resolution::Hour));
        assert_eq!(Resolution::for_step(90 * min), Some(Resolution::Minute));
        assert_eq!(Resolution::for_step(24 * 60 * min), Some(Resolution::Hour));
        assert_eq!(Resolution::Hour.bucket_of(2 * 3_600 * 1_000_000_000 + 5), 2);
        assert_eq!(Resolution::Minute.bucket_start(3), 3 * min);
    }
}
