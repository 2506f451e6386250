//! tael-raft: a Raft-replicated OpenTelemetry backend.
//!
//! The path of a span: [`otlp`] decodes and validates an export, [`ingest`]
//! encodes it as one [`payload`] record and proposes it through the
//! [`cluster`] handle (to the leader), the [`state`] machine applies committed
//! records to the hot tier, and [`rest`] answers queries through the
//! [`query`] service, which first passes the cluster's read barrier for the
//! requested consistency level. [`serve`] builds all of it.

pub mod admin;
pub mod analytics;
pub mod auth;
pub mod cluster;
pub mod cmd;
pub mod codec;
pub mod comments;
pub mod config;
pub mod data_format;
pub mod faults;
pub mod fulltext;
pub mod http_client;
pub mod ingest;
pub mod live_tail;
pub mod llm;
pub mod logql;
pub mod metric_rollup;
pub mod model;
pub mod otlp;
pub mod payload;
pub mod prom;
pub mod query;
pub mod rest;
pub mod retention;
pub mod rollup;
pub mod self_metrics;
pub mod serve;
pub mod sketch;
pub mod slots;
pub mod spool;
pub mod state;
pub mod sys;
pub mod tls;
pub mod traceql;
