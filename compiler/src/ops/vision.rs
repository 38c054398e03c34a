//! Vision ops: `GridSample` (opset 16..=22), `AffineGrid` (opset 20), `Col2Im` (opset 18),
//! `RoiAlign` (opset 10..=22). float32.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__GridSample.html>,
//! <https://onnx.ai/onnx/operators/onnx__AffineGrid.html>,
//! <https://onnx.ai/onnx/operators/onnx__Col2Im.html>,
//! <https://onnx.ai/onnx/operators/onnx__RoiAlign.html>.

use proc_macro2::TokenStream;
use quote::quote;

use super::{lit, require_dtype, usize3, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// `GridSample`.
#[derive(Debug, Clone)]
pub struct GridSample {
    /// `Nearest`, `Linear` or `Cubic` (runtime enum variant name).
    pub mode: &'static str,
    /// `Zeros`, `Border` or `Reflection`.
    pub padding: &'static str,
    /// `align_corners`.
    pub align_corners: bool,
}

impl OpDef for GridSample {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let mode = node.string_or(
            "mode",
            if node.opset() >= 20 {
                "linear"
            } else {
                "bilinear"
            },
        )?;
        let mode = match mode.as_str() {
            "nearest" => "Nearest",
            "bilinear" | "linear" => "Linear",
            "bicubic" | "cubic" => "Cubic",
            m => {
                return Err(CompileError::attribute(
                    "mode",
                    format!("unknown mode {m:?}"),
                ))
            }
        };
        let padding = match node.string_or("padding_mode", "zeros")?.as_str() {
            "zeros" => "Zeros",
            "border" => "Border",
            "reflection" => "Reflection",
            m => {
                return Err(CompileError::attribute(
                    "padding_mode",
                    format!("unknown padding mode {m:?}"),
                ))
            }
        };
        Ok(Self {
            mode,
            padding,
            align_corners: node.i64_or("align_corners", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        let g = cx.input(1)?;
        require_dtype(x.dtype, &[DType::F32], "input X")?;
        require_dtype(g.dtype, &[DType::F32], "grid")?;
        let r = x.shape.len();
        if !(4..=5).contains(&r) || g.shape.len() != r || g.shape[0] != x.shape[0] {
            return Err(CompileError::unsupported(format!(
                "GridSample of X {:?} with grid {:?} (4-D and 5-D only)",
                x.shape, g.shape
            )));
        }
        if g.shape[r - 1] != r - 2 {
            return Err(CompileError::shape(
                "grid's last axis must be the spatial rank",
            ));
        }
        let mut out = vec![x.shape[0], x.shape[1]];
        out.extend_from_slice(&g.shape[1..r - 1]);
        Ok(vec![TypeShape::new(DType::F32, out)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let g = cx.input(1)?;
        let r = x.shape.len();
        let k = r.saturating_sub(2);
        let spatial = usize3(x.shape.get(2..).unwrap_or(&[]), 1);
        let out_len: usize = g
            .shape
            .get(1..r.saturating_sub(1))
            .unwrap_or(&[])
            .iter()
            .product();
        let (n, c) = (lit(x.shape[0]), lit(x.shape[1]));
        let (k, out_len) = (lit(k), lit(out_len));
        let mode = quote::format_ident!("{}", self.mode);
        let padding = quote::format_ident!("{}", self.padding);
        let ac = self.align_corners;
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        Ok(
            quote!(::sinter_rt::vision::grid_sample_f32(#i0, #i1, #o0, #n, #c, #spatial, #k, #out_len,
            ::sinter_rt::vision::SampleMode::#mode, ::sinter_rt::vision::Padding::#padding, #ac);),
        )
    }
}

/// `AffineGrid`.
#[derive(Debug, Clone)]
pub struct AffineGrid {
    /// `align_corners`.
    pub align_corners: bool,
}

impl AffineGrid {
    fn size(cx: &OpCx<'_>) -> Result<Vec<usize>> {
        cx.const_ints(1, "size")?
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| CompileError::shape("negative size")))
            .collect()
    }
}

impl OpDef for AffineGrid {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            align_corners: node.i64_or("align_corners", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let theta = cx.input(0)?;
        require_dtype(theta.dtype, &[DType::F32], "theta")?;
        let size = Self::size(cx)?;
        let k = size.len().saturating_sub(2);
        if !(2..=3).contains(&k) || theta.shape != [size[0], k, k + 1] {
            return Err(CompileError::shape(format!(
                "AffineGrid theta {:?} does not fit size {size:?}",
                theta.shape
            )));
        }
        let mut out = vec![size[0]];
        out.extend_from_slice(&size[2..]);
        out.push(k);
        Ok(vec![TypeShape::new(DType::F32, out)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let size = Self::size(cx)?;
        let k = size.len().saturating_sub(2);
        let n = lit(size.first().copied().unwrap_or(0));
        let spatial = usize3(size.get(2..).unwrap_or(&[]), 1);
        let kk = lit(k);
        let ac = self.align_corners;
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote!(::sinter_rt::vision::affine_grid_f32(#i0, #o0, #n, #kk, #spatial, #ac);))
    }
}
