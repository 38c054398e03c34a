//! `--quantize dynamic`: sinter's own dynamic quantization, decided at compile time. Off by
//! default ([`Quantize::None`]).
//!
//! Every float32 `Gemm`, `MatMul` with a constant 2-D `B`, and dense or grouped `Conv` with
//! constant weights becomes a `sinter::Int8Product` that quantizes its input at run time (per
//! tensor, `uint8` with a zero point, `DynamicQuantizeLinear`'s formula) and multiplies it
//! with weights quantized here: `int8`, symmetric, per output channel (`scale = max|w| /
//! 127`). Accumulation is `int32`; dequantization, the bias, a fused residual and the fused
//! activations all happen in the product's epilogue. This is what ONNX Runtime's
//! `quantize_dynamic` does, with the graph already fused and the weights already packed.
//!
//! Stays float32 (see [`float_reason`], which `sinter inspect --quantize` prints): depthwise
//! convolutions (the float kernel is faster and int8 costs accuracy there), convolutions with
//! fewer than 32 output channels per group or a depth under 32 (quantizing their input costs
//! about what it saves), products whose
//! weights are not constants, `Gemm` with a transposed `A` or a `C` that is neither a
//! per-column constant nor a residual of the output's shape, and nodes named with
//! `--quantize-exclude`.
//!
//! Float32 `ConvTranspose` layers (one group, 1-D or 2-D, constant weights, at least 32 input
//! channels and 32 output columns `Cout * kernel`) become an int8 product over the input
//! channels last and a `Col2Im` that adds each column's taps into the output (see
//! [`conv_transpose`]).
//!
//! Float32 `LSTM`, `GRU` and `RNN` layers with constant `W` and `R` become a
//! `sinter::Int8Recurrent` whose two products are int8 the same way, weights per output channel
//! of each direction, `X` and every step's `H` quantized at run time (see
//! `passes::quantize_recurrent`).
//!
//! Embedding lookups (`Gather` along axis 0 of a constant 2-D float32 table of at least 4096
//! elements) read an int8 copy of the table quantized per row (`sinter::GatherInt8`), which
//! dequantizes the rows it gathers: for text encoders the table is most of the weights.
//!
//! The pass runs after the fusions (so bias, residual and activations are already on the
//! node) and before `pack_weights`.

use super::lower_int8::{channels, conv_dims, int8_node, pack_weights, Layout, PackCache};
use super::pattern::{add_constant, input, output};
use super::PassCx;
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{DType, Graph, Node, Tensor, ValueId};
use crate::ops::int8::{Int8Out, Int8Product, Int8Shape};
use crate::ops::{FusedAct, Op};

/// Convolutions with fewer output channels per group than this stay float: quantizing the
/// input at run time and packing its columns costs about as much as their whole product.
const MIN_CHANNELS: usize = 32;
/// Convolutions with a shallower depth (`C/groups * kernel`) than this stay float.
const MIN_DEPTH: usize = 32;

/// Whether and how the compiler quantizes the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantize {
    /// Float stays float (the default).
    #[default]
    None,
    /// Weights int8 at compile time, activations quantized at run time.
    Dynamic,
    /// Weights int8 at compile time, activations `uint8` with scales measured ahead of time on
    /// calibration inputs (see `passes::quantize_static`).
    Static,
}

impl Quantize {
    /// Parses `none`, `dynamic` or `static`.
    pub fn from_name(name: &str) -> Option<Quantize> {
        match name {
            "none" | "off" => Some(Quantize::None),
            "dynamic" => Some(Quantize::Dynamic),
            "static" => Some(Quantize::Static),
            _ => None,
        }
    }
}

/// Quantizes every eligible product when `cx.quantize` asks for it.
pub fn quantize(mut graph: Graph, cx: &PassCx) -> Result<Graph> {
    match (cx.quantize, &cx.calibration) {
        (Quantize::None, _) => return Ok(graph),
        (Quantize::Dynamic, _) => {}
        (Quantize::Static, _) if cx.probe => return Ok(super::quantize_static::probe(graph, cx)),
        (Quantize::Static, Some(table)) => {
            return super::quantize_static::quantize_static(graph, cx, table)
        }
        (Quantize::Static, None) => {
            return Err(CompileError::new(ErrorKind::Option(
                "--quantize static needs activation ranges: calibrate on inputs \
                 (`--calibrate DIR`, `Builder::calibrate`) or read a table \
                 (`--calibration-table FILE`, `Builder::calibration_table`)"
                    .into(),
            )))
        }
    }
    let mut cache = PackCache::default();
    let mut expanded: Vec<(usize, Vec<Node>)> = Vec::new();
    for index in 0..graph.nodes.len() {
        if cx.quantize_exclude.contains(&graph.nodes[index].name) {
            continue;
        }
        if let Ok(nodes) = conv_transpose(&mut graph, index, &mut cache) {
            expanded.push((index, nodes));
            continue;
        }
        if let Some(node) = quantize_gather(&mut graph, index) {
            graph.nodes[index] = node;
            continue;
        }
        if let Some(node) = super::quantize_recurrent::quantize_recurrent(&mut graph, index) {
            graph.nodes[index] = node;
            continue;
        }
        if let Ok(plan) = plan(&graph, index, true) {
            let node = graph.nodes[index].clone();
            if let Some(node) = apply(&mut graph, &node, plan, &mut cache, Io::Dynamic) {
                graph.nodes[index] = node;
            }
        }
    }
    if !expanded.is_empty() {
        let mut expanded = expanded.into_iter().peekable();
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        for (i, node) in std::mem::take(&mut graph.nodes).into_iter().enumerate() {
            match expanded.next_if(|(at, _)| *at == i) {
                Some((_, replacement)) => nodes.extend(replacement),
                None => nodes.push(node),
            }
        }
        graph.nodes = nodes;
    }
    Ok(graph)
}

/// What [`conv_transpose`] checks before rewriting: the operands, the geometry, Col2Im's pads
/// (begins then ends), the fused activations as ops and the bias; or why the node stays float.
struct TransposePlan {
    x: ValueId,
    w: ValueId,
    y: ValueId,
    xs: Vec<usize>,
    g: crate::ops::conv::TransposeGeometry,
    cout: usize,
    cols: usize,
    pads: Vec<i64>,
    acts: Vec<(&'static str, Option<(f32, f32)>)>,
    bias: Option<ValueId>,
}

/// The checks of [`conv_transpose`], reading the graph only (`inspect`'s reasons use them).
fn conv_transpose_plan(
    graph: &Graph,
    node: &Node,
) -> std::result::Result<TransposePlan, &'static str> {
    let Some(Op::ConvTranspose(ct)) = &node.op else {
        return Err("not a transposed convolution");
    };
    let (x, w) = match (input(node, 0), input(node, 1)) {
        (Some(x), Some(w)) => (x, w),
        _ => return Err("an operand is missing"),
    };
    let y = output(node, 0).ok_or("no output")?;
    if graph.value(x).dtype != Some(DType::F32) {
        return Err("not float32");
    }
    let weights = graph.value(w).constant.as_ref();
    if weights.is_none_or(|t| t.dtype != DType::F32) {
        return Err("weights computed at run time");
    }
    let xs = graph.value(x).shape.clone().ok_or("unknown shape")?;
    let ws = graph.value(w).shape.clone().ok_or("unknown shape")?;
    if ct.group != 1 {
        return Err("grouped transposed convolution");
    }
    if !matches!(xs.len(), 3 | 4) {
        return Err("3-D transposed convolution");
    }
    let g = ct.geometry(&xs, &ws).map_err(|_| "unknown geometry")?;
    let (cin, cout) = (xs[1], ws[1]);
    let taps: usize = g.kernel.iter().product();
    let cols = cout * taps;
    if cin < MIN_DEPTH || cols < MIN_CHANNELS {
        return Err("too small to pay for quantizing its input at run time");
    }
    let d = xs.len() - 2;
    // Col2Im's pads: the start as the geometry has it, the end so that the blocks are X's
    // positions (output positions past the last tap, from output_padding, are not covered).
    let mut pads = Vec::with_capacity(2 * d);
    let mut ends = Vec::with_capacity(d);
    for i in 0..d {
        let span = g.dilations[i] * (g.kernel[i] - 1) + 1;
        let reach = (g.strides[i] * (xs[2 + i] - 1) + span) as isize;
        let end = reach - g.output[i] as isize - g.pads[i];
        if g.pads[i] < 0 || end < 0 {
            return Err(
                "output positions past the kernel's reach (output_padding or output_shape)",
            );
        }
        pads.push(g.pads[i] as i64);
        ends.push(end as i64);
    }
    pads.extend(ends);
    let acts: Vec<(&str, Option<(f32, f32)>)> = ct
        .activations
        .iter()
        .map(|a| match a {
            FusedAct::Relu => Ok(("Relu", None)),
            FusedAct::Clip(lo, hi) => Ok(("Clip", Some((*lo, *hi)))),
            _ => Err("fused activation other than Relu or Clip"),
        })
        .collect::<std::result::Result<_, _>>()?;
    let bias = input(node, 2);
    if let Some(b) = bias {
        let t = graph.value(b).constant.as_ref();
        if !t.is_some_and(|t| t.dtype == DType::F32 && t.len() == cout) {
            return Err("bias computed at run time");
        }
    }
    Ok(TransposePlan {
        x,
        w,
        y,
        xs,
        g,
        cout,
        cols,
        pads,
        acts,
        bias,
    })
}

/// A float32 `ConvTranspose` (one group, constant weights, 1-D or 2-D, activations none,
/// Relu or Clip) as an int8 product and a `Col2Im`: `X` goes channels last (`[N, H, W, C]`),
/// `sinter::Int8Product` multiplies it by the weights read as `[C, Cout * kh * kw]` (int8 per
/// column, the input quantized at run time), the columns go back to `[N, Cout * kh * kw,
/// H * W]`, `Col2Im` adds each column's taps into the output, then the bias and the
/// activation. The nodes that replace node `index`, or why it stays float.
fn conv_transpose(
    graph: &mut Graph,
    index: usize,
    cache: &mut PackCache,
) -> std::result::Result<Vec<Node>, &'static str> {
    use super::pattern::{add_typed, ints_attr, new_node};
    let node = graph.nodes[index].clone();
    let TransposePlan {
        x,
        w,
        y,
        xs,
        g,
        cout,
        cols,
        pads,
        acts,
        bias,
    } = conv_transpose_plan(graph, &node)?;
    let (n, cin, d) = (xs[0], xs[1], xs.len() - 2);
    let to_i64 = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<i64>>();
    let name = node.name.clone();
    let value = |graph: &mut Graph, what: &str, shape: Vec<usize>| {
        add_typed(
            graph,
            format!("{name}/{what}"),
            Some(DType::F32),
            Some(shape),
        )
    };
    let ints = |graph: &mut Graph, what: &str, v: &[i64]| {
        add_constant(
            graph,
            format!("{name}/{what}"),
            Tensor::from_i64(vec![v.len()], v),
        )
    };
    let bad = "internal: a replacement node did not parse";
    let mut nodes = Vec::new();
    // X channels last.
    let spatial: Vec<usize> = xs[2..].to_vec();
    let pixels: usize = spatial.iter().product();
    let mut last_shape = vec![n];
    last_shape.extend(&spatial);
    last_shape.push(cin);
    let perm: Vec<i64> = std::iter::once(0)
        .chain(2..xs.len() as i64)
        .chain(std::iter::once(1))
        .collect();
    let x_last = value(graph, "channels_last", last_shape.clone());
    nodes.push(
        new_node(
            format!("{name}/channels_last"),
            "Transpose",
            vec![Some(x)],
            vec![Some(x_last)],
            vec![ints_attr("perm", &perm)],
            &node,
        )
        .ok_or(bad)?,
    );
    // The product: [N, spatial..., Cout * taps].
    let mut prod_shape = last_shape;
    *prod_shape.last_mut().ok_or(bad)? = cols;
    let columns = value(graph, "columns", prod_shape);
    let mut product = node.clone();
    product.name = format!("{name}/product");
    product.inputs = vec![Some(x_last), Some(w)];
    product.outputs = vec![Some(columns)];
    let plan = Plan {
        weights: w,
        layout: Layout::Cols(false),
        dims: (cin, cols),
        shape: Int8Shape::MatMul { k: cin, n: cols },
        alpha: 1.0,
        bias: None,
        residual: None,
        activations: Vec::new(),
    };
    nodes.push(apply(graph, &product, plan, cache, Io::Dynamic).ok_or(bad)?);
    // [N, pixels, cols] -> [N, cols, pixels] -> Col2Im.
    let flat_shape = ints(graph, "flat_shape", &to_i64(&[n, pixels, cols]));
    let flat = value(graph, "flat", vec![n, pixels, cols]);
    nodes.push(
        new_node(
            format!("{name}/flat"),
            "Reshape",
            vec![Some(columns), Some(flat_shape)],
            vec![Some(flat)],
            Vec::new(),
            &node,
        )
        .ok_or(bad)?,
    );
    let blocks = value(graph, "blocks", vec![n, cols, pixels]);
    nodes.push(
        new_node(
            format!("{name}/blocks"),
            "Transpose",
            vec![Some(flat)],
            vec![Some(blocks)],
            vec![ints_attr("perm", &[0, 2, 1])],
            &node,
        )
        .ok_or(bad)?,
    );
    let image = ints(graph, "image_shape", &to_i64(&g.output));
    let block = ints(graph, "block_shape", &to_i64(&g.kernel));
    let mut out_shape = vec![n, cout];
    out_shape.extend(&g.output);
    let steps = bias.is_some() as usize + acts.len();
    let mut current = if steps == 0 {
        y
    } else {
        value(graph, "image", out_shape.clone())
    };
    let mut col2im = new_node(
        format!("{name}/col2im"),
        "Col2Im",
        vec![Some(blocks), Some(image), Some(block)],
        vec![Some(current)],
        vec![
            ints_attr("dilations", &to_i64(&g.dilations)),
            ints_attr("pads", &pads),
            ints_attr("strides", &to_i64(&g.strides)),
        ],
        &node,
    )
    .ok_or(bad)?;
    col2im.opset = col2im.opset.max(18);
    nodes.push(col2im);
    let mut left = steps;
    let mut next = |graph: &mut Graph, what: &str| {
        left -= 1;
        if left == 0 {
            y
        } else {
            value(graph, what, out_shape.clone())
        }
    };
    if let Some(b) = bias {
        let values = graph.value(b).constant.as_ref().ok_or(bad)?.clone();
        let mut shape = vec![cout];
        shape.resize(1 + d, 1);
        let b = add_constant(
            graph,
            format!("{name}/bias"),
            Tensor {
                dtype: values.dtype,
                shape,
                bytes: values.bytes,
            },
        );
        let out = next(graph, "biased");
        nodes.push(
            new_node(
                format!("{name}/bias"),
                "Add",
                vec![Some(current), Some(b)],
                vec![Some(out)],
                Vec::new(),
                &node,
            )
            .ok_or(bad)?,
        );
        current = out;
    }
    for (k, (op, clip)) in acts.into_iter().enumerate() {
        let out = next(graph, &format!("act{k}"));
        let mut inputs = vec![Some(current)];
        if let Some((lo, hi)) = clip {
            for (what, v) in [("min", lo), ("max", hi)] {
                let c = add_constant(
                    graph,
                    format!("{name}/act{k}_{what}"),
                    Tensor::from_f32(vec![], &[v]),
                );
                inputs.push(Some(c));
            }
        }
        nodes.push(
            new_node(
                format!("{name}/act{k}"),
                op,
                inputs,
                vec![Some(out)],
                Vec::new(),
                &node,
            )
            .ok_or(bad)?,
        );
        current = out;
    }
    Ok(nodes)
}

/// Embedding tables smaller than this many elements stay float32.
const MIN_TABLE: usize = 4096;

/// A `Gather` along axis 0 of a constant 2-D float32 table (an embedding lookup) reads an int8
/// copy of the table quantized per row (symmetric) instead: `sinter::GatherInt8`.
pub(super) fn quantize_gather(graph: &mut Graph, index: usize) -> Option<Node> {
    let node = graph.nodes[index].clone();
    let Some(Op::Indexing(ix)) = &node.op else {
        return None;
    };
    if ix.kind != crate::ops::movement::IndexKind::Gather || !matches!(ix.axis, 0 | -2) {
        return None;
    }
    let (data, indices) = (input(&node, 0)?, input(&node, 1)?);
    let table = graph.value(data).constant.as_ref()?;
    let [rows, dim] = table.shape[..] else {
        return None;
    };
    if table.dtype != DType::F32 || rows * dim < MIN_TABLE {
        return None;
    }
    let values = table.as_f32()?;
    let (q, scales) = quantize_weights(&values, Layout::Rows(1, false), (rows, dim));
    let name = graph.value(data).name.clone();
    let q_id = add_constant(
        graph,
        format!("{name}/quantized"),
        Tensor {
            dtype: DType::I8,
            shape: vec![rows, dim],
            bytes: q.iter().map(|&v| v as u8).collect(),
        },
    );
    let s_id = add_constant(
        graph,
        format!("{name}/scale"),
        Tensor::from_f32(vec![rows], &scales),
    );
    Some(Node {
        name: node.name.clone(),
        op_type: "GatherInt8".into(),
        domain: "sinter".into(),
        opset: 1,
        inputs: vec![Some(q_id), Some(s_id), Some(indices)],
        outputs: vec![output(&node, 0)],
        attributes: Vec::new(),
        op: Some(Op::GatherInt8(crate::ops::int8::GatherInt8 { dim })),
        guards: node.guards.clone(),
    })
}

/// Why node `index` would stay float32 under `mode`, or `None` if it would be quantized
/// (already quantized nodes and ops the pass never touches give `None` too; static
/// quantization also needs calibrated ranges, which this does not check).
pub fn float_reason(graph: &Graph, index: usize, mode: Quantize) -> Option<&'static str> {
    match &graph.nodes.get(index)?.op {
        Some(Op::Gemm(_) | Op::MatMul(_) | Op::Conv(_))
            if mode == Quantize::Static && !graph.nodes[index].guards.is_empty() =>
        {
            Some("inside an If branch: calibration measures graph-level values only")
        }
        Some(Op::Gemm(_) | Op::MatMul(_) | Op::Conv(_)) => {
            plan(graph, index, mode != Quantize::Static).err()
        }
        Some(Op::ConvTranspose(_)) if mode == Quantize::Static => {
            Some("transposed convolutions are quantized by --quantize dynamic only")
        }
        Some(Op::ConvTranspose(_)) => conv_transpose_plan(graph, &graph.nodes[index]).err(),
        Some(Op::Recurrent(_)) if mode == Quantize::Static => {
            Some("recurrent layers are quantized by --quantize dynamic only")
        }
        Some(Op::Recurrent(_)) => super::quantize_recurrent::float_reason(graph, index),
        _ => None,
    }
}

/// What quantizing one node takes.
pub(super) struct Plan {
    /// The float weights and their layout.
    weights: ValueId,
    layout: Layout,
    /// `(rows, depth)` of the weights as `pack_weights` takes them.
    dims: (usize, usize),
    shape: Int8Shape,
    /// Multiplies every weight scale (a Gemm's alpha).
    alpha: f32,
    /// A per-channel float32 constant added after scaling, times `beta`.
    bias: Option<(ValueId, f32)>,
    pub(super) residual: Option<ValueId>,
    pub(super) activations: Vec<FusedAct>,
}

/// The plan for node `index`, or why it stays float. `dynamic` applies the limits of
/// run-time quantization (no depthwise or small convolutions); static quantization, whose
/// input often arrives already quantized, takes them all.
pub(super) fn plan(
    graph: &Graph,
    index: usize,
    dynamic: bool,
) -> std::result::Result<Plan, &'static str> {
    let node = &graph.nodes[index];
    let (a, w) = match (input(node, 0), input(node, 1)) {
        (Some(a), Some(w)) => (a, w),
        _ => return Err("an operand is missing"),
    };
    if graph.value(a).dtype != Some(DType::F32) {
        return Err("not float32");
    }
    let weights = graph
        .value(w)
        .constant
        .as_ref()
        .filter(|t| t.dtype == DType::F32)
        .ok_or("weights computed at run time")?;
    let a_shape = graph.value(a).shape.as_ref().ok_or("unknown shape")?;
    match node.op.as_ref() {
        Some(Op::Gemm(g)) => {
            if g.packed_b.is_some() {
                return Err("weights already packed for the float kernel");
            }
            if g.trans_a {
                return Err("Gemm with transposed A");
            }
            let (_, n, k) = g
                .dims_of(a_shape, &weights.shape)
                .map_err(|_| "unknown shape")?;
            let c = input(node, 2);
            let (bias, residual) = match c {
                None => (None, None),
                Some(c) => {
                    let value = graph.value(c);
                    let shape = value.shape.as_ref().ok_or("unknown shape")?;
                    let len: usize = shape.iter().product();
                    let out_shape = output(node, 0).and_then(|o| graph.value(o).shape.as_ref());
                    match &value.constant {
                        Some(t)
                            if t.dtype == DType::F32 && len == n && shape.last() == Some(&n) =>
                        {
                            (Some((c, g.beta)), None)
                        }
                        None if g.beta == 1.0 && Some(shape) == out_shape => (None, Some(c)),
                        _ => return Err("Gemm C neither a per-column constant nor a residual"),
                    }
                }
            };
            Ok(Plan {
                weights: w,
                layout: Layout::Cols(g.trans_b),
                dims: (k, n),
                shape: Int8Shape::MatMul { k, n },
                alpha: g.alpha,
                bias,
                residual,
                activations: g.activation.into_iter().collect(),
            })
        }
        Some(Op::MatMul(_)) => {
            let [k, n] = weights.shape[..] else {
                return Err("MatMul weights not 2-D");
            };
            if a_shape.len() < 2 || a_shape.last() != Some(&k) {
                return Err("MatMul A does not end in the weights' depth");
            }
            Ok(Plan {
                weights: w,
                layout: Layout::Cols(false),
                dims: (k, n),
                shape: Int8Shape::MatMul { k, n },
                alpha: 1.0,
                bias: None,
                residual: None,
                activations: Vec::new(),
            })
        }
        Some(Op::Conv(c)) => {
            if c.packed_from.is_some() {
                return Err("weights already packed for the float kernel");
            }
            let (layout, m, depth, conv) =
                conv_dims(graph, a, w, c).ok_or("unknown convolution shape")?;
            if dynamic && matches!(layout, Layout::Rows(_, true)) {
                return Err("depthwise: the float kernel is faster");
            }
            let groups = c.group.max(1);
            if dynamic && (m / groups < MIN_CHANNELS || depth < MIN_DEPTH) {
                return Err("too small to pay for quantizing its input at run time");
            }
            let bias = input(node, 2).map(|b| (b, 1.0));
            if let Some((b, _)) = bias {
                let t = graph.value(b).constant.as_ref();
                if !t.is_some_and(|t| t.dtype == DType::F32 && t.len() == m) {
                    return Err("bias computed at run time");
                }
            }
            let residual = if c.residual { input(node, 3) } else { None };
            Ok(Plan {
                weights: w,
                layout,
                dims: (m, depth),
                shape: Int8Shape::Conv(conv),
                alpha: 1.0,
                bias,
                residual,
                activations: c.activations.clone(),
            })
        }
        _ => Err("not a product"),
    }
}

/// Quantizes `w` (float32, laid out as `layout` with `dims`) per output channel: the int8
/// weights in the same layout and the channel scales.
pub(super) fn quantize_weights(
    w: &[f32],
    layout: Layout,
    (rows, depth): (usize, usize),
) -> (Vec<i8>, Vec<f32>) {
    let n_channels = channels(layout, rows, depth);
    // Index of element `(channel, i)` for `i` over the channel's depth.
    let at = |c: usize, i: usize| match layout {
        Layout::Cols(false) => i * depth + c,
        Layout::Cols(true) => c * rows + i,
        Layout::Rows(..) => c * depth + i,
    };
    let per_channel = match layout {
        Layout::Cols(_) => rows,
        Layout::Rows(..) => depth,
    };
    let mut q = vec![0i8; w.len()];
    let mut scales = Vec::with_capacity(n_channels);
    for c in 0..n_channels {
        let max = (0..per_channel)
            .map(|i| w[at(c, i)].abs())
            .fold(0f32, f32::max);
        let scale = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
        for i in 0..per_channel {
            let v = (w[at(c, i)] / scale).round_ties_even().clamp(-127.0, 127.0);
            q[at(c, i)] = v as i8;
        }
        scales.push(scale);
    }
    (q, scales)
}

/// How a quantized product takes its input and gives its output.
#[derive(Debug, Clone, Copy)]
pub(super) enum Io {
    /// `A` stays float32 and is quantized at run time; the output is float32.
    Dynamic,
    /// `A` is this `uint8` value with a calibrated scale and zero point; the output is
    /// requantized to `uint8` into `out` (value, scale, zero point), or float32 without it.
    Static {
        a: ValueId,
        a_scale: f32,
        a_zero: i32,
        out: Option<(ValueId, f32, i32)>,
    },
}

/// The largest bias a requantizing product takes: `int32`, with room for the sums.
const BIAS_LIMIT: f64 = (1u64 << 30) as f64;

/// The int32 biases of a requantizing product whose input has scale `a_scale`: the float
/// bias over the product's scale per channel; `None` when one does not fit.
fn int_bias(bias: &[f32], a_scale: f32, w_scales: &[f32]) -> Option<Vec<i32>> {
    bias.iter()
        .zip(w_scales)
        .map(|(&b, &s)| {
            let q = (f64::from(b) / (f64::from(a_scale) * f64::from(s))).round();
            (q.abs() < BIAS_LIMIT).then_some(q as i32)
        })
        .collect()
}

/// Whether a requantizing output (which clamps to `[0, 255]` around its zero point) computes
/// the plan's activations exactly on a range calibrated after them: none, a Relu (the range
/// then starts at zero, the zero point is 0), or a Clip whose floor is not above zero.
fn requant_covers(plan: &Plan) -> bool {
    plan.residual.is_none()
        && match plan.activations[..] {
            [] | [FusedAct::Relu] => true,
            [FusedAct::Clip(lo, _)] => lo <= 0.0,
            _ => false,
        }
}

/// Replaces node `index` by its quantized product.
pub(super) fn apply(
    graph: &mut Graph,
    node: &Node,
    plan: Plan,
    cache: &mut PackCache,
    io: Io,
) -> Option<Node> {
    let w = graph.value(plan.weights).constant.as_ref()?.as_f32()?;
    let w_shape = graph.value(plan.weights).shape.clone()?;
    let (q, mut scales) = quantize_weights(&w, plan.layout, plan.dims);
    for s in &mut scales {
        *s *= plan.alpha;
    }
    let name = graph.value(plan.weights).name.clone();
    let q_id = add_constant(
        graph,
        format!("{name}/quantized"),
        Tensor {
            dtype: DType::I8,
            shape: w_shape,
            bytes: q.iter().map(|&v| v as u8).collect(),
        },
    );
    let ids = pack_weights(graph, cache, (q_id, None), plan.layout, plan.dims)?;
    let bias_values = match plan.bias {
        Some((b, beta)) => {
            let values = graph.value(b).constant.as_ref()?.as_f32()?;
            Some(values.iter().map(|&v| v * beta).collect::<Vec<f32>>())
        }
        None => None,
    };
    let (a, dynamic, a_scale, a_zero, requant) = match io {
        Io::Dynamic => (input(node, 0), true, 1.0, 0, None),
        Io::Static {
            a,
            a_scale,
            a_zero,
            out,
        } => (Some(a), false, a_scale, a_zero, out),
    };
    // A `uint8` output requantizes in integers when the clamp computes the activations and the
    // bias fits; otherwise it dequantizes, applies them in float and quantizes (`U8Float`).
    let int_requant = match (requant, &bias_values) {
        (Some(_), Some(values)) if requant_covers(&plan) => int_bias(values, a_scale, &scales),
        (Some(_), None) if requant_covers(&plan) => Some(Vec::new()),
        _ => None,
    };
    let float_bias = |graph: &mut Graph, values: Option<Vec<f32>>| {
        values.map(|values| {
            add_constant(
                graph,
                format!("{}/bias", node.name),
                Tensor::from_f32(vec![values.len()], &values),
            )
        })
    };
    let (channel, bias, out, output_id, activations, residual, y_scale) =
        match (requant, int_requant) {
            (Some((y, y_scale, y_zero)), Some(ints)) => {
                let multiplier: Vec<f32> = scales.iter().map(|s| a_scale * s / y_scale).collect();
                let multiplier_id = add_constant(
                    graph,
                    format!("{}/multiplier", node.name),
                    Tensor::from_f32(vec![multiplier.len()], &multiplier),
                );
                let bias = bias_values.map(|_| {
                    add_constant(
                        graph,
                        format!("{}/bias", node.name),
                        Tensor::from_i32(vec![ints.len()], &ints),
                    )
                });
                let out = Int8Out::U8(y_zero);
                (multiplier_id, bias, out, Some(y), Vec::new(), None, None)
            }
            (requant, _) => {
                let scale_id = add_constant(
                    graph,
                    format!("{name}/scale"),
                    Tensor::from_f32(vec![scales.len()], &scales),
                );
                let bias = float_bias(graph, bias_values);
                match requant {
                    None => {
                        let out = Int8Out::F32;
                        let acts = plan.activations;
                        (
                            scale_id,
                            bias,
                            out,
                            output(node, 0),
                            acts,
                            plan.residual,
                            None,
                        )
                    }
                    Some((y, y_scale, y_zero)) => {
                        let y_scale = add_constant(
                            graph,
                            format!("{}/output_scale", node.name),
                            Tensor::from_f32(vec![1], &[y_scale]),
                        );
                        let out = Int8Out::U8Float(y_zero);
                        let acts = plan.activations;
                        (
                            scale_id,
                            bias,
                            out,
                            Some(y),
                            acts,
                            plan.residual,
                            Some(y_scale),
                        )
                    }
                }
            }
        };
    let mut inputs = vec![
        a,
        None,
        None,
        Some(ids[0]),
        Some(ids[1]),
        Some(ids[2]),
        Some(channel),
        bias,
        residual,
        y_scale,
    ];
    while inputs.last() == Some(&None) {
        inputs.pop();
    }
    Some(int8_node(
        node,
        inputs,
        vec![output_id],
        Int8Product {
            shape: plan.shape,
            out,
            dynamic,
            a_zero,
            a_scale,
            activations,
        },
    ))
}
