//! The packed operand layouts of the int8 GEMM (`sinter_rt::int8`), written once for both
//! sides: the runtime packs activations with them on every run, and the compiler (which
//! includes this file as `sinter::ir::int8_pack`) packs constant weights with them at compile
//! time, so the two can never disagree. Uses `core` only and no other module of this crate.
//!
//! The unit of depth is a *group* of `GROUP` consecutive `k` indices: one 32-bit lane of a
//! `vpdpbusd` multiplies four byte pairs and adds them into one `i32`. Depth is padded with
//! zeros to whole groups.
//!
//! - **Column panels** (the vector operand): columns in panels of `PANEL`; a panel is
//!   `k_groups` blocks of `PANEL x GROUP` bytes, column-major inside the block, so one 64-byte
//!   load holds four depths of sixteen columns. Columns past `n` are zero.
//! - **Row-major rows** (the broadcast operand): `rows x padded_depth(k)` bytes, each row's
//!   depth zero-padded to whole groups, so that four bytes of one row are one broadcast.

/// Columns of one packed panel.
pub const PANEL: usize = 16;
/// Depth indices per group (bytes per `i32` lane of a dot-product instruction).
pub const GROUP: usize = 4;

/// Groups of depth `k`.
#[inline]
pub const fn k_groups(k: usize) -> usize {
    k.div_ceil(GROUP)
}

/// `k` rounded up to whole groups.
#[inline]
pub const fn padded_depth(k: usize) -> usize {
    k_groups(k) * GROUP
}

/// Bytes of one packed column panel of depth `k`.
#[inline]
pub const fn panel_bytes(k: usize) -> usize {
    k_groups(k) * PANEL * GROUP
}

/// Bytes of a `k x n` operand packed as column panels.
#[inline]
pub const fn packed_cols_len(k: usize, n: usize) -> usize {
    n.div_ceil(PANEL) * panel_bytes(k)
}

/// Packs the `k x n` operand whose element `(depth, column)` is `get(depth, column)` into
/// column panels (`out.len() >= packed_cols_len(k, n)`; padding is zero).
pub fn pack_cols<T: Copy + Default>(
    k: usize,
    n: usize,
    get: impl Fn(usize, usize) -> T,
    out: &mut [T],
) {
    let kg = k_groups(k);
    for (panel, dst) in out
        .chunks_exact_mut(panel_bytes(k))
        .take(n.div_ceil(PANEL))
        .enumerate()
    {
        for g in 0..kg {
            for c in 0..PANEL {
                let col = panel * PANEL + c;
                for d in 0..GROUP {
                    let depth = g * GROUP + d;
                    dst[(g * PANEL + c) * GROUP + d] = if col < n && depth < k {
                        get(depth, col)
                    } else {
                        T::default()
                    };
                }
            }
        }
    }
}

/// Bytes of `rows` rows of depth `k` stored row-major with padded depth.
#[inline]
pub const fn packed_rows_len(rows: usize, k: usize) -> usize {
    rows * padded_depth(k)
}

/// Packs the `rows x k` operand whose element `(row, depth)` is `get(row, depth)` as
/// row-major rows of padded depth (`out.len() >= packed_rows_len(rows, k)`).
pub fn pack_rows<T: Copy + Default>(
    rows: usize,
    k: usize,
    get: impl Fn(usize, usize) -> T,
    out: &mut [T],
) {
    let kp = padded_depth(k);
    for (r, dst) in out.chunks_exact_mut(kp.max(1)).take(rows).enumerate() {
        for (depth, slot) in dst.iter_mut().enumerate() {
            *slot = if depth < k {
                get(r, depth)
            } else {
                T::default()
            };
        }
    }
}

/// Rows of the broadcast operand a kernel may read past the last one it stores: packed
/// convolution weights end with this many zero rows, so a partial last tile stays inside them.
pub const ROW_BLOCK: usize = 8;

/// Bytes of convolution weights packed as rows: the `M = groups * cout_g` rows of depth `k`
/// (`C/groups * kernel`), each padded to whole groups, then [`ROW_BLOCK`] zero rows.
/// Depthwise convolutions (one input and one output channel per group) keep their plain
/// `[M, kernel]` layout instead.
#[inline]
pub const fn packed_conv_len(groups: usize, cout_g: usize, k: usize, depthwise: bool) -> usize {
    if depthwise {
        groups * cout_g * k
    } else {
        (groups * cout_g + ROW_BLOCK) * padded_depth(k)
    }
}

/// The extent, along each spatial axis, of the input window an int8 convolution reads:
/// `(output - 1) * stride + (kernel - 1) * dilation + 1` (0 for an empty output), in the
/// coordinates of the input padded at the start by `pads`.
pub const fn conv_window(
    output: [usize; 3],
    kernel: [usize; 3],
    strides: [usize; 3],
    dilations: [usize; 3],
) -> [usize; 3] {
    let mut ext = [0; 3];
    let mut a = 0;
    while a < 3 {
        if output[a] > 0 && kernel[a] > 0 {
            ext[a] = (output[a] - 1) * strides[a] + (kernel[a] - 1) * dilations[a] + 1;
        }
        a += 1;
    }
    ext
}

/// Whether windows of extent `ext` (from [`conv_window`]) with no padding at the start lie
/// inside the input.
const fn window_inside(ext: [usize; 3], input: [usize; 3], pads: [usize; 3]) -> bool {
    let mut a = 0;
    while a < 3 {
        if pads[a] != 0 || ext[a] > input[a] {
            return false;
        }
        a += 1;
    }
    true
}

/// Bytes of the zero-padded input copy a dense or grouped int8 convolution packs its columns
/// from: `batch * channels` planes of [`conv_window`]; 0 when it reads the input in place
/// (no padding at the start, a window inside the input) or is depthwise.
#[allow(
    clippy::too_many_arguments,
    reason = "a convolution's geometry, axis by axis"
)]
pub const fn padded_conv_input_len(
    batch: usize,
    channels: usize,
    depthwise: bool,
    input: [usize; 3],
    output: [usize; 3],
    kernel: [usize; 3],
    strides: [usize; 3],
    dilations: [usize; 3],
    pads: [usize; 3],
) -> usize {
    let ext = conv_window(output, kernel, strides, dilations);
    if depthwise || window_inside(ext, input, pads) {
        return 0;
    }
    batch * channels * ext[0] * ext[1] * ext[2]
}

/// `f32` elements of working memory an int8 recurrent layer (`int8::rnn_exec`) needs, for a
/// cell of `gates` gates: the float driver's buffers (every step's input products, one step's
/// recurrent products, the hidden and cell states, GRU's `r . H`), a copy of `H`, and the
/// quantized `X` and `H` (bytes, four to an element).
pub const fn rnn_int8_scratch_len(
    gates: usize,
    seq: usize,
    batch: usize,
    input: usize,
    hidden: usize,
) -> usize {
    let gh = gates * hidden;
    let driver = seq * batch * gh + batch * gh + 4 * batch * hidden;
    driver + batch * hidden + (seq * batch * input + batch * hidden).div_ceil(4)
}

/// The deepest dense convolution (`kernel * C` with `C` rounded up to a multiple of 4) the
/// channels-last int8 kernel (`int8::conv_nhwc_exec`) takes: kernel families without
/// AVX-512 gather a tile of rows this deep.
pub const CHANNELS_LAST_MAX_DEPTH: usize = 4608;

/// The most kernel taps the channels-last int8 kernel takes (it keeps one offset per tap).
pub const CHANNELS_LAST_MAX_TAPS: usize = 128;

/// The multiple the channels-last int8 convolutions round their input channels up to: a
/// group of four bytes for dense ones (each tap starts a group), a vector of sixteen for
/// depthwise ones (channels are the vector lanes).
pub const fn channels_last_align(depthwise: bool) -> usize {
    if depthwise {
        PANEL
    } else {
        GROUP
    }
}

/// Bytes of the padded input copy the channels-last int8 convolution reads its windows from:
/// `batch` images of the [`conv_window`] with `channels` rounded up to a multiple of
/// [`channels_last_align`]; 0 when it reads a `uint8` (`unsigned`) input in place (no
/// padding at the start, a window inside the input, whole multiples of channels).
#[allow(
    clippy::too_many_arguments,
    reason = "a convolution's geometry, axis by axis"
)]
pub const fn channels_last_padded_len(
    batch: usize,
    channels: usize,
    depthwise: bool,
    unsigned: bool,
    input: [usize; 3],
    output: [usize; 3],
    kernel: [usize; 3],
    strides: [usize; 3],
    dilations: [usize; 3],
    pads: [usize; 3],
) -> usize {
    let ext = conv_window(output, kernel, strides, dilations);
    let align = channels_last_align(depthwise);
    if unsigned && channels.is_multiple_of(align) && window_inside(ext, input, pads) {
        return 0;
    }
    batch * ext[0] * ext[1] * ext[2] * channels.div_ceil(align) * align
}
