//! `GridSample` (opset 16, 20, 22): samples the input at normalized grid coordinates, and
//! `AffineGrid` (opset 20), which makes such grids; `RoiAlign` (opset 10, 16, 22).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__GridSample.html>,
//! <https://onnx.ai/onnx/operators/onnx__AffineGrid.html>,
//! <https://onnx.ai/onnx/operators/onnx__RoiAlign.html>. float32; GridSample over 1 to 3
//! spatial dimensions, modes nearest / linear (bilinear) / cubic (bicubic), padding zeros,
//! border, reflection, `align_corners`; AffineGrid over 2 or 3.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use super::{lit, require_dtype, usize_slice, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// `GridSample`.
#[derive(Debug, Clone)]
pub struct GridSample {
    mode: &'static str,
    padding: &'static str,
    align_corners: bool,
}

impl OpDef for GridSample {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let default = if node.opset() < 20 {
            "bilinear"
        } else {
            "linear"
        };
        let mode = match node.string_or("mode", default)?.as_str() {
            "nearest" => "Nearest",
            "linear" | "bilinear" => "Linear",
            "cubic" | "bicubic" => "Cubic",
            other => {
                return Err(CompileError::attribute(
                    "mode",
                    format!("unknown mode {other:?}"),
                ))
            }
        };
        let padding = match node.string_or("padding_mode", "zeros")?.as_str() {
            "zeros" => "Zeros",
            "border" => "Border",
            "reflection" => "Reflection",
            other => {
                return Err(CompileError::attribute(
                    "padding_mode",
                    format!("unknown mode {other:?}"),
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
        let (x, grid) = (cx.input(0)?, cx.input(1)?);
        require_dtype(x.dtype, &[DType::F32], "X")?;
        require_dtype(grid.dtype, &[DType::F32], "grid")?;
        let r = x.shape.len();
        if !(3..=5).contains(&r) {
            return Err(CompileError::unsupported(format!(
                "GridSample of rank {r} (3 to 5 are supported)"
            )));
        }
        let d = r - 2;
        if grid.shape.len() != r || grid.shape[0] != x.shape[0] || grid.shape[r - 1] != d {
            return Err(CompileError::shape(format!(
                "grid {:?} does not fit X {:?}",
                grid.shape, x.shape
            )));
        }
        let mut shape = x.shape[..2].to_vec();
        shape.extend(&grid.shape[1..r - 1]);
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (x, grid) = (cx.input(0)?, cx.input(1)?);
        let r = x.shape.len();
        let (batch, channels) = (lit(x.shape[0]), lit(x.shape[1]));
        let input = usize_slice(&x.shape[2..]);
        let output = usize_slice(&grid.shape[1..r - 1]);
        let mode = Ident::new(self.mode, Span::call_site());
        let padding = Ident::new(self.padding, Span::call_site());
        let align = self.align_corners;
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        Ok(quote! {
            const PARAMS: ::sinter_rt::sample::GridParams<'static> = ::sinter_rt::sample::GridParams {
                batch: #batch, channels: #channels, input: #input, output: #output,
                mode: ::sinter_rt::sample::GridMode::#mode,
                padding: ::sinter_rt::sample::GridPadding::#padding,
                align_corners: #align,
            };
            ::sinter_rt::sample::grid_sample_f32(&PARAMS, #i0, #i1, #o0);
        })
    }
}

/// `AffineGrid` (opset 20): the sampling grid of an affine map `theta`, for GridSample;
/// `size` must be a compile-time constant.
#[derive(Debug, Clone)]
pub struct AffineGrid {
    align_corners: bool,
}

impl AffineGrid {
    fn dims(cx: &OpCx<'_>) -> Result<(usize, Vec<usize>)> {
        let theta = cx.input(0)?;
        let size: Vec<usize> = cx
            .const_ints(1, "AffineGrid size")?
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| CompileError::shape(format!("size {v}"))))
            .collect::<Result<_>>()?;
        let d = size.len().saturating_sub(2);
        if !(2..=3).contains(&d) {
            return Err(CompileError::unsupported(format!(
                "AffineGrid of size {size:?} (2 or 3 spatial dims)"
            )));
        }
        if theta.shape != [size[0], d, d + 1] {
            return Err(CompileError::shape(format!(
                "theta {:?} does not fit size {size:?}",
                theta.shape
            )));
        }
        if size[2..].contains(&0) {
            return Err(CompileError::shape("AffineGrid of an empty size"));
        }
        Ok((size[0], size[2..].to_vec()))
    }
}

impl OpDef for AffineGrid {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            align_corners: node.i64_or("align_corners", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        require_dtype(cx.input(0)?.dtype, &[DType::F32], "theta")?;
        let (n, dims) = Self::dims(cx)?;
        let mut shape = vec![n];
        shape.extend(&dims);
        shape.push(dims.len());
        Ok(vec![TypeShape::new(DType::F32, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (n, dims) = Self::dims(cx)?;
        let (n, dims, align) = (lit(n), usize_slice(&dims), self.align_corners);
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote!(::sinter_rt::sample::affine_grid_f32(#i0, #o0, #n, #dims, #align);))
    }
}

/// `RoiAlign` (opset 10, 16, 22): bilinear region pooling, average or max.
#[derive(Debug, Clone)]
pub struct RoiAlign {
    half_pixel: bool,
    max: bool,
    out_h: usize,
    out_w: usize,
    sampling_ratio: usize,
    spatial_scale: f32,
}

impl OpDef for RoiAlign {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let default = if node.opset() < 16 {
            "output_half_pixel"
        } else {
            "half_pixel"
        };
        let half_pixel = match node
            .string_or("coordinate_transformation_mode", default)?
            .as_str()
        {
            "half_pixel" => true,
            "output_half_pixel" => false,
            other => {
                return Err(CompileError::attribute(
                    "coordinate_transformation_mode",
                    format!("unknown mode {other:?}"),
                ))
            }
        };
        let max = match node.string_or("mode", "avg")?.as_str() {
            "avg" => false,
            "max" => true,
            other => {
                return Err(CompileError::attribute(
                    "mode",
                    format!("unknown mode {other:?}"),
                ))
            }
        };
        Ok(Self {
            half_pixel,
            max,
            out_h: node.usize_or("output_height", 1)?,
            out_w: node.usize_or("output_width", 1)?,
            sampling_ratio: node.usize_or("sampling_ratio", 0)?,
            spatial_scale: node.f32_or("spatial_scale", 1.0)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (x, rois, idx) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        require_dtype(x.dtype, &[DType::F32], "X")?;
        if x.shape.len() != 4
            || rois.dtype != x.dtype
            || rois.shape.len() != 2
            || rois.shape[1] != 4
            || idx.dtype != DType::I64
            || idx.shape != [rois.shape[0]]
        {
            return Err(CompileError::shape(format!(
                "X {:?}, rois {}{:?}, batch_indices {}{:?} do not fit RoiAlign",
                x.shape, rois.dtype, rois.shape, idx.dtype, idx.shape
            )));
        }
        Ok(vec![TypeShape::new(
            x.dtype,
            vec![rois.shape[0], x.shape[1], self.out_h, self.out_w],
        )])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (c, h, w) = (lit(x.shape[1]), lit(x.shape[2]), lit(x.shape[3]));
        let (oh, ow, ratio) = (lit(self.out_h), lit(self.out_w), lit(self.sampling_ratio));
        let scale = super::f32_lit(self.spatial_scale);
        let (half, max) = (self.half_pixel, self.max);
        let (i0, i1, i2, o0) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.output(0),
        );
        Ok(quote! {
            const PARAMS: ::sinter_rt::sample::RoiAlignParams = ::sinter_rt::sample::RoiAlignParams {
                channels: #c, height: #h, width: #w, out_h: #oh, out_w: #ow,
                sampling_ratio: #ratio, spatial_scale: #scale, half_pixel: #half, max: #max,
            };
            ::sinter_rt::sample::roi_align_f32(&PARAMS, #i0, #i1, #i2, #o0);
        })
    }
}
