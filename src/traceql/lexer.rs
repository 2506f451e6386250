//! TraceQL text to tokens. Positions are byte offsets into the query, so
//! every error can point at what it refuses.

use super::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    AndAnd,
    OrOr,
    Pipe,
    /// `!` alone.
    Not,
    Eq,
    Ne,
    Re,
    NotRe,
    Gt,
    Ge,
    Lt,
    Le,
    /// A structural operator between spansets (`>>`, `<<`, `~`, `!>>`, `&>>`,
    /// ...), which this version does not evaluate; kept to name it.
    Structural(&'static str),
    /// An arithmetic operator (`+`, `-`, `*`, `/`, `%`, `^`), likewise.
    Arith(char),
    Str(String),
    Int(i64),
    Float(f64),
    /// A duration literal, in nanoseconds.
    Duration(u64),
    /// A name: an intrinsic, a keyword, a function, or a scoped attribute
    /// (`span.x`, `resource."a b"`, `.x`) with its quoted part unquoted.
    Ident(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// Byte offset of the token's first character.
    pub pos: usize,
}

/// Characters that end a name: operators, brackets, quotes and space.
fn ends_name(c: char) -> bool {
    c.is_whitespace() || "{}()=!<>~&|,\"`+*/%^".contains(c)
}

pub fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut lx = Lexer {
        text,
        pos: 0,
        out: Vec::new(),
    };
    while let Some(c) = lx.peek() {
        if c.is_whitespace() {
            lx.bump(c);
            continue;
        }
        lx.token(c)?;
    }
    Ok(lx.out)
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    out: Vec<Token>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(n)
    }

    fn bump(&mut self, c: char) {
        self.pos += c.len_utf8();
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn push(&mut self, tok: Tok, pos: usize) {
        self.out.push(Token { tok, pos });
    }

    /// Emits `tok` for the `len` ASCII bytes at the current position.
    fn fixed(&mut self, tok: Tok, len: usize) {
        let pos = self.pos;
        self.pos += len;
        self.push(tok, pos);
    }

    fn token(&mut self, c: char) -> Result<(), ParseError> {
        const FIXED: &[(&str, Tok)] = &[
            ("!>>", Tok::Structural("!>>")),
            ("!<<", Tok::Structural("!<<")),
            ("&>>", Tok::Structural("&>>")),
            ("&<<", Tok::Structural("&<<")),
            ("&>", Tok::Structural("&>")),
            ("&<", Tok::Structural("&<")),
            ("&~", Tok::Structural("&~")),
            (">>", Tok::Structural(">>")),
            ("<<", Tok::Structural("<<")),
            ("&&", Tok::AndAnd),
            ("||", Tok::OrOr),
            ("=~", Tok::Re),
            ("!=", Tok::Ne),
            ("!~", Tok::NotRe),
            (">=", Tok::Ge),
            ("<=", Tok::Le),
            ("{", Tok::LBrace),
            ("}", Tok::RBrace),
            ("(", Tok::LParen),
            (")", Tok::RParen),
            (",", Tok::Comma),
            ("|", Tok::Pipe),
            ("!", Tok::Not),
            ("=", Tok::Eq),
            (">", Tok::Gt),
            ("<", Tok::Lt),
            ("~", Tok::Structural("~")),
        ];
        if let Some((s, tok)) = FIXED.iter().find(|(s, _)| self.rest().starts_with(s)) {
            self.fixed(tok.clone(), s.len());
            return Ok(());
        }
        match c {
            '"' | '`' => {
                let pos = self.pos;
                let s = self.string()?;
                self.push(Tok::Str(s), pos);
            }
            '-' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number()?,
            '0'..='9' => self.number()?,
            '+' | '-' | '*' | '/' | '%' | '^' => self.fixed(Tok::Arith(c), 1),
            '&' => {
                return Err(ParseError::new(
                    self.pos,
                    "`&` is not an operator; use `&&`",
                ))
            }
            c if c.is_alphabetic() || c == '_' || c == '.' => self.name()?,
            c => {
                return Err(ParseError::new(
                    self.pos,
                    format!("unexpected character {c:?}"),
                ))
            }
        }
        Ok(())
    }

    /// A double-quoted string with `\"`, `\\`, `\n`, `\t` escapes, or a
    /// back-quoted raw string.
    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let quote = self.peek().expect("at a quote");
        self.bump(quote);
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(ParseError::new(start, "unterminated string"));
            };
            self.bump(c);
            match c {
                c if c == quote => return Ok(out),
                '\\' if quote == '"' => {
                    let Some(e) = self.peek() else {
                        return Err(ParseError::new(start, "unterminated string"));
                    };
                    self.bump(e);
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '"' | '\\' => e,
                        _ => {
                            return Err(ParseError::new(
                                self.pos - e.len_utf8() - 1,
                                format!("unknown escape \\{e} in a string"),
                            ))
                        }
                    });
                }
                c => out.push(c),
            }
        }
    }

    /// An integer, a float, or a duration (a number with a unit).
    fn number(&mut self) -> Result<(), ParseError> {
        let text = self.text;
        let start = self.pos;
        if self.peek() == Some('-') {
            self.bump('-');
        }
        self.digits();
        let mut is_float = false;
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) {
            is_float = true;
            self.bump('.');
            self.digits();
        }
        let number = &text[start..self.pos];
        let unit_start = self.pos;
        while let Some(u) = self.peek().filter(|u| u.is_alphabetic()) {
            self.bump(u);
        }
        let unit = &text[unit_start..self.pos];
        let bad = |what: &str| ParseError::new(start, format!("invalid {what} {number}{unit}"));
        let tok = if !unit.is_empty() {
            let nanos_per = match unit {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => {
                    return Err(ParseError::new(
                        unit_start,
                        format!("unknown duration unit {unit:?} (use ns, us, ms, s, m or h)"),
                    ))
                }
            };
            let n: f64 = number.parse().map_err(|_| bad("duration"))?;
            let nanos = n * nanos_per;
            if !(0.0..=u64::MAX as f64).contains(&nanos) {
                return Err(bad("duration"));
            }
            Tok::Duration(nanos.round() as u64)
        } else if is_float {
            Tok::Float(number.parse().map_err(|_| bad("number"))?)
        } else {
            Tok::Int(number.parse().map_err(|_| bad("integer"))?)
        };
        self.push(tok, start);
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(d) = self.peek().filter(|d| d.is_ascii_digit()) {
            self.bump(d);
        }
    }

    /// A name; a quoted part right after a dot (`span."a b"`, `."a b"`) is
    /// unquoted into it.
    fn name(&mut self) -> Result<(), ParseError> {
        let start = self.pos;
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| !ends_name(*c)) {
            self.bump(c);
            name.push(c);
        }
        if name.ends_with('.') && self.peek() == Some('"') {
            name.push_str(&self.string()?);
        }
        self.push(Tok::Ident(name), start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn operators_names_and_literals() {
        assert_eq!(
            toks(r#"{ span.a-b="x\"y" && .n>=1.5 || duration<150ms }"#),
            vec![
                Tok::LBrace,
                Tok::Ident("span.a-b".into()),
                Tok::Eq,
                Tok::Str("x\"y".into()),
                Tok::AndAnd,
                Tok::Ident(".n".into()),
                Tok::Ge,
                Tok::Float(1.5),
                Tok::OrOr,
                Tok::Ident("duration".into()),
                Tok::Lt,
                Tok::Duration(150_000_000),
                Tok::RBrace,
            ]
        );
        assert_eq!(
            toks(r#"resource."a b"=~`x\d` !~ -3 1.5s 2m >> !>> ~"#),
            vec![
                Tok::Ident("resource.a b".into()),
                Tok::Re,
                Tok::Str("x\\d".into()),
                Tok::NotRe,
                Tok::Int(-3),
                Tok::Duration(1_500_000_000),
                Tok::Duration(120_000_000_000),
                Tok::Structural(">>"),
                Tok::Structural("!>>"),
                Tok::Structural("~"),
            ]
        );
    }

    #[test]
    fn bad_tokens_say_where() {
        let e = tokenize(r#"{ .a = "open }"#).unwrap_err();
        assert_eq!(e.pos, 7);
        assert!(e.message.contains("unterminated"), "{e}");
        let e = tokenize("{ duration > 5days }").unwrap_err();
        assert!(e.message.contains("unknown duration unit"), "{e}");
        assert!(tokenize("{ .a & .b }").is_err());
        assert!(tokenize("{ .a = 99999999999999999999 }").is_err());
    }
}
