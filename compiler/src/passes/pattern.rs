//! What the rewriting passes share: a view of the graph for matching (who produces a value,
//! how often it is read, what constant it holds), the fusion driver that checks a match and
//! splices in its replacement, and helpers to rewire value uses and drop nodes.

use super::infer_shapes_cx;
use crate::ir::{DType, Graph, Node, Tensor, Value, ValueId};
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::AttributeProto;
use crate::ops::{self, NodeCx};

/// Whether a node reads or writes a value whose shape is only known at run time (rewrites
/// that bake shapes into new nodes leave such nodes as they are).
pub(super) fn touches_dynamic(graph: &Graph, node: &crate::ir::Node) -> bool {
    node.inputs
        .iter()
        .chain(&node.outputs)
        .flatten()
        .any(|&v| graph.value(v).is_dynamic())
}

/// Whether the only extents of a node's values known just at run time are the rows of its
/// first input and its outputs (a 2-D product over a varying number of rows).
pub(super) fn rows_vary_only(graph: &Graph, node: &crate::ir::Node) -> bool {
    let rows_only = |v: crate::ir::ValueId| {
        let value = graph.value(v);
        value.shape.as_ref().is_some_and(|s| s.len() == 2)
            && value.dynamic.iter().skip(1).all(|&d| !d)
    };
    node.inputs
        .first()
        .copied()
        .flatten()
        .is_some_and(rows_only)
        && node
            .inputs
            .iter()
            .skip(1)
            .flatten()
            .all(|&v| !graph.value(v).is_dynamic())
        && node.outputs.iter().flatten().all(|&v| rows_only(v))
}

/// The node producing each value, if any.
pub(super) fn producers(graph: &Graph) -> Vec<Option<usize>> {
    let mut producer = vec![None; graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for out in node.outputs.iter().flatten() {
            producer[out.index()] = Some(i);
        }
    }
    producer
}

/// Adds a constant value.
pub(super) fn add_constant(graph: &mut Graph, name: String, tensor: Tensor) -> ValueId {
    graph.add_value(Value {
        dynamic: Vec::new(),
        name,
        dtype: Some(tensor.dtype),
        shape: Some(tensor.shape.clone()),
        declared: None,
        range: None,
        syms: Vec::new(),
        constant: Some(tensor),
    })
}

/// Adds an intermediate value of a known type and shape (what a pass's new node computes).
pub(super) fn add_typed(
    graph: &mut Graph,
    name: String,
    dtype: Option<DType>,
    shape: Option<Vec<usize>>,
) -> ValueId {
    graph.add_value(Value {
        dynamic: Vec::new(),
        name,
        dtype,
        shape,
        declared: None,
        range: None,
        syms: Vec::new(),
        constant: None,
    })
}

/// Input `i` of a node, if present.
pub(super) fn input(node: &Node, i: usize) -> Option<ValueId> {
    node.inputs.get(i).copied().flatten()
}

/// Output `i` of a node, if present.
pub(super) fn output(node: &Node, i: usize) -> Option<ValueId> {
    node.outputs.get(i).copied().flatten()
}

/// A float attribute as the model wrote it.
pub(super) fn attr_f32(node: &Node, name: &str) -> Option<f32> {
    node.attributes
        .iter()
        .find(|a| a.name() == name)
        .map(|a| a.f())
}

/// An int attribute as the model wrote it.
pub(super) fn attr_i64(node: &Node, name: &str) -> Option<i64> {
    node.attributes
        .iter()
        .find(|a| a.name() == name)
        .map(|a| a.i())
}

/// The other operand of a two-input node, given one of them.
pub(super) fn other(node: &Node, x: ValueId) -> Option<ValueId> {
    match (input(node, 0), input(node, 1)) {
        (Some(a), Some(b)) if a == x => Some(b),
        (Some(a), Some(b)) if b == x => Some(a),
        _ => None,
    }
}

/// Whether `got` is `want` as float32 stores it: within a few units in the last place, so
/// that `1.4142135` matches `sqrt(2)` and `0.7978846` matches `sqrt(2 / pi)`.
pub(super) fn near(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-6 * want.abs().max(f64::MIN_POSITIVE)
}

/// The graph as pattern matchers see it.
pub(super) struct Matcher<'a> {
    /// The graph.
    pub(super) graph: &'a Graph,
    /// The node producing each value.
    pub(super) producer: Vec<Option<usize>>,
    /// How often each value is read (graph outputs count).
    pub(super) uses: Vec<usize>,
    /// Whether each value is a guard condition of some node.
    pub(super) is_guard: Vec<bool>,
}

impl<'a> Matcher<'a> {
    /// Indexes `graph`.
    pub(super) fn new(graph: &'a Graph) -> Self {
        let mut is_guard = vec![false; graph.values.len()];
        for node in &graph.nodes {
            for (g, _) in &node.guards {
                is_guard[g.index()] = true;
            }
        }
        Self {
            graph,
            producer: producers(graph),
            uses: graph.use_counts(),
            is_guard,
        }
    }

    /// The node producing `v` if its op type is `op_type` (default domain), with its index.
    pub(super) fn op(&self, v: ValueId, op_type: &str) -> Option<(usize, &'a Node)> {
        let index = self.producer[v.index()]?;
        let node = &self.graph.nodes[index];
        (node.op_type == op_type && node.domain.is_empty()).then_some((index, node))
    }

    /// The value of a one-element constant.
    pub(super) fn scalar(&self, v: ValueId) -> Option<f64> {
        let t = self.graph.value(v).constant.as_ref()?;
        let values = t.to_f64s();
        (values.len() == 1).then(|| values[0])
    }

    /// Whether `v` is a one-element constant near `want` (see [`near`]).
    pub(super) fn is_scalar(&self, v: ValueId, want: f64) -> bool {
        self.scalar(v).is_some_and(|got| near(got, want))
    }

    /// The two operands of a binary node, in both orders.
    pub(super) fn operand_pairs(node: &Node) -> Vec<(ValueId, ValueId)> {
        match (input(node, 0), input(node, 1)) {
            (Some(a), Some(b)) => vec![(a, b), (b, a)],
            _ => Vec::new(),
        }
    }

    /// The ways to read `v` as a product of three factors through one inner `Mul`
    /// (`(a * b) * c` or `a * (b * c)`): the factors and the inner node, in every order of the
    /// outer operands.
    pub(super) fn product3(&self, v: ValueId) -> Vec<([ValueId; 3], usize)> {
        let Some((_, outer)) = self.op(v, "Mul") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (a, b) in Self::operand_pairs(outer) {
            if let Some((inner_index, inner)) = self.op(a, "Mul") {
                for (a1, a2) in Self::operand_pairs(inner) {
                    out.push(([a1, a2, b], inner_index));
                }
            }
        }
        out
    }
}

/// A match: every node it covers (its last node included) and the node that replaces them.
pub(super) struct Fusion {
    /// Indices of the matched nodes.
    pub(super) nodes: Vec<usize>,
    /// The replacement, computing the last matched node's first output.
    pub(super) node: Node,
}

/// Builds a node with its op parsed from its attributes; `None` when the op rejects them.
pub(super) fn new_node(
    name: String,
    op_type: &str,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    attributes: Vec<crate::onnx::proto::AttributeProto>,
    like: &Node,
) -> Option<Node> {
    let mut node = Node {
        name,
        op_type: op_type.into(),
        domain: String::new(),
        opset: like.opset,
        inputs,
        outputs,
        attributes,
        op: None,
        guards: like.guards.clone(),
    };
    node.op = Some(ops::parse(&NodeCx { node: &node })?.ok()?);
    Some(node)
}

/// Runs `find` at every node (as the last node of a pattern) and applies each match that is
/// safe: every matched node runs under the same guards, no node belongs to an earlier match,
/// no value computed inside the match is read outside it or is a graph output (only the
/// last node's first output leaves), and the replacement infers the same type and shape as
/// that output. Anything else leaves the graph alone.
pub(super) fn fuse(
    mut graph: Graph,
    find: impl Fn(&Matcher<'_>, usize) -> Option<Fusion>,
) -> Graph {
    let mut remove = vec![false; graph.nodes.len()];
    let mut replacements: Vec<(usize, Node)> = Vec::new();
    {
        let m = Matcher::new(&graph);
        for end in 0..graph.nodes.len() {
            let Some(fusion) = find(&m, end) else {
                continue;
            };
            if fusion.nodes.iter().any(|&i| remove[i]) || !fusion.nodes.contains(&end) {
                continue;
            }
            if !safe(&m, end, &fusion) {
                continue;
            }
            for &i in &fusion.nodes {
                remove[i] = true;
            }
            replacements.push((end, fusion.node));
        }
    }
    splice(&mut graph, &remove, replacements);
    graph
}

/// The checks of [`fuse`] on one match.
fn safe(m: &Matcher<'_>, end: usize, fusion: &Fusion) -> bool {
    let graph = m.graph;
    let last = &graph.nodes[end];
    let Some(result) = output(last, 0) else {
        return false;
    };
    if fusion
        .nodes
        .iter()
        .any(|&i| graph.nodes[i].guards != last.guards)
        || fusion.node.outputs != [Some(result)]
        || last.outputs.iter().skip(1).any(Option::is_some)
    {
        return false;
    }
    // Reads of each value from inside the match.
    let mut inner_reads = std::collections::HashMap::<ValueId, usize>::new();
    for &i in &fusion.nodes {
        for &v in graph.nodes[i].inputs.iter().flatten() {
            *inner_reads.entry(v).or_default() += 1;
        }
    }
    let escapes = |v: ValueId| {
        graph.outputs.contains(&v)
            || inner_reads.get(&v).copied().unwrap_or(0) != m.uses[v.index()]
            || m.is_guard[v.index()]
    };
    if fusion
        .nodes
        .iter()
        .filter(|&&i| i != end)
        .flat_map(|&i| graph.nodes[i].outputs.iter().flatten())
        .any(|&v| escapes(v))
    {
        return false;
    }
    let (Some(op), Ok(cx)) = (&fusion.node.op, infer_shapes_cx(graph, &fusion.node, false)) else {
        return false;
    };
    let want = graph.value(result);
    op.infer(&cx).is_ok_and(|types| {
        types
            .first()
            .is_some_and(|t| Some(t.dtype) == want.dtype && Some(&t.shape) == want.shape.as_ref())
    })
}

/// Rebuilds the node list: each replacement takes its index, removed nodes go.
pub(super) fn splice(graph: &mut Graph, remove: &[bool], mut replacements: Vec<(usize, Node)>) {
    replacements.sort_by_key(|(at, _)| *at);
    let mut replacements = replacements.into_iter().peekable();
    let mut out = Vec::with_capacity(graph.nodes.len());
    for (i, node) in std::mem::take(&mut graph.nodes).into_iter().enumerate() {
        if replacements.peek().is_some_and(|(at, _)| *at == i) {
            if let Some((_, new)) = replacements.next() {
                out.push(new);
            }
        } else if !remove.get(i).copied().unwrap_or(false) {
            out.push(node);
        }
    }
    graph.nodes = out;
}

/// Drops the nodes marked in `remove`.
pub(super) fn retain(graph: &mut Graph, remove: &[bool]) {
    splice(graph, remove, Vec::new());
}

/// The value map that changes nothing, for [`rewire`].
pub(super) fn unchanged(graph: &Graph) -> Vec<ValueId> {
    graph.value_ids().collect()
}

/// Makes every reader of a value (node inputs and guards) read its replacement instead;
/// `map[v]` is `v`'s replacement (itself when unchanged), chains already resolved.
pub(super) fn rewire(graph: &mut Graph, map: &[ValueId]) {
    for node in &mut graph.nodes {
        for v in node.inputs.iter_mut().flatten() {
            *v = map[v.index()];
        }
        for (g, _) in &mut node.guards {
            *g = map[g.index()];
        }
    }
}

/// An ints attribute.
pub(super) fn ints_attr(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// An int attribute.
pub(super) fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// A float attribute.
pub(super) fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// A string attribute.
pub(super) fn string_attr(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_accepts_float32_roundings_only() {
        let f32_of = |v: f64| f64::from(v as f32);
        assert!(near(
            f32_of(std::f64::consts::SQRT_2),
            std::f64::consts::SQRT_2
        ));
        assert!(near(
            f32_of((2.0 / std::f64::consts::PI).sqrt()),
            (2.0 / std::f64::consts::PI).sqrt()
        ));
        assert!(near(f32_of(0.044_715), 0.044_715));
        assert!(!near(1.414, std::f64::consts::SQRT_2));
        assert!(!near(0.5001, 0.5));
        assert!(near(0.0, 0.0) && !near(1e-30, 0.0));
    }
}
