//! Turns `MatMul` followed by an `Add` of a constant into one `Gemm` (`Y = A x B + C`): both
//! operands of the MatMul are float32 matrices, the MatMul's output feeds only the Add, and
//! the constant broadcasts to the product's shape. Batched MatMuls, run-time addends and
//! shared outputs are left alone. Every other MatMul of two float32 matrices becomes a Gemm
//! too (`Y = A x B`), so that `fuse_activation` can fuse the activation after it and
//! `pack_weights` can pre-pack a constant B. A MatMul of an N-D activation by a constant 2-D
//! weight (the linear layers of transformers) first folds the leading dimensions into rows
//! between two free Reshapes, so it becomes one packed Gemm too.

use super::pattern::{
    add_constant, add_typed, new_node, producers, retain, rows_vary_only, touches_dynamic,
};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Tensor};
use crate::ops::gemm::Gemm;
use crate::ops::{broadcast_shapes, Op};

/// Fuses MatMul -> Add(constant) pairs into Gemm.
pub fn fuse_matmul_add(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    fold_leading_dims(&mut graph);
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
        let Some(mut mm_index) = producer[x.index()] else {
            continue;
        };
        // A bias after the Reshape that unfolds a folded product (`fold_leading_dims`) joins
        // the product too when it is one value per column: the Reshape then carries the sum.
        let mut unfold = None;
        if matches!(graph.nodes[mm_index].op, Some(Op::Reshape(_))) {
            let r = &graph.nodes[mm_index];
            let inner = r.inputs.first().copied().flatten();
            let bias_len = graph.value(c).len();
            let last = graph
                .value(x)
                .shape
                .as_ref()
                .and_then(|s| s.last().copied());
            let per_column = graph
                .value(c)
                .shape
                .as_ref()
                .is_some_and(|s| s.last().copied() == last && Some(bias_len) == last);
            match inner.and_then(|v| producer[v.index()].filter(|_| uses[v.index()] == 1)) {
                Some(p) if per_column && r.guards == add.guards && !remove[mm_index] => {
                    unfold = Some(mm_index);
                    mm_index = p;
                }
                _ => continue,
            }
        }
        let mm = &graph.nodes[mm_index];
        if remove[mm_index]
            || !matches!(mm.op, Some(Op::MatMul(_)))
            || mm.guards != add.guards
            || (touches_dynamic(&graph, mm) && !rows_vary_only(&graph, mm))
        {
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
        let product_value = match unfold {
            Some(_) => mm.outputs.first().copied().flatten(),
            None => Some(x),
        };
        let Some(product) = product_value.and_then(|v| graph.value(v).shape.clone()) else {
            continue;
        };
        // Through an unfolding Reshape the bias is the product's last axis: one row of it,
        // reshaped to `[n]` when written with more axes than the product has.
        let row = match (unfold, graph.value(c).constant.as_ref()) {
            (Some(_), Some(t)) if t.shape.len() > 2 => Some(t.reshaped(vec![t.len()])),
            _ => None,
        };
        let c_shape = match &row {
            Some(t) => Some(t.shape.clone()),
            None => graph.value(c).shape.clone(),
        };
        let fits = c_shape
            .as_ref()
            .is_some_and(|s| broadcast_shapes(s, &product).is_ok_and(|b| b == product));
        if !is_f32_matrix(ma)
            || !is_f32_matrix(mb)
            || graph.value(c).dtype != Some(DType::F32)
            || !fits
        {
            continue;
        }
        let c = match row {
            Some(t) => {
                let name = format!("{}/row", graph.value(c).name);
                add_constant(&mut graph, name, t)
            }
            None => c,
        };
        let gemm = &mut graph.nodes[mm_index];
        gemm.op_type = "Gemm".into();
        gemm.inputs = vec![Some(ma), Some(mb), Some(c)];
        gemm.op = Some(Op::Gemm(Gemm::product()));
        match unfold {
            Some(r) => graph.nodes[r].outputs = vec![Some(out)],
            None => gemm.outputs = vec![Some(out)],
        }
        remove[add_index] = true;
    }
    retain(&mut graph, &remove);
    let dynamic: Vec<bool> = graph
        .nodes
        .iter()
        .map(|n| touches_dynamic(&graph, n) && !rows_vary_only(&graph, n))
        .collect();
    for (node, dynamic) in graph.nodes.iter_mut().zip(dynamic) {
        if !matches!(node.op, Some(Op::MatMul(_))) || node.inputs.len() != 2 || dynamic {
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

/// A float32 MatMul of an N-D activation (`[..., m, k]`, rank 3 or more) by a constant 2-D
/// weight is one product over all `R = ...*m` rows: it becomes `Reshape(A, [R, k]) -> MatMul
/// -> Reshape(.., [..., m, n])`, whose 2-D MatMul turns into a Gemm below and gets its weights
/// packed (`pack_weights`). Reshapes are views: they cost nothing at run time.
fn fold_leading_dims(graph: &mut Graph) {
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    for node in std::mem::take(&mut graph.nodes) {
        let folded = (|| {
            // Reshape takes its shape as an input from opset 5 on.
            if !matches!(node.op, Some(Op::MatMul(_))) || node.inputs.len() != 2 || node.opset < 5 {
                return None;
            }
            let (a, b, y) = (
                node.inputs[0]?,
                node.inputs[1]?,
                node.outputs.first().copied()??,
            );
            let (av, bv) = (graph.value(a), graph.value(b));
            let a_shape = av.shape.clone()?;
            let b_shape = bv.shape.clone()?;
            let y_shape = graph.value(y).shape.clone()?;
            if av.dtype != Some(DType::F32)
                || bv.dtype != Some(DType::F32)
                || bv.constant.is_none()
                || a_shape.len() < 3
                || b_shape.len() != 2
                || a_shape.last() != b_shape.first()
            {
                return None;
            }
            // With a run-time extent, one leading axis of A (and of Y) may vary: the rows are
            // then `-1` in the fold, and that axis `-1` in the unfold.
            let a_dynamic = av.dynamic.clone();
            let y_dynamic = graph.value(y).dynamic.clone();
            let varying = a_dynamic.iter().filter(|&&d| d).count();
            let leading = a_dynamic.iter().position(|&d| d);
            if varying > 1
                || a_dynamic.last() == Some(&true)
                || bv.is_dynamic()
                || (varying == 1 && y_dynamic != a_dynamic)
            {
                return None;
            }
            let (k, n) = (b_shape[0], b_shape[1]);
            let rows: usize = a_shape[..a_shape.len() - 1].iter().product();
            // `varying` marks the axis written `-1`.
            let dims = |v: &[usize], varying: Option<usize>| -> Option<Vec<i64>> {
                v.iter()
                    .enumerate()
                    .map(|(i, &d)| {
                        if Some(i) == varying {
                            Some(-1)
                        } else {
                            i64::try_from(d).ok()
                        }
                    })
                    .collect()
            };
            let name = node.name.clone();
            let a_rows = add_constant(
                graph,
                format!("{name}/rows_shape"),
                Tensor::from_i64(vec![2], &dims(&[rows, k], leading.map(|_| 0))?),
            );
            let y_dims = add_constant(
                graph,
                format!("{name}/out_shape"),
                Tensor::from_i64(vec![y_shape.len()], &dims(&y_shape, leading)?),
            );
            let mut matrix = |suffix: &str, shape: Vec<usize>| {
                add_typed(
                    graph,
                    format!("{name}/{suffix}"),
                    Some(DType::F32),
                    Some(shape),
                )
            };
            let a2 = matrix("rows", vec![rows, k]);
            let y2 = matrix("product", vec![rows, n]);
            if leading.is_some() {
                for v in [a2, y2] {
                    graph.value_mut(v).dynamic = vec![true, false];
                }
            }
            let before = new_node(
                format!("{name}/fold"),
                "Reshape",
                vec![Some(a), Some(a_rows)],
                vec![Some(a2)],
                Vec::new(),
                &node,
            )?;
            let after = new_node(
                format!("{name}/unfold"),
                "Reshape",
                vec![Some(y2), Some(y_dims)],
                vec![Some(y)],
                Vec::new(),
                &node,
            )?;
            let mut product = node.clone();
            product.inputs = vec![Some(a2), Some(b)];
            product.outputs = vec![Some(y2)];
            Some([before, product, after])
        })();
        match folded {
            Some(three) => nodes.extend(three),
            None => nodes.push(node),
        }
    }
    graph.nodes = nodes;
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

    #[test]
    fn snapshot_batched_activation_by_constant_weights_folds_into_a_gemm() {
        use crate::passes::testing::{before_after, ModelBuilder};
        let w: Vec<f32> = (0..20).map(|i| i as f32 * 0.1).collect();
        let graph = ModelBuilder::new()
            .input("x", &[2, 3, 4])
            .floats("w", &[4, 5], &w)
            .node("MatMul", &["x", "w"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, fuse_matmul_add);
        insta::assert_snapshot!(text);
        let ops: Vec<&str> = after.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Reshape", "Gemm", "Reshape"]);
        let product = &after.nodes[1];
        let rows = after.value(product.inputs[0].expect("A"));
        assert_eq!(rows.shape.as_deref(), Some(&[6, 4][..]));
    }

    #[test]
    fn a_bias_after_a_folded_product_joins_the_gemm() {
        use crate::passes::testing::ModelBuilder;
        let w: Vec<f32> = (0..20).map(|i| i as f32 * 0.1).collect();
        let graph = ModelBuilder::new()
            .input("x", &[2, 3, 4])
            .floats("w", &[4, 5], &w)
            .floats("b", &[1, 1, 5], &[1.0, 2.0, 3.0, 4.0, 5.0])
            .node("MatMul", &["x", "w"], &["m"])
            .node("Add", &["m", "b"], &["y"])
            .output("y")
            .build();
        let after = fuse_matmul_add(graph, &PassCx::default()).expect("runs");
        let ops: Vec<&str> = after.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Reshape", "Gemm", "Reshape"]);
        let bias = after.value(after.nodes[1].inputs[2].expect("C"));
        assert_eq!(bias.shape.as_deref(), Some(&[5][..]));
        let out = after.nodes[2].outputs[0].expect("output");
        assert_eq!(after.value(out).name, "y");
    }

    #[test]
    fn batched_weights_at_run_time_are_not_folded() {
        use crate::passes::testing::ModelBuilder;
        let graph = ModelBuilder::new()
            .input("x", &[2, 3, 4])
            .input("w", &[4, 5])
            .node("MatMul", &["x", "w"], &["y"])
            .output("y")
            .build();
        let after = fuse_matmul_add(graph, &PassCx::default()).expect("runs");
        let ops: Vec<&str> = after.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMul"]);
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
