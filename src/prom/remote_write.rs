//! Prometheus remote write 1.0: the body is a snappy block (raw format, no
//! framing) holding a protobuf `WriteRequest`. The messages below are the
//! subset of `prompb` this receiver reads, with the same field numbers
//! (exemplars are skipped as unknown fields; native histograms are refused).
//!
//! Each sample becomes one [`MetricPoint`] of type [`MetricType::Unknown`]
//! (OTLP never produces that type, so it marks a point whose name and
//! attributes *are* its Prometheus label set): `name` is `__name__`,
//! `attributes` are every other label in their sorted order, `service` is
//! the `job` label (for the other APIs; the label itself stays among the
//! attributes). The query side gives the label set back unchanged
//! (`super::series`). Points are keyed by a hash of their content in the
//! hot tier, so a batch sent again lands on the same keys: a retry never
//! duplicates a sample.
//!
//! No data format change: the points travel in ordinary metric records
//! (`payload::metrics_record`) and `MetricType::Unknown` was always part of
//! the stored enum, so a node of an older version applies them unchanged
//! (it only shows them as points of type `unknown`).

use prost::Message;

use crate::model::limits::{MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY_BYTES, MAX_NAME_CHARS};
use crate::model::{MetricPoint, MetricType};

/// Largest accepted body, compressed, and largest it may inflate to.
/// Prometheus sends far smaller batches (a few thousand samples); the
/// bound keeps one write within one reasonably sized log entry.
pub const MAX_WRITE_BYTES: usize = 8 * 1024 * 1024;
/// Most samples in one write request (each becomes a stored point).
pub const MAX_WRITE_SAMPLES: usize = 100_000;
/// Longest label value accepted.
pub const MAX_LABEL_VALUE_BYTES: usize = 16 * 1024;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histograms, only counted (their messages are not read).
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Why a write was refused (never retryable: the sender must not resend it).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// HTTP 413.
    #[error("{0}")]
    TooLarge(String),
    /// HTTP 400.
    #[error("{0}")]
    Invalid(String),
}

/// Inflates and decodes a body, refusing one that claims to inflate beyond
/// [`MAX_WRITE_BYTES`] before anything is allocated for it.
pub fn decode(body: &[u8]) -> Result<WriteRequest, WriteError> {
    if body.len() > MAX_WRITE_BYTES {
        return Err(WriteError::TooLarge(format!(
            "body of {} bytes exceeds the {MAX_WRITE_BYTES}-byte limit",
            body.len()
        )));
    }
    let inflated_len = snap::raw::decompress_len(body)
        .map_err(|e| WriteError::Invalid(format!("body is not a snappy block: {e}")))?;
    if inflated_len > MAX_WRITE_BYTES {
        return Err(WriteError::TooLarge(format!(
            "body inflates to {inflated_len} bytes, beyond the {MAX_WRITE_BYTES}-byte limit"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WriteError::Invalid(format!("body is not a snappy block: {e}")))?;
    WriteRequest::decode(&raw[..])
        .map_err(|e| WriteError::Invalid(format!("malformed WriteRequest protobuf: {e}")))
}

/// The points of a decoded request, or why the whole request is refused
/// (one bad series refuses all: Prometheus drops a batch answered with a
/// 400, it does not split it).
pub fn to_points(req: WriteRequest) -> Result<Vec<MetricPoint>, WriteError> {
    let samples: usize = req.timeseries.iter().map(|ts| ts.samples.len()).sum();
    if samples > MAX_WRITE_SAMPLES {
        return Err(WriteError::TooLarge(format!(
            "{samples} samples in one request, the limit is {MAX_WRITE_SAMPLES}"
        )));
    }
    let mut points = Vec::with_capacity(samples);
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        if !ts.histograms.is_empty() {
            return Err(WriteError::Invalid(format!(
                "series {i}: native histograms are not supported; send classic histograms"
            )));
        }
        let (name, attributes) = split_labels(ts.labels)
            .map_err(|why| WriteError::Invalid(format!("series {i}: {why}")))?;
        let service = attributes
            .iter()
            .find(|(k, _)| k == "job")
            .map(|(_, v)| clean_service(v))
            .unwrap_or_else(|| "unknown".to_string());
        for s in ts.samples {
            let t = timestamp_nanos(s.timestamp)
                .map_err(|why| WriteError::Invalid(format!("series {i} ({name}): {why}")))?;
            points.push(MetricPoint {
                timestamp_unix_nanos: t,
                start_unix_nanos: 0,
                service: service.clone(),
                name: name.clone(),
                metric_type: MetricType::Unknown,
                // Bit for bit: staleness markers are one NaN among many.
                value: s.value,
                unit: String::new(),
                attributes: attributes.clone(),
                temporality: None,
                is_monotonic: None,
                histogram: None,
                quantiles: Vec::new(),
            });
        }
    }
    Ok(points)
}

/// `__name__` and the other labels, checked: sorted by name, no name twice,
/// names and values within the store's limits. A label with an empty value
/// is dropped (to Prometheus it is the same as no label).
fn split_labels(labels: Vec<Label>) -> Result<(String, Vec<(String, String)>), String> {
    if labels.len() > MAX_ATTRIBUTES + 1 {
        return Err(format!(
            "{} labels, the limit is {}",
            labels.len(),
            MAX_ATTRIBUTES + 1
        ));
    }
    for w in labels.windows(2) {
        if w[0].name >= w[1].name {
            return Err(format!(
                "labels must be sorted by name without duplicates ({:?} then {:?})",
                w[0].name, w[1].name
            ));
        }
    }
    let mut name = None;
    let mut attributes = Vec::with_capacity(labels.len());
    for l in labels {
        if l.name.is_empty() {
            return Err("a label with an empty name".into());
        }
        if l.name.len() > MAX_ATTRIBUTE_KEY_BYTES {
            return Err(format!(
                "label name of {} bytes exceeds {MAX_ATTRIBUTE_KEY_BYTES}",
                l.name.len()
            ));
        }
        if l.value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(format!(
                "label {:?} value of {} bytes exceeds {MAX_LABEL_VALUE_BYTES}",
                l.name,
                l.value.len()
            ));
        }
        if l.name == "__name__" {
            name = Some(l.value);
        } else if !l.value.is_empty() {
            attributes.push((l.name, l.value));
        }
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or("no __name__ label: every series needs a metric name")?;
    if name.chars().any(char::is_control) || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "metric name must be at most {MAX_NAME_CHARS} characters without control characters"
        ));
    }
    Ok((name, attributes))
}

/// A sample's millisecond timestamp as unix nanoseconds.
fn timestamp_nanos(ms: i64) -> Result<u64, String> {
    u64::try_from(ms)
        .ok()
        .and_then(|ms| ms.checked_mul(1_000_000))
        .ok_or_else(|| format!("timestamp {ms} ms is outside 1970..2554"))
}

/// The `job` label as a service name: the store's rules for service names.
fn clean_service(job: &str) -> String {
    let s: String = job
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    if s.is_empty() {
        "unknown".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn label(n: &str, v: &str) -> Label {
        Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn series(labels: Vec<Label>, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            histograms: vec![],
        }
    }

    fn body(req: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn samples_keep_every_label_and_stale_markers_bit_for_bit() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let req = WriteRequest {
            timeseries: vec![series(
                vec![
                    label("__name__", "up"),
                    label("instance", "h:9"),
                    label("job", "node"),
                    label("zone", ""),
                ],
                &[(1_700_000_000_123, 1.0), (1_700_000_001_123, stale)],
            )],
            metadata: vec![],
        };
        let points = to_points(decode(&body(&req)).unwrap()).unwrap();
        assert_eq!(points.len(), 2);
        let p = &points[1];
        assert_eq!(p.name, "up");
        assert_eq!(p.service, "node");
        assert_eq!(p.metric_type, MetricType::Unknown);
        assert_eq!(p.timestamp_unix_nanos, 1_700_000_001_123_000_000);
        assert_eq!(
            p.attributes,
            vec![
                ("instance".into(), "h:9".into()),
                ("job".into(), "node".into())
            ]
        );
        assert_eq!(p.value.to_bits(), 0x7ff0_0000_0000_0002);
        // Stored and read back, the marker is still the same NaN.
        let back: MetricPoint = crate::codec::decode(&crate::codec::encode(p)).unwrap();
        assert_eq!(back.value.to_bits(), 0x7ff0_0000_0000_0002);
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        let invalid = |r: Result<WriteRequest, WriteError>| match r {
            Err(WriteError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(invalid(decode(b"\xff\xff\xff\xff\xff\xff")).contains("snappy"));
        let not_proto = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff")
            .unwrap();
        assert!(invalid(decode(&not_proto)).contains("protobuf"));
        // A block claiming to inflate beyond the limit is refused unread.
        let mut bomb = Vec::new();
        let mut n = MAX_WRITE_BYTES as u64 + 1;
        while n >= 0x80 {
            bomb.push((n as u8) | 0x80);
            n >>= 7;
        }
        bomb.push(n as u8);
        assert!(matches!(decode(&bomb), Err(WriteError::TooLarge(_))));
        assert!(matches!(
            decode(&vec![0; MAX_WRITE_BYTES + 1]),
            Err(WriteError::TooLarge(_))
        ));
    }

    #[test]
    fn series_without_a_name_or_with_unsorted_labels_are_refused() {
        let refused = |labels: Vec<Label>| {
            let req = WriteRequest {
                timeseries: vec![series(labels, &[(1, 1.0)])],
                metadata: vec![],
            };
            match to_points(req) {
                Err(WriteError::Invalid(m)) => m,
                other => panic!("{other:?}"),
            }
        };
        assert!(refused(vec![label("job", "x")]).contains("__name__"));
        assert!(refused(vec![label("__name__", ""), label("job", "x")]).contains("__name__"));
        assert!(refused(vec![
            label("__name__", "a"),
            label("b", "1"),
            label("a", "2")
        ])
        .contains("sorted"));
        assert!(refused(vec![
            label("__name__", "a"),
            label("b", "1"),
            label("b", "2")
        ])
        .contains("duplicates"));
        let req = WriteRequest {
            timeseries: vec![series(vec![label("__name__", "a")], &[(-5, 1.0)])],
            metadata: vec![],
        };
        assert!(matches!(to_points(req), Err(WriteError::Invalid(_))));
    }

    #[test]
    fn a_retried_batch_encodes_to_the_same_stored_points() {
        let req = WriteRequest {
            timeseries: vec![series(
                vec![label("__name__", "x"), label("job", "j")],
                &[(10, 1.5), (20, 2.5)],
            )],
            metadata: vec![],
        };
        let a = to_points(req.clone()).unwrap();
        let b = to_points(req).unwrap();
        let enc = |p: &[MetricPoint]| p.iter().map(crate::codec::encode).collect::<Vec<_>>();
        assert_eq!(enc(&a), enc(&b));
    }
}
