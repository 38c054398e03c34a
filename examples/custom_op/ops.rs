//! The example's two custom ops, as a user writes them: each a type implementing
//! `sinter_rt::custom::CustomOp`. The generated model calls them directly (no trait object,
//! no allocation). `tests/custom_op.rs` checks them, inside the compiled model, against ONNX
//! Runtime running the same graph with standard ops in their place.

use sinter_rt::custom::{Attrs, CustomOp, Tensor, TensorMut};

/// `com.example:ScaledTanh`: `y = alpha * tanh(beta * x)` elementwise on float32 (attributes
/// `alpha` and `beta`, default 1).
pub(crate) struct ScaledTanh;

impl CustomOp for ScaledTanh {
    fn compute(
        inputs: &[Tensor<'_>],
        outputs: &mut [TensorMut<'_>],
        attrs: &Attrs<'_>,
    ) -> Result<(), &'static str> {
        let alpha = attrs.float_or("alpha", 1.0)?;
        let beta = attrs.float_or("beta", 1.0)?;
        let [x] = inputs else {
            return Err("ScaledTanh takes one input");
        };
        let [y] = outputs else {
            return Err("ScaledTanh has one output");
        };
        let (x, y) = (x.f32()?, y.f32_mut()?);
        y.copy_from_slice(x);
        for v in y.iter_mut() {
            *v *= beta;
        }
        // The runtime's vectorized tanh, over the whole slice at once.
        sinter_rt::math::tanh_slice(y);
        for v in y.iter_mut() {
            *v *= alpha;
        }
        Ok(())
    }
}

/// `com.example:ArgMaxRows`: for a float32 matrix `[rows, cols]`, the int64 index of each
/// row's largest value (the first one on ties). A NaN is an error: no index would mean
/// anything.
pub(crate) struct ArgMaxRows;

impl CustomOp for ArgMaxRows {
    fn compute(
        inputs: &[Tensor<'_>],
        outputs: &mut [TensorMut<'_>],
        _attrs: &Attrs<'_>,
    ) -> Result<(), &'static str> {
        let ([x], [out]) = (inputs, outputs) else {
            return Err("ArgMaxRows takes one input and has one output");
        };
        let &[rows, cols] = x.shape else {
            return Err("ArgMaxRows takes a matrix");
        };
        let (values, labels) = (x.f32()?, out.i64_mut()?);
        if cols == 0 || labels.len() != rows {
            return Err("ArgMaxRows: empty rows, or an output that is not one label a row");
        }
        for (row, label) in values.chunks_exact(cols).zip(labels.iter_mut()) {
            if row.iter().any(|v| v.is_nan()) {
                return Err("ArgMaxRows: NaN in the input");
            }
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            *label = best as i64;
        }
        Ok(())
    }
}
