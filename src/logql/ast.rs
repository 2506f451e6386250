//! A parsed LogQL query.

use regex::Regex;

/// A query: log lines or a metric computed from them.
#[derive(Clone, Debug)]
pub enum Expr {
    Log(LogExpr),
    Metric(MetricExpr),
}

/// A stream selector and the stages lines pass through.
#[derive(Clone, Debug)]
pub struct LogExpr {
    pub selector: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

impl LogExpr {
    /// The value an equality matcher of the selector requires of `label`
    /// (what lets a scan walk an index).
    pub fn equal_value(&self, label: &str) -> Option<&str> {
        self.selector
            .iter()
            .find(|m| m.name == label && m.op == MatchOp::Eq)
            .map(|m| m.value.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Neq,
    Re,
    Nre,
}

/// `name op "value"`. A label that is absent has the value "" (as in
/// Prometheus and Loki), and regexes match the whole value.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// The anchored regex, for `=~` and `!~`.
    pub re: Option<Regex>,
}

impl Matcher {
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Neq, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::Nre, Some(re)) => !re.is_match(v),
            (MatchOp::Re | MatchOp::Nre, None) => {
                unreachable!("the parser compiles every regex matcher")
            }
        }
    }
}

/// One pipeline stage.
#[derive(Clone, Debug)]
pub enum Stage {
    Line(LineFilter),
    Json,
    Logfmt,
    Label(LabelFilter),
    /// `| drop a, b`: removes labels (Grafana drops `__error__`).
    Drop(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`: the regex may match anywhere in the line.
    Matches,
    /// `!~`
    NotMatches,
}

#[derive(Clone, Debug)]
pub struct LineFilter {
    pub op: LineOp,
    pub needle: String,
    /// Unanchored, for `|~` and `!~`.
    pub re: Option<Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Clone, Debug)]
pub enum LabelFilter {
    /// A string comparison, like a selector's matcher.
    Str(Matcher),
    /// A numeric comparison; a value that is not a number never matches.
    Num {
        name: String,
        cmp: Cmp,
        value: f64,
    },
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Count,
    Min,
    Max,
    Avg,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

#[derive(Clone, Debug)]
pub enum MetricExpr {
    /// `count_over_time({...} [5m])` and its kin.
    Range {
        func: RangeFn,
        log: LogExpr,
        range_nanos: u64,
    },
    /// `sum by (a) (...)`.
    Agg {
        op: AggOp,
        grouping: Option<Grouping>,
        inner: Box<MetricExpr>,
    },
    /// `vector(1)`: one series without labels, the value at every step.
    Vector(f64),
    /// A number.
    Scalar(f64),
    Binary {
        op: BinOp,
        lhs: Box<MetricExpr>,
        rhs: Box<MetricExpr>,
    },
}

impl MetricExpr {
    /// Every range aggregation in the expression, left to right.
    pub fn ranges(&self) -> Vec<(&LogExpr, RangeFn, u64)> {
        let mut out = Vec::new();
        self.collect_ranges(&mut out);
        out
    }

    fn collect_ranges<'a>(&'a self, out: &mut Vec<(&'a LogExpr, RangeFn, u64)>) {
        match self {
            MetricExpr::Range {
                func,
                log,
                range_nanos,
            } => out.push((log, *func, *range_nanos)),
            MetricExpr::Agg { inner, .. } => inner.collect_ranges(out),
            MetricExpr::Binary { lhs, rhs, .. } => {
                lhs.collect_ranges(out);
                rhs.collect_ranges(out);
            }
            MetricExpr::Vector(_) | MetricExpr::Scalar(_) => {}
        }
    }
}
