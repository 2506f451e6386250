//! A recursive-descent parser for the LogQL subset (grammar in
//! docs/grafana.md). Errors read like Loki's (`parse error at line 1, col
//! 7: ...`) because Grafana shows them to the user as they are.

use regex::{Regex, RegexBuilder};

use super::ast::*;
use super::lexer::{lex, Tok, Token};

/// Longest query accepted, in bytes (Grafana's queries are far shorter).
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Deepest nesting of parentheses and aggregations accepted.
pub const MAX_DEPTH: usize = 32;
/// Compiled size a regex may reach: a hostile pattern fails to compile
/// instead of taking the node's memory.
const MAX_REGEX_BYTES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("parse error at line {line}, col {col}: {message}")]
    Syntax {
        line: usize,
        col: usize,
        message: String,
    },
    #[error(
        "parse error : queries require at least one regexp or equality matcher that does not \
         have an empty-compatible value. For instance, app=~\".*\" does not meet this \
         requirement, but app=~\".+\" will"
    )]
    EmptySelector,
    #[error("parse error : the query is {0} bytes long; the limit is {MAX_QUERY_BYTES}")]
    TooLong(usize),
    #[error("parse error : the query nests more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

impl ParseError {
    /// A syntax error at byte offset `at` of `src`.
    pub(super) fn at(src: &str, at: usize, message: String) -> ParseError {
        let before = &src[..at.min(src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        ParseError::Syntax { line, col, message }
    }
}

/// Parses a whole query.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(ParseError::TooLong(src.len()));
    }
    let tokens = lex(src)?;
    let mut p = Parser {
        src,
        tokens,
        pos: 0,
        depth: 0,
    };
    let expr = p.expr(0)?;
    if let Some(t) = p.peek_token() {
        return Err(p.unexpected(t.clone(), "end of query"));
    }
    Ok(match expr {
        Node::Log(l) => Expr::Log(l),
        Node::Metric(m) => Expr::Metric(m),
    })
}

/// A parsed operand: a log query may only stand alone.
enum Node {
    Log(LogExpr),
    Metric(MetricExpr),
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("IDENTIFIER {s:?}"),
        Tok::Str(s) => format!("STRING {s:?}"),
        Tok::Number(n) => format!("NUMBER {n}"),
        Tok::Duration(_) => "DURATION".into(),
        Tok::LBrace => "{".into(),
        Tok::RBrace => "}".into(),
        Tok::LParen => "(".into(),
        Tok::RParen => ")".into(),
        Tok::LBracket => "[".into(),
        Tok::RBracket => "]".into(),
        Tok::Comma => ",".into(),
        Tok::Pipe => "|".into(),
        Tok::PipeExact => "|=".into(),
        Tok::PipeMatch => "|~".into(),
        Tok::Neq => "!=".into(),
        Tok::Nre => "!~".into(),
        Tok::Eq => "=".into(),
        Tok::EqEq => "==".into(),
        Tok::Re => "=~".into(),
        Tok::Gt => ">".into(),
        Tok::Gte => ">=".into(),
        Tok::Lt => "<".into(),
        Tok::Lte => "<=".into(),
        Tok::Plus => "+".into(),
        Tok::Minus => "-".into(),
        Tok::Star => "*".into(),
        Tok::Slash => "/".into(),
        Tok::Percent => "%".into(),
        Tok::Caret => "^".into(),
    }
}

fn binop(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Plus => (BinOp::Add, 1),
        Tok::Minus => (BinOp::Sub, 1),
        Tok::Star => (BinOp::Mul, 2),
        Tok::Slash => (BinOp::Div, 2),
        Tok::Percent => (BinOp::Mod, 2),
        Tok::Caret => (BinOp::Pow, 3),
        _ => return None,
    })
}

fn range_fn(name: &str) -> Option<RangeFn> {
    Some(match name {
        "count_over_time" => RangeFn::CountOverTime,
        "rate" => RangeFn::Rate,
        "bytes_over_time" => RangeFn::BytesOverTime,
        "bytes_rate" => RangeFn::BytesRate,
        _ => return None,
    })
}

fn agg_op(name: &str) -> Option<AggOp> {
    Some(match name {
        "sum" => AggOp::Sum,
        "count" => AggOp::Count,
        "min" => AggOp::Min,
        "max" => AggOp::Max,
        "avg" => AggOp::Avg,
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek_token(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek(&self) -> Option<&Tok> {
        self.peek_token().map(|t| &t.tok)
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        let t = self.tokens.get(self.pos).cloned().ok_or_else(|| {
            ParseError::at(
                self.src,
                self.src.len(),
                "syntax error: unexpected end of query".into(),
            )
        })?;
        self.pos += 1;
        Ok(t)
    }

    fn unexpected(&self, t: Token, expecting: &str) -> ParseError {
        ParseError::at(
            self.src,
            t.at,
            format!(
                "syntax error: unexpected {}, expecting {expecting}",
                describe(&t.tok)
            ),
        )
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<Token, ParseError> {
        let t = self.next()?;
        if t.tok == want {
            Ok(t)
        } else {
            Err(self.unexpected(t, what))
        }
    }

    fn eat(&mut self, want: &Tok) -> bool {
        if self.peek() == Some(want) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_ident(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, ParseError> {
        let t = self.next()?;
        match t.tok {
            Tok::Ident(s) => Ok(s),
            _ => Err(self.unexpected(t, what)),
        }
    }

    fn string(&mut self) -> Result<(String, usize), ParseError> {
        let t = self.next()?;
        match t.tok {
            Tok::Str(s) => Ok((s, t.at)),
            _ => Err(self.unexpected(t, "STRING")),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        Ok(())
    }

    fn regex(&self, pattern: &str, anchored: bool, at: usize) -> Result<Regex, ParseError> {
        let full = if anchored {
            format!("^(?:{pattern})$")
        } else {
            pattern.to_string()
        };
        RegexBuilder::new(&full)
            .size_limit(MAX_REGEX_BYTES)
            .build()
            .map_err(|e| ParseError::at(self.src, at, format!("invalid regex {pattern:?}: {e}")))
    }

    /// Operands joined by binary operators of precedence `min_prec` or more.
    fn expr(&mut self, min_prec: u8) -> Result<Node, ParseError> {
        self.enter()?;
        let mut lhs = self.operand()?;
        while let Some((op, prec)) = self.peek().and_then(binop) {
            if prec < min_prec {
                break;
            }
            let op_tok = self.next()?;
            // `^` binds to the right, the others to the left.
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            let (Node::Metric(l), Node::Metric(r)) = (lhs, rhs) else {
                return Err(ParseError::at(
                    self.src,
                    op_tok.at,
                    "syntax error: a log query cannot be an operand of a binary operator".into(),
                ));
            };
            lhs = Node::Metric(MetricExpr::Binary {
                op,
                lhs: Box::new(l),
                rhs: Box::new(r),
            });
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn operand(&mut self) -> Result<Node, ParseError> {
        let t = self.next()?;
        match t.tok {
            Tok::LBrace => {
                self.pos -= 1;
                let log = self.log_expr()?;
                if let Some(Tok::LBracket) = self.peek() {
                    let t = self.next()?;
                    return Err(ParseError::at(
                        self.src,
                        t.at,
                        "syntax error: a range vector must be inside a range aggregation such as count_over_time".into(),
                    ));
                }
                Ok(Node::Log(log))
            }
            Tok::LParen => {
                let inner = self.expr(0)?;
                self.expect(Tok::RParen, ")")?;
                Ok(inner)
            }
            Tok::Number(n) => Ok(Node::Metric(MetricExpr::Scalar(n))),
            Tok::Minus => match self.next()? {
                Token {
                    tok: Tok::Number(n),
                    ..
                } => Ok(Node::Metric(MetricExpr::Scalar(-n))),
                other => Err(self.unexpected(other, "NUMBER")),
            },
            Tok::Ident(ref name) => {
                if let Some(func) = range_fn(name) {
                    return self.range_aggregation(func).map(Node::Metric);
                }
                if let Some(op) = agg_op(name) {
                    return self.vector_aggregation(op).map(Node::Metric);
                }
                if name == "vector" {
                    self.expect(Tok::LParen, "(")?;
                    let v = match self.next()? {
                        Token {
                            tok: Tok::Number(n),
                            ..
                        } => n,
                        other => return Err(self.unexpected(other, "NUMBER")),
                    };
                    self.expect(Tok::RParen, ")")?;
                    return Ok(Node::Metric(MetricExpr::Vector(v)));
                }
                Err(ParseError::at(
                    self.src,
                    t.at,
                    format!(
                        "syntax error: unexpected IDENTIFIER {name:?}: not a supported function"
                    ),
                ))
            }
            _ => Err(self.unexpected(t, "{, ( or a function")),
        }
    }

    /// `func(<log query> [range])`; the range may also follow the selector.
    fn range_aggregation(&mut self, func: RangeFn) -> Result<MetricExpr, ParseError> {
        self.expect(Tok::LParen, "(")?;
        let start = self.peek_token().map_or(self.src.len(), |t| t.at);
        if self.peek() == Some(&Tok::LParen) {
            // `count_over_time(({a="b"})[5m])` is not worth supporting.
            return Err(ParseError::at(
                self.src,
                start,
                "syntax error: expecting a stream selector".into(),
            ));
        }
        let selector = self.selector()?;
        let mut range_nanos = self.range()?;
        let stages = self.pipeline()?;
        if range_nanos.is_none() {
            range_nanos = self.range()?;
        }
        let Some(range_nanos) = range_nanos else {
            let t = self.next()?;
            return Err(self.unexpected(t, "a range such as [5m]"));
        };
        self.expect(Tok::RParen, ")")?;
        Ok(MetricExpr::Range {
            func,
            log: LogExpr { selector, stages },
            range_nanos,
        })
    }

    fn range(&mut self) -> Result<Option<u64>, ParseError> {
        if !self.eat(&Tok::LBracket) {
            return Ok(None);
        }
        let t = self.next()?;
        let Tok::Duration(d) = t.tok else {
            return Err(self.unexpected(t, "DURATION"));
        };
        self.expect(Tok::RBracket, "]")?;
        Ok(Some(d))
    }

    /// `op [by|without (labels)] (expr) [by|without (labels)]`.
    fn vector_aggregation(&mut self, op: AggOp) -> Result<MetricExpr, ParseError> {
        self.enter()?;
        let mut grouping = self.grouping()?;
        let open = self.expect(Tok::LParen, "(")?;
        let inner = match self.expr(0)? {
            Node::Metric(m) => m,
            Node::Log(_) => {
                return Err(ParseError::at(
                    self.src,
                    open.at,
                    "syntax error: an aggregation needs a metric query such as count_over_time(...), not a log query".into(),
                ))
            }
        };
        self.expect(Tok::RParen, ")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        self.depth -= 1;
        Ok(MetricExpr::Agg {
            op,
            grouping,
            inner: Box::new(inner),
        })
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let by = if self.eat_ident("by") {
            true
        } else if self.eat_ident("without") {
            false
        } else {
            return Ok(None);
        };
        self.expect(Tok::LParen, "(")?;
        let mut labels = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                labels.push(self.ident("a label name")?);
                if self.eat(&Tok::RParen) {
                    break;
                }
                self.expect(Tok::Comma, ", or )")?;
            }
        }
        Ok(Some(if by {
            Grouping::By(labels)
        } else {
            Grouping::Without(labels)
        }))
    }

    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let selector = self.selector()?;
        let stages = self.pipeline()?;
        Ok(LogExpr { selector, stages })
    }

    /// `{matcher, ...}`, with at least one matcher no empty value satisfies.
    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.expect(Tok::LBrace, "{")?;
        let mut matchers = Vec::new();
        loop {
            matchers.push(self.matcher()?);
            if self.eat(&Tok::RBrace) {
                break;
            }
            self.expect(Tok::Comma, ", or }")?;
        }
        if matchers.iter().all(|m| m.matches(None)) {
            return Err(ParseError::EmptySelector);
        }
        Ok(matchers)
    }

    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        let name = self.ident("IDENTIFIER")?;
        let t = self.next()?;
        let op = match t.tok {
            Tok::Eq => MatchOp::Eq,
            Tok::Neq => MatchOp::Neq,
            Tok::Re => MatchOp::Re,
            Tok::Nre => MatchOp::Nre,
            _ => return Err(self.unexpected(t, "=, !=, =~ or !~")),
        };
        let (value, at) = self.string()?;
        self.string_matcher(name, op, value, at)
    }

    fn string_matcher(
        &self,
        name: String,
        op: MatchOp,
        value: String,
        at: usize,
    ) -> Result<Matcher, ParseError> {
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(self.regex(&value, true, at)?),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    fn pipeline(&mut self) -> Result<Vec<Stage>, ParseError> {
        let mut stages = Vec::new();
        loop {
            let line_op = match self.peek() {
                Some(Tok::PipeExact) => LineOp::Contains,
                Some(Tok::Neq) => LineOp::NotContains,
                Some(Tok::PipeMatch) => LineOp::Matches,
                Some(Tok::Nre) => LineOp::NotMatches,
                Some(Tok::Pipe) => {
                    self.pos += 1;
                    stages.push(self.pipe_stage()?);
                    continue;
                }
                _ => return Ok(stages),
            };
            self.pos += 1;
            let (needle, at) = self.string()?;
            let re = match line_op {
                LineOp::Matches | LineOp::NotMatches => Some(self.regex(&needle, false, at)?),
                _ => None,
            };
            stages.push(Stage::Line(LineFilter {
                op: line_op,
                needle,
                re,
            }));
        }
    }

    /// What follows a `|`: a parser, `drop`, or a label filter.
    fn pipe_stage(&mut self) -> Result<Stage, ParseError> {
        let Some(t) = self.peek_token().cloned() else {
            return Err(ParseError::at(
                self.src,
                self.src.len(),
                "syntax error: unexpected end of query after |".into(),
            ));
        };
        if let Tok::Ident(word) = &t.tok {
            let after_is_operator = matches!(
                self.tokens.get(self.pos + 1).map(|t| &t.tok),
                Some(
                    Tok::Eq
                        | Tok::EqEq
                        | Tok::Neq
                        | Tok::Re
                        | Tok::Nre
                        | Tok::Gt
                        | Tok::Gte
                        | Tok::Lt
                        | Tok::Lte
                )
            );
            if !after_is_operator {
                self.pos += 1;
                return match word.as_str() {
                    "json" => Ok(Stage::Json),
                    "logfmt" => Ok(Stage::Logfmt),
                    "drop" => self.drop_stage(),
                    other => Err(ParseError::at(
                        self.src,
                        t.at,
                        format!("syntax error: unsupported pipeline stage {other:?} (supported: json, logfmt, drop, label filters)"),
                    )),
                };
            }
        }
        self.label_or().map(Stage::Label)
    }

    fn drop_stage(&mut self) -> Result<Stage, ParseError> {
        let mut names = vec![self.ident("a label name")?];
        while self.eat(&Tok::Comma) {
            names.push(self.ident("a label name")?);
        }
        Ok(Stage::Drop(names))
    }

    fn label_or(&mut self) -> Result<LabelFilter, ParseError> {
        self.enter()?;
        let mut f = self.label_and()?;
        while self.eat_ident("or") {
            f = LabelFilter::Or(Box::new(f), Box::new(self.label_and()?));
        }
        self.depth -= 1;
        Ok(f)
    }

    fn label_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut f = self.label_atom()?;
        while self.eat_ident("and") || self.eat(&Tok::Comma) {
            f = LabelFilter::And(Box::new(f), Box::new(self.label_atom()?));
        }
        Ok(f)
    }

    fn label_atom(&mut self) -> Result<LabelFilter, ParseError> {
        if self.eat(&Tok::LParen) {
            let f = self.label_or()?;
            self.expect(Tok::RParen, ")")?;
            return Ok(f);
        }
        let name = self.ident("a label name")?;
        let op_tok = self.next()?;
        let value_tok = self.next()?;
        let negative = value_tok.tok == Tok::Minus;
        let value_tok = if negative { self.next()? } else { value_tok };
        match (&op_tok.tok, value_tok.tok) {
            (Tok::Eq | Tok::EqEq, Tok::Str(v)) if !negative => {
                self.string_matcher(name, MatchOp::Eq, v, value_tok.at)
            }
            (Tok::Neq, Tok::Str(v)) if !negative => {
                self.string_matcher(name, MatchOp::Neq, v, value_tok.at)
            }
            (Tok::Re, Tok::Str(v)) if !negative => {
                self.string_matcher(name, MatchOp::Re, v, value_tok.at)
            }
            (Tok::Nre, Tok::Str(v)) if !negative => {
                self.string_matcher(name, MatchOp::Nre, v, value_tok.at)
            }
            (op, Tok::Number(n)) => {
                let cmp = match op {
                    Tok::Eq | Tok::EqEq => Cmp::Eq,
                    Tok::Neq => Cmp::Neq,
                    Tok::Gt => Cmp::Gt,
                    Tok::Gte => Cmp::Gte,
                    Tok::Lt => Cmp::Lt,
                    Tok::Lte => Cmp::Lte,
                    _ => return Err(self.unexpected(op_tok, "a comparison for a number")),
                };
                let value = if negative { -n } else { n };
                return Ok(LabelFilter::Num { name, cmp, value });
            }
            (_, other) => Err(self.unexpected(
                Token {
                    tok: other,
                    at: value_tok.at,
                },
                "STRING or NUMBER (and =, !=, =~, !~ for strings)",
            )),
        }
        .map(LabelFilter::Str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(q: &str) -> LogExpr {
        match parse(q).unwrap() {
            Expr::Log(l) => l,
            Expr::Metric(m) => panic!("{q}: metric {m:?}"),
        }
    }

    fn metric(q: &str) -> MetricExpr {
        match parse(q).unwrap() {
            Expr::Metric(m) => m,
            Expr::Log(l) => panic!("{q}: log {l:?}"),
        }
    }

    fn err(q: &str) -> String {
        parse(q).expect_err(q).to_string()
    }

    #[test]
    fn selectors_take_all_four_matchers() {
        let l = log(r#"{service_name="api", level!="debug", host=~"web-.*", env!~"dev|test"}"#);
        let ops: Vec<MatchOp> = l.selector.iter().map(|m| m.op).collect();
        assert_eq!(ops, [MatchOp::Eq, MatchOp::Neq, MatchOp::Re, MatchOp::Nre]);
        assert_eq!(l.equal_value("service_name"), Some("api"));
        assert_eq!(l.equal_value("level"), None);
        assert!(l.stages.is_empty());
    }

    #[test]
    fn label_regexes_are_anchored() {
        let l = log(r#"{a=~"b.*"}"#);
        assert!(l.selector[0].matches(Some("bcd")));
        assert!(!l.selector[0].matches(Some("abc")));
        let l = log(r#"{a=~"x", b!~"y"}"#);
        assert!(l.selector[1].matches(Some("yy")));
        assert!(!l.selector[1].matches(Some("y")));
    }

    #[test]
    fn empty_compatible_selectors_are_refused_like_loki() {
        for q in [
            r#"{a=~".*"}"#,
            r#"{a!="x"}"#,
            r#"{a=""}"#,
            r#"{a!~"x", b=~".*"}"#,
        ] {
            assert_eq!(parse(q).unwrap_err(), ParseError::EmptySelector, "{q}");
        }
        assert!(
            err("{}").contains("unexpected }, expecting IDENTIFIER"),
            "{}",
            err("{}")
        );
        assert!(parse(r#"{a=~".+"}"#).is_ok());
    }

    #[test]
    fn chained_line_filters_and_parsers() {
        let l = log(
            r#"{a="b"} |= "x" != "y" |~ `\d+` !~ "z" | json | status >= 500 and method="GET" | logfmt | drop __error__, b"#,
        );
        assert_eq!(l.stages.len(), 8);
        assert!(
            matches!(&l.stages[0], Stage::Line(f) if f.op == LineOp::Contains && f.needle == "x")
        );
        assert!(
            matches!(&l.stages[2], Stage::Line(f) if f.op == LineOp::Matches && f.re.is_some())
        );
        assert!(matches!(l.stages[4], Stage::Json));
        assert!(matches!(&l.stages[5], Stage::Label(LabelFilter::And(..))));
        assert!(matches!(&l.stages[7], Stage::Drop(d) if d == &["__error__", "b"]));
    }

    #[test]
    fn grafana_log_volume_query() {
        let m = metric(
            r#"sum by (level, detected_level) (count_over_time({service_name="api"} |= "x" | drop __error__ [1m]))"#,
        );
        let MetricExpr::Agg {
            op,
            grouping,
            inner,
        } = m
        else {
            panic!()
        };
        assert_eq!(op, AggOp::Sum);
        assert_eq!(
            grouping,
            Some(Grouping::By(vec!["level".into(), "detected_level".into()]))
        );
        assert!(matches!(
            *inner,
            MetricExpr::Range {
                func: RangeFn::CountOverTime,
                range_nanos: 60_000_000_000,
                ..
            }
        ));
    }

    #[test]
    fn range_may_follow_the_selector_and_grouping_may_trail() {
        let m = metric(r#"sum(rate({a="b"}[5m] |= "x")) without (c)"#);
        assert!(matches!(
            m,
            MetricExpr::Agg {
                grouping: Some(Grouping::Without(_)),
                ..
            }
        ));
        assert!(err(r#"rate({a="b"})"#).contains("expecting a range"));
        assert!(err(r#"rate({a="b"}[5m] [5m])"#).contains("unexpected"));
    }

    #[test]
    fn arithmetic_precedence() {
        let m = metric("vector(1)+vector(1)*2^3^2");
        let MetricExpr::Binary { op, rhs, .. } = m else {
            panic!()
        };
        assert_eq!(op, BinOp::Add);
        let MetricExpr::Binary { op, rhs, .. } = *rhs else {
            panic!()
        };
        assert_eq!(op, BinOp::Mul);
        // `^` is right-associative: 2^(3^2).
        assert!(
            matches!(*rhs, MetricExpr::Binary { op: BinOp::Pow, ref rhs, .. } if matches!(**rhs, MetricExpr::Binary { .. }))
        );
    }

    #[test]
    fn errors_have_positions_and_limits_hold() {
        assert_eq!(
            err(r#"{a="b"} |= 5"#),
            "parse error at line 1, col 12: syntax error: unexpected NUMBER 5, expecting STRING"
        );
        assert!(err(r#"{a="b"} | line_format "x""#).contains("unsupported pipeline stage"));
        assert!(err(r#"{a=~"("}"#).contains("invalid regex"));
        assert!(err(r#"{a="b"}[5m]"#).contains("range aggregation"));
        assert!(err(r#"{a="b"} + 1"#).contains("log query"));
        assert!(err(r#"sum({a="b"})"#).contains("metric query"));
        assert!(err("nosuch(1)").contains("not a supported function"));
        assert!(err(r#"{a="b"} extra"#).contains("expecting end of query"));
        let deep = format!("{}vector(1){}", "(".repeat(100), ")".repeat(100));
        assert_eq!(parse(&deep).unwrap_err(), ParseError::TooDeep);
        let long = format!(r#"{{a="{}"}}"#, "x".repeat(MAX_QUERY_BYTES));
        assert!(matches!(parse(&long), Err(ParseError::TooLong(_))));
        assert!(err("{a=\"b\",\n b=}").starts_with("parse error at line 2, col 4"));
    }

    #[test]
    fn label_filters_take_numbers_and_strings() {
        let l = log(r#"{a="b"} | json | latency > -1.5 or (code == 200, path=~"/api.*")"#);
        let Stage::Label(LabelFilter::Or(lhs, rhs)) = &l.stages[1] else {
            panic!("{:?}", l.stages)
        };
        assert!(matches!(**lhs, LabelFilter::Num { cmp: Cmp::Gt, value, .. } if value == -1.5));
        assert!(matches!(**rhs, LabelFilter::And(..)));
        assert!(err(r#"{a="b"} | x > "y""#).contains("expecting STRING or NUMBER"));
        assert!(err(r#"{a="b"} | x =~ 5"#).contains("a comparison for a number"));
    }
}
