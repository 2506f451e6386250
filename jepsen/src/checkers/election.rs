//! Election safety: at most one leader per term.
//!
//! The harness polls every node's `/api/v1/cluster` and records, for each
//! node that says it is the leader, a `leader-claim` event with
//! `{"node", "term"}`. Two different nodes claiming the same term is a
//! violation of Raft's election safety.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::Check;
use crate::events::{Event, OBSERVER};

pub const CLAIM_F: &str = "leader-claim";

pub fn check(events: &[Event]) -> Check {
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut claims = 0usize;
    for e in events
        .iter()
        .filter(|e| e.process == OBSERVER && e.f == CLAIM_F)
    {
        let (Some(node), Some(term)) = (e.value["node"].as_u64(), e.value["term"].as_u64()) else {
            continue;
        };
        claims += 1;
        leaders.entry(term).or_default().insert(node);
    }
    let conflicts: Vec<_> = leaders
        .iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(term, nodes)| json!({"term": term, "leaders": nodes}))
        .collect();
    let valid = if !conflicts.is_empty() {
        Some(false)
    } else if claims == 0 {
        None
    } else {
        Some(true)
    };
    Check {
        name: "election-safety".into(),
        valid,
        summary: format!(
            "claims {claims} terms {} | terms with two leaders {}",
            leaders.len(),
            conflicts.len()
        ),
        details: json!({"claims": claims, "terms": leaders.len(), "conflicts": conflicts,
            "leader_by_term": leaders.iter().map(|(t, n)| (t.to_string(), json!(n))).collect::<serde_json::Map<_, _>>()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Recorder;
    use crate::history::OpKind;
    use std::time::Instant;

    fn claims(list: &[(u64, u64)]) -> Vec<Event> {
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
    fn one_leader_per_term_is_valid() {
        let c = check(&claims(&[(1, 1), (1, 1), (2, 2), (3, 5)]));
        assert_eq!(c.valid, Some(true));
    }

    #[test]
    fn two_leaders_in_a_term_is_invalid() {
        let c = check(&claims(&[(1, 3), (2, 3)]));
        assert_eq!(c.valid, Some(false));
        assert_eq!(c.details["conflicts"][0]["term"], 3);
    }

    #[test]
    fn no_observations_is_unknown() {
        assert_eq!(check(&[]).valid, None);
    }
}
