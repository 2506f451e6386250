//! One netns-mode run per machine at a time.
//!
//! Network namespaces (`tj-n<ID>`), the bridge `tjbr0` and the node
//! addresses are machine-wide names, and every netns run removes the ones
//! it finds at start (left behind by a crashed run). A second run started
//! meanwhile, by hand or by a test binary, deleted the first run's network
//! mid-run: its nodes saw "Network is unreachable" and the run proved
//! nothing. The harness therefore holds an exclusive `flock` on
//! [`LOCK_PATH`] for the whole netns run.
//!
//! This is not `/tmp/tael-cluster.lock`, which callers take around the
//! harness to share the CPU (`flock /tmp/tael-cluster.lock tael-jepsen
//! ...`): a second `flock` on that file from inside would wait for its own
//! caller forever.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

pub const LOCK_PATH: &str = "/tmp/tael-jepsen-netns.lock";

/// Held for as long as it lives; the kernel releases it on exit, even
/// after a crash.
pub struct NetnsLock {
    _file: File,
}

/// Takes the lock at `path`, waiting for the run that holds it; says so
/// on stderr when it has to wait.
pub fn acquire(path: &Path) -> Result<NetnsLock, String> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let fd = file.as_raw_fd();
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!(
            "tael-jepsen: another netns run holds {}; waiting for it",
            path.display()
        );
        // SAFETY: as above.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            return Err(format!(
                "locking {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(NetnsLock { _file: file })
}

/// Whether some run holds the lock at `path` now.
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
    else {
        return false;
    };
    // SAFETY: flock(2) on a descriptor this function owns; a lock taken
    // here is released when `file` is closed on return.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let path = std::env::temp_dir().join(format!("tj-netns-lock-{}", std::process::id()));
        assert!(!is_held(&path));
        let lock = acquire(&path).unwrap();
        assert!(is_held(&path), "a second open file must not get the lock");
        drop(lock);
        assert!(!is_held(&path));
        std::fs::remove_file(&path).unwrap();
    }
}
