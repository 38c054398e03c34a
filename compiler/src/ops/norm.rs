//! Normalizations: `BatchNormalization` (opset 7..=15; training mode from 14),
//! `LayerNormalization` (17), `RMSNormalization` (23), `InstanceNormalization` (6..=22),
//! `GroupNormalization` (18, 21), `MeanVarianceNormalization` (9, 13), `LpNormalization`
//! (1, 22) and `LRN` (1, 13).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__BatchNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__LayerNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__RMSNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__InstanceNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__GroupNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__MeanVarianceNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__LpNormalization.html>,
//! <https://onnx.ai/onnx/operators/onnx__LRN.html>. float32. BatchNormalization's training
//! mode before opset 14 (`is_test`, batch statistics without `training_mode`) is not
//! supported.

use proc_macro2::TokenStream;
use quote::quote;

use super::{
    broadcast_shapes, f32_lit, lit, normalize_axis, require_dtype, usize_slice, EmitNames, NodeCx,
    OpCx, OpDef, Operand, TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// `Y = (X - mean) / sqrt(var + epsilon) * scale + B`, per channel (axis 1). In training
/// mode (opset 14+) `mean` and `var` are the batch's own, and the optional outputs 1 and 2
/// are the updated running statistics `input * momentum + batch * (1 - momentum)`.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Added to the variance.
    pub epsilon: f32,
    /// `Some(momentum)` in training mode.
    pub training_momentum: Option<f32>,
    /// X and Y are channels last (`[N, *spatial, C]`; set by `passes::channels_last` in
    /// inference mode; never read from a model).
    pub channels_last: bool,
    /// Activations applied to Y in the same pass, in order (inference mode; set by
    /// `passes::fuse_activation`, never read from a model).
    pub activations: Vec<super::FusedAct>,
}

impl BatchNorm {
    /// X's channel count, wherever its channels are.
    fn channels(&self, x: &[usize]) -> usize {
        if self.channels_last {
            x.last().copied().unwrap_or(1)
        } else {
            x.get(1).copied().unwrap_or(1)
        }
    }
}

impl OpDef for BatchNorm {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let training = node.opset() >= 14 && node.i64_or("training_mode", 0)? != 0;
        if !training && node.node.outputs.iter().skip(1).any(Option::is_some) {
            return Err(CompileError::unsupported(
                "BatchNormalization with running-statistics outputs but no training_mode (before opset 14)",
            ));
        }
        if node.opset() < 9 && node.i64_or("spatial", 1)? == 0 {
            return Err(CompileError::unsupported(
                "BatchNormalization with spatial = 0",
            ));
        }
        Ok(Self {
            epsilon: node.f32_or("epsilon", 1e-5)?,
            training_momentum: if training {
                Some(node.f32_or("momentum", 0.9)?)
            } else {
                None
            },
            channels_last: false,
            activations: Vec::new(),
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        let channels = self.channels(x.shape);
        for i in 1..5 {
            let p = cx.input(i)?;
            if p.dtype != x.dtype || p.shape != [channels] {
                return Err(CompileError::shape(format!(
                    "input {i} must be {}[{channels}], found {}{:?}",
                    x.dtype, p.dtype, p.shape
                )));
            }
        }
        let mut out = vec![TypeShape::dynamic(
            x.dtype,
            x.shape.to_vec(),
            x.dynamic.to_vec(),
        )];
        if self.training_momentum.is_some() {
            out.push(TypeShape::new(x.dtype, vec![channels]));
            out.push(TypeShape::new(x.dtype, vec![channels]));
        }
        Ok(out)
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        // Inference over extents that vary, the channels fixed.
        self.training_momentum.is_none()
            && cx.input(0).is_ok_and(|x| {
                let channel = super::layout_axes(x.shape.len(), self.channels_last).0;
                x.is_dynamic() && !x.dynamic.get(channel).copied().unwrap_or(true)
            })
            && cx.inputs.iter().skip(1).flatten().all(|o| !o.is_dynamic())
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        if x.is_dynamic() && self.training_momentum.is_none() {
            // The static code on the actual elements, the plane size from the run-time shape.
            let is0 = names.in_shape(cx, 0);
            let inner = quote!(#is0[2..].iter().product::<usize>());
            let body = self.emit_inference(cx, names, inner)?;
            return Ok(super::emit_elementwise_dynamic(cx, names, body));
        }
        if let Some(momentum) = self.training_momentum {
            let channels = lit(x.shape.get(1).copied().unwrap_or(1));
            let inner = lit(x.shape.iter().skip(2).product());
            let (epsilon, momentum) = (f32_lit(self.epsilon), f32_lit(momentum));
            let inputs: Vec<_> = (0..5).map(|i| names.input(i)).collect();
            let stat = |i: usize, names: &mut EmitNames| {
                if cx.outputs.get(i).copied().flatten().is_some() {
                    let o = names.output(i);
                    quote!(Some(#o))
                } else {
                    quote!(None)
                }
            };
            let (o0, mean, var) = (names.output(0), stat(1, names), stat(2, names));
            return Ok(quote! {
                ::sinter_rt::norm::batch_norm_train_f32(
                    [#(#inputs),*], #epsilon, #momentum, #o0, #mean, #var, #channels, #inner,
                );
            });
        }
        let inner = lit(x.shape.iter().skip(2).product());
        self.emit_inference(cx, names, quote!(#inner))
    }
}

impl BatchNorm {
    /// The inference kernel's call, with `inner` floats per plane (channels first).
    fn emit_inference(
        &self,
        cx: &OpCx<'_>,
        names: &mut EmitNames,
        inner: TokenStream,
    ) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let channels = lit(x.shape.get(1).copied().unwrap_or(1));
        let epsilon = f32_lit(self.epsilon);
        let (i0, i1, i2, i3, i4) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.input(3),
            names.input(4),
        );
        let (o0, exec) = (names.output(0), names.exec());
        let acts = self.activations.iter().map(|a| a.tokens());
        let acts = quote!(&[#(#acts),*]);
        if self.channels_last {
            let channels = lit(self.channels(x.shape));
            return Ok(quote! {
                ::sinter_rt::norm::batch_norm_nhwc_f32(#exec, #i0, [#i1, #i2, #i3, #i4], #epsilon, #o0, #channels, #acts);
            });
        }
        Ok(quote! {
            ::sinter_rt::norm::batch_norm_f32(#exec, #i0, [#i1, #i2, #i3, #i4], #epsilon, #o0, #channels, #inner, #acts);
        })
    }
}

/// `sinter::ConcatAffine`: a Concat whose only reader was an inference BatchNormalization
/// over the concatenation axis (DenseNet's BN-ReLU on the features of a dense block), in one
/// pass: each input is copied to its columns as `x * k[c] + shift[c]`, then the fused
/// activations run. Inputs: the Concat's inputs, then the constant `[2, C]` factors (`k`,
/// then `shift`, computed by `passes::fuse_concat_norm` with the arithmetic of the
/// BatchNormalization kernel). Created by that pass only, never read from a model.
#[derive(Debug, Clone)]
pub struct ConcatAffine {
    /// The concatenation axis (non-negative): the channel axis, 1 or the last.
    pub axis: usize,
    /// Activations applied after the affine map, in order.
    pub activations: Vec<super::FusedAct>,
}

impl ConcatAffine {
    /// The concatenated inputs (all but the factors).
    fn parts<'a>(cx: &'a OpCx<'_>) -> &'a [Option<Operand<'a>>] {
        &cx.inputs[..cx.inputs.len().saturating_sub(1)]
    }
}

impl OpDef for ConcatAffine {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Err(CompileError::malformed(
            "internal: sinter::ConcatAffine is created by the compiler only",
        ))
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let parts = Self::parts(cx);
        let first = cx.input(0)?;
        let axis = self.axis;
        if axis >= first.shape.len() {
            return Err(CompileError::shape(format!(
                "axis {axis} is out of range for rank {}",
                first.shape.len()
            )));
        }
        let mut shape = first.shape.to_vec();
        shape[axis] = 0;
        for (i, part) in parts.iter().enumerate() {
            let x = part.ok_or_else(|| CompileError::malformed(format!("input {i} is missing")))?;
            require_dtype(x.dtype, &[DType::F32], "inputs")?;
            let fits = x.shape.len() == shape.len()
                && (0..shape.len()).all(|a| a == axis || x.shape[a] == first.shape[a]);
            if !fits {
                return Err(CompileError::shape(format!(
                    "input {i} {:?} does not fit input 0 {:?} along axis {axis}",
                    x.shape, first.shape
                )));
            }
            shape[axis] += x.shape[axis];
        }
        let factors = cx.input(parts.len())?;
        if factors.dtype != DType::F32 || factors.shape != [2, shape[axis]] {
            return Err(CompileError::shape(format!(
                "factors must be float32[2, {}], found {}{:?}",
                shape[axis], factors.dtype, factors.shape
            )));
        }
        Ok(vec![TypeShape::new(DType::F32, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let parts = Self::parts(cx);
        let shape = cx.output(0)?.shape;
        let outer: usize = shape[..self.axis].iter().product();
        let out_block: usize = shape[self.axis..].iter().product();
        let inner: usize = shape[self.axis + 1..].iter().product();
        let mut blocks = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let block: usize = part.map_or(0, |x| x.shape[self.axis..].iter().product());
            if block > 0 {
                let (input, block) = (names.input(i), lit(block));
                blocks.push(quote!((#input, #block)));
            }
        }
        let factors = names.input(parts.len());
        let (o0, exec) = (names.output(0), names.exec());
        let acts = self.activations.iter().map(|a| a.tokens());
        let (outer, out_block, inner) = (lit(outer), lit(out_block), lit(inner));
        Ok(quote! {
            ::sinter_rt::norm::concat_affine_f32(
                #exec, &[#(#blocks),*], #factors, #o0, #outer, #out_block, #inner, &[#(#acts),*],
            );
        })
    }
}

/// A row-wise normalization's per-element operand (Scale or B): it must cover the normalized
/// shape exactly (leading 1s allowed).
fn per_element(op: Operand<'_>, norm_shape: &[usize], what: &str) -> Result<()> {
    let n: usize = norm_shape.iter().product();
    if op.dtype != DType::F32 {
        return Err(CompileError::shape(format!(
            "{what} must be float32, found {}",
            op.dtype
        )));
    }
    let fits = broadcast_shapes(op.shape, norm_shape).is_ok_and(|b| b == norm_shape);
    if !fits {
        return Err(CompileError::shape(format!(
            "{what} of shape {:?} does not broadcast to {norm_shape:?}",
            op.shape
        )));
    }
    if op.shape.iter().product::<usize>() != n {
        return Err(CompileError::unsupported(format!(
            "{what} of shape {:?} broadcast within the normalized shape {norm_shape:?}",
            op.shape
        )));
    }
    Ok(())
}

/// `LayerNormalization` (opset 17) and `RMSNormalization` (opset 23): each slice
/// `X[i0, .., i(axis-1), :, .., :]` is normalized (RMS: divided by its root mean square),
/// then scaled by `Scale` and shifted by `B`. LayerNormalization's optional `Mean` and
/// `InvStdDev` outputs are supported.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// First normalized axis.
    pub axis: i64,
    /// Added to the variance.
    pub epsilon: f32,
    /// RMSNormalization (no mean subtraction, no bias, no statistics outputs).
    pub rms: bool,
}

impl LayerNorm {
    fn split(&self, shape: &[usize]) -> Result<(usize, usize, usize)> {
        let axis = normalize_axis(self.axis, shape.len(), "axis")?;
        let outer = shape[..axis].iter().product();
        let inner = shape[axis..].iter().product();
        Ok((axis, outer, inner))
    }
}

impl OpDef for LayerNorm {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let stash = node.i64_or("stash_type", 1)?;
        if stash != 1 {
            return Err(CompileError::unsupported(format!(
                "{} with stash_type {stash} (only float32 statistics)",
                node.op_type()
            )));
        }
        Ok(Self {
            axis: node.i64_or("axis", -1)?,
            epsilon: node.f32_or("epsilon", 1e-5)?,
            rms: node.op_type() == "RMSNormalization",
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        let (axis, _, _) = self.split(x.shape)?;
        let norm_shape = &x.shape[axis..];
        per_element(cx.input(1)?, norm_shape, "Scale")?;
        if let Some(b) = cx.opt_input(2) {
            if self.rms {
                return Err(CompileError::malformed("RMSNormalization takes no bias"));
            }
            per_element(b, norm_shape, "B")?;
        }
        let mut stats = x.shape[..axis].to_vec();
        stats.resize(x.shape.len(), 1);
        let mut stats_dynamic = x.dynamic.get(..axis).unwrap_or(&[]).to_vec();
        if x.is_dynamic() {
            stats_dynamic.resize(x.shape.len(), false);
        }
        let mut out = vec![TypeShape::dynamic(
            x.dtype,
            x.shape.to_vec(),
            x.dynamic.to_vec(),
        )];
        if !self.rms {
            out.push(TypeShape::dynamic(
                DType::F32,
                stats.clone(),
                stats_dynamic.clone(),
            ));
            out.push(TypeShape::dynamic(DType::F32, stats, stats_dynamic));
        }
        Ok(out)
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        // Rows that vary; the normalized axes (and scale, bias) fixed.
        cx.input(0).is_ok_and(|x| {
            self.split(x.shape)
                .is_ok_and(|(axis, _, _)| !x.dynamic.get(axis..).unwrap_or(&[]).iter().any(|&d| d))
        }) && cx.inputs.iter().skip(1).flatten().all(|o| !o.is_dynamic())
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (axis, outer, inner) = self.split(x.shape)?;
        let mut rows = TokenStream::new();
        let outer = if x.is_dynamic() {
            let (is0, a) = (names.in_shape(cx, 0), lit(axis));
            let mut shapes = TokenStream::new();
            for i in 0..3 {
                if cx.outputs.get(i).copied().flatten().is_some() {
                    let os = names.out_shape(i);
                    shapes.extend(if i == 0 {
                        quote!(let #os = #is0;)
                    } else {
                        quote!(let mut #os = #is0; for d in &mut #os[#a..] { *d = 1; })
                    });
                }
            }
            rows = quote! {
                let outer: usize = #is0[..#a].iter().product();
                #shapes
            };
            quote!(outer)
        } else {
            let outer = lit(outer);
            quote!(#outer)
        };
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        let bias = if cx.opt_input(2).is_some() {
            let i2 = names.input(2);
            quote!(Some(#i2))
        } else {
            quote!(None)
        };
        let stat = |i: usize| {
            if cx.outputs.get(i).copied().flatten().is_some() {
                let o = names.output(i);
                quote!(Some(#o))
            } else {
                quote!(None)
            }
        };
        let (mean, inv) = (stat(1), stat(2));
        let stats = cx.outputs.iter().skip(1).flatten().next().is_some();
        if !stats && x.shape.iter().product::<usize>() >= 1 << 16 {
            // Big, without the statistics outputs: runs of rows split across threads.
            let exec = names.exec();
            let (inner, epsilon, rms) = (lit(inner), f32_lit(self.epsilon), self.rms);
            return Ok(quote! {
                #rows
                ::sinter_rt::norm::row_norm_f32_exec(
                    #exec, #i0, #o0, #outer, #inner, #epsilon, #rms,
                    ::sinter_rt::norm::Affine::PerElement { scale: #i1, bias: #bias },
                );
            });
        }
        let (inner, epsilon, rms) = (lit(inner), f32_lit(self.epsilon), self.rms);
        Ok(quote! {
            #rows
            ::sinter_rt::norm::row_norm_f32(
                #i0, #o0, #outer, #inner, #epsilon, #rms,
                ::sinter_rt::norm::Affine::PerElement { scale: #i1, bias: #bias },
                #mean, #inv,
            );
        })
    }
}

/// `InstanceNormalization` (opset 6/22) and `GroupNormalization` (opset 18: scale and bias
/// per group; opset 21: per channel): statistics over each (sample, channel group) of
/// `X: [N, C, ...]`.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    /// Added to the variance.
    pub epsilon: f32,
    /// Groups (None: instance normalization, one group per channel).
    pub groups: Option<usize>,
    /// Scale and bias hold one value per channel (else per group).
    pub per_channel: bool,
}

impl GroupNorm {
    /// (rows, inner, channel_len, channels of the affine operands).
    fn layout(&self, x: &[usize]) -> Result<(usize, usize, usize, usize)> {
        if x.len() < 2 {
            return Err(CompileError::shape(format!(
                "X must have rank >= 2, found {x:?}"
            )));
        }
        let (n, c) = (x[0], x[1]);
        let spatial: usize = x[2..].iter().product();
        let g = self.groups.unwrap_or(c);
        if g == 0 || c % g != 0 {
            return Err(CompileError::shape(format!(
                "{c} channels do not split into {g} groups"
            )));
        }
        let inner = c / g * spatial;
        if self.per_channel {
            Ok((n * g, inner, spatial, c))
        } else {
            Ok((n * g, inner, inner, g))
        }
    }
}

impl OpDef for GroupNorm {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let epsilon = node.f32_or("epsilon", 1e-5)?;
        if node.op_type() == "InstanceNormalization" {
            return Ok(Self {
                epsilon,
                groups: None,
                per_channel: true,
            });
        }
        if node.i64_or("stash_type", 1)? != 1 {
            return Err(CompileError::unsupported(
                "GroupNormalization with stash_type other than float32",
            ));
        }
        let groups = node
            .i64_opt("num_groups")?
            .ok_or_else(|| CompileError::attribute("num_groups", "required"))?;
        let groups = usize::try_from(groups)
            .map_err(|_| CompileError::attribute("num_groups", "must be positive"))?;
        Ok(Self {
            epsilon,
            groups: Some(groups),
            per_channel: node.opset() >= 21,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        let (_, _, _, channels) = self.layout(x.shape)?;
        for (i, what) in [(1, "scale"), (2, "bias")] {
            let p = cx.input(i)?;
            if p.dtype != x.dtype || p.shape != [channels] {
                return Err(CompileError::shape(format!(
                    "{what} must be {}[{channels}], found {}{:?}",
                    x.dtype, p.dtype, p.shape
                )));
            }
        }
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (rows, inner, channel_len, channels) = self.layout(x.shape)?;
        let (i0, i1, i2, o0) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.output(0),
        );
        let (rows, inner, channel_len, channels) = (
            lit(rows),
            lit(inner),
            lit(channel_len.max(1)),
            lit(channels),
        );
        let epsilon = f32_lit(self.epsilon);
        Ok(quote! {
            ::sinter_rt::norm::row_norm_f32(
                #i0, #o0, #rows, #inner, #epsilon, false,
                ::sinter_rt::norm::Affine::PerChannel {
                    scale: #i1, bias: #i2, channel_len: #channel_len, channels: #channels,
                },
                None, None,
            );
        })
    }
}

/// `MeanVarianceNormalization` (opset 9/13): `(X - mean) / (sqrt(var) + 1e-9)` over `axes`
/// (default `[0, 2, 3]`).
#[derive(Debug, Clone)]
pub struct Mvn {
    /// The reduced axes.
    pub axes: Vec<i64>,
}

impl OpDef for Mvn {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            axes: node.ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]),
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        for &a in &self.axes {
            normalize_axis(a, x.shape.len(), "axes")?;
        }
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let rank = x.shape.len();
        let mut reduced = vec![false; rank];
        for &a in &self.axes {
            reduced[normalize_axis(a, rank, "axes")?] = true;
        }
        let mut strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * x.shape[i + 1];
        }
        let (mut ks, mut kst, mut rs, mut rst) = (vec![], vec![], vec![], vec![]);
        for i in 0..rank {
            if reduced[i] {
                rs.push(x.shape[i]);
                rst.push(strides[i]);
            } else {
                ks.push(x.shape[i]);
                kst.push(strides[i]);
            }
        }
        let (ks, kst, rs, rst) = (
            usize_slice(&ks),
            usize_slice(&kst),
            usize_slice(&rs),
            usize_slice(&rst),
        );
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote!(::sinter_rt::norm::mvn_f32(#i0, #o0, #ks, #kst, #rs, #rst);))
    }
}

/// `LpNormalization` (opset 1/22): divides by the L1 or L2 norm along `axis`.
#[derive(Debug, Clone)]
pub struct LpNorm {
    /// The axis.
    pub axis: i64,
    /// 1 or 2.
    pub p: u32,
}

impl OpDef for LpNorm {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let p = match node.i64_or("p", 2)? {
            1 => 1,
            2 => 2,
            other => {
                return Err(CompileError::attribute(
                    "p",
                    format!("must be 1 or 2, found {other}"),
                ))
            }
        };
        Ok(Self {
            axis: node.i64_or("axis", -1)?,
            p,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        normalize_axis(self.axis, x.shape.len(), "axis")?;
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let axis = normalize_axis(self.axis, x.shape.len(), "axis")?;
        let outer = lit(x.shape[..axis].iter().product());
        let len = lit(x.shape[axis]);
        let inner = lit(x.shape[axis + 1..].iter().product());
        let p = self.p;
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote!(::sinter_rt::norm::lp_norm_f32(#i0, #o0, #outer, #len, #inner, #p);))
    }
}

/// `LRN` (opset 1/13): local response normalization across channels.
#[derive(Debug, Clone)]
pub struct Lrn {
    /// Channels in the window.
    pub size: usize,
    /// Scale of the sum of squares.
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Added before the exponent.
    pub bias: f32,
}

impl OpDef for Lrn {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let size = node.usize_or("size", 0)?;
        if size == 0 {
            return Err(CompileError::attribute("size", "required and positive"));
        }
        Ok(Self {
            size,
            alpha: node.f32_or("alpha", 1e-4)?,
            beta: node.f32_or("beta", 0.75)?,
            bias: node.f32_or("bias", 1.0)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        if x.shape.len() < 2 {
            return Err(CompileError::shape(format!(
                "X must have rank >= 2, found {:?}",
                x.shape
            )));
        }
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (n, c) = (lit(x.shape[0]), lit(x.shape[1]));
        let inner = lit(x.shape[2..].iter().product());
        let size = lit(self.size);
        let (alpha, beta, bias) = (f32_lit(self.alpha), f32_lit(self.beta), f32_lit(self.bias));
        let (i0, o0) = (names.input(0), names.output(0));
        let exec = names.exec();
        Ok(quote! {
            ::sinter_rt::norm::lrn_f32_exec(
                #exec, #i0, #o0, #n, #c, #inner, #size, #alpha, #beta, #bias,
            );
        })
    }
}
