//! `tael-jepsen test`: runs a real cluster under a seeded workload and
//! nemesis, then checks the history offline.

pub mod cluster;
pub mod corruption;
pub mod coverage;
pub mod lazyfs;
pub mod membership;
pub mod nemesis;
pub mod netns_lock;
pub mod prereqs;
pub mod profiles;
pub mod proxy;
pub mod wal_damage;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::checkers::{self, Check};
use crate::events::{self, OpKind, Recorder, OBSERVER};
use crate::linearizability::Budget;
use cluster::{Cluster, ClusterConfig, NetMode};
use nemesis::{FaultKind, Nemesis};
use profiles::Profile;
use workload::{Clients, WorkloadConfig};

/// What the server binary offers (found from its `--help`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Capabilities {
    pub dial_override: bool,
    pub power_loss_sim: bool,
    pub mutation: bool,
    pub member_commands: bool,
    pub comments: bool,
    /// libfaketime is preloaded into the nodes.
    pub faketime: bool,
    /// ... and fakes their monotonic clock too (the slow-clock fault).
    pub fake_monotonic: bool,
    /// Every node's data directory is on its own tael-lazyfs mount.
    pub lazyfs: bool,
}

pub fn detect_capabilities(server_bin: &Path) -> Result<Capabilities, String> {
    let help = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new(server_bin)
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", server_bin.display()))?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    let serve = help(&["serve", "--help"])?;
    let top = help(&["--help"])?;
    Ok(Capabilities {
        dial_override: serve.contains("--dial-override"),
        power_loss_sim: serve.contains("--power-loss-sim"),
        mutation: serve.contains("--mutation"),
        member_commands: top.lines().any(|l| l.trim_start().starts_with("member")),
        comments: false,
        faketime: false,
        fake_monotonic: false,
        lazyfs: false,
    })
}

#[derive(Debug, Clone)]
pub struct TestOptions {
    pub profile: Profile,
    pub seed: u64,
    pub time_limit_s: u64,
    pub out_dir: PathBuf,
    pub server_bin: PathBuf,
    pub net: NetMode,
    pub retry: Option<bool>,
    /// Deadline for one leader and full apply after the final heal.
    pub heal_deadline_s: u64,
    pub lazyfs: lazyfs::Mode,
    pub lazyfs_bin: PathBuf,
}

/// A run's outcome: `Some(true)` valid, `Some(false)` invalid, `None`
/// unknown (including harness failures).
pub struct Outcome {
    pub valid: Option<bool>,
    pub checks: Vec<Check>,
}

pub fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("tael-raft")))
        .unwrap_or_else(|| PathBuf::from("tael-raft"))
}

pub fn run_test(opts: TestOptions) -> Outcome {
    // Held until the run's network is removed (end of this function).
    let _netns_lock = if opts.net == NetMode::Netns {
        match netns_lock::acquire(Path::new(netns_lock::LOCK_PATH)) {
            Ok(lock) => Some(lock),
            Err(e) => return harness_failure(&opts, e),
        }
    } else {
        None
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return harness_failure(&opts, format!("tokio runtime: {e}")),
    };
    rt.block_on(run_async(opts))
}

fn harness_failure(opts: &TestOptions, error: String) -> Outcome {
    eprintln!("tael-jepsen: harness failure: {error}");
    let check = Check {
        name: "harness".into(),
        valid: None,
        summary: error.clone(),
        details: json!({ "error": error }),
    };
    let _ = std::fs::create_dir_all(&opts.out_dir);
    let _ = std::fs::write(
        opts.out_dir.join("results.json"),
        serde_json::to_vec_pretty(&json!({"valid": "unknown", "checks": [&check]}))
            .unwrap_or_default(),
    );
    Outcome {
        valid: None,
        checks: vec![check],
    }
}

pub(crate) async fn wait_healthy(
    cluster: &Cluster,
    id: u64,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        // /healthz: public, so it answers before init has made a key.
        if cluster
            .get_text(id, "/healthz", Duration::from_secs(1))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if !cluster.is_running(id) {
            let log = cluster.spec(id)?.log_path;
            return Err(format!(
                "node {id} exited during start; see {}",
                log.display()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("node {id} not healthy within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls every node's own status and records leader claims.
async fn observe(cluster: Cluster, rec: Recorder, stop: Arc<AtomicBool>, interval_ms: u64) {
    while !stop.load(Ordering::Relaxed) {
        // Poll all nodes at once so a slow one does not hide the others.
        let polls: Vec<_> = cluster
            .running()
            .into_iter()
            .filter(|id| !cluster.is_paused(*id))
            .map(|id| {
                let (cluster, rec) = (cluster.clone(), rec.clone());
                tokio::spawn(async move { observe_node(&cluster, &rec, id).await })
            })
            .collect();
        for p in polls {
            let _ = p.await;
        }
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    }
}

/// Records a leader claim if node `id` says it is the leader, with what
/// the election checker needs: which incarnation (process start) of the
/// node answered, and its commit and last log indexes from the same
/// metrics snapshot as its term.
async fn observe_node(cluster: &Cluster, rec: &Recorder, id: u64) {
    let starts_before = cluster.starts(id);
    let Ok(v) = cluster
        .get_json(id, "/api/v1/cluster", Duration::from_millis(1500))
        .await
    else {
        return;
    };
    // Restarted while polled: the answer cannot be tied to one process.
    let incarnation = (cluster.starts(id) == starts_before).then_some(starts_before);
    let own = v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"].as_u64() == Some(id)).cloned());
    if let Some(own) = own {
        if own["state"] == "shutdown" {
            rec.record(
                OBSERVER,
                OpKind::Info,
                checkers::exits::CORE_STOPPED,
                None,
                json!({"node": id, "incarnation": incarnation}),
                Some(id),
                None,
            );
        }
        if own["state"] == "leader" {
            rec.record(
                OBSERVER,
                OpKind::Info,
                checkers::election::CLAIM_F,
                None,
                json!({"node": id, "term": own["term"], "incarnation": incarnation,
                       "committed_index": own["committed_index"],
                       "last_log_index": own["last_log_index"],
                       "snapshot_index": own["snapshot_index"],
                       "purged_index": own["purged_index"]}),
                Some(id),
                None,
            );
        }
    }
}

/// Waits for one leader that every member agrees on and every member
/// applied up to the leader's commit index. The members are the nodes the
/// harness runs that are also in the leader's Raft membership (a node
/// whose removal had an unknown outcome may still run outside it).
/// Returns the check and those members.
async fn wait_converged(
    cluster: &Cluster,
    candidates: &[u64],
    deadline: Duration,
) -> (Check, Vec<u64>) {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < deadline {
        let mut views = BTreeMap::new();
        for &id in candidates {
            match cluster
                .get_json(id, "/api/v1/cluster", Duration::from_secs(2))
                .await
            {
                Ok(v) => views.insert(id, v),
                Err(e) => views.insert(id, json!({"error": e})),
            };
        }
        // The leader most nodes name; then its view of the membership.
        let mut named: BTreeMap<u64, usize> = BTreeMap::new();
        for v in views.values() {
            if let Some(l) = v["leader"].as_u64() {
                *named.entry(l).or_default() += 1;
            }
        }
        let leader = named.iter().max_by_key(|(_, n)| **n).map(|(l, _)| *l);
        let leader_view = leader.and_then(|l| views.get(&l));
        let in_membership: BTreeSet<u64> = leader_view
            .map(|v| {
                ["voters", "learners"]
                    .iter()
                    .flat_map(|k| v[*k].as_array().cloned().unwrap_or_default())
                    .filter_map(|x| x.as_u64())
                    .collect()
            })
            .unwrap_or_default();
        let members: Vec<u64> = candidates
            .iter()
            .copied()
            .filter(|c| in_membership.contains(c))
            .collect();
        last = json!({"leader": leader, "membership": in_membership, "views": views});
        let commit = leader_view.and_then(|v| {
            v["nodes"]
                .as_array()
                .and_then(|a| a.iter().find(|n| n["id"].as_u64() == leader))
                .and_then(|n| n["committed_index"].as_u64())
        });
        let converged = leader.is_some()
            && !members.is_empty()
            && commit.is_some_and(|c| {
                members.iter().all(|m| {
                    views.get(m).is_some_and(|v| {
                        v["leader"].as_u64() == leader
                            && v["nodes"]
                                .as_array()
                                .and_then(|a| a.iter().find(|n| n["id"].as_u64() == Some(*m)))
                                .and_then(|n| n["applied_index"].as_u64())
                                .is_some_and(|a| a >= c)
                    })
                })
            });
        if converged {
            let leader = leader.unwrap_or_default();
            let outside: Vec<u64> = candidates
                .iter()
                .copied()
                .filter(|c| !members.contains(c))
                .collect();
            let check = Check {
                name: "liveness".into(),
                valid: Some(true),
                summary: format!(
                    "leader {leader}, all {} members applied to {} after {:.1}s",
                    members.len(),
                    commit.unwrap_or(0),
                    started.elapsed().as_secs_f64()
                ),
                details: json!({"leader": leader, "commit_index": commit,
                                "seconds": started.elapsed().as_secs_f64(), "members": members,
                                "running_outside_membership": outside}),
            };
            return (check, members);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let check = Check {
        name: "liveness".into(),
        valid: Some(false),
        summary: format!(
            "no single leader with every member applied within {}s after heal",
            deadline.as_secs()
        ),
        details: json!({"candidates": candidates, "last_observation": last}),
    };
    (check, candidates.to_vec())
}

async fn run_async(opts: TestOptions) -> Outcome {
    if let Err(e) = std::fs::create_dir_all(&opts.out_dir) {
        return harness_failure(&opts, format!("{}: {e}", opts.out_dir.display()));
    }
    let profile = &opts.profile;
    let mut caps = match detect_capabilities(&opts.server_bin) {
        Ok(c) => c,
        Err(e) => return harness_failure(&opts, e),
    };
    let machine = prereqs::probe();
    let needs_lazyfs = profile
        .faults
        .iter()
        .any(|k| matches!(k, FaultKind::DiskFull | FaultKind::SlowDisk));
    let choice = lazyfs::choose(
        opts.lazyfs,
        profile.lazyfs,
        needs_lazyfs,
        prereqs::lazyfs_missing(&machine, &opts.lazyfs_bin),
    );
    caps.lazyfs = match choice {
        Ok(lazyfs::Choice::Use) => true,
        Ok(lazyfs::Choice::Skip(why)) => {
            if let Some(why) = why {
                eprintln!(
                    "tael-jepsen: power cuts limited to the Raft log (--power-loss-sim): {why}"
                );
            }
            false
        }
        Err(e) => return harness_failure(&opts, e),
    };
    let mut extra_args = profile.server_args.clone();
    let retention_traces_s = profile.retention_traces_s(opts.time_limit_s);
    if let Some(r) = retention_traces_s {
        extra_args.extend(["--retention-traces".into(), format!("{r}s")]);
    }
    // On tael-lazyfs the whole node loses power; the log's own simulation
    // would only cut the same data twice.
    if profile.faults.contains(&FaultKind::PowerLoss) && caps.power_loss_sim && !caps.lazyfs {
        extra_args.push("--power-loss-sim".into());
    }
    if let Some(m) = &profile.mutation {
        if !caps.mutation {
            return harness_failure(
                &opts,
                format!(
                    "profile needs `serve --mutation {m}`; build the server with --features fault-injection"
                ),
            );
        }
        extra_args.push("--mutation".into());
        extra_args.push(m.clone());
    }
    if profile.faults.contains(&FaultKind::Poison) && !caps.mutation {
        return harness_failure(
            &opts,
            "the poison nemesis needs the fault route of a server built with --features fault-injection".into(),
        );
    }
    // Faults the machine cannot install would leave the run unknown after
    // minutes of work: say what to install now instead.
    let missing = prereqs::missing(&profile.faults, opts.net, &machine);
    if !missing.is_empty() {
        return harness_failure(&opts, prereqs::explain(&missing, opts.net));
    }
    let slow_clock = profile.faults.contains(&FaultKind::SlowClock);
    let faketime_lib = machine
        .faketime_lib
        .filter(|_| profile.faults.contains(&FaultKind::Clock) || slow_clock);
    caps.faketime = faketime_lib.is_some();
    caps.fake_monotonic = caps.faketime && slow_clock;
    let run_dir = opts.out_dir.clone();
    let cluster = match Cluster::new(
        ClusterConfig {
            server_bin: opts.server_bin.clone(),
            run_dir: run_dir.clone(),
            net: opts.net,
            extra_args,
            faketime_lib,
            fake_monotonic: caps.fake_monotonic,
            lazyfs_bin: caps.lazyfs.then(|| opts.lazyfs_bin.clone()),
        },
        3,
    ) {
        Ok(c) => c,
        Err(e) => {
            cluster::netns_cleanup();
            return harness_failure(&opts, format!("setting up the cluster: {e}"));
        }
    };
    let outcome = run_with_cluster(&opts, cluster.clone(), caps).await;
    cluster.shutdown();
    outcome
}

async fn run_with_cluster(opts: &TestOptions, cluster: Cluster, mut caps: Capabilities) -> Outcome {
    let profile = &opts.profile;
    let start = Instant::now();
    let rec = Recorder::new(start);
    let time_limit_ms = opts.time_limit_s * 1000;
    let kinds: Vec<FaultKind> = profile.faults.clone();
    let plan = nemesis::plan(
        &kinds,
        opts.seed,
        3_000,
        time_limit_ms.saturating_sub(2_000),
        profile.fault_timing,
        opts.net,
    );

    // Proxy mode: one proxy per link, nodes dial peers through them.
    let proxies = if opts.net == NetMode::Proxy && caps.dial_override {
        let nodes: Vec<(u64, String)> = cluster
            .specs()
            .iter()
            .map(|s| (s.id, s.raft.clone()))
            .collect();
        match proxy::Proxies::start(&nodes).await {
            Ok(p) => {
                let raft_addr: BTreeMap<u64, String> = nodes.iter().cloned().collect();
                for &(id, _) in &nodes {
                    let ov =
                        p.overrides_for(id, |to| raft_addr.get(&to).cloned().unwrap_or_default());
                    cluster.set_dial_overrides(id, ov);
                }
                Some(p)
            }
            Err(e) => return harness_failure(opts, e),
        }
    } else {
        None
    };

    for id in cluster.ids() {
        if let Err(e) = cluster.start(id) {
            return harness_failure(opts, e);
        }
    }
    for id in cluster.ids() {
        if let Err(e) = wait_healthy(&cluster, id, Duration::from_secs(30)).await {
            return harness_failure(opts, e);
        }
    }
    let members: Vec<(u64, String)> = cluster
        .specs()
        .iter()
        .map(|s| (s.id, s.raft.clone()))
        .collect();
    let first = match cluster.spec(1) {
        Ok(spec) => spec,
        Err(e) => return harness_failure(opts, e),
    };
    match tael_raft::cmd::init::run_with(
        &format!("http://{}", first.rest),
        &members,
        Duration::from_secs(20),
        true,
    )
    .await
    {
        // Every later REST call of this process presents the admin key; the
        // workload's OTLP exports present it too (workload.rs).
        Ok(done) => match done.admin_key {
            Some(key) => tael_raft::http_client::set_default_api_key(key),
            None => return harness_failure(opts, "init created no admin key".into()),
        },
        Err(e) => return harness_failure(opts, format!("init: {e}")),
    }
    let (initial, _) = wait_converged(&cluster, &cluster.ids(), Duration::from_secs(30)).await;
    if initial.valid != Some(true) {
        return harness_failure(opts, format!("cluster did not form: {}", initial.summary));
    }

    let wcfg = WorkloadConfig {
        set_clients: profile.set_clients,
        set_keys: 8,
        session_clients: profile.session_clients,
        list_clients: profile.list_clients,
        aged_clients: profile.aged_clients,
        // Twice the retention: past it however the leader's clock moves.
        aged_span_age_nanos: profile
            .retention_traces_s(opts.time_limit_s)
            .unwrap_or(3_600)
            * 2
            * 1_000_000_000,
        retry: opts.retry.unwrap_or(profile.retry),
        op_timeout_ms: 5_000,
        think_ms: 40,
        lease_read_share: profile.lease_read_share,
        flood_clients: profile.flood_clients,
        flood_in_flight: profile.flood_in_flight,
    };
    let clients = Clients::new(cluster.clone(), rec.clone(), wcfg.clone());
    caps.comments = clients.comments_supported(1).await;

    let config = json!({
        "profile": profile, "seed": opts.seed, "time_limit_s": opts.time_limit_s,
        "net": opts.net, "server_bin": opts.server_bin, "capabilities": caps,
        "workload": wcfg, "schedule": plan,
        "nodes": cluster.specs(),
        "command": std::env::args().collect::<Vec<_>>(),
    });
    if let Err(e) = std::fs::write(
        opts.out_dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    ) {
        return harness_failure(opts, format!("writing config.json: {e}"));
    }
    eprintln!(
        "tael-jepsen: profile {} seed {} for {}s, {} planned faults, out {}",
        profile.name,
        opts.seed,
        opts.time_limit_s,
        plan.len(),
        opts.out_dir.display()
    );

    let stop_obs = Arc::new(AtomicBool::new(false));
    let observer = tokio::spawn(observe(
        cluster.clone(),
        rec.clone(),
        stop_obs.clone(),
        profile.observe_interval_ms,
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..wcfg.set_clients {
        tasks.push(tokio::spawn(clients.clone().set_client(
            c as u64,
            opts.seed,
            stop.clone(),
        )));
    }
    for c in 0..wcfg.session_clients {
        tasks.push(tokio::spawn(clients.clone().session_client(
            c as u64,
            opts.seed,
            stop.clone(),
        )));
    }
    for c in 0..wcfg.flood_clients {
        tasks.push(tokio::spawn(
            clients.clone().flood_client(c as u64, stop.clone()),
        ));
    }
    for c in 0..wcfg.aged_clients {
        tasks.push(tokio::spawn(clients.clone().aged_client(
            c as u64,
            opts.seed,
            stop.clone(),
        )));
    }
    let list_enabled = wcfg.list_clients > 0 && caps.comments;
    if wcfg.list_clients > 0 && !caps.comments {
        rec.nemesis(
            "workload-unsupported",
            json!({"workload": "comment-list", "installed": false,
            "error": "server has no comments API"}),
        );
    }
    if list_enabled {
        for c in 0..wcfg.list_clients {
            tasks.push(tokio::spawn(clients.clone().list_client(
                c as u64,
                opts.seed,
                stop.clone(),
            )));
        }
    }
    let nem = Nemesis {
        cluster: cluster.clone(),
        rec: rec.clone(),
        proxies: proxies.clone(),
        caps: caps.clone(),
        refused: Default::default(),
        corruption_log: Default::default(),
        membership: membership::Membership {
            server_bin: opts.server_bin.clone(),
            next_id: Arc::new(AtomicU64::new(4)),
            min_voters: 3,
            failed_joins: Default::default(),
        },
    };
    let mut nemesis_tasks = Vec::new();
    for &k in &kinds {
        nemesis_tasks.push(tokio::spawn(nem.clone().run_kind(
            k,
            plan.clone(),
            stop.clone(),
        )));
    }

    tokio::time::sleep(Duration::from_millis(time_limit_ms)).await;
    stop.store(true, Ordering::Relaxed);
    // A task that panicked stopped injecting faults or issuing operations
    // part-way: the run is then a harness fault, never valid.
    let mut task_panics = Vec::new();
    for t in nemesis_tasks.into_iter().chain(tasks) {
        if let Err(e) = t.await {
            task_panics.push(e.to_string());
        }
    }

    // Final phase: heal everything, then demand a leader and full apply.
    let refused = nem.refused.lock().expect("lock").clone();
    let mut healed = Vec::new();
    for id in cluster.ids() {
        cluster.resume(id);
        if caps.fake_monotonic {
            // A rate, once set, stays until another is named.
            let _ = cluster.set_clock_spec(id, "+0s x1\n");
        } else if caps.faketime {
            let _ = cluster.set_clock_offset(id, 0);
        }
        if !refused.contains(&id) && matches!(cluster.start(id), Ok(true)) {
            healed.push(id);
        }
    }
    if let Some(px) = &proxies {
        px.heal();
    }
    let net_heal = nem.block(&[]);
    rec.nemesis(
        "final-heal",
        json!({"restarted": healed, "network_healed": net_heal.is_ok() || proxies.is_none() && opts.net == NetMode::Proxy,
               "refused_nodes": refused, "installed": true}),
    );
    let members: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|i| !refused.contains(i))
        .collect();
    let (liveness, members) = wait_converged(
        &cluster,
        &members,
        Duration::from_secs(opts.heal_deadline_s),
    )
    .await;
    eprintln!("tael-jepsen: {}", liveness.summary);

    // Final reads: linearizable through every node, then each node's local state.
    let mut convergence: BTreeMap<String, BTreeMap<u64, Value>> = BTreeMap::new();
    // Final linearizable reads even without a converged cluster: any node
    // that still answers must not have lost acknowledged data.
    {
        for &node in &members {
            let p = workload::FINAL_PROCESS + node as i64;
            for k in 0..wcfg.set_keys {
                let key = format!("set-{k}");
                let _ = clients
                    .read_trace(
                        p,
                        workload::SET_READ,
                        &key,
                        workload::set_trace_id(k),
                        node,
                        "linearizable",
                    )
                    .await;
            }
            for c in 0..wcfg.session_clients as u64 {
                let key = format!("session-{c}");
                let _ = clients
                    .read_trace(
                        p,
                        workload::SESSION_READ,
                        &key,
                        workload::session_trace_id(c),
                        node,
                        "linearizable",
                    )
                    .await;
            }
        }
    }
    if wcfg.aged_clients > 0 {
        let cut = wait_final_cut(
            &cluster,
            &members,
            Duration::from_secs(opts.heal_deadline_s),
        )
        .await;
        rec.nemesis(checkers::retention::FINAL_CUT_EVENT, cut);
        for &node in &members {
            let p = workload::FINAL_PROCESS + node as i64;
            for k in 0..workload::AGED_KEYS {
                let _ = clients
                    .read_trace(
                        p,
                        workload::AGED_READ,
                        &format!("aged-{k}"),
                        workload::aged_trace_id(k),
                        node,
                        "linearizable",
                    )
                    .await;
            }
        }
    }
    if liveness.valid == Some(true) {
        // Every span-set key: the shared sets, then each session's trace.
        let span_keys: Vec<_> = (0..wcfg.set_keys)
            .map(|k| (format!("set-{k}"), workload::set_trace_id(k)))
            .chain(
                (0..wcfg.session_clients as u64)
                    .map(|c| (format!("session-{c}"), workload::session_trace_id(c))),
            )
            .collect();
        for &node in &members {
            let p = workload::FINAL_PROCESS + 50 + node as i64;
            for (key, trace) in &span_keys {
                let result = match clients
                    .read_trace(p, workload::SET_READ_LOCAL, key, *trace, node, "local")
                    .await
                {
                    Ok(ids) => json!(ids),
                    Err(e) => json!({"error": e}),
                };
                convergence
                    .entry(key.clone())
                    .or_default()
                    .insert(node, result);
            }
        }
    }
    // The replicas' own proof: every member digests its whole state at one
    // log position (`POST /api/v1/cluster/check`), covering what the reads
    // above do not (indexes, counters, comments, keys).
    let digests = if liveness.valid == Some(true) {
        final_consistency_check(&cluster, &members).await
    } else {
        json!({"installed": false, "error": "no converged cluster"})
    };
    rec.nemesis(DIGEST_CHECK_EVENT, digests.clone());
    if kinds.contains(&FaultKind::Poison) {
        // After the digests: every member applied up to the check entry,
        // and nothing proposes poison any more.
        rec.nemesis(
            checkers::poison::REJECTED_EVENT,
            rejected_counts(&cluster, &members).await,
        );
    }
    // Comment lists: a final linearizable read of every key through every
    // node, and (after convergence) each node's local list, which must be
    // identical, order included.
    if list_enabled {
        let mut list_keys: Vec<String> = rec
            .snapshot()
            .iter()
            .filter(|e| e.f == workload::LIST_APPEND)
            .filter_map(|e| e.key.clone())
            .collect();
        list_keys.sort();
        list_keys.dedup();
        for &node in &members {
            for key in &list_keys {
                let Some(key_no) = key
                    .strip_prefix("list-")
                    .and_then(|k| k.parse::<u64>().ok())
                else {
                    continue;
                };
                let trace = workload::hex(&workload::list_trace_id(key_no));
                let p = workload::FINAL_PROCESS + node as i64;
                let _ = clients
                    .read_comments(p, workload::LIST_READ, key, &trace, node, "linearizable")
                    .await;
                if liveness.valid == Some(true) {
                    let p = workload::FINAL_PROCESS + 50 + node as i64;
                    let local = clients
                        .read_comments(p, workload::LIST_READ_LOCAL, key, &trace, node, "local")
                        .await;
                    convergence.entry(key.clone()).or_default().insert(
                        node,
                        match local {
                            Ok(list) => json!(list),
                            Err(e) => json!({"error": e}),
                        },
                    );
                }
            }
        }
    }
    stop_obs.store(true, Ordering::Relaxed);
    if let Err(e) = observer.await {
        task_panics.push(e.to_string());
    }

    // Crashes: a panic in any node log is a bug whatever else happened.
    // A full disk is the environment's fault: the run proves nothing.
    let mut panics = Vec::new();
    let mut environment = Vec::new();
    for (id, log_path) in cluster.all_node_logs() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        for line in text.lines() {
            if line.contains("panicked at") {
                panics.push(json!({"node": id, "line": line}));
            }
            if line.contains("No space left on device") && environment.len() < 5 {
                environment.push(json!({"node": id, "line": line}));
            }
        }
    }

    let history = rec.snapshot();
    let write = std::fs::File::create(opts.out_dir.join("history.jsonl"))
        .map_err(|e| e.to_string())
        .and_then(|f| {
            events::write_jsonl(&history, std::io::BufWriter::new(f)).map_err(|e| e.to_string())
        });
    if let Err(e) = write {
        return harness_failure(opts, format!("writing history.jsonl: {e}"));
    }

    let mut checks = match check_history(&history, list_enabled) {
        Ok(c) => c,
        Err(e) => return harness_failure(opts, format!("pairing the history: {e}")),
    };
    checks.push(liveness);
    checks.push(convergence_check(&convergence, liveness_ok(&checks)));
    checks.push(digest_check(&digests, &members));
    checks.push(coverage::check(&plan, &history));
    if kinds.contains(&FaultKind::Poison) {
        use workload::{AGED_ADD, LIST_APPEND, SESSION_ADD, SET_ADD};
        checks.push(checkers::poison::check(
            &history,
            &[SET_ADD, SESSION_ADD, LIST_APPEND, AGED_ADD],
        ));
    }
    if wcfg.flood_clients > 0 {
        checks.push(checkers::flood::check(&history));
    }
    let exits = cluster.unexpected_exits();
    if profile.exits_are_bugs {
        checks.push(checkers::exits::check(&exits, &history));
    }
    let corruption = nem.corruption_log.lock().expect("lock").clone();
    if kinds.contains(&FaultKind::Corrupt) || kinds.contains(&FaultKind::CorruptAny) {
        let planned = plan
            .iter()
            .filter(|p| matches!(p.kind, FaultKind::Corrupt | FaultKind::CorruptAny))
            .count();
        checks.push(corruption::check(&corruption, planned));
    }
    checks.push(Check {
        name: "node-panics".into(),
        valid: Some(panics.is_empty()),
        summary: format!("panics in node logs: {}", panics.len()),
        details: json!(checkers::first(&panics, 20)),
    });
    // Under the disk-full nemesis ENOSPC is the fault under test; the
    // machine's own disk must then still have room.
    let injected_full = caps.lazyfs && profile.faults.contains(&FaultKind::DiskFull);
    let real_free = if injected_full {
        free_bytes(&opts.out_dir)
    } else {
        None
    };
    let injected = injected_full.then_some(real_free);
    let disk_unexplained = !environment.is_empty() && !injected_full_explains(injected);
    checks.push(environment_check(&environment, injected, &checks));
    if !task_panics.is_empty() {
        checks.push(Check {
            name: "harness".into(),
            valid: None,
            summary: format!(
                "{} harness task(s) failed: {}",
                task_panics.len(),
                task_panics.join("; ")
            ),
            details: json!({"task_errors": task_panics}),
        });
    }
    let nemesis_summary = summarize_nemesis(&history);
    // A full disk can explain any anomaly: never a definite verdict then
    // (unless it is the injected fault under test).
    let valid = if !disk_unexplained {
        checkers::combine(&checks)
    } else {
        None
    };
    let results = json!({
        "valid": match valid { Some(true) => json!(true), Some(false) => json!(false), None => json!("unknown") },
        "profile": profile.name, "seed": opts.seed,
        "checks": checks,
        "nemesis": nemesis_summary,
        "unexpected_exits": exits,
        "ops": history.iter().filter(|e| e.process >= 0 && e.kind == OpKind::Invoke).count(),
        "duration_s": start.elapsed().as_secs_f64(),
    });
    if let Err(e) = std::fs::write(
        opts.out_dir.join("results.json"),
        serde_json::to_vec_pretty(&results).unwrap_or_default(),
    ) {
        eprintln!("tael-jepsen: writing results.json: {e}");
    }
    if let Err(e) = crate::report::write_all(&opts.out_dir, &history) {
        eprintln!("tael-jepsen: writing plots: {e}");
    }
    crate::report::print_summary(&profile.name, opts.seed, &checks, &nemesis_summary, valid);
    Outcome { valid, checks }
}

/// Below this much free space on the machine's disk, a run whose nodes
/// hit ENOSPC cannot tell the injected fault from the real one.
const MIN_REAL_FREE_BYTES: u64 = 256 << 20;

/// Free bytes (for an unprivileged writer) of the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the struct it is given; both pointers are valid
    // for the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
        .then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Whether ENOSPC in the node logs is the disk-full nemesis's doing:
/// injected, and the machine's own disk has room.
fn injected_full_explains(injected_full: Option<Option<u64>>) -> bool {
    matches!(injected_full, Some(Some(free)) if free >= MIN_REAL_FREE_BYTES)
}

/// A run that hit a full disk, or where the workload hardly got anything
/// acknowledged or read, exercised nothing: its verdict is unknown.
/// `injected_full` is `Some(free bytes of the machine's disk)` when the
/// disk-full nemesis ran: its ENOSPC lines are then expected, unless the
/// machine's disk itself is (nearly) full.
fn environment_check(
    disk_full: &[Value],
    injected_full: Option<Option<u64>>,
    checks: &[Check],
) -> Check {
    let set = checks.iter().find(|c| c.name.starts_with("set("));
    let acked = set
        .and_then(|c| c.details["acknowledged"].as_u64())
        .unwrap_or(0);
    let reads = set.and_then(|c| c.details["reads"].as_u64()).unwrap_or(0);
    let mut problems = Vec::new();
    match injected_full {
        _ if disk_full.is_empty() || injected_full_explains(injected_full) => {}
        None => problems.push("a node ran out of disk space".to_string()),
        Some(free) => problems.push(format!(
            "a node ran out of disk space and the machine's disk has {} bytes free: \
             the injected full disk cannot be told from a real one",
            free.map_or("unknown".to_string(), |f| f.to_string())
        )),
    }
    if acked < MIN_ACKED_ADDS || reads < MIN_READS {
        problems.push(format!(
            "too little work to judge: {acked} acknowledged adds, {reads} reads (need {MIN_ACKED_ADDS} and {MIN_READS})"
        ));
    }
    Check {
        name: "environment".into(),
        valid: if problems.is_empty() {
            Some(true)
        } else {
            None
        },
        summary: if problems.is_empty() {
            format!("ok ({acked} acknowledged adds, {reads} reads)")
        } else {
            problems.join("; ")
        },
        details: json!({"problems": problems, "disk_full_lines": disk_full}),
    }
}

/// Waits until every member reports a retention cut above the log's end as
/// of now (so it covers every write of the run) with nothing left pending;
/// the event's value for [`checkers::retention::FINAL_CUT_EVENT`].
async fn wait_final_cut(cluster: &Cluster, members: &[u64], deadline: Duration) -> Value {
    let started = Instant::now();
    let timeout = Duration::from_secs(2);
    let mut target = None;
    let mut last = Value::Null;
    while started.elapsed() < deadline {
        if target.is_none() {
            for &id in members {
                if let Ok(v) = cluster.get_json(id, "/api/v1/cluster", timeout).await {
                    target = v["nodes"].as_array().and_then(|ns| {
                        ns.iter().filter_map(|n| n["last_log_index"].as_u64()).max()
                    });
                    if target.is_some() {
                        break;
                    }
                }
            }
        }
        if let Some(t) = target {
            let mut cuts = BTreeMap::new();
            for &id in members {
                let v = cluster.get_json(id, "/api/v1/storage", timeout).await;
                cuts.insert(
                    id,
                    v.map(|v| v["last_cut"].clone())
                        .unwrap_or_else(|e| json!({"error": e})),
                );
            }
            let done = cuts
                .values()
                .all(|c| c["log_index"].as_u64().is_some_and(|i| i > t) && c["pending"] == false);
            last = json!({"target_index": t, "cuts": cuts});
            if done {
                return json!({"installed": true, "waited_ms": started.elapsed().as_millis() as u64, "state": last});
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    json!({"installed": false, "error": "no retention cut covered the writes in time", "state": last})
}

/// Every member's count of entries its state machine rejected, read from
/// its `/metrics`; the event's value for
/// [`checkers::poison::REJECTED_EVENT`].
async fn rejected_counts(cluster: &Cluster, members: &[u64]) -> Value {
    let mut counts = serde_json::Map::new();
    let mut errors = serde_json::Map::new();
    for &id in members {
        let metric = checkers::poison::REJECTED_METRIC;
        match cluster
            .get_text(id, "/metrics", Duration::from_secs(5))
            .await
            .and_then(|text| {
                checkers::poison::metric_value(&text, metric)
                    .ok_or_else(|| format!("no {metric} in /metrics"))
            }) {
            Ok(n) => counts.insert(id.to_string(), json!(n)),
            Err(e) => errors.insert(id.to_string(), json!(e)),
        };
    }
    json!({"counts": counts, "errors": errors, "installed": true})
}

/// Below these a run is not evidence of anything.
const MIN_ACKED_ADDS: u64 = 50;
const MIN_READS: u64 = 50;

fn liveness_ok(checks: &[Check]) -> bool {
    checks
        .iter()
        .any(|c| c.name == "liveness" && c.valid == Some(true))
}

/// Runs every history checker that applies.
pub fn check_history(history: &[events::Event], with_list: bool) -> Result<Vec<Check>, String> {
    use workload::*;
    let ops = events::pair(history, |_| true)?;
    let mut checks = vec![checkers::set::check(&ops, SET_ADD, SET_READ)];
    if ops
        .iter()
        .any(|o| o.f == SESSION_ADD || o.f == SESSION_READ)
    {
        checks.push(checkers::session::check(&ops, SESSION_ADD, SESSION_READ));
        // The same set-full analysis over the session traces: their reads
        // are linearizable too, so lost and stale apply as well.
        checks.push(checkers::set::check(&ops, SESSION_ADD, SESSION_READ));
    }
    if with_list || ops.iter().any(|o| o.f == LIST_APPEND) {
        checks.push(checkers::list::check(
            &ops,
            LIST_APPEND,
            LIST_READ,
            &Budget::with_ms(60_000),
        ));
    }
    if ops.iter().any(|o| o.f == AGED_ADD) {
        checks.push(checkers::retention::check(
            history, &ops, AGED_ADD, AGED_READ,
        ));
    }
    checks.push(checkers::election::check(history));
    Ok(checks)
}

/// The event recording the final consistency check's report.
const DIGEST_CHECK_EVENT: &str = "final-consistency-check";

/// Asks the members, in turn, to run a consistency check (the leader
/// proposes it) and waits for every digest; the report, or why none came.
async fn final_consistency_check(cluster: &Cluster, members: &[u64]) -> Value {
    let mut errors = Vec::new();
    for &id in members {
        let url = match cluster.spec(id) {
            Ok(spec) => spec.url("/api/v1/cluster/check?wait_secs=60"),
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match tael_raft::http_client::request("POST", &url, None, b"", Duration::from_secs(90))
            .await
        {
            Ok(r) if r.status == 200 => match r.json() {
                Ok(report) => return json!({"installed": true, "via": id, "report": report}),
                Err(e) => errors.push(e),
            },
            Ok(r) => errors.push(format!(
                "node {id}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => errors.push(format!("node {id}: {e}")),
        }
    }
    json!({"installed": false, "error": errors})
}

/// Every running member's digest of its state at the final check must be
/// the same. Nodes the harness left down (a refused corruption) are missing
/// from the report by design.
fn digest_check(event: &Value, running: &[u64]) -> Check {
    let report = &event["report"];
    let reported: BTreeSet<u64> = report["digests"]
        .as_object()
        .map(|d| d.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default();
    let (valid, summary) = if event["installed"] != true {
        (None, format!("not checked: {}", event["error"]))
    } else if report["differing"]
        .as_array()
        .is_some_and(|d| !d.is_empty())
    {
        (
            Some(false),
            format!(
                "replicas {} differ from the others at index {}",
                report["differing"], report["index"]
            ),
        )
    } else if running.iter().all(|id| reported.contains(id)) {
        (
            Some(true),
            format!(
                "{} replicas agree at index {}",
                report["digests"].as_object().map_or(0, |d| d.len()),
                report["index"]
            ),
        )
    } else {
        (
            None,
            format!("members {} gave no digest", report["missing"]),
        )
    };
    Check {
        name: "replica-digests".into(),
        valid,
        summary,
        details: event.clone(),
    }
}

/// Every node's local state of each key must be the same after the heal.
fn convergence_check(reads: &BTreeMap<String, BTreeMap<u64, Value>>, live: bool) -> Check {
    if !live || reads.is_empty() {
        return Check {
            name: "convergence".into(),
            valid: None,
            summary: "not checked (no converged cluster to read)".into(),
            details: Value::Null,
        };
    }
    let mut diverged = Vec::new();
    let mut unreadable = 0;
    for (key, per_node) in reads {
        // Span sets compare as sets; comment lists in commit order.
        let ordered = key.starts_with("list-");
        let sets: BTreeMap<u64, Option<Vec<u64>>> = per_node
            .iter()
            .map(|(n, v)| {
                (
                    *n,
                    v.is_array().then(|| {
                        let mut ids = events::ids(v);
                        if !ordered {
                            ids.sort();
                        }
                        ids
                    }),
                )
            })
            .collect();
        if sets.values().any(Option::is_none) {
            unreadable += 1;
            continue;
        }
        let distinct: BTreeSet<&Vec<u64>> = sets.values().flatten().collect();
        if distinct.len() > 1 {
            let sizes: BTreeMap<u64, usize> = sets
                .iter()
                .map(|(n, s)| (*n, s.as_ref().map_or(0, |s| s.len())))
                .collect();
            diverged.push(json!({"key": key, "sizes": sizes}));
        }
    }
    Check {
        name: "convergence".into(),
        valid: if !diverged.is_empty() {
            Some(false)
        } else if unreadable > 0 {
            None
        } else {
            Some(true)
        },
        summary: format!(
            "keys {} | diverged {} unreadable {}",
            reads.len(),
            diverged.len(),
            unreadable
        ),
        details: json!({"diverged": diverged, "unreadable": unreadable}),
    }
}

/// Per nemesis function: how often it ran and how often it was installed.
pub fn summarize_nemesis(history: &[events::Event]) -> Value {
    let mut by_f: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in history.iter().filter(|e| e.process == events::NEMESIS) {
        let entry = by_f.entry(e.f.clone()).or_default();
        entry.0 += 1;
        if e.value["installed"] == true {
            entry.1 += 1;
        }
    }
    json!(by_f
        .into_iter()
        .map(|(f, (n, installed))| (f, json!({"count": n, "installed": installed})))
        .collect::<serde_json::Map<_, _>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(entries: &[(&str, u64, Value)]) -> BTreeMap<String, BTreeMap<u64, Value>> {
        let mut m: BTreeMap<String, BTreeMap<u64, Value>> = BTreeMap::new();
        for (k, n, v) in entries {
            m.entry(k.to_string()).or_default().insert(*n, v.clone());
        }
        m
    }

    #[test]
    fn convergence_compares_sets_and_ordered_lists() {
        let same = reads(&[("set-0", 1, json!([1, 2])), ("set-0", 2, json!([2, 1]))]);
        assert_eq!(convergence_check(&same, true).valid, Some(true));
        let diverged = reads(&[("set-0", 1, json!([1, 2])), ("set-0", 2, json!([1]))]);
        assert_eq!(convergence_check(&diverged, true).valid, Some(false));
        let reordered = reads(&[("list-0", 1, json!([1, 2])), ("list-0", 2, json!([2, 1]))]);
        assert_eq!(convergence_check(&reordered, true).valid, Some(false));
        let unreadable = reads(&[
            ("set-0", 1, json!([1])),
            ("set-0", 2, json!({"error": "x"})),
        ]);
        assert_eq!(convergence_check(&unreadable, true).valid, None);
        assert_eq!(convergence_check(&same, false).valid, None);
    }

    #[test]
    fn differing_replica_digests_are_invalid_and_missing_ones_unknown() {
        let ev = |report: Value| json!({"installed": true, "via": 1, "report": report});
        let agree = ev(
            json!({"index": 9, "digests": {"1": "a", "2": "a"}, "differing": [], "missing": [], "agree": true}),
        );
        assert_eq!(digest_check(&agree, &[1, 2]).valid, Some(true));
        let differ = ev(
            json!({"index": 9, "digests": {"1": "a", "2": "b", "3": "a"}, "differing": [2], "missing": [], "agree": false}),
        );
        assert_eq!(digest_check(&differ, &[1, 2, 3]).valid, Some(false));
        let missing = ev(
            json!({"index": 9, "digests": {"1": "a"}, "differing": [], "missing": [2], "agree": false}),
        );
        assert_eq!(digest_check(&missing, &[1, 2]).valid, None);
        assert_eq!(
            digest_check(&missing, &[1]).valid,
            Some(true),
            "node 2 was left down by the harness"
        );
        assert_eq!(
            digest_check(&json!({"installed": false, "error": "x"}), &[1]).valid,
            None
        );
    }

    #[test]
    fn too_little_work_or_a_full_disk_is_unknown() {
        let set = |acked: u64, reads: u64| Check {
            name: "set(add/read)".into(),
            valid: Some(true),
            summary: String::new(),
            details: json!({"acknowledged": acked, "reads": reads}),
        };
        assert_eq!(
            environment_check(&[], None, &[set(500, 500)]).valid,
            Some(true)
        );
        assert_eq!(environment_check(&[], None, &[set(4, 500)]).valid, None);
        let full = [json!({"node": 1, "line": "No space left on device"})];
        assert_eq!(environment_check(&full, None, &[set(500, 500)]).valid, None);
        // Injected by the disk-full nemesis: expected, while the machine's
        // disk has room.
        let room = Some(Some(10 << 30));
        assert_eq!(
            environment_check(&full, room, &[set(500, 500)]).valid,
            Some(true)
        );
        for no_room in [Some(Some(1 << 20)), Some(None)] {
            assert_eq!(
                environment_check(&full, no_room, &[set(500, 500)]).valid,
                None
            );
        }
    }
}
