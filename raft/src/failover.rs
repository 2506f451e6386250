//! Fast failover when the leader's process is gone.
//!
//! Raft's timers cannot tell a dead leader from a slow or partitioned one, so
//! a follower waits out its election timeout (1–2 s by default), and then its
//! (pre-)vote is refused by the other followers until *their* leader lease
//! (as long as the longest election timeout) runs out: about 3 s of no writes
//! after a leader dies.
//!
//! A dead process leaves a sharper trace: its listening socket is gone, so
//! the kernel answers a TCP connect to its raft address with a reset
//! ("connection refused"). Two places use that proof:
//! - [`spawn_watcher`]: a follower that has not heard from its leader for a
//!   few heartbeat intervals probes the leader's address; when the connect is
//!   refused it starts an election at once (no pre-vote), after a delay that
//!   staggers the survivors so that they do not split the vote.
//! - [`LeaderProbe::leader_proven_gone`], called by the vote handler: a voter
//!   whose lease on a leader has not run out lets a vote through only when that
//!   leader is proven gone (see `server.rs`).
//!
//! Anything but a refusal proves nothing: an accepted connect (a stopped
//! process's socket still completes handshakes from the kernel backlog), a
//! timeout (a partition, a dropped packet) or any other error leave the
//! normal timers in charge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::storage::RaftStateMachine;
use openraft::ServerState;
use rand::Rng;
use tokio::sync::watch;

use crate::types::{NodeId, Raft, TypeConfig};

/// What a TCP connect to a peer's raft address proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing listens there: the process that held the address is gone.
    Refused,
    /// Something completed the handshake (maybe only the kernel, for a
    /// stopped process): alive as far as we can tell.
    Accepted,
    /// A timeout or another error: no proof either way.
    Inconclusive,
}

/// Connects to `addr` (host:port) and tells what that proved. Never waits
/// longer than `timeout`.
pub async fn probe(addr: &str, timeout: Duration) -> Probe {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Probe::Accepted,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
        Ok(Err(_)) | Err(_) => Probe::Inconclusive,
    }
}

/// The timings of the fast path, derived from the heartbeat interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverTimings {
    /// How often the watcher looks at the leader's silence.
    pub check_interval: Duration,
    /// Silence from the leader after which the watcher probes it. A live
    /// leader sends a heartbeat every heartbeat interval.
    pub silence_before_probe: Duration,
    /// Longest wait for a probe's connect; a live peer on a working network
    /// answers well within it.
    pub probe_timeout: Duration,
    /// Survivors start their elections this far apart, in the order of
    /// their node ids (see [`election_delay`]).
    pub stagger_step: Duration,
    /// Random delay added to the stagger, up to this much.
    pub max_jitter: Duration,
}

impl FailoverTimings {
    pub fn from_heartbeat_ms(heartbeat_interval_ms: u64) -> Self {
        let heartbeat = Duration::from_millis(heartbeat_interval_ms.max(1));
        FailoverTimings {
            check_interval: heartbeat / 2,
            silence_before_probe: heartbeat * 2,
            probe_timeout: Duration::from_millis(200),
            stagger_step: heartbeat,
            max_jitter: heartbeat / 4,
        }
    }
}

/// When the leader last reached this node (an append or heartbeat arrived).
/// Shared by the transport's handlers (which touch it) and the watcher.
#[derive(Debug)]
pub struct LeaderContact {
    base: Instant,
    /// Milliseconds after `base` of the last contact.
    last_ms: AtomicU64,
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl LeaderContact {
    /// The leader reached us just now.
    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long since the leader last reached us (since start-up if never).
    pub fn silence(&self) -> Duration {
        let now_ms = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now_ms.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// What the watcher sees of its node at one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub state: ServerState,
    /// The leader this node follows, if any.
    pub leader: Option<NodeId>,
    pub term: u64,
    /// Time since the leader last reached us.
    pub silence: Duration,
    /// The term of the last election this watcher started, if any.
    pub last_triggered_term: Option<u64>,
}

/// Whether a check should probe the leader (and which one).
pub fn leader_to_probe(me: NodeId, obs: &Observation, timings: &FailoverTimings) -> Option<NodeId> {
    let leader = obs.leader?;
    let follows_another = obs.state == ServerState::Follower && leader != me;
    let silent = obs.silence >= timings.silence_before_probe;
    // One fast election per term: if the one we started did not settle the
    // term (no leader yet, or the old one still known), the timers take over.
    let already_tried = obs.last_triggered_term.is_some_and(|t| t >= obs.term);
    (follows_another && silent && !already_tried).then_some(leader)
}

/// How long a survivor waits after proving the leader gone before it starts
/// an election: survivors go one stagger step apart in the order of their
/// ids (the dead leader excluded), so the first usually wins before the next
/// starts, plus a little jitter. `jitter` is in [0, 1).
pub fn election_delay(
    me: NodeId,
    dead_leader: NodeId,
    voters: &[NodeId],
    timings: &FailoverTimings,
    jitter: f64,
) -> Duration {
    let rank = voters
        .iter()
        .filter(|v| **v != dead_leader && **v < me)
        .count() as u32;
    timings.stagger_step * rank + timings.max_jitter.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Looks up and probes this node's leader.
#[derive(Clone)]
pub struct LeaderProbe {
    pub me: NodeId,
    /// Membership address → address to dial (as the transport dials it).
    pub dial_addr: Arc<dyn Fn(&str) -> String + Send + Sync>,
    pub timings: FailoverTimings,
}

/// The leader a follower holds a lease on, as its metrics show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownLeader {
    pub id: NodeId,
    pub term: u64,
    pub addr: String,
}

impl LeaderProbe {
    /// The leader this node follows (not itself), with its raft address.
    pub fn known_leader<SM>(&self, raft: &Raft<SM>) -> Option<KnownLeader>
    where
        SM: RaftStateMachine<TypeConfig>,
    {
        let m = raft.metrics().borrow_watched().clone();
        let id = m.current_leader.filter(|l| *l != self.me)?;
        if m.state != ServerState::Follower && m.state != ServerState::Learner {
            return None;
        }
        let node = m.membership_config.membership().get_node(&id)?;
        Some(KnownLeader {
            id,
            term: m.current_term,
            addr: node.addr.clone(),
        })
    }

    /// True only when this node follows a leader, that leader's raft address
    /// refuses connections, and the node still follows the same leader in the
    /// same term after the probe.
    pub async fn leader_proven_gone<SM>(&self, raft: &Raft<SM>) -> bool
    where
        SM: RaftStateMachine<TypeConfig>,
    {
        let Some(before) = self.known_leader(raft) else {
            return false;
        };
        let dial = (self.dial_addr)(&before.addr);
        if probe(&dial, self.timings.probe_timeout).await != Probe::Refused {
            return false;
        }
        self.known_leader(raft).as_ref() == Some(&before)
    }
}

/// Watches the leader's silence and starts an election as soon as the
/// leader is proven gone. Ends when `shutdown` turns true.
pub fn spawn_watcher<SM>(
    raft: Raft<SM>,
    contact: Arc<LeaderContact>,
    probe: LeaderProbe,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    SM: RaftStateMachine<TypeConfig>,
{
    tokio::spawn(async move {
        let mut last_triggered_term = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(probe.timings.check_interval) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            if let Some(term) = check_once(&raft, &contact, &probe, last_triggered_term).await {
                last_triggered_term = Some(term);
            }
        }
    })
}

/// One look: returns the term in which it started an election, if it did.
async fn check_once<SM>(
    raft: &Raft<SM>,
    contact: &LeaderContact,
    probe: &LeaderProbe,
    last_triggered_term: Option<u64>,
) -> Option<u64>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let m = raft.metrics().borrow_watched().clone();
    let obs = Observation {
        state: m.state,
        leader: m.current_leader,
        term: m.current_term,
        silence: contact.silence(),
        last_triggered_term,
    };
    let leader = leader_to_probe(probe.me, &obs, &probe.timings)?;
    if !probe.leader_proven_gone(raft).await {
        return None;
    }
    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
    let jitter: f64 = rand::rng().random();
    let delay = election_delay(probe.me, leader, &voters, &probe.timings, jitter);
    tracing::info!(
        leader,
        term = obs.term,
        silence_ms = obs.silence.as_millis() as u64,
        delay_ms = delay.as_millis() as u64,
        "leader's raft address refuses connections: its process is gone; starting an election"
    );
    tokio::time::sleep(delay).await;
    // Someone else may have won meanwhile (or we voted for them).
    let now = raft.metrics().borrow_watched().clone();
    if now.current_term != obs.term || now.current_leader != Some(leader) {
        return Some(obs.term);
    }
    if let Err(e) = raft.trigger().elect(false).await {
        tracing::warn!(error = %e, "could not start an election");
    }
    Some(obs.term)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings() -> FailoverTimings {
        FailoverTimings::from_heartbeat_ms(200)
    }

    fn follower(silence_ms: u64) -> Observation {
        Observation {
            state: ServerState::Follower,
            leader: Some(1),
            term: 7,
            silence: Duration::from_millis(silence_ms),
            last_triggered_term: None,
        }
    }

    #[test]
    fn probes_only_a_silent_leader_of_a_follower() {
        let t = timings();
        assert_eq!(leader_to_probe(2, &follower(400), &t), Some(1));
        assert_eq!(leader_to_probe(2, &follower(399), &t), None);
        let mut o = follower(1000);
        o.leader = None;
        assert_eq!(leader_to_probe(2, &o, &t), None, "no leader known");
        let mut o = follower(1000);
        o.state = ServerState::Candidate;
        assert_eq!(leader_to_probe(2, &o, &t), None, "an election is running");
        o.state = ServerState::Leader;
        assert_eq!(leader_to_probe(1, &o, &t), None, "the leader itself");
        assert_eq!(leader_to_probe(1, &follower(1000), &t), None);
    }

    #[test]
    fn one_fast_election_per_term() {
        let t = timings();
        let mut o = follower(1000);
        o.last_triggered_term = Some(7);
        assert_eq!(leader_to_probe(2, &o, &t), None);
        o.last_triggered_term = Some(6);
        assert_eq!(leader_to_probe(2, &o, &t), Some(1));
    }

    #[test]
    fn survivors_are_staggered_by_id_without_the_dead_leader() {
        let t = timings();
        let voters = [1, 2, 3];
        assert_eq!(election_delay(2, 1, &voters, &t, 0.0), Duration::ZERO);
        assert_eq!(election_delay(3, 1, &voters, &t, 0.0), t.stagger_step);
        assert_eq!(election_delay(1, 2, &voters, &t, 0.0), Duration::ZERO);
        assert_eq!(election_delay(3, 2, &voters, &t, 0.0), t.stagger_step);
        let max = election_delay(2, 1, &voters, &t, 0.999);
        assert!(max < t.max_jitter && max > Duration::ZERO, "{max:?}");
        assert!(t.max_jitter < t.stagger_step, "jitter must keep the order");
    }

    #[test]
    fn timings_scale_with_the_heartbeat() {
        let t = timings();
        assert_eq!(t.silence_before_probe, Duration::from_millis(400));
        assert_eq!(t.check_interval, Duration::from_millis(100));
        assert!(t.probe_timeout < t.silence_before_probe);
    }

    #[test]
    fn contact_measures_silence() {
        let c = LeaderContact::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(c.silence() >= Duration::from_millis(30));
        c.touch();
        assert!(c.silence() < Duration::from_millis(30));
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_a_listening_one_accepted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Never accepted by the application (as with a stopped process): the
        // kernel still completes the handshake, which proves nothing dead.
        assert_eq!(
            probe(&addr, Duration::from_millis(500)).await,
            Probe::Accepted
        );
        drop(listener);
        assert_eq!(
            probe(&addr, Duration::from_millis(500)).await,
            Probe::Refused
        );
    }

    #[tokio::test]
    async fn an_unresolvable_address_proves_nothing() {
        assert_eq!(
            probe("no-such-host.invalid:1", Duration::from_millis(500)).await,
            Probe::Inconclusive
        );
    }
}
