//! The AVX-512 depthwise convolution kernel: one 2-D plane read in place, four output rows
//! at a time, each 16 pixels a vector accumulated over all taps in registers, with the bias,
//! residual and register activations applied before the store. Taps that fall in the
//! padding are masked out of the loads (rows entirely outside the input are skipped), so the
//! input is never copied.

use core::arch::x86_64::*;

use crate::gemm_x86_64::activate;
use crate::rnn::Activation;

/// Most taps (`kh * kw`) the kernel keeps as broadcast vectors.
pub(crate) const MAX_TAPS: usize = 25;

/// Output rows computed together: independent accumulator chains that hide the FMA latency.
const ROWS: usize = 4;

/// The geometry of one plane for [`plane`].
#[derive(Clone, Copy)]
pub(crate) struct Plane {
    /// Input rows and columns.
    pub ih: usize,
    pub iw: usize,
    /// Output rows and columns.
    pub oh: usize,
    pub ow: usize,
    /// Kernel rows and columns (`kh * kw <= MAX_TAPS`).
    pub kh: usize,
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Padding before the rows and before the columns.
    pub ph: usize,
    pub pw: usize,
}

/// The lanes `j < width` of a load starting at input column `c0` that land inside a row of
/// `iw` columns: `0 <= c0 + j < iw`.
#[inline(always)]
fn inside(c0: isize, iw: usize, width: usize) -> u32 {
    let lo = (-c0).clamp(0, width as isize) as u32;
    let hi = (iw as isize - c0).clamp(0, width as isize) as u32;
    if hi <= lo {
        0
    } else {
        (((1u64 << hi) - 1) & !((1u64 << lo) - 1)) as u32
    }
}

/// One depthwise plane: `out[y][x] = bias + sum w[ky][kx] * x[y * sh + ky - ph][x * SW + kx - pw]`
/// (zero outside the input), plus `residual[y][x]`, then `acts` (each one
/// [`crate::gemm::Finish::in_register`] accepts).
///
/// # Safety
/// The CPU supports AVX-512F; `src` holds `ih * iw` floats, `w` `kh * kw <= MAX_TAPS` taps,
/// `out` and `residual` `oh * ow` floats.
#[allow(clippy::too_many_arguments, reason = "a plane's operands and epilogue")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn plane<const SW: usize>(
    geometry: Plane,
    src: &[f32],
    w: &[f32],
    bias: f32,
    residual: Option<&[f32]>,
    acts: &[Activation],
    out: &mut [f32],
) {
    let Plane {
        ih,
        iw,
        oh,
        ow,
        kh,
        kw,
        sh,
        ph,
        pw,
    } = geometry;
    let taps = kh * kw;
    debug_assert!(taps <= MAX_TAPS && src.len() >= ih * iw && w.len() >= taps);
    debug_assert!(out.len() >= oh * ow && residual.is_none_or(|r| r.len() >= oh * ow));
    let mut wv = [_mm512_setzero_ps(); MAX_TAPS];
    for (v, &t) in wv.iter_mut().zip(&w[..taps]) {
        *v = _mm512_set1_ps(t);
    }
    // Even lanes of two vectors: horizontal stride 2.
    let evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let base = src.as_ptr();
    let bias_v = _mm512_set1_ps(bias);
    let mut y = 0;
    while y < oh {
        let rows = ROWS.min(oh - y);
        let mut x = 0;
        while x < ow {
            let store: __mmask16 = if ow - x >= 16 {
                0xffff
            } else {
                ((1u32 << (ow - x)) - 1) as __mmask16
            };
            let mut acc = [bias_v; ROWS];
            for kx in 0..kw {
                // Input column of lane 0, and the lanes (of 16 * SW loaded) inside the row.
                let c0 = (x * SW + kx) as isize - pw as isize;
                let lanes = inside(c0, iw, 16 * SW);
                let (lo, hi) = (lanes as __mmask16, (lanes >> 16) as __mmask16);
                for ky in 0..kh {
                    let wt = wv[ky * kw + kx];
                    for (r, a) in acc.iter_mut().enumerate().take(rows) {
                        let iy = ((y + r) * sh + ky).wrapping_sub(ph);
                        if iy >= ih {
                            continue;
                        }
                        let at = base.wrapping_add(iy * iw).wrapping_offset(c0);
                        // SAFETY: the masks enable only lanes at columns 0..iw of row iy < ih,
                        // inside `src`; masked-off lanes are not accessed.
                        let v = unsafe {
                            if SW == 1 {
                                _mm512_maskz_loadu_ps(lo, at)
                            } else {
                                let l = _mm512_maskz_loadu_ps(lo, at);
                                let h = _mm512_maskz_loadu_ps(hi, at.wrapping_add(16));
                                _mm512_permutex2var_ps(l, evens, h)
                            }
                        };
                        *a = _mm512_fmadd_ps(wt, v, *a);
                    }
                }
            }
            for (r, &a) in acc.iter().enumerate().take(rows) {
                let at = (y + r) * ow + x;
                let mut v = a;
                // SAFETY: pixel (y + r, x) and the lanes of `store` after it are inside the
                // plane (`out` and the residual hold oh * ow floats).
                unsafe {
                    if let Some(residual) = residual {
                        v = _mm512_add_ps(
                            v,
                            _mm512_maskz_loadu_ps(store, residual.as_ptr().add(at)),
                        );
                    }
                    for &act in acts {
                        v = activate(act, v);
                    }
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(at), store, v);
                }
            }
            x += 16;
        }
        y += rows;
    }
}
