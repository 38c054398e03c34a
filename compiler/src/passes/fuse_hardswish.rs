//! Recognizes hard-swish written out as elementwise ops and replaces it with one `HardSwish`
//! node: `x * Clip(x + 3, 0, 6) / 6` (Paddle and PyTorch exports) and `x * HardSigmoid(x)`
//! with alpha 1/6, beta 1/2. Every intermediate must have this one consumer; otherwise, or
//! when a constant differs, the graph is left alone.

use super::pattern::{attr_f32, fuse, input, new_node, other, output, Fusion, Matcher};
use super::PassCx;
use crate::error::Result;
use crate::ir::{Graph, ValueId};

/// If node `end` ends a hard-swish of some `x`, the nodes to remove and `x`.
fn match_at(m: &Matcher<'_>, end: usize) -> Option<(Vec<usize>, ValueId)> {
    let node = &m.graph.nodes[end];
    match node.op_type.as_str() {
        // x * HardSigmoid(x) with alpha 1/6, beta 1/2.
        "Mul" => Matcher::operand_pairs(node).into_iter().find_map(|(x, h)| {
            let (hi, hs) = m.op(h, "HardSigmoid")?;
            let alpha = attr_f32(hs, "alpha").unwrap_or(0.2);
            let beta = attr_f32(hs, "beta").unwrap_or(0.5);
            ((alpha - 1.0 / 6.0).abs() < 1e-6 && beta == 0.5 && input(hs, 0) == Some(x))
                .then(|| (vec![hi, end], x))
        }),
        // (x * Clip(x + 3, 0, 6)) / 6.
        "Div" => {
            if m.scalar(input(node, 1)?) != Some(6.0) {
                return None;
            }
            let (mi, mul) = m.op(input(node, 0)?, "Mul")?;
            Matcher::operand_pairs(mul)
                .into_iter()
                .find_map(|(x, clip_out)| {
                    let (ci, clip) = m.op(clip_out, "Clip")?;
                    let (lo, hi) = if clip.opset < 11 {
                        (
                            attr_f32(clip, "min").map(f64::from),
                            attr_f32(clip, "max").map(f64::from),
                        )
                    } else {
                        (m.scalar(input(clip, 1)?), m.scalar(input(clip, 2)?))
                    };
                    if (lo, hi) != (Some(0.0), Some(6.0)) {
                        return None;
                    }
                    let (ai, add) = m.op(input(clip, 0)?, "Add")?;
                    (m.scalar(other(add, x)?) == Some(3.0)).then(|| (vec![ai, ci, mi, end], x))
                })
        }
        _ => None,
    }
}

/// Replaces written-out hard-swish with `HardSwish` nodes.
pub fn fuse_hardswish(graph: Graph, _cx: &PassCx) -> Result<Graph> {
    Ok(fuse(graph, |m, end| {
        let (nodes, x) = match_at(m, end)?;
        let last = &m.graph.nodes[end];
        let node = new_node(
            format!("{}/hardswish", last.name),
            "HardSwish",
            vec![Some(x)],
            vec![output(last, 0)],
            Vec::new(),
            last,
        )?;
        Some(Fusion { nodes, node })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{before_after, float_attr, ModelBuilder};
    use crate::passes::{run_passes, OptLevel};

    fn model(path: &str, dims: &[(&str, usize)]) -> Graph {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let mut builder = crate::Builder::new(path);
        for (n, v) in dims {
            builder = builder.dim(*n, *v);
        }
        let cx = PassCx {
            opt_level: OptLevel::O1,
            dims: dims.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            ..PassCx::default()
        };
        run_passes(builder.load().expect("loads"), &cx)
            .expect("compiles")
            .0
    }

    fn count(graph: &Graph, op: &str) -> usize {
        graph
            .op_histogram()
            .iter()
            .find(|(o, _)| o == op)
            .map_or(0, |(_, n)| *n)
    }

    #[test]
    fn both_written_forms_become_hardswish() {
        let graph = ModelBuilder::new()
            .input("x", &[2, 3])
            .floats("three", &[], &[3.0])
            .floats("zero", &[], &[0.0])
            .floats("six", &[], &[6.0])
            .node("Add", &["x", "three"], &["a"])
            .node("Clip", &["a", "zero", "six"], &["c"])
            .node("Mul", &["x", "c"], &["m"])
            .node("Div", &["m", "six"], &["h"])
            .node_with(
                "HardSigmoid",
                &["h"],
                &["s"],
                vec![float_attr("alpha", 1.0 / 6.0), float_attr("beta", 0.5)],
            )
            .node("Mul", &["s", "h"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, fuse_hardswish);
        insta::assert_snapshot!(text);
        assert_eq!(after.op_histogram(), [("HardSwish".to_string(), 2)]);
    }

    #[test]
    fn paddle_hardswish_becomes_one_node() {
        let graph = model(
            "../tests/data/models/ppocr_cls/model.onnx",
            &[("x.0", 1), ("x.2", 48), ("x.3", 192)],
        );
        let (clips, divs) = (count(&graph, "Clip"), count(&graph, "Div"));
        assert!(clips > 0 && divs > 0);
        let after = fuse_hardswish(graph, &PassCx::default()).expect("runs");
        assert_eq!(count(&after, "HardSwish"), clips);
        assert_eq!(count(&after, "Clip") + count(&after, "Div"), 0);
    }

    #[test]
    fn graphs_without_the_pattern_are_unchanged() {
        let graph = model("../tests/data/tiny_cnn/model.onnx", &[]);
        let before = graph.op_histogram();
        let after = fuse_hardswish(graph, &PassCx::default()).expect("runs");
        assert_eq!(after.op_histogram(), before);
    }
}
