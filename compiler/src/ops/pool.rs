//! Pooling: `MaxPool`, `AveragePool` (opset 7..=22: pads, `auto_pad`, `ceil_mode`,
//! `count_include_pad`, dilations), `GlobalAveragePool`, `GlobalMaxPool`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__MaxPool.html>. float32. MaxPool's optional
//! `Indices` output and `storage_order` are not supported yet.

use proc_macro2::TokenStream;
use quote::quote;

use super::conv::Window;
use super::{lit, require_dtype, usize3, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// `MaxPool` or `AveragePool`.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Max (else average).
    pub max: bool,
    /// Average: divide by the window size within the padded input, not the valid count.
    pub count_include_pad: bool,
    /// The window.
    pub window: Window,
}

impl OpDef for Pool {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let max = node.op_type() == "MaxPool";
        if max && node.node.outputs.get(1).is_some_and(Option::is_some) {
            return Err(CompileError::unsupported("MaxPool with the Indices output"));
        }
        if max && node.i64_or("storage_order", 0)? != 0 {
            return Err(CompileError::unsupported("MaxPool storage_order = 1"));
        }
        let window = Window::parse(node)?;
        if window.kernel.is_none() {
            return Err(CompileError::attribute("kernel_shape", "required"));
        }
        Ok(Self {
            max,
            count_include_pad: node.i64_or("count_include_pad", 0)? != 0,
            window,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        if x.shape.len() < 3 {
            return Err(CompileError::shape(format!(
                "X must have rank >= 3, found {:?}",
                x.shape
            )));
        }
        let g = self.window.resolve(&x.shape[2..], None)?;
        let mut shape = x.shape[..2].to_vec();
        shape.extend(&g.output);
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let g = self.window.resolve(&x.shape[2..], None)?;
        let planes = lit(x.shape[0] * x.shape[1]);
        let (input, output, kernel) = (
            usize3(&x.shape[2..], 1),
            usize3(&g.output, 1),
            usize3(&g.kernel, 1),
        );
        let (strides, dilations) = (usize3(&g.strides, 1), usize3(&g.dilations, 1));
        let (pads_begin, pads_end) = (usize3(&g.pads_begin, 0), usize3(&g.pads_end, 0));
        let kind = match (self.max, self.count_include_pad) {
            (true, _) => quote!(Max),
            (false, false) => quote!(Average),
            (false, true) => quote!(AverageIncludePad),
        };
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote! {
            const PARAMS: ::sinter_rt::pool::PoolParams = ::sinter_rt::pool::PoolParams {
                planes: #planes, input: #input, output: #output, kernel: #kernel,
                strides: #strides, dilations: #dilations, pads_begin: #pads_begin, pads_end: #pads_end,
            };
            ::sinter_rt::pool::pool_f32(&PARAMS, ::sinter_rt::pool::PoolKind::#kind, #i0, #o0);
        })
    }
}

/// `GlobalAveragePool` or `GlobalMaxPool`.
#[derive(Debug, Clone)]
pub struct GlobalPool {
    /// Max (else average).
    pub max: bool,
}

impl OpDef for GlobalPool {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            max: node.op_type() == "GlobalMaxPool",
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
        let mut shape = x.shape[..2].to_vec();
        shape.resize(x.shape.len(), 1);
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let spatial = lit(x.shape[2..].iter().product());
        let (i0, o0) = (names.input(0), names.output(0));
        let f = if self.max {
            quote!(global_max_f32)
        } else {
            quote!(global_average_f32)
        };
        Ok(quote!(::sinter_rt::pool::#f(#i0, #o0, #spatial);))
    }
}
