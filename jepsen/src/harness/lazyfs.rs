//! A node's data directory on its own `tael-lazyfs` mount: the file system
//! that loses everything not fsynced on `power-cut`, fails writes with
//! ENOSPC on `full on` and holds fsyncs on `slow-fsync MS` (lazyfs/).
//!
//! The backing directory sits beside the mount (`node<N>.backing`), the
//! control socket too (`node<N>.lazyfs.sock`), and the file system's own
//! output goes to `node<N>.lazyfs.log`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh mount may take to answer its control socket.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one control command may take (a power cut restores files).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The `tael-lazyfs` binary beside the running harness binary.
pub fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("tael-lazyfs")))
        .unwrap_or_else(|| PathBuf::from("tael-lazyfs"))
}

/// One running mount.
pub struct Mount {
    pub child: Child,
    pub mountpoint: PathBuf,
    pub control: PathBuf,
}

/// Mounts a fresh backing directory `<run_dir>/node<id>.backing` at
/// `mountpoint` and waits until its control socket answers.
pub fn start(bin: &Path, run_dir: &Path, id: u64, mountpoint: &Path) -> Result<Mount, String> {
    let backing = run_dir.join(format!("node{id}.backing"));
    let control = run_dir.join(format!("node{id}.lazyfs.sock"));
    let log_path = run_dir.join(format!("node{id}.lazyfs.log"));
    for dir in [&backing, &mountpoint.to_path_buf()] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    // Dies with the harness; the mount goes with it (auto_unmount).
    // SAFETY: prctl is async-signal-safe and touches no shared state.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .arg("--backing")
        .arg(&backing)
        .arg("--mount")
        .arg(mountpoint)
        .arg("--control")
        .arg(&control)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
    let deadline = Instant::now() + MOUNT_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!(
                "tael-lazyfs for node {id} exited ({status}): {}",
                log.trim()
            ));
        }
        if send(&control, "status").is_ok() {
            return Ok(Mount {
                child,
                mountpoint: mountpoint.to_path_buf(),
                control,
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "tael-lazyfs for node {id} did not answer within {MOUNT_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Mount {
    /// Ends the file system and makes sure nothing stays mounted.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // auto_unmount does this too, asynchronously; a lazy unmount now
        // leaves no dead mount for the next step to trip on.
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&self.mountpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Sends one control command; the text after `ok`.
pub fn send(control: &Path, command: &str) -> Result<String, String> {
    let run = || -> std::io::Result<String> {
        let mut stream = UnixStream::connect(control)?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        Ok(line)
    };
    let line = run().map_err(|e| format!("{command}: {}: {e}", control.display()))?;
    let line = line.trim_end();
    match line.split_once(' ').unwrap_or((line, "")) {
        ("ok", rest) => Ok(rest.to_string()),
        _ => Err(format!("{command}: {line}")),
    }
}

/// `--lazyfs`: whether the nodes' data directories go on tael-lazyfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// When the profile wants it and the machine can (power-loss profiles
    /// fall back to the Raft log's `--power-loss-sim` otherwise).
    #[default]
    Auto,
    /// Always; a run that cannot mount fails at start.
    On,
    /// Never; profiles whose faults need it fail at start.
    Off,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "auto" => Mode::Auto,
            "on" => Mode::On,
            "off" => Mode::Off,
            _ => return None,
        })
    }
}

/// What the run should do about tael-lazyfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Use,
    /// Not used; the text says why when the profile wanted it.
    Skip(Option<String>),
}

/// Decides from the mode, what the profile asks (`wanted`: better with it;
/// `needed`: its faults exist only on it) and what the machine has
/// (`missing`: prerequisites it lacks, as an explanation).
pub fn choose(
    mode: Mode,
    wanted: bool,
    needed: bool,
    missing: Option<String>,
) -> Result<Choice, String> {
    match (mode, missing) {
        (Mode::Off, _) if needed => Err(
            "this profile's faults (disk-full, slow-disk) need tael-lazyfs, but --lazyfs off"
                .into(),
        ),
        (Mode::Off, _) => Ok(Choice::Skip(None)),
        (Mode::On, None) => Ok(Choice::Use),
        (Mode::On, Some(why)) => Err(why),
        (Mode::Auto, _) if !wanted && !needed => Ok(Choice::Skip(None)),
        (Mode::Auto, None) => Ok(Choice::Use),
        (Mode::Auto, Some(why)) if needed => Err(why),
        (Mode::Auto, Some(why)) => Ok(Choice::Skip(Some(why))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_lazyfs_when_wanted_and_possible() {
        let gone = || Some("install fuse3".to_string());
        assert_eq!(choose(Mode::Auto, true, false, None), Ok(Choice::Use));
        assert_eq!(
            choose(Mode::Auto, false, false, None),
            Ok(Choice::Skip(None))
        );
        // Power-loss profiles fall back, saying why.
        assert_eq!(
            choose(Mode::Auto, true, false, gone()),
            Ok(Choice::Skip(gone()))
        );
        // Disk faults exist only on lazyfs.
        assert!(choose(Mode::Auto, true, true, gone()).is_err());
        assert!(choose(Mode::Off, true, true, None).is_err());
        assert_eq!(choose(Mode::Off, true, false, None), Ok(Choice::Skip(None)));
        assert_eq!(choose(Mode::On, false, false, None), Ok(Choice::Use));
        assert!(choose(Mode::On, false, false, gone()).is_err());
    }
}
