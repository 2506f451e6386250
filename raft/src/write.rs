//! Proposing a record and waiting for the chosen acknowledgement point.

use std::time::Duration;

use openraft::errors::ClientWriteError;
use openraft::impls::ProgressResponder;
use openraft::raft::ClientWriteResult;
use tonic::Status;

use crate::types::{Raft, Record, TypeConfig};
use crate::LogStore;

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckLevel {
    /// Once committed: replicated to and fsynced on a quorum. A later
    /// linearizable read sees it (the read waits for apply up to its index).
    Committed,
    /// Once also applied to the leader's state machine.
    Applied,
    /// A deliberate bug for the fault harness (`fault-injection` builds
    /// only): acknowledged as soon as proposed, before any commit.
    #[cfg(feature = "fault-injection")]
    Proposed,
}

/// Proposes `record` on this node (which must lead, with `log` as its log)
/// and waits, at most `timeout`, for `ack`. Returns the entry's log index.
/// Errors are gRPC statuses a client can act on: UNAVAILABLE for anything
/// retryable (not the leader, no quorum, timed out with an unknown outcome).
pub async fn propose<SM>(
    raft: &Raft<SM>,
    log: &LogStore,
    record: Record,
    ack: AckLevel,
    timeout: Duration,
) -> Result<u64, Status>
where
    SM: openraft::storage::RaftStateMachine<TypeConfig>,
{
    wait_for_apply_headroom(raft, log, timeout).await?;
    let (responder, committed, applied) =
        ProgressResponder::<TypeConfig, ClientWriteResult<TypeConfig>>::new();
    raft.write(record)
        .responder(responder)
        .await
        .map_err(|e| Status::unavailable(format!("raft stopped: {e}")))?;
    #[cfg(feature = "fault-injection")]
    if ack == AckLevel::Proposed {
        tokio::spawn(async move {
            let _ = committed.await;
            let _ = applied.await;
        });
        return Ok(0);
    }
    let wait = async {
        if ack == AckLevel::Committed {
            if let Ok(log_id) = committed.await {
                // Keep listening until apply: openraft reports a dropped
                // receiver as a warning, once per write.
                tokio::spawn(async move {
                    let _ = applied.await;
                });
                return Ok(log_id.index);
            }
            // The commit notice is dropped when the write fails before
            // committing; the final result says why.
        }
        match applied.await {
            Ok(Ok(resp)) => Ok(resp.log_id.index),
            Ok(Err(e)) => Err(client_write_status(&e)),
            Err(_) => Err(Status::unavailable(
                "the write was abandoned (leader change); it may or may not apply",
            )),
        }
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| {
        Status::unavailable("timed out waiting for commit; the write may or may not apply")
    })?
}

/// Most log bytes the leader may hold beyond what it has applied before new
/// writes wait. Acknowledging at commit must not let apply fall behind
/// without bound (reads would wait ever longer, and catching up would starve
/// the node), but apply stalls for a second now and then when the storage
/// engine flushes; a bound of a few seconds of log at full rate rides those
/// out without holding acknowledgements.
pub const MAX_APPLY_LAG_BYTES: u64 = 16 * 1024 * 1024;
/// The same bound in entries, for exports so small that bytes say little.
pub const MAX_APPLY_LAG_ENTRIES: u64 = 1024;

/// Waits until the leader's apply backlog is within [`MAX_APPLY_LAG_BYTES`]
/// and [`MAX_APPLY_LAG_ENTRIES`]; an overload that outlasts `timeout` is
/// UNAVAILABLE (retry later).
async fn wait_for_apply_headroom<SM>(
    raft: &Raft<SM>,
    log: &LogStore,
    timeout: Duration,
) -> Result<(), Status>
where
    SM: openraft::storage::RaftStateMachine<TypeConfig>,
{
    use openraft::async_runtime::WatchReceiver;
    let within = |m: &openraft::RaftMetrics<TypeConfig>| {
        let last_log = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        last_log.saturating_sub(applied) <= MAX_APPLY_LAG_ENTRIES
            && log.bytes_after(applied) <= MAX_APPLY_LAG_BYTES
    };
    if within(&raft.metrics().borrow_watched()) {
        return Ok(());
    }
    raft.wait(Some(timeout))
        .metrics(within, "apply headroom")
        .await
        .map(|_| ())
        .map_err(|_| Status::unavailable("overloaded: the state machine is behind; retry later"))
}

pub fn client_write_status(e: &ClientWriteError<TypeConfig>) -> Status {
    match e {
        ClientWriteError::ForwardToLeader(f) => Status::unavailable(format!(
            "not the leader (leader: {})",
            f.leader_id.map_or("unknown".to_string(), |l| l.to_string())
        )),
        other => Status::unavailable(other.to_string()),
    }
}
