//! Int8 convolution in the channels-last layout (`[N, *spatial, C]` in, `[N, *spatial, M]`
//! out), as ONNX Runtime runs its quantized convolutions.
//!
//! Channels last, every output pixel is one broadcast row of the GEMM and the weights are the
//! packed column panels (the operand order of [`super::matmul_exec`]), with the depth running
//! over the kernel's taps, then the input channels padded to whole groups of four. Each
//! tap's channels are then contiguous bytes of the input, so nothing is packed per pixel:
//! - the kernel reads each pixel's window where it lies, from its origin plus one fixed
//!   offset per tap (the same for every pixel);
//! - the input is read in place when every window lies inside it and its channels fill whole
//!   groups (a pointwise layer on `uint8`); otherwise it is first copied once, padded with
//!   its zero point and its channels padded to a multiple of four, into working memory.
//!
//! On AVX-512 VNNI the tile's sums are requantized in registers when the output is 8-bit.
//! Other kernel families read rows gathered from the windows.
//!
//! Every output channel is a column, so the epilogue writes whole runs of channels and a tile
//! serves as many output channels as its panels hold, however few pixels an image has.

use super::pack::{
    channels_last_padded_len, conv_window, panel_bytes, CHANNELS_LAST_MAX_DEPTH,
    CHANNELS_LAST_MAX_TAPS, GROUP, PANEL,
};
use super::{
    bytes_of_i8, Bytes, Isa, Output, Rows, Sink, TileAcc, TileParams, TilePlace, Weights, MR_MAX,
    NR_MAX,
};
use crate::conv::ConvParams;
use crate::threads::Exec;

/// Most pixels of one block (their window origins are found together).
const BLOCK_ROWS: usize = 96;
/// Multiply-adds below which a layer runs as one task (a few microseconds: splitting it costs
/// about what it saves).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// `out = conv(x - x_zero, w - w.zero)` for `x: [N, *input, C]` (8-bit, zero point `x_zero`),
/// weights packed by the compiler as `kernel * Cp x M` column panels
/// ([`super::pack::pack_cols`]) whose depth runs over the taps (`kz, ky, kx`), then the input
/// channels padded to `Cp = ceil(C / 4) * 4` (zero weights), and `out: [N, *output, M]`; on
/// `exec`'s threads. Only dense convolutions (one group). `padded` is working memory for the
/// padded input copy, [`padded_len`] bytes (none when the input is read in place).
///
/// Panics if a buffer is too short for the geometry, the convolution has several groups, more
/// than [`CHANNELS_LAST_MAX_TAPS`] taps, or a depth beyond [`CHANNELS_LAST_MAX_DEPTH`] that
/// it cannot read in place.
pub fn conv_nhwc_exec(
    exec: &Exec,
    p: &ConvParams,
    x: Bytes<'_>,
    x_zero: i32,
    w: &Weights<'_>,
    padded: &mut [u8],
    out: Output<'_>,
) {
    conv_nhwc(exec, p, (x, false), x_zero, w, padded, out);
}

/// [`conv_nhwc_exec`] on a channels-first input `x: [N, C, *input]` (a network's first layer):
/// the padded copy it reads its windows from is transposed as it is made, so no separate
/// transpose runs. `padded` holds `padded_len(p, false)` bytes.
///
/// Panics as [`conv_nhwc_exec`] does.
pub fn conv_nhwc_from_nchw_exec(
    exec: &Exec,
    p: &ConvParams,
    x: Bytes<'_>,
    x_zero: i32,
    w: &Weights<'_>,
    padded: &mut [u8],
    out: Output<'_>,
) {
    conv_nhwc(exec, p, (x, true), x_zero, w, padded, out);
}

/// [`conv_nhwc_exec`] with the input channels first when `x.1`.
fn conv_nhwc(
    exec: &Exec,
    p: &ConvParams,
    (x, channels_first): (Bytes<'_>, bool),
    x_zero: i32,
    w: &Weights<'_>,
    padded: &mut [u8],
    out: Output<'_>,
) {
    assert!(p.groups <= 1, "int8 channels-last conv: one group only");
    let (c, m) = (p.in_channels, p.out_channels);
    let cp = c.div_ceil(GROUP) * GROUP;
    let taps = p.kernel_len();
    assert!(
        taps <= CHANNELS_LAST_MAX_TAPS,
        "int8 channels-last conv: too many taps"
    );
    // The real depth (for the zero-point correction) and the packed one.
    let (k, kq) = (c * taps, cp * taps);
    let (in_len, out_len) = (p.input_len(), p.output_len());
    assert!(
        x.len() >= p.batch * in_len * c,
        "int8 channels-last conv: input too short"
    );
    assert!(
        w.data.len() >= super::pack::packed_cols_len(kq, m) && w.sums.len() >= m,
        "int8 channels-last conv: weights too short"
    );
    let pixels = p.batch * out_len;
    assert!(
        out.len() >= pixels * m,
        "int8 channels-last conv: output too short"
    );
    if pixels == 0 || m == 0 {
        return;
    }
    let isa = Isa::detect();
    let (mr, nr) = (isa.mr(), isa.panels() * PANEL);
    let Source {
        src,
        dims,
        pads,
        stride,
        zu,
        in_place,
    } = Source::new(p, (x, channels_first), x_zero, cp, padded);
    // Pointwise in place: the pixels' rows are the input's, `c` apart.
    let in_place_rows = in_place && p.is_pointwise();
    assert!(
        kq <= CHANNELS_LAST_MAX_DEPTH,
        "int8 channels-last conv: depth {k} is deeper than the gathered rows"
    );
    // Each tap's byte offset from its window's origin.
    let tap_at = tap_offsets(p, dims, cp);
    let window = Window {
        p,
        dims,
        pads,
        cs: stride,
    };
    let col_tiles = m.div_ceil(nr);
    // A layer too small to gain from a split runs as one task.
    let threads = if pixels * m * kq < PARALLEL_MIN_MACS {
        1
    } else {
        exec.threads()
    };
    let split =
        crate::threads::Split::new((pixels, mr, BLOCK_ROWS), (m, col_tiles), threads, false);
    let sink = Sink::new(out);
    let w_zero = w.has_zero();
    let wide = cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx512Vnni);
    let pb = panel_bytes(kq);
    exec.for_each(split.tasks(), &|task| {
        let mut storage =
            [core::mem::MaybeUninit::<u8>::uninit(); MR_MAX * CHANNELS_LAST_MAX_DEPTH];
        // Rows gathered for the other kernel families.
        let buf = super::zeroed_prefix(&mut storage, if wide { 0 } else { MR_MAX * kq });
        let mut acc: TileAcc = [[0; NR_MAX]; MR_MAX];
        let mut origin = [0usize; BLOCK_ROWS];
        let mut usum = [0i32; BLOCK_ROWS];
        let mut cols_cache = ColCache::new();
        for unit in split.task_units(task) {
            let (b, cols) = split.unit(unit, col_tiles);
            let pix0 = b * split.block;
            let npix = split.block.min(pixels - pix0);
            window.origins(pix0, &mut origin[..npix]);
            if w_zero {
                // Activation sums over the real channels of every tap.
                for (s, &o) in usum.iter_mut().zip(&origin[..npix]) {
                    *s = tap_at[..taps]
                        .iter()
                        .map(|&t| src[o + t..][..c].iter().map(|&v| i32::from(v)).sum::<i32>())
                        .sum();
                }
            }
            for ct in cols {
                let c0 = ct * nr;
                let width = nr.min(m - c0);
                let ColTile {
                    params: col_params,
                    add: col_add,
                } = cols_cache.get(ct, || ColTile::new(&sink, w, k, zu, c0, width));
                let panels = w.data[(c0 / PANEL) * pb..].as_ptr().cast::<u8>();
                let np = width.div_ceil(PANEL);
                for r0 in (0..npix).step_by(mr) {
                    let rows = mr.min(npix - r0);
                    let place = TilePlace {
                        start: (pix0 + r0) * m + c0,
                        ld: m,
                        rows,
                        cols: width,
                    };
                    // Rows past the tile repeat its first (read, never stored).
                    let at = |r: usize| origin[r0 + if r < rows { r } else { 0 }];
                    #[cfg(target_arch = "x86_64")]
                    if wide {
                        use super::x86_64::kernel_vnni512_taps;
                        let starts: [*const u8; MR_MAX] =
                            core::array::from_fn(|r| src[at(r)..].as_ptr());
                        let fused = sink.fused(&place, col_add, col_params, !w_zero);
                        // SAFETY: every row's window lies inside `src` (its origin plus the
                        // last tap's offset plus `cp` bytes); the panels of columns `c0..`
                        // hold `kq / 4` groups each within the packed length asserted above;
                        // a requantized tile's `rows` rows of `width` bytes at `out`, `m`
                        // apart, are this unit's (`requant_tile` checked the span); `isa`
                        // was detected.
                        unsafe {
                            kernel_vnni512_taps(
                                &starts,
                                &tap_at[..taps],
                                cp / GROUP,
                                (panels, pb, np),
                                fused.target(&mut acc),
                            );
                        }
                        if fused.stored() {
                            continue;
                        }
                    }
                    if !wide {
                        let operand = if in_place_rows && rows == mr {
                            Rows {
                                base: src[at(0)..].as_ptr(),
                                row_stride: c,
                                group_stride: GROUP,
                            }
                        } else {
                            for r in 0..mr {
                                let row = &mut buf[r * kq..][..kq];
                                for (dst, &t) in row.chunks_exact_mut(cp).zip(&tap_at[..taps]) {
                                    dst.copy_from_slice(&src[at(r) + t..][..cp]);
                                }
                            }
                            Rows {
                                base: buf.as_ptr(),
                                row_stride: kq,
                                group_stride: GROUP,
                            }
                        };
                        // SAFETY: in place, a whole tile's `mr` rows of `c = kq` bytes are
                        // consecutive pixels of the input; gathered, `buf` holds `mr` rows of
                        // `kq` bytes; the panels as above; `isa` was detected.
                        unsafe {
                            isa.kernel(true, kq / GROUP, operand, panels, pb, np, &mut acc, false);
                        }
                    }
                    let mut row_params = TileParams::<MR_MAX>::new();
                    row_params.activations(w_zero.then_some(&usum[r0..]), rows);
                    // SAFETY: each unit finishes its own pixels' channels `cols`.
                    unsafe { sink.finish(&mut acc, &place, &row_params, col_params) };
                }
            }
        }
    });
}

/// Depthwise `out = conv(x - x_zero, w)` channels last: `x: [N, *input, C]` (8-bit, zero point
/// `x_zero`), weights packed by the compiler as `[kernel, Cp]` (`Cp = ceil(C / 16) * 16`, one
/// row of channels per tap, zero past `C`) with no zero point, `out: [N, *output, C]`; on
/// `exec`'s threads. `padded` is working memory for the padded input copy, [`padded_len`]
/// bytes.
///
/// Channels are the vector lanes: per tap, sixteen channels of a pixel widen to 32 bits and
/// multiply-add with the tap's sixteen weights (`vpdpwssd`), for tiles of 6 pixels by 64
/// channels on AVX-512 VNNI; plain loops elsewhere.
///
/// Panics if a buffer is too short for the geometry, the convolution is not depthwise, the
/// weights have a zero point, or there are more than [`CHANNELS_LAST_MAX_TAPS`] taps.
pub fn depthwise_nhwc_exec(
    exec: &Exec,
    p: &ConvParams,
    x: Bytes<'_>,
    x_zero: i32,
    w: &Weights<'_>,
    padded: &mut [u8],
    out: Output<'_>,
) {
    assert!(
        p.is_depthwise(),
        "int8 channels-last depthwise conv: not depthwise"
    );
    assert!(
        !w.has_zero(),
        "int8 channels-last depthwise conv: weight zero point"
    );
    let c = p.in_channels;
    let cp = c.div_ceil(PANEL) * PANEL;
    let taps = p.kernel_len();
    assert!(
        taps <= CHANNELS_LAST_MAX_TAPS,
        "int8 channels-last depthwise conv: too many taps"
    );
    let (in_len, out_len) = (p.input_len(), p.output_len());
    assert!(
        x.len() >= p.batch * in_len * c,
        "int8 channels-last depthwise conv: input too short"
    );
    assert!(
        w.data.len() >= taps * cp && w.sums.len() >= c,
        "int8 channels-last depthwise conv: weights too short"
    );
    let pixels = p.batch * out_len;
    assert!(
        out.len() >= pixels * c,
        "int8 channels-last depthwise conv: output too short"
    );
    if pixels == 0 || c == 0 {
        return;
    }
    let Source {
        src,
        dims,
        pads,
        stride,
        zu,
        ..
    } = Source::new(p, (x, false), x_zero, cp, padded);
    let tap_at = tap_offsets(p, dims, stride);
    let window = Window {
        p,
        dims,
        pads,
        cs: stride,
    };
    let isa = Isa::detect();
    let wide = cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx512Vnni);
    // Tiles of pixels by 64 channels.
    const ROWS: usize = 6;
    let threads = if pixels * c * taps < PARALLEL_MIN_MACS {
        1
    } else {
        exec.threads()
    };
    let block = crate::threads::Split::block(pixels, threads, ROWS, BLOCK_ROWS);
    let blocks = pixels.div_ceil(block);
    let per_task = if threads == 1 {
        blocks
    } else {
        blocks.div_ceil(threads * 4).max(1)
    };
    let sink = Sink::new(out);
    let weights = bytes_of_i8(w.data);
    exec.for_each(blocks.div_ceil(per_task), &|task| {
        let mut acc: TileAcc = [[0; NR_MAX]; MR_MAX];
        let mut origin = [0usize; BLOCK_ROWS];
        let mut cols_cache = ColCache::new();
        let row_params = {
            let mut r = TileParams::<MR_MAX>::new();
            r.activations(None, MR_MAX);
            r
        };
        for b in task * per_task..((task + 1) * per_task).min(blocks) {
            let pix0 = b * block;
            let npix = block.min(pixels - pix0);
            window.origins(pix0, &mut origin[..npix]);
            for c0 in (0..c).step_by(NR_MAX) {
                let width = NR_MAX.min(c - c0);
                let ColTile {
                    params: col_params,
                    add: col_add,
                } = cols_cache.get(c0 / NR_MAX, || ColTile::new(&sink, w, taps, zu, c0, width));
                for r0 in (0..npix).step_by(ROWS) {
                    let rows = ROWS.min(npix - r0);
                    let at = |r: usize| origin[r0 + if r < rows { r } else { 0 }];
                    let place = TilePlace {
                        start: (pix0 + r0) * c + c0,
                        ld: c,
                        rows,
                        cols: width,
                    };
                    #[cfg(target_arch = "x86_64")]
                    if wide {
                        use super::x86_64::kernel_dw512;
                        let starts: [*const u8; ROWS] =
                            core::array::from_fn(|r| src[at(r) + c0..].as_ptr());
                        let fused = sink.fused(&place, col_add, col_params, true);
                        // SAFETY: every row's window lies inside `src`, with `width`
                        // rounded up to 16 channels from `c0` readable at each tap (the
                        // source holds `stride >= width` bytes per pixel, `cp` when copied;
                        // in place `c` is a multiple of 16); the weights hold `taps` rows of
                        // `cp >= c0 + 16 * ceil(width / 16)` bytes; a requantized tile's
                        // `rows` rows of `width` bytes at `out`, `c` apart, are this task's;
                        // `isa` was detected.
                        unsafe {
                            kernel_dw512(
                                &starts,
                                &tap_at[..taps],
                                weights[c0..].as_ptr(),
                                cp,
                                width.div_ceil(PANEL),
                                fused.target(&mut acc),
                            );
                        }
                        if fused.stored() {
                            continue;
                        }
                    }
                    if !wide {
                        for (r, sums) in acc.iter_mut().enumerate().take(rows) {
                            let o = at(r);
                            sums[..width].fill(0);
                            for (t, &tap) in tap_at[..taps].iter().enumerate() {
                                let xs = &src[o + tap + c0..][..width];
                                let ws = &weights[t * cp + c0..][..width];
                                for ((s, &xv), &wv) in sums.iter_mut().zip(xs).zip(ws) {
                                    *s = s.wrapping_add(i32::from(xv) * i32::from(wv as i8));
                                }
                            }
                        }
                    }
                    // SAFETY: each task finishes its own pixels.
                    unsafe { sink.finish(&mut acc, &place, &row_params, col_params) };
                }
            }
        }
    });
}

/// Each tap's byte offset from its window's origin in a source of spatial extents `dims` and
/// `stride` bytes per pixel.
fn tap_offsets(p: &ConvParams, dims: [usize; 3], stride: usize) -> [usize; CHANNELS_LAST_MAX_TAPS] {
    let [_, src_h, src_w] = dims;
    let [_, kh, kw] = p.kernel;
    let [dd, dh, dw] = p.dilations;
    let mut tap_at = [0usize; CHANNELS_LAST_MAX_TAPS];
    for (t, at) in tap_at.iter_mut().enumerate().take(p.kernel_len()) {
        let (tz, ty, tx) = (t / (kh * kw), t / kw % kh, t % kw);
        *at = ((tz * dd * src_h + ty * dh) * src_w + tx * dw) * stride;
    }
    tap_at
}

/// Bytes of `padded` [`conv_nhwc_exec`] needs for `p` on a `uint8` (`unsigned`) or `int8`
/// input (0 when it reads the input in place).
pub const fn padded_len(p: &ConvParams, unsigned: bool) -> usize {
    channels_last_padded_len(
        p.batch,
        p.in_channels,
        p.is_depthwise(),
        unsigned,
        p.input,
        p.output,
        p.kernel,
        p.strides,
        p.dilations,
        p.pads,
    )
}

/// Copies the input into `dst` as `[N, *window, cp]` in the unsigned domain (`^ flip`):
/// padded at the start by the convolution's pads, and wherever the window leaves the input,
/// with the zero point `pad`, which also fills channels `C..cp`.
fn pad_input(
    p: &ConvParams,
    x: &[u8],
    flip: u8,
    pad: u8,
    cp: usize,
    window: [usize; 3],
    dst: &mut [u8],
) {
    let [id, ih, iw] = p.input;
    let [wd, wh, ww] = window;
    let [pd, ph, pw] = p.pads;
    let c = p.in_channels;
    // Columns of a window row that come from the input row: the rest is padding.
    let lo = pw.min(ww);
    let hi = (pw + iw).clamp(lo, ww);
    for (line, out) in dst.chunks_exact_mut(ww * cp).enumerate() {
        let (n, z, y) = (line / (wd * wh), line / wh % wd, line % wh);
        let inside =
            (z.checked_sub(pd).filter(|&z| z < id)).zip(y.checked_sub(ph).filter(|&y| y < ih));
        let Some((z, y)) = inside else {
            out.fill(pad);
            continue;
        };
        let src = &x[((n * id + z) * ih + y) * iw * c..][..iw * c];
        out[..lo * cp].fill(pad);
        out[hi * cp..].fill(pad);
        if cp == c {
            for (d, &v) in out[lo * cp..hi * cp].iter_mut().zip(&src[(lo - pw) * c..]) {
                *d = v ^ flip;
            }
        } else {
            for (d, s) in out[lo * cp..hi * cp]
                .chunks_exact_mut(cp)
                .zip(src[(lo - pw) * c..].chunks_exact(c))
            {
                for (d, &v) in d.iter_mut().zip(s) {
                    *d = v ^ flip;
                }
                d[c..].fill(pad);
            }
        }
    }
}

/// The parameters of one column tile (output channels `c0 .. c0 + width`), and its sums'
/// correction plus integer bias together for the kernels that requantize in registers.
struct ColTile {
    params: TileParams<NR_MAX>,
    add: [i32; NR_MAX],
}

impl ColTile {
    fn new(sink: &Sink<'_>, w: &Weights<'_>, k: usize, zu: i32, c0: usize, width: usize) -> Self {
        let mut params = TileParams::<NR_MAX>::new();
        params.channels(sink, w, k, zu, c0, width);
        let add = core::array::from_fn(|i| params.add[i].wrapping_add(params.bias_i[i]));
        ColTile { params, add }
    }
}

/// Column tiles a task computes once for all its pixel blocks: the first [`CACHED_TILES`]
/// are kept, later ones recomputed.
struct ColCache {
    tiles: [Option<ColTile>; CACHED_TILES],
    spare: Option<ColTile>,
}

/// Column tiles (of 64 channels) a task keeps.
const CACHED_TILES: usize = 16;

impl ColCache {
    fn new() -> Self {
        ColCache {
            tiles: [const { None }; CACHED_TILES],
            spare: None,
        }
    }

    /// Tile `ct`, made by `make` the first time.
    fn get(&mut self, ct: usize, make: impl FnOnce() -> ColTile) -> &ColTile {
        match self.tiles.get_mut(ct) {
            Some(slot) => slot.get_or_insert_with(make),
            None => self.spare.insert(make()),
        }
    }
}

/// [`pad_input`] from a channels-first input `x: [N, C, *input]`: the copy is channels last.
/// Up to four channels go sixteen pixels at a time through byte interleaves.
fn pad_input_nchw(
    p: &ConvParams,
    x: &[u8],
    flip: u8,
    pad: u8,
    cp: usize,
    window: [usize; 3],
    dst: &mut [u8],
) {
    let [id, ih, iw] = p.input;
    let [wd, wh, ww] = window;
    let [pd, ph, pw] = p.pads;
    let c = p.in_channels;
    let plane = id * ih * iw;
    let lo = pw.min(ww);
    let hi = (pw + iw).clamp(lo, ww);
    for (line, out) in dst.chunks_exact_mut(ww * cp).enumerate() {
        let (n, z, y) = (line / (wd * wh), line / wh % wd, line % wh);
        let inside =
            (z.checked_sub(pd).filter(|&z| z < id)).zip(y.checked_sub(ph).filter(|&y| y < ih));
        let Some((z, y)) = inside else {
            out.fill(pad);
            continue;
        };
        out[..lo * cp].fill(pad);
        out[hi * cp..].fill(pad);
        // Where input column `x0` of this line starts in channel `ch`'s plane.
        let row = |ch: usize| (n * c + ch) * plane + (z * ih + y) * iw;
        let mut col = lo;
        #[cfg(target_arch = "x86_64")]
        if cp == GROUP {
            use core::arch::x86_64::*;
            while col + 16 <= hi {
                let x0 = col - pw;
                // SAFETY: SSE2 is part of x86_64; each load reads 16 bytes of one channel's
                // row inside `x` (columns `x0 .. x0 + 16 <= iw`), and the stores write the
                // 64 bytes of sixteen pixels inside this line of `dst`.
                unsafe {
                    let load = |ch: usize| {
                        if ch < c {
                            _mm_xor_si128(
                                _mm_loadu_si128(x[row(ch) + x0..][..16].as_ptr().cast()),
                                _mm_set1_epi8(flip as i8),
                            )
                        } else {
                            _mm_set1_epi8(pad as i8)
                        }
                    };
                    let (r0, r1, r2, r3) = (load(0), load(1), load(2), load(3));
                    let (lo01, hi01) = (_mm_unpacklo_epi8(r0, r1), _mm_unpackhi_epi8(r0, r1));
                    let (lo23, hi23) = (_mm_unpacklo_epi8(r2, r3), _mm_unpackhi_epi8(r2, r3));
                    let d = out[col * cp..][..64].as_mut_ptr().cast::<__m128i>();
                    _mm_storeu_si128(d, _mm_unpacklo_epi16(lo01, lo23));
                    _mm_storeu_si128(d.add(1), _mm_unpackhi_epi16(lo01, lo23));
                    _mm_storeu_si128(d.add(2), _mm_unpacklo_epi16(hi01, hi23));
                    _mm_storeu_si128(d.add(3), _mm_unpackhi_epi16(hi01, hi23));
                }
                col += 16;
            }
        }
        for xx in col..hi {
            let pixel = &mut out[xx * cp..][..cp];
            for (ch, v) in pixel.iter_mut().enumerate() {
                *v = if ch < c {
                    x[row(ch) + xx - pw] ^ flip
                } else {
                    pad
                };
            }
        }
    }
}

/// What a channels-last convolution reads its windows from.
struct Source<'a> {
    /// The input, or its padded copy (unsigned, `cp` channels).
    src: &'a [u8],
    /// The source's spatial extents.
    dims: [usize; 3],
    /// The pads still to subtract from a window's position (none in the copy).
    pads: [usize; 3],
    /// Bytes per source pixel.
    stride: usize,
    /// The input's zero point in the unsigned domain.
    zu: i32,
    /// The source is the input.
    in_place: bool,
}

impl<'a> Source<'a> {
    /// The input itself when [`padded_len`] says so, else its copy into `padded`, padded
    /// with the zero point, its channels rounded up to `cp`.
    /// `x.1`: the input is channels first (always copied, transposed on the way).
    fn new(
        p: &ConvParams,
        (x, channels_first): (Bytes<'a>, bool),
        x_zero: i32,
        cp: usize,
        padded: &'a mut [u8],
    ) -> Self {
        let raw: &[u8] = match x {
            Bytes::U8(v) => v,
            Bytes::I8(v) => bytes_of_i8(v),
        };
        let flip = x.shift() as u8;
        let zu = x_zero + x.shift();
        let need = padded_len(p, flip == 0 && !channels_first);
        if need == 0 {
            return Source {
                src: raw,
                dims: p.input,
                pads: p.pads,
                stride: p.in_channels,
                zu,
                in_place: true,
            };
        }
        assert!(
            padded.len() >= need,
            "int8 channels-last conv: padded input buffer too short"
        );
        let window = conv_window(p.output, p.kernel, p.strides, p.dilations);
        if channels_first {
            pad_input_nchw(p, raw, flip, zu as u8, cp, window, &mut padded[..need]);
        } else {
            pad_input(p, raw, flip, zu as u8, cp, window, &mut padded[..need]);
        }
        Source {
            src: &padded[..need],
            dims: window,
            pads: [0; 3],
            stride: cp,
            zu,
            in_place: false,
        }
    }
}

/// Where the windows of output pixels start in the source.
struct Window<'a> {
    p: &'a ConvParams,
    /// The source's spatial extents (the input's, or the padded window's).
    dims: [usize; 3],
    /// The pads still to subtract (the input's when read in place, else none).
    pads: [usize; 3],
    /// Bytes per source pixel.
    cs: usize,
}

impl Window<'_> {
    /// `out[j]`: the byte offset of the window origin of output pixel `pix0 + j` (over the
    /// whole batch).
    fn origins(&self, pix0: usize, out: &mut [usize]) {
        let p = self.p;
        let [od, oh, ow] = p.output;
        let [sd, sh, sw] = p.strides;
        let [dd, dh, dw] = self.dims;
        let (mut n, rest) = (pix0 / (od * oh * ow), pix0 % (od * oh * ow));
        let (mut oz, mut oy, mut ox) = (rest / (oh * ow), rest / ow % oh, rest % ow);
        for o in out.iter_mut() {
            // In place the pads are 0 (a window inside the input), so nothing underflows.
            let (z, y, x) = (
                oz * sd - self.pads[0],
                oy * sh - self.pads[1],
                ox * sw - self.pads[2],
            );
            *o = (((n * dd + z) * dh + y) * dw + x) * self.cs;
            ox += 1;
            if ox == ow {
                ox = 0;
                oy += 1;
                if oy == oh {
                    oy = 0;
                    oz += 1;
                    if oz == od {
                        oz = 0;
                        n += 1;
                    }
                }
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::super::conv_reference;
    use super::super::tests::{bytes, thread_counts, with_isa, MIRI_MACS};
    use super::*;
    use crate::int8::pack;
    use std::vec;
    use std::vec::Vec;

    /// A dense convolution with symmetric padding `pads`.
    fn params(
        [batch, cin, cout]: [usize; 3],
        input: [usize; 3],
        kernel: [usize; 3],
        strides: [usize; 3],
        dilations: [usize; 3],
        pads: [usize; 3],
    ) -> ConvParams {
        let output = core::array::from_fn(|i| {
            (input[i] + 2 * pads[i] - dilations[i] * (kernel[i] - 1) - 1) / strides[i] + 1
        });
        ConvParams {
            batch,
            in_channels: cin,
            out_channels: cout,
            groups: 1,
            input,
            output,
            kernel,
            strides,
            dilations,
            pads,
            packed_weights: false,
        }
    }

    /// `len` deterministic signed bytes.
    fn signed(len: usize, seed: u32) -> Vec<i8> {
        bytes(len, seed).iter().map(|&v| v as i8).collect()
    }

    /// Per row of `k` weights, their sum.
    fn row_sums(w: &[i8], k: usize) -> Vec<i32> {
        w.chunks_exact(k)
            .map(|row| row.iter().map(|&v| i32::from(v)).sum())
            .collect()
    }

    /// Depthwise `w: [c, taps]` as the kernel reads it: `[taps, Cp]`, `Cp` rounded up to 16.
    fn pack_depthwise(w: &[i8], c: usize, taps: usize) -> Vec<i8> {
        let cp = c.div_ceil(16) * 16;
        let mut packed = vec![0i8; taps * cp];
        for ch in 0..c {
            for t in 0..taps {
                packed[t * cp + ch] = w[ch * taps + t];
            }
        }
        packed
    }

    /// `w: [m, c, taps]` packed as the kernel reads it: depth (tap, channel padded to 4).
    fn pack_taps(w: &[i8], c: usize, taps: usize, m: usize) -> Vec<i8> {
        let cp = c.div_ceil(4) * 4;
        let kq = cp * taps;
        let mut packed = vec![0i8; pack::packed_cols_len(kq, m)];
        pack::pack_cols(
            kq,
            m,
            |d, j| {
                let (t, ch) = (d / cp, d % cp);
                if ch < c {
                    w[(j * c + ch) * taps + t]
                } else {
                    0
                }
            },
            &mut packed,
        );
        packed
    }

    /// `[batch, channels, spatial]` as `[batch, spatial, channels]`.
    fn channels_last<T: Copy>(x: &[T], batch: usize, channels: usize) -> Vec<T> {
        let spatial = x.len() / (batch * channels).max(1);
        let mut out = Vec::with_capacity(x.len());
        for n in 0..batch {
            for s in 0..spatial {
                for c in 0..channels {
                    out.push(x[(n * channels + c) * spatial + s]);
                }
            }
        }
        out
    }

    #[test]
    fn channels_last_conv_matches_reference() {
        let cases = [
            // Pointwise, whole groups of channels (in place), several blocks, two column
            // tiles and a partial last tile of pixels.
            params([1, 8, 70], [1, 13, 17], [1; 3], [1; 3], [1; 3], [0; 3]),
            // Pointwise with channels that do not fill a group (copied rows), batch 2.
            params([2, 3, 5], [1, 5, 7], [1; 3], [1; 3], [1; 3], [0; 3]),
            // Pointwise, stride 2 (copied rows).
            params([1, 16, 24], [1, 9, 11], [1; 3], [1, 2, 2], [1; 3], [0; 3]),
            // 3x3 with padding, a stem-like 3-channel input, stride 2.
            params(
                [1, 3, 16],
                [1, 23, 29],
                [1, 3, 3],
                [1, 2, 2],
                [1; 3],
                [0, 1, 1],
            ),
            params(
                [2, 16, 64],
                [1, 12, 10],
                [1, 3, 3],
                [1; 3],
                [1; 3],
                [0, 1, 1],
            ),
            // Dilation 2, 7x7 window wider than the input.
            params(
                [1, 4, 7],
                [1, 11, 13],
                [1, 3, 3],
                [1; 3],
                [1, 2, 2],
                [0, 2, 2],
            ),
            params(
                [1, 3, 9],
                [1, 6, 5],
                [1, 7, 7],
                [1, 2, 2],
                [1; 3],
                [0, 3, 3],
            ),
            // 1-D and 3-D.
            params([1, 5, 9], [1, 1, 50], [1, 1, 4], [1; 3], [1; 3], [0, 0, 1]),
            params([1, 2, 4], [3, 4, 5], [2, 2, 2], [1; 3], [1; 3], [1, 0, 1]),
            // Deep rows: few pixel rows per block.
            params(
                [1, 300, 20],
                [1, 5, 18],
                [1, 3, 3],
                [1; 3],
                [1; 3],
                [0, 1, 1],
            ),
        ];
        for isa in crate::int8::Isa::available() {
            for (case, p) in cases.iter().enumerate() {
                let (c, m) = (p.in_channels, p.out_channels);
                let klen = p.kernel_len();
                let k = c * klen;
                // Under Miri only the cases of at most MIRI_MACS multiply-adds.
                if cfg!(miri) && p.batch * m * p.output_len() * k > MIRI_MACS {
                    continue;
                }
                let x_raw = bytes(p.batch * c * p.input_len(), case as u32);
                let x_i8: Vec<i8> = x_raw.iter().map(|&v| v as i8).collect();
                let w = signed(m * k, 7 + case as u32);
                // Depth (tap, channel), as the compiler packs channels-last weights.
                let packed = pack_taps(&w, c, klen, m);
                let sums = row_sums(&w, k);
                let per_channel: Vec<i32> = (0..m as i32).map(|j| j % 5 - 2).collect();
                let (x_u8_last, x_i8_last) = (
                    channels_last(&x_raw, p.batch, c),
                    channels_last(&x_i8, p.batch, c),
                );
                for (signed, x_zero, w_zero) in [
                    (false, 0, &[][..]),
                    (false, 117, &[3][..]),
                    (true, -9, &[][..]),
                    (true, 4, &per_channel[..]),
                ] {
                    let (x, x_last) = if signed {
                        (Bytes::I8(&x_i8), Bytes::I8(&x_i8_last))
                    } else {
                        (Bytes::U8(&x_raw), Bytes::U8(&x_u8_last))
                    };
                    let len = p.batch * m * p.output_len();
                    let mut want = vec![0i32; len];
                    conv_reference(p, x, x_zero, &w, w_zero, &mut want);
                    let want = channels_last(&want, p.batch, m);
                    let weights = Weights {
                        data: &packed,
                        sums: &sums,
                        zero: w_zero,
                    };
                    for &threads in thread_counts() {
                        let exec = Exec::with_threads(threads);
                        let mut got = vec![0i32; len];
                        let mut padded = vec![0u8; padded_len(p, !signed)];
                        with_isa(isa, || {
                            conv_nhwc_exec(
                                &exec,
                                p,
                                x_last,
                                x_zero,
                                &weights,
                                &mut padded,
                                Output::I32(&mut got),
                            )
                        });
                        assert_eq!(
                            got, want,
                            "{isa:?} case {case} signed={signed} zx={x_zero} zw={w_zero:?} threads={threads}"
                        );
                        // The same from the channels-first input, transposed as it is padded.
                        let mut from_first = vec![0i32; len];
                        let mut padded = vec![0u8; padded_len(p, false)];
                        with_isa(isa, || {
                            conv_nhwc_from_nchw_exec(
                                &exec,
                                p,
                                x,
                                x_zero,
                                &weights,
                                &mut padded,
                                Output::I32(&mut from_first),
                            )
                        });
                        assert_eq!(from_first, want, "{isa:?} case {case} from channels first");
                    }
                }
            }
        }
    }

    /// Requantized 8-bit outputs (the AVX-512 kernel requantizes in registers) against the
    /// reference sums requantized one by one.
    #[test]
    fn channels_last_requantized_outputs_match_reference() {
        // Under Miri (some thousand times slower) the same output channels on 2 x 2 images
        // (and 2 input channels, not 16, in the last case).
        let (images, c_last) = if cfg!(miri) {
            ([[1, 2, 2], [1, 3, 4], [1, 2, 2]], 2)
        } else {
            ([[1, 13, 17], [1, 23, 29], [1, 12, 10]], 16)
        };
        let cases = [
            params([1, 8, 70], images[0], [1; 3], [1; 3], [1; 3], [0; 3]),
            params(
                [1, 3, 16],
                images[1],
                [1, 3, 3],
                [1, 2, 2],
                [1; 3],
                [0, 1, 1],
            ),
            params(
                [2, c_last, 37],
                images[2],
                [1, 3, 3],
                [1; 3],
                [1; 3],
                [0, 1, 1],
            ),
        ];
        for isa in crate::int8::Isa::available() {
            for (case, p) in cases.iter().enumerate() {
                let (c, m) = (p.in_channels, p.out_channels);
                let klen = p.kernel_len();
                let k = c * klen;
                let x = channels_last(&bytes(p.batch * c * p.input_len(), case as u32), p.batch, c);
                let w = signed(m * k, 3 + case as u32);
                let packed = pack_taps(&w, c, klen, m);
                let sums = row_sums(&w, k);
                let weights = Weights {
                    data: &packed,
                    sums: &sums,
                    zero: &[],
                };
                let multiplier: Vec<f32> = (0..m).map(|j| 0.0007 + j as f32 * 0.00013).collect();
                let bias: Vec<i32> = (0..m as i32).map(|j| j * 97 - 2000).collect();
                let len = p.batch * m * p.output_len();
                let x_zero = 121;
                let mut sums_ref = vec![0i32; len];
                let nchw: Vec<u8> = {
                    // Back to channels first for the reference.
                    let spatial = p.input_len();
                    let mut v = vec![0u8; x.len()];
                    for n in 0..p.batch {
                        for s in 0..spatial {
                            for ch in 0..c {
                                v[(n * c + ch) * spatial + s] = x[(n * spatial + s) * c + ch];
                            }
                        }
                    }
                    v
                };
                conv_reference(p, Bytes::U8(&nchw), x_zero, &w, &[], &mut sums_ref);
                let sums_ref = channels_last(&sums_ref, p.batch, m);
                for zero in [3, 200] {
                    let want: Vec<u8> = sums_ref
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            let j = i % m;
                            super::super::requant_one(v, bias[j], multiplier[j], zero, 0, 255) as u8
                        })
                        .collect();
                    for &threads in thread_counts() {
                        let exec = Exec::with_threads(threads);
                        let mut got = vec![0u8; len];
                        let q = super::super::Requant {
                            multiplier: &multiplier,
                            bias: Some(&bias),
                            zero,
                        };
                        let mut padded = vec![0u8; padded_len(p, true)];
                        with_isa(isa, || {
                            conv_nhwc_exec(
                                &exec,
                                p,
                                Bytes::U8(&x),
                                x_zero,
                                &weights,
                                &mut padded,
                                Output::U8(&mut got, q),
                            )
                        });
                        assert_eq!(
                            got, want,
                            "{isa:?} case {case} zero={zero} threads={threads}"
                        );
                    }
                }
            }
        }
    }

    /// Depthwise channels last against the reference, raw sums and requantized bytes.
    #[test]
    fn channels_last_depthwise_matches_reference() {
        let depthwise = |c: usize, input, kernel, strides, dilations, pads| {
            let mut p = params([1, c, c], input, kernel, strides, dilations, pads);
            p.groups = c;
            p
        };
        let cases = [
            // 3x3, padding, channels that are not a multiple of 16.
            depthwise(5, [1, 9, 11], [1, 3, 3], [1; 3], [1; 3], [0, 1, 1]),
            // Two chunks of channels (64 + 6), stride 2.
            depthwise(70, [1, 10, 9], [1, 3, 3], [1, 2, 2], [1; 3], [0, 1, 1]),
            // In place: no padding, 32 channels; and a 5x5 dilated window.
            depthwise(32, [1, 8, 13], [1, 3, 3], [1; 3], [1; 3], [0; 3]),
            depthwise(16, [1, 12, 12], [1, 5, 5], [1; 3], [1, 2, 2], [0, 2, 2]),
        ];
        for isa in crate::int8::Isa::available() {
            for (case, p) in cases.iter().enumerate() {
                let (c, taps) = (p.in_channels, p.kernel_len());
                let x_raw = bytes(p.batch * c * p.input_len(), 11 + case as u32);
                let x_i8: Vec<i8> = x_raw.iter().map(|&v| v as i8).collect();
                let w = signed(c * taps, 5 + case as u32);
                let packed = pack_depthwise(&w, c, taps);
                let sums = row_sums(&w, taps);
                let weights = Weights {
                    data: &packed,
                    sums: &sums,
                    zero: &[],
                };
                let len = p.batch * c * p.output_len();
                let multiplier: Vec<f32> = (0..c).map(|j| 0.002 + j as f32 * 0.0003).collect();
                let (u8_last, i8_last) = (
                    channels_last(&x_raw, p.batch, c),
                    channels_last(&x_i8, p.batch, c),
                );
                for (signed, x_zero) in [(false, 0), (false, 131), (true, -7)] {
                    let (x, x_last) = if signed {
                        (Bytes::I8(&x_i8), Bytes::I8(&i8_last))
                    } else {
                        (Bytes::U8(&x_raw), Bytes::U8(&u8_last))
                    };
                    let mut want = vec![0i32; len];
                    conv_reference(p, x, x_zero, &w, &[], &mut want);
                    let want = channels_last(&want, p.batch, c);
                    let want_q: Vec<u8> = want
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            super::super::requant_one(v, 0, multiplier[i % c], 100, 0, 255) as u8
                        })
                        .collect();
                    for &threads in thread_counts() {
                        let exec = Exec::with_threads(threads);
                        let mut padded = vec![0u8; padded_len(p, !signed)];
                        let mut got = vec![0i32; len];
                        with_isa(isa, || {
                            depthwise_nhwc_exec(
                                &exec,
                                p,
                                x_last,
                                x_zero,
                                &weights,
                                &mut padded,
                                Output::I32(&mut got),
                            )
                        });
                        assert_eq!(got, want, "{isa:?} case {case} signed={signed} zx={x_zero}");
                        let mut got_q = vec![0u8; len];
                        let q = super::super::Requant {
                            multiplier: &multiplier,
                            bias: None,
                            zero: 100,
                        };
                        with_isa(isa, || {
                            depthwise_nhwc_exec(
                                &exec,
                                p,
                                x_last,
                                x_zero,
                                &weights,
                                &mut padded,
                                Output::U8(&mut got_q, q),
                            )
                        });
                        assert_eq!(got_q, want_q, "{isa:?} case {case} requantized");
                    }
                }
            }
        }
    }

    /// Float outputs (dequantized, then bias, residual and activations; or quantized after
    /// that) finished in registers give the bits of the generic epilogue (the portable kernel's
    /// path), for dense and depthwise layers.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "compares every kernel family with the portable one, the only one under Miri"
    )]
    fn channels_last_float_outputs_match_the_generic_epilogue() {
        use crate::epilogue::Activation;
        let dense = params(
            [1, 16, 37],
            [1, 9, 10],
            [1, 3, 3],
            [1; 3],
            [1; 3],
            [0, 1, 1],
        );
        let mut dw = params(
            [1, 40, 40],
            [1, 9, 10],
            [1, 3, 3],
            [1; 3],
            [1; 3],
            [0, 1, 1],
        );
        dw.groups = 40;
        for p in [dense, dw] {
            let (c, m, taps) = (p.in_channels, p.out_channels, p.kernel_len());
            let depthwise = p.is_depthwise();
            let x = bytes(p.input_len() * c, 21);
            let k = if depthwise { taps } else { c * taps };
            let w = signed(m * k, 22);
            let packed = if depthwise {
                pack_depthwise(&w, c, taps)
            } else {
                pack_taps(&w, c, taps, m)
            };
            let sums = row_sums(&w, k);
            let weights = Weights {
                data: &packed,
                sums: &sums,
                zero: &[],
            };
            let len = m * p.output_len();
            let scale: Vec<f32> = (0..m).map(|j| 2e-5 * (1.0 + j as f32 * 0.01)).collect();
            let bias: Vec<f32> = (0..m).map(|j| j as f32 * 0.01 - 0.2).collect();
            let residual: Vec<f32> = (0..len).map(|i| (i % 13) as f32 * 0.05 - 0.3).collect();
            let run = |isa, acts: &[Activation], res: bool, quantize: bool| {
                let d = super::super::Dequant {
                    scale: 0.5,
                    channel_scale: &scale,
                    bias: Some(&bias),
                    residual: res.then_some(&residual[..]),
                    acts,
                };
                let exec = Exec::with_threads(1);
                let mut padded = vec![0u8; padded_len(&p, true)];
                let (mut f, mut q) = (vec![0f32; len], vec![0u8; len]);
                let out = if quantize {
                    let quant = super::super::Quant {
                        scale: 0.02,
                        zero: 37,
                    };
                    Output::U8Float(&mut q, d, quant)
                } else {
                    Output::F32(&mut f, d)
                };
                with_isa(isa, || {
                    if depthwise {
                        depthwise_nhwc_exec(&exec, &p, Bytes::U8(&x), 9, &weights, &mut padded, out)
                    } else {
                        conv_nhwc_exec(&exec, &p, Bytes::U8(&x), 9, &weights, &mut padded, out)
                    }
                });
                (f.iter().map(|v| v.to_bits()).collect::<Vec<u32>>(), q)
            };
            // The outputs span their range: neither all clamped nor all zero.
            let (_, q) = run(crate::int8::Isa::Portable, &[], false, true);
            let inside = q.iter().filter(|&&v| v > 0 && v < 255).count();
            assert!(inside > len / 2, "{inside} of {len}");
            let chains: [&[Activation]; 5] = [
                &[],
                &[Activation::Relu],
                &[Activation::HardSwish, Activation::Clip(-0.1, 3.0)],
                &[
                    Activation::HardSigmoid(0.2, 0.5),
                    Activation::LeakyRelu(0.1),
                ],
                // Not in registers: the generic epilogue on every kernel family.
                &[Activation::Sigmoid],
            ];
            for acts in chains {
                for res in [false, true] {
                    for quantize in [false, true] {
                        let want = run(crate::int8::Isa::Portable, acts, res, quantize);
                        for isa in crate::int8::Isa::available() {
                            assert_eq!(
                                run(isa, acts, res, quantize),
                                want,
                                "{isa:?} depthwise={depthwise} {acts:?} residual={res} quantize={quantize}"
                            );
                        }
                    }
                }
            }
        }
    }
}
