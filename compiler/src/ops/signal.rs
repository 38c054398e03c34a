//! Signal ops: `DFT` (opset 17..=20: axis attribute before 20, input from 20; `onesided`,
//! `inverse`, `dft_length`; inverse one-sided gives a real signal), `STFT` (opset 17),
//! `HannWindow`, `HammingWindow`, `BlackmanWindow` (opset 17, `periodic`, `output_datatype`)
//! and `MelWeightMatrix` (opset 17, folded at compile time).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__DFT.html>,
//! <https://onnx.ai/onnx/operators/onnx__STFT.html>,
//! <https://onnx.ai/onnx/operators/onnx__HannWindow.html>,
//! <https://onnx.ai/onnx/operators/onnx__HammingWindow.html>,
//! <https://onnx.ai/onnx/operators/onnx__BlackmanWindow.html>,
//! <https://onnx.ai/onnx/operators/onnx__MelWeightMatrix.html>. float32 signals.

use proc_macro2::TokenStream;
use quote::quote;

use super::{lit, normalize_axis, require_dtype, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::{DType, Tensor};

fn positive(v: i64, what: &str) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| CompileError::shape(format!("{what} must be positive, found {v}")))
}

fn scalar(cx: &OpCx<'_>, i: usize, what: &str) -> Result<i64> {
    cx.const_ints(i, what)?
        .first()
        .copied()
        .ok_or_else(|| CompileError::shape(format!("{what} is empty")))
}

fn out_dtype_attr(node: &NodeCx<'_>) -> Result<DType> {
    let code = node.i64_or("output_datatype", 1)?;
    let c = i32::try_from(code)
        .map_err(|_| CompileError::attribute("output_datatype", format!("bad code {code}")))?;
    DType::from_onnx(c).ok_or_else(|| {
        CompileError::unsupported(format!("output_datatype {}", DType::onnx_name(c)))
    })
}

/// `DFT`.
#[derive(Debug, Clone)]
pub struct Dft {
    /// Axis attribute (opset < 20), else `None` (input 2, default -2).
    pub axis_attr: Option<i64>,
    /// Inverse transform.
    pub inverse: bool,
    /// One-sided output (or, with `inverse`, one-sided input).
    pub onesided: bool,
}

/// The resolved layout and output shape.
struct DftPlan {
    outer: usize,
    n_in: usize,
    inner: usize,
    c_in: usize,
    n: usize,
    n_out: usize,
    real_out: bool,
    shape: Vec<usize>,
}

impl Dft {
    fn plan(&self, cx: &OpCx<'_>) -> Result<DftPlan> {
        let x = cx.input(0)?;
        let rank = x.shape.len();
        if rank < 2 {
            return Err(CompileError::shape(
                "DFT input needs a trailing real/complex axis",
            ));
        }
        let c_in = x.shape[rank - 1];
        if !(1..=2).contains(&c_in) {
            return Err(CompileError::shape("DFT input's last axis must be 1 or 2"));
        }
        let axis = match self.axis_attr {
            Some(a) => a,
            None if cx.opt_input(2).is_some() => scalar(cx, 2, "axis")?,
            None => -2,
        };
        let axis = normalize_axis(axis, rank, "axis")?;
        if axis == rank - 1 {
            return Err(CompileError::shape(
                "DFT axis cannot be the real/complex axis",
            ));
        }
        let n_in = x.shape[axis];
        let real_out = self.inverse && self.onesided;
        let n = if cx.opt_input(1).is_some() {
            positive(scalar(cx, 1, "dft_length")?, "dft_length")?
        } else if real_out {
            2 * n_in.saturating_sub(1)
        } else {
            n_in
        };
        if n == 0 {
            return Err(CompileError::shape("DFT of length 0"));
        }
        if real_out && c_in != 2 {
            return Err(CompileError::unsupported(
                "one-sided inverse DFT of a real spectrum",
            ));
        }
        let n_out = if self.onesided && !real_out {
            n / 2 + 1
        } else {
            n
        };
        let mut shape = x.shape.to_vec();
        shape[axis] = n_out;
        shape[rank - 1] = if real_out { 1 } else { 2 };
        Ok(DftPlan {
            outer: x.shape[..axis].iter().product(),
            n_in,
            inner: x.shape[axis + 1..rank - 1].iter().product(),
            c_in,
            n,
            n_out,
            real_out,
            shape,
        })
    }
}

impl OpDef for Dft {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            axis_attr: if node.opset() < 20 {
                Some(node.i64_or("axis", 1)?)
            } else {
                None
            },
            inverse: node.i64_or("inverse", 0)? != 0,
            onesided: node.i64_or("onesided", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        require_dtype(cx.input(0)?.dtype, &[DType::F32], "input")?;
        Ok(vec![TypeShape::new(DType::F32, self.plan(cx)?.shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let p = self.plan(cx)?;
        let (i0, o0) = (names.input(0), names.output(0));
        let (outer, n_in, inner, c_in, n, n_out) = (
            lit(p.outer),
            lit(p.n_in),
            lit(p.inner),
            lit(p.c_in),
            lit(p.n),
            lit(p.n_out),
        );
        let (inverse, real_out) = (self.inverse, p.real_out);
        Ok(
            quote!(::sinter_rt::signal::dft_f32(#i0, #o0, ::sinter_rt::signal::DftLayout {
            outer: #outer, n_in: #n_in, inner: #inner, c_in: #c_in, n: #n, n_out: #n_out,
            inverse: #inverse, real_out: #real_out });),
        )
    }
}

/// `STFT`.
#[derive(Debug, Clone)]
pub struct Stft {
    /// One-sided output.
    pub onesided: bool,
}

/// `(batch, len, c_in, step, frame, frames, bins)`.
type StftPlan = (usize, usize, usize, usize, usize, usize, usize);

impl Stft {
    fn plan(&self, cx: &OpCx<'_>) -> Result<StftPlan> {
        let x = cx.input(0)?;
        if x.shape.len() != 3 || !(1..=2).contains(&x.shape[2]) {
            return Err(CompileError::shape(format!(
                "STFT signal must be [batch, length, 1 or 2], found {:?}",
                x.shape
            )));
        }
        let step = positive(scalar(cx, 1, "frame_step")?, "frame_step")?;
        let frame = match (cx.opt_input(2), cx.opt_input(3)) {
            (Some(w), _) => {
                if w.shape.len() != 1 {
                    return Err(CompileError::shape("window must be 1-D"));
                }
                w.shape[0]
            }
            (None, Some(_)) => positive(scalar(cx, 3, "frame_length")?, "frame_length")?,
            (None, None) => {
                return Err(CompileError::shape("STFT needs a window or a frame_length"))
            }
        };
        if cx.opt_input(2).is_some() && cx.opt_input(3).is_some() {
            let fl = scalar(cx, 3, "frame_length")?;
            if usize::try_from(fl).ok() != Some(frame) {
                return Err(CompileError::shape(
                    "frame_length differs from the window's",
                ));
            }
        }
        let len = x.shape[1];
        if frame == 0 || frame > len {
            return Err(CompileError::shape("frame longer than the signal"));
        }
        if self.onesided && x.shape[2] == 2 {
            return Err(CompileError::shape("one-sided STFT of a complex signal"));
        }
        let frames = (len - frame) / step + 1;
        let bins = if self.onesided { frame / 2 + 1 } else { frame };
        Ok((x.shape[0], len, x.shape[2], step, frame, frames, bins))
    }
}

impl OpDef for Stft {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            onesided: node.i64_or("onesided", 1)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        require_dtype(cx.input(0)?.dtype, &[DType::F32], "signal")?;
        if let Some(w) = cx.opt_input(2) {
            require_dtype(w.dtype, &[DType::F32], "window")?;
        }
        let (batch, _, _, _, _, frames, bins) = self.plan(cx)?;
        Ok(vec![TypeShape::new(
            DType::F32,
            vec![batch, frames, bins, 2],
        )])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (batch, len, c_in, step, frame, frames, bins) = self.plan(cx)?;
        let (i0, o0) = (names.input(0), names.output(0));
        let window = if cx.opt_input(2).is_some() {
            let i2 = names.input(2);
            quote!(Some(#i2))
        } else {
            quote!(None)
        };
        let a = [batch, len, c_in, step, frame, frames, bins].map(lit);
        Ok(quote!(::sinter_rt::signal::stft_f32(#i0, #window, #o0, #(#a),*);))
    }
}

/// `HannWindow`, `HammingWindow`, `BlackmanWindow`: folded at compile time.
#[derive(Debug, Clone)]
pub struct Window {
    /// `(a0, a1, a2)` of `a0 - a1 cos(2πn/N) + a2 cos(4πn/N)`.
    pub coeffs: (f64, f64, f64),
    /// Periodic (N = size) rather than symmetric (N = size - 1).
    pub periodic: bool,
    /// Output type.
    pub dtype: DType,
}

impl Window {
    fn values(&self, cx: &OpCx<'_>) -> Result<Vec<f64>> {
        let size = usize::try_from(scalar(cx, 0, "size")?)
            .map_err(|_| CompileError::shape("negative window size"))?;
        let n = if self.periodic {
            size
        } else {
            size.saturating_sub(1)
        } as f64;
        let (a0, a1, a2) = self.coeffs;
        Ok((0..size)
            .map(|i| {
                let t = std::f64::consts::TAU * i as f64 / n;
                a0 - a1 * t.cos() + a2 * (2.0 * t).cos()
            })
            .collect())
    }
}

impl OpDef for Window {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let coeffs = match node.op_type() {
            "HannWindow" => (0.5, 0.5, 0.0),
            "HammingWindow" => (25.0 / 46.0, 1.0 - 25.0 / 46.0, 0.0),
            _ => (0.42, 0.5, 0.08),
        };
        Ok(Self {
            coeffs,
            periodic: node.i64_or("periodic", 1)? != 0,
            dtype: out_dtype_attr(node)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Ok(vec![TypeShape::new(
            self.dtype,
            vec![self.values(cx)?.len()],
        )])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        Some(
            self.values(cx)
                .map(|v| vec![Tensor::from_numbers(self.dtype, vec![v.len()], &v)]),
        )
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::new(crate::error::ErrorKind::NotConstant(
            "window size".into(),
        )))
    }
}

/// `MelWeightMatrix`: folded at compile time.
#[derive(Debug, Clone)]
pub struct MelWeightMatrix {
    /// Output type.
    pub dtype: DType,
}

impl MelWeightMatrix {
    fn matrix(&self, cx: &OpCx<'_>) -> Result<(Vec<usize>, Vec<f64>)> {
        let mels = positive(scalar(cx, 0, "num_mel_bins")?, "num_mel_bins")?;
        let dft_len = positive(scalar(cx, 1, "dft_length")?, "dft_length")?;
        let rate = scalar(cx, 2, "sample_rate")?;
        if rate <= 0 {
            return Err(CompileError::shape("sample_rate must be positive"));
        }
        let edge = |i: usize, what: &str| -> Result<f32> {
            let op = cx.input(i)?;
            let t = op.constant.ok_or_else(|| {
                CompileError::new(crate::error::ErrorKind::NotConstant(format!(
                    "{what} (input {i})"
                )))
            })?;
            if op.dtype != DType::F32 {
                return Err(CompileError::unsupported(format!(
                    "{what} of type {}",
                    op.dtype
                )));
            }
            t.to_f64s()
                .first()
                .map(|&v| v as f32)
                .ok_or_else(|| CompileError::shape(format!("{what} is empty")))
        };
        let (lo, hi) = (edge(3, "lower_edge_hertz")?, edge(4, "upper_edge_hertz")?);
        let to_mel = |hz: f32| -> f32 { 2595.0 * (1.0 + hz / 700.0).log10() };
        let (lo_mel, hi_mel) = (to_mel(lo), to_mel(hi));
        let count = mels + 2;
        let step = (hi_mel - lo_mel) / count as f32;
        let bins: Vec<i64> = (0..count)
            .map(|i| {
                let mel = i as f64 * f64::from(step) + f64::from(lo_mel);
                let hz = 700.0 * (10f64.powf(mel / 2595.0) - 1.0);
                ((dft_len as f64 + 1.0) * hz / rate as f64).floor() as i64
            })
            .collect();
        let rows = dft_len / 2 + 1;
        let mut out = vec![0f64; rows * mels];
        let mut set = |j: i64, i: usize, v: f64| -> Result<()> {
            let j = usize::try_from(j)
                .ok()
                .filter(|&j| j < rows)
                .ok_or_else(|| CompileError::shape("mel bin outside the spectrum"))?;
            out[j * mels + i] = v;
            Ok(())
        };
        for i in 0..mels {
            let (l, c, h) = (bins[i], bins[i + 1], bins[i + 2]);
            if c == l {
                set(c, i, 1.0)?;
            } else {
                for j in l..=c {
                    set(j, i, (j - l) as f64 / (c - l) as f64)?;
                }
            }
            if h > c {
                for j in c..h {
                    set(j, i, (h - j) as f64 / (h - c) as f64)?;
                }
            }
        }
        Ok((vec![rows, mels], out))
    }
}

impl OpDef for MelWeightMatrix {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            dtype: out_dtype_attr(node)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Ok(vec![TypeShape::new(self.dtype, self.matrix(cx)?.0)])
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        Some(
            self.matrix(cx)
                .map(|(shape, v)| vec![Tensor::from_numbers(self.dtype, shape, &v)]),
        )
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::new(crate::error::ErrorKind::NotConstant(
            "MelWeightMatrix inputs".into(),
        )))
    }
}
