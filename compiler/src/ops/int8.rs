//! `sinter::Int8Product`: the internal op every 8-bit product and convolution with constant
//! weights is lowered to (`passes::lower_int8`), run by `sinter_rt::int8`'s VNNI / AVX2 /
//! portable kernels. It is never read from a model file.
//!
//! Inputs, by position (absent ones are `None`):
//! 0. `A`: the activations, `uint8`/`int8`, or `float32` when quantized at run time
//!    ([`Int8Product::dynamic`], ONNX `DynamicQuantizeLinear`'s formula, into scratch);
//! 1. `A`'s zero point at run time (a one-element tensor), else [`Int8Product::a_zero`];
//! 2. `A`'s scale at run time (`float32` output only), else [`Int8Product::a_scale`];
//! 3. the weights, signed and packed (`sinter_rt::int8::pack`);
//! 4. per output channel, the sum of its signed weights (`int32`);
//! 5. the weights' zero point in the signed domain, one or one per channel (`int32`);
//! 6. per output channel (or one): the weights' scale (`float32` output) or the requantizing
//!    multiplier `a_scale * w_scale / y_scale` (`uint8`/`int8` output);
//! 7. per output channel, the bias: `float32` (added after scaling) or `int32` (before);
//! 8. a residual added to a `float32` output before its activations.
//!
//! Products fold every leading dimension of `A` into rows: `[..., m, k] x [k, n]`.
//!
//! Also the `com.microsoft` products ONNX Runtime's quantizer and its load-time fusions write
//! (semantics from ORT's `docs/ContribOperators.md` and CPU kernels): `QGemm`,
//! `DynamicQuantizeMatMul` and `MatMulIntegerToFloat`. They have no kernel of their own:
//! `lower_int8` turns them into `Int8Product` at every optimization level, and they are
//! supported when their weights and weight scales are constants (inference says so when not).

use proc_macro2::TokenStream;
use quote::quote;

use super::conv::Conv;
use super::{f32_lit, lit, EmitNames, FusedAct, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// The geometry of the product.
#[derive(Debug, Clone)]
pub enum Int8Shape {
    /// `A: [..., m, k]` times the `[k, n]` weights.
    MatMul {
        /// Depth.
        k: usize,
        /// Output columns (channels).
        n: usize,
    },
    /// A convolution; its `packed_from` holds the weights' ONNX shape.
    Conv(Conv),
    /// A dense convolution in the channels-last layout (`A: [N, *spatial, C]`, output
    /// `[N, *spatial, M]`), its weights packed as `C * kernel x M` column panels with the
    /// depth running over the taps, then the channels (`sinter_rt::int8::conv_nhwc_exec`).
    ConvChannelsLast(Conv),
    /// [`Int8Shape::ConvChannelsLast`] reading a channels-first input (`A: [N, C,
    /// *spatial]`, a network's first layer): its padded copy is transposed as it is made
    /// (`sinter_rt::int8::conv_nhwc_from_nchw_exec`).
    ConvFromChannelsFirst(Conv),
    /// A depthwise convolution in the channels-last layout, its weights packed as
    /// `[kernel, Cp]` rows of channels (`Cp` rounded up to 16;
    /// `sinter_rt::int8::depthwise_nhwc_exec`).
    DepthwiseChannelsLast(Conv),
}

/// `[N, *spatial, C]` as `[N, C, *spatial]`.
pub fn channels_first(shape: &[usize]) -> Vec<usize> {
    match shape.split_last() {
        Some((&c, lead)) if !lead.is_empty() => {
            let mut out = vec![lead[0], c];
            out.extend(&lead[1..]);
            out
        }
        _ => shape.to_vec(),
    }
}

/// What the product's `i32` sums become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Out {
    /// The sums themselves (MatMulInteger, ConvInteger).
    I32,
    /// Dequantized (`sum * a_scale * w_scale + bias`, then residual and activations).
    F32,
    /// Requantized to `uint8` with this zero point.
    U8(i32),
    /// Requantized to `int8` with this zero point.
    I8(i32),
    /// Dequantized as [`Int8Out::F32`] (bias, residual, activations), then quantized to
    /// `uint8` with this zero point and the scale input 9 holds: for activations the
    /// requantizing clamp cannot compute.
    U8Float(i32),
}

impl Int8Out {
    /// The output's element type.
    pub fn dtype(self) -> DType {
        match self {
            Int8Out::I32 => DType::I32,
            Int8Out::F32 => DType::F32,
            Int8Out::U8(_) | Int8Out::U8Float(_) => DType::U8,
            Int8Out::I8(_) => DType::I8,
        }
    }
}

/// An 8-bit product with constant, packed weights.
#[derive(Debug, Clone)]
pub struct Int8Product {
    /// Product or convolution.
    pub shape: Int8Shape,
    /// The output conversion.
    pub out: Int8Out,
    /// `A` is `float32`, quantized to `uint8` at run time (per tensor, asymmetric).
    pub dynamic: bool,
    /// `A`'s zero point when input 1 is absent.
    pub a_zero: i32,
    /// `A`'s scale when input 2 is absent (and `A` is not dynamic).
    pub a_scale: f32,
    /// Activations applied to a `float32` output, in order.
    pub activations: Vec<FusedAct>,
}

impl Int8Product {
    /// The output shape for `A`'s shape.
    fn out_shape(&self, cx: &OpCx<'_>) -> Result<Vec<usize>> {
        let a = cx.input(0)?;
        match &self.shape {
            Int8Shape::MatMul { k, n } => {
                let Some((&last, lead)) = a.shape.split_last() else {
                    return Err(CompileError::shape("A must have at least one dimension"));
                };
                if last != *k {
                    return Err(CompileError::shape(format!(
                        "A's last dimension {last} differs from the weights' depth {k}"
                    )));
                }
                let mut shape = lead.to_vec();
                shape.push(*n);
                Ok(shape)
            }
            Int8Shape::Conv(conv) => {
                let w = conv.weight_shape(cx)?;
                let g = conv.geometry(cx)?;
                let mut shape = vec![a.shape[0], w[0]];
                shape.extend(&g.output);
                Ok(shape)
            }
            Int8Shape::ConvChannelsLast(conv)
            | Int8Shape::DepthwiseChannelsLast(conv)
            | Int8Shape::ConvFromChannelsFirst(conv) => {
                let w = conv.weight_shape(cx)?;
                let first = match &self.shape {
                    Int8Shape::ConvFromChannelsFirst(_) => a.shape.to_vec(),
                    _ => channels_first(a.shape),
                };
                let g = conv.geometry_of(&first, cx)?;
                let mut shape = vec![a.shape[0]];
                shape.extend(&g.output);
                shape.push(w[0]);
                Ok(shape)
            }
        }
    }
}

impl Int8Product {
    /// Bytes of the zero-padded input copy a convolution packs from
    /// (`sinter_rt::int8::padded_len`, the same formula): 0 for products and convolutions
    /// that read their input in place.
    fn padded_len(&self, cx: &OpCx<'_>) -> Result<usize> {
        let (conv, last, depthwise) = match &self.shape {
            Int8Shape::MatMul { .. } => return Ok(0),
            Int8Shape::Conv(conv) => (conv, false, false),
            Int8Shape::ConvChannelsLast(conv) | Int8Shape::ConvFromChannelsFirst(conv) => {
                (conv, true, false)
            }
            Int8Shape::DepthwiseChannelsLast(conv) => (conv, true, true),
        };
        let from_first = matches!(self.shape, Int8Shape::ConvFromChannelsFirst(_));
        let x = cx.input(0)?;
        let w = conv.weight_shape(cx)?;
        // Right-aligned in three axes, as `ConvParams` holds them.
        let three = |v: &[usize], fill: usize| -> [usize; 3] {
            let lead = 3usize.saturating_sub(v.len());
            core::array::from_fn(|i| if i < lead { fill } else { v[i - lead] })
        };
        if last {
            let shape = if from_first {
                x.shape.to_vec()
            } else {
                channels_first(x.shape)
            };
            let g = conv.geometry_of(&shape, cx)?;
            return Ok(crate::ir::int8_pack::channels_last_padded_len(
                shape[0],
                shape[1],
                depthwise,
                // A channels-first input is always copied.
                x.dtype == DType::U8 && !from_first,
                three(&shape[2..], 1),
                three(&g.output, 1),
                three(&g.kernel, 1),
                three(&g.strides, 1),
                three(&g.dilations, 1),
                three(&g.pads_begin, 0),
            ));
        }
        let g = conv.geometry(cx)?;
        let (cin, cout) = (x.shape[1], w[0]);
        let depthwise = conv.group == cin && conv.group == cout;
        Ok(crate::ir::int8_pack::padded_conv_input_len(
            x.shape[0],
            cin,
            depthwise,
            three(&x.shape[2..], 1),
            three(&g.output, 1),
            three(&g.kernel, 1),
            three(&g.strides, 1),
            three(&g.dilations, 1),
            three(&g.pads_begin, 0),
        ))
    }
}

impl OpDef for Int8Product {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        super::internal_op(node)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        require_activations(cx, self.dynamic)?;
        Ok(vec![TypeShape::new(self.out.dtype(), self.out_shape(cx)?)])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let a = cx.input(0).ok()?;
        let quantized = if self.dynamic {
            a.shape.iter().product()
        } else {
            0
        };
        let len = quantized + self.padded_len(cx).ok()?;
        (len > 0).then(|| TypeShape::new(DType::U8, vec![len]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let a = cx.input(0)?;
        let i0 = names.input(0);
        let mut code = TokenStream::new();
        // Scratch: the quantized input (dynamic), then the padded input (convolutions).
        let padded = self.padded_len(cx)?;
        let conv = !matches!(self.shape, Int8Shape::MatMul { .. });
        let quantized = lit(if self.dynamic {
            a.shape.iter().product()
        } else {
            0
        });
        if self.dynamic || padded > 0 {
            let scratch = names.scratch();
            code.extend(match (self.dynamic, conv) {
                (true, true) => {
                    quote!(let (quantized, padded) = #scratch.split_at_mut(#quantized);)
                }
                (true, false) => quote!(let quantized = &mut #scratch[..];),
                (false, _) => quote!(let padded = &mut #scratch[..];),
            });
        }
        if conv && padded == 0 && !self.dynamic {
            code.extend(quote!(let padded: &mut [u8] = &mut [];));
        }
        let a_bytes = if self.dynamic {
            code.extend(quote! {
                let (a_scale, a_zero) = ::sinter_rt::int8::quantize_dynamic(#i0, quantized);
            });
            quote!(::sinter_rt::int8::Bytes::U8(quantized))
        } else {
            let zero = match cx.opt_input(1) {
                Some(_) => {
                    let z = names.input(1);
                    quote!(i32::from(#z[0]))
                }
                None => {
                    let z = self.a_zero;
                    quote!(#z)
                }
            };
            let scale = match cx.opt_input(2) {
                Some(_) => {
                    let s = names.input(2);
                    quote!(#s[0])
                }
                None => f32_lit(self.a_scale),
            };
            code.extend(quote! { let (a_scale, a_zero): (f32, i32) = (#scale, #zero); });
            if a.dtype == DType::I8 {
                quote!(::sinter_rt::int8::Bytes::I8(#i0))
            } else {
                quote!(::sinter_rt::int8::Bytes::U8(#i0))
            }
        };
        let (i3, i4, i5) = (names.input(3), names.input(4), names.input(5));
        let o0 = names.output(0);
        let output = match self.out {
            Int8Out::I32 => quote!(::sinter_rt::int8::Output::I32(#o0)),
            Int8Out::F32 => {
                let i6 = names.input(6);
                let bias = names.opt_input(cx, 7);
                let residual = names.opt_input(cx, 8);
                let acts = self.activations.iter().map(|a| a.tokens());
                quote! {
                    ::sinter_rt::int8::Output::F32(#o0, ::sinter_rt::int8::Dequant {
                        scale: a_scale, channel_scale: #i6, bias: #bias, residual: #residual,
                        acts: &[#(#acts),*],
                    })
                }
            }
            Int8Out::U8Float(zero) => {
                let i6 = names.input(6);
                let bias = names.opt_input(cx, 7);
                let residual = names.opt_input(cx, 8);
                let y_scale = names.input(9);
                let acts = self.activations.iter().map(|a| a.tokens());
                quote! {
                    ::sinter_rt::int8::Output::U8Float(#o0, ::sinter_rt::int8::Dequant {
                        scale: a_scale, channel_scale: #i6, bias: #bias, residual: #residual,
                        acts: &[#(#acts),*],
                    }, ::sinter_rt::int8::Quant { scale: #y_scale[0], zero: #zero })
                }
            }
            Int8Out::U8(zero) | Int8Out::I8(zero) => {
                let i6 = names.input(6);
                let bias = names.opt_input(cx, 7);
                let variant = if matches!(self.out, Int8Out::U8(_)) {
                    quote!(U8)
                } else {
                    quote!(I8)
                };
                quote! {
                    ::sinter_rt::int8::Output::#variant(#o0, ::sinter_rt::int8::Requant {
                        multiplier: #i6, bias: #bias, zero: #zero,
                    })
                }
            }
        };
        if !matches!(self.out, Int8Out::F32 | Int8Out::U8Float(_)) {
            // Only a float epilogue reads the scale.
            code.extend(quote!(let _ = a_scale;));
        }
        let exec = names.exec();
        let weights = quote!(&::sinter_rt::int8::Weights { data: #i3, sums: #i4, zero: #i5 });
        match &self.shape {
            Int8Shape::MatMul { k, n } => {
                let rows: usize = a.shape.iter().product::<usize>() / (*k).max(1);
                let (m, k, n) = (lit(rows), lit(*k), lit(*n));
                code.extend(quote! {
                    ::sinter_rt::int8::matmul_exec(#exec, [#m, #k, #n], #a_bytes, #k, a_zero, #weights, #output);
                });
            }
            Int8Shape::Conv(conv) => {
                let params = conv.params(cx)?;
                code.extend(quote! {
                    const PARAMS: ::sinter_rt::conv::ConvParams = #params;
                    ::sinter_rt::int8::conv_exec(#exec, &PARAMS, #a_bytes, a_zero, #weights, padded, #output);
                });
            }
            Int8Shape::ConvChannelsLast(conv) => {
                let params = conv.params_of(&channels_first(a.shape), cx)?;
                code.extend(quote! {
                    const PARAMS: ::sinter_rt::conv::ConvParams = #params;
                    ::sinter_rt::int8::conv_nhwc_exec(#exec, &PARAMS, #a_bytes, a_zero, #weights, padded, #output);
                });
            }
            Int8Shape::ConvFromChannelsFirst(conv) => {
                let params = conv.params(cx)?;
                code.extend(quote! {
                    const PARAMS: ::sinter_rt::conv::ConvParams = #params;
                    ::sinter_rt::int8::conv_nhwc_from_nchw_exec(#exec, &PARAMS, #a_bytes, a_zero, #weights, padded, #output);
                });
            }
            Int8Shape::DepthwiseChannelsLast(conv) => {
                let params = conv.params_of(&channels_first(a.shape), cx)?;
                code.extend(quote! {
                    const PARAMS: ::sinter_rt::conv::ConvParams = #params;
                    ::sinter_rt::int8::depthwise_nhwc_exec(#exec, &PARAMS, #a_bytes, a_zero, #weights, padded, #output);
                });
            }
        }
        Ok(code)
    }
}

/// `A` (input 0), which must be float32 when quantized at run time, else 8-bit.
fn require_activations<'a>(cx: &OpCx<'a>, dynamic: bool) -> Result<super::Operand<'a>> {
    let a = cx.input(0)?;
    let want = if dynamic {
        &[DType::F32][..]
    } else {
        &[DType::U8, DType::I8][..]
    };
    super::require_dtype(a.dtype, want, "A")?;
    Ok(a)
}

/// Refuses a product whose weights (input `i`) are not a constant 2-D tensor.
fn constant_weights(cx: &OpCx<'_>, i: usize, op: &str) -> Result<()> {
    let w = cx.input(i)?;
    if w.constant.is_none() || w.shape.len() != 2 {
        return Err(CompileError::unsupported(format!(
            "{op} with weights that are not a constant 2-D tensor (found {}{:?})",
            if w.constant.is_some() {
                "constant "
            } else {
                "run-time "
            },
            w.shape
        )));
    }
    super::require_dtype(w.dtype, &[DType::U8, DType::I8], "B")
}

/// Refuses a scale or zero point (input `i`) that is not a constant of one value or `n`.
fn constant_params(cx: &OpCx<'_>, i: usize, n: usize, op: &str, what: &str) -> Result<()> {
    if let Some(v) = cx.opt_input(i) {
        let len: usize = v.shape.iter().product();
        if v.constant.is_none() || (len != 1 && len != n) {
            return Err(CompileError::unsupported(format!(
                "{op} with a {what} that is not a constant of 1 or {n} values"
            )));
        }
    }
    Ok(())
}

/// The error of a contrib product that `lower_int8` did not lower.
fn not_lowered(op: &str) -> CompileError {
    CompileError::unsupported(format!(
        "{op} whose parameters sinter could not pack (see `lower_int8`)"
    ))
}

/// `com.microsoft:QGemm`: `Y = alpha * (A - a_zero)(B - b_zero) * a_scale * b_scale + C`
/// (C an `int32` bias in the product's scale), requantized with `y_scale`/`y_zero_point`
/// when given, else `float32`.
#[derive(Debug, Clone)]
pub struct QGemm {
    /// Scale of the product.
    pub alpha: f32,
    /// `B` is stored `[N, K]`.
    pub trans_b: bool,
}

impl OpDef for QGemm {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        if node.i64_or("transA", 0)? != 0 {
            return Err(CompileError::unsupported("QGemm with transA"));
        }
        Ok(Self {
            alpha: node.f32_or("alpha", 1.0)?,
            trans_b: node.i64_or("transB", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let a = cx.input(0)?;
        super::require_dtype(a.dtype, &[DType::U8, DType::I8], "A")?;
        constant_weights(cx, 3, "QGemm")?;
        let b = cx.input(3)?;
        let (bk, n) = if self.trans_b {
            (b.shape[1], b.shape[0])
        } else {
            (b.shape[0], b.shape[1])
        };
        if a.shape.len() != 2 || a.shape[1] != bk {
            return Err(CompileError::shape(format!(
                "A {:?} does not fit B {:?} (transB {})",
                a.shape, b.shape, self.trans_b
            )));
        }
        for (i, what) in [
            (1, "a_scale"),
            (4, "b_scale"),
            (5, "b_zero_point"),
            (7, "y_scale"),
        ] {
            let allowed = if i == 4 || i == 5 { n } else { 1 };
            constant_params(cx, i, allowed, "QGemm", what)?;
        }
        if let Some(c) = cx.opt_input(6) {
            let len: usize = c.shape.iter().product();
            if c.constant.is_none() || (len != 1 && len != n) || c.dtype != DType::I32 {
                return Err(CompileError::unsupported(
                    "QGemm with a C that is not a constant int32 of 1 or N values",
                ));
            }
        }
        let out = match cx.opt_input(8) {
            Some(z) => z.dtype,
            None => DType::F32,
        };
        Ok(vec![TypeShape::new(out, vec![a.shape[0], n])])
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(not_lowered("QGemm"))
    }
}

/// `com.microsoft:DynamicQuantizeMatMul` (`A` float32, quantized to `uint8` at run time) and
/// `com.microsoft:MatMulIntegerToFloat` (`A` already 8-bit): `Y = (A - a_zero)(B - b_zero) *
/// a_scale * b_scale + bias`, float32.
#[derive(Debug, Clone)]
pub struct QuantMatMulToFloat {
    /// `A` is float32 (DynamicQuantizeMatMul).
    pub dynamic: bool,
}

impl QuantMatMulToFloat {
    /// Input positions of `(b_scale, b_zero_point, bias)`.
    fn positions(&self) -> (usize, usize, usize) {
        if self.dynamic {
            (2, 3, 4)
        } else {
            (3, 5, 6)
        }
    }
}

impl OpDef for QuantMatMulToFloat {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            dynamic: node.op_type() == "DynamicQuantizeMatMul",
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let op = if self.dynamic {
            "DynamicQuantizeMatMul"
        } else {
            "MatMulIntegerToFloat"
        };
        let a = require_activations(cx, self.dynamic)?;
        constant_weights(cx, 1, op)?;
        let b = cx.input(1)?;
        let n = b.shape[1];
        let (scale, zero, bias) = self.positions();
        constant_params(cx, scale, n, op, "b_scale")?;
        constant_params(cx, zero, n, op, "b_zero_point")?;
        if let Some(bias) = cx.opt_input(bias) {
            if bias.constant.is_none() || bias.shape != [n] {
                return Err(CompileError::unsupported(format!(
                    "{op} with a bias that is not a constant of {n} values"
                )));
            }
        }
        let dims = super::gemm::matmul_dims(a.shape, b.shape)?;
        Ok(vec![TypeShape::new(DType::F32, dims.out)])
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(not_lowered(if self.dynamic {
            "DynamicQuantizeMatMul"
        } else {
            "MatMulIntegerToFloat"
        }))
    }
}

/// `sinter::GatherInt8`: an embedding lookup (`Gather` along axis 0 of a constant 2-D float
/// table) from the table quantized to int8 per row by `--quantize dynamic`. Inputs: the int8
/// table `[rows, dim]`, the per-row scales (float32 `[rows]`), the indices.
#[derive(Debug, Clone)]
pub struct GatherInt8 {
    /// Values per row.
    pub dim: usize,
}

impl OpDef for GatherInt8 {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        super::internal_op(node)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (table, indices) = (cx.input(0)?, cx.input(2)?);
        super::require_dtype(table.dtype, &[DType::I8], "table")?;
        super::require_dtype(indices.dtype, &[DType::I64, DType::I32], "indices")?;
        let mut shape = indices.shape.to_vec();
        shape.push(self.dim);
        Ok(vec![TypeShape::new(DType::F32, shape)])
    }

    fn emit(&self, _cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (i0, i1, i2, o0) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.output(0),
        );
        let dim = lit(self.dim);
        Ok(quote!(::sinter_rt::int8::gather_rows_dequant(#i0, #i1, #dim, #i2, #o0);))
    }
}
