//! Label-set operations the evaluator needs: lookup, edits that keep the set sorted, and the
//! match signatures of binary operators and aggregations.

use crate::Labels;

/// The label holding the metric name.
pub(crate) const METRIC_NAME: &str = "__name__";
/// The bucket bound label of classic histograms.
pub(crate) const BUCKET_LABEL: &str = "le";

impl Labels {
    /// A label set from pairs in any order; later duplicates replace earlier ones.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Labels {
        let mut labels = Labels::default();
        for (k, v) in pairs {
            labels.set(&k.into(), &v.into());
        }
        labels
    }

    /// The value of `name`, or `""` when absent (Prometheus treats both alike).
    pub fn get(&self, name: &str) -> &str {
        match self.position(name) {
            Ok(i) => &self.0[i].1,
            Err(_) => "",
        }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// Sets `name` to `value`; an empty value removes the label (a label with an empty value
    /// does not exist in Prometheus's data model).
    pub fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.remove(name);
            return;
        }
        match self.position(name) {
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.position(name) {
            self.0.remove(i);
        }
    }

    /// The set without `__name__`.
    pub fn without_metric_name(&self) -> Labels {
        let mut out = self.clone();
        out.remove(METRIC_NAME);
        out
    }

    /// Only the labels named in `names`.
    pub(crate) fn keep_only(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        )
    }

    /// The labels not named in `names`.
    pub(crate) fn drop_all(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        )
    }

    /// The labels a binary operator matches on: with `on`, exactly the listed ones; with
    /// `ignoring` (or neither), all but the listed ones and `__name__`.
    pub(crate) fn match_signature(&self, on: bool, names: &[String]) -> Labels {
        if on {
            self.keep_only(names)
        } else {
            self.drop_all(names).without_metric_name()
        }
    }

    /// The labels an aggregation groups by: `by` keeps the listed ones, `without` drops them
    /// and `__name__`.
    pub(crate) fn grouping(&self, without: bool, names: &[String]) -> Labels {
        if without {
            self.drop_all(names).without_metric_name()
        } else {
            self.keep_only(names)
        }
    }
}

/// Whether two elements of `labels` are equal (the evaluator's "vector cannot contain metrics
/// with the same labelset" check).
pub(crate) fn has_duplicates<'a>(labels: impl Iterator<Item = &'a Labels>) -> bool {
    let mut all: Vec<&Labels> = labels.collect();
    all.sort_unstable();
    all.windows(2).any(|w| w[0] == w[1])
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_labels_sorted_and_empty_values_absent() {
        let mut l = Labels::from_pairs([("b", "2"), ("a", "1")]);
        assert_eq!(l.0[0].0, "a");
        l.set("c", "3");
        l.set("a", "");
        assert_eq!(l, Labels::from_pairs([("b", "2"), ("c", "3")]));
        assert_eq!(l.get("zz"), "");
    }

    #[test]
    fn signatures_for_on_and_ignoring() {
        let l = Labels::from_pairs([("__name__", "m"), ("a", "1"), ("b", "2")]);
        let names = vec!["a".to_string()];
        assert_eq!(
            l.match_signature(true, &names),
            Labels::from_pairs([("a", "1")])
        );
        assert_eq!(
            l.match_signature(false, &names),
            Labels::from_pairs([("b", "2")])
        );
        assert_eq!(l.grouping(false, &names), Labels::from_pairs([("a", "1")]));
    }
}
