//! Removes nodes whose output equals their input, element for element, and makes their
//! readers read the input: `Identity`, `Dropout` (inference; its mask unused), `Cast` to the
//! input's type, `Reshape`/`Flatten`/`Squeeze`/`Unsqueeze` to the input's shape, `Transpose`
//! with the identity permutation, `Expand`/`Tile` to the input's shape, `Slice` taking every
//! element in order, `Pad` by zero everywhere, one-input `Concat`/`Sum`/`Max`/`Min`/`Mean`,
//! and `x + 0`, `x - 0`, `x * 1`, `x / 1` with a constant that does not broadcast `x` to a
//! bigger shape (`-0.0 + 0.0` is `+0.0`: equal, though its sign differs).
//!
//! A graph output keeps its name: when a removed node's output is one, the node that produced
//! its input writes it instead; when that input is a graph input, a constant or another graph
//! output, the node stays.

use super::pattern::{input, output, retain, rewire, unchanged, Matcher};
use super::PassCx;
use crate::error::Result;
use crate::ir::{Graph, Node, Tensor, ValueId};
use crate::ops::Op;

/// Whether every element of a constant `v` equals `want`.
fn constant_all(graph: &Graph, v: ValueId, want: f64) -> bool {
    graph
        .value(v)
        .constant
        .as_ref()
        .is_some_and(|t| t.to_f64s().iter().all(|&e| e == want))
}

/// The integer contents of a constant input, if present and constant.
fn const_ints(graph: &Graph, node: &Node, i: usize) -> Option<Vec<i64>> {
    graph
        .value(input(node, i)?)
        .constant
        .as_ref()
        .and_then(Tensor::to_i64s)
}

/// The input that `node`'s first output equals, if the node is a no-op.
fn passthrough(graph: &Graph, node: &Node) -> Option<ValueId> {
    if !node.domain.is_empty() {
        return None;
    }
    let y = graph.value(output(node, 0)?);
    let same = |x: ValueId| {
        let x = graph.value(x);
        x.dtype.is_some()
            && x.dtype == y.dtype
            && x.shape.is_some()
            && x.shape == y.shape
            && !x.is_dynamic()
            && !y.is_dynamic()
    };
    let x = input(node, 0)?;
    // An Identity passes a value of run-time shape through as it is.
    if node.op_type == "Identity" {
        let xv = graph.value(x);
        if xv.dtype == y.dtype && xv.shape == y.shape && xv.dynamic == y.dynamic {
            return Some(x);
        }
    }
    let first = same(x).then_some(x);
    match node.op.as_ref()? {
        Op::Reshape(_) | Op::Squeeze(_) | Op::Cast(_) | Op::Repeat(_) => first,
        Op::Concat(_) | Op::Variadic(_) if node.inputs.len() == 1 => first,
        Op::Transpose(t) => {
            let rank = y.shape.as_ref()?.len();
            let identity = match &t.perm {
                None => rank <= 1,
                Some(p) => p
                    .iter()
                    .enumerate()
                    .all(|(i, &a)| i64::try_from(i) == Ok(a)),
            };
            first.filter(|_| identity)
        }
        Op::Slice(s) => {
            // The same shape with forward steps takes every element in order; a negative
            // step would reverse them.
            let forward = s.attrs.is_some()
                || input(node, 4).is_none()
                || const_ints(graph, node, 4).is_some_and(|steps| steps.iter().all(|&k| k > 0));
            first.filter(|_| forward)
        }
        Op::Pad(p) => {
            let pads = match &p.attrs {
                Some((pads, _)) => pads.clone(),
                None => const_ints(graph, node, 1)?,
            };
            first.filter(|_| pads.iter().all(|&v| v == 0))
        }
        Op::Binary(_) => {
            let b = input(node, 1)?;
            let candidates: &[(ValueId, ValueId, f64)] = match node.op_type.as_str() {
                "Add" => &[(x, b, 0.0), (b, x, 0.0)],
                "Mul" => &[(x, b, 1.0), (b, x, 1.0)],
                "Sub" => &[(x, b, 0.0)],
                "Div" => &[(x, b, 1.0)],
                _ => &[],
            };
            candidates
                .iter()
                .find(|&&(kept, c, neutral)| same(kept) && constant_all(graph, c, neutral))
                .map(|&(kept, _, _)| kept)
        }
        _ => None,
    }
}

/// Removes no-op nodes.
pub fn remove_noops(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let Matcher {
        producer,
        uses,
        is_guard,
        ..
    } = Matcher::new(&graph);
    let mut map = unchanged(&graph);
    let resolve = |map: &[ValueId], mut v: ValueId| {
        while map[v.index()] != v {
            v = map[v.index()];
        }
        v
    };
    let mut remove = vec![false; graph.nodes.len()];
    for i in 0..graph.nodes.len() {
        let node = &graph.nodes[i];
        let (Some(x), Some(y)) = (passthrough(&graph, node), output(node, 0)) else {
            continue;
        };
        let other_outputs_used = node
            .outputs
            .iter()
            .skip(1)
            .flatten()
            .any(|o| uses[o.index()] > 0 || is_guard[o.index()]);
        if other_outputs_used || graph.value(y).constant.is_some() {
            continue;
        }
        let x = resolve(&map, x);
        if !graph.outputs.contains(&y) {
            map[y.index()] = x;
            remove[i] = true;
            continue;
        }
        // `y` is a graph output: the producer of `x` writes `y` instead, if `x` is its own.
        let Some(p) = producer[x.index()].filter(|&p| !remove[p]) else {
            continue;
        };
        if graph.outputs.contains(&x) || is_guard[x.index()] {
            continue;
        }
        let Some(slot) = graph.nodes[p].outputs.iter().position(|&o| o == Some(x)) else {
            continue;
        };
        graph.nodes[p].outputs[slot] = Some(y);
        map[x.index()] = y;
        remove[i] = true;
    }
    let resolved: Vec<ValueId> = (0..map.len()).map(|v| resolve(&map, map[v])).collect();
    rewire(&mut graph, &resolved);
    retain(&mut graph, &remove);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{before_after, int_attr, ModelBuilder};

    #[test]
    fn noops_go_and_outputs_keep_their_names() {
        let graph = ModelBuilder::new()
            .input("x", &[2, 3])
            .floats("one", &[3], &[1.0, 1.0, 1.0])
            .floats("zero", &[], &[0.0])
            .ints("shape", &[2], &[2, 3])
            .node("Identity", &["x"], &["a"])
            .transpose("a", "b", &[0, 1])
            .node_with("Cast", &["b"], &["c"], vec![int_attr("to", 1)])
            .node("Mul", &["c", "one"], &["d"])
            .node("Reshape", &["d", "shape"], &["e"])
            .node("Relu", &["e"], &["f"])
            .node("Sub", &["f", "zero"], &["g"])
            .node("Dropout", &["g"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, remove_noops);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 1);
        assert_eq!(after.value(after.outputs[0]).name, "y");
    }

    #[test]
    fn look_alikes_stay() {
        let graph = ModelBuilder::new()
            .input("x", &[2, 2])
            .floats("zeros", &[2, 2], &[0.0; 4])
            .floats("half", &[], &[0.5])
            .ints("start", &[1], &[-1])
            .ints("end", &[1], &[i64::MIN])
            .ints("axis", &[1], &[1])
            .ints("step", &[1], &[-1])
            .transpose("x", "a", &[1, 0])
            .node("Slice", &["a", "start", "end", "axis", "step"], &["b"])
            .node("Mul", &["b", "half"], &["c"])
            .node("Add", &["c", "zeros"], &["d"])
            .node("Identity", &["x"], &["y"])
            .output("d")
            .output("y")
            .build();
        let n = graph.nodes.len();
        let (after, text) = before_after(graph, remove_noops);
        insta::assert_snapshot!(text);
        // Only the Add of zeros of the same shape goes; the Identity from a graph input to a
        // graph output stays.
        assert_eq!(after.nodes.len(), n - 1);
    }

    #[test]
    fn an_add_that_broadcasts_stays() {
        let graph = ModelBuilder::new()
            .input("x", &[3])
            .floats("zeros", &[2, 3], &[0.0; 6])
            .node("Add", &["x", "zeros"], &["y"])
            .output("y")
            .build();
        let after = remove_noops(graph, &PassCx::default()).expect("runs");
        assert_eq!(after.nodes.len(), 1);
    }
}
