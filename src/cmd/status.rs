//! `tael-raft status`: leader, term, commit/applied index per node and lag.

use crate::http_client;

pub async fn run(server: &str, json_output: bool) -> Result<String, String> {
    let url = format!("{}/api/v1/cluster", server.trim_end_matches('/'));
    let resp = http_client::get(&url).await?;
    let v = resp.json()?;
    if resp.status != 200 {
        return Err(format!("status failed ({}): {}", resp.status, v["error"]));
    }
    if json_output {
        return Ok(serde_json::to_string_pretty(&v).expect("JSON values serialize"));
    }
    Ok(render_table(&v))
}

pub fn render_table(v: &serde_json::Value) -> String {
    let dash = |x: &serde_json::Value| {
        if x.is_null() {
            "-".to_string()
        } else {
            x.to_string().trim_matches('"').to_string()
        }
    };
    let mut out = format!(
        "cluster {}  leader {}  term {}\n",
        dash(&v["cluster_id"]),
        dash(&v["leader"]),
        dash(&v["term"])
    );
    out.push_str(&format!(
        "{:<4} {:<8} {:<10} {:<22} {:<22} {:>6} {:>10} {:>10} {:>10} {:>8}\n",
        "ID", "ROLE", "STATE", "RAFT", "REST", "TERM", "LAST_LOG", "COMMIT", "APPLIED", "LAG"
    ));
    for n in v["nodes"].as_array().into_iter().flatten() {
        let state = if n["reachable"] == true {
            dash(&n["state"])
        } else {
            "unreachable".to_string()
        };
        out.push_str(&format!(
            "{:<4} {:<8} {:<10} {:<22} {:<22} {:>6} {:>10} {:>10} {:>10} {:>8}\n",
            dash(&n["id"]),
            dash(&n["role"]),
            state,
            dash(&n["raft_addr"]),
            dash(&n["rest_addr"]),
            dash(&n["term"]),
            dash(&n["last_log_index"]),
            dash(&n["committed_index"]),
            dash(&n["applied_index"]),
            dash(&n["lag"]),
        ));
    }
    out
}
