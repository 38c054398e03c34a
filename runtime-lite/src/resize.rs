//! Resizing (ONNX `Resize` and `Upsample`): nearest, linear and cubic interpolation over any
//! axes, every coordinate transformation mode, antialiasing, `exclude_outside` and
//! `tf_crop_and_resize` extrapolation.
//!
//! Each output coordinate is mapped back to a fractional input coordinate per axis; the axis
//! contributes a handful of (index, weight) taps, and the output element is the weighted sum
//! over the product of all axes' taps. Coordinates and weights are computed in f64.

use crate::math64::floor_f64;

/// Most taps one axis may contribute (antialiased downscaling widens the filter).
pub const MAX_TAPS: usize = 64;
/// Highest rank handled.
pub const MAX_RANK: usize = 8;

/// How an output coordinate maps to an input coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coord {
    /// `(x + 0.5) / scale - 0.5`.
    HalfPixel,
    /// Half pixel, centred when the output size was rounded.
    HalfPixelSymmetric,
    /// Half pixel, except 0 for an output of length 1.
    PytorchHalfPixel,
    /// `x * (in - 1) / (out - 1)`.
    AlignCorners,
    /// `x / scale`.
    Asymmetric,
    /// Crop to the region of interest, then align corners; outside it, the extrapolation
    /// value.
    TfCropAndResize,
}

/// How nearest-neighbour mode rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nearest {
    /// Round, halves down.
    RoundPreferFloor,
    /// Round, halves up.
    RoundPreferCeil,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
}

/// The interpolation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Interp {
    /// Nearest neighbour.
    Nearest(Nearest),
    /// Linear.
    Linear,
    /// Cubic with coefficient `a`.
    Cubic(f64),
}

/// One axis of a resize.
#[derive(Clone, Copy, Debug)]
pub struct ResizeAxis {
    /// Input length.
    pub input: usize,
    /// Output length.
    pub output: usize,
    /// The scale factor (output over input length, or as given).
    pub scale: f64,
    /// Region of interest start (tf_crop_and_resize), as a fraction of the axis.
    pub roi_start: f64,
    /// Region of interest end.
    pub roi_end: f64,
}

/// A whole resize.
#[derive(Clone, Copy, Debug)]
pub struct ResizeParams<'a> {
    /// Every axis of the tensor, outermost first.
    pub axes: &'a [ResizeAxis],
    /// The interpolation.
    pub interp: Interp,
    /// The coordinate transformation.
    pub coord: Coord,
    /// Widen linear and cubic filters when downscaling.
    pub antialias: bool,
    /// Taps outside the input get weight 0 (the rest renormalized).
    pub exclude_outside: bool,
    /// The output value outside the crop region (tf_crop_and_resize).
    pub extrapolation: f32,
}

/// The taps of one axis at one output position.
#[derive(Clone, Copy)]
struct Taps {
    index: [usize; MAX_TAPS],
    weight: [f64; MAX_TAPS],
    len: usize,
}

impl Taps {
    const EMPTY: Taps = Taps {
        index: [0; MAX_TAPS],
        weight: [0.0; MAX_TAPS],
        len: 0,
    };
}

fn cubic_kernel(x: f64, a: f64) -> f64 {
    let x = x.abs();
    let (x2, x3) = (x * x, x * x * x);
    if x <= 1.0 {
        (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
    } else if x < 2.0 {
        a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
    } else {
        0.0
    }
}

/// How many taps one axis uses (`first` is the offset of the first tap from the base index).
pub fn tap_count(interp: Interp, antialias: bool, scale: f64) -> (i64, usize) {
    let s = scale.min(1.0);
    let first = match (interp, antialias) {
        (Interp::Nearest(_), _) | (Interp::Linear, false) => 0,
        (Interp::Cubic(_), false) => -1,
        (Interp::Linear, true) => floor_f64(-1.0 / s) as i64 + 1,
        (Interp::Cubic(_), true) => floor_f64(-2.0 / s) as i64 + 1,
    };
    (first, (2 - 2 * first) as usize)
}

/// The input coordinate of output position `x`, or `None` outside the crop region.
fn source_coord(p: &ResizeParams<'_>, axis: &ResizeAxis, x: f64) -> Option<f64> {
    let len = axis.input as f64;
    let out_w = axis.scale * len;
    let s = axis.scale;
    Some(match p.coord {
        Coord::HalfPixel => (x + 0.5) / s - 0.5,
        Coord::HalfPixelSymmetric => {
            let adjustment = axis.output as f64 / out_w;
            let offset = len / 2.0 * (1.0 - adjustment);
            offset + (x + 0.5) / s - 0.5
        }
        Coord::PytorchHalfPixel => {
            if out_w == 1.0 {
                -0.5
            } else {
                (x + 0.5) / s - 0.5
            }
        }
        Coord::AlignCorners => {
            if out_w == 1.0 {
                0.0
            } else {
                x * (len - 1.0) / (out_w - 1.0)
            }
        }
        Coord::Asymmetric => x / s,
        Coord::TfCropAndResize => {
            let span = axis.roi_end - axis.roi_start;
            let mut v = if out_w == 1.0 {
                span * (len - 1.0) / 2.0
            } else {
                x * span * (len - 1.0) / (out_w - 1.0)
            };
            v += axis.roi_start * (len - 1.0);
            if v < 0.0 || v > len - 1.0 {
                return None;
            }
            v
        }
    })
}

/// Fills `t` with the taps of output position `o` on `axis`; false means extrapolate.
fn axis_taps(p: &ResizeParams<'_>, axis: &ResizeAxis, o: usize, t: &mut Taps) -> bool {
    let Some(x) = source_coord(p, axis, o as f64) else {
        return false;
    };
    let fl = floor_f64(x);
    // The ratio lies in (0, 1]: a whole coordinate counts from the pixel to its left.
    let (base, ratio) = if x == fl {
        (fl as i64 - 1, 1.0)
    } else {
        (fl as i64, x - fl)
    };
    let (first, n) = tap_count(p.interp, p.antialias, axis.scale);
    let n = n.min(MAX_TAPS);
    let w = &mut t.weight;
    match (p.interp, p.antialias) {
        (Interp::Nearest(mode), _) => {
            let up = ratio == 1.0
                || match mode {
                    Nearest::RoundPreferFloor => ratio > 0.5,
                    Nearest::RoundPreferCeil => ratio >= 0.5,
                    Nearest::Floor => false,
                    Nearest::Ceil => true,
                };
            (w[0], w[1]) = if up { (0.0, 1.0) } else { (1.0, 0.0) };
        }
        (Interp::Linear, false) => (w[0], w[1]) = (1.0 - ratio, ratio),
        (Interp::Cubic(a), false) => {
            let (r, q) = (ratio, 1.0 - ratio);
            w[0] = ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a;
            w[1] = ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0;
            w[2] = ((a + 2.0) * q - (a + 3.0)) * q * q + 1.0;
            w[3] = ((a * (q + 1.0) - 5.0 * a) * (q + 1.0) + 8.0 * a) * (q + 1.0) - 4.0 * a;
        }
        (Interp::Linear, true) | (Interp::Cubic(_), true) => {
            let s = axis.scale.min(1.0);
            let mut sum = 0.0;
            for (i, wi) in w.iter_mut().enumerate().take(n) {
                let arg = ((first + i as i64) as f64 - ratio) * s;
                *wi = match p.interp {
                    Interp::Cubic(a) => cubic_kernel(arg, a),
                    _ => (1.0 - arg.abs()).clamp(0.0, 1.0),
                };
                sum += *wi;
            }
            for wi in w.iter_mut().take(n) {
                *wi /= sum;
            }
        }
    }
    let last = axis.input as i64 - 1;
    let mut sum = 0.0;
    for (i, (wi, slot)) in w.iter_mut().zip(t.index.iter_mut()).take(n).enumerate() {
        let idx = base + first + i as i64;
        if p.exclude_outside && (idx < 0 || idx > last) {
            *wi = 0.0;
        }
        sum += *wi;
        *slot = idx.clamp(0, last.max(0)) as usize;
    }
    if p.exclude_outside && sum != 0.0 {
        for wi in w.iter_mut().take(n) {
            *wi /= sum;
        }
    }
    t.len = n;
    true
}

/// Checks the buffers against `p` and settles the trivial resizes (an empty output, a
/// scalar); otherwise the output length and the input's strides.
fn prepare<T: Copy>(
    p: &ResizeParams<'_>,
    x: &[T],
    out: &mut [T],
) -> Option<(usize, [usize; MAX_RANK])> {
    let rank = p.axes.len();
    assert!(rank <= MAX_RANK, "resize rank exceeds {MAX_RANK}");
    let in_len: usize = p.axes.iter().map(|a| a.input).product();
    let out_len: usize = p.axes.iter().map(|a| a.output).product();
    assert!(
        x.len() >= in_len && out.len() >= out_len,
        "resize buffers too short"
    );
    if out_len == 0 {
        return None;
    }
    if rank == 0 {
        out[0] = x[0];
        return None;
    }
    let mut strides = [0usize; MAX_RANK];
    let mut acc = 1;
    for k in (0..rank).rev() {
        strides[k] = acc;
        acc *= p.axes[k].input;
    }
    Some((out_len, strides))
}

/// Resizes `x` (shape: the axes' inputs) into `out` (shape: their outputs).
pub fn resize_f32(p: &ResizeParams<'_>, x: &[f32], out: &mut [f32]) {
    let Some((out_len, strides)) = prepare(p, x, out) else {
        return;
    };
    let rank = p.axes.len();
    if rank >= 2 && resize_planes_f32(p, x, out) {
        return;
    }
    let mut taps = [Taps::EMPTY; MAX_RANK];
    let mut inside = [true; MAX_RANK];
    let mut index = [0usize; MAX_RANK];
    for k in 0..rank {
        inside[k] = axis_taps(p, &p.axes[k], 0, &mut taps[k]);
    }
    for o in out.iter_mut().take(out_len) {
        *o = if inside[..rank].iter().all(|&b| b) {
            gather(x, &taps[..rank], &strides[..rank])
        } else {
            p.extrapolation
        };
        // Advance the output odometer, recomputing the taps of the axes that moved.
        let mut k = rank;
        while k > 0 {
            k -= 1;
            index[k] += 1;
            if index[k] < p.axes[k].output {
                inside[k] = axis_taps(p, &p.axes[k], index[k], &mut taps[k]);
                break;
            }
            index[k] = 0;
            inside[k] = axis_taps(p, &p.axes[k], 0, &mut taps[k]);
        }
    }
}

/// Nearest-neighbour resize of any element type (the 8-bit tensors of quantized models): each
/// output element copies the input element its coordinates round to.
///
/// Panics if a buffer is too short, the interpolation is not nearest, or the coordinate mode
/// is `tf_crop_and_resize` (whose extrapolation value is a float).
pub fn resize_nearest<T: Copy>(p: &ResizeParams<'_>, x: &[T], out: &mut [T]) {
    assert!(
        matches!(p.interp, Interp::Nearest(_)) && p.coord != Coord::TfCropAndResize,
        "resize_nearest: nearest interpolation without extrapolation only"
    );
    let Some((out_len, strides)) = prepare(p, x, out) else {
        return;
    };
    let rank = p.axes.len();
    // Per axis, the input offset its current output coordinate reads: nearest interpolation
    // weighs the two neighbours 1 and 0.
    let mut taps = [Taps::EMPTY; MAX_RANK];
    let mut index = [0usize; MAX_RANK];
    let offset = |taps: &Taps, k: usize| {
        let pick = if taps.weight[0] != 0.0 { 0 } else { 1 };
        taps.index[pick] * strides[k]
    };
    for (k, t) in taps.iter_mut().enumerate().take(rank) {
        axis_taps(p, &p.axes[k], 0, t);
    }
    let mut at: usize = (0..rank).map(|k| offset(&taps[k], k)).sum();
    for o in out.iter_mut().take(out_len) {
        *o = x[at];
        // Advance the output odometer, moving the offset by the axes that changed.
        let mut k = rank;
        while k > 0 {
            k -= 1;
            at -= offset(&taps[k], k);
            index[k] += 1;
            if index[k] < p.axes[k].output {
                axis_taps(p, &p.axes[k], index[k], &mut taps[k]);
                at += offset(&taps[k], k);
                break;
            }
            index[k] = 0;
            axis_taps(p, &p.axes[k], 0, &mut taps[k]);
            at += offset(&taps[k], k);
        }
    }
}

/// Longest last-two axes the fast path handles (its tap tables live on the stack).
const PLANE_MAX: usize = 2048;

/// One output coordinate's taps along an axis: up to two source indices and weights.
#[derive(Clone, Copy, Default)]
struct Pair {
    i0: u32,
    i1: u32,
    w0: f32,
    w1: f32,
}

/// The fast path for the common case (nearest or linear, no antialias, no extrapolation, the
/// leading axes unchanged): tap tables for the last two axes are computed once, then every
/// plane is resampled row by row. Returns false when the case does not apply.
fn resize_planes_f32(p: &ResizeParams<'_>, x: &[f32], out: &mut [f32]) -> bool {
    let rank = p.axes.len();
    let simple = match p.interp {
        Interp::Nearest(_) => true,
        Interp::Linear => !p.antialias,
        _ => false,
    };
    if !simple || p.coord == Coord::TfCropAndResize {
        return false;
    }
    let (ha, wa) = (&p.axes[rank - 2], &p.axes[rank - 1]);
    if ha.output > PLANE_MAX || wa.output > PLANE_MAX || ha.input == 0 || wa.input == 0 {
        return false;
    }
    let mut t = Taps::EMPTY;
    // Leading axes must map each output index to the same input index with weight 1.
    for axis in &p.axes[..rank - 2] {
        if axis.input != axis.output {
            return false;
        }
        for o in 0..axis.output {
            if !axis_taps(p, axis, o, &mut t)
                || !(0..t.len)
                    .all(|j| t.weight[j] == 0.0 || (t.index[j] == o && t.weight[j] == 1.0))
            {
                return false;
            }
        }
    }
    let table = |axis: &ResizeAxis, pairs: &mut [Pair]| -> bool {
        let mut t = Taps::EMPTY;
        for (o, pair) in pairs.iter_mut().enumerate().take(axis.output) {
            if !axis_taps(p, axis, o, &mut t) || t.len > 2 {
                return false;
            }
            let get = |j: usize| {
                if j < t.len {
                    (t.index[j] as u32, t.weight[j] as f32)
                } else {
                    (0, 0.0)
                }
            };
            let ((i0, w0), (i1, w1)) = (get(0), get(1));
            *pair = Pair { i0, i1, w0, w1 };
        }
        true
    };
    let mut rows = [Pair::default(); PLANE_MAX];
    let mut cols = [Pair::default(); PLANE_MAX];
    if !table(ha, &mut rows) || !table(wa, &mut cols) {
        return false;
    }
    let (ih, iw, oh, ow) = (ha.input, wa.input, ha.output, wa.output);
    let nearest = matches!(p.interp, Interp::Nearest(_));
    let planes: usize = p.axes[..rank - 2].iter().map(|a| a.input).product();
    for plane in 0..planes {
        let src = &x[plane * ih * iw..][..ih * iw];
        let dst = &mut out[plane * oh * ow..][..oh * ow];
        for (r, out_row) in rows[..oh].iter().zip(dst.chunks_exact_mut(ow)) {
            if nearest {
                // Copy the tap with weight 1 (never multiply: 0 * inf would be NaN).
                let src_row = &src[(if r.w1 > r.w0 { r.i1 } else { r.i0 }) as usize * iw..][..iw];
                for (c, o) in cols[..ow].iter().zip(out_row.iter_mut()) {
                    *o = src_row[(if c.w1 > c.w0 { c.i1 } else { c.i0 }) as usize];
                }
                continue;
            }
            let (r0, r1) = (
                &src[r.i0 as usize * iw..][..iw],
                &src[r.i1 as usize * iw..][..iw],
            );
            for (c, o) in cols[..ow].iter().zip(out_row.iter_mut()) {
                let (a, b) = (c.i0 as usize, c.i1 as usize);
                *o = r.w0 * (c.w0 * r0[a] + c.w1 * r0[b]) + r.w1 * (c.w0 * r1[a] + c.w1 * r1[b]);
            }
        }
    }
    true
}

/// The weighted sum over the product of every axis' taps.
fn gather(x: &[f32], taps: &[Taps], strides: &[usize]) -> f32 {
    let rank = taps.len();
    let mut pos = [0usize; MAX_RANK];
    let mut sum = 0.0f64;
    loop {
        let mut w = 1.0f64;
        let mut off = 0;
        for k in 0..rank {
            w *= taps[k].weight[pos[k]];
            off += taps[k].index[pos[k]] * strides[k];
        }
        if w != 0.0 {
            sum += w * f64::from(x[off]);
        }
        let mut k = rank;
        loop {
            if k == 0 {
                return sum as f32;
            }
            k -= 1;
            pos[k] += 1;
            if pos[k] < taps[k].len {
                break;
            }
            pos[k] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(input: usize, output: usize, scale: f64) -> ResizeAxis {
        ResizeAxis {
            input,
            output,
            scale,
            roi_start: 0.0,
            roi_end: 1.0,
        }
    }

    #[test]
    fn nearest_upsample_asymmetric_floor() {
        let axes = [axis(2, 4, 2.0)];
        let p = ResizeParams {
            axes: &axes,
            interp: Interp::Nearest(Nearest::Floor),
            coord: Coord::Asymmetric,
            antialias: false,
            exclude_outside: false,
            extrapolation: 0.0,
        };
        let mut out = [0.0f32; 4];
        resize_f32(&p, &[1.0, 2.0], &mut out);
        assert_eq!(out, [1.0, 1.0, 2.0, 2.0]);
    }

    /// Nearest resize of bytes picks the elements the float path picks, in every rounding
    /// and coordinate mode, up and down, over several axes.
    #[test]
    fn nearest_bytes_match_the_float_path() {
        let shapes: [[(usize, usize, f64); 3]; 3] = [
            [(2, 2, 1.0), (5, 10, 2.0), (7, 14, 2.0)],
            [(1, 1, 1.0), (9, 5, 5.0 / 9.0), (6, 9, 1.5)],
            [(3, 3, 1.0), (4, 11, 2.75), (8, 3, 0.375)],
        ];
        let modes = [
            Nearest::Floor,
            Nearest::Ceil,
            Nearest::RoundPreferFloor,
            Nearest::RoundPreferCeil,
        ];
        let coords = [
            Coord::Asymmetric,
            Coord::HalfPixel,
            Coord::AlignCorners,
            Coord::PytorchHalfPixel,
        ];
        for shape in shapes {
            let axes: std::vec::Vec<ResizeAxis> =
                shape.iter().map(|&(i, o, s)| axis(i, o, s)).collect();
            let len: usize = shape.iter().map(|a| a.0).product();
            let out_len: usize = shape.iter().map(|a| a.1).product();
            let bytes: std::vec::Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let floats: std::vec::Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
            for mode in modes {
                for coord in coords {
                    let p = ResizeParams {
                        axes: &axes,
                        interp: Interp::Nearest(mode),
                        coord,
                        antialias: false,
                        exclude_outside: false,
                        extrapolation: 0.0,
                    };
                    let mut want = std::vec![0f32; out_len];
                    resize_f32(&p, &floats, &mut want);
                    let mut got = std::vec![0u8; out_len];
                    resize_nearest(&p, &bytes, &mut got);
                    let got: std::vec::Vec<f32> = got.iter().map(|&b| f32::from(b)).collect();
                    assert_eq!(got, want, "{shape:?} {mode:?} {coord:?}");
                }
            }
        }
    }

    #[test]
    fn linear_half_pixel_2d() {
        // 2x2 -> 4x4, half_pixel: interior points interpolate, edges clamp.
        let axes = [axis(2, 4, 2.0), axis(2, 4, 2.0)];
        let p = ResizeParams {
            axes: &axes,
            interp: Interp::Linear,
            coord: Coord::HalfPixel,
            antialias: false,
            exclude_outside: false,
            extrapolation: 0.0,
        };
        let mut out = [0.0f32; 16];
        resize_f32(&p, &[1.0, 2.0, 3.0, 4.0], &mut out);
        assert_eq!(out[..4], [1.0, 1.25, 1.75, 2.0]);
        assert_eq!(out[12..], [3.0, 3.25, 3.75, 4.0]);
    }
}
