//! What the product and convolution kernels apply to each output tile as it is finished (the
//! epilogue), shared by every kernel family: [`Activation`], the activations and scalar
//! affine maps fused into a kernel. The float GEMM, the convolutions, the int8 products and the
//! recurrent cells all import it from here, never from each other.

use crate::math;

/// A gate activation with its ONNX `activation_alpha` / `activation_beta`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `max(x, 0)`.
    Relu,
    /// `alpha * x + beta`.
    Affine(f32, f32),
    /// `x` if `x >= 0` else `alpha * x`.
    LeakyRelu(f32),
    /// `x` if `x > alpha` else 0.
    ThresholdedRelu(f32),
    /// `alpha * tanh(beta * x)`.
    ScaledTanh(f32, f32),
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid(f32, f32),
    /// `x` if `x >= 0` else `alpha * (e^x - 1)`.
    Elu(f32),
    /// `x / (1 + |x|)`.
    Softsign,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `min(max(x, lo), hi)` (Clip fused into the producing kernel).
    Clip(f32, f32),
    /// `x * clamp(x * (1/6) + 1/2, 0, 1)` (ONNX `HardSwish`, with the arithmetic of the
    /// op's own kernel, so that fusing it changes no bit).
    HardSwish,
    /// `x / 2 * (1 + erf(x / sqrt(2)))` (Gelu fused into the producing kernel).
    Gelu,
    /// `x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))` (Gelu, `approximate="tanh"`).
    GeluTanh,
    /// `x * sigmoid(alpha * x)` (ONNX `Swish`; SiLU at alpha 1), the arithmetic of
    /// `crate::math::Func::Swish`, the op's own kernel.
    Swish(f32),
}

impl Activation {
    /// Applies the activation.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Sigmoid => math::sigmoid(x),
            Activation::Tanh => math::tanh(x),
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::Affine(a, b) => a * x + b,
            Activation::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Activation::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Activation::ScaledTanh(a, b) => a * math::tanh(b * x),
            Activation::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Activation::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * (math::exp(x) - 1.0)
                }
            }
            Activation::Softsign => x / (1.0 + x.abs()),
            Activation::Clip(lo, hi) => {
                let m = if x < lo { lo } else { x };
                if m > hi {
                    hi
                } else {
                    m
                }
            }
            Activation::HardSwish => x * (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
            // The same f32 arithmetic, in the same order, as the Gelu op's kernel.
            Activation::Gelu => math::gelu(x),
            Activation::GeluTanh => math::gelu_tanh(x),
            Activation::Swish(alpha) => x * math::sigmoid(alpha * x),
            Activation::Softplus => {
                if x > 20.0 {
                    x
                } else {
                    math::ln(1.0 + math::exp(x))
                }
            }
        }
    }
}

impl Activation {
    /// Applies `acts` to every element, in order.
    pub fn apply_chain(acts: &[Activation], values: &mut [f32]) {
        for act in acts {
            act.apply_slice(values);
        }
    }

    /// Applies the activation to every element, with the variant chosen once per call.
    pub fn apply_slice(self, values: &mut [f32]) {
        match self {
            Activation::Relu => values
                .iter_mut()
                .for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v }),
            Activation::Clip(lo, hi) => values
                .iter_mut()
                .for_each(|v| *v = Activation::Clip(lo, hi).apply(*v)),
            Activation::HardSigmoid(a, b) => values
                .iter_mut()
                .for_each(|v| *v = (a * *v + b).clamp(0.0, 1.0)),
            Activation::HardSwish => values
                .iter_mut()
                .for_each(|v| *v *= (*v * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0)),
            Activation::Affine(a, b) => values.iter_mut().for_each(|v| *v = a * *v + b),
            Activation::LeakyRelu(a) => values
                .iter_mut()
                .for_each(|v| *v = if *v >= 0.0 { *v } else { a * *v }),
            Activation::Sigmoid => math::sigmoid_slice(values),
            Activation::Tanh => math::tanh_slice(values),
            Activation::Gelu => math::Func::Gelu.map_slice_in_place(values),
            Activation::GeluTanh => math::Func::GeluTanh.map_slice_in_place(values),
            Activation::Swish(alpha) => math::Func::Swish(alpha).map_slice_in_place(values),
            other => values.iter_mut().for_each(|v| *v = other.apply(*v)),
        }
    }
}
