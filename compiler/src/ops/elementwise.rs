//! Elementwise ops.
//!
//! - Binary with numpy broadcasting: `Add`, `Sub`, `Mul`, `Div` (7..14), `Mod` (10..13), `Pow`
//!   (7..15, mixed base/exponent types), `BitShift` (11), `BitwiseAnd`/`Or`/`Xor` (18),
//!   `And`/`Or`/`Xor` (7), `Equal` (7..19), `Less`, `Greater` (7..13), `LessOrEqual`,
//!   `GreaterOrEqual` (12..16), `PRelu` (7..16).
//! - Variadic with broadcasting: `Min`, `Max`, `Sum`, `Mean` (8..13), and `Where` (9..16).
//! - Unary math: `Abs`, `Neg`, `Exp`, `Log`, `Sqrt`, `Reciprocal`, `Floor`, `Ceil`, `Round`,
//!   `Sign`, `Erf`, `Sin`, `Cos`, `Tan`, `Asin`, `Acos`, `Atan`, `Sinh`, `Cosh`, `Asinh`,
//!   `Acosh`, `Atanh`, `IsNaN`, `IsInf`, `Not`, `BitwiseNot`.
//! - Activations: `Relu`, `Sigmoid`, `Tanh`, `LeakyRelu`, `Elu`, `Selu`, `Celu`, `Gelu`,
//!   `HardSigmoid`, `HardSwish`, `Softplus`, `Softsign`, `Mish`, `ThresholdedRelu`, `Shrink`,
//!   `Swish`, and `Clip` (6..13).
//! - Gated: `SwiGLU` (28), `Swish(A) * B` over inputs of one shape.
//!
//! Spec: <https://onnx.ai/onnx/operators/> (the version ranges above are the ones whose
//! semantics are implemented; before opset 7 the `broadcast`/`axis` attributes are honoured,
//! and `PRelu` before 7 is rejected).
//!
//! Types: float32, float64, and float16/bfloat16 (stored as `u16` bits, computed in f32 and
//! rounded back per element, as numpy does); every integer type where the op defines one;
//! bool (stored as `u8` 0/1) for the logic ops. Transcendental functions come from
//! `sinter_rt::math` (f32 polynomials, or f64 kernels rounded to f32). On f32 tensors `Exp`,
//! `Log`, `Sqrt`, `Floor`, `Ceil`, `Round`, `Sigmoid`, `Tanh`, `Erf`, `Gelu`, `Softplus`,
//! `Mish`, `Swish` and `SwiGLU`'s gate call the slice kernels of `sinter_rt::math::Func`
//! (sixteen lanes at a time, bit for bit the scalar functions); the other ops are closures
//! without calls, which the compiler vectorizes, except the f64-backed trigonometric and
//! `expm1` ops, `Pow` and `Mod` (listed, with reasons, in this file's tests).
//!
//! Constant folding (`eval`) covers integer and bool arithmetic, comparisons, logic, `Where`,
//! `Min`/`Max`/`Sum`, `Clip` and the integer unary ops, which is what shape arithmetic in real
//! models uses, plus the f32/f64 operations whose results are exact or one correctly rounded
//! step (`+ - * /`, comparisons, `Min`/`Max`/`Sum`/`Mean`, `Abs`, `Neg`, `Floor`, `Ceil`,
//! `Round`, `Sign`, `Relu`, `Reciprocal`, f32 `Sqrt`): results match the emitted code bit for
//! bit, integers wrapping as it does.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::{
    broadcast_shapes, broadcast_strides, f32_lit, lit, require_dtype, rust_type, usize_slice,
    EmitNames, NodeCx, OpCx, OpDef, Operand, TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::{DType, Tensor};

// ---- dtype helpers ----

const FLOATS: &[DType] = &[DType::F32, DType::F64, DType::F16, DType::BF16];
const SIGNED: &[DType] = &[DType::I8, DType::I16, DType::I32, DType::I64];
const UNSIGNED: &[DType] = &[DType::U8, DType::U16, DType::U32, DType::U64];

fn is_signed(dtype: DType) -> bool {
    SIGNED.contains(&dtype)
}

fn is_int(dtype: DType) -> bool {
    SIGNED.contains(&dtype) || UNSIGNED.contains(&dtype)
}

fn bits(dtype: DType) -> usize {
    dtype.size() * 8
}

/// Floats and integers (every numeric type).
fn numeric() -> Vec<DType> {
    [FLOATS, SIGNED, UNSIGNED].concat()
}

/// Floats and signed integers.
fn signed_numeric() -> Vec<DType> {
    [FLOATS, SIGNED].concat()
}

fn ints() -> Vec<DType> {
    [SIGNED, UNSIGNED].concat()
}

/// How emitted code computes on a float type: f32 (also for the 16-bit floats, widened and
/// rounded back) or f64.
#[derive(Debug, Clone, Copy)]
struct FloatCx {
    dtype: DType,
}

impl FloatCx {
    fn new(dtype: DType) -> Option<Self> {
        dtype.is_float().then_some(Self { dtype })
    }
    fn is_f64(self) -> bool {
        self.dtype == DType::F64
    }
    /// The compute type.
    fn ty(self) -> TokenStream {
        if self.is_f64() {
            quote!(f64)
        } else {
            quote!(f32)
        }
    }
    /// A literal of the compute type.
    fn lit(self, v: f64) -> TokenStream {
        if self.is_f64() {
            if v.is_nan() {
                quote!(f64::NAN)
            } else if v == f64::INFINITY {
                quote!(f64::INFINITY)
            } else if v == f64::NEG_INFINITY {
                quote!(f64::NEG_INFINITY)
            } else {
                let l = Literal::f64_suffixed(v);
                quote!(#l)
            }
        } else {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "the f32 compute type rounds by definition"
            )]
            f32_lit(v as f32)
        }
    }
    /// A `sinter_rt::math` function of the compute type.
    fn math(self, name: &str) -> TokenStream {
        let ident = if self.is_f64() {
            format_ident!("{}_f64", name)
        } else {
            format_ident!("{}", name)
        };
        quote!(::sinter_rt::math::#ident)
    }
    /// Storage value to compute type.
    fn decode(self, e: TokenStream) -> TokenStream {
        match self.dtype {
            DType::F16 => quote!(::sinter_rt::half::f16_to_f32(#e)),
            DType::BF16 => quote!(::sinter_rt::half::bf16_to_f32(#e)),
            _ => e,
        }
    }
    /// Compute type to storage value.
    fn encode(self, e: TokenStream) -> TokenStream {
        match self.dtype {
            DType::F16 => quote!(::sinter_rt::half::f32_to_f16(#e)),
            DType::BF16 => quote!(::sinter_rt::half::f32_to_bf16(#e)),
            _ => e,
        }
    }
}

/// For constant folding: the element offsets of an input of shape `shape` read for each
/// element of the broadcast output `out`.
fn broadcast_offsets(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let strides = broadcast_strides(shape, out);
    let n: usize = out.iter().product();
    (0..n)
        .map(|i| {
            let (mut rem, mut off) = (i, 0);
            for axis in (0..out.len()).rev() {
                off += (rem % out[axis]) * strides[axis];
                rem /= out[axis];
            }
            off
        })
        .collect()
}

/// Whether constant folding handles this integer-like type exactly through i64 (u64 does not
/// round-trip comparisons and division through i64).
fn foldable_int(dtype: DType) -> bool {
    dtype == DType::Bool || (is_int(dtype) && dtype != DType::U64)
}

/// An integer or bool tensor from i64 values, each wrapped to the type's width (little-endian
/// truncation is two's-complement wrapping).
fn int_tensor(dtype: DType, shape: Vec<usize>, values: &[i64]) -> Tensor {
    let size = dtype.size();
    let bytes = values
        .iter()
        .flat_map(|v| {
            let v = if dtype == DType::Bool {
                i64::from(*v != 0)
            } else {
                *v
            };
            v.to_le_bytes().into_iter().take(size)
        })
        .collect();
    Tensor {
        dtype,
        shape,
        bytes,
    }
}

/// Broadcast shape of several operands.
fn broadcast_all(shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    for s in shapes {
        out = broadcast_shapes(&out, s)?;
    }
    check_rank(&out)?;
    Ok(out)
}

/// The runtime's broadcasting walk (`for_each_index`) handles up to 16 axes.
fn check_rank(shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(CompileError::unsupported(format!(
            "broadcasting over {} axes (at most {MAX_RANK})",
            shape.len()
        )));
    }
    Ok(())
}

/// The most axes `sinter_rt::elementwise::for_each_index` walks.
const MAX_RANK: usize = 16;

// ---- binary ops ----

/// Which binary op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (integer division truncates toward zero; by zero gives 0).
    Div,
    /// `Mod`: C `fmod` when `fmod`, else numpy's `mod` (the result takes the divisor's sign).
    Mod {
        /// The `fmod` attribute.
        fmod: bool,
    },
    /// `a ^ b`; the output has the base's type.
    Pow,
    /// Shift left or right; shifts out of range give 0 (or -1 for negative signed values
    /// shifted right).
    BitShift {
        /// `direction = "LEFT"`.
        left: bool,
    },
    /// `a & b` on integers.
    BitwiseAnd,
    /// `a | b` on integers.
    BitwiseOr,
    /// `a ^ b` on integers.
    BitwiseXor,
    /// Logical and (bool).
    And,
    /// Logical or (bool).
    Or,
    /// Logical xor (bool).
    Xor,
    /// `a == b` (bool output).
    Equal,
    /// `a < b`.
    Less,
    /// `a <= b`.
    LessOrEqual,
    /// `a > b`.
    Greater,
    /// `a >= b`.
    GreaterOrEqual,
    /// `a < 0 ? slope * a : a`, the slope broadcast to `a`.
    PRelu,
}

impl BinaryKind {
    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryKind::Equal
                | BinaryKind::Less
                | BinaryKind::LessOrEqual
                | BinaryKind::Greater
                | BinaryKind::GreaterOrEqual
        )
    }
}

/// The binary ops (see [`BinaryKind`]).
#[derive(Debug, Clone)]
pub struct Binary {
    /// The operation.
    pub kind: BinaryKind,
    /// Opset < 7 with `broadcast = 1`: the axis of `A` where `B`'s dimensions start (`None`
    /// for the numpy rule, which is also what `broadcast = 1` without `axis` means).
    pub legacy_axis: Option<i64>,
}

impl Binary {
    /// `B`'s shape as broadcasting sees it: padded with 1s around the legacy axis, if any.
    fn b_shape(&self, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
        let Some(axis) = self.legacy_axis else {
            return Ok(b.to_vec());
        };
        let axis = super::normalize_axis(axis, a.len().max(1), "broadcast axis")?;
        if axis + b.len() > a.len() {
            return Err(CompileError::shape(format!(
                "B of shape {b:?} does not fit A of shape {a:?} at axis {axis}"
            )));
        }
        let mut shape = vec![1; axis];
        shape.extend_from_slice(b);
        shape.resize(a.len(), 1);
        Ok(shape)
    }
}

impl OpDef for Binary {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let kind = match node.op_type() {
            "Add" => BinaryKind::Add,
            "Sub" => BinaryKind::Sub,
            "Mul" => BinaryKind::Mul,
            "Div" => BinaryKind::Div,
            "Mod" => BinaryKind::Mod {
                fmod: match node.i64_or("fmod", 0)? {
                    0 => false,
                    1 => true,
                    v => {
                        return Err(CompileError::attribute(
                            "fmod",
                            format!("must be 0 or 1, found {v}"),
                        ))
                    }
                },
            },
            "Pow" => BinaryKind::Pow,
            "BitShift" => BinaryKind::BitShift {
                left: match node.string_or("direction", "")?.as_str() {
                    "LEFT" => true,
                    "RIGHT" => false,
                    d => {
                        return Err(CompileError::attribute(
                            "direction",
                            format!("must be LEFT or RIGHT, found {d:?}"),
                        ))
                    }
                },
            },
            "BitwiseAnd" => BinaryKind::BitwiseAnd,
            "BitwiseOr" => BinaryKind::BitwiseOr,
            "BitwiseXor" => BinaryKind::BitwiseXor,
            "And" => BinaryKind::And,
            "Or" => BinaryKind::Or,
            "Xor" => BinaryKind::Xor,
            "Equal" => BinaryKind::Equal,
            "Less" => BinaryKind::Less,
            "LessOrEqual" => BinaryKind::LessOrEqual,
            "Greater" => BinaryKind::Greater,
            "GreaterOrEqual" => BinaryKind::GreaterOrEqual,
            "PRelu" => BinaryKind::PRelu,
            other => {
                return Err(CompileError::unsupported(format!(
                    "internal: {other} is not a binary op"
                )))
            }
        };
        if kind == BinaryKind::PRelu && node.opset() < 7 {
            return Err(CompileError::unsupported(
                "PRelu before opset 7 (slope broadcasting differs)",
            ));
        }
        // Before opset 7, broadcasting happened only with `broadcast = 1` (otherwise the shapes
        // are equal, which numpy broadcasting also accepts), aligned at `axis` if given.
        let legacy_axis = if node.opset() < 7 && node.i64_or("broadcast", 0)? != 0 {
            node.i64_opt("axis")?
        } else {
            None
        };
        Ok(Self { kind, legacy_axis })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if self.kind != BinaryKind::Pow && a.dtype != b.dtype {
            return Err(CompileError::shape(format!(
                "input types differ: {} and {}",
                a.dtype, b.dtype
            )));
        }
        let allowed: Vec<DType> = match self.kind {
            BinaryKind::Add
            | BinaryKind::Sub
            | BinaryKind::Mul
            | BinaryKind::Div
            | BinaryKind::Mod { .. }
            | BinaryKind::Pow
            | BinaryKind::Less
            | BinaryKind::LessOrEqual
            | BinaryKind::Greater
            | BinaryKind::GreaterOrEqual => numeric(),
            BinaryKind::PRelu => numeric(),
            BinaryKind::Equal => [numeric(), vec![DType::Bool]].concat(),
            BinaryKind::BitShift { .. }
            | BinaryKind::BitwiseAnd
            | BinaryKind::BitwiseOr
            | BinaryKind::BitwiseXor => ints(),
            BinaryKind::And | BinaryKind::Or | BinaryKind::Xor => vec![DType::Bool],
        };
        require_dtype(a.dtype, &allowed, "input")?;
        require_dtype(b.dtype, &allowed, "second input")?;
        let dtype = if self.kind.is_comparison() {
            DType::Bool
        } else {
            a.dtype
        };
        if a.is_dynamic() || b.is_dynamic() {
            let (shape, dynamic) = dynamic_broadcast(&a, &b)?;
            return Ok(vec![TypeShape::dynamic(dtype, shape, dynamic)]);
        }
        let b_shape = self.b_shape(a.shape, b.shape)?;
        let shape = broadcast_shapes(a.shape, &b_shape)?;
        check_rank(&shape)?;
        if (self.kind == BinaryKind::PRelu || self.legacy_axis.is_some()) && shape != a.shape {
            return Err(CompileError::shape(format!(
                "second input of shape {:?} does not broadcast to the first, of shape {:?}",
                b.shape, a.shape
            )));
        }
        Ok(vec![TypeShape::new(dtype, shape)])
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        self.kind != BinaryKind::PRelu && self.legacy_axis.is_none()
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let (a, b) = (cx.input(0).ok()?, cx.input(1).ok()?);
        let (ta, tb) = (a.constant?, b.constant?);
        let b_shape = self.b_shape(a.shape, b.shape).ok()?;
        let shape = broadcast_shapes(a.shape, &b_shape).ok()?;
        let (oa, ob) = (
            broadcast_offsets(a.shape, &shape),
            broadcast_offsets(&b_shape, &shape),
        );
        let out_dtype = if self.kind.is_comparison() {
            DType::Bool
        } else {
            a.dtype
        };
        if foldable_int(a.dtype) && foldable_int(b.dtype) {
            let (x, y) = (ta.to_i64s()?, tb.to_i64s()?);
            let mut v = Vec::with_capacity(oa.len());
            for (&ia, &ib) in oa.iter().zip(&ob) {
                v.push(self.apply_int(a.dtype, *x.get(ia)?, *y.get(ib)?)?);
            }
            return Some(Ok(vec![int_tensor(out_dtype, shape, &v)]));
        }
        let is_arith = matches!(
            self.kind,
            BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul | BinaryKind::Div
        );
        if a.dtype != b.dtype || !(is_arith || self.kind.is_comparison()) {
            return None;
        }
        match a.dtype {
            DType::F32 => {
                let (x, y) = (ta.as_f32()?, tb.as_f32()?);
                let mut v = Vec::with_capacity(oa.len());
                for (&ia, &ib) in oa.iter().zip(&ob) {
                    let (p, q) = (*x.get(ia)?, *y.get(ib)?);
                    v.push(match self.kind {
                        BinaryKind::Add => p + q,
                        BinaryKind::Sub => p - q,
                        BinaryKind::Mul => p * q,
                        BinaryKind::Div => p / q,
                        _ => f32::from(u8::from(compare(self.kind, p, q))),
                    });
                }
                Some(Ok(vec![float_result(
                    out_dtype,
                    shape,
                    v.into_iter().map(f64::from),
                )]))
            }
            DType::F64 => {
                let (x, y) = (ta.as_f64()?, tb.as_f64()?);
                let mut v = Vec::with_capacity(oa.len());
                for (&ia, &ib) in oa.iter().zip(&ob) {
                    let (p, q) = (*x.get(ia)?, *y.get(ib)?);
                    v.push(match self.kind {
                        BinaryKind::Add => p + q,
                        BinaryKind::Sub => p - q,
                        BinaryKind::Mul => p * q,
                        BinaryKind::Div => p / q,
                        _ => f64::from(u8::from(compare(self.kind, p, q))),
                    });
                }
                Some(Ok(vec![float_result(out_dtype, shape, v.into_iter())]))
            }
            _ => None,
        }
    }

    fn in_place_input(&self, cx: &OpCx<'_>) -> Option<usize> {
        // Output 0 over A when A already has the output's type and shape (B may broadcast).
        let (a, y) = (cx.input(0).ok()?, cx.output(0).ok()?);
        (a.dtype == y.dtype && a.shape == y.shape && !a.is_dynamic() && !y.is_dynamic())
            .then_some(0)
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (a, b, out) = (cx.input(0)?, cx.input(1)?, cx.output(0)?);
        if a.is_dynamic() || b.is_dynamic() {
            // Broadcast at run time, then the generic strided kernel.
            let f = self.closure(a.dtype, b.dtype)?;
            let (sa, sb) = (names.in_shape(cx, 0), names.in_shape(cx, 1));
            let rank = lit(out.shape.len());
            let shapes = names.check(quote!(::sinter_rt::dynamic::broadcast::<#rank>(&#sa, &#sb)));
            let (i0, i1, o0, os0) = (
                names.input(0),
                names.input(1),
                names.output(0),
                names.out_shape(0),
            );
            return Ok(quote! {
                let (#os0, sa, sb) = #shapes;
                let (la, lb): (usize, usize) = (#sa.iter().product(), #sb.iter().product());
                let n: usize = #os0.iter().product();
                ::sinter_rt::elementwise::zip(&#i0[..la], &sa, &#i1[..lb], &sb, &mut #o0[..n], &#os0, #f);
            });
        }
        let sa = usize_slice(&broadcast_strides(a.shape, out.shape));
        let sb = usize_slice(&broadcast_strides(
            &self.b_shape(a.shape, b.shape)?,
            out.shape,
        ));
        let shape = usize_slice(out.shape);
        // x^2 with a constant exponent is one multiplication: the f32 product of two f32s is
        // exactly what rounding the f64 power gives.
        let squares = self.kind == BinaryKind::Pow
            && matches!(a.dtype, DType::F32 | DType::F64)
            && b.constant
                .and_then(|t| (t.len() == 1).then(|| t.to_f64s()))
                .is_some_and(|v| v == [2.0]);
        if squares && b.shape.iter().product::<usize>() == 1 && a.shape == out.shape {
            let (o0, t) = (names.output(0), rust_type(a.dtype));
            if names.in_place == Some(0) {
                return Ok(quote!(::sinter_rt::elementwise::map_in_place(#o0, |x: #t| x * x);));
            }
            let i0 = names.input(0);
            return Ok(quote!(::sinter_rt::elementwise::map(#i0, #o0, |x: #t| x * x);));
        }
        let f = self.closure(a.dtype, b.dtype)?;
        if names.in_place == Some(0) {
            let (i1, o0) = (names.input(1), names.output(0));
            return Ok(quote!(::sinter_rt::elementwise::zip_assign(#o0, #shape, #i1, #sb, #f);));
        }
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        if out.shape.iter().product::<usize>() < PARALLEL_MIN {
            return Ok(quote!(::sinter_rt::elementwise::zip(#i0, #sa, #i1, #sb, #o0, #shape, #f);));
        }
        let exec = names.exec();
        Ok(quote!(::sinter_rt::elementwise::zip_exec(#exec, #i0, #sa, #i1, #sb, #o0, #shape, #f);))
    }
}

/// The capacity and dynamic axes of a broadcast where an operand has run-time extents: an
/// axis is dynamic when an operand's is and the other's is dynamic or 1 (a dynamic extent
/// meeting a fixed one above 1 must equal it, or be 1, which the run checks).
fn dynamic_broadcast(a: &Operand<'_>, b: &Operand<'_>) -> Result<(Vec<usize>, Vec<bool>)> {
    let rank = a.shape.len().max(b.shape.len());
    check_rank(&vec![1; rank])?;
    let at = |o: &Operand<'_>, axis: usize| -> (usize, bool) {
        let lead = rank - o.shape.len();
        if axis < lead {
            (1, false)
        } else {
            (
                o.shape[axis - lead],
                o.dynamic.get(axis - lead).copied().unwrap_or(false),
            )
        }
    };
    let (mut shape, mut dynamic) = (Vec::with_capacity(rank), Vec::with_capacity(rank));
    for axis in 0..rank {
        let ((da, ya), (db, yb)) = (at(a, axis), at(b, axis));
        let (d, y) = match (ya, yb) {
            (true, true) => (da.max(db), true),
            (true, false) if db == 1 => (da, true),
            (false, true) if da == 1 => (db, true),
            (true, false) => (db, false),
            (false, true) => (da, false),
            (false, false) => match (da, db) {
                (x, y) if x == y => (x, false),
                (1, y) => (y, false),
                (x, 1) => (x, false),
                _ => {
                    return Err(CompileError::shape(format!(
                        "shapes {:?} and {:?} do not broadcast",
                        a.shape, b.shape
                    )))
                }
            },
        };
        shape.push(d);
        dynamic.push(y);
    }
    Ok((shape, dynamic))
}

/// A comparison on floats (`kind` is one of the comparison kinds).
fn compare<T: PartialOrd>(kind: BinaryKind, p: T, q: T) -> bool {
    match kind {
        BinaryKind::Equal => p == q,
        BinaryKind::Less => p < q,
        BinaryKind::LessOrEqual => p <= q,
        BinaryKind::Greater => p > q,
        _ => p >= q,
    }
}

/// A folded float result: bool (from comparisons, values 0/1) or the float type.
fn float_result(dtype: DType, shape: Vec<usize>, values: impl Iterator<Item = f64>) -> Tensor {
    match dtype {
        DType::F64 => Tensor::from_f64(shape, &values.collect::<Vec<_>>()),
        DType::F32 => {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "the values were computed in f32"
            )]
            let v: Vec<f32> = values.map(|v| v as f32).collect();
            Tensor::from_f32(shape, &v)
        }
        _ => {
            let v: Vec<i64> = values.map(|v| i64::from(v != 0.0)).collect();
            int_tensor(dtype, shape, &v)
        }
    }
}

impl Binary {
    /// The folded result for integer/bool operands (values sign- or zero-extended to i64;
    /// the caller wraps to the output width). `None` for ops not folded.
    fn apply_int(&self, dtype: DType, a: i64, b: i64) -> Option<i64> {
        let width = i64::try_from(bits(dtype)).ok()?;
        Some(match self.kind {
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
            BinaryKind::Mod { fmod } => {
                if b == 0 {
                    0
                } else {
                    let r = a.wrapping_rem(b);
                    if !fmod && r != 0 && ((r < 0) != (b < 0)) {
                        r + b
                    } else {
                        r
                    }
                }
            }
            BinaryKind::Pow => {
                if dtype == DType::Bool {
                    return None;
                }
                ipow(a, b)
            }
            BinaryKind::BitShift { left } => {
                if b < 0 || b >= width {
                    if !left && a < 0 {
                        -1
                    } else {
                        0
                    }
                } else if left {
                    a << b
                } else {
                    a >> b
                }
            }
            BinaryKind::BitwiseAnd => a & b,
            BinaryKind::BitwiseOr => a | b,
            BinaryKind::BitwiseXor => a ^ b,
            BinaryKind::And => i64::from(a != 0 && b != 0),
            BinaryKind::Or => i64::from(a != 0 || b != 0),
            BinaryKind::Xor => i64::from((a != 0) != (b != 0)),
            BinaryKind::PRelu => {
                if a < 0 {
                    a.wrapping_mul(b)
                } else {
                    a
                }
            }
            k => i64::from(compare(k, a, b)),
        })
    }

    /// The closure `|a: A, b: B| -> O` over storage types.
    fn closure(&self, da: DType, db: DType) -> Result<TokenStream> {
        let (ta, tb) = (rust_type(da), rust_type(db));
        if self.kind == BinaryKind::Pow {
            return pow_closure(da, db);
        }
        if let Some(fc) = FloatCx::new(da) {
            let ct = fc.ty();
            let (dec_a, dec_b) = (fc.decode(quote!(a)), fc.decode(quote!(b)));
            let zero = fc.lit(0.0);
            let body = match self.kind {
                BinaryKind::Add => quote!(a + b),
                BinaryKind::Sub => quote!(a - b),
                BinaryKind::Mul => quote!(a * b),
                BinaryKind::Div => quote!(a / b),
                BinaryKind::Mod { fmod: true } => quote!(a % b),
                BinaryKind::Mod { fmod: false } => {
                    let f = fc.math("py_mod");
                    quote!(#f(a, b))
                }
                BinaryKind::PRelu => quote!(if a < #zero { b * a } else { a }),
                k => {
                    let cmp = comparison_tokens(k)?;
                    return Ok(quote!(|a: #ta, b: #tb| {
                        let (a, b): (#ct, #ct) = (#dec_a, #dec_b);
                        u8::from(#cmp)
                    }));
                }
            };
            let enc = fc.encode(body);
            return Ok(quote!(|a: #ta, b: #tb| {
                let (a, b): (#ct, #ct) = (#dec_a, #dec_b);
                #enc
            }));
        }
        let signed = is_signed(da);
        if self.kind == BinaryKind::PRelu && !signed {
            // Unsigned values are never negative: the slope is never applied.
            return Ok(quote!(|a: #ta, _slope: #tb| a));
        }
        let width = lit(bits(da));
        let body = match self.kind {
            BinaryKind::Add => quote!(a.wrapping_add(b)),
            BinaryKind::Sub => quote!(a.wrapping_sub(b)),
            BinaryKind::Mul => quote!(a.wrapping_mul(b)),
            BinaryKind::Div => quote!(if b == 0 { 0 } else { a.wrapping_div(b) }),
            BinaryKind::Mod { fmod: true } => quote!(if b == 0 { 0 } else { a.wrapping_rem(b) }),
            BinaryKind::Mod { fmod: false } if signed => quote!(if b == 0 {
                0
            } else {
                let r = a.wrapping_rem(b);
                if r != 0 && ((r < 0) != (b < 0)) {
                    r + b
                } else {
                    r
                }
            }),
            BinaryKind::Mod { fmod: false } => quote!(if b == 0 { 0 } else { a % b }),
            BinaryKind::BitShift { left: true } if signed => {
                quote!(if b < 0 || b >= #width { 0 } else { a << b })
            }
            BinaryKind::BitShift { left: true } => quote!(if b >= #width { 0 } else { a << b }),
            BinaryKind::BitShift { left: false } if signed => {
                quote!(if b < 0 || b >= #width { if a < 0 { -1 } else { 0 } } else { a >> b })
            }
            BinaryKind::BitShift { left: false } => quote!(if b >= #width { 0 } else { a >> b }),
            BinaryKind::BitwiseAnd => quote!(a & b),
            BinaryKind::BitwiseOr => quote!(a | b),
            BinaryKind::BitwiseXor => quote!(a ^ b),
            BinaryKind::And => quote!(u8::from(a != 0 && b != 0)),
            BinaryKind::Or => quote!(u8::from(a != 0 || b != 0)),
            BinaryKind::Xor => quote!(u8::from((a != 0) != (b != 0))),
            BinaryKind::PRelu => quote!(if a < 0 { a.wrapping_mul(b) } else { a }),
            BinaryKind::Pow => {
                return Err(CompileError::unsupported("internal: Pow handled above"));
            }
            k => {
                let cmp = comparison_tokens(k)?;
                quote!(u8::from(#cmp))
            }
        };
        Ok(quote!(|a: #ta, b: #tb| #body))
    }
}

fn comparison_tokens(kind: BinaryKind) -> Result<TokenStream> {
    Ok(match kind {
        BinaryKind::Equal => quote!(a == b),
        BinaryKind::Less => quote!(a < b),
        BinaryKind::LessOrEqual => quote!(a <= b),
        BinaryKind::Greater => quote!(a > b),
        BinaryKind::GreaterOrEqual => quote!(a >= b),
        k => {
            return Err(CompileError::unsupported(format!(
                "internal: {k:?} is not a comparison"
            )))
        }
    })
}

/// Integer power with wrapping (the compile-time twin of `sinter_rt::math::ipow`).
fn ipow(base: i64, exp: i64) -> i64 {
    if exp < 0 {
        return match base {
            1 => 1,
            -1 => {
                if exp & 1 == 0 {
                    1
                } else {
                    -1
                }
            }
            _ => 0,
        };
    }
    let (mut b, mut e, mut acc) = (base, exp, 1i64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    acc
}

/// `Pow`: float bases compute `pow_f64` and round to the base type; integer bases with integer
/// exponents use wrapping integer powers; integer bases with float exponents compute in f64
/// and convert back (truncating toward zero, wrapping through i64 as numpy's C casts do).
fn pow_closure(da: DType, db: DType) -> Result<TokenStream> {
    let (ta, tb) = (rust_type(da), rust_type(db));
    let y = match FloatCx::new(db) {
        Some(fb) => {
            let d = fb.decode(quote!(b));
            quote!(f64::from(#d))
        }
        None => quote!(b as f64),
    };
    if let Some(fa) = FloatCx::new(da) {
        let x = fa.decode(quote!(a));
        let r = if fa.is_f64() {
            quote!(::sinter_rt::math::pow_f64(#x, #y))
        } else {
            quote!(::sinter_rt::math::pow_f64(f64::from(#x), #y) as f32)
        };
        let enc = fa.encode(r);
        return Ok(quote!(|a: #ta, b: #tb| #enc));
    }
    if is_int(db) {
        Ok(quote!(|a: #ta, b: #tb| ::sinter_rt::math::ipow(a as i64, b as i64) as #ta))
    } else {
        // Through i64, so that out-of-range results wrap like numpy's C casts on x86.
        Ok(quote!(|a: #ta, b: #tb| ::sinter_rt::math::pow_f64(a as f64, #y) as i64 as #ta))
    }
}

// ---- variadic ops ----

/// Which variadic op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariadicKind {
    /// Elementwise minimum (NaN propagates).
    Min,
    /// Elementwise maximum (NaN propagates).
    Max,
    /// Sum.
    Sum,
    /// Mean (floats).
    Mean,
}

/// `Min`, `Max`, `Sum`, `Mean` over one or more broadcast inputs.
#[derive(Debug, Clone)]
pub struct Variadic {
    /// The operation.
    pub kind: VariadicKind,
}

impl OpDef for Variadic {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let kind = match node.op_type() {
            "Min" => VariadicKind::Min,
            "Max" => VariadicKind::Max,
            "Sum" => VariadicKind::Sum,
            _ => VariadicKind::Mean,
        };
        if node.n_inputs() == 0 {
            return Err(CompileError::malformed("needs at least one input"));
        }
        Ok(Self { kind })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let first = cx.input(0)?;
        let allowed = if self.kind == VariadicKind::Mean {
            FLOATS.to_vec()
        } else {
            numeric()
        };
        require_dtype(first.dtype, &allowed, "input")?;
        let mut shapes = Vec::new();
        for i in 0..cx.inputs.len() {
            let x = cx.input(i)?;
            if x.dtype != first.dtype {
                return Err(CompileError::shape(format!(
                    "input types differ: {} and {}",
                    first.dtype, x.dtype
                )));
            }
            shapes.push(x.shape);
        }
        match cx.inputs.len() {
            1 if first.is_dynamic() => {
                return Ok(vec![TypeShape::dynamic(
                    first.dtype,
                    first.shape.to_vec(),
                    first.dynamic.to_vec(),
                )])
            }
            2 if cx.input(1)?.is_dynamic() || first.is_dynamic() => {
                let (shape, dynamic) = dynamic_broadcast(&first, &cx.input(1)?)?;
                return Ok(vec![TypeShape::dynamic(first.dtype, shape, dynamic)]);
            }
            _ => {}
        }
        Ok(vec![TypeShape::new(first.dtype, broadcast_all(&shapes)?)])
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        // One or two inputs broadcast at run time.
        cx.inputs.len() <= 2
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let first = cx.input(0).ok()?;
        if matches!(first.dtype, DType::F32 | DType::F64) {
            return self.eval_float(cx);
        }
        if !foldable_int(first.dtype) || self.kind == VariadicKind::Mean {
            return None;
        }
        let mut shapes = Vec::new();
        for i in 0..cx.inputs.len() {
            shapes.push(cx.input(i).ok()?.shape);
        }
        let shape = broadcast_all(&shapes).ok()?;
        let mut acc: Option<Vec<i64>> = None;
        for i in 0..cx.inputs.len() {
            let x = cx.input(i).ok()?;
            let values = x.constant?.to_i64s()?;
            let offsets = broadcast_offsets(x.shape, &shape);
            let mut v = Vec::with_capacity(offsets.len());
            for o in offsets {
                v.push(*values.get(o)?);
            }
            acc = Some(match acc {
                None => v,
                Some(prev) => prev
                    .iter()
                    .zip(&v)
                    .map(|(&p, &q)| match self.kind {
                        VariadicKind::Min => p.min(q),
                        VariadicKind::Max => p.max(q),
                        _ => p.wrapping_add(q),
                    })
                    .collect(),
            });
        }
        Some(Ok(vec![int_tensor(first.dtype, shape, &acc?)]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let out = cx.output(0)?;
        let dtype = out.dtype;
        let shape = usize_slice(out.shape);
        let o0 = names.output(0);
        let strides = |i: usize| -> Result<TokenStream> {
            Ok(usize_slice(&broadcast_strides(
                cx.input(i)?.shape,
                out.shape,
            )))
        };
        let n = cx.inputs.len();
        if cx.inputs.iter().flatten().any(Operand::is_dynamic) {
            return self.emit_run_time(cx, names);
        }
        if n == 1 {
            let (i0, s0) = (names.input(0), strides(0)?);
            return Ok(quote!(::sinter_rt::elementwise::broadcast_copy(#i0, #s0, #o0, #shape);));
        }
        let f = self.closure(dtype);
        let (i0, i1, s0, s1) = (names.input(0), names.input(1), strides(0)?, strides(1)?);
        let mut code = quote! {
            let f = #f;
            ::sinter_rt::elementwise::zip(#i0, #s0, #i1, #s1, #o0, #shape, f);
        };
        for i in 2..n {
            let (ii, si) = (names.input(i), strides(i)?);
            code.extend(quote!(::sinter_rt::elementwise::zip_assign(#o0, #shape, #ii, #si, f);));
        }
        code.extend(self.mean_finish(dtype, n, quote!(#o0))?);
        Ok(code)
    }
}

impl Variadic {
    /// The closure combining two elements of `dtype` (Mean sums; see [`Self::mean_finish`]).
    fn closure(&self, dtype: DType) -> TokenStream {
        let t = rust_type(dtype);
        match FloatCx::new(dtype) {
            Some(fc) => {
                let ct = fc.ty();
                let (dec_a, dec_b) = (fc.decode(quote!(a)), fc.decode(quote!(b)));
                let body = match self.kind {
                    VariadicKind::Min => quote!(if a < b || a.is_nan() { a } else { b }),
                    VariadicKind::Max => quote!(if a > b || a.is_nan() { a } else { b }),
                    _ => quote!(a + b),
                };
                let enc = fc.encode(body);
                quote!(|a: #t, b: #t| { let (a, b): (#ct, #ct) = (#dec_a, #dec_b); #enc })
            }
            None => match self.kind {
                VariadicKind::Min => quote!(|a: #t, b: #t| if a < b { a } else { b }),
                VariadicKind::Max => quote!(|a: #t, b: #t| if a > b { a } else { b }),
                _ => quote!(|a: #t, b: #t| a.wrapping_add(b)),
            },
        }
    }

    /// For `Mean`, the division of the sum in `out` (a slice expression) by the `n` inputs;
    /// nothing for the other kinds.
    fn mean_finish(&self, dtype: DType, n: usize, out: TokenStream) -> Result<TokenStream> {
        if self.kind != VariadicKind::Mean {
            return Ok(TokenStream::new());
        }
        let t = rust_type(dtype);
        let fc = FloatCx::new(dtype)
            .ok_or_else(|| CompileError::unsupported(format!("Mean of type {dtype}")))?;
        let ct = fc.ty();
        let count = fc
            .lit(f64::from(u32::try_from(n).map_err(|_| {
                CompileError::unsupported("Mean of more than 2^32 inputs")
            })?));
        let dec = fc.decode(quote!(v));
        let enc = fc.encode(quote!(x / #count));
        Ok(
            quote!(::sinter_rt::elementwise::map_in_place(#out, |v: #t| { let x: #ct = #dec; #enc });),
        )
    }

    /// One or two inputs of run-time shape, broadcast at run time.
    fn emit_run_time(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let out = cx.output(0)?;
        let (o0, os0) = (names.output(0), names.out_shape(0));
        let sa = names.in_shape(cx, 0);
        let i0 = names.input(0);
        if cx.inputs.len() == 1 {
            return Ok(quote! {
                let #os0 = #sa;
                let n: usize = #os0.iter().product();
                #o0[..n].copy_from_slice(&#i0[..n]);
            });
        }
        let f = self.closure(out.dtype);
        let sb = names.in_shape(cx, 1);
        let rank = lit(out.shape.len());
        let shapes = names.check(quote!(::sinter_rt::dynamic::broadcast::<#rank>(&#sa, &#sb)));
        let i1 = names.input(1);
        let mean = self.mean_finish(out.dtype, 2, quote!(&mut #o0[..n]))?;
        Ok(quote! {
            let (#os0, sa, sb) = #shapes;
            let (la, lb): (usize, usize) = (#sa.iter().product(), #sb.iter().product());
            let n: usize = #os0.iter().product();
            ::sinter_rt::elementwise::zip(&#i0[..la], &sa, &#i1[..lb], &sb, &mut #o0[..n], &#os0, #f);
            #mean
        })
    }
}

impl Variadic {
    /// Folds f32/f64 inputs in the runtime's order (`((x0 op x1) op x2) ...`, then the
    /// division for Mean), rounding every step to the input type as the emitted code does.
    fn eval_float(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let dtype = cx.input(0).ok()?.dtype;
        let mut shapes = Vec::new();
        for i in 0..cx.inputs.len() {
            shapes.push(cx.input(i).ok()?.shape);
        }
        let shape = broadcast_all(&shapes).ok()?;
        let mut acc: Option<Vec<f64>> = None;
        for i in 0..cx.inputs.len() {
            let x = cx.input(i).ok()?;
            let values = x.constant?.to_f64s();
            let offsets = broadcast_offsets(x.shape, &shape);
            let mut v = Vec::with_capacity(offsets.len());
            for o in offsets {
                v.push(*values.get(o)?);
            }
            acc = Some(match acc {
                None => v,
                Some(prev) => prev
                    .iter()
                    .zip(&v)
                    .map(|(&a, &b)| match self.kind {
                        VariadicKind::Min => {
                            if a < b || a.is_nan() {
                                a
                            } else {
                                b
                            }
                        }
                        VariadicKind::Max => {
                            if a > b || a.is_nan() {
                                a
                            } else {
                                b
                            }
                        }
                        _ => round_to(dtype, a + b),
                    })
                    .collect(),
            });
        }
        let mut acc = acc?;
        if self.kind == VariadicKind::Mean && cx.inputs.len() > 1 {
            let n = f64::from(u32::try_from(cx.inputs.len()).ok()?);
            acc = acc.into_iter().map(|v| round_to(dtype, v / n)).collect();
        }
        Some(Ok(vec![float_result(dtype, shape, acc.into_iter())]))
    }
}

/// Rounds an f64 to the value f32 arithmetic would produce (for f32; f64 unchanged). One
/// correctly rounded f64 operation on f32 operands, rounded to f32, equals the f32 operation.
fn round_to(dtype: DType, v: f64) -> f64 {
    if dtype == DType::F32 {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "rounding to f32 is the point"
        )]
        let r = v as f32;
        f64::from(r)
    } else {
        v
    }
}

// ---- Where ----

/// `Where(cond, x, y)`, the three broadcast together.
#[derive(Debug, Clone)]
pub struct Where;

impl OpDef for Where {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (c, x, y) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        require_dtype(c.dtype, &[DType::Bool], "condition")?;
        if x.dtype != y.dtype {
            return Err(CompileError::shape(format!(
                "input types differ: {} and {}",
                x.dtype, y.dtype
            )));
        }
        if c.is_dynamic() || x.is_dynamic() || y.is_dynamic() {
            let (shape, dynamic) = dynamic_broadcast(&c, &x)?;
            let cx_out = Operand {
                shape: &shape,
                dynamic: &dynamic,
                ..x
            };
            let (shape, dynamic) = dynamic_broadcast(&cx_out, &y)?;
            return Ok(vec![TypeShape::dynamic(x.dtype, shape, dynamic)]);
        }
        Ok(vec![TypeShape::new(
            x.dtype,
            broadcast_all(&[c.shape, x.shape, y.shape])?,
        )])
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        true
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let (c, x, y) = (cx.input(0).ok()?, cx.input(1).ok()?, cx.input(2).ok()?);
        let (tc, tx, ty) = (c.constant?, x.constant?, y.constant?);
        let shape = broadcast_all(&[c.shape, x.shape, y.shape]).ok()?;
        let (oc, ox, oy) = (
            broadcast_offsets(c.shape, &shape),
            broadcast_offsets(x.shape, &shape),
            broadcast_offsets(y.shape, &shape),
        );
        let size = x.dtype.size();
        let mut bytes = Vec::with_capacity(oc.len() * size);
        for i in 0..oc.len() {
            let take_x = *tc.bytes.get(oc[i])? != 0;
            let (src, o) = if take_x { (tx, ox[i]) } else { (ty, oy[i]) };
            bytes.extend_from_slice(src.bytes.get(o * size..(o + 1) * size)?);
        }
        Some(Ok(vec![Tensor {
            dtype: x.dtype,
            shape,
            bytes,
        }]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let out = cx.output(0)?;
        if (0..3).any(|i| cx.input(i).is_ok_and(|o| o.is_dynamic())) {
            let (s0, s1, s2) = (
                names.in_shape(cx, 0),
                names.in_shape(cx, 1),
                names.in_shape(cx, 2),
            );
            let rank = lit(out.shape.len());
            let plan = names.check(quote!(::sinter_rt::dynamic::broadcast3::<#rank>(
                &#s0, &#s1, &#s2
            )));
            let t = rust_type(out.dtype);
            let (i0, i1, i2, o0, os0) = (
                names.input(0),
                names.input(1),
                names.input(2),
                names.output(0),
                names.out_shape(0),
            );
            return Ok(quote! {
                let (#os0, st0, st1, st2) = #plan;
                let lens: [usize; 3] = [
                    #s0.iter().product(),
                    #s1.iter().product(),
                    #s2.iter().product(),
                ];
                let n: usize = #os0.iter().product();
                ::sinter_rt::elementwise::zip3(
                    &#i0[..lens[0]], &st0, &#i1[..lens[1]], &st1,
                    &#i2[..lens[2]], &st2, &mut #o0[..n], &#os0,
                    |c: u8, x: #t, y: #t| if c != 0 { x } else { y },
                );
            });
        }
        let st = |i: usize| -> Result<TokenStream> {
            Ok(usize_slice(&broadcast_strides(
                cx.input(i)?.shape,
                out.shape,
            )))
        };
        let (s0, s1, s2) = (st(0)?, st(1)?, st(2)?);
        let shape = usize_slice(out.shape);
        let t = rust_type(out.dtype);
        let (i0, i1, i2, o0) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.output(0),
        );
        Ok(
            quote!(::sinter_rt::elementwise::zip3(#i0, #s0, #i1, #s1, #i2, #s2, #o0, #shape,
            |c: u8, x: #t, y: #t| if c != 0 { x } else { y });),
        )
    }
}

// ---- unary ops ----

/// Which unary op (attributes included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryKind {
    /// `|x|`.
    Abs,
    /// `-x`.
    Neg,
    /// `e^x`.
    Exp,
    /// `ln x`.
    Log,
    /// `sqrt x`.
    Sqrt,
    /// `1 / x`.
    Reciprocal,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
    /// Round half to even.
    Round,
    /// -1, 0 or 1.
    Sign,
    /// The error function.
    Erf,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Tangent.
    Tan,
    /// Arcsine.
    Asin,
    /// Arccosine.
    Acos,
    /// Arctangent.
    Atan,
    /// Hyperbolic sine.
    Sinh,
    /// Hyperbolic cosine.
    Cosh,
    /// Inverse hyperbolic sine.
    Asinh,
    /// Inverse hyperbolic cosine.
    Acosh,
    /// Inverse hyperbolic tangent.
    Atanh,
    /// NaN test (bool output).
    IsNaN,
    /// Infinity test (bool output).
    IsInf {
        /// Report -inf.
        negative: bool,
        /// Report +inf.
        positive: bool,
    },
    /// Logical not (bool).
    Not,
    /// `!x` on integers.
    BitwiseNot,
    /// `max(x, 0)` (NaN stays NaN).
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// `x < 0 ? alpha x : x`.
    LeakyRelu(f32),
    /// `x < 0 ? alpha (e^x - 1) : x`.
    Elu(f32),
    /// `gamma (x <= 0 ? alpha (e^x - 1) : x)`, `(alpha, gamma)`.
    Selu(f32, f32),
    /// `max(0, x) + min(0, alpha (e^(x / alpha) - 1))`.
    Celu(f32),
    /// `x Phi(x)`, exactly (`erf`) or with the tanh approximation.
    Gelu {
        /// `approximate = "tanh"`.
        tanh: bool,
    },
    /// `clamp(alpha x + beta, 0, 1)`, `(alpha, beta)`.
    HardSigmoid(f32, f32),
    /// `x clamp(x / 6 + 1/2, 0, 1)`.
    HardSwish,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `x tanh(softplus(x))`.
    Mish,
    /// `x > alpha ? x : 0`.
    ThresholdedRelu(f32),
    /// `x < -lambd ? x + bias : x > lambd ? x - bias : 0`, `(lambd, bias)`.
    Shrink(f32, f32),
    /// `x sigmoid(alpha x)`.
    Swish(f32),
}

/// The unary ops and activations (see [`UnaryKind`]).
#[derive(Debug, Clone)]
pub struct Unary {
    /// The function.
    pub kind: UnaryKind,
}

impl OpDef for Unary {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        use UnaryKind as K;
        let kind = match node.op_type() {
            "Abs" => K::Abs,
            "Neg" => K::Neg,
            "Exp" => K::Exp,
            "Log" => K::Log,
            "Sqrt" => K::Sqrt,
            "Reciprocal" => K::Reciprocal,
            "Floor" => K::Floor,
            "Ceil" => K::Ceil,
            "Round" => K::Round,
            "Sign" => K::Sign,
            "Erf" => K::Erf,
            "Sin" => K::Sin,
            "Cos" => K::Cos,
            "Tan" => K::Tan,
            "Asin" => K::Asin,
            "Acos" => K::Acos,
            "Atan" => K::Atan,
            "Sinh" => K::Sinh,
            "Cosh" => K::Cosh,
            "Asinh" => K::Asinh,
            "Acosh" => K::Acosh,
            "Atanh" => K::Atanh,
            "IsNaN" => K::IsNaN,
            "IsInf" => K::IsInf {
                negative: node.i64_or("detect_negative", 1)? != 0,
                positive: node.i64_or("detect_positive", 1)? != 0,
            },
            "Not" => K::Not,
            "BitwiseNot" => K::BitwiseNot,
            "Relu" => K::Relu,
            "Sigmoid" => K::Sigmoid,
            "Tanh" => K::Tanh,
            "LeakyRelu" => K::LeakyRelu(node.f32_or("alpha", 0.01)?),
            "Elu" => K::Elu(node.f32_or("alpha", 1.0)?),
            "Selu" => K::Selu(
                node.f32_or("alpha", 1.673_263_2)?,
                node.f32_or("gamma", 1.050_701)?,
            ),
            "Celu" => {
                let alpha = node.f32_or("alpha", 1.0)?;
                if alpha == 0.0 {
                    return Err(CompileError::attribute("alpha", "must not be 0"));
                }
                K::Celu(alpha)
            }
            "Gelu" => K::Gelu {
                tanh: match node.string_or("approximate", "none")?.as_str() {
                    "none" => false,
                    "tanh" => true,
                    a => {
                        return Err(CompileError::attribute(
                            "approximate",
                            format!("must be \"none\" or \"tanh\", found {a:?}"),
                        ))
                    }
                },
            },
            "HardSigmoid" => K::HardSigmoid(node.f32_or("alpha", 0.2)?, node.f32_or("beta", 0.5)?),
            "HardSwish" => K::HardSwish,
            "Softplus" => K::Softplus,
            "Softsign" => K::Softsign,
            "Mish" => K::Mish,
            "ThresholdedRelu" => K::ThresholdedRelu(node.f32_or("alpha", 1.0)?),
            "Shrink" => K::Shrink(node.f32_or("lambd", 0.5)?, node.f32_or("bias", 0.0)?),
            "Swish" => K::Swish(node.f32_or("alpha", 1.0)?),
            other => {
                return Err(CompileError::unsupported(format!(
                    "internal: {other} is not a unary op"
                )))
            }
        };
        Ok(Self { kind })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        use UnaryKind as K;
        let x = cx.input(0)?;
        let allowed: Vec<DType> = match self.kind {
            K::Abs | K::Sign | K::Shrink(..) => numeric(),
            K::Neg | K::Relu => signed_numeric(),
            K::Not => vec![DType::Bool],
            K::BitwiseNot => ints(),
            _ => FLOATS.to_vec(),
        };
        require_dtype(x.dtype, &allowed, "input")?;
        let dtype = match self.kind {
            K::IsNaN | K::IsInf { .. } => DType::Bool,
            _ => x.dtype,
        };
        Ok(vec![TypeShape::dynamic(
            dtype,
            x.shape.to_vec(),
            x.dynamic.to_vec(),
        )])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        use UnaryKind as K;
        let x = cx.input(0).ok()?;
        if matches!(x.dtype, DType::F32 | DType::F64) {
            // Only the operations whose results are exact (or one correctly rounded step) fold:
            // they match the runtime bit for bit.
            let f = |v: f64| -> Option<f64> {
                Some(match self.kind {
                    K::Abs => v.abs(),
                    K::Neg => -v,
                    K::Floor => v.floor(),
                    K::Ceil => v.ceil(),
                    K::Round => v.round_ties_even(),
                    K::Sign => {
                        if v > 0.0 {
                            1.0
                        } else if v < 0.0 {
                            -1.0
                        } else {
                            v
                        }
                    }
                    K::Relu => {
                        if v < 0.0 {
                            0.0
                        } else {
                            v
                        }
                    }
                    K::Reciprocal => round_to(x.dtype, 1.0 / v),
                    K::Sqrt if x.dtype == DType::F32 => round_to(x.dtype, v.sqrt()),
                    _ => return None,
                })
            };
            let values = x.constant?.to_f64s();
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                out.push(f(v)?);
            }
            return Some(Ok(vec![float_result(
                x.dtype,
                x.shape.to_vec(),
                out.into_iter(),
            )]));
        }
        if !foldable_int(x.dtype) {
            return None;
        }
        let values = x.constant?.to_i64s()?;
        let f = |v: i64| -> Option<i64> {
            Some(match self.kind {
                K::Abs => v.wrapping_abs(),
                K::Neg => v.wrapping_neg(),
                K::Sign => v.signum(),
                K::Relu => v.max(0),
                K::Not => i64::from(v == 0),
                K::BitwiseNot => !v,
                _ => return None,
            })
        };
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            out.push(f(v)?);
        }
        Some(Ok(vec![int_tensor(x.dtype, x.shape.to_vec(), &out)]))
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

    fn in_place_input(&self, cx: &OpCx<'_>) -> Option<usize> {
        // Same element type in and out (not IsNaN/IsInf, which make bytes of floats).
        let (x, y) = (cx.input(0).ok()?, cx.output(0).ok()?);
        (x.dtype == y.dtype && x.shape == y.shape).then_some(0)
    }
}

impl Unary {
    /// The code for run-time shapes known at compile time.
    fn emit_static(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        if x.dtype == DType::F32 {
            if let Some(func) = slice_func(self.kind) {
                return Ok(emit_slice_func(&func, x.shape, names));
            }
        }
        let t = rust_type(x.dtype);
        let f = match FloatCx::new(x.dtype) {
            Some(fc) => {
                let ct = fc.ty();
                let dec = fc.decode(quote!(v));
                let body = match self.kind {
                    UnaryKind::IsNaN | UnaryKind::IsInf { .. } => {
                        let test = float_test(self.kind, fc);
                        quote!(u8::from(#test))
                    }
                    _ => fc.encode(float_body(self.kind, fc)),
                };
                quote!(|v: #t| { let x: #ct = #dec; #body })
            }
            None => {
                let body = int_body(self.kind, x.dtype)?;
                quote!(|x: #t| #body)
            }
        };
        let o0 = names.output(0);
        let big = x.shape.iter().product::<usize>() >= PARALLEL_MIN;
        Ok(match (names.in_place == Some(0), big) {
            (true, false) => quote!(::sinter_rt::elementwise::map_in_place(#o0, #f);),
            (true, true) => {
                let exec = names.exec();
                quote!(::sinter_rt::elementwise::map_in_place_exec(#exec, #o0, #f);)
            }
            (false, false) => {
                let i0 = names.input(0);
                quote!(::sinter_rt::elementwise::map(#i0, #o0, #f);)
            }
            (false, true) => {
                let (i0, exec) = (names.input(0), names.exec());
                quote!(::sinter_rt::elementwise::map_exec(#exec, #i0, #o0, #f);)
            }
        })
    }
}

/// The `sinter_rt::math::Func` computing `kind` on f32, for the functions with a slice kernel
/// (bit for bit the per-element `float_body`, sixteen lanes at a time).
fn slice_func(kind: UnaryKind) -> Option<TokenStream> {
    use UnaryKind as K;
    let func = |name: &str| {
        let ident = format_ident!("{}", name);
        quote!(::sinter_rt::math::Func::#ident)
    };
    Some(match kind {
        K::Exp => func("Exp"),
        K::Log => func("Ln"),
        K::Sqrt => func("Sqrt"),
        K::Floor => func("Floor"),
        K::Ceil => func("Ceil"),
        K::Round => func("RoundEven"),
        K::Sigmoid => func("Sigmoid"),
        K::Tanh => func("Tanh"),
        K::Erf => func("Erf"),
        K::Gelu { tanh: false } => func("Gelu"),
        K::Gelu { tanh: true } => func("GeluTanh"),
        K::Softplus => func("Softplus"),
        K::Mish => func("Mish"),
        K::Swish(alpha) => {
            let alpha = f32_lit(alpha);
            quote!(::sinter_rt::math::Func::Swish(#alpha))
        }
        _ => return None,
    })
}

/// Applies a slice kernel from input 0 to output 0 (or in place), split across threads when
/// the tensor is big.
fn emit_slice_func(func: &TokenStream, shape: &[usize], names: &mut EmitNames) -> TokenStream {
    let o0 = names.output(0);
    let big = shape.iter().product::<usize>() >= PARALLEL_MIN;
    match (names.in_place == Some(0), big) {
        (true, false) => quote!(#func.map_slice_in_place(#o0);),
        (true, true) => {
            let exec = names.exec();
            quote!(#func.map_slice_in_place_exec(#exec, #o0);)
        }
        (false, false) => {
            let i0 = names.input(0);
            quote!(#func.map_slice(#i0, #o0);)
        }
        (false, true) => {
            let (i0, exec) = (names.input(0), names.exec());
            quote!(#func.map_slice_exec(#exec, #i0, #o0);)
        }
    }
}

/// Elements from which elementwise kernels take the executor (and may split across threads).
const PARALLEL_MIN: usize = 1 << 16;

/// `SwiGLU` (opset 28): `Y = Swish_alpha(A) * B`, `A` and `B` of one type and shape (no
/// broadcasting). For the 16-bit floats the gate is rounded to the storage type before the
/// product, as the reference (and the op's expansion, `Swish` then `Mul`) rounds it.
#[derive(Debug, Clone)]
pub struct SwiGlu {
    /// The Swish gate's `alpha`: `Swish_alpha(a) = a * sigmoid(alpha * a)`.
    pub alpha: f32,
}

impl OpDef for SwiGlu {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            alpha: node.f32_or("alpha", 1.0)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        require_dtype(a.dtype, FLOATS, "A")?;
        if a.dtype != b.dtype || a.shape != b.shape {
            return Err(CompileError::shape(format!(
                "A and B must have one type and shape, found {}{:?} and {}{:?}",
                a.dtype, a.shape, b.dtype, b.shape
            )));
        }
        Ok(vec![TypeShape::new(a.dtype, a.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let a = cx.input(0)?;
        if a.dtype == DType::F32 {
            // The gate by the Swish slice kernel into the output, then the product in place.
            let alpha = f32_lit(self.alpha);
            let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
            return Ok(quote! {
                ::sinter_rt::math::Func::Swish(#alpha).map_slice(#i0, #o0);
                ::sinter_rt::elementwise::zip_assign(#o0, &[], #i1, &[], |g: f32, b: f32| g * b);
            });
        }
        let fc = FloatCx::new(a.dtype)
            .ok_or_else(|| CompileError::unsupported(format!("SwiGLU on {}", a.dtype)))?;
        let (t, ct) = (rust_type(a.dtype), fc.ty());
        let gate = fc.encode(float_body(UnaryKind::Swish(self.alpha), fc));
        let (x, g, y) = (
            fc.decode(quote!(a)),
            fc.decode(quote!(g)),
            fc.decode(quote!(b)),
        );
        let product = fc.encode(quote!(#g * #y));
        let f = quote!(|a: #t, b: #t| { let x: #ct = #x; let g: #t = #gate; #product });
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        Ok(quote!(::sinter_rt::elementwise::zip(#i0, &[], #i1, &[], #o0, &[], #f);))
    }
}

/// The bool-valued float tests.
fn float_test(kind: UnaryKind, fc: FloatCx) -> TokenStream {
    let ct = fc.ty();
    match kind {
        UnaryKind::IsInf { negative, positive } => match (negative, positive) {
            (true, true) => quote!(x.is_infinite()),
            (true, false) => quote!(x == #ct::NEG_INFINITY),
            (false, true) => quote!(x == #ct::INFINITY),
            (false, false) => quote!({
                let _ = x;
                false
            }),
        },
        _ => quote!(x.is_nan()),
    }
}

/// The float expression for `kind` in terms of `x` (of the compute type).
fn float_body(kind: UnaryKind, fc: FloatCx) -> TokenStream {
    use UnaryKind as K;
    let m = |name: &str| fc.math(name);
    let l = |v: f32| fc.lit(f64::from(v));
    let (zero, one) = (fc.lit(0.0), fc.lit(1.0));
    let call = |name: &str| {
        let f = m(name);
        quote!(#f(x))
    };
    match kind {
        K::Abs => quote!(x.abs()),
        K::Neg => quote!(-x),
        K::Exp => call("exp"),
        K::Log => call("ln"),
        K::Sqrt => call("sqrt"),
        K::Reciprocal => quote!(#one / x),
        K::Floor => call("floor"),
        K::Ceil => call("ceil"),
        K::Round => call("round_even"),
        K::Sign => quote!(if x > #zero { #one } else if x < #zero { -#one } else { x }),
        K::Erf => call("erf"),
        K::Sin => call("sin"),
        K::Cos => call("cos"),
        K::Tan => call("tan"),
        K::Asin => call("asin"),
        K::Acos => call("acos"),
        K::Atan => call("atan"),
        K::Sinh => call("sinh"),
        K::Cosh => call("cosh"),
        K::Asinh => call("asinh"),
        K::Acosh => call("acosh"),
        K::Atanh => call("atanh"),
        K::Relu => quote!(if x < #zero { #zero } else { x }),
        K::Sigmoid => call("sigmoid"),
        K::Tanh => call("tanh"),
        K::LeakyRelu(a) => {
            let a = l(a);
            quote!(if x < #zero { #a * x } else { x })
        }
        K::Elu(a) => {
            let (a, expm1) = (l(a), m("expm1"));
            quote!(if x < #zero { #a * #expm1(x) } else { x })
        }
        K::Selu(a, g) => {
            let (a, g, expm1) = (l(a), l(g), m("expm1"));
            quote!(if x <= #zero { #g * (#a * #expm1(x)) } else { #g * x })
        }
        K::Celu(a) => {
            let (a, expm1) = (l(a), m("expm1"));
            quote!(if x > #zero { x } else { #a * #expm1(x / #a) })
        }
        K::Gelu { tanh: false } => {
            let (erf, half, r2) = (
                m("erf"),
                fc.lit(0.5),
                fc.lit(std::f64::consts::FRAC_1_SQRT_2),
            );
            quote!(#half * x * (#one + #erf(x * #r2)))
        }
        K::Gelu { tanh: true } => {
            let (tanh, half) = (m("tanh"), fc.lit(0.5));
            let c = fc.lit((2.0 / std::f64::consts::PI).sqrt());
            let k = fc.lit(0.044_715);
            quote!(#half * x * (#one + #tanh(#c * (x + #k * x * x * x))))
        }
        K::HardSigmoid(a, b) => {
            let (a, b) = (l(a), l(b));
            quote!({ let v = #a * x + #b; if v < #zero { #zero } else if v > #one { #one } else { v } })
        }
        K::HardSwish => {
            let (a, b) = (fc.lit(1.0 / 6.0), fc.lit(0.5));
            quote!({ let v = #a * x + #b; x * if v < #zero { #zero } else if v > #one { #one } else { v } })
        }
        K::Softplus => call("softplus"),
        K::Softsign => quote!(x / (#one + x.abs())),
        K::Mish => {
            let (tanh, sp) = (m("tanh"), m("softplus"));
            quote!(x * #tanh(#sp(x)))
        }
        K::ThresholdedRelu(a) => {
            let a = l(a);
            quote!(if x > #a { x } else { #zero })
        }
        K::Shrink(lambd, bias) => {
            let (lambd, bias) = (l(lambd), l(bias));
            quote!(if x < -#lambd { x + #bias } else if x > #lambd { x - #bias } else { #zero })
        }
        K::Swish(a) => {
            let (a, sig) = (l(a), m("sigmoid"));
            quote!(x * #sig(#a * x))
        }
        // Not, BitwiseNot, IsNaN, IsInf never reach here (checked in infer / emit).
        K::Not | K::BitwiseNot | K::IsNaN | K::IsInf { .. } => quote!(x),
    }
}

/// The integer (or bool) expression for `kind` in terms of `x`.
fn int_body(kind: UnaryKind, dtype: DType) -> Result<TokenStream> {
    use UnaryKind as K;
    let signed = is_signed(dtype);
    Ok(match kind {
        K::Abs if signed => quote!(x.wrapping_abs()),
        K::Abs => quote!(x),
        K::Neg => quote!(x.wrapping_neg()),
        K::Sign if signed => quote!(x.signum()),
        K::Sign => quote!(if x > 0 { 1 } else { 0 }),
        K::Relu => quote!(if x < 0 { 0 } else { x }),
        K::Not => quote!(u8::from(x == 0)),
        K::BitwiseNot => quote!(!x),
        K::Shrink(lambd, bias) => {
            // As the reference: computed in f64 (the attributes are floats), then truncated
            // back to the integer type.
            let (lambd, bias) = (
                Literal::f64_suffixed(f64::from(lambd)),
                Literal::f64_suffixed(f64::from(bias)),
            );
            let t = rust_type(dtype);
            quote!({
                let v = x as f64;
                (if v < -#lambd { v + #bias } else if v > #lambd { v - #bias } else { 0.0 }) as i64 as #t
            })
        }
        k => return Err(CompileError::unsupported(format!("{k:?} of type {dtype}"))),
    })
}

// ---- Clip ----

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
        if self.attr_bounds.is_some() {
            require_dtype(x.dtype, FLOATS, "input")?;
        } else {
            require_dtype(x.dtype, &numeric(), "input")?;
        }
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
        Ok(vec![TypeShape::dynamic(
            x.dtype,
            x.shape.to_vec(),
            x.dynamic.to_vec(),
        )])
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        // The bounds are scalars.
        cx.inputs.iter().skip(1).flatten().all(|o| !o.is_dynamic())
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?;
        let bound = |i: usize| -> Option<Option<f64>> {
            match cx.opt_input(i) {
                None => Some(None),
                Some(b) => Some(Some(*b.constant?.to_f64s().first()?)),
            }
        };
        let shape = x.shape.to_vec();
        if foldable_int(x.dtype) && x.dtype != DType::Bool {
            let int_bound = |i: usize| -> Option<Option<i64>> {
                match cx.opt_input(i) {
                    None => Some(None),
                    Some(b) => Some(Some(*b.constant?.to_i64s()?.first()?)),
                }
            };
            let (lo, hi) = (int_bound(1)?, int_bound(2)?);
            let v: Vec<i64> = x
                .constant?
                .to_i64s()?
                .into_iter()
                .map(|v| {
                    let m = lo.map_or(v, |lo| v.max(lo));
                    hi.map_or(m, |hi| m.min(hi))
                })
                .collect();
            return Some(Ok(vec![int_tensor(x.dtype, shape, &v)]));
        }
        if !matches!(x.dtype, DType::F32 | DType::F64) {
            return None;
        }
        let (lo, hi) = match self.attr_bounds {
            Some((lo, hi)) => (Some(f64::from(lo)), Some(f64::from(hi))),
            None => (bound(1)?, bound(2)?),
        };
        let v: Vec<f64> = x
            .constant?
            .to_f64s()
            .into_iter()
            .map(|v| {
                let m = match lo {
                    Some(lo) if v < lo => lo,
                    _ => v,
                };
                match hi {
                    Some(hi) if m > hi => hi,
                    _ => m,
                }
            })
            .collect();
        Some(Ok(vec![float_result(x.dtype, shape, v.into_iter())]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let t = rust_type(x.dtype);
        let fc = FloatCx::new(x.dtype);
        let ct = fc.map_or_else(|| t.clone(), FloatCx::ty);
        let mut bound = |i: usize, low: bool| -> TokenStream {
            match (self.attr_bounds, cx.opt_input(i), fc) {
                (Some((lo, hi)), _, Some(fc)) => fc.lit(f64::from(if low { lo } else { hi })),
                (None, Some(_), _) => {
                    let ident = names.input(i);
                    match fc {
                        Some(fc) => fc.decode(quote!(#ident[0])),
                        None => quote!(#ident[0]),
                    }
                }
                (_, _, Some(fc)) => fc.lit(if low {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }),
                (_, _, None) => {
                    if low {
                        quote!(#t::MIN)
                    } else {
                        quote!(#t::MAX)
                    }
                }
            }
        };
        let lo = bound(1, true);
        let hi = bound(2, false);
        let (dec, enc) = match fc {
            Some(fc) => (fc.decode(quote!(v)), fc.encode(quote!(r))),
            None => (quote!(v), quote!(r)),
        };
        let (i0, o0) = (names.input(0), names.output(0));
        let body = quote! {
            let (lo, hi): (#ct, #ct) = (#lo, #hi);
            // min(max(x, lo), hi): when lo > hi every element becomes hi, as the spec says.
            ::sinter_rt::elementwise::map(#i0, #o0, |v: #t| {
                let x: #ct = #dec;
                let m = if x < lo { lo } else { x };
                let r = if m > hi { hi } else { m };
                #enc
            });
        };
        Ok(if x.is_dynamic() {
            super::emit_elementwise_dynamic(cx, names, body)
        } else {
            body
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Node;
    use crate::onnx::proto::AttributeProto;
    use crate::ops::{parse, Operand};

    const ALL_TYPES: &[DType] = &[
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
        DType::Bool,
    ];

    /// Emits `op_type` for every input type its inference accepts and checks that the code
    /// parses; returns how many type combinations were accepted.
    fn emit_all(op_type: &str, n_inputs: usize, mixed: bool) -> usize {
        let mut attributes = Vec::new();
        if op_type == "BitShift" {
            attributes.push(AttributeProto {
                name: Some("direction".into()),
                s: Some(b"LEFT".to_vec()),
                ..Default::default()
            });
        }
        let node = Node {
            name: String::new(),
            op_type: op_type.into(),
            domain: String::new(),
            opset: 21,
            inputs: vec![None; n_inputs],
            outputs: Vec::new(),
            attributes,
            op: None,
            guards: Vec::new(),
        };
        let Some(Ok(op)) = parse(&NodeCx { node: &node }) else {
            panic!("{op_type} does not parse");
        };
        let mut accepted = 0;
        for &first in ALL_TYPES {
            for &other in ALL_TYPES {
                if !mixed && other != first {
                    continue;
                }
                let shapes: [&[usize]; 3] = [&[2, 3], &[3], &[2, 1]];
                let inputs: Vec<Option<Operand<'_>>> = (0..n_inputs)
                    .map(|i| {
                        let dtype = match (op_type, i) {
                            ("Where", 0) => DType::Bool,
                            (_, 0) => first,
                            _ => other,
                        };
                        Some(Operand {
                            range: None,
                            syms: &[],
                            dynamic: &[],
                            dtype,
                            shape: shapes[i],
                            constant: None,
                        })
                    })
                    .collect();
                let mut cx = OpCx {
                    inputs,
                    outputs: Vec::new(),
                };
                let Ok(out) = op.infer(&cx) else { continue };
                accepted += 1;
                let out_shape = out[0].shape.clone();
                cx.outputs = vec![Some(Operand {
                    range: None,
                    syms: &[],
                    dynamic: &[],
                    dtype: out[0].dtype,
                    shape: &out_shape,
                    constant: None,
                })];
                let code = op
                    .emit(&cx, &mut EmitNames::default())
                    .unwrap_or_else(|e| panic!("{op_type} {first}/{other}: {e}"));
                syn::parse2::<syn::Block>(quote!({ #code }))
                    .unwrap_or_else(|e| panic!("{op_type} {first}/{other}: {e}\n{code}"));
            }
        }
        accepted
    }

    #[test]
    fn every_accepted_type_emits_parseable_code() {
        for op in [
            "Abs",
            "Neg",
            "Exp",
            "Log",
            "Sqrt",
            "Reciprocal",
            "Floor",
            "Ceil",
            "Round",
            "Sign",
            "Erf",
            "Sin",
            "Acosh",
            "IsNaN",
            "IsInf",
            "Not",
            "BitwiseNot",
            "Relu",
            "Sigmoid",
            "LeakyRelu",
            "Elu",
            "Selu",
            "Celu",
            "Gelu",
            "HardSigmoid",
            "HardSwish",
            "Softplus",
            "Softsign",
            "Mish",
            "ThresholdedRelu",
            "Shrink",
            "Swish",
            "Clip",
        ] {
            assert!(emit_all(op, 1, false) > 0, "{op}");
        }
        for op in [
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Mod",
            "BitShift",
            "BitwiseAnd",
            "And",
            "Or",
            "Xor",
            "Equal",
            "Less",
            "GreaterOrEqual",
            "PRelu",
        ] {
            assert!(emit_all(op, 2, false) > 0, "{op}");
        }
        // Pow takes any numeric exponent type.
        assert_eq!(emit_all("Pow", 2, true), 12 * 12);
        for op in ["Min", "Max", "Sum", "Mean"] {
            assert!(emit_all(op, 3, false) > 0, "{op}");
        }
        assert_eq!(emit_all("Where", 3, false), ALL_TYPES.len());
    }

    /// The `sinter_rt::math` functions that `code` calls by name with arguments: per-element
    /// scalar math (the slice kernels are methods of `sinter_rt::math::Func`, capitalized).
    fn scalar_math_calls(code: &TokenStream) -> Vec<String> {
        let text = code.to_string();
        text.match_indices("sinter_rt :: math ::")
            .filter_map(|(at, pattern)| {
                let name: String = text[at + pattern.len()..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                name.starts_with(|c: char| c.is_lowercase()).then_some(name)
            })
            .collect()
    }

    /// f32 ops that may still compute each element with a scalar `sinter_rt::math` call, and
    /// why.
    const SCALAR_MATH_EXCEPTIONS: &[(&str, &str)] = &[
        ("Sin", "f64 kernel rounded to f32; rare on big tensors"),
        ("Cos", "f64 kernel rounded to f32; rare on big tensors"),
        ("Tan", "f64 kernel rounded to f32; rare on big tensors"),
        ("Asin", "f64 kernel rounded to f32; rare on big tensors"),
        ("Acos", "f64 kernel rounded to f32; rare on big tensors"),
        ("Atan", "f64 kernel rounded to f32; rare on big tensors"),
        ("Sinh", "f64 kernel rounded to f32; rare on big tensors"),
        ("Cosh", "f64 kernel rounded to f32; rare on big tensors"),
        ("Asinh", "f64 kernel rounded to f32; rare on big tensors"),
        ("Acosh", "f64 kernel rounded to f32; rare on big tensors"),
        ("Atanh", "f64 kernel rounded to f32; rare on big tensors"),
        (
            "Elu",
            "expm1 in f64, for accuracy near 0; FIXME: an f32 vector expm1",
        ),
        (
            "Selu",
            "expm1 in f64, for accuracy near 0; FIXME: an f32 vector expm1",
        ),
        (
            "Celu",
            "expm1 in f64, for accuracy near 0; FIXME: an f32 vector expm1",
        ),
        (
            "Pow",
            "x^y in f64 (exp(y ln x) in f32 loses digits when y ln x is big); x^2 is x * x",
        ),
        (
            "Mod",
            "numpy's remainder: a float remainder has no vector instruction",
        ),
    ];

    #[test]
    fn no_f32_op_on_a_big_tensor_is_a_scalar_math_loop() {
        // Every op of the table, given one to three f32 inputs of 8192 elements and default
        // attributes; whatever infers and emits must not call scalar math per element, except
        // the listed ops.
        let shape: &[usize] = &[1, 8, 32, 32];
        let mut flagged = std::collections::BTreeSet::new();
        let mut vectorized = Vec::new();
        for &op_type in crate::ops::SUPPORTED {
            for n_inputs in 1..=3 {
                let node = Node {
                    name: String::new(),
                    op_type: op_type.into(),
                    domain: String::new(),
                    opset: 21,
                    inputs: vec![None; n_inputs],
                    outputs: Vec::new(),
                    attributes: Vec::new(),
                    op: None,
                    guards: Vec::new(),
                };
                let Some(Ok(op)) = parse(&NodeCx { node: &node }) else {
                    continue;
                };
                let inputs = (0..n_inputs)
                    .map(|_| {
                        Some(Operand {
                            range: None,
                            syms: &[],
                            dynamic: &[],
                            dtype: DType::F32,
                            shape,
                            constant: None,
                        })
                    })
                    .collect();
                let mut cx = OpCx {
                    inputs,
                    outputs: Vec::new(),
                };
                let Ok(outs) = op.infer(&cx) else { continue };
                if outs.iter().any(|o| o.dtype != DType::F32) {
                    continue;
                }
                let out_shapes: Vec<Vec<usize>> = outs.iter().map(|o| o.shape.clone()).collect();
                cx.outputs = out_shapes
                    .iter()
                    .map(|s| {
                        Some(Operand {
                            range: None,
                            syms: &[],
                            dynamic: &[],
                            dtype: DType::F32,
                            shape: s,
                            constant: None,
                        })
                    })
                    .collect();
                let Ok(code) = op.emit(&cx, &mut EmitNames::default()) else {
                    continue;
                };
                let calls = scalar_math_calls(&code);
                if calls.is_empty() {
                    vectorized.push(op_type);
                } else {
                    assert!(
                        SCALAR_MATH_EXCEPTIONS.iter().any(|(op, _)| *op == op_type),
                        "{op_type} on f32 {shape:?} calls scalar math per element ({calls:?}):\n{code}"
                    );
                    flagged.insert(op_type);
                }
            }
        }
        // The list stays honest: each exception is still an exception.
        for (op, why) in SCALAR_MATH_EXCEPTIONS {
            assert!(
                flagged.contains(op),
                "{op} is listed ({why}) but no longer scalar"
            );
        }
        for op in [
            "Exp",
            "Log",
            "Sqrt",
            "Sigmoid",
            "Tanh",
            "Erf",
            "Gelu",
            "Softplus",
            "Swish",
            "Mish",
            "Softmax",
            "LogSoftmax",
            "SwiGLU",
        ] {
            assert!(vectorized.contains(&op), "{op} was not checked");
        }
    }

    #[test]
    fn transcendental_f32_ops_call_slice_kernels() {
        let emit = |op_type: &str, in_place: bool, len: usize| {
            let node = Node {
                name: String::new(),
                op_type: op_type.into(),
                domain: String::new(),
                opset: 21,
                inputs: vec![None],
                outputs: Vec::new(),
                attributes: Vec::new(),
                op: None,
                guards: Vec::new(),
            };
            let Some(Ok(op)) = parse(&NodeCx { node: &node }) else {
                panic!("{op_type} does not parse");
            };
            let shape = [len];
            let operand = || {
                Some(Operand {
                    range: None,
                    syms: &[],
                    dynamic: &[],
                    dtype: DType::F32,
                    shape: &shape,
                    constant: None,
                })
            };
            let cx = OpCx {
                inputs: vec![operand()],
                outputs: vec![operand()],
            };
            let mut names = EmitNames {
                in_place: in_place.then_some(0),
                ..EmitNames::default()
            };
            op.emit(&cx, &mut names).expect("emits").to_string()
        };
        insta::assert_snapshot!(
            [
                emit("Gelu", false, 100),
                emit("Swish", true, 100),
                emit("Erf", false, 1 << 16),
                emit("Sigmoid", true, 1 << 16),
            ]
            .join("\n"),
            @r"
        :: sinter_rt :: math :: Func :: Gelu . map_slice (i0 , o0) ;
        :: sinter_rt :: math :: Func :: Swish (1f32) . map_slice_in_place (o0) ;
        :: sinter_rt :: math :: Func :: Erf . map_slice_exec (exec , i0 , o0) ;
        :: sinter_rt :: math :: Func :: Sigmoid . map_slice_in_place_exec (exec , o0) ;
        "
        );
    }

    #[test]
    fn int_folding_wraps_like_the_runtime() {
        let shift = Binary {
            kind: BinaryKind::BitShift { left: false },
            legacy_axis: None,
        };
        assert_eq!(shift.apply_int(DType::I8, -8, 9), Some(-1));
        assert_eq!(shift.apply_int(DType::I8, -8, -1), Some(-1));
        let modulo = Binary {
            kind: BinaryKind::Mod { fmod: false },
            legacy_axis: Some(1),
        };
        assert_eq!(modulo.b_shape(&[2, 3, 4], &[3]).ok(), Some(vec![1, 3, 1]));
        assert!(modulo.b_shape(&[2, 3], &[3, 4]).is_err());
        assert_eq!(modulo.apply_int(DType::I32, 7, -3), Some(-2));
        assert_eq!(modulo.apply_int(DType::I32, -7, 3), Some(2));
        let t = int_tensor(DType::I8, vec![2], &[128, -129]);
        assert_eq!(t.to_i64s(), Some(vec![-128, 127]));
        assert_eq!(ipow(3, 4), 81);
        assert_eq!(broadcast_offsets(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
    }
}
