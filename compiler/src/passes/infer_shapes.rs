//! Infers every value's type and shape in topological order, and folds nodes whose inputs
//! are all constant (Constant nodes, shape arithmetic) into constant values, removing them.

use super::PassCx;
use crate::error::{CompileError, Result};
use crate::ir::{Graph, Node, Value};
use crate::ops::{Op, OpCx, Operand};

/// Builds the hooks' view of a node's operands.
pub fn op_cx<'a>(graph: &'a Graph, node: &Node, with_outputs: bool) -> Result<OpCx<'a>> {
    let operand = |v: &'a Value| -> Result<Operand<'a>> {
        match (v.dtype, v.shape.as_deref()) {
            (Some(dtype), Some(shape)) => Ok(Operand {
                dtype,
                shape,
                constant: v.constant.as_ref(),
            }),
            _ => Err(CompileError::shape(format!(
                "internal: value \"{}\" has no inferred type",
                v.name
            ))),
        }
    };
    let inputs = node
        .inputs
        .iter()
        .map(|i| i.map(|id| operand(graph.value(id))).transpose())
        .collect::<Result<_>>()?;
    let outputs = if with_outputs {
        node.outputs
            .iter()
            .map(|o| o.map(|id| operand(graph.value(id))).transpose())
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    Ok(OpCx { inputs, outputs })
}

/// Infers shapes and folds constant nodes.
pub fn infer_shapes(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let nodes = std::mem::take(&mut graph.nodes);
    let mut kept = Vec::with_capacity(nodes.len());
    for node in nodes {
        let op = node
            .op
            .as_ref()
            .ok_or_else(|| CompileError::shape("internal: op not resolved").at(node.node_ref()))?;
        let cx = op_cx(&graph, &node, false).map_err(|e| e.at(node.node_ref()))?;
        let types = op.infer(&cx).map_err(|e| e.at(node.node_ref()))?;
        let needed = node
            .outputs
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |p| p + 1);
        if needed > types.len() {
            return Err(
                CompileError::unsupported(format!("output {} of this op", types.len()))
                    .at(node.node_ref()),
            );
        }
        // Shape/Size (and ConstantOfShape/Range, whose shapes need constants anyway) fold
        // even when an input is a run-time value.
        let folded = if cx.all_constant() || matches!(op, Op::ShapeOf(_) | Op::Generate(_)) {
            op.eval(&cx)
                .transpose()
                .map_err(|e| e.at(node.node_ref()))?
        } else {
            None
        };
        for (i, out) in node.outputs.iter().enumerate() {
            let Some(id) = out else { continue };
            let Some(t) = types.get(i) else { continue };
            let value = graph.value_mut(*id);
            value.dtype = Some(t.dtype);
            value.shape = Some(t.shape.clone());
            if let Some(tensors) = &folded {
                value.constant = tensors.get(i).cloned();
            }
        }
        if folded.is_none() {
            kept.push(node);
        }
    }
    graph.nodes = kept;
    Ok(graph)
}
