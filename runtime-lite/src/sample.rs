//! Sampling at computed coordinates: `GridSample` (nearest, linear, cubic; zeros, border,
//! reflection padding; 1 to 3 spatial dims), the grids `AffineGrid` makes, and `RoiAlign`.

use crate::math64::floor_f64;

/// Most spatial dimensions.
pub const MAX_DIMS: usize = 3;

/// The interpolation of a grid sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridMode {
    /// Nearest pixel (halves round to even, as the ONNX test data has it for 2-D and 3-D).
    Nearest,
    /// Linear in every dimension.
    Linear,
    /// Cubic (a = -0.75) in every dimension.
    Cubic,
}

/// What a sample outside the input reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridPadding {
    /// Zero.
    Zeros,
    /// The nearest edge pixel.
    Border,
    /// The input mirrored at its borders.
    Reflection,
}

/// The geometry of one grid sample.
#[derive(Clone, Copy, Debug)]
pub struct GridParams<'a> {
    /// N.
    pub batch: usize,
    /// C.
    pub channels: usize,
    /// Input spatial sizes, outermost first.
    pub input: &'a [usize],
    /// Output spatial sizes (the grid's middle dimensions).
    pub output: &'a [usize],
    /// Interpolation.
    pub mode: GridMode,
    /// Padding.
    pub padding: GridPadding,
    /// -1 and 1 name the centres of the corner pixels (else their outer edges).
    pub align_corners: bool,
}

/// Mirrors `x` into `[lo, hi]`.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    if x < lo {
        let d = lo - x;
        let n = floor_f64(d / range);
        let r = d - n * range;
        if n % 2.0 == 0.0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let d = x - hi;
        let n = floor_f64(d / range);
        let r = d - n * range;
        if n % 2.0 == 0.0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

fn round_half_even(v: f64) -> f64 {
    let f = floor_f64(v);
    let d = v - f;
    if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) {
        f + 1.0
    } else {
        f
    }
}

fn cubic_coeffs(r: f64) -> [f64; 4] {
    let a = -0.75;
    let (x1, x2, x3) = (r + 1.0, 1.0 - r, 2.0 - r);
    [
        ((a * x1 - 5.0 * a) * x1 + 8.0 * a) * x1 - 4.0 * a,
        ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
        ((a + 2.0) * x2 - (a + 3.0)) * x2 * x2 + 1.0,
        ((a * x3 - 5.0 * a) * x3 + 8.0 * a) * x3 - 4.0 * a,
    ]
}

/// The taps of one axis: (index, weight), `None` index reading zero.
struct AxisTaps {
    index: [Option<usize>; 4],
    weight: [f64; 4],
    len: usize,
}

fn axis_taps(p: &GridParams<'_>, len: usize, normalized: f32) -> AxisTaps {
    let n = f64::from(normalized);
    let size = len as f64;
    // Denormalized in f32, as ONNX's reference computes it.
    let mut x = if p.align_corners {
        f64::from(((n + 1.0) / 2.0 * (size - 1.0)) as f32)
    } else {
        f64::from((((n + 1.0) * size - 1.0) / 2.0) as f32)
    };
    let (lo, hi) = if p.align_corners {
        (0.0, size - 1.0)
    } else {
        (-0.5, size - 0.5)
    };
    if p.mode == GridMode::Nearest {
        x = round_half_even(x);
    }
    if x < lo || x > hi {
        match p.padding {
            GridPadding::Border => x = x.clamp(0.0, size - 1.0),
            GridPadding::Reflection => x = reflect(x, lo, hi),
            GridPadding::Zeros => {}
        }
    }
    let pixel = |i: f64| -> Option<usize> {
        let i = match p.padding {
            GridPadding::Zeros => i,
            GridPadding::Border => i.clamp(0.0, size - 1.0),
            // Truncated toward zero, as the reference's int() does.
            GridPadding::Reflection => {
                let r = reflect(i, lo, hi);
                if r < 0.0 {
                    -floor_f64(-r)
                } else {
                    floor_f64(r)
                }
            }
        };
        if i >= 0.0 && i < size {
            Some(i as usize)
        } else {
            None
        }
    };
    let mut t = AxisTaps {
        index: [None; 4],
        weight: [0.0; 4],
        len: 0,
    };
    match p.mode {
        GridMode::Nearest => {
            let i = if x < 0.0 {
                -floor_f64(-x)
            } else {
                floor_f64(x)
            };
            t.index[0] = pixel(i);
            t.weight[0] = 1.0;
            t.len = 1;
        }
        GridMode::Linear => {
            let x0 = floor_f64(x);
            let r = x - x0;
            t.index[0] = pixel(x0);
            t.index[1] = pixel(x0 + 1.0);
            t.weight = [1.0 - r, r, 0.0, 0.0];
            t.len = 2;
        }
        GridMode::Cubic => {
            let x0 = floor_f64(x);
            for k in 0..4 {
                t.index[k] = pixel(x0 - 1.0 + k as f64);
            }
            t.weight = cubic_coeffs(x - x0);
            t.len = 4;
        }
    }
    t
}

/// Samples `x: [N, C, *input]` at `grid: [N, *output, D]` (coordinates in [-1, 1], the
/// innermost axis first) into `out: [N, C, *output]`.
pub fn grid_sample_f32(p: &GridParams<'_>, x: &[f32], grid: &[f32], out: &mut [f32]) {
    let d = p.input.len();
    assert!(
        (1..=MAX_DIMS).contains(&d) && p.output.len() == d,
        "grid sample of {d} dims"
    );
    let in_len: usize = p.input.iter().product();
    let out_len: usize = p.output.iter().product();
    assert!(
        x.len() >= p.batch * p.channels * in_len
            && grid.len() >= p.batch * out_len * d
            && out.len() >= p.batch * p.channels * out_len,
        "grid sample buffers too short"
    );
    let mut strides = [0usize; MAX_DIMS];
    let mut acc = 1;
    for k in (0..d).rev() {
        strides[k] = acc;
        acc *= p.input[k];
    }
    for n in 0..p.batch {
        for o in 0..out_len {
            let g = &grid[(n * out_len + o) * d..][..d];
            let taps: [AxisTaps; MAX_DIMS] = core::array::from_fn(|k| {
                if k < d {
                    axis_taps(p, p.input[k], g[d - 1 - k])
                } else {
                    AxisTaps {
                        index: [Some(0), None, None, None],
                        weight: [1.0, 0.0, 0.0, 0.0],
                        len: 1,
                    }
                }
            });
            for c in 0..p.channels {
                let src = &x[(n * p.channels + c) * in_len..][..in_len];
                let mut sum = 0.0f64;
                for a in 0..taps[0].len {
                    let Some(ia) = taps[0].index[a] else { continue };
                    for b in 0..taps[1].len {
                        let Some(ib) = taps[1].index[b] else { continue };
                        for e in 0..taps[2].len {
                            let Some(ie) = taps[2].index[e] else { continue };
                            let w = taps[0].weight[a] * taps[1].weight[b] * taps[2].weight[e];
                            let off = ia * strides[0]
                                + if d > 1 { ib * strides[1] } else { 0 }
                                + if d > 2 { ie * strides[2] } else { 0 };
                            sum += w * f64::from(src[off]);
                        }
                    }
                }
                out[(n * p.channels + c) * out_len + o] = sum as f32;
            }
        }
    }
}

/// `AffineGrid`: for each batch item, the affine map `theta: [N, D, D + 1]` applied to the
/// normalized coordinates `(x, y[, z], 1)` of every position of the `dims` (2 or 3 spatial
/// sizes, outermost first) grid, into `out: [N, *dims, D]`.
pub fn affine_grid_f32(theta: &[f32], out: &mut [f32], batch: usize, dims: &[usize], align: bool) {
    let d = dims.len();
    assert!((2..=MAX_DIMS).contains(&d), "affine grid of {d} dims");
    let points: usize = dims.iter().product();
    assert!(
        theta.len() >= batch * d * (d + 1) && out.len() >= batch * points * d,
        "affine grid buffers too short"
    );
    // The base coordinate of index i along an axis of n positions.
    let base = |i: usize, n: usize| -> f64 {
        if align {
            if n <= 1 {
                -1.0
            } else {
                -1.0 + i as f64 * (2.0 / (n as f64 - 1.0))
            }
        } else {
            let step = 2.0 / n as f64;
            -1.0 + step / 2.0 + i as f64 * step
        }
    };
    for b in 0..batch {
        let th = &theta[b * d * (d + 1)..][..d * (d + 1)];
        for p in 0..points {
            // Homogeneous coordinates, innermost axis first (x, y, z, 1).
            let mut h = [0.0f64; MAX_DIMS + 1];
            let mut rem = p;
            for (k, &n) in dims.iter().enumerate().rev() {
                h[d - 1 - k] = base(rem % n, n);
                rem /= n;
            }
            h[d] = 1.0;
            let dst = &mut out[(b * points + p) * d..][..d];
            for (j, o) in dst.iter_mut().enumerate() {
                let row = &th[j * (d + 1)..][..d + 1];
                *o = row
                    .iter()
                    .zip(&h)
                    .map(|(&t, &v)| f64::from(t) * v)
                    .sum::<f64>() as f32;
            }
        }
    }
}

/// The geometry of one RoiAlign.
#[derive(Clone, Copy, Debug)]
pub struct RoiAlignParams {
    /// C.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Output height per region.
    pub out_h: usize,
    /// Output width per region.
    pub out_w: usize,
    /// Samples per bin along each axis (0: adaptive, `ceil(region / output)`).
    pub sampling_ratio: usize,
    /// Scales the region coordinates to the input's.
    pub spatial_scale: f32,
    /// Shift coordinates by half a pixel (opset 16's default); else regions are at least
    /// one pixel (the legacy `output_half_pixel`).
    pub half_pixel: bool,
    /// Max pooling of the samples (else average).
    pub max: bool,
}

/// Bilinear taps at (y, x) as RoiAlign defines them: none outside `[-1, size]`, clamped at
/// the far edge.
fn roi_taps(y: f64, x: f64, h: usize, w: usize) -> Option<[(usize, f64); 4]> {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 || h == 0 || w == 0 {
        return None;
    }
    let axis = |v: f64, n: usize| -> (usize, usize, f64) {
        let v = v.max(0.0);
        let lo = floor_f64(v) as usize;
        if lo >= n - 1 {
            (n - 1, n - 1, 0.0)
        } else {
            (lo, lo + 1, v - lo as f64)
        }
    };
    let (y0, y1, ly) = axis(y, h);
    let (x0, x1, lx) = axis(x, w);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Some([
        (y0 * w + x0, hy * hx),
        (y0 * w + x1, hy * lx),
        (y1 * w + x0, ly * hx),
        (y1 * w + x1, ly * lx),
    ])
}

/// `RoiAlign`: pools each region `rois[r] = (x1, y1, x2, y2)` of image `batch_indices[r]` of
/// `x: [N, C, H, W]` into `out: [R, C, out_h, out_w]` by bilinear samples per bin; a region
/// naming a missing image yields zeros.
pub fn roi_align_f32(
    p: &RoiAlignParams,
    x: &[f32],
    rois: &[f32],
    batch_indices: &[i64],
    out: &mut [f32],
) {
    let plane = p.height * p.width;
    let bins = p.out_h * p.out_w;
    let images = x.len() / (p.channels * plane).max(1);
    let offset = if p.half_pixel { 0.5 } else { 0.0 };
    for (r, &bi) in batch_indices.iter().enumerate() {
        let dst = &mut out[r * p.channels * bins..][..p.channels * bins];
        let Some(n) = usize::try_from(bi).ok().filter(|&n| n < images) else {
            dst.fill(0.0);
            continue;
        };
        let roi = &rois[r * 4..][..4];
        let scale = f64::from(p.spatial_scale);
        let (x1, y1) = (
            f64::from(roi[0]) * scale - offset,
            f64::from(roi[1]) * scale - offset,
        );
        let (x2, y2) = (
            f64::from(roi[2]) * scale - offset,
            f64::from(roi[3]) * scale - offset,
        );
        let (mut rw, mut rh) = (x2 - x1, y2 - y1);
        if !p.half_pixel {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bin_h, bin_w) = (rh / p.out_h as f64, rw / p.out_w as f64);
        let grid = |ratio: usize, len: f64, out: usize| -> usize {
            if ratio > 0 {
                ratio
            } else {
                let g = crate::math64::ceil_f64(len / out as f64);
                if g > 0.0 {
                    g as usize
                } else {
                    0
                }
            }
        };
        let (gh, gw) = (
            grid(p.sampling_ratio, rh, p.out_h),
            grid(p.sampling_ratio, rw, p.out_w),
        );
        let count = (gh * gw).max(1) as f64;
        for c in 0..p.channels {
            let src = &x[(n * p.channels + c) * plane..][..plane];
            for ph in 0..p.out_h {
                for pw in 0..p.out_w {
                    let mut acc = 0.0f64;
                    let mut best: Option<f64> = None;
                    for iy in 0..gh {
                        let y = y1 + ph as f64 * bin_h + (iy as f64 + 0.5) * bin_h / gh as f64;
                        for ix in 0..gw {
                            let xx = x1 + pw as f64 * bin_w + (ix as f64 + 0.5) * bin_w / gw as f64;
                            let taps = roi_taps(y, xx, p.height, p.width);
                            if p.max {
                                let v = taps.map_or(0.0, |t| {
                                    t.iter()
                                        .map(|&(i, w)| w * f64::from(src[i]))
                                        .fold(f64::NEG_INFINITY, f64::max)
                                });
                                best = Some(best.map_or(v, |b: f64| b.max(v)));
                            } else if let Some(t) = taps {
                                acc += t.iter().map(|&(i, w)| w * f64::from(src[i])).sum::<f64>();
                            }
                        }
                    }
                    dst[(c * p.out_h + ph) * p.out_w + pw] = if p.max {
                        best.unwrap_or(0.0) as f32
                    } else {
                        (acc / count) as f32
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_grid_reproduces_input() {
        // align_corners: grid points at pixel centres reproduce the input exactly.
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let grid = [-1.0f32, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0];
        for mode in [GridMode::Nearest, GridMode::Linear, GridMode::Cubic] {
            let p = GridParams {
                batch: 1,
                channels: 1,
                input: &[2, 2],
                output: &[2, 2],
                mode,
                padding: GridPadding::Border,
                align_corners: true,
            };
            let mut out = [0.0f32; 4];
            grid_sample_f32(&p, &x, &grid, &mut out);
            for (a, b) in out.iter().zip(&x) {
                assert!((a - b).abs() < 1e-6, "{mode:?}: {out:?}");
            }
        }
        assert_eq!(reflect(-1.5, -0.5, 1.5), 0.5);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
    }

    #[test]
    fn affine_identity_and_roi_average() {
        // The identity map reproduces the base grid: 2x2, align_corners -> corners at +-1.
        let theta = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0];
        let mut grid = [0.0f32; 8];
        affine_grid_f32(&theta, &mut grid, 1, &[2, 2], true);
        assert_eq!(grid, [-1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0]);
        // A region covering a constant image averages to that constant.
        let p = RoiAlignParams {
            channels: 1,
            height: 4,
            width: 4,
            out_h: 2,
            out_w: 2,
            sampling_ratio: 2,
            spatial_scale: 1.0,
            half_pixel: true,
            max: false,
        };
        let x = [2.5f32; 16];
        let mut out = [0.0f32; 4];
        roi_align_f32(&p, &x, &[0.5, 0.5, 3.5, 3.5], &[0], &mut out);
        for v in out {
            assert!((v - 2.5).abs() < 1e-6);
        }
    }
}
