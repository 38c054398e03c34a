//! Recognizes layer normalization as PyTorch exports it before opset 17 and replaces it with
//! one `LayerNormalization` node:
//!
//! ```text
//! mean = ReduceMean(x)            d = Sub(x, mean)          var = ReduceMean(Pow(d, 2))
//! y = Div(d, Sqrt(Add(var, eps))) * scale + bias          (the bias Add is optional)
//! ```
//!
//! Both means keep their dims and reduce the same trailing axes (the normalized axes);
//! `Pow(d, 2)` may be `d * d`; `scale` and `bias` are constants with one value per element of
//! the normalized shape; `eps` is a constant scalar. Every intermediate must have no reader
//! outside the pattern. Anything else is left alone.

use super::pattern::{float_attr, fuse, input, int_attr, new_node, output, Fusion, Matcher};
use super::PassCx;
use crate::error::Result;
use crate::ir::{Graph, ValueId};
use crate::ops::Op;

/// The normalized axis of a keepdims `ReduceMean` node reading `x`: the first of the trailing
/// axes it reduces (the fewest that explain its output shape).
fn mean_axis(m: &Matcher<'_>, mean: ValueId, x: ValueId) -> Option<(usize, usize)> {
    let (index, node) = m.op(mean, "ReduceMean")?;
    if input(node, 0) != Some(x) || !matches!(&node.op, Some(Op::Reduce(r)) if r.keepdims) {
        return None;
    }
    let (s, o) = (
        m.graph.value(x).shape.as_ref()?,
        m.graph.value(mean).shape.as_ref()?,
    );
    if s.len() != o.len() || s == o {
        return None;
    }
    let axis = (0..s.len())
        .rev()
        .find(|&a| o[a..].iter().all(|&d| d == 1) && o[..a] == s[..a])?;
    Some((axis, index))
}

/// If `n` is `(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)`, the nodes computing it,
/// `x`, the normalized axis and `eps`.
fn normalized(m: &Matcher<'_>, n: ValueId) -> Option<(Vec<usize>, ValueId, usize, f64)> {
    let (div_i, div) = m.op(n, "Div")?;
    let d = input(div, 0)?;
    let (sqrt_i, sqrt) = m.op(input(div, 1)?, "Sqrt")?;
    let (add_i, add) = m.op(input(sqrt, 0)?, "Add")?;
    let (var, eps) = Matcher::operand_pairs(add)
        .into_iter()
        .find_map(|(var, e)| Some((var, m.scalar(e)?)))?;
    let (sub_i, sub) = m.op(d, "Sub")?;
    let (x, mean) = (input(sub, 0)?, input(sub, 1)?);
    let (axis, mean_i) = mean_axis(m, mean, x)?;
    let (var_i, var_node) = m.op(var, "ReduceMean")?;
    let square = input(var_node, 0)?;
    if mean_axis(m, var, square)? != (axis, var_i) {
        return None;
    }
    let square_i = if let Some((i, pow)) = m.op(square, "Pow") {
        (input(pow, 0) == Some(d) && m.is_scalar(input(pow, 1)?, 2.0)).then_some(i)?
    } else {
        let (i, mul) = m.op(square, "Mul")?;
        (input(mul, 0) == Some(d) && input(mul, 1) == Some(d)).then_some(i)?
    };
    let nodes = vec![mean_i, sub_i, square_i, var_i, add_i, sqrt_i, div_i];
    Some((nodes, x, axis, eps))
}

/// `(normalized value, constant operand, the Mul or Add node)` for a binary node by a
/// constant.
fn by_constant(m: &Matcher<'_>, v: ValueId, op_type: &str) -> Vec<(ValueId, ValueId, usize)> {
    let Some((index, node)) = m.op(v, op_type) else {
        return Vec::new();
    };
    Matcher::operand_pairs(node)
        .into_iter()
        .filter(|&(_, c)| m.graph.value(c).constant.is_some())
        .map(|(a, c)| (a, c, index))
        .collect()
}

/// The matches ending at node `end`: with a bias Add when `with_bias`, else ending at the
/// scale Mul.
fn find(m: &Matcher<'_>, end: usize, with_bias: bool) -> Option<Fusion> {
    let last = &m.graph.nodes[end];
    let y = output(last, 0)?;
    // `n * scale + bias` or `n * scale`.
    let mut affine: Vec<(ValueId, ValueId, Option<ValueId>, Vec<usize>)> = Vec::new();
    if with_bias {
        for (s, bias, add_i) in by_constant(m, y, "Add") {
            for (n, scale, mul_i) in by_constant(m, s, "Mul") {
                affine.push((n, scale, Some(bias), vec![mul_i, add_i]));
            }
        }
    } else {
        for (n, scale, mul_i) in by_constant(m, y, "Mul") {
            affine.push((n, scale, None, vec![mul_i]));
        }
    }
    affine.into_iter().find_map(|(n, scale, bias, tail)| {
        let (mut nodes, x, axis, eps) = normalized(m, n)?;
        nodes.extend(tail);
        let node = new_node(
            format!("{}/layer_norm", last.name),
            "LayerNormalization",
            vec![Some(x), Some(scale), bias],
            vec![Some(y)],
            vec![
                int_attr("axis", i64::try_from(axis).ok()?),
                float_attr("epsilon", eps as f32),
            ],
            last,
        )?;
        Some(Fusion { nodes, node })
    })
}

/// Replaces written-out layer normalization with `LayerNormalization` nodes (those with a
/// bias first, so that a scale Mul is not taken for the end of a pattern that goes on).
pub fn fuse_layer_norm(graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let graph = fuse(graph, |m, end| find(m, end, true));
    Ok(fuse(graph, |m, end| find(m, end, false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{before_after, ints_attr, ModelBuilder};

    fn layer_norm(square: &str, bias: bool, axes: &[i64]) -> Graph {
        let mut b = ModelBuilder::new()
            .input("x", &[2, 4])
            .floats("two", &[], &[2.0])
            .floats("eps", &[], &[1e-5])
            .floats("gamma", &[4], &[1.0, 2.0, 3.0, 4.0])
            .floats("beta", &[4], &[0.5, 0.5, 0.5, 0.5])
            .node_with(
                "ReduceMean",
                &["x"],
                &["mean"],
                vec![ints_attr("axes", axes)],
            )
            .node("Sub", &["x", "mean"], &["d"]);
        b = match square {
            "pow" => b.node("Pow", &["d", "two"], &["sq"]),
            _ => b.node("Mul", &["d", "d"], &["sq"]),
        };
        b = b
            .node_with(
                "ReduceMean",
                &["sq"],
                &["var"],
                vec![ints_attr("axes", axes)],
            )
            .node("Add", &["var", "eps"], &["ve"])
            .node("Sqrt", &["ve"], &["sd"])
            .node("Div", &["d", "sd"], &["n"]);
        if bias {
            b.node("Mul", &["n", "gamma"], &["s"])
                .node("Add", &["s", "beta"], &["y"])
        } else {
            b.node("Mul", &["gamma", "n"], &["y"])
        }
        .output("y")
        .build()
    }

    #[test]
    fn the_pytorch_export_becomes_layer_normalization() {
        let (after, text) = before_after(layer_norm("pow", true, &[-1]), fuse_layer_norm);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 1);
        let after =
            fuse_layer_norm(layer_norm("mul", false, &[1]), &PassCx::default()).expect("runs");
        assert_eq!(
            after.op_histogram(),
            [("LayerNormalization".to_string(), 1)]
        );
    }

    #[test]
    fn leading_axes_stay() {
        let after =
            fuse_layer_norm(layer_norm("pow", true, &[0]), &PassCx::default()).expect("runs");
        assert_eq!(after.nodes.len(), 9);
    }
}
