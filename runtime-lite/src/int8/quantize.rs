//! Vectorized `QuantizeLinear` (float32 to 8-bit) and `DequantizeLinear` (8-bit to float32),
//! per tensor or per axis: runs of equal parameters are tight loops the compiler vectorizes,
//! bit for bit the scalar formulas of [`crate::quant`] (`round_half_even(x / scale) + zero`,
//! saturated, NaN to 0; `(x - zero) * scale`).

use crate::quant::ParamLayout;

/// An 8-bit integer type.
pub trait Byte: Copy + Default {
    /// The smallest value.
    const LO: i32;
    /// The largest value.
    const HI: i32;
    /// The value as `i32`.
    fn to_i32(self) -> i32;
    /// `v` (in range) as this type.
    fn from_i32(v: i32) -> Self;
}

impl Byte for u8 {
    const LO: i32 = 0;
    const HI: i32 = 255;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as u8
    }
}

impl Byte for i8 {
    const LO: i32 = -128;
    const HI: i32 = 127;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as i8
    }
}

/// Quantizes one run with one scale and zero point.
#[inline(always)]
pub(super) fn quantize_run<T: Byte>(x: &[f32], scale: f32, zero: i32, out: &mut [T]) {
    let (lo, hi) = ((T::LO - zero) as f32, (T::HI - zero) as f32);
    let nan_to = -(zero as f32);
    for (o, &v) in out.iter_mut().zip(x) {
        let q = v / scale;
        // NaN becomes 0 after the zero point is added, as the scalar formula gives.
        let q = if q.is_nan() { nan_to } else { q };
        *o = T::from_i32(super::round_small(super::clamp_fast(q, lo, hi)) + zero);
    }
}

/// Dequantizes one run with one scale and zero point.
#[inline(always)]
fn dequantize_run<T: Byte>(x: &[T], scale: f32, zero: i32, out: &mut [f32]) {
    let z = zero as f32;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v.to_i32() as f32 - z) * scale;
    }
}

/// Calls `run(start, len, parameter)` for each run of elements sharing a parameter.
fn runs(len: usize, layout: &ParamLayout, mut run: impl FnMut(usize, usize, usize)) {
    let [outer, axis, inner] = layout.dims;
    let [so, sa, si] = layout.strides;
    if so == 0 && sa == 0 && si == 0 {
        run(0, len, 0);
        return;
    }
    let mut start = 0;
    for o in 0..outer {
        for a in 0..axis {
            let base = o * so + (a / layout.block.max(1)) * sa;
            if si == 0 {
                run(start, inner, base);
            } else {
                for r in 0..inner {
                    run(start + r, 1, base + r * si);
                }
            }
            start += inner;
        }
    }
}

/// `out = saturate(round_half_even(x / scale) + zero)` with the parameters laid out as
/// `layout` says; `zero` empty means 0.
///
/// Panics if a buffer is shorter than the layout needs.
pub fn quantize_linear<T: Byte>(
    x: &[f32],
    scale: &[f32],
    zero: &[T],
    out: &mut [T],
    layout: ParamLayout,
) {
    let n = x.len().min(out.len());
    runs(n, &layout, |start, len, p| {
        let z = zero.get(p).map_or(0, |z| z.to_i32());
        quantize_run(
            &x[start..start + len],
            scale[p],
            z,
            &mut out[start..start + len],
        );
    });
}

/// `out = (x - zero) * scale` with the parameters laid out as `layout` says; `zero` empty
/// means 0.
///
/// Panics if a buffer is shorter than the layout needs.
pub fn dequantize_linear<T: Byte>(
    x: &[T],
    scale: &[f32],
    zero: &[T],
    out: &mut [f32],
    layout: ParamLayout,
) {
    let n = x.len().min(out.len());
    runs(n, &layout, |start, len, p| {
        let z = zero.get(p).map_or(0, |z| z.to_i32());
        dequantize_run(
            &x[start..start + len],
            scale[p],
            z,
            &mut out[start..start + len],
        );
    });
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::quant::{affine, quantize_f32};
    use std::vec;
    use std::vec::Vec;

    fn layouts(n: usize) -> Vec<(ParamLayout, usize)> {
        vec![
            (
                ParamLayout {
                    dims: [1, 1, n],
                    block: 1,
                    strides: [0, 0, 0],
                },
                1,
            ),
            (
                ParamLayout {
                    dims: [2, 3, n / 6],
                    block: 1,
                    strides: [0, 1, 0],
                },
                3,
            ),
            (
                ParamLayout {
                    dims: [2, 6, n / 12],
                    block: 2,
                    strides: [3 * (n / 12), n / 12, 1],
                },
                6 * (n / 12),
            ),
        ]
    }

    #[test]
    fn gathered_rows_are_dequantized() {
        let table = [1i8, -2, 3, 4, 5, -6];
        let scales = [0.5f32, 2.0, 0.25];
        let mut out = [9f32; 8];
        gather_rows_dequant(&table, &scales, 2, &[2i64, -3, 7, 1], &mut out);
        assert_eq!(out, [1.25, -1.5, 0.5, -1.0, 0.0, 0.0, 6.0, 8.0]);
    }

    #[test]
    fn quantize_and_dequantize_match_the_scalar_formulas() {
        let n = 120;
        let x: Vec<f32> = (0..n)
            .map(|i| match i % 17 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => -1e30,
                _ => (i as f32 - 60.0) * 0.37 + 0.5,
            })
            .collect();
        for (layout, params) in layouts(n) {
            let scale: Vec<f32> = (0..params).map(|p| 0.25 + p as f32 * 0.5).collect();
            let zero_u8: Vec<u8> = (0..params).map(|p| (p * 37 % 256) as u8).collect();
            let zero_i8: Vec<i8> = (0..params)
                .map(|p| (p as i32 * 29 % 128 - 64) as i8)
                .collect();
            let mut got = vec![0u8; n];
            quantize_linear(&x, &scale, &zero_u8, &mut got, layout);
            let mut want = vec![0u8; n];
            affine(
                &x,
                &scale,
                Some(&zero_u8),
                &mut want,
                layout,
                |x, s, z: u8| quantize_f32(x, s, i64::from(z), 0, 255) as u8,
            );
            assert_eq!(got, want);
            let mut got = vec![0i8; n];
            quantize_linear(&x, &scale, &zero_i8, &mut got, layout);
            let mut want_i = vec![0i8; n];
            affine(
                &x,
                &scale,
                Some(&zero_i8),
                &mut want_i,
                layout,
                |x, s, z: i8| quantize_f32(x, s, i64::from(z), -128, 127) as i8,
            );
            assert_eq!(got, want_i);
            let mut deq = vec![0f32; n];
            dequantize_linear(&got, &scale, &zero_i8, &mut deq, layout);
            let mut want_d = vec![0f32; n];
            affine(
                &got,
                &scale,
                Some(&zero_i8),
                &mut want_d,
                layout,
                |x, s, z: i8| (f32::from(x) - f32::from(z)) * s,
            );
            assert_eq!(deq, want_d);
        }
    }
}

/// `Gather` along axis 0 of an int8 table quantized per row: `out[j] = table[indices[j]] *
/// scales[indices[j]]`, each row `dim` values (an embedding lookup from a table a quarter of
/// its float size). Negative indices count from the end; out-of-range ones give zeros, as
/// [`crate::shape::gather`] does.
///
/// Panics if a buffer is too short for the shapes.
pub fn gather_rows_dequant<I: crate::shape::IndexValue>(
    table: &[i8],
    scales: &[f32],
    dim: usize,
    indices: &[I],
    out: &mut [f32],
) {
    let rows = scales.len();
    assert!(
        table.len() >= rows * dim && out.len() >= indices.len() * dim,
        "gather_rows_dequant: buffers too short"
    );
    for (j, &idx) in indices.iter().enumerate() {
        let dst = &mut out[j * dim..][..dim];
        match crate::shape::resolve_index(idx.to_i64(), rows) {
            Some(r) => {
                let s = scales[r];
                for (o, &q) in dst.iter_mut().zip(&table[r * dim..][..dim]) {
                    *o = f32::from(q) * s;
                }
            }
            None => dst.fill(0.0),
        }
    }
}
