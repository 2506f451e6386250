//! Aggregation operators (`sum`, `avg`, ..., `topk`, `quantile`, `count_values`) with
//! `by`/`without` grouping, computed per step as Prometheus 2.42 computes them (including its
//! incremental mean and variance, and its heap order for `topk`/`bottomk`).

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use crate::eval::{unwrap_parens, Evaluator, Matrix, Vector};
use crate::labels::is_valid_label_name;
use crate::quantile::{go_sort, quantile};
use crate::{EngineError, Labels, Sample};

/// The parameter of `topk`, `bottomk`, `quantile` (a number per step) or `count_values`
/// (a label name).
enum Param<'a> {
    None,
    Number,
    Label(&'a str),
}

impl Evaluator<'_> {
    pub(crate) fn aggregate(&self, a: &AggregateExpr) -> Result<Matrix, EngineError> {
        let op = a.op.to_string();
        let (without, mut grouping) = match &a.modifier {
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
            None => (false, Vec::new()),
        };
        grouping.sort();
        let param = match a.param.as_deref().map(unwrap_parens) {
            None => Param::None,
            Some(Expr::StringLiteral(s)) => Param::Label(&s.val),
            Some(_) => Param::Number,
        };
        let param_matrix = match (&param, &a.param) {
            (Param::Number, Some(p)) => Some(self.eval_matrix(p)?),
            _ => None,
        };
        let input = self.eval_matrix(&a.expr)?;
        let spec = Grouping { without, grouping };
        self.range_eval(&[param_matrix, Some(input)], |v, _| {
            let number = v[0].first().map(|(_, s)| s.v);
            match &param {
                Param::Label(label) => count_values(&spec, label, &v[1]),
                _ => aggregate_step(&op, &spec, number, &v[1]),
            }
        })
    }
}

/// `by (...)` or `without (...)`, names sorted.
struct Grouping {
    without: bool,
    grouping: Vec<String>,
}

impl Grouping {
    /// The group's labels, which are also its identity.
    fn key(&self, labels: &Labels) -> Labels {
        labels.grouping(self.without, &self.grouping)
    }
}

/// Running state of one group.
struct Group {
    labels: Labels,
    value: f64,
    mean: f64,
    count: usize,
    /// topk/bottomk heap or quantile's values, with the input labels.
    heap: Vec<(Labels, f64)>,
}

fn aggregate_step(
    op: &str,
    spec: &Grouping,
    param: Option<f64>,
    input: &Vector,
) -> Result<Vector, EngineError> {
    let k = match op {
        "topk" | "bottomk" => {
            let k = top_k_param(param.unwrap_or(f64::NAN))?;
            if k < 1 {
                return Ok(Vec::new());
            }
            k as usize
        }
        _ => 0,
    };
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Group> = HashMap::new();
    for (labels, sample) in input {
        let key = spec.key(labels);
        match groups.get_mut(&key) {
            Some(g) => accumulate(op, g, labels, sample.v, k),
            None => {
                let group = new_group(op, key.clone(), labels, sample.v);
                groups.insert(key.clone(), group);
                order.push(key);
            }
        }
    }
    let mut out = Vec::new();
    for key in order {
        let group = groups.remove(&key).expect("every ordered key has a group");
        finish(op, group, param, &mut out);
    }
    Ok(out)
}

/// topk's k: the float must fit an int64, as in Prometheus.
fn top_k_param(f: f64) -> Result<i64, EngineError> {
    // i64::MAX rounds up to 2^63 as a float: the valid range is [-2^63, 2^63).
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if !(-TWO_POW_63..TWO_POW_63).contains(&f) {
        return Err(EngineError::Execution(format!(
            "Scalar value {} overflows int64",
            crate::json::go_format_g(f)
        )));
    }
    Ok(f as i64)
}

fn new_group(op: &str, key: Labels, labels: &Labels, v: f64) -> Group {
    let value = match op {
        "stddev" | "stdvar" => 0.0,
        "group" => 1.0,
        _ => v,
    };
    let heap = match op {
        "topk" | "bottomk" | "quantile" => vec![(labels.clone(), v)],
        _ => Vec::new(),
    };
    Group {
        labels: key,
        value,
        mean: v,
        count: 1,
        heap,
    }
}

fn accumulate(op: &str, g: &mut Group, labels: &Labels, v: f64, k: usize) {
    match op {
        "sum" => g.value += v,
        "avg" => {
            g.count += 1;
            g.mean = incremental_mean(g.mean, v, g.count);
        }
        "max" if g.value < v || g.value.is_nan() => g.value = v,
        "min" if g.value > v || g.value.is_nan() => g.value = v,
        "count" => g.count += 1,
        "stddev" | "stdvar" => {
            g.count += 1;
            let delta = v - g.mean;
            g.mean += delta / g.count as f64;
            g.value += delta * (v - g.mean);
        }
        "topk" => heap_offer(&mut g.heap, labels, v, k, less_for_topk),
        "bottomk" => heap_offer(&mut g.heap, labels, v, k, less_for_bottomk),
        "quantile" => g.heap.push((labels.clone(), v)),
        _ => {} // group
    }
}

/// Prometheus's running mean (each side of the subtraction divided by the count to avoid
/// overflow).
pub(crate) fn incremental_mean(mean: f64, v: f64, count: usize) -> f64 {
    if infinite_mean_absorbs(mean, v) {
        return mean;
    }
    let n = count as f64;
    mean + (v / n - mean / n)
}

/// Whether an infinite mean stays as it is when `v` arrives: it does unless `v` is NaN or an
/// infinity of the other sign (subtracting the infinite mean would otherwise give NaN).
pub(crate) fn infinite_mean_absorbs(mean: f64, v: f64) -> bool {
    if !mean.is_infinite() {
        return false;
    }
    let same_infinity = v.is_infinite() && (mean > 0.0) == (v > 0.0);
    same_infinity || v.is_finite()
}

fn finish(op: &str, g: Group, param: Option<f64>, out: &mut Vector) {
    let value = match op {
        "avg" => g.mean,
        "count" => g.count as f64,
        "stdvar" => g.value / g.count as f64,
        "stddev" => (g.value / g.count as f64).sqrt(),
        "quantile" => {
            let values: Vec<f64> = g.heap.iter().map(|(_, v)| *v).collect();
            quantile(param.unwrap_or(f64::NAN), values)
        }
        "topk" | "bottomk" => {
            let less = if op == "topk" {
                less_for_topk
            } else {
                less_for_bottomk
            };
            let mut heap = g.heap;
            // The heap holds the weakest element on top; the result lists the strongest first.
            go_sort(&mut heap, |a, b| less(&b.1, &a.1));
            for (labels, v) in heap {
                out.push((labels, Sample { t_ms: 0, v }));
            }
            return;
        }
        _ => g.value,
    };
    out.push((g.labels, Sample { t_ms: 0, v: value }));
}

/// topk's heap order: NaN is weakest, then ascending.
fn less_for_topk(a: &f64, b: &f64) -> bool {
    a.is_nan() || a < b
}

/// bottomk's heap order: NaN is weakest, then descending.
fn less_for_bottomk(a: &f64, b: &f64) -> bool {
    a.is_nan() || a > b
}

/// Offers an element to a bounded heap whose top (index 0) is the weakest element, as
/// Prometheus does with Go's container/heap; ties never displace an element already in.
fn heap_offer(
    heap: &mut Vec<(Labels, f64)>,
    labels: &Labels,
    v: f64,
    k: usize,
    less: fn(&f64, &f64) -> bool,
) {
    let top = heap[0].1;
    if heap.len() < k || less(&top, &v) || top.is_nan() {
        if heap.len() == k {
            if k == 1 {
                heap[0] = (labels.clone(), v);
                return;
            }
            heap_pop(heap, less);
        }
        heap.push((labels.clone(), v));
        let last = heap.len() - 1;
        heap_up(heap, last, less);
    }
}

fn heap_up(heap: &mut [(Labels, f64)], mut j: usize, less: fn(&f64, &f64) -> bool) {
    while j > 0 {
        let parent = (j - 1) / 2;
        if !less(&heap[j].1, &heap[parent].1) {
            break;
        }
        heap.swap(parent, j);
        j = parent;
    }
}

fn heap_pop(heap: &mut Vec<(Labels, f64)>, less: fn(&f64, &f64) -> bool) {
    let n = heap.len() - 1;
    heap.swap(0, n);
    heap_down(heap, 0, n, less);
    heap.pop();
}

fn heap_down(heap: &mut [(Labels, f64)], mut i: usize, n: usize, less: fn(&f64, &f64) -> bool) {
    loop {
        let left = 2 * i + 1;
        if left >= n {
            break;
        }
        let mut j = left;
        if left + 1 < n && less(&heap[left + 1].1, &heap[left].1) {
            j = left + 1;
        }
        if !less(&heap[j].1, &heap[i].1) {
            break;
        }
        heap.swap(i, j);
        i = j;
    }
}

/// `count_values("label", v)`: counts elements per distinct value, the value (formatted as
/// Go's `%f` shortest form) stored in `label`.
fn count_values(spec: &Grouping, label: &str, input: &Vector) -> Result<Vector, EngineError> {
    if !is_valid_label_name(label) {
        return Err(EngineError::Execution(format!(
            "invalid label name {label:?}"
        )));
    }
    let mut grouping = spec.grouping.clone();
    if !spec.without {
        grouping.push(label.to_string());
    }
    let spec = Grouping {
        without: spec.without,
        grouping,
    };
    let mut order: Vec<Labels> = Vec::new();
    let mut counts: HashMap<Labels, usize> = HashMap::new();
    for (labels, sample) in input {
        let mut labels = labels.clone();
        labels.set(label, &crate::json::go_format_f(sample.v));
        let key = spec.key(&labels);
        let count = counts.entry(key.clone()).or_insert(0);
        if *count == 0 {
            order.push(key);
        }
        *count += 1;
    }
    Ok(order
        .into_iter()
        .map(|key| {
            let v = counts[&key] as f64;
            (key, Sample { t_ms: 0, v })
        })
        .collect())
}
