//! How long a disk takes to make a small overwrite durable.
//!
//! This is the Raft log's own pattern: a block rewritten inside a file whose
//! blocks were written and synced beforehand, then `fdatasync`. Every
//! acknowledged write waits for that on two of three nodes, so the disk's
//! stalls are a floor under ack latency that no setting of ours can lower.
//! `tael-raft disk-check` qualifies a disk before a node is put on it;
//! `tael-raft bench --disk-witness-dir` runs the same probe during a load run
//! so that each slow second can be matched against the disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Size of the probe file, written and synced before measuring so that every
/// measured sync is an overwrite of allocated blocks.
const PROBE_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// One log group commit's worth of a small write.
const PROBE_WRITE_BYTES: usize = 4096;
/// A sync slower than this is a stall: on its own it uses the whole p99
/// budget of an acknowledgement.
pub const STALL_THRESHOLD_MS: f64 = 50.0;
/// Longest run accepted; with the shortest interval this bounds the samples
/// kept in memory to a few million.
pub const MAX_DURATION_SECS: u64 = 3600;
pub const MIN_INTERVAL_MS: u64 = 1;
/// The report lists at most this many stalls (the worst ones).
const MAX_STALLS_REPORTED: usize = 50;

#[derive(Clone, Debug)]
pub struct DiskCheckOptions {
    /// The directory to test: the one a node's data directory will live in.
    pub dir: PathBuf,
    pub duration: Duration,
    /// Pause between syncs, so the probe itself is a light load.
    pub interval: Duration,
}

/// One sync, started at `unix_ms`, durable `took_ms` later.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Sync {
    pub unix_ms: u64,
    pub took_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct DiskCheckReport {
    pub dir: PathBuf,
    pub elapsed_secs: f64,
    pub syncs: u64,
    pub sync_ms_p50: f64,
    pub sync_ms_p99: f64,
    pub sync_ms_max: f64,
    /// Syncs over [`STALL_THRESHOLD_MS`], and the time spent in them.
    pub stalls: u64,
    pub stalled_ms_total: f64,
    /// The worst stalls, oldest first.
    pub worst_stalls: Vec<Sync>,
    /// Every sync, oldest first; kept out of the JSON report (it can be
    /// millions of entries) and used to explain a benchmark's slow seconds.
    #[serde(skip)]
    pub samples: Vec<Sync>,
}

impl DiskCheckReport {
    /// The slowest sync that was in progress at some time in
    /// `[from_unix_ms, to_unix_ms)`, in milliseconds (0 if none was slow).
    pub fn max_sync_ms_between(&self, from_unix_ms: u64, to_unix_ms: u64) -> f64 {
        debug_assert!(from_unix_ms <= to_unix_ms);
        self.samples
            .iter()
            .filter(|s| {
                let end_ms = s.unix_ms + s.took_ms.ceil() as u64;
                s.unix_ms < to_unix_ms && end_ms > from_unix_ms
            })
            .map(|s| s.took_ms)
            .fold(0.0, f64::max)
    }
}

pub fn validate(opts: &DiskCheckOptions) -> Result<(), String> {
    if opts.duration.is_zero() || opts.duration > Duration::from_secs(MAX_DURATION_SECS) {
        return Err(format!(
            "disk check duration must be between 1 and {MAX_DURATION_SECS} seconds"
        ));
    }
    if opts.interval < Duration::from_millis(MIN_INTERVAL_MS) {
        return Err(format!(
            "disk check interval must be at least {MIN_INTERVAL_MS} ms"
        ));
    }
    if !opts.dir.is_dir() {
        return Err(format!(
            "disk check: {} is not a directory",
            opts.dir.display()
        ));
    }
    Ok(())
}

/// Runs the probe until `duration` passes or `stop` is set. Blocking: run it
/// on its own thread.
pub fn run(opts: &DiskCheckOptions, stop: &AtomicBool) -> Result<DiskCheckReport, String> {
    validate(opts)?;
    let path = opts
        .dir
        .join(format!("tael-disk-check-{}.tmp", std::process::id()));
    let result = probe(&path, opts, stop);
    // Best effort: a leftover probe file is harmless and clearly named.
    let _ = std::fs::remove_file(&path);
    result
}

fn probe(
    path: &Path,
    opts: &DiskCheckOptions,
    stop: &AtomicBool,
) -> Result<DiskCheckReport, String> {
    let context =
        |what: &str, e: std::io::Error| format!("disk check: {what} {}: {e}", path.display());
    let mut file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| context("creating", e))?;
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..PROBE_FILE_BYTES / zeros.len() as u64 {
        file.write_all(&zeros).map_err(|e| context("filling", e))?;
    }
    file.sync_all().map_err(|e| context("syncing", e))?;

    let block = vec![0x5au8; PROBE_WRITE_BYTES];
    let blocks = PROBE_FILE_BYTES / PROBE_WRITE_BYTES as u64;
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut samples: Vec<Sync> = Vec::new();
    let mut next_block = 0u64;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let unix_ms = crate::model::now_unix_nanos() / 1_000_000;
        let t0 = Instant::now();
        file.write_all_at(&block, next_block * PROBE_WRITE_BYTES as u64)
            .map_err(|e| context("writing", e))?;
        file.sync_data().map_err(|e| context("fdatasync of", e))?;
        samples.push(Sync {
            unix_ms,
            took_ms: t0.elapsed().as_secs_f64() * 1000.0,
        });
        next_block = (next_block + 1) % blocks;
        std::thread::sleep(opts.interval);
    }
    Ok(summarize(
        opts.dir.clone(),
        started.elapsed().as_secs_f64(),
        samples,
    ))
}

fn summarize(dir: PathBuf, elapsed_secs: f64, samples: Vec<Sync>) -> DiskCheckReport {
    let mut sorted: Vec<f64> = samples.iter().map(|s| s.took_ms).collect();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| super::quantile(&sorted, p).unwrap_or(0.0);
    let mut stalls: Vec<Sync> = samples
        .iter()
        .copied()
        .filter(|s| s.took_ms > STALL_THRESHOLD_MS)
        .collect();
    let stall_count = stalls.len() as u64;
    // A fold from +0.0: an empty f64 sum is -0.0, printed as "-0".
    let stalled_ms_total = stalls.iter().map(|s| s.took_ms).fold(0.0, |a, b| a + b);
    // The worst ones, then back in time order.
    stalls.sort_by(|a, b| b.took_ms.total_cmp(&a.took_ms));
    stalls.truncate(MAX_STALLS_REPORTED);
    stalls.sort_by_key(|s| s.unix_ms);
    DiskCheckReport {
        dir,
        elapsed_secs,
        syncs: samples.len() as u64,
        sync_ms_p50: pct(0.50),
        sync_ms_p99: pct(0.99),
        sync_ms_max: sorted.last().copied().unwrap_or(0.0),
        stalls: stall_count,
        stalled_ms_total,
        worst_stalls: stalls,
        samples,
    }
}

/// Runs the probe on a thread of its own until the returned witness is
/// finished.
pub struct Witness {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<DiskCheckReport, String>>,
}

impl Witness {
    pub fn start(dir: PathBuf, max_duration: Duration) -> Result<Witness, String> {
        let opts = DiskCheckOptions {
            dir,
            duration: max_duration.min(Duration::from_secs(MAX_DURATION_SECS)),
            interval: Duration::from_millis(10),
        };
        validate(&opts)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("disk-witness".into())
            .spawn(move || run(&opts, &thread_stop))
            .map_err(|e| format!("disk witness thread: {e}"))?;
        Ok(Witness { stop, thread })
    }

    pub fn finish(self) -> Result<DiskCheckReport, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| "disk witness thread panicked".to_string())?
    }
}

pub fn print_table(r: &DiskCheckReport) {
    println!(
        "disk check of {}: {} overwrite+fdatasync in {:.1}s",
        r.dir.display(),
        r.syncs,
        r.elapsed_secs
    );
    println!(
        "sync latency ms  p50 {:.2}  p99 {:.2}  max {:.2}",
        r.sync_ms_p50, r.sync_ms_p99, r.sync_ms_max
    );
    println!(
        "stalls over {STALL_THRESHOLD_MS} ms  {} ({:.0} ms in all, {:.2}% of the time)",
        r.stalls,
        r.stalled_ms_total,
        r.stalled_ms_total / (r.elapsed_secs * 1000.0).max(1.0) * 100.0
    );
    for s in &r.worst_stalls {
        println!(
            "stall            unix ms {}: {:.1} ms",
            s.unix_ms, s.took_ms
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_syncs_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DiskCheckOptions {
            dir: dir.path().to_path_buf(),
            duration: Duration::from_millis(300),
            interval: Duration::from_millis(5),
        };
        let r = run(&opts, &AtomicBool::new(false)).unwrap();
        assert!(r.syncs > 0, "no sync was measured");
        assert_eq!(r.samples.len() as u64, r.syncs);
        assert!(r.sync_ms_p50 <= r.sync_ms_p99 && r.sync_ms_p99 <= r.sync_ms_max);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe file must be removed"
        );
    }

    #[test]
    fn refuses_bad_options() {
        let dir = tempfile::tempdir().unwrap();
        let ok = DiskCheckOptions {
            dir: dir.path().to_path_buf(),
            duration: Duration::from_secs(1),
            interval: Duration::from_millis(10),
        };
        let missing = DiskCheckOptions {
            dir: dir.path().join("missing"),
            ..ok.clone()
        };
        let err = run(&missing, &AtomicBool::new(false)).unwrap_err();
        assert!(
            err.contains("missing") && err.contains("not a directory"),
            "{err}"
        );
        let zero = DiskCheckOptions {
            duration: Duration::ZERO,
            ..ok.clone()
        };
        assert!(validate(&zero).unwrap_err().contains("duration"));
        let too_long = DiskCheckOptions {
            duration: Duration::from_secs(MAX_DURATION_SECS + 1),
            ..ok.clone()
        };
        assert!(validate(&too_long).is_err());
        let busy = DiskCheckOptions {
            interval: Duration::ZERO,
            ..ok
        };
        assert!(validate(&busy).unwrap_err().contains("interval"));
    }

    #[test]
    fn finds_the_slowest_sync_overlapping_a_window() {
        let samples = vec![
            Sync {
                unix_ms: 1_000,
                took_ms: 1.0,
            },
            Sync {
                unix_ms: 1_900,
                took_ms: 250.0,
            },
            Sync {
                unix_ms: 2_300,
                took_ms: 2.0,
            },
        ];
        let r = summarize(PathBuf::from("/x"), 2.0, samples);
        assert_eq!(r.stalls, 1);
        assert_eq!(r.worst_stalls[0].unix_ms, 1_900);
        // The stall started in the second before and ran into this one.
        assert_eq!(r.max_sync_ms_between(2_000, 3_000), 250.0);
        assert_eq!(r.max_sync_ms_between(1_000, 1_900), 1.0);
        assert_eq!(r.max_sync_ms_between(3_000, 4_000), 0.0);
    }
}
