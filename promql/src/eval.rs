//! The evaluator: every expression node is evaluated once over all steps of the query and
//! yields a matrix whose points sit at the step times (as Prometheus's engine does). Scalars
//! are a one-series matrix with a point at every step.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use crate::labels::has_duplicates;
use crate::select::{instant_sample, load, range_window, storage_matchers, Budget};
use crate::{EngineError, Labels, Sample, Series, Storage};

/// One step's input or output: labelled samples.
pub(crate) type Vector = Vec<(Labels, Sample)>;
/// Series with points at step times (or raw sample times for range selectors).
pub(crate) type Matrix = Vec<Series>;

/// A series' labels and the sample its selector sees at each step, if any.
pub(crate) type PerStepSamples = (Labels, Vec<Option<Sample>>);

/// What a node evaluates to.
pub(crate) enum Val {
    Matrix(Matrix),
    String(String),
}

/// Prometheus's message when one step of an expression yields two equal label sets.
pub(crate) const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";

/// The interval of subqueries written without a step (`x[1h:]`): Prometheus uses its global
/// rule evaluation interval, one minute by default.
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// State shared by every evaluator of one query (subqueries get evaluators of their own).
pub(crate) struct Context<'a> {
    pub(crate) storage: &'a dyn Storage,
    pub(crate) budget: Budget,
    pub(crate) lookback_ms: i64,
    /// What `@ start()` and `@ end()` mean.
    pub(crate) query_start_ms: i64,
    pub(crate) query_end_ms: i64,
}

/// The evaluation times `start_ms + k * interval_ms <= end_ms`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Steps {
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) interval_ms: i64,
}

impl Steps {
    pub(crate) fn times(self) -> impl Iterator<Item = i64> {
        assert!(self.interval_ms > 0, "step interval must be positive");
        let count = self.count();
        (0..count as i64).map(move |k| self.start_ms + k * self.interval_ms)
    }

    pub(crate) fn count(self) -> usize {
        if self.end_ms < self.start_ms {
            return 0;
        }
        ((self.end_ms - self.start_ms) / self.interval_ms) as usize + 1
    }
}

pub(crate) struct Evaluator<'a> {
    pub(crate) ctx: &'a Context<'a>,
    pub(crate) steps: Steps,
}

/// A range-vector argument ready for windowing: raw series (or a subquery's points) and
/// where each step's window lies relative to the step time.
pub(crate) struct RangeArg {
    pub(crate) series: Matrix,
    pub(crate) range_ms: i64,
    pub(crate) offset_ms: i64,
    pub(crate) at_ms: Option<i64>,
}

impl RangeArg {
    /// The closed window `[end - range, end]` the argument covers at step `ts`.
    pub(crate) fn window_at(&self, ts: i64) -> (i64, i64) {
        let end = self.at_ms.unwrap_or(ts) - self.offset_ms;
        (end - self.range_ms, end)
    }
}

pub(crate) fn duration_ms(d: &std::time::Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}

/// Strips any parentheses around an expression.
pub(crate) fn unwrap_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

impl<'a> Evaluator<'a> {
    pub(crate) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.ctx.query_start_ms),
            Some(AtModifier::End) => Some(self.ctx.query_end_ms),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// Evaluates `expr` over all steps.
    pub(crate) fn eval(&self, expr: &Expr) -> Result<Val, EngineError> {
        let matrix = match expr {
            Expr::StringLiteral(s) => return Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => return self.eval(&p.expr),
            Expr::NumberLiteral(n) => self.constant(n.val)?,
            Expr::VectorSelector(vs) => self.vector_selector(vs)?,
            Expr::MatrixSelector(ms) => self.matrix_selector(ms)?,
            Expr::Subquery(sq) => self.subquery(sq)?,
            Expr::Unary(u) => self.negate(&u.expr)?,
            Expr::Binary(b) => self.binary(b)?,
            Expr::Aggregate(a) => self.aggregate(a)?,
            Expr::Call(c) => self.call(c)?,
            Expr::Extension(_) => {
                return Err(EngineError::BadData(
                    "extension expressions are not supported".into(),
                ))
            }
        };
        Ok(Val::Matrix(matrix))
    }

    /// Evaluates an expression that must not be a string.
    pub(crate) fn eval_matrix(&self, expr: &Expr) -> Result<Matrix, EngineError> {
        match self.eval(expr)? {
            Val::Matrix(m) => Ok(m),
            Val::String(_) => Err(EngineError::Execution(
                "a string was given where a vector or scalar was expected".into(),
            )),
        }
    }

    /// The evaluation loop shared by every node built from instant inputs: at each step,
    /// gather each argument's samples at that step, call `step_fn`, and collect its output
    /// into series. Arguments that are `None` (strings) get an empty vector.
    pub(crate) fn range_eval(
        &self,
        args: &[Option<Matrix>],
        mut step_fn: impl FnMut(&[Vector], i64) -> Result<Vector, EngineError>,
    ) -> Result<Matrix, EngineError> {
        let mut cursors: Vec<Vec<usize>> = args
            .iter()
            .map(|a| vec![0; a.as_ref().map_or(0, Vec::len)])
            .collect();
        let mut out = SeriesCollector::default();
        for ts in self.steps.times() {
            let inputs: Vec<Vector> = args
                .iter()
                .zip(cursors.iter_mut())
                .map(|(arg, cur)| samples_at(arg.as_deref().unwrap_or(&[]), cur, ts))
                .collect();
            let result = step_fn(&inputs, ts)?;
            self.ctx.budget.charge_samples(result.len())?;
            for (labels, sample) in result {
                let point = Sample {
                    t_ms: ts,
                    v: sample.v,
                };
                if !out.push(labels, point) {
                    return Err(EngineError::Execution(DUPLICATE_LABELSET.into()));
                }
            }
        }
        Ok(out.finish())
    }

    /// A number literal: one series without labels, the value at every step.
    fn constant(&self, v: f64) -> Result<Matrix, EngineError> {
        self.range_eval(&[], |_, _| {
            Ok(vec![(Labels::default(), Sample { t_ms: 0, v })])
        })
    }

    /// An instant selector: per series and step, the value of the sample the selector sees
    /// (stamped with the step's time); series that see none at any step are left out.
    fn vector_selector(&self, vs: &VectorSelector) -> Result<Matrix, EngineError> {
        let times: Vec<i64> = self.steps.times().collect();
        let mut out = Vec::new();
        for (labels, per_step) in self.raw_instant_samples(vs)? {
            let points: Vec<Sample> = per_step
                .iter()
                .zip(&times)
                .filter_map(|(s, &t_ms)| s.map(|s| Sample { t_ms, v: s.v }))
                .collect();
            if !points.is_empty() {
                self.ctx.budget.charge_samples(points.len())?;
                out.push(Series {
                    labels,
                    samples: points,
                });
            }
        }
        Ok(out)
    }

    /// The samples each series of an instant selector has at each step, with the samples'
    /// own timestamps (what `timestamp(selector)` reports).
    pub(crate) fn raw_instant_samples(
        &self,
        vs: &VectorSelector,
    ) -> Result<Vec<PerStepSamples>, EngineError> {
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let lookback = self.ctx.lookback_ms;
        let first_ref = at.unwrap_or(self.steps.start_ms) - offset;
        let last_ref = at.unwrap_or(self.steps.end_ms) - offset;
        let matchers = storage_matchers(vs);
        let loaded = load(
            self.ctx.storage,
            &self.ctx.budget,
            &matchers,
            first_ref - lookback,
            last_ref,
        )?;
        Ok(loaded
            .into_iter()
            .map(|s| {
                let per_step = self
                    .steps
                    .times()
                    .map(|ts| instant_sample(&s.samples, at.unwrap_or(ts) - offset, lookback))
                    .collect();
                (s.labels, per_step)
            })
            .collect())
    }

    /// A range selector as a query's result (only instant queries can return one): the raw
    /// samples in the window at the evaluation time.
    fn matrix_selector(
        &self,
        ms: &promql_parser::parser::MatrixSelector,
    ) -> Result<Matrix, EngineError> {
        if self.steps.count() != 1 {
            return Err(EngineError::BadData(
                "a range vector cannot be evaluated over a range of steps".into(),
            ));
        }
        let arg = self.range_arg(&Expr::MatrixSelector(ms.clone()))?;
        let (min, max) = arg.window_at(self.steps.start_ms);
        let out: Matrix = arg
            .series
            .into_iter()
            .filter_map(|s| {
                let samples = range_window(&s.samples, min, max).into_owned();
                (!samples.is_empty()).then_some(Series {
                    labels: s.labels,
                    samples,
                })
            })
            .collect();
        Ok(out)
    }

    /// Loads a range-vector argument: a range selector's raw series, or a subquery's points.
    pub(crate) fn range_arg(&self, expr: &Expr) -> Result<RangeArg, EngineError> {
        match unwrap_parens(expr) {
            Expr::MatrixSelector(ms) => {
                let offset = offset_ms(&ms.vs.offset);
                let at = self.at_ms(&ms.vs.at);
                let range = duration_ms(&ms.range);
                let first = at.unwrap_or(self.steps.start_ms) - offset - range;
                let last = at.unwrap_or(self.steps.end_ms) - offset;
                let matchers = storage_matchers(&ms.vs);
                let series = load(self.ctx.storage, &self.ctx.budget, &matchers, first, last)?;
                Ok(RangeArg {
                    series,
                    range_ms: range,
                    offset_ms: offset,
                    at_ms: at,
                })
            }
            Expr::Subquery(sq) => Ok(RangeArg {
                series: self.subquery(sq)?,
                range_ms: duration_ms(&sq.range),
                offset_ms: offset_ms(&sq.offset),
                at_ms: self.at_ms(&sq.at),
            }),
            other => Err(EngineError::BadData(format!(
                "expected a range vector, got {other}"
            ))),
        }
    }

    /// A subquery: its expression evaluated at every multiple of its step within
    /// `[first step - offset - range, last step - offset]`.
    fn subquery(&self, sq: &promql_parser::parser::SubqueryExpr) -> Result<Matrix, EngineError> {
        let offset = offset_ms(&sq.offset);
        let range = duration_ms(&sq.range);
        let step = match sq.step.as_ref().map(duration_ms) {
            Some(s) if s > 0 => s,
            _ => DEFAULT_SUBQUERY_STEP_MS,
        };
        let at = self.at_ms(&sq.at);
        let lowest = at.unwrap_or(self.steps.start_ms) - offset - range;
        let mut start = lowest.div_euclid(step) * step;
        if start < lowest {
            start += step;
        }
        let steps = Steps {
            start_ms: start,
            end_ms: at.unwrap_or(self.steps.end_ms) - offset,
            interval_ms: step,
        };
        // Each step costs work even when it yields nothing: charge it so that a tiny
        // subquery step over a long range is refused rather than run for hours.
        self.ctx.budget.charge_samples(steps.count())?;
        let inner = Evaluator {
            ctx: self.ctx,
            steps,
        };
        inner.eval_matrix(&sq.expr)
    }

    /// Unary minus: negates values and drops the metric name.
    fn negate(&self, expr: &Expr) -> Result<Matrix, EngineError> {
        let mut m = self.eval_matrix(expr)?;
        for s in &mut m {
            s.labels = s.labels.without_metric_name();
            for p in &mut s.samples {
                p.v = -p.v;
            }
        }
        if has_duplicates(m.iter().map(|s| &s.labels)) {
            return Err(EngineError::Execution(DUPLICATE_LABELSET.into()));
        }
        Ok(m)
    }

    /// Evaluates an argument unless it is a string (functions read strings from the tree).
    pub(crate) fn eval_arg(&self, expr: &Expr) -> Result<Option<Matrix>, EngineError> {
        if expr.value_type() == ValueType::String {
            return Ok(None);
        }
        self.eval_matrix(expr).map(Some)
    }
}

/// The samples of `matrix` at step `ts`, advancing each series' cursor past it.
fn samples_at(matrix: &[Series], cursors: &mut [usize], ts: i64) -> Vector {
    let mut out = Vec::new();
    for (series, cur) in matrix.iter().zip(cursors.iter_mut()) {
        while let Some(p) = series.samples.get(*cur) {
            if p.t_ms > ts {
                break;
            }
            *cur += 1;
            if p.t_ms == ts {
                out.push((series.labels.clone(), *p));
                break;
            }
        }
    }
    out
}

/// Output series in order of first appearance, points appended per step.
#[derive(Default)]
pub(crate) struct SeriesCollector {
    index: HashMap<Labels, usize>,
    series: Matrix,
}

impl SeriesCollector {
    /// Appends a point; false (and nothing appended) if the series already has a point at
    /// that time, i.e. one step yielded the label set twice.
    pub(crate) fn push(&mut self, labels: Labels, sample: Sample) -> bool {
        match self.index.get(&labels) {
            Some(&i) => {
                let samples = &mut self.series[i].samples;
                if samples.last().is_some_and(|p| p.t_ms == sample.t_ms) {
                    return false;
                }
                samples.push(sample);
            }
            None => {
                self.index.insert(labels.clone(), self.series.len());
                self.series.push(Series {
                    labels,
                    samples: vec![sample],
                });
            }
        }
        true
    }

    pub(crate) fn finish(self) -> Matrix {
        self.series
    }
}
