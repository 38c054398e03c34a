//! Infers every value's type and shape in topological order, and folds nodes whose inputs
//! are all constant (Constant nodes, shape arithmetic) into constant values, removing them.

use std::collections::VecDeque;

use super::PassCx;
use crate::error::{CompileError, ErrorKind, Result, Unsupported};
use crate::ir::{DType, Graph, Node, Value, ValueId};
use crate::onnx::import_subgraph;
use crate::onnx::proto::GraphProto;
use crate::ops::control::{If, IfSelect, IfTrap};
use crate::ops::movement::{Reshape, ReshapeKind};
use crate::ops::{self, NodeCx, Op, OpCx, Operand};

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

/// Infers shapes and folds constant nodes; expands `If` nodes (see [`crate::ops::control`]).
pub fn infer_shapes(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let mut work: VecDeque<Node> = std::mem::take(&mut graph.nodes).into();
    let mut kept = Vec::with_capacity(work.len());
    let mut poisoned: Vec<((ValueId, bool), String)> = Vec::new();
    while let Some(node) = work.pop_front() {
        let op = node
            .op
            .as_ref()
            .ok_or_else(|| CompileError::shape("internal: op not resolved").at(node.node_ref()))?;
        // A node under a poisoned guard belongs to a branch that cannot run: drop it.
        if node
            .guards
            .iter()
            .any(|g| poisoned.iter().any(|(p, _)| p == g))
        {
            continue;
        }
        if let Op::If(branches) = op {
            let expanded =
                expand_if(&mut graph, &node, branches).map_err(|e| e.at(node.node_ref()))?;
            for n in expanded.into_iter().rev() {
                work.push_front(n);
            }
            continue;
        }
        if let Op::IfSelect(_) = op {
            if let Some(trap) = trap_for(&node, &poisoned)? {
                work.push_front(trap);
                continue;
            }
        }
        let inferred = (|| -> Result<_> {
            let cx = op_cx(&graph, &node, false)?;
            let types = op.infer(&cx)?;
            let needed = node
                .outputs
                .iter()
                .rposition(Option::is_some)
                .map_or(0, |p| p + 1);
            if needed > types.len() {
                return Err(CompileError::unsupported(format!(
                    "output {} of this op",
                    types.len()
                )));
            }
            // Shape/Size (and ConstantOfShape/Range, whose shapes need constants anyway) fold
            // even when an input is a run-time value.
            let folded = if cx.all_constant() || matches!(op, Op::ShapeOf(_) | Op::Generate(_)) {
                op.eval(&cx).transpose()?
            } else {
                None
            };
            Ok((types, folded))
        })()
        .map_err(|e| e.at(node.node_ref()));
        let (types, folded) = match inferred {
            Ok(v) => v,
            // In a branch of a run-time If, a node that cannot be typed (shapes that only
            // fit the other branch's inputs) poisons its branch: the branch is dropped and
            // taking it at run time is reported as an error by the generated code.
            Err(e)
                if !node.guards.is_empty() && !matches!(e.kind, ErrorKind::UnsupportedOps(_)) =>
            {
                let guard = node.guards[node.guards.len() - 1];
                poisoned.push((guard, e.to_string()));
                kept.retain(|n: &Node| !n.guards.contains(&guard));
                continue;
            }
            Err(e) => return Err(e),
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

/// For an `IfSelect` one of whose branches was poisoned, the `IfTrap` that replaces it.
fn trap_for(node: &Node, poisoned: &[((ValueId, bool), String)]) -> Result<Option<Node>> {
    let (Some(Some(cond)), Some(then_value), Some(else_value)) =
        (node.inputs.first(), node.inputs.get(1), node.inputs.get(2))
    else {
        return Ok(None);
    };
    let reason = |side: bool| {
        poisoned
            .iter()
            .find(|((c, p), _)| c == cond && *p == side)
            .map(|(_, r)| r.clone())
    };
    let (bad, good, reason) = match (reason(true), reason(false)) {
        (None, None) => return Ok(None),
        (Some(a), Some(b)) => {
            return Err(CompileError::shape(format!(
                "both branches of an If fail to compile: {a}; {b}"
            ))
            .at(node.node_ref()))
        }
        (Some(r), None) => (true, *else_value, r),
        (None, Some(r)) => (false, *then_value, r),
    };
    let mut trap = node.clone();
    trap.op = Some(Op::IfTrap(IfTrap {
        taken_when: bad,
        reason,
    }));
    trap.inputs = vec![Some(*cond), good];
    Ok(Some(trap))
}

/// Imports a branch and resolves its ops; every node inherits `guards`.
fn import_branch(
    graph: &mut Graph,
    proto: &GraphProto,
    guards: &[(ValueId, bool)],
) -> Result<(Vec<Node>, Vec<ValueId>)> {
    let (mut nodes, outputs) = import_subgraph(graph, proto)?;
    let mut unsupported = Vec::new();
    for node in &mut nodes {
        match ops::parse(&NodeCx { node }) {
            Some(Ok(op)) => node.op = Some(op),
            Some(Err(e)) if e.is_unsupported() => unsupported.push(Unsupported {
                node: node.node_ref(),
                opset: node.opset,
                reason: e.to_string(),
            }),
            Some(Err(e)) => return Err(e.at(node.node_ref())),
            None => unsupported.push(Unsupported {
                node: node.node_ref(),
                opset: node.opset,
                reason: "no such op in sinter's op table".into(),
            }),
        }
        node.guards = guards.to_vec();
    }
    if !unsupported.is_empty() {
        return Err(CompileError::new(ErrorKind::UnsupportedOps(unsupported)));
    }
    Ok((nodes, outputs))
}

/// The nodes that replace an `If`: the taken branch when the condition is a constant, else
/// both branches under guards plus one [`IfSelect`](crate::ops::control::IfSelect) per output.
fn expand_if(graph: &mut Graph, node: &Node, branches: &If) -> Result<Vec<Node>> {
    let cond = node
        .inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| CompileError::malformed("If without a condition"))?;
    let cond_value = graph.value(cond);
    if cond_value.dtype != Some(DType::Bool) || cond_value.len() != 1 {
        return Err(CompileError::shape(format!(
            "the condition must be one bool, found {:?}{:?}",
            cond_value.dtype, cond_value.shape
        )));
    }
    let alias = |name: String,
                 from: ValueId,
                 to: ValueId,
                 guards: Vec<(ValueId, bool)>,
                 op: Op,
                 inputs: Vec<Option<ValueId>>| Node {
        name,
        op_type: "Identity".into(),
        domain: String::new(),
        opset: node.opset,
        inputs: if inputs.is_empty() {
            vec![Some(from)]
        } else {
            inputs
        },
        outputs: vec![Some(to)],
        attributes: Vec::new(),
        op: Some(op),
        guards,
    };
    let identity = || {
        Op::Reshape(Reshape {
            kind: ReshapeKind::Identity,
        })
    };
    let check_count = |outs: &[ValueId]| {
        if outs.len() == node.outputs.len() {
            Ok(())
        } else {
            Err(CompileError::malformed(format!(
                "a branch has {} outputs, the If has {}",
                outs.len(),
                node.outputs.len()
            )))
        }
    };
    if let Some(t) = &cond_value.constant {
        let taken = t.bytes.first().copied().unwrap_or(0) != 0;
        let branch = if taken {
            &branches.then_branch
        } else {
            &branches.else_branch
        };
        let (mut nodes, outs) = import_branch(graph, branch, &node.guards)?;
        check_count(&outs)?;
        for (k, (out, from)) in node.outputs.iter().zip(outs).enumerate() {
            if let Some(to) = out {
                nodes.push(alias(
                    format!("{}/output_{k}", node.name),
                    from,
                    *to,
                    node.guards.clone(),
                    identity(),
                    Vec::new(),
                ));
            }
        }
        return Ok(nodes);
    }
    let mut then_guards = node.guards.clone();
    then_guards.push((cond, true));
    let mut else_guards = node.guards.clone();
    else_guards.push((cond, false));
    let (mut nodes, then_outs) = import_branch(graph, &branches.then_branch, &then_guards)?;
    let (else_nodes, else_outs) = import_branch(graph, &branches.else_branch, &else_guards)?;
    check_count(&then_outs)?;
    check_count(&else_outs)?;
    nodes.extend(else_nodes);
    for (k, out) in node.outputs.iter().enumerate() {
        if let Some(to) = out {
            let inputs = vec![Some(cond), Some(then_outs[k]), Some(else_outs[k])];
            nodes.push(alias(
                format!("{}/select_{k}", node.name),
                cond,
                *to,
                node.guards.clone(),
                Op::IfSelect(IfSelect),
                inputs,
            ));
        }
    }
    Ok(nodes)
}
