//! `ndarray` views in and out of generated models (feature `ndarray`): what a generated
//! `run_ndarray` calls.

use ndarray::{ArrayView, Dimension, ShapeBuilder};

use crate::Error;

/// The elements of an input view as the fixed-size array a model reads, after checking that
/// its shape is `expected` and that it is in standard (row-major, contiguous) layout.
///
/// # Errors
/// [`Error::InputShape`] for another shape, [`Error::InputLayout`] for a strided view.
pub fn input<'a, T, D: Dimension, const N: usize>(
    input: &'static str,
    expected: &'static [usize],
    view: ArrayView<'a, T, D>,
) -> Result<&'a [T; N], Error> {
    if view.shape() != expected {
        return Err(Error::InputShape { input, expected });
    }
    let values = view.to_slice().ok_or(Error::InputLayout { input })?;
    values
        .try_into()
        .map_err(|_| Error::InputShape { input, expected })
}

/// An output's elements viewed with the shape the model computed them in.
///
/// Panics if `shape` does not hold `values.len()` elements (the compiler gives both).
pub fn output<T, D: Dimension>(values: &[T], shape: D) -> ArrayView<'_, T, D> {
    ArrayView::from_shape(shape.into_shape_with_order(), values)
        .expect("the compiled output shape holds the output's elements")
}

/// A run-time-shaped output (see [`crate::Shaped`]) as a view with its actual shape.
pub fn output_shaped<'a, T, const R: usize>(
    value: crate::Shaped<'a, T, R>,
) -> ArrayView<'a, T, ndarray::IxDyn> {
    ArrayView::from_shape(ndarray::IxDyn(&value.shape()), value.data())
        .expect("a shaped output holds the elements of its shape")
}

/// The elements of an input view of a model with bounded dims, after checking its layout and
/// that each axis is `expected[a]` where `bounded[a]` is false, and at most `expected[a]`
/// where it is true (the actual sizes then go to the model's `Dims`).
///
/// # Errors
/// [`Error::InputShape`] (with the bounds as `expected`) for another rank or an axis off its
/// size or over its bound, [`Error::InputLayout`] for a strided view.
pub fn input_within<'a, T, D: Dimension>(
    input: &'static str,
    expected: &'static [usize],
    bounded: &'static [bool],
    view: ArrayView<'a, T, D>,
) -> Result<&'a [T], Error> {
    let shape = view.shape();
    let fits = shape.len() == expected.len()
        && shape
            .iter()
            .zip(expected)
            .zip(bounded)
            .all(|((&d, &e), &b)| if b { d <= e } else { d == e });
    if !fits {
        return Err(Error::InputShape { input, expected });
    }
    view.to_slice().ok_or(Error::InputLayout { input })
}
