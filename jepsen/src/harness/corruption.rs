//! Judging a node that was restarted after damage to its log.
//!
//! Two misclassifications are failures, and so is a crash without the
//! refusal message:
//! - damage before the durable mark, and the node starts anyway with a log
//!   that ends before the last entry it had proven durable: it silently
//!   shortened its log and may vote or serve without entries it
//!   acknowledged (`shortened`);
//! - only unsynced bytes cut (a torn tail), and the node refuses to start:
//!   a power cut would then take a healthy node out for good
//!   (`refused-torn-tail`).
//!
//! "Proven durable" is what the log's own batch headers proved before the
//! damage (`log_store::inspect`, read by the harness while the node was
//! down), and "ends" is the last index the node reports when it opens its
//! log (the `raft log opened: last index N` line), read before it can
//! catch up from the leader.

use serde_json::{json, Value};

use super::wal_damage::Expect;
use crate::checkers::Check;

/// The line a node prints when it opened its log.
const OPENED: &str = "raft log opened: last index ";

/// How the node came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Came {
    /// Exited with the "refusing to start" guidance.
    Refused,
    /// Still running after the wait; the last index its log opened with
    /// (`None` inside: an empty log), or `None` if it printed no such line.
    Running(Option<Option<u64>>),
    /// Exited some other way, with the last index its log opened with
    /// if it got that far (as for `Running`).
    ExitedWithoutRefusal(Option<Option<u64>>),
}

impl Came {
    pub fn outcome(self) -> &'static str {
        match self {
            Came::Running(_) => "running",
            Came::Refused => "refused",
            Came::ExitedWithoutRefusal(_) => "exited-without-refusal",
        }
    }

    /// The last index the log opened with: `None` when no line said.
    pub fn opened(self) -> Option<Option<u64>> {
        match self {
            Came::Running(o) | Came::ExitedWithoutRefusal(o) => o,
            Came::Refused => None,
        }
    }
}

/// The verdict on one corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Shortened,
    RefusedTornTail,
    CrashedWithoutRefusal,
    /// Running, but the harness could not read where its log ended.
    Unverified,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Shortened => "shortened",
            Verdict::RefusedTornTail => "refused-torn-tail",
            Verdict::CrashedWithoutRefusal => "crashed-without-refusal",
            Verdict::Unverified => "unverified",
        }
    }

    const ALL: [Verdict; 5] = [
        Verdict::Ok,
        Verdict::Shortened,
        Verdict::RefusedTornTail,
        Verdict::CrashedWithoutRefusal,
        Verdict::Unverified,
    ];

    fn is_failure(self) -> bool {
        matches!(
            self,
            Verdict::Shortened | Verdict::RefusedTornTail | Verdict::CrashedWithoutRefusal
        )
    }
}

/// The last index in the newest `raft log opened` line of `log_text`:
/// `Some(None)` for an empty log, `None` when there is no such line.
pub fn opened_last_index(log_text: &str) -> Option<Option<u64>> {
    let at = log_text.rfind(OPENED)? + OPENED.len();
    let word: String = log_text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    match word.as_str() {
        "none" => Some(None),
        w => w.parse().ok().map(Some),
    }
}

/// `expect` is `None` for damage placed without looking at the log (the
/// `corrupt-any` modes): then only a crash without refusal is judged.
pub fn judge(expect: Option<Expect>, durable_last_index: Option<u64>, came: Came) -> Verdict {
    let shorter = |last: Option<u64>| last < durable_last_index;
    match (came, expect) {
        // Opening a shorter log is the root failure; a crash may follow it.
        (Came::ExitedWithoutRefusal(Some(last)), Some(_)) if shorter(last) => Verdict::Shortened,
        (Came::ExitedWithoutRefusal(_), _) => Verdict::CrashedWithoutRefusal,
        (Came::Refused, Some(Expect::TornTail)) => Verdict::RefusedTornTail,
        (Came::Refused, _) | (Came::Running(_), None) => Verdict::Ok,
        (Came::Running(None), Some(_)) => Verdict::Unverified,
        // `None < Some(_)`: an empty log lost every durable entry.
        (Came::Running(Some(last)), Some(_)) if shorter(last) => Verdict::Shortened,
        (Came::Running(Some(_)), Some(_)) => Verdict::Ok,
    }
}

/// The `corruption` check over every restart record (each with a
/// `verdict`), given how many corruptions the schedule planned.
pub fn check(records: &[Value], planned: usize) -> Check {
    let count = |v: Verdict| records.iter().filter(|r| r["verdict"] == v.name()).count();
    let outcome = |o: &str| records.iter().filter(|r| r["outcome"] == o).count();
    let failures: usize = Verdict::ALL
        .into_iter()
        .filter(|v| v.is_failure())
        .map(count)
        .sum();
    let unverified = count(Verdict::Unverified);
    let valid = if failures > 0 {
        Some(false)
    } else if records.is_empty() || unverified > 0 {
        None
    } else {
        Some(true)
    };
    let rebuilt = records.iter().filter(|r| r["rebuilt_as"].is_u64()).count();
    Check {
        name: "corruption".into(),
        valid,
        summary: format!(
            "corruptions planned {planned}, installed {} | refused {} (rebuilt {rebuilt}) running {} | \
             shortened {} refused-torn-tail {} crashed-without-refusal {} unverified {unverified}",
            records.len(),
            outcome("refused"),
            outcome("running"),
            count(Verdict::Shortened),
            count(Verdict::RefusedTornTail),
            count(Verdict::CrashedWithoutRefusal),
        ),
        details: json!(records),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opened_line_is_read_from_the_newest_start() {
        let log = "\u{1b}[2m..\u{1b}[0m INFO tael_consensus::log_store: raft log opened: last index 17, torn tail bytes cut 0\n\
                   ... INFO tael_consensus::log_store: raft log opened: last index 412, torn tail bytes cut 36\n";
        assert_eq!(opened_last_index(log), Some(Some(412)));
        assert_eq!(
            opened_last_index("x raft log opened: last index none, torn"),
            Some(None)
        );
        assert_eq!(opened_last_index("refusing to start"), None);
    }

    #[test]
    fn a_node_that_starts_with_fewer_durable_entries_fails() {
        let before = Some(Expect::DamageBeforeMark);
        assert_eq!(
            judge(before, Some(100), Came::Running(Some(Some(99)))),
            Verdict::Shortened
        );
        assert_eq!(
            judge(before, Some(100), Came::Running(Some(None))),
            Verdict::Shortened
        );
        assert_eq!(
            judge(before, Some(100), Came::Running(Some(Some(100)))),
            Verdict::Ok
        );
        assert_eq!(judge(before, Some(100), Came::Refused), Verdict::Ok);
        assert_eq!(
            judge(before, Some(100), Came::Running(None)),
            Verdict::Unverified
        );
    }

    #[test]
    fn a_torn_tail_must_be_accepted_without_losing_durable_entries() {
        let torn = Some(Expect::TornTail);
        assert_eq!(
            judge(torn, Some(100), Came::Refused),
            Verdict::RefusedTornTail
        );
        assert_eq!(
            judge(torn, Some(100), Came::Running(Some(Some(100)))),
            Verdict::Ok
        );
        assert_eq!(
            judge(torn, Some(100), Came::Running(Some(Some(97)))),
            Verdict::Shortened
        );
    }

    #[test]
    fn crashes_fail_and_unplaced_damage_is_judged_by_crashes_only() {
        assert_eq!(
            judge(None, Some(5), Came::ExitedWithoutRefusal(None)),
            Verdict::CrashedWithoutRefusal
        );
        let before = Some(Expect::DamageBeforeMark);
        assert_eq!(
            judge(before, Some(5), Came::ExitedWithoutRefusal(Some(Some(5)))),
            Verdict::CrashedWithoutRefusal
        );
        assert_eq!(
            judge(before, Some(5), Came::ExitedWithoutRefusal(Some(Some(4)))),
            Verdict::Shortened,
            "a crash after opening a shorter log is judged by the log"
        );
        assert_eq!(
            judge(None, Some(5), Came::Running(Some(Some(1)))),
            Verdict::Ok
        );
    }

    #[test]
    fn the_check_fails_on_any_failure_and_is_unknown_without_evidence() {
        let r = |outcome: &str, v: Verdict| json!({"outcome": outcome, "verdict": v.name()});
        let ok = [r("refused", Verdict::Ok), r("running", Verdict::Ok)];
        assert_eq!(check(&ok, 3).valid, Some(true));
        assert!(check(&ok, 3).summary.contains("planned 3, installed 2"));
        let bad = [r("refused", Verdict::Ok), r("running", Verdict::Shortened)];
        assert_eq!(check(&bad, 2).valid, Some(false));
        assert_eq!(
            check(&[], 2).valid,
            None,
            "nothing installed proves nothing"
        );
        let unverified = [r("running", Verdict::Unverified)];
        assert_eq!(check(&unverified, 1).valid, None);
    }
}
