//! 3x3 stride-1 convolution channels last by Winograd's minimal filtering, F(T x T, 3x3) for
//! an output tile of `T = 2` or `T = 4` pixels a side: each T x T block of output pixels takes
//! `(T + 2)²` multiplies per input channel and output channel where the direct product takes
//! `9 T²`: 16 for 36 at T = 2, 36 for 144 at T = 4.
//!
//! With `x` channels last (`[N, H, W, C]`), the layer runs in three passes, each vectorized over
//! channels:
//! 1. every `(T + 2)²` input patch `d` (stride T, from the zero-padded image) becomes
//!    `V = Bᵀ d B`, stored as `(T + 2)²` matrices `V[ξ]` of `tiles x C`;
//! 2. as many products `M[ξ] = V[ξ] U[ξ]` with the weights transformed at compile time,
//!    `U = G g Gᵀ` (`C x M` each, packed as the channels-last kernel's column panels), on the
//!    same microkernel as [`crate::conv_nhwc`];
//! 3. every tile's `Aᵀ M A` is its T x T output block, with the bias, residual and activations.
//!
//! The transforms of F(2x2, 3x3) hold only 0, ±1 and ±1/2, so the results stay within a few
//! ulps of the direct convolution's. Those of F(4x4, 3x3) hold up to 8 and down to 1/24
//! (Lavin and Gray's matrices), whose intermediate sums can be much larger than the result:
//! its rounding is bounded by epsilon times those sums' magnitudes (the tests check that
//! first-order bound), tens of epsilons of the result's magnitude where F(2x2, 3x3) stays
//! within a few. The compiler takes it for the layers with many tiles, where its 2.25x fewer
//! multiplies than F(2x2, 3x3) pay for the larger transforms and weights.

use crate::conv::ConvParams;
use crate::conv_nhwc::PANEL;
use crate::epilogue::Activation;
use crate::threads::{Exec, SharedMut};

/// Transformed positions per tile of F(T x T, 3x3): `(T + 2)²`.
const fn positions(t: usize) -> usize {
    (t + 2) * (t + 2)
}

/// The most positions of a tile (T = 4).
const MAX_POSITIONS: usize = 36;

/// Whether `T` is an output tile side this module runs: 2 or 4.
const fn tile_supported(t: usize) -> bool {
    t == 2 || t == 4
}

/// Channels per step of the transforms.
const LANES: usize = 16;

/// Tiles of one block of the product pass.
const BLOCK_TILES: usize = 96;

/// Whether `p` is a convolution this kernel runs: one group, 2-D, 3x3, stride 1, no
/// dilation.
pub fn winograd_supported(p: &ConvParams) -> bool {
    p.groups == 1
        && p.kernel == [1, 3, 3]
        && p.strides == [1, 1, 1]
        && p.dilations == [1, 1, 1]
        && p.input[0] == 1
        && p.pads[0] == 0
        && p.output[1] > 0
        && p.output[2] > 0
}

/// Tiles of `T x T` output pixels down and across one image.
fn tiles<const T: usize>(p: &ConvParams) -> (usize, usize) {
    (p.output[1].div_ceil(T), p.output[2].div_ceil(T))
}

/// Rows and columns of the zero-padded image the `(T + 2)²` patches are read from.
fn padded_dims<const T: usize>(p: &ConvParams) -> (usize, usize) {
    let (ty, tx) = tiles::<T>(p);
    (T * ty + 2, T * tx + 2)
}

/// Floats of the transformed weights of F(T x T, 3x3) (`T` is 2 or 4): `(T + 2)²` positions of
/// `ceil(M / 16)` column panels of `C x 16` (position `ξ = (T + 2) i + j` of `G g Gᵀ`, zero
/// past `M`).
pub fn winograd_weights_len<const T: usize>(p: &ConvParams) -> usize {
    positions(T) * p.out_channels.div_ceil(PANEL) * PANEL * p.in_channels
}

/// Transformed weights up to which a layer runs fused: each task takes a group of
/// [`FUSED_TILES`] tiles through all three passes while the weights stay in its core's L2, so
/// the transformed tiles never leave the core that made them.
const FUSED_MAX_WEIGHT_BYTES: usize = 512 << 10;

/// Tiles of one fused group.
const FUSED_TILES: usize = 16;

/// Whether the layer runs fused (see [`FUSED_MAX_WEIGHT_BYTES`]).
fn fused<const T: usize>(p: &ConvParams) -> bool {
    positions(T) * p.in_channels * p.out_channels * 4 <= FUSED_MAX_WEIGHT_BYTES
}

/// Tiles per group of the working memory: [`FUSED_TILES`] for a fused layer, else all of them
/// (each pass over every tile, so that each product reads its weights once per block of
/// [`BLOCK_TILES`]).
fn group_tiles<const T: usize>(p: &ConvParams) -> usize {
    let (ty, tx) = tiles::<T>(p);
    let n_tiles = p.batch * ty * tx;
    if fused::<T>(p) {
        FUSED_TILES.min(n_tiles).max(1)
    } else {
        n_tiles.max(1)
    }
}

/// Floats of working memory [`conv_winograd_f32_exec`] needs for F(T x T, 3x3): the padded
/// input, then the transformed input and output, `(T + 2)²` positions by `C` and by `M` per
/// tile (tiles rounded up to whole groups).
pub fn winograd_scratch_len<const T: usize>(p: &ConvParams) -> usize {
    let (ty, tx) = tiles::<T>(p);
    let (ph, pw) = padded_dims::<T>(p);
    let tiles = (p.batch * ty * tx).next_multiple_of(group_tiles::<T>(p));
    p.batch * ph * pw * p.in_channels + positions(T) * tiles * (p.in_channels + p.out_channels)
}

/// Where a tile's transformed positions lie in working memory: groups of `group` tiles, each
/// holding its `positions` positions one after the other, `group` rows of `width` floats each.
#[derive(Clone, Copy)]
struct Layout {
    group: usize,
    width: usize,
    positions: usize,
}

impl Layout {
    /// The first float of position `k` of tile `t`.
    fn at(self, k: usize, t: usize) -> usize {
        ((t / self.group * self.positions + k) * self.group + t % self.group) * self.width
    }
}

/// `out = acts(conv(x, w) + bias + residual)` for a 3x3 stride-1 convolution channels last
/// by F(T x T, 3x3), `T` 2 or 4 (see the module doc): `x: [N, H, W, C]`, `w` transformed as
/// [`winograd_weights_len`] says, `bias: [M]`, `residual` and `out: [N, OH, OW, M]`, on
/// `exec`'s threads; `scratch` holds [`winograd_scratch_len`] floats.
///
/// Panics if a buffer is too short, `p` is not [`winograd_supported`] or `T` is neither 2
/// nor 4.
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, a fused residual, working memory and the fused activations"
)]
pub fn conv_winograd_f32_exec<const T: usize>(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    scratch: &mut [f32],
    out: &mut [f32],
    acts: &[Activation],
) {
    let m = p.out_channels;
    winograd::<T>(
        exec,
        p,
        x,
        w,
        bias,
        crate::conv_nhwc::Residual::from(residual),
        scratch,
        (out, m, 0),
        acts,
    );
}

/// [`conv_winograd_f32_exec`] with the residual in the output buffer: `out = acts(conv(x, w) +
/// bias + out)`, a residual that dies at the layer updated where it lies.
///
/// Panics as [`conv_winograd_f32_exec`] does.
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, working memory and the fused activations"
)]
pub fn conv_winograd_accumulate_f32_exec<const T: usize>(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    scratch: &mut [f32],
    out: &mut [f32],
    acts: &[Activation],
) {
    let m = p.out_channels;
    winograd::<T>(
        exec,
        p,
        x,
        w,
        bias,
        crate::conv_nhwc::Residual::InOutput,
        scratch,
        (out, m, 0),
        acts,
    );
}

/// [`conv_winograd_f32_exec`] writing its `M` channels into a wider channels-last output:
/// pixel `q`'s channel `j` at `out[q * ld + offset + j]`, the other floats of each row
/// untouched (the inputs of a channels-last Concat over the channels, each written in place).
/// No residual: it would be read with the same stride.
///
/// Panics if a buffer is too short, `offset + M > ld`, `p` is not [`winograd_supported`] or
/// `T` is neither 2 nor 4.
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, working memory, the output's layout and the fused activations"
)]
pub fn conv_winograd_into_f32_exec<const T: usize>(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    scratch: &mut [f32],
    out: (&mut [f32], usize, usize),
    acts: &[Activation],
) {
    let none = crate::conv_nhwc::Residual::None;
    winograd::<T>(exec, p, x, w, bias, none, scratch, out, acts);
}

/// [`conv_winograd_f32_exec`] writing pixel `q`'s channel `j` at
/// `out.0[q * out.1 + out.2 + j]`.
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, a fused residual, working memory, the output's layout and the \
              fused activations"
)]
fn winograd<const T: usize>(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: crate::conv_nhwc::Residual<'_>,
    scratch: &mut [f32],
    (out, ld, offset): (&mut [f32], usize, usize),
    acts: &[Activation],
) {
    assert!(
        winograd_supported(p),
        "Winograd conv: 2-D 3x3, stride 1, one group"
    );
    assert!(tile_supported(T), "Winograd conv: output tiles of 2 or 4");
    let (c, m) = (p.in_channels, p.out_channels);
    let (ty, tx) = tiles::<T>(p);
    let (ph, pw) = padded_dims::<T>(p);
    let n_pos = positions(T);
    let n_tiles = p.batch * ty * tx;
    let pixels = p.batch * p.output[1] * p.output[2];
    let out_len = pixels * m;
    let span = crate::conv_nhwc::strided_span(pixels, m, ld, offset);
    assert!(
        matches!(residual, crate::conv_nhwc::Residual::None) || (ld == m && offset == 0),
        "Winograd conv: a residual needs a dense output"
    );
    assert!(
        x.len() >= p.batch * p.input_len() * c,
        "Winograd conv: input too short"
    );
    assert!(
        w.len() >= winograd_weights_len::<T>(p),
        "Winograd conv: weights too short"
    );
    assert!(out.len() >= span, "Winograd conv: output too short");
    assert!(
        scratch.len() >= winograd_scratch_len::<T>(p),
        "Winograd conv: working memory too short"
    );
    if let Some(bias) = bias {
        assert!(bias.len() >= m, "Winograd conv: bias too short");
    }
    if let Some(residual) = residual.separate() {
        assert!(
            residual.len() >= out_len,
            "Winograd conv: residual too short"
        );
    }
    if c == 0 || m == 0 || n_tiles == 0 {
        return;
    }
    let group = group_tiles::<T>(p);
    let padded_tiles = n_tiles.next_multiple_of(group);
    let (padded, rest) = scratch.split_at_mut(p.batch * ph * pw * c);
    let (v, rest) = rest.split_at_mut(n_pos * padded_tiles * c);
    let mt = &mut rest[..n_pos * padded_tiles * m];
    crate::conv_nhwc::pad_input(exec, p, x, false, [1, ph, pw], padded);
    let layer = Layer::<T> {
        p,
        padded,
        w,
        v: SharedMut::new(v),
        mt: SharedMut::new(mt),
        vl: Layout {
            group,
            width: c,
            positions: n_pos,
        },
        ml: Layout {
            group,
            width: m,
            positions: n_pos,
        },
        ops: crate::conv_nhwc::Operands {
            w: &[],
            bias,
            residual,
            acts,
        },
        out: SharedMut::new(&mut out[..span]),
        ld,
        offset,
        avx512: crate::conv_nhwc::avx512(),
    };
    let threads = exec.threads();
    if fused::<T>(p) {
        // Fused: each task takes whole groups through the three passes.
        let groups = n_tiles.div_ceil(group);
        let per_task = groups.div_ceil(4 * threads).max(1);
        exec.for_each(groups.div_ceil(per_task), &|task| {
            for g in task * per_task..((task + 1) * per_task).min(groups) {
                let tiles = g * group..((g + 1) * group).min(n_tiles);
                layer.input(tiles.clone());
                for k in 0..n_pos {
                    layer.product(k, tiles.clone());
                }
                layer.output(tiles);
            }
        });
    } else {
        // Pass by pass over every tile: the products read their weights once per block.
        let per_task = n_tiles.div_ceil(4 * threads).max(1);
        let tasks = n_tiles.div_ceil(per_task);
        let chunk = |task: usize| task * per_task..((task + 1) * per_task).min(n_tiles);
        exec.for_each(tasks, &|task| layer.input(chunk(task)));
        let blocks = n_tiles.div_ceil(BLOCK_TILES);
        let units = n_pos * blocks;
        let per_unit = if threads == 1 {
            units
        } else {
            units.div_ceil(4 * threads).max(1)
        };
        exec.for_each(units.div_ceil(per_unit), &|task| {
            for unit in task * per_unit..((task + 1) * per_unit).min(units) {
                let (k, b) = (unit / blocks, unit % blocks);
                layer.product(k, b * BLOCK_TILES..((b + 1) * BLOCK_TILES).min(n_tiles));
            }
        });
        exec.for_each(tasks, &|task| layer.output(chunk(task)));
    }
    if layer.avx512 && !acts.iter().all(crate::gemm::Finish::in_register) {
        for row in out[..span].chunks_mut(ld) {
            Activation::apply_chain(acts, &mut row[offset..offset + m]);
        }
    }
}

/// One layer's operands and working memory, shared by the tasks of its passes; F(T x T, 3x3).
struct Layer<'a, const T: usize> {
    p: &'a ConvParams,
    padded: &'a [f32],
    w: &'a [f32],
    /// The transformed input and output, laid out as `vl` and `ml` say.
    v: SharedMut<'a, f32>,
    mt: SharedMut<'a, f32>,
    vl: Layout,
    ml: Layout,
    /// The epilogue's operands (the weights are `w`).
    ops: crate::conv_nhwc::Operands<'a>,
    out: SharedMut<'a, f32>,
    /// Floats between output pixels, and the offset of channel 0 in each.
    ld: usize,
    offset: usize,
    avx512: bool,
}

impl<const T: usize> Layer<'_, T> {
    /// The tile's image, row and column of tiles.
    fn tile(&self, t: usize) -> (usize, usize, usize) {
        let (ty, tx) = tiles::<T>(self.p);
        let (n, rem) = (t / (ty * tx), t % (ty * tx));
        (n, rem / tx, rem % tx)
    }

    /// Pass 1 for `tiles`: their `(T + 2)²` patches' `Bᵀ d B`.
    fn input(&self, tiles: core::ops::Range<usize>) {
        let c = self.p.in_channels;
        let (ph, pw) = padded_dims::<T>(self.p);
        let (side, n_pos) = (T + 2, positions(T));
        for t in tiles {
            let (n, y, xx) = self.tile(t);
            let origin = ((n * ph + T * y) * pw + T * xx) * c;
            #[cfg(target_arch = "x86_64")]
            if self.avx512 {
                for c0 in (0..c).step_by(LANES) {
                    let mask = crate::gemm_x86_64::lanes(c - c0);
                    let first = self.vl.at(0, t) + c0;
                    let dst = self
                        .v
                        .span_ptr(first, self.vl.at(n_pos - 1, t) + c0 + 1 - first);
                    let src = self.padded[origin + c0..].as_ptr();
                    let position = self.vl.group * c;
                    // SAFETY: AVX-512F is present; the patch lies in the padded image, and
                    // tile t's positions, channels c0.. (masked to c), are this task's alone.
                    unsafe {
                        if T == 2 {
                            crate::conv_x86_64::winograd_input(src, pw * c, c, dst, position, mask);
                        } else {
                            crate::conv_x86_64::winograd4_input(
                                src,
                                pw * c,
                                c,
                                dst,
                                position,
                                mask,
                            );
                        }
                    }
                }
                continue;
            }
            for c0 in (0..c).step_by(LANES) {
                let width = LANES.min(c - c0);
                let mut d = [[0f32; LANES]; MAX_POSITIONS];
                for (k, dk) in d.iter_mut().enumerate().take(n_pos) {
                    let at = origin + ((k / side) * pw + k % side) * c + c0;
                    dk[..width].copy_from_slice(&self.padded[at..at + width]);
                }
                for (k, vk) in input_transform::<T>(&d).iter().enumerate().take(n_pos) {
                    // SAFETY: position k of tile t, channels c0.., this task's alone.
                    let dst = unsafe { self.v.slice(self.vl.at(k, t) + c0, width) };
                    dst.copy_from_slice(&vk[..width]);
                }
            }
        }
    }

    /// Pass 2 for position `k` of `tiles` (consecutive rows of one group).
    fn product(&self, k: usize, tiles: core::ops::Range<usize>) {
        let (c, m) = (self.p.in_channels, self.p.out_channels);
        let rows = tiles.len();
        let u_len = m.div_ceil(PANEL) * PANEL * c;
        let first = self.vl.at(k, tiles.start);
        // SAFETY: pass 1 wrote these rows and nothing writes them during pass 2.
        let a = unsafe { core::slice::from_raw_parts(self.v.span_ptr(first, rows * c), rows * c) };
        let u = &self.w[k * u_len..][..u_len];
        product(a, rows, c, u, m, &self.mt, self.ml.at(k, tiles.start));
    }

    /// Pass 3 for `tiles`: `Aᵀ M A`, with the epilogue.
    fn output(&self, tiles: core::ops::Range<usize>) {
        let m = self.p.out_channels;
        let n_pos = positions(T);
        let (oh, ow) = (self.p.output[1], self.p.output[2]);
        let in_register = self.ops.acts.iter().all(crate::gemm::Finish::in_register);
        for t in tiles {
            let (n, y, xx) = self.tile(t);
            let first = self.ml.at(0, t);
            let span = self.ml.at(n_pos - 1, t) + m - first;
            // SAFETY: pass 2 wrote tile t's positions and nothing writes them during pass 3.
            let mt = unsafe { core::slice::from_raw_parts(self.mt.span_ptr(first, span), span) };
            let position = self.ml.group * m;
            #[cfg(target_arch = "x86_64")]
            if self.avx512 {
                let acts = if in_register { self.ops.acts } else { &[] };
                for m0 in (0..m).step_by(LANES) {
                    let mask = crate::gemm_x86_64::lanes(m - m0);
                    let mut outs = [core::ptr::null_mut(); 16];
                    let mut res = [core::ptr::null(); 16];
                    let pixels = outs.iter_mut().zip(&mut res).take(T * T);
                    for (q, (o, r)) in pixels.enumerate() {
                        let (oy, ox) = (T * y + q / T, T * xx + q % T);
                        if oy < oh && ox < ow {
                            let at = ((n * oh + oy) * ow + ox) * self.ld + self.offset + m0;
                            *o = self.out.span_ptr(at, (m - m0).min(LANES));
                            if let Some(residual) = self.ops.residual_at(at, *o) {
                                *r = residual;
                            }
                        }
                    }
                    // SAFETY: the bias holds `m` floats; the lanes of `mask` stop there.
                    let b = self.ops.bias.map(|b| unsafe {
                        core::arch::x86_64::_mm512_maskz_loadu_ps(mask, b[m0..].as_ptr())
                    });
                    let src = mt[m0..].as_ptr();
                    // SAFETY: AVX-512F is present; tile t's positions, channels m0.. (masked
                    // to m), lie in `mt`; its outputs are this task's alone.
                    unsafe {
                        if T == 2 {
                            crate::conv_x86_64::winograd_output(
                                src, position, mask, outs, res, b, acts,
                            );
                        } else {
                            crate::conv_x86_64::winograd4_output(
                                src, position, mask, outs, res, b, acts,
                            );
                        }
                    }
                }
                continue;
            }
            for m0 in (0..m).step_by(LANES) {
                let width = LANES.min(m - m0);
                let mut s = [[0f32; LANES]; MAX_POSITIONS];
                for (k, sk) in s.iter_mut().enumerate().take(n_pos) {
                    sk[..width].copy_from_slice(&mt[k * position + m0..][..width]);
                }
                for (q, yq) in output_transform::<T>(&s).iter().enumerate().take(T * T) {
                    let (oy, ox) = (T * y + q / T, T * xx + q % T);
                    if oy >= oh || ox >= ow {
                        continue;
                    }
                    let at = ((n * oh + oy) * ow + ox) * self.ld + self.offset + m0;
                    // SAFETY: output pixel (oy, ox) of tile t, channels m0.., this task's
                    // alone.
                    let dst = unsafe { self.out.slice(at, width) };
                    crate::conv_nhwc::finish_row(&yq[..width], m0, at, self.ops, dst);
                }
            }
        }
    }
}

/// `Bᵀ` of F(2x2, 3x3).
const BT2: [[f32; 4]; 4] = [
    [1.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 0.0],
    [0.0, 1.0, 0.0, -1.0],
];

/// `Bᵀ` of F(4x4, 3x3).
const BT4: [[f32; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// `Aᵀ` of F(2x2, 3x3).
const AT2: [[f32; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];

/// `Aᵀ` of F(4x4, 3x3).
const AT4: [[f32; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// Row `i` of `Bᵀ` (T = 2 or 4) or of `Aᵀ` (`output`), as a slice.
fn matrix_row<const T: usize>(output: bool, i: usize) -> &'static [f32] {
    match (T, output) {
        (2, false) => &BT2[i],
        (2, true) => &AT2[i],
        (_, false) => &BT4[i],
        (_, true) => &AT4[i],
    }
}

/// `L X Lᵀ` per lane for the `rows x side` matrix `L` ([`matrix_row`]) and the `side x side`
/// matrix `x` (`x[side * i + j]`), written as `rows x rows` (`y[rows * a + b]`); the zero
/// coefficients are skipped, as the vector forms do, so that an infinity stays out of the
/// positions that do not read it.
#[inline(always)]
fn sandwich<const T: usize>(
    output: bool,
    x: &[[f32; LANES]; MAX_POSITIONS],
) -> [[f32; LANES]; MAX_POSITIONS] {
    let side = T + 2;
    let rows = if output { T } else { side };
    let mut t = [[0f32; LANES]; MAX_POSITIONS];
    for a in 0..rows {
        let la = matrix_row::<T>(output, a);
        for j in 0..side {
            let mut acc = [0f32; LANES];
            for (r, &coef) in la.iter().enumerate() {
                if coef != 0.0 {
                    for (s, &v) in acc.iter_mut().zip(&x[side * r + j]) {
                        *s += coef * v;
                    }
                }
            }
            t[side * a + j] = acc;
        }
    }
    let mut y = [[0f32; LANES]; MAX_POSITIONS];
    for a in 0..rows {
        for b in 0..rows {
            let lb = matrix_row::<T>(output, b);
            let mut acc = [0f32; LANES];
            for (q, &coef) in lb.iter().enumerate() {
                if coef != 0.0 {
                    for (s, &v) in acc.iter_mut().zip(&t[side * a + q]) {
                        *s += coef * v;
                    }
                }
            }
            y[rows * a + b] = acc;
        }
    }
    y
}

/// `V = Bᵀ d B` of one `(T + 2)²` patch, per lane (`d[(T + 2) i + j]` is row `i`, column `j`).
#[inline(always)]
fn input_transform<const T: usize>(
    d: &[[f32; LANES]; MAX_POSITIONS],
) -> [[f32; LANES]; MAX_POSITIONS] {
    sandwich::<T>(false, d)
}

/// `Y = Aᵀ M A` of one tile, per lane: its T x T outputs (`y[T a + b]`).
#[inline(always)]
fn output_transform<const T: usize>(
    s: &[[f32; LANES]; MAX_POSITIONS],
) -> [[f32; LANES]; MAX_POSITIONS] {
    sandwich::<T>(true, s)
}

/// `dst[r][..m] = a[r][..c] u` for `rows <= BLOCK_TILES` rows (the panels of `u` as the
/// channels-last kernel packs them), written at `start` in `shared` with row stride `m`.
fn product(
    a: &[f32],
    rows: usize,
    c: usize,
    u: &[f32],
    m: usize,
    shared: &SharedMut<'_, f32>,
    start: usize,
) {
    let mut origins = [0usize; BLOCK_TILES];
    for (r, o) in origins.iter_mut().enumerate().take(rows) {
        *o = r * c;
    }
    let tile = crate::conv_nhwc::Tile {
        src: a,
        runs: &[(0, c)],
        k: c,
        m,
        ld: m,
        ops: crate::conv_nhwc::Operands {
            w: u,
            bias: None,
            residual: crate::conv_nhwc::Residual::None,
            acts: &[],
        },
        sink: shared,
        base: start,
    };
    tile.run(
        0,
        &origins[..rows],
        0..m.div_ceil(PANEL),
        crate::conv_nhwc::avx512(),
        crate::conv_nhwc::Ahead::None,
    );
}

#[cfg(all(any(test, fuzzing), feature = "std"))]
#[cfg_attr(
    fuzzing,
    allow(dead_code, reason = "helpers of tests that fuzzing builds drop")
)]
pub(crate) mod tests {
    use super::*;
    use crate::conv_nhwc::tests::{pack_dense, values};
    use std::vec::Vec;

    /// `G` of F(2x2, 3x3).
    const G2: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];

    /// `G` of F(4x4, 3x3) (Lavin and Gray's).
    const G4: [[f64; 3]; 6] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];

    /// `w: [M, C, 3, 3]` as `G g Gᵀ` of F(T x T, 3x3) in the layout [`winograd_weights_len`]
    /// describes (the compiler's packing, in f64).
    fn transform_weights<const T: usize>(p: &ConvParams, w: &[f32]) -> Vec<f32> {
        let (m, c) = (p.out_channels, p.in_channels);
        let g: &[[f64; 3]] = if T == 2 { &G2 } else { &G4 };
        let side = T + 2;
        let panels = m.div_ceil(PANEL);
        let mut out = std::vec![0.0; winograd_weights_len::<T>(p)];
        for j in 0..m {
            for ch in 0..c {
                let k = &w[(j * c + ch) * 9..][..9];
                for a in 0..side {
                    for b in 0..side {
                        let mut s = 0f64;
                        for r in 0..3 {
                            for q in 0..3 {
                                s += g[a][r] * f64::from(k[r * 3 + q]) * g[b][q];
                            }
                        }
                        let xi = side * a + b;
                        out[((xi * panels + j / PANEL) * c + ch) * PANEL + j % PANEL] = s as f32;
                    }
                }
            }
        }
        out
    }

    fn check<const T: usize>(p: &ConvParams, acts: &[Activation]) {
        let (n, c, m) = (p.batch, p.in_channels, p.out_channels);
        let (in_len, out_len) = (p.input_len(), p.output_len());
        let x = values(n * in_len * c, 1);
        let w = values(m * c * 9, 2);
        let bias = values(m, 3);
        let residual = values(n * out_len * m, 4);
        // The channels-last direct kernel is the reference (itself checked against the
        // channels-first convolution).
        let packed = pack_dense(p, &w);
        let mut padded = std::vec![0.0; crate::conv_nhwc::nhwc_padded_len(p, false)];
        let mut want = std::vec![0.0; n * out_len * m];
        crate::conv_nhwc::conv_nhwc_f32_exec(
            &Exec::single(),
            p,
            &x,
            &packed,
            Some(&bias),
            Some(&residual),
            &mut padded,
            &mut want,
            acts,
        );
        // F(4x4, 3x3)'s rounding is bounded by its own terms' magnitudes, not the result's:
        // [`abs_winograd`] runs the algorithm on absolute values.
        let magnitude = if T == 4 {
            abs_winograd::<T>(p, &x, &w, &bias, &residual)
        } else {
            std::vec::Vec::new()
        };
        let u = transform_weights::<T>(p, &w);
        for threads in [1, 2] {
            let mut scratch = std::vec![f32::NAN; winograd_scratch_len::<T>(p)];
            let mut got = std::vec![f32::NAN; n * out_len * m];
            conv_winograd_f32_exec::<T>(
                &Exec::with_threads(threads),
                p,
                &x,
                &u,
                Some(&bias),
                Some(&residual),
                &mut scratch,
                &mut got,
                acts,
            );
            for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                let tolerance = if T == 4 {
                    // First-order bounds on the rounding of both computations: each output is
                    // a chain of at most C + 26 roundings in F(4x4, 3x3) (2 x 5 sums in each
                    // transform, C in the product, the transformed weight's own, bias and
                    // residual) and 9 C + 2 in the direct sum, each bounded by
                    // epsilon times the terms' magnitudes, which `magnitude` bounds. The
                    // activations here are at most 1.5-Lipschitz (HardSwish), hence the 2.
                    let steps = (10 * c + 28) as f64;
                    (2.0 * steps * f64::from(f32::EPSILON) * magnitude[i]) as f32
                } else {
                    1e-4 * (1.0 + b.abs())
                };
                assert!(
                    (a - b).abs() <= tolerance,
                    "F({T}x{T}), {threads} threads, {p:?}: output {i} is {a}, expected {b} \
                     (error {:e}, tolerance {tolerance:e})",
                    (a - b).abs()
                );
            }
            // Into a wider output (a Concat's slice): the same bits at the slice, the rest
            // untouched. One thread: under `without_avx512` the pool's threads still take the
            // AVX-512 path, so which tiles get which bits would vary from run to run.
            if threads > 1 {
                continue;
            }
            let exec = Exec::single();
            let mut dense = std::vec![f32::NAN; n * out_len * m];
            let b = Some(&bias[..]);
            conv_winograd_f32_exec::<T>(&exec, p, &x, &u, b, None, &mut scratch, &mut dense, acts);
            let (ld, offset) = (m + 4, 1);
            let mut wide = std::vec![-7.25f32; n * out_len * ld];
            let into = (&mut wide[..], ld, offset);
            conv_winograd_into_f32_exec::<T>(&exec, p, &x, &u, b, &mut scratch, into, acts);
            let what = "Winograd conv into";
            crate::conv_nhwc::tests::check_slice(&wide, &dense, (m, ld, offset), what);
            // The residual in the output buffer: the same bits as a separate one.
            let mut separate = std::vec![f32::NAN; n * out_len * m];
            let r = Some(&residual[..]);
            conv_winograd_f32_exec::<T>(&exec, p, &x, &u, b, r, &mut scratch, &mut separate, acts);
            let mut summed = residual.clone();
            conv_winograd_accumulate_f32_exec::<T>(
                &exec,
                p,
                &x,
                &u,
                b,
                &mut scratch,
                &mut summed,
                acts,
            );
            crate::conv_nhwc::tests::check_same_bits(&summed, &separate, "Winograd accumulate");
        }
    }

    /// The convolution by F(T x T, 3x3) computed on absolute values in f64, per output
    /// (`[N, OH, OW, M]`): `|Aᵀ| (Σ_c |Bᵀ| |d| |B| ⊙ |G| |g| |Gᵀ|) |A|` plus `|bias|` and
    /// `|residual|`. Every intermediate the algorithm rounds (the transformed input and
    /// weights, the products, the partial sums of the output transform) is at most this in
    /// magnitude, and it is at least `Σ |x| |w|`, which bounds the direct sum's terms.
    fn abs_winograd<const T: usize>(
        p: &ConvParams,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        residual: &[f32],
    ) -> Vec<f64> {
        let (c, m) = (p.in_channels, p.out_channels);
        let side = T + 2;
        let (oh, ow) = (p.output[1], p.output[2]);
        let (ih, iw) = (p.input[1], p.input[2]);
        let abs_row = |output: bool, i: usize| -> Vec<f64> {
            matrix_row::<T>(output, i)
                .iter()
                .map(|v| f64::from(v.abs()))
                .collect()
        };
        let bt: Vec<Vec<f64>> = (0..side).map(|i| abs_row(false, i)).collect();
        let at: Vec<Vec<f64>> = (0..T).map(|i| abs_row(true, i)).collect();
        let g: &[[f64; 3]] = if T == 2 { &G2 } else { &G4 };
        // |L| X |L|ᵀ for a square X of `inner` and `rows` rows of `l`.
        let sandwich = |l: &[&[f64]], x: &[f64], inner: usize| -> Vec<f64> {
            let rows = l.len();
            let mut y = std::vec![0.0; rows * rows];
            for a in 0..rows {
                for b in 0..rows {
                    let mut s = 0.0;
                    for i in 0..inner {
                        for j in 0..inner {
                            s += l[a][i] * x[i * inner + j] * l[b][j];
                        }
                    }
                    y[a * rows + b] = s;
                }
            }
            y
        };
        let g_abs: Vec<[f64; 3]> = g.iter().map(|r| r.map(f64::abs)).collect();
        let g_rows: Vec<&[f64]> = g_abs.iter().map(|r| &r[..]).collect();
        let bt_rows: Vec<&[f64]> = bt.iter().map(|r| &r[..]).collect();
        let at_rows: Vec<&[f64]> = at.iter().map(|r| &r[..]).collect();
        // |G| |g| |Gᵀ| per (output channel, input channel).
        let u: Vec<Vec<f64>> = (0..m * c)
            .map(|k| {
                let taps: Vec<f64> = w[k * 9..][..9].iter().map(|v| f64::from(v.abs())).collect();
                sandwich(&g_rows, &taps, 3)
            })
            .collect();
        let mut out = std::vec![0.0; p.batch * oh * ow * m];
        for n in 0..p.batch {
            for ty in 0..oh.div_ceil(T) {
                for tx in 0..ow.div_ceil(T) {
                    // |Bᵀ| |d| |B| per input channel.
                    let v: Vec<Vec<f64>> = (0..c)
                        .map(|ch| {
                            let mut d = std::vec![0.0; side * side];
                            for i in 0..side {
                                for j in 0..side {
                                    let y = (T * ty + i).wrapping_sub(p.pads[1]);
                                    let xx = (T * tx + j).wrapping_sub(p.pads[2]);
                                    if y < ih && xx < iw {
                                        let at = ((n * ih + y) * iw + xx) * c + ch;
                                        d[i * side + j] = f64::from(x[at].abs());
                                    }
                                }
                            }
                            sandwich(&bt_rows, &d, side)
                        })
                        .collect();
                    for j in 0..m {
                        let mut prod = std::vec![0.0; side * side];
                        for (ch, vc) in v.iter().enumerate() {
                            for (s, (a, b)) in prod.iter_mut().zip(vc.iter().zip(&u[j * c + ch])) {
                                *s += a * b;
                            }
                        }
                        let y = sandwich(&at_rows, &prod, side);
                        for a in 0..T {
                            for b in 0..T {
                                let (oy, ox) = (T * ty + a, T * tx + b);
                                if oy < oh && ox < ow {
                                    let at = ((n * oh + oy) * ow + ox) * m + j;
                                    out[at] = y[a * T + b]
                                        + f64::from(bias[j].abs())
                                        + f64::from(residual[at].abs());
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// A 3x3 stride-1 convolution of `n` images of `c` channels and `h x w` pixels into `m`
    /// channels, with `pad` pixels of padding on every side.
    fn params(n: usize, c: usize, m: usize, h: usize, w: usize, pad: usize) -> ConvParams {
        let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
        ConvParams {
            batch: n,
            in_channels: c,
            out_channels: m,
            groups: 1,
            input: [1, h, w],
            output: [1, oh, ow],
            kernel: [1, 3, 3],
            strides: [1; 3],
            dilations: [1; 3],
            pads: [0, pad, pad],
            packed_weights: false,
        }
    }

    fn cases<const T: usize>() {
        use Activation as A;
        // Under Miri (some thousand times slower) only the cases of at most 2 000
        // multiply-adds, and a small one of two images, padding and two panels in place of
        // the big ones.
        let check = |p: &ConvParams, acts: &[A]| {
            let macs = p.batch * p.out_channels * p.output_len() * p.in_channels * 9;
            if !cfg!(miri) || macs <= 2_000 {
                check::<T>(p, acts);
            }
        };
        if cfg!(miri) {
            check(&params(2, 1, 17, 3, 3, 1), &[A::Sigmoid]);
        }
        // Outputs a multiple of the tile and not, no padding, channel tails, every panel
        // count, batches.
        check(&params(1, 16, 64, 8, 8, 1), &[]);
        check(&params(1, 5, 7, 7, 9, 1), &[A::Relu]);
        check(&params(2, 20, 37, 11, 6, 1), &[A::Sigmoid]);
        check(&params(1, 33, 100, 9, 9, 0), &[A::Clip(-0.3, 0.3)]);
        check(&params(1, 8, 16, 3, 3, 0), &[]);
        check(&params(1, 24, 48, 30, 30, 1), &[A::Relu]);
        check(&params(1, 7, 20, 6, 5, 1), &[]);
        // Weights past the fused bound: the passes run one after the other over every tile.
        check(&params(1, 96, 100, 14, 13, 1), &[A::HardSwish]);
    }

    /// One random case of [`crate::testing::winograd`]: F(2x2, 3x3) or F(4x4, 3x3), 1 or 2
    /// images of 1 to 40 channels and 1x1 to 20x20 pixels, 1 to 70 output channels, padding
    /// 0 or 1, an activation or none.
    pub(crate) fn random_case(rng: &mut impl crate::testing::Source) {
        let four = rng.below(2) == 1;
        use Activation as A;
        let pad = rng.below(2);
        // Under Miri, at most 4 x 4 pixels, 2 channels in and 4 out.
        let (side, c_max, m_max) = if cfg!(miri) { (4, 2, 4) } else { (20, 40, 70) };
        let (h, w) = (rng.range(3 - 2 * pad, side), rng.range(3 - 2 * pad, side));
        let (n, c, m) = (rng.range(1, 2), rng.range(1, c_max), rng.range(1, m_max));
        let p = params(n, c, m, h, w, pad);
        let chains: [&[A]; 4] = [&[], &[A::Relu], &[A::Sigmoid], &[A::Clip(-0.3, 0.3)]];
        let acts = chains[rng.below(chains.len())];
        // Under Miri (no CPU feature detected) `without_avx512` would repeat the same paths.
        let again = !cfg!(miri);
        if four {
            check::<4>(&p, acts);
            if again {
                crate::gemm_x86_64::without_avx512(|| check::<4>(&p, acts));
            }
        } else {
            check::<2>(&p, acts);
            if again {
                crate::gemm_x86_64::without_avx512(|| check::<2>(&p, acts));
            }
        }
    }

    #[cfg(test)]
    proptest::proptest! {
        #![proptest_config(crate::testing::config(30))]
        #[test]
        fn random_geometries_match_the_direct_convolution(tape in crate::testing::tape()) {
            random_case(&mut crate::testing::Tape(&tape));
        }
    }

    #[test]
    fn winograd_matches_the_direct_convolution() {
        cases::<2>();
        cases::<4>();
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri no CPU feature is detected: the same paths as the test above"
    )]
    fn winograd_matches_the_direct_convolution_without_avx512() {
        crate::gemm_x86_64::without_avx512(cases::<2>);
        crate::gemm_x86_64::without_avx512(cases::<4>);
    }
}
