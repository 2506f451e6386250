//! Helpers shared by the hot store's unit tests.

use tael_consensus::{LeaderId, LogId};

use super::keys::META_TRACE_MARKS_COMPLETE;
use super::{HotStore, ServiceStats};
use crate::model::{
    AnyValue, LogRecord, MetricPoint, MetricType, Severity, SpanKind, SpanRecord, SpanStatus,
    TraceId,
};

/// A store in a fresh temporary directory (kept while the guard lives).
pub(super) fn open_store() -> (tempfile::TempDir, HotStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = HotStore::open(dir.path(), 1, 1 << 20).unwrap();
    (dir, store)
}

/// The log id of the entry at `index` in term 1.
pub(crate) fn log_id(index: u64) -> LogId {
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

/// A warning log record of service `checkout` at `t`, in trace 9.
pub(super) fn test_log(t: u64, body: &str) -> LogRecord {
    LogRecord {
        timestamp_unix_nanos: t,
        severity: Severity::Warn,
        body: Some(AnyValue::String(body.into())),
        service: "checkout".into(),
        trace_id: Some([9; 16]),
        ..Default::default()
    }
}

/// A gauge point `requests` of service `checkout` at `t` (its value is `t`).
pub(super) fn test_point(t: u64) -> MetricPoint {
    MetricPoint {
        timestamp_unix_nanos: t,
        start_unix_nanos: 0,
        service: "checkout".into(),
        name: "requests".into(),
        metric_type: MetricType::Gauge,
        value: t as f64,
        unit: String::new(),
        attributes: Vec::new(),
        temporality: None,
        is_monotonic: None,
        histogram: None,
        quantiles: Vec::new(),
    }
}

/// The keys `ks` holds now.
pub(super) fn keyspace_len(store: &HotStore, ks: &fjall::Keyspace) -> usize {
    use fjall::Readable;
    store.read_view().iter(ks).count()
}

/// Asserts that each keyspace of logs and metric points (the primaries and
/// their indexes) holds exactly `n` keys.
pub(super) fn assert_log_and_metric_keyspaces_hold(store: &HotStore, n: usize) {
    let ks = &store.keyspaces;
    for (name, space) in [
        ("logs", &ks.logs),
        ("log_by_service", &ks.log_by_service),
        ("log_by_severity", &ks.log_by_severity),
        ("log_by_trace", &ks.log_by_trace),
        ("metrics", &ks.metrics),
        ("metric_by_name", &ks.metric_by_name),
    ] {
        assert_eq!(
            keyspace_len(store, space),
            n,
            "{name} keeps the newer record"
        );
    }
}
