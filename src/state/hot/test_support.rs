//! Helpers shared by the hot store's unit tests.

use tael_consensus::{LeaderId, LogId};

use super::keys::META_TRACE_MARKS_COMPLETE;
use super::{HotStore, ServiceStats};
use crate::model::{SpanKind, SpanRecord, SpanStatus, TraceId};

/// A store in a fresh temporary directory (kept while the guard lives).
pub(super) fn open_store() -> (tempfile::TempDir, HotStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
    (dir, store)
}

/// The log id of the entry at `index` in term 1.
pub(super) fn log_id(index: u64) -> LogId {
    LogId::new(
        LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    )
}

pub(super) fn test_span(trace: u8, span: u8, start: u64) -> SpanRecord {
    SpanRecord {
        trace_id: [trace; 16],
        span_id: [span; 8],
        parent_span_id: None,
        service: "checkout".into(),
        operation: "pay".into(),
        start_unix_nanos: start,
        end_unix_nanos: start + 10,
        status: SpanStatus::Ok,
        kind: SpanKind::Server,
        ..Default::default()
    }
}

/// Applies `spans` as the entry at `index`, alone in its batch.
pub(super) fn apply_spans(store: &HotStore, index: u64, spans: Vec<SpanRecord>) {
    let mut b = store.begin();
    b.begin_entry(index);
    for s in spans {
        b.put_span(s).unwrap();
    }
    b.commit(Some(log_id(index)), None).unwrap();
}

/// Removes `trace`'s mark and the backfill flag, as a store written
/// before marks existed would have them.
pub(super) fn as_before_trace_marks(store: &HotStore, trace: TraceId) {
    let mut b = store.db.batch();
    b.remove(&store.keyspaces.trace_marks, trace.to_vec());
    b.remove(&store.keyspaces.meta, META_TRACE_MARKS_COMPLETE.to_vec());
    b.commit().unwrap();
}

/// The stats of the one service the store has.
pub(super) fn only_service_stats(store: &HotStore) -> ServiceStats {
    let all = store.services().unwrap();
    assert_eq!(all.len(), 1);
    all.into_iter().next().unwrap().1
}
