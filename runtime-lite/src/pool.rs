//! Pooling over 1 to 3 spatial dimensions: max, average, and the global variants.

/// The geometry of one pooling window sweep; spatial arrays as in
/// [`ConvParams`](crate::conv::ConvParams) (unused trailing axes are 1 with zero padding).
#[derive(Clone, Copy, Debug)]
pub struct PoolParams {
    /// N x C: the planes pooled independently.
    pub planes: usize,
    /// Input spatial sizes.
    pub input: [usize; 3],
    /// Output spatial sizes.
    pub output: [usize; 3],
    /// Window sizes.
    pub kernel: [usize; 3],
    /// Strides.
    pub strides: [usize; 3],
    /// Dilations.
    pub dilations: [usize; 3],
    /// Padding before each axis.
    pub pads_begin: [usize; 3],
    /// Padding after each axis (only the average's `count_include_pad` divisor reads it).
    pub pads_end: [usize; 3],
}

impl PoolParams {
    /// These parameters for an input of run-time sizes (a model compiled for bounded dims):
    /// `planes` planes of `input` pixels; the output sizes follow (rounded up with
    /// `ceil_mode`), and with `auto_pad` `SAME_UPPER` (`Some(true)`) or `SAME_LOWER`
    /// (`Some(false)`) the padding too.
    ///
    /// Fails when a window no longer fits the padded input, or when an extent exceeds the
    /// one the model was compiled for (`self`'s).
    pub fn resized(
        &self,
        planes: usize,
        input: [usize; 3],
        ceil_mode: bool,
        same_upper: Option<bool>,
    ) -> Result<Self, &'static str> {
        if planes > self.planes || (0..3).any(|i| input[i] > self.input[i]) {
            return Err("pool input larger than its compiled bound");
        }
        let mut p = *self;
        p.planes = planes;
        p.input = input;
        for (i, &size) in input.iter().enumerate() {
            let span = self.dilations[i] * (self.kernel[i].max(1) - 1) + 1;
            let pads = (self.pads_begin[i], self.pads_end[i]);
            let (out, (before, after)) =
                crate::conv::resized_axis(size, pads, span, self.strides[i], ceil_mode, same_upper)
                    .ok_or("pool input smaller than its window")?;
            (p.output[i], p.pads_begin[i], p.pads_end[i]) = (out, before, after);
        }
        if (0..3).any(|i| p.output[i] > self.output[i]) {
            return Err("pool output larger than its compiled bound");
        }
        Ok(p)
    }
}

/// What a window reduces to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// The maximum of the input pixels in the window (padding never wins).
    Max,
    /// The mean of the input pixels in the window.
    Average,
    /// The sum of the input pixels divided by the window's size within the padded input.
    AverageIncludePad,
}

/// Pools `x: [planes, *input]` into `out: [planes, *output]`.
pub fn pool_f32(p: &PoolParams, kind: PoolKind, x: &[f32], out: &mut [f32]) {
    pool_f32_exec(&crate::threads::Exec::single(), p, kind, x, out);
}

/// [`pool_f32`] with the planes split across `exec`'s threads.
///
/// Two-dimensional windows without dilation (the common case) run separably: each output row
/// first reduces its window's input rows into one row (unit-stride vector work), then reduces
/// that row horizontally with a loop specialized for the window width and stride.
pub fn pool_f32_exec(
    exec: &crate::threads::Exec,
    p: &PoolParams,
    kind: PoolKind,
    x: &[f32],
    out: &mut [f32],
) {
    let in_len: usize = p.input.iter().product();
    let out_len: usize = p.output.iter().product();
    assert!(
        x.len() >= p.planes * in_len && out.len() >= p.planes * out_len,
        "pool buffers too short"
    );
    let separable = p.input[0] == 1
        && p.output[0] == 1
        && p.kernel[0] == 1
        && p.dilations[1] == 1
        && p.dilations[2] == 1
        && p.input[2] <= ROW_BUF;
    // Enough planes per task to amortize waking a worker.
    let per_task = (1usize << 14).div_ceil(in_len.max(1)).max(1);
    #[cfg(target_arch = "x86_64")]
    if pool_avx512(exec, p, kind, x, out, per_task) {
        return;
    }
    exec.for_each_chunk(
        &mut out[..p.planes * out_len],
        per_task * out_len.max(1),
        &|t, dst| {
            // One row buffer per task: zeroing it per plane would cost more than small planes.
            let mut buf = [0.0f32; ROW_BUF];
            for (i, dst) in dst.chunks_exact_mut(out_len.max(1)).enumerate() {
                let src = &x[(t * per_task + i) * in_len..][..in_len];
                if separable {
                    pool_plane_2d(p, kind, src, dst, &mut buf);
                } else {
                    for (idx, o) in dst.iter_mut().enumerate() {
                        let xo = idx % p.output[2];
                        let y = idx / p.output[2] % p.output[1];
                        let z = idx / (p.output[2] * p.output[1]);
                        *o = window(p, kind, src, [z, y, xo]);
                    }
                }
            }
        },
    );
}

/// 2-D pooling on the AVX-512 kernels, if the CPU has it and the geometry suits it (no
/// dilation, horizontal stride 1 or 2, and for averages a plane of at most `DIVISORS`
/// pixels); returns false, writing nothing, otherwise.
#[cfg(target_arch = "x86_64")]
fn pool_avx512(
    exec: &crate::threads::Exec,
    p: &PoolParams,
    kind: PoolKind,
    x: &[f32],
    out: &mut [f32],
    per_task: usize,
) -> bool {
    use crate::conv_x86_64::{average_plane, max_plane, Plane};
    /// Most output pixels of a plane whose divisors an average keeps on the stack.
    const DIVISORS: usize = 16 * 1024;
    let Some((geometry, sw)) = Plane::from_3d(
        p.input,
        p.output,
        p.kernel,
        p.strides,
        p.dilations,
        p.pads_begin,
    ) else {
        return false;
    };
    let Plane { ih, iw, oh, ow, .. } = geometry;
    let (in_len, out_len) = (ih * iw, oh * ow);
    if kind != PoolKind::Max && out_len > DIVISORS {
        return false;
    }
    exec.for_each_chunk(
        &mut out[..p.planes * out_len],
        per_task * out_len,
        &|t, dst| {
            // The divisor of every output pixel, the same for all planes (averages only).
            let mut buffer = [core::mem::MaybeUninit::<f32>::uninit(); DIVISORS];
            let filled = if kind == PoolKind::Max { 0 } else { out_len };
            for (y, row) in buffer[..filled].chunks_exact_mut(ow).enumerate() {
                let (y_lo, y_hi, y_pad) = taps(
                    y * p.strides[1],
                    p.kernel[1],
                    1,
                    ih,
                    p.pads_begin[1],
                    p.pads_end[1],
                );
                for (xo, d) in row.iter_mut().enumerate() {
                    let (x_lo, x_hi, x_pad) =
                        taps(xo * sw, p.kernel[2], 1, iw, p.pads_begin[2], p.pads_end[2]);
                    d.write(if kind == PoolKind::Average {
                        ((y_hi - y_lo) * (x_hi - x_lo)) as f32
                    } else {
                        (y_pad * x_pad) as f32
                    });
                }
            }
            // SAFETY: the first `filled` floats were just written.
            let divisors =
                unsafe { core::slice::from_raw_parts(buffer.as_ptr().cast::<f32>(), filled) };
            for (i, dst) in dst.chunks_exact_mut(out_len).enumerate() {
                let src = &x[(t * per_task + i) * in_len..][..in_len];
                // SAFETY: the CPU has AVX-512F (checked by `from_3d`); `src` holds ih * iw
                // floats, `dst` and `divisors` at least oh * ow.
                unsafe {
                    match (kind, sw) {
                        (PoolKind::Max, 1) => max_plane::<1>(geometry, src, dst),
                        (PoolKind::Max, _) => max_plane::<2>(geometry, src, dst),
                        (_, 1) => average_plane::<1>(geometry, src, divisors, dst),
                        _ => average_plane::<2>(geometry, src, divisors, dst),
                    }
                }
            }
        },
    );
    true
}

/// Widest input row the separable path handles (its row buffer lives on the stack).
const ROW_BUF: usize = 4096;
/// Longest half row the stride-2 path of [`max_pool_ord`] splits a row into.
const HALF_ROW: usize = 512;

/// `a` combined with `b` under `kind`: the maximum with NaN propagating (as ONNX Runtime's
/// max pooling does), or the sum.
#[inline(always)]
fn combine(max: bool, a: f32, b: f32) -> f32 {
    if max {
        if b > a || b.is_nan() {
            b
        } else {
            a
        }
    } else {
        a + b
    }
}

/// One plane of a 2-D (or 1-D) pooling without dilation; see [`pool_f32_exec`].
fn pool_plane_2d(
    p: &PoolParams,
    kind: PoolKind,
    src: &[f32],
    dst: &mut [f32],
    buf: &mut [f32; ROW_BUF],
) {
    let [_, ih, iw] = p.input;
    let [_, oh, ow] = p.output;
    let [_, kh, kw] = p.kernel;
    let [_, sh, sw] = p.strides;
    let [_, ph, pw] = p.pads_begin;
    let max = kind == PoolKind::Max;
    // Output columns whose whole window is inside the input: [x_in_lo, x_in_hi).
    let x_in_lo = pw.div_ceil(sw).min(ow);
    let x_in_hi = if iw + pw >= kw {
        ((iw + pw - kw) / sw + 1).min(ow)
    } else {
        0
    }
    .max(x_in_lo);
    let row = &mut buf[..iw];
    for (y, out_row) in dst.chunks_exact_mut(ow.max(1)).take(oh).enumerate() {
        let (lo, hi, y_padded) = taps(y * sh, kh, 1, ih, ph, p.pads_end[1]);
        if lo == hi {
            for (xo, o) in out_row.iter_mut().enumerate() {
                *o = window(p, kind, src, [0, y, xo]);
            }
            continue;
        }
        let y0 = y * sh + lo - ph;
        row.copy_from_slice(&src[y0 * iw..][..iw]);
        for yi in y0 + 1..y0 + (hi - lo) {
            for (a, &b) in row.iter_mut().zip(&src[yi * iw..][..iw]) {
                *a = combine(max, *a, b);
            }
        }
        let rows = (hi - lo) as f32;
        // The averages divide by the count (as every other pooling path does, so that the
        // layouts and paths agree bit for bit), not multiply by its reciprocal.
        let divisor = |x_valid: usize, x_padded: usize| match kind {
            PoolKind::Max => 1.0,
            PoolKind::Average => rows * x_valid as f32,
            PoolKind::AverageIncludePad => (y_padded * x_padded) as f32,
        };
        // Border columns: taps clipped to the input.
        for xo in (0..x_in_lo).chain(x_in_hi..ow) {
            let (l, h, x_padded) = taps(xo * sw, kw, 1, iw, pw, p.pads_end[2]);
            let base = (xo * sw).wrapping_sub(pw);
            let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
            for c in l..h {
                acc = combine(max, acc, row[base.wrapping_add(c)]);
            }
            out_row[xo] = if max {
                acc
            } else {
                acc / divisor(h - l, x_padded)
            };
        }
        // Interior columns: the whole window, at a fixed width and stride.
        let inner = &mut out_row[x_in_lo..x_in_hi];
        if !inner.is_empty() {
            let start = x_in_lo * sw - pw;
            match (kw, sw, max) {
                (2, 2, true) => reduce_row::<2, 2, true>(row, start, inner),
                (3, 2, true) => reduce_row::<3, 2, true>(row, start, inner),
                (3, 1, true) => reduce_row::<3, 1, true>(row, start, inner),
                (2, 2, false) => reduce_row::<2, 2, false>(row, start, inner),
                (3, 2, false) => reduce_row::<3, 2, false>(row, start, inner),
                (3, 1, false) => reduce_row::<3, 1, false>(row, start, inner),
                _ => {
                    for (i, o) in inner.iter_mut().enumerate() {
                        let w = &row[start + i * sw..][..kw];
                        *o = w[1..].iter().fold(w[0], |a, &b| combine(max, a, b));
                    }
                }
            }
            if !max {
                let d = divisor(kw, kw);
                inner.iter_mut().for_each(|o| *o /= d);
            }
        }
    }
}

/// `out[i] = reduce(row[start + i * SW ..][..KW])`, the window all inside `row`.
#[inline(always)]
fn reduce_row<const KW: usize, const SW: usize, const MAX: bool>(
    row: &[f32],
    start: usize,
    out: &mut [f32],
) {
    let row = &row[start..start + (out.len() - 1) * SW + KW];
    for (i, o) in out.iter_mut().enumerate() {
        let w: &[f32; KW] = row[i * SW..i * SW + KW].try_into().expect("KW taps");
        let mut acc = w[0];
        for &v in &w[1..] {
            acc = combine(MAX, acc, v);
        }
        *o = acc;
    }
}

/// The kernel taps `[lo, hi)` of one axis that land inside the input, and the number of taps
/// inside the padded input (the include-pad divisor), for the window starting at padded
/// coordinate `start`.
#[inline]
fn taps(
    start: usize,
    kernel: usize,
    dilation: usize,
    input: usize,
    pad_begin: usize,
    pad_end: usize,
) -> (usize, usize, usize) {
    let lo = pad_begin
        .saturating_sub(start)
        .div_ceil(dilation)
        .min(kernel);
    let end = input + pad_begin;
    let hi = if end > start {
        ((end - start - 1) / dilation + 1).min(kernel)
    } else {
        0
    }
    .max(lo);
    let padded_end = end + pad_end;
    let padded = if padded_end > start {
        ((padded_end - start - 1) / dilation + 1).min(kernel)
    } else {
        0
    };
    (lo, hi, padded)
}

/// The taps of output pixel `o`'s window per axis (`taps`: first and end inside the input,
/// end inside the padded input) and the input coordinate of its tap 0 (may be "negative":
/// only taps from the first are read).
fn window_taps(p: &PoolParams, o: [usize; 3]) -> ([(usize, usize, usize); 3], [usize; 3]) {
    let mut range = [(0, 0, 0); 3];
    let mut base = [0usize; 3];
    for axis in 0..3 {
        let start = o[axis] * p.strides[axis];
        range[axis] = taps(
            start,
            p.kernel[axis],
            p.dilations[axis],
            p.input[axis],
            p.pads_begin[axis],
            p.pads_end[axis],
        );
        base[axis] = start.wrapping_sub(p.pads_begin[axis]);
    }
    (range, base)
}

fn window(p: &PoolParams, kind: PoolKind, src: &[f32], o: [usize; 3]) -> f32 {
    let (range, base) = window_taps(p, o);
    let [(z_lo, z_hi, z_pad), (y_lo, y_hi, y_pad), (x_lo, x_hi, x_pad)] = range;
    let mut acc = if kind == PoolKind::Max {
        f32::NEG_INFINITY
    } else {
        0.0
    };
    for a in z_lo..z_hi {
        let zi = base[0].wrapping_add(a * p.dilations[0]);
        for b in y_lo..y_hi {
            let yi = base[1].wrapping_add(b * p.dilations[1]);
            let row = &src[(zi * p.input[1] + yi) * p.input[2]..][..p.input[2]];
            for c in x_lo..x_hi {
                let v = row[base[2].wrapping_add(c * p.dilations[2])];
                acc = match kind {
                    // NaN propagates, as in ONNX Runtime's max pooling.
                    PoolKind::Max => {
                        if v > acc || v.is_nan() {
                            v
                        } else {
                            acc
                        }
                    }
                    _ => acc + v,
                };
            }
        }
    }
    let valid = (z_hi - z_lo) * (y_hi - y_lo) * (x_hi - x_lo);
    match kind {
        PoolKind::Max => acc,
        PoolKind::Average => acc / valid as f32,
        PoolKind::AverageIncludePad => acc / (z_pad * y_pad * x_pad) as f32,
    }
}

/// Global average pooling: `out[plane] = mean(x[plane, ..])`.
pub fn global_average_f32(x: &[f32], out: &mut [f32], spatial: usize) {
    for (o, plane) in out.iter_mut().zip(x.chunks_exact(spatial.max(1))) {
        *o = sum_lanes(plane) / spatial as f32;
    }
}

/// [`global_average_f32`] channels last: `x: [N, spatial, channels]`, `out: [N, channels]`;
/// each channel's sum runs over the pixels in order (the same bits on every CPU).
pub fn global_average_nhwc_f32(x: &[f32], out: &mut [f32], spatial: usize, channels: usize) {
    global_pool_nhwc(x, out, (spatial, channels), false);
}

/// [`global_max_f32`] channels last: `x: [N, spatial, channels]`, `out: [N, channels]`.
pub fn global_max_nhwc_f32(x: &[f32], out: &mut [f32], spatial: usize, channels: usize) {
    global_pool_nhwc(x, out, (spatial, channels), true);
}

/// Floats of pixels per segment from which a channels-last global pool splits each image's
/// pixels into segments pooled apart (at most [`MAX_SEGMENTS`]).
const SEGMENT_FLOATS: usize = 1 << 15;

/// Segments per image at most.
const MAX_SEGMENTS: usize = 8;

/// Segments [`global_pool_nhwc_f32_exec`] cuts each image's pixels into: set by the shape
/// alone, never by the thread count, so that every thread count gives the same bits.
pub fn global_pool_nhwc_segments(spatial: usize, channels: usize) -> usize {
    (spatial.saturating_mul(channels) / SEGMENT_FLOATS)
        .clamp(1, MAX_SEGMENTS)
        .min(spatial.max(1))
}

/// Floats of working memory [`global_pool_nhwc_f32_exec`] needs for `batch` images: the
/// partial results of every segment but each image's first.
pub fn global_pool_nhwc_scratch_len(batch: usize, spatial: usize, channels: usize) -> usize {
    batch * (global_pool_nhwc_segments(spatial, channels) - 1) * channels
}

/// [`global_average_nhwc_f32`] (or [`global_max_nhwc_f32`] when `max`) on `exec`'s threads:
/// each image's pixels go in [`global_pool_nhwc_segments`] consecutive segments, pooled apart
/// (the first into `out`, the others into `scratch`, of [`global_pool_nhwc_scratch_len`]
/// floats) and then combined in order. A thread pools the pixels it is given, which, split
/// as the layer before split its rows, are mostly the ones its own core wrote.
///
/// Panics if `out` or `scratch` is too short for the images of `x`.
pub fn global_pool_nhwc_f32_exec(
    exec: &crate::threads::Exec,
    x: &[f32],
    out: &mut [f32],
    scratch: &mut [f32],
    (spatial, channels): (usize, usize),
    max: bool,
) {
    if channels == 0 {
        return;
    }
    let batch = x.len() / (spatial * channels).max(1);
    let segments = global_pool_nhwc_segments(spatial, channels);
    assert!(
        out.len() >= batch * channels,
        "global pool: output too short"
    );
    assert!(
        scratch.len() >= global_pool_nhwc_scratch_len(batch, spatial, channels),
        "global pool: working memory too short"
    );
    let partial = segments - 1;
    {
        let sink = crate::threads::SharedMut::new(&mut out[..batch * channels]);
        let rest = crate::threads::SharedMut::new(&mut scratch[..batch * partial * channels]);
        exec.for_each(batch * segments, &|task| {
            let (n, seg) = (task / segments, task % segments);
            let (p0, p1) = (seg * spatial / segments, (seg + 1) * spatial / segments);
            let image = &x[n * spatial * channels..];
            let pixels = &image[p0 * channels..p1 * channels];
            // SAFETY: task (n, seg) alone writes image n's segment seg: its first into `out`,
            // the others into their own row of `scratch`.
            let dst = unsafe {
                if seg == 0 {
                    sink.slice(n * channels, channels)
                } else {
                    rest.slice((n * partial + seg - 1) * channels, channels)
                }
            };
            pool_pixels(pixels, dst, max);
        });
    }
    for (n, o) in out[..batch * channels]
        .chunks_exact_mut(channels)
        .enumerate()
    {
        for part in scratch[n * partial * channels..][..partial * channels].chunks_exact(channels) {
            for (a, &v) in o.iter_mut().zip(part) {
                if max {
                    if v > *a || v.is_nan() {
                        *a = v;
                    }
                } else {
                    *a += v;
                }
            }
        }
        if !max {
            for a in o.iter_mut() {
                *a /= spatial as f32;
            }
        }
    }
}

/// Each image of `x: [N, spatial, channels]` pooled into `out: [N, channels]` (the maximum
/// when `max`, else the mean), on the widest vectors the CPU has.
fn global_pool_nhwc(x: &[f32], out: &mut [f32], (spatial, channels): (usize, usize), max: bool) {
    if channels == 0 {
        return;
    }
    for (o, image) in out
        .chunks_exact_mut(channels)
        .zip(x.chunks_exact((spatial * channels).max(1)))
    {
        pool_pixels(image, o, max);
        if !max {
            for a in o.iter_mut() {
                *a /= spatial as f32;
            }
        }
    }
}

/// The sum (or the maximum, when `max`; a NaN winning) over the pixels of `pixels`
/// (`[pixels, channels]`) of each channel, into `out` (`[channels]`), in pixel order, on the
/// widest vectors the CPU has.
fn pool_pixels(pixels: &[f32], out: &mut [f32], max: bool) {
    /// The work as a kernel, compiled for the widest vectors the CPU has.
    struct Pool<'a> {
        pixels: &'a [f32],
        out: &'a mut [f32],
        max: bool,
    }
    impl crate::math::lanes::Kernel for Pool<'_> {
        type Output = ();
        #[inline(always)]
        fn run<S: crate::math::lanes::Lanes>(self, _lanes: S) {
            pool_pixels_body(self.pixels, self.out, self.max);
        }
    }
    crate::math::lanes::dispatch(Pool { pixels, out, max });
}

/// [`pool_pixels`]'s work, inlined into each instruction set's copy.
#[inline(always)]
fn pool_pixels_body(pixels: &[f32], o: &mut [f32], max: bool) {
    let channels = o.len();
    if max {
        o.fill(f32::NEG_INFINITY);
        for pixel in pixels.chunks_exact(channels) {
            for (m, &v) in o.iter_mut().zip(pixel) {
                if v > *m || v.is_nan() {
                    *m = v;
                }
            }
        }
    } else {
        o.fill(0.0);
        for pixel in pixels.chunks_exact(channels) {
            for (a, &v) in o.iter_mut().zip(pixel) {
                *a += v;
            }
        }
    }
}

/// The sum of `values` in sixteen partial sums added in a fixed order: vectorizable, and the
/// same bits on every CPU and every run.
fn sum_lanes(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a += v;
    }
    // A fixed pairwise tree.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}

/// Global max pooling: `out[plane] = max(x[plane, ..])`.
pub fn global_max_f32(x: &[f32], out: &mut [f32], spatial: usize) {
    for (o, plane) in out.iter_mut().zip(x.chunks_exact(spatial.max(1))) {
        *o = plane.iter().fold(
            f32::NEG_INFINITY,
            |m, &v| if v > m || v.is_nan() { v } else { m },
        );
    }
}

/// Calls `f(offset)` for every input pixel (offset within its plane) of the window at output
/// position `o`; padding is skipped.
#[inline]
fn for_window(p: &PoolParams, o: [usize; 3], mut f: impl FnMut(usize)) {
    let mut range = [(0, 0); 3];
    let mut base = [0usize; 3];
    for axis in 0..3 {
        let start = o[axis] * p.strides[axis];
        let (lo, hi, _) = taps(
            start,
            p.kernel[axis],
            p.dilations[axis],
            p.input[axis],
            p.pads_begin[axis],
            p.pads_end[axis],
        );
        range[axis] = (lo, hi);
        base[axis] = start.wrapping_sub(p.pads_begin[axis]);
    }
    for a in range[0].0..range[0].1 {
        let zi = base[0].wrapping_add(a * p.dilations[0]);
        for b in range[1].0..range[1].1 {
            let yi = base[1].wrapping_add(b * p.dilations[1]);
            let row = (zi * p.input[1] + yi) * p.input[2];
            for c in range[2].0..range[2].1 {
                f(row + base[2].wrapping_add(c * p.dilations[2]));
            }
        }
    }
}

/// Calls `f(plane, out_index, output_position)` for every output pixel.
#[inline]
fn for_outputs(p: &PoolParams, mut f: impl FnMut(usize, usize, [usize; 3])) {
    let mut idx = 0;
    for plane in 0..p.planes {
        for z in 0..p.output[0] {
            for y in 0..p.output[1] {
                for xo in 0..p.output[2] {
                    f(plane, idx, [z, y, xo]);
                    idx += 1;
                }
            }
        }
    }
}

/// Lp pooling: `out = (sum over the window of |x|^order)^(1 / order)` (padding adds 0).
pub fn lp_pool_f32(p: &PoolParams, order: u32, x: &[f32], out: &mut [f32]) {
    let in_len: usize = p.input.iter().product();
    let out_len: usize = p.output.iter().product();
    assert!(
        x.len() >= p.planes * in_len && out.len() >= p.planes * out_len,
        "pool buffers too short"
    );
    let e = f64::from(order);
    for_outputs(p, |plane, idx, o| {
        let src = &x[plane * in_len..][..in_len];
        let mut acc = 0.0f64;
        for_window(p, o, |off| {
            acc += crate::math64::pow_f64(f64::from(src[off]).abs(), e);
        });
        out[idx] = crate::math64::pow_f64(acc, 1.0 / e) as f32;
    });
}

/// Global Lp pooling: `out[plane] = (sum |x|^order)^(1 / order)` over each plane.
pub fn global_lp_f32(x: &[f32], out: &mut [f32], spatial: usize, order: u32) {
    let e = f64::from(order);
    for (o, plane) in out.iter_mut().zip(x.chunks_exact(spatial.max(1))) {
        let acc: f64 = plane
            .iter()
            .map(|&v| crate::math64::pow_f64(f64::from(v).abs(), e))
            .sum();
        *o = crate::math64::pow_f64(acc, 1.0 / e) as f32;
    }
}

/// Max pooling for any ordered element type, optionally writing each maximum's index into
/// the whole input tensor (`[N, C, *input]` flattened; with `column_major`, the spatial part
/// of the index counts the first spatial axis fastest). The first maximum wins; a NaN
/// propagates.
pub fn max_pool_indexed<T: Copy + PartialOrd>(
    p: &PoolParams,
    x: &[T],
    out: &mut [T],
    mut indices: Option<&mut [i64]>,
    column_major: bool,
) {
    let in_len: usize = p.input.iter().product();
    let out_len: usize = p.output.iter().product();
    assert!(
        x.len() >= p.planes * in_len && out.len() >= p.planes * out_len,
        "pool buffers too short"
    );
    if indices.is_none() && p.dilations == [1, 1, 1] {
        max_pool_dense(p, x, out);
        return;
    }
    for_outputs(p, |plane, idx, o| {
        let src = &x[plane * in_len..][..in_len];
        let mut best: Option<(T, usize)> = None;
        for_window(p, o, |off| {
            let v = src[off];
            best = match best {
                None => Some((v, off)),
                // `v != v` is a NaN: it wins, as in the f32 kernel.
                #[allow(clippy::eq_op, reason = "NaN test for a generic element")]
                Some((b, _)) if v > b || (v != v && b == b) => Some((v, off)),
                keep => keep,
            };
        });
        let (v, off) = best.unwrap_or((src[0], 0));
        out[idx] = v;
        if let Some(ind) = indices.as_deref_mut() {
            let spatial = if column_major {
                // Column-major over all three axes: axes of size 1 (unused, whichever end
                // they pad) contribute nothing, so this is the real axes' column-major index.
                let [d0, d1, d2] = p.input;
                let (zi, yi, xi) = (off / (d1 * d2), off / d2 % d1, off % d2);
                zi + yi * d0 + xi * d0 * d1
            } else {
                off
            };
            ind[idx] = (plane * in_len + spatial) as i64;
        }
    });
}

/// The input positions `[lo, hi)` along one axis that output position `o`'s window covers
/// (unit dilation), clipped to the input.
#[inline]
fn window_span(o: usize, stride: usize, kernel: usize, pad: usize, len: usize) -> (usize, usize) {
    let start = o * stride;
    let lo = start.saturating_sub(pad);
    let hi = (start + kernel).saturating_sub(pad).min(len);
    (lo, hi.max(lo))
}

/// Max pooling in the channels-last layout: `x: [N, *input, C]` and `out: [N, *output, C]`
/// with `p.planes = N` and `channels = C`. Each output pixel takes the elementwise maximum of
/// its window's channel runs (a pass over contiguous elements that vectorizes); a NaN wins,
/// as in the channels-first kernels. Dilations must be 1. A window wholly in the padding takes
/// its image's first pixel, as the channels-first kernel for ordered types does.
///
/// Panics if a buffer is shorter than `p` says or a dilation is not 1.
pub fn max_pool_nhwc<T: Copy + PartialOrd>(
    p: &PoolParams,
    channels: usize,
    x: &[T],
    out: &mut [T],
) {
    let [id, ih, iw] = p.input;
    let [od, oh, ow] = p.output;
    let c = channels;
    let (in_len, out_len) = (id * ih * iw * c, od * oh * ow * c);
    assert!(
        x.len() >= p.planes * in_len && out.len() >= p.planes * out_len,
        "pool buffers too short"
    );
    assert!(
        p.dilations == [1, 1, 1],
        "channels-last max pool: dilations"
    );
    if c == 0 {
        return;
    }
    for n in 0..p.planes {
        let image = &x[n * in_len..][..in_len];
        let dst = &mut out[n * out_len..][..out_len];
        let mut pixels = dst.chunks_exact_mut(c);
        for oz in 0..od {
            let (z0, z1) = window_span(oz, p.strides[0], p.kernel[0], p.pads_begin[0], id);
            for oy in 0..oh {
                let (y0, y1) = window_span(oy, p.strides[1], p.kernel[1], p.pads_begin[1], ih);
                for ox in 0..ow {
                    let (x0, x1) = window_span(ox, p.strides[2], p.kernel[2], p.pads_begin[2], iw);
                    let Some(pixel) = pixels.next() else { return };
                    // A run of channels at a time in a local accumulator, which stays in
                    // registers (stores masked by the comparison would each wait on the last).
                    for c0 in (0..c).step_by(NHWC_LANES) {
                        let width = NHWC_LANES.min(c - c0);
                        let mut acc = [image[c0]; NHWC_LANES];
                        let mut first = true;
                        for z in z0..z1 {
                            for y in y0..y1 {
                                for xx in x0..x1 {
                                    let at = ((z * ih + y) * iw + xx) * c + c0;
                                    let src = &image[at..at + width];
                                    if first {
                                        acc[..width].copy_from_slice(src);
                                        first = false;
                                    } else if width == NHWC_LANES {
                                        let src: &[T; NHWC_LANES] =
                                            src.try_into().unwrap_or_else(|_| unreachable!());
                                        max_lanes(&mut acc, src);
                                    } else {
                                        max_lanes(&mut acc[..width], src);
                                    }
                                }
                            }
                        }
                        if first {
                            acc[..width].copy_from_slice(&image[c0..c0 + width]);
                        }
                        pixel[c0..c0 + width].copy_from_slice(&acc[..width]);
                    }
                }
            }
        }
    }
}

/// [`max_pool_nhwc`] on `f32`, with AVX-512 when the CPU has it: each output row lists its
/// windows' input rows once, and each pixel goes over its window's columns in those rows, up
/// to 64 channels at a time (four vectors).
///
/// Panics as [`max_pool_nhwc`] does.
pub fn max_pool_nhwc_f32(p: &PoolParams, channels: usize, x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm_x86_64::has_avx512() && p.kernel.iter().product::<usize>() <= POOL_TAPS {
        let (in_len, out_len) = (
            p.input.iter().product::<usize>() * channels,
            p.output.iter().product::<usize>() * channels,
        );
        assert!(
            x.len() >= p.planes * in_len && out.len() >= p.planes * out_len,
            "pool buffers too short"
        );
        assert!(
            p.dilations == [1, 1, 1],
            "channels-last max pool: dilations"
        );
        if channels == 0 || in_len == 0 {
            return;
        }
        let iw = p.input[2];
        // The input rows of the current output row's windows, in their order.
        let mut rows = [0usize; POOL_TAPS];
        for (image, dst) in x
            .chunks_exact(in_len)
            .zip(out.chunks_exact_mut(out_len))
            .take(p.planes)
        {
            let mut pixel = 0;
            for oz in 0..p.output[0] {
                for oy in 0..p.output[1] {
                    let n_rows = window_rows(p, [oz, oy], channels, &mut rows);
                    for ox in 0..p.output[2] {
                        let xs = window_span(ox, p.strides[2], p.kernel[2], p.pads_begin[2], iw);
                        let window = crate::conv_x86_64::PoolWindow {
                            rows: &rows[..n_rows],
                            col0: xs.0 * channels,
                            cols: xs.1 - xs.0,
                            step: channels,
                        };
                        let at = pixel * channels;
                        let dst = &mut dst[at..at + channels];
                        // SAFETY: AVX-512F is present; the window's pixels lie in the image
                        // (`window_span` clips them), and so does its first pixel.
                        unsafe { crate::conv_x86_64::max_window_nhwc(image, &window, dst) };
                        pixel += 1;
                    }
                }
            }
        }
        return;
    }
    max_pool_nhwc(p, channels, x, out);
}

/// Average pooling in the channels-last layout (`kind` [`PoolKind::Average`] or
/// [`PoolKind::AverageIncludePad`]): `x: [N, *input, C]` and `out: [N, *output, C]` with
/// `p.planes = N` and `channels = C`; each channel sums its window's taps in the order the
/// channels-first kernel does and divides by the same count, so the results are the same.
///
/// Panics if a buffer is shorter than `p` says or `kind` is [`PoolKind::Max`].
pub fn avg_pool_nhwc_f32(
    p: &PoolParams,
    kind: PoolKind,
    channels: usize,
    x: &[f32],
    out: &mut [f32],
) {
    assert!(kind != PoolKind::Max, "channels-last average pool: not max");
    let [id, ih, iw] = p.input;
    let c = channels;
    let (in_len, out_len) = (id * ih * iw * c, p.output.iter().product::<usize>() * c);
    assert!(
        x.len() >= p.planes * in_len && out.len() >= p.planes * out_len,
        "pool buffers too short"
    );
    if c == 0 || out_len == 0 {
        return;
    }
    // Each window holds at most the kernel's pixels.
    #[cfg(target_arch = "x86_64")]
    let avx512 =
        crate::gemm_x86_64::has_avx512() && p.kernel.iter().product::<usize>() <= POOL_TAPS;
    // The input rows of the current output row's windows, in their order.
    #[cfg(target_arch = "x86_64")]
    let mut rows = [0usize; POOL_TAPS];
    #[cfg(target_arch = "x86_64")]
    let d = p.dilations;
    for n in 0..p.planes {
        let image = &x[n * in_len..][..in_len];
        let mut pixels = out[n * out_len..][..out_len].chunks_exact_mut(c);
        for oz in 0..p.output[0] {
            for oy in 0..p.output[1] {
                #[cfg(target_arch = "x86_64")]
                let n_rows = if avx512 {
                    window_rows(p, [oz, oy], c, &mut rows)
                } else {
                    0
                };
                for ox in 0..p.output[2] {
                    let (range, base) = window_taps(p, [oz, oy, ox]);
                    let [(z_lo, z_hi, z_pad), (y_lo, y_hi, y_pad), (x_lo, x_hi, x_pad)] = range;
                    let count = match kind {
                        PoolKind::AverageIncludePad => z_pad * y_pad * x_pad,
                        _ => (z_hi - z_lo) * (y_hi - y_lo) * (x_hi - x_lo),
                    } as f32;
                    let Some(pixel) = pixels.next() else { return };
                    #[cfg(target_arch = "x86_64")]
                    if avx512 {
                        let window = crate::conv_x86_64::PoolWindow {
                            rows: &rows[..n_rows],
                            col0: base[2].wrapping_add(x_lo * d[2]).wrapping_mul(c),
                            cols: x_hi - x_lo,
                            step: d[2] * c,
                        };
                        assert!(
                            window.last().is_none_or(|at| at + c <= image.len()),
                            "average pool: window outside"
                        );
                        // SAFETY: AVX-512F is present; each of the window's pixels holds `c`
                        // floats in the image (its last, the largest, checked just above) and
                        // the output pixel holds `c` floats.
                        unsafe {
                            crate::conv_x86_64::avg_window_nhwc(image, &window, count, pixel)
                        };
                        continue;
                    }
                    for c0 in (0..c).step_by(NHWC_LANES) {
                        let width = NHWC_LANES.min(c - c0);
                        let mut acc = [0f32; NHWC_LANES];
                        for at in window_pixels(p, range, base) {
                            let at = at * c + c0;
                            for (s, &v) in acc.iter_mut().zip(&image[at..at + width]) {
                                *s += v;
                            }
                        }
                        for (d, &s) in pixel[c0..c0 + width].iter_mut().zip(&acc) {
                            *d = s / count;
                        }
                    }
                }
            }
        }
    }
}

/// The pixels (`(z * H + y) * W + x`) of one pooling window of `p`, from
/// [`window_taps`]'s ranges and base, in row-major order.
fn window_pixels(
    p: &PoolParams,
    range: [(usize, usize, usize); 3],
    base: [usize; 3],
) -> impl Iterator<Item = usize> + '_ {
    let [(z_lo, z_hi, _), (y_lo, y_hi, _), (x_lo, x_hi, _)] = range;
    let [_, ih, iw] = p.input;
    let d = p.dilations;
    (z_lo..z_hi).flat_map(move |a| {
        let zi = base[0].wrapping_add(a * d[0]);
        (y_lo..y_hi).flat_map(move |b| {
            let yi = base[1].wrapping_add(b * d[1]);
            (x_lo..x_hi).map(move |t| (zi * ih + yi) * iw + base[2].wrapping_add(t * d[2]))
        })
    })
}

/// Lists in `rows` the input rows (offsets of their first pixel, `c` channels a pixel) of the
/// windows of output row `(oz, oy)` of `p`, in the windows' order (depth, then height, each
/// clipped to the input, dilations as [`window_taps`] takes them); returns how many there are.
///
/// Panics if there are more than [`POOL_TAPS`] (the callers check the kernel's size first).
#[cfg(target_arch = "x86_64")]
fn window_rows(
    p: &PoolParams,
    [oz, oy]: [usize; 2],
    c: usize,
    rows: &mut [usize; POOL_TAPS],
) -> usize {
    let ([(z_lo, z_hi, _), (y_lo, y_hi, _), _], base) = window_taps(p, [oz, oy, 0]);
    let [_, ih, iw] = p.input;
    let mut n = 0;
    for a in z_lo..z_hi {
        let zi = base[0].wrapping_add(a * p.dilations[0]);
        for b in y_lo..y_hi {
            let yi = base[1].wrapping_add(b * p.dilations[1]);
            rows[n] = (zi * ih + yi) * iw * c;
            n += 1;
        }
    }
    n
}

/// Window pixels up to which the channels-last f32 poolings take the AVX-512 kernels (a 7 x 7
/// or a 4 x 4 x 4 window; their input rows are listed in an array of this size); larger
/// windows take the portable loops.
#[cfg(target_arch = "x86_64")]
const POOL_TAPS: usize = 64;

/// [`max_pool_nhwc`] with bands of output rows split across `exec`'s threads when the
/// pooling is big (the same values as one call).
pub fn max_pool_nhwc_exec<T: Copy + PartialOrd + Send + Sync>(
    exec: &crate::threads::Exec,
    p: &PoolParams,
    channels: usize,
    x: &[T],
    out: &mut [T],
) {
    split_rows_nhwc(exec, p, channels, x, out, |p, x, out| {
        max_pool_nhwc(p, channels, x, out);
    });
}

/// [`max_pool_nhwc_f32`] with bands of output rows split across `exec`'s threads when the
/// pooling is big (the same values as one call).
pub fn max_pool_nhwc_f32_exec(
    exec: &crate::threads::Exec,
    p: &PoolParams,
    channels: usize,
    x: &[f32],
    out: &mut [f32],
) {
    split_rows_nhwc(exec, p, channels, x, out, |p, x, out| {
        max_pool_nhwc_f32(p, channels, x, out);
    });
}

/// [`avg_pool_nhwc_f32`] with bands of output rows split across `exec`'s threads when the
/// pooling is big (the same values as one call).
pub fn avg_pool_nhwc_f32_exec(
    exec: &crate::threads::Exec,
    p: &PoolParams,
    kind: PoolKind,
    channels: usize,
    x: &[f32],
    out: &mut [f32],
) {
    split_rows_nhwc(exec, p, channels, x, out, |p, x, out| {
        avg_pool_nhwc_f32(p, kind, channels, x, out);
    });
}

/// Output elements times window taps from which a channels-last pooling splits across threads,
/// and about the work of one task.
const NHWC_SPLIT_WORK: usize = 1 << 16;

/// Runs a channels-last pooling `kernel` (one of [`max_pool_nhwc`], [`max_pool_nhwc_f32`],
/// [`avg_pool_nhwc_f32`] with its channel count and kind bound) over runs of output rows split
/// across `exec`'s threads, when the pooling is 2-D and big enough. Each run is the same
/// pooling over a band of the image: the band starts at the first input row its windows read
/// (that much less padding above, the padding below unchanged), so every output pixel reads
/// the same window and gets the same value as in one call over the whole image.
fn split_rows_nhwc<T: Copy + Send + Sync, K: Fn(&PoolParams, &[T], &mut [T]) + Sync>(
    exec: &crate::threads::Exec,
    p: &PoolParams,
    channels: usize,
    x: &[T],
    out: &mut [T],
    kernel: K,
) {
    let [id, ih, iw] = p.input;
    let [od, oh, ow] = p.output;
    let (in_len, out_len) = (id * ih * iw * channels, od * oh * ow * channels);
    let (s, k, pad) = (p.strides[1], p.kernel[1], p.pads_begin[1]);
    let taps: usize = p.kernel.iter().product();
    let work = p.planes * out_len * taps;
    // Bands change only rows: 2-D windows, undilated vertically, each window reaching into
    // the image (a window wholly in the padding takes the image's first pixel, which a band
    // would change).
    let bands = exec.threads() > 1
        && work >= NHWC_SPLIT_WORK
        && id == 1
        && od == 1
        && oh > 1
        && p.dilations[1] == 1
        && pad < k
        && (oh - 1) * s < ih + pad
        && x.len() >= p.planes * in_len
        && out.len() >= p.planes * out_len;
    if !bands {
        return kernel(p, x, out);
    }
    let row_work = ow * channels * taps;
    let rows = NHWC_SPLIT_WORK.div_ceil(row_work).clamp(1, oh);
    let per_image = oh.div_ceil(rows);
    let row_len = ow * channels;
    let shared = crate::threads::SharedMut::new(&mut out[..p.planes * out_len]);
    exec.for_each(p.planes * per_image, &|t| {
        let (n, band) = (t / per_image, t % per_image);
        let (first, last) = (band * rows, ((band + 1) * rows).min(oh));
        // The band's first window starts at input row `first * s - pad`, clipped at 0.
        let (skip, pad_top) = match (first * s).checked_sub(pad) {
            Some(skip) => (skip, 0),
            None => (0, pad - first * s),
        };
        let mut sub = *p;
        sub.planes = 1;
        sub.input[1] = ih - skip;
        sub.output[1] = last - first;
        sub.pads_begin[1] = pad_top;
        let image = &x[n * in_len + skip * iw * channels..(n + 1) * in_len];
        // SAFETY: task t writes rows [first, last) of image n, which no other task writes.
        let dst = unsafe { shared.slice(n * out_len + first * row_len, (last - first) * row_len) };
        kernel(&sub, image, dst);
    });
}

/// Channels the channels-last max pool keeps in its accumulator.
const NHWC_LANES: usize = 64;

/// `acc[i] = max(acc[i], src[i])`, a NaN winning (`v != v` never holds for integers);
/// branch-free, so it vectorizes.
#[inline(always)]
fn max_lanes<T: Copy + PartialOrd>(acc: &mut [T], src: &[T]) {
    for (a, &v) in acc.iter_mut().zip(src) {
        #[allow(clippy::eq_op, reason = "NaN test")]
        let take = v > *a || v != v;
        *a = if take { v } else { *a };
    }
}

/// Max pooling of totally ordered elements (the 8-bit types of quantized models: no NaN),
/// without indices: per output row, the window's input rows are reduced element by element
/// into one row (a pass that vectorizes), then each output takes the maximum of its columns.
/// 3-D windows, dilations and rows wider than the row buffer take [`max_pool_indexed`]'s path.
///
/// Panics if a buffer is shorter than `p` says.
pub fn max_pool_ord<T: Copy + Ord>(p: &PoolParams, x: &[T], out: &mut [T]) {
    let [id, ih, iw] = p.input;
    let [od, oh, ow] = p.output;
    let (in_len, out_len) = (id * ih * iw, od * oh * ow);
    assert!(
        x.len() >= p.planes * in_len && out.len() >= p.planes * out_len,
        "pool buffers too short"
    );
    let flat = id == 1 && od == 1 && p.kernel[0] == 1 && p.dilations == [1, 1, 1];
    // A window wholly in the padding has no element (ONNX pads with -inf): the general path.
    let empty = |n: usize, axis: usize, len: usize| {
        (0..n).any(|o| {
            let (lo, hi) = window_span(o, p.strides[axis], p.kernel[axis], p.pads_begin[axis], len);
            lo >= hi
        })
    };
    if !flat || iw > ROW_BUF || p.planes * out_len == 0 || empty(oh, 1, ih) || empty(ow, 2, iw) {
        return max_pool_dense(p, x, out);
    }
    let mut rows = [x[0]; ROW_BUF];
    let rows = &mut rows[..iw];
    let (mut even, mut odd) = ([x[0]; HALF_ROW], [x[0]; HALF_ROW]);
    for plane in 0..p.planes {
        let src = &x[plane * in_len..][..in_len];
        let dst = &mut out[plane * out_len..][..out_len];
        for (oy, dst) in dst.chunks_exact_mut(ow).enumerate() {
            let (y0, y1) = window_span(oy, p.strides[1], p.kernel[1], p.pads_begin[1], ih);
            rows.copy_from_slice(&src[y0 * iw..][..iw]);
            for y in y0 + 1..y1 {
                for (r, &v) in rows.iter_mut().zip(&src[y * iw..][..iw]) {
                    *r = (*r).max(v);
                }
            }
            let (kw, sw) = (p.kernel[2], p.strides[2]);
            let whole = p.pads_begin[2] == 0 && (ow - 1) * sw + kw <= iw;
            if kw == 2 && sw == 2 && whole {
                // The common 2x2 / stride 2 window: pairs.
                for (o, pair) in dst.iter_mut().zip(rows.chunks_exact(2)) {
                    *o = pair[0].max(pair[1]);
                }
            } else if sw == 2 && whole && iw <= 2 * HALF_ROW {
                // Stride 2: the row split into even and odd columns, so that every kernel
                // column is a contiguous run of one of them.
                let pairs = rows.chunks_exact(2);
                if let [last] = pairs.remainder() {
                    even[iw / 2] = *last;
                }
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
                    *e = pair[0];
                    *o = pair[1];
                }
                dst.copy_from_slice(&even[..ow]);
                for j in 1..kw {
                    let half = if j % 2 == 0 { &even } else { &odd };
                    for (o, &v) in dst.iter_mut().zip(&half[j / 2..j / 2 + ow]) {
                        *o = (*o).max(v);
                    }
                }
            } else if whole {
                // Every window whole: one strided pass per kernel column.
                for (o, &v) in dst.iter_mut().zip(rows.iter().step_by(sw)) {
                    *o = v;
                }
                for j in 1..kw {
                    for (o, &v) in dst.iter_mut().zip(rows[j..].iter().step_by(sw)) {
                        *o = (*o).max(v);
                    }
                }
            } else {
                for (ox, o) in dst.iter_mut().enumerate() {
                    let (x0, x1) = window_span(ox, sw, kw, p.pads_begin[2], iw);
                    *o = rows[x0..x1].iter().copied().fold(rows[x0], T::max);
                }
            }
        }
    }
}

/// [`max_pool_indexed`] without indices and with unit dilation: each window's rows scanned
/// where they lie, its bounds clipped once per output position.
fn max_pool_dense<T: Copy + PartialOrd>(p: &PoolParams, x: &[T], out: &mut [T]) {
    let [id, ih, iw] = p.input;
    let [od, oh, ow] = p.output;
    let (in_len, out_len) = (id * ih * iw, od * oh * ow);
    for plane in 0..p.planes {
        let src = &x[plane * in_len..][..in_len];
        let dst = &mut out[plane * out_len..][..out_len];
        let mut idx = 0;
        for oz in 0..od {
            let (z0, z1) = window_span(oz, p.strides[0], p.kernel[0], p.pads_begin[0], id);
            for oy in 0..oh {
                let (y0, y1) = window_span(oy, p.strides[1], p.kernel[1], p.pads_begin[1], ih);
                for ox in 0..ow {
                    let (x0, x1) = window_span(ox, p.strides[2], p.kernel[2], p.pads_begin[2], iw);
                    let mut best: Option<T> = None;
                    for z in z0..z1 {
                        for y in y0..y1 {
                            for &v in &src[(z * ih + y) * iw + x0..(z * ih + y) * iw + x1] {
                                best = match best {
                                    None => Some(v),
                                    // `v != v` is a NaN: it wins, as in the f32 kernel.
                                    #[allow(
                                        clippy::eq_op,
                                        reason = "NaN test for a generic element"
                                    )]
                                    Some(b) if v > b || (v != v && b == b) => Some(v),
                                    keep => keep,
                                };
                            }
                        }
                    }
                    dst[idx] = best.unwrap_or(src[0]);
                    idx += 1;
                }
            }
        }
    }
}

/// `MaxUnpool`: `out` (shape `shape`) is zero except where MaxPool's Indices point: index
/// `indices[j]` counts positions in a tensor of shape `natural` (the unpooled shape the
/// window gives), and `x[j]` lands at the same coordinates in `out`. Indices outside are
/// skipped.
pub fn max_unpool_f32(
    x: &[f32],
    indices: &[i64],
    out: &mut [f32],
    natural: &[usize],
    shape: &[usize],
) {
    out.fill(0.0);
    for (&v, &i) in x.iter().zip(indices) {
        let Ok(mut rem) = usize::try_from(i) else {
            continue;
        };
        let mut offset = 0;
        let mut scale = 1;
        let mut inside = true;
        for (&n, &s) in natural.iter().zip(shape).rev() {
            let c = rem % n.max(1);
            rem /= n.max(1);
            inside &= c < s;
            offset += c * scale;
            scale *= s;
        }
        if inside && rem == 0 {
            if let Some(o) = out.get_mut(offset) {
                *o = v;
            }
        }
    }
}

#[cfg(any(test, all(fuzzing, feature = "std")))]
#[cfg_attr(
    fuzzing,
    allow(dead_code, reason = "helpers of tests that fuzzing builds drop")
)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn max_and_average_with_padding() {
        // 1 plane, 3x3 input, 2x2 window, stride 1, pad 1 begin/end -> 4x4 output.
        let p = PoolParams {
            planes: 1,
            input: [1, 3, 3],
            output: [1, 4, 4],
            kernel: [1, 2, 2],
            strides: [1, 1, 1],
            dilations: [1, 1, 1],
            pads_begin: [0, 1, 1],
            pads_end: [0, 1, 1],
        };
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let mut out = [0.0; 16];
        pool_f32(&p, PoolKind::Max, &x, &mut out);
        assert_eq!(out[..4], [1.0, 2.0, 3.0, 3.0]);
        pool_f32(&p, PoolKind::Average, &x, &mut out);
        assert_eq!(out[5], 3.0);
        assert_eq!(out[0], 1.0);
        pool_f32(&p, PoolKind::AverageIncludePad, &x, &mut out);
        assert_eq!(out[0], 0.25);
    }

    #[test]
    fn lp_indexed_max_and_unpool() {
        // 1 plane, 2x2 input, 2x2 window -> one output.
        let p = PoolParams {
            planes: 1,
            input: [1, 2, 2],
            output: [1, 1, 1],
            kernel: [1, 2, 2],
            strides: [1, 1, 1],
            dilations: [1, 1, 1],
            pads_begin: [0; 3],
            pads_end: [0; 3],
        };
        let x = [3.0f32, -4.0, 0.0, 1.0];
        let mut out = [0.0f32];
        lp_pool_f32(&p, 2, &x, &mut out);
        assert!((out[0] - 26.0f32.sqrt()).abs() < 1e-6);
        let mut ind = [0i64];
        max_pool_indexed(&p, &[1u8, 7, 7, 2], &mut [0u8], Some(&mut ind), false);
        assert_eq!(ind, [1]);
        // Column-major: (row 0, col 1) of a 2x2 plane is 0 + 1 * 2.
        max_pool_indexed(&p, &[1u8, 7, 3, 2], &mut [0u8], Some(&mut ind), true);
        assert_eq!(ind, [2]);
        let mut un = [9.0f32; 4];
        max_unpool_f32(&[5.0], &[2], &mut un, &[1, 1, 2, 2], &[1, 1, 2, 2]);
        assert_eq!(un, [0.0, 0.0, 5.0, 0.0]);
        let mut g = [0.0f32];
        global_lp_f32(&[3.0, 4.0], &mut g, 2, 2);
        assert!((g[0] - 5.0).abs() < 1e-6);
    }

    #[test]
    fn global_average_sums_in_lanes_close_to_f64() {
        for len in [0usize, 1, 15, 16, 17, 192, 1000] {
            let x: std::vec::Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 113) as f32 * 0.37 - 20.0)
                .collect();
            let want = x.iter().map(|&v| f64::from(v)).sum::<f64>() / len.max(1) as f64;
            let mut out = [0f32];
            global_average_f32(&x, &mut out, len.max(1));
            if len > 0 {
                assert!(
                    (f64::from(out[0]) - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{len}"
                );
            }
        }
    }

    /// Channels-last max and average pooling of `c` channels (`p.planes == c`) against the
    /// channels-first kernel on deterministic values with one NaN, bit for bit, with AVX-512
    /// on and reported absent.
    fn check_channels_last(p: PoolParams, c: usize) {
        let (input, output, kernel, strides, pads) =
            (p.input, p.output, p.kernel, p.strides, p.pads_begin);
        let n: usize = input.iter().product::<usize>() * c;
        let mut x: std::vec::Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32) - 50.0).collect();
        // A NaN wins wherever its window reaches.
        x[n / 3] = f32::NAN;
        let spatial = n / c;
        let last = |v: &[f32], s: usize| -> std::vec::Vec<f32> {
            (0..v.len()).map(|i| v[(i % c) * s + i / c]).collect()
        };
        let m: usize = output.iter().product::<usize>() * c;
        let mut want = std::vec![0f32; m];
        pool_f32(&p, PoolKind::Max, &x, &mut want);
        let mut got = std::vec![0f32; m];
        max_pool_nhwc(
            &PoolParams { planes: 1, ..p },
            c,
            &last(&x, spatial),
            &mut got,
        );
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
        assert_eq!(
            bits(&got),
            bits(&last(&want, m / c)),
            "{kernel:?} {strides:?} {pads:?}"
        );
        on_both_paths(|portable| {
            let mut fast = std::vec![0f32; m];
            max_pool_nhwc_f32(
                &PoolParams { planes: 1, ..p },
                c,
                &last(&x, spatial),
                &mut fast,
            );
            assert_eq!(
                bits(&fast),
                bits(&got),
                "f32 {kernel:?} {strides:?} {pads:?} portable {portable}"
            );
        });
        for kind in [PoolKind::Average, PoolKind::AverageIncludePad] {
            let mut want = std::vec![0f32; m];
            pool_f32(&p, kind, &x, &mut want);
            on_both_paths(|portable| {
                let mut got = std::vec![0f32; m];
                avg_pool_nhwc_f32(
                    &PoolParams { planes: 1, ..p },
                    kind,
                    c,
                    &last(&x, spatial),
                    &mut got,
                );
                assert_eq!(
                    bits(&got),
                    bits(&last(&want, m / c)),
                    "{kind:?} {kernel:?} {strides:?} {pads:?} portable {portable}"
                );
            });
        }
    }

    #[test]
    fn channels_last_max_keeps_nans_among_infinities() {
        // 3x3 windows, stride 2, over 5 x 5 pixels of 40 channels: a window with both
        // infinities (whose sum is NaN, so the exact rule runs again), one with a NaN, one
        // with -0 and +0 (the first wins), and ordinary ones.
        let c = 40;
        let p = PoolParams {
            planes: 1,
            input: [1, 5, 5],
            output: [1, 2, 2],
            kernel: [1, 3, 3],
            strides: [1, 2, 2],
            dilations: [1; 3],
            pads_begin: [0; 3],
            pads_end: [0; 3],
        };
        let mut x: std::vec::Vec<f32> = (0..25 * c).map(|i| (i * 37 % 101) as f32 - 50.0).collect();
        x[c + 3] = f32::INFINITY;
        x[2 * c + 3] = f32::NEG_INFINITY;
        x[(2 * 5 + 4) * c + 17] = f32::NAN;
        x[(4 * 5) * c + 30] = -0.0;
        x[(4 * 5 + 1) * c + 30] = 0.0;
        for i in 0..25 {
            if i != 20 && i != 21 {
                x[i * c + 30] = -1.0;
            }
        }
        let mut want = std::vec![0f32; 4 * c];
        max_pool_nhwc(&p, c, &x, &mut want);
        on_both_paths(|portable| {
            let mut got = std::vec![0f32; 4 * c];
            max_pool_nhwc_f32(&p, c, &x, &mut got);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "portable {portable}");
        });
        assert!(want[3] == f32::INFINITY && want[c + 17].is_nan());
        assert_eq!(want[2 * c + 30].to_bits(), (-0.0f32).to_bits());
    }

    /// Runs `check` with the AVX-512 kernels (where the CPU has them), then with the portable
    /// ones.
    fn on_both_paths(mut check: impl FnMut(bool)) {
        check(false);
        crate::gemm_x86_64::without_avx512(|| check(true));
    }

    /// One random case of [`crate::testing::pool`]; a window that does not fit is skipped.
    #[cfg(feature = "std")]
    pub(crate) fn random_case(rng: &mut impl crate::testing::Source) {
        let spatial = rng.range(1, 3);
        let (mut input, mut kernel, mut strides) = ([1; 3], [1; 3], [1; 3]);
        let (mut pads_begin, mut pads_end, mut output) = ([0; 3], [0; 3], [1; 3]);
        // Under Miri, at most 3 (3-D) or 6 pixels per axis.
        let side = match (spatial == 3, cfg!(miri)) {
            (true, false) => 6,
            (false, false) => 14,
            (true, true) => 3,
            (false, true) => 6,
        };
        for i in 3 - spatial..3 {
            input[i] = rng.range(1, side);
            kernel[i] = rng.range(1, 4);
            strides[i] = rng.range(1, 3);
            pads_begin[i] = rng.below(kernel[i]);
            pads_end[i] = rng.below(kernel[i]);
            let padded = input[i] + pads_begin[i] + pads_end[i];
            if padded < kernel[i] {
                return;
            }
            output[i] = (padded - kernel[i]) / strides[i] + 1;
        }
        // Under Miri (some thousand times slower) at most 8 channels.
        let c = rng.range(1, if cfg!(miri) { 8 } else { 70 });
        let p = PoolParams {
            planes: c,
            input,
            output,
            kernel,
            strides,
            dilations: [1; 3],
            pads_begin,
            pads_end,
        };
        check_channels_last(p, c);
    }

    #[cfg(all(test, feature = "std"))]
    proptest::proptest! {
        #![proptest_config(crate::testing::config(60))]
        /// 1-D to 3-D windows with strides and asymmetric padding, 1 to 70 channels.
        #[test]
        fn random_geometries_match_channels_first(tape in crate::testing::tape()) {
            random_case(&mut crate::testing::Tape(&tape));
        }
    }

    /// The channels-last poolings split into bands of output rows on two threads give the
    /// bits of one call over the whole image: 2 images, padding, strides 1 and 2, a window
    /// hanging over the end (ceil mode), every average kind.
    #[cfg(feature = "std")]
    #[test]
    fn channels_last_bands_on_two_threads_match_one_call() {
        let exec = crate::threads::Exec::with_threads(2);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
        type Case = ([usize; 3], [usize; 3], [usize; 3], [usize; 3], [usize; 3]);
        // Under Miri (some thousand times slower), 4 channels and one small padded image,
        // which stays one call.
        let (c, cases): (usize, &[Case]) = if cfg!(miri) {
            (
                4,
                &[([1, 9, 8], [1, 3, 3], [1, 1, 1], [0, 1, 1], [1, 9, 8])],
            )
        } else {
            (
                48,
                &[
                    ([1, 57, 56], [1, 3, 3], [1, 2, 2], [0, 1, 1], [1, 29, 28]),
                    ([1, 56, 56], [1, 2, 2], [1, 2, 2], [0, 0, 0], [1, 28, 28]),
                    ([1, 40, 30], [1, 3, 3], [1, 1, 1], [0, 1, 1], [1, 40, 30]),
                    ([1, 41, 41], [1, 3, 3], [1, 2, 2], [0, 0, 0], [1, 21, 21]),
                ],
            )
        };
        for &(input, kernel, strides, pads, output) in cases {
            let p = PoolParams {
                planes: 2,
                input,
                output,
                kernel,
                strides,
                dilations: [1; 3],
                pads_begin: pads,
                pads_end: pads,
            };
            let n = 2 * input.iter().product::<usize>() * c;
            let m = 2 * output.iter().product::<usize>() * c;
            let x: std::vec::Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32) - 50.0).collect();
            let (mut one, mut bands) = (std::vec![0f32; m], std::vec![0f32; m]);
            max_pool_nhwc_f32(&p, c, &x, &mut one);
            max_pool_nhwc_f32_exec(&exec, &p, c, &x, &mut bands);
            assert_eq!(
                bits(&bands),
                bits(&one),
                "max f32 {input:?} {kernel:?} {strides:?}"
            );
            max_pool_nhwc_exec(&exec, &p, c, &x, &mut bands);
            assert_eq!(
                bits(&bands),
                bits(&one),
                "max {input:?} {kernel:?} {strides:?}"
            );
            for kind in [PoolKind::Average, PoolKind::AverageIncludePad] {
                avg_pool_nhwc_f32(&p, kind, c, &x, &mut one);
                avg_pool_nhwc_f32_exec(&exec, &p, kind, c, &x, &mut bands);
                assert_eq!(bits(&bands), bits(&one), "{kind:?} {input:?} {kernel:?}");
            }
        }
    }

    /// Channels-last float max pooling and global pooling against the channels-first kernels,
    /// with windows that hang over the end (ceil mode) and at the start (padding).
    #[test]
    fn channels_last_float_pooling_matches_channels_first() {
        let input = [1usize, 9, 8];
        for (c, kernel, strides, pads, output) in [
            (5, [1, 3, 3], [1, 2, 2], [0, 0, 0], [1, 4, 4]),
            (70, [1, 3, 3], [1, 2, 2], [0, 1, 1], [1, 5, 4]),
        ]
        .into_iter()
        .chain([
            (5, [1, 3, 3], [1, 2, 2], [0, 1, 1], [1, 5, 4]),
            (5, [1, 2, 2], [1, 1, 1], [0, 0, 0], [1, 8, 7]),
        ]) {
            let p = PoolParams {
                planes: c,
                input,
                output,
                kernel,
                strides,
                dilations: [1; 3],
                pads_begin: pads,
                pads_end: pads,
            };
            // Under Miri at most 20 channels (one vector and a tail).
            if cfg!(miri) && c > 20 {
                let c = 20;
                check_channels_last(PoolParams { planes: c, ..p }, c);
                continue;
            }
            check_channels_last(p, c);
        }
        let x: std::vec::Vec<f32> = (0..60).map(|i| (i as f32) * 0.25 - 3.0).collect();
        let (mut avg, mut max) = (std::vec![0f32; 5], std::vec![0f32; 5]);
        global_average_f32(&x, &mut avg, 12);
        global_max_f32(&x, &mut max, 12);
        let xl: std::vec::Vec<f32> = (0..60).map(|i| x[(i % 5) * 12 + i / 5]).collect();
        let (mut avg_l, mut max_l) = (std::vec![0f32; 5], std::vec![0f32; 5]);
        global_average_nhwc_f32(&xl, &mut avg_l, 12, 5);
        global_max_nhwc_f32(&xl, &mut max_l, 12, 5);
        assert_eq!(max_l, max);
        for (a, b) in avg_l.iter().zip(&avg) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} {b}");
        }
    }

    /// The channels-last global pools on threads, in segments: the same bits at every
    /// thread count, the maximum exact and the mean close to its f64 value, for one segment
    /// and for several (with a NaN in a later segment winning the maximum).
    #[test]
    fn segmented_global_pools_match_at_every_thread_count() {
        // Under Miri (some thousand times slower), two small images of one segment, on one
        // and two threads.
        let (cases, thread_counts): (&[(usize, usize, usize)], &[usize]) = if cfg!(miri) {
            (&[(2, 12, 5), (1, 40, 9)], &[1, 2])
        } else {
            (&[(2, 12, 5), (2, 1600, 72), (1, 30 * 30, 300)], &[1, 2, 3])
        };
        for &(batch, spatial, channels) in cases {
            let len = batch * spatial * channels;
            let mut x: std::vec::Vec<f32> = (0..len)
                .map(|i| ((i * 7919 % 1013) as f32) * 0.01 - 5.0)
                .collect();
            let segments = global_pool_nhwc_segments(spatial, channels);
            if segments > 1 {
                x[(spatial - 1) * channels + 3] = f32::NAN;
            }
            let scratch_len = global_pool_nhwc_scratch_len(batch, spatial, channels);
            for max in [false, true] {
                let mut first: Option<std::vec::Vec<f32>> = None;
                for &threads in thread_counts {
                    let exec = crate::threads::Exec::with_threads(threads);
                    let mut out = std::vec![0f32; batch * channels];
                    let mut scratch = std::vec![f32::NAN; scratch_len];
                    global_pool_nhwc_f32_exec(
                        &exec,
                        &x,
                        &mut out,
                        &mut scratch,
                        (spatial, channels),
                        max,
                    );
                    for (k, &o) in out.iter().enumerate() {
                        let (n, c) = (k / channels, k % channels);
                        let values = (0..spatial).map(|q| x[(n * spatial + q) * channels + c]);
                        if values.clone().any(f32::is_nan) {
                            assert!(
                                o.is_nan(),
                                "{spatial}x{channels}: channel {c} ignores a NaN"
                            );
                        } else if max {
                            assert_eq!(o, values.fold(f32::NEG_INFINITY, f32::max));
                        } else {
                            let mean = values.map(f64::from).sum::<f64>() / spatial as f64;
                            assert!((f64::from(o) - mean).abs() <= 1e-5 * mean.abs().max(1.0));
                        }
                    }
                    match &first {
                        None => first = Some(out),
                        Some(f) => assert!(
                            f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{spatial}x{channels}: {threads} threads differ from one"
                        ),
                    }
                }
            }
            assert!(segments > 1 || spatial * channels < SEGMENT_FLOATS);
        }
    }

    /// The dense generic max pool (no indices) against the per-window path with indices.
    #[test]
    fn dense_generic_max_pool_matches_the_indexed_path() {
        // (input, kernel, strides, pads) per case.
        let cases: [[[usize; 3]; 4]; 8] = [
            [[1, 7, 9], [1, 2, 2], [1, 2, 2], [0, 0, 0]],
            [[1, 8, 8], [1, 3, 3], [1, 2, 2], [0, 1, 1]],
            [[1, 5, 11], [1, 3, 2], [1, 1, 3], [0, 2, 1]],
            [[3, 4, 5], [2, 2, 2], [1, 1, 1], [1, 0, 1]],
            [[1, 8, 9], [1, 3, 3], [1, 2, 2], [0, 0, 0]],
            [[1, 6, 12], [1, 2, 2], [1, 2, 2], [0, 0, 0]],
            [[1, 11, 11], [1, 3, 3], [1, 2, 2], [0, 0, 0]],
            [[1, 7, 10], [1, 3, 4], [1, 2, 2], [0, 0, 0]],
        ];
        for [input, kernel, strides, pads] in cases {
            let output = core::array::from_fn(|i| {
                (input[i] + 2 * pads[i]).saturating_sub(kernel[i]) / strides[i] + 1
            });
            let p = PoolParams {
                planes: 2,
                input,
                output,
                kernel,
                strides,
                dilations: [1; 3],
                pads_begin: pads,
                pads_end: pads,
            };
            let n: usize = input.iter().product::<usize>() * 2;
            let x: std::vec::Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
            let m: usize = output.iter().product::<usize>() * 2;
            let (mut a, mut b) = (std::vec![0u8; m], std::vec![0u8; m]);
            let mut ind = std::vec![0i64; m];
            max_pool_indexed(&p, &x, &mut a, None, false);
            max_pool_indexed(&p, &x, &mut b, Some(&mut ind), false);
            assert_eq!(a, b, "{input:?} {kernel:?} {strides:?} {pads:?}");
            // The row-reducing path for ordered types, on u8 and i8.
            let mut c = std::vec![0u8; m];
            max_pool_ord(&p, &x, &mut c);
            assert_eq!(c, b, "ord {input:?} {kernel:?} {strides:?} {pads:?}");
            let xi: std::vec::Vec<i8> = x.iter().map(|&v| v as i8).collect();
            let (mut d, mut e) = (std::vec![0i8; m], std::vec![0i8; m]);
            max_pool_indexed(&p, &xi, &mut d, Some(&mut ind), false);
            max_pool_ord(&p, &xi, &mut e);
            assert_eq!(e, d, "ord i8 {input:?} {kernel:?} {strides:?} {pads:?}");
            // Channels last: the two planes as the channels of one image.
            let last = |v: &[u8]| -> std::vec::Vec<u8> {
                let half = v.len() / 2;
                (0..v.len()).map(|i| v[(i % 2) * half + i / 2]).collect()
            };
            let mut f = std::vec![0u8; m];
            max_pool_nhwc(&PoolParams { planes: 1, ..p }, 2, &last(&x), &mut f);
            assert_eq!(
                f,
                last(&b),
                "nhwc {input:?} {kernel:?} {strides:?} {pads:?}"
            );
        }
    }

    /// The separable 2-D path against the per-window reference, over window sizes, strides,
    /// paddings (including windows that hang over both edges) and every kind.
    #[test]
    fn separable_path_matches_the_window_reference() {
        pool_cases_match_the_window_reference();
    }

    /// The same cases on the paths CPUs without AVX-512 take.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri no CPU feature is detected: the same paths as the test above"
    )]
    fn separable_path_matches_the_window_reference_without_avx512() {
        crate::gemm_x86_64::without_avx512(pool_cases_match_the_window_reference);
    }

    fn pool_cases_match_the_window_reference() {
        let mut seed = 7u32;
        let mut x: std::vec::Vec<f32> = (0..2 * 13 * 37)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect();
        // A NaN in the second plane of the wide input: max windows over it give NaN.
        x[13 * 37 + 5 * 37 + 20] = f32::NAN;
        for ((k, s, pb, pe), (ih, iw)) in [
            (2, 2, 0, 0),
            (3, 2, 1, 1),
            (3, 1, 1, 1),
            (3, 2, 0, 1),
            (2, 1, 1, 0),
            (5, 3, 2, 2),
            (4, 1, 3, 3),
        ]
        .into_iter()
        .flat_map(|window| [(window, (9, 11)), (window, (13, 37))])
        // Under Miri (some thousand times slower) only the narrow input.
        .filter(|&(_, (_, iw))| !cfg!(miri) || iw == 11)
        {
            let out_dim = |i: usize| (i + pb + pe - k) / s + 1;
            let p = PoolParams {
                planes: 2,
                input: [1, ih, iw],
                output: [1, out_dim(ih), out_dim(iw)],
                kernel: [1, k, k],
                strides: [1, s, s],
                dilations: [1; 3],
                pads_begin: [0, pb, pb],
                pads_end: [0, pe, pe],
            };
            let out_len = p.output[1] * p.output[2];
            for kind in [
                PoolKind::Max,
                PoolKind::Average,
                PoolKind::AverageIncludePad,
            ] {
                let mut fast = std::vec![0.0f32; 2 * out_len];
                pool_f32(&p, kind, &x, &mut fast);
                for (i, &v) in fast.iter().enumerate() {
                    let (plane, idx) = (i / out_len, i % out_len);
                    let at = [0, idx / p.output[2], idx % p.output[2]];
                    let want = window(&p, kind, &x[plane * ih * iw..][..ih * iw], at);
                    assert!(
                        (v - want).abs() <= 1e-6 * want.abs().max(1.0)
                            || (v.is_nan() && want.is_nan()),
                        "{kind:?} k{k} s{s} pads {pb},{pe} at {i}: {v} vs {want}"
                    );
                }
            }
        }
    }
}
