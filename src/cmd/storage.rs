//! `tael-raft storage`: what each tier holds per signal, the retention
//! settings and the last retention cut (`GET /api/v1/storage`).

use serde_json::Value;

use crate::http_client;
use crate::model::time::rfc3339_nanos;

pub async fn run(server: &str, json_output: bool) -> Result<String, String> {
    let url = format!("{}/api/v1/storage", server.trim_end_matches('/'));
    let resp = http_client::get(&url).await?;
    let v = resp.json()?;
    if resp.status != 200 {
        return Err(format!("storage failed ({}): {}", resp.status, v["error"]));
    }
    if json_output {
        return Ok(serde_json::to_string_pretty(&v).expect("JSON values serialize"));
    }
    Ok(render_table(&v))
}

pub fn render_table(v: &Value) -> String {
    let mut out = format!(
        "{:<14} {:<5} {:>12} {:>12} {:<31} {:<31}\n",
        "SIGNAL", "TIER", "~RECORDS", "BYTES", "OLDEST", "NEWEST"
    );
    let hot = &v["tiers"]["hot"];
    for signal in ["spans", "logs", "metric_points", "blobs"] {
        let s = &hot[signal];
        out.push_str(&format!(
            "{:<14} {:<5} {:>12} {:>12} {:<31} {:<31}\n",
            signal,
            "hot",
            count(&s["records_estimate"]),
            bytes(&s["disk_bytes"]),
            time(&s["oldest_unix_nanos"]),
            time(&s["newest_unix_nanos"]),
        ));
    }
    let cold = &v["tiers"]["cold"];
    if cold.is_object() {
        for signal in ["spans", "logs", "metric_points"] {
            let s = &cold[signal];
            out.push_str(&format!(
                "{:<14} {:<5} {:>12} {:>12} {:<31} {:<31}\n",
                signal,
                "cold",
                count(&s["rows"]),
                bytes(&s["bytes"]),
                time(&s["oldest_unix_nanos"]),
                time(&s["newest_unix_nanos"]),
            ));
        }
    }
    out.push_str(&format!(
        "hot tier on disk: {} (journal included); cold files: {}\n",
        bytes(&hot["total_disk_bytes"]),
        cold_files(cold),
    ));
    if let Some(missing) = cold["missing_files"].as_array().filter(|m| !m.is_empty()) {
        out.push_str(&format!(
            "MISSING cold files (reads of them fail): {}\n",
            missing.len()
        ));
    }
    let r = &v["retention"];
    out.push_str(&format!(
        "retention: traces {}, logs {}, metrics {}, LLM payloads {}; cut every {}; hot window {}\n",
        secs(&r["traces_secs"]),
        secs(&r["logs_secs"]),
        secs(&r["metrics_secs"]),
        secs(&r["llm_payloads_secs"]),
        secs(&r["compaction_interval_secs"]),
        match r["hot_window_secs"].as_u64() {
            Some(0) | None => "none (nothing moves)".to_string(),
            Some(_) => secs(&r["hot_window_secs"]),
        },
    ));
    let c = &v["last_cut"];
    if c["log_index"] == 0 {
        out.push_str("last cut: none yet\n");
    } else {
        let d = &c["deleted_total"];
        out.push_str(&format!(
            "last cut: log index {} stamped {}{}; deleted so far: {} spans, {} logs, {} metric points, {} blobs\n",
            c["log_index"],
            time(&c["stamped_unix_nanos"]),
            if c["pending"] == true { " (more to delete)" } else { "" },
            d["spans"],
            d["logs"],
            d["metric_points"],
            d["blobs"],
        ));
    }
    out
}

/// How many cold files each signal has ("none" without a cold tier).
fn cold_files(cold: &Value) -> String {
    if !cold.is_object() {
        return "none".into();
    }
    let n = |s: &str| cold[s]["files"].as_u64().unwrap_or(0);
    format!(
        "{} spans, {} logs, {} metric points",
        n("spans"),
        n("logs"),
        n("metric_points")
    )
}

fn count(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), |n| n.to_string())
}

fn time(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), rfc3339_nanos)
}

fn bytes(v: &Value) -> String {
    let b = v.as_u64().unwrap_or(0) as f64;
    match b {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b} B"),
    }
}

/// A retention in the largest unit that divides it (0: for ever).
fn secs(v: &Value) -> String {
    match v.as_u64().unwrap_or(0) {
        0 => "for ever".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_signal_the_settings_and_the_last_cut() {
        let v = serde_json::json!({
            "tiers": {"hot": {
                "spans": {"records_estimate": 10, "disk_bytes": 2_500_000,
                          "oldest_unix_nanos": 0u64, "newest_unix_nanos": 1_000_000_000u64},
                "logs": {"records_estimate": 0, "disk_bytes": 0,
                         "oldest_unix_nanos": null, "newest_unix_nanos": null},
                "metric_points": {}, "blobs": {},
                "total_disk_bytes": 3_000_000_000u64},
              "cold": {
                "spans": {"files": 2, "rows": 700, "bytes": 52_000,
                          "oldest_unix_nanos": 0u64, "newest_unix_nanos": 0u64},
                "logs": {"files": 0, "rows": 0, "bytes": 0},
                "metric_points": {"files": 1, "rows": 3, "bytes": 1500},
                "missing_files": ["/d/cold/spans/spans-00000000000000000009.parquet"]}},
            "retention": {"traces_secs": 604_800, "logs_secs": 1_209_600,
                          "metrics_secs": 0, "llm_payloads_secs": 5400,
                          "compaction_interval_secs": 300, "hot_window_secs": 86_400},
            "last_cut": {"log_index": 42, "stamped_unix_nanos": 0u64, "pending": true,
                         "deleted_total": {"spans": 5, "logs": 6, "metric_points": 7, "blobs": 8}},
        });
        let t = render_table(&v);
        assert!(
            t.contains(
                "spans          hot             10       2.5 MB 1970-01-01T00:00:00.000000000Z"
            ),
            "{t}"
        );
        assert!(
            t.contains("logs           hot              0          0 B -"),
            "{t}"
        );
        assert!(t.contains("hot tier on disk: 3.0 GB"), "{t}");
        assert!(
            t.contains(
                "spans          cold           700      52.0 kB 1970-01-01T00:00:00.000000000Z"
            ),
            "{t}"
        );
        assert!(
            t.contains("cold files: 2 spans, 0 logs, 1 metric points"),
            "{t}"
        );
        assert!(
            t.contains("MISSING cold files (reads of them fail): 1"),
            "{t}"
        );
        assert!(
            t.contains(
                "traces 7d, logs 14d, metrics for ever, LLM payloads 90m; cut every 5m; hot window 1d"
            ),
            "{t}"
        );
        assert!(
            t.contains("log index 42 stamped 1970-01-01T00:00:00.000000000Z (more to delete)"),
            "{t}"
        );
        assert!(
            t.contains("5 spans, 6 logs, 7 metric points, 8 blobs"),
            "{t}"
        );
    }
}
