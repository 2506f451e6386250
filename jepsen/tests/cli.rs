//! The command line's output and exit codes.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tael-jepsen"))
}

/// A scratch file unique to this test process.
fn scratch(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tael-jepsen-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_history_exit_codes() {
    let valid = scratch(
        "valid.jsonl",
        r#"{"process":0,"type":"invoke","f":"write","value":1}
{"process":0,"type":"ok","f":"write","value":1}
{"process":1,"type":"invoke","f":"read","value":null}
{"process":1,"type":"ok","f":"read","value":1}
"#,
    );
    let invalid = scratch(
        "invalid.jsonl",
        r#"{"process":0,"type":"invoke","f":"write","value":1}
{"process":0,"type":"ok","f":"write","value":1}
{"process":1,"type":"invoke","f":"read","value":null}
{"process":1,"type":"ok","f":"read","value":2}
"#,
    );
    let garbage = scratch("garbage.jsonl", "not json\n");

    let out = bin().arg("check-history").arg(&valid).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("linearizable"));

    let out = bin().arg("check-history").arg(&invalid).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("not linearizable"));

    let out = bin().arg("check-history").arg(&garbage).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    let out = bin().arg("check-history").output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");

    for path in [valid, invalid, garbage] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn check_golden_reports_agreement() {
    let dir = tael_jepsen::golden::test_dir();
    assert!(
        dir.is_dir(),
        "golden directory {} is missing",
        dir.display()
    );
    // The knossos subset alone keeps this quick; the full set is covered by
    // tests/golden.rs.
    let out = bin()
        .arg("check-golden")
        .arg(dir.join("knossos-cas"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    let (agreed, total) = last
        .strip_prefix("agreement: ")
        .unwrap()
        .split_once('/')
        .unwrap();
    assert_eq!(agreed, total);
    assert!(total.parse::<usize>().unwrap() > 0);
    // One tab-separated line per file: path, expected, verdict, ms.
    let per_file: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with(char::is_numeric) && l.contains(".edn\t"))
        .collect();
    assert_eq!(per_file.len().to_string(), total);
    assert!(per_file.iter().all(|l| l.split('\t').count() == 4));

    // A missing directory is a failure, not an empty success.
    let out = bin()
        .arg("check-golden")
        .arg(dir.join("no-such-subdir"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// `check-run` judges fault coverage from the run's config.json: a run whose
/// scheduled partitions were never installed cannot be valid.
#[test]
fn check_run_reports_faults_never_installed() {
    let dir = std::env::temp_dir().join(format!("tael-jepsen-{}-run", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let planned = |kind: &str, target: &str| {
        format!(
            r#"{{"kind":"{kind}","at_ms":3000,"duration_ms":1000,"target":"{target}","pick":0,"amount":0}}"#
        )
    };
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"profile":{{"name":"x"}},"schedule":[{},{}]}}"#,
            planned("kill", "one"),
            planned("partition", "bridge")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("history.jsonl"),
        r#"{"index":0,"time_ns":1,"process":-1,"type":"info","f":"kill","value":{"installed":true}}
{"index":1,"time_ns":2,"process":-1,"type":"info","f":"partition","value":{"installed":false,"error":"nft: not found"}}
"#,
    )
    .unwrap();
    let out = bin().arg("check-run").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("fault-coverage"))
        .unwrap_or_else(|| panic!("no fault-coverage line in\n{stdout}"));
    assert!(line.contains("unknown"), "{line}");
    assert!(line.contains("never installed: partition"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}
