//! A node that missed entries the leader has since purged catches up by
//! snapshot, and its state is then complete.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint,
};
use prost::Message;

fn snap_log(i: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + i,
        // Half of them errors, to check an index after install.
        severity_number: if i < 1000 { 17 } else { 9 },
        body: Some(AnyValue {
            value: Some(Value::StringValue(format!("log {i}"))),
        }),
        ..Default::default()
    }
}

fn snap_gauge(i: u64) -> Metric {
    Metric {
        name: "snap.gauge".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: 1_700_000_000_000_000_000 + i,
                value: Some(number_data_point::Value::AsInt(i as i64)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

const SERVICE: &str = "snapcatch";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_by_snapshot() {
    let mut c = TestCluster::start(
        3,
        &[
            "--snapshot-every-entries",
            "20",
            "--log-entries-kept-after-snapshot",
            "5",
        ],
    );
    c.init().await;
    let leader = c.wait_leader().await;
    let lagging = (1..=3).find(|&n| n != leader).unwrap();
    let writer = (1..=3).find(|&n| n != leader && n != lagging).unwrap();

    let mut client = c.otlp_client(writer).await;
    export(&mut client, trace_request(SERVICE, 0, 3))
        .await
        .unwrap();
    c.kill(lagging);

    let mut acked = BTreeSet::new();
    let mut logs_acked = 0;
    for i in 1..=150u64 {
        export(&mut client, trace_request(SERVICE, i, 3))
            .await
            .unwrap();
        acked.insert(trace_hex(i));
        // Logs and metric points travel in the same snapshot.
        if i % 10 == 0 {
            let logs = logs_request(Some(SERVICE), vec![snap_log(i), snap_log(i + 1000)]);
            let r = post(
                &c,
                writer,
                "/v1/logs",
                &[("Content-Type", "application/x-protobuf")],
                &logs.encode_to_vec(),
            )
            .await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            logs_acked += 2;
            let points = metrics_request(SERVICE, vec![snap_gauge(i)]);
            let r = post(
                &c,
                writer,
                "/v1/metrics",
                &[("Content-Type", "application/x-protobuf")],
                &points.encode_to_vec(),
            )
            .await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    }
    acked.insert(trace_hex(0));

    // The leader has purged entries the lagging node never received.
    let me = c.node_entry(leader, leader).await;
    let purged = me["purged_index"].as_u64().unwrap();
    let commit = me["committed_index"].as_u64().unwrap();
    assert!(
        purged > 10,
        "leader should have purged its log behind a snapshot: {me}"
    );

    c.spawn(lagging);
    c.wait_healthy(lagging).await;
    c.wait_applied(lagging, commit).await;

    let m = c.get(lagging, "/metrics").await;
    let text = String::from_utf8(m.body).unwrap();
    assert!(
        metric(&text, "tael_snapshots_installed_total") >= 1,
        "the lagging node must have installed a snapshot"
    );

    let spans = traces_of_service(&c, lagging, SERVICE, "local")
        .await
        .unwrap();
    let got: BTreeSet<String> = spans.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(got, acked, "state after snapshot install + log catch-up");
    assert_eq!(spans.len(), acked.len() * 3, "no span lost or duplicated");
    let logs = c
        .get(
            lagging,
            &format!("/api/v1/logs?service={SERVICE}&limit=1000&consistency=local"),
        )
        .await
        .json()
        .unwrap();
    assert_eq!(
        logs["count"], logs_acked,
        "logs after snapshot install: {logs}"
    );
    let points = c
        .get(lagging, "/api/v1/metrics?name=snap.gauge&consistency=local")
        .await
        .json()
        .unwrap();
    assert_eq!(points["count"], 15, "metric points after snapshot install");
    let severe = c
        .get(
            lagging,
            "/api/v1/logs?severity=error&consistency=local&limit=1000",
        )
        .await
        .json()
        .unwrap();
    assert_eq!(
        severe["count"], 15,
        "the severity index came along: {severe}"
    );

    // And it keeps applying new entries after the snapshot.
    export(&mut client, trace_request(SERVICE, 999, 3))
        .await
        .unwrap();
    let r = c
        .get(
            lagging,
            &format!("/api/v1/traces/{}?consistency=linearizable", trace_hex(999)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // The snapshot survives a restart of the node that installed it.
    c.kill(lagging);
    c.spawn(lagging);
    c.wait_healthy(lagging).await;
    common::wait_until(
        Duration::from_secs(30),
        "restarted node serves local reads",
        || async {
            traces_of_service(&c, lagging, SERVICE, "local")
                .await
                .is_ok_and(|s| s.len() == (acked.len() + 1) * 3)
        },
    )
    .await;
}
