//! Rewrites the QDQ groups ONNX Runtime's `quantize_static` writes around elementwise,
//! pooling, concat and softmax ops into the `com.microsoft` integer ops ONNX Runtime fuses
//! them into at load time ([`crate::ops::qlinear`]), so that sinter computes what an ONNX
//! Runtime user sees, bit for bit:
//!
//! - `DequantizeLinear(a), DequantizeLinear(b) -> Add / Mul -> QuantizeLinear`:
//!   `QLinearAdd` / `QLinearMul`;
//! - `DequantizeLinear -> Sigmoid / LeakyRelu / GlobalAveragePool / AveragePool / Softmax ->
//!   QuantizeLinear`: `QLinearSigmoid`, `QLinearLeakyRelu`, `QLinearGlobalAveragePool`,
//!   `QLinearAveragePool`, `QLinearSoftmax` (with `opset`, the version of `Softmax` in force);
//! - `DequantizeLinear(x_i)... -> Concat -> QuantizeLinear`: `QLinearConcat`;
//! - `Where(cond, DequantizeLinear(x), DequantizeLinear(y)) -> QuantizeLinear`: `QLinearWhere`.
//!
//! The conditions are those of ONNX Runtime's QDQ selectors (`qdq_selectors.cc`): every
//! float input of the op is a `DequantizeLinear` output; the dequantized inputs and the
//! quantized output are all `uint8` or all `int8`, one type; the op's output is read by its
//! `QuantizeLinear` alone and is no graph output; scales and zero points are per tensor (one
//! element; ONNX Runtime's kernels take no other) and the quantizers are not blocked. A `Relu`
//! between the op and the `QuantizeLinear` joins the group when the quantizer makes it
//! redundant (its zero point is the type's minimum), as ONNX Runtime's selectors let it.
//! Omitted zero points become zero constants (`uint8` for a quantizer, the input's type for a
//! dequantizer), as ONNX Runtime's action fills them in.
//!
//! An int8 `Add` group stays float: on x86-64 ONNX Runtime turns int8 QDQ pairs into uint8
//! ones before fusing (`QDQS8ToU8Transformer`, as `QDQIsInt8Allowed()` is false there), and
//! its uint8 `QLinearAdd` rounds differently from the int8 kernel `QLinearAdd` reproduces.
//! The other ops give the same bytes either way (integer products and sums, tables of
//! dequantized values).
//!
//! Also `DequantizeLinear -> MaxPool -> QuantizeLinear` with equal parameters on both sides
//! becomes `MaxPool` on the 8-bit values (see [`drop_around_max_pool`]).
//!
//! Left alone: anything else, including groups under different `If` guards. The
//! `DequantizeLinear` nodes stay (ONNX Runtime gives each consumer its own copy first, so a
//! dequantizer read elsewhere does not stop a fusion); `eliminate_dead` drops those left
//! unread. Conv, Gemm and MatMul groups are `lower_int8`'s.

use std::collections::HashMap;

use super::pattern::{add_constant, attr_i64, fuse, input, int_attr, output, Fusion, Matcher};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Node, Tensor, ValueId};
use crate::onnx::proto::AttributeProto;
use crate::ops::{self, NodeCx, Op};

/// Replaces each QDQ group around Add, Mul, Sigmoid, LeakyRelu, GlobalAveragePool,
/// AveragePool, Softmax, Concat and Where with its `com.microsoft` `QLinear*` op.
pub fn fuse_qdq(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let found: Vec<Found> = {
        let m = Matcher::new(&graph);
        (0..graph.nodes.len())
            .filter_map(|end| find(&m, end))
            .collect()
    };
    let mut zeros = HashMap::new();
    let mut plans = HashMap::new();
    for f in found {
        let Some(&end) = f.nodes.last() else {
            continue;
        };
        if let Some(node) = build(&mut graph, &mut zeros, &f) {
            plans.insert(end, (f.nodes, node));
        }
    }
    let graph = fuse(graph, |_, end| {
        plans.get(&end).map(|(nodes, node)| Fusion {
            nodes: nodes.clone(),
            node: node.clone(),
        })
    });
    Ok(fuse(graph, drop_around_max_pool))
}

/// `DequantizeLinear -> MaxPool -> QuantizeLinear` with the same constant scale (positive) and
/// zero point on both sides is `MaxPool` on the 8-bit values: the maximum commutes with a
/// dequantization that only grows, and quantizing a dequantized value with the same
/// parameters gives it back. ONNX Runtime drops these pairs too.
fn drop_around_max_pool(m: &Matcher<'_>, end: usize) -> Option<Fusion> {
    let graph = m.graph;
    let q = &graph.nodes[end];
    if !is_quantizer(q) {
        return None;
    }
    let (pool_index, pool) = m.op(input(q, 0)?, "MaxPool")?;
    if !pool.domain.is_empty() || pool.outputs.iter().flatten().count() != 1 {
        return None;
    }
    let (dq_index, dq) = m.op(input(pool, 0)?, "DequantizeLinear")?;
    if !matches!(&dq.op, Some(Op::QuantLinear(l)) if l.dequantize && l.block == 0)
        || dq.guards != q.guards
        || pool.guards != q.guards
    {
        return None;
    }
    let x = input(dq, 0)?;
    let dtype = graph.value(x).dtype?;
    if !matches!(dtype, DType::U8 | DType::I8) || graph.value(output(q, 0)?).dtype != Some(dtype) {
        return None;
    }
    let same = |a: Option<ValueId>, b: Option<ValueId>, default: f64| {
        let value = |v: Option<ValueId>| match v {
            None => Some(default),
            Some(v) if one(graph, v) => scalar(graph, v),
            Some(_) => None,
        };
        matches!((value(a), value(b)), (Some(a), Some(b)) if a == b)
    };
    let positive = input(dq, 1)
        .and_then(|s| scalar(graph, s))
        .is_some_and(|s| s > 0.0);
    if !positive || !same(input(dq, 1), input(q, 1), 1.0) || !same(input(dq, 2), input(q, 2), 0.0) {
        return None;
    }
    let mut node = pool.clone();
    node.inputs[0] = Some(x);
    node.outputs = vec![output(q, 0)];
    Some(Fusion {
        nodes: vec![dq_index, pool_index, end],
        node,
    })
}

/// A quantized tensor: its 8-bit value, scale and zero point (`None` when omitted).
#[derive(Clone, Copy)]
struct Quant {
    x: ValueId,
    scale: ValueId,
    zero: Option<ValueId>,
}

/// How the replacement lays out its inputs.
#[derive(Clone, Copy)]
enum Layout {
    /// `X, X_scale, X_zero, Y_scale, Y_zero`.
    Unary,
    /// `A, A_scale, A_zero, B, B_scale, B_zero, C_scale, C_zero`.
    Binary,
    /// `Y_scale, Y_zero`, then `(X, X_scale, X_zero)` per input.
    Variadic,
    /// `condition`, then as `Binary`.
    Where(ValueId),
}

/// A matched group, before its replacement is built.
struct Found {
    /// The op, the `Relu` if any, and the `QuantizeLinear` (last).
    nodes: Vec<usize>,
    /// The replacement's op type.
    op_type: &'static str,
    /// The dequantized inputs, in order.
    inputs: Vec<Quant>,
    /// The quantizer's output with its scale and zero point.
    out: Quant,
    /// The 8-bit type of every input and of the output.
    dtype: DType,
    /// The layout of the replacement's inputs.
    layout: Layout,
    /// The replacement's attributes.
    attributes: Vec<AttributeProto>,
}

/// The one-element check on a scale or zero point.
fn one(graph: &Graph, v: ValueId) -> bool {
    graph
        .value(v)
        .shape
        .as_ref()
        .is_some_and(|s| s.iter().product::<usize>() == 1)
}

/// `v` as a per-tensor `DequantizeLinear` output of `uint8` or `int8` under `guards`.
fn dequantized(m: &Matcher<'_>, v: ValueId, guards: &[(ValueId, bool)]) -> Option<(Quant, DType)> {
    let (_, dq) = m.op(v, "DequantizeLinear")?;
    if !matches!(&dq.op, Some(Op::QuantLinear(l)) if l.dequantize && l.block == 0)
        || dq.guards != guards
    {
        return None;
    }
    let q = Quant {
        x: input(dq, 0)?,
        scale: input(dq, 1)?,
        zero: input(dq, 2),
    };
    let dtype = m.graph.value(q.x).dtype?;
    let per_tensor = one(m.graph, q.scale) && q.zero.is_none_or(|z| one(m.graph, z));
    (per_tensor && matches!(dtype, DType::U8 | DType::I8)).then_some((q, dtype))
}

/// Whether `node` is an unblocked default-domain `QuantizeLinear`.
fn is_quantizer(node: &Node) -> bool {
    node.op_type == "QuantizeLinear"
        && node.domain.is_empty()
        && matches!(&node.op, Some(Op::QuantLinear(l)) if !l.dequantize && l.block == 0)
}

/// A one-element constant as a number.
fn scalar(graph: &Graph, v: ValueId) -> Option<f64> {
    let values = graph.value(v).constant.as_ref()?.to_f64s();
    (values.len() == 1).then(|| values[0])
}

/// Whether a `Relu` before the quantizer `out` (of type `dtype`) changes nothing: the
/// quantizer's zero point is a constant at the type's minimum and its scale a positive
/// constant, so that it clamps negatives to that minimum anyway.
fn relu_redundant(graph: &Graph, out: &Quant, dtype: DType) -> bool {
    let min = if dtype == DType::I8 { -128.0 } else { 0.0 };
    let zero = match out.zero {
        None => Some(0.0),
        Some(z) => scalar(graph, z),
    };
    zero == Some(min) && scalar(graph, out.scale).is_some_and(|s| s > 0.0)
}

/// The group ending at the `QuantizeLinear` `end`, if any.
fn find(m: &Matcher<'_>, end: usize) -> Option<Found> {
    let graph = m.graph;
    let q = &graph.nodes[end];
    if !is_quantizer(q) {
        return None;
    }
    let out = Quant {
        x: output(q, 0)?,
        scale: input(q, 1)?,
        zero: input(q, 2),
    };
    let dtype = graph.value(out.x).dtype?;
    if !matches!(dtype, DType::U8 | DType::I8)
        || !one(graph, out.scale)
        || out.zero.is_some_and(|z| !one(graph, z))
    {
        return None;
    }
    let mut nodes = vec![end];
    let mut y = input(q, 0)?;
    if let Some((relu, node)) = m.op(y, "Relu") {
        if !relu_redundant(graph, &out, dtype) {
            return None;
        }
        nodes.insert(0, relu);
        y = input(node, 0)?;
    }
    let index = m.producer[y.index()]?;
    let op = &graph.nodes[index];
    if !op.domain.is_empty()
        || op.guards != q.guards
        || graph.value(y).dtype != Some(DType::F32)
        || op.outputs.iter().flatten().count() != 1
    {
        return None;
    }
    nodes.insert(0, index);
    let actual: Vec<ValueId> = op.inputs.iter().flatten().copied().collect();
    let (op_type, layout, dequantize): (&'static str, Layout, &[ValueId]) =
        match op.op_type.as_str() {
            "Add" => ("QLinearAdd", Layout::Binary, &actual),
            "Mul" => ("QLinearMul", Layout::Binary, &actual),
            "Sigmoid" => ("QLinearSigmoid", Layout::Unary, &actual),
            "LeakyRelu" => ("QLinearLeakyRelu", Layout::Unary, &actual),
            "GlobalAveragePool" => ("QLinearGlobalAveragePool", Layout::Unary, &actual),
            "AveragePool" => ("QLinearAveragePool", Layout::Unary, &actual),
            "Softmax" => ("QLinearSoftmax", Layout::Unary, &actual),
            "Concat" => ("QLinearConcat", Layout::Variadic, &actual),
            "Where" => {
                let cond = *actual.first()?;
                ("QLinearWhere", Layout::Where(cond), &actual[1..])
            }
            _ => return None,
        };
    let arity = match layout {
        Layout::Unary => 1..=1,
        Layout::Binary | Layout::Where(_) => 2..=2,
        Layout::Variadic => 1..=usize::MAX,
    };
    if !arity.contains(&dequantize.len()) || actual.len() != op.inputs.len() {
        return None;
    }
    // On x86-64 ONNX Runtime turns int8 QDQ pairs into uint8 ones before fusing
    // (`QDQS8ToU8Transformer`), and its uint8 `QLinearAdd` rounds differently from the int8
    // one `QLinearAdd` here reproduces; the other ops compute the same either way.
    if dtype == DType::I8 && op_type == "QLinearAdd" {
        return None;
    }
    let mut inputs = Vec::with_capacity(dequantize.len());
    for &v in dequantize {
        let (quant, t) = dequantized(m, v, &q.guards)?;
        if t != dtype {
            return None;
        }
        inputs.push(quant);
    }
    let mut attributes = op.attributes.clone();
    match op.op_type.as_str() {
        "AveragePool" => {
            let dilated = op
                .attributes
                .iter()
                .any(|a| a.name() == "dilations" && a.ints.iter().any(|&d| d != 1));
            if dilated {
                return None;
            }
            attributes.retain(|a| a.name() != "dilations");
        }
        "Softmax" => {
            // The version of Softmax in force, as ONNX Runtime's `SinceVersion`.
            let since = match op.opset {
                ..=10 => 1,
                11..=12 => 11,
                _ => 13,
            };
            attributes.push(int_attr("opset", since));
        }
        "Concat" if attr_i64(op, "axis").is_none() => return None,
        _ => {}
    }
    Some(Found {
        nodes,
        op_type,
        inputs,
        out,
        dtype,
        layout,
        attributes,
    })
}

/// A zero point, or the zero constant of `dtype` standing for an omitted one.
fn zero_or(
    graph: &mut Graph,
    zeros: &mut HashMap<DType, ValueId>,
    zero: Option<ValueId>,
    dtype: DType,
) -> ValueId {
    if let Some(z) = zero {
        return z;
    }
    *zeros.entry(dtype).or_insert_with(|| {
        let name = format!("fuse_qdq/zero_{}", dtype);
        add_constant(graph, name, Tensor::from_numbers(dtype, Vec::new(), &[0.0]))
    })
}

/// The replacement of a matched group; `None` when its op rejects it.
fn build(graph: &mut Graph, zeros: &mut HashMap<DType, ValueId>, f: &Found) -> Option<Node> {
    let op = graph.nodes[f.nodes[0]].clone();
    let q = graph.nodes[*f.nodes.last()?].clone();
    let mut triples = Vec::with_capacity(3 * f.inputs.len());
    for quant in &f.inputs {
        let zero = zero_or(graph, zeros, quant.zero, f.dtype);
        triples.extend([Some(quant.x), Some(quant.scale), Some(zero)]);
    }
    // A quantizer without a zero point gives uint8 (then `f.dtype` is uint8).
    let out_zero = zero_or(graph, zeros, f.out.zero, f.dtype);
    let out = [Some(f.out.scale), Some(out_zero)];
    let inputs: Vec<Option<ValueId>> = match f.layout {
        Layout::Unary | Layout::Binary => triples.into_iter().chain(out).collect(),
        Layout::Variadic => out.into_iter().chain(triples).collect(),
        Layout::Where(cond) => std::iter::once(Some(cond))
            .chain(triples)
            .chain(out)
            .collect(),
    };
    let mut node = Node {
        name: op.name.clone(),
        op_type: f.op_type.into(),
        domain: "com.microsoft".into(),
        opset: 1,
        inputs,
        outputs: vec![Some(f.out.x)],
        attributes: f.attributes.clone(),
        op: None,
        guards: q.guards.clone(),
    };
    node.op = Some(ops::parse(&NodeCx { node: &node })?.ok()?);
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{before_after, int_attr, ints_attr, ModelBuilder};

    /// The ONNX element type code of uint8.
    const UINT8: i32 = 2;

    /// `DequantizeLinear -> MaxPool -> QuantizeLinear` with output scale `out_scale`.
    fn max_pool_group(out_scale: f32) -> Graph {
        ModelBuilder::new()
            .typed_input("x", UINT8, &[1, 2, 4, 4])
            .floats("s", &[], &[0.1])
            .floats("so", &[], &[out_scale])
            .node("DequantizeLinear", &["x", "s"], &["d"])
            .node_with(
                "MaxPool",
                &["d"],
                &["p"],
                vec![ints_attr("kernel_shape", &[2, 2])],
            )
            .node("QuantizeLinear", &["p", "so"], &["y"])
            .output("y")
            .build()
    }

    #[test]
    fn max_pool_between_equal_quantizers_runs_on_the_bytes() {
        let out = fuse_qdq(max_pool_group(0.1), &PassCx::default()).unwrap();
        assert_eq!(out.op_histogram(), [("MaxPool".to_string(), 1)]);
        // Another output scale: the pair stays (requantizing is not the identity).
        let out = fuse_qdq(max_pool_group(0.2), &PassCx::default()).unwrap();
        assert_eq!(out.nodes.len(), 3);
    }

    /// `DequantizeLinear(a), DequantizeLinear(b) -> Add -> QuantizeLinear`, with `extra`
    /// nodes after it and `a_scale` of shape `a_scale_dims`.
    fn add_group(a_scale_dims: &[i64], extra: impl Fn(ModelBuilder) -> ModelBuilder) -> Graph {
        let a_scale = vec![0.1; a_scale_dims.iter().product::<i64>() as usize];
        let builder = ModelBuilder::new()
            .typed_input("a", UINT8, &[1, 4])
            .typed_input("b", UINT8, &[1, 4])
            .floats("sa", a_scale_dims, &a_scale)
            .floats("sb", &[], &[0.2])
            .floats("sc", &[], &[0.3])
            .node_with(
                "DequantizeLinear",
                &["a", "sa"],
                &["da"],
                if a_scale_dims.is_empty() {
                    Vec::new()
                } else {
                    vec![int_attr("axis", 1)]
                },
            )
            .node("DequantizeLinear", &["b", "sb"], &["db"])
            .node("Add", &["da", "db"], &["s"])
            .node("QuantizeLinear", &["s", "sc"], &["y"])
            .output("y");
        extra(builder).build()
    }

    #[test]
    fn snapshot_dq_add_q_becomes_qlinear_add() {
        let (after, text) = before_after(add_group(&[], |b| b), fuse_qdq);
        insta::assert_snapshot!(text);
        let fused = after
            .nodes
            .iter()
            .find(|n| n.op_type == "QLinearAdd")
            .expect("fused");
        assert_eq!(fused.domain, "com.microsoft");
        assert_eq!(fused.inputs.len(), 8);
        assert!(after.nodes.iter().all(|n| n.op_type != "Add"));
    }

    #[test]
    fn a_dequantizer_read_elsewhere_stays_and_the_group_fuses() {
        let graph = add_group(&[], |b| {
            b.node("Sigmoid", &["da"], &["t"])
                .node("QuantizeLinear", &["t", "sc"], &["z"])
                .output("z")
        });
        let after = fuse_qdq(graph, &PassCx::default()).expect("runs");
        let ops: Vec<&str> = after.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "DequantizeLinear",
                "DequantizeLinear",
                "QLinearAdd",
                "QLinearSigmoid"
            ]
        );
    }

    #[test]
    fn per_axis_scales_or_a_shared_result_stay() {
        let per_axis = add_group(&[4], |b| b);
        let after = fuse_qdq(per_axis, &PassCx::default()).expect("runs");
        assert!(after.nodes.iter().any(|n| n.op_type == "Add"));
        assert!(after.nodes.iter().all(|n| n.domain.is_empty()));

        let shared = add_group(&[], |b| b.node("Relu", &["s"], &["r"]).output("r"));
        let after = fuse_qdq(shared, &PassCx::default()).expect("runs");
        assert!(after.nodes.iter().any(|n| n.op_type == "Add"));
        assert!(after.nodes.iter().all(|n| n.domain.is_empty()));
    }

    #[test]
    fn an_int8_add_stays_and_an_int8_mul_fuses() {
        use crate::onnx::proto::{attribute_proto::AttributeType, TensorProto};
        let zero = AttributeProto {
            name: Some("value".into()),
            r#type: Some(AttributeType::Tensor as i32),
            t: Some(TensorProto {
                data_type: Some(3),
                int32_data: vec![0],
                ..Default::default()
            }),
            ..Default::default()
        };
        let graph = ModelBuilder::new()
            .typed_input("a", 3, &[4])
            .floats("s", &[], &[0.1])
            .node_with("Constant", &[], &["z"], vec![zero])
            .node("DequantizeLinear", &["a", "s", "z"], &["da"])
            .node("Add", &["da", "da"], &["sum"])
            .node("QuantizeLinear", &["sum", "s", "z"], &["y"])
            .node("Mul", &["da", "da"], &["product"])
            .node("QuantizeLinear", &["product", "s", "z"], &["p"])
            .output("y")
            .output("p")
            .build();
        let after = fuse_qdq(graph, &PassCx::default()).expect("runs");
        assert!(after.nodes.iter().any(|n| n.op_type == "Add"));
        assert!(after.nodes.iter().any(|n| n.op_type == "QLinearMul"));
    }

    #[test]
    fn softmax_takes_its_opset_and_a_redundant_relu_joins() {
        let graph = ModelBuilder::new()
            .typed_input("x", UINT8, &[2, 5])
            .floats("s", &[], &[0.05])
            .floats("so", &[], &[1.0 / 256.0])
            .node("DequantizeLinear", &["x", "s"], &["dx"])
            .node("Softmax", &["dx"], &["p"])
            .node("Relu", &["p"], &["r"])
            .node("QuantizeLinear", &["r", "so"], &["y"])
            .output("y")
            .build();
        let after = fuse_qdq(graph, &PassCx::default()).expect("runs");
        let softmax = after
            .nodes
            .iter()
            .find(|n| n.op_type == "QLinearSoftmax")
            .expect("fused");
        assert_eq!(attr_i64(softmax, "opset"), Some(13));
        assert!(after.nodes.iter().all(|n| n.op_type != "Relu"));
    }
}
