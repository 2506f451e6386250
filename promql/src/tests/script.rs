//! A small test language (in the spirit of Prometheus's own):
//!
//! ```text
//! load 1m
//!   http_requests{job="api"} 0+10x10
//! eval instant at 10m rate(http_requests[5m])
//!   {job="api"} 0.16666666666666669
//! eval_fail instant at 1m a + on() b
//!   error_contains many-to-many
//! clear
//! ```
//!
//! Expected lines list the result's elements (`scalar <v>` for a scalar result); an `eval`
//! with none expects an empty result. `eval_ordered` also checks the order. Values compare
//! with a relative tolerance of 1e-12 (NaN equals NaN).

use crate::memory::MemoryStorage;
use crate::{instant_query, parse_duration_ms, EngineLimits, Labels, Value};

#[derive(Debug)]
enum Expected {
    Elements {
        ordered: bool,
        items: Vec<(Labels, f64)>,
    },
    Scalar(f64),
    Error(String),
}

/// Runs a script; panics with the line of the first failing `eval`.
pub(crate) fn run(script: &str) {
    let mut storage = MemoryStorage::new();
    let lines: Vec<&str> = script.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let block_end = lines[i..]
            .iter()
            .position(|l| !l.starts_with(' ') || l.trim().is_empty())
            .map_or(lines.len(), |p| i + p);
        let body: Vec<&str> = lines[i..block_end].iter().map(|l| l.trim()).collect();
        if line == "clear" {
            storage = MemoryStorage::new();
        } else if let Some(interval) = line.strip_prefix("load ") {
            load(&mut storage, interval, &body);
        } else {
            check_eval(&storage, line, &body, i);
        }
        i = block_end;
    }
}

fn load(storage: &mut MemoryStorage, interval: &str, body: &[&str]) {
    let interval_ms = parse_duration_ms(interval.trim()).expect("load interval");
    for line in body {
        let split = match line.rfind('}') {
            Some(brace) => brace + 1,
            None => line.find(' ').expect("series line has values"),
        };
        let (series, values) = line.split_at(split);
        storage.add_notation(parse_labels(series.trim()), interval_ms, values.trim());
    }
}

/// `name{a="x", b="y"}`, `{a="x"}` or `name` as a label set.
pub(crate) fn parse_labels(s: &str) -> Labels {
    let (name, rest) = match s.find('{') {
        Some(b) => (&s[..b], &s[b..]),
        None => (s, ""),
    };
    let mut labels = Labels::default();
    if !name.is_empty() {
        labels.set("__name__", name);
    }
    let re = regex::Regex::new(r#"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)""#).unwrap();
    for caps in re.captures_iter(rest) {
        let value = caps[2].replace("\\\"", "\"").replace("\\\\", "\\");
        labels.set(&caps[1], &value);
    }
    labels
}

fn check_eval(storage: &MemoryStorage, line: &str, body: &[&str], line_no: usize) {
    let (command, rest) = line
        .split_once(" instant at ")
        .expect("eval ... instant at");
    let (at, query) = rest.split_once(' ').expect("time and query");
    let time_ms = parse_duration_ms(at).expect("eval time");
    let expected = parse_expected(command, body);
    let result = instant_query(storage, query, time_ms, &EngineLimits::default());
    let context = format!("line {line_no}: {query:?} at {at}");
    match (expected, result) {
        (Expected::Error(want), Err(e)) => {
            assert!(
                e.to_string().contains(&want),
                "{context}: error {e:?}, want {want:?}"
            )
        }
        (Expected::Error(want), Ok(v)) => panic!("{context}: got {v:?}, want error {want:?}"),
        (_, Err(e)) => panic!("{context}: unexpected error {e}"),
        (Expected::Scalar(want), Ok(Value::Scalar { v, .. })) => {
            assert!(close(v, want), "{context}: scalar {v}, want {want}")
        }
        (Expected::Elements { ordered, items }, Ok(v)) => {
            compare_elements(&context, ordered, items, elements(v))
        }
        (want, Ok(got)) => panic!("{context}: got {got:?}, want {want:?}"),
    }
}

fn parse_expected(command: &str, body: &[&str]) -> Expected {
    if command == "eval_fail" {
        let want = body
            .first()
            .and_then(|l| l.strip_prefix("error_contains "))
            .unwrap_or("");
        return Expected::Error(want.to_string());
    }
    if let Some(v) = body.first().and_then(|l| l.strip_prefix("scalar ")) {
        return Expected::Scalar(parse_value(v));
    }
    let items = body
        .iter()
        .map(|l| {
            let split = l.rfind(' ').expect("labels and value");
            (parse_labels(&l[..split]), parse_value(&l[split + 1..]))
        })
        .collect();
    Expected::Elements {
        ordered: command == "eval_ordered",
        items,
    }
}

fn parse_value(s: &str) -> f64 {
    crate::time::parse_go_float(s.trim()).unwrap_or_else(|| panic!("bad value {s:?}"))
}

/// A vector's or matrix's elements (a matrix element per point).
fn elements(v: Value) -> Vec<(Labels, f64)> {
    match v {
        Value::Vector(items) => items.into_iter().map(|(l, s)| (l, s.v)).collect(),
        Value::Matrix(series) => series
            .into_iter()
            .flat_map(|s| {
                let labels = s.labels;
                s.samples.into_iter().map(move |p| (labels.clone(), p.v))
            })
            .collect(),
        other => panic!("expected a vector or matrix, got {other:?}"),
    }
}

fn compare_elements(
    context: &str,
    ordered: bool,
    mut want: Vec<(Labels, f64)>,
    mut got: Vec<(Labels, f64)>,
) {
    if !ordered {
        want.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let show = |v: &[(Labels, f64)]| {
        v.iter()
            .map(|(l, x)| format!("{l} {x}"))
            .collect::<Vec<_>>()
            .join("\n    ")
    };
    let same = want.len() == got.len()
        && want
            .iter()
            .zip(&got)
            .all(|(w, g)| w.0 == g.0 && close(w.1, g.1));
    assert!(
        same,
        "{context}\n  want:\n    {}\n  got:\n    {}",
        show(&want),
        show(&got)
    );
}

/// Equal within a relative 1e-12, or both NaN.
pub(crate) fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}
