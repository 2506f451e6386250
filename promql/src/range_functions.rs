//! Functions of one series' window of samples: rates with Prometheus's extrapolation,
//! instant rates, `*_over_time`, `changes`, `resets`, `deriv`, `predict_linear`,
//! `holt_winters`. Each returns `None` where Prometheus yields no sample for that step.

use crate::aggregate::infinite_mean_absorbs;
use crate::quantile::{kahan_sum_inc, quantile};
use crate::{EngineError, Sample};

/// Where a window lies and the function's scalar arguments at this step.
pub(crate) struct RangeCall<'a> {
    pub(crate) range_ms: i64,
    /// The window `[range_start_ms, range_end_ms]` (offset and `@` applied).
    pub(crate) range_start_ms: i64,
    pub(crate) range_end_ms: i64,
    /// The evaluation time of the step.
    pub(crate) step_ms: i64,
    /// Scalar arguments in call order, the range argument left out.
    pub(crate) params: &'a [f64],
}

/// Evaluates `name` on a non-empty window.
pub(crate) fn range_function(
    name: &str,
    w: &[Sample],
    c: &RangeCall,
) -> Result<Option<f64>, EngineError> {
    let values = || w.iter().map(|s| s.v);
    let v = match name {
        "rate" => return Ok(extrapolated_rate(w, c, true, true)),
        "increase" => return Ok(extrapolated_rate(w, c, true, false)),
        "delta" => return Ok(extrapolated_rate(w, c, false, false)),
        "irate" => return Ok(instant_rate(w, true)),
        "idelta" => return Ok(instant_rate(w, false)),
        "deriv" => return Ok(deriv(w)),
        "predict_linear" => return Ok(predict_linear(w, c)),
        "holt_winters" => return holt_winters(w, c.params[0], c.params[1]),
        "avg_over_time" => avg(values()),
        "sum_over_time" => kahan_sum(values()),
        "count_over_time" => w.len() as f64,
        "last_over_time" => w[w.len() - 1].v,
        "present_over_time" | "absent_over_time" => 1.0,
        "max_over_time" => extreme(values(), |cur, v| v > cur),
        "min_over_time" => extreme(values(), |cur, v| v < cur),
        "stddev_over_time" => variance(values()).sqrt(),
        "stdvar_over_time" => variance(values()),
        "quantile_over_time" => quantile(c.params[0], values().collect()),
        "changes" => changes(w),
        "resets" => resets(w),
        _ => {
            return Err(EngineError::BadData(format!(
                "function {name:?} is not supported"
            )))
        }
    };
    Ok(Some(v))
}

/// `rate`, `increase` and `delta`: the change over the window (with counter resets added
/// back for counters), extrapolated toward the window's edges. The extrapolation goes all
/// the way to an edge when the first/last sample is within 1.1 average sample intervals of
/// it, else half an interval; a counter is never extrapolated below zero.
fn extrapolated_rate(w: &[Sample], c: &RangeCall, is_counter: bool, is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.v - first.v;
    if is_counter {
        for pair in w.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }
    let mut to_start_s = (first.t_ms - c.range_start_ms) as f64 / 1000.0;
    let to_end_s = (c.range_end_ms - last.t_ms) as f64 / 1000.0;
    let sampled_s = (last.t_ms - first.t_ms) as f64 / 1000.0;
    let average_gap_s = sampled_s / (w.len() - 1) as f64;
    if is_counter && result > 0.0 && first.v >= 0.0 {
        // Where a straight line through the samples would reach zero.
        let to_zero_s = sampled_s * (first.v / result);
        if to_zero_s < to_start_s {
            to_start_s = to_zero_s;
        }
    }
    let threshold_s = average_gap_s * 1.1;
    let mut interval_s = sampled_s;
    interval_s += if to_start_s < threshold_s {
        to_start_s
    } else {
        average_gap_s / 2.0
    };
    interval_s += if to_end_s < threshold_s {
        to_end_s
    } else {
        average_gap_s / 2.0
    };
    let mut factor = interval_s / sampled_s;
    if is_rate {
        factor /= c.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate`/`idelta`: from the last two samples (a drop counts as a reset for `irate`).
fn instant_rate(w: &[Sample], is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (prev, last) = (w[w.len() - 2], w[w.len() - 1]);
    let mut result = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let interval_ms = last.t_ms - prev.t_ms;
    if interval_ms == 0 {
        return None;
    }
    if is_rate {
        result /= interval_ms as f64 / 1000.0;
    }
    Some(result)
}

/// `avg_over_time`: Prometheus's running mean with compensated summation.
fn avg(values: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut c) = (0.0, 0.0);
    for (i, v) in values.enumerate() {
        let count = (i + 1) as f64;
        if infinite_mean_absorbs(mean, v) {
            continue;
        }
        (mean, c) = kahan_sum_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() {
        mean
    } else {
        mean + c
    }
}

fn kahan_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in values {
        (sum, c) = kahan_sum_inc(v, sum, c);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

/// `max_over_time`/`min_over_time`: a NaN is replaced by any later value.
fn extreme(mut values: impl Iterator<Item = f64>, better: fn(f64, f64) -> bool) -> f64 {
    let mut cur = values.next().expect("windows are never empty");
    for v in values {
        if better(cur, v) || cur.is_nan() {
            cur = v;
        }
    }
    cur
}

/// Population variance by Welford's method with compensated sums.
fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn changes(w: &[Sample]) -> f64 {
    w.windows(2)
        .filter(|p| p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()))
        .count() as f64
}

fn resets(w: &[Sample]) -> f64 {
    w.windows(2).filter(|p| p[1].v < p[0].v).count() as f64
}

/// Least-squares slope and intercept at `intercept_ms`, x in seconds.
fn linear_regression(w: &[Sample], intercept_ms: i64) -> (f64, f64) {
    let init_y = w[0].v;
    if w.iter().all(|s| s.v == init_y) {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let n = w.len() as f64;
    let (mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    for s in w {
        let x = (s.t_ms - intercept_ms) as f64 / 1e3;
        (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(s.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * s.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
    }
    let (sum_x, sum_y) = (sum_x + c_x, sum_y + c_y);
    let (sum_xy, sum_x2) = (sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    (slope, sum_y / n - slope * sum_x / n)
}

fn deriv(w: &[Sample]) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    // Relative to the first sample's time, for precision.
    Some(linear_regression(w, w[0].t_ms).0)
}

fn predict_linear(w: &[Sample], c: &RangeCall) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(w, c.step_ms);
    Some(slope * c.params[0] + intercept)
}

/// Double exponential smoothing with smoothing factor `sf` and trend factor `tf`.
fn holt_winters(w: &[Sample], sf: f64, tf: f64) -> Result<Option<f64>, EngineError> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(EngineError::Execution(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(EngineError::Execution(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    if w.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, w[0].v);
    let mut b = w[1].v - w[0].v;
    for (i, sample) in w.iter().enumerate().skip(1) {
        let x = sf * sample.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Ok(Some(s1))
}
