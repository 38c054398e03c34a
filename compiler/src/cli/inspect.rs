//! `sinter inspect model.onnx [--dim NAME=VALUE]...`: what a model holds and what compiling
//! it would take.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::ir::Dim;
use crate::passes::unsupported_ops;
use crate::{parse_consts, parse_dim_args, Builder, Result};

/// Arguments of `sinter inspect`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Bind a symbolic dimension, e.g. `--dim N=1`, or bound it, e.g. `--dim 'N<=8'` (the
    /// model then takes N at run time, up to 8; `'W<=1280:32'` allows multiples of 32).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// Turn a graph input into a constant, e.g. `--const sr=16000` (comma-separate several values).
    #[arg(long = "const", value_name = "NAME=VALUE")]
    consts: Vec<String>,
    /// Optimization level, 0 to 3.
    #[arg(short = 'O', default_value_t = 3)]
    opt: u8,
    #[command(flatten)]
    quant: super::QuantArgs,
    /// Show what each pass did: nodes before and after, and the ops it removed or added.
    #[arg(long)]
    passes: bool,
    /// Print the graph after the passes, one line per node (`y: float32[2] = Relu(x)`).
    #[arg(long)]
    graph: bool,
    /// Print one JSON object (nodes_before, nodes_after, ops_before, ops_after, passes,
    /// arena_bytes, arena_lower_bound_bytes, weights_bytes, parameters, unsupported).
    #[arg(long)]
    json: bool,
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_histogram(hist: &[(String, usize)]) -> String {
    let items: Vec<String> = hist
        .iter()
        .map(|(op, n)| format!("{}:{n}", json_str(op)))
        .collect();
    format!("{{{}}}", items.join(","))
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
    if args.json {
        return run_json(&args);
    }
    if args.passes {
        return run_passes_report(&args);
    }
    if args.graph {
        let compiled = builder(&args)?.compile()?;
        print!("{}", compiled.graph.dump());
        return Ok(ExitCode::SUCCESS);
    }
    let builder = builder(&args)?;
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
            // Values whose shapes only the run fixes: planned at their capacity.
            let dynamic: Vec<String> = compiled
                .graph
                .values
                .iter()
                .filter(|v| v.is_dynamic())
                .map(|v| {
                    let axes: Vec<String> = v
                        .shape
                        .iter()
                        .flatten()
                        .zip(&v.dynamic)
                        .map(|(d, &dy)| if dy { "?".into() } else { d.to_string() })
                        .collect();
                    format!(
                        "{} [{}] (at most {} elements)",
                        v.name,
                        axes.join(", "),
                        v.len()
                    )
                })
                .collect();
            if !dynamic.is_empty() {
                println!(
                    "shapes known at run time (arena sized for their capacity): {}",
                    dynamic.join(", ")
                );
            }
        }
        Err(e) => println!("cannot compile yet: {e}"),
    }
    if args.quant.enabled() {
        quantize_report(&args, &builder)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn builder(args: &Args) -> Result<Builder> {
    args.quant.apply(
        Builder::new(&args.model)
            .dim_args(parse_dim_args(&args.dims)?)
            .constants(parse_consts(&args.consts)?)
            .opt_level(super::opt_level(args.opt)?),
    )
}

/// The pass context the flags describe.
fn pass_cx(args: &Args) -> Result<crate::passes::PassCx> {
    let dims = parse_dim_args(&args.dims)?;
    Ok(crate::passes::PassCx {
        dims: dims.fixed,
        bounds: dims.bounded,
        related: dims.related,
        consts: parse_consts(&args.consts)?,
        opt_level: super::opt_level(args.opt)?,
        quantize: args.quant.mode()?,
        quantize_exclude: args.quant.quantize_exclude.clone(),
        ..Default::default()
    })
}

/// `--quantize ...`: which products were quantized, which stayed float32 and why, and the
/// weight bytes with and without quantization.
fn quantize_report(args: &Args, builder: &Builder) -> Result<()> {
    let cx = builder.pass_cx()?.into_owned();
    let mut graph = builder.load()?;
    for pass in crate::passes::PASSES
        .iter()
        .filter(|p| p.min_level <= cx.opt_level)
    {
        if pass.name == "quantize" {
            break;
        }
        graph = (pass.run)(graph, &cx)?;
    }
    let mut float = Vec::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        let reason = if cx.quantize_exclude.contains(&node.name)
            && crate::passes::float_reason(&graph, index, cx.quantize).is_none()
            && matches!(node.op_type.as_str(), "Gemm" | "MatMul" | "Conv")
        {
            Some("excluded (--quantize-exclude)")
        } else {
            crate::passes::float_reason(&graph, index, cx.quantize)
        };
        if let Some(reason) = reason {
            float.push(format!("  {} ({}): {reason}", node.name, node.op_type));
        }
    }
    let planned: Vec<(String, String)> = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|&(i, n)| {
            matches!(n.op_type.as_str(), "Gemm" | "MatMul" | "Conv")
                && !cx.quantize_exclude.contains(&n.name)
                && crate::passes::float_reason(&graph, i, cx.quantize).is_none()
        })
        .map(|(_, n)| (n.name.clone(), n.op_type.clone()))
        .collect();
    let quantized = crate::passes::quantize(graph, &cx)?;
    let names: Vec<String> = quantized
        .nodes
        .iter()
        .filter(|n| {
            matches!(
                &n.op,
                Some(crate::ops::Op::Int8Product(_) | crate::ops::Op::GatherInt8(_))
            )
        })
        .map(|n| format!("  {}", n.name))
        .collect();
    // Static quantization also needs a calibrated range for the product's input and output.
    for (name, op_type) in planned {
        if !names.iter().any(|n| n.trim() == name) {
            float.push(format!(
                "  {name} ({op_type}): no calibrated range for its input or output"
            ));
        }
    }
    println!("quantization ({}):", args.quant.quantize);
    println!("quantized to int8: {} nodes", names.len());
    for line in &names {
        println!("{line}");
    }
    println!("stayed float32: {} nodes", float.len());
    for line in &float {
        println!("{line}");
    }
    let float_bytes = builder
        .clone()
        .quantize(crate::Quantize::None)
        .compile()?
        .plan
        .weights
        .len();
    let int8_bytes = builder.compile()?.plan.weights.len();
    println!(
        "weights: {float_bytes} bytes in float32, {int8_bytes} bytes quantized ({:.2}x)",
        int8_bytes as f64 / float_bytes.max(1) as f64
    );
    Ok(())
}

/// `--passes`: one line per pass with node counts and the op-count changes it made.
fn run_passes_report(args: &Args) -> Result<ExitCode> {
    let builder = builder(args)?;
    let graph = builder.load()?;
    let cx = pass_cx(args)?;
    let mut graph = graph;
    println!("{:<18} {:>8} {:>8}  changes", "pass", "before", "after");
    for pass in crate::passes::PASSES
        .iter()
        .filter(|p| p.min_level <= cx.opt_level)
    {
        let before = graph.op_histogram();
        let n_before = graph.nodes.len();
        graph = (pass.run)(graph, &cx)?;
        let after = graph.op_histogram();
        let mut changes = Vec::new();
        let ops: std::collections::BTreeSet<&String> =
            before.iter().chain(&after).map(|(op, _)| op).collect();
        for op in ops {
            let count =
                |h: &[(String, usize)]| h.iter().find(|(o, _)| o == op).map_or(0, |(_, n)| *n);
            let (b, a) = (count(&before), count(&after));
            if a != b {
                changes.push(format!("{op} {b}->{a}"));
            }
        }
        println!(
            "{:<18} {:>8} {:>8}  {}",
            pass.name,
            n_before,
            graph.nodes.len(),
            changes.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--json`: the figures scripts compare.
fn run_json(args: &Args) -> Result<ExitCode> {
    let builder = builder(args)?;
    let graph = builder.load()?;
    let unsupported = unsupported_ops(&graph)?;
    let params: usize = graph
        .values
        .iter()
        .filter_map(|v| v.constant.as_ref())
        .map(crate::ir::Tensor::len)
        .sum();
    let mut fields = vec![
        format!("\"model\":{}", json_str(&args.model.display().to_string())),
        format!("\"opset\":{}", graph.opset),
        format!("\"nodes_before\":{}", graph.nodes.len()),
        format!("\"ops_before\":{}", json_histogram(&graph.op_histogram())),
        format!("\"initializer_parameters\":{params}"),
        format!(
            "\"unsupported\":[{}]",
            unsupported
                .iter()
                .map(|u| json_str(&format!("{} at {}: {}", u.node.op_type, u.node, u.reason)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    ];
    match builder.compile() {
        Ok(compiled) => {
            fields.push(format!("\"nodes_after\":{}", compiled.graph.nodes.len()));
            let views = compiled.plan.skip.iter().filter(|&&s| s).count();
            fields.push(format!(
                "\"nodes_with_code\":{}",
                compiled.graph.nodes.len() - views
            ));
            fields.push(format!(
                "\"ops_after\":{}",
                json_histogram(&compiled.graph.op_histogram())
            ));
            let passes: Vec<String> = compiled
                .stats
                .iter()
                .map(|s| {
                    format!(
                        "{{\"name\":{},\"nodes_before\":{},\"nodes_after\":{}}}",
                        json_str(s.name),
                        s.nodes_before,
                        s.nodes_after
                    )
                })
                .collect();
            fields.push(format!("\"passes\":[{}]", passes.join(",")));
            fields.push(format!("\"arena_bytes\":{}", compiled.plan.arena_bytes));
            fields.push(format!(
                "\"arena_lower_bound_bytes\":{}",
                compiled.plan.arena_lower_bound
            ));
            fields.push(format!("\"weights_bytes\":{}", compiled.plan.weights.len()));
        }
        Err(e) => fields.push(format!("\"error\":{}", json_str(&e.to_string()))),
    }
    println!("{{{}}}", fields.join(","));
    Ok(ExitCode::SUCCESS)
}
