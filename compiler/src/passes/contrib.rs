//! Expands ONNX Runtime's `com.microsoft` transformer ops ([`Contrib`]) into standard ops
//! during shape inference, when their inputs' shapes are known. What they become:
//!
//! - `Attention`: `MatMul` and `Add` (the bias) for the Q/K/V projection, three `Slice`s, the
//!   mask turned into an additive bias, and ONNX `Attention` (opset 23) over 3-D operands;
//!   `QAttention` the same with `MatMulIntegerToFloat` as the projection;
//! - `SkipLayerNormalization`: `Add`s of the bias and the skip, then `LayerNormalization`
//!   (`SkipSimplifiedLayerNormalization` and ORT's `SimplifiedLayerNormalization`:
//!   `RMSNormalization`);
//! - `BiasGelu`, `FastGelu`, `Gelu`: an `Add` and ONNX `Gelu` (exact or tanh);
//!   `QuickGelu`: `x * Sigmoid(alpha * x)`; `BiasAdd`: two `Add`s;
//! - `GroupQueryAttention` and `RotaryEmbedding`: see [`super::group_query`].
//!
//! The later passes then fuse them as they fuse the same ops from any exporter (the bias
//! `Add` into the product, the residual into its epilogue, the activation after it).

use super::infer_shapes::Expansion;
use super::pattern::{add_constant, float_attr, int_attr, string_attr};
use crate::error::{CompileError, Result};
use crate::ir::{DType, Graph, Node, Tensor, ValueId};
use crate::ops::contrib::{AttentionAttrs, Contrib};

/// The standard nodes computing `node`'s outputs.
pub(super) fn expand(graph: &mut Graph, node: &Node, op: &Contrib) -> Result<Vec<Node>> {
    let mut x = Expansion::of(node);
    let out = |i: usize| node.outputs.get(i).copied().flatten();
    let input = |i: usize, what: &str| {
        node.inputs.get(i).copied().flatten().ok_or_else(|| {
            CompileError::malformed(format!("{} without its {what} input", node.op_type))
        })
    };
    let opt = |i: usize| node.inputs.get(i).copied().flatten();
    match op {
        Contrib::Attention(attrs) => attention(graph, &mut x, node, attrs)?,
        Contrib::MultiHead(attrs) => multi_head(graph, &mut x, node, attrs)?,
        Contrib::GroupQuery(attrs) => super::group_query::group_query(graph, &mut x, node, attrs)?,
        Contrib::Rotary {
            interleaved,
            num_heads,
            rotary_dim,
        } => {
            super::group_query::rotary(graph, &mut x, node, *interleaved, *num_heads, *rotary_dim)?
        }
        Contrib::EmbedNorm { epsilon } => embed_norm(graph, &mut x, node, *epsilon)?,
        Contrib::SkipNorm {
            epsilon,
            simplified,
        } => {
            let mut sum = input(0, "input")?;
            // The bias is input 4 (after beta); the simplified form has no beta.
            if let Some(bias) = opt(if *simplified { 3 } else { 4 }) {
                sum = x.step(graph, "biased", "Add", 14, vec![sum, bias], vec![])?;
            }
            let skip = input(1, "skip")?;
            // The sum is output 3 when the model reads it.
            let total = out(3).unwrap_or_else(|| x.value(graph, "sum"));
            x.push(
                "sum",
                ("", "Add", 14),
                vec![Some(sum), Some(skip)],
                vec![Some(total)],
                vec![],
            )?;
            let attrs = vec![int_attr("axis", -1), float_attr("epsilon", *epsilon)];
            let gamma = Some(input(2, "gamma")?);
            if *simplified {
                x.push(
                    "norm",
                    ("", "RMSNormalization", 23),
                    vec![Some(total), gamma],
                    vec![out(0)],
                    attrs,
                )?;
            } else {
                x.push(
                    "norm",
                    ("", "LayerNormalization", 17),
                    vec![Some(total), gamma, opt(3)],
                    vec![out(0), out(1), out(2)],
                    attrs,
                )?;
            }
        }
        Contrib::SimplifiedNorm { axis, epsilon } => x.push(
            "norm",
            ("", "RMSNormalization", 23),
            vec![Some(input(0, "X")?), Some(input(1, "scale")?)],
            vec![out(0)],
            vec![int_attr("axis", *axis), float_attr("epsilon", *epsilon)],
        )?,
        Contrib::BiasGelu | Contrib::FastGelu | Contrib::Gelu => {
            let mut v = input(0, "X")?;
            if let (false, Some(bias)) = (matches!(op, Contrib::Gelu), opt(1)) {
                v = x.step(graph, "biased", "Add", 14, vec![v, bias], vec![])?;
            }
            let approximate = if matches!(op, Contrib::FastGelu) {
                "tanh"
            } else {
                "none"
            };
            x.push(
                "gelu",
                ("", "Gelu", 20),
                vec![Some(v)],
                vec![out(0)],
                vec![string_attr("approximate", approximate)],
            )?;
        }
        Contrib::QuickGelu { alpha } => {
            let v = input(0, "X")?;
            let dtype = graph.value(v).dtype.unwrap_or(DType::F32);
            let a = add_constant(
                graph,
                format!("{}/alpha", node.name),
                Tensor::from_numbers(dtype, vec![], &[f64::from(*alpha)]),
            );
            let scaled = x.step(graph, "scaled", "Mul", 14, vec![v, a], vec![])?;
            let gate = x.step(graph, "gate", "Sigmoid", 13, vec![scaled], vec![])?;
            x.push(
                "gated",
                ("", "Mul", 14),
                vec![Some(v), Some(gate)],
                vec![out(0)],
                vec![],
            )?;
        }
        Contrib::BiasAdd => {
            let biased = x.step(
                graph,
                "biased",
                "Add",
                14,
                vec![input(0, "X")?, input(1, "bias")?],
                vec![],
            )?;
            x.push(
                "sum",
                ("", "Add", 14),
                vec![Some(biased), Some(input(2, "skip")?)],
                vec![out(0)],
                vec![],
            )?;
        }
    }
    Ok(x.nodes)
}

/// `EmbedLayerNormalization`: `Gather`s of the word, position (`position_ids`, else
/// `0..S`) and segment embeddings, their sum (output 2), `LayerNormalization` (output 0), and
/// `mask_index` (output 1): per row, how many mask entries are exactly 1 (zeros without a
/// mask), as ORT's kernel counts them.
fn embed_norm(graph: &mut Graph, x: &mut Expansion, node: &Node, epsilon: f32) -> Result<()> {
    let get = |i: usize| node.inputs.get(i).copied().flatten();
    let out = |i: usize| node.outputs.get(i).copied().flatten();
    let need = |i: usize, what: &str| {
        get(i).ok_or_else(|| {
            CompileError::malformed(format!("EmbedLayerNormalization without {what}"))
        })
    };
    let ids = need(0, "input_ids")?;
    let ids_shape = graph.value(ids).shape.clone().unwrap_or_default();
    let [b, s] = ids_shape[..] else {
        return Err(CompileError::shape(format!(
            "EmbedLayerNormalization input_ids must be [batch, sequence], found {ids_shape:?}"
        )));
    };
    let gather = |x: &mut Expansion, graph: &mut Graph, what: &str, table: ValueId, at| {
        x.step(
            graph,
            what,
            "Gather",
            13,
            vec![table, at],
            vec![int_attr("axis", 0)],
        )
    };
    let words = gather(x, graph, "words", need(2, "word_embedding")?, ids)?;
    let positions = match get(8) {
        Some(p) => p,
        None => add_constant(
            graph,
            format!("{}/positions", node.name),
            Tensor::from_numbers(
                DType::I32,
                vec![1, s],
                &(0..s).map(|j| j as f64).collect::<Vec<_>>(),
            ),
        ),
    };
    let places = gather(
        x,
        graph,
        "places",
        need(3, "position_embedding")?,
        positions,
    )?;
    let mut sum = x.step(graph, "word_place", "Add", 14, vec![words, places], vec![])?;
    if let (Some(segments), Some(table)) = (get(1), get(4)) {
        let rows = gather(x, graph, "segments", table, segments)?;
        sum = x.step(graph, "embedded", "Add", 14, vec![sum, rows], vec![])?;
    }
    if let Some(o) = out(2) {
        x.push(
            "embedding_sum",
            ("", "Identity", 16),
            vec![Some(sum)],
            vec![Some(o)],
            vec![],
        )?;
    }
    x.push(
        "norm",
        ("", "LayerNormalization", 17),
        vec![Some(sum), Some(need(5, "gamma")?), Some(need(6, "beta")?)],
        vec![out(0)],
        vec![int_attr("axis", -1), float_attr("epsilon", epsilon)],
    )?;
    if let Some(o) = out(1) {
        let count = match get(7) {
            Some(mask) => {
                let mdtype = graph.value(mask).dtype.unwrap_or(DType::I32);
                let one = add_constant(
                    graph,
                    format!("{}/one", node.name),
                    Tensor::from_numbers(mdtype, vec![], &[1.0]),
                );
                let ones = x.step(graph, "mask_ones", "Equal", 13, vec![mask, one], vec![])?;
                let ones = x.step(
                    graph,
                    "mask_ones_i32",
                    "Cast",
                    13,
                    vec![ones],
                    vec![int_attr("to", 6)],
                )?;
                let axis = x.dims(graph, "mask_axis", &[1])?;
                x.step(
                    graph,
                    "mask_count",
                    "ReduceSum",
                    13,
                    vec![ones, axis],
                    vec![int_attr("keepdims", 0)],
                )?
            }
            None => add_constant(
                graph,
                format!("{}/mask_count", node.name),
                Tensor::from_numbers(DType::I32, vec![b], &vec![0.0; b]),
            ),
        };
        x.push(
            "mask_index",
            ("", "Identity", 16),
            vec![Some(count)],
            vec![Some(o)],
            vec![],
        )?;
    }
    Ok(())
}

/// `MultiHeadAttention` with 3-D query, key and value: the bias's thirds added to each, the
/// key padding mask as an additive bias (`[B]` lengths, `[3B+2]`, `[B, L]` or `[B, S, L]`), and
/// ONNX `Attention`.
fn multi_head(
    graph: &mut Graph,
    x: &mut Expansion,
    node: &Node,
    attrs: &AttentionAttrs,
) -> Result<()> {
    let get = |i: usize| node.inputs.get(i).copied().flatten();
    let shape = |graph: &Graph, v: ValueId| graph.value(v).shape.clone().unwrap_or_default();
    let (Some(q), Some(k), Some(v)) = (get(0), get(1), get(2)) else {
        return Err(CompileError::unsupported(
            "MultiHeadAttention without separate key and value (packed forms)",
        ));
    };
    let (qs, ks, vs) = (shape(graph, q), shape(graph, k), shape(graph, v));
    let ([b, s, d], [kb, l, kd], [vb, vl, dv]) = (&qs[..], &ks[..], &vs[..]) else {
        return Err(CompileError::unsupported(format!(
            "MultiHeadAttention with query {qs:?}, key {ks:?}, value {vs:?} (3-D only)"
        )));
    };
    let n = attrs.num_heads;
    if kb != b || vb != b || vl != l || kd != d || d % n != 0 || dv % n != 0 {
        return Err(CompileError::shape(format!(
            "MultiHeadAttention: query {qs:?}, key {ks:?}, value {vs:?} with {n} heads do not fit"
        )));
    }
    let (b, s, l, d, dv) = (*b, *s, *l, *d, *dv);
    let (mut q, mut k, mut v) = (q, k, v);
    if let Some(bias) = get(3) {
        let mut part = |graph: &mut Graph, what: &str, from: usize, to: usize, onto: ValueId| {
            let slice = x.slice(graph, &format!("{what}_bias"), bias, 0, [from, to])?;
            x.step(graph, what, "Add", 14, vec![onto, slice], vec![])
        };
        q = part(graph, "q", 0, d, q)?;
        k = part(graph, "k", d, 2 * d, k)?;
        v = part(graph, "v", 2 * d, 2 * d + dv, v)?;
    }
    let mask = match get(4) {
        Some(m) => mask_bias(graph, x, node, m, [b, s, l], attrs.mask_filter_value, false)?,
        None => None,
    };
    sdpa(x, node, attrs, [q, k, v], mask)
}

/// `Attention` / `QAttention`: the projection, the split into Q, K and V, the mask as an
/// additive bias, and ONNX `Attention` over `[B, S, hidden]` operands.
fn attention(
    graph: &mut Graph,
    x: &mut Expansion,
    node: &Node,
    attrs: &AttentionAttrs,
) -> Result<()> {
    let op = node.op_type.as_str();
    let get = |i: usize| node.inputs.get(i).copied().flatten();
    let shape = |graph: &Graph, v: ValueId| graph.value(v).shape.clone().unwrap_or_default();
    let input = get(0).ok_or_else(|| CompileError::malformed(format!("{op} without input")))?;
    let weights = get(1).ok_or_else(|| CompileError::malformed(format!("{op} without weights")))?;
    let (xs, ws) = (shape(graph, input), shape(graph, weights));
    let [b, s, _] = xs[..] else {
        return Err(CompileError::shape(format!(
            "{op} input must be [batch, sequence, hidden], found {xs:?}"
        )));
    };
    let [_, width] = ws[..] else {
        return Err(CompileError::shape(format!(
            "{op} weights must be [input hidden, 3 * hidden], found {ws:?}"
        )));
    };
    let [hq, hk, hv] = match attrs.qkv_hidden_sizes {
        Some(sizes) => sizes,
        None if width % 3 == 0 => [width / 3; 3],
        None => {
            return Err(CompileError::shape(format!(
                "{op} weights width {width} is not three equal parts (and no qkv_hidden_sizes)"
            )))
        }
    };
    let n = attrs.num_heads;
    if hq + hk + hv != width || hq != hk || hq % n != 0 || hv % n != 0 {
        return Err(CompileError::shape(format!(
            "{op}: Q/K/V widths {hq}/{hk}/{hv} with {n} heads do not fit weights {ws:?}"
        )));
    }
    // The projection, [B, S, hq + hk + hv].
    let qkv = if attrs.quantized {
        let qkv = x.value(graph, "qkv");
        // QAttention inputs: input, weight, bias, input_scale, weight_scale, mask_index,
        // input_zero_point, weight_zero_point.
        x.push(
            "qkv",
            ("com.microsoft", "MatMulIntegerToFloat", 1),
            vec![get(0), get(1), get(3), get(4), get(6), get(7), get(2)],
            vec![Some(qkv)],
            vec![],
        )?;
        qkv
    } else {
        let product = x.step(
            graph,
            "qkv_product",
            "MatMul",
            13,
            vec![input, weights],
            vec![],
        )?;
        match get(2) {
            Some(bias) => x.step(graph, "qkv", "Add", 14, vec![product, bias], vec![])?,
            None => product,
        }
    };
    let q = x.slice(graph, "q", qkv, 2, [0, hq])?;
    let k = x.slice(graph, "k", qkv, 2, [hq, hq + hk])?;
    let v = x.slice(graph, "v", qkv, 2, [hq + hk, hq + hk + hv])?;
    let mask_index = if attrs.quantized { get(5) } else { get(3) };
    let mask = match mask_index {
        Some(m) => mask_bias(graph, x, node, m, [b, s, s], attrs.mask_filter_value, true)?,
        None => None,
    };
    sdpa(x, node, attrs, [q, k, v], mask)
}

/// ONNX `Attention` (opset 23) over 3-D `[B, S, heads * size]` Q, K and V, with `num_heads`
/// heads for all three, the optional additive mask, `is_causal` for `unidirectional` and the
/// scale when one is given; it writes the node's first output.
fn sdpa(
    x: &mut Expansion,
    node: &Node,
    attrs: &AttentionAttrs,
    [q, k, v]: [ValueId; 3],
    mask: Option<ValueId>,
) -> Result<()> {
    let heads = i64::try_from(attrs.num_heads).unwrap_or(i64::MAX);
    let mut attributes = vec![
        int_attr("q_num_heads", heads),
        int_attr("kv_num_heads", heads),
        int_attr("is_causal", i64::from(attrs.unidirectional)),
    ];
    if let Some(scale) = attrs.scale {
        attributes.push(float_attr("scale", scale));
    }
    let mut inputs = vec![Some(q), Some(k), Some(v)];
    if mask.is_some() {
        inputs.push(mask);
    }
    x.push(
        "attention",
        ("", "Attention", 23),
        inputs,
        vec![node.outputs.first().copied().flatten()],
        attributes,
    )
}

/// ORT's `mask_index` as an additive float bias that broadcasts over `[B, heads, S, T]`:
/// 0 where a key is visible, `filter` where it is masked (ORT adds it to the scaled
/// scores). Formats by shape, as ORT's CPU kernel reads them: `[B]` key lengths (keys at or
/// past the length are masked), `[2 B]` ends then starts (Attention only:
/// `ends_and_starts`), `[3 B + 2]` (its first `B` values are the lengths), `[B, T]` and
/// `[B, S, T]` raw masks (values `<= 0` mask); `[B, 1]` and `[1, 1]` are placeholders that
/// mask nothing (`None`).
#[allow(clippy::too_many_arguments, reason = "the mask's geometry and format")]
fn mask_bias(
    graph: &mut Graph,
    x: &mut Expansion,
    node: &Node,
    mask: ValueId,
    [b, s, t]: [usize; 3],
    filter: f32,
    ends_and_starts: bool,
) -> Result<Option<ValueId>> {
    let v = graph.value(mask);
    let (dtype, shape) = (
        v.dtype.unwrap_or(DType::I32),
        v.shape.clone().unwrap_or_default(),
    );
    if matches!(shape[..], [mb, 1] if (mb == b || mb == 1) && t != 1) {
        return Ok(None);
    }
    let constant = |graph: &mut Graph, what: &str, tensor: Tensor| {
        add_constant(graph, format!("{}/{what}", node.name), tensor)
    };
    let visible = match shape[..] {
        [len] if len == b || (len == 2 * b && ends_and_starts) || len == 3 * b + 2 => {
            let positions = constant(
                graph,
                "positions",
                Tensor::from_numbers(
                    dtype,
                    vec![1, t],
                    &(0..t).map(|j| j as f64).collect::<Vec<_>>(),
                ),
            );
            let column = x.dims(graph, "column", &[b, 1])?;
            let bound = |x: &mut Expansion, graph: &mut Graph, what: &str, from: usize| {
                let part = x.slice(graph, what, mask, 0, [from, from + b])?;
                x.step(
                    graph,
                    &format!("{what}_column"),
                    "Reshape",
                    14,
                    vec![part, column],
                    vec![],
                )
            };
            let ends = bound(x, graph, "ends", 0)?;
            let before_end = x.step(
                graph,
                "before_end",
                "Less",
                13,
                vec![positions, ends],
                vec![],
            )?;
            if len != 2 * b {
                before_end
            } else {
                let starts = bound(x, graph, "starts", b)?;
                let after_start = x.step(
                    graph,
                    "after_start",
                    "GreaterOrEqual",
                    16,
                    vec![positions, starts],
                    vec![],
                )?;
                x.step(
                    graph,
                    "visible",
                    "And",
                    7,
                    vec![before_end, after_start],
                    vec![],
                )?
            }
        }
        [mb, mt] if mb == b && mt == t => raw_visible(graph, x, node, mask, dtype)?,
        [mb, ms, mt] if mb == b && ms == s && mt == t => raw_visible(graph, x, node, mask, dtype)?,
        _ => {
            return Err(CompileError::unsupported(format!(
                "{} mask of shape {shape:?} (supported: [B], {}[3B+2], [B, T], [B, S, T] with \
                 B = {b}, S = {s}, T = {t}; 4-D masks are not)",
                node.op_type,
                if ends_and_starts { "[2B], " } else { "" },
            )))
        }
    };
    let zero = constant(
        graph,
        "unmasked",
        Tensor::from_numbers(DType::F32, vec![], &[0.0]),
    );
    let masked = constant(
        graph,
        "masked",
        Tensor::from_numbers(DType::F32, vec![], &[f64::from(filter)]),
    );
    let bias = x.step(
        graph,
        "mask_bias",
        "Where",
        16,
        vec![visible, zero, masked],
        vec![],
    )?;
    // [B, T] -> [B, 1, 1, T]; [B, S, T] -> [B, 1, S, T].
    let rows = if shape.len() == 3 { s } else { 1 };
    let to4 = x.dims(graph, "mask_4d", &[b, 1, rows, t])?;
    x.step(
        graph,
        "mask_bias_4d",
        "Reshape",
        14,
        vec![bias, to4],
        vec![],
    )
    .map(Some)
}

/// Where a raw mask is nonzero.
fn raw_visible(
    graph: &mut Graph,
    x: &mut Expansion,
    node: &Node,
    mask: ValueId,
    dtype: DType,
) -> Result<ValueId> {
    let zero = add_constant(
        graph,
        format!("{}/mask_zero", node.name),
        Tensor::from_numbers(dtype, vec![], &[0.0]),
    );
    x.step(graph, "visible", "Greater", 13, vec![mask, zero], vec![])
}

/// `MatMulNBits` with a constant `g_idx` (act-order weights, as GPTQ writes them: row `k` of B
/// belongs to block `g_idx[k]`, rows of a block scattered over K) as the same product without
/// it: B's rows sorted by block at compile time (a stable sort, so a `g_idx` that is already
/// `k / block_size` changes nothing and adds no node), and A's columns gathered into that
/// order by a `Gather` before the product. Scales and zero points are per block and stay.
/// Every block but the last must hold `block_size` rows (the last the rest of K), which is
/// what the quantizers write; anything else is refused.
pub(super) fn expand_nbits_g_idx(
    graph: &mut Graph,
    node: &Node,
    op: &crate::ops::nbits::MatMulNBits,
) -> Result<Vec<Node>> {
    let (k, n, block, bits) = (op.k, op.n, op.block, op.bits);
    let blocks = k.div_ceil(block);
    let input = |i: usize| node.inputs.get(i).copied().flatten();
    let constant = |i: usize, what: &str| {
        input(i)
            .and_then(|v| graph.value(v).constant.clone())
            .ok_or_else(|| {
                CompileError::unsupported(format!(
                    "MatMulNBits with g_idx whose {what} is not a constant"
                ))
            })
    };
    let groups = constant(4, "g_idx")?.to_f64s();
    let codes = constant(1, "B")?;
    if groups.len() != k {
        return Err(CompileError::shape(format!(
            "MatMulNBits g_idx has {} elements, K = {k}",
            groups.len()
        )));
    }
    if groups
        .iter()
        .any(|&g| g.fract() != 0.0 || g < 0.0 || g >= blocks as f64)
    {
        return Err(CompileError::shape(format!(
            "MatMulNBits g_idx holds a block outside 0..{blocks}"
        )));
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| groups[a].total_cmp(&groups[b]));
    if order
        .iter()
        .enumerate()
        .any(|(j, &r)| groups[r] != (j / block) as f64)
    {
        return Err(CompileError::unsupported(format!(
            "MatMulNBits g_idx whose blocks do not hold {block} rows each (block_size)"
        )));
    }
    let mut inputs = node.inputs.clone();
    inputs.resize(6, None);
    inputs[4] = None;
    let mut x = Expansion::of(node);
    if order.iter().enumerate().any(|(j, &r)| j != r) {
        let column_rows = blocks * block;
        if codes.dtype != DType::U8 || codes.bytes.len() * 8 < n * column_rows * bits {
            return Err(CompileError::shape(format!(
                "MatMulNBits B of {} {} bytes, expected {}",
                codes.bytes.len(),
                codes.dtype,
                n * column_rows * bits / 8
            )));
        }
        let sorted = sort_code_rows(&codes.bytes, bits, (n, column_rows), &order);
        let b = add_constant(
            graph,
            format!("{}/b_by_block", node.name),
            Tensor {
                bytes: sorted,
                ..codes
            },
        );
        let rows = Tensor::from_numbers(
            DType::I64,
            vec![k],
            &order.iter().map(|&r| r as f64).collect::<Vec<_>>(),
        );
        let rows = add_constant(graph, format!("{}/rows_by_block", node.name), rows);
        let a = input(0).ok_or_else(|| CompileError::malformed("MatMulNBits without A"))?;
        let gathered = x.step(
            graph,
            "a_by_block",
            "Gather",
            13,
            vec![a, rows],
            vec![int_attr("axis", -1)],
        )?;
        inputs[0] = Some(gathered);
        inputs[1] = Some(b);
    }
    while inputs.last() == Some(&None) {
        inputs.pop();
    }
    x.push(
        "by_block",
        ("com.microsoft", "MatMulNBits", 1),
        inputs,
        node.outputs.clone(),
        node.attributes.clone(),
    )?;
    Ok(x.nodes)
}

/// `MatMulNBits` on float16 activations as the float32 product between casts, as ONNX
/// Runtime computes it on x86: A, the scales, float zero points and the bias widened to
/// float32 (the constant ones at compile time), the output rounded back to float16.
pub(super) fn expand_nbits_f16(graph: &mut Graph, node: &Node) -> Result<Vec<Node>> {
    let mut x = Expansion::of(node);
    let mut inputs = node.inputs.clone();
    for (i, what) in [(0, "a"), (2, "scales"), (3, "zero_points"), (5, "bias")] {
        let Some(v) = inputs.get(i).copied().flatten() else {
            continue;
        };
        if graph.value(v).dtype == Some(DType::F16) {
            let to = super::infer_shapes::float_code(DType::F32);
            let wide = x.step(
                graph,
                &format!("{what}_f32"),
                "Cast",
                21,
                vec![v],
                vec![int_attr("to", to)],
            )?;
            inputs[i] = Some(wide);
        }
    }
    let y = node
        .outputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| CompileError::malformed("MatMulNBits without an output"))?;
    let wide = x.value(graph, "y_f32");
    x.push(
        "f32",
        ("com.microsoft", "MatMulNBits", 1),
        inputs,
        vec![Some(wide)],
        node.attributes.clone(),
    )?;
    let to = super::infer_shapes::float_code(DType::F16);
    x.push(
        "y_f16",
        ("", "Cast", 21),
        vec![Some(wide)],
        vec![Some(y)],
        vec![int_attr("to", to)],
    )?;
    Ok(x.nodes)
}

/// `bits`-bit codes packed as `MatMulNBits` packs B (`columns` columns of `rows` codes, code
/// `k` of column `c` at bit `(c * rows + k) * bits`, the first in a byte's low bits), with row
/// `j` of every column taken from row `order[j]`; rows past `order` stay.
fn sort_code_rows(
    bytes: &[u8],
    bits: usize,
    (columns, rows): (usize, usize),
    order: &[usize],
) -> Vec<u8> {
    let mut sorted = bytes.to_vec();
    let mask = (1u16 << bits) - 1;
    for c in 0..columns {
        for (j, &r) in order.iter().enumerate() {
            let (from, to) = ((c * rows + r) * bits, (c * rows + j) * bits);
            let code = (u16::from(bytes[from / 8]) >> (from % 8)) & mask;
            let shift = to % 8;
            let byte = &mut sorted[to / 8];
            let kept = u16::from(*byte) & !(mask << shift);
            *byte = u8::try_from(kept | (code << shift)).unwrap_or(u8::MAX);
        }
    }
    sorted
}

#[cfg(test)]
mod tests {
    use super::sort_code_rows;

    #[test]
    fn code_rows_move_with_their_bits() {
        // Two columns of 8 rows, the rows reversed but for the last two (padding).
        let order = [5, 4, 3, 2, 1, 0];
        for bits in [2usize, 4, 8] {
            let codes: Vec<u8> = (0..16u8)
                .map(|i| (i * 7 + 3) % (1u8 << bits.min(7)))
                .collect();
            let per_byte = 8 / bits;
            let pack = |codes: &[u8]| -> Vec<u8> {
                codes
                    .chunks(per_byte)
                    .map(|chunk| {
                        chunk
                            .iter()
                            .enumerate()
                            .fold(0u8, |b, (i, &c)| b | c << (i * bits))
                    })
                    .collect()
            };
            let mut want = codes.clone();
            for c in 0..2 {
                for (j, &r) in order.iter().enumerate() {
                    want[c * 8 + j] = codes[c * 8 + r];
                }
            }
            let got = sort_code_rows(&pack(&codes), bits, (2, 8), &order);
            assert_eq!(got, pack(&want), "{bits}-bit codes");
        }
    }
}
