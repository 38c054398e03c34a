//! Losses: `NegativeLogLikelihoodLoss` (opset 12, 13, 22) and `SoftmaxCrossEntropyLoss`
//! (opset 12, 13) with its optional `log_prob` output; `reduction` none / sum / mean,
//! class `weights`, `ignore_index`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__NegativeLogLikelihoodLoss.html>,
//! <https://onnx.ai/onnx/operators/onnx__SoftmaxCrossEntropyLoss.html>. float32 scores,
//! int32/int64 targets (int64 only, here).

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use super::{lit, require_dtype, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// `NegativeLogLikelihoodLoss` or `SoftmaxCrossEntropyLoss`.
#[derive(Debug, Clone)]
pub struct Loss {
    softmax: bool,
    reduction: &'static str,
    ignore_index: Option<i64>,
}

impl Loss {
    /// (N, C, inner) and the per-element loss shape.
    fn layout(cx: &OpCx<'_>) -> Result<(usize, usize, usize, Vec<usize>)> {
        let (x, t) = (cx.input(0)?, cx.input(1)?);
        if x.shape.len() < 2 {
            return Err(CompileError::shape(format!(
                "scores must be [N, C, ...], found {:?}",
                x.shape
            )));
        }
        let mut expect = vec![x.shape[0]];
        expect.extend(&x.shape[2..]);
        if t.shape != expect.as_slice() {
            return Err(CompileError::shape(format!(
                "target {:?} does not fit scores {:?}",
                t.shape, x.shape
            )));
        }
        if let Some(w) = cx.opt_input(2) {
            if w.dtype != x.dtype || w.shape != [x.shape[1]] {
                return Err(CompileError::shape(format!(
                    "weights must be {}[{}], found {}{:?}",
                    x.dtype, x.shape[1], w.dtype, w.shape
                )));
            }
        }
        Ok((
            x.shape[0],
            x.shape[1],
            x.shape[2..].iter().product(),
            expect,
        ))
    }
}

impl OpDef for Loss {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let reduction = match node.string_or("reduction", "mean")?.as_str() {
            "none" => "None",
            "sum" => "Sum",
            "mean" => "Mean",
            other => {
                return Err(CompileError::attribute(
                    "reduction",
                    format!("unknown reduction {other:?}"),
                ))
            }
        };
        Ok(Self {
            softmax: node.op_type() == "SoftmaxCrossEntropyLoss",
            reduction,
            ignore_index: node.i64_opt("ignore_index")?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "scores")?;
        require_dtype(cx.input(1)?.dtype, &[DType::I64], "target")?;
        let (_, _, _, per_element) = Self::layout(cx)?;
        let loss = if self.reduction == "None" {
            per_element
        } else {
            Vec::new()
        };
        let mut out = vec![TypeShape::new(x.dtype, loss)];
        if self.softmax {
            out.push(TypeShape::new(x.dtype, x.shape.to_vec()));
        }
        Ok(out)
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let wants_log_prob = cx.outputs.get(1).copied().flatten().is_some();
        if self.softmax && !wants_log_prob {
            let x = cx.input(0).ok()?;
            return Some(TypeShape::new(DType::F32, vec![x.shape.iter().product()]));
        }
        None
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (n, c, inner, _) = Self::layout(cx)?;
        let (n, c, inner) = (lit(n), lit(c), lit(inner));
        let reduction = Ident::new(self.reduction, Span::call_site());
        let ignore = match self.ignore_index {
            Some(v) => quote!(Some(#v)),
            None => quote!(None),
        };
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        let weight = if cx.opt_input(2).is_some() {
            let w = names.input(2);
            quote!(Some(#w))
        } else {
            quote!(None)
        };
        let mut code = quote! {
            const PARAMS: ::sinter_rt::loss::LossParams = ::sinter_rt::loss::LossParams {
                batch: #n, classes: #c, inner: #inner,
                reduction: ::sinter_rt::loss::Reduction::#reduction, ignore_index: #ignore,
            };
        };
        if self.softmax {
            let log_prob = if cx.outputs.get(1).copied().flatten().is_some() {
                let o1 = names.output(1);
                quote!(#o1)
            } else {
                let s = names.scratch();
                quote!(#s)
            };
            code.extend(quote! {
                ::sinter_rt::loss::log_softmax_classes_f32(&PARAMS, #i0, #log_prob);
                ::sinter_rt::loss::nll_loss_f32(&PARAMS, #log_prob, #i1, #weight, #o0);
            });
        } else {
            code.extend(quote!(::sinter_rt::loss::nll_loss_f32(&PARAMS, #i0, #i1, #weight, #o0);));
        }
        Ok(code)
    }
}
