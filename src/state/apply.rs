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
//! Apply is total over entry contents: an entry that cannot be applied
//! (undecodable, an unknown or retired tag, contents the store cannot hold)
//! is rejected, recorded in the store's `rejected_entries` (in the same
//! batch, so equal on every replica), logged and counted, and the applied
//! position moves past it. Returning an error instead would stop openraft on
//! every replica, and a restart would apply the same entry again: one bad
//! entry (a forged forward, a record of a newer version during a rolling
//! upgrade) would stop the cluster for good. Only the store's own errors
//! (I/O, corrupt stored data) stop this replica.
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

use tael_consensus::{
    Applied, Entry, EntryPayload, LogId, Record, StoredMembership, BATCH_KEY_LEN,
};

use super::hot::{ApplyBatch, StoreResult};
use super::Shared;
use crate::live_tail::Tapped;
use crate::payload::{self, Contents};

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
    /// Entries that could not be applied (see [`apply`]).
    pub rejected: u64,
}

impl AppliedCounts {
    fn add(&mut self, other: AppliedCounts) {
        self.spans += other.spans;
        self.logs += other.logs;
        self.metric_points += other.metric_points;
        self.spooled_applied += other.spooled_applied;
        self.spooled_duplicates += other.spooled_duplicates;
        self.rejected += other.rejected;
    }
}

/// Applies one record, the entry at `log_index`, into `batch`: its counts,
/// or `Err(reason)` when the entry cannot be applied (undecodable, an
/// unknown or retired tag, contents the store cannot hold). A rejected
/// entry stages nothing: everything is decoded and checked before the first
/// write. The outer error is the store's (I/O), fatal to this replica.
pub fn apply(
    batch: &mut ApplyBatch<'_>,
    log_index: u64,
    record: &Record,
) -> StoreResult<Result<AppliedCounts, String>> {
    apply_tapped(batch, log_index, record, None)
}

/// [`apply`], copying the spans and logs it stages into `tap` (for the
/// live tail; a rejected entry copies nothing).
pub fn apply_tapped(
    batch: &mut ApplyBatch<'_>,
    log_index: u64,
    record: &Record,
    tap: Option<&mut Tapped>,
) -> StoreResult<Result<AppliedCounts, String>> {
    if record.tag != payload::TAG_SPOOLED {
        let contents = match checked_contents(log_index, record.tag, &record.payload) {
            Ok(c) => c,
            Err(why) => return Ok(Err(why)),
        };
        return stage(batch, log_index, record.batch_key, contents, tap).map(Ok);
    }
    let spooled = match payload::decode_spooled(&record.payload) {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let contents = match checked_contents(log_index, spooled.tag, &spooled.payload) {
        Ok(c) => c,
        Err(why) => return Ok(Err(why)),
    };
    let first_time = batch.claim_spooled(
        spooled.origin,
        spooled.generation,
        spooled.seq,
        spooled.min_live_generation,
    )?;
    if !first_time {
        return Ok(Ok(AppliedCounts {
            spooled_duplicates: 1,
            ..AppliedCounts::default()
        }));
    }
    let mut counts = stage(batch, log_index, record.batch_key, contents, tap)?;
    counts.spooled_applied = 1;
    Ok(Ok(counts))
}

/// The contents of a plain record of `tag`, or why it cannot be applied.
fn checked_contents(log_index: u64, tag: u8, bytes: &[u8]) -> Result<Contents, String> {
    let contents = payload::decode_contents(tag, bytes)?;
    if let Contents::Comment(c) = &contents {
        if !c.is_stamped() {
            return Err(format!(
                "comment at log index {log_index} was never stamped by a leader"
            ));
        }
    }
    if let Contents::Retention(cut) = &contents {
        if !cut.is_stamped() {
            return Err(format!(
                "retention cut at log index {log_index} was never stamped by a leader"
            ));
        }
    }
    Ok(contents)
}

/// Stages checked contents; only the store can fail here.
fn stage(
    batch: &mut ApplyBatch<'_>,
    log_index: u64,
    batch_key: [u8; BATCH_KEY_LEN],
    contents: Contents,
    tap: Option<&mut Tapped>,
) -> StoreResult<AppliedCounts> {
    let mut counts = AppliedCounts::default();
    match contents {
        // A comment has no key of its own (telemetry is keyed by its ids or
        // content, so a retry lands on itself); its batch key stands in.
        Contents::Comment(c) => {
            if batch.claim_batch_key(batch_key)? {
                batch.put_comment(log_index, &c);
            } else {
                tracing::info!(
                    log_index,
                    "comment proposed again under its batch key; skipped"
                );
            }
        }
        Contents::Keys(cmd) => {
            if let Err(why) = batch.apply_key_command(cmd)? {
                tracing::warn!(log_index, reason = %why, "key command took no effect");
            }
        }
        Contents::Spans(spans) => {
            counts.spans = spans.len() as u64;
            if let Some(t) = tap {
                t.spans.extend(spans.iter().cloned());
            }
            for span in spans {
                batch.put_span(span)?;
            }
        }
        Contents::Logs(logs) => {
            counts.logs = logs.len() as u64;
            for log in &logs {
                batch.put_log(log);
            }
            if let Some(t) = tap {
                t.logs.extend(logs);
            }
        }
        Contents::Metrics(points) => {
            counts.metric_points = points.len() as u64;
            for p in points {
                batch.put_metric(&p)?;
            }
        }
        // Digested before it is applied (`Shared::apply_entries`).
        Contents::Check => {}
        Contents::ColdMove(mv) => {
            let moved = batch.apply_cold_move(log_index, &mv)?;
            tracing::info!(
                log_index,
                signal = mv.signal.name(),
                to_unix_nanos = mv.to_unix_nanos,
                rows = moved.rows,
                bytes = moved.bytes,
                pending = moved.pending,
                "cold move applied"
            );
        }
        Contents::ColdUpload(up) => {
            let done = batch.apply_cold_upload(log_index, &up)?;
            tracing::info!(
                log_index,
                signal = up.signal.name(),
                object = %up.object,
                removed = done.removed,
                kept_hot = done.kept_hot,
                "cold upload applied"
            );
        }
        Contents::Retention(cut) => {
            let deleted = batch.apply_retention(log_index, &cut)?;
            tracing::info!(
                log_index,
                spans = deleted.spans,
                logs = deleted.logs,
                metric_points = deleted.metric_points,
                blobs = deleted.blobs,
                rollups = deleted.rollups,
                metric_rollups = deleted.metric_rollups,
                "retention cut applied"
            );
        }
    }
    Ok(counts)
}

fn node_ids(m: &StoredMembership) -> BTreeSet<u64> {
    m.membership().nodes().map(|(id, _)| *id).collect()
}

/// Whether `e` is a consistency check (`payload::TAG_CHECK`).
fn is_check(e: &Entry) -> bool {
    matches!(&e.payload, EntryPayload::Normal(r) if r.tag == payload::TAG_CHECK)
}

/// Whether `e` is a retention cut (`payload::TAG_RETENTION`) or a move to
/// the cold tier (`payload::TAG_COLD_MOVE`, `payload::TAG_COLD_UPLOAD`):
/// each reads the store as committed, so it is applied in a batch of its
/// own.
fn is_own_batch(e: &Entry) -> bool {
    matches!(&e.payload, EntryPayload::Normal(r)
        if r.tag == payload::TAG_RETENTION
            || r.tag == payload::TAG_COLD_MOVE
            || r.tag == payload::TAG_COLD_UPLOAD)
}

/// Whether a batch ends before `e`.
fn ends_batch_before(e: &Entry) -> bool {
    is_check(e) || is_own_batch(e)
}

impl Shared {
    /// Applies `entries` (consecutive, in log order). A consistency check
    /// starts a new batch: the entries before it are committed first and
    /// the store's state at that point is digested, the same cut on every
    /// replica however openraft grouped the entries into calls. A retention
    /// cut is a batch of its own, for the same reason: it reads what it
    /// deletes from the committed store.
    pub(super) fn apply_entries(&self, entries: &[Entry]) -> StoreResult<Vec<Applied>> {
        let mut responses = Vec::with_capacity(entries.len());
        let mut rest = entries;
        while !rest.is_empty() {
            if is_check(&rest[0]) {
                let store = self.store();
                let view = store.read_view();
                self.digests.start(rest[0].log_id.index, store, view);
            }
            let run_len = if is_own_batch(&rest[0]) {
                1
            } else {
                1 + rest[1..]
                    .iter()
                    .take_while(|e| !ends_batch_before(e))
                    .count()
            };
            let (run, after) = rest.split_at(run_len);
            responses.extend(self.apply_batch(run)?);
            rest = after;
        }
        Ok(responses)
    }

    /// Applies `entries` (consecutive, in log order) as one atomic batch.
    fn apply_batch(&self, entries: &[Entry]) -> StoreResult<Vec<Applied>> {
        let started = Instant::now();
        let store = self.store();
        let mut batch = store.begin();
        let mut last: Option<LogId> = None;
        let mut membership = None;
        // Nodes that left the membership in this batch.
        let mut retired = BTreeSet::new();
        let mut counts = AppliedCounts::default();
        let mut responses = Vec::with_capacity(entries.len());
        // Copies for the live tail, only while someone listens.
        let mut tap = self.tail.is_listened().then(Tapped::default);
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
                    match apply_tapped(&mut batch, e.log_id.index, record, tap.as_mut())? {
                        Ok(applied) => counts.add(applied),
                        Err(reason) => {
                            // The mutation restores the bug apply being total
                            // fixed: every replica stops on the same entry.
                            assert!(
                                !self.opts.poison_is_fatal,
                                "poison-is-fatal: cannot apply log entry {}: {reason}",
                                e.log_id.index
                            );
                            // Deterministic: every replica rejects the same
                            // entry for the same reason, so they stay equal.
                            tracing::error!(
                                log_index = e.log_id.index,
                                tag = record.tag,
                                %reason,
                                "log entry rejected: applied as a no-op"
                            );
                            batch.reject_entry(e.log_id.index, &reason)?;
                            counts.rejected += 1;
                        }
                    }
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
        let dropped_cold_files = batch.take_dropped_cold_files();
        batch.commit(last, membership.as_ref())?;
        // Only once the manifest without them is committed *and durable*:
        // a crash before leaves them named and readable, after it they are
        // orphans that the next start removes. A commit alone is not
        // durable (the log is; apply is replayed from it), and an unlink
        // becomes durable with the next fsync of its directory (the next
        // move's), so without this a power cut could leave a state that
        // names a file that is gone, and replaying the cut then fails.
        if !dropped_cold_files.is_empty() {
            store.persist()?;
        }
        for path in dropped_cold_files {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "removing a dropped cold file");
            }
        }
        if let Some(tapped) = tap {
            self.tail.publish(tapped);
        }
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
    use tael_consensus::{Entry, EntryPayload, LeaderId, LogId, Record, FIRST_APP_TAG};

    use crate::model::SpanRecord;
    use crate::payload::{self, SpooledRecord};
    use crate::state::{StateMachine, StateMachineOptions};

    fn log_id(index: u64) -> LogId {
        LogId::new(
            LeaderId {
                term: 1,
                node_id: 1,
            },
            index,
        )
    }

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Blank,
        }
    }

    fn normal(index: u64, record: Record) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(record),
        }
    }

    fn raw(tag: u8, payload: Vec<u8>) -> Record {
        Record {
            tag,
            batch_key: [7; 16],
            payload,
        }
    }

    fn span(trace: u8, service: &str) -> SpanRecord {
        SpanRecord {
            trace_id: [trace; 16],
            span_id: [1; 8],
            service: service.into(),
            operation: "op".into(),
            start_unix_nanos: 1_000,
            end_unix_nanos: 2_000,
            ..Default::default()
        }
    }

    /// Entries no replica can apply, each with a word its reason contains.
    fn poison() -> Vec<(Record, &'static str)> {
        let long_service = "s".repeat(payload::MAX_INDEX_NAME_BYTES + 1);
        let unstamped = crate::comments::Comment {
            id: String::new(),
            trace_id: [1; 16],
            span_id: None,
            author: "a".into(),
            body: "b".into(),
            created_at_unix_nanos: 0,
        };
        let spooled_garbage = SpooledRecord {
            origin: 1,
            generation: 1,
            seq: 1,
            min_live_generation: 1,
            tag: payload::TAG_SPANS,
            payload: vec![0xff; 5],
        };
        vec![
            (raw(payload::TAG_SPANS, vec![0xff; 9]), "undecodable spans"),
            (
                raw(FIRST_APP_TAG + 60, b"from the future".to_vec()),
                "unknown record tag",
            ),
            (
                raw(payload::RETIRED_TAGS[0], vec![1, 2, 3]),
                "no longer reads",
            ),
            (
                // The first span is fine: a rejected entry stores none of it.
                payload::spans_record(vec![span(9, "ok"), span(8, &long_service)]),
                "service name",
            ),
            (payload::comment_record(&unstamped, None), "never stamped"),
            (
                payload::spooled_record([1; 16], &spooled_garbage),
                "undecodable spans",
            ),
            (
                raw(payload::TAG_SPOOLED, vec![0xff; 3]),
                "undecodable spooled",
            ),
        ]
    }

    #[test]
    fn entries_that_cannot_apply_are_rejected_and_the_good_ones_around_them_apply() {
        let (_dir, sm) = open();
        let mut entries = vec![normal(1, payload::spans_record(vec![span(1, "a")]))];
        let mut index = 1;
        let poison = poison();
        for (record, _) in &poison {
            index += 1;
            entries.push(normal(index, record.clone()));
            index += 1;
            entries.push(normal(
                index,
                payload::spans_record(vec![span(index as u8 + 10, "a")]),
            ));
        }
        // Both in one batch and entry by entry: the same store.
        let (_dir2, sm2) = open();
        sm.shared.apply_entries(&entries).unwrap();
        for e in &entries {
            sm2.shared.apply_entries(std::slice::from_ref(e)).unwrap();
        }
        for sm in [&sm, &sm2] {
            let store = sm.shared.store();
            let (last, _) = store.applied_state().unwrap();
            assert_eq!(last.map(|l| l.index), Some(index));
            assert_eq!(store.trace(&[1; 16]).unwrap().len(), 1);
            for good in (3..=index).step_by(2) {
                let trace = [good as u8 + 10; 16];
                assert_eq!(store.trace(&trace).unwrap().len(), 1, "entry {good}");
            }
            assert!(
                store.trace(&[9; 16]).unwrap().is_empty(),
                "a rejected entry stages nothing"
            );
            assert!(store.trace_comments(&[1; 16], 10).unwrap().is_empty());
            let rejected = store.rejected_entries().unwrap();
            assert_eq!(rejected.count, poison.len() as u64);
            let indexes: Vec<u64> = rejected.recent.iter().map(|r| r.log_index).collect();
            let expected: Vec<u64> = (2..index).step_by(2).collect();
            assert_eq!(indexes, expected);
            for (r, (_, why)) in rejected.recent.iter().zip(&poison) {
                assert!(r.reason.contains(why), "{}: {:?}", r.log_index, r.reason);
            }
        }
        assert_eq!(
            sm.shared.store().rejected_entries().unwrap(),
            sm2.shared.store().rejected_entries().unwrap()
        );
    }

    /// The `poison-is-fatal` mutation brings back the stop on an entry that
    /// cannot apply (what the fault harness must catch).
    #[test]
    #[should_panic(expected = "poison-is-fatal")]
    fn the_poison_mutation_stops_apply_on_the_first_bad_entry() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StateMachineOptions {
            poison_is_fatal: true,
            ..StateMachineOptions::default()
        };
        let sm = StateMachine::open(dir.path(), opts).unwrap();
        let (record, _) = poison().remove(0);
        let _ = sm.shared.apply_entries(&[normal(1, record)]);
    }

    fn stamped_comment(body: &str, batch_key: [u8; 16]) -> Record {
        let c = crate::comments::Comment {
            id: "c1".into(),
            trace_id: [4; 16],
            span_id: None,
            author: "a".into(),
            body: body.into(),
            created_at_unix_nanos: 1,
        };
        Record {
            batch_key,
            ..payload::comment_record(&c, None)
        }
    }

    #[test]
    fn a_comment_proposed_again_under_its_batch_key_is_stored_once() {
        let (_dir, sm) = open();
        // In one batch, then across batches (read back from the store).
        sm.shared
            .apply_entries(&[
                normal(1, stamped_comment("first", [1; 16])),
                normal(2, stamped_comment("first", [1; 16])),
                normal(3, stamped_comment("second", [2; 16])),
            ])
            .unwrap();
        sm.shared
            .apply_entries(&[normal(4, stamped_comment("second", [2; 16]))])
            .unwrap();
        let bodies: Vec<String> = sm
            .shared
            .store()
            .trace_comments(&[4; 16], 10)
            .unwrap()
            .into_iter()
            .map(|c| c.body)
            .collect();
        assert_eq!(bodies, ["first", "second"]);
    }

    #[test]
    fn a_rejection_is_kept_across_a_restart_and_not_counted_twice() {
        let dir = tempfile::tempdir().unwrap();
        {
            let sm = StateMachine::open(dir.path(), StateMachineOptions::default()).unwrap();
            let bad = raw(FIRST_APP_TAG + 60, vec![]);
            sm.shared
                .apply_entries(&[normal(1, bad.clone()), normal(2, bad)])
                .unwrap();
        }
        let sm = StateMachine::open(dir.path(), StateMachineOptions::default()).unwrap();
        sm.shared.apply_entries(&[blank(3)]).unwrap();
        let rejected = sm.shared.store().rejected_entries().unwrap();
        assert_eq!(rejected.count, 2);
        assert_eq!(rejected.recent.len(), 2);
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

    fn digest_at(sm: &StateMachine, index: u64) -> String {
        for _ in 0..500 {
            match sm.shared.digests.latest() {
                Some(d) if d.index == index => return d.sha256,
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        panic!("no digest for the check at {index}");
    }

    /// A check digests the state as of the entry before it, however the
    /// entries were grouped into apply calls: the same cut on every replica.
    #[test]
    fn a_check_digests_the_state_before_it_whatever_the_batching() {
        let entries = vec![
            normal(1, payload::spans_record(vec![span(1, "a")])),
            normal(2, payload::spans_record(vec![span(2, "b")])),
            normal(3, payload::check_record()),
            normal(4, payload::spans_record(vec![span(4, "c")])),
        ];
        let (_d1, whole) = open();
        whole.shared.apply_entries(&entries).unwrap();
        let (_d2, split) = open();
        split.shared.apply_entries(&entries[..1]).unwrap();
        split.shared.apply_entries(&entries[1..]).unwrap();
        let (_d3, one_by_one) = open();
        for e in &entries {
            one_by_one
                .shared
                .apply_entries(std::slice::from_ref(e))
                .unwrap();
        }
        let digest = digest_at(&whole, 3);
        assert_eq!(digest_at(&split, 3), digest);
        assert_eq!(digest_at(&one_by_one, 3), digest);
        assert_eq!(
            whole.shared.store().applied_state().unwrap().0,
            Some(log_id(4))
        );

        // A later check sees entry 4; a replica that missed it differs.
        let (_d4, behind) = open();
        behind.shared.apply_entries(&entries[..3]).unwrap();
        // One digest at a time: a check arriving while one runs is skipped.
        assert_eq!(digest_at(&behind, 3), digest);
        let later = |i| normal(i, payload::check_record());
        whole.shared.apply_entries(&[later(5)]).unwrap();
        behind.shared.apply_entries(&[blank(4), later(5)]).unwrap();
        assert_ne!(digest_at(&whole, 5), digest);
        assert_ne!(digest_at(&whole, 5), digest_at(&behind, 5));
    }

    #[test]
    fn a_check_with_a_payload_is_rejected_and_a_spooled_check_too() {
        let (_dir, sm) = open();
        let mut bad = payload::check_record();
        bad.payload = vec![1];
        let spooled = SpooledRecord {
            origin: 1,
            generation: 1,
            seq: 1,
            min_live_generation: 1,
            tag: payload::TAG_CHECK,
            payload: vec![],
        };
        sm.shared
            .apply_entries(&[
                normal(1, bad),
                normal(2, payload::spooled_record([1; 16], &spooled)),
            ])
            .unwrap();
        assert_eq!(
            sm.shared
                .stats
                .entries_applied
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        let rejected = sm.shared.store().rejected_entries().unwrap();
        assert_eq!(rejected.count, 2, "{rejected:?}");
        assert!(sm.shared.digests.latest().is_none(), "nothing digested");
    }
}
