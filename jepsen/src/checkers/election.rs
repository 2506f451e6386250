//! Election safety under openraft's leader ids.
//!
//! tael-raft uses openraft's *advanced* leader id: a leader is identified by
//! `(term, node_id)`, and leader ids are totally ordered (by term, then node
//! id). Two nodes may both be elected in one term (the later vote, with the
//! greater node id, wins over the earlier one), so "one leader per term",
//! the classic Raft rule, does not hold and is not checked. What must hold:
//!
//! * **one leadership per leader id**: a leader id is never granted twice.
//!   A node that restarts must win a new election (tael-raft disables
//!   openraft's leader restore), and an election increments the term; a
//!   node claiming the same `(term, node)` in two incarnations (process
//!   starts) was elected twice under one id, e.g. because a vote it had
//!   granted or received was not durable.
//! * **no committed entry is overwritten**: a leader holds every entry
//!   committed under smaller leader ids (leader completeness). If some
//!   leader reported committed index `c`, a leader with a greater leader id
//!   that reports a last log index below `c` lacks committed entries and
//!   will overwrite them.
//!
//! The harness polls every node's `/api/v1/cluster` and records, for each
//! node that says it is the leader, a `leader-claim` event with `{"node",
//! "term"}` and, when known, `"incarnation"` (how many times the harness
//! had started that node), `"committed_index"` and `"last_log_index"`
//! (the leader's own, from one metrics snapshot). Claims without the
//! optional fields (older histories) are checked for what they carry.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::Check;
use crate::events::{Event, OBSERVER};

pub const CLAIM_F: &str = "leader-claim";

/// openraft's advanced leader id; the derived order is (term, node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaderId {
    pub term: u64,
    pub node: u64,
}

impl LeaderId {
    fn json(self) -> Value {
        json!({"term": self.term, "node": self.node})
    }
}

/// One leader claim as recorded by the observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    index: u64,
    leader: LeaderId,
    incarnation: Option<u64>,
    committed_index: Option<u64>,
    last_log_index: Option<u64>,
}

fn claims(events: &[Event]) -> Vec<Claim> {
    events
        .iter()
        .filter(|e| e.process == OBSERVER && e.f == CLAIM_F)
        .filter_map(|e| {
            let v = &e.value;
            Some(Claim {
                index: e.index,
                leader: LeaderId {
                    term: v["term"].as_u64()?,
                    node: v["node"].as_u64()?,
                },
                incarnation: v["incarnation"].as_u64(),
                committed_index: v["committed_index"].as_u64(),
                last_log_index: v["last_log_index"].as_u64(),
            })
        })
        .collect()
}

/// Leader ids claimed by more than one incarnation of their node.
fn reused_leader_ids(claims: &[Claim]) -> Vec<Value> {
    let mut incarnations: BTreeMap<LeaderId, BTreeMap<u64, u64>> = BTreeMap::new();
    for c in claims {
        if let Some(inc) = c.incarnation {
            // The first history index at which each incarnation claimed it.
            incarnations
                .entry(c.leader)
                .or_default()
                .entry(inc)
                .or_insert(c.index);
        }
    }
    incarnations
        .into_iter()
        .filter(|(_, by_inc)| by_inc.len() > 1)
        .map(|(leader, by_inc)| {
            json!({"leader_id": leader.json(), "incarnations": by_inc.keys().collect::<Vec<_>>(),
                   "first_claims": by_inc.values().collect::<Vec<_>>()})
        })
        .collect()
}

/// Leaders that lack entries committed under a smaller leader id.
fn lost_committed_entries(claims: &[Claim]) -> Vec<Value> {
    // Per leader id: the highest committed index it reported, and its
    // lowest last log index (with the claim that showed it).
    let mut committed: BTreeMap<LeaderId, (u64, u64)> = BTreeMap::new();
    let mut shortest_log: BTreeMap<LeaderId, (u64, u64)> = BTreeMap::new();
    for c in claims {
        if let Some(ci) = c.committed_index {
            let e = committed.entry(c.leader).or_insert((ci, c.index));
            if ci > e.0 {
                *e = (ci, c.index);
            }
        }
        if let Some(li) = c.last_log_index {
            let e = shortest_log.entry(c.leader).or_insert((li, c.index));
            if li < e.0 {
                *e = (li, c.index);
            }
        }
    }
    let leaders: BTreeSet<LeaderId> = committed
        .keys()
        .chain(shortest_log.keys())
        .copied()
        .collect();
    // Walk leader ids in order, carrying the highest committed index seen
    // under any smaller one.
    let mut earlier: Option<(u64, LeaderId, u64)> = None; // (index, leader, claim)
    let mut lost = Vec::new();
    for leader in leaders {
        if let (Some((committed_index, by, at)), Some(&(last, claim))) =
            (earlier, shortest_log.get(&leader))
        {
            if last < committed_index {
                lost.push(json!({
                    "leader_id": leader.json(), "last_log_index": last, "claim": claim,
                    "committed_index": committed_index, "committed_under": by.json(),
                    "committed_claim": at,
                }));
            }
        }
        if let Some(&(ci, at)) = committed.get(&leader) {
            if earlier.is_none_or(|(best, _, _)| ci > best) {
                earlier = Some((ci, leader, at));
            }
        }
    }
    lost
}

pub fn check(events: &[Event]) -> Check {
    let claims = claims(events);
    let reused = reused_leader_ids(&claims);
    let lost = lost_committed_entries(&claims);
    let leader_ids: BTreeSet<LeaderId> = claims.iter().map(|c| c.leader).collect();
    let terms: BTreeSet<u64> = leader_ids.iter().map(|l| l.term).collect();
    let valid = if !reused.is_empty() || !lost.is_empty() {
        Some(false)
    } else if claims.is_empty() {
        None
    } else {
        Some(true)
    };
    let mut by_term: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for l in &leader_ids {
        by_term.entry(l.term.to_string()).or_default().push(l.node);
    }
    Check {
        name: "election-safety".into(),
        valid,
        summary: format!(
            "claims {} leader ids {} terms {} | leader ids reused {} leaders missing committed entries {}",
            claims.len(),
            leader_ids.len(),
            terms.len(),
            reused.len(),
            lost.len()
        ),
        details: json!({"claims": claims.len(), "leader_ids": leader_ids.len(), "terms": terms.len(),
            "reused_leader_ids": super::first(&reused, 20),
            "missing_committed": super::first(&lost, 20),
            "leaders_by_term": by_term}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Recorder;
    use crate::history::OpKind;
    use std::time::Instant;

    /// (node, term, incarnation, committed_index, last_log_index)
    type Row = (u64, u64, u64, u64, u64);

    fn history(rows: &[Row]) -> Vec<Event> {
        let r = Recorder::new(Instant::now());
        for &(node, term, inc, committed, last) in rows {
            r.record(
                OBSERVER,
                OpKind::Info,
                CLAIM_F,
                None,
                json!({"node": node, "term": term, "incarnation": inc,
                       "committed_index": committed, "last_log_index": last}),
                Some(node),
                None,
            );
        }
        r.snapshot()
    }

    /// Claims as older histories have them: node and term only.
    fn bare(list: &[(u64, u64)]) -> Vec<Event> {
        let r = Recorder::new(Instant::now());
        for (node, term) in list {
            r.record(
                OBSERVER,
                OpKind::Info,
                CLAIM_F,
                None,
                json!({"node": node, "term": term}),
                Some(*node),
                None,
            );
        }
        r.snapshot()
    }

    #[test]
    fn leaders_in_increasing_terms_are_valid() {
        let c = check(&history(&[
            (1, 1, 1, 5, 5),
            (1, 1, 1, 9, 10),
            (2, 2, 1, 10, 12),
            (3, 5, 2, 12, 12),
        ]));
        assert_eq!(c.valid, Some(true), "{}", c.summary);
        assert_eq!(c.details["leader_ids"], 3);
    }

    /// Advanced leader ids: (3, 1) and (3, 2) are different leaders.
    #[test]
    fn two_nodes_leading_one_term_is_valid() {
        let c = check(&history(&[
            (1, 3, 1, 7, 8),
            (2, 3, 1, 8, 9),
            (1, 3, 1, 7, 8),
        ]));
        assert_eq!(c.valid, Some(true), "{}", c.summary);
        assert_eq!(c.details["leaders_by_term"]["3"], json!([1, 2]));
        // The same holds for claims without the optional fields.
        assert_eq!(check(&bare(&[(1, 3), (2, 3)])).valid, Some(true));
    }

    #[test]
    fn one_leader_id_in_two_incarnations_is_invalid() {
        let c = check(&history(&[
            (1, 4, 1, 7, 8),
            (2, 5, 1, 8, 8),
            (1, 4, 2, 7, 9),
        ]));
        assert_eq!(c.valid, Some(false));
        let reused = &c.details["reused_leader_ids"][0];
        assert_eq!(reused["leader_id"], json!({"term": 4, "node": 1}));
        assert_eq!(reused["incarnations"], json!([1, 2]));
        // The same incarnation claiming again is the same leadership.
        assert_eq!(
            check(&history(&[(1, 4, 2, 7, 8), (1, 4, 2, 9, 9)])).valid,
            Some(true)
        );
    }

    /// Node 1 leads (2, 1) and commits up to 20; node 2 is then elected
    /// as (2, 2) (same term, greater id) with a log ending at 15: entries
    /// 16..=20 were committed and will be overwritten.
    #[test]
    fn a_later_leader_missing_committed_entries_is_invalid() {
        let c = check(&history(&[
            (1, 2, 1, 20, 21),
            (2, 2, 1, 14, 15),
            (2, 2, 1, 22, 23),
        ]));
        assert_eq!(c.valid, Some(false), "{}", c.summary);
        let lost = &c.details["missing_committed"][0];
        assert_eq!(lost["leader_id"], json!({"term": 2, "node": 2}));
        assert_eq!(lost["last_log_index"], 15);
        assert_eq!(lost["committed_index"], 20);
        assert_eq!(lost["committed_under"], json!({"term": 2, "node": 1}));
    }

    /// Order is by leader id, not by time: an old leader polled late with a
    /// short log is not evidence of loss, and a later term that holds every
    /// committed entry is fine even if its own commit index lags.
    #[test]
    fn only_greater_leader_ids_must_hold_committed_entries() {
        let c = check(&history(&[
            (2, 5, 1, 30, 31),
            (1, 4, 1, 10, 12), // polled after (5, 2), smaller id
            (3, 6, 1, 25, 31), // commit index not yet advanced
        ]));
        assert_eq!(c.valid, Some(true), "{}", c.summary);
        // Without the later leader's committed entries: invalid.
        let c = check(&history(&[(2, 5, 1, 30, 31), (3, 6, 1, 25, 29)]));
        assert_eq!(c.valid, Some(false));
    }

    #[test]
    fn no_observations_is_unknown() {
        assert_eq!(check(&[]).valid, None);
    }
}
