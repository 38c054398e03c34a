//! [`Lanes`] with AVX-512F (one zmm register) and AVX2 (two ymm registers), and the
//! `#[target_feature]` functions that run a [`Kernel`] with them.
//!
//! Each operation is the one IEEE instruction for it (a fused multiply-add only for
//! [`Lanes::mul_add`]: the lane code must round where the scalar functions round), so both
//! return bit for bit what [`crate::math::lanes::Portable`] and the scalar functions return.
//! The AVX2 form keeps sixteen lanes as a pair of vectors, so that reductions combine the same
//! lanes in the same order as the others.

use core::arch::x86_64::*;

use crate::math::lanes::{Kernel, Lanes, LANES};

/// Proof that the CPU has AVX-512F: built only by [`Avx512::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// The token, if the CPU has AVX-512F (and the tests have not switched it off).
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        crate::gemm_x86_64::has_avx512().then_some(Self(()))
    }

    /// The token inside code that runs only once AVX-512F was detected (a kernel compiled
    /// with `#[target_feature(enable = "avx512f")]`, whose callers checked).
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[inline(always)]
    pub(crate) unsafe fn assume() -> Self {
        Self(())
    }
}

/// Proof that the CPU has AVX2 and FMA: built only by [`Avx2::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, if the CPU has AVX2 and FMA.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(feature = "std")]
        let has = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        #[cfg(not(feature = "std"))]
        let has = cfg!(all(target_feature = "avx2", target_feature = "fma"));
        has.then_some(Self(()))
    }
}

/// Runs `kernel` compiled for AVX-512F.
#[inline]
pub(crate) fn run_avx512<K: Kernel>(token: Avx512, kernel: K) -> K::Output {
    #[target_feature(enable = "avx512f")]
    fn run<K: Kernel>(token: Avx512, kernel: K) -> K::Output {
        kernel.run(token)
    }
    // SAFETY: the token exists, so the CPU has AVX-512F.
    unsafe { run(token, kernel) }
}

/// Runs `kernel` compiled for AVX2 and FMA.
#[inline]
pub(crate) fn run_avx2<K: Kernel>(token: Avx2, kernel: K) -> K::Output {
    #[target_feature(enable = "avx2,fma")]
    fn run<K: Kernel>(token: Avx2, kernel: K) -> K::Output {
        kernel.run(token)
    }
    // SAFETY: the token exists, so the CPU has AVX2 and FMA.
    unsafe { run(token, kernel) }
}

/// Evaluates intrinsics in a method of a token type.
macro_rules! with_token {
    ($e:expr) => {{
        // SAFETY: `self` is a token, built only once the CPU's support for the instructions
        // was detected.
        unsafe { $e }
    }};
}

/// The round-to-nearest-even (default) rounding control without exceptions.
const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
const DOWN: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
const UP: i32 = _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC;
const ZERO: i32 = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;

/// The sum of the four lanes of `v` in the order of [`Lanes::sum`]'s last two steps:
/// `(v0 + v2) + (v1 + v3)`.
#[inline(always)]
fn sum4(v: __m128) -> f32 {
    // SAFETY: SSE is part of the x86_64 baseline.
    unsafe {
        let t = _mm_add_ps(v, _mm_movehl_ps(v, v));
        _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps::<1>(t, t)))
    }
}

/// [`sum4`] with `max` for `+`.
#[inline(always)]
fn max4(v: __m128) -> f32 {
    // SAFETY: SSE is part of the x86_64 baseline.
    unsafe {
        let t = _mm_max_ps(v, _mm_movehl_ps(v, v));
        _mm_cvtss_f32(_mm_max_ss(t, _mm_shuffle_ps::<1>(t, t)))
    }
}

impl Lanes for Avx512 {
    type F = __m512;
    type I = __m512i;
    type M = __mmask16;

    #[inline(always)]
    fn splat(self, v: f32) -> __m512 {
        with_token!(_mm512_set1_ps(v))
    }
    #[inline(always)]
    fn load(self, src: &[f32]) -> __m512 {
        if src.len() >= LANES {
            // SAFETY: 16 floats at `src` are readable; the CPU has AVX-512F (the token).
            unsafe { _mm512_loadu_ps(src.as_ptr()) }
        } else {
            // SAFETY: the mask covers the `src.len()` readable floats; masked lanes are not
            // accessed. The CPU has AVX-512F (the token).
            unsafe { _mm512_maskz_loadu_ps(self.first(src.len()), src.as_ptr()) }
        }
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32], v: __m512) {
        if dst.len() >= LANES {
            // SAFETY: 16 floats at `dst` are writable; the CPU has AVX-512F (the token).
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), v) }
        } else {
            // SAFETY: the mask covers the `dst.len()` writable floats; masked lanes are not
            // accessed. The CPU has AVX-512F (the token).
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), self.first(dst.len()), v) }
        }
    }
    #[inline(always)]
    fn first(self, n: usize) -> __mmask16 {
        crate::gemm_x86_64::lanes(n)
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        with_token!(_mm512_add_ps(a, b))
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        with_token!(_mm512_sub_ps(a, b))
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        with_token!(_mm512_mul_ps(a, b))
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        with_token!(_mm512_fmadd_ps(a, b, c))
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        with_token!(_mm512_div_ps(a, b))
    }
    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        with_token!(_mm512_min_ps(a, b))
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        with_token!(_mm512_max_ps(a, b))
    }
    #[inline(always)]
    fn sqrt(self, a: __m512) -> __m512 {
        with_token!(_mm512_sqrt_ps(a))
    }
    #[inline(always)]
    fn trunc(self, a: __m512) -> __m512 {
        with_token!(_mm512_roundscale_ps::<ZERO>(a))
    }
    #[inline(always)]
    fn floor(self, a: __m512) -> __m512 {
        with_token!(_mm512_roundscale_ps::<DOWN>(a))
    }
    #[inline(always)]
    fn ceil(self, a: __m512) -> __m512 {
        with_token!(_mm512_roundscale_ps::<UP>(a))
    }
    #[inline(always)]
    fn round_even(self, a: __m512) -> __m512 {
        with_token!(_mm512_roundscale_ps::<NEAREST>(a))
    }
    #[inline(always)]
    fn lt(self, a: __m512, b: __m512) -> __mmask16 {
        with_token!(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b))
    }
    #[inline(always)]
    fn gt(self, a: __m512, b: __m512) -> __mmask16 {
        with_token!(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b))
    }
    #[inline(always)]
    fn ge(self, a: __m512, b: __m512) -> __mmask16 {
        with_token!(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, b))
    }
    #[inline(always)]
    fn eq(self, a: __m512, b: __m512) -> __mmask16 {
        with_token!(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b))
    }
    #[inline(always)]
    fn is_nan(self, a: __m512) -> __mmask16 {
        with_token!(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a))
    }
    #[inline(always)]
    fn select(self, m: __mmask16, a: __m512, b: __m512) -> __m512 {
        with_token!(_mm512_mask_mov_ps(b, m, a))
    }
    #[inline(always)]
    fn abs(self, a: __m512) -> __m512 {
        self.float_of_bits(self.and_bits(self.to_bits(a), 0x7fff_ffff))
    }
    #[inline(always)]
    fn copysign(self, magnitude: __m512, sign: __m512) -> __m512 {
        with_token!({
            let mask = _mm512_set1_epi32(i32::MIN);
            _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_andnot_si512(mask, _mm512_castps_si512(magnitude)),
                _mm512_and_si512(mask, _mm512_castps_si512(sign)),
            ))
        })
    }
    #[inline(always)]
    fn to_bits(self, a: __m512) -> __m512i {
        with_token!(_mm512_castps_si512(a))
    }
    #[inline(always)]
    fn float_of_bits(self, a: __m512i) -> __m512 {
        with_token!(_mm512_castsi512_ps(a))
    }
    #[inline(always)]
    fn and_bits(self, a: __m512i, mask: u32) -> __m512i {
        with_token!(_mm512_and_si512(a, _mm512_set1_epi32(mask as i32)))
    }
    #[inline(always)]
    fn or_bits(self, a: __m512i, bits: u32) -> __m512i {
        with_token!(_mm512_or_si512(a, _mm512_set1_epi32(bits as i32)))
    }
    #[inline(always)]
    fn shr23(self, a: __m512i) -> __m512i {
        with_token!(_mm512_srli_epi32::<23>(a))
    }
    #[inline(always)]
    fn int_to_f32(self, a: __m512i) -> __m512 {
        with_token!(_mm512_cvtepi32_ps(a))
    }
    #[inline(always)]
    fn scale2(self, y: __m512, n: __m512) -> __m512 {
        // VSCALEFPS rounds `y * 2^floor(n)` once, subnormal results included.
        with_token!(_mm512_scalef_ps(y, n))
    }
    #[inline(always)]
    fn sum(self, v: __m512) -> f32 {
        with_token!({
            let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            let w = _mm256_add_ps(_mm512_castps512_ps256(v), high);
            sum4(_mm_add_ps(
                _mm256_castps256_ps128(w),
                _mm256_extractf128_ps::<1>(w),
            ))
        })
    }
    #[inline(always)]
    fn max_lane(self, v: __m512) -> f32 {
        with_token!({
            let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            let w = _mm256_max_ps(_mm512_castps512_ps256(v), high);
            max4(_mm_max_ps(
                _mm256_castps256_ps128(w),
                _mm256_extractf128_ps::<1>(w),
            ))
        })
    }
}

/// Applies a two-operand ymm intrinsic to both halves.
macro_rules! both {
    ($f:ident($a:expr, $b:expr, $c:expr)) => {{
        let (a, b, c) = ($a, $b, $c);
        with_token!([$f(a[0], b[0], c[0]), $f(a[1], b[1], c[1])])
    }};
    ($f:ident($a:expr, $b:expr)) => {{
        let (a, b) = ($a, $b);
        with_token!([$f(a[0], b[0]), $f(a[1], b[1])])
    }};
    ($f:ident($a:expr)) => {{
        let a = $a;
        with_token!([$f(a[0]), $f(a[1])])
    }};
}

impl Avx2 {
    /// [`Lanes::scale2`] on eight lanes, as `lanes::scale2`: two exact power-of-two factors,
    /// the second product the only rounding.
    #[inline(always)]
    fn scale2_half(self, y: __m256, n: __m256) -> __m256 {
        with_token!({
            let bias = _mm256_set1_epi32(127);
            let n = _mm256_cvttps_epi32(n);
            let h = _mm256_srai_epi32::<1>(n);
            let p = _mm256_slli_epi32::<23>(_mm256_add_epi32(h, bias));
            let q = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_sub_epi32(n, h), bias));
            _mm256_mul_ps(
                _mm256_mul_ps(y, _mm256_castsi256_ps(p)),
                _mm256_castsi256_ps(q),
            )
        })
    }

    /// The mask of lanes `8 * half .. 8 * half + 8` below `n`, as 32-bit lanes of all ones.
    #[inline(always)]
    fn half_mask(self, n: usize, half: usize) -> __m256i {
        let below = n.min(LANES) as i32 - 8 * half as i32;
        with_token!(_mm256_cmpgt_epi32(
            _mm256_set1_epi32(below),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        ))
    }
}

impl Lanes for Avx2 {
    type F = [__m256; 2];
    type I = [__m256i; 2];
    type M = [__m256; 2];

    #[inline(always)]
    fn splat(self, v: f32) -> [__m256; 2] {
        with_token!([_mm256_set1_ps(v); 2])
    }
    #[inline(always)]
    fn load(self, src: &[f32]) -> [__m256; 2] {
        let p = src.as_ptr();
        if src.len() >= LANES {
            // SAFETY: 16 floats at `src` are readable; the CPU has AVX2 (the token).
            unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
        } else {
            let (lo, hi) = (self.half_mask(src.len(), 0), self.half_mask(src.len(), 1));
            // SAFETY: the masks cover the `src.len()` readable floats (the second half's
            // address is only formed, never read, where its mask is empty); masked lanes are
            // not accessed. The CPU has AVX2 (the token).
            unsafe {
                [
                    _mm256_maskload_ps(p, lo),
                    _mm256_maskload_ps(p.wrapping_add(8), hi),
                ]
            }
        }
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32], v: [__m256; 2]) {
        let p = dst.as_mut_ptr();
        if dst.len() >= LANES {
            // SAFETY: 16 floats at `dst` are writable; the CPU has AVX2 (the token).
            unsafe {
                _mm256_storeu_ps(p, v[0]);
                _mm256_storeu_ps(p.add(8), v[1]);
            }
        } else {
            let (lo, hi) = (self.half_mask(dst.len(), 0), self.half_mask(dst.len(), 1));
            // SAFETY: the masks cover the `dst.len()` writable floats; masked lanes are not
            // accessed. The CPU has AVX2 (the token).
            unsafe {
                _mm256_maskstore_ps(p, lo, v[0]);
                _mm256_maskstore_ps(p.wrapping_add(8), hi, v[1]);
            }
        }
    }
    #[inline(always)]
    fn first(self, n: usize) -> [__m256; 2] {
        let (lo, hi) = (self.half_mask(n, 0), self.half_mask(n, 1));
        with_token!([_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi)])
    }
    #[inline(always)]
    fn add(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        both!(_mm256_add_ps(a, b))
    }
    #[inline(always)]
    fn sub(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        both!(_mm256_sub_ps(a, b))
    }
    #[inline(always)]
    fn mul(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        both!(_mm256_mul_ps(a, b))
    }
    #[inline(always)]
    fn mul_add(self, a: [__m256; 2], b: [__m256; 2], c: [__m256; 2]) -> [__m256; 2] {
        both!(_mm256_fmadd_ps(a, b, c))
    }
    #[inline(always)]
    fn div(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        both!(_mm256_div_ps(a, b))
    }
    #[inline(always)]
    fn min(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        both!(_mm256_min_ps(a, b))
    }
    #[inline(always)]
    fn max(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        both!(_mm256_max_ps(a, b))
    }
    #[inline(always)]
    fn sqrt(self, a: [__m256; 2]) -> [__m256; 2] {
        both!(_mm256_sqrt_ps(a))
    }
    #[inline(always)]
    fn trunc(self, a: [__m256; 2]) -> [__m256; 2] {
        with_token!([_mm256_round_ps::<ZERO>(a[0]), _mm256_round_ps::<ZERO>(a[1])])
    }
    #[inline(always)]
    fn floor(self, a: [__m256; 2]) -> [__m256; 2] {
        with_token!([_mm256_round_ps::<DOWN>(a[0]), _mm256_round_ps::<DOWN>(a[1])])
    }
    #[inline(always)]
    fn ceil(self, a: [__m256; 2]) -> [__m256; 2] {
        with_token!([_mm256_round_ps::<UP>(a[0]), _mm256_round_ps::<UP>(a[1])])
    }
    #[inline(always)]
    fn round_even(self, a: [__m256; 2]) -> [__m256; 2] {
        with_token!([
            _mm256_round_ps::<NEAREST>(a[0]),
            _mm256_round_ps::<NEAREST>(a[1])
        ])
    }
    #[inline(always)]
    fn lt(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        with_token!([
            _mm256_cmp_ps::<_CMP_LT_OQ>(a[0], b[0]),
            _mm256_cmp_ps::<_CMP_LT_OQ>(a[1], b[1])
        ])
    }
    #[inline(always)]
    fn gt(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        with_token!([
            _mm256_cmp_ps::<_CMP_GT_OQ>(a[0], b[0]),
            _mm256_cmp_ps::<_CMP_GT_OQ>(a[1], b[1])
        ])
    }
    #[inline(always)]
    fn ge(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        with_token!([
            _mm256_cmp_ps::<_CMP_GE_OQ>(a[0], b[0]),
            _mm256_cmp_ps::<_CMP_GE_OQ>(a[1], b[1])
        ])
    }
    #[inline(always)]
    fn eq(self, a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        with_token!([
            _mm256_cmp_ps::<_CMP_EQ_OQ>(a[0], b[0]),
            _mm256_cmp_ps::<_CMP_EQ_OQ>(a[1], b[1])
        ])
    }
    #[inline(always)]
    fn is_nan(self, a: [__m256; 2]) -> [__m256; 2] {
        with_token!([
            _mm256_cmp_ps::<_CMP_UNORD_Q>(a[0], a[0]),
            _mm256_cmp_ps::<_CMP_UNORD_Q>(a[1], a[1])
        ])
    }
    #[inline(always)]
    fn select(self, m: [__m256; 2], a: [__m256; 2], b: [__m256; 2]) -> [__m256; 2] {
        with_token!([
            _mm256_blendv_ps(b[0], a[0], m[0]),
            _mm256_blendv_ps(b[1], a[1], m[1])
        ])
    }
    #[inline(always)]
    fn abs(self, a: [__m256; 2]) -> [__m256; 2] {
        self.float_of_bits(self.and_bits(self.to_bits(a), 0x7fff_ffff))
    }
    #[inline(always)]
    fn copysign(self, magnitude: [__m256; 2], sign: [__m256; 2]) -> [__m256; 2] {
        with_token!({
            let mask = _mm256_set1_ps(-0.0);
            [
                _mm256_or_ps(
                    _mm256_andnot_ps(mask, magnitude[0]),
                    _mm256_and_ps(mask, sign[0]),
                ),
                _mm256_or_ps(
                    _mm256_andnot_ps(mask, magnitude[1]),
                    _mm256_and_ps(mask, sign[1]),
                ),
            ]
        })
    }
    #[inline(always)]
    fn to_bits(self, a: [__m256; 2]) -> [__m256i; 2] {
        both!(_mm256_castps_si256(a))
    }
    #[inline(always)]
    fn float_of_bits(self, a: [__m256i; 2]) -> [__m256; 2] {
        both!(_mm256_castsi256_ps(a))
    }
    #[inline(always)]
    fn and_bits(self, a: [__m256i; 2], mask: u32) -> [__m256i; 2] {
        let mask = with_token!(_mm256_set1_epi32(mask as i32));
        both!(_mm256_and_si256(a, [mask; 2]))
    }
    #[inline(always)]
    fn or_bits(self, a: [__m256i; 2], bits: u32) -> [__m256i; 2] {
        let bits = with_token!(_mm256_set1_epi32(bits as i32));
        both!(_mm256_or_si256(a, [bits; 2]))
    }
    #[inline(always)]
    fn shr23(self, a: [__m256i; 2]) -> [__m256i; 2] {
        with_token!([_mm256_srli_epi32::<23>(a[0]), _mm256_srli_epi32::<23>(a[1])])
    }
    #[inline(always)]
    fn int_to_f32(self, a: [__m256i; 2]) -> [__m256; 2] {
        both!(_mm256_cvtepi32_ps(a))
    }
    #[inline(always)]
    fn scale2(self, y: [__m256; 2], n: [__m256; 2]) -> [__m256; 2] {
        [self.scale2_half(y[0], n[0]), self.scale2_half(y[1], n[1])]
    }
    #[inline(always)]
    fn sum(self, v: [__m256; 2]) -> f32 {
        with_token!({
            let w = _mm256_add_ps(v[0], v[1]);
            sum4(_mm_add_ps(
                _mm256_castps256_ps128(w),
                _mm256_extractf128_ps::<1>(w),
            ))
        })
    }
    #[inline(always)]
    fn max_lane(self, v: [__m256; 2]) -> f32 {
        with_token!({
            let w = _mm256_max_ps(v[0], v[1]);
            max4(_mm_max_ps(
                _mm256_castps256_ps128(w),
                _mm256_extractf128_ps::<1>(w),
            ))
        })
    }
}
