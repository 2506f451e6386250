//! A subset of LogQL, Loki's query language, over the stored log records:
//! what Grafana's Loki data source sends (see docs/grafana.md for the list).
//!
//! [`parse`] turns a query into an [`ast::Expr`]; [`labels`] gives a log
//! record the labels LogQL sees; [`eval`] runs a parsed query over records
//! handed to it one by one, so the caller decides how storage is walked and
//! how far. Nothing here reads storage.

pub mod ast;
pub mod eval;
pub mod labels;
mod lexer;
mod parse;
mod pipeline;

pub use lexer::parse_duration_nanos;
pub use parse::{parse, ParseError, MAX_DEPTH, MAX_QUERY_BYTES};
