//! Lowers 8-bit products whose weights are constants to `sinter::Int8Product`
//! ([`crate::ops::int8`]), which runs on `sinter_rt::int8`'s packed VNNI/AVX2 kernels:
//!
//! - `MatMulInteger` with a constant 2-D `B` and `ConvInteger` with constant `W`: `int32`
//!   sums;
//! - `QLinearMatMul` and `QLinearConv` whose scales and weight/output zero points are
//!   constants (float32 scales): requantized `uint8`/`int8`, with the multiplier
//!   `a_scale * w_scale / y_scale` computed per output channel in float32 as ONNX Runtime
//!   does, and `QLinearConv`'s bias;
//! - the chain ONNX Runtime's `quantize_dynamic` writes after its `DynamicQuantizeLinear`,
//!   `MatMulInteger or ConvInteger -> Cast(float) -> Mul(x_scale * w_scale) [-> Add(bias)]`:
//!   one product dequantizing in its epilogue (the quantizer stays, as several products may
//!   read its output).
//!
//! `com.microsoft:DynamicQuantizeLSTM` (constant weights, scales and zero points) becomes a
//! `sinter::Int8Recurrent` at every level (`passes::quantize_recurrent`).
//!
//! Weights become signed (`uint8` ones shifted by 128, their zero point with them), are
//! packed in the kernels' layout (`ir::int8_pack`), and carry their per-channel sums for the
//! zero-point correction. An activation zero point may stay a run-time value; anything else
//! that is not a constant (a run-time scale, weights computed by the graph) leaves the node
//! as it is, on the reference kernels.

use std::collections::HashMap;

use super::pattern::{add_constant, fuse, input, output, producers, Fusion, Matcher};
use super::quantize_recurrent::{int8_recurrent_node, QuantMatrix};
use super::{OptLevel, PassCx};
use crate::error::Result;
use crate::ir::{int8_pack as pack, DType, Graph, Node, Tensor, ValueId};
use crate::ops::conv::Conv;
use crate::ops::int8::{Int8Out, Int8Product, Int8Shape};
use crate::ops::Op;

/// Lowers every 8-bit product with constant weights; below `-O2` only the contrib products,
/// which have no kernel of their own.
pub fn lower_int8(mut graph: Graph, cx: &PassCx) -> Result<Graph> {
    let mut cache = PackCache::default();
    for index in 0..graph.nodes.len() {
        if let Some(node) = lower_recurrent(&mut graph, index) {
            graph.nodes[index] = node;
        }
    }
    if cx.opt_level < OptLevel::O2 {
        for index in 0..graph.nodes.len() {
            if matches!(
                graph.nodes[index].op,
                Some(Op::QGemm(_) | Op::QuantMatMulToFloat(_))
            ) {
                if let Some(node) = lower_node(&mut graph, index, &mut cache) {
                    graph.nodes[index] = node;
                }
            }
        }
        return Ok(graph);
    }
    // The weights of products that dynamically quantized activations feed are packed first,
    // so that the fusion of their chains can name the packed constants.
    let mut packed = HashMap::new();
    for index in 0..graph.nodes.len() {
        let node = &graph.nodes[index];
        let fed_by_dynamic = input(node, 0)
            .and_then(|a| producer_of(&graph, a))
            .is_some_and(|p| graph.nodes[p].op_type == "DynamicQuantizeLinear");
        if fed_by_dynamic {
            if let Some(weights) = integer_weights(&mut graph, index, &mut cache) {
                packed.insert(index, weights);
            }
        }
    }
    // QDQ: DequantizeLinear -> Conv/Gemm/MatMul -> QuantizeLinear.
    let plans = plan_qdq(&mut graph, &mut cache);
    let graph = fuse(graph, |_, end| {
        plans.get(&end).map(|(nodes, node)| Fusion {
            nodes: nodes.clone(),
            node: node.clone(),
        })
    });
    // Chains ending in a bias first, so that their Mul is not taken alone.
    let graph = fuse(graph, |m, end| find_dynamic(m, end, &packed, true));
    let mut graph = fuse(graph, |m, end| find_dynamic(m, end, &packed, false));
    for index in 0..graph.nodes.len() {
        if let Some(node) = lower_node(&mut graph, index, &mut cache) {
            graph.nodes[index] = node;
        }
    }
    // The dequantizers of weights the products now read packed are dead.
    super::eliminate_dead(graph, cx)
}

/// The `sinter::Int8Recurrent` form of a `DynamicQuantizeLSTM` at `index` whose weights,
/// scales and zero points are constants.
fn lower_recurrent(graph: &mut Graph, index: usize) -> Option<Node> {
    let node = graph.nodes[index].clone();
    let Some(Op::DynamicQuantizeLstm(lstm)) = &node.op else {
        return None;
    };
    let [w_scale, w_zero, r_scale, r_zero] =
        crate::ops::recurrent::DynamicQuantizeLstm::QUANT_PARAMS;
    let matrix = |weights: usize, scale: usize, zero: usize| {
        let w = constant(graph, input(&node, weights))?;
        let k = *w.shape.get(1)?;
        let (values, zero) = signed_weights(w, Some(constant(graph, input(&node, zero))?))?;
        let scale = constant(graph, input(&node, scale))?.as_f32()?;
        Some(QuantMatrix {
            values,
            zero,
            scale,
            transposed: false,
            k,
        })
    };
    let (w, r) = (matrix(1, w_scale, w_zero)?, matrix(2, r_scale, r_zero)?);
    let hidden = r.k;
    int8_recurrent_node(graph, &node, lstm.layer.clone(), hidden, (&w, &r))
}

/// A `sinter::Int8Product` node named and guarded like `like`.
pub(super) fn int8_node(
    like: &Node,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    product: Int8Product,
) -> Node {
    Node {
        name: like.name.clone(),
        op_type: "Int8Product".into(),
        domain: "sinter".into(),
        opset: 1,
        inputs,
        outputs,
        attributes: Vec::new(),
        op: Some(Op::Int8Product(product)),
        guards: like.guards.clone(),
    }
}

/// The node producing `v`.
fn producer_of(graph: &Graph, v: ValueId) -> Option<usize> {
    graph
        .nodes
        .iter()
        .position(|n| n.outputs.contains(&Some(v)))
}

/// A MatMulInteger's or ConvInteger's weights, packed: the constants `[packed, sums, zero]`
/// and the product's shape.
fn integer_weights(
    graph: &mut Graph,
    index: usize,
    cache: &mut PackCache,
) -> Option<([ValueId; 3], Int8Shape)> {
    let node = graph.nodes[index].clone();
    let (a, w) = (input(&node, 0)?, input(&node, 1)?);
    match node.op.as_ref()? {
        Op::MatMulInteger(_) => {
            let (k, n) = product_dims(graph, a, w)?;
            let ids = pack_weights(
                graph,
                cache,
                (w, input(&node, 3)),
                Layout::Cols(false),
                (k, n),
            )?;
            Some((ids, Int8Shape::MatMul { k, n }))
        }
        Op::ConvInteger(ci) => {
            let (layout, m, depth, conv) = conv_dims(graph, a, w, &ci.conv)?;
            let ids = pack_weights(graph, cache, (w, input(&node, 3)), layout, (m, depth))?;
            Some((ids, Int8Shape::Conv(conv)))
        }
        _ => None,
    }
}

/// Weights already packed, by (weights, zero point, layout): nodes sharing them share the
/// packed constants.
#[derive(Default)]
pub(super) struct PackCache {
    done: HashMap<(ValueId, Option<ValueId>, Layout), [ValueId; 3]>,
}

/// How weights are packed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Layout {
    /// Column panels of a `[k, n]` product (stored `[n, k]` when transposed).
    Cols(bool),
    /// Padded rows of a convolution (`groups`, `depthwise`).
    Rows(usize, bool),
}

/// A constant's elements as numbers, if it is a constant.
fn constant(graph: &Graph, v: Option<ValueId>) -> Option<&Tensor> {
    graph.value(v?).constant.as_ref()
}

/// Weights in the signed domain with their zero points (one or per channel) in it too.
fn signed_weights(w: &Tensor, zero: Option<&Tensor>) -> Option<(Vec<i8>, Vec<i32>)> {
    let (shift, values): (i32, Vec<i32>) = match w.dtype {
        DType::I8 => (0, w.bytes.iter().map(|&b| i32::from(b as i8)).collect()),
        DType::U8 => (128, w.bytes.iter().map(|&b| i32::from(b)).collect()),
        _ => return None,
    };
    let zeros: Vec<i32> = match zero {
        Some(z) if z.dtype == w.dtype => z.to_i64s()?.iter().map(|&v| v as i32 - shift).collect(),
        Some(_) => return None,
        None => vec![-shift],
    };
    let signed = values.iter().map(|&v| (v - shift) as i8).collect();
    Some((signed, zeros))
}

/// Packs weights (`[k, n]` for products, `[M, C/g * kernel]` rows for convolutions) and
/// returns the constants `[packed, sums, zero]`.
pub(super) fn pack_weights(
    graph: &mut Graph,
    cache: &mut PackCache,
    (w, zero): (ValueId, Option<ValueId>),
    layout: Layout,
    (rows, depth): (usize, usize),
) -> Option<[ValueId; 3]> {
    if let Some(ids) = cache.done.get(&(w, zero, layout)) {
        return Some(*ids);
    }
    let (signed, zeros) = signed_weights(constant(graph, Some(w))?, constant(graph, zero))?;
    if signed.len() != rows * depth
        || (zeros.len() != 1 && zeros.len() != channels(layout, rows, depth))
    {
        return None;
    }
    let (data, sums) = match layout {
        Layout::Cols(transposed) => {
            let (k, n) = (rows, depth);
            let at = |d: usize, j: usize| {
                if transposed {
                    signed[j * k + d]
                } else {
                    signed[d * n + j]
                }
            };
            let mut data = vec![0i8; pack::packed_cols_len(k, n)];
            pack::pack_cols(k, n, at, &mut data);
            let sums = (0..n)
                .map(|j| (0..k).map(|d| i32::from(at(d, j))).sum())
                .collect::<Vec<i32>>();
            (data, sums)
        }
        Layout::Rows(groups, depthwise) => {
            let (m, k) = (rows, depth);
            let mut data =
                vec![0i8; pack::packed_conv_len(groups, m / groups.max(1), k, depthwise)];
            if depthwise {
                data[..signed.len()].copy_from_slice(&signed);
            } else {
                pack::pack_rows(
                    m + pack::ROW_BLOCK,
                    k,
                    |r, d| if r < m { signed[r * k + d] } else { 0 },
                    &mut data,
                );
            }
            let sums = signed
                .chunks_exact(k.max(1))
                .map(|row| row.iter().map(|&v| i32::from(v)).sum())
                .collect::<Vec<i32>>();
            (data, sums)
        }
    };
    let name = graph.value(w).name.clone();
    let bytes = data.iter().map(|&v| v as u8).collect();
    let data_len = data.len();
    let ids = [
        add_constant(
            graph,
            format!("{name}/int8"),
            Tensor {
                dtype: DType::I8,
                shape: vec![data_len],
                bytes,
            },
        ),
        add_constant(
            graph,
            format!("{name}/int8_sums"),
            Tensor::from_i32(vec![sums.len()], &sums),
        ),
        add_constant(
            graph,
            format!("{name}/int8_zero"),
            Tensor::from_i32(vec![zeros.len()], &zeros),
        ),
    ];
    cache.done.insert((w, zero, layout), ids);
    Some(ids)
}

/// Output channels of a layout with these dimensions.
pub(super) fn channels(layout: Layout, rows: usize, depth: usize) -> usize {
    match layout {
        Layout::Cols(_) => depth,
        Layout::Rows(..) => rows,
    }
}

/// A one-element constant as `f32`.
fn scalar_f32(graph: &Graph, v: Option<ValueId>) -> Option<f32> {
    let t = constant(graph, v)?;
    let values = t.as_f32()?;
    (values.len() == 1).then(|| values[0])
}

/// A one-element 8-bit constant as `i32` (its type's value).
fn scalar_zero(graph: &Graph, v: Option<ValueId>) -> Option<i32> {
    let t = constant(graph, v)?;
    let values = t.to_i64s()?;
    (values.len() == 1 && matches!(t.dtype, DType::U8 | DType::I8)).then(|| values[0] as i32)
}

/// The requantized output whose zero point is the constant `zero`: its type and value.
fn requantized(graph: &Graph, zero: ValueId) -> Option<Int8Out> {
    let value = scalar_zero(graph, Some(zero))?;
    match graph.value(zero).dtype? {
        DType::U8 => Some(Int8Out::U8(value)),
        DType::I8 => Some(Int8Out::I8(value)),
        _ => None,
    }
}

/// The activation zero point: absent (0), a constant, or a run-time input.
fn a_zero(graph: &Graph, v: Option<ValueId>) -> Option<(i32, Option<ValueId>)> {
    match v {
        None => Some((0, None)),
        Some(id) => match graph.value(id).constant {
            Some(_) => Some((scalar_zero(graph, Some(id))?, None)),
            None => (graph.value(id).len() == 1).then_some((0, Some(id))),
        },
    }
}

/// The geometry of a product with constant 2-D `B`: `(k, n)`.
fn product_dims(graph: &Graph, a: ValueId, b: ValueId) -> Option<(usize, usize)> {
    let (a, b) = (
        graph.value(a).shape.as_ref()?,
        graph.value(b).shape.as_ref()?,
    );
    match (a.last(), b.as_slice()) {
        (Some(&k), &[bk, n]) if k == bk => Some((k, n)),
        _ => None,
    }
}

/// A convolution's weight layout and dimensions: `(layout, M, C/g * kernel, conv)`.
pub(super) fn conv_dims(
    graph: &Graph,
    x: ValueId,
    w: ValueId,
    conv: &Conv,
) -> Option<(Layout, usize, usize, Conv)> {
    let (x, w_shape) = (
        graph.value(x).shape.as_ref()?,
        graph.value(w).shape.as_ref()?,
    );
    let (cin, m) = (*x.get(1)?, *w_shape.first()?);
    let depth: usize = w_shape[1..].iter().product();
    let depthwise = conv.group == cin && conv.group == m && w_shape.get(1) == Some(&1);
    let mut conv = conv.clone();
    conv.packed_from = Some(w_shape.clone());
    Some((Layout::Rows(conv.group, depthwise), m, depth, conv))
}

/// The lowered form of node `index`, if it is an 8-bit product with constant weights.
fn lower_node(graph: &mut Graph, index: usize, cache: &mut PackCache) -> Option<Node> {
    let node = graph.nodes[index].clone();
    let op = node.op.as_ref()?;
    let (a, w) = (input(&node, 0)?, input(&node, 1));
    let mut inputs: Vec<Option<ValueId>> = vec![None; 9];
    let product = match op {
        Op::MatMulInteger(_) | Op::ConvInteger(_) => {
            w?;
            let (a_zero, a_zero_rt) = a_zero(graph, input(&node, 2))?;
            let (ids, shape) = integer_weights(graph, index, cache)?;
            inputs[1] = a_zero_rt;
            inputs[3..6].copy_from_slice(&ids.map(Some));
            Int8Product {
                shape,
                out: Int8Out::I32,
                dynamic: false,
                a_zero,
                a_scale: 1.0,
                activations: Vec::new(),
            }
        }
        Op::QLinearMatMul(_) | Op::QLinearConv(_) => {
            // x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero [, bias]
            let w = input(&node, 3)?;
            let x_scale = scalar_f32(graph, input(&node, 1))?;
            let y_scale = scalar_f32(graph, input(&node, 6))?;
            let w_scale = constant(graph, input(&node, 4))?.as_f32()?;
            let out = requantized(graph, input(&node, 7)?)?;
            let (a_zero, a_zero_rt) = a_zero(graph, input(&node, 2))?;
            let (shape, layout, dims) = match op {
                Op::QLinearConv(qc) => {
                    let (layout, m, depth, conv) = conv_dims(graph, a, w, &qc.conv)?;
                    (Int8Shape::Conv(conv), layout, (m, depth))
                }
                _ => {
                    let (k, n) = product_dims(graph, a, w)?;
                    (Int8Shape::MatMul { k, n }, Layout::Cols(false), (k, n))
                }
            };
            let n_channels = channels(layout, dims.0, dims.1);
            if w_scale.len() != 1 && w_scale.len() != n_channels {
                return None;
            }
            let multiplier: Vec<f32> = w_scale.iter().map(|&s| x_scale * s / y_scale).collect();
            let bias = match input(&node, 8) {
                Some(b) => {
                    let values = constant(graph, Some(b))?.as_i32()?;
                    (values.len() == n_channels).then_some(b)?;
                    Some(b)
                }
                None => None,
            };
            let ids = pack_weights(graph, cache, (w, input(&node, 5)), layout, dims)?;
            let name = format!("{}/multiplier", node.name);
            let multiplier = add_constant(
                graph,
                name,
                Tensor::from_f32(vec![multiplier.len()], &multiplier),
            );
            inputs[1] = a_zero_rt;
            inputs[3..6].copy_from_slice(&ids.map(Some));
            inputs[6] = Some(multiplier);
            inputs[7] = bias;
            Int8Product {
                shape,
                out,
                dynamic: false,
                a_zero,
                a_scale: x_scale,
                activations: Vec::new(),
            }
        }
        Op::QGemm(q) => {
            let (q, w) = (q.clone(), input(&node, 3)?);
            let shape = graph.value(w).shape.clone()?;
            let (k, n) = if q.trans_b {
                (shape[1], shape[0])
            } else {
                (shape[0], shape[1])
            };
            let a_scale = scalar_f32(graph, input(&node, 1))?;
            let b_scale = constant(graph, input(&node, 4))?.as_f32()?;
            let (a_zero, a_zero_rt) = a_zero(graph, input(&node, 2))?;
            let y_scale = match input(&node, 7) {
                Some(v) => Some(scalar_f32(graph, Some(v))?),
                None => None,
            };
            // ORT's order: alpha * a_scale * b_scale[j], then / y_scale.
            let scales: Vec<f32> = b_scale
                .iter()
                .map(|&b| {
                    let s = q.alpha * a_scale * b;
                    y_scale.map_or(s, |y| s / y)
                })
                .collect();
            let c = match input(&node, 6) {
                Some(c) => Some(constant(graph, Some(c))?.as_i32()?),
                None => None,
            };
            let out = match input(&node, 8) {
                Some(z) => requantized(graph, z)?,
                None => Int8Out::F32,
            };
            let per_channel = |v: &[i32], j: usize| v[if v.len() == 1 { 0 } else { j }];
            let bias = match (&c, out) {
                (None, _) => None,
                (Some(c), Int8Out::F32) => {
                    // The product is scaled after C is added: C * scale, per column.
                    let values: Vec<f32> = (0..n)
                        .map(|j| {
                            per_channel(c, j) as f32 * scales[if scales.len() == 1 { 0 } else { j }]
                        })
                        .collect();
                    let name = format!("{}/bias", node.name);
                    Some(add_constant(
                        graph,
                        name,
                        Tensor::from_f32(vec![n], &values),
                    ))
                }
                (Some(c), _) => {
                    let values: Vec<i32> = (0..n).map(|j| per_channel(c, j)).collect();
                    let name = format!("{}/bias", node.name);
                    Some(add_constant(
                        graph,
                        name,
                        Tensor::from_i32(vec![n], &values),
                    ))
                }
            };
            let ids = pack_weights(
                graph,
                cache,
                (w, input(&node, 5)),
                Layout::Cols(q.trans_b),
                (k, n),
            )?;
            let name = format!("{}/scale", node.name);
            let scales = add_constant(graph, name, Tensor::from_f32(vec![scales.len()], &scales));
            inputs[1] = a_zero_rt;
            inputs[3..6].copy_from_slice(&ids.map(Some));
            inputs[6] = Some(scales);
            inputs[7] = bias;
            Int8Product {
                shape: Int8Shape::MatMul { k, n },
                out,
                dynamic: false,
                a_zero,
                a_scale: 1.0,
                activations: Vec::new(),
            }
        }
        Op::QuantMatMulToFloat(q) => {
            let w = w?;
            let (k, n) = product_dims(graph, a, w)?;
            let dynamic = q.dynamic;
            let (scale_at, zero_at, bias_at) = if dynamic { (2, 3, 4) } else { (3, 5, 6) };
            let w_scale = input(&node, scale_at)?;
            constant(graph, Some(w_scale))?.as_f32()?;
            let ids = pack_weights(
                graph,
                cache,
                (w, input(&node, zero_at)),
                Layout::Cols(false),
                (k, n),
            )?;
            inputs[3..6].copy_from_slice(&ids.map(Some));
            inputs[6] = Some(w_scale);
            inputs[7] = input(&node, bias_at);
            let (mut a_zero_value, mut a_scale) = (0, 1.0);
            if !dynamic {
                let (z, z_rt) = a_zero(graph, input(&node, 4))?;
                a_zero_value = z;
                inputs[1] = z_rt;
                let s = input(&node, 2)?;
                match scalar_f32(graph, Some(s)) {
                    Some(v) => a_scale = v,
                    None => inputs[2] = Some(s),
                }
            }
            Int8Product {
                shape: Int8Shape::MatMul { k, n },
                out: Int8Out::F32,
                dynamic,
                a_zero: a_zero_value,
                a_scale,
                activations: Vec::new(),
            }
        }
        _ => return None,
    };
    inputs[0] = Some(a);
    while inputs.last() == Some(&None) {
        inputs.pop();
    }
    Some(int8_node(&node, inputs, vec![output(&node, 0)], product))
}

/// Whether a constant of `shape` holds one value per output channel, laid out to broadcast
/// along the channel axis of the output: the last axis of a product, axis 1 of a
/// convolution's `[N, M, *spatial]` (as `[M, 1, ...]` or `[1, M, 1, ...]`).
fn per_channel(shape: &[usize], channels: usize, conv_rank: Option<usize>) -> bool {
    let trimmed: Vec<usize> = shape.iter().copied().skip_while(|&d| d == 1).collect();
    match conv_rank {
        None => trimmed == [channels],
        // `[M, 1, ...]` must reach back to axis 1: a shorter `[M]` or `[M, 1]` broadcasts
        // along a spatial axis instead.
        Some(rank) => {
            trimmed.first() == Some(&channels)
                && trimmed[1..].iter().all(|&d| d == 1)
                && trimmed.len() + 1 == rank
        }
    }
}

/// Matches `quantize_dynamic`'s chain ending at node `end` (the `Mul` by the scales, or the
/// `Add` of a bias after it) whose product's weights are in `packed`, and replaces it with
/// one dynamic product.
fn find_dynamic(
    m: &Matcher<'_>,
    end: usize,
    packed: &HashMap<usize, ([ValueId; 3], Int8Shape)>,
    with_bias: bool,
) -> Option<Fusion> {
    let graph = m.graph;
    let last = &graph.nodes[end];
    if !last.domain.is_empty() || (last.op_type == "Add") != with_bias {
        return None;
    }
    // An optional bias Add at the end.
    let (mul_out, bias, mut nodes) = match last.op_type.as_str() {
        "Add" => {
            let (x, b) = Matcher::operand_pairs(last)
                .into_iter()
                .find(|&(x, b)| m.op(x, "Mul").is_some() && graph.value(b).constant.is_some())?;
            (x, Some(b), vec![end])
        }
        "Mul" => (output(last, 0)?, None, Vec::new()),
        _ => return None,
    };
    let (mul_index, mul) = m.op(mul_out, "Mul")?;
    nodes.push(mul_index);
    // Mul(Cast(product), scale) with scale = Mul(x_scale, w_scale).
    let (cast_index, cast, scale_index, scale) =
        Matcher::operand_pairs(mul).into_iter().find_map(|(c, s)| {
            let (ci, cast) = m.op(c, "Cast")?;
            let (si, scale) = m.op(s, "Mul")?;
            Some((ci, cast, si, scale))
        })?;
    if super::pattern::attr_i64(cast, "to") != Some(1) {
        return None;
    }
    let product_out = input(cast, 0)?;
    let product_index = m.producer[product_out.index()]?;
    let (ids, shape) = packed.get(&product_index)?;
    let product = &graph.nodes[product_index];
    let quantized = input(product, 0)?;
    let (_, dq) = m.op(quantized, "DynamicQuantizeLinear")?;
    let (x_scale, x_zero) = (output(dq, 1)?, output(dq, 2)?);
    if input(product, 2) != Some(x_zero) || output(dq, 0) != Some(quantized) {
        return None;
    }
    let w_scale = Matcher::operand_pairs(scale)
        .into_iter()
        .find(|&(a, _)| a == x_scale)
        .map(|(_, b)| b)?;
    let (channels, conv_rank) = match shape {
        Int8Shape::MatMul { n, .. } => (*n, None),
        Int8Shape::Conv(conv)
        | Int8Shape::ConvChannelsLast(conv)
        | Int8Shape::DepthwiseChannelsLast(conv)
        | Int8Shape::ConvFromChannelsFirst(conv) => (
            conv.packed_from.as_ref()?.first().copied()?,
            Some(graph.value(product_out).shape.as_ref()?.len()),
        ),
    };
    let flat = |v: ValueId| -> Option<()> {
        let value = graph.value(v);
        let t = value.constant.as_ref()?;
        t.as_f32()?;
        (t.len() == 1 || per_channel(&t.shape, channels, conv_rank)).then_some(())
    };
    flat(w_scale)?;
    if let Some(b) = bias {
        flat(b)?;
        if graph.value(b).len() != channels {
            return None;
        }
    }
    // The quantizer stays: other products may share its output (the Q, K and V projections
    // of an attention layer read one quantized input).
    nodes.extend([cast_index, scale_index, product_index]);
    let node = int8_node(
        last,
        vec![
            Some(quantized),
            Some(x_zero),
            Some(x_scale),
            Some(ids[0]),
            Some(ids[1]),
            Some(ids[2]),
            Some(w_scale),
            bias,
        ],
        vec![output(last, 0)],
        Int8Product {
            shape: shape.clone(),
            out: Int8Out::F32,
            dynamic: false,
            a_zero: 0,
            a_scale: 1.0,
            activations: Vec::new(),
        },
    );
    Some(Fusion { nodes, node })
}

/// A `DequantizeLinear` node's inputs `(x, scale, zero)` if `v` is its output (per tensor or
/// per axis, not blocked), with its axis.
fn dequantized(
    graph: &Graph,
    producer: &[Option<usize>],
    v: ValueId,
) -> Option<(ValueId, ValueId, Option<ValueId>, i64)> {
    let node = &graph.nodes[producer[v.index()]?];
    match &node.op {
        Some(Op::QuantLinear(l)) if l.dequantize && l.block == 0 => {
            Some((input(node, 0)?, input(node, 1)?, input(node, 2), l.axis))
        }
        _ => None,
    }
}

/// Finds every `DequantizeLinear -> Conv/Gemm/MatMul -> QuantizeLinear` whose weights are a
/// dequantized 8-bit constant and whose scales and zero points are constants, packs its
/// weights, and returns the fusions to apply, keyed by the `QuantizeLinear`'s index.
fn plan_qdq(graph: &mut Graph, cache: &mut PackCache) -> HashMap<usize, (Vec<usize>, Node)> {
    let producer = producers(graph);
    let mut plans = HashMap::new();
    for q_index in 0..graph.nodes.len() {
        if let Some(plan) = plan_one_qdq(graph, &producer, q_index, cache) {
            plans.insert(q_index, plan);
        }
    }
    plans
}

/// [`plan_qdq`] at one `QuantizeLinear`.
fn plan_one_qdq(
    graph: &mut Graph,
    producer: &[Option<usize>],
    q_index: usize,
    cache: &mut PackCache,
) -> Option<(Vec<usize>, Node)> {
    let q = graph.nodes[q_index].clone();
    match &q.op {
        Some(Op::QuantLinear(l)) if !l.dequantize && l.block == 0 => {}
        _ => return None,
    }
    let y = input(&q, 0)?;
    let y_scale = scalar_f32(graph, input(&q, 1))?;
    let out = requantized(graph, input(&q, 2)?)?;
    let p_index = producer[y.index()]?;
    let p = graph.nodes[p_index].clone();
    if p.guards != q.guards {
        return None;
    }
    let (x, w, bias) = (input(&p, 0)?, input(&p, 1)?, input(&p, 2));
    // The weights' layout and the axis their per-channel scales run along.
    enum Kind {
        Conv(Conv),
        Product { transposed: bool },
    }
    let kind = match p.op.as_ref()? {
        Op::Conv(c) if c.activations.is_empty() && !c.residual && c.packed_from.is_none() => {
            Kind::Conv(c.clone())
        }
        Op::Gemm(g)
            if g.alpha == 1.0
                && g.beta == 1.0
                && !g.trans_a
                && g.activation.is_none()
                && g.packed_b.is_none() =>
        {
            Kind::Product {
                transposed: g.trans_b,
            }
        }
        Op::MatMul(_) if bias.is_none() => Kind::Product { transposed: false },
        _ => return None,
    };
    let (xq, xs, xz, _) = dequantized(graph, producer, x)?;
    let x_dtype = graph.value(xq).dtype?;
    if !matches!(x_dtype, DType::U8 | DType::I8) || graph.value(xq).constant.is_some() {
        return None;
    }
    let x_scale = scalar_f32(graph, Some(xs))?;
    let (a_zero, a_zero_rt) = a_zero(graph, xz)?;
    if a_zero_rt.is_some() {
        return None;
    }
    let (wq, ws, wz, w_axis) = dequantized(graph, producer, w)?;
    constant(graph, Some(wq))?;
    let w_scale = constant(graph, Some(ws))?.as_f32()?;
    let w_shape = graph.value(wq).shape.clone()?;
    let (shape, layout, dims, channel_axis) = match kind {
        Kind::Conv(conv) => {
            let (layout, m, depth, conv) = conv_dims(graph, x, wq, &conv)?;
            (Int8Shape::Conv(conv), layout, (m, depth), 0)
        }
        Kind::Product { transposed } => {
            let [r, c] = w_shape[..] else { return None };
            let (k, n) = if transposed { (c, r) } else { (r, c) };
            let x_shape = graph.value(x).shape.as_ref()?;
            if x_shape.last() != Some(&k) {
                return None;
            }
            let axis = if transposed { 0 } else { 1 };
            (
                Int8Shape::MatMul { k, n },
                Layout::Cols(transposed),
                (k, n),
                axis,
            )
        }
    };
    let channels = channels(layout, dims.0, dims.1);
    let rank = i64::try_from(w_shape.len()).ok()?;
    let axis_ok = w_scale.len() == 1
        || (w_scale.len() == channels && (w_axis == channel_axis || w_axis == channel_axis - rank));
    if !axis_ok {
        return None;
    }
    let scale_of = |c: usize| w_scale[if w_scale.len() == 1 { 0 } else { c }];
    // The bias must be the int32 constant ORT's quantizer writes, in the product's scale.
    let bias = match bias {
        None => None,
        Some(b) => {
            let (bq, bs, bz, _) = dequantized(graph, producer, b)?;
            let values = constant(graph, Some(bq))?.as_i32()?;
            let b_scale = constant(graph, Some(bs))?.as_f32()?;
            if let Some(z) = bz {
                if constant(graph, Some(z))?.to_i64s()?.iter().any(|&v| v != 0) {
                    return None;
                }
            }
            if values.len() != channels || (b_scale.len() != 1 && b_scale.len() != channels) {
                return None;
            }
            let consistent = (0..channels).all(|c| {
                let want = x_scale * scale_of(c);
                let got = b_scale[if b_scale.len() == 1 { 0 } else { c }];
                (got - want).abs() <= 1e-5 * want.abs()
            });
            consistent.then_some(())?;
            Some(bq)
        }
    };
    let multiplier: Vec<f32> = (0..w_scale.len())
        .map(|c| x_scale * w_scale[c] / y_scale)
        .collect();
    let ids = pack_weights(graph, cache, (wq, wz), layout, dims)?;
    let name = format!("{}/multiplier", p.name);
    let multiplier = add_constant(
        graph,
        name,
        Tensor::from_f32(vec![multiplier.len()], &multiplier),
    );
    let mut inputs = vec![
        Some(xq),
        None,
        None,
        Some(ids[0]),
        Some(ids[1]),
        Some(ids[2]),
        Some(multiplier),
    ];
    if bias.is_some() {
        inputs.push(bias);
    }
    // Named after the product, guarded like the quantizer (the fusion checks both agree).
    let mut node = int8_node(
        &q,
        inputs,
        vec![output(&q, 0)],
        Int8Product {
            shape,
            out,
            dynamic: false,
            a_zero,
            a_scale: x_scale,
            activations: Vec::new(),
        },
    );
    node.name.clone_from(&p.name);
    Some((vec![p_index, q_index], node))
}

#[cfg(test)]
mod tests {
    use super::per_channel;

    #[test]
    fn per_channel_constants_must_reach_the_channel_axis() {
        // A product's output channels are its last axis.
        assert!(per_channel(&[8], 8, None));
        assert!(per_channel(&[1, 8], 8, None));
        assert!(!per_channel(&[8, 1], 8, None));
        // A convolution's are axis 1 of [N, M, H, W]: [M, 1, 1] or [1, M, 1, 1], never [M]
        // or [M, 1], which broadcast along W or H.
        assert!(per_channel(&[8, 1, 1], 8, Some(4)));
        assert!(per_channel(&[1, 8, 1, 1], 8, Some(4)));
        assert!(!per_channel(&[8], 8, Some(4)));
        assert!(!per_channel(&[8, 1], 8, Some(4)));
    }
}
