//! Staging spans in an [`ApplyBatch`]: the span, its index entries, and its
//! service's counters, replacing an older version of the same span.

use super::keys::{service_key, span_key, svc_trace_key, time_key, SPAN_KEY_LEN};
use super::retention::{blob_ref_key, llm_blobs, REF_KIND_SPAN};
use super::DocKind;
use super::{ApplyBatch, ServiceStats, StoreError, StoreResult};
use crate::analytics::SpanDigest;
use crate::codec::{decode, encode};
use crate::model::{SpanRecord, SpanStatus, TraceId};

impl ApplyBatch<'_> {
    pub fn put_span(&mut self, mut span: SpanRecord) -> StoreResult<()> {
        let store = self.store;
        let key = span_key(&span.trace_id, &span.span_id);
        if let Some(llm) = span.llm.as_mut() {
            let texts = llm.take_texts();
            if !texts.is_empty() {
                let joined: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
                let doc = joined.join("\n\n");
                let start = span.start_unix_nanos;
                self.queue_text(DocKind::Span, key.to_vec(), start, doc);
            }
            for (sha, text) in texts {
                // Content-addressed: writing the same text again is a no-op.
                self.batch
                    .insert(&store.keyspaces.blobs, sha.to_vec(), text.into_bytes());
            }
        }
        let old = match self.spans.get(&key).cloned() {
            Some(bytes) => Some(decode::<SpanRecord>(&bytes)?),
            None if !self.trace_may_be_stored(&span.trace_id)? => None,
            None => store
                .keyspaces
                .spans
                .get(key)?
                .map(|v| decode::<SpanRecord>(&v))
                .transpose()?,
        };
        if let Some(old) = &old {
            assert_eq!(
                span_key(&old.trace_id, &old.span_id),
                key,
                "the span stored under a key has that key's trace and span ids"
            );
        }
        if old.is_some() && store.duplicate_retries {
            return self.put_duplicate(key, span);
        }
        if let Some(old) = old {
            if old == span {
                return Ok(()); // the same span again: nothing changes
            }
            self.unindex(&key, &old)?;
        }
        self.index(&key, &span)?;
        self.stage_span_value(key, &span);
        Ok(())
    }

    /// Stages `span` under `key`, and keeps its bytes (shared with the write
    /// batch, not copied) for later entries of this batch.
    fn stage_span_value(&mut self, key: [u8; SPAN_KEY_LEN], span: &SpanRecord) {
        let value = fjall::Slice::from(encode(span));
        self.batch
            .insert(&self.store.keyspaces.spans, key.to_vec(), value.clone());
        self.spans.insert(key, value);
    }

    /// Whether `trace` may have spans stored before this batch. One lookup
    /// per trace and batch instead of one per span: a trace's spans mostly
    /// arrive together, and a new trace (the common case) has no old spans
    /// to replace. Marks a trace seen for the first time.
    fn trace_may_be_stored(&mut self, trace: &TraceId) -> StoreResult<bool> {
        if let Some(&stored) = self.trace_stored.get(trace) {
            return Ok(stored);
        }
        let store = self.store;
        let marks = &store.keyspaces.trace_marks;
        let stored = marks.get(trace)?.is_some();
        if !stored {
            self.batch.insert(marks, trace.to_vec(), b"".to_vec());
        }
        self.trace_stored.insert(*trace, stored);
        Ok(stored)
    }

    /// The `double-apply-retries` bug: the copy gets a key of its own (the
    /// span id with a salt), deterministic so every replica does the same.
    fn put_duplicate(&mut self, key: [u8; SPAN_KEY_LEN], span: SpanRecord) -> StoreResult<()> {
        debug_assert!(self.store.duplicate_retries);
        let store = self.store;
        let spans = &store.keyspaces.spans;
        for salt in 1u64.. {
            let mut dup = key;
            for (b, s) in dup[16..].iter_mut().zip(salt.to_be_bytes()) {
                *b ^= s;
            }
            if self.spans.contains_key(&dup) || spans.get(dup)?.is_some() {
                continue;
            }
            self.index(&dup, &span)?;
            self.stage_span_value(dup, &span);
            return Ok(());
        }
        unreachable!("some salt is free")
    }

    /// `service`'s stats as of this batch, loaded on first use.
    fn stats_mut(&mut self, service: &str) -> StoreResult<&mut ServiceStats> {
        if !self.stats.contains_key(service) {
            let cur = match self.store.keyspaces.svc_stats.get(service)? {
                Some(v) => decode(&v)?,
                None => ServiceStats::default(),
            };
            self.stats.insert(service.to_string(), cur);
        }
        Ok(self.stats.get_mut(service).unwrap())
    }

    /// The span count under `svc_traces` key `k` as of this batch.
    fn svc_trace_count_mut(&mut self, k: Vec<u8>) -> StoreResult<&mut u32> {
        if !self.svc_traces.contains_key(&k) {
            let cur = match self.store.keyspaces.svc_traces.get(&k)? {
                Some(v) => u32::from_le_bytes(
                    v[..]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("svc_traces".into()))?,
                ),
                None => 0,
            };
            self.svc_traces.insert(k.clone(), cur);
        }
        Ok(self.svc_traces.get_mut(&k).unwrap())
    }

    /// Stages the index entries of the span `s` stored under `key`, and
    /// counts it in its service.
    fn index(&mut self, key: &[u8; SPAN_KEY_LEN], s: &SpanRecord) -> StoreResult<()> {
        let store = self.store;
        let ks = &store.keyspaces;
        let service_key = service_key(&s.service, s.start_unix_nanos, key);
        // The time index carries a digest, so window analytics never read
        // span bodies.
        let digest = SpanDigest::of(s);
        self.batch.insert(
            &ks.by_time,
            time_key(s.start_unix_nanos, key).to_vec(),
            encode(&digest),
        );
        self.add_to_rollup(&digest)?;
        self.batch.insert(&ks.by_service, service_key, b"".to_vec());
        if s.status == SpanStatus::Error {
            self.batch.insert(
                &ks.by_error,
                time_key(s.start_unix_nanos, key).to_vec(),
                b"".to_vec(),
            );
        }
        let n = self.svc_trace_count_mut(svc_trace_key(&s.service, &s.trace_id))?;
        *n += 1;
        let new_trace = *n == 1;
        let stats = self.stats_mut(&s.service)?;
        stats.span_count += 1;
        stats.error_count += (s.status == SpanStatus::Error) as u64;
        stats.duration_sum_nanos = stats.duration_sum_nanos.saturating_add(s.duration_nanos());
        stats.trace_count += new_trace as u64;
        for sha in llm_blobs(s) {
            let r = blob_ref_key(&sha, REF_KIND_SPAN, key);
            self.batch.insert(&ks.blob_refs, r, b"".to_vec());
        }
        // Tag entries are not undone by `unindex`: the index tells what
        // was ever seen (see `tags.rs`).
        self.index_tags(s);
        Ok(())
    }

    /// Undoes [`Self::index`] for the span `s` stored under `key`, which
    /// is being replaced: its minute's rollup forgets it too.
    fn unindex(&mut self, key: &[u8; SPAN_KEY_LEN], s: &SpanRecord) -> StoreResult<()> {
        self.remove_from_rollup(&SpanDigest::of(s))?;
        self.unindex_aged(key, s)
    }

    /// Undoes [`Self::index`] but for the rollups, for the span `s` stored
    /// under `key`, which a retention cut deletes: the span goes, the
    /// minute it was counted in keeps it (rollups have a retention of their
    /// own).
    pub(super) fn unindex_aged(
        &mut self,
        key: &[u8; SPAN_KEY_LEN],
        s: &SpanRecord,
    ) -> StoreResult<()> {
        self.remove_span_time_entries(key, s);
        self.uncount_span(key, s)
    }

    /// Removes the span `s` stored under `key` from the time indexes
    /// (`by_time`, `by_service`, `by_error`): what a move to the cold tier
    /// and a retention cut both do. Its counters and rollup stay.
    pub(super) fn remove_span_time_entries(&mut self, key: &[u8; SPAN_KEY_LEN], s: &SpanRecord) {
        let ks = &self.store.keyspaces;
        self.batch
            .remove(&ks.by_time, time_key(s.start_unix_nanos, key).to_vec());
        self.batch.remove(
            &ks.by_service,
            service_key(&s.service, s.start_unix_nanos, key),
        );
        self.batch
            .remove(&ks.by_error, time_key(s.start_unix_nanos, key).to_vec());
    }

    /// Takes the span `s` stored under `key` out of its service's counters
    /// and releases its blob references: the span leaves the store (from
    /// either tier).
    pub(super) fn uncount_span(
        &mut self,
        key: &[u8; SPAN_KEY_LEN],
        s: &SpanRecord,
    ) -> StoreResult<()> {
        let ks = &self.store.keyspaces;
        for sha in llm_blobs(s) {
            self.batch
                .remove(&ks.blob_refs, blob_ref_key(&sha, REF_KIND_SPAN, key));
        }
        let n = self.svc_trace_count_mut(svc_trace_key(&s.service, &s.trace_id))?;
        assert!(
            *n > 0,
            "a stored span of service {} is counted in its trace's span count",
            s.service
        );
        *n -= 1;
        let trace_gone = *n == 0;
        let stats = self.stats_mut(&s.service)?;
        stats.span_count = stats.span_count.saturating_sub(1);
        stats.error_count = stats
            .error_count
            .saturating_sub((s.status == SpanStatus::Error) as u64);
        stats.duration_sum_nanos = stats.duration_sum_nanos.saturating_sub(s.duration_nanos());
        stats.trace_count = stats.trace_count.saturating_sub(trace_gone as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{apply_spans, only_service_stats, open_store, test_span};

    #[test]
    fn a_span_ingested_again_in_a_later_batch_replaces_itself() {
        let (_dir, store) = open_store();
        apply_spans(&store, 1, vec![test_span(1, 1, 100), test_span(1, 2, 100)]);
        // Same ids, new start time: the old time index entry must go.
        apply_spans(&store, 2, vec![test_span(1, 1, 500), test_span(2, 1, 100)]);
        let stats = only_service_stats(&store);
        assert_eq!((stats.span_count, stats.trace_count), (3, 2));
        let (digests, _) = store.span_digests(0, u64::MAX, None, 100).unwrap();
        assert_eq!(digests.len(), 3, "one time index entry per span");
        assert_eq!(
            store
                .get_span(&[1; 16], &[1; 8])
                .unwrap()
                .unwrap()
                .start_unix_nanos,
            500
        );
    }

    #[test]
    fn the_same_span_again_in_one_batch_is_stored_and_counted_once() {
        let (_dir, store) = open_store();
        let mut b = store.begin();
        b.begin_entry(1);
        b.put_span(test_span(3, 1, 100)).unwrap();
        b.begin_entry(2);
        b.put_span(test_span(3, 1, 100)).unwrap();
        b.commit(Some(super::super::test_support::log_id(2)), None)
            .unwrap();
        let stats = only_service_stats(&store);
        assert_eq!((stats.span_count, stats.trace_count), (1, 1));
        assert_eq!(store.trace(&[3; 16]).unwrap().len(), 1);
    }
}
