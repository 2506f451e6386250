//! Every golden history must get its expected verdict.
//!
//! The data ships with the crate (`testdata/jepsen-golden`); the
//! directory named by `TAEL_JEPSEN_GOLDEN` replaces it. A missing directory
//! fails the test: a checker that was never compared with the golden set must
//! not look validated.

use std::path::PathBuf;
use std::time::Instant;

use tael_jepsen::golden::{self, GoldenFormat};
use tael_jepsen::linearizability::{check_cas_history, Budget};

/// Per-file safety net, far above need: the whole set takes well under a
/// second in a debug build. A performance regression then fails the test as
/// an "unknown" verdict instead of hanging it.
const DEBUG_BUDGET_MS: u64 = 60_000;

fn golden_dir() -> PathBuf {
    golden::test_dir()
}

#[test]
fn every_golden_history_gets_its_expected_verdict() {
    let dir = golden_dir();
    let cases = golden::discover(&dir).unwrap_or_else(|e| {
        panic!("golden histories unavailable ({e}); set TAEL_JEPSEN_GOLDEN to the jepsen-golden directory")
    });

    // Guard against a partial data set passing vacuously.
    let count = |format, expected| {
        cases
            .iter()
            .filter(|c| c.format == format && c.expected_linearizable == expected)
            .count()
    };
    if std::env::var_os(golden::DIR_ENV).is_none() {
        for format in [GoldenFormat::EtcdLog, GoldenFormat::KnossosEdn] {
            for expected in [true, false] {
                assert!(
                    count(format, expected) > 0,
                    "no {format:?} case expecting {expected} in {}",
                    dir.display()
                );
            }
        }
    }

    let budget = Budget::with_ms(DEBUG_BUDGET_MS);
    let mut failures = Vec::new();
    let mut slowest = (0u128, String::new());
    for case in &cases {
        let history = case.load().unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let verdict =
            check_cas_history(&history, &budget).unwrap_or_else(|e| panic!("{case}: {e}"));
        let elapsed_ms = started.elapsed().as_millis();
        if elapsed_ms > slowest.0 {
            slowest = (elapsed_ms, case.to_string());
        }
        if verdict.as_bool() != Some(case.expected_linearizable) {
            failures.push(format!(
                "{case}: expected linearizable={}, got {verdict}",
                case.expected_linearizable
            ));
        }
    }
    eprintln!(
        "{} golden histories checked; slowest {} ms ({})",
        cases.len(),
        slowest.0,
        slowest.1
    );
    assert!(
        failures.is_empty(),
        "{} of {} golden verdicts wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A clone of the repository has everything the tests need: the bundled
/// set holds both formats and both verdicts, with its provenance and
/// licence notes beside it.
#[test]
fn the_golden_set_ships_with_the_crate() {
    let dir = golden::bundled_dir();
    assert!(
        dir.starts_with(env!("CARGO_MANIFEST_DIR")),
        "{} is outside the crate",
        dir.display()
    );
    let cases = golden::discover(&dir).unwrap_or_else(|e| panic!("{e}"));
    for format in [GoldenFormat::EtcdLog, GoldenFormat::KnossosEdn] {
        for expected in [true, false] {
            assert!(
                cases
                    .iter()
                    .any(|c| c.format == format && c.expected_linearizable == expected),
                "no bundled {format:?} case expecting {expected}"
            );
        }
    }
    for note in ["README.md", "LICENSES.md"] {
        let text =
            std::fs::read_to_string(dir.join(note)).unwrap_or_else(|e| panic!("{note}: {e}"));
        assert!(
            text.contains("licence") || text.contains("License"),
            "{note} names no licence"
        );
    }
}

#[test]
fn missing_golden_directory_is_an_error() {
    let missing = std::env::temp_dir().join("tael-jepsen-no-such-golden-dir");
    assert!(golden::discover(&missing).is_err());
}
