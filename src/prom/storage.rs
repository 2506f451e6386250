//! The PromQL engine's [`tael_promql::Storage`] over the query service's
//! [`View`]: the engine's selections go through [`super::select`].

use tael_promql::{Labels, Matcher, Sample, Series, Storage, StorageError};

use super::select::{select, SelectLimits, Selector};
use super::selector::label_value;
use super::series::LabelSet;
use crate::query::View;

pub struct ViewStorage<'a> {
    view: &'a View,
    limits: SelectLimits,
}

impl<'a> ViewStorage<'a> {
    pub fn new(view: &'a View, limits: SelectLimits) -> ViewStorage<'a> {
        ViewStorage { view, limits }
    }
}

struct EngineMatchers<'m>(&'m [Matcher]);

impl Selector for EngineMatchers<'_> {
    fn name_may_match(&self, name: &str) -> bool {
        self.0
            .iter()
            .filter(|m| m.name == "__name__")
            .all(|m| m.matches(name))
    }
    fn accepts(&self, labels: &LabelSet) -> bool {
        self.0
            .iter()
            .all(|m| m.matches(label_value(labels, &m.name)))
    }
}

impl Storage for ViewStorage<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StorageError> {
        let selected = select(
            self.view,
            &EngineMatchers(matchers),
            (start_ms, end_ms),
            self.limits,
        )
        .map_err(|e| StorageError(e.to_string()))?;
        Ok(selected
            .into_iter()
            .map(|s| Series {
                labels: Labels(s.labels),
                samples: s
                    .samples
                    .into_iter()
                    .map(|(t_ms, v)| Sample { t_ms, v })
                    .collect(),
            })
            .collect())
    }
}
