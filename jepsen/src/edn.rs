//! A small reader for the subset of EDN that Jepsen/Knossos histories use.
//!
//! Supported: `nil`, `true`/`false`, integers (with an optional `N` suffix),
//! floats (kept as text, histories never need their value), strings with
//! escapes, keywords, symbols, characters, vectors, lists, maps, sets,
//! `;` comments, commas as whitespace, `#_` discard and tagged literals
//! (`#inst "..."` reads as the tagged value). Not a general EDN parser: no
//! ratios, no namespaced-map syntax, no validation of symbol characters.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    /// A number that is not an i64 (float, big integer), kept as written.
    Number(String),
    Str(String),
    /// Keyword name without the leading colon.
    Keyword(String),
    Symbol(String),
    Char(char),
    Vector(Vec<Edn>),
    List(Vec<Edn>),
    /// Entries in file order; keys are not required to be unique.
    Map(Vec<(Edn, Edn)>),
    Set(Vec<Edn>),
}

impl Edn {
    /// Looks up a keyword key in a map (`None` for non-maps or absent keys).
    pub fn get_keyword(&self, name: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => entries.iter().find_map(|(k, v)| match k {
                Edn::Keyword(k) if k == name => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }
}

/// A read error with a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdnError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for EdnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for EdnError {}

/// Parses exactly one form (surrounding whitespace and comments allowed).
pub fn parse(text: &str) -> Result<Edn, EdnError> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        text,
        pos: 0,
    };
    let form = reader.read_form()?;
    reader.skip_ws();
    if reader.pos < reader.bytes.len() {
        return Err(reader.error("trailing data after the first form"));
    }
    Ok(form)
}

/// Maximum nesting of collections; histories nest 3 deep, so this only
/// guards the recursion against hostile or corrupt input.
const MAX_DEPTH: usize = 256;

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, message: impl Into<String>) -> EdnError {
        let consumed = &self.bytes[..self.pos.min(self.bytes.len())];
        let line = 1 + consumed.iter().filter(|&&b| b == b'\n').count();
        EdnError {
            line,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips whitespace, commas and `;` comments.
    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() || b == b',' {
                self.pos += 1;
            } else if b == b';' {
                while let Some(b) = self.peek() {
                    if b == b'\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn read_form(&mut self) -> Result<Edn, EdnError> {
        self.read_form_at(0)
    }

    fn read_form_at(&mut self, depth: usize) -> Result<Edn, EdnError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.skip_ws();
        let Some(b) = self.peek() else {
            return Err(self.error("unexpected end of input"));
        };
        match b {
            b'[' => {
                self.pos += 1;
                Ok(Edn::Vector(self.read_seq(b']', depth)?))
            }
            b'(' => {
                self.pos += 1;
                Ok(Edn::List(self.read_seq(b')', depth)?))
            }
            b'{' => {
                self.pos += 1;
                let items = self.read_seq(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return Err(self.error("map with an odd number of forms"));
                }
                let mut entries = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    entries.push((k, v));
                }
                Ok(Edn::Map(entries))
            }
            b'#' => {
                self.pos += 1;
                match self.peek() {
                    Some(b'{') => {
                        self.pos += 1;
                        Ok(Edn::Set(self.read_seq(b'}', depth)?))
                    }
                    Some(b'_') => {
                        // Discard the next form, then read the one after it.
                        self.pos += 1;
                        self.read_form_at(depth + 1)?;
                        self.read_form_at(depth)
                    }
                    _ => {
                        // Tagged literal: the tag is a symbol; keep the value.
                        let tag = self.read_token();
                        if tag.is_empty() {
                            return Err(self.error("unsupported # dispatch"));
                        }
                        self.read_form_at(depth + 1)
                    }
                }
            }
            b'"' => self.read_string(),
            b'\\' => {
                self.pos += 1;
                let token = self.read_token_allowing_first_delimiter();
                let c = match token {
                    "newline" => '\n',
                    "space" => ' ',
                    "tab" => '\t',
                    "return" => '\r',
                    _ => {
                        let mut chars = token.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) => c,
                            _ => return Err(self.error(format!("unsupported character \\{token}"))),
                        }
                    }
                };
                Ok(Edn::Char(c))
            }
            b']' | b')' | b'}' => Err(self.error(format!("unexpected '{}'", b as char))),
            _ => {
                let token = self.read_token();
                if token.is_empty() {
                    return Err(self.error(format!("unexpected character '{}'", b as char)));
                }
                Ok(atom(token))
            }
        }
    }

    /// Reads forms until `close`, consuming it.
    fn read_seq(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, EdnError> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.error(format!("missing '{}'", close as char))),
                Some(b) if b == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(_) => items.push(self.read_form_at(depth + 1)?),
            }
        }
    }

    /// Reads up to the next delimiter (whitespace, comma, bracket, quote, `;`).
    fn read_token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if is_delimiter(b) {
                break;
            }
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// Like `read_token`, but the first character may itself be a delimiter
    /// (for character literals such as `\(` or `\,`).
    fn read_token_allowing_first_delimiter(&mut self) -> &'a str {
        let start = self.pos;
        if let Some(c) = self.text[self.pos..].chars().next() {
            self.pos += c.len_utf8();
        }
        while let Some(b) = self.peek() {
            if is_delimiter(b) {
                break;
            }
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn read_string(&mut self) -> Result<Edn, EdnError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(Edn::Str(out)),
                '\\' => {
                    let Some(e) = self.text[self.pos..].chars().next() else {
                        return Err(self.error("unterminated string escape"));
                    };
                    self.pos += e.len_utf8();
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '"' => '"',
                        '\\' => '\\',
                        // Anything else (\uXXXX etc.) is kept literally: the
                        // checker never looks inside strings.
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
    }
}

fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b',' | b'[' | b']' | b'(' | b')' | b'{' | b'}' | b'"' | b';'
        )
}

/// Classifies a bare token.
fn atom(token: &str) -> Edn {
    match token {
        "nil" => return Edn::Nil,
        "true" => return Edn::Bool(true),
        "false" => return Edn::Bool(false),
        _ => {}
    }
    if let Some(name) = token.strip_prefix(':') {
        return Edn::Keyword(name.to_string());
    }
    let bytes = token.as_bytes();
    let starts_numeric = bytes[0].is_ascii_digit()
        || (matches!(bytes[0], b'+' | b'-') && bytes.len() > 1 && bytes[1].is_ascii_digit());
    if starts_numeric {
        let digits = token.strip_suffix('N').unwrap_or(token);
        return match digits.parse::<i64>() {
            Ok(v) => Edn::Int(v),
            Err(_) => Edn::Number(token.to_string()),
        };
    }
    Edn::Symbol(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_history_subset() {
        let text = "; header comment\n[{:process 4, :type :invoke, :f :cas, :value [1 -2]}\n \
                    ; inline comment\n {:process 22  :type :ok :f :read :value nil :time 99286665244}]";
        let form = parse(text).unwrap();
        let Edn::Vector(items) = &form else {
            panic!("not a vector: {form:?}")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].get_keyword("value"),
            Some(&Edn::Vector(vec![Edn::Int(1), Edn::Int(-2)]))
        );
        assert_eq!(items[1].get_keyword("process"), Some(&Edn::Int(22)));
        assert_eq!(
            items[1].get_keyword("type"),
            Some(&Edn::Keyword("ok".into()))
        );
        assert_eq!(items[1].get_keyword("value"), Some(&Edn::Nil));
        assert_eq!(items[1].get_keyword("time"), Some(&Edn::Int(99286665244)));
    }

    #[test]
    fn reads_other_forms() {
        let form = parse(r#"({:error "a \"quoted\" {:t 1} [x]" :s #{1 2} :d #_ 5 6 :c \a :i #inst "2020" :x 1.5 :b 12N})"#)
            .unwrap();
        let Edn::List(items) = form else { panic!() };
        let m = &items[0];
        assert_eq!(
            m.get_keyword("error"),
            Some(&Edn::Str("a \"quoted\" {:t 1} [x]".into()))
        );
        assert_eq!(
            m.get_keyword("s"),
            Some(&Edn::Set(vec![Edn::Int(1), Edn::Int(2)]))
        );
        assert_eq!(m.get_keyword("d"), Some(&Edn::Int(6)));
        assert_eq!(m.get_keyword("c"), Some(&Edn::Char('a')));
        assert_eq!(m.get_keyword("i"), Some(&Edn::Str("2020".into())));
        assert_eq!(m.get_keyword("x"), Some(&Edn::Number("1.5".into())));
        assert_eq!(m.get_keyword("b"), Some(&Edn::Int(12)));
    }

    #[test]
    fn reports_errors_with_line() {
        let e = parse("[1\n 2").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse("{:a}").is_err());
        assert!(parse("[1] 2").is_err());
        assert!(parse("\"abc").is_err());
        assert!(parse("]").is_err());
    }
}
