//! `tael-raft member add|promote|remove|list`: the learner → voter flow.

use std::time::Duration;

use clap::Subcommand;

use crate::http_client;

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a running, uninitialized node as a learner and wait for it to
    /// catch up.
    Add {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        /// The new node's id (never one a removed node had).
        #[arg(long)]
        node_id: u64,
        /// The new node's node-to-node address.
        #[arg(long)]
        raft_addr: String,
        /// How long to wait for it to catch up; 0 returns at once.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
    /// Make a learner a voter (joint consensus).
    Promote {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        #[arg(long)]
        node_id: u64,
    },
    /// Remove a voter or learner; its id is retired for good.
    Remove {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        #[arg(long)]
        node_id: u64,
    },
    /// List members, their roles and retired ids.
    List {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
}

fn url(server: &str, path: &str) -> String {
    format!("{}{path}", server.trim_end_matches('/'))
}

async fn call(
    method: &str,
    url: &str,
    body: &[u8],
    wait: Duration,
) -> Result<serde_json::Value, String> {
    let r = http_client::request(method, url, Some("application/json"), body, wait).await?;
    let v = r.json()?;
    if !(200..300).contains(&r.status) {
        return Err(format!(
            "{method} {url} failed ({}): {}",
            r.status,
            v["error"].as_str().unwrap_or("no error message")
        ));
    }
    Ok(v)
}

/// Runs the command and returns what to print.
pub async fn run(cmd: MemberCommand) -> Result<String, String> {
    let short = Duration::from_secs(60);
    match cmd {
        MemberCommand::Add {
            server,
            node_id,
            raft_addr,
            wait_secs,
        } => {
            let body = serde_json::json!({
                "node_id": node_id, "raft_addr": raft_addr, "wait_secs": wait_secs,
            });
            let wait = Duration::from_secs(wait_secs) + short;
            let v = call(
                "POST",
                &url(&server, "/api/v1/cluster/members"),
                body.to_string().as_bytes(),
                wait,
            )
            .await?;
            Ok(if v["caught_up"] == true {
                format!("node {node_id} added as a learner and caught up; promote it with `tael-raft member promote --node-id {node_id}`\n")
            } else {
                format!("node {node_id} added as a learner; it is still catching up (see `tael-raft status`)\n")
            })
        }
        MemberCommand::Promote { server, node_id } => {
            let path = format!("/api/v1/cluster/members/{node_id}/promote");
            call("POST", &url(&server, &path), b"", short).await?;
            Ok(format!("node {node_id} is a voter\n"))
        }
        MemberCommand::Remove { server, node_id } => {
            let path = format!("/api/v1/cluster/members/{node_id}");
            call("DELETE", &url(&server, &path), b"", short).await?;
            Ok(format!("node {node_id} removed; its id is retired\n"))
        }
        MemberCommand::List { server, output } => {
            let r = http_client::get(&url(&server, "/api/v1/cluster/members")).await?;
            let v = r.json()?;
            if r.status != 200 {
                return Err(format!(
                    "listing members failed ({}): {}",
                    r.status, v["error"]
                ));
            }
            if output == "json" {
                return Ok(format!(
                    "{}\n",
                    serde_json::to_string_pretty(&v).expect("JSON values serialize")
                ));
            }
            let mut out = format!("{:<6} {:<8} {:<22} LEADER\n", "ID", "ROLE", "RAFT");
            for m in v["members"].as_array().into_iter().flatten() {
                let leader = if m["node_id"] == v["leader"] { "*" } else { "" };
                out.push_str(&format!(
                    "{:<6} {:<8} {:<22} {leader}\n",
                    m["node_id"],
                    m["role"].as_str().unwrap_or("?"),
                    m["raft_addr"].as_str().unwrap_or("?")
                ));
            }
            if v["joint"] == true {
                out.push_str("a membership change is in progress (joint configuration)\n");
            }
            let retired: Vec<String> = v["retired_node_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| x.to_string())
                .collect();
            if !retired.is_empty() {
                out.push_str(&format!("retired ids: {}\n", retired.join(", ")));
            }
            Ok(out)
        }
    }
}
