//! Function calls. Functions over a range vector (`rate`, `*_over_time`, ...) run per input
//! series and per step on that step's window; the others run per step on instant vectors.
//! Which functions drop the metric name follows Prometheus: all that compute a new value do,
//! `last_over_time`, `sort*`, `label_*` and filters keep it.

use promql_parser::parser::{Call, Expr, VectorSelector};
use regex::Regex;

use crate::eval::{unwrap_parens, Evaluator, Matrix, Vector, DUPLICATE_LABELSET};
use crate::labels::{has_duplicates, is_valid_label_name, BUCKET_LABEL, METRIC_NAME};
use crate::quantile::{bucket_quantile, go_sort, Bucket};
use crate::range_functions::{range_function, RangeCall};
use crate::select::range_window;
use crate::{EngineError, Labels, Sample, Series};

/// Per-query preparation of functions that take literal arguments.
enum Prepared {
    LabelReplace {
        dst: String,
        replacement: String,
        src: String,
        regex: Regex,
    },
    LabelJoin {
        dst: String,
        separator: String,
        srcs: Vec<String>,
    },
    Absent(Labels),
    Plain,
}

fn execution(msg: String) -> EngineError {
    EngineError::Execution(msg)
}

impl Evaluator<'_> {
    pub(crate) fn call(&self, c: &Call) -> Result<Matrix, EngineError> {
        let args: Vec<&Expr> = c.args.args.iter().map(|a| unwrap_parens(a)).collect();
        if c.func.name == "timestamp" {
            if let Some(Expr::VectorSelector(vs)) = args.first() {
                return self.timestamp_of_selector(vs);
            }
        }
        let range_arg = args
            .iter()
            .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)));
        match range_arg {
            Some(i) => self.call_over_range(c.func.name, &args, i),
            None => self.call_instant(c.func.name, &args),
        }
    }

    /// A function of a range vector: for each series and step, the window's samples.
    fn call_over_range(
        &self,
        name: &str,
        args: &[&Expr],
        range_index: usize,
    ) -> Result<Matrix, EngineError> {
        let mut params = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i != range_index {
                params.push(self.eval_matrix(a)?);
            }
        }
        let arg = self.range_arg(args[range_index])?;
        let mut out = Vec::new();
        for series in &arg.series {
            let mut points = Vec::new();
            for (step, ts) in self.steps.times().enumerate() {
                let (start, end) = arg.window_at(ts);
                let window = range_window(&series.samples, start, end);
                if window.is_empty() {
                    continue;
                }
                let values: Vec<f64> = params.iter().map(|m| scalar_at(m, step, ts)).collect();
                let call = RangeCall {
                    range_ms: arg.range_ms,
                    range_start_ms: start,
                    range_end_ms: end,
                    step_ms: ts,
                    params: &values,
                };
                if let Some(v) = range_function(name, &window, &call)? {
                    points.push(Sample { t_ms: ts, v });
                }
            }
            if points.is_empty() {
                continue;
            }
            self.ctx.budget.charge_samples(points.len())?;
            let labels = if name == "last_over_time" {
                series.labels.clone()
            } else {
                series.labels.without_metric_name()
            };
            out.push(Series {
                labels,
                samples: points,
            });
        }
        if name == "absent_over_time" {
            return Ok(self.absent_over_time(&out, args[range_index]));
        }
        if has_duplicates(out.iter().map(|s| &s.labels)) {
            return Err(execution(DUPLICATE_LABELSET.into()));
        }
        Ok(out)
    }

    /// `absent_over_time`: one series, labelled from the selector's equality matchers, with
    /// a 1 at every step where no input series had a sample.
    fn absent_over_time(&self, present: &Matrix, arg: &Expr) -> Matrix {
        let covered: std::collections::HashSet<i64> = present
            .iter()
            .flat_map(|s| s.samples.iter().map(|p| p.t_ms))
            .collect();
        let samples: Vec<Sample> = self
            .steps
            .times()
            .filter(|ts| !covered.contains(ts))
            .map(|t_ms| Sample { t_ms, v: 1.0 })
            .collect();
        if samples.is_empty() {
            return Vec::new();
        }
        vec![Series {
            labels: absent_labels(arg),
            samples,
        }]
    }

    /// `timestamp(selector)` reports the selected samples' own times, not the step's.
    fn timestamp_of_selector(&self, vs: &VectorSelector) -> Result<Matrix, EngineError> {
        let times: Vec<i64> = self.steps.times().collect();
        let matrix: Matrix = self
            .raw_instant_samples(vs)?
            .into_iter()
            .map(|(labels, per_step)| Series {
                labels,
                samples: per_step
                    .iter()
                    .zip(&times)
                    .filter_map(|(s, &ts)| {
                        s.map(|s| Sample {
                            t_ms: ts,
                            v: s.t_ms as f64 / 1000.0,
                        })
                    })
                    .collect(),
            })
            .collect();
        self.range_eval(&[Some(matrix)], |v, _| {
            Ok(v[0]
                .iter()
                .map(|(l, s)| (l.without_metric_name(), *s))
                .collect())
        })
    }

    /// A function of instant vectors and scalars, evaluated step by step.
    fn call_instant(&self, name: &str, args: &[&Expr]) -> Result<Matrix, EngineError> {
        let prepared = prepare(name, args)?;
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(self.eval_arg(a)?);
        }
        self.range_eval(&values, |v, ts| instant_function(name, &prepared, v, ts))
    }
}

/// The value of a scalar argument at a step (scalars have a point at every step).
fn scalar_at(m: &Matrix, step: usize, ts: i64) -> f64 {
    m.first()
        .and_then(|s| s.samples.get(step))
        .filter(|p| p.t_ms == ts)
        .map_or(f64::NAN, |p| p.v)
}

fn string_arg(args: &[&Expr], i: usize) -> Result<String, EngineError> {
    match args.get(i) {
        Some(Expr::StringLiteral(s)) => Ok(s.val.clone()),
        _ => Err(EngineError::BadData(format!(
            "expected a string literal as argument {}",
            i + 1
        ))),
    }
}

fn prepare(name: &str, args: &[&Expr]) -> Result<Prepared, EngineError> {
    match name {
        "label_replace" => {
            let dst = string_arg(args, 1)?;
            let pattern = string_arg(args, 4)?;
            let regex = crate::matcher::compile_anchored(&pattern).map_err(|_| {
                execution(format!(
                    "invalid regular expression in label_replace(): {pattern}"
                ))
            })?;
            if !is_valid_label_name(&dst) {
                return Err(execution(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            Ok(Prepared::LabelReplace {
                dst,
                replacement: string_arg(args, 2)?,
                src: string_arg(args, 3)?,
                regex,
            })
        }
        "label_join" => {
            let srcs = (3..args.len())
                .map(|i| string_arg(args, i))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(bad) = srcs.iter().find(|s| !is_valid_label_name(s)) {
                return Err(execution(format!(
                    "invalid source label name in label_join(): {bad}"
                )));
            }
            let dst = string_arg(args, 1)?;
            if !is_valid_label_name(&dst) {
                return Err(execution(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            Ok(Prepared::LabelJoin {
                dst,
                separator: string_arg(args, 2)?,
                srcs,
            })
        }
        "absent" => Ok(Prepared::Absent(absent_labels(args[0]))),
        _ => Ok(Prepared::Plain),
    }
}

/// The labels `absent` reports: those of equality matchers in a selector argument (a label
/// matched more than once, or by another operator, is left out), the metric name never.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match unwrap_parens(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut labels = Labels::default();
    let mut seen = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        let equal = matches!(m.op, promql_parser::label::MatchOp::Equal);
        if equal && seen.insert(m.name.clone()) {
            labels.set(&m.name, &m.value);
        } else {
            labels.remove(&m.name);
        }
    }
    labels
}

fn scalar(v: f64) -> Vector {
    vec![(Labels::default(), Sample { t_ms: 0, v })]
}

/// Maps each element's value, dropping the metric name.
fn map_values(input: &Vector, f: impl Fn(f64) -> f64) -> Vector {
    input
        .iter()
        .map(|(l, s)| {
            (
                l.without_metric_name(),
                Sample {
                    t_ms: s.t_ms,
                    v: f(s.v),
                },
            )
        })
        .collect()
}

/// Go's math.Max: NaN wins, and +0 beats -0.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { b } else { a };
    }
    if a > b {
        a
    } else {
        b
    }
}

/// Go's math.Min: NaN wins, and -0 beats +0.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { a } else { b };
    }
    if a < b {
        a
    } else {
        b
    }
}

fn first_scalar(v: &[Vector], i: usize) -> f64 {
    v.get(i)
        .and_then(|x| x.first())
        .map_or(f64::NAN, |(_, s)| s.v)
}

fn instant_function(
    name: &str,
    prepared: &Prepared,
    v: &[Vector],
    ts: i64,
) -> Result<Vector, EngineError> {
    if let Some(f) = math_function(name) {
        return Ok(map_values(&v[0], f));
    }
    if let Some(f) = crate::date::date_function(name) {
        return Ok(match v.first() {
            None => scalar(f(ts.div_euclid(1000))),
            Some(input) => map_values(input, |x| f(x as i64)),
        });
    }
    Ok(match name {
        "time" => scalar(ts as f64 / 1000.0),
        "pi" => scalar(std::f64::consts::PI),
        "vector" => scalar(first_scalar(v, 0)),
        "scalar" => match v[0].as_slice() {
            [(_, s)] => scalar(s.v),
            _ => scalar(f64::NAN),
        },
        "round" => {
            let to_nearest = if v.len() > 1 { first_scalar(v, 1) } else { 1.0 };
            let inverse = 1.0 / to_nearest;
            map_values(&v[0], |x| (x * inverse + 0.5).floor() / inverse)
        }
        "clamp" => {
            let (min, max) = (first_scalar(v, 1), first_scalar(v, 2));
            if max < min {
                return Ok(Vec::new());
            }
            map_values(&v[0], |x| go_max(min, go_min(max, x)))
        }
        "clamp_min" => {
            let min = first_scalar(v, 1);
            map_values(&v[0], |x| go_max(min, x))
        }
        "clamp_max" => {
            let max = first_scalar(v, 1);
            map_values(&v[0], |x| go_min(max, x))
        }
        "timestamp" => v[0]
            .iter()
            .map(|(l, s)| {
                let v = s.t_ms as f64 / 1000.0;
                (l.without_metric_name(), Sample { t_ms: s.t_ms, v })
            })
            .collect(),
        "sort" => sorted(&v[0], |a, b| b.is_nan() || b > a),
        "sort_desc" => sorted(&v[0], |a, b| b.is_nan() || b < a),
        "histogram_quantile" => histogram_quantile(first_scalar(v, 0), &v[1]),
        _ => return prepared_function(name, prepared, v),
    })
}

fn prepared_function(name: &str, prepared: &Prepared, v: &[Vector]) -> Result<Vector, EngineError> {
    match prepared {
        Prepared::Absent(labels) if v[0].is_empty() => {
            Ok(vec![(labels.clone(), Sample { t_ms: 0, v: 1.0 })])
        }
        Prepared::Absent(_) => Ok(Vec::new()),
        Prepared::LabelReplace {
            dst,
            replacement,
            src,
            regex,
        } => Ok(v[0]
            .iter()
            .map(|(l, s)| (label_replace(l, dst, replacement, src, regex), *s))
            .collect()),
        Prepared::LabelJoin {
            dst,
            separator,
            srcs,
        } => Ok(v[0]
            .iter()
            .map(|(l, s)| {
                let joined: Vec<&str> = srcs.iter().map(|n| l.get(n)).collect();
                let mut labels = l.clone();
                labels.set(dst, &joined.join(separator));
                (labels, *s)
            })
            .collect()),
        Prepared::Plain => Err(EngineError::BadData(format!(
            "function {name:?} is not supported"
        ))),
    }
}

/// Sorts as Prometheus's `sort`/`sort_desc` do (a reversed sort of a NaN-first order, so
/// NaN ends last). `less(a, b)`: whether `a` goes before `b`.
fn sorted(input: &Vector, less: impl Fn(f64, f64) -> bool) -> Vector {
    let mut out = input.clone();
    go_sort(&mut out, |a, b| less(a.1.v, b.1.v));
    out
}

fn label_replace(labels: &Labels, dst: &str, replacement: &str, src: &str, re: &Regex) -> Labels {
    let value = labels.get(src);
    let Some(caps) = re.captures(value) else {
        return labels.clone();
    };
    let mut expanded = String::new();
    caps.expand(replacement, &mut expanded);
    let mut out = labels.clone();
    out.set(dst, &expanded);
    out
}

/// `histogram_quantile` over classic buckets: elements grouped by their labels without
/// `le`; the result drops `le` and the metric name. Elements without a parsable `le` are
/// ignored.
fn histogram_quantile(q: f64, input: &Vector) -> Vector {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: std::collections::HashMap<Labels, Vec<Bucket>> = Default::default();
    for (labels, sample) in input {
        let Some(upper_bound) = crate::time::parse_go_float(labels.get(BUCKET_LABEL)) else {
            continue;
        };
        let mut key = labels.clone();
        key.remove(BUCKET_LABEL);
        let buckets = groups.entry(key.clone()).or_default();
        if buckets.is_empty() {
            order.push(key);
        }
        buckets.push(Bucket {
            upper_bound,
            count: sample.v,
        });
    }
    order
        .into_iter()
        .map(|key| {
            let buckets = groups.remove(&key).unwrap_or_default();
            let v = bucket_quantile(q, buckets);
            (key.without_metric_name(), Sample { t_ms: 0, v })
        })
        .collect()
}

/// Element-wise math functions (all drop the metric name).
fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    let f: fn(f64) -> f64 = match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => crate::gomath::ln,
        "log2" => crate::gomath::log2,
        "log10" => crate::gomath::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    };
    Some(f)
}
