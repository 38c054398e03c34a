//! The intermediate representation: a [`Graph`] of [`Node`]s over [`Value`]s, with typed
//! constant [`Tensor`]s. It knows nothing of passes or code generation.

mod dtype;
mod graph;
mod print;
mod tensor;

/// The float8/float4/int4/int2 conversions of `sinter-rt`, compiled from the runtime's own
/// source file, so constant folding rounds exactly as generated code does. The compiler
/// cannot depend on `sinter-rt` (that crate's `macros` feature depends on this one).
#[path = "../../../runtime-lite/src/lowp.rs"]
pub mod lowp;

/// The packed int8 operand layouts of `sinter-rt`, compiled from the runtime's own source
/// file, so that weights packed at compile time are exactly what its kernels read.
#[path = "../../../runtime-lite/src/int8/pack.rs"]
pub mod int8_pack;

pub use dtype::DType;
pub use graph::{Bounds, Dim, DimBound, Graph, Node, NodeId, Value, ValueId};
pub use tensor::Tensor;
