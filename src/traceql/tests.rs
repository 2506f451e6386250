//! TraceQL over a fixed set of three traces, with answers worked out by
//! hand from the table below.
//!
//! | span | trace | parent | service  | name      | kind     | status | start, duration | attributes |
//! |------|-------|--------|----------|-----------|----------|--------|-----------------|------------|
//! | a0   | A     | -      | frontend | GET /     | server   | unset  | 0, 300ms        | http.method=GET, http.status_code=200 |
//! | a1   | A     | a0     | checkout | charge    | client   | error "card declined" | 10ms, 120ms | http.status_code=500, retry=true, ratio=0.25 |
//! | a2   | A     | a0     | checkout | db query  | internal | unset  | 150ms, 40ms     | db.system=postgres, "a b"=spaced |
//! | b0   | B     | -      | frontend | GET /cart | server   | ok     | 0, 50ms         | http.status_code=200 |
//! | b1   | B     | b0     | cart     | load      | internal | unset  | 5ms, 20ms       | db.system=redis |
//! | c0   | C     | (lost) | checkout | charge    | server   | error  | 0, 2s           | http.status_code=503 |
//!
//! Resources: every span has `service.name`; `env` is `prod` for A and C,
//! `dev` for B. Trace durations: A 300ms, B 50ms, C 2s; C has no root.

use super::*;
use crate::model::{AnyValue, KeyValue, Resource, SpanKind, SpanRecord, SpanStatus};

const MS: u64 = 1_000_000;

struct Def {
    id: &'static str,
    parent: Option<&'static str>,
    service: &'static str,
    name: &'static str,
    kind: SpanKind,
    status: (SpanStatus, &'static str),
    start_ms: u64,
    duration_ms: u64,
    attrs: Vec<KeyValue>,
}

fn span_id(id: &str) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..id.len()].copy_from_slice(id.as_bytes());
    b
}

fn span(d: Def) -> SpanRecord {
    let trace = d.id.as_bytes()[0];
    let env = if trace == b'b' { "dev" } else { "prod" };
    SpanRecord {
        trace_id: [trace; 16],
        span_id: span_id(d.id),
        parent_span_id: d.parent.map(span_id),
        service: d.service.into(),
        operation: d.name.into(),
        start_unix_nanos: 1_000_000_000_000 + d.start_ms * MS,
        end_unix_nanos: 1_000_000_000_000 + (d.start_ms + d.duration_ms) * MS,
        status: d.status.0,
        status_message: d.status.1.into(),
        kind: d.kind,
        attributes: crate::model::value::sort_unique(d.attrs),
        resource: std::sync::Arc::new(Resource {
            attributes: vec![
                KeyValue::string("env", env),
                KeyValue::string("service.name", d.service),
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int(k: &str, v: i64) -> KeyValue {
    KeyValue::new(k, AnyValue::Int(v))
}

fn traces() -> Vec<Vec<SpanRecord>> {
    use SpanKind::*;
    use SpanStatus::*;
    let s = |k: &str, v: &str| KeyValue::string(k, v);
    vec![
        vec![
            span(Def {
                id: "a0",
                parent: None,
                service: "frontend",
                name: "GET /",
                kind: Server,
                status: (Unset, ""),
                start_ms: 0,
                duration_ms: 300,
                attrs: vec![s("http.method", "GET"), int("http.status_code", 200)],
            }),
            span(Def {
                id: "a1",
                parent: Some("a0"),
                service: "checkout",
                name: "charge",
                kind: Client,
                status: (Error, "card declined"),
                start_ms: 10,
                duration_ms: 120,
                attrs: vec![
                    int("http.status_code", 500),
                    KeyValue::new("retry", AnyValue::Bool(true)),
                    KeyValue::new("ratio", AnyValue::Double(0.25)),
                ],
            }),
            span(Def {
                id: "a2",
                parent: Some("a0"),
                service: "checkout",
                name: "db query",
                kind: Internal,
                status: (Unset, ""),
                start_ms: 150,
                duration_ms: 40,
                attrs: vec![s("db.system", "postgres"), s("a b", "spaced")],
            }),
        ],
        vec![
            span(Def {
                id: "b0",
                parent: None,
                service: "frontend",
                name: "GET /cart",
                kind: Server,
                status: (Ok, ""),
                start_ms: 0,
                duration_ms: 50,
                attrs: vec![int("http.status_code", 200)],
            }),
            span(Def {
                id: "b1",
                parent: Some("b0"),
                service: "cart",
                name: "load",
                kind: Internal,
                status: (Unset, ""),
                start_ms: 5,
                duration_ms: 20,
                attrs: vec![s("db.system", "redis")],
            }),
        ],
        vec![span(Def {
            id: "c0",
            parent: Some("zz"),
            service: "checkout",
            name: "charge",
            kind: Server,
            status: (Error, ""),
            start_ms: 0,
            duration_ms: 2000,
            attrs: vec![int("http.status_code", 503)],
        })],
    ]
}

/// The matched spans of every matching trace, by span id.
fn run(q: &str) -> Vec<Vec<String>> {
    let query = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    traces()
        .iter()
        .map(|spans| {
            query
                .matching_spans(spans)
                .into_iter()
                .map(|i| {
                    let id = spans[i].span_id;
                    String::from_utf8_lossy(&id[..2]).into_owned()
                })
                .collect::<Vec<_>>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn queries_give_the_hand_computed_answers() {
    let cases: &[(&str, &[&[&str]])] = &[
        ("{}", &[&["a0", "a1", "a2"], &["b0", "b1"], &["c0"]]),
        ("{ true }", &[&["a0", "a1", "a2"], &["b0", "b1"], &["c0"]]),
        ("{ false }", &[]),
        ("{ status = error }", &[&["a1"], &["c0"]]),
        ("{ status != unset }", &[&["a1"], &["b0"], &["c0"]]),
        (
            r#"{ resource.service.name = "checkout" && span.http.status_code >= 500 }"#,
            &[&["a1"], &["c0"]],
        ),
        ("{ .http.status_code = 200 }", &[&["a0"], &["b0"]]),
        (r#"{ span.http.status_code = "200" }"#, &[]),
        ("{ duration > 100ms && kind = server }", &[&["a0"], &["c0"]]),
        ("{ span:duration >= 1.5s }", &[&["c0"]]),
        (r#"{ name =~ "GET.*" }"#, &[&["a0"], &["b0"]]),
        (r#"{ name =~ "GET" }"#, &[]),
        (r#"{ name !~ "GET.*" }"#, &[&["a1", "a2"], &["b1"], &["c0"]]),
        (
            r#"{ .env = "prod" } && { span.db.system = "postgres" }"#,
            &[&["a0", "a1", "a2"]],
        ),
        (
            r#"{ span.db.system = "redis" } || { statusMessage = "card declined" }"#,
            &[&["a1"], &["b1"]],
        ),
        (
            r#"{ trace:rootService = "frontend" && status = error }"#,
            &[&["a1"]],
        ),
        (
            r#"{ rootServiceName = "frontend" } | count() > 2"#,
            &[&["a0", "a1", "a2"]],
        ),
        (
            r#"{ resource.service.name = "checkout" } | avg(duration) > 100ms"#,
            &[&["c0"]],
        ),
        (
            r#"{ resource.service.name = "checkout" } | max(duration) >= 120ms"#,
            &[&["a1", "a2"], &["c0"]],
        ),
        (
            "{ trace:duration > 200ms }",
            &[&["a0", "a1", "a2"], &["c0"]],
        ),
        ("{ traceDuration <= 50ms }", &[&["b0", "b1"]]),
        (r#"{ span."a b" = "spaced" }"#, &[&["a2"]]),
        (r#"{ ."a b" = "spaced" }"#, &[&["a2"]]),
        ("{ span.retry = true }", &[&["a1"]]),
        ("{ span.ratio < 0.5 }", &[&["a1"]]),
        ("{ span.ratio < 1 }", &[&["a1"]]),
        ("{ span.http.status_code != 200 }", &[&["a1"], &["c0"]]),
        ("{ span.db.system != nil }", &[&["a2"], &["b1"]]),
        (
            "{ span.db.system = nil }",
            &[&["a0", "a1"], &["b0"], &["c0"]],
        ),
        (
            "({ kind = client } || { kind = consumer }) && { status = error }",
            &[&["a1"]],
        ),
        ("{ status = error } | { kind = server }", &[&["c0"]]),
        (r#"{ rootName = "GET /" }"#, &[&["a0", "a1", "a2"]]),
        (r#"{ trace:rootName = "charge" }"#, &[]),
        (
            r#"{ resource.service.name = "frontend" || resource.service.name = "cart" }"#,
            &[&["a0"], &["b0", "b1"]],
        ),
        (
            r#"{ (kind = internal || kind = client) && .env = "prod" }"#,
            &[&["a1", "a2"]],
        ),
        (
            r#"{ resource.service.name = "checkout" } | count() = 1"#,
            &[&["c0"]],
        ),
        (
            r#"{ span.http.method = "GET" } | sum(span.http.status_code) > 100"#,
            &[&["a0"]],
        ),
    ];
    for (q, want) in cases {
        let want: Vec<Vec<String>> = want
            .iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect();
        assert_eq!(run(q), want, "{q}");
    }
}

#[test]
fn unsupported_and_malformed_queries_name_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("{ .a = 1 } >> { .b = 2 }", "structural operator `>>`"),
        ("{ .a = 1 } > { .b = 2 }", "structural operator `>`"),
        ("{ .a = 1 } ~ { .b = 2 }", "structural operator `~`"),
        (
            "{ .a = 1 } | select(.b)",
            "unsupported construct: `select()`",
        ),
        ("{ .a = 1 } | rate()", "unsupported construct: `rate()`"),
        ("{ .a = 1 } | by(.b)", "unsupported construct: `by()`"),
        ("{ parent.x = 1 }", "unsupported construct: `parent.x`"),
        (
            r#"{ event:name = "x" }"#,
            "unsupported construct: `event:name`",
        ),
        ("{ .a + 1 = 2 }", "arithmetic `+`"),
        ("{ !(.a = 1) }", "negation"),
        ("{ status = 500 }", "status compares"),
        ("{ kind = error }", "kind compares"),
        ("{ duration > 5 }", "duration compares"),
        ("{ .a = error }", "an attribute compares"),
        ("{ .a =~ 5 }", "need a string"),
        ("{ .a > true }", "booleans and nil"),
        ("{ .a = }", "expected a value after `.a =`"),
        (r#"{ .a = "x""#, "found the end of the query"),
        ("{ span.a = span.b }", "comparing two fields"),
        ("{ foo = 1 }", "unknown name `foo`"),
        ("{ .a = foo }", "is not a value"),
        (r#"{ .a =~ "(" }"#, "invalid regex"),
        ("{ .a }", "expected a comparison after `.a`"),
        ("", "expected a spanset"),
        ("{ .a = 1 } {", "expected `&&`, `||`, `|` or the end"),
        ("{ .a = 1 } | count() =~ 2", "expected a comparison"),
        (r#"{ .a = 1 } | count() > "x""#, "compares with a number"),
        ("{ .a = 1 } | avg(name) > 1", "needs a numeric field"),
        (
            "{ .a = 1 } | median(duration) > 1",
            "unknown function `median()`",
        ),
        ("{ span. = 1 }", "names no attribute"),
        ("{ duration > 3weeks }", "unknown duration unit"),
    ];
    for (q, want) in cases {
        let e = parse(q).map(|_| ()).unwrap_err();
        assert!(
            e.message.contains(want),
            "{q:?}: {:?} does not say {want:?}",
            e.message
        );
    }
    let deep = format!("{}{{}}{}", "(".repeat(100), ")".repeat(100));
    assert!(parse(&deep).unwrap_err().message.contains("nested deeper"));
}

#[test]
fn errors_point_at_the_offending_token() {
    let e = parse("{ .a = 1 } >> { .b = 2 }").unwrap_err();
    assert_eq!(e.pos, 11);
    let e = parse("{ status = 500 }").unwrap_err();
    assert_eq!(e.pos, 11);
}

#[test]
fn index_hints_are_only_taken_when_every_match_needs_them() {
    let service = |q: &str| {
        parse(q)
            .unwrap()
            .required(&|c: &ast::Comparison| match (&c.field, &c.value) {
                (ast::Field::Attribute { name, .. }, ast::Literal::Str(s))
                    if name == "service.name" && c.op == ast::CmpOp::Eq =>
                {
                    Some(s.clone())
                }
                _ => None,
            })
    };
    assert_eq!(
        service(r#"{ resource.service.name = "a" && .x = 1 }"#),
        Some("a".into())
    );
    assert_eq!(
        service(r#"{ resource.service.name = "a" || .x = 1 }"#),
        None
    );
    assert_eq!(
        service(r#"{ resource.service.name = "a" } && { .x = 1 }"#),
        Some("a".into())
    );
    assert_eq!(
        service(r#"{ resource.service.name = "a" } || { .x = 1 }"#),
        None
    );
    assert_eq!(
        service(r#"{ resource.service.name = "a" } || { resource.service.name = "a" && .y = 2 }"#),
        Some("a".into())
    );
}

#[test]
fn the_prefilter_never_drops_a_matching_trace() {
    for q in [
        "{}",
        "{ status = error }",
        r#"{ .env = "prod" } && { span.db.system = "postgres" }"#,
        "{ status = error } | { kind = server }",
        "{ trace:duration > 200ms }",
        r#"{ rootServiceName = "frontend" } | count() > 2"#,
    ] {
        let query = parse(q).unwrap();
        for spans in traces() {
            if !query.matching_spans(&spans).is_empty() {
                assert!(spans.iter().any(|s| query.span_may_match(s)), "{q}");
            }
        }
    }
}
