//! Grafana's Loki data source (`http://NODE:7701`): LogQL log and metric
//! queries ([`crate::logql`]), label and series discovery and index stats,
//! on Loki's paths and in Loki's shapes. A thin adapter: it parses the
//! request, reads through the query service (consistency levels and keys
//! apply as for every REST read) and shapes the answer.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value as J};

use super::loki_json::{
    envelope, list_envelope, matrix_json, number, secs, stats, streams_json, vector_json, Envelope,
    CATEGORIZE_LABELS, ENCODING_FLAGS,
};
use super::loki_params::{
    bad, check_entries, check_length, direction_param, duration_param, limit_param, request_params,
    time_param, time_range, Direction, LokiError, NANOS_PER_SEC,
};
use super::{answer, mark_served, Params, RestState};
use crate::cluster::{Consistency, ReadBarrier};
use crate::logql::ast::{Expr, LogExpr, MetricExpr};
use crate::logql::eval::{
    evaluate, volumes, EvalError, Processed, RangeCollector, Series, Steps, StreamSet,
    StreamsCollector, Value, VolumeBy,
};
use crate::logql::labels::{severity_of_level, Labels, LEVEL, SERVICE_NAME};
use crate::logql::{parse, ParseError};
use crate::model::now_unix_nanos;
use crate::query::{LogWalk, Order, QueryService, Read, SpanScan, Text};

/// Records one query may examine before it answers with what it found.
const MAX_SCANNED: usize = 2_000_000;
/// Window of a log or metric query without `start` (Loki's default).
const DEFAULT_QUERY_SINCE_NANOS: u64 = 3600 * NANOS_PER_SEC;
/// Window of the label and series endpoints without `start` (Loki's).
const DEFAULT_LABELS_SINCE_NANOS: u64 = DEFAULT_QUERY_SINCE_NANOS;
/// Loki answers a step of (end - start) / 250 when none is given.
const DEFAULT_POINTS: u64 = 250;
/// The Loki release whose HTTP API this one follows.
pub const LOKI_API_VERSION: &str = "3.1.0";

pub fn router() -> Router<RestState> {
    Router::new()
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/query", get(query_instant).post(query_instant))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/index/stats", get(index_stats).post(index_stats))
        .route("/api/v1/index/volume", get(index_volume).post(index_volume))
        .route("/api/v1/status/buildinfo", get(buildinfo))
}

async fn buildinfo() -> Json<J> {
    Json(json!({
        "version": LOKI_API_VERSION,
        "revision": concat!("tael-raft ", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

fn parse_query(p: &Params, name: &str) -> Result<Expr, LokiError> {
    let q = p
        .one(name)?
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| bad(format!("parse error : the {name} parameter is required")))?;
    parse(q).map_err(|e: ParseError| bad(e.to_string()))
}

fn eval_error(e: EvalError) -> LokiError {
    bad(e.to_string())
}

/// An answer in Loki's envelope, its fields in their order (see
/// [`Envelope`]), marked like every REST answer.
fn respond(barrier: ReadBarrier, doc: Envelope) -> Response {
    let mut resp = Json(doc).into_response();
    mark_served(&mut resp, barrier);
    resp
}

/// The index a scan for `l` walks: the service or level its selector
/// requires, else time.
fn walk_for(l: &LogExpr) -> LogWalk<'_> {
    if let Some(s) = l.equal_value(SERVICE_NAME) {
        return LogWalk::Service(s);
    }
    match l.equal_value(LEVEL).and_then(severity_of_level) {
        Some(sev) => LogWalk::Severity(sev),
        None => LogWalk::Time,
    }
}

fn categorize(headers: &HeaderMap) -> bool {
    headers
        .get_all(ENCODING_FLAGS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == CATEGORIZE_LABELS)
}

async fn query_range(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let started = Instant::now();
    let p = request_params(raw.as_deref(), &headers, &body)?;
    let consistency = p.consistency()?;
    let expr = parse_query(&p, "query")?;
    let (start, end) = time_range(&p, now_unix_nanos(), DEFAULT_QUERY_SINCE_NANOS)?;
    let limit = limit_param(&p)?;
    let direction = direction_param(&p)?;
    let step = match duration_param(&p, "step")? {
        Some(s) => s,
        None => ((end - start) / DEFAULT_POINTS / NANOS_PER_SEC).max(1) * NANOS_PER_SEC,
    };
    match expr {
        Expr::Log(l) => {
            check_entries(limit)?;
            check_length(start, end, 0)?;
            let q = LogRequest {
                expr: l,
                window: (start, end),
                limit,
                direction,
                categorize: categorize(&headers),
                started,
            };
            log_query(&queries, consistency, q).await
        }
        Expr::Metric(m) => {
            let max_range = m.ranges().iter().map(|r| r.2).max().unwrap_or(0);
            check_length(start, end, max_range)?;
            let steps = Steps::aligned(start, end, step).map_err(eval_error)?;
            let (value, scan, processed) = metric_query(&queries, consistency, m, steps).await?;
            let result = match value.value {
                Value::Scalar(s) => matrix_json(&[Series {
                    labels: Labels::new(),
                    points: steps.iter().map(|t| (t, s)).collect(),
                }]),
                Value::Vector(v) => matrix_json(&v),
            };
            let entries = result.as_array().map_or(0, Vec::len);
            Ok(respond(
                value.barrier,
                envelope(
                    "matrix",
                    result,
                    stats(processed, entries, started),
                    scan.truncated,
                ),
            ))
        }
    }
}

async fn query_instant(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let started = Instant::now();
    let p = request_params(raw.as_deref(), &headers, &body)?;
    let consistency = p.consistency()?;
    let expr = parse_query(&p, "query")?;
    let at = time_param(&p, "time")?.unwrap_or_else(now_unix_nanos);
    limit_param(&p)?;
    direction_param(&p)?;
    let Expr::Metric(m) = expr else {
        return Err(bad(
            "log queries are not supported as an instant query type, please change your query to a range query type",
        ));
    };
    let max_range = m.ranges().iter().map(|r| r.2).max().unwrap_or(0);
    check_length(at, at, max_range)?;
    let (read, scan, processed) =
        metric_query(&queries, consistency, m, Steps::instant(at)).await?;
    let (kind, result) = match read.value {
        Value::Scalar(s) => ("scalar", json!([secs(at), number(s)])),
        Value::Vector(v) => ("vector", vector_json(&v)),
    };
    Ok(respond(
        read.barrier,
        envelope(kind, result, stats(processed, 1, started), scan.truncated),
    ))
}

/// A log query: entries of `window` (`[start, end)`), `limit` of them at
/// most, in `direction`'s order.
struct LogRequest {
    expr: LogExpr,
    window: (u64, u64),
    limit: usize,
    direction: Direction,
    /// Structured metadata and parsed labels apart from the stream's.
    categorize: bool,
    started: Instant,
}

async fn log_query(
    queries: &QueryService,
    consistency: Consistency,
    q: LogRequest,
) -> Result<Response, LokiError> {
    let LogRequest {
        expr,
        window: (start, end),
        limit,
        direction,
        categorize,
        started,
    } = q;
    let order = match direction {
        Direction::Backward => Order::NewestFirst,
        Direction::Forward => Order::OldestFirst,
    };
    let read = queries
        .read(consistency, Text::NotUsed, move |v| {
            if end == start {
                return Ok((Vec::new(), SpanScan::default(), Processed::default()));
            }
            let mut c = StreamsCollector::new(&expr, limit, categorize);
            let scan = v.visit_logs(
                (start, end - 1),
                walk_for(&expr),
                order,
                MAX_SCANNED,
                |rec| Ok(c.offer(&rec)),
            )?;
            let processed = c.processed;
            Ok((c.finish(), scan, processed))
        })
        .await?;
    let (streams, scan, processed) = read.value;
    let entries: usize = streams.iter().map(|s| s.entries.len()).sum();
    let doc = envelope(
        "streams",
        streams_json(&streams, categorize),
        stats(processed, entries, started),
        scan.truncated,
    );
    let doc = if categorize { doc.categorized() } else { doc };
    Ok(respond(read.barrier, doc))
}

/// A metric query's value at `steps`, from one scan oldest first over the
/// window every range aggregation needs.
async fn metric_query(
    queries: &QueryService,
    consistency: Consistency,
    m: MetricExpr,
    steps: Steps,
) -> Result<(Read<Value>, SpanScan, Processed), LokiError> {
    let read = queries
        .read(consistency, Text::NotUsed, move |v| {
            let ranges = m.ranges();
            let mut collectors: Vec<RangeCollector> = ranges
                .iter()
                .map(|(l, _, _)| RangeCollector::new(l))
                .collect();
            let mut scan = SpanScan::default();
            let mut failed = None;
            if let Some(max_range) = ranges.iter().map(|r| r.2).max() {
                // A point at t counts entries in (t - range, t].
                let from = (steps.start + 1).saturating_sub(max_range);
                let walk = match ranges.as_slice() {
                    [(only, _, _)] => walk_for(only),
                    _ => LogWalk::Time,
                };
                scan = v.visit_logs(
                    (from, steps.end),
                    walk,
                    Order::OldestFirst,
                    MAX_SCANNED,
                    |rec| {
                        for c in &mut collectors {
                            if let Err(e) = c.offer(&rec) {
                                failed = Some(e);
                                return Ok(ControlFlow::Break(()));
                            }
                        }
                        Ok(ControlFlow::Continue(()))
                    },
                )?;
            }
            let processed = collectors.first().map(|c| c.processed).unwrap_or_default();
            let value = match failed {
                Some(e) => Err(e),
                None => evaluate(&m, steps, collectors),
            };
            Ok((value, scan, processed))
        })
        .await?;
    let Read { barrier, value } = read;
    let (value, scan, processed) = value;
    let value = value.map_err(eval_error)?;
    Ok((Read { barrier, value }, scan, processed))
}

/// The streams of `[start, end]` some selector matches (every stream
/// without selectors), and whether there were more than could be gathered.
async fn stream_set(
    queries: &QueryService,
    p: &Params,
    selectors: Vec<LogExpr>,
) -> Result<(ReadBarrier, StreamSet), LokiError> {
    let consistency = p.consistency()?;
    let (start, end) = time_range(p, now_unix_nanos(), DEFAULT_LABELS_SINCE_NANOS)?;
    check_length(start, end, 0)?;
    let read = queries
        .read(consistency, Text::NotUsed, move |v| {
            let walk_hint = match selectors.as_slice() {
                [only] => Some(only.clone()),
                _ => None,
            };
            let walk = walk_hint.as_ref().map_or(LogWalk::Time, walk_for);
            let mut set = StreamSet::new(selectors);
            let scan =
                v.visit_logs((start, end), walk, Order::NewestFirst, MAX_SCANNED, |rec| {
                    Ok(set.offer(&rec))
                })?;
            set.truncated |= scan.truncated;
            Ok(set)
        })
        .await?;
    Ok((read.barrier, read.value))
}

/// Selectors from `name` parameters: stream selectors without stages.
fn selectors(p: &Params, name: &str) -> Result<Vec<LogExpr>, LokiError> {
    p.all(name)
        .filter(|q| !q.trim().is_empty())
        .map(|q| match parse(q).map_err(|e| bad(e.to_string()))? {
            Expr::Log(l) => Ok(l),
            Expr::Metric(_) => Err(bad(format!(
                "invalid parameter {name:?}: expected a stream selector, not a metric query"
            ))),
        })
        .collect()
}

async fn labels(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let p = request_params(raw.as_deref(), &headers, &body)?;
    let sel = selectors(&p, "query")?;
    let (barrier, set) = stream_set(&queries, &p, sel).await?;
    let names: std::collections::BTreeSet<&String> =
        set.streams.keys().flat_map(|l| l.keys()).collect();
    Ok(answer(barrier, list_envelope(json!(names), set.truncated)))
}

async fn label_values(
    State(queries): State<Arc<QueryService>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, LokiError> {
    let p = Params::parse(raw.as_deref())?;
    let sel = selectors(&p, "query")?;
    let (barrier, set) = stream_set(&queries, &p, sel).await?;
    let values: std::collections::BTreeSet<&String> =
        set.streams.keys().filter_map(|l| l.get(&name)).collect();
    Ok(answer(barrier, list_envelope(json!(values), set.truncated)))
}

async fn series(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let p = request_params(raw.as_deref(), &headers, &body)?;
    let sel = selectors(&p, "match[]")?;
    if sel.is_empty() {
        return Err(bad("at least one match[] argument required"));
    }
    let (barrier, set) = stream_set(&queries, &p, sel).await?;
    let list: Vec<&Labels> = set.streams.keys().collect();
    Ok(answer(barrier, list_envelope(json!(list), set.truncated)))
}

async fn index_stats(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let p = request_params(raw.as_deref(), &headers, &body)?;
    let sel = selectors(&p, "query")?;
    if sel.is_empty() {
        return Err(bad("parse error : the query parameter is required"));
    }
    let (barrier, set) = stream_set(&queries, &p, sel).await?;
    let entries: u64 = set.streams.values().map(|s| s.entries).sum();
    let bytes: u64 = set.streams.values().map(|s| s.bytes).sum();
    let streams = set.streams.len();
    // The hot tier has no chunks: one per stream is what Grafana's
    // estimate needs.
    Ok(answer(
        barrier,
        json!({ "streams": streams, "chunks": streams, "entries": entries, "bytes": bytes }),
    ))
}

/// Loki's `index/volume`: the bytes of the selected streams grouped by
/// the labels the selector names (or `targetLabels`), largest first; with
/// `aggregateBy=labels`, by label name. What Grafana's log browsing apps
/// use to rank services.
async fn index_volume(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let started = Instant::now();
    let p = request_params(raw.as_deref(), &headers, &body)?;
    let sel = selectors(&p, "query")?;
    let [selector] = sel.as_slice() else {
        return Err(bad(
            "parse error : the query parameter must be one stream selector",
        ));
    };
    let by = match p.one("aggregateBy")?.unwrap_or("series") {
        "series" | "" => VolumeBy::Series,
        "labels" => VolumeBy::Labels,
        _ => return Err(bad("invalid aggregation option")),
    };
    let targets: Vec<String> = p
        .one("targetLabels")?
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let names = if targets.is_empty() && by == VolumeBy::Series {
        selector.selector.iter().map(|m| m.name.clone()).collect()
    } else {
        targets
    };
    let limit = limit_param(&p)?;
    let (_, end) = time_range(&p, now_unix_nanos(), DEFAULT_LABELS_SINCE_NANOS)?;
    let (barrier, set) = stream_set(&queries, &p, sel.clone()).await?;
    let result: Vec<J> = volumes(&set.streams, by, &names, limit)
        .into_iter()
        .map(|(labels, bytes)| json!({ "metric": labels, "value": [secs(end), bytes.to_string()] }))
        .collect();
    let doc = envelope(
        "vector",
        J::Array(result),
        stats(Processed::default(), 0, started),
        set.truncated,
    );
    Ok(respond(barrier, doc))
}
