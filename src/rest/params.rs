//! Query-string parsing: every malformed value is a 400 that names it.

use super::ApiError;
use crate::cluster::Consistency;
use crate::fulltext::MAX_QUERY_BYTES;

/// Longest `last=` window accepted: ten years.
const MAX_WINDOW_SECS: u64 = 10 * 365 * 86_400;
pub const MAX_LIMIT: usize = 10_000;
const MAX_PARAMS: usize = 64;

/// A trace id in a path: 32 hex characters, or a 400 that says so.
pub fn trace_id_in_path(raw: &str) -> Result<crate::model::TraceId, ApiError> {
    crate::model::parse_hex(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid trace id {raw:?}: expected 32 hex characters"
        ))
    })
}

pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(raw: Option<&str>) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.len() > MAX_PARAMS {
            return Err(ApiError::bad_request(format!(
                "too many query parameters (limit {MAX_PARAMS})"
            )));
        }
        Ok(Params { pairs })
    }

    /// A parameter that may appear once.
    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut it = self
            .pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = it.next();
        if it.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "parameter {name} given more than once"
            )));
        }
        Ok(first)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.one("consistency")? {
            None => Ok(Consistency::Linearizable),
            Some(s) => Consistency::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "consistency must be linearizable, lease or local, not {s:?}"
                ))
            }),
        }
    }

    /// `text=`: full-text search terms, 1 to [`MAX_QUERY_BYTES`] bytes.
    pub fn text(&self) -> Result<Option<String>, ApiError> {
        match self.one("text")? {
            None => Ok(None),
            Some(t) if t.trim().is_empty() || t.len() > MAX_QUERY_BYTES => {
                Err(ApiError::bad_request(format!(
                    "text must be 1 to {MAX_QUERY_BYTES} bytes of search terms"
                )))
            }
            Some(t) => Ok(Some(t.to_string())),
        }
    }

    pub fn limit(&self, default: usize) -> Result<usize, ApiError> {
        match self.one("limit")? {
            None => Ok(default),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}, not {s:?}"
                ))),
            },
        }
    }

    /// A non-negative number of milliseconds.
    pub fn millis(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.one(name)? {
            None => Ok(None),
            Some(s) => match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                _ => Err(ApiError::bad_request(format!(
                    "{name} must be a non-negative number, not {s:?}"
                ))),
            },
        }
    }

    pub fn window_secs(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.one(name)? {
            None => Ok(None),
            Some(s) => parse_duration_secs(s).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name} must look like 30s, 5m, 2h, 7d or bare seconds, not {s:?}"
                ))
            }),
        }
    }
}

/// A time parameter: unix seconds (with a fraction, if wanted) or RFC 3339.
pub fn instant_param(p: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(s) = p.one(name)? else {
        return Ok(None);
    };
    let secs = s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    let nanos = match secs {
        Some(v) => Some((v * 1e9).min(u64::MAX as f64) as u64),
        None => crate::model::time::parse_rfc3339_nanos(s),
    };
    nanos.map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name} must be unix seconds or RFC 3339 (2026-01-02T03:04:05Z), not {s:?}"
        ))
    })
}

/// The time window of a query, in unix nanoseconds: `start`/`end` (either
/// may be left out), or `last` back from `end` (default now); neither:
/// `default_last_secs` back from now, or no bound when that is `None`.
pub fn time_window(
    p: &Params,
    default_last_secs: Option<u64>,
) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let start = instant_param(p, "start")?;
    let end = instant_param(p, "end")?;
    let last = p.window_secs("last")?;
    if start.is_some() && last.is_some() {
        return Err(ApiError::bad_request(
            "give start or last, not both".to_string(),
        ));
    }
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(ApiError::bad_request("end is before start".to_string()));
        }
    }
    let from_end = |secs: u64| {
        end.unwrap_or_else(crate::model::now_unix_nanos)
            .saturating_sub(secs.saturating_mul(1_000_000_000))
    };
    let since = match (start, last.or(default_last_secs)) {
        (Some(s), _) => Some(s),
        (None, Some(secs)) => Some(from_end(secs)),
        (None, None) => None,
    };
    Ok((since, end))
}

/// `start`/`end` in unix seconds, validated (Tempo's time range; on trace
/// by id they are hints only and the whole store is searched).
pub fn seconds_param(p: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    match p.one(name)? {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name} must be unix seconds, not {s:?}"))),
    }
}

/// `30s`, `5m`, `2h`, `7d` or bare seconds; positive and at most ten years.
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    let (n, unit_secs) = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        (s.parse().ok()?, 1)
    } else {
        crate::model::time::split_unit_duration(s)?
    };
    let secs = n.checked_mul(unit_secs)?;
    (1..=MAX_WINDOW_SECS).contains(&secs).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(Some(q)).unwrap()
    }

    #[test]
    fn a_window_is_start_and_end_or_last_back_from_end() {
        const S: u64 = 1_000_000_000;
        assert_eq!(
            time_window(&params("start=100&end=200.5"), Some(60)).unwrap(),
            (Some(100 * S), Some(200 * S + S / 2))
        );
        assert_eq!(
            time_window(&params("end=1970-01-01T00:10:00Z&last=5m"), None).unwrap(),
            (Some(300 * S), Some(600 * S))
        );
        assert_eq!(
            time_window(&params("start=1970-01-01T00:00:10Z"), Some(60)).unwrap(),
            (Some(10 * S), None)
        );
        assert_eq!(time_window(&params(""), None).unwrap(), (None, None));
        let (since, until) = time_window(&params(""), Some(60)).unwrap();
        assert!(since.is_some() && until.is_none());
        for bad in [
            "start=1&last=5m",
            "start=10&end=5",
            "start=yesterday",
            "end=-1",
        ] {
            assert!(time_window(&params(bad), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30s"), Some(30));
        assert_eq!(parse_duration_secs("5m"), Some(300));
        assert_eq!(parse_duration_secs("2h"), Some(7200));
        assert_eq!(parse_duration_secs("7d"), Some(604_800));
        assert_eq!(parse_duration_secs("45"), Some(45));
        for bad in [
            "",
            "s",
            "-5m",
            "5x",
            "1.5h",
            "0",
            "99999999999999999999d",
            "5 m",
            "3650000d",
        ] {
            assert_eq!(parse_duration_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn repeated_single_parameter_is_rejected() {
        let p = Params::parse(Some("limit=1&limit=2")).unwrap();
        assert!(p.limit(100).is_err());
        let p = Params::parse(Some("attribute=a%3Db&attribute=c%3Dd")).unwrap();
        assert_eq!(p.all("attribute").collect::<Vec<_>>(), vec!["a=b", "c=d"]);
    }
}
