//! `com.microsoft:MatMulNBits`: a product with 2-, 4- or 8-bit block-quantized weights, as ONNX
//! Runtime's weight-only quantizer (`MatMulNBitsQuantizer`) and GenAI's model builder write
//! it. `Y = A · dequant(B)ᵀ + bias`, each weight `(code - zero_point) * scale` per block of
//! `block_size` along K. The generated code calls `sinter_rt::nbits::matmul_nbits4_f32` or
//! `matmul_nbits_bytes_f32` (8- and 2-bit), which read the codes where they lie (a
//! sixteenth to a quarter of the float32 weights' bytes) and never make a float copy of them.
//! A constant `g_idx` (act-order weights: row `k` of B in block `g_idx[k]`) is rewritten away
//! by shape inference: B's rows sorted by block at compile time, A's columns gathered to match.
//! Float16 activations become the float32 product between casts (shape inference too).

use proc_macro2::TokenStream;
use quote::quote;

use super::{lit, require_dtype, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// The parsed node.
#[derive(Debug, Clone)]
pub struct MatMulNBits {
    /// The reduction length.
    pub k: usize,
    /// Output columns.
    pub n: usize,
    /// Weights per block (a power of two, at least 16).
    pub block: usize,
    /// Bits per weight: 2, 4 or 8.
    pub bits: usize,
    /// Whether input 4, `g_idx` (the block of each row of B, act-order weights), is given:
    /// shape inference then rewrites the node into one without it (see
    /// `passes::contrib::expand_nbits_g_idx`).
    pub g_idx: bool,
}

impl MatMulNBits {
    fn blocks(&self) -> usize {
        self.k.div_ceil(self.block)
    }
    /// Rows of A (the product of its leading dims).
    fn rows(cx: &OpCx<'_>) -> Result<usize> {
        let a = cx.input(0)?;
        Ok(a.shape[..a.shape.len().saturating_sub(1)].iter().product())
    }
    fn shape(&self, cx: &OpCx<'_>) -> Result<TokenStream> {
        let (m, n, k, block) = (
            lit(Self::rows(cx)?),
            lit(self.n),
            lit(self.k),
            lit(self.block),
        );
        Ok(quote!(&::sinter_rt::nbits::NBits { m: #m, n: #n, k: #k, block: #block }))
    }
}

/// The element count of operand `i`, which must have `want` elements.
fn count(cx: &OpCx<'_>, i: usize, what: &str, want: usize) -> Result<()> {
    let have: usize = cx.input(i)?.shape.iter().product();
    if have == want {
        Ok(())
    } else {
        Err(CompileError::shape(format!(
            "MatMulNBits {what} has {have} elements, the attributes call for {want}"
        )))
    }
}

impl OpDef for MatMulNBits {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let required = |name: &str| -> Result<usize> {
            let v = node
                .i64_opt(name)?
                .ok_or_else(|| CompileError::attribute(name, "required"))?;
            usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| {
                CompileError::attribute(name, format!("must be positive, found {v}"))
            })
        };
        let bits = node.i64_or("bits", 4)?;
        if ![2, 4, 8].contains(&bits) {
            return Err(CompileError::unsupported(format!(
                "MatMulNBits with bits = {bits} (2-, 4- and 8-bit weights only)"
            )));
        }
        let block = required("block_size")?;
        if block < 16 || !block.is_power_of_two() {
            return Err(CompileError::attribute(
                "block_size",
                format!("must be a power of two of at least 16, found {block}"),
            ));
        }
        Ok(Self {
            k: required("K")?,
            n: required("N")?,
            block,
            bits: usize::try_from(bits).unwrap_or(4),
            g_idx: node.input_present(4),
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        if self.g_idx {
            return Err(CompileError::unsupported(
                "MatMulNBits with g_idx whose B or g_idx is not a constant",
            ));
        }
        let a = cx.input(0)?;
        require_dtype(a.dtype, &[DType::F32], "MatMulNBits A")?;
        if a.shape.last() != Some(&self.k) {
            return Err(CompileError::shape(format!(
                "MatMulNBits A {:?} does not end in K = {}",
                a.shape, self.k
            )));
        }
        require_dtype(cx.input(1)?.dtype, &[DType::U8], "MatMulNBits B")?;
        count(
            cx,
            1,
            "B",
            self.n * self.blocks() * self.block * self.bits / 8,
        )?;
        require_dtype(cx.input(2)?.dtype, &[DType::F32], "MatMulNBits scales")?;
        count(cx, 2, "scales", self.n * self.blocks())?;
        if let Some(zp) = cx.opt_input(3) {
            match zp.dtype {
                // Packed: two 4-bit zero points a byte, or one 8-bit one.
                DType::U8 => {
                    let per_column = (self.blocks() * self.bits).div_ceil(8);
                    count(cx, 3, "zero_points", self.n * per_column)?;
                }
                // One float a block.
                DType::F32 => count(cx, 3, "zero_points", self.n * self.blocks())?,
                other => {
                    return Err(CompileError::unsupported(format!(
                        "MatMulNBits with {other} zero points (uint8 or float32 only)"
                    )))
                }
            }
        }
        if let Some(bias) = cx.opt_input(5) {
            require_dtype(bias.dtype, &[DType::F32], "MatMulNBits bias")?;
            count(cx, 5, "bias", self.n)?;
        }
        let mut shape = a.shape.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = self.n;
        }
        Ok(vec![TypeShape::new(DType::F32, shape)])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        if self.bits != 4 {
            // A is read where it lies.
            return None;
        }
        // A rearranged by 32-weight chunks (see `sinter_rt::nbits`).
        let chunks = (self.blocks() * self.block).div_ceil(32);
        let rows = Self::rows(cx).ok()?;
        Some(TypeShape::new(DType::F32, vec![rows * chunks * 32]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (a, b, scales) = (names.input(0), names.input(1), names.input(2));
        let zero_points = match cx.opt_input(3) {
            None => quote!(::sinter_rt::nbits::ZeroPoints::Default),
            Some(zp) => {
                let i3 = names.input(3);
                if zp.dtype == DType::F32 {
                    quote!(::sinter_rt::nbits::ZeroPoints::Floats(#i3))
                } else {
                    quote!(::sinter_rt::nbits::ZeroPoints::Codes(#i3))
                }
            }
        };
        let bias = names.opt_input(cx, 5);
        let shape = self.shape(cx)?;
        if self.bits != 4 {
            let (exec, y) = (names.exec(), names.output(0));
            let bits = lit(self.bits);
            return Ok(quote! {
                ::sinter_rt::nbits::matmul_nbits_bytes_f32::<#bits>(
                    #exec, #a, #b, #scales, #zero_points, #bias, #y, #shape,
                );
            });
        }
        let (exec, scratch, y) = (names.exec(), names.scratch(), names.output(0));
        Ok(quote! {
            ::sinter_rt::nbits::matmul_nbits4_f32(
                #exec, #a, #b, #scales, #zero_points, #bias, #scratch, #y, #shape,
            );
        })
    }
}
