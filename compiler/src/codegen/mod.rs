//! Code generation: the Rust module of a planned graph, built with `quote` and formatted with
//! `prettyplease`.

mod module;
pub mod names;
pub mod profile;

pub use module::{bounded_dims, dim_source, format_tokens, generate, CodegenOptions, WeightsMode};
