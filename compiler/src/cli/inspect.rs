//! `sinter inspect model.onnx [--dim NAME=VALUE]...`: what a model holds and what compiling
//! it would take.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::ir::Dim;
use crate::passes::unsupported_ops;
use crate::{parse_consts, parse_dims, Builder, Result};

/// Arguments of `sinter inspect`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Bind a symbolic dimension, e.g. `--dim N=1`.
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// Turn a graph input into a constant, e.g. `--const sr=16000` (comma-separate several values).
    #[arg(long = "const", value_name = "NAME=VALUE")]
    consts: Vec<String>,
    /// Optimization level, 0 to 3.
    #[arg(short = 'O', default_value_t = 3)]
    opt: u8,
}

fn dims_text(dims: &[Dim]) -> String {
    let items: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Sym(s) => s.clone(),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn histogram_text(hist: &[(String, usize)]) -> String {
    hist.iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn run(args: Args) -> Result<ExitCode> {
    let builder = Builder::new(&args.model)
        .dims(parse_dims(&args.dims)?)
        .constants(parse_consts(&args.consts)?)
        .opt_level(super::opt_level(args.opt)?);
    let model = crate::onnx::read_model(&args.model)?;
    let graph = builder.load()?;

    println!("model: {}", args.model.display());
    println!(
        "ir_version: {}, producer: {} {}",
        model.ir_version(),
        model.producer_name(),
        model.producer_version()
    );
    let opsets: Vec<String> = model
        .opset_import
        .iter()
        .map(|o| {
            format!(
                "{}={}",
                if o.domain().is_empty() {
                    "ai.onnx"
                } else {
                    o.domain()
                },
                o.version()
            )
        })
        .collect();
    println!("opsets: {}", opsets.join(", "));
    println!("inputs:");
    for &id in &graph.inputs {
        let v = graph.value(id);
        let dtype = v.dtype.map_or_else(|| "?".to_string(), |d| d.to_string());
        println!(
            "  {}: {} {}",
            v.name,
            dtype,
            dims_text(v.declared.as_deref().unwrap_or_default())
        );
    }
    println!("outputs:");
    for &id in &graph.outputs {
        println!("  {}", graph.value(id).name);
    }
    let (mut params, mut param_bytes) = (0usize, 0usize);
    for v in &graph.values {
        if let Some(t) = &v.constant {
            params += t.len();
            param_bytes += t.bytes.len();
        }
    }
    for node in graph.nodes.iter().filter(|n| n.op_type == "Constant") {
        for a in &node.attributes {
            if let Some(t) = &a.t {
                let n: usize = t
                    .dims
                    .iter()
                    .map(|&d| usize::try_from(d).unwrap_or(0))
                    .product();
                params += n;
                param_bytes += n * crate::ir::DType::from_onnx(t.data_type())
                    .map_or(0, crate::ir::DType::size);
            }
        }
    }
    println!("nodes: {}", graph.nodes.len());
    println!("ops: {}", histogram_text(&graph.op_histogram()));
    println!("parameters: {params} ({param_bytes} bytes)");
    let unsupported = unsupported_ops(&graph)?;
    if unsupported.is_empty() {
        println!("unsupported ops: none");
    } else {
        println!("unsupported ops: {}", unsupported.len());
        for u in &unsupported {
            println!(
                "  {} (opset {}) at {}: {}",
                u.node.op_type, u.opset, u.node, u.reason
            );
        }
    }
    match builder.compile() {
        Ok(compiled) => {
            println!(
                "after passes: {} nodes: {}",
                compiled.graph.nodes.len(),
                histogram_text(&compiled.graph.op_histogram())
            );
            for s in &compiled.stats {
                println!(
                    "  {:<16} {:>6} -> {:>6} nodes",
                    s.name, s.nodes_before, s.nodes_after
                );
            }
            println!(
                "arena: {} bytes (lower bound {} bytes); weights: {} bytes",
                compiled.plan.arena_bytes,
                compiled.plan.arena_lower_bound,
                compiled.plan.weights.len()
            );
        }
        Err(e) => println!("cannot compile yet: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}
