//! Metric rollups outlive raw points: points written two to three hours
//! ago, a metrics retention of ten minutes, and after the cut the raw
//! points are gone while the minute and hour rollups answer REST step
//! queries and PromQL over the old range, with the values computed here
//! from the points as written.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, Sum,
};

const SEC: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * SEC;
/// Points per series: one every ten seconds for an hour.
const POINTS: u64 = 360;

const ARGS: [&str; 4] = ["--retention-metrics", "10m", "--compaction-interval", "1s"];

/// The counter of route `/a`: +2 a point, reset to 0 half way (point 180).
fn counter_a(i: u64) -> f64 {
    if i < 180 {
        (2 * i) as f64
    } else {
        (3 * (i - 180)) as f64
    }
}

/// The counter of route `/b`: +5 a point, no reset.
fn counter_b(i: u64) -> f64 {
    (5 * i) as f64
}

fn gauge(i: u64) -> f64 {
    (i % 7) as f64 + 0.5
}

fn point(base: u64, i: u64, route: &str, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: base + i * 10 * SEC,
        start_time_unix_nano: base,
        attributes: vec![kv("route", route)],
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

/// Gauge points a retention of ten minutes keeps for the test's length:
/// stamped five minutes ago and after, every ten seconds.
const RECENT_POINTS: u64 = 6;
const RECENT_VALUE: f64 = 100.0;

fn metrics(base: u64, recent: u64) -> Vec<Metric> {
    let counter = (0..POINTS)
        .flat_map(|i| {
            [
                point(base, i, "/a", counter_a(i)),
                point(base, i, "/b", counter_b(i)),
            ]
        })
        .collect();
    vec![
        Metric {
            name: "requests".into(),
            data: Some(Data::Sum(Sum {
                data_points: counter,
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "temp".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: (0..POINTS)
                    .map(|i| point(base, i, "/a", gauge(i)))
                    .chain((0..RECENT_POINTS).map(|i| point(recent, i, "/a", RECENT_VALUE)))
                    .collect(),
            })),
            ..Default::default()
        },
    ]
}

/// The point of each minute a minute rollup keeps as its last: point
/// 6m + 5, at 60m + 50 seconds.
fn minute_lasts(f: fn(u64) -> f64) -> Vec<(f64, f64)> {
    (0..60)
        .map(|m| ((60 * m + 50) as f64, f(6 * m + 5)))
        .collect()
}

/// Prometheus' extrapolated rate of a counter's samples (seconds from the
/// range start, value) over a range `[0, range_s]`.
fn prometheus_rate(samples: &[(f64, f64)], range_s: f64) -> f64 {
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let mut increase = last.1 - first.1;
    for w in samples.windows(2) {
        if w[1].1 < w[0].1 {
            increase += w[0].1;
        }
    }
    let sampled = last.0 - first.0;
    let gap = sampled / (samples.len() - 1) as f64;
    let to_start = first.0.min(sampled * (first.1 / increase));
    let to_end = range_s - last.0;
    let extend = |d: f64| if d < gap * 1.1 { d } else { gap / 2.0 };
    increase * (sampled + extend(to_start) + extend(to_end)) / sampled / range_s
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The single value of an instant PromQL query at `t_s`.
async fn promql(c: &TestCluster, node: u64, query: &str, t_s: u64) -> f64 {
    let enc: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let v = c
        .get_json(
            node,
            &format!("/prometheus/api/v1/query?query={enc}&time={t_s}"),
        )
        .await;
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{query}: {v}");
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_answer_rest_and_promql_after_the_raw_points_are_gone() {
    let c = TestCluster::start(3, &ARGS);
    c.init().await;
    let leader = c.wait_leader().await;
    // An hour that ended two to three hours ago, on the hour.
    let base = (now_nanos() - 3 * HOUR) / HOUR * HOUR;
    let recent = now_nanos() - 300 * SEC;
    let req = metrics_request("rollup-svc", metrics(base, recent));
    post_protobuf_ok(&c, leader, "/v1/metrics", &req).await;

    wait_until(
        Duration::from_secs(60),
        "the points' retention cut",
        || async {
            let v = c.get_json(leader, "/api/v1/storage").await;
            v["last_cut"]["deleted_total"]["metric_points"] == 3 * POINTS
        },
    )
    .await;
    for name in ["temp", "requests"] {
        let v = c
            .get_json(leader, &format!("/api/v1/metrics?name={name}"))
            .await;
        let recent = if name == "temp" { RECENT_POINTS } else { 0 };
        assert_eq!(v["count"], recent, "old raw points of {name} are gone: {v}");
    }

    let (start_s, end_s) = (base / SEC, base / SEC + 3_599);
    // REST, one step of an hour: the hour rollup of the gauge.
    let v = c
        .get_json(
            leader,
            &format!("/api/v1/metrics?name=temp&step=1h&start={start_s}&end={end_s}"),
        )
        .await;
    assert_eq!(v["resolution"], "1h", "{v}");
    // The answer says from when raw points remain: after the hour.
    let from = v["raw_points_from"].as_str().unwrap();
    assert!(
        from > tael_raft::model::rfc3339_nanos(base + HOUR).as_str(),
        "{v}"
    );
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{v}");
    let steps = series[0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{v}");
    let all: Vec<f64> = (0..POINTS).map(gauge).collect();
    let s = &steps[0];
    assert_eq!(s["count"], POINTS);
    assert!(close(s["sum"].as_f64().unwrap(), all.iter().sum()), "{s}");
    assert_eq!(s["min"], 0.5);
    assert_eq!(s["max"], 6.5);
    assert_eq!(s["last"], gauge(POINTS - 1));

    // REST, steps of five minutes from minute rollups: the counters, two
    // series never mixed, the reset seen as the minimum of its step.
    let v = c
        .get_json(
            leader,
            &format!(
            "/api/v1/metrics?name=requests&step=5m&service=rollup-svc&start={start_s}&end={end_s}"
        ),
        )
        .await;
    assert_eq!(v["resolution"], "1m", "{v}");
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{v}");
    for s in series {
        let f = match s["attributes"]["route"].as_str().unwrap() {
            "/a" => counter_a,
            "/b" => counter_b,
            other => panic!("route {other}"),
        };
        let steps = s["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 12, "{s}");
        for (k, step) in steps.iter().enumerate() {
            let points: Vec<f64> = (30 * k as u64..30 * (k as u64 + 1)).map(f).collect();
            let min = points.iter().copied().fold(f64::INFINITY, f64::min);
            let max = points.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(step["count"], 30, "{step}");
            assert!(close(step["sum"].as_f64().unwrap(), points.iter().sum()));
            assert_eq!(
                (step["min"].as_f64(), step["max"].as_f64()),
                (Some(min), Some(max))
            );
            assert_eq!(step["last"].as_f64(), Some(points[29]), "{step}");
            assert_eq!(
                step["start_unix_nanos"].as_u64(),
                Some(base + k as u64 * 300 * SEC)
            );
        }
    }
    let r = c.get(leader, "/api/v1/metrics?name=temp&step=90s").await;
    assert_eq!(r.status, 400, "a step that is not whole minutes");

    // PromQL over the hour, evaluated at its end: one sample per minute
    // (each minute's last point).
    let t_s = base / SEC + 3_600;
    let rate = promql(&c, leader, "sum(rate(requests_total[1h]))", t_s).await;
    let expected = prometheus_rate(&minute_lasts(counter_a), 3_600.0)
        + prometheus_rate(&minute_lasts(counter_b), 3_600.0);
    assert!(close(rate, expected), "rate {rate}, expected {expected}");
    let resets = promql(&c, leader, "resets(requests_total{route=\"/a\"}[1h])", t_s).await;
    assert_eq!(resets, 1.0);
    let lasts: Vec<f64> = minute_lasts(gauge).into_iter().map(|(_, v)| v).collect();
    let max = promql(&c, leader, "max(max_over_time(temp[1h]))", t_s).await;
    assert_eq!(max, lasts.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let sum = promql(&c, leader, "sum(sum_over_time(temp[1h]))", t_s).await;
    assert!(close(sum, lasts.iter().sum()), "sum {sum}");
    let count = promql(&c, leader, "count_over_time(temp[1h])", t_s).await;
    assert_eq!(count, 60.0);
    // A range across the raw floor: minute samples below it, every raw
    // point above.
    let now_s = now_nanos() / SEC;
    let span = format!("{}s", now_s - base / SEC);
    let count = promql(&c, leader, &format!("count_over_time(temp[{span}])"), now_s).await;
    assert_eq!(count, (60 + RECENT_POINTS) as f64);
    let max = promql(&c, leader, &format!("max_over_time(temp[{span}])"), now_s).await;
    assert_eq!(max, RECENT_VALUE);

    // Every replica built the same rollups.
    c.assert_replicas_agree(leader, Duration::from_secs(20))
        .await;
}
