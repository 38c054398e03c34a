//! The intermediate representation: a [`Graph`] of [`Node`]s over [`Value`]s, with typed
//! constant [`Tensor`]s. It knows nothing of passes or code generation.

mod dtype;
mod graph;
mod print;
mod tensor;

pub use dtype::DType;
pub use graph::{Dim, Graph, Node, NodeId, Value, ValueId};
pub use tensor::Tensor;
