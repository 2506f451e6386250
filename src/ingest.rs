//! The write side the edges use: from validated telemetry (or a comment) to
//! a committed log entry. OTLP and REST hold an [`Ingest`], not the cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tael_consensus::Record;

use crate::cluster::{Cluster, ClusterError};
use crate::comments::Comment;
use crate::spool::{Spool, SpoolRefusal};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Grpc, Transport::Http];
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// Counters of one signal over one transport.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Records committed.
    pub accepted: AtomicU64,
    /// Records refused as invalid (whole request or partial success).
    pub rejected: AtomicU64,
    /// Records refused because the cluster could not commit them (retryable).
    pub unavailable: AtomicU64,
    pub requests: AtomicU64,
}

/// Why an OTLP request was shed before it was decoded (`otlp::limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedReason {
    /// The bytes of bodies being received were at their budget.
    BodyBudget,
    /// The body did not arrive within the read timeout.
    BodyTimeout,
    /// Every export slot stayed busy.
    ExportsBusy,
}

impl ShedReason {
    pub const ALL: [ShedReason; 3] = [
        ShedReason::BodyBudget,
        ShedReason::BodyTimeout,
        ShedReason::ExportsBusy,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::BodyBudget => "body_budget",
            ShedReason::BodyTimeout => "body_timeout",
            ShedReason::ExportsBusy => "exports_busy",
        }
    }
}

/// Records accepted (committed) and refused, per signal and transport;
/// requests shed, per transport and reason.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    counters: [[IngestCounters; 2]; 3],
    shed: [[AtomicU64; 3]; 2],
}

impl IngestMetrics {
    pub fn get(&self, signal: Signal, transport: Transport) -> &IngestCounters {
        &self.counters[signal as usize][transport as usize]
    }

    pub fn record_shed(&self, transport: Transport, reason: ShedReason) {
        self.shed[transport as usize][reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn shed(&self, transport: Transport, reason: ShedReason) -> u64 {
        self.shed[transport as usize][reason as usize].load(Ordering::Relaxed)
    }
}

/// Appends `record` to the spool off the async threads; a refused record
/// comes back for the direct path.
async fn spool_append(spool: Arc<Spool>, record: Record) -> Result<(), (SpoolRefusal, Record)> {
    tokio::task::spawn_blocking(move || match spool.append(&record) {
        Ok(()) => Ok(()),
        Err(why) => Err((why, record)),
    })
    .await
    .unwrap_or_else(|e| panic!("spool append task: {e}"))
}

pub struct Ingest {
    cluster: Arc<Cluster>,
    /// With `--ingest-ack spooled`: where exports wait to be forwarded.
    spool: Option<Arc<Spool>>,
    pub metrics: IngestMetrics,
}

impl Ingest {
    pub fn new(cluster: Arc<Cluster>, spool: Option<Arc<Spool>>) -> Ingest {
        Ingest {
            cluster,
            spool,
            metrics: IngestMetrics::default(),
        }
    }

    /// Commits one export's records (already encoded into `record`) as a
    /// single log entry; `n` is the number of telemetry records it carries.
    /// On a node with a spool, it is acknowledged once spooled instead (log
    /// index 0), unless the spool cannot take it (too large, or failed): then
    /// it is committed directly.
    pub async fn commit(
        &self,
        signal: Signal,
        transport: Transport,
        record: Record,
        n: u64,
    ) -> Result<u64, ClusterError> {
        assert!(n > 0, "an export commits at least one record");
        let c = self.metrics.get(signal, transport);
        let record = match &self.spool {
            Some(spool) => match spool_append(spool.clone(), record).await {
                Ok(()) => {
                    c.accepted.fetch_add(n, Ordering::Relaxed);
                    return Ok(0);
                }
                Err((SpoolRefusal::Full { pending_bytes }, _)) => {
                    c.unavailable.fetch_add(n, Ordering::Relaxed);
                    return Err(ClusterError::Unavailable(format!(
                        "the spool is full ({pending_bytes} bytes wait to be forwarded); retry later"
                    )));
                }
                Err((SpoolRefusal::TooLarge | SpoolRefusal::Failed(_), record)) => {
                    spool.metrics.bypassed_total.fetch_add(1, Ordering::Relaxed);
                    record
                }
            },
            None => record,
        };
        match self.cluster.propose(record).await {
            Ok(index) => {
                c.accepted.fetch_add(n, Ordering::Relaxed);
                Ok(index)
            }
            Err(e) => {
                c.unavailable.fetch_add(n, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Commits a validated comment; the leader stamps its id and time. The
    /// same `idempotency_key` on the same trace is stored once.
    pub async fn add_comment(
        &self,
        draft: &Comment,
        idempotency_key: Option<&str>,
    ) -> Result<Comment, ClusterError> {
        let (_, response) = self
            .cluster
            .propose_for_response(crate::payload::comment_record(draft, idempotency_key))
            .await?;
        let stamped: Comment = crate::codec::decode(&response)
            .map_err(|e| ClusterError::Internal(format!("the leader's stamped comment: {e}")))?;
        assert!(
            stamped.is_stamped() && stamped.trace_id == draft.trace_id,
            "the leader answered with a comment it did not stamp for this trace"
        );
        Ok(stamped)
    }
}
