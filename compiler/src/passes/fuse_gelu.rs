//! Recognizes GELU as PyTorch exports it before opset 20 and replaces it with one `Gelu` node:
//! the exact form `0.5 * x * (1 + Erf(x / sqrt(2)))` (or `x * (1 / sqrt(2))` inside) and the
//! tanh approximation `0.5 * x * (1 + Tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))` (the cube as
//! `Pow(x, 3)` or `x * x * x`), whose `Gelu` has `approximate = "tanh"`. The three factors of
//! the outer product may come in any order and grouping. Constants match at float32
//! precision; every intermediate must have no reader outside the pattern. Anything else is
//! left alone. Float32 and float64 only.

use std::f64::consts::{FRAC_1_SQRT_2, PI, SQRT_2};

use super::pattern::{fuse, input, new_node, output, string_attr, Fusion, Matcher};
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, ValueId};

/// The cubic coefficient of the tanh approximation.
const CUBIC: f64 = 0.044_715;

/// If `t` is `Erf(x / sqrt 2)`, the nodes computing it from `x`.
fn erf_of(m: &Matcher<'_>, t: ValueId, x: ValueId) -> Option<Vec<usize>> {
    let (ei, erf) = m.op(t, "Erf")?;
    let arg = input(erf, 0)?;
    if let Some((di, div)) = m.op(arg, "Div") {
        if input(div, 0) == Some(x) && m.is_scalar(input(div, 1)?, SQRT_2) {
            return Some(vec![ei, di]);
        }
    }
    let (mi, mul) = m.op(arg, "Mul")?;
    Matcher::operand_pairs(mul)
        .into_iter()
        .any(|(a, c)| a == x && m.is_scalar(c, FRAC_1_SQRT_2))
        .then(|| vec![ei, mi])
}

/// If `cube` is `x^3` (`Pow(x, 3)` or `x * x * x`), the nodes computing it.
fn cube_of(m: &Matcher<'_>, cube: ValueId, x: ValueId) -> Option<Vec<usize>> {
    if let Some((pi, pow)) = m.op(cube, "Pow") {
        return (input(pow, 0) == Some(x) && m.is_scalar(input(pow, 1)?, 3.0)).then(|| vec![pi]);
    }
    let outer = m.producer[cube.index()]?;
    m.product3(cube)
        .into_iter()
        .find(|(factors, _)| factors.iter().all(|&f| f == x))
        .map(|(_, inner)| vec![inner, outer])
}

/// If `t` is `Tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))`, the nodes computing it from `x`.
fn tanh_of(m: &Matcher<'_>, t: ValueId, x: ValueId) -> Option<Vec<usize>> {
    let (ti, tanh) = m.op(t, "Tanh")?;
    let (ki, scale) = m.op(input(tanh, 0)?, "Mul")?;
    Matcher::operand_pairs(scale)
        .into_iter()
        .find_map(|(s, c)| {
            if !m.is_scalar(c, (2.0 / PI).sqrt()) {
                return None;
            }
            let (si, sum) = m.op(s, "Add")?;
            Matcher::operand_pairs(sum)
                .into_iter()
                .find_map(|(a, term)| {
                    if a != x {
                        return None;
                    }
                    let (mi, mul) = m.op(term, "Mul")?;
                    Matcher::operand_pairs(mul)
                        .into_iter()
                        .find_map(|(cube, k)| {
                            if !m.is_scalar(k, CUBIC) {
                                return None;
                            }
                            let mut nodes = cube_of(m, cube, x)?;
                            nodes.extend([ti, ki, si, mi]);
                            Some(nodes)
                        })
                })
        })
}

/// Replaces written-out GELU with `Gelu` nodes.
pub fn fuse_gelu(graph: Graph, _cx: &PassCx) -> Result<Graph> {
    Ok(fuse(graph, |m, end| {
        let last = &m.graph.nodes[end];
        if last.op_type != "Mul" || !last.domain.is_empty() {
            return None;
        }
        let y = output(last, 0)?;
        // 16-bit floats would round each step of the written-out form; the op does not.
        if !matches!(m.graph.value(y).dtype, Some(DType::F32 | DType::F64)) {
            return None;
        }
        for (factors, inner) in m.product3(y) {
            for (h, x, p) in [
                (0, 1, 2),
                (0, 2, 1),
                (1, 0, 2),
                (1, 2, 0),
                (2, 0, 1),
                (2, 1, 0),
            ] {
                let (half, x, plus) = (factors[h], factors[x], factors[p]);
                if !m.is_scalar(half, 0.5) {
                    continue;
                }
                let Some((ai, add)) = m.op(plus, "Add") else {
                    continue;
                };
                let found = Matcher::operand_pairs(add)
                    .into_iter()
                    .find_map(|(t, one)| {
                        if !m.is_scalar(one, 1.0) {
                            return None;
                        }
                        erf_of(m, t, x)
                            .map(|nodes| (nodes, "none"))
                            .or_else(|| tanh_of(m, t, x).map(|nodes| (nodes, "tanh")))
                    });
                let Some((mut nodes, approximate)) = found else {
                    continue;
                };
                let node = new_node(
                    format!("{}/gelu", last.name),
                    "Gelu",
                    vec![Some(x)],
                    vec![Some(y)],
                    vec![string_attr("approximate", approximate)],
                    last,
                )?;
                nodes.extend([ai, inner, end]);
                return Some(Fusion { nodes, node });
            }
        }
        None
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::testing::{before_after, ModelBuilder};

    /// `0.5 * x * (1 + Erf(x / sqrt2))`, with `extra` a graph output too.
    fn erf_gelu(sqrt2: f32, extra: &[&str]) -> Graph {
        let mut b = ModelBuilder::new()
            .input("x", &[2, 3])
            .floats("sqrt2", &[], &[sqrt2])
            .floats("one", &[], &[1.0])
            .floats("half", &[], &[0.5])
            .node("Div", &["x", "sqrt2"], &["a"])
            .node("Erf", &["a"], &["b"])
            .node("Add", &["b", "one"], &["c"])
            .node("Mul", &["x", "c"], &["d"])
            .node("Mul", &["d", "half"], &["y"])
            .output("y");
        for name in extra {
            b = b.output(name);
        }
        b.build()
    }

    #[test]
    fn the_erf_form_becomes_gelu() {
        let (after, text) = before_after(erf_gelu(std::f32::consts::SQRT_2, &[]), fuse_gelu);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 1);
    }

    #[test]
    fn the_tanh_form_becomes_gelu_tanh() {
        let graph = ModelBuilder::new()
            .input("x", &[4])
            .floats("three", &[], &[3.0])
            .floats("k", &[], &[0.044_715])
            .floats("c", &[], &[0.797_884_6])
            .floats("one", &[], &[1.0])
            .floats("half", &[], &[0.5])
            .node("Mul", &["x", "half"], &["h"])
            .node("Pow", &["x", "three"], &["p"])
            .node("Mul", &["k", "p"], &["q"])
            .node("Add", &["x", "q"], &["s"])
            .node("Mul", &["s", "c"], &["u"])
            .node("Tanh", &["u"], &["t"])
            .node("Add", &["one", "t"], &["v"])
            .node("Mul", &["h", "v"], &["y"])
            .output("y")
            .build();
        let (after, text) = before_after(graph, fuse_gelu);
        insta::assert_snapshot!(text);
        assert_eq!(after.nodes.len(), 1);
    }

    #[test]
    fn another_constant_or_a_shared_value_stays() {
        for graph in [
            erf_gelu(1.5, &[]),
            erf_gelu(std::f32::consts::SQRT_2, &["b"]),
        ] {
            let after = fuse_gelu(graph, &PassCx::default()).expect("runs");
            assert_eq!(after.nodes.len(), 5);
        }
    }
}
