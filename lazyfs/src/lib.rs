//! A FUSE file system that passes through to a backing directory but loses,
//! on command, everything not made durable: file data not fsynced and
//! directory entries whose directory was not fsynced. With a switch for a
//! full disk (ENOSPC) and one for slow fsyncs. The fault harness puts each
//! node's data directory on one, so a power cut hits every store of the
//! node (Raft log, state machine, full-text index, spool), not one.
//!
//! See `state` for the model and `control` for the commands.

pub mod control;
pub mod fuse;
pub mod state;

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use state::{State, TRASH_DIR};

/// Default cap on durable bytes held in memory for a power cut.
pub const DEFAULT_MAX_UNSYNCED_BYTES: u64 = 512 << 20;

/// A mounted file system with its control socket. Dropping it unmounts
/// and waits for the request loops to end.
pub struct Mounted {
    pub state: Arc<Mutex<State>>,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // With auto_unmount, fuser leaves the unmount to fusermount3's
        // watchdog, which acts only once this process exits: unmount now
        // (lazily, so a busy mount cannot block), which ends the loops.
        let _ = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&self.mountpoint)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Some(session) = self.session.take() {
            let _ = session.join();
        }
    }
}

/// Mounts `backing` at `mountpoint` and serves `control` (a Unix socket
/// path) on a thread of its own.
pub fn mount(
    backing: &Path,
    mountpoint: &Path,
    control: &Path,
    max_unsynced_bytes: u64,
) -> io::Result<Mounted> {
    let state = Arc::new(Mutex::new(State::new(backing, max_unsynced_bytes)?));
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("tael-lazyfs".into()),
        fuser::MountOption::Subtype("tael-lazyfs".into()),
        // Unmounted by fusermount3 if this process dies, so a crashed file
        // system never leaves a dead mount behind.
        fuser::MountOption::AutoUnmount,
    ];
    config.acl = fuser::SessionACL::RootAndOwner;
    // Several loops: a reader need not wait for another request's reply.
    config.n_threads = Some(4);
    let session = fuser::spawn_mount(fuse::LazyFs::new(state.clone()), mountpoint, &config)?;
    let _ = std::fs::remove_file(control);
    let listener = UnixListener::bind(control)?;
    let served = state.clone();
    std::thread::spawn(move || control::serve(listener, served));
    Ok(Mounted {
        state,
        mountpoint: mountpoint.to_path_buf(),
        session: Some(session),
    })
}
