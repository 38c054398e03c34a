//! f64 scalar math for `no_std` kernels that accumulate in double precision (normalization,
//! Lp pooling, resizing, quantized products): `sqrt_f64`, `exp_f64`, `ln_f64`, `pow_f64`,
//! `floor_f64`, `ceil_f64`, `round_half_even_f64`, `sin_cos_f64`.
//!
//! Accurate to a few ulp of f64, far below the f32 rounding the results go through.

const LN2: f64 = core::f64::consts::LN_2;

/// Rounds toward negative infinity (no `std` needed); values beyond 2^52 are already whole.
#[inline]
pub fn floor_f64(x: f64) -> f64 {
    if x.is_nan() || x.abs() >= 4_503_599_627_370_496.0 {
        return x;
    }
    let t = x as i64 as f64;
    if t > x {
        t - 1.0
    } else {
        t
    }
}

/// Rounds to the nearest integer, halves to even (`rint`).
#[inline]
pub fn round_half_even_f64(x: f64) -> f64 {
    let f = floor_f64(x);
    let d = x - f;
    if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) {
        f + 1.0
    } else {
        f
    }
}

/// `(sin x, cos x)`, reduced by multiples of pi/2 (accurate for |x| up to ~1e6).
pub fn sin_cos_f64(x: f64) -> (f64, f64) {
    if !x.is_finite() {
        return (f64::NAN, f64::NAN);
    }
    // pi/2 split so that q * PIO2_HI is exact for the q we meet.
    const PIO2_HI: f64 = 1.570_796_326_734_125_6;
    const PIO2_LO: f64 = 6.077_100_506_506_192e-11;
    let q = floor_f64(x / core::f64::consts::FRAC_PI_2 + 0.5);
    let r = (x - q * PIO2_HI) - q * PIO2_LO;
    let r2 = r * r;
    // Taylor series on |r| <= pi/4: 11 terms are well past f64 precision.
    let (mut s, mut c) = (0.0, 0.0);
    let (mut ts, mut tc) = (r, 1.0);
    for k in 0..11 {
        s += ts;
        c += tc;
        let k = f64::from(k);
        ts *= -r2 / ((2.0 * k + 2.0) * (2.0 * k + 3.0));
        tc *= -r2 / ((2.0 * k + 1.0) * (2.0 * k + 2.0));
    }
    match (q as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// Rounds toward positive infinity.
#[inline]
pub fn ceil_f64(x: f64) -> f64 {
    -floor_f64(-x)
}

/// The square root, correctly rounded (as IEEE 754 defines it, and as every CPU's square
/// root instruction returns it), so that the result does not depend on the CPU: on x86-64 the
/// SSE2 instruction, elsewhere Newton's method from an exponent-halving guess, then the
/// neighbour whose rounding interval holds the exact root.
#[inline]
pub fn sqrt_f64(x: f64) -> f64 {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use core::arch::x86_64::{_mm_cvtsd_f64, _mm_set_sd, _mm_sqrt_pd};
        // SAFETY: SSE2 is part of x86-64; the intrinsics touch registers only.
        unsafe { _mm_cvtsd_f64(_mm_sqrt_pd(_mm_set_sd(x))) }
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    {
        sqrt_portable(x)
    }
}

/// [`sqrt_f64`] without the CPU's instruction (also under Miri).
#[cfg_attr(
    all(target_arch = "x86_64", not(miri)),
    allow(dead_code, reason = "tested against the instruction")
)]
fn sqrt_portable(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 || x == f64::INFINITY {
        return x;
    }
    // Subnormals scaled by 2^104 into the normal range (2^52 on the root, exact).
    let (scaled, shift) = if x < 1e-300 {
        (x * 4_503_599_627_370_496.0 * 4_503_599_627_370_496.0, true)
    } else {
        (x, false)
    };
    let mut g = f64::from_bits((scaled.to_bits() >> 1) + (1023u64 << 51));
    for _ in 0..6 {
        g = 0.5 * (g + scaled / g);
    }
    let g = sqrt_round(scaled, g);
    if shift {
        g / 4_503_599_627_370_496.0
    } else {
        g
    }
}

/// The correctly rounded square root of the positive normal `x`, from `g` within a few ulps of
/// it: moves `g` up or down an ulp until the square of each midpoint to its neighbours lies on
/// its side of `x`, the squares compared exactly as 128-bit integers (no midpoint's square
/// equals a double, so there are no ties).
fn sqrt_round(x: f64, mut g: f64) -> f64 {
    // `v = m * 2^e` with the integer significand `m` (implicit bit included).
    let parts = |v: f64| -> (u128, i32) {
        let bits = v.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i32;
        (u128::from(bits & ((1 << 52) - 1) | (1 << 52)), e - 1075)
    };
    let (mx, ex) = parts(x);
    // Whether the midpoint `(2m + 1) * 2^(e - 1)` above `g = m * 2^e` squares below `x`:
    // `(2m + 1)^2 * 2^(2e - 2)` against `mx * 2^ex`.
    let mid_below = |g: f64| -> bool {
        let (m, e) = parts(g);
        let square = (2 * m + 1) * (2 * m + 1);
        let k = ex - (2 * e - 2);
        if k >= 0 {
            // `mx < 2^53` and `k` about 53 to 56 here (g near the root): no overflow.
            square < mx << k
        } else {
            (square >> -k) < mx || ((square >> -k) == mx && square & ((1 << -k) - 1) == 0)
        }
    };
    for _ in 0..4 {
        if mid_below(g) {
            g = f64::from_bits(g.to_bits() + 1);
        } else if !mid_below(f64::from_bits(g.to_bits() - 1)) {
            g = f64::from_bits(g.to_bits() - 1);
        } else {
            break;
        }
    }
    g
}

/// e^x.
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.782_712_893_384 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    let n = floor_f64(x / LN2 + 0.5);
    // ln 2 split so that n * LN2_HI is exact.
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor series; |r| <= 0.35 so 18 terms are well past f64 precision.
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..20 {
        term *= r / f64::from(k);
        sum += term;
    }
    let n = n as i64;
    let scale = |e: i64| f64::from_bits(((e + 1023) as u64) << 52);
    if n < -1000 {
        sum * scale(n + 1000) * scale(-1000)
    } else if n > 1000 {
        sum * scale(n - 1000) * scale(1000)
    } else {
        sum * scale(n)
    }
}

/// The natural logarithm; `ln(0) = -inf`, `ln(x < 0) = NaN`.
pub fn ln_f64(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x == f64::INFINITY {
        return x;
    }
    let (mut x, mut e) = (x, 0i64);
    if x < f64::MIN_POSITIVE {
        x *= 4_503_599_627_370_496.0; // 2^52
        e -= 52;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000); // [1, 2)
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * LN2
}

/// `base^exponent` for the cases normalization and pooling need: a negative base only with
/// an integer exponent (NaN otherwise).
pub fn pow_f64(base: f64, exponent: f64) -> f64 {
    if exponent == 0.0 {
        return 1.0;
    }
    if exponent == 1.0 {
        return base;
    }
    if exponent == 2.0 {
        return base * base;
    }
    if base == 0.0 {
        return if exponent > 0.0 { 0.0 } else { f64::INFINITY };
    }
    if base < 0.0 {
        if floor_f64(exponent) != exponent {
            return f64::NAN;
        }
        let magnitude = exp_f64(exponent * ln_f64(-base));
        let odd = floor_f64(exponent * 0.5) * 2.0 != exponent;
        return if odd { -magnitude } else { magnitude };
    }
    exp_f64(exponent * ln_f64(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-14 * b.abs().max(1e-300)
    }

    #[test]
    fn matches_std() {
        for i in 0..20_000 {
            let x = (i as f64 - 10_000.0) * 0.07;
            assert!(close(exp_f64(x), x.exp()), "exp({x})");
            let y = (i as f64 + 0.5) * 1.37e-3;
            assert!(
                close(ln_f64(y), y.ln()) || (ln_f64(y) - y.ln()).abs() < 1e-15,
                "ln({y})"
            );
            assert!(close(sqrt_f64(y), y.sqrt()), "sqrt({y})");
            assert!(close(pow_f64(y, 0.75), y.powf(0.75)), "pow({y})");
            assert_eq!(floor_f64(x), x.floor());
            assert_eq!(ceil_f64(x), x.ceil());
        }
        assert!(close(sqrt_f64(1e-310), 1e-310f64.sqrt()));
        assert_eq!(sqrt_portable(1e-310), 1e-310f64.sqrt());
        assert_eq!(round_half_even_f64(2.5), 2.0);
        for i in 0..10_000 {
            let x = (i as f64 - 5_000.0) * 0.0137;
            let (s, c) = sin_cos_f64(x);
            assert!(
                (s - x.sin()).abs() < 1e-15 && (c - x.cos()).abs() < 1e-15,
                "sincos({x})"
            );
        }
        assert_eq!(round_half_even_f64(-2.5), -2.0);
        assert_eq!(round_half_even_f64(3.5), 4.0);
        assert_eq!(round_half_even_f64(-0.7), -1.0);
        assert!((pow_f64(-2.0, 3.0) + 8.0).abs() < 1e-12);
    }

    /// The portable square root is the correctly rounded one, bit for bit, over random
    /// doubles of every exponent, subnormals included, and around the squares of doubles.
    #[test]
    fn portable_sqrt_is_correctly_rounded() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let count = if cfg!(miri) { 200 } else { 400_000 };
        for _ in 0..count {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = f64::from_bits((state >> 1) & 0x7fef_ffff_ffff_ffff);
            assert_eq!(
                sqrt_portable(x).to_bits(),
                x.sqrt().to_bits(),
                "sqrt({x:e})"
            );
            let r = f64::from_bits(state >> 12 | 0x3ff0_0000_0000_0000);
            for y in [
                r * r,
                f64::from_bits((r * r).to_bits() + 1),
                f64::from_bits((r * r).to_bits() - 1),
            ] {
                assert_eq!(
                    sqrt_portable(y).to_bits(),
                    y.sqrt().to_bits(),
                    "sqrt({y:e})"
                );
            }
        }
        for x in [f64::MIN_POSITIVE, 5e-324, f64::MAX, 1.0, 2.0, 4.0, 0.25] {
            assert_eq!(
                sqrt_portable(x).to_bits(),
                x.sqrt().to_bits(),
                "sqrt({x:e})"
            );
        }
        assert!(sqrt_portable(-1.0).is_nan() && sqrt_portable(f64::NAN).is_nan());
        assert_eq!(sqrt_portable(0.0), 0.0);
    }
}
