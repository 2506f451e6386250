//! The calendar functions (`hour`, `day_of_week`, ...), in UTC, of Unix seconds.

const SECONDS_PER_DAY: i64 = 86_400;

/// The calendar function `name`, as a function of Unix seconds.
pub(crate) fn date_function(name: &str) -> Option<fn(i64) -> f64> {
    let f: fn(i64) -> f64 = match name {
        "minute" => |s| (s.rem_euclid(3_600) / 60) as f64,
        "hour" => |s| (s.rem_euclid(SECONDS_PER_DAY) / 3_600) as f64,
        // 1970-01-01 was a Thursday; Sunday is 0.
        "day_of_week" => |s| (s.div_euclid(SECONDS_PER_DAY) + 4).rem_euclid(7) as f64,
        "day_of_month" => |s| civil(s).2 as f64,
        "month" => |s| civil(s).1 as f64,
        "year" => |s| civil(s).0 as f64,
        "day_of_year" => |s| {
            let (y, _, _) = civil(s);
            (s.div_euclid(SECONDS_PER_DAY) - days_from_civil(y, 1, 1) + 1) as f64
        },
        "days_in_month" => |s| {
            let (y, m, _) = civil(s);
            let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(next.0, next.1, 1) - days_from_civil(y, m, 1)) as f64
        },
        _ => return None,
    };
    Some(f)
}

/// (year, month, day) of Unix seconds (Howard Hinnant's civil_from_days).
fn civil(seconds: i64) -> (i64, i64, i64) {
    let z = seconds.div_euclid(SECONDS_PER_DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(name: &str, s: i64) -> f64 {
        date_function(name).unwrap()(s)
    }

    #[test]
    fn calendar_fields_in_utc() {
        // 2024-02-29T13:45:00Z, a Thursday.
        let s = 1_709_214_300;
        assert_eq!(at("year", s), 2024.0);
        assert_eq!(at("month", s), 2.0);
        assert_eq!(at("day_of_month", s), 29.0);
        assert_eq!(at("day_of_week", s), 4.0);
        assert_eq!(at("day_of_year", s), 60.0);
        assert_eq!(at("days_in_month", s), 29.0);
        assert_eq!(at("hour", s), 13.0);
        assert_eq!(at("minute", s), 45.0);
        assert_eq!(at("day_of_week", 0), 4.0);
        assert_eq!(at("days_in_month", 0), 31.0);
        // 1969-12-31T23:59:59Z.
        assert_eq!(at("year", -1), 1969.0);
        assert_eq!(at("hour", -1), 23.0);
    }
}
