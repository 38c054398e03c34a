//! `sinter profile MODEL_OR_CASE_DIR`: compiles a model with a clock around every node
//! ([`crate::Builder::profile`]) into a release binary for the host CPU (`sinter-rt`'s
//! `profile` feature), runs it, and prints a table sorted by time: node, op, kernel,
//! microseconds per run, share of the time in nodes, achieved GFLOP/s and GB/s (from the
//! compiler's estimates of each node's FLOPs and bytes moved).
//!
//! `--json` prints one JSON object instead; `--trace FILE` writes the last run as a Chrome
//! trace in the layout of ONNX Runtime's `enable_profiling` output, so that the tools that read
//! ONNX Runtime's profiles (and `chrome://tracing`, Perfetto) open it. Inputs come from the
//! case's `test_data_set_0` when there is one, else deterministic pseudo-random values (as
//! for `sinter bench`).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use quote::{format_ident, quote};

use super::harness::{self, io_err, write_if_changed};
use crate::codegen::{format_tokens, generate, CodegenOptions, WeightsMode};
use crate::error::{CompileError, ErrorKind};
use crate::{parse_consts, parse_dim_args, Builder, Result};

/// Arguments of `sinter profile`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// An `.onnx` file, or a case folder with `model.onnx` and `test_data_set_0/`.
    model: PathBuf,
    /// Bind a symbolic dimension, e.g. `--dim N=1`, or bound it, e.g. `--dim 'N<=8'` (the
    /// model then takes N at run time, up to 8; `'W<=1280:32'` allows multiples of 32).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// Turn a graph input into a constant, e.g. `--const sr=16000`.
    #[arg(long = "const", value_name = "NAME=VALUE")]
    consts: Vec<String>,
    /// Threads for the big kernels (the caller's plus `threads - 1` workers).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed runs (per-node times are their average).
    #[arg(long, default_value_t = 100)]
    iters: usize,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Write the last run as a Chrome trace (ONNX Runtime's profile layout) to this file.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Optimization level, 0 to 3.
    #[arg(short = 'O', default_value_t = 3)]
    opt: u8,
    #[command(flatten)]
    quant: super::QuantArgs,
    /// Where the profiling crate is built.
    #[arg(long, default_value = "target/sinter-profile")]
    cache_dir: PathBuf,
}

pub(super) fn run(args: Args) -> Result<ExitCode> {
    if args.threads == 0 {
        return Err(CompileError::new(ErrorKind::Option(
            "--threads must be at least 1".into(),
        )));
    }
    let measured = harness::compile_measured(&args.model, !args.dims.is_empty(), |path| {
        args.quant.apply(
            Builder::new(path)
                .calibration_cache(args.cache_dir.join("calibrate"))
                .module_name("profile_model")
                .dim_args(parse_dim_args(&args.dims)?)
                .constants(parse_consts(&args.consts)?)
                .opt_level(super::opt_level(args.opt)?)
                .profile(true),
        )
    })?;
    let compiled = &measured.compiled;

    // Absolute, so that `include_bytes!` paths in the generated code resolve from anywhere.
    let root = &std::path::absolute(&args.cache_dir).map_err(io_err(&args.cache_dir))?;
    let src = root.join("src");
    std::fs::create_dir_all(&src).map_err(io_err(&src))?;
    let weights_path = src.join("model.weights.bin");
    write_if_changed(&weights_path, &compiled.plan.weights)?;
    let opts = CodegenOptions {
        module_name: "profile_model".into(),
        weights: WeightsMode::File(weights_path.display().to_string()),
        track_model: None,
        source: measured.model_path.display().to_string(),
        profile: true,
        ndarray: false,
    };
    write_if_changed(
        &src.join("model.rs"),
        format_tokens(generate(&compiled.graph, &compiled.plan, &opts)?)?.as_bytes(),
    )?;

    let input_dir = root.join("inputs");
    let (reads, arg_idents) = measured.write_inputs(&input_dir)?;
    let elem_io = harness::elem_io(false);
    let dims = measured.dims_arg(&format_ident!("profile_model"));
    let call = quote!(model.run_slices(#dims #(std::hint::black_box(&#arg_idents)),*).expect("input lengths"));
    let main = quote! {
        use std::path::Path;

        #elem_io

        fn main() {
            let mut args = std::env::args().skip(1);
            let dir = std::path::PathBuf::from(args.next().expect("input dir"));
            let iters: usize = args.next().and_then(|v| v.parse().ok()).expect("iters");
            let warmup: usize = args.next().and_then(|v| v.parse().ok()).expect("warmup");
            let threads: usize = args.next().and_then(|v| v.parse().ok()).expect("threads");
            let json = args.next().as_deref() == Some("json");
            let trace = args.next();
            #(#reads)*
            let mut model = profile_model::Model::with_threads(threads);
            for _ in 0..warmup {
                std::hint::black_box(#call);
            }
            model.reset_profile();
            for _ in 0..iters.max(1) {
                std::hint::black_box(#call);
            }
            let report = model.profile();
            if let Some(path) = trace {
                std::fs::write(&path, report.chrome_trace()).expect("trace file");
            }
            if json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
        }
    };
    let source = format!(
        "// @generated by `sinter profile`.\n#![allow(clippy::all)]\ninclude!(\"model.rs\");\n{}",
        format_tokens(main)?
    );
    write_if_changed(&src.join("main.rs"), source.as_bytes())?;

    eprintln!("building the profiling binary in {} ...", root.display());
    let exe = match harness::build_crate_with(root, "sinter-profile-harness", &["profile"])? {
        Ok(exe) => exe,
        Err(output) => {
            return Err(CompileError::new(ErrorKind::Option(format!(
                "the profiling binary failed to build:\n{output}"
            ))))
        }
    };
    let mut command = Command::new(&exe);
    command
        .arg(&input_dir)
        .arg(args.iters.to_string())
        .arg(args.warmup.to_string())
        .arg(args.threads.to_string())
        .arg(if args.json { "json" } else { "table" });
    if let Some(trace) = &args.trace {
        command.arg(std::path::absolute(trace).map_err(io_err(trace))?);
    }
    let output = command.output().map_err(io_err(&exe))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || stdout.trim().is_empty() {
        return Err(CompileError::new(ErrorKind::Option(format!(
            "the profiling run failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ))));
    }
    let name = measured.model_path.display().to_string();
    if args.json {
        println!(
            "{{\"model\":{},\"threads\":{},\"iters\":{},\"warmup\":{},\"profile\":{}}}",
            json_string(&name),
            args.threads,
            args.iters.max(1),
            args.warmup,
            stdout.trim()
        );
    } else {
        println!("model:   {name}");
        println!(
            "runs:    {} timed after {} warm-up, {} thread(s)",
            args.iters.max(1),
            args.warmup,
            args.threads
        );
        println!();
        print!("{stdout}");
    }
    if let Some(trace) = &args.trace {
        eprintln!("trace:   {}", trace.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
