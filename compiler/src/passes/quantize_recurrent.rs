//! The int8 form of recurrent layers, `sinter::Int8Recurrent` ([`crate::ops::recurrent`]),
//! whose input and recurrent products run on `sinter_rt::int8`'s kernels, `X` and every step's
//! `H` quantized at run time (per tensor, `uint8`, `DynamicQuantizeLinear`'s formula, as ONNX
//! Runtime's `DynamicQuantizeLSTM` does). Two passes build it:
//!
//! - `lower_int8`, from `com.microsoft:DynamicQuantizeLSTM` (its 8-bit weights as they are:
//!   `uint8` ones shifted to signed with their zero points, scales per direction or channel);
//! - `quantize` (`--quantize dynamic`), from float32 `LSTM`, `GRU` and `RNN` whose `W` and `R`
//!   are constants: weights quantized here by the rules of the products (`int8`, symmetric, per
//!   output channel of each direction, `scale = max|w| / 127`).
//!
//! The weights are packed per direction as `k x n` column panels ([`crate::ir::int8_pack`]),
//! with their per-channel sums; GRU's recurrent weights become two matrices, the update and
//! reset gates and the hidden gate. A layer whose weights do not fit is left as it is.

use super::pattern::{add_constant, input};
use crate::ir::{int8_pack as pack, DType, Graph, Node, Tensor, ValueId};
use crate::ops::recurrent::{Int8Recurrent, Recurrent};
use crate::ops::Op;

/// One 8-bit weight tensor of a layer, every direction: `[dirs, k, n]`, or `[dirs, n, k]`
/// when `transposed` (ONNX's `W` and `R`), `n` the output channels.
pub(super) struct QuantMatrix {
    /// The signed values.
    pub(super) values: Vec<i8>,
    /// Zero points in the signed domain: `dirs` or `dirs * n` values.
    pub(super) zero: Vec<i32>,
    /// Scales: `dirs` or `dirs * n` values.
    pub(super) scale: Vec<f32>,
    /// Stored `[dirs, n, k]`.
    pub(super) transposed: bool,
    /// Depth (input or hidden size).
    pub(super) k: usize,
}

/// Per-direction (`dirs` values) or per-channel (`dirs * n`) parameters restricted to the
/// channels `first..first + count` of each direction.
fn part_params<T: Copy>(
    values: &[T],
    (dirs, n): (usize, usize),
    (first, count): (usize, usize),
) -> Option<Vec<T>> {
    if values.len() == dirs * n {
        Some(
            (0..dirs)
                .flat_map(|d| values[d * n + first..][..count].iter().copied())
                .collect(),
        )
    } else if values.len() == dirs {
        Some(values.to_vec())
    } else {
        None
    }
}

/// Packs the channels `first..first + count` of `m` (`dirs` directions of `n` channels): the
/// four inputs of one `RnnMatrix` (packed data, sums, zero points when not all zero, scales).
fn pack_part(
    graph: &mut Graph,
    name: &str,
    m: &QuantMatrix,
    (dirs, n): (usize, usize),
    (first, count): (usize, usize),
) -> Option<[Option<ValueId>; 4]> {
    let k = m.k;
    if m.values.len() != dirs.checked_mul(k)?.checked_mul(n)? {
        return None;
    }
    let zero = part_params(&m.zero, (dirs, n), (first, count))?;
    let scale = part_params(&m.scale, (dirs, n), (first, count))?;
    let len = pack::packed_cols_len(k, count);
    let mut data = vec![0i8; dirs * len];
    let mut sums = Vec::with_capacity(dirs * count);
    for d in 0..dirs {
        let at = |i: usize, c: usize| {
            if m.transposed {
                m.values[(d * n + first + c) * k + i]
            } else {
                m.values[(d * k + i) * n + first + c]
            }
        };
        pack::pack_cols(k, count, at, &mut data[d * len..][..len]);
        sums.extend((0..count).map(|c| (0..k).map(|i| i32::from(at(i, c))).sum::<i32>()));
    }
    let data_id = add_constant(
        graph,
        format!("{name}/int8"),
        Tensor {
            dtype: DType::I8,
            shape: vec![data.len()],
            bytes: data.iter().map(|&v| v as u8).collect(),
        },
    );
    let sums_id = add_constant(
        graph,
        format!("{name}/int8_sums"),
        Tensor::from_i32(vec![sums.len()], &sums),
    );
    let zero_id = zero.iter().any(|&z| z != 0).then(|| {
        add_constant(
            graph,
            format!("{name}/int8_zero"),
            Tensor::from_i32(vec![zero.len()], &zero),
        )
    });
    let scale_id = add_constant(
        graph,
        format!("{name}/int8_scale"),
        Tensor::from_f32(vec![scale.len()], &scale),
    );
    Some([Some(data_id), Some(sums_id), zero_id, Some(scale_id)])
}

/// The `sinter::Int8Recurrent` replacing `node` (a layer with `layer`'s attributes whose
/// inputs `X, ..., B, sequence_lens, initial_h, initial_c, P` sit where LSTM has them), with
/// the weights `w` and `r` packed.
pub(super) fn int8_recurrent_node(
    graph: &mut Graph,
    node: &Node,
    layer: Recurrent,
    hidden: usize,
    (w, r): (&QuantMatrix, &QuantMatrix),
) -> Option<Node> {
    let (dirs, gh) = (layer.directions(), layer.gates() * hidden);
    let name = |i: usize| {
        input(node, i).map_or_else(|| node.name.clone(), |v| graph.value(v).name.clone())
    };
    let (w_name, r_name) = (name(1), name(2));
    let mut inputs: Vec<Option<ValueId>> = vec![input(node, 0)];
    inputs.extend((3..8).map(|i| input(node, i)));
    inputs.extend(pack_part(graph, &w_name, w, (dirs, gh), (0, gh))?);
    if layer.is_gru() {
        let zr = pack_part(graph, &r_name, r, (dirs, gh), (0, 2 * hidden))?;
        let h = pack_part(
            graph,
            &format!("{r_name}/hidden_gate"),
            r,
            (dirs, gh),
            (2 * hidden, hidden),
        )?;
        inputs.extend(zr);
        inputs.extend(h);
    } else {
        inputs.extend(pack_part(graph, &r_name, r, (dirs, gh), (0, gh))?);
    }
    Some(Node {
        name: node.name.clone(),
        op_type: "Int8Recurrent".into(),
        domain: "sinter".into(),
        opset: 1,
        inputs,
        outputs: node.outputs.clone(),
        attributes: Vec::new(),
        op: Some(Op::Int8Recurrent(Int8Recurrent { layer, hidden })),
        guards: node.guards.clone(),
    })
}

/// Why the float recurrent layer at `index` would stay float32 under `--quantize dynamic`, or
/// `None` if it would be quantized (or is not a recurrent layer).
pub(super) fn float_reason(graph: &Graph, index: usize) -> Option<&'static str> {
    let node = graph.nodes.get(index)?;
    let Some(Op::Recurrent(_)) = &node.op else {
        return None;
    };
    let (Some(x), Some(w), Some(r)) = (input(node, 0), input(node, 1), input(node, 2)) else {
        return Some("an operand is missing");
    };
    if graph.value(x).dtype != Some(DType::F32) {
        return Some("not float32");
    }
    let is_float_constant = |v: ValueId| {
        graph
            .value(v)
            .constant
            .as_ref()
            .is_some_and(|t| t.dtype == DType::F32 && t.shape.len() == 3)
    };
    if !is_float_constant(w) || !is_float_constant(r) {
        return Some("weights computed at run time");
    }
    if graph.value(x).shape.as_ref().is_none_or(|s| s.len() != 3) {
        return Some("unknown shape");
    }
    None
}

/// `values` (`dirs` matrices of `n` rows, the output channels, by `k`) quantized per row:
/// symmetric `int8`, `scale = max|w| / 127`.
fn quantize_rows(values: &[f32], dirs: usize, n: usize, k: usize) -> QuantMatrix {
    let mut q = Vec::with_capacity(values.len());
    let mut scale = Vec::with_capacity(dirs * n);
    for d in 0..dirs {
        let (dq, ds) = super::quantize::quantize_weights(
            &values[d * n * k..][..n * k],
            super::lower_int8::Layout::Cols(true),
            (k, n),
        );
        q.extend(dq);
        scale.extend(ds);
    }
    QuantMatrix {
        values: q,
        zero: vec![0; dirs],
        scale,
        transposed: true,
        k,
    }
}

/// `--quantize dynamic`: the float `LSTM`, `GRU` or `RNN` at `index` as an
/// `Int8Recurrent` with weights quantized here, or `None` when it stays float (see
/// [`float_reason`]).
pub(super) fn quantize_recurrent(graph: &mut Graph, index: usize) -> Option<Node> {
    let node = graph.nodes[index].clone();
    let Some(Op::Recurrent(layer)) = &node.op else {
        return None;
    };
    if float_reason(graph, index).is_some() {
        return None;
    }
    let (w, r) = (input(&node, 1)?, input(&node, 2)?);
    let (w, r) = (
        graph.value(w).constant.as_ref()?,
        graph.value(r).constant.as_ref()?,
    );
    let (&[dirs, gh, input_size], &[_, _, hidden]) = (&w.shape[..], &r.shape[..]) else {
        return None;
    };
    if dirs != layer.directions() || gh != layer.gates() * hidden {
        return None;
    }
    let w = quantize_rows(&w.as_f32()?, dirs, gh, input_size);
    let r = quantize_rows(&r.as_f32()?, dirs, gh, hidden);
    int8_recurrent_node(graph, &node, layer.clone(), hidden, (&w, &r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::pattern::{int_attr, string_attr};
    use crate::passes::testing::ModelBuilder;
    use crate::passes::{quantize, PassCx, Quantize};

    /// Deterministic weights in `[-1, 1)`.
    fn weights(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 37 + seed * 11) % 64) as f32 / 32.0 - 1.0)
            .collect()
    }

    /// A float layer `op` (input 4, hidden 3) with constant or run-time weights.
    fn layer(op: &str, direction: &str, constant_weights: bool) -> Graph {
        let gates: i64 = match op {
            "LSTM" => 4,
            "GRU" => 3,
            _ => 1,
        };
        let dirs: i64 = if direction == "bidirectional" { 2 } else { 1 };
        let (w_dims, r_dims) = ([dirs, gates * 3, 4], [dirs, gates * 3, 3]);
        let w_len = usize::try_from(w_dims.iter().product::<i64>()).expect("small");
        let r_len = usize::try_from(r_dims.iter().product::<i64>()).expect("small");
        let mut model = ModelBuilder::new().input("x", &[5, 2, 4]);
        model = if constant_weights {
            model.floats("w", &w_dims, &weights(w_len, 1))
        } else {
            model.input("w", &w_dims)
        };
        model
            .floats("r", &r_dims, &weights(r_len, 2))
            .node_with(
                op,
                &["x", "w", "r"],
                &["y", "y_h"],
                vec![
                    int_attr("hidden_size", 3),
                    string_attr("direction", direction),
                ],
            )
            .output("y")
            .output("y_h")
            .build()
    }

    fn quantize_dynamic(graph: Graph) -> Graph {
        let cx = PassCx {
            quantize: Quantize::Dynamic,
            ..PassCx::default()
        };
        quantize(graph, &cx).expect("runs")
    }

    #[test]
    fn snapshot_bidirectional_lstm_becomes_int8() {
        let graph = layer("LSTM", "bidirectional", true);
        let before = graph.dump();
        let after = quantize_dynamic(graph);
        insta::assert_snapshot!(format!("before:\n{before}\nafter:\n{}", after.dump()));
        let node = &after.nodes[0];
        let Some(Op::Int8Recurrent(layer)) = &node.op else {
            panic!("not quantized: {}", node.op_type);
        };
        assert_eq!((layer.hidden, node.inputs.len()), (3, 14));
        // Symmetric per channel: no zero points, one scale per direction and channel.
        let scale = node.inputs[Int8Recurrent::WEIGHTS + 3].expect("W scale");
        assert!(node.inputs[Int8Recurrent::WEIGHTS + 2].is_none());
        assert_eq!(after.value(scale).len(), 2 * 12);
    }

    #[test]
    fn gru_keeps_its_hidden_gate_apart() {
        let after = quantize_dynamic(layer("GRU", "forward", true));
        let node = &after.nodes[0];
        assert_eq!(node.op_type, "Int8Recurrent");
        assert_eq!(node.inputs.len(), 18);
        // R^T over the update and reset gates (6 channels), R_h^T over the hidden gate (3).
        let sums = |at: usize| after.value(node.inputs[at].expect("sums")).len();
        assert_eq!(
            (
                sums(Int8Recurrent::WEIGHTS + 5),
                sums(Int8Recurrent::WEIGHTS + 9)
            ),
            (6, 3)
        );
        let rnn = quantize_dynamic(layer("RNN", "reverse", true));
        assert_eq!(rnn.nodes[0].op_type, "Int8Recurrent");
    }

    #[test]
    fn weights_computed_at_run_time_stay_float() {
        let graph = layer("LSTM", "forward", false);
        assert_eq!(
            crate::passes::float_reason(&graph, 0, Quantize::Dynamic),
            Some("weights computed at run time")
        );
        let after = quantize_dynamic(graph);
        assert_eq!(after.nodes[0].op_type, "LSTM");
        let constant = layer("LSTM", "forward", true);
        assert_eq!(
            crate::passes::float_reason(&constant, 0, Quantize::Dynamic),
            None
        );
        assert!(crate::passes::float_reason(&constant, 0, Quantize::Static).is_some());
    }
}
