//! Span rollups: per minute, service and operation, the figures window
//! analytics need (counts, duration sum and max, a quantile sketch), so a
//! window of an hour reads about sixty keys per operation instead of every
//! span in it.
//!
//! The hot tier keeps one [`Rollup`] per minute, service and operation
//! (`state::hot::rollups`), maintained by apply in the same batch as the
//! span; a window is answered from the rollups of the minutes that start
//! within it ([`minutes_starting_in`]), merged into a [`WindowRollups`].
//!
//! What is exact and what is not (docs/api.md): counts, error counts and
//! rates, averages are exact; percentiles are within
//! [`crate::sketch::STATED_RELATIVE_ACCURACY`] of the exact nearest-rank
//! ones; the max is exact unless a span holding a minute's max was replaced
//! by a different version, after which that minute's max is the sketch's
//! (within the same bound). A trace is counted once, at its root span.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analytics::{SpanDigest, SpanStats};
use crate::sketch::QuantileSketch;

/// Nanoseconds in the minute a rollup covers.
pub const MINUTE_NANOS: u64 = 60 * 1_000_000_000;

/// The unix minute `start_unix_nanos` falls in.
pub fn minute_of(start_unix_nanos: u64) -> u64 {
    start_unix_nanos / MINUTE_NANOS
}

/// The figures of a set of spans (of one minute, service and operation in
/// the store; of anything in a merge).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    pub span_count: u64,
    pub error_count: u64,
    /// Spans without a parent: each starts a trace.
    pub root_count: u64,
    /// Wide enough that no sum of u64 durations overflows it.
    pub duration_sum_nanos: u128,
    pub max_nanos: u64,
    pub durations: QuantileSketch,
}

impl Rollup {
    pub fn add(&mut self, d: &SpanDigest) {
        self.span_count += 1;
        self.error_count += d.is_error as u64;
        self.root_count += d.parent_span_id.is_none() as u64;
        self.duration_sum_nanos += u128::from(d.duration_nanos);
        self.max_nanos = self.max_nanos.max(d.duration_nanos);
        self.durations.add(d.duration_nanos);
    }

    /// Forgets a span counted before. Counts never go below zero: a replica
    /// whose did would disagree with the others, so this panics instead.
    pub fn remove(&mut self, d: &SpanDigest) {
        assert!(
            self.span_count > 0
                && self.error_count >= d.is_error as u64
                && self.root_count >= d.parent_span_id.is_none() as u64
                && self.duration_sum_nanos >= u128::from(d.duration_nanos),
            "a removed span of {}/{} was counted in its rollup: {self:?}",
            d.service,
            d.operation
        );
        self.span_count -= 1;
        self.error_count -= d.is_error as u64;
        self.root_count -= d.parent_span_id.is_none() as u64;
        self.duration_sum_nanos -= u128::from(d.duration_nanos);
        self.durations.remove(d.duration_nanos);
        if self.span_count == 0 {
            self.max_nanos = 0;
        } else if d.duration_nanos >= self.max_nanos {
            // A max cannot be subtracted; the sketch still knows the
            // largest remaining value's bucket.
            let est = self.durations.max_estimate().ceil() as u64;
            self.max_nanos = self.max_nanos.min(est);
        }
    }

    pub fn merge(&mut self, other: &Rollup) {
        self.span_count += other.span_count;
        self.error_count += other.error_count;
        self.root_count += other.root_count;
        self.duration_sum_nanos += other.duration_sum_nanos;
        self.max_nanos = self.max_nanos.max(other.max_nanos);
        self.durations.merge(&other.durations);
    }

    pub fn is_empty(&self) -> bool {
        self.span_count == 0
    }

    /// The figures analytics report. `trace_count` counts root spans.
    pub fn stats(&self) -> SpanStats {
        if self.span_count == 0 {
            return SpanStats::default();
        }
        let n = self.span_count as f64;
        let ms = |nanos: f64| nanos / 1e6;
        let max_ms = ms(self.max_nanos as f64);
        // An estimate never exceeds the max: the exact value lies below it.
        let pct = |p: f64| ms(self.durations.percentile(p)).min(max_ms);
        SpanStats {
            span_count: self.span_count,
            trace_count: self.root_count,
            error_count: self.error_count,
            error_rate: self.error_count as f64 / n,
            avg_ms: ms(self.duration_sum_nanos as f64) / n,
            max_ms,
            p50_ms: pct(50.0),
            p95_ms: pct(95.0),
            p99_ms: pct(99.0),
        }
    }
}

/// A window's rollups, merged per service and operation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowRollups {
    pub by_operation: BTreeMap<(String, String), Rollup>,
    /// The window (shorter than a minute, read from spans) held more spans
    /// than were read.
    pub truncated: bool,
}

impl WindowRollups {
    /// Adds a stored rollup of `service`/`operation`.
    pub fn merge(&mut self, service: &str, operation: &str, r: &Rollup) {
        match self
            .by_operation
            .get_mut(&(service.to_string(), operation.to_string()))
        {
            Some(mine) => mine.merge(r),
            None => {
                self.by_operation
                    .insert((service.to_string(), operation.to_string()), r.clone());
            }
        }
    }

    /// Adds one span (a window shorter than a minute is read from spans).
    pub fn add_digest(&mut self, d: &SpanDigest) {
        let key = (d.service.clone(), d.operation.clone());
        self.by_operation.entry(key).or_default().add(d);
    }

    /// Everything in the window.
    pub fn total(&self) -> Rollup {
        let mut all = Rollup::default();
        self.by_operation.values().for_each(|r| all.merge(r));
        all
    }

    /// Per service, in service-name order.
    pub fn by_service(&self) -> BTreeMap<&str, Rollup> {
        let mut out: BTreeMap<&str, Rollup> = BTreeMap::new();
        for ((svc, _), r) in &self.by_operation {
            out.entry(svc.as_str()).or_default().merge(r);
        }
        out
    }
}

/// The minutes a window `[from, to]` (unix nanoseconds, inclusive) is
/// answered for: those that start within it, `[first, last]`; None when no
/// minute starts within it (a window shorter than a minute).
///
/// So a window is aligned to minutes: spans count by the minute they
/// started in, the partial minute at the window's start is left out and the
/// one at its end is taken whole (for a window ending now, that is every span
/// so far). An hour is sixty minutes whatever the seconds of its edges, and
/// reading a window never reads spans, however many a minute holds.
pub fn minutes_starting_in(from: u64, to: u64) -> Option<(u64, u64)> {
    assert!(from <= to, "a window ends after it starts");
    let first = from.div_ceil(MINUTE_NANOS);
    let last = to / MINUTE_NANOS;
    (first <= last).then_some((first, last))
}

/// Whether the span that started at `start_unix_nanos` counts in the window
/// `[from, to]` as [`minutes_starting_in`] aligns it.
pub fn counts_in_window(start_unix_nanos: u64, from: u64, to: u64) -> bool {
    minutes_starting_in(from, to)
        .is_some_and(|(first, last)| (first..=last).contains(&minute_of(start_unix_nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(ms: u64, err: bool, root: bool) -> SpanDigest {
        SpanDigest {
            trace_id: [1; 16],
            span_id: [1; 8],
            parent_span_id: (!root).then_some([2; 8]),
            start_unix_nanos: 0,
            duration_nanos: ms * 1_000_000,
            is_error: err,
            service: "s".into(),
            operation: "o".into(),
        }
    }

    #[test]
    fn a_window_holds_the_minutes_that_start_within_it() {
        let m = MINUTE_NANOS;
        assert_eq!(minutes_starting_in(m + 5, 4 * m + 7), Some((2, 4)));
        assert_eq!(minutes_starting_in(2 * m, 4 * m - 1), Some((2, 3)));
        assert_eq!(minutes_starting_in(2 * m, 2 * m), Some((2, 2)));
        assert_eq!(minutes_starting_in(2 * m + 1, 3 * m - 1), None);
        assert_eq!(minutes_starting_in(0, u64::MAX), Some((0, u64::MAX / m)));
        // An hour with ragged edges is sixty minutes.
        let (first, last) = minutes_starting_in(7 * m + 13, 67 * m + 13).unwrap();
        assert_eq!(last - first + 1, 60);
        assert!(
            !counts_in_window(m + 6, m + 5, 4 * m + 7),
            "its minute starts before"
        );
        assert!(
            counts_in_window(4 * m + 50, m + 5, 4 * m + 7),
            "its minute starts inside"
        );
        assert!(!counts_in_window(2 * m + 2, 2 * m + 1, 3 * m - 1));
    }

    #[test]
    fn adding_and_removing_spans_keeps_counts_exact() {
        let mut r = Rollup::default();
        let (a, b, c) = (
            digest(10, true, true),
            digest(30, false, false),
            digest(20, false, true),
        );
        for d in [&a, &b, &c] {
            r.add(d);
        }
        let s = r.stats();
        assert_eq!((s.span_count, s.error_count, s.trace_count), (3, 1, 2));
        assert_eq!((s.avg_ms, s.max_ms), (20.0, 30.0));
        r.remove(&a);
        let s = r.stats();
        assert_eq!((s.span_count, s.error_count, s.trace_count), (2, 0, 1));
        assert_eq!(s.max_ms, 30.0, "removing a value below the max keeps it");
        r.remove(&b);
        let s = r.stats();
        assert!(
            (s.max_ms - 20.0).abs() <= 0.2,
            "the sketch's max: {}",
            s.max_ms
        );
        r.remove(&c);
        assert_eq!(r, Rollup::default());
    }

    #[test]
    #[should_panic(expected = "was counted in its rollup")]
    fn removing_from_an_empty_rollup_panics() {
        Rollup::default().remove(&digest(1, false, true));
    }
}
