//! Faults: a seeded schedule per fault kind, executed concurrently (kinds
//! overlap), every action recorded as a `:nemesis` info event that says
//! whether the fault was really installed.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cluster::{Cluster, NetMode};
use super::corruption::{self, Came};
use super::proxy::Proxies;
use super::wal_damage::{self, Expect};
use crate::events::Recorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Clock,
    Corrupt,
    PowerLoss,
    Membership,
    /// Like `Corrupt`, but any file of the data directory. Last, so that
    /// the other kinds keep their seeded schedules.
    CorruptAny,
    /// The data directory's file system fails writes with ENOSPC for a
    /// while (tael-lazyfs `full on`), on one node, the leader or all.
    DiskFull,
    /// Every fsync of one node (the leader or a follower) held 200..800 ms
    /// for a while (tael-lazyfs `slow-fsync`).
    SlowDisk,
    /// The leader proposes an entry no replica can apply (an unknown tag,
    /// undecodable spans, a service name too long to store), past its own
    /// check, through the fault route of a fault-injection build. Every
    /// replica must reject it the same way and keep serving.
    Poison,
    /// Breaks the assumption lease reads rest on (docs/consistency.md): the
    /// leader's clocks, monotonic included, run at a tenth of real time
    /// while it is cut off from every other node (clients still reach it).
    /// A leader that keeps serving lease reads then answers from state the
    /// new leader has moved past. Only for profiles that must be invalid.
    SlowClock,
}

impl FaultKind {
    pub fn parse(s: &str) -> Option<FaultKind> {
        Some(match s {
            "kill" => FaultKind::Kill,
            "pause" => FaultKind::Pause,
            "partition" => FaultKind::Partition,
            "clock" => FaultKind::Clock,
            "corrupt" => FaultKind::Corrupt,
            "corrupt-any" => FaultKind::CorruptAny,
            "power-loss" => FaultKind::PowerLoss,
            "membership" => FaultKind::Membership,
            "disk-full" => FaultKind::DiskFull,
            "slow-disk" => FaultKind::SlowDisk,
            "poison" => FaultKind::Poison,
            "slow-clock" => FaultKind::SlowClock,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Clock => "clock",
            FaultKind::Corrupt => "corrupt",
            FaultKind::CorruptAny => "corrupt-any",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::Membership => "membership",
            FaultKind::DiskFull => "disk-full",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::Poison => "poison",
            FaultKind::SlowClock => "slow-clock",
        }
    }

    /// (min gap, max gap, min duration, max duration) in ms.
    fn timing(self) -> (u64, u64, u64, u64) {
        match self {
            FaultKind::Kill => (3_000, 9_000, 1_500, 5_000),
            // Longer than the 1.4 s maximum election timeout.
            FaultKind::Pause => (4_000, 10_000, 2_000, 5_000),
            FaultKind::Partition => (3_000, 8_000, 3_000, 8_000),
            FaultKind::Clock => (2_000, 6_000, 2_000, 6_000),
            FaultKind::Corrupt | FaultKind::CorruptAny => (8_000, 14_000, 1_000, 2_000),
            FaultKind::PowerLoss => (6_000, 12_000, 1_500, 4_000),
            FaultKind::Membership => (6_000, 12_000, 0, 0),
            FaultKind::DiskFull => (4_000, 10_000, 2_000, 6_000),
            FaultKind::SlowDisk => (3_000, 8_000, 3_000, 8_000),
            // A proposal, nothing to heal.
            FaultKind::Poison => (2_000, 6_000, 0, 0),
            // Long enough for the others to elect a leader (vote lease and
            // election: about 3 s) and acknowledge writes behind it.
            FaultKind::SlowClock => (2_000, 4_000, 8_000, 12_000),
        }
    }

    /// The nemesis events that record an attempt at this fault (not its
    /// heal or restart): their `installed` says whether it took effect.
    pub fn event_names(self) -> &'static [&'static str] {
        match self {
            FaultKind::Kill => &["kill"],
            FaultKind::Pause => &["pause"],
            FaultKind::Partition => &["partition", "flap", "delay"],
            FaultKind::Clock => &["clock"],
            FaultKind::Corrupt | FaultKind::CorruptAny => &["corrupt"],
            FaultKind::PowerLoss => &["power-loss"],
            FaultKind::Membership => &["membership"],
            FaultKind::DiskFull => &["disk-full"],
            FaultKind::SlowDisk => &["slow-disk"],
            FaultKind::Poison => &["poison"],
            FaultKind::SlowClock => &["slow-clock"],
        }
    }

    /// The targets `plan` draws from in network mode `net`: link delay
    /// needs the harness's proxies, so netns mode never plans it.
    fn targets_in(self, net: NetMode) -> Vec<&'static str> {
        self.targets()
            .iter()
            .copied()
            .filter(|t| net == NetMode::Proxy || !PROXY_ONLY_TARGETS.contains(t))
            .collect()
    }

    fn targets(self) -> &'static [&'static str] {
        match self {
            FaultKind::Kill => &["one", "leader", "majority", "all"],
            FaultKind::Pause => &["one", "leader", "majority"],
            FaultKind::Partition => &[
                "isolate-one",
                "isolate-leader",
                "majority-minority",
                "bridge",
                "one-way",
                "flap",
                "delay",
                "blackhole",
            ],
            FaultKind::Clock => &["bump", "strobe"],
            // Placed by the log's durable mark (see `wal_damage`). A blind
            // truncation is not among them: cutting fsynced bytes together
            // with every mark that proved them leaves no evidence a store
            // could refuse on; `corrupt-any` still truncates blindly.
            FaultKind::Corrupt => wal_damage::MODES,
            FaultKind::CorruptAny => &["bitflip-any", "truncate-any"],
            FaultKind::PowerLoss => &["leader", "majority", "all"],
            FaultKind::Membership => &["remove-add", "add-new"],
            FaultKind::DiskFull => &["one", "leader", "all"],
            FaultKind::SlowDisk => &["leader", "follower"],
            // `faults::poison::PoisonKind` names.
            FaultKind::Poison => &["unknown-tag", "undecodable", "long-service-name"],
            FaultKind::SlowClock => &["isolate-leader"],
        }
    }
}

/// Why a proxy-mode link fault did not take: the harness proxies only the
/// links among the first nodes.
const NOT_THROUGH_PROXY: &str = "no traffic on this link goes through a harness proxy \
     (nodes added by the membership nemesis dial their peers directly)";

/// Targets only the proxy network mode can install (netns would need netem).
const PROXY_ONLY_TARGETS: &[&str] = &["delay"];

/// One planned fault, fully determined by the seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Planned {
    pub kind: FaultKind,
    pub at_ms: u64,
    pub duration_ms: u64,
    pub target: String,
    /// Drawn once; picks nodes among candidates at run time.
    pub pick: u64,
    /// Clock offset (s) or corruption position, depending on the kind.
    pub amount: i64,
}

/// The schedule of every kind in `kinds`, each drawn from its own stream
/// of the seed so adding a kind does not move the others.
/// `timing` overrides every kind's (min gap, max gap, min duration, max
/// duration) in ms. Only faults that network mode `net` can install are
/// planned.
pub fn plan(
    kinds: &[FaultKind],
    seed: u64,
    start_ms: u64,
    end_ms: u64,
    timing: Option<(u64, u64, u64, u64)>,
    net: NetMode,
) -> Vec<Planned> {
    let mut out = Vec::new();
    for &kind in kinds {
        let mut rng = StdRng::seed_from_u64(seed ^ ((kind as u64 + 1) << 40));
        let (gmin, gmax, dmin, dmax) = timing.unwrap_or(kind.timing());
        let mut t = start_ms + rng.random_range(0..gmin);
        loop {
            let duration_ms = if dmax > dmin {
                rng.random_range(dmin..dmax)
            } else {
                dmin
            };
            if t + duration_ms > end_ms {
                break;
            }
            let targets = kind.targets_in(net);
            let target = targets[rng.random_range(0..targets.len())].to_string();
            let amount = match kind {
                FaultKind::Clock => {
                    let s = rng.random_range(1..300i64);
                    if rng.random_bool(0.5) {
                        s
                    } else {
                        -s
                    }
                }
                _ => rng.random_range(0..1_000_000i64),
            };
            out.push(Planned {
                kind,
                at_ms: t,
                duration_ms,
                target,
                pick: rng.random(),
                amount,
            });
            t += duration_ms + rng.random_range(gmin..gmax);
        }
    }
    out.sort_by_key(|p| (p.at_ms, p.kind));
    out
}

/// What the executor may use.
#[derive(Clone)]
pub struct Nemesis {
    pub cluster: Cluster,
    pub rec: Recorder,
    pub proxies: Option<Proxies>,
    pub caps: super::Capabilities,
    /// Nodes that refused to start after corruption: left down.
    pub refused: Arc<std::sync::Mutex<BTreeSet<u64>>>,
    /// Corruption outcomes for the report.
    pub corruption_log: Arc<std::sync::Mutex<Vec<Value>>>,
    pub membership: super::membership::Membership,
}

fn pick_some(candidates: &[u64], count: usize, pick: u64) -> Vec<u64> {
    let mut pool = candidates.to_vec();
    let mut out = Vec::new();
    let mut p = pick;
    while out.len() < count && !pool.is_empty() {
        let i = (p % pool.len() as u64) as usize;
        out.push(pool.remove(i));
        p = p.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    }
    out.sort();
    out
}

impl Nemesis {
    fn members(&self) -> Vec<u64> {
        let refused = self.refused.lock().expect("lock").clone();
        self.cluster
            .ids()
            .into_iter()
            .filter(|i| !refused.contains(i))
            .collect()
    }

    async fn targets(&self, spec: &str, pick: u64) -> Vec<u64> {
        let ids = self.members();
        let n = ids.len();
        match spec {
            "one" => pick_some(&ids, 1, pick),
            "leader" => match self.cluster.current_leader().await {
                Some(l) => vec![l],
                None => pick_some(&ids, 1, pick),
            },
            "follower" => {
                let leader = self.cluster.current_leader().await;
                let followers: Vec<u64> =
                    ids.iter().copied().filter(|i| Some(*i) != leader).collect();
                pick_some(&followers, 1, pick)
            }
            "majority" => pick_some(&ids, n / 2 + 1, pick),
            "minority" => pick_some(&ids, n.saturating_sub(1) / 2, pick),
            "all" => ids,
            _ => Vec::new(),
        }
    }

    /// Runs every planned fault of `kind` in order until `stop`.
    pub async fn run_kind(self, kind: FaultKind, plan: Vec<Planned>, stop: Arc<AtomicBool>) {
        let start = self.rec.start();
        for p in plan.into_iter().filter(|p| p.kind == kind) {
            let at = start + Duration::from_millis(p.at_ms);
            if !sleep_until_or_stop(at, &stop).await {
                return;
            }
            self.execute(&p, &stop).await;
        }
    }

    async fn execute(&self, p: &Planned, stop: &AtomicBool) {
        let hold = Duration::from_millis(p.duration_ms);
        match p.kind {
            FaultKind::Kill | FaultKind::PowerLoss => {
                let targets = self.targets(&p.target, p.pick).await;
                let power = p.kind == FaultKind::PowerLoss;
                let mut killed = Vec::new();
                for &id in &targets {
                    if self.cluster.kill(id) {
                        killed.push(id);
                    }
                }
                // Whole-node power loss: the node is dead, now its file
                // system drops everything it did not fsync.
                let cuts = if power && self.caps.lazyfs {
                    self.power_cut(&killed).await
                } else {
                    Vec::new()
                };
                let cut_all = !cuts.is_empty() && cuts.iter().all(|c| c["ok"] == true);
                let installed = !killed.is_empty()
                    && (!power
                        || (self.caps.lazyfs && cut_all)
                        || (!self.caps.lazyfs && self.caps.power_loss_sim));
                let note = match (power, self.caps.lazyfs, self.caps.power_loss_sim) {
                    (false, _, _) => "",
                    (true, true, _) if !cut_all => "a power cut failed: see cuts",
                    (true, true, _) => "every file of the node lost its unsynced data",
                    (true, false, true) => {
                        "only the Raft log loses unsynced data (--power-loss-sim)"
                    }
                    (true, false, false) => "server lacks --power-loss-sim: plain SIGKILL",
                };
                self.rec.nemesis(
                    p.kind.name(),
                    json!({"target": p.target, "nodes": targets, "killed": killed,
                           "installed": installed, "cuts": cuts, "note": note}),
                );
                sleep_or_stop(hold, stop).await;
                let restarted = self.restart(killed);
                self.rec
                    .nemesis("restart", json!({"nodes": restarted, "installed": true}));
            }
            FaultKind::DiskFull => self.disk_full(p, hold, stop).await,
            FaultKind::SlowDisk => self.slow_disk(p, hold, stop).await,
            FaultKind::Pause => {
                let targets = self.targets(&p.target, p.pick).await;
                let paused: Vec<u64> = targets
                    .iter()
                    .copied()
                    .filter(|id| self.cluster.pause(*id))
                    .collect();
                self.rec.nemesis(
                    "pause",
                    json!({"target": p.target, "nodes": targets, "paused": paused, "installed": !paused.is_empty()}),
                );
                sleep_or_stop(hold, stop).await;
                let resumed: Vec<u64> = paused
                    .iter()
                    .copied()
                    .filter(|id| self.cluster.resume(*id))
                    .collect();
                self.rec
                    .nemesis("resume", json!({"nodes": resumed, "installed": true}));
            }
            FaultKind::Partition if p.target == "delay" => self.delay(p, hold, stop).await,
            FaultKind::Partition if p.target == "flap" => self.flap(p, hold, stop).await,
            FaultKind::Partition => {
                let ids = self.members();
                let leader = if p.target == "isolate-leader" {
                    self.cluster.current_leader().await
                } else {
                    None
                };
                let (links, desc) = partition_links(&p.target, &ids, p.pick, leader);
                let result = self.block_mode(&links, p.target == "blackhole");
                // Prove the cut on one link (netns: a TCP connect must fail).
                let verified = match (self.cluster.net(), links.first(), &result) {
                    (NetMode::Netns, Some(&(from, to)), Ok(())) => {
                        let c = self.cluster.clone();
                        tokio::task::spawn_blocking(move || c.netns_link_cut(from, to))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r)
                    }
                    // Proxy: the node must really dial through the proxy
                    // (it accepted connections on that link before).
                    (NetMode::Proxy, Some(&link), Ok(())) => Ok(self
                        .proxies
                        .as_ref()
                        .is_some_and(|px| px.counters(link).0 > 0)),
                    _ => Ok(false),
                };
                let installed =
                    result.is_ok() && !links.is_empty() && verified.as_ref().is_ok_and(|v| *v);
                let error = match (&result, &verified) {
                    (Err(e), _) | (Ok(()), Err(e)) => Some(e.clone()),
                    (Ok(()), Ok(false)) if !links.is_empty() => Some(match self.cluster.net() {
                        NetMode::Netns => "a TCP connect across a cut link succeeded".to_string(),
                        NetMode::Proxy => NOT_THROUGH_PROXY.to_string(),
                    }),
                    _ => None,
                };
                self.rec.nemesis(
                    "partition",
                    json!({"target": p.target, "grudge": desc, "links": links,
                           "installed": installed, "verified_cut": verified.ok(), "error": error}),
                );
                sleep_or_stop(hold, stop).await;
                let cut: Vec<Value> = match &self.proxies {
                    Some(px) => links
                        .iter()
                        .map(|l| json!({"link": l, "accepted_cut": px.counters(*l)}))
                        .collect(),
                    None => Vec::new(),
                };
                let healed = self.block(&[]);
                self.rec.nemesis(
                    "heal-partition",
                    json!({"installed": healed.is_ok(), "error": healed.err(), "proxy_counters": cut}),
                );
            }
            FaultKind::Clock => self.clock(p, hold, stop).await,
            FaultKind::Corrupt | FaultKind::CorruptAny => self.corrupt(p, hold, stop).await,
            FaultKind::Poison => self.poison(p).await,
            FaultKind::SlowClock => self.slow_clock(p, hold, stop).await,
            FaultKind::Membership => {
                let change = super::membership::Change {
                    cluster: &self.cluster,
                    rec: &self.rec,
                    member_commands: self.caps.member_commands,
                    target: &p.target,
                    pick: p.pick,
                };
                self.membership.change(&change).await
            }
        }
    }

    /// Has the leader propose one poison entry of kind `p.target`
    /// (`POST /api/v1/fault/poison`). Installed when the leader answered
    /// with the entry's log index (it reached the ack level); an unanswered
    /// request may still have put it in the log.
    async fn poison(&self, p: &Planned) {
        let Some(leader) = self.cluster.current_leader().await else {
            self.rec.nemesis(
                "poison",
                json!({"target": p.target, "installed": false, "error": "no leader"}),
            );
            return;
        };
        let result = match self.cluster.spec(leader) {
            Ok(spec) => post_poison(&spec.url(POISON_PATH), &p.target).await,
            Err(e) => Err(e),
        };
        self.rec.nemesis(
            "poison",
            json!({"target": p.target, "node": leader, "installed": result.is_ok(),
                   "log_index": result.as_ref().ok(), "error": result.err()}),
        );
    }

    /// Slows the leader's clocks to [`SLOW_CLOCK_RATE`] and cuts it off
    /// from the other nodes for `hold`; then its clock runs at real speed
    /// again and the network heals. Installed when the clock file was
    /// written, libfaketime with a faked monotonic clock runs in the leader,
    /// and a cut link was proven cut.
    async fn slow_clock(&self, p: &Planned, hold: Duration, stop: &AtomicBool) {
        let Some(leader) = self.cluster.current_leader().await else {
            self.rec.nemesis(
                "slow-clock",
                json!({"target": p.target, "installed": false, "error": "no leader"}),
            );
            return;
        };
        if !self.caps.fake_monotonic {
            self.rec.nemesis(
                "slow-clock",
                json!({"target": p.target, "node": leader, "installed": false,
                       "error": "the nodes do not run under libfaketime with a faked monotonic clock"}),
            );
            return;
        }
        let spec = match self.cluster.uptime(leader) {
            Some(up) => Ok(slow_clock_spec(up, SLOW_CLOCK_RATE)),
            None => Err("the leader is not running".to_string()),
        };
        let slowed = spec
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|s| self.cluster.set_clock_spec(leader, s));
        let ids = self.members();
        let (links, desc) = partition_links("isolate-leader", &ids, p.pick, Some(leader));
        let cut = self.block(&links);
        let verified = match (links.first(), &cut) {
            (Some(&(from, to)), Ok(())) if self.cluster.net() == NetMode::Netns => {
                let c = self.cluster.clone();
                tokio::task::spawn_blocking(move || c.netns_link_cut(from, to))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
            }
            (Some(_), Ok(())) => Ok(self.proxies.is_some() && self.caps.dial_override),
            _ => Ok(false),
        };
        let preloaded = self.faketime_mapped(leader);
        let installed = slowed.is_ok()
            && cut.is_ok()
            && verified.as_ref().is_ok_and(|v| *v)
            && preloaded.is_ok();
        self.rec.nemesis(
            "slow-clock",
            json!({"target": p.target, "node": leader, "clock": spec.ok().map(|s| s.trim().to_string()),
                   "grudge": desc, "links": links, "installed": installed,
                   "verified_cut": verified.ok(), "faketime": preloaded,
                   "error": slowed.err().or(cut.err())}),
        );
        sleep_or_stop(hold, stop).await;
        let reset = self.cluster.set_clock_spec(leader, REAL_CLOCK_SPEC);
        let healed = self.block(&[]);
        self.rec.nemesis(
            "heal-slow-clock",
            json!({"node": leader, "installed": reset.is_ok() && healed.is_ok(),
                   "error": reset.err().or(healed.err())}),
        );
    }

    /// Proof that libfaketime runs in node `id`'s server process.
    fn faketime_mapped(&self, id: u64) -> Result<String, String> {
        let pid = self.cluster.pid(id).ok_or("node not running")?;
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
        if maps.contains("libfaketime") {
            Ok(format!("libfaketime mapped into pid {pid}"))
        } else {
            Err("libfaketime is not mapped into the server".into())
        }
    }

    /// Delays every link to and from one node (proxy mode only: netns
    /// would need netem).
    async fn delay(&self, p: &Planned, hold: Duration, stop: &AtomicBool) {
        let ids = self.members();
        let (links, desc) = partition_links("isolate-one", &ids, p.pick, None);
        let delay_ms = 50 + (p.amount as u64 % 450);
        let (installed, error) = match (&self.proxies, self.caps.dial_override) {
            (Some(px), true) => {
                px.delay(&links, delay_ms);
                let through_proxy = links.first().is_some_and(|l| px.counters(*l).0 > 0);
                if !through_proxy {
                    // Not the fault planned: leave no link half-delayed.
                    px.delay(&[], 0);
                }
                (through_proxy, (!through_proxy).then_some(NOT_THROUGH_PROXY))
            }
            _ => (
                false,
                Some("link delay needs proxy mode (netns would need netem)"),
            ),
        };
        self.rec.nemesis(
            "delay",
            json!({"target": desc, "delay_ms": delay_ms, "links": links, "installed": installed,
                   "error": error}),
        );
        if !installed {
            return;
        }
        sleep_or_stop(hold, stop).await;
        if let Some(px) = &self.proxies {
            px.delay(&[], 0);
        }
        self.rec.nemesis("heal-delay", json!({"installed": true}));
    }

    /// Cuts and restores one node's links every 500 ms.
    async fn flap(&self, p: &Planned, hold: Duration, stop: &AtomicBool) {
        let ids = self.members();
        let (links, desc) = partition_links("isolate-one", &ids, p.pick, None);
        let first = self.block(&links);
        self.rec.nemesis(
            "flap",
            json!({"target": desc, "links": links, "installed": first.is_ok(), "error": first.as_ref().err()}),
        );
        if first.is_err() {
            return;
        }
        let end = Instant::now() + hold;
        let mut cut = true;
        let mut toggles = 1u64;
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            cut = !cut;
            toggles += 1;
            let _ = self.block(if cut { &links } else { &[] });
        }
        let healed = self.block(&[]);
        self.rec.nemesis(
            "heal-flap",
            json!({"toggles": toggles, "installed": healed.is_ok()}),
        );
    }

    /// Blocks exactly `links` (directed, from → to), healing the rest.
    pub fn block(&self, links: &[(u64, u64)]) -> Result<(), String> {
        self.block_mode(links, false)
    }

    /// `blackhole`: traffic vanishes silently (netns drops always do).
    pub fn block_mode(&self, links: &[(u64, u64)], blackhole: bool) -> Result<(), String> {
        match self.cluster.net() {
            NetMode::Netns => self.cluster.netns_block(links),
            NetMode::Proxy => match &self.proxies {
                Some(px) if self.caps.dial_override => {
                    px.block_mode(links, blackhole);
                    Ok(())
                }
                _ => Err("proxy mode needs the server's --dial-override".into()),
            },
        }
    }

    async fn clock(&self, p: &Planned, hold: Duration, stop: &AtomicBool) {
        let ids = self.members();
        let target = pick_some(&ids, 1, p.pick);
        let Some(&id) = target.first() else { return };
        if !self.caps.faketime {
            self.rec.nemesis(
                "clock",
                json!({"target": p.target, "node": id, "installed": false, "error": "faketime not enabled"}),
            );
            return;
        }
        let set = self.cluster.set_clock_offset(id, p.amount);
        // Verify through the node's HTTP Date header that its wall clock moved.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let verified = self.verify_clock(id, p.amount).await;
        self.rec.nemesis(
            "clock",
            json!({"target": p.target, "node": id, "offset_s": p.amount,
                   "installed": set.is_ok() && verified.is_ok(),
                   "verification": match &verified { Ok(s) => json!({"ok": s}), Err(e) => json!({"error": e}) },
                   "error": set.err()}),
        );
        if p.target == "strobe" {
            // Flip between the offset and none every 200 ms.
            let end = Instant::now() + hold;
            let mut on = false;
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                let _ = self
                    .cluster
                    .set_clock_offset(id, if on { p.amount } else { 0 });
                on = !on;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            sleep_or_stop(hold, stop).await;
        }
        let reset = self.cluster.set_clock_offset(id, 0);
        self.rec.nemesis(
            "clock-reset",
            json!({"node": id, "installed": reset.is_ok()}),
        );
    }

    /// Checks that node `id`'s wall clock is offset by `expected_s`.
    ///
    /// Forward jumps show in the node's HTTP `Date` header. Backward jumps
    /// do not (hyper caches the rendered date until the clock passes the
    /// next full second it computed, which is then far in the future), so
    /// for those the proof is that libfaketime is mapped into the server
    /// process and the offset file holds the offset.
    pub async fn verify_clock(&self, id: u64, expected_s: i64) -> Result<String, String> {
        if expected_s < 0 {
            let pid = self.cluster.pid(id).ok_or("node not running")?;
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
            if !maps.contains("libfaketime") {
                return Err("libfaketime is not mapped into the server".into());
            }
            return Ok(format!(
                "libfaketime mapped into pid {pid}; backward jump not observable via Date"
            ));
        }
        let node_s = self.cluster.node_wall_clock_s(id).await?;
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs() as i64;
        let observed = node_s - now_s;
        if (observed - expected_s).abs() <= 3 {
            Ok(format!("Date header offset {observed}s"))
        } else {
            Err(format!(
                "node clock offset {observed}s, expected {expected_s}s"
            ))
        }
    }

    /// Sends `command` to the file system of each node in `ids`, off the
    /// async threads; per node `{"node", "ok", "reply" | "error"}`.
    async fn lazyfs_all(&self, ids: &[u64], command: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for &id in ids {
            let c = self.cluster.clone();
            let cmd = command.to_string();
            let result = tokio::task::spawn_blocking(move || c.lazyfs(id, &cmd))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            out.push(match result {
                Ok(reply) => json!({"node": id, "ok": true, "reply": reply}),
                Err(e) => json!({"node": id, "ok": false, "error": e}),
            });
        }
        out
    }

    async fn power_cut(&self, killed: &[u64]) -> Vec<Value> {
        self.lazyfs_all(killed, "power-cut").await
    }

    /// Nodes of `ids` that exited by themselves (while their disk was
    /// faulty), with the end of their logs. A node a kill or power-loss
    /// fault took down is not one: that fault restarts it, after its power
    /// cut, and a restart before the cut would run it through the cut.
    fn exited(&self, ids: &[u64]) -> Vec<Value> {
        ids.iter()
            .filter(|id| self.cluster.exited_by_itself(**id) && !self.cluster.is_removed(**id))
            .map(|&id| {
                let tail = self
                    .cluster
                    .spec(id)
                    .map(|s| read_tail(&s.log_path, 2_000))
                    .unwrap_or_default();
                json!({"node": id, "log_tail": tail})
            })
            .collect()
    }

    /// Restarts the nodes of `exited` (from [`Self::exited`]) once their
    /// disk is healthy again, as a process supervisor would: a node stops
    /// on a disk error by design and must come back from its durable
    /// state. Left down, it would take one of the failures three voters
    /// can afford for the rest of the run, and with overlapping faults the
    /// cluster would lose its quorum for good. Returns the restarted ids.
    fn supervise(&self, exited: &[Value]) -> Vec<u64> {
        self.restart(exited.iter().filter_map(|e| e["node"].as_u64()))
    }

    /// Starts each node of `ids` again, except one left down after
    /// corruption or removed from the membership while it was down (never
    /// restarted); a failed start is recorded. Returns the restarted ids.
    fn restart(&self, ids: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let mut restarted = Vec::new();
        for id in ids {
            if self.refused.lock().expect("lock").contains(&id) || self.cluster.is_removed(id) {
                continue;
            }
            match self.cluster.start(id) {
                Ok(_) => restarted.push(id),
                Err(e) => self
                    .rec
                    .nemesis("restart-error", json!({"node": id, "error": e})),
            }
        }
        restarted
    }

    async fn disk_full(&self, p: &Planned, hold: Duration, stop: &AtomicBool) {
        let targets = self.targets(&p.target, p.pick).await;
        let results = self.lazyfs_all(&targets, "full on").await;
        let full: Vec<u64> = ok_nodes(&results);
        self.rec.nemesis(
            "disk-full",
            json!({"target": p.target, "nodes": targets, "full": full,
                   "installed": !full.is_empty(), "results": results}),
        );
        sleep_or_stop(hold, stop).await;
        let results = self.lazyfs_all(&full, "full off").await;
        let exited = self.exited(&full);
        let restarted = self.supervise(&exited);
        self.rec.nemesis(
            "disk-free",
            json!({"nodes": ok_nodes(&results), "installed": true, "results": results,
                   "exited": exited, "restarted": restarted}),
        );
    }

    async fn slow_disk(&self, p: &Planned, hold: Duration, stop: &AtomicBool) {
        let targets = self.targets(&p.target, p.pick).await;
        let delay_ms = 200 + (p.amount as u64) % 601;
        let results = self
            .lazyfs_all(&targets, &format!("slow-fsync {delay_ms}"))
            .await;
        let slow = ok_nodes(&results);
        self.rec.nemesis(
            "slow-disk",
            json!({"target": p.target, "nodes": targets, "slow": slow, "fsync_delay_ms": delay_ms,
                   "installed": !slow.is_empty(), "results": results}),
        );
        sleep_or_stop(hold, stop).await;
        let results = self.lazyfs_all(&slow, "slow-fsync 0").await;
        let exited = self.exited(&slow);
        let restarted = self.supervise(&exited);
        self.rec.nemesis(
            "fast-disk",
            json!({"nodes": ok_nodes(&results), "installed": true, "results": results,
                   "exited": exited, "restarted": restarted}),
        );
    }

    async fn corrupt(&self, p: &Planned, hold: Duration, stop: &AtomicBool) {
        let ids = self.members();
        // A minority: one node of three, and only while every other node is
        // healthy. A refused node is rebuilt under a new id; one whose
        // rebuild failed stays down and has taken the one failure three
        // voters can afford.
        let down = self.refused.lock().expect("lock").clone();
        if !down.is_empty() {
            self.rec.nemesis(
                "corrupt",
                json!({"target": p.target, "installed": false, "down": down,
                       "error": "a node is already down for good after corruption; a second would leave no quorum"}),
            );
            return;
        }
        let target = pick_some(&ids, 1, p.pick);
        let Some(&id) = target.first() else { return };
        let spec = match self.cluster.spec(id) {
            Ok(spec) => spec,
            Err(e) => {
                self.rec.nemesis(
                    "corrupt",
                    json!({"target": p.target, "node": id, "installed": false, "error": e}),
                );
                return;
            }
        };
        let was_running = self.cluster.kill(id);
        let result = damage_node(&spec.data_dir, &p.target, p.amount as u64);
        self.rec.nemesis(
            "corrupt",
            json!({"target": p.target, "node": id, "killed": was_running,
                   "installed": result.is_ok(),
                   "detail": match &result { Ok(d) => d.detail.clone(), Err(e) => json!({"error": e}) }}),
        );
        sleep_or_stop(hold, stop).await;
        // Only what the node prints from this start on tells how it opened.
        let log_from = std::fs::metadata(&spec.log_path).map_or(0, |m| m.len());
        if let Err(e) = self.cluster.start(id) {
            self.rec
                .nemesis("restart-error", json!({"node": id, "error": e}));
            return;
        }
        let Ok(damage) = result else { return };
        // Either it comes up (and must recover from peers) or it refuses.
        let exited = tokio::task::spawn_blocking({
            let c = self.cluster.clone();
            move || c.wait_exit(id, Duration::from_secs(8))
        })
        .await
        .ok()
        .flatten();
        let log_text = read_from(&spec.log_path, log_from);
        let opened = corruption::opened_last_index(&log_text);
        let came = match exited {
            None => Came::Running(opened),
            Some(code) if code != Some(0) && log_text.contains("refusing to start") => {
                Came::Refused
            }
            Some(_) => Came::ExitedWithoutRefusal(opened),
        };
        let verdict = corruption::judge(damage.expect, damage.durable_last_index, came);
        let mut record = json!({"node": id, "corruption": p.target, "exit": exited,
            "outcome": came.outcome(), "verdict": verdict.name(),
            "durable_last_index": damage.durable_last_index});
        // Absent: no line said; null: the log opened empty.
        if let Some(last) = came.opened() {
            record["opened_last_index"] = json!(last);
        }
        if exited.is_some() {
            match self.rebuild(id, p).await {
                Ok(new_id) => record["rebuilt_as"] = json!(new_id),
                Err(e) => {
                    // Down for good: no further faults, not a member the
                    // heal can wait for.
                    self.refused.lock().expect("lock").insert(id);
                    record["rebuild_error"] = json!(e);
                }
            }
        }
        self.corruption_log
            .lock()
            .expect("lock")
            .push(record.clone());
        let mut event = record;
        event["installed"] = json!(true); // the node was restarted
        self.rec.nemesis("corrupt-restart", event);
    }

    /// Rejoins a node that would not start under a new id, so later
    /// corruptions again find every node up.
    async fn rebuild(&self, old: u64, p: &Planned) -> Result<u64, String> {
        let change = super::membership::Change {
            cluster: &self.cluster,
            rec: &self.rec,
            member_commands: self.caps.member_commands,
            target: "rebuild",
            pick: p.pick,
        };
        let result = self.membership.replace(&change, old).await;
        self.rec.nemesis(
            "rebuild",
            json!({"node": old, "installed": result.is_ok(),
                   "new_node": result.as_ref().ok(), "error": result.as_ref().err()}),
        );
        result
    }
}

/// What a corruption did and what the node must do next.
struct NodeDamage {
    detail: Value,
    /// `None` for damage placed without reading the log (the `-any` modes).
    expect: Option<Expect>,
    durable_last_index: Option<u64>,
}

/// Damages a stopped node's data: the log-aware modes place it by what the
/// log proves durable (see `wal_damage`); the others blindly.
fn damage_node(data_dir: &Path, mode: &str, amount: u64) -> Result<NodeDamage, String> {
    if !wal_damage::MODES.contains(&mode) {
        return corrupt_files(data_dir, mode, amount).map(|detail| NodeDamage {
            detail,
            expect: None,
            durable_last_index: None,
        });
    }
    let seen = tael_consensus::log_store::inspect(&data_dir.join("raft-log"))
        .map_err(|e| format!("inspecting the log: {e}"))?;
    let d = wal_damage::damage(&seen, mode, amount)?;
    Ok(NodeDamage {
        detail: d.detail,
        expect: Some(d.expect),
        durable_last_index: seen.durable_last_index,
    })
}

/// The nodes whose file system answered `ok` in `lazyfs_all` results.
fn ok_nodes(results: &[Value]) -> Vec<u64> {
    results
        .iter()
        .filter(|r| r["ok"] == true)
        .filter_map(|r| r["node"].as_u64())
        .collect()
}

/// The slowed clock's speed: a tenth of real time.
const SLOW_CLOCK_RATE: f64 = 0.1;
/// libfaketime's specification that ends a slow clock: no offset, real
/// speed. The rate must be named: a specification without one keeps the
/// last rate set. The clocks jump forward to real time.
const REAL_CLOCK_SPEC: &str = "+0s x1\n";

/// libfaketime's specification that slows a process's clocks to `rate`
/// from now on, `uptime` after the process started, without moving them
/// back. libfaketime scales the whole time since the process started
/// (fake = start + offset + rate × (real − start)), so the offset makes up
/// what scaling takes away; rounded up to whole seconds, the clocks jump
/// forward by under a second instead. Monotonic time must never go back:
/// that would break more than the clock-rate bound lease reads assume
/// (with openraft's read index, a quorum's acknowledgements stamped before
/// a backward jump look newer than every later read).
pub fn slow_clock_spec(uptime: Duration, rate: f64) -> String {
    let offset_s = (uptime.as_secs_f64() * (1.0 - rate)).ceil() as u64;
    format!("+{offset_s}s x{rate}\n")
}

/// The fault route of a fault-injection build (`rest::fault`).
const POISON_PATH: &str = "/api/v1/fault/poison";

/// Asks the node at `url` to propose a poison entry of `kind`; its log index.
async fn post_poison(url: &str, kind: &str) -> Result<u64, String> {
    let body = json!({ "kind": kind }).to_string();
    let r = tael_raft::http_client::request(
        "POST",
        url,
        Some("application/json"),
        body.as_bytes(),
        Duration::from_secs(12),
    )
    .await?;
    if r.status == 404 {
        return Err(
            "the server has no fault route: build it with --features fault-injection".into(),
        );
    }
    if r.status != 200 {
        return Err(format!("{} {}", r.status, String::from_utf8_lossy(&r.body)));
    }
    r.json()?["log_index"]
        .as_u64()
        .ok_or_else(|| "answer without a log_index".to_string())
}

/// Directed links to block for a partition target, and its description.
pub fn partition_links(
    target: &str,
    ids: &[u64],
    pick: u64,
    leader: Option<u64>,
) -> (Vec<(u64, u64)>, Value) {
    let both = |a: &[u64], b: &[u64]| {
        let mut v = Vec::new();
        for &x in a {
            for &y in b {
                v.push((x, y));
                v.push((y, x));
            }
        }
        v
    };
    if ids.is_empty() {
        return (Vec::new(), json!({"error": "no nodes to partition"}));
    }
    let shuffled = pick_some(ids, ids.len(), pick);
    match target {
        "isolate-one" | "isolate-leader" | "blackhole" => {
            let one = match (target, leader) {
                ("isolate-leader", Some(l)) if ids.contains(&l) => l,
                _ => shuffled[0],
            };
            let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != one).collect();
            (both(&[one], &rest), json!({"isolated": one, "rest": rest}))
        }
        "majority-minority" => {
            let minority = shuffled[..ids.len() / 2].to_vec();
            let majority = shuffled[ids.len() / 2..].to_vec();
            (
                both(&minority, &majority),
                json!({"minority": minority, "majority": majority}),
            )
        }
        "bridge" => {
            // The middle node sees both sides; the ends do not see each other.
            if shuffled.len() < 3 {
                return (Vec::new(), json!({"error": "bridge needs three nodes"}));
            }
            let (a, bridge, b) = (shuffled[0], shuffled[1], shuffled[2]);
            let mut links = both(&[a], &[b]);
            for &extra in &shuffled[3..] {
                links.extend(both(&[extra], &[a]));
            }
            (links, json!({"bridge": bridge, "ends": [a, b]}))
        }
        "one-way" => {
            // `from` cannot reach anyone, but hears everyone.
            let from = shuffled[0];
            let links: Vec<(u64, u64)> = ids
                .iter()
                .copied()
                .filter(|i| *i != from)
                .map(|to| (from, to))
                .collect();
            (links, json!({"mute": from}))
        }
        _ => (
            Vec::new(),
            json!({"error": format!("unknown partition {target}")}),
        ),
    }
}

fn read_tail(path: &Path, max_bytes: u64) -> String {
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    read_from(path, len.saturating_sub(max_bytes))
}

/// What `path` holds from byte `from` on.
fn read_from(path: &Path, from: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let _ = f.seek(SeekFrom::Start(from));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn wal_segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir.join("raft-log"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wal"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Truncates the newest WAL segment or flips bits inside it.
/// Every regular file under `dir` except lock files, sorted.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() && p.file_name().is_some_and(|n| n != "lock") => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Truncates the newest WAL segment or flips bits inside it
/// (`truncate`, `bitflip`), or flips bits in any file of the data
/// directory: state machine tables, journal, vote, snapshots
/// (`bitflip-any`).
pub fn corrupt_files(data_dir: &Path, mode: &str, amount: u64) -> Result<Value, String> {
    let any = mode.ends_with("-any");
    let candidates = if any {
        all_files(data_dir)
            .into_iter()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= 16))
            .collect()
    } else {
        wal_segments(data_dir)
    };
    let seg = if any {
        candidates.get((amount % candidates.len().max(1) as u64) as usize)
    } else {
        candidates.last()
    }
    .ok_or_else(|| format!("no file to corrupt under {}", data_dir.display()))?;
    let len = data_len(seg)?;
    if len < 16 {
        return Err(format!("{} is only {len} bytes", seg.display()));
    }
    match mode {
        "truncate" | "truncate-any" => {
            let cut = 1 + amount % (len / 2).max(1);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(seg)
                .map_err(|e| format!("{}: {e}", seg.display()))?;
            f.set_len(len - cut)
                .map_err(|e| format!("truncating {}: {e}", seg.display()))?;
            Ok(json!({"file": seg, "len": len, "cut_bytes": cut}))
        }
        _ => {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(seg)
                .map_err(|e| format!("{}: {e}", seg.display()))?;
            let mut flipped = Vec::new();
            for k in 0..4u64 {
                let pos = (amount.wrapping_mul(2654435761).wrapping_add(k * 7919)) % len;
                let mut b = [0u8; 1];
                f.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
                f.read_exact(&mut b).map_err(|e| e.to_string())?;
                b[0] ^= 1 << (pos % 8);
                f.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
                f.write_all(&b).map_err(|e| e.to_string())?;
                flipped.push(pos);
            }
            f.sync_all().map_err(|e| e.to_string())?;
            Ok(json!({"file": seg, "len": len, "flipped_offsets": flipped}))
        }
    }
}

/// How much of `path` holds data: a Raft log segment may be preallocated,
/// and damage to its trailing zeros would touch nothing written, so for
/// segments this is the length without the zeros.
fn data_len(path: &Path) -> Result<u64, String> {
    if path.extension().is_some_and(|e| e == "wal") {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(tael_consensus::log_store::written_len(&bytes) as u64)
    } else {
        std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Sleeps until `at`; false if `stop` was raised first.
pub async fn sleep_until_or_stop(at: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        tokio::time::sleep((at - now).min(Duration::from_millis(100))).await;
    }
}

pub async fn sleep_or_stop(d: Duration, stop: &AtomicBool) {
    sleep_until_or_stop(Instant::now() + d, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_plan() {
        let kinds = [FaultKind::Kill, FaultKind::Partition, FaultKind::Clock];
        let net = NetMode::Netns;
        let a = serde_json::to_string(&plan(&kinds, 7, 5_000, 60_000, None, net)).unwrap();
        let b = serde_json::to_string(&plan(&kinds, 7, 5_000, 60_000, None, net)).unwrap();
        let c = serde_json::to_string(&plan(&kinds, 8, 5_000, 60_000, None, net)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(plan(&kinds, 7, 5_000, 60_000, None, net)
            .iter()
            .all(|p| p.at_ms + p.duration_ms <= 60_000));
    }

    /// `delay` was planned in netns mode, where it is never installed
    /// (seen in the `retry` and `mutation-ack-before-commit` profiles).
    #[test]
    fn netns_mode_never_plans_link_delay() {
        let delays = |net| {
            (0..200u64)
                .flat_map(|seed| plan(&[FaultKind::Partition], seed, 3_000, 120_000, None, net))
                .filter(|p| p.target == "delay")
                .count()
        };
        assert_eq!(delays(NetMode::Netns), 0);
        assert!(delays(NetMode::Proxy) > 0, "proxy mode still delays links");
        // Every other partition target stays in the netns schedule.
        let netns_targets: BTreeSet<String> = (0..200u64)
            .flat_map(|seed| {
                plan(
                    &[FaultKind::Partition],
                    seed,
                    3_000,
                    120_000,
                    None,
                    NetMode::Netns,
                )
            })
            .map(|p| p.target)
            .collect();
        assert_eq!(
            netns_targets.len(),
            FaultKind::Partition.targets().len() - 1
        );
    }

    #[test]
    fn a_slowed_clock_never_moves_back() {
        // fake = offset + rate × uptime must not fall below the uptime
        // (monotonic time so far) at the moment the rate is set.
        for (uptime_ms, rate) in [(0u64, 0.1), (1, 0.1), (2_500, 0.1), (47_300, 0.5)] {
            let up = Duration::from_millis(uptime_ms);
            let spec = slow_clock_spec(up, rate);
            let offset_s: f64 = spec
                .trim()
                .strip_prefix('+')
                .and_then(|s| s.split('s').next())
                .unwrap()
                .parse()
                .unwrap();
            let fake_s = offset_s + rate * up.as_secs_f64();
            assert!(fake_s >= up.as_secs_f64(), "{spec}");
            assert!(
                fake_s < up.as_secs_f64() + 1.0,
                "jumps under a second: {spec}"
            );
            assert!(spec.trim().ends_with(&format!("x{rate}")), "{spec}");
        }
    }

    /// The poison targets are the server's names for its poison kinds.
    #[test]
    fn poison_targets_are_kinds_the_server_knows() {
        for t in FaultKind::Poison.targets() {
            assert!(
                tael_raft::faults::poison::PoisonKind::parse(t).is_ok(),
                "{t}"
            );
        }
        assert_eq!(FaultKind::parse("poison"), Some(FaultKind::Poison));
    }

    #[test]
    fn partitions_cut_the_right_links() {
        let ids = [1, 2, 3];
        let (links, _) = partition_links("isolate-leader", &ids, 0, Some(2));
        assert_eq!(links.len(), 4);
        assert!(links.iter().all(|(a, b)| *a == 2 || *b == 2));
        let (links, _) = partition_links("one-way", &ids, 5, None);
        assert_eq!(links.len(), 2);
        let from = links[0].0;
        assert!(links.iter().all(|(a, _)| *a == from));
        let (links, d) = partition_links("bridge", &ids, 3, None);
        let bridge = d["bridge"].as_u64().unwrap();
        assert_eq!(links.len(), 2);
        assert!(links.iter().all(|(a, b)| *a != bridge && *b != bridge));
        let (links, d) = partition_links("majority-minority", &ids, 9, None);
        assert_eq!(d["minority"].as_array().unwrap().len(), 1);
        assert_eq!(links.len(), 4);
    }

    #[test]
    fn corruption_changes_the_newest_segment() {
        let dir = std::env::temp_dir().join(format!("tj-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("raft-log")).unwrap();
        let seg = dir.join("raft-log/0001.wal");
        // 600 bytes of records, then preallocated zeros.
        let mut original = vec![0x5au8; 600];
        original.resize(1000, 0);
        std::fs::write(&seg, &original).unwrap();
        corrupt_files(&dir, "bitflip", 12345).unwrap();
        let after = std::fs::read(&seg).unwrap();
        assert_ne!(after[..600], original[..600], "the records are hit");
        assert!(after[600..].iter().all(|b| *b == 0), "not the zeros");
        corrupt_files(&dir, "truncate", 7).unwrap();
        assert!(std::fs::metadata(&seg).unwrap().len() < 600);
        let other = dir.join("sm/table");
        std::fs::create_dir_all(dir.join("sm")).unwrap();
        std::fs::write(&other, vec![0u8; 64]).unwrap();
        std::fs::write(dir.join("raft-log/0001.wal"), vec![1u8; 64]).unwrap();
        // Both files are candidates; some amount picks the table.
        let hit = (0..8u64).any(|a| {
            let v = corrupt_files(&dir, "bitflip-any", a).unwrap();
            v["file"].as_str().unwrap().ends_with("sm/table")
        });
        assert!(hit);
        assert!(std::fs::read(&other).unwrap().iter().any(|b| *b != 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
