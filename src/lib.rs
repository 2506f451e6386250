//! tael-raft: a Raft-replicated OpenTelemetry backend.
//!
//! The path of a span: [`otlp`] decodes and validates an export, [`ingest`]
//! encodes it as one [`payload`] record and proposes it through the leader,
//! the [`state`] machine applies committed records to the hot tier, and
//! [`rest`] answers queries after [`node::ReadBarrier`] has made the local
//! state fresh enough for the requested consistency level.

pub mod analytics;
pub mod cmd;
pub mod comments;
pub mod config;
pub mod data_format;
pub mod faults;
pub mod fulltext;
pub mod http_client;
pub mod ingest;
pub mod llm;
pub mod membership;
pub mod model;
pub mod node;
pub mod otlp;
pub mod payload;
pub mod rest;
pub mod spool;
pub mod state;
pub mod sys;
