//! Live tail: spans and log records as this node applies them, for
//! `GET /api/v1/traces/live` and `/api/v1/logs/live` (`rest::live`).
//!
//! Apply (`state::apply`) copies a batch's spans and logs only while some
//! client listens, and publishes them after the batch commits, so a tail
//! shows applied data only, on followers as on the leader. Publishing never
//! waits: each signal is a broadcast ring of [`TAIL_BUFFER_RECORDS`]; a
//! client that falls further behind than that misses records, and its
//! stream ends with a `lagged` event (see `rest::live`) instead of slowing
//! ingest down.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::model::{LogRecord, SpanRecord};

/// Records a client may fall behind by before it is dropped.
pub const TAIL_BUFFER_RECORDS: usize = 4096;

pub struct LiveTail {
    spans: broadcast::Sender<Arc<SpanRecord>>,
    logs: broadcast::Sender<Arc<LogRecord>>,
}

/// What one apply batch copied for the tail.
#[derive(Default)]
pub struct Tapped {
    pub spans: Vec<SpanRecord>,
    pub logs: Vec<LogRecord>,
}

impl Default for LiveTail {
    fn default() -> Self {
        LiveTail::with_buffer(TAIL_BUFFER_RECORDS)
    }
}

impl LiveTail {
    pub fn with_buffer(records: usize) -> LiveTail {
        assert!(records > 0, "a tail buffer holds at least one record");
        LiveTail {
            spans: broadcast::channel(records).0,
            logs: broadcast::channel(records).0,
        }
    }

    /// Whether an apply should copy its records: someone listens.
    pub fn is_listened(&self) -> bool {
        self.spans.receiver_count() > 0 || self.logs.receiver_count() > 0
    }

    /// Hands a committed batch's records to the listeners; never blocks.
    pub fn publish(&self, tapped: Tapped) {
        if self.spans.receiver_count() > 0 {
            for s in tapped.spans {
                // An error means nobody listens any more: nothing to do.
                let _ = self.spans.send(Arc::new(s));
            }
        }
        if self.logs.receiver_count() > 0 {
            for l in tapped.logs {
                let _ = self.logs.send(Arc::new(l));
            }
        }
    }

    pub fn subscribe_spans(&self) -> broadcast::Receiver<Arc<SpanRecord>> {
        self.spans.subscribe()
    }

    pub fn subscribe_logs(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.logs.subscribe()
    }
}
