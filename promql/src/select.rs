//! Reading series for selectors, with the query's budget, and the two ways a selector looks
//! at a series: the instant value at a time (lookback and staleness) and the window of a
//! range selector.

use std::borrow::Cow;
use std::cell::Cell;

use promql_parser::label::MatchOp as ParsedOp;
use promql_parser::parser::VectorSelector;

use crate::labels::METRIC_NAME;
use crate::{is_stale_nan, EngineError, EngineLimits, MatchOp, Matcher, Sample, Series, Storage};

/// Prometheus's message when a query needs more samples than allowed.
pub(crate) const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// What one query has used of its [`EngineLimits`]. Counts only grow: samples loaded from
/// storage and points produced by each expression node are both charged, so the bound is a
/// little stricter than Prometheus's (which frees as it goes) but holds for every query.
pub(crate) struct Budget {
    max_samples: usize,
    max_series: usize,
    samples: Cell<usize>,
    series: Cell<usize>,
}

impl Budget {
    pub(crate) fn new(limits: &EngineLimits) -> Budget {
        Budget {
            max_samples: limits.max_samples,
            max_series: limits.max_series,
            samples: Cell::new(0),
            series: Cell::new(0),
        }
    }

    /// Charges `n` samples; fails once the total passes the limit.
    pub(crate) fn charge_samples(&self, n: usize) -> Result<(), EngineError> {
        let total = self.samples.get().saturating_add(n);
        self.samples.set(total);
        if total > self.max_samples {
            return Err(EngineError::Execution(TOO_MANY_SAMPLES.into()));
        }
        Ok(())
    }

    fn charge_series(&self, n: usize) -> Result<(), EngineError> {
        let total = self.series.get().saturating_add(n);
        self.series.set(total);
        if total > self.max_series {
            return Err(EngineError::Execution(format!(
                "query would load more than {} series (the per-query limit)",
                self.max_series
            )));
        }
        Ok(())
    }
}

/// The storage matchers of a selector: the metric name (when written before the braces)
/// followed by the matchers in the braces.
pub(crate) fn storage_matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let name = vs
        .name
        .iter()
        .map(|n| Matcher::new(METRIC_NAME, MatchOp::Equal, n.as_str()));
    let rest = vs.matchers.matchers.iter().map(|m| {
        let op = match m.op {
            ParsedOp::Equal => MatchOp::Equal,
            ParsedOp::NotEqual => MatchOp::NotEqual,
            ParsedOp::Re(_) => MatchOp::Regex,
            ParsedOp::NotRe(_) => MatchOp::NotRegex,
        };
        Matcher::new(m.name.as_str(), op, m.value.as_str())
    });
    name.chain(rest).collect()
}

/// Loads the series of a selector with samples in `[start_ms, end_ms]`, sorted by labels as
/// Prometheus's storage returns them (the order instant results keep).
pub(crate) fn load(
    storage: &dyn Storage,
    budget: &Budget,
    matchers: &[Matcher],
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Series>, EngineError> {
    let mut series = storage.select(matchers, start_ms, end_ms)?;
    budget.charge_series(series.len())?;
    budget.charge_samples(series.iter().map(|s| s.samples.len()).sum())?;
    for s in &mut series {
        normalize_labels(&mut s.labels);
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(normalize(series))
}

/// Sorts a storage's label set by name if it is not, and drops empty values (in
/// Prometheus's data model a label with an empty value does not exist).
fn normalize_labels(labels: &mut crate::Labels) {
    labels.0.retain(|(_, v)| !v.is_empty());
    if !labels.0.windows(2).all(|w| w[0].0 < w[1].0) {
        labels.0.sort_by(|a, b| a.0.cmp(&b.0));
        labels.0.dedup_by(|later, earlier| later.0 == earlier.0);
    }
}

/// Makes the engine's invariants hold whatever the storage returned: one series per label
/// set (duplicates merged) and samples strictly ascending (on equal times, the last one
/// returned wins). Input sorted by labels.
fn normalize(series: Vec<Series>) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    for s in series {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => last.samples.extend(s.samples),
            _ => out.push(s),
        }
    }
    for s in &mut out {
        if !s.samples.windows(2).all(|w| w[0].t_ms < w[1].t_ms) {
            s.samples.sort_by_key(|p| p.t_ms);
            // dedup keeps the first of equal elements: reverse to keep the last returned.
            s.samples.reverse();
            s.samples.dedup_by_key(|p| p.t_ms);
            s.samples.reverse();
        }
    }
    out
}

/// The value an instant selector sees at `ref_ms`: the latest sample in
/// `[ref_ms - lookback_ms, ref_ms]`, unless that sample is a staleness marker.
pub(crate) fn instant_sample(samples: &[Sample], ref_ms: i64, lookback_ms: i64) -> Option<Sample> {
    let after = samples.partition_point(|s| s.t_ms <= ref_ms);
    let latest = samples[..after].last()?;
    if latest.t_ms < ref_ms - lookback_ms || is_stale_nan(latest.v) {
        return None;
    }
    Some(*latest)
}

/// The samples a range selector sees: those in `[min_ms, max_ms]` (closed at both ends in
/// Prometheus 2.x), staleness markers left out. Borrowed unless a marker must be removed
/// (this runs once per series and step).
pub(crate) fn range_window(samples: &[Sample], min_ms: i64, max_ms: i64) -> Cow<'_, [Sample]> {
    let from = samples.partition_point(|s| s.t_ms < min_ms);
    let to = samples.partition_point(|s| s.t_ms <= max_ms);
    let window = &samples[from..to.max(from)];
    if window.iter().any(|s| is_stale_nan(s.v)) {
        Cow::Owned(
            window
                .iter()
                .filter(|s| !is_stale_nan(s.v))
                .copied()
                .collect(),
        )
    } else {
        Cow::Borrowed(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STALE_NAN_BITS;

    fn s(t_ms: i64, v: f64) -> Sample {
        Sample { t_ms, v }
    }

    #[test]
    fn lookback_includes_its_left_edge_and_stops_at_stale_markers() {
        let samples = [
            s(0, 1.0),
            s(60_000, 2.0),
            s(120_000, f64::from_bits(STALE_NAN_BITS)),
        ];
        assert_eq!(
            instant_sample(&samples, 60_000, 300_000),
            Some(s(60_000, 2.0))
        );
        assert_eq!(
            instant_sample(&samples, 119_999, 300_000),
            Some(s(60_000, 2.0))
        );
        assert_eq!(instant_sample(&samples, 120_000, 300_000), None);
        assert_eq!(instant_sample(&samples, 59_999, 59_999), Some(s(0, 1.0)));
        assert_eq!(instant_sample(&samples, 60_001, 1), Some(s(60_000, 2.0)));
        assert_eq!(instant_sample(&samples, 60_002, 1), None);
        assert_eq!(instant_sample(&samples, -1, 300_000), None);
    }

    #[test]
    fn duplicate_series_are_merged_and_samples_ordered() {
        let labels = crate::Labels::from_pairs([("a", "1")]);
        let series = vec![
            Series {
                labels: labels.clone(),
                samples: vec![s(20, 2.0), s(0, 0.0)],
            },
            Series {
                labels: labels.clone(),
                samples: vec![s(10, 1.0), s(20, 3.0)],
            },
        ];
        let merged = normalize(series);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].samples, vec![s(0, 0.0), s(10, 1.0), s(20, 3.0)]);
    }

    #[test]
    fn storage_labels_are_sorted_and_empty_values_dropped() {
        let mut labels = crate::Labels(vec![
            ("job".into(), "a".into()),
            ("empty".into(), String::new()),
            ("__name__".into(), "up".into()),
        ]);
        normalize_labels(&mut labels);
        assert_eq!(
            labels,
            crate::Labels::from_pairs([("__name__", "up"), ("job", "a")])
        );
    }

    #[test]
    fn windows_are_closed_and_skip_stale_markers() {
        let samples = [s(0, 1.0), s(10, f64::from_bits(STALE_NAN_BITS)), s(20, 3.0)];
        assert_eq!(*range_window(&samples, 0, 20), [s(0, 1.0), s(20, 3.0)]);
        assert!(range_window(&samples, 1, 19).is_empty());
        assert!(range_window(&samples, 30, 40).is_empty());
        assert_eq!(*range_window(&samples, 15, 20), [s(20, 3.0)]);
    }
}
