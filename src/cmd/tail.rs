//! `tael-raft tail traces|logs`: follows a node's live tail (server-sent
//! events from `/api/v1/traces/live` or `/api/v1/logs/live`) and prints one
//! line per span or log record, or the JSON of each with `--output json`.

use crate::http_client;

/// What to follow and how to print it.
pub struct TailArgs {
    pub server: String,
    /// `traces` or `logs`.
    pub signal: String,
    /// Query filters: `service`, `status`, `severity`.
    pub filters: Vec<(&'static str, String)>,
    pub json_output: bool,
}

pub async fn run(args: TailArgs) -> Result<(), String> {
    let path = match args.signal.as_str() {
        "traces" => "/api/v1/traces/live",
        "logs" => "/api/v1/logs/live",
        other => return Err(format!("tail traces or logs, not {other:?}")),
    };
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(args.filters.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let url = format!("{}{path}?{query}", args.server.trim_end_matches('/'));
    let mut event = String::new();
    let mut lagged = None;
    http_client::stream_lines(&url, |line| {
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            let data = data.trim_start();
            if event == "lagged" {
                lagged = Some(data.to_string());
                return false;
            }
            if args.json_output {
                println!("{data}");
            } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(data) {
                println!("{}", render(&event, &v));
            }
        }
        true
    })
    .await?;
    match lagged {
        Some(why) => Err(format!("disconnected for falling behind: {why}")),
        None => Err("the server ended the stream".into()),
    }
}

/// One line: a span's start, service, name, duration, status and trace id,
/// or a log record's time, severity, service and body.
pub fn render(event: &str, v: &serde_json::Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    match event {
        "span" => format!(
            "{} {} {} {:.3}ms {} {}",
            s("start_time"),
            s("service"),
            s("operation"),
            v["duration_ms"].as_f64().unwrap_or(0.0),
            s("status"),
            s("trace_id"),
        ),
        _ => format!(
            "{} {} {} {}",
            s("timestamp"),
            s("severity"),
            s("service"),
            s("body")
        ),
    }
}
