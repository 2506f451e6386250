//! Running a pipeline over one log line: line filters, the `json` and
//! `logfmt` parsers, label filters and `drop`.

use super::ast::{Cmp, LabelFilter, LineFilter, LineOp, Stage};
use super::labels::{label_name, Labels};

/// Labels a parser may add to one line: a line of a million keys must not
/// become a million labels.
const MAX_PARSED_LABELS: usize = 256;
/// Deepest JSON object nesting flattened into labels.
const MAX_JSON_DEPTH: usize = 16;
/// The label a parser sets when the line is not what it expects.
pub const ERROR_LABEL: &str = "__error__";

/// A log entry's labels, by where they come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntryLabels {
    pub stream: Labels,
    pub metadata: Labels,
    /// Added by `json` and `logfmt` (and `__error__`).
    pub parsed: Labels,
}

impl EntryLabels {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.parsed
            .get(name)
            .or_else(|| self.metadata.get(name))
            .or_else(|| self.stream.get(name))
            .map(String::as_str)
    }

    fn remove(&mut self, name: &str) {
        self.stream.remove(name);
        self.metadata.remove(name);
        self.parsed.remove(name);
    }

    /// Adds a parsed label; one whose name the stream or the metadata
    /// already has gets `_extracted` appended, as in Loki.
    fn add_parsed(&mut self, name: String, value: String) {
        if self.parsed.len() >= MAX_PARSED_LABELS {
            return;
        }
        let name = if self.stream.contains_key(&name) || self.metadata.contains_key(&name) {
            format!("{name}_extracted")
        } else {
            name
        };
        self.parsed.entry(name).or_insert(value);
    }
}

/// Whether the line passes every stage; parsers add to `labels` on the way.
pub fn run(stages: &[Stage], line: &str, labels: &mut EntryLabels) -> bool {
    for stage in stages {
        let keep = match stage {
            Stage::Line(f) => line_matches(f, line),
            Stage::Json => {
                parse_json(line, labels);
                true
            }
            Stage::Logfmt => {
                parse_logfmt(line, labels);
                true
            }
            Stage::Label(f) => label_matches(f, labels),
            Stage::Drop(names) => {
                names.iter().for_each(|n| labels.remove(n));
                true
            }
        };
        if !keep {
            return false;
        }
    }
    true
}

pub fn line_matches(f: &LineFilter, line: &str) -> bool {
    match (f.op, &f.re) {
        (LineOp::Contains, _) => line.contains(f.needle.as_str()),
        (LineOp::NotContains, _) => !line.contains(f.needle.as_str()),
        (LineOp::Matches, Some(re)) => re.is_match(line),
        (LineOp::NotMatches, Some(re)) => !re.is_match(line),
        (LineOp::Matches | LineOp::NotMatches, None) => {
            unreachable!("the parser compiles every regex line filter")
        }
    }
}

fn label_matches(f: &LabelFilter, labels: &EntryLabels) -> bool {
    match f {
        LabelFilter::Str(m) => m.matches(labels.get(&m.name)),
        LabelFilter::Num { name, cmp, value } => {
            let Some(v) = labels.get(name).and_then(|s| s.trim().parse::<f64>().ok()) else {
                return false;
            };
            match cmp {
                Cmp::Eq => v == *value,
                Cmp::Neq => v != *value,
                Cmp::Gt => v > *value,
                Cmp::Gte => v >= *value,
                Cmp::Lt => v < *value,
                Cmp::Lte => v <= *value,
            }
        }
        LabelFilter::And(a, b) => label_matches(a, labels) && label_matches(b, labels),
        LabelFilter::Or(a, b) => label_matches(a, labels) || label_matches(b, labels),
    }
}

/// Every scalar of a JSON object, nested keys joined with `_`.
fn parse_json(line: &str, labels: &mut EntryLabels) {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(map)) => flatten_json("", &map, 0, labels),
        _ => labels.add_parsed(ERROR_LABEL.into(), "JSONParserErr".into()),
    }
}

fn flatten_json(
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
    labels: &mut EntryLabels,
) {
    for (k, v) in map {
        let name = if prefix.is_empty() {
            label_name(k)
        } else {
            format!("{prefix}_{}", label_name(k))
        };
        match v {
            serde_json::Value::Object(inner) if depth < MAX_JSON_DEPTH => {
                flatten_json(&name, inner, depth + 1, labels)
            }
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => {}
            serde_json::Value::String(s) => labels.add_parsed(name, s.clone()),
            serde_json::Value::Null => labels.add_parsed(name, String::new()),
            other => labels.add_parsed(name, other.to_string()),
        }
    }
}

/// `key=value key2="quoted value" flag` pairs; a bare key has the value "".
fn parse_logfmt(line: &str, labels: &mut EntryLabels) {
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = &rest[key_end..];
        let value = if let Some(after) = rest.strip_prefix('=') {
            match logfmt_value(after) {
                Some((v, remaining)) => {
                    rest = remaining;
                    v
                }
                None => {
                    labels.add_parsed(ERROR_LABEL.into(), "LogfmtParserErr".into());
                    return;
                }
            }
        } else {
            String::new()
        };
        if key.is_empty() {
            labels.add_parsed(ERROR_LABEL.into(), "LogfmtParserErr".into());
            return;
        }
        labels.add_parsed(label_name(key), value);
        rest = rest.trim_start();
    }
}

/// A logfmt value and what follows it; `None` for an unterminated quote.
fn logfmt_value(s: &str) -> Option<(String, &str)> {
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        return Some((s[..end].to_string(), &s[end..]));
    };
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &quoted[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::ast::{Expr, LogExpr};
    use super::super::parse;
    use super::*;

    fn pipeline(q: &str) -> LogExpr {
        match parse(q).unwrap() {
            Expr::Log(l) => l,
            Expr::Metric(_) => panic!(),
        }
    }

    fn passes(q: &str, line: &str) -> Option<EntryLabels> {
        let mut labels = EntryLabels::default();
        labels.stream.insert("a".into(), "b".into());
        run(&pipeline(q).stages, line, &mut labels).then_some(labels)
    }

    #[test]
    fn chained_line_filters_all_apply() {
        let q = r#"{a="b"} |= "GET" != "health" |~ "status=5\\d\\d" !~ "(?i)ignore""#;
        assert!(passes(q, "GET /x status=503").is_some());
        assert!(passes(q, "GET /health status=503").is_none());
        assert!(passes(q, "GET /x status=200").is_none());
        assert!(passes(q, "GET /x status=500 IGNORE me").is_none());
        // Line regexes are not anchored.
        assert!(passes(r#"{a="b"} |~ "tat""#, "status").is_some());
    }

    #[test]
    fn json_flattens_and_filters_compare_numbers() {
        let line =
            r#"{"status": 503, "req": {"method": "GET"}, "a": "clash", "ok": true, "tags": [1]}"#;
        let l = passes(
            r#"{a="b"} | json | status >= 500 and req_method="GET""#,
            line,
        )
        .unwrap();
        assert_eq!(l.parsed["status"], "503");
        assert_eq!(l.parsed["a_extracted"], "clash");
        assert_eq!(l.parsed["ok"], "true");
        assert!(!l.parsed.contains_key("tags"));
        assert!(passes(r#"{a="b"} | json | status < 500"#, line).is_none());
        let bad = passes(r#"{a="b"} | json"#, "not json").unwrap();
        assert_eq!(bad.parsed[ERROR_LABEL], "JSONParserErr");
        let dropped = passes(r#"{a="b"} | json | drop __error__"#, "not json").unwrap();
        assert!(dropped.parsed.is_empty());
        assert!(passes(r#"{a="b"} | json | __error__="""#, "not json").is_none());
    }

    #[test]
    fn logfmt_reads_quoted_and_bare_values() {
        let l = passes(
            r#"{a="b"} | logfmt | level="warn" | msg=~"disk .*""#,
            r#"level=warn msg="disk \"sda\" full" retry"#,
        )
        .unwrap();
        assert_eq!(l.parsed["msg"], r#"disk "sda" full"#);
        assert_eq!(l.parsed["retry"], "");
        let bad = passes(r#"{a="b"} | logfmt"#, r#"x="open"#).unwrap();
        assert_eq!(bad.parsed[ERROR_LABEL], "LogfmtParserErr");
        // A non-numeric value never matches a numeric comparison.
        assert!(passes(r#"{a="b"} | logfmt | n > 1"#, "n=abc").is_none());
    }
}
