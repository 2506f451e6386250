//! A mergeable quantile sketch of durations with a relative-error bound
//! (after DDSketch, Masson et al., VLDB 2019).
//!
//! Values (unsigned integers, here nanoseconds) fall into logarithmic
//! buckets: bucket `i` holds the values in `(γ^(i-1), γ^i]`, with
//! `γ = (1 + α) / (1 - α)`. A bucket answers with `2γ^i / (γ + 1)`, which is
//! within a relative `α` of every value in it, so any quantile read from the
//! counts is within `α` of the exact one: the exact nearest-rank value lies
//! in the bucket the rank falls in. Zero has a count of its own (answered
//! exactly).
//!
//! Sketches merge by adding counts (the bound holds for the merge) and
//! forget a value by decrementing its bucket, which is what lets a replaced
//! span leave the minute it was counted in.
//!
//! Replicas must store the same bytes, so a value's bucket is found without
//! a logarithm (whose last bit may differ between math libraries): in a
//! table of integer bucket bounds built by repeated multiplication, which
//! IEEE 754 rounds the same way everywhere.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The relative accuracy: every quantile is within this fraction of the
/// exact one. A little under 1% so that the rounding of the table (about
/// 1e-13 relative) cannot push an answer past the stated 1%.
pub const RELATIVE_ACCURACY: f64 = 0.0099;
/// The accuracy promised to readers (docs/api.md).
pub const STATED_RELATIVE_ACCURACY: f64 = 0.01;

/// Bucket bounds: bucket `i` holds `(bound[i-1], bound[i]]` (bucket 0: just
/// 1). The last bound is `u64::MAX`, so every value above 0 has a bucket.
struct Buckets {
    /// `floor(γ^i)`, saturated at `u64::MAX`.
    upper: Vec<u64>,
    /// What bucket `i` answers: `2γ^i / (γ + 1)`.
    estimate: Vec<f64>,
}

fn buckets() -> &'static Buckets {
    static BUCKETS: OnceLock<Buckets> = OnceLock::new();
    BUCKETS.get_or_init(|| {
        let gamma = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
        let mut upper = Vec::new();
        let mut estimate = Vec::new();
        let mut power = 1.0f64;
        loop {
            // 2^64 as f64 is the first power no u64 holds.
            let done = power >= 18_446_744_073_709_551_616.0;
            upper.push(if done { u64::MAX } else { power.floor() as u64 });
            estimate.push(2.0 * power / (gamma + 1.0));
            if done {
                break;
            }
            power *= gamma;
        }
        Buckets { upper, estimate }
    })
}

/// The bucket of `value` (> 0).
fn bucket_of(value: u64) -> u16 {
    debug_assert!(value > 0);
    let i = buckets().upper.partition_point(|&b| b < value);
    u16::try_from(i).expect("fewer than 65536 buckets")
}

/// Counts per bucket over a contiguous run of buckets (`first` and on),
/// plus a count of zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantileSketch {
    zeros: u64,
    /// The bucket of `counts[0]`.
    first: u16,
    /// Trimmed: neither the first nor the last is zero.
    counts: Vec<u64>,
}

impl QuantileSketch {
    /// Values counted.
    pub fn count(&self) -> u64 {
        self.zeros + self.counts.iter().sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.zeros == 0 && self.counts.is_empty()
    }

    pub fn add(&mut self, value: u64) {
        if value == 0 {
            self.zeros += 1;
        } else {
            *self.slot(bucket_of(value)) += 1;
        }
    }

    /// Forgets one `value` counted before. Panics when none was: a replica
    /// whose counts went below zero no longer agrees with the others.
    pub fn remove(&mut self, value: u64) {
        if value == 0 {
            assert!(self.zeros > 0, "a removed zero was counted");
            self.zeros -= 1;
            return;
        }
        let b = bucket_of(value);
        let i = usize::from(b)
            .checked_sub(usize::from(self.first))
            .filter(|&i| i < self.counts.len());
        let slot = i.map(|i| &mut self.counts[i]);
        match slot {
            Some(n) if *n > 0 => *n -= 1,
            _ => panic!("a removed value ({value}) was counted in its bucket ({b})"),
        }
        self.trim();
    }

    /// Adds every value counted in `other`.
    pub fn merge(&mut self, other: &QuantileSketch) {
        self.zeros += other.zeros;
        if other.counts.is_empty() {
            return;
        }
        let last = other.first as usize + other.counts.len() - 1;
        self.slot(other.first);
        self.slot(last as u16);
        let offset = usize::from(other.first - self.first);
        for (mine, theirs) in self.counts[offset..].iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    /// The nearest-rank `p`-th percentile (`p` in 0..=100), within
    /// [`RELATIVE_ACCURACY`] of the exact one; 0 when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as u64;
        if rank <= self.zeros {
            return 0.0;
        }
        let mut seen = self.zeros;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return buckets().estimate[usize::from(self.first) + i];
            }
        }
        unreachable!("the rank is at most the count")
    }

    /// The estimate of the largest value counted (within the bound).
    pub fn max_estimate(&self) -> f64 {
        match self.counts.len() {
            0 => 0.0,
            len => buckets().estimate[usize::from(self.first) + len - 1],
        }
    }

    /// The count of bucket `b`, the run of buckets grown to reach it.
    fn slot(&mut self, b: u16) -> &mut u64 {
        if self.counts.is_empty() {
            self.first = b;
            self.counts.push(0);
        } else if b < self.first {
            let grow = usize::from(self.first - b);
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = b;
        } else if usize::from(b - self.first) >= self.counts.len() {
            self.counts.resize(usize::from(b - self.first) + 1, 0);
        }
        &mut self.counts[usize::from(b - self.first)]
    }

    /// Drops zero counts at either end of the run.
    fn trim(&mut self) {
        let Some(lo) = self.counts.iter().position(|&c| c > 0) else {
            self.counts.clear();
            self.first = 0;
            return;
        };
        let hi = self
            .counts
            .iter()
            .rposition(|&c| c > 0)
            .expect("one is > 0");
        self.counts.truncate(hi + 1);
        self.counts.drain(..lo);
        self.first += lo as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::percentile;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    const PERCENTILES: [f64; 9] = [0.0, 1.0, 10.0, 25.0, 50.0, 90.0, 95.0, 99.0, 100.0];

    fn within_bound(estimate: f64, exact: f64) -> bool {
        if exact == 0.0 {
            return estimate == 0.0;
        }
        ((estimate - exact) / exact).abs() <= STATED_RELATIVE_ACCURACY
    }

    fn assert_bound(values: &[u64], sketch: &QuantileSketch, what: &str) {
        let mut sorted: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(sketch.count(), values.len() as u64, "{what}");
        for p in PERCENTILES {
            let exact = percentile(&sorted, p);
            let est = sketch.percentile(p);
            assert!(
                within_bound(est, exact),
                "{what}: p{p}: estimate {est}, exact {exact}"
            );
        }
    }

    fn sketch_of(values: &[u64]) -> QuantileSketch {
        let mut s = QuantileSketch::default();
        values.iter().for_each(|&v| s.add(v));
        s
    }

    /// Distributions chosen to hurt: bucket edges, huge spreads, heavy
    /// tails, extremes of the domain, and values a hair apart.
    fn adversarial() -> Vec<(&'static str, Vec<u64>)> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let b = buckets();
        let edges: Vec<u64> = b.upper[..b.upper.len() - 1]
            .iter()
            .flat_map(|&u| [u, u.saturating_add(1), u.saturating_sub(1).max(1)])
            .collect();
        vec![
            ("bucket edges", edges),
            ("powers of two", (0..64).map(|i| 1u64 << i).collect()),
            (
                "extremes",
                vec![0, 1, 2, 3, u64::MAX, u64::MAX - 1, 1 << 63],
            ),
            (
                "uniform over 64 bits",
                (0..5000).map(|_| rng.next()).collect(),
            ),
            (
                "log-uniform",
                (0..5000)
                    .map(|_| {
                        let v = rng.next();
                        v >> (v % 64)
                    })
                    .collect(),
            ),
            (
                "bimodal: 99% at 1 µs, 1% at an hour",
                (0..10_000)
                    .map(|i| {
                        if i % 100 == 0 {
                            3_600_000_000_000
                        } else {
                            1_000
                        }
                    })
                    .collect(),
            ),
            (
                "a cluster a hair apart",
                (0..3000).map(|i| 1_000_000_000 + i).collect(),
            ),
            (
                "mostly zeros",
                (0..1000).map(|i| if i < 990 { 0 } else { i }).collect(),
            ),
            ("one value", vec![123_456_789]),
        ]
    }

    #[test]
    fn every_percentile_is_within_the_stated_relative_error() {
        for (what, values) in adversarial() {
            assert_bound(&values, &sketch_of(&values), what);
        }
    }

    #[test]
    fn every_bucket_estimate_is_within_the_bound_of_both_its_edges() {
        let b = buckets();
        for i in 1..b.upper.len() - 1 {
            let (lo, hi) = (b.upper[i - 1] + 1, b.upper[i]);
            if lo > hi {
                continue; // no integer falls in this bucket
            }
            for v in [lo, hi] {
                assert_eq!(usize::from(bucket_of(v)), i, "value {v}");
                let err = (b.estimate[i] - v as f64).abs() / v as f64;
                assert!(
                    err <= STATED_RELATIVE_ACCURACY,
                    "bucket {i}, value {v}: {err}"
                );
            }
        }
    }

    #[test]
    fn a_merge_answers_as_one_sketch_of_all_values() {
        let all: Vec<u64> = adversarial().into_iter().flat_map(|(_, v)| v).collect();
        let mut merged = QuantileSketch::default();
        for chunk in all.chunks(777) {
            merged.merge(&sketch_of(chunk));
        }
        assert_eq!(merged, sketch_of(&all), "merging loses nothing");
        assert_bound(&all, &merged, "merged");
    }

    #[test]
    fn removing_values_leaves_the_sketch_of_the_rest() {
        let mut rng = Rng(7);
        let values: Vec<u64> = (0..4000).map(|_| rng.next() >> (rng.next() % 60)).collect();
        let mut s = sketch_of(&values);
        let (gone, kept) = values.split_at(2500);
        for &v in gone {
            s.remove(v);
        }
        assert_eq!(s, sketch_of(kept), "equal to never having seen them");
        assert_bound(kept, &s, "after removal");
        for &v in kept {
            s.remove(v);
        }
        assert!(s.is_empty());
        assert_eq!(
            s,
            QuantileSketch::default(),
            "an emptied sketch is the empty one"
        );
    }

    #[test]
    #[should_panic(expected = "was counted in its bucket")]
    fn removing_a_value_never_counted_panics() {
        let mut s = sketch_of(&[10, 20]);
        s.remove(1_000_000);
    }

    #[test]
    #[should_panic(expected = "a removed zero was counted")]
    fn removing_a_zero_never_counted_panics() {
        sketch_of(&[10]).remove(0);
    }

    #[test]
    fn the_max_estimate_is_within_the_bound_of_the_max() {
        for (what, values) in adversarial() {
            let max = *values.iter().max().unwrap();
            let est = sketch_of(&values).max_estimate();
            assert!(within_bound(est, max as f64), "{what}: {est} vs {max}");
        }
    }

    #[test]
    fn a_sketch_round_trips_through_the_codec_compactly() {
        let values: Vec<u64> = (1..=1000).map(|i| i * 1_000_000).collect();
        let s = sketch_of(&values);
        let bytes = crate::codec::encode(&s);
        assert_eq!(crate::codec::decode::<QuantileSketch>(&bytes).unwrap(), s);
        // 1 ms to 1 s spans ~350 buckets of small counts.
        assert!(bytes.len() < 1024, "{} bytes", bytes.len());
    }
}
