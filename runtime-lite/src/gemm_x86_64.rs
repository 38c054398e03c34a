//! x86_64 GEMM microkernels: AVX-512F (8 x 48 tile, up to 24 zmm accumulators, with the
//! epilogue applied in registers) and AVX2+FMA (6 x 16 tile, 12 ymm accumulators), over the
//! packed panels of [`crate::gemm`].

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use crate::epilogue::Activation;
use crate::gemm::{Finish, Tile};

/// Whether the AVX-512F kernel may run: detected at run time with `std`, else from the
/// compile-time target features.
#[inline]
pub(crate) fn has_avx512() -> bool {
    #[cfg(all(any(test, fuzzing), feature = "std"))]
    if PORTABLE_ONLY.with(core::cell::Cell::get) {
        return false;
    }
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(target_feature = "avx512f")
    }
}

#[cfg(all(any(test, fuzzing), feature = "std"))]
std::thread_local! {
    /// Set by [`without_avx512`]: this thread's kernels take their other paths.
    static PORTABLE_ONLY: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Runs `f` with [`has_avx512`] false on this thread, so that tests on an AVX-512 machine
/// also check the paths other CPUs take (work handed to pool threads may still use AVX-512).
#[cfg(all(any(test, fuzzing), feature = "std"))]
pub(crate) fn without_avx512<R>(f: impl FnOnce() -> R) -> R {
    PORTABLE_ONLY.with(|p| p.set(true));
    let result = f();
    PORTABLE_ONLY.with(|p| p.set(false));
    result
}

/// The first `count` lanes of a 16-lane vector (all of them from 16 on): the mask of a
/// vector that may run past the end of a row.
#[inline(always)]
pub(crate) fn lanes(count: usize) -> __mmask16 {
    if count >= 16 {
        0xffff
    } else {
        ((1u32 << count) - 1) as __mmask16
    }
}

/// Whether the AVX2+FMA kernel may run.
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(target_feature = "avx2", target_feature = "fma"))
    }
}

/// The AVX-512 microkernel (see [`crate::gemm::Kernel`]): an 8-row tile of up to 48 columns,
/// in 1 to 3 vectors of 16 chosen by the tile's width, so that a narrow last panel costs
/// only the vectors it covers.
///
/// # Safety
/// As for [`crate::gemm::Kernel`], with `MR = 8`, `NR = 48`, on a CPU with AVX-512F.
pub(crate) unsafe fn kernel_avx512(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    tile: &Tile<'_>,
) {
    // SAFETY: forwarded contract; the dispatcher checked AVX-512F.
    unsafe {
        match tile.nr.div_ceil(16) {
            0 | 1 => avx512_impl::<1>(kc, a, lda, b, ldb, tile),
            2 => avx512_impl::<2>(kc, a, lda, b, ldb, tile),
            _ => avx512_impl::<3>(kc, a, lda, b, ldb, tile),
        }
    }
}

/// An 8 x `16 * NV` tile: `8 * NV` accumulators, `NV` loads of B and 8 broadcasts of A per
/// step of depth.
#[target_feature(enable = "avx512f")]
unsafe fn avx512_impl<const NV: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    tile: &Tile<'_>,
) {
    const MR: usize = 8;
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let prefetch = !tile.next_a.is_null();
    for p in 0..kc {
        if prefetch && p % 2 == 0 {
            // One cache line of the next A panel (16 floats: two steps) into L2 per two
            // steps. A hint: no access happens, so any address is sound.
            _mm_prefetch::<_MM_HINT_T1>(tile.next_a.wrapping_add(p * MR).cast::<i8>());
        }
        // SAFETY: p < kc, so the 16 * NV floats at b + p*ldb and MR floats at a + p*lda are in
        // the panels (the caller's contract).
        unsafe {
            let bp = b.add(p * ldb);
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(bp.add(16 * v));
            }
            let mut ap = a.add(p * lda);
            for row in acc.iter_mut() {
                let av = _mm512_set1_ps(*ap);
                for v in 0..NV {
                    row[v] = _mm512_fmadd_ps(av, bv[v], row[v]);
                }
                ap = ap.add(1);
            }
        }
    }
    let alpha = _mm512_set1_ps(tile.alpha);
    let mut masks = [0 as __mmask16; NV];
    for (v, m) in masks.iter_mut().enumerate() {
        *m = lanes(tile.nr.saturating_sub(16 * v));
    }
    for (r, row_acc) in acc.iter().enumerate().take(tile.mr) {
        // SAFETY: row r < mr and the masks cover only columns < nr: inside the tile the caller
        // guarantees writable (and, for the residual, readable).
        unsafe {
            let row = tile.out.add(r * tile.ldo);
            let bias = match tile.finish {
                Some(Finish {
                    bias: Some(bias), ..
                }) => Some(_mm512_set1_ps(bias[r])),
                _ => None,
            };
            for v in 0..NV {
                let residual = match tile.finish {
                    Some(f) if !f.residual.is_null() => f.residual.add(r * tile.ldo + 16 * v),
                    _ => core::ptr::null(),
                };
                let acts = tile.finish.map_or(&[][..], |f| f.acts);
                store_vector(
                    row_acc[v],
                    row.add(16 * v),
                    masks[v],
                    alpha,
                    tile.overwrite,
                    bias,
                    residual,
                    acts,
                );
            }
        }
    }
}

/// Writes one accumulator vector of a finished tile to the lanes of `mask` at `at`:
/// `alpha * acc`, plus what `at` holds unless `overwrite`, plus `bias`, plus the residual at
/// `residual` (none if null), then `acts` (each one [`Finish::in_register`] accepts).
///
/// # Safety
/// The lanes of `mask` at `at` are writable and, unless `overwrite`, readable; at `residual`
/// (if not null) they are readable.
#[allow(clippy::too_many_arguments, reason = "a vector and its whole epilogue")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn store_vector(
    acc: __m512,
    at: *mut f32,
    mask: __mmask16,
    alpha: __m512,
    overwrite: bool,
    bias: Option<__m512>,
    residual: *const f32,
    acts: &[Activation],
) {
    let mut x = _mm512_mul_ps(acc, alpha);
    // SAFETY: the caller's contract, for the lanes of `mask`.
    unsafe {
        if !overwrite {
            x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, at));
        }
        if let Some(bias) = bias {
            x = _mm512_add_ps(x, bias);
        }
        if !residual.is_null() {
            x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, residual));
        }
        for &act in acts {
            x = activate(act, x);
        }
        _mm512_mask_storeu_ps(at, mask, x);
    }
}

/// One of the activations [`Finish::in_register`] accepts, on 16 lanes, with the same f32
/// operations in the same order as [`Activation::apply`].
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn activate(act: Activation, x: __m512) -> __m512 {
    // MAXPS(a, b) is `a > b ? a : b` and MINPS(a, b) `a < b ? a : b`: with the constant first,
    // a NaN in x passes through, as in the scalar forms.
    let zero = _mm512_setzero_ps();
    match act {
        Activation::Relu => _mm512_max_ps(zero, x),
        Activation::Clip(lo, hi) => {
            _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), x))
        }
        Activation::LeakyRelu(a) => {
            let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, zero);
            _mm512_mask_mul_ps(x, negative, x, _mm512_set1_ps(a))
        }
        Activation::Affine(a, b) => {
            _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(a), x), _mm512_set1_ps(b))
        }
        Activation::HardSigmoid(a, b) => clamp01_avx512(_mm512_add_ps(
            _mm512_mul_ps(_mm512_set1_ps(a), x),
            _mm512_set1_ps(b),
        )),
        Activation::HardSwish => {
            let gate = _mm512_add_ps(
                _mm512_mul_ps(x, _mm512_set1_ps(1.0 / 6.0)),
                _mm512_set1_ps(0.5),
            );
            _mm512_mul_ps(x, clamp01_avx512(gate))
        }
        // The transcendental ones, out of line so that the cheap ones above stay inlined in
        // every kernel's store loop.
        Activation::Sigmoid
        | Activation::Tanh
        | Activation::Gelu
        | Activation::GeluTanh
        | Activation::Swish(_) => activate_math(act, x),
        // Not in-register (see `Finish::in_register`): the caller applies it.
        _ => x,
    }
}

/// Runs `$body` once for each listed value of `$j` (a literal), as straight-line code: for
/// kernels whose register tiles LLVM would otherwise index in a loop (and so keep in memory).
macro_rules! unroll {
    ($j:ident in [$($n:literal),*] $body:block) => {{
        $({
            let $j: usize = $n;
            $body
        })*
    }};
}
pub(crate) use unroll;

/// [`activate`] on every vector of an array (`$xs: &mut [__m512; N]`), dispatching on the
/// activation `$act` once rather than per vector. A macro, so that it inlines into the
/// `target_feature` kernels that use it (a function would take the array through memory).
macro_rules! activate_tile {
    ($act:expr, $xs:expr) => {{
        use $crate::epilogue::Activation as A;
        macro_rules! each {
            ($a:expr) => {
                $crate::gemm_x86_64::unroll!(i in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
                    if i < $xs.len() {
                        $xs[i] = $crate::gemm_x86_64::activate($a, $xs[i]);
                    }
                })
            };
        }
        match $act {
            A::Relu => each!(A::Relu),
            A::Clip(lo, hi) => each!(A::Clip(lo, hi)),
            A::LeakyRelu(a) => each!(A::LeakyRelu(a)),
            A::Affine(a, b) => each!(A::Affine(a, b)),
            A::HardSigmoid(a, b) => each!(A::HardSigmoid(a, b)),
            A::HardSwish => each!(A::HardSwish),
            act => each!(act),
        }
    }};
}
pub(crate) use activate_tile;

/// The `crate::math` function of a transcendental activation (one [`activate`] evaluates out
/// of line), or `None`.
#[inline]
fn math_func(act: Activation) -> Option<crate::math::Func> {
    use crate::math::Func;
    match act {
        Activation::Sigmoid => Some(Func::Sigmoid),
        Activation::Tanh => Some(Func::Tanh),
        Activation::Gelu => Some(Func::Gelu),
        Activation::GeluTanh => Some(Func::GeluTanh),
        Activation::Swish(alpha) => Some(Func::Swish(alpha)),
        _ => None,
    }
}

/// Sigmoid, tanh, both GELUs and Swish on 16 lanes: the vector forms of `crate::math`, bit for bit
/// the scalar functions (and what the separate ops compute).
#[inline(never)]
#[target_feature(enable = "avx512f")]
fn activate_math(act: Activation, x: __m512) -> __m512 {
    // SAFETY: this function is compiled for AVX-512F and runs only where it was detected (its
    // callers are AVX-512 kernels).
    let s = unsafe { crate::math_x86_64::Avx512::assume() };
    math_func(act).map_or(x, |f| f.eval(s, x))
}

/// Whether `acts` holds a transcendental activation, which [`activate_vectors`] should then
/// apply to a whole tile.
#[inline]
pub(crate) fn has_math(acts: &[Activation]) -> bool {
    acts.iter().any(|&act| math_func(act).is_some())
}

/// `acts` in order on every vector of `xs` (each one that [`Finish::in_register`] accepts,
/// with the same operations as [`activate`]), dispatching once per activation: a tile's sums
/// go through memory once, and the evaluations of its vectors (independent of each other)
/// overlap, where one out-of-line call per vector would spill the tile's other registers and
/// run one vector at a time.
#[inline(never)]
#[target_feature(enable = "avx512f")]
pub(crate) fn activate_vectors(acts: &[Activation], xs: &mut [__m512]) {
    // SAFETY: this function is compiled for AVX-512F and runs only where it was detected (its
    // callers are AVX-512 kernels).
    let s = unsafe { crate::math_x86_64::Avx512::assume() };
    for &act in acts {
        match math_func(act) {
            Some(f) => xs.iter_mut().for_each(|x| *x = f.eval(s, *x)),
            None => xs.iter_mut().for_each(|x| *x = activate(act, *x)),
        }
    }
}

/// `min(max(v, 0), 1)`, NaN passing through.
#[target_feature(enable = "avx512f")]
fn clamp01_avx512(v: __m512) -> __m512 {
    _mm512_min_ps(_mm512_set1_ps(1.0), _mm512_max_ps(_mm512_setzero_ps(), v))
}

/// The 6 x 16 AVX2+FMA microkernel (see [`crate::gemm::Kernel`]).
///
/// # Safety
/// As for [`crate::gemm::Kernel`], with `MR = 6`, `NR = 16`, on a CPU with AVX2 and FMA.
pub(crate) unsafe fn kernel_avx2(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    tile: &Tile<'_>,
) {
    // SAFETY: forwarded contract; the dispatcher checked AVX2 and FMA.
    unsafe {
        avx2_impl(kc, a, lda, b, ldb, tile);
        tile.finish_in_memory();
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_impl(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    tile: &Tile<'_>,
) {
    let Tile {
        out,
        ldo,
        mr,
        nr,
        alpha,
        overwrite,
        ..
    } = *tile;
    const MR: usize = 6;
    let mut acc0 = [_mm256_setzero_ps(); MR];
    let mut acc1 = [_mm256_setzero_ps(); MR];
    for p in 0..kc {
        // SAFETY: inside the packed panels (the caller's contract).
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(p * ldb));
            let b1 = _mm256_loadu_ps(b.add(p * ldb + 8));
            let ap = a.add(p * lda);
            for r in 0..MR {
                let av = _mm256_broadcast_ss(&*ap.add(r));
                acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
            }
        }
    }
    let alpha_v = _mm256_set1_ps(alpha);
    for r in 0..mr {
        let mut tile = [0.0f32; 16];
        // SAFETY: `tile` has 16 floats, the two stores 8 each.
        unsafe {
            _mm256_storeu_ps(tile.as_mut_ptr(), _mm256_mul_ps(acc0[r], alpha_v));
            _mm256_storeu_ps(tile.as_mut_ptr().add(8), _mm256_mul_ps(acc1[r], alpha_v));
        }
        // SAFETY: row r < mr, columns < nr: inside the tile the caller guarantees writable.
        let row = unsafe { core::slice::from_raw_parts_mut(out.add(r * ldo), nr) };
        for (d, &v) in row.iter_mut().zip(&tile) {
            *d = if overwrite { v } else { *d + v };
        }
    }
}

/// `out[i][j] (+)= alpha * dot(a[i * lda ..][..k], columns[j * k ..][..k])` for `i < m`,
/// `j < N`: the narrow product (a few output columns, B's columns gathered contiguous), `R`
/// rows of A at a time so that each column load serves `R` FMAs; one horizontal sum per output
/// at the end.
///
/// # Safety
/// The CPU supports AVX-512F; `a` holds `m` rows of `k` floats at stride `lda`, `columns`
/// `N * k` floats and `out` `m * N`.
#[allow(clippy::too_many_arguments, reason = "a BLAS-style signature")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn narrow_avx512<const N: usize, const R: usize>(
    m: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    lda: usize,
    columns: *const f32,
    accumulate: bool,
    out: *mut f32,
) {
    let mut i = 0;
    while i < m {
        let rows = R.min(m - i);
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        let mut c = 0;
        while c < k {
            let mask = lanes(k - c);
            let mut bv = [_mm512_setzero_ps(); N];
            for (j, b) in bv.iter_mut().enumerate() {
                // SAFETY: column j's floats c..c + 16 (masked to k) are inside `columns`.
                *b = unsafe { _mm512_maskz_loadu_ps(mask, columns.add(j * k + c)) };
            }
            for (r, sums) in acc.iter_mut().enumerate() {
                // Rows past m load nothing (their sums are never stored).
                let row_mask = if r < rows { mask } else { 0 };
                // SAFETY: row i + r < m (else no lane is read), floats c..c + 16 masked to k.
                let av =
                    unsafe { _mm512_maskz_loadu_ps(row_mask, a.wrapping_add((i + r) * lda + c)) };
                for (s, &b) in sums.iter_mut().zip(&bv) {
                    *s = _mm512_fmadd_ps(av, b, *s);
                }
            }
            c += 16;
        }
        for (r, sums) in acc.iter().enumerate().take(rows) {
            for (j, &s) in sums.iter().enumerate() {
                // SAFETY: output (i + r, j) is inside `out` (m x N).
                unsafe {
                    let o = out.add((i + r) * N + j);
                    let v = alpha * _mm512_reduce_add_ps(s);
                    *o = if accumulate { *o + v } else { v };
                }
            }
        }
        i += R;
    }
}

/// `row[j] (+)= alpha * sum_p a[p * a_step] * b[p * ldb + j]` for `j < n`: one output row of a
/// product with few rows and a row-major B, up to 256 columns at a time kept in registers
/// over all of `p` (each B element loaded once, in runs along B's rows, and the output
/// stored once).
///
/// # Safety
/// The CPU supports AVX-512F; `a` holds `k` floats at stride `a_step`, `b` `k` rows of `n`
/// floats at stride `ldb`, `row` `n` floats.
#[allow(clippy::too_many_arguments, reason = "a BLAS-style signature")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn row_times_matrix_avx512(
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    a_step: usize,
    b: *const f32,
    ldb: usize,
    accumulate: bool,
    row: *mut f32,
) {
    const V: usize = 16;
    let alpha_v = _mm512_set1_ps(alpha);
    let mut j = 0;
    while j < n {
        let vectors = (n - j).div_ceil(16).min(V);
        let mut masks = [0 as __mmask16; V];
        for (v, m) in masks.iter_mut().enumerate() {
            *m = lanes(n.saturating_sub(j + 16 * v));
        }
        let mut acc = [_mm512_setzero_ps(); V];
        for p in 0..k {
            // SAFETY: element p of A, and row p's columns j.. (masked to n) of B.
            unsafe {
                let av = _mm512_set1_ps(*a.add(p * a_step));
                let bp = b.add(p * ldb + j);
                for (v, s) in acc.iter_mut().enumerate().take(vectors) {
                    let bv = _mm512_maskz_loadu_ps(masks[v], bp.wrapping_add(16 * v));
                    *s = _mm512_fmadd_ps(av, bv, *s);
                }
            }
        }
        for (v, &s) in acc.iter().enumerate().take(vectors) {
            // SAFETY: columns j + 16v.. masked to n are inside `row`.
            unsafe {
                let at = row.wrapping_add(j + 16 * v);
                let mut x = _mm512_mul_ps(s, alpha_v);
                if accumulate {
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(masks[v], at));
                }
                _mm512_mask_storeu_ps(at, masks[v], x);
            }
        }
        j += 16 * V;
    }
}

/// Packs 8 rows of 8 floats (row `r` at `src + r * ld`) as 8 columns: `dst[p * 8 + r] =
/// src[r * ld + p]`, the classic AVX transpose (unpack, shuffle, then swap 128-bit halves).
///
/// # Safety
/// The 8 rows of 8 floats are readable and `dst` is writable for 64 floats; the CPU has AVX.
#[target_feature(enable = "avx")]
pub(crate) unsafe fn transpose8x8(src: *const f32, ld: usize, dst: *mut f32) {
    // SAFETY: the caller's contract.
    unsafe {
        let r: [__m256; 8] = core::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ld)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (p, v) in out.iter().enumerate() {
            _mm256_storeu_ps(dst.add(p * 8), *v);
        }
    }
}

/// Whether AVX may run (the 8 x 8 transpose of `pack_a`).
pub(crate) fn has_avx() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(target_feature = "avx")
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    /// Every activation a kernel applies in registers gives, lane by lane, the bits of
    /// [`Activation::apply`] (what the separate op and the portable kernels compute).
    #[test]
    #[cfg_attr(miri, ignore = "under Miri no CPU feature is detected")]
    fn in_register_activations_match_the_scalar_ones() {
        if !std::is_x86_feature_detected!("avx512f") {
            return;
        }
        let acts = [
            Activation::Relu,
            Activation::Clip(-1.5, 6.0),
            Activation::LeakyRelu(0.1),
            Activation::Affine(0.5, -0.25),
            Activation::HardSigmoid(0.2, 0.5),
            Activation::HardSwish,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Gelu,
            Activation::GeluTanh,
            Activation::Swish(1.0),
            Activation::Swish(1.702),
        ];
        let values: std::vec::Vec<f32> = (0..4096)
            .map(|i| (i as f32 - 2048.0) / 97.0)
            .chain([0.0, -0.0, 1e-30, -1e-30, 88.5, -88.5, 200.0, -200.0])
            .chain([f32::INFINITY, f32::NEG_INFINITY, f32::NAN])
            .collect();
        for act in acts {
            assert!(Finish::in_register(&act), "{act:?}");
            for chunk in values.chunks(16) {
                let mut lanes = [0f32; 16];
                lanes[..chunk.len()].copy_from_slice(chunk);
                let mut got = [0f32; 16];
                // SAFETY: AVX-512F was detected above; both arrays hold 16 floats.
                unsafe {
                    let y = activate(act, _mm512_loadu_ps(lanes.as_ptr()));
                    _mm512_storeu_ps(got.as_mut_ptr(), y);
                }
                for (&x, &y) in lanes.iter().zip(&got) {
                    let want = act.apply(x);
                    assert!(
                        want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()),
                        "{act:?}({x}): {y} in registers, {want} apart"
                    );
                }
            }
        }
    }
}
