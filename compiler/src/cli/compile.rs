//! `sinter compile model.onnx -o out.rs [--dim NAME=VALUE]... [-O N] [--custom-op OP=PATH=>RULES]...`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{parse_consts, parse_dim_args, Builder, Result};

/// Arguments of `sinter compile`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// The Rust file to write; `<stem>.weights.bin` is written beside it.
    #[arg(short, long)]
    output: PathBuf,
    /// Bind a symbolic dimension, e.g. `--dim N=1`, or bound it, e.g. `--dim 'N<=8'` (the
    /// model then takes N at run time, up to 8; `'W<=1280:32'` allows multiples of 32).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// Turn a graph input into a constant, e.g. `--const sr=16000` (comma-separate several values).
    #[arg(long = "const", value_name = "NAME=VALUE")]
    consts: Vec<String>,
    /// The generated module's name (default: from the file name).
    #[arg(long)]
    module: Option<String>,
    /// Optimization level, 0 to 3.
    #[arg(short = 'O', default_value_t = 3)]
    opt: u8,
    /// Also generate `Model::run_ndarray` (`ndarray` views in and out; the crate then needs
    /// `sinter-rt`'s `ndarray` feature).
    #[arg(long)]
    ndarray: bool,
    /// Run the nodes of an op sinter does not know with your own type, e.g.
    /// `--custom-op 'com.example:Gate=crate::ops::Gate=>like(0)'`: the op, the path of a type
    /// implementing `sinter_rt::custom::CustomOp`, and one output rule per output (`like(K)`,
    /// `TYPE like(K)`, `broadcast(K, ...)`, `TYPE[D, ...]`). Repeatable.
    #[arg(long = "custom-op", value_name = "OP=PATH=>RULES")]
    custom_ops: Vec<String>,
    #[command(flatten)]
    quant: super::QuantArgs,
}

/// A `--custom-op` value as a declaration.
fn custom_op(spec: &str) -> Result<crate::ops::custom::CustomOpDecl> {
    let option = |message: String| {
        crate::CompileError::new(crate::ErrorKind::Option(format!(
            "--custom-op {spec}: {message}"
        )))
    };
    let (head, rules) = spec
        .split_once("=>")
        .ok_or_else(|| option("expected OP=PATH=>RULES".into()))?;
    let (op, path) = head
        .split_once('=')
        .ok_or_else(|| option("expected OP=PATH=>RULES".into()))?;
    crate::ops::custom::CustomOpDecl::from_spec(op.trim(), path.trim(), rules).map_err(option)
}

pub(super) fn run(args: Args) -> Result<ExitCode> {
    let mut builder = args.quant.apply(
        Builder::new(&args.model)
            .dim_args(parse_dim_args(&args.dims)?)
            .constants(parse_consts(&args.consts)?)
            .opt_level(super::opt_level(args.opt)?)
            .ndarray(args.ndarray),
    )?;
    for spec in &args.custom_ops {
        builder = builder.custom_op_decl(custom_op(spec)?);
    }
    if let Some(m) = args.module {
        builder = builder.module_name(m);
    }
    let compiled = builder.write_to(&args.output)?;
    eprintln!(
        "wrote {} (module `{}`: {} nodes, arena {} bytes, weights {} bytes)",
        args.output.display(),
        compiled.module_name,
        compiled.graph.nodes.len(),
        compiled.plan.arena_bytes,
        compiled.plan.weights.len()
    );
    Ok(ExitCode::SUCCESS)
}
