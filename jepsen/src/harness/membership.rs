//! Membership changes through the server's `tael-raft member` commands:
//! remove a voter and add it back as a new node id with a fresh data dir
//! (ids are never reused for a wiped node), or add a new node first (it
//! catches up, by snapshot when the log was purged) and then remove one.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::cluster::Cluster;
use crate::events::Recorder;

/// What one membership change needs: the cluster, where to record, whether
/// the server has `member` commands, and the planned target and pick.
pub struct Change<'a> {
    pub cluster: &'a Cluster,
    pub rec: &'a Recorder,
    pub member_commands: bool,
    pub target: &'a str,
    pub pick: u64,
}

#[derive(Clone)]
pub struct Membership {
    pub server_bin: PathBuf,
    pub next_id: Arc<AtomicU64>,
    /// Keep at least this many voters.
    pub min_voters: usize,
    /// Nodes whose `member add` or `promote` failed: kept running until
    /// the leader's membership shows whether they joined (see
    /// [`Membership::reap_strays`]).
    pub failed_joins: Arc<Mutex<BTreeSet<u64>>>,
}

/// How long a change waits for a leader before it gives up.
const LEADER_WAIT: Duration = Duration::from_secs(8);

/// Runs `tael-raft member ...` with a deadline; Ok(stdout) on success.
async fn member(bin: &PathBuf, args: &[String], timeout: Duration) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("member").args(args).kill_on_drop(true);
    // Off loopback the cluster requires keys: present the run's admin key.
    if let Some(key) = tael_raft::http_client::default_api_key() {
        cmd.env("TAEL_API_KEY", key);
    }
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| format!("member {} timed out", args.join(" ")))?
        .map_err(|e| format!("member {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "member {} exited {:?}: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Membership {
    /// The leader's REST address, waiting up to [`LEADER_WAIT`] for one:
    /// under overlapping faults a change planned at a leaderless moment
    /// would otherwise almost never be installed.
    async fn server_url(&self, n: &Change<'_>) -> Option<String> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            // The leader may be a node the harness already forgot
            // (removed, or whose join failed): no address to use then.
            let leader = n.cluster.current_leader().await;
            if let Some(spec) = leader.and_then(|id| n.cluster.spec(id).ok()) {
                return Some(format!("http://{}", spec.rest));
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn add(&self, n: &Change<'_>, url: &str) -> Result<u64, String> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let spec = n.cluster.add_spec(id)?;
        let started = match n.cluster.start(id) {
            Ok(_) => super::wait_healthy(&n.cluster, id, Duration::from_secs(30)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            // No membership command ran: never a member, not a node the
            // clients or the heal should use.
            n.cluster.forget(id);
            return Err(e);
        }
        // Once `member add` was sent the node may be a learner or a voter
        // whatever the command reported (a timeout can hide success), so
        // it keeps running: killing a voter would cost the cluster a vote.
        // The heal waits only for the nodes in the leader's membership.
        let joined = self.join(url, id, &spec.raft).await;
        if joined.is_err() {
            self.failed_joins.lock().expect("lock").insert(id);
        }
        joined.map(|()| id)
    }

    /// Reads the leader's membership and settles failed joins: a node the
    /// membership does not name is stopped (without this every failed join
    /// would leave a process running for the rest of the run, and a soak
    /// of hours hundreds of them); one that did join stays, a member like
    /// any other. Nothing is settled while a change is in progress (a node
    /// of a joint configuration may still become a voter). Returns the
    /// voters (in a joint configuration, of both halves), or why they are
    /// unknown.
    ///
    /// A change interrupted between its two steps leaves the joint
    /// configuration in place until the next change, which openraft
    /// bridges through it: so a change goes ahead in that state (as an
    /// operator's next command would) rather than waiting for ever.
    async fn settle(&self, n: &Change<'_>, url: &str) -> Result<BTreeSet<u64>, String> {
        let out = member(
            &self.server_bin,
            &[
                "list".into(),
                "--server".into(),
                url.into(),
                "--output".into(),
                "json".into(),
            ],
            Duration::from_secs(10),
        )
        .await?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("member list: {e}"))?;
        let listed = |role: Option<&str>| -> BTreeSet<u64> {
            v["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| role.is_none_or(|r| m["role"] == r))
                .filter_map(|m| m["node_id"].as_u64())
                .collect()
        };
        let members = listed(None);
        if v["joint"] != false {
            n.rec.nemesis(
                "membership-joint",
                json!({"installed": true, "voters": listed(Some("voter"))}),
            );
            return Ok(listed(Some("voter")));
        }
        let strays: Vec<u64> = {
            let mut failed = self.failed_joins.lock().expect("lock");
            let strays = failed
                .iter()
                .copied()
                .filter(|id| !members.contains(id))
                .collect();
            failed.clear();
            strays
        };
        for id in strays {
            n.cluster.forget(id);
            n.rec
                .nemesis("membership-reap", json!({"node": id, "installed": true}));
        }
        Ok(listed(Some("voter")))
    }

    async fn join(&self, url: &str, id: u64, raft: &str) -> Result<(), String> {
        let t = Duration::from_secs(60);
        member(
            &self.server_bin,
            &[
                "add".into(),
                "--server".into(),
                url.into(),
                "--node-id".into(),
                id.to_string(),
                "--raft-addr".into(),
                raft.to_string(),
            ],
            t,
        )
        .await?;
        member(
            &self.server_bin,
            &[
                "promote".into(),
                "--server".into(),
                url.into(),
                "--node-id".into(),
                id.to_string(),
            ],
            t,
        )
        .await?;
        Ok(())
    }

    async fn remove(
        &self,
        n: &Change<'_>,
        url: &str,
        voters: &BTreeSet<u64>,
        keep: Option<u64>,
    ) -> Result<u64, String> {
        let leader = n.cluster.current_leader().await;
        let candidates: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|i| Some(*i) != leader && Some(*i) != keep)
            .collect();
        if candidates.is_empty() {
            return Err("no non-leader voter to remove".into());
        }
        let id = candidates[(n.pick % candidates.len() as u64) as usize];
        member(
            &self.server_bin,
            &[
                "remove".into(),
                "--server".into(),
                url.into(),
                "--node-id".into(),
                id.to_string(),
            ],
            Duration::from_secs(30),
        )
        .await?;
        n.cluster.forget(id);
        Ok(id)
    }

    /// The operator's way out for a node that refuses to start after
    /// damage to its log (docs/operations.md, "Damage and recovery"):
    /// remove its id from the membership, move its data directory aside,
    /// and join a fresh node under a new id (learner, then voter). The old
    /// id is never reused. Ok(new id).
    pub async fn replace(&self, n: &Change<'_>, old: u64) -> Result<u64, String> {
        if !n.member_commands {
            return Err("server has no `member` commands".into());
        }
        let url = self.server_url(n).await.ok_or("no leader")?;
        let spec = n.cluster.spec(old)?;
        member(
            &self.server_bin,
            &[
                "remove".into(),
                "--server".into(),
                url.clone(),
                "--node-id".into(),
                old.to_string(),
            ],
            Duration::from_secs(30),
        )
        .await?;
        n.cluster.forget(old);
        // Kept for the report, never used again: the new node gets its own
        // directory. (A tael-lazyfs mount point cannot be renamed; it then
        // simply stays where it is.)
        let _ = std::fs::rename(&spec.data_dir, spec.data_dir.with_extension("refused"));
        self.add(n, &url).await
    }

    pub async fn change(&self, n: &Change<'_>) {
        if !n.member_commands {
            n.rec.nemesis(
                "membership",
                json!({"target": n.target, "installed": false,
                       "error": "server has no `member` commands"}),
            );
            return;
        }
        let Some(url) = self.server_url(n).await else {
            n.rec.nemesis(
                "membership",
                json!({"target": n.target, "installed": false, "error": "no leader"}),
            );
            return;
        };
        let result = match self.settle(n, &url).await {
            Err(e) => Err(e),
            // A removal whose add failed left too few voters: restore.
            Ok(voters) if voters.len() < self.min_voters => self
                .add(n, &url)
                .await
                .map(|added| json!({"restored": added, "voters_before": voters})),
            Ok(voters) if n.target == "add-new" => match self.add(n, &url).await {
                // Either half installed is a membership change; the
                // second half's failure is recorded with it.
                Ok(added) => Ok(match self.remove(n, &url, &voters, Some(added)).await {
                    Ok(removed) => json!({"added": added, "removed": removed}),
                    Err(e) => json!({"added": added, "remove_error": e}),
                }),
                Err(e) => Err(e),
            },
            Ok(voters) => match self.remove(n, &url, &voters, None).await {
                Ok(removed) => Ok(match self.add(n, &url).await {
                    Ok(added) => json!({"removed": removed, "added": added}),
                    Err(e) => json!({"removed": removed, "add_error": e}),
                }),
                Err(e) => Err(e),
            },
        };
        let members = member(
            &self.server_bin,
            &["list".into(), "--server".into(), url.clone()],
            Duration::from_secs(10),
        )
        .await;
        n.rec.nemesis(
            "membership",
            json!({"target": n.target, "installed": result.is_ok(),
                   "result": result.as_ref().ok(), "error": result.as_ref().err(),
                   "members_after": members.ok()}),
        );
    }
}
