//! Parsing of the HTTP API's `time`, `start`, `end` and `step` parameters, as Prometheus
//! parses them: a float of Unix seconds (rounded to the millisecond) or RFC 3339 for times;
//! float seconds or a Prometheus duration (`1h30m`) for durations.

use crate::date::days_from_civil;
use crate::EngineError;

const MS_PER_SECOND: i64 = 1_000;

/// A time parameter as milliseconds since the Unix epoch.
pub fn parse_time_ms(s: &str) -> Result<i64, EngineError> {
    let bad = || EngineError::BadData(format!("cannot parse {s:?} to a valid timestamp"));
    if let Some(seconds) = parse_go_float(s) {
        return float_seconds_to_ms(seconds).ok_or_else(bad);
    }
    parse_rfc3339_ms(s).ok_or_else(bad)
}

/// A duration parameter in milliseconds: float seconds (`"15"`, `"0.5"`) or a Prometheus
/// duration (`"5m"`, `"1h30m"`, `"1d"`).
pub fn parse_duration_ms(s: &str) -> Result<i64, EngineError> {
    if let Some(seconds) = parse_go_float(s) {
        let ms = seconds * MS_PER_SECOND as f64;
        // Prometheus refuses durations whose nanoseconds overflow an int64.
        if !ms.is_finite() || ms.abs() > (i64::MAX / 1_000_000) as f64 {
            return Err(EngineError::BadData(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            )));
        }
        return Ok(ms as i64);
    }
    parse_prometheus_duration_ms(s)
        .ok_or_else(|| EngineError::BadData(format!("cannot parse {s:?} to a valid duration")))
}

/// Floats as Go's `strconv.ParseFloat` reads them; Rust's parser agrees on every form the
/// API sees except that it also accepts a leading `+` on `inf`/`nan` (so does Go).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Seconds with a fraction to milliseconds: the whole seconds exactly, the fraction rounded
/// to the millisecond (Prometheus rounds the fraction separately, so 1.0005 is 1001 ms).
fn float_seconds_to_ms(seconds: f64) -> Option<i64> {
    if !seconds.is_finite() || seconds.abs() > 9.2e15 {
        return None;
    }
    let whole = seconds.trunc();
    let frac_ms = ((seconds - whole) * 1000.0).round();
    Some(whole as i64 * MS_PER_SECOND + frac_ms as i64)
}

/// `[0-9]+` units in the order y w d h m s ms, each at most once, as Prometheus's
/// `model.ParseDuration`; `"0"` alone is zero.
fn parse_prometheus_duration_ms(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut next_unit = 0;
    let mut total_ms: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        let after = &rest[digits..];
        // "ms" must be tried before "m".
        let unit_len = if after.starts_with("ms") {
            2
        } else {
            after.chars().next()?.len_utf8()
        };
        let unit = &after[..unit_len];
        let idx = UNITS.iter().position(|(u, _)| *u == unit)?;
        if idx < next_unit {
            return None;
        }
        next_unit = idx + 1;
        total_ms = total_ms.checked_add(n.checked_mul(UNITS[idx].1)?)?;
        rest = &after[unit_len..];
    }
    Some(total_ms)
}

/// RFC 3339 with optional fractional seconds: `2023-11-14T22:13:20.123Z`,
/// `2023-11-14T23:13:20+01:00`. Sub-millisecond digits are truncated.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let (frac_ms, zone_at) = parse_fraction_ms(s, 19)?;
    let offset_s = parse_zone_offset_s(s.get(zone_at..)?)?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_s;
    Some(seconds * MS_PER_SECOND + frac_ms)
}

/// An optional `.digits` at `at`: the milliseconds it holds and where the zone starts.
fn parse_fraction_ms(s: &str, at: usize) -> Option<(i64, usize)> {
    if s.as_bytes().get(at) != Some(&b'.') {
        return Some((0, at));
    }
    let digits: String = s[at + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    if digits.is_empty() {
        return None;
    }
    let ms_digits: String = digits.chars().chain("000".chars()).take(3).collect();
    Some((ms_digits.parse().ok()?, at + 1 + digits.len()))
}

/// `Z` or `±HH:MM`, as seconds east of UTC.
fn parse_zone_offset_s(zone: &str) -> Option<i64> {
    if zone == "Z" {
        return Some(0);
    }
    let b = zone.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i64 = zone[1..3].parse().ok()?;
    let minutes: i64 = zone[4..6].parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3_600 + minutes * 60))
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_times_round_the_fraction_to_milliseconds() {
        assert_eq!(parse_time_ms("1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time_ms("1700000000.123").unwrap(), 1_700_000_000_123);
        assert_eq!(parse_time_ms("1.0006").unwrap(), 1_001);
        assert_eq!(parse_time_ms("-1.5").unwrap(), -1_500);
        assert_eq!(parse_time_ms("1e3").unwrap(), 1_000_000);
    }

    #[test]
    fn rfc3339_times_with_zones_and_fractions() {
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20.123Z").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_time_ms("2023-11-14T23:13:20.1239+01:00").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_time_ms("2024-02-29T00:00:00Z").unwrap(),
            1_709_164_800_000
        );
    }

    #[test]
    fn malformed_times_are_bad_data() {
        for s in [
            "",
            "abc",
            "2023-02-29T00:00:00Z",
            "2023-11-14 22:13:20Z",
            "NaN",
        ] {
            let err = parse_time_ms(s).unwrap_err();
            assert_eq!(err.error_type(), "bad_data", "{s}");
        }
    }

    #[test]
    fn durations_as_seconds_or_prometheus_units() {
        assert_eq!(parse_duration_ms("15").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("0.5").unwrap(), 500);
        assert_eq!(parse_duration_ms("5m").unwrap(), 300_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("1d2h3m4s5ms").unwrap(), 93_784_005);
        assert_eq!(parse_duration_ms("0").unwrap(), 0);
        for s in ["", "m5", "30m1h", "1x", "1e400"] {
            assert!(parse_duration_ms(s).is_err(), "{s}");
        }
    }
}
