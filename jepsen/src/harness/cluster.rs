//! Real `tael-raft serve` processes: start, kill, pause, restart, and their
//! network (loopback, or one network namespace per node on a bridge).

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tael_raft::http_client;

/// How nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// One network namespace per node, veth pairs on a bridge; partitions
    /// are nft rules inside the namespaces. Needs root.
    Netns,
    /// Loopback; partitions go through per-link TCP proxies in the harness
    /// and the server's `--dial-override`.
    Proxy,
}

const BRIDGE: &str = "tjbr0";
const NS_PREFIX: &str = "tj-n";
const SUBNET: &str = "10.77.0";
const REST_PORT: u16 = 7701;
const RAFT_PORT: u16 = 7702;
const OTLP_PORT: u16 = 4317;
const OTLP_HTTP_PORT: u16 = 4318;

#[derive(Debug, Clone, Serialize)]
pub struct NodeSpec {
    pub id: u64,
    pub rest: String,
    pub raft: String,
    pub otlp: String,
    /// OTLP/HTTP: not used by the workloads, but every node binds one, so
    /// on loopback each needs its own port.
    pub otlp_http: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Network namespace (netns mode).
    pub netns: Option<String>,
    pub ip: Option<String>,
    /// libfaketime offset file, when the clock nemesis is enabled.
    pub clock_file: Option<PathBuf>,
    /// The control socket of the node's `tael-lazyfs` mount (its data
    /// directory), when the run uses one.
    pub lazyfs_control: Option<PathBuf>,
}

impl NodeSpec {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.rest, path)
    }
}

#[derive(Default)]
struct Proc {
    child: Option<Child>,
    paused: bool,
    starts: u32,
    /// The exit code of this start's process once it exited by itself,
    /// whoever reaped it (`is_running` may, before `wait_exit` looks).
    exited: Option<Option<i32>>,
    /// When the running process was spawned.
    started_at: Option<Instant>,
}

pub struct ClusterConfig {
    pub server_bin: PathBuf,
    pub run_dir: PathBuf,
    pub net: NetMode,
    /// Extra `serve` flags for every node (e.g. `--power-loss-sim`).
    pub extra_args: Vec<String>,
    /// libfaketime to preload into every node (clock faults), if any.
    pub faketime_lib: Option<PathBuf>,
    /// Let libfaketime fake the monotonic clock too (the slow-clock fault:
    /// Raft's lease and timers run on it). Otherwise only wall clocks move.
    pub fake_monotonic: bool,
    /// `tael-lazyfs`: each node's data directory on a mount of its own.
    pub lazyfs_bin: Option<PathBuf>,
}

struct Inner {
    specs: BTreeMap<u64, NodeSpec>,
    procs: BTreeMap<u64, Proc>,
    /// proxy mode: `--dial-override` flags per dialing node.
    dial_overrides: BTreeMap<u64, Vec<String>>,
    /// Nodes the membership nemesis removed: never started again, and
    /// named as removed when asked for (ids are never reused).
    removed: BTreeSet<u64>,
    /// The data directories' file systems, when the run uses them.
    mounts: BTreeMap<u64, super::lazyfs::Mount>,
    /// Processes found gone that no harness action stopped (see
    /// [`Cluster::unexpected_exits`]).
    exits: Vec<UnexpectedExit>,
}

/// A node process that exited by itself: not killed by the harness, nor
/// awaited as an expected exit ([`Cluster::wait_exit`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnexpectedExit {
    pub node: u64,
    /// The exit code, `None` when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// When the harness noticed, ms since the cluster was created.
    pub noticed_ms: u64,
}

impl Inner {
    fn spec(&self, id: u64) -> Result<&NodeSpec, String> {
        self.specs.get(&id).ok_or_else(|| {
            if self.removed.contains(&id) {
                format!("node {id} was removed from the cluster")
            } else {
                format!("no node {id}")
            }
        })
    }
}

impl Drop for Inner {
    /// Kills every node still running when the last handle goes away
    /// (including while unwinding from a panic).
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // After the nodes: a file system gone under a live node reads as
        // an I/O error there, not as the fault under test.
        for (_, m) in std::mem::take(&mut self.mounts) {
            m.stop();
        }
    }
}

/// Shared handle to the cluster's processes.
#[derive(Clone)]
pub struct Cluster {
    cfg: Arc<ClusterConfig>,
    inner: Arc<Mutex<Inner>>,
    /// For the times of [`UnexpectedExit`]s.
    created: Instant,
}

fn free_port() -> Result<u16, String> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port())
}

/// Runs a command and fails with its stderr when it exits non-zero.
pub fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sh_stdin(program: &str, args: &[&str], input: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .map_err(|e| format!("{program} stdin: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Removes namespaces and the bridge a crashed run may have left behind.
pub fn netns_cleanup() {
    if let Ok(list) = sh("ip", &["netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(NS_PREFIX) {
                let _ = sh("ip", &["netns", "del", name]);
            }
        }
    }
    let _ = sh("ip", &["link", "del", BRIDGE]);
    // A deleted namespace can outlive its name for a while (the kernel
    // tears it down lazily), keeping its veth pair alive: remove our host
    // ends explicitly, which removes the pairs.
    if let Ok(links) = sh("ip", &["-o", "link", "show"]) {
        for line in links.lines() {
            let name = line.split(':').nth(1).map(str::trim).unwrap_or("");
            let name = name.split('@').next().unwrap_or("");
            if name.starts_with("tjv") {
                let _ = sh("ip", &["link", "del", name]);
            }
        }
    }
}

fn netns_setup_bridge() -> Result<(), String> {
    sh("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    sh(
        "ip",
        &["addr", "add", &format!("{SUBNET}.1/24"), "dev", BRIDGE],
    )?;
    sh("ip", &["link", "set", BRIDGE, "up"])?;
    Ok(())
}

fn netns_add_node(id: u64) -> Result<(String, String), String> {
    let ns = format!("{NS_PREFIX}{id}");
    let ip = format!("{SUBNET}.{}", 10 + id);
    let host_if = format!("tjv{id}");
    let ns_if = format!("tjp{id}");
    sh("ip", &["netns", "add", &ns])?;
    sh(
        "ip",
        &[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ],
    )?;
    sh("ip", &["link", "set", &ns_if, "netns", &ns])?;
    sh("ip", &["link", "set", &host_if, "master", BRIDGE])?;
    sh("ip", &["link", "set", &host_if, "up"])?;
    let in_ns = |args: &[&str]| {
        let mut full = vec!["netns", "exec", ns.as_str(), "ip"];
        full.extend_from_slice(args);
        sh("ip", &full)
    };
    in_ns(&["addr", "add", &format!("{ip}/24"), "dev", &ns_if])?;
    in_ns(&["link", "set", &ns_if, "up"])?;
    in_ns(&["link", "set", "lo", "up"])?;
    Ok((ns, ip))
}

impl Cluster {
    /// Prepares `n` nodes (ids 1..=n) and their network; starts nothing.
    pub fn new(cfg: ClusterConfig, n: u64) -> Result<Cluster, String> {
        if cfg.net == NetMode::Netns {
            netns_cleanup();
            netns_setup_bridge()?;
        }
        let c = Cluster {
            cfg: Arc::new(cfg),
            inner: Arc::new(Mutex::new(Inner {
                specs: BTreeMap::new(),
                procs: BTreeMap::new(),
                dial_overrides: BTreeMap::new(),
                removed: BTreeSet::new(),
                mounts: BTreeMap::new(),
                exits: Vec::new(),
            })),
            created: Instant::now(),
        };
        // Nodes run the way production runs them: every client call with a
        // key, every peer call with a proof of the cluster secret.
        let secret = tael_consensus::hex(&rand::random::<[u8; 32]>());
        std::fs::write(c.secret_file(), secret)
            .map_err(|e| format!("{}: {e}", c.secret_file().display()))?;
        for id in 1..=n {
            c.add_spec(id)?;
        }
        Ok(c)
    }

    /// The cluster secret every node is started with.
    pub fn secret_file(&self) -> std::path::PathBuf {
        self.cfg.run_dir.join("cluster.secret")
    }

    /// The process table. Every critical section is a lookup or a single
    /// insert or remove, and none calls code that panics, so a poisoned
    /// lock (a panic elsewhere while it was held) still guards consistent
    /// maps: recover it rather than turning one panic into a panic of
    /// every later caller, including the heal and the shutdown.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn net(&self) -> NetMode {
        self.cfg.net
    }

    pub fn run_dir(&self) -> &Path {
        &self.cfg.run_dir
    }

    /// Declares node `id` (fresh data dir, own namespace in netns mode).
    pub fn add_spec(&self, id: u64) -> Result<NodeSpec, String> {
        let dir = &self.cfg.run_dir;
        let (netns, ip, rest, raft, otlp, otlp_http) = match self.cfg.net {
            NetMode::Netns => {
                let (ns, ip) = netns_add_node(id)?;
                (
                    Some(ns),
                    Some(ip.clone()),
                    format!("{ip}:{REST_PORT}"),
                    format!("{ip}:{RAFT_PORT}"),
                    format!("{ip}:{OTLP_PORT}"),
                    format!("{ip}:{OTLP_HTTP_PORT}"),
                )
            }
            NetMode::Proxy => (
                None,
                None,
                format!("127.0.0.1:{}", free_port()?),
                format!("127.0.0.1:{}", free_port()?),
                format!("127.0.0.1:{}", free_port()?),
                format!("127.0.0.1:{}", free_port()?),
            ),
        };
        let clock_file = if self.cfg.faketime_lib.is_some() {
            let p = dir.join(format!("node{id}.faketime"));
            std::fs::write(&p, "+0s\n").map_err(|e| format!("{}: {e}", p.display()))?;
            Some(p)
        } else {
            None
        };
        let data_dir = dir.join(format!("node{id}"));
        let mount = match &self.cfg.lazyfs_bin {
            Some(bin) => Some(super::lazyfs::start(bin, dir, id, &data_dir)?),
            None => None,
        };
        let spec = NodeSpec {
            id,
            rest,
            raft,
            otlp,
            otlp_http,
            data_dir,
            log_path: dir.join(format!("node{id}.log")),
            netns,
            ip,
            clock_file,
            lazyfs_control: mount.as_ref().map(|m| m.control.clone()),
        };
        let mut inner = self.lock();
        inner.specs.insert(id, spec.clone());
        if let Some(m) = mount {
            inner.mounts.insert(id, m);
        }
        inner.procs.entry(id).or_default();
        Ok(spec)
    }

    /// Node `id`'s addresses and paths; an error once the membership
    /// nemesis removed it (any task may still hold its id).
    pub fn spec(&self, id: u64) -> Result<NodeSpec, String> {
        self.lock().spec(id).cloned()
    }

    /// The nodes of the cluster (removed ones excluded).
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.lock().specs.values().cloned().collect()
    }

    /// Every node log of the run, by node id: also those of nodes removed
    /// or rebuilt under a new id since (a panic there counts too).
    pub fn all_node_logs(&self) -> Vec<(u64, PathBuf)> {
        let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.cfg.run_dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        let id = name
                            .strip_prefix("node")?
                            .strip_suffix(".log")?
                            .parse()
                            .ok()?;
                        Some((id, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    pub fn ids(&self) -> Vec<u64> {
        self.lock().specs.keys().copied().collect()
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.lock().removed.contains(&id)
    }

    /// Kills and forgets a node (after it was removed from the membership,
    /// or never became a member). Its id stays known as removed.
    pub fn forget(&self, id: u64) {
        self.kill(id);
        let mut inner = self.lock();
        inner.specs.remove(&id);
        inner.procs.remove(&id);
        inner.dial_overrides.remove(&id);
        inner.removed.insert(id);
    }

    pub fn set_dial_overrides(&self, id: u64, overrides: Vec<String>) {
        self.lock().dial_overrides.insert(id, overrides);
    }

    pub fn is_running(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let Some(p) = inner.procs.get_mut(&id) else {
            return false;
        };
        // Reap a process that exited by itself (e.g. refused to start).
        let mut exited = None;
        if let Some(child) = p.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                p.child = None;
                p.paused = false;
                p.exited = Some(status.code());
                exited = Some(status);
            }
        }
        let running = p.child.is_some();
        if let Some(status) = exited {
            use std::os::unix::process::ExitStatusExt;
            let noticed_ms = self.created.elapsed().as_millis() as u64;
            inner.exits.push(UnexpectedExit {
                node: id,
                code: status.code(),
                signal: status.signal(),
                noticed_ms,
            });
        }
        running
    }

    /// Whether node `id` is down because it exited on its own (not killed
    /// by the harness, never started, or removed).
    pub fn exited_by_itself(&self, id: u64) -> bool {
        if self.is_running(id) {
            return false;
        }
        // `kill` reaps its own child, so only an exit by itself is kept.
        self.lock()
            .procs
            .get(&id)
            .is_some_and(|p| p.exited.is_some())
    }

    pub fn running(&self) -> Vec<u64> {
        self.ids()
            .into_iter()
            .filter(|id| self.is_running(*id))
            .collect()
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.lock().procs.get(&id).is_some_and(|p| p.paused)
    }

    /// Starts node `id` unless it is running; returns whether it started.
    /// A removed node is an error: it must never come back.
    pub fn start(&self, id: u64) -> Result<bool, String> {
        if self.is_running(id) {
            return Ok(false);
        }
        // Held until the child is recorded, so two concurrent starts of
        // one node cannot both spawn it.
        let mut inner = self.lock();
        let spec = inner.spec(id)?.clone();
        if inner.procs.get(&id).is_some_and(|p| p.child.is_some()) {
            return Ok(false);
        }
        let overrides = inner.dial_overrides.get(&id).cloned().unwrap_or_default();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .map_err(|e| format!("{}: {e}", spec.log_path.display()))?;
        let mut args = self.command_line(id, &spec, &overrides);
        // `ip netns exec` and `env` exec in place, so the child's pid is
        // the server's and signals reach it directly.
        let program = match &spec.netns {
            Some(ns) => {
                let mut prefix: Vec<String> = ["netns", "exec", ns.as_str(), "/usr/bin/env"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                prefix.append(&mut args);
                args = prefix;
                "ip".to_string()
            }
            None => "/usr/bin/env".to_string(),
        };
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&program);
        // If the harness dies (crash, SIGKILL), its nodes die with it
        // instead of running on in a namespace nobody cleans up.
        // SAFETY: prctl is async-signal-safe and touches no shared state.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("spawning node {id} ({program}): {e}"))?;
        let p = inner.procs.entry(id).or_default();
        p.child = Some(child);
        p.paused = false;
        p.exited = None;
        p.starts += 1;
        p.started_at = Some(Instant::now());
        Ok(true)
    }

    /// `env VAR=... tael-raft serve ...` for node `id`: every listener on
    /// the node's own address (a listener left at its default would
    /// collide between nodes on loopback).
    fn command_line(&self, id: u64, spec: &NodeSpec, overrides: &[String]) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        args.push("TAEL_LOG=info,openraft=warn".into());
        if let (Some(clock), Some(lib)) = (&spec.clock_file, &self.cfg.faketime_lib) {
            args.push(format!("LD_PRELOAD={}", lib.display()));
            if !self.cfg.fake_monotonic {
                args.push("DONT_FAKE_MONOTONIC=1".into());
            }
            args.push("FAKETIME_NO_CACHE=1".into());
            args.push(format!("FAKETIME_TIMESTAMP_FILE={}", clock.display()));
        }
        args.push(self.cfg.server_bin.display().to_string());
        args.extend(
            [
                "serve",
                "--node-id",
                &id.to_string(),
                "--data-dir",
                &spec.data_dir.display().to_string(),
                "--raft-addr",
                &spec.raft,
                "--rest-addr",
                &spec.rest,
                "--otlp-grpc-addr",
                &spec.otlp,
                "--otlp-http-addr",
                &spec.otlp_http,
                "--heartbeat-interval-ms",
                "100",
                "--election-timeout-min-ms",
                "700",
                "--election-timeout-max-ms",
                "1400",
                "--runtime-threads",
                "2",
                "--storage-threads",
                "1",
                "--cache-mb",
                "16",
                "--auth",
                "required",
                "--cluster-secret-file",
                &self.secret_file().display().to_string(),
                // The strongest record protection, so every fault runs
                // against it: a crash or a damaged log must never read as
                // an integrity failure, nor one slip through.
                "--log-integrity",
                "hmac",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        for o in overrides {
            args.push("--dial-override".into());
            args.push(o.clone());
        }
        args.extend(self.cfg.extra_args.iter().cloned());
        args
    }

    /// The pid of the server process itself (`ip netns exec` and `env`
    /// exec into it, so the child pid is the server's).
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.lock()
            .procs
            .get(&id)
            .and_then(|p| p.child.as_ref().map(Child::id))
    }

    /// SIGKILL; returns whether a running process was killed.
    pub fn kill(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let Some(p) = inner.procs.get_mut(&id) else {
            return false;
        };
        let Some(mut child) = p.child.take() else {
            return false;
        };
        p.paused = false;
        let killed = child.kill().is_ok();
        let _ = child.wait();
        killed
    }

    fn signal(&self, id: u64, sig: i32) -> bool {
        match self.pid(id) {
            // SAFETY: kill(2) on a pid we spawned and have not reaped.
            Some(pid) => unsafe { libc::kill(pid as i32, sig) == 0 },
            None => false,
        }
    }

    /// SIGSTOP; returns whether it was delivered.
    pub fn pause(&self, id: u64) -> bool {
        if !self.is_running(id) || self.is_paused(id) {
            return false;
        }
        let ok = self.signal(id, libc::SIGSTOP);
        if ok {
            if let Some(p) = self.lock().procs.get_mut(&id) {
                p.paused = true;
            }
        }
        ok
    }

    pub fn resume(&self, id: u64) -> bool {
        if !self.is_paused(id) {
            return false;
        }
        let ok = self.signal(id, libc::SIGCONT);
        if let Some(p) = self.lock().procs.get_mut(&id) {
            p.paused = false;
        }
        ok
    }

    /// Waits for a process expected to exit by itself; `Some(code)` if it did.
    pub fn wait_exit(&self, id: u64, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut inner = self.lock();
                let p = inner.procs.get_mut(&id)?;
                let Some(child) = p.child.as_mut() else {
                    // Reaped already (or killed: then `exited` is None).
                    return p.exited;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    p.child = None;
                    p.exited = Some(status.code());
                    return p.exited;
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every node process found exited that the harness neither killed
    /// nor waited for as an expected exit, in the order noticed. Exits are
    /// noticed when anything asks whether the node runs (the leader
    /// observer does, every poll).
    pub fn unexpected_exits(&self) -> Vec<UnexpectedExit> {
        self.lock().exits.clone()
    }

    /// How long node `id`'s running process has run (from its spawn).
    pub fn uptime(&self, id: u64) -> Option<Duration> {
        let inner = self.lock();
        let p = inner.procs.get(&id)?;
        p.child.as_ref()?;
        p.started_at.map(|t| t.elapsed())
    }

    pub fn starts(&self, id: u64) -> u32 {
        self.lock().procs.get(&id).map_or(0, |p| p.starts)
    }

    /// Sends `command` to node `id`'s data directory file system.
    pub fn lazyfs(&self, id: u64, command: &str) -> Result<String, String> {
        let control = self
            .spec(id)?
            .lazyfs_control
            .ok_or_else(|| format!("node {id}'s data directory is not on tael-lazyfs"))?;
        super::lazyfs::send(&control, command)
    }

    /// Whether the nodes' data directories are on tael-lazyfs mounts.
    pub fn on_lazyfs(&self) -> bool {
        self.cfg.lazyfs_bin.is_some()
    }

    /// Kills every node and removes the network and the mounts.
    pub fn shutdown(&self) {
        for id in self.ids() {
            self.resume(id);
            self.kill(id);
        }
        let mounts = std::mem::take(&mut self.lock().mounts);
        for (_, m) in mounts {
            m.stop();
        }
        if self.cfg.net == NetMode::Netns {
            netns_cleanup();
        }
    }

    // ---- network faults (netns mode) ----

    /// Installs the set of blocked directed links `(from, to)`: packets
    /// from `from` are dropped on arrival at `to`. Replaces earlier rules.
    pub fn netns_block(&self, links: &[(u64, u64)]) -> Result<(), String> {
        let specs = self.specs();
        for to in &specs {
            let ns = to.netns.as_deref().ok_or("not in netns mode")?;
            let mut script = String::from(
                "table inet tjepsen\ndelete table inet tjepsen\ntable inet tjepsen {\n chain input {\n  type filter hook input priority 0; policy accept;\n",
            );
            for (from, _) in links.iter().filter(|(_, t)| *t == to.id) {
                if let Some(ip) = specs
                    .iter()
                    .find(|s| s.id == *from)
                    .and_then(|s| s.ip.clone())
                {
                    script.push_str(&format!("  ip saddr {ip} drop\n"));
                }
            }
            script.push_str(" }\n}\n");
            sh_stdin("ip", &["netns", "exec", ns, "nft", "-f", "-"], &script)
                .map_err(|e| format!("node {}: {e}", to.id))?;
        }
        Ok(())
    }

    /// Whether a TCP connect from `from`'s namespace to `to`'s raft port
    /// fails within a second: proof that the link is really cut.
    pub fn netns_link_cut(&self, from: u64, to: u64) -> Result<bool, String> {
        let (f, t) = (self.spec(from)?, self.spec(to)?);
        let ns = f.netns.ok_or("not in netns mode")?;
        let status = Command::new("ip")
            .args(["netns", "exec", &ns, "timeout", "1", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{}", t.raft.replace(':', "/")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("probing link {from}->{to}: {e}"))?;
        Ok(!status.success())
    }

    pub fn netns_heal(&self) -> Result<(), String> {
        self.netns_block(&[])
    }

    // ---- clock (libfaketime) ----

    pub fn set_clock_offset(&self, id: u64, offset_s: i64) -> Result<(), String> {
        let text = if offset_s >= 0 {
            format!("+{offset_s}s\n")
        } else {
            format!("{offset_s}s\n")
        };
        self.set_clock_spec(id, &text)
    }

    /// Writes a libfaketime time specification (offset and rate, e.g.
    /// `+0 x0.1`) for node `id`, read at its next clock call.
    pub fn set_clock_spec(&self, id: u64, spec_text: &str) -> Result<(), String> {
        let spec = self.spec(id)?;
        let path = spec.clock_file.ok_or("clock faults are not enabled")?;
        std::fs::write(&path, spec_text).map_err(|e| format!("{}: {e}", path.display()))
    }

    // ---- REST helpers ----

    /// The node every running node that answers agrees is leader, if any.
    pub async fn current_leader(&self) -> Option<u64> {
        for id in self.running() {
            if self.is_paused(id) {
                continue;
            }
            if let Ok(v) = self
                .get_json(id, "/readyz", Duration::from_millis(800))
                .await
            {
                if let Some(l) = v["leader"].as_u64() {
                    return Some(l);
                }
            }
            // /readyz answers 503 with a JSON body while not ready; get_json
            // treats that as an error, so fall back to the cluster view.
            if let Ok(v) = self
                .get_json(id, "/api/v1/cluster", Duration::from_millis(800))
                .await
            {
                if let Some(l) = v["leader"].as_u64() {
                    return Some(l);
                }
            }
        }
        None
    }

    pub async fn get_json(&self, id: u64, path: &str, timeout: Duration) -> Result<Value, String> {
        let url = self.spec(id)?.url(path);
        let r = http_client::request("GET", &url, None, b"", timeout).await?;
        if r.status != 200 {
            return Err(format!(
                "GET {url}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        r.json()
    }

    /// A GET that must answer 200; its body as text.
    pub async fn get_text(&self, id: u64, path: &str, timeout: Duration) -> Result<String, String> {
        let url = self.spec(id)?.url(path);
        let r = http_client::request("GET", &url, None, b"", timeout).await?;
        if r.status != 200 {
            return Err(format!("GET {url}: {}", r.status));
        }
        Ok(String::from_utf8_lossy(&r.body).into_owned())
    }

    /// The node's wall clock as its HTTP `Date` header says (seconds).
    pub async fn node_wall_clock_s(&self, id: u64) -> Result<i64, String> {
        let url = self.spec(id)?.url("/healthz");
        let r = http_client::request("GET", &url, None, b"", Duration::from_secs(2)).await?;
        let date = r.header("date").ok_or("no Date header")?;
        parse_http_date(date).ok_or_else(|| format!("unparseable Date header {date:?}"))
    }
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-node cluster description in proxy mode (nothing is started),
    /// its run directory under the system's temporary directory.
    fn proxy_cluster_of_three(name: &str) -> (PathBuf, Cluster) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = ClusterConfig {
            server_bin: PathBuf::from("/bin/false"),
            run_dir: dir.clone(),
            net: NetMode::Proxy,
            extra_args: Vec::new(),
            faketime_lib: None,
            fake_monotonic: false,
            lazyfs_bin: None,
        };
        (dir, Cluster::new(config, 3).unwrap())
    }

    /// The membership nemesis removes node 2 while the observer, the
    /// clients and the other nemeses still hold its id. Asking for it was
    /// a panic (`no entry found for key`) inside the cluster lock, which
    /// poisoned the lock and panicked every later caller: exit 101.
    #[test]
    fn a_removed_node_is_an_error_for_every_caller() {
        let (dir, c) = proxy_cluster_of_three("tj-cluster");
        c.forget(2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(c.get_json(2, "/api/v1/cluster", Duration::from_millis(200)));
        assert!(got.unwrap_err().contains("removed"));
        assert!(rt.block_on(c.node_wall_clock_s(2)).is_err());
        assert!(c.set_clock_offset(2, 5).is_err());
        // Later callers still work.
        assert_eq!(c.ids(), [1, 3]);
        assert!(c.spec(2).unwrap_err().contains("removed"));
        assert!(c.spec(3).is_ok());
        assert!(c.start(2).unwrap_err().contains("removed"));
        assert!(c.is_removed(2) && !c.is_removed(3));
        assert!(!c.is_running(2) && !c.is_paused(2) && !c.kill(2));
        assert!(c.netns_link_cut(1, 2).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every listener the server opens gets a port of its own per node:
    /// the OTLP/HTTP listener left at its default made the second node on
    /// loopback exit with "Address already in use" (proxy mode).
    #[test]
    fn every_listener_gets_its_own_address_per_node() {
        let (dir, c) = proxy_cluster_of_three("tj-cmdline");
        let mut seen = BTreeSet::new();
        for spec in c.specs() {
            let args = c.command_line(spec.id, &spec, &[]);
            for flag in [
                "--raft-addr",
                "--rest-addr",
                "--otlp-grpc-addr",
                "--otlp-http-addr",
            ] {
                let at = args.iter().position(|a| a == flag);
                let addr = at.and_then(|i| args.get(i + 1));
                let addr = addr.unwrap_or_else(|| panic!("node {}: no {flag}", spec.id));
                assert!(seen.insert(addr.clone()), "{addr} used twice");
            }
        }
        assert_eq!(seen.len(), 12);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The slow-clock fault needs libfaketime to fake the monotonic clock
    /// (Raft's lease is timed by it); the clock fault must leave it alone.
    #[test]
    fn only_the_slow_clock_fault_fakes_the_monotonic_clock() {
        for fake_monotonic in [false, true] {
            let dir = std::env::temp_dir().join(format!(
                "tj-faketime-{fake_monotonic}-{}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let c = Cluster::new(
                ClusterConfig {
                    server_bin: PathBuf::from("/bin/false"),
                    run_dir: dir.clone(),
                    net: NetMode::Proxy,
                    extra_args: Vec::new(),
                    faketime_lib: Some(PathBuf::from("/lib/libfaketime.so.1")),
                    fake_monotonic,
                    lazyfs_bin: None,
                },
                1,
            )
            .unwrap();
            let spec = c.spec(1).unwrap();
            let args = c.command_line(1, &spec, &[]);
            assert!(args.iter().any(|a| a.starts_with("LD_PRELOAD=")));
            assert_eq!(
                args.iter().any(|a| a == "DONT_FAKE_MONOTONIC=1"),
                !fake_monotonic
            );
            c.set_clock_spec(1, "+0 x0.1\n").unwrap();
            let clock = std::fs::read_to_string(spec.clock_file.unwrap()).unwrap();
            assert_eq!(clock, "+0 x0.1\n");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("garbage"), None);
    }
}
