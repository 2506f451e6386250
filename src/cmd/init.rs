//! `tael-raft init`: bootstrap a new cluster exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::http_client;

/// Asks the node at `server` to create the cluster. Waits up to `wait` for
/// the node to come up; a cluster that already exists is an error.
pub async fn run(
    server: &str,
    members: &[(u64, String)],
    wait: Duration,
) -> Result<String, String> {
    let mut map = BTreeMap::new();
    for (id, addr) in members {
        if map.insert(*id, addr.clone()).is_some() {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    let url = format!("{}/api/v1/cluster/init", server.trim_end_matches('/'));
    let body = json!({ "members": map });
    let deadline = Instant::now() + wait;
    loop {
        match http_client::post_json(&url, &body).await {
            Ok(resp) if resp.status == 200 => {
                let v = resp.json()?;
                return Ok(v["cluster_id"].as_str().unwrap_or_default().to_string());
            }
            Ok(resp) if resp.status == 503 && Instant::now() < deadline => {}
            Ok(resp) => {
                let msg = resp
                    .json()
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string));
                return Err(format!(
                    "init refused ({}): {}",
                    resp.status,
                    msg.unwrap_or_else(|| String::from_utf8_lossy(&resp.body).into_owned())
                ));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("cannot reach {server}: {e}"))
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
