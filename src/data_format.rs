//! The data format marker: a `FORMAT` file in the data directory naming
//! the version of the stored format (Raft log payloads, state machine
//! records), so a node never opens data it would misread.
//!
//! Versions:
//! 1. (no marker) spans and logs with attributes flattened to text.
//! 2. spans and logs kept losslessly (typed values, resource, scope,
//!    links, ...), under new record tags (see `payload`).
//!
//! There is no in-place migration: a data directory in an older format is
//! refused with a message saying what to do (docs/operations.md, "Upgrading
//! across a data format change").

use std::io::Write;
use std::path::Path;

/// The format this version writes and reads: that of the records it
/// carries in the log and stores (`payload`).
pub const FORMAT_VERSION: u32 = crate::payload::DATA_FORMAT_VERSION;
/// The marker file, in the data directory.
pub const FORMAT_FILE: &str = "FORMAT";
/// What the marker's one line says before the version number.
const MARKER_PREFIX: &str = "tael-raft data format ";
/// Entries that mean a data directory holds data: the Raft log, the state
/// machine and its snapshots, the full-text index, the spool and the
/// cluster id. Anything else (a config file, `lost+found`) does not.
const DATA_ENTRIES: [&str; 7] = [
    "raft-log",
    "sm",
    "snapshots",
    "snapshots-incoming",
    "fulltext",
    crate::spool::SPOOL_DIR,
    "cluster_id",
];

/// Marks a new data directory with [`FORMAT_VERSION`], accepts one already
/// marked with it, and refuses one holding data in another format.
/// Creates `data_dir` if needed. Call before anything else touches it.
pub fn check_and_mark(data_dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    match read_marker(data_dir)? {
        Some(v) if v == FORMAT_VERSION => Ok(()),
        Some(v) if v > FORMAT_VERSION => Err(format!(
            "the data directory {} is in data format {v}, written by a newer tael-raft; \
             this version reads data format {FORMAT_VERSION}. Run the newer version.",
            data_dir.display()
        )),
        Some(v) => Err(refusal(data_dir, v)),
        None if has_data(data_dir)? => Err(refusal(data_dir, 1)),
        None => write_marker(data_dir),
    }
}

fn refusal(data_dir: &Path, found: u32) -> String {
    format!(
        "the data directory {} holds data in data format {found}; this version of tael-raft \
         uses data format {FORMAT_VERSION} (spans and logs are stored losslessly, with typed \
         attributes, resource, scope and links, under new Raft record tags) and cannot read \
         it. There is no in-place migration: start this node on an empty data directory and \
         re-join it to a cluster that already runs data format {FORMAT_VERSION}, or, when the \
         whole cluster is on the old format, re-create the cluster with every node on an \
         empty data directory (stored telemetry is not carried over). See docs/operations.md, \
         \"Upgrading across a data format change\".",
        data_dir.display()
    )
}

fn has_data(data_dir: &Path) -> Result<bool, String> {
    for entry in DATA_ENTRIES {
        let path = data_dir.join(entry);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("checking {}: {e}", path.display())),
        }
    }
    Ok(false)
}

fn read_marker(data_dir: &Path) -> Result<Option<u32>, String> {
    let path = data_dir.join(FORMAT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    text.trim_end()
        .strip_prefix(MARKER_PREFIX)
        .and_then(|v| v.parse::<u32>().ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "{} does not name a data format (expected \"{MARKER_PREFIX}N\"): {:?}",
                path.display(),
                text.chars().take(80).collect::<String>()
            )
        })
}

/// Writes the marker durably: a temporary file, synced, renamed into
/// place, then the directory synced so the rename survives a crash.
fn write_marker(data_dir: &Path) -> Result<(), String> {
    let path = data_dir.join(FORMAT_FILE);
    let tmp = data_dir.join(format!("{FORMAT_FILE}.tmp"));
    let context = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    let mut file = std::fs::File::create(&tmp).map_err(|e| context("creating", e))?;
    writeln!(file, "{MARKER_PREFIX}{FORMAT_VERSION}").map_err(|e| context("writing", e))?;
    file.sync_all().map_err(|e| context("syncing", e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| context("renaming into", e))?;
    tael_consensus::log_store::sync_dir(data_dir)
        .map_err(|e| context("syncing the directory of", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_marked_and_then_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node1");
        check_and_mark(&data).unwrap();
        let text = std::fs::read_to_string(data.join(FORMAT_FILE)).unwrap();
        assert_eq!(text, format!("tael-raft data format {FORMAT_VERSION}\n"));
        assert!(!data.join("FORMAT.tmp").exists());
        // Data written after marking does not make it "old".
        std::fs::create_dir(data.join("raft-log")).unwrap();
        check_and_mark(&data).unwrap();
    }

    #[test]
    fn an_empty_existing_directory_with_unrelated_files_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node.toml"), "x = 1").unwrap();
        check_and_mark(dir.path()).unwrap();
        assert_eq!(read_marker(dir.path()).unwrap(), Some(FORMAT_VERSION));
    }

    #[test]
    fn data_without_a_marker_is_refused_with_what_to_do() {
        for entry in ["raft-log", "sm", "cluster_id"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join(entry)).unwrap();
            let err = check_and_mark(dir.path()).unwrap_err();
            assert!(err.contains("data format 1"), "{entry}: {err}");
            assert!(err.contains("empty data directory"), "{err}");
            assert!(err.contains("no in-place migration"), "{err}");
            assert!(
                !dir.path().join(FORMAT_FILE).exists(),
                "a refused directory is left as it was"
            );
        }
    }

    #[test]
    fn older_newer_and_garbled_markers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |s: &str| std::fs::write(dir.path().join(FORMAT_FILE), s).unwrap();
        write("tael-raft data format 1\n");
        let err = check_and_mark(dir.path()).unwrap_err();
        assert!(err.contains("holds data in data format 1"), "{err}");
        write(&format!("tael-raft data format {}\n", FORMAT_VERSION + 1));
        let err = check_and_mark(dir.path()).unwrap_err();
        assert!(err.contains("newer tael-raft"), "{err}");
        write("something else");
        let err = check_and_mark(dir.path()).unwrap_err();
        assert!(err.contains("does not name a data format"), "{err}");
    }
}
