//! Binary operators: arithmetic, comparisons (filtering or `bool`), `atan2`, and the set
//! operators `and`/`or`/`unless`, between scalars and vectors, with Prometheus's vector
//! matching (`on`/`ignoring`, `group_left`/`group_right`) and its errors.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::eval::{Evaluator, Matrix, Vector};
use crate::{EngineError, Labels, Sample};

/// How the two sides of a vector operation pair up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    /// `group_left`: many series on the left per series on the right.
    ManyToOne,
    /// `group_right`.
    OneToMany,
    /// Set operators.
    ManyToMany,
}

/// The matching modifiers of a vector operation.
#[derive(Clone, Debug)]
pub(crate) struct Matching {
    pub(crate) card: Card,
    /// `on(...)` when true, `ignoring(...)` (or nothing) when false.
    pub(crate) on: bool,
    pub(crate) names: Vec<String>,
    /// Labels copied from the "one" side (`group_left(x)`).
    pub(crate) include: Vec<String>,
}

impl Matching {
    fn from_expr(b: &BinaryExpr, op: &str) -> Matching {
        let modifier = b.modifier.as_ref();
        let (on, names) = match modifier.and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        let (card, include) = match modifier.map(|m| &m.card) {
            _ if is_set_operator(op) => (Card::ManyToMany, Vec::new()),
            Some(VectorMatchCardinality::ManyToOne(l)) => (Card::ManyToOne, l.labels.clone()),
            Some(VectorMatchCardinality::OneToMany(l)) => (Card::OneToMany, l.labels.clone()),
            _ => (Card::OneToOne, Vec::new()),
        };
        Matching {
            card,
            on,
            names,
            include,
        }
    }

    fn signature(&self, labels: &Labels) -> Labels {
        labels.match_signature(self.on, &self.names)
    }
}

pub(crate) fn is_set_operator(op: &str) -> bool {
    matches!(op, "and" | "or" | "unless")
}

pub(crate) fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Arithmetic drops the metric name; comparisons keep it (unless `bool`).
fn drops_metric_name(op: &str) -> bool {
    matches!(op, "+" | "-" | "*" | "/" | "%" | "^")
}

fn bool_to_f64(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The operator applied to two scalars; comparisons give 1 or 0.
pub(crate) fn scalar_binop(op: &str, l: f64, r: f64) -> f64 {
    match op {
        "==" => bool_to_f64(l == r),
        "!=" => bool_to_f64(l != r),
        ">" => bool_to_f64(l > r),
        "<" => bool_to_f64(l < r),
        ">=" => bool_to_f64(l >= r),
        "<=" => bool_to_f64(l <= r),
        _ => arithmetic(op, l, r),
    }
}

fn arithmetic(op: &str, l: f64, r: f64) -> f64 {
    match op {
        "+" => l + r,
        "-" => l - r,
        "*" => l * r,
        "/" => l / r,
        // Go's math.Mod: the sign of the dividend, like Rust's `%` on floats.
        "%" => l % r,
        "^" => crate::gomath::pow(l, r),
        "atan2" => l.atan2(r),
        _ => unreachable!("operator {op} is not arithmetic"),
    }
}

/// The operator applied to two vector elements: the value and whether to keep it
/// (comparisons keep the left value when true).
fn element_binop(op: &str, l: f64, r: f64) -> (f64, bool) {
    match op {
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => (arithmetic(op, l, r), true),
    }
}

impl Evaluator<'_> {
    pub(crate) fn binary(&self, b: &BinaryExpr) -> Result<Matrix, EngineError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval_matrix(&b.lhs)?;
        let rhs = self.eval_matrix(&b.rhs)?;
        let args = [Some(lhs), Some(rhs)];
        match (b.lhs.value_type(), b.rhs.value_type()) {
            (ValueType::Scalar, ValueType::Scalar) => self.range_eval(&args, |v, _| {
                let value = scalar_binop(&op, v[0][0].1.v, v[1][0].1.v);
                Ok(vec![(Labels::default(), Sample { t_ms: 0, v: value })])
            }),
            (ValueType::Vector, ValueType::Scalar) => self.range_eval(&args, |v, _| {
                Ok(vector_scalar_binop(
                    &op,
                    &v[0],
                    v[1][0].1.v,
                    false,
                    return_bool,
                ))
            }),
            (ValueType::Scalar, ValueType::Vector) => self.range_eval(&args, |v, _| {
                Ok(vector_scalar_binop(
                    &op,
                    &v[1],
                    v[0][0].1.v,
                    true,
                    return_bool,
                ))
            }),
            _ => {
                let matching = Matching::from_expr(b, &op);
                self.range_eval(&args, |v, _| {
                    vector_binop(&op, &v[0], &v[1], &matching, return_bool)
                })
            }
        }
    }
}

/// A vector and a scalar; `swap` when the scalar was written on the left.
pub(crate) fn vector_scalar_binop(
    op: &str,
    vector: &Vector,
    scalar: f64,
    swap: bool,
    return_bool: bool,
) -> Vector {
    let mut out = Vec::with_capacity(vector.len());
    for (labels, sample) in vector {
        let (l, r) = if swap {
            (scalar, sample.v)
        } else {
            (sample.v, scalar)
        };
        let (mut value, mut keep) = element_binop(op, l, r);
        // A comparison filters the vector's elements and keeps their values, whichever side
        // the vector was on.
        if is_comparison(op) && swap {
            value = r;
        }
        if return_bool {
            value = bool_to_f64(keep);
            keep = true;
        }
        if keep {
            let labels = if drops_metric_name(op) || return_bool {
                labels.without_metric_name()
            } else {
                labels.clone()
            };
            out.push((
                labels,
                Sample {
                    t_ms: sample.t_ms,
                    v: value,
                },
            ));
        }
    }
    out
}

/// Two vectors, by operator kind.
pub(crate) fn vector_binop(
    op: &str,
    lhs: &Vector,
    rhs: &Vector,
    matching: &Matching,
    return_bool: bool,
) -> Result<Vector, EngineError> {
    match op {
        "and" => Ok(vector_and(lhs, rhs, matching)),
        "or" => Ok(vector_or(lhs, rhs, matching)),
        "unless" => Ok(vector_unless(lhs, rhs, matching)),
        _ => vector_arithmetic(op, lhs, rhs, matching, return_bool),
    }
}

fn signatures(v: &Vector, matching: &Matching) -> HashSet<Labels> {
    v.iter().map(|(l, _)| matching.signature(l)).collect()
}

fn vector_and(lhs: &Vector, rhs: &Vector, matching: &Matching) -> Vector {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right = signatures(rhs, matching);
    lhs.iter()
        .filter(|(l, _)| right.contains(&matching.signature(l)))
        .cloned()
        .collect()
}

fn vector_or(lhs: &Vector, rhs: &Vector, matching: &Matching) -> Vector {
    let left = signatures(lhs, matching);
    let mut out = lhs.clone();
    out.extend(
        rhs.iter()
            .filter(|(l, _)| !left.contains(&matching.signature(l)))
            .cloned(),
    );
    out
}

fn vector_unless(lhs: &Vector, rhs: &Vector, matching: &Matching) -> Vector {
    let right = signatures(rhs, matching);
    lhs.iter()
        .filter(|(l, _)| !right.contains(&matching.signature(l)))
        .cloned()
        .collect()
}

/// Arithmetic and comparisons between vectors: each element of the "many" side (either
/// side for one-to-one) is paired with the element of the other side with the same
/// signature; the "one" side must not hold two elements with one signature.
fn vector_arithmetic(
    op: &str,
    lhs: &Vector,
    rhs: &Vector,
    matching: &Matching,
    return_bool: bool,
) -> Result<Vector, EngineError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    // For one-to-many, the right side is the "many" side: swap, and swap values back.
    let swapped = matching.card == Card::OneToMany;
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let one_by_sig = index_one_side(one, matching)?;
    // One-to-one: signatures already matched; otherwise the result label sets per signature.
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for (many_labels, many_sample) in many {
        let sig = matching.signature(many_labels);
        let Some((one_labels, one_sample)) = one_by_sig.get(&sig) else {
            continue;
        };
        let (l, r) = if swapped {
            (one_sample.v, many_sample.v)
        } else {
            (many_sample.v, one_sample.v)
        };
        let (mut value, keep) = element_binop(op, l, r);
        if return_bool {
            value = bool_to_f64(keep);
        } else if !keep {
            continue;
        }
        let mut labels = result_labels(many_labels, one_labels, op, matching);
        if return_bool {
            labels.remove(crate::labels::METRIC_NAME);
        }
        check_unique_match(&mut matched, sig, &labels, matching.card)?;
        out.push((labels, Sample { t_ms: 0, v: value }));
    }
    Ok(out)
}

/// The "one" side by signature; two elements with one signature is Prometheus's
/// many-to-many error.
fn index_one_side<'v>(
    one: &'v Vector,
    matching: &Matching,
) -> Result<HashMap<Labels, &'v (Labels, Sample)>, EngineError> {
    let mut by_sig: HashMap<Labels, &(Labels, Sample)> = HashMap::new();
    for element in one {
        let sig = matching.signature(&element.0);
        if let Some(previous) = by_sig.get(&sig) {
            let side = if matching.card == Card::OneToMany {
                "left"
            } else {
                "right"
            };
            let group = match_labels(&element.0, matching);
            return Err(EngineError::Execution(format!(
                "found duplicate series for the match group {group} on the {side} hand-side of \
                 the operation: [{}, {}];many-to-many matching not allowed: matching labels \
                 must be unique on one side",
                element.0, previous.0
            )));
        }
        by_sig.insert(sig, element);
    }
    Ok(by_sig)
}

/// The labels named in a duplicate-match error: with `on`, the listed labels (the metric
/// name included if listed); otherwise all but the ignored ones and the metric name.
fn match_labels(labels: &Labels, matching: &Matching) -> Labels {
    if matching.on {
        labels.keep_only(&matching.names)
    } else {
        labels.drop_all(&matching.names).without_metric_name()
    }
}

fn check_unique_match(
    matched: &mut HashMap<Labels, HashSet<Labels>>,
    sig: Labels,
    labels: &Labels,
    card: Card,
) -> Result<(), EngineError> {
    let seen = matched.entry(sig).or_default();
    if card == Card::OneToOne {
        if !seen.is_empty() {
            return Err(EngineError::Execution(
                "multiple matches for labels: many-to-one matching must be explicit \
                 (group_left/group_right)"
                    .into(),
            ));
        }
        seen.insert(Labels::default());
        return Ok(());
    }
    if !seen.insert(labels.clone()) {
        return Err(EngineError::Execution(
            "multiple matches for labels: grouping labels must ensure unique matches".into(),
        ));
    }
    Ok(())
}

/// The result's labels: the "many" side's, without the metric name for arithmetic; for
/// one-to-one only the `on` labels (or without the `ignoring` ones); plus the `group_x`
/// labels copied from the "one" side.
fn result_labels(many: &Labels, one: &Labels, op: &str, matching: &Matching) -> Labels {
    let mut labels = if drops_metric_name(op) {
        many.without_metric_name()
    } else {
        many.clone()
    };
    if matching.card == Card::OneToOne {
        labels = if matching.on {
            labels.keep_only(&matching.names)
        } else {
            labels.drop_all(&matching.names)
        };
    }
    for name in &matching.include {
        labels.set(name, one.get(name));
    }
    labels
}
