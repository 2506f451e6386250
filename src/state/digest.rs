//! Replicas prove they agree: a digest of the state machine at a log position.
//!
//! The leader now and then proposes a consistency check (`TAG_CHECK`). Every
//! replica applies the entries before it, commits them, and takes a read view
//! of its store at exactly that point, the same cut on every node; a
//! background thread then hashes every key and value of the replicated
//! keyspaces in order. The digest is served with the node's status, and
//! whoever compares them (`cluster::consistency`) names the nodes that differ.
//!
//! Excluded: `ft_pending`, the full-text indexer's local work queue (each
//! node drains it at its own pace). Everything else is written by apply (or
//! a snapshot install of the same data) alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fjall::Readable;
use sha2::{Digest, Sha256};

use super::hot::{HotStore, StoreResult, KEYSPACES};

const DIGEST_THREAD_NAME: &str = "state-digest";
const DIGEST_THREAD_NICE: i32 = 10;

/// Keyspaces that hold node-local progress rather than replicated state.
const LOCAL_KEYSPACES: [&str; 1] = ["ft_pending"];

/// The digest of a replica's state just before the check entry `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDigest {
    /// The log index of the check entry.
    pub index: u64,
    /// SHA-256 of every key and value of the replicated keyspaces, hex.
    pub sha256: String,
    /// Keys hashed.
    pub keys: u64,
}

/// The latest digest this node computed, and the one being computed.
#[derive(Default)]
pub struct Digests {
    latest: Mutex<Option<StateDigest>>,
    busy: Arc<AtomicBool>,
}

impl Digests {
    pub fn latest(&self) -> Option<StateDigest> {
        self.latest.lock().unwrap().clone()
    }

    /// Starts digesting `view` of `store` for the check at `index`, on its
    /// own thread so apply goes on. At most one runs at a time: a check
    /// that arrives while one is running is skipped here (this node then
    /// reports the older digest, which nobody compares with the new index).
    pub fn start(self: &Arc<Self>, index: u64, store: Arc<HotStore>, view: fjall::Snapshot) {
        if self.busy.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                index,
                "consistency check skipped: the previous digest is still running"
            );
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(DIGEST_THREAD_NAME.into())
            .spawn(move || {
                // A full read of the store: behind consensus and apply.
                crate::sys::renice_threads(DIGEST_THREAD_NAME, DIGEST_THREAD_NICE);
                let started = Instant::now();
                match digest(&store, &view, index) {
                    Ok(d) => {
                        tracing::info!(
                            index,
                            keys = d.keys,
                            took_ms = started.elapsed().as_millis() as u64,
                            sha256 = %d.sha256,
                            "state digest for the consistency check"
                        );
                        *me.latest.lock().unwrap() = Some(d);
                    }
                    Err(e) => tracing::error!(index, error = %e, "state digest failed"),
                }
                me.busy.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::error!(index, error = %e, "cannot start the state digest");
            self.busy.store(false, Ordering::SeqCst);
        }
    }
}

/// Hashes `view` of `store`: for every replicated keyspace in snapshot
/// order, its name, then each key and value with their lengths.
pub fn digest(store: &HotStore, view: &fjall::Snapshot, index: u64) -> StoreResult<StateDigest> {
    let mut h = Sha256::new();
    let mut keys = 0u64;
    let keyspaces = store.keyspaces.in_snapshot_order();
    for (name, ks) in KEYSPACES.iter().zip(keyspaces) {
        if LOCAL_KEYSPACES.contains(name) {
            continue;
        }
        h.update((name.len() as u32).to_le_bytes());
        h.update(name.as_bytes());
        for g in view.iter(ks) {
            let (k, v) = g.into_inner()?;
            h.update((k.len() as u32).to_le_bytes());
            h.update(&k);
            h.update((v.len() as u32).to_le_bytes());
            h.update(&v);
            keys += 1;
        }
    }
    Ok(StateDigest {
        index,
        sha256: tael_consensus::hex(&h.finalize()),
        keys,
    })
}
