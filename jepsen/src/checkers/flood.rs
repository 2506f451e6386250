//! The bulk writers' achieved rate (`workload::Clients::flood_client`):
//! load, not evidence, so this only reports it; a run where no bulk write
//! was acknowledged did not test what its profile is about. Also reports
//! how often the leaders were seen with a new snapshot and purge position
//! (from the leader claims), the other half of the load `purge-race` needs.

use std::collections::BTreeMap;

use serde_json::json;

use super::Check;
use crate::events::{Event, OBSERVER};
use crate::harness::workload::FLOOD_RATE;

pub fn check(history: &[Event]) -> Check {
    // Per client, its running totals in time order.
    let mut per_client: BTreeMap<u64, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for e in history
        .iter()
        .filter(|e| e.process == OBSERVER && e.f == FLOOD_RATE)
    {
        let (Some(c), Some(a), Some(f)) = (
            e.value["client"].as_u64(),
            e.value["acked"].as_u64(),
            e.value["failed"].as_u64(),
        ) else {
            continue;
        };
        per_client.entry(c).or_default().push((e.time_ns, a, f));
    }
    let acked: u64 = per_client
        .values()
        .filter_map(|v| v.last())
        .map(|l| l.1)
        .sum();
    let failed: u64 = per_client
        .values()
        .filter_map(|v| v.last())
        .map(|l| l.2)
        .sum();
    let first_ns = per_client
        .values()
        .filter_map(|v| v.first())
        .map(|f| f.0)
        .min();
    let last_ns = per_client
        .values()
        .filter_map(|v| v.last())
        .map(|l| l.0)
        .max();
    let span_s = match (first_ns, last_ns) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9 + 1.0,
        _ => 0.0,
    };
    // The best one-second step of any client, times the clients.
    let peak_per_s: u64 = per_client
        .values()
        .map(|v| v.windows(2).map(|w| w[1].1 - w[0].1).max().unwrap_or(0))
        .sum();
    let (snapshots, purged) = snapshots_seen(history);
    let mean_per_s = if span_s > 0.0 {
        acked as f64 / span_s
    } else {
        0.0
    };
    Check {
        name: "write-rate".into(),
        valid: (acked > 0).then_some(true),
        summary: format!(
            "bulk writes: {acked} acknowledged, {failed} failed in {span_s:.0}s: {mean_per_s:.0}/s mean, {peak_per_s}/s best second | leaders seen at {snapshots} snapshot positions, purged up to {purged}"
        ),
        details: json!({"acked": acked, "failed": failed, "seconds": span_s,
                        "mean_per_s": mean_per_s, "peak_per_s": peak_per_s,
                        "clients": per_client.len(), "leader_snapshot_positions": snapshots,
                        "max_purged_index": purged}),
    }
}

/// Distinct snapshot indexes leaders reported, and the highest purged index.
fn snapshots_seen(history: &[Event]) -> (usize, u64) {
    let claims = history
        .iter()
        .filter(|e| e.process == OBSERVER && e.f == crate::checkers::election::CLAIM_F);
    let mut positions = std::collections::BTreeSet::new();
    let mut purged = 0;
    for c in claims {
        if let Some(s) = c.value["snapshot_index"].as_u64().filter(|s| *s > 0) {
            positions.insert(s);
        }
        purged = purged.max(c.value["purged_index"].as_u64().unwrap_or(0));
    }
    (positions.len(), purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OpKind;

    fn rate(t_s: u64, client: u64, acked: u64) -> Event {
        Event {
            index: 0,
            time_ns: t_s * 1_000_000_000,
            process: OBSERVER,
            kind: OpKind::Info,
            f: FLOOD_RATE.into(),
            key: None,
            value: json!({"client": client, "acked": acked, "failed": 1}),
            node: None,
            error: None,
        }
    }

    #[test]
    fn rates_sum_over_clients() {
        let h = [
            rate(1, 0, 100),
            rate(1, 1, 50),
            rate(2, 0, 400),
            rate(2, 1, 60),
        ];
        let c = check(&h);
        assert_eq!(c.valid, Some(true));
        assert_eq!(c.details["acked"], 460);
        assert_eq!(c.details["peak_per_s"], 310);
        assert_eq!(c.details["failed"], 2);
        assert_eq!(check(&[rate(1, 0, 0), rate(2, 0, 0)]).valid, None);
        let claim = |snapshot: u64, purged: u64| Event {
            f: crate::checkers::election::CLAIM_F.into(),
            value: json!({"snapshot_index": snapshot, "purged_index": purged}),
            ..rate(3, 0, 0)
        };
        let h = [claim(0, 0), claim(64, 60), claim(64, 60), claim(128, 120)];
        assert_eq!(snapshots_seen(&h), (2, 120));
    }
}
