//! Offline checkers over a run's [`crate::events`] history.
//!
//! Every checker returns a [`Check`]: a verdict (`Some(true)` valid,
//! `Some(false)` invalid, `None` unknown) plus JSON details for
//! `results.json`.

pub mod election;
pub mod exits;
pub mod flood;
pub mod list;
pub mod list_order;
pub mod poison;
pub mod retention;
pub mod session;
pub mod set;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// `Some(true)` valid, `Some(false)` invalid, `None` unknown.
    pub valid: Option<bool>,
    /// One line for the summary table.
    pub summary: String,
    pub details: Value,
}

impl Check {
    pub fn verdict_str(&self) -> &'static str {
        match self.valid {
            Some(true) => "valid",
            Some(false) => "INVALID",
            None => "unknown",
        }
    }
}

/// Combines verdicts: any invalid → invalid; else any unknown → unknown.
pub fn combine(checks: &[Check]) -> Option<bool> {
    if checks.iter().any(|c| c.valid == Some(false)) {
        Some(false)
    } else if checks.iter().any(|c| c.valid.is_none()) {
        None
    } else {
        Some(true)
    }
}

/// p50 / p95 / max of a list of milliseconds.
pub fn percentiles(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({ "count": v.len(), "p50": at(0.5), "p95": at(0.95), "max": at(1.0) })
}

/// At most `n` items, for reports that could otherwise list thousands.
pub fn first<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    v.iter().take(n).cloned().collect()
}
