//! Pooling: `MaxPool`, `AveragePool`, `LpPool` (opset 7..=22: pads, `auto_pad`, `ceil_mode`,
//! `count_include_pad`, dilations), `GlobalAveragePool`, `GlobalMaxPool`, `GlobalLpPool`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__MaxPool.html>,
//! <https://onnx.ai/onnx/operators/onnx__LpPool.html>. float32; MaxPool also float64, int8
//! and uint8, with its optional `Indices` output in either `storage_order`.

use proc_macro2::TokenStream;
use quote::quote;

use super::conv::{Geometry, Window};
use super::{
    layout_axes, lit, require_dtype, runtime_usize3, rust_type, spatial_varies, usize3,
    usize_slice, EmitNames, NodeCx, OpCx, OpDef, TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// The exponent of an Lp pool (`p`, default 2).
fn lp_order(node: &NodeCx<'_>) -> Result<u32> {
    let p = node.i64_or("p", 2)?;
    u32::try_from(p)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| CompileError::attribute("p", format!("must be positive, found {p}")))
}

/// `MaxPool`, `AveragePool` or `LpPool`.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Max (else average or Lp).
    pub max: bool,
    /// LpPool's exponent.
    pub lp: Option<u32>,
    /// MaxPool's Indices count the spatial axes column-major.
    pub storage_order: bool,
    /// Average: divide by the window size within the padded input, not the valid count.
    pub count_include_pad: bool,
    /// The window.
    pub window: Window,
    /// 8-bit max pooling in the channels-last layout (`[N, *spatial, C]`), set by
    /// `passes::channels_last`; never read from a model.
    pub channels_last: bool,
}

impl Pool {
    /// The input's spatial extents and channel count.
    fn spatial<'s>(&self, shape: &'s [usize]) -> (&'s [usize], usize) {
        if self.channels_last {
            (&shape[1..shape.len() - 1], shape[shape.len() - 1])
        } else {
            (&shape[2..], shape[1])
        }
    }
}

impl OpDef for Pool {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let max = node.op_type() == "MaxPool";
        let lp = if node.op_type() == "LpPool" {
            Some(lp_order(node)?)
        } else {
            None
        };
        let window = Window::parse(node)?;
        if window.kernel.is_none() {
            return Err(CompileError::attribute("kernel_shape", "required"));
        }
        Ok(Self {
            max,
            lp,
            storage_order: max && node.i64_or("storage_order", 0)? != 0,
            count_include_pad: node.i64_or("count_include_pad", 0)? != 0,
            window,
            channels_last: false,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if self.max {
            require_dtype(
                x.dtype,
                &[DType::F32, DType::F64, DType::I8, DType::U8],
                "X",
            )?;
        } else {
            require_dtype(x.dtype, &[DType::F32], "X")?;
        }
        if x.shape.len() < 3 {
            return Err(CompileError::shape(format!(
                "X must have rank >= 3, found {:?}",
                x.shape
            )));
        }
        let (spatial, channels) = self.spatial(x.shape);
        let g = self.window.resolve(spatial, None)?;
        let mut shape = vec![x.shape[0]];
        if self.channels_last {
            shape.extend(&g.output);
            shape.push(channels);
        } else {
            shape.push(channels);
            shape.extend(&g.output);
        }
        let dynamic = x.dynamic.to_vec();
        let mut out = vec![TypeShape::dynamic(x.dtype, shape.clone(), dynamic.clone())];
        if self.max {
            out.push(TypeShape::dynamic(DType::I64, shape, dynamic));
        }
        Ok(out)
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        cx.input(0)
            .is_ok_and(|x| spatial_varies(&x, self.channels_last))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (spatial, channels) = self.spatial(x.shape);
        let g = self.window.resolve(spatial, None)?;
        let planes = if self.channels_last {
            x.shape[0]
        } else {
            x.shape[0] * channels
        };
        let params = params_tokens(planes, spatial, &g);
        let kind = match (self.max, self.count_include_pad) {
            (true, _) => quote!(Max),
            (false, false) => quote!(Average),
            (false, true) => quote!(AverageIncludePad),
        };
        let (i0, o0) = (names.input(0), names.output(0));
        let with_indices = cx.outputs.get(1).copied().flatten().is_some();
        let mut params = quote! {
            const PARAMS: ::sinter_rt::pool::PoolParams = #params;
        };
        let p = if x.is_dynamic() {
            // The run-time sizes: the parameters resized from the bound's, the output's shape,
            // and the buffers cut to the actual elements.
            let is0 = names.in_shape(cx, 0);
            let r = x.shape.len();
            let (channel, axes) = layout_axes(r, self.channels_last);
            let lead = 3 - axes.len();
            let input = runtime_usize3(&is0, axes.clone());
            let planes = if self.channels_last {
                quote!(#is0[0])
            } else {
                quote!(#is0[0] * #is0[1])
            };
            let ceil = self.window.ceil_mode;
            let same = self.window.auto_pad.same_tokens();
            let resized = names.check(quote!(PARAMS.resized(#planes, #input, #ceil, #same)));
            let mut dims: Vec<TokenStream> = (0..r)
                .map(|a| {
                    let a = lit(a);
                    quote!(#is0[#a])
                })
                .collect();
            for (k, a) in axes.enumerate() {
                let i = lit(lead + k);
                dims[a] = quote!(params.output[#i]);
            }
            let c = lit(channels);
            dims[channel] = quote!(#c);
            let os0 = names.out_shape(0);
            let indices = if with_indices {
                let (o1, os1) = (names.output(1), names.out_shape(1));
                quote! {
                    let #os1 = #os0;
                    let #o1 = &mut #o1[..#os0.iter().product::<usize>()];
                }
            } else {
                TokenStream::new()
            };
            params.extend(quote! {
                let params = #resized;
                let #os0 = [#(#dims),*];
                let #i0 = &#i0[..#is0.iter().product::<usize>()];
                let #o0 = &mut #o0[..#os0.iter().product::<usize>()];
                #indices
            });
            quote!(&params)
        } else {
            quote!(&PARAMS)
        };
        // Channels last, bands of output rows split across threads when the pooling is big.
        let call = if self.channels_last && !self.max {
            let (channels, exec) = (lit(channels), names.exec());
            quote! {
                ::sinter_rt::pool::avg_pool_nhwc_f32_exec(
                    #exec, #p, ::sinter_rt::pool::PoolKind::#kind, #channels, #i0, #o0,
                );
            }
        } else if self.channels_last {
            let (t, channels, exec) = (rust_type(x.dtype), lit(channels), names.exec());
            if x.dtype == DType::F32 {
                quote!(::sinter_rt::pool::max_pool_nhwc_f32_exec(#exec, #p, #channels, #i0, #o0);)
            } else {
                quote!(::sinter_rt::pool::max_pool_nhwc_exec::<#t>(#exec, #p, #channels, #i0, #o0);)
            }
        } else if let Some(order) = self.lp {
            quote!(::sinter_rt::pool::lp_pool_f32(#p, #order, #i0, #o0);)
        } else if self.max && !with_indices && matches!(x.dtype, DType::U8 | DType::I8) {
            let t = rust_type(x.dtype);
            quote!(::sinter_rt::pool::max_pool_ord::<#t>(#p, #i0, #o0);)
        } else if self.max && (with_indices || x.dtype != DType::F32) {
            let t = rust_type(x.dtype);
            let indices = if with_indices {
                let o1 = names.output(1);
                quote!(Some(#o1))
            } else {
                quote!(None)
            };
            let column_major = self.storage_order;
            quote!(::sinter_rt::pool::max_pool_indexed::<#t>(#p, #i0, #o0, #indices, #column_major);)
        } else {
            let exec = names.exec();
            quote!(::sinter_rt::pool::pool_f32_exec(#exec, #p, ::sinter_rt::pool::PoolKind::#kind, #i0, #o0);)
        };
        Ok(quote!(#params #call))
    }
}

/// `sinter_rt::pool::PoolParams` for `planes` planes of `input` pixels pooled by `g`.
pub(crate) fn params_tokens(planes: usize, input: &[usize], g: &Geometry) -> TokenStream {
    let (planes, input, output, kernel) = (
        lit(planes),
        usize3(input, 1),
        usize3(&g.output, 1),
        usize3(&g.kernel, 1),
    );
    let (strides, dilations) = (usize3(&g.strides, 1), usize3(&g.dilations, 1));
    let (pads_begin, pads_end) = (usize3(&g.pads_begin, 0), usize3(&g.pads_end, 0));
    quote! {
        ::sinter_rt::pool::PoolParams {
            planes: #planes, input: #input, output: #output, kernel: #kernel,
            strides: #strides, dilations: #dilations, pads_begin: #pads_begin, pads_end: #pads_end,
        }
    }
}

/// `GlobalAveragePool`, `GlobalMaxPool` or `GlobalLpPool`.
#[derive(Debug, Clone)]
pub struct GlobalPool {
    /// Max (else average or Lp).
    pub max: bool,
    /// GlobalLpPool's exponent.
    pub lp: Option<u32>,
    /// Max or average in the channels-last layout (`[N, *spatial, C]` to `[N, 1.., C]`), set
    /// by `passes::channels_last`; never read from a model.
    pub channels_last: bool,
}

/// Floats of pixels per segment from which a channels-last global pool splits each image
/// (`sinter_rt::pool`'s `SEGMENT_FLOATS`), and segments at most (`MAX_SEGMENTS`).
const POOL_SEGMENT_FLOATS: usize = 1 << 15;
const POOL_MAX_SEGMENTS: usize = 8;

impl GlobalPool {
    /// Floats of working memory of a channels-last max or average pool: the partial results
    /// of its segments (`sinter_rt::pool::global_pool_nhwc_scratch_len`, the same formula).
    fn nhwc_scratch_len(&self, cx: &OpCx<'_>) -> Result<usize> {
        let x = cx.input(0)?;
        let rank = x.shape.len();
        if !self.channels_last || self.lp.is_some() || rank < 2 {
            return Ok(0);
        }
        let spatial: usize = x.shape[1..rank - 1].iter().product();
        let channels = x.shape[rank - 1];
        let segments = (spatial.saturating_mul(channels) / POOL_SEGMENT_FLOATS)
            .clamp(1, POOL_MAX_SEGMENTS)
            .min(spatial.max(1));
        Ok(x.shape[0] * (segments - 1) * channels)
    }
}

impl OpDef for GlobalPool {
    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        match self.nhwc_scratch_len(cx) {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(TypeShape::new(DType::F32, vec![n])),
        }
    }

    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            max: node.op_type() == "GlobalMaxPool",
            lp: if node.op_type() == "GlobalLpPool" {
                Some(lp_order(node)?)
            } else {
                None
            },
            channels_last: false,
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
        let mut shape = vec![1; x.shape.len()];
        shape[0] = x.shape[0];
        if self.channels_last {
            shape[x.shape.len() - 1] = x.shape[x.shape.len() - 1];
        } else {
            shape[1] = x.shape[1];
        }
        let mut dynamic = vec![false; x.shape.len()];
        dynamic[0] = x.dynamic.first().copied().unwrap_or(false);
        Ok(vec![TypeShape::dynamic(x.dtype, shape, dynamic)])
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        cx.input(0)
            .is_ok_and(|x| spatial_varies(&x, self.channels_last))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (i0, o0) = (names.input(0), names.output(0));
        if x.is_dynamic() {
            // The actual pixels, pooled as a fixed input would be.
            let r = x.shape.len();
            let is0 = names.in_shape(cx, 0);
            let (channel, axes) = layout_axes(r, self.channels_last);
            let (first, end) = (lit(axes.start), lit(axes.end));
            let spatial = quote!(#is0[#first..#end]);
            let c = lit(x.shape[channel]);
            let os0 = names.out_shape(0);
            let mut out_shape: Vec<TokenStream> = vec![quote!(1usize); r];
            out_shape[0] = quote!(#is0[0]);
            out_shape[channel] = quote!(#c);
            let call = self.call(cx, names, quote!(spatial))?;
            return Ok(quote! {
                let spatial: usize = #spatial.iter().product::<usize>();
                let #os0 = [#(#out_shape),*];
                let #i0 = &#i0[..#is0[0] * #c * spatial];
                let #o0 = &mut #o0[..#is0[0] * #c];
                #call
            });
        }
        let spatial = lit(x.shape[layout_axes(x.shape.len(), self.channels_last).1]
            .iter()
            .product());
        self.call(cx, names, quote!(#spatial))
    }
}

impl GlobalPool {
    /// The kernel call pooling `i0` into `o0`, `spatial` (an expression) pixels per channel.
    fn call(
        &self,
        cx: &OpCx<'_>,
        names: &mut EmitNames,
        spatial: TokenStream,
    ) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (i0, o0) = (names.input(0), names.output(0));
        if self.channels_last && self.lp.is_none() {
            let channels = lit(x.shape[x.shape.len() - 1]);
            let max = self.max;
            let exec = names.exec();
            let scratch = if self.nhwc_scratch_len(cx)? > 0 {
                let s = names.scratch();
                quote!(#s)
            } else {
                quote!(&mut [])
            };
            return Ok(quote!(::sinter_rt::pool::global_pool_nhwc_f32_exec(
                #exec, #i0, #o0, #scratch, (#spatial, #channels), #max
            );));
        }
        if let Some(order) = self.lp {
            return Ok(quote!(::sinter_rt::pool::global_lp_f32(#i0, #o0, #spatial, #order);));
        }
        let f = if self.max {
            quote!(global_max_f32)
        } else {
            quote!(global_average_f32)
        };
        Ok(quote!(::sinter_rt::pool::#f(#i0, #o0, #spatial);))
    }
}

/// `MaxUnpool` (opset 9/11/22): scatters values to the positions MaxPool's Indices name,
/// zeros elsewhere; the output shape follows the window attributes or the constant
/// `output_shape` input.
#[derive(Debug, Clone)]
pub struct MaxUnpool {
    /// Kernel, strides and pads.
    pub window: Window,
}

impl MaxUnpool {
    /// (the unpooled shape the window gives, the output shape).
    fn shapes(&self, cx: &OpCx<'_>) -> Result<(Vec<usize>, Vec<usize>)> {
        let x = cx.input(0)?;
        if x.shape.len() < 3 {
            return Err(CompileError::shape("X must have rank >= 3"));
        }
        let d = x.shape.len() - 2;
        let kernel = self.window.kernel.clone().unwrap_or_default();
        let fill = |v: &[usize], n: usize, default: usize| {
            if v.is_empty() {
                vec![default; n]
            } else {
                v.to_vec()
            }
        };
        let strides = fill(&self.window.strides, d, 1);
        let pads = fill(&self.window.pads, 2 * d, 0);
        if kernel.len() != d || strides.len() != d || pads.len() != 2 * d {
            return Err(CompileError::attribute(
                "kernel_shape",
                format!("needs {d} values (and strides, pads to match)"),
            ));
        }
        let mut natural = x.shape[..2].to_vec();
        for k in 0..d {
            let full = (x.shape[2 + k].max(1) - 1) * strides[k] + kernel[k];
            let size = full.checked_sub(pads[k] + pads[d + k]).ok_or_else(|| {
                CompileError::shape(format!("pads exceed the unpooled size {full}"))
            })?;
            natural.push(size);
        }
        if cx.opt_input(2).is_none() {
            return Ok((natural.clone(), natural));
        }
        let shape: Vec<usize> = cx
            .const_ints(2, "MaxUnpool output_shape")?
            .iter()
            .map(|&v| {
                usize::try_from(v).map_err(|_| CompileError::shape(format!("negative dim {v}")))
            })
            .collect::<Result<_>>()?;
        if shape.len() != x.shape.len() || shape[..2] != x.shape[..2] {
            return Err(CompileError::shape(format!(
                "output_shape {shape:?} does not fit X {:?}",
                x.shape
            )));
        }
        Ok((natural, shape))
    }
}

impl OpDef for MaxUnpool {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let window = Window::parse(node)?;
        if window.kernel.is_none() {
            return Err(CompileError::attribute("kernel_shape", "required"));
        }
        Ok(Self { window })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (x, i) = (cx.input(0)?, cx.input(1)?);
        require_dtype(x.dtype, &[DType::F32], "X")?;
        if i.dtype != DType::I64 || i.shape != x.shape {
            return Err(CompileError::shape(format!(
                "I must be int64 of X's shape {:?}, found {}{:?}",
                x.shape, i.dtype, i.shape
            )));
        }
        let (_, shape) = self.shapes(cx)?;
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (natural, shape) = self.shapes(cx)?;
        let (natural, shape) = (usize_slice(&natural), usize_slice(&shape));
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        Ok(quote!(::sinter_rt::pool::max_unpool_f32(#i0, #i1, #o0, #natural, #shape);))
    }
}
