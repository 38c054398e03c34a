//! A channels-last depthwise convolution and the pointwise (1x1) one that alone reads it, in
//! one pass: the second half of a mobile network's inverted-residual block (MobileNet,
//! MnasNet, EfficientNet, ShuffleNet).
//!
//! The depthwise layer's output is as big as the block's expanded tensor (112 x 112 x 32
//! floats in MnasNet's first block, 1.6 MB). Written whole, it leaves the cache before the
//! pointwise layer reads it back. Here each task computes its band of output rows a few at a
//! time: the depthwise rows go to a small slot of working memory, and the pointwise layer
//! reads them from there, in cache. The values are the same bits as the two layers apart:
//! the same kernels compute each row and each pixel.

use crate::conv::ConvParams;
use crate::conv_nhwc::{
    depthwise_nhwc_weights_len, depthwise_row_into, nhwc_supported, nhwc_weights_len, Operands,
    Residual, Windows, PARALLEL_MIN_MACS,
};
use crate::epilogue::Activation;
use crate::threads::{Exec, SharedMut};

/// Most bands (tasks) the output rows split into, and so the slots of working memory: one
/// per thread, up to this many threads.
pub const DW_PW_BANDS: usize = 4;

/// Floats of depthwise rows a slot aims to hold (64 KiB). The unit tests take small slots, so
/// that their small images still go a few rows at a time.
const SLOT_FLOATS: usize = if cfg!(test) { 256 } else { 1 << 14 };

/// The weights, bias and fused activations of one layer.
#[derive(Clone, Copy)]
pub struct LayerOperands<'a> {
    /// Weights, packed as the channels-last kernels take them.
    pub w: &'a [f32],
    /// One value per output channel, if the layer has a bias.
    pub bias: Option<&'a [f32]>,
    /// Activations applied in order after the bias (and the residual).
    pub acts: &'a [Activation],
}

/// Whether [`depthwise_pointwise_nhwc_f32_exec`] supports the depthwise layer `dw` followed
/// by the dense layer `pw`: `pw` is pointwise (1x1, stride 1, unpadded) over `dw`'s output.
pub fn depthwise_pointwise_supported(dw: &ConvParams, pw: &ConvParams) -> bool {
    dw.is_depthwise()
        && pw.is_pointwise()
        && pw.groups == 1
        && nhwc_supported(pw)
        && pw.batch == dw.batch
        && pw.in_channels == dw.out_channels
        && pw.input == dw.output
}

/// Output rows (over batch, depth and height) of the pair.
fn out_rows(dw: &ConvParams) -> usize {
    dw.batch * dw.output[0] * dw.output[1]
}

/// Pixels the pointwise layer takes at least per step (a few blocks of its kernel, so that
/// its weights serve enough pixels from cache).
const STEP_PIXELS: usize = if cfg!(test) { 8 } else { 256 };

/// Depthwise rows one slot holds.
fn slot_rows(dw: &ConvParams) -> usize {
    let row = dw.output[2] * dw.out_channels;
    (SLOT_FLOATS / row.max(1))
        .max(STEP_PIXELS.div_ceil(dw.output[2].max(1)))
        .clamp(1, out_rows(dw).max(1))
}

/// Floats of working memory [`depthwise_pointwise_nhwc_f32_exec`] needs: [`DW_PW_BANDS`]
/// slots of depthwise rows.
pub fn depthwise_pointwise_scratch_len(dw: &ConvParams) -> usize {
    DW_PW_BANDS * slot_rows(dw) * dw.output[2] * dw.out_channels
}

/// `out = pw_acts(conv1x1(dw_acts(depthwise(x) + dw_bias), pw_w) + pw_bias + residual)`
/// channels last: `x: [N, *dw.input, C]`, `out` and `residual: [N, *dw.output, M]`; the same
/// values as [`crate::conv_nhwc::depthwise_nhwc_f32_exec`] then
/// [`crate::conv_nhwc::conv_nhwc_f32_exec`], without the depthwise output ever in memory
/// whole. `scratch` holds [`depthwise_pointwise_scratch_len`] floats. On up to
/// [`DW_PW_BANDS`] of `exec`'s threads.
///
/// Panics if a buffer is too short or the pair is not [`depthwise_pointwise_supported`].
#[allow(
    clippy::too_many_arguments,
    reason = "both layers' geometry and operands, the residual, working memory and the output"
)]
pub fn depthwise_pointwise_nhwc_f32_exec(
    exec: &Exec,
    dw: &ConvParams,
    dw_ops: LayerOperands<'_>,
    pw: &ConvParams,
    pw_ops: LayerOperands<'_>,
    x: &[f32],
    residual: Option<&[f32]>,
    scratch: &mut [f32],
    out: &mut [f32],
) {
    assert!(
        depthwise_pointwise_supported(dw, pw),
        "depthwise and pointwise: a depthwise layer, then a 1x1 layer over its output"
    );
    assert!(
        scratch.len() >= depthwise_pointwise_scratch_len(dw),
        "depthwise and pointwise: working memory too short"
    );
    fused_exec(
        exec,
        None,
        (dw, dw_ops),
        Some((pw, pw_ops)),
        x,
        residual,
        scratch,
        out,
    );
}

/// Whether [`inverted_residual_nhwc_f32_exec`] supports the pointwise layer `ex` (the
/// expansion), the 2-D depthwise layer `dw` over its output and the pointwise layer `pw` over
/// that: [`depthwise_pointwise_supported`], and `ex` is a 1x1, stride 1, unpadded dense layer
/// whose output `dw` reads.
pub fn inverted_residual_supported(ex: &ConvParams, dw: &ConvParams, pw: &ConvParams) -> bool {
    depthwise_pointwise_supported(dw, pw) && expand_depthwise_supported(ex, dw)
}

/// Whether [`expand_depthwise_nhwc_f32_exec`] supports the pointwise layer `ex` (the
/// expansion) and the 2-D depthwise layer `dw` over its output: `ex` is a 1x1, stride 1,
/// unpadded dense layer.
pub fn expand_depthwise_supported(ex: &ConvParams, dw: &ConvParams) -> bool {
    dw.is_depthwise()
        && ex.is_pointwise()
        && ex.groups == 1
        && nhwc_supported(ex)
        && ex.batch == dw.batch
        && ex.out_channels == dw.in_channels
        && ex.output == dw.input
        && dw.input[0] == 1
        && dw.output[0] == 1
        && dw.kernel[0] == 1
}

/// Rows of the expanded image one step of [`inverted_residual_nhwc_f32_exec`] reads at most:
/// those under [`slot_rows`] depthwise rows.
fn expanded_rows(dw: &ConvParams) -> usize {
    ((slot_rows(dw) - 1) * dw.strides[1] + (dw.kernel[1] - 1) * dw.dilations[1] + 1)
        .min(dw.input[1])
}

/// Floats of working memory [`inverted_residual_nhwc_f32_exec`] needs: [`DW_PW_BANDS`] slots,
/// each of expanded rows and depthwise rows.
pub fn inverted_residual_scratch_len(dw: &ConvParams) -> usize {
    expand_depthwise_scratch_len(dw) + DW_PW_BANDS * slot_rows(dw) * dw.output[2] * dw.out_channels
}

/// Floats of working memory [`expand_depthwise_nhwc_f32_exec`] needs: [`DW_PW_BANDS`] slots
/// of expanded rows.
pub fn expand_depthwise_scratch_len(dw: &ConvParams) -> usize {
    DW_PW_BANDS * expanded_rows(dw) * dw.input[2] * dw.in_channels
}

/// `out = dw_acts(depthwise(ex_acts(conv1x1(x, ex_w) + ex_bias)) + dw_bias)` channels last:
/// the expansion and the depthwise layer of an inverted-residual block whose depthwise output
/// other ops read too (EfficientNet's squeeze-excitation). `x: [N, *ex.input, K]`, `out:
/// [N, *dw.output, C]`. Each step computes the expanded rows its depthwise rows read into
/// working memory, as [`inverted_residual_nhwc_f32_exec`] does, so the expanded image is never
/// in memory whole. The same values as the two layers apart. `scratch` holds
/// [`expand_depthwise_scratch_len`] floats. On up to [`DW_PW_BANDS`] of `exec`'s threads.
///
/// Panics if a buffer is too short or the layers are not [`expand_depthwise_supported`].
pub fn expand_depthwise_nhwc_f32_exec(
    exec: &Exec,
    (ex, ex_ops): (&ConvParams, LayerOperands<'_>),
    (dw, dw_ops): (&ConvParams, LayerOperands<'_>),
    x: &[f32],
    scratch: &mut [f32],
    out: &mut [f32],
) {
    assert!(
        expand_depthwise_supported(ex, dw),
        "expand and depthwise: a 1x1 layer, then a 2-D depthwise layer over its output"
    );
    assert!(
        scratch.len() >= expand_depthwise_scratch_len(dw),
        "expand and depthwise: working memory too short"
    );
    let ex_ops = expansion_operands(ex, ex_ops, x);
    fused_exec(
        exec,
        Some((ex, ex_ops)),
        (dw, dw_ops),
        None,
        x,
        None,
        scratch,
        out,
    );
}

/// The expansion's operands, checked against `ex` and its input `x`.
fn expansion_operands<'a>(ex: &ConvParams, ops: LayerOperands<'a>, x: &[f32]) -> Operands<'a> {
    assert!(
        x.len() >= ex.batch * ex.input_len() * ex.in_channels
            && ops.w.len() >= nhwc_weights_len(ex),
        "expansion: input or weights too short"
    );
    let ops = Operands {
        w: ops.w,
        bias: ops.bias,
        residual: Residual::None,
        acts: ops.acts,
    };
    ops.check(ex, ex.batch * ex.output_len() * ex.out_channels);
    ops
}

/// An inverted-residual block in one pass, channels last: `e = ex_acts(conv1x1(x, ex_w) +
/// ex_bias)`, then [`depthwise_pointwise_nhwc_f32_exec`] over `e`. `x: [N, *ex.input, K]`.
/// Each step computes the expanded rows its depthwise rows read into working memory (the
/// rows two steps share are kept, not computed again), so neither the expanded image nor
/// the depthwise output is ever in memory whole. The same values as the three layers apart.
/// `scratch` holds [`inverted_residual_scratch_len`] floats. On up to [`DW_PW_BANDS`] of
/// `exec`'s threads.
///
/// Panics if a buffer is too short or the layers are not [`inverted_residual_supported`].
#[allow(
    clippy::too_many_arguments,
    reason = "three layers' geometry and operands, the residual, working memory and the output"
)]
pub fn inverted_residual_nhwc_f32_exec(
    exec: &Exec,
    (ex, ex_ops): (&ConvParams, LayerOperands<'_>),
    (dw, dw_ops): (&ConvParams, LayerOperands<'_>),
    (pw, pw_ops): (&ConvParams, LayerOperands<'_>),
    x: &[f32],
    residual: Option<&[f32]>,
    scratch: &mut [f32],
    out: &mut [f32],
) {
    assert!(
        inverted_residual_supported(ex, dw, pw),
        "inverted residual: a 1x1 layer, a 2-D depthwise layer over its output, then a 1x1 \
         layer over that"
    );
    assert!(
        scratch.len() >= inverted_residual_scratch_len(dw),
        "inverted residual: working memory too short"
    );
    let ex_ops = expansion_operands(ex, ex_ops, x);
    fused_exec(
        exec,
        Some((ex, ex_ops)),
        (dw, dw_ops),
        Some((pw, pw_ops)),
        x,
        residual,
        scratch,
        out,
    );
}

/// The expanded rows a band's step holds: of image `image`, rows `lo..hi`.
#[derive(Clone, Copy)]
struct Held {
    image: usize,
    lo: usize,
    hi: usize,
}

/// Computes expanded rows `lo..hi` of image `image` into `slot` (`erow` floats a row), keeping
/// those of `held` it shares; returns what the slot now holds.
fn expand_rows(
    (ex, ex_ops): (&ConvParams, Operands<'_>),
    x: &[f32],
    slot: &mut [f32],
    held: Option<Held>,
    want: Held,
) -> Held {
    let (iw, erow) = (ex.input[2], ex.output[2] * ex.out_channels);
    let from = match held {
        Some(h) if h.image == want.image && h.lo <= want.lo && want.lo < h.hi => {
            let keep = h.hi.min(want.hi);
            slot.copy_within((want.lo - h.lo) * erow..(keep - h.lo) * erow, 0);
            keep
        }
        _ => want.lo,
    };
    if from < want.hi {
        let pixels = (want.hi - from) * iw;
        let sub = ConvParams {
            batch: 1,
            input: [1, 1, pixels],
            output: [1, 1, pixels],
            ..*ex
        };
        let k = ex.in_channels;
        let start = (want.image * ex.input[1] + from) * iw * k;
        let src = &x[start..start + pixels * k];
        let windows = Windows::new(&Exec::single(), &sub, (src, false), &mut []);
        let at = (from - want.lo) * erow;
        let sink = SharedMut::new(&mut slot[at..at + pixels * ex.out_channels]);
        windows.pixels_into(&sub, ex_ops, (0, pixels), &sink, 0);
    }
    want
}

/// The band loop of [`depthwise_pointwise_nhwc_f32_exec`], with `expand` of
/// [`inverted_residual_nhwc_f32_exec`], and with `expand` but no `pw` of
/// [`expand_depthwise_nhwc_f32_exec`] (the depthwise rows then go to `out`): `x` is the
/// depthwise layer's input, or the expansion's.
#[allow(
    clippy::too_many_arguments,
    reason = "the layers' geometry and operands, the residual, working memory and the output"
)]
fn fused_exec(
    exec: &Exec,
    expand: Option<(&ConvParams, Operands<'_>)>,
    (dw, dw_ops): (&ConvParams, LayerOperands<'_>),
    pw: Option<(&ConvParams, LayerOperands<'_>)>,
    x: &[f32],
    residual: Option<&[f32]>,
    scratch: &mut [f32],
    out: &mut [f32],
) {
    let c = dw.in_channels;
    let m = pw.map_or(c, |(pw, _)| pw.out_channels);
    let (rows, ow) = (out_rows(dw), dw.output[2]);
    let (row, out_row) = (ow * c, ow * m);
    let out_len = rows * out_row;
    if expand.is_none() {
        assert!(
            x.len() >= dw.batch * dw.input_len() * c,
            "depthwise and pointwise: input too short"
        );
    }
    assert!(
        dw_ops.w.len() >= depthwise_nhwc_weights_len(dw)
            && pw.is_none_or(|(pw, ops)| ops.w.len() >= nhwc_weights_len(pw)),
        "depthwise and pointwise: weights too short"
    );
    assert!(
        out.len() >= out_len,
        "depthwise and pointwise: output too short"
    );
    let dw_ops = Operands {
        w: dw_ops.w,
        bias: dw_ops.bias,
        residual: Residual::None,
        acts: dw_ops.acts,
    };
    let pw = pw.map(|(pw, ops)| {
        let ops = Operands {
            w: ops.w,
            bias: ops.bias,
            residual: Residual::from(residual),
            acts: ops.acts,
        };
        ops.check(pw, out_len);
        (pw, ops)
    });
    dw_ops.check(dw, rows * row);
    if out_len == 0 {
        return;
    }
    let expand_macs = expand.map_or(0, |(ex, _)| {
        ex.batch * ex.output_len() * ex.in_channels * ex.out_channels
    });
    let pw_macs = pw.map_or(0, |_| rows * ow * c * m);
    let macs = rows * ow * c * dw.kernel_len() + pw_macs + expand_macs;
    let threads = if macs < PARALLEL_MIN_MACS {
        1
    } else {
        exec.threads()
    };
    let per_band = rows.div_ceil(threads.clamp(1, DW_PW_BANDS));
    let bands = rows.div_ceil(per_band);
    let chunk = slot_rows(dw);
    let (ih, erow) = (dw.input[1], dw.input[2] * c);
    let expanded_len = if expand.is_some() {
        expanded_rows(dw) * erow
    } else {
        0
    };
    let slot_len = expanded_len + if pw.is_some() { chunk * row } else { 0 };
    let slots = SharedMut::new(&mut scratch[..bands * slot_len]);
    let sink = SharedMut::new(&mut out[..out_len]);
    let oh = dw.output[1];
    let (s, pad) = (dw.strides[1], dw.pads[1]);
    let reach = (dw.kernel[1] - 1) * dw.dilations[1] + 1;
    exec.for_each(bands, &|band| {
        // SAFETY: the band's slot is this task's alone.
        let slot = unsafe { slots.slice(band * slot_len, slot_len) };
        let (expanded, slot) = slot.split_at_mut(expanded_len);
        let (first, last) = (band * per_band, ((band + 1) * per_band).min(rows));
        let mut held = None;
        let mut r0 = first;
        while r0 < last {
            let mut n = chunk.min(last - r0);
            if expand.is_some() {
                // The rows of one image: those of the next read other expanded rows.
                n = n.min(oh - r0 % oh);
            }
            // The depthwise rows go to the slot for the pointwise layer, or to the output.
            let rows_out: &mut [f32] = if pw.is_some() {
                &mut slot[..n * row]
            } else {
                // SAFETY: rows r0..r0 + n of the output are this band's alone.
                unsafe { sink.slice(r0 * row, n * row) }
            };
            if let Some((ex, ex_ops)) = expand {
                // The depthwise rows of one image, over the expanded rows they read.
                let (image, oy) = (r0 / oh, r0 % oh);
                let lo = (oy * s).saturating_sub(pad).min(ih);
                let hi = ((oy + n - 1) * s + reach).saturating_sub(pad).clamp(lo, ih);
                let want = Held { image, lo, hi };
                held = Some(expand_rows((ex, ex_ops), x, expanded, held, want));
                // The depthwise layer over the held rows: its row i is row oy + i.
                let sub = ConvParams {
                    batch: 1,
                    input: [1, hi - lo, dw.input[2]],
                    output: [1, n, ow],
                    // (Saturating: rows past the image's end are all padding, and none are held.)
                    pads: [0, (pad + lo).saturating_sub(oy * s), dw.pads[2]],
                    ..*dw
                };
                let held_rows = &expanded[..(hi - lo) * erow];
                for (i, dst) in rows_out.chunks_exact_mut(row).enumerate() {
                    depthwise_row_into(&sub, held_rows, dw_ops, i, dst);
                }
            } else {
                for (i, dst) in rows_out.chunks_exact_mut(row).enumerate() {
                    depthwise_row_into(dw, x, dw_ops, r0 + i, dst);
                }
            }
            if let Some((pw, pw_ops)) = pw {
                // The pointwise layer over these rows, read in place from the slot.
                let sub = ConvParams {
                    batch: 1,
                    input: [1, 1, n * ow],
                    output: [1, 1, n * ow],
                    ..*pw
                };
                let windows = Windows::new(&Exec::single(), &sub, (&*rows_out, false), &mut []);
                // Rows r0..r0 + n of the output are this band's alone.
                windows.pixels_into(&sub, pw_ops, (0, n * ow), &sink, r0 * out_row);
            }
            r0 += n;
        }
    });
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::conv_nhwc::{conv_nhwc_f32_exec, depthwise_nhwc_f32_exec};
    use std::vec::Vec;

    /// (batch, C, M, input, kernel, stride, pad, dilation, residual).
    type Case = (
        usize,
        usize,
        usize,
        [usize; 2],
        usize,
        usize,
        usize,
        usize,
        bool,
    );

    fn params(case: &Case) -> (ConvParams, ConvParams) {
        let (batch, c, m, [h, w], k, s, pad, d, _) = *case;
        let out = |n: usize| (n + 2 * pad - d * (k - 1) - 1) / s + 1;
        let (oh, ow) = (out(h), out(w));
        let dw = ConvParams {
            batch,
            in_channels: c,
            out_channels: c,
            groups: c,
            input: [1, h, w],
            output: [1, oh, ow],
            kernel: [1, k, k],
            strides: [1, s, s],
            dilations: [1, d, d],
            pads: [0, pad, pad],
            packed_weights: false,
        };
        let pw = ConvParams {
            batch,
            in_channels: c,
            out_channels: m,
            groups: 1,
            input: [1, oh, ow],
            output: [1, oh, ow],
            kernel: [1; 3],
            strides: [1; 3],
            dilations: [1; 3],
            pads: [0; 3],
            packed_weights: false,
        };
        (dw, pw)
    }

    /// The fused pass against the two layers, bit for bit; and the whole block, with a 1x1
    /// expansion before them (ReLU6), against the expansion then the pair; and the expansion
    /// with the depthwise layer alone.
    fn check(case: &Case, exec: &Exec) {
        let (dw, pw) = params(case);
        assert!(depthwise_pointwise_supported(&dw, &pw), "{case:?}");
        let value = |i: usize, m: usize| ((i * 37 % m) as f32 - (m / 2) as f32) / m as f32;
        let x: Vec<f32> = (0..dw.batch * dw.input_len() * dw.in_channels)
            .map(|i| value(i, 101))
            .collect();
        let dw_w: Vec<f32> = (0..depthwise_nhwc_weights_len(&dw))
            .map(|i| value(i, 29))
            .collect();
        let pw_w: Vec<f32> = (0..nhwc_weights_len(&pw)).map(|i| value(i, 53)).collect();
        let dw_b: Vec<f32> = (0..dw.out_channels).map(|i| value(i, 11)).collect();
        let pw_b: Vec<f32> = (0..pw.out_channels).map(|i| value(i, 7)).collect();
        let mid_len = dw.batch * dw.output_len() * dw.out_channels;
        let out_len = pw.batch * pw.output_len() * pw.out_channels;
        let residual: Vec<f32> = (0..out_len).map(|i| value(i, 13)).collect();
        let residual = case.8.then_some(&residual[..]);
        let (dw_acts, pw_acts) = ([Activation::Relu], [Activation::Sigmoid]);
        let single = Exec::single();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let mut mid = std::vec![0f32; mid_len];
        depthwise_nhwc_f32_exec(
            &single,
            &dw,
            &x,
            &dw_w,
            Some(&dw_b),
            None,
            &mut mid,
            &dw_acts,
        );
        let mut expected = std::vec![0f32; out_len];
        conv_nhwc_f32_exec(
            &single,
            &pw,
            &mid,
            &pw_w,
            Some(&pw_b),
            residual,
            &mut [],
            &mut expected,
            &pw_acts,
        );
        let layer = |w, b, acts| LayerOperands {
            w,
            bias: Some(b),
            acts,
        };
        // With an expansion before it: K channels to C, its output the depthwise input.
        let ex = ConvParams {
            in_channels: dw.in_channels / 2 + 3,
            out_channels: dw.in_channels,
            groups: 1,
            input: dw.input,
            output: dw.input,
            kernel: [1; 3],
            strides: [1; 3],
            dilations: [1; 3],
            pads: [0; 3],
            ..dw
        };
        let e: Vec<f32> = (0..ex.batch * ex.input_len() * ex.in_channels)
            .map(|i| value(i, 89))
            .collect();
        let ex_w: Vec<f32> = (0..nhwc_weights_len(&ex)).map(|i| value(i, 41)).collect();
        let ex_b: Vec<f32> = (0..ex.out_channels).map(|i| value(i, 19)).collect();
        let ex_acts = [Activation::Clip(0.0, 0.5)];
        let mut ex_out = std::vec![0f32; ex.batch * ex.output_len() * ex.out_channels];
        conv_nhwc_f32_exec(
            &single,
            &ex,
            &e,
            &ex_w,
            Some(&ex_b),
            None,
            &mut [],
            &mut ex_out,
            &ex_acts,
        );
        // The fused pair on `exec` over the depthwise input `x`.
        let pair = |exec: &Exec, x: &[f32]| {
            let mut scratch = std::vec![0f32; depthwise_pointwise_scratch_len(&dw)];
            let mut out = std::vec![f32::NAN; out_len];
            depthwise_pointwise_nhwc_f32_exec(
                exec,
                &dw,
                layer(&dw_w, &dw_b, &dw_acts),
                &pw,
                layer(&pw_w, &pw_b, &pw_acts),
                x,
                residual,
                &mut scratch,
                &mut out,
            );
            out
        };
        let unfused = pair(&single, &ex_out);
        assert!(inverted_residual_supported(&ex, &dw, &pw), "{case:?}");
        {
            let mut scratch = std::vec![0f32; inverted_residual_scratch_len(&dw)];
            let mut fused = std::vec![f32::NAN; out_len];
            inverted_residual_nhwc_f32_exec(
                exec,
                (&ex, layer(&ex_w, &ex_b, &ex_acts)),
                (&dw, layer(&dw_w, &dw_b, &dw_acts)),
                (&pw, layer(&pw_w, &pw_b, &pw_acts)),
                &e,
                residual,
                &mut scratch,
                &mut fused,
            );
            assert_eq!(bits(&fused), bits(&unfused), "expanded: {case:?}");
        }
        // The expansion and the depthwise layer alone, against the depthwise layer over the
        // expansion's output.
        assert!(expand_depthwise_supported(&ex, &dw), "{case:?}");
        let mut want = std::vec![0f32; mid_len];
        depthwise_nhwc_f32_exec(
            &single,
            &dw,
            &ex_out,
            &dw_w,
            Some(&dw_b),
            None,
            &mut want,
            &dw_acts,
        );
        let mut scratch = std::vec![0f32; expand_depthwise_scratch_len(&dw)];
        let mut got = std::vec![f32::NAN; mid_len];
        expand_depthwise_nhwc_f32_exec(
            exec,
            (&ex, layer(&ex_w, &ex_b, &ex_acts)),
            (&dw, layer(&dw_w, &dw_b, &dw_acts)),
            &e,
            &mut scratch,
            &mut got,
        );
        assert_eq!(bits(&got), bits(&want), "expanded, no 1x1 layer: {case:?}");
        assert_eq!(bits(&pair(exec, &x)), bits(&expected), "{case:?}");
    }

    fn cases() -> Vec<Case> {
        std::vec![
            // MobileNet's 3x3 stride 1 with a residual, two images.
            (2, 24, 16, [9, 10], 3, 1, 1, 1, true),
            // 5x5 stride 2 (MnasNet), more channels than a vector, no residual.
            (1, 40, 24, [13, 11], 5, 2, 2, 1, false),
            // 7x7 stride 1.
            (1, 16, 8, [9, 9], 7, 1, 3, 1, true),
            // Dilated and even kernels: the per-pixel depthwise path.
            (1, 20, 40, [11, 12], 3, 1, 2, 2, false),
            (1, 17, 33, [8, 8], 4, 1, 1, 1, true),
            // Stride 2 with an odd image (the last window reaches the end padding), two images.
            (2, 32, 16, [11, 9], 3, 2, 1, 1, false),
            // More padding than the kernel reaches: rows of padding only at both ends.
            (1, 16, 16, [5, 6], 3, 1, 3, 1, true),
        ]
    }

    /// Slots smaller than the images (see `SLOT_FLOATS`), so each band goes several steps.
    #[test]
    fn fused_depthwise_and_pointwise_match_the_two_layers() {
        // Under Miri (some thousand times slower), one tiny pair only.
        let cases = if cfg!(miri) {
            std::vec![(1, 16, 8, [6, 5], 3, 1, 1, 1, true)]
        } else {
            cases()
        };
        for case in cases {
            check(&case, &Exec::single());
            check(&case, &Exec::with_threads(2));
        }
        if cfg!(miri) {
            return;
        }
        // Above the parallel threshold, so that two and three bands run.
        let big: Case = (1, 64, 48, [40, 36], 3, 1, 1, 1, true);
        check(&big, &Exec::with_threads(2));
        check(&big, &Exec::with_threads(3));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri no CPU feature is detected: the test above is this one"
    )]
    fn fused_depthwise_and_pointwise_match_the_two_layers_without_avx512() {
        crate::gemm_x86_64::without_avx512(|| {
            for case in cases() {
                check(&case, &Exec::single());
            }
        });
    }
}
