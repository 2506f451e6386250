//! The query service: the one road from every query API to storage.
//!
//! An API (REST today; Tempo, Jaeger, Prometheus and Loki later) parses its
//! request into a domain query, then asks [`QueryService::read`] with a
//! consistency level and a closure over a [`View`]. The service runs the read
//! barrier (`cluster::Cluster::read_barrier`), waits for the full-text index
//! when the read needs it, and runs the closure on a blocking thread. The
//! closure gets domain results (spans, log records, metric points, digests),
//! never storage types; the answer carries the [`ReadBarrier`] it reflects.
//!
//! [`View`] is the only code that reads the storage tiers, so it is where a
//! second tier will be merged in.

mod view;

use std::sync::Arc;

use crate::cluster::{Cluster, ClusterError, Consistency, ReadBarrier, READ_TIMEOUT};
use crate::fulltext::FullText;
use crate::slots::Slots;
use crate::state;

pub use crate::state::hot::{
    AttributeFilter, Found, LogQuery, LogWalk, MetricQuery, Order, ServiceStats, SpanQuery,
    SpanScan, SpanWalk, StoreError, StoreResult, TagScope, TagType,
};
pub use view::View;

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The read barrier failed (no leader, no quorum, timed out).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The full-text index did not catch up with the read barrier in time.
    #[error("{0}")]
    TextIndexBehind(String),
    /// Local storage failed.
    #[error("{0}")]
    Storage(#[from] StoreError),
    /// Every scan slot stayed busy for [`SCAN_ADMISSION_WAIT`]: retry later.
    #[error("{0}")]
    Overloaded(String),
}

/// How long a query waits for a scan slot before it is shed.
pub const SCAN_ADMISSION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A query's answer and the state it reflects.
pub struct Read<T> {
    pub barrier: ReadBarrier,
    pub value: T,
}

pub struct QueryService {
    cluster: Arc<Cluster>,
    sm: Arc<state::Shared>,
    fulltext: Arc<FullText>,
    /// Scans running at once. They share the blocking pool with the state
    /// machine's apply and the log's reads: a burst of scans over millions
    /// of rows must not take every core from them.
    scans: Slots,
    /// Queries shed because no scan slot freed up in time.
    shed: std::sync::atomic::AtomicU64,
}

/// Whether a read searches the full-text index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Text {
    NotUsed,
    Used,
}

impl QueryService {
    pub fn new(
        cluster: Arc<Cluster>,
        sm: Arc<state::Shared>,
        fulltext: Arc<FullText>,
        max_concurrent_scans: usize,
    ) -> Self {
        QueryService {
            cluster,
            sm,
            fulltext,
            scans: Slots::new(max_concurrent_scans, SCAN_ADMISSION_WAIT),
            shed: Default::default(),
        }
    }

    /// Queries shed so far for lack of a scan slot.
    pub fn shed_count(&self) -> u64 {
        self.shed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A scan slot, waited for at most [`SCAN_ADMISSION_WAIT`].
    async fn admit_scan(&self) -> Result<tokio::sync::OwnedSemaphorePermit, QueryError> {
        self.scans.acquire().await.ok_or_else(|| {
            self.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            QueryError::Overloaded(format!(
                "overloaded: {} queries are already scanning; retry shortly",
                self.scans.max()
            ))
        })
    }

    /// Passes the read barrier for `consistency`, then runs `f` over the data
    /// set off the async workers. With [`Text::Used`], at `linearizable` or
    /// `lease`, it first waits until the full-text index covers what the
    /// barrier promised.
    pub async fn read<T: Send + 'static>(
        &self,
        consistency: Consistency,
        text: Text,
        f: impl FnOnce(&View) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Read<T>, QueryError> {
        let barrier = self.cluster.read_barrier(consistency).await?;
        if text == Text::Used && consistency != Consistency::Local {
            self.fulltext
                .wait_indexed(barrier.applied_index, READ_TIMEOUT)
                .await
                .map_err(QueryError::TextIndexBehind)?;
        }
        let slot = self.admit_scan().await?;
        let view = View::new(self.sm.store(), self.fulltext.clone());
        let value = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            f(&view)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(format!("query task: {e}"))))??;
        Ok(Read { barrier, value })
    }
}
