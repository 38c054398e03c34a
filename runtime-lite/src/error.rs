//! The error type of generated `run_slices` functions.

use core::fmt;

/// What a generated model's slice API rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An input slice does not have the element count the model was compiled for.
    InputLength {
        /// The ONNX name of the graph input.
        input: &'static str,
        /// Elements the compiled model expects (the product of the input's bound shape).
        expected: usize,
        /// Elements that were passed.
        found: usize,
    },
    /// The inputs select a branch of the model (an ONNX `If`) that cannot run with the shapes
    /// the model was compiled for.
    InvalidBranch {
        /// Which node, and why the branch cannot run.
        reason: &'static str,
    },
    /// A bounded dimension's size is above its bound or not a multiple of its step.
    DimOutOfRange {
        /// The dimension's name in the model.
        dim: &'static str,
        /// The size passed.
        value: usize,
        /// The bound the model was compiled with.
        max: usize,
        /// Sizes must be multiples of this.
        step: usize,
    },
    /// An input's values are ones the model cannot run with: a `TopK` whose run-time `k` is
    /// larger than its axis, a `Reshape` target that does not hold the data, ...
    InvalidValue {
        /// The node's name.
        node: &'static str,
        /// Why its inputs cannot be computed on.
        reason: &'static str,
    },
    /// An `ndarray` input (`run_ndarray`) does not have the shape the model was compiled for.
    InputShape {
        /// The ONNX name of the graph input.
        input: &'static str,
        /// The shape the compiled model expects.
        expected: &'static [usize],
    },
    /// An `ndarray` input (`run_ndarray`) is not in standard (row-major, contiguous) layout;
    /// `as_standard_layout()` makes one that is.
    InputLayout {
        /// The ONNX name of the graph input.
        input: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InputLength {
                input,
                expected,
                found,
            } => write!(
                f,
                "input `{input}` has {found} elements, expected {expected}"
            ),
            Error::InvalidBranch { reason } => {
                write!(f, "the inputs select a branch that cannot run: {reason}")
            }
            Error::DimOutOfRange {
                dim,
                value,
                max,
                step,
            } => {
                write!(f, "dim {dim} is {value}; the model takes at most {max}")?;
                if *step > 1 {
                    write!(f, ", a multiple of {step}")?;
                }
                Ok(())
            }
            Error::InvalidValue { node, reason } => write!(f, "node \"{node}\": {reason}"),
            Error::InputShape { input, expected } => {
                write!(f, "input `{input}` must have shape {expected:?}")
            }
            Error::InputLayout { input } => write!(
                f,
                "input `{input}` is not in standard layout (use `as_standard_layout()`)"
            ),
        }
    }
}

impl core::error::Error for Error {}

/// Checks a slice's length and views it as a fixed-size array reference.
pub fn check_input<'a, T, const N: usize>(
    input: &'static str,
    values: &'a [T],
) -> Result<&'a [T; N], Error> {
    values.try_into().map_err(|_| Error::InputLength {
        input,
        expected: N,
        found: values.len(),
    })
}

/// Checks a bounded dimension's size against its bound and step.
pub fn check_dim(dim: &'static str, value: usize, max: usize, step: usize) -> Result<usize, Error> {
    if value <= max && value.is_multiple_of(step.max(1)) {
        Ok(value)
    } else {
        Err(Error::DimOutOfRange {
            dim,
            value,
            max,
            step,
        })
    }
}

/// Checks that an input slice holds `expected` elements (the product of its actual shape).
pub fn check_len<'a, T>(
    input: &'static str,
    values: &'a [T],
    expected: usize,
) -> Result<&'a [T], Error> {
    if values.len() == expected {
        Ok(values)
    } else {
        Err(Error::InputLength {
            input,
            expected,
            found: values.len(),
        })
    }
}
