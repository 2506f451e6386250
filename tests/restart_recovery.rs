//! A restarted node's state machine starts where it was before the crash,
//! even when the state machine lost what it had applied since its last
//! sync: the committed log id is kept with the log (`save_committed`) and
//! start-up re-applies the log up to it, before any leader is heard from.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tael_raft::http_client;

const SERVICE: &str = "restart-recovery";

/// Copies a directory tree (the node is stopped while this runs).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

async fn readyz(c: &TestCluster, id: u64) -> serde_json::Value {
    let r = http_client::get(&c.node(id).url("/readyz")).await.unwrap();
    r.json().unwrap()
}

async fn applied_index(c: &TestCluster, id: u64) -> u64 {
    readyz(c, id).await["applied_index"].as_u64().unwrap()
}

/// Exports one trace through the leader and waits until every node
/// applied it; returns the leader's applied index after it.
async fn write_trace(c: &TestCluster, trace_no: u64) -> u64 {
    let leader = c.wait_leader().await;
    let mut client = c.otlp_client(leader).await;
    export(&mut client, trace_request(SERVICE, trace_no, 2))
        .await
        .expect("export");
    let index = applied_index(c, leader).await;
    for id in 1..=3 {
        c.wait_applied(id, index).await;
    }
    index
}

fn kill_all(c: &mut TestCluster) {
    for id in 1..=3 {
        c.kill(id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_reapplies_up_to_its_saved_commit_without_a_leader() {
    let mut c = TestCluster::start(3, &[]);
    c.init().await;
    let before = write_trace(&c, 1).await;
    kill_all(&mut c);
    // The state machine as it was then: what a power cut would leave of
    // it if nothing it applied later had reached the disk.
    let sm_dir = c.node(1).data_dir.join("sm");
    let old_sm = c.dir.path().join("node1-sm-before");
    copy_tree(&sm_dir, &old_sm);

    for id in 1..=3 {
        c.spawn(id);
    }
    let mut after = before;
    for trace_no in 2..=4 {
        after = write_trace(&c, trace_no).await;
    }
    assert!(after > before);
    // The committed id is written within milliseconds of its entry's fsync.
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill_all(&mut c);
    std::fs::remove_dir_all(&sm_dir).unwrap();
    copy_tree(&old_sm, &sm_dir);

    // Node 1 alone: no leader, so nothing but its own log can bring it
    // back to `after`.
    c.spawn(1);
    c.wait_healthy(1).await;
    // (It may still name the leader of its last term, from its vote: that
    // leader is down, and `/readyz` must not call a node behind ready.)
    let r = readyz(&c, 1).await;
    assert!(
        r["applied_index"].as_u64().unwrap() >= after,
        "the state machine restarted behind what it had applied before the crash: {r}"
    );
    assert!(
        r["recovered_committed_index"].as_u64().unwrap() >= after,
        "the saved commit trails what was applied before the crash: {r}"
    );
    let local = traces_of_service(&c, 1, SERVICE, "local").await.unwrap();
    let traces: std::collections::BTreeSet<String> = local.into_iter().map(|(t, _)| t).collect();
    for trace_no in 1..=4 {
        assert!(
            traces.contains(&trace_hex(trace_no)),
            "trace {trace_no} missing from a local read after the restart"
        );
    }
}
