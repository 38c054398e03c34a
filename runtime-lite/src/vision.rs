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
#[allow(clippy::too_many_arguments)]
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
