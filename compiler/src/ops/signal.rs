//! Signal processing: `DFT` (opset 17, 20: forward, one-sided forward and inverse,
//! `dft_length`, `axis`; complex two-sided transforms through an f32 FFT), `STFT` (opset
//! 17), the windows `HannWindow`, `HammingWindow`, `BlackmanWindow` (opset 17) and
//! `MelWeightMatrix` (opset 17, folded at compile time).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__DFT.html>,
//! <https://onnx.ai/onnx/operators/onnx__STFT.html>,
//! <https://onnx.ai/onnx/operators/onnx__HannWindow.html>,
//! <https://onnx.ai/onnx/operators/onnx__MelWeightMatrix.html>. float32. The DFT length, axis
//! and window size must be compile-time constants (they decide shapes).

use proc_macro2::TokenStream;
use quote::quote;

use super::{lit, normalize_axis, require_dtype, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::{DType, Tensor};

/// `DFT`.
#[derive(Debug, Clone)]
pub struct Dft {
    inverse: bool,
    onesided: bool,
    /// The axis attribute (opset < 20); opset 20 takes it from input 2.
    axis_attr: Option<i64>,
}

/// The resolved transform.
struct DftPlan {
    axis: usize,
    in_complex: bool,
    n: usize,
    out_len: usize,
    out_complex: bool,
}

impl DftPlan {
    /// Complex input with two-sided output runs as an f32 mixed-radix FFT, as numpy
    /// transforms complex64 data (the ONNX tests' expected outputs carry its float32
    /// rounding); real input, one-sided transforms and lengths with prime factors other than
    /// 2, 3 and 5 run as direct sums in f64.
    fn fft(&self) -> bool {
        self.in_complex && self.out_complex && self.out_len == self.n && fft_ok(self.n)
    }
}

/// Whether `n` has no prime factors other than 2, 3 and 5.
fn fft_ok(n: usize) -> bool {
    let mut m = n;
    for p in [2, 3, 5] {
        while m > 0 && m.is_multiple_of(p) {
            m /= p;
        }
    }
    m == 1
}

impl Dft {
    fn plan(&self, cx: &OpCx<'_>) -> Result<DftPlan> {
        let x = cx.input(0)?;
        let r = x.shape.len();
        let last = x.shape.last().copied().unwrap_or(0);
        if r < 2 || !(last == 1 || last == 2) {
            return Err(CompileError::shape(format!(
                "input must be [..., signal, 1 or 2], found {:?}",
                x.shape
            )));
        }
        let axis = match self.axis_attr {
            Some(a) => a,
            None if cx.opt_input(2).is_some() => {
                let v = cx.const_ints(2, "DFT axis")?;
                *v.first()
                    .ok_or_else(|| CompileError::shape("DFT axis is empty"))?
            }
            None => -2,
        };
        let axis = normalize_axis(axis, r, "axis")?;
        if axis == r - 1 {
            return Err(CompileError::attribute(
                "axis",
                "cannot be the complex (last) axis",
            ));
        }
        let in_len = x.shape[axis];
        let dft_length = match cx.opt_input(1) {
            Some(_) => {
                let v = cx.const_ints(1, "DFT dft_length")?;
                let n = *v
                    .first()
                    .ok_or_else(|| CompileError::shape("dft_length is empty"))?;
                Some(usize::try_from(n).map_err(|_| {
                    CompileError::shape(format!("dft_length {n} must be non-negative"))
                })?)
            }
            None => None,
        };
        let (n, out_len, out_complex) = match (self.inverse, self.onesided) {
            (true, true) => {
                let n = dft_length.unwrap_or(2 * in_len.saturating_sub(1));
                (n, n, false)
            }
            (false, true) => {
                let n = dft_length.unwrap_or(in_len);
                (n, n / 2 + 1, true)
            }
            (_, false) => {
                let n = dft_length.unwrap_or(in_len);
                (n, n, true)
            }
        };
        if n == 0 {
            return Err(CompileError::shape("DFT of length 0"));
        }
        Ok(DftPlan {
            axis,
            in_complex: last == 2,
            n,
            out_len,
            out_complex,
        })
    }
}

impl OpDef for Dft {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            inverse: node.i64_or("inverse", 0)? != 0,
            onesided: node.i64_or("onesided", 0)? != 0,
            axis_attr: if node.opset() < 20 {
                Some(node.i64_or("axis", 1)?)
            } else {
                None
            },
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "input")?;
        let p = self.plan(cx)?;
        let mut shape = x.shape.to_vec();
        shape[p.axis] = p.out_len;
        if let Some(last) = shape.last_mut() {
            *last = if p.out_complex { 2 } else { 1 };
        }
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let p = self.plan(cx).ok()?;
        Some(if p.fft() {
            TypeShape::new(DType::F32, vec![8 * p.n])
        } else {
            TypeShape::new(DType::F64, vec![2 * p.n])
        })
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let p = self.plan(cx)?;
        let r = x.shape.len();
        let outer = lit(x.shape[..p.axis].iter().product());
        let inner = lit(x.shape[p.axis + 1..r - 1].iter().product());
        let (in_len, n, out_len) = (lit(x.shape[p.axis]), lit(p.n), lit(p.out_len));
        let (in_complex, out_complex, inverse, onesided) =
            (p.in_complex, p.out_complex, self.inverse, self.onesided);
        let (i0, o0) = (names.input(0), names.output(0));
        let scratch = names.scratch();
        let kernel = if p.fft() {
            quote!(dft_fft_f32)
        } else {
            quote!(dft_f32)
        };
        Ok(quote! {
            const PARAMS: ::sinter_rt::signal::DftParams = ::sinter_rt::signal::DftParams {
                outer: #outer, inner: #inner, in_len: #in_len, in_complex: #in_complex,
                n: #n, out_len: #out_len, out_complex: #out_complex,
                inverse: #inverse, onesided: #onesided,
            };
            ::sinter_rt::signal::#kernel(&PARAMS, #i0, #o0, #scratch);
        })
    }
}

/// `STFT` (opset 17): frames of `signal: [B, L, 1 or 2]` every `frame_step` samples, each
/// optionally windowed, Fourier-transformed into `[B, frames, bins, 2]`; `frame_step` and
/// `frame_length` must be compile-time constants.
#[derive(Debug, Clone)]
pub struct Stft {
    onesided: bool,
}

/// (batch, len, complex, frame length, step, frames, bins).
type StftLayout = (usize, usize, bool, usize, usize, usize, usize);

impl Stft {
    fn layout(&self, cx: &OpCx<'_>) -> Result<StftLayout> {
        let x = cx.input(0)?;
        let &[batch, len, c] = x.shape else {
            return Err(CompileError::shape(format!(
                "signal must be [batch, length, 1 or 2], found {:?}",
                x.shape
            )));
        };
        if c != 1 && c != 2 {
            return Err(CompileError::shape(format!(
                "signal's last dimension is {c}, not 1 or 2"
            )));
        }
        let scalar = |i: usize, what: &str| -> Result<usize> {
            let v = cx.const_ints(i, what)?;
            let s = *v
                .first()
                .ok_or_else(|| CompileError::shape(format!("{what} is empty")))?;
            usize::try_from(s)
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| CompileError::shape(format!("{what} {s} must be positive")))
        };
        let step = scalar(1, "STFT frame_step")?;
        let window_len = cx.opt_input(2).map(|w| w.shape.iter().product::<usize>());
        let frame_length = match cx.opt_input(3) {
            Some(_) => scalar(3, "STFT frame_length")?,
            None => window_len
                .ok_or_else(|| CompileError::malformed("STFT needs a window or a frame_length"))?,
        };
        if window_len.is_some_and(|w| w != frame_length) {
            return Err(CompileError::shape(format!(
                "window of {window_len:?} values for frames of {frame_length}"
            )));
        }
        if frame_length > len {
            return Err(CompileError::shape(format!(
                "frame_length {frame_length} exceeds the signal length {len}"
            )));
        }
        if self.onesided && c == 2 {
            return Err(CompileError::unsupported(
                "one-sided STFT of a complex signal",
            ));
        }
        let frames = (len - frame_length) / step + 1;
        let bins = if self.onesided {
            frame_length / 2 + 1
        } else {
            frame_length
        };
        Ok((batch, len, c == 2, frame_length, step, frames, bins))
    }
}

impl OpDef for Stft {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            onesided: node.i64_or("onesided", 1)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "signal")?;
        if let Some(w) = cx.opt_input(2) {
            require_dtype(w.dtype, &[DType::F32], "window")?;
        }
        let (batch, _, _, _, _, frames, bins) = self.layout(cx)?;
        Ok(vec![TypeShape::new(x.dtype, vec![batch, frames, bins, 2])])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let (_, _, _, n, _, _, _) = self.layout(cx).ok()?;
        Some(TypeShape::new(DType::F64, vec![2 * n]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (batch, len, complex, n, step, frames, bins) = self.layout(cx)?;
        let (batch, len, n, step, frames, bins) = (
            lit(batch),
            lit(len),
            lit(n),
            lit(step),
            lit(frames),
            lit(bins),
        );
        let (i0, o0) = (names.input(0), names.output(0));
        let window = if cx.opt_input(2).is_some() {
            let w = names.input(2);
            quote!(Some(#w))
        } else {
            quote!(None)
        };
        let scratch = names.scratch();
        Ok(quote! {
            const PARAMS: ::sinter_rt::signal::StftParams = ::sinter_rt::signal::StftParams {
                batch: #batch, len: #len, complex: #complex, frame_length: #n,
                frame_step: #step, frames: #frames, bins: #bins,
            };
            ::sinter_rt::signal::stft_f32(&PARAMS, #i0, #window, #o0, #scratch);
        })
    }
}

fn mel_positive(v: i64, what: &str) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| CompileError::shape(format!("{what} must be positive, found {v}")))
}

fn mel_scalar(cx: &OpCx<'_>, i: usize, what: &str) -> Result<i64> {
    cx.const_ints(i, what)?
        .first()
        .copied()
        .ok_or_else(|| CompileError::shape(format!("{what} is empty")))
}

fn mel_out_dtype(node: &NodeCx<'_>) -> Result<DType> {
    let code = node.i64_or("output_datatype", 1)?;
    let c = i32::try_from(code)
        .map_err(|_| CompileError::attribute("output_datatype", format!("bad code {code}")))?;
    DType::from_onnx(c).ok_or_else(|| {
        CompileError::unsupported(format!("output_datatype {}", DType::onnx_name(c)))
    })
}

/// `MelWeightMatrix`: folded at compile time.
#[derive(Debug, Clone)]
pub struct MelWeightMatrix {
    /// Output type.
    pub dtype: DType,
}

impl MelWeightMatrix {
    fn matrix(&self, cx: &OpCx<'_>) -> Result<(Vec<usize>, Vec<f64>)> {
        let mels = mel_positive(mel_scalar(cx, 0, "num_mel_bins")?, "num_mel_bins")?;
        let dft_len = mel_positive(mel_scalar(cx, 1, "dft_length")?, "dft_length")?;
        let rate = mel_scalar(cx, 2, "sample_rate")?;
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
            dtype: mel_out_dtype(node)?,
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
