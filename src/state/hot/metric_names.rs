//! The distinct metric names stored in a time window, read from the
//! `metric_by_name` index without visiting its points: per day bucket, a
//! skip scan that seeks past every name once it has seen it.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::keys::{leading_time, service_prefix, DAY_NANOS, RECORD_KEY_LEN};
use super::{HotStore, StoreError, StoreResult};

impl HotStore {
    /// Names of the metric points stored in the day buckets that overlap
    /// `[since, until]` (unix nanoseconds), at most `max_names` of them.
    /// Day granularity: a name may have no point inside the window itself;
    /// callers filter points by time anyway.
    pub fn metric_names(
        &self,
        (since, until): (u64, u64),
        max_names: usize,
    ) -> StoreResult<BTreeSet<String>> {
        let index = &self.keyspaces.metric_by_name;
        let mut names = BTreeSet::new();
        // Clamp the window to the points that exist: a wide window would
        // otherwise seek in every day of it.
        let time_of = |g: Option<fjall::Guard>| -> StoreResult<Option<u64>> {
            g.map(|g| Ok(leading_time(&g.key()?))).transpose()
        };
        let metrics = &self.keyspaces.metrics;
        let (Some(oldest), Some(newest)) = (
            time_of(metrics.first_key_value())?,
            time_of(metrics.last_key_value())?,
        ) else {
            return Ok(names);
        };
        let (since, until) = (since.max(oldest), until.min(newest));
        if since > until {
            return Ok(names);
        }
        for day in since / DAY_NANOS..=until / DAY_NANOS {
            let day_start = day.to_be_bytes().to_vec();
            let day_end = (day + 1).to_be_bytes().to_vec();
            let mut from = Bound::Included(day_start);
            loop {
                let Some(g) = index
                    .range::<Vec<u8>, _>((from, Bound::Excluded(day_end.clone())))
                    .next()
                else {
                    break;
                };
                let key = g.key()?;
                let name = name_in_key(&key)?;
                // Everything of this name in this day sorts below this key.
                let mut past = day.to_be_bytes().to_vec();
                past.extend_from_slice(&service_prefix(&name));
                past.extend_from_slice(&[0xff; RECORD_KEY_LEN]);
                from = Bound::Excluded(past);
                names.insert(name);
                if names.len() >= max_names {
                    return Ok(names);
                }
            }
        }
        Ok(names)
    }
}

/// The name in a `metric_by_name` key: day ++ len16 ++ name ++ record key.
fn name_in_key(key: &[u8]) -> StoreResult<String> {
    let corrupt = || StoreError::Corrupt("a malformed metric_by_name key".into());
    let len = u16::from_be_bytes(key.get(8..10).ok_or_else(corrupt)?.try_into().unwrap());
    let name = key.get(10..10 + len as usize).ok_or_else(corrupt)?;
    if key.len() != 10 + len as usize + RECORD_KEY_LEN {
        return Err(corrupt());
    }
    String::from_utf8(name.to_vec()).map_err(|_| corrupt())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{log_id, open_store};
    use super::*;
    use crate::model::{MetricPoint, MetricType};

    fn point(name: &str, t: u64, v: f64) -> MetricPoint {
        MetricPoint {
            timestamp_unix_nanos: t,
            start_unix_nanos: 0,
            service: "svc".into(),
            name: name.into(),
            metric_type: MetricType::Gauge,
            value: v,
            unit: String::new(),
            attributes: vec![],
            temporality: None,
            is_monotonic: None,
            histogram: None,
            quantiles: vec![],
        }
    }

    #[test]
    fn names_are_listed_once_per_window_without_their_points() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        let day = 20_000 * DAY_NANOS;
        for (name, t) in [
            ("b", day + 5),
            ("a", day + 1),
            ("a", day + 2),
            ("ab", day + 3),
            ("c", day + DAY_NANOS + 1),
            ("z", day + 3 * DAY_NANOS),
        ] {
            for v in 0..3 {
                b.put_metric(&point(name, t, v as f64)).unwrap();
            }
        }
        b.commit(Some(log_id(1)), None).unwrap();
        let names = |w, max| {
            store
                .metric_names(w, max)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names((day, day + 2 * DAY_NANOS), 100),
            ["a", "ab", "b", "c"]
        );
        assert_eq!(names((day + DAY_NANOS, u64::MAX), 100), ["c", "z"]);
        assert_eq!(names((day, day + 2 * DAY_NANOS), 2).len(), 2);
        assert!(names((0, 1), 100).is_empty());
        assert!(names((5, 1), 100).is_empty());
    }
}
