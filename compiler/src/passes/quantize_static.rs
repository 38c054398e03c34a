//! `--quantize static`: int8 products whose activation scales were measured ahead of time.
//!
//! The products are those `--quantize dynamic` takes (`Gemm`, `MatMul` with a constant 2-D
//! `B`, `Conv` with constant weights), depthwise and small convolutions included: their input
//! usually arrives already quantized, so quantizing it costs nothing. Weights are int8,
//! symmetric, per output channel; activations are `uint8` with the scale and zero point of
//! the range calibration measured for them ([`super::calibration`]).
//!
//! A product's output stays `uint8` when every reader is another quantized product, so that
//! the chain between consecutive products never leaves 8 bits: requantized in integers in its
//! epilogue (the requantization scales folded at compile time) when its fused activations are
//! ones the requantizing clamp computes (none, Relu, a Clip from zero or below), else
//! dequantized, given its residual and activations in float and quantized, still in the
//! epilogue. A product read by anything else dequantizes into float32, and a `QuantizeLinear`
//! with the calibrated parameters feeds its quantized readers.
//!
//! Embedding lookups read int8 tables quantized per row, as `--quantize dynamic` does.
//!
//! Calibration compiles the float model with every value static quantization needs a range
//! for added to the graph outputs ([`probe`]); the pipeline is deterministic, so the second
//! compile meets the same values under the same names. A product whose input or output has no
//! range stays float32, and so does one inside an `If` branch.

use std::collections::{HashMap, HashSet};

use super::calibration::{u8_params, Calibration};
use super::lower_int8::PackCache;
use super::pattern::{add_constant, add_typed, input, new_node, output};
use super::quantize::{apply, plan, quantize_gather, Io, Plan};
use super::PassCx;
use crate::error::{CompileError, Result};
use crate::ir::{DType, Graph, Node, Tensor, ValueId};

/// The nodes static quantization would take, with their plans. Nodes under an `If`'s guards
/// stay float: calibration reads values as graph outputs, which a branch not taken leaves
/// unwritten.
fn candidates(graph: &Graph, cx: &PassCx) -> Vec<(usize, Plan)> {
    (0..graph.nodes.len())
        .filter(|&i| !cx.quantize_exclude.contains(&graph.nodes[i].name))
        .filter(|&i| graph.nodes[i].guards.is_empty())
        .filter_map(|i| Some((i, plan(graph, i, false).ok()?)))
        .collect()
}

/// The values calibration measures: every candidate product's input and output.
pub fn probe_values(graph: &Graph, cx: &PassCx) -> Vec<ValueId> {
    let mut seen = HashSet::new();
    let mut values = Vec::new();
    for (i, _) in candidates(graph, cx) {
        let node = &graph.nodes[i];
        for v in [input(node, 0), output(node, 0)].into_iter().flatten() {
            if seen.insert(v) {
                values.push(v);
            }
        }
    }
    values
}

/// The calibration compile: the values static quantization needs ranges for become graph
/// outputs (after the model's own), and nothing is quantized.
pub(super) fn probe(mut graph: Graph, cx: &PassCx) -> Graph {
    for v in probe_values(&graph, cx) {
        if !graph.outputs.contains(&v) {
            graph.outputs.push(v);
        }
    }
    graph
}

/// A `uint8` scale and zero point.
type Params = (f32, i32);

/// The calibrated `uint8` parameters of value `v`, if its name has a range (names that
/// several values share are ambiguous and get none).
fn params(
    graph: &Graph,
    table: &Calibration,
    names: &HashMap<&str, usize>,
    v: ValueId,
) -> Option<(f32, i32)> {
    let name = graph.value(v).name.as_str();
    if names.get(name).copied() != Some(1) {
        return None;
    }
    table.range(name).map(u8_params)
}

/// A `QuantizeLinear` of `x` to `uint8` with `scale` and `zero`, into a new value.
fn quantize_node(
    graph: &mut Graph,
    like: &Node,
    x: ValueId,
    (scale, zero): (f32, i32),
) -> Result<(Node, ValueId)> {
    let name = graph.value(x).name.clone();
    let shape = graph.value(x).shape.clone();
    let s = add_constant(
        graph,
        format!("{name}/scale"),
        Tensor::from_f32(vec![], &[scale]),
    );
    let z = add_constant(
        graph,
        format!("{name}/zero_point"),
        Tensor {
            dtype: DType::U8,
            shape: vec![],
            bytes: vec![zero as u8],
        },
    );
    let y = add_typed(graph, format!("{name}/quantized"), Some(DType::U8), shape);
    // Guarded like its reader, at an opset that has QuantizeLinear's scalar form.
    let reader = Node {
        opset: like.opset.max(13),
        ..like.clone()
    };
    let node = new_node(
        format!("{name}/quantize"),
        "QuantizeLinear",
        vec![Some(x), Some(s), Some(z)],
        vec![Some(y)],
        Vec::new(),
        &reader,
    )
    .ok_or_else(|| CompileError::unsupported("QuantizeLinear does not parse"))?;
    Ok((node, y))
}

/// Quantizes every candidate product whose input and output were calibrated.
pub(super) fn quantize_static(mut graph: Graph, cx: &PassCx, table: &Calibration) -> Result<Graph> {
    // Embedding tables are weights only: int8 per row, as under `--quantize dynamic`.
    for index in 0..graph.nodes.len() {
        if cx.quantize_exclude.contains(&graph.nodes[index].name) {
            continue;
        }
        if let Some(node) = quantize_gather(&mut graph, index) {
            graph.nodes[index] = node;
        }
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for v in &graph.values {
        *names.entry(v.name.as_str()).or_default() += 1;
    }
    // (plan, input params, output params) of each product that will be quantized.
    let mut chosen: HashMap<usize, (Plan, Params, Params)> = HashMap::new();
    for (i, plan) in candidates(&graph, cx) {
        let node = &graph.nodes[i];
        let (Some(a), Some(y)) = (input(node, 0), output(node, 0)) else {
            continue;
        };
        if let (Some(pa), Some(py)) = (
            params(&graph, table, &names, a),
            params(&graph, table, &names, y),
        ) {
            chosen.insert(i, (plan, pa, py));
        }
    }
    drop(names);
    // Readers of each value: (node, input slot).
    let mut readers: Vec<Vec<(usize, usize)>> = vec![Vec::new(); graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for (slot, v) in node.inputs.iter().enumerate() {
            if let Some(v) = v {
                readers[v.index()].push((i, slot));
            }
        }
    }
    // Products whose output stays uint8 (requantized in integers, or through their float
    // epilogue when the clamp cannot compute their activations or they add a residual).
    let requantized: HashSet<usize> = chosen
        .keys()
        .copied()
        .filter(|&i| {
            let node = &graph.nodes[i];
            let Some(y) = output(node, 0) else {
                return false;
            };
            let read = &readers[y.index()];
            !graph.outputs.contains(&y)
                && !read.is_empty()
                && read.iter().all(|&(j, slot)| {
                    slot == 0 && chosen.contains_key(&j) && graph.nodes[j].guards == node.guards
                })
        })
        .collect();

    let mut cache = PackCache::default();
    // The uint8 version of a float value, per guard set of the nodes reading it (a
    // `QuantizeLinear` runs under its first reader's guards, so readers under others get
    // their own).
    let mut quantized: HashMap<(ValueId, Vec<(ValueId, bool)>), ValueId> = HashMap::new();
    let old = std::mem::take(&mut graph.nodes);
    let mut nodes = Vec::with_capacity(old.len());
    for (i, node) in old.into_iter().enumerate() {
        let Some((plan, pa, py)) = chosen.remove(&i) else {
            nodes.push(node);
            continue;
        };
        let (Some(a), Some(y)) = (input(&node, 0), output(&node, 0)) else {
            nodes.push(node);
            continue;
        };
        let key = (a, node.guards.clone());
        let qa = match quantized.get(&key) {
            Some(&qa) => qa,
            None => {
                let (q, qa) = quantize_node(&mut graph, &node, a, pa)?;
                nodes.push(q);
                quantized.insert(key, qa);
                qa
            }
        };
        let out = if requantized.contains(&i) {
            let value = graph.value(y);
            let (name, shape) = (format!("{}/quantized", value.name), value.shape.clone());
            let y_u8 = add_typed(&mut graph, name, Some(DType::U8), shape);
            quantized.insert((y, node.guards.clone()), y_u8);
            Some((y_u8, py.0, py.1))
        } else {
            None
        };
        let io = Io::Static {
            a: qa,
            a_scale: pa.0,
            a_zero: pa.1,
            out,
        };
        match apply(&mut graph, &node, plan, &mut cache, io) {
            Some(product) => nodes.push(product),
            None => {
                return Err(CompileError::unsupported(format!(
                    "static quantization of node {:?} failed after it was planned",
                    node.name
                )))
            }
        }
    }
    graph.nodes = nodes;
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Op;
    use crate::passes::testing::{ints_attr, ModelBuilder};

    /// `x -> Conv -> ACT -> MID -> Conv [-> LAST] -> y` (8 channels each, the first 3x3 padded),
    /// with `extra` graph outputs, fused (the activations join the Convs) and statically
    /// quantized with `ranges`.
    fn two_convs(
        (act, mid): (&str, &str),
        last: Option<&str>,
        extra: &[&str],
        ranges: &[(&str, f32, f32)],
    ) -> Graph {
        let w1: Vec<f32> = (0..8 * 4 * 9)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0)
            .collect();
        let w2: Vec<f32> = (0..8 * 8)
            .map(|i| ((i * 5 % 9) as f32 - 4.0) / 8.0)
            .collect();
        let mut model = ModelBuilder::new()
            .input("x", &[1, 4, 6, 6])
            .floats("w1", &[8, 4, 3, 3], &w1)
            .floats("w2", &[8, 8, 1, 1], &w2)
            .node_with(
                "Conv",
                &["x", "w1"],
                &["c1"],
                vec![ints_attr("pads", &[1, 1, 1, 1])],
            )
            .node(act, &["c1"], &[mid]);
        model = match last {
            Some(op) => model
                .node("Conv", &[mid, "w2"], &["c2"])
                .node(op, &["c2"], &["y"]),
            None => model.node("Conv", &[mid, "w2"], &["y"]),
        };
        model = model.output("y");
        for name in extra {
            model = model.output(name);
        }
        let graph = crate::passes::fuse_activation(model.build(), &PassCx::default()).unwrap();
        let mut table = Calibration::new();
        for &(name, lo, hi) in ranges {
            table.insert(name, lo, hi);
        }
        quantize_static(graph, &PassCx::default(), &table).unwrap()
    }

    /// `x -> Conv -> Relu -> r1 -> Conv -> Sigmoid -> y`, with `extra` graph outputs, and a
    /// table for `x`, `r1` and `y`. Returns the quantized graph's ops, products with their
    /// output kind.
    fn quantized_ops(extra: &[&str]) -> Vec<String> {
        let ranges = [("x", -1.0, 1.0), ("r1", 0.0, 3.0), ("y", 0.0, 1.0)];
        let graph = two_convs(("Relu", "r1"), Some("Sigmoid"), extra, &ranges);
        graph
            .nodes
            .iter()
            .map(|n| match &n.op {
                Some(Op::Int8Product(p)) => format!("Int8Product:{:?}", p.out),
                _ => n.op_type.clone(),
            })
            .collect()
    }

    #[test]
    fn consecutive_products_stay_uint8_between_them() {
        // The first product requantizes (its Relu is the clamp at zero point 0) straight into
        // the second; only the graph input is quantized. The second dequantizes: its Sigmoid
        // runs in the float epilogue, and its output is the graph's.
        assert_eq!(
            quantized_ops(&[]),
            ["QuantizeLinear", "Int8Product:U8(0)", "Int8Product:F32"]
        );
    }

    #[test]
    fn a_value_read_in_float_is_dequantized_and_requantized_for_the_next_product() {
        assert_eq!(
            quantized_ops(&["r1"]),
            [
                "QuantizeLinear",
                "Int8Product:F32",
                "QuantizeLinear",
                "Int8Product:F32"
            ]
        );
    }

    #[test]
    fn activations_the_clamp_cannot_compute_quantize_after_the_float_epilogue() {
        // x -> Conv -> Sigmoid -> s1 -> Conv -> y: the Sigmoid joins the first product, which
        // still hands the second `uint8`, through its float epilogue.
        let ranges = [("x", -1.0, 1.0), ("s1", 0.0, 1.0), ("y", -3.0, 3.0)];
        let graph = two_convs(("Sigmoid", "s1"), None, &[], &ranges);
        let outs: Vec<String> = graph
            .nodes
            .iter()
            .map(|n| match &n.op {
                Some(Op::Int8Product(p)) => format!("{:?}", p.out),
                _ => n.op_type.clone(),
            })
            .collect();
        assert_eq!(outs, ["QuantizeLinear", "U8Float(0)", "F32"]);
    }

    #[test]
    fn embedding_tables_become_int8_without_ranges() {
        let table: Vec<f32> = (0..64 * 64).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
        let graph = ModelBuilder::new()
            .typed_input("ids", 7, &[1, 5])
            .floats("table", &[64, 64], &table)
            .node("Gather", &["table", "ids"], &["y"])
            .output("y")
            .build();
        let out = quantize_static(graph, &PassCx::default(), &Calibration::new()).unwrap();
        assert_eq!(out.nodes[0].op_type, "GatherInt8");
    }

    #[test]
    fn products_without_ranges_stay_float() {
        let graph = ModelBuilder::new()
            .input("x", &[2, 8])
            .floats("w", &[8, 4], &[0.5; 32])
            .node("MatMul", &["x", "w"], &["y"])
            .output("y")
            .build();
        let out = quantize_static(graph, &PassCx::default(), &Calibration::new()).unwrap();
        assert_eq!(out.nodes.len(), 1);
        assert_eq!(out.nodes[0].op_type, "MatMul");
    }
}
