//! Loki's JSON shapes: the `success` envelope with its `stats` and
//! `warnings`, log streams, and Prometheus-style matrices and vectors.

use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Map, Value as J};

use super::loki_params::NANOS_PER_SEC;
use crate::logql::eval::{Processed, Series, Stream};

/// The header with which a client asks for structured metadata and parsed
/// labels apart from the stream's labels, and the flag it names.
pub const ENCODING_FLAGS: &str = "x-loki-response-encoding-flags";
pub const CATEGORIZE_LABELS: &str = "categorize-labels";

/// Seconds since the epoch, as Loki writes sample times.
pub fn secs(unix_nanos: u64) -> J {
    let whole = (unix_nanos / NANOS_PER_SEC) as f64;
    json!(whole + (unix_nanos % NANOS_PER_SEC) as f64 / NANOS_PER_SEC as f64)
}

/// A sample value as Prometheus writes it: a string.
pub fn number(v: f64) -> J {
    J::String(if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    })
}

pub fn streams_json(streams: &[Stream], categorize: bool) -> J {
    let list: Vec<J> = streams
        .iter()
        .map(|s| {
            let values: Vec<J> = s
                .entries
                .iter()
                .map(|e| {
                    let ts = e.ts_unix_nanos.to_string();
                    if !categorize {
                        return json!([ts, e.line]);
                    }
                    let mut extra = Map::new();
                    if !e.metadata.is_empty() {
                        extra.insert("structuredMetadata".into(), json!(e.metadata));
                    }
                    if !e.parsed.is_empty() {
                        extra.insert("parsed".into(), json!(e.parsed));
                    }
                    json!([ts, e.line, extra])
                })
                .collect();
            json!({ "stream": s.labels, "values": values })
        })
        .collect();
    J::Array(list)
}

pub fn matrix_json(series: &[Series]) -> J {
    J::Array(
        series
            .iter()
            .map(|s| {
                let values: Vec<J> = s
                    .points
                    .iter()
                    .map(|(t, v)| json!([secs(*t), number(*v)]))
                    .collect();
                json!({ "metric": s.labels, "values": values })
            })
            .collect(),
    )
}

pub fn vector_json(series: &[Series]) -> J {
    J::Array(
        series
            .iter()
            .filter_map(|s| {
                let (t, v) = s.points.last()?;
                Some(json!({ "metric": s.labels, "value": [secs(*t), number(*v)] }))
            })
            .collect(),
    )
}

/// Loki's `stats.summary`, from what this query read.
pub fn stats(processed: Processed, returned: usize, started: Instant) -> J {
    let exec_secs = started.elapsed().as_secs_f64();
    let per_sec = |n: u64| {
        if exec_secs > 0.0 {
            (n as f64 / exec_secs) as u64
        } else {
            0
        }
    };
    json!({
        "summary": {
            "bytesProcessedPerSecond": per_sec(processed.bytes),
            "linesProcessedPerSecond": per_sec(processed.lines),
            "totalBytesProcessed": processed.bytes,
            "totalLinesProcessed": processed.lines,
            "execTime": exec_secs,
            "queueTime": 0,
            "subqueries": 0,
            "totalEntriesReturned": returned,
            "splits": 0,
            "shards": 0,
            "totalPostFilterLines": processed.lines,
            "totalStructuredMetadataBytesProcessed": 0,
        }
    })
}

const TRUNCATED_WARNING: &str =
    "the scan budget ran out before the time range was covered: narrow the range or the selector";

/// Loki's envelope. Its fields serialize in this order, which matters:
/// Grafana reads the answer as a stream and must meet `resultType` (and
/// `encodingFlags`) before `result`, and `result` before `stats`. A scan
/// that ran out of budget is a warning, which Grafana shows with the result.
#[derive(Debug, Serialize)]
pub struct Envelope {
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<&'static str>,
    data: Data,
}

#[derive(Debug, Serialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: &'static str,
    #[serde(rename = "encodingFlags", skip_serializing_if = "Vec::is_empty")]
    encoding_flags: Vec<&'static str>,
    result: J,
    stats: J,
}

pub fn envelope(kind: &'static str, result: J, stats: J, truncated: bool) -> Envelope {
    Envelope {
        status: "success",
        warnings: if truncated {
            vec![TRUNCATED_WARNING]
        } else {
            Vec::new()
        },
        data: Data {
            result_type: kind,
            encoding_flags: Vec::new(),
            result,
            stats,
        },
    }
}

impl Envelope {
    /// Marks the entries as carrying their labels by category.
    pub fn categorized(mut self) -> Envelope {
        self.data.encoding_flags = vec![CATEGORIZE_LABELS];
        self
    }
}

pub fn list_envelope(data: J, truncated: bool) -> J {
    let mut doc = json!({ "status": "success", "data": data });
    if truncated {
        doc["warnings"] = json!([TRUNCATED_WARNING]);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::eval::StreamEntry;
    use crate::logql::labels::Labels;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn samples_are_seconds_and_strings() {
        assert_eq!(secs(4 * NANOS_PER_SEC), json!(4.0));
        assert_eq!(secs(1_700_000_000_500_000_000), json!(1_700_000_000.5));
        assert_eq!(number(2.0), json!("2"));
        assert_eq!(number(0.025), json!("0.025"));
        assert_eq!(number(f64::NAN), json!("NaN"));
        assert_eq!(number(f64::INFINITY), json!("+Inf"));
        assert_eq!(number(f64::NEG_INFINITY), json!("-Inf"));
        let series = [Series {
            labels: labels(&[("level", "error")]),
            points: vec![(60 * NANOS_PER_SEC, 1.0), (120 * NANOS_PER_SEC, 3.0)],
        }];
        assert_eq!(
            matrix_json(&series),
            json!([{ "metric": {"level": "error"}, "values": [[60.0, "1"], [120.0, "3"]] }])
        );
        assert_eq!(
            vector_json(&series),
            json!([{ "metric": {"level": "error"}, "value": [120.0, "3"] }])
        );
    }

    #[test]
    fn entries_carry_their_labels_only_when_categorized() {
        let entry = |metadata: Labels| StreamEntry {
            ts_unix_nanos: 5,
            line: "hi".into(),
            metadata,
            parsed: Labels::new(),
        };
        let plain = [Stream {
            labels: labels(&[("a", "b")]),
            entries: vec![entry(Labels::new())],
        }];
        assert_eq!(
            streams_json(&plain, false),
            json!([{ "stream": {"a": "b"}, "values": [["5", "hi"]] }])
        );
        let categorized = [Stream {
            labels: labels(&[("a", "b")]),
            entries: vec![entry(labels(&[("trace_id", "ab")])), entry(Labels::new())],
        }];
        assert_eq!(
            streams_json(&categorized, true),
            json!([{ "stream": {"a": "b"}, "values": [
                ["5", "hi", {"structuredMetadata": {"trace_id": "ab"}}],
                ["5", "hi", {}],
            ] }])
        );
    }

    #[test]
    fn the_envelope_keeps_the_order_grafana_reads_it_in() {
        let doc = envelope("streams", json!([]), json!({"summary": {}}), false);
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            text,
            r#"{"status":"success","data":{"resultType":"streams","result":[],"stats":{"summary":{}}}}"#
        );
        let doc = envelope("streams", json!([]), json!({}), true).categorized();
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"status":"success","warnings":["{TRUNCATED_WARNING}"],"data":{{"resultType":"streams","encodingFlags":["categorize-labels"],"result":[],"stats":{{}}}}}}"#
            )
        );
        assert_eq!(
            list_envelope(json!(["a"]), true)["warnings"],
            json!([TRUNCATED_WARNING])
        );
    }
}
