//! Retention: how long each signal is kept, and the replicated cut that
//! drops what is older.
//!
//! The leader proposes a [`RetentionCut`] every compaction interval
//! (`serve::background::retention`). It carries the policy (how long each
//! signal is kept) and, once the leader stamped it (`payload::leader_stamp`),
//! the leader's clock. Every replica turns that into the same [`Floors`]
//! (times below which records go) and deletes the same records at the same
//! log index (`state::hot::retention`): the cut is decided once, by one
//! clock, and applied everywhere.
//!
//! Floors only rise. A leader whose clock runs behind the last cut's, or an
//! operator who lengthens a retention, cannot bring anything back (it is
//! gone) and leaves the floors where they are.

use serde::{Deserialize, Serialize};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Seconds in a retention or interval setting: `0` (for ever, or never),
/// or a whole number with a unit: `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let (n, unit_secs) = crate::model::time::split_unit_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration like 90s, 30m, 24h or 7d (or 0)"))?;
    n.checked_mul(unit_secs)
        .filter(|&secs| secs <= MAX_DURATION_SECS)
        .ok_or_else(|| format!("{s:?} is longer than 100 years"))
}

/// Settings beyond this are mistakes (and would overflow nanoseconds).
const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

/// How long each signal is kept, in seconds; 0 keeps it for ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub traces_secs: u64,
    pub logs_secs: u64,
    pub metrics_secs: u64,
    /// LLM prompts and completions (blobs referenced by spans): kept
    /// shorter than the spans that point at them, which stay with the
    /// payload's hash.
    pub llm_payloads_secs: u64,
    /// Per-minute span rollups (`crate::rollup`) and per-minute and
    /// per-hour metric rollups (`crate::metric_rollup`): kept longer than
    /// the spans and points they count, so windows older than those still
    /// answer.
    pub rollups_secs: u64,
}

/// Rollups are kept this long unless configured otherwise.
pub const DEFAULT_ROLLUPS_SECS: u64 = 365 * 86_400;

/// [`RetentionPolicy`] as cuts were encoded before it had `rollups_secs`:
/// such a cut, still in a Raft log, keeps rollups for ever.
#[derive(Deserialize)]
struct PolicyBeforeRollups {
    traces_secs: u64,
    logs_secs: u64,
    metrics_secs: u64,
    llm_payloads_secs: u64,
}

#[derive(Deserialize)]
struct CutBeforeRollups {
    policy: PolicyBeforeRollups,
    stamped_unix_nanos: u64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            traces_secs: 7 * 86_400,
            logs_secs: 14 * 86_400,
            metrics_secs: 30 * 86_400,
            llm_payloads_secs: 3 * 86_400,
            rollups_secs: DEFAULT_ROLLUPS_SECS,
        }
    }
}

/// The lifecycle settings of a node, as the REST API reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub retention: RetentionPolicy,
    /// The leader proposes a cut this often; 0: never.
    pub compaction_interval_secs: u64,
    /// Records older than this move to the cold tier; 0: never.
    pub hot_window_secs: u64,
}

/// The record a leader proposes: the policy, and the time the leader
/// stamped on it (0 until stamped; an unstamped cut is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionCut {
    pub policy: RetentionPolicy,
    pub stamped_unix_nanos: u64,
}

impl RetentionCut {
    pub fn unstamped(policy: RetentionPolicy) -> RetentionCut {
        RetentionCut {
            policy,
            stamped_unix_nanos: 0,
        }
    }

    /// Decodes a cut from a Raft log record, in the current encoding or in
    /// the one before rollups had a retention (those keep rollups for ever:
    /// 0, so a replayed old cut deletes none).
    pub fn decode(payload: &[u8]) -> Result<RetentionCut, crate::codec::CodecError> {
        crate::codec::decode(payload).or_else(|e| {
            let old: CutBeforeRollups = crate::codec::decode(payload).map_err(|_| e)?;
            let p = old.policy;
            Ok(RetentionCut {
                policy: RetentionPolicy {
                    traces_secs: p.traces_secs,
                    logs_secs: p.logs_secs,
                    metrics_secs: p.metrics_secs,
                    llm_payloads_secs: p.llm_payloads_secs,
                    rollups_secs: 0,
                },
                stamped_unix_nanos: old.stamped_unix_nanos,
            })
        })
    }

    pub fn is_stamped(&self) -> bool {
        self.stamped_unix_nanos > 0
    }

    /// The floors this cut asks for.
    pub fn floors(&self) -> Floors {
        let below = |secs: u64| {
            if secs == 0 {
                0 // kept for ever
            } else {
                self.stamped_unix_nanos
                    .saturating_sub(secs.saturating_mul(NANOS_PER_SEC))
            }
        };
        let p = &self.policy;
        Floors {
            traces: below(p.traces_secs),
            logs: below(p.logs_secs),
            metrics: below(p.metrics_secs),
            llm_payloads: below(p.llm_payloads_secs),
            rollups: below(p.rollups_secs),
        }
    }
}

/// Per signal, the time (unix nanoseconds) below which records are dropped:
/// spans by start time, log records and metric points by timestamp, LLM
/// payloads by the start of the spans referencing them. 0: nothing dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floors {
    pub traces: u64,
    pub logs: u64,
    pub metrics: u64,
    pub llm_payloads: u64,
    /// Span rollups, by minute: a minute goes once it lies wholly below.
    /// (Absent from states written before rollups: 0.)
    #[serde(default)]
    pub rollups: u64,
}

impl Floors {
    /// The higher of each floor: floors never move down.
    pub fn raised_to(self, other: Floors) -> Floors {
        Floors {
            traces: self.traces.max(other.traces),
            logs: self.logs.max(other.logs),
            metrics: self.metrics.max(other.metrics),
            llm_payloads: self.llm_payloads.max(other.llm_payloads),
            rollups: self.rollups.max(other.rollups),
        }
    }

    /// Below this, a span's LLM texts are gone: with the payload, or with
    /// the span itself.
    pub fn llm_texts(&self) -> u64 {
        self.llm_payloads.max(self.traces)
    }
}

/// Records a cut deleted, per signal (running totals in the state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedCounts {
    pub spans: u64,
    pub logs: u64,
    pub metric_points: u64,
    pub blobs: u64,
    /// Rollups (minute, service, operation) deleted.
    #[serde(default)]
    pub rollups: u64,
    /// Metric rollups (resolution, series, bucket) deleted.
    #[serde(default)]
    pub metric_rollups: u64,
}

impl DeletedCounts {
    pub fn add(&mut self, other: DeletedCounts) {
        self.spans += other.spans;
        self.logs += other.logs;
        self.metric_points += other.metric_points;
        self.blobs += other.blobs;
        self.rollups += other.rollups;
        self.metric_rollups += other.metric_rollups;
    }

    pub fn total(&self) -> u64 {
        self.spans
            + self.logs
            + self.metric_points
            + self.blobs
            + self.rollups
            + self.metric_rollups
    }
}

/// The retention state every replica keeps (replicated: the same on every
/// node at the same applied index).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionState {
    pub floors: Floors,
    /// Records below the floors remain: the last cut stopped at its
    /// per-entry budget, and the leader proposes another.
    pub pending: bool,
    /// LLM payloads were released for spans up to this `by_time` key
    /// (hex), so the next cut resumes after it instead of walking the
    /// retained spans again.
    pub llm_released_until: Option<String>,
    /// The log index and stamp of the last cut applied (0: none).
    pub last_cut_index: u64,
    pub last_cut_unix_nanos: u64,
    /// Everything cuts deleted so far.
    pub deleted: DeletedCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400 * NANOS_PER_SEC;

    #[test]
    fn a_cut_puts_each_floor_its_retention_before_the_stamp() {
        let now = 100 * DAY;
        let cut = RetentionCut {
            policy: RetentionPolicy::default(),
            stamped_unix_nanos: now,
        };
        let f = cut.floors();
        assert_eq!(f.traces, now - 7 * DAY);
        assert_eq!(f.logs, now - 14 * DAY);
        assert_eq!(f.metrics, now - 30 * DAY);
        assert_eq!(f.llm_payloads, now - 3 * DAY);
        assert_eq!(f.rollups, 0, "a year before day 100 saturates at 0");
        assert_eq!(f.llm_texts(), now - 3 * DAY);
    }

    #[test]
    fn a_zero_retention_keeps_the_signal_and_an_early_clock_cuts_nothing() {
        let mut policy = RetentionPolicy::default();
        policy.metrics_secs = 0;
        let cut = RetentionCut {
            policy,
            stamped_unix_nanos: DAY,
        };
        let f = cut.floors();
        assert_eq!(f.metrics, 0, "0 keeps metrics for ever");
        assert_eq!(f.traces, 0, "a stamp before the retention saturates at 0");
    }

    #[test]
    fn durations_parse_with_a_unit_or_as_zero() {
        assert_eq!(parse_duration_secs("0"), Ok(0));
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("5m"), Ok(300));
        assert_eq!(parse_duration_secs("24h"), Ok(86_400));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        for bad in ["", "7", "d", "7w", "-1d", "1.5h", "99999999999999d"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn floors_never_move_down() {
        let high = Floors {
            traces: 10,
            logs: 20,
            metrics: 30,
            llm_payloads: 5,
            rollups: 40,
        };
        let low = Floors {
            traces: 1,
            logs: 25,
            metrics: 0,
            llm_payloads: 9,
            rollups: 3,
        };
        let r = high.raised_to(low);
        assert_eq!(
            (r.traces, r.logs, r.metrics, r.llm_payloads),
            (10, 25, 30, 9)
        );
        assert_eq!(r.rollups, 40);
        assert_eq!(r.llm_texts(), 10, "a span's texts go with the span");
    }

    #[test]
    fn a_cut_encoded_before_rollups_had_a_retention_still_decodes() {
        #[derive(Serialize)]
        struct Old {
            policy: (u64, u64, u64, u64),
            stamped_unix_nanos: u64,
        }
        let bytes = crate::codec::encode(&Old {
            policy: (1, 2, 3, 4),
            stamped_unix_nanos: 99,
        });
        let cut = RetentionCut::decode(&bytes).unwrap();
        assert_eq!(
            (cut.policy.traces_secs, cut.policy.llm_payloads_secs),
            (1, 4)
        );
        assert_eq!(cut.policy.rollups_secs, 0, "old cuts keep rollups");
        assert_eq!(cut.stamped_unix_nanos, 99);
        let now = RetentionCut {
            policy: RetentionPolicy::default(),
            stamped_unix_nanos: 5,
        };
        assert_eq!(
            RetentionCut::decode(&crate::codec::encode(&now)).unwrap(),
            now
        );
        assert!(RetentionCut::decode(&[1, 2]).is_err());
    }
}
