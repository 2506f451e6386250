//! `tael-raft dev-cluster`: a local 3-node cluster on loopback, for trying
//! tael-raft out. Starts the nodes as child processes with data under one
//! directory, initializes the cluster on first start, prints the endpoints,
//! and stops everything cleanly on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::http_client;

/// Under the cluster's directory: the admin key made at init.
pub const ADMIN_KEY_FILE: &str = "admin.key";

pub struct DevNode {
    pub id: u64,
    pub rest: String,
    pub raft: String,
    pub otlp_grpc: String,
    pub otlp_http: String,
}

/// Node `id` (from 1) listens on 7701/7702/4317/4318 shifted by 10 per node.
pub fn dev_node(id: u64) -> DevNode {
    let shift = (id - 1) * 10;
    DevNode {
        id,
        rest: format!("127.0.0.1:{}", 7701 + shift),
        raft: format!("127.0.0.1:{}", 7702 + shift),
        otlp_grpc: format!("127.0.0.1:{}", 4317 + shift),
        otlp_http: format!("127.0.0.1:{}", 4318 + shift),
    }
}

fn spawn(exe: &Path, dir: &Path, n: &DevNode) -> Result<Child, String> {
    let data = dir.join(format!("node{}", n.id));
    std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    let log =
        std::fs::File::create(dir.join(format!("node{}.log", n.id))).map_err(|e| e.to_string())?;
    Command::new(exe)
        .args(["serve", "--node-id", &n.id.to_string()])
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--raft-addr",
            &n.raft,
            "--rest-addr",
            &n.rest,
            "--otlp-grpc-addr",
            &n.otlp_grpc,
            "--otlp-http-addr",
            &n.otlp_http,
        ])
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting node {}: {e}", n.id))
}

async fn wait_healthy(rest: &str, deadline: Instant) -> Result<(), String> {
    loop {
        if let Ok(r) = http_client::get(&format!("http://{rest}/healthz")).await {
            if r.status == 200 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("node at {rest} did not come up; see its log"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(dir: PathBuf, nodes: u64) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let plan: Vec<DevNode> = (1..=nodes).map(dev_node).collect();
    let mut children = Vec::new();
    for n in &plan {
        children.push(spawn(&exe, &dir, n)?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in &plan {
        wait_healthy(&n.rest, deadline).await?;
    }
    let first = format!("http://{}", plan[0].rest);
    let cluster = http_client::get(&format!("{first}/api/v1/cluster"))
        .await?
        .json()?;
    let key_file = dir.join(ADMIN_KEY_FILE);
    if cluster["cluster_id"].is_null() {
        let members: Vec<(u64, String)> = plan.iter().map(|n| (n.id, n.raft.clone())).collect();
        let done = super::init::run_with(&first, &members, Duration::from_secs(30), true).await?;
        println!("initialized cluster {}", done.cluster_id);
        // A key file left by an earlier cluster in this directory is stale.
        let _ = std::fs::remove_file(&key_file);
        super::init::write_key_file(&key_file, &done.admin_key.unwrap_or_default())?;
    } else {
        println!(
            "cluster {} already initialized; restarted its nodes",
            cluster["cluster_id"]
        );
    }
    println!(
        "\ntael-raft dev cluster: data and logs under {}",
        dir.display()
    );
    println!(
        "{:<6} {:<24} {:<24} {:<24} {:<24}",
        "NODE", "REST", "OTLP/gRPC", "OTLP/HTTP", "RAFT"
    );
    for n in &plan {
        println!(
            "{:<6} http://{:<17} {:<24} http://{:<17} {:<24}",
            n.id, n.rest, n.otlp_grpc, n.otlp_http, n.raft
        );
    }
    println!(
        "\nadmin key: {} (the nodes listen on loopback only, so auth is off; \
         with --auth required, present it as TAEL_API_KEY)",
        key_file.display()
    );
    println!("\nstatus: tael-raft status --server {first}\nCtrl-C stops the cluster.");

    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    println!("stopping...");
    for c in &children {
        if let Some(pid) = c.id() {
            // SIGTERM lets each node stop serving and shut Raft down cleanly.
            let _ = crate::sys::send_signal(pid, crate::sys::SIGTERM);
        }
    }
    for mut c in children {
        if tokio::time::timeout(Duration::from_secs(10), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
    }
    Ok(())
}
