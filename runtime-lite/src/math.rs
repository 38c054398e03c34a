//! Scalar math for `no_std`: `exp`, `ln`, `sqrt`, `tanh`, `sigmoid` in f32.
//!
//! `core` has no transcendental functions, so these are written here (range reduction plus
//! minimax polynomials of the Cephes kind); each stays within a few ulp of the correctly
//! rounded result, checked against `std` in the tests. They are branch-light so that loops
//! over them vectorize.

const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const LOG2E: f32 = core::f32::consts::LOG2_E;

/// Rounds to the nearest integer, ties away from zero (no `std` needed).
#[inline]
fn round(x: f32) -> f32 {
    let t = x + 0.5f32.copysign(x);
    t as i32 as f32
}

/// 2^n as f32 for n in [-126, 127].
#[inline]
fn pow2i(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// e^x.
#[inline]
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > 88.722_84 {
        return f32::INFINITY;
    }
    if x < -103.972_08 {
        return 0.0;
    }
    let n = round(x * LOG2E);
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = 1.987_569_1e-4f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r2 + r + 1.0;
    let n = n as i32;
    // Split the scale so that results in the subnormal range and up to 2^128 stay exact.
    if n < -126 {
        y * pow2i(n + 64) * pow2i(-64)
    } else if n > 127 {
        y * pow2i(n - 1) * 2.0
    } else {
        y * pow2i(n)
    }
}

/// The natural logarithm; `ln(0) = -inf`, `ln(x < 0) = NaN`.
#[inline]
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return x;
    }
    let (mut x, mut e) = (x, 0i32);
    if x < f32::MIN_POSITIVE {
        x *= 16_777_216.0; // 2^24
        e -= 24;
    }
    let bits = x.to_bits();
    e += ((bits >> 23) & 0xff) as i32 - 126;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // in [0.5, 1)
    if m < core::f32::consts::FRAC_1_SQRT_2 {
        e -= 1;
        m = m + m - 1.0;
    } else {
        m -= 1.0;
    }
    let z = m * m;
    let p = 7.037_683_6e-2f32;
    let p = p * m - 1.151_461_1e-1;
    let p = p * m + 1.167_699_9e-1;
    let p = p * m - 1.242_014_1e-1;
    let p = p * m + 1.424_932_3e-1;
    let p = p * m - 1.666_805_8e-1;
    let p = p * m + 2.000_071_5e-1;
    let p = p * m - 2.499_999_4e-1;
    let p = p * m + 0.333_333_3;
    let ef = e as f32;
    let mut y = m * z * p;
    y += ef * LN2_LO;
    y -= 0.5 * z;
    m + y + ef * LN2_HI
}

/// The square root, correctly rounded (computed in f64 by Newton's method).
#[inline]
pub fn sqrt(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 || x == f32::INFINITY {
        return x;
    }
    let v = f64::from(x);
    // An initial guess from halving the exponent, then three Newton steps in f64: from a
    // guess within 2x, the error falls below f32 rounding well before the third step.
    let mut g = f64::from_bits((v.to_bits() >> 1) + (1023u64 << 51));
    g = 0.5 * (g + v / g);
    g = 0.5 * (g + v / g);
    g = 0.5 * (g + v / g);
    g = 0.5 * (g + v / g);
    g as f32
}

/// The hyperbolic tangent.
#[inline]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    if a < 0.625 {
        let z = x * x;
        let p = -5.704_988_7e-3f32;
        let p = p * z + 0.020_639_09;
        let p = p * z - 5.373_971_6e-2;
        let p = p * z + 1.333_144_2e-1;
        let p = p * z - 0.333_332_8;
        x + x * z * p
    } else if a > 9.010_913 {
        1.0f32.copysign(x)
    } else {
        let e = exp(2.0 * a);
        (1.0 - 2.0 / (e + 1.0)).copysign(x)
    }
}

/// The logistic sigmoid `1 / (1 + e^-x)`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + exp(-x))
    } else {
        let e = exp(x);
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        if a == b || (a.is_nan() && b.is_nan()) {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    fn sweep(lo: f32, hi: f32, steps: usize) -> impl Iterator<Item = f32> {
        (0..=steps).map(move |i| lo + (hi - lo) * i as f32 / steps as f32)
    }

    #[test]
    fn exp_matches_std() {
        for x in sweep(-103.0, 88.7, 200_000) {
            let want = (x as f64).exp() as f32;
            assert!(ulps(exp(x), want) <= 2, "exp({x}) = {} want {want}", exp(x));
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn ln_matches_std() {
        for x in sweep(1e-6, 100.0, 200_000).chain([1e-40, 3e38, 1.0, 0.5, 2.0]) {
            let want = (x as f64).ln() as f32;
            assert!(ulps(ln(x), want) <= 2, "ln({x}) = {} want {want}", ln(x));
        }
    }

    #[test]
    fn sqrt_is_exact() {
        for x in sweep(0.0, 1e6, 100_000).chain([1e-40, 3e38, 2.0]) {
            assert_eq!(sqrt(x), x.sqrt(), "sqrt({x})");
        }
    }

    #[test]
    fn tanh_and_sigmoid_match_std() {
        for x in sweep(-20.0, 20.0, 200_000) {
            let want = (x as f64).tanh() as f32;
            assert!(
                ulps(tanh(x), want) <= 4,
                "tanh({x}) = {} want {want}",
                tanh(x)
            );
            let want = (1.0 / (1.0 + (-x as f64).exp())) as f32;
            assert!(
                ulps(sigmoid(x), want) <= 4,
                "sigmoid({x}) = {} want {want}",
                sigmoid(x)
            );
        }
    }
}
