//! Recognizes SiLU written out as `x * Sigmoid(x)` (PyTorch's `nn.SiLU` before opset 24,
//! YOLO-style exports) and replaces the pair with one `Swish` node (alpha 1), which computes
//! `x * sigmoid(x)` in one pass over the data. Float32 and float64 only (for 16-bit floats the
//! pair rounds the sigmoid before multiplying, the fused op does not). The Sigmoid's output
//! must have no other reader; otherwise the graph is left alone.

use super::pattern::{fuse, input, new_node, output, Fusion, Matcher};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph};

/// Replaces `x * Sigmoid(x)` with `Swish(x)`.
pub fn fuse_silu(graph: Graph, _cx: &PassCx) -> Result<Graph> {
    Ok(fuse(graph, |m, end| {
        let last = &m.graph.nodes[end];
        if last.op_type != "Mul" || !last.domain.is_empty() {
            return None;
        }
        let (x, sigmoid) = Matcher::operand_pairs(last)
            .into_iter()
            .find_map(|(x, s)| {
                let (si, sig) = m.op(s, "Sigmoid")?;
                (input(sig, 0) == Some(x)).then_some((x, si))
            })?;
        if !matches!(m.graph.value(x).dtype, Some(DType::F32 | DType::F64)) {
            return None;
        }
        let node = new_node(
            format!("{}/silu", last.name),
            "Swish",
            vec![Some(x)],
            vec![output(last, 0)],
            Vec::new(),
            last,
        )?;
        Some(Fusion {
            nodes: vec![sigmoid, end],
            node,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{before_after, ModelBuilder};

    #[test]
    fn x_times_sigmoid_x_becomes_swish() {
        let graph = ModelBuilder::new()
            .input("x", &[2, 3])
            .node("Relu", &["x"], &["r"])
            .node("Sigmoid", &["r"], &["s"])
            .node("Mul", &["s", "r"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, fuse_silu);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 2);
    }

    #[test]
    fn a_shared_sigmoid_or_another_operand_stays() {
        let graph = ModelBuilder::new()
            .input("x", &[4])
            .input("z", &[4])
            .node("Sigmoid", &["x"], &["s"])
            .node("Mul", &["x", "s"], &["a"])
            .node("Sigmoid", &["z"], &["t"])
            .node("Mul", &["x", "t"], &["b"])
            .node("Sum", &["a", "b", "s"], &["y"])
            .output("y")
            .build();
        let after = fuse_silu(graph, &PassCx::default()).expect("runs");
        assert_eq!(after.nodes.len(), 5);
    }
}
