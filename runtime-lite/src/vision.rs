//! Vision kernels: `GridSample`, `AffineGrid`, `Col2Im`, `RoiAlign`.

use crate::math::{floor_f64, round_even_f64};

/// How `GridSample` interpolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleMode {
    /// Nearest pixel (ties to even).
    Nearest,
    /// Linear along each axis.
    Linear,
    /// Cubic (alpha -0.75) along each axis.
    Cubic,
}

/// How `GridSample` treats coordinates outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Zero outside.
    Zeros,
    /// Clamp to the edge.
    Border,
    /// Reflect at the border.
    Reflection,
}

fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let rng = hi - lo;
    if x < lo {
        let dx = lo - x;
        let n = trunc(dx / rng);
        let r = dx - n * rng;
        if n % 2.0 == 0.0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = trunc(dx / rng);
        let r = dx - n * rng;
        if n % 2.0 == 0.0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

fn trunc(x: f64) -> f64 {
    crate::math::trunc_f64(x)
}

/// Resolves an integer tap index under the padding mode; `None` reads zero.
fn tap(i: i64, dim: usize, padding: Padding, lo: f64, hi: f64) -> Option<usize> {
    let d = dim as i64;
    if d == 0 {
        return None;
    }
    let j = match padding {
        Padding::Zeros => i,
        Padding::Border => i.clamp(0, d - 1),
        Padding::Reflection => reflect(i as f64, lo, hi) as i64,
    };
    if (0..d).contains(&j) {
        Some(j as usize)
    } else {
        None
    }
}

fn cubic_coeffs(t: f32) -> [f32; 4] {
    let a = -0.75f32;
    let x = t.abs();
    let x1 = x + 1.0;
    let y = 1.0 - x;
    let y1 = 2.0 - x;
    [
        ((a * x1 - 5.0 * a) * x1 + 8.0 * a) * x1 - 4.0 * a,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        ((a + 2.0) * y - (a + 3.0)) * y * y + 1.0,
        ((a * y1 - 5.0 * a) * y1 + 8.0 * a) * y1 - 4.0 * a,
    ]
}

/// GridSample for float32: `x` is `[n, c, spatial...]` with `spatial` right-aligned into three
/// axes (`[1, h, w]` for 4-D input), `grid` is `[n, out_spatial..., k]` with `k` the real
/// number of spatial axes (coordinates in x, y, z order), `out` is `[n, c, out_spatial...]`
/// with `out_len` positions per channel.
#[allow(
    clippy::too_many_arguments,
    reason = "kernel parameters are compile-time constants passed positionally"
)]
pub fn grid_sample_f32(
    x: &[f32],
    grid: &[f32],
    out: &mut [f32],
    n: usize,
    c: usize,
    spatial: [usize; 3],
    k: usize,
    out_len: usize,
    mode: SampleMode,
    padding: Padding,
    align_corners: bool,
) {
    let plane: usize = spatial.iter().product();
    let lead = 3 - k;
    for b in 0..n {
        for p in 0..out_len {
            let g = &grid[(b * out_len + p) * k..(b * out_len + p + 1) * k];
            // Per axis (outermost first): up to four taps of (index, weight).
            let mut taps = [[(None::<usize>, 0f32); 4]; 3];
            let mut counts = [1usize; 3];
            for axis in 0..3 {
                if axis < lead {
                    taps[axis][0] = (Some(0), 1.0);
                    continue;
                }
                let dim = spatial[axis];
                let nv = f64::from(g[k - 1 - (axis - lead)]);
                let len = dim as f64;
                let (lo, hi) = if align_corners {
                    (0.0, len - 1.0)
                } else {
                    (-0.5, len - 0.5)
                };
                let mut v = if align_corners {
                    (nv + 1.0) / 2.0 * (len - 1.0)
                } else {
                    ((nv + 1.0) * len - 1.0) / 2.0
                } as f32;
                if mode == SampleMode::Nearest {
                    v = round_even_f64(f64::from(v)) as f32;
                }
                let vf = f64::from(v);
                if vf < lo || vf > hi {
                    match padding {
                        Padding::Border => v = vf.max(0.0).min(len - 1.0) as f32,
                        Padding::Reflection => v = reflect(vf, lo, hi) as f32,
                        Padding::Zeros => {}
                    }
                }
                match mode {
                    SampleMode::Nearest => {
                        taps[axis][0] = (tap(v as i64, dim, padding, lo, hi), 1.0);
                    }
                    SampleMode::Linear => {
                        let f = floor_f64(f64::from(v));
                        let i0 = f as i64;
                        let t = (f64::from(v) - f) as f32;
                        taps[axis][0] = (tap(i0, dim, padding, lo, hi), 1.0 - t);
                        taps[axis][1] = (tap(i0 + 1, dim, padding, lo, hi), t);
                        counts[axis] = 2;
                    }
                    SampleMode::Cubic => {
                        let f = floor_f64(f64::from(v));
                        let i0 = f as i64;
                        let w = cubic_coeffs((f64::from(v) - f) as f32);
                        for (j, &wj) in w.iter().enumerate() {
                            taps[axis][j] = (tap(i0 - 1 + j as i64, dim, padding, lo, hi), wj);
                        }
                        counts[axis] = 4;
                    }
                }
            }
            for ch in 0..c {
                let img = &x[(b * c + ch) * plane..(b * c + ch + 1) * plane];
                let mut s0 = 0f32;
                for &(ia, wa) in &taps[0][..counts[0]] {
                    let mut s1 = 0f32;
                    for &(ib, wb) in &taps[1][..counts[1]] {
                        let mut s2 = 0f32;
                        for &(ic, wc) in &taps[2][..counts[2]] {
                            let v = match (ia, ib, ic) {
                                (Some(a), Some(bb), Some(cc)) => {
                                    img[(a * spatial[1] + bb) * spatial[2] + cc]
                                }
                                _ => 0.0,
                            };
                            s2 += wc * v;
                        }
                        s1 += wb * s2;
                    }
                    s0 += wa * s1;
                }
                out[(b * c + ch) * out_len + p] = s0;
            }
        }
    }
}

/// AffineGrid for float32: `theta` is `[n, k, k + 1]`, `size` the output spatial sizes
/// right-aligned into `[d, h, w]` (`d` = 1 for 2-D), `out` is `[n, d?, h, w, k]`.
pub fn affine_grid_f32(
    theta: &[f32],
    out: &mut [f32],
    n: usize,
    k: usize,
    size: [usize; 3],
    align_corners: bool,
) {
    let coord = |i: usize, len: usize| -> f64 {
        if align_corners {
            if len <= 1 {
                -1.0
            } else {
                -1.0 + i as f64 * (2.0 / (len as f64 - 1.0))
            }
        } else {
            let step = 2.0 / len as f64;
            -1.0 + step / 2.0 + i as f64 * step
        }
    };
    let per = size[0] * size[1] * size[2];
    let tk = k * (k + 1);
    for b in 0..n {
        let t = &theta[b * tk..(b + 1) * tk];
        let mut p = 0;
        for zi in 0..size[0] {
            for yi in 0..size[1] {
                for xi in 0..size[2] {
                    // Homogeneous base coordinates in x, y, (z), 1 order.
                    let base = [
                        coord(xi, size[2]),
                        coord(yi, size[1]),
                        if k == 3 { coord(zi, size[0]) } else { 1.0 },
                        1.0,
                    ];
                    for row in 0..k {
                        let mut acc = 0f64;
                        for col in 0..k + 1 {
                            let bv = if col == k { 1.0 } else { base[col] };
                            acc += bv * f64::from(t[row * (k + 1) + col]);
                        }
                        out[(b * per + p) * k + row] = acc as f32;
                    }
                    p += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_grid_reproduces_image() {
        let theta = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0];
        let mut grid = [0f32; 2 * 3 * 2];
        affine_grid_f32(&theta, &mut grid, 1, 2, [1, 2, 3], false);
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        for mode in [SampleMode::Nearest, SampleMode::Linear, SampleMode::Cubic] {
            let mut out = [0f32; 6];
            grid_sample_f32(
                &x,
                &grid,
                &mut out,
                1,
                1,
                [1, 2, 3],
                2,
                6,
                mode,
                Padding::Border,
                false,
            );
            for (a, b) in out.iter().zip(&x) {
                assert!((a - b).abs() < 1e-4, "{mode:?}: {out:?}");
            }
        }
    }

    #[test]
    fn reflect_folds() {
        assert_eq!(reflect(-1.0, -0.5, 2.5), 0.0);
        assert_eq!(reflect(3.0, -0.5, 2.5), 2.0);
    }
}

/// Col2Im geometry: spatial sizes and per-axis conv parameters (rank of `image`).
#[derive(Debug, Clone, Copy)]
pub struct Col2ImGeom<'a> {
    /// Output image spatial shape.
    pub image: &'a [usize],
    /// Block (kernel) shape.
    pub block: &'a [usize],
    /// Number of block positions along each axis.
    pub positions: &'a [usize],
    /// Strides.
    pub strides: &'a [usize],
    /// Leading pads.
    pub pads: &'a [usize],
    /// Dilations.
    pub dilations: &'a [usize],
}

/// Col2Im for float32: `x` is `[n, c * prod(block), prod(positions)]`, `out` is
/// `[n, c, image...]`; overlapping contributions are summed.
pub fn col2im_f32(x: &[f32], out: &mut [f32], n: usize, c: usize, g: Col2ImGeom<'_>) {
    let img: usize = g.image.iter().product();
    let blk: usize = g.block.iter().product();
    let pos: usize = g.positions.iter().product();
    out.fill(0.0);
    let rank = g.image.len();
    for b in 0..n {
        for ch in 0..c {
            let dst = &mut out[(b * c + ch) * img..(b * c + ch + 1) * img];
            crate::shape::for_each_coord(g.block, |bi, bc| {
                let row = &x[((b * c + ch) * blk + bi) * pos..((b * c + ch) * blk + bi + 1) * pos];
                crate::shape::for_each_coord(g.positions, |li, lc| {
                    let mut flat = 0usize;
                    for d in 0..rank {
                        let p = lc[d] * g.strides[d] + bc[d] * g.dilations[d];
                        if p < g.pads[d] || p - g.pads[d] >= g.image[d] {
                            return;
                        }
                        flat = flat * g.image[d] + (p - g.pads[d]);
                    }
                    dst[flat] += row[li];
                });
            });
        }
    }
}

/// RoiAlign parameters.
#[derive(Debug, Clone, Copy)]
pub struct RoiAlignParams {
    /// Output bins `[height, width]`.
    pub out: [usize; 2],
    /// Samples per bin (0: adaptive).
    pub sampling_ratio: usize,
    /// Scale from ROI coordinates to the feature map.
    pub spatial_scale: f32,
    /// `half_pixel` coordinates (else `output_half_pixel`).
    pub half_pixel: bool,
    /// Max rather than average pooling.
    pub max: bool,
}

/// RoiAlign for float32: `x` is `[n, c, h, w]`, `rois` `[r, 4]` (x1, y1, x2, y2), `batch`
/// the image of each ROI (out of range reads zeros), `out` `[r, c, oh, ow]`.
#[allow(
    clippy::too_many_arguments,
    reason = "kernel parameters are compile-time constants passed positionally"
)]
pub fn roi_align_f32<I: crate::shape::IndexValue>(
    x: &[f32],
    rois: &[f32],
    batch: &[I],
    out: &mut [f32],
    [n, c, h, w]: [usize; 4],
    p: RoiAlignParams,
) {
    let [oh, ow] = p.out;
    let offset = if p.half_pixel { 0.5f32 } else { 0.0 };
    for (r, roi) in rois.chunks_exact(4).enumerate() {
        let sw = roi[0] * p.spatial_scale - offset;
        let sh = roi[1] * p.spatial_scale - offset;
        let ew = roi[2] * p.spatial_scale - offset;
        let eh = roi[3] * p.spatial_scale - offset;
        let (mut rw, mut rh) = (ew - sw, eh - sh);
        if !p.half_pixel {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bh, bw) = (rh / oh as f32, rw / ow as f32);
        let ceil = |v: f32| -> usize {
            let f = crate::math::ceil_f64(f64::from(v));
            if f > 0.0 {
                f as usize
            } else {
                0
            }
        };
        let gh = if p.sampling_ratio > 0 {
            p.sampling_ratio
        } else {
            ceil(rh / oh as f32)
        };
        let gw = if p.sampling_ratio > 0 {
            p.sampling_ratio
        } else {
            ceil(rw / ow as f32)
        };
        let count = (gh * gw).max(1) as f32;
        let img = crate::shape::resolve_index(batch[r].to_i64(), n);
        for ch in 0..c {
            let plane = img.map(|b| &x[(b * c + ch) * h * w..(b * c + ch + 1) * h * w]);
            for ph in 0..oh {
                for pw in 0..ow {
                    let mut acc = 0f32;
                    let mut first = true;
                    for iy in 0..gh {
                        let yy = sh + ph as f32 * bh + (iy as f32 + 0.5) * bh / gh as f32;
                        for ix in 0..gw {
                            let xx = sw + pw as f32 * bw + (ix as f32 + 0.5) * bw / gw as f32;
                            let v = bilinear_terms(plane, h, w, yy, xx);
                            if p.max {
                                let m = v[0].max(v[1]).max(v[2]).max(v[3]);
                                acc = if first { m } else { acc.max(m) };
                                first = false;
                            } else {
                                acc += v[0] + v[1] + v[2] + v[3];
                            }
                        }
                    }
                    if !p.max {
                        acc /= count;
                    }
                    out[((r * c + ch) * oh + ph) * ow + pw] = acc;
                }
            }
        }
    }
}

/// The four weighted corner values of a bilinear sample (zeros outside `[-1, size]`).
fn bilinear_terms(plane: Option<&[f32]>, h: usize, w: usize, y: f32, x: f32) -> [f32; 4] {
    let Some(plane) = plane else {
        return [0.0; 4];
    };
    if y < -1.0 || y > h as f32 || x < -1.0 || x > w as f32 || h == 0 || w == 0 {
        return [0.0; 4];
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut yl, mut xl) = (y as usize, x as usize);
    let (yh, xh);
    if yl >= h - 1 {
        yl = h - 1;
        yh = h - 1;
        y = yl as f32;
    } else {
        yh = yl + 1;
    }
    if xl >= w - 1 {
        xl = w - 1;
        xh = w - 1;
        x = xl as f32;
    } else {
        xh = xl + 1;
    }
    let (ly, lx) = (y - yl as f32, x - xl as f32);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    [
        hy * hx * plane[yl * w + xl],
        hy * lx * plane[yl * w + xh],
        ly * hx * plane[yh * w + xl],
        ly * lx * plane[yh * w + xh],
    ]
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn col2im_sums_overlaps() {
        // 1-D image of 3, block 2, stride 1: positions 2.
        let x = [1.0f32, 2.0, 10.0, 20.0];
        let mut out = [0f32; 3];
        let g = Col2ImGeom {
            image: &[3],
            block: &[2],
            positions: &[2],
            strides: &[1],
            pads: &[0],
            dilations: &[1],
        };
        col2im_f32(&x, &mut out, 1, 1, g);
        assert_eq!(out, [1.0, 12.0, 20.0]);
    }

    #[test]
    fn roi_align_constant_image() {
        let x = [3.0f32; 16];
        let rois = [0.0f32, 0.0, 3.0, 3.0];
        let mut out = [0f32; 4];
        let p = RoiAlignParams {
            out: [2, 2],
            sampling_ratio: 2,
            spatial_scale: 1.0,
            half_pixel: true,
            max: false,
        };
        roi_align_f32(&x, &rois, &[0i64], &mut out, [1, 1, 4, 4], p);
        for v in out {
            assert!((v - 3.0).abs() < 1e-5);
        }
    }
}
