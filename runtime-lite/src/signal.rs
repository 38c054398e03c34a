//! Signal kernels: `DFT` (complex, real-input one-sided, and one-sided inverse to real) and
//! `STFT`, as direct O(n²) sums in f64.

use crate::math::{cos_f64, sin_f64};

const TAU: f64 = core::f64::consts::TAU;

/// `e^(sign·2πi·j/n)` for `j` reduced modulo `n`.
#[inline]
fn twiddle(j: usize, n: usize, sign: f64) -> (f64, f64) {
    let a = TAU * (j % n) as f64 / n as f64;
    (cos_f64(a), sign * sin_f64(a))
}

/// The layout of a DFT: input `[outer, n_in, inner, c_in]`, output `[outer, n_out, inner,
/// c_out]` (`c` is 1 for real, 2 for complex).
#[derive(Debug, Clone, Copy)]
pub struct DftLayout {
    /// Product of the axes before the transformed one.
    pub outer: usize,
    /// Input length along the axis.
    pub n_in: usize,
    /// Product of the axes after it (excluding the real/imaginary axis).
    pub inner: usize,
    /// 1 (real) or 2 (complex) input.
    pub c_in: usize,
    /// The transform length (zero-padding or truncating the input).
    pub n: usize,
    /// Output length along the axis.
    pub n_out: usize,
    /// Inverse transform (scaled by 1/n).
    pub inverse: bool,
    /// One-sided inverse: the input is half a Hermitian spectrum, the output real (`c_out` 1).
    pub real_out: bool,
}

/// DFT along one axis (see [`DftLayout`]).
pub fn dft_f32(x: &[f32], out: &mut [f32], l: DftLayout) {
    let sign = if l.inverse { 1.0 } else { -1.0 };
    let c_out = if l.real_out { 1 } else { 2 };
    let take = l.n.min(l.n_in);
    let at = |o: usize, t: usize, r: usize| -> (f64, f64) {
        let p = ((o * l.n_in + t) * l.inner + r) * l.c_in;
        let re = f64::from(x[p]);
        let im = if l.c_in == 2 {
            f64::from(x[p + 1])
        } else {
            0.0
        };
        (re, im)
    };
    for o in 0..l.outer {
        for r in 0..l.inner {
            for k in 0..l.n_out {
                let (mut sr, mut si) = (0f64, 0f64);
                if l.real_out {
                    // x[k] = (1/n) Σ_j X[j] e^{2πi jk/n}, X Hermitian from its first half.
                    let half = l.n / 2;
                    for j in 0..=half {
                        if j >= l.n_in {
                            break;
                        }
                        let (hr, hi) = at(o, j, r);
                        let (c, s) = twiddle(j * k, l.n, 1.0);
                        let v = hr * c - hi * s;
                        let edge = j == 0 || (l.n.is_multiple_of(2) && j == half);
                        if edge {
                            sr += hr * c;
                        } else {
                            sr += 2.0 * v;
                        }
                    }
                    sr /= l.n as f64;
                    out[(o * l.n_out + k) * l.inner + r] = sr as f32;
                    continue;
                }
                for t in 0..take {
                    let (xr, xi) = at(o, t, r);
                    let (c, s) = twiddle(k * t, l.n, sign);
                    sr += xr * c - xi * s;
                    si += xr * s + xi * c;
                }
                if l.inverse {
                    sr /= l.n as f64;
                    si /= l.n as f64;
                }
                let q = ((o * l.n_out + k) * l.inner + r) * c_out;
                out[q] = sr as f32;
                out[q + 1] = si as f32;
            }
        }
    }
}

/// STFT: `x` is `[batch, len, c_in]`, frames of `frame` samples every `step` samples, each
/// multiplied by `window` (when given) and transformed; `out` is `[batch, frames, bins, 2]`.
#[allow(
    clippy::too_many_arguments,
    reason = "kernel parameters are compile-time constants passed positionally"
)]
pub fn stft_f32(
    x: &[f32],
    window: Option<&[f32]>,
    out: &mut [f32],
    batch: usize,
    len: usize,
    c_in: usize,
    step: usize,
    frame: usize,
    frames: usize,
    bins: usize,
) {
    for b in 0..batch {
        for f in 0..frames {
            for k in 0..bins {
                let (mut sr, mut si) = (0f64, 0f64);
                for t in 0..frame {
                    let p = (b * len + f * step + t) * c_in;
                    let w = window.map_or(1.0, |w| f64::from(w[t]));
                    let xr = f64::from(x[p]) * w;
                    let xi = if c_in == 2 {
                        f64::from(x[p + 1]) * w
                    } else {
                        0.0
                    };
                    let (c, s) = twiddle(k * t, frame, -1.0);
                    sr += xr * c - xi * s;
                    si += xr * s + xi * c;
                }
                let q = ((b * frames + f) * bins + k) * 2;
                out[q] = sr as f32;
                out[q + 1] = si as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_then_irfft_round_trips() {
        let x = [1.0f32, 2.0, -1.0, 0.5];
        let mut spec = [0f32; 3 * 2];
        let fwd = DftLayout {
            outer: 1,
            n_in: 4,
            inner: 1,
            c_in: 1,
            n: 4,
            n_out: 3,
            inverse: false,
            real_out: false,
        };
        dft_f32(&x, &mut spec, fwd);
        assert!((spec[0] - 2.5).abs() < 1e-6);
        let mut back = [0f32; 4];
        let inv = DftLayout {
            n_in: 3,
            c_in: 2,
            n_out: 4,
            inverse: true,
            real_out: true,
            ..fwd
        };
        dft_f32(&spec, &mut back, inv);
        for (a, b) in back.iter().zip(&x) {
            assert!((a - b).abs() < 1e-5, "{back:?}");
        }
    }

    #[test]
    fn stft_single_frame_is_dft() {
        let x = [1.0f32, 0.0, 0.0, 0.0];
        let mut out = [0f32; 6];
        stft_f32(&x, None, &mut out, 1, 4, 1, 4, 4, 1, 3);
        for (a, b) in out.iter().zip([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }
}
