//! Fault coverage: was every scheduled fault kind really installed?
//!
//! A run whose partitions or clock jumps all failed to install (a missing
//! `nft`, no libfaketime, a server without `--dial-override`) tested a
//! healthy cluster; calling it valid would claim what was never tried. Each
//! nemesis action records `"installed": true/false`; a fault kind with
//! planned actions and not one installed makes this check unknown, which
//! makes the run unknown.

use std::collections::BTreeMap;

use serde_json::json;

use super::nemesis::{FaultKind, Planned};
use crate::checkers::Check;
use crate::events::{Event, NEMESIS};

pub const NAME: &str = "fault-coverage";

/// Planned actions and installed ones of one fault kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    planned: usize,
    recorded: usize,
    installed: usize,
}

pub fn check(plan: &[Planned], history: &[Event]) -> Check {
    let mut tallies: BTreeMap<FaultKind, Tally> = BTreeMap::new();
    for p in plan {
        tallies.entry(p.kind).or_default().planned += 1;
    }
    for e in history.iter().filter(|e| e.process == NEMESIS) {
        // Two kinds may share an event name (corrupt, corrupt-any): the
        // event counts for whichever of them was planned.
        for (kind, tally) in tallies.iter_mut() {
            if kind.event_names().contains(&e.f.as_str()) {
                tally.recorded += 1;
                if e.value["installed"] == true {
                    tally.installed += 1;
                }
            }
        }
    }
    let never: Vec<&str> = tallies
        .iter()
        .filter(|(_, t)| t.installed == 0)
        .map(|(k, _)| k.name())
        .collect();
    let counts: Vec<String> = tallies
        .iter()
        .map(|(k, t)| format!("{} {}/{}", k.name(), t.installed, t.recorded))
        .collect();
    let summary = if tallies.is_empty() {
        "no faults scheduled".to_string()
    } else if never.is_empty() {
        format!(
            "every scheduled fault kind installed ({})",
            counts.join(", ")
        )
    } else {
        format!(
            "never installed: {} ({}); the run did not test them",
            never.join(", "),
            counts.join(", ")
        )
    };
    Check {
        name: NAME.into(),
        valid: never.is_empty().then_some(true),
        summary,
        details: json!({
            "never_installed": never,
            "kinds": tallies.iter().map(|(k, t)| (k.name().to_string(), json!({
                "planned": t.planned, "recorded": t.recorded, "installed": t.installed,
            }))).collect::<serde_json::Map<_, _>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Recorder;
    use std::time::Instant;

    fn planned(kind: FaultKind, target: &str) -> Planned {
        Planned {
            kind,
            at_ms: 0,
            duration_ms: 0,
            target: target.into(),
            pick: 0,
            amount: 0,
        }
    }

    fn history(actions: &[(&str, bool)]) -> Vec<Event> {
        let r = Recorder::new(Instant::now());
        for (f, installed) in actions {
            r.nemesis(f, json!({"installed": installed}));
        }
        r.snapshot()
    }

    /// The run that printed `verdict: VALID` with `partition 0/10` and
    /// `clock 0/13`: kills installed, partitions and clock jumps never.
    #[test]
    fn a_fault_kind_never_installed_makes_the_run_unknown() {
        let plan = [
            planned(FaultKind::Kill, "one"),
            planned(FaultKind::Partition, "bridge"),
            planned(FaultKind::Partition, "flap"),
            planned(FaultKind::Clock, "bump"),
        ];
        let h = history(&[
            ("kill", true),
            ("restart", true),
            ("partition", false),
            ("heal-partition", true),
            ("flap", false),
            ("clock", false),
        ]);
        let c = check(&plan, &h);
        assert_eq!(c.valid, None, "{}", c.summary);
        assert_eq!(c.details["never_installed"], json!(["partition", "clock"]));
        assert!(
            c.summary.contains("never installed: partition, clock"),
            "{}",
            c.summary
        );
        // Heal and restart events are not the fault itself.
        assert_eq!(c.details["kinds"]["partition"]["recorded"], 2);
        assert_eq!(c.details["kinds"]["kill"]["installed"], 1);
    }

    #[test]
    fn one_installed_action_per_kind_is_enough() {
        let plan = [
            planned(FaultKind::Partition, "bridge"),
            planned(FaultKind::Partition, "delay"),
            planned(FaultKind::Corrupt, "truncate"),
        ];
        let h = history(&[("partition", false), ("delay", true), ("corrupt", true)]);
        assert_eq!(check(&plan, &h).valid, Some(true));
    }

    #[test]
    fn a_planned_kind_that_never_ran_is_unknown() {
        let plan = [planned(FaultKind::Membership, "add-new")];
        let c = check(&plan, &history(&[("kill", true)]));
        assert_eq!(c.valid, None);
        assert_eq!(c.details["never_installed"], json!(["membership"]));
    }

    #[test]
    fn no_faults_planned_is_valid() {
        assert_eq!(check(&[], &history(&[])).valid, Some(true));
    }
}
