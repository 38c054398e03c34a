//! Int8 convolution: implicit GEMM for dense and grouped convolutions (the weights are the
//! broadcast rows, blocks of up to 64 output pixels are packed from the input into column
//! panels as the kernel needs them, never stored whole), and a direct kernel for depthwise
//! ones.
//!
//! Depths beyond what one packing pass holds are packed a chunk at a time, once for a group of
//! row tiles whose partial `i32` sums wait on the stack between chunks.
//!
//! The input is packed in the unsigned domain with padding taking the input's zero point, so
//! padded taps contribute `(zx - zx) * w = 0` as ConvInteger defines; the zero-point
//! correction of [`super`] then holds over the whole depth.

use super::pack::{padded_depth, GROUP, PANEL};
use super::{
    bytes_of_i8, Bytes, Isa, Output, Rows, Sink, TileAcc, TileParams, TilePlace, Weights, MR_MAX,
    NR_MAX,
};
use crate::conv::ConvParams;
use crate::threads::Exec;

/// Panels of one packed pixel block.
const BLOCK_PANELS: usize = 6;
/// Tiles of partial sums a task keeps while packing a deep block a chunk at a time.
#[cfg(feature = "std")]
const PARTIAL_TILES: usize = 48;
#[cfg(not(feature = "std"))]
const PARTIAL_TILES: usize = 4;
/// Bytes of the per-task buffer the pixel blocks are packed into.
#[cfg(feature = "std")]
const PACK_BYTES: usize = 128 * 1024;
#[cfg(not(feature = "std"))]
const PACK_BYTES: usize = 16 * 1024;

/// `out = conv(x - x_zero, w - w.zero)` for `x: [N, C, *input]` (8-bit, zero point
/// `x_zero`), weights packed by the compiler ([`super::pack::packed_conv_len`]: padded rows,
/// or plain `[M, kernel]` for depthwise convolutions), `out: [N, M, *output]`, the output
/// channel its row; on `exec`'s threads. `padded` is working memory for the zero-padded
/// input, [`padded_len`] bytes (none when the convolution reads its input in place).
///
/// Panics if a buffer is too short for the geometry.
pub fn conv_exec(
    exec: &Exec,
    p: &ConvParams,
    x: Bytes<'_>,
    x_zero: i32,
    w: &Weights<'_>,
    padded: &mut [u8],
    out: Output<'_>,
) {
    let cin_g = p.in_channels / p.groups.max(1);
    let cout_g = p.out_channels / p.groups.max(1);
    let k = cin_g * p.kernel_len();
    let (in_len, out_len) = (p.input_len(), p.output_len());
    let depthwise = p.is_depthwise();
    assert!(
        x.len() >= p.batch * p.in_channels * in_len,
        "int8 conv: input too short"
    );
    assert!(
        w.data.len() >= super::pack::packed_conv_len(p.groups, cout_g, k, depthwise)
            && w.sums.len() >= p.out_channels,
        "int8 conv: weights too short"
    );
    assert!(
        out.len() >= p.batch * p.out_channels * out_len,
        "int8 conv: output too short"
    );
    if p.batch == 0 || p.out_channels == 0 || out_len == 0 {
        return;
    }
    let sink = Sink::new(out);
    let zu = x_zero + x.shift();
    if depthwise {
        let planes = p.batch * p.out_channels;
        // Tasks of several planes share their working memory: a few per thread.
        let per_task = planes.div_ceil(exec.threads() * 4).max(1);
        exec.for_each(planes.div_ceil(per_task), &|task| {
            let mut scratch = DwScratch::new();
            for plane in task * per_task..((task + 1) * per_task).min(planes) {
                // SAFETY: each task writes its own output planes.
                unsafe { depthwise_plane(p, x, zu, w, &sink, plane, &mut scratch) };
            }
        });
        return;
    }
    // The columns are packed from the input in the unsigned domain, zero-padded (with the
    // zero point) into `padded` first unless the window lies inside the input.
    let raw: &[u8] = match x {
        Bytes::U8(v) => v,
        Bytes::I8(v) => bytes_of_i8(v),
    };
    let need = padded_len(p);
    let window = super::pack::conv_window(p.output, p.kernel, p.strides, p.dilations);
    let (src, flip, dims): (&[u8], u8, [usize; 3]) = if need == 0 {
        (raw, x.shift() as u8, p.input)
    } else {
        assert!(
            padded.len() >= need,
            "int8 conv: padded input buffer too short"
        );
        pad_input(
            p,
            raw,
            x.shift() as u8,
            zu as u8,
            window,
            &mut padded[..need],
        );
        (&padded[..need], 0, window)
    };
    let plane_len = dims[0] * dims[1] * dims[2];
    let isa = Isa::detect();
    let block = BLOCK_PANELS * PANEL;
    let blocks = out_len.div_ceil(block);
    let units = p.batch * p.groups * blocks;
    // Alone, one task; with workers, four per thread. Each task sets up its working memory
    // once for all its units.
    let threads = exec.threads();
    let per_task = if threads == 1 {
        units
    } else {
        units.div_ceil(threads * 4).max(1)
    };
    exec.for_each(units.div_ceil(per_task), &|task| {
        let mut pack = [core::mem::MaybeUninit::<u8>::uninit(); PACK_BYTES];
        let mut single: TileAcc = [[0; NR_MAX]; MR_MAX];
        for unit in task * per_task..((task + 1) * per_task).min(units) {
            let (n, rest) = (unit / (p.groups * blocks), unit % (p.groups * blocks));
            let (g, b) = (rest / blocks, rest % blocks);
            let pix0 = b * block;
            let geometry = Block {
                p,
                src,
                flip,
                dims,
                plane_len,
                base: (n * p.in_channels + g * cin_g) * plane_len,
                k,
                pix0,
                npix: block.min(out_len - pix0),
                zu,
            };
            // SAFETY: each unit writes its own pixels of its own image and group.
            unsafe {
                dense_block(
                    isa,
                    &geometry,
                    w,
                    &sink,
                    (n, g, cout_g),
                    (&mut pack, &mut single),
                )
            };
        }
    });
}

/// Bytes of `padded` [`conv_exec`] needs for `p` (0 when it reads the input in place).
pub const fn padded_len(p: &ConvParams) -> usize {
    super::pack::padded_conv_input_len(
        p.batch,
        p.in_channels,
        p.is_depthwise(),
        p.input,
        p.output,
        p.kernel,
        p.strides,
        p.dilations,
        p.pads,
    )
}

/// Copies the input into `dst` in the unsigned domain (`^ flip`), as `N * C` planes of the
/// `window` the convolution reads, padded at the start by the convolution's pads and
/// wherever the window leaves the input with the zero point `pad`.
fn pad_input(p: &ConvParams, x: &[u8], flip: u8, pad: u8, window: [usize; 3], dst: &mut [u8]) {
    let [id, ih, iw] = p.input;
    let [wd, wh, ww] = window;
    let [pd, ph, pw] = p.pads;
    let (in_len, out_len) = (id * ih * iw, wd * wh * ww);
    // Columns of a window row that come from the input row: the rest is padding.
    let lo = pw.min(ww);
    let hi = (pw + iw).clamp(lo, ww);
    for (plane, out) in dst.chunks_exact_mut(out_len).enumerate() {
        let input = &x[plane * in_len..][..in_len];
        for (r, row) in out.chunks_exact_mut(ww).enumerate() {
            let (z, y) = (r / wh, r % wh);
            let inside =
                (z.checked_sub(pd).filter(|&z| z < id)).zip(y.checked_sub(ph).filter(|&y| y < ih));
            let Some((z, y)) = inside else {
                row.fill(pad);
                continue;
            };
            let src = &input[(z * ih + y) * iw..][..iw];
            row[..lo].fill(pad);
            row[hi..].fill(pad);
            for (d, &v) in row[lo..hi].iter_mut().zip(src) {
                *d = v ^ flip;
            }
        }
    }
}

/// One pixel block of one image and group: what packing its columns needs.
struct Block<'a> {
    p: &'a ConvParams,
    /// The planes the columns come from: the input itself, or its zero-padded copy.
    src: &'a [u8],
    /// XOR that maps a source byte to the unsigned domain (0 for the padded copy).
    flip: u8,
    /// The source planes' extents (the input's, or the padded window's).
    dims: [usize; 3],
    plane_len: usize,
    /// Where the group's first input channel of this image starts in `src`.
    base: usize,
    /// Depth (`C/groups * kernel`).
    k: usize,
    pix0: usize,
    npix: usize,
    /// The input's zero point in the unsigned domain.
    zu: i32,
}

/// Implicit GEMM over one pixel block: pack, then every row tile of the group's weights.
///
/// # Safety
/// No other task writes this block's pixels of image `n`, group `g`.
unsafe fn dense_block(
    isa: Isa,
    blk: &Block<'_>,
    w: &Weights<'_>,
    sink: &Sink<'_>,
    (n, g, cout_g): (usize, usize, usize),
    (storage, single): (&mut [core::mem::MaybeUninit<u8>; PACK_BYTES], &mut TileAcc),
) {
    let p = blk.p;
    let out_len = p.output_len();
    let kp = padded_depth(blk.k);
    let panels = blk.npix.div_ceil(PANEL);
    // Depth per packing pass: all of it when the block fits the buffer.
    let chunk = (PACK_BYTES / (panels * PANEL)).min(kp) / GROUP * GROUP;
    let chunk = chunk.max(GROUP);
    let chunks = kp.div_ceil(chunk);
    let buf = super::zeroed_prefix(storage, panels * PANEL * chunk);
    let w_zero = w.has_zero();
    let mut usum = [0i32; BLOCK_PANELS * PANEL];
    if w_zero {
        pixel_sums(blk, &mut usum);
    }
    let mut row_params = TileParams::<MR_MAX>::new();
    let (mr, step) = (isa.mr(), isa.panels());
    let col_tiles = panels.div_ceil(step);
    // The column parameters of each column tile, shared by every row tile.
    let mut col_params = [const { TileParams::<NR_MAX>::new() }; BLOCK_PANELS];
    for (ct, params) in col_params.iter_mut().enumerate().take(col_tiles) {
        let first = ct * step * PANEL;
        let cols = (step * PANEL).min(blk.npix - first);
        params.activations(w_zero.then_some(&usum[first..]), cols);
    }
    // With several depth chunks, each chunk is packed once for a group of row tiles whose
    // partial sums wait in `partials` (one tile per row tile and column tile).
    let tiles_per_group = (PARTIAL_TILES / col_tiles).max(1);
    let rows_per_group = if chunks == 1 {
        cout_g.max(1)
    } else {
        tiles_per_group * mr
    };
    let mut partials = [const { core::mem::MaybeUninit::<TileAcc>::uninit() }; PARTIAL_TILES];
    if chunks == 1 {
        pack_block(blk, 0, kp, buf);
    }
    for g0 in (0..cout_g).step_by(rows_per_group) {
        let g1 = (g0 + rows_per_group).min(cout_g);
        for c in 0..chunks {
            let d0 = c * chunk;
            let len = chunk.min(kp - d0);
            if chunks > 1 {
                pack_block(blk, d0, len, buf);
            }
            let panel_stride = len * PANEL;
            for (t, r0) in (g0..g1).step_by(mr).enumerate() {
                let weights = Rows {
                    base: w.data[(g * cout_g + r0) * kp + d0..].as_ptr().cast::<u8>(),
                    row_stride: kp,
                    group_stride: GROUP,
                };
                for (ct, q0) in (0..panels).step_by(step).enumerate() {
                    let np = step.min(panels - q0);
                    // One chunk: a single tile, finished right away; else this tile's slot.
                    let acc = if chunks == 1 {
                        &mut *single
                    } else {
                        let slot = &mut partials[t * col_tiles + ct];
                        if c == 0 {
                            slot.write([[0; NR_MAX]; MR_MAX]);
                        }
                        // SAFETY: the slot was written at chunk 0 of this group, above.
                        unsafe { slot.assume_init_mut() }
                    };
                    // SAFETY: the weights hold every row of depth `kp >= d0 + len` and then
                    // `ROW_BLOCK >= mr` more, so a tile's rows past the group's end (read,
                    // never stored) stay inside them; the buffer holds `panels` panels of
                    // `len / 4` groups at `panel_stride`; `isa` was detected.
                    unsafe {
                        isa.kernel(
                            false,
                            len / GROUP,
                            weights,
                            buf[q0 * panel_stride..].as_ptr(),
                            panel_stride,
                            np,
                            acc,
                            c > 0,
                        );
                    }
                    if c + 1 < chunks {
                        continue;
                    }
                    let rows = mr.min(cout_g - r0);
                    let chan0 = g * cout_g + r0;
                    row_params.channels(sink, w, blk.k, blk.zu, chan0, rows);
                    let first = q0 * PANEL;
                    let cols = (np * PANEL).min(blk.npix - first);
                    let place = TilePlace {
                        start: (n * p.out_channels + chan0) * out_len + blk.pix0 + first,
                        ld: out_len,
                        rows,
                        cols,
                    };
                    // SAFETY: forwarded contract: these pixels of these channels are this
                    // unit's.
                    unsafe { sink.finish(acc, &place, &row_params, &col_params[ct]) };
                }
            }
        }
    }
}

/// Per pixel of the block, the sum of its im2col column in the unsigned domain.
fn pixel_sums(blk: &Block<'_>, sums: &mut [i32; BLOCK_PANELS * PANEL]) {
    let kp = padded_depth(blk.k);
    let mut buf = [0u8; PANEL * GROUP * 64];
    let chunk = (buf.len() / (BLOCK_PANELS * PANEL)).min(kp) / GROUP * GROUP;
    let chunk = chunk.max(GROUP);
    sums.fill(0);
    let panels = blk.npix.div_ceil(PANEL);
    let mut d0 = 0;
    while d0 < kp {
        let len = chunk.min(kp - d0);
        pack_block(blk, d0, len, &mut buf);
        for q in 0..panels {
            let panel = &buf[q * len * PANEL..][..len * PANEL];
            for group in panel.chunks_exact(PANEL * GROUP) {
                for (j, quad) in group.chunks_exact(GROUP).enumerate() {
                    sums[q * PANEL + j] += quad.iter().map(|&v| i32::from(v)).sum::<i32>();
                }
            }
        }
        d0 += len;
    }
}

/// Packs depths `d0 .. d0 + len` (whole groups) of the block's im2col columns into `out` as
/// column panels of `len / 4` groups each. Depths past `k` and pixels past the block are 0.
///
/// Every pixel's window starts at one offset of the (padded) source, and every depth (input
/// channel, kernel tap) at one fixed offset from it; so a depth row of a panel whose pixels
/// lie along one source row is one 16-byte load (stride 1) or one 32-byte load of which every
/// other byte is kept (stride 2), and otherwise sixteen byte loads. No bounds are tested per
/// tap: the padding is in the source.
fn pack_block(blk: &Block<'_>, d0: usize, len: usize, out: &mut [u8]) {
    let p = blk.p;
    let klen = p.kernel_len().max(1);
    let [_, oh, ow] = p.output;
    let [_, kh, kw] = p.kernel;
    let [_, sh, sw] = p.strides;
    let [dd, dh, dw] = p.dilations;
    let [_, wh, ww] = blk.dims;
    let sd = p.strides[0];
    // Offset of tap t from its pixel's window origin (tap t is kernel position kz, ky, kx).
    let delta = |t: usize| {
        let (kz, ky, kx) = (t / (kh * kw), t / kw % kh, t % kw);
        (kz * dd * wh + ky * dh) * ww + kx * dw
    };
    let (step_x, step_y, step_z) = (dw, dh * ww, dd * wh * ww);
    let panels = blk.npix.div_ceil(PANEL);
    for q in 0..panels {
        let first = blk.pix0 + q * PANEL;
        let count = PANEL.min(blk.npix - q * PANEL);
        // Window origins of the panel's pixels: one division, then counting.
        let mut origin = [0usize; PANEL];
        let (mut oz, mut oy, mut ox) = (first / (oh * ow), first / ow % oh, first % ow);
        for o in origin.iter_mut().take(count) {
            *o = ((oz * sd) * wh + oy * sh) * ww + ox * sw;
            ox += 1;
            if ox == ow {
                ox = 0;
                oy += 1;
                if oy == oh {
                    oy = 0;
                    oz += 1;
                }
            }
        }
        let runs = Runs::new(&origin, count, sw);
        let panel = &mut out[q * len * PANEL..][..len * PANEL];
        let mut rows = [[0u8; PANEL]; GROUP];
        // Depth d0 is channel c, tap t (kernel position kz, ky, kx, offset `tap`); all advance
        // together below, without divisions.
        let (mut c, mut t) = (d0 / klen, d0 % klen);
        let (mut ky, mut kx) = (t / kw % kh, t % kw);
        let mut depth = d0;
        let mut at = blk.base + c * blk.plane_len + delta(t);
        for dst in panel.chunks_exact_mut(PANEL * GROUP) {
            for row in rows.iter_mut() {
                if depth >= blk.k {
                    *row = [0; PANEL];
                    continue;
                }
                runs.gather(blk.src, at, sw, blk.flip, row);
                depth += 1;
                t += 1;
                kx += 1;
                at += step_x;
                if kx == kw {
                    kx = 0;
                    ky += 1;
                    at = at - kw * step_x + step_y;
                    if ky == kh {
                        ky = 0;
                        at = at - kh * step_y + step_z;
                    }
                }
                if t == klen {
                    t = 0;
                    c += 1;
                    at = blk.base + c * blk.plane_len;
                }
            }
            interleave(&rows, dst);
        }
    }
}

/// A panel's pixels as runs along source rows: lanes `start[r] .. start[r + 1]` of run `r`
/// read `at + shift[r] + lane * step` for a depth row at offset `at`; lanes past `count` are 0.
struct Runs {
    n: usize,
    start: [usize; PANEL + 1],
    shift: [isize; PANEL],
    /// Per run, 0xff on its lanes.
    masks: [[u8; PANEL]; PANEL],
    /// 0xff on the lanes of every run (the panel's pixels).
    valid: [u8; PANEL],
}

impl Runs {
    /// The runs of pixels with window origins `origin[..count]`, `step` apart along a row.
    fn new(origin: &[usize; PANEL], count: usize, step: usize) -> Runs {
        let mut runs = Runs {
            n: 0,
            start: [count; PANEL + 1],
            shift: [0; PANEL],
            masks: [[0; PANEL]; PANEL],
            valid: [0; PANEL],
        };
        for j in 0..count {
            if j == 0 || origin[j] != origin[j - 1] + step {
                runs.start[runs.n] = j;
                runs.shift[runs.n] = origin[j] as isize - (j * step) as isize;
                runs.n += 1;
            }
            runs.masks[runs.n - 1][j] = 0xff;
            runs.valid[j] = 0xff;
        }
        runs.start[runs.n] = count;
        runs
    }

    /// One depth row: `row[j] = src[at + origin[j]] ^ flip` for the panel's pixels, 0 past
    /// them. A run is one 16-byte load (step 1) or a 32-byte load halved (step 2), merged
    /// under its lane mask; sixteen byte loads where that would leave `src`.
    #[inline(always)]
    fn gather(&self, src: &[u8], at: usize, step: usize, flip: u8, row: &mut [u8; PANEL]) {
        #[cfg(target_arch = "x86_64")]
        if step <= 2 && self.n <= 4 {
            let inside = (0..self.n).all(|r| {
                let b = at as isize + self.shift[r];
                b >= 0 && b as usize + PANEL * step <= src.len()
            });
            if inside {
                use core::arch::x86_64::*;
                // SAFETY: SSE2 is part of x86_64; every load reads `PANEL * step` bytes from
                // an offset checked above to lie inside `src`; the store writes the row.
                unsafe {
                    let mut acc = _mm_setzero_si128();
                    for r in 0..self.n {
                        let p = src.as_ptr().offset(at as isize + self.shift[r]);
                        let v = if step == 1 {
                            _mm_loadu_si128(p.cast())
                        } else {
                            // The even bytes: each 16-bit lane's low byte, packed.
                            let low = _mm_set1_epi16(0xff);
                            let lo = _mm_and_si128(_mm_loadu_si128(p.cast()), low);
                            let hi = _mm_and_si128(_mm_loadu_si128(p.add(PANEL).cast()), low);
                            _mm_packus_epi16(lo, hi)
                        };
                        let m = _mm_loadu_si128(self.masks[r].as_ptr().cast());
                        acc = _mm_or_si128(acc, _mm_and_si128(v, m));
                    }
                    let valid = _mm_loadu_si128(self.valid.as_ptr().cast());
                    let flipped =
                        _mm_and_si128(_mm_xor_si128(acc, _mm_set1_epi8(flip as i8)), valid);
                    _mm_storeu_si128(row.as_mut_ptr().cast(), flipped);
                }
                return;
            }
        }
        row.fill(0);
        for r in 0..self.n {
            let base = (at as isize + self.shift[r]) as usize;
            for j in self.start[r]..self.start[r + 1] {
                row[j] = src[base + j * step] ^ flip;
            }
        }
    }
}

/// Four rows of sixteen bytes (four depths of sixteen pixels) as sixteen columns of four:
/// `dst[j * 4 + t] = rows[t][j]`.
#[inline]
fn interleave(rows: &[[u8; PANEL]; GROUP], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        assert!(dst.len() >= PANEL * GROUP, "interleave: short destination");
        // SAFETY: SSE2 is part of x86_64; the loads read the four 16-byte rows and the stores
        // write the 64 bytes of `dst` checked above.
        unsafe {
            let r: [__m128i; GROUP] =
                core::array::from_fn(|t| _mm_loadu_si128(rows[t].as_ptr().cast()));
            let (lo01, hi01) = (_mm_unpacklo_epi8(r[0], r[1]), _mm_unpackhi_epi8(r[0], r[1]));
            let (lo23, hi23) = (_mm_unpacklo_epi8(r[2], r[3]), _mm_unpackhi_epi8(r[2], r[3]));
            let d = dst.as_mut_ptr().cast::<__m128i>();
            _mm_storeu_si128(d, _mm_unpacklo_epi16(lo01, lo23));
            _mm_storeu_si128(d.add(1), _mm_unpackhi_epi16(lo01, lo23));
            _mm_storeu_si128(d.add(2), _mm_unpacklo_epi16(hi01, hi23));
            _mm_storeu_si128(d.add(3), _mm_unpackhi_epi16(hi01, hi23));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (j, quad) in dst.chunks_exact_mut(GROUP).take(PANEL).enumerate() {
        for (t, v) in quad.iter_mut().enumerate() {
            *v = rows[t][j];
        }
    }
}

/// Longest output row the depthwise kernel accumulates at once.
const DW_ROW: usize = 256;
/// Widest kernel, largest stride and longest input row (per stride phase) of the depthwise
/// kernel's fast path (which splits each input row by stride phase once for all taps).
const DW_TAPS: usize = 8;
const DW_STRIDE: usize = 2;
const DW_IN: usize = 512;
/// Most taps whose int8 products the depthwise fast path sums exactly in f32 (see there).
const DW_EXACT_TAPS: usize = 64;

/// Floats of the zero-padded, stride-phase-split input strip of [`depthwise_strips`], and of
/// its accumulators.
#[cfg(feature = "std")]
const DW_STRIP: usize = 12 * 1024;
#[cfg(not(feature = "std"))]
const DW_STRIP: usize = 2 * 1024;
#[cfg(feature = "std")]
const DW_ACC: usize = 4 * 1024;
#[cfg(not(feature = "std"))]
const DW_ACC: usize = 1024;

/// The working memory of the depthwise kernels, set up once per task.
struct DwScratch {
    /// [`depthwise_strips`]' padded, phase-split input strip and accumulators.
    strip: [f32; DW_STRIP],
    acc: [f32; DW_ACC],
    /// The columns' epilogue parameters: neutral (a depthwise output has no column sums).
    cols: TileParams<NR_MAX>,
}

impl DwScratch {
    fn new() -> Self {
        let mut cols = TileParams::<NR_MAX>::new();
        cols.activations(None, NR_MAX);
        DwScratch {
            strip: [0.0; DW_STRIP],
            acc: [0.0; DW_ACC],
            cols,
        }
    }
}

/// The geometry of [`depthwise_strips`] for `p`: output rows per strip, phase-grid width and
/// the phase rows a strip reads beyond its output rows; `None` when the plane does not fit
/// its buffers or the convolution is not 2-D with strides up to 2 and few enough taps.
fn strip_geometry(p: &ConvParams) -> Option<(usize, usize, usize)> {
    let [kd, kh, kw] = p.kernel;
    let [sd, sh, sw] = p.strides;
    let [dd, dh, dw] = p.dilations;
    let [od, oh, ow] = p.output;
    if kd != 1 || od != 1 || sd != 1 || dd != 1 || p.input[0] != 1 {
        return None;
    }
    if sh > DW_STRIDE || sw > DW_STRIDE || p.kernel_len() > DW_EXACT_TAPS || oh == 0 {
        return None;
    }
    // Phase grid width: the output columns plus how far the widest tap reaches.
    let width = ow + (kw - 1) * dw / sw;
    let halo = (kh - 1) * dh / sh;
    let phases = sh * sw;
    let by_input = (DW_STRIP / (width * phases)).checked_sub(halo)?;
    let rows = by_input.min(DW_ACC / width).min(oh);
    (rows > 0).then_some((rows, width, halo))
}

/// One output plane of a 2-D depthwise convolution through a zero-padded copy of the input
/// (zero point removed, as `f32`), split by stride phase: every tap is then one contiguous
/// multiply-add over all of a strip's output rows (columns past the row's end compute values
/// nobody stores), which vectorizes whatever the plane's width. The sums are exact (see
/// [`DW_EXACT_TAPS`]).
///
/// # Safety
/// No other task writes output plane `plane` (`n * M + m`).
#[allow(
    clippy::too_many_arguments,
    reason = "the plane's operands, its geometry and the task's scratch, all distinct"
)]
unsafe fn depthwise_strips(
    p: &ConvParams,
    bytes: &[u8],
    flip: u8,
    zu: i32,
    w: &Weights<'_>,
    sink: &Sink<'_>,
    plane: usize,
    (rows, width, halo): (usize, usize, usize),
    scratch: &mut DwScratch,
) {
    let m = plane % p.out_channels;
    let [_, ih, iw] = p.input;
    let [_, oh, ow] = p.output;
    let [_, kh, kw] = p.kernel;
    let [_, sh, sw] = p.strides;
    let [_, dh, dw] = p.dilations;
    let [_, ph, pw] = p.pads;
    let src = &bytes[plane * ih * iw..][..ih * iw];
    let zs = w.zero_of(m);
    let taps: &[i8] = &w.data[m * p.kernel_len()..][..p.kernel_len()];
    let mut row_params = TileParams::<1>::new();
    row_params.channels(sink, w, 0, 0, m, 1);
    let phase_rows = rows + halo;
    let phase_len = phase_rows * width;
    let DwScratch {
        strip,
        acc,
        cols: col_params,
    } = scratch;
    let mut sums = [0i32; NR_MAX];
    for oy0 in (0..oh).step_by(rows) {
        let rs = rows.min(oh - oy0);
        // Phase (ry, rx) holds padded rows oy0 * sh + j * sh + ry and columns i * sw + rx.
        let convert = |v: u8| (i32::from(v ^ flip) - zu) as f32;
        for ry in 0..sh {
            for j in 0..rs + halo {
                let y = ((oy0 + j) * sh + ry).checked_sub(ph).filter(|&y| y < ih);
                let at = |rx: usize| (ry * sw + rx) * phase_len + j * width;
                if sw == 1 {
                    let dst = &mut strip[at(0)..][..width];
                    let Some(y) = y else {
                        dst.fill(0.0);
                        continue;
                    };
                    let row = &src[y * iw..][..iw];
                    // Columns pw .. pw + iw read the row.
                    let lo = pw.min(width);
                    let hi = (pw + iw).min(width);
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    for (d, &v) in dst[lo..hi].iter_mut().zip(row) {
                        *d = convert(v);
                    }
                    continue;
                }
                // Stride 2: input pair (2q, 2q + 1) lands at padded columns 2q + pw and
                // 2q + 1 + pw, so one pass over the row fills both column phases.
                let (a0, a1) = (at(0), at(1));
                let (head, tail) = strip.split_at_mut(a1);
                let (d0, d1) = (&mut head[a0..][..width], &mut tail[..width]);
                d0.fill(0.0);
                d1.fill(0.0);
                let Some(y) = y else { continue };
                let row = &src[y * iw..][..iw];
                // Phase and column of row[2q] and of row[2q + 1], at q = 0.
                let (first, second) = if pw % 2 == 0 {
                    ((&mut *d0, pw / 2), (&mut *d1, pw / 2))
                } else {
                    ((&mut *d1, pw / 2), (&mut *d0, pw / 2 + 1))
                };
                let ((e, e0), (o, o0)) = (first, second);
                let (e_len, o_len) = (width.saturating_sub(e0), width.saturating_sub(o0));
                for ((de, d_o), pair) in e[e0.min(width)..]
                    .iter_mut()
                    .zip(o[o0.min(width)..].iter_mut())
                    .zip(row.chunks_exact(2))
                {
                    *de = convert(pair[0]);
                    *d_o = convert(pair[1]);
                }
                // What the paired loop left: its last pair's partner columns, an odd tail.
                let pairs = (iw / 2).min(e_len).min(o_len);
                for (x, &v) in row.iter().enumerate().skip(2 * pairs) {
                    let col = x + pw;
                    if col / 2 < width {
                        let dst = if col % 2 == 0 { &mut *d0 } else { &mut *d1 };
                        dst[col / 2] = convert(v);
                    }
                }
            }
        }
        // Every valid output (row r < rs, column < ow) of the strip, as one run.
        let n = (rs - 1) * width + ow;
        let acc = &mut acc[..n];
        // Where each tap's run starts in the strip, and its weight.
        let mut tap_at = [(0usize, 0f32); DW_EXACT_TAPS];
        for ky in 0..kh {
            let (ry, oy) = ((ky * dh) % sh, (ky * dh) / sh);
            for kx in 0..kw {
                let (rx, ox) = ((kx * dw) % sw, (kx * dw) / sw);
                let wf = (i32::from(taps[ky * kw + kx]) - zs) as f32;
                tap_at[ky * kw + kx] = ((ry * sw + rx) * phase_len + oy * width + ox, wf);
            }
        }
        let tap_at = &tap_at[..kh * kw];
        // A block of outputs stays in registers across every tap; the tail takes the loop.
        const BLOCK: usize = 64;
        let mut c0 = 0;
        while c0 + BLOCK <= n {
            let mut block = [0f32; BLOCK];
            for &(at, wf) in tap_at {
                for (o, &v) in block.iter_mut().zip(&strip[at + c0..][..BLOCK]) {
                    *o += v * wf;
                }
            }
            acc[c0..c0 + BLOCK].copy_from_slice(&block);
            c0 += BLOCK;
        }
        if c0 < n {
            let tail = &mut acc[c0..];
            tail.fill(0.0);
            for &(at, wf) in tap_at {
                for (o, &v) in tail.iter_mut().zip(&strip[at + c0..]) {
                    *o += v * wf;
                }
            }
        }
        for r in 0..rs {
            let row = &acc[r * width..][..ow];
            let start = plane * oh * ow + (oy0 + r) * ow;
            for (c, piece) in row.chunks(NR_MAX).enumerate() {
                let sums = &mut sums[..piece.len()];
                for (s, &f) in sums.iter_mut().zip(piece) {
                    *s = super::round_small(f);
                }
                let row_out = (
                    row_params.scale[0],
                    row_params.bias_f[0],
                    row_params.bias_i[0],
                );
                // SAFETY: forwarded contract: this plane is this task's.
                unsafe { sink.store(start + c * NR_MAX, sums, row_out, col_params) };
            }
        }
    }
}

/// One output plane of a depthwise convolution, row by row: every tap adds its weight times
/// the shifted input run to an `i32` row.
///
/// # Safety
/// No other task writes output plane `plane` (`n * M + m`).
unsafe fn depthwise_plane(
    p: &ConvParams,
    x: Bytes<'_>,
    zu: i32,
    w: &Weights<'_>,
    sink: &Sink<'_>,
    plane: usize,
    scratch: &mut DwScratch,
) {
    if let Some(geometry) = strip_geometry(p) {
        let bytes: &[u8] = match x {
            Bytes::U8(v) => v,
            Bytes::I8(v) => bytes_of_i8(v),
        };
        let flip = x.shift() as u8;
        // SAFETY: forwarded contract.
        unsafe { depthwise_strips(p, bytes, flip, zu, w, sink, plane, geometry, scratch) };
        return;
    }
    let m = plane % p.out_channels;
    let klen = p.kernel_len();
    let [id, ih, iw] = p.input;
    let [od, oh, ow] = p.output;
    let [kd, kh, kw] = p.kernel;
    let [sd, sh, sw] = p.strides;
    let in_len = id * ih * iw;
    let src_base = plane * in_len;
    let bytes: &[u8] = match x {
        Bytes::U8(v) => v,
        Bytes::I8(v) => bytes_of_i8(v),
    };
    let flip = x.shift() as u8;
    let zs = w.zero_of(m);
    let taps: &[i8] = &w.data[m * klen..][..klen];
    let mut row_params = TileParams::<1>::new();
    row_params.channels(sink, w, 0, 0, m, 1);
    let mut col_params = TileParams::<NR_MAX>::new();
    col_params.activations(None, NR_MAX);
    let at = |axis: usize, o: usize, kk: usize| -> Option<usize> {
        (o * p.strides[axis] + kk * p.dilations[axis])
            .checked_sub(p.pads[axis])
            .filter(|&v| v < p.input[axis])
    };
    // Per kernel column, the output columns whose tap lands inside the input row, and where
    // in its stride phase of the row the first of them reads.
    let shifts: [(usize, usize, usize, usize); DW_TAPS] = core::array::from_fn(|e| {
        let shift = e * p.dilations[2];
        let lo = p.pads[2].saturating_sub(shift).div_ceil(sw);
        let hi = ((iw + p.pads[2]).saturating_sub(shift))
            .div_ceil(sw)
            .min(ow);
        if e >= kw || lo >= hi {
            return (0, 0, 0, 0);
        }
        let start = lo * sw + shift - p.pads[2];
        (lo, hi, start % sw, start / sw)
    });
    // The fast path multiplies in f32, which is exact here: every product is at most 255 *
    // 255 in magnitude, so a sum over at most `DW_EXACT_TAPS` taps stays below 2^22, where f32
    // holds integers exactly (and `round_small` reads them back).
    let fast = kw <= DW_TAPS
        && sw <= DW_STRIDE
        && iw.div_ceil(sw) <= DW_IN
        && ow <= DW_ROW
        && klen <= DW_EXACT_TAPS;
    // The current input row, zero point removed, split by stride phase so every tap reads a
    // contiguous run.
    let mut phases = [[0f32; DW_IN]; DW_STRIDE];
    let mut acc_f = [0f32; DW_ROW];
    let mut acc = [0i32; DW_ROW];
    for oz in 0..od {
        for oy in 0..oh {
            for x0 in (0..ow).step_by(DW_ROW) {
                let width = DW_ROW.min(ow - x0);
                let acc = &mut acc[..width];
                acc.fill(0);
                let acc_f = &mut acc_f[..width];
                acc_f.fill(0.0);
                for a in 0..kd {
                    let Some(z) = at(0, oz, a) else { continue };
                    for b in 0..kh {
                        let Some(y) = at(1, oy, b) else { continue };
                        let row = &bytes[src_base + (z * ih + y) * iw..][..iw];
                        if fast && sw == 1 {
                            for (d, &v) in phases[0].iter_mut().zip(row) {
                                *d = (i32::from(v ^ flip) - zu) as f32;
                            }
                        } else if fast {
                            let [even, odd] = &mut phases;
                            for ((pair, e), o) in
                                row.chunks(2).zip(even.iter_mut()).zip(odd.iter_mut())
                            {
                                *e = (i32::from(pair[0] ^ flip) - zu) as f32;
                                if let Some(&v) = pair.get(1) {
                                    *o = (i32::from(v ^ flip) - zu) as f32;
                                }
                            }
                        }
                        for e in 0..kw {
                            let wv = i32::from(taps[(a * kh + b) * kw + e]) - zs;
                            if fast {
                                let (lo, hi, phase, first) = shifts[e];
                                if lo < hi {
                                    let wf = wv as f32;
                                    let src = &phases[phase][first..first + (hi - lo)];
                                    for (o, &v) in acc_f[lo..hi].iter_mut().zip(src) {
                                        *o += v * wf;
                                    }
                                }
                                continue;
                            }
                            // Output columns whose tap lands inside the row.
                            let shift = e * p.dilations[2];
                            let lo = p.pads[2].saturating_sub(shift).div_ceil(sw);
                            let hi = ((iw + p.pads[2]).saturating_sub(shift)).div_ceil(sw);
                            let (lo, hi) = (lo.max(x0), hi.min(x0 + width));
                            if lo >= hi {
                                continue;
                            }
                            let start = lo * sw + shift - p.pads[2];
                            for (o, v) in acc[lo - x0..hi - x0]
                                .iter_mut()
                                .zip(row[start..].iter().step_by(sw))
                            {
                                *o += (i32::from(v ^ flip) - zu) * wv;
                            }
                        }
                    }
                }
                if fast {
                    for (o, &f) in acc.iter_mut().zip(acc_f.iter()) {
                        *o = super::round_small(f);
                    }
                }
                let _ = (sd, sh);
                let start = plane * (od * oh * ow) + (oz * oh + oy) * ow + x0;
                for (i, piece) in acc.chunks(NR_MAX).enumerate() {
                    let row_out = (
                        row_params.scale[0],
                        row_params.bias_f[0],
                        row_params.bias_i[0],
                    );
                    // SAFETY: forwarded contract: this plane is this task's.
                    unsafe { sink.store(start + i * NR_MAX, piece, row_out, &col_params) };
                }
            }
        }
    }
}

/// Scalar reference of [`conv_exec`] with plain weights `w: [M, C/groups, *kernel]` (signed
/// domain, zero points `w_zero`), `i32` results.
pub fn conv_reference(
    p: &ConvParams,
    x: Bytes<'_>,
    x_zero: i32,
    w: &[i8],
    w_zero: &[i32],
    out: &mut [i32],
) {
    let cin_g = p.in_channels / p.groups;
    let cout_g = p.out_channels / p.groups;
    let [od, oh, ow] = p.output;
    let [kd, kh, kw] = p.kernel;
    let [id, ih, iw] = p.input;
    let (in_len, out_len, klen) = (id * ih * iw, od * oh * ow, kd * kh * kw);
    let at = |axis: usize, o: usize, kk: usize| -> Option<usize> {
        (o * p.strides[axis] + kk * p.dilations[axis])
            .checked_sub(p.pads[axis])
            .filter(|&v| v < p.input[axis])
    };
    for n in 0..p.batch {
        for m in 0..p.out_channels {
            let g = m / cout_g;
            let zw = match w_zero.len() {
                0 => 0,
                1 => w_zero[0],
                _ => w_zero[m],
            };
            for pix in 0..out_len {
                let (oz, oy, ox) = (pix / (oh * ow), pix / ow % oh, pix % ow);
                let mut acc = 0i32;
                for c in 0..cin_g {
                    for t in 0..klen {
                        let (a, b, e) = (t / (kh * kw), t / kw % kh, t % kw);
                        let (Some(z), Some(y), Some(xx)) =
                            (at(0, oz, a), at(1, oy, b), at(2, ox, e))
                        else {
                            continue;
                        };
                        let i =
                            (n * p.in_channels + g * cin_g + c) * in_len + (z * ih + y) * iw + xx;
                        let xv = i32::from(x.unsigned(i)) - x.shift() - x_zero;
                        let wv = i32::from(w[(m * cin_g + c) * klen + t]) - zw;
                        acc = acc.wrapping_add(xv.wrapping_mul(wv));
                    }
                }
                out[(n * p.out_channels + m) * out_len + pix] = acc;
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::super::tests::{bytes, with_isa, MIRI_MACS};
    use super::*;
    use crate::int8::pack;
    use std::vec;
    use std::vec::Vec;

    #[allow(clippy::too_many_arguments, reason = "a test geometry")]
    fn params(
        [batch, cin, cout, groups]: [usize; 4],
        input: [usize; 3],
        kernel: [usize; 3],
        strides: [usize; 3],
        dilations: [usize; 3],
        pads: [usize; 3],
        pads_end: [usize; 3],
    ) -> ConvParams {
        let output = core::array::from_fn(|i| {
            (input[i] + pads[i] + pads_end[i] - dilations[i] * (kernel[i] - 1) - 1) / strides[i] + 1
        });
        ConvParams {
            batch,
            in_channels: cin,
            out_channels: cout,
            groups,
            input,
            output,
            kernel,
            strides,
            dilations,
            pads,
            packed_weights: false,
        }
    }

    fn pack_weights(p: &ConvParams, w: &[i8]) -> (Vec<i8>, Vec<i32>) {
        let cout_g = p.out_channels / p.groups;
        let k = p.in_channels / p.groups * p.kernel_len();
        let depthwise = p.is_depthwise();
        let mut packed = vec![0i8; pack::packed_conv_len(p.groups, cout_g, k, depthwise)];
        if depthwise {
            packed[..w.len()].copy_from_slice(w);
        } else {
            pack::pack_rows(
                p.out_channels + pack::ROW_BLOCK,
                k,
                |r, d| if r < p.out_channels { w[r * k + d] } else { 0 },
                &mut packed,
            );
        }
        let sums = w
            .chunks_exact(k)
            .map(|row| row.iter().map(|&v| i32::from(v)).sum())
            .collect();
        (packed, sums)
    }

    #[test]
    fn conv_matches_reference_on_every_kernel() {
        let cases = [
            // Pointwise, a few channels, an odd plane.
            params(
                [1, 3, 5, 1],
                [1, 5, 7],
                [1, 1, 1],
                [1; 3],
                [1; 3],
                [0; 3],
                [0; 3],
            ),
            // 3x3, padding, wide rows (the contiguous-run path) and a tail of pixels.
            params(
                [2, 6, 10, 1],
                [1, 9, 37],
                [1, 3, 3],
                [1; 3],
                [1; 3],
                [0, 1, 1],
                [0, 1, 1],
            ),
            // Stride 2, dilation 2, asymmetric padding.
            params(
                [1, 4, 7, 1],
                [1, 11, 13],
                [1, 3, 3],
                [1, 2, 2],
                [1, 2, 2],
                [0, 2, 1],
                [0, 0, 2],
            ),
            // Groups.
            params(
                [1, 8, 12, 4],
                [1, 6, 20],
                [1, 3, 1],
                [1; 3],
                [1; 3],
                [0, 1, 0],
                [0, 1, 0],
            ),
            // Depthwise, stride 1 and 2.
            params(
                [2, 5, 5, 5],
                [1, 8, 19],
                [1, 3, 3],
                [1; 3],
                [1; 3],
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                [1, 3, 3, 3],
                [1, 9, 9],
                [1, 5, 5],
                [1, 2, 2],
                [1; 3],
                [0, 2, 2],
                [0, 2, 2],
            ),
            // Depthwise: dilated and strided with asymmetric padding; planes that take
            // several strips (tall, and wider than the row kernel's 256); 1x1; a kernel with
            // too many taps for the strip path; a row of one pixel.
            params(
                [1, 4, 4, 4],
                [1, 15, 12],
                [1, 3, 3],
                [1, 2, 2],
                [1, 2, 2],
                [0, 1, 2],
                [0, 2, 0],
            ),
            params(
                [1, 2, 2, 2],
                [1, 130, 150],
                [1, 3, 3],
                [1; 3],
                [1; 3],
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                [1, 2, 2, 2],
                [1, 9, 301],
                [1, 5, 5],
                [1, 2, 2],
                [1; 3],
                [0, 2, 2],
                [0, 2, 2],
            ),
            params(
                [1, 3, 3, 3],
                [1, 5, 6],
                [1, 1, 1],
                [1; 3],
                [1; 3],
                [0; 3],
                [0; 3],
            ),
            params(
                [1, 2, 2, 2],
                [1, 12, 12],
                [1, 9, 9],
                [1; 3],
                [1; 3],
                [0, 4, 4],
                [0, 4, 4],
            ),
            params(
                [1, 2, 2, 2],
                [1, 7, 1],
                [1, 3, 3],
                [1; 3],
                [1; 3],
                [0, 1, 1],
                [0, 1, 1],
            ),
            // 1-D and 3-D.
            params(
                [1, 5, 9, 1],
                [1, 1, 50],
                [1, 1, 4],
                [1; 3],
                [1; 3],
                [0, 0, 3],
                [0, 0, 0],
            ),
            params(
                [1, 2, 4, 1],
                [3, 4, 5],
                [2, 2, 2],
                [1; 3],
                [1; 3],
                [1, 0, 1],
                [0, 1, 1],
            ),
            // Many channels (depth beyond one packing pass without std's buffer).
            params(
                [1, 70, 20, 1],
                [1, 5, 18],
                [1, 3, 3],
                [1; 3],
                [1; 3],
                [0, 1, 1],
                [0, 1, 1],
            ),
            // Depth beyond one packing pass even with std's buffer.
            params(
                [1, 240, 9, 1],
                [1, 3, 40],
                [1, 3, 3],
                [1; 3],
                [1; 3],
                [0, 1, 1],
                [0, 1, 1],
            ),
        ];
        for isa in crate::int8::Isa::available() {
            for (case, p) in cases.iter().enumerate() {
                let k = p.in_channels / p.groups * p.kernel_len();
                // Under Miri only the cases of at most MIRI_MACS multiply-adds.
                let macs = p.batch * p.out_channels * p.output_len() * k;
                if cfg!(miri) && macs > MIRI_MACS {
                    continue;
                }
                let x_raw = bytes(p.batch * p.in_channels * p.input_len(), case as u32);
                let x_i8: Vec<i8> = x_raw.iter().map(|&v| v as i8).collect();
                let w: Vec<i8> = bytes(p.out_channels * k, 7 + case as u32)
                    .iter()
                    .map(|&v| v as i8)
                    .collect();
                let (packed, sums) = pack_weights(p, &w);
                let per_channel: Vec<i32> = (0..p.out_channels as i32).map(|m| m % 5 - 2).collect();
                for (signed, x_zero, w_zero) in [
                    (false, 0, &[][..]),
                    (false, 117, &[3][..]),
                    (true, -9, &[][..]),
                    (true, 4, &per_channel[..]),
                ] {
                    let x = if signed {
                        Bytes::I8(&x_i8)
                    } else {
                        Bytes::U8(&x_raw)
                    };
                    let len = p.batch * p.out_channels * p.output_len();
                    let mut want = vec![0i32; len];
                    conv_reference(p, x, x_zero, &w, w_zero, &mut want);
                    let weights = Weights {
                        data: &packed,
                        sums: &sums,
                        zero: w_zero,
                    };
                    for threads in [1, 2] {
                        let exec = Exec::with_threads(threads);
                        let mut got = vec![0i32; len];
                        let mut padded = vec![0u8; padded_len(p)];
                        with_isa(isa, || {
                            conv_exec(
                                &exec,
                                p,
                                x,
                                x_zero,
                                &weights,
                                &mut padded,
                                Output::I32(&mut got),
                            )
                        });
                        assert_eq!(
                            got, want,
                            "{isa:?} case {case} signed={signed} zx={x_zero} zw={w_zero:?}"
                        );
                    }
                }
            }
        }
    }
}
