//! Convolutions: `Conv` (1-3 spatial dims, groups, pads, `auto_pad`, strides, dilations),
//! `ConvTranspose` (the same plus `output_padding` and `output_shape`), `ConvInteger`,
//! `QLinearConv`, `DeformConv` (2-D), `Col2Im` and `CausalConvWithState` (1-D depthwise,
//! opset 27, as its ONNX function body defines it); and the window geometry they share with
//! pooling.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Conv.html> (Conv-1/11/22),
//! <https://onnx.ai/onnx/operators/onnx__ConvTranspose.html> (1/11/22),
//! <https://onnx.ai/onnx/operators/onnx__ConvInteger.html> (10),
//! <https://onnx.ai/onnx/operators/onnx__QLinearConv.html> (10),
//! <https://onnx.ai/onnx/operators/onnx__DeformConv.html> (19/22),
//! <https://onnx.ai/onnx/operators/onnx__Col2Im.html> (18). float32; the integer forms take
//! int8/uint8.

use proc_macro2::TokenStream;
use quote::quote;

use super::{
    layout_axes, lit, require_dtype, runtime_usize3, spatial_varies, usize3, EmitNames, NodeCx,
    OpCx, OpDef, TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// How padding is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoPad {
    /// Use the `pads` attribute.
    NotSet,
    /// Pad so that `output = ceil(input / stride)`, the odd pixel at the end.
    SameUpper,
    /// As `SameUpper`, the odd pixel at the start.
    SameLower,
    /// No padding.
    Valid,
}

impl AutoPad {
    /// The `same_upper` argument of the run-time resizing (`sinter_rt::conv::ConvParams::
    /// resized`, `sinter_rt::pool::PoolParams::resized`): `Some(true)` for `SAME_UPPER`,
    /// `Some(false)` for `SAME_LOWER`, `None` for explicit padding.
    pub(crate) fn same_tokens(self) -> TokenStream {
        match self {
            AutoPad::SameUpper => quote!(Some(true)),
            AutoPad::SameLower => quote!(Some(false)),
            AutoPad::NotSet | AutoPad::Valid => quote!(None),
        }
    }
}

/// Window attributes shared by Conv and the pools.
#[derive(Debug, Clone)]
pub struct Window {
    /// Kernel sizes, if given as an attribute.
    pub kernel: Option<Vec<usize>>,
    /// Strides (empty: all 1).
    pub strides: Vec<usize>,
    /// Dilations (empty: all 1).
    pub dilations: Vec<usize>,
    /// Explicit pads, begins then ends (empty: all 0).
    pub pads: Vec<usize>,
    /// Padding mode.
    pub auto_pad: AutoPad,
    /// Round output sizes up (pools only).
    pub ceil_mode: bool,
}

/// A window resolved against an input shape.
#[derive(Debug, Clone)]
pub struct Geometry {
    /// Kernel sizes.
    pub kernel: Vec<usize>,
    /// Strides.
    pub strides: Vec<usize>,
    /// Dilations.
    pub dilations: Vec<usize>,
    /// Padding before each axis.
    pub pads_begin: Vec<usize>,
    /// Padding after each axis.
    pub pads_end: Vec<usize>,
    /// Output sizes.
    pub output: Vec<usize>,
}

fn usizes(node: &NodeCx<'_>, name: &str) -> Result<Option<Vec<usize>>> {
    node.ints(name)?
        .map(|v| {
            v.iter()
                .map(|&x| {
                    usize::try_from(x).map_err(|_| {
                        CompileError::attribute(
                            name,
                            format!("expected non-negative values, found {x}"),
                        )
                    })
                })
                .collect()
        })
        .transpose()
}

impl Window {
    /// Parses the window attributes.
    pub fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let auto_pad = match node.string_or("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => {
                return Err(CompileError::attribute(
                    "auto_pad",
                    format!("unknown mode {other:?}"),
                ))
            }
        };
        Ok(Self {
            kernel: usizes(node, "kernel_shape")?,
            strides: usizes(node, "strides")?.unwrap_or_default(),
            dilations: usizes(node, "dilations")?.unwrap_or_default(),
            pads: usizes(node, "pads")?.unwrap_or_default(),
            auto_pad,
            ceil_mode: node.i64_or("ceil_mode", 0)? != 0,
        })
    }

    /// Resolves the window for `input` spatial sizes; `kernel` overrides the attribute.
    pub fn resolve(&self, input: &[usize], kernel: Option<&[usize]>) -> Result<Geometry> {
        let d = input.len();
        if d == 0 || d > 3 {
            return Err(CompileError::unsupported(format!(
                "{d} spatial dimensions (1 to 3 are supported)"
            )));
        }
        let kernel = kernel
            .map(<[usize]>::to_vec)
            .or_else(|| self.kernel.clone())
            .ok_or_else(|| CompileError::attribute("kernel_shape", "required"))?;
        let fill = |v: &Vec<usize>, name: &str, len: usize| -> Result<Vec<usize>> {
            if v.is_empty() {
                Ok(vec![if name == "pads" { 0 } else { 1 }; len])
            } else if v.len() == len {
                Ok(v.clone())
            } else {
                Err(CompileError::attribute(
                    name,
                    format!("expected {len} values, found {}", v.len()),
                ))
            }
        };
        if kernel.len() != d {
            return Err(CompileError::attribute(
                "kernel_shape",
                format!("has {} dims, input has {d} spatial dims", kernel.len()),
            ));
        }
        let strides = fill(&self.strides, "strides", d)?;
        let dilations = fill(&self.dilations, "dilations", d)?;
        let pads = fill(&self.pads, "pads", 2 * d)?;
        if strides.contains(&0) || dilations.contains(&0) {
            return Err(CompileError::attribute(
                "strides",
                "strides and dilations must be positive",
            ));
        }
        let (mut pads_begin, mut pads_end) = (pads[..d].to_vec(), pads[d..].to_vec());
        let mut output = Vec::with_capacity(d);
        for i in 0..d {
            let span = dilations[i] * (kernel[i].max(1) - 1) + 1;
            let o = match self.auto_pad {
                AutoPad::NotSet => {
                    let padded = input[i] + pads_begin[i] + pads_end[i];
                    if padded < span {
                        return Err(CompileError::shape(format!(
                            "window {span} exceeds padded input {padded}"
                        )));
                    }
                    if self.ceil_mode {
                        let mut o = (padded - span).div_ceil(strides[i]) + 1;
                        // The last window must start inside the input or its leading padding.
                        if (o - 1) * strides[i] >= input[i] + pads_begin[i] {
                            o -= 1;
                        }
                        o
                    } else {
                        (padded - span) / strides[i] + 1
                    }
                }
                AutoPad::Valid => {
                    pads_begin[i] = 0;
                    pads_end[i] = 0;
                    if input[i] < span {
                        return Err(CompileError::shape(format!(
                            "window {span} exceeds input {}",
                            input[i]
                        )));
                    }
                    (input[i] - span) / strides[i] + 1
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = input[i].div_ceil(strides[i]);
                    let total = ((o.max(1) - 1) * strides[i] + span).saturating_sub(input[i]);
                    let small = total / 2;
                    let (b, e) = if self.auto_pad == AutoPad::SameUpper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    pads_begin[i] = b;
                    pads_end[i] = e;
                    o
                }
            };
            output.push(o);
        }
        Ok(Geometry {
            kernel,
            strides,
            dilations,
            pads_begin,
            pads_end,
            output,
        })
    }
}

/// The output of a (transposed) convolution, `[N, M, *spatial]`, after checking that the
/// optional bias (input 2) has one value per output channel.
fn conv_output(
    cx: &OpCx<'_>,
    dtype: DType,
    batch: usize,
    cout: usize,
    spatial: &[usize],
) -> Result<Vec<TypeShape>> {
    if let Some(b) = cx.opt_input(2) {
        if b.shape != [cout] {
            return Err(CompileError::shape(format!(
                "B has shape {:?}, expected [{cout}]",
                b.shape
            )));
        }
    }
    let mut shape = vec![batch, cout];
    shape.extend(spatial);
    Ok(vec![TypeShape::new(dtype, shape)])
}

/// `Conv`: `Y = conv(X, W) + B`.
#[derive(Debug, Clone)]
pub struct Conv {
    /// The window.
    pub window: Window,
    /// Channel groups.
    pub group: usize,
    /// Activations (and scalar affine ops after them) fused into the convolution's epilogue,
    /// applied in order (by `passes::fuse_activation`).
    pub activations: Vec<super::FusedAct>,
    /// Set by `passes::fuse_residual`: input 3 is a tensor of the output's shape added before
    /// the activations (a skip connection).
    pub residual: bool,
    /// Set by `passes::pack_weights` when W holds the weights pre-packed for the GEMM (see
    /// `sinter_rt::conv::ConvParams::packed_weights`), or by `passes::channels_last` when it
    /// holds them packed for the channels-last kernels: W's ONNX shape `[M, C/group, *kernel]`.
    pub packed_from: Option<Vec<usize>>,
    /// Where the channels are in X, the residual and Y (set by `passes::channels_last`; never
    /// read from a model).
    pub layout: ConvLayout,
    /// A channels-last 3x3 stride-1 layer whose W holds Winograd-transformed weights of
    /// F(T x T, 3x3), with T (2 or 4) here (`sinter_rt::conv_winograd`; set by
    /// `passes::channels_last` at -O3).
    pub winograd: Option<usize>,
}

/// The layout of a float `Conv`'s image operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvLayout {
    /// ONNX's: `X: [N, C, *spatial]`, `Y: [N, M, *spatial]`.
    #[default]
    ChannelsFirst,
    /// `X: [N, *spatial, C]`, `Y` (and the residual) `[N, *spatial, M]`; W packed for
    /// `sinter_rt::conv_nhwc` (dense: column panels; depthwise: taps by channels).
    ChannelsLast,
    /// X channels first (a network's first layer), Y channels last: the kernel transposes X
    /// while it pads it. Dense only.
    FromChannelsFirst,
}

impl Conv {
    /// W's shape as ONNX defines it, also once the weights are packed.
    pub fn weight_shape(&self, cx: &OpCx<'_>) -> Result<Vec<usize>> {
        Ok(match &self.packed_from {
            Some(shape) => shape.clone(),
            None => cx.input(1)?.shape.to_vec(),
        })
    }

    pub(crate) fn geometry(&self, cx: &OpCx<'_>) -> Result<Geometry> {
        self.geometry_of(&self.x_channels_first(cx)?, cx)
    }

    /// X's shape channels first, whatever its layout.
    fn x_channels_first(&self, cx: &OpCx<'_>) -> Result<Vec<usize>> {
        let x = cx.input(0)?.shape;
        Ok(match self.layout {
            ConvLayout::ChannelsLast if x.len() >= 3 => {
                let mut shape = vec![x[0], x[x.len() - 1]];
                shape.extend(&x[1..x.len() - 1]);
                shape
            }
            _ => x.to_vec(),
        })
    }

    /// The run-time parameters of a node whose input's extents vary (batch or spatial): a
    /// `params` local of `sinter_rt::conv::ConvParams` resized from `PARAMS` (the bound's),
    /// and the output's shape `os0`; `None` for a fixed input.
    fn resized_params(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<Option<TokenStream>> {
        let x = cx.input(0)?;
        if !x.is_dynamic() {
            return Ok(None);
        }
        let r = x.shape.len();
        let is0 = names.in_shape(cx, 0);
        let spatial = layout_axes(r, self.layout == ConvLayout::ChannelsLast).1;
        let lead = 3 - spatial.len();
        let input = runtime_usize3(&is0, spatial);
        let g = self.geometry(cx)?;
        let pads_end = usize3(&g.pads_end, 0);
        let same = self.window.auto_pad.same_tokens();
        let resized = names.check(quote!(PARAMS.resized(#is0[0], #input, #pads_end, #same)));
        let m = lit(self.weight_shape(cx)?[0]);
        let out_spatial = (lead..3).map(|i| {
            let i = lit(i);
            quote!(params.output[#i])
        });
        let os0 = names.out_shape(0);
        let shape = if self.layout == ConvLayout::ChannelsFirst {
            quote!([params.batch, #m, #(#out_spatial),*])
        } else {
            quote!([params.batch, #(#out_spatial,)* #m])
        };
        Ok(Some(quote! {
            let params = #resized;
            let #os0 = #shape;
        }))
    }

    /// Whether each channel is convolved alone.
    pub(crate) fn is_depthwise(&self, cx: &OpCx<'_>) -> Result<bool> {
        let (x, w) = (self.x_channels_first(cx)?, self.weight_shape(cx)?);
        Ok(self.group > 1 && self.group == x[1] && self.group == w[0])
    }

    /// The working memory argument of a channels-last kernel call: the node's scratch when
    /// [`Conv::padded_len`] asks for some, else an empty slice.
    fn padded_tokens(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        Ok(if self.padded_len(cx)? > 0 {
            let s = names.scratch();
            quote!(#s)
        } else {
            quote!(&mut [])
        })
    }

    /// Floats of working memory: the zero-padded input a dense channels-last layer reads
    /// (`sinter_rt::conv_nhwc::nhwc_padded_len`, the same formula).
    pub(crate) fn padded_len(&self, cx: &OpCx<'_>) -> Result<usize> {
        if self.layout == ConvLayout::ChannelsFirst || self.is_depthwise(cx)? {
            return Ok(0);
        }
        let x = self.x_channels_first(cx)?;
        let g = self.geometry(cx)?;
        if let Some(t) = self.winograd {
            // `sinter_rt::conv_winograd::winograd_scratch_len`: the padded input, then the
            // transformed input and output, (T + 2)² positions of `tiles x C` and `tiles x M`.
            let [oh, ow] = g.output[..] else {
                return Err(CompileError::unsupported(
                    "Winograd convolution other than 2-D",
                ));
            };
            let (ty, tx) = (oh.div_ceil(t), ow.div_ceil(t));
            let positions = (t + 2) * (t + 2);
            let m = self.weight_shape(cx)?[0];
            let tiles = x[0] * ty * tx;
            // Tiles are rounded up to whole groups: 16 when the transformed weights fit in
            // 512 KiB (the layer runs fused), else all of them.
            let group = if positions * x[1] * m * 4 <= 512 << 10 {
                tiles.clamp(1, 16)
            } else {
                tiles.max(1)
            };
            let tiles = tiles.next_multiple_of(group);
            return Ok(x[0] * (t * ty + 2) * (t * tx + 2) * x[1] + positions * tiles * (x[1] + m));
        }
        let d = g.output.len();
        let mut in_place = self.layout == ConvLayout::ChannelsLast;
        let mut len = x[0] * x[1];
        for i in 0..d {
            let extent = g.output[i].saturating_sub(1) * g.strides[i]
                + g.kernel[i].saturating_sub(1) * g.dilations[i]
                + 1;
            in_place &= g.pads_begin[i] == 0 && extent <= x[2 + i];
            len *= extent;
        }
        Ok(if in_place { 0 } else { len })
    }

    /// The geometry for an input of (channels-first) shape `x`.
    pub(crate) fn geometry_of(&self, x: &[usize], cx: &OpCx<'_>) -> Result<Geometry> {
        let w = self.weight_shape(cx)?;
        if x.len() < 3 || w.len() != x.len() {
            return Err(CompileError::shape(format!(
                "X {x:?} and W {w:?} must have equal rank >= 3"
            )));
        }
        let g = self.window.resolve(&x[2..], Some(&w[2..]))?;
        if let Some(k) = &self.window.kernel {
            if k != &g.kernel {
                return Err(CompileError::attribute(
                    "kernel_shape",
                    format!("{k:?} differs from the weights' {:?}", g.kernel),
                ));
            }
        }
        Ok(g)
    }

    pub(crate) fn params(&self, cx: &OpCx<'_>) -> Result<TokenStream> {
        self.params_of(&self.x_channels_first(cx)?, cx)
    }

    /// `sinter_rt::conv::ConvParams` for an input of (channels-first) shape `x`.
    pub(crate) fn params_of(&self, x: &[usize], cx: &OpCx<'_>) -> Result<TokenStream> {
        let w = self.weight_shape(cx)?;
        let g = self.geometry_of(x, cx)?;
        let (batch, cin, cout, groups) = (lit(x[0]), lit(x[1]), lit(w[0]), lit(self.group));
        let packed = self.packed_from.is_some() && self.layout == ConvLayout::ChannelsFirst;
        let input = usize3(&x[2..], 1);
        let output = usize3(&g.output, 1);
        let kernel = usize3(&g.kernel, 1);
        let strides = usize3(&g.strides, 1);
        let dilations = usize3(&g.dilations, 1);
        let pads = usize3(&g.pads_begin, 0);
        Ok(quote! {
            ::sinter_rt::conv::ConvParams {
                batch: #batch, in_channels: #cin, out_channels: #cout, groups: #groups,
                input: #input, output: #output, kernel: #kernel,
                strides: #strides, dilations: #dilations, pads: #pads,
                packed_weights: #packed,
            }
        })
    }
}

impl OpDef for Conv {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let group = node.usize_or("group", 1)?;
        if group == 0 {
            return Err(CompileError::attribute("group", "must be positive"));
        }
        Ok(Self {
            window: Window::parse(node)?,
            group,
            activations: Vec::new(),
            residual: false,
            packed_from: None,
            layout: ConvLayout::ChannelsFirst,
            winograd: None,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (x, w) = (cx.input(0)?, self.weight_shape(cx)?);
        require_dtype(x.dtype, &[DType::F32], "X")?;
        let x_first = self.x_channels_first(cx)?;
        let g = self.geometry(cx)?;
        let (cin, cout) = (x_first[1], w[0]);
        if cin % self.group != 0 || cout % self.group != 0 || w[1] * self.group != cin {
            return Err(CompileError::shape(format!(
                "channels do not fit group {}: X has {cin}, W is {w:?}",
                self.group
            )));
        }
        let mut out = conv_output(cx, x.dtype, x.shape[0], cout, &g.output)?;
        if self.layout != ConvLayout::ChannelsFirst {
            // [N, *spatial, M].
            let shape = &mut out[0].shape;
            let m = shape.remove(1);
            shape.push(m);
        }
        if x.is_dynamic() {
            // The output's extents vary with the input's (its capacity is the bound's).
            let batch = x.dynamic.first().copied().unwrap_or(false);
            let in_spatial = layout_axes(x.shape.len(), self.layout == ConvLayout::ChannelsLast).1;
            let spatial = x.dynamic[in_spatial].iter().copied();
            let dynamic: Vec<bool> = if self.layout == ConvLayout::ChannelsFirst {
                [batch, false].into_iter().chain(spatial).collect()
            } else {
                std::iter::once(batch)
                    .chain(spatial)
                    .chain([false])
                    .collect()
            };
            let shape = std::mem::take(&mut out[0].shape);
            out[0] = TypeShape::dynamic(x.dtype, shape, dynamic);
        }
        if self.residual {
            let r = cx.input(3)?;
            if r.dtype != x.dtype || r.shape != out[0].shape.as_slice() {
                return Err(CompileError::shape(format!(
                    "the fused residual has shape {:?}, expected {:?}",
                    r.shape, out[0].shape
                )));
            }
        }
        Ok(out)
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        // Spatial extents that vary (a batch alone varying runs as a loop over samples); the
        // channels, weights and bias fixed.
        cx.input(0)
            .is_ok_and(|x| spatial_varies(&x, self.layout == ConvLayout::ChannelsLast))
            && cx
                .inputs
                .iter()
                .skip(1)
                .take(2)
                .flatten()
                .all(|o| !o.is_dynamic())
    }

    fn in_place_input(&self, cx: &OpCx<'_>) -> Option<usize> {
        // A dense channels-last convolution (direct or Winograd) of fixed shape adds its
        // residual where it lies: the residual's buffer becomes the output's.
        let dense_last = self.layout == ConvLayout::ChannelsLast
            && !self.is_depthwise(cx).unwrap_or(true)
            && !cx.input(0).is_ok_and(|x| x.is_dynamic());
        (self.residual && dense_last).then_some(3)
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let params = self.params(cx)?;
        let resized = self.resized_params(cx, names)?;
        let p = if resized.is_some() {
            quote!(&params)
        } else {
            quote!(&PARAMS)
        };
        let (i0, i1, o0, exec) = (
            names.input(0),
            names.input(1),
            names.output(0),
            names.exec(),
        );
        let bias = names.opt_input(cx, 2);
        let acts = self.activations.iter().map(|a| a.tokens());
        let act = quote!(&[#(#acts),*]);
        let residual = if self.residual && names.in_place != Some(3) {
            let i3 = names.input(3);
            quote!(Some(#i3))
        } else {
            quote!(None)
        };
        let call = match self.layout {
            ConvLayout::ChannelsFirst => quote! {
                ::sinter_rt::conv::conv_f32_exec(#exec, #p, #i0, #i1, #bias, #residual, #o0, #act);
            },
            _ if self.is_depthwise(cx)? => quote! {
                ::sinter_rt::conv_nhwc::depthwise_nhwc_f32_exec(
                    #exec, #p, #i0, #i1, #bias, #residual, #o0, #act,
                );
            },
            ConvLayout::ChannelsLast if names.in_place == Some(3) => {
                // `o0` holds the residual (see `in_place_input`).
                let padded = self.padded_tokens(cx, names)?;
                let f = if let Some(t) = self.winograd {
                    let t = lit(t);
                    quote!(conv_winograd::conv_winograd_accumulate_f32_exec::<#t>)
                } else {
                    quote!(conv_nhwc::conv_nhwc_accumulate_f32_exec)
                };
                quote! {
                    ::sinter_rt::#f(#exec, #p, #i0, #i1, #bias, #padded, #o0, #act);
                }
            }
            layout => {
                let padded = self.padded_tokens(cx, names)?;
                let f = if let Some(t) = self.winograd {
                    let t = lit(t);
                    quote!(conv_winograd::conv_winograd_f32_exec::<#t>)
                } else if layout == ConvLayout::FromChannelsFirst {
                    quote!(conv_nhwc::conv_nhwc_from_nchw_f32_exec)
                } else {
                    quote!(conv_nhwc::conv_nhwc_f32_exec)
                };
                quote! {
                    ::sinter_rt::#f(
                        #exec, #p, #i0, #i1, #bias, #residual, #padded, #o0, #act,
                    );
                }
            }
        };
        Ok(quote! {
            const PARAMS: ::sinter_rt::conv::ConvParams = #params;
            #resized
            #call
        })
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        match self.padded_len(cx) {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(TypeShape::new(DType::F32, vec![n])),
        }
    }
}

/// `sinter::ConcatConv`: a channels-last `Concat` over the channels whose inputs were all
/// dense channels-last convolutions that nothing else read (SqueezeNet's fire modules,
/// GoogLeNet's inception blocks): each convolution writes its channels of the concatenation
/// in place, at the concatenation's row stride, so the concatenation is never copied.
/// Inputs: each convolution's X, W and (if it has one) B in turn. Created by
/// `passes::fuse_concat_conv` only, never read from a model.
#[derive(Debug, Clone)]
pub struct ConcatConv {
    /// The convolutions, in the concatenation's order (channels last, dense, no residual).
    pub parts: Vec<Conv>,
    /// How many inputs each convolution takes (2, or 3 with a bias).
    pub arity: Vec<usize>,
}

impl ConcatConv {
    /// Each convolution with the context of its own inputs.
    fn each<'a>(&'a self, cx: &OpCx<'a>) -> Result<Vec<(&'a Conv, OpCx<'a>, usize)>> {
        if self.parts.len() != self.arity.len()
            || self.arity.iter().sum::<usize>() != cx.inputs.len()
        {
            return Err(CompileError::malformed(format!(
                "internal: sinter::ConcatConv of {} convolutions takes {} inputs, not {}",
                self.parts.len(),
                self.arity.iter().sum::<usize>(),
                cx.inputs.len()
            )));
        }
        let mut first = 0;
        let mut each = Vec::new();
        for (conv, &arity) in self.parts.iter().zip(&self.arity) {
            let sub = OpCx {
                inputs: cx.inputs[first..first + arity].to_vec(),
                outputs: Vec::new(),
            };
            each.push((conv, sub, first));
            first += arity;
        }
        Ok(each)
    }
}

impl OpDef for ConcatConv {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Err(CompileError::malformed(
            "internal: sinter::ConcatConv is created by the compiler only",
        ))
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let mut shape: Option<Vec<usize>> = None;
        for (i, (conv, sub, _)) in self.each(cx)?.into_iter().enumerate() {
            if conv.layout != ConvLayout::ChannelsLast
                || conv.residual
                || conv.is_depthwise(&sub)?
            {
                return Err(CompileError::malformed(format!(
                    "internal: sinter::ConcatConv convolution {i} is not dense channels last"
                )));
            }
            let part = conv.infer(&sub)?.remove(0).shape;
            match &mut shape {
                None => shape = Some(part),
                Some(shape) => {
                    let rank = shape.len();
                    if part.len() != rank || part[..rank - 1] != shape[..rank - 1] {
                        return Err(CompileError::shape(format!(
                            "convolution {i} gives {part:?}, which does not fit {shape:?} \
                             along the channels"
                        )));
                    }
                    shape[rank - 1] += part[rank - 1];
                }
            }
        }
        let shape = shape.ok_or_else(|| CompileError::malformed("no convolutions"))?;
        Ok(vec![TypeShape::new(DType::F32, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (o0, exec) = (names.output(0), names.exec());
        let ld = *cx.output(0)?.shape.last().unwrap_or(&0);
        let mut offset = 0;
        let mut calls = Vec::new();
        for (conv, sub, first) in self.each(cx)? {
            let params = conv.params(&sub)?;
            let (x, w) = (names.input(first), names.input(first + 1));
            let bias = names.opt_input(cx, first + 2);
            let padded = conv.padded_tokens(&sub, names)?;
            let f = if let Some(t) = conv.winograd {
                let t = lit(t);
                quote!(conv_winograd::conv_winograd_into_f32_exec::<#t>)
            } else {
                quote!(conv_nhwc::conv_nhwc_into_f32_exec)
            };
            let acts = conv.activations.iter().map(|a| a.tokens());
            let (ld_lit, offset_lit) = (lit(ld), lit(offset));
            calls.push(quote! {
                {
                    const PARAMS: ::sinter_rt::conv::ConvParams = #params;
                    ::sinter_rt::#f(
                        #exec, &PARAMS, #x, #w, #bias, #padded, (&mut *#o0, #ld_lit, #offset_lit),
                        &[#(#acts),*],
                    );
                }
            });
            offset += conv.weight_shape(&sub)?[0];
        }
        Ok(quote!(#(#calls)*))
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let mut len = 0;
        for (conv, sub, _) in self.each(cx).ok()? {
            len = len.max(conv.padded_len(&sub).ok()?);
        }
        (len > 0).then(|| TypeShape::new(DType::F32, vec![len]))
    }
}

/// `sinter::ConvMaxPool`: a dense channels-last `Conv` and the float `MaxPool` that alone
/// reads its output, run as one pass (`sinter_rt::conv_pool`): a few convolution rows at a
/// time go to a small slot of working memory that the pooling reads from cache, so the
/// convolution's output (a network stem's largest tensor) is never in memory whole. Inputs:
/// the convolution's X, W and (if it has one) B. Created by `passes::fuse_conv_pool` only,
/// never read from a model.
#[derive(Debug, Clone)]
pub struct ConvMaxPool {
    /// The convolution (channels last or from channels first, one group, no residual, no
    /// Winograd).
    pub conv: Conv,
    /// The pooling (max, channels last, 2-D, undilated).
    pub pool: super::pool::Pool,
}

/// Floats of convolution rows one slot of `sinter_rt::conv_pool` aims at, and the slots it
/// holds (`SLOT_FLOATS` and `CONV_POOL_BANDS` there).
const CONV_POOL_SLOT_FLOATS: usize = 1 << 14;
const CONV_POOL_BANDS: usize = 4;

impl ConvMaxPool {
    /// The convolution's output shape (`[N, H, W, M]`) and the pooling's geometry over it.
    fn shapes(&self, cx: &OpCx<'_>) -> Result<(Vec<usize>, Geometry)> {
        let y = self.conv.infer(cx)?.remove(0).shape;
        if y.len() != 4 {
            return Err(CompileError::malformed(
                "internal: sinter::ConvMaxPool of other than a 2-D convolution",
            ));
        }
        let g = self.pool.window.resolve(&y[1..3], None)?;
        Ok((y, g))
    }

    /// Working memory: the convolution's padded input, then the slots (the formula of
    /// `sinter_rt::conv_pool::conv_max_pool_scratch_len`).
    fn scratch_len(&self, cx: &OpCx<'_>) -> Result<usize> {
        let (y, g) = self.shapes(cx)?;
        let row = y[2] * y[3];
        let chunk =
            (CONV_POOL_SLOT_FLOATS / (g.strides[0] * row).max(1)).clamp(1, g.output[0].max(1));
        let slot_rows = (chunk - 1) * g.strides[0] + g.kernel[0];
        Ok(self.conv.padded_len(cx)? + CONV_POOL_BANDS * slot_rows * row)
    }
}

impl OpDef for ConvMaxPool {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        super::internal_op(node)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        if self.conv.layout == ConvLayout::ChannelsFirst
            || self.conv.group != 1
            || self.conv.residual
            || self.conv.winograd.is_some()
            || !self.pool.max
            || !self.pool.channels_last
            || self.pool.lp.is_some()
        {
            return Err(CompileError::malformed(
                "internal: sinter::ConvMaxPool of other than a dense channels-last convolution \
                 and a channels-last max pool",
            ));
        }
        let (y, _) = self.shapes(cx)?;
        let operand = super::Operand {
            dtype: DType::F32,
            shape: &y,
            constant: None,
            dynamic: &[],
            range: None,
            syms: &[],
        };
        let pool_cx = OpCx {
            inputs: vec![Some(operand)],
            outputs: Vec::new(),
        };
        let mut out = self.pool.infer(&pool_cx)?;
        out.truncate(1);
        Ok(out)
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let params = self.conv.params(cx)?;
        let (y, g) = self.shapes(cx)?;
        let pool = super::pool::params_tokens(y[0], &y[1..3], &g);
        let (i0, i1, o0, exec) = (
            names.input(0),
            names.input(1),
            names.output(0),
            names.exec(),
        );
        let bias = names.opt_input(cx, 2);
        let scratch = names.scratch();
        let channels_first = self.conv.layout == ConvLayout::FromChannelsFirst;
        let acts = self.conv.activations.iter().map(|a| a.tokens());
        Ok(quote! {
            const PARAMS: ::sinter_rt::conv::ConvParams = #params;
            const POOL: ::sinter_rt::pool::PoolParams = #pool;
            ::sinter_rt::conv_pool::conv_max_pool_nhwc_f32_exec(
                #exec, &PARAMS, &POOL, (#i0, #channels_first), #i1, #bias, #scratch, #o0,
                &[#(#acts),*],
            );
        })
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let len = self.scratch_len(cx).ok()?;
        (len > 0).then(|| TypeShape::new(DType::F32, vec![len]))
    }
}

/// `sinter::DepthwisePointwise`: a channels-last depthwise `Conv` and the pointwise (1x1)
/// `Conv` that alone reads its output, run as one pass (`sinter_rt::conv_dw_pw`): a few
/// depthwise rows at a time go to a small slot of working memory that the pointwise layer reads
/// from cache. Inputs, six slots: the depthwise layer's X, W and B, the pointwise layer's W and
/// B, and the residual the pointwise layer adds (B and the residual may be omitted). With
/// `expand`, the pointwise layer whose output alone the depthwise layer reads runs in the same
/// pass too (a whole inverted-residual block), and two slots go first: its W and B, X being
/// its input. Created by `passes::fuse_dw_pw` only, never read from a model.
#[derive(Debug, Clone)]
pub struct DepthwisePointwise {
    /// The expansion before the depthwise layer, if it is fused too (channels last, one
    /// group, 1x1, stride 1, unpadded, no residual).
    pub expand: Option<Box<Conv>>,
    /// The depthwise layer (channels last, no residual).
    pub dw: Conv,
    /// The pointwise layer (channels last, one group, 1x1, stride 1, unpadded; `residual`
    /// when the last input is present).
    pub pw: Conv,
}

/// Floats of depthwise rows one slot of `sinter_rt::conv_dw_pw` aims at, and the slots it
/// holds (`SLOT_FLOATS` and `DW_PW_BANDS` there).
const DW_PW_SLOT_FLOATS: usize = 1 << 14;
const DW_PW_BANDS: usize = 4;
/// Pixels the pointwise layer takes at least per step (`STEP_PIXELS` there).
const DW_PW_STEP_PIXELS: usize = 256;

/// An operand of shape `shape` computed by an earlier layer of a fused op.
fn computed(shape: &[usize]) -> super::Operand<'_> {
    super::Operand {
        dtype: DType::F32,
        shape,
        constant: None,
        dynamic: &[],
        range: None,
        syms: &[],
    }
}

impl DepthwisePointwise {
    /// Input slots before the depthwise layer's W: X, and the expansion's W and B if fused.
    fn base(&self) -> usize {
        if self.expand.is_some() {
            3
        } else {
            1
        }
    }

    /// The expansion's context (X, W, B) and output shape, if it is fused.
    fn expansion<'a>(&self, cx: &OpCx<'a>) -> Result<Option<(OpCx<'a>, Vec<usize>)>> {
        self.expand
            .as_deref()
            .map(|expand| expansion_of(expand, cx, "sinter::DepthwisePointwise"))
            .transpose()
    }

    /// The depthwise layer's context (X, W, B; X is the expansion's output `e` if fused) and
    /// its output's shape.
    fn depthwise<'a>(
        &self,
        cx: &OpCx<'a>,
        e: Option<&'a [usize]>,
    ) -> Result<(OpCx<'a>, Vec<usize>)> {
        let base = self.base();
        if cx.inputs.len() != base + 5 {
            return Err(CompileError::malformed(format!(
                "internal: sinter::DepthwisePointwise takes {} inputs, not {}",
                base + 5,
                cx.inputs.len()
            )));
        }
        let x = match e {
            Some(e) => Some(computed(e)),
            None => cx.inputs[0],
        };
        let dw_cx = OpCx {
            inputs: vec![x, cx.inputs[base], cx.inputs[base + 1]],
            outputs: Vec::new(),
        };
        let y = self.dw.infer(&dw_cx)?.remove(0).shape;
        if y.len() != 4 {
            return Err(CompileError::malformed(
                "internal: sinter::DepthwisePointwise of other than 2-D layers",
            ));
        }
        Ok((dw_cx, y))
    }

    /// The pointwise layer's context, its X the depthwise output `y`.
    fn pointwise<'a>(&self, cx: &OpCx<'a>, y: &'a [usize]) -> OpCx<'a> {
        let base = self.base();
        OpCx {
            inputs: vec![
                Some(computed(y)),
                cx.inputs[base + 2],
                cx.inputs[base + 3],
                cx.inputs[base + 4],
            ],
            outputs: Vec::new(),
        }
    }
}

impl OpDef for DepthwisePointwise {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        super::internal_op(node)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        if cx.inputs.len() != self.base() + 5 {
            return Err(CompileError::malformed(format!(
                "internal: sinter::DepthwisePointwise takes {} inputs, not {}",
                self.base() + 5,
                cx.inputs.len()
            )));
        }
        let expansion = self.expansion(cx)?;
        let (dw_cx, y) = self.depthwise(cx, expansion.as_ref().map(|(_, e)| &e[..]))?;
        let pw_cx = self.pointwise(cx, &y);
        let pw_w = self.pw.weight_shape(&pw_cx)?;
        if self.dw.layout != ConvLayout::ChannelsLast
            || self.pw.layout != ConvLayout::ChannelsLast
            || !self.dw.is_depthwise(&dw_cx)?
            || self.dw.residual
            || self.pw.group != 1
            || self.pw.winograd.is_some()
            || pw_w.get(2..) != Some(&[1, 1][..])
            || self.pw.residual != cx.inputs[self.base() + 4].is_some()
        {
            return Err(CompileError::malformed(
                "internal: sinter::DepthwisePointwise of other than a channels-last depthwise \
                 and 1x1 convolution",
            ));
        }
        let out = self.pw.infer(&pw_cx)?;
        if out[0].shape.get(..3) != Some(&y[..3]) {
            return Err(CompileError::malformed(
                "internal: sinter::DepthwisePointwise's 1x1 layer changes the image size",
            ));
        }
        Ok(out)
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let expansion = self.expansion(cx)?;
        let (dw_cx, y) = self.depthwise(cx, expansion.as_ref().map(|(_, e)| &e[..]))?;
        let pw_cx = self.pointwise(cx, &y);
        let (dw_params, pw_params) = (self.dw.params(&dw_cx)?, self.pw.params(&pw_cx)?);
        let base = self.base();
        let (x, dw_w, pw_w, o0, exec) = (
            names.input(0),
            names.input(base),
            names.input(base + 2),
            names.output(0),
            names.exec(),
        );
        let (dw_b, pw_b, residual) = (
            names.opt_input(cx, base + 1),
            names.opt_input(cx, base + 3),
            names.opt_input(cx, base + 4),
        );
        let scratch = names.scratch();
        let dw_acts = self.dw.activations.iter().map(|a| a.tokens());
        let pw_acts = self.pw.activations.iter().map(|a| a.tokens());
        let layers = quote! {
            const DW: ::sinter_rt::conv::ConvParams = #dw_params;
            const PW: ::sinter_rt::conv::ConvParams = #pw_params;
        };
        let dw_ops = quote!(::sinter_rt::conv_dw_pw::LayerOperands { w: #dw_w, bias: #dw_b, acts: &[#(#dw_acts),*] });
        let pw_ops = quote!(::sinter_rt::conv_dw_pw::LayerOperands { w: #pw_w, bias: #pw_b, acts: &[#(#pw_acts),*] });
        let (Some(expand), Some((ex_cx, _))) = (&self.expand, &expansion) else {
            return Ok(quote! {
                #layers
                ::sinter_rt::conv_dw_pw::depthwise_pointwise_nhwc_f32_exec(
                    #exec, &DW, #dw_ops, &PW, #pw_ops, #x, #residual, #scratch, #o0,
                );
            });
        };
        let ex_params = expand.params(ex_cx)?;
        let (ex_w, ex_b) = (names.input(1), names.opt_input(cx, 2));
        let ex_acts = expand.activations.iter().map(|a| a.tokens());
        Ok(quote! {
            const EX: ::sinter_rt::conv::ConvParams = #ex_params;
            #layers
            ::sinter_rt::conv_dw_pw::inverted_residual_nhwc_f32_exec(
                #exec,
                (&EX, ::sinter_rt::conv_dw_pw::LayerOperands { w: #ex_w, bias: #ex_b, acts: &[#(#ex_acts),*] }),
                (&DW, #dw_ops),
                (&PW, #pw_ops),
                #x, #residual, #scratch, #o0,
            );
        })
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        // `sinter_rt::conv_dw_pw::depthwise_pointwise_scratch_len`: the slots of rows, and
        // with an expansion `inverted_residual_scratch_len`: the slots of expanded rows too.
        let expansion = self.expansion(cx).ok()?;
        let e = expansion.as_ref().map(|(_, e)| &e[..]);
        let (dw_cx, y) = self.depthwise(cx, e).ok()?;
        let row = y[2] * y[3];
        let slot_rows = dw_slot_rows(&y);
        let expanded = match e {
            Some(e) => expanded_len(&self.dw, &dw_cx, slot_rows, e)?,
            None => 0,
        };
        let len = DW_PW_BANDS * (expanded + slot_rows * row);
        (len > 0).then(|| TypeShape::new(DType::F32, vec![len]))
    }
}

/// Depthwise rows one slot of `sinter_rt::conv_dw_pw` holds for a depthwise output of shape
/// `y` (`slot_rows` there).
fn dw_slot_rows(y: &[usize]) -> usize {
    let row = y[2] * y[3];
    (DW_PW_SLOT_FLOATS / row.max(1))
        .max(DW_PW_STEP_PIXELS.div_ceil(y[2].max(1)))
        .clamp(1, (y[0] * y[1]).max(1))
}

/// Floats of expanded rows one slot of `sinter_rt::conv_dw_pw` holds (`expanded_rows` there:
/// the rows of the expanded image `e` under `slot_rows` rows of the depthwise layer `dw`).
fn expanded_len(dw: &Conv, dw_cx: &OpCx<'_>, slot_rows: usize, e: &[usize]) -> Option<usize> {
    let g = dw.geometry(dw_cx).ok()?;
    let reach = (g.kernel.first()? - 1) * g.dilations.first()? + 1;
    Some(((slot_rows - 1) * g.strides.first()? + reach).min(e[1]) * e[2] * e[3])
}

/// The expansion's context (inputs 0-2: X, W, B) and output shape, checked to be a
/// channels-last 2-D 1x1 convolution without a residual (`op` names the fused op in errors).
fn expansion_of<'a>(expand: &Conv, cx: &OpCx<'a>, op: &str) -> Result<(OpCx<'a>, Vec<usize>)> {
    let ex_cx = OpCx {
        inputs: cx.inputs.get(..3).unwrap_or_default().to_vec(),
        outputs: Vec::new(),
    };
    let e = expand.infer(&ex_cx)?.remove(0).shape;
    let w = expand.weight_shape(&ex_cx)?;
    if expand.layout != ConvLayout::ChannelsLast
        || expand.group != 1
        || expand.residual
        || expand.winograd.is_some()
        || w.get(2..) != Some(&[1, 1][..])
        || e.len() != 4
    {
        return Err(CompileError::malformed(format!(
            "internal: {op}'s expansion is not a channels-last 2-D 1x1 convolution"
        )));
    }
    Ok((ex_cx, e))
}

/// `sinter::ExpandDepthwise`: a channels-last pointwise (1x1) `Conv`, the expansion, and the
/// depthwise `Conv` that alone reads its output, run as one pass
/// (`sinter_rt::conv_dw_pw::expand_depthwise_nhwc_f32_exec`): each step expands only the rows
/// its depthwise rows read, so the expanded image is never in memory whole. For a depthwise
/// output that other ops read too (EfficientNet's squeeze-excitation), where
/// `sinter::DepthwisePointwise` cannot take the block whole. Inputs, five slots: the
/// expansion's X, W and B, and the depthwise layer's W and B (the Bs may be omitted). Created
/// by `passes::fuse_dw_pw` only, never read from a model.
#[derive(Debug, Clone)]
pub struct ExpandDepthwise {
    /// The expansion (channels last, one group, 1x1, stride 1, unpadded, no residual).
    pub expand: Conv,
    /// The depthwise layer (channels last, 2-D, no residual).
    pub dw: Conv,
}

impl ExpandDepthwise {
    /// The two layers' contexts and the depthwise output's shape.
    fn layers<'a>(&self, cx: &OpCx<'a>, e: &'a [usize]) -> Result<(OpCx<'a>, Vec<usize>)> {
        let dw_cx = OpCx {
            inputs: vec![Some(computed(e)), cx.inputs[3], cx.inputs[4]],
            outputs: Vec::new(),
        };
        let y = self.dw.infer(&dw_cx)?.remove(0).shape;
        if self.dw.layout != ConvLayout::ChannelsLast
            || !self.dw.is_depthwise(&dw_cx)?
            || self.dw.residual
            || self.dw.winograd.is_some()
            || y.len() != 4
        {
            return Err(CompileError::malformed(
                "internal: sinter::ExpandDepthwise of other than a 2-D channels-last depthwise \
                 convolution",
            ));
        }
        Ok((dw_cx, y))
    }

    /// The expansion's context and output shape, after checking the input count.
    fn expansion<'a>(&self, cx: &OpCx<'a>) -> Result<(OpCx<'a>, Vec<usize>)> {
        if cx.inputs.len() != 5 {
            return Err(CompileError::malformed(format!(
                "internal: sinter::ExpandDepthwise takes 5 inputs, not {}",
                cx.inputs.len()
            )));
        }
        expansion_of(&self.expand, cx, "sinter::ExpandDepthwise")
    }
}

impl OpDef for ExpandDepthwise {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        super::internal_op(node)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (_, e) = self.expansion(cx)?;
        let (dw_cx, _) = self.layers(cx, &e)?;
        self.dw.infer(&dw_cx)
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (ex_cx, e) = self.expansion(cx)?;
        let (dw_cx, _) = self.layers(cx, &e)?;
        let (ex_params, dw_params) = (self.expand.params(&ex_cx)?, self.dw.params(&dw_cx)?);
        let (x, ex_w, dw_w, o0, exec) = (
            names.input(0),
            names.input(1),
            names.input(3),
            names.output(0),
            names.exec(),
        );
        let (ex_b, dw_b) = (names.opt_input(cx, 2), names.opt_input(cx, 4));
        let scratch = names.scratch();
        let ex_acts = self.expand.activations.iter().map(|a| a.tokens());
        let dw_acts = self.dw.activations.iter().map(|a| a.tokens());
        Ok(quote! {
            const EX: ::sinter_rt::conv::ConvParams = #ex_params;
            const DW: ::sinter_rt::conv::ConvParams = #dw_params;
            ::sinter_rt::conv_dw_pw::expand_depthwise_nhwc_f32_exec(
                #exec,
                (&EX, ::sinter_rt::conv_dw_pw::LayerOperands { w: #ex_w, bias: #ex_b, acts: &[#(#ex_acts),*] }),
                (&DW, ::sinter_rt::conv_dw_pw::LayerOperands { w: #dw_w, bias: #dw_b, acts: &[#(#dw_acts),*] }),
                #x, #scratch, #o0,
            );
        })
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        // `sinter_rt::conv_dw_pw::expand_depthwise_scratch_len`: the slots of expanded rows.
        let (_, e) = self.expansion(cx).ok()?;
        let (dw_cx, y) = self.layers(cx, &e).ok()?;
        let len = DW_PW_BANDS * expanded_len(&self.dw, &dw_cx, dw_slot_rows(&y), &e)?;
        (len > 0).then(|| TypeShape::new(DType::F32, vec![len]))
    }
}

/// `ConvTranspose` (opset 1/11/22): the gradient of `Conv`, with `output_padding`,
/// `output_shape` and `auto_pad`.
#[derive(Debug, Clone)]
pub struct ConvTranspose {
    /// Strides, dilations, pads, auto_pad and kernel_shape.
    pub window: Window,
    /// Channel groups.
    pub group: usize,
    /// Extra output positions at the end of each axis (empty: 0).
    pub output_padding: Vec<usize>,
    /// Explicit output spatial shape, if given.
    pub output_shape: Option<Vec<usize>>,
    /// Activations fused after the transposed convolution, applied in order per output
    /// channel as it is finished (by `passes::fuse_activation`).
    pub activations: Vec<super::FusedAct>,
}

/// A transposed convolution resolved against its operands.
pub(crate) struct TransposeGeometry {
    /// Kernel extent per spatial axis.
    pub(crate) kernel: Vec<usize>,
    /// Strides per spatial axis.
    pub(crate) strides: Vec<usize>,
    /// Dilations per spatial axis.
    pub(crate) dilations: Vec<usize>,
    /// Output positions cut at the start of each axis (negative: added).
    pub(crate) pads: Vec<isize>,
    /// Output extent per spatial axis.
    pub(crate) output: Vec<usize>,
}

impl ConvTranspose {
    /// The geometry for input shape `x` and weights shape `w`.
    pub(crate) fn geometry(&self, x: &[usize], w: &[usize]) -> Result<TransposeGeometry> {
        if x.len() < 3 || w.len() != x.len() {
            return Err(CompileError::shape(format!(
                "X {x:?} and W {w:?} must have equal rank >= 3"
            )));
        }
        let d = x.len() - 2;
        if d > 3 {
            return Err(CompileError::unsupported(format!(
                "{d} spatial dimensions (1 to 3 are supported)"
            )));
        }
        let kernel = w[2..].to_vec();
        if let Some(k) = &self.window.kernel {
            if k != &kernel {
                return Err(CompileError::attribute(
                    "kernel_shape",
                    format!("{k:?} differs from the weights' {kernel:?}"),
                ));
            }
        }
        let fill = |v: &[usize], name: &str, len: usize, default: usize| -> Result<Vec<usize>> {
            if v.is_empty() {
                Ok(vec![default; len])
            } else if v.len() == len {
                Ok(v.to_vec())
            } else {
                Err(CompileError::attribute(
                    name,
                    format!("expected {len} values, found {}", v.len()),
                ))
            }
        };
        let strides = fill(&self.window.strides, "strides", d, 1)?;
        let dilations = fill(&self.window.dilations, "dilations", d, 1)?;
        let output_padding = fill(&self.output_padding, "output_padding", d, 0)?;
        let pads = fill(&self.window.pads, "pads", 2 * d, 0)?;
        if strides.contains(&0) || dilations.contains(&0) {
            return Err(CompileError::attribute(
                "strides",
                "strides and dilations must be positive",
            ));
        }
        let to_i =
            |v: usize| i64::try_from(v).map_err(|_| CompileError::shape("dimension exceeds i64"));
        let mut out_pads = Vec::with_capacity(d);
        let mut output = Vec::with_capacity(d);
        for i in 0..d {
            let span = dilations[i]
                .checked_mul(kernel[i].saturating_sub(1))
                .map(|v| v + 1)
                .ok_or_else(|| CompileError::shape("kernel span overflows"))?;
            let full = to_i(strides[i])? * (to_i(x[2 + i])? - 1).max(0)
                + to_i(output_padding[i])?
                + to_i(span)?;
            let target = match (&self.output_shape, self.window.auto_pad) {
                (Some(shape), _) => Some(to_i(*shape.get(i).ok_or_else(|| {
                    CompileError::attribute("output_shape", format!("needs {d} values"))
                })?)?),
                (None, AutoPad::SameUpper | AutoPad::SameLower) => {
                    Some(to_i(x[2 + i])? * to_i(strides[i])?)
                }
                _ => None,
            };
            let (begin, size) = match target {
                Some(t) => {
                    let total = full - t;
                    let half = total.div_euclid(2);
                    let begin = if self.window.auto_pad == AutoPad::SameUpper {
                        half
                    } else {
                        total - half
                    };
                    (begin, t)
                }
                None => {
                    if self.window.auto_pad == AutoPad::Valid {
                        (0, full)
                    } else {
                        let (b, e) = (to_i(pads[i])?, to_i(pads[d + i])?);
                        (b, full - b - e)
                    }
                }
            };
            let size = usize::try_from(size).map_err(|_| {
                CompileError::shape(format!("output size {size} on spatial axis {i}"))
            })?;
            let begin =
                isize::try_from(begin).map_err(|_| CompileError::shape("padding exceeds isize"))?;
            out_pads.push(begin);
            output.push(size);
        }
        Ok(TransposeGeometry {
            kernel,
            strides,
            dilations,
            pads: out_pads,
            output,
        })
    }

    fn params(&self, cx: &OpCx<'_>) -> Result<(TokenStream, usize)> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        let g = self.geometry(x.shape, w.shape)?;
        let cout = w.shape[1] * self.group;
        let scratch = cout / self.group
            * g.kernel.iter().product::<usize>()
            * x.shape[2..].iter().product::<usize>();
        let (batch, cin, cout, groups) =
            (lit(x.shape[0]), lit(x.shape[1]), lit(cout), lit(self.group));
        let input = usize3(&x.shape[2..], 1);
        let output = usize3(&g.output, 1);
        let kernel = usize3(&g.kernel, 1);
        let strides = usize3(&g.strides, 1);
        let dilations = usize3(&g.dilations, 1);
        // Right-aligned like every other spatial array (see `usize3`).
        let lead = 3usize.saturating_sub(g.pads.len());
        let pads = (0..3).map(|i| {
            proc_macro2::Literal::isize_unsuffixed(if i < lead {
                0
            } else {
                g.pads.get(i - lead).copied().unwrap_or(0)
            })
        });
        Ok((
            quote! {
                ::sinter_rt::conv::ConvTransposeParams {
                    batch: #batch, in_channels: #cin, out_channels: #cout, groups: #groups,
                    input: #input, output: #output, kernel: #kernel,
                    strides: #strides, dilations: #dilations, pads: [#(#pads),*],
                }
            },
            scratch,
        ))
    }
}

impl OpDef for ConvTranspose {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let group = node.usize_or("group", 1)?;
        if group == 0 {
            return Err(CompileError::attribute("group", "must be positive"));
        }
        Ok(Self {
            window: Window::parse(node)?,
            group,
            output_padding: usizes(node, "output_padding")?.unwrap_or_default(),
            output_shape: usizes(node, "output_shape")?,
            activations: Vec::new(),
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        require_dtype(x.dtype, &[DType::F32], "X")?;
        if w.dtype != x.dtype {
            return Err(CompileError::shape("W must have X's type"));
        }
        let g = self.geometry(x.shape, w.shape)?;
        if x.shape[1] != w.shape[0] || x.shape[1] % self.group != 0 {
            return Err(CompileError::shape(format!(
                "channels do not fit group {}: X has {}, W is {:?}",
                self.group, x.shape[1], w.shape
            )));
        }
        let cout = w.shape[1] * self.group;
        let mut out = conv_output(cx, x.dtype, x.shape[0], cout, &g.output)?;
        if x.is_dynamic() {
            let mut dynamic = x.dynamic.to_vec();
            dynamic[1] = false;
            let shape = std::mem::take(&mut out[0].shape);
            out[0] = TypeShape::dynamic(x.dtype, shape, dynamic);
        }
        Ok(out)
    }

    fn dynamic_inputs(&self, cx: &OpCx<'_>) -> bool {
        // Extents that vary, the output's following them (not fixed by `output_shape`); the
        // channels, weights and bias fixed.
        self.output_shape.is_none()
            && cx.input(0).is_ok_and(|x| spatial_varies(&x, false))
            && cx.inputs.iter().skip(1).flatten().all(|o| !o.is_dynamic())
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        match self.params(cx) {
            Ok((_, 0)) | Err(_) => None,
            Ok((_, n)) => Some(TypeShape::new(DType::F32, vec![n])),
        }
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (params, scratch_len) = self.params(cx)?;
        let (i0, i1, o0, exec) = (
            names.input(0),
            names.input(1),
            names.output(0),
            names.exec(),
        );
        let bias = if cx.opt_input(2).is_some() {
            let i2 = names.input(2);
            quote!(Some(#i2))
        } else {
            quote!(None)
        };
        let scratch = if scratch_len > 0 {
            let s = names.scratch();
            quote!(#s)
        } else {
            quote!(&mut [])
        };
        let acts = self.activations.iter().map(|a| a.tokens());
        let acts = quote!(&[#(#acts),*]);
        let x = cx.input(0)?;
        if x.is_dynamic() {
            let r = x.shape.len();
            let is0 = names.in_shape(cx, 0);
            let lead = 3 - (r - 2);
            let input = runtime_usize3(&is0, 2..r);
            let resized = names.check(quote!(PARAMS.resized(#is0[0], #input)));
            let cout = lit(cx.input(1)?.shape[1] * self.group);
            let out_spatial = (lead..3).map(|i| {
                let i = lit(i);
                quote!(params.output[#i])
            });
            let os0 = names.out_shape(0);
            return Ok(quote! {
                const PARAMS: ::sinter_rt::conv::ConvTransposeParams = #params;
                let params = #resized;
                let #os0 = [params.batch, #cout, #(#out_spatial),*];
                ::sinter_rt::conv::conv_transpose_f32_exec(#exec, &params, #i0, #i1, #bias, #o0, #scratch, #acts);
            });
        }
        Ok(quote! {
            const PARAMS: ::sinter_rt::conv::ConvTransposeParams = #params;
            ::sinter_rt::conv::conv_transpose_f32_exec(#exec, &PARAMS, #i0, #i1, #bias, #o0, #scratch, #acts);
        })
    }
}

/// `ConvInteger` (opset 10): `conv(x - x_zero_point, w - w_zero_point)` in int32, for
/// int8/uint8 operands; `w_zero_point` may be per output channel.
#[derive(Debug, Clone)]
pub struct ConvInteger {
    /// The same geometry as a float convolution.
    pub conv: Conv,
}

impl OpDef for ConvInteger {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            conv: Conv::parse(node)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        require_dtype(x.dtype, &[DType::U8, DType::I8], "X")?;
        require_dtype(w.dtype, &[DType::U8, DType::I8], "W")?;
        let g = self.conv.geometry(cx)?;
        let group = self.conv.group;
        let (cin, cout) = (x.shape[1], w.shape[0]);
        if cin % group != 0 || cout % group != 0 || w.shape[1] * group != cin {
            return Err(CompileError::shape(format!(
                "channels do not fit group {group}: X has {cin}, W is {:?}",
                w.shape
            )));
        }
        for (i, of, allowed) in [(2, x.dtype, 1), (3, w.dtype, cout)] {
            if let Some(z) = cx.opt_input(i) {
                let n: usize = z.shape.iter().product();
                if z.dtype != of || (n != 1 && n != allowed) {
                    return Err(CompileError::shape(format!(
                        "zero point {i} must be {of} with 1 or {allowed} values, found {}{:?}",
                        z.dtype, z.shape
                    )));
                }
            }
        }
        let mut shape = vec![x.shape[0], cout];
        shape.extend(&g.output);
        Ok(vec![TypeShape::new(DType::I32, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let params = self.conv.params(cx)?;
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        let (tx, tw) = (
            super::rust_type(cx.input(0)?.dtype),
            super::rust_type(cx.input(1)?.dtype),
        );
        let x_zero = if cx.opt_input(2).is_some() {
            let z = names.input(2);
            quote!(i32::from(#z[0]))
        } else {
            quote!(0i32)
        };
        let w_zero = if cx.opt_input(3).is_some() {
            let z = names.input(3);
            quote!(#z)
        } else {
            quote!(&[])
        };
        Ok(quote! {
            const PARAMS: ::sinter_rt::conv::ConvParams = #params;
            ::sinter_rt::conv::conv_integer(&PARAMS, #i0, #i1, #x_zero, #w_zero, #o0,
                |v: #tx| i32::from(v), |v: #tw| i32::from(v));
        })
    }
}

/// `Col2Im` (opset 18): rearranges column blocks `[N, C * prod(block_shape), L]` back into
/// images `[N, C, *image_shape]`, summing overlaps; `image_shape` and `block_shape` must be
/// compile-time constants.
#[derive(Debug, Clone)]
pub struct Col2Im {
    /// Strides, dilations and pads.
    pub window: Window,
}

impl Col2Im {
    /// (params tokens, output shape).
    fn plan(&self, cx: &OpCx<'_>) -> Result<(TokenStream, Vec<usize>)> {
        let x = cx.input(0)?;
        let to_usizes = |v: Vec<i64>, what: &str| -> Result<Vec<usize>> {
            v.iter()
                .map(|&d| {
                    usize::try_from(d)
                        .map_err(|_| CompileError::shape(format!("{what} has negative value {d}")))
                })
                .collect()
        };
        let image = to_usizes(cx.const_ints(1, "Col2Im image_shape")?, "image_shape")?;
        let block = to_usizes(cx.const_ints(2, "Col2Im block_shape")?, "block_shape")?;
        let d = image.len();
        if d == 0 || d > 3 || block.len() != d {
            return Err(CompileError::unsupported(format!(
                "Col2Im with image_shape {image:?} and block_shape {block:?} (1 to 3 equal-length dims)"
            )));
        }
        if x.shape.len() != 3 {
            return Err(CompileError::shape(format!(
                "input must be [N, C * K, L], found {:?}",
                x.shape
            )));
        }
        let k: usize = block.iter().product();
        if k == 0 || x.shape[1] % k != 0 {
            return Err(CompileError::shape(format!(
                "input channels {} are not a multiple of the block size {k}",
                x.shape[1]
            )));
        }
        let channels = x.shape[1] / k;
        // The block grid is what a convolution of the padded image would produce.
        let window = Window {
            kernel: Some(block.clone()),
            ..self.window.clone()
        };
        let g = window.resolve(&image, None)?;
        if g.output.iter().product::<usize>() != x.shape[2] {
            return Err(CompileError::shape(format!(
                "{} blocks given, the geometry makes {:?}",
                x.shape[2], g.output
            )));
        }
        let (batch, cout) = (lit(x.shape[0]), lit(channels));
        let input = usize3(&g.output, 1);
        let output = usize3(&image, 1);
        let kernel = usize3(&block, 1);
        let strides = usize3(&g.strides, 1);
        let dilations = usize3(&g.dilations, 1);
        // Aligned exactly like the other spatial arrays (unsuffixed, so typed as isize).
        let pads = usize3(&g.pads_begin, 0);
        let mut shape = vec![x.shape[0], channels];
        shape.extend(&image);
        Ok((
            quote! {
                ::sinter_rt::conv::ConvTransposeParams {
                    batch: #batch, in_channels: #cout, out_channels: #cout, groups: 1,
                    input: #input, output: #output, kernel: #kernel,
                    strides: #strides, dilations: #dilations, pads: #pads,
                }
            },
            shape,
        ))
    }
}

impl OpDef for Col2Im {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            window: Window::parse(node)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        require_dtype(cx.input(0)?.dtype, &[DType::F32], "input")?;
        let (_, shape) = self.plan(cx)?;
        Ok(vec![TypeShape::new(DType::F32, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (params, _) = self.plan(cx)?;
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(quote! {
            const PARAMS: ::sinter_rt::conv::ConvTransposeParams = #params;
            ::sinter_rt::conv::col2im_f32(&PARAMS, #i0, #o0);
        })
    }
}

/// `QLinearConv` (opset 10): a ConvInteger on the zero-point-shifted operands plus the int32
/// bias, requantized with `x_scale * w_scale / y_scale` (w_scale per tensor or per output
/// channel) to the output type.
#[derive(Debug, Clone)]
pub struct QLinearConv {
    /// The same geometry as a float convolution.
    pub conv: Conv,
}

impl QLinearConv {
    /// An OpCx with X and W at positions 0 and 1, for the shared geometry.
    fn conv_cx<'a>(cx: &OpCx<'a>) -> OpCx<'a> {
        OpCx {
            inputs: vec![cx.opt_input(0), cx.opt_input(3)],
            outputs: Vec::new(),
        }
    }
}

impl OpDef for QLinearConv {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            conv: Conv::parse(node)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (x, w) = (cx.input(0)?, cx.input(3)?);
        require_dtype(x.dtype, &[DType::U8, DType::I8], "x")?;
        require_dtype(w.dtype, &[DType::U8, DType::I8], "w")?;
        let g = self.conv.geometry(&Self::conv_cx(cx))?;
        let group = self.conv.group;
        let (cin, cout) = (x.shape[1], w.shape[0]);
        if cin % group != 0 || cout % group != 0 || w.shape[1] * group != cin {
            return Err(CompileError::shape(format!(
                "channels do not fit group {group}: x has {cin}, w is {:?}",
                w.shape
            )));
        }
        for (i, what, dtype, per_channel) in [
            (1, "x_scale", DType::F32, false),
            (2, "x_zero_point", x.dtype, false),
            (4, "w_scale", DType::F32, true),
            (5, "w_zero_point", w.dtype, false),
            (6, "y_scale", DType::F32, false),
        ] {
            let op = cx.input(i)?;
            let n: usize = op.shape.iter().product();
            if op.dtype != dtype {
                return Err(CompileError::shape(format!(
                    "{what} must be {dtype}, found {}",
                    op.dtype
                )));
            }
            if n != 1 && !(per_channel && n == cout) {
                return Err(CompileError::unsupported(format!(
                    "QLinearConv with {what} of shape {:?}",
                    op.shape
                )));
            }
        }
        let y_zero = cx.input(7)?;
        require_dtype(y_zero.dtype, &[DType::U8, DType::I8], "y_zero_point")?;
        if y_zero.shape.iter().product::<usize>() != 1 {
            return Err(CompileError::unsupported(
                "QLinearConv with a per-channel y_zero_point",
            ));
        }
        if let Some(b) = cx.opt_input(8) {
            if b.dtype != DType::I32 || b.shape != [cout] {
                return Err(CompileError::shape(format!(
                    "B must be int32[{cout}], found {}{:?}",
                    b.dtype, b.shape
                )));
            }
        }
        let mut shape = vec![x.shape[0], cout];
        shape.extend(&g.output);
        Ok(vec![TypeShape::new(y_zero.dtype, shape)])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let (x, w) = (cx.input(0).ok()?, cx.input(3).ok()?);
        let g = self.conv.geometry(&Self::conv_cx(cx)).ok()?;
        let n = x.shape[0] * w.shape[0] * g.output.iter().product::<usize>();
        Some(TypeShape::new(DType::I32, vec![n]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let ccx = Self::conv_cx(cx);
        let params = self.conv.params(&ccx)?;
        let g = self.conv.geometry(&ccx)?;
        let (x, w) = (cx.input(0)?, cx.input(3)?);
        let (tx, tw) = (super::rust_type(x.dtype), super::rust_type(w.dtype));
        let y_type = cx.input(7)?.dtype;
        let ty = super::rust_type(y_type);
        let (lo, hi) = if y_type == DType::U8 {
            (quote!(0.0), quote!(255.0))
        } else {
            (quote!(-128.0), quote!(127.0))
        };
        let ins: Vec<_> = (0..8).map(|i| names.input(i)).collect();
        let (xi, xs, xz, wi, ws, wz, ys, yz) = (
            &ins[0], &ins[1], &ins[2], &ins[3], &ins[4], &ins[5], &ins[6], &ins[7],
        );
        let bias = if cx.opt_input(8).is_some() {
            let b = names.input(8);
            quote!(Some(#b))
        } else {
            quote!(None)
        };
        let scratch = names.scratch();
        let o0 = names.output(0);
        let (channels, inner) = (lit(w.shape[0]), lit(g.output.iter().product()));
        Ok(quote! {
            const PARAMS: ::sinter_rt::conv::ConvParams = #params;
            ::sinter_rt::conv::conv_integer(&PARAMS, #xi, #wi, i32::from(#xz[0]), #wz, #scratch,
                |v: #tx| i32::from(v), |v: #tw| i32::from(v));
            ::sinter_rt::conv::requantize(#scratch, #bias, (#xs[0], #ws, #ys[0]), i32::from(#yz[0]),
                #o0, #channels, #inner, |v: f64| v.clamp(#lo, #hi) as #ty);
        })
    }
}

/// `DeformConv` (opset 19, 22), 2-D: each kernel tap reads the input bilinearly at its
/// position plus a learned offset, optionally scaled by a mask.
#[derive(Debug, Clone)]
pub struct DeformConv {
    /// Strides, dilations, pads (auto_pad is not an attribute of DeformConv).
    pub window: Window,
    /// Channel groups.
    pub group: usize,
    /// Offset groups.
    pub offset_group: usize,
}

impl DeformConv {
    /// (params tokens, output shape, scratch length).
    fn plan(&self, cx: &OpCx<'_>) -> Result<(TokenStream, Vec<usize>, usize)> {
        let (x, w, off) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        if x.shape.len() != 4 || w.shape.len() != 4 || off.shape.len() != 4 {
            return Err(CompileError::unsupported(
                "DeformConv other than 2-D (X, W and offset of rank 4)",
            ));
        }
        let conv = Conv {
            window: self.window.clone(),
            group: self.group,
            activations: Vec::new(),
            residual: false,
            packed_from: None,
            layout: ConvLayout::ChannelsFirst,
            winograd: None,
        };
        let g = conv.geometry(&OpCx {
            inputs: vec![Some(x), Some(w)],
            outputs: Vec::new(),
        })?;
        let (n, cin, cout) = (x.shape[0], x.shape[1], w.shape[0]);
        let k: usize = g.kernel.iter().product();
        let og = self.offset_group;
        if cin % self.group != 0
            || cout % self.group != 0
            || w.shape[1] * self.group != cin
            || cin % og != 0
        {
            return Err(CompileError::shape(format!(
                "channels do not fit group {} / offset_group {og}: X {:?}, W {:?}",
                self.group, x.shape, w.shape
            )));
        }
        if off.shape != [n, og * k * 2, g.output[0], g.output[1]] {
            return Err(CompileError::shape(format!(
                "offset {:?} does not fit the output {:?}",
                off.shape, g.output
            )));
        }
        if let Some(b) = cx.opt_input(3) {
            if b.shape != [cout] {
                return Err(CompileError::shape(format!(
                    "B {:?} is not [{cout}]",
                    b.shape
                )));
            }
        }
        if let Some(m) = cx.opt_input(4) {
            if m.shape != [n, og * k, g.output[0], g.output[1]] {
                return Err(CompileError::shape(format!(
                    "mask {:?} does not fit the output {:?}",
                    m.shape, g.output
                )));
            }
        }
        let two = |v: &[usize]| {
            let items = v.iter().map(|&d| lit(d));
            quote!([#(#items),*])
        };
        let (input, output, kernel) = (two(&x.shape[2..]), two(&g.output), two(&g.kernel));
        let (strides, dilations, pads) = (two(&g.strides), two(&g.dilations), two(&g.pads_begin));
        let (ln, lcin, lcout, lg, log) = (lit(n), lit(cin), lit(cout), lit(self.group), lit(og));
        let scratch = cin / self.group * k * g.output.iter().product::<usize>();
        let mut shape = vec![n, cout];
        shape.extend(&g.output);
        Ok((
            quote! {
                ::sinter_rt::conv::DeformParams {
                    batch: #ln, in_channels: #lcin, out_channels: #lcout, groups: #lg,
                    offset_groups: #log, input: #input, output: #output, kernel: #kernel,
                    strides: #strides, dilations: #dilations, pads: #pads,
                }
            },
            shape,
            scratch,
        ))
    }
}

impl OpDef for DeformConv {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let group = node.usize_or("group", 1)?;
        let offset_group = node.usize_or("offset_group", 1)?;
        if group == 0 || offset_group == 0 {
            return Err(CompileError::attribute(
                "group",
                "group and offset_group must be positive",
            ));
        }
        Ok(Self {
            window: Window::parse(node)?,
            group,
            offset_group,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        for i in 0..5 {
            if let Some(op) = cx.opt_input(i) {
                require_dtype(op.dtype, &[DType::F32], "DeformConv operand")?;
            }
        }
        let (_, shape, _) = self.plan(cx)?;
        Ok(vec![TypeShape::new(DType::F32, shape)])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        match self.plan(cx) {
            Ok((_, _, n)) if n > 0 => Some(TypeShape::new(DType::F32, vec![n])),
            _ => None,
        }
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (params, _, scratch_len) = self.plan(cx)?;
        let (i0, i1, i2, o0) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.output(0),
        );
        let (bias, mask) = (names.opt_input(cx, 3), names.opt_input(cx, 4));
        let scratch = if scratch_len > 0 {
            let s = names.scratch();
            quote!(#s)
        } else {
            quote!(&mut [])
        };
        Ok(quote! {
            const PARAMS: ::sinter_rt::conv::DeformParams = #params;
            ::sinter_rt::conv::deform_conv_f32(&PARAMS, #i0, #i1, #i2, #bias, #mask, #o0, #scratch);
        })
    }
}

/// `CausalConvWithState` (opset 27): a depthwise causal 1-D convolution whose left context
/// comes from `past_state` (zeros if absent), with optional bias and SiLU activation; the
/// second output is the state for the next call.
#[derive(Debug, Clone)]
pub struct CausalConvWithState {
    /// SiLU ("silu" / "swish") activation.
    pub silu: bool,
}

impl CausalConvWithState {
    /// (batch, channels, length, kernel).
    fn layout(cx: &OpCx<'_>) -> Result<(usize, usize, usize, usize)> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        let (&[b, c, l], &[wc, one, k]) = (x.shape, w.shape) else {
            return Err(CompileError::unsupported(format!(
                "CausalConvWithState with input {:?} and weight {:?} (only 1-D: [B, C, L], [C, 1, K])",
                x.shape, w.shape
            )));
        };
        if wc != c || one != 1 || k == 0 {
            return Err(CompileError::shape(format!(
                "weight {:?} must be [{c}, 1, K]",
                w.shape
            )));
        }
        if let Some(bias) = cx.opt_input(2) {
            if bias.shape != [c] || bias.dtype != x.dtype {
                return Err(CompileError::shape(format!(
                    "bias {:?} is not [{c}]",
                    bias.shape
                )));
            }
        }
        if let Some(past) = cx.opt_input(3) {
            if past.shape != [b, c, k - 1] || past.dtype != x.dtype {
                return Err(CompileError::shape(format!(
                    "past_state {:?} is not [{b}, {c}, {}]",
                    past.shape,
                    k - 1
                )));
            }
        }
        Ok((b, c, l, k))
    }
}

impl OpDef for CausalConvWithState {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let silu = match node.string_or("activation", "none")?.as_str() {
            "none" | "" => false,
            "silu" | "swish" => true,
            other => {
                return Err(CompileError::unsupported(format!(
                    "CausalConvWithState activation {other:?}"
                )))
            }
        };
        Ok(Self { silu })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32, DType::F16], "input")?;
        if cx.input(1)?.dtype != x.dtype {
            return Err(CompileError::shape("weight must have the input's type"));
        }
        let (b, c, l, k) = Self::layout(cx)?;
        Ok(vec![
            TypeShape::new(x.dtype, vec![b, c, l]),
            TypeShape::new(x.dtype, vec![b, c, k - 1]),
        ])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let dtype = cx.input(0)?.dtype;
        let (b, c, l, k) = Self::layout(cx)?;
        let (b, c, l, k, silu) = (lit(b), lit(c), lit(l), lit(k), self.silu);
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        let (bias, past) = (names.opt_input(cx, 2), names.opt_input(cx, 3));
        let present = if cx.outputs.get(1).copied().flatten().is_some() {
            let o1 = names.output(1);
            quote!(Some(#o1))
        } else {
            quote!(None)
        };
        let (load, store) = if dtype == DType::F16 {
            (
                quote!(|v: u16| f64::from(::sinter_rt::half::f16_to_f32(v))),
                quote!(|v: f64| ::sinter_rt::half::f32_to_f16(v as f32)),
            )
        } else {
            (quote!(|v: f32| f64::from(v)), quote!(|v: f64| v as f32))
        };
        Ok(quote! {
            const PARAMS: ::sinter_rt::conv::CausalConvParams = ::sinter_rt::conv::CausalConvParams {
                batch: #b, channels: #c, len: #l, kernel: #k, silu: #silu,
            };
            ::sinter_rt::conv::causal_conv_with_state(&PARAMS, #i0, #i1, #bias, #past, #o0, #present, #load, #store);
        })
    }
}
