//! `BatchNormalization` in inference mode (opset 7..=15).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__BatchNormalization.html>. float32. Training
//! mode and the running-statistics outputs are not supported.

use proc_macro2::TokenStream;
use quote::quote;

use super::{f32_lit, lit, require_dtype, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// `Y = (X - mean) / sqrt(var + epsilon) * scale + B`, per channel (axis 1).
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Added to the variance.
    pub epsilon: f32,
}

impl OpDef for BatchNorm {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        if node.i64_or("training_mode", 0)? != 0 {
            return Err(CompileError::unsupported(
                "BatchNormalization in training mode",
            ));
        }
        if node.node.outputs.iter().skip(1).any(Option::is_some) {
            return Err(CompileError::unsupported(
                "BatchNormalization with running-statistics outputs (training)",
            ));
        }
        if node.opset() < 9 && node.i64_or("spatial", 1)? == 0 {
            return Err(CompileError::unsupported(
                "BatchNormalization with spatial = 0",
            ));
        }
        Ok(Self {
            epsilon: node.f32_or("epsilon", 1e-5)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        let channels = x.shape.get(1).copied().unwrap_or(1);
        for i in 1..5 {
            let p = cx.input(i)?;
            if p.dtype != x.dtype || p.shape != [channels] {
                return Err(CompileError::shape(format!(
                    "input {i} must be {}[{channels}], found {}{:?}",
                    x.dtype, p.dtype, p.shape
                )));
            }
        }
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let channels = lit(x.shape.get(1).copied().unwrap_or(1));
        let inner = lit(x.shape.iter().skip(2).product());
        let epsilon = f32_lit(self.epsilon);
        let (i0, i1, i2, i3, i4) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.input(3),
            names.input(4),
        );
        let o0 = names.output(0);
        Ok(
            quote!(::sinter_rt::norm::batch_norm_f32(#i0, #i1, #i2, #i3, #i4, #epsilon, #o0, #channels, #inner);),
        )
    }
}
