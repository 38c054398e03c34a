//! Fuses an activation into the `Conv` or `Gemm` before it: when its output feeds only a Relu,
//! LeakyRelu, Sigmoid, Tanh, HardSigmoid, HardSwish or Clip (with constant bounds) on float32,
//! the kernel applies it to each output tile as it finishes (the GEMM epilogue) and
//! the activation node goes. Anything else (another consumer, a graph output, a run-time Clip
//! bound, different guards) is left alone.

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
    Some(match node.op_type.as_str() {
        "Relu" => FusedAct::Relu,
        "Sigmoid" => FusedAct::Sigmoid,
        "Tanh" => FusedAct::Tanh,
        "LeakyRelu" => FusedAct::LeakyRelu(float("alpha", 0.01)),
        "HardSigmoid" => FusedAct::HardSigmoid(float("alpha", 0.2), float("beta", 0.5)),
        "HardSwish" => FusedAct::HardSwish,
        "Clip" if node.opset < 11 => FusedAct::Clip(float("min", f32::MIN), float("max", f32::MAX)),
        "Clip" => FusedAct::Clip(
            scalar(1)?.unwrap_or(f32::NEG_INFINITY),
            scalar(2)?.unwrap_or(f32::INFINITY),
        ),
        _ => return None,
    })
}

/// Fuses Conv -> activation pairs.
pub fn fuse_activation(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    for act_index in 0..graph.nodes.len() {
        let act_node = &graph.nodes[act_index];
        let Some(act) = activation_of(&graph, act_node) else {
            continue;
        };
        let Some(Some(x)) = act_node.inputs.first().copied() else {
            continue;
        };
        let Some(Some(out)) = act_node.outputs.first().copied() else {
            continue;
        };
        if graph.value(x).dtype != Some(DType::F32)
            || uses[x.index()] != 1
            || graph.outputs.contains(&x)
        {
            continue;
        }
        let Some(conv_index) = producer[x.index()] else {
            continue;
        };
        let guards_match = graph.nodes[conv_index].guards == act_node.guards;
        let conv_node = &mut graph.nodes[conv_index];
        let slot = match &mut conv_node.op {
            Some(Op::Conv(conv)) => &mut conv.activation,
            Some(Op::Gemm(gemm)) => &mut gemm.activation,
            _ => continue,
        };
        if remove[conv_index] || slot.is_some() || !guards_match {
            continue;
        }
        *slot = Some(act);
        conv_node.outputs[0] = Some(out);
        remove[act_index] = true;
    }
    retain(&mut graph, &remove);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{run_passes, OptLevel};

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
            .filter(|n| matches!(&n.op, Some(Op::Conv(c)) if c.activation == Some(FusedAct::Relu)))
            .count();
        assert_eq!(fused, 2);
    }

    #[test]
    fn a_conv_output_with_another_use_is_left_alone() {
        let mut graph = tiny_cnn(OptLevel::O1);
        let conv_out = graph
            .nodes
            .iter()
            .find(|n| n.op_type == "Conv")
            .and_then(|n| n.outputs[0])
            .expect("a conv");
        graph.outputs.push(conv_out);
        let after = fuse_activation(graph, &PassCx::default()).expect("runs");
        assert!(
            after.op_histogram().contains(&("Relu".to_string(), 2)),
            "{:?}",
            after.op_histogram()
        );
    }
}
