//! Quantization ops: `QuantizeLinear` and `DequantizeLinear` (opset 10..=25+: per-tensor,
//! per-axis from 13, blocked and `output_dtype` from 21), `DynamicQuantizeLinear` (opset 11)
//! and `QLinearMatMul` (opset 10..=21, per-tensor scales).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__QuantizeLinear.html>,
//! <https://onnx.ai/onnx/operators/onnx__DequantizeLinear.html>,
//! <https://onnx.ai/onnx/operators/onnx__DynamicQuantizeLinear.html>,
//! <https://onnx.ai/onnx/operators/onnx__QLinearMatMul.html>. Integer types int8, uint8,
//! int16, uint16 (and int32 for DequantizeLinear), int4, uint4, int2, uint2, and the float
//! types float8 E4M3FN/E4M3FNUZ/E5M2/E5M2FNUZ and float4 E2M1 (rounded to nearest even,
//! `saturate` from opset 19; the spec's formulas with the zero point, though it is usually
//! zero for those); float32 values, float16/bfloat16 scales where noted.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::movement::minifloat_tokens;
use super::{
    lit, normalize_axis, require_dtype, rust_type, EmitNames, NodeCx, OpCx, OpDef, TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::DType;

const QTYPES: &[DType] = &[
    DType::U8,
    DType::I8,
    DType::U16,
    DType::I16,
    DType::U4,
    DType::I4,
    DType::U2,
    DType::I2,
    DType::F8E4M3FN,
    DType::F8E4M3FNUZ,
    DType::F8E5M2,
    DType::F8E5M2FNUZ,
    DType::F4E2M1,
];

/// The saturation range of an integer type.
fn range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::U8 => (0, 255),
        DType::I8 => (-128, 127),
        DType::U16 => (0, 65535),
        DType::I16 => (-32768, 32767),
        DType::U4 => (0, 15),
        DType::I4 => (-8, 7),
        DType::U2 => (0, 3),
        DType::I2 => (-2, 1),
        _ => (i64::from(i32::MIN), i64::from(i32::MAX)),
    }
}

fn dtype_attr(node: &NodeCx<'_>, name: &str) -> Result<Option<DType>> {
    let code = node.i64_or(name, 0)?;
    if code == 0 {
        return Ok(None);
    }
    let c = i32::try_from(code)
        .map_err(|_| CompileError::attribute(name, format!("bad type code {code}")))?;
    DType::from_onnx(c)
        .map(Some)
        .ok_or_else(|| CompileError::unsupported(format!("{name} {}", DType::onnx_name(c))))
}

/// The shared attributes of QuantizeLinear / DequantizeLinear.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Dequantize rather than quantize.
    pub dequantize: bool,
    /// The per-axis / blocked axis.
    pub axis: i64,
    /// Block size (0: not blocked).
    pub block: usize,
    /// Requested output type.
    pub output_dtype: Option<DType>,
    /// Whether quantizing to float8 saturates out-of-range values (else inf/NaN).
    pub saturate: bool,
}

impl Linear {
    /// The parameter layout tokens, checking the scale and zero-point shapes.
    fn layout(&self, cx: &OpCx<'_>) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let s = cx.input(1)?;
        if let Some(z) = cx.opt_input(2) {
            // A scalar scale with a one-element zero point (or the reverse) is still
            // per-tensor, as the reference implementation takes it.
            let one = |shape: &[usize]| shape.iter().product::<usize>() == 1 && shape.len() <= 1;
            if z.shape != s.shape && !(one(z.shape) && one(s.shape)) {
                return Err(CompileError::shape(
                    "zero point and scale have different shapes",
                ));
            }
        }
        let n: usize = x.shape.iter().product();
        let sn: usize = s.shape.iter().product();
        let (dims, block, strides) = if self.block == 0 && sn == 1 && s.shape.len() <= 1 {
            ([1, 1, n], 1, [0, 0, 0])
        } else {
            let axis = normalize_axis(self.axis, x.shape.len(), "axis")?;
            let outer: usize = x.shape[..axis].iter().product();
            let d = x.shape[axis];
            let inner: usize = x.shape[axis + 1..].iter().product();
            if self.block == 0 {
                if s.shape != [d] {
                    return Err(CompileError::shape(format!(
                        "per-axis scale {:?} does not fit axis {axis} of {:?}",
                        s.shape, x.shape
                    )));
                }
                ([outer, d, inner], 1, [0, 1, 0])
            } else {
                let nb = d.div_ceil(self.block);
                let mut want = x.shape.to_vec();
                want[axis] = nb;
                if s.shape != want.as_slice() {
                    return Err(CompileError::shape(format!(
                        "blocked scale {:?} does not fit {:?} with block size {}",
                        s.shape, x.shape, self.block
                    )));
                }
                ([outer, d, inner], self.block, [nb * inner, inner, 1])
            }
        };
        let (dims, strides) = (dims.map(lit), strides.map(lit));
        let block = lit(block);
        Ok(
            quote!(::sinter_rt::quant::ParamLayout { dims: [#(#dims),*], block: #block, strides: [#(#strides),*] }),
        )
    }

    fn out_dtype(&self, cx: &OpCx<'_>) -> Result<DType> {
        let s = cx.input(1)?;
        if self.dequantize {
            let t = self.output_dtype.unwrap_or(s.dtype);
            if t != s.dtype {
                return Err(CompileError::unsupported(
                    "DequantizeLinear with output_dtype other than the scale's type",
                ));
            }
            Ok(t)
        } else {
            Ok(match cx.opt_input(2) {
                Some(z) => z.dtype,
                None => self.output_dtype.unwrap_or(DType::U8),
            })
        }
    }
}

impl OpDef for Linear {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let opset = node.opset();
        Ok(Self {
            dequantize: node.op_type() == "DequantizeLinear",
            axis: if opset >= 13 {
                node.i64_or("axis", 1)?
            } else {
                1
            },
            block: if opset >= 21 {
                node.usize_or("block_size", 0)?
            } else {
                0
            },
            output_dtype: if opset >= 21 {
                dtype_attr(node, "output_dtype")?
            } else {
                None
            },
            saturate: opset < 19 || node.i64_or("saturate", 1)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        let s = cx.input(1)?;
        let out = self.out_dtype(cx)?;
        if self.dequantize {
            let mut allowed = QTYPES.to_vec();
            allowed.push(DType::I32);
            require_dtype(x.dtype, &allowed, "input x")?;
            require_dtype(s.dtype, &[DType::F32, DType::F16, DType::BF16], "scale")?;
            if let Some(z) = cx.opt_input(2) {
                if z.dtype != x.dtype {
                    return Err(CompileError::shape("zero point type differs from x"));
                }
            }
        } else {
            require_dtype(x.dtype, &[DType::F32], "input x")?;
            require_dtype(s.dtype, &[DType::F32], "scale")?;
            require_dtype(out, QTYPES, "output")?;
            if let Some(z) = cx.opt_input(2) {
                if z.dtype != out {
                    return Err(CompileError::shape(
                        "zero point type differs from output_dtype",
                    ));
                }
            }
        }
        self.layout(cx)?;
        Ok(vec![TypeShape::new(out, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let layout = self.layout(cx)?;
        let out = self.out_dtype(cx)?;
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        let (zero, zt) = match cx.opt_input(2) {
            Some(z) => {
                let i2 = names.input(2);
                (quote!(Some(#i2)), rust_type(z.dtype))
            }
            None => {
                let t = rust_type(if self.dequantize { x.dtype } else { out });
                (quote!(None::<&[#t]>), t)
            }
        };
        let xt = rust_type(x.dtype);
        // 8-bit <-> float32 with float32 scales: the vectorized kernels.
        let scale_f32 = cx.input(1)?.dtype == DType::F32;
        let bytes = |t: DType| matches!(t, DType::U8 | DType::I8);
        let zero_slice = match cx.opt_input(2) {
            Some(_) => {
                let z = names.input(2);
                quote!(#z)
            }
            None => quote!(&[]),
        };
        if scale_f32 && !self.dequantize && x.dtype == DType::F32 && bytes(out) {
            return Ok(
                quote!(::sinter_rt::int8::quantize_linear(#i0, #i1, #zero_slice, #o0, #layout);),
            );
        }
        if scale_f32 && self.dequantize && bytes(x.dtype) && out == DType::F32 {
            return Ok(
                quote!(::sinter_rt::int8::dequantize_linear(#i0, #i1, #zero_slice, #o0, #layout);),
            );
        }
        let f = if self.dequantize {
            let st = rust_type(cx.input(1)?.dtype);
            let (dec, enc) = match out {
                DType::F16 => (
                    quote!(::sinter_rt::half::f16_to_f32(s)),
                    quote!(::sinter_rt::half::f32_to_f16),
                ),
                DType::BF16 => (
                    quote!(::sinter_rt::half::bf16_to_f32(s)),
                    quote!(::sinter_rt::half::f32_to_bf16),
                ),
                _ => (quote!(s), quote!(core::convert::identity)),
            };
            let diff = match minifloat_tokens(x.dtype) {
                Some(format) => quote!((#format.decode(x) - #format.decode(z))),
                None => quote!((x as f32 - z as f32)),
            };
            quote!(|x: #xt, s: #st, z: #zt| #enc(#diff * #dec))
        } else if let Some(format) = minifloat_tokens(out) {
            let saturate = self.saturate;
            quote!(|x: f32, s: f32, z: #zt| #format.encode(x / s + #format.decode(z), #saturate))
        } else {
            let (lo, hi) = range(out);
            let (lo, hi) = (Literal::i64_unsuffixed(lo), Literal::i64_unsuffixed(hi));
            let ot = rust_type(out);
            quote!(|x: f32, s: f32, z: #zt| ::sinter_rt::quant::quantize_f32(x, s, i64::from(z), #lo, #hi) as #ot)
        };
        Ok(quote!(::sinter_rt::quant::affine(#i0, #i1, #zero, #o0, #layout, #f);))
    }
}

/// `DynamicQuantizeLinear` (float32 to uint8).
#[derive(Debug, Clone)]
pub struct DynamicQuantize;

impl OpDef for DynamicQuantize {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "input")?;
        Ok(vec![
            TypeShape::new(DType::U8, x.shape.to_vec()),
            TypeShape::new(DType::F32, vec![]),
            TypeShape::new(DType::U8, vec![]),
        ])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let i0 = names.input(0);
        let (o0, o1, o2) = (names.output(0), names.output(1), names.output(2));
        // Outputs the graph does not use may still be bound; all three are written.
        let _ = cx;
        Ok(quote!(::sinter_rt::quant::dynamic_quantize_f32(#i0, #o0, #o1, #o2);))
    }
}
