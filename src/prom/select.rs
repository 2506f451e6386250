//! Series selection over the query service's [`View`]: every Prometheus
//! series whose name and labels a selector accepts, with its samples in a
//! time window. The PromQL engine's storage and the label and series
//! endpoints read through here.
//!
//! Stored names are not Prometheus names (an OTLP histogram `rpc.duration`
//! of unit `s` is `rpc_duration_seconds_bucket`, `_sum` and `_count`), so a
//! selection lists the stored names of the window from the name index,
//! names each by its newest point there, and reads the points of only the
//! stored names whose Prometheus names the selector may accept. Below the
//! raw floor, where retention or moves took the raw points, the metric
//! rollups stand in for them (see [`select`]).

use std::collections::{BTreeMap, HashMap};

use super::series::{self, LabelSet};
use crate::metric_rollup::Resolution;
use crate::model::MetricPoint;
use crate::query::{StoreError, View};

/// Bounds on what one selection reads.
#[derive(Clone, Copy, Debug)]
pub struct SelectLimits {
    /// Distinct stored metric names considered.
    pub max_names: usize,
    /// Stored points read, over all names.
    pub max_points: usize,
}

impl Default for SelectLimits {
    fn default() -> Self {
        SelectLimits {
            max_names: 20_000,
            max_points: 5_000_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The selection would read more than its limits allow.
    #[error("{0}")]
    TooLarge(String),
}

/// A stored point's attributes (a remote-written point's labels but `__name__`).
type Attributes = Vec<(String, String)>;

/// One selected series: samples ascending by time, one per millisecond.
#[derive(Clone, Debug, PartialEq)]
pub struct Selected {
    pub labels: LabelSet,
    pub samples: Vec<(i64, f64)>,
}

/// What a selection accepts.
pub trait Selector {
    /// Whether a series of this metric name may be accepted.
    fn name_may_match(&self, name: &str) -> bool;
    /// Whether a series of these labels (`__name__` included) is accepted.
    fn accepts(&self, labels: &LabelSet) -> bool;
}

/// A millisecond window as an inclusive nanosecond window: a point stored
/// at any nanosecond of the last millisecond is inside.
fn nanos_window(start_ms: i64, end_ms: i64) -> Option<(u64, u64)> {
    let end = u64::try_from(end_ms).ok()?;
    let start = u64::try_from(start_ms.max(0)).ok()?;
    let since = start.saturating_mul(1_000_000);
    let until = end.saturating_mul(1_000_000).saturating_add(999_999);
    (since <= until).then_some((since, until))
}

/// Every series `selector` accepts with its samples in `[start_ms, end_ms]`.
///
/// Samples below the raw floor ([`View::raw_metrics_floor`]: retention or
/// moves to the cold tier took the raw points there) come from the metric
/// rollups: each bucket's last point, so one sample per minute (or per
/// hour, see [`rollup_resolution`]) at that point's own time. Counters keep
/// their resets (a bucket's last value below the one before is a reset to
/// `rate()`), but an increase within a bucket that began with a reset is
/// seen only from the reset on.
pub fn select(
    view: &View,
    selector: &dyn Selector,
    (start_ms, end_ms): (i64, i64),
    limits: SelectLimits,
) -> Result<Vec<Selected>, SelectError> {
    let Some((since, until)) = nanos_window(start_ms, end_ms) else {
        return Ok(Vec::new());
    };
    let raw_floor = view.raw_metrics_floor()?;
    let mut picked = Picked {
        selector,
        window_ms: (start_ms, end_ms),
        budget: limits.max_points,
        found: BTreeMap::new(),
    };
    if since < raw_floor {
        picked.from_rollups(view, (since, until.min(raw_floor - 1)), limits.max_names)?;
    }
    if until >= raw_floor {
        picked.from_points(view, (since.max(raw_floor), until), limits.max_names)?;
    }
    Ok(picked
        .found
        .into_iter()
        .map(|(labels, mut samples)| {
            // Points come newest first; two points of one series in one
            // millisecond keep the one whose value sorts first, the same on
            // every node.
            samples.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            samples.dedup_by_key(|s| s.0);
            Selected { labels, samples }
        })
        .collect())
}

/// Selections whose part below the raw floor spans at most this read the
/// minute rollups; longer ones the hour rollups (a minute per sample over
/// months would read more than a selection may).
pub const MAX_MINUTE_ROLLUP_SPAN_NANOS: u64 = 7 * 86_400 * 1_000_000_000;

/// The rollups a selection's part `[since, until]` below the raw floor reads.
pub fn rollup_resolution((since, until): (u64, u64)) -> Resolution {
    if until - since <= MAX_MINUTE_ROLLUP_SPAN_NANOS {
        Resolution::Minute
    } else {
        Resolution::Hour
    }
}

/// A selection being gathered.
struct Picked<'s> {
    selector: &'s dyn Selector,
    window_ms: (i64, i64),
    /// Stored points (or rollups) left to read.
    budget: usize,
    found: BTreeMap<LabelSet, Vec<(i64, f64)>>,
}

impl Picked<'_> {
    fn too_many_names(max_names: usize) -> SelectError {
        SelectError::TooLarge(format!(
            "more than {max_names} metric names in the window; narrow it"
        ))
    }

    fn too_many_points(&self, max_points: usize) -> SelectError {
        SelectError::TooLarge(format!(
            "the selection reads more than {max_points} stored points; narrow the window or the selector"
        ))
    }

    /// Raw points of `window` (nanoseconds, inclusive).
    fn from_points(
        &mut self,
        view: &View,
        window: (u64, u64),
        max_names: usize,
    ) -> Result<(), SelectError> {
        let stored_names = view.metric_names(window, max_names.saturating_add(1))?;
        if stored_names.len() > max_names {
            return Err(Self::too_many_names(max_names));
        }
        for stored in stored_names {
            let newest = view.metric_points_by_name(&stored, window, 1)?;
            let Some(newest) = newest.records.first() else {
                continue;
            };
            if !self.name_may_match(newest) {
                continue;
            }
            let points = view.metric_points_by_name(&stored, window, self.budget)?;
            if points.truncated {
                return Err(self.too_many_points(self.budget));
            }
            self.budget -= points.records.len();
            self.add(&stored, points.records, window);
        }
        Ok(())
    }

    /// Each rollup's last point in `window` (nanoseconds, inclusive), for
    /// the part of a selection below the raw floor.
    fn from_rollups(
        &mut self,
        view: &View,
        window: (u64, u64),
        max_names: usize,
    ) -> Result<(), SelectError> {
        let res = rollup_resolution(window);
        let buckets = (res.bucket_of(window.0), res.bucket_of(window.1));
        let names = view.metric_rollup_names(res, buckets, max_names.saturating_add(1))?;
        if names.len() > max_names {
            return Err(Self::too_many_names(max_names));
        }
        for stored in names {
            let (series, truncated) = view.metric_rollups(&stored, res, buckets, self.budget)?;
            if truncated {
                return Err(self.too_many_points(self.budget));
            }
            let Some(first) = series.values().find_map(|b| b.first()) else {
                continue;
            };
            if !self.name_may_match(&first.1.last) {
                continue;
            }
            let lasts: Vec<MetricPoint> = series
                .into_values()
                .flatten()
                .map(|(_, r)| r.last)
                .collect();
            self.budget -= lasts.len();
            self.add(&stored, lasts, window);
        }
        Ok(())
    }

    fn name_may_match(&self, p: &MetricPoint) -> bool {
        series::names(p)
            .iter()
            .any(|n| self.selector.name_may_match(n))
    }

    /// The samples of `points` (of the stored name `stored`) stamped in
    /// `window` (nanoseconds) and the selection's milliseconds.
    fn add(&mut self, stored: &str, points: Vec<MetricPoint>, window: (u64, u64)) {
        let (start_ms, end_ms) = self.window_ms;
        // Remote-written points of one name differ only in their
        // attributes: group them by those, and build and match each label
        // set once rather than once per point.
        let mut verbatim: HashMap<Attributes, Vec<(i64, f64)>> = HashMap::new();
        for p in points {
            let t = series::t_ms(&p);
            let in_window = (window.0..=window.1).contains(&p.timestamp_unix_nanos);
            if !in_window || t < start_ms || t > end_ms {
                continue;
            }
            if series::is_verbatim(&p) {
                verbatim.entry(p.attributes).or_default().push((t, p.value));
                continue;
            }
            for (labels, v) in series::samples(&p) {
                if self.selector.accepts(&labels) {
                    self.found.entry(labels).or_default().push((t, v));
                }
            }
        }
        for (attributes, samples) in verbatim {
            let labels = series::verbatim_labels(attributes, stored);
            if self.selector.accepts(&labels) {
                self.found.entry(labels).or_default().extend(samples);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millisecond_windows_cover_their_last_millisecond() {
        assert_eq!(nanos_window(1, 2), Some((1_000_000, 2_999_999)));
        assert_eq!(nanos_window(-5, 0), Some((0, 999_999)));
        assert_eq!(nanos_window(0, -1), None);
        assert_eq!(nanos_window(5, 4), None);
    }
}
