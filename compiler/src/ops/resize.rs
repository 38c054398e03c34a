//! `Resize` (opset 10, 11, 13, 18, 19) and `Upsample` (opset 7, 9).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Resize.html>,
//! <https://onnx.ai/onnx/operators/onnx__Upsample.html>. float32. Modes nearest (every
//! `nearest_mode`), linear and cubic (`cubic_coeff_a`, `exclude_outside`, `antialias`); every
//! `coordinate_transformation_mode` including `tf_crop_and_resize` with `roi` and
//! `extrapolation_value`; `scales` or `sizes`, `axes` and `keep_aspect_ratio_policy`.
//! `scales`, `sizes` and `roi` must be compile-time constants (the output shape depends on
//! them).

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{f32_lit, lit, normalize_axis, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// How the output size follows from `sizes` when the aspect ratio is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AspectPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// `Resize` or `Upsample` with parsed attributes.
#[derive(Debug, Clone)]
pub struct Resize {
    /// Interpolation tokens (`::sinter_rt::resize::Interp::...`) as a description.
    interp: InterpKind,
    coord: &'static str,
    cubic_a: f32,
    antialias: bool,
    exclude_outside: bool,
    extrapolation: f32,
    axes: Option<Vec<i64>>,
    policy: AspectPolicy,
    /// Input positions of roi, scales and sizes (None where the opset lacks them).
    roi_input: Option<usize>,
    scales_input: Option<usize>,
    sizes_input: Option<usize>,
    /// Upsample-7's `scales` attribute.
    scales_attr: Option<Vec<f32>>,
    /// Upsample or Resize-10 semantics.
    legacy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InterpKind {
    Nearest(&'static str),
    Linear,
    Cubic,
}

/// One resolved axis.
struct Axis {
    input: usize,
    output: usize,
    scale: f64,
    roi: (f64, f64),
}

/// The error for a shape-deciding operand that is not a compile-time constant: the same one
/// `OpCx::const_ints` gives, so that callers which specialize such inputs recognize it.
fn not_constant(cx: &OpCx<'_>, i: usize, what: &str) -> CompileError {
    match cx.const_ints(i, what) {
        Err(e) => e,
        Ok(_) => CompileError::unsupported(format!("{what} must be a compile-time constant")),
    }
}

fn f64_lit(v: f64) -> Result<TokenStream> {
    if !v.is_finite() {
        return Err(CompileError::shape(format!(
            "non-finite resize parameter {v}"
        )));
    }
    let l = Literal::f64_suffixed(v);
    Ok(quote!(#l))
}

impl Resize {
    fn legacy(node: &NodeCx<'_>) -> bool {
        node.op_type() == "Upsample" || node.opset() < 11
    }

    /// The present, non-empty operand at `i`, if any.
    fn operand<'a>(cx: &OpCx<'a>, i: Option<usize>) -> Option<super::Operand<'a>> {
        i.and_then(|i| cx.opt_input(i))
            .filter(|o| !o.shape.contains(&0))
    }

    fn resolve(&self, cx: &OpCx<'_>) -> Result<Vec<Axis>> {
        let x = cx.input(0)?;
        let rank = x.shape.len();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => a
                .iter()
                .map(|&v| normalize_axis(v, rank, "axes"))
                .collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        for (i, a) in axes.iter().enumerate() {
            if axes[..i].contains(a) {
                return Err(CompileError::attribute("axes", "repeats an axis"));
            }
        }
        let mut out: Vec<Axis> = x
            .shape
            .iter()
            .map(|&n| Axis {
                input: n,
                output: n,
                scale: 1.0,
                roi: (0.0, 1.0),
            })
            .collect();
        let crop = self.coord == "TfCropAndResize";
        if crop {
            let roi_op = Self::operand(cx, self.roi_input)
                .ok_or_else(|| CompileError::malformed("tf_crop_and_resize needs the roi input"))?;
            let roi = roi_op
                .constant
                .ok_or_else(|| not_constant(cx, self.roi_input.unwrap_or(1), "Resize roi"))?
                .to_f64s();
            if roi.len() != 2 * axes.len() {
                return Err(CompileError::shape(format!(
                    "roi has {} values, expected {}",
                    roi.len(),
                    2 * axes.len()
                )));
            }
            for (i, &a) in axes.iter().enumerate() {
                out[a].roi = (roi[i], roi[axes.len() + i]);
            }
        }
        let sizes = Self::operand(cx, self.sizes_input);
        let scales = Self::operand(cx, self.scales_input);
        if sizes.is_some() {
            if scales.is_some() {
                return Err(CompileError::malformed(
                    "Resize takes scales or sizes, not both",
                ));
            }
            let idx = self.sizes_input.unwrap_or(3);
            let sizes = cx.const_ints(idx, "Resize sizes")?;
            if sizes.len() != axes.len() {
                return Err(CompileError::shape(format!(
                    "sizes has {} values for {} axes",
                    sizes.len(),
                    axes.len()
                )));
            }
            let sizes: Vec<usize> = sizes
                .iter()
                .map(|&s| {
                    usize::try_from(s)
                        .map_err(|_| CompileError::shape(format!("negative size {s}")))
                })
                .collect::<Result<_>>()?;
            for (&a, &s) in axes.iter().zip(&sizes) {
                if out[a].input == 0 {
                    return Err(CompileError::shape("resizing an empty axis"));
                }
                out[a].scale = s as f64 / out[a].input as f64;
                out[a].output = s;
            }
            if self.policy != AspectPolicy::Stretch {
                let it = axes.iter().map(|&a| out[a].scale);
                let scale = if self.policy == AspectPolicy::NotLarger {
                    it.fold(f64::INFINITY, f64::min)
                } else {
                    it.fold(0.0, f64::max)
                };
                for &a in &axes {
                    let size = scale * out[a].input as f64 + 0.5;
                    if !(0.0..1e12).contains(&size) {
                        return Err(CompileError::shape(format!(
                            "output size {size} out of range"
                        )));
                    }
                    out[a].scale = scale;
                    out[a].output = size as usize;
                }
            }
        } else {
            let values: Vec<f64> = if let Some(s) = &self.scales_attr {
                s.iter().map(|&v| f64::from(v)).collect()
            } else {
                let s = scales
                    .ok_or_else(|| CompileError::malformed("Resize needs scales or sizes"))?;
                s.constant
                    .ok_or_else(|| {
                        not_constant(cx, self.scales_input.unwrap_or(1), "Resize scales")
                    })?
                    .to_f64s()
            };
            if values.len() != axes.len() {
                return Err(CompileError::shape(format!(
                    "scales has {} values for {} axes",
                    values.len(),
                    axes.len()
                )));
            }
            for (&a, &s) in axes.iter().zip(&values) {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(CompileError::shape(format!("scale {s} must be positive")));
                }
                let ax = &mut out[a];
                ax.scale = s;
                let span = if crop { ax.roi.1 - ax.roi.0 } else { 1.0 };
                let size = ax.input as f64 * span * s;
                if !(0.0..1e12).contains(&size) {
                    return Err(CompileError::shape(format!(
                        "output size {size} out of range"
                    )));
                }
                ax.output = size as usize;
            }
        }
        let taps = self.tap_count_max(&out);
        if taps > 64 {
            return Err(CompileError::unsupported(format!(
                "Resize needing {taps} filter taps per axis (at most 64)"
            )));
        }
        if rank > 8 {
            return Err(CompileError::unsupported("Resize of rank above 8"));
        }
        Ok(out)
    }

    /// The most filter taps any axis needs (antialiasing widens the filter by 1 / scale).
    fn tap_count_max(&self, axes: &[Axis]) -> usize {
        let mut worst = 2;
        for a in axes {
            let s = a.scale.min(1.0);
            if self.antialias && s < 1.0 / 64.0 {
                return usize::MAX;
            }
            // -reach / s is at least -128 here, so the cast is exact.
            let first = match (self.interp, self.antialias) {
                (InterpKind::Nearest(_), _) | (InterpKind::Linear, false) => 0,
                (InterpKind::Cubic, false) => -1,
                (InterpKind::Linear, true) => (-1.0 / s).floor() as i64 + 1,
                (InterpKind::Cubic, true) => (-2.0 / s).floor() as i64 + 1,
            };
            worst = worst.max(usize::try_from(2 - 2 * first).unwrap_or(usize::MAX));
        }
        worst
    }
}

impl OpDef for Resize {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let legacy = Self::legacy(node);
        let mode = node.string_or("mode", "nearest")?;
        let nearest_mode = node.string_or("nearest_mode", "round_prefer_floor")?;
        let interp = match mode.as_str() {
            "nearest" if legacy => InterpKind::Nearest("Floor"),
            "nearest" => InterpKind::Nearest(match nearest_mode.as_str() {
                "round_prefer_floor" => "RoundPreferFloor",
                "round_prefer_ceil" => "RoundPreferCeil",
                "floor" => "Floor",
                "ceil" => "Ceil",
                other => {
                    return Err(CompileError::attribute(
                        "nearest_mode",
                        format!("unknown mode {other:?}"),
                    ))
                }
            }),
            "linear" | "bilinear" => InterpKind::Linear,
            "cubic" if !legacy => InterpKind::Cubic,
            other => {
                return Err(CompileError::attribute(
                    "mode",
                    format!("unknown mode {other:?}"),
                ))
            }
        };
        let coord = if legacy {
            "Asymmetric"
        } else {
            match node
                .string_or("coordinate_transformation_mode", "half_pixel")?
                .as_str()
            {
                "half_pixel" => "HalfPixel",
                "half_pixel_symmetric" => "HalfPixelSymmetric",
                "pytorch_half_pixel" => "PytorchHalfPixel",
                "align_corners" => "AlignCorners",
                "asymmetric" => "Asymmetric",
                "tf_crop_and_resize" => "TfCropAndResize",
                "tf_half_pixel_for_nn" => {
                    return Err(CompileError::unsupported(
                        "coordinate_transformation_mode tf_half_pixel_for_nn",
                    ))
                }
                other => {
                    return Err(CompileError::attribute(
                        "coordinate_transformation_mode",
                        format!("unknown mode {other:?}"),
                    ))
                }
            }
        };
        let policy = match node
            .string_or("keep_aspect_ratio_policy", "stretch")?
            .as_str()
        {
            "stretch" => AspectPolicy::Stretch,
            "not_larger" => AspectPolicy::NotLarger,
            "not_smaller" => AspectPolicy::NotSmaller,
            other => {
                return Err(CompileError::attribute(
                    "keep_aspect_ratio_policy",
                    format!("unknown policy {other:?}"),
                ))
            }
        };
        let antialias = node.i64_or("antialias", 0)? != 0;
        if antialias && matches!(interp, InterpKind::Nearest(_)) {
            return Err(CompileError::attribute(
                "antialias",
                "not defined for nearest mode",
            ));
        }
        let upsample7 = node.op_type() == "Upsample" && node.opset() < 9;
        let (roi_input, scales_input, sizes_input) = if upsample7 {
            (None, None, None)
        } else if legacy {
            (None, Some(1), None)
        } else {
            (Some(1), Some(2), Some(3))
        };
        Ok(Self {
            interp,
            coord,
            cubic_a: node.f32_or("cubic_coeff_a", -0.75)?,
            antialias,
            exclude_outside: node.i64_or("exclude_outside", 0)? != 0,
            extrapolation: node.f32_or("extrapolation_value", 0.0)?,
            axes: node.ints("axes")?,
            policy,
            roi_input,
            scales_input,
            sizes_input,
            legacy,
            scales_attr: if upsample7 {
                Some(
                    node.floats("scales")?.ok_or_else(|| {
                        CompileError::attribute("scales", "required by Upsample-7")
                    })?,
                )
            } else {
                None
            },
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if x.dtype != DType::F32 {
            // Other types (the 8-bit tensors of quantized models) copy their nearest element.
            if !matches!(self.interp, InterpKind::Nearest(_)) || self.coord == "TfCropAndResize" {
                return Err(CompileError::unsupported(format!(
                    "X of type {} with other than nearest interpolation (or with \
                     tf_crop_and_resize): only float32 interpolates",
                    x.dtype
                )));
            }
        }
        let axes = self.resolve(cx)?;
        if self.legacy
            && matches!(self.interp, InterpKind::Nearest(_))
            && axes.iter().any(|a| a.scale < 1.0)
        {
            return Err(CompileError::unsupported(
                "nearest downsampling in Upsample / Resize-10 (rounding undefined)",
            ));
        }
        Ok(vec![TypeShape::dynamic(
            x.dtype,
            axes.iter().map(|a| a.output).collect(),
            x.dynamic.to_vec(),
        )])
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        // Extents that vary, resized by constant scales: each output extent follows its input's
        // (sizes, or a crop region, would fix or shift it).
        self.sizes_input.and_then(|i| cx.opt_input(i)).is_none()
            && self.coord != "TfCropAndResize"
            && cx.inputs.iter().skip(1).flatten().all(|o| !o.is_dynamic())
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let axes = self.resolve(cx)?;
        let x = cx.input(0)?;
        let dynamic = x.is_dynamic();
        let is0 = if dynamic {
            names.in_shape(cx, 0)
        } else {
            TokenStream::new()
        };
        let items = axes
            .iter()
            .enumerate()
            .map(|(k, a)| {
                let (input, output) = if x.dynamic.get(k).copied().unwrap_or(false) {
                    // The run-time extent, and the output as inference sizes it (floor of
                    // input times scale, in f64).
                    let (k, scale) = (lit(k), f64_lit(a.scale)?);
                    (
                        quote!(#is0[#k]),
                        quote!(((#is0[#k] as f64) * #scale) as usize),
                    )
                } else {
                    let (input, output) = (lit(a.input), lit(a.output));
                    (quote!(#input), quote!(#output))
                };
                let (scale, rs, re) = (f64_lit(a.scale)?, f64_lit(a.roi.0)?, f64_lit(a.roi.1)?);
                Ok(quote! {
                    ::sinter_rt::resize::ResizeAxis {
                        input: #input, output: #output, scale: #scale, roi_start: #rs, roi_end: #re,
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let interp = match self.interp {
            InterpKind::Nearest(m) => {
                let m = proc_macro2::Ident::new(m, proc_macro2::Span::call_site());
                quote!(::sinter_rt::resize::Interp::Nearest(::sinter_rt::resize::Nearest::#m))
            }
            InterpKind::Linear => quote!(::sinter_rt::resize::Interp::Linear),
            InterpKind::Cubic => {
                let a = f64_lit(f64::from(self.cubic_a))?;
                quote!(::sinter_rt::resize::Interp::Cubic(#a))
            }
        };
        let coord = proc_macro2::Ident::new(self.coord, proc_macro2::Span::call_site());
        let (antialias, exclude) = (self.antialias, self.exclude_outside);
        let extrapolation = f32_lit(self.extrapolation);
        let (i0, o0) = (names.input(0), names.output(0));
        let kernel = if cx.input(0)?.dtype == DType::F32 {
            quote!(resize_f32)
        } else {
            quote!(resize_nearest)
        };
        if dynamic {
            let os0 = names.out_shape(0);
            let outs = (0..axes.len()).map(|k| {
                let k = lit(k);
                quote!(axes[#k].output)
            });
            return Ok(quote! {
                let axes = [#(#items),*];
                let params = ::sinter_rt::resize::ResizeParams {
                    axes: &axes,
                    interp: #interp,
                    coord: ::sinter_rt::resize::Coord::#coord,
                    antialias: #antialias,
                    exclude_outside: #exclude,
                    extrapolation: #extrapolation,
                };
                let #os0 = [#(#outs),*];
                let #i0 = &#i0[..#is0.iter().product::<usize>()];
                let #o0 = &mut #o0[..#os0.iter().product::<usize>()];
                ::sinter_rt::resize::#kernel(&params, #i0, #o0);
            });
        }
        Ok(quote! {
            const PARAMS: ::sinter_rt::resize::ResizeParams<'static> = ::sinter_rt::resize::ResizeParams {
                axes: &[#(#items),*],
                interp: #interp,
                coord: ::sinter_rt::resize::Coord::#coord,
                antialias: #antialias,
                exclude_outside: #exclude,
                extrapolation: #extrapolation,
            };
            ::sinter_rt::resize::#kernel(&PARAMS, #i0, #o0);
        })
    }
}
