//! The apply loop: committed log entries into the hot store.
//!
//! openraft hands the state machine a run of committed entries; they are
//! applied here as one [`ApplyBatch`], which lands in the store atomically
//! together with the new `last_applied` (and membership, when it changed).
//! A crash therefore leaves a replica at the end of some earlier batch, and
//! openraft re-applies from the entry after it.
//!
//! Each normal entry carries one [`Record`]; [`apply`] decodes it by its tag
//! (see [`crate::payload`] for the formats) and stages its contents. A
//! spooled record first claims its `(origin, generation, seq)`, so a
//! re-proposed export is applied at most once.
//!
//! Every replica must reach the same store from the same entries, so apply
//! is deterministic: no clock, no randomness, no local configuration other
//! than the `double-apply-retries` fault.
//!
//! Invariants, asserted in release builds too (a violation means this
//! replica is about to diverge from the others, which is worse than a
//! crash; the checks cost nothing next to the batch's write):
//! - a run of entries is consecutive, in log order;
//! - every entry of a batch lies above the applied position already stored,
//!   so nothing is applied twice;
//! - the applied position a batch commits is the index of its last entry;
//! - a span read back for replacement carries the ids of the key it was
//!   stored under, and per-service counters never drop below zero.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tael_consensus::{Applied, Entry, EntryPayload, LogId, Record, StoredMembership};

use super::hot::{ApplyBatch, StoreError, StoreResult};
use super::Shared;
use crate::codec::decode;
use crate::comments::Comment;
use crate::model::{LogRecord, MetricPoint, SpanRecord};
use crate::payload::{
    self, SpooledRecord, TAG_COMMENT, TAG_KEYS, TAG_LOGS, TAG_METRICS, TAG_SPANS,
};

/// An apply slower than this is logged with the storage engine's backlog.
const SLOW_APPLY: Duration = Duration::from_millis(200);

/// What one applied record contained.
#[derive(Debug, Default, Clone, Copy)]
pub struct AppliedCounts {
    pub spans: u64,
    pub logs: u64,
    pub metric_points: u64,
    /// Spooled records applied, and spooled records skipped as re-proposals.
    pub spooled_applied: u64,
    pub spooled_duplicates: u64,
}

impl AppliedCounts {
    fn add(&mut self, other: AppliedCounts) {
        self.spans += other.spans;
        self.logs += other.logs;
        self.metric_points += other.metric_points;
        self.spooled_applied += other.spooled_applied;
        self.spooled_duplicates += other.spooled_duplicates;
    }
}

/// Applies one record, the entry at `log_index`, into `batch`.
pub fn apply(
    batch: &mut ApplyBatch<'_>,
    log_index: u64,
    record: &Record,
) -> StoreResult<AppliedCounts> {
    if record.tag != payload::TAG_SPOOLED {
        return apply_tagged(batch, log_index, record.tag, &record.payload);
    }
    let spooled: SpooledRecord = decode(&record.payload)?;
    if !payload::spoolable(spooled.tag) {
        return Err(StoreError::Corrupt(format!(
            "spooled record at log index {log_index} wraps tag {}",
            spooled.tag
        )));
    }
    let first_time = batch.claim_spooled(
        spooled.origin,
        spooled.generation,
        spooled.seq,
        spooled.min_live_generation,
    )?;
    if !first_time {
        return Ok(AppliedCounts {
            spooled_duplicates: 1,
            ..AppliedCounts::default()
        });
    }
    let mut counts = apply_tagged(batch, log_index, spooled.tag, &spooled.payload)?;
    counts.spooled_applied = 1;
    Ok(counts)
}

/// Stages the contents of a plain (not spooled) record of `tag`.
fn apply_tagged(
    batch: &mut ApplyBatch<'_>,
    log_index: u64,
    tag: u8,
    payload: &[u8],
) -> StoreResult<AppliedCounts> {
    let mut counts = AppliedCounts::default();
    match tag {
        TAG_COMMENT => {
            let c: Comment = decode(payload)?;
            if !c.is_stamped() {
                return Err(StoreError::Corrupt(format!(
                    "comment at log index {log_index} was never stamped by a leader"
                )));
            }
            batch.put_comment(log_index, &c);
        }
        TAG_KEYS => {
            let cmd: crate::auth::KeyCommand = decode(payload)?;
            if let Err(why) = batch.apply_key_command(cmd)? {
                tracing::warn!(log_index, reason = %why, "key command took no effect");
            }
        }
        TAG_SPANS => {
            let spans: Vec<SpanRecord> =
                payload::decode_spans(payload).map_err(StoreError::Corrupt)?;
            counts.spans = spans.len() as u64;
            for span in spans {
                batch.put_span(span)?;
            }
        }
        TAG_LOGS => {
            let logs: Vec<LogRecord> =
                payload::decode_logs(payload).map_err(StoreError::Corrupt)?;
            counts.logs = logs.len() as u64;
            for log in logs {
                batch.put_log(&log);
            }
        }
        TAG_METRICS => {
            let points: Vec<MetricPoint> = decode(payload)?;
            counts.metric_points = points.len() as u64;
            for p in points {
                batch.put_metric(&p);
            }
        }
        other if payload::RETIRED_TAGS.contains(&other) => {
            return Err(StoreError::Corrupt(format!(
                "log entry at index {log_index}: {}",
                payload::retired_tag_message(other)
            )))
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "log entry with unknown record tag {other}; was it written by a newer tael-raft?"
            )))
        }
    }
    Ok(counts)
}

fn node_ids(m: &StoredMembership) -> BTreeSet<u64> {
    m.membership().nodes().map(|(id, _)| *id).collect()
}

impl Shared {
    /// Applies `entries` (consecutive, in log order) as one atomic batch.
    pub(super) fn apply_entries(&self, entries: &[Entry]) -> StoreResult<Vec<Applied>> {
        let started = Instant::now();
        let store = self.store();
        let mut batch = store.begin();
        let mut last: Option<LogId> = None;
        let mut membership = None;
        // Nodes that left the membership in this batch.
        let mut retired = BTreeSet::new();
        let mut counts = AppliedCounts::default();
        let mut responses = Vec::with_capacity(entries.len());
        for e in entries {
            if let Some(l) = last {
                assert_eq!(
                    l.index + 1,
                    e.log_id.index,
                    "committed entries arrive consecutive, in log order"
                );
            }
            batch.begin_entry(e.log_id.index);
            match &e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(record) => {
                    counts.add(apply(&mut batch, e.log_id.index, record)?);
                }
                EntryPayload::Membership(m) => {
                    let before: BTreeSet<u64> = match &membership {
                        Some(prev) => node_ids(prev),
                        None => node_ids(&store.applied_state()?.1),
                    };
                    let now = StoredMembership::new(Some(e.log_id), m.clone());
                    retired.extend(before.difference(&node_ids(&now)));
                    membership = Some(now);
                }
            }
            last = Some(e.log_id);
            responses.push(Applied::default());
        }
        batch.retire_nodes(&retired)?;
        let staged = started.elapsed();
        let keys_changed = batch.changes_keys();
        batch.commit(last, membership.as_ref())?;
        if keys_changed {
            self.keys_version.fetch_add(1, Ordering::SeqCst);
        }
        let took = started.elapsed();
        if took > SLOW_APPLY {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                staging_ms = staged.as_millis() as u64,
                entries = entries.len(),
                spans = counts.spans,
                logs = counts.logs,
                metric_points = counts.metric_points,
                storage = %store.backlog(),
                "slow apply"
            );
        }
        self.count_applied(entries.len(), &counts, started.elapsed());
        Ok(responses)
    }

    fn count_applied(&self, entries: usize, counts: &AppliedCounts, took: Duration) {
        let s = &self.stats;
        s.entries_applied
            .fetch_add(entries as u64, Ordering::Relaxed);
        s.spans_applied.fetch_add(counts.spans, Ordering::Relaxed);
        s.logs_applied.fetch_add(counts.logs, Ordering::Relaxed);
        s.metric_points_applied
            .fetch_add(counts.metric_points, Ordering::Relaxed);
        s.spooled_applied
            .fetch_add(counts.spooled_applied, Ordering::Relaxed);
        s.spooled_duplicates_skipped
            .fetch_add(counts.spooled_duplicates, Ordering::Relaxed);
        s.apply_batches.fetch_add(1, Ordering::Relaxed);
        s.apply_micros_total
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        s.apply_latency.record(took);
    }
}

#[cfg(test)]
mod tests {
    use tael_consensus::{Entry, EntryPayload, LeaderId, LogId};

    use crate::state::{StateMachine, StateMachineOptions};

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 1,
                    node_id: 1,
                },
                index,
            ),
            payload: EntryPayload::Blank,
        }
    }

    fn open() -> (tempfile::TempDir, StateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path(), StateMachineOptions::default()).unwrap();
        (dir, sm)
    }

    #[test]
    fn a_run_of_entries_moves_the_applied_position_to_its_last() {
        let (_dir, sm) = open();
        sm.shared.apply_entries(&[blank(1), blank(2)]).unwrap();
        sm.shared.apply_entries(&[blank(3)]).unwrap();
        let (last, _) = sm.shared.store().applied_state().unwrap();
        assert_eq!(last.map(|l| l.index), Some(3));
    }

    #[test]
    #[should_panic(expected = "consecutive, in log order")]
    fn a_gap_in_the_entries_panics() {
        let (_dir, sm) = open();
        let _ = sm.shared.apply_entries(&[blank(1), blank(3)]);
    }

    #[test]
    #[should_panic(expected = "applied again")]
    fn entries_applied_twice_panic() {
        let (_dir, sm) = open();
        sm.shared.apply_entries(&[blank(1), blank(2)]).unwrap();
        let _ = sm.shared.apply_entries(&[blank(2), blank(3)]);
    }
}
