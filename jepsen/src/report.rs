//! Run reports: a summary table, latency and throughput plots (plain SVG)
//! with fault periods shaded, and an HTML timeline of every process.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::checkers::Check;
use crate::events::{self, Event, Outcome, NEMESIS};

const W: f64 = 1000.0;
const H: f64 = 360.0;
const PAD_L: f64 = 60.0;
const PAD_B: f64 = 40.0;
const PAD_T: f64 = 20.0;

/// Nemesis start → the event that ends it.
fn fault_end(f: &str) -> Option<&'static str> {
    Some(match f {
        "kill" | "power-loss" => "restart",
        "pause" => "resume",
        "partition" => "heal-partition",
        "clock" => "clock-reset",
        "corrupt" => "corrupt-restart",
        "delay" => "heal-delay",
        "flap" => "heal-flap",
        _ => return None,
    })
}

/// Fault periods (start s, end s, name) from the nemesis events.
pub fn fault_periods(history: &[Event]) -> Vec<(f64, f64, String)> {
    let end_s = history.last().map_or(0.0, |e| e.time_ns as f64 / 1e9);
    let mut open: BTreeMap<&'static str, Vec<(f64, String)>> = BTreeMap::new();
    let mut out = Vec::new();
    for e in history.iter().filter(|e| e.process == NEMESIS) {
        let t = e.time_ns as f64 / 1e9;
        if let Some(end) = fault_end(&e.f) {
            if e.value["installed"] == true {
                open.entry(end).or_default().push((t, e.f.clone()));
            }
        } else if let Some(list) = open.get_mut(e.f.as_str()) {
            if !list.is_empty() {
                let (s, name) = list.remove(0);
                out.push((s, t, name));
            }
        }
    }
    for (_, list) in open {
        for (s, name) in list {
            out.push((s, end_s, name));
        }
    }
    out
}

fn color(f: &str) -> &'static str {
    match f {
        "kill" => "#f4a6a6",
        "power-loss" => "#d88",
        "pause" => "#f6d28b",
        "partition" | "flap" => "#a6c8f4",
        "delay" => "#b6e4f4",
        "clock" => "#c6a6f4",
        "corrupt" => "#999",
        _ => "#ddd",
    }
}

fn shade(svg: &mut String, periods: &[(f64, f64, String)], x: &dyn Fn(f64) -> f64) {
    for (s, e, name) in periods {
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{PAD_T}" width="{:.1}" height="{:.1}" fill="{}" opacity="0.35"><title>{name} {s:.1}s–{e:.1}s</title></rect>"##,
            x(*s),
            (x(*e) - x(*s)).max(1.0),
            H - PAD_T - PAD_B,
            color(name)
        );
    }
}

fn axes(svg: &mut String, t_max: f64, y_label: &str, y_ticks: &[(f64, String)]) {
    let _ = write!(
        svg,
        r##"<line x1="{PAD_L}" y1="{0}" x2="{W}" y2="{0}" stroke="black"/><line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{0}" stroke="black"/>"##,
        H - PAD_B
    );
    let step = (t_max / 10.0).max(1.0).ceil();
    let mut t = 0.0;
    while t <= t_max {
        let x = PAD_L + t / t_max.max(1e-9) * (W - PAD_L - 10.0);
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{t:.0}s</text>"##,
            H - PAD_B + 15.0
        );
        t += step;
    }
    for (y, label) in y_ticks {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{y:.1}" font-size="11" text-anchor="end">{label}</text><line x1="{PAD_L}" y1="{y:.1}" x2="{W}" y2="{y:.1}" stroke="#eee"/>"##,
            PAD_L - 4.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="12" y="{:.1}" font-size="12" transform="rotate(-90 12 {0:.1})">{y_label}</text>"##,
        H / 2.0
    );
}

fn outcome_color(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "#2a7",
        Outcome::Fail => "#d33",
        Outcome::Unknown => "#e90",
    }
}

/// Latency of every client operation over time, log scale.
pub fn latency_svg(history: &[Event]) -> String {
    let ops = events::pair(history, |_| true).unwrap_or_default();
    let t_max = history
        .last()
        .map_or(1.0, |e| e.time_ns as f64 / 1e9)
        .max(1.0);
    let x = |t: f64| PAD_L + t / t_max * (W - PAD_L - 10.0);
    let (lo, hi) = (0.0f64, 4.0f64); // 1 ms .. 10 s
    let y = |ms: f64| {
        let l = ms.max(1.0).log10().clamp(lo, hi);
        H - PAD_B - (l - lo) / (hi - lo) * (H - PAD_T - PAD_B)
    };
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">"##
    );
    shade(&mut svg, &fault_periods(history), &x);
    let ticks: Vec<(f64, String)> = [1.0, 10.0, 100.0, 1000.0, 10000.0]
        .iter()
        .map(|ms| (y(*ms), format!("{ms} ms")))
        .collect();
    axes(&mut svg, t_max, "latency (log)", &ticks);
    for op in &ops {
        let call = op.call_ns as f64 / 1e9;
        // Unknown outcomes are drawn at the client timeout, at the top.
        let ms = op
            .ret_ns
            .map_or(10_000.0, |r| (r - op.call_ns) as f64 / 1e6);
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{}"><title>{} {} {:.1} ms</title></circle>"##,
            x(call),
            y(ms),
            outcome_color(op.outcome),
            op.f,
            op.key.as_deref().unwrap_or(""),
            ms
        );
    }
    svg.push_str(r##"<text x="70" y="14" font-size="12">green ok · red fail · orange unknown (info); shaded: faults</text></svg>"##);
    svg
}

/// Completed operations per second, by outcome.
pub fn throughput_svg(history: &[Event]) -> String {
    let ops = events::pair(history, |_| true).unwrap_or_default();
    let t_max = history
        .last()
        .map_or(1.0, |e| e.time_ns as f64 / 1e9)
        .max(1.0);
    let buckets = t_max.ceil() as usize + 1;
    let mut counts = vec![[0u32; 3]; buckets];
    for op in &ops {
        let t = op.ret_ns.unwrap_or(op.call_ns) as f64 / 1e9;
        let i = (t as usize).min(buckets - 1);
        counts[i][match op.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Unknown => 2,
        }] += 1;
    }
    let max = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let x = |t: f64| PAD_L + t / t_max * (W - PAD_L - 10.0);
    let y = |v: f64| H - PAD_B - v / max * (H - PAD_T - PAD_B);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">"##
    );
    shade(&mut svg, &fault_periods(history), &x);
    let ticks: Vec<(f64, String)> = (0..=4)
        .map(|i| {
            (
                y(max * i as f64 / 4.0),
                format!("{:.0}", max * i as f64 / 4.0),
            )
        })
        .collect();
    axes(&mut svg, t_max, "ops/s", &ticks);
    for (k, c) in ["#2a7", "#d33", "#e90"].iter().enumerate() {
        let points: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{:.1},{:.1}", x(i as f64 + 0.5), y(b[k] as f64)))
            .collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"##,
            points.join(" ")
        );
    }
    svg.push_str(r##"<text x="70" y="14" font-size="12">completions per second: green ok · red fail · orange unknown; shaded: faults</text></svg>"##);
    svg
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One lane per process, one bar per operation.
pub fn timeline_html(history: &[Event]) -> String {
    let ops = events::pair(history, |_| true).unwrap_or_default();
    let t_max = history
        .last()
        .map_or(1.0, |e| e.time_ns as f64 / 1e9)
        .max(1.0);
    let mut lanes: Vec<i64> = ops.iter().map(|o| o.process).collect();
    lanes.sort();
    lanes.dedup();
    let lane_of: BTreeMap<i64, usize> = lanes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let width = 2400.0;
    let lane_h = 14.0;
    let height = (lanes.len() as f64 + 2.0) * lane_h + 30.0;
    let x = |t: f64| 80.0 + t / t_max * (width - 100.0);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="10">"##
    );
    for (s, e, name) in fault_periods(history) {
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="0" width="{:.1}" height="{height}" fill="{}" opacity="0.3"><title>{name}</title></rect>"##,
            x(s),
            (x(e) - x(s)).max(1.0),
            color(&name)
        );
    }
    for (i, p) in lanes.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<text x="2" y="{:.1}">p{p}</text>"##,
            20.0 + i as f64 * lane_h + 10.0
        );
    }
    for op in &ops {
        let lane = lane_of[&op.process];
        let s = op.call_ns as f64 / 1e9;
        let e = op.ret_ns.map_or(t_max, |r| r as f64 / 1e9);
        let title = format!(
            "p{} {} {} node {} {:?} in={} out={} {}",
            op.process,
            op.f,
            op.key.as_deref().unwrap_or(""),
            op.node.map_or("-".into(), |n| n.to_string()),
            op.outcome,
            op.input,
            op.output,
            op.error.as_deref().unwrap_or("")
        );
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"##,
            x(s),
            20.0 + lane as f64 * lane_h,
            (x(e) - x(s)).max(1.0),
            lane_h - 3.0,
            outcome_color(op.outcome),
            esc(&title)
        );
    }
    svg.push_str("</svg>");
    let mut nem = String::new();
    for e in history.iter().filter(|e| e.process == NEMESIS) {
        let _ = writeln!(
            nem,
            "<tr><td>{:.2}s</td><td>{}</td><td>{}</td></tr>",
            e.time_ns as f64 / 1e9,
            esc(&e.f),
            esc(&e.value.to_string())
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tael-jepsen timeline</title></head><body>\
         <h2>Operations per process</h2><p>green ok, red fail, orange unknown (bar runs to the end); hover for details; shaded: faults.</p>\
         <div style=\"overflow-x:scroll\">{svg}</div><h2>Nemesis</h2><table border=1 cellspacing=0>{nem}</table></body></html>"
    )
}

pub fn write_all(dir: &Path, history: &[Event]) -> Result<(), String> {
    let w = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    w("latency.svg", latency_svg(history))?;
    w("throughput.svg", throughput_svg(history))?;
    w("timeline.html", timeline_html(history))
}

pub fn print_summary(
    profile: &str,
    seed: u64,
    checks: &[Check],
    nemesis: &Value,
    valid: Option<bool>,
) {
    println!("profile {profile} seed {seed}");
    println!("{:<28} {:<8} summary", "checker", "verdict");
    for c in checks {
        println!("{:<28} {:<8} {}", c.name, c.verdict_str(), c.summary);
    }
    if let Some(m) = nemesis.as_object() {
        let parts: Vec<String> = m
            .iter()
            .map(|(f, v)| format!("{f} {}/{}", v["installed"], v["count"]))
            .collect();
        println!("nemesis (installed/count): {}", parts.join(", "));
    }
    println!(
        "verdict: {}",
        match valid {
            Some(true) => "VALID",
            Some(false) => "INVALID",
            None => "UNKNOWN",
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Recorder;
    use crate::history::OpKind;
    use serde_json::json;
    use std::time::Instant;

    #[test]
    fn plots_and_fault_periods() {
        let r = Recorder::new(Instant::now());
        r.nemesis("kill", json!({"installed": true}));
        r.record(
            0,
            OpKind::Invoke,
            "add",
            Some("k"),
            json!([1]),
            Some(1),
            None,
        );
        r.record(0, OpKind::Ok, "add", Some("k"), json!([1]), Some(1), None);
        r.nemesis("restart", json!({"installed": true}));
        r.nemesis("pause", json!({"installed": false}));
        let h = r.snapshot();
        let periods = fault_periods(&h);
        assert_eq!(periods.len(), 1);
        assert_eq!(periods[0].2, "kill");
        assert!(latency_svg(&h).contains("<circle"));
        assert!(throughput_svg(&h).contains("<polyline"));
        assert!(timeline_html(&h).contains("p0 add"));
    }
}
