//! Series selectors as the label and series endpoints take them in
//! `match[]`: `name{label="v", other=~"re", x!="y", z!~"re"}`, the name or
//! the braces optional. Regexes are fully anchored, as in Prometheus.

use super::select::Selector;
use super::series::LabelSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

#[derive(Clone, Debug)]
pub struct LabelMatcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    /// For the regex operators: `^(?:value)$`.
    regex: Option<regex::Regex>,
}

impl LabelMatcher {
    pub fn new(name: &str, op: Op, value: &str) -> Result<LabelMatcher, String> {
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                regex::Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(LabelMatcher {
            name: name.into(),
            op,
            value: value.into(),
            regex,
        })
    }

    /// Whether a label value (empty when the label is missing) matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            Op::Equal => v == self.value,
            Op::NotEqual => v != self.value,
            Op::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            Op::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// The value of label `name` in a sorted label set ("" when missing).
pub fn label_value<'a>(labels: &'a LabelSet, name: &str) -> &'a str {
    labels
        .binary_search_by(|(k, _)| k.as_str().cmp(name))
        .map(|i| labels[i].1.as_str())
        .unwrap_or("")
}

/// Every matcher must match.
pub struct Matchers(pub Vec<LabelMatcher>);

impl Selector for Matchers {
    fn name_may_match(&self, name: &str) -> bool {
        self.0
            .iter()
            .filter(|m| m.name == "__name__")
            .all(|m| m.matches(name))
    }
    fn accepts(&self, labels: &LabelSet) -> bool {
        self.0
            .iter()
            .all(|m| m.matches(label_value(labels, &m.name)))
    }
}

/// Accepts every series (label endpoints without `match[]`).
pub struct Everything;

impl Selector for Everything {
    fn name_may_match(&self, _: &str) -> bool {
        true
    }
    fn accepts(&self, _: &LabelSet) -> bool {
        true
    }
}

/// Parses a series selector. As in Prometheus, at least one matcher must
/// not match the empty string (a selector must not select everything).
pub fn parse(s: &str) -> Result<Matchers, String> {
    let mut p = Parser {
        s: s.as_bytes(),
        at: 0,
        src: s,
    };
    let mut out = Vec::new();
    p.skip_ws();
    if let Some(name) = p.ident(true) {
        out.push(LabelMatcher::new("__name__", Op::Equal, &name)?);
    }
    p.skip_ws();
    if p.eat(b'{') {
        loop {
            p.skip_ws();
            if p.eat(b'}') {
                break;
            }
            let label = p.ident(false).ok_or_else(|| p.error("a label name"))?;
            p.skip_ws();
            let op = p.op().ok_or_else(|| p.error("=, !=, =~ or !~"))?;
            p.skip_ws();
            let value = p.string()?;
            out.push(LabelMatcher::new(&label, op, &value)?);
            p.skip_ws();
            if p.eat(b',') {
                continue;
            }
            if p.eat(b'}') {
                break;
            }
            return Err(p.error(", or }"));
        }
    }
    p.skip_ws();
    if p.at != p.s.len() {
        return Err(p.error("the end of the selector"));
    }
    if out.is_empty() || out.iter().all(|m| m.matches("")) {
        return Err(format!(
            "selector {s:?} must contain at least one non-empty matcher"
        ));
    }
    Ok(Matchers(out))
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn error(&self, wanted: &str) -> String {
        format!(
            "parse error in selector {:?} at character {}: expected {wanted}",
            self.src,
            self.at + 1
        )
    }
    fn skip_ws(&mut self) {
        while self.s.get(self.at).is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    /// A metric name (colons allowed) or a label name.
    fn ident(&mut self, metric: bool) -> Option<String> {
        let start = self.at;
        while let Some(&c) = self.s.get(self.at) {
            let ok = c.is_ascii_alphabetic()
                || c == b'_'
                || (metric && c == b':')
                || (self.at > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.at += 1;
        }
        (self.at > start).then(|| self.src[start..self.at].to_string())
    }
    fn op(&mut self) -> Option<Op> {
        let rest = &self.s[self.at..];
        let (op, len) = if rest.starts_with(b"=~") {
            (Op::Regex, 2)
        } else if rest.starts_with(b"!~") {
            (Op::NotRegex, 2)
        } else if rest.starts_with(b"!=") {
            (Op::NotEqual, 2)
        } else if rest.starts_with(b"=") {
            (Op::Equal, 1)
        } else {
            return None;
        };
        self.at += len;
        Some(op)
    }
    /// A quoted string: "..." or '...' with backslash escapes, or `...` raw.
    fn string(&mut self) -> Result<String, String> {
        let quote = match self.s.get(self.at) {
            Some(&q @ (b'"' | b'\'' | b'`')) => q,
            _ => return Err(self.error("a quoted string")),
        };
        self.at += 1;
        let mut out = String::new();
        let mut chars = self.src[self.at..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c as u32 == quote as u32 {
                self.at += i + 1;
                return Ok(out);
            }
            if c == '\\' && quote != b'`' {
                let Some((_, e)) = chars.next() else { break };
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
            } else {
                out.push(c);
            }
        }
        Err(self.error("a closing quote"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        let mut l: LabelSet = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        l
    }

    #[test]
    fn selectors_parse_and_match_like_prometheus() {
        let m =
            parse(r#"http_requests_total{code=~"2..", method!="POST", path!~"/a|/b",}"#).unwrap();
        assert_eq!(m.0.len(), 4);
        let ok = labels(&[
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("path", "/c"),
        ]);
        assert!(m.accepts(&ok));
        assert!(m.name_may_match("http_requests_total"));
        assert!(!m.name_may_match("up"));
        let regex_is_anchored = labels(&[("__name__", "http_requests_total"), ("code", "1200")]);
        assert!(!m.accepts(&regex_is_anchored));
        assert!(!m.accepts(&labels(&[
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("path", "/a")
        ])));
        let quoted = parse(r#"{__name__="a:b", x='it\'s', y=`raw\n`}"#).unwrap();
        assert_eq!(quoted.0[1].value, "it's");
        assert_eq!(quoted.0[2].value, "raw\\n");
        // A missing label matches as "".
        let missing = parse(r#"up{zone=""}"#).unwrap();
        assert!(missing.accepts(&labels(&[("__name__", "up")])));
        assert!(!missing.accepts(&labels(&[("__name__", "up"), ("zone", "a")])));
    }

    #[test]
    fn selectors_that_select_everything_or_do_not_parse_are_refused() {
        for bad in [
            "",
            "{}",
            r#"{a=""}"#,
            r#"{a=~".*"}"#,
            "up{",
            r#"up{a="b""#,
            "up{a}",
            "up x",
            r#"{a=~"("}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
