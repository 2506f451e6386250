//! LogQL tokens. Durations (`5m`, `1h30m`) are lexed as their own token so
//! the parser never has to split a number from its unit.

use super::parse::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Number(f64),
    /// A duration in nanoseconds.
    Duration(u64),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Pipe,
    /// `|=`
    PipeExact,
    /// `|~`
    PipeMatch,
    /// `!=`
    Neq,
    /// `!~`
    Nre,
    /// `=`
    Eq,
    /// `==`
    EqEq,
    /// `=~`
    Re,
    Gt,
    Gte,
    Lt,
    Lte,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
}

/// A token and the byte offset it starts at (for error positions).
#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub at: usize,
}

pub fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let at = i;
        let two = |x: u8| b.get(i + 1) == Some(&x);
        let (tok, len) = match c {
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'%' => (Tok::Percent, 1),
            b'^' => (Tok::Caret, 1),
            b'|' if two(b'=') => (Tok::PipeExact, 2),
            b'|' if two(b'~') => (Tok::PipeMatch, 2),
            b'|' => (Tok::Pipe, 1),
            b'!' if two(b'=') => (Tok::Neq, 2),
            b'!' if two(b'~') => (Tok::Nre, 2),
            b'=' if two(b'=') => (Tok::EqEq, 2),
            b'=' if two(b'~') => (Tok::Re, 2),
            b'=' => (Tok::Eq, 1),
            b'>' if two(b'=') => (Tok::Gte, 2),
            b'>' => (Tok::Gt, 1),
            b'<' if two(b'=') => (Tok::Lte, 2),
            b'<' => (Tok::Lt, 1),
            b'"' => quoted(src, i)?,
            b'`' => raw(src, i)?,
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                number_or_duration(src, i)?
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = scan(b, i, |c| {
                    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
                });
                (Tok::Ident(src[i..end].to_string()), end - i)
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(ParseError::at(
                    src,
                    at,
                    format!("syntax error: unexpected {ch:?}"),
                ));
            }
        };
        out.push(Token { tok, at });
        i += len;
    }
    Ok(out)
}

fn scan(b: &[u8], from: usize, ok: impl Fn(u8) -> bool) -> usize {
    let mut j = from;
    while j < b.len() && ok(b[j]) {
        j += 1;
    }
    j
}

/// A double-quoted string with Go's escapes (the common ones).
fn quoted(src: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    let mut s = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((j, c)) = chars.next() {
        match c {
            '"' => return Ok((Tok::Str(s), j + 2)),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                s.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    '0' => '\0',
                    other => {
                        return Err(ParseError::at(
                            src,
                            start + 1 + j,
                            format!("invalid escape sequence \\{other} in string"),
                        ))
                    }
                });
            }
            c => s.push(c),
        }
    }
    Err(ParseError::at(src, start, "literal not terminated".into()))
}

/// A backquoted string: no escapes at all (regexes are written this way).
fn raw(src: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    match src[start + 1..].find('`') {
        Some(j) => Ok((Tok::Str(src[start + 1..start + 1 + j].to_string()), j + 2)),
        None => Err(ParseError::at(src, start, "literal not terminated".into())),
    }
}

fn number_or_duration(src: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    let b = src.as_bytes();
    let end = scan(b, start, |c| c.is_ascii_alphanumeric() || c == b'.');
    let text = &src[start..end];
    if text.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return text
            .parse::<f64>()
            .map(|n| (Tok::Number(n), end - start))
            .map_err(|_| ParseError::at(src, start, format!("invalid number {text:?}")));
    }
    parse_duration_nanos(text)
        .map(|d| (Tok::Duration(d), end - start))
        .ok_or_else(|| ParseError::at(src, start, format!("invalid duration {text:?}")))
}

/// A Prometheus duration: one or more `<integer><unit>` with units `ms`,
/// `s`, `m`, `h`, `d`, `w`, `y`, largest first (`1h30m`).
pub fn parse_duration_nanos(text: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000_000_000),
        ("w", 7 * 86_400_000_000_000),
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let rank = UNITS.iter().position(|(u, _)| *u == unit)?;
        // Each unit at most once and largest first, as Prometheus requires.
        if last_rank != usize::MAX && rank <= last_rank {
            return None;
        }
        last_rank = rank;
        total = total.checked_add(n.checked_mul(UNITS[rank].1)?)?;
        rest = &rest[unit_len..];
    }
    (total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn operators_and_literals() {
        assert_eq!(
            toks(r#"{a=~"x\"y"} |~ `\d+` != "z" [1h30m]"#),
            vec![
                Tok::LBrace,
                Tok::Ident("a".into()),
                Tok::Re,
                Tok::Str("x\"y".into()),
                Tok::RBrace,
                Tok::PipeMatch,
                Tok::Str(r"\d+".into()),
                Tok::Neq,
                Tok::Str("z".into()),
                Tok::LBracket,
                Tok::Duration(5_400_000_000_000),
                Tok::RBracket,
            ]
        );
        assert_eq!(
            toks("1.5 >= 2"),
            vec![Tok::Number(1.5), Tok::Gte, Tok::Number(2.0)]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_nanos("500ms"), Some(500_000_000));
        assert_eq!(parse_duration_nanos("1d"), Some(86_400_000_000_000));
        for bad in ["", "5", "5x", "30m1h", "1m1m", "0s", "99999999999y"] {
            assert_eq!(parse_duration_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn unterminated_and_stray_input_is_an_error() {
        assert!(lex(r#"{a="b}"#).is_err());
        assert!(lex("{a=`b}").is_err());
        assert!(lex("{a#b}").is_err());
        assert!(lex(r#"{a="\q"}"#).is_err());
    }
}
