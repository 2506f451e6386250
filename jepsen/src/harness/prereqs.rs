//! What a run needs from the machine before it starts: the programs and
//! libraries that install its faults. A fault that cannot be installed
//! makes a run that proves nothing about that fault, so the harness checks
//! first and says which packages to install, instead of running for
//! minutes and reporting the fault as never installed.

use std::path::{Path, PathBuf};

use super::cluster::NetMode;
use super::nemesis::FaultKind;

/// One missing prerequisite and the Debian package that provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The program or library looked for.
    pub what: &'static str,
    pub package: &'static str,
    /// What of the run needs it.
    pub needed_for: &'static str,
}

/// What the machine has, as seen by [`probe`] (or a test).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// `ip` (iproute2).
    pub ip: bool,
    /// `nft` (nftables).
    pub nft: bool,
    /// `libfaketime.so.1` (faketime), when found.
    pub faketime_lib: Option<PathBuf>,
    /// `fusermount3` (fuse3) and `/dev/fuse`: tael-lazyfs can mount.
    pub fuse: bool,
}

/// Looks at this machine.
pub fn probe() -> Machine {
    Machine {
        ip: on_path("ip"),
        nft: on_path("nft"),
        faketime_lib: find_faketime_lib(),
        fuse: on_path("fusermount3") && Path::new("/dev/fuse").exists(),
    }
}

/// What tael-lazyfs mounts need that `machine` (and `lazyfs_bin`, built
/// with `cargo build -p tael-lazyfs`) lacks, as one explanation.
pub fn lazyfs_missing(machine: &Machine, lazyfs_bin: &Path) -> Option<String> {
    let mut why = Vec::new();
    if !machine.fuse {
        why.push(
            "fusermount3 and /dev/fuse (install package fuse3: `apt-get install -y fuse3`, \
             or scripts/install-test-deps; in a container, pass /dev/fuse through)"
                .to_string(),
        );
    }
    if !is_executable(lazyfs_bin) {
        why.push(format!(
            "{} (build it: `cargo build -p tael-lazyfs`)",
            lazyfs_bin.display()
        ));
    }
    (!why.is_empty()).then(|| {
        format!(
            "tael-lazyfs data directories (whole-node power loss, full and slow disks) need {}",
            why.join(" and ")
        )
    })
}

/// The prerequisites of running `faults` in `net` mode that `machine`
/// lacks, each once.
pub fn missing(faults: &[FaultKind], net: NetMode, machine: &Machine) -> Vec<Missing> {
    let mut out = Vec::new();
    if net == NetMode::Netns && !machine.ip {
        out.push(Missing {
            what: "ip",
            package: "iproute2",
            needed_for: "network namespaces (netns mode)",
        });
    }
    let cuts_links =
        faults.contains(&FaultKind::Partition) || faults.contains(&FaultKind::SlowClock);
    if net == NetMode::Netns && cuts_links && !machine.nft {
        out.push(Missing {
            what: "nft",
            package: "nftables",
            needed_for: "partitions in netns mode",
        });
    }
    let clocks = faults.contains(&FaultKind::Clock) || faults.contains(&FaultKind::SlowClock);
    if clocks && machine.faketime_lib.is_none() {
        out.push(Missing {
            what: "libfaketime.so.1",
            package: "faketime",
            needed_for: "clock faults",
        });
    }
    out
}

/// One paragraph: what is missing, what needs it, and how to install it.
pub fn explain(missing: &[Missing], net: NetMode) -> String {
    let items: Vec<String> = missing
        .iter()
        .map(|m| format!("{} (package {}, for {})", m.what, m.package, m.needed_for))
        .collect();
    let mut packages: Vec<&str> = missing.iter().map(|m| m.package).collect();
    packages.dedup();
    let mode = match net {
        NetMode::Netns => "netns",
        NetMode::Proxy => "proxy",
    };
    format!(
        "missing prerequisites for this profile in {mode} mode: {}; install them \
         (`apt-get install -y {}`, or scripts/install-test-deps) and run again",
        items.join(", "),
        packages.join(" ")
    )
}

/// Where Debian-family systems put libfaketime: `/usr/lib/<triplet>/faketime/`
/// (any architecture), or `/usr/lib/faketime/` and its `/usr/local` twin.
pub fn find_faketime_lib() -> Option<PathBuf> {
    const NAME: &str = "faketime/libfaketime.so.1";
    let mut dirs = vec![PathBuf::from("/usr/lib"), PathBuf::from("/usr/local/lib")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        let mut triplets: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("-linux-"))
            })
            .collect();
        triplets.sort();
        dirs.extend(triplets);
    }
    dirs.into_iter().map(|d| d.join(NAME)).find(|p| p.is_file())
}

/// Whether `program` is an executable file in a directory of `$PATH`.
fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| is_executable(&Path::new(dir).join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FaultKind::*;

    fn machine(ip: bool, nft: bool, faketime: bool) -> Machine {
        Machine {
            ip,
            nft,
            faketime_lib: faketime.then(|| PathBuf::from("/x/libfaketime.so.1")),
            fuse: false,
        }
    }

    fn packages(m: &[Missing]) -> Vec<&str> {
        m.iter().map(|m| m.package).collect()
    }

    #[test]
    fn names_the_packages_the_profile_needs() {
        let all = [Kill, Pause, Partition, Clock, PowerLoss, Membership];
        let bare = machine(true, false, false);
        let m = missing(&all, NetMode::Netns, &bare);
        assert_eq!(packages(&m), ["nftables", "faketime"]);
        let text = explain(&m, NetMode::Netns);
        assert!(
            text.contains("apt-get install -y nftables faketime"),
            "{text}"
        );
        // Proxy mode cuts links in the harness: no nft needed.
        assert_eq!(
            packages(&missing(&all, NetMode::Proxy, &bare)),
            ["faketime"]
        );
        // Without ip, netns mode cannot even start its nodes.
        let no_ip = machine(false, true, true);
        assert_eq!(
            packages(&missing(&[Kill], NetMode::Netns, &no_ip)),
            ["iproute2"]
        );
        assert!(missing(&[Kill], NetMode::Proxy, &no_ip).is_empty());
    }

    #[test]
    fn needs_nothing_the_faults_do_not_use() {
        let bare = machine(true, false, false);
        assert!(missing(&[Kill, Pause, PowerLoss], NetMode::Netns, &bare).is_empty());
        assert!(missing(&all_but_clock(), NetMode::Proxy, &bare).is_empty());
        assert!(missing(
            &[Partition, Clock],
            NetMode::Netns,
            &machine(true, true, true)
        )
        .is_empty());
    }

    #[test]
    fn says_what_lazyfs_mounts_lack() {
        let sh = Path::new("/bin/sh");
        let mut m = machine(true, true, true);
        let why = lazyfs_missing(&m, sh).expect("no fuse");
        assert!(why.contains("apt-get install -y fuse3"), "{why}");
        m.fuse = true;
        assert_eq!(lazyfs_missing(&m, sh), None);
        let why = lazyfs_missing(&m, Path::new("/nonexistent/tael-lazyfs")).unwrap();
        assert!(why.contains("cargo build -p tael-lazyfs"), "{why}");
    }

    fn all_but_clock() -> Vec<FaultKind> {
        vec![Kill, Pause, Partition, PowerLoss, Membership]
    }
}
