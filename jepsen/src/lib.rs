//! tael-jepsen: histories and checkers for tael-raft's fault harness.
//!
//! * [`history`]: Jepsen-style events, pairing into operations, JSON lines.
//! * [`golden`]: readers for the golden histories used to validate checkers.
//! * [`linearizability`]: a Wing–Gong/Lowe style linearizability checker with
//!   a pluggable sequential [`linearizability::Model`].
//! * [`harness`]: `tael-jepsen test`: real nodes, clients, nemeses.
//! * [`events`], [`checkers`], [`report`]: run histories, their checkers
//!   (set-full, sessions, append-list linearizability, election safety under
//!   openraft's leader ids)
//!   and the run report.

pub mod checkers;
mod edn;
pub mod events;
pub mod golden;
pub mod harness;
pub mod history;
pub mod linearizability;
pub mod report;
