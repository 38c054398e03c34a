//! Softmax along one axis of a tensor viewed as `[outer, axis, inner]`.

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
