//! SIGKILL the leader mid-load: a new leader takes writes, every acknowledged
//! trace is readable linearizably from every surviving node, and the killed
//! node catches up after a restart.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SERVICE: &str = "failover";
const SPANS_PER_TRACE: u64 = 4;
const WRITERS: u64 = 4;
/// Upper bound on exports per writer, so the load loop always ends.
const MAX_EXPORTS_PER_WRITER: u64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3, &[]);
    c.init().await;
    let old_leader = c.wait_leader().await;

    // Writers export one trace per request to every node in turn (followers
    // forward) and remember what was acknowledged, and when.
    let acked: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let stop_at = Arc::new(Mutex::new(None::<Instant>));
    let mut clients = HashMap::new();
    for n in &c.nodes {
        clients.insert(n.id, c.otlp_client(n.id).await);
    }
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let acked = acked.clone();
        let stop_at = stop_at.clone();
        let mut clients = clients.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = 0u64;
            for i in 0..MAX_EXPORTS_PER_WRITER {
                if stop_at.lock().unwrap().is_some_and(|t| Instant::now() > t) {
                    break;
                }
                let trace_no = w * 1_000_000 + i;
                let target = 1 + (trace_no % 3);
                let client = clients.get_mut(&target).unwrap();
                match export(client, trace_request(SERVICE, trace_no, SPANS_PER_TRACE)).await {
                    Ok(_) => acked.lock().unwrap().push((trace_no, Instant::now())),
                    Err(_) => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            failures
        }));
    }

    // Let the load run, then kill the leader in the middle of it.
    wait_until(
        Duration::from_secs(30),
        "some writes acknowledged",
        || async { acked.lock().unwrap().len() >= 50 },
    )
    .await;
    let killed_at = Instant::now();
    c.kill(old_leader);

    // A new leader must take writes within a few seconds.
    let new_leader = c.wait_leader().await;
    assert_ne!(new_leader, old_leader);
    wait_until(
        Duration::from_secs(15),
        "writes acknowledged after the kill",
        || async {
            acked
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, t)| *t > killed_at)
                .count()
                >= 20
        },
    )
    .await;
    let first_ack_after_kill = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, t)| *t > killed_at)
        .map(|(_, t)| *t)
        .min()
        .unwrap();
    eprintln!(
        "first acknowledged write after the kill: {:?}",
        first_ack_after_kill - killed_at
    );
    *stop_at.lock().unwrap() = Some(Instant::now());
    let mut failures = 0;
    for t in tasks {
        failures += t.await.unwrap();
    }
    let acked: BTreeSet<String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| trace_hex(*n))
        .collect();
    eprintln!(
        "{} traces acknowledged, {failures} exports failed (retryable)",
        acked.len()
    );

    // Every acknowledged trace, complete and exactly once, on every survivor.
    for n in c
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|n| n.id)
        .collect::<Vec<_>>()
    {
        let spans = traces_of_service(&c, n, SERVICE, "linearizable")
            .await
            .unwrap();
        check_spans(&spans, &acked, &format!("node {n} (linearizable)"));
    }

    // The killed node comes back and catches up.
    c.spawn(old_leader);
    c.wait_healthy(old_leader).await;
    let commit = c.node_entry(new_leader, new_leader).await["committed_index"]
        .as_u64()
        .unwrap();
    c.wait_applied(old_leader, commit).await;
    let spans = traces_of_service(&c, old_leader, SERVICE, "local")
        .await
        .unwrap();
    check_spans(
        &spans,
        &acked,
        &format!("restarted node {old_leader} (local)"),
    );
    let spans = traces_of_service(&c, old_leader, SERVICE, "linearizable")
        .await
        .unwrap();
    check_spans(
        &spans,
        &acked,
        &format!("restarted node {old_leader} (linearizable)"),
    );
}

/// All acknowledged traces present with all their spans; no span twice.
fn check_spans(spans: &[(String, String)], acked: &BTreeSet<String>, who: &str) {
    let mut per_trace: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (t, s) in spans {
        assert!(
            per_trace.entry(t).or_default().insert(s),
            "{who}: span {t}/{s} returned twice"
        );
    }
    let missing: Vec<&String> = acked
        .iter()
        .filter(|t| !per_trace.contains_key(t.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{who}: {} acknowledged traces missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for t in acked {
        assert_eq!(
            per_trace[t.as_str()].len() as u64,
            SPANS_PER_TRACE,
            "{who}: trace {t} incomplete"
        );
    }
}
