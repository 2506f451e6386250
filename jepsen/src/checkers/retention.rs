//! Retention checker for the aged-span workload (`retention` profile).
//!
//! Aged spans are written already past the cluster's retention, so a
//! retention cut may delete them at any moment: losing them is legitimate,
//! and the set checkers never see them (they have their own operation
//! names). What must hold instead: after the final heal the harness waits
//! for a cut that covers every write (`final-retention-cut`), and then no
//! node may return an aged span. Everything written inside the retention
//! is the set and session checkers' business, unchanged: a cut must not
//! take any of it.

use serde_json::json;

use super::Check;
use crate::events::{ids, Event, Outcome, Paired};

/// The harness's record of the cut it waited for after the heal.
pub const FINAL_CUT_EVENT: &str = "final-retention-cut";

pub fn check(history: &[Event], ops: &[Paired], add_f: &str, read_f: &str) -> Check {
    let acked = ops
        .iter()
        .filter(|o| o.f == add_f && o.outcome == Outcome::Ok)
        .count();
    let cut = history.iter().rev().find(|e| e.f == FINAL_CUT_EVENT);
    let reads: Vec<&Paired> = ops
        .iter()
        .filter(|o| o.f == read_f && o.outcome == Outcome::Ok)
        .collect();
    let survivors: Vec<_> = reads
        .iter()
        .filter(|r| !ids(&r.output).is_empty())
        .map(|r| json!({"key": r.key, "node": r.node, "ids": r.output}))
        .collect();
    let details = json!({
        "acked_aged_adds": acked,
        "final_cut": cut.map(|e| &e.value),
        "final_reads": reads.len(),
        "survivors": survivors,
    });
    let (valid, summary) = match cut {
        None => (None, "no final retention cut recorded".to_string()),
        Some(e) if e.value["installed"] != true => (
            Some(false),
            format!(
                "no retention cut covered the writes after the heal: {}",
                e.value["error"]
            ),
        ),
        Some(_) if reads.is_empty() || acked == 0 => (
            None,
            format!(
                "{acked} aged adds acknowledged, {} final reads: no evidence",
                reads.len()
            ),
        ),
        Some(_) if !survivors.is_empty() => (
            Some(false),
            format!(
                "{} final reads returned aged spans past the cut",
                survivors.len()
            ),
        ),
        Some(_) => (
            Some(true),
            format!(
                "{acked} aged adds acknowledged; none survived the final cut on {} reads",
                reads.len()
            ),
        ),
    };
    Check {
        name: "retention".into(),
        valid,
        summary,
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{pair, OpKind, Recorder};

    fn history(survivor: bool, installed: bool) -> Vec<Event> {
        let rec = Recorder::new(std::time::Instant::now());
        rec.record(
            1,
            OpKind::Invoke,
            "aged-add",
            Some("aged-0"),
            json!([7]),
            Some(1),
            None,
        );
        rec.record(
            1,
            OpKind::Ok,
            "aged-add",
            Some("aged-0"),
            json!([7]),
            Some(1),
            None,
        );
        rec.nemesis(
            FINAL_CUT_EVENT,
            json!({"installed": installed, "error": "timed out"}),
        );
        let out = if survivor { json!([7]) } else { json!([]) };
        rec.record(
            901,
            OpKind::Invoke,
            "aged-read",
            Some("aged-0"),
            json!(null),
            Some(2),
            None,
        );
        rec.record(
            901,
            OpKind::Ok,
            "aged-read",
            Some("aged-0"),
            out,
            Some(2),
            None,
        );
        rec.snapshot()
    }

    fn verdict(h: &[Event]) -> Option<bool> {
        let ops = pair(h, |_| true).unwrap();
        check(h, &ops, "aged-add", "aged-read").valid
    }

    #[test]
    fn an_aged_span_read_after_the_final_cut_is_invalid() {
        assert_eq!(verdict(&history(false, true)), Some(true));
        assert_eq!(verdict(&history(true, true)), Some(false));
    }

    #[test]
    fn a_missing_final_cut_is_invalid() {
        assert_eq!(verdict(&history(false, false)), Some(false));
    }
}
