//! Control flow: `If` (opset 1..=21). An `If` is expanded during shape inference: with a
//! compile-time condition only the taken branch is imported; otherwise both branches are
//! imported with guards (each node runs only when the condition has its branch's value) and
//! an [`IfSelect`] per output picks the result. `Scan` (opset 8, without `sequence_lens`,
//! and 9+) is unrolled at compile time over its static sequence length. `Loop` is unrolled
//! too: while its trip count and condition are compile-time constants each iteration simply
//! runs; once either is only known at run time (a condition computed from the data, a trip
//! count computed from a bounded dim), the loop is unrolled up to the trip count's largest
//! value, each iteration under the guard of a run-time flag (the previous flag, the
//! condition and `index < trip count`), its carried values joined by [`IfSelect`], and its
//! scan outputs stacked by [`LoopStack`] with as many rows as iterations ran.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__If.html>.

use proc_macro2::TokenStream;
use quote::quote;

use super::{EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;
use crate::onnx::proto::GraphProto;

/// `If` with its two branches, still in protobuf form until expanded.
#[derive(Debug, Clone)]
pub struct If {
    /// Run when the condition is true.
    pub then_branch: Box<GraphProto>,
    /// Run when the condition is false.
    pub else_branch: Box<GraphProto>,
}

impl OpDef for If {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let branch = |name: &str| {
            node.attr(name)
                .and_then(|a| a.g.clone())
                .map(Box::new)
                .ok_or_else(|| CompileError::attribute(name, "required graph attribute is missing"))
        };
        Ok(Self {
            then_branch: branch("then_branch")?,
            else_branch: branch("else_branch")?,
        })
    }

    fn infer(&self, _cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Err(CompileError::shape(
            "internal: If must be expanded before shape inference",
        ))
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::shape(
            "internal: If must be expanded before code generation",
        ))
    }
}

/// `out = cond ? then_value : else_value` for a scalar boolean `cond`: joins the two branches
/// of a run-time `If` (only the taken branch's value was computed).
#[derive(Debug, Clone)]
pub struct IfSelect;

impl OpDef for IfSelect {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Ok(IfSelect)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (cond, a, b) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        if cond.dtype != DType::Bool || cond.shape.iter().product::<usize>() != 1 {
            return Err(CompileError::shape(format!(
                "If condition must be one bool, found {}{:?}",
                cond.dtype, cond.shape
            )));
        }
        if a.dtype != b.dtype || a.shape != b.shape {
            return Err(CompileError::unsupported(format!(
                "If branches whose outputs differ in type or shape ({}{:?} vs {}{:?}) with a run-time condition",
                a.dtype, a.shape, b.dtype, b.shape
            )));
        }
        Ok(vec![TypeShape::new(a.dtype, a.shape.to_vec())])
    }

    fn emit(&self, _cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (i0, i1, i2, o0) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.output(0),
        );
        Ok(quote! {
            if #i0[0] != 0 {
                #o0.copy_from_slice(#i1);
            } else {
                #o0.copy_from_slice(#i2);
            }
        })
    }
}

/// The join of a run-time `If` one of whose branches cannot run with the bound shapes: the
/// output is the valid branch's value, and the generated `run` reports an error when the
/// condition selects the other branch (`run_slices` returns it, `run` panics with it).
#[derive(Debug, Clone)]
pub struct IfTrap {
    /// The condition value that selects the branch that cannot run.
    pub taken_when: bool,
    /// Why that branch cannot run.
    pub reason: String,
}

impl OpDef for IfTrap {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Err(CompileError::shape(
            "internal: IfTrap is created by shape inference only",
        ))
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let value = cx.input(1)?;
        Ok(vec![TypeShape::new(value.dtype, value.shape.to_vec())])
    }

    fn emit(&self, _cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (i1, o0) = (names.input(1), names.output(0));
        Ok(quote!(#o0.copy_from_slice(#i1);))
    }
}

/// `Scan` (opset 8..=21), unrolled during shape inference: each step slices the scan inputs,
/// imports the body with the states and slices bound, and the scan outputs are stacked.
/// Opset 8 is batched (axis 0 of every input and output) with scan axis 1: each batch
/// element is unrolled on its own.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The body.
    pub body: Box<GraphProto>,
    /// How many of the inputs are scanned (the rest, first, are states).
    pub num_scan_inputs: usize,
    /// Per scan input: the axis iterated over (possibly negative).
    pub input_axes: Vec<i64>,
    /// Per scan input: iterate backwards.
    pub input_reverse: Vec<bool>,
    /// Per scan output: the axis stacked along (possibly negative).
    pub output_axes: Vec<i64>,
    /// Per scan output: stack backwards.
    pub output_reverse: Vec<bool>,
    /// Opset 8: input 0 is `sequence_lens` and everything has a leading batch axis.
    pub batched: bool,
}

impl OpDef for Scan {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let batched = node.opset() < 9;
        let body = node.attr("body").and_then(|a| a.g.clone()).ok_or_else(|| {
            CompileError::attribute("body", "required graph attribute is missing")
        })?;
        let m = node.usize_or("num_scan_inputs", 0)?;
        // Opset 8's `sequence_lens` input is neither a state nor scanned.
        let n_inputs = node.n_inputs().saturating_sub(usize::from(batched));
        let n_states = n_inputs.checked_sub(m).ok_or_else(|| {
            CompileError::attribute("num_scan_inputs", "exceeds the number of inputs")
        })?;
        let n_scan_outputs = body.output.len().checked_sub(n_states).ok_or_else(|| {
            CompileError::malformed("the Scan body has fewer outputs than states")
        })?;
        let flags = |name: &str, len: usize| -> Result<Vec<bool>> {
            Ok(match node.ints(name)? {
                Some(v) if v.len() == len => v.iter().map(|&d| d != 0).collect(),
                Some(v) => {
                    return Err(CompileError::attribute(
                        name,
                        format!("expected {len} values, found {}", v.len()),
                    ))
                }
                None => vec![false; len],
            })
        };
        let axes = |name: &str, len: usize| -> Result<Vec<i64>> {
            Ok(match node.ints(name)? {
                Some(v) if v.len() == len => v,
                Some(v) => {
                    return Err(CompileError::attribute(
                        name,
                        format!("expected {len} values, found {}", v.len()),
                    ))
                }
                None => vec![0; len],
            })
        };
        if batched {
            return Ok(Self {
                num_scan_inputs: m,
                input_axes: vec![0; m],
                input_reverse: flags("directions", m)?,
                output_axes: vec![0; n_scan_outputs],
                output_reverse: vec![false; n_scan_outputs],
                body: Box::new(body),
                batched,
            });
        }
        Ok(Self {
            num_scan_inputs: m,
            input_axes: axes("scan_input_axes", m)?,
            input_reverse: flags("scan_input_directions", m)?,
            output_axes: axes("scan_output_axes", n_scan_outputs)?,
            output_reverse: flags("scan_output_directions", n_scan_outputs)?,
            body: Box::new(body),
            batched,
        })
    }

    fn infer(&self, _cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Err(CompileError::shape(
            "internal: Scan must be unrolled before shape inference",
        ))
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::shape(
            "internal: Scan must be unrolled before code generation",
        ))
    }
}

/// `Loop` (opset 1..=21), unrolled during shape inference one iteration at a time: after each
/// iteration's body, a [`LoopStep`] marker checks the (folded) condition and trip count and
/// either imports the next iteration or finishes.
#[derive(Debug, Clone)]
pub struct Loop {
    /// The body.
    pub body: Box<GraphProto>,
}

impl OpDef for Loop {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let body = node.attr("body").and_then(|a| a.g.clone()).ok_or_else(|| {
            CompileError::attribute("body", "required graph attribute is missing")
        })?;
        Ok(Self {
            body: Box::new(body),
        })
    }

    fn infer(&self, _cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Err(CompileError::shape(
            "internal: Loop must be unrolled before shape inference",
        ))
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::shape(
            "internal: Loop must be unrolled before code generation",
        ))
    }
}

/// The state of a `Loop` being unrolled, carried by a marker node between iterations.
#[derive(Debug, Clone)]
pub struct LoopStep {
    /// The Loop's body.
    pub body: Box<GraphProto>,
    /// Iterations done.
    pub iteration: usize,
    /// The trip count, if any.
    pub max: Option<usize>,
    /// The condition for the next iteration, if any.
    pub cond: Option<crate::ir::ValueId>,
    /// The loop-carried values.
    pub carried: Vec<crate::ir::ValueId>,
    /// Each scan output's per-iteration values.
    pub scans: Vec<Vec<crate::ir::ValueId>>,
    /// The trip count when it is only known at run time (`max` is then its largest value).
    pub trip: Option<crate::ir::ValueId>,
    /// Per iteration imported: `None` when it certainly runs, else the run-time flag (a
    /// bool) that says whether it does. Once one iteration's flag is known only at run time,
    /// every later one's is too.
    pub ran: Vec<Option<crate::ir::ValueId>>,
    /// The outputs of the last iteration imported under a run-time flag, not yet joined with
    /// the values it would have replaced: its condition output, then its carried values.
    pub pending: Option<Vec<crate::ir::ValueId>>,
}

impl OpDef for LoopStep {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Err(CompileError::shape(
            "internal: LoopStep is created by shape inference only",
        ))
    }

    fn infer(&self, _cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Err(CompileError::shape(
            "internal: LoopStep is handled by shape inference",
        ))
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::shape("internal: LoopStep cannot be emitted"))
    }
}

/// The scan output of a `Loop` whose iteration count is only known at run time: inputs are
/// `n` run flags (bools, one per iteration unrolled) and then the `n` iterations' values; the
/// output stacks the values of the iterations that ran (the flags' leading `true`s) along a
/// new axis 0, whose run-time extent is that count and whose capacity is `n`.
#[derive(Debug, Clone)]
pub struct LoopStack;

impl LoopStack {
    /// Iterations unrolled: half the inputs.
    fn iterations(cx: &OpCx<'_>) -> Result<usize> {
        let n = cx.inputs.len() / 2;
        if n == 0 || cx.inputs.len() != 2 * n {
            return Err(CompileError::shape(
                "internal: LoopStack takes n flags and n values",
            ));
        }
        Ok(n)
    }
}

impl OpDef for LoopStack {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        super::internal_op(node)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let n = Self::iterations(cx)?;
        let first = cx.input(n)?;
        for k in 0..n {
            let flag = cx.input(k)?;
            if flag.dtype != DType::Bool || flag.shape.iter().product::<usize>() != 1 {
                return Err(CompileError::shape(
                    "internal: a LoopStack flag must be one bool",
                ));
            }
            let item = cx.input(n + k)?;
            if item.dtype != first.dtype || item.shape != first.shape {
                return Err(CompileError::unsupported(format!(
                    "a Loop scan output whose type or shape changes between iterations ({}{:?} vs {}{:?}) with a run-time trip count or condition",
                    first.dtype, first.shape, item.dtype, item.shape
                )));
            }
        }
        let mut shape = vec![n];
        shape.extend_from_slice(first.shape);
        let dynamic = (0..shape.len()).map(|a| a == 0).collect();
        Ok(vec![TypeShape::dynamic(first.dtype, shape, dynamic)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let n = Self::iterations(cx)?;
        let item = cx.input(n)?;
        let len = super::lit(item.shape.iter().product::<usize>());
        let dims = item.shape.iter().map(|&d| super::lit(d));
        let pairs: Vec<TokenStream> = (0..n)
            .map(|k| {
                let (flag, value) = (names.input(k), names.input(n + k));
                quote!((#flag, #value))
            })
            .collect();
        let (o0, os0) = (names.output(0), names.out_shape(0));
        Ok(quote! {
            let mut count = 0usize;
            for (flag, value) in [#(#pairs),*] {
                if flag[0] == 0 {
                    break;
                }
                #o0[count * #len..(count + 1) * #len].copy_from_slice(value);
                count += 1;
            }
            let #os0 = [count, #(#dims),*];
        })
    }
}
