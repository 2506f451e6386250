//! The `data` object of Prometheus's query API: `{"resultType": ..., "result": ...}`.
//!
//! Values are strings formatted as Prometheus 2.42 formats them (shortest round-trip digits;
//! plain notation, except exponent notation below 1e-6 and from 1e21 on, the cut-offs its JSON
//! writer takes from JavaScript). Times are seconds with a millisecond fraction.

use serde_json::{json, Map, Value as Json};

use crate::{Labels, Sample, Series, Value};

/// Prometheus's `data` object for a query result.
pub fn result_json(value: &Value) -> Json {
    let (result_type, result) = match value {
        Value::Scalar { t_ms, v } => ("scalar", point_json(*t_ms, format_float(*v))),
        Value::String { t_ms, v } => ("string", point_json(*t_ms, v.clone())),
        Value::Vector(samples) => ("vector", vector_json(samples)),
        Value::Matrix(series) => ("matrix", matrix_json(series)),
    };
    json!({ "resultType": result_type, "result": result })
}

/// A sample value as Prometheus writes it: `"+Inf"`, `"-Inf"`, `"NaN"`, `"0.1"`, `"1e-07"`,
/// `"1.5e+21"`.
pub fn format_float(v: f64) -> String {
    let abs = v.abs();
    if v.is_finite() && abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        return go_exponent_notation(v);
    }
    go_format_f(v)
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent (the
/// value label of `count_values`).
pub(crate) fn go_format_f(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let (digits, exponent) = shortest_digits(v);
    let sign = if v < 0.0 { "-" } else { "" };
    let n = digits.len() as i32;
    let body = if exponent >= n - 1 {
        format!("{digits}{}", "0".repeat((exponent - (n - 1)) as usize))
    } else if exponent >= 0 {
        let (int, frac) = digits.split_at(exponent as usize + 1);
        format!("{int}.{frac}")
    } else {
        format!("0.{}{digits}", "0".repeat((-exponent - 1) as usize))
    };
    format!("{sign}{body}")
}

/// Go's `%v` for a float (used in error messages Prometheus formats that way): shortest
/// digits, exponent form when the decimal exponent is below -4 or at least 6.
pub(crate) fn go_format_g(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return go_format_f(v);
    }
    if !(-4..6).contains(&shortest_digits(v).1) {
        return go_exponent_notation(v);
    }
    go_format_f(v)
}

/// Go's `'e'` format with shortest digits: the exponent carries a sign and at least two
/// digits.
fn go_exponent_notation(v: f64) -> String {
    let (digits, exponent) = shortest_digits(v);
    let sign = if v < 0.0 { "-" } else { "" };
    let (first, rest) = digits.split_at(1);
    let point = if rest.is_empty() { "" } else { "." };
    let exp_sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{first}{point}{rest}e{exp_sign}{:02}", exponent.abs())
}

/// The shortest decimal digits that read back as `|v|` (finite, non-zero) and the decimal
/// exponent of the first digit. When two candidates of that length are equally near `v`,
/// the even one is taken, as Go does (Rust's shortest formatting rounds such ties up).
fn shortest_digits(v: f64) -> (String, i32) {
    let shortest = format!("{:e}", v.abs());
    let (mantissa, _) = shortest.split_once('e').expect("`{:e}` has an exponent");
    let significant = mantissa.chars().filter(char::is_ascii_digit).count();
    // Exact formatting to that many digits rounds half to even and yields the candidate
    // nearest to `v`: it reads back as `v` whenever any candidate of that length does.
    let nearest = format!("{:.*e}", significant - 1, v.abs());
    let chosen = if nearest.parse::<f64>() == Ok(v.abs()) {
        nearest
    } else {
        shortest
    };
    let (mantissa, exponent) = chosen.split_once('e').expect("`{:e}` has an exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits, exponent.parse().expect("exponent is an integer"))
}

/// Milliseconds as JSON seconds: an integer when whole (as Prometheus writes it), else a
/// float whose shortest form is the millisecond fraction.
fn time_json(t_ms: i64) -> Json {
    if t_ms % 1000 == 0 {
        Json::from(t_ms / 1000)
    } else {
        Json::from(t_ms as f64 / 1000.0)
    }
}

fn point_json(t_ms: i64, value: String) -> Json {
    Json::Array(vec![time_json(t_ms), Json::String(value)])
}

fn labels_json(labels: &Labels) -> Json {
    let map: Map<String, Json> = labels
        .0
        .iter()
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect();
    Json::Object(map)
}

fn vector_json(samples: &[(Labels, Sample)]) -> Json {
    let items = samples
        .iter()
        .map(|(labels, s)| {
            json!({ "metric": labels_json(labels), "value": point_json(s.t_ms, format_float(s.v)) })
        })
        .collect();
    Json::Array(items)
}

fn matrix_json(series: &[Series]) -> Json {
    let items = series
        .iter()
        .map(|s| {
            let values: Vec<Json> = s
                .samples
                .iter()
                .map(|p| point_json(p.t_ms, format_float(p.v)))
                .collect();
            json!({ "metric": labels_json(&s.labels), "values": values })
        })
        .collect();
    Json::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_as_prometheus_does() {
        let cases: [(f64, &str); 12] = [
            (1.0, "1"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (1e-6, "0.000001"),
            (1e-7, "1e-07"),
            (-3.25e-10, "-3.25e-10"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            assert_eq!(format_float(v), want, "{v:?}");
        }
        assert_eq!(format_float(1.0 / 3.0), "0.3333333333333333");
        // 1953125000000000.25, exactly halfway between ...0.2 and ...0.3: the even digit, as Go
        // writes it.
        assert_eq!(
            format_float(f64::from_bits(0x431b_c16d_674e_c801)),
            "1953125000000000.2"
        );
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(123.456), "123.456");
        assert_eq!(format_float(-1e-5), "-0.00001");
        assert_eq!(format_float(1.5e300), "1.5e+300");
        assert_eq!(format_float(0.0), "0");
    }

    #[test]
    fn go_percent_v_switches_to_exponents_early() {
        assert_eq!(go_format_g(2f64.powi(63)), "9.223372036854776e+18");
        assert_eq!(go_format_g(123_456.0), "123456");
        assert_eq!(go_format_g(1e6), "1e+06");
        assert_eq!(go_format_g(0.0001), "0.0001");
        assert_eq!(go_format_g(0.00001), "1e-05");
        assert_eq!(go_format_g(f64::NAN), "NaN");
    }

    #[test]
    fn times_are_seconds_with_millisecond_fraction() {
        assert_eq!(time_json(1_700_000_000_000).to_string(), "1700000000");
        assert_eq!(time_json(1_700_000_000_123).to_string(), "1700000000.123");
        assert_eq!(time_json(1_700_000_000_100).to_string(), "1700000000.1");
        assert_eq!(time_json(-1_500).to_string(), "-1.5");
    }

    #[test]
    fn result_shapes_match_the_http_api() {
        let labels = Labels(vec![("__name__".into(), "up".into())]);
        let scalar = result_json(&Value::Scalar {
            t_ms: 1_000,
            v: 2.0,
        });
        assert_eq!(scalar, json!({"resultType": "scalar", "result": [1, "2"]}));
        let vector = result_json(&Value::Vector(vec![(
            labels.clone(),
            Sample {
                t_ms: 1_500,
                v: 1.0,
            },
        )]));
        let want = json!({"resultType": "vector",
            "result": [{"metric": {"__name__": "up"}, "value": [1.5, "1"]}]});
        assert_eq!(vector, want);
        let matrix = result_json(&Value::Matrix(vec![Series {
            labels,
            samples: vec![Sample {
                t_ms: 0,
                v: f64::NAN,
            }],
        }]));
        let want = json!({"resultType": "matrix",
            "result": [{"metric": {"__name__": "up"}, "values": [[0, "NaN"]]}]});
        assert_eq!(matrix, want);
    }
}
