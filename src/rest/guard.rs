//! Who may call what: the role each route needs, checked before any handler
//! runs. One table, [`required_role`], so a new route is one line here.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::auth::{Authenticator, Role};
use crate::cluster::Cluster;

pub const INIT_PATH: &str = "/api/v1/cluster/init";

/// The role a request needs; `None` for the public health checks.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    let read = method == Method::GET || method == Method::HEAD;
    match path {
        "/healthz" | "/readyz" => None,
        INIT_PATH => Some(Role::Admin),
        p if p == "/api/v1/keys" || p.starts_with("/api/v1/keys/") => Some(Role::Admin),
        p if p.starts_with("/api/v1/cluster/members") && !read => Some(Role::Admin),
        "/api/v1/cluster/check" if !read => Some(Role::Admin),
        // Fault-injection builds only (`rest::fault`).
        p if p.starts_with("/api/v1/fault/") => Some(Role::Admin),
        p if p.starts_with("/api/v1/traces/") && p.ends_with("/comments") && !read => {
            Some(Role::Writer)
        }
        // Prometheus remote write: a writer's key, like OTLP ingest.
        "/api/v1/write" | "/prometheus/api/v1/write" => Some(Role::Writer),
        // Grafana's data sources only read, probes included (a Grafana
        // data source sends its key on every call).
        p if p == "/tempo" || p.starts_with("/tempo/") => Some(Role::Reader),
        p if p == "/jaeger" || p.starts_with("/jaeger/") => Some(Role::Reader),
        // Loki's queries may come as POSTed forms: still reads.
        p if p == "/loki" || p.starts_with("/loki/") => Some(Role::Reader),
        _ => Some(Role::Reader),
    }
}

#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<Authenticator>,
    pub cluster: Arc<Cluster>,
}

pub async fn check(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let Some(role) = required_role(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    // Before `init` there is no key to present: bootstrapping a node that is
    // in no cluster yet is open (init creates the first admin key). Once the
    // node belongs to a cluster, init needs an admin key like the rest.
    if req.uri().path() == INIT_PATH && g.cluster.cluster_id().is_none() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match g.auth.check(presented, role) {
        Ok(()) => next.run(req).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_needs_the_right_role() {
        let get = Method::GET;
        let post = Method::POST;
        let delete = Method::DELETE;
        let cases: &[(&Method, &str, Option<Role>)] = &[
            (&get, "/healthz", None),
            (&get, "/readyz", None),
            (&get, "/metrics", Some(Role::Reader)),
            (&get, "/api/v1/traces", Some(Role::Reader)),
            (&get, "/api/v1/traces/ab/comments", Some(Role::Reader)),
            (&post, "/api/v1/traces/ab/comments", Some(Role::Writer)),
            (&get, "/api/v1/cluster", Some(Role::Reader)),
            (&get, "/api/v1/cluster/members", Some(Role::Reader)),
            (&post, "/api/v1/cluster/members", Some(Role::Admin)),
            (
                &post,
                "/api/v1/cluster/members/3/promote",
                Some(Role::Admin),
            ),
            (&delete, "/api/v1/cluster/members/3", Some(Role::Admin)),
            (&post, INIT_PATH, Some(Role::Admin)),
            (&get, "/api/v1/cluster/check", Some(Role::Reader)),
            (&post, "/api/v1/cluster/check", Some(Role::Admin)),
            (&post, "/api/v1/fault/poison", Some(Role::Admin)),
            (&get, "/api/v1/keys", Some(Role::Admin)),
            (&post, "/api/v1/keys", Some(Role::Admin)),
            (&delete, "/api/v1/keys/0123456789abcdef", Some(Role::Admin)),
            (&get, "/no/such/route", Some(Role::Reader)),
            (&post, "/api/v1/write", Some(Role::Writer)),
            (&post, "/prometheus/api/v1/write", Some(Role::Writer)),
            // Grafana posts its queries: still reads.
            (&post, "/prometheus/api/v1/query_range", Some(Role::Reader)),
            (&get, "/prometheus/api/v1/labels", Some(Role::Reader)),
            (&get, "/tempo/api/v2/traces/ab", Some(Role::Reader)),
            (&get, "/tempo/api/traces/ab", Some(Role::Reader)),
            (&get, "/tempo/api/search", Some(Role::Reader)),
            (&get, "/tempo/api/v2/search/tags", Some(Role::Reader)),
            (
                &get,
                "/tempo/api/v2/search/tag/span.x/values",
                Some(Role::Reader),
            ),
            (&get, "/tempo/api/search/tags", Some(Role::Reader)),
            (&get, "/tempo/api/search/tag/x/values", Some(Role::Reader)),
            (&get, "/tempo/api/echo", Some(Role::Reader)),
            (&get, "/tempo/ready", Some(Role::Reader)),
            (&get, "/tempo/api/status/buildinfo", Some(Role::Reader)),
            (&post, "/tempo/api/search", Some(Role::Reader)),
            (&get, "/jaeger/api/services", Some(Role::Reader)),
            (
                &get,
                "/jaeger/api/services/s/operations",
                Some(Role::Reader),
            ),
            (&get, "/jaeger/api/traces", Some(Role::Reader)),
            (&get, "/jaeger/api/traces/ab", Some(Role::Reader)),
            (&get, "/jaeger/api/dependencies", Some(Role::Reader)),
            (&get, "/api/v1/traces/live", Some(Role::Reader)),
            (&post, "/loki/api/v1/query_range", Some(Role::Reader)),
            (&get, "/loki/api/v1/labels", Some(Role::Reader)),
            (&get, "/api/v1/logs/live", Some(Role::Reader)),
        ];
        for (m, p, want) in cases {
            assert_eq!(required_role(m, p), *want, "{m} {p}");
        }
    }
}
