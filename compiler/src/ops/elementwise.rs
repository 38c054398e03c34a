//! Elementwise ops: binary arithmetic with numpy broadcasting (`Add`, `Sub`, `Mul`, `Div`),
//! activations (`Relu`, `Sigmoid`, `Tanh`) and `Clip`.
//!
//! Spec: <https://onnx.ai/onnx/operators/> (Add-7/13/14, Relu-6/13/14, Clip-6/11/12/13).
//! Binary ops take float32 and the integer types that carry shape arithmetic; the
//! activations take float32.

use proc_macro2::TokenStream;
use quote::quote;

use super::{
    broadcast_shapes, broadcast_strides, f32_lit, require_dtype, rust_type, usize_slice, EmitNames,
    NodeCx, OpCx, OpDef, TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::{DType, Tensor};

/// Which binary op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (integer division truncates toward zero).
    Div,
}

/// `Add`, `Sub`, `Mul`, `Div`.
#[derive(Debug, Clone)]
pub struct Binary {
    /// The operation.
    pub kind: BinaryKind,
}

const BINARY_TYPES: &[DType] = &[DType::F32, DType::F64, DType::I32, DType::I64];

impl OpDef for Binary {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let kind = match node.op_type() {
            "Add" => BinaryKind::Add,
            "Sub" => BinaryKind::Sub,
            "Mul" => BinaryKind::Mul,
            _ => BinaryKind::Div,
        };
        if node.opset() < 7 && node.attr("broadcast").is_some() {
            return Err(CompileError::unsupported(
                "legacy broadcast attribute (opset < 7)",
            ));
        }
        Ok(Self { kind })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if a.dtype != b.dtype {
            return Err(CompileError::shape(format!(
                "input types differ: {} and {}",
                a.dtype, b.dtype
            )));
        }
        require_dtype(a.dtype, BINARY_TYPES, "inputs")?;
        Ok(vec![TypeShape::new(
            a.dtype,
            broadcast_shapes(a.shape, b.shape)?,
        )])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let (a, b) = (cx.input(0).ok()?, cx.input(1).ok()?);
        let (ta, tb) = (a.constant?, b.constant?);
        let shape = broadcast_shapes(a.shape, b.shape).ok()?;
        let (sa, sb) = (
            broadcast_strides(a.shape, &shape),
            broadcast_strides(b.shape, &shape),
        );
        let n: usize = shape.iter().product();
        let index = |i: usize, strides: &[usize]| {
            let mut rem = i;
            let mut off = 0;
            for axis in (0..shape.len()).rev() {
                off += (rem % shape[axis]) * strides[axis];
                rem /= shape[axis];
            }
            off
        };
        let out = match a.dtype {
            DType::F32 => {
                let (x, y) = (ta.as_f32()?, tb.as_f32()?);
                let v: Vec<f32> = (0..n)
                    .map(|i| self.apply_f32(x[index(i, &sa)], y[index(i, &sb)]))
                    .collect();
                Tensor::from_f32(shape, &v)
            }
            DType::I64 | DType::I32 => {
                let (x, y) = (ta.to_i64s()?, tb.to_i64s()?);
                let v: Vec<i64> = (0..n)
                    .map(|i| self.apply_i64(x[index(i, &sa)], y[index(i, &sb)]))
                    .collect();
                if a.dtype == DType::I64 {
                    Tensor::from_i64(shape, &v)
                } else {
                    Tensor::from_i32(shape, &v.iter().map(|&v| v as i32).collect::<Vec<_>>())
                }
            }
            _ => return None,
        };
        Some(Ok(vec![out]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (a, b, out) = (cx.input(0)?, cx.input(1)?, cx.output(0)?);
        let sa = usize_slice(&broadcast_strides(a.shape, out.shape));
        let sb = usize_slice(&broadcast_strides(b.shape, out.shape));
        let shape = usize_slice(out.shape);
        let t = rust_type(a.dtype);
        let f = if a.dtype.is_float() {
            match self.kind {
                BinaryKind::Add => quote!(|a: #t, b: #t| a + b),
                BinaryKind::Sub => quote!(|a: #t, b: #t| a - b),
                BinaryKind::Mul => quote!(|a: #t, b: #t| a * b),
                BinaryKind::Div => quote!(|a: #t, b: #t| a / b),
            }
        } else {
            match self.kind {
                BinaryKind::Add => quote!(|a: #t, b: #t| a.wrapping_add(b)),
                BinaryKind::Sub => quote!(|a: #t, b: #t| a.wrapping_sub(b)),
                BinaryKind::Mul => quote!(|a: #t, b: #t| a.wrapping_mul(b)),
                BinaryKind::Div => {
                    quote!(|a: #t, b: #t| if b == 0 { 0 } else { a.wrapping_div(b) })
                }
            }
        };
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        Ok(quote!(::sinter_rt::elementwise::zip(#i0, #sa, #i1, #sb, #o0, #shape, #f);))
    }
}

impl Binary {
    fn apply_f32(&self, a: f32, b: f32) -> f32 {
        match self.kind {
            BinaryKind::Add => a + b,
            BinaryKind::Sub => a - b,
            BinaryKind::Mul => a * b,
            BinaryKind::Div => a / b,
        }
    }
    fn apply_i64(&self, a: i64, b: i64) -> i64 {
        match self.kind {
            BinaryKind::Add => a.wrapping_add(b),
            BinaryKind::Sub => a.wrapping_sub(b),
            BinaryKind::Mul => a.wrapping_mul(b),
            BinaryKind::Div => {
                if b == 0 {
                    0
                } else {
                    a.wrapping_div(b)
                }
            }
        }
    }
}

/// Which activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryKind {
    /// `max(x, 0)` (NaN stays NaN).
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

/// `Relu`, `Sigmoid`, `Tanh` on float32.
#[derive(Debug, Clone)]
pub struct Unary {
    /// The function.
    pub kind: UnaryKind,
}

impl OpDef for Unary {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let kind = match node.op_type() {
            "Relu" => UnaryKind::Relu,
            "Sigmoid" => UnaryKind::Sigmoid,
            _ => UnaryKind::Tanh,
        };
        Ok(Self { kind })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "input")?;
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, _cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let f = match self.kind {
            UnaryKind::Relu => quote!(|x: f32| if x < 0.0 { 0.0 } else { x }),
            UnaryKind::Sigmoid => quote!(::sinter_rt::math::sigmoid),
            UnaryKind::Tanh => quote!(::sinter_rt::math::tanh),
        };
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote!(::sinter_rt::elementwise::map(#i0, #o0, #f);))
    }
}

/// `Clip`: bounds from attributes (opset < 11) or optional scalar inputs (opset >= 11).
#[derive(Debug, Clone)]
pub struct Clip {
    /// Attribute bounds (opset < 11).
    pub attr_bounds: Option<(f32, f32)>,
}

impl OpDef for Clip {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let attr_bounds = if node.opset() < 11 {
            Some((node.f32_or("min", f32::MIN)?, node.f32_or("max", f32::MAX)?))
        } else {
            None
        };
        Ok(Self { attr_bounds })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "input")?;
        for i in 1..3 {
            if let Some(bound) = cx.opt_input(i) {
                if bound.dtype != x.dtype || bound.shape.iter().product::<usize>() != 1 {
                    return Err(CompileError::shape(format!(
                        "bound (input {i}) must be a {} scalar",
                        x.dtype
                    )));
                }
            }
        }
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let mut bound = |i: usize, default: f32| match (self.attr_bounds, cx.opt_input(i)) {
            (Some((lo, hi)), _) => f32_lit(if i == 1 { lo } else { hi }),
            (None, Some(_)) => {
                let ident = names.input(i);
                quote!(#ident[0])
            }
            (None, None) => f32_lit(default),
        };
        let lo = bound(1, f32::NEG_INFINITY);
        let hi = bound(2, f32::INFINITY);
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote! {
            let (lo, hi): (f32, f32) = (#lo, #hi);
            // min(max(x, lo), hi): when lo > hi every element becomes hi, as the spec says.
            ::sinter_rt::elementwise::map(#i0, #o0, |x: f32| { let v = if x < lo { lo } else { x }; if v > hi { hi } else { v } });
        })
    }
}
