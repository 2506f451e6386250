//! Membership through the CLI: a new node joins as a learner, catches up by
//! snapshot, becomes a voter; a voter (the leader) is removed and its id is
//! never admitted again; bad requests are refused with a clear error.

mod common;

use std::process::Command;

use common::*;

const SERVICE: &str = "members";

fn member(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("member")
        .args(args)
        .output()
        .expect("run tael-raft member");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn members_json(c: &TestCluster, via: u64) -> serde_json::Value {
    let r = c.get(via, "/api/v1/cluster/members").await;
    assert_eq!(r.status, 200);
    r.json().unwrap()
}

fn role_of(v: &serde_json::Value, id: u64) -> Option<String> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node_id"] == id)
        .map(|m| m["role"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joins_by_snapshot_is_promoted_and_a_removed_id_is_retired() {
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
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let follower_url = format!("http://{}", c.node(follower).rest);

    let mut client = c.otlp_client(follower).await;
    for i in 0..60u64 {
        export(&mut client, trace_request(SERVICE, i, 2))
            .await
            .unwrap();
    }
    let purged = c.node_entry(leader, leader).await["purged_index"]
        .as_u64()
        .unwrap();
    assert!(purged > 10, "the leader purged its log behind a snapshot");

    // Join node 4 through a follower (the request is relayed to the leader).
    let new = c.add_node();
    c.wait_healthy(new).await;
    let raft4 = c.node(new).raft.clone();
    let (ok, out) = member(&[
        "add",
        "--server",
        &follower_url,
        "--node-id",
        "4",
        "--raft-addr",
        &raft4,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("caught up"), "{out}");
    let v = members_json(&c, leader).await;
    assert_eq!(role_of(&v, new).as_deref(), Some("learner"), "{v}");
    let m = String::from_utf8(c.get(new, "/metrics").await.body).unwrap();
    assert!(
        metric(&m, "tael_snapshots_installed_total") >= 1,
        "the learner needed a snapshot: the leader had purged its log"
    );

    let (ok, out) = member(&["promote", "--server", &follower_url, "--node-id", "4"]);
    assert!(ok, "{out}");
    let v = members_json(&c, follower).await;
    assert_eq!(role_of(&v, new).as_deref(), Some("voter"), "{v}");

    // The new voter serves linearizable reads with every acknowledged trace.
    for i in 0..60u64 {
        let r = c
            .get(
                new,
                &format!("/api/v1/traces/{}?consistency=linearizable", trace_hex(i)),
            )
            .await;
        assert_eq!(r.status, 200, "trace {i} on the new node");
        assert_eq!(r.json().unwrap()["span_count"], 2);
    }

    // Remove the leader itself; the rest elect a new one and keep writing.
    let (ok, out) = member(&[
        "remove",
        "--server",
        &follower_url,
        "--node-id",
        &leader.to_string(),
    ]);
    assert!(ok, "{out}");
    c.kill(leader);
    let new_leader = c.wait_leader().await;
    assert_ne!(new_leader, leader);
    let v = members_json(&c, new_leader).await;
    assert_eq!(role_of(&v, leader), None, "{v}");
    assert_eq!(v["retired_node_ids"], serde_json::json!([leader]));
    let mut client = c.otlp_client(new).await;
    export(&mut client, trace_request(SERVICE, 1000, 2))
        .await
        .expect("the shrunk cluster takes writes");

    // A retired id is never admitted again, even at a fresh address.
    let url = format!("http://{}", c.node(new_leader).rest);
    let (ok, out) = member(&[
        "add",
        "--server",
        &url,
        "--node-id",
        &leader.to_string(),
        "--raft-addr",
        "127.0.0.1:1",
    ]);
    assert!(!ok && out.contains("never reused"), "{out}");

    // Bad requests: clear errors, nothing changes.
    for (args, needle) in [
        (
            vec![
                "add",
                "--server",
                &url,
                "--node-id",
                "4",
                "--raft-addr",
                "127.0.0.1:2",
            ],
            "already a voter",
        ),
        (
            vec![
                "add",
                "--server",
                &url,
                "--node-id",
                "9",
                "--raft-addr",
                "nowhere",
            ],
            "socket address",
        ),
        (
            vec!["promote", "--server", &url, "--node-id", "9"],
            "not a member",
        ),
        (
            vec!["remove", "--server", &url, "--node-id", "9"],
            "not a member",
        ),
    ] {
        let (ok, out) = member(&args);
        assert!(!ok && out.contains(needle), "{args:?}: {out}");
    }
    let r = tael_raft::http_client::post_json(
        &format!("{url}/api/v1/cluster/members"),
        &serde_json::json!({ "node_id": "four" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let (ok, out) = member(&["list", "--server", &url]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("voter")).count(),
        3,
        "{out}"
    );
}
