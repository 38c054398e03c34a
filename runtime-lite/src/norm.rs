//! Normalization kernels: batch normalization in inference mode.

use crate::math;

/// `out = (x - mean[c]) / sqrt(var[c] + epsilon) * scale[c] + bias[c]` over `x: [N, C, inner]`.
#[allow(
    clippy::too_many_arguments,
    reason = "the five ONNX operands, epsilon and the layout"
)]
pub fn batch_norm_f32(
    x: &[f32],
    scale: &[f32],
    bias: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f32,
    out: &mut [f32],
    channels: usize,
    inner: usize,
) {
    let block = channels * inner;
    if block == 0 {
        return;
    }
    for (xb, ob) in x.chunks_exact(block).zip(out.chunks_exact_mut(block)) {
        for c in 0..channels {
            let k = scale[c] / math::sqrt(var[c] + epsilon);
            let shift = bias[c] - mean[c] * k;
            let (xs, os) = (&xb[c * inner..][..inner], &mut ob[c * inner..][..inner]);
            for (o, &v) in os.iter_mut().zip(xs) {
                *o = v * k + shift;
            }
        }
    }
}
