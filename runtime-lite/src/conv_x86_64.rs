//! AVX-512 convolution and pooling kernels that read the input where it lies, with the taps
//! that fall in the padding masked out of the loads, so that the input is never copied or
//! packed:
//!
//! - [`plane`], depthwise: one 2-D plane, four output rows at a time, each 16 pixels a
//!   vector accumulated over all taps in registers;
//! - [`max_plane`] and [`average_plane`], pooling, the same way;
//! - [`direct_tile`], dense: an 8-channel block of output rows (the pre-packed weight panel
//!   broadcast one step of depth at a time) times up to three 16-pixel vectors of output,
//!   the im2col matrix's rows loaded straight from the input.
//!
//! Both apply the bias, residual and register activations before the store.

use core::arch::x86_64::*;

use crate::conv_nhwc::{tile_pixels, TILE_PIXELS};
use crate::epilogue::Activation;
use crate::gemm::Finish;
use crate::gemm_x86_64::{
    activate, activate_tile, activate_vectors, has_math, lanes, store_vector, unroll,
};

/// Most taps (`kh * kw`) the kernel keeps as broadcast vectors.
pub(crate) const MAX_TAPS: usize = 25;

/// Output rows computed together: independent accumulator chains that hide the FMA latency.
const ROWS: usize = 4;

/// The geometry of one 2-D plane of a convolution, for [`plane`] and [`direct_tile`].
#[derive(Clone, Copy)]
pub(crate) struct Plane {
    /// Input rows and columns.
    pub ih: usize,
    pub iw: usize,
    /// Output rows and columns.
    pub oh: usize,
    pub ow: usize,
    /// Kernel rows and columns (for [`plane`], `kh * kw <= MAX_TAPS`; for [`direct_tile`],
    /// `kw <= MAX_KW`).
    pub kh: usize,
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Padding before the rows and before the columns.
    pub ph: usize,
    pub pw: usize,
}

impl Plane {
    /// The 2-D geometry of a 3-D-shaped convolution or pooling (arrays as in
    /// [`crate::conv::ConvParams`]), and its horizontal stride: if the CPU has AVX-512F and the
    /// sweep is 2-D, without dilation, with horizontal stride 1 or 2 and a non-empty window
    /// and output.
    pub(crate) fn from_3d(
        input: [usize; 3],
        output: [usize; 3],
        kernel: [usize; 3],
        strides: [usize; 3],
        dilations: [usize; 3],
        pads: [usize; 3],
    ) -> Option<(Self, usize)> {
        let [id, ih, iw] = input;
        let [od, oh, ow] = output;
        let [kd, kh, kw] = kernel;
        let [_, sh, sw] = strides;
        let [_, ph, pw] = pads;
        let suits = crate::gemm_x86_64::has_avx512()
            && (id, od, kd) == (1, 1, 1)
            && dilations[1..] == [1, 1]
            && (sw == 1 || sw == 2)
            && kh * kw > 0
            && oh * ow > 0;
        let geometry = Plane {
            ih,
            iw,
            oh,
            ow,
            kh,
            kw,
            sh,
            ph,
            pw,
        };
        suits.then_some((geometry, sw))
    }
}

/// The lanes `j < width` of a load starting at input column `c0` that land inside a row of
/// `iw` columns: `0 <= c0 + j < iw`.
#[inline(always)]
pub(crate) fn inside(c0: isize, iw: usize, width: usize) -> u32 {
    let lo = (-c0).clamp(0, width as isize) as u32;
    let hi = (iw as isize - c0).clamp(0, width as isize) as u32;
    if hi <= lo {
        0
    } else {
        (((1u64 << hi) - 1) & !((1u64 << lo) - 1)) as u32
    }
}

/// What a [`sweep`] computes over each window: the accumulator's start, the value a tap in
/// the padding loads as, how a tap's 16 pixels join the accumulator, and what happens to a
/// finished vector before it is stored.
trait Window {
    /// The accumulator before the first tap.
    fn start(&self) -> __m512;
    /// What a lane in the padding loads as.
    fn padding(&self) -> __m512;
    /// The accumulator after tap `tap` (`ky * kw + kx`) with input pixels `v`.
    fn tap(&self, acc: __m512, v: __m512, tap: usize) -> __m512;
    /// The vector of output pixels `at..at + 16` (the lanes of `mask` in the plane) to store.
    ///
    /// # Safety
    /// The lanes of `mask` from pixel `at` are inside the output plane.
    unsafe fn finish(&self, acc: __m512, at: usize, mask: __mmask16) -> __m512;
}

/// Depthwise convolution: taps weighted, then bias (the start), residual and activations.
struct Depthwise<'a> {
    weights: [__m512; MAX_TAPS],
    bias: __m512,
    residual: Option<&'a [f32]>,
    acts: &'a [Activation],
}

impl Window for Depthwise<'_> {
    #[inline(always)]
    fn start(&self) -> __m512 {
        self.bias
    }
    #[inline(always)]
    fn padding(&self) -> __m512 {
        // SAFETY: only ever called from `sweep`, which runs with AVX-512F.
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    fn tap(&self, acc: __m512, v: __m512, tap: usize) -> __m512 {
        // SAFETY: as above.
        unsafe { _mm512_fmadd_ps(self.weights[tap], v, acc) }
    }
    #[inline(always)]
    unsafe fn finish(&self, acc: __m512, at: usize, mask: __mmask16) -> __m512 {
        let mut v = acc;
        // SAFETY: AVX-512F (as above); the residual holds the plane (the contract of
        // `plane`), whose lanes of `mask` from `at` the caller guarantees.
        unsafe {
            if let Some(residual) = self.residual {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, residual.as_ptr().add(at)));
            }
            for &act in self.acts {
                v = activate(act, v);
            }
        }
        v
    }
}

/// Max pooling: NaN if any tap is NaN (as the scalar form), -inf in the padding.
struct MaxWindow;

impl Window for MaxWindow {
    #[inline(always)]
    fn start(&self) -> __m512 {
        self.padding()
    }
    #[inline(always)]
    fn padding(&self) -> __m512 {
        // SAFETY: only ever called from `sweep`, which runs with AVX-512F.
        unsafe { _mm512_set1_ps(f32::NEG_INFINITY) }
    }
    #[inline(always)]
    fn tap(&self, acc: __m512, v: __m512, _tap: usize) -> __m512 {
        // MAXPS(v, acc) is `v > acc ? v : acc`: it keeps a NaN already in `acc`; a NaN in
        // `v` is taken explicitly.
        // SAFETY: as above.
        unsafe {
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            _mm512_mask_mov_ps(_mm512_max_ps(v, acc), nan, v)
        }
    }
    #[inline(always)]
    unsafe fn finish(&self, acc: __m512, _at: usize, _mask: __mmask16) -> __m512 {
        acc
    }
}

/// One plane swept by `window`: `out[y][x]` from the taps `x[y * sh + ky - ph][x * SW + kx -
/// pw]` (the padding loading as `window.padding()`), four output rows of 16-pixel vectors at
/// a time (independent accumulators that hide the latency of each step).
///
/// # Safety
/// The CPU supports AVX-512F; `src` holds `ih * iw` floats, `out` `oh * ow`, and `window`'s
/// own operands cover the plane.
#[target_feature(enable = "avx512f")]
unsafe fn sweep<const SW: usize, W: Window>(
    geometry: Plane,
    src: &[f32],
    window: &W,
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
    debug_assert!(src.len() >= ih * iw && out.len() >= oh * ow);
    let padding = window.padding();
    let base = src.as_ptr();
    let mut y = 0;
    while y < oh {
        let rows = ROWS.min(oh - y);
        let mut x = 0;
        while x < ow {
            let store = lanes(ow - x);
            let mut acc = [window.start(); ROWS];
            for kx in 0..kw {
                // Input column of lane 0, and the lanes (of 16 * SW loaded) inside the row.
                let c0 = (x * SW + kx) as isize - pw as isize;
                let masks = row_masks::<SW>(c0, iw);
                for ky in 0..kh {
                    for (r, a) in acc.iter_mut().enumerate().take(rows) {
                        let iy = ((y + r) * sh + ky).wrapping_sub(ph);
                        if iy >= ih {
                            continue;
                        }
                        let at = base.wrapping_add(iy * iw).wrapping_offset(c0);
                        // SAFETY: the masks enable only lanes at columns 0..iw of row iy < ih,
                        // inside `src`; masked-off lanes are not accessed.
                        let v = unsafe { load_taps::<SW>(at, masks, padding) };
                        *a = window.tap(*a, v, ky * kw + kx);
                    }
                }
            }
            for (r, &a) in acc.iter().enumerate().take(rows) {
                let at = (y + r) * ow + x;
                // SAFETY: pixel (y + r, x) and the lanes of `store` after it are inside the
                // plane.
                unsafe {
                    let v = window.finish(a, at, store);
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(at), store, v);
                }
            }
            x += 16;
        }
        y += rows;
    }
}

/// Average pooling: the sum of the taps inside the input, divided per output pixel.
struct AverageWindow<'a> {
    divisors: &'a [f32],
}

impl Window for AverageWindow<'_> {
    #[inline(always)]
    fn start(&self) -> __m512 {
        self.padding()
    }
    #[inline(always)]
    fn padding(&self) -> __m512 {
        // SAFETY: only ever called from `sweep`, which runs with AVX-512F.
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    fn tap(&self, acc: __m512, v: __m512, _tap: usize) -> __m512 {
        // SAFETY: as above.
        unsafe { _mm512_add_ps(acc, v) }
    }
    #[inline(always)]
    unsafe fn finish(&self, acc: __m512, at: usize, mask: __mmask16) -> __m512 {
        // SAFETY: AVX-512F (as above); `divisors` holds the plane (the contract of
        // `average_plane`), whose lanes of `mask` from `at` the caller guarantees; the other
        // lanes divide by 1 and are not stored.
        unsafe {
            let one = _mm512_set1_ps(1.0);
            let d = _mm512_mask_loadu_ps(one, mask, self.divisors.as_ptr().add(at));
            _mm512_div_ps(acc, d)
        }
    }
}

/// One plane of 2-D average pooling: the sum of each window's taps inside the input divided
/// by `divisors[y][x]` (the count the pooling kind calls for).
///
/// # Safety
/// The CPU supports AVX-512F; `src` holds `ih * iw` floats, `divisors` and `out` `oh * ow`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn average_plane<const SW: usize>(
    geometry: Plane,
    src: &[f32],
    divisors: &[f32],
    out: &mut [f32],
) {
    debug_assert!(divisors.len() >= geometry.oh * geometry.ow);
    // SAFETY: the contract, forwarded.
    unsafe { sweep::<SW, _>(geometry, src, &AverageWindow { divisors }, out) }
}

/// The masks of a load of `16 * SW` floats from input column `c0` of a row of `iw`: its
/// lanes inside the row, the first 16 and the next 16.
#[inline(always)]
fn row_masks<const SW: usize>(c0: isize, iw: usize) -> (__mmask16, __mmask16) {
    let inside = inside(c0, iw, 16 * SW);
    (inside as __mmask16, (inside >> 16) as __mmask16)
}

/// The taps of 16 output pixels at horizontal stride `SW` from `at`: the 16 floats there, or
/// the even ones of the 32 there; lanes off the masks (`row_masks`) read `padding`.
///
/// # Safety
/// The CPU supports AVX-512F; the lanes of the masks are readable floats.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_taps<const SW: usize>(
    at: *const f32,
    (lo, hi): (__mmask16, __mmask16),
    padding: __m512,
) -> __m512 {
    // SAFETY: only the masks' lanes are accessed (the contract).
    unsafe {
        if SW == 1 {
            _mm512_mask_loadu_ps(padding, lo, at)
        } else {
            let evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
            let l = _mm512_mask_loadu_ps(padding, lo, at);
            let h = _mm512_mask_loadu_ps(padding, hi, at.wrapping_add(16));
            _mm512_permutex2var_ps(l, evens, h)
        }
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
    let (oh, ow, taps) = (geometry.oh, geometry.ow, geometry.kh * geometry.kw);
    debug_assert!(taps <= MAX_TAPS && w.len() >= taps);
    debug_assert!(residual.is_none_or(|r| r.len() >= oh * ow));
    let mut weights = [_mm512_setzero_ps(); MAX_TAPS];
    for (v, &t) in weights.iter_mut().zip(&w[..taps]) {
        *v = _mm512_set1_ps(t);
    }
    let window = Depthwise {
        weights,
        bias: _mm512_set1_ps(bias),
        residual,
        acts,
    };
    // SAFETY: the contract, forwarded.
    unsafe { sweep::<SW, _>(geometry, src, &window, out) }
}

/// Widest kernel [`direct_tile`] takes (its column masks are per kernel column).
pub(crate) const MAX_KW: usize = 8;

/// Where a [`direct_tile`] lies: output rows `y..y + R`, columns `x..x + 16 * V` (clipped to
/// the plane), depth `k0..k0 + kc` of the `C * kh * kw` im2col rows (whole channels: both
/// multiples of `kh * kw`).
#[derive(Clone, Copy)]
pub(crate) struct DirectAt {
    pub y: usize,
    pub x: usize,
    pub k0: usize,
    pub kc: usize,
}

/// One tile of a dense convolution: `R x V` vectors of 16 output pixels for each of the `mr`
/// (at most 8) output channels of a weight panel, accumulated over depth `k0..k0 + kc`, then
/// written as a GEMM tile is (`alpha` 1; added to `out` unless `overwrite`; the finish after
/// the last block of depth).
///
/// `a` is the panel's step `k0` (`kc` groups of 8 floats); `x` the group's input (`C` planes
/// of `ih * iw`); `out` the panel's first output channel, planes `oh * ow` apart (and so the
/// residual of `finish`).
///
/// # Safety
/// The CPU supports AVX-512F; `a` holds `kc * 8` floats; `x` holds every plane the depth range
/// reads; `out` (and the residual) `mr` planes of `oh * ow` floats; `finish.bias` (if any) `mr`
/// floats; `geometry.kw <= MAX_KW`.
#[allow(
    clippy::too_many_arguments,
    reason = "a tile's operands, position and epilogue"
)]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn direct_tile<const SW: usize, const R: usize, const V: usize>(
    geometry: &Plane,
    at: DirectAt,
    a: *const f32,
    x: *const f32,
    out: *mut f32,
    mr: usize,
    overwrite: bool,
    finish: Option<Finish<'_>>,
) {
    let Plane { oh, ow, .. } = *geometry;
    let DirectAt { y, x: x0, .. } = at;
    // SAFETY: the contract, forwarded.
    let acc = unsafe { direct_sums::<SW, R, V>(geometry, at, a, x) };
    let alpha = _mm512_set1_ps(1.0);
    let plane = oh * ow;
    let acts = finish.map_or(&[][..], |f| f.acts);
    let residual = finish.map_or(core::ptr::null(), |f| f.residual);
    for (i, sums) in acc.iter().enumerate().take(mr) {
        let bias = finish
            .and_then(|f| f.bias)
            .map(|bias| _mm512_set1_ps(bias[i]));
        for r in 0..R {
            for v in 0..V {
                let col = x0 + 16 * v;
                if y + r >= oh || col >= ow {
                    continue;
                }
                let mask = lanes(ow - col);
                let offset = i * plane + (y + r) * ow + col;
                // SAFETY: channel i < mr, pixel (y + r, col) and the lanes of `mask` after it
                // are inside the output (and residual) planes (the contract).
                unsafe {
                    store_vector(
                        sums[r * V + v],
                        out.add(offset),
                        mask,
                        alpha,
                        overwrite,
                        bias,
                        if residual.is_null() {
                            residual
                        } else {
                            residual.add(offset)
                        },
                        acts,
                    );
                }
            }
        }
    }
}

/// The accumulators of a [`direct_tile`]: `acc[i][r * V + v]` for channel `i`, row `r`,
/// vector `v`. A function of its own, so that nothing after the loop competes with the 24
/// accumulators for registers.
///
/// # Safety
/// As for [`direct_tile`].
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn direct_sums<const SW: usize, const R: usize, const V: usize>(
    geometry: &Plane,
    at: DirectAt,
    a: *const f32,
    x: *const f32,
) -> [[__m512; 3]; 8] {
    const MR: usize = 8;
    let Plane {
        ih,
        iw,
        oh,
        kh,
        kw,
        sh,
        ph,
        pw,
        ..
    } = *geometry;
    let in_len = ih * iw;
    let DirectAt { y, x: x0, k0, kc } = at;
    let taps = kh * kw;
    debug_assert!(k0 % taps == 0 && kc % taps == 0 && R * V <= 3 && kw <= MAX_KW);
    // Lanes inside the input row, per kernel column and vector (low and high halves of the
    // 32 floats a stride-2 vector loads).
    let mut inside_masks = [[(0 as __mmask16, 0 as __mmask16); 3]; MAX_KW];
    for (kx, masks) in inside_masks.iter_mut().enumerate().take(kw) {
        for (v, m) in masks.iter_mut().enumerate().take(V) {
            *m = row_masks::<SW>(((x0 + 16 * v) * SW + kx) as isize - pw as isize, iw);
        }
    }
    let zero = _mm512_setzero_ps();
    // acc[i][r * V + v]: channel i, row r, vector v.
    let mut acc = [[_mm512_setzero_ps(); 3]; MR];
    let mut ap = a;
    // Column of lane 0 of vector 0 for kernel column 0.
    let left = (x0 * SW) as isize - pw as isize;
    for c in k0 / taps..(k0 + kc) / taps {
        let channel = x.wrapping_add(c * in_len);
        for ky in 0..kh {
            // Each row's start, and whether it is inside the input (a row outside loads
            // nothing: all its lanes masked off).
            let mut lines = [channel; 3];
            let mut valid = [false; 3];
            for r in 0..R {
                let iy = ((y + r) * sh + ky).wrapping_sub(ph);
                valid[r] = iy < ih && y + r < oh;
                lines[r] = channel.wrapping_add(iy.wrapping_mul(iw));
            }
            for (kx, masks) in inside_masks[..kw].iter().enumerate() {
                let mut b = [_mm512_setzero_ps(); 3];
                for r in 0..R {
                    for v in 0..V {
                        let masks = if valid[r] { masks[v] } else { (0, 0) };
                        let from = lines[r].wrapping_offset(left + (16 * v * SW + kx) as isize);
                        // SAFETY: the masks enable only lanes at columns 0..iw of an input
                        // row iy < ih of channel c, inside `x` (the contract); masked-off
                        // lanes are not accessed.
                        b[r * V + v] = unsafe { load_taps::<SW>(from, masks, zero) };
                    }
                }
                for row in acc.iter_mut() {
                    // SAFETY: one of the kc steps of 8 floats at `a` (the contract).
                    let w = _mm512_set1_ps(unsafe { *ap });
                    for j in 0..R * V {
                        row[j] = _mm512_fmadd_ps(w, b[j], row[j]);
                    }
                    // SAFETY: still inside (or one past) the panel's kc steps.
                    ap = unsafe { ap.add(1) };
                }
            }
        }
    }
    acc
}

/// One plane of 2-D max pooling: `out[y][x] = max x[y * sh + ky - ph][x * SW + kx - pw]` over
/// the window's taps inside the input (NaN if any is NaN, as the scalar form; -inf for a
/// window wholly in the padding).
///
/// # Safety
/// The CPU supports AVX-512F; `src` holds `ih * iw` floats and `out` `oh * ow`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn max_plane<const SW: usize>(geometry: Plane, src: &[f32], out: &mut [f32]) {
    // SAFETY: the contract, forwarded.
    unsafe { sweep::<SW, _>(geometry, src, &MaxWindow, out) }
}

/// One tile of a channels-last dense convolution ([`crate::conv_nhwc`]): `rows` output pixels
/// (the windows at `starts`) by `width` output channels (`ceil(width / 16)` weight panels).
pub(crate) struct NhwcTile<'a> {
    /// Each pixel's window origin (rows past `rows` repeat a valid window).
    pub starts: &'a [*const f32; TILE_PIXELS],
    /// The window's runs of contiguous input: offset from the origin and length.
    pub runs: &'a [(usize, usize)],
    /// The first panel: 16 floats per step of depth.
    pub weights: *const f32,
    /// Floats between consecutive panels.
    pub stride: usize,
    /// The tile's first output, and the floats between its rows.
    pub out: *mut f32,
    pub ld: usize,
    pub rows: usize,
    pub width: usize,
    /// The tile's first bias value, and the residual at the tile's first output (same `ld`).
    pub bias: Option<*const f32>,
    pub residual: Option<*const f32>,
    /// The fused activations: applied here when all run in registers, else by the caller.
    pub acts: &'a [Activation],
    /// Weights to prefetch into L2 meanwhile, `ahead_step` floats further at each step of
    /// depth (none when `ahead_step` is 0). A hint only: never read.
    pub ahead: *const f32,
    pub ahead_step: usize,
}

/// Computes and stores the tile `t`: [`tile_pixels`] pixels (their window pointers stay in
/// registers) by `nv` (1 to 4) panels.
///
/// # Safety
/// The CPU has AVX-512F; every run of every window is readable; the panels hold the runs'
/// total depth; the tile's outputs are writable (and its residual readable) for `rows` rows
/// of `width <= 16 * nv` columns; `bias` holds `width` floats.
pub(crate) unsafe fn nhwc_tile(nv: usize, t: &NhwcTile<'_>) {
    // SAFETY: forwarded contract.
    unsafe {
        // A single row (a batch-1 product: memory-bound on the weights) computes only itself.
        match (t.rows, nv) {
            (1, 0 | 1) => nhwc_store::<1, 1>(nhwc_sums::<1, 1, false>(t), t),
            (1, 2) => nhwc_store::<1, 2>(nhwc_sums::<1, 2, false>(t), t),
            (1, 3) => nhwc_store::<1, 3>(nhwc_sums::<1, 3, false>(t), t),
            (1, _) => nhwc_store::<1, 4>(nhwc_sums::<1, 4, false>(t), t),
            (_, 0 | 1) => nhwc_store::<TILE_PIXELS, 1>(nhwc_sums::<TILE_PIXELS, 1, false>(t), t),
            (_, 2) => nhwc_store::<TILE_PIXELS, 2>(nhwc_sums::<TILE_PIXELS, 2, false>(t), t),
            (_, 3) if t.ahead_step == 0 => {
                nhwc_store::<TILE_PIXELS, 3>(nhwc_sums::<TILE_PIXELS, 3, false>(t), t)
            }
            (_, 3) => nhwc_store::<TILE_PIXELS, 3>(nhwc_sums::<TILE_PIXELS, 3, true>(t), t),
            _ if t.ahead_step == 0 => {
                const MR: usize = tile_pixels(4);
                nhwc_store::<MR, 4>(nhwc_sums::<MR, 4, false>(t), t)
            }
            _ => {
                const MR: usize = tile_pixels(4);
                nhwc_store::<MR, 4>(nhwc_sums::<MR, 4, true>(t), t)
            }
        }
    }
}

/// The loop of [`nhwc_sums`] (`$mr` rows by `$nv` panels of the tile `$t`, prefetching when
/// `$ahead`), expanded where it runs: in [`nhwc_sums`], apart from the epilogue, and inside
/// [`nhwc_block_of`]'s loop over tiles.
macro_rules! nhwc_sums_loop {
    ($t:expr, $mr:expr, $nv:expr, $ahead:expr) => {{
        let mut acc = [[_mm512_setzero_ps(); $nv]; $mr];
        let mut wp = $t.weights;
        let mut ahead = $t.ahead;
        for &(at, len) in $t.runs {
            let mut rows = [core::ptr::null::<f32>(); $mr];
            for (r, row) in rows.iter_mut().enumerate() {
                *row = $t.starts[r].wrapping_add(at);
            }
            for j in 0..len {
                let mut b = [_mm512_setzero_ps(); $nv];
                for (v, bv) in b.iter_mut().enumerate() {
                    // SAFETY: one step of depth of panel v (the contract).
                    *bv = unsafe { _mm512_loadu_ps(wp.add(v * $t.stride)) };
                }
                for (r, sums) in acc.iter_mut().enumerate() {
                    // SAFETY: float j of a run of row r's window (the contract).
                    let a = _mm512_set1_ps(unsafe { *rows[r].add(j) });
                    for (s, &bv) in sums.iter_mut().zip(&b) {
                        *s = _mm512_fmadd_ps(a, bv, *s);
                    }
                }
                if $ahead {
                    // A hint: no access happens, so any address is sound.
                    _mm_prefetch::<_MM_HINT_T1>(ahead.cast::<i8>());
                    ahead = ahead.wrapping_add($t.ahead_step);
                }
                // SAFETY: the next step of depth (one past the panel's end after the last).
                wp = unsafe { wp.add(16) };
            }
        }
        acc
    }};
}

/// The sums of an [`nhwc_tile`]: per step of depth, `NV` panel loads and `MR` broadcasts. A
/// function of its own, so that nothing after the loop competes for registers.
///
/// # Safety
/// As for [`nhwc_tile`].
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn nhwc_sums<const MR: usize, const NV: usize, const AHEAD: bool>(
    t: &NhwcTile<'_>,
) -> [[__m512; NV]; MR] {
    nhwc_sums_loop!(t, MR, NV, AHEAD)
}

/// A block of [`nhwc_tile`]s over the same panels: rows `0..origins.len()`, row `r` reading its
/// window at `src + origins[r]` and writing `out + r * ld`, [`tile_pixels`] at a time in one
/// loop (a layer of little depth spends as long on each tile's call and hand-over as on its
/// sums).
pub(crate) struct NhwcBlock<'a> {
    pub src: *const f32,
    pub origins: &'a [usize],
    pub runs: &'a [(usize, usize)],
    pub weights: *const f32,
    pub stride: usize,
    pub out: *mut f32,
    pub ld: usize,
    pub width: usize,
    pub bias: Option<*const f32>,
    /// The residual at the block's first output (same `ld`).
    pub residual: Option<*const f32>,
    pub acts: &'a [Activation],
    /// Tile `t` prefetches `per_tile` floats from `ahead + t * per_tile`, `ahead_step` more at
    /// each step of depth (none when `ahead_step` is 0).
    pub ahead: *const f32,
    pub per_tile: usize,
    pub ahead_step: usize,
}

/// Computes and stores the block `b` by `nv` (1 to 4) panels.
///
/// # Safety
/// As for [`nhwc_tile`], for every tile of the block.
pub(crate) unsafe fn nhwc_block(nv: usize, b: &NhwcBlock<'_>) {
    // SAFETY: forwarded contract.
    unsafe {
        match nv {
            0 | 1 => nhwc_block_of::<TILE_PIXELS, 1, false>(b),
            2 => nhwc_block_of::<TILE_PIXELS, 2, false>(b),
            3 if b.ahead_step == 0 => nhwc_block_of::<TILE_PIXELS, 3, false>(b),
            3 => nhwc_block_of::<TILE_PIXELS, 3, true>(b),
            _ if b.ahead_step == 0 => nhwc_block_of::<{ tile_pixels(4) }, 4, false>(b),
            _ => nhwc_block_of::<{ tile_pixels(4) }, 4, true>(b),
        }
    }
}

/// [`nhwc_block`] for `NV` panels.
///
/// # Safety
/// As for [`nhwc_block`].
#[target_feature(enable = "avx512f")]
unsafe fn nhwc_block_of<const MR: usize, const NV: usize, const AHEAD: bool>(b: &NhwcBlock<'_>) {
    debug_assert_eq!(MR, tile_pixels(NV));
    let n = b.origins.len();
    let mut r0 = 0;
    while r0 < n {
        let rows = MR.min(n - r0);
        let mut starts = [b.src; TILE_PIXELS];
        for (r, s) in starts.iter_mut().enumerate() {
            // Rows past the block repeat its last pixel (never stored).
            *s = b.src.wrapping_add(b.origins[r0 + r.min(rows - 1)]);
        }
        let t = NhwcTile {
            starts: &starts,
            runs: b.runs,
            weights: b.weights,
            stride: b.stride,
            out: b.out.wrapping_add(r0 * b.ld),
            ld: b.ld,
            rows,
            width: b.width,
            bias: b.bias,
            residual: b.residual.map(|p| p.wrapping_add(r0 * b.ld)),
            acts: b.acts,
            ahead: b.ahead.wrapping_add(r0 / MR * b.per_tile),
            ahead_step: b.ahead_step,
        };
        // The loop's reads are inside the windows and panels (the contract, for this tile).
        let acc = nhwc_sums_loop!(&t, MR, NV, AHEAD);
        // SAFETY: the contract, for this tile.
        unsafe { nhwc_store::<MR, NV>(acc, &t) };
        r0 += MR;
    }
}

/// Stores the sums of an [`nhwc_tile`] with its epilogue: bias, residual and the in-register
/// activations (each dispatched once per row) over constant indices, so that the sums stay
/// in registers, then the stores.
///
/// # Safety
/// As for [`nhwc_tile`].
#[target_feature(enable = "avx512f")]
unsafe fn nhwc_store<const MR: usize, const NV: usize>(
    mut acc: [[__m512; NV]; MR],
    t: &NhwcTile<'_>,
) {
    let masks: [__mmask16; NV] = core::array::from_fn(|v| lanes(t.width.saturating_sub(16 * v)));
    for (v, &mask) in masks.iter().enumerate() {
        if mask == 0 {
            continue;
        }
        if let Some(b) = t.bias {
            // SAFETY: the bias holds `width` floats (the contract).
            let b = unsafe { _mm512_maskz_loadu_ps(mask, b.add(16 * v)) };
            unroll!(r in [0, 1, 2, 3, 4, 5, 6, 7] {
                if r < MR {
                    acc[r][v] = _mm512_add_ps(acc[r][v], b);
                }
            });
        }
        if let Some(res) = t.residual {
            unroll!(r in [0, 1, 2, 3, 4, 5, 6, 7] {
                if r < MR && r < t.rows {
                    // SAFETY: row r < rows, the lanes of `mask` inside the tile (the contract).
                    let x = unsafe { _mm512_maskz_loadu_ps(mask, res.add(r * t.ld + 16 * v)) };
                    acc[r][v] = _mm512_add_ps(acc[r][v], x);
                }
            });
        }
    }
    if t.acts.iter().all(Finish::in_register) {
        if has_math(t.acts) {
            // Through a copy: `acc` itself never has its address taken, so that it stays in
            // registers on the other paths.
            let mut vectors = acc;
            activate_vectors(t.acts, vectors.as_flattened_mut());
            acc = vectors;
        } else {
            for &act in t.acts {
                unroll!(r in [0, 1, 2, 3, 4, 5, 6, 7] {
                    if r < MR {
                        activate_tile!(act, acc[r]);
                    }
                });
            }
        }
    }
    for (v, &mask) in masks.iter().enumerate() {
        if mask == 0 {
            continue;
        }
        unroll!(r in [0, 1, 2, 3, 4, 5, 6, 7] {
            if r < MR && r < t.rows {
                // SAFETY: row r < rows, the lanes of `mask` inside the tile (the contract).
                unsafe {
                    let at = t.out.add(r * t.ld + 16 * v);
                    if mask == 0xffff {
                        _mm512_storeu_ps(at, acc[r][v]);
                    } else {
                        _mm512_mask_storeu_ps(at, mask, acc[r][v]);
                    }
                }
            }
        });
    }
}

/// Computes `count` consecutive output pixels of one channels-last depthwise row into `dst`
/// (`count * c` floats, the first pixel's first channel first), in tiles of pixels by up to
/// 64 channels, with the epilogue.
///
/// # Safety
/// The CPU has AVX-512F; the taps of `run` lie inside its input for these pixels; its
/// weights hold `cp` floats per tap.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn depthwise_nhwc_run(
    run: &crate::conv_nhwc::DwRun<'_>,
    count: usize,
    dst: &mut [f32],
) {
    let c = run.c;
    let mut c0 = 0;
    while c0 < c {
        let nv = (c - c0).div_ceil(16).min(4);
        let mut i0 = 0;
        while i0 < count {
            // Tiles of up to 16-24 accumulators; one or two pixels left (a row's border
            // pixels, whose taps are clipped) take tiles of their size.
            let left = count - i0;
            // SAFETY: forwarded contract; pixels i0.. and channels c0.. are inside `dst`.
            let done = unsafe {
                match (nv, left) {
                    (1, 1) => dw_nhwc_tile::<1, 1>(run, i0, left, c0, dst),
                    (1, 2..=3) => dw_nhwc_tile::<2, 1>(run, i0, left, c0, dst),
                    (1, _) => dw_nhwc_tile::<8, 1>(run, i0, left, c0, dst),
                    (2, 1) => dw_nhwc_tile::<1, 2>(run, i0, left, c0, dst),
                    (2, 2..=3) => dw_nhwc_tile::<2, 2>(run, i0, left, c0, dst),
                    (2, _) => dw_nhwc_tile::<6, 2>(run, i0, left, c0, dst),
                    (3, 1) => dw_nhwc_tile::<1, 3>(run, i0, left, c0, dst),
                    (3, 2..=3) => dw_nhwc_tile::<2, 3>(run, i0, left, c0, dst),
                    (3, _) => dw_nhwc_tile::<4, 3>(run, i0, left, c0, dst),
                    (_, 1) => dw_nhwc_tile::<1, 4>(run, i0, left, c0, dst),
                    (_, 2..=3) => dw_nhwc_tile::<2, 4>(run, i0, left, c0, dst),
                    _ => dw_nhwc_tile::<4, 4>(run, i0, left, c0, dst),
                }
            };
            i0 += done;
        }
        c0 += 64;
    }
    if !Finish::in_store(run.acts()) {
        Activation::apply_chain(run.acts(), &mut dst[..count * c]);
    }
}

/// Up to `P` pixels from `i0` (at most `left`) by `NV` vectors of channels from `c0`; returns
/// the pixels done.
///
/// # Safety
/// As for [`depthwise_nhwc_run`].
#[target_feature(enable = "avx512f")]
unsafe fn dw_nhwc_tile<const P: usize, const NV: usize>(
    run: &crate::conv_nhwc::DwRun<'_>,
    i0: usize,
    left: usize,
    c0: usize,
    dst: &mut [f32],
) -> usize {
    let (c, cp) = (run.c, run.cp);
    let np = P.min(left);
    let masks = dw_masks::<NV>(c, c0);
    let x = run.x.as_ptr();
    let w = run.w().as_ptr();
    let base = run.first_col * c + c0;
    let mut acc = [[_mm512_setzero_ps(); NV]; P];
    for &(line, w_row) in run.rows {
        for kx in run.kx.0..run.kx.1 {
            let mut wv = [_mm512_setzero_ps(); NV];
            for (v, wv) in wv.iter_mut().enumerate() {
                // SAFETY: tap (w_row + kx) holds `cp > c0 + 16 v` floats (the contract).
                *wv = unsafe { _mm512_loadu_ps(w.add((w_row + kx) * cp + c0 + 16 * v)) };
            }
            let at = line + base + (kx - run.kx.0) * run.tap_step;
            for (p, sums) in acc.iter_mut().enumerate() {
                // Pixels past `np` repeat the last one (never stored).
                let src = x.wrapping_add(at + (i0 + p.min(np - 1)) * run.col_step);
                for (v, s) in sums.iter_mut().enumerate() {
                    // SAFETY: the tap's channels c0 + 16 v.. (masked to c) lie inside the
                    // input (the contract).
                    let xv = unsafe { _mm512_maskz_loadu_ps(masks[v], src.add(16 * v)) };
                    *s = _mm512_fmadd_ps(xv, wv[v], *s);
                }
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { dw_store(run, (i0, np, c0), &masks, &acc, dst) };
    np
}

/// The channel masks of `NV` vectors of channels from `c0` (below `c`).
#[target_feature(enable = "avx512f")]
fn dw_masks<const NV: usize>(c: usize, c0: usize) -> [__mmask16; NV] {
    core::array::from_fn(|v| lanes((c - c0).saturating_sub(16 * v)))
}

/// Stores the first `np` pixels of a depthwise tile (pixels from `i0`, channels from `c0`):
/// bias, residual and the in-register activations, then the masked stores.
///
/// # Safety
/// As for [`depthwise_nhwc_run`]; pixels `i0..i0 + np` are inside `dst`.
#[target_feature(enable = "avx512f")]
unsafe fn dw_store<const P: usize, const NV: usize>(
    run: &crate::conv_nhwc::DwRun<'_>,
    (i0, np, c0): (usize, usize, usize),
    masks: &[__mmask16; NV],
    acc: &[[__m512; NV]; P],
    dst: &mut [f32],
) {
    let c = run.c;
    let acts = if Finish::in_store(run.acts()) {
        run.acts()
    } else {
        &[]
    };
    let one = _mm512_set1_ps(1.0);
    let out = dst.as_mut_ptr();
    for (v, &mask) in masks.iter().enumerate() {
        let ch = c0 + 16 * v;
        // SAFETY: the bias holds `c` floats; the lanes of `mask` are below `c`.
        let bias = run
            .bias()
            .map(|b| unsafe { _mm512_maskz_loadu_ps(mask, b.as_ptr().add(ch)) });
        for (p, sums) in acc.iter().enumerate().take(np) {
            let at = (i0 + p) * c + ch;
            let residual = run
                .residual()
                .map_or(core::ptr::null(), |r| r[run.out_at + at..].as_ptr());
            // SAFETY: pixel i0 + p < count and channels ch.. masked to c are inside `dst`.
            unsafe { store_vector(sums[v], out.add(at), mask, one, true, bias, residual, acts) };
        }
    }
}

/// One whole output row of a depthwise layer with `K` kernel columns, stride `S` and unit
/// dilation, 16 channels from `c0` (the in-register activations applied; the caller applies
/// the others): tiles of up to 16 pixels on a sliding window (each input column loaded once
/// per kernel row and multiplied with every tap it serves), the taps that fall in the padding
/// masked out of the loads, so the border pixels need no separate pass.
///
/// # Safety
/// The CPU has AVX-512F; the offsets of `row.rows` are input rows of `row.iw` pixels of `c`
/// floats inside the input; the weights hold `cp` floats per tap; `dst` points at the row's
/// `ow * c` floats, valid for writes, and nothing else reads or writes channels
/// `c0..c0 + 16` of them meanwhile (other threads may write the row's other channels).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn depthwise_nhwc_row<const K: usize, const S: usize>(
    row: &crate::conv_nhwc::DwRow<'_>,
    c0: usize,
    dst: *mut f32,
) {
    let c = row.c;
    assert!(row.iw > 0 && c0 < c);
    let mask = lanes(c - c0);
    // Pixels [lo, hi) read only columns inside the input.
    let lo = row.pw.div_ceil(S).min(row.ow);
    let hi = if row.iw + row.pw >= K {
        ((row.iw + row.pw - K) / S + 1).clamp(lo, row.ow)
    } else {
        lo
    };
    let mut ox = 0;
    while ox < row.ow {
        let left = row.ow - ox;
        // Interior tiles take the pixels from `lo` in 16s, 8s and 4s (each whole tile
        // interior); the border pixels and the interior's last few take masked tiles of 4.
        let interior = if ox >= lo { hi.saturating_sub(ox) } else { 0 };
        // SAFETY: forwarded contract; pixels ox.. and channels c0.. are inside the row, and
        // each interior tile's pixels (all `P` of them) read only columns inside the input.
        ox += unsafe {
            match interior {
                16.. if S == 1 => dw_row_tile::<16, K, S, false>(row, ox, 16, c0, mask, dst),
                8.. => dw_row_tile::<8, K, S, false>(row, ox, 8, c0, mask, dst),
                4.. => dw_row_tile::<4, K, S, false>(row, ox, 4, c0, mask, dst),
                _ => dw_row_tile::<4, K, S, true>(row, ox, left, c0, mask, dst),
            }
        };
    }
}

/// Up to `P` pixels from `ox0` (at most `left`) of [`depthwise_nhwc_row`], channels `c0..`
/// (the lanes of `mask`); returns the pixels done. `EDGE`: some of the columns its `P`
/// windows read lie in the padding (or past the input).
///
/// # Safety
/// As for [`depthwise_nhwc_row`]; without `EDGE`, every column the `P` windows read lies
/// inside the input.
#[target_feature(enable = "avx512f")]
unsafe fn dw_row_tile<const P: usize, const K: usize, const S: usize, const EDGE: bool>(
    row: &crate::conv_nhwc::DwRow<'_>,
    ox0: usize,
    left: usize,
    c0: usize,
    mask: __mmask16,
    dst: *mut f32,
) -> usize {
    // The columns the tile reads fit the unrolled list below, the pixels the epilogue's (a
    // constant per instance; the callers never reach the instances that fail it).
    assert!(S * (P - 1) + K <= 22 && P <= 16);
    let (c, cp) = (row.c, row.cp);
    let np = P.min(left);
    let x = row.x.as_ptr();
    let w = row.ops.w.as_ptr();
    // The input column under the first pixel's first tap (negative in the padding).
    let col0 = (ox0 * S) as isize - row.pw as isize;
    let iw = row.iw as isize;
    // The tile's columns j inside the input: first..last.
    let (first, last) = ((-col0).max(0) as usize, (iw - col0).max(0) as usize);
    let mut acc = [_mm512_setzero_ps(); P];
    for &(line, w_row) in row.rows {
        let mut wv = [_mm512_setzero_ps(); K];
        for (kx, t) in wv.iter_mut().enumerate() {
            // SAFETY: tap (w_row + kx) holds `cp >= c0 + 16` floats (the contract).
            *t = unsafe { _mm512_loadu_ps(w.add((w_row + kx) * cp + c0)) };
        }
        let base = line + c0;
        // The first column's pixel (interior tiles), the next ones `c` floats apart.
        let mut src = x.wrapping_add(base).wrapping_offset(col0 * c as isize);
        // Unrolled by the macro (LLVM keeps this loop rolled, and the accumulators in
        // memory): every column index, so every accumulator index, is a constant.
        unroll!(j in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21] {
            if j < S * (P - 1) + K {
                let xv = if EDGE {
                    // A column in the padding (or past the tile's last real window) reads
                    // nothing: its load is masked off, at a column inside the row.
                    let col = (col0 + j as isize).clamp(0, iw - 1) as usize;
                    let m = if j >= first && j < last { mask } else { 0 };
                    // SAFETY: pixel `col` of an input row, its channels masked to c (the
                    // contract).
                    unsafe { _mm512_maskz_loadu_ps(m, x.add(base + col * c)) }
                } else {
                    // SAFETY: column j of an interior tile is inside the input row, its
                    // channels masked to c (the contract).
                    let v = unsafe { _mm512_maskz_loadu_ps(mask, src) };
                    src = src.wrapping_add(c);
                    v
                };
                for (kx, &t) in wv.iter().enumerate() {
                    if j >= kx && (j - kx).is_multiple_of(S) && (j - kx) / S < P {
                        let p = (j - kx) / S;
                        acc[p] = _mm512_fmadd_ps(xv, t, acc[p]);
                    }
                }
            }
        });
    }
    // The epilogue on the whole tile: bias, residual, the in-register activations (each
    // dispatched once), then the stores; over constant indices, as the columns above, so
    // that the accumulators stay in registers.
    // SAFETY: the bias holds `c` floats; the lanes of `mask` are below `c`.
    let bias = row
        .ops
        .bias
        .map(|b| unsafe { _mm512_maskz_loadu_ps(mask, b.as_ptr().add(c0)) });
    let residual = row
        .ops
        .residual
        .separate()
        .map(|r| r[row.out_at..].as_ptr());
    unroll!(p in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
        if p < P && p < np {
            if let Some(b) = bias {
                acc[p] = _mm512_add_ps(acc[p], b);
            }
            if let Some(r) = residual {
                // SAFETY: pixel ox0 + p < ow of the residual row, channels masked to c.
                let v = unsafe { _mm512_maskz_loadu_ps(mask, r.add((ox0 + p) * c + c0)) };
                acc[p] = _mm512_add_ps(acc[p], v);
            }
        }
    });
    if Finish::in_store(row.ops.acts) {
        for &act in row.ops.acts {
            activate_tile!(act, acc);
        }
    }
    let out = dst;
    let full = mask == 0xffff;
    unroll!(p in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
        if p < P && p < np {
            // SAFETY: pixel ox0 + p < ow and channels c0.. masked to c are inside `dst`.
            unsafe {
                let at = out.add((ox0 + p) * c + c0);
                if full {
                    _mm512_storeu_ps(at, acc[p]);
                } else {
                    _mm512_mask_storeu_ps(at, mask, acc[p]);
                }
            }
        }
    });
    np
}

/// One channels-last pooling window: `cols` columns, `step` floats apart, from `col0` floats
/// into each of the input rows `rows` (offsets of their first pixel), in the window's order:
/// the rows, then the columns of each.
pub(crate) struct PoolWindow<'a> {
    pub rows: &'a [usize],
    pub col0: usize,
    pub cols: usize,
    pub step: usize,
}

impl PoolWindow<'_> {
    /// The offset of the window's last pixel (its largest, the rows increasing); `None` when
    /// the window is empty.
    pub(crate) fn last(&self) -> Option<usize> {
        let row = *self.rows.last()?;
        (self.cols > 0).then(|| row + self.col0 + (self.cols - 1) * self.step)
    }
}

/// Runs `$f::<NV>(args.., c0)` over a pixel's `$c` channels: chunks of 64 from `c0 = 0`
/// (`NV = 4`), then the remaining 1 to 63 in one chunk of as many vectors as they need.
macro_rules! by_channel_chunks {
    ($c:expr, $f:ident($($arg:expr),*)) => {{
        let c: usize = $c;
        let mut c0 = 0;
        while c - c0 >= 64 {
            $f::<4>($($arg,)* c0);
            c0 += 64;
        }
        match (c - c0).div_ceil(16) {
            0 => {}
            1 => $f::<1>($($arg,)* c0),
            2 => $f::<2>($($arg,)* c0),
            3 => $f::<3>($($arg,)* c0),
            _ => $f::<4>($($arg,)* c0),
        }
    }};
}

/// The masks of the up to `NV` vectors of channels `c0..c0 + 16 NV` of a pixel of `c`.
fn pool_masks<const NV: usize>(c: usize, c0: usize) -> [__mmask16; NV] {
    core::array::from_fn(|v| lanes((c - c0).saturating_sub(16 * v)))
}

/// The maximum of one channels-last pooling window `w` into `out` (`out.len()` channels), a
/// NaN winning; an empty window takes the image's first pixel.
///
/// # Safety
/// The CPU has AVX-512F; `image` holds `out.len()` floats from each of the window's pixels
/// (and from 0).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn max_window_nhwc(image: &[f32], w: &PoolWindow<'_>, out: &mut [f32]) {
    // SAFETY: forwarded contract, for channels c0.. of the pixel.
    unsafe { by_channel_chunks!(out.len(), max_window_chunk(image, w, out)) }
}

/// [`max_window_nhwc`] for channels `c0..c0 + 16 NV` (masked to the pixel's).
///
/// # Safety
/// As for [`max_window_nhwc`], and c0 < out.len().
#[target_feature(enable = "avx512f")]
unsafe fn max_window_chunk<const NV: usize>(
    image: &[f32],
    w: &PoolWindow<'_>,
    out: &mut [f32],
    c0: usize,
) {
    let masks = pool_masks::<NV>(out.len(), c0);
    let src = image.as_ptr().wrapping_add(c0);
    // SAFETY: channels c0 + 16 v.. (masked to the pixel's) of a pixel (the contract).
    let load =
        |at: usize, v: usize| unsafe { _mm512_maskz_loadu_ps(masks[v], src.add(at + 16 * v)) };
    let first = w.last().map_or(0, |_| w.rows[0] + w.col0);
    let start: [__m512; NV] = core::array::from_fn(|v| load(first, v));
    // The rule: take a value greater than the maximum so far, or a NaN. VMAXPS keeps the
    // maximum unless the value is greater: the rule for every value but a NaN, so the window
    // goes by it while a sum of its values watches for NaNs (a NaN, or infinities of both
    // signs, make it NaN), and only a window where one turns up is taken again by the rule
    // itself.
    let mut acc = start;
    let mut sum = [_mm512_setzero_ps(); NV];
    for &row in w.rows {
        let mut at = row + w.col0;
        for _ in 0..w.cols {
            for v in 0..NV {
                let x = load(at, v);
                acc[v] = _mm512_max_ps(x, acc[v]);
                sum[v] = _mm512_add_ps(sum[v], x);
            }
            at += w.step;
        }
    }
    if sum
        .iter()
        .any(|&s| _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(s, s) != 0)
    {
        acc = start;
        for &row in w.rows {
            let mut at = row + w.col0;
            for _ in 0..w.cols {
                for (v, a) in acc.iter_mut().enumerate() {
                    let x = load(at, v);
                    let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, *a)
                        | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
                    *a = _mm512_mask_mov_ps(*a, take, x);
                }
                at += w.step;
            }
        }
    }
    for (v, a) in acc.iter().enumerate() {
        // SAFETY: the pixel holds `out.len()` floats; the mask stops there.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(c0 + 16 * v), masks[v], *a) };
    }
}

/// The average of one channels-last pooling window `w` into `out` (`out.len()` channels):
/// lane by lane, zero plus the window's pixels in its order, then divided by `count`: the
/// portable kernel's operations in its order, so the same bits.
///
/// # Safety
/// The CPU has AVX-512F; `image` holds `out.len()` floats from each of the window's pixels.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn avg_window_nhwc(
    image: &[f32],
    w: &PoolWindow<'_>,
    count: f32,
    out: &mut [f32],
) {
    // SAFETY: forwarded contract, for channels c0.. of the pixel.
    unsafe { by_channel_chunks!(out.len(), avg_window_chunk(image, w, count, out)) }
}

/// [`avg_window_nhwc`] for channels `c0..c0 + 16 NV` (masked to the pixel's).
///
/// # Safety
/// As for [`avg_window_nhwc`], and c0 < out.len().
#[target_feature(enable = "avx512f")]
unsafe fn avg_window_chunk<const NV: usize>(
    image: &[f32],
    w: &PoolWindow<'_>,
    count: f32,
    out: &mut [f32],
    c0: usize,
) {
    let masks = pool_masks::<NV>(out.len(), c0);
    let src = image.as_ptr().wrapping_add(c0);
    let mut acc = [_mm512_setzero_ps(); NV];
    for &row in w.rows {
        let mut at = row + w.col0;
        for _ in 0..w.cols {
            for (v, a) in acc.iter_mut().enumerate() {
                // SAFETY: channels c0 + 16 v.. (masked to the pixel's) of a pixel (the
                // contract).
                let x = unsafe { _mm512_maskz_loadu_ps(masks[v], src.add(at + 16 * v)) };
                *a = _mm512_add_ps(*a, x);
            }
            at += w.step;
        }
    }
    let divisor = _mm512_set1_ps(count);
    for (v, a) in acc.iter().enumerate() {
        // SAFETY: the pixel holds `out.len()` floats; the mask stops there.
        unsafe {
            _mm512_mask_storeu_ps(
                out.as_mut_ptr().add(c0 + 16 * v),
                masks[v],
                _mm512_div_ps(*a, divisor),
            )
        };
    }
}

/// Winograd F(2x2, 3x3) input transform of one 4x4 patch, 16 channels (the lanes of `mask`):
/// reads `d[i][j]` at `src + i * row + j * pixel` and writes `(Bᵀ d B)[4 i + j]` at
/// `dst + (4 i + j) * position` (see [`crate::conv_winograd`]).
///
/// # Safety
/// The CPU has AVX-512F; those lanes are readable and writable.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn winograd_input(
    src: *const f32,
    row: usize,
    pixel: usize,
    dst: *mut f32,
    position: usize,
    mask: __mmask16,
) {
    let mut d = [_mm512_setzero_ps(); 16];
    for (k, dk) in d.iter_mut().enumerate() {
        // SAFETY: the patch's pixel (k / 4, k % 4), lanes of `mask` (the contract).
        *dk = unsafe { _mm512_maskz_loadu_ps(mask, src.add((k / 4) * row + (k % 4) * pixel)) };
    }
    let mut t = [_mm512_setzero_ps(); 16];
    for j in 0..4 {
        let (d0, d1, d2, d3) = (d[j], d[4 + j], d[8 + j], d[12 + j]);
        t[j] = _mm512_sub_ps(d0, d2);
        t[4 + j] = _mm512_add_ps(d1, d2);
        t[8 + j] = _mm512_sub_ps(d2, d1);
        t[12 + j] = _mm512_sub_ps(d1, d3);
    }
    for i in 0..4 {
        let r = 4 * i;
        let (t0, t1, t2, t3) = (t[r], t[r + 1], t[r + 2], t[r + 3]);
        let v = [
            _mm512_sub_ps(t0, t2),
            _mm512_add_ps(t1, t2),
            _mm512_sub_ps(t2, t1),
            _mm512_sub_ps(t1, t3),
        ];
        for (j, &vj) in v.iter().enumerate() {
            // SAFETY: position r + j of this tile, lanes of `mask` (the contract).
            unsafe { _mm512_mask_storeu_ps(dst.add((r + j) * position), mask, vj) };
        }
    }
}

/// `Bᵀ d` of F(4x4, 3x3) for one column `d` of a 6x6 patch.
#[inline]
#[target_feature(enable = "avx512f")]
fn winograd4_in_1d(d: [__m512; 6]) -> [__m512; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    let (c4, c5, c2) = (
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(5.0),
        _mm512_set1_ps(2.0),
    );
    let (s12, d12) = (_mm512_add_ps(d1, d2), _mm512_sub_ps(d1, d2));
    let (s34, d43) = (_mm512_add_ps(d3, d4), _mm512_sub_ps(d4, d3));
    let (d42, d31) = (_mm512_sub_ps(d4, d2), _mm512_sub_ps(d3, d1));
    [
        _mm512_fmadd_ps(c4, d0, _mm512_fnmadd_ps(c5, d2, d4)),
        _mm512_fnmadd_ps(c4, s12, s34),
        _mm512_fmadd_ps(c4, d12, d43),
        _mm512_fmadd_ps(c2, d31, d42),
        _mm512_fnmadd_ps(c2, d31, d42),
        _mm512_fmadd_ps(c4, d1, _mm512_fnmadd_ps(c5, d3, d5)),
    ]
}

/// `Aᵀ m` of F(4x4, 3x3) for one column `m` of a tile's 6x6 products.
#[inline]
#[target_feature(enable = "avx512f")]
fn winograd4_out_1d(m: [__m512; 6]) -> [__m512; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (s12, d12) = (_mm512_add_ps(m1, m2), _mm512_sub_ps(m1, m2));
    let (s34, d34) = (_mm512_add_ps(m3, m4), _mm512_sub_ps(m3, m4));
    [
        _mm512_add_ps(_mm512_add_ps(m0, s12), s34),
        _mm512_fmadd_ps(_mm512_set1_ps(2.0), d34, d12),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), s34, s12),
        _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), d34, d12), m5),
    ]
}

/// Winograd F(4x4, 3x3) input transform of one 6x6 patch, 16 channels (the lanes of `mask`):
/// reads `d[i][j]` at `src + i * row + j * pixel` and writes `(Bᵀ d B)[6 i + j]` at
/// `dst + (6 i + j) * position` (see [`crate::conv_winograd`]).
///
/// # Safety
/// The CPU has AVX-512F; those lanes are readable and writable.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn winograd4_input(
    src: *const f32,
    row: usize,
    pixel: usize,
    dst: *mut f32,
    position: usize,
    mask: __mmask16,
) {
    // Columns first: t = Bᵀ d, one column of the patch at a time (`t[j][i]` is row i,
    // column j).
    let mut t = [[_mm512_setzero_ps(); 6]; 6];
    for (j, tj) in t.iter_mut().enumerate() {
        let mut column = [_mm512_setzero_ps(); 6];
        for (i, di) in column.iter_mut().enumerate() {
            // SAFETY: the patch's pixel (i, j), lanes of `mask` (the contract).
            *di = unsafe { _mm512_maskz_loadu_ps(mask, src.add(i * row + j * pixel)) };
        }
        *tj = winograd4_in_1d(column);
    }
    // Then rows: V = t B, row i of V from row i of t.
    for i in 0..6 {
        for (j, v) in winograd4_in_1d(t.map(|tj| tj[i])).into_iter().enumerate() {
            // SAFETY: position 6 i + j of this tile, lanes of `mask` (the contract).
            unsafe { _mm512_mask_storeu_ps(dst.add((6 * i + j) * position), mask, v) };
        }
    }
}

/// Winograd F(4x4, 3x3) output transform of one tile, 16 channels: reads `M[k]` at
/// `src + k * position` and stores `(Aᵀ M A)[a][b]` plus `bias` and the residual, then the
/// in-register `acts`, at `out[q]` for each output `q = 4 a + b` that is not null (outside the
/// image), the residual at `residual[q]` (if not null).
///
/// # Safety
/// The CPU has AVX-512F; the lanes of `mask` are readable at `src` and at each residual
/// pointer, writable at each output pointer.
#[allow(clippy::too_many_arguments, reason = "a tile's operands and epilogue")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn winograd4_output(
    src: *const f32,
    position: usize,
    mask: __mmask16,
    out: [*mut f32; 16],
    residual: [*const f32; 16],
    bias: Option<__m512>,
    acts: &[Activation],
) {
    // Columns first: w = Aᵀ M, one column of the products at a time (`w[j][a]` is row a,
    // column j).
    let mut w = [[_mm512_setzero_ps(); 4]; 6];
    for (j, wj) in w.iter_mut().enumerate() {
        let mut column = [_mm512_setzero_ps(); 6];
        for (i, mi) in column.iter_mut().enumerate() {
            // SAFETY: position 6 i + j of this tile, lanes of `mask` (the contract).
            *mi = unsafe { _mm512_maskz_loadu_ps(mask, src.add((6 * i + j) * position)) };
        }
        *wj = winograd4_out_1d(column);
    }
    let one = _mm512_set1_ps(1.0);
    for a in 0..4 {
        for (b, yb) in winograd4_out_1d(w.map(|wj| wj[a])).into_iter().enumerate() {
            let q = 4 * a + b;
            if out[q].is_null() {
                continue;
            }
            // SAFETY: the output (and residual) lanes of `mask` (the contract).
            unsafe { store_vector(yb, out[q], mask, one, true, bias, residual[q], acts) };
        }
    }
}

/// Winograd F(2x2, 3x3) output transform of one tile, 16 channels: reads `M[k]` at
/// `src + k * position` and stores `(Aᵀ M A)[a][b]` plus `bias` and the residual, then the
/// in-register `acts`, at `out[q]` for each output `q = 2 a + b` that is not null (outside the
/// image), the residual at `residual[q]` (if not null). The pointers are [`winograd4_output`]'s
/// sixteen, of which a 2x2 tile reads the first four.
///
/// # Safety
/// The CPU has AVX-512F; the lanes of `mask` are readable at `src` and at each residual
/// pointer, writable at each output pointer.
#[allow(clippy::too_many_arguments, reason = "a tile's operands and epilogue")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn winograd_output(
    src: *const f32,
    position: usize,
    mask: __mmask16,
    out: [*mut f32; 16],
    residual: [*const f32; 16],
    bias: Option<__m512>,
    acts: &[Activation],
) {
    let mut s = [_mm512_setzero_ps(); 16];
    for (k, sk) in s.iter_mut().enumerate() {
        // SAFETY: position k of this tile, lanes of `mask` (the contract).
        *sk = unsafe { _mm512_maskz_loadu_ps(mask, src.add(k * position)) };
    }
    let mut w = [[_mm512_setzero_ps(); 4]; 2];
    for j in 0..4 {
        let (m0, m1, m2, m3) = (s[j], s[4 + j], s[8 + j], s[12 + j]);
        w[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
        w[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
    }
    let one = _mm512_set1_ps(1.0);
    for (a, wa) in w.iter().enumerate() {
        let y = [
            _mm512_add_ps(_mm512_add_ps(wa[0], wa[1]), wa[2]),
            _mm512_sub_ps(_mm512_sub_ps(wa[1], wa[2]), wa[3]),
        ];
        for (b, &yb) in y.iter().enumerate() {
            let q = 2 * a + b;
            if out[q].is_null() {
                continue;
            }
            // SAFETY: the output (and residual) lanes of `mask` (the contract).
            unsafe { store_vector(yb, out[q], mask, one, true, bias, residual[q], acts) };
        }
    }
}
