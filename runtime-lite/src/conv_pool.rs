//! A dense channels-last convolution and the max pooling that alone reads it, in one pass
//! (a network's stem: ResNet's, GoogLeNet's, DenseNet's, SqueezeNet's and ShuffleNet's first
//! convolution at half the image size, then a 3x3 max pool).
//!
//! The convolution's output is the largest tensor of those networks (112 x 112 x 64 floats,
//! 3.2 MB), bigger than a core's L2: written whole, the pooling reads it back from memory.
//! Here each task computes its band of the pooling's output a few rows at a time: the
//! convolution rows those windows read go to a small slot of working memory, the pooling
//! reads them from cache, and the rows two steps share (`kernel - stride` of them) move to
//! the slot's front instead of being computed again. The values are the same bits as the
//! two layers apart: the same convolution kernel per pixel, and the same pooling per window.

use crate::conv::ConvParams;
use crate::conv_nhwc::{
    nhwc_padded_len, nhwc_supported, nhwc_weights_len, Operands, Residual, Windows,
    PARALLEL_MIN_MACS,
};
use crate::epilogue::Activation;
use crate::pool::{max_pool_nhwc_f32, PoolParams};
use crate::threads::{Exec, SharedMut};

/// Most bands (tasks) the pooling's output rows split into, and so the slots of working
/// memory: one per thread, up to this many threads.
pub const CONV_POOL_BANDS: usize = 4;

/// Floats of convolution rows a slot aims to hold (64 KiB: the slots of four bands cost the
/// arena less than the output of even a small stem, and one step stays in L2). The unit tests
/// take small slots, so that their small images still go a few rows at a time.
const SLOT_FLOATS: usize = if cfg!(test) { 512 } else { 1 << 14 };

/// Whether [`conv_max_pool_nhwc_f32_exec`] supports the convolution `p` followed by the max
/// pooling `pool`: a dense 2-D layer [`crate::conv_nhwc`] runs, a 2-D undilated pooling of
/// its output whose every window reaches into the image vertically.
pub fn conv_max_pool_supported(p: &ConvParams, pool: &PoolParams) -> bool {
    let (k, s, pad) = (pool.kernel[1], pool.strides[1], pool.pads_begin[1]);
    nhwc_supported(p)
        && p.groups == 1
        && p.input[0] == 1
        && p.output[0] == 1
        && p.kernel[0] == 1
        && pool.planes == p.batch
        && pool.input == p.output
        && pool.output[0] == 1
        && pool.kernel[0] == 1
        && pool.dilations == [1, 1, 1]
        && k >= 1
        && s >= 1
        && pad < k
        && pool.output[1] >= 1
        && (pool.output[1] - 1) * s < pool.input[1] + pad
}

/// Pooling output rows one step of a band computes.
fn chunk_rows(p: &ConvParams, pool: &PoolParams) -> usize {
    let row = p.output[2] * p.out_channels;
    (SLOT_FLOATS / (pool.strides[1] * row).max(1)).clamp(1, pool.output[1].max(1))
}

/// Convolution rows a slot holds: those one step's windows read.
fn slot_rows(p: &ConvParams, pool: &PoolParams) -> usize {
    (chunk_rows(p, pool) - 1) * pool.strides[1] + pool.kernel[1]
}

/// Floats of working memory [`conv_max_pool_nhwc_f32_exec`] needs: the convolution's padded
/// input ([`nhwc_padded_len`]), then [`CONV_POOL_BANDS`] slots of convolution rows.
pub fn conv_max_pool_scratch_len(p: &ConvParams, pool: &PoolParams, channels_first: bool) -> usize {
    nhwc_padded_len(p, channels_first)
        + CONV_POOL_BANDS * slot_rows(p, pool) * p.output[2] * p.out_channels
}

/// `out = max_pool(acts(conv(x, w) + bias))` channels last: `x: [N, H, W, C]` (or
/// `[N, C, H, W]` when `channels_first`, a network's first layer), `w` packed as
/// [`nhwc_weights_len`] says, `bias: [M]`, `out: [N, *pool.output, M]`; the same values as
/// [`crate::conv_nhwc::conv_nhwc_f32_exec`] then [`crate::pool::max_pool_nhwc_f32_exec`],
/// without the convolution's output ever in memory whole. `scratch` holds
/// [`conv_max_pool_scratch_len`] floats. On up to [`CONV_POOL_BANDS`] of `exec`'s threads.
///
/// Panics if a buffer is too short or the pair is not [`conv_max_pool_supported`].
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands of both layers, working memory and the fused activations"
)]
pub fn conv_max_pool_nhwc_f32_exec(
    exec: &Exec,
    p: &ConvParams,
    pool: &PoolParams,
    (x, channels_first): (&[f32], bool),
    w: &[f32],
    bias: Option<&[f32]>,
    scratch: &mut [f32],
    out: &mut [f32],
    acts: &[Activation],
) {
    assert!(
        conv_max_pool_supported(p, pool),
        "convolution and max pool: a dense 2-D layer and a 2-D pooling of its output"
    );
    let m = p.out_channels;
    let (ih, iw) = (pool.input[1], pool.input[2]);
    let (oh, ow) = (pool.output[1], pool.output[2]);
    let (k, s, pad) = (pool.kernel[1], pool.strides[1], pool.pads_begin[1]);
    let row = iw * m;
    let out_row = ow * m;
    let out_len = p.batch * oh * out_row;
    assert!(
        x.len() >= p.batch * p.input_len() * p.in_channels,
        "convolution and max pool: input too short"
    );
    assert!(
        w.len() >= nhwc_weights_len(p),
        "convolution and max pool: weights too short"
    );
    assert!(
        out.len() >= out_len,
        "convolution and max pool: output too short"
    );
    assert!(
        scratch.len() >= conv_max_pool_scratch_len(p, pool, channels_first),
        "convolution and max pool: working memory too short"
    );
    let ops = Operands {
        w,
        bias,
        residual: Residual::None,
        acts,
    };
    ops.check(p, 0);
    if out_len == 0 {
        return;
    }
    let (padded, slots) = scratch.split_at_mut(nhwc_padded_len(p, channels_first));
    let windows = Windows::new(exec, p, (x, channels_first), padded);
    let macs = p.batch * p.output_len() * m * p.in_channels * p.kernel_len();
    let threads = if macs < PARALLEL_MIN_MACS {
        1
    } else {
        exec.threads()
    };
    let per_band = oh.div_ceil(threads.clamp(1, CONV_POOL_BANDS));
    let bands = oh.div_ceil(per_band);
    let chunk = chunk_rows(p, pool);
    let slot_len = slot_rows(p, pool) * row;
    let slots = SharedMut::new(&mut slots[..bands * slot_len]);
    let sink = SharedMut::new(&mut out[..out_len]);
    exec.for_each(bands, &|band| {
        let base = band * slot_len;
        let (first, last) = (band * per_band, ((band + 1) * per_band).min(oh));
        for n in 0..p.batch {
            // The convolution rows the slot holds.
            let mut have = 0usize..0;
            let mut a = first;
            while a < last {
                let b = (a + chunk).min(last);
                // Rows lo..hi feed pooling rows a..b (pad < k: hi > lo).
                let lo = (a * s).saturating_sub(pad);
                let hi = ((b - 1) * s + k - pad).min(ih);
                let kept = have.end.saturating_sub(lo);
                if kept > 0 && lo > have.start {
                    // SAFETY: the band's slot is this task's alone.
                    let slot = unsafe { slots.slice(base, slot_len) };
                    slot.copy_within((lo - have.start) * row..(have.end - have.start) * row, 0);
                }
                let from = lo + kept;
                if from < hi {
                    let q0 = (n * ih + from) * iw;
                    windows.pixels_into(p, ops, (q0, (hi - from) * iw), &slots, base + kept * row);
                }
                have = lo..hi;
                let mut sub = *pool;
                sub.planes = 1;
                sub.input[1] = hi - lo;
                sub.output[1] = b - a;
                sub.pads_begin[1] = pad.saturating_sub(a * s);
                // SAFETY: the band's slot is this task's alone (nothing writes it meanwhile),
                // and pooling rows a..b of image n are this band's alone.
                let (src, dst) = unsafe {
                    (
                        &*slots.slice(base, (hi - lo) * row),
                        sink.slice((n * oh + a) * out_row, (b - a) * out_row),
                    )
                };
                max_pool_nhwc_f32(&sub, m, src, dst);
                a = b;
            }
        }
    });
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::conv_nhwc::{conv_nhwc_f32_exec, conv_nhwc_from_nchw_f32_exec};
    use std::vec::Vec;

    /// One convolution and pooling: (batch, C, M, input, conv kernel, stride, pad),
    /// (pool kernel, stride, pad), channels first.
    type Case = (
        (usize, usize, usize, [usize; 2], usize, usize, usize),
        (usize, usize, usize),
        bool,
    );

    fn params(case: &Case) -> (ConvParams, PoolParams) {
        let ((batch, c, m, [h, w], kc, sc, pc), (kp, sp, pp), _) = *case;
        let out = |n: usize, k: usize, s: usize, pad: usize| (n + 2 * pad - k) / s + 1;
        let (ch, cw) = (out(h, kc, sc, pc), out(w, kc, sc, pc));
        let p = ConvParams {
            batch,
            in_channels: c,
            out_channels: m,
            groups: 1,
            input: [1, h, w],
            output: [1, ch, cw],
            kernel: [1, kc, kc],
            strides: [1, sc, sc],
            dilations: [1; 3],
            pads: [0, pc, pc],
            packed_weights: false,
        };
        // Ceil mode: the last window may hang over the end (but starts inside).
        let ceil = |n: usize| (n + 2 * pp - kp).div_ceil(sp) + 1;
        let pool = PoolParams {
            planes: batch,
            input: [1, ch, cw],
            output: [1, ceil(ch), ceil(cw)],
            kernel: [1, kp, kp],
            strides: [1, sp, sp],
            dilations: [1; 3],
            pads_begin: [0, pp, pp],
            pads_end: [0, pp, pp],
        };
        (p, pool)
    }

    /// The fused pass against the convolution then the pooling, bit for bit.
    fn check(case: &Case, exec: &Exec) {
        let (p, pool) = params(case);
        let channels_first = case.2;
        assert!(conv_max_pool_supported(&p, &pool), "{case:?}");
        let value = |i: usize, m: usize| ((i * 37 % m) as f32 - (m / 2) as f32) / m as f32;
        let x: Vec<f32> = (0..p.batch * p.input_len() * p.in_channels)
            .map(|i| value(i, 101))
            .collect();
        let w: Vec<f32> = (0..nhwc_weights_len(&p)).map(|i| value(i, 53)).collect();
        let bias: Vec<f32> = (0..p.out_channels).map(|i| value(i, 7)).collect();
        let acts = [Activation::Relu];
        let conv_len = p.batch * p.output_len() * p.out_channels;
        let out_len = p.batch * pool.output.iter().product::<usize>() * p.out_channels;
        let mut padded = std::vec![0f32; nhwc_padded_len(&p, channels_first)];
        let mut conv = std::vec![0f32; conv_len];
        let single = Exec::single();
        let conv_f32 = if channels_first {
            conv_nhwc_from_nchw_f32_exec
        } else {
            conv_nhwc_f32_exec
        };
        conv_f32(
            &single,
            &p,
            &x,
            &w,
            Some(&bias),
            None,
            &mut padded,
            &mut conv,
            &acts,
        );
        let mut expected = std::vec![0f32; out_len];
        max_pool_nhwc_f32(&pool, p.out_channels, &conv, &mut expected);
        let mut scratch = std::vec![0f32; conv_max_pool_scratch_len(&p, &pool, channels_first)];
        let mut fused = std::vec![f32::NAN; out_len];
        conv_max_pool_nhwc_f32_exec(
            exec,
            &p,
            &pool,
            (&x, channels_first),
            &w,
            Some(&bias),
            &mut scratch,
            &mut fused,
            &acts,
        );
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fused), bits(&expected), "{case:?}");
    }

    fn cases() -> Vec<Case> {
        std::vec![
            // A stem: RGB channels first, 3x3 stride 2, then a 3x3 stride-2 pool (ceil mode).
            ((1, 3, 20, [23, 22], 3, 2, 1), (3, 2, 0), true),
            // Padded pooling, two images, more channels than a panel, channels last.
            ((2, 5, 40, [18, 17], 3, 1, 1), (3, 2, 1), false),
            // ResNet's shape, small: 7x7 stride 2 pad 3, pool 3x3 stride 2 pad 1.
            ((1, 3, 16, [30, 30], 7, 2, 3), (3, 2, 1), true),
            // A 2x2 stride-2 pool (no shared rows) over a 1x1 layer read in place.
            ((1, 8, 24, [12, 14], 1, 1, 0), (2, 2, 0), false),
            // Stride 1: most rows shared between steps.
            ((1, 4, 16, [16, 9], 3, 1, 0), (3, 1, 1), false),
        ]
    }

    /// Slots smaller than the images (see `SLOT_FLOATS`), so each band goes several steps
    /// and carries rows from one to the next.
    #[test]
    fn fused_conv_and_max_pool_match_the_two_layers() {
        // Under Miri (some thousand times slower), one tiny stem only. These small layers
        // stay one band on two threads (below the parallel threshold).
        let cases = if cfg!(miri) {
            std::vec![((1, 3, 16, [9, 8], 3, 2, 1), (3, 2, 0), true)]
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
        // Above the threshold, so that two bands run.
        let big: Case = ((1, 3, 32, [120, 100], 3, 2, 1), (3, 2, 1), true);
        check(&big, &Exec::with_threads(2));
        check(&big, &Exec::with_threads(3));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri no CPU feature is detected: the test above is this one"
    )]
    fn fused_conv_and_max_pool_match_the_two_layers_without_avx512() {
        crate::gemm_x86_64::without_avx512(|| {
            for case in cases() {
                check(&case, &Exec::single());
            }
        });
    }
}
