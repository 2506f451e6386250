//! The hot store's keyspaces, each by name, and the engine options of each.
//!
//! What each keyspace holds and how it is keyed is told in the parent
//! module's documentation and in [`super::keys`].

use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions};

/// Memtable size of every keyspace. A full memtable is sealed, and the one
/// it replaces freed, inline in the applying thread; small memtables keep
/// that pause short.
pub(super) const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;
/// Values at least this large go to blob files in the keyspaces that
/// separate keys from values.
const SEPARATION_THRESHOLD_BYTES: u32 = 128;

/// Declares [`KEYSPACES`] and [`Keyspaces`] from one list, so a keyspace's
/// field, its name on disk and its position in snapshots cannot disagree:
/// the field's name is the keyspace's name, and the list's order is the
/// snapshot order.
macro_rules! keyspaces {
    ($count:literal; $($(#[$doc:meta])* $name:ident,)*) => {
        /// Every keyspace's name on disk, in a fixed order: snapshots refer
        /// to keyspaces by position. New keyspaces are appended, so older
        /// snapshot files keep their meaning.
        pub const KEYSPACES: [&str; $count] = [$(stringify!($name)),*];

        /// The open keyspaces of one store, one field per keyspace.
        pub struct Keyspaces {
            $($(#[$doc])* pub $name: Keyspace,)*
        }

        impl Keyspaces {
            /// Opens (or creates) every keyspace of `db`.
            pub(super) fn open(db: &Database) -> fjall::Result<Keyspaces> {
                Ok(Keyspaces {
                    $($name: db.keyspace(stringify!($name), || options(stringify!($name)))?,)*
                })
            }

            /// Every keyspace, in the order of [`KEYSPACES`].
            pub fn in_snapshot_order(&self) -> [&Keyspace; $count] {
                [$(&self.$name),*]
            }
        }
    };
}

keyspaces! { 23;
    /// trace id ++ span id → span.
    spans,
    /// start ++ trace id ++ span id → span digest (window analytics).
    by_time,
    /// hour ++ len16 ++ service ++ start ++ trace id ++ span id → empty.
    by_service,
    /// start ++ trace id ++ span id → empty, for spans with status error.
    by_error,
    /// service → ServiceStats.
    svc_stats,
    /// len16 ++ service ++ trace id → u32 LE: that trace's spans in the service.
    svc_traces,
    /// Fixed names (see `keys::META_*`) → JSON: applied position, membership.
    meta,
    /// time ++ content key → log record.
    logs,
    /// day ++ len16 ++ service ++ time ++ content key → empty.
    log_by_service,
    /// day ++ severity code ++ time ++ content key → empty.
    log_by_severity,
    /// trace id ++ time ++ content key → empty.
    log_by_trace,
    /// time ++ content key → metric point.
    metrics,
    /// day ++ len16 ++ name ++ time ++ content key → empty.
    metric_by_name,
    /// trace id ++ log index → Comment: a trace's comments in commit order.
    comments,
    /// sha256 → bytes: large log bodies, LLM prompts and completions,
    /// content-addressed.
    blobs,
    /// log index ++ seq → PendingDoc: text waiting for the full-text indexer
    /// (see crate::fulltext).
    ft_pending,
    /// Spooled-ingest marks (see `ApplyBatch::claim_spooled`): origin ++ 0 →
    /// SpoolFloor; origin ++ 1 ++ generation → highest seq applied.
    spool_applied,
    /// trace id → empty: the trace may have stored spans. A span of a trace
    /// without a mark is new, so applying it needs no read of the old
    /// version (see `ApplyBatch::put_span`).
    trace_marks,
    /// batch key → log index (u64 BE): the entry that applied a comment with
    /// that batch key; a comment proposed again under it is skipped.
    batch_keys,
    /// The tag index (see `tags.rs`): n ++ scope ++ tag name, v ++ scope ++
    /// len16 ++ tag name ++ type ++ value, o ++ len16 ++ service ++
    /// operation → empty.
    tags,
    /// sha256 ++ kind ++ referencing record's key → empty.
    blob_refs,
    /// minute ++ len16 ++ service ++ operation → Rollup (`rollups.rs`).
    rollups,
    /// resolution ++ day ++ len16 ++ name ++ series id ++ bucket →
    /// MetricRollup (`metric_rollups.rs`).
    metric_rollups,
}

impl Keyspaces {
    /// The keyspace at `position` in a snapshot file, if there is one.
    pub fn by_snapshot_position(&self, position: usize) -> Option<&Keyspace> {
        self.in_snapshot_order().get(position).copied()
    }

    /// Keyspaces that stay small whatever the workload: error spans, stats,
    /// per-trace counters, meta. They rarely fill a memtable, so they are
    /// flushed by [`super::HotStore::maintain`] instead.
    pub(super) fn small(&self) -> [&Keyspace; 5] {
        [
            &self.by_error,
            &self.svc_stats,
            &self.svc_traces,
            &self.meta,
            &self.batch_keys,
        ]
    }

    /// Keyspaces that are small or large depending on the workload: logs,
    /// metrics, and everything added after them.
    pub(super) fn workload_sized(&self) -> [&Keyspace; 15] {
        [
            &self.logs,
            &self.log_by_service,
            &self.log_by_severity,
            &self.log_by_trace,
            &self.metrics,
            &self.metric_by_name,
            &self.comments,
            &self.blobs,
            &self.ft_pending,
            &self.spool_applied,
            &self.trace_marks,
            &self.tags,
            &self.blob_refs,
            &self.rollups,
            &self.metric_rollups,
        ]
    }
}

/// The engine options of the keyspace called `name`.
fn options(name: &str) -> KeyspaceCreateOptions {
    let options = KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
    if name == "spans" || name == "blobs" {
        // Span bodies are keyed by random trace ids, so leveled compaction
        // would rewrite them again and again; stored in blob files, only
        // their small keys are compacted.
        options.with_kv_separation(Some(KvSeparationOptions {
            separation_threshold: SEPARATION_THRESHOLD_BYTES,
            ..Default::default()
        }))
    } else {
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshot files name keyspaces by position: this order is a file
    /// format, and only ever grows at its end.
    #[test]
    fn the_snapshot_order_of_keyspaces_is_fixed() {
        assert_eq!(
            KEYSPACES,
            [
                "spans",
                "by_time",
                "by_service",
                "by_error",
                "svc_stats",
                "svc_traces",
                "meta",
                "logs",
                "log_by_service",
                "log_by_severity",
                "log_by_trace",
                "metrics",
                "metric_by_name",
                "comments",
                "blobs",
                "ft_pending",
                "spool_applied",
                "trace_marks",
                "batch_keys",
                "tags",
                "blob_refs",
                "rollups",
                "metric_rollups",
            ]
        );
    }

    #[test]
    fn every_keyspace_is_either_small_or_workload_sized_or_spans() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let ks = Keyspaces::open(&db).unwrap();
        let mut classified: Vec<&str> = ks
            .small()
            .iter()
            .chain(ks.workload_sized().iter())
            .map(|k| position_name(&ks, k))
            .collect();
        classified.sort();
        let mut expected: Vec<&str> = KEYSPACES
            .iter()
            .copied()
            .filter(|n| !matches!(*n, "spans" | "by_time" | "by_service"))
            .collect();
        expected.sort();
        assert_eq!(classified, expected);
    }

    fn position_name(ks: &Keyspaces, k: &Keyspace) -> &'static str {
        let i = ks
            .in_snapshot_order()
            .iter()
            .position(|o| std::ptr::eq(*o, k))
            .expect("a field of ks");
        KEYSPACES[i]
    }
}
