//! Evaluates queries over series read from a file and prints Prometheus API responses, one
//! JSON object per line. Used by `scripts/promql-compare` to compare this engine with a
//! real Prometheus fed the same data.
//!
//! Usage: `eval_file SAMPLES QUERIES`
//! - SAMPLES: OpenMetrics-style lines `name{a="x",b="y"} VALUE UNIX_SECONDS` (as
//!   `promtool tsdb create-blocks-from openmetrics` imports them), `#` lines ignored;
//! - QUERIES: lines `instant TIME<TAB>QUERY` or `range START END STEP<TAB>QUERY`, with the
//!   HTTP API's time and duration formats.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde_json::json;
use tael_promql::{
    instant_query, parse_duration_ms, parse_time_ms, range_query, result_json, EngineError,
    EngineLimits, Labels, MemoryStorage, Sample, Value,
};

fn lines(path: &str) -> impl Iterator<Item = String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    std::io::BufReader::new(file)
        .lines()
        .map(|l| l.expect("readable line"))
}

/// `name{a="x",b="y"}` (values without commas or escaped quotes).
fn parse_labels(s: &str) -> Labels {
    let (name, inner) = match s.find('{') {
        Some(i) => (&s[..i], &s[i + 1..s.len() - 1]),
        None => (s, ""),
    };
    let pairs = inner.split(',').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').expect("label=value");
        (k.to_string(), v.trim_matches('"').to_string())
    });
    Labels::from_pairs(std::iter::once(("__name__".to_string(), name.to_string())).chain(pairs))
}

fn load(path: &str) -> MemoryStorage {
    let mut series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for line in lines(path).filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let mut fields = line.rsplitn(3, ' ');
        let seconds: f64 = fields.next().and_then(|t| t.parse().ok()).expect("time");
        let v: f64 = fields.next().and_then(|v| v.parse().ok()).expect("value");
        let labels = parse_labels(fields.next().expect("series"));
        let t_ms = (seconds * 1000.0).round() as i64;
        series.entry(labels).or_default().push(Sample { t_ms, v });
    }
    let mut storage = MemoryStorage::new();
    for (labels, samples) in series {
        storage.add(labels, samples);
    }
    storage
}

fn run(storage: &MemoryStorage, spec: &str, query: &str) -> Result<Value, EngineError> {
    let limits = EngineLimits::default();
    let f: Vec<&str> = spec.split(' ').collect();
    match f.as_slice() {
        ["instant", t] => instant_query(storage, query, parse_time_ms(t)?, &limits),
        ["range", start, end, step] => range_query(
            storage,
            query,
            parse_time_ms(start)?,
            parse_time_ms(end)?,
            parse_duration_ms(step)?,
            &limits,
        ),
        _ => panic!("bad query line {spec:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(args.len(), 3, "usage: eval_file SAMPLES QUERIES");
    let storage = load(&args[1]);
    for line in lines(&args[2]) {
        let (spec, query) = line.split_once('\t').expect("SPEC<TAB>QUERY");
        let response = match run(&storage, spec, query) {
            Ok(v) => json!({"status": "success", "data": result_json(&v)}),
            Err(e) => {
                json!({"status": "error", "errorType": e.error_type(), "error": e.to_string()})
            }
        };
        println!("{response}");
    }
}
