//! x86_64 GEMM microkernels: AVX-512F (8 x 32 tile, 16 zmm accumulators) and AVX2+FMA
//! (6 x 16 tile, 12 ymm accumulators), over the packed panels of [`crate::gemm`].

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

/// Whether the AVX-512F kernel may run: detected at run time with `std`, else from the
/// compile-time target features.
#[inline]
pub(crate) fn has_avx512() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(target_feature = "avx512f")
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

/// The 8 x 32 AVX-512 microkernel (see [`crate::gemm::Kernel`]).
///
/// # Safety
/// As for [`crate::gemm::Kernel`], with `MR = 8`, `NR = 32`, on a CPU with AVX-512F.
#[allow(clippy::too_many_arguments, reason = "the Kernel signature")]
pub(crate) unsafe fn kernel_avx512(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    out: *mut f32,
    ldo: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    overwrite: bool,
) {
    // SAFETY: forwarded contract; the dispatcher checked AVX-512F.
    unsafe { avx512_impl(kc, a, lda, b, ldb, out, ldo, mr, nr, alpha, overwrite) }
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments, reason = "the Kernel signature")]
unsafe fn avx512_impl(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    out: *mut f32,
    ldo: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    overwrite: bool,
) {
    const MR: usize = 8;
    let mut acc0 = [_mm512_setzero_ps(); MR];
    let mut acc1 = [_mm512_setzero_ps(); MR];
    for p in 0..kc {
        // SAFETY: p < kc, so the 32 floats at b + p*ldb and MR floats at a + p*lda are in the
        // panels (the caller's contract).
        unsafe {
            let b0 = _mm512_loadu_ps(b.add(p * ldb));
            let b1 = _mm512_loadu_ps(b.add(p * ldb + 16));
            let ap = a.add(p * lda);
            for r in 0..MR {
                let av = _mm512_set1_ps(*ap.add(r));
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
            }
        }
    }
    let alpha_v = _mm512_set1_ps(alpha);
    let lanes = |count: usize| -> __mmask16 {
        if count >= 16 {
            0xffff
        } else {
            ((1u32 << count) - 1) as __mmask16
        }
    };
    let (m0, m1) = (lanes(nr), lanes(nr.saturating_sub(16)));
    for r in 0..mr {
        // SAFETY: row r < mr and the masks cover only columns < nr: inside the tile the caller
        // guarantees writable.
        unsafe {
            let row = out.add(r * ldo);
            let mut v0 = _mm512_mul_ps(acc0[r], alpha_v);
            let mut v1 = _mm512_mul_ps(acc1[r], alpha_v);
            if !overwrite {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.add(16)));
            }
            _mm512_mask_storeu_ps(row, m0, v0);
            _mm512_mask_storeu_ps(row.add(16), m1, v1);
        }
    }
}

/// The 6 x 16 AVX2+FMA microkernel (see [`crate::gemm::Kernel`]).
///
/// # Safety
/// As for [`crate::gemm::Kernel`], with `MR = 6`, `NR = 16`, on a CPU with AVX2 and FMA.
#[allow(clippy::too_many_arguments, reason = "the Kernel signature")]
pub(crate) unsafe fn kernel_avx2(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    out: *mut f32,
    ldo: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    overwrite: bool,
) {
    // SAFETY: forwarded contract; the dispatcher checked AVX2 and FMA.
    unsafe { avx2_impl(kc, a, lda, b, ldb, out, ldo, mr, nr, alpha, overwrite) }
}

#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments, reason = "the Kernel signature")]
unsafe fn avx2_impl(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    out: *mut f32,
    ldo: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    overwrite: bool,
) {
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
