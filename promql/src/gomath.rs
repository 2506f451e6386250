//! Logarithms computed as Go's `math` package computes them, so that `ln`, `log2` and
//! `log10` agree with Prometheus to the last bit (the platform's libm often differs by one
//! unit in the last place). The natural logarithm is the classic fdlibm algorithm: reduce to
//! `f * 2^k` with `f` in `[sqrt(2)/2, sqrt(2))`, then a polynomial in `s = f / (2 + f)`.

use std::f64::consts::{FRAC_1_SQRT_2, LOG10_E, LOG2_E};

// fdlibm's published constants, digits as published (they round to the intended doubles).
#[allow(clippy::excessive_precision)]
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
#[allow(clippy::excessive_precision)]
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
#[allow(clippy::excessive_precision)]
const LG: [f64; 7] = [
    6.666_666_666_666_735_130e-01,
    3.999_999_999_940_941_908e-01,
    2.857_142_874_366_239_149e-01,
    2.222_219_843_214_978_396e-01,
    1.818_357_216_161_805_012e-01,
    1.531_383_769_920_937_332e-01,
    1.479_819_860_511_658_591e-01,
];

/// `x = frac * 2^exp` with `|frac|` in `[0.5, 1)`; zero, infinities and NaN are returned
/// with exponent 0.
pub(crate) fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let (x, mut exp) = if x.abs() < f64::MIN_POSITIVE {
        (x * (1u64 << 52) as f64, -52)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i32 - 1023 + 1;
    let frac_bits = (bits & !(0x7ff << 52)) | (1022 << 52);
    (f64::from_bits(frac_bits), exp)
}

/// The natural logarithm.
pub(crate) fn ln(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    let (mut f1, mut ki) = frexp(x);
    if f1 < FRAC_1_SQRT_2 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = f64::from(ki);
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (LG[0] + s4 * (LG[2] + s4 * (LG[4] + s4 * LG[6])));
    let t2 = s4 * (LG[1] + s4 * (LG[3] + s4 * LG[5]));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// The binary logarithm; exact for powers of two.
pub(crate) fn log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    ln(frac) * LOG2_E + f64::from(exp)
}

/// The decimal logarithm.
pub(crate) fn log10(x: f64) -> f64 {
    ln(x) * LOG10_E
}

/// `x * 2^exp` with Go's rounding of subnormal results.
pub(crate) fn ldexp(frac: f64, exp: i32) -> f64 {
    if frac == 0.0 || !frac.is_finite() {
        return frac;
    }
    let (frac, shift) = if frac.abs() < f64::MIN_POSITIVE {
        (frac * (1u64 << 52) as f64, -52)
    } else {
        (frac, 0)
    };
    let bits = frac.to_bits();
    let exp = exp + shift + ((bits >> 52) & 0x7ff) as i32 - 1023;
    if exp < -1075 {
        return 0.0_f64.copysign(frac);
    }
    if exp > 1023 {
        return f64::INFINITY.copysign(frac);
    }
    let (exp, scale) = if exp < -1022 {
        (exp + 53, 1.0 / (1u64 << 53) as f64)
    } else {
        (exp, 1.0)
    };
    let bits = (bits & !(0x7ff << 52)) | (((exp + 1023) as u64) << 52);
    scale * f64::from_bits(bits)
}

fn is_odd_int(x: f64) -> bool {
    if x.abs() >= (1u64 << 53) as f64 {
        return false;
    }
    x.fract() == 0.0 && (x.trunc() as i64) & 1 == 1
}

/// `x ^ y` as Go's `math.Pow` computes it: special cases first, then `x^frac(y)` through
/// exp and ln and `x^int(y)` by repeated squaring of the binary fraction of `x`. Integer
/// exponents thereby round exactly as in Prometheus; the fractional part uses Rust's `exp`.
pub(crate) fn pow(x: f64, y: f64) -> f64 {
    if let Some(special) = pow_special_case(x, y) {
        return special;
    }
    let (mut yi, mut yf) = (y.abs().trunc(), y.abs().fract());
    if yf != 0.0 && x < 0.0 {
        return f64::NAN;
    }
    if yi >= 9_223_372_036_854_775_808.0 {
        return match x {
            -1.0 => 1.0,
            _ if (x.abs() < 1.0) == (y > 0.0) => 0.0,
            _ => f64::INFINITY,
        };
    }
    let mut a1 = 1.0;
    let mut ae = 0;
    if yf != 0.0 {
        if yf > 0.5 {
            yf -= 1.0;
            yi += 1.0;
        }
        a1 = (yf * ln(x)).exp();
    }
    let (mut x1, mut xe) = frexp(x);
    let mut i = yi as i64;
    while i != 0 {
        if !(-(1 << 12)..=(1 << 12)).contains(&xe) {
            // Certain overflow or underflow: left to ldexp.
            ae += xe;
            break;
        }
        if i & 1 == 1 {
            a1 *= x1;
            ae += xe;
        }
        x1 *= x1;
        xe <<= 1;
        if x1 < 0.5 {
            x1 += x1;
            xe -= 1;
        }
        i >>= 1;
    }
    if y < 0.0 {
        a1 = 1.0 / a1;
        ae = -ae;
    }
    ldexp(a1, ae)
}

fn pow_special_case(x: f64, y: f64) -> Option<f64> {
    let v = if y == 0.0 || x == 1.0 {
        1.0
    } else if y == 1.0 {
        x
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 {
        let odd_negative_zero = x.is_sign_negative() && is_odd_int(y);
        match (y < 0.0, odd_negative_zero) {
            (true, true) => f64::NEG_INFINITY,
            (true, false) => f64::INFINITY,
            (false, true) => x,
            (false, false) => 0.0,
        }
    } else if y.is_infinite() {
        if x == -1.0 {
            1.0
        } else if (x.abs() < 1.0) == (y > 0.0) {
            0.0
        } else {
            f64::INFINITY
        }
    } else if x.is_infinite() {
        if x < 0.0 {
            return Some(pow(1.0 / x, -y));
        }
        if y < 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else if y == 0.5 {
        x.sqrt()
    } else if y == -0.5 {
        1.0 / x.sqrt()
    } else {
        return None;
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_splits_into_fraction_and_exponent() {
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(frexp(-3.0), (-0.75, 2));
        assert_eq!(frexp(f64::MIN_POSITIVE / 4.0), (0.5, -1023));
        assert_eq!(frexp(0.0), (0.0, 0));
    }

    #[test]
    fn pow_special_cases_and_integer_powers() {
        assert_eq!(pow(2.0, 10.0), 1024.0);
        assert_eq!(pow(2.0, -2.0), 0.25);
        assert_eq!(pow(-2.0, 3.0), -8.0);
        assert!(pow(-2.0, 0.5).is_nan());
        assert_eq!(pow(0.0, -1.0), f64::INFINITY);
        assert_eq!(pow(-0.0, -3.0), f64::NEG_INFINITY);
        assert_eq!(pow(f64::NAN, 0.0), 1.0);
        assert_eq!(pow(1.0, f64::NAN), 1.0);
        assert_eq!(pow(0.5, f64::INFINITY), 0.0);
        assert_eq!(pow(f64::NEG_INFINITY, 3.0), f64::NEG_INFINITY);
        assert_eq!(pow(10.0, 400.0), f64::INFINITY);
        assert_eq!(pow(10.0, -400.0), 0.0);
        assert_eq!(pow(4.0, 0.5), 2.0);
        assert!((pow(2.0, 0.3) - 2f64.powf(0.3)).abs() < 1e-15);
    }

    #[test]
    fn ldexp_scales_by_powers_of_two() {
        assert_eq!(ldexp(0.5, 3), 4.0);
        assert_eq!(ldexp(1.0, -1074), f64::from_bits(1));
        assert_eq!(ldexp(1.0, -1076), 0.0);
        assert_eq!(ldexp(1.0, 1024), f64::INFINITY);
    }

    #[test]
    fn logarithms_match_known_values_and_special_cases() {
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(std::f64::consts::E), 1.0);
        assert_eq!(log2(1024.0), 10.0);
        assert_eq!(log2(0.25), -2.0);
        assert!(ln(-1.0).is_nan());
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert_eq!(ln(f64::INFINITY), f64::INFINITY);
        for x in [0.001, 0.5, 2.0, 3.7, 1e10, 1e-300] {
            assert!((ln(x) - x.ln()).abs() <= 2.0 * f64::EPSILON * x.ln().abs().max(1.0));
        }
    }
}
