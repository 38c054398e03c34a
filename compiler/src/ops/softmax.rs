//! `Softmax`, `LogSoftmax` and `Hardmax` (opset 1..=13: before 13 over the flattened trailing
//! axes, from 13 over one axis).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Softmax.html>,
//! <https://onnx.ai/onnx/operators/onnx__LogSoftmax.html>,
//! <https://onnx.ai/onnx/operators/onnx__Hardmax.html>. float32 (f32 kernels), float64,
//! float16 and bfloat16 (computed in f64 and rounded).

use proc_macro2::TokenStream;
use quote::quote;

use super::{lit, normalize_axis, require_dtype, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::Result;
use crate::ir::DType;

/// Which of the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxKind {
    /// `e^x / sum(e^x)`.
    Softmax,
    /// `x - ln(sum(e^x))`.
    LogSoftmax,
    /// 1 at the first maximum, 0 elsewhere.
    Hardmax,
}

/// `Softmax`, `LogSoftmax` or `Hardmax` along `axis`.
#[derive(Debug, Clone)]
pub struct Softmax {
    /// The function.
    pub kind: SoftmaxKind,
    /// The axis (possibly negative).
    pub axis: i64,
    /// Opset < 13: the input is viewed as 2-D `[prod(..axis), prod(axis..)]`.
    pub flatten: bool,
}

impl Softmax {
    /// `(outer, axis_len, inner)`.
    fn split(&self, shape: &[usize]) -> Result<(usize, usize, usize)> {
        if shape.is_empty() {
            return Ok((1, 1, 1));
        }
        let axis = normalize_axis(self.axis, shape.len(), "axis")?;
        let outer = shape[..axis].iter().product();
        Ok(if self.flatten {
            (outer, shape[axis..].iter().product(), 1)
        } else {
            (outer, shape[axis], shape[axis + 1..].iter().product())
        })
    }
}

impl OpDef for Softmax {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let flatten = node.opset() < 13;
        let kind = match node.op_type() {
            "LogSoftmax" => SoftmaxKind::LogSoftmax,
            "Hardmax" => SoftmaxKind::Hardmax,
            _ => SoftmaxKind::Softmax,
        };
        Ok(Self {
            kind,
            axis: node.i64_or("axis", if flatten { 1 } else { -1 })?,
            flatten,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(
            x.dtype,
            &[DType::F32, DType::F64, DType::F16, DType::BF16],
            "input",
        )?;
        self.split(x.shape)?;
        Ok(vec![TypeShape::dynamic(
            x.dtype,
            x.shape.to_vec(),
            x.dynamic.to_vec(),
        )])
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        // Any axis may vary: the row layout is computed at run time.
        cx.input(0).is_ok_and(|x| !x.shape.is_empty())
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (outer, len, inner) = self.split(x.shape)?;
        if x.is_dynamic() {
            // `[outer, len, inner]` around the axis, from the run-time shape.
            let axis = normalize_axis(self.axis, x.shape.len(), "axis")?;
            let is0 = names.in_shape(cx, 0);
            let os0 = names.out_shape(0);
            let (i0, o0) = (names.input(0), names.output(0));
            let (a, a1) = (lit(axis), lit(axis + 1));
            let (len, inner) = if self.flatten {
                (quote!(#is0[#a..].iter().product::<usize>()), quote!(1))
            } else {
                (
                    quote!(#is0[#a]),
                    quote!(#is0[#a1..].iter().product::<usize>()),
                )
            };
            let big = x.shape.iter().product::<usize>() >= PARALLEL_MIN;
            let body = self.emit_rows(
                x.dtype,
                big,
                quote!(outer),
                quote!(len),
                quote!(inner),
                names,
            );
            return Ok(quote! {
                let #os0 = #is0;
                let n: usize = #os0.iter().product();
                let (outer, len, inner): (usize, usize, usize) =
                    (#is0[..#a].iter().product(), #len, #inner);
                let #i0 = &#i0[..n];
                let #o0 = &mut #o0[..n];
                #body
            });
        }
        let big = x.shape.iter().product::<usize>() >= PARALLEL_MIN;
        let (outer, len, inner) = (lit(outer), lit(len), lit(inner));
        Ok(self.emit_rows(
            x.dtype,
            big,
            quote!(#outer),
            quote!(#len),
            quote!(#inner),
            names,
        ))
    }
}

impl Softmax {
    /// The kernel call over `[outer, len, inner]` (any of them run-time expressions); `big`
    /// float32 tensors split across threads.
    fn emit_rows(
        &self,
        dtype: DType,
        big: bool,
        outer: TokenStream,
        len: TokenStream,
        inner: TokenStream,
        names: &mut EmitNames,
    ) -> TokenStream {
        let (i0, o0) = (names.input(0), names.output(0));
        let x_dtype = dtype;
        if x_dtype != DType::F32 {
            let kind = match self.kind {
                SoftmaxKind::Softmax => quote!(Softmax),
                SoftmaxKind::LogSoftmax => quote!(LogSoftmax),
                SoftmaxKind::Hardmax => quote!(Hardmax),
            };
            let (dec, enc) = match x_dtype {
                DType::F16 => (
                    quote!(|v: u16| f64::from(::sinter_rt::half::f16_to_f32(v))),
                    quote!(|v: f64| ::sinter_rt::half::f32_to_f16(v as f32)),
                ),
                DType::BF16 => (
                    quote!(|v: u16| f64::from(::sinter_rt::half::bf16_to_f32(v))),
                    quote!(|v: f64| ::sinter_rt::half::f32_to_bf16(v as f32)),
                ),
                _ => (quote!(|v: f64| v), quote!(|v: f64| v)),
            };
            return quote!(::sinter_rt::softmax::softmax_via(
                ::sinter_rt::softmax::SoftmaxKind::#kind, #i0, #o0, [#outer, #len, #inner], #dec, #enc););
        }
        if big && self.kind != SoftmaxKind::Hardmax {
            let (exec, log) = (names.exec(), self.kind == SoftmaxKind::LogSoftmax);
            return quote! {
                ::sinter_rt::softmax::softmax_f32_exec(#exec, #log, #i0, #o0, #outer, #len, #inner);
            };
        }
        let kernel = match self.kind {
            SoftmaxKind::Softmax => quote!(softmax_f32),
            SoftmaxKind::LogSoftmax => quote!(log_softmax_f32),
            SoftmaxKind::Hardmax => quote!(hardmax_f32),
        };
        quote!(::sinter_rt::softmax::#kernel(#i0, #o0, #outer, #len, #inner);)
    }
}

/// Elements from which Softmax and LogSoftmax split across threads.
const PARALLEL_MIN: usize = 1 << 16;
