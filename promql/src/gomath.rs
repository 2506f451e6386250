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
