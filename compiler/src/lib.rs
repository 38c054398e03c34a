//! `sinter`: an ahead-of-time compiler from ONNX models to specialized Rust source.
//!
//! The pipeline is plain functions over plain data: [`onnx`] reads the model into an
//! [`ir::Graph`], [`passes`] bind dims, infer shapes, fold constants and optimize, [`plan`]
//! places every buffer in one arena, and [`codegen`] emits a Rust module that calls
//! `sinter-rt`. The command line, [`Builder`] (for `build.rs`) and the `include_onnx!` macro
//! are three doors into the same path.
//!
//! ```no_run
//! // build.rs
//! let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
//! sinter::Builder::new("models/mlp.onnx").dim("N", 1).write_to(out.join("mlp.rs")).unwrap();
//! // lib.rs: include!(concat!(env!("OUT_DIR"), "/mlp.rs"));  then mlp::Model::new()
//! ```
//!
//! To see where the time goes, [`Builder::profile`] puts a clock around every node (and
//! `sinter profile` does it for you): the model, built with `sinter-rt`'s `profile` feature,
//! gets `profile()`, which reports per node its op, the kernel its code calls, time per run,
//! and the FLOPs and bytes the compiler estimated for it ([`codegen::profile`]). Without the
//! option the generated code is exactly what it was.
#![forbid(unsafe_code)]

mod builder;
#[cfg(feature = "cli")]
pub mod cli;
pub mod codegen;
pub mod error;
pub mod ir;
pub mod onnx;
pub mod ops;
pub mod passes;
pub mod plan;

pub use builder::{parse_consts, parse_dim_args, parse_dims, Builder, Compiled, DimArgs};
pub use error::{CompileError, ErrorKind, Result};
pub use passes::{OptLevel, Quantize};
