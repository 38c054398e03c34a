//! Data movement: `Reshape`, `Flatten`, `Identity`, `Dropout` (inference), `Transpose`,
//! `Concat`, and `Constant`. Every type; all of them fold when their inputs are constant.
//!
//! Spec: <https://onnx.ai/onnx/operators/> (Reshape-5/13/14/19/21, Flatten-1/9/11/13/21,
//! Dropout-7/10/12/13, Transpose-1/13/21, Concat-4/11/13, Constant-1/9/11/12/13/19/21).

use proc_macro2::TokenStream;
use quote::quote;

use super::{lit, normalize_axis, usize_slice, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::{DType, Tensor};

/// Which same-data op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReshapeKind {
    /// `Reshape` with its shape input (or attribute before opset 5).
    Reshape {
        /// A 0 in the shape means 0, not "copy the input's dim" (opset 14).
        allow_zero: bool,
        /// The `shape` attribute of opset < 5.
        attr_shape: Option<Vec<i64>>,
    },
    /// `Flatten` at `axis`.
    Flatten {
        /// The axis.
        axis: i64,
    },
    /// `Identity`.
    Identity,
    /// `Dropout` in inference: identity, and a mask of ones if asked for.
    Dropout,
}

/// Ops whose output holds the input's elements unchanged, in order.
#[derive(Debug, Clone)]
pub struct Reshape {
    /// Which op.
    pub kind: ReshapeKind,
}

impl Reshape {
    fn out_shape(&self, cx: &OpCx<'_>) -> Result<Vec<usize>> {
        let x = cx.input(0)?;
        match &self.kind {
            ReshapeKind::Identity | ReshapeKind::Dropout => Ok(x.shape.to_vec()),
            ReshapeKind::Flatten { axis } => {
                let rank = x.shape.len();
                let a = if *axis == i64::try_from(rank).unwrap_or(i64::MAX) {
                    rank
                } else {
                    normalize_axis(*axis, rank, "axis")?
                };
                Ok(vec![
                    x.shape[..a].iter().product(),
                    x.shape[a..].iter().product(),
                ])
            }
            ReshapeKind::Reshape {
                allow_zero,
                attr_shape,
            } => {
                let spec = match attr_shape {
                    Some(s) => s.clone(),
                    None => cx.const_ints(1, "shape")?,
                };
                reshape_target(x.shape, &spec, *allow_zero)
            }
        }
    }
}

/// Resolves a Reshape target (`0` copies the input dim unless `allow_zero`, one `-1` is
/// inferred).
pub fn reshape_target(input: &[usize], spec: &[i64], allow_zero: bool) -> Result<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(*input.get(i).ok_or_else(|| {
                CompileError::shape(format!("shape {spec:?} copies dim {i} the input lacks"))
            })?),
            d if d >= 0 => out.push(usize::try_from(d).unwrap_or(usize::MAX)),
            _ => {
                return Err(CompileError::shape(format!(
                    "invalid target shape {spec:?}"
                )))
            }
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(CompileError::shape(format!(
                "cannot reshape {input:?} to {spec:?}"
            )));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(CompileError::shape(format!(
            "cannot reshape {input:?} ({total} elements) to {spec:?}"
        )));
    }
    Ok(out)
}

impl OpDef for Reshape {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let kind = match node.op_type() {
            "Reshape" => ReshapeKind::Reshape {
                allow_zero: node.i64_or("allowzero", 0)? != 0,
                attr_shape: if node.opset() < 5 {
                    node.ints("shape")?
                } else {
                    None
                },
            },
            "Flatten" => ReshapeKind::Flatten {
                axis: node.i64_or("axis", 1)?,
            },
            "Identity" => ReshapeKind::Identity,
            _ => {
                if node.opset() < 7 && node.i64_or("is_test", 0)? == 0 {
                    return Err(CompileError::unsupported(
                        "Dropout in training mode (is_test = 0)",
                    ));
                }
                ReshapeKind::Dropout
            }
        };
        Ok(Self { kind })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        let mut outs = vec![TypeShape::new(x.dtype, self.out_shape(cx)?)];
        if self.kind == ReshapeKind::Dropout {
            if let Some(mode) = cx.opt_input(2) {
                let training = mode.constant.and_then(Tensor::to_i64s).ok_or_else(|| {
                    CompileError::unsupported(
                        "Dropout training_mode must be a compile-time constant",
                    )
                })?;
                if training.first().copied().unwrap_or(0) != 0 {
                    return Err(CompileError::unsupported("Dropout in training mode"));
                }
            }
            outs.push(TypeShape::new(DType::Bool, x.shape.to_vec()));
        }
        Ok(outs)
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?.constant?;
        Some(self.out_shape(cx).map(|shape| {
            let mut outs = vec![x.reshaped(shape)];
            if self.kind == ReshapeKind::Dropout {
                outs.push(Tensor {
                    dtype: DType::Bool,
                    shape: x.shape.clone(),
                    bytes: vec![1; x.len()],
                });
            }
            outs
        }))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (i0, o0) = (names.input(0), names.output(0));
        let mut code = quote!(#o0.copy_from_slice(#i0););
        if cx.outputs.get(1).is_some_and(Option::is_some) {
            let o1 = names.output(1);
            code.extend(quote!(#o1.fill(1);));
        }
        Ok(code)
    }
}

/// `Transpose`.
#[derive(Debug, Clone)]
pub struct Transpose {
    /// The permutation (default: reversed axes).
    pub perm: Option<Vec<i64>>,
}

impl Transpose {
    fn perm(&self, rank: usize) -> Result<Vec<usize>> {
        let perm: Vec<usize> = match &self.perm {
            None => (0..rank).rev().collect(),
            Some(p) => p
                .iter()
                .map(|&a| normalize_axis(a, rank, "perm axis"))
                .collect::<Result<_>>()?,
        };
        let mut seen = vec![false; rank];
        for &a in &perm {
            if std::mem::replace(&mut seen[a], true) {
                return Err(CompileError::attribute(
                    "perm",
                    format!("{perm:?} is not a permutation"),
                ));
            }
        }
        if perm.len() != rank {
            return Err(CompileError::attribute(
                "perm",
                format!("{perm:?} does not match rank {rank}"),
            ));
        }
        Ok(perm)
    }
}

/// Permutes the elements of `bytes` (element size `size`, shape `shape`) by `perm`.
fn permute(bytes: &[u8], size: usize, shape: &[usize], perm: &[usize]) -> Vec<u8> {
    let rank = shape.len();
    let mut strides = vec![1; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n * size);
    let mut index = vec![0; rank];
    for _ in 0..n {
        let src: usize = index.iter().zip(perm).map(|(&i, &p)| i * strides[p]).sum();
        out.extend_from_slice(&bytes[src * size..][..size]);
        for axis in (0..rank).rev() {
            index[axis] += 1;
            if index[axis] < out_shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

impl OpDef for Transpose {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            perm: node.ints("perm")?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        let perm = self.perm(x.shape.len())?;
        Ok(vec![TypeShape::new(
            x.dtype,
            perm.iter().map(|&p| x.shape[p]).collect(),
        )])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?;
        let t = x.constant?;
        Some(self.perm(x.shape.len()).map(|perm| {
            let shape = perm.iter().map(|&p| x.shape[p]).collect();
            vec![Tensor {
                dtype: t.dtype,
                shape,
                bytes: permute(&t.bytes, t.dtype.size(), &t.shape, &perm),
            }]
        }))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let perm = usize_slice(&self.perm(x.shape.len())?);
        let shape = usize_slice(x.shape);
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote!(::sinter_rt::shape::transpose(#i0, #o0, #shape, #perm);))
    }
}

/// `Concat` along `axis`.
#[derive(Debug, Clone)]
pub struct Concat {
    /// The axis (possibly negative).
    pub axis: i64,
}

impl Concat {
    /// The normalized axis and the output shape.
    fn layout(&self, cx: &OpCx<'_>) -> Result<(usize, Vec<usize>)> {
        let first = cx.input(0)?;
        let rank = first.shape.len();
        let axis = normalize_axis(self.axis, rank, "axis")?;
        let mut shape = first.shape.to_vec();
        shape[axis] = 0;
        for (i, operand) in cx.inputs.iter().enumerate() {
            let x =
                operand.ok_or_else(|| CompileError::malformed(format!("input {i} is missing")))?;
            let same_elsewhere = x.shape.len() == rank
                && (0..rank).all(|a| a == axis || x.shape[a] == first.shape[a]);
            if x.dtype != first.dtype || !same_elsewhere {
                return Err(CompileError::shape(format!(
                    "input {i} ({}{:?}) does not fit input 0 ({}{:?}) along axis {axis}",
                    x.dtype, x.shape, first.dtype, first.shape
                )));
            }
            shape[axis] += x.shape[axis];
        }
        Ok((axis, shape))
    }
}

impl OpDef for Concat {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let axis = match node.i64_opt("axis")? {
            Some(a) => a,
            None if node.opset() < 4 => 1,
            None => return Err(CompileError::attribute("axis", "required")),
        };
        Ok(Self { axis })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (_, shape) = self.layout(cx)?;
        Ok(vec![TypeShape::new(cx.input(0)?.dtype, shape)])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let (axis, shape) = match self.layout(cx) {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        let dtype = cx.input(0).ok()?.dtype;
        let size = dtype.size();
        let outer: usize = shape[..axis].iter().product();
        let tensors: Vec<&Tensor> = cx
            .inputs
            .iter()
            .map(|o| o.and_then(|o| o.constant))
            .collect::<Option<_>>()?;
        let mut bytes = Vec::with_capacity(shape.iter().product::<usize>() * size);
        for o in 0..outer {
            for t in &tensors {
                let block: usize = t.shape[axis..].iter().product::<usize>() * size;
                bytes.extend_from_slice(&t.bytes[o * block..][..block]);
            }
        }
        Some(Ok(vec![Tensor {
            dtype,
            shape,
            bytes,
        }]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (axis, shape) = self.layout(cx)?;
        let outer: usize = shape[..axis].iter().product();
        let out_block: usize = shape[axis..].iter().product();
        let o0 = names.output(0);
        let mut code = TokenStream::new();
        let mut offset = 0;
        for (i, operand) in cx.inputs.iter().enumerate() {
            let Some(x) = operand else { continue };
            let in_block: usize = x.shape[axis..].iter().product();
            if in_block > 0 && outer > 0 {
                let input = names.input(i);
                let (outer, in_block_l, out_block, off) =
                    (lit(outer), lit(in_block), lit(out_block), lit(offset));
                code.extend(quote!(::sinter_rt::shape::concat_part(#input, #o0, #outer, #in_block_l, #out_block, #off);));
            }
            offset += in_block;
        }
        Ok(code)
    }
}

/// `Constant`: its value comes from one attribute.
#[derive(Debug, Clone)]
pub struct Constant {
    /// The value.
    pub value: Tensor,
}

impl OpDef for Constant {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let value = if let Some(t) = node.tensor("value")? {
            t
        } else if let Some(a) = node.attr("value_float") {
            Tensor::from_f32(vec![], &[a.f()])
        } else if let Some(v) = node.floats("value_floats")? {
            Tensor::from_f32(vec![v.len()], &v)
        } else if let Some(v) = node.i64_opt("value_int")? {
            Tensor::from_i64(vec![], &[v])
        } else if let Some(v) = node.ints("value_ints")? {
            Tensor::from_i64(vec![v.len()], &v)
        } else if node.attr("sparse_value").is_some() {
            return Err(CompileError::unsupported("Constant with a sparse value"));
        } else if node.attr("value_string").is_some() || node.attr("value_strings").is_some() {
            return Err(CompileError::unsupported("string constants"));
        } else {
            return Err(CompileError::attribute(
                "value",
                "a Constant needs one value attribute",
            ));
        };
        Ok(Self { value })
    }

    fn infer(&self, _cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Ok(vec![TypeShape::new(
            self.value.dtype,
            self.value.shape.clone(),
        )])
    }

    fn eval(&self, _cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        Some(Ok(vec![self.value.clone()]))
    }

    fn emit(&self, _cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        // Constants are folded before code generation; reaching here means they were not.
        let o0 = names.output(0);
        let n = lit(self.value.len());
        Err(CompileError::shape(format!(
            "internal: unfolded Constant ({n} elements into {o0})"
        )))
    }
}
