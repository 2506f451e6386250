//! Evaluating a parsed query over log records offered one at a time.
//!
//! The caller walks storage and hands every record of the window to a
//! collector ([`StreamsCollector`] for log queries, [`RangeCollector`] for
//! each range aggregation of a metric query, [`StreamSet`] for the label
//! and series endpoints); a collector says when it has seen enough.
//! [`evaluate`] then computes a metric query from its range collectors.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::ControlFlow;

use super::ast::{AggOp, BinOp, Grouping, LogExpr, MetricExpr, RangeFn, Stage};
use super::labels::{metadata, stream_labels, Labels};
use super::pipeline::{line_matches, run, EntryLabels};
use crate::model::LogRecord;

/// Series a metric query may answer with (Loki's default
/// `max_query_series`), and hold at once at any stage of its evaluation.
pub const MAX_SERIES: usize = 500;
/// Series a range aggregation may hold before a vector aggregation
/// narrows them.
pub const MAX_RANGE_SERIES: usize = 20_000;
/// Points a series may have, less one: Loki refuses a range over
/// `MAX_STEPS` steps.
pub const MAX_STEPS: u64 = 11_000;
/// Distinct streams the label and series endpoints gather.
pub const MAX_STREAMS: usize = 10_000;

const NANOS_PER_SEC: f64 = 1e9;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error(
        "maximum number of series ({0}) reached for a single query; consider reducing query \
         cardinality by adding more specific stream selectors or a vector aggregation"
    )]
    TooManySeries(usize),
    #[error(
        "exceeded maximum resolution of 11,000 points per time series. Try increasing the value \
         of the step parameter"
    )]
    TooManySteps,
}

/// Whether a record's stream matches the selector.
fn selected(expr: &LogExpr, stream: &Labels) -> bool {
    expr.selector
        .iter()
        .all(|m| m.matches(stream.get(&m.name).map(String::as_str)))
}

/// The record's labels and line when it passes `expr`.
fn admit<'r>(expr: &LogExpr, rec: &'r LogRecord) -> Option<(EntryLabels, Cow<'r, str>)> {
    let stream = stream_labels(rec);
    if !selected(expr, &stream) {
        return None;
    }
    let line = rec.body_text();
    // Line filters need no labels: the leading ones run before the
    // metadata is built, which most lines of a `|= "x"` query never need.
    let leading = expr
        .stages
        .iter()
        .take_while(|s| matches!(s, Stage::Line(_)))
        .count();
    let (filters, rest) = expr.stages.split_at(leading);
    let passes = filters.iter().all(|s| match s {
        Stage::Line(f) => line_matches(f, &line),
        _ => unreachable!("only line filters lead"),
    });
    if !passes {
        return None;
    }
    let mut labels = EntryLabels {
        stream,
        metadata: metadata(rec),
        parsed: Labels::new(),
    };
    run(rest, &line, &mut labels).then_some((labels, line))
}

/// What a query read, for Loki's `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    pub lines: u64,
    pub bytes: u64,
}

impl Processed {
    fn add(&mut self, rec: &LogRecord) {
        self.lines += 1;
        self.bytes += rec.body_text().len() as u64;
    }
}

/// One entry of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEntry {
    pub ts_unix_nanos: u64,
    pub line: String,
    /// Empty unless labels are categorized (then the stream's labels are
    /// the stream labels only).
    pub metadata: Labels,
    pub parsed: Labels,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    pub labels: Labels,
    pub entries: Vec<StreamEntry>,
}

/// Gathers the entries of a log query, in the order they are offered (the
/// query's direction), up to `limit` entries over all streams.
pub struct StreamsCollector<'a> {
    expr: &'a LogExpr,
    limit: usize,
    categorize: bool,
    streams: BTreeMap<Labels, Vec<StreamEntry>>,
    entries: usize,
    pub processed: Processed,
}

impl<'a> StreamsCollector<'a> {
    /// `categorize`: keep structured metadata and parsed labels with each
    /// entry instead of in the stream's labels (Loki's `categorize-labels`).
    pub fn new(expr: &'a LogExpr, limit: usize, categorize: bool) -> Self {
        assert!(limit > 0, "a log query returns at least one entry");
        StreamsCollector {
            expr,
            limit,
            categorize,
            streams: BTreeMap::new(),
            entries: 0,
            processed: Processed::default(),
        }
    }

    pub fn offer(&mut self, rec: &LogRecord) -> ControlFlow<()> {
        self.processed.add(rec);
        if let Some((labels, line)) = admit(self.expr, rec) {
            let EntryLabels {
                mut stream,
                metadata,
                parsed,
            } = labels;
            let entry = if self.categorize {
                StreamEntry {
                    ts_unix_nanos: rec.timestamp_unix_nanos,
                    line: line.into_owned(),
                    metadata,
                    parsed,
                }
            } else {
                stream.extend(metadata);
                stream.extend(parsed);
                StreamEntry {
                    ts_unix_nanos: rec.timestamp_unix_nanos,
                    line: line.into_owned(),
                    metadata: Labels::new(),
                    parsed: Labels::new(),
                }
            };
            self.streams.entry(stream).or_default().push(entry);
            self.entries += 1;
        }
        if self.entries >= self.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    pub fn finish(self) -> Vec<Stream> {
        self.streams
            .into_iter()
            .map(|(labels, entries)| Stream { labels, entries })
            .collect()
    }
}

/// The entries one range aggregation sees, per series (stream labels and
/// parsed labels; structured metadata stays out so a trace id does not
/// make every trace a series).
pub struct RangeCollector<'a> {
    log: &'a LogExpr,
    /// (time, line bytes) per series.
    series: HashMap<Labels, Vec<(u64, u64)>>,
    pub processed: Processed,
}

impl<'a> RangeCollector<'a> {
    pub fn new(log: &'a LogExpr) -> Self {
        RangeCollector {
            log,
            series: HashMap::new(),
            processed: Processed::default(),
        }
    }

    pub fn offer(&mut self, rec: &LogRecord) -> Result<(), EvalError> {
        self.processed.add(rec);
        let Some((labels, line)) = admit(self.log, rec) else {
            return Ok(());
        };
        let mut key = labels.stream;
        key.extend(labels.parsed);
        if !self.series.contains_key(&key) && self.series.len() >= MAX_RANGE_SERIES {
            return Err(EvalError::TooManySeries(MAX_RANGE_SERIES));
        }
        self.series
            .entry(key)
            .or_default()
            .push((rec.timestamp_unix_nanos, line.len() as u64));
        Ok(())
    }
}

/// The instants a metric query is evaluated at: `start`, `start + step`,
/// ... up to `end` (unix nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steps {
    pub start: u64,
    pub end: u64,
    pub step: u64,
}

impl Steps {
    pub fn new(start: u64, end: u64, step: u64) -> Result<Steps, EvalError> {
        assert!(step > 0 && start <= end, "checked by the caller");
        if (end - start) / step > MAX_STEPS {
            return Err(EvalError::TooManySteps);
        }
        Ok(Steps { start, end, step })
    }

    /// The steps of a range query: `start` and `end` aligned down to a
    /// multiple of `step`, as Loki's query frontend aligns them, so that a
    /// panel refreshed a moment later shows the same instants.
    pub fn aligned(start: u64, end: u64, step: u64) -> Result<Steps, EvalError> {
        assert!(step > 0 && start <= end, "checked by the caller");
        Steps::new(start / step * step, end / step * step, step)
    }

    /// One instant: an instant query.
    pub fn instant(at: u64) -> Steps {
        Steps {
            start: at,
            end: at,
            step: 1,
        }
    }

    pub fn iter(self) -> impl Iterator<Item = u64> {
        (self.start..=self.end).step_by(self.step as usize)
    }
}

/// A series of a metric result: points (unix nanoseconds, value) by time.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(u64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Series>),
}

/// Computes `expr` at `steps` from its range collectors, given in the
/// order of [`MetricExpr::ranges`].
pub fn evaluate(
    expr: &MetricExpr,
    steps: Steps,
    collectors: Vec<RangeCollector<'_>>,
) -> Result<Value, EvalError> {
    let mut queue: VecDeque<_> = collectors.into_iter().collect();
    let value = eval_node(expr, steps, &mut queue)?;
    assert!(queue.is_empty(), "one collector per range aggregation");
    if let Value::Vector(v) = &value {
        if v.len() > MAX_SERIES {
            return Err(EvalError::TooManySeries(MAX_SERIES));
        }
    }
    Ok(value)
}

fn eval_node(
    expr: &MetricExpr,
    steps: Steps,
    queue: &mut VecDeque<RangeCollector<'_>>,
) -> Result<Value, EvalError> {
    Ok(match expr {
        MetricExpr::Scalar(v) => Value::Scalar(*v),
        MetricExpr::Vector(v) => Value::Vector(vec![Series {
            labels: Labels::new(),
            points: steps.iter().map(|t| (t, *v)).collect(),
        }]),
        MetricExpr::Range {
            func, range_nanos, ..
        } => {
            let c = queue
                .pop_front()
                .expect("one collector per range aggregation");
            let mut v = bounded(range_series(c, *func, *range_nanos, steps))?;
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Vector(v)
        }
        MetricExpr::Agg {
            op,
            grouping,
            inner,
        } => {
            let grouping = grouping.as_ref();
            // Over a range aggregation, its series are folded into the
            // groups one by one: never all held at once.
            if let MetricExpr::Range {
                func, range_nanos, ..
            } = inner.as_ref()
            {
                let c = queue
                    .pop_front()
                    .expect("one collector per range aggregation");
                let series = range_series(c, *func, *range_nanos, steps);
                return aggregate(*op, grouping, series).map(Value::Vector);
            }
            match eval_node(inner, steps, queue)? {
                Value::Vector(v) => Value::Vector(aggregate(*op, grouping, v)?),
                // Aggregating a scalar: Prometheus refuses; treat it as one series.
                Value::Scalar(s) => Value::Vector(aggregate(
                    *op,
                    grouping,
                    [Series {
                        labels: Labels::new(),
                        points: steps.iter().map(|t| (t, s)).collect(),
                    }],
                )?),
            }
        }
        MetricExpr::Binary { op, lhs, rhs } => {
            let l = eval_node(lhs, steps, queue)?;
            let r = eval_node(rhs, steps, queue)?;
            binary(*op, l, r)
        }
    })
}

/// Series held at once: at most [`MAX_SERIES`], or the query fails.
fn bounded(series: impl Iterator<Item = Series>) -> Result<Vec<Series>, EvalError> {
    let mut out = Vec::new();
    for s in series {
        if out.len() == MAX_SERIES {
            return Err(EvalError::TooManySeries(MAX_SERIES));
        }
        out.push(s);
    }
    Ok(out)
}

/// One range aggregation over its series at every step, computed as the
/// series are taken: the entries in `(t - range, t]`; no point where there
/// are none, no series without points.
fn range_series(
    c: RangeCollector<'_>,
    func: RangeFn,
    range_nanos: u64,
    steps: Steps,
) -> impl Iterator<Item = Series> {
    let range_secs = range_nanos as f64 / NANOS_PER_SEC;
    c.series
        .into_iter()
        .map(move |(labels, mut entries)| {
            entries.sort_unstable();
            // bytes_before[i]: the bytes of entries[..i].
            let mut bytes_before = Vec::with_capacity(entries.len() + 1);
            bytes_before.push(0u64);
            for (_, b) in &entries {
                bytes_before.push(bytes_before.last().unwrap() + b);
            }
            let (mut lo, mut hi) = (0, 0);
            let mut points = Vec::new();
            for t in steps.iter() {
                let from = t.saturating_sub(range_nanos);
                while hi < entries.len() && entries[hi].0 <= t {
                    hi += 1;
                }
                while lo < hi && entries[lo].0 <= from {
                    lo += 1;
                }
                if hi == lo {
                    continue;
                }
                let count = (hi - lo) as f64;
                let bytes = (bytes_before[hi] - bytes_before[lo]) as f64;
                let v = match func {
                    RangeFn::CountOverTime => count,
                    RangeFn::Rate => count / range_secs,
                    RangeFn::BytesOverTime => bytes,
                    RangeFn::BytesRate => bytes / range_secs,
                };
                points.push((t, v));
            }
            Series { labels, points }
        })
        .filter(|s| !s.points.is_empty())
}

#[derive(Clone, Copy)]
struct Acc {
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
}

fn group_labels(grouping: Option<&Grouping>, labels: &Labels) -> Labels {
    match grouping {
        None => Labels::new(),
        Some(Grouping::By(names)) => names
            .iter()
            .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
            .collect(),
        Some(Grouping::Without(names)) => labels
            .iter()
            .filter(|(k, _)| !names.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The groups of `input`; more than [`MAX_SERIES`] fail the query.
fn aggregate(
    op: AggOp,
    grouping: Option<&Grouping>,
    input: impl IntoIterator<Item = Series>,
) -> Result<Vec<Series>, EvalError> {
    let mut groups: BTreeMap<Labels, BTreeMap<u64, Acc>> = BTreeMap::new();
    for s in input {
        let key = group_labels(grouping, &s.labels);
        if !groups.contains_key(&key) && groups.len() == MAX_SERIES {
            return Err(EvalError::TooManySeries(MAX_SERIES));
        }
        let group = groups.entry(key).or_default();
        for (t, v) in s.points {
            let acc = group.entry(t).or_insert(Acc {
                sum: 0.0,
                count: 0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            });
            acc.sum += v;
            acc.count += 1;
            acc.min = acc.min.min(v);
            acc.max = acc.max.max(v);
        }
    }
    Ok(groups
        .into_iter()
        .map(|(labels, points)| Series {
            labels,
            points: points
                .into_iter()
                .map(|(t, a)| {
                    let v = match op {
                        AggOp::Sum => a.sum,
                        AggOp::Count => a.count as f64,
                        AggOp::Min => a.min,
                        AggOp::Max => a.max,
                        AggOp::Avg => a.sum / a.count as f64,
                    };
                    (t, v)
                })
                .collect(),
        })
        .collect())
}

fn apply(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Mod => a % b,
        BinOp::Pow => a.powf(b),
    }
}

/// Arithmetic: scalars with anything; two vectors match series with the
/// same labels, and points at the same instant (one-to-one matching).
fn binary(op: BinOp, l: Value, r: Value) -> Value {
    match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(apply(op, a, b)),
        (Value::Vector(v), Value::Scalar(b)) => Value::Vector(map_points(v, |a| apply(op, a, b))),
        (Value::Scalar(a), Value::Vector(v)) => Value::Vector(map_points(v, |b| apply(op, a, b))),
        (Value::Vector(lv), Value::Vector(rv)) => {
            let right: HashMap<Labels, BTreeMap<u64, f64>> = rv
                .into_iter()
                .map(|s| (s.labels, s.points.into_iter().collect()))
                .collect();
            Value::Vector(
                lv.into_iter()
                    .filter_map(|s| {
                        let other = right.get(&s.labels)?;
                        let points: Vec<(u64, f64)> = s
                            .points
                            .into_iter()
                            .filter_map(|(t, a)| other.get(&t).map(|b| (t, apply(op, a, *b))))
                            .collect();
                        (!points.is_empty()).then_some(Series {
                            labels: s.labels,
                            points,
                        })
                    })
                    .collect(),
            )
        }
    }
}

fn map_points(v: Vec<Series>, f: impl Fn(f64) -> f64) -> Vec<Series> {
    v.into_iter()
        .map(|s| Series {
            labels: s.labels,
            points: s.points.into_iter().map(|(t, x)| (t, f(x))).collect(),
        })
        .collect()
}

/// Entries and bytes of one stream, for `index/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub entries: u64,
    pub bytes: u64,
}

/// The distinct streams among the records offered, optionally only those
/// some selector matches; at most [`MAX_STREAMS`].
pub struct StreamSet {
    selectors: Vec<LogExpr>,
    pub streams: BTreeMap<Labels, StreamStats>,
    /// More streams existed than [`MAX_STREAMS`].
    pub truncated: bool,
}

impl StreamSet {
    /// `selectors` empty: every stream.
    pub fn new(selectors: Vec<LogExpr>) -> Self {
        StreamSet {
            selectors,
            streams: BTreeMap::new(),
            truncated: false,
        }
    }

    pub fn offer(&mut self, rec: &LogRecord) -> ControlFlow<()> {
        let stream = stream_labels(rec);
        if !self.selectors.is_empty() && !self.selectors.iter().any(|s| selected(s, &stream)) {
            return ControlFlow::Continue(());
        }
        if !self.streams.contains_key(&stream) && self.streams.len() >= MAX_STREAMS {
            self.truncated = true;
            return ControlFlow::Break(());
        }
        let stats = self.streams.entry(stream).or_default();
        stats.entries += 1;
        stats.bytes += rec.body_text().len() as u64;
        ControlFlow::Continue(())
    }
}

/// How `index/volume` groups streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeBy {
    /// By the values of the named labels: one entry per distinct set.
    Series,
    /// By label name: one entry per name, the volume of the streams with it.
    Labels,
}

/// The bytes of `streams` grouped as `by` says over `names`, largest
/// first (ties by labels), at most `limit`. `names` empty: every label.
pub fn volumes(
    streams: &BTreeMap<Labels, StreamStats>,
    by: VolumeBy,
    names: &[String],
    limit: usize,
) -> Vec<(Labels, u64)> {
    let wanted = |name: &str| names.is_empty() || names.iter().any(|n| n == name);
    let mut groups: BTreeMap<Labels, u64> = BTreeMap::new();
    for (labels, stats) in streams {
        match by {
            VolumeBy::Series => {
                let key: Labels = labels
                    .iter()
                    .filter(|(k, _)| wanted(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                *groups.entry(key).or_default() += stats.bytes;
            }
            VolumeBy::Labels => {
                for name in labels.keys().filter(|k| wanted(k)) {
                    let key = Labels::from([(name.clone(), String::new())]);
                    *groups.entry(key).or_default() += stats.bytes;
                }
            }
        }
    }
    let mut out: Vec<(Labels, u64)> = groups.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::ast::Expr;
    use super::super::parse;
    use super::*;
    use crate::model::{AnyValue, KeyValue, Resource, Severity};

    const SEC: u64 = 1_000_000_000;

    fn rec(service: &str, severity: Severity, ts_secs: u64, body: &str) -> LogRecord {
        LogRecord {
            timestamp_unix_nanos: ts_secs * SEC,
            service: service.into(),
            severity,
            body: Some(AnyValue::String(body.into())),
            trace_id: Some([7; 16]),
            resource: Arc::new(Resource {
                attributes: vec![
                    KeyValue::string("service.name", service),
                    KeyValue::string("host.name", "h1"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn log_expr(q: &str) -> LogExpr {
        match parse(q).unwrap() {
            Expr::Log(l) => l,
            Expr::Metric(_) => panic!(),
        }
    }

    fn metric(q: &str, recs: &[LogRecord], steps: Steps) -> Value {
        let Expr::Metric(m) = parse(q).unwrap() else {
            panic!()
        };
        let mut collectors: Vec<RangeCollector> = m
            .ranges()
            .into_iter()
            .map(|(log, _, _)| RangeCollector::new(log))
            .collect();
        for r in recs {
            for c in &mut collectors {
                c.offer(r).unwrap();
            }
        }
        evaluate(&m, steps, collectors).unwrap()
    }

    fn points(v: &Value) -> Vec<(Labels, Vec<(u64, f64)>)> {
        let Value::Vector(v) = v else { panic!("{v:?}") };
        v.iter()
            .map(|s| {
                (
                    s.labels.clone(),
                    s.points.iter().map(|(t, x)| (t / SEC, *x)).collect(),
                )
            })
            .collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn streams_keep_the_offered_order_and_stop_at_the_limit() {
        let e = log_expr(r#"{service_name="api"} |= "x""#);
        let recs = [
            rec("api", Severity::Info, 30, "x3"),
            rec("api", Severity::Error, 20, "x2"),
            rec("web", Severity::Info, 15, "x-web"),
            rec("api", Severity::Info, 10, "no"),
            rec("api", Severity::Info, 5, "x1"),
        ];
        let mut c = StreamsCollector::new(&e, 2, false);
        let mut offered = 0;
        for r in &recs {
            offered += 1;
            if c.offer(r).is_break() {
                break;
            }
        }
        assert_eq!(offered, 2, "stops once the limit is reached");
        let streams = c.finish();
        assert_eq!(streams.len(), 2, "one stream per level");
        let info = streams
            .iter()
            .find(|s| s.labels["level"] == "info")
            .unwrap();
        assert_eq!(info.labels["trace_id"], "07".repeat(16));
        assert_eq!(info.labels["host_name"], "h1");
        assert_eq!(info.entries[0].line, "x3");

        let mut c = StreamsCollector::new(&e, 10, true);
        for r in recs.iter().rev() {
            let _ = c.offer(r);
        }
        let streams = c.finish();
        let info = streams
            .iter()
            .find(|s| s.labels["level"] == "info")
            .unwrap();
        assert!(!info.labels.contains_key("trace_id"), "categorized");
        assert_eq!(info.entries[0].metadata["trace_id"], "07".repeat(16));
        let lines: Vec<&str> = info.entries.iter().map(|e| e.line.as_str()).collect();
        assert_eq!(lines, ["x1", "x3"], "forward: oldest first");
    }

    #[test]
    fn count_and_rate_over_steps() {
        let recs: Vec<LogRecord> = [1, 2, 3, 61, 62, 130]
            .into_iter()
            .map(|t| rec("api", Severity::Info, t, "line"))
            .collect();
        let steps = Steps::new(60 * SEC, 180 * SEC, 60 * SEC).unwrap();
        let q = r#"count_over_time({service_name="api"}[1m])"#;
        let got = points(&metric(q, &recs, steps));
        assert_eq!(got.len(), 1);
        // (0,60]: 3; (60,120]: 2; (120,180]: 1.
        assert_eq!(got[0].1, vec![(60, 3.0), (120, 2.0), (180, 1.0)]);
        let rate = points(&metric(r#"rate({service_name="api"}[1m])"#, &recs, steps));
        assert_eq!(
            rate[0].1,
            vec![(60, 3.0 / 60.0), (120, 2.0 / 60.0), (180, 1.0 / 60.0)]
        );
        let bytes = points(&metric(
            r#"bytes_rate({service_name="api"}[2m])"#,
            &recs,
            steps,
        ));
        assert_eq!(bytes[0].1[1], (120, 5.0 * 4.0 / 120.0));
        // A window is open on the left: an entry at exactly t - range is out.
        let edge = points(&metric(q, &recs, Steps::instant(121 * SEC)));
        assert_eq!(edge[0].1, vec![(121, 1.0)], "61 is out of (61, 121]");
        let edge = points(&metric(q, &recs, Steps::instant(122 * SEC)));
        assert!(edge.is_empty(), "62 is out of (62, 122]: {edge:?}");
        // No entries in the window: no point.
        let none = points(&metric(q, &recs, Steps::instant(500 * SEC)));
        assert!(none.is_empty());
    }

    #[test]
    fn vector_aggregations_group_by_and_without() {
        let recs = vec![
            rec("api", Severity::Info, 1, "a"),
            rec("api", Severity::Error, 2, "bb"),
            rec("web", Severity::Error, 3, "c"),
            rec("web", Severity::Error, 4, "d"),
        ];
        let at = Steps::instant(10 * SEC);
        let q = r#"sum by (level) (count_over_time({host_name="h1"}[1m]))"#;
        assert_eq!(
            points(&metric(q, &recs, at)),
            vec![
                (labels(&[("level", "error")]), vec![(10, 3.0)]),
                (labels(&[("level", "info")]), vec![(10, 1.0)]),
            ]
        );
        let q = r#"max without (host_name, level) (count_over_time({host_name="h1"}[1m]))"#;
        assert_eq!(
            points(&metric(q, &recs, at)),
            vec![
                (labels(&[("service_name", "api")]), vec![(10, 1.0)]),
                (labels(&[("service_name", "web")]), vec![(10, 2.0)]),
            ]
        );
        for (q, want) in [
            ("count", 3.0),
            ("min", 1.0),
            ("avg", 4.0 / 3.0),
            ("sum", 4.0),
        ] {
            let q = format!(r#"{q}(count_over_time({{host_name="h1"}}[1m]))"#);
            assert_eq!(points(&metric(&q, &recs, at))[0].1, vec![(10, want)], "{q}");
        }
        // Parsed labels take part in the series; structured metadata does not.
        let q = r#"sum by (trace_id) (count_over_time({host_name="h1"}[1m]))"#;
        assert_eq!(points(&metric(q, &recs, at))[0].0, Labels::new());
    }

    #[test]
    fn arithmetic_and_the_health_check() {
        let v = metric("vector(1)+vector(1)", &[], Steps::instant(5 * SEC));
        assert_eq!(points(&v), vec![(Labels::new(), vec![(5, 2.0)])]);
        assert_eq!(
            metric("2 * 3 - 1", &[], Steps::instant(5)),
            Value::Scalar(5.0)
        );
        let recs = vec![
            rec("api", Severity::Info, 1, "a"),
            rec("api", Severity::Info, 2, "a"),
        ];
        let q = r#"sum(count_over_time({service_name="api"}[1m])) * 10 / sum(count_over_time({service_name="api"} |= "a" [1m]))"#;
        assert_eq!(
            points(&metric(q, &recs, Steps::instant(30 * SEC)))[0].1,
            vec![(30, 10.0)]
        );
    }

    #[test]
    fn step_and_series_limits() {
        assert_eq!(Steps::new(0, 11_001, 1), Err(EvalError::TooManySteps));
        assert_eq!(Steps::new(0, 11_000, 1).unwrap().iter().count(), 11_001);
        let steps = Steps::new(10, 35, 10).unwrap();
        assert_eq!(steps.iter().collect::<Vec<_>>(), [10, 20, 30]);
        let aligned = Steps::aligned(17, 59, 10).unwrap();
        assert_eq!(aligned.iter().collect::<Vec<_>>(), [10, 20, 30, 40, 50]);
        assert_eq!(Steps::aligned(17, 19, 10).unwrap().iter().count(), 1);
        assert_eq!(
            Steps::aligned(7, 7, 60).unwrap().iter().collect::<Vec<_>>(),
            [0]
        );
        let e = log_expr(r#"{service_name="api"} | logfmt"#);
        let mut c = RangeCollector::new(&e);
        let mut err = None;
        for i in 0..=MAX_RANGE_SERIES {
            if let Err(e) = c.offer(&rec("api", Severity::Info, 1, &format!("n={i}"))) {
                err = Some(e);
            }
        }
        assert_eq!(err, Some(EvalError::TooManySeries(MAX_RANGE_SERIES)));

        // More series than an answer may hold: refused unless aggregated.
        let recs: Vec<LogRecord> = (0..=MAX_SERIES)
            .map(|i| rec("api", Severity::Info, 1, &format!("n={i}")))
            .collect();
        let Expr::Metric(m) =
            parse(r#"count_over_time({service_name="api"} | logfmt [1m])"#).unwrap()
        else {
            panic!()
        };
        fn collect<'a>(m: &'a MetricExpr, recs: &[LogRecord]) -> Vec<RangeCollector<'a>> {
            let (log, _, _) = m.ranges()[0];
            let mut c = RangeCollector::new(log);
            recs.iter().for_each(|r| c.offer(r).unwrap());
            vec![c]
        }
        let at = Steps::instant(10 * SEC);
        assert_eq!(
            evaluate(&m, at, collect(&m, &recs)),
            Err(EvalError::TooManySeries(MAX_SERIES))
        );
        let Expr::Metric(summed) =
            parse(r#"sum(count_over_time({service_name="api"} | logfmt [1m]))"#).unwrap()
        else {
            panic!()
        };
        let total = evaluate(&summed, at, collect(&summed, &recs)).unwrap();
        assert_eq!(points(&total)[0].1, vec![(10, (MAX_SERIES + 1) as f64)]);
        let Expr::Metric(by_n) =
            parse(r#"sum by (n) (count_over_time({service_name="api"} | logfmt [1m]))"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            evaluate(&by_n, at, collect(&by_n, &recs)),
            Err(EvalError::TooManySeries(MAX_SERIES))
        );
    }

    #[test]
    fn stream_sets_count_entries_and_bytes() {
        let sel = vec![log_expr(r#"{service_name=~"a.*"}"#)];
        let mut s = StreamSet::new(sel);
        for r in [
            rec("api", Severity::Info, 1, "abc"),
            rec("api", Severity::Info, 2, "de"),
            rec("web", Severity::Info, 3, "x"),
            rec("auth", Severity::Warn, 4, "y"),
        ] {
            let _ = s.offer(&r);
        }
        assert_eq!(s.streams.len(), 2);
        let api = &s.streams[&labels(&[
            ("host_name", "h1"),
            ("level", "info"),
            ("service_name", "api"),
        ])];
        assert_eq!(
            *api,
            StreamStats {
                entries: 2,
                bytes: 5
            }
        );
        assert!(!s.truncated);
    }
}
