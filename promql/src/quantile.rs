//! Numeric helpers shared by functions and aggregations: φ-quantiles of values, classic
//! histogram bucket quantiles, compensated summation, and Go's sort order.

use std::cmp::Ordering;

/// The φ-quantile of `values` by linear interpolation between closest ranks; NaN for no
/// values or a NaN φ, -Inf for φ < 0, +Inf for φ > 1. NaN values sort first.
pub(crate) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(nan_first);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Ascending order with NaN before everything (Prometheus's value heap order).
fn nan_first(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).expect("neither is NaN"),
    }
}

/// One classic histogram bucket: its upper bound (`le`) and cumulative count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) upper_bound: f64,
    pub(crate) count: f64,
}

/// `histogram_quantile` over classic buckets, as Prometheus computes it: buckets sorted by
/// bound, equal bounds merged, counts forced monotonic (repairing rate() artefacts), then
/// linear interpolation inside the bucket holding the rank. The lowest bucket starts at 0
/// unless its bound is not positive; a rank in the +Inf bucket gives the highest finite bound.
pub(crate) fn bucket_quantile(q: f64, mut buckets: Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| {
        a.upper_bound
            .partial_cmp(&b.upper_bound)
            .unwrap_or(Ordering::Equal)
    });
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    let buckets = coalesce(buckets);
    let buckets = ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // The first bucket (excluding +Inf) whose cumulative count reaches the rank.
    let b = buckets[..buckets.len() - 1].partition_point(|bk| bk.count < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].upper_bound;
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return buckets[0].upper_bound;
    }
    let end = buckets[b].upper_bound;
    let mut count = buckets[b].count;
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// Merges buckets with equal bounds (sorted input), adding their counts.
fn coalesce(buckets: Vec<Bucket>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match out.last_mut() {
            Some(last) if last.upper_bound == b.upper_bound => last.count += b.count,
            _ => out.push(b),
        }
    }
    out
}

/// Raises any count below an earlier one to the running maximum.
fn ensure_monotonic(mut buckets: Vec<Bucket>) -> Vec<Bucket> {
    let mut max = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
    buckets
}

/// One step of Kahan-Neumaier compensated summation: returns the new sum and compensation.
pub(crate) fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Sorts with a "less" predicate the way Go's `sort.Sort` orders small inputs (an
/// insertion sort, stable, up to 12 elements); larger inputs are merge-sorted stably, which
/// can order ties differently from Go's pattern-defeating quicksort. Unlike Rust's sorts, it
/// accepts predicates that are not total orders (NaN handling).
pub(crate) fn go_sort<T: Clone>(items: &mut [T], less: impl Fn(&T, &T) -> bool) {
    const MAX_INSERTION: usize = 12;
    if items.len() <= MAX_INSERTION {
        for i in 1..items.len() {
            let mut j = i;
            while j > 0 && less(&items[j], &items[j - 1]) {
                items.swap(j, j - 1);
                j -= 1;
            }
        }
        return;
    }
    merge_sort(items, &less);
}

fn merge_sort<T: Clone>(items: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let n = items.len();
    if n <= 1 {
        return;
    }
    let mid = n / 2;
    merge_sort(&mut items[..mid], less);
    merge_sort(&mut items[mid..], less);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, mid);
    while i < mid && j < n {
        // Take from the right only when strictly less: keeps equal elements in order.
        if less(&items[j], &items[i]) {
            merged.push(items[j].clone());
            j += 1;
        } else {
            merged.push(items[i].clone());
            i += 1;
        }
    }
    merged.extend_from_slice(&items[i..mid]);
    merged.extend_from_slice(&items[j..n]);
    items.clone_from_slice(&merged);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(upper_bound: f64, count: f64) -> Bucket {
        Bucket { upper_bound, count }
    }

    #[test]
    fn quantile_interpolates_between_ranks() {
        assert_eq!(quantile(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, vec![3.0, 1.0]), 1.0);
        assert_eq!(quantile(1.0, vec![3.0, 1.0]), 3.0);
        assert_eq!(quantile(1.5, vec![3.0]), f64::INFINITY);
        assert_eq!(quantile(-1.0, vec![3.0]), f64::NEG_INFINITY);
        assert!(quantile(0.5, vec![]).is_nan());
        assert!(quantile(f64::NAN, vec![1.0]).is_nan());
        // NaN sorts first.
        assert_eq!(quantile(1.0, vec![f64::NAN, 2.0]), 2.0);
    }

    #[test]
    fn bucket_quantile_interpolates_in_the_rank_bucket() {
        // 10 observations <= 0.1, 10 more <= 0.5, none above.
        let buckets = vec![b(0.1, 10.0), b(0.5, 20.0), b(f64::INFINITY, 20.0)];
        // Rank 10 is reached in the first bucket: 0 + 0.1 * 10/10.
        assert_eq!(bucket_quantile(0.5, buckets.clone()), 0.1);
        // Rank 15: halfway through (0.1, 0.5].
        assert!((bucket_quantile(0.75, buckets.clone()) - 0.3).abs() < 1e-12);
        // Rank 20 reached at 0.5 (before +Inf).
        assert_eq!(bucket_quantile(1.0, buckets), 0.5);
    }

    #[test]
    fn bucket_quantile_edge_cases() {
        // No +Inf bucket.
        assert!(bucket_quantile(0.5, vec![b(1.0, 1.0), b(2.0, 2.0)]).is_nan());
        // Rank in the +Inf bucket: the highest finite bound.
        let inf_heavy = vec![b(1.0, 1.0), b(f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.9, inf_heavy), 1.0);
        // Zero observations.
        assert!(bucket_quantile(0.5, vec![b(1.0, 0.0), b(f64::INFINITY, 0.0)]).is_nan());
        // Non-monotonic counts are repaired: 2 <= 1 becomes 5.
        let broken = vec![b(1.0, 5.0), b(2.0, 2.0), b(f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.5, broken), 1.0);
        // A first bucket with a negative bound is returned as is.
        assert_eq!(
            bucket_quantile(0.1, vec![b(-1.0, 5.0), b(f64::INFINITY, 10.0)]),
            -1.0
        );
        // Duplicate bounds are merged.
        let dup = vec![b(1.0, 1.0), b(1.0, 1.0), b(f64::INFINITY, 4.0)];
        assert_eq!(bucket_quantile(0.25, dup), 0.5);
    }

    #[test]
    fn go_sort_is_stable_and_tolerates_nan() {
        let mut v = vec![(2.0, 'a'), (f64::NAN, 'b'), (1.0, 'c'), (2.0, 'd')];
        go_sort(&mut v, |x, y| x.0.is_nan() || x.0 < y.0);
        let order: String = v.iter().map(|x| x.1).collect();
        assert_eq!(order, "bcad");
        let mut big: Vec<(f64, usize)> = (0..40).map(|i| ((i % 3) as f64, i)).collect();
        go_sort(&mut big, |x, y| x.0 < y.0);
        assert!(big.windows(2).all(|w| w[0].0 < w[1].0 || w[0].1 < w[1].1));
    }
}
