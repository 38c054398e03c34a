//! Data movement: `Reshape`, `Flatten`, `Identity`, `Dropout` (inference), `Transpose`,
//! `Concat`, `Constant`, `Squeeze`, `Unsqueeze`, `Split`, `Slice`, `Gather`,
//! `GatherElements`, `GatherND`, `ScatterElements` (and the deprecated `Scatter`),
//! `ScatterND`, `TensorScatter`, `Compress`, `NonZero`, `Unique`, `Expand`, `Tile`, `Pad`,
//! `CenterCropPad`, `Shape`, `Size`, `ConstantOfShape`, `Range`, `HannWindow`,
//! `HammingWindow`, `BlackmanWindow`, `Cast`, `CastLike`, `BitCast`, `DepthToSpace`,
//! `SpaceToDepth`, `Trilu`, `EyeLike`, `OneHot`, `CumSum`, `CumProd` and `ReverseSequence`.
//! Movement kernels are generic over the element type, so every supported type works.
//!
//! Spec: <https://onnx.ai/onnx/operators/> (Reshape-5/13/14/19/21, Flatten-1/9/11/13/21,
//! Dropout-7/10/12/13, Transpose-1/13/21, Concat-4/11/13, Constant-1/9/11/12/13/19/21,
//! Squeeze/Unsqueeze-1/11/13/21 (axes an input from 13), Split-1/2/11/13/18 (split an input
//! from 13, `num_outputs` from 18), Slice-1/10/11/13 (inputs from 10), Gather-1/11/13,
//! GatherElements-11/13, GatherND-11/12/13, ScatterElements-11/13/16/18, Scatter-9/11,
//! ScatterND-11/13/16/18, TensorScatter-24, Compress-9/11, NonZero-9/13, Unique-11,
//! Expand-8/13, Tile-6/13, Pad-1/2/11/13/18/19/21 (inputs from 11, axes from 18, wrap from
//! 19), CenterCropPad-18, Shape-1/13/15/19/21 (start/end from 15), Size-1/13/19/21,
//! ConstantOfShape-9/20/21, Range-11, HannWindow/HammingWindow/BlackmanWindow-17,
//! Cast-1/6/9/13/19/21/23/24/25, CastLike-15/19/21/23/24/25, BitCast-26,
//! DepthToSpace-1/11/13, SpaceToDepth-1/13, Trilu-14, EyeLike-9/22, OneHot-9/11,
//! CumSum-11/14, CumProd-26, ReverseSequence-10).
//!
//! Parameters that set output shapes (axes, starts/ends, pads, repeats, shapes, split sizes,
//! OneHot depth, Range bounds, window sizes, the Compress condition, the NonZero and Unique
//! inputs) must be compile-time constants; a run-time one is reported unsupported.
//! Parameters that do not (Gather/Scatter indices, Trilu `k`, CumSum axis, sequence lengths,
//! OneHot indices and values, the Pad value, TensorScatter write indices) may be run-time
//! values.
//! Shape and Size always fold, so shape arithmetic chains (Shape → Gather → Unsqueeze →
//! Concat → Reshape) resolve at compile time.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::{
    broadcast_shapes, broadcast_strides, f32_lit, lit, normalize_axis, require_dtype, rust_type,
    usize_slice, EmitNames, NodeCx, OpCx, OpDef, Operand, TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::{lowp, DType, Tensor};

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
    /// Whether the target shape is an input only known at run time: the output's rank is
    /// the target's length, its extents arrive with the target.
    fn run_time_target(&self, cx: &OpCx<'_>) -> bool {
        matches!(
            self.kind,
            ReshapeKind::Reshape {
                attr_shape: None,
                ..
            }
        ) && cx.opt_input(1).is_some_and(|t| t.constant.is_none())
    }

    /// The output axes whose target element is a bounded dim's size that may be 0 (then a
    /// copy of the input's axis, without allowzero): their capacity is the bound, which the
    /// copied extent must fit (see [`Self::ranged_target`]).
    fn sym_zero_axes(&self, cx: &OpCx<'_>) -> Vec<usize> {
        let ranges = cx.opt_input(1).and_then(|t| t.range).unwrap_or_default();
        if self.allow_zero() {
            return Vec::new();
        }
        ranges
            .iter()
            .enumerate()
            .filter(|(_, b)| b.sym.is_some() && b.lo == 0 && b.hi > 0)
            .map(|(a, _)| a)
            .collect()
    }

    /// Whether a `0` in the target is an extent rather than a copy of the input's axis.
    fn allow_zero(&self) -> bool {
        matches!(
            self.kind,
            ReshapeKind::Reshape {
                allow_zero: true,
                ..
            }
        )
    }

    /// A run-time target whose value ranges are tracked (shape arithmetic on bounded dims):
    /// an element whose range is one positive value is a fixed extent, `0` copies the
    /// input's axis, and the others vary at run time within their ranges. `None` when the
    /// ranges are unknown or would not hold the input's elements.
    fn ranged_target(&self, cx: &OpCx<'_>, rank: usize) -> Result<Option<TypeShape>> {
        let (x, target) = (cx.input(0)?, cx.input(1)?);
        let allow_zero = self.allow_zero();
        let Some(ranges) = target.range.filter(|r| r.len() == rank) else {
            return Ok(None);
        };
        let len: usize = x.shape.iter().product();
        let (mut shape, mut dynamic) = (Vec::with_capacity(rank), Vec::with_capacity(rank));
        let mut infer_at = None;
        // For a `-1`: the bounded dims the target's varying extents are, where known.
        let mut target_syms = Vec::new();
        let mut syms_known = true;
        for (a, b) in ranges.iter().enumerate() {
            match (b.lo, b.hi) {
                (0, 0) if !allow_zero => {
                    let xd = x.dynamic.get(a).copied().unwrap_or(false);
                    let xe = x.shape.get(a).copied().unwrap_or(1);
                    shape.push(xe);
                    dynamic.push(xd);
                    if xd {
                        match x.syms.get(a).copied().flatten() {
                            Some(sym) => target_syms.push(sym),
                            None => syms_known = false,
                        }
                    }
                }
                (v, w) if v == w && v > 0 => {
                    shape.push(usize::try_from(v).unwrap_or(usize::MAX));
                    dynamic.push(false);
                }
                (-1, -1) if infer_at.is_none() => {
                    infer_at = Some(a);
                    shape.push(1);
                    dynamic.push(true);
                }
                (v, w) if v >= 0 => {
                    // An extent up to `w`, or (when it may be 0 without allowzero) a copy of
                    // the input's axis. A bounded dim's size is 0 only when that dim is: its
                    // capacity stays the bound, and the generated code checks that a copied
                    // extent fits it (`Reshape::sym_zero_axes`).
                    let copied = if v == 0 && !allow_zero && b.sym.is_none() {
                        x.shape.get(a).copied().unwrap_or(1)
                    } else {
                        1
                    };
                    shape.push(usize::try_from(w).unwrap_or(usize::MAX).max(copied));
                    dynamic.push(true);
                    match b.sym {
                        Some(sym) => target_syms.push(sym),
                        None => syms_known = false,
                    }
                }
                // A range that may hold -1 (infer) as well as extents.
                _ => return Ok(None),
            }
        }
        if let Some(a) = infer_at {
            let fixed = fixed_product(&shape, &dynamic);
            shape[a] = len.div_ceil(fixed.max(1));
            // The input's elements are its fixed extents times its bounded dims; when the
            // target's varying extents are the same bounded dims, `-1` is the ratio of the
            // fixed parts (`fixed`: the target's), known now (and checked when the model runs).
            let mut input_syms = Vec::new();
            let mut input_fixed = 1usize;
            for (ax, (&e, &d)) in x
                .shape
                .iter()
                .zip(x.dynamic.iter().chain(std::iter::repeat(&false)))
                .enumerate()
            {
                if d {
                    match x.syms.get(ax).copied().flatten() {
                        Some(sym) => input_syms.push(sym),
                        None => syms_known = false,
                    }
                } else {
                    input_fixed = input_fixed.saturating_mul(e);
                }
            }
            input_syms.sort_unstable();
            target_syms.sort_unstable();
            if syms_known
                && input_syms == target_syms
                && fixed > 0
                && input_fixed.is_multiple_of(fixed)
            {
                shape[a] = input_fixed / fixed;
                dynamic[a] = false;
            } else if !x.is_dynamic() && dynamic.iter().filter(|&&d| d).count() == 1 {
                dynamic[a] = false;
                shape[a] = len / fixed.max(1);
            }
        }
        let capacity: usize = shape.iter().product();
        if capacity < len {
            return Ok(None);
        }
        if capacity > len {
            // The varying extents cannot all be at their largest at once (the elements are
            // the input's): as for a run-time input, the first takes what the fixed axes
            // leave, the others 1.
            spread_capacity(&mut shape, &dynamic, len);
        }
        Ok(Some(TypeShape::dynamic(x.dtype, shape, dynamic)))
    }

    /// The output of an input with run-time extents (and a target known at compile time):
    /// an axis is dynamic when it copies one (`0`), takes what is left (`-1`), or flattens
    /// one. The capacity keeps the input's elements.
    fn dynamic_input_type(&self, cx: &OpCx<'_>) -> Result<TypeShape> {
        let x = cx.input(0)?;
        let len: usize = x.shape.iter().product();
        let (mut shape, dynamic): (Vec<usize>, Vec<bool>) = match &self.kind {
            ReshapeKind::Identity | ReshapeKind::Dropout => (x.shape.to_vec(), x.dynamic.to_vec()),
            ReshapeKind::Flatten { axis } => {
                let a = flatten_axis(*axis, x.shape.len())?;
                (
                    vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()],
                    vec![
                        x.dynamic[..a].iter().any(|&d| d),
                        x.dynamic[a..].iter().any(|&d| d),
                    ],
                )
            }
            ReshapeKind::Reshape {
                allow_zero,
                attr_shape,
            } => {
                let spec = target_spec(attr_shape, cx)?;
                let mut shape = Vec::with_capacity(spec.len());
                let mut dynamic = Vec::with_capacity(spec.len());
                for (i, &d) in spec.iter().enumerate() {
                    let copies = d == 0 && !allow_zero;
                    dynamic.push(d == -1 || (copies && x.dynamic.get(i).copied().unwrap_or(false)));
                    shape.push(match d {
                        _ if copies => x.shape.get(i).copied().unwrap_or(1),
                        d if d > 0 => usize::try_from(d).unwrap_or(usize::MAX),
                        _ => 1,
                    });
                }
                (shape, dynamic)
            }
        };
        // Dynamic axes at their capacity may hold more than the input: the first one takes
        // what the fixed axes leave, the others 1.
        if dynamic.iter().any(|&d| d)
            && !matches!(self.kind, ReshapeKind::Identity | ReshapeKind::Dropout)
        {
            spread_capacity(&mut shape, &dynamic, len);
        }
        Ok(TypeShape::dynamic(x.dtype, shape, dynamic))
    }

    fn out_shape(&self, cx: &OpCx<'_>) -> Result<Vec<usize>> {
        let x = cx.input(0)?;
        match &self.kind {
            ReshapeKind::Identity | ReshapeKind::Dropout => Ok(x.shape.to_vec()),
            ReshapeKind::Flatten { axis } => {
                let a = flatten_axis(*axis, x.shape.len())?;
                Ok(vec![
                    x.shape[..a].iter().product(),
                    x.shape[a..].iter().product(),
                ])
            }
            ReshapeKind::Reshape {
                allow_zero,
                attr_shape,
            } => {
                let spec = target_spec(attr_shape, cx)?;
                reshape_target(x.shape, &spec, *allow_zero)
            }
        }
    }
}

/// The product of the extents of the axes that are not dynamic.
fn fixed_product(shape: &[usize], dynamic: &[bool]) -> usize {
    shape
        .iter()
        .zip(dynamic)
        .filter(|(_, &d)| !d)
        .map(|(&s, _)| s)
        .product()
}

/// Gives the dynamic axes of a value holding `len` elements their capacities: the first takes
/// what the fixed axes leave, the others 1 (their product then holds the elements).
fn spread_capacity(shape: &mut [usize], dynamic: &[bool], len: usize) {
    let fixed = fixed_product(shape, dynamic);
    let mut first = true;
    for (s, &d) in shape.iter_mut().zip(dynamic) {
        if d {
            *s = if first { len.div_ceil(fixed.max(1)) } else { 1 };
            first = false;
        }
    }
}

/// Flatten's split point: `axis` of a rank-`rank` input (`rank` itself allowed).
fn flatten_axis(axis: i64, rank: usize) -> Result<usize> {
    if axis == i64_of(rank) {
        Ok(rank)
    } else {
        normalize_axis(axis, rank, "axis")
    }
}

/// A Reshape's target: the attribute (opset < 5) or the constant shape input.
fn target_spec(attr_shape: &Option<Vec<i64>>, cx: &OpCx<'_>) -> Result<Vec<i64>> {
    match attr_shape {
        Some(s) => Ok(s.clone()),
        None => cx.const_ints(1, "shape"),
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

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        true
    }

    fn in_place_input(&self, cx: &OpCx<'_>) -> Option<usize> {
        // With run-time extents the node stays (it computes the output's shape), but its
        // output may be its input's buffer: the elements do not move.
        let (x, y) = (cx.input(0).ok()?, cx.output(0).ok()?);
        let mask = cx.outputs.get(1).is_some_and(Option::is_some);
        ((x.is_dynamic() || y.is_dynamic() || self.run_time_target(cx))
            && !mask
            && x.dtype == y.dtype)
            .then_some(0)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if x.is_dynamic() && !self.run_time_target(cx) {
            let mut outs = vec![self.dynamic_input_type(cx)?];
            if self.kind == ReshapeKind::Dropout {
                // The mask (all kept, in inference).
                outs.push(TypeShape::dynamic(
                    DType::Bool,
                    x.shape.to_vec(),
                    x.dynamic.to_vec(),
                ));
            }
            return Ok(outs);
        }
        if self.run_time_target(cx) {
            let target = cx.input(1)?;
            let rank = match target.shape {
                [r] => *r,
                _ => return Err(CompileError::shape("the shape input must be 1-D")),
            };
            if rank == 0 {
                return Err(CompileError::shape("a run-time Reshape target of rank 0"));
            }
            if rank > super::MAX_RANK {
                return Err(CompileError::shape(format!(
                    "a run-time Reshape target of rank {rank} (at most {})",
                    super::MAX_RANK
                )));
            }
            if let Some(t) = self.ranged_target(cx, rank)? {
                return Ok(vec![t]);
            }
            // Every extent is only known at run time; the elements are the input's.
            let mut capacity = vec![1; rank];
            capacity[0] = x.shape.iter().product();
            return Ok(vec![TypeShape::dynamic(
                x.dtype,
                capacity,
                vec![true; rank],
            )]);
        }
        let mut outs = vec![TypeShape::new(x.dtype, self.out_shape(cx)?)];
        if self.kind == ReshapeKind::Dropout {
            if let Some(mode) = cx.opt_input(2) {
                let training = mode.constant.and_then(Tensor::to_i64s).ok_or_else(|| {
                    CompileError::new(crate::error::ErrorKind::NotConstant(
                        "Dropout training_mode".into(),
                    ))
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
        let o0 = names.output(0);
        // In place (see `in_place_input`), the output already holds the input's elements.
        // (`n`, the element count the run-time paths compute, is then unused.)
        let copy = if names.in_place == Some(0) {
            quote!(let _ = (&#o0, n);)
        } else {
            let i0 = names.input(0);
            quote!(#o0[..n].copy_from_slice(&#i0[..n]);)
        };
        if self.run_time_target(cx) {
            let allow_zero = self.allow_zero();
            let out = cx.output(0)?;
            let rank = lit(out.shape.len());
            let (x_shape, i1) = (names.in_shape(cx, 0), names.input(1));
            let target = names.check(quote!(::sinter_rt::dynamic::reshape_target::<_, #rank>(
                &#x_shape, #i1, #allow_zero
            )));
            // Extents the compiler fixed from the target's ranges must hold at run time.
            let fixed: Vec<TokenStream> = out
                .shape
                .iter()
                .zip(out.dynamic)
                .enumerate()
                .filter(|(_, (_, &d))| !d)
                .map(|(a, (&e, _))| {
                    let (a, e) = (lit(a), lit(e));
                    quote!(shape[#a] == #e)
                })
                .chain(self.sym_zero_axes(cx).into_iter().filter_map(|a| {
                    let e = lit(*out.shape.get(a)?);
                    let a = lit(a);
                    Some(quote!(shape[#a] <= #e))
                }))
                .collect();
            let checked = if fixed.is_empty() {
                quote!(let shape: [usize; #rank] = #target;)
            } else {
                let ok = names.check(quote!(if #(#fixed)&&* {
                    Ok(())
                } else {
                    Err("Reshape: a run-time target differs from the extent its value range fixed, or exceeds its bound")
                }));
                quote!(let shape: [usize; #rank] = #target; #ok;)
            };
            let write_shape = if out.is_dynamic() {
                let os0 = names.out_shape(0);
                quote!(let #os0: [usize; #rank] = shape;)
            } else {
                TokenStream::new()
            };
            return Ok(quote! {
                #checked
                #write_shape
                let n: usize = shape.iter().product();
                #copy
            });
        }
        if cx.input(0)?.is_dynamic() {
            let is0 = names.in_shape(cx, 0);
            let os0 = names.out_shape(0);
            let rank = cx.output(0)?.shape.len();
            let shape = match &self.kind {
                ReshapeKind::Identity | ReshapeKind::Dropout => quote!(#is0),
                ReshapeKind::Flatten { axis } => {
                    let a = lit(flatten_axis(*axis, cx.input(0)?.shape.len())?);
                    quote!([#is0[..#a].iter().product::<usize>(), #is0[#a..].iter().product::<usize>()])
                }
                ReshapeKind::Reshape {
                    allow_zero,
                    attr_shape,
                } => {
                    let spec = target_spec(attr_shape, cx)?;
                    let (spec, r, allow_zero) =
                        (spec.iter().map(|&d| i64_lit(d)), lit(rank), *allow_zero);
                    names.check(quote!(::sinter_rt::dynamic::reshape_target::<i64, #r>(
                        &#is0, &[#(#spec),*], #allow_zero
                    )))
                }
            };
            let mask = if cx.outputs.get(1).is_some_and(Option::is_some) {
                let (o1, os1) = (names.output(1), names.out_shape(1));
                quote! {
                    #o1[..n].fill(1);
                    let #os1 = #os0;
                }
            } else {
                TokenStream::new()
            };
            return Ok(quote! {
                let #os0 = #shape;
                let n: usize = #os0.iter().product();
                #copy
                #mask
            });
        }
        let i0 = names.input(0);
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
    /// The permutation for an input of rank `rank`, validated.
    pub fn perm(&self, rank: usize) -> Result<Vec<usize>> {
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
        let dynamic = if x.is_dynamic() {
            perm.iter().map(|&p| x.dynamic[p]).collect()
        } else {
            Vec::new()
        };
        Ok(vec![TypeShape::dynamic(
            x.dtype,
            perm.iter().map(|&p| x.shape[p]).collect(),
            dynamic,
        )])
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        true
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
        let perm = self.perm(x.shape.len())?;
        if x.is_dynamic() {
            let (is0, os0) = (names.in_shape(cx, 0), names.out_shape(0));
            let (i0, o0) = (names.input(0), names.output(0));
            let dims = perm.iter().map(|&p| lit(p));
            let perm = usize_slice(&perm);
            return Ok(quote! {
                let #os0 = [#(#is0[#dims]),*];
                let n: usize = #os0.iter().product();
                ::sinter_rt::shape::transpose(&#i0[..n], &mut #o0[..n], &#is0, #perm);
            });
        }
        let perm = usize_slice(&perm);
        let shape = usize_slice(x.shape);
        let (i0, o0) = (names.input(0), names.output(0));
        if x.shape.iter().product::<usize>() >= MOVE_PARALLEL_MIN {
            // Big: moves of whole blocks split across threads (`transpose_exec` decides).
            let exec = names.exec();
            return Ok(quote!(::sinter_rt::shape::transpose_exec(#exec, #i0, #o0, #shape, #perm);));
        }
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
    /// With inputs of run-time extents: the axis, the output's capacity and its dynamic axes
    /// (the concatenation axis adds capacities; elsewhere a dynamic extent must meet the
    /// others at run time).
    fn dynamic_layout(&self, cx: &OpCx<'_>) -> Result<(usize, Vec<usize>, Vec<bool>)> {
        let first = cx.input(0)?;
        let rank = first.shape.len();
        let axis = normalize_axis(self.axis, rank, "axis")?;
        let mut shape = vec![0usize; rank];
        let mut dynamic = vec![false; rank];
        let mut fixed: Vec<Option<usize>> = vec![None; rank];
        for (i, operand) in cx.inputs.iter().enumerate() {
            let x =
                operand.ok_or_else(|| CompileError::malformed(format!("input {i} is missing")))?;
            if x.dtype != first.dtype || x.shape.len() != rank {
                return Err(CompileError::shape(format!(
                    "input {i} ({}{:?}) does not fit input 0 ({}{:?})",
                    x.dtype, x.shape, first.dtype, first.shape
                )));
            }
            for a in 0..rank {
                let dy = x.dynamic.get(a).copied().unwrap_or(false);
                if a == axis {
                    shape[a] += x.shape[a];
                    dynamic[a] |= dy;
                } else if dy {
                    shape[a] = shape[a].max(x.shape[a]);
                    dynamic[a] = true;
                } else {
                    if fixed[a].is_some_and(|f| f != x.shape[a]) {
                        return Err(CompileError::shape(format!(
                            "input {i} ({:?}) does not fit the others off axis {axis}",
                            x.shape
                        )));
                    }
                    fixed[a] = Some(x.shape[a]);
                }
            }
        }
        // A fixed extent decides the axis (a dynamic one must match it at run time).
        for a in 0..rank {
            if let (Some(f), true) = (fixed[a], a != axis) {
                shape[a] = f;
                dynamic[a] = false;
            }
        }
        Ok((axis, shape, dynamic))
    }

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
        if cx.inputs.iter().flatten().any(|o| o.is_dynamic()) {
            let (_, shape, dynamic) = self.dynamic_layout(cx)?;
            return Ok(vec![TypeShape::dynamic(cx.input(0)?.dtype, shape, dynamic)]);
        }
        let (_, shape) = self.layout(cx)?;
        Ok(vec![TypeShape::new(cx.input(0)?.dtype, shape)])
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        true
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
        if cx.inputs.iter().flatten().any(|o| o.is_dynamic()) {
            let (axis, shape, _) = self.dynamic_layout(cx)?;
            let (rank, a) = (lit(shape.len()), lit(axis));
            let n_in = cx.inputs.len();
            let shapes: Vec<TokenStream> = (0..n_in).map(|i| names.in_shape(cx, i)).collect();
            let locals: Vec<proc_macro2::Ident> =
                (0..n_in).map(|i| format_ident!("s{}", i)).collect();
            let joined = names.check(quote!(::sinter_rt::dynamic::concat_shape::<#rank>(
                &[#(&#locals[..]),*], #a
            )));
            let (o0, os0) = (names.output(0), names.out_shape(0));
            let parts = locals.iter().enumerate().map(|(i, local)| {
                let input = names.input(i);
                quote!({
                    let in_block: usize = #local[#a..].iter().product();
                    (&#input[..outer * in_block], in_block)
                })
            });
            let parts: Vec<TokenStream> = parts.collect();
            let exec = names.exec();
            // One pass over runs of output rows, split across threads when big (a KV cache
            // joined with the step's keys).
            return Ok(quote! {
                #(let #locals = #shapes;)*
                let #os0 = #joined;
                let outer: usize = #os0[..#a].iter().product();
                let out_block: usize = #os0[#a..].iter().product();
                ::sinter_rt::shape::concat_exec(#exec, &[#(#parts),*], #o0, outer, out_block);
            });
        }
        let (axis, shape) = self.layout(cx)?;
        let outer: usize = shape[..axis].iter().product();
        let out_block: usize = shape[axis..].iter().product();
        let o0 = names.output(0);
        if outer > 1 && outer * out_block >= MOVE_PARALLEL_MIN {
            // Big: one pass over runs of output rows, split across threads.
            let parts = cx.inputs.iter().enumerate().filter_map(|(i, operand)| {
                let block: usize = operand.as_ref()?.shape[axis..].iter().product();
                (block > 0).then(|| {
                    let (input, block) = (names.input(i), lit(block));
                    quote!((#input, #block))
                })
            });
            let parts: Vec<TokenStream> = parts.collect();
            let (exec, outer, out_block) = (names.exec(), lit(outer), lit(out_block));
            return Ok(quote! {
                ::sinter_rt::shape::concat_exec(#exec, &[#(#parts),*], #o0, #outer, #out_block);
            });
        }
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

/// Output elements from which a Concat or a Transpose splits across threads.
const MOVE_PARALLEL_MIN: usize = 1 << 16;

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

// ---- shared helpers of the shape ops below ----

/// The integers of constant input `i`, or none at all when the input has no elements (its
/// contents are then known even if it is a run-time value).
fn const_ints_or_empty(cx: &OpCx<'_>, i: usize, what: &str) -> Result<Vec<i64>> {
    let x = cx.input(i)?;
    if x.shape.contains(&0) {
        return Ok(Vec::new());
    }
    cx.const_ints(i, what)
}

/// Row-major strides of a shape.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut out = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        out[i] = out[i + 1] * shape[i + 1];
    }
    out
}

/// The coordinates of flat index `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        if shape[a] > 0 {
            c[a] = i % shape[a];
            i /= shape[a];
        }
    }
    c
}

/// A tensor of `shape` whose element `i` is element `src(i)` of `t` (zero where `None` or
/// out of range): the constant evaluation of every pure data-movement op.
fn pick(t: &Tensor, shape: Vec<usize>, src: impl Fn(usize) -> Option<usize>) -> Tensor {
    let size = t.dtype.size();
    let n: usize = shape.iter().product();
    let mut bytes = Vec::with_capacity(n * size);
    for i in 0..n {
        match src(i).and_then(|s| t.bytes.get(s * size..(s + 1) * size)) {
            Some(b) => bytes.extend_from_slice(b),
            None => bytes.resize(bytes.len() + size, 0),
        }
    }
    Tensor {
        dtype: t.dtype,
        shape,
        bytes,
    }
}

/// Resolves an index against a dimension (negative counts from the end).
fn resolve(index: i64, dim: usize) -> Option<usize> {
    let d = i64::try_from(dim).ok()?;
    let i = if index < 0 {
        index.checked_add(d)?
    } else {
        index
    };
    if (0..d).contains(&i) {
        usize::try_from(i).ok()
    } else {
        None
    }
}

/// An i64 from a usize dimension (saturating; dimensions fit in practice).
fn i64_of(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A dimension from a non-negative i64.
fn dim_of(v: i64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| CompileError::shape(format!("{what} {v} is negative")))
}

/// The types the index inputs of Gather/Scatter take.
const INDEX_TYPES: &[DType] = &[DType::I32, DType::I64];

/// An i64 literal.
fn i64_lit(v: i64) -> TokenStream {
    let l = proc_macro2::Literal::i64_suffixed(v);
    quote!(#l)
}

/// An isize slice constant.
fn isize_slice(values: &[i64]) -> TokenStream {
    let items = values
        .iter()
        .map(|&v| proc_macro2::Literal::i64_unsuffixed(v));
    quote!(&[#(#items),*])
}

// ---- Squeeze, Unsqueeze ----

/// `Squeeze` and `Unsqueeze` (axes as an attribute before opset 13, an input from 13).
#[derive(Debug, Clone)]
pub struct Squeeze {
    /// `Unsqueeze` rather than `Squeeze`.
    pub unsqueeze: bool,
    /// The `axes` attribute (opset < 13).
    pub attr_axes: Option<Vec<i64>>,
}

impl Squeeze {
    /// For an input with run-time extents: the output's capacity, its dynamic axes, and per
    /// output axis the input axis it comes from (`None` for an inserted unit axis). A
    /// `Squeeze` needs its axes, and a dynamic axis it removes must be 1 at run time.
    #[allow(clippy::type_complexity, reason = "three parallel per-axis lists")]
    fn dynamic_layout(&self, cx: &OpCx<'_>) -> Result<(Vec<usize>, Vec<bool>, Vec<Option<usize>>)> {
        let x = cx.input(0)?;
        let axes = match (&self.attr_axes, cx.opt_input(1)) {
            (Some(a), _) => a.clone(),
            (None, Some(_)) => const_ints_or_empty(cx, 1, "axes")?,
            (None, None) => Vec::new(),
        };
        let rank = x.shape.len();
        if self.unsqueeze {
            let out_rank = rank + axes.len();
            let mut mark = vec![false; out_rank];
            for &a in &axes {
                let a = normalize_axis(a, out_rank, "axis")?;
                if std::mem::replace(&mut mark[a], true) {
                    return Err(CompileError::attribute("axes", "repeated axis"));
                }
            }
            let mut next = 0;
            let source: Vec<Option<usize>> = mark
                .iter()
                .map(|&m| {
                    (!m).then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect();
            let shape = source.iter().map(|s| s.map_or(1, |a| x.shape[a])).collect();
            let dynamic = source
                .iter()
                .map(|s| s.is_some_and(|a| x.dynamic[a]))
                .collect();
            return Ok((shape, dynamic, source));
        }
        if axes.is_empty() {
            return Err(CompileError::unsupported(
                "Squeeze without axes of a value whose shape is only known at run time",
            ));
        }
        let mut drop = vec![false; rank];
        for &a in &axes {
            let a = normalize_axis(a, rank, "axis")?;
            if !x.dynamic[a] && x.shape[a] != 1 {
                return Err(CompileError::shape(format!(
                    "cannot squeeze axis {a} of size {}",
                    x.shape[a]
                )));
            }
            drop[a] = true;
        }
        let source: Vec<Option<usize>> = (0..rank).filter(|&a| !drop[a]).map(Some).collect();
        let shape = source.iter().flatten().map(|&a| x.shape[a]).collect();
        let dynamic = source.iter().flatten().map(|&a| x.dynamic[a]).collect();
        Ok((shape, dynamic, source))
    }

    fn out_shape(&self, cx: &OpCx<'_>) -> Result<Vec<usize>> {
        let x = cx.input(0)?;
        let axes = match (&self.attr_axes, cx.opt_input(1)) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(_)) => Some(const_ints_or_empty(cx, 1, "axes")?),
            (None, None) => None,
        };
        if self.unsqueeze {
            let axes = axes.ok_or_else(|| CompileError::attribute("axes", "required"))?;
            let rank = x.shape.len() + axes.len();
            let mut mark = vec![false; rank];
            for &a in &axes {
                let a = normalize_axis(a, rank, "axis")?;
                if std::mem::replace(&mut mark[a], true) {
                    return Err(CompileError::attribute("axes", "repeated axis"));
                }
            }
            let mut dims = x.shape.iter();
            Ok(mark
                .iter()
                .map(|&m| {
                    if m {
                        1
                    } else {
                        dims.next().copied().unwrap_or(1)
                    }
                })
                .collect())
        } else {
            let rank = x.shape.len();
            let mut drop = vec![false; rank];
            match axes {
                Some(axes) if !axes.is_empty() => {
                    for &a in &axes {
                        let a = normalize_axis(a, rank, "axis")?;
                        if x.shape[a] != 1 {
                            return Err(CompileError::shape(format!(
                                "cannot squeeze axis {a} of size {}",
                                x.shape[a]
                            )));
                        }
                        drop[a] = true;
                    }
                }
                _ => {
                    for (d, &s) in drop.iter_mut().zip(x.shape) {
                        *d = s == 1;
                    }
                }
            }
            Ok(x.shape
                .iter()
                .zip(&drop)
                .filter(|(_, &d)| !d)
                .map(|(&s, _)| s)
                .collect())
        }
    }
}

impl OpDef for Squeeze {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            unsqueeze: node.op_type() == "Unsqueeze",
            attr_axes: if node.opset() < 13 {
                node.ints("axes")?
            } else {
                None
            },
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if x.is_dynamic() {
            let (shape, dynamic, _) = self.dynamic_layout(cx)?;
            return Ok(vec![TypeShape::dynamic(x.dtype, shape, dynamic)]);
        }
        Ok(vec![TypeShape::new(x.dtype, self.out_shape(cx)?)])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?.constant?;
        Some(self.out_shape(cx).map(|s| vec![x.reshaped(s)]))
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        true
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (i0, o0) = (names.input(0), names.output(0));
        if cx.input(0)?.is_dynamic() {
            // The data unchanged; the shape gains or loses unit axes at run time.
            let (_, _, source) = self.dynamic_layout(cx)?;
            let (is0, os0) = (names.in_shape(cx, 0), names.out_shape(0));
            let mut checks = TokenStream::new();
            let dims = source.iter().map(|s| match s {
                Some(a) => {
                    let a = lit(*a);
                    quote!(#is0[#a])
                }
                None => quote!(1),
            });
            if !self.unsqueeze {
                let kept: Vec<usize> = source.iter().flatten().copied().collect();
                for a in (0..cx.input(0)?.shape.len()).filter(|a| !kept.contains(a)) {
                    let a = lit(a);
                    let check = names.check(quote!(::sinter_rt::dynamic::squeezable(#is0[#a])));
                    checks.extend(quote!(#check;));
                }
            }
            return Ok(quote! {
                #checks
                let #os0 = [#(#dims),*];
                let n: usize = #os0.iter().product();
                #o0[..n].copy_from_slice(&#i0[..n]);
            });
        }
        let code = quote!(#o0.copy_from_slice(#i0););
        finish(cx, names, code)
    }
}

// ---- Split ----

/// `Split` (sizes from the `split` attribute before opset 13, an input from 13, or equal
/// parts; `num_outputs` from opset 18).
#[derive(Debug, Clone)]
pub struct Split {
    /// The axis.
    pub axis: i64,
    /// The `split` attribute (opset < 13).
    pub attr_split: Option<Vec<i64>>,
    /// How many outputs the node has.
    pub n_outputs: usize,
}

impl Split {
    fn layout(&self, cx: &OpCx<'_>) -> Result<(usize, Vec<usize>)> {
        let x = cx.input(0)?;
        let axis = normalize_axis(self.axis, x.shape.len(), "axis")?;
        let dim = x.shape[axis];
        let given = match (&self.attr_split, cx.opt_input(1)) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(_)) => Some(const_ints_or_empty(cx, 1, "split")?),
            _ => None,
        };
        let sizes: Vec<usize> = match given {
            Some(s) if !s.is_empty() => s
                .iter()
                .map(|&v| dim_of(v, "split size"))
                .collect::<Result<_>>()?,
            _ => {
                let n = self.n_outputs.max(1);
                let chunk = dim.div_ceil(n);
                if dim % n != 0 && cx.opt_input(1).is_none() && self.attr_split.is_none() {
                    // Opset 18 `num_outputs`: equal chunks, the last one smaller.
                    (0..n)
                        .map(|k| chunk.min(dim.saturating_sub(k * chunk)))
                        .collect()
                } else {
                    vec![chunk; n]
                }
            }
        };
        if sizes.iter().sum::<usize>() != dim || sizes.len() != self.n_outputs {
            return Err(CompileError::shape(format!(
                "split sizes {sizes:?} do not cover dim {dim} with {} outputs",
                self.n_outputs
            )));
        }
        Ok((axis, sizes))
    }
}

impl OpDef for Split {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            axis: node.i64_or("axis", 0)?,
            attr_split: if node.opset() < 13 {
                node.ints("split")?
            } else {
                None
            },
            n_outputs: node.node.outputs.len(),
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        let (axis, sizes) = self.layout(cx)?;
        Ok(sizes
            .iter()
            .map(|&s| {
                let mut shape = x.shape.to_vec();
                shape[axis] = s;
                TypeShape::new(x.dtype, shape)
            })
            .collect())
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?;
        let t = x.constant?;
        let (axis, sizes) = match self.layout(cx) {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        let inner: usize = x.shape[axis + 1..].iter().product();
        let dim = x.shape[axis];
        let mut offset = 0;
        let mut outs = Vec::new();
        for &s in &sizes {
            let mut shape = x.shape.to_vec();
            shape[axis] = s;
            let off = offset;
            outs.push(pick(t, shape, |i| {
                let (o, rest) = (i / (s * inner), i % (s * inner));
                Some(o * dim * inner + off * inner + rest)
            }));
            offset += s;
        }
        Some(Ok(outs))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let x = cx.input(0)?;
            let (axis, sizes) = self.layout(cx)?;
            let outer: usize = x.shape[..axis].iter().product();
            let inner: usize = x.shape[axis + 1..].iter().product();
            let in_block = x.shape[axis] * inner;
            let mut code = TokenStream::new();
            let mut offset = 0;
            for (k, &s) in sizes.iter().enumerate() {
                if cx.outputs.get(k).is_some_and(Option::is_some) && s * inner * outer > 0 {
                    let (i0, o) = (names.input(0), names.output(k));
                    let (ol, ib, ob, off) =
                        (lit(outer), lit(in_block), lit(s * inner), lit(offset));
                    code.extend(
                        quote!(::sinter_rt::shape::split_part(#i0, #o, #ol, #ib, #ob, #off);),
                    );
                }
                offset += s * inner;
            }
            Ok(code)
        })()?;
        finish(cx, names, code)
    }
}

// ---- Slice ----

/// The `starts`, `ends` and optional `axes` attributes of Slice before opset 10.
pub type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

/// A slice's output shape, and per input axis its start and step.
type SlicePlan = (Vec<usize>, Vec<(i64, i64)>);

/// `Slice` (starts/ends/axes as attributes before opset 10, inputs from 10 with steps).
#[derive(Debug, Clone)]
pub struct Slice {
    /// Attributes of opset < 10: starts, ends, axes.
    pub attrs: Option<SliceAttrs>,
}

impl Slice {
    /// Whether an operand (starts, ends, axes, steps) is only known at run time.
    fn run_time_operands(&self, cx: &OpCx<'_>) -> bool {
        self.attrs.is_none()
            && (1..5).any(|i| cx.opt_input(i).is_some_and(|o| o.constant.is_none()))
    }

    /// Output shape, and per input axis the start and step.
    fn plan(&self, cx: &OpCx<'_>) -> Result<SlicePlan> {
        let x = cx.input(0)?;
        let (starts, ends, axes, steps) = match &self.attrs {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => (
                const_ints_or_empty(cx, 1, "starts")?,
                const_ints_or_empty(cx, 2, "ends")?,
                match cx.opt_input(3) {
                    Some(_) => Some(const_ints_or_empty(cx, 3, "axes")?),
                    None => None,
                },
                match cx.opt_input(4) {
                    Some(_) => Some(const_ints_or_empty(cx, 4, "steps")?),
                    None => None,
                },
            ),
        };
        let rank = x.shape.len();
        let axes: Vec<i64> = match axes {
            Some(a) if !a.is_empty() => a,
            _ => (0..i64_of(starts.len())).collect(),
        };
        let steps = steps
            .filter(|s| !s.is_empty())
            .unwrap_or(vec![1; axes.len()]);
        if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
            return Err(CompileError::shape(
                "starts, ends, axes and steps differ in length",
            ));
        }
        let mut shape = x.shape.to_vec();
        let mut plan: Vec<(i64, i64)> = vec![(0, 1); rank];
        let mut seen = vec![false; rank];
        for k in 0..axes.len() {
            let a = normalize_axis(axes[k], rank, "axis")?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(CompileError::shape("repeated slice axis"));
            }
            let d = i64_of(x.shape[a]);
            let step = steps[k];
            if step == 0 {
                return Err(CompileError::shape("slice step 0"));
            }
            let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
            let (mut s, mut e) = (fix(starts[k]), fix(ends[k]));
            let count: i128 = if d == 0 {
                s = 0;
                0
            } else if step > 0 {
                s = s.clamp(0, d);
                e = e.clamp(0, d);
                if e > s {
                    (i128::from(e) - i128::from(s) + i128::from(step) - 1) / i128::from(step)
                } else {
                    0
                }
            } else {
                s = s.clamp(0, d - 1);
                e = e.clamp(-1, d - 1);
                if s > e {
                    (i128::from(s) - i128::from(e) - i128::from(step) - 1) / -i128::from(step)
                } else {
                    0
                }
            };
            shape[a] = usize::try_from(count).unwrap_or(0);
            plan[a] = (if shape[a] == 0 { 0 } else { s }, step);
        }
        Ok((shape, plan))
    }

    /// The base offset and signed strides of the view.
    fn view(x_shape: &[usize], plan: &[(i64, i64)]) -> (i64, Vec<i64>) {
        let st = strides(x_shape);
        let base = plan
            .iter()
            .zip(&st)
            .map(|(&(s, _), &t)| s * i64_of(t))
            .sum();
        let steps = plan
            .iter()
            .zip(&st)
            .map(|(&(_, p), &t)| p.saturating_mul(i64_of(t)))
            .collect();
        (base, steps)
    }
}

impl OpDef for Slice {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let attrs = if node.opset() < 10 {
            Some((
                node.ints("starts")?
                    .ok_or_else(|| CompileError::attribute("starts", "required"))?,
                node.ints("ends")?
                    .ok_or_else(|| CompileError::attribute("ends", "required"))?,
                node.ints("axes")?,
            ))
        } else {
            None
        };
        Ok(Self { attrs })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if self.run_time_operands(cx) {
            let rank = x.shape.len();
            if rank == 0 {
                return Err(CompileError::shape("Slice of a scalar"));
            }
            // The sliced axes are only known at run time (any of them when the axes are), at
            // most the input's extents.
            let dynamic = match cx.opt_input(3) {
                Some(axes) if axes.constant.is_some() => {
                    let mut dynamic = vec![false; rank];
                    for a in cx.const_ints(3, "axes")? {
                        dynamic[normalize_axis(a, rank, "axis")?] = true;
                    }
                    dynamic
                }
                Some(_) => vec![true; rank],
                None => {
                    let k = cx.input(1)?.shape.iter().product::<usize>();
                    (0..rank).map(|a| a < k).collect()
                }
            };
            return Ok(vec![TypeShape::dynamic(x.dtype, x.shape.to_vec(), dynamic)]);
        }
        Ok(vec![TypeShape::new(x.dtype, self.plan(cx)?.0)])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?;
        let t = x.constant?;
        let (shape, plan) = match self.plan(cx) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let (base, steps) = Self::view(x.shape, &plan);
        let out_shape = shape.clone();
        Some(Ok(vec![pick(t, shape, |i| {
            let c = unravel(i, &out_shape);
            let off: i64 = base
                + c.iter()
                    .zip(&steps)
                    .map(|(&ci, &s)| i64_of(ci) * s)
                    .sum::<i64>();
            usize::try_from(off).ok()
        })]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        if self.run_time_operands(cx) {
            let x = cx.input(0)?;
            let (x_shape, rank) = (usize_slice(x.shape), lit(x.shape.len()));
            let (i0, i1, i2) = (names.input(0), names.input(1), names.input(2));
            let (axes, steps) = (names.opt_input(cx, 3), names.opt_input(cx, 4));
            let plan = names.check(quote!(::sinter_rt::dynamic::slice_plan::<_, #rank>(
                #x_shape, #i1, #i2, #axes, #steps
            )));
            let (o0, os0) = (names.output(0), names.out_shape(0));
            return finish(
                cx,
                names,
                quote! {
                    let (first, step, #os0) = #plan;
                    ::sinter_rt::dynamic::slice_copy(#i0, #x_shape, &first, &step, &#os0, #o0);
                },
            );
        }
        let code = (|| -> Result<TokenStream> {
            let x = cx.input(0)?;
            let (shape, plan) = self.plan(cx)?;
            if shape.contains(&0) {
                return Ok(TokenStream::new());
            }
            let (base, steps) = Self::view(x.shape, &plan);
            let base = lit(usize::try_from(base).unwrap_or(0));
            let (st, sh) = (isize_slice(&steps), usize_slice(&shape));
            let (i0, o0) = (names.input(0), names.output(0));
            Ok(quote!(::sinter_rt::shape::strided_copy(#i0, #o0, #sh, #base, #st);))
        })()?;
        finish(cx, names, code)
    }
}

// ---- Gather, GatherElements, GatherND, ScatterElements, ScatterND ----

/// Which indexing op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// `Gather`.
    Gather,
    /// `GatherElements`.
    GatherElements,
    /// `GatherND`.
    GatherNd,
    /// `ScatterElements` (and the deprecated `Scatter`).
    ScatterElements,
    /// `ScatterND`.
    ScatterNd,
}

/// How a scatter combines an update with the existing element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScatterReduction {
    /// Replace.
    None,
    /// Add.
    Add,
    /// Multiply.
    Mul,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
}

/// The gathers and scatters. Indices may be run-time values: negative ones count from the
/// end; out-of-range ones yield zeros (gathers) or are skipped (scatters) instead of failing.
#[derive(Debug, Clone)]
pub struct Indexing {
    /// Which op.
    pub kind: IndexKind,
    /// The axis (Gather/Elements) or `batch_dims` (GatherND).
    pub axis: i64,
    /// The scatter reduction.
    pub reduction: ScatterReduction,
}

impl Indexing {
    /// Output shape and the normalized axis / batch dims.
    fn layout(&self, cx: &OpCx<'_>) -> Result<(Vec<usize>, usize)> {
        let (x, idx) = (cx.input(0)?, cx.input(1)?);
        require_dtype(idx.dtype, INDEX_TYPES, "indices")?;
        let rank = x.shape.len();
        match self.kind {
            IndexKind::Gather => {
                let axis = normalize_axis(self.axis, rank, "axis")?;
                let mut shape = x.shape[..axis].to_vec();
                shape.extend_from_slice(idx.shape);
                shape.extend_from_slice(&x.shape[axis + 1..]);
                checked_len(&shape)?;
                Ok((shape, axis))
            }
            IndexKind::GatherElements | IndexKind::ScatterElements => {
                let axis = normalize_axis(self.axis, rank, "axis")?;
                if idx.shape.len() != rank {
                    return Err(CompileError::shape("indices rank differs from data rank"));
                }
                if self.kind == IndexKind::ScatterElements {
                    let u = cx.input(2)?;
                    if u.shape != idx.shape || u.dtype != x.dtype {
                        return Err(CompileError::shape("updates do not match indices"));
                    }
                    if (0..rank).any(|a| a != axis && idx.shape[a] > x.shape[a]) {
                        return Err(CompileError::shape("indices exceed the data shape"));
                    }
                    return Ok((x.shape.to_vec(), axis));
                }
                // Extents known only at run time are checked then.
                let fixed = |o: &Operand<'_>, a: usize| !o.dynamic.get(a).copied().unwrap_or(false);
                if (0..rank).any(|a| {
                    a != axis && fixed(&x, a) && fixed(&idx, a) && idx.shape[a] > x.shape[a]
                }) {
                    return Err(CompileError::shape("indices exceed the data shape"));
                }
                Ok((idx.shape.to_vec(), axis))
            }
            IndexKind::GatherNd => {
                let b = dim_of(self.axis, "batch_dims")?;
                let q = idx.shape.len();
                let k = idx.shape.last().copied().unwrap_or(0);
                if q == 0 || b >= q || b + k > rank || x.shape.get(..b) != idx.shape.get(..b) {
                    return Err(CompileError::shape(format!(
                        "GatherND indices {:?} do not fit data {:?} with batch_dims {b}",
                        idx.shape, x.shape
                    )));
                }
                let mut shape = idx.shape[..q - 1].to_vec();
                shape.extend_from_slice(&x.shape[b + k..]);
                Ok((shape, b))
            }
            IndexKind::ScatterNd => {
                let u = cx.input(2)?;
                let q = idx.shape.len();
                let k = idx.shape.last().copied().unwrap_or(0);
                let mut want = idx.shape[..q.saturating_sub(1)].to_vec();
                if q == 0 || k > rank {
                    return Err(CompileError::shape("ScatterND indices do not fit the data"));
                }
                want.extend_from_slice(&x.shape[k..]);
                if u.shape != want.as_slice() || u.dtype != x.dtype {
                    return Err(CompileError::shape(format!(
                        "ScatterND updates {:?} should be {want:?}",
                        u.shape
                    )));
                }
                Ok((x.shape.to_vec(), 0))
            }
        }
    }

    fn combine(&self, dtype: DType) -> Result<TokenStream> {
        let t = rust_type(dtype);
        let int = !dtype.is_float() && dtype != DType::Bool;
        // Floats combine in f32/f64; 16-bit floats widen to f32 and round back.
        let (w, n) = match dtype {
            DType::F16 => (
                quote!(::sinter_rt::half::f16_to_f32),
                quote!(::sinter_rt::half::f32_to_f16),
            ),
            DType::BF16 => (
                quote!(::sinter_rt::half::bf16_to_f32),
                quote!(::sinter_rt::half::f32_to_bf16),
            ),
            _ => (quote!((|v: #t| v)), quote!((|v: #t| v))),
        };
        Ok(match self.reduction {
            ScatterReduction::None => quote!(|_: #t, u: #t| u),
            _ if dtype == DType::Bool => {
                return Err(CompileError::unsupported(format!(
                    "scatter reduction {:?} on bool",
                    self.reduction
                )))
            }
            ScatterReduction::Add if int => quote!(|a: #t, u: #t| a.wrapping_add(u)),
            ScatterReduction::Mul if int => quote!(|a: #t, u: #t| a.wrapping_mul(u)),
            ScatterReduction::Max if int => quote!(|a: #t, u: #t| if u > a { u } else { a }),
            ScatterReduction::Min if int => quote!(|a: #t, u: #t| if u < a { u } else { a }),
            ScatterReduction::Add => quote!(|a: #t, u: #t| #n(#w(a) + #w(u))),
            ScatterReduction::Mul => quote!(|a: #t, u: #t| #n(#w(a) * #w(u))),
            // NaN propagates, as with numpy's maximum/minimum.
            ScatterReduction::Max => {
                quote!(|a: #t, u: #t| { let (x, y) = (#w(a), #w(u)); if y > x || y.is_nan() { u } else { a } })
            }
            ScatterReduction::Min => {
                quote!(|a: #t, u: #t| { let (x, y) = (#w(a), #w(u)); if y < x || y.is_nan() { u } else { a } })
            }
        })
    }
}

impl OpDef for Indexing {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let kind = match node.op_type() {
            "Gather" => IndexKind::Gather,
            "GatherElements" => IndexKind::GatherElements,
            "GatherND" => IndexKind::GatherNd,
            "ScatterND" => IndexKind::ScatterNd,
            _ => IndexKind::ScatterElements,
        };
        let axis = if kind == IndexKind::GatherNd {
            node.i64_or("batch_dims", 0)?
        } else {
            node.i64_or("axis", 0)?
        };
        let reduction = match node.string_or("reduction", "none")?.as_str() {
            "none" => ScatterReduction::None,
            "add" => ScatterReduction::Add,
            "mul" => ScatterReduction::Mul,
            "max" => ScatterReduction::Max,
            "min" => ScatterReduction::Min,
            other => {
                return Err(CompileError::attribute(
                    "reduction",
                    format!("unknown value {other:?}"),
                ))
            }
        };
        Ok(Self {
            kind,
            axis,
            reduction,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (x, idx) = (cx.input(0)?, cx.input(1)?);
        let (shape, axis) = self.layout(cx)?;
        if (x.is_dynamic() || idx.is_dynamic()) && self.kind == IndexKind::GatherElements {
            // The indices' shape.
            let dynamic = (0..idx.shape.len())
                .map(|a| idx.dynamic.get(a).copied().unwrap_or(false))
                .collect();
            return Ok(vec![TypeShape::dynamic(x.dtype, shape, dynamic)]);
        }
        if x.is_dynamic() || idx.is_dynamic() {
            // Gather: the data's axes around the gathered one, the indices' in its place.
            let flag = |o: &Operand<'_>, a: usize| o.dynamic.get(a).copied().unwrap_or(false);
            let dynamic = (0..axis)
                .map(|a| flag(&x, a))
                .chain((0..idx.shape.len()).map(|a| flag(&idx, a)))
                .chain((axis + 1..x.shape.len()).map(|a| flag(&x, a)))
                .collect();
            return Ok(vec![TypeShape::dynamic(x.dtype, shape, dynamic)]);
        }
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let (x, idx) = (cx.input(0).ok()?, cx.input(1).ok()?);
        let (t, it) = (x.constant?, idx.constant?);
        let (shape, axis) = match self.layout(cx) {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        let indices = it.to_i64s()?;
        match self.kind {
            IndexKind::Gather => {
                let inner: usize = x.shape[axis + 1..].iter().product();
                let dim = x.shape[axis];
                let n = indices.len();
                Some(Ok(vec![pick(t, shape, |i| {
                    let (o, rest) = (i / (n * inner).max(1), i % (n * inner).max(1));
                    let (j, r) = (rest / inner.max(1), rest % inner.max(1));
                    let k = resolve(*indices.get(j)?, dim)?;
                    Some((o * dim + k) * inner + r)
                })]))
            }
            IndexKind::GatherElements => {
                let st = strides(x.shape);
                let out_shape = shape.clone();
                Some(Ok(vec![pick(t, shape, |i| {
                    let c = unravel(i, &out_shape);
                    let k = resolve(*indices.get(i)?, x.shape[axis])?;
                    Some(
                        c.iter()
                            .enumerate()
                            .map(|(a, &ci)| (if a == axis { k } else { ci }) * st[a])
                            .sum(),
                    )
                })]))
            }
            _ => None,
        }
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        matches!(self.kind, IndexKind::Gather | IndexKind::GatherElements)
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        if self.kind == IndexKind::Gather
            && (cx.input(0)?.is_dynamic() || cx.input(1)?.is_dynamic())
        {
            // The layout from the run-time shapes; the kernel bounds-checks every index
            // against the run-time extent of the axis.
            let (_, axis) = self.layout(cx)?;
            let (xs, is) = (names.in_shape(cx, 0), names.in_shape(cx, 1));
            let (x_rank, i_rank) = (cx.input(0)?.shape.len(), cx.input(1)?.shape.len());
            let dims = (0..axis)
                .map(|a| {
                    let a = lit(a);
                    quote!(#xs[#a])
                })
                .chain((0..i_rank).map(|a| {
                    let a = lit(a);
                    quote!(#is[#a])
                }))
                .chain((axis + 1..x_rank).map(|a| {
                    let a = lit(a);
                    quote!(#xs[#a])
                }));
            let (i0, i1, o0, os0) = (
                names.input(0),
                names.input(1),
                names.output(0),
                names.out_shape(0),
            );
            let (a, a1) = (lit(axis), lit(axis + 1));
            return Ok(quote! {
                let #os0 = [#(#dims),*];
                let outer: usize = #xs[..#a].iter().product();
                let inner: usize = #xs[#a1..].iter().product();
                let (lx, li, n): (usize, usize, usize) =
                    (#xs.iter().product(), #is.iter().product(), #os0.iter().product());
                ::sinter_rt::shape::gather(&#i0[..lx], &#i1[..li], &mut #o0[..n], outer, #xs[#a], inner);
            });
        }
        if self.kind == IndexKind::GatherElements
            && (cx.input(0)?.is_dynamic() || cx.input(1)?.is_dynamic())
        {
            // The output has the indices' run-time shape; off the axis they must fit in the
            // data's (checked here), along it the kernel bounds-checks every index.
            let (_, axis) = self.layout(cx)?;
            let (xs, is) = (names.in_shape(cx, 0), names.in_shape(cx, 1));
            let rank = cx.input(0)?.shape.len();
            let fits = (0..rank).filter(|&a| a != axis).map(|a| {
                let a = lit(a);
                quote!(#is[#a] <= #xs[#a])
            });
            let fits: Vec<TokenStream> = fits.collect();
            let ok = if fits.is_empty() {
                TokenStream::new()
            } else {
                let check = names.check(quote!(if #(#fits)&&* {
                    Ok(())
                } else {
                    Err("GatherElements: the indices exceed the data's shape off the axis")
                }));
                quote!(#check;)
            };
            let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
            let write_shape = bind_out_shape(names, cx.output(0)?.dynamic, quote!(#is));
            let a = lit(axis);
            return Ok(quote! {
                #ok
                let (lx, n): (usize, usize) = (#xs.iter().product(), #is.iter().product());
                ::sinter_rt::shape::gather_elements(&#i0[..lx], &#i1[..n], &mut #o0[..n], &#xs, &#is, #a);
                #write_shape
            });
        }
        let code = (|| -> Result<TokenStream> {
            let (x, idx) = (cx.input(0)?, cx.input(1)?);
            let (shape, axis) = self.layout(cx)?;
            let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
            Ok(match self.kind {
                IndexKind::Gather => {
                    let outer = lit(x.shape[..axis].iter().product());
                    let dim = lit(x.shape[axis]);
                    let inner = lit(x.shape[axis + 1..].iter().product());
                    quote!(::sinter_rt::shape::gather(#i0, #i1, #o0, #outer, #dim, #inner);)
                }
                IndexKind::GatherElements => {
                    let (xs, is, a) = (usize_slice(x.shape), usize_slice(idx.shape), lit(axis));
                    quote!(::sinter_rt::shape::gather_elements(#i0, #i1, #o0, #xs, #is, #a);)
                }
                IndexKind::GatherNd => {
                    let q = idx.shape.len();
                    let k = idx.shape[q - 1];
                    let batch: usize = x.shape[..axis].iter().product();
                    let tuples: usize = idx.shape[axis..q - 1].iter().product();
                    let dims = usize_slice(&x.shape[axis..axis + k]);
                    let slice: usize = x.shape[axis + k..].iter().product();
                    let (b, t, s) = (lit(batch), lit(tuples), lit(slice));
                    let _ = shape;
                    quote!(::sinter_rt::shape::gather_nd(#i0, #i1, #o0, #b, #t, #dims, #s);)
                }
                IndexKind::ScatterElements => {
                    let i2 = names.input(2);
                    let f = self.combine(x.dtype)?;
                    let (xs, is, a) = (usize_slice(x.shape), usize_slice(idx.shape), lit(axis));
                    quote! {
                        #o0.copy_from_slice(#i0);
                        ::sinter_rt::shape::scatter_elements(#o0, #i1, #i2, #xs, #is, #a, #f);
                    }
                }
                IndexKind::ScatterNd => {
                    let i2 = names.input(2);
                    let f = self.combine(x.dtype)?;
                    let q = idx.shape.len();
                    let k = idx.shape[q - 1];
                    let tuples = lit(idx.shape[..q - 1].iter().product());
                    let dims = usize_slice(&x.shape[..k]);
                    let slice = lit(x.shape[k..].iter().product());
                    quote! {
                        #o0.copy_from_slice(#i0);
                        ::sinter_rt::shape::scatter_nd(#o0, #i1, #i2, #tuples, #dims, #slice, #f);
                    }
                }
            })
        })()?;
        finish(cx, names, code)
    }
}

// ---- TensorScatter ----

/// `TensorScatter` (KV-cache update along `axis`, linear or circular); write indices may
/// be run-time values.
#[derive(Debug, Clone)]
pub struct TensorScatter {
    /// The sequence axis.
    pub axis: i64,
    /// Circular mode.
    pub circular: bool,
}

impl OpDef for TensorScatter {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let mode = node.string_or("mode", "linear")?;
        if mode != "linear" && mode != "circular" {
            return Err(CompileError::attribute("mode", format!("unknown {mode:?}")));
        }
        Ok(Self {
            axis: node.i64_or("axis", -2)?,
            circular: mode == "circular",
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (past, update) = (cx.input(0)?, cx.input(1)?);
        let rank = past.shape.len();
        let axis = normalize_axis(self.axis, rank, "axis")?;
        let fits = axis >= 1
            && update.dtype == past.dtype
            && update.shape.len() == rank
            && (0..rank).all(|a| a == axis || update.shape[a] == past.shape[a])
            && update.shape[axis] <= past.shape[axis];
        if !fits {
            return Err(CompileError::shape(format!(
                "update {:?} does not fit past_cache {:?} along axis {axis}",
                update.shape, past.shape
            )));
        }
        if let Some(w) = cx.opt_input(2) {
            require_dtype(w.dtype, INDEX_TYPES, "write_indices")?;
            if w.shape != [past.shape[0]] {
                return Err(CompileError::shape(
                    "write_indices must have one entry per batch",
                ));
            }
        }
        Ok(vec![TypeShape::new(past.dtype, past.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (past, update) = (cx.input(0)?, cx.input(1)?);
        let axis = normalize_axis(self.axis, past.shape.len(), "axis")?;
        let outer: usize = past.shape[..axis].iter().product();
        let per_batch: usize = past.shape[1..axis].iter().product();
        let inner: usize = past.shape[axis + 1..].iter().product();
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        let write = match cx.opt_input(2) {
            Some(_) => {
                let i2 = names.input(2);
                quote!(#i2)
            }
            None => quote!(&[] as &[i64]),
        };
        let (ol, pb, ms, sq, il) = (
            lit(outer),
            lit(per_batch),
            lit(past.shape[axis]),
            lit(update.shape[axis]),
            lit(inner),
        );
        let circular = self.circular;
        let code = quote! {
            #o0.copy_from_slice(#i0);
            ::sinter_rt::shape::tensor_scatter(#o0, #i1, #write, #ol, #pb, #ms, #sq, #il, #circular);
        };
        finish(cx, names, code)
    }
}

// ---- Compress, NonZero ----

/// `Compress` (the condition must be a compile-time constant: it sets the output length) and
/// `NonZero` (folded; a run-time input is unsupported, its output length depends on data).
#[derive(Debug, Clone)]
pub struct Select {
    /// `NonZero` rather than `Compress`.
    pub nonzero: bool,
    /// Compress `axis` (`None`: the flattened input).
    pub axis: Option<i64>,
}

impl Select {
    /// Compress's layout: outer, axis length, inner, selected count (at most `n` when the
    /// condition is only known at run time).
    fn layout(&self, cx: &OpCx<'_>) -> Result<(usize, usize, usize, usize)> {
        let x = cx.input(0)?;
        // The condition sets the output shape.
        let cond = match cx.input(1)?.constant {
            Some(_) => Some(cx.const_ints(1, "Compress condition")?),
            None => None,
        };
        let (outer, n, inner) = match self.axis {
            None => (1, x.shape.iter().product(), 1),
            Some(a) => {
                let a = normalize_axis(a, x.shape.len(), "axis")?;
                (
                    x.shape[..a].iter().product(),
                    x.shape[a],
                    x.shape[a + 1..].iter().product(),
                )
            }
        };
        let count = match cond {
            Some(cond) => cond.iter().take(n).filter(|&&c| c != 0).count(),
            None => n.min(cx.input(1)?.shape.iter().product()),
        };
        Ok((outer, n, inner, count))
    }

    /// NonZero of a constant, folded.
    fn nonzero(&self, cx: &OpCx<'_>) -> Result<Tensor> {
        let x = cx.input(0)?;
        let Some(t) = x.constant else {
            return Err(CompileError::shape("internal: NonZero of a run-time value"));
        };
        let values = t.to_f64s();
        let hits: Vec<usize> = (0..values.len()).filter(|&i| values[i] != 0.0).collect();
        let rank = x.shape.len();
        let mut out = vec![0i64; rank * hits.len()];
        for (k, &i) in hits.iter().enumerate() {
            for (a, c) in unravel(i, x.shape).into_iter().enumerate() {
                out[a * hits.len() + k] = i64_of(c);
            }
        }
        Ok(Tensor::from_i64(vec![rank, hits.len()], &out))
    }
}

impl OpDef for Select {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            nonzero: node.op_type() == "NonZero",
            axis: node.i64_opt("axis")?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if self.nonzero {
            if x.constant.is_some() {
                let t = self.nonzero(cx)?;
                return Ok(vec![TypeShape::new(DType::I64, t.shape)]);
            }
            // As many hits as elements at most.
            return Ok(vec![TypeShape::dynamic(
                DType::I64,
                vec![x.shape.len(), x.shape.iter().product()],
                vec![false, true],
            )]);
        }
        let (_, _, _, count) = self.layout(cx)?;
        let run_time = cx.input(1)?.constant.is_none();
        let (shape, axis) = match self.axis {
            None => (vec![count], 0),
            Some(a) => {
                let a = normalize_axis(a, x.shape.len(), "axis")?;
                let mut s = x.shape.to_vec();
                s[a] = count;
                (s, a)
            }
        };
        if run_time {
            let dynamic = (0..shape.len()).map(|a| a == axis).collect();
            return Ok(vec![TypeShape::dynamic(x.dtype, shape, dynamic)]);
        }
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        if self.nonzero {
            return Some(self.nonzero(cx).map(|t| vec![t]));
        }
        None
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        if self.nonzero {
            if x.constant.is_some() {
                return Err(CompileError::shape(
                    "internal: NonZero should have been folded",
                ));
            }
            let t = rust_type(x.dtype);
            // Float zeros of either sign are zero; half floats compare their bits.
            let test = match x.dtype {
                DType::F32 | DType::F64 => quote!(|v: #t| v != 0.0),
                DType::F16 | DType::BF16 => quote!(|v: #t| v & 0x7fff != 0),
                _ => quote!(|v: #t| v != 0),
            };
            let (i0, o0, os0) = (names.input(0), names.output(0), names.out_shape(0));
            let (shape, rank) = (usize_slice(x.shape), lit(x.shape.len()));
            let code = quote! {
                let count = ::sinter_rt::dynamic::nonzero(#i0, #shape, #o0, #test);
                let #os0 = [#rank, count];
            };
            return finish(cx, names, code);
        }
        let (outer, n, inner, count) = self.layout(cx)?;
        let (ol, nl, il) = (lit(outer), lit(n), lit(inner));
        if cx.input(1)?.constant.is_none() {
            // The condition arrives at run time: the output's axis is its true count.
            let (i0, i1, o0, os0) = (
                names.input(0),
                names.input(1),
                names.output(0),
                names.out_shape(0),
            );
            let out_shape = match self.axis {
                None => quote!([count]),
                Some(a) => {
                    let a = normalize_axis(a, x.shape.len(), "axis")?;
                    super::shape_with_extent(x.shape, a, &quote!(count))
                }
            };
            let code = quote! {
                let count = ::sinter_rt::dynamic::count_true(#i1, #nl);
                ::sinter_rt::shape::compress(#i0, #i1, #o0, #ol, #nl, #il);
                let #os0 = #out_shape;
            };
            return finish(cx, names, code);
        }
        if count * outer * inner == 0 {
            return finish(cx, names, TokenStream::new());
        }
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        let code = quote!(::sinter_rt::shape::compress(#i0, #i1, #o0, #ol, #nl, #il););
        finish(cx, names, code)
    }
}

// ---- Unique ----

/// `Unique` on a compile-time constant (its output shapes depend on the data): folded.
/// Like numpy's `unique`: sorted ascending (or in order of first occurrence with
/// `sorted = 0`), over elements or, with `axis`, over whole slices compared
/// lexicographically.
#[derive(Debug, Clone)]
pub struct Unique {
    /// Sort the unique values.
    pub sorted: bool,
    /// Slices along this axis rather than elements of the flattened input.
    pub axis: Option<i64>,
}

impl Unique {
    /// The input viewed as `[outer, n, inner]` around the axis (`None`: flattened).
    fn layout(&self, shape: &[usize]) -> Result<(usize, usize, usize, Option<usize>)> {
        Ok(match self.axis {
            None => (1, shape.iter().product(), 1, None),
            Some(a) => {
                let a = normalize_axis(a, shape.len(), "axis")?;
                (
                    shape[..a].iter().product::<usize>(),
                    shape[a],
                    shape[a + 1..].iter().product::<usize>(),
                    Some(a),
                )
            }
        })
    }

    /// Unique of a constant, folded.
    fn value(&self, cx: &OpCx<'_>) -> Result<Vec<Tensor>> {
        let x = cx.input(0)?;
        let Some(t) = x.constant else {
            return Err(CompileError::shape("internal: Unique of a run-time value"));
        };
        let (outer, n, inner, axis) = match self.axis {
            None => (1, t.len(), 1, None),
            Some(a) => {
                let a = normalize_axis(a, x.shape.len(), "axis")?;
                (
                    x.shape[..a].iter().product::<usize>(),
                    x.shape[a],
                    x.shape[a + 1..].iter().product::<usize>(),
                    Some(a),
                )
            }
        };
        // Comparable element values: exact for integers, by value for floats.
        let ints = if t.dtype.is_float() {
            None
        } else {
            t.to_i64s()
        };
        let floats = t.to_f64s();
        let cmp_elem = |i: usize, j: usize| -> std::cmp::Ordering {
            match &ints {
                Some(v) => v[i].cmp(&v[j]),
                None => floats[i].total_cmp(&floats[j]),
            }
        };
        let cmp_slice = |a: usize, b: usize| -> std::cmp::Ordering {
            for o in 0..outer {
                for r in 0..inner {
                    let c = cmp_elem((o * n + a) * inner + r, (o * n + b) * inner + r);
                    if c.is_ne() {
                        return c;
                    }
                }
            }
            std::cmp::Ordering::Equal
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| cmp_slice(a, b).then(a.cmp(&b)));
        // Groups of equal slices: (first index, members).
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for &j in &order {
            match groups.last_mut() {
                Some((first, members)) if cmp_slice(*first, j).is_eq() => members.push(j),
                _ => groups.push((j, vec![j])),
            }
        }
        if !self.sorted {
            groups.sort_by_key(|g| g.0);
        }
        let u = groups.len();
        let mut inverse = vec![0i64; n];
        for (g, (_, members)) in groups.iter().enumerate() {
            for &m in members {
                inverse[m] = i64_of(g);
            }
        }
        let firsts: Vec<usize> = groups.iter().map(|g| g.0).collect();
        let y_shape = match axis {
            None => vec![u],
            Some(a) => {
                let mut s = x.shape.to_vec();
                s[a] = u;
                s
            }
        };
        let y = pick(t, y_shape, |i| {
            let (o, rest) = (i / (u * inner).max(1), i % (u * inner).max(1));
            let (g, r) = (rest / inner.max(1), rest % inner.max(1));
            Some((o * n + *firsts.get(g)?) * inner + r)
        });
        let firsts_i: Vec<i64> = firsts.iter().map(|&f| i64_of(f)).collect();
        let counts: Vec<i64> = groups.iter().map(|g| i64_of(g.1.len())).collect();
        Ok(vec![
            y,
            Tensor::from_i64(vec![u], &firsts_i),
            Tensor::from_i64(vec![n], &inverse),
            Tensor::from_i64(vec![u], &counts),
        ])
    }
}

impl OpDef for Unique {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            sorted: node.i64_or("sorted", 1)? != 0,
            axis: node.i64_opt("axis")?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if x.constant.is_some() {
            return Ok(self
                .value(cx)?
                .into_iter()
                .map(|t| TypeShape::new(t.dtype, t.shape))
                .collect());
        }
        if x.dtype.is_low_precision() {
            return Err(CompileError::unsupported(format!("Unique of {}", x.dtype)));
        }
        // At most every slice is unique: the capacities are the input's.
        let (_, n, _, axis) = self.layout(x.shape)?;
        let (y_shape, y_dynamic) = match axis {
            None => (vec![n], vec![true]),
            Some(a) => (
                x.shape.to_vec(),
                (0..x.shape.len()).map(|i| i == a).collect(),
            ),
        };
        Ok(vec![
            TypeShape::dynamic(x.dtype, y_shape, y_dynamic),
            TypeShape::dynamic(DType::I64, vec![n], vec![true]),
            TypeShape::new(DType::I64, vec![n]),
            TypeShape::dynamic(DType::I64, vec![n], vec![true]),
        ])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        Some(self.value(cx))
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        // The sort order and group numbers (2n), and room for the outputs not asked for.
        let (_, n, _, _) = self.layout(cx.input(0).ok()?.shape).ok()?;
        Some(TypeShape::new(DType::I64, vec![5 * n]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        if x.constant.is_some() {
            return Err(CompileError::shape(
                "internal: Unique of a constant should have been folded",
            ));
        }
        if cx.output(0).is_err() {
            return Err(CompileError::unsupported("Unique without its first output"));
        }
        let (outer, n, inner, axis) = self.layout(x.shape)?;
        let t = rust_type(x.dtype);
        let c = super::reduce::comparable(x.dtype);
        let cmp = if x.dtype.is_float() {
            quote!(|a: #t, b: #t| #c(a).total_cmp(&#c(b)))
        } else {
            quote!(|a: #t, b: #t| a.cmp(&b))
        };
        let scratch = names.scratch();
        let nl = lit(n);
        // Outputs 1-3, or a part of the scratch for those not asked for.
        let mut parts = Vec::new();
        for i in 1..4 {
            let ident = format_ident!("_p{}", i);
            let value = if cx.outputs.get(i).is_some_and(Option::is_some) {
                let o = names.output(i);
                quote!(#o)
            } else {
                quote!(#ident)
            };
            parts.push((ident, value));
        }
        let splits = parts
            .iter()
            .map(|(ident, _)| quote!(let (#ident, rest) = rest.split_at_mut(#nl);));
        let values: Vec<&TokenStream> = parts.iter().map(|p| &p.1).collect();
        let (first, inverse, counts) = (values[0], values[1], values[2]);
        let (i0, o0) = (names.input(0), names.output(0));
        let y_shape = match axis {
            None => quote!([u]),
            Some(a) => super::shape_with_extent(x.shape, a, &quote!(u)),
        };
        let mut shapes = TokenStream::new();
        for i in 0..4 {
            if i == 2 || !cx.outputs.get(i).is_some_and(Option::is_some) {
                continue;
            }
            let os = names.out_shape(i);
            shapes.extend(if i == 0 {
                quote!(let #os = #y_shape;)
            } else {
                quote!(let #os = [u];)
            });
        }
        let (outer, inner, sorted) = (lit(outer), lit(inner), self.sorted);
        let code = quote! {
            let (order, rest) = #scratch.split_at_mut(#nl * 2);
            #(#splits)*
            let _ = rest;
            let u = ::sinter_rt::dynamic::unique(
                #i0, #outer, #nl, #inner, #sorted, #cmp, order, #o0, #first, #inverse, #counts,
            );
            #shapes
        };
        finish(cx, names, code)
    }
}

// ---- Expand, Tile ----

/// `Expand` (numpy broadcast to a constant shape) and `Tile` (constant repeats).
#[derive(Debug, Clone)]
pub struct Repeat {
    /// `Tile` rather than `Expand`.
    pub tile: bool,
}

impl Repeat {
    /// For an `Expand` of an input with run-time extents, or to a shape only known at run
    /// time (whose value ranges bound it): the output's capacity and dynamic axes.
    fn run_time_expand(&self, cx: &OpCx<'_>) -> Result<Option<TypeShape>> {
        let (x, target) = (cx.input(0)?, cx.input(1)?);
        if self.tile || (!x.is_dynamic() && target.constant.is_some()) {
            return Ok(None);
        }
        let ranges: Vec<(i64, i64)> =
            match (target.constant.and_then(Tensor::to_i64s), target.range) {
                (Some(v), _) => v.into_iter().map(|d| (d, d)).collect(),
                (None, Some(r)) => r.iter().map(|b| (b.lo, b.hi)).collect(),
                (None, None) => {
                    return Err(CompileError::new(crate::error::ErrorKind::NotConstant(
                        "Expand shape (not computed from bounded dims)".into(),
                    )))
                }
            };
        let rank = ranges.len().max(x.shape.len());
        let (mut shape, mut dynamic) = (Vec::with_capacity(rank), Vec::with_capacity(rank));
        for axis in 0..rank {
            let (xd, xdyn) = match (axis + x.shape.len()).checked_sub(rank) {
                Some(a) => (x.shape[a], x.dynamic.get(a).copied().unwrap_or(false)),
                None => (1, false),
            };
            let (lo, hi) = match (axis + ranges.len()).checked_sub(rank) {
                Some(a) => ranges[a],
                None => (1, 1),
            };
            let hi = usize::try_from(hi.max(0)).unwrap_or(usize::MAX);
            let fixed_target = lo == i64::try_from(hi).unwrap_or(i64::MAX);
            // Fixed when the target fixes it above 1, or the input fixes it above 1, or both
            // are fixed.
            let fixed = (fixed_target && hi > 1) || (!xdyn && xd > 1) || (fixed_target && !xdyn);
            shape.push(if fixed && fixed_target && hi > 1 {
                hi
            } else if fixed && !xdyn && xd > 1 {
                xd
            } else {
                xd.max(hi)
            });
            dynamic.push(!fixed);
        }
        checked_len(&shape)?;
        Ok(Some(TypeShape::dynamic(x.dtype, shape, dynamic)))
    }

    fn out_shape(&self, cx: &OpCx<'_>) -> Result<Vec<usize>> {
        let x = cx.input(0)?;
        let v = const_ints_or_empty(cx, 1, if self.tile { "repeats" } else { "shape" })?;
        let v: Vec<usize> = v
            .iter()
            .map(|&d| dim_of(d, "dimension"))
            .collect::<Result<_>>()?;
        if self.tile {
            if v.len() != x.shape.len() {
                return Err(CompileError::shape("repeats length differs from the rank"));
            }
            let shape: Vec<usize> = x
                .shape
                .iter()
                .zip(&v)
                .map(|(&a, &b)| a.checked_mul(b))
                .collect::<Option<_>>()
                .ok_or_else(|| CompileError::shape("tiled shape overflows"))?;
            checked_len(&shape)?;
            Ok(shape)
        } else {
            let shape = broadcast_shapes(x.shape, &v)?;
            checked_len(&shape)?;
            Ok(shape)
        }
    }
}

impl OpDef for Repeat {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            tile: node.op_type() == "Tile",
        })
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        !self.tile
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        if let Some(t) = self.run_time_expand(cx)? {
            return Ok(vec![t]);
        }
        Ok(vec![TypeShape::new(
            cx.input(0)?.dtype,
            self.out_shape(cx)?,
        )])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?;
        let t = x.constant?;
        cx.input(1).ok()?.constant?;
        let shape = match self.out_shape(cx) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let out_shape = shape.clone();
        let tile = self.tile;
        let st = if tile {
            strides(x.shape)
        } else {
            broadcast_strides(x.shape, &shape)
        };
        let off = out_shape.len() - st.len();
        Some(Ok(vec![pick(t, shape, |i| {
            let c = unravel(i, &out_shape);
            Some(if tile {
                c.iter()
                    .zip(x.shape)
                    .zip(&st)
                    .map(|((&ci, &d), &s)| (ci % d.max(1)) * s)
                    .sum()
            } else {
                c[off..].iter().zip(&st).map(|(&ci, &s)| ci * s).sum()
            })
        })]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        if let Some(out) = self.run_time_expand(cx)? {
            let rank = lit(out.shape.len());
            let (x_shape, i0, i1, o0) = (
                names.in_shape(cx, 0),
                names.input(0),
                names.input(1),
                names.output(0),
            );
            let capacity = lit(out.shape.iter().product());
            let plan = names.check(quote!(::sinter_rt::dynamic::expand_plan::<#rank>(
                &x_shape, #i1, #capacity
            )));
            let write_shape = bind_out_shape(names, &out.dynamic, quote!(out));
            return finish(
                cx,
                names,
                quote! {
                    let x_shape = #x_shape;
                    let (out, strides) = #plan;
                    let (x_len, n): (usize, usize) =
                        (x_shape.iter().product(), out.iter().product());
                    ::sinter_rt::elementwise::broadcast_copy(
                        &#i0[..x_len], &strides, &mut #o0[..n], &out,
                    );
                    #write_shape
                },
            );
        }
        let code = (|| -> Result<TokenStream> {
            let x = cx.input(0)?;
            let shape = self.out_shape(cx)?;
            if shape.contains(&0) {
                return Ok(TokenStream::new());
            }
            let (i0, o0) = (names.input(0), names.output(0));
            let sh = usize_slice(&shape);
            Ok(if self.tile {
                let xs = usize_slice(x.shape);
                quote!(::sinter_rt::shape::tile(#i0, #o0, #xs, #sh);)
            } else {
                let st = usize_slice(&broadcast_strides(x.shape, &shape));
                quote!(::sinter_rt::elementwise::broadcast_copy(#i0, #st, #o0, #sh);)
            })
        })()?;
        finish(cx, names, code)
    }
}

// ---- Pad ----

/// `Pad`: constant, reflect, edge or wrap; pads (and value) as attributes before opset 11,
/// inputs from 11, `axes` from 18. The constant value may be a run-time input.
#[derive(Debug, Clone)]
pub struct Pad {
    /// `constant`, `reflect`, `edge` or `wrap`.
    pub mode: String,
    /// Attributes of opset < 11: pads and value.
    pub attrs: Option<(Vec<i64>, f32)>,
}

impl Pad {
    /// The output shape and the signed begin pads per axis.
    fn plan(&self, cx: &OpCx<'_>) -> Result<(Vec<usize>, Vec<i64>)> {
        let x = cx.input(0)?;
        let rank = x.shape.len();
        let pads = match &self.attrs {
            Some((p, _)) => p.clone(),
            None => cx.const_ints(1, "pads")?,
        };
        let axes: Vec<usize> = match cx.opt_input(3) {
            Some(_) if self.attrs.is_none() => const_ints_or_empty(cx, 3, "axes")?
                .iter()
                .map(|&a| normalize_axis(a, rank, "axis"))
                .collect::<Result<_>>()?,
            _ => (0..rank).collect(),
        };
        let n = axes.len();
        if pads.len() != 2 * n {
            return Err(CompileError::shape(format!(
                "pads has {} values for {n} axes",
                pads.len()
            )));
        }
        let mut begin = vec![0i64; rank];
        let mut shape = x.shape.to_vec();
        for (k, &a) in axes.iter().enumerate() {
            let (b, e) = (pads[k], pads[k + n]);
            begin[a] = b;
            let d = i64_of(x.shape[a])
                .checked_add(b)
                .and_then(|v| v.checked_add(e))
                .filter(|_| b.unsigned_abs() < 1 << 40 && e.unsigned_abs() < 1 << 40)
                .ok_or_else(|| CompileError::shape(format!("pads {b}, {e} out of range")))?;
            shape[a] = dim_of(d, "padded dimension")?;
            if self.mode != "constant" && x.shape[a] == 0 && shape[a] > 0 {
                return Err(CompileError::shape(format!(
                    "{} padding of an empty axis",
                    self.mode
                )));
            }
        }
        checked_len(&shape)?;
        Ok((shape, begin))
    }
}

impl OpDef for Pad {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let mode = node.string_or("mode", "constant")?;
        if !matches!(mode.as_str(), "constant" | "reflect" | "edge" | "wrap") {
            return Err(CompileError::unsupported(format!("Pad mode {mode:?}")));
        }
        let attrs = if node.opset() < 11 {
            let pads = node
                .ints(if node.opset() < 2 { "paddings" } else { "pads" })?
                .ok_or_else(|| CompileError::attribute("pads", "required"))?;
            Some((pads, node.f32_or("value", 0.0)?))
        } else {
            None
        };
        Ok(Self { mode, attrs })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if let Some((_, v)) = self.attrs {
            if v != 0.0 && x.dtype != DType::F32 {
                return Err(CompileError::unsupported(
                    "a non-zero pad value attribute on a non-float32 tensor",
                ));
            }
        }
        Ok(vec![TypeShape::new(x.dtype, self.plan(cx)?.0)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let x = cx.input(0)?;
            let (shape, begin) = self.plan(cx)?;
            if shape.contains(&0) {
                return Ok(TokenStream::new());
            }
            let t = rust_type(x.dtype);
            let value = match (&self.attrs, cx.opt_input(2)) {
                (Some((_, v)), _) if x.dtype == DType::F32 => f32_lit(*v),
                (None, Some(_)) if self.mode == "constant" => {
                    let i2 = names.input(2);
                    quote!(#i2.first().copied().unwrap_or_default())
                }
                _ => quote!(<#t>::default()),
            };
            let mode = match self.mode.as_str() {
                "reflect" => quote!(Reflect),
                "edge" => quote!(Edge),
                "wrap" => quote!(Wrap),
                _ => quote!(Constant),
            };
            let (xs, sh, b) = (
                usize_slice(x.shape),
                usize_slice(&shape),
                isize_slice(&begin),
            );
            let (i0, o0) = (names.input(0), names.output(0));
            Ok(quote! {
                let value: #t = #value;
                ::sinter_rt::shape::pad(#i0, #o0, #xs, #sh, #b, ::sinter_rt::shape::PadMode::#mode, value);
            })
        })()?;
        finish(cx, names, code)
    }
}

/// `CenterCropPad`: crops or zero-pads each listed axis symmetrically to a constant target
/// size (the extra element of an odd difference goes after), through the Pad kernel.
#[derive(Debug, Clone)]
pub struct CenterCropPad {
    /// The axes the shape input lists (default: all).
    pub axes: Option<Vec<i64>>,
}

impl CenterCropPad {
    fn plan(&self, cx: &OpCx<'_>) -> Result<(Vec<usize>, Vec<i64>)> {
        let x = cx.input(0)?;
        let rank = x.shape.len();
        let target = cx.const_ints(1, "shape")?;
        let axes: Vec<usize> = match &self.axes {
            Some(a) => a
                .iter()
                .map(|&a| normalize_axis(a, rank, "axis"))
                .collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if target.len() != axes.len() {
            return Err(CompileError::shape("shape length differs from the axes"));
        }
        let mut shape = x.shape.to_vec();
        let mut begin = vec![0i64; rank];
        for (&a, &t) in axes.iter().zip(&target) {
            let want = dim_of(t, "target size")?;
            let have = x.shape[a];
            begin[a] = if have > want {
                -i64_of((have - want) / 2)
            } else {
                i64_of((want - have) / 2)
            };
            shape[a] = want;
        }
        checked_len(&shape)?;
        Ok((shape, begin))
    }
}

impl OpDef for CenterCropPad {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            axes: node.ints("axes")?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Ok(vec![TypeShape::new(cx.input(0)?.dtype, self.plan(cx)?.0)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (shape, begin) = self.plan(cx)?;
        if shape.contains(&0) {
            return finish(cx, names, TokenStream::new());
        }
        let t = rust_type(x.dtype);
        let (xs, sh, b) = (
            usize_slice(x.shape),
            usize_slice(&shape),
            isize_slice(&begin),
        );
        let (i0, o0) = (names.input(0), names.output(0));
        let code = quote!(::sinter_rt::shape::pad(#i0, #o0, #xs, #sh, #b, ::sinter_rt::shape::PadMode::Constant, <#t>::default()););
        finish(cx, names, code)
    }
}

// ---- Shape, Size ----

/// `Shape` (with `start`/`end` from opset 15) and `Size`: always known at compile time, so
/// they fold even when their input is a run-time value.
#[derive(Debug, Clone)]
pub struct ShapeOf {
    /// `Size` rather than `Shape`.
    pub size: bool,
    /// `start`.
    pub start: i64,
    /// `end`.
    pub end: Option<i64>,
}

impl ShapeOf {
    /// The axes `Shape` reports (`start..end`, clamped to the rank).
    fn range(&self, rank: usize) -> std::ops::Range<usize> {
        let r = i64_of(rank);
        let fix = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r);
        let s = usize::try_from(fix(self.start)).unwrap_or(0);
        let e = usize::try_from(fix(self.end.unwrap_or(r))).unwrap_or(0);
        s..e.max(s)
    }

    fn value(&self, cx: &OpCx<'_>) -> Result<Tensor> {
        let x = cx.input(0)?;
        if self.size {
            return Ok(Tensor::from_i64(
                vec![],
                &[i64_of(x.shape.iter().product())],
            ));
        }
        let dims: Vec<i64> = x
            .shape
            .get(self.range(x.shape.len()))
            .unwrap_or(&[])
            .iter()
            .map(|&d| i64_of(d))
            .collect();
        Ok(Tensor::from_i64(vec![dims.len()], &dims))
    }
}

impl OpDef for ShapeOf {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            size: node.op_type() == "Size",
            start: node.i64_or("start", 0)?,
            end: node.i64_opt("end")?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let v = self.value(cx)?;
        Ok(vec![TypeShape::new(DType::I64, v.shape)])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        if cx.input(0).ok()?.is_dynamic() {
            // The shape is only known at run time: computed there.
            return None;
        }
        Some(self.value(cx).map(|v| vec![v]))
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        true
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        if x.is_dynamic() {
            let (is0, o0) = (names.in_shape(cx, 0), names.output(0));
            if self.size {
                return Ok(quote!(#o0[0] = #is0.iter().product::<usize>() as i64;));
            }
            let range = self.range(x.shape.len());
            let (from, to) = (lit(range.start), lit(range.end));
            return Ok(quote! {
                for (o, &d) in #o0.iter_mut().zip(&#is0[#from..#to]) {
                    *o = d as i64;
                }
            });
        }
        let code = (|| -> Result<TokenStream> {
            let v = self.value(cx)?.as_i64().unwrap_or_default();
            let o0 = names.output(0);
            let items = v.iter().map(|&d| i64_lit(d));
            Ok(quote!(#o0.copy_from_slice(&[#(#items),*]);))
        })()?;
        finish(cx, names, code)
    }
}

// ---- ConstantOfShape, Range ----

/// `ConstantOfShape` (value attribute, default float32 0) and `Range` (constant inputs only:
/// the output length depends on them).
#[derive(Debug, Clone)]
pub struct Generate {
    /// The fill value of `ConstantOfShape`; `None` for `Range`.
    pub value: Option<Tensor>,
}

impl Generate {
    /// ConstantOfShape's output shape.
    fn shape(cx: &OpCx<'_>) -> Result<Vec<usize>> {
        let shape: Vec<usize> = const_ints_or_empty(cx, 0, "shape")?
            .iter()
            .map(|&d| dim_of(d, "dimension"))
            .collect::<Result<_>>()?;
        checked_len(&shape)?;
        Ok(shape)
    }

    /// The fill value, checked to hold one element.
    /// The one-element value a `ConstantOfShape` repeats (`None` for `Range`).
    pub fn constant_fill(&self) -> Option<&Tensor> {
        self.fill().ok().flatten()
    }

    /// For a `Range` whose start or limit is only known at run time: the capacity of its
    /// output, from the operands' value ranges (integers, a constant nonzero delta).
    fn run_time_range(&self, cx: &OpCx<'_>) -> Result<Option<usize>> {
        if self.value.is_some() || cx.all_constant() {
            return Ok(None);
        }
        let dtype = cx.input(0)?.dtype;
        let not_constant = |what: &str| {
            CompileError::new(crate::error::ErrorKind::NotConstant(format!(
                "Range {what} (only integer ranges with a constant delta and a start and limit \
                 computed from bounded dims take run-time operands)"
            )))
        };
        if !matches!(dtype, DType::I64 | DType::I32) {
            return Err(not_constant("input 0"));
        }
        let delta = cx
            .input(2)?
            .constant
            .and_then(Tensor::to_i64s)
            .and_then(|v| v.first().copied())
            .filter(|&d| d != 0)
            .ok_or_else(|| not_constant("delta"))?;
        let interval = |i: usize, what: &str| -> Result<(i64, i64)> {
            let o = cx.input(i)?;
            if o.dtype != dtype || o.shape.iter().product::<usize>() != 1 {
                return Err(CompileError::shape(
                    "Range inputs must be scalars of one type",
                ));
            }
            match (o.constant.and_then(Tensor::to_i64s), o.range) {
                (Some(v), _) => Ok((v[0], v[0])),
                (None, Some([r])) => Ok((r.lo, r.hi)),
                _ => Err(not_constant(what)),
            }
        };
        let (start, limit) = (interval(0, "start")?, interval(1, "limit")?);
        let span = if delta > 0 {
            i128::from(limit.1) - i128::from(start.0)
        } else {
            i128::from(start.1) - i128::from(limit.0)
        };
        let step = i128::from(delta).abs();
        let capacity = usize::try_from(((span + step - 1) / step).max(0)).unwrap_or(usize::MAX);
        if capacity > FOLD_LIMIT {
            return Err(CompileError::unsupported("Range output over 2^20 elements"));
        }
        Ok(Some(capacity))
    }

    /// For a `ConstantOfShape` whose shape is only known at run time (shape arithmetic on
    /// bounded dims): the output's capacity (each dimension's largest value, from the
    /// operand's value ranges) and which dimensions vary.
    fn run_time_fill(&self, cx: &OpCx<'_>) -> Result<Option<(Vec<usize>, Vec<bool>)>> {
        let shape = cx.input(0)?;
        if self.value.is_none() || shape.constant.is_some() {
            return Ok(None);
        }
        let ranges = shape
            .range
            .filter(|r| r.len() == shape.shape.iter().product::<usize>())
            .ok_or_else(|| {
                CompileError::new(crate::error::ErrorKind::NotConstant(
                    "shape (input 0), which is neither a constant nor computed from bounded dims,"
                        .into(),
                ))
            })?;
        let capacity: Vec<usize> = ranges
            .iter()
            .map(|b| usize::try_from(b.hi.max(0)).unwrap_or(usize::MAX))
            .collect();
        checked_len(&capacity)?;
        let dynamic = ranges.iter().map(|b| !b.is_exact()).collect();
        Ok(Some((capacity, dynamic)))
    }

    fn fill(&self) -> Result<Option<&Tensor>> {
        match &self.value {
            Some(v) if v.len() != 1 => {
                Err(CompileError::attribute("value", "must hold one element"))
            }
            v => Ok(v.as_ref()),
        }
    }
}

/// Constant outputs larger than this many elements are computed at run time instead.
const FOLD_LIMIT: usize = 1 << 20;

/// The same for ConstantOfShape, whose output repeats one value: folded much further, since
/// the planner fills such constants once in `Model::new()` instead of storing them (the onnx
/// package's light models build every weight this way, up to VGG-19's 100M-element layer).
const UNIFORM_FOLD_LIMIT: usize = 1 << 28;

/// The element count of a shape, or an error when it overflows.
fn checked_len(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| CompileError::shape(format!("shape {shape:?} is too large")))
}

/// `Range` on constant scalars.
fn range(cx: &OpCx<'_>) -> Result<Tensor> {
    let dtype = cx.input(0)?.dtype;
    let scalar = |i: usize| -> Result<Tensor> {
        let op = cx.input(i)?;
        let t = op.constant.ok_or_else(|| {
            CompileError::new(crate::error::ErrorKind::NotConstant(format!(
                "Range input {i}"
            )))
        })?;
        if t.len() != 1 || op.dtype != dtype {
            return Err(CompileError::shape(
                "Range inputs must be scalars of one type",
            ));
        }
        Ok(t.clone())
    };
    let (s, l, d) = (scalar(0)?, scalar(1)?, scalar(2)?);
    let count = |n: f64| -> Result<usize> {
        if !n.is_finite() {
            return Err(CompileError::shape("Range with a non-finite length"));
        }
        let c = n.ceil().max(0.0);
        if c > FOLD_LIMIT as f64 {
            return Err(CompileError::unsupported("Range output over 2^20 elements"));
        }
        Ok(c as usize)
    };
    match dtype {
        DType::F16 | DType::BF16 => {
            let first = |t: &Tensor| t.to_f64s().first().copied().unwrap_or(0.0);
            let (s, l, d) = (first(&s), first(&l), first(&d));
            let n = count((l - s) / d)?;
            let bytes = (0..n)
                .flat_map(|k| half_bits(s + k as f64 * d, dtype == DType::BF16).to_le_bytes())
                .collect();
            Ok(Tensor {
                dtype,
                shape: vec![n],
                bytes,
            })
        }
        DType::F32 | DType::F64 => {
            let first = |t: &Tensor| t.to_f64s().first().copied().unwrap_or(0.0);
            let (s, l, d) = (first(&s), first(&l), first(&d));
            if dtype == DType::F32 {
                let (s, l, d) = (s as f32, l as f32, d as f32);
                let n = count(f64::from((l - s) / d))?;
                let v: Vec<f32> = (0..n).map(|k| s + k as f32 * d).collect();
                Ok(Tensor::from_f32(vec![n], &v))
            } else {
                let n = count((l - s) / d)?;
                let v: Vec<f64> = (0..n).map(|k| s + k as f64 * d).collect();
                Ok(Tensor::from_f64(vec![n], &v))
            }
        }
        DType::I16 | DType::I32 | DType::I64 => {
            let get = |t: &Tensor| t.to_i64s().and_then(|v| v.first().copied()).unwrap_or(0);
            let (s, l, d) = (get(&s), get(&l), get(&d));
            if d == 0 {
                return Err(CompileError::shape("Range delta 0"));
            }
            let span = i128::from(l) - i128::from(s);
            let n = if (span > 0) == (d > 0) && span != 0 {
                (span.abs() + i128::from(d).abs() - 1) / i128::from(d).abs()
            } else {
                0
            };
            if n > FOLD_LIMIT as i128 {
                return Err(CompileError::unsupported("Range output over 2^20 elements"));
            }
            let n = usize::try_from(n).unwrap_or(0);
            let v: Vec<i64> = (0..n)
                .map(|k| s.wrapping_add(d.wrapping_mul(i64_of(k))))
                .collect();
            Ok(match dtype {
                DType::I64 => Tensor::from_i64(vec![n], &v),
                DType::I32 => {
                    Tensor::from_i32(vec![n], &v.iter().map(|&x| x as i32).collect::<Vec<_>>())
                }
                _ => Tensor {
                    dtype,
                    shape: vec![n],
                    bytes: v.iter().flat_map(|&x| (x as i16).to_le_bytes()).collect(),
                },
            })
        }
        other => Err(CompileError::unsupported(format!("Range on {other}"))),
    }
}

/// f64 to binary16 (or bfloat16) bits, rounded once to nearest even: through f32 rounded
/// to odd, then to the narrow format.
fn half_bits(v: f64, bf16: bool) -> u16 {
    let mut f = v as f32;
    if f.is_finite() && f64::from(f) != v {
        let mut bits = f.to_bits();
        if f64::from(f).abs() > v.abs() {
            bits -= 1;
        }
        f = f32::from_bits(bits | 1);
    }
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if bf16 {
        if f.is_nan() {
            return ((bits >> 16) | 0x40) as u16;
        }
        return (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    }
    let exp = i32::try_from((bits >> 23) & 0xff).unwrap_or(0);
    let frac = bits & 0x007f_ffff;
    if exp == 0xff {
        return sign
            | 0x7c00
            | if frac != 0 {
                0x200 | u16::try_from(frac >> 13).unwrap_or(0)
            } else {
                0
            };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    // Mantissa with the implicit bit, and how far to shift it into 10 bits.
    let (m, shift) = if e <= 0 {
        if e < -10 {
            return sign;
        }
        (frac | 0x0080_0000, u32::try_from(14 - e).unwrap_or(24))
    } else {
        (frac, 13)
    };
    let half = 1u32 << (shift - 1);
    let rem = m & ((1u32 << shift) - 1);
    let mut out = m >> shift;
    if e > 0 {
        out |= u32::try_from(e).unwrap_or(0) << 10;
    }
    if rem > half || (rem == half && out & 1 == 1) {
        out += 1;
    }
    sign | u16::try_from(out).unwrap_or(0x7c00)
}

impl OpDef for Generate {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let value = if node.op_type() == "ConstantOfShape" {
            Some(
                node.tensor("value")?
                    .unwrap_or_else(|| Tensor::from_f32(vec![1], &[0.0])),
            )
        } else {
            None
        };
        Ok(Self { value })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        if let Some(capacity) = self.run_time_range(cx)? {
            let dtype = cx.input(0)?.dtype;
            return Ok(vec![TypeShape::dynamic(dtype, vec![capacity], vec![true])]);
        }
        if let (Some((capacity, dynamic)), Some(v)) = (self.run_time_fill(cx)?, self.fill()?) {
            return Ok(vec![TypeShape::dynamic(v.dtype, capacity, dynamic)]);
        }
        Ok(vec![match self.fill()? {
            Some(v) => TypeShape::new(v.dtype, Self::shape(cx)?),
            None => {
                let t = range(cx)?;
                TypeShape::new(t.dtype, t.shape)
            }
        }])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let v = match self.fill() {
            Ok(Some(v)) => v,
            Ok(None) if !cx.all_constant() => return None,
            Ok(None) => return Some(range(cx).map(|t| vec![t])),
            Err(e) => return Some(Err(e)),
        };
        let shape = Self::shape(cx).ok()?;
        let n = checked_len(&shape).ok()?;
        if n > UNIFORM_FOLD_LIMIT {
            return None;
        }
        Some(Ok(vec![Tensor {
            dtype: v.dtype,
            bytes: v.bytes.repeat(n),
            shape,
        }]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        if let Some(capacity) = self.run_time_range(cx)? {
            let (i0, i1, i2, o0) = (
                names.input(0),
                names.input(1),
                names.input(2),
                names.output(0),
            );
            let (os0, capacity) = (names.out_shape(0), lit(capacity));
            let t = rust_type(cx.input(0)?.dtype);
            let n = names.check(quote!(::sinter_rt::dynamic::range_len(
                i64::from(#i0[0]), i64::from(#i1[0]), i64::from(#i2[0]), #capacity
            )));
            return Ok(quote! {
                let #os0: [usize; 1] = [#n];
                let mut v = #i0[0];
                for slot in &mut #o0[..#os0[0]] {
                    *slot = v;
                    v = v.wrapping_add(#i2[0]);
                }
                let _: #t = v;
            });
        }
        let Some(v) = self.fill()? else {
            return Err(CompileError::shape(
                "internal: Range should have been folded",
            ));
        };
        // The value from its little-endian bytes: exact for every type.
        let t = rust_type(v.dtype);
        let bytes = v
            .bytes
            .iter()
            .map(|&b| proc_macro2::Literal::u8_suffixed(b));
        let value = quote!(<#t>::from_le_bytes([#(#bytes),*]));
        let o0 = names.output(0);
        if let Some((capacity, dynamic)) = self.run_time_fill(cx)? {
            // The shape read at run time, each dimension checked against its capacity.
            let i0 = names.input(0);
            let dims: Vec<TokenStream> = capacity
                .iter()
                .enumerate()
                .map(|(k, &cap)| {
                    let (k, cap) = (lit(k), lit(cap));
                    names.check(quote!(::sinter_rt::dynamic::count_at_most(
                        #i0[#k],
                        #cap,
                        "ConstantOfShape dimension negative or above its bound",
                    )))
                })
                .collect();
            let rank = lit(capacity.len());
            let write_shape = bind_out_shape(names, &dynamic, quote!(fill_shape));
            return finish(
                cx,
                names,
                quote! {
                    let fill_shape: [usize; #rank] = [#(#dims),*];
                    let fill_len: usize = fill_shape.iter().product();
                    #o0[..fill_len].fill(#value);
                    #write_shape
                },
            );
        }
        let code = quote!(#o0.fill(#value););
        finish(cx, names, code)
    }
}

// ---- HannWindow, HammingWindow, BlackmanWindow ----

/// Which window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `sin²(πn/N)`.
    Hann,
    /// `25/46 - 21/46 cos(2πn/N)`.
    Hamming,
    /// `0.42 - 0.5 cos(2πn/N) + 0.08 cos(4πn/N)`.
    Blackman,
}

/// The window generators: the size must be a compile-time constant, so they always fold.
#[derive(Debug, Clone)]
pub struct Window {
    /// Which window.
    pub kind: WindowKind,
    /// Periodic (N = size) rather than symmetric (N = size - 1).
    pub periodic: bool,
    /// The output type.
    pub dtype: DType,
}

impl Window {
    fn value(&self, cx: &OpCx<'_>) -> Result<Tensor> {
        let size = cx
            .const_ints(0, "size")?
            .first()
            .copied()
            .ok_or_else(|| CompileError::shape("empty size"))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&n| n <= FOLD_LIMIT)
            .ok_or_else(|| CompileError::shape(format!("window size {size}")))?;
        let n_den = if self.periodic {
            size as f64
        } else {
            size as f64 - 1.0
        };
        let tau = 2.0 * std::f64::consts::PI;
        let values: Vec<f64> = (0..size)
            .map(|k| {
                let x = k as f64 / n_den;
                match self.kind {
                    WindowKind::Hann => 0.5 - 0.5 * (tau * x).cos(),
                    WindowKind::Hamming => 25.0 / 46.0 - 21.0 / 46.0 * (tau * x).cos(),
                    WindowKind::Blackman => {
                        0.42 - 0.5 * (tau * x).cos() + 0.08 * (2.0 * tau * x).cos()
                    }
                }
            })
            .collect();
        let t = Tensor::from_f64(vec![size], &values);
        if self.dtype == DType::F64 {
            return Ok(t);
        }
        let cast = Cast {
            to: Some(self.dtype),
            saturate: true,
            round_mode: lowp::RoundMode::Up,
        };
        cast_tensor(&t, self.dtype, &cast)
            .ok_or_else(|| CompileError::unsupported(format!("window of type {}", self.dtype)))
    }
}

impl OpDef for Window {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let kind = match node.op_type() {
            "HannWindow" => WindowKind::Hann,
            "HammingWindow" => WindowKind::Hamming,
            _ => WindowKind::Blackman,
        };
        let code = node.i64_or("output_datatype", 1)?;
        let dtype = i32::try_from(code)
            .ok()
            .and_then(DType::from_onnx)
            .ok_or_else(|| CompileError::unsupported("window output_datatype"))?;
        Ok(Self {
            kind,
            periodic: node.i64_or("periodic", 1)? != 0,
            dtype,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let t = self.value(cx)?;
        Ok(vec![TypeShape::new(t.dtype, t.shape)])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        Some(self.value(cx).map(|t| vec![t]))
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::shape(
            "internal: window generators are always folded",
        ))
    }
}

// ---- Cast, CastLike ----

/// `Cast` (target from `to`) and `CastLike` (target type of input 1), among float32/64,
/// float16, bfloat16, the integer types, bool and the low-precision types. Floats convert to
/// integers by truncation toward zero, saturating at the target's range (NaN gives 0);
/// integers convert to narrower integers by wrapping (two's complement), as numpy's `astype`
/// does, `int4`/`int2` targets included. float8/float4 targets round to nearest even, with
/// `saturate` (opset 19) deciding what overflow gives; float8 E8M0 rounds by `round_mode`
/// (opset 25). See `sinter_rt::lowp`.
#[derive(Debug, Clone)]
pub struct Cast {
    /// The target type (`None` for CastLike: input 1's type).
    pub to: Option<DType>,
    /// Whether float8 targets saturate out-of-range values instead of giving inf/NaN.
    pub saturate: bool,
    /// How float8 E8M0 targets round.
    pub round_mode: lowp::RoundMode,
}

impl Cast {
    fn target(&self, cx: &OpCx<'_>) -> Result<DType> {
        match self.to {
            Some(t) => Ok(t),
            None => Ok(cx.input(1)?.dtype),
        }
    }
}

/// The `sinter_rt::lowp` constant of a float8/float4 format with a sign (`None` for
/// every other type, E8M0 included).
pub(super) fn minifloat_tokens(dtype: DType) -> Option<TokenStream> {
    let name = match dtype {
        DType::F8E4M3FN => "E4M3FN",
        DType::F8E4M3FNUZ => "E4M3FNUZ",
        DType::F8E5M2 => "E5M2",
        DType::F8E5M2FNUZ => "E5M2FNUZ",
        DType::F4E2M1 => "E2M1",
        _ => return None,
    };
    let ident = format_ident!("{}", name);
    Some(quote!(::sinter_rt::lowp::#ident))
}

/// The closure converting one stored element of `src` into one of `dst`. A float8/float4
/// source decodes to f32 first and a 4-bit/2-bit integer is already its value in an
/// `i8`/`u8`, so the rest is a conversion between ordinary types, or into a low-precision
/// one ([`encode_expr`]).
fn convert_fn(src: DType, dst: DType, cast: &Cast) -> TokenStream {
    let (ts, td) = (rust_type(src), rust_type(dst));
    let (decode, src) = match (src, minifloat_tokens(src)) {
        (_, Some(format)) => (quote!(let v = #format.decode(v);), DType::F32),
        (DType::F8E8M0, None) => (
            quote!(let v = ::sinter_rt::lowp::e8m0_to_f32(v);),
            DType::F32,
        ),
        (DType::I4 | DType::I2, None) => (TokenStream::new(), DType::I8),
        (DType::U4 | DType::U2, None) => (TokenStream::new(), DType::U8),
        (s, None) => (TokenStream::new(), s),
    };
    let body = if dst.is_low_precision() {
        encode_expr(src, dst, cast)
    } else {
        convert_expr(src, dst)
    };
    quote!(|v: #ts| -> #td { #decode #body })
}

/// The value of `v: src` (an ordinary type) as f64, exactly but for 64-bit integers.
fn as_f64_expr(src: DType) -> TokenStream {
    match src {
        DType::F16 => quote!(f64::from(::sinter_rt::half::f16_to_f32(v))),
        DType::BF16 => quote!(f64::from(::sinter_rt::half::bf16_to_f32(v))),
        DType::F64 => quote!(v),
        DType::I64 | DType::U64 => quote!(v as f64),
        _ => quote!(f64::from(v)),
    }
}

/// `v: src` (an ordinary type) converted to the low-precision `dst`.
fn encode_expr(src: DType, dst: DType, cast: &Cast) -> TokenStream {
    let lowp = quote!(::sinter_rt::lowp);
    let as_f64 = as_f64_expr(src);
    // f32 and the 16-bit floats are exact as f32: one rounding, in the encoder.
    let as_f32 = match src {
        DType::F32 => Some(quote!(v)),
        DType::F16 => Some(quote!(::sinter_rt::half::f16_to_f32(v))),
        DType::BF16 => Some(quote!(::sinter_rt::half::bf16_to_f32(v))),
        _ => None,
    };
    let saturate = cast.saturate;
    if let Some((bits, signed)) = dst.narrow_int() {
        let bits = Literal::u32_unsuffixed(bits);
        // Floats truncate toward zero (saturating, NaN as 0), then everything wraps.
        let as_i64 = match (&as_f32, src) {
            (Some(x), _) => quote!(#x as i64),
            (None, DType::F64 | DType::U64) => quote!(v as i64),
            (None, _) => quote!(i64::from(v)),
        };
        return if signed {
            quote!(#lowp::wrap_signed(#as_i64, #bits))
        } else {
            quote!(#lowp::wrap_unsigned(#as_i64, #bits))
        };
    }
    if let Some(format) = minifloat_tokens(dst) {
        return match as_f32 {
            Some(x) => quote!(#format.encode(#x, #saturate)),
            None => quote!(#format.encode_f64(#as_f64, #saturate)),
        };
    }
    // float8 E8M0, the one low-precision type left. The reference rounds to f32 (to
    // nearest) before taking the exponent.
    let x = as_f32.unwrap_or_else(|| quote!((#as_f64) as f32));
    let mode = match cast.round_mode {
        lowp::RoundMode::Up => quote!(Up),
        lowp::RoundMode::Down => quote!(Down),
        lowp::RoundMode::Nearest => quote!(Nearest),
    };
    quote!(#lowp::f32_to_e8m0(#x, #saturate, #lowp::RoundMode::#mode))
}

/// `v: src` converted to `dst`, both ordinary (not low-precision) types.
fn convert_expr(src: DType, dst: DType) -> TokenStream {
    let td = rust_type(dst);
    let half = quote!(::sinter_rt::half);
    // The value as f32 for the 16-bit float types.
    let widen = match src {
        DType::F16 => Some(quote!(#half::f16_to_f32(v))),
        DType::BF16 => Some(quote!(#half::bf16_to_f32(v))),
        _ => None,
    };
    let as_f64 = as_f64_expr(src);
    match dst {
        DType::F32 => match src {
            DType::F16 | DType::BF16 => widen.unwrap_or_default(),
            DType::Bool | DType::U8 | DType::I8 | DType::I16 | DType::U16 => quote!(f32::from(v)),
            _ => quote!(v as f32),
        },
        DType::F64 => as_f64,
        DType::F16 | DType::BF16 => {
            let (from32, from64) = if dst == DType::F16 {
                (
                    quote!(#half::f32_to_f16),
                    quote!(::sinter_rt::cast::f64_to_f16),
                )
            } else {
                (
                    quote!(#half::f32_to_bf16),
                    quote!(::sinter_rt::cast::f64_to_bf16),
                )
            };
            match src {
                DType::F32 => quote!(#from32(v)),
                DType::F16 | DType::BF16 => {
                    let w = widen.unwrap_or_default();
                    quote!(#from32(#w))
                }
                _ => quote!(#from64(#as_f64)),
            }
        }
        DType::Bool => match src {
            DType::F32 | DType::F64 => quote!(u8::from(v != 0.0)),
            DType::F16 | DType::BF16 => {
                let w = widen.unwrap_or_default();
                quote!(u8::from(#w != 0.0))
            }
            _ => quote!(u8::from(v != 0)),
        },
        _ => match src {
            DType::F16 | DType::BF16 => {
                let w = widen.unwrap_or_default();
                quote!(#w as #td)
            }
            _ => quote!(v as #td),
        },
    }
}

/// Constant evaluation of a cast to a low-precision type, through the same `lowp`
/// functions as the generated code (see [`encode_expr`] for the roundings).
fn cast_to_low_precision(t: &Tensor, dst: DType, cast: &Cast) -> Option<Vec<u8>> {
    let float_src = t.dtype.is_float() || t.dtype.is_small_float();
    if let Some((bits, signed)) = dst.narrow_int() {
        let ints = if float_src {
            t.to_f64s().into_iter().map(|v| v as i64).collect()
        } else {
            t.to_i64s()?
        };
        return Some(
            ints.into_iter()
                .map(|v| {
                    if signed {
                        lowp::wrap_signed(v, bits) as u8
                    } else {
                        lowp::wrap_unsigned(v, bits)
                    }
                })
                .collect(),
        );
    }
    if t.dtype == DType::U64 {
        return None;
    }
    let values = t.to_f64s().into_iter();
    Some(match dst.minifloat() {
        Some(format) => values
            .map(|v| format.encode_f64(v, cast.saturate))
            .collect(),
        None => values
            .map(|v| lowp::f32_to_e8m0(v as f32, cast.saturate, cast.round_mode))
            .collect(),
    })
}

/// Constant evaluation of a cast, matching the kernels bit for bit.
fn cast_tensor(t: &Tensor, dst: DType, cast: &Cast) -> Option<Tensor> {
    if dst.is_low_precision() {
        return cast_to_low_precision(t, dst, cast).map(|bytes| Tensor {
            dtype: dst,
            shape: t.shape.clone(),
            bytes,
        });
    }
    macro_rules! enc {
        ($vals:expr, $t:ty) => {
            $vals
                .flat_map(|v| (v as $t).to_le_bytes())
                .collect::<Vec<u8>>()
        };
    }
    let half = |vals: Vec<f64>, bf16: bool| -> Vec<u8> {
        vals.into_iter()
            .flat_map(|v| half_bits(v, bf16).to_le_bytes())
            .collect()
    };
    let bytes = if t.dtype.is_float() || t.dtype.is_small_float() {
        let v = t.to_f64s();
        let it = v.iter().copied();
        match dst {
            DType::F16 | DType::BF16 => half(v.clone(), dst == DType::BF16),
            DType::F32 => enc!(it, f32),
            DType::F64 => enc!(it, f64),
            DType::I8 => enc!(it, i8),
            DType::I16 => enc!(it, i16),
            DType::I32 => enc!(it, i32),
            DType::I64 => enc!(it, i64),
            DType::U8 => enc!(it, u8),
            DType::U16 => enc!(it, u16),
            DType::U32 => enc!(it, u32),
            DType::U64 => enc!(it, u64),
            DType::Bool => it.map(|x| u8::from(x != 0.0)).collect(),
            _ => return None,
        }
    } else {
        if t.dtype == DType::U64 && dst.is_float() {
            return None;
        }
        let v = t.to_i64s()?;
        let it = v.iter().copied();
        match dst {
            DType::F16 | DType::BF16 => {
                half(v.iter().map(|&x| x as f64).collect(), dst == DType::BF16)
            }
            DType::F32 => enc!(it, f32),
            DType::F64 => enc!(it, f64),
            DType::I8 => enc!(it, i8),
            DType::I16 => enc!(it, i16),
            DType::I32 => enc!(it, i32),
            DType::I64 => enc!(it, i64),
            DType::U8 => enc!(it, u8),
            DType::U16 => enc!(it, u16),
            DType::U32 => enc!(it, u32),
            DType::U64 => enc!(it, u64),
            DType::Bool => it.map(|x| u8::from(x != 0)).collect(),
            _ => return None,
        }
    };
    Some(Tensor {
        dtype: dst,
        shape: t.shape.clone(),
        bytes,
    })
}

impl OpDef for Cast {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let to = if node.op_type() == "Cast" {
            let code = node
                .i64_opt("to")?
                .ok_or_else(|| CompileError::attribute("to", "required"))?;
            let dt = i32::try_from(code)
                .ok()
                .and_then(DType::from_onnx)
                .ok_or_else(|| {
                    CompileError::unsupported(format!(
                        "Cast to {}",
                        DType::onnx_name(i32::try_from(code).unwrap_or(0))
                    ))
                })?;
            Some(dt)
        } else {
            None
        };
        let saturate = node.opset() < 19 || node.i64_or("saturate", 1)? != 0;
        let round_mode = match node.string_or("round_mode", "up")?.as_str() {
            "up" => lowp::RoundMode::Up,
            "down" => lowp::RoundMode::Down,
            "nearest" => lowp::RoundMode::Nearest,
            other => {
                return Err(CompileError::attribute(
                    "round_mode",
                    format!("expected \"up\", \"down\" or \"nearest\", found {other:?}"),
                ))
            }
        };
        Ok(Self {
            to,
            saturate,
            round_mode,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        Ok(vec![TypeShape::dynamic(
            self.target(cx)?,
            x.shape.to_vec(),
            x.dynamic.to_vec(),
        )])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?.constant?;
        let dst = self.target(cx).ok()?;
        if dst == x.dtype {
            return Some(Ok(vec![x.clone()]));
        }
        cast_tensor(x, dst, self).map(|t| Ok(vec![t]))
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        true
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let body = self.emit_static(cx, names)?;
        Ok(if cx.input(0)?.is_dynamic() {
            super::emit_elementwise_dynamic(cx, names, body)
        } else {
            body
        })
    }
}

impl Cast {
    /// The code for run-time shapes known at compile time.
    fn emit_static(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let (src, dst) = (cx.input(0)?.dtype, self.target(cx)?);
            let (i0, o0) = (names.input(0), names.output(0));
            if src == dst {
                return Ok(quote!(#o0.copy_from_slice(#i0);));
            }
            let f = convert_fn(src, dst, self);
            Ok(quote!(::sinter_rt::elementwise::map(#i0, #o0, #f);))
        })()?;
        finish(cx, names, code)
    }
}

// ---- BitCast ----

/// `BitCast`: reinterprets each element's bits as another type of the same size.
#[derive(Debug, Clone)]
pub struct BitCast {
    /// The target type.
    pub to: DType,
}

impl OpDef for BitCast {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let code = node
            .i64_opt("to")?
            .ok_or_else(|| CompileError::attribute("to", "required"))?;
        let to = i32::try_from(code)
            .ok()
            .and_then(DType::from_onnx)
            .ok_or_else(|| {
                CompileError::unsupported(format!(
                    "BitCast to {}",
                    DType::onnx_name(i32::try_from(code).unwrap_or(0))
                ))
            })?;
        Ok(Self { to })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if x.dtype.size() != self.to.size() {
            return Err(CompileError::unsupported(format!(
                "BitCast between types of different sizes ({} to {})",
                x.dtype, self.to
            )));
        }
        Ok(vec![TypeShape::new(self.to, x.shape.to_vec())])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?.constant?;
        let mut t = x.clone();
        t.dtype = self.to;
        if self.to == DType::Bool {
            // Booleans are stored as 0/1.
            t.bytes.iter_mut().for_each(|b| *b = u8::from(*b != 0));
        }
        Some(Ok(vec![t]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (ts, td) = (rust_type(x.dtype), rust_type(self.to));
        let (i0, o0) = (names.input(0), names.output(0));
        let code = if self.to == DType::Bool {
            quote!(::sinter_rt::elementwise::map(#i0, #o0, |v: #ts| u8::from(v != 0));)
        } else if ts.to_string() == td.to_string() {
            quote!(#o0.copy_from_slice(#i0);)
        } else {
            quote!(::sinter_rt::elementwise::map(#i0, #o0, |v: #ts| <#td>::from_le_bytes(v.to_le_bytes()));)
        };
        finish(cx, names, code)
    }
}

// ---- DepthToSpace, SpaceToDepth ----

/// `DepthToSpace` (DCR or CRD) and `SpaceToDepth` on NCHW: a reshape to 6-D, a transpose
/// and a reshape back.
#[derive(Debug, Clone)]
pub struct SpaceDepth {
    /// `DepthToSpace` rather than `SpaceToDepth`.
    pub to_space: bool,
    /// The block size.
    pub block: usize,
    /// CRD mode (DepthToSpace only).
    pub crd: bool,
}

impl SpaceDepth {
    /// The 6-D input view, the permutation and the output shape.
    fn plan(&self, shape: &[usize]) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
        let &[n, c, h, w] = shape else {
            return Err(CompileError::shape("input must be 4-D (NCHW)"));
        };
        let b = self.block;
        if b == 0 || b > 1 << 16 {
            return Err(CompileError::attribute(
                "blocksize",
                format!("{b} is out of range"),
            ));
        }
        if self.to_space {
            if c % (b * b) != 0 {
                return Err(CompileError::shape("channels not divisible by blocksize²"));
            }
            let c2 = c / (b * b);
            let out = vec![n, c2, h * b, w * b];
            Ok(if self.crd {
                (vec![n, c2, b, b, h, w], vec![0, 1, 4, 2, 5, 3], out)
            } else {
                (vec![n, b, b, c2, h, w], vec![0, 3, 4, 1, 5, 2], out)
            })
        } else {
            if h % b != 0 || w % b != 0 {
                return Err(CompileError::shape(
                    "spatial dims not divisible by blocksize",
                ));
            }
            let perm = if self.crd {
                vec![0, 1, 3, 5, 2, 4]
            } else {
                vec![0, 3, 5, 1, 2, 4]
            };
            Ok((
                vec![n, c, h / b, b, w / b, b],
                perm,
                vec![n, c * b * b, h / b, w / b],
            ))
        }
    }
}

impl OpDef for SpaceDepth {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let mode = node.string_or("mode", "DCR")?;
        if mode != "DCR" && mode != "CRD" {
            return Err(CompileError::attribute("mode", format!("unknown {mode:?}")));
        }
        Ok(Self {
            to_space: node.op_type() == "DepthToSpace",
            block: node.usize_or("blocksize", 0)?,
            crd: mode == "CRD",
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        Ok(vec![TypeShape::new(x.dtype, self.plan(x.shape)?.2)])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?;
        let t = x.constant?;
        Some(self.plan(x.shape).map(|(view, perm, out)| {
            vec![Tensor {
                dtype: t.dtype,
                shape: out,
                bytes: permute(&t.bytes, t.dtype.size(), &view, &perm),
            }]
        }))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let (view, perm, _) = self.plan(cx.input(0)?.shape)?;
            let (v, p) = (usize_slice(&view), usize_slice(&perm));
            let (i0, o0) = (names.input(0), names.output(0));
            Ok(quote!(::sinter_rt::shape::transpose(#i0, #o0, #v, #p);))
        })()?;
        finish(cx, names, code)
    }
}

// ---- Trilu, EyeLike ----

/// `Trilu` (k may be a run-time input) and `EyeLike`.
#[derive(Debug, Clone)]
pub struct Triangle {
    /// `EyeLike` rather than `Trilu`.
    pub eye: bool,
    /// `upper` (Trilu).
    pub upper: bool,
    /// `k` (EyeLike).
    pub k: i64,
    /// The output type (EyeLike `dtype`).
    pub dtype: Option<DType>,
}

impl OpDef for Triangle {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let dtype = match node.i64_opt("dtype")? {
            None => None,
            Some(code) => Some(
                i32::try_from(code)
                    .ok()
                    .and_then(DType::from_onnx)
                    .ok_or_else(|| CompileError::unsupported("EyeLike dtype"))?,
            ),
        };
        Ok(Self {
            eye: node.op_type() == "EyeLike",
            upper: node.i64_or("upper", 1)? != 0,
            k: node.i64_or("k", 0)?,
            dtype,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if (self.eye && x.shape.len() != 2) || (!self.eye && x.shape.len() < 2) {
            return Err(CompileError::shape("input rank"));
        }
        Ok(vec![TypeShape::new(
            self.dtype.unwrap_or(x.dtype),
            x.shape.to_vec(),
        )])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let x = cx.input(0)?;
            let r = x.shape.len();
            let (rows, cols) = (lit(x.shape[r - 2]), lit(x.shape[r - 1]));
            let o0 = names.output(0);
            if self.eye {
                let dt = self.dtype.unwrap_or(x.dtype);
                let t = rust_type(dt);
                let one = match dt {
                    DType::F32 => quote!(1.0f32),
                    DType::F64 => quote!(1.0f64),
                    DType::F16 => quote!(0x3c00u16),
                    DType::BF16 => quote!(0x3f80u16),
                    _ => quote!(1 as #t),
                };
                let k = i64_lit(self.k);
                return Ok(
                    quote!(::sinter_rt::shape::eye(#o0, #rows, #cols, #k, <#t>::default(), #one);),
                );
            }
            let batch = lit(x.shape[..r - 2].iter().product());
            let k = match cx.opt_input(1) {
                Some(op) if op.shape.iter().product::<usize>() == 1 => {
                    require_dtype(op.dtype, &[DType::I64], "k")?;
                    let i1 = names.input(1);
                    quote!(#i1[0])
                }
                Some(_) => return Err(CompileError::shape("k must be a scalar")),
                None => quote!(0i64),
            };
            let upper = self.upper;
            let i0 = names.input(0);
            Ok(quote!(::sinter_rt::shape::trilu(#i0, #o0, #batch, #rows, #cols, #k, #upper);))
        })()?;
        finish(cx, names, code)
    }
}

// ---- OneHot ----

/// `OneHot`: depth must be a compile-time constant (it sets the output shape); the indices
/// and the off/on values may be run-time values.
#[derive(Debug, Clone)]
pub struct OneHot {
    /// The axis of the new dimension.
    pub axis: i64,
}

impl OneHot {
    fn layout(&self, cx: &OpCx<'_>) -> Result<(usize, usize, Vec<usize>)> {
        let idx = cx.input(0)?;
        let depth_t = cx.input(1)?.constant.ok_or_else(|| {
            CompileError::new(crate::error::ErrorKind::NotConstant("OneHot depth".into()))
        })?;
        let depth = depth_t
            .to_f64s()
            .first()
            .copied()
            .ok_or_else(|| CompileError::shape("empty depth"))?;
        if !(1.0..1e9).contains(&depth) {
            return Err(CompileError::shape(format!("OneHot depth {depth}")));
        }
        let depth = depth as usize;
        let rank = idx.shape.len() + 1;
        let axis = normalize_axis(self.axis, rank, "axis")?;
        let mut shape = idx.shape[..axis].to_vec();
        shape.push(depth);
        shape.extend_from_slice(&idx.shape[axis..]);
        checked_len(&shape)?;
        Ok((axis, depth, shape))
    }
}

impl OpDef for OneHot {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            axis: node.i64_or("axis", -1)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let values = cx.input(2)?;
        let idx = cx.input(0)?;
        require_dtype(
            idx.dtype,
            &[
                DType::F32,
                DType::F64,
                DType::I32,
                DType::I64,
                DType::I8,
                DType::U8,
                DType::I16,
                DType::U16,
                DType::U32,
                DType::U64,
            ],
            "indices",
        )?;
        if values.shape.iter().product::<usize>() != 2 {
            return Err(CompileError::shape("values must hold [off, on]"));
        }
        Ok(vec![TypeShape::new(values.dtype, self.layout(cx)?.2)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let idx = cx.input(0)?;
            let (axis, depth, _) = self.layout(cx)?;
            let outer = lit(idx.shape[..axis].iter().product());
            let inner = lit(idx.shape[axis..].iter().product());
            let (i0, i2, o0) = (names.input(0), names.input(2), names.output(0));
            let d = lit(depth);
            Ok(quote!(::sinter_rt::shape::one_hot(#i0, #o0, #outer, #d, #inner, #i2[0], #i2[1]);))
        })()?;
        finish(cx, names, code)
    }
}

// ---- CumSum, CumProd, ReverseSequence ----

/// `CumSum`, `CumProd` (axis may be a run-time input) and `ReverseSequence` (lengths at run
/// time).
#[derive(Debug, Clone)]
pub struct Scan {
    /// `ReverseSequence` rather than `CumSum`/`CumProd`.
    pub reverse_sequence: bool,
    /// `CumProd` rather than `CumSum`.
    pub product: bool,
    /// CumSum `exclusive` / ReverseSequence `batch_axis`.
    pub a: i64,
    /// CumSum `reverse` / ReverseSequence `time_axis`.
    pub b: i64,
}

impl OpDef for Scan {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let rs = node.op_type() == "ReverseSequence";
        Ok(Self {
            reverse_sequence: rs,
            product: node.op_type() == "CumProd",
            a: node.i64_or(if rs { "batch_axis" } else { "exclusive" }, i64::from(rs))?,
            b: node.i64_or(if rs { "time_axis" } else { "reverse" }, 0)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        let i1 = cx.input(1)?;
        require_dtype(i1.dtype, INDEX_TYPES, "input 1")?;
        if self.reverse_sequence {
            let (ba, ta) = (
                normalize_axis(self.a, x.shape.len(), "batch_axis")?,
                normalize_axis(self.b, x.shape.len(), "time_axis")?,
            );
            if ba == ta || i1.shape != [x.shape[ba]] {
                return Err(CompileError::shape("sequence_lens / axes do not fit"));
            }
        } else {
            require_dtype(
                x.dtype,
                &[
                    DType::F32,
                    DType::F64,
                    DType::F16,
                    DType::BF16,
                    DType::I8,
                    DType::I16,
                    DType::I32,
                    DType::I64,
                    DType::U8,
                    DType::U16,
                    DType::U32,
                    DType::U64,
                ],
                "input",
            )?;
            if i1.shape.iter().product::<usize>() != 1 {
                return Err(CompileError::shape("axis must be a scalar"));
            }
        }
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let x = cx.input(0)?;
            let shape = usize_slice(x.shape);
            let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
            if self.reverse_sequence {
                let ba = lit(normalize_axis(self.a, x.shape.len(), "batch_axis")?);
                let ta = lit(normalize_axis(self.b, x.shape.len(), "time_axis")?);
                return Ok(
                    quote!(::sinter_rt::shape::reverse_sequence(#i0, #i1, #o0, #shape, #ba, #ta);),
                );
            }
            let t = rust_type(x.dtype);
            let (init, op) = match (self.product, x.dtype) {
                (_, DType::F16 | DType::BF16) => {
                    let (w, n, one) = if x.dtype == DType::F16 {
                        (
                            quote!(::sinter_rt::half::f16_to_f32),
                            quote!(::sinter_rt::half::f32_to_f16),
                            quote!(0x3c00u16),
                        )
                    } else {
                        (
                            quote!(::sinter_rt::half::bf16_to_f32),
                            quote!(::sinter_rt::half::f32_to_bf16),
                            quote!(0x3f80u16),
                        )
                    };
                    if self.product {
                        (one, quote!(|a: u16, b: u16| #n(#w(a) * #w(b))))
                    } else {
                        (quote!(0u16), quote!(|a: u16, b: u16| #n(#w(a) + #w(b))))
                    }
                }
                (false, d) if d.is_float() => (quote!(0 as #t), quote!(|a: #t, b: #t| a + b)),
                (false, _) => (quote!(0 as #t), quote!(|a: #t, b: #t| a.wrapping_add(b))),
                (true, d) if d.is_float() => (quote!(1 as #t), quote!(|a: #t, b: #t| a * b)),
                (true, _) => (quote!(1 as #t), quote!(|a: #t, b: #t| a.wrapping_mul(b))),
            };
            let (ex, rev) = (self.a != 0, self.b != 0);
            Ok(quote! {
                let axis = ::sinter_rt::shape::IndexValue::to_i64(#i1[0]);
                ::sinter_rt::shape::cumulative(#i0, #o0, #shape, axis, #ex, #rev, #init, #op);
            })
        })()?;
        finish(cx, names, code)
    }
}

/// The run-time kernels walk indices in fixed arrays of 16 axes.
const MAX_RANK: usize = 16;

/// Finishes an op's emitted code: checks that no operand exceeds the kernels' rank limit and
/// appends `let _ = iK;` for the run-time inputs the code does not read (see
/// [`touch_unread`]).
pub(super) fn finish(
    cx: &OpCx<'_>,
    names: &mut EmitNames,
    code: TokenStream,
) -> Result<TokenStream> {
    let too_deep = cx
        .inputs
        .iter()
        .chain(&cx.outputs)
        .flatten()
        .any(|o| o.shape.len() > MAX_RANK);
    if too_deep {
        return Err(CompileError::unsupported(format!(
            "tensors of rank above {MAX_RANK}"
        )));
    }
    Ok(touch_unread(cx, names, code))
}

/// `let os0 = shape;` when output 0 has an axis only known at run time (`dynamic`), else
/// nothing: the binding codegen reads for such an output.
fn bind_out_shape(names: &EmitNames, dynamic: &[bool], shape: TokenStream) -> TokenStream {
    if dynamic.contains(&true) {
        let os0 = names.out_shape(0);
        quote!(let #os0 = #shape;)
    } else {
        TokenStream::new()
    }
}

/// Appends `let _ = iK;` for every run-time input the emitted code does not read (shape
/// parameters known from their shape, CastLike's `like`, EyeLike's input), so that the
/// generated function uses every input it is passed and compiles without warnings.
fn touch_unread(cx: &OpCx<'_>, names: &mut EmitNames, mut code: TokenStream) -> TokenStream {
    for (i, operand) in cx.inputs.iter().enumerate() {
        let read = names.used_inputs.get(i).copied().unwrap_or(false);
        if let Some(op) = operand {
            if op.constant.is_none() && !read {
                let ident = names.input(i);
                code.extend(quote!(let _ = #ident;));
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Operand;

    #[test]
    fn half_bits_round_once() {
        assert_eq!(half_bits(1.0, false), 0x3c00);
        assert_eq!(half_bits(-2.0, false), 0xc000);
        assert_eq!(half_bits(65520.0, false), 0x7c00);
        assert_eq!(
            half_bits(1.0 + 2f64.powi(-11), false),
            0x3c00,
            "tie to even"
        );
        assert_eq!(
            half_bits(1.0 + 3.0 * 2f64.powi(-11), false),
            0x3c02,
            "tie to even"
        );
        assert_eq!(
            half_bits(1.0 + 2f64.powi(-11) + 2f64.powi(-40), false),
            0x3c01
        );
        assert_eq!(
            half_bits(2f64.powi(-24), false),
            0x0001,
            "smallest subnormal"
        );
        assert_eq!(half_bits(2f64.powi(-26), false), 0x0000);
        assert_eq!(half_bits(1.0, true), 0x3f80);
        assert_eq!(half_bits(f64::NAN, false) & 0x7e00, 0x7e00);
    }

    #[test]
    fn casts_to_low_precision_fold_like_the_kernels() {
        let x = Tensor::from_f32(vec![5], &[1.0625, 1e6, -9.0, f32::NAN, -0.0]);
        let cast = |dst: DType, saturate: bool| {
            let op = Cast {
                to: Some(dst),
                saturate,
                round_mode: lowp::RoundMode::Up,
            };
            cast_tensor(&x, dst, &op).map(|t| t.bytes)
        };
        assert_eq!(
            cast(DType::F8E4M3FN, true),
            Some(vec![0x38, 0x7e, 0xd1, 0x7f, 0x80])
        );
        assert_eq!(
            cast(DType::F8E4M3FN, false),
            Some(vec![0x38, 0x7f, 0xd1, 0x7f, 0x80])
        );
        assert_eq!(
            cast(DType::F8E5M2, false),
            Some(vec![0x3c, 0x7c, 0xc8, 0x7e, 0x80])
        );
        assert_eq!(cast(DType::F8E8M0, true), Some(vec![128, 147, 131, 255, 0]));
        assert_eq!(cast(DType::I4, true), Some(vec![1, 0, 7, 0, 0]));
        assert_eq!(cast(DType::U2, true), Some(vec![1, 0, 3, 0, 0]));
        // And back: float8 decodes exactly, int4 values widen.
        let back = Cast {
            to: Some(DType::F32),
            saturate: true,
            round_mode: lowp::RoundMode::Up,
        };
        let f8 = Tensor {
            dtype: DType::F8E4M3FN,
            shape: vec![2],
            bytes: vec![0x7e, 0xd1],
        };
        let f = cast_tensor(&f8, DType::F32, &back).and_then(|t| t.as_f32());
        assert_eq!(f, Some(vec![448.0, -9.0]));
        let i4 = Tensor {
            dtype: DType::I4,
            shape: vec![2],
            bytes: vec![0xf8, 7],
        };
        let i = cast_tensor(&i4, DType::I32, &back).and_then(|t| t.as_i32());
        assert_eq!(i, Some(vec![-8, 7]));
    }

    #[test]
    fn slice_shapes_clamp() {
        let data = Tensor::from_f32(vec![4], &[0.0, 1.0, 2.0, 3.0]);
        let ints = |v: &[i64]| Tensor::from_i64(vec![v.len()], v);
        let (st, en, ax, sp) = (ints(&[-1]), ints(&[i64::MIN]), ints(&[0]), ints(&[-2]));
        let op = |t: &Tensor| Operand {
            range: None,
            syms: &[],
            dynamic: &[],
            dtype: t.dtype,
            shape: &[1],
            constant: None,
        };
        let mut inputs = vec![Some(Operand {
            range: None,
            syms: &[],
            dynamic: &[],
            dtype: DType::F32,
            shape: &[4],
            constant: Some(&data),
        })];
        for t in [&st, &en, &ax, &sp] {
            inputs.push(Some(Operand {
                range: None,
                syms: &[],
                dynamic: &[],
                constant: Some(t),
                ..op(t)
            }));
        }
        let cx = OpCx {
            inputs,
            outputs: vec![],
        };
        let slice = Slice { attrs: None };
        let out = slice.eval(&cx).and_then(|r| r.ok()).unwrap_or_default();
        assert_eq!(out[0].as_f32().unwrap_or_default(), [3.0, 1.0]);
    }
}
