//! tael-jepsen: histories and checkers for tael-raft's fault harness.
//!
//! * [`history`]: Jepsen-style events, pairing into operations, JSON lines.
//! * [`golden`]: readers for the golden histories used to validate checkers.
//! * [`linearizability`]: a Wing–Gong/Lowe style linearizability checker with
//!   a pluggable sequential [`linearizability::Model`].

mod edn;
pub mod golden;
pub mod history;
pub mod linearizability;
