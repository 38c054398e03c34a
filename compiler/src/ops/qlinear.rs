//! The `com.microsoft` quantized ops ONNX Runtime's quantizer emits in the QOperator format
//! (domain version 1): `QLinearAdd`, `QLinearMul`, `QLinearSigmoid`, `QLinearLeakyRelu`,
//! `QLinearGlobalAveragePool`, `QLinearAveragePool`, `QLinearConcat`, `QLinearSoftmax` and
//! `QLinearWhere`, on uint8 and int8 with per-tensor (scalar) scales and zero points.
//!
//! Spec: <https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md>. The
//! spec gives the formulas in real numbers; what an ONNX Runtime user sees is what its CPU
//! kernels compute, so every op here reproduces those kernels' f32 arithmetic step for step
//! and the integer outputs match ONNX Runtime's bit for bit (`tests/data/qlinear_ops`,
//! `scripts/make_qlinear_cases.py`; the reference is ONNX Runtime on x86-64 with AVX2 and FMA,
//! whose MLAS paths these are: on CPUs without them, or on ARM, ONNX Runtime takes other
//! paths that round differently in places, so it disagrees with itself there, by one step):
//!
//! - `QLinearAdd`: MLAS's AVX2 kernel, `fma(p, p_scale / c_scale, fma(q, q_scale / c_scale,
//!   c_zero - fma(rp, p_zero, rq * q_zero)))`, where `q` is the operand ONNX Runtime's
//!   broadcaster holds constant along the innermost span (A or B; see [`ort_a_repeats`]) and
//!   `p` the other. The operand order changes the rounding, so it is decided here from the
//!   shapes exactly as ONNX Runtime decides it.
//! - `QLinearMul`: MLAS's SSE2 kernel, `(a - a_zero) * (b - b_zero)` exactly in integers,
//!   times `a_scale * b_scale / c_scale`, plus `c_zero`, no fused multiply-add.
//! - `QLinearSigmoid`, `QLinearLeakyRelu`, and the requantization of each input of
//!   `QLinearConcat` and `QLinearWhere`: a 256-entry table, entry `b` the quantized `f` of the
//!   dequantized element with bit pattern `b` (MLAS's FMA3 logistic for the sigmoid). With
//!   constant scales and zero points the compiler builds the table; otherwise the generated
//!   code builds it at run time with the same arithmetic (`sinter_rt::qlinear`).
//! - `QLinearGlobalAveragePool` (and `QLinearAveragePool` when its window is the whole
//!   unpadded image, which ONNX Runtime routes to the global pool): integer sums, then
//!   `sum * (x_scale / (y_scale * image))` in f32.
//! - `QLinearAveragePool` otherwise: dequantize, f32 window sums, divide by the count, then
//!   `sum / y_scale + y_zero` rounded.
//! - `QLinearSoftmax`: ONNX Runtime's f32 exponential table shifted by the row maximum,
//!   `exp * floor(1 / y_scale) / sum` rounded. The table comes from `exp` and `ln` in f64; the
//!   compiler uses the platform's (as ONNX Runtime does) when `X_scale` is a constant.
//!
//! Rounding is always half to even, as `cvtps2dq` and `nearbyintf` round. Per-axis scales or
//! zero points are refused ([`ErrorKind::Unsupported`](crate::error::ErrorKind)): ONNX
//! Runtime's kernels take one scale per tensor.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::conv::Window;
use super::{
    broadcast_shapes, broadcast_strides, f32_lit, lit, normalize_axis, rust_type, usize3,
    usize_slice, EmitNames, NodeCx, OpCx, OpDef, Operand, TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// The most axes the runtime's broadcasting walk handles.
const MAX_RANK: usize = 16;

// ---- the quantization parameters ----

/// Checks that `x` is uint8 or int8.
fn check_q8(dtype: DType, what: &str) -> Result<()> {
    if matches!(dtype, DType::U8 | DType::I8) {
        Ok(())
    } else {
        Err(CompileError::unsupported(format!(
            "{what} of type {dtype} (uint8 and int8 are supported)"
        )))
    }
}

/// Checks that a scale or zero point holds one value (a scalar or a 1-element vector).
fn per_tensor(op_type: &str, operand: &Operand<'_>, what: &str) -> Result<()> {
    if operand.shape.len() <= 1 && operand.shape.iter().product::<usize>() == 1 {
        Ok(())
    } else {
        Err(CompileError::unsupported(format!(
            "{op_type} with {what} of shape {:?}: only per-tensor quantization is supported \
             (ONNX Runtime's kernel takes a single scale and zero point per tensor)",
            operand.shape
        )))
    }
}

/// Checks the scale at input `i` (float32, one value).
fn check_scale(cx: &OpCx<'_>, op_type: &str, i: usize, what: &str) -> Result<()> {
    let s = cx.input(i)?;
    if s.dtype != DType::F32 {
        return Err(CompileError::shape(format!(
            "{what} (input {i}) must be float32, found {}",
            s.dtype
        )));
    }
    per_tensor(op_type, &s, what)
}

/// Checks the zero point at input `i` (the data type, one value); `required` when ONNX
/// Runtime reads it unconditionally.
fn check_zero(
    cx: &OpCx<'_>,
    op_type: &str,
    i: usize,
    what: &str,
    dtype: DType,
    required: bool,
) -> Result<()> {
    let z = if required {
        Some(cx.input(i)?)
    } else {
        cx.opt_input(i)
    };
    if let Some(z) = z {
        if z.dtype != dtype {
            return Err(CompileError::shape(format!(
                "{what} (input {i}) must be {dtype}, found {}",
                z.dtype
            )));
        }
        per_tensor(op_type, &z, what)?;
    }
    Ok(())
}

/// A scale known at compile time.
fn const_scale(cx: &OpCx<'_>, i: usize) -> Option<f32> {
    cx.opt_input(i)?.constant?.as_f32()?.first().copied()
}

/// A zero point known at compile time: 0 when the optional input is omitted.
fn const_zero(cx: &OpCx<'_>, i: usize) -> Option<i32> {
    match cx.opt_input(i) {
        None => Some(0),
        Some(z) => i32::try_from(*z.constant?.to_i64s()?.first()?).ok(),
    }
}

/// A literal of the quantized type.
fn q8_lit(dtype: DType, v: i32) -> TokenStream {
    if dtype == DType::I8 {
        let l = Literal::i8_suffixed(i8::try_from(v).unwrap_or(0));
        quote!(#l)
    } else {
        let l = Literal::u8_suffixed(u8::try_from(v).unwrap_or(0));
        quote!(#l)
    }
}

/// The expression of the scale at input `i`: a literal when constant, else read at run time.
fn scale_expr(cx: &OpCx<'_>, names: &mut EmitNames, i: usize) -> TokenStream {
    match const_scale(cx, i) {
        Some(v) => f32_lit(v),
        None => {
            let input = names.input(i);
            quote!(#input[0])
        }
    }
}

/// The expression of the zero point at input `i` (of type `dtype`).
fn zero_expr(cx: &OpCx<'_>, names: &mut EmitNames, i: usize, dtype: DType) -> TokenStream {
    match const_zero(cx, i) {
        Some(v) => q8_lit(dtype, v),
        None => {
            let input = names.input(i);
            quote!(#input[0])
        }
    }
}

// ---- compile-time tables (the same arithmetic as `sinter_rt::qlinear`) ----

/// `(min, max)` of the quantized type.
fn q8_range(dtype: DType) -> (i32, i32) {
    if dtype == DType::I8 {
        (-128, 127)
    } else {
        (0, 255)
    }
}

/// MLAS `QuantizeLinear` of one value (see `sinter_rt::qlinear::quantize`).
fn quantize(v: f32, scale: f32, zero: i32, dtype: DType) -> i32 {
    let (min, max) = q8_range(dtype);
    let (lo, hi) = ((min - zero) as f32, (max - zero) as f32);
    let q = v / scale;
    let q = if q.is_nan() { lo } else { q.max(lo).min(hi) };
    (q.round_ties_even() as i32 + zero).clamp(min, max)
}

/// MLAS's logistic numerator coefficients (`alpha_9` down to `alpha_1` in logistic.cpp), each
/// the f32 nearest MLAS's decimal.
const LOGISTIC_ALPHA: [f32; 5] = [
    4.370_31e-11,
    1.156_273_2e-7,
    6.085_749e-5,
    8.513_771e-3,
    0.248_287_95,
];

/// MLAS's logistic denominator coefficients (`beta_10` down to `beta_0`).
const LOGISTIC_BETA: [f32; 6] = [
    6.102_473_7e-13,
    5.761_021_4e-9,
    6.291_068e-6,
    1.701_988_2e-3,
    0.116_817_65,
    0.993_151_9,
];

/// MLAS's FMA3 logistic (see `sinter_rt::qlinear::logistic`).
fn logistic(x: f32) -> f32 {
    let [a9, a7, a5, a3, a1] = LOGISTIC_ALPHA;
    let [b10, b8, b6, b4, b2, b0] = LOGISTIC_BETA;
    let x = if x < -18.0 { -18.0 } else { x };
    let x = if x > 18.0 { 18.0 } else { x };
    let x2 = x * x;
    let mut p = x2.mul_add(a9, a7);
    p = x2.mul_add(p, a5);
    p = x2.mul_add(p, a3);
    p = x2.mul_add(p, a1);
    let mut q = x2.mul_add(b10, b8);
    q = x2.mul_add(q, b6);
    q = x2.mul_add(q, b4);
    q = x2.mul_add(q, b2);
    q = x2.mul_add(q, b0);
    let y = (x * p) / q + 0.5;
    if y > 0.0 || y.is_nan() {
        y
    } else {
        0.0
    }
}

/// The signed value of the byte `bits` in `dtype`.
fn q8_value(dtype: DType, bits: u8) -> i32 {
    if dtype == DType::I8 {
        i32::from(i8::from_le_bytes([bits]))
    } else {
        i32::from(bits)
    }
}

/// ONNX Runtime's 256-entry table (see `sinter_rt::qlinear::build_table`), as output bytes.
fn build_table(
    dtype: DType,
    [x_scale, y_scale]: [f32; 2],
    [x_zero, y_zero]: [i32; 2],
    f: impl Fn(f32) -> f32,
) -> Vec<u8> {
    (0..=255u8)
        .map(|bits| {
            let v = f(x_scale * (q8_value(dtype, bits) - x_zero) as f32);
            quantize(v, y_scale, y_zero, dtype).to_le_bytes()[0]
        })
        .collect()
}

/// `const NAME: [u8; 256] = [...];`.
fn table_const(name: &proc_macro2::Ident, table: &[u8]) -> TokenStream {
    let items = table.iter().map(|&b| Literal::u8_unsuffixed(b));
    quote!(const #name: [u8; 256] = [#(#items),*];)
}

/// The code for a requantizing table from input `x` (scale input `xs`, zero point input
/// `xz`) to output `y` (`ys`, `yz`) under `name`: a constant when every parameter is one
/// (`None` when the table is the identity, so a copy), else built at run time.
fn requant_table(
    cx: &OpCx<'_>,
    names: &mut EmitNames,
    dtype: DType,
    [xs, xz, ys, yz]: [usize; 4],
    name: &proc_macro2::Ident,
) -> (TokenStream, TokenStream) {
    let constants = (
        const_scale(cx, xs),
        const_zero(cx, xz),
        const_scale(cx, ys),
        const_zero(cx, yz),
    );
    if let (Some(sx), Some(zx), Some(sy), Some(zy)) = constants {
        if sx.to_bits() == sy.to_bits() && zx == zy {
            return (TokenStream::new(), quote!(None));
        }
        let table = build_table(dtype, [sx, sy], [zx, zy], |v| v);
        return (table_const(name, &table), quote!(Some(&#name)));
    }
    let (sx, zx) = (scale_expr(cx, names, xs), zero_expr(cx, names, xz, dtype));
    let (sy, zy) = (scale_expr(cx, names, ys), zero_expr(cx, names, yz, dtype));
    let code = quote! {
        let mut #name = [0u8; 256];
        ::sinter_rt::qlinear::build_table(#sx, #zx, #sy, #zy, &mut #name, |v: f32| v);
    };
    (code, quote!(Some(&#name)))
}

// ---- QLinearAdd, QLinearMul ----

/// Whether ONNX Runtime's broadcaster (`Broadcaster` in `element_wise_ops.h`) holds input A
/// constant along the innermost span, so that `QLinearAdd` hands B to MLAS first.
///
/// The broadcaster walks the axes from the last, skips trailing axes where both sizes are 1
/// (while others remain) and classifies the operands by the first other axis: an operand
/// of size 1 there repeats along the span. A rank-0 operand repeats; against a rank-0 B, A
/// repeats when its last axis has size 1. A is tested before B.
pub fn ort_a_repeats(a: &[usize], b: &[usize]) -> bool {
    let Some(&a_last) = a.last() else {
        return true;
    };
    if b.is_empty() {
        return a_last <= 1;
    }
    let common = a.len().min(b.len());
    for i in 0..common {
        let (da, db) = (a[a.len() - 1 - i], b[b.len() - 1 - i]);
        let dim = if da.min(db) == 0 { 0 } else { da.max(db) };
        if dim <= 1 && i + 1 < common {
            continue;
        }
        return da <= 1;
    }
    true
}

/// `QLinearAdd` or `QLinearMul`: inputs `A, A_scale, A_zero_point?, B, B_scale,
/// B_zero_point?, C_scale, C_zero_point?`, numpy broadcasting.
#[derive(Debug, Clone)]
pub struct QLinearBinary {
    /// Multiply (else add).
    pub mul: bool,
}

impl QLinearBinary {
    fn op_type(&self) -> &'static str {
        if self.mul {
            "QLinearMul"
        } else {
            "QLinearAdd"
        }
    }
}

impl OpDef for QLinearBinary {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        if node.n_inputs() < 7 {
            return Err(CompileError::malformed(format!(
                "{} takes 7 or 8 inputs, found {}",
                node.op_type(),
                node.n_inputs()
            )));
        }
        Ok(Self {
            mul: node.op_type() == "QLinearMul",
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let op_type = self.op_type();
        let (a, b) = (cx.input(0)?, cx.input(3)?);
        check_q8(a.dtype, "A")?;
        if b.dtype != a.dtype {
            return Err(CompileError::shape(format!(
                "A and B must have one type, found {} and {}",
                a.dtype, b.dtype
            )));
        }
        for (i, what) in [(1, "A_scale"), (4, "B_scale"), (6, "C_scale")] {
            check_scale(cx, op_type, i, what)?;
        }
        for (i, what) in [
            (2, "A_zero_point"),
            (5, "B_zero_point"),
            (7, "C_zero_point"),
        ] {
            check_zero(cx, op_type, i, what, a.dtype, false)?;
        }
        let shape = broadcast_shapes(a.shape, b.shape)?;
        if shape.len() > MAX_RANK {
            return Err(CompileError::unsupported(format!(
                "broadcasting over {} axes (at most {MAX_RANK})",
                shape.len()
            )));
        }
        Ok(vec![TypeShape::new(a.dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (a, b, out) = (cx.input(0)?, cx.input(3)?, cx.output(0)?);
        let dtype = a.dtype;
        // Inputs (data, scale, zero point) of the two operands in the order MLAS takes them.
        let (p, q) = if !self.mul && ort_a_repeats(a.shape, b.shape) {
            ([3, 4, 5], [0, 1, 2])
        } else {
            ([0, 1, 2], [3, 4, 5])
        };
        let operand = |cx: &OpCx<'_>, names: &mut EmitNames, [d, s, z]: [usize; 3]| {
            let shape = if d == 0 { a.shape } else { b.shape };
            (
                names.input(d),
                usize_slice(&broadcast_strides(shape, out.shape)),
                scale_expr(cx, names, s),
                zero_expr(cx, names, z, dtype),
            )
        };
        let (ip, sp, p_scale, p_zero) = operand(cx, names, p);
        let (iq, sq, q_scale, q_zero) = operand(cx, names, q);
        let (c_scale, c_zero) = (scale_expr(cx, names, 6), zero_expr(cx, names, 7, dtype));
        let shape = usize_slice(out.shape);
        let (o0, exec) = (names.output(0), names.exec());
        let (params, kernel) = if self.mul {
            (quote!(MulParams), quote!(mul))
        } else {
            (quote!(AddParams), quote!(add))
        };
        Ok(quote! {
            let params = ::sinter_rt::qlinear::#params::new(
                #p_scale, #p_zero, #q_scale, #q_zero, #c_scale, #c_zero,
            );
            ::sinter_rt::qlinear::#kernel(#exec, #ip, #sp, #iq, #sq, #o0, #shape, params);
        })
    }
}

// ---- QLinearSigmoid, QLinearLeakyRelu ----

/// The float function of a table op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LookupKind {
    /// MLAS's logistic.
    Sigmoid,
    /// `v >= 0 ? v : alpha * v`.
    LeakyRelu(f32),
}

/// `QLinearSigmoid` or `QLinearLeakyRelu`: inputs `X, X_scale, X_zero_point?, Y_scale,
/// Y_zero_point?`, through a 256-entry table.
#[derive(Debug, Clone)]
pub struct QLinearLookup {
    /// The function.
    pub kind: LookupKind,
}

impl OpDef for QLinearLookup {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        if node.n_inputs() < 4 {
            return Err(CompileError::malformed(format!(
                "{} takes 4 or 5 inputs, found {}",
                node.op_type(),
                node.n_inputs()
            )));
        }
        let kind = if node.op_type() == "QLinearSigmoid" {
            LookupKind::Sigmoid
        } else {
            LookupKind::LeakyRelu(node.f32_or("alpha", 0.01)?)
        };
        Ok(Self { kind })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let op_type = match self.kind {
            LookupKind::Sigmoid => "QLinearSigmoid",
            LookupKind::LeakyRelu(_) => "QLinearLeakyRelu",
        };
        let x = cx.input(0)?;
        check_q8(x.dtype, "X")?;
        check_scale(cx, op_type, 1, "X_scale")?;
        check_scale(cx, op_type, 3, "Y_scale")?;
        check_zero(cx, op_type, 2, "X_zero_point", x.dtype, false)?;
        check_zero(cx, op_type, 4, "Y_zero_point", x.dtype, false)?;
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn in_place_input(&self, _cx: &OpCx<'_>) -> Option<usize> {
        Some(0)
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let dtype = cx.input(0)?.dtype;
        let table = format_ident!("TABLE");
        let constants = (
            const_scale(cx, 1),
            const_zero(cx, 2),
            const_scale(cx, 3),
            const_zero(cx, 4),
        );
        let setup = if let (Some(sx), Some(zx), Some(sy), Some(zy)) = constants {
            let values = match self.kind {
                LookupKind::Sigmoid => build_table(dtype, [sx, sy], [zx, zy], logistic),
                LookupKind::LeakyRelu(alpha) => build_table(dtype, [sx, sy], [zx, zy], |v| {
                    if v >= 0.0 {
                        v
                    } else {
                        alpha * v
                    }
                }),
            };
            table_const(&table, &values)
        } else {
            let f = match self.kind {
                LookupKind::Sigmoid => quote!(::sinter_rt::qlinear::logistic),
                LookupKind::LeakyRelu(alpha) => {
                    let alpha = f32_lit(alpha);
                    quote!(|v: f32| if v >= 0.0 { v } else { #alpha * v })
                }
            };
            let (sx, zx) = (scale_expr(cx, names, 1), zero_expr(cx, names, 2, dtype));
            let (sy, zy) = (scale_expr(cx, names, 3), zero_expr(cx, names, 4, dtype));
            quote! {
                let mut #table = [0u8; 256];
                ::sinter_rt::qlinear::build_table(#sx, #zx, #sy, #zy, &mut #table, #f);
            }
        };
        let o0 = names.output(0);
        if names.in_place == Some(0) {
            return Ok(quote! {
                #setup
                ::sinter_rt::qlinear::lookup_in_place(#o0, &#table);
            });
        }
        let i0 = names.input(0);
        Ok(quote! {
            #setup
            ::sinter_rt::qlinear::lookup(#i0, &#table, #o0);
        })
    }
}

// ---- QLinearGlobalAveragePool, QLinearAveragePool ----

/// `[batch, channels, image]` of a pool input in either layout.
fn pool_dims(shape: &[usize], channels_last: bool) -> [usize; 3] {
    let rank = shape.len();
    let (channels, spatial) = if channels_last {
        (shape[rank - 1], &shape[1..rank - 1])
    } else {
        (shape[1], &shape[2..])
    };
    [shape[0], channels, spatial.iter().product()]
}

/// Refuses, when the scales are constants, a global pool ONNX Runtime's MLAS kernel rejects:
/// an image of 2^24 elements or more, or a multiplier outside `[2^-32, 256)`.
fn check_global_range(cx: &OpCx<'_>, image: usize) -> Result<()> {
    if image >= 1 << 24 {
        return Err(CompileError::unsupported(format!(
            "a quantized global average pool over {image} elements (ONNX Runtime takes fewer than 2^24)"
        )));
    }
    if let (Some(sx), Some(sy)) = (const_scale(cx, 1), const_scale(cx, 3)) {
        let image = i32::try_from(image).unwrap_or(i32::MAX) as f32;
        let scale = sx / (sy * image);
        if !(scale >= 2f32.powi(-32) && scale < 256.0) {
            return Err(CompileError::unsupported(format!(
                "a quantized global average pool with multiplier x_scale / (y_scale * image) = {scale:e}, \
                 outside the [2^-32, 256) ONNX Runtime accepts"
            )));
        }
    }
    Ok(())
}

/// The global pool call (shared with `QLinearAveragePool` over a whole image).
fn emit_global(
    cx: &OpCx<'_>,
    names: &mut EmitNames,
    dims: [usize; 3],
    channels_last: bool,
) -> Result<TokenStream> {
    let dtype = cx.input(0)?.dtype;
    let (sx, zx) = (scale_expr(cx, names, 1), zero_expr(cx, names, 2, dtype));
    let (sy, zy) = (scale_expr(cx, names, 3), zero_expr(cx, names, 4, dtype));
    let image = lit(dims[2]);
    let dims = dims.map(lit);
    let (i0, o0) = (names.input(0), names.output(0));
    Ok(quote! {
        let params = ::sinter_rt::qlinear::GlobalPoolParams::new(#sx, #zx, #sy, #zy, #image);
        ::sinter_rt::qlinear::global_average_pool(#i0, #o0, [#(#dims),*], #channels_last, params);
    })
}

/// `QLinearGlobalAveragePool`: inputs `X, x_scale, x_zero_point, y_scale, y_zero_point`;
/// `channels_last` puts the channels last (`[N, *spatial, C]`).
#[derive(Debug, Clone)]
pub struct QLinearGlobalAveragePool {
    /// NHWC layout.
    pub channels_last: bool,
}

impl OpDef for QLinearGlobalAveragePool {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            channels_last: node.i64_or("channels_last", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let op_type = "QLinearGlobalAveragePool";
        let x = cx.input(0)?;
        check_q8(x.dtype, "X")?;
        check_scale(cx, op_type, 1, "x_scale")?;
        check_scale(cx, op_type, 3, "y_scale")?;
        check_zero(cx, op_type, 2, "x_zero_point", x.dtype, true)?;
        check_zero(cx, op_type, 4, "y_zero_point", x.dtype, true)?;
        let rank = x.shape.len();
        if rank < 3 {
            return Err(CompileError::shape(format!(
                "X must have rank >= 3, found {:?}",
                x.shape
            )));
        }
        check_global_range(cx, pool_dims(x.shape, self.channels_last)[2])?;
        let mut shape = x.shape.to_vec();
        let spatial = if self.channels_last {
            1..rank - 1
        } else {
            2..rank
        };
        shape[spatial].fill(1);
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let dims = pool_dims(cx.input(0)?.shape, self.channels_last);
        emit_global(cx, names, dims, self.channels_last)
    }
}

/// `QLinearAveragePool`: inputs `X, x_scale, x_zero_point?, y_scale, y_zero_point?`; the
/// window attributes of `AveragePool` (1 to 3 spatial axes, no dilations) and
/// `channels_last`.
#[derive(Debug, Clone)]
pub struct QLinearAveragePool {
    /// Kernel, strides, pads, `auto_pad`, `ceil_mode`.
    pub window: Window,
    /// Divide by the padded window size.
    pub count_include_pad: bool,
    /// NHWC layout.
    pub channels_last: bool,
}

/// A resolved `QLinearAveragePool`.
struct PoolPlan {
    /// The window, right-aligned in three axes.
    geometry: super::conv::Geometry,
    /// Input spatial sizes.
    spatial: Vec<usize>,
    /// ONNX Runtime computes this pool with its global pool.
    global: bool,
}

impl QLinearAveragePool {
    fn plan(&self, shape: &[usize]) -> Result<PoolPlan> {
        let rank = shape.len();
        if rank < 3 {
            return Err(CompileError::shape(format!(
                "X must have rank >= 3, found {shape:?}"
            )));
        }
        let spatial = if self.channels_last {
            shape[1..rank - 1].to_vec()
        } else {
            shape[2..].to_vec()
        };
        let geometry = self.window.resolve(&spatial, None)?;
        if geometry.dilations.iter().any(|&d| d != 1) {
            return Err(CompileError::unsupported(
                "QLinearAveragePool with dilations (the op has none)",
            ));
        }
        for (i, &k) in geometry.kernel.iter().enumerate() {
            if geometry.pads_begin[i] >= k || geometry.pads_end[i] >= k {
                return Err(CompileError::attribute(
                    "pads",
                    format!(
                        "pads must be smaller than the kernel, found {} and {} for kernel {k}",
                        geometry.pads_begin[i], geometry.pads_end[i]
                    ),
                ));
            }
        }
        let global = geometry.kernel == spatial
            && geometry
                .pads_begin
                .iter()
                .chain(&geometry.pads_end)
                .all(|&p| p == 0);
        Ok(PoolPlan {
            geometry,
            spatial,
            global,
        })
    }
}

impl OpDef for QLinearAveragePool {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let window = Window::parse(node)?;
        if window.kernel.is_none() {
            return Err(CompileError::attribute("kernel_shape", "required"));
        }
        Ok(Self {
            window,
            count_include_pad: node.i64_or("count_include_pad", 0)? != 0,
            channels_last: node.i64_or("channels_last", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let op_type = "QLinearAveragePool";
        let x = cx.input(0)?;
        check_q8(x.dtype, "X")?;
        check_scale(cx, op_type, 1, "x_scale")?;
        check_scale(cx, op_type, 3, "y_scale")?;
        check_zero(cx, op_type, 2, "x_zero_point", x.dtype, false)?;
        check_zero(cx, op_type, 4, "y_zero_point", x.dtype, false)?;
        let plan = self.plan(x.shape)?;
        if plan.global {
            check_global_range(cx, plan.spatial.iter().product())?;
        }
        let rank = x.shape.len();
        let mut shape = Vec::with_capacity(rank);
        shape.push(x.shape[0]);
        if self.channels_last {
            shape.extend(&plan.geometry.output);
            shape.push(x.shape[rank - 1]);
        } else {
            shape.push(x.shape[1]);
            shape.extend(&plan.geometry.output);
        }
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let dtype = x.dtype;
        let plan = self.plan(x.shape)?;
        let [batch, channels, _] = pool_dims(x.shape, self.channels_last);
        if plan.global {
            return emit_global(
                cx,
                names,
                pool_dims(x.shape, self.channels_last),
                self.channels_last,
            );
        }
        let g = &plan.geometry;
        let (batch, channels) = (lit(batch), lit(channels));
        let (input, output, kernel) = (
            usize3(&plan.spatial, 1),
            usize3(&g.output, 1),
            usize3(&g.kernel, 1),
        );
        let (strides, pads_begin) = (usize3(&g.strides, 1), usize3(&g.pads_begin, 0));
        let (include, last) = (self.count_include_pad, self.channels_last);
        let (sx, zx) = (scale_expr(cx, names, 1), zero_expr(cx, names, 2, dtype));
        let (sy, zy) = (scale_expr(cx, names, 3), zero_expr(cx, names, 4, dtype));
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote! {
            const PARAMS: ::sinter_rt::qlinear::AvgPoolParams = ::sinter_rt::qlinear::AvgPoolParams {
                batch: #batch, channels: #channels, input: #input, output: #output,
                kernel: #kernel, strides: #strides, pads_begin: #pads_begin,
                count_include_pad: #include, channels_last: #last,
            };
            ::sinter_rt::qlinear::average_pool(&PARAMS, #i0, [#sx, #sy], [#zx, #zy], #o0);
        })
    }
}

// ---- QLinearConcat ----

/// `QLinearConcat`: inputs `Y_scale, Y_zero_point`, then `(X, X_scale, X_zero_point)` per
/// tensor; each tensor is requantized to Y's parameters through a table.
#[derive(Debug, Clone)]
pub struct QLinearConcat {
    /// The axis (possibly negative).
    pub axis: i64,
}

impl QLinearConcat {
    /// The number of concatenated tensors.
    fn count(cx: &OpCx<'_>) -> usize {
        cx.inputs.len().saturating_sub(2) / 3
    }
}

impl OpDef for QLinearConcat {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let n = node.n_inputs();
        if n < 5 || !(n - 2).is_multiple_of(3) {
            return Err(CompileError::malformed(format!(
                "QLinearConcat takes Y_scale, Y_zero_point and (tensor, scale, zero point) triples, found {n} inputs"
            )));
        }
        let axis = node
            .i64_opt("axis")?
            .ok_or_else(|| CompileError::attribute("axis", "required"))?;
        Ok(Self { axis })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let op_type = "QLinearConcat";
        check_scale(cx, op_type, 0, "Y_scale")?;
        let dtype = cx.input(1)?.dtype;
        check_q8(dtype, "Y_zero_point")?;
        check_zero(cx, op_type, 1, "Y_zero_point", dtype, true)?;
        let first = cx.input(2)?;
        let rank = first.shape.len();
        let axis = normalize_axis(self.axis, rank, "axis")?;
        let mut shape = first.shape.to_vec();
        shape[axis] = 0;
        for k in 0..Self::count(cx) {
            let x = cx.input(2 + 3 * k)?;
            if x.dtype != dtype {
                return Err(CompileError::shape(format!(
                    "tensor {k} is {}, Y_zero_point {dtype}",
                    x.dtype
                )));
            }
            check_scale(cx, op_type, 3 + 3 * k, "X_scale")?;
            check_zero(cx, op_type, 4 + 3 * k, "X_zero_point", dtype, true)?;
            let fits = x.shape.len() == rank
                && (0..rank).all(|i| i == axis || x.shape[i] == first.shape[i]);
            if !fits {
                return Err(CompileError::shape(format!(
                    "tensor {k} of shape {:?} does not concatenate with {:?} along axis {axis}",
                    x.shape, first.shape
                )));
            }
            shape[axis] += x.shape[axis];
        }
        Ok(vec![TypeShape::new(dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let out = cx.output(0)?;
        let dtype = out.dtype;
        let axis = normalize_axis(self.axis, out.shape.len(), "axis")?;
        let inner: usize = out.shape[axis + 1..].iter().product();
        let out_block = out.shape[axis] * inner;
        let o0 = names.output(0);
        let mut code = TokenStream::new();
        let mut offset = 0;
        for k in 0..Self::count(cx) {
            let (d, s, z) = (2 + 3 * k, 3 + 3 * k, 4 + 3 * k);
            let block = cx.input(d)?.shape[axis] * inner;
            if block == 0 {
                continue;
            }
            let name = format_ident!("TABLE_{}", k);
            let (setup, table) = requant_table(cx, names, dtype, [s, z, 0, 1], &name);
            let x = names.input(d);
            let (block_lit, out_block_lit, offset_lit) = (lit(block), lit(out_block), lit(offset));
            code.extend(quote! {
                #setup
                ::sinter_rt::qlinear::concat_part(#x, #table, #o0, #block_lit, #out_block_lit, #offset_lit);
            });
            offset += block;
        }
        Ok(code)
    }
}

// ---- QLinearSoftmax ----

/// `QLinearSoftmax`: inputs `X, X_scale, x_zero_point?, y_scale, y_zero_point`; `opset` is
/// the ONNX `Softmax` version whose axis rule applies (before 13: the trailing axes from
/// `axis` flattened).
#[derive(Debug, Clone)]
pub struct QLinearSoftmax {
    /// The axis, possibly negative.
    pub axis: i64,
    /// Before Softmax-13: reduce over every axis from `axis` on.
    pub flatten: bool,
}

impl QLinearSoftmax {
    /// `[outer, len, inner]` of the reduction.
    fn split(&self, shape: &[usize]) -> Result<[usize; 3]> {
        if shape.is_empty() {
            return Ok([1, 1, 1]);
        }
        let axis = normalize_axis(self.axis, shape.len(), "axis")?;
        let outer = shape[..axis].iter().product();
        Ok(if self.flatten {
            [outer, shape[axis..].iter().product(), 1]
        } else {
            [outer, shape[axis], shape[axis + 1..].iter().product()]
        })
    }
}

/// ONNX Runtime's exponential table (see `sinter_rt::qlinear::softmax_table`), with the
/// platform's `ln` and `exp` as ONNX Runtime uses them.
fn softmax_table(x_scale: f32, reduce_len: usize) -> Vec<f32> {
    let limit = f32::MAX / reduce_len as f32;
    let shift = (f64::from(limit).ln() - 5.0).max(0.0) / f64::from(x_scale);
    (0..256)
        .map(|k| ((f64::from(k) - 255.0 + shift) * f64::from(x_scale)).exp() as f32)
        .collect()
}

impl OpDef for QLinearSoftmax {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let opset = node
            .i64_opt("opset")?
            .ok_or_else(|| CompileError::attribute("opset", "required"))?;
        let flatten = opset < 13;
        let axis = node.i64_or("axis", if flatten { 1 } else { -1 })?;
        Ok(Self { axis, flatten })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let op_type = "QLinearSoftmax";
        let x = cx.input(0)?;
        check_q8(x.dtype, "X")?;
        check_scale(cx, op_type, 1, "X_scale")?;
        check_scale(cx, op_type, 3, "y_scale")?;
        check_zero(cx, op_type, 2, "x_zero_point", x.dtype, false)?;
        check_zero(cx, op_type, 4, "y_zero_point", x.dtype, false)?;
        self.split(x.shape)?;
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let dtype = x.dtype;
        let [outer, len, inner] = self.split(x.shape)?;
        if outer * len * inner == 0 {
            return Ok(TokenStream::new());
        }
        let table = format_ident!("TABLE");
        let setup = match const_scale(cx, 1) {
            Some(sx) => {
                let items = softmax_table(sx, len).into_iter().map(f32_lit);
                quote!(const #table: [f32; 256] = [#(#items),*];)
            }
            None => {
                let sx = scale_expr(cx, names, 1);
                let len = lit(len);
                quote! {
                    let mut #table = [0f32; 256];
                    ::sinter_rt::qlinear::softmax_table(#sx, #len, &mut #table);
                }
            }
        };
        let (sy, zy) = (scale_expr(cx, names, 3), zero_expr(cx, names, 4, dtype));
        let dims = [outer, len, inner].map(lit);
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote! {
            #setup
            ::sinter_rt::qlinear::softmax(#i0, #o0, [#(#dims),*], &#table, #sy, #zy);
        })
    }
}

// ---- QLinearWhere ----

/// `QLinearWhere`: inputs `condition, X, x_scale, x_zero_point, Y, y_scale, y_zero_point,
/// z_scale, z_zero_point`; X and Y requantized to Z's parameters, the three broadcast.
#[derive(Debug, Clone)]
pub struct QLinearWhere;

impl OpDef for QLinearWhere {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        if node.n_inputs() != 9 {
            return Err(CompileError::malformed(format!(
                "QLinearWhere takes 9 inputs, found {}",
                node.n_inputs()
            )));
        }
        Ok(Self)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let op_type = "QLinearWhere";
        let (c, x, y) = (cx.input(0)?, cx.input(1)?, cx.input(4)?);
        if c.dtype != DType::Bool {
            return Err(CompileError::shape(format!(
                "condition must be bool, found {}",
                c.dtype
            )));
        }
        check_q8(x.dtype, "X")?;
        if y.dtype != x.dtype {
            return Err(CompileError::shape(format!(
                "X and Y must have one type, found {} and {}",
                x.dtype, y.dtype
            )));
        }
        for (i, what) in [(2, "x_scale"), (5, "y_scale"), (7, "z_scale")] {
            check_scale(cx, op_type, i, what)?;
        }
        for (i, what) in [
            (3, "x_zero_point"),
            (6, "y_zero_point"),
            (8, "z_zero_point"),
        ] {
            check_zero(cx, op_type, i, what, x.dtype, true)?;
        }
        let shape = broadcast_shapes(&broadcast_shapes(c.shape, x.shape)?, y.shape)?;
        if shape.len() > MAX_RANK {
            return Err(CompileError::unsupported(format!(
                "broadcasting over {} axes (at most {MAX_RANK})",
                shape.len()
            )));
        }
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let out = cx.output(0)?;
        let dtype = out.dtype;
        let (setup_x, table_x) =
            requant_table(cx, names, dtype, [2, 3, 7, 8], &format_ident!("TABLE_X"));
        let (setup_y, table_y) =
            requant_table(cx, names, dtype, [5, 6, 7, 8], &format_ident!("TABLE_Y"));
        let strides = |i: usize| -> Result<TokenStream> {
            Ok(usize_slice(&broadcast_strides(
                cx.input(i)?.shape,
                out.shape,
            )))
        };
        let (sc, sx, sy) = (strides(0)?, strides(1)?, strides(4)?);
        let shape = usize_slice(out.shape);
        let t = rust_type(dtype);
        let (ic, ix, iy, o0) = (
            names.input(0),
            names.input(1),
            names.input(4),
            names.output(0),
        );
        Ok(quote! {
            #setup_x
            #setup_y
            ::sinter_rt::qlinear::select::<#t>(#ic, #sc, #ix, #sx, #iy, #sy, #o0, #shape, [#table_x, #table_y]);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Op};
    use super::*;
    use crate::ir::{Node, Tensor};
    use crate::onnx::proto::AttributeProto;

    fn node(op_type: &str, n_inputs: usize, attributes: Vec<AttributeProto>) -> Node {
        Node {
            name: String::new(),
            op_type: op_type.into(),
            domain: "com.microsoft".into(),
            opset: 1,
            inputs: vec![None; n_inputs],
            outputs: Vec::new(),
            attributes,
            op: None,
            guards: Vec::new(),
        }
    }

    fn int_attr(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            i: Some(v),
            r#type: Some(crate::onnx::proto::attribute_proto::AttributeType::Int.into()),
            ..Default::default()
        }
    }

    fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            ints: v.to_vec(),
            r#type: Some(crate::onnx::proto::attribute_proto::AttributeType::Ints.into()),
            ..Default::default()
        }
    }

    fn parsed(n: &Node) -> Op {
        match parse(&NodeCx { node: n }) {
            Some(Ok(op)) => op,
            Some(Err(e)) => panic!("{}: {e}", n.op_type),
            None => panic!("{} is not in the table", n.op_type),
        }
    }

    fn operand<'a>(
        dtype: DType,
        shape: &'a [usize],
        constant: Option<&'a Tensor>,
    ) -> Option<Operand<'a>> {
        Some(Operand {
            range: None,
            syms: &[],
            dynamic: &[],
            dtype,
            shape,
            constant,
        })
    }

    /// Infers, then emits with the inferred output, and checks the code parses.
    fn infer_and_emit(op: &Op, inputs: Vec<Option<Operand<'_>>>) -> Result<(TypeShape, String)> {
        let mut cx = OpCx {
            inputs,
            outputs: Vec::new(),
        };
        let out = op.infer(&cx)?.remove(0);
        cx.outputs = vec![Some(Operand {
            range: None,
            syms: &[],
            dynamic: &[],
            dtype: out.dtype,
            shape: &out.shape,
            constant: None,
        })];
        let code = op.emit(&cx, &mut EmitNames::default())?;
        syn::parse2::<syn::Block>(quote!({ #code })).expect("emitted code parses");
        Ok((out.clone(), code.to_string()))
    }

    #[test]
    fn ort_broadcaster_roles() {
        // (A shape, B shape, A repeats along the innermost span).
        let cases: &[(&[usize], &[usize], bool)] = &[
            (&[5], &[5], false),
            (&[], &[5], true),
            (&[5], &[], false),
            (&[], &[], true),
            (&[4, 1], &[], true),
            (&[1], &[7], true),
            (&[7], &[1], false),
            (&[7, 1], &[1, 9], true),
            (&[1, 9], &[7, 1], false),
            (&[2, 3, 1], &[2, 1, 1], false),
            (&[5, 1], &[5, 1], false),
            (&[1, 1], &[3, 1], true),
            (&[3], &[2, 3], false),
            (&[2, 1, 4], &[3, 1], false),
        ];
        for &(a, b, want) in cases {
            assert_eq!(ort_a_repeats(a, b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn add_orders_operands_like_ort_and_mul_does_not() {
        let s = Tensor::from_f32(vec![], &[0.5]);
        let add = parsed(&node("QLinearAdd", 8, vec![]));
        let scale = || operand(DType::F32, &[], Some(&s));
        let (out, code) = infer_and_emit(
            &add,
            vec![
                operand(DType::U8, &[3, 1], None),
                scale(),
                None,
                operand(DType::U8, &[1, 4], None),
                scale(),
                None,
                scale(),
                None,
            ],
        )
        .expect("QLinearAdd compiles");
        assert_eq!(out.shape, vec![3, 4]);
        // A repeats along the rows of 4: B is MLAS's first operand.
        assert!(
            code.contains("add (exec , i3 , & [0 , 1] , i0 , & [1 , 0]"),
            "{code}"
        );
        let mul = parsed(&node("QLinearMul", 8, vec![]));
        let (_, code) = infer_and_emit(
            &mul,
            vec![
                operand(DType::I8, &[3, 1], None),
                scale(),
                None,
                operand(DType::I8, &[1, 4], None),
                scale(),
                None,
                scale(),
                None,
            ],
        )
        .expect("QLinearMul compiles");
        assert!(
            code.contains("mul (exec , i0 , & [1 , 0] , i3 , & [0 , 1]"),
            "{code}"
        );
    }

    #[test]
    fn per_axis_parameters_are_refused_with_the_reason() {
        let op = parsed(&node("QLinearSigmoid", 5, vec![]));
        let err = infer_and_emit(
            &op,
            vec![
                operand(DType::U8, &[2, 3], None),
                operand(DType::F32, &[3], None),
                None,
                operand(DType::F32, &[], None),
                None,
            ],
        )
        .expect_err("per-axis X_scale");
        assert!(err.is_unsupported(), "{err}");
        assert!(err.to_string().contains("per-tensor"), "{err}");
        // A 1-element vector is per-tensor.
        assert!(infer_and_emit(
            &op,
            vec![
                operand(DType::U8, &[2, 3], None),
                operand(DType::F32, &[1], None),
                None,
                operand(DType::F32, &[], None),
                None,
            ],
        )
        .is_ok());
    }

    #[test]
    fn tables_are_constants_only_when_every_parameter_is() {
        let (sx, sy) = (
            Tensor::from_f32(vec![], &[0.1]),
            Tensor::from_f32(vec![], &[1.0 / 256.0]),
        );
        let op = parsed(&node("QLinearSigmoid", 5, vec![]));
        let (_, code) = infer_and_emit(
            &op,
            vec![
                operand(DType::U8, &[17], None),
                operand(DType::F32, &[], Some(&sx)),
                None,
                operand(DType::F32, &[], Some(&sy)),
                None,
            ],
        )
        .expect("constant scales");
        assert!(code.contains("const TABLE : [u8 ; 256]"), "{code}");
        let (_, code) = infer_and_emit(
            &op,
            vec![
                operand(DType::U8, &[17], None),
                operand(DType::F32, &[], None),
                None,
                operand(DType::F32, &[], Some(&sy)),
                None,
            ],
        )
        .expect("run-time scale");
        assert!(code.contains("build_table (i1 [0] , 0u8"), "{code}");
    }

    #[test]
    fn logistic_coefficients_are_mlas_decimals() {
        let alpha = [
            4.37031012579801e-11f64,
            1.15627324459942e-07,
            6.08574864600143e-05,
            8.51377133304701e-03,
            2.48287947061529e-01,
        ];
        let beta = [
            6.10247389755681e-13f64,
            5.76102136993427e-09,
            6.29106785017040e-06,
            1.70198817374094e-03,
            1.16817656904453e-01,
            9.93151921023180e-01,
        ];
        assert_eq!(LOGISTIC_ALPHA, alpha.map(|v| v as f32));
        assert_eq!(LOGISTIC_BETA, beta.map(|v| v as f32));
    }

    #[test]
    fn compile_time_tables_follow_the_formula() {
        // Identity requantization between equal parameters is the identity.
        let t = build_table(DType::I8, [0.3, 0.3], [-7, -7], |v| v);
        for bits in 0..=255u8 {
            assert_eq!(t[usize::from(bits)], bits);
        }
        // Sigmoid of 0 is 1/2: 128 at scale 1/256.
        let t = build_table(DType::U8, [0.1, 1.0 / 256.0], [128, 0], logistic);
        assert_eq!(t[128], 128);
        assert_eq!(t[0], 0);
        assert_eq!(t[255], 255);
        assert_eq!(quantize(f32::NAN, 1.0, 10, DType::U8), 0);
        assert_eq!(quantize(2.5, 1.0, 0, DType::I8), 2);
        assert_eq!(quantize(3.5, 1.0, 0, DType::I8), 4);
    }

    #[test]
    fn pools_infer_both_layouts_and_take_the_global_path_like_ort() {
        let s = Tensor::from_f32(vec![], &[0.05]);
        let z = Tensor {
            dtype: DType::U8,
            shape: vec![],
            bytes: vec![3],
        };
        fn params<'a>(v: &mut Vec<Option<Operand<'a>>>, s: &'a Tensor, z: &'a Tensor) {
            v.push(operand(DType::F32, &[], Some(s)));
            v.push(operand(DType::U8, &[], Some(z)));
            v.push(operand(DType::F32, &[], Some(s)));
            v.push(operand(DType::U8, &[], Some(z)));
        }
        let gap = parsed(&node(
            "QLinearGlobalAveragePool",
            5,
            vec![int_attr("channels_last", 1)],
        ));
        let mut inputs = vec![operand(DType::U8, &[2, 5, 7, 3], None)];
        params(&mut inputs, &s, &z);
        let (out, _) = infer_and_emit(&gap, inputs).expect("global pool");
        assert_eq!(out.shape, vec![2, 1, 1, 3]);
        let pool = parsed(&node(
            "QLinearAveragePool",
            5,
            vec![ints_attr("kernel_shape", &[5, 7])],
        ));
        let mut inputs = vec![operand(DType::U8, &[2, 3, 5, 7], None)];
        params(&mut inputs, &s, &z);
        let (out, code) = infer_and_emit(&pool, inputs).expect("whole-image pool");
        assert_eq!(out.shape, vec![2, 3, 1, 1]);
        assert!(code.contains("global_average_pool"), "{code}");
        let pool = parsed(&node(
            "QLinearAveragePool",
            5,
            vec![
                ints_attr("kernel_shape", &[3, 2]),
                ints_attr("strides", &[2, 2]),
                ints_attr("pads", &[1, 0, 1, 0]),
                int_attr("channels_last", 1),
            ],
        ));
        let mut inputs = vec![operand(DType::U8, &[1, 5, 6, 3], None)];
        params(&mut inputs, &s, &z);
        let (out, code) = infer_and_emit(&pool, inputs).expect("windowed pool");
        assert_eq!(out.shape, vec![1, 3, 3, 3]);
        assert!(code.contains("average_pool (& PARAMS"), "{code}");
    }

    #[test]
    fn concat_and_softmax_shapes() {
        let s = Tensor::from_f32(vec![], &[0.05]);
        let concat = parsed(&node("QLinearConcat", 8, vec![int_attr("axis", -1)]));
        let (out, code) = infer_and_emit(
            &concat,
            vec![
                operand(DType::F32, &[], Some(&s)),
                operand(DType::I8, &[], None),
                operand(DType::I8, &[2, 3], None),
                operand(DType::F32, &[], Some(&s)),
                operand(DType::I8, &[], None),
                operand(DType::I8, &[2, 5], None),
                operand(DType::F32, &[], None),
                operand(DType::I8, &[], None),
            ],
        )
        .expect("concat");
        assert_eq!(out.shape, vec![2, 8]);
        assert_eq!(code.matches("concat_part").count(), 2, "{code}");
        let softmax = parsed(&node("QLinearSoftmax", 5, vec![int_attr("opset", 12)]));
        let (out, code) = infer_and_emit(
            &softmax,
            vec![
                operand(DType::U8, &[2, 3, 4], None),
                operand(DType::F32, &[], Some(&s)),
                None,
                operand(DType::F32, &[], None),
                operand(DType::U8, &[], None),
            ],
        )
        .expect("softmax");
        assert_eq!(out.shape, vec![2, 3, 4]);
        // Before opset 13, axis 1 flattens [3, 4].
        assert!(code.contains("[2 , 12 , 1]"), "{code}");
    }
}
