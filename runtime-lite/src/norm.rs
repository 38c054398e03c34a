//! Normalization kernels: batch normalization in inference mode, row normalization (layer,
//! RMS, instance and group normalization), mean-variance normalization over arbitrary axes,
//! Lp normalization along an axis, and local response normalization.
//!
//! Statistics are accumulated in f64 and applied in f32.

use crate::elementwise::for_each_index;
use crate::epilogue::Activation;
use crate::threads::Exec;
use crate::{math, math64};

/// Elements per task of the batch normalizations: enough to amortize waking a worker, few
/// enough that a task's output is still in cache when its activations run over it.
const BN_TASK: usize = 1 << 14;

/// `out = act(x * k[c] + shift[c])` with `k = scale / sqrt(var + epsilon)` and
/// `shift = bias - mean * k` (inference batch normalization) over `x: [N, C, inner]`, then the
/// fused activations `acts` in order. Planes of channels split across `exec`'s threads.
#[allow(
    clippy::too_many_arguments,
    reason = "the five ONNX operands, epsilon, the layout and the fused activations"
)]
pub fn batch_norm_f32(
    exec: &Exec,
    x: &[f32],
    [scale, bias, mean, var]: [&[f32]; 4],
    epsilon: f32,
    out: &mut [f32],
    channels: usize,
    inner: usize,
    acts: &[Activation],
) {
    let block = channels * inner;
    if block == 0 {
        return;
    }
    let planes = x.len().min(out.len()) / inner;
    let per_task = BN_TASK.div_ceil(inner).max(1);
    exec.for_each_chunk(&mut out[..planes * inner], per_task * inner, &|t, part| {
        for (i, os) in part.chunks_exact_mut(inner).enumerate() {
            let plane = t * per_task + i;
            let (k, shift) =
                batch_norm_factors([scale, bias, mean, var], epsilon, plane % channels);
            for (o, &v) in os.iter_mut().zip(&x[plane * inner..][..inner]) {
                *o = v * k + shift;
            }
        }
        Activation::apply_chain(acts, part);
    });
}

/// Channel `c`'s `(k, shift)` of inference batch normalization, `out = x * k + shift`:
/// `k = scale / sqrt(var + epsilon)`, `shift = bias - mean * k` (both layouts use these).
#[inline]
fn batch_norm_factors([scale, bias, mean, var]: [&[f32]; 4], epsilon: f32, c: usize) -> (f32, f32) {
    let k = scale[c] / math::sqrt(var[c] + epsilon);
    (k, bias[c] - mean[c] * k)
}

/// [`batch_norm_f32`] channels last: `x: [..., C]` (`channels = C`), with the same arithmetic
/// per element and the fused activations `acts` after it; runs of pixels split across
/// `exec`'s threads.
#[allow(
    clippy::too_many_arguments,
    reason = "the five ONNX operands, epsilon, the layout and the fused activations"
)]
pub fn batch_norm_nhwc_f32(
    exec: &Exec,
    x: &[f32],
    [scale, bias, mean, var]: [&[f32]; 4],
    epsilon: f32,
    out: &mut [f32],
    channels: usize,
    acts: &[Activation],
) {
    /// Channels whose factors a task computes at a time when they are not shared.
    const CHUNK: usize = 256;
    /// Channels up to which the factors are computed once per call for every task.
    const SHARED: usize = 1024;
    if channels == 0 {
        return;
    }
    let params = [scale, bias, mean, var];
    let mut table = [0f32; 2 * SHARED];
    let shared = channels <= SHARED;
    if shared {
        for c in 0..channels {
            (table[c], table[SHARED + c]) = batch_norm_factors(params, epsilon, c);
        }
    }
    let n = x.len().min(out.len()) / channels * channels;
    let per_task = BN_TASK.div_ceil(channels).max(1) * channels;
    exec.for_each_chunk(&mut out[..n], per_task, &|t, part| {
        let xs = &x[t * per_task..][..part.len()];
        for c0 in (0..channels).step_by(CHUNK) {
            let width = CHUNK.min(channels - c0);
            let (mut k, mut shift) = ([0f32; CHUNK], [0f32; CHUNK]);
            let (k, shift) = if shared {
                (
                    &table[c0..c0 + width],
                    &table[SHARED + c0..SHARED + c0 + width],
                )
            } else {
                for j in 0..width {
                    (k[j], shift[j]) = batch_norm_factors(params, epsilon, c0 + j);
                }
                (&k[..width], &shift[..width])
            };
            for (xp, op) in xs
                .chunks_exact(channels)
                .zip(part.chunks_exact_mut(channels))
            {
                let (xs, os) = (&xp[c0..c0 + width], &mut op[c0..c0 + width]);
                for (((o, &v), &k), &s) in os.iter_mut().zip(xs).zip(k).zip(shift) {
                    *o = v * k + s;
                }
            }
        }
        Activation::apply_chain(acts, part);
    });
}

/// A concatenation followed by a per-channel affine map and activations, in one pass (a
/// Concat read only by an inference batch normalization over its axis): each input of
/// `parts`, viewed as `[outer, in_block]` with its `in_block`, goes to the next column range
/// of the output viewed as `[outer, out_block]` as `x * k[c] + shift[c]`, where column `j` of
/// a row is channel `j / inner` (`inner` 1 channels last, the plane size channels first) and
/// `factors` holds `k` then `shift` (`out_block / inner` each); then `acts` run over the
/// output. Runs of rows split across `exec`'s threads.
///
/// Panics if an input or `factors` is shorter than that, or the blocks overrun `out_block`.
#[allow(
    clippy::too_many_arguments,
    reason = "the concatenation's layout, the factors and the fused activations"
)]
pub fn concat_affine_f32(
    exec: &Exec,
    parts: &[(&[f32], usize)],
    factors: &[f32],
    out: &mut [f32],
    outer: usize,
    out_block: usize,
    inner: usize,
    acts: &[Activation],
) {
    let channels = out_block.checked_div(inner).unwrap_or(0);
    assert!(
        parts.iter().map(|&(_, b)| b).sum::<usize>() <= out_block
            && parts
                .iter()
                .all(|&(x, b)| x.len() >= outer * b && b % inner.max(1) == 0)
            && factors.len() >= 2 * channels,
        "concat_affine: operands do not fit the output"
    );
    if out_block == 0 || inner == 0 {
        return;
    }
    let (k, shift) = factors.split_at(channels);
    let rows = BN_TASK.div_ceil(out_block).max(1);
    exec.for_each_chunk(
        &mut out[..outer * out_block],
        rows * out_block,
        &|t, dst| {
            for (i, row) in dst.chunks_exact_mut(out_block).enumerate() {
                let r = t * rows + i;
                let mut offset = 0;
                for &(x, block) in parts {
                    let (src, dst) = (&x[r * block..][..block], &mut row[offset..offset + block]);
                    let c0 = offset / inner;
                    if inner == 1 {
                        let (k, s) = (&k[c0..c0 + block], &shift[c0..c0 + block]);
                        for (((o, &v), &k), &s) in dst.iter_mut().zip(src).zip(k).zip(s) {
                            *o = v * k + s;
                        }
                    } else {
                        for (c, (d, x)) in dst
                            .chunks_exact_mut(inner)
                            .zip(src.chunks_exact(inner))
                            .enumerate()
                        {
                            let (k, s) = (k[c0 + c], shift[c0 + c]);
                            for (o, &v) in d.iter_mut().zip(x) {
                                *o = v * k + s;
                            }
                        }
                    }
                    offset += block;
                }
            }
            Activation::apply_chain(acts, dst);
        },
    );
}

/// BatchNormalization in training mode over `x` viewed as `[batch, channels, inner]`:
/// normalizes each channel with the batch's own mean and population variance (summed in
/// f64), and writes the running statistics `mean * momentum + batch_mean * (1 - momentum)`
/// (likewise for the variance) where asked. `params` are scale, bias, input mean and input
/// variance, `channels` long each.
#[allow(
    clippy::too_many_arguments,
    reason = "kernel parameters are compile-time constants passed positionally"
)]
pub fn batch_norm_train_f32(
    [x, scale, bias, mean, var]: [&[f32]; 5],
    epsilon: f32,
    momentum: f32,
    out: &mut [f32],
    running_mean: Option<&mut [f32]>,
    running_var: Option<&mut [f32]>,
    channels: usize,
    inner: usize,
) {
    let block = channels * inner;
    let batch = x.len().checked_div(block).unwrap_or(0);
    let count = (batch * inner) as f64;
    let mut running_mean = running_mean;
    let mut running_var = running_var;
    for c in 0..channels {
        let rows = (0..batch).map(|b| &x[b * block + c * inner..][..inner]);
        let sum: f64 = rows.clone().flatten().map(|&v| f64::from(v)).sum();
        let m = sum / count;
        let squares: f64 = rows
            .flatten()
            .map(|&v| {
                let d = f64::from(v) - m;
                d * d
            })
            .sum();
        let (m, v) = (m as f32, (squares / count) as f32);
        let k = scale[c] / math::sqrt(v + epsilon);
        for b in 0..batch {
            let start = b * block + c * inner;
            let (xs, os) = (&x[start..][..inner], &mut out[start..][..inner]);
            for (o, &value) in os.iter_mut().zip(xs) {
                *o = (value - m) * k + bias[c];
            }
        }
        if let Some(r) = running_mean.as_deref_mut() {
            r[c] = mean[c] * momentum + m * (1.0 - momentum);
        }
        if let Some(r) = running_var.as_deref_mut() {
            r[c] = var[c] * momentum + v * (1.0 - momentum);
        }
    }
}

/// Where the scale and bias of one element of a normalized row come from.
#[derive(Clone, Copy, Debug)]
pub enum Affine<'a> {
    /// No scale or bias.
    None,
    /// `scale[j]` (and `bias[j]`) for element `j` of every row (layer and RMS normalization).
    PerElement {
        /// One per row element.
        scale: &'a [f32],
        /// One per row element, if present.
        bias: Option<&'a [f32]>,
    },
    /// Element `e` of the whole tensor uses channel `(e / channel_len) % channels` (instance
    /// and group normalization).
    PerChannel {
        /// One per channel.
        scale: &'a [f32],
        /// One per channel.
        bias: &'a [f32],
        /// Elements per channel run.
        channel_len: usize,
        /// Channels.
        channels: usize,
    },
}

/// Normalizes each of the `rows` contiguous rows of `inner` elements of `x` into `out`:
/// `(v - mean) / sqrt(var + epsilon)`, or with `rms` `v / sqrt(mean(v^2) + epsilon)`; then
/// applies `affine`. Writes each row's mean and `1 / sqrt(var + epsilon)` to `mean_out` and
/// `inv_std_out` when given (layer normalization's optional outputs).
///
/// The statistics are f64 sums in eight partial sums (element `j` into sum `j % 8`, combined
/// in a fixed order), and every step is a loop the compiler vectorizes for the CPU's widest
/// vectors (`math::lanes::dispatch`); the results do not depend on the CPU.
#[allow(
    clippy::too_many_arguments,
    reason = "operands, layout, epsilon and the optional statistics outputs"
)]
pub fn row_norm_f32(
    x: &[f32],
    out: &mut [f32],
    rows: usize,
    inner: usize,
    epsilon: f32,
    rms: bool,
    affine: Affine<'_>,
    mean_out: Option<&mut [f32]>,
    inv_std_out: Option<&mut [f32]>,
) {
    assert!(
        x.len() >= rows * inner && out.len() >= rows * inner,
        "norm buffers too short"
    );
    assert!(
        mean_out.as_ref().is_none_or(|m| m.len() >= rows)
            && inv_std_out.as_ref().is_none_or(|s| s.len() >= rows),
        "norm statistics outputs too short"
    );
    crate::math::lanes::dispatch(RowNorm {
        x,
        out,
        rows,
        inner,
        epsilon,
        rms,
        affine,
        mean_out,
        inv_std_out,
    });
}

/// [`row_norm_f32`] without the statistics outputs, runs of rows split across `exec`'s
/// threads (each row is normalized as in one call: the same bits). A per-channel `affine`
/// (whose channel depends on the row) runs in one call.
#[allow(
    clippy::too_many_arguments,
    reason = "operands, layout, epsilon and the affine map"
)]
pub fn row_norm_f32_exec(
    exec: &Exec,
    x: &[f32],
    out: &mut [f32],
    rows: usize,
    inner: usize,
    epsilon: f32,
    rms: bool,
    affine: Affine<'_>,
) {
    if exec.threads() == 1 || inner == 0 || matches!(affine, Affine::PerChannel { .. }) {
        return row_norm_f32(x, out, rows, inner, epsilon, rms, affine, None, None);
    }
    assert!(
        x.len() >= rows * inner && out.len() >= rows * inner,
        "norm buffers too short"
    );
    let per = BN_TASK.div_ceil(inner).max(1);
    exec.for_each_chunk(&mut out[..rows * inner], per * inner, &|t, part| {
        let n = part.len() / inner;
        let src = &x[t * per * inner..][..n * inner];
        row_norm_f32(src, part, n, inner, epsilon, rms, affine, None, None);
    });
}

/// The operands of [`row_norm_f32`], as a kernel.
struct RowNorm<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
    rows: usize,
    inner: usize,
    epsilon: f32,
    rms: bool,
    affine: Affine<'a>,
    mean_out: Option<&'a mut [f32]>,
    inv_std_out: Option<&'a mut [f32]>,
}

impl crate::math::lanes::Kernel for RowNorm<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: crate::math::lanes::Lanes>(self, _lanes: S) {
        let RowNorm {
            x,
            out,
            rows,
            inner,
            epsilon,
            rms,
            affine,
            mut mean_out,
            mut inv_std_out,
        } = self;
        let n = inner as f64;
        // The statistics of ROW_GROUP rows at a time: each row's sums are one chain of
        // dependent additions (their order fixed), so the rows' chains run side by side.
        let mut stats = [(0.0, 0.0); ROW_GROUP];
        for r in 0..rows {
            let k = r % ROW_GROUP;
            if k == 0 {
                let group = ROW_GROUP.min(rows - r);
                let srcs: [&[f32]; ROW_GROUP] =
                    core::array::from_fn(|i| &x[(r + i.min(group - 1)) * inner..][..inner]);
                stats = row_stats(srcs, n, rms, epsilon);
            }
            let (mean, inv) = stats[k];
            let src = &x[r * inner..][..inner];
            if let Some(m) = mean_out.as_deref_mut() {
                m[r] = mean as f32;
            }
            if let Some(s) = inv_std_out.as_deref_mut() {
                s[r] = inv as f32;
            }
            let dst = &mut out[r * inner..][..inner];
            let normed = |v: f32| ((f64::from(v) - mean) * inv) as f32;
            match affine {
                Affine::None => {
                    for (o, &v) in dst.iter_mut().zip(src) {
                        *o = normed(v);
                    }
                }
                Affine::PerElement { scale, bias: None } => {
                    for ((o, &v), &k) in dst.iter_mut().zip(src).zip(&scale[..inner]) {
                        *o = normed(v) * k + 0.0;
                    }
                }
                Affine::PerElement {
                    scale,
                    bias: Some(bias),
                } => {
                    let params = scale[..inner].iter().zip(&bias[..inner]);
                    for ((o, &v), (&k, &b)) in dst.iter_mut().zip(src).zip(params) {
                        *o = normed(v) * k + b;
                    }
                }
                Affine::PerChannel {
                    scale,
                    bias,
                    channel_len,
                    channels,
                } => {
                    // Runs of one channel: from element `start` of the row to the next
                    // multiple of `channel_len` in the whole tensor.
                    let mut start = 0;
                    while start < inner {
                        let e = r * inner + start;
                        let c = (e / channel_len) % channels;
                        let end = (start + channel_len - e % channel_len).min(inner);
                        let (k, b) = (scale[c], bias[c]);
                        for (o, &v) in dst[start..end].iter_mut().zip(&src[start..end]) {
                            *o = normed(v) * k + b;
                        }
                        start = end;
                    }
                }
            }
        }
    }
}

/// Rows whose statistics [`RowNorm`] computes together.
const ROW_GROUP: usize = 4;

/// The mean (0 with `rms`) and `1 / sqrt(var + epsilon)` of each of the rows `srcs` of `n`
/// elements ([`sum8_rows`]).
#[inline(always)]
fn row_stats(
    srcs: [&[f32]; ROW_GROUP],
    n: f64,
    rms: bool,
    epsilon: f32,
) -> [(f64, f64); ROW_GROUP] {
    let empty = srcs[0].is_empty();
    let mean = if rms || empty {
        [0.0; ROW_GROUP]
    } else {
        sum8_rows(srcs, |_, v| v).map(|s| s / n)
    };
    let var = if empty {
        [0.0; ROW_GROUP]
    } else {
        sum8_rows(srcs, |r, v| {
            let d = v - mean[r];
            d * d
        })
        .map(|s| s / n)
    };
    core::array::from_fn(|r| (mean[r], 1.0 / math64::sqrt_f64(var[r] + f64::from(epsilon))))
}

/// `sum f(v)` over each of the rows `srcs` (of equal length; `f` told the row), each element
/// widened to f64, in eight partial sums per row (element `j` into sum `j % 8`, combined in a
/// fixed order): a loop the compiler vectorizes, with the same result on every CPU, the rows'
/// chains of additions side by side.
#[inline(always)]
fn sum8_rows<const R: usize>(srcs: [&[f32]; R], f: impl Fn(usize, f64) -> f64) -> [f64; R] {
    let len = srcs[0].len();
    let mut acc = [[0.0f64; 8]; R];
    let whole = len - len % 8;
    for c in (0..whole).step_by(8) {
        for (r, (a, src)) in acc.iter_mut().zip(&srcs).enumerate() {
            for (a, &v) in a.iter_mut().zip(&src[c..c + 8]) {
                *a += f(r, f64::from(v));
            }
        }
    }
    for (r, (a, src)) in acc.iter_mut().zip(&srcs).enumerate() {
        for (a, &v) in a.iter_mut().zip(&src[whole..len]) {
            *a += f(r, f64::from(v));
        }
    }
    acc.map(|a| ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])))
}

/// Mean-variance normalization: for every index of `kept_shape` (element offset from
/// `kept_strides`), the elements reached from it over `red_shape` / `red_strides` become
/// `(v - mean) / (sqrt(var) + 1e-9)` (ONNX's MeanVarianceNormalization definition).
pub fn mvn_f32(
    x: &[f32],
    out: &mut [f32],
    kept_shape: &[usize],
    kept_strides: &[usize],
    red_shape: &[usize],
    red_strides: &[usize],
) {
    let n = red_shape.iter().product::<usize>() as f64;
    for_each_index(kept_shape, [kept_strides], |_, [base]| {
        let mut sum = 0.0f64;
        let mut sq = 0.0f64;
        for_each_index(red_shape, [red_strides], |_, [off]| {
            let v = f64::from(x[base + off]);
            sum += v;
            sq += v * v;
        });
        let mean = sum / n;
        let var = (sq / n - mean * mean).max(0.0);
        let denom = math64::sqrt_f64(var) + 1e-9;
        for_each_index(red_shape, [red_strides], |_, [off]| {
            out[base + off] = ((f64::from(x[base + off]) - mean) / denom) as f32;
        });
    });
}

/// Lp normalization along the middle axis of `x: [outer, len, inner]`: each vector is
/// divided by its L1 (`p == 1`) or L2 norm; a zero vector stays zero.
pub fn lp_norm_f32(x: &[f32], out: &mut [f32], outer: usize, len: usize, inner: usize, p: u32) {
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            let mut acc = 0.0f64;
            for k in 0..len {
                let v = f64::from(x[base + k * inner]);
                acc += if p == 1 { v.abs() } else { v * v };
            }
            let norm = if p == 1 { acc } else { math64::sqrt_f64(acc) };
            // A zero vector stays zero (as ONNX Runtime and the reference do).
            let inv = if norm == 0.0 { 0.0 } else { 1.0 / norm };
            for k in 0..len {
                out[base + k * inner] = (f64::from(x[base + k * inner]) * inv) as f32;
            }
        }
    }
}

/// Local response normalization across channels of `x: [N, C, inner]`:
/// `out = x / (bias + alpha / size * sum(x^2 over the channel window))^beta`, the window
/// spanning channels `c - (size - 1) / 2 ..= c + size / 2`.
#[allow(
    clippy::too_many_arguments,
    reason = "operands, layout and the four LRN attributes"
)]
pub fn lrn_f32(
    x: &[f32],
    out: &mut [f32],
    batch: usize,
    channels: usize,
    inner: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
) {
    let exec = crate::threads::Exec::single();
    lrn_f32_exec(
        &exec, x, out, batch, channels, inner, size, alpha, beta, bias,
    );
}

/// [`lrn_f32`] with its channel planes split across `exec`'s threads.
#[allow(
    clippy::too_many_arguments,
    reason = "executor, operands, layout and the four LRN attributes"
)]
pub fn lrn_f32_exec(
    exec: &crate::threads::Exec,
    x: &[f32],
    out: &mut [f32],
    batch: usize,
    channels: usize,
    inner: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
) {
    let total = batch * channels * inner;
    assert!(
        x.len() >= total && out.len() >= total,
        "lrn buffers too short"
    );
    if total == 0 {
        return;
    }
    let before = (size.max(1) - 1) / 2;
    let after = size / 2;
    let scale = alpha / size.max(1) as f32;
    // Pixels per block: the window's sum of squares for a block lives on the stack.
    const BLOCK: usize = 512;
    // Planes per task: enough work to pay for waking a worker.
    let per_task = (1usize << 14).div_ceil(inner);
    exec.for_each_chunk(&mut out[..total], per_task * inner, &|t, planes| {
        let mut sq = [0.0f32; BLOCK];
        for (i, plane) in planes.chunks_exact_mut(inner).enumerate() {
            let index = t * per_task + i;
            let (n, c) = (index / channels, index % channels);
            let lo = c.saturating_sub(before);
            let hi = (c + after).min(channels - 1);
            let mut start = 0;
            while start < inner {
                let len = BLOCK.min(inner - start);
                let sq = &mut sq[..len];
                sq.fill(0.0);
                for k in lo..=hi {
                    let row = &x[(n * channels + k) * inner + start..][..len];
                    for (s, &v) in sq.iter_mut().zip(row) {
                        *s += v * v;
                    }
                }
                let src = &x[index * inner + start..][..len];
                let dst = &mut plane[start..start + len];
                if beta == 0.75 {
                    // base^-0.75 = 1 / (sqrt(base) * sqrt(sqrt(base))): the common
                    // AlexNet/GoogLeNet setting, with correctly rounded square roots.
                    for ((o, &v), &s) in dst.iter_mut().zip(src).zip(sq.iter()) {
                        let root = math::sqrt(bias + scale * s);
                        *o = v / (root * math::sqrt(root));
                    }
                } else {
                    for ((o, &v), &s) in dst.iter_mut().zip(src).zip(sq.iter()) {
                        *o = v * math::exp(-beta * math::ln(bias + scale * s));
                    }
                }
                start += len;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "std")]
    #[test]
    fn row_norm_exec_matches_one_call_on_two_threads() {
        let exec = Exec::with_threads(2);
        // Under Miri 3 rows of 40: one task.
        let (rows, inner) = if cfg!(miri) {
            (3usize, 40usize)
        } else {
            (300, 768)
        };
        let x: std::vec::Vec<f32> = (0..rows * inner)
            .map(|i| (i % 113) as f32 * 0.05 - 2.0)
            .collect();
        let scale: std::vec::Vec<f32> = (0..inner).map(|j| 1.0 + j as f32 * 1e-3).collect();
        let bias: std::vec::Vec<f32> = (0..inner).map(|j| j as f32 * -1e-3).collect();
        for rms in [false, true] {
            let affine = Affine::PerElement {
                scale: &scale,
                bias: Some(&bias),
            };
            let (mut one, mut split) = (std::vec![0f32; x.len()], std::vec![0f32; x.len()]);
            row_norm_f32(&x, &mut one, rows, inner, 1e-5, rms, affine, None, None);
            row_norm_f32_exec(&exec, &x, &mut split, rows, inner, 1e-5, rms, affine);
            assert_eq!(split, one, "rms {rms}");
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn concat_affine_is_concat_then_batch_norm_on_two_threads() {
        // Parts of 2, 5 and 1 channels over 3000 rows (channels last) and over planes of 700
        // (channels first), against Concat then the batch normalization kernel, bit for bit.
        let exec = Exec::with_threads(2);
        let blocks = [2usize, 5, 1];
        let channels = 8;
        let scale: std::vec::Vec<f32> = (0..channels).map(|c| 0.5 + c as f32 * 0.25).collect();
        let bias: std::vec::Vec<f32> = (0..channels).map(|c| c as f32 * 0.1 - 0.3).collect();
        let mean: std::vec::Vec<f32> = (0..channels).map(|c| 0.2 - c as f32 * 0.05).collect();
        let var: std::vec::Vec<f32> = (0..channels).map(|c| 1.0 + c as f32 * 0.5).collect();
        let params = [&scale[..], &bias, &mean, &var];
        let mut factors = std::vec![0.0f32; 2 * channels];
        for c in 0..channels {
            (factors[c], factors[channels + c]) = batch_norm_factors(params, 1e-5, c);
        }
        let relu = [Activation::Relu];
        // Under Miri 40 rows and planes of 20: one task each.
        let cases = if cfg!(miri) {
            [(40usize, 1usize), (2, 20)]
        } else {
            [(3000, 1), (2, 700)]
        };
        for (outer, inner) in cases {
            let parts: std::vec::Vec<std::vec::Vec<f32>> = blocks
                .iter()
                .map(|&b| {
                    (0..outer * b * inner)
                        .map(|i| (i % 89) as f32 * 0.2 - 8.0)
                        .collect()
                })
                .collect();
            let out_block = channels * inner;
            let mut cat = std::vec![0.0f32; outer * out_block];
            let mut offset = 0;
            for (x, &b) in parts.iter().zip(&blocks) {
                crate::shape::concat_part(x, &mut cat, outer, b * inner, out_block, offset);
                offset += b * inner;
            }
            let mut want = std::vec![0.0f32; cat.len()];
            if inner == 1 {
                batch_norm_nhwc_f32(&exec, &cat, params, 1e-5, &mut want, channels, &relu);
            } else {
                batch_norm_f32(&exec, &cat, params, 1e-5, &mut want, channels, inner, &relu);
            }
            let views: std::vec::Vec<(&[f32], usize)> = parts
                .iter()
                .zip(&blocks)
                .map(|(x, &b)| (x.as_slice(), b * inner))
                .collect();
            let mut got = std::vec![0.0f32; cat.len()];
            concat_affine_f32(
                &exec, &views, &factors, &mut got, outer, out_block, inner, &relu,
            );
            assert_eq!(got, want, "inner {inner}");
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn batch_norm_with_relu_on_two_threads_is_the_formula() {
        // Both layouts, 3 channels, 2 images of 7000 pixels: several tasks per thread (under
        // Miri 100 pixels: one task).
        let pixels = if cfg!(miri) { 100usize } else { 7000 };
        let (channels, inner, batch) = (3usize, pixels, 2usize);
        let n = channels * inner * batch;
        let x: std::vec::Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.25 - 12.0).collect();
        let (scale, bias, mean, var) = (
            [1.5f32, -0.5, 2.0],
            [0.1f32, 0.2, -0.3],
            [1.0f32, -2.0, 0.5],
            [0.5f32, 2.0, 1.0],
        );
        let params = [&scale[..], &bias, &mean, &var];
        let expect = |v: f32, c: usize| {
            let (k, shift) = batch_norm_factors(params, 1e-5, c);
            (v * k + shift).max(0.0)
        };
        let exec = Exec::with_threads(2);
        let relu = [Activation::Relu];
        let mut y = std::vec![0.0f32; n];
        batch_norm_f32(&exec, &x, params, 1e-5, &mut y, channels, inner, &relu);
        for (i, (&v, &o)) in x.iter().zip(&y).enumerate() {
            assert_eq!(
                o,
                expect(v, i / inner % channels),
                "channels first, element {i}"
            );
        }
        batch_norm_nhwc_f32(&exec, &x, params, 1e-5, &mut y, channels, &relu);
        for (i, (&v, &o)) in x.iter().zip(&y).enumerate() {
            assert_eq!(o, expect(v, i % channels), "channels last, element {i}");
        }
    }

    #[test]
    fn batch_norm_training_uses_batch_statistics() {
        // One channel, batch 2, inner 2: mean 2.5, population variance 1.25.
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let (mut y, mut mean, mut var) = ([0.0f32; 4], [0.0f32], [0.0f32]);
        batch_norm_train_f32(
            [&x, &[2.0], &[1.0], &[0.0], &[1.0]],
            0.0,
            0.9,
            &mut y,
            Some(&mut mean),
            Some(&mut var),
            1,
            2,
        );
        let k = 2.0 / 1.25f32.sqrt();
        for (got, v) in y.iter().zip(x) {
            assert!((got - ((v - 2.5) * k + 1.0)).abs() < 1e-6, "{got}");
        }
        assert!((mean[0] - 0.25).abs() < 1e-6, "{}", mean[0]);
        assert!((var[0] - 1.025).abs() < 1e-6, "{}", var[0]);
    }

    #[test]
    fn layer_norm_rows() {
        let x = [1.0f32, 2.0, 3.0, 4.0, -1.0, 1.0];
        let mut out = [0.0f32; 6];
        let (mut m, mut s) = ([0.0f32; 2], [0.0f32; 2]);
        let scale = [1.0f32, 2.0, 1.0];
        row_norm_f32(
            &x,
            &mut out,
            2,
            3,
            0.0,
            false,
            Affine::PerElement {
                scale: &scale,
                bias: None,
            },
            Some(&mut m),
            Some(&mut s),
        );
        assert_eq!(m, [2.0, 4.0 / 3.0]);
        let inv = 1.0 / (2.0f64 / 3.0).sqrt();
        assert!((out[0] as f64 + inv).abs() < 1e-6);
        assert!(out[1].abs() < 1e-6);
        assert!((s[0] as f64 - inv).abs() < 1e-6);
    }

    /// Row normalization element by element, with serial f64 sums.
    fn row_norm_reference(
        x: &[f32],
        rows: usize,
        inner: usize,
        rms: bool,
        affine: Affine<'_>,
    ) -> std::vec::Vec<f32> {
        let mut out = std::vec![0.0f32; rows * inner];
        for r in 0..rows {
            let src = &x[r * inner..][..inner];
            let n = inner as f64;
            let mean = if rms || inner == 0 {
                0.0
            } else {
                src.iter().map(|&v| f64::from(v)).sum::<f64>() / n
            };
            let var = src
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let inv = 1.0 / (var + 1e-5f32 as f64).sqrt();
            for (j, &v) in src.iter().enumerate() {
                let normed = ((f64::from(v) - mean) * inv) as f32;
                out[r * inner + j] = match affine {
                    Affine::None => normed,
                    Affine::PerElement { scale, bias } => {
                        normed * scale[j] + bias.map_or(0.0, |b| b[j])
                    }
                    Affine::PerChannel {
                        scale,
                        bias,
                        channel_len,
                        channels,
                    } => {
                        let c = ((r * inner + j) / channel_len) % channels;
                        normed * scale[c] + bias[c]
                    }
                };
            }
        }
        out
    }

    #[test]
    fn row_norm_matches_the_element_loop() {
        // Every length up to three vectors and one, each affine form (group normalization:
        // channel runs shorter than a row; instance normalization: as long as one), on every
        // instruction set.
        // Under Miri, the lengths on and next to the vector boundaries.
        let inners: std::vec::Vec<usize> = if cfg!(miri) {
            std::vec![0, 1, 15, 16, 17, 33]
        } else {
            (0..=49).collect()
        };
        for inner in inners {
            let rows = 3;
            let x: std::vec::Vec<f32> = (0..rows * inner)
                .map(|i| ((i * 7919) % 101) as f32 * 0.37 - 15.0)
                .collect();
            let scale: std::vec::Vec<f32> =
                (0..inner.max(6)).map(|i| 0.5 + i as f32 * 0.1).collect();
            let bias: std::vec::Vec<f32> = (0..inner.max(6)).map(|i| i as f32 - 3.0).collect();
            let run_len = inner.div_ceil(2).max(1);
            let affines = [
                Affine::None,
                Affine::PerElement {
                    scale: &scale,
                    bias: None,
                },
                Affine::PerElement {
                    scale: &scale,
                    bias: Some(&bias),
                },
                Affine::PerChannel {
                    scale: &scale,
                    bias: &bias,
                    channel_len: run_len,
                    channels: 6,
                },
                Affine::PerChannel {
                    scale: &scale,
                    bias: &bias,
                    channel_len: inner.max(1),
                    channels: 3,
                },
            ];
            for affine in affines {
                for rms in [false, true] {
                    let want = row_norm_reference(&x, rows, inner, rms, affine);
                    for isa in crate::math::lanes::Isa::ALL {
                        let mut got = std::vec![0.0f32; rows * inner];
                        let (mut means, mut invs) =
                            (std::vec![0.0f32; rows], std::vec![0.0f32; rows]);
                        let kernel = RowNorm {
                            x: &x,
                            out: &mut got,
                            rows,
                            inner,
                            epsilon: 1e-5,
                            rms,
                            affine,
                            mean_out: Some(&mut means),
                            inv_std_out: Some(&mut invs),
                        };
                        if isa.run(kernel).is_none() {
                            continue;
                        }
                        for (&g, &w) in got.iter().zip(&want) {
                            let ulp = f32::EPSILON * w.abs().max(1e-6);
                            assert!(
                                (g - w).abs() <= ulp,
                                "{inner} {rms} {affine:?} {isa:?}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lp_and_mvn() {
        let x = [3.0f32, 4.0];
        let mut out = [0.0f32; 2];
        lp_norm_f32(&x, &mut out, 1, 2, 1, 2);
        assert_eq!(out, [0.6, 0.8]);
        mvn_f32(&x, &mut out, &[], &[], &[2], &[1]);
        assert!((out[0] + 1.0).abs() < 1e-6 && (out[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn lrn_single_channel_window() {
        let x = [2.0f32];
        let mut out = [0.0f32];
        lrn_f32(&x, &mut out, 1, 1, 1, 1, 1.0, 1.0, 0.0);
        assert!((out[0] - 0.5).abs() < 1e-6);
    }
}
