//! Softmax, LogSoftmax and Hardmax along one axis of a tensor viewed as `[outer, axis, inner]`.

use crate::math;

/// `out = softmax(x)` along the middle axis of `[outer, axis_len, inner]`.
pub fn softmax_f32(x: &[f32], out: &mut [f32], outer: usize, axis_len: usize, inner: usize) {
    let block = axis_len * inner;
    if block == 0 {
        return;
    }
    for o in 0..outer {
        let xb = &x[o * block..][..block];
        let ob = &mut out[o * block..][..block];
        for i in 0..inner {
            let mut max = f32::NEG_INFINITY;
            for a in 0..axis_len {
                max = max.max(xb[a * inner + i]);
            }
            let mut sum = 0.0;
            for a in 0..axis_len {
                let e = math::exp(xb[a * inner + i] - max);
                ob[a * inner + i] = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            for a in 0..axis_len {
                ob[a * inner + i] *= inv;
            }
        }
    }
}

/// `out = log_softmax(x) = x - max - ln(sum(e^(x - max)))` along the middle axis of
/// `[outer, axis_len, inner]`.
pub fn log_softmax_f32(x: &[f32], out: &mut [f32], outer: usize, axis_len: usize, inner: usize) {
    let block = axis_len * inner;
    if block == 0 {
        return;
    }
    for o in 0..outer {
        let xb = &x[o * block..][..block];
        let ob = &mut out[o * block..][..block];
        for i in 0..inner {
            let mut max = f32::NEG_INFINITY;
            for a in 0..axis_len {
                max = max.max(xb[a * inner + i]);
            }
            let mut sum = 0.0f64;
            for a in 0..axis_len {
                sum += f64::from(math::exp(xb[a * inner + i] - max));
            }
            let shift = max + math::ln_f64(sum) as f32;
            for a in 0..axis_len {
                ob[a * inner + i] = xb[a * inner + i] - shift;
            }
        }
    }
}

/// `out = hardmax(x)`: 1 at the first maximum along the middle axis of
/// `[outer, axis_len, inner]`, 0 elsewhere.
pub fn hardmax_f32(x: &[f32], out: &mut [f32], outer: usize, axis_len: usize, inner: usize) {
    let block = axis_len * inner;
    if block == 0 {
        return;
    }
    for o in 0..outer {
        let xb = &x[o * block..][..block];
        let ob = &mut out[o * block..][..block];
        for i in 0..inner {
            let mut best = 0;
            for a in 1..axis_len {
                if xb[a * inner + i] > xb[best * inner + i] {
                    best = a;
                }
            }
            for a in 0..axis_len {
                ob[a * inner + i] = if a == best { 1.0 } else { 0.0 };
            }
        }
    }
}

/// Which of the three functions [`softmax_via`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxKind {
    /// `e^x / sum(e^x)`.
    Softmax,
    /// `x - ln(sum(e^x))`.
    LogSoftmax,
    /// 1 at the first maximum, 0 elsewhere.
    Hardmax,
}

/// Softmax, LogSoftmax or Hardmax for any storage type (float16/bfloat16 bits, f64): each
/// element is widened with `dec`, computed in f64 and stored with `enc`.
pub fn softmax_via<T: Copy>(
    kind: SoftmaxKind,
    x: &[T],
    out: &mut [T],
    [outer, axis_len, inner]: [usize; 3],
    dec: impl Fn(T) -> f64,
    enc: impl Fn(f64) -> T,
) {
    let block = axis_len * inner;
    if block == 0 {
        return;
    }
    for o in 0..outer {
        let xb = &x[o * block..][..block];
        let ob = &mut out[o * block..][..block];
        for i in 0..inner {
            let mut max = f64::NEG_INFINITY;
            let mut best = 0;
            for a in 0..axis_len {
                let v = dec(xb[a * inner + i]);
                if v > max || a == 0 {
                    max = v;
                    best = a;
                }
            }
            if kind == SoftmaxKind::Hardmax {
                for a in 0..axis_len {
                    ob[a * inner + i] = enc(if a == best { 1.0 } else { 0.0 });
                }
                continue;
            }
            let mut sum = 0.0;
            for a in 0..axis_len {
                sum += math::exp_f64(dec(xb[a * inner + i]) - max);
            }
            let (inv, shift) = (1.0 / sum, max + math::ln_f64(sum));
            for a in 0..axis_len {
                let v = dec(xb[a * inner + i]);
                ob[a * inner + i] = enc(match kind {
                    SoftmaxKind::Softmax => math::exp_f64(v - max) * inv,
                    _ => v - shift,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_and_hardmax_rows() {
        let x = [1.0f32, 2.0, 3.0, 3.0, 0.0, -1.0];
        let mut out = [0.0f32; 6];
        log_softmax_f32(&x, &mut out, 2, 3, 1);
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() as f32;
        assert!((out[0] - (1.0 - lse)).abs() < 1e-6);
        assert!((out[2] - (3.0 - lse)).abs() < 1e-6);
        // Column-wise (inner = 3): each column has two elements.
        hardmax_f32(&x, &mut out, 1, 2, 3);
        assert_eq!(out, [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let ties = [2.0f32, 2.0];
        let mut o = [0.0f32; 2];
        hardmax_f32(&ties, &mut o, 1, 2, 1);
        assert_eq!(o, [1.0, 0.0]);
    }

    #[test]
    fn generic_kernel_matches_f32_kernels() {
        let x = [1.0f32, 2.0, 3.0, 3.0, 0.0, -1.0];
        for (kind, reference) in [
            (
                SoftmaxKind::Softmax,
                softmax_f32 as fn(&[f32], &mut [f32], usize, usize, usize),
            ),
            (SoftmaxKind::LogSoftmax, log_softmax_f32),
            (SoftmaxKind::Hardmax, hardmax_f32),
        ] {
            let (mut want, mut got) = ([0.0f32; 6], [0.0f32; 6]);
            reference(&x, &mut want, 1, 2, 3);
            softmax_via(kind, &x, &mut got, [1, 2, 3], f64::from, |v| v as f32);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-6, "{kind:?}: {got:?} vs {want:?}");
            }
        }
    }
}
