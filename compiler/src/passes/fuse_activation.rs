//! Fuses activations into the `Conv`, `Gemm`, inference `BatchNormalization` or float-output
//! `sinter::Int8Product` before them
//! (it runs again after `lower_int8`): when a kernel's output feeds only a
//! Relu, LeakyRelu, Sigmoid, Tanh, HardSigmoid, HardSwish or Clip (with constant bounds) on
//! float32, the kernel applies it to each output tile as it finishes (the GEMM epilogue) and
//! the activation node goes. A convolution keeps absorbing what follows in a chain: further
//! activations, and a Mul, Add or Sub by a scalar constant (the "learnable affine" blocks of
//! PP-LCNet), each applied in order exactly as the node would. Anything else (another
//! consumer, a graph output, a run-time operand, different guards) is left alone.

use super::pattern::{producers, retain};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Node, Tensor};
use crate::ops::{FusedAct, Op};

/// The activation a node computes, if it is one the Conv epilogue can apply.
fn activation_of(graph: &Graph, node: &Node) -> Option<FusedAct> {
    let float = |name: &str, default: f32| -> f32 {
        node.attributes
            .iter()
            .find(|a| a.name() == name)
            .map_or(default, |a| a.f())
    };
    let scalar = |i: usize| -> Option<Option<f32>> {
        match node.inputs.get(i).copied().flatten() {
            None => Some(None),
            Some(v) => graph
                .value(v)
                .constant
                .as_ref()
                .and_then(Tensor::as_f32)
                .filter(|t| t.len() == 1)
                .map(|t| Some(t[0])),
        }
    };
    if !node.domain.is_empty() {
        return None;
    }
    // The non-scalar operand of a binary op with a scalar constant, as (data input, constant,
    // whether the constant is the first operand).
    let with_scalar = || -> Option<(usize, f32, bool)> {
        match (scalar(0), scalar(1)) {
            (Some(Some(c)), None) => Some((1, c, true)),
            (None, Some(Some(c))) => Some((0, c, false)),
            _ => None,
        }
    };
    Some(match node.op_type.as_str() {
        "Relu" => FusedAct::Relu,
        "Sigmoid" => FusedAct::Sigmoid,
        "Tanh" => FusedAct::Tanh,
        "LeakyRelu" => FusedAct::LeakyRelu(float("alpha", 0.01)),
        "HardSigmoid" => FusedAct::HardSigmoid(float("alpha", 0.2), float("beta", 0.5)),
        "HardSwish" => FusedAct::HardSwish,
        "Swish" => FusedAct::Swish(float("alpha", 1.0)),
        "Gelu" => FusedAct::Gelu {
            tanh: node
                .attributes
                .iter()
                .find(|a| a.name() == "approximate")
                .is_some_and(|a| a.s() == b"tanh"),
        },
        "Clip" if node.opset < 11 => FusedAct::Clip(float("min", f32::MIN), float("max", f32::MAX)),
        "Clip" => FusedAct::Clip(
            scalar(1)?.unwrap_or(f32::NEG_INFINITY),
            scalar(2)?.unwrap_or(f32::INFINITY),
        ),
        "Mul" => FusedAct::Affine(with_scalar()?.1, 0.0),
        "Add" => FusedAct::Affine(1.0, with_scalar()?.1),
        // x - c is x + (-c) exactly; c - x is not an affine map of this form with alpha = 1.
        "Sub" => match with_scalar()? {
            (_, c, false) => FusedAct::Affine(1.0, -c),
            _ => return None,
        },
        _ => return None,
    })
}

/// The input of `node` that carries the tensor (not a scalar constant operand).
fn data_input(graph: &Graph, node: &Node) -> Option<crate::ir::ValueId> {
    if matches!(node.op_type.as_str(), "Mul" | "Add" | "Sub") {
        let is_scalar = |i: usize| {
            node.inputs
                .get(i)
                .copied()
                .flatten()
                .and_then(|v| graph.value(v).constant.as_ref())
                .is_some_and(|t| t.len() == 1)
        };
        return match (is_scalar(0), is_scalar(1)) {
            (true, false) => node.inputs[1],
            (false, true) => node.inputs[0],
            _ => None,
        };
    }
    node.inputs.first().copied().flatten()
}

/// Fuses Conv/Gemm -> activation chains.
pub fn fuse_activation(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let mut producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    for act_index in 0..graph.nodes.len() {
        let act_node = &graph.nodes[act_index];
        let Some(act) = activation_of(&graph, act_node) else {
            continue;
        };
        let Some(x) = data_input(&graph, act_node) else {
            continue;
        };
        let Some(Some(out)) = act_node.outputs.first().copied() else {
            continue;
        };
        if graph.value(x).dtype != Some(DType::F32)
            || graph.value(out).shape != graph.value(x).shape
            || uses[x.index()] != 1
            || graph.outputs.contains(&x)
        {
            continue;
        }
        let Some(mut conv_index) = producer[x.index()] else {
            continue;
        };
        // An elementwise activation commutes with a reshape between it and the kernel: the
        // kernel applies it and the reshape then carries the activation's output.
        let mut reshape = None;
        if matches!(graph.nodes[conv_index].op, Some(Op::Reshape(_))) {
            let r = &graph.nodes[conv_index];
            let inner = r.inputs.first().copied().flatten();
            if let Some(inner) = inner.filter(|v| {
                uses[v.index()] == 1 && !graph.outputs.contains(v) && r.guards == act_node.guards
            }) {
                if let Some(kernel) = producer[inner.index()] {
                    reshape = Some(conv_index);
                    conv_index = kernel;
                }
            }
        }
        let guards_match = graph.nodes[conv_index].guards == act_node.guards;
        let conv_node = &mut graph.nodes[conv_index];
        if remove[conv_index] || !guards_match {
            continue;
        }
        match &mut conv_node.op {
            // A scalar affine op only follows an activation (right after the convolution
            // it is folded into the weights by `fold_conv_affine`).
            Some(Op::Conv(conv))
                if !matches!(act, FusedAct::Affine(..)) || !conv.activations.is_empty() =>
            {
                conv.activations.push(act);
            }
            Some(Op::ConvTranspose(conv))
                if !matches!(act, FusedAct::Affine(..)) || !conv.activations.is_empty() =>
            {
                conv.activations.push(act);
            }
            Some(Op::Gemm(gemm))
                if gemm.activation.is_none() && !matches!(act, FusedAct::Affine(..)) =>
            {
                gemm.activation = Some(act);
            }
            // An inference batch normalization applies them in its own pass over Y (the
            // pre-activation BN-ReLU of DenseNet-style blocks).
            Some(Op::BatchNorm(bn))
                if bn.training_momentum.is_none() && !matches!(act, FusedAct::Affine(..)) =>
            {
                bn.activations.push(act);
            }
            // An int8 product dequantizing to float32 applies them in its epilogue too.
            Some(Op::Int8Product(product))
                if product.out == crate::ops::int8::Int8Out::F32
                    && (!matches!(act, FusedAct::Affine(..))
                        || !product.activations.is_empty()) =>
            {
                product.activations.push(act);
            }
            _ => continue,
        }
        match reshape {
            Some(r) => {
                graph.nodes[r].outputs[0] = Some(out);
                producer[out.index()] = Some(r);
            }
            None => {
                conv_node.outputs[0] = Some(out);
                producer[out.index()] = Some(conv_index);
            }
        }
        remove[act_index] = true;
    }
    retain(&mut graph, &remove);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{run_passes, OptLevel};

    #[test]
    fn snapshot_activation_chain() {
        use crate::passes::testing::{before_after, ints_attr, ModelBuilder};
        let w: Vec<f32> = (0..36).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let graph = ModelBuilder::new()
            .input("x", &[1, 2, 4, 4])
            .floats("w", &[2, 2, 3, 3], &w)
            .floats("s", &[], &[0.5])
            .floats("t", &[], &[0.25])
            .node_with(
                "Conv",
                &["x", "w"],
                &["c"],
                vec![ints_attr("pads", &[1, 1, 1, 1])],
            )
            .node("Relu", &["c"], &["r"])
            .node("Mul", &["s", "r"], &["m"])
            .node("Add", &["m", "t"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, fuse_activation);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 1);
    }

    fn tiny_cnn(level: OptLevel) -> Graph {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/tiny_cnn/model.onnx");
        let graph = crate::Builder::new(path).load().expect("loads");
        let cx = PassCx {
            opt_level: level,
            ..PassCx::default()
        };
        run_passes(graph, &cx).expect("compiles").0
    }

    #[test]
    fn relus_after_convs_are_fused() {
        let before = tiny_cnn(OptLevel::O1);
        assert!(before.op_histogram().contains(&("Relu".to_string(), 2)));
        let after = tiny_cnn(OptLevel::O2);
        assert!(
            !after.op_histogram().iter().any(|(op, _)| op == "Relu"),
            "{:?}",
            after.op_histogram()
        );
        let fused = after
            .nodes
            .iter()
            .filter(|n| matches!(&n.op, Some(Op::Conv(c)) if c.activations == [FusedAct::Relu]))
            .count();
        assert_eq!(fused, 2);
    }

    #[test]
    fn a_kernel_output_with_another_use_is_left_alone() {
        // At -O1 the batch normalizations stay, so each Relu follows one: make every Relu's
        // input a graph output too.
        let mut graph = tiny_cnn(OptLevel::O1);
        let relu_inputs: Vec<_> = graph
            .nodes
            .iter()
            .filter(|n| n.op_type == "Relu")
            .filter_map(|n| n.inputs[0])
            .collect();
        assert_eq!(relu_inputs.len(), 2);
        graph.outputs.extend(relu_inputs);
        let after = fuse_activation(graph, &PassCx::default()).expect("runs");
        assert!(
            after.op_histogram().contains(&("Relu".to_string(), 2)),
            "{:?}",
            after.op_histogram()
        );
    }

    #[test]
    fn relus_after_batch_norms_are_fused() {
        // At -O1 nothing folds the batch normalizations into the convolutions: they take the
        // Relus instead (one pass over the tensor instead of two).
        let graph = tiny_cnn(OptLevel::O1);
        let after = fuse_activation(graph, &PassCx::default()).expect("runs");
        assert!(
            !after.op_histogram().iter().any(|(op, _)| op == "Relu"),
            "{:?}",
            after.op_histogram()
        );
        let fused = after
            .nodes
            .iter()
            .filter(
                |n| matches!(&n.op, Some(Op::BatchNorm(b)) if b.activations == [FusedAct::Relu]),
            )
            .count();
        assert_eq!(fused, 2);
    }

    #[test]
    fn silus_after_convs_are_fused() {
        // x * Sigmoid(x) after a convolution (EfficientNet's SiLU): `fuse_silu` makes it one
        // Swish, which the convolution then applies in its epilogue.
        use crate::passes::testing::ModelBuilder;
        let w: Vec<f32> = (0..32).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        let graph = ModelBuilder::new()
            .input("x", &[1, 4, 3, 3])
            .floats("w", &[8, 4, 1, 1], &w)
            .node("Conv", &["x", "w"], &["c"])
            .node("Sigmoid", &["c"], &["s"])
            .node("Mul", &["c", "s"], &["y"])
            .output("y")
            .build();
        let cx = PassCx {
            opt_level: OptLevel::O2,
            ..PassCx::default()
        };
        let after = run_passes(graph, &cx).expect("compiles").0;
        assert_eq!(after.nodes.len(), 1, "{:?}", after.op_histogram());
        assert!(matches!(
            &after.nodes[0].op,
            Some(Op::Conv(c)) if c.activations == [FusedAct::Swish(1.0)]
        ));
    }
}
