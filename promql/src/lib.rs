//! PromQL evaluation with Prometheus 2.x semantics (the 2.42 release is the reference).
//!
//! The crate is pure: it parses a query, asks a [`Storage`] for the series each selector
//! names, evaluates, and renders the result as the `data` object of Prometheus's HTTP API
//! ([`result_json`]). The server's HTTP layer parses parameters with [`parse_time_ms`] and
//! [`parse_duration_ms`], calls [`instant_query`] or [`range_query`], and maps an
//! [`EngineError`] to Prometheus's `errorType` and HTTP status.
//!
//! # The evaluation loop
//!
//! A query runs over *steps*: one (the instant query's time) or `start + k * step <= end`
//! (a range query). As in Prometheus's engine, every node of the expression tree is
//! evaluated **once for all steps** and yields a matrix whose points sit at step times; a
//! scalar is a one-series matrix with a point at every step. Nodes combine their children
//! in one shared loop (`Evaluator::range_eval` in `eval.rs`): for each step, take each
//! child's samples at that step, apply the node's per-step function (an operator, an
//! aggregation, a function), check that no two output elements have the same labels, and
//! append the outputs to output series. A series with no point at any step is left out.
//!
//! Leaves read storage once each:
//!
//! - an instant selector loads `[first step - offset - lookback, last step - offset]` and,
//!   per step, takes the latest sample at or before `step - offset` that is at most
//!   `lookback_ms` (5 minutes) old. A staleness marker ([`STALE_NAN_BITS`]) as that latest
//!   sample means "no value" (`select.rs`);
//! - a range selector `x[r]` gives a function, per series and step, the samples in the
//!   closed window `[step - offset - r, step - offset]` (Prometheus 2.x; 3.x made it
//!   left-open), staleness markers left out. Range functions (`rate`, `*_over_time`, ...)
//!   run on each window (`range_functions.rs`); a series whose windows are all empty, or
//!   too short for the function, yields nothing;
//! - a subquery `expr[r:s]` evaluates `expr` at the multiples of `s` in its range with an
//!   evaluator of its own, then is windowed like a range selector;
//! - `@ t` fixes the time a selector or subquery is evaluated at, for every step.
//!
//! Instant queries return their vector in evaluation order (series sorted by labels as
//! Prometheus's storage returns them, then as operators and functions produce them); range
//! query matrices are sorted by labels.
//!
//! # Limits
//!
//! [`EngineLimits`] bounds every query: `max_points_per_series` steps (Prometheus's API
//! refuses more than 11,000 with a `bad_data` error), `max_series` series loaded from
//! storage, and `max_samples` samples, counting the samples loaded from storage, the points
//! every node produces, and the steps of subqueries (so a tiny subquery step over a long
//! range is refused). Exceeding a sample or series limit is an `execution` error. A query
//! whose expression tree could nest more than 256 levels (brackets plus operators, counted
//! from its text) is refused as `bad_data` before parsing: parsing and evaluation recurse
//! per level, and a short query must not be able to overflow a thread's stack.
//!
//! # Supported
//!
//! - Selectors with `=`, `!=`, `=~`, `!~` (regexes fully anchored), `offset`, `@` (including
//!   `start()`/`end()`), range selectors, subqueries (default step 1 minute).
//! - Literals: numbers, strings; unary minus.
//! - Binary operators `+ - * / % ^ atan2`, `== != > < >= <=` (filtering or `bool`),
//!   `and or unless`, between scalars and vectors, with `on`/`ignoring` and
//!   `group_left`/`group_right`, and Prometheus's matching errors.
//! - Aggregations `sum avg min max count group stddev stdvar topk bottomk quantile
//!   count_values` with `by`/`without`.
//! - Functions: `abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time
//!   ceil changes clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week
//!   day_of_year days_in_month deg delta deriv exp floor histogram_quantile holt_winters
//!   hour idelta increase irate label_join label_replace last_over_time ln log10 log2
//!   max_over_time min_over_time minute month pi predict_linear present_over_time
//!   quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_desc sqrt
//!   stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year`.
//!
//! # Not supported
//!
//! Refused with a `bad_data` error naming the feature, never answered wrongly:
//! native histograms and their functions (`histogram_count`, `histogram_sum`,
//! `histogram_fraction`), and everything newer than Prometheus 2.42 that the parser knows
//! (`limitk`, `limit_ratio`, `fill` modifiers, `or` inside braces, functions such as
//! `sort_by_label` or `mad_over_time`). Query timeouts are left to the caller (the engine
//! never blocks on I/O other than its [`Storage`]).
//!
//! # Checking against Prometheus
//!
//! Unit tests under `src/tests/` run scripts of series and queries whose expected values were
//! checked against Prometheus 2.42. `scripts/promql-compare` asks a real Prometheus (Debian
//! package) and this engine a thousand instant and range queries over the same generated
//! data and requires identical API responses.
//!
//! # Known differences
//!
//! - Tied values in `topk`/`bottomk` (and ties in `sort` of more than 12 elements) may pick
//!   or order elements differently: Prometheus's choice depends on its storage's series
//!   order and its unstable sort.
//! - The order of `histogram_quantile`'s output in an instant query (Prometheus's is
//!   random) is the order of first appearance.
//! - Trigonometric and hyperbolic functions, `exp`, and `^` with a non-integer exponent use
//!   Rust's math library, which can differ from Go's in the last bit of the result
//!   (`ln`, `log2`, `log10` and `^` with an integer exponent are computed as Go computes
//!   them and match exactly).

use std::fmt;

use promql_parser::parser::value::ValueType;

use eval::{Context, Evaluator, Steps, Val};
use select::Budget;

mod aggregate;
mod binary;
mod date;
mod eval;
mod functions;
mod gomath;
mod json;
mod labels;
mod matcher;
mod memory;
mod parse;
mod quantile;
mod range_functions;
mod select;
#[cfg(test)]
mod tests;
mod time;

pub use json::{format_float, result_json};
pub use memory::MemoryStorage;
pub use time::{parse_duration_ms, parse_time_ms};

/// Prometheus's staleness marker: a NaN with this exact bit pattern, written when a series
/// disappears from a scrape. It ends the series at that instant (no lookback past it).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `v` is the staleness marker (compared by bits: every NaN compares unequal).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Label set, sorted by name, unique names, `__name__` included when present.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(pub Vec<(String, String)>);

/// One float sample: milliseconds since the Unix epoch and its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t_ms: i64,
    pub v: f64,
}

/// A series and its samples, strictly ascending by `t_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// How a [`Matcher`] compares a label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One label matcher of a selector, e.g. `job=~"api|web"`.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

/// Where the engine reads samples. `select` returns every series matching ALL matchers (a
/// missing label matches as the empty string, as in Prometheus) with its samples in
/// `[start_ms, end_ms]` (inclusive; stale markers included as samples). The first matcher is
/// the metric name's when the selector names one. The engine tolerates a storage that
/// returns one label set in several series or samples out of order (it merges and sorts),
/// but each costs a pass.
pub trait Storage {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, StorageError>;
}

/// A failure of the [`Storage`]; the query fails with an `internal` error carrying it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

/// Bounds on one query's cost. Exceeding one fails the query with a clear error instead of
/// exhausting memory.
#[derive(Clone, Debug)]
pub struct EngineLimits {
    /// Samples the query may load from storage and hold in its results (Prometheus's
    /// `--query.max-samples`, 50,000,000 by default).
    pub max_samples: usize,
    /// Series the selectors of one query may load.
    pub max_series: usize,
    /// How far back an instant selector looks for a sample (`--query.lookback-delta`).
    pub lookback_ms: i64,
    /// Steps a range query may have (Prometheus's API refuses more than 11,000).
    pub max_points_per_series: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_samples: 50_000_000,
            max_series: 500_000,
            lookback_ms: 300_000,
            max_points_per_series: 11_000,
        }
    }
}

/// A query's result, as Prometheus types it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar { t_ms: i64, v: f64 },
    String { t_ms: i64, v: String },
    Vector(Vec<(Labels, Sample)>),
    Matrix(Vec<Series>),
}

/// Errors carry Prometheus's errorType: `bad_data` (parse errors, bad params -> HTTP 400),
/// `execution` (evaluation errors, 422), `timeout` (503), `internal` (500).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    BadData(String),
    #[error("{0}")]
    Execution(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// The `errorType` field of Prometheus's error response.
    pub fn error_type(&self) -> &'static str {
        match self {
            EngineError::BadData(_) => "bad_data",
            EngineError::Execution(_) => "execution",
            EngineError::Timeout(_) => "timeout",
            EngineError::Internal(_) => "internal",
        }
    }

    /// The HTTP status Prometheus answers with for this error type.
    pub fn http_status(&self) -> u16 {
        match self {
            EngineError::BadData(_) => 400,
            EngineError::Execution(_) => 422,
            EngineError::Timeout(_) => 503,
            EngineError::Internal(_) => 500,
        }
    }
}

impl From<StorageError> for EngineError {
    fn from(e: StorageError) -> Self {
        EngineError::Internal(e.0)
    }
}

impl fmt::Display for Labels {
    /// Prometheus's notation: `{__name__="up", job="api"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={value:?}")?;
        }
        f.write_str("}")
    }
}

/// Evaluates `query` at one instant.
pub fn instant_query(
    storage: &dyn Storage,
    query: &str,
    time_ms: i64,
    limits: &EngineLimits,
) -> Result<Value, EngineError> {
    let expr = parse::parse_query(query)?;
    let ctx = context(storage, limits, time_ms, time_ms);
    let steps = Steps {
        start_ms: time_ms,
        end_ms: time_ms,
        interval_ms: 1,
    };
    let evaluator = Evaluator { ctx: &ctx, steps };
    let matrix = match evaluator.eval(&expr)? {
        Val::String(v) => return Ok(Value::String { t_ms: time_ms, v }),
        Val::Matrix(m) => m,
    };
    Ok(match expr.value_type() {
        ValueType::Scalar => {
            let v = matrix
                .first()
                .and_then(|s| s.samples.first())
                .map_or(f64::NAN, |p| p.v);
            Value::Scalar { t_ms: time_ms, v }
        }
        ValueType::Matrix => Value::Matrix(matrix),
        _ => Value::Vector(
            matrix
                .into_iter()
                .filter_map(|s| {
                    let v = s.samples.first()?.v;
                    Some((s.labels, Sample { t_ms: time_ms, v }))
                })
                .collect(),
        ),
    })
}

/// Evaluates `query` at `start_ms + k * step_ms` for every `k` with that time `<= end_ms`.
/// The result is always a [`Value::Matrix`], sorted by labels; series without points are
/// left out.
pub fn range_query(
    storage: &dyn Storage,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    limits: &EngineLimits,
) -> Result<Value, EngineError> {
    check_range_params(start_ms, end_ms, step_ms, limits)?;
    let expr = parse::parse_query(query)?;
    let kind = match expr.value_type() {
        ValueType::Scalar | ValueType::Vector => None,
        ValueType::Matrix => Some("range vector"),
        ValueType::String => Some("string"),
    };
    if let Some(kind) = kind {
        return Err(EngineError::BadData(format!(
            "invalid parameter \"query\": invalid expression type \"{kind}\" for range query, \
             must be Scalar or instant Vector"
        )));
    }
    let ctx = context(storage, limits, start_ms, end_ms);
    let steps = Steps {
        start_ms,
        end_ms,
        interval_ms: step_ms,
    };
    let evaluator = Evaluator { ctx: &ctx, steps };
    let mut matrix = evaluator.eval_matrix(&expr)?;
    matrix.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Value::Matrix(matrix))
}

fn context<'a>(
    storage: &'a dyn Storage,
    limits: &EngineLimits,
    start_ms: i64,
    end_ms: i64,
) -> Context<'a> {
    Context {
        storage,
        budget: Budget::new(limits),
        // Prometheus takes a zero lookback delta as "the default".
        lookback_ms: if limits.lookback_ms > 0 {
            limits.lookback_ms
        } else {
            EngineLimits::default().lookback_ms
        },
        query_start_ms: start_ms,
        query_end_ms: end_ms,
    }
}

/// The checks Prometheus's API applies to a range query's parameters, with its messages.
fn check_range_params(
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    limits: &EngineLimits,
) -> Result<(), EngineError> {
    if end_ms < start_ms {
        return Err(EngineError::BadData(
            "invalid parameter \"end\": end timestamp must not be before start time".into(),
        ));
    }
    if step_ms <= 0 {
        return Err(EngineError::BadData(
            "invalid parameter \"step\": zero or negative query resolution step widths are not \
             accepted. Try a positive integer"
                .into(),
        ));
    }
    if (end_ms - start_ms) / step_ms > limits.max_points_per_series as i64 {
        return Err(EngineError::BadData(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query \
             resolution (?step=XX)",
            thousands(limits.max_points_per_series)
        )));
    }
    Ok(())
}

/// `11000` as `11,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
