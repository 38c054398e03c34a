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

/// `Col2Im`.
#[derive(Debug, Clone)]
pub struct Col2Im {
    /// Dilations (default 1s).
    pub dilations: Option<Vec<i64>>,
    /// Pads, begins then ends (default 0s).
    pub pads: Option<Vec<i64>>,
    /// Strides (default 1s).
    pub strides: Option<Vec<i64>>,
}

/// Resolved Col2Im geometry.
struct Col2ImPlan {
    image: Vec<usize>,
    block: Vec<usize>,
    positions: Vec<usize>,
    strides: Vec<usize>,
    pads: Vec<usize>,
    dilations: Vec<usize>,
}

fn per_axis(v: &Option<Vec<i64>>, k: usize, default: usize, what: &str) -> Result<Vec<usize>> {
    match v {
        None => Ok(vec![default; k]),
        Some(v) if v.len() == k => v
            .iter()
            .map(|&x| {
                usize::try_from(x)
                    .map_err(|_| CompileError::attribute(what, format!("negative value {x}")))
            })
            .collect(),
        Some(v) => Err(CompileError::attribute(
            what,
            format!("expected {k} values, found {}", v.len()),
        )),
    }
}

impl Col2Im {
    fn plan(&self, cx: &OpCx<'_>) -> Result<Col2ImPlan> {
        let x = cx.input(0)?;
        let to_usize = |v: Vec<i64>, what: &str| -> Result<Vec<usize>> {
            v.into_iter()
                .map(|d| {
                    usize::try_from(d)
                        .ok()
                        .filter(|&d| d > 0)
                        .ok_or_else(|| CompileError::shape(format!("{what} value {d}")))
                })
                .collect()
        };
        let image = to_usize(cx.const_ints(1, "image_shape")?, "image_shape")?;
        let block = to_usize(cx.const_ints(2, "block_shape")?, "block_shape")?;
        let k = image.len();
        if block.len() != k || x.shape.len() != 3 {
            return Err(CompileError::shape("Col2Im shapes do not fit"));
        }
        let strides = per_axis(&self.strides, k, 1, "strides")?;
        let dilations = per_axis(&self.dilations, k, 1, "dilations")?;
        let pads = per_axis(&self.pads, 2 * k, 0, "pads")?;
        let mut positions = Vec::with_capacity(k);
        for d in 0..k {
            let span = dilations[d] * (block[d] - 1) + 1;
            let padded = image[d] + pads[d] + pads[d + k];
            if padded < span || strides[d] == 0 {
                return Err(CompileError::shape("Col2Im block larger than the image"));
            }
            positions.push((padded - span) / strides[d] + 1);
        }
        let blk: usize = block.iter().product();
        if x.shape[1] % blk != 0 || x.shape[2] != positions.iter().product::<usize>() {
            return Err(CompileError::shape(format!(
                "Col2Im input {:?} does not fit blocks {block:?} at {positions:?}",
                x.shape
            )));
        }
        Ok(Col2ImPlan {
            image,
            block,
            positions,
            strides,
            pads: pads[..k].to_vec(),
            dilations,
        })
    }
}

impl OpDef for Col2Im {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            dilations: node.ints("dilations")?,
            pads: node.ints("pads")?,
            strides: node.ints("strides")?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "input")?;
        let p = self.plan(cx)?;
        let blk: usize = p.block.iter().product();
        let mut out = vec![x.shape[0], x.shape[1] / blk];
        out.extend_from_slice(&p.image);
        Ok(vec![TypeShape::new(DType::F32, out)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let p = self.plan(cx)?;
        let blk: usize = p.block.iter().product();
        let (n, c) = (lit(x.shape[0]), lit(x.shape[1] / blk.max(1)));
        let [image, block, positions, strides, pads, dilations] = [
            &p.image,
            &p.block,
            &p.positions,
            &p.strides,
            &p.pads,
            &p.dilations,
        ]
        .map(|v| super::usize_slice(v));
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(
            quote!(::sinter_rt::vision::col2im_f32(#i0, #o0, #n, #c, ::sinter_rt::vision::Col2ImGeom {
            image: #image, block: #block, positions: #positions, strides: #strides, pads: #pads,
            dilations: #dilations });),
        )
    }
}

/// `RoiAlign`.
#[derive(Debug, Clone)]
pub struct RoiAlign {
    /// `half_pixel` (opset 16+ default) vs `output_half_pixel`.
    pub half_pixel: bool,
    /// Max pooling.
    pub max: bool,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Samples per bin.
    pub sampling_ratio: usize,
    /// Spatial scale.
    pub spatial_scale: f32,
}

impl OpDef for RoiAlign {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let half_pixel = if node.opset() >= 16 {
            match node
                .string_or("coordinate_transformation_mode", "half_pixel")?
                .as_str()
            {
                "half_pixel" => true,
                "output_half_pixel" => false,
                m => {
                    return Err(CompileError::attribute(
                        "coordinate_transformation_mode",
                        format!("unknown mode {m:?}"),
                    ))
                }
            }
        } else {
            false
        };
        let max = match node.string_or("mode", "avg")?.as_str() {
            "avg" => false,
            "max" => true,
            m => {
                return Err(CompileError::attribute(
                    "mode",
                    format!("unknown mode {m:?}"),
                ))
            }
        };
        Ok(Self {
            half_pixel,
            max,
            oh: node.usize_or("output_height", 1)?,
            ow: node.usize_or("output_width", 1)?,
            sampling_ratio: node.usize_or("sampling_ratio", 0)?,
            spatial_scale: node.f32_or("spatial_scale", 1.0)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        let rois = cx.input(1)?;
        let bi = cx.input(2)?;
        require_dtype(x.dtype, &[DType::F32], "X")?;
        require_dtype(rois.dtype, &[DType::F32], "rois")?;
        require_dtype(bi.dtype, &[DType::I64, DType::I32], "batch_indices")?;
        if x.shape.len() != 4
            || rois.shape.len() != 2
            || rois.shape[1] != 4
            || bi.shape != [rois.shape[0]]
        {
            return Err(CompileError::shape(format!(
                "RoiAlign of X {:?}, rois {:?}, batch_indices {:?}",
                x.shape, rois.shape, bi.shape
            )));
        }
        Ok(vec![TypeShape::new(
            DType::F32,
            vec![rois.shape[0], x.shape[1], self.oh, self.ow],
        )])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let dims = x.shape.iter().map(|&d| lit(d));
        let (oh, ow, sr) = (lit(self.oh), lit(self.ow), lit(self.sampling_ratio));
        let scale = super::f32_lit(self.spatial_scale);
        let (hp, max) = (self.half_pixel, self.max);
        let (i0, i1, i2, o0) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.output(0),
        );
        Ok(
            quote!(::sinter_rt::vision::roi_align_f32(#i0, #i1, #i2, #o0, [#(#dims),*],
            ::sinter_rt::vision::RoiAlignParams { out: [#oh, #ow], sampling_ratio: #sr,
            spatial_scale: #scale, half_pixel: #hp, max: #max });),
        )
    }
}
