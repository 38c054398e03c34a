//! Convolution over 1 to 3 spatial dimensions (NCHW-style layouts), the method chosen per
//! layer from its shape:
//!
//! - the blocked GEMM over im2col panels packed from the input as the microkernel needs them
//!   (1x1 unit-stride unpadded kernels read the input as B directly);
//! - with AVX-512, a direct kernel that loads im2col rows straight from the input for stems
//!   and for layers with few output channels or wide planes (`direct_pays`), and a depthwise
//!   kernel over whole planes (`crate::conv_x86_64`), both with the padding masked out of
//!   their loads; otherwise a register-tiled depthwise kernel over zero-padded rows;
//! - the narrow GEMM over the gathered im2col columns of a few output pixels;
//!
//! and transposed convolution as GEMM + col2im (and `Col2Im` itself); integer convolution with
//! zero points and requantization (ConvInteger, QLinearConv); 2-D deformable convolution.

use core::mem::MaybeUninit;

use crate::gemm::{
    gemm_f32, gemm_f32_exec, gemm_matrix_exec, gemm_panels_exec, AOperand, Epilogue, MatrixPanels,
    PanelSource, Strides,
};

/// The geometry of one convolution, fixed at compile time. Spatial arrays are right-aligned:
/// the used dimensions last, after leading 1s (with zero padding, unit stride and dilation),
/// so that a 2-D convolution is `[1, h, w]` and inner loops run along a row.
#[derive(Clone, Copy, Debug)]
pub struct ConvParams {
    /// N.
    pub batch: usize,
    /// C, input channels over all groups.
    pub in_channels: usize,
    /// M, output channels over all groups.
    pub out_channels: usize,
    /// Groups; both channel counts are multiples of it.
    pub groups: usize,
    /// Input spatial sizes.
    pub input: [usize; 3],
    /// Output spatial sizes.
    pub output: [usize; 3],
    /// Kernel spatial sizes.
    pub kernel: [usize; 3],
    /// Strides.
    pub strides: [usize; 3],
    /// Dilations.
    pub dilations: [usize; 3],
    /// Padding before each spatial axis (padding after is implied by the output size).
    pub pads: [usize; 3],
    /// Whether the weights come pre-packed for the GEMM (by the compiler, for constant
    /// weights): per group, the `M/groups x C/groups * kernel` matrix in panels of 8 rows
    /// (see [`ConvParams::weights_len`]) instead of `[M, C/groups, *kernel]`.
    pub packed_weights: bool,
}

impl ConvParams {
    pub(crate) fn kernel_len(&self) -> usize {
        self.kernel.iter().product()
    }
    pub(crate) fn input_len(&self) -> usize {
        self.input.iter().product()
    }
    pub(crate) fn output_len(&self) -> usize {
        self.output.iter().product()
    }
    /// Whether the kernel reads exactly one input pixel per output pixel, in order, so the
    /// input itself is the im2col matrix.
    pub const fn is_pointwise(&self) -> bool {
        let mut i = 0;
        while i < 3 {
            if self.kernel[i] != 1
                || self.strides[i] != 1
                || self.pads[i] != 0
                || self.input[i] != self.output[i]
            {
                return false;
            }
            i += 1;
        }
        true
    }
    /// Floats of weights: `M * C/groups * kernel`, or with [`ConvParams::packed_weights`],
    /// per group `ceil(M/groups / 8)` panels of `8 x C/groups * kernel`, each stored with its
    /// 8 rows interleaved (`panel[p * 8 + r]`, zero rows padding the last panel).
    pub const fn weights_len(&self) -> usize {
        let k = self.in_channels / self.groups * self.kernel[0] * self.kernel[1] * self.kernel[2];
        if self.packed_weights {
            self.groups * (self.out_channels / self.groups).div_ceil(8) * 8 * k
        } else {
            self.out_channels * k
        }
    }

    /// Whether each channel is convolved alone (`groups == in_channels == out_channels`), which
    /// runs as a direct kernel without im2col.
    pub const fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// These parameters for an input of run-time batch and spatial sizes (a model compiled
    /// for bounded dims): the output sizes follow, and with `auto_pad` `SAME_UPPER`
    /// (`Some(true)`) or `SAME_LOWER` (`Some(false)`) the padding too; otherwise `pads_end`
    /// gives the padding after each axis (the padding before stays).
    ///
    /// Fails when a window no longer fits the padded input, or when an extent exceeds the
    /// one the model was compiled for (`self`'s).
    pub fn resized(
        &self,
        batch: usize,
        input: [usize; 3],
        pads_end: [usize; 3],
        same_upper: Option<bool>,
    ) -> Result<Self, &'static str> {
        let mut p = *self;
        if batch > self.batch || (0..3).any(|i| input[i] > self.input[i]) {
            return Err("conv input larger than its compiled bound");
        }
        p.batch = batch;
        p.input = input;
        for i in 0..3 {
            let span = (self.kernel[i] - 1) * self.dilations[i] + 1;
            let pads = (self.pads[i], pads_end[i]);
            let (out, (before, _)) =
                resized_axis(input[i], pads, span, self.strides[i], false, same_upper)
                    .ok_or("conv input smaller than its kernel")?;
            (p.output[i], p.pads[i]) = (out, before);
        }
        if (0..3).any(|i| p.output[i] > self.output[i]) {
            return Err("conv output larger than its compiled bound");
        }
        Ok(p)
    }
}

/// One spatial axis of a window (a convolution's or a pool's) at a run-time extent: the
/// output extent for `input` positions and the padding (before, after). The padding is
/// `pads` as compiled, or recomputed for `SAME_UPPER` (`same_upper: Some(true)`) or
/// `SAME_LOWER` (`Some(false)`), the odd position after or before; `ceil_mode` rounds the
/// output up (pools), keeping the last window's start inside the input or its padding
/// before. `None` when a window of `span` positions does not fit the padded input.
pub(crate) fn resized_axis(
    input: usize,
    pads: (usize, usize),
    span: usize,
    stride: usize,
    ceil_mode: bool,
    same_upper: Option<bool>,
) -> Option<(usize, (usize, usize))> {
    if let Some(upper) = same_upper {
        let out = input.div_ceil(stride);
        let total = ((out.max(1) - 1) * stride + span).saturating_sub(input);
        let small = total / 2;
        let pads = if upper {
            (small, total - small)
        } else {
            (total - small, small)
        };
        return Some((out, pads));
    }
    let padded = (input + pads.0 + pads.1).checked_sub(span)?;
    let out = if ceil_mode {
        let o = padded.div_ceil(stride) + 1;
        if (o - 1) * stride >= input + pads.0 {
            o - 1
        } else {
            o
        }
    } else {
        padded / stride + 1
    };
    Some((out, pads))
}

/// `out = acts(conv(x, w) + bias + residual)` (the activations applied in order) on `exec`'s threads, with `x: [N, C, *input]`,
/// `w: [M, C/groups, *kernel]`, `bias: [M]`, `out: [N, M, *output]`.
///
/// Each group is one GEMM of the weights (`M/groups x C/groups * kernel`) by the im2col matrix
/// of the input, which is never stored: the GEMM packs each panel of it straight from the
/// input (see `Im2colPanels`). Pointwise convolutions read the input as the matrix itself;
/// depthwise ones run a direct kernel.
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, a fused residual, the executor and the fused activations"
)]
pub fn conv_f32_exec(
    exec: &crate::threads::Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    out: &mut [f32],
    acts: &[crate::epilogue::Activation],
) {
    let cout_g = p.out_channels / p.groups;
    let (in_len, out_len) = (p.input_len(), p.output_len());
    assert!(
        x.len() >= p.batch * p.in_channels * in_len,
        "conv input too short"
    );
    assert!(w.len() >= p.weights_len(), "conv weights too short");
    assert!(
        out.len() >= p.batch * p.out_channels * out_len,
        "conv output too short"
    );
    if let Some(bias) = bias {
        assert!(bias.len() >= p.out_channels, "conv bias too short");
    }
    if let Some(residual) = residual {
        assert!(
            residual.len() >= p.batch * p.out_channels * out_len,
            "conv residual too short"
        );
    }
    if p.is_depthwise() && !p.packed_weights {
        return depthwise_f32(exec, p, x, w, bias, residual, out, acts);
    }
    let groups = p.batch * p.groups;
    let group_out = cout_g * out_len;
    let run = |exec: &crate::threads::Exec, t: usize, out_group: &mut [f32]| {
        let (n, g) = (t / p.groups, t % p.groups);
        conv_group(exec, p, x, w, bias, residual, acts, n, g, out_group);
    };
    let out = &mut out[..groups * group_out];
    if groups > 1 && exec.threads() > 1 && p.groups >= exec.threads() {
        // Many groups (grouped convolutions): whole groups per thread, each product on one.
        let single = crate::threads::Exec::single();
        exec.for_each_chunk(out, group_out, &|t, out_group| run(&single, t, out_group));
    } else {
        for (t, out_group) in out.chunks_exact_mut(group_out.max(1)).enumerate() {
            run(exec, t, out_group);
        }
    }
}

/// Group `g` of batch item `n` of [`conv_f32_exec`], into `out_group` (its `M/groups`
/// output planes).
#[allow(
    clippy::too_many_arguments,
    reason = "conv_f32_exec's operands and the group"
)]
fn conv_group(
    exec: &crate::threads::Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    acts: &[crate::epilogue::Activation],
    n: usize,
    g: usize,
    out_group: &mut [f32],
) {
    let cin_g = p.in_channels / p.groups;
    let cout_g = p.out_channels / p.groups;
    let (in_len, out_len, k_len) = (p.input_len(), p.output_len(), p.kernel_len());
    let rows = cin_g * k_len;
    let x_group = &x[(n * p.in_channels + g * cin_g) * in_len..][..cin_g * in_len];
    let (weights, a) = if p.packed_weights {
        let group_len = cout_g.div_ceil(8) * 8 * rows;
        let panels = &w[g * group_len..][..group_len];
        (panels, AOperand::Panels8(panels, rows))
    } else {
        let matrix = &w[g * cout_g * rows..][..cout_g * rows];
        (matrix, AOperand::Matrix(matrix, Strides { rows, cols: 1 }))
    };
    let epilogue = Epilogue {
        row_bias: bias.map(|b| &b[g * cout_g..][..cout_g]),
        residual: residual
            .map(|r| &r[(n * p.out_channels + g * cout_g) * out_len..][..cout_g * out_len]),
        acts,
    };
    #[cfg(target_arch = "x86_64")]
    if let AOperand::Panels8(panels, _) = a {
        if conv_direct_avx512(exec, p, x_group, panels, cout_g, epilogue, out_group) {
            return;
        }
    }
    let pixels = Strides {
        rows: out_len,
        cols: 1,
    };
    // A handful of output pixels (a convolution over a short sequence): the im2col columns
    // of those pixels are gathered on the stack and the narrow product reads the (much
    // larger) weights once, without packing them.
    let narrow = !p.packed_weights
        && !p.is_pointwise()
        && out_len <= NARROW_PIXELS
        && rows * out_len <= NARROW_COLS;
    if narrow {
        let mut stack_cols = [MaybeUninit::<f32>::uninit(); NARROW_COLS];
        let columns = im2col_columns(p, x_group, &mut stack_cols[..rows * out_len]);
        crate::gemm::narrow_columns(
            cout_g,
            out_len,
            rows,
            1.0,
            weights,
            Strides { rows, cols: 1 },
            columns,
            false,
            out_group,
        );
        epilogue.apply(&mut out_group[..cout_g * out_len], out_len);
        return;
    }
    if p.is_pointwise() && !p.packed_weights {
        // The input itself is B, through the matrix GEMM (and its small-product paths).
        gemm_matrix_exec(
            exec,
            cout_g,
            out_len,
            rows,
            1.0,
            weights,
            Strides { rows, cols: 1 },
            x_group,
            pixels,
            false,
            out_group,
            epilogue,
        );
    } else if p.is_pointwise() {
        let source = MatrixPanels::new(x_group, pixels, cout_g);
        gemm_panels_exec(
            exec, cout_g, out_len, rows, 1.0, a, &source, false, out_group, epilogue,
        );
    } else {
        let source = Im2colPanels { p, x: x_group };
        gemm_panels_exec(
            exec, cout_g, out_len, rows, 1.0, a, &source, false, out_group, epilogue,
        );
    }
}

/// The im2col matrix of one group's input, column by column: `dst[j * rows + r]` is im2col
/// row `r` (channel, then kernel offset) of output pixel `j`, 0 in the padding; `dst` holds
/// `rows * pixels` floats. Returns `dst`, initialized.
fn im2col_columns<'a>(p: &ConvParams, x: &[f32], dst: &'a mut [MaybeUninit<f32>]) -> &'a [f32] {
    let [id, ih, iw] = p.input;
    let [_, oh, ow] = p.output;
    let [kd, kh, kw] = p.kernel;
    let [sd, sh, sw] = p.strides;
    let [dd, dh, dw] = p.dilations;
    let [pd, ph, pw] = p.pads;
    let in_len = id * ih * iw;
    let cin = p.in_channels / p.groups;
    let rows = cin * kd * kh * kw;
    // 1-D (a convolution over a short sequence): each channel's taps are one input row.
    let one_row = (id, ih, kd, kh) == (1, 1, 1, 1);
    for (j, column) in dst.chunks_exact_mut(rows.max(1)).enumerate() {
        let (xo, y, z) = (j % ow, j / ow % oh, j / (ow * oh));
        let x0 = (xo * sw).wrapping_sub(pw);
        // Without dilation, the kernel columns inside the input row are one run [lo, hi).
        let first = (xo * sw) as isize - pw as isize;
        let lo = (-first).clamp(0, kw as isize) as usize;
        let hi = (iw as isize - first).clamp(lo as isize, kw as isize) as usize;
        let tap_row = |out: &mut [MaybeUninit<f32>], row: &[f32]| {
            if dw == 1 {
                let (left, rest) = out.split_at_mut(lo);
                let (inside, right) = rest.split_at_mut(hi - lo);
                zero(left);
                let start = x0.wrapping_add(lo).min(iw);
                for (d, &v) in inside.iter_mut().zip(&row[start..]) {
                    d.write(v);
                }
                zero(right);
            } else {
                for (c, d) in out.iter_mut().enumerate() {
                    let xi = x0.wrapping_add(c * dw);
                    d.write(if xi < iw { row[xi] } else { 0.0 });
                }
            }
        };
        let mut taps = column.chunks_exact_mut(kw.max(1));
        if one_row {
            for (out, row) in (&mut taps).zip(x.chunks_exact(iw.max(1))) {
                tap_row(out, row);
            }
            continue;
        }
        for channel in x.chunks_exact(in_len.max(1)).take(cin) {
            for a in 0..kd {
                let zi = (z * sd + a * dd).wrapping_sub(pd);
                for b in 0..kh {
                    let yi = (y * sh + b * dh).wrapping_sub(ph);
                    let Some(out) = taps.next() else {
                        continue;
                    };
                    if zi >= id || yi >= ih {
                        zero(out);
                    } else {
                        tap_row(out, &channel[(zi * ih + yi) * iw..][..iw]);
                    }
                }
            }
        }
    }
    let len = dst.len();
    // SAFETY: every column of `rows` floats was written in full above (`len` is a multiple
    // of `rows`: the caller's `rows * pixels`).
    unsafe { core::slice::from_raw_parts(dst.as_ptr().cast::<f32>(), len) }
}

/// Output pixels up to which a convolution gathers its whole im2col matrix on the stack.
const NARROW_PIXELS: usize = 8;
/// Floats of that stack matrix (`C/groups * kernel * NARROW_PIXELS` at most).
const NARROW_COLS: usize = 8 * 1024;

/// [`conv_f32_exec`] on the calling thread alone.
pub fn conv_f32(p: &ConvParams, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    conv_f32_exec(
        &crate::threads::Exec::single(),
        p,
        x,
        w,
        bias,
        None,
        out,
        &[],
    );
}

/// The im2col matrix of one group's input, as GEMM panels: row `c * K + kernel_offset`,
/// column `output_pixel`, holding the input pixel that kernel tap reads for that output (0 in
/// the padding). Panels are gathered from the input as the GEMM needs them, so the matrix
/// (kernel-size times larger than the input) never goes through memory.
struct Im2colPanels<'a> {
    p: &'a ConvParams,
    x: &'a [f32],
}

/// A run of a panel's columns inside one output row: the first column in the panel, its
/// length, and the padded input coordinates (depth, row, x) of the first pixel's tap 0, which
/// may be "negative" (wrapped) in the padding.
#[derive(Clone, Copy, Default)]
struct Piece {
    column: usize,
    len: usize,
    z: usize,
    y: usize,
    x: usize,
}

impl PanelSource for Im2colPanels<'_> {
    fn pack<const NR: usize>(
        &self,
        k0: usize,
        kc: usize,
        j0: usize,
        nr: usize,
        pack: &mut [MaybeUninit<f32>],
    ) {
        let p = self.p;
        let [id, ih, iw] = p.input;
        let [_, oh, ow] = p.output;
        let [kd, kh, kw] = p.kernel;
        let [sd, sh, sw] = p.strides;
        let [dd, dh, dw] = p.dilations;
        let [pd, ph, pw] = p.pads;
        let in_len = id * ih * iw;
        // Each piece holds at least one of the panel's `nr <= NR` columns (an output row of one
        // pixel makes every column a piece of its own).
        let mut pieces = [Piece::default(); NR];
        let mut count = 0;
        let mut j = 0;
        while j < nr {
            let pixel = j0 + j;
            let (xo, y, z) = (pixel % ow, pixel / ow % oh, pixel / (ow * oh));
            let len = (ow - xo).min(nr - j);
            pieces[count] = Piece {
                column: j,
                len,
                z: (z * sd).wrapping_sub(pd),
                y: (y * sh).wrapping_sub(ph),
                x: (xo * sw).wrapping_sub(pw),
            };
            count += 1;
            j += len;
        }
        let pieces = &pieces[..count];
        // Kernel coordinates (channel, depth, row, column) of row k0, then advanced as an
        // odometer: no divisions per row.
        let taps = kd * kh * kw;
        let (mut ch, t) = (k0 / taps, k0 % taps);
        let (mut a, mut b, mut c) = (t / (kh * kw), t / kw % kh, t % kw);
        for prow in 0..kc {
            let dst = &mut pack[prow * NR..][..NR];
            let channel = &self.x[ch * in_len..][..in_len];
            for piece in pieces {
                let out = &mut dst[piece.column..piece.column + piece.len];
                let zi = piece.z.wrapping_add(a * dd);
                let yi = piece.y.wrapping_add(b * dh);
                if zi >= id || yi >= ih {
                    zero(out);
                    continue;
                }
                let in_row = &channel[(zi * ih + yi) * iw..][..iw];
                let first = piece.x.wrapping_add(c * dw);
                if sw == 1 && out.len() == NR && first < iw && iw - first >= NR {
                    // A whole panel row inside the input: a constant-size copy.
                    let src: &[f32; NR] = in_row[first..first + NR].try_into().expect("NR");
                    for (d, &v) in out.iter_mut().zip(src) {
                        d.write(v);
                    }
                } else if sw == 1 {
                    // Pixels left of the input, inside it, and right of it.
                    let head = first.wrapping_neg().min(out.len());
                    let head = if first < iw { 0 } else { head };
                    let start = first.wrapping_add(head);
                    let inside = if start < iw {
                        (iw - start).min(out.len() - head)
                    } else {
                        0
                    };
                    let (left, rest) = out.split_at_mut(head);
                    let (middle, right) = rest.split_at_mut(inside);
                    zero(left);
                    if inside > 0 {
                        copy(middle, &in_row[start..start + inside]);
                    }
                    zero(right);
                } else {
                    // Strided: the pixels [lo, hi) of the piece are inside the input.
                    let len = out.len();
                    let lo = if first < iw {
                        0
                    } else {
                        first.wrapping_neg().div_ceil(sw).min(len)
                    };
                    let start = first.wrapping_add(lo * sw);
                    let hi = if lo < len && start < iw {
                        lo + ((iw - 1 - start) / sw + 1).min(len - lo)
                    } else {
                        lo
                    };
                    let (left, rest) = out.split_at_mut(lo);
                    let (middle, right) = rest.split_at_mut(hi - lo);
                    zero(left);
                    if hi > lo {
                        let src = &in_row[start..start + (hi - lo - 1) * sw + 1];
                        for (j, d) in middle.iter_mut().enumerate() {
                            d.write(src[j * sw]);
                        }
                    }
                    zero(right);
                }
            }
            zero(&mut dst[nr..]);
            c += 1;
            if c == kw {
                c = 0;
                b += 1;
                if b == kh {
                    b = 0;
                    a += 1;
                    if a == kd {
                        a = 0;
                        ch += 1;
                    }
                }
            }
        }
    }
}

/// `dst = 0`.
#[inline(always)]
fn zero(dst: &mut [MaybeUninit<f32>]) {
    for d in dst {
        d.write(0.0);
    }
}

/// `dst = src`, in fixed blocks of 8 so that short runs are vector moves, not calls to
/// memcpy.
#[inline(always)]
fn copy(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    let mut ds = dst.chunks_exact_mut(8);
    let mut ss = src.chunks_exact(8);
    for (d, s) in (&mut ds).zip(&mut ss) {
        let s: &[f32; 8] = s.try_into().expect("8 floats");
        for l in 0..8 {
            d[l].write(s[l]);
        }
    }
    for (d, &v) in ds.into_remainder().iter_mut().zip(ss.remainder()) {
        d.write(v);
    }
}

/// Depthwise convolution, in tasks of whole `(batch, channel)` planes. 2-D planes without
/// dilation run [`depthwise_plane_2d`]; others add one shifted, scaled copy of the input plane
/// per kernel tap (unit-stride inner loops).
#[allow(clippy::too_many_arguments, reason = "conv_f32_exec's operands")]
fn depthwise_f32(
    exec: &crate::threads::Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    out: &mut [f32],
    acts: &[crate::epilogue::Activation],
) {
    let (in_len, out_len, k_len) = (p.input_len(), p.output_len(), p.kernel_len());
    let planes = p.batch * p.in_channels;
    assert!(
        x.len() >= planes * in_len
            && out.len() >= planes * out_len
            && w.len() >= p.in_channels * k_len,
        "depthwise buffers too short"
    );
    let out_len = out_len.max(1);
    // Enough planes per task to amortize waking a worker and zeroing the row buffer.
    let per_task = (1usize << 13).div_ceil(out_len);
    #[cfg(target_arch = "x86_64")]
    if depthwise_avx512(exec, p, x, w, bias, residual, out, acts, per_task) {
        return;
    }
    exec.for_each_chunk(
        &mut out[..planes * out_len],
        per_task * out_len,
        &|t, dsts| {
            let mut rows = [0.0f32; DW_BUF];
            for (i, dst) in dsts.chunks_exact_mut(out_len).enumerate() {
                let plane = t * per_task + i;
                let channel = plane % p.in_channels;
                let (src, taps) = (
                    &x[plane * in_len..][..in_len],
                    &w[channel * k_len..][..k_len],
                );
                let bias = bias.map_or(0.0, |b| b[channel]);
                let planar = p.input[0] == 1 && p.kernel[0] == 1 && p.output[0] == 1;
                let done = match (planar, p.dilations, p.strides[2], p.output[2] <= 8) {
                    (true, [_, 1, 1], 1, true) => {
                        depthwise_plane_2d::<1, 8>(p, src, taps, bias, dst, &mut rows)
                    }
                    (true, [_, 1, 1], 1, false) => {
                        depthwise_plane_2d::<1, 16>(p, src, taps, bias, dst, &mut rows)
                    }
                    (true, [_, 1, 1], 2, true) => {
                        depthwise_plane_2d::<2, 8>(p, src, taps, bias, dst, &mut rows)
                    }
                    (true, [_, 1, 1], 2, false) => {
                        depthwise_plane_2d::<2, 16>(p, src, taps, bias, dst, &mut rows)
                    }
                    _ => false,
                };
                if !done {
                    depthwise_plane(p, src, taps, bias, dst);
                }
                if let Some(residual) = residual {
                    let add = &residual[plane * out_len..][..out_len];
                    dst.iter_mut().zip(add).for_each(|(d, &r)| *d += r);
                }
                crate::epilogue::Activation::apply_chain(acts, dst);
            }
        },
    );
}

/// The 2-D geometry of `p` for the AVX-512 kernels that read the input in place, and its
/// horizontal stride: if the CPU has AVX-512F and `p` is 2-D, without dilation, with
/// horizontal stride 1 or 2 and a non-empty kernel and output.
#[cfg(target_arch = "x86_64")]
fn plane_geometry(p: &ConvParams) -> Option<(crate::conv_x86_64::Plane, usize)> {
    crate::conv_x86_64::Plane::from_3d(p.input, p.output, p.kernel, p.strides, p.dilations, p.pads)
}

/// The depthwise convolution on the AVX-512 plane kernel, if the CPU has it and the geometry
/// suits it (2-D, no dilation, horizontal stride 1 or 2, at most 25 taps); returns false,
/// writing nothing, otherwise.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments, reason = "depthwise_f32's operands")]
fn depthwise_avx512(
    exec: &crate::threads::Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    out: &mut [f32],
    acts: &[crate::epilogue::Activation],
    per_task: usize,
) -> bool {
    use crate::conv_x86_64::{plane, MAX_TAPS};
    let Some((geometry, sw)) = plane_geometry(p) else {
        return false;
    };
    let crate::conv_x86_64::Plane {
        ih,
        iw,
        oh,
        ow,
        kh,
        kw,
        ..
    } = geometry;
    if kh * kw > MAX_TAPS {
        return false;
    }
    let (in_len, out_len, taps) = (ih * iw, oh * ow, kh * kw);
    let planes = p.batch * p.in_channels;
    let (in_register, in_memory) = crate::gemm::Finish::split(acts);
    exec.for_each_chunk(
        &mut out[..planes * out_len],
        per_task * out_len,
        &|t, dsts| {
            for (i, dst) in dsts.chunks_exact_mut(out_len).enumerate() {
                let index = t * per_task + i;
                let channel = index % p.in_channels;
                let src = &x[index * in_len..][..in_len];
                let taps = &w[channel * taps..][..taps];
                let bias = bias.map_or(0.0, |b| b[channel]);
                let residual = residual.map(|r| &r[index * out_len..][..out_len]);
                // SAFETY: the CPU has AVX-512F (checked above); `src` holds ih * iw floats,
                // `taps` kh * kw <= MAX_TAPS, `dst` and the residual oh * ow.
                unsafe {
                    if sw == 1 {
                        plane::<1>(geometry, src, taps, bias, residual, in_register, dst);
                    } else {
                        plane::<2>(geometry, src, taps, bias, residual, in_register, dst);
                    }
                }
                crate::epilogue::Activation::apply_chain(in_memory, dst);
            }
        },
    );
    true
}

/// Depth of a block of the direct convolution: the weights of one block (all output channels)
/// stay in L2 while every tile of output rows is computed over it.
#[cfg(target_arch = "x86_64")]
const DIRECT_KC: usize = 256;

/// One group of a dense convolution with pre-packed weights on the AVX-512 direct kernel
/// ([`crate::conv_x86_64::direct_tile`]), if the CPU has it and the geometry suits it (2-D,
/// not pointwise, no dilation, horizontal stride 1 or 2, kernels up to 8 wide) and it pays
/// ([`direct_pays`]); returns false, writing nothing, otherwise.
///
/// Each output row is covered by tiles of three 16-pixel vectors, and the one or two vectors
/// left at its end by tiles of one vector over three rows or of two vectors over one row, so
/// that every tile keeps 16 to 24 accumulators busy. Threads split the output rows.
#[cfg(target_arch = "x86_64")]
fn conv_direct_avx512(
    exec: &crate::threads::Exec,
    p: &ConvParams,
    x: &[f32],
    panels: &[f32],
    cout: usize,
    epilogue: Epilogue<'_>,
    out: &mut [f32],
) -> bool {
    use crate::conv_x86_64::{direct_tile, DirectAt, MAX_KW};
    let Some((geometry, sw)) = plane_geometry(p) else {
        return false;
    };
    let crate::conv_x86_64::Plane {
        ih,
        iw,
        oh,
        ow,
        kh,
        kw,
        ..
    } = geometry;
    if p.is_pointwise() || kw > MAX_KW || cout == 0 {
        return false;
    }
    let cin = p.in_channels / p.groups;
    if !(cin <= 4 || direct_pays(oh, ow, sw, cout)) {
        return false;
    }
    let depth = cin * kh * kw;
    let plane = oh * ow;
    assert!(x.len() >= cin * ih * iw, "conv input too short");
    assert!(out.len() >= cout * plane, "conv output too short");
    assert!(
        panels.len() >= cout.div_ceil(8) * 8 * depth,
        "conv weights too short"
    );
    if let Some(bias) = epilogue.row_bias {
        assert!(bias.len() >= cout, "conv bias too short");
    }
    if let Some(residual) = epilogue.residual {
        assert!(residual.len() >= cout * plane, "conv residual too short");
    }
    let (in_register, in_memory) = crate::gemm::Finish::split(epilogue.acts);
    // Whole vectors of three per row, then the one or two left.
    let vectors = ow.div_ceil(16);
    let (full, rest) = (vectors / 3, vectors % 3);
    let out_ptr = OutPtr(out.as_mut_ptr());
    // Rows per task: a multiple of three (the one-vector tiles' height).
    let tasks = exec.threads().min(oh.div_ceil(3));
    let rows_per_task = oh.div_ceil(tasks).next_multiple_of(3);
    let run = |task: usize| {
        let (y_lo, y_hi) = (task * rows_per_task, oh.min((task + 1) * rows_per_task));
        let out = out_ptr;
        let mut k0 = 0;
        // Blocks of whole input channels.
        let block = (DIRECT_KC / (kh * kw)).max(1) * kh * kw;
        while k0 < depth {
            let kc = block.min(depth - k0);
            let (overwrite, last) = (k0 == 0, k0 + kc == depth);
            let tile = |y: usize, x0: usize, shape: (usize, usize)| {
                for block in 0..cout.div_ceil(8) {
                    let c0 = block * 8;
                    let mr = (cout - c0).min(8);
                    let finish = last.then(|| crate::gemm::Finish {
                        bias: epilogue.row_bias.map(|b| &b[c0..]),
                        residual: epilogue
                            .residual
                            .map_or(core::ptr::null(), |r| r[c0 * plane..].as_ptr()),
                        acts: in_register,
                    });
                    let at = DirectAt { y, x: x0, k0, kc };
                    // SAFETY: the CPU has AVX-512F (checked above); the panel's steps k0..k0+kc
                    // lie in `panels` (asserted length); `x` holds the group's cin planes;
                    // channels c0..c0+mr of the output and residual hold `plane` floats each
                    // (asserted) and this task alone writes rows y_lo..y_hi of them; the bias
                    // holds cout floats; kw <= MAX_KW.
                    unsafe {
                        let a = panels.as_ptr().add(c0 * depth + k0 * 8);
                        let o = out.0.add(c0 * plane);
                        let xp = x.as_ptr();
                        match (sw, shape) {
                            (1, (1, 3)) => direct_tile::<1, 1, 3>(
                                &geometry, at, a, xp, o, mr, overwrite, finish,
                            ),
                            (1, (1, 2)) => direct_tile::<1, 1, 2>(
                                &geometry, at, a, xp, o, mr, overwrite, finish,
                            ),
                            (1, _) => direct_tile::<1, 3, 1>(
                                &geometry, at, a, xp, o, mr, overwrite, finish,
                            ),
                            (_, (1, 3)) => direct_tile::<2, 1, 3>(
                                &geometry, at, a, xp, o, mr, overwrite, finish,
                            ),
                            (_, (1, 2)) => direct_tile::<2, 1, 2>(
                                &geometry, at, a, xp, o, mr, overwrite, finish,
                            ),
                            _ => direct_tile::<2, 3, 1>(
                                &geometry, at, a, xp, o, mr, overwrite, finish,
                            ),
                        }
                    }
                }
            };
            for y in y_lo..y_hi {
                for t in 0..full {
                    tile(y, t * 48, (1, 3));
                }
                if rest == 2 {
                    tile(y, full * 48, (1, 2));
                }
            }
            if rest == 1 {
                let mut y = y_lo;
                while y < y_hi {
                    tile(y, full * 48, (3, 1));
                    y += 3;
                }
            }
            k0 += kc;
        }
        if !in_memory.is_empty() {
            for c in 0..cout {
                // SAFETY: rows y_lo..y_hi of channel c, written by this task alone.
                let rows = unsafe {
                    core::slice::from_raw_parts_mut(
                        out.0.add(c * plane + y_lo * ow),
                        (y_hi - y_lo) * ow,
                    )
                };
                crate::epilogue::Activation::apply_chain(in_memory, rows);
            }
        }
    };
    exec.for_each(oh.div_ceil(rows_per_task), &run);
    true
}

/// Whether the direct kernel beats the blocked GEMM on an `oh x ow` output with horizontal
/// stride `sw` and `cout` channels (stems, with few input channels, always go direct: their
/// im2col panels are short and strided).
///
/// The estimate compares the fraction of vector lanes each fills with output pixels (the
/// direct kernel's rows of 16-pixel vectors, one-vector rows taken three at a time, against
/// the GEMM's panels over the flattened plane) and charges the GEMM for packing its im2col
/// panels: measured at about two row blocks' worth of kernel time per panel, so a share
/// `16 / cout` of the work. Few output channels or wide planes go direct; many channels on
/// small planes (the late layers of a CNN, 7x7 or 14x14) stay on the GEMM. With horizontal
/// stride 2 the direct kernel loads and shuffles two vectors per tap: about 15% slower.
#[cfg(target_arch = "x86_64")]
fn direct_pays(oh: usize, ow: usize, sw: usize, cout: usize) -> bool {
    let vectors = ow.div_ceil(16);
    let mut direct = ow as f32 / (16 * vectors) as f32;
    if sw == 2 {
        direct *= 0.85;
    }
    if vectors == 1 {
        direct *= oh as f32 / oh.next_multiple_of(3) as f32;
    }
    let pixels = oh * ow;
    let (mut left, mut lanes) = (pixels, 0);
    while left > 0 {
        let width = crate::gemm::panel_width::<48>(left);
        lanes += width.next_multiple_of(16);
        left -= width;
    }
    let gemm = pixels as f32 / lanes as f32 * (1.0 - (16.0 / cout as f32).min(1.0));
    direct >= gemm
}

/// The output of [`conv_direct_avx512`] as a raw pointer, so that tasks can each write their
/// own rows.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: tasks write disjoint rows only.
#[cfg(target_arch = "x86_64")]
unsafe impl Send for OutPtr {}
// SAFETY: as above.
#[cfg(target_arch = "x86_64")]
unsafe impl Sync for OutPtr {}

/// What one output row of [`depthwise_plane_2d`] reads: the padded input rows (found by
/// kernel row through `slot`), the kernel rows inside the input, the plane's taps and bias.
struct DwTaps<'a, F> {
    rows: &'a [f32],
    len: usize,
    slot: F,
    ky: (usize, usize),
    w: &'a [f32],
    kw: usize,
    bias: f32,
}

impl<F: Fn(usize) -> usize> DwTaps<'_, F> {
    /// Output pixels `[x0, x0 + U * TILE)` (clipped to the row), accumulated in `2 * U`
    /// independent register chains (kernel rows alternate between two), so the FMAs of a
    /// 5x5 window do not wait on each other.
    #[inline(always)]
    fn tiles<const SW: usize, const TILE: usize, const U: usize>(
        &self,
        x0: usize,
        out_row: &mut [f32],
    ) {
        let mut even = [[self.bias; TILE]; U];
        let mut odd = [[0.0f32; TILE]; U];
        let row = |ky: usize| &self.rows[(self.slot)(ky) * self.len..][..self.len];
        let span = (TILE - 1) * SW + 1;
        let (ky_lo, ky_hi) = self.ky;
        let mut ky = ky_lo;
        while ky + 2 <= ky_hi {
            let (r0, r1) = (row(ky), row(ky + 1));
            for kx in 0..self.kw {
                let (w0, w1) = (self.w[ky * self.kw + kx], self.w[(ky + 1) * self.kw + kx]);
                for (u, (e, d)) in even.iter_mut().zip(odd.iter_mut()).enumerate() {
                    let start = (x0 + u * TILE) * SW + kx;
                    let (t0, t1) = (&r0[start..start + span], &r1[start..start + span]);
                    for l in 0..TILE {
                        e[l] += w0 * t0[l * SW];
                        d[l] += w1 * t1[l * SW];
                    }
                }
            }
            ky += 2;
        }
        if ky < ky_hi {
            let r0 = row(ky);
            for kx in 0..self.kw {
                let w0 = self.w[ky * self.kw + kx];
                for (u, e) in even.iter_mut().enumerate() {
                    let start = (x0 + u * TILE) * SW + kx;
                    let t0 = &r0[start..start + span];
                    for l in 0..TILE {
                        e[l] += w0 * t0[l * SW];
                    }
                }
            }
        }
        for u in 0..U {
            let x = x0 + u * TILE;
            if x >= out_row.len() {
                break;
            }
            let n = TILE.min(out_row.len() - x);
            for (o, (e, d)) in out_row[x..x + n]
                .iter_mut()
                .zip(even[u].iter().zip(&odd[u]))
            {
                *o = e + d;
            }
        }
    }
}

/// Floats of the zero-padded input rows [`depthwise_plane_2d`] keeps (one per kernel row).
const DW_BUF: usize = 6144;

/// One plane of a 2-D depthwise convolution without dilation, horizontal stride `SW`, if its
/// padded rows fit in `rows` (returns false, writing nothing, if not).
///
/// The input rows a window covers are copied into zero-padded rows (a ring of `kh` slots, so
/// each input row is copied once), after which every output pixel has all its taps in bounds:
/// output rows are computed `TILE` pixels at a time, each pixel accumulated in registers over
/// all its taps (one pass over the output).
fn depthwise_plane_2d<const SW: usize, const TILE: usize>(
    p: &ConvParams,
    src: &[f32],
    w: &[f32],
    bias: f32,
    dst: &mut [f32],
    rows: &mut [f32; DW_BUF],
) -> bool {
    let [_, ih, iw] = p.input;
    let [_, oh, ow] = p.output;
    let [_, kh, kw] = p.kernel;
    let sh = p.strides[1];
    let [_, ph, pw] = p.pads;
    // Padded row length: every tap of every (full) tile in bounds, and the input row itself.
    let len = ((ow.next_multiple_of(TILE).max(TILE) - 1) * SW + kw).max(pw + iw);
    if kh == 0 || kh > 16 || kh * len > DW_BUF || ow == 0 {
        return false;
    }
    // Which input row each ring slot holds.
    let mut held = [usize::MAX; 16];
    for (y, out_row) in dst.chunks_exact_mut(ow).take(oh).enumerate() {
        // Kernel rows landing inside the input: [ky_lo, ky_hi).
        let top = y * sh;
        let ky_lo = ph.saturating_sub(top).min(kh);
        let ky_hi = (ih + ph).saturating_sub(top).min(kh).max(ky_lo);
        for ky in ky_lo..ky_hi {
            let yi = top + ky - ph;
            let slot = yi % kh;
            if held[slot] != yi {
                let row = &mut rows[slot * len..][..len];
                row[..pw].fill(0.0);
                row[pw..pw + iw].copy_from_slice(&src[yi * iw..][..iw]);
                row[pw + iw..].fill(0.0);
                held[slot] = yi;
            }
        }
        let taps = DwTaps {
            rows: &rows[..kh * len],
            len,
            slot: |ky: usize| (top + ky - ph) % kh,
            ky: (ky_lo, ky_hi),
            w,
            kw,
            bias,
        };
        let tiles = ow.div_ceil(TILE);
        let mut t = 0;
        while t + 4 <= tiles {
            taps.tiles::<SW, TILE, 4>(t * TILE, out_row);
            t += 4;
        }
        if t + 2 <= tiles {
            taps.tiles::<SW, TILE, 2>(t * TILE, out_row);
            t += 2;
        }
        if t < tiles {
            taps.tiles::<SW, TILE, 1>(t * TILE, out_row);
        }
    }
    true
}

/// `y += a * x` in fixed chunks of 8, so that short rows (a few dozen pixels) still run as
/// vector operations instead of falling into a scalar remainder loop.
#[inline]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let mut xs = x.chunks_exact(8);
    let mut ys = y.chunks_exact_mut(8);
    for (yc, xc) in (&mut ys).zip(&mut xs) {
        for l in 0..8 {
            yc[l] += a * xc[l];
        }
    }
    for (o, &v) in ys.into_remainder().iter_mut().zip(xs.remainder()) {
        *o += a * v;
    }
}

fn depthwise_plane(p: &ConvParams, src: &[f32], w: &[f32], bias: f32, dst: &mut [f32]) {
    let [id, ih, iw] = p.input;
    let [od, oh, ow] = p.output;
    let [kd, kh, kw] = p.kernel;
    let [sd, sh, sw] = p.strides;
    let [dd, dh, dw] = p.dilations;
    let [pd, ph, pw] = p.pads;
    dst.fill(bias);
    for a in 0..kd {
        for b in 0..kh {
            for c in 0..kw {
                let wv = w[(a * kh + b) * kw + c];
                let offset = c * dw;
                let x_lo = pw.saturating_sub(offset).div_ceil(sw).min(ow);
                let x_hi = if iw + pw > offset {
                    ((iw + pw - offset - 1) / sw + 1).min(ow)
                } else {
                    0
                }
                .max(x_lo);
                if x_lo == x_hi {
                    continue;
                }
                let first = x_lo * sw + offset - pw;
                for z in 0..od {
                    let zi = (z * sd + a * dd).wrapping_sub(pd);
                    if zi >= id {
                        continue;
                    }
                    for y in 0..oh {
                        let yi = (y * sh + b * dh).wrapping_sub(ph);
                        if yi >= ih {
                            continue;
                        }
                        let in_row = &src[(zi * ih + yi) * iw..][..iw];
                        let out_row = &mut dst[(z * oh + y) * ow..][x_lo..x_hi];
                        if sw == 1 {
                            axpy(wv, &in_row[first..first + out_row.len()], out_row);
                        } else {
                            for (k, o) in out_row.iter_mut().enumerate() {
                                *o += wv * in_row[first + k * sw];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The geometry of one transposed convolution, fixed at compile time. Spatial arrays as in
/// [`ConvParams`]; `pads` may be negative (an `output_shape` larger than the full result).
#[derive(Clone, Copy, Debug)]
pub struct ConvTransposeParams {
    /// N.
    pub batch: usize,
    /// C, input channels over all groups.
    pub in_channels: usize,
    /// M, output channels over all groups.
    pub out_channels: usize,
    /// Groups; both channel counts are multiples of it.
    pub groups: usize,
    /// Input spatial sizes.
    pub input: [usize; 3],
    /// Output spatial sizes.
    pub output: [usize; 3],
    /// Kernel spatial sizes.
    pub kernel: [usize; 3],
    /// Strides.
    pub strides: [usize; 3],
    /// Dilations.
    pub dilations: [usize; 3],
    /// Output positions cropped at the start of each axis (negative: blank rows added).
    pub pads: [isize; 3],
}

impl ConvTransposeParams {
    /// Elements of scratch space [`conv_transpose_f32`] needs: the column matrix of one group.
    pub const fn scratch_len(&self) -> usize {
        let k = self.kernel[0] * self.kernel[1] * self.kernel[2];
        let i = self.input[0] * self.input[1] * self.input[2];
        self.out_channels / self.groups * k * i
    }

    /// These parameters for an input of run-time batch and spatial sizes (a model compiled
    /// for bounded dims, without an explicit `output_shape`): each output extent moves by the
    /// stride per input position, the padding staying.
    ///
    /// Fails when an extent is 0 or exceeds the one the model was compiled for (`self`'s).
    pub fn resized(&self, batch: usize, input: [usize; 3]) -> Result<Self, &'static str> {
        let mut p = *self;
        if batch > self.batch || (0..3).any(|i| input[i] > self.input[i] || input[i] == 0) {
            return Err("transposed conv input empty or larger than its compiled bound");
        }
        p.batch = batch;
        p.input = input;
        for (((out, &bound_out), &bound_in), (&stride, &size)) in p
            .output
            .iter_mut()
            .zip(&self.output)
            .zip(&self.input)
            .zip(self.strides.iter().zip(&input))
        {
            *out = bound_out
                .checked_sub(stride * (bound_in - size))
                .ok_or("transposed conv output empty")?;
        }
        Ok(p)
    }
}

/// `out = conv_transpose(x, w) + bias`, with `x: [N, C, *input]`, `w: [C, M/groups, *kernel]`,
/// `bias: [M]`, `out: [N, M, *output]`, and `scratch` at least `p.scratch_len()` long.
pub fn conv_transpose_f32(
    p: &ConvTransposeParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    conv_transpose_f32_exec(
        &crate::threads::Exec::single(),
        p,
        x,
        w,
        bias,
        out,
        scratch,
        &[],
    );
}

/// [`conv_transpose_f32`] with the GEMM and the scatter of output channels split across
/// `exec`'s threads, and `acts` (fused activations) applied in order to each output channel
/// as it is finished.
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, scratch, executor and the fused activations"
)]
pub fn conv_transpose_f32_exec(
    exec: &crate::threads::Exec,
    p: &ConvTransposeParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    scratch: &mut [f32],
    acts: &[crate::epilogue::Activation],
) {
    let cin_g = p.in_channels / p.groups;
    let cout_g = p.out_channels / p.groups;
    let in_len: usize = p.input.iter().product();
    let out_len: usize = p.output.iter().product();
    let k_len: usize = p.kernel.iter().product();
    let rows = cout_g * k_len;
    assert!(
        x.len() >= p.batch * p.in_channels * in_len
            && w.len() >= p.in_channels * rows
            && out.len() >= p.batch * p.out_channels * out_len
            && scratch.len() >= rows * in_len,
        "conv_transpose buffers too short"
    );
    for n in 0..p.batch {
        for g in 0..p.groups {
            let out_group =
                &mut out[(n * p.out_channels + g * cout_g) * out_len..][..cout_g * out_len];
            for (m, row) in out_group.chunks_exact_mut(out_len.max(1)).enumerate() {
                row.fill(bias.map_or(0.0, |b| b[g * cout_g + m]));
            }
            if in_len == 0 || rows == 0 {
                crate::epilogue::Activation::apply_chain(acts, out_group);
                continue;
            }
            // cols[oc * K + k][pixel] = sum_c w[c][oc * K + k] * x[c][pixel]
            let cols = &mut scratch[..rows * in_len];
            gemm_f32_exec(
                exec,
                rows,
                in_len,
                cin_g,
                1.0,
                &w[g * cin_g * rows..],
                Strides {
                    rows: 1,
                    cols: rows,
                },
                &x[(n * p.in_channels + g * cin_g) * in_len..],
                Strides {
                    rows: in_len,
                    cols: 1,
                },
                false,
                cols,
            );
            let cols = &*cols;
            let per_task = cout_g.div_ceil(2 * exec.threads()).max(1);
            exec.for_each_chunk(out_group, per_task * out_len.max(1), &|t, part| {
                col2im_channels(p, cols, part, t * per_task);
                crate::epilogue::Activation::apply_chain(acts, part);
            });
        }
    }
}

/// `Col2Im`: sums the columns `x: [N, C * K, L]` (K kernel taps, L block positions laid out
/// over `p.input`) back into images `out: [N, C, *output]`; `p.out_channels` is C.
pub fn col2im_f32(p: &ConvTransposeParams, x: &[f32], out: &mut [f32]) {
    let k_len: usize = p.kernel.iter().product();
    let blocks: usize = p.input.iter().product();
    let image: usize = p.output.iter().product();
    let (cols, plane) = (p.out_channels * k_len * blocks, p.out_channels * image);
    assert!(
        x.len() >= p.batch * cols && out.len() >= p.batch * plane,
        "col2im buffers too short"
    );
    for n in 0..p.batch {
        let dst = &mut out[n * plane..][..plane];
        dst.fill(0.0);
        if image > 0 && blocks > 0 {
            col2im(p, &x[n * cols..][..cols], dst);
        }
    }
}

/// Scatter-adds the column matrix of one group into its output channels.
fn col2im(p: &ConvTransposeParams, cols: &[f32], out: &mut [f32]) {
    col2im_channels(p, cols, out, 0);
}

/// [`col2im`] for the output channels `out` holds, the first of them `first_channel`.
fn col2im_channels(p: &ConvTransposeParams, cols: &[f32], out: &mut [f32], first_channel: usize) {
    let [id, ih, iw] = p.input;
    let [od, oh, ow] = p.output;
    let [kd, kh, kw] = p.kernel;
    let in_len = id * ih * iw;
    let out_len = od * oh * ow;
    // Output coordinate of input position `i`, kernel tap `k` on `axis`, if inside.
    let pos = |axis: usize, i: usize, k: usize| -> Option<usize> {
        let full = (i * p.strides[axis] + k * p.dilations[axis]) as isize - p.pads[axis];
        usize::try_from(full).ok().filter(|&v| v < p.output[axis])
    };
    let sw = p.strides[2];
    let mut row = first_channel * kd * kh * kw;
    for channel in out.chunks_exact_mut(out_len.max(1)) {
        for a in 0..kd {
            for b in 0..kh {
                for c in 0..kw {
                    let src = &cols[row * in_len..][..in_len];
                    row += 1;
                    // Input columns landing inside the output row: [x_lo, x_hi), the first
                    // at output column `x0`.
                    let Some(x_lo) = (0..iw).find(|&xi| pos(2, xi, c).is_some()) else {
                        continue;
                    };
                    let x_hi = (x_lo..iw).find(|&xi| pos(2, xi, c).is_none()).unwrap_or(iw);
                    let x0 = pos(2, x_lo, c).unwrap_or(0);
                    for z in 0..id {
                        let Some(zo) = pos(0, z, a) else { continue };
                        for y in 0..ih {
                            let Some(yo) = pos(1, y, b) else { continue };
                            let (sbase, obase) = ((z * ih + y) * iw, (zo * oh + yo) * ow);
                            let src_row = &src[sbase + x_lo..sbase + x_hi];
                            let dst = &mut channel[obase + x0..];
                            if sw == 1 {
                                for (o, &v) in dst.iter_mut().zip(src_row) {
                                    *o += v;
                                }
                            } else {
                                for (i, &v) in src_row.iter().enumerate() {
                                    dst[i * sw] += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `ConvInteger`: `out = conv(x - x_zero, w - w_zero[m])` in i32, directly (no im2col), with
/// `x: [N, C, *input]`, `w: [M, C/groups, *kernel]`; `w_zero` holds no value (zero), one, or
/// one per output channel. Padding contributes nothing.
#[allow(
    clippy::too_many_arguments,
    reason = "geometry, operands, zero points and the element conversions"
)]
pub fn conv_integer<X: Copy, W: Copy>(
    p: &ConvParams,
    x: &[X],
    w: &[W],
    x_zero: i32,
    w_zero: &[W],
    out: &mut [i32],
    load_x: impl Fn(X) -> i32,
    load_w: impl Fn(W) -> i32,
) {
    let cin_g = p.in_channels / p.groups;
    let cout_g = p.out_channels / p.groups;
    let [id, ih, iw] = p.input;
    let [od, oh, ow] = p.output;
    let [kd, kh, kw] = p.kernel;
    let (in_len, out_len, k_len) = (id * ih * iw, od * oh * ow, kd * kh * kw);
    assert!(
        x.len() >= p.batch * p.in_channels * in_len
            && w.len() >= p.out_channels * cin_g * k_len
            && out.len() >= p.batch * p.out_channels * out_len,
        "conv_integer buffers too short"
    );
    let coord = |axis: usize, o: usize, k: usize| -> Option<usize> {
        (o * p.strides[axis] + k * p.dilations[axis])
            .checked_sub(p.pads[axis])
            .filter(|&v| v < p.input[axis])
    };
    for n in 0..p.batch {
        for m in 0..p.out_channels {
            let g = m / cout_g.max(1);
            let wz = match w_zero.len() {
                0 => 0,
                1 => load_w(w_zero[0]),
                _ => load_w(w_zero[m]),
            };
            let dst = &mut out[(n * p.out_channels + m) * out_len..][..out_len];
            let mut idx = 0;
            for z in 0..od {
                for y in 0..oh {
                    for xo in 0..ow {
                        let mut acc = 0i32;
                        for c in 0..cin_g {
                            let src = &x[(n * p.in_channels + g * cin_g + c) * in_len..][..in_len];
                            let wk = &w[(m * cin_g + c) * k_len..][..k_len];
                            for a in 0..kd {
                                let Some(zi) = coord(0, z, a) else { continue };
                                for b in 0..kh {
                                    let Some(yi) = coord(1, y, b) else { continue };
                                    for e in 0..kw {
                                        let Some(xi) = coord(2, xo, e) else { continue };
                                        let xv = load_x(src[(zi * ih + yi) * iw + xi]) - x_zero;
                                        let wv = load_w(wk[(a * kh + b) * kw + e]) - wz;
                                        acc = acc.wrapping_add(xv.wrapping_mul(wv));
                                    }
                                }
                            }
                        }
                        dst[idx] = acc;
                        idx += 1;
                    }
                }
            }
        }
    }
}

/// Requantizes i32 accumulators `acc: [N, M, inner]` (QLinearConv): for channel `m`,
/// `store(rint((acc + bias[m]) * x_scale * w_scale[m] / y_scale) + y_zero)`, the multiplier
/// computed in f32; `w_scale` holds one value or one per channel.
#[allow(
    clippy::too_many_arguments,
    reason = "accumulators, bias, the quantization parameters, layout and the store"
)]
pub fn requantize<O>(
    acc: &[i32],
    bias: Option<&[i32]>,
    (x_scale, w_scale, y_scale): (f32, &[f32], f32),
    y_zero: i32,
    out: &mut [O],
    channels: usize,
    inner: usize,
    store: impl Fn(f64) -> O,
) {
    let block = channels * inner;
    if block == 0 {
        return;
    }
    for (a, o) in acc.chunks_exact(block).zip(out.chunks_exact_mut(block)) {
        for m in 0..channels {
            let ws = w_scale[if w_scale.len() == 1 { 0 } else { m }];
            let mult = f64::from(x_scale * ws / y_scale);
            let b = bias.map_or(0, |b| b[m]);
            for (dst, &v) in o[m * inner..][..inner]
                .iter_mut()
                .zip(&a[m * inner..][..inner])
            {
                let r = crate::math64::round_half_even_f64(f64::from(v.wrapping_add(b)) * mult);
                *dst = store(r + f64::from(y_zero));
            }
        }
    }
}

/// The geometry of one 2-D deformable convolution.
#[derive(Clone, Copy, Debug)]
pub struct DeformParams {
    /// N.
    pub batch: usize,
    /// C.
    pub in_channels: usize,
    /// M.
    pub out_channels: usize,
    /// Channel groups of the convolution.
    pub groups: usize,
    /// Channel groups sharing one set of offsets (and mask).
    pub offset_groups: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides.
    pub strides: [usize; 2],
    /// Dilations.
    pub dilations: [usize; 2],
    /// Padding at the start of each axis.
    pub pads: [usize; 2],
}

impl DeformParams {
    /// Elements of scratch space [`deform_conv_f32`] needs: one group's sampled columns.
    pub const fn scratch_len(&self) -> usize {
        self.in_channels / self.groups
            * self.kernel[0]
            * self.kernel[1]
            * self.output[0]
            * self.output[1]
    }
}

/// Bilinear sample of `plane` (`h x w`) at `(y, x)`, each corner outside reading zero.
fn bilinear_zero(plane: &[f32], h: usize, w: usize, y: f64, x: f64) -> f64 {
    let (y0, x0) = (crate::math64::floor_f64(y), crate::math64::floor_f64(x));
    let (ly, lx) = (y - y0, x - x0);
    let at = |yy: f64, xx: f64| -> f64 {
        if yy >= 0.0 && xx >= 0.0 && yy < h as f64 && xx < w as f64 {
            f64::from(plane[yy as usize * w + xx as usize])
        } else {
            0.0
        }
    };
    (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x0 + 1.0))
        + ly * ((1.0 - lx) * at(y0 + 1.0, x0) + lx * at(y0 + 1.0, x0 + 1.0))
}

/// `DeformConv` (2-D): the convolution of `x: [N, C, H, W]` with `w: [M, C/groups, kH, kW]`
/// where each kernel tap samples `x` bilinearly at its position moved by
/// `offset: [N, offset_groups * kH * kW * 2, oH, oW]` (dy, dx pairs) and is scaled by
/// `mask: [N, offset_groups * kH * kW, oH, oW]`; plus `bias`.
#[allow(
    clippy::too_many_arguments,
    reason = "the five ONNX operands, output, scratch and geometry"
)]
pub fn deform_conv_f32(
    p: &DeformParams,
    x: &[f32],
    w: &[f32],
    offset: &[f32],
    bias: Option<&[f32]>,
    mask: Option<&[f32]>,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let [ih, iw] = p.input;
    let [oh, ow] = p.output;
    let [kh, kw] = p.kernel;
    let (in_len, out_len, k_len) = (ih * iw, oh * ow, kh * kw);
    let cin_g = p.in_channels / p.groups;
    let cout_g = p.out_channels / p.groups;
    let per_offset_group = p.in_channels / p.offset_groups.max(1);
    let rows = cin_g * k_len;
    assert!(
        x.len() >= p.batch * p.in_channels * in_len
            && w.len() >= p.out_channels * rows
            && offset.len() >= p.batch * p.offset_groups * k_len * 2 * out_len
            && out.len() >= p.batch * p.out_channels * out_len
            && scratch.len() >= rows * out_len,
        "deform_conv buffers too short"
    );
    for n in 0..p.batch {
        for g in 0..p.groups {
            let cols = &mut scratch[..rows * out_len];
            for cl in 0..cin_g {
                let c = g * cin_g + cl;
                let og = c / per_offset_group.max(1);
                let plane = &x[(n * p.in_channels + c) * in_len..][..in_len];
                for k in 0..k_len {
                    let (ki, kj) = (k / kw, k % kw);
                    let off_base = ((n * p.offset_groups + og) * k_len + k) * 2 * out_len;
                    let mask_base = ((n * p.offset_groups + og) * k_len + k) * out_len;
                    let dst = &mut cols[(cl * k_len + k) * out_len..][..out_len];
                    for i in 0..oh {
                        for j in 0..ow {
                            let pos = i * ow + j;
                            let y = (i * p.strides[0] + ki * p.dilations[0]) as f64
                                - p.pads[0] as f64
                                + f64::from(offset[off_base + pos]);
                            let xx = (j * p.strides[1] + kj * p.dilations[1]) as f64
                                - p.pads[1] as f64
                                + f64::from(offset[off_base + out_len + pos]);
                            let m = mask.map_or(1.0, |m| f64::from(m[mask_base + pos]));
                            dst[pos] = (m * bilinear_zero(plane, ih, iw, y, xx)) as f32;
                        }
                    }
                }
            }
            let out_group =
                &mut out[(n * p.out_channels + g * cout_g) * out_len..][..cout_g * out_len];
            if let Some(b) = bias {
                for (m, row) in out_group.chunks_exact_mut(out_len.max(1)).enumerate() {
                    row.fill(b[g * cout_g + m]);
                }
            }
            gemm_f32(
                cout_g,
                out_len,
                rows,
                1.0,
                &w[g * cout_g * rows..],
                Strides { rows, cols: 1 },
                cols,
                Strides {
                    rows: out_len,
                    cols: 1,
                },
                bias.is_some(),
                out_group,
            );
        }
    }
}

/// The layout of one causal depthwise convolution with carried state.
#[derive(Clone, Copy, Debug)]
pub struct CausalConvParams {
    /// B.
    pub batch: usize,
    /// C (one filter per channel).
    pub channels: usize,
    /// Input length.
    pub len: usize,
    /// Kernel length K; the state holds the last K - 1 inputs.
    pub kernel: usize,
    /// Apply SiLU (`v * sigmoid(v)`) to the output.
    pub silu: bool,
}

/// `CausalConvWithState`: `out[b, c, i] = bias[c] + sum_k w[c, k] * p[b, c, i + k]` over
/// the input `x: [B, C, L]` prefixed by `past: [B, C, K - 1]` (zeros if absent), optionally
/// SiLU-activated (after rounding to the element type, as the reference does); `present`
/// receives the last K - 1 positions of that prefixed input.
#[allow(
    clippy::too_many_arguments,
    reason = "the four ONNX operands, two outputs and the element conversions"
)]
pub fn causal_conv_with_state<T: Copy>(
    p: &CausalConvParams,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    past: Option<&[T]>,
    out: &mut [T],
    present: Option<&mut [T]>,
    load: impl Fn(T) -> f64,
    store: impl Fn(f64) -> T,
) {
    let (l, k) = (p.len, p.kernel);
    let state = k.saturating_sub(1);
    let padded = |b: usize, c: usize, t: usize| -> f64 {
        if t < state {
            past.map_or(0.0, |s| load(s[(b * p.channels + c) * state + t]))
        } else {
            load(x[(b * p.channels + c) * l + t - state])
        }
    };
    for b in 0..p.batch {
        for c in 0..p.channels {
            let wc = &w[c * k..][..k];
            for i in 0..l {
                let mut v = bias.map_or(0.0, |bv| load(bv[c]));
                for (j, &wv) in wc.iter().enumerate() {
                    v += load(wv) * padded(b, c, i + j);
                }
                if p.silu {
                    let r = load(store(v));
                    v = r / (1.0 + crate::math64::exp_f64(-r));
                }
                out[(b * p.channels + c) * l + i] = store(v);
            }
        }
    }
    if let Some(present) = present {
        for b in 0..p.batch {
            for c in 0..p.channels {
                for j in 0..state {
                    present[(b * p.channels + c) * state + j] = store(padded(b, c, l + j));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// `w: [M, C/groups, *kernel]` in the layout of [`ConvParams::packed_weights`].
    fn pack_weights(p: &ConvParams, w: &[f32]) -> Vec<f32> {
        let cout_g = p.out_channels / p.groups;
        let k = w.len() / p.out_channels;
        let panels = cout_g.div_ceil(8);
        let mut out = std::vec![0.0; p.groups * panels * 8 * k];
        for g in 0..p.groups {
            for i in 0..cout_g {
                for q in 0..k {
                    out[((g * panels + i / 8) * k + q) * 8 + i % 8] = w[(g * cout_g + i) * k + q];
                }
            }
        }
        out
    }

    /// Direct 2-D convolution, the reference.
    fn reference(p: &ConvParams, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let cin_g = p.in_channels / p.groups;
        let cout_g = p.out_channels / p.groups;
        let [_, ih, iw] = p.input;
        let [_, oh, ow] = p.output;
        let [_, kh, kw] = p.kernel;
        let mut out = std::vec![0.0f32; p.batch * p.out_channels * oh * ow];
        for n in 0..p.batch {
            for m in 0..p.out_channels {
                let g = m / cout_g;
                for y in 0..oh {
                    for xo in 0..ow {
                        let mut s = bias[m];
                        for c in 0..cin_g {
                            for a in 0..kh {
                                for b in 0..kw {
                                    let yi = (y * p.strides[1] + a * p.dilations[1]) as isize
                                        - p.pads[1] as isize;
                                    let xi = (xo * p.strides[2] + b * p.dilations[2]) as isize
                                        - p.pads[2] as isize;
                                    if yi >= 0
                                        && xi >= 0
                                        && (yi as usize) < ih
                                        && (xi as usize) < iw
                                    {
                                        let xv = x[((n * p.in_channels + g * cin_g + c) * ih
                                            + yi as usize)
                                            * iw
                                            + xi as usize];
                                        let wv = w[((m * cin_g + c) * kh + a) * kw + b];
                                        s += xv * wv;
                                    }
                                }
                            }
                        }
                        out[((n * p.out_channels + m) * oh + y) * ow + xo] = s;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn conv_transpose_1d_matches_direct_reference() {
        // x: [1, 2, 3], w: [2, 1, 2] (groups 1, M = 1), stride 2, pad 1 at the start.
        let p = ConvTransposeParams {
            batch: 1,
            in_channels: 2,
            out_channels: 1,
            groups: 1,
            input: [3, 1, 1],
            output: [5, 1, 1],
            kernel: [2, 1, 1],
            strides: [2, 1, 1],
            dilations: [1, 1, 1],
            pads: [1, 0, 0],
        };
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [1.0f32, 10.0, 100.0, 1000.0];
        let mut full = [0.0f32; 6];
        for c in 0..2 {
            for i in 0..3 {
                for k in 0..2 {
                    full[i * 2 + k] += x[c * 3 + i] * w[c * 2 + k];
                }
            }
        }
        let mut out = [0.0f32; 5];
        let mut scratch = std::vec![0.0f32; p.scratch_len()];
        conv_transpose_f32(&p, &x, &w, Some(&[0.5]), &mut out, &mut scratch);
        for (o, f) in out.iter().zip(&full[1..]) {
            assert_eq!(*o, f + 0.5);
        }
        // Fused activations apply after the bias, in order.
        let mut fused = [0.0f32; 5];
        let acts = [
            crate::epilogue::Activation::Relu,
            crate::epilogue::Activation::Affine(2.0, -1.0),
        ];
        conv_transpose_f32_exec(
            &crate::threads::Exec::single(),
            &p,
            &x,
            &w,
            Some(&[0.5]),
            &mut fused,
            &mut scratch,
            &acts,
        );
        for (v, o) in fused.iter().zip(&out) {
            assert_eq!(*v, 2.0 * o.max(0.0) - 1.0);
        }
    }

    #[test]
    fn col2im_and_zero_offset_deform_conv() {
        // Non-overlapping 1x2 blocks of a 1x4 image: col2im just places them.
        let p = ConvTransposeParams {
            batch: 1,
            in_channels: 1,
            out_channels: 1,
            groups: 1,
            input: [1, 2, 1],
            output: [1, 4, 1],
            kernel: [1, 2, 1],
            strides: [1, 2, 1],
            dilations: [1, 1, 1],
            pads: [0, 0, 0],
        };
        // cols[k][block]: tap 0 of blocks 0, 1, then tap 1.
        let mut img = [0.0f32; 4];
        col2im_f32(&p, &[1.0, 3.0, 2.0, 4.0], &mut img);
        assert_eq!(img, [1.0, 2.0, 3.0, 4.0]);
        // Deformable convolution with zero offsets and unit mask is a plain convolution.
        let d = DeformParams {
            batch: 1,
            in_channels: 1,
            out_channels: 1,
            groups: 1,
            offset_groups: 1,
            input: [2, 2],
            output: [1, 1],
            kernel: [2, 2],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [0, 0],
        };
        let mut out = [0.0f32];
        let mut scratch = std::vec![0.0f32; d.scratch_len()];
        deform_conv_f32(
            &d,
            &[1.0, 2.0, 3.0, 4.0],
            &[1.0, 1.0, 1.0, 2.0],
            &[0.0; 8],
            Some(&[0.5]),
            None,
            &mut out,
            &mut scratch,
        );
        assert_eq!(out, [14.5]);
    }

    #[test]
    fn conv_integer_subtracts_zero_points() {
        let p = ConvParams {
            batch: 1,
            in_channels: 1,
            out_channels: 1,
            groups: 1,
            input: [3, 1, 1],
            output: [3, 1, 1],
            kernel: [3, 1, 1],
            strides: [1, 1, 1],
            dilations: [1, 1, 1],
            pads: [1, 0, 0],
            packed_weights: false,
        };
        let x = [11u8, 12, 13];
        let w = [1u8, 2, 3];
        let mut out = [0i32; 3];
        conv_integer(&p, &x, &w, 10, &[1u8], &mut out, i32::from, i32::from);
        // x - 10 = [1, 2, 3], w - 1 = [0, 1, 2]; padding adds nothing.
        assert_eq!(out, [5, 8, 3]);
    }

    #[test]
    fn one_dimensional_conv_over_few_pixels_matches_reference() {
        // (cin, cout, length, kernel, stride, pad): the narrow path's 1-D column gather,
        // padding on both ends, strides 1 to 3.
        for &(cin, cout, len, k, s, pad) in
            &[(5, 7, 6, 3, 1, 1), (3, 4, 9, 4, 2, 2), (1, 9, 20, 8, 3, 0)]
        {
            let out_len = (len + 2 * pad - k) / s + 1;
            let p = ConvParams {
                batch: 1,
                in_channels: cin,
                out_channels: cout,
                groups: 1,
                input: [1, 1, len],
                output: [1, 1, out_len],
                kernel: [1, 1, k],
                strides: [1, 1, s],
                dilations: [1, 1, 1],
                pads: [0, 0, pad],
                packed_weights: false,
            };
            let x: Vec<f32> = (0..cin * len)
                .map(|i| ((i * 7 % 17) as f32 - 8.0) * 0.125)
                .collect();
            let w: Vec<f32> = (0..cout * cin * k)
                .map(|i| ((i * 3 % 7) as f32 - 3.0) * 0.25)
                .collect();
            let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.5).collect();
            let want = reference(&p, &x, &w, &bias);
            let mut out = std::vec![f32::NAN; want.len()];
            conv_f32(&p, &x, &w, Some(&bias), &mut out);
            for (a, b) in out.iter().zip(&want) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{a} vs {b} ({cin}, {cout}, {len}, {k}, {s}, {pad})"
                );
            }
        }
    }

    #[test]
    fn conv_matches_direct_reference() {
        conv_cases_match_direct_reference();
    }

    /// The same cases on the paths CPUs without AVX-512 take.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri no CPU feature is detected: the same paths as the test above"
    )]
    fn conv_matches_direct_reference_without_avx512() {
        crate::gemm_x86_64::without_avx512(conv_cases_match_direct_reference);
    }

    fn conv_cases_match_direct_reference() {
        // (groups, cin, cout, in, kernel, stride, dilation, pad)
        let cases = [
            (1, 3, 4, 7, 3, 1, 1, 1),
            (2, 4, 6, 6, 3, 2, 1, 0),
            (3, 3, 3, 5, 3, 1, 2, 2),
            (1, 5, 2, 4, 1, 1, 1, 0),
            // A handful of output pixels: the stack im2col and the narrow GEMM path.
            (1, 6, 10, 2, 3, 1, 1, 1),
            (1, 5, 3, 3, 3, 2, 1, 0),
            // Big enough for the GEMM to split its columns across threads.
            (1, 16, 32, 40, 3, 1, 1, 1),
            (2, 8, 64, 33, 3, 2, 1, 1),
            // Depthwise: the AVX-512 plane kernel or the register-tiled row kernel (rows
            // wider than a tile, both strides, 3x3 and 5x5) and the general one (dilation).
            (4, 4, 4, 37, 3, 1, 1, 1),
            (3, 3, 3, 40, 3, 2, 1, 1),
            (2, 2, 2, 41, 5, 2, 1, 2),
            (2, 2, 2, 23, 5, 1, 1, 2),
            (2, 2, 2, 7, 3, 1, 1, 1),
            (2, 2, 2, 70, 5, 1, 1, 2),
            (2, 2, 2, 13, 3, 2, 1, 1),
            (2, 2, 2, 9, 3, 1, 2, 2),
            // Dense on the direct kernel: rows of 3 + 1 vectors (one-vector tiles over three
            // rows), a 7x7 stride-2 stem, a 5x5 kernel with channels in two panels.
            (1, 4, 12, 56, 3, 1, 1, 1),
            (1, 3, 8, 30, 7, 2, 1, 3),
            (1, 4, 17, 20, 5, 1, 1, 2),
            // Many output channels on a small plane: packed weights stay on the blocked GEMM.
            (1, 8, 64, 9, 3, 1, 1, 1),
            // Wide planes: many vectors per row, and padding on every side.
            (2, 2, 2, 130, 3, 1, 1, 1),
            (2, 2, 2, 131, 3, 2, 1, 1),
        ];
        for &(groups, cin, cout, size, k, s, d, pad) in &cases {
            let out_size = (size + 2 * pad - d * (k - 1) - 1) / s + 1;
            // Under Miri (some thousand times slower) only the cases of at most 5 000
            // multiply-adds (small, narrow and depthwise ones).
            if cfg!(miri) && 2 * cout * out_size * out_size * (cin / groups) * k * k > 5_000 {
                continue;
            }
            let p = ConvParams {
                batch: 2,
                in_channels: cin,
                out_channels: cout,
                groups,
                input: [1, size, size],
                output: [1, out_size, out_size],
                kernel: [1, k, k],
                strides: [1, s, s],
                dilations: [1, d, d],
                pads: [0, pad, pad],
                packed_weights: false,
            };
            let x: Vec<f32> = (0..2 * cin * size * size)
                .map(|i| ((i * 7 % 17) as f32 - 8.0) * 0.125)
                .collect();
            let w: Vec<f32> = (0..cout * cin / groups * k * k)
                .map(|i| ((i * 3 % 7) as f32 - 3.0) * 0.25)
                .collect();
            let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.5).collect();
            let want = reference(&p, &x, &w, &bias);
            let mut out = std::vec![0.0; want.len()];
            conv_f32(&p, &x, &w, Some(&bias), &mut out);
            #[cfg(feature = "std")]
            {
                let mut parallel = std::vec![0.0; want.len()];
                // A residual added before the Relu, as a fused skip connection.
                let residual: std::vec::Vec<f32> =
                    (0..want.len()).map(|i| (i % 5) as f32 - 2.0).collect();
                conv_f32_exec(
                    &crate::threads::Exec::with_threads(2),
                    &p,
                    &x,
                    &w,
                    Some(&bias),
                    Some(&residual),
                    &mut parallel,
                    &[crate::epilogue::Activation::Relu],
                );
                let relu: std::vec::Vec<f32> = out
                    .iter()
                    .zip(&residual)
                    .map(|(&v, &r)| (v + r).max(0.0))
                    .collect();
                assert_eq!(
                    relu, parallel,
                    "threads, the fused residual and the fused Relu change nothing else"
                );
            }
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
            // The same with the weights packed as the compiler packs constant ones.
            let packed_params = ConvParams {
                packed_weights: true,
                ..p
            };
            let packed = pack_weights(&packed_params, &w);
            assert_eq!(packed.len(), packed_params.weights_len());
            let mut from_packed = std::vec![0.0; want.len()];
            conv_f32(&packed_params, &x, &packed, Some(&bias), &mut from_packed);
            assert_eq!(from_packed, out, "packed weights change nothing");
            #[cfg(feature = "std")]
            {
                // Threads, a residual and an activation chain that leaves registers at the
                // Sigmoid, on packed weights.
                let residual: Vec<f32> = (0..want.len()).map(|i| (i % 5) as f32 - 2.0).collect();
                let acts = [
                    crate::epilogue::Activation::Relu,
                    crate::epilogue::Activation::Sigmoid,
                ];
                let mut fused = std::vec![0.0; want.len()];
                conv_f32_exec(
                    &crate::threads::Exec::with_threads(2),
                    &packed_params,
                    &x,
                    &packed,
                    Some(&bias),
                    Some(&residual),
                    &mut fused,
                    &acts,
                );
                let expected: Vec<f32> = out
                    .iter()
                    .zip(&residual)
                    .map(|(&v, &r)| acts[1].apply(acts[0].apply(v + r)))
                    .collect();
                assert_eq!(fused, expected, "packed, threads, residual and activations");
            }
        }
    }
}
