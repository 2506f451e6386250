//! Label and series discovery for Grafana's Prometheus data source:
//! `/api/v1/labels`, `/api/v1/label/{name}/values`, `/api/v1/series` (each
//! narrowed by `match[]` selectors and `start`/`end`) and `/api/v1/metadata`.
//!
//! Without `start`, discovery looks back [`DEFAULT_DISCOVERY_WINDOW_MS`]
//! from `end` (default now): the store has no series index, so discovery
//! reads the window's points (bounded by [`SelectLimits`]).

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value as Json};

use super::prometheus::{consistency, now_ms, params, success, time_param, PromError};
use super::{Params, RestState};
use crate::model::MetricType;
use crate::prom::naming;
use crate::prom::select::{select, SelectError, SelectLimits};
use crate::prom::selector::{self, Everything, Matchers};
use crate::prom::series::{self, LabelSet};
use crate::query::{Text, View};

/// How far back discovery looks when the request gives no `start`.
pub const DEFAULT_DISCOVERY_WINDOW_MS: i64 = 6 * 3600 * 1000;
/// Most metric families `/api/v1/metadata` answers with.
const MAX_METADATA_FAMILIES: usize = 10_000;

fn selectors(p: &Params) -> Result<Vec<Matchers>, PromError> {
    p.all("match[]")
        .map(|s| selector::parse(s).map_err(PromError::bad_data))
        .collect()
}

fn window(p: &Params) -> Result<(i64, i64), PromError> {
    let end = time_param(p, "end", Some(now_ms()))?;
    let start = time_param(
        p,
        "start",
        Some(end.saturating_sub(DEFAULT_DISCOVERY_WINDOW_MS)),
    )?;
    if end < start {
        return Err(PromError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

/// The label sets of every series the selectors (or, with none, every
/// series) select in the window.
fn discover(
    view: &View,
    selectors: &[Matchers],
    window: (i64, i64),
) -> Result<BTreeSet<LabelSet>, SelectError> {
    let limits = SelectLimits::default();
    let mut out = BTreeSet::new();
    if selectors.is_empty() {
        out.extend(
            select(view, &Everything, window, limits)?
                .into_iter()
                .map(|s| s.labels),
        );
    }
    for sel in selectors {
        out.extend(
            select(view, sel, window, limits)?
                .into_iter()
                .map(|s| s.labels),
        );
    }
    Ok(out)
}

/// Runs [`discover`] through the query service and shapes its answer.
async fn discovery(
    s: &RestState,
    p: &Params,
    shape: impl FnOnce(BTreeSet<LabelSet>) -> Json + Send + 'static,
) -> Result<Response, PromError> {
    let sels = selectors(p)?;
    let window = window(p)?;
    let read = s
        .query
        .read(consistency(p)?, Text::NotUsed, move |view| {
            Ok(discover(view, &sels, window))
        })
        .await?;
    let crate::query::Read { barrier, value } = read;
    let found = value?;
    Ok(success(
        crate::query::Read {
            barrier,
            value: found,
        },
        shape,
    ))
}

pub async fn labels(
    State(s): State<RestState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PromError> {
    let p = params(raw.as_deref(), &headers, &body)?;
    discovery(&s, &p, |found| {
        let names: BTreeSet<&str> = found
            .iter()
            .flat_map(|l| l.iter().map(|(k, _)| k.as_str()))
            .collect();
        json!(names)
    })
    .await
}

pub async fn label_values(
    State(s): State<RestState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PromError> {
    let p = params(raw.as_deref(), &HeaderMap::new(), &[])?;
    discovery(&s, &p, move |found| {
        let values: BTreeSet<&str> = found
            .iter()
            .map(|l| selector::label_value(l, &name))
            .filter(|v| !v.is_empty())
            .collect();
        json!(values)
    })
    .await
}

pub async fn series(
    State(s): State<RestState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PromError> {
    let p = params(raw.as_deref(), &headers, &body)?;
    if p.all("match[]").next().is_none() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    discovery(&s, &p, |found| {
        let list: Vec<Json> = found
            .into_iter()
            .map(|l| {
                Json::Object(
                    l.into_iter()
                        .map(|(k, v)| (k, Json::String(v)))
                        .collect::<Map<_, _>>(),
                )
            })
            .collect();
        Json::Array(list)
    })
    .await
}

/// The Prometheus metric type of a stored point's family.
fn family_type(p: &crate::model::MetricPoint) -> &'static str {
    match p.metric_type {
        MetricType::Unknown => "unknown",
        MetricType::Sum if naming::is_counter(p) => "counter",
        MetricType::Gauge | MetricType::Sum => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
    }
}

/// `/api/v1/metadata`: the families of the last [`DEFAULT_DISCOVERY_WINDOW_MS`],
/// typed by their newest point (remote-written families are `unknown`:
/// remote write 1.0 samples carry no type).
pub async fn metadata(
    State(s): State<RestState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PromError> {
    let p = params(raw.as_deref(), &HeaderMap::new(), &[])?;
    let only = p.one("metric")?.map(str::to_string);
    let limit = match p.one("limit")? {
        None | Some("") => usize::MAX,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => n as usize,
            Ok(_) => usize::MAX,
            Err(_) => return Err(PromError::bad_data(format!("invalid limit {l:?}"))),
        },
    };
    let end = now_ms();
    let window = (
        u64::try_from(end - DEFAULT_DISCOVERY_WINDOW_MS).unwrap_or(0) * 1_000_000,
        u64::try_from(end).unwrap_or(0) * 1_000_000,
    );
    let read = s
        .query
        .read(consistency(&p)?, Text::NotUsed, move |view| {
            let mut families = BTreeMap::new();
            for stored in view.metric_names(window, MAX_METADATA_FAMILIES)? {
                let newest = view.metric_points_by_name(&stored, window, 1)?;
                let Some(point) = newest.records.first() else {
                    continue;
                };
                let family = if series::is_verbatim(point) {
                    point.name.clone()
                } else {
                    naming::metric_name(point)
                };
                families.insert(family, family_type(point));
            }
            Ok(families)
        })
        .await?;
    Ok(success(read, move |families| {
        let data: Map<String, Json> = families
            .into_iter()
            .filter(|(name, _)| only.as_ref().is_none_or(|o| o == name))
            .take(limit)
            .map(|(name, t)| (name, json!([{ "type": t, "help": "", "unit": "" }])))
            .collect();
        Json::Object(data)
    }))
}
