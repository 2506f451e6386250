//! From validated telemetry to a committed log entry.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::SpanRecord;
use crate::node::{ClusterError, Node};
use crate::payload;

/// Records accepted (committed) and refused, per signal and transport.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub spans_accepted_grpc: AtomicU64,
    pub spans_rejected_grpc: AtomicU64,
    pub spans_unavailable_grpc: AtomicU64,
    pub requests_grpc: AtomicU64,
}

/// Commits one export's spans as a single log entry.
pub async fn ingest_spans(node: &Node, spans: Vec<SpanRecord>) -> Result<u64, ClusterError> {
    debug_assert!(!spans.is_empty());
    let record = payload::spans_record(&spans);
    let n = spans.len() as u64;
    drop(spans);
    let m = &node.ingest;
    match node.propose(record).await {
        Ok(index) => {
            m.spans_accepted_grpc.fetch_add(n, Ordering::Relaxed);
            Ok(index)
        }
        Err(e) => {
            m.spans_unavailable_grpc.fetch_add(n, Ordering::Relaxed);
            Err(e)
        }
    }
}
