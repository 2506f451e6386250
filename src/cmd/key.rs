//! `tael-raft key create|list|revoke`: the cluster's API keys (admin).

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use crate::http_client;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a key; prints it once (it is never shown again).
    Create {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        /// What the key is for, e.g. "grafana" or "collector-eu".
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["reader", "writer", "admin"])]
        role: String,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Revoke a key on every node.
    Revoke {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        /// The key's id (the 16 hex characters after `tael_`).
        id: String,
    },
}

async fn call(method: &str, url: &str, body: &[u8]) -> Result<serde_json::Value, String> {
    let r = http_client::request(method, url, Some("application/json"), body, TIMEOUT).await?;
    let v = r.json()?;
    if !(200..300).contains(&r.status) {
        let msg = v["error"].as_str().unwrap_or("no error message");
        return Err(format!("{method} {url}: {} {msg}", r.status));
    }
    Ok(v)
}

/// Runs `cmd` and returns what to print.
pub async fn run(cmd: KeyCommand) -> Result<String, String> {
    match cmd {
        KeyCommand::Create {
            server,
            name,
            role,
            output,
        } => {
            let body = json!({ "name": name, "role": role }).to_string();
            let v = call("POST", &url(&server, "/api/v1/keys"), body.as_bytes()).await?;
            Ok(match output.as_str() {
                "json" => format!("{v}\n"),
                _ => format!(
                    "created key {} ({}, {})\n{}\n(shown once: store it now)\n",
                    v["id"].as_str().unwrap_or_default(),
                    v["name"].as_str().unwrap_or_default(),
                    v["role"].as_str().unwrap_or_default(),
                    v["key"].as_str().unwrap_or_default()
                ),
            })
        }
        KeyCommand::List { server, output } => {
            let v = call("GET", &url(&server, "/api/v1/keys"), b"").await?;
            Ok(match output.as_str() {
                "json" => format!("{v}\n"),
                _ => table(&v),
            })
        }
        KeyCommand::Revoke { server, id } => {
            let path = format!("/api/v1/keys/{id}");
            call("DELETE", &url(&server, &path), b"").await?;
            Ok(format!("revoked key {id}\n"))
        }
    }
}

fn url(server: &str, path: &str) -> String {
    format!("{}{path}", server.trim_end_matches('/'))
}

fn table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<18} {:<24} {:<7} {:<31} {}\n",
        "ID", "NAME", "ROLE", "CREATED", "STATE"
    );
    for k in v["keys"].as_array().into_iter().flatten() {
        let state = if k["revoked"].as_bool() == Some(true) {
            "revoked"
        } else {
            "active"
        };
        out.push_str(&format!(
            "{:<18} {:<24} {:<7} {:<31} {state}\n",
            k["id"].as_str().unwrap_or_default(),
            k["name"].as_str().unwrap_or_default(),
            k["role"].as_str().unwrap_or_default(),
            k["created_at"].as_str().unwrap_or_default(),
        ));
    }
    out
}
