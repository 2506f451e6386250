//! Deliberate defects and simulated power loss, for proving that the fault
//! harness (`tael-jepsen`) catches real bugs.
//!
//! Only a binary built with the `fault-injection` cargo feature accepts them;
//! a normal build refuses to start when asked for one, so a production node
//! can never run with a mutation by accident.

use std::fmt;

pub mod poison;

/// A known bug, chosen at start with `serve --mutation NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The log never fsyncs appended entries.
    SkipFsync,
    /// An export is acknowledged once proposed, before a quorum commits it.
    AckBeforeCommit,
    /// `linearizable` and `lease` reads are served from local state, with no
    /// read index.
    StaleLocalReads,
    /// Re-ingesting a span stores a second copy instead of replacing it.
    DoubleApplyRetries,
    /// The vote is kept in memory only, so a restarted node may vote twice
    /// in one term.
    VoteInMemory,
    /// The leader reads each retention in the wrong unit (hours taken as
    /// seconds), so its cuts delete spans that are still retained.
    RetentionWrongUnit,
    /// Start-up recovery takes damage before the log's durable mark for a
    /// torn tail and cuts it off: the node comes back with fewer entries
    /// than it acknowledged instead of refusing to start.
    CutDurableLog,
    /// Apply is no longer total: the state machine panics on an entry it
    /// cannot apply instead of recording it as rejected, so one poison
    /// entry stops every replica (and stops them again after a restart).
    PoisonIsFatal,
}

impl Mutation {
    pub const ALL: [Mutation; 8] = [
        Mutation::SkipFsync,
        Mutation::AckBeforeCommit,
        Mutation::StaleLocalReads,
        Mutation::DoubleApplyRetries,
        Mutation::VoteInMemory,
        Mutation::RetentionWrongUnit,
        Mutation::CutDurableLog,
        Mutation::PoisonIsFatal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutation::SkipFsync => "skip-fsync",
            Mutation::AckBeforeCommit => "ack-before-commit",
            Mutation::StaleLocalReads => "stale-local-reads",
            Mutation::DoubleApplyRetries => "double-apply-retries",
            Mutation::VoteInMemory => "vote-in-memory",
            Mutation::RetentionWrongUnit => "retention-wrong-unit",
            Mutation::CutDurableLog => "cut-durable-log",
            Mutation::PoisonIsFatal => "poison-is-fatal",
        }
    }

    pub fn parse(s: &str) -> Result<Mutation, String> {
        Mutation::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Mutation::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mutation {s:?}; known: {}", names.join(", "))
            })
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What this node was asked to break or simulate. Empty in every normal run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    pub mutation: Option<Mutation>,
    /// A SIGKILL of this node acts as a power cut for its Raft log: on restart
    /// every write the log had not fsynced is gone.
    pub power_loss_sim: bool,
}

impl FaultConfig {
    pub fn is_active(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !cfg!(feature = "fault-injection") && (self.mutation.is_some() || self.power_loss_sim) {
            return Err(
                "this build has no fault injection: --mutation and --power-loss-sim need a \
                 binary built with `--features fault-injection` (for the fault harness only)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The acknowledgement point actually used: the ack mutation moves it
    /// before the commit.
    pub fn ack_level(&self, configured: tael_consensus::AckLevel) -> tael_consensus::AckLevel {
        #[cfg(feature = "fault-injection")]
        if self.is_active(Mutation::AckBeforeCommit) {
            return tael_consensus::AckLevel::Proposed;
        }
        configured
    }

    /// The log store's share of the faults.
    pub fn log_faults(&self) -> tael_consensus::log_store::LogFaults {
        #[cfg(feature = "fault-injection")]
        return tael_consensus::log_store::LogFaults {
            skip_fsync: self.is_active(Mutation::SkipFsync),
            vote_in_memory_only: self.is_active(Mutation::VoteInMemory),
            simulate_power_loss: self.power_loss_sim,
            cut_durable_log: self.is_active(Mutation::CutDurableLog),
        };
        #[cfg(not(feature = "fault-injection"))]
        {
            debug_assert!(self.validate().is_ok(), "validated at start-up");
            tael_consensus::log_store::LogFaults::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for m in Mutation::ALL {
            assert_eq!(Mutation::parse(m.name()).unwrap(), m);
        }
        let err = Mutation::parse("nope").unwrap_err();
        assert!(err.contains("skip-fsync"), "{err}");
    }

    #[test]
    fn normal_builds_refuse_fault_injection() {
        let asked = FaultConfig {
            mutation: Some(Mutation::SkipFsync),
            power_loss_sim: false,
        };
        assert_eq!(
            asked.validate().is_ok(),
            cfg!(feature = "fault-injection"),
            "only the fault-injection build accepts a mutation"
        );
        assert!(FaultConfig::default().validate().is_ok());
    }
}
