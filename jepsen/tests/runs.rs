//! Real harness runs: `tael-jepsen test` against `tael-raft serve` nodes.
//!
//! `smoke_*` tests are the CI subset (about a minute each): a fault profile
//! that must be valid, a mutation that must be caught, and its kill-only
//! control that must not be. Every other profile and mutation runs with
//! `scripts/jepsen-suite` (about a minute each).
//!
//! The server binary is built with `--features fault-injection` into the
//! same target directory (or taken from `TAEL_RAFT_BIN`). Runs use network
//! namespaces as root and loopback proxies otherwise. Start the test
//! binary under the shared cluster lock (`flock /tmp/tael-cluster.lock`);
//! runs inside one test binary are serialized here.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

const JEPSEN: &str = env!("CARGO_BIN_EXE_tael-jepsen");

/// One cluster at a time: runs share namespace names and CPU.
static SERIAL: Mutex<()> = Mutex::new(());

fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("TAEL_RAFT_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "tael-raft",
                "--features",
                "fault-injection",
                "--bin",
                "tael-raft",
            ])
            .status()
            .expect("running cargo build for the server");
        assert!(
            status.success(),
            "building tael-raft with fault-injection failed"
        );
        PathBuf::from(JEPSEN)
            .parent()
            .expect("binary directory")
            .join("tael-raft")
    })
    .clone()
}

/// Runs a profile; returns (exit code, stdout summary, run dir).
fn run(profile: &str, seed: u64, time_limit_s: u64) -> (i32, String, PathBuf) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::env::temp_dir().join(format!(
        "tael-jepsen-test-{profile}-{seed}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(JEPSEN)
        .args(["test", "--profile", profile])
        .args(["--seed", &seed.to_string()])
        .args(["--time-limit-s", &time_limit_s.to_string()])
        .args(["--heal-deadline-s", "30"])
        .arg("--out")
        .arg(&out)
        .arg("--server-bin")
        .arg(server_bin())
        .output()
        .expect("running tael-jepsen");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), stdout, out)
}

fn assert_artifacts(dir: &std::path::Path) {
    for f in [
        "config.json",
        "history.jsonl",
        "results.json",
        "latency.svg",
        "throughput.svg",
        "timeline.html",
    ] {
        assert!(dir.join(f).exists(), "{f} missing in {}", dir.display());
    }
}

fn expect_valid(profile: &str, seed: u64, secs: u64) {
    let (code, stdout, dir) = run(profile, seed, secs);
    assert_eq!(code, 0, "{profile} should be valid:\n{stdout}");
    assert!(stdout.contains("verdict: VALID"));
    assert_artifacts(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn expect_caught(profile: &str, seed: u64, secs: u64) {
    let (code, stdout, dir) = run(profile, seed, secs);
    assert_eq!(code, 1, "{profile} must be judged invalid:\n{stdout}");
    assert!(stdout.contains("verdict: INVALID"));
    assert_artifacts(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smoke_kills_and_pauses_are_valid() {
    expect_valid("smoke", 1, 45);
}

#[test]
fn smoke_power_loss_catches_skip_fsync() {
    expect_caught("mutation-skip-fsync", 7, 40);
}

#[test]
fn smoke_retention_cuts_under_faults_are_valid() {
    expect_valid("retention", 3, 40);
}

#[test]
fn smoke_retention_cutting_retained_spans_is_caught() {
    expect_caught("mutation-retention-wrong-unit", 3, 30);
}

#[test]
fn smoke_kill_only_does_not_flag_skip_fsync() {
    expect_valid("mutation-skip-fsync-kill-only", 7, 40);
}

/// Damage before the log's durable mark cut off like a torn tail: the
/// restarted node opens with fewer entries than it had proven durable.
#[test]
fn smoke_cutting_durable_log_damage_is_caught() {
    expect_caught("mutation-cut-durable-log", 5, 30);
}
