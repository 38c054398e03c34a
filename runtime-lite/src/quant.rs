//! Quantization kernels: `QuantizeLinear`, `DequantizeLinear`, `DynamicQuantizeLinear`,
//! `QLinearMatMul`.

use crate::math::round_even_f64;

/// Where the scale (and zero point) of an element lives: the element at
/// `(o, a, r)` of `x` viewed as `[outer, len, inner]` uses parameter
/// `o * strides[0] + (a / block) * strides[1] + r * strides[2]`.
#[derive(Debug, Clone, Copy)]
pub struct ParamLayout {
    /// `[outer, len, inner]` of `x`.
    pub dims: [usize; 3],
    /// Block size along the axis (1 when per-axis or per-tensor).
    pub block: usize,
    /// Parameter strides for the outer, block and inner index.
    pub strides: [usize; 3],
}

/// `out[i] = f(x[i], scale[p], zero[p])` with `p` the element's parameter index; `zero` is
/// `None` when the zero point is omitted (then `Z::default()`).
pub fn affine<X: Copy, S: Copy, Z: Copy + Default, O>(
    x: &[X],
    scale: &[S],
    zero: Option<&[Z]>,
    out: &mut [O],
    layout: ParamLayout,
    f: impl Fn(X, S, Z) -> O,
) {
    let [outer, len, inner] = layout.dims;
    let [so, sa, si] = layout.strides;
    let mut i = 0;
    for o in 0..outer {
        for a in 0..len {
            let base = o * so + (a / layout.block) * sa;
            for r in 0..inner {
                let p = base + r * si;
                let z = zero.map_or(Z::default(), |z| z[p]);
                out[i] = f(x[i], scale[p], z);
                i += 1;
            }
        }
    }
}

/// `round_half_even(x / scale) + zero`, saturated to `[lo, hi]` (QuantizeLinear's integer
/// formula, division in f32).
#[inline]
pub fn quantize_f32(x: f32, scale: f32, zero: i64, lo: i64, hi: i64) -> i64 {
    let q = round_even_f64(f64::from(x / scale)) + zero as f64;
    if q.is_nan() {
        return 0.max(lo).min(hi);
    }
    (q.max(lo as f64).min(hi as f64)) as i64
}

/// DynamicQuantizeLinear to uint8: writes `y`, the scale and the zero point (the vectorized
/// [`crate::int8::quantize_dynamic`]).
pub fn dynamic_quantize_f32(x: &[f32], y: &mut [u8], scale: &mut [f32], zero: &mut [u8]) {
    let (s, z) = crate::int8::quantize_dynamic(x, y);
    scale[0] = s;
    zero[0] = z as u8;
}

/// The scalar formula of [`dynamic_quantize_f32`], the reference its vectorized form is
/// tested against.
pub fn dynamic_quantize_f32_scalar(x: &[f32], y: &mut [u8], scale: &mut [f32], zero: &mut [u8]) {
    let mut max = 0f32;
    let mut min = 0f32;
    for &v in x {
        max = if v > max { v } else { max };
        min = if v < min { v } else { min };
    }
    let s = (if max == min { 1.0 } else { max - min }) / 255.0;
    let initial = 0.0 - min / s;
    // A scale that underflows to 0 makes this 0 / 0: the zero point is then 0.
    let zp = if initial.is_nan() {
        0.0
    } else {
        round_even_f64(f64::from(initial.clamp(0.0, 255.0)))
    };
    for (o, &v) in y.iter_mut().zip(x) {
        let q = round_even_f64(f64::from(v / s)) + zp;
        *o = q.clamp(0.0, 255.0) as u8;
    }
    scale[0] = s;
    zero[0] = zp as u8;
}

/// QLinearMatMul core: `batch` products of `[m, k] x [k, n]` integer matrices (after
/// subtracting zero points, widened to i64), each sum scaled by `mult`, rounded half to even,
/// plus `y_zero` and saturated to `[lo, hi]`. `a_step`/`b_step` are the per-batch offsets (0
/// to broadcast).
#[allow(
    clippy::too_many_arguments,
    reason = "kernel parameters are compile-time constants passed positionally"
)]
pub fn qlinear_matmul<A: Copy + Into<i64>, B: Copy + Into<i64>, O>(
    a: &[A],
    b: &[B],
    out: &mut [O],
    batch: usize,
    [m, k, n]: [usize; 3],
    [a_step, b_step]: [usize; 2],
    [a_zero, b_zero, y_zero]: [i64; 3],
    mult: f64,
    [lo, hi]: [i64; 2],
    cast: impl Fn(i64) -> O,
) {
    for bt in 0..batch {
        let (ab, bb) = (bt * a_step, bt * b_step);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0i64;
                for p in 0..k {
                    let av: i64 = a[ab + i * k + p].into();
                    let bv: i64 = b[bb + p * n + j].into();
                    acc += (av - a_zero) * (bv - b_zero);
                }
                let d = round_even_f64(acc as f64 * mult) + y_zero as f64;
                out[(bt * m + i) * n + j] = cast(d.max(lo as f64).min(hi as f64) as i64);
            }
        }
    }
}

#[cfg(any(test, all(fuzzing, feature = "std")))]
pub(crate) mod tests {
    use super::*;
    use crate::int8::{dequantize_linear, quantize_linear};
    use std::vec::Vec;

    /// QuantizeLinear to `T` against [`quantize_f32`] element by element; the quantized values.
    fn quantize_matches_scalar<T: crate::int8::Byte + PartialEq + core::fmt::Debug>(
        x: &[f32],
        scale: &[f32],
        zero: &[T],
        layout: ParamLayout,
    ) -> Vec<T> {
        let mut got = std::vec![T::default(); x.len()];
        quantize_linear(x, scale, zero, &mut got, layout);
        let mut want = std::vec![T::default(); x.len()];
        affine(x, scale, Some(zero), &mut want, layout, |x, s, z: T| {
            let (lo, hi) = (i64::from(T::LO), i64::from(T::HI));
            T::from_i32(quantize_f32(x, s, i64::from(z.to_i32()), lo, hi) as i32)
        });
        assert_eq!(got, want, "{layout:?} x {x:?} scale {scale:?}");
        got
    }

    /// One random case of [`crate::testing::quantize`]: a per-tensor, per-axis or blocked
    /// layout, scales and zero points of any value, inputs of any bits.
    pub(crate) fn random_case(rng: &mut impl crate::testing::Source) {
        let mut bits = || rng.below(1 << 32) as u32;
        let (outer, axis, inner) = (
            1 + bits() as usize % 3,
            1 + bits() as usize % 6,
            bits() as usize % 20,
        );
        let block = 1 + bits() as usize % 3;
        let blocks = axis.div_ceil(block);
        let (layout, params) = match bits() % 3 {
            0 => (
                ParamLayout {
                    dims: [outer, axis, inner],
                    block: 1,
                    strides: [0; 3],
                },
                1,
            ),
            1 => (
                ParamLayout {
                    dims: [outer, axis, inner],
                    block: 1,
                    strides: [0, 1, 0],
                },
                axis,
            ),
            _ => (
                ParamLayout {
                    dims: [outer, axis, inner],
                    block,
                    strides: [blocks * inner, inner, 1],
                },
                outer * blocks * inner,
            ),
        };
        let n = outer * axis * inner;
        // Mostly ordinary values, now and then any bits (NaN, infinities, subnormals).
        let mut value = |scale: f32| {
            let b = bits();
            if b % 8 == 0 {
                f32::from_bits(bits())
            } else {
                (b >> 8) as f32 * scale - 4096.0 * scale
            }
        };
        let x: Vec<f32> = (0..n).map(|_| value(1.0 / 1024.0)).collect();
        let scale: Vec<f32> = (0..params).map(|_| value(1.0 / 4096.0).abs()).collect();
        let zero_u8: Vec<u8> = (0..params).map(|_| bits() as u8).collect();
        let zero_i8: Vec<i8> = (0..params).map(|_| bits() as i8).collect();
        let same = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan())
        };
        let got = quantize_matches_scalar(&x, &scale, &zero_u8, layout);
        quantize_matches_scalar(&x, &scale, &zero_i8, layout);
        let mut deq = std::vec![0f32; n];
        dequantize_linear(&got, &scale, &zero_u8, &mut deq, layout);
        let mut want_d = std::vec![0f32; n];
        affine(
            &got,
            &scale,
            Some(&zero_u8),
            &mut want_d,
            layout,
            |x, s, z: u8| (f32::from(x) - f32::from(z)) * s,
        );
        assert!(same(&deq, &want_d), "dequantize {layout:?}");
        // DynamicQuantizeLinear: the vectorized row against the scalar formula.
        let (mut y, mut s, mut z) = (std::vec![0u8; n], [0f32], [0u8]);
        dynamic_quantize_f32(&x, &mut y, &mut s, &mut z);
        let (mut y2, mut s2, mut z2) = (std::vec![0u8; n], [0f32], [0u8]);
        dynamic_quantize_f32_scalar(&x, &mut y2, &mut s2, &mut z2);
        assert!(
            (y == y2 && z == z2 && same(&s, &s2)),
            "dynamic quantization of {x:?}: {s:?} {z:?} {y:?}, scalar {s2:?} {z2:?} {y2:?}"
        );
    }

    #[cfg(test)]
    proptest::proptest! {
        #![proptest_config(crate::testing::config(200))]
        #[test]
        fn random_layouts_quantize_as_the_scalar_formulas(tape in crate::testing::tape()) {
            random_case(&mut crate::testing::Tape(&tape));
        }
    }

    #[test]
    fn quantize_rounds_half_even_and_saturates() {
        assert_eq!(quantize_f32(2.5, 1.0, 0, 0, 255), 2);
        assert_eq!(quantize_f32(3.5, 1.0, 0, 0, 255), 4);
        assert_eq!(quantize_f32(-3.0, 1.0, 1, 0, 255), 0);
        assert_eq!(quantize_f32(1000.0, 2.0, 10, -128, 127), 127);
    }

    #[test]
    fn blocked_layout() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let s = [1.0f32, 2.0];
        let mut out = [0f32; 4];
        let layout = ParamLayout {
            dims: [1, 4, 1],
            block: 2,
            strides: [0, 1, 0],
        };
        affine(&x, &s, None::<&[u8]>, &mut out, layout, |x, s, _| x * s);
        assert_eq!(out, [1.0, 2.0, 6.0, 8.0]);
    }

    #[test]
    fn dynamic() {
        let x = [0.0f32, 2.0, -3.0, 1000.0];
        let (mut y, mut s, mut z) = ([0u8; 4], [0f32], [0u8]);
        dynamic_quantize_f32(&x, &mut y, &mut s, &mut z);
        assert_eq!(z[0], 1);
        assert_eq!(y[3], 255);
    }

    /// The property test's find: a range of one subnormal, whose scale underflows to 0, so the
    /// zero point is 0 / 0. The vectorized form gave 255 and the scalar one 0; both now take
    /// zero point 0 and give 255 for the subnormal and 0 for the zeros.
    #[test]
    fn dynamic_with_a_scale_that_underflows() {
        let x = [f32::from_bits(88), 0.0, 0.0];
        let (mut y, mut s, mut z) = ([7u8; 3], [1f32], [7u8]);
        dynamic_quantize_f32(&x, &mut y, &mut s, &mut z);
        let (mut y2, mut s2, mut z2) = ([7u8; 3], [1f32], [7u8]);
        dynamic_quantize_f32_scalar(&x, &mut y2, &mut s2, &mut z2);
        assert_eq!((y, s, z), ([255, 0, 0], [0.0], [0]));
        assert_eq!((y2, s2, z2), (y, s, z));
    }

    #[test]
    fn matmul() {
        let a = [1u8, 2, 3, 4];
        let b = [1i8, 0, 0, 1];
        let mut out = [0u8; 4];
        qlinear_matmul(
            &a,
            &b,
            &mut out,
            1,
            [2, 2, 2],
            [0, 0],
            [1, 0, 3],
            1.0,
            [0, 255],
            |v| v as u8,
        );
        assert_eq!(out, [3, 4, 5, 6]);
    }
}
