//! Tag discovery for Grafana's TraceQL editor: tag names by scope and the
//! values of one tag, v2 (scoped, typed) and v1 (flat) forms.
//!
//! Without a filter (`q` absent, `{}` or not parsing yet), answers come
//! from the hot store's tag index: every name and value ever stored, of
//! all time (`start`/`end` do not narrow them). The span names of one
//! service (`name` values under `{ resource.service.name = "x" }`) come
//! from the index too. Any other filter needs the spans themselves: the
//! call then scans the newest spans of the window, at most
//! [`MAX_SCANNED_SPANS`], and so reports the tags of recent data.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::tempo_search::window;
use super::{answer_read, ApiError, Params};
use crate::model::{AnyValue, SpanRecord};
use crate::query::{QueryService, SpanWalk, StoreResult, TagScope, Text, View};
use crate::state::hot::intrinsic;
use crate::traceql::ast::{CmpOp, Expr, Field, Intrinsic, Literal, Scope, SetExpr};
use crate::traceql::parser::parse_field;

/// Spans one tag call may scan.
pub const MAX_SCANNED_SPANS: usize = 50_000;
/// Most names per scope, and most values of one tag, in an answer.
pub const MAX_NAMES: usize = 1_000;
pub const MAX_VALUES: usize = 1_000;

/// The intrinsics this server evaluates, in every spelling it accepts.
const INTRINSICS: &[&str] = &[
    "duration",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:rootName",
    "trace:rootService",
    "traceDuration",
];
const STATUSES: &[&str] = &["error", "ok", "unset"];
const KINDS: &[&str] = &[
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

/// Visits the newest spans of the request's window that pass the optional
/// TraceQL filter in `q` (ignored when it does not parse: the editor sends
/// the query being typed).
fn scan(
    v: &View,
    window: (u64, u64),
    filter: Option<&crate::traceql::Query>,
    mut f: impl FnMut(&SpanRecord) -> bool,
) -> StoreResult<()> {
    // A filter on trace-level values cannot judge a span alone: it keeps all.
    let filter = filter.filter(|q| !q.uses_trace_facts());
    v.visit_spans(window, SpanWalk::Time, MAX_SCANNED_SPANS, |span| {
        let keep = filter.is_none_or(|q| q.span_passes_a_filter(&span));
        Ok(if keep && !f(&span) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    Ok(())
}

/// The TraceQL filter in `q`; `None` when there is none, it does not
/// parse, or it keeps every span (`{}`): then the tag index answers.
fn filter_param(p: &Params) -> Result<Option<crate::traceql::Query>, ApiError> {
    Ok(p.one("q")?
        .filter(|q| q.len() <= super::tempo_search::MAX_QUERY_BYTES)
        .and_then(|q| crate::traceql::parse(q).ok())
        .filter(|q| !keeps_everything(q)))
}

fn keeps_everything(q: &crate::traceql::Query) -> bool {
    q.stages.is_empty() && matches!(q.sets, SetExpr::Filter(Expr::Static(true)))
}

/// `x` when the filter is exactly `{ resource.service.name = "x" }` (or
/// `.service.name`): the editor's filter once a service is picked.
fn only_service(q: &crate::traceql::Query) -> Option<&str> {
    let SetExpr::Filter(Expr::Cmp(c)) = &q.sets else {
        return None;
    };
    match (&c.field, c.op, &c.value) {
        (Field::Attribute { scope, name }, CmpOp::Eq, Literal::Str(service))
            if q.stages.is_empty()
                && name == "service.name"
                && matches!(scope, Scope::Resource | Scope::Any) =>
        {
            Some(service)
        }
        _ => None,
    }
}

#[derive(Default)]
struct TagNames {
    span: BTreeSet<String>,
    resource: BTreeSet<String>,
}

impl TagNames {
    /// Adds the span's keys; false once both scopes are full.
    fn add(&mut self, s: &SpanRecord) -> bool {
        for (set, attrs) in [
            (&mut self.span, &s.attributes),
            (&mut self.resource, &s.resource.attributes),
        ] {
            for kv in attrs {
                if set.len() >= MAX_NAMES {
                    break;
                }
                set.insert(kv.key.clone());
            }
        }
        self.span.len() < MAX_NAMES || self.resource.len() < MAX_NAMES
    }
}

async fn tag_names(
    queries: &QueryService,
    p: &Params,
) -> Result<crate::query::Read<TagNames>, ApiError> {
    let window = window(p)?;
    let filter = filter_param(p)?;
    Ok(queries
        .read(p.consistency()?, Text::NotUsed, move |v| {
            if filter.is_none() {
                return Ok(TagNames {
                    span: v
                        .tag_names(TagScope::Span, MAX_NAMES)?
                        .into_iter()
                        .collect(),
                    resource: v
                        .tag_names(TagScope::Resource, MAX_NAMES)?
                        .into_iter()
                        .collect(),
                });
            }
            let mut names = TagNames::default();
            scan(v, window, filter.as_ref(), |s| names.add(s))?;
            Ok(names)
        })
        .await?)
}

/// `GET /api/v2/search/tags?scope=resource|span|intrinsic`.
pub async fn tags_v2(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let scope = match p.one("scope")? {
        None | Some("") | Some("all") => None,
        Some(s @ ("span" | "resource" | "intrinsic")) => Some(s.to_string()),
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "scope must be span, resource, intrinsic or all, not {s:?}"
            )))
        }
    };
    let read = tag_names(&queries, &p).await?;
    Ok(answer_read(read, |names| {
        let mut scopes = Vec::new();
        let wanted = |s: &str| scope.as_deref().is_none_or(|w| w == s);
        if wanted("span") {
            scopes.push(json!({ "name": "span", "tags": names.span }));
        }
        if wanted("resource") {
            scopes.push(json!({ "name": "resource", "tags": names.resource }));
        }
        if wanted("intrinsic") {
            scopes.push(json!({ "name": "intrinsic", "tags": INTRINSICS }));
        }
        json!({ "scopes": scopes })
    }))
}

/// `GET /api/search/tags`: span and resource tag names together.
pub async fn tags_v1(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let read = tag_names(&queries, &p).await?;
    Ok(answer_read(read, |names| {
        let all: BTreeSet<String> = names.span.into_iter().chain(names.resource).collect();
        json!({ "tagNames": all })
    }))
}

/// A value's type as Tempo names it, for the values it offers.
fn value_type(v: &AnyValue) -> Option<&'static str> {
    Some(match v {
        AnyValue::String(_) => "string",
        AnyValue::Int(_) => "int",
        AnyValue::Double(_) => "float",
        AnyValue::Bool(_) => "bool",
        _ => return None,
    })
}

/// Distinct (type, value) pairs, at most [`MAX_VALUES`].
#[derive(Default)]
struct Values(BTreeMap<String, &'static str>);

impl Values {
    /// False once full.
    fn add(&mut self, ty: &'static str, value: &str) -> bool {
        if self.0.len() < MAX_VALUES && !self.0.contains_key(value) {
            self.0.insert(value.to_string(), ty);
        }
        self.0.len() < MAX_VALUES
    }

    fn add_attr(&mut self, v: Option<&AnyValue>) -> bool {
        match v.and_then(|v| value_type(v).map(|t| (t, v))) {
            Some((t, v)) => self.add(t, &v.string_form()),
            None => true,
        }
    }
}

fn attr<'a>(attrs: &'a [crate::model::KeyValue], key: &str) -> Option<&'a AnyValue> {
    crate::model::value::find(attrs, key).and_then(|kv| kv.value.as_ref())
}

/// The values of `field` from the tag index, when it can answer: without a
/// filter, or a service's span names.
fn indexed_values(
    v: &View,
    filter: Option<&crate::traceql::Query>,
    field: &Field,
) -> StoreResult<Option<Values>> {
    let mut out = Values::default();
    if let Some(q) = filter {
        let Some(service) = only_service(q) else {
            return Ok(None);
        };
        if *field != Field::Intrinsic(Intrinsic::Name) {
            return Ok(None);
        }
        for name in v.operations(service, MAX_VALUES)? {
            out.add("string", &name);
        }
        return Ok(Some(out));
    }
    let lookups: &[(TagScope, &str)] = match field {
        Field::Intrinsic(i) => match i {
            Intrinsic::Name => &[(TagScope::Intrinsic, intrinsic::NAME)],
            Intrinsic::Status => &[(TagScope::Intrinsic, intrinsic::STATUS)],
            Intrinsic::Kind => &[(TagScope::Intrinsic, intrinsic::KIND)],
            Intrinsic::StatusMessage => &[(TagScope::Intrinsic, intrinsic::STATUS_MESSAGE)],
            Intrinsic::RootService => &[(TagScope::Intrinsic, intrinsic::ROOT_SERVICE)],
            Intrinsic::RootName => &[(TagScope::Intrinsic, intrinsic::ROOT_NAME)],
            Intrinsic::Duration | Intrinsic::TraceDuration => &[],
        },
        Field::Attribute { scope, name } => {
            let mut scopes = Vec::new();
            if matches!(scope, Scope::Span | Scope::Any) {
                scopes.push(TagScope::Span);
            }
            if matches!(scope, Scope::Resource | Scope::Any) {
                scopes.push(TagScope::Resource);
            }
            for scope in scopes {
                for (ty, value) in v.tag_values(scope, name, MAX_VALUES)? {
                    if !out.add(ty.as_str(), &value) {
                        break;
                    }
                }
            }
            return Ok(Some(out));
        }
    };
    for (scope, name) in lookups {
        for (ty, value) in v.tag_values(*scope, name, MAX_VALUES)? {
            out.add(ty.as_str(), &value);
        }
    }
    Ok(Some(out))
}

/// The values of `field`: from the tag index when it can answer, else
/// among the scanned spans.
fn collect_values(
    v: &View,
    window: (u64, u64),
    filter: Option<&crate::traceql::Query>,
    field: &Field,
) -> StoreResult<Values> {
    if let Some(found) = indexed_values(v, filter, field)? {
        return Ok(found);
    }
    scanned_values(v, window, filter, field)
}

/// The values of `field` among the scanned spans.
fn scanned_values(
    v: &View,
    window: (u64, u64),
    filter: Option<&crate::traceql::Query>,
    field: &Field,
) -> StoreResult<Values> {
    let mut out = Values::default();
    let fixed = |list: &[&str]| {
        let mut vals = Values::default();
        for s in list {
            vals.add("keyword", s);
        }
        vals
    };
    match field {
        Field::Intrinsic(Intrinsic::Status) => return Ok(fixed(STATUSES)),
        Field::Intrinsic(Intrinsic::Kind) => return Ok(fixed(KINDS)),
        Field::Intrinsic(Intrinsic::Duration | Intrinsic::TraceDuration) => return Ok(out),
        _ => {}
    }
    scan(v, window, filter, |s| match field {
        Field::Intrinsic(Intrinsic::Name) => out.add("string", s.name()),
        Field::Intrinsic(Intrinsic::StatusMessage) if !s.status_message.is_empty() => {
            out.add("string", &s.status_message)
        }
        Field::Intrinsic(Intrinsic::RootService) if s.parent_span_id.is_none() => {
            out.add("string", &s.service)
        }
        Field::Intrinsic(Intrinsic::RootName) if s.parent_span_id.is_none() => {
            out.add("string", s.name())
        }
        Field::Intrinsic(_) => true,
        Field::Attribute { scope, name } => {
            let span_side = matches!(scope, Scope::Span | Scope::Any);
            let resource_side = matches!(scope, Scope::Resource | Scope::Any);
            (!span_side || out.add_attr(attr(&s.attributes, name)))
                && (!resource_side || out.add_attr(attr(&s.resource.attributes, name)))
        }
    })?;
    Ok(out)
}

/// `GET /api/v2/search/tag/{scope.tag}/values`: `{"tagValues":[{"type","value"}]}`.
pub async fn values_v2(
    State(queries): State<Arc<QueryService>>,
    Path(tag): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let field = parse_field(0, &tag)
        .map_err(|e| ApiError::bad_request(format!("tag {tag:?}: {}", e.message)))?;
    let window = window(&p)?;
    let filter = filter_param(&p)?;
    let read = queries
        .read(p.consistency()?, Text::NotUsed, move |v| {
            collect_values(v, window, filter.as_ref(), &field)
        })
        .await?;
    Ok(answer_read(read, |vals| {
        let list: Vec<Value> = vals
            .0
            .into_iter()
            .map(|(value, ty)| json!({ "type": ty, "value": value }))
            .collect();
        json!({ "tagValues": list })
    }))
}

/// `GET /api/search/tag/{tag}/values`: the values of an unscoped tag, as
/// strings.
pub async fn values_v1(
    State(queries): State<Arc<QueryService>>,
    Path(tag): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    if tag.is_empty() {
        return Err(ApiError::bad_request("empty tag name"));
    }
    let field = Field::Attribute {
        scope: Scope::Any,
        name: tag,
    };
    let window = window(&p)?;
    let read = queries
        .read(p.consistency()?, Text::NotUsed, move |v| {
            collect_values(v, window, None, &field)
        })
        .await?;
    Ok(answer_read(read, |vals| {
        let list: Vec<String> = vals.0.into_keys().collect();
        json!({ "tagValues": list })
    }))
}
