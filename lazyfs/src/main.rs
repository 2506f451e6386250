//! `tael-lazyfs --backing DIR --mount DIR --control SOCKET
//! [--max-unsynced-bytes N]`: mounts until killed (the mount goes with the
//! process). Commands go to SOCKET (see `tael_lazyfs::control`).

use std::path::PathBuf;
use std::process::ExitCode;

struct Args {
    backing: PathBuf,
    mount: PathBuf,
    control: PathBuf,
    max_unsynced_bytes: u64,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut backing, mut mount, mut control) = (None, None, None);
    let mut max_unsynced_bytes = tael_lazyfs::DEFAULT_MAX_UNSYNCED_BYTES;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backing" => backing = Some(PathBuf::from(value()?)),
            "--mount" => mount = Some(PathBuf::from(value()?)),
            "--control" => control = Some(PathBuf::from(value()?)),
            "--max-unsynced-bytes" => {
                max_unsynced_bytes = value()?
                    .parse()
                    .map_err(|e| format!("--max-unsynced-bytes: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        backing: backing.ok_or("--backing is required")?,
        mount: mount.ok_or("--mount is required")?,
        control: control.ok_or("--control is required")?,
        max_unsynced_bytes,
    })
}

/// Every file the stores ever opened stays open here until it is removed
/// durably: lift the descriptor limit to its hard cap.
fn raise_nofile_limit() {
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tael-lazyfs: {e}");
            eprintln!(
                "usage: tael-lazyfs --backing DIR --mount DIR --control SOCKET [--max-unsynced-bytes N]"
            );
            return ExitCode::from(2);
        }
    };
    raise_nofile_limit();
    let mounted = match tael_lazyfs::mount(
        &args.backing,
        &args.mount,
        &args.control,
        args.max_unsynced_bytes,
    ) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("tael-lazyfs: mounting {}: {e}", args.mount.display());
            return ExitCode::FAILURE;
        }
    };
    println!("mounted {}", args.mount.display());
    // Serve until killed; the control socket and FUSE run on their threads.
    loop {
        std::thread::park();
        let _ = &mounted;
    }
}
