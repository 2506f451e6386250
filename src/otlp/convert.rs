//! OTLP messages to stored records, with validation.
//!
//! A record that cannot be stored (bad id, oversized value) is counted and
//! described for the OTLP partial-success response; the rest are stored.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as otlp_common;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Metric};
use opentelemetry_proto::tonic::trace::v1 as otlp_trace;

use crate::model::value::sort_unique;
use crate::model::{
    AnyValue, EntityRef, HistogramData, KeyValue, LogRecord, MetricPoint, MetricType, Resource,
    Scope, Severity, SpanEvent, SpanId, SpanKind, SpanLink, SpanRecord, SpanStatus, Temporality,
    TraceId,
};

// The limits live with the model: the leader checks forwarded records
// against the same ones (`payload::check`).
pub use crate::model::limits::{
    MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_EVENTS,
    MAX_HISTOGRAM_BUCKETS, MAX_LINKS, MAX_LOG_BODY_BYTES, MAX_NAME_CHARS, MAX_QUANTILES,
};

#[derive(Debug)]
pub struct Converted<T> {
    pub records: Vec<T>,
    pub rejected: u64,
    /// The first reason a record was rejected, for the partial-success message.
    pub first_error: Option<String>,
}

impl<T> Default for Converted<T> {
    fn default() -> Self {
        Converted {
            records: Vec::new(),
            rejected: 0,
            first_error: None,
        }
    }
}

impl<T> Converted<T> {
    fn reject(&mut self, why: String) {
        self.rejected += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }

    /// Rejects `n` records for one reason (a bad resource or scope rejects
    /// every record under it).
    fn reject_all(&mut self, n: usize, why: String) {
        for _ in 0..n {
            self.reject(why.clone());
        }
    }
}

pub fn traces(req: ExportTraceServiceRequest) -> Converted<SpanRecord> {
    let mut out = Converted::default();
    for rs in req.resource_spans {
        let count = rs.scope_spans.iter().map(|ss| ss.spans.len()).sum();
        let resource = match resource(rs.resource, rs.schema_url) {
            Ok(r) => Arc::new(r),
            Err(why) => {
                out.reject_all(count, why);
                continue;
            }
        };
        let service = service_name(&resource.attributes);
        for ss in rs.scope_spans {
            let scope = match scope(ss.scope, ss.schema_url) {
                Ok(s) => Arc::new(s),
                Err(why) => {
                    out.reject_all(ss.spans.len(), why);
                    continue;
                }
            };
            for span in ss.spans {
                match span_record(&service, &resource, &scope, span) {
                    Ok(rec) => out.records.push(rec),
                    Err(why) => out.reject(why),
                }
            }
        }
    }
    out
}

fn resource(
    r: Option<opentelemetry_proto::tonic::resource::v1::Resource>,
    schema_url: String,
) -> Result<Resource, String> {
    let r = r.unwrap_or_default();
    Ok(Resource {
        attributes: attributes(r.attributes).map_err(|e| format!("resource: {e}"))?,
        dropped_attributes_count: r.dropped_attributes_count,
        entity_refs: r
            .entity_refs
            .into_iter()
            .map(|e| EntityRef {
                schema_url: e.schema_url,
                entity_type: e.r#type,
                id_keys: e.id_keys,
                description_keys: e.description_keys,
            })
            .collect(),
        schema_url,
    })
}

fn scope(
    s: Option<otlp_common::InstrumentationScope>,
    schema_url: String,
) -> Result<Scope, String> {
    let s = s.unwrap_or_default();
    Ok(Scope {
        name: s.name,
        version: s.version,
        attributes: attributes(s.attributes).map_err(|e| format!("scope: {e}"))?,
        dropped_attributes_count: s.dropped_attributes_count,
        schema_url,
    })
}

/// The service a resource names: its `service.name` string, cleaned, or "unknown".
pub fn service_name(resource_attrs: &[KeyValue]) -> String {
    match crate::model::value::find(resource_attrs, "service.name").and_then(|kv| kv.value.as_ref())
    {
        Some(AnyValue::String(s)) if !s.is_empty() => clean_name(s),
        _ => "unknown".to_string(),
    }
}

/// Metrics keep only the service of their resource: its first `service.name`.
fn metric_service_name(resource_attrs: &[otlp_common::KeyValue]) -> String {
    resource_attrs
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) if !s.is_empty() => Some(clean_name(s)),
                _ => None,
            },
        )
        .unwrap_or_else(|| "unknown".to_string())
}

/// Service and operation names are index keys: bound them and drop control characters.
fn clean_name(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect()
}

/// The cleaned form of `raw`, and `raw` itself when cleaning changed it.
fn cleaned(raw: String) -> (String, Option<String>) {
    let clean = clean_name(&raw);
    let raw = (clean != raw).then_some(raw);
    (clean, raw)
}

fn span_record(
    service: &str,
    resource: &Arc<Resource>,
    scope: &Arc<Scope>,
    span: otlp_trace::Span,
) -> Result<SpanRecord, String> {
    let trace_id: TraceId = id(&span.trace_id, "trace_id")?;
    let span_id: SpanId = id(&span.span_id, "span_id")?;
    let parent_span_id = if span.parent_span_id.is_empty() {
        None
    } else {
        Some(id(&span.parent_span_id, "parent_span_id")?)
    };
    if span.events.len() > MAX_EVENTS {
        return Err(format!(
            "span has {} events, the limit is {MAX_EVENTS}",
            span.events.len()
        ));
    }
    if span.links.len() > MAX_LINKS {
        return Err(format!(
            "span has {} links, the limit is {MAX_LINKS}",
            span.links.len()
        ));
    }
    let status = span.status.unwrap_or_default();
    let mut events = Vec::with_capacity(span.events.len());
    for e in span.events {
        events.push(SpanEvent {
            name: e.name,
            time_unix_nanos: e.time_unix_nano,
            attributes: attributes(e.attributes)?,
            dropped_attributes_count: e.dropped_attributes_count,
        });
    }
    let mut links = Vec::with_capacity(span.links.len());
    for l in span.links {
        links.push(SpanLink {
            trace_id: l.trace_id,
            span_id: l.span_id,
            trace_state: l.trace_state,
            attributes: attributes(l.attributes)?,
            dropped_attributes_count: l.dropped_attributes_count,
            flags: l.flags,
        });
    }
    let (operation, raw_name) = cleaned(span.name);
    let end = span.end_time_unix_nano;
    let mut record = SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        service: service.to_string(),
        operation,
        raw_name,
        start_unix_nanos: span.start_time_unix_nano,
        end_unix_nanos: end.max(span.start_time_unix_nano),
        raw_end_unix_nanos: (end < span.start_time_unix_nano).then_some(end),
        status: SpanStatus::from_otlp(status.code),
        status_message: status.message,
        kind: SpanKind::from_otlp(span.kind),
        trace_state: span.trace_state,
        flags: span.flags,
        attributes: attributes(span.attributes)?,
        dropped_attributes_count: span.dropped_attributes_count,
        events,
        dropped_events_count: span.dropped_events_count,
        links,
        dropped_links_count: span.dropped_links_count,
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
        llm: None,
    };
    crate::llm::promote(&mut record);
    Ok(record)
}

fn id<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], String> {
    let arr: [u8; N] = bytes
        .try_into()
        .map_err(|_| format!("{what} must be {N} bytes, got {}", bytes.len()))?;
    if arr.iter().all(|b| *b == 0) {
        return Err(format!("{what} must not be all zeros"));
    }
    Ok(arr)
}

/// Typed attributes, sorted by key and unique (last value wins), within the
/// limits on count and size (sizes are of the key and the value's string form).
pub fn attributes(kvs: Vec<otlp_common::KeyValue>) -> Result<Vec<KeyValue>, String> {
    if kvs.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "{} attributes, the limit is {MAX_ATTRIBUTES}",
            kvs.len()
        ));
    }
    let mut out: Vec<KeyValue> = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if kv.key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            return Err(format!(
                "attribute key of {} bytes exceeds {MAX_ATTRIBUTE_KEY_BYTES}",
                kv.key.len()
            ));
        }
        let kv = key_value(kv);
        let value_bytes = kv.string_form().len();
        if value_bytes > MAX_ATTRIBUTE_VALUE_BYTES {
            return Err(format!(
                "attribute {:?} value of {value_bytes} bytes exceeds {MAX_ATTRIBUTE_VALUE_BYTES}",
                kv.key,
            ));
        }
        out.push(kv);
    }
    Ok(sort_unique(out))
}

/// Metric attributes, still stored as text: the string forms of [`attributes`].
fn text_attributes(kvs: Vec<otlp_common::KeyValue>) -> Result<Vec<(String, String)>, String> {
    Ok(attributes(kvs)?
        .into_iter()
        .map(|kv| {
            let text = kv.string_form().into_owned();
            (kv.key, text)
        })
        .collect())
}

fn key_value(kv: otlp_common::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value.map(any_value),
    }
}

/// An OTLP value as a typed stored value (no information is lost).
pub fn any_value(v: otlp_common::AnyValue) -> AnyValue {
    match v.value {
        None => AnyValue::Empty,
        Some(Value::StringValue(s)) => AnyValue::String(s),
        Some(Value::BoolValue(b)) => AnyValue::Bool(b),
        Some(Value::IntValue(i)) => AnyValue::Int(i),
        Some(Value::DoubleValue(d)) => AnyValue::Double(d),
        Some(Value::BytesValue(b)) => AnyValue::Bytes(b),
        Some(Value::StringValueStrindex(i)) => AnyValue::StrIndex(i),
        Some(Value::ArrayValue(a)) => {
            AnyValue::Array(a.values.into_iter().map(any_value).collect())
        }
        Some(Value::KvlistValue(kv)) => {
            AnyValue::KvList(kv.values.into_iter().map(key_value).collect())
        }
    }
}

pub fn logs(req: ExportLogsServiceRequest) -> Converted<LogRecord> {
    let mut out = Converted::default();
    for rl in req.resource_logs {
        let count = rl.scope_logs.iter().map(|sl| sl.log_records.len()).sum();
        let resource = match resource(rl.resource, rl.schema_url) {
            Ok(r) => Arc::new(r),
            Err(why) => {
                out.reject_all(count, why);
                continue;
            }
        };
        let service = service_name(&resource.attributes);
        for sl in rl.scope_logs {
            let scope = match scope(sl.scope, sl.schema_url) {
                Ok(s) => Arc::new(s),
                Err(why) => {
                    out.reject_all(sl.log_records.len(), why);
                    continue;
                }
            };
            for rec in sl.log_records {
                match log_record(&service, &resource, &scope, rec) {
                    Ok(rec) => out.records.push(rec),
                    Err(why) => out.reject(why),
                }
            }
        }
    }
    out
}

/// A log's trace context is optional: absent or all-zero ids mean none.
fn optional_id<const N: usize>(bytes: &[u8], what: &str) -> Result<Option<[u8; N]>, String> {
    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    id(bytes, what).map(Some)
}

fn log_record(
    service: &str,
    resource: &Arc<Resource>,
    scope: &Arc<Scope>,
    rec: opentelemetry_proto::tonic::logs::v1::LogRecord,
) -> Result<LogRecord, String> {
    let trace_id = optional_id(&rec.trace_id, "trace_id")?;
    let span_id = optional_id(&rec.span_id, "span_id")?;
    let body = rec.body.map(any_value);
    let body_bytes = body.as_ref().map_or(0, |b| b.string_form().len());
    if body_bytes > MAX_LOG_BODY_BYTES {
        return Err(format!(
            "log body of {body_bytes} bytes exceeds {MAX_LOG_BODY_BYTES}"
        ));
    }
    let timestamp = if rec.time_unix_nano != 0 {
        rec.time_unix_nano
    } else {
        rec.observed_time_unix_nano
    };
    let (severity_text, raw_severity_text) = cleaned(rec.severity_text);
    Ok(LogRecord {
        timestamp_unix_nanos: timestamp,
        time_unix_nanos: rec.time_unix_nano,
        observed_unix_nanos: rec.observed_time_unix_nano,
        trace_id,
        span_id,
        severity: Severity::from_number(rec.severity_number),
        severity_number: rec.severity_number,
        severity_text,
        raw_severity_text,
        body,
        body_sha256: None,
        body_value: None,
        service: service.to_string(),
        attributes: attributes(rec.attributes)?,
        dropped_attributes_count: rec.dropped_attributes_count,
        flags: rec.flags,
        event_name: rec.event_name,
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
    })
}

pub fn metrics(req: ExportMetricsServiceRequest) -> Converted<MetricPoint> {
    let mut out = Converted::default();
    for rm in req.resource_metrics {
        let resource_attrs = rm.resource.map(|r| r.attributes).unwrap_or_default();
        let service = metric_service_name(&resource_attrs);
        let instance = metric_instance_id(&resource_attrs);
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                metric_points(&service, instance.as_deref(), m, &mut out);
            }
        }
    }
    out
}

/// The resource's `service.instance.id` (a string), which metric points
/// carry as an attribute: Prometheus names the series' `instance` by it
/// (`prom::naming`), and points keep no other resource attribute.
fn metric_instance_id(resource_attrs: &[otlp_common::KeyValue]) -> Option<String> {
    resource_attrs
        .iter()
        .find(|kv| kv.key == crate::prom::naming::INSTANCE_ATTRIBUTE)
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            },
        )
}

/// The fields every point of one metric shares.
struct PointBase<'a> {
    service: &'a str,
    /// The resource's `service.instance.id`, added to each point's
    /// attributes unless the point has one of its own.
    instance: Option<&'a str>,
    name: String,
    unit: String,
}

impl PointBase<'_> {
    fn attributes(
        &self,
        attrs: Vec<otlp_common::KeyValue>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut out = text_attributes(attrs)?;
        if let Some(instance) = self.instance {
            let key = crate::prom::naming::INSTANCE_ATTRIBUTE;
            if let Err(at) = out.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
                if out.len() < MAX_ATTRIBUTES {
                    out.insert(at, (key.to_string(), instance.to_string()));
                }
            }
        }
        Ok(out)
    }
}

impl PointBase<'_> {
    fn point(
        &self,
        metric_type: MetricType,
        time: u64,
        start: u64,
        value: f64,
        attrs: Vec<otlp_common::KeyValue>,
    ) -> Result<MetricPoint, String> {
        Ok(MetricPoint {
            timestamp_unix_nanos: time,
            start_unix_nanos: start,
            service: self.service.to_string(),
            name: self.name.clone(),
            metric_type,
            value,
            unit: self.unit.clone(),
            attributes: self.attributes(attrs)?,
            temporality: None,
            is_monotonic: None,
            histogram: None,
            quantiles: Vec::new(),
        })
    }
}

fn number_value(v: Option<number_data_point::Value>) -> Result<f64, String> {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => Ok(d),
        Some(number_data_point::Value::AsInt(i)) => Ok(i as f64),
        None => Err("number data point has no value".into()),
    }
}

fn metric_points(
    service: &str,
    instance: Option<&str>,
    m: Metric,
    out: &mut Converted<MetricPoint>,
) {
    if m.name.is_empty() {
        let n = points_in(&m);
        for _ in 0..n.max(1) {
            out.reject("metric has no name".into());
        }
        return;
    }
    let base = PointBase {
        service,
        instance,
        name: clean_name(&m.name),
        unit: clean_name(&m.unit),
    };
    let mut push = |r: Result<MetricPoint, String>| match r {
        Ok(p) => out.records.push(p),
        Err(why) => out.reject(format!("metric {:?}: {why}", base.name)),
    };
    match m.data {
        None => push(Err("metric has no data".into())),
        Some(metric::Data::Gauge(g)) => {
            for p in g.data_points {
                push(number_value(p.value).and_then(|v| {
                    base.point(
                        MetricType::Gauge,
                        p.time_unix_nano,
                        p.start_time_unix_nano,
                        v,
                        p.attributes,
                    )
                }));
            }
        }
        Some(metric::Data::Sum(s)) => {
            let temporality = Temporality::from_otlp(s.aggregation_temporality);
            for p in s.data_points {
                push(number_value(p.value).and_then(|v| {
                    let mut point = base.point(
                        MetricType::Sum,
                        p.time_unix_nano,
                        p.start_time_unix_nano,
                        v,
                        p.attributes,
                    )?;
                    point.temporality = Some(temporality);
                    point.is_monotonic = Some(s.is_monotonic);
                    Ok(point)
                }));
            }
        }
        Some(metric::Data::Histogram(h)) => {
            let temporality = Temporality::from_otlp(h.aggregation_temporality);
            for p in h.data_points {
                push((|| {
                    let hist = explicit_histogram(
                        p.explicit_bounds,
                        p.bucket_counts,
                        p.count,
                        p.sum,
                        p.min,
                        p.max,
                    )?;
                    let mut point = base.point(
                        MetricType::Histogram,
                        p.time_unix_nano,
                        p.start_time_unix_nano,
                        hist.sum.unwrap_or(0.0),
                        p.attributes,
                    )?;
                    point.temporality = Some(temporality);
                    point.histogram = Some(hist);
                    Ok(point)
                })());
            }
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            let temporality = Temporality::from_otlp(h.aggregation_temporality);
            for p in h.data_points {
                push((|| {
                    let hist = exponential_to_explicit(&p)?;
                    let mut point = base.point(
                        MetricType::Histogram,
                        p.time_unix_nano,
                        p.start_time_unix_nano,
                        hist.sum.unwrap_or(0.0),
                        p.attributes,
                    )?;
                    point.temporality = Some(temporality);
                    point.histogram = Some(hist);
                    Ok(point)
                })());
            }
        }
        Some(metric::Data::Summary(s)) => {
            for p in s.data_points {
                push((|| {
                    if p.quantile_values.len() > MAX_QUANTILES {
                        return Err(format!(
                            "{} quantiles, the limit is {MAX_QUANTILES}",
                            p.quantile_values.len()
                        ));
                    }
                    let mut point = base.point(
                        MetricType::Summary,
                        p.time_unix_nano,
                        p.start_time_unix_nano,
                        p.sum,
                        p.attributes,
                    )?;
                    point.histogram = Some(HistogramData {
                        bounds: Vec::new(),
                        counts: Vec::new(),
                        count: p.count,
                        sum: Some(p.sum),
                        min: None,
                        max: None,
                    });
                    point.quantiles = p
                        .quantile_values
                        .iter()
                        .map(|q| (q.quantile, q.value))
                        .collect();
                    Ok(point)
                })());
            }
        }
    }
}

fn points_in(m: &Metric) -> usize {
    match &m.data {
        None => 0,
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
    }
}

fn explicit_histogram(
    bounds: Vec<f64>,
    counts: Vec<u64>,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
) -> Result<HistogramData, String> {
    if counts.len() > MAX_HISTOGRAM_BUCKETS {
        return Err(format!(
            "{} buckets, the limit is {MAX_HISTOGRAM_BUCKETS}",
            counts.len()
        ));
    }
    // Both empty is a histogram without a distribution (count and sum only).
    if !(counts.is_empty() && bounds.is_empty()) && counts.len() != bounds.len() + 1 {
        return Err(format!(
            "{} bucket counts for {} bounds; expected one more count than bounds",
            counts.len(),
            bounds.len()
        ));
    }
    if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err("explicit bounds must be finite and strictly ascending".into());
    }
    Ok(HistogramData {
        bounds,
        counts,
        count,
        sum,
        min,
        max,
    })
}

/// Re-expresses base-2 exponential buckets as explicit upper bounds.
/// Bucket `i` at scale `s` holds values in `(base^i, base^(i+1)]` with
/// `base = 2^(2^-s)`; negative buckets mirror that, and the zero bucket
/// ends at the zero threshold. A final empty bucket stands for "above the
/// last bound", so no boundary is lost.
fn exponential_to_explicit(
    p: &opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint,
) -> Result<HistogramData, String> {
    if !(-10..=20).contains(&p.scale) {
        return Err(format!(
            "exponential histogram scale {} out of range",
            p.scale
        ));
    }
    let empty = Default::default();
    let pos = p.positive.as_ref().unwrap_or(&empty);
    let neg = p.negative.as_ref().unwrap_or(&empty);
    let total = pos.bucket_counts.len() + neg.bucket_counts.len() + 2;
    if total > MAX_HISTOGRAM_BUCKETS {
        return Err(format!(
            "{total} buckets after conversion, the limit is {MAX_HISTOGRAM_BUCKETS}"
        ));
    }
    let step = 2f64.powi(-p.scale);
    let bound = |i: i64| 2f64.powf(i as f64 * step);
    let mut bounds = Vec::with_capacity(total);
    let mut counts = Vec::with_capacity(total);
    // Negative buckets, most negative first: bucket i covers [-base^(i+1), -base^i).
    for (k, c) in neg.bucket_counts.iter().enumerate().rev() {
        let i = neg.offset as i64 + k as i64;
        bounds.push(-bound(i));
        counts.push(*c);
    }
    if p.zero_count > 0 || !neg.bucket_counts.is_empty() {
        bounds.push(p.zero_threshold.abs());
        counts.push(p.zero_count);
    }
    for (k, c) in pos.bucket_counts.iter().enumerate() {
        let i = pos.offset as i64 + k as i64;
        bounds.push(bound(i + 1));
        counts.push(*c);
    }
    if bounds.is_empty() {
        return explicit_histogram(Vec::new(), Vec::new(), p.count, p.sum, p.min, p.max);
    }
    counts.push(0);
    // Collapse bounds that rounding made equal, keeping the counts.
    let mut out_bounds: Vec<f64> = Vec::with_capacity(bounds.len());
    let mut out_counts: Vec<u64> = Vec::with_capacity(counts.len());
    for (b, c) in bounds.into_iter().zip(counts.iter().copied()) {
        match out_bounds.last() {
            Some(last) if b <= *last => *out_counts.last_mut().unwrap() += c,
            _ => {
                out_bounds.push(b);
                out_counts.push(c);
            }
        }
    }
    out_counts.push(*counts.last().unwrap());
    explicit_histogram(out_bounds, out_counts, p.count, p.sum, p.min, p.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;

    /// The flattening records were stored with before they kept typed
    /// values, verbatim: the REST API must keep showing exactly this text.
    mod before_lossless {
        use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};

        const MAX_VALUE_DEPTH: usize = 16;

        pub fn flatten(v: &AnyValue, depth: usize) -> String {
            match &v.value {
                None => String::new(),
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(Value::BytesValue(b)) => tael_consensus::hex(b),
                Some(Value::StringValueStrindex(i)) => i.to_string(),
                Some(_) => to_json(v, depth).to_string(),
            }
        }

        fn to_json(v: &AnyValue, depth: usize) -> serde_json::Value {
            use serde_json::Value as J;
            if depth >= MAX_VALUE_DEPTH {
                return J::String("<nested too deep>".into());
            }
            match &v.value {
                Some(Value::ArrayValue(a)) => {
                    J::Array(a.values.iter().map(|x| to_json(x, depth + 1)).collect())
                }
                Some(Value::KvlistValue(kv)) => J::Object(
                    kv.values
                        .iter()
                        .map(|p| {
                            (
                                p.key.clone(),
                                p.value.as_ref().map_or(J::Null, |x| to_json(x, depth + 1)),
                            )
                        })
                        .collect(),
                ),
                Some(Value::BoolValue(b)) => J::Bool(*b),
                Some(Value::IntValue(i)) => J::from(*i),
                Some(Value::DoubleValue(d)) => {
                    serde_json::Number::from_f64(*d).map_or(J::Null, J::Number)
                }
                _ => J::String(flatten(v, depth + 1)),
            }
        }
    }

    #[test]
    fn the_string_form_is_the_text_stored_before_values_were_typed() {
        use opentelemetry_proto::tonic::common::v1::{
            AnyValue as PAnyValue, ArrayValue, KeyValue as PKeyValue, KeyValueList,
        };
        let v = |x: Value| PAnyValue { value: Some(x) };
        let kv = |k: &str, x: Option<PAnyValue>| PKeyValue {
            key: k.into(),
            value: x,
            key_strindex: 0,
        };
        let mut deep = v(Value::StringValue("bottom".into()));
        for i in 0..20 {
            deep = if i % 2 == 0 {
                v(Value::ArrayValue(ArrayValue {
                    values: vec![deep, v(Value::IntValue(i))],
                }))
            } else {
                v(Value::KvlistValue(KeyValueList {
                    values: vec![kv("k", Some(deep)), kv("n", None)],
                }))
            };
        }
        let mut values = vec![
            PAnyValue { value: None },
            v(Value::StringValue("text \"quoted\" ✓".into())),
            v(Value::BoolValue(false)),
            v(Value::IntValue(i64::MAX)),
            v(Value::DoubleValue(-0.0)),
            v(Value::DoubleValue(1e300)),
            v(Value::DoubleValue(f64::NAN)),
            v(Value::DoubleValue(f64::NEG_INFINITY)),
            v(Value::DoubleValue(0.1 + 0.2)),
            v(Value::BytesValue(vec![])),
            v(Value::BytesValue(vec![0xde, 0xad])),
            v(Value::StringValueStrindex(-3)),
            v(Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("b", Some(v(Value::DoubleValue(2.0)))),
                    kv("a", Some(PAnyValue { value: None })),
                    kv("b", Some(v(Value::BytesValue(vec![1])))),
                    kv("c", None),
                ],
            })),
            deep,
        ];
        values.push(v(Value::ArrayValue(ArrayValue {
            values: values.clone(),
        })));
        for x in values {
            let expected = before_lossless::flatten(&x, 0);
            assert_eq!(any_value(x.clone()).string_form(), expected, "{x:?}");
        }
    }

    #[test]
    fn severity_ranges() {
        assert_eq!(Severity::from_number(0), Severity::Unspecified);
        assert_eq!(Severity::from_number(1), Severity::Trace);
        assert_eq!(Severity::from_number(9), Severity::Info);
        assert_eq!(Severity::from_number(13), Severity::Warn);
        assert_eq!(Severity::from_number(17), Severity::Error);
        assert_eq!(Severity::from_number(24), Severity::Fatal);
        assert_eq!(Severity::from_number(25), Severity::Unspecified);
    }

    #[test]
    fn exponential_buckets_become_explicit_bounds() {
        let p = ExponentialHistogramDataPoint {
            scale: 0,
            count: 6,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![2, 3],
            }),
            ..Default::default()
        };
        let h = exponential_to_explicit(&p).unwrap();
        // zero bucket up to 0, then (1,2], (2,4], then the overflow bucket.
        assert_eq!(h.bounds, vec![0.0, 2.0, 4.0]);
        assert_eq!(h.counts, vec![1, 2, 3, 0]);
        assert_eq!(h.count, 6);

        let p = ExponentialHistogramDataPoint {
            scale: 1,
            count: 2,
            negative: Some(Buckets {
                offset: 1,
                bucket_counts: vec![1],
            }),
            positive: Some(Buckets {
                offset: -1,
                bucket_counts: vec![1],
            }),
            ..Default::default()
        };
        let h = exponential_to_explicit(&p).unwrap();
        let r2 = 2f64.sqrt();
        assert_eq!(h.bounds.len(), 3);
        assert!((h.bounds[0] + r2).abs() < 1e-12);
        assert_eq!(h.bounds[1], 0.0);
        assert!((h.bounds[2] - 1.0).abs() < 1e-12);
        assert_eq!(h.counts, vec![1, 0, 1, 0]);
    }

    #[test]
    fn bad_explicit_histograms_are_rejected() {
        assert!(explicit_histogram(vec![1.0], vec![1], 1, None, None, None).is_err());
        assert!(explicit_histogram(vec![2.0, 1.0], vec![1, 1, 1], 3, None, None, None).is_err());
        assert!(explicit_histogram(vec![f64::NAN], vec![1, 1], 2, None, None, None).is_err());
        assert!(explicit_histogram(vec![], vec![], 5, Some(1.0), None, None).is_ok());
    }
}
