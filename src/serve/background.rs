//! Work a node does on its own while it serves: keeping the storage engine's
//! journal synced in the background, snapshotting when the log outgrows
//! the state, and (on the leader) checking that the replicas agree, moving
//! what aged past the hot window to the cold tier and cutting what aged
//! past the retention.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::cluster::{retention, Cluster};
use crate::state;
use crate::state::cold::objects::ColdObjects;

const STORAGE_MAINTENANCE_INTERVAL: Duration = Duration::from_millis(250);
/// fjall names its flush and compaction threads like this.
const STORAGE_THREAD_PREFIX: &str = "fjall:";
const STORAGE_THREAD_NICE: i32 = 10;
/// About every 5 s at the maintenance interval.
const RENICE_EVERY_TICKS: u64 = 20;

/// Keeps the state machine's journal mostly on disk and its small keyspaces
/// flushed. The Raft log is the durable copy of every write, so the state
/// machine never needs to fsync on the apply path; but fjall fsyncs its
/// journal under the journal lock whenever it flushes a memtable, and a
/// journal full of unsynced data then stalls every apply for hundreds of
/// milliseconds. Syncing it in the background, in small steps and outside
/// that lock, leaves those fsyncs little to do.
pub async fn storage_maintenance(sm: Arc<state::Shared>, mut shutdown: watch::Receiver<bool>) {
    for tick in 0u64.. {
        tokio::select! {
            _ = tokio::time::sleep(STORAGE_MAINTENANCE_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let store = sm.store();
        // Compaction must not take CPU from consensus and apply: on a busy
        // host a starved apply thread stalls acknowledgements for hundreds of
        // milliseconds. Renewed now and then, since a snapshot install starts
        // new storage threads; rescanning the thread list every tick is waste.
        if tick % RENICE_EVERY_TICKS == 0 {
            crate::sys::renice_threads(STORAGE_THREAD_PREFIX, STORAGE_THREAD_NICE);
        }
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.maintain()).await {
            tracing::warn!(error = %e, "storage maintenance");
        }
    }
}

/// How long a periodic consistency check waits for the members' digests.
const CHECK_WAIT: Duration = Duration::from_secs(120);

/// On the leader, every `interval`: a consistency check
/// (`cluster::consistency`); a mismatch is logged and counted there.
pub async fn consistency_checks(
    cluster: Arc<Cluster>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if !cluster.is_leader() {
            continue;
        }
        // Not while a member is down or runs a version without checks (a
        // rolling upgrade): `POST /api/v1/cluster/check` still can.
        if !crate::cluster::consistency::every_member_applies_checks(&cluster.status().await) {
            tracing::info!("periodic consistency check skipped: a member is unreachable or cannot apply checks");
            continue;
        }
        if let Err(e) = cluster.run_check(CHECK_WAIT).await {
            tracing::warn!(error = %e, "periodic consistency check could not run");
        }
    }
}

/// Cuts proposed back to back in one round while each leaves records below
/// the floors (each deletes at most `state::hot::MAX_RECORDS_PER_CUT`).
const MAX_CUTS_PER_ROUND: usize = 500;
/// Moves proposed back to back per signal in one round while each stops at
/// its limit (`state::cold::MAX_ROWS_PER_MOVE` rows).
const MAX_MOVES_PER_ROUND: usize = 100;

/// On the leader, every `interval`: moves of what aged past the hot window
/// to the cold tier (`crate::state::cold`), then a retention cut under
/// `policy` (`crate::retention`), each repeated while it left work.
pub async fn lifecycle(
    cluster: Arc<Cluster>,
    sm: Arc<state::Shared>,
    policy: crate::retention::RetentionPolicy,
    hot_window_secs: u64,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if !cluster.is_leader() {
            continue;
        }
        let status = cluster.status().await;
        if hot_window_secs > 0 {
            let holdouts = if sm.cold_objects().is_some() {
                retention::cold_upload_holdouts(&status)
            } else {
                retention::cold_move_holdouts(&status)
            };
            if holdouts.is_empty() {
                cold_moves(&cluster, &sm, hot_window_secs).await;
            } else {
                tracing::info!(
                    waiting_for = ?holdouts,
                    "cold moves skipped: these members are unreachable, or run a version that \
                     cannot apply moves or writes other cold files"
                );
            }
        }
        let holdouts = retention::retention_holdouts(&status);
        if holdouts.is_empty() {
            retention_cuts(&cluster, &sm, policy).await;
        } else {
            tracing::info!(
                waiting_for = ?holdouts,
                "retention skipped: these members are unreachable or cannot apply cuts"
            );
        }
    }
}

/// One round of moves: per signal, everything older than the hot window by
/// this leader's clock, one move after the other while each stops at its
/// limit.
async fn cold_moves(cluster: &Cluster, sm: &Arc<state::Shared>, hot_window_secs: u64) {
    use crate::state::cold::{ColdMove, Signal};
    let objects = sm.cold_objects();
    if let Some(objects) = &objects {
        remove_orphan_objects(sm, objects).await;
    }
    for signal in Signal::ALL {
        for _ in 0..MAX_MOVES_PER_ROUND {
            let mv = ColdMove::at(signal, crate::model::now_unix_nanos(), hot_window_secs);
            let store = sm.store();
            let to = mv.to_unix_nanos;
            match tokio::task::spawn_blocking(move || store.has_hot_records_before(signal, to))
                .await
            {
                Ok(Ok(true)) => {}
                // Nothing aged out here; the followers hold the same.
                Ok(Ok(false)) => break,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading the hot tier's oldest record");
                    return;
                }
                Err(_) => return,
            }
            let moved = match &objects {
                None => cluster
                    .move_to_cold(mv)
                    .await
                    .map(|_| true)
                    .map_err(|e| e.to_string()),
                Some(objects) => upload_move(cluster, sm, objects, mv).await,
            };
            match moved {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    // The records stay hot; the next round tries again.
                    tracing::warn!(error = %e, signal = signal.name(), "cold move could not run");
                    return;
                }
            }
            let store = sm.store();
            match tokio::task::spawn_blocking(move || store.cold_manifest()).await {
                Ok(Ok(m)) if m.pending.contains(&signal) => continue,
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading the cold manifest");
                    return;
                }
                Err(_) => return,
            }
        }
    }
}

/// A move to the shared cold store: the records `mv` takes are written to
/// a new object first, and only then is the move proposed, naming the
/// object and its records (apply never touches the network). A failure
/// anywhere leaves the records hot; an object whose move never committed
/// is an orphan [`remove_orphan_objects`] removes. Whether it moved any.
async fn upload_move(
    cluster: &Cluster,
    sm: &Arc<state::Shared>,
    objects: &Arc<ColdObjects>,
    mv: crate::state::cold::ColdMove,
) -> Result<bool, String> {
    let store = sm.store();
    let prepared = tokio::task::spawn_blocking(move || store.prepare_cold_upload(&mv))
        .await
        .map_err(|e| format!("preparing a cold upload: {e}"))?
        .map_err(|e| format!("preparing a cold upload: {e}"))?;
    let Some(prepared) = prepared else {
        return Ok(false);
    };
    let up = prepared.upload;
    objects
        .put(&up.object, prepared.file)
        .await
        .map_err(|e| e.to_string())?;
    let index = cluster
        .upload_to_cold(&up)
        .await
        .map_err(|e| format!("proposing the upload of {}: {e}", up.object))?;
    tracing::info!(
        log_index = index,
        object = %up.object,
        rows = up.rows,
        bytes = up.bytes,
        "cold object written and its move applied"
    );
    Ok(true)
}

/// On the leader: removes objects under the store's prefix that the
/// manifest does not name and that are older than the grace period
/// (`cold::objects::orphans_to_remove`): uploads whose move never
/// committed, objects of files a retention cut dropped.
async fn remove_orphan_objects(sm: &Arc<state::Shared>, objects: &Arc<ColdObjects>) {
    let listed = match objects.list().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "listing cold objects");
            return;
        }
    };
    let store = sm.store();
    let manifest = match tokio::task::spawn_blocking(move || store.cold_manifest()).await {
        Ok(Ok(m)) => m,
        _ => return,
    };
    let named = manifest
        .files
        .iter()
        .filter_map(|f| f.object.clone())
        .collect();
    let now_secs = crate::model::now_unix_nanos() / 1_000_000_000;
    for name in crate::state::cold::objects::orphans_to_remove(&listed, &named, now_secs) {
        match objects.delete(&name).await {
            Ok(()) => tracing::info!(object = %name, "removed a cold object no manifest names"),
            Err(e) => tracing::warn!(error = %e, "removing a cold object"),
        }
    }
}

/// One round of retention cuts: one, then more while records remain below
/// the floors.
async fn retention_cuts(
    cluster: &Cluster,
    sm: &Arc<state::Shared>,
    policy: crate::retention::RetentionPolicy,
) {
    for _ in 0..MAX_CUTS_PER_ROUND {
        if let Err(e) = cluster.cut_retention(policy).await {
            tracing::warn!(error = %e, "retention cut could not run");
            break;
        }
        let store = sm.store();
        match tokio::task::spawn_blocking(move || store.retention_state()).await {
            Ok(Ok(state)) if state.pending => continue,
            Ok(Ok(_)) => break,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the retention state");
                break;
            }
            Err(_) => break,
        }
    }
}

/// Below this much log, no size-triggered snapshot.
const SNAPSHOT_MIN_LOG_BYTES: u64 = 256 * 1024 * 1024;
const SNAPSHOT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Triggers a snapshot when the retained log outgrows the state it would
/// replace (and at least [`SNAPSHOT_MIN_LOG_BYTES`]). A snapshot copies the
/// whole state, so tying it to the bytes written since the last one keeps its
/// cost at about one copy per state-size of writes, however large the state
/// grows; a fixed entry count would copy a growing state ever more often.
pub async fn snapshot_by_size(
    cluster: Arc<Cluster>,
    sm: Arc<state::Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SNAPSHOT_CHECK_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let log_bytes = cluster.log().disk_bytes();
        if log_bytes < SNAPSHOT_MIN_LOG_BYTES {
            continue;
        }
        let store = sm.store();
        let state_bytes = match tokio::task::spawn_blocking(move || store.db.disk_space()).await {
            Ok(Ok(b)) => b,
            _ => continue,
        };
        if log_bytes > state_bytes {
            tracing::info!(
                log_bytes,
                state_bytes,
                "log outgrew the state: building a snapshot"
            );
            if cluster.trigger_snapshot().await.is_err() {
                return; // raft stopped
            }
        }
    }
}
