//! An in-memory [`Storage`], for tests and examples: a list of series filtered by matchers.

use crate::{Labels, Sample, Series, Storage, StorageError};

/// Series held in memory; `select` scans them all.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    series: Vec<Series>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// Adds a series. Samples must be strictly ascending by time (asserted: the engine's
    /// windows rely on it).
    pub fn add(&mut self, labels: Labels, samples: Vec<Sample>) {
        assert!(
            samples.windows(2).all(|w| w[0].t_ms < w[1].t_ms),
            "samples of {labels} are not strictly ascending"
        );
        self.series.push(Series { labels, samples });
    }

    /// Adds a series from promtool's `input_series` notation, one value per `interval_ms`
    /// from time 0: `"1 2 3"`, `"0+10x5"` (0, 10, ..., 50), `"5-1x2"`, `"7x3"` (7 four
    /// times), `"_"` (no sample), `"_x3"`, `"stale"` (a staleness marker).
    pub fn add_notation(&mut self, labels: Labels, interval_ms: i64, values: &str) {
        let samples = expand_notation(values)
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|v| Sample {
                    t_ms: i as i64 * interval_ms,
                    v,
                })
            })
            .collect();
        self.add(labels, samples);
    }
}

impl Storage for MemoryStorage {
    fn select(
        &self,
        matchers: &[crate::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StorageError> {
        let selected = self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches(s.labels.get(&m.name))))
            .map(|s| Series {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .filter(|p| (start_ms..=end_ms).contains(&p.t_ms))
                    .copied()
                    .collect(),
            })
            .collect();
        Ok(selected)
    }
}

/// Values of the notation in order; `None` for `_`. Panics on malformed input (test data).
fn expand_notation(values: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for token in values.split_whitespace() {
        if token == "stale" {
            out.push(Some(f64::from_bits(crate::STALE_NAN_BITS)));
            continue;
        }
        let (head, times) = match token.split_once('x') {
            Some((h, n)) => (h, n.parse::<usize>().expect("repeat count")),
            None => (token, 0),
        };
        if head == "_" {
            out.extend(std::iter::repeat_n(None, times + 1));
            continue;
        }
        let (start, delta) = split_start_delta(head);
        for i in 0..=times {
            out.push(Some(start + delta * i as f64));
        }
    }
    out
}

/// `"0+10"` -> (0, 10), `"5-1"` -> (5, -1), `"-2"` -> (-2, 0).
fn split_start_delta(head: &str) -> (f64, f64) {
    let sign_at = head
        .char_indices()
        .skip(1)
        .find(|(i, c)| (*c == '+' || *c == '-') && !head[..*i].ends_with(['e', 'E']))
        .map(|(i, _)| i);
    let parse = |s: &str| -> f64 {
        crate::time::parse_go_float(s).unwrap_or_else(|| panic!("bad number {s:?}"))
    };
    match sign_at {
        None => (parse(head), 0.0),
        Some(i) => (parse(&head[..i]), parse(&head[i..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notation_expands_like_promtool() {
        let got = expand_notation("0+10x2 _ 5-1x1 7x1 _x1 Inf");
        let want = [
            Some(0.0),
            Some(10.0),
            Some(20.0),
            None,
            Some(5.0),
            Some(4.0),
            Some(7.0),
            Some(7.0),
            None,
            None,
            Some(f64::INFINITY),
        ];
        assert_eq!(got, want);
        let stale = expand_notation("stale");
        assert!(crate::is_stale_nan(stale[0].unwrap()));
    }
}
