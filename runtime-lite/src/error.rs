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
