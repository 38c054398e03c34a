//! Turns `MatMul` followed by an `Add` of a constant into one `Gemm` (`Y = A x B + C`): both
//! operands of the MatMul are float32 matrices, the MatMul's output feeds only the Add, and
//! the constant broadcasts to the product's shape. Batched MatMuls, run-time addends and
//! shared outputs are left alone. Every other MatMul of two float32 matrices becomes a Gemm
//! too (`Y = A x B`), so that `fuse_activation` can fuse the activation after it and
//! `pack_weights` can pre-pack a constant B.

use super::pattern::{producers, retain};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph};
use crate::ops::gemm::Gemm;
use crate::ops::{broadcast_shapes, Op};

/// Fuses MatMul -> Add(constant) pairs into Gemm.
pub fn fuse_matmul_add(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    for add_index in 0..graph.nodes.len() {
        let add = &graph.nodes[add_index];
        if add.op_type != "Add" || !add.domain.is_empty() || add.inputs.len() != 2 {
            continue;
        }
        let (Some(Some(a)), Some(Some(b)), Some(Some(out))) = (
            add.inputs.first().copied(),
            add.inputs.get(1).copied(),
            add.outputs.first().copied(),
        ) else {
            continue;
        };
        let (x, c) = if graph.value(b).constant.is_some() {
            (a, b)
        } else {
            (b, a)
        };
        if graph.value(c).constant.is_none() || uses[x.index()] != 1 || graph.outputs.contains(&x) {
            continue;
        }
        let Some(mm_index) = producer[x.index()] else {
            continue;
        };
        let mm = &graph.nodes[mm_index];
        if remove[mm_index] || !matches!(mm.op, Some(Op::MatMul(_))) || mm.guards != add.guards {
            continue;
        }
        let (Some(Some(ma)), Some(Some(mb))) =
            (mm.inputs.first().copied(), mm.inputs.get(1).copied())
        else {
            continue;
        };
        let is_f32_matrix = |v| {
            graph.value(v).dtype == Some(DType::F32)
                && graph.value(v).shape.as_ref().is_some_and(|s| s.len() == 2)
        };
        let Some(product) = graph.value(x).shape.clone() else {
            continue;
        };
        let fits = graph
            .value(c)
            .shape
            .as_ref()
            .is_some_and(|s| broadcast_shapes(s, &product).is_ok_and(|b| b == product));
        if !is_f32_matrix(ma)
            || !is_f32_matrix(mb)
            || graph.value(c).dtype != Some(DType::F32)
            || !fits
        {
            continue;
        }
        let gemm = &mut graph.nodes[mm_index];
        gemm.op_type = "Gemm".into();
        gemm.inputs = vec![Some(ma), Some(mb), Some(c)];
        gemm.outputs = vec![Some(out)];
        gemm.op = Some(Op::Gemm(Gemm::product()));
        remove[add_index] = true;
    }
    retain(&mut graph, &remove);
    for node in &mut graph.nodes {
        if !matches!(node.op, Some(Op::MatMul(_))) || node.inputs.len() != 2 {
            continue;
        }
        let matrices = node.inputs.iter().all(|input| {
            input.is_some_and(|v| {
                let value = &graph.values[v.index()];
                value.dtype == Some(DType::F32)
                    && value.shape.as_ref().is_some_and(|s| s.len() == 2)
            })
        });
        if matrices {
            node.op_type = "Gemm".into();
            node.op = Some(Op::Gemm(Gemm::product()));
        }
    }
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{run_passes, OptLevel};

    #[test]
    fn snapshot_matmul_plus_bias() {
        use crate::passes::testing::{before_after, ModelBuilder};
        let w: Vec<f32> = (0..20).map(|i| i as f32 * 0.1).collect();
        let graph = ModelBuilder::new()
            .input("x", &[3, 4])
            .floats("w", &[4, 5], &w)
            .floats("b", &[5], &[1.0, 2.0, 3.0, 4.0, 5.0])
            .node("MatMul", &["x", "w"], &["m"])
            .node("Add", &["m", "b"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, fuse_matmul_add);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 1);
    }

    fn tiny_mlp(level: OptLevel) -> Graph {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/tiny_mlp/model.onnx");
        let cx = PassCx {
            opt_level: level,
            dims: [("N".to_string(), 2)].into_iter().collect(),
            ..PassCx::default()
        };
        run_passes(crate::Builder::new(path).load().expect("loads"), &cx)
            .expect("compiles")
            .0
    }

    #[test]
    fn matmul_add_pairs_become_gemm() {
        let before = tiny_mlp(OptLevel::O1);
        assert_eq!(
            before.op_histogram(),
            [
                ("Add", 2),
                ("Gemm", 1),
                ("MatMul", 2),
                ("Relu", 2),
                ("Softmax", 1)
            ]
            .map(|(o, n)| (o.to_string(), n))
        );
        let after = fuse_matmul_add(before, &PassCx::default()).expect("runs");
        assert_eq!(
            after.op_histogram(),
            [("Gemm", 3), ("Relu", 2), ("Softmax", 1)].map(|(o, n)| (o.to_string(), n))
        );
    }

    #[test]
    fn a_shared_product_is_left_alone() {
        let mut graph = tiny_mlp(OptLevel::O1);
        let product = graph
            .nodes
            .iter()
            .find(|n| n.op_type == "MatMul")
            .and_then(|n| n.outputs[0])
            .expect("a MatMul");
        graph.outputs.push(product);
        let after = fuse_matmul_add(graph, &PassCx::default()).expect("runs");
        // The shared product's Add stays; the product itself becomes a plain Gemm.
        assert!(
            after.op_histogram().contains(&("Add".to_string(), 1))
                && !after.op_histogram().iter().any(|(op, _)| op == "MatMul"),
            "{:?}",
            after.op_histogram()
        );
    }
}
