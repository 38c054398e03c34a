//! Runs convolutions channels last (`[N, *spatial, C]`), as ONNX Runtime runs its quantized
//! ones and its channel-blocked (NCHWc) float ones.
//!
//! Channels first, a convolution must interleave its input into column panels (im2col) for
//! every block of pixels, which costs as much as the products when a layer has few output
//! channels, and a depthwise layer vectorizes over pixels, which wastes lanes on small planes.
//! Channels last, each output pixel's window is one broadcast row of the product and the
//! output channels are its columns: a pointwise layer reads its input in place, any other
//! reads contiguous runs of channels (`sinter_rt::int8::conv_nhwc_exec`,
//! `sinter_rt::conv_nhwc`), and a depthwise layer puts 16 channels in a vector.
//!
//! The pass:
//! 1. rewrites as `Transpose(to channels last) -> channels-last product -> Transpose(back)`:
//!    - every `sinter::Int8Product` convolution (dense, or depthwise without a weight zero
//!      point) on 8-bit activations with constant quantization parameters, its weights
//!      repacked as column panels with the depth over the taps, then the channels;
//!    - every float `Conv` with constant weights, dense, grouped or depthwise, its weights
//!      repacked for `sinter_rt::conv_nhwc`; at -O3, 2-D 3x3 stride-1 layers with at least
//!      32 input channels take Winograd-transformed weights (`sinter_rt::conv_winograd`;
//!      16/9 the size of the layer's weights);
//!    - a layer whose input is truly channels first (a network's first layer) reads it as it
//!      is: its padded copy is transposed as it is made;
//! 2. moves each `Transpose(back)` below the ops that do not care where the channels are or
//!    have a channels-last form: elementwise ops, quantize and dequantize per tensor,
//!    `QLinearAdd`/`QLinearMul`, binary ops and `Sum`/`Max`/`Min`/`Mean` (an operand that
//!    does not come from a transpose back must be one value or have no spatial extent, like a
//!    squeeze-excitation gate), `Concat`/`QLinearConcat` on the channel axis, `Slice` and
//!    `Split`, inference `BatchNormalization`, `MaxPool`, `AveragePool` (float),
//!    `GlobalAveragePool`, `GlobalMaxPool`, `QLinearGlobalAveragePool`, reductions with
//!    constant axes (their axes moved; without kept dims, when the kept axes stay in order:
//!    `ReduceMean` over the spatial axes, a global pool written as a mean, needs no transpose
//!    after it), and channel shuffles (`Reshape -> Transpose -> Reshape` that swap two factors
//!    of the channel axis);
//! 3. lets [`simplify_transpose`] cancel each `Transpose(back)` against the next layer's
//!    `Transpose(to channels last)`.
//!
//! What remains are transposes where the chain of channels-last ops meets an op without that
//! form (a reshape, a softmax over channels), typically one at each end of the network.

use std::collections::HashMap;

use super::pattern::{add_constant, add_typed, input, int_attr, ints_attr, new_node, output};
use super::{eliminate_dead, infer_shapes_cx, simplify_transpose, OptLevel, PassCx};
use crate::error::Result;
use crate::ir::int8_pack::{self, CHANNELS_LAST_MAX_DEPTH, CHANNELS_LAST_MAX_TAPS, GROUP};
use crate::ir::{DType, Graph, Node, Tensor, ValueId};
use crate::ops::conv::{Conv, ConvLayout};
use crate::ops::int8::{Int8Product, Int8Shape};
use crate::ops::movement::ReshapeKind;
use crate::ops::Op;

/// The permutation that moves axis 1 (channels) of a rank-`rank` tensor last.
fn to_last(rank: usize) -> Vec<usize> {
    let mut perm = vec![0];
    perm.extend(2..rank);
    perm.push(1);
    perm
}

/// The permutation that moves the last axis back to 1.
fn to_first(rank: usize) -> Vec<usize> {
    let mut perm = vec![0, rank - 1];
    perm.extend(1..rank - 1);
    perm
}

/// The `Transpose(back)` to channels first (of a rank-`rank` tensor) that produced `v`, if
/// that is what produced it.
fn back_transpose<'a>(
    v: ValueId,
    rank: usize,
    done: &'a [Node],
    producer: &HashMap<ValueId, usize>,
) -> Option<&'a Node> {
    let node = &done[*producer.get(&v)?];
    let back: Vec<i64> = to_first(rank).iter().map(|&a| a as i64).collect();
    matches!(&node.op, Some(Op::Transpose(t)) if t.perm.as_deref() == Some(&back[..]))
        .then_some(node)
}

/// Runs the rewrite (see the module doc).
pub fn channels_last(mut graph: Graph, cx: &PassCx) -> Result<Graph> {
    let nodes = std::mem::take(&mut graph.nodes);
    let mut out: Vec<Node> = Vec::with_capacity(nodes.len());
    // Where each value's producer sits in `out`.
    let mut producer: HashMap<ValueId, usize> = HashMap::new();
    let mut changed = false;
    for node in nodes {
        let rewritten = convert_conv(&mut graph, &node, &out, &producer)
            .or_else(|| convert_float_conv(&mut graph, &node, &out, &producer, cx))
            .or_else(|| shuffle(&mut graph, &node, &out, &producer))
            .or_else(|| sink(&mut graph, &node, &out, &producer));
        changed |= rewritten.is_some();
        for node in rewritten.unwrap_or_else(|| vec![node]) {
            for &v in node.outputs.iter().flatten() {
                producer.insert(v, out.len());
            }
            out.push(node);
        }
    }
    graph.nodes = out;
    if !changed {
        return Ok(graph);
    }
    // The transposes and channels-last nodes on a batch of run-time size vary as it does.
    super::infer_shapes::refresh_dynamic(&mut graph)?;
    let graph = simplify_transpose(graph, cx)?;
    // Transposes that cancel on values of run-time shape left Identity nodes.
    let graph = if graph.values.iter().any(|v| v.is_dynamic()) {
        super::remove_noops(graph, cx)?
    } else {
        graph
    };
    eliminate_dead(graph, cx)
}

/// `Transpose(x, perm)` into a new value (or into `to` when given), named after `like`.
fn transpose(
    graph: &mut Graph,
    x: ValueId,
    perm: &[usize],
    to: Option<ValueId>,
    name: String,
    like: &Node,
) -> Option<(Node, ValueId)> {
    let value = graph.value(x);
    let (dtype, shape) = (value.dtype, value.shape.clone()?);
    let out = match to {
        Some(v) => v,
        None => {
            let shape = perm.iter().map(|&a| shape[a]).collect();
            add_typed(graph, format!("{name}/out"), dtype, Some(shape))
        }
    };
    let perm: Vec<i64> = perm.iter().map(|&a| a as i64).collect();
    let mut node = new_node(
        name,
        "Transpose",
        vec![Some(x)],
        vec![Some(out)],
        vec![ints_attr("perm", &perm)],
        like,
    )?;
    // An `ai.onnx` op, whatever domain `like` comes from.
    node.opset = graph.opset;
    Some((node, out))
}

/// A dense 8-bit convolution as `Transpose -> channels-last product -> Transpose`.
fn convert_conv(
    graph: &mut Graph,
    node: &Node,
    done: &[Node],
    producer: &HashMap<ValueId, usize>,
) -> Option<Vec<Node>> {
    let Some(Op::Int8Product(product)) = &node.op else {
        return None;
    };
    let Int8Shape::Conv(conv) = &product.shape else {
        return None;
    };
    let x = input(node, 0)?;
    let x_value = graph.value(x);
    let (dtype, x_shape) = (x_value.dtype?, x_value.shape.clone()?);
    let w_shape = conv.packed_from.clone()?;
    let rank = x_shape.len();
    // Activations quantized at run time (sinter's `--quantize dynamic`, or ORT's
    // `DynamicQuantizeLinear` feeding the product its zero point and scale) stay channels
    // first: their float epilogues and the float ops between them measured faster there.
    if product.dynamic
        || input(node, 1).is_some()
        || input(node, 2).is_some()
        || !matches!(dtype, DType::U8 | DType::I8)
        || !(3..=5).contains(&rank)
        || w_shape.len() != rank
        || node.outputs.len() != 1
    {
        return None;
    }
    let (m, c) = (w_shape[0], w_shape[1]);
    let taps: usize = w_shape[2..].iter().product();
    let rows = graph.value(input(node, 3)?).constant.as_ref()?;
    if taps > CHANNELS_LAST_MAX_TAPS || rows.dtype != DType::I8 {
        return None;
    }
    let (packed, shape) = if conv.group == 1 {
        (
            dense_weights(&rows.bytes, m, c, taps)?,
            Int8Shape::ConvChannelsLast(conv.clone()),
        )
    } else {
        // Depthwise, without a weight zero point (the kernel corrects for the input's only).
        let zero = graph.value(input(node, 5)?).constant.as_ref()?.to_i64s()?;
        if conv.group != m || c != 1 || x_shape[1] != m || zero.iter().any(|&z| z != 0) {
            return None;
        }
        (
            depthwise_weights(&rows.bytes, m, taps)?,
            Int8Shape::DepthwiseChannelsLast(conv.clone()),
        )
    };
    let name = &node.name;
    let weights = add_constant(
        graph,
        format!("{name}/channels_last_int8"),
        Tensor {
            dtype: DType::I8,
            shape: vec![packed.len()],
            bytes: packed.iter().map(|&v| v as u8).collect(),
        },
    );
    // A dense layer whose input is truly channels first (not a transpose back from an
    // earlier channels-last layer: a network's first layer) transposes it while it pads it.
    let from_back = back_transpose(x, rank, done, producer).is_some();
    let mut inputs = node.inputs.clone();
    inputs[3] = Some(weights);
    let mut nodes = Vec::new();
    let shape = match shape {
        Int8Shape::ConvChannelsLast(conv) if !from_back => Int8Shape::ConvFromChannelsFirst(conv),
        shape => {
            move_input_last(graph, node, &mut inputs, 0, "to", &mut nodes)?;
            shape
        }
    };
    // A fused residual is read in the output's layout.
    if inputs.get(8).copied().flatten().is_some() {
        move_input_last(graph, node, &mut inputs, 8, "residual", &mut nodes)?;
    }
    let mut conv_node = node.clone();
    conv_node.inputs = inputs;
    conv_node.op = Some(Op::Int8Product(Int8Product {
        shape,
        ..product.clone()
    }));
    nodes.extend(with_output_channels_last(graph, conv_node, node, rank)?);
    Some(nodes)
}

/// Most runs of contiguous input a dense float window may have
/// (`sinter_rt::conv_nhwc::MAX_RUNS`).
const FLOAT_MAX_RUNS: usize = 64;

/// Output channels per float weight panel (`sinter_rt::conv_nhwc::PANEL`).
const FLOAT_PANEL: usize = 16;

/// Rows of a panel of the channels-first GEMM-packed weights (`pack_weights`).
const GEMM_PANEL_ROWS: usize = 8;

/// A dense or depthwise float convolution as `Transpose -> channels-last Conv -> Transpose`
/// (a dense layer whose input is truly channels first reads it as it is).
fn convert_float_conv(
    graph: &mut Graph,
    node: &Node,
    done: &[Node],
    producer: &HashMap<ValueId, usize>,
    cx: &PassCx,
) -> Option<Vec<Node>> {
    let Some(Op::Conv(conv)) = &node.op else {
        return None;
    };
    let x = input(node, 0)?;
    let w = input(node, 1)?;
    let x_value = graph.value(x);
    let x_shape = x_value.shape.clone()?;
    let rank = x_shape.len();
    if conv.layout != ConvLayout::ChannelsFirst
        || x_value.dtype != Some(DType::F32)
        || !(3..=5).contains(&rank)
        || node.outputs.len() != 1
    {
        return None;
    }
    let w_value = graph.value(w);
    let w_shape = conv.packed_from.clone().or_else(|| w_value.shape.clone())?;
    let weights = w_value.constant.as_ref()?.as_f32()?;
    if w_shape.len() != rank {
        return None;
    }
    let (m, cg, c) = (w_shape[0], w_shape[1], x_shape[1]);
    let kernel = &w_shape[2..];
    let taps: usize = kernel.iter().product();
    let depthwise = conv.group > 1 && conv.group == c && conv.group == m && cg == 1;
    let dilated_rows = conv.window.dilations.last().is_some_and(|&d| d != 1);
    // A run per kernel row, or per tap when dilated along rows or grouped.
    let runs = taps
        / if dilated_rows || conv.group > 1 {
            1
        } else {
            kernel[kernel.len() - 1].max(1)
        };
    let groups = conv.group.max(1);
    let grouped = c.is_multiple_of(groups) && m.is_multiple_of(groups) && cg * groups == c;
    if !(grouped && runs <= FLOAT_MAX_RUNS || depthwise) || taps == 0 {
        return None;
    }
    // A dense layer of fewer output channels than one panel would leave most of the tile's
    // lanes idle: the channels-first kernels (a direct one for such stems) serve it better.
    if !depthwise && m < FLOAT_PANEL {
        return None;
    }
    let mg = m / groups;
    let k = cg * taps;
    // The plain `[M, C/group * taps]` weights.
    let plain = match &conv.packed_from {
        Some(_) => {
            // Per group, panels of 8 rows interleaved (`pack_weights`).
            let panels = mg.div_ceil(GEMM_PANEL_ROWS);
            if weights.len() < groups * panels * GEMM_PANEL_ROWS * k {
                return None;
            }
            let mut plain = vec![0f32; m * k];
            for (row, dst) in plain.chunks_exact_mut(k).enumerate() {
                let (g, i) = (row / mg, row % mg);
                for (q, v) in dst.iter_mut().enumerate() {
                    *v = weights[((g * panels + i / GEMM_PANEL_ROWS) * k + q) * GEMM_PANEL_ROWS
                        + i % GEMM_PANEL_ROWS];
                }
            }
            plain
        }
        None if weights.len() == m * k => weights,
        None => return None,
    };
    let from_back = back_transpose(x, rank, done, producer).is_some();
    // Winograd F(2x2, 3x3) at -O3, where it measured faster than the direct kernel: 2-D 3x3
    // stride-1 layers with at least 32 input channels and enough products per transformed
    // value (see `WINOGRAD_MIN_PRODUCTS`), reading channels last.
    let ones = |v: &[usize]| v.iter().all(|&d| d == 1);
    let winograd = (cx.opt_level >= OptLevel::O3
        && conv.group == 1
        && rank == 4
        && kernel == [3, 3]
        && ones(&conv.window.strides)
        && ones(&conv.window.dilations)
        && c >= WINOGRAD_MIN_CHANNELS
        && c * m >= WINOGRAD_MIN_PRODUCTS * (c + m)
        && m >= FLOAT_PANEL
        && from_back)
        .then(|| {
            // F(4x4, 3x3) where the image has many tiles; F(2x2, 3x3) on small images, whose
            // few tiles would read 2.25x the transformed weights for fewer multiplies saved.
            let out = graph.value(node.outputs[0]?).shape.as_deref()?;
            let pixels = out.get(2)? * out.get(3)?;
            Some(if pixels >= WINOGRAD4_MIN_PIXELS { 4 } else { 2 })
        })
        .flatten();
    let packed = if let Some(t) = winograd {
        winograd_weights(&plain, m, c, t)
    } else if depthwise {
        // Taps by channels, padded to whole vectors.
        let cp = m.div_ceil(FLOAT_PANEL) * FLOAT_PANEL;
        let mut packed = vec![0f32; taps * cp];
        for ch in 0..m {
            for t in 0..taps {
                packed[t * cp + ch] = plain[ch * taps + t];
            }
        }
        packed
    } else {
        // Per group, column panels of 16 output channels, depth over (tap, channel).
        let panels = mg.div_ceil(FLOAT_PANEL);
        let mut packed = vec![0f32; groups * panels * FLOAT_PANEL * k];
        for j in 0..m {
            let (g, jg) = (j / mg, j % mg);
            for ch in 0..cg {
                for t in 0..taps {
                    let d = t * cg + ch;
                    packed[((g * panels + jg / FLOAT_PANEL) * k + d) * FLOAT_PANEL
                        + jg % FLOAT_PANEL] = plain[(j * cg + ch) * taps + t];
                }
            }
        }
        packed
    };
    let name = &node.name;
    let weights = add_constant(
        graph,
        format!("{name}/channels_last_f32"),
        Tensor::from_f32(vec![packed.len()], &packed),
    );
    let mut inputs = node.inputs.clone();
    inputs[1] = Some(weights);
    let mut nodes = Vec::new();
    let layout = if !from_back && !depthwise {
        ConvLayout::FromChannelsFirst
    } else {
        move_input_last(graph, node, &mut inputs, 0, "to", &mut nodes)?;
        ConvLayout::ChannelsLast
    };
    if conv.residual {
        move_input_last(graph, node, &mut inputs, 3, "residual", &mut nodes)?;
    }
    let mut conv_node = node.clone();
    conv_node.inputs = inputs;
    conv_node.op = Some(Op::Conv(Conv {
        packed_from: Some(w_shape),
        layout,
        winograd,
        ..conv.clone()
    }));
    nodes.extend(with_output_channels_last(graph, conv_node, node, rank)?);
    Some(nodes)
}

/// Replaces input `i` of `inputs` (one of `node`'s) by its transpose to channels last, named
/// `{node}/{what}_channels_last`, appended to `nodes`.
fn move_input_last(
    graph: &mut Graph,
    node: &Node,
    inputs: &mut [Option<ValueId>],
    i: usize,
    what: &str,
    nodes: &mut Vec<Node>,
) -> Option<()> {
    let v = inputs.get(i).copied().flatten()?;
    let rank = graph.value(v).shape.as_ref()?.len();
    let name = format!("{}/{what}_channels_last", node.name);
    let (t, moved) = transpose(graph, v, &to_last(rank), None, name, node)?;
    inputs[i] = Some(moved);
    nodes.push(t);
    Some(())
}

/// Input channels from which a 3x3 layer runs by Winograd's method (fewer measured slower:
/// the transforms cost more than the products save).
const WINOGRAD_MIN_CHANNELS: usize = 32;

/// Least `C * M / (C + M)` of a Winograd layer: its transforms cost about `C + M` per tile
/// position, its products `C * M`. Below it the transforms eat what the products save
/// (Inception-v3's 32 -> 32 and 32 -> 64 layers on 147 x 147 images ran 32% and 27% faster
/// direct; ResNet's 64 -> 64 layers, at 32, faster by Winograd).
const WINOGRAD_MIN_PRODUCTS: usize = 24;

/// Output side from which a Winograd layer takes F(4x4, 3x3) rather than F(2x2, 3x3): images
/// of at least this many pixels squared.
const WINOGRAD4_SIDE: usize = 28;

/// [`WINOGRAD4_SIDE`] squared.
const WINOGRAD4_MIN_PIXELS: usize = WINOGRAD4_SIDE * WINOGRAD4_SIDE;

/// 3x3 weights `[M, C * 9]` as Winograd F(t x t, 3x3) transforms `G g Gᵀ` (computed in f64;
/// `t` is 2 or 4), in `sinter_rt::conv_winograd`'s layout: per position `ξ = (t + 2) a + b`,
/// column panels of 16 output channels over the input channels.
fn winograd_weights(plain: &[f32], m: usize, c: usize, t: usize) -> Vec<f32> {
    const G2: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    // Lavin and Gray's G of F(4x4, 3x3).
    const G4: [[f64; 3]; 6] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    let g: &[[f64; 3]] = if t == 4 { &G4 } else { &G2 };
    let side = g.len();
    let panels = m.div_ceil(FLOAT_PANEL);
    let mut out = vec![0f32; side * side * panels * FLOAT_PANEL * c];
    for j in 0..m {
        for ch in 0..c {
            let k = &plain[(j * c + ch) * 9..][..9];
            for (a, ga) in g.iter().enumerate() {
                for (b, gb) in g.iter().enumerate() {
                    let mut s = 0f64;
                    for (r, &gar) in ga.iter().enumerate() {
                        for (q, &gbq) in gb.iter().enumerate() {
                            s += gar * f64::from(k[r * 3 + q]) * gbq;
                        }
                    }
                    let xi = side * a + b;
                    out[((xi * panels + j / FLOAT_PANEL) * c + ch) * FLOAT_PANEL
                        + j % FLOAT_PANEL] = s as f32;
                }
            }
        }
    }
    out
}

/// `product` (a copy of `node` whose op now writes channels last) writing a new channels-last
/// value, and the `Transpose` back that makes `node`'s output.
fn with_output_channels_last(
    graph: &mut Graph,
    mut product: Node,
    node: &Node,
    rank: usize,
) -> Option<[Node; 2]> {
    let y = output(node, 0)?;
    let y_value = graph.value(y);
    let y_shape = y_value.shape.clone()?;
    let y_last_shape = to_last(rank).iter().map(|&a| y_shape[a]).collect();
    let y_last = add_typed(
        graph,
        format!("{}/channels_last", node.name),
        y_value.dtype,
        Some(y_last_shape),
    );
    product.outputs = vec![Some(y_last)];
    let (t_out, _) = transpose(
        graph,
        y_last,
        &to_first(rank),
        Some(y),
        format!("{}/to_channels_first", node.name),
        node,
    )?;
    Some([product, t_out])
}

/// Dense weights packed as rows of padded depth (channel, then tap), `m x c * taps`, as column
/// panels of depth (tap, then channel padded with zero weights to whole groups, so that each
/// tap's channels start a group); `None` when they do not fit the kernel.
fn dense_weights(rows: &[u8], m: usize, c: usize, taps: usize) -> Option<Vec<i8>> {
    let cp = c.div_ceil(GROUP) * GROUP;
    let (k, kq) = (c * taps, cp * taps);
    let kp = int8_pack::padded_depth(k);
    if kq > CHANNELS_LAST_MAX_DEPTH || rows.len() < m * kp {
        return None;
    }
    let signed = |j: usize, d: usize| {
        let (t, ch) = (d / cp, d % cp);
        if ch < c {
            rows[j * kp + ch * taps + t] as i8
        } else {
            0
        }
    };
    let mut packed = vec![0i8; int8_pack::packed_cols_len(kq, m)];
    int8_pack::pack_cols(kq, m, |d, j| signed(j, d), &mut packed);
    Some(packed)
}

/// Depthwise weights, plain `[m, taps]`, as `[taps, Cp]` rows of channels (`Cp` rounded up
/// to the kernel's vectors, zero past `m`).
fn depthwise_weights(plain: &[u8], m: usize, taps: usize) -> Option<Vec<i8>> {
    let cp =
        m.div_ceil(int8_pack::channels_last_align(true)) * int8_pack::channels_last_align(true);
    if plain.len() < m * taps {
        return None;
    }
    let mut packed = vec![0i8; taps * cp];
    for ch in 0..m {
        for t in 0..taps {
            packed[t * cp + ch] = plain[ch * taps + t] as i8;
        }
    }
    Some(packed)
}

/// The positions of `node`'s inputs that carry the image, if it has a channels-last form
/// that the rewrite in [`sink`] produces, and whether the op broadcasts them (elementwise ops
/// of several inputs); `None` otherwise.
fn layout_inputs(graph: &Graph, node: &Node) -> Option<(Vec<usize>, bool)> {
    let op = node.op.as_ref()?;
    let len = |i: usize| input(node, i).map_or(0, |v| graph.value(v).len());
    let (positions, broadcast) = match op {
        Op::Unary(_) | Op::QLinearLookup(_) => (vec![0], false),
        Op::Clip(_) if (1..3).all(|i| input(node, i).is_none() || len(i) == 1) => (vec![0], false),
        Op::QuantLinear(_) if len(1) == 1 && (input(node, 2).is_none() || len(2) == 1) => {
            (vec![0], false)
        }
        Op::QLinearBinary(_) => (vec![0, 3], true),
        Op::Binary(_) if node.op_type != "PRelu" => (vec![0, 1], true),
        Op::Variadic(_) => ((0..node.inputs.len()).collect(), true),
        Op::Concat(c) if c.axis == 1 => ((0..node.inputs.len()).collect(), false),
        Op::QLinearConcat(c) if c.axis == 1 => ((2..node.inputs.len()).step_by(3).collect(), false),
        Op::Pool(p)
            if !p.channels_last
                && p.lp.is_none()
                && node.outputs.get(1).copied().flatten().is_none()
                && p.window.dilations.iter().all(|&d| d == 1)
                && match input(node, 0).and_then(|v| graph.value(v).dtype) {
                    Some(DType::U8 | DType::I8) => p.max,
                    Some(DType::F32) => true,
                    _ => false,
                } =>
        {
            (vec![0], false)
        }
        Op::QLinearGlobalAveragePool(p) if !p.channels_last => (vec![0], false),
        Op::GlobalPool(p) if !p.channels_last && p.lp.is_none() => (vec![0], false),
        // Slices with constant axes (or none: all leading axes), and splits.
        Op::Slice(s) if s.attrs.is_none() && input(node, 1).is_some() => {
            let axes = input(node, 3);
            if axes.is_some_and(|a| graph.value(a).constant.is_none()) {
                return None;
            }
            (vec![0], false)
        }
        Op::Split(_) => (vec![0], false),
        Op::BatchNorm(b) if b.training_momentum.is_none() && !b.channels_last => (vec![0], false),
        Op::Reduce(r) if reduce_axes(graph, node, r).is_some() => (vec![0], false),
        _ => return None,
    };
    (node.outputs.len() == 1 || matches!(op, Op::Pool(_) | Op::Split(_)))
        .then_some((positions, broadcast))
}

/// `node` run channels last when every image input comes from a `Transpose(back)`: it reads
/// the transposes' inputs, and one `Transpose(back)` after it makes its old output.
fn sink(
    graph: &mut Graph,
    node: &Node,
    done: &[Node],
    producer: &HashMap<ValueId, usize>,
) -> Option<Vec<Node>> {
    let (positions, broadcast) = layout_inputs(graph, node)?;
    let y = output(node, 0)?;
    // The image's rank (a reduction's output may have fewer axes).
    let image = if matches!(node.op, Some(Op::Reduce(_))) {
        input(node, 0)?
    } else {
        y
    };
    let rank = graph.value(image).shape.as_ref()?.len();
    if !(3..=5).contains(&rank) {
        return None;
    }
    let mut inputs = node.inputs.clone();
    let mut before = Vec::new();
    let mut backs = 0;
    for &i in &positions {
        let v = input(node, i)?;
        let from_back = back_transpose(v, rank, done, producer).filter(|t| t.guards == node.guards);
        if let Some(t) = from_back {
            inputs[i] = input(t, 0);
            backs += 1;
            continue;
        }
        // A broadcast operand stays when it is one value, and goes channels last when it has
        // no spatial extent (`[N, C, 1, ...]`, a transpose that moves nothing).
        let shape = graph.value(v).shape.clone()?;
        if !broadcast {
            return None;
        }
        if shape.iter().product::<usize>() == 1 {
            continue;
        }
        // A constant of one value per channel (`[C, 1, 1]`, `[1, C, 1, 1]`: a per-channel
        // scale) becomes `[C]`, which broadcasts along the last axis.
        if shape.len() <= rank && shape.len() >= rank - 1 {
            let lead = rank - shape.len();
            let dims: Vec<usize> = (0..rank)
                .map(|a| if a < lead { 1 } else { shape[a - lead] })
                .collect();
            let constant = graph.value(v).constant.clone();
            if let Some(tensor) = constant
                .filter(|_| dims[0] == 1 && dims[2..].iter().all(|&d| d == 1) && dims[1] > 1)
            {
                let moved = add_constant(
                    graph,
                    format!("{}/input{i}_channels_last", node.name),
                    tensor.reshaped(vec![dims[1]]),
                );
                inputs[i] = Some(moved);
                continue;
            }
        }
        if shape.len() != rank || shape[2..].iter().any(|&d| d != 1) {
            return None;
        }
        let (t, moved) = transpose(
            graph,
            v,
            &to_last(rank),
            None,
            format!("{}/input{i}_channels_last", node.name),
            node,
        )?;
        inputs[i] = Some(moved);
        before.push(t);
    }
    // Something must come from a transpose back, or nothing is gained.
    if backs == 0 {
        return None;
    }
    let mut op = node.op.clone()?;
    let last = rank as i64 - 1;
    match &mut op {
        Op::Concat(c) => c.axis = last,
        Op::QLinearConcat(c) => c.axis = last,
        Op::Split(split) => split.axis = axis_last(split.axis, rank)?,
        Op::Pool(p) => p.channels_last = true,
        Op::QLinearGlobalAveragePool(p) => p.channels_last = true,
        Op::GlobalPool(p) => p.channels_last = true,
        Op::BatchNorm(b) => b.channels_last = true,
        _ => {}
    }
    let mut moved = node.clone();
    moved.inputs = inputs;
    // A reduction's axes, moved as the data's are; without kept dims, whether its output is
    // already in the channels-first order (see [`reduced_in_place`]).
    let mut reduced_in_place = false;
    if let Op::Reduce(r) = &mut op {
        let axes = reduce_axes(graph, node, r)?;
        let moved_axes = axes
            .iter()
            .map(|&a| axis_last(a, rank))
            .collect::<Option<Vec<i64>>>()?;
        if !r.keepdims {
            reduced_in_place = reduces_in_order(&moved_axes, rank);
            if !reduced_in_place {
                return None;
            }
        }
        if r.attr_axes.is_some() {
            r.attr_axes = Some(moved_axes.clone());
            moved
                .attributes
                .retain(|a: &crate::onnx::proto::AttributeProto| a.name() != "axes");
            moved.attributes.push(ints_attr("axes", &moved_axes));
        } else {
            set_axes_input(graph, &mut moved, 1, &moved_axes);
        }
    }
    if let Op::Slice(_) = &op {
        // The axes, moved as the data's are.
        let starts = graph.value(input(node, 1)?).len();
        let axes: Vec<i64> = match input(node, 3) {
            Some(a) => graph.value(a).constant.as_ref()?.to_i64s()?,
            None => (0..starts as i64).collect(),
        };
        let moved_axes = axes
            .iter()
            .map(|&a| axis_last(a, rank))
            .collect::<Option<Vec<i64>>>()?;
        set_axes_input(graph, &mut moved, 3, &moved_axes);
    }
    // The attributes say what the op now does (printing and readers of attributes agree).
    let set = |attrs: &mut Vec<_>, name: &str, value: i64| {
        attrs.retain(|a: &crate::onnx::proto::AttributeProto| a.name() != name);
        attrs.push(int_attr(name, value));
    };
    match &op {
        Op::Concat(_) | Op::QLinearConcat(_) => set(&mut moved.attributes, "axis", last),
        Op::Split(split) => set(&mut moved.attributes, "axis", split.axis),
        Op::QLinearGlobalAveragePool(_) => set(&mut moved.attributes, "channels_last", 1),
        _ => {}
    }
    moved.op = Some(op);
    if reduced_in_place {
        // The same values in the same order: the node writes the old output itself.
        before.push(moved);
        return Some(before);
    }
    // The channels-last outputs' types, from the op itself.
    let types = {
        let cx = infer_shapes_cx(graph, &moved, false).ok()?;
        moved.op.as_ref()?.infer(&cx).ok()?
    };
    let mut after = Vec::new();
    for (i, y) in node.outputs.iter().enumerate() {
        let Some(y) = *y else { continue };
        let ty = types.get(i)?;
        // Only the first output (a pool's indices are absent) is an image.
        if i > 0 && !matches!(moved.op, Some(Op::Split(_))) {
            return None;
        }
        let y_last = add_typed(
            graph,
            format!(
                "{}/channels_last{}",
                node.name,
                if i > 0 {
                    format!("_{i}")
                } else {
                    String::new()
                }
            ),
            Some(ty.dtype),
            Some(ty.shape.clone()),
        );
        moved.outputs[i] = Some(y_last);
        let (t_out, _) = transpose(
            graph,
            y_last,
            &to_first(rank),
            Some(y),
            format!(
                "{}/to_channels_first{}",
                node.name,
                if i > 0 {
                    format!("_{i}")
                } else {
                    String::new()
                }
            ),
            node,
        )?;
        // The transpose must reproduce the old output exactly.
        let y_shape = graph.value(y).shape.clone()?;
        let back_shape: Vec<usize> = to_first(rank).iter().map(|&a| ty.shape[a]).collect();
        if back_shape != y_shape {
            return None;
        }
        after.push(t_out);
    }
    before.push(moved);
    before.extend(after);
    Some(before)
}

/// A channel shuffle (`Reshape [N, C, *s] -> [N, g, C/g, *s]`, `Transpose` swapping those two,
/// `Reshape` back to `[N, C, *s]`, as ShuffleNet mixes its branches), ending at `node`, on an
/// input that comes from a transpose back: the same shuffle on the last axis of the
/// channels-last input (`[N, *s, g, C/g] -> [N, *s, C/g, g]`), then one transpose back.
fn shuffle(
    graph: &mut Graph,
    node: &Node,
    done: &[Node],
    producer: &HashMap<ValueId, usize>,
) -> Option<Vec<Node>> {
    let reshaped = |n: &Node| {
        matches!(&n.op, Some(Op::Reshape(r))
            if matches!(r.kind, ReshapeKind::Reshape { attr_shape: None, .. }))
    };
    if !reshaped(node) {
        return None;
    }
    let y = output(node, 0)?;
    let swap = &done[*producer.get(&input(node, 0)?)?];
    let split = &done[*producer.get(&input(swap, 0)?)?];
    let shape = |v: ValueId| graph.value(v).shape.clone();
    let (x_shape, y_shape) = (shape(input(split, 0)?)?, shape(y)?);
    let (split_shape, rank) = (shape(output(split, 0)?)?, x_shape.len());
    let back = back_transpose(input(split, 0)?, rank, done, producer)?;
    let x_last = input(back, 0)?;
    let Some(Op::Transpose(t)) = &swap.op else {
        return None;
    };
    let mut swap_perm: Vec<i64> = vec![0, 2, 1];
    swap_perm.extend(3..rank as i64 + 1);
    if !reshaped(split)
        || t.perm.as_deref() != Some(&swap_perm[..])
        || !(3..=5).contains(&rank)
        || y_shape != x_shape
        || split_shape.len() != rank + 1
        || split_shape[0] != x_shape[0]
        || split_shape[1] * split_shape[2] != x_shape[1]
        || split_shape[3..] != x_shape[2..]
        || [swap, split, back].iter().any(|n| n.guards != node.guards)
    {
        return None;
    }
    let (g, cg) = (split_shape[1], split_shape[2]);
    // [N, *s, C] -> [N, *s, g, C/g] -> [N, *s, C/g, g] -> [N, *s, C].
    let last_shape: Vec<usize> = to_last(rank).iter().map(|&a| x_shape[a]).collect();
    let mut grouped = last_shape[..rank - 1].to_vec();
    grouped.extend([g, cg]);
    let mut swapped = last_shape[..rank - 1].to_vec();
    swapped.extend([cg, g]);
    let name = &node.name;
    let shape_const = |graph: &mut Graph, what: &str, dims: &[usize]| {
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        add_constant(
            graph,
            format!("{name}/{what}_channels_last"),
            Tensor::from_i64(vec![dims.len()], &dims),
        )
    };
    let grouped_shape = shape_const(graph, "grouped", &grouped);
    let merged_shape = shape_const(graph, "merged", &last_shape);
    let dtype = graph.value(y).dtype;
    let grouped_value = add_typed(graph, format!("{name}/grouped"), dtype, Some(grouped));
    let swapped_value = add_typed(graph, format!("{name}/swapped"), dtype, Some(swapped));
    let mut first = split.clone();
    first.name = format!("{name}/group_channels_last");
    first.inputs = vec![Some(x_last), Some(grouped_shape)];
    first.outputs = vec![Some(grouped_value)];
    let mut perm: Vec<usize> = (0..rank - 1).collect();
    perm.extend([rank, rank - 1]);
    let (mut mix, _) = transpose(
        graph,
        grouped_value,
        &perm,
        Some(swapped_value),
        format!("{name}/shuffle_channels_last"),
        node,
    )?;
    mix.guards = node.guards.clone();
    let mut merge = node.clone();
    merge.inputs = vec![Some(swapped_value), Some(merged_shape)];
    let [merge, t_out] = with_output_channels_last(graph, merge, node, rank)?;
    Some(vec![first, mix, merge, t_out])
}

/// Where axis `axis` (ONNX-style, negative from the end) of a channels-first rank-`rank`
/// tensor lies once its channels are last.
/// Makes input `slot` of the channels-last copy `moved` a new constant holding `axes`.
fn set_axes_input(graph: &mut Graph, moved: &mut Node, slot: usize, axes: &[i64]) {
    let axes = add_constant(
        graph,
        format!("{}/axes_channels_last", moved.name),
        Tensor::from_i64(vec![axes.len()], axes),
    );
    moved.inputs.resize(moved.inputs.len().max(slot + 1), None);
    moved.inputs[slot] = Some(axes);
}

/// The axes a reduction reduces (all of them for an empty list, unless that means none), when
/// they are known at compile time; `None` for a no-op reduction or axes computed at run time.
fn reduce_axes(graph: &Graph, node: &Node, r: &crate::ops::reduce::Reduce) -> Option<Vec<i64>> {
    let rank = graph.value(input(node, 0)?).shape.as_ref()?.len() as i64;
    let axes = match (&r.attr_axes, input(node, 1)) {
        (Some(a), _) => a.clone(),
        (None, Some(v)) => graph.value(v).constant.as_ref()?.to_i64s()?,
        (None, None) => Vec::new(),
    };
    if axes.is_empty() {
        return (!r.noop_with_empty_axes).then(|| (0..rank).collect());
    }
    Some(axes)
}

/// Whether a reduction without kept dims over the channels-last `axes` (of a rank-`rank`
/// input) leaves its kept axes in the channels-first order: when it reduces the channels
/// (the last axis), or every spatial axis (then only the batch and the channels remain).
fn reduces_in_order(axes: &[i64], rank: usize) -> bool {
    let last = rank as i64 - 1;
    axes.contains(&last) || (1..last).all(|a| axes.contains(&a))
}

fn axis_last(axis: i64, rank: usize) -> Option<i64> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    match a {
        0 => Some(0),
        1 => Some(r - 1),
        a if (2..r).contains(&a) => Some(a - 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{ints_attr as pads_attr, ModelBuilder};

    /// The Winograd tile of the second of two 3x3 convolutions of `c` channels on a
    /// `side x side` image at -O3 (the first reads the channels-first input, so it runs
    /// direct).
    fn winograd_tile_of(c: i64, side: i64) -> Option<usize> {
        let w: Vec<f32> = (0..c * c * 9)
            .map(|i| (i % 11) as f32 * 0.01 - 0.05)
            .collect();
        let pads = || vec![pads_attr("pads", &[1, 1, 1, 1])];
        let graph = ModelBuilder::new()
            .input("x", &[1, c, side, side])
            .floats("w", &[c, c, 3, 3], &w)
            .node_with("Conv", &["x", "w"], &["a"], pads())
            .node_with("Conv", &["a", "w"], &["y"], pads())
            .output("y")
            .build();
        let cx = PassCx {
            opt_level: OptLevel::O3,
            ..PassCx::default()
        };
        let after = channels_last(graph, &cx).expect("channels last");
        let tiles: Vec<Option<usize>> = after
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Some(Op::Conv(c)) => Some(c.winograd),
                _ => None,
            })
            .collect();
        assert_eq!(tiles.len(), 2, "{}", after.dump());
        assert_eq!(tiles[0], None, "the first reads the channels-first input");
        tiles[1]
    }

    fn winograd_tile(side: i64) -> Option<usize> {
        winograd_tile_of(48, side)
    }

    #[test]
    fn winograd_takes_four_by_four_tiles_on_large_images() {
        assert_eq!(winograd_tile(WINOGRAD4_SIDE as i64), Some(4));
        assert_eq!(winograd_tile(WINOGRAD4_SIDE as i64 - 1), Some(2));
    }

    #[test]
    fn narrow_layers_run_direct() {
        // 32 -> 32: 16 products per transformed value, under `WINOGRAD_MIN_PRODUCTS`.
        assert_eq!(winograd_tile_of(32, WINOGRAD4_SIDE as i64), None);
        assert_eq!(winograd_tile_of(64, WINOGRAD4_SIDE as i64), Some(4));
    }
}
