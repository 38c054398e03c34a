//! Kernels of the `com.microsoft` quantized ops ONNX Runtime's quantizer emits in the QOperator
//! format: `QLinearAdd`, `QLinearMul`, the 256-entry lookup tables behind `QLinearSigmoid`,
//! `QLinearLeakyRelu`, `QLinearConcat` and `QLinearWhere`, `QLinearGlobalAveragePool`,
//! `QLinearAveragePool` and `QLinearSoftmax`, on `u8` and `i8` with per-tensor scales.
//!
//! Each kernel reproduces the arithmetic of ONNX Runtime's CPU kernel (MLAS on x86-64 with
//! AVX2/FMA) operation for operation, so that the integer outputs are the same bit for bit:
//! the same f32 products and quotients in the same order, fused multiply-adds where MLAS
//! fuses them ([`fma_f32`] is exact in software, so the result does not depend on the CPU),
//! rounding half to even, and the same saturation, including the odd cases (a NaN or a value
//! beyond the `i32` range converts the way `cvtps2dq` does, to `i32::MIN`). The module docs
//! of each function say which formula it follows.
//!
//! Broadcasting follows [`crate::elementwise`]: strides per output axis, 0 where an operand
//! repeats.

use crate::elementwise::{zip3, zip_exec};
use crate::math::{exp_f64, floor_f64, ln_f64};
use crate::threads::Exec;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for i8 {}
}

/// An 8-bit quantized element: `u8` or `i8`.
pub trait Q8: sealed::Sealed + Copy + Default + Send + Sync + 'static {
    /// The smallest value.
    const MIN: i32;
    /// The largest value.
    const MAX: i32;
    /// Whether the type is signed (`i8`).
    const SIGNED: bool;
    /// The value as an `i32`.
    fn to_i32(self) -> i32;
    /// The bit pattern (the lookup-table index).
    fn bits(self) -> u8;
    /// The value with bit pattern `bits`.
    fn from_bits(bits: u8) -> Self;
}

impl Q8 for u8 {
    const MIN: i32 = 0;
    const MAX: i32 = 255;
    const SIGNED: bool = false;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    #[inline(always)]
    fn bits(self) -> u8 {
        self
    }
    #[inline(always)]
    fn from_bits(bits: u8) -> Self {
        bits
    }
}

impl Q8 for i8 {
    const MIN: i32 = -128;
    const MAX: i32 = 127;
    const SIGNED: bool = true;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    #[inline(always)]
    fn bits(self) -> u8 {
        self.to_le_bytes()[0]
    }
    #[inline(always)]
    fn from_bits(bits: u8) -> Self {
        i8::from_le_bytes([bits])
    }
}

/// `v` clamped to `T`'s range, as `T`.
#[inline(always)]
fn saturate<T: Q8>(v: i32) -> T {
    let v = v.clamp(T::MIN, T::MAX);
    // The clamped value fits in a byte of T's signedness; its low byte is its bit pattern.
    T::from_bits(v.to_le_bytes()[0])
}

/// `a * b + c` rounded once, to nearest even: the `vfmadd` MLAS uses, computed exactly
/// without an FMA unit (and branch-free, so that loops over it vectorize).
///
/// The product of two f32 is exact in f64; the f64 sum `s` is then the f64 nearest to the
/// exact result, and rounding `s` to f32 gives the correctly rounded result except when `s`
/// lies exactly halfway between two f32 and the sum was inexact: then the exact sum's error
/// term (Knuth's two-sum) says which neighbour is nearer. `s` is such a midpoint exactly when
/// `2s - r` (exact, by Sterbenz's lemma) is an f32 other than `r`, `r` being `s` rounded.
#[inline(always)]
pub fn fma_f32(a: f32, b: f32, c: f32) -> f32 {
    let p = f64::from(a) * f64::from(b);
    let c64 = f64::from(c);
    let s = p + c64;
    let r = s as f32;
    let bb = s - p;
    let err = (p - (s - bb)) + (c64 - bb);
    let r64 = f64::from(r);
    let n64 = 2.0 * s - r64;
    let n = n64 as f32;
    let tie = s != r64 && f64::from(n) == n64 && r.is_finite();
    let toward_n = (err > 0.0 && s > r64) || (err < 0.0 && s < r64);
    if tie && toward_n {
        n
    } else {
        r
    }
}

/// `x` rounded to the nearest integer, ties to even, for `|x| <= 2^22`.
#[inline(always)]
fn round_even_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it leaves no fraction bits.
    (x + MAGIC) - MAGIC
}

/// `x` rounded to the nearest integer, ties to even, for `|x| <= 2^51`.
#[inline(always)]
fn round_even_f64(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    (x + MAGIC) - MAGIC
}

/// `cvtps2dq` followed by saturating packs to `T`: `r` rounded half to even and saturated,
/// except that NaN and values at or beyond 2^31 (which the instruction turns into `i32::MIN`)
/// give `T::MIN`.
#[inline(always)]
fn cvt_saturate<T: Q8>(r: f32) -> T {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let (lo, hi) = (T::MIN as f32, T::MAX as f32);
    // Clamping to integer bounds commutes with rounding; the `<` is false for NaN.
    let bounded = if r < 2_147_483_648.0 {
        if r < lo {
            lo
        } else if r > hi {
            hi
        } else {
            r
        }
    } else {
        lo
    };
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    let bits = (bounded + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    T::from_bits(bits.to_le_bytes()[0])
}

/// MLAS `QuantizeLinear` of one value: `v / scale` clamped to `[T::MIN - zero, T::MAX - zero]`
/// (a NaN quotient becomes the lower bound, as `maxps` gives its second operand), rounded
/// half to even, plus `zero`.
#[inline]
pub fn quantize<T: Q8>(v: f32, scale: f32, zero: T) -> T {
    let z = zero.to_i32();
    let (lo, hi) = ((T::MIN - z) as f32, (T::MAX - z) as f32);
    let q = v / scale;
    let q = if q.is_nan() { lo } else { q.max(lo).min(hi) };
    saturate(round_even_small(q) as i32 + z)
}

/// MLAS's logistic numerator coefficients (`alpha_9` down to `alpha_1` in logistic.cpp), each
/// the f32 nearest MLAS's decimal.
const LOGISTIC_ALPHA: [f32; 5] = [
    4.370_31e-11,
    1.156_273_2e-7,
    6.085_749e-5,
    8.513_771e-3,
    0.248_287_95,
];

/// MLAS's logistic denominator coefficients (`beta_10` down to `beta_0`).
const LOGISTIC_BETA: [f32; 6] = [
    6.102_473_7e-13,
    5.761_021_4e-9,
    6.291_068e-6,
    1.701_988_2e-3,
    0.116_817_65,
    0.993_151_9,
];

/// MLAS's logistic function (`MlasComputeLogisticF32KernelFma3`): the input clamped to
/// `[-18, 18]`, Eigen's rational approximation evaluated with fused multiply-adds, plus 1/2,
/// at least 0.
#[inline]
pub fn logistic(x: f32) -> f32 {
    let [a9, a7, a5, a3, a1] = LOGISTIC_ALPHA;
    let [b10, b8, b6, b4, b2, b0] = LOGISTIC_BETA;
    // maxps/minps with the bound first: a NaN input passes through.
    let x = if x < -18.0 { -18.0 } else { x };
    let x = if x > 18.0 { 18.0 } else { x };
    let x2 = x * x;
    let mut p = fma_f32(x2, a9, a7);
    p = fma_f32(x2, p, a5);
    p = fma_f32(x2, p, a3);
    p = fma_f32(x2, p, a1);
    let mut q = fma_f32(x2, b10, b8);
    q = fma_f32(x2, q, b6);
    q = fma_f32(x2, q, b4);
    q = fma_f32(x2, q, b2);
    q = fma_f32(x2, q, b0);
    let y = (x * p) / q + 0.5;
    // maxps(0, y): y when it is NaN.
    if y > 0.0 || y.is_nan() {
        y
    } else {
        0.0
    }
}

/// Builds ONNX Runtime's 256-entry table for an 8-bit unary op: entry `b` is
/// `quantize(f(x_scale * (x - x_zero)))` for the element `x` with bit pattern `b`.
pub fn build_table<T: Q8>(
    x_scale: f32,
    x_zero: T,
    y_scale: f32,
    y_zero: T,
    table: &mut [u8; 256],
    f: impl Fn(f32) -> f32,
) {
    let z = x_zero.to_i32();
    for (bits, entry) in (0..=255u8).zip(table.iter_mut()) {
        let x = T::from_bits(bits).to_i32();
        let v = f(x_scale * (x - z) as f32);
        *entry = quantize(v, y_scale, y_zero).bits();
    }
}

/// `out[i] = table[x[i]]`, indexing by bit pattern: 64 bytes at a time with AVX-512 VBMI
/// byte permutes (the table in four registers), one by one elsewhere.
#[inline]
pub fn lookup<T: Q8>(x: &[T], table: &[u8; 256], out: &mut [T]) {
    let n = x.len().min(out.len());
    #[cfg(target_arch = "x86_64")]
    if has_vbmi() {
        // SAFETY: `T` is `u8` or `i8` (the sealed `Q8`), one byte, so both slices hold `n`
        // bytes; the CPU has the features.
        unsafe { lookup_vbmi(x.as_ptr().cast(), table, out.as_mut_ptr().cast(), n) };
        return;
    }
    for (o, &v) in out[..n].iter_mut().zip(x) {
        *o = T::from_bits(table[usize::from(v.bits())]);
    }
}

/// Whether the byte-permute lookup may run.
#[cfg(target_arch = "x86_64")]
fn has_vbmi() -> bool {
    if !crate::gemm_x86_64::has_avx512() {
        return false;
    }
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx512bw") && std::is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(
            target_feature = "avx512bw",
            target_feature = "avx512vbmi"
        ))
    }
}

/// [`lookup`] on `n` bytes from `x` to `out` (which may be `x`) with `vpermi2b`: the low
/// seven bits of each byte pick from one half of the table, its top bit picks the half.
///
/// # Safety
/// `x` is readable and `out` writable for `n` bytes; the CPU has AVX-512F, BW and VBMI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn lookup_vbmi(x: *const u8, table: &[u8; 256], out: *mut u8, n: usize) {
    use core::arch::x86_64::*;
    // SAFETY: four 64-byte loads inside the 256-byte table.
    let t: [__m512i; 4] =
        core::array::from_fn(|q| unsafe { _mm512_loadu_si512(table[q * 64..].as_ptr().cast()) });
    let map = |idx: __m512i| {
        let lo = _mm512_permutex2var_epi8(t[0], idx, t[1]);
        let hi = _mm512_permutex2var_epi8(t[2], idx, t[3]);
        _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi)
    };
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: 64 bytes at `i` are inside both buffers (the contract); each block is
        // loaded before it is stored.
        unsafe {
            let v = map(_mm512_loadu_si512(x.add(i).cast()));
            _mm512_storeu_si512(out.add(i).cast(), v);
        }
        i += 64;
    }
    if i < n {
        let mask: __mmask64 = (1u64 << (n - i)) - 1;
        // SAFETY: the masked load and store touch only the `n - i` bytes left.
        unsafe {
            let v = map(_mm512_maskz_loadu_epi8(mask, x.add(i).cast()));
            _mm512_mask_storeu_epi8(out.add(i).cast(), mask, v);
        }
    }
}

/// [`lookup`] in place.
#[inline]
pub fn lookup_in_place<T: Q8>(values: &mut [T], table: &[u8; 256]) {
    #[cfg(target_arch = "x86_64")]
    if has_vbmi() {
        let n = values.len();
        // SAFETY: `T` is one byte (the sealed `Q8`); the kernel reads each 64-byte block (or
        // masked tail) into a register before it writes it back, so the alias is read first.
        unsafe {
            let p = values.as_mut_ptr().cast::<u8>();
            lookup_vbmi(p, table, p, n);
        }
        return;
    }
    for v in values.iter_mut() {
        *v = T::from_bits(table[usize::from(v.bits())]);
    }
}

/// `QLinearAdd`'s constants, derived as MLAS's AVX2 kernel derives them.
///
/// MLAS treats its operands asymmetrically: `p` streams through the kernel, `q` is the other
/// operand (the one ONNX Runtime's broadcaster holds constant along the innermost span, if
/// either is). The caller picks the roles; see [`add`].
#[derive(Debug, Clone, Copy)]
pub struct AddParams {
    /// `p_scale / c_scale`.
    rp: f32,
    /// `q_scale / c_scale`.
    rq: f32,
    /// `c_zero - (rp * p_zero + rq * q_zero)`, the inner product fused.
    fixed: f32,
}

impl AddParams {
    /// The constants for operands `p` and `q` and output `c`.
    #[inline]
    pub fn new<T: Q8>(
        p_scale: f32,
        p_zero: T,
        q_scale: f32,
        q_zero: T,
        c_scale: f32,
        c_zero: T,
    ) -> Self {
        let rp = p_scale / c_scale;
        let rq = q_scale / c_scale;
        let inner = fma_f32(rp, p_zero.to_i32() as f32, rq * q_zero.to_i32() as f32);
        Self {
            rp,
            rq,
            fixed: c_zero.to_i32() as f32 - inner,
        }
    }

    /// One output: `fma(p, rp, fma(q, rq, fixed))`, converted as `cvtps2dq` and saturated.
    #[inline(always)]
    pub fn apply<T: Q8>(&self, p: T, q: T) -> T {
        let inner = fma_f32(q.to_i32() as f32, self.rq, self.fixed);
        cvt_saturate(fma_f32(p.to_i32() as f32, self.rp, inner))
    }
}

/// `QLinearAdd`: `out = p + q` requantized with [`AddParams`], broadcast by strides.
///
/// ONNX Runtime calls MLAS with the operand it holds constant along the innermost span
/// second; the compiler passes that one as `q` (the other, or input A when neither repeats,
/// as `p`), which fixes the order of the two fused multiply-adds.
///
/// When `p` is contiguous and `q` contiguous or a single value, CPUs with AVX2 and FMA run
/// MLAS's own instruction sequence (detected at run time with `std`); elsewhere the exact
/// software [`fma_f32`] gives the same results, more slowly.
#[allow(
    clippy::too_many_arguments,
    reason = "two strided operands, the output, its shape, the constants and the executor"
)]
pub fn add<T: Q8>(
    exec: &Exec,
    p: &[T],
    p_strides: &[usize],
    q: &[T],
    q_strides: &[usize],
    out: &mut [T],
    out_shape: &[usize],
    params: AddParams,
) {
    let n = out.len();
    #[cfg(target_arch = "x86_64")]
    if x86_64::has_avx2_fma() && p.len() == n && (q.len() == n || q.len() == 1) {
        let rows = n.div_ceil(4 * exec.threads()).max(ADD_CHUNK);
        exec.for_each_chunk(out, rows, &|t, part| {
            let start = t * rows;
            let p = &p[start..][..part.len()];
            let q = if q.len() == 1 {
                q
            } else {
                &q[start..][..part.len()]
            };
            // SAFETY: AVX2 and FMA were detected (or enabled at compile time) above; `p` and
            // `part` have equal lengths and `q` has that length or one element.
            unsafe { x86_64::add_avx2_fma(p, q, part, params) }
        });
        return;
    }
    zip_exec(exec, p, p_strides, q, q_strides, out, out_shape, |a, b| {
        params.apply(a, b)
    });
}

/// Elements of a contiguous [`add`] per task when it is split across threads.
#[cfg(target_arch = "x86_64")]
const ADD_CHUNK: usize = 1 << 14;

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    //! MLAS's AVX2/FMA `QLinearAdd` inner loop: bytes widened to i32 and converted to f32,
    //! two fused multiply-adds, `cvtps2dq`, saturation.

    use core::arch::x86_64::*;

    use super::{AddParams, Q8};

    /// Whether [`add_avx2_fma`] may run: detected at run time with `std`, else from the
    /// compile-time target features.
    #[inline]
    pub(super) fn has_avx2_fma() -> bool {
        #[cfg(feature = "std")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(feature = "std"))]
        {
            cfg!(all(target_feature = "avx2", target_feature = "fma"))
        }
    }

    /// Eight elements at `ptr` widened to i32 and converted to f32.
    ///
    /// # Safety
    /// `ptr` must be valid for reading 8 bytes; the CPU must have AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8<T: Q8>(ptr: *const T) -> __m256 {
        // SAFETY: the caller guarantees 8 readable bytes; the load is unaligned.
        let bytes = unsafe { _mm_loadl_epi64(ptr.cast::<__m128i>()) };
        let wide = if T::SIGNED {
            _mm256_cvtepi8_epi32(bytes)
        } else {
            _mm256_cvtepu8_epi32(bytes)
        };
        _mm256_cvtepi32_ps(wide)
    }

    /// `out[i] = params.apply(p[i], q[i])` (or `q[0]` when `q` has one element).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `out.len() == p.len()` and `q.len()` is that or 1.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn add_avx2_fma<T: Q8>(p: &[T], q: &[T], out: &mut [T], params: AddParams) {
        let n = out.len();
        debug_assert!(p.len() == n && (q.len() == n || q.len() == 1));
        if n == 0 {
            return;
        }
        let (rp, rq) = (_mm256_set1_ps(params.rp), _mm256_set1_ps(params.rq));
        let fixed = _mm256_set1_ps(params.fixed);
        let (lo, hi) = (_mm256_set1_epi32(T::MIN), _mm256_set1_epi32(T::MAX));
        let scalar = q.len() == 1 && n != 1;
        let q_inner = _mm256_fmadd_ps(_mm256_set1_ps(q[0].to_i32() as f32), rq, fixed);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n` elements of one byte each are in bounds of `p`, `out`, and
            // of `q` unless it is a single value.
            unsafe {
                let inner = if scalar {
                    q_inner
                } else {
                    _mm256_fmadd_ps(load8(q.as_ptr().add(i)), rq, fixed)
                };
                let r = _mm256_fmadd_ps(load8(p.as_ptr().add(i)), rp, inner);
                let v = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(r), lo), hi);
                let words =
                    _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                let bytes = if T::SIGNED {
                    _mm_packs_epi16(words, words)
                } else {
                    _mm_packus_epi16(words, words)
                };
                _mm_storel_epi64(out.as_mut_ptr().add(i).cast::<__m128i>(), bytes);
            }
            i += 8;
        }
        for (j, (o, &a)) in out.iter_mut().zip(p).enumerate().skip(i) {
            *o = params.apply(a, if scalar { q[0] } else { q[j] });
        }
    }
}

/// `QLinearMul`'s constants, as MLAS's SSE2 kernel derives them.
#[derive(Debug, Clone, Copy)]
pub struct MulParams {
    /// `a_scale * b_scale / c_scale`, in that order.
    ratio: f32,
    /// The zero points of A, B and C.
    zeros: [i32; 3],
}

impl MulParams {
    /// The constants for operands `a`, `b` and output `c`.
    #[inline]
    pub fn new<T: Q8>(
        a_scale: f32,
        a_zero: T,
        b_scale: f32,
        b_zero: T,
        c_scale: f32,
        c_zero: T,
    ) -> Self {
        Self {
            ratio: a_scale * b_scale / c_scale,
            zeros: [a_zero.to_i32(), b_zero.to_i32(), c_zero.to_i32()],
        }
    }

    /// One output: the exact integer product of the de-biased operands, times the ratio,
    /// plus the output zero point (two f32 roundings, no fusion), converted and saturated.
    #[inline(always)]
    pub fn apply<T: Q8>(&self, a: T, b: T) -> T {
        let [za, zb, zc] = self.zeros;
        let product = (a.to_i32() - za) * (b.to_i32() - zb);
        cvt_saturate(product as f32 * self.ratio + zc as f32)
    }
}

/// `QLinearMul`: `out = a * b` requantized with [`MulParams`], broadcast by strides (the
/// result does not depend on which operand repeats).
#[allow(
    clippy::too_many_arguments,
    reason = "two strided operands, the output, its shape, the constants and the executor"
)]
pub fn mul<T: Q8>(
    exec: &Exec,
    a: &[T],
    a_strides: &[usize],
    b: &[T],
    b_strides: &[usize],
    out: &mut [T],
    out_shape: &[usize],
    params: MulParams,
) {
    zip_exec(exec, a, a_strides, b, b_strides, out, out_shape, |x, y| {
        params.apply(x, y)
    });
}

/// `QLinearWhere`: `out = cond ? x' : y'` broadcast by strides, where `x'` is `x` requantized
/// through `x_table` (a copy when `None`, for equal scales and zero points) and `y'` likewise.
#[allow(
    clippy::too_many_arguments,
    reason = "three strided operands, the output, its shape and two tables"
)]
pub fn select<T: Q8>(
    cond: &[u8],
    cond_strides: &[usize],
    x: &[T],
    x_strides: &[usize],
    y: &[T],
    y_strides: &[usize],
    out: &mut [T],
    out_shape: &[usize],
    [x_table, y_table]: [Option<&[u8; 256]>; 2],
) {
    let map = |v: T, table: Option<&[u8; 256]>| match table {
        Some(t) => T::from_bits(t[usize::from(v.bits())]),
        None => v,
    };
    zip3(
        cond,
        cond_strides,
        x,
        x_strides,
        y,
        y_strides,
        out,
        out_shape,
        |c: u8, a: T, b: T| {
            if c != 0 {
                map(a, x_table)
            } else {
                map(b, y_table)
            }
        },
    );
}

/// One input of `QLinearConcat`: `x` viewed as `[outer, block]` goes to columns
/// `offset..offset + block` of `out` viewed as `[outer, out_block]`, requantized through
/// `table` (copied when `None`).
pub fn concat_part<T: Q8>(
    x: &[T],
    table: Option<&[u8; 256]>,
    out: &mut [T],
    block: usize,
    out_block: usize,
    offset: usize,
) {
    if block == 0 {
        return;
    }
    for (row, dst) in x.chunks_exact(block).zip(out.chunks_exact_mut(out_block)) {
        let dst = &mut dst[offset..offset + block];
        match table {
            Some(t) => lookup(row, t, dst),
            None => dst.copy_from_slice(row),
        }
    }
}

/// The requantization of MLAS's `QLinearGlobalAveragePool`: the float multiplier
/// `x_scale / (y_scale * image)` applied to each biased integer sum.
#[derive(Debug, Clone, Copy)]
pub struct GlobalPoolParams {
    /// `-x_zero * image`, added to each sum.
    bias: i32,
    /// The multiplier.
    scale: f32,
    /// The output zero point.
    zero: i32,
}

impl GlobalPoolParams {
    /// The constants for windows of `image` elements.
    ///
    /// ONNX Runtime refuses a multiplier below 2^-32 or from 256 on, and images of 2^24
    /// elements or more; the compiler checks that when the scales are constants, and
    /// otherwise the kernel computes on regardless.
    #[inline]
    pub fn new<T: Q8>(x_scale: f32, x_zero: T, y_scale: f32, y_zero: T, image: usize) -> Self {
        let image_i32 = i32::try_from(image).unwrap_or(i32::MAX);
        Self {
            bias: (-x_zero.to_i32()).wrapping_mul(image_i32),
            scale: x_scale / (y_scale * image_i32 as f32),
            zero: y_zero.to_i32(),
        }
    }

    /// One output from the plain sum of a window: `(sum + bias) * scale` in f32, clamped to
    /// the output range less the zero point (NaN to its low end), rounded half to even,
    /// plus the zero point.
    #[inline(always)]
    fn finish<T: Q8>(&self, sum: i32) -> T {
        let (lo, hi) = ((T::MIN - self.zero) as f32, (T::MAX - self.zero) as f32);
        let v = sum.wrapping_add(self.bias) as f32 * self.scale;
        let v = if v.is_nan() { lo } else { v.max(lo).min(hi) };
        saturate(round_even_small(v) as i32 + self.zero)
    }
}

/// Channels summed together in the channels-last global pool (a stack buffer).
const CHANNEL_BLOCK: usize = 64;

/// `QLinearGlobalAveragePool`: the integer sum of each channel over its `image` elements,
/// requantized with [`GlobalPoolParams`]; `x` is `[batch, channels, image]`, or
/// `[batch, image, channels]` when `channels_last`.
pub fn global_average_pool<T: Q8>(
    x: &[T],
    out: &mut [T],
    [batch, channels, image]: [usize; 3],
    channels_last: bool,
    params: GlobalPoolParams,
) {
    if image == 0 {
        return;
    }
    if !channels_last || channels == 1 {
        for (plane, o) in x.chunks_exact(image).zip(out.iter_mut()) {
            let sum = plane
                .iter()
                .fold(0i32, |acc, &v| acc.wrapping_add(v.to_i32()));
            *o = params.finish(sum);
        }
        return;
    }
    for n in 0..batch {
        let x = &x[n * image * channels..][..image * channels];
        let out = &mut out[n * channels..][..channels];
        let mut c0 = 0;
        while c0 < channels {
            let width = (channels - c0).min(CHANNEL_BLOCK);
            let mut sums = [0i32; CHANNEL_BLOCK];
            let sums = &mut sums[..width];
            for pixel in x.chunks_exact(channels) {
                for (s, &v) in sums.iter_mut().zip(&pixel[c0..c0 + width]) {
                    *s = s.wrapping_add(v.to_i32());
                }
            }
            for (o, &s) in out[c0..c0 + width].iter_mut().zip(sums.iter()) {
                *o = params.finish(s);
            }
            c0 += width;
        }
    }
}

/// The geometry of a `QLinearAveragePool`, spatial axes right-aligned in three (a 2-D pool is
/// `[1, h, w]`, its kernel `[1, kh, kw]`).
#[derive(Debug, Clone, Copy)]
pub struct AvgPoolParams {
    /// Images.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Input spatial sizes.
    pub input: [usize; 3],
    /// Output spatial sizes.
    pub output: [usize; 3],
    /// Window sizes.
    pub kernel: [usize; 3],
    /// Strides.
    pub strides: [usize; 3],
    /// Padding before each axis (the padding after only shows in `output`).
    pub pads_begin: [usize; 3],
    /// Divide by the whole window, padding included, rather than by the elements in it.
    pub count_include_pad: bool,
    /// `x` and `out` are `[batch, *spatial, channels]` rather than `[batch, channels, *spatial]`.
    pub channels_last: bool,
}

/// The window along one axis for output `o`: `[start, end)` clipped to the input.
#[inline(always)]
fn window(o: usize, stride: usize, pad: usize, kernel: usize, size: usize) -> (usize, usize) {
    let start = o * stride;
    let end = (start + kernel).saturating_sub(pad).min(size);
    (start.saturating_sub(pad), end)
}

/// `QLinearAveragePool` as ONNX Runtime computes it: every input dequantized to f32
/// (`x_scale * (x - x_zero)`), each window summed in f32 in row-major order, divided by its
/// element count, then `sum / y_scale + y_zero` rounded half to even (one f32 addition
/// before the rounding) and saturated, out-of-`i32` values to `T::MIN` as C++'s conversion
/// does on x86.
///
/// (ONNX Runtime computes a pool whose window covers the whole unpadded image with its
/// global pool instead; the compiler emits [`global_average_pool`] for that.)
pub fn average_pool<T: Q8>(
    p: &AvgPoolParams,
    x: &[T],
    [x_scale, y_scale]: [f32; 2],
    [x_zero, y_zero]: [T; 2],
    out: &mut [T],
) {
    let mut dequantized = [0f32; 256];
    let zx = x_zero.to_i32();
    for (bits, d) in (0..=255u8).zip(dequantized.iter_mut()) {
        *d = x_scale * (T::from_bits(bits).to_i32() - zx) as f32;
    }
    let zy = y_zero.to_i32() as f32;
    let [d0, d1, d2] = p.input;
    let [o0, o1, o2] = p.output;
    let image = d0 * d1 * d2;
    let out_image = o0 * o1 * o2;
    let kernel_size = p.kernel.iter().product::<usize>();
    // Element strides of the channel and of the three spatial axes.
    let (c_stride, s_stride) = if p.channels_last {
        (1, p.channels)
    } else {
        (image, 1)
    };
    let finish = |sum: f32, count: usize| -> T {
        let avg = sum / count as f32;
        let q = round_even_f64(f64::from(avg / y_scale + zy).clamp(-4e9, 4e9));
        let q = if (-2_147_483_648.0..2_147_483_648.0).contains(&q) {
            q as i32
        } else {
            i32::MIN
        };
        saturate(q)
    };
    for n in 0..p.batch {
        let x = &x[n * image * p.channels..][..image * p.channels];
        let out = &mut out[n * out_image * p.channels..][..out_image * p.channels];
        for a in 0..o0 {
            let (a0, a1) = window(a, p.strides[0], p.pads_begin[0], p.kernel[0], d0);
            for b in 0..o1 {
                let (b0, b1) = window(b, p.strides[1], p.pads_begin[1], p.kernel[1], d1);
                for c in 0..o2 {
                    let (c0, c1) = window(c, p.strides[2], p.pads_begin[2], p.kernel[2], d2);
                    let count = if p.count_include_pad {
                        kernel_size
                    } else {
                        (a1 - a0) * (b1 - b0) * (c1 - c0)
                    };
                    let o_pixel = (a * o1 + b) * o2 + c;
                    for ch in 0..p.channels {
                        let mut sum = 0f32;
                        for i in a0..a1 {
                            for j in b0..b1 {
                                let row = ch * c_stride + ((i * d1 + j) * d2) * s_stride;
                                for k in c0..c1 {
                                    sum += dequantized[usize::from(x[row + k * s_stride].bits())];
                                }
                            }
                        }
                        let o = if p.channels_last {
                            o_pixel * p.channels + ch
                        } else {
                            ch * out_image + o_pixel
                        };
                        out[o] = finish(sum, count);
                    }
                }
            }
        }
    }
}

/// ONNX Runtime's exponential table for `QLinearSoftmax`, in canonical order: entry `k` is
/// `exp((k - 255 + shift) * x_scale)` in f64, rounded to f32, with
/// `shift = max(0, ln(f32::MAX / reduce_len) - 5) / x_scale` keeping a row's sum finite.
///
/// The compiler builds this table with the platform's `exp` and `ln` when `x_scale` is a
/// constant, as ONNX Runtime does; this run-time version uses [`crate::math`]'s f64
/// functions, a few f64 ulp apart, which only matters if an entry lands within that of an
/// f32 rounding boundary.
pub fn softmax_table(x_scale: f32, reduce_len: usize, table: &mut [f32; 256]) {
    let limit = f32::MAX / reduce_len as f32;
    let shift = (ln_f64(f64::from(limit)) - 5.0).max(0.0) / f64::from(x_scale);
    for (k, entry) in table.iter_mut().enumerate() {
        *entry = exp_f64((k as f64 - 255.0 + shift) * f64::from(x_scale)) as f32;
    }
}

/// `QLinearSoftmax` over the middle axis of `x` viewed as `[outer, len, inner]`, as ONNX
/// Runtime computes it: each element's entry `table[255 - (max - x)]` (see
/// [`softmax_table`]), the row's entries summed in f32 in order, then
/// `entry * floor(1 / y_scale) / sum` rounded half to even, plus `y_zero`, saturated (an
/// infinite quotient saturates high).
pub fn softmax<T: Q8>(
    x: &[T],
    out: &mut [T],
    [outer, len, inner]: [usize; 3],
    table: &[f32; 256],
    y_scale: f32,
    y_zero: T,
) {
    if len == 0 {
        return;
    }
    let multiplier = floor_f64(f64::from(1.0 / y_scale)) as f32;
    let zero = f64::from(y_zero.to_i32());
    let (lo, hi) = (f64::from(T::MIN), f64::from(T::MAX));
    let entry = |v: T, max: i32| table[(255 - (max - v.to_i32())) as usize];
    let finish = |e: f32, sum: f32| -> T {
        let q = f64::from(e * multiplier / sum);
        // Non-negative; huge or infinite quotients saturate high.
        let q = if q < 1e9 { round_even_f64(q) } else { 1e9 };
        saturate((q + zero).clamp(lo, hi) as i32)
    };
    for o in 0..outer {
        let x = &x[o * len * inner..][..len * inner];
        let out = &mut out[o * len * inner..][..len * inner];
        if inner == 1 {
            let max = x.iter().map(|v| v.to_i32()).max().unwrap_or(0);
            let sum = x.iter().fold(0f32, |s, &v| s + entry(v, max));
            for (y, &v) in out.iter_mut().zip(x) {
                *y = finish(entry(v, max), sum);
            }
            continue;
        }
        for i in 0..inner {
            let max = (0..len)
                .map(|k| x[k * inner + i].to_i32())
                .max()
                .unwrap_or(0);
            let sum = (0..len).fold(0f32, |s, k| s + entry(x[k * inner + i], max));
            for k in 0..len {
                out[k * inner + i] = finish(entry(x[k * inner + i], max), sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// The vector table lookup against indexing, on every length around its 64-byte step,
    /// both byte types, and with AVX-512 off.
    #[test]
    fn lookup_matches_indexing() {
        let table: [u8; 256] = core::array::from_fn(|i| (i * 97 + 13) as u8);
        let x: Vec<u8> = (0..300).map(|i| (i * 31 + 7) as u8).collect();
        for n in [0, 1, 63, 64, 65, 130, 300] {
            let want: Vec<u8> = x[..n].iter().map(|&v| table[usize::from(v)]).collect();
            let mut got = std::vec![0u8; n];
            lookup(&x[..n], &table, &mut got);
            assert_eq!(got, want, "{n}");
            let xi: Vec<i8> = x[..n].iter().map(|&v| v as i8).collect();
            let mut got_i = std::vec![0i8; n];
            lookup(&xi, &table, &mut got_i);
            assert!(
                got_i.iter().zip(&want).all(|(&a, &b)| a as u8 == b),
                "i8 {n}"
            );
            let mut plain = std::vec![0u8; n];
            crate::gemm_x86_64::without_avx512(|| lookup(&x[..n], &table, &mut plain));
            assert_eq!(plain, want, "without AVX-512 {n}");
        }
    }

    /// A small deterministic generator (xorshift), so the tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
        }
        fn byte(&mut self) -> u8 {
            (self.next() >> 56) as u8
        }
    }

    #[test]
    fn fma_matches_the_hardware_rounding() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Under Miri (some thousand times slower) the first 500 random triples and every
        // tenth halfway case.
        let triples = if cfg!(miri) { 500 } else { 200_000 };
        for _ in 0..triples {
            let a = f32::from_bits(rng.next() as u32 & 0x7fff_ffff)
                * if rng.byte() & 1 == 0 { 1.0 } else { -1.0 };
            let (b, c) = (rng.f32_in(-300.0, 300.0), rng.f32_in(-300.0, 300.0));
            let a = if a.is_finite() { a % 1000.0 } else { 1.0 };
            let want = a.mul_add(b, c);
            let got = fma_f32(a, b, c);
            assert!(
                want.to_bits() == got.to_bits() || (want == 0.0 && got == 0.0),
                "fma({a}, {b}, {c}): {want} vs {got}"
            );
        }
        // Halfway cases: products whose exact sum sits just off an f32 midpoint.
        for k in (0..2000u32).step_by(if cfg!(miri) { 10 } else { 1 }) {
            let a = 1.0 + (k as f32) * f32::EPSILON;
            let b = 1.0 + f32::EPSILON * 0.5 + (k % 7) as f32 * f32::EPSILON;
            let c = -(k as f32) * 0.25;
            assert_eq!(
                a.mul_add(b, c).to_bits(),
                fma_f32(a, b, c).to_bits(),
                "k = {k}"
            );
        }
    }

    /// The scalar reference for [`cvt_saturate`]: round half even in f64, `cvtps2dq`'s
    /// out-of-range result, then saturation.
    fn cvt_reference<T: Q8>(r: f32) -> i32 {
        let i = if r.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&r) {
            i32::MIN
        } else {
            f64::from(r).round_ties_even() as i32
        };
        i.clamp(T::MIN, T::MAX)
    }

    #[test]
    fn conversion_saturates_like_cvtps() {
        for r in [
            0.5f32,
            1.5,
            2.5,
            -0.5,
            -1.5,
            127.5,
            128.5,
            254.5,
            255.5,
            -128.5,
            -129.5,
            1e10,
            -1e10,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            2_147_483_648.0,
            1023.7,
        ] {
            assert_eq!(
                cvt_saturate::<u8>(r).to_i32(),
                cvt_reference::<u8>(r),
                "{r}"
            );
            assert_eq!(
                cvt_saturate::<i8>(r).to_i32(),
                cvt_reference::<i8>(r),
                "{r}"
            );
        }
    }

    #[test]
    fn add_matches_the_scalar_formula() {
        let mut rng = Rng(7);
        // Under Miri the first 10 parameter sets.
        for _ in 0..if cfg!(miri) { 10 } else { 200 } {
            let (sa, sb, sc) = (
                rng.f32_in(0.001, 0.5),
                rng.f32_in(0.001, 0.5),
                rng.f32_in(0.001, 0.5),
            );
            let (za, zb, zc) = (rng.byte(), rng.byte(), rng.byte());
            let params = AddParams::new(sa, za, sb, zb, sc, zc);
            let (ra, rb) = (sa / sc, sb / sc);
            let fixed = zc as f32 - ra.mul_add(za as f32, rb * zb as f32);
            for _ in 0..64 {
                let (a, b) = (rng.byte(), rng.byte());
                let r = (a as f32).mul_add(ra, (b as f32).mul_add(rb, fixed));
                assert_eq!(i32::from(params.apply(a, b)), cvt_reference::<u8>(r));
            }
        }
    }

    #[test]
    fn add_broadcasts_and_handles_odd_lengths() {
        let exec = Exec::single();
        let params = AddParams::new(0.05f32, 3i8, 0.02, -7, 0.04, 1);
        for n in [0usize, 1, 15, 17, 1000] {
            let a: Vec<i8> = (0..n).map(|i| (i * 37 % 256) as u8 as i8).collect();
            let b: Vec<i8> = (0..n).map(|i| (i * 91 % 256) as u8 as i8).collect();
            let mut out = std::vec![0i8; n];
            add(&exec, &a, &[1], &b, &[1], &mut out, &[n], params);
            for i in 0..n {
                assert_eq!(out[i], params.apply(a[i], b[i]));
            }
            let mut out2 = std::vec![0i8; n];
            add(
                &exec,
                &a,
                &[1],
                &b[..n.min(1)],
                &[0],
                &mut out2,
                &[n],
                params,
            );
            for i in 0..n {
                assert_eq!(out2[i], params.apply(a[i], b[0]));
            }
        }
        // [2, 3] + [3] and [2, 1] + [1, 3].
        let (a, b) = ([1u8, 2, 3, 4, 5, 6], [10u8, 20, 30]);
        let params = AddParams::new(0.1f32, 0u8, 0.1, 0, 0.1, 0);
        let mut out = [0u8; 6];
        add(
            &Exec::single(),
            &a,
            &[3, 1],
            &b,
            &[0, 1],
            &mut out,
            &[2, 3],
            params,
        );
        assert_eq!(out, [11, 22, 33, 14, 25, 36]);
        add(
            &Exec::single(),
            &a[..2],
            &[1, 0],
            &b,
            &[0, 1],
            &mut out,
            &[2, 3],
            params,
        );
        assert_eq!(out, [11, 21, 31, 12, 22, 32]);
    }

    #[test]
    fn add_avx2_matches_the_portable_kernel() {
        #[cfg(target_arch = "x86_64")]
        {
            if !x86_64::has_avx2_fma() {
                std::println!("skipped: no AVX2/FMA on this CPU");
                return;
            }
            let mut rng = Rng(13);
            for n in [1usize, 7, 8, 15, 17, 64, 1000] {
                let (sa, sb, sc) = (
                    rng.f32_in(0.001, 0.5),
                    rng.f32_in(0.001, 0.5),
                    rng.f32_in(0.001, 0.5),
                );
                let p8: Vec<i8> = (0..n).map(|_| rng.byte() as i8).collect();
                let q8: Vec<i8> = (0..n).map(|_| rng.byte() as i8).collect();
                let params = AddParams::new(
                    sa,
                    rng.byte() as i8,
                    sb,
                    rng.byte() as i8,
                    sc,
                    rng.byte() as i8,
                );
                let mut out = std::vec![0i8; n];
                // SAFETY: AVX2 and FMA were detected; the lengths match.
                unsafe { x86_64::add_avx2_fma(&p8, &q8, &mut out, params) };
                for i in 0..n {
                    assert_eq!(out[i], params.apply(p8[i], q8[i]), "n {n} at {i}");
                }
                let pu: Vec<u8> = p8.iter().map(|&v| v as u8).collect();
                let params = AddParams::new(sa, rng.byte(), sb, rng.byte(), sc, rng.byte());
                let mut out = std::vec![0u8; n];
                // SAFETY: as above, with a single-value q.
                unsafe { x86_64::add_avx2_fma(&pu, &[200u8], &mut out, params) };
                for i in 0..n {
                    assert_eq!(out[i], params.apply(pu[i], 200u8), "n {n} at {i}");
                }
            }
        }
    }

    #[test]
    fn mul_matches_the_scalar_formula() {
        let mut rng = Rng(11);
        // Under Miri the first 10 parameter sets.
        for _ in 0..if cfg!(miri) { 10 } else { 200 } {
            let (sa, sb, sc) = (
                rng.f32_in(0.001, 0.5),
                rng.f32_in(0.001, 0.5),
                rng.f32_in(0.001, 0.5),
            );
            let (za, zb, zc) = (rng.byte() as i8, rng.byte() as i8, rng.byte() as i8);
            let params = MulParams::new(sa, za, sb, zb, sc, zc);
            for _ in 0..64 {
                let (a, b) = (rng.byte() as i8, rng.byte() as i8);
                let prod = (i32::from(a) - i32::from(za)) * (i32::from(b) - i32::from(zb));
                let r = prod as f32 * (sa * sb / sc) + f32::from(zc);
                assert_eq!(i32::from(params.apply(a, b)), cvt_reference::<i8>(r));
            }
        }
    }

    #[test]
    fn tables_follow_dequantize_apply_quantize() {
        let mut table = [0u8; 256];
        build_table(0.1f32, 128u8, 0.05, 0, &mut table, |v| v);
        for x in 0..=255u8 {
            let v = 0.1f32 * (i32::from(x) - 128) as f32;
            let q = (v / 0.05).round_ties_even().clamp(0.0, 255.0) as u8;
            assert_eq!(table[usize::from(x)], q, "x = {x}");
        }
        build_table(0.2f32, -3i8, 1.0 / 256.0, -128, &mut table, logistic);
        let x = [-128i8, -3, 0, 5, 127];
        let mut y = [0i8; 5];
        lookup(&x, &table, &mut y);
        assert_eq!(y[0], -128);
        assert_eq!(y[1], 0);
        assert_eq!(y[4], 127);
        let mut z = x;
        lookup_in_place(&mut z, &table);
        assert_eq!(z, y);
    }

    #[test]
    fn logistic_coefficients_are_mlas_decimals() {
        let alpha = [
            4.37031012579801e-11f64,
            1.15627324459942e-07,
            6.08574864600143e-05,
            8.51377133304701e-03,
            2.48287947061529e-01,
        ];
        let beta = [
            6.10247389755681e-13f64,
            5.76102136993427e-09,
            6.29106785017040e-06,
            1.70198817374094e-03,
            1.16817656904453e-01,
            9.93151921023180e-01,
        ];
        assert_eq!(LOGISTIC_ALPHA, alpha.map(|v| v as f32));
        assert_eq!(LOGISTIC_BETA, beta.map(|v| v as f32));
    }

    #[test]
    fn logistic_is_close_to_the_exact_sigmoid() {
        for i in -400..=400 {
            let x = i as f32 * 0.05;
            let exact = 1.0 / (1.0 + (-f64::from(x)).exp());
            assert!((f64::from(logistic(x)) - exact).abs() < 2e-6, "{x}");
        }
        assert_eq!(logistic(-100.0), logistic(-18.0));
    }

    #[test]
    fn global_pool_layouts_agree() {
        let mut rng = Rng(5);
        let (batch, channels, image) = (2usize, 67usize, 5usize);
        let nchw: Vec<u8> = (0..batch * channels * image).map(|_| rng.byte()).collect();
        let mut nhwc = std::vec![0u8; nchw.len()];
        for n in 0..batch {
            for c in 0..channels {
                for i in 0..image {
                    nhwc[(n * image + i) * channels + c] = nchw[(n * channels + c) * image + i];
                }
            }
        }
        let params = GlobalPoolParams::new(0.02f32, 100u8, 0.015, 7, image);
        let (mut a, mut b) = (
            std::vec![0u8; batch * channels],
            std::vec![0u8; batch * channels],
        );
        global_average_pool(&nchw, &mut a, [batch, channels, image], false, params);
        global_average_pool(&nhwc, &mut b, [batch, channels, image], true, params);
        assert_eq!(a, b);
        let sum: i32 = nchw[..image].iter().map(|&v| i32::from(v)).sum();
        let v = (sum - 100 * image as i32) as f32 * (0.02f32 / (0.015 * image as f32));
        assert_eq!(
            i32::from(a[0]),
            (v.clamp(-7.0, 248.0).round_ties_even() as i32) + 7
        );
    }

    #[test]
    fn average_pool_matches_a_direct_window_sum() {
        let mut rng = Rng(9);
        let x: Vec<i8> = (0..2 * 3 * 5 * 6).map(|_| rng.byte() as i8).collect();
        for (include, last) in [(false, false), (true, false), (false, true)] {
            let p = AvgPoolParams {
                batch: 2,
                channels: 3,
                input: [1, 5, 6],
                output: [1, 3, 3],
                kernel: [1, 3, 2],
                strides: [1, 2, 2],
                pads_begin: [0, 1, 0],
                count_include_pad: include,
                channels_last: last,
            };
            let mut out = std::vec![0i8; 2 * 3 * 9];
            average_pool(&p, &x, [0.1, 0.07], [-5, 3], &mut out);
            for n in 0..2 {
                for c in 0..3 {
                    for oh in 0..3usize {
                        for ow in 0..3 {
                            let (mut sum, mut count) = (0f32, 0);
                            for h in (oh * 2).saturating_sub(1)..(oh * 2 + 2).min(5) {
                                for w in ow * 2..(ow * 2 + 2).min(6) {
                                    let at = if last {
                                        ((n * 5 + h) * 6 + w) * 3 + c
                                    } else {
                                        ((n * 3 + c) * 5 + h) * 6 + w
                                    };
                                    sum += 0.1 * (i32::from(x[at]) + 5) as f32;
                                    count += 1;
                                }
                            }
                            let count = if include { 6 } else { count };
                            let q = (sum / count as f32 / 0.07 + 3.0).round_ties_even();
                            let want = q.clamp(-128.0, 127.0) as i8;
                            let at = if last {
                                ((n * 3 + oh) * 3 + ow) * 3 + c
                            } else {
                                ((n * 3 + c) * 3 + oh) * 3 + ow
                            };
                            assert_eq!(out[at], want, "n {n} c {c} at {oh},{ow}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn softmax_rows_and_columns_agree() {
        let mut rng = Rng(3);
        let (rows, len) = (4usize, 9usize);
        let x: Vec<u8> = (0..rows * len).map(|_| rng.byte() / 4).collect();
        let mut table = [0f32; 256];
        softmax_table(0.1, len, &mut table);
        let mut by_rows = std::vec![0u8; rows * len];
        softmax(&x, &mut by_rows, [rows, len, 1], &table, 1.0 / 256.0, 0);
        // The same data transposed, reduced along the outer axis.
        let mut xt = std::vec![0u8; rows * len];
        for r in 0..rows {
            for k in 0..len {
                xt[k * rows + r] = x[r * len + k];
            }
        }
        let mut by_cols = std::vec![0u8; rows * len];
        softmax(&xt, &mut by_cols, [1, len, rows], &table, 1.0 / 256.0, 0);
        for r in 0..rows {
            for k in 0..len {
                assert_eq!(by_rows[r * len + k], by_cols[k * rows + r]);
            }
            // Probabilities over 256ths: each row sums to about 256.
            let total: i32 = by_rows[r * len..][..len]
                .iter()
                .map(|&v| i32::from(v))
                .sum();
            assert!((total - 256).abs() <= len as i32, "{total}");
        }
    }

    #[test]
    fn where_and_concat_requantize_through_tables() {
        let mut tx = [0u8; 256];
        build_table(0.5f32, 0u8, 0.25, 0, &mut tx, |v| v);
        let (c, x, y) = ([1u8, 0, 1, 0], [1u8, 2, 3, 4], [9u8]);
        let mut out = [0u8; 4];
        select(
            &c,
            &[1],
            &x,
            &[1],
            &y,
            &[0],
            &mut out,
            &[4],
            [Some(&tx), None],
        );
        assert_eq!(out, [2, 9, 6, 9]);
        let mut cat = [0u8; 6];
        concat_part(&x, None, &mut cat, 2, 3, 0);
        concat_part(&[7u8, 8], Some(&tx), &mut cat, 1, 3, 2);
        assert_eq!(cat, [1, 2, 14, 3, 4, 16]);
    }
}
