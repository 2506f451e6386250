//! This node's own metrics in the Prometheus text format (`GET /metrics`):
//! ingest, Raft, the log, apply, snapshots, full text and the spool.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::fulltext::FullText;
use crate::ingest::Ingest;
use crate::spool::Spool;
use crate::state;

pub struct SelfMetrics {
    cluster: Arc<Cluster>,
    ingest: Arc<Ingest>,
    sm: Arc<state::Shared>,
    fulltext: Arc<FullText>,
    spool: Option<Arc<Spool>>,
    /// For the query service's counters (set once the service exists).
    query: Option<Arc<crate::query::QueryService>>,
}

impl SelfMetrics {
    pub fn new(
        cluster: Arc<Cluster>,
        ingest: Arc<Ingest>,
        sm: Arc<state::Shared>,
        fulltext: Arc<FullText>,
        spool: Option<Arc<Spool>>,
    ) -> SelfMetrics {
        SelfMetrics {
            cluster,
            ingest,
            sm,
            fulltext,
            spool,
            query: None,
        }
    }

    /// Also reports `query`'s counters.
    pub fn with_query(mut self, query: Arc<crate::query::QueryService>) -> SelfMetrics {
        self.query = Some(query);
        self
    }

    /// The Prometheus text exposition of this node's counters and gauges.
    pub async fn render(&self) -> String {
        let m = self.cluster.metrics();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: u64| vec![(String::new(), v as f64)];
        let ing = &self.ingest.metrics;
        let mut records = Vec::new();
        let mut requests = Vec::new();
        for signal in crate::ingest::Signal::ALL {
            for transport in crate::ingest::Transport::ALL {
                let c = ing.get(signal, transport);
                let labels = format!(
                    "signal=\"{}\",transport=\"{}\"",
                    signal.as_str(),
                    transport.as_str()
                );
                for (outcome, v) in [
                    ("accepted", &c.accepted),
                    ("rejected", &c.rejected),
                    ("unavailable", &c.unavailable),
                ] {
                    records.push((
                        format!("{{{labels},outcome=\"{outcome}\"}}"),
                        v.load(Ordering::Relaxed) as f64,
                    ));
                }
                requests.push((
                    format!("{{{labels}}}"),
                    c.requests.load(Ordering::Relaxed) as f64,
                ));
            }
        }
        metric(
        "tael_ingest_records_total",
        "counter",
        "Telemetry records by signal, transport and outcome (accepted: committed; rejected: invalid; unavailable: refused for lack of leader or quorum).",
        &records,
    );
        metric(
            "tael_ingest_requests_total",
            "counter",
            "OTLP export requests by signal and transport.",
            &requests,
        );
        let mut shed = Vec::new();
        for transport in crate::ingest::Transport::ALL {
            for reason in crate::ingest::ShedReason::ALL {
                shed.push((
                    format!(
                        "{{transport=\"{}\",reason=\"{}\"}}",
                        transport.as_str(),
                        reason.as_str()
                    ),
                    ing.shed(transport, reason) as f64,
                ));
            }
        }
        metric(
            "tael_ingest_shed_total",
            "counter",
            "OTLP requests shed before decoding (429 / RESOURCE_EXHAUSTED / timeout) by transport and reason.",
            &shed,
        );
        metric(
            "tael_raft_is_leader",
            "gauge",
            "1 on the leader.",
            &one((m.current_leader == Some(self.cluster.node_id())) as u64),
        );
        metric(
            "tael_raft_last_log_index",
            "gauge",
            "Last log index.",
            &one(m.last_log_index.unwrap_or(0)),
        );
        metric(
            "tael_raft_commit_index",
            "gauge",
            "Commit index known here.",
            &one(m.local_committed.map_or(0, |l| l.index)),
        );
        metric(
            "tael_raft_applied_index",
            "gauge",
            "Applied index.",
            &one(m.last_applied.map_or(0, |l| l.index)),
        );
        if let Some(repl) = &m.replication {
            let last = m.last_log_index.unwrap_or(0);
            let lags: Vec<(String, f64)> = repl
                .iter()
                .map(|(id, matched)| {
                    (
                        format!("{{follower=\"{id}\"}}"),
                        last.saturating_sub(matched.map_or(0, |l| l.index)) as f64,
                    )
                })
                .collect();
            metric(
                "tael_raft_replication_lag_entries",
                "gauge",
                "Entries a follower is behind the leader.",
                &lags,
            );
        }
        let ls = self.cluster.log().stats();
        metric(
            "tael_wal_fsyncs_total",
            "counter",
            "Raft log fsyncs.",
            &one(ls.fsync_latency.count()),
        );
        metric(
            "tael_wal_torn_tail_repairs_total",
            "counter",
            "Torn log tails cut off at start-up.",
            &one(ls.torn_tail_repairs.load(Ordering::Relaxed)),
        );
        let checks = self.cluster.check_stats();
        metric(
            "tael_consistency_checks_total",
            "counter",
            "Consistency checks this node ran (see POST /api/v1/cluster/check).",
            &one(checks.checks.load(Ordering::Relaxed)),
        );
        metric(
            "tael_consistency_mismatches_total",
            "counter",
            "Consistency checks that found replicas with different state at the same log position.",
            &one(checks.mismatches.load(Ordering::Relaxed)),
        );
        metric(
            "tael_state_digest_index",
            "gauge",
            "Log index of the latest consistency check this replica digested (0: none).",
            &one(self.cluster.local_digest().map_or(0, |d| d.0)),
        );
        metric(
            "tael_log_integrity_failures_total",
            "counter",
            "Raft log records refused because their HMAC failed or was missing \
             (--log-integrity hmac): a security event.",
            &one(self.cluster.log().integrity().failures()),
        );
        let ft = &self.fulltext;
        metric(
            "tael_fulltext_watermark_index",
            "gauge",
            "Applied index up to which full-text search is complete.",
            &one(ft.watermark()),
        );
        metric(
            "tael_fulltext_docs_indexed_total",
            "counter",
            "Documents added to the full-text index.",
            &one(ft.docs_indexed.load(Ordering::Relaxed)),
        );
        metric(
            "tael_fulltext_rebuilds_total",
            "counter",
            "Full rebuilds of the full-text index (after snapshot installs).",
            &one(ft.rebuilds.load(Ordering::Relaxed)),
        );
        let ss = &self.sm.stats;
        metric(
            "tael_apply_entries_total",
            "counter",
            "Log entries applied.",
            &one(ss.entries_applied.load(Ordering::Relaxed)),
        );
        metric(
            "tael_snapshots_built_total",
            "counter",
            "Snapshots built.",
            &one(ss.snapshots_built.load(Ordering::Relaxed)),
        );
        metric(
            "tael_snapshots_installed_total",
            "counter",
            "Snapshots installed from the leader.",
            &one(ss.snapshots_installed.load(Ordering::Relaxed)),
        );
        metric(
            "tael_spool_applied_total",
            "counter",
            "Spooled records applied by this node's state machine (any origin).",
            &one(ss.spooled_applied.load(Ordering::Relaxed)),
        );
        metric(
        "tael_spool_duplicates_skipped_total",
        "counter",
        "Spooled records proposed again (after a crash or an unanswered forward) and skipped by this node's state machine.",
        &one(ss.spooled_duplicates_skipped.load(Ordering::Relaxed)),
    );
        let store = self.sm.store();
        if let Ok(Ok(rejected)) =
            tokio::task::spawn_blocking(move || store.rejected_entries()).await
        {
            metric(
                "tael_apply_rejected_entries_total",
                "counter",
                "Committed log entries the state machine could not apply (undecodable, unknown tag, invalid contents) and skipped; replicated state, equal on every node at the same applied index. See the log for each entry's index and reason.",
                &one(rejected.count),
            );
        }
        let store = self.sm.store();
        if let Ok(Ok(r)) = tokio::task::spawn_blocking(move || store.retention_state()).await {
            let d = r.deleted;
            let samples: Vec<(String, f64)> = [
                ("spans", d.spans),
                ("logs", d.logs),
                ("metric_points", d.metric_points),
                ("blobs", d.blobs),
            ]
            .iter()
            .map(|(signal, n)| (format!("{{signal=\"{signal}\"}}"), *n as f64))
            .collect();
            metric(
                "tael_retention_deleted_total",
                "counter",
                "Records retention cuts deleted, by signal (replicated state: equal on every node at the same applied index).",
                &samples,
            );
            metric(
                "tael_retention_last_cut_timestamp_seconds",
                "gauge",
                "The leader's clock stamped on the last retention cut applied here (0: none yet).",
                &[(String::new(), r.last_cut_unix_nanos as f64 / 1e9)],
            );
        }
        if let Some(q) = &self.query {
            metric(
                "tael_query_shed_total",
                "counter",
                "REST queries shed with 429 because every scan slot stayed busy (--query-max-concurrent-scans).",
                &one(q.shed_count()),
            );
        }
        let store = self.sm.store();
        if let Ok(Ok(by_origin)) =
            tokio::task::spawn_blocking(move || store.spooled_applied_by_origin()).await
        {
            let samples: Vec<(String, f64)> = by_origin
                .iter()
                .map(|(origin, f)| (format!("{{origin=\"{origin}\"}}"), f.applied_total as f64))
                .collect();
            metric(
            "tael_spool_applied_records",
            "gauge",
            "Spooled records ever applied, per origin node (replicated state: equal on every node at the same applied index).",
            &samples,
        );
        }
        if let Some(spool) = &self.spool {
            let sm = &spool.metrics;
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            metric(
            "tael_spool_pending_records",
            "gauge",
            "Records spooled by this process and not yet committed (records left by an earlier process are counted in tael_spool_pending_bytes only).",
            &one(load(&sm.pending_records)),
        );
            metric(
            "tael_spool_pending_bytes",
            "gauge",
            "Spooled bytes not yet forwarded, including the on-disk size of files left by an earlier process until they are read through.",
            &one(load(&sm.pending_bytes) + load(&sm.recovered_bytes)),
        );
            metric(
                "tael_spool_appended_total",
                "counter",
                "Exports spooled (and acknowledged).",
                &one(load(&sm.appended_total)),
            );
            metric(
                "tael_spool_forwarded_total",
                "counter",
                "Spooled records whose proposal committed.",
                &one(load(&sm.forwarded_total)),
            );
            metric(
                "tael_spool_skipped_forwarded_total",
                "counter",
                "Spooled records read back after a restart that were already forwarded.",
                &one(load(&sm.skipped_forwarded_total)),
            );
            metric(
                "tael_spool_refused_full_total",
                "counter",
                "Exports refused because the spool was full.",
                &one(load(&sm.refused_full_total)),
            );
            metric(
            "tael_spool_bypassed_total",
            "counter",
            "Exports committed directly because the spool could not take them (too large, or the spool failed).",
            &one(load(&sm.bypassed_total)),
        );
            metric(
            "tael_spool_forward_retries_total",
            "counter",
            "Forward attempts that did not commit (no leader, no quorum, timeout) and were retried.",
            &one(load(&sm.forward_retries_total)),
        );
            metric(
                "tael_spool_failed",
                "gauge",
                "1 once the spool failed in this process (exports then bypass it).",
                &one(sm.failed.load(Ordering::Relaxed) as u64),
            );
        }
        ls.fsync_latency.render(
            &mut out,
            "tael_wal_fsync_seconds",
            "Raft log fsync latency.",
        );
        ss.apply_latency.render(
            &mut out,
            "tael_apply_batch_seconds",
            "Time to apply one batch of log entries to the state machine.",
        );
        out
    }
}
