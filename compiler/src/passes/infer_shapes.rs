//! Infers every value's type and shape in topological order, and folds nodes whose inputs
//! are all constant (Constant nodes, shape arithmetic) into constant values, removing them.

use std::collections::VecDeque;

use super::pattern::{add_constant, int_attr};
use super::PassCx;
use crate::error::{CompileError, ErrorKind, Result, Unsupported};
use crate::ir::{DType, Graph, Node, Value, ValueId};
use crate::onnx::proto::GraphProto;
use crate::onnx::{import_subgraph, import_subgraph_with};
use crate::ops::attention::FlexAttention;
use crate::ops::control::{If, IfSelect, IfTrap, LoopStack, LoopStep, Scan};
use crate::ops::movement::{Reshape, ReshapeKind};
use crate::ops::{self, NodeCx, Op, OpCx, Operand};

/// Builds the hooks' view of a node's operands.
pub fn op_cx<'a>(graph: &'a Graph, node: &Node, with_outputs: bool) -> Result<OpCx<'a>> {
    let operand = |v: &'a Value| -> Result<Operand<'a>> {
        match (v.dtype, v.shape.as_deref()) {
            (Some(dtype), Some(shape)) => Ok(Operand {
                dynamic: &v.dynamic,
                range: v.range.as_deref(),
                syms: &v.syms,
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

/// Most elements one value may have (16 GiB of float32): beyond it a shape is a malformed
/// model's, and inferring from it would allocate without bound.
const MAX_ELEMENTS: usize = 1 << 32;

/// An error unless `shape` has at most [`MAX_ELEMENTS`] elements and at most
/// [`ops::MAX_RANK`] axes.
fn check_size(what: &str, shape: &[usize]) -> Result<()> {
    if shape.len() > ops::MAX_RANK {
        return Err(CompileError::shape(format!(
            "{what} has {} axes, more than {}",
            shape.len(),
            ops::MAX_RANK
        )));
    }
    match shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(CompileError::shape(format!(
            "{what} has shape {shape:?}, more than {MAX_ELEMENTS} elements"
        ))),
    }
}

/// Re-derives which axes of every node output vary at run time, for a pass that rewrote
/// nodes on such values (new values it made carry only their capacity): each node, in order,
/// infers its outputs' dynamic axes from its inputs'. Shapes and types stay as they are.
pub(super) fn refresh_dynamic(graph: &mut Graph) -> Result<()> {
    for index in 0..graph.nodes.len() {
        let node = &graph.nodes[index];
        let Some(op) = node.op.as_ref() else { continue };
        if !node
            .inputs
            .iter()
            .flatten()
            .any(|&v| graph.value(v).is_dynamic())
        {
            continue;
        }
        check_dynamic_inputs(graph, node, op).map_err(|e| e.at(node.node_ref()))?;
        let cx = op_cx(graph, node, false)?;
        let mut types = op.infer(&cx).map_err(|e| e.at(node.node_ref()))?;
        if op.batch_loop(&cx) {
            for t in &mut types {
                t.dynamic = (0..t.shape.len()).map(|a| a == 0).collect();
            }
        }
        let outputs = node.outputs.clone();
        for (out, t) in outputs.iter().zip(types) {
            if let Some(id) = out {
                graph.value_mut(*id).dynamic = t.dynamic;
            }
        }
    }
    Ok(())
}

/// An error unless `op` takes every input of `node` whose shape is only known at run time
/// ([`crate::ops::OpDef::dynamic_inputs`]).
fn check_dynamic_inputs(graph: &Graph, node: &Node, op: &Op) -> Result<()> {
    let dynamic = node
        .inputs
        .iter()
        .position(|i| i.is_some_and(|id| graph.value(id).is_dynamic()));
    let Some(i) = dynamic else { return Ok(()) };
    let cx = op_cx(graph, node, false)?;
    if op.dynamic_inputs(&cx) || op.batch_loop(&cx) {
        return Ok(());
    }
    let name = node.inputs[i].map(|id| graph.value(id).name.clone());
    if !graph.bounds.is_empty() {
        // A bounded dim reaches an op without a run-time-extent path: say which dims to fix.
        let dims: Vec<&str> = graph.bounds.keys().map(String::as_str).collect();
        return Err(CompileError::unsupported(format!(
            "input {i} (\"{}\") varies with the bounded dims {} at run time, which this op cannot take yet; fix them (e.g. --dim {}=VALUE) to compile it",
            name.unwrap_or_default(),
            dims.join(", "),
            dims[0]
        )));
    }
    // The op needs the shape at compile time: the values that decide it (what the
    // data-dependent op read) must be constants.
    Err(CompileError::new(ErrorKind::NotConstant(format!(
        "the shape of input {i} (\"{}\"), which is only known at run time (from a data-dependent op such as NonZero or NonMaxSuppression) and which this op cannot take yet,",
        name.unwrap_or_default()
    ))))
}

/// Infers shapes and folds constant nodes; expands `If` nodes (see [`crate::ops::control`]).
pub fn infer_shapes(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    for value in &graph.values {
        if let Some(shape) = &value.shape {
            check_size(&format!("value \"{}\"", value.name), shape)?;
        }
    }
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
        // Control flow expands into nodes checked here in turn; any other op must take the
        // run-time shapes its inputs have.
        if !matches!(
            op,
            Op::Loop(_) | Op::LoopStep(_) | Op::ScanLoop(_) | Op::If(_)
        ) {
            check_dynamic_inputs(&graph, &node, op).map_err(|e| e.at(node.node_ref()))?;
        }
        if let Op::Loop(l) = op {
            let (max, trip) = loop_trip_count(&graph, &node).map_err(|e| e.at(node.node_ref()))?;
            let n_carried = node.inputs.len().saturating_sub(2);
            let n_scans = l.body.output.len().saturating_sub(1 + n_carried);
            let carried = node
                .inputs
                .iter()
                .skip(2)
                .map(|v| {
                    v.ok_or_else(|| CompileError::malformed("Loop with an omitted carried value"))
                })
                .collect::<Result<_>>()?;
            let step = LoopStep {
                body: l.body.clone(),
                iteration: 0,
                max,
                cond: node.inputs.get(1).copied().flatten(),
                carried,
                scans: vec![Vec::new(); n_scans],
                trip,
                ran: Vec::new(),
                pending: None,
            };
            let mut marker = node.clone();
            marker.op = Some(Op::LoopStep(step));
            work.push_front(marker);
            continue;
        }
        if let Op::LoopStep(step) = op {
            let expanded = loop_step(&mut graph, &node, step).map_err(|e| e.at(node.node_ref()))?;
            for n in expanded.into_iter().rev() {
                work.push_front(n);
            }
            continue;
        }
        if let Op::ScanLoop(scan) = op {
            let expanded =
                unroll_scan(&mut graph, &node, scan).map_err(|e| e.at(node.node_ref()))?;
            for n in expanded.into_iter().rev() {
                work.push_front(n);
            }
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
        if let Op::FlexAttention(flex) = op {
            let expanded = expand_flex_attention(&mut graph, &node, flex)
                .map_err(|e| e.at(node.node_ref()))?;
            for n in expanded.into_iter().rev() {
                work.push_front(n);
            }
            continue;
        }
        if let Op::MatMulNBits(nbits) = op {
            let a = node.inputs.first().copied().flatten();
            if a.is_some_and(|a| graph.value(a).dtype == Some(DType::F16)) {
                let expanded = super::contrib::expand_nbits_f16(&mut graph, &node)
                    .map_err(|e| e.at(node.node_ref()))?;
                for n in expanded.into_iter().rev() {
                    work.push_front(n);
                }
                continue;
            }
            if nbits.g_idx {
                let expanded = super::contrib::expand_nbits_g_idx(&mut graph, &node, nbits)
                    .map_err(|e| e.at(node.node_ref()))?;
                for n in expanded.into_iter().rev() {
                    work.push_front(n);
                }
                continue;
            }
        }
        if let Op::Contrib(contrib) = op {
            let expanded = super::contrib::expand(&mut graph, &node, contrib)
                .map_err(|e| e.at(node.node_ref()))?;
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
            let mut types = op.infer(&cx)?;
            if op.batch_loop(&cx) {
                // Run per sample: every output varies in axis 0 as input 0 does.
                let batch = cx.input(0)?.shape.first().copied();
                for t in &mut types {
                    if t.shape.first().copied() != batch {
                        return Err(CompileError::unsupported(
                            "a batch whose size is only known at run time, where this op changes axis 0",
                        ));
                    }
                    t.dynamic = (0..t.shape.len()).map(|a| a == 0).collect();
                }
            }
            for (i, t) in types.iter().enumerate() {
                check_size(&format!("output {i}"), &t.shape)?;
            }
            if !op.handles_low_precision() {
                let dtypes = cx.inputs.iter().flatten().map(|o| o.dtype);
                if let Some(d) = dtypes
                    .chain(types.iter().map(|t| t.dtype))
                    .find(|d| d.is_low_precision())
                {
                    return Err(CompileError::unsupported(format!(
                        "a value of type {d} (only Cast, CastLike, QuantizeLinear, DequantizeLinear and reshaping ops take the float8/float4/int4/int2 types)"
                    )));
                }
            }
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
            let mut folded = if cx.all_constant() || matches!(op, Op::ShapeOf(_) | Op::Generate(_)) {
                op.eval(&cx).transpose()?
            } else {
                None
            };
            // Shape arithmetic on run-time extents: the values' ranges (see `value_range`);
            // a tensor whose every element is known is a constant after all.
            let mut range = match (&folded, types.first()) {
                (None, Some(t)) => super::value_range::infer(op, &cx, t),
                _ => None,
            };
            if let (Some(r), Some(t), 1) = (&range, types.first(), node.outputs.len()) {
                folded = super::value_range::as_constant(r, t).map(|c| vec![c]);
            }
            let syms: Vec<Vec<Option<u16>>> = types
                .iter()
                .map(|t| super::value_range::axis_syms(&graph, op, &cx, t))
                .collect();
            super::value_range::clamp_to_bounds(&graph, op, &mut types, &syms, range.as_deref_mut());
            Ok((types, folded, range, syms))
        })()
        .map_err(|e| e.at(node.node_ref()));
        let (types, folded, range, syms) = match inferred {
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
            value.dynamic = t.dynamic.clone();
            if i == 0 {
                value.range = range.clone();
            }
            value.syms = syms.get(i).cloned().unwrap_or_default();
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
    resolve_ops_of(&mut nodes, guards)?;
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

/// A node made by the compiler (Scan unrolling), its op parsed like an imported node's.
#[allow(clippy::too_many_arguments, reason = "a node's fields")]
fn synth(
    name: String,
    op_type: &str,
    opset: i64,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
    attributes: Vec<crate::onnx::proto::AttributeProto>,
    guards: &[(ValueId, bool)],
) -> Result<Node> {
    let mut node = Node {
        name,
        op_type: op_type.to_string(),
        domain: String::new(),
        opset,
        inputs: inputs.into_iter().map(Some).collect(),
        outputs: outputs.into_iter().map(Some).collect(),
        attributes,
        op: None,
        guards: guards.to_vec(),
    };
    node.op = Some(ops::parse(&NodeCx { node: &node }).ok_or_else(|| {
        CompileError::shape(format!("internal: {op_type} missing from the op table"))
    })??);
    Ok(node)
}

fn new_value(graph: &mut Graph, name: String) -> ValueId {
    graph.add_value(Value {
        dynamic: Vec::new(),
        name,
        dtype: None,
        shape: None,
        declared: None,
        range: None,
        syms: Vec::new(),
        constant: None,
    })
}

/// The nodes that replace a `Scan`: per step, a Gather of every scan input at the step's
/// index and the body; then Unsqueeze + Concat to stack each scan output, and Identity for
/// the final states.
fn unroll_scan(graph: &mut Graph, node: &Node, scan: &Scan) -> Result<Vec<Node>> {
    let m = scan.num_scan_inputs;
    let present = |inputs: &[Option<ValueId>]| -> Result<Vec<ValueId>> {
        inputs
            .iter()
            .map(|i| i.ok_or_else(|| CompileError::malformed("Scan with an omitted input")))
            .collect()
    };
    let shape_of = |graph: &Graph, x: ValueId| -> Result<Vec<usize>> {
        graph
            .value(x)
            .shape
            .clone()
            .ok_or_else(|| CompileError::shape("internal: Scan input without a shape"))
    };
    // The sequence length, the same for every scan input along its axis.
    let common_len = |lens: &mut dyn Iterator<Item = usize>| -> Result<usize> {
        let mut seq = None;
        for len in lens {
            if seq.is_some_and(|s| s != len) {
                return Err(CompileError::shape(format!(
                    "scan inputs have different lengths ({seq:?} and {len})"
                )));
            }
            seq = Some(len);
        }
        seq.ok_or_else(|| CompileError::unsupported("Scan without scan inputs"))
    };
    let mut nodes = Vec::new();
    let outs = if !scan.batched {
        let inputs = present(&node.inputs)?;
        let n_states = inputs.len() - m;
        let mut axes = Vec::with_capacity(m);
        let mut lens = Vec::with_capacity(m);
        for (j, &x) in inputs[n_states..].iter().enumerate() {
            let shape = shape_of(graph, x)?;
            let axis = ops::normalize_axis(scan.input_axes[j], shape.len(), "scan_input_axes")?;
            lens.push(shape[axis]);
            axes.push(axis);
        }
        let seq = common_len(&mut lens.into_iter())?;
        let step = ScanSteps {
            node,
            scan,
            axes: &axes,
            seq,
        };
        step.unroll(graph, &mut nodes, &inputs, &node.name)?
    } else {
        // Opset 8: input 0 is `sequence_lens`, and every other input and every output has a
        // leading batch axis; each batch element is scanned on its own (along axis 0 of its
        // slice) and the results are stacked again.
        if node.inputs.first().copied().flatten().is_some() {
            return Err(CompileError::unsupported(
                "Scan (opset 8) with sequence_lens",
            ));
        }
        let inputs = present(node.inputs.get(1..).unwrap_or_default())?;
        let n_states = inputs.len() - m;
        let shapes = inputs
            .iter()
            .map(|&x| shape_of(graph, x))
            .collect::<Result<Vec<_>>>()?;
        let batch = shapes.first().and_then(|s| s.first().copied()).unwrap_or(0);
        if shapes.iter().any(|s| s.first() != Some(&batch)) {
            return Err(CompileError::shape(
                "Scan (opset 8) inputs differ in their batch axis",
            ));
        }
        let seq = common_len(
            &mut shapes[n_states..]
                .iter()
                .map(|s| s.get(1).copied().unwrap_or(0)),
        )?;
        if batch.saturating_mul(seq) > MAX_LOOP_ITERATIONS {
            return Err(CompileError::unsupported(format!(
                "Scan (opset 8) of {batch} sequences of {seq} steps (it is unrolled at compile \
                 time, to at most {MAX_LOOP_ITERATIONS} steps in all)"
            )));
        }
        let axes = vec![0; m];
        let step = ScanSteps {
            node,
            scan,
            axes: &axes,
            seq,
        };
        let mut per_batch: Vec<Vec<ValueId>> = vec![Vec::new(); node.outputs.len()];
        for b in 0..batch {
            let prefix = format!("{}/batch_{b}", node.name);
            let mut sliced = Vec::with_capacity(inputs.len());
            for (j, &x) in inputs.iter().enumerate() {
                sliced.push(step.gather(
                    graph,
                    &mut nodes,
                    x,
                    b,
                    0,
                    &format!("{prefix}/in_{j}"),
                )?);
            }
            let outs = step.unroll(graph, &mut nodes, &sliced, &prefix)?;
            for (k, o) in outs.into_iter().enumerate() {
                if let Some(list) = per_batch.get_mut(k) {
                    list.push(o);
                }
            }
        }
        let mut outs = Vec::with_capacity(per_batch.len());
        for (k, items) in per_batch.into_iter().enumerate() {
            outs.push(step.stack(
                graph,
                &mut nodes,
                items,
                0,
                &format!("{}/out_{k}", node.name),
            )?);
        }
        outs
    };
    for (k, out) in node.outputs.iter().enumerate() {
        let (Some(out), Some(&value)) = (out, outs.get(k)) else {
            continue;
        };
        nodes.push(synth(
            format!("{}/output_{k}", node.name),
            "Identity",
            13,
            vec![value],
            vec![*out],
            Vec::new(),
            &node.guards,
        )?);
    }
    Ok(nodes)
}

/// One (unbatched) Scan's unrolling: its node, attributes, scan axes and sequence length.
struct ScanSteps<'a> {
    node: &'a Node,
    scan: &'a Scan,
    axes: &'a [usize],
    seq: usize,
}

impl ScanSteps<'_> {
    /// `x[.., index, ..]` along `axis`, as a new value.
    fn gather(
        &self,
        graph: &mut Graph,
        nodes: &mut Vec<Node>,
        x: ValueId,
        index: usize,
        axis: usize,
        name: &str,
    ) -> Result<ValueId> {
        let index =
            i64::try_from(index).map_err(|_| CompileError::shape("scan index overflows"))?;
        let idx = add_constant(
            graph,
            format!("{name}/index"),
            crate::ir::Tensor::from_i64(vec![], &[index]),
        );
        let slice = new_value(graph, format!("{name}/slice"));
        let axis = i64::try_from(axis).unwrap_or(0);
        nodes.push(synth(
            format!("{name}/gather"),
            "Gather",
            13,
            vec![x, idx],
            vec![slice],
            vec![int_attr("axis", axis)],
            &self.node.guards,
        )?);
        Ok(slice)
    }

    /// `items` stacked along a new `axis`, as a new value.
    fn stack(
        &self,
        graph: &mut Graph,
        nodes: &mut Vec<Node>,
        items: Vec<ValueId>,
        axis: i64,
        name: &str,
    ) -> Result<ValueId> {
        let mut stacked = Vec::with_capacity(items.len());
        for (t, item) in items.into_iter().enumerate() {
            let axes_value = add_constant(
                graph,
                format!("{name}/axes_{t}"),
                crate::ir::Tensor::from_i64(vec![1], &[axis]),
            );
            let u = new_value(graph, format!("{name}/item_{t}"));
            nodes.push(synth(
                format!("{name}/unsqueeze_{t}"),
                "Unsqueeze",
                13,
                vec![item, axes_value],
                vec![u],
                Vec::new(),
                &self.node.guards,
            )?);
            stacked.push(u);
        }
        let out = new_value(graph, format!("{name}/stacked"));
        nodes.push(synth(
            format!("{name}/stack"),
            "Concat",
            13,
            stacked,
            vec![out],
            vec![int_attr("axis", axis)],
            &self.node.guards,
        )?);
        Ok(out)
    }

    /// The steps over `inputs` (states, then scan inputs): returns the final states, then
    /// the stacked scan outputs.
    fn unroll(
        &self,
        graph: &mut Graph,
        nodes: &mut Vec<Node>,
        inputs: &[ValueId],
        prefix: &str,
    ) -> Result<Vec<ValueId>> {
        let (scan, seq) = (self.scan, self.seq);
        let m = scan.num_scan_inputs;
        let n_states = inputs.len() - m;
        let n_scan_outputs = scan.output_axes.len();
        if seq == 0 {
            return Err(CompileError::unsupported("Scan over an empty sequence"));
        }
        if seq > MAX_LOOP_ITERATIONS {
            return Err(CompileError::unsupported(format!(
                "Scan of {seq} steps (it is unrolled at compile time, to at most \
                 {MAX_LOOP_ITERATIONS} steps)"
            )));
        }
        let mut states: Vec<ValueId> = inputs[..n_states].to_vec();
        let mut collected: Vec<Vec<ValueId>> = vec![Vec::new(); n_scan_outputs];
        for t in 0..seq {
            let mut bindings = states.clone();
            for j in 0..m {
                let index = if scan.input_reverse[j] {
                    seq - 1 - t
                } else {
                    t
                };
                let name = format!("{prefix}/step_{t}/input_{j}");
                bindings.push(self.gather(
                    graph,
                    nodes,
                    inputs[n_states + j],
                    index,
                    self.axes[j],
                    &name,
                )?);
            }
            let (mut body, outs) = import_subgraph_with(graph, &scan.body, &bindings)?;
            if outs.len() != n_states + n_scan_outputs {
                return Err(CompileError::malformed(
                    "the Scan body's outputs do not match its states and scan outputs",
                ));
            }
            resolve_ops_of(&mut body, &self.node.guards)?;
            nodes.extend(body);
            states = outs[..n_states].to_vec();
            for (k, &o) in outs[n_states..].iter().enumerate() {
                collected[k].push(o);
            }
        }
        let mut result = states;
        for (k, mut items) in collected.into_iter().enumerate() {
            if scan.output_reverse[k] {
                items.reverse();
            }
            let name = format!("{prefix}/scan_output_{k}");
            result.push(self.stack(graph, nodes, items, scan.output_axes[k], &name)?);
        }
        Ok(result)
    }
}

/// Parses the ops of imported subgraph nodes, listing every unsupported one at once; every
/// node inherits `guards`.
fn resolve_ops_of(nodes: &mut [Node], guards: &[(ValueId, bool)]) -> Result<()> {
    let mut unsupported = Vec::new();
    for node in nodes.iter_mut() {
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
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(CompileError::new(ErrorKind::UnsupportedOps(unsupported)))
    }
}

/// Iterations a Loop, or steps a Scan, may unroll to at most.
const MAX_LOOP_ITERATIONS: usize = 4096;

/// A `Loop`'s trip count: `(None, None)` without one, `(Some(m), None)` for a constant `m`,
/// and `(Some(largest), Some(value))` for a value computed at run time whose largest value
/// the compiler knows (shape arithmetic on bounded dims, see [`crate::ir::Value::range`]).
fn loop_trip_count(graph: &Graph, node: &Node) -> Result<(Option<usize>, Option<ValueId>)> {
    let Some(m) = node.inputs.first().copied().flatten() else {
        return Ok((None, None));
    };
    let count = |v: i64| usize::try_from(v.max(0)).unwrap_or(usize::MAX);
    let value = graph.value(m);
    if let Some(t) = value.constant.as_ref().and_then(crate::ir::Tensor::to_i64s) {
        return Ok((Some(count(t.first().copied().unwrap_or(0))), None));
    }
    match value.range.as_deref() {
        Some([b]) => Ok((Some(count(b.hi)), Some(m))),
        _ => Err(CompileError::new(ErrorKind::NotConstant(
            "Loop trip count M".into(),
        ))),
    }
}

/// One step of unrolling a `Loop`: the next iteration's body followed by the next marker, or
/// the nodes that produce the Loop's outputs. An iteration that may or may not run (its
/// condition or the trip count only known at run time) runs under the guard of a flag, and
/// the next step first joins its carried values with the ones it would have replaced.
fn loop_step(graph: &mut Graph, node: &Node, step: &LoopStep) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    let mut step = step.clone();
    let t = step.iteration;
    if let Some(outs) = step.pending.take() {
        let flag = step.ran.last().copied().flatten().ok_or_else(|| {
            CompileError::shape("internal: a pending Loop iteration without its flag")
        })?;
        // An iteration that did not compile (its nodes' guard was poisoned, see
        // `infer_shapes`) left values without shapes: its joins become traps (a run that
        // takes the iteration returns the error) and no later iteration can run without it.
        let failed = outs.iter().any(|&o| graph.value(o).shape.is_none())
            || step.scans.iter().any(|items| {
                items
                    .last()
                    .is_some_and(|&o| graph.value(o).shape.is_none())
            });
        for (s, &out) in outs[1..].iter().enumerate() {
            let before = step.carried[s];
            let (a, b) = (graph.value(out), graph.value(before));
            if !failed && (a.dtype != b.dtype || a.shape != b.shape) {
                return Err(CompileError::unsupported(format!(
                    "a Loop-carried value whose type or shape changes between iterations ({:?}{:?} vs {:?}{:?}) with a run-time trip count or condition",
                    b.dtype, b.shape, a.dtype, a.shape
                )));
            }
            let joined = new_value(graph, format!("{}/iter_{t}/carried_{s}", node.name));
            let join = Node {
                name: format!("{}/iter_{t}/join_{s}", node.name),
                op_type: "sinter::IfSelect".into(),
                domain: String::new(),
                opset: node.opset,
                inputs: vec![Some(flag), Some(out), Some(before)],
                outputs: vec![Some(joined)],
                attributes: Vec::new(),
                op: Some(Op::IfSelect(IfSelect)),
                guards: node.guards.clone(),
            };
            nodes.push(join);
            step.carried[s] = joined;
        }
        if failed {
            step.ran.pop();
            for items in &mut step.scans {
                items.pop();
            }
            nodes.extend(finish_loop(graph, node, &step)?);
            return Ok(nodes);
        }
        step.cond = Some(outs[0]);
    }
    let cond_known = match step.cond {
        None => Some(true),
        Some(c) => graph
            .value(c)
            .constant
            .as_ref()
            .map(|t| t.bytes.first().copied().unwrap_or(0) != 0),
    };
    if cond_known == Some(false) || step.max.is_some_and(|m| t >= m) {
        nodes.extend(finish_loop(graph, node, &step)?);
        return Ok(nodes);
    }
    if t >= MAX_LOOP_ITERATIONS {
        return Err(CompileError::unsupported(format!(
            "Loop of more than {MAX_LOOP_ITERATIONS} iterations"
        )));
    }
    let iter = i64::try_from(t).map_err(|_| CompileError::shape("loop index overflows"))?;
    // Whether this iteration runs: the previous one ran, the condition holds and the index is
    // below the trip count; each part only when it is not known at compile time.
    let mut parts: Vec<ValueId> = step.ran.last().copied().flatten().into_iter().collect();
    if cond_known.is_none() {
        parts.extend(step.cond);
    }
    if let Some(m) = step.trip {
        let surely_below = graph
            .value(m)
            .range
            .as_deref()
            .is_some_and(|r| r.first().is_some_and(|b| iter < b.lo));
        if !surely_below {
            let index = add_constant(
                graph,
                format!("{}/iter_{t}/index_for_trip", node.name),
                crate::ir::Tensor::from_i64(vec![], &[iter]),
            );
            let below = new_value(graph, format!("{}/iter_{t}/below_trip", node.name));
            nodes.push(synth(
                format!("{}/iter_{t}/trip_test", node.name),
                "Less",
                13,
                vec![index, m],
                vec![below],
                Vec::new(),
                &node.guards,
            )?);
            parts.push(below);
        }
    }
    let flag = match parts.split_first() {
        None => None,
        Some((&first, rest)) => {
            if step.max.is_none() {
                return Err(CompileError::unsupported(
                    "Loop whose condition is only known at run time and which has no trip count M (nothing bounds its number of iterations)",
                ));
            }
            let mut flag = first;
            for (k, &part) in rest.iter().enumerate() {
                let both = new_value(graph, format!("{}/iter_{t}/runs_{k}", node.name));
                nodes.push(synth(
                    format!("{}/iter_{t}/runs_{k}", node.name),
                    "And",
                    7,
                    vec![flag, part],
                    vec![both],
                    Vec::new(),
                    &node.guards,
                )?);
                flag = both;
            }
            Some(flag)
        }
    };
    let iter_value = add_constant(
        graph,
        format!("{}/iter_{t}/index", node.name),
        crate::ir::Tensor::from_i64(vec![], &[iter]),
    );
    let cond_in = match step.cond {
        Some(c) => c,
        None => add_constant(
            graph,
            format!("{}/iter_{t}/cond", node.name),
            crate::ir::Tensor {
                dtype: DType::Bool,
                shape: vec![],
                bytes: vec![1],
            },
        ),
    };
    let mut bindings = vec![iter_value, cond_in];
    bindings.extend(&step.carried);
    let (mut body, outs) = import_subgraph_with(graph, &step.body, &bindings)?;
    let n_carried = step.carried.len();
    if outs.len() != 1 + n_carried + step.scans.len() {
        return Err(CompileError::malformed(
            "the Loop body's outputs do not match its carried values and scan outputs",
        ));
    }
    let mut guards = node.guards.clone();
    guards.extend(flag.map(|f| (f, true)));
    resolve_ops_of(&mut body, &guards)?;
    nodes.extend(body);
    step.iteration += 1;
    step.ran.push(flag);
    for (k, &o) in outs[1 + n_carried..].iter().enumerate() {
        step.scans[k].push(o);
    }
    if flag.is_some() {
        step.pending = Some(outs[..1 + n_carried].to_vec());
    } else {
        step.cond = Some(outs[0]);
        step.carried = outs[1..1 + n_carried].to_vec();
    }
    let mut marker = node.clone();
    marker.op = Some(Op::LoopStep(step));
    nodes.push(marker);
    Ok(nodes)
}

fn finish_loop(graph: &mut Graph, node: &Node, step: &LoopStep) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    let n_carried = step.carried.len();
    for (s, out) in node.outputs.iter().take(n_carried).enumerate() {
        if let Some(out) = out {
            nodes.push(synth(
                format!("{}/final_{s}", node.name),
                "Identity",
                13,
                vec![step.carried[s]],
                vec![*out],
                Vec::new(),
                &node.guards,
            )?);
        }
    }
    for (k, out) in node.outputs.iter().skip(n_carried).enumerate() {
        let Some(out) = out else { continue };
        let items = step.scans.get(k).cloned().unwrap_or_default();
        if items.is_empty() {
            return Err(CompileError::unsupported(
                "a Loop scan output after zero iterations (its element shape is unknown)",
            ));
        }
        if step.ran.iter().any(Option::is_some) {
            // Stacked at run time: as many rows as iterations ran.
            let mut inputs = Vec::with_capacity(2 * items.len());
            for (t, flag) in step.ran.iter().enumerate() {
                inputs.push(Some(match flag {
                    Some(f) => *f,
                    None => add_constant(
                        graph,
                        format!("{}/scan_{k}/ran_{t}", node.name),
                        crate::ir::Tensor {
                            dtype: DType::Bool,
                            shape: vec![],
                            bytes: vec![1],
                        },
                    ),
                }));
            }
            inputs.extend(items.into_iter().map(Some));
            nodes.push(Node {
                name: format!("{}/scan_{k}/stack", node.name),
                op_type: "sinter::LoopStack".into(),
                domain: String::new(),
                opset: node.opset,
                inputs,
                outputs: vec![Some(*out)],
                attributes: Vec::new(),
                op: Some(Op::LoopStack(LoopStack)),
                guards: node.guards.clone(),
            });
            continue;
        }
        let mut stacked = Vec::with_capacity(items.len());
        for (t, item) in items.into_iter().enumerate() {
            let axes_value = add_constant(
                graph,
                format!("{}/scan_{k}/axes_{t}", node.name),
                crate::ir::Tensor::from_i64(vec![1], &[0]),
            );
            let u = new_value(graph, format!("{}/scan_{k}/item_{t}", node.name));
            nodes.push(synth(
                format!("{}/scan_{k}/unsqueeze_{t}", node.name),
                "Unsqueeze",
                13,
                vec![item, axes_value],
                vec![u],
                Vec::new(),
                &node.guards,
            )?);
            stacked.push(u);
        }
        nodes.push(synth(
            format!("{}/scan_{k}/stack", node.name),
            "Concat",
            13,
            stacked,
            vec![*out],
            vec![int_attr("axis", 0)],
            &node.guards,
        )?);
    }
    Ok(nodes)
}

/// The ONNX code of a float type, for `Cast`'s `to`.
pub(super) fn float_code(dtype: DType) -> i64 {
    match dtype {
        DType::F64 => 11,
        DType::F16 => 10,
        DType::BF16 => 16,
        _ => 1,
    }
}

/// Builds the nodes of an expansion, named after the node they replace and under its guards.
pub(super) struct Expansion {
    pub(super) name: String,
    pub(super) guards: Vec<(ValueId, bool)>,
    pub(super) nodes: Vec<Node>,
}

impl Expansion {
    /// An empty expansion of `node`.
    pub(super) fn of(node: &Node) -> Self {
        Self {
            name: node.name.clone(),
            guards: node.guards.clone(),
            nodes: Vec::new(),
        }
    }

    /// Appends `domain:op_type` with optional inputs and the given outputs (`None`: omitted).
    #[allow(clippy::too_many_arguments, reason = "a node's fields")]
    pub(super) fn push(
        &mut self,
        what: &str,
        (domain, op_type, opset): (&str, &str, i64),
        inputs: Vec<Option<ValueId>>,
        outputs: Vec<Option<ValueId>>,
        attributes: Vec<crate::onnx::proto::AttributeProto>,
    ) -> Result<()> {
        let mut node = Node {
            name: format!("{}/{what}", self.name),
            op_type: op_type.to_string(),
            domain: domain.to_string(),
            opset,
            inputs,
            outputs,
            attributes,
            op: None,
            guards: self.guards.clone(),
        };
        node.op = Some(ops::parse(&NodeCx { node: &node }).ok_or_else(|| {
            CompileError::shape(format!("internal: {op_type} missing from the op table"))
        })??);
        self.nodes.push(node);
        Ok(())
    }

    /// Appends a node of sinter's own `op` (which has no ONNX attributes to parse).
    pub(super) fn push_op(
        &mut self,
        what: &str,
        op_type: &str,
        inputs: Vec<Option<ValueId>>,
        outputs: Vec<Option<ValueId>>,
        op: Op,
    ) {
        self.nodes.push(Node {
            name: format!("{}/{what}", self.name),
            op_type: op_type.to_string(),
            domain: "sinter".to_string(),
            opset: 1,
            inputs,
            outputs,
            attributes: Vec::new(),
            op: Some(op),
            guards: self.guards.clone(),
        });
    }

    /// A new value named after the expansion, for [`Expansion::push`]'s outputs.
    pub(super) fn value(&self, graph: &mut Graph, what: &str) -> ValueId {
        new_value(graph, format!("{}/{what}", self.name))
    }

    /// Appends `op_type(inputs)` and returns its one output.
    pub(super) fn step(
        &mut self,
        graph: &mut Graph,
        what: &str,
        op_type: &str,
        opset: i64,
        inputs: Vec<ValueId>,
        attrs: Vec<crate::onnx::proto::AttributeProto>,
    ) -> Result<ValueId> {
        let out = new_value(graph, format!("{}/{what}", self.name));
        self.nodes.push(synth(
            format!("{}/{what}", self.name),
            op_type,
            opset,
            inputs,
            vec![out],
            attrs,
            &self.guards,
        )?);
        Ok(out)
    }

    /// `x` cast from `from` to `to` (itself when they are equal).
    fn cast(
        &mut self,
        graph: &mut Graph,
        what: &str,
        x: ValueId,
        from: DType,
        to: DType,
    ) -> Result<ValueId> {
        if from == to {
            return Ok(x);
        }
        self.step(
            graph,
            what,
            "Cast",
            21,
            vec![x],
            vec![int_attr("to", float_code(to))],
        )
    }

    /// A constant `int64` vector of dimensions.
    pub(super) fn dims(&self, graph: &mut Graph, what: &str, dims: &[usize]) -> Result<ValueId> {
        let v = dims
            .iter()
            .map(|&x| i64::try_from(x).map_err(|_| CompileError::shape("dimension overflows")))
            .collect::<Result<Vec<_>>>()?;
        Ok(add_constant(
            graph,
            format!("{}/{what}", self.name),
            crate::ir::Tensor::from_i64(vec![v.len()], &v),
        ))
    }

    /// `value[from..to]` along `axis`, by a `Slice` named `what`.
    pub(super) fn slice(
        &mut self,
        graph: &mut Graph,
        what: &str,
        value: ValueId,
        axis: usize,
        [from, to]: [usize; 2],
    ) -> Result<ValueId> {
        let starts = self.dims(graph, &format!("{what}_start"), &[from])?;
        let ends = self.dims(graph, &format!("{what}_end"), &[to])?;
        let axes = self.dims(graph, &format!("{what}_axis"), &[axis])?;
        self.step(
            graph,
            what,
            "Slice",
            13,
            vec![value, starts, ends, axes],
            vec![],
        )
    }

    /// The subgraph `proto` (if any) applied to `x`: its nodes inlined, its output returned.
    fn apply(
        &mut self,
        graph: &mut Graph,
        proto: Option<&GraphProto>,
        x: ValueId,
        what: &str,
    ) -> Result<ValueId> {
        let Some(proto) = proto else {
            return Ok(x);
        };
        let (mut body, outs) = import_subgraph_with(graph, proto, &[x])?;
        let [out] = outs[..] else {
            return Err(CompileError::malformed(format!(
                "{what} must have one output, found {}",
                outs.len()
            )));
        };
        resolve_ops_of(&mut body, &self.guards)?;
        self.nodes.extend(body);
        Ok(out)
    }
}

/// The nodes that replace a `FlexAttention`, as its function body computes it: `Q` and `K`
/// each scaled by `sqrt(scale)` (in the input type), K/V heads repeated for grouped queries,
/// `Q K^T` (float16 inputs multiply in f32 and round to float16, as the reference does), the
/// scores in the softmax type through `score_mod`, the softmax over the last axis,
/// `prob_mod`, and the product with `V` in the softmax type, cast back to the input type.
fn expand_flex_attention(
    graph: &mut Graph,
    node: &Node,
    flex: &FlexAttention,
) -> Result<Vec<Node>> {
    let operand =
        |graph: &Graph, i: usize, what: &str| -> Result<(ValueId, DType, Vec<usize>)> {
            let id =
                node.inputs.get(i).copied().flatten().ok_or_else(|| {
                    CompileError::malformed(format!("FlexAttention without {what}"))
                })?;
            let v = graph.value(id);
            match (v.dtype, v.shape.clone()) {
                (Some(d), Some(s)) if s.len() == 4 => Ok((id, d, s)),
                (Some(_), Some(s)) => Err(CompileError::shape(format!(
                    "{what} must be rank 4, found {s:?}"
                ))),
                _ => Err(CompileError::shape(format!(
                    "internal: {what} has no inferred type"
                ))),
            }
        };
    let (q, t, qs) = operand(graph, 0, "Q")?;
    let (k, kt, ks) = operand(graph, 1, "K")?;
    let (v, vt, vs) = operand(graph, 2, "V")?;
    if kt != t || vt != t {
        return Err(CompileError::shape(format!(
            "Q, K and V must share a type, found {t}, {kt} and {vt}"
        )));
    }
    if !matches!(t, DType::F32 | DType::F64 | DType::F16) {
        return Err(CompileError::unsupported(format!("FlexAttention on {t}")));
    }
    let (b, hq, e) = (qs[0], qs[1], qs[3]);
    let (hkv, s) = (ks[1], ks[2]);
    if ks[0] != b || vs[0] != b || vs[1] != hkv || vs[2] != s || ks[3] != e {
        return Err(CompileError::shape(format!(
            "Q {qs:?}, K {ks:?} and V {vs:?} do not agree in batch, heads, sequence or head size"
        )));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(CompileError::shape(format!(
            "q_num_heads {hq} is not a multiple of kv_num_heads {hkv}"
        )));
    }
    let softmax_type = flex.softmax_precision.unwrap_or(if t == DType::F64 {
        DType::F64
    } else {
        DType::F32
    });
    let mm_type = if t == DType::F16 { DType::F32 } else { t };
    let mut x = Expansion {
        name: node.name.clone(),
        guards: node.guards.clone(),
        nodes: Vec::new(),
    };
    // sqrt(scale), computed in f32 and rounded to the input type.
    let scale = match flex.scale {
        Some(s) => s,
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_precision_loss,
            reason = "the reference rounds the default scale to f32"
        )]
        None => (1.0 / (e as f64).sqrt()) as f32,
    };
    let root = add_constant(
        graph,
        format!("{}/sqrt_scale", node.name),
        crate::ir::Tensor::from_numbers(t, vec![], &[f64::from(scale.sqrt())]),
    );
    let q_scaled = x.step(graph, "q_scaled", "Mul", 14, vec![q, root], vec![])?;
    let k_scaled = x.step(graph, "k_scaled", "Mul", 14, vec![k, root], vec![])?;
    // Grouped queries: each K/V head serves `hq / hkv` consecutive query heads.
    let align = |x: &mut Expansion, graph: &mut Graph, value: ValueId, size: usize, what: &str| {
        if hq == hkv {
            return Ok(value);
        }
        let s5 = x.dims(graph, &format!("{what}_5d"), &[b, hkv, 1, s, size])?;
        let e5 = x.dims(
            graph,
            &format!("{what}_expand"),
            &[b, hkv, hq / hkv, s, size],
        )?;
        let s4 = x.dims(graph, &format!("{what}_4d"), &[b, hq, s, size])?;
        let v5 = x.step(
            graph,
            &format!("{what}_unsqueezed"),
            "Reshape",
            21,
            vec![value, s5],
            vec![],
        )?;
        let ve = x.step(
            graph,
            &format!("{what}_expanded"),
            "Expand",
            13,
            vec![v5, e5],
            vec![],
        )?;
        x.step(
            graph,
            &format!("{what}_aligned"),
            "Reshape",
            21,
            vec![ve, s4],
            vec![],
        )
    };
    let k_aligned = align(&mut x, graph, k_scaled, e, "k")?;
    let v_aligned = align(&mut x, graph, v, vs[3], "v")?;
    let k_t = x.step(
        graph,
        "k_transposed",
        "Transpose",
        21,
        vec![k_aligned],
        vec![super::pattern::ints_attr("perm", &[0, 1, 3, 2])],
    )?;
    let q_mm = x.cast(graph, "q_mm", q_scaled, t, mm_type)?;
    let k_mm = x.cast(graph, "k_mm", k_t, t, mm_type)?;
    let mut scores = x.step(graph, "scores", "MatMul", 13, vec![q_mm, k_mm], vec![])?;
    scores = x.cast(graph, "scores_rounded", scores, mm_type, t)?;
    scores = x.cast(graph, "scores_softmax_type", scores, t, softmax_type)?;
    scores = x.apply(graph, flex.score_mod.as_deref(), scores, "score_mod")?;
    let mut probs = x.step(
        graph,
        "probs",
        "Softmax",
        13,
        vec![scores],
        vec![int_attr("axis", -1)],
    )?;
    probs = x.apply(graph, flex.prob_mod.as_deref(), probs, "prob_mod")?;
    let v_c = x.cast(graph, "v_softmax_type", v_aligned, t, softmax_type)?;
    let mut y = x.step(graph, "y", "MatMul", 13, vec![probs, v_c], vec![])?;
    y = x.cast(graph, "y_cast", y, softmax_type, t)?;
    if let Some(Some(out)) = node.outputs.first() {
        x.nodes.push(synth(
            format!("{}/output", node.name),
            "Identity",
            13,
            vec![y],
            vec![*out],
            Vec::new(),
            &node.guards,
        )?);
    }
    Ok(x.nodes)
}
