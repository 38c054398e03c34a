//! x86_64 int8 microkernels over the packed panels of [`crate::int8::pack`]: AVX-512 VNNI
//! (6 rows x up to 4 panels of 16 columns, 24 zmm accumulators), AVX-VNNI (6 x 16 on ymm) and
//! AVX2 without VNNI (2 x 16: bytes widened to 16 bits, `vpmaddwd` pair sums, which cannot
//! saturate on 8-bit inputs).
//!
//! `rows_unsigned` says which operand is `u8`: the broadcast rows (products: activations
//! times weights) or the panel columns (convolutions: weights times im2col columns).
//!
//! Also one-row (matrix-vector) kernels on the VNNI families, for the steps of int8 recurrent
//! layers at batch 1 (`int8::rnn`).

use core::arch::x86_64::*;

use super::{Rows, TileAcc, PANEL};

/// Whether the AVX-512 VNNI kernel may run (false under the AVX-512-off test switch).
pub(super) fn has_avx512_vnni() -> bool {
    #[cfg(all(any(test, fuzzing), feature = "std"))]
    if !crate::gemm_x86_64::has_avx512() {
        return false;
    }
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vnni"
        ))
    }
}

/// Whether the AVX-VNNI kernel may run.
pub(super) fn has_avx_vnni() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(target_feature = "avx2", target_feature = "avxvnni"))
    }
}

/// Whether the AVX2 kernel may run.
pub(super) fn has_avx2() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(target_feature = "avx2")
    }
}

/// Four bytes at `p` as one `i32` lane value.
///
/// # Safety
/// `p` is readable for 4 bytes.
#[inline(always)]
unsafe fn quad(p: *const u8) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::read_unaligned(p.cast::<i32>()) }
}

/// The AVX-512 VNNI microkernel: 6 rows by `np` (1 to 4) panels.
///
/// # Safety
/// As for `Isa::kernel`, on a CPU with AVX-512F, AVX-512BW and AVX-512 VNNI.
#[allow(clippy::too_many_arguments, reason = "the microkernel's operands")]
pub(super) unsafe fn kernel_vnni512(
    rows_unsigned: bool,
    kg: usize,
    rows: Rows,
    cols: *const u8,
    stride: usize,
    np: usize,
    acc: &mut TileAcc,
    accumulate: bool,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match (rows_unsigned, np) {
            (true, 0 | 1) => vnni512::<1, true>(kg, rows, cols, stride, acc, accumulate),
            (true, 2) => vnni512::<2, true>(kg, rows, cols, stride, acc, accumulate),
            (true, _) => vnni512::<3, true>(kg, rows, cols, stride, acc, accumulate),
            (false, 0 | 1) => vnni512::<1, false>(kg, rows, cols, stride, acc, accumulate),
            (false, 2) => vnni512::<2, false>(kg, rows, cols, stride, acc, accumulate),
            (false, _) => vnni512::<3, false>(kg, rows, cols, stride, acc, accumulate),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni512<const NV: usize, const ROWS_U8: bool>(
    kg: usize,
    rows: Rows,
    cols: *const u8,
    stride: usize,
    acc: &mut TileAcc,
    accumulate: bool,
) {
    const MR: usize = 8;
    let mut c = [[_mm512_setzero_si512(); NV]; MR];
    if accumulate {
        for (r, row) in c.iter_mut().enumerate() {
            for (v, cv) in row.iter_mut().enumerate() {
                // SAFETY: 16 i32 inside the tile row (v < 4).
                *cv = unsafe { _mm512_loadu_si512(acc[r][v * 16..].as_ptr().cast()) };
            }
        }
    }
    for g in 0..kg {
        let mut b = [_mm512_setzero_si512(); NV];
        for (v, bv) in b.iter_mut().enumerate() {
            // SAFETY: panel v holds kg blocks of 64 bytes (the contract).
            *bv = unsafe { _mm512_loadu_si512(cols.add(v * stride + g * 64).cast()) };
        }
        for (r, row) in c.iter_mut().enumerate() {
            // SAFETY: group g of row r is readable (the contract).
            let a = _mm512_set1_epi32(unsafe { quad(rows.at(r, g)) });
            for (cv, &bv) in row.iter_mut().zip(&b) {
                *cv = if ROWS_U8 {
                    _mm512_dpbusd_epi32(*cv, a, bv)
                } else {
                    _mm512_dpbusd_epi32(*cv, bv, a)
                };
            }
        }
    }
    for (r, row) in c.iter().enumerate() {
        for (v, cv) in row.iter().enumerate() {
            // SAFETY: 16 i32 inside the tile row.
            unsafe { _mm512_storeu_si512(acc[r][v * 16..].as_mut_ptr().cast(), *cv) };
        }
    }
}

/// Where [`kernel_vnni512_taps`] puts its tile.
pub(super) enum TapsOut<'a> {
    /// The raw sums, for the generic epilogue.
    Acc(&'a mut TileAcc),
    /// Requantized in registers.
    Requant(&'a TileRequant<'a>),
    /// Dequantized in registers, with bias, residual and activations, stored as `f32` or
    /// quantized to `u8`.
    Float(&'a TileFloat<'a>),
}

/// A tile finished in float in registers: `y = acts((sum + add[c]) * scale[c] + bias[c] +
/// residual)`, the operations of the generic epilogue in its order, for the tile's first
/// `tile.0` rows and `tile.1` columns, rows `ld` apart.
pub(super) struct TileFloat<'a> {
    pub(super) add: &'a [i32; super::NR_MAX],
    pub(super) scale: &'a [f32; super::NR_MAX],
    pub(super) bias: &'a [f32; super::NR_MAX],
    /// The residual's element for the tile's first one.
    pub(super) residual: Option<*const f32>,
    /// Activations that run in registers (`gemm::Finish::in_register`).
    pub(super) acts: &'a [crate::epilogue::Activation],
    pub(super) out: FloatOut,
    pub(super) ld: usize,
    pub(super) tile: (usize, usize),
}

/// Where a [`TileFloat`] goes.
#[derive(Clone, Copy)]
pub(super) enum FloatOut {
    /// `f32` at this element.
    F32(*mut f32),
    /// `saturate(round_half_even(y / scale) + zero)` as `u8` at this element
    /// (`QuantizeLinear`'s formula; NaN gives the zero point).
    U8(*mut u8, f32, i32),
}

/// A tile requantized in registers: `out[r * ld + c] = saturate(round_half_even((sum +
/// add[c]) * scale[c]) + zero)` over `range`, for the tile's first `tile.0` rows and `tile.1`
/// columns.
pub(super) struct TileRequant<'a> {
    pub(super) add: &'a [i32; super::NR_MAX],
    pub(super) scale: &'a [f32; super::NR_MAX],
    pub(super) zero: i32,
    pub(super) range: (i32, i32),
    pub(super) out: *mut u8,
    pub(super) ld: usize,
    pub(super) tile: (usize, usize),
}

/// The AVX-512 VNNI kernel over windows: row `r` (an output pixel, `u8`) reads, for each tap
/// `t` and group `g < cg`, the four bytes at `starts[r] + taps[t] + 4 g`; the column panels
/// (`np` of them, `stride` apart) hold `taps.len() * cg` groups in that order.
///
/// # Safety
/// Those bytes are readable for all 8 rows; the panels are readable; a `Requant` target's
/// rows are writable for their columns (`tile.1 <= 16 * np`, `tile.0 <= 8`); the CPU has
/// AVX-512F, AVX-512BW and AVX-512 VNNI.
pub(super) unsafe fn kernel_vnni512_taps(
    starts: &[*const u8; 8],
    taps: &[usize],
    cg: usize,
    (cols, stride, np): (*const u8, usize, usize),
    out: TapsOut<'_>,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match np {
            0 | 1 => vnni512_taps::<1>(starts, taps, cg, cols, stride, out),
            2 => vnni512_taps::<2>(starts, taps, cg, cols, stride, out),
            _ => vnni512_taps::<3>(starts, taps, cg, cols, stride, out),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni512_taps<const NV: usize>(
    starts: &[*const u8; 8],
    taps: &[usize],
    cg: usize,
    cols: *const u8,
    stride: usize,
    out: TapsOut<'_>,
) {
    const MR: usize = 8;
    let mut c = [[_mm512_setzero_si512(); NV]; MR];
    let mut panel = cols;
    for &tap in taps {
        for g in 0..cg {
            let at = tap + g * 4;
            let mut b = [_mm512_setzero_si512(); NV];
            for (v, bv) in b.iter_mut().enumerate() {
                // SAFETY: the panels hold every group (the contract).
                *bv = unsafe { _mm512_loadu_si512(panel.add(v * stride).cast()) };
            }
            for (r, row) in c.iter_mut().enumerate() {
                // SAFETY: the window's bytes are readable (the contract).
                let a = _mm512_set1_epi32(unsafe { quad(starts[r].add(at)) });
                for (cv, &bv) in row.iter_mut().zip(&b) {
                    *cv = _mm512_dpbusd_epi32(*cv, a, bv);
                }
            }
            // SAFETY: the next group of the panels (one past the last at the end).
            panel = unsafe { panel.add(64) };
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_tile(c, out) };
}

/// The AVX-512 depthwise kernel, channels last: row `r` (an output pixel) accumulates, for
/// each tap `t`, its 16-channel vectors `v < nv` at `starts[r] + taps[t] + 16 v` (bytes,
/// zero-extended) times the tap's weights at `weights + t * stride + 16 v` (signed bytes),
/// with `vpdpwssd` on 32-bit lanes whose upper halves are zero.
///
/// # Safety
/// Those bytes are readable for all 6 rows and every tap; a `Requant` target's rows are
/// writable for their columns (`tile.1 <= 16 * nv`, `tile.0 <= 6`); `nv <= 4`; the CPU has
/// AVX-512F, AVX-512BW and AVX-512 VNNI.
pub(super) unsafe fn kernel_dw512(
    starts: &[*const u8; 6],
    taps: &[usize],
    weights: *const u8,
    stride: usize,
    nv: usize,
    out: TapsOut<'_>,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match nv {
            0 | 1 => dw512::<1>(starts, taps, weights, stride, out),
            2 => dw512::<2>(starts, taps, weights, stride, out),
            3 => dw512::<3>(starts, taps, weights, stride, out),
            _ => dw512::<4>(starts, taps, weights, stride, out),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dw512<const NV: usize>(
    starts: &[*const u8; 6],
    taps: &[usize],
    weights: *const u8,
    stride: usize,
    out: TapsOut<'_>,
) {
    let mut c = [[_mm512_setzero_si512(); NV]; 6];
    for (t, &tap) in taps.iter().enumerate() {
        for v in 0..NV {
            // SAFETY: the tap's weights hold the vector (the contract).
            let w = _mm512_cvtepi8_epi32(unsafe {
                _mm_loadu_si128(weights.add(t * stride + v * 16).cast())
            });
            for (r, row) in c.iter_mut().enumerate() {
                // SAFETY: the pixel's tap holds the vector (the contract).
                let x = _mm512_cvtepu8_epi32(unsafe {
                    _mm_loadu_si128(starts[r].add(tap + v * 16).cast())
                });
                row[v] = _mm512_dpwssd_epi32(row[v], x, w);
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_tile(c, out) };
}

/// Writes the accumulators of a tile (`MR` rows of `NV` vectors of 16 columns) to `out`.
///
/// # Safety
/// A `Requant` target's rows are writable for their columns (`tile.1 <= 16 * NV`,
/// `tile.0 <= MR`); the CPU has AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_tile<const MR: usize, const NV: usize>(c: [[__m512i; NV]; MR], out: TapsOut<'_>) {
    match out {
        TapsOut::Acc(acc) => {
            for (r, row) in c.iter().enumerate() {
                for (v, cv) in row.iter().enumerate() {
                    // SAFETY: 16 i32 inside the tile row (v < 4).
                    unsafe { _mm512_storeu_si512(acc[r][v * 16..].as_mut_ptr().cast(), *cv) };
                }
            }
        }
        TapsOut::Float(q) => {
            // SAFETY: forwarded contract (a `Float` target's rows and residual rows hold its
            // columns).
            unsafe { store_float(&c, q) };
        }
        TapsOut::Requant(&TileRequant {
            add,
            scale,
            zero,
            range: (lo, hi),
            out,
            ld,
            tile: (nrows, ncols),
        }) => {
            // SAFETY: 16 lanes of each parameter array (v < 4).
            let add: [__m512i; NV] = core::array::from_fn(|v| unsafe {
                _mm512_loadu_si512(add[v * 16..].as_ptr().cast())
            });
            // SAFETY: as above.
            let scale: [__m512; NV] =
                core::array::from_fn(|v| unsafe { _mm512_loadu_ps(scale[v * 16..].as_ptr()) });
            let lo = _mm512_set1_ps((lo - zero) as f32);
            let hi = _mm512_set1_ps((hi - zero) as f32);
            let zero = _mm512_set1_epi32(zero);
            for (r, row) in c.iter().enumerate() {
                if r >= nrows {
                    break;
                }
                for (v, &cv) in row.iter().enumerate() {
                    let first = v * 16;
                    if first >= ncols {
                        break;
                    }
                    let f =
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(cv, add[v])), scale[v]);
                    // Clamped before rounding (as the scalar epilogue), so the rounding is
                    // exact; the conversion rounds half to even (the default mode).
                    let f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
                    let i = _mm512_add_epi32(_mm512_cvtps_epi32(f), zero);
                    let left = ncols - first;
                    let mask: __mmask16 = if left >= 16 { 0xffff } else { (1 << left) - 1 };
                    // SAFETY: the row's `ncols` bytes at `out + r * ld` are writable (the
                    // contract); the mask keeps the store inside them.
                    unsafe {
                        _mm512_mask_cvtepi32_storeu_epi8(out.add(r * ld + first).cast(), mask, i)
                    };
                }
            }
        }
    }
}

/// Finishes a tile in float (see [`TileFloat`]).
///
/// # Safety
/// The target's rows (and the residual's) hold `tile.1 <= 16 * NV` elements each, `ld`
/// apart, for `tile.0 <= MR` rows; the CPU has AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_float<const MR: usize, const NV: usize>(
    c: &[[__m512i; NV]; MR],
    q: &TileFloat<'_>,
) {
    let (nrows, ncols) = q.tile;
    // SAFETY: 16 lanes of each parameter array (v < 4).
    let add: [__m512i; NV] =
        core::array::from_fn(|v| unsafe { _mm512_loadu_si512(q.add[v * 16..].as_ptr().cast()) });
    // SAFETY: as above.
    let scale: [__m512; NV] =
        core::array::from_fn(|v| unsafe { _mm512_loadu_ps(q.scale[v * 16..].as_ptr()) });
    // SAFETY: as above.
    let bias: [__m512; NV] =
        core::array::from_fn(|v| unsafe { _mm512_loadu_ps(q.bias[v * 16..].as_ptr()) });
    for (r, row) in c.iter().enumerate() {
        if r >= nrows {
            break;
        }
        for (v, &cv) in row.iter().enumerate() {
            let first = v * 16;
            if first >= ncols {
                break;
            }
            let left = ncols - first;
            let mask: __mmask16 = if left >= 16 { 0xffff } else { (1 << left) - 1 };
            let at = r * q.ld + first;
            let sum = _mm512_cvtepi32_ps(_mm512_add_epi32(cv, add[v]));
            let mut y = _mm512_add_ps(_mm512_mul_ps(sum, scale[v]), bias[v]);
            if let Some(res) = q.residual {
                // SAFETY: the residual's row holds the tile's columns (the contract).
                y = _mm512_add_ps(y, unsafe { _mm512_maskz_loadu_ps(mask, res.add(at)) });
            }
            for &act in q.acts {
                y = crate::gemm_x86_64::activate(act, y);
            }
            match q.out {
                // SAFETY: the target's row holds the tile's columns; the mask keeps the store
                // inside them.
                FloatOut::F32(out) => unsafe { _mm512_mask_storeu_ps(out.add(at), mask, y) },
                FloatOut::U8(out, s, zero) => {
                    let t = _mm512_div_ps(y, _mm512_set1_ps(s));
                    // NaN becomes the zero point, as the scalar formula gives.
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(t, t);
                    let t = _mm512_mask_blend_ps(nan, t, _mm512_set1_ps(-(zero as f32)));
                    let t = _mm512_min_ps(
                        _mm512_max_ps(t, _mm512_set1_ps(-(zero as f32))),
                        _mm512_set1_ps((255 - zero) as f32),
                    );
                    let i = _mm512_add_epi32(_mm512_cvtps_epi32(t), _mm512_set1_epi32(zero));
                    // SAFETY: as for the f32 store.
                    unsafe { _mm512_mask_cvtepi32_storeu_epi8(out.add(at).cast(), mask, i) };
                }
            }
        }
    }
}

/// The AVX-VNNI microkernel: 6 rows by one panel (two ymm of 8 columns).
///
/// # Safety
/// As for `Isa::kernel`, on a CPU with AVX2 and AVX-VNNI.
pub(super) unsafe fn kernel_vnni256(
    rows_unsigned: bool,
    kg: usize,
    rows: Rows,
    cols: *const u8,
    acc: &mut TileAcc,
    accumulate: bool,
) {
    // SAFETY: forwarded contract.
    unsafe {
        if rows_unsigned {
            vnni256::<true>(kg, rows, cols, acc, accumulate)
        } else {
            vnni256::<false>(kg, rows, cols, acc, accumulate)
        }
    }
}

#[target_feature(enable = "avx2,avxvnni")]
unsafe fn vnni256<const ROWS_U8: bool>(
    kg: usize,
    rows: Rows,
    cols: *const u8,
    acc: &mut TileAcc,
    accumulate: bool,
) {
    const MR: usize = 6;
    let mut c = [[_mm256_setzero_si256(); 2]; MR];
    if accumulate {
        for (r, row) in c.iter_mut().enumerate() {
            for (v, cv) in row.iter_mut().enumerate() {
                // SAFETY: 8 i32 inside the tile row.
                *cv = unsafe { _mm256_loadu_si256(acc[r][v * 8..].as_ptr().cast()) };
            }
        }
    }
    for g in 0..kg {
        // SAFETY: the panel holds kg blocks of 64 bytes.
        let b = unsafe {
            [
                _mm256_loadu_si256(cols.add(g * 64).cast()),
                _mm256_loadu_si256(cols.add(g * 64 + 32).cast()),
            ]
        };
        for (r, row) in c.iter_mut().enumerate() {
            // SAFETY: group g of row r is readable (the contract).
            let a = _mm256_set1_epi32(unsafe { quad(rows.at(r, g)) });
            for (cv, &bv) in row.iter_mut().zip(&b) {
                *cv = if ROWS_U8 {
                    _mm256_dpbusd_avx_epi32(*cv, a, bv)
                } else {
                    _mm256_dpbusd_avx_epi32(*cv, bv, a)
                };
            }
        }
    }
    for (r, row) in c.iter().enumerate() {
        for (v, cv) in row.iter().enumerate() {
            // SAFETY: 8 i32 inside the tile row.
            unsafe { _mm256_storeu_si256(acc[r][v * 8..].as_mut_ptr().cast(), *cv) };
        }
    }
}

/// The AVX2 microkernel: 2 rows by one panel, 16-bit multiplies.
///
/// # Safety
/// As for `Isa::kernel`, on a CPU with AVX2.
pub(super) unsafe fn kernel_avx2(
    rows_unsigned: bool,
    kg: usize,
    rows: Rows,
    cols: *const u8,
    acc: &mut TileAcc,
    accumulate: bool,
) {
    // SAFETY: forwarded contract.
    unsafe {
        if rows_unsigned {
            avx2::<true>(kg, rows, cols, acc, accumulate)
        } else {
            avx2::<false>(kg, rows, cols, acc, accumulate)
        }
    }
}

/// Sixteen bytes widened to 16-bit lanes, zero- or sign-extended.
#[inline]
#[target_feature(enable = "avx2")]
fn widen(v: __m128i, unsigned: bool) -> __m256i {
    if unsigned {
        _mm256_cvtepu8_epi16(v)
    } else {
        _mm256_cvtepi8_epi16(v)
    }
}

#[target_feature(enable = "avx2")]
unsafe fn avx2<const ROWS_U8: bool>(
    kg: usize,
    rows: Rows,
    cols: *const u8,
    acc: &mut TileAcc,
    accumulate: bool,
) {
    const MR: usize = 2;
    // Lane pair (2j, 2j + 1) of quarter q holds two partial sums of column 4q + j.
    let mut c = [[_mm256_setzero_si256(); 4]; MR];
    for g in 0..kg {
        let mut b = [_mm256_setzero_si256(); 4];
        for (q, bq) in b.iter_mut().enumerate() {
            // SAFETY: the panel holds kg blocks of 64 bytes.
            let raw = unsafe { _mm_loadu_si128(cols.add(g * 64 + q * 16).cast()) };
            *bq = widen(raw, !ROWS_U8);
        }
        for (r, row) in c.iter_mut().enumerate() {
            // SAFETY: group g of row r is readable (the contract).
            let a = widen(_mm_set1_epi32(unsafe { quad(rows.at(r, g)) }), ROWS_U8);
            for (cq, &bq) in row.iter_mut().zip(&b) {
                *cq = _mm256_add_epi32(*cq, _mm256_madd_epi16(a, bq));
            }
        }
    }
    for (r, row) in c.iter().enumerate() {
        let mut lanes = [0i32; 32];
        for (q, cq) in row.iter().enumerate() {
            // SAFETY: 8 i32 inside `lanes`.
            unsafe { _mm256_storeu_si256(lanes[q * 8..].as_mut_ptr().cast(), *cq) };
        }
        for col in 0..PANEL {
            let sum = lanes[2 * col].wrapping_add(lanes[2 * col + 1]);
            acc[r][col] = if accumulate {
                acc[r][col].wrapping_add(sum)
            } else {
                sum
            };
        }
    }
}

/// One `u8` row times `np` (1 to 4) packed panels of `kg` depth groups, `stride` bytes apart,
/// with AVX-512 VNNI: `out[16 p + c]` is the row's dot product with column `c` of panel `p`.
/// The matrix-vector product of single rows (a recurrent layer's step at batch 1), where the
/// 8-row tile of [`kernel_vnni512`] would compute seven rows of padding.
///
/// # Safety
/// `row` is readable for `4 * kg` bytes and `cols + p * stride` for `64 * kg` bytes for every
/// `p < np`; `np <= 4`; the CPU has AVX-512F, AVX-512BW and AVX-512 VNNI.
pub(super) unsafe fn gemv_vnni512(
    kg: usize,
    row: *const u8,
    cols: *const u8,
    stride: usize,
    np: usize,
    out: &mut [i32; 64],
) {
    // SAFETY: forwarded contract.
    unsafe {
        match np {
            0 | 1 => gemv512::<1>(kg, row, cols, stride, out),
            2 => gemv512::<2>(kg, row, cols, stride, out),
            3 => gemv512::<3>(kg, row, cols, stride, out),
            _ => gemv512::<4>(kg, row, cols, stride, out),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemv512<const NV: usize>(
    kg: usize,
    row: *const u8,
    cols: *const u8,
    stride: usize,
    out: &mut [i32; 64],
) {
    // Even and odd groups accumulate apart: twice the independent dependency chains.
    let mut c = [[_mm512_setzero_si512(); NV]; 2];
    for g in 0..kg {
        // SAFETY: group g of the row is readable (the contract).
        let a = _mm512_set1_epi32(unsafe { quad(row.add(4 * g)) });
        for (v, cv) in c[g % 2].iter_mut().enumerate() {
            // SAFETY: panel v holds kg blocks of 64 bytes (the contract).
            let b = unsafe { _mm512_loadu_si512(cols.add(v * stride + g * 64).cast()) };
            *cv = _mm512_dpbusd_epi32(*cv, a, b);
        }
    }
    for v in 0..NV {
        let sum = _mm512_add_epi32(c[0][v], c[1][v]);
        // SAFETY: 16 i32 inside `out` (v < 4).
        unsafe { _mm512_storeu_si512(out[v * 16..].as_mut_ptr().cast(), sum) };
    }
}

/// [`gemv_vnni512`] with AVX-VNNI on ymm (each panel two halves of 8 columns), for the 6-row
/// tile of [`kernel_vnni256`].
///
/// # Safety
/// As for [`gemv_vnni512`], on a CPU with AVX2 and AVX-VNNI.
pub(super) unsafe fn gemv_vnni256(
    kg: usize,
    row: *const u8,
    cols: *const u8,
    stride: usize,
    np: usize,
    out: &mut [i32; 64],
) {
    // SAFETY: forwarded contract.
    unsafe {
        match np {
            0 | 1 => gemv256::<1>(kg, row, cols, stride, out),
            2 => gemv256::<2>(kg, row, cols, stride, out),
            3 => gemv256::<3>(kg, row, cols, stride, out),
            _ => gemv256::<4>(kg, row, cols, stride, out),
        }
    }
}

#[target_feature(enable = "avx2,avxvnni")]
unsafe fn gemv256<const NV: usize>(
    kg: usize,
    row: *const u8,
    cols: *const u8,
    stride: usize,
    out: &mut [i32; 64],
) {
    let mut c = [[_mm256_setzero_si256(); 2]; NV];
    for g in 0..kg {
        // SAFETY: group g of the row is readable (the contract).
        let a = _mm256_set1_epi32(unsafe { quad(row.add(4 * g)) });
        for (v, cv) in c.iter_mut().enumerate() {
            for (half, ch) in cv.iter_mut().enumerate() {
                // SAFETY: panel v holds kg blocks of 64 bytes (the contract).
                let b =
                    unsafe { _mm256_loadu_si256(cols.add(v * stride + g * 64 + half * 32).cast()) };
                *ch = _mm256_dpbusd_avx_epi32(*ch, a, b);
            }
        }
    }
    for (v, cv) in c.iter().enumerate() {
        for (half, ch) in cv.iter().enumerate() {
            // SAFETY: 8 i32 inside `out` (v < 4).
            unsafe { _mm256_storeu_si256(out[v * 16 + half * 8..].as_mut_ptr().cast(), *ch) };
        }
    }
}
