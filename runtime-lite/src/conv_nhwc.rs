//! Float convolution channels last: `x: [N, *input, C]` in, `out: [N, *output, M]` out, as
//! ONNX Runtime's channel-blocked (NCHWc) convolutions run.
//!
//! Channels last, every output pixel is one broadcast row of the product and the output
//! channels are its columns, so nothing is packed per pixel:
//! - dense layers ([`conv_nhwc_f32_exec`]): the weights are column panels of 16 output
//!   channels whose depth runs over the taps, then the input channels, so a window's taps
//!   along one kernel row are one contiguous run of the input. A layer reads its input in
//!   place when no window reaches the padding; otherwise it first copies the input once into
//!   a zero-padded image (transposing it on the way when the input is channels first: a
//!   network's first layer);
//! - depthwise layers ([`depthwise_nhwc_f32_exec`]): 16 channels per vector, each pixel's
//!   taps clipped to the input, so nothing is copied.
//!
//! With AVX-512 the tile's epilogue (bias, residual, the activations that run in registers)
//! is applied in registers before the store; elsewhere portable loops compute the same sums.

use crate::conv::ConvParams;
use crate::epilogue::Activation;
use crate::threads::{Exec, SharedMut};

/// Output channels of one dense weight panel (one AVX-512 vector), and the channel multiple
/// depthwise weights are padded to.
pub const PANEL: usize = 16;

/// Most runs of contiguous input (kernel rows, or taps when dilated along rows) a dense
/// channels-last window may have.
pub const MAX_RUNS: usize = 64;

/// Output pixels of one block (their window origins are found together).
const BLOCK_PIXELS: usize = 96;

/// Output pixels of one tile of the AVX-512 kernel: the most any tile takes (see
/// [`tile_pixels`]).
pub(crate) const TILE_PIXELS: usize = 8;

/// Output pixels of an AVX-512 tile of `nv` panels: 8, or 6 by four panels (64 channels), so
/// that the sums (24), the panel vectors and the broadcast fit the 32 registers.
pub(crate) const fn tile_pixels(nv: usize) -> usize {
    if nv >= 4 {
        6
    } else {
        TILE_PIXELS
    }
}

/// Multiply-adds below which a layer runs as one task.
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Multiply-adds a weight float costs to stream from memory when it serves few pixels (from
/// the one-row products measured at about 26 GB/s against about 50 G multiply-adds/s).
const WEIGHT_COST: usize = 8;

/// Floats of dense channels-last weights: per group, `ceil(M/groups / 16)` column panels of
/// `taps * C/groups` rows of 16 floats, row `tap * C/groups + c` holding the weights of the
/// group's input channel `c` at kernel tap `tap` (taps in `kz, ky, kx` order) for the panel's
/// 16 output channels (zero past the group's `M/groups`).
pub fn nhwc_weights_len(p: &ConvParams) -> usize {
    let g = p.groups.max(1);
    g * (p.out_channels / g).div_ceil(PANEL) * PANEL * (p.in_channels / g) * p.kernel_len()
}

/// Floats of depthwise channels-last weights: `taps` rows of `ceil(C / 16) * 16` channels
/// (zero past `C`).
pub fn depthwise_nhwc_weights_len(p: &ConvParams) -> usize {
    p.kernel_len() * p.in_channels.div_ceil(PANEL) * PANEL
}

/// The spatial extent a dense layer's windows read, per axis (right-aligned, as in
/// [`ConvParams`]): from the start of the leading padding to the last tap of the last window.
fn read_extent(p: &ConvParams) -> [usize; 3] {
    core::array::from_fn(|i| {
        p.output[i].saturating_sub(1) * p.strides[i]
            + p.kernel[i].saturating_sub(1) * p.dilations[i]
            + 1
    })
}

/// Whether a dense layer reads its channels-last input where it lies: no window reaches the
/// padding.
fn reads_in_place(p: &ConvParams, channels_first: bool) -> bool {
    let extent = read_extent(p);
    !channels_first && (0..3).all(|i| p.pads[i] == 0 && extent[i] <= p.input[i])
}

/// Floats of working memory [`conv_nhwc_f32_exec`] needs for its zero-padded copy of the
/// input (0 when it reads the input in place); `channels_first` as for
/// [`conv_nhwc_from_nchw_f32_exec`].
pub fn nhwc_padded_len(p: &ConvParams, channels_first: bool) -> usize {
    if reads_in_place(p, channels_first) {
        0
    } else {
        p.batch * read_extent(p).iter().product::<usize>() * p.in_channels
    }
}

/// Whether [`conv_nhwc_f32_exec`] supports `p`: channels that split into its groups, and at
/// most [`MAX_RUNS`] runs of contiguous input per window.
pub fn nhwc_supported(p: &ConvParams) -> bool {
    p.groups >= 1
        && p.in_channels.is_multiple_of(p.groups)
        && p.out_channels.is_multiple_of(p.groups)
        && runs_len(p) <= MAX_RUNS
}

/// Runs of contiguous input per window: one per kernel row, or per tap when dilated along
/// rows or when the layer has several groups (a group's channels are a run of each pixel).
fn runs_len(p: &ConvParams) -> usize {
    let per_row = if p.dilations[2] == 1 && p.groups == 1 {
        1
    } else {
        p.kernel[2]
    };
    p.kernel[0] * p.kernel[1] * per_row
}

/// `out = acts(conv(x, w) + bias + residual)` for a dense (one-group) convolution channels
/// last: `x: [N, *input, C]`, `w` packed as [`nhwc_weights_len`] says, `bias: [M]`,
/// `residual` and `out: [N, *output, M]`; on `exec`'s threads. `padded` is working memory of
/// [`nhwc_padded_len`]`(p, false)` floats.
///
/// Panics if a buffer is too short or `p` is not [`nhwc_supported`].
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, a fused residual, working memory and the fused activations"
)]
pub fn conv_nhwc_f32_exec(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    padded: &mut [f32],
    out: &mut [f32],
    acts: &[Activation],
) {
    let ops = Operands {
        w,
        bias,
        residual: Residual::from(residual),
        acts,
    };
    conv_nhwc(exec, p, (x, false), ops, padded, (out, p.out_channels, 0));
}

/// [`conv_nhwc_f32_exec`] with the residual in the output buffer: `out = acts(conv(x, w) +
/// bias + out)`. A residual that dies at the layer is updated where it lies, which spares
/// the arena a buffer and the layer the stream of a separate output.
///
/// Panics as [`conv_nhwc_f32_exec`] does.
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, working memory and the fused activations"
)]
pub fn conv_nhwc_accumulate_f32_exec(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    padded: &mut [f32],
    out: &mut [f32],
    acts: &[Activation],
) {
    let ops = Operands {
        w,
        bias,
        residual: Residual::InOutput,
        acts,
    };
    conv_nhwc(exec, p, (x, false), ops, padded, (out, p.out_channels, 0));
}

/// [`conv_nhwc_f32_exec`] writing its `M` channels into a wider channels-last output: pixel
/// `q`'s channel `j` at `out[q * ld + offset + j]`, the other floats of each row untouched
/// (the inputs of a channels-last Concat over the channels, each written in place). No
/// residual: it would be read with the same stride.
///
/// Panics if a buffer is too short, `offset + M > ld`, or `p` is not [`nhwc_supported`].
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, working memory, the output's layout and the fused activations"
)]
pub fn conv_nhwc_into_f32_exec(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    padded: &mut [f32],
    (out, ld, offset): (&mut [f32], usize, usize),
    acts: &[Activation],
) {
    let ops = Operands {
        w,
        bias,
        residual: Residual::None,
        acts,
    };
    conv_nhwc(exec, p, (x, false), ops, padded, (out, ld, offset));
}

/// Floats a channels-last output of `pixels` rows of `m` channels at `offset` in rows of `ld`
/// spans (0 for no pixels), checking that each row fits: `offset + m <= ld`.
pub(crate) fn strided_span(pixels: usize, m: usize, ld: usize, offset: usize) -> usize {
    assert!(
        offset + m <= ld,
        "channels-last conv: channels past the output row"
    );
    if pixels == 0 {
        0
    } else {
        (pixels - 1) * ld + offset + m
    }
}

/// `out = acts(a b + bias + residual)` for a row-major `a: [m, k]` and a constant `b: [k, n]`
/// packed as a pointwise layer's weights (`ceil(n / 16)` panels of `k` rows of 16 columns:
/// [`nhwc_weights_len`] with `C = k`, `M = n`), `bias: [n]` and `residual`, `out: [m, n]`: a
/// Gemm or MatMul with constant weights, on the channels-last kernel, which reads the rows of
/// `a` where they lie and applies the epilogue in registers.
///
/// Panics if a buffer is too short.
#[allow(
    clippy::too_many_arguments,
    reason = "the product's shape and operands, the epilogue and the executor"
)]
pub fn gemm_rows_f32_exec(
    exec: &Exec,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    out: &mut [f32],
    acts: &[Activation],
) {
    let p = ConvParams {
        batch: 1,
        in_channels: k,
        out_channels: n,
        groups: 1,
        input: [1, 1, m],
        output: [1, 1, m],
        kernel: [1; 3],
        strides: [1; 3],
        dilations: [1; 3],
        pads: [0; 3],
        packed_weights: false,
    };
    conv_nhwc_f32_exec(exec, &p, a, b, bias, residual, &mut [], out, acts);
}

/// [`conv_nhwc_f32_exec`] on a channels-first input `x: [N, C, *input]` (a network's first
/// layer): the zero-padded copy it reads is transposed as it is made. `padded` holds
/// [`nhwc_padded_len`]`(p, true)` floats.
///
/// Panics as [`conv_nhwc_f32_exec`] does.
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, a fused residual, working memory and the fused activations"
)]
pub fn conv_nhwc_from_nchw_f32_exec(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    padded: &mut [f32],
    out: &mut [f32],
    acts: &[Activation],
) {
    let ops = Operands {
        w,
        bias,
        residual: Residual::from(residual),
        acts,
    };
    conv_nhwc(exec, p, (x, true), ops, padded, (out, p.out_channels, 0));
}

/// Where the residual a layer adds before its activations lies.
#[derive(Clone, Copy)]
pub(crate) enum Residual<'a> {
    /// The layer adds none.
    None,
    /// A buffer laid out as the (dense) output.
    Separate(&'a [f32]),
    /// The output holds it on entry: each element is read before it is written.
    InOutput,
}

impl<'a> From<Option<&'a [f32]>> for Residual<'a> {
    /// A separate residual, if `residual` is one.
    fn from(residual: Option<&'a [f32]>) -> Self {
        residual.map_or(Residual::None, Residual::Separate)
    }
}

impl<'a> Residual<'a> {
    /// The separate buffer, if the residual is one.
    pub(crate) fn separate(self) -> Option<&'a [f32]> {
        match self {
            Residual::Separate(r) => Some(r),
            _ => None,
        }
    }
}

/// The weights and the epilogue's operands of one layer.
#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    pub(crate) w: &'a [f32],
    pub(crate) bias: Option<&'a [f32]>,
    pub(crate) residual: Residual<'a>,
    pub(crate) acts: &'a [Activation],
}

impl Operands<'_> {
    /// The residual of the output element at `start` (which `out` points to), if any.
    pub(crate) fn residual_at(&self, start: usize, out: *mut f32) -> Option<*const f32> {
        match self.residual {
            Residual::None => None,
            Residual::Separate(r) => Some(r[start..].as_ptr()),
            Residual::InOutput => Some(out.cast_const()),
        }
    }

    pub(crate) fn check(&self, p: &ConvParams, out_len: usize) {
        let m = p.out_channels;
        if let Some(bias) = self.bias {
            assert!(bias.len() >= m, "channels-last conv: bias too short");
        }
        if let Residual::Separate(residual) = self.residual {
            assert!(
                residual.len() >= out_len,
                "channels-last conv: residual too short"
            );
        }
    }
}

/// The geometry of the image a dense layer reads its windows from.
#[derive(Clone, Copy)]
struct Image {
    /// Spatial sizes (right-aligned).
    dims: [usize; 3],
    /// Floats per image.
    len: usize,
}

impl Image {
    /// The offsets of the window origins (tap 0) of output pixels `q0..q0 + origins.len()`:
    /// one division for the first pixel, then a walk along the output rows.
    fn origins(&self, p: &ConvParams, q0: usize, origins: &mut [usize]) {
        if self.dims == p.output && p.kernel == [1; 3] && p.strides == [1; 3] {
            // A pointwise layer read in place (a product's rows): pixel q's window is row q.
            let c = p.in_channels;
            for (i, o) in origins.iter_mut().enumerate() {
                *o = (q0 + i) * c;
            }
            return;
        }
        let out_len = p.output_len();
        let (mut n, rem) = (q0 / out_len, q0 % out_len);
        let mut ox = rem % p.output[2];
        let rows = rem / p.output[2];
        let (mut oy, mut oz) = (rows % p.output[1], rows / p.output[1]);
        let c = p.in_channels;
        for o in origins {
            *o = n * self.len
                + ((oz * p.strides[0] * self.dims[1] + oy * p.strides[1]) * self.dims[2]
                    + ox * p.strides[2])
                    * c;
            ox += 1;
            if ox == p.output[2] {
                ox = 0;
                oy += 1;
                if oy == p.output[1] {
                    oy = 0;
                    oz += 1;
                    if oz == p.output[0] {
                        oz = 0;
                        n += 1;
                    }
                }
            }
        }
    }
}

/// [`conv_nhwc_f32_exec`] with the input channels first when `x.1`, writing pixel `q`'s
/// channel `j` at `out.0[q * out.1 + out.2 + j]`.
fn conv_nhwc(
    exec: &Exec,
    p: &ConvParams,
    (x, channels_first): (&[f32], bool),
    ops: Operands<'_>,
    padded: &mut [f32],
    (out, ld, offset): (&mut [f32], usize, usize),
) {
    assert!(
        nhwc_supported(p),
        "channels-last conv: whole groups and at most {MAX_RUNS} runs per window"
    );
    let (c, m) = (p.in_channels, p.out_channels);
    let groups = p.groups;
    let (cg, mg) = (c / groups, m / groups);
    let taps = p.kernel_len();
    let k = cg * taps;
    let pixels = p.batch * p.output_len();
    assert!(
        x.len() >= p.batch * p.input_len() * c,
        "channels-last conv: input too short"
    );
    assert!(
        ops.w.len() >= nhwc_weights_len(p),
        "channels-last conv: weights too short"
    );
    let span = strided_span(pixels, m, ld, offset);
    assert!(out.len() >= span, "channels-last conv: output too short");
    assert!(
        matches!(ops.residual, Residual::None) || (ld == m && offset == 0),
        "channels-last conv: a residual needs a dense output"
    );
    ops.check(p, pixels * m);
    if pixels == 0 || m == 0 {
        return;
    }
    let windows = Windows::new(exec, p, (x, channels_first), padded);
    let (src, image, runs) = (windows.src, windows.image, windows.runs());
    // Each group's panels (with several groups, threads split only the pixels).
    let panels = mg.div_ceil(PANEL);
    let group_w = panels * PANEL * k;
    // Work in multiply-adds, plus the weights streamed from memory: with few pixels (a
    // classifier's one row) each weight serves few multiply-adds and the layer is bound by
    // reading them, about 8 multiply-adds' time per float.
    let work = pixels * mg * k * groups + WEIGHT_COST * k * m;
    let threads = if work < PARALLEL_MIN_MACS {
        1
    } else {
        exec.threads()
    };
    // Several groups split only the pixels; one group may split its columns, when its
    // weights do not stay in cache (a transformer's projections, a CNN's last layers: each
    // thread then reads only its share of them). Smaller weights are read whole by each
    // thread, which keeps its own pixels from one layer to the next (the next layer reads
    // every channel of a pixel): two threads on the 14 x 14 and 7 x 7 layers of mobile
    // networks measured 2-9% faster that way (MobileNet-V3-small, RegNet, ShuffleNet).
    let col_tiles = if groups == 1 { panels } else { 1 };
    let split = crate::threads::Split::new(
        (pixels, TILE_PIXELS, BLOCK_PIXELS),
        (m, col_tiles),
        threads,
        groups == 1 && k * m >= CACHED_FLOATS,
    );
    let sink = SharedMut::new(&mut out[..span]);
    let avx512 = avx512();
    let body = |task: usize| {
        let mut origin = [0usize; BLOCK_PIXELS];
        let units = split.task_units(task);
        if groups == 1 {
            let tile = Tile {
                src,
                runs,
                k,
                m,
                ld,
                ops,
                sink: &sink,
                base: offset,
            };
            let mut first = units.start;
            while first < units.end {
                // A run of units over the same columns.
                let cols = split.unit(first, col_tiles).1;
                let mut end = first + 1;
                while end < units.end && split.unit(end, col_tiles).1 == cols {
                    end += 1;
                }
                // A unit's first pixel and pixel count, its windows' origins in `origin`.
                let rows = |unit: usize| {
                    let q0 = split.unit(unit, col_tiles).0 * split.block;
                    (q0, split.block.min(pixels - q0))
                };
                let block = |unit: usize, origin: &mut [usize; BLOCK_PIXELS]| {
                    let (q0, npix) = rows(unit);
                    image.origins(p, q0, &mut origin[..npix]);
                    (q0, npix)
                };
                if panels_outside(end - first, cols.len() * PANEL * k) {
                    // Each tile's panels go over every block in turn, so that they come from
                    // memory once and from cache for the other blocks, while the tiles
                    // prefetch the next panels in equal shares.
                    let mut panel = cols.start;
                    while panel < cols.end {
                        let next = panel + panels_per_tile(cols.end - panel, k);
                        let mr = tile_pixels(next - panel);
                        let tiles = (first..end).map(|u| rows(u).1.div_ceil(mr)).sum::<usize>();
                        let after = if next < cols.end {
                            next + panels_per_tile(cols.end - next, k)
                        } else {
                            next
                        };
                        let per_tile = ((after - next) * k * PANEL).div_ceil(tiles);
                        let mut at = ops.w.as_ptr().wrapping_add(next * k * PANEL);
                        for unit in first..end {
                            let (q0, npix) = block(unit, &mut origin);
                            let ahead = Ahead::Given { at, per_tile };
                            tile.run(q0, &origin[..npix], panel..next, avx512, ahead);
                            at = at.wrapping_add(npix.div_ceil(mr) * per_tile);
                        }
                        panel = next;
                    }
                } else {
                    // Panels that stay in cache: the first block reads them from memory,
                    // its tiles of each group prefetching the next group's panels.
                    for unit in first..end {
                        let (q0, npix) = block(unit, &mut origin);
                        let ahead = if unit == first {
                            Ahead::Next
                        } else {
                            Ahead::None
                        };
                        tile.run(q0, &origin[..npix], cols.clone(), avx512, ahead);
                    }
                }
                first = end;
            }
            return;
        }
        for unit in units {
            let (b, _) = split.unit(unit, col_tiles);
            let q0 = b * split.block;
            let npix = split.block.min(pixels - q0);
            image.origins(p, q0, &mut origin[..npix]);
            for g in 0..groups {
                // Group g reads its channels of each pixel and writes its columns.
                let tile = Tile {
                    src: &src[g * cg..],
                    runs,
                    k,
                    m: mg,
                    ld,
                    ops: Operands {
                        w: &ops.w[g * group_w..][..group_w],
                        bias: ops.bias.map(|b| &b[g * mg..]),
                        ..ops
                    },
                    sink: &sink,
                    base: offset + g * mg,
                };
                tile.run(q0, &origin[..npix], 0..panels, avx512, Ahead::None);
            }
        }
    };
    exec.for_each(split.tasks(), &body);
}

/// The image a dense layer reads its windows from (the input in place, or its zero-padded
/// copy), and the runs of contiguous input of one window, from its origin.
pub(crate) struct Windows<'a> {
    pub(crate) src: &'a [f32],
    image: Image,
    runs: [(usize, usize); MAX_RUNS],
    n_runs: usize,
}

impl<'a> Windows<'a> {
    /// The windows of `p` over `x` (channels first when `x.1`), padding it into `padded` (of
    /// [`nhwc_padded_len`] floats) on `exec`'s threads unless it is read in place.
    pub(crate) fn new(
        exec: &Exec,
        p: &ConvParams,
        (x, channels_first): (&'a [f32], bool),
        padded: &'a mut [f32],
    ) -> Self {
        let c = p.in_channels;
        let cg = c / p.groups.max(1);
        let (src, image): (&[f32], Image) = if reads_in_place(p, channels_first) {
            let image = Image {
                dims: p.input,
                len: p.input_len() * c,
            };
            (x, image)
        } else {
            let dims = read_extent(p);
            let len = dims.iter().product::<usize>() * c;
            let padded = &mut padded[..p.batch * len];
            pad_input(exec, p, x, channels_first, dims, padded);
            (&*padded, Image { dims, len })
        };
        // The runs of contiguous input of a window, from its origin, and their lengths.
        let mut runs = [(0usize, 0usize); MAX_RUNS];
        let mut n_runs = 0;
        let row = image.dims[2] * c;
        let plane = image.dims[1] * row;
        let merged = p.dilations[2] == 1 && p.groups == 1;
        for kz in 0..p.kernel[0] {
            for ky in 0..p.kernel[1] {
                let start = kz * p.dilations[0] * plane + ky * p.dilations[1] * row;
                if merged {
                    runs[n_runs] = (start, p.kernel[2] * c);
                    n_runs += 1;
                } else {
                    for kx in 0..p.kernel[2] {
                        runs[n_runs] = (start + kx * p.dilations[2] * c, cg);
                        n_runs += 1;
                    }
                }
            }
        }
        Windows {
            src,
            image,
            runs,
            n_runs,
        }
    }

    /// The runs of contiguous input of one window: offset from its origin and length.
    pub(crate) fn runs(&self) -> &[(usize, usize)] {
        &self.runs[..self.n_runs]
    }

    /// Output pixels `q0..q0 + count` of the dense (one-group) layer `p`, on this thread,
    /// written densely (`M` floats a pixel, the epilogue applied) into `sink` from `base`.
    ///
    /// Panics (portable path) if a window or panel lies outside its buffer; the caller has
    /// checked `ops` against `p` and that `sink` holds `count * M` floats from `base`, which
    /// no one else accesses meanwhile.
    pub(crate) fn pixels_into(
        &self,
        p: &ConvParams,
        ops: Operands<'_>,
        (q0, count): (usize, usize),
        sink: &SharedMut<'_, f32>,
        base: usize,
    ) {
        let m = p.out_channels;
        let tile = Tile {
            src: self.src,
            runs: self.runs(),
            k: p.in_channels * p.kernel_len(),
            m,
            ld: m,
            ops,
            sink,
            base,
        };
        let (avx512, panels) = (avx512(), m.div_ceil(PANEL));
        let mut origin = [0usize; BLOCK_PIXELS];
        let mut done = 0;
        while done < count {
            let npix = BLOCK_PIXELS.min(count - done);
            self.image.origins(p, q0 + done, &mut origin[..npix]);
            tile.run(done, &origin[..npix], 0..panels, avx512, Ahead::None);
            done += npix;
        }
    }
}

/// Whether the AVX-512 kernels run.
pub(crate) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::gemm_x86_64::has_avx512()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One block of output pixels (rows of the product) over a range of the weight panels: row
/// `q` reads its runs from `src[origin..]` and writes `sink[base + q * m..]`.
pub(crate) struct Tile<'a, 'b> {
    pub(crate) src: &'a [f32],
    pub(crate) runs: &'a [(usize, usize)],
    /// The runs' total depth.
    pub(crate) k: usize,
    /// The product's columns, and the floats between rows of its output.
    pub(crate) m: usize,
    pub(crate) ld: usize,
    pub(crate) ops: Operands<'a>,
    pub(crate) sink: &'a SharedMut<'b, f32>,
    pub(crate) base: usize,
}

impl Tile<'_, '_> {
    /// Rows `q0..q0 + origins.len()` (their windows at `origins` in `src`) over `panels`, on
    /// the AVX-512 kernel when `avx512`, which meanwhile prefetches `ahead` into L2.
    ///
    /// Panics if a window or panel lies outside its buffer (portable path); with `avx512`, the
    /// CPU must have AVX-512F and the windows must lie in `src`, the panels in the weights.
    pub(crate) fn run(
        &self,
        q0: usize,
        origins: &[usize],
        panels: core::ops::Range<usize>,
        avx512: bool,
        ahead: Ahead,
    ) {
        if avx512 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F is present; the origins and runs stay inside `src` (the
            // windows lie in the image), the panels inside `w` (checked by the callers).
            unsafe {
                self.avx512(q0, origins, panels.start, panels.end, ahead)
            };
        } else {
            let _ = ahead;
            self.portable(q0, origins, panels.start, panels.end);
        }
    }

    /// The portable kernel: per pixel, per panel, 16 sums over the window.
    fn portable(&self, q0: usize, origins: &[usize], first: usize, last: usize) {
        let Self {
            src,
            runs,
            k,
            m,
            ops,
            sink,
            ..
        } = *self;
        for (i, &o) in origins.iter().enumerate() {
            for panel in first..last {
                let c0 = panel * PANEL;
                let width = PANEL.min(m - c0);
                let mut acc = [0f32; PANEL];
                let mut wp = &ops.w[panel * k * PANEL..][..k * PANEL];
                for &(at, len) in runs {
                    for &v in &src[o + at..][..len] {
                        for (a, &wv) in acc.iter_mut().zip(&wp[..PANEL]) {
                            *a += v * wv;
                        }
                        wp = &wp[PANEL..];
                    }
                }
                let start = self.base + (q0 + i) * self.ld + c0;
                // SAFETY: this unit alone writes pixel q0 + i's columns of its panels.
                let dst = unsafe { sink.slice(start, width) };
                finish_row(&acc[..width], c0, start, ops, dst);
            }
        }
    }

    /// The AVX-512 kernel: tiles of 6 pixels by 4 panels, or 8 pixels by 3, 2 or 1.
    ///
    /// # Safety
    /// The CPU has AVX-512F; every window of `origins` lies inside `src` and the weights hold
    /// `m.div_ceil(16)` panels of depth `k`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(&self, q0: usize, origins: &[usize], first: usize, last: usize, ahead: Ahead) {
        use crate::conv_x86_64::{nhwc_block, nhwc_tile, NhwcBlock, NhwcTile};
        let Self {
            src,
            runs,
            k,
            m,
            ops,
            sink,
            ..
        } = *self;
        let mut panel = first;
        while panel < last {
            let nv = panels_per_tile(last - panel, k);
            let mr = tile_pixels(nv);
            let c0 = panel * PANEL;
            let width = (nv * PANEL).min(m - c0);
            let next = panel + nv;
            let (ahead_at, per_tile) = match ahead {
                Ahead::Next if next < last => {
                    let floats = panels_per_tile(last - next, k) * k * PANEL;
                    let at = ops.w.as_ptr().wrapping_add(next * k * PANEL);
                    (at, floats.div_ceil(origins.len().div_ceil(mr)))
                }
                Ahead::Given { at, per_tile } if next == last => (at, per_tile),
                _ => (core::ptr::null(), 0),
            };
            if origins.len() > 1 && k <= BLOCK_CALL_MAX_DEPTH {
                // The block's tiles in one call.
                let start = self.base + q0 * self.ld + c0;
                let span = (origins.len() - 1) * self.ld + width;
                let out = sink.span_ptr(start, span);
                let b = NhwcBlock {
                    src: src.as_ptr(),
                    origins,
                    runs,
                    weights: ops.w.as_ptr().wrapping_add(panel * k * PANEL),
                    stride: k * PANEL,
                    out,
                    ld: self.ld,
                    width,
                    bias: ops.bias.map(|b| b[c0..].as_ptr()),
                    residual: ops.residual_at(start, out),
                    acts: ops.acts,
                    ahead: ahead_at,
                    per_tile,
                    ahead_step: per_tile.div_ceil(k.max(1)),
                };
                // SAFETY: the contract, forwarded; the block's rows and columns are this
                // unit's alone and inside the output (and residual).
                unsafe { nhwc_block(nv, &b) };
                if !ops.acts.iter().all(crate::gemm::Finish::in_register) {
                    for r in 0..origins.len() {
                        // SAFETY: as above, one row of the block at a time.
                        let dst = unsafe { sink.slice(start + r * self.ld, width) };
                        Activation::apply_chain(ops.acts, dst);
                    }
                }
                panel = next;
                continue;
            }
            for r0 in (0..origins.len()).step_by(mr) {
                let rows = mr.min(origins.len() - r0);
                let mut starts = [src.as_ptr(); TILE_PIXELS];
                for (r, s) in starts.iter_mut().enumerate().take(mr) {
                    // Rows past the block repeat its last pixel (never stored).
                    let o = origins[r0 + r.min(rows - 1)];
                    *s = src.as_ptr().wrapping_add(o);
                }
                let start = self.base + (q0 + r0) * self.ld + c0;
                let span = (rows - 1) * self.ld + width;
                let out = sink.span_ptr(start, span);
                let t = NhwcTile {
                    starts: &starts,
                    runs,
                    weights: ops.w.as_ptr().wrapping_add(panel * k * PANEL),
                    stride: k * PANEL,
                    out,
                    ld: self.ld,
                    rows,
                    width,
                    bias: ops.bias.map(|b| b[c0..].as_ptr()),
                    residual: ops.residual_at(start, out),
                    acts: ops.acts,
                    // Tile r0 / 8 prefetches its share of `ahead`, over its steps of depth.
                    ahead: ahead_at.wrapping_add(r0 / mr * per_tile),
                    ahead_step: per_tile.div_ceil(k.max(1)),
                };
                // SAFETY: the contract, forwarded; the tile's rows and columns are this
                // unit's alone and inside the output (and residual).
                unsafe { nhwc_tile(nv, &t) };
                if !t.acts.iter().all(crate::gemm::Finish::in_register) {
                    for r in 0..rows {
                        // SAFETY: as above, one row of the tile at a time.
                        let dst = unsafe { sink.slice(start + r * self.ld, width) };
                        Activation::apply_chain(ops.acts, dst);
                    }
                }
            }
            panel = next;
        }
    }
}

/// The depth up to which a block's tiles run in one call (`conv_x86_64::nhwc_block`) rather than one call
/// each: a shallow tile spends as long on its call and hand-over as on its sums (pointwise
/// layers of 16 to 48 channels measured 5-15% faster), while deep ones keep their sums loop
/// apart from the epilogue (a transformer's 768-deep products measured 7% slower inlined).
const BLOCK_CALL_MAX_DEPTH: usize = 128;

/// Weights that the tiles of a [`Tile::run`] prefetch into L2 while they compute. A hint
/// only: never read, so any address is sound.
#[derive(Clone, Copy)]
pub(crate) enum Ahead {
    /// Nothing.
    None,
    /// The tiles of each group of panels prefetch the next group's panels, in equal shares.
    Next,
    /// The tiles of the last group of panels prefetch the panels the next call reads: tile `t`
    /// the `per_tile` floats from `at + t * per_tile`.
    Given { at: *const f32, per_tile: usize },
}

/// Floats of an operand that stay in cache (half of a 2 MiB L2) while a layer goes over the
/// other one.
const CACHED_FLOATS: usize = 1 << 18;

/// Whether a run of `blocks` blocks of rows over weight panels of `weights` floats goes
/// panels outside, blocks inside, rather than blocks outside: when the panels would not stay
/// in cache from one block to the next. The weights of a model come from memory at each run
/// (they are many, and each is read once), the input rows from cache (just written), so the
/// panels are better read once, with their tiles prefetching the next ones as they compute,
/// and the input rows once per tile of columns (measured on ViT-B/16's products: a tile of
/// its 768 x 3072 projection at 155 GFLOP/s blocks outside, 167 panels outside).
fn panels_outside(blocks: usize, weights: usize) -> bool {
    blocks <= 1 || weights > CACHED_FLOATS
}

/// Panels of the next AVX-512 tile of depth `k` when `left` remain: three at a time (eight
/// pixels); two for a remainder of two; for a remainder of four, four (six pixels) up to a
/// depth of [`FOUR_PANELS_MAX_DEPTH`], else two and two. Four panels take a layer of 64
/// channels in one pass over its windows instead of two: a network's 3 -> 64 stem ran 7-9%
/// faster, alternating with two and two. Four at a time over wider layers (six pixels by 64
/// channels rather than eight by 48) measured no faster.
fn panels_per_tile(left: usize, k: usize) -> usize {
    match left {
        1 => 1,
        2 => 2,
        4 if k <= FOUR_PANELS_MAX_DEPTH => 4,
        4 => 2,
        _ => 3,
    }
}

/// The depth up to which a tile takes four panels: their 4 x 64 bytes per step of depth stay
/// in L1 (32 KiB at this depth) while the tile's six pixels go over them. Deeper, the panels
/// of a tile come from L2 at every tile, and four of them per six pixels cost more than they
/// save (measured: a 1x1 layer 256 -> 64 and a 3x3 layer 64 -> 64 at 56 x 56 took 6-9% longer
/// on four panels than on two and two, ResNet's 7x7 stem, 147 deep, 2-5% longer).
const FOUR_PANELS_MAX_DEPTH: usize = 128;

/// `dst = acts(acc + bias + residual)` for one row of `width` output channels from `c0`,
/// at `start` in the output.
pub(crate) fn finish_row(acc: &[f32], c0: usize, start: usize, ops: Operands<'_>, dst: &mut [f32]) {
    for (j, (d, &a)) in dst.iter_mut().zip(acc).enumerate() {
        let mut v = a;
        if let Some(bias) = ops.bias {
            v += bias[c0 + j];
        }
        match ops.residual {
            Residual::None => {}
            Residual::Separate(residual) => v += residual[start + j],
            Residual::InOutput => v += *d,
        }
        *d = v;
    }
    Activation::apply_chain(ops.acts, dst);
}

/// Copies `x` (channels last, or channels first when `channels_first`) into `padded`, the
/// images of `dims` pixels (channels last) that the windows read, zero in the padding.
pub(crate) fn pad_input(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    channels_first: bool,
    dims: [usize; 3],
    padded: &mut [f32],
) {
    let c = p.in_channels;
    let row = dims[2] * c;
    let rows = p.batch * dims[0] * dims[1];
    let per_task = if exec.threads() == 1 || padded.len() < 1 << 16 {
        rows
    } else {
        rows.div_ceil(4 * exec.threads())
    };
    let in_len = p.input_len();
    exec.for_each_chunk(padded, per_task.max(1) * row, &|task, part| {
        for (i, dst) in part.chunks_exact_mut(row).enumerate() {
            let r = task * per_task + i;
            let (n, rem) = (r / (dims[0] * dims[1]), r % (dims[0] * dims[1]));
            let (z, y) = (rem / dims[1], rem % dims[1]);
            let iz = z.wrapping_sub(p.pads[0]);
            let iy = y.wrapping_sub(p.pads[1]);
            if iz >= p.input[0] || iy >= p.input[1] {
                dst.fill(0.0);
                continue;
            }
            // Columns x0..x1 of the row come from input columns 0.. .
            let x0 = p.pads[2].min(dims[2]);
            let x1 = (p.pads[2] + p.input[2]).min(dims[2]);
            dst[..x0 * c].fill(0.0);
            dst[x1 * c..].fill(0.0);
            let line = (iz * p.input[1] + iy) * p.input[2];
            if channels_first {
                // Each channel from its own plane: RGB pixel by pixel, more channels as a
                // transposed block of the row.
                let image = &x[n * c * in_len..][..c * in_len];
                let w = x1 - x0;
                let plane = |ch: usize| &image[ch * in_len + line..][..w];
                if c == 3 {
                    let pixels = dst[x0 * c..x1 * c].chunks_exact_mut(c);
                    // RGB, a network's usual first layer: three planes zipped.
                    let rows = plane(0).iter().zip(plane(1)).zip(plane(2));
                    for (pixel, ((&r, &g), &b)) in pixels.zip(rows) {
                        pixel.copy_from_slice(&[r, g, b]);
                    }
                } else {
                    // The row's channels-by-pixels block, transposed.
                    crate::shape::transpose_strided(
                        &image[line..],
                        in_len,
                        &mut dst[x0 * c..x1 * c],
                        c,
                        (c, w),
                    );
                }
            } else {
                let from = (n * in_len + line) * c;
                dst[x0 * c..x1 * c].copy_from_slice(&x[from..][..(x1 - x0) * c]);
            }
        }
    });
}

/// `out = acts(depthwise_conv(x, w) + bias + residual)` channels last: `x: [N, *input, C]`,
/// `w` as [`depthwise_nhwc_weights_len`] says, `bias: [C]`, `residual` and
/// `out: [N, *output, C]`; on `exec`'s threads. Each pixel's taps are clipped to the input,
/// so nothing is copied.
///
/// Panics if a buffer is too short or the convolution is not depthwise.
#[allow(
    clippy::too_many_arguments,
    reason = "the ONNX operands, a fused residual and the fused activations"
)]
pub fn depthwise_nhwc_f32_exec(
    exec: &Exec,
    p: &ConvParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    out: &mut [f32],
    acts: &[Activation],
) {
    assert!(
        p.is_depthwise(),
        "channels-last depthwise conv: groups must equal the channels"
    );
    let c = p.in_channels;
    let out_rows = p.batch * p.output[0] * p.output[1];
    let row = p.output[2] * c;
    assert!(
        x.len() >= p.batch * p.input_len() * c,
        "channels-last depthwise conv: input too short"
    );
    assert!(
        w.len() >= depthwise_nhwc_weights_len(p),
        "channels-last depthwise conv: weights too short"
    );
    assert!(
        out.len() >= out_rows * row,
        "channels-last depthwise conv: output too short"
    );
    let ops = Operands {
        w,
        bias,
        residual: Residual::from(residual),
        acts,
    };
    ops.check(p, out_rows * row);
    if out_rows == 0 || row == 0 {
        return;
    }
    let macs = out_rows * row * p.kernel_len();
    let threads = if macs < PARALLEL_MIN_MACS / 4 {
        1
    } else {
        exec.threads()
    };
    let avx512 = avx512();
    let sliding = avx512
        && p.dilations[2] == 1
        && matches!((p.kernel[2], p.strides[2]), (3 | 5, 1 | 2) | (7, 1));
    let panels = c.div_ceil(PANEL);
    #[cfg(target_arch = "x86_64")]
    if sliding
        && threads > 1
        && out_rows.div_ceil(threads) * threads * 8 > out_rows * 9
        && panels >= 2 * threads
        && crate::gemm::Finish::in_store(acts)
    {
        // Too few rows to split evenly (a late layer's 7): the threads split the channels.
        // (Not otherwise: the next layer reads each pixel's channels whole, from the core
        // that wrote its row, and a product before with more columns than rows that split
        // its columns gains nothing, as measured: MnasNet's 14 x 14 layers at two threads
        // took 27-36 us split by rows, 42-48 by channels.)
        let per_task = panels.div_ceil(threads) * PANEL;
        let sink = SharedMut::new(&mut out[..out_rows * row]);
        exec.for_each(c.div_ceil(per_task), &|task| {
            let channels = task * per_task..((task + 1) * per_task).min(c);
            for r in 0..out_rows {
                let dst = sink.span_ptr(r * row, row);
                // SAFETY: `dst` holds row r; this task alone writes these channels of it.
                unsafe { depthwise_row_sliding(p, x, ops, r, channels.clone(), dst) };
            }
        });
        return;
    }
    // One band of rows per thread: every task also reads the kernel's rows above and below
    // its band, and those (and the rows other cores wrote) cost more than uneven bands
    // (measured on MnasNet at two threads: depthwise layers 1110 us in four tasks per thread,
    // 1131 in two, 986 in one).
    let per_task = out_rows.div_ceil(threads);
    exec.for_each_chunk(&mut out[..out_rows * row], per_task * row, &|task, part| {
        if sliding {
            #[cfg(target_arch = "x86_64")]
            for (i, dst) in part.chunks_exact_mut(row).enumerate() {
                // SAFETY: `dst` is row `task * per_task + i`, borrowed by this task alone.
                unsafe {
                    depthwise_row_sliding(p, x, ops, task * per_task + i, 0..c, dst.as_mut_ptr())
                };
                // The rest of the epilogue on the row while it is in cache.
                if !crate::gemm::Finish::in_store(ops.acts) {
                    Activation::apply_chain(ops.acts, dst);
                }
            }
            return;
        }
        for (i, dst) in part.chunks_exact_mut(row).enumerate() {
            let r = task * per_task + i;
            depthwise_row(p, x, ops, r, dst, avx512);
        }
    });
}

/// Output row `r` (over batch, depth and height) of the depthwise layer `p` into `dst`
/// (`ow * C` floats), with its whole epilogue; `ops` checked against `p`, without a residual.
/// The row [`depthwise_nhwc_f32_exec`] writes, on this thread.
pub(crate) fn depthwise_row_into(
    p: &ConvParams,
    x: &[f32],
    ops: Operands<'_>,
    r: usize,
    dst: &mut [f32],
) {
    assert!(
        matches!(ops.residual, Residual::None) && dst.len() >= p.output[2] * p.in_channels,
        "channels-last depthwise row: no residual, a whole row"
    );
    let avx512 = avx512();
    let sliding = avx512
        && p.dilations[2] == 1
        && matches!((p.kernel[2], p.strides[2]), (3 | 5, 1 | 2) | (7, 1));
    if sliding {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: AVX-512F is present, the kernel's columns and strides are the sliding
            // kernels', `dst` holds the row (asserted) and is borrowed mutably here alone.
            unsafe { depthwise_row_sliding(p, x, ops, r, 0..p.in_channels, dst.as_mut_ptr()) };
            if !crate::gemm::Finish::in_store(ops.acts) {
                Activation::apply_chain(ops.acts, &mut dst[..p.output[2] * p.in_channels]);
            }
            return;
        }
    }
    depthwise_row(p, x, ops, r, dst, avx512);
}

/// Channels `channels` (from a multiple of 16) of output row `r` of
/// [`depthwise_nhwc_f32_exec`], written at `dst`, with unit horizontal dilation and 3 or 5
/// kernel columns at stride 1 or 2, or 7 at stride 1, on AVX-512: 16 channels at a time, each
/// on a sliding window. The activations that are not applied in registers are the caller's.
///
/// # Safety
/// AVX-512F is present; `p` is the layer's geometry and `x`, `ops` its checked operands;
/// `dst` points at row r's `ow * c` floats of the output, valid for writes, and nothing else
/// reads or writes these channels of them meanwhile.
#[cfg(target_arch = "x86_64")]
unsafe fn depthwise_row_sliding(
    p: &ConvParams,
    x: &[f32],
    ops: Operands<'_>,
    r: usize,
    channels: core::ops::Range<usize>,
    dst: *mut f32,
) {
    let c = p.in_channels;
    let mut rows = [(0usize, 0usize); MAX_RUNS];
    let whole = DwRow {
        x,
        rows: kernel_rows(p, r, &mut rows),
        iw: p.input[2],
        pw: p.pads[2],
        ow: p.output[2],
        c,
        cp: c.div_ceil(PANEL) * PANEL,
        ops,
        out_at: r * p.output[2] * c,
    };
    // The row's channels in turn, 16 at a time: the rows' pixels are read whole, in memory
    // order (channel-outer passes over many rows stream each pixel several times when the
    // plane outgrows the cache).
    for c0 in channels.step_by(PANEL) {
        // SAFETY: AVX-512F is present; the kernel rows lie inside the input, the weights hold
        // `cp` channels per tap (`check` and the asserts of `depthwise_nhwc_f32_exec`), `dst`
        // holds the row and these channels are the caller's alone, and c0 < c.
        unsafe {
            match (p.kernel[2], p.strides[2]) {
                (3, 1) => crate::conv_x86_64::depthwise_nhwc_row::<3, 1>(&whole, c0, dst),
                (3, _) => crate::conv_x86_64::depthwise_nhwc_row::<3, 2>(&whole, c0, dst),
                (5, 1) => crate::conv_x86_64::depthwise_nhwc_row::<5, 1>(&whole, c0, dst),
                (5, _) => crate::conv_x86_64::depthwise_nhwc_row::<5, 2>(&whole, c0, dst),
                _ => crate::conv_x86_64::depthwise_nhwc_row::<7, 1>(&whole, c0, dst),
            }
        }
    }
}

/// The kernel rows of output row `r` (over batch, depth and height) that lie inside the input,
/// as (the input row's offset, the first weight row of its taps), written to `rows`; the
/// columns are clipped per pixel.
fn kernel_rows<'r>(
    p: &ConvParams,
    r: usize,
    rows: &'r mut [(usize, usize); MAX_RUNS],
) -> &'r [(usize, usize)] {
    let c = p.in_channels;
    let (n, rem) = (
        r / (p.output[0] * p.output[1]),
        r % (p.output[0] * p.output[1]),
    );
    let (oz, oy) = (rem / p.output[1], rem % p.output[1]);
    let mut n_rows = 0;
    for kz in 0..p.kernel[0] {
        let iz = (oz * p.strides[0] + kz * p.dilations[0]).wrapping_sub(p.pads[0]);
        if iz >= p.input[0] {
            continue;
        }
        for ky in 0..p.kernel[1] {
            let iy = (oy * p.strides[1] + ky * p.dilations[1]).wrapping_sub(p.pads[1]);
            if iy >= p.input[1] || n_rows == MAX_RUNS {
                continue;
            }
            let line = ((n * p.input[0] + iz) * p.input[1] + iy) * p.input[2] * c;
            rows[n_rows] = (line, (kz * p.kernel[1] + ky) * p.kernel[2]);
            n_rows += 1;
        }
    }
    &rows[..n_rows]
}

/// One output row `r` (over batch, depth and height) of [`depthwise_nhwc_f32_exec`].
fn depthwise_row(
    p: &ConvParams,
    x: &[f32],
    ops: Operands<'_>,
    r: usize,
    dst: &mut [f32],
    avx512: bool,
) {
    let c = p.in_channels;
    let cp = c.div_ceil(PANEL) * PANEL;
    let mut rows = [(0usize, 0usize); MAX_RUNS];
    let rows = kernel_rows(p, r, &mut rows);
    let (kw, sw, dw, pw, iw) = (
        p.kernel[2],
        p.strides[2],
        p.dilations[2],
        p.pads[2],
        p.input[2],
    );
    // Output columns whose whole window lies inside the row: [lo, hi).
    let lo = pw.div_ceil(sw).min(p.output[2]);
    let span = (kw - 1) * dw + 1;
    let hi = if iw + pw >= span {
        ((iw + pw - span) / sw + 1).clamp(lo, p.output[2])
    } else {
        lo
    };
    let out_row = r * p.output[2] * c;
    let mut ox = 0;
    while ox < p.output[2] {
        // A run of interior pixels, or one border pixel.
        let (count, kx0, kx1) = if (lo..hi).contains(&ox) {
            (hi - ox, 0, kw)
        } else {
            let first = (ox * sw) as isize - pw as isize;
            let kx0 = (0..kw)
                .find(|&kx| first + (kx * dw) as isize >= 0)
                .unwrap_or(kw);
            let kx1 = (kx0..kw)
                .find(|&kx| first + (kx * dw) as isize >= iw as isize)
                .unwrap_or(kw);
            (1, kx0, kx1)
        };
        let col = |o: usize| (o * sw + kx0 * dw).wrapping_sub(pw);
        let dw_run = DwRun {
            x,
            rows,
            first_col: col(ox),
            col_step: sw * c,
            tap_step: dw * c,
            kx: (kx0, kx1),
            c,
            cp,
            ops,
            out_at: out_row + ox * c,
        };
        let dst = &mut dst[ox * c..(ox + count) * c];
        if avx512 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F is present; the taps of `rows` and `kx` lie inside the input
            // for these pixels, the weights hold `cp` channels per tap.
            unsafe {
                crate::conv_x86_64::depthwise_nhwc_run(&dw_run, count, dst)
            };
        } else {
            dw_run.portable(count, dst);
        }
        ox += count;
    }
}

/// One whole output row of a depthwise layer with unit dilation, for the kernels that take
/// the row's border pixels in their stride (their taps in the padding masked out).
pub(crate) struct DwRow<'a> {
    pub(crate) x: &'a [f32],
    /// The kernel rows inside the input: their input row's offset and first weight row.
    pub(crate) rows: &'a [(usize, usize)],
    /// Input columns, and the padding before the first.
    pub(crate) iw: usize,
    pub(crate) pw: usize,
    /// Output columns.
    pub(crate) ow: usize,
    pub(crate) c: usize,
    pub(crate) cp: usize,
    pub(crate) ops: Operands<'a>,
    /// The row's offset in the output (and residual).
    pub(crate) out_at: usize,
}

/// `count` consecutive output pixels of one depthwise row that share their clipped taps.
pub(crate) struct DwRun<'a> {
    pub(crate) x: &'a [f32],
    /// The kernel rows inside the input: their input row's offset and first weight row.
    pub(crate) rows: &'a [(usize, usize)],
    /// The input column of the first pixel's first tap.
    pub(crate) first_col: usize,
    /// Floats between consecutive pixels' windows.
    pub(crate) col_step: usize,
    /// Floats between consecutive taps of a kernel row.
    pub(crate) tap_step: usize,
    /// The kernel columns inside the input.
    pub(crate) kx: (usize, usize),
    pub(crate) c: usize,
    pub(crate) cp: usize,
    ops: Operands<'a>,
    /// The first pixel's offset in the output (and residual).
    pub(crate) out_at: usize,
}

impl DwRun<'_> {
    pub(crate) fn bias(&self) -> Option<&[f32]> {
        self.ops.bias
    }
    pub(crate) fn residual(&self) -> Option<&[f32]> {
        self.ops.residual.separate()
    }
    pub(crate) fn acts(&self) -> &[Activation] {
        self.ops.acts
    }
    pub(crate) fn w(&self) -> &[f32] {
        self.ops.w
    }

    fn portable(&self, count: usize, dst: &mut [f32]) {
        let c = self.c;
        for (i, out) in dst.chunks_exact_mut(c).take(count).enumerate() {
            out.fill(0.0);
            for &(line, w_row) in self.rows {
                for kx in self.kx.0..self.kx.1 {
                    let at = line
                        + (self.first_col * c)
                        + i * self.col_step
                        + (kx - self.kx.0) * self.tap_step;
                    let wv = &self.ops.w[(w_row + kx) * self.cp..][..c];
                    for ((o, &v), &w) in out.iter_mut().zip(&self.x[at..][..c]).zip(wv) {
                        *o += v * w;
                    }
                }
            }
            finish_row_in_place(out, self.out_at + i * c, self.ops);
        }
    }
}

/// `row = acts(row + bias + residual)` for one pixel's channels at `start` in the output.
fn finish_row_in_place(row: &mut [f32], start: usize, ops: Operands<'_>) {
    if let Some(bias) = ops.bias {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
    if let Residual::Separate(residual) = ops.residual {
        row.iter_mut()
            .zip(&residual[start..])
            .for_each(|(v, r)| *v += r);
    }
    Activation::apply_chain(ops.acts, row);
}

#[cfg(all(any(test, fuzzing), feature = "std"))]
#[cfg_attr(
    fuzzing,
    allow(dead_code, reason = "helpers of tests that fuzzing builds drop")
)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::Source;
    use std::vec::Vec;

    /// Deterministic values in [-1, 1).
    pub(crate) fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `[N, C, *spatial]` as `[N, *spatial, C]` (`channels_last`) or back.
    fn transpose(x: &[f32], n: usize, c: usize, spatial: usize, channels_last: bool) -> Vec<f32> {
        let mut out = std::vec![0.0; x.len()];
        for b in 0..n {
            for ch in 0..c {
                for s in 0..spatial {
                    let first = (b * c + ch) * spatial + s;
                    let last = (b * spatial + s) * c + ch;
                    if channels_last {
                        out[last] = x[first];
                    } else {
                        out[first] = x[last];
                    }
                }
            }
        }
        out
    }

    /// `w: [M, C/groups, *kernel]` as [`nhwc_weights_len`] lays it out.
    pub(crate) fn pack_dense(p: &ConvParams, w: &[f32]) -> Vec<f32> {
        let (groups, taps) = (p.groups, p.kernel_len());
        let (cg, mg) = (p.in_channels / groups, p.out_channels / groups);
        let (k, panels) = (cg * taps, mg.div_ceil(PANEL));
        let mut out = std::vec![0.0; nhwc_weights_len(p)];
        for g in 0..groups {
            for j in 0..mg {
                for ch in 0..cg {
                    for t in 0..taps {
                        out[((g * panels + j / PANEL) * k + t * cg + ch) * PANEL + j % PANEL] =
                            w[((g * mg + j) * cg + ch) * taps + t];
                    }
                }
            }
        }
        out
    }

    /// `w: [C, 1, *kernel]` as [`depthwise_nhwc_weights_len`] lays it out.
    fn pack_depthwise(p: &ConvParams, w: &[f32]) -> Vec<f32> {
        let (c, taps) = (p.in_channels, p.kernel_len());
        let cp = c.div_ceil(PANEL) * PANEL;
        let mut out = std::vec![0.0; depthwise_nhwc_weights_len(p)];
        for ch in 0..c {
            for t in 0..taps {
                out[t * cp + ch] = w[ch * taps + t];
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments, reason = "a test case's geometry")]
    fn params(
        batch: usize,
        c: usize,
        m: usize,
        groups: usize,
        input: [usize; 3],
        kernel: [usize; 3],
        strides: [usize; 3],
        dilations: [usize; 3],
        pads: [usize; 3],
        pads_end: [usize; 3],
    ) -> ConvParams {
        let output = core::array::from_fn(|i| {
            (input[i] + pads[i] + pads_end[i] - (kernel[i] - 1) * dilations[i] - 1) / strides[i] + 1
        });
        ConvParams {
            batch,
            in_channels: c,
            out_channels: m,
            groups,
            input,
            output,
            kernel,
            strides,
            dilations,
            pads,
            packed_weights: false,
        }
    }

    /// Checks the channels-last kernels against the channels-first convolution on `p`, with
    /// bias, a residual and `acts`, from both input layouts, on 1 and 2 threads.
    fn check(p: &ConvParams, acts: &[Activation]) {
        let (n, c, m) = (p.batch, p.in_channels, p.out_channels);
        let (in_len, out_len) = (p.input_len(), p.output_len());
        let x = values(n * c * in_len, 1);
        let w = values(m * (c / p.groups) * p.kernel_len(), 2);
        let bias = values(m, 3);
        let residual = values(n * m * out_len, 4);
        let mut expected = std::vec![0.0; n * m * out_len];
        crate::conv::conv_f32_exec(
            &Exec::single(),
            p,
            &x,
            &w,
            Some(&bias),
            Some(&residual),
            &mut expected,
            acts,
        );
        let expected = transpose(&expected, n, m, out_len, true);
        let x_last = transpose(&x, n, c, in_len, true);
        let r_last = transpose(&residual, n, m, out_len, true);
        for threads in [1, 2] {
            let exec = Exec::with_threads(threads);
            let mut runs: Vec<(&str, Vec<f32>)> = Vec::new();
            if p.is_depthwise() {
                let packed = pack_depthwise(p, &w);
                let mut out = std::vec![f32::NAN; n * m * out_len];
                depthwise_nhwc_f32_exec(
                    &exec,
                    p,
                    &x_last,
                    &packed,
                    Some(&bias),
                    Some(&r_last),
                    &mut out,
                    acts,
                );
                runs.push(("depthwise", out));
            } else {
                let packed = pack_dense(p, &w);
                for first in [false, true] {
                    let mut padded = std::vec![f32::NAN; nhwc_padded_len(p, first)];
                    let mut out = std::vec![f32::NAN; n * m * out_len];
                    let run = if first {
                        conv_nhwc_from_nchw_f32_exec
                    } else {
                        conv_nhwc_f32_exec
                    };
                    run(
                        &exec,
                        p,
                        if first { &x } else { &x_last },
                        &packed,
                        Some(&bias),
                        Some(&r_last),
                        &mut padded,
                        &mut out,
                        acts,
                    );
                    runs.push((
                        if first {
                            "from channels first"
                        } else {
                            "dense"
                        },
                        out,
                    ));
                }
                // Into a wider output (a Concat's slice): the same bits at the slice, the
                // rest untouched (on one thread: under `without_avx512` the pool's threads
                // still take the AVX-512 path).
                let exec = Exec::single();
                let pixels = n * out_len;
                let (ld, offset) = (m + 5, 3);
                let mut padded = std::vec![f32::NAN; nhwc_padded_len(p, false)];
                let mut dense = std::vec![f32::NAN; pixels * m];
                let ops = (&x_last, &packed, Some(&bias[..]));
                conv_nhwc_f32_exec(
                    &exec,
                    p,
                    ops.0,
                    ops.1,
                    ops.2,
                    None,
                    &mut padded,
                    &mut dense,
                    acts,
                );
                let mut wide = std::vec![-7.25f32; pixels * ld];
                conv_nhwc_into_f32_exec(
                    &exec,
                    p,
                    ops.0,
                    ops.1,
                    ops.2,
                    &mut padded,
                    (&mut wide, ld, offset),
                    acts,
                );
                check_slice(&wide, &dense, (m, ld, offset), "channels-last conv into");
                // The residual in the output buffer: the same bits as a separate one.
                let mut separate = std::vec![f32::NAN; pixels * m];
                let residual = Some(&r_last[..]);
                let (x, w, b) = ops;
                conv_nhwc_f32_exec(
                    &exec,
                    p,
                    x,
                    w,
                    b,
                    residual,
                    &mut padded,
                    &mut separate,
                    acts,
                );
                let mut summed = r_last.clone();
                conv_nhwc_accumulate_f32_exec(&exec, p, x, w, b, &mut padded, &mut summed, acts);
                check_same_bits(&summed, &separate, "channels-last conv accumulate");
            }
            for (what, out) in runs {
                for (i, (&a, &b)) in out.iter().zip(&expected).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{what}, {threads} threads, {p:?}: output {i} is {a}, expected {b}"
                    );
                }
            }
        }
    }

    /// `got` and `want` hold the same bits.
    pub(crate) fn check_same_bits(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{what}: output {i} is {a}, expected {b}"
            );
        }
    }

    /// `wide` (rows of `ld`) holds `dense` (rows of `m`) at `offset` in each row, bit for bit,
    /// and -7.25 everywhere else.
    pub(crate) fn check_slice(
        wide: &[f32],
        dense: &[f32],
        (m, ld, offset): (usize, usize, usize),
        what: &str,
    ) {
        for (q, row) in wide.chunks_exact(ld).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let want = if (offset..offset + m).contains(&j) {
                    dense[q * m + j - offset]
                } else {
                    -7.25
                };
                assert_eq!(
                    v.to_bits(),
                    want.to_bits(),
                    "{what}: pixel {q}, float {j}: {v}, expected {want}"
                );
            }
        }
    }

    fn cases() {
        use Activation as A;
        let one = [1, 1, 1];
        // (batch, C, M, groups, input, kernel, strides, dilations, pads, pads_end)
        let cases = [
            // More output channels than pixels, big enough for threads: split by columns.
            params(1, 512, 250, 1, [1, 7, 7], one, one, one, [0; 3], [0; 3]),
            // Pointwise, read in place; channel tails.
            params(1, 16, 64, 1, [1, 7, 9], one, one, one, [0; 3], [0; 3]),
            // Tiles of four panels and six pixels: alone (with a channel tail), and after
            // three (seven panels, a 3x3 layer); pixel counts no multiple of six.
            params(1, 20, 60, 1, [1, 7, 5], one, one, one, [0; 3], [0; 3]),
            params(
                1,
                8,
                112,
                1,
                [1, 5, 7],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(2, 5, 37, 1, [1, 6, 5], one, one, one, [0; 3], [0; 3]),
            // Strided pointwise (in place) and 3x3 same padding, all panel counts.
            params(1, 24, 40, 1, [1, 9, 9], one, [1, 2, 2], one, [0; 3], [0; 3]),
            params(
                1,
                8,
                16,
                1,
                [1, 10, 11],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                1,
                8,
                32,
                1,
                [1, 10, 11],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                1,
                12,
                48,
                1,
                [1, 10, 11],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                1,
                12,
                80,
                1,
                [1, 10, 11],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                2,
                7,
                100,
                1,
                [1, 13, 12],
                [1, 3, 3],
                [1, 2, 2],
                one,
                [0, 1, 1],
                [0, 0, 1],
            ),
            // A stem: 3 channels, 7x7, stride 2, pad 3.
            params(
                1,
                3,
                64,
                1,
                [1, 32, 30],
                [1, 7, 7],
                [1, 2, 2],
                one,
                [0, 3, 3],
                [0, 3, 3],
            ),
            // Dilated along rows (one run per tap), 1-D, 3-D, asymmetric padding.
            params(
                1,
                6,
                20,
                1,
                [1, 12, 12],
                [1, 3, 3],
                one,
                [1, 2, 2],
                [0, 2, 2],
                [0, 2, 2],
            ),
            params(
                1,
                6,
                20,
                1,
                [1, 1, 40],
                [1, 1, 5],
                [1, 1, 3],
                one,
                [0, 0, 2],
                [0, 0, 1],
            ),
            params(
                1,
                4,
                18,
                1,
                [5, 6, 7],
                [3, 3, 3],
                one,
                one,
                [1, 1, 1],
                [1, 1, 1],
            ),
            // Valid windows read in place without padding.
            params(
                1,
                9,
                17,
                1,
                [1, 8, 8],
                [1, 3, 2],
                [1, 1, 2],
                one,
                [0; 3],
                [0; 3],
            ),
            // Grouped: RegNet's 8-channel groups, wider groups with panel tails, a channel
            // multiplier of 2 on one input channel per group.
            params(
                1,
                48,
                48,
                6,
                [1, 9, 9],
                [1, 3, 3],
                [1, 2, 2],
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                2,
                40,
                60,
                2,
                [1, 7, 8],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                1,
                6,
                12,
                6,
                [1, 6, 6],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            // Depthwise: 3x3 and 5x5, strides, channel tails, tiny planes; unit-stride rows
            // long enough for several sliding-window tiles and a partial one.
            // More channels than pixels, enough work for threads: they split the channels
            // (with a channel tail).
            params(
                2,
                600,
                600,
                600,
                [1, 7, 7],
                [1, 5, 5],
                one,
                one,
                [0, 2, 2],
                [0, 2, 2],
            ),
            params(
                1,
                72,
                72,
                72,
                [1, 6, 21],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                2,
                40,
                40,
                40,
                [1, 7, 23],
                [1, 5, 5],
                one,
                one,
                [0, 2, 2],
                [0, 2, 2],
            ),
            params(
                1,
                16,
                16,
                16,
                [1, 12, 12],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                2,
                72,
                72,
                72,
                [1, 11, 13],
                [1, 3, 3],
                [1, 2, 2],
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                1,
                200,
                200,
                200,
                [1, 7, 7],
                [1, 5, 5],
                one,
                one,
                [0, 2, 2],
                [0, 2, 2],
            ),
            params(
                1,
                40,
                40,
                40,
                [1, 9, 10],
                [1, 5, 5],
                [1, 2, 2],
                one,
                [0, 2, 2],
                [0, 1, 2],
            ),
            params(
                1,
                33,
                33,
                33,
                [1, 9, 9],
                [1, 3, 3],
                one,
                [1, 2, 2],
                [0, 2, 2],
                [0, 2, 2],
            ),
            params(
                1,
                24,
                24,
                24,
                [1, 1, 30],
                [1, 1, 7],
                one,
                one,
                [0, 0, 3],
                [0, 0, 3],
            ),
            params(
                1,
                20,
                20,
                20,
                [4, 5, 6],
                [3, 3, 3],
                one,
                one,
                [1, 1, 1],
                [1, 1, 1],
            ),
            // Output rows one pixel wide: a GEMM panel of the channels-first reference spans
            // one piece per column (found by the random geometries below).
            params(
                2,
                27,
                3,
                3,
                [5, 5, 1],
                [3, 3, 3],
                [1, 1, 2],
                one,
                [2, 2, 0],
                [1, 2, 2],
            ),
            // Depthwise rows of the sliding-window kernel: several 16-pixel interior tiles,
            // padding on one side only, none, rows narrower than the kernel, stride 2.
            params(
                1,
                24,
                24,
                24,
                [1, 4, 45],
                [1, 3, 3],
                one,
                one,
                [0, 0, 0],
                [0, 2, 2],
            ),
            params(
                1,
                17,
                17,
                17,
                [1, 6, 40],
                [1, 5, 5],
                one,
                one,
                [0; 3],
                [0; 3],
            ),
            params(
                1,
                32,
                32,
                32,
                [1, 5, 2],
                [1, 5, 5],
                one,
                one,
                [0, 2, 2],
                [0, 2, 2],
            ),
            params(
                1,
                48,
                48,
                48,
                [1, 7, 34],
                [1, 3, 3],
                [1, 2, 2],
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                1,
                20,
                20,
                20,
                [1, 9, 30],
                [1, 7, 7],
                one,
                one,
                [0, 3, 3],
                [0, 3, 3],
            ),
            params(
                1,
                19,
                19,
                19,
                [1, 5, 33],
                [1, 5, 5],
                [1, 2, 2],
                one,
                [0, 2, 1],
                [0, 1, 2],
            ),
        ];
        let chains: [&[A]; 4] = [
            &[],
            &[A::Relu],
            &[A::HardSwish, A::Clip(-0.5, 0.5)],
            &[A::Sigmoid],
        ];
        // Under Miri (some thousand times slower), small forms of the kinds above: pointwise,
        // 3x3 over two panels, strided with asymmetric padding, grouped with a channel
        // multiplier, depthwise with a channel tail, 1-D and 3-D.
        let tiny = [
            params(1, 5, 7, 1, [1, 3, 4], one, one, one, [0; 3], [0; 3]),
            params(
                1,
                2,
                17,
                1,
                [1, 2, 3],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                2,
                3,
                5,
                1,
                [1, 5, 4],
                [1, 3, 3],
                [1, 2, 2],
                one,
                [0, 1, 1],
                [0, 0, 1],
            ),
            params(
                1,
                6,
                12,
                6,
                [1, 3, 3],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                1,
                17,
                17,
                17,
                [1, 3, 5],
                [1, 3, 3],
                one,
                one,
                [0, 1, 1],
                [0, 1, 1],
            ),
            params(
                1,
                3,
                5,
                1,
                [1, 1, 12],
                [1, 1, 5],
                [1, 1, 3],
                one,
                [0, 0, 2],
                [0, 0, 1],
            ),
            params(
                1,
                2,
                3,
                1,
                [2, 2, 3],
                [3, 3, 3],
                one,
                one,
                [1, 1, 1],
                [1, 1, 1],
            ),
        ];
        let cases: &[ConvParams] = if cfg!(miri) { &tiny } else { &cases };
        for (i, p) in cases.iter().enumerate() {
            check(p, chains[i % chains.len()]);
        }
    }

    #[test]
    fn row_products_match_the_gemm() {
        let cases: &[(usize, usize, usize)] = if cfg!(miri) {
            // Under Miri (some thousand times slower) small forms: a tail of rows, many
            // rows, and one wide product (GELU).
            &[(1, 5, 3), (9, 16, 20), (20, 3, 17), (1, 4, 400)]
        } else {
            &[
                (1, 5, 3),
                (9, 16, 40),
                (37, 70, 100),
                (130, 3, 17),
                (20, 300, 400),
                (197, 100, 400),
                // Weights that do not stay in cache, over several blocks of rows: each tile's
                // panels go over every block while the next panels are prefetched.
                (300, 300, 1000),
            ]
        };
        for &(m, k, n) in cases {
            let a = values(m * k, 5);
            let b = values(k * n, 6);
            let bias = values(n, 7);
            let residual = values(m * n, 8);
            // GELU (a transcendental: the whole tile at once) on the wide products.
            let act = if n >= 400 {
                Activation::Gelu
            } else {
                Activation::Relu
            };
            let mut want = residual.clone();
            for (i, row) in want.chunks_exact_mut(n).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v += bias[j] + (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
                    *v = act.apply(*v);
                }
            }
            let mut packed = std::vec![0.0; n.div_ceil(PANEL) * PANEL * k];
            for p in 0..k {
                for j in 0..n {
                    packed[((j / PANEL) * k + p) * PANEL + j % PANEL] = b[p * n + j];
                }
            }
            let mut one_thread = std::vec::Vec::new();
            for (portable, threads) in [(false, 1), (false, 2), (true, 2)] {
                let mut got = std::vec![f32::NAN; m * n];
                let mut run = || {
                    gemm_rows_f32_exec(
                        &Exec::with_threads(threads),
                        (m, n, k),
                        &a,
                        &packed,
                        Some(&bias),
                        Some(&residual),
                        &mut got,
                        &[act],
                    )
                };
                if portable {
                    crate::gemm_x86_64::without_avx512(run);
                } else {
                    run();
                }
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{m}x{k}x{n} {i}: {g} {w}"
                    );
                }
                // The same kernel gives the same bits however the work is split.
                if threads == 1 {
                    one_thread = got;
                } else if !portable {
                    let same = got
                        .iter()
                        .zip(&one_thread)
                        .all(|(g, o)| g.to_bits() == o.to_bits());
                    assert!(same, "{m}x{k}x{n}: two threads differ from one");
                }
            }
        }
    }

    #[test]
    fn channels_last_conv_matches_channels_first() {
        cases();
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri no CPU feature is detected: the same paths as the test above"
    )]
    fn channels_last_conv_matches_channels_first_without_avx512() {
        crate::gemm_x86_64::without_avx512(cases);
    }

    /// A random 1-D, 2-D or 3-D convolution: dense, grouped or depthwise, with strides,
    /// dilations and asymmetric padding; `None` when the window does not fit.
    fn random_params(rng: &mut impl Source) -> Option<ConvParams> {
        let spatial = [1, 2, 2, 2, 3][rng.below(5)];
        let mut input = [1; 3];
        let mut kernel = [1; 3];
        let (mut strides, mut dilations, mut pads, mut pads_end) = ([1; 3], [1; 3], [0; 3], [0; 3]);
        // Under Miri, smaller images and fewer channels.
        let miri = cfg!(miri);
        for i in 3 - spatial..3 {
            input[i] = rng.range(
                1,
                match (spatial == 3, miri) {
                    (true, false) => 6,
                    (false, false) => 24,
                    (true, true) => 2,
                    (false, true) => 4,
                },
            );
            kernel[i] = [1, 1, 2, 3, 3, 5, 7][rng.below(7)].min(input[i] + 2);
            strides[i] = rng.range(1, 3);
            dilations[i] = if rng.below(4) == 0 { 2 } else { 1 };
            pads[i] = rng.below(kernel[i].min(4));
            pads_end[i] = rng.below(kernel[i].min(4));
            if input[i] + pads[i] + pads_end[i] < (kernel[i] - 1) * dilations[i] + 1 {
                return None;
            }
        }
        let (groups, c, m) = match rng.below(3) {
            0 => {
                let c = rng.range(1, if miri { 8 } else { 70 });
                (c, c, c)
            }
            1 => {
                let g = rng.range(2, 4);
                let (cg, mg) = if miri { (2, 3) } else { (9, 12) };
                (g, g * rng.range(1, cg), g * rng.range(1, mg))
            }
            _ => {
                let (c, m) = if miri { (4, 8) } else { (40, 70) };
                (1, rng.range(1, c), rng.range(1, m))
            }
        };
        let p = params(
            rng.range(1, 2),
            c,
            m,
            groups,
            input,
            kernel,
            strides,
            dilations,
            pads,
            pads_end,
        );
        nhwc_supported(&p).then_some(p)
    }

    /// The convolution by its definition, in f64: `x: [N, C, *in]`, `w: [M, C/g, *k]`, then
    /// bias, residual and `acts`.
    fn direct(
        p: &ConvParams,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        residual: &[f32],
        acts: &[Activation],
    ) -> Vec<f32> {
        let (cg, mg) = (p.in_channels / p.groups, p.out_channels / p.groups);
        let mut out = std::vec![0.0f32; p.batch * p.out_channels * p.output_len()];
        let mut o = 0;
        for n in 0..p.batch {
            for oc in 0..p.out_channels {
                let g = oc / mg;
                for oz in 0..p.output[0] {
                    for oy in 0..p.output[1] {
                        for ox in 0..p.output[2] {
                            let mut sum = 0.0f64;
                            for ic in 0..cg {
                                for kz in 0..p.kernel[0] {
                                    for ky in 0..p.kernel[1] {
                                        for kx in 0..p.kernel[2] {
                                            let at = [(oz, kz), (oy, ky), (ox, kx)];
                                            let pos: [isize; 3] = core::array::from_fn(|i| {
                                                (at[i].0 * p.strides[i] + at[i].1 * p.dilations[i])
                                                    as isize
                                                    - p.pads[i] as isize
                                            });
                                            if (0..3).any(|i| {
                                                pos[i] < 0 || pos[i] >= p.input[i] as isize
                                            }) {
                                                continue;
                                            }
                                            let pixel = (pos[0] as usize * p.input[1]
                                                + pos[1] as usize)
                                                * p.input[2]
                                                + pos[2] as usize;
                                            let xv = x[((n * p.in_channels + g * cg + ic)
                                                * p.input_len())
                                                + pixel];
                                            let wv = w[((oc * cg + ic) * p.kernel[0] + kz)
                                                * p.kernel[1]
                                                * p.kernel[2]
                                                + ky * p.kernel[2]
                                                + kx];
                                            sum += f64::from(xv) * f64::from(wv);
                                        }
                                    }
                                }
                            }
                            out[o] = (sum + f64::from(bias[oc]) + f64::from(residual[o])) as f32;
                            o += 1;
                        }
                    }
                }
            }
        }
        Activation::apply_chain(acts, &mut out);
        out
    }

    /// One random case of [`crate::testing::conv`]; a geometry that does not fit is skipped.
    pub(crate) fn random_case(rng: &mut impl Source) {
        use Activation as A;
        let chains: [&[A]; 4] = [&[], &[A::Relu], &[A::HardSwish], &[A::Clip(-0.25, 0.5)]];
        let Some(p) = random_params(rng) else {
            return;
        };
        let acts = chains[rng.below(chains.len())];
        // The channels-first convolution against the definition (the inputs `check` uses).
        let (n, c, m) = (p.batch, p.in_channels, p.out_channels);
        let x = values(n * c * p.input_len(), 1);
        let w = values(m * (c / p.groups) * p.kernel_len(), 2);
        let bias = values(m, 3);
        let residual = values(n * m * p.output_len(), 4);
        let want = direct(&p, &x, &w, &bias, &residual, acts);
        let mut got = std::vec![f32::NAN; want.len()];
        crate::conv::conv_f32_exec(
            &Exec::single(),
            &p,
            &x,
            &w,
            Some(&bias),
            Some(&residual),
            &mut got,
            acts,
        );
        for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "channels first, {p:?}, {acts:?}: output {i} is {a}, expected {b}"
            );
        }
        // Then the channels-last kernels against it, with and without AVX-512.
        check(&p, acts);
        crate::gemm_x86_64::without_avx512(|| check(&p, acts));
    }

    #[cfg(test)]
    proptest::proptest! {
        #![proptest_config(crate::testing::config(60))]
        #[test]
        fn random_geometries_match_the_definition(tape in crate::testing::tape()) {
            random_case(&mut crate::testing::Tape(&tape));
        }
    }
}
