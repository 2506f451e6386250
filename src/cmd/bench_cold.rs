//! `tael-raft bench-cold`: the cold tier's bytes per span and its
//! trace-by-id latency at scale, without a cluster.
//!
//! Spans go through the real apply path into a store of its own: each batch
//! of [`MAX_ROWS_PER_MOVE`] spans is applied as an entry, then moved to the
//! cold tier by a `TAG_COLD_MOVE` apply (the same writer, file size limit and
//! manifest as a node's moves). Trace-by-id then runs through the reader the
//! query service opens for every query ([`ColdReader::open`], then
//! [`ColdReader::trace`]), for ids that exist and ids that do not (which
//! must be ruled out in every file).
//!
//! The files were just written, so reads come from the page cache: the
//! numbers are the cold tier's CPU and syscall cost, not the disk's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tael_consensus::{LeaderId, LogId};

use super::disk_check::{DiskCheckReport, Witness};
use crate::model::{KeyValue, SpanKind, SpanRecord, SpanStatus, TraceId};
use crate::state::cold::{ColdMove, ColdReader, Signal, MAX_ROWS_PER_MOVE};
use crate::state::hot::HotStore;

/// Spans per trace of [`http_service_span`].
pub const SPANS_PER_TRACE: u64 = 8;
/// The first span's start; spans start 1 ms apart after it.
const FIRST_START_UNIX_NANOS: u64 = 1_700_000_000_000_000_000;
/// The slowest queries whose disk context the report shows.
const SLOWEST_SHOWN: usize = 5;

#[derive(Clone, Debug)]
pub struct ColdBenchOptions {
    /// An empty or missing directory: the store and its cold files go here.
    pub dir: PathBuf,
    pub spans: u64,
    /// Trace-by-id queries of each kind (existing, missing ids).
    pub runs: usize,
    /// Probe fdatasync under this directory while the queries run.
    pub disk_witness_dir: Option<PathBuf>,
    /// Leave the store and its files in `dir` (removed by default).
    pub keep: bool,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub runs: usize,
    pub ms_p50: f64,
    pub ms_p99: f64,
    pub ms_max: f64,
}

/// One of the slowest queries, with the disk's slowest sync meanwhile.
#[derive(Debug, Serialize)]
pub struct SlowQuery {
    pub unix_ms: u64,
    pub took_ms: f64,
    pub existing: bool,
    pub disk_max_sync_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ColdBenchReport {
    pub spans: u64,
    pub files: u64,
    pub cold_bytes: u64,
    pub cold_bytes_per_span: f64,
    /// Applying the spans to the hot tier (not the cold tier's cost).
    pub hot_apply_secs: f64,
    /// Applying the moves: reading the hot tier, writing and syncing files.
    pub move_secs: f64,
    /// The first query after the files were written, on its own.
    pub first_query_ms: f64,
    pub existing_trace: Latency,
    pub missing_trace: Latency,
    pub slowest: Vec<SlowQuery>,
    pub load_average_before: String,
    pub load_average_after: String,
    pub disk_witness: Option<DiskCheckReport>,
}

/// splitmix64 of (field, x): unrelated, random-looking values.
fn mix(field: u64, x: u64) -> u64 {
    let mut z = x
        .wrapping_add(field.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The trace id of trace `trace` of [`http_service_span`].
pub fn http_service_trace_id(trace: u64) -> TraceId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&mix(1, trace).to_be_bytes());
    id[8..].copy_from_slice(&mix(2, trace).to_be_bytes());
    id
}

/// Span `i` of an instrumented HTTP service: ids that look random, traces
/// of [`SPANS_PER_TRACE`] spans, a handful of services and routes, six
/// attributes. The sizing test and `bench-cold` share it, so the bytes per
/// span in docs/operations.md and in the benchmark are of the same spans.
pub fn http_service_span(i: u64) -> SpanRecord {
    let trace = i / SPANS_PER_TRACE;
    let first_of_trace = i - i % SPANS_PER_TRACE;
    let start = FIRST_START_UNIX_NANOS + i * 1_000_003;
    let route = format!("/api/v1/orders/{}", i % 20);
    SpanRecord {
        trace_id: http_service_trace_id(trace),
        span_id: mix(3, i).to_be_bytes(),
        parent_span_id: (i != first_of_trace).then(|| mix(3, first_of_trace).to_be_bytes()),
        service: format!("service-{}", trace % 5),
        operation: format!("GET {route}"),
        start_unix_nanos: start,
        end_unix_nanos: start + 1_000 + mix(4, i) % 50_000_000,
        status: if i.is_multiple_of(50) {
            SpanStatus::Error
        } else {
            SpanStatus::Ok
        },
        kind: SpanKind::Server,
        attributes: vec![
            KeyValue::string("http.method", "GET"),
            KeyValue::string("http.route", route.clone()),
            KeyValue::string("http.status_code", "200"),
            KeyValue::string("net.peer.name", format!("10.0.{}.{}", i % 7, i % 251)),
            KeyValue::string("user_agent.original", "okhttp/4.12.0"),
            KeyValue::string("request.id", format!("{:016x}", mix(5, i))),
        ],
        ..Default::default()
    }
}

fn log_id(index: u64) -> LogId {
    LogId::new(
        LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    )
}

fn store_err(e: impl std::fmt::Display) -> String {
    format!("store: {e}")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The times spent applying spans and moving them.
struct Filled {
    hot_apply: Duration,
    moves: Duration,
}

/// Applies `spans` spans in entries of one move's size, each followed by
/// the move that takes it to the cold tier.
fn fill(store: &HotStore, spans: u64) -> Result<Filled, String> {
    let per_move = MAX_ROWS_PER_MOVE as u64;
    let mut filled = Filled {
        hot_apply: Duration::ZERO,
        moves: Duration::ZERO,
    };
    let mut index = 0;
    let mut next_span = 0;
    while next_span < spans {
        let end = (next_span + per_move).min(spans);
        let t0 = Instant::now();
        index += 1;
        let mut b = store.begin();
        b.begin_entry(index);
        for i in next_span..end {
            b.put_span(http_service_span(i)).map_err(store_err)?;
        }
        b.commit(Some(log_id(index)), None).map_err(store_err)?;
        let t1 = Instant::now();
        index += 1;
        let mut b = store.begin();
        b.begin_entry(index);
        let mv = ColdMove {
            signal: Signal::Spans,
            from_unix_nanos: 0,
            to_unix_nanos: u64::MAX,
        };
        let out = b.apply_cold_move(index, &mv).map_err(store_err)?;
        b.commit(Some(log_id(index)), None).map_err(store_err)?;
        // (A move that reaches its limit says more may follow.)
        if out.rows != end - next_span {
            return Err(format!(
                "a move took {} of {} spans",
                out.rows,
                end - next_span
            ));
        }
        filled.hot_apply += t1 - t0;
        filled.moves += t1.elapsed();
        next_span = end;
    }
    Ok(filled)
}

/// Times one trace-by-id through a freshly opened reader, as a query does;
/// checks the answer holds `expected` spans.
fn time_trace(store: &Arc<HotStore>, id: &TraceId, expected: usize) -> Result<f64, String> {
    let t0 = Instant::now();
    let spans = ColdReader::open(store)
        .and_then(|r| r.trace(id))
        .map_err(store_err)?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if spans.len() != expected {
        return Err(format!(
            "trace {}: {} spans, expected {expected}",
            hex(id),
            spans.len()
        ));
    }
    Ok(ms)
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn latency(mut samples: Vec<f64>) -> Latency {
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| super::quantile(&samples, p).unwrap_or(0.0);
    Latency {
        runs: samples.len(),
        ms_p50: pct(0.50),
        ms_p99: pct(0.99),
        ms_max: samples.last().copied().unwrap_or(0.0),
    }
}

fn check_dir(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "{} is not empty: bench-cold needs a directory of its own",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

pub fn run(opts: &ColdBenchOptions) -> Result<ColdBenchReport, String> {
    if opts.spans == 0 || opts.runs == 0 {
        return Err("spans and runs must be positive".into());
    }
    check_dir(&opts.dir)?;
    let outcome = measure(opts);
    if !opts.keep {
        if let Err(e) = std::fs::remove_dir_all(&opts.dir) {
            eprintln!("removing {}: {e}", opts.dir.display());
        }
    }
    outcome
}

fn measure(opts: &ColdBenchOptions) -> Result<ColdBenchReport, String> {
    let load_average_before = load_average();
    let store = Arc::new(HotStore::open(&opts.dir, 1, 64 << 20).map_err(store_err)?);
    let filled = fill(&store, opts.spans)?;
    let manifest = store.cold_manifest().map_err(store_err)?;
    let cold_bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();

    let traces = opts.spans.div_ceil(SPANS_PER_TRACE);
    let spans_of = |t: u64| (opts.spans - t * SPANS_PER_TRACE).min(SPANS_PER_TRACE) as usize;
    let first_query_ms = time_trace(&store, &http_service_trace_id(0), spans_of(0))?;

    let witness = match &opts.disk_witness_dir {
        Some(dir) => Some(Witness::start(dir.clone(), Duration::from_secs(3_600))?),
        None => None,
    };
    let (mut existing, mut missing) = (Vec::new(), Vec::new());
    // (unix ms at the start, ms, existing)
    let mut all: Vec<(u64, f64, bool)> = Vec::new();
    for _ in 0..opts.runs {
        let t = rand::random::<u64>() % traces;
        let at = unix_ms();
        let ms = time_trace(&store, &http_service_trace_id(t), spans_of(t))?;
        existing.push(ms);
        all.push((at, ms, true));
        // Random ids are, with overwhelming odds, none of the stored ones.
        let id: TraceId = rand::random();
        let at = unix_ms();
        let ms = time_trace(&store, &id, 0)?;
        missing.push(ms);
        all.push((at, ms, false));
    }
    let disk_witness = match witness {
        Some(w) => Some(w.finish()?),
        None => None,
    };
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    let slowest = all
        .iter()
        .take(SLOWEST_SHOWN)
        .map(|&(at, ms, existing)| SlowQuery {
            unix_ms: at,
            took_ms: ms,
            existing,
            disk_max_sync_ms: disk_witness
                .as_ref()
                .map(|d| d.max_sync_ms_between(at, at + ms.ceil() as u64 + 1)),
        })
        .collect();
    Ok(ColdBenchReport {
        spans: opts.spans,
        files: manifest.files.len() as u64,
        cold_bytes,
        cold_bytes_per_span: cold_bytes as f64 / opts.spans as f64,
        hot_apply_secs: filled.hot_apply.as_secs_f64(),
        move_secs: filled.moves.as_secs_f64(),
        first_query_ms,
        existing_trace: latency(existing),
        missing_trace: latency(missing),
        slowest,
        load_average_before,
        load_average_after: load_average(),
        disk_witness,
    })
}

pub fn print_table(r: &ColdBenchReport) {
    println!(
        "{} spans in {} cold files: {} bytes, {:.1} B/span",
        r.spans, r.files, r.cold_bytes, r.cold_bytes_per_span
    );
    println!(
        "hot apply {:.1} s, moves {:.1} s; load average before {}, after {}",
        r.hot_apply_secs, r.move_secs, r.load_average_before, r.load_average_after
    );
    println!("first trace by id {:.1} ms", r.first_query_ms);
    println!(
        "{:<24} {:>6} {:>8} {:>8} {:>8}",
        "TRACE BY ID", "RUNS", "P50_MS", "P99_MS", "MAX_MS"
    );
    for (name, l) in [
        ("existing id", &r.existing_trace),
        ("missing id", &r.missing_trace),
    ] {
        println!(
            "{:<24} {:>6} {:>8.2} {:>8.2} {:>8.2}",
            name, l.runs, l.ms_p50, l.ms_p99, l.ms_max
        );
    }
    for s in &r.slowest {
        let disk = s.disk_max_sync_ms.map_or(String::new(), |d| {
            format!(", slowest fdatasync meanwhile {d:.1} ms")
        });
        println!(
            "slow query       unix ms {}: {:.1} ms ({} id){disk}",
            s.unix_ms,
            s.took_ms,
            if s.existing { "existing" } else { "missing" }
        );
    }
    if let Some(d) = &r.disk_witness {
        println!(
            "disk witness     fdatasync p50 {:.2}  p99 {:.2}  max {:.2} ms",
            d.sync_ms_p50, d.sync_ms_p99, d.sync_ms_max
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_finds_every_trace_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ColdBenchOptions {
            dir: dir.path().join("bench"),
            // Two moves, the second partial, the last trace short.
            spans: MAX_ROWS_PER_MOVE as u64 + 13,
            runs: 20,
            disk_witness_dir: None,
            keep: false,
        };
        let r = run(&opts).unwrap();
        assert_eq!(r.files, 2);
        assert_eq!(r.existing_trace.runs, 20);
        assert!(r.cold_bytes_per_span > 0.0);
        assert!(r.existing_trace.ms_p50 <= r.existing_trace.ms_p99);
        assert!(!opts.dir.exists(), "the bench removes its files");
    }

    #[test]
    fn refuses_a_directory_in_use() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"x").unwrap();
        let opts = ColdBenchOptions {
            dir: dir.path().to_path_buf(),
            spans: 1,
            runs: 1,
            disk_witness_dir: None,
            keep: false,
        };
        assert!(run(&opts).unwrap_err().contains("not empty"));
        assert!(dir.path().join("x").exists());
    }
}
