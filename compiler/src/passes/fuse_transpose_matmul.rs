//! Folds a Transpose that swaps the last two axes into the batched MatMul that reads it as B:
//! attention's `Q x K^T`, where the exporters write `K^T` as its own node. The MatMul then reads
//! K where it lies (`MatMul::trans_b`, `sinter_rt::gemm::batched_gemm_f32` with `trans_b`: the
//! product's B panels are packed from K's rows) instead of a transposed copy of every head,
//! which with a KV cache is the whole cache at every step. A scaling by a constant between the
//! two (`Transpose -> Mul(s) -> MatMul`, as torch exports scaled dot-product attention) moves
//! before the Transpose, onto K. Float32, rank 3 and up, the Transpose read by nothing else;
//! results are the same sums in the same order.

use super::pattern::{producers, retain};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph};
use crate::ops::elementwise::BinaryKind;
use crate::ops::Op;

/// Folds Transpose(last two axes) -> MatMul pairs.
pub fn fuse_transpose_matmul(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let uses = graph.use_counts();
    let producer = producers(&graph);
    let mut remove = vec![false; graph.nodes.len()];
    for mm_index in 0..graph.nodes.len() {
        let mm = &graph.nodes[mm_index];
        let Some(Op::MatMul(product)) = &mm.op else {
            continue;
        };
        let Some(Some(bt)) = mm.inputs.get(1).copied() else {
            continue;
        };
        let Some(mut t_index) = producer[bt.index()] else {
            continue;
        };
        // `Transpose -> Mul/Div by a scalar -> MatMul` (the exporters scale K^T): the scaling
        // commutes with the transpose, so it moves before it, onto K itself.
        let mut scale = None;
        if let Some(Op::Binary(b)) = &graph.nodes[t_index].op {
            let node = &graph.nodes[t_index];
            let scalar = |i: usize| {
                node.inputs.get(i).copied().flatten().is_some_and(|v| {
                    graph
                        .value(v)
                        .constant
                        .as_ref()
                        .is_some_and(|c| c.len() == 1)
                })
            };
            let divides = matches!(b.kind, BinaryKind::Div);
            let x = match (scalar(0), scalar(1)) {
                (false, true) => Some(0),
                (true, false) if !divides => Some(1),
                _ => None,
            };
            let inner = x
                .and_then(|i| node.inputs[i])
                .filter(|v| uses[v.index()] == 1);
            match (b.kind, inner.and_then(|v| producer[v.index()]), x) {
                (BinaryKind::Mul | BinaryKind::Div, Some(p), Some(i)) if uses[bt.index()] == 1 => {
                    scale = Some((t_index, i));
                    t_index = p;
                }
                _ => continue,
            }
        }
        let t = &graph.nodes[t_index];
        let (Some(Op::Transpose(transpose)), Some(Some(k))) = (&t.op, t.inputs.first().copied())
        else {
            continue;
        };
        let rank = graph.value(k).shape.as_ref().map_or(0, Vec::len);
        let swaps_last_two = transpose.perm(rank).is_ok_and(|p| {
            rank >= 3
                && p[..rank - 2].iter().enumerate().all(|(i, &a)| i == a)
                && p[rank - 2..] == [rank - 1, rank - 2]
        });
        let a_rank = mm
            .inputs
            .first()
            .copied()
            .flatten()
            .and_then(|a| graph.value(a).shape.as_ref().map(Vec::len));
        let transposed = t.outputs.first().copied().flatten();
        if product.trans_b
            || !swaps_last_two
            || a_rank.is_none_or(|r| r < 2)
            || transposed.is_none_or(|v| uses[v.index()] != 1 || graph.outputs.contains(&v))
            || uses[bt.index()] != 1
            || graph.outputs.contains(&bt)
            || t.guards != mm.guards
            || graph.value(k).dtype != Some(DType::F32)
            || graph.value(k).constant.is_some()
            || remove[t_index]
        {
            continue;
        }
        let b = match scale {
            // The scaling reads K and its output takes K's layout (the last two axes back).
            Some((s_index, i)) => {
                graph.nodes[s_index].inputs[i] = Some(k);
                let (shape, dynamic, syms) = {
                    let kv = graph.value(k);
                    (kv.shape.clone(), kv.dynamic.clone(), kv.syms.clone())
                };
                let out = graph.value_mut(bt);
                (out.shape, out.dynamic, out.syms) = (shape, dynamic, syms);
                bt
            }
            None => k,
        };
        let node = &mut graph.nodes[mm_index];
        node.inputs[1] = Some(b);
        node.op = Some(Op::MatMul(crate::ops::gemm::MatMul { trans_b: true }));
        remove[t_index] = true;
    }
    retain(&mut graph, &remove);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::ModelBuilder;

    /// `scores = MatMul(q [2, 4, 8], Transpose(k, perm))`, with `scale` a Mul by 0.5 between
    /// them and `kt` also a graph output when `shared`; the graph after the pass and its ops.
    fn fused(k: &[i64], perm: &[i64], scale: bool, shared: bool) -> (Graph, Vec<String>) {
        let mut b = ModelBuilder::new()
            .input("q", &[2, 4, 8])
            .input("k", k)
            .floats("s", &[], &[0.5])
            .transpose("k", "kt", perm);
        b = if scale {
            b.node("Mul", &["kt", "s"], &["ks"])
                .node("MatMul", &["q", "ks"], &["scores"])
        } else {
            b.node("MatMul", &["q", "kt"], &["scores"])
        };
        b = b.output("scores");
        if shared {
            b = b.output("kt");
        }
        let graph = fuse_transpose_matmul(b.build(), &PassCx::default()).expect("runs");
        let ops = graph.nodes.iter().map(|n| n.op_type.clone()).collect();
        (graph, ops)
    }

    #[test]
    fn a_transposed_key_is_read_in_place() {
        let (graph, ops) = fused(&[2, 6, 8], &[0, 2, 1], false, false);
        assert_eq!(ops, ["MatMul"]);
        assert!(matches!(&graph.nodes[0].op, Some(Op::MatMul(m)) if m.trans_b));
        assert_eq!(graph.value(graph.outputs[0]).shape, Some(vec![2, 4, 6]));
    }

    #[test]
    fn a_scaling_between_moves_onto_the_key() {
        let (graph, ops) = fused(&[2, 6, 8], &[0, 2, 1], true, false);
        assert_eq!(ops, ["Mul", "MatMul"]);
        let scaled = graph.nodes[0].outputs[0].expect("output");
        assert_eq!(graph.value(scaled).shape, Some(vec![2, 6, 8]));
        assert_eq!(graph.value(graph.outputs[0]).shape, Some(vec![2, 4, 6]));
    }

    #[test]
    fn other_permutations_and_shared_transposes_stay() {
        assert_eq!(fused(&[8, 6, 2], &[2, 0, 1], false, false).1.len(), 2);
        assert_eq!(fused(&[2, 6, 8], &[0, 2, 1], false, true).1.len(), 2);
    }
}
