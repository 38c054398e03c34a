//! Recurrent layers (LSTM, GRU, RNN) whose two products run on the int8 GEMM: ONNX Runtime's
//! `com.microsoft::DynamicQuantizeLSTM`, and the layers `--quantize dynamic` quantizes.
//!
//! The weights are signed 8-bit, packed per direction as `k x n` column panels
//! ([`pack::pack_cols`]) with their sums, zero points and scales, per direction or per
//! direction and output channel. The activations are quantized at run time as ONNX Runtime's
//! `DynamicQuantizeLSTM` quantizes them (`rnn_helpers.cc`, `ComputeGemm` for `uint8` weights):
//! per tensor, to `uint8` with `DynamicQuantizeLinear`'s formula ([`quantize_dynamic`]),
//! - `X` once per call, over the time steps before the longest sequence (all batch rows);
//! - `H` at every step, over all batch rows, the rows whose sequence has ended reading as
//!   zeros when the layer writes `Y` (ONNX Runtime reads `H` back from `Y`);
//!
//! and each product is dequantized in its epilogue (`sum * x_scale * w_scale[c]`). Biases,
//! gates and states stay float32 (the driver of [`crate::rnn`], shared with the float layer).
//! GRU keeps its recurrent weights as two matrices, the update and reset gates and the hidden
//! gate, because the hidden gate's product reads `r . H` unless `linear_before_reset`.

use super::pack::{self, packed_cols_len};
use super::{matmul_exec, quantize_dynamic, Bytes, Dequant, Output, Weights};
use crate::rnn::{run, Cell, Part, Products, Retired, RnnInputs, RnnOutputs, RnnParams};
use crate::threads::Exec;

/// One packed weight matrix of a recurrent layer, for every direction.
#[derive(Clone, Copy, Debug)]
pub struct RnnMatrix<'a> {
    /// Per direction, the `k x n` matrix (`k` the input or hidden size, `n` its output
    /// channels) packed as column panels, signed: `dirs * packed_cols_len(k, n)` bytes.
    pub data: &'a [i8],
    /// Per direction and output channel, the sum of the channel's signed weights.
    pub sums: &'a [i32],
    /// The weights' zero points in the signed domain: `dirs` (one per direction) or
    /// `dirs * n` values; empty means zero.
    pub zero: &'a [i32],
    /// The weights' scales: `dirs` or `dirs * n` values.
    pub scale: &'a [f32],
}

impl<'a> RnnMatrix<'a> {
    /// Direction `d`'s part of per-direction (`dirs` values) or per-channel (`dirs * n`)
    /// parameters.
    fn per_direction<T>(values: &'a [T], dirs: usize, d: usize, n: usize) -> &'a [T] {
        if values.len() == dirs * n {
            &values[d * n..][..n]
        } else {
            &values[d..][..1]
        }
    }

    /// Whether the matrix holds `dirs` directions of `k x n` weights.
    fn fits(&self, dirs: usize, k: usize, n: usize) -> bool {
        let params = |len: usize| len == dirs || len == dirs * n;
        self.data.len() >= dirs * packed_cols_len(k, n)
            && self.sums.len() >= dirs * n
            && (self.zero.is_empty() || params(self.zero.len()))
            && params(self.scale.len())
    }
}

/// The int8 weights of a recurrent layer.
#[derive(Clone, Copy, Debug)]
pub struct RnnWeights<'a> {
    /// `W^T`: `input x gates*hidden` per direction.
    pub input: RnnMatrix<'a>,
    /// `R^T`: `hidden x gates*hidden` per direction; GRU: `hidden x 2*hidden`, the update and
    /// reset gates only.
    pub recurrent: RnnMatrix<'a>,
    /// GRU: `R_h^T`, `hidden x hidden` per direction (the hidden gate); `None` otherwise.
    pub recurrent_h: Option<RnnMatrix<'a>>,
}

/// Scratch elements [`rnn_exec`] needs (the same formula the compiler uses,
/// [`pack::rnn_int8_scratch_len`]).
pub const fn rnn_int8_scratch_len(p: &RnnParams) -> usize {
    pack::rnn_int8_scratch_len(p.cell.gates(), p.seq, p.batch, p.input, p.hidden)
}

/// Runs the layer with int8 products on `exec`'s threads: `x` the float input sequence,
/// `weights` packed, the other operands and the outputs as [`crate::rnn::rnn_f32`] takes them.
///
/// Panics if `scratch` is shorter than [`rnn_int8_scratch_len`] or a weight matrix is too
/// short for the parameters (GRU without `recurrent_h` included).
pub fn rnn_exec(
    exec: &Exec,
    p: &RnnParams,
    x: &[f32],
    weights: &RnnWeights<'_>,
    inputs: &RnnInputs<'_>,
    outputs: &mut RnnOutputs<'_>,
    scratch: &mut [f32],
) {
    let (dirs, hidden) = (p.directions, p.hidden);
    let gh = p.cell.gates() * hidden;
    let recurrent_n = if p.cell == Cell::Gru { 2 * hidden } else { gh };
    assert!(
        weights.input.fits(dirs, p.input, gh)
            && weights.recurrent.fits(dirs, hidden, recurrent_n)
            && (p.cell != Cell::Gru
                || weights
                    .recurrent_h
                    .is_some_and(|m| m.fits(dirs, hidden, hidden))),
        "int8 rnn: weights do not fit the layer"
    );
    assert!(
        scratch.len() >= rnn_int8_scratch_len(p),
        "int8 rnn scratch too short"
    );
    let (driver, rest) = scratch.split_at_mut(p.driver_len());
    let (h_copy, rest) = rest.split_at_mut(p.batch * hidden);
    let bytes = bytes_of_f32_mut(rest);
    let (x_q, rest) = bytes.split_at_mut(p.seq * p.batch * p.input);
    let h_q = &mut rest[..p.batch * hidden];
    let mut products = Int8Products {
        exec,
        p,
        weights,
        x_q,
        x_params: None,
        h_q,
        h_params: (1.0, 0),
        h_copy,
    };
    run(p, x, inputs, outputs, driver, &mut products);
}

/// The bytes of an `f32` slice, for working memory planned as floats.
fn bytes_of_f32_mut(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: u8 has alignment 1 and every bit pattern is a valid u8; the bytes are exactly
    // those of `v`, borrowed mutably for the same lifetime.
    unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 4) }
}

/// The int8 products of [`rnn_exec`] and their quantized activations.
struct Int8Products<'a> {
    exec: &'a Exec,
    p: &'a RnnParams,
    weights: &'a RnnWeights<'a>,
    /// `X` quantized (once for both directions) and its `(scale, zero)`.
    x_q: &'a mut [u8],
    x_params: Option<(f32, i32)>,
    /// This step's `H` quantized and its `(scale, zero)`.
    h_q: &'a mut [u8],
    h_params: (f32, i32),
    /// `H` with its retired rows zeroed.
    h_copy: &'a mut [f32],
}

impl Int8Products<'_> {
    /// `out[..m * n]`: `a` (`m x k` bytes quantized with `(scale, zero)`) times direction `d`
    /// of `matrix`, dequantized.
    #[allow(
        clippy::too_many_arguments,
        reason = "the product's operands, output and geometry"
    )]
    fn product(
        exec: &Exec,
        matrix: &RnnMatrix<'_>,
        dirs: usize,
        d: usize,
        [m, k, n]: [usize; 3],
        a: &[u8],
        (scale, zero): (f32, i32),
        out: &mut [f32],
    ) {
        let len = packed_cols_len(k, n);
        let weights = Weights {
            data: &matrix.data[d * len..][..len],
            sums: &matrix.sums[d * n..][..n],
            zero: if matrix.zero.is_empty() {
                &[]
            } else {
                RnnMatrix::per_direction(matrix.zero, dirs, d, n)
            },
        };
        let channel_scale = RnnMatrix::per_direction(matrix.scale, dirs, d, n);
        if m <= GEMV_MAX_ROWS && gemv([m, k, n], a, (scale, zero), &weights, channel_scale, out) {
            return;
        }
        matmul_exec(
            exec,
            [m, k, n],
            Bytes::U8(&a[..m * k]),
            k,
            zero,
            &weights,
            Output::F32(
                &mut out[..m * n],
                Dequant {
                    scale,
                    channel_scale,
                    bias: None,
                    residual: None,
                    acts: &[],
                },
            ),
        );
    }
}

/// Products of at most this many rows (a step at batch 1 or 2) run one row at a time through
/// the matrix-vector kernels, where the VNNI kernels' 6- or 8-row tiles would compute mostly
/// padding.
const GEMV_MAX_ROWS: usize = 2;

/// `out[..m * n]` as [`matmul_exec`] computes it for `a` (`m x k` bytes, `uint8` with
/// `(scale, zero)`) and `weights` with a dequantizing output (the same integer sums and
/// corrections, the same `f32` arithmetic, so the same bits), one row at a time with the CPU's
/// matrix-vector kernel. Returns false, computing nothing, when the CPU has none (AVX2 and the
/// portable kernels tile 2 and 4 rows) or `a` cannot be read in whole groups of depth.
fn gemv(
    [m, k, n]: [usize; 3],
    a: &[u8],
    (scale, zero): (f32, i32),
    weights: &Weights<'_>,
    channel_scale: &[f32],
    out: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use super::{x86_64, Isa, PANEL};
        let kernel = match Isa::detect() {
            Isa::Avx512Vnni => x86_64::gemv_vnni512,
            Isa::AvxVnni => x86_64::gemv_vnni256,
            _ => return false,
        };
        let (kg, pb) = (pack::k_groups(k), pack::panel_bytes(k));
        // The kernel reads every row in whole groups: past `k` in the last one.
        if m == 0 || n == 0 || a.len() < (m - 1) * k + 4 * kg || out.len() < m * n {
            return m == 0 || n == 0;
        }
        assert!(
            weights.data.len() >= pack::packed_cols_len(k, n) && weights.sums.len() >= n,
            "int8 rnn: packed weights too short"
        );
        let zero_of = |c: usize| match weights.zero.len() {
            0 => 0,
            1 => weights.zero[0],
            _ => weights.zero[c],
        };
        let has_zero = weights.zero.iter().any(|&z| z != 0);
        let depth = k as i32;
        for r in 0..m {
            let row = &a[r * k..];
            // The row's sum, for the weights' zero points.
            let row_sum: i32 = if has_zero {
                row[..k].iter().map(|&v| i32::from(v)).sum()
            } else {
                0
            };
            for c0 in (0..n).step_by(4 * PANEL) {
                let width = (n - c0).min(4 * PANEL);
                let mut sums = [0i32; 4 * PANEL];
                // SAFETY: the row holds 4 * kg readable bytes (checked above); the panels of
                // columns c0.. hold kg groups of 64 bytes each, inside the packed length
                // asserted above; at most 4 panels; `Isa::detect` found the CPU's features.
                unsafe {
                    kernel(
                        kg,
                        row.as_ptr(),
                        weights.data.as_ptr().cast::<u8>().add((c0 / PANEL) * pb),
                        pb,
                        width.div_ceil(PANEL),
                        &mut sums,
                    );
                }
                let dst = &mut out[r * n + c0..][..width];
                for (i, (o, &sum)) in dst.iter_mut().zip(&sums).enumerate() {
                    let c = c0 + i;
                    let zs = zero_of(c);
                    // As the tile's finish: sum + (k zu zs - zu colsum) + usum (-zs), then
                    // the float store with a row scale of 1 and no bias.
                    let add = depth
                        .wrapping_mul(zero)
                        .wrapping_mul(zs)
                        .wrapping_sub(zero.wrapping_mul(weights.sums[c]));
                    let v = sum
                        .wrapping_add(add)
                        .wrapping_add(row_sum.wrapping_mul(zs.wrapping_neg()));
                    let cs = scale * channel_scale[if channel_scale.len() == 1 { 0 } else { c }];
                    *o = v as f32 * (1.0 * cs) + (0.0 + 0.0);
                }
            }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ([m, k, n], a, scale, zero, weights, channel_scale, out);
        false
    }
}

impl Products for Int8Products<'_> {
    fn input(&mut self, d: usize, x: &[f32], rows: usize, xw: &mut [f32]) {
        let (input, gh) = (self.p.input, self.p.cell.gates() * self.p.hidden);
        let len = rows * input;
        // Both directions read the same rows of X: quantize them once.
        let params = match self.x_params {
            Some(params) => params,
            None => {
                let params = quantize_dynamic(&x[..len], &mut self.x_q[..len]);
                self.x_params = Some(params);
                params
            }
        };
        Self::product(
            self.exec,
            &self.weights.input,
            self.p.directions,
            d,
            [rows, input, gh],
            self.x_q,
            params,
            xw,
        );
    }

    fn recurrent(
        &mut self,
        d: usize,
        part: Part,
        h: &[f32],
        fresh: bool,
        retired: Retired<'_>,
        out: &mut [f32],
    ) {
        let (batch, hidden) = (self.p.batch, self.p.hidden);
        let len = batch * hidden;
        if fresh {
            let source = if (0..batch).any(|b| retired.contains(b)) {
                for (b, (dst, src)) in self
                    .h_copy
                    .chunks_exact_mut(hidden)
                    .zip(h.chunks_exact(hidden))
                    .enumerate()
                {
                    if retired.contains(b) {
                        dst.fill(0.0);
                    } else {
                        dst.copy_from_slice(src);
                    }
                }
                &self.h_copy[..len]
            } else {
                &h[..len]
            };
            self.h_params = quantize_dynamic(source, &mut self.h_q[..len]);
        }
        let (_, n) = part.channels(self.p);
        let matrix = match (part, self.weights.recurrent_h) {
            (Part::Hidden, Some(m)) => m,
            (Part::Hidden, None) => unreachable!("rnn_exec checked GRU's hidden-gate weights"),
            _ => self.weights.recurrent,
        };
        Self::product(
            self.exec,
            &matrix,
            self.p.directions,
            d,
            [batch, hidden, n],
            self.h_q,
            self.h_params,
            out,
        );
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::super::tests::{bytes, thread_counts, with_isa, MIRI_MACS};
    use super::super::{Bytes, Dequant, Output};
    use super::*;
    use crate::epilogue::Activation;
    use std::vec;
    use std::vec::Vec;

    /// Deterministic floats in `[-range, range)`.
    fn floats(len: usize, seed: u32, range: f32) -> Vec<f32> {
        bytes(len, seed)
            .iter()
            .map(|&b| (f32::from(b) - 128.0) / 128.0 * range)
            .collect()
    }

    /// One layer's weights as the reference reads them: per direction, `W^T` as `k x n`
    /// signed values (row-major), zero points and scales per channel.
    struct Plain {
        values: Vec<i8>,
        zero: Vec<i32>,
        scale: Vec<f32>,
    }

    impl Plain {
        fn new(dirs: usize, k: usize, n: usize, seed: u32, per_channel: bool) -> Self {
            let count = if per_channel { dirs * n } else { dirs };
            Self {
                values: bytes(dirs * k * n, seed).iter().map(|&v| v as i8).collect(),
                zero: bytes(count, seed + 1)
                    .iter()
                    .map(|&v| i32::from(v as i8) / 16)
                    .collect(),
                scale: bytes(count, seed + 2)
                    .iter()
                    .map(|&v| 0.002 + f32::from(v) * 1e-5)
                    .collect(),
            }
        }

        /// Direction `d`'s weights and parameters of channels `first..first + n` of `total`.
        fn slice(
            &self,
            dirs: usize,
            d: usize,
            k: usize,
            total: usize,
            first: usize,
            n: usize,
        ) -> Plain {
            let per_channel = self.zero.len() == dirs * total;
            let pick = |v: &[i32], c: usize| {
                if per_channel {
                    v[d * total + c]
                } else {
                    v[d]
                }
            };
            Plain {
                values: (0..k)
                    .flat_map(|i| (first..first + n).map(move |c| (i, c)))
                    .map(|(i, c)| self.values[(d * k + i) * total + c])
                    .collect(),
                zero: (first..first + n).map(|c| pick(&self.zero, c)).collect(),
                scale: (first..first + n)
                    .map(|c| {
                        if per_channel {
                            self.scale[d * total + c]
                        } else {
                            self.scale[d]
                        }
                    })
                    .collect(),
            }
        }

        /// Packs the channels `first..first + n` of `total` for [`rnn_exec`].
        fn pack(&self, dirs: usize, k: usize, total: usize, first: usize, n: usize) -> Packed {
            let mut packed = Packed::default();
            for d in 0..dirs {
                let s = self.slice(dirs, d, k, total, first, n);
                let mut data = vec![0i8; packed_cols_len(k, n)];
                pack::pack_cols(k, n, |i, c| s.values[i * n + c], &mut data);
                packed.data.extend(data);
                packed.sums.extend(
                    (0..n).map(|c| (0..k).map(|i| i32::from(s.values[i * n + c])).sum::<i32>()),
                );
                packed.zero.extend(s.zero);
                packed.scale.extend(s.scale);
            }
            packed
        }
    }

    #[derive(Default)]
    struct Packed {
        data: Vec<i8>,
        sums: Vec<i32>,
        zero: Vec<i32>,
        scale: Vec<f32>,
    }

    impl Packed {
        fn matrix(&self) -> RnnMatrix<'_> {
            RnnMatrix {
                data: &self.data,
                sums: &self.sums,
                zero: &self.zero,
                scale: &self.scale,
            }
        }
    }

    /// `a (m x k floats, quantized per tensor) x w` dequantized, in scalar code.
    fn reference_product(a: &[f32], m: usize, k: usize, w: &Plain) -> Vec<f32> {
        let n = w.scale.len();
        let mut q = vec![0u8; a.len()];
        let (mut s, mut z) = ([0f32], [0u8]);
        crate::quant::dynamic_quantize_f32_scalar(a, &mut q, &mut s, &mut z);
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for c in 0..n {
                let mut acc = 0i32;
                for d in 0..k {
                    let x = i32::from(q[i * k + d]) - i32::from(z[0]);
                    acc += x * (i32::from(w.values[d * n + c]) - w.zero[c]);
                }
                out[i * n + c] = acc as f32 * (s[0] * w.scale[c]);
            }
        }
        out
    }

    /// A scalar reference of [`rnn_exec`], step by step as ONNX Runtime runs it.
    #[allow(clippy::too_many_arguments, reason = "a layer's operands")]
    fn reference(
        p: &RnnParams,
        x: &[f32],
        w: &Plain,
        r: &Plain,
        bias: &[f32],
        lens: &[i32],
        h0: &[f32],
        c0: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (seq, batch, input, hidden, dirs) = (p.seq, p.batch, p.input, p.hidden, p.directions);
        let gh = p.cell.gates() * hidden;
        let mut y = vec![0f32; seq * dirs * batch * hidden];
        let mut y_h = vec![0f32; dirs * batch * hidden];
        let mut y_c = vec![0f32; dirs * batch * hidden];
        let max_len = lens.iter().map(|&l| l as usize).max().unwrap_or(0);
        let sig = |v: f32| Activation::Sigmoid.apply(v);
        let tanh = |v: f32| Activation::Tanh.apply(v);
        for d in 0..dirs {
            let reverse = dirs == 2 && d == 1 || dirs == 1 && p.reverse;
            let wd = w.slice(dirs, d, input, gh, 0, gh);
            let b = &bias[d * 2 * gh..][..2 * gh];
            // X W^T plus both biases (GRU's hidden gate: the input bias only), in the
            // driver's order of additions.
            let mut xw =
                reference_product(&x[..max_len * batch * input], max_len * batch, input, &wd);
            for row in xw.chunks_exact_mut(gh) {
                for (j, v) in row.iter_mut().enumerate() {
                    let rb = if p.cell == Cell::Gru && j >= 2 * hidden {
                        0.0
                    } else {
                        b[gh + j]
                    };
                    *v += b[j] + rb;
                }
            }
            let mut h = h0[d * batch * hidden..][..batch * hidden].to_vec();
            let mut c = c0[d * batch * hidden..][..batch * hidden].to_vec();
            for step in 0..max_len {
                // Rows whose sequence ended before the previous step read as zeros.
                let mut h_in = h.clone();
                for bi in 0..batch {
                    if step > lens[bi] as usize {
                        h_in[bi * hidden..][..hidden].fill(0.0);
                    }
                }
                let time = |bi: usize| {
                    let len = lens[bi] as usize;
                    (step < len).then(|| if reverse { len - 1 - step } else { step })
                };
                let n = if p.cell == Cell::Gru { 2 * hidden } else { gh };
                let hg =
                    reference_product(&h_in, batch, hidden, &r.slice(dirs, d, hidden, gh, 0, n));
                // GRU: (r . H) R_h^T.
                let mut hg_h = Vec::new();
                if p.cell == Cell::Gru {
                    let mut rh = vec![0f32; batch * hidden];
                    for bi in 0..batch {
                        if let Some(t) = time(bi) {
                            for k in 0..hidden {
                                let pre = xw[(t * batch + bi) * gh + hidden + k]
                                    + hg[bi * n + hidden + k];
                                rh[bi * hidden + k] = sig(pre) * h[bi * hidden + k];
                            }
                        }
                    }
                    let rh_w = r.slice(dirs, d, hidden, gh, 2 * hidden, hidden);
                    hg_h = reference_product(&rh, batch, hidden, &rh_w);
                }
                for bi in 0..batch {
                    let Some(t) = time(bi) else { continue };
                    let xg = &xw[(t * batch + bi) * gh..][..gh];
                    let rec = &hg[bi * n..][..n];
                    for k in 0..hidden {
                        let hk = bi * hidden + k;
                        match p.cell {
                            Cell::Lstm => {
                                let g =
                                    |gate: usize| xg[gate * hidden + k] + rec[gate * hidden + k];
                                let (i, o, f, cc) = (sig(g(0)), sig(g(1)), sig(g(2)), tanh(g(3)));
                                c[hk] = f * c[hk] + i * cc;
                                h[hk] = o * tanh(c[hk]);
                            }
                            Cell::Gru => {
                                let z = sig(xg[k] + rec[k]);
                                let cand =
                                    tanh(xg[2 * hidden + k] + hg_h[hk] + b[gh + 2 * hidden + k]);
                                h[hk] = (1.0 - z) * cand + z * h[hk];
                            }
                            Cell::Rnn => h[hk] = tanh(xg[k] + rec[k]),
                        }
                    }
                    y[((t * dirs + d) * batch + bi) * hidden..][..hidden]
                        .copy_from_slice(&h[bi * hidden..][..hidden]);
                }
            }
            y_h[d * batch * hidden..][..batch * hidden].copy_from_slice(&h);
            y_c[d * batch * hidden..][..batch * hidden].copy_from_slice(&c);
        }
        (y, y_h, y_c)
    }

    #[test]
    fn gemv_gives_the_bits_of_matmul_exec() {
        let exec = Exec::single();
        for isa in crate::int8::Isa::available() {
            for (case, &(m, k, n)) in [
                (1, 4, 1),
                (1, 8, 15),
                (2, 36, 16),
                (1, 100, 17),
                (2, 256, 65),
                (1, 64, 130),
                (1, 6, 20),
            ]
            .iter()
            .enumerate()
            {
                if cfg!(miri) && m * k * n > MIRI_MACS {
                    continue;
                }
                let a = bytes(m * k + 4, 200 + case as u32);
                let b: Vec<i8> = bytes(k * n, 300 + case as u32)
                    .iter()
                    .map(|&v| v as i8)
                    .collect();
                let mut data = vec![0i8; packed_cols_len(k, n)];
                pack::pack_cols(k, n, |d, j| b[d * n + j], &mut data);
                let sums: Vec<i32> = (0..n)
                    .map(|j| (0..k).map(|d| i32::from(b[d * n + j])).sum())
                    .collect();
                let per_channel: Vec<i32> = (0..n).map(|j| j as i32 % 7 - 3).collect();
                let scales: Vec<f32> = (0..n).map(|j| 0.01 + j as f32 * 1e-4).collect();
                for zero in [&[][..], &[5][..], &per_channel[..]] {
                    let weights = Weights {
                        data: &data,
                        sums: &sums,
                        zero,
                    };
                    let mut want = vec![0f32; m * n];
                    let mut got = vec![f32::NAN; m * n];
                    with_isa(isa, || {
                        matmul_exec(
                            &exec,
                            [m, k, n],
                            Bytes::U8(&a[..m * k]),
                            k,
                            17,
                            &weights,
                            Output::F32(
                                &mut want,
                                Dequant {
                                    scale: 0.03,
                                    channel_scale: &scales,
                                    bias: None,
                                    residual: None,
                                    acts: &[],
                                },
                            ),
                        );
                        if !gemv([m, k, n], &a, (0.03, 17), &weights, &scales, &mut got) {
                            got.copy_from_slice(&want);
                        }
                    });
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{isa:?} m={m} k={k} n={n}");
                }
            }
        }
    }

    /// One layer to test: `dims` are `[seq, batch, input, hidden, dirs]`.
    struct Case {
        cell: Cell,
        dims: [usize; 5],
        reverse: bool,
        lens: &'static [i32],
        per_channel: bool,
    }

    #[test]
    fn rnn_int8_matches_the_scalar_reference_on_every_kernel() {
        let acts = [[Activation::Sigmoid, Activation::Tanh, Activation::Tanh]; 2];
        let rnn_acts = [[Activation::Tanh; 3]; 2];
        let case = |cell, dims: [usize; 5], reverse, lens, per_channel| Case {
            cell,
            dims,
            reverse,
            lens,
            per_channel,
        };
        let cases = [
            case(Cell::Lstm, [1, 1, 5, 3, 1], false, &[1], false),
            case(Cell::Lstm, [4, 3, 7, 20, 2], false, &[4, 2, 3], true),
            case(Cell::Lstm, [5, 2, 16, 16, 1], true, &[3, 5], false),
            case(Cell::Lstm, [3, 3, 9, 17, 1], false, &[0, 3, 1], true),
            case(Cell::Gru, [4, 3, 7, 20, 2], false, &[4, 2, 3], true),
            case(Cell::Gru, [3, 2, 33, 8, 1], true, &[3, 1], false),
            case(Cell::Rnn, [4, 2, 6, 18, 2], false, &[4, 3], true),
            case(
                Cell::Lstm,
                [2, 7, 40, 70, 1],
                false,
                &[2, 2, 1, 2, 2, 0, 2],
                true,
            ),
            // Batch 1 (and X of one step): the matrix-vector kernels where the CPU has them.
            case(Cell::Lstm, [6, 1, 12, 20, 2], false, &[4], true),
            case(Cell::Lstm, [1, 1, 64, 80, 1], false, &[1], false),
            case(Cell::Gru, [3, 1, 8, 24, 1], true, &[3], true),
        ];
        for isa in crate::int8::Isa::available() {
            for (case, c) in cases.iter().enumerate() {
                let (cell, [seq, batch, input, hidden, dirs]) = (c.cell, c.dims);
                let (reverse, lens, per_channel) = (c.reverse, c.lens, c.per_channel);
                let seed = 10 * case as u32;
                let gh = cell.gates() * hidden;
                // Under Miri (some thousand times slower) only the cases of at most 10 000
                // multiply-adds.
                if cfg!(miri) && seq * batch * dirs * (input + hidden) * gh > 10_000 {
                    continue;
                }
                let p = RnnParams {
                    cell,
                    seq,
                    batch,
                    input,
                    hidden,
                    directions: dirs,
                    reverse,
                    batch_first: false,
                    clip: f32::INFINITY,
                    input_forget: false,
                    linear_before_reset: false,
                    activations: if cell == Cell::Rnn { rnn_acts } else { acts },
                };
                let x = floats(seq * batch * input, seed, 2.0);
                let w = Plain::new(dirs, input, gh, seed + 1, per_channel);
                let r = Plain::new(dirs, hidden, gh, seed + 4, per_channel);
                let bias = floats(dirs * 2 * gh, seed + 7, 0.5);
                let h0 = floats(dirs * batch * hidden, seed + 8, 0.8);
                let c0 = floats(dirs * batch * hidden, seed + 9, 0.8);
                let (want_y, want_h, want_c) = reference(&p, &x, &w, &r, &bias, lens, &h0, &c0);
                let w_packed = w.pack(dirs, input, gh, 0, gh);
                let r_n = if cell == Cell::Gru { 2 * hidden } else { gh };
                let r_packed = r.pack(dirs, hidden, gh, 0, r_n);
                let rh_packed =
                    (cell == Cell::Gru).then(|| r.pack(dirs, hidden, gh, 2 * hidden, hidden));
                let weights = RnnWeights {
                    input: w_packed.matrix(),
                    recurrent: r_packed.matrix(),
                    recurrent_h: rh_packed.as_ref().map(Packed::matrix),
                };
                for &threads in thread_counts() {
                    let exec = Exec::with_threads(threads);
                    let mut y = vec![f32::NAN; seq * dirs * batch * hidden];
                    let mut y_h = vec![f32::NAN; dirs * batch * hidden];
                    let mut y_c = vec![f32::NAN; dirs * batch * hidden];
                    let mut scratch = vec![f32::NAN; rnn_int8_scratch_len(&p)];
                    let inputs = RnnInputs {
                        bias: Some(&bias),
                        sequence_lens: Some(lens),
                        initial_h: Some(&h0),
                        initial_c: Some(&c0),
                        peepholes: None,
                    };
                    let mut outputs = RnnOutputs {
                        y: Some(&mut y),
                        y_h: Some(&mut y_h),
                        y_c: (cell == Cell::Lstm).then_some(&mut y_c[..]),
                    };
                    with_isa(isa, || {
                        rnn_exec(&exec, &p, &x, &weights, &inputs, &mut outputs, &mut scratch)
                    });
                    let close = |got: &[f32], want: &[f32], what: &str| {
                        for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
                            assert!(
                                (g - e).abs() <= 1e-4,
                                "{isa:?} case {case} threads {threads}: {what}[{i}] {g} vs {e}"
                            );
                        }
                    };
                    close(&y, &want_y, "Y");
                    close(&y_h, &want_h, "Y_h");
                    if cell == Cell::Lstm {
                        close(&y_c, &want_c, "Y_c");
                    }
                }
            }
        }
    }
}
