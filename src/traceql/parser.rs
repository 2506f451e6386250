//! Tokens to a [`Query`]: a recursive-descent parser over the subset in
//! `docs/grafana.md`. Anything outside it is refused with an error that
//! names the construct, never skipped.

use super::ast::*;
use super::lexer::{tokenize, Tok, Token};
use super::ParseError;
use crate::model::{SpanKind, SpanStatus};

/// Deepest nesting of parentheses and braces: bounds the parser's stack.
const MAX_NESTING: usize = 64;
/// Largest compiled regex, as for the REST attribute filters.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Functions of full TraceQL that this version does not run, by name, so
/// the error can say so rather than "unknown function".
const UNSUPPORTED_FUNCTIONS: &[&str] = &[
    "select",
    "by",
    "coalesce",
    "rate",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "sum_over_time",
    "quantile_over_time",
    "histogram_over_time",
    "compare",
    "topk",
    "bottomk",
    "with",
];

pub fn parse(text: &str) -> Result<Query, ParseError> {
    let mut p = Parser {
        toks: tokenize(text)?,
        i: 0,
        end: text.len(),
        depth: 0,
    };
    let q = p.query()?;
    Ok(q)
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    /// Position of the end of the text, for "unexpected end" errors.
    end: usize,
    depth: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LBrace => "`{`".into(),
        Tok::RBrace => "`}`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::AndAnd => "`&&`".into(),
        Tok::OrOr => "`||`".into(),
        Tok::Pipe => "`|`".into(),
        Tok::Not => "`!`".into(),
        Tok::Eq => "`=`".into(),
        Tok::Ne => "`!=`".into(),
        Tok::Re => "`=~`".into(),
        Tok::NotRe => "`!~`".into(),
        Tok::Gt => "`>`".into(),
        Tok::Ge => "`>=`".into(),
        Tok::Lt => "`<`".into(),
        Tok::Le => "`<=`".into(),
        Tok::Structural(s) => format!("`{s}`"),
        Tok::Arith(c) => format!("`{c}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Int(i) => format!("number {i}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::Duration(d) => format!("duration {d}ns"),
        Tok::Ident(n) => format!("`{n}`"),
    }
}

fn cmp_op(t: &Tok) -> Option<CmpOp> {
    Some(match t {
        Tok::Eq => CmpOp::Eq,
        Tok::Ne => CmpOp::Ne,
        Tok::Re => CmpOp::Re,
        Tok::NotRe => CmpOp::NotRe,
        Tok::Gt => CmpOp::Gt,
        Tok::Ge => CmpOp::Ge,
        Tok::Lt => CmpOp::Lt,
        Tok::Le => CmpOp::Le,
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.i + n).map(|t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end, |t| t.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// An error at the current token: "expected X, found Y".
    fn expected(&self, what: &str) -> ParseError {
        let found = self
            .peek()
            .map_or_else(|| "the end of the query".to_string(), describe);
        ParseError::new(self.pos(), format!("expected {what}, found {found}"))
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), ParseError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn nest(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ParseError::new(
                self.pos(),
                format!("nested deeper than {MAX_NESTING} levels"),
            ));
        }
        Ok(())
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        let sets = self.set_or()?;
        let mut stages = Vec::new();
        while self.eat(&Tok::Pipe) {
            stages.push(self.stage()?);
        }
        match self.peek() {
            None => Ok(Query { sets, stages }),
            Some(Tok::Structural(s)) => Err(unsupported_structural(self.pos(), s)),
            Some(Tok::Gt | Tok::Lt) if self.starts_spanset(1) => {
                let op = if self.peek() == Some(&Tok::Gt) {
                    ">"
                } else {
                    "<"
                };
                Err(unsupported_structural(self.pos(), op))
            }
            Some(_) => Err(self.expected("`&&`, `||`, `|` or the end of the query")),
        }
    }

    /// Whether the token `n` ahead opens a spanset (`{` or `(`).
    fn starts_spanset(&self, n: usize) -> bool {
        matches!(self.peek_at(n), Some(Tok::LBrace | Tok::LParen))
    }

    fn set_or(&mut self) -> Result<SetExpr, ParseError> {
        let mut left = self.set_and()?;
        while self.eat(&Tok::OrOr) {
            let right = self.set_and()?;
            left = SetExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn set_and(&mut self) -> Result<SetExpr, ParseError> {
        let mut left = self.set_atom()?;
        while self.eat(&Tok::AndAnd) {
            let right = self.set_atom()?;
            left = SetExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn set_atom(&mut self) -> Result<SetExpr, ParseError> {
        let pos = self.pos();
        match self.peek() {
            Some(Tok::LBrace) => {
                self.nest()?;
                self.i += 1;
                let e = self.spanset_body()?;
                self.depth -= 1;
                Ok(SetExpr::Filter(e))
            }
            Some(Tok::LParen) => {
                self.nest()?;
                self.i += 1;
                let s = self.set_or()?;
                self.expect(&Tok::RParen, "`)`")?;
                self.depth -= 1;
                Ok(s)
            }
            Some(Tok::Ident(name)) if self.peek_at(1) == Some(&Tok::LParen) => {
                Err(unsupported_function(pos, name))
            }
            _ => Err(self.expected("a spanset `{ ... }`")),
        }
    }

    /// What follows `{`, up to and including `}`.
    fn spanset_body(&mut self) -> Result<Expr, ParseError> {
        if self.eat(&Tok::RBrace) {
            return Ok(Expr::Static(true));
        }
        let e = self.expr_or()?;
        self.expect(&Tok::RBrace, "`&&`, `||` or `}`")?;
        Ok(e)
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        let pos = self.pos();
        match self.next().map(|t| t.tok) {
            Some(Tok::LBrace) => {
                self.nest()?;
                let e = self.spanset_body()?;
                self.depth -= 1;
                Ok(Stage::Filter(e))
            }
            Some(Tok::Ident(name)) if self.peek() == Some(&Tok::LParen) => {
                let func = self.aggregate(pos, &name)?;
                let op_pos = self.pos();
                let op = self.peek().and_then(cmp_op);
                let op = match op {
                    Some(op) if !matches!(op, CmpOp::Re | CmpOp::NotRe) => op,
                    _ => {
                        return Err(self.expected("a comparison (`=`, `!=`, `>`, `>=`, `<`, `<=`)"))
                    }
                };
                self.i += 1;
                let value = match self.next().map(|t| t.tok) {
                    Some(Tok::Int(i)) => i as f64,
                    Some(Tok::Float(f)) => f,
                    Some(Tok::Duration(d)) => d as f64,
                    _ => {
                        return Err(ParseError::new(
                            op_pos,
                            format!("`{name}()` compares with a number or a duration"),
                        ))
                    }
                };
                Ok(Stage::Aggregate { func, op, value })
            }
            _ => {
                self.i -= 1;
                Err(self.expected("a spanset `{ ... }` or an aggregate such as `count()`"))
            }
        }
    }

    /// `count()`, `avg(field)`, `min(field)`, `max(field)`, `sum(field)`;
    /// the name has been read and `(` is next.
    fn aggregate(&mut self, pos: usize, name: &str) -> Result<AggFunc, ParseError> {
        self.expect(&Tok::LParen, "`(`")?;
        if name == "count" {
            self.expect(&Tok::RParen, "`)`: count() takes no argument")?;
            return Ok(AggFunc::Count);
        }
        let make: fn(Field) -> AggFunc = match name {
            "avg" => AggFunc::Avg,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "sum" => AggFunc::Sum,
            _ => return Err(unsupported_function(pos, name)),
        };
        let field_pos = self.pos();
        let field = match self.next().map(|t| t.tok) {
            Some(Tok::Ident(f)) => parse_field(field_pos, &f)?,
            _ => {
                return Err(ParseError::new(
                    field_pos,
                    format!("`{name}()` needs a field"),
                ))
            }
        };
        if let Field::Intrinsic(i) = &field {
            if !matches!(i, Intrinsic::Duration | Intrinsic::TraceDuration) {
                return Err(ParseError::new(
                    field_pos,
                    format!("`{name}()` needs a numeric field: duration or an attribute"),
                ));
            }
        }
        self.expect(&Tok::RParen, "`)`")?;
        Ok(make(field))
    }

    fn expr_or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.expr_and()?;
        while self.eat(&Tok::OrOr) {
            let right = self.expr_and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expr_and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.expr_unary()?;
        while self.eat(&Tok::AndAnd) {
            let right = self.expr_unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expr_unary(&mut self) -> Result<Expr, ParseError> {
        let pos = self.pos();
        match self.peek() {
            Some(Tok::LParen) => {
                self.nest()?;
                self.i += 1;
                let e = self.expr_or()?;
                self.expect(&Tok::RParen, "`&&`, `||` or `)`")?;
                self.depth -= 1;
                Ok(e)
            }
            Some(Tok::Not) => Err(ParseError::new(
                pos,
                "unsupported construct: negation `!`; use != or !~",
            )),
            Some(Tok::Ident(b)) if (b == "true" || b == "false") && !self.followed_by_op() => {
                let v = b == "true";
                self.i += 1;
                Ok(Expr::Static(v))
            }
            Some(Tok::Ident(name)) if self.peek_at(1) == Some(&Tok::LParen) => {
                Err(unsupported_function(pos, name))
            }
            Some(Tok::Ident(_)) => self.comparison().map(Expr::Cmp),
            _ => Err(self.expected("a condition such as `span.x = \"y\"`")),
        }
    }

    fn followed_by_op(&self) -> bool {
        self.peek_at(1).and_then(cmp_op).is_some()
    }

    fn comparison(&mut self) -> Result<Comparison, ParseError> {
        let field_tok = self.next().expect("an identifier is next");
        let Tok::Ident(name) = &field_tok.tok else {
            unreachable!("comparison() starts at an identifier")
        };
        let field = parse_field(field_tok.pos, name)?;
        let op_pos = self.pos();
        let op = match self.peek() {
            Some(Tok::Arith(c)) => {
                return Err(ParseError::new(
                    op_pos,
                    format!("unsupported construct: arithmetic `{c}`"),
                ))
            }
            Some(t) => cmp_op(t),
            None => None,
        };
        let Some(op) = op else {
            return Err(self.expected(&format!(
                "a comparison after `{name}` (`=`, `!=`, `=~`, `!~`, `>`, `>=`, `<`, `<=`)"
            )));
        };
        self.i += 1;
        let value_pos = self.pos();
        let value = self.literal(name, op)?;
        if let Some(Tok::Arith(c)) = self.peek() {
            return Err(ParseError::new(
                self.pos(),
                format!("unsupported construct: arithmetic `{c}`"),
            ));
        }
        check_types(&field, op, &value).map_err(|m| ParseError::new(value_pos, m))?;
        let regex = match (&value, op) {
            (Literal::Str(re), CmpOp::Re | CmpOp::NotRe) => Some(
                regex::RegexBuilder::new(&format!("^(?:{re})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| ParseError::new(value_pos, format!("invalid regex: {e}")))?,
            ),
            _ => None,
        };
        Ok(Comparison {
            field,
            op,
            value,
            regex,
        })
    }

    fn literal(&mut self, field: &str, op: CmpOp) -> Result<Literal, ParseError> {
        let pos = self.pos();
        let lit = match self.peek().cloned() {
            Some(Tok::Str(s)) => Literal::Str(s),
            Some(Tok::Int(i)) => Literal::Int(i),
            Some(Tok::Float(f)) => Literal::Float(f),
            Some(Tok::Duration(d)) => Literal::Duration(d),
            Some(Tok::Ident(word)) => match keyword_literal(&word) {
                Some(l) => l,
                None if parse_field(pos, &word).is_ok() => {
                    return Err(ParseError::new(
                        pos,
                        format!(
                            "unsupported construct: comparing two fields (`{field} {} {word}`); compare a field with a value",
                            op.as_str()
                        ),
                    ))
                }
                None => {
                    return Err(ParseError::new(
                        pos,
                        format!("`{word}` is not a value; quote strings: \"{word}\""),
                    ))
                }
            },
            _ => return Err(self.expected(&format!("a value after `{field} {}`", op.as_str()))),
        };
        self.i += 1;
        Ok(lit)
    }
}

fn keyword_literal(word: &str) -> Option<Literal> {
    Some(match word {
        "true" => Literal::Bool(true),
        "false" => Literal::Bool(false),
        "nil" => Literal::Nil,
        "error" => Literal::Status(SpanStatus::Error),
        "ok" => Literal::Status(SpanStatus::Ok),
        "unset" => Literal::Status(SpanStatus::Unset),
        "unspecified" => Literal::Kind(SpanKind::Unspecified),
        "internal" => Literal::Kind(SpanKind::Internal),
        "server" => Literal::Kind(SpanKind::Server),
        "client" => Literal::Kind(SpanKind::Client),
        "producer" => Literal::Kind(SpanKind::Producer),
        "consumer" => Literal::Kind(SpanKind::Consumer),
        _ => return None,
    })
}

/// A name as a field: an intrinsic (current or older spelling) or a scoped
/// attribute.
pub fn parse_field(pos: usize, name: &str) -> Result<Field, ParseError> {
    let intrinsic = match name {
        "name" | "span:name" => Some(Intrinsic::Name),
        "status" | "span:status" => Some(Intrinsic::Status),
        "statusMessage" | "span:statusMessage" => Some(Intrinsic::StatusMessage),
        "kind" | "span:kind" => Some(Intrinsic::Kind),
        "duration" | "span:duration" => Some(Intrinsic::Duration),
        "trace:duration" | "traceDuration" => Some(Intrinsic::TraceDuration),
        "trace:rootService" | "rootServiceName" => Some(Intrinsic::RootService),
        "trace:rootName" | "rootName" => Some(Intrinsic::RootName),
        _ => None,
    };
    if let Some(i) = intrinsic {
        return Ok(Field::Intrinsic(i));
    }
    let (scope, attr) = if let Some(a) = name.strip_prefix("span.") {
        (Scope::Span, a)
    } else if let Some(a) = name.strip_prefix("resource.") {
        (Scope::Resource, a)
    } else if let Some(a) = name.strip_prefix('.') {
        (Scope::Any, a)
    } else {
        return Err(unknown_name(pos, name));
    };
    if attr.is_empty() {
        return Err(ParseError::new(pos, format!("`{name}` names no attribute")));
    }
    Ok(Field::Attribute {
        scope,
        name: attr.to_string(),
    })
}

fn unknown_name(pos: usize, name: &str) -> ParseError {
    const SCOPES: &[&str] = &["parent", "event", "link", "instrumentation", "scope"];
    if let Some((scope, _)) = name.split_once(['.', ':']) {
        if SCOPES.contains(&scope) || name.contains(':') {
            return ParseError::new(
                pos,
                format!(
                    "unsupported construct: `{name}` (only span., resource. and unscoped . attributes, and the intrinsics name, status, statusMessage, kind, duration, trace:duration, trace:rootService, trace:rootName)"
                ),
            );
        }
    }
    if [
        "parent",
        "childCount",
        "nestedSetLeft",
        "nestedSetRight",
        "nestedSetParent",
    ]
    .contains(&name)
    {
        return ParseError::new(pos, format!("unsupported construct: intrinsic `{name}`"));
    }
    ParseError::new(
        pos,
        format!("unknown name `{name}`: write attributes as span.x, resource.x or .x"),
    )
}

fn unsupported_function(pos: usize, name: &str) -> ParseError {
    if UNSUPPORTED_FUNCTIONS.contains(&name) {
        ParseError::new(pos, format!("unsupported construct: `{name}()`"))
    } else {
        ParseError::new(
            pos,
            format!("unknown function `{name}()` (supported: count, avg, min, max, sum)"),
        )
    }
}

fn unsupported_structural(pos: usize, op: &str) -> ParseError {
    ParseError::new(
        pos,
        format!("unsupported construct: structural operator `{op}` between spansets (only `&&` and `||`)"),
    )
}

/// Whether `field op value` can be evaluated; the error says why not.
fn check_types(field: &Field, op: CmpOp, value: &Literal) -> Result<(), String> {
    let regex = matches!(op, CmpOp::Re | CmpOp::NotRe);
    let eq_only = matches!(op, CmpOp::Eq | CmpOp::Ne);
    match field {
        Field::Intrinsic(Intrinsic::Status) => match value {
            Literal::Status(_) if eq_only => Ok(()),
            _ => Err("status compares with = or != to error, ok or unset".into()),
        },
        Field::Intrinsic(Intrinsic::Kind) => match value {
            Literal::Kind(_) if eq_only => Ok(()),
            _ => Err(
                "kind compares with = or != to unspecified, internal, server, client, producer or consumer".into(),
            ),
        },
        Field::Intrinsic(Intrinsic::Duration | Intrinsic::TraceDuration) => match value {
            Literal::Duration(_) if !regex => Ok(()),
            _ => Err("a duration compares with a duration such as 150ms or 1.5s".into()),
        },
        Field::Intrinsic(_) => match value {
            Literal::Str(_) => Ok(()),
            _ => Err("name, statusMessage and the root names compare with a string".into()),
        },
        Field::Attribute { .. } => match value {
            Literal::Status(_) | Literal::Kind(_) => {
                Err("an attribute compares with a string, a number, a boolean, a duration or nil".into())
            }
            Literal::Str(_) => Ok(()),
            _ if regex => Err("=~ and !~ need a string (a regular expression)".into()),
            Literal::Bool(_) | Literal::Nil if !eq_only => {
                Err("booleans and nil compare with = or != only".into())
            }
            _ => Ok(()),
        },
    }
}
