//! `sinter bench MODEL_OR_CASE_DIR`: compiles a model into a release binary for the host CPU
//! and measures it: median/p10/p90 latency, load time (`Model::new()`), the first run, peak
//! RSS of the process, arena, weights and binary sizes, and the build time.
//!
//! Inputs come from the case's `test_data_set_0` when there is one, else deterministic
//! pseudo-random values.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use quote::{format_ident, quote};

use super::harness::{self, io_err, write_if_changed};
use crate::codegen::{format_tokens, generate, CodegenOptions, WeightsMode};
use crate::error::{CompileError, ErrorKind};
use crate::{parse_consts, parse_dim_args, Builder, Result};

/// Arguments of `sinter bench`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// An `.onnx` file, or a case folder with `model.onnx` and `test_data_set_0/`.
    model: PathBuf,
    /// Bind a symbolic dimension, e.g. `--dim N=1`, or bound it, e.g. `--dim 'N<=8'` (the run
    /// then takes the size of the case's input).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// Turn a graph input into a constant, e.g. `--const sr=16000`.
    #[arg(long = "const", value_name = "NAME=VALUE")]
    consts: Vec<String>,
    /// Threads for the big kernels (the caller's plus `threads - 1` workers).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 200)]
    iters: usize,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep the loaded model and take requests on stdin instead of timing once: after loading,
    /// the first run and the warm-up runs, print `ready LOAD_US FIRST_RUN_US`, then for each
    /// line `N` read, run the model `N` times and print the `N` times in microseconds on one
    /// line, until stdin closes. A benchmark driver alternates short blocks of this model
    /// with another runtime's, so that both see the same machine (`scripts/bench_vs_ort.py
    /// --paired`).
    #[arg(long, conflicts_with = "json")]
    serve: bool,
    /// Optimization level, 0 to 3.
    #[arg(short = 'O', default_value_t = 3)]
    opt: u8,
    #[command(flatten)]
    quant: super::QuantArgs,
    /// Where the benchmark crate is built.
    #[arg(long, default_value = "target/sinter-bench")]
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
                .module_name("bench_model")
                .dim_args(parse_dim_args(&args.dims)?)
                .constants(parse_consts(&args.consts)?)
                .opt_level(super::opt_level(args.opt)?),
        )
    })?;
    let (compiled, model_path) = (&measured.compiled, &measured.model_path);
    let graph = &compiled.graph;

    // Absolute, so that `include_bytes!` paths in the generated code resolve from anywhere.
    let root = &std::path::absolute(&args.cache_dir).map_err(harness::io_err(&args.cache_dir))?;
    let src = root.join("src");
    std::fs::create_dir_all(&src).map_err(io_err(&src))?;
    let weights_path = src.join("model.weights.bin");
    write_if_changed(&weights_path, &compiled.plan.weights)?;
    let opts = CodegenOptions {
        module_name: "bench_model".into(),
        weights: WeightsMode::File(weights_path.display().to_string()),
        track_model: None,
        source: model_path.display().to_string(),
        profile: false,
        ndarray: false,
    };
    write_if_changed(
        &src.join("model.rs"),
        format_tokens(generate(graph, &compiled.plan, &opts)?)?.as_bytes(),
    )?;

    // Inputs: the data set's (matched by name), or synthetic.
    let input_dir = root.join("inputs");
    let (reads, arg_idents) = measured.write_inputs(&input_dir)?;
    let elem_io = harness::elem_io(false);
    let dims = measured.dims_arg(&format_ident!("bench_model"));
    let call = quote!(model.run_slices(#dims #(std::hint::black_box(&#arg_idents)),*).expect("input lengths"));
    let main = quote! {
        use std::path::Path;
        use std::time::Instant;

        #elem_io

        fn peak_rss_kb() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        }

        fn main() {
            let mut args = std::env::args().skip(1);
            let dir = std::path::PathBuf::from(args.next().expect("input dir"));
            let iters: usize = args.next().and_then(|v| v.parse().ok()).expect("iters");
            let warmup: usize = args.next().and_then(|v| v.parse().ok()).expect("warmup");
            let threads: usize = args.next().and_then(|v| v.parse().ok()).expect("threads");
            let serve = args.next().is_some_and(|v| v == "serve");
            #(#reads)*
            let start = Instant::now();
            let mut model = bench_model::Model::with_threads(threads);
            let load_us = start.elapsed().as_secs_f64() * 1e6;
            let start = Instant::now();
            std::hint::black_box(#call);
            let first_run_us = start.elapsed().as_secs_f64() * 1e6;
            for _ in 0..warmup {
                std::hint::black_box(#call);
            }
            if serve {
                use std::io::{BufRead, Write};
                let mut out = std::io::stdout().lock();
                // The driver closing a pipe ends the session.
                if writeln!(out, "ready {load_us} {first_run_us}").and_then(|()| out.flush()).is_err() {
                    return;
                }
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { return };
                    let Ok(runs) = line.trim().parse::<usize>() else {
                        eprintln!("expected a number of runs per line, got {line:?}");
                        std::process::exit(2);
                    };
                    // Times first, text after: nothing but the runs between the clocks.
                    let times: Vec<f64> = (0..runs)
                        .map(|_| {
                            let start = Instant::now();
                            std::hint::black_box(#call);
                            start.elapsed().as_secs_f64() * 1e6
                        })
                        .collect();
                    let line = times.iter().map(f64::to_string).collect::<Vec<_>>().join(" ");
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
                return;
            }
            let mut times: Vec<f64> = Vec::with_capacity(iters.max(1));
            for _ in 0..iters.max(1) {
                let start = Instant::now();
                std::hint::black_box(#call);
                times.push(start.elapsed().as_secs_f64() * 1e6);
            }
            times.sort_by(f64::total_cmp);
            let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
            println!(
                "{} {} {} {} {} {}",
                at(0.5), at(0.1), at(0.9), load_us, first_run_us, peak_rss_kb()
            );
        }
    };
    let source = format!(
        "// @generated by `sinter bench`.\n#![allow(clippy::all)]\ninclude!(\"model.rs\");\n{}",
        format_tokens(main)?
    );
    write_if_changed(&src.join("main.rs"), source.as_bytes())?;

    eprintln!("building the benchmark in {} ...", root.display());
    let build_start = Instant::now();
    let exe = match harness::build_crate(root, "sinter-bench-harness")? {
        Ok(exe) => exe,
        Err(output) => {
            return Err(CompileError::new(ErrorKind::Option(format!(
                "the benchmark failed to build:\n{output}"
            ))))
        }
    };
    let build_s = build_start.elapsed().as_secs_f64();
    let mut harness = Command::new(&exe);
    harness
        .arg(&input_dir)
        .arg(args.iters.to_string())
        .arg(args.warmup.to_string())
        .arg(args.threads.to_string());
    if args.serve {
        // The harness talks to our caller on the inherited stdin and stdout.
        let status = harness.arg("serve").status().map_err(io_err(&exe))?;
        return Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let output = harness.output().map_err(io_err(&exe))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<f64> = stdout
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [median, p10, p90, load, first, rss] = fields[..] else {
        return Err(CompileError::new(ErrorKind::Option(format!(
            "the benchmark failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ))));
    };
    let binary_bytes = std::fs::metadata(&exe).map(|m| m.len()).unwrap_or(0);
    let name = model_path.display();
    if args.json {
        let mut json = String::from("{");
        let _ = write!(
            json,
            "\"model\":{:?},\"median_us\":{median:.3},\"p10_us\":{p10:.3},\"p90_us\":{p90:.3},\"iters\":{},\"threads\":{},\
             \"load_us\":{load:.3},\"first_run_us\":{first:.3},\"peak_rss_kb\":{rss},\"arena_bytes\":{},\"weights_bytes\":{},\
             \"binary_bytes\":{binary_bytes},\"build_s\":{build_s:.2}",
            name.to_string(),
            args.iters.max(1),
            args.threads,
            compiled.plan.arena_bytes,
            compiled.plan.weights.len()
        );
        json.push('}');
        println!("{json}");
    } else {
        println!("model:       {name}");
        println!("latency:     median {median:.1} us (p10 {p10:.1}, p90 {p90:.1}) over {} runs, {} thread(s)", args.iters.max(1), args.threads);
        println!("load:        {load:.1} us (Model::new); first run {first:.1} us");
        println!(
            "memory:      peak RSS {rss} kB; arena {} bytes; weights {} bytes",
            compiled.plan.arena_bytes,
            compiled.plan.weights.len()
        );
        println!("binary:      {binary_bytes} bytes; build {build_s:.1} s");
    }
    Ok(ExitCode::SUCCESS)
}
