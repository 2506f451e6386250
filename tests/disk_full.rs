//! A full disk on one node: the other two keep acknowledging writes, the
//! node whose disk filled exits with an error (it must not stay up as a
//! member that neither votes nor replicates), and once space is back it
//! restarts, catches up and serves every acknowledged write.
//!
//! Needs root (the node's data directory is a size-limited tmpfs).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SERVICE: &str = "disk-full";
/// The full node's data directory: room for its first writes only.
const TMPFS_SIZE: &str = "size=96m";

/// Mounts a size-limited tmpfs at `dir`; unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Takes every free byte of the file system holding `dir`.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_fills_exits_and_catches_up_once_space_is_back() {
    let mut c = TestCluster::start(3, &[]);
    // Node 3 gets its data directory on a small tmpfs before it holds anything.
    c.kill(3);
    let data3 = c.node(3).data_dir.clone();
    let _ = std::fs::remove_dir_all(&data3);
    let _mount = Tmpfs::mount(&data3);
    c.spawn(3);
    c.wait_healthy(3).await;
    c.init().await;
    let leader = c.wait_leader().await;
    let writer = (1..=2).find(|&n| n != 3).unwrap_or(leader);
    let mut client = c.otlp_client(writer).await;
    for i in 0..20 {
        export(&mut client, trace_request(SERVICE, i, 4))
            .await
            .expect("export before the disk fills");
    }

    let filler = fill(&data3);
    // The other two still form a quorum: writes keep being acknowledged
    // while node 3 cannot write.
    let mut acked = 20;
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        match export(&mut client, trace_request(SERVICE, acked, 4)).await {
            Ok(_) => acked += 1,
            Err(e) => panic!("an export failed while two nodes were healthy: {e}"),
        }
        if let Some(status) = c.wait_exit(3, Duration::from_millis(50)) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 kept running with a full disk:\n{}",
            c.node(3).log_text()
        );
    };
    assert!(
        !exit.success(),
        "a node whose consensus stopped exits with an error"
    );
    let log = c.node(3).log_text();
    assert!(
        log.contains("the consensus core stopped"),
        "node 3 says why it exits:\n{log}"
    );
    for i in 0..10 {
        export(&mut client, trace_request(SERVICE, acked + i, 4))
            .await
            .expect("export while node 3 is down");
    }
    acked += 10;

    // Space is back: node 3 restarts, catches up and has every write.
    std::fs::remove_file(&filler).unwrap();
    c.spawn(3);
    c.wait_healthy(3).await;
    let applied = c.node_entry(leader, leader).await["applied_index"]
        .as_u64()
        .unwrap();
    c.wait_applied(3, applied).await;
    let traces = traces_of_service(&c, 3, SERVICE, "local").await.unwrap();
    let mut ids: Vec<&str> = traces.iter().map(|(t, _)| t.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, acked, "every acknowledged trace, once");
    assert_eq!(traces.len() as u64, acked * 4, "every span, once");
}
