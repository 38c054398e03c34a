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

/// A complex number as `(re, im)`.
type C = (f32, f32);

#[inline]
fn add(a: C, b: C) -> C {
    (a.0 + b.0, a.1 + b.1)
}

#[inline]
fn sub(a: C, b: C) -> C {
    (a.0 - b.0, a.1 - b.1)
}

/// `v·conj(w)` forward, `v·w` backward.
#[inline]
fn twmul(fwd: bool, v: C, w: C) -> C {
    if fwd {
        (v.0 * w.0 + v.1 * w.1, v.1 * w.0 - v.0 * w.1)
    } else {
        (v.0 * w.0 - v.1 * w.1, v.0 * w.1 + v.1 * w.0)
    }
}

/// The radix passes of a mixed-radix FFT of length `n` (radices 4, 2, 3, 5, in the order
/// the transform applies them), or `None` if `n` has another prime factor.
pub fn fft_factors(n: usize) -> Option<([usize; 64], usize)> {
    let mut f = [0usize; 64];
    let mut k = 0;
    let mut len = n;
    if len == 0 {
        return None;
    }
    while len.is_multiple_of(4) {
        f[k] = 4;
        k += 1;
        len /= 4;
    }
    if len.is_multiple_of(2) {
        len /= 2;
        f[k] = 2;
        k += 1;
        f.swap(0, k - 1);
    }
    for p in [3, 5] {
        while len.is_multiple_of(p) {
            f[k] = p;
            k += 1;
            len /= p;
        }
    }
    (len == 1).then_some((f, k))
}

/// Scratch `f32`s [`fft_c2c_f32`] needs for length `n`.
pub fn fft_scratch_len(n: usize) -> usize {
    6 * n
}

/// In-place complex FFT of `data` (`n` interleaved complex values) in f32 with mixed radix
/// 2/3/4/5 passes (`n` must pass [`fft_factors`]), the result multiplied by `fct`.
/// `scratch` holds [`fft_scratch_len`] values.
pub fn fft_c2c_f32(data: &mut [f32], scratch: &mut [f32], n: usize, fwd: bool, fct: f32) {
    let Some((factors, count)) = fft_factors(n) else {
        return;
    };
    let (tw, rest) = scratch.split_at_mut(2 * n);
    for j in 0..n {
        let (s, c) = sin_cos_f64(core::f64::consts::TAU * j as f64 / n as f64);
        tw[2 * j] = c as f32;
        tw[2 * j + 1] = s as f32;
    }
    let (a, b) = rest.split_at_mut(2 * n);
    a[..2 * n].copy_from_slice(&data[..2 * n]);
    let mut in_a = true;
    let mut l1 = 1;
    for &ip in &factors[..count] {
        let l2 = ip * l1;
        let ido = n / l2;
        let (src, dst) = if in_a { (&*a, &mut *b) } else { (&*b, &mut *a) };
        pass(ip, fwd, ido, l1, src, dst, tw);
        in_a = !in_a;
        l1 = l2;
    }
    let res = if in_a { &*a } else { &*b };
    for (d, &s) in data[..2 * n].iter_mut().zip(res) {
        *d = if fct == 1.0 { s } else { s * fct };
    }
}

fn pass(ip: usize, fwd: bool, ido: usize, l1: usize, cc: &[f32], ch: &mut [f32], tw: &[f32]) {
    let get = |a: usize, b: usize, c: usize| -> C {
        let p = 2 * (a + ido * (b + ip * c));
        (cc[p], cc[p + 1])
    };
    let put = |ch: &mut [f32], a: usize, b: usize, c: usize, v: C| {
        let p = 2 * (a + ido * (b + l1 * c));
        ch[p] = v.0;
        ch[p + 1] = v.1;
    };
    let wa = |x: usize, i: usize| -> C {
        let j = (x + 1) * l1 * i;
        (tw[2 * j], tw[2 * j + 1])
    };
    let sign = if fwd { -1.0f32 } else { 1.0 };
    for k in 0..l1 {
        for i in 0..ido {
            match ip {
                2 => {
                    let (c0, c1) = (get(i, 0, k), get(i, 1, k));
                    put(ch, i, k, 0, add(c0, c1));
                    let d = sub(c0, c1);
                    put(
                        ch,
                        i,
                        k,
                        1,
                        if i == 0 { d } else { twmul(fwd, d, wa(0, i)) },
                    );
                }
                3 => {
                    let (twr, twi) = (-0.5f32, sign * (0.866_025_403_784_438_6_f64 as f32));
                    let t0 = get(i, 0, k);
                    let (c1, c2) = (get(i, 1, k), get(i, 2, k));
                    let (t1, t2) = (add(c1, c2), sub(c1, c2));
                    put(ch, i, k, 0, add(t0, t1));
                    let ca = add(t0, (t1.0 * twr, t1.1 * twr));
                    let cb = (-t2.1 * twi, t2.0 * twi);
                    if i == 0 {
                        put(ch, i, k, 1, add(ca, cb));
                        put(ch, i, k, 2, sub(ca, cb));
                    } else {
                        put(ch, i, k, 1, twmul(fwd, add(ca, cb), wa(0, i)));
                        put(ch, i, k, 2, twmul(fwd, sub(ca, cb), wa(1, i)));
                    }
                }
                4 => {
                    let (c0, c1, c2, c3) = (get(i, 0, k), get(i, 1, k), get(i, 2, k), get(i, 3, k));
                    let (t2, t1) = (add(c0, c2), sub(c0, c2));
                    let (t3, t4) = (add(c1, c3), sub(c1, c3));
                    let t4 = if fwd { (t4.1, -t4.0) } else { (-t4.1, t4.0) };
                    if i == 0 {
                        put(ch, i, k, 0, add(t2, t3));
                        put(ch, i, k, 2, sub(t2, t3));
                        put(ch, i, k, 1, add(t1, t4));
                        put(ch, i, k, 3, sub(t1, t4));
                    } else {
                        put(ch, i, k, 0, add(t2, t3));
                        put(ch, i, k, 1, twmul(fwd, add(t1, t4), wa(0, i)));
                        put(ch, i, k, 2, twmul(fwd, sub(t2, t3), wa(1, i)));
                        put(ch, i, k, 3, twmul(fwd, sub(t1, t4), wa(2, i)));
                    }
                }
                _ => {
                    let tw1r = 0.309_016_994_374_947_4_f64 as f32;
                    let tw1i = sign * (0.951_056_516_295_153_5_f64 as f32);
                    let tw2r = -0.809_016_994_374_947_4_f64 as f32;
                    let tw2i = sign * (0.587_785_252_292_473_1_f64 as f32);
                    let t0 = get(i, 0, k);
                    let (c1, c4) = (get(i, 1, k), get(i, 4, k));
                    let (c2, c3) = (get(i, 2, k), get(i, 3, k));
                    let (t1, t4) = (add(c1, c4), sub(c1, c4));
                    let (t2, t3) = (add(c2, c3), sub(c2, c3));
                    put(ch, i, k, 0, (t0.0 + t1.0 + t2.0, t0.1 + t1.1 + t2.1));
                    let step = |twar: f32, twbr: f32, twai: f32, twbi: f32| -> (C, C) {
                        let ca = (
                            t0.0 + twar * t1.0 + twbr * t2.0,
                            t0.1 + twar * t1.1 + twbr * t2.1,
                        );
                        let cb = (-(twai * t4.1 + twbi * t3.1), twai * t4.0 + twbi * t3.0);
                        (add(ca, cb), sub(ca, cb))
                    };
                    let (u1, u4) = step(tw1r, tw2r, tw1i, tw2i);
                    let (u2, u3) = step(tw2r, tw1r, tw2i, -tw1i);
                    if i == 0 {
                        put(ch, i, k, 1, u1);
                        put(ch, i, k, 4, u4);
                        put(ch, i, k, 2, u2);
                        put(ch, i, k, 3, u3);
                    } else {
                        put(ch, i, k, 1, twmul(fwd, u1, wa(0, i)));
                        put(ch, i, k, 4, twmul(fwd, u4, wa(3, i)));
                        put(ch, i, k, 2, twmul(fwd, u2, wa(1, i)));
                        put(ch, i, k, 3, twmul(fwd, u3, wa(2, i)));
                    }
                }
            }
        }
    }
}

/// The DFT described by `p` for complex input and two-sided output, through
/// [`fft_c2c_f32`] in f32 (as numpy transforms complex64 data; the length must pass
/// [`fft_factors`]). `scratch` holds `2 * p.n + fft_scratch_len(p.n)` values.
pub fn dft_fft_f32(p: &DftParams, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
    let (buf, rest) = scratch.split_at_mut(2 * p.n);
    let take = p.n.min(p.in_len);
    let fct = if p.inverse { 1.0 / p.n as f32 } else { 1.0 };
    for o in 0..p.outer {
        for r in 0..p.inner {
            buf.fill(0.0);
            for t in 0..take {
                let q = ((o * p.in_len + t) * p.inner + r) * 2;
                buf[2 * t] = x[q];
                buf[2 * t + 1] = x[q + 1];
            }
            fft_c2c_f32(buf, rest, p.n, !p.inverse, fct);
            for k in 0..p.out_len {
                let q = ((o * p.out_len + k) * p.inner + r) * 2;
                out[q] = buf[2 * k];
                out[q + 1] = buf[2 * k + 1];
            }
        }
    }
}

#[cfg(test)]
mod fft_tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn fft_matches_direct_sum() {
        for n in [1usize, 2, 3, 4, 5, 6, 8, 10, 12, 15, 16, 20, 30, 60] {
            let x: Vec<f32> = (0..2 * n).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
            for inverse in [false, true] {
                let p = DftParams {
                    outer: 1,
                    inner: 1,
                    in_len: n,
                    in_complex: true,
                    n,
                    out_len: n,
                    out_complex: true,
                    inverse,
                    onesided: false,
                };
                let mut want = vec![0f32; 2 * n];
                dft_f32(&p, &x, &mut want, &mut vec![0f64; 2 * n]);
                let mut got = vec![0f32; 2 * n];
                let mut scratch = vec![0f32; 2 * n + fft_scratch_len(n)];
                dft_fft_f32(&p, &x, &mut got, &mut scratch);
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-3,
                        "n {n} inverse {inverse}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
