//! `tael-raft init`: bootstrap a new cluster exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::http_client;

/// What init created.
pub struct Initialized {
    pub cluster_id: String,
    /// The first admin key, when asked for.
    pub admin_key: Option<String>,
}

/// Asks the node at `server` to create the cluster. Waits up to `wait` for
/// the node and every member to come up (the server answers 503 while a
/// member is unreachable, having adopted nothing, so asking again is safe);
/// a cluster that already exists is an error.
pub async fn run(
    server: &str,
    members: &[(u64, String)],
    wait: Duration,
) -> Result<String, String> {
    Ok(run_with(server, members, wait, false).await?.cluster_id)
}

/// [`run`], also creating the cluster's first admin key when
/// `create_admin_key`.
pub async fn run_with(
    server: &str,
    members: &[(u64, String)],
    wait: Duration,
    create_admin_key: bool,
) -> Result<Initialized, String> {
    let mut map = BTreeMap::new();
    for (id, addr) in members {
        if map.insert(*id, addr.clone()).is_some() {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    let url = format!("{}/api/v1/cluster/init", server.trim_end_matches('/'));
    let body = json!({ "members": map, "create_admin_key": create_admin_key });
    let deadline = Instant::now() + wait;
    loop {
        match http_client::post_json(&url, &body).await {
            Ok(resp) if resp.status == 200 => return initialized(resp.json()?, create_admin_key),
            Ok(resp) if resp.status == 503 && Instant::now() < deadline => {}
            Ok(resp) => {
                let msg = resp
                    .json()
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string));
                let msg = msg.unwrap_or_else(|| String::from_utf8_lossy(&resp.body).into_owned());
                if resp.status == 503 {
                    return Err(format!(
                        "init still unavailable after waiting {}s: {msg}; run init again once every member is up (a retry completes a partial init)",
                        wait.as_secs()
                    ));
                }
                return Err(format!("init refused ({}): {msg}", resp.status));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("cannot reach {server}: {e}"))
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn initialized(v: serde_json::Value, create_admin_key: bool) -> Result<Initialized, String> {
    let cluster_id = v["cluster_id"].as_str().unwrap_or_default().to_string();
    if !create_admin_key {
        return Ok(Initialized {
            cluster_id,
            admin_key: None,
        });
    }
    match v["admin_key"]["key"].as_str() {
        Some(key) => Ok(Initialized {
            cluster_id,
            admin_key: Some(key.to_string()),
        }),
        None => Err(format!(
            "cluster {cluster_id} is initialized, but {}",
            v["admin_key_error"]
                .as_str()
                .unwrap_or("the server sent no admin key")
        )),
    }
}

/// Writes a key to `path`, readable by its owner only (created with mode
/// 0600, never world-readable even for a moment), and fsyncs it.
pub fn write_key_file(path: &std::path::Path, key: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.write_all(format!("{key}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tael_consensus::log_store::sync_dir(dir)
            .map_err(|e| format!("syncing {}: {e}", dir.display()))?;
    }
    Ok(())
}
