//! Log damage on one node: a torn tail is cut off and the node rejoins; damage
//! in the middle of the log stops the node with a clear error.

mod common;

use std::fs::{self, OpenOptions};

use common::*;

const SERVICE: &str = "torn";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_repaired_and_mid_log_damage_refuses_to_start() {
    let mut c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let victim = (1..=3).find(|&n| n != leader).unwrap();
    let mut client = c.otlp_client(leader).await;
    for i in 0..30 {
        export(&mut client, trace_request(SERVICE, i, 2))
            .await
            .unwrap();
    }

    // Cut the last record of the victim's log in half. An idle log ends with
    // a sync mark written without an fsync, so that is the record torn, as a
    // power cut may tear it: a torn tail that costs no acknowledged entry.
    c.kill(victim);
    let seg = c.node(victim).wal_segments().pop().unwrap();
    // A segment may be preallocated: its data ends before its zeros.
    let bytes = fs::read(&seg).unwrap();
    let written = tael_consensus::log_store::written_len(&bytes) as u64;
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(written - 9)
        .unwrap();

    c.spawn(victim);
    c.wait_healthy(victim).await;
    let text = String::from_utf8(c.get(victim, "/metrics").await.body).unwrap();
    assert_eq!(
        metric(&text, "tael_wal_torn_tail_repairs_total"),
        1,
        "the torn tail is counted"
    );
    assert!(
        c.node(victim).log_text().contains("torn tail"),
        "and reported in the log"
    );

    // It rejoins: new writes reach it and its data is complete.
    for i in 30..40 {
        export(&mut client, trace_request(SERVICE, i, 2))
            .await
            .unwrap();
    }
    let spans = traces_of_service(&c, victim, SERVICE, "linearizable")
        .await
        .unwrap();
    assert_eq!(
        spans.len(),
        80,
        "all 40 traces of 2 spans on the repaired node"
    );

    // Now damage a record in the middle of its log: it must refuse to start.
    c.kill(victim);
    let seg = c.node(victim).wal_segments().pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    assert!(bytes.len() > 200);
    bytes[100] ^= 0x10;
    fs::write(&seg, &bytes).unwrap();
    c.spawn(victim);
    let status = c
        .wait_exit(victim, std::time::Duration::from_secs(20))
        .expect("node must stop by itself");
    assert!(!status.success());
    assert!(
        c.node(victim).log_text().contains("refusing to start"),
        "a clear error names the problem"
    );
    assert_eq!(
        fs::read(&seg).unwrap(),
        bytes,
        "the damaged log is left as it was for inspection"
    );

    // The rest of the cluster keeps serving.
    export(&mut client, trace_request(SERVICE, 100, 2))
        .await
        .unwrap();
}
