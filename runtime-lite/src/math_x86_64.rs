//! AVX-512 forms of [`crate::math`]'s `exp`, `sigmoid` and `tanh`: the same f32 operations in
//! the same order, 16 lanes at a time, so that they return bit for bit what the scalar forms
//! return (the range checks become lane masks and the scaling by 2^n one `vscalefps`, which
//! rounds once, as the scalar form's split scaling does).

use core::arch::x86_64::*;

/// `e^x` on 16 lanes (see [`crate::math::exp`]).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp(x: __m512) -> __m512 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let set = _mm512_set1_ps;
    // Round to nearest, ties away from zero: add 0.5 with x's sign, truncate.
    let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    let half = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(set(0.5)), sign));
    let t = _mm512_add_ps(_mm512_mul_ps(x, set(core::f32::consts::LOG2_E)), half);
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
    let r = _mm512_sub_ps(
        _mm512_sub_ps(x, _mm512_mul_ps(n, set(LN2_HI))),
        _mm512_mul_ps(n, set(LN2_LO)),
    );
    let r2 = _mm512_mul_ps(r, r);
    let mut p = set(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm512_add_ps(_mm512_mul_ps(p, r), set(c));
    }
    let y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, r2), r), set(1.0));
    let mut result = _mm512_scalef_ps(y, n);
    let over = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, set(88.722_84));
    let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, set(-103.972_08));
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    result = _mm512_mask_mov_ps(result, over, set(f32::INFINITY));
    result = _mm512_mask_mov_ps(result, under, _mm512_setzero_ps());
    _mm512_mask_mov_ps(result, nan, x)
}

/// `1 / (1 + e^-x)` on 16 lanes (see [`crate::math::sigmoid`]).
#[inline]
#[target_feature(enable = "avx512f")]
fn sigmoid(x: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    // e^-|x|: e^-x for x >= 0, e^x otherwise.
    let abs = _mm512_castsi512_ps(_mm512_and_si512(
        _mm512_castps_si512(x),
        _mm512_set1_epi32(i32::MAX),
    ));
    let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), abs));
    let denominator = _mm512_add_ps(one, e);
    let non_negative = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_setzero_ps());
    let numerator = _mm512_mask_mov_ps(e, non_negative, one);
    _mm512_div_ps(numerator, denominator)
}

/// `tanh(x)` on 16 lanes (see [`crate::math::tanh`]).
#[inline]
#[target_feature(enable = "avx512f")]
fn tanh(x: __m512) -> __m512 {
    let set = _mm512_set1_ps;
    let sign_bit = _mm512_set1_epi32(i32::MIN);
    let sign = _mm512_and_si512(_mm512_castps_si512(x), sign_bit);
    let a = _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, _mm512_castps_si512(x)));
    let with_sign = |v: __m512| _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), sign));
    // |x| < 0.625: an odd polynomial.
    let z = _mm512_mul_ps(x, x);
    let mut p = set(-5.704_988_7e-3);
    for c in [0.020_639_09, -5.373_971_6e-2, 1.333_144_2e-1, -0.333_332_8] {
        p = _mm512_add_ps(_mm512_mul_ps(p, z), set(c));
    }
    let small = _mm512_add_ps(x, _mm512_mul_ps(_mm512_mul_ps(x, z), p));
    // Otherwise 1 - 2 / (e^2|x| + 1) with x's sign, and 1 past 9.01.
    let e = exp(_mm512_mul_ps(set(2.0), a));
    let middle = _mm512_sub_ps(
        set(1.0),
        _mm512_div_ps(set(2.0), _mm512_add_ps(e, set(1.0))),
    );
    // copysign: clear the magnitude's sign, then set x's.
    let middle = _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, _mm512_castps_si512(middle)));
    let mut result = with_sign(middle);
    let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, set(9.010_913));
    result = _mm512_mask_mov_ps(result, big, with_sign(set(1.0)));
    let is_small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, set(0.625));
    _mm512_mask_mov_ps(result, is_small, small)
}

/// Applies a 16-lane function to every element of `values` (the tail masked).
#[inline]
#[target_feature(enable = "avx512f")]
fn map(values: &mut [f32], f: impl Fn(__m512) -> __m512) {
    for chunk in values.chunks_mut(16) {
        let mask = crate::gemm_x86_64::lanes(chunk.len());
        // SAFETY: the lanes of `mask` are the chunk's elements.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, chunk.as_ptr());
            _mm512_mask_storeu_ps(chunk.as_mut_ptr(), mask, f(v));
        }
    }
}

/// `values[i] = sigmoid(values[i])`.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn sigmoid_slice(values: &mut [f32]) {
    map(values, |v| sigmoid(v));
}

/// `values[i] = tanh(values[i])`.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn tanh_slice(values: &mut [f32]) {
    map(values, |v| tanh(v));
}
