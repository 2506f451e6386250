//! Loki's request parameters: times in nanoseconds, seconds or RFC 3339,
//! `limit`, `direction`, `step`, `since`, from the query string or a form
//! body. Errors are plain-text 400s worded like Loki's, since Grafana shows
//! them as they are.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, Params};
use crate::logql::parse_duration_nanos;
use crate::query::QueryError;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Entries a log query may return (Loki's `max_entries_limit_per_query`).
pub const MAX_ENTRIES: usize = 5000;
pub const DEFAULT_ENTRIES: usize = 100;
/// Longest time range a query may cover, range included (Loki's default
/// `max_query_length`, 30 days and an hour).
pub const MAX_QUERY_LENGTH_NANOS: u64 = 721 * 3600 * NANOS_PER_SEC;

/// A Loki API error: a plain-text 400 for bad requests, the REST API's
/// errors (with their statuses and `Retry-After`) for the rest.
#[derive(Debug)]
pub enum LokiError {
    BadRequest(String),
    Api(ApiError),
}

pub fn bad(message: impl Into<String>) -> LokiError {
    LokiError::BadRequest(message.into())
}

impl From<ApiError> for LokiError {
    fn from(e: ApiError) -> Self {
        LokiError::Api(e)
    }
}

impl From<QueryError> for LokiError {
    fn from(e: QueryError) -> Self {
        LokiError::Api(e.into())
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        match self {
            LokiError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                m,
            )
                .into_response(),
            LokiError::Api(e) => e.into_response(),
        }
    }
}

/// The parameters of a GET's query string, or of a POST's form body too.
pub fn request_params(
    raw: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Params, LokiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form || body.is_empty() {
        return Ok(Params::parse(raw)?);
    }
    let form = std::str::from_utf8(body).map_err(|_| bad("the form body is not UTF-8"))?;
    let joined = match raw {
        Some(q) if !q.is_empty() => format!("{q}&{form}"),
        _ => form.to_string(),
    };
    Ok(Params::parse(Some(&joined))?)
}

/// A Loki timestamp: a float is seconds (to the millisecond, as Loki
/// rounds it); an integer of at most ten digits is seconds, a longer one
/// nanoseconds; otherwise RFC 3339.
pub fn parse_time(s: &str) -> Option<u64> {
    if s.contains('.') {
        if let Ok(secs) = s.parse::<f64>() {
            if !(secs.is_finite() && secs >= 0.0 && secs < u64::MAX as f64 / 1e9) {
                return None;
            }
            let whole = secs.trunc();
            let millis = ((secs - whole) * 1000.0).round() as u64;
            return (whole as u64)
                .checked_mul(NANOS_PER_SEC)?
                .checked_add(millis * 1_000_000);
        }
    }
    if let Ok(n) = s.parse::<u64>() {
        return if s.len() <= 10 {
            n.checked_mul(NANOS_PER_SEC)
        } else {
            Some(n)
        };
    }
    parse_rfc3339(s)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `None` before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: i64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = frac[..digits].parse::<i64>().ok()? * 10i64.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    let total = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    u64::try_from(total).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time parameter, or a 400 naming it.
pub fn time_param(p: &Params, name: &str) -> Result<Option<u64>, LokiError> {
    match p.one(name)? {
        None | Some("") => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| {
            bad(format!(
                "invalid parameter {name:?}: cannot parse {s:?} to a valid timestamp"
            ))
        }),
    }
}

/// Float seconds or a duration (`step`, `since`), in nanoseconds; positive.
pub fn duration_param(p: &Params, name: &str) -> Result<Option<u64>, LokiError> {
    let Some(s) = p.one(name)?.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let nanos = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs < 1e12 => {
            if secs <= 0.0 {
                0
            } else {
                (secs * 1e9).round() as u64
            }
        }
        Ok(_) => {
            return Err(bad(format!(
                "invalid parameter {name:?}: {s:?} is out of range"
            )))
        }
        Err(_) => parse_duration_nanos(s).ok_or_else(|| {
            bad(format!(
                "invalid parameter {name:?}: cannot parse {s:?} to a valid duration"
            ))
        })?,
    };
    if nanos == 0 {
        return Err(bad(format!(
            "invalid parameter {name:?}: zero or negative durations are not accepted. Try a positive integer"
        )));
    }
    Ok(Some(nanos))
}

/// `limit`: a positive number, [`DEFAULT_ENTRIES`] when absent. Only log
/// queries are held to [`MAX_ENTRIES`] ([`check_entries`]), as in Loki.
pub fn limit_param(p: &Params) -> Result<usize, LokiError> {
    let Some(s) = p.one("limit")?.filter(|s| !s.is_empty()) else {
        return Ok(DEFAULT_ENTRIES);
    };
    match s.parse::<i64>() {
        Ok(n) if n <= 0 => Err(bad("limit must be a positive value")),
        Ok(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Err(_) => Err(bad(format!(
            "invalid parameter \"limit\": cannot parse {s:?} as an integer"
        ))),
    }
}

/// A log query returns at most [`MAX_ENTRIES`] entries.
pub fn check_entries(limit: usize) -> Result<(), LokiError> {
    if limit > MAX_ENTRIES {
        return Err(bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {MAX_ENTRIES})"
        )));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Backward,
    Forward,
}

pub fn direction_param(p: &Params) -> Result<Direction, LokiError> {
    match p.one("direction")?.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("backward") => Ok(Direction::Backward),
        Some("forward") => Ok(Direction::Forward),
        Some(other) => Err(bad(format!("invalid direction '{other}'"))),
    }
}

/// `[start, end]` of a query: `end` defaults to now, `start` to `end` (or
/// now, when `end` is later) minus `since` or `default_since_nanos`.
pub fn time_range(p: &Params, now: u64, default_since_nanos: u64) -> Result<(u64, u64), LokiError> {
    let end = time_param(p, "end")?.unwrap_or(now);
    let since = duration_param(p, "since")?.unwrap_or(default_since_nanos);
    let start = match time_param(p, "start")? {
        Some(s) => s,
        None => end.min(now).saturating_sub(since),
    };
    if end < start {
        return Err(bad(
            "end timestamp must not be before or equal to start time",
        ));
    }
    Ok((start, end))
}

/// The query's time range plus its longest range vector must fit in
/// [`MAX_QUERY_LENGTH_NANOS`].
pub fn check_length(start: u64, end: u64, range_nanos: u64) -> Result<(), LokiError> {
    let length = (end - start).saturating_add(range_nanos);
    if length > MAX_QUERY_LENGTH_NANOS {
        return Err(bad(format!(
            "the query time range exceeds the limit (query length: {}h, limit: {}h)",
            length / (3600 * NANOS_PER_SEC),
            MAX_QUERY_LENGTH_NANOS / (3600 * NANOS_PER_SEC)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form_loki_takes() {
        assert_eq!(
            parse_time("1700000000"),
            Some(1_700_000_000 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_time("1700000000123456789"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(
            parse_time("1.0004"),
            Some(NANOS_PER_SEC),
            "to the millisecond"
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z"),
            Some(1_700_000_000 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.25+01:00"),
            Some(1_700_000_000_250_000_000)
        );
        for bad in [
            "",
            "abc",
            "-5",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "1e400",
            "1.2.3",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn limits_and_directions() {
        let p = |q: &str| Params::parse(Some(q)).unwrap();
        assert_eq!(limit_param(&p("")).unwrap(), DEFAULT_ENTRIES);
        assert_eq!(limit_param(&p("limit=5000")).unwrap(), 5000);
        assert_eq!(limit_param(&p("limit=6000")).unwrap(), 6000);
        assert!(check_entries(5000).is_ok());
        assert!(check_entries(5001).is_err());
        for q in ["limit=0", "limit=-1", "limit=x"] {
            assert!(limit_param(&p(q)).is_err(), "{q}");
        }
        assert_eq!(
            direction_param(&p("direction=FORWARD")).unwrap(),
            Direction::Forward
        );
        assert!(direction_param(&p("direction=up")).is_err());
        assert_eq!(
            duration_param(&p("step=15"), "step").unwrap(),
            Some(15 * NANOS_PER_SEC)
        );
        assert_eq!(
            duration_param(&p("step=1m"), "step").unwrap(),
            Some(60 * NANOS_PER_SEC)
        );
        assert_eq!(
            duration_param(&p("step=0.5"), "step").unwrap(),
            Some(NANOS_PER_SEC / 2)
        );
        for q in ["step=0", "step=-3", "step=x", "step=1e300"] {
            assert!(duration_param(&p(q), "step").is_err(), "{q}");
        }
        let (s, e) = time_range(&p("since=1h"), 10_000 * NANOS_PER_SEC, 1).unwrap();
        assert_eq!(e - s, 3600 * NANOS_PER_SEC);
        assert!(time_range(&p("start=20&end=10"), 0, 1).is_err());
    }
}
