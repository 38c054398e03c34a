//! Sampling at computed coordinates: `GridSample` (nearest, linear, cubic; zeros, border,
//! reflection padding; 1 to 3 spatial dims) and the grids `AffineGrid` makes.

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
}
