//! Named test profiles: which workloads, which faults, which server flags.

use serde::Serialize;

use super::nemesis::FaultKind;

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub faults: Vec<FaultKind>,
    pub set_clients: usize,
    pub session_clients: usize,
    pub list_clients: usize,
    /// Clients writing spans already past the retention (see
    /// `checkers::retention`).
    pub aged_clients: usize,
    /// Bulk writers, and the exports each keeps in flight
    /// (`workload::Clients::flood_client`).
    pub flood_clients: usize,
    pub flood_in_flight: usize,
    /// The share of span-set reads made at `lease`.
    pub lease_read_share: f64,
    pub retry: bool,
    /// `serve --mutation NAME` (needs a server built with fault-injection).
    pub mutation: Option<String>,
    pub server_args: Vec<String>,
    /// Retention cuts of traces older than this run (see
    /// [`Profile::retention_traces_s`]); `None`: the server's default.
    pub min_retention_traces_s: Option<u64>,
    /// A run of this profile must be judged invalid (mutation profiles).
    pub expect_invalid: bool,
    pub default_time_limit_s: u64,
    /// Overrides every fault kind's (min gap, max gap, min duration, max
    /// duration) in ms.
    pub fault_timing: Option<(u64, u64, u64, u64)>,
    /// How often leader claims are polled.
    pub observe_interval_ms: u64,
    /// Put each node's data directory on tael-lazyfs when the machine can
    /// (power cuts then hit every file, not only the Raft log). Disk
    /// faults always need it.
    pub lazyfs: bool,
    /// No fault of this profile stops a node on purpose, so a node process
    /// that exits, or a Raft core that stops, by itself makes the run
    /// invalid (`checkers::exits`).
    pub exits_are_bugs: bool,
}

fn p(name: &str, description: &str, faults: &[FaultKind]) -> Profile {
    Profile {
        name: name.into(),
        description: description.into(),
        faults: faults.to_vec(),
        set_clients: 3,
        session_clients: 2,
        list_clients: 0,
        aged_clients: 0,
        flood_clients: 0,
        flood_in_flight: 0,
        lease_read_share: super::workload::LEASE_READ_SHARE,
        retry: false,
        mutation: None,
        server_args: Vec::new(),
        min_retention_traces_s: None,
        expect_invalid: false,
        default_time_limit_s: 60,
        fault_timing: None,
        observe_interval_ms: 250,
        lazyfs: false,
        exits_are_bugs: false,
    }
}

pub fn all() -> Vec<Profile> {
    use FaultKind::*;
    let mut v = vec![
        p(
            "none",
            "no faults: the workloads and checkers on a healthy cluster",
            &[],
        ),
        p(
            "smoke",
            "process kills and pauses with the span-set and session workloads",
            &[Kill, Pause],
        ),
        p(
            "kill",
            "SIGKILL of one node, the leader, a majority or all, then restart",
            &[Kill],
        ),
        p(
            "pause",
            "SIGSTOP/SIGCONT longer than the election timeout",
            &[Pause],
        ),
        p(
            "partition",
            "network partitions: isolate one / the leader, majority-minority, bridge, one-way",
            &[Partition],
        ),
        p(
            "clock",
            "per-node wall-clock bumps and strobes (libfaketime)",
            &[Clock],
        ),
        p(
            "corrupt",
            "damage a stopped minority node's active WAL segment: flipped bits, a wrong length field or zeros before its durable mark (must refuse; refused nodes rejoin under a new id), or a cut of unsynced bytes only (must start, keeping every durable entry)",
            &[Corrupt],
        ),
        p(
            "corrupt-any",
            "truncate or flip bits in any file of a stopped minority node's data directory",
            &[CorruptAny],
        ),
        p(
            "power-loss",
            "SIGKILL of the leader, a majority or all nodes started with --power-loss-sim",
            &[PowerLoss],
        ),
        p(
            "membership",
            "remove a voter and add a fresh node id; add a node that catches up",
            &[Membership],
        ),
        p(
            "all",
            "every fault kind, overlapping, every workload, with cold moves and retention cuts running",
            &[
                Kill, Pause, Partition, Clock, PowerLoss, Membership, DiskFull, SlowDisk, Poison,
            ],
        ),
    ];
    let mut lin = p(
        "lin",
        "comment-list linearizability under kills and partitions",
        &[Kill, Partition],
    );
    lin.list_clients = 3;
    lin.session_clients = 1;
    lin.set_clients = 1;
    v.push(lin);
    if let Some(all) = v.iter_mut().find(|x| x.name == "all") {
        all.list_clients = 2;
        all.aged_clients = 1;
        all.server_args = lifecycle_args();
        all.min_retention_traces_s = Some(3_600);
        // Disk faults need it, and power cuts then hit every file.
        all.lazyfs = true;
        // Not `exits_are_bugs`: a node stops by design on a full disk (and
        // is restarted once it heals). Poison entries that stopped nodes
        // would still show in the poison check and the panic scan.
    }
    // Entries no replica can apply, proposed by the leader past its own
    // check: rejected the same way everywhere, the cluster keeps going.
    let mut poison = p(
        "poison",
        "the leader proposes entries no replica can apply (unknown tag, undecodable spans, a service name too long to store) past its check; every replica rejects them alike and keeps serving, under kills",
        &[Poison, Kill],
    );
    poison.exits_are_bugs = true;
    v.push(poison);
    // openraft's purge-versus-apply race (upstream issue 2116, seen under
    // sustained writes on two cores): a snapshot every 64 entries and no
    // log kept behind it, so purges chase the apply; bulk writers keep the
    // log moving, kills restart nodes into it.
    let mut purge = p(
        "purge-race",
        "a snapshot every 64 entries, no log kept behind it, bulk writers as fast as they can, kills; no node may exit or stop by itself",
        &[Kill],
    );
    purge.server_args = [
        "--snapshot-every-entries",
        "64",
        "--log-entries-kept-after-snapshot",
        "0",
    ]
    .map(String::from)
    .to_vec();
    purge.flood_clients = 2;
    purge.flood_in_flight = 32;
    purge.set_clients = 2;
    purge.session_clients = 1;
    purge.exits_are_bugs = true;
    v.push(purge);
    // Frequent short power cuts: a leader that loses its unsynced log
    // tail must not come back as leader of the same term.
    let mut cuts = p(
        "power-loss-fast",
        "rapid power cuts of the leader, a majority or all, with short downtime",
        &[PowerLoss],
    );
    cuts.fault_timing = Some((1_000, 3_000, 300, 1_200));
    v.push(cuts);
    // Retention cuts every second under kills, partitions and power loss:
    // aged spans must go, everything younger than the retention must stay.
    let mut retention = p(
        "retention",
        "retention cuts and cold moves every second under kills, partitions and power loss; spans written past the retention must be gone after the final cut, the rest must stay",
        &[Kill, Partition, PowerLoss],
    );
    retention.aged_clients = 1;
    retention.server_args = lifecycle_args();
    retention.min_retention_traces_s = Some(3_600);
    v.push(retention);
    // Whole-node power loss: with the data directories on tael-lazyfs,
    // every store of a node (log, state machine, index, metadata) loses
    // what it did not fsync.
    for name in ["power-loss", "power-loss-fast"] {
        if let Some(x) = v.iter_mut().find(|x| x.name == name) {
            x.lazyfs = true;
        }
    }
    let mut full = p(
        "disk-full",
        "the data directory's file system fails writes with ENOSPC for seconds, on one node, the leader or all; then kills",
        &[DiskFull, Kill],
    );
    full.lazyfs = true;
    v.push(full);
    let mut slow = p(
        "slow-disk",
        "every fsync of the leader or a follower held 200..800 ms for seconds, with partitions",
        &[SlowDisk, Partition],
    );
    slow.lazyfs = true;
    v.push(slow);
    let mut retry = p(
        "retry",
        "kills and partitions with unknown exports re-sent (deduplication)",
        &[Kill, Partition],
    );
    retry.retry = true;
    v.push(retry);

    // Mutations: each profile must catch its bug.
    let m = |name: &str, mutation: &str, description: &str, faults: &[FaultKind]| {
        let mut x = p(name, description, faults);
        x.mutation = Some(mutation.into());
        x.expect_invalid = true;
        x
    };
    v.push(m(
        "mutation-skip-fsync",
        "skip-fsync",
        "power loss of all nodes with fsync skipped: acknowledged spans vanish",
        &[PowerLoss],
    ));
    // The control: without power loss the page cache survives a SIGKILL,
    // so the same mutation must go unnoticed by a kill-only profile.
    let mut control = m(
        "mutation-skip-fsync-kill-only",
        "skip-fsync",
        "control: skip-fsync under plain SIGKILL (no power loss) must stay valid",
        &[Kill],
    );
    control.expect_invalid = false;
    v.push(control);
    v.push(m(
        "mutation-ack-before-commit",
        "ack-before-commit",
        "acks before quorum commit, leader isolated and killed",
        &[Partition, Kill],
    ));
    v.push(m(
        "mutation-stale-local-reads",
        "stale-local-reads",
        "linearizable reads served from local state during partitions",
        &[Partition],
    ));
    let mut dup = m(
        "mutation-double-apply-retries",
        "double-apply-retries",
        "retried exports applied twice",
        &[Kill, Partition],
    );
    dup.retry = true;
    v.push(dup);
    let mut cut = m(
        "mutation-retention-wrong-unit",
        "retention-wrong-unit",
        "the leader reads the retention in the wrong unit and cuts retained spans",
        &[Kill],
    );
    cut.server_args = ["--compaction-interval", "1s"].map(String::from).to_vec();
    cut.min_retention_traces_s = Some(3_600);
    cut.aged_clients = 1;
    v.push(cut);
    // Recovery that cuts damage before the durable mark like a torn tail:
    // the node starts with fewer entries than it had proven durable.
    v.push(m(
        "mutation-cut-durable-log",
        "cut-durable-log",
        "damage before the log's durable mark cut off like a torn tail: the node starts with a shorter log",
        &[Corrupt],
    ));
    // Frequent short kills keep elections going with freshly restarted
    // voters, and fast polling sees short-lived leaders.
    let mut vote = m(
        "mutation-vote-in-memory",
        "vote-in-memory",
        "votes not persisted; rapid kills and restarts let a node vote twice in a term",
        &[Kill],
    );
    vote.fault_timing = Some((300, 1_200, 200, 900));
    vote.observe_interval_ms = 50;
    v.push(vote);
    // Apply made non-total again: the first poison entry stops every replica.
    let mut fatal = m(
        "mutation-poison-fatal",
        "poison-is-fatal",
        "apply panics on an entry it cannot apply: one poison entry stops the cluster",
        &[Poison],
    );
    fatal.exits_are_bugs = true;
    v.push(fatal);
    // Lease reads beyond their assumption (a bounded clock rate,
    // docs/consistency.md): the leader's clocks run at a tenth of real
    // speed while it is cut off, so it keeps its lease long after the others
    // elected a new leader. Every span-set read is a lease read, and more
    // clients keep reads flowing while those sent to the cut-off leader's
    // writes wait out their timeouts.
    let mut lease = p(
        "mutation-slow-leader-clock",
        "the leader's clocks (monotonic too) run at a tenth of real speed while it is cut off from the other nodes but not from clients; all span-set reads at lease: stale lease reads",
        &[SlowClock],
    );
    lease.expect_invalid = true;
    lease.set_clients = 8;
    lease.lease_read_share = 1.0;
    v.push(lease);
    v
}

/// Retention cuts and cold moves every second: everything older than five
/// seconds moves to the cold tier while the workloads still read it (the
/// trace retention is set by [`Profile::retention_traces_s`]).
fn lifecycle_args() -> Vec<String> {
    ["--hot-window", "5s", "--compaction-interval", "1s"]
        .map(String::from)
        .to_vec()
}

/// How much longer than the run the trace retention is at least.
const RETENTION_MARGIN_S: u64 = 1_800;

impl Profile {
    /// The trace retention of a run of `time_limit_s`: the profile's, or
    /// longer than the run, so that no span the workloads write during the
    /// run ages past it (a soak of hours would otherwise see its own early
    /// acknowledged spans legitimately cut and count them as lost). Only
    /// the aged writer's spans, written twice this old, are past it.
    pub fn retention_traces_s(&self, time_limit_s: u64) -> Option<u64> {
        self.min_retention_traces_s
            .map(|min| min.max(time_limit_s.saturating_add(RETENTION_MARGIN_S)))
    }
}

pub fn find(name: &str) -> Option<Profile> {
    all().into_iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_retention_outlasts_the_run() {
        let all = find("all").expect("all");
        assert_eq!(all.retention_traces_s(60), Some(3_600));
        assert_eq!(all.retention_traces_s(7_200), Some(9_000));
        assert_eq!(find("kill").expect("kill").retention_traces_s(7_200), None);
    }
}
