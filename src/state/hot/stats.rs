//! What the hot tier holds, per signal: for `GET /api/v1/storage`.
//!
//! Record counts are the storage engine's estimates (exact counts would
//! read every key); bytes are the on-disk size of the signal's keyspaces,
//! indexes included; oldest and newest come from the first and last keys
//! of the time-ordered keyspace.

use fjall::{Keyspace, Readable};
use serde::Serialize;

use super::{HotStore, StoreError, StoreResult};
use crate::retention::RetentionState;

/// One signal's share of the hot tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SignalStats {
    /// Estimated (the engine's count of keys, before compaction drops
    /// deleted ones).
    pub records_estimate: u64,
    pub disk_bytes: u64,
    pub oldest_unix_nanos: Option<u64>,
    pub newest_unix_nanos: Option<u64>,
}

/// The hot tier, per signal, and the retention state.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HotStats {
    pub spans: SignalStats,
    pub logs: SignalStats,
    pub metric_points: SignalStats,
    /// LLM texts and large log bodies.
    pub blobs: SignalStats,
    /// Everything the state machine holds on disk, the journal included.
    pub total_disk_bytes: u64,
    pub retention: RetentionState,
}

impl HotStore {
    pub fn stats(&self) -> StoreResult<HotStats> {
        let ks = &self.keyspaces;
        let view = self.read_view();
        Ok(HotStats {
            spans: self.signal_stats(
                &view,
                &ks.by_time,
                &[
                    &ks.spans,
                    &ks.by_time,
                    &ks.by_service,
                    &ks.by_error,
                    &ks.svc_traces,
                    &ks.trace_marks,
                    &ks.tags,
                ],
            )?,
            logs: self.signal_stats(
                &view,
                &ks.logs,
                &[
                    &ks.logs,
                    &ks.log_by_service,
                    &ks.log_by_severity,
                    &ks.log_by_trace,
                ],
            )?,
            metric_points: self.signal_stats(
                &view,
                &ks.metrics,
                &[&ks.metrics, &ks.metric_by_name],
            )?,
            blobs: SignalStats {
                records_estimate: ks.blobs.approximate_len() as u64,
                disk_bytes: ks.blobs.disk_space() + ks.blob_refs.disk_space(),
                oldest_unix_nanos: None,
                newest_unix_nanos: None,
            },
            total_disk_bytes: self.db.disk_space()?,
            retention: self.retention_state_in(&view)?,
        })
    }

    /// `primary`: the signal's time-keyed keyspace (one key per record);
    /// `all`: every keyspace the signal writes.
    fn signal_stats(
        &self,
        view: &fjall::Snapshot,
        primary: &Keyspace,
        all: &[&Keyspace],
    ) -> StoreResult<SignalStats> {
        let time_of = |g: Option<fjall::Guard>| -> StoreResult<Option<u64>> {
            let Some(g) = g else { return Ok(None) };
            let k = g.key()?;
            let t = k
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt("a time key shorter than 8 bytes".into()))?;
            Ok(Some(t))
        };
        Ok(SignalStats {
            records_estimate: primary.approximate_len() as u64,
            disk_bytes: all.iter().map(|k| k.disk_space()).sum(),
            oldest_unix_nanos: time_of(view.first_key_value(primary))?,
            newest_unix_nanos: time_of(view.last_key_value(primary))?,
        })
    }
}
