//! TraceQL, the query language of Grafana's Tempo data source: a
//! hand-written lexer ([`lexer`]), a parser to an AST ([`parser`], [`ast`]),
//! an evaluator over stored spans ([`eval`]) and the search that runs a
//! query through a [`crate::query::View`] ([`search`]).
//!
//! The supported subset is listed in `docs/grafana.md`; anything else is a
//! [`ParseError`] that names the construct.

pub mod ast;
pub mod eval;
pub mod lexer;
pub mod parser;
pub mod search;
#[cfg(test)]
mod tests;

pub use ast::Query;
pub use parser::parse;
pub use search::{search, SearchLimits, SearchOutcome, TraceMatch};

/// Why a query was refused: where (byte offset) and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TraceQL error at position {pos}: {message}")]
pub struct ParseError {
    pub pos: usize,
    pub message: String,
}

impl ParseError {
    pub fn new(pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            pos,
            message: message.into(),
        }
    }
}
