//! Signal processing: the discrete Fourier transform along one axis (forward, inverse,
//! one-sided in both directions), the short-time Fourier transform, and the Hann, Hamming
//! and Blackman windows. Computed in
//! f64 with exact twiddle angles (`2 pi (k t mod N) / N`).

use crate::math64::sin_cos_f64;

/// The layout of one DFT: the input is `[outer, in_len, inner, in_complex ? 2 : 1]`, the
/// output `[outer, out_len, inner, out_complex ? 2 : 1]`.
#[derive(Clone, Copy, Debug)]
pub struct DftParams {
    /// Product of the axes before the transformed one.
    pub outer: usize,
    /// Product of the axes after it (excluding the complex axis).
    pub inner: usize,
    /// Input length along the axis.
    pub in_len: usize,
    /// The input holds (real, imaginary) pairs.
    pub in_complex: bool,
    /// Transform length N (the input is cut or zero-padded to it; a one-sided inverse
    /// reads `N / 2 + 1` bins).
    pub n: usize,
    /// Output length along the axis.
    pub out_len: usize,
    /// The output holds (real, imaginary) pairs (else the real part).
    pub out_complex: bool,
    /// Inverse transform (scaled by 1 / N).
    pub inverse: bool,
    /// One-sided: forward keeps bins `0..=N/2`; inverse reads a half spectrum and extends it
    /// by conjugate symmetry.
    pub onesided: bool,
}

/// Computes the DFT described by `p`; `scratch` holds at least `2 * p.n` values.
pub fn dft_f32(p: &DftParams, x: &[f32], out: &mut [f32], scratch: &mut [f64]) {
    let (ci, co) = (
        if p.in_complex { 2 } else { 1 },
        if p.out_complex { 2 } else { 1 },
    );
    let n = p.n;
    let seq = &mut scratch[..2 * n];
    let sign = if p.inverse { 1.0 } else { -1.0 };
    let scale = if p.inverse && n > 0 {
        1.0 / n as f64
    } else {
        1.0
    };
    for o in 0..p.outer {
        for i in 0..p.inner {
            let at = |t: usize| -> (f64, f64) {
                let base = ((o * p.in_len + t) * p.inner + i) * ci;
                let re = f64::from(x[base]);
                let im = if p.in_complex {
                    f64::from(x[base + 1])
                } else {
                    0.0
                };
                (re, im)
            };
            for t in 0..n {
                let (re, im) = if p.inverse && p.onesided {
                    let half = n / 2;
                    if t <= half {
                        if t < p.in_len {
                            at(t)
                        } else {
                            (0.0, 0.0)
                        }
                    } else {
                        let m = n - t;
                        if m < p.in_len {
                            let (re, im) = at(m);
                            (re, -im)
                        } else {
                            (0.0, 0.0)
                        }
                    }
                } else if t < p.in_len {
                    at(t)
                } else {
                    (0.0, 0.0)
                };
                seq[2 * t] = re;
                seq[2 * t + 1] = im;
            }
            for k in 0..p.out_len {
                let (mut re, mut im) = (0.0, 0.0);
                for t in 0..n {
                    let angle =
                        sign * 2.0 * core::f64::consts::PI * ((k * t) % n) as f64 / n as f64;
                    let (s, c) = sin_cos_f64(angle);
                    let (a, b) = (seq[2 * t], seq[2 * t + 1]);
                    re += a * c - b * s;
                    im += a * s + b * c;
                }
                let base = ((o * p.out_len + k) * p.inner + i) * co;
                out[base] = (re * scale) as f32;
                if p.out_complex {
                    out[base + 1] = (im * scale) as f32;
                }
            }
        }
    }
}

/// The layout of one STFT: `signal: [batch, len, complex ? 2 : 1]` into
/// `out: [batch, frames, bins, 2]`.
#[derive(Clone, Copy, Debug)]
pub struct StftParams {
    /// Batch.
    pub batch: usize,
    /// Signal length.
    pub len: usize,
    /// The signal holds (real, imaginary) pairs.
    pub complex: bool,
    /// Samples per frame (the DFT length).
    pub frame_length: usize,
    /// Samples between frame starts.
    pub frame_step: usize,
    /// Frames.
    pub frames: usize,
    /// Bins kept per frame (`frame_length / 2 + 1` when one-sided).
    pub bins: usize,
}

/// Short-time Fourier transform: each frame of the signal, multiplied by `window` when
/// given, is transformed; `scratch` holds at least `2 * frame_length` values.
pub fn stft_f32(
    p: &StftParams,
    x: &[f32],
    window: Option<&[f32]>,
    out: &mut [f32],
    scratch: &mut [f64],
) {
    let n = p.frame_length;
    let c = if p.complex { 2 } else { 1 };
    let seq = &mut scratch[..2 * n];
    for b in 0..p.batch {
        for f in 0..p.frames {
            for t in 0..n {
                let w = window.map_or(1.0, |w| f64::from(w[t]));
                let base = (b * p.len + f * p.frame_step + t) * c;
                seq[2 * t] = f64::from(x[base]) * w;
                seq[2 * t + 1] = if p.complex {
                    f64::from(x[base + 1]) * w
                } else {
                    0.0
                };
            }
            for k in 0..p.bins {
                let (mut re, mut im) = (0.0, 0.0);
                for t in 0..n {
                    let angle = -2.0 * core::f64::consts::PI * ((k * t) % n) as f64 / n as f64;
                    let (s, cs) = sin_cos_f64(angle);
                    let (a, bb) = (seq[2 * t], seq[2 * t + 1]);
                    re += a * cs - bb * s;
                    im += a * s + bb * cs;
                }
                let o = ((b * p.frames + f) * p.bins + k) * 2;
                out[o] = re as f32;
                out[o + 1] = im as f32;
            }
        }
    }
}

/// Which window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// `0.5 - 0.5 cos(2 pi n / N)`.
    Hann,
    /// `25/46 - 21/46 cos(2 pi n / N)`.
    Hamming,
    /// `0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)`.
    Blackman,
}

/// Writes the window of `out.len()` points; periodic windows use N = length, symmetric
/// ones N = length - 1.
pub fn window_f32(kind: Window, periodic: bool, out: &mut [f32]) {
    let len = out.len();
    let n = if periodic { len } else { len.saturating_sub(1) } as f64;
    for (i, o) in out.iter_mut().enumerate() {
        let a = if n > 0.0 {
            2.0 * core::f64::consts::PI * i as f64 / n
        } else {
            0.0
        };
        let (_, c1) = sin_cos_f64(a);
        let v = match kind {
            Window::Hann => 0.5 - 0.5 * c1,
            Window::Hamming => 25.0 / 46.0 - 21.0 / 46.0 * c1,
            Window::Blackman => 0.42 - 0.5 * c1 + 0.08 * sin_cos_f64(2.0 * a).1,
        };
        *o = v as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dft_of_impulse_and_round_trip() {
        // The DFT of an impulse is flat; the inverse of a flat spectrum is an impulse.
        let p = DftParams {
            outer: 1,
            inner: 1,
            in_len: 4,
            in_complex: false,
            n: 4,
            out_len: 4,
            out_complex: true,
            inverse: false,
            onesided: false,
        };
        let mut out = [0.0f32; 8];
        let mut scratch = [0.0f64; 8];
        dft_f32(&p, &[1.0, 0.0, 0.0, 0.0], &mut out, &mut scratch);
        assert_eq!(out, [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        let inv = DftParams {
            in_complex: true,
            inverse: true,
            ..p
        };
        let mut back = [0.0f32; 8];
        dft_f32(&inv, &out, &mut back, &mut scratch);
        for (b, want) in back.iter().zip([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]) {
            assert!((b - want).abs() < 1e-7);
        }
        let mut w = [0.0f32; 4];
        window_f32(Window::Hann, true, &mut w);
        assert_eq!(w, [0.0, 0.5, 1.0, 0.5]);
    }
}
