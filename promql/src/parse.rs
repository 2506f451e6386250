//! Parsing (delegated to `promql-parser`) and the check that a query uses only what this
//! engine evaluates. Anything else is refused up front with a `bad_data` error naming the
//! feature: a refused query is better than a silently wrong answer.

use promql_parser::parser::function::{register_extra_functions, Function};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, VectorMatchCardinality};

use crate::EngineError;

/// Functions this engine evaluates with Prometheus 2.42's semantics.
pub(crate) const SUPPORTED_FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Aggregation operators this engine evaluates.
pub(crate) const SUPPORTED_AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// Functions of Prometheus 2.42 that the parser no longer knows (renamed later), registered
/// with it once.
fn register_legacy_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Only fails if the parser gains a built-in of that name, which then parses it.
        let _ = register_extra_functions(vec![holt_winters]);
    });
}

/// The deepest expression tree accepted, estimated by [`depth_estimate`]. Parsing,
/// evaluating and dropping a tree all recurse once per level: a few thousand levels overflow
/// a 2 MiB thread stack and abort the process, so a small query must not be able to ask for
/// that. Real queries stay far below (Grafana's rarely pass 20).
pub(crate) const MAX_QUERY_DEPTH: usize = 256;

/// An upper bound of the tree depth of `query`, from its text alone (it must be known before
/// parsing, which recurses too): the deepest bracket nesting plus the number of operators
/// (a chain `a + b + c` nests one level per operator). Strings and comments are skipped.
pub(crate) fn depth_estimate(query: &str) -> usize {
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let mut chars = query.chars().peekable();
    let mut word = String::new();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if matches!(word.as_str(), "and" | "or" | "unless" | "atan2") {
            operators += 1;
        }
        word.clear();
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '^' | '<' | '>' | '!' | '=' => operators += 1,
            '"' | '\'' | '`' => skip_string(&mut chars, c),
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    deepest + operators
}

/// Consumes a string literal up to its closing `quote` (backslash escapes honoured except
/// in raw backtick strings).
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars>, quote: char) {
    while let Some(c) = chars.next() {
        if c == '\\' && quote != '`' {
            chars.next();
        } else if c == quote {
            return;
        }
    }
}

/// Parses `query` and checks that every node is supported.
pub(crate) fn parse_query(query: &str) -> Result<Expr, EngineError> {
    register_legacy_functions();
    if depth_estimate(query) > MAX_QUERY_DEPTH {
        return Err(EngineError::BadData(format!(
            "invalid parameter \"query\": the query nests more than {MAX_QUERY_DEPTH} levels \
             of operators and brackets"
        )));
    }
    let expr = parser::parse(query).map_err(|e| {
        EngineError::BadData(format!("invalid parameter \"query\": parse error: {e}"))
    })?;
    check_supported(&expr)?;
    Ok(expr)
}

fn unsupported(what: String) -> EngineError {
    EngineError::BadData(format!(
        "invalid parameter \"query\": {what} is not supported"
    ))
}

/// Walks the tree and refuses features outside Prometheus 2.42 or outside this engine.
fn check_supported(expr: &Expr) -> Result<(), EngineError> {
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !SUPPORTED_AGGREGATIONS.contains(&op.as_str()) {
                return Err(unsupported(format!("aggregation {op:?}")));
            }
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            check_supported(&a.expr)
        }
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                let f = &m.fill_values;
                if f.lhs.is_some() || f.rhs.is_some() {
                    return Err(unsupported("the fill modifier".into()));
                }
                if let VectorMatchCardinality::ManyToMany = m.card {
                    if !b.op.is_set_operator() {
                        return Err(unsupported("many-to-many matching".into()));
                    }
                }
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs),
        Expr::Call(c) => {
            if !SUPPORTED_FUNCTIONS.contains(&c.func.name) {
                return Err(unsupported(format!("function {:?}", c.func.name)));
            }
            c.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Extension(_) => Err(unsupported("an extension expression".into())),
    }
}

fn check_selector(vs: &parser::VectorSelector) -> Result<(), EngineError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(unsupported("`or` inside label matchers".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_bad_data() {
        let err = parse_query("sum(").unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
        let err = parse_query("no_such_function(x)").unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
    }

    #[test]
    fn features_outside_the_engine_name_themselves() {
        let err = parse_query("histogram_count(x)").unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
        assert!(err.to_string().contains("histogram_count"), "{err}");
        let err = parse_query("limitk(2, x)").unwrap_err();
        assert!(err.to_string().contains("limitk"), "{err}");
    }

    #[test]
    fn deeply_nested_queries_are_refused_before_parsing() {
        let deep = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
        let err = parse_query(&deep).unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
        let chain = vec!["x"; 5_000].join(" + ");
        assert!(parse_query(&chain)
            .unwrap_err()
            .to_string()
            .contains("nests"));
        let long_chain = vec!["x"; 200].join(" or ");
        parse_query(&long_chain).unwrap();
        // Operators inside strings and comments do not count (the braces and the matcher's
        // `=` do: the estimate is an upper bound).
        let quoted = format!("x{{a=\"{}\"}} # {}", "+".repeat(1_000), "(".repeat(1_000));
        assert_eq!(depth_estimate(&quoted), 2);
    }

    #[test]
    fn supported_queries_parse() {
        for q in [
            "1 + 1",
            "sum by (job) (rate(http_requests_total[5m]))",
            "a / on(job) group_left(x) b",
            "max_over_time(rate(x[1m])[10m:1m])",
        ] {
            parse_query(q).unwrap();
        }
    }
}
