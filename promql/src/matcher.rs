//! Label matching. Regexes are fully anchored (`^(?:re)$`), as Prometheus compiles them.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::Regex;

use crate::{MatchOp, Matcher};

/// Compiled regexes kept per thread: a storage calls `matches` once per candidate series,
/// and compiling each time would dominate a selection. Bounded so that a stream of distinct
/// queries cannot grow it without limit.
const MAX_CACHED_REGEXES: usize = 256;

thread_local! {
    static REGEX_CACHE: RefCell<HashMap<String, Option<Regex>>> = RefCell::new(HashMap::new());
}

/// The anchored regex for `pattern`, or `None` when it does not compile.
pub(crate) fn anchored_regex(pattern: &str) -> Option<Regex> {
    REGEX_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(re) = cache.get(pattern) {
            return re.clone();
        }
        if cache.len() >= MAX_CACHED_REGEXES {
            cache.clear();
        }
        let re = compile_anchored(pattern).ok();
        cache.insert(pattern.to_string(), re.clone());
        re
    })
}

/// Compiles `^(?:pattern)$`. Go's regex syntax takes a `{` that starts no valid repetition
/// (`a{b}`) as a literal, where Rust's refuses it: such braces are escaped and the pattern
/// tried again, as the query parser does.
pub(crate) fn compile_anchored(pattern: &str) -> Result<Regex, regex::Error> {
    let anchored = format!("^(?:{pattern})$");
    Regex::new(&anchored).or_else(|e| Regex::new(&escape_literal_braces(&anchored)).map_err(|_| e))
}

/// Escapes each `{` not followed by `n}`, `n,}` or `n,m}`.
fn escape_literal_braces(pattern: &str) -> String {
    let repetition = Regex::new(r"^\{[0-9]+(,[0-9]*)?\}").expect("valid regex");
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut escaped = false;
    for (i, c) in pattern.char_indices() {
        if c == '{' && !escaped && !repetition.is_match(&pattern[i..]) {
            out.push('\\');
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
    }
    out
}

impl Matcher {
    /// A matcher from its parts.
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op,
            value: value.into(),
        }
    }

    /// Whether a label value (the empty string for a missing label) satisfies the matcher.
    /// A regex that does not compile matches nothing (the engine rejects such queries at
    /// parse time, so only a hand-built matcher can have one).
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => self.value == value,
            MatchOp::NotEqual => self.value != value,
            MatchOp::Regex => anchored_regex(&self.value).is_some_and(|re| re.is_match(value)),
            MatchOp::NotRegex => anchored_regex(&self.value).is_some_and(|re| !re.is_match(value)),
        }
    }

    /// Whether the matcher accepts the empty string, i.e. also series lacking the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_are_fully_anchored() {
        let m = Matcher::new("job", MatchOp::Regex, "api|web");
        assert!(m.matches("api"));
        assert!(m.matches("web"));
        assert!(!m.matches("api2"));
        assert!(!m.matches("xweb"));
        let n = Matcher::new("job", MatchOp::NotRegex, "a.*");
        assert!(!n.matches("abc"));
        assert!(n.matches("ba"));
        assert!(n.matches(""));
    }

    #[test]
    fn braces_that_are_not_repetitions_are_literals() {
        let m = Matcher::new("path", MatchOp::Regex, "/a{id}/b{2}");
        assert!(m.matches("/a{id}/bb"));
        assert!(!m.matches("/a{id}/b{2}"));
        let n = Matcher::new("path", MatchOp::Regex, "x{1,}");
        assert!(n.matches("xxx"));
    }

    #[test]
    fn equality_matchers_compare_whole_values() {
        let m = Matcher::new("job", MatchOp::Equal, "");
        assert!(m.matches_empty());
        assert!(!m.matches("x"));
        let n = Matcher::new("job", MatchOp::NotEqual, "x");
        assert!(n.matches(""));
        assert!(!n.matches("x"));
    }
}
