//! Conversions between openraft messages and their protobuf form.

use tonic::Status;

use crate::frame;
use crate::pb;
use crate::types::{Entry, LeaderId, LogId, TypeConfig, Vote};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};

pub fn leader_id_to_pb(l: &LeaderId) -> pb::LeaderId {
    pb::LeaderId {
        term: l.term,
        node_id: l.node_id,
    }
}

pub fn vote_to_pb(v: &Vote) -> pb::Vote {
    pb::Vote {
        leader_id: Some(leader_id_to_pb(&v.leader_id)),
        committed: v.committed,
    }
}

pub fn log_id_to_pb(l: &LogId) -> pb::LogId {
    pb::LogId {
        leader_id: Some(leader_id_to_pb(&l.leader_id)),
        index: l.index,
    }
}

fn leader_id_from_pb(l: Option<pb::LeaderId>, what: &str) -> Result<LeaderId, Status> {
    let l = l.ok_or_else(|| Status::invalid_argument(format!("{what}: missing leader id")))?;
    Ok(LeaderId {
        term: l.term,
        node_id: l.node_id,
    })
}

pub fn vote_from_pb(v: Option<pb::Vote>) -> Result<Vote, Status> {
    let v = v.ok_or_else(|| Status::invalid_argument("missing vote"))?;
    Ok(Vote {
        leader_id: leader_id_from_pb(v.leader_id, "vote")?,
        committed: v.committed,
    })
}

pub fn log_id_from_pb(l: Option<pb::LogId>) -> Result<Option<LogId>, Status> {
    match l {
        None => Ok(None),
        Some(l) => Ok(Some(LogId::new(
            leader_id_from_pb(l.leader_id, "log id")?,
            l.index,
        ))),
    }
}

pub fn vote_request_to_pb(cluster_id: String, r: &VoteRequest<TypeConfig>) -> pb::VoteRequest {
    pb::VoteRequest {
        cluster_id,
        vote: Some(vote_to_pb(&r.vote)),
        last_log_id: r.last_log_id.as_ref().map(log_id_to_pb),
        leadership_transfer: r.leadership_transfer,
    }
}

pub fn vote_request_from_pb(r: pb::VoteRequest) -> Result<VoteRequest<TypeConfig>, Status> {
    let mut req = VoteRequest::new(vote_from_pb(r.vote)?, log_id_from_pb(r.last_log_id)?);
    req.leadership_transfer = r.leadership_transfer;
    Ok(req)
}

pub fn vote_response_to_pb(r: &VoteResponse<TypeConfig>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: r.last_log_id.as_ref().map(log_id_to_pb),
    }
}

pub fn vote_response_from_pb(r: pb::VoteResponse) -> Result<VoteResponse<TypeConfig>, Status> {
    Ok(VoteResponse::new(
        vote_from_pb(r.vote)?,
        log_id_from_pb(r.last_log_id)?,
        r.vote_granted,
    ))
}

pub fn append_request_to_pb(
    cluster_id: String,
    r: &AppendEntriesRequest<TypeConfig>,
    integrity: &frame::RecordIntegrity,
) -> pb::AppendRequest {
    pb::AppendRequest {
        cluster_id,
        vote: Some(vote_to_pb(&r.vote)),
        prev_log_id: r.prev_log_id.as_ref().map(log_id_to_pb),
        leader_commit: r.leader_commit.as_ref().map(log_id_to_pb),
        entries: r
            .entries
            .iter()
            .map(|e| frame::encode_entry(e, integrity))
            .collect(),
    }
}

/// Decodes a peer's append, checking every record as this node's log would
/// (`integrity`): a record that fails is refused before it reaches the log.
pub fn append_request_from_pb(
    r: pb::AppendRequest,
    integrity: &frame::RecordIntegrity,
) -> Result<AppendEntriesRequest<TypeConfig>, Status> {
    let mut entries: Vec<Entry> = Vec::with_capacity(r.entries.len());
    for (i, bytes) in r.entries.iter().enumerate() {
        let (len, entry) = frame::decode_entry(bytes, integrity).map_err(|e| {
            Status::invalid_argument(format!("append entry #{i} failed its check: {e}"))
        })?;
        if len != bytes.len() {
            return Err(Status::invalid_argument(format!(
                "append entry #{i} has trailing bytes"
            )));
        }
        if let Some(prev) = entries.last() {
            if entry.log_id.index != prev.log_id.index + 1 {
                return Err(Status::invalid_argument(
                    "append entries are not consecutive",
                ));
            }
        }
        entries.push(entry);
    }
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(r.vote)?,
        prev_log_id: log_id_from_pb(r.prev_log_id)?,
        leader_commit: log_id_from_pb(r.leader_commit)?,
        entries,
    })
}

pub fn append_response_to_pb(r: &AppendEntriesResponse<TypeConfig>) -> pb::AppendResponse {
    use pb::append_response::Result as R;
    let result = match r {
        AppendEntriesResponse::Success => R::Success(pb::Empty {}),
        AppendEntriesResponse::PartialSuccess(l) => R::PartialSuccess(pb::PartialSuccess {
            last: l.as_ref().map(log_id_to_pb),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::LogId::default()),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_to_pb(v)),
    };
    pb::AppendResponse {
        result: Some(result),
    }
}

pub fn append_response_from_pb(
    r: pb::AppendResponse,
) -> Result<AppendEntriesResponse<TypeConfig>, Status> {
    use pb::append_response::Result as R;
    Ok(
        match r
            .result
            .ok_or_else(|| Status::internal("append response without a result"))?
        {
            R::Success(_) => AppendEntriesResponse::Success,
            R::PartialSuccess(p) => AppendEntriesResponse::PartialSuccess(log_id_from_pb(p.last)?),
            R::Conflict(_) => AppendEntriesResponse::Conflict,
            R::HigherVote(v) => AppendEntriesResponse::HigherVote(vote_from_pb(Some(v))?),
        },
    )
}
