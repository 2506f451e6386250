//! Range queries, the public entry points' errors and limits, and JSON rendering.

use super::script::{close, parse_labels};
use crate::{
    instant_query, range_query, result_json, EngineLimits, Labels, MemoryStorage, Sample, Series,
    Value,
};

const MINUTE_MS: i64 = 60_000;

fn storage() -> MemoryStorage {
    let mut s = MemoryStorage::new();
    let series = [
        (r#"c{job="a", instance="0"}"#, "0+10x10 0+10x10"),
        (r#"c{job="a", instance="1"}"#, "_x5 0+30x15"),
        (r#"c{job="b", instance="0"}"#, "0+5x8 stale _x8 0+1x3"),
        (
            r#"g{job="a"}"#,
            "1 3 2 5 4 7 6 9 8 11 10 13 12 15 14 17 16 19 18 21 20",
        ),
    ];
    for (labels, values) in series {
        s.add_notation(parse_labels(labels), MINUTE_MS, values);
    }
    s
}

fn matrix(v: Value) -> Vec<Series> {
    match v {
        Value::Matrix(m) => m,
        other => panic!("expected a matrix, got {other:?}"),
    }
}

#[test]
fn steps_are_start_plus_multiples_of_step_up_to_end() {
    let st = storage();
    let m = matrix(
        range_query(
            &st,
            "time()",
            0,
            10 * MINUTE_MS,
            3 * MINUTE_MS,
            &Default::default(),
        )
        .unwrap(),
    );
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].labels, Labels::default());
    let times: Vec<i64> = m[0].samples.iter().map(|p| p.t_ms).collect();
    assert_eq!(times, vec![0, 3 * MINUTE_MS, 6 * MINUTE_MS, 9 * MINUTE_MS]);
    let values: Vec<f64> = m[0].samples.iter().map(|p| p.v).collect();
    assert_eq!(values, vec![0.0, 180.0, 360.0, 540.0]);
}

/// Every step of a range query equals an instant query at that step's time: the range
/// evaluation must not change any semantics.
#[test]
fn each_step_of_a_range_query_equals_an_instant_query() {
    let st = storage();
    let queries = [
        "c",
        "rate(c[5m])",
        "sum by (job) (rate(c[3m]))",
        "c / on(job, instance) group_left c offset 2m",
        "topk(1, c)",
        "absent(c{job=\"z\"})",
        "absent_over_time(c{job=\"b\"}[2m])",
        "max_over_time(g[5m:2m])",
        "g @ 300",
        "timestamp(c)",
        "c > 40 or g",
        "histogram_quantile(0.5, label_replace(c, \"le\", \"$1\", \"instance\", \"(.*)\"))",
        "scalar(g) * 2",
        "count_values(\"v\", g)",
        "-c unless c{instance=\"1\"}",
    ];
    let limits = EngineLimits::default();
    for q in queries {
        let (start, end, step) = (0, 20 * MINUTE_MS, 90_000);
        let range = matrix(range_query(&st, q, start, end, step, &limits).unwrap());
        let mut t = start;
        while t <= end {
            let mut from_range: Vec<(Labels, f64)> = range
                .iter()
                .filter_map(|s| {
                    let p = s.samples.iter().find(|p| p.t_ms == t)?;
                    Some((s.labels.clone(), p.v))
                })
                .collect();
            let mut from_instant: Vec<(Labels, f64)> =
                match instant_query(&st, q, t, &limits).unwrap() {
                    Value::Vector(v) => v.into_iter().map(|(l, s)| (l, s.v)).collect(),
                    Value::Scalar { v, .. } => vec![(Labels::default(), v)],
                    other => panic!("{q}: unexpected {other:?}"),
                };
            from_range.sort_by(|a, b| a.0.cmp(&b.0));
            from_instant.sort_by(|a, b| a.0.cmp(&b.0));
            let same = from_range.len() == from_instant.len()
                && from_range
                    .iter()
                    .zip(&from_instant)
                    .all(|(a, b)| a.0 == b.0 && close(a.1, b.1));
            assert!(
                same,
                "{q} at {t}: range {from_range:?} instant {from_instant:?}"
            );
            t += step;
        }
    }
}

#[test]
fn range_results_are_sorted_and_leave_out_empty_series() {
    let st = storage();
    let m =
        matrix(range_query(&st, "c", 0, 4 * MINUTE_MS, MINUTE_MS, &Default::default()).unwrap());
    // c{job="a", instance="1"} has no sample before 6m.
    let labels: Vec<String> = m.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(
        labels,
        vec![
            r#"{__name__="c", instance="0", job="a"}"#,
            r#"{__name__="c", instance="0", job="b"}"#
        ]
    );
    // The stale marker at 9m ends c{job="b"}: no points from 9m on until it returns.
    let m = matrix(
        range_query(
            &st,
            "c{job=\"b\"}",
            8 * MINUTE_MS,
            19 * MINUTE_MS,
            MINUTE_MS,
            &Default::default(),
        )
        .unwrap(),
    );
    let times: Vec<i64> = m[0].samples.iter().map(|p| p.t_ms / MINUTE_MS).collect();
    assert_eq!(times, vec![8, 19]);
}

#[test]
fn range_parameters_are_checked_like_the_http_api() {
    let st = storage();
    let limits = EngineLimits::default();
    let err = range_query(&st, "c", 10, 0, 1, &limits).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    assert!(err
        .to_string()
        .contains("end timestamp must not be before start time"));
    let err = range_query(&st, "c", 0, 10, 0, &limits).unwrap_err();
    assert!(err
        .to_string()
        .contains("zero or negative query resolution step"));
    let err = range_query(&st, "c", 0, 11_001_000, 1_000, &limits).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    assert!(
        err.to_string()
            .contains("exceeded maximum resolution of 11,000 points per timeseries"),
        "{err}"
    );
    range_query(&st, "c", 0, 11_000_000, 1_000, &limits).unwrap();
    let err = range_query(&st, "c[5m]", 0, 10, 1, &limits).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    assert!(err
        .to_string()
        .contains("invalid expression type \"range vector\" for range query"));
}

#[test]
fn sample_and_series_limits_fail_with_execution_errors() {
    let st = storage();
    let tight = EngineLimits {
        max_samples: 50,
        ..Default::default()
    };
    let err = range_query(&st, "c", 0, 20 * MINUTE_MS, MINUTE_MS, &tight).unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert_eq!(err.http_status(), 422);
    assert!(err.to_string().contains("too many samples"), "{err}");
    let few_series = EngineLimits {
        max_series: 2,
        ..Default::default()
    };
    let err = instant_query(&st, "c", 0, &few_series).unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert!(err.to_string().contains("series"), "{err}");
    instant_query(&st, "c{job=\"a\"}", 0, &few_series).unwrap();
    // A subquery with a tiny step over a long range is refused before running it.
    let err = instant_query(&st, "max_over_time(g[1y:1ms])", 0, &tight).unwrap_err();
    assert_eq!(err.error_type(), "execution");
}

#[test]
fn grafana_health_check_is_a_scalar() {
    let st = MemoryStorage::new();
    let v = instant_query(&st, "1+1", 1_700_000_000_123, &Default::default()).unwrap();
    assert_eq!(
        v,
        Value::Scalar {
            t_ms: 1_700_000_000_123,
            v: 2.0
        }
    );
    assert_eq!(
        result_json(&v),
        serde_json::json!({"resultType": "scalar", "result": [1700000000.123, "2"]})
    );
}

#[test]
fn instant_results_render_as_prometheus_json() {
    let st = storage();
    let v = instant_query(
        &st,
        "sum by (job) (c) / 3",
        20 * MINUTE_MS,
        &Default::default(),
    )
    .unwrap();
    let json = result_json(&v);
    assert_eq!(json["resultType"], "vector");
    let result = json["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    let a = result.iter().find(|r| r["metric"]["job"] == "a").unwrap();
    // (90 + 420) / 3
    assert_eq!(a["value"], serde_json::json!([1200, "170"]));
    let s = instant_query(&st, "\"hello\"", 1_000, &Default::default()).unwrap();
    assert_eq!(
        result_json(&s),
        serde_json::json!({"resultType": "string", "result": [1, "hello"]})
    );
}

#[test]
fn range_selector_results_keep_raw_sample_times() {
    let st = storage();
    let v = instant_query(&st, "g[2m]", 150_000, &Default::default()).unwrap();
    let m = matrix(v);
    assert_eq!(
        m[0].samples,
        vec![
            Sample {
                t_ms: 60_000,
                v: 3.0
            },
            Sample {
                t_ms: 120_000,
                v: 2.0
            }
        ]
    );
}

#[test]
fn storage_errors_are_internal() {
    struct Failing;
    impl crate::Storage for Failing {
        fn select(
            &self,
            _: &[crate::Matcher],
            _: i64,
            _: i64,
        ) -> Result<Vec<Series>, crate::StorageError> {
            Err(crate::StorageError("disk on fire".into()))
        }
    }
    let err = instant_query(&Failing, "up", 0, &Default::default()).unwrap_err();
    assert_eq!(err.error_type(), "internal");
    assert_eq!(err.http_status(), 500);
    assert!(err.to_string().contains("disk on fire"));
}

/// The deepest queries the depth limit lets through evaluate on a test thread's 2 MiB stack
/// (in an unoptimized build, the worst case for stack use).
#[test]
fn deepest_accepted_queries_evaluate() {
    let st = storage();
    let chain = vec!["g"; 130].join(" + ");
    let query = format!("{}{chain}{}", "abs(".repeat(120), ")".repeat(120));
    assert!(crate::parse::depth_estimate(&query) <= crate::parse::MAX_QUERY_DEPTH);
    let v = instant_query(&st, &query, 0, &Default::default()).unwrap();
    assert_eq!(
        v,
        Value::Vector(vec![(
            Labels::from_pairs([("job", "a")]),
            Sample { t_ms: 0, v: 130.0 }
        )])
    );
}

/// Pathological inputs fail cleanly or evaluate; none may panic.
#[test]
fn pathological_queries_do_not_panic() {
    let st = storage();
    let limits = EngineLimits {
        max_samples: 1_000_000,
        ..Default::default()
    };
    for q in [
        "g[99999999999y]",
        "g offset 9999999999y",
        "g offset -9999999999y",
        "g @ 1e300",
        "g @ -1e300",
        "g @ NaN",
        "topk(1e300, g)",
        "max_over_time(g[1m:0s])",
        "max_over_time(g[5m:1ms])",
        "quantile(NaN, g)",
        "histogram_quantile(NaN, g)",
        "round(g, 0)",
        "label_replace(g, \"a\", \"$99\", \"job\", \"(.*)\")",
        "count_values(\"\", g)",
        "rate(g[0s])",
        "g[1ms]",
        "time() + 1e308 * 10",
        "vector(1) % 0",
    ] {
        let _ = instant_query(&st, q, 600_000, &limits);
        let _ = range_query(&st, q, 0, 1_200_000, 60_000, &limits);
    }
}
