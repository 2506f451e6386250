//! Series selection over the query service's [`View`]: every Prometheus
//! series whose name and labels a selector accepts, with its samples in a
//! time window. The PromQL engine's storage and the label and series
//! endpoints read through here.
//!
//! Stored names are not Prometheus names (an OTLP histogram `rpc.duration`
//! of unit `s` is `rpc_duration_seconds_bucket`, `_sum` and `_count`), so a
//! selection lists the stored names of the window from the name index,
//! names each by its newest point there, and reads the points of only the
//! stored names whose Prometheus names the selector may accept.

use std::collections::{BTreeMap, HashMap};

use super::series::{self, LabelSet};
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
pub fn select(
    view: &View,
    selector: &dyn Selector,
    (start_ms, end_ms): (i64, i64),
    limits: SelectLimits,
) -> Result<Vec<Selected>, SelectError> {
    let Some(window) = nanos_window(start_ms, end_ms) else {
        return Ok(Vec::new());
    };
    let stored_names = view.metric_names(window, limits.max_names.saturating_add(1))?;
    if stored_names.len() > limits.max_names {
        return Err(SelectError::TooLarge(format!(
            "more than {} metric names in the window; narrow it",
            limits.max_names
        )));
    }
    let mut found: BTreeMap<LabelSet, Vec<(i64, f64)>> = BTreeMap::new();
    let mut budget = limits.max_points;
    for stored in stored_names {
        let newest = view.metric_points_by_name(&stored, window, 1)?;
        let Some(newest) = newest.records.first() else {
            continue;
        };
        if !series::names(newest)
            .iter()
            .any(|n| selector.name_may_match(n))
        {
            continue;
        }
        let points = view.metric_points_by_name(&stored, window, budget)?;
        if points.truncated {
            return Err(SelectError::TooLarge(format!(
                "the selection reads more than {} stored points; narrow the window or the selector",
                limits.max_points
            )));
        }
        budget -= points.records.len();
        // Remote-written points of one name differ only in their
        // attributes: group them by those, and build and match each label
        // set once rather than once per point.
        let mut verbatim: HashMap<Attributes, Vec<(i64, f64)>> = HashMap::new();
        for p in points.records {
            let t = series::t_ms(&p);
            if t < start_ms || t > end_ms {
                continue;
            }
            if series::is_verbatim(&p) {
                verbatim.entry(p.attributes).or_default().push((t, p.value));
                continue;
            }
            for (labels, v) in series::samples(&p) {
                if selector.accepts(&labels) {
                    found.entry(labels).or_default().push((t, v));
                }
            }
        }
        for (attributes, samples) in verbatim {
            let labels = series::verbatim_labels(attributes, &stored);
            if selector.accepts(&labels) {
                found.entry(labels).or_default().extend(samples);
            }
        }
    }
    Ok(found
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
