//! `sinter verify CASE_DIR...`: compiles test cases in the ONNX backend layout
//! (`model.onnx`, `test_data_set_N/input_K.pb`, `output_K.pb`) into one generated crate,
//! builds it once in release, runs every data set and compares the outputs.
//!
//! Each case prints `PASS <case>`, `FAIL <case>: <why>` or `UNSUPPORTED <case>: <reason>`;
//! the last line is `N passed, M failed, K unsupported`. A compile error that says the model
//! uses something sinter lacks is UNSUPPORTED; any other compile error, a panic, a shape or
//! type mismatch, or a value out of tolerance is FAIL.
//!
//! Shapes are static: when an op needs, at compile time, an operand that a graph input gives
//! (a Reshape target, Slice bounds, ...), the case is compiled specialized to its data's
//! integer inputs, exactly as `--const` would; if the data sets disagree on those values the
//! case is UNSUPPORTED. Such a case's line says so (`PASS <case>: specialized to its data
//! ...`), and a line before the summary counts them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::harness::{self, io_err, read_data, write_if_changed, DataSet};
use crate::codegen::{format_tokens, generate, CodegenOptions, WeightsMode};
use crate::error::{CompileError, ErrorKind};
use crate::ir::{DType, Tensor};
use crate::{parse_consts, parse_dim_args, Builder, Compiled, Result};

/// Arguments of `sinter verify`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Case directories.
    #[arg(required = true)]
    cases: Vec<PathBuf>,
    /// Bind a symbolic dimension (otherwise bound from each case's input data), or bound it,
    /// e.g. `--dim 'N<=8'`: each case then compiles once and runs every data set at its size.
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// Turn a graph input into a constant, e.g. `--const sr=16000` (comma-separate several values).
    #[arg(long = "const", value_name = "NAME=VALUE")]
    consts: Vec<String>,
    /// Relative tolerance for float outputs.
    #[arg(long, default_value_t = 1e-3)]
    rtol: f64,
    /// Absolute tolerance for float outputs.
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Also exit with status 1 when a case is unsupported.
    #[arg(long)]
    strict: bool,
    /// Compare float outputs by cosine similarity instead of the tolerances: pass when every
    /// output's cosine with the reference is at least this (for quantized models checked
    /// against float references); also reports top-1 agreement.
    #[arg(long, value_name = "MIN")]
    cosine: Option<f64>,
    /// Optimization level, 0 to 3.
    #[arg(short = 'O', default_value_t = 3)]
    opt: u8,
    #[command(flatten)]
    quant: super::QuantArgs,
    /// Where the generated crate is built (kept between runs so rebuilds are incremental).
    #[arg(long, default_value = "target/sinter-verify")]
    cache_dir: PathBuf,
}

enum Outcome {
    /// Passed, with notes to print (cosine similarities).
    Pass(Vec<String>),
    Fail(String),
    Unsupported(String),
}

struct Case {
    name: String,
    /// For each input of the compiled model, its index among the data's inputs (inputs bound
    /// with `--const` are not passed).
    input_map: Vec<usize>,
    data: Vec<DataSet>,
    compiled: Option<Compiled>,
    outcome: Option<Outcome>,
    /// The inputs compiled as constants from the case's data (its shapes depend on their
    /// values): said on its PASS line, since the build is specialized to that data.
    specialized: Vec<String>,
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn prepare(dir: &Path, index: usize, args: &Args) -> Case {
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut case = Case {
        name,
        input_map: Vec::new(),
        data: Vec::new(),
        compiled: None,
        outcome: None,
        specialized: Vec::new(),
    };
    let result = (|| -> Result<Option<Outcome>> {
        case.data = read_data(dir)?;
        let Some(first) = case.data.first() else {
            return Ok(Some(Outcome::Fail("no test_data_set_N folder".into())));
        };
        let shapes: Vec<Vec<usize>> = first.inputs.iter().map(|(_, t)| t.shape.clone()).collect();
        // With bounded dims one build takes every size up to the bounds.
        let dim_args = parse_dim_args(&args.dims)?;
        let bounded = !dim_args.bounded.is_empty();
        if !bounded
            && case
                .data
                .iter()
                .any(|d| d.inputs.iter().map(|(_, t)| &t.shape).ne(shapes.iter()))
        {
            return Ok(Some(Outcome::Unsupported(
                "data sets have different input shapes; a compiled model has one (bound the dims that vary, e.g. --dim 'N<=8')".into(),
            )));
        }
        let builder = args.quant.apply(
            Builder::new(dir.join("model.onnx"))
                .calibration_cache(args.cache_dir.join("calibrate"))
                .module_name(format!("case_{index}"))
                .dim_args(dim_args)
                .constants(parse_consts(&args.consts)?)
                .input_shapes(shapes)
                .opt_level(super::opt_level(args.opt)?),
        )?;
        let original: Vec<String> = {
            let g = builder.load()?;
            g.inputs
                .iter()
                .map(|&id| g.value(id).name.clone())
                .collect()
        };
        let compiled = match builder.compile() {
            Err(CompileError {
                kind: ErrorKind::NotConstant(what),
                ..
            }) => {
                // Shapes depend on an input's values: compile the model specialized to the
                // data's shape-deciding inputs, as `--const` would: first the integer and bool inputs,
                // then also the small float ones (Resize scales, ROIs).
                let mut last = what;
                let mut compiled = None;
                for small_floats in [false, true] {
                    let mut specialized = builder.clone();
                    let mut any = false;
                    case.specialized.clear();
                    for (k, (_, t)) in first.inputs.iter().enumerate() {
                        let integer = matches!(t.dtype, DType::I64 | DType::I32 | DType::Bool);
                        let small_float = small_floats && t.dtype.is_float() && t.len() <= 16;
                        let Some(name) = original.get(k).filter(|_| integer || small_float) else {
                            continue;
                        };
                        if case
                            .data
                            .iter()
                            .any(|d| d.inputs.get(k).map(|(_, u)| u) != Some(t))
                        {
                            return Ok(Some(Outcome::Unsupported(format!(
                                "{last} must be known at compile time, and input \"{name}\" that gives it differs between data sets"
                            ))));
                        }
                        specialized = specialized.constant_tensor(name.clone(), t.clone());
                        case.specialized.push(name.clone());
                        any = true;
                    }
                    if !any {
                        continue;
                    }
                    match specialized.compile() {
                        Err(CompileError {
                            kind: ErrorKind::NotConstant(what),
                            ..
                        }) => last = what,
                        other => {
                            compiled = Some(other?);
                            break;
                        }
                    }
                }
                match compiled {
                    Some(c) => c,
                    None => return Err(CompileError::new(ErrorKind::NotConstant(last))),
                }
            }
            other => other?,
        };
        let graph = &compiled.graph;
        case.input_map = graph
            .inputs
            .iter()
            .filter_map(|&id| original.iter().position(|n| *n == graph.value(id).name))
            .collect();
        if original.len() != first.inputs.len()
            || case.input_map.len() != graph.inputs.len()
            || graph.outputs.len() != first.outputs.len()
        {
            return Ok(Some(Outcome::Fail(format!(
                "the model has {} inputs and {} outputs, the data {} and {}",
                graph.inputs.len(),
                graph.outputs.len(),
                first.inputs.len(),
                first.outputs.len()
            ))));
        }
        for (k, &id) in graph.inputs.iter().enumerate() {
            let t = &first.inputs[case.input_map[k]].1;
            if graph.value(id).dtype != Some(t.dtype) {
                return Ok(Some(Outcome::Fail(format!(
                    "input {k} is {} in the data, {:?} in the model",
                    t.dtype,
                    graph.value(id).dtype
                ))));
            }
        }
        case.compiled = Some(compiled);
        Ok(None)
    })();
    case.outcome = match result {
        Ok(outcome) => outcome,
        Err(CompileError {
            kind: ErrorKind::UnsupportedOps(list),
            ..
        }) => Some(Outcome::Unsupported(
            list.iter()
                .map(|u| {
                    format!(
                        "op {} (opset {}) at {}: {}",
                        u.node.op_type, u.opset, u.node, u.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        )),
        Err(e) if e.is_unsupported() => Some(Outcome::Unsupported(one_line(&e.to_string()))),
        Err(e) => Some(Outcome::Fail(format!(
            "compile error: {}",
            one_line(&e.to_string())
        ))),
    };
    case
}

/// The sizes of a case's bounded dims in one data set (`Dims` field order, space-separated),
/// read off the inputs' shapes; `None` when the case has no bounded dims.
fn bounded_sizes(case: &Case, set: &DataSet) -> Option<String> {
    let graph = &case.compiled.as_ref()?.graph;
    let sizes = harness::bounded_sizes(graph, |k| {
        let data = &set.inputs.get(*case.input_map.get(k)?)?.1;
        Some(data.shape.clone())
    });
    if sizes.is_empty() {
        return None;
    }
    let sizes: Vec<String> = sizes.iter().map(|s| s.unwrap_or(0).to_string()).collect();
    Some(sizes.join(" "))
}

/// The harness's per-case function: read inputs, run, write outputs.
fn case_runner(index: usize, compiled: &Compiled, input_map: &[usize]) -> TokenStream {
    let module = format_ident!("case_{}", index);
    let runner = format_ident!("run_case_{}", index);
    let graph = &compiled.graph;
    let reads = graph.inputs.iter().enumerate().map(|(k, &id)| {
        let var = format_ident!("in{}", k);
        let t = harness::api_type(graph.value(id).dtype.unwrap_or(DType::F32));
        let file = input_map.get(k).copied().unwrap_or(k);
        quote!(let #var: Vec<#t> = read_input(dir, #file)?;)
    });
    let args = (0..graph.inputs.len()).map(|k| format_ident!("in{}", k));
    // Bounded dims: their sizes for this data set, in `Dims` field order, from `dims.txt`.
    let bounded = crate::codegen::bounded_dims(graph);
    let dims_arg = if bounded.is_empty() {
        TokenStream::new()
    } else {
        let count = bounded.len();
        // Dims tied to another are not `Dims` fields (the model computes them).
        let fields = bounded
            .iter()
            .enumerate()
            .filter(|(_, (sym, _, _))| !graph.related.contains_key(sym))
            .map(|(i, (_, field, _))| {
                let field = format_ident!("{}", field);
                quote!(#field: sizes[#i])
            });
        quote! {
            {
                let text = std::fs::read_to_string(dir.join("dims.txt")).map_err(|e| e.to_string())?;
                let sizes: Vec<usize> = text.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
                if sizes.len() != #count {
                    return Err(format!("dims.txt holds {} sizes, the model has {}", sizes.len(), #count));
                }
                #module::Dims { #(#fields),* }
            },
        }
    };
    let n_out = graph.outputs.len();
    let writes = graph.outputs.iter().enumerate().map(|(k, &id)| {
        let out = if n_out == 1 {
            quote!(out)
        } else {
            let idx = syn::Index::from(k);
            quote!(out.#idx)
        };
        // A run-time shape goes beside the values, for the comparison to check.
        let shape = graph.value(id).is_dynamic().then(|| {
            let file = format!("out_{k}.shape");
            quote! {
                std::fs::write(dir.join(#file), format!("{:?}", #out.shape()))
                    .map_err(|e| e.to_string())?;
            }
        });
        quote!(write_output(dir, #k, &#out[..])?; #shape)
    });
    quote! {
        fn #runner(dir: &Path) -> Result<(), String> {
            #(#reads)*
            let mut model = #module::Model::new();
            let out = model.run_slices(#dims_arg #(&#args),*).map_err(|e| e.to_string())?;
            #(#writes)*
            Ok(())
        }
    }
}

/// The harness `main`: runs the jobs listed in the file named by its argument.
fn harness_main(cases: &[(usize, &Compiled, &[usize])]) -> TokenStream {
    let runners = cases.iter().map(|(i, c, map)| case_runner(*i, c, map));
    let arms = cases.iter().map(|(i, _, _)| {
        let runner = format_ident!("run_case_{}", i);
        quote!(#i => #runner(dir),)
    });
    let elem_io = harness::elem_io(true);
    quote! {
        use std::path::Path;

        #elem_io

        #(#runners)*

        fn run_job(case: usize, dir: &Path) -> Result<(), String> {
            match case {
                #(#arms)*
                _ => Err(format!("no case {case}")),
            }
        }

        fn main() {
            let jobs_file = std::env::args().nth(1).expect("usage: harness JOBS_FILE");
            let jobs = std::fs::read_to_string(&jobs_file).expect("jobs file");
            std::panic::set_hook(Box::new(|_| {}));
            for line in jobs.lines() {
                let Some((case, dir)) = line.split_once('\t') else { continue };
                let case: usize = case.parse().expect("case number");
                let dir = Path::new(dir);
                let result = std::panic::catch_unwind(|| run_job(case, dir));
                match result {
                    Ok(Ok(())) => println!("OK\t{}", dir.display()),
                    Ok(Err(e)) => println!("ERR\t{}\t{}", dir.display(), e),
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".to_string());
                        println!("ERR\t{}\tpanicked: {}", dir.display(), msg.replace('\n', " "));
                    }
                }
            }
        }
    }
}

fn build_harness(root: &Path, cases: &[Case]) -> Result<std::result::Result<PathBuf, String>> {
    let src = root.join("src");
    std::fs::create_dir_all(&src).map_err(io_err(&src))?;
    let mut main = String::from("// @generated by `sinter verify`.\n#![allow(clippy::all)]\n");
    let mut ready: Vec<(usize, &Compiled, &[usize])> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let Some(compiled) = &case.compiled else {
            continue;
        };
        let weights_path = src.join(format!("case_{i}.weights.bin"));
        write_if_changed(&weights_path, &compiled.plan.weights)?;
        let opts = CodegenOptions {
            module_name: format!("case_{i}"),
            weights: WeightsMode::File(weights_path.display().to_string()),
            track_model: None,
            source: case.name.clone(),
            profile: false,
            ndarray: false,
        };
        let source = format_tokens(generate(&compiled.graph, &compiled.plan, &opts)?)?;
        write_if_changed(&src.join(format!("case_{i}.rs")), source.as_bytes())?;
        let _ = writeln!(main, "include!(\"case_{i}.rs\");");
        ready.push((i, compiled, &case.input_map));
    }
    main.push_str(&format_tokens(harness_main(&ready))?);
    write_if_changed(&src.join("main.rs"), main.as_bytes())?;

    eprintln!("building {} case(s) in {} ...", ready.len(), root.display());
    harness::build_crate(root, "sinter-verify-harness")
}

/// Writes a tensor's elements as raw little-endian bytes (booleans as one byte each).
fn raw_bytes(t: &Tensor) -> &[u8] {
    &t.bytes
}

fn compare(
    expected: &Tensor,
    got: &[u8],
    dtype: DType,
    rtol: f64,
    atol: f64,
) -> std::result::Result<(), String> {
    if expected.dtype != dtype {
        return Err(format!(
            "type {} where {} is expected",
            dtype, expected.dtype
        ));
    }
    if got.len() != expected.bytes.len() {
        return Err(format!(
            "{} bytes where {} are expected",
            got.len(),
            expected.bytes.len()
        ));
    }
    let got_t = Tensor {
        dtype,
        shape: expected.shape.clone(),
        bytes: got.to_vec(),
    };
    if dtype.is_float() || dtype.is_small_float() {
        let (want, have) = (expected.to_f64s(), got_t.to_f64s());
        let (mut max_abs, mut max_rel, mut bad, mut first_bad) = (0.0f64, 0.0f64, 0usize, None);
        for (i, (&w, &h)) in want.iter().zip(&have).enumerate() {
            let ok = if w.is_nan() || h.is_nan() {
                w.is_nan() && h.is_nan()
            } else if w.is_infinite() || h.is_infinite() {
                w == h
            } else {
                (w - h).abs() <= atol + rtol * w.abs()
            };
            if !ok {
                bad += 1;
                first_bad.get_or_insert((i, w, h));
            }
            if w.is_finite() && h.is_finite() {
                max_abs = max_abs.max((w - h).abs());
                if w != 0.0 {
                    max_rel = max_rel.max((w - h).abs() / w.abs());
                }
            }
        }
        if let Some((i, w, h)) = first_bad {
            return Err(format!(
                "{bad} of {} values out of tolerance (max abs err {max_abs:.3e}, max rel err {max_rel:.3e}; first at {i}: expected {w}, got {h})",
                want.len()
            ));
        }
    } else if got != raw_bytes(expected) {
        let (want, have) = (
            expected.to_i64s().unwrap_or_default(),
            got_t.to_i64s().unwrap_or_default(),
        );
        let bad = want.iter().zip(&have).filter(|(a, b)| a != b).count();
        let first = want
            .iter()
            .zip(&have)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "{bad} of {} values differ (first at {first}: expected {}, got {})",
            want.len(),
            want.get(first).copied().unwrap_or(0),
            have.get(first).copied().unwrap_or(0)
        ));
    }
    Ok(())
}

pub(super) fn run(args: Args) -> Result<ExitCode> {
    // Absolute, so that `include_bytes!` paths in the generated code resolve from anywhere.
    let root = &std::path::absolute(&args.cache_dir).map_err(harness::io_err(&args.cache_dir))?;
    let mut cases: Vec<Case> = args
        .cases
        .iter()
        .enumerate()
        .map(|(i, dir)| prepare(dir, i, &args))
        .collect();

    let harness = build_harness(root, &cases)?;
    let data_root = root.join("data");
    let _ = std::fs::remove_dir_all(&data_root);
    let mut jobs = String::new();
    match &harness {
        Ok(_) => {
            for (i, case) in cases.iter().enumerate() {
                if case.compiled.is_none() {
                    continue;
                }
                for (j, set) in case.data.iter().enumerate() {
                    let dir = data_root.join(format!("case_{i}/set_{j}"));
                    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                    for (k, (_, t)) in set.inputs.iter().enumerate() {
                        let path = dir.join(format!("in_{k}.bin"));
                        std::fs::write(&path, raw_bytes(t)).map_err(io_err(&path))?;
                    }
                    if let Some(sizes) = bounded_sizes(case, set) {
                        let path = dir.join("dims.txt");
                        std::fs::write(&path, sizes).map_err(io_err(&path))?;
                    }
                    let _ = writeln!(jobs, "{i}\t{}", dir.display());
                }
            }
        }
        Err(build_error) => {
            eprintln!("the generated crate failed to build:\n{build_error}");
            for case in cases.iter_mut().filter(|c| c.compiled.is_some()) {
                case.outcome = Some(Outcome::Fail(
                    "generated code failed to build (see the compiler output above)".into(),
                ));
            }
        }
    }
    let mut errors: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    if let Ok(exe) = &harness {
        let jobs_path = root.join("jobs.tsv");
        std::fs::write(&jobs_path, &jobs).map_err(io_err(&jobs_path))?;
        let output = Command::new(exe)
            .arg(&jobs_path)
            .output()
            .map_err(io_err(exe))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        for line in stdout.lines() {
            let mut parts = line.splitn(3, '\t');
            if let (Some("ERR"), Some(dir), Some(msg)) = (parts.next(), parts.next(), parts.next())
            {
                errors.insert(dir.to_string(), msg.to_string());
            }
        }
        if !output.status.success() {
            eprintln!(
                "the harness exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    let (mut passed, mut failed, mut unsupported, mut specialized) = (0, 0, 0, 0);
    for (i, case) in cases.iter_mut().enumerate() {
        if case.outcome.is_none() {
            case.outcome = Some(check_case(i, case, &data_root, &errors, &args));
        }
        match case.outcome.as_ref() {
            Some(Outcome::Pass(notes)) if !case.specialized.is_empty() => {
                passed += 1;
                specialized += 1;
                let names: Vec<String> = case
                    .specialized
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect();
                println!(
                    "PASS {}: specialized to its data (its shapes depend on input values; {} \
                     compiled as constants)",
                    case.name,
                    names.join(", ")
                );
                for note in notes {
                    println!("  {note}");
                }
            }
            Some(Outcome::Pass(notes)) => {
                passed += 1;
                println!("PASS {}", case.name);
                for note in notes {
                    println!("  {note}");
                }
            }
            Some(Outcome::Fail(why)) => {
                failed += 1;
                println!("FAIL {}: {}", case.name, why);
            }
            Some(Outcome::Unsupported(why)) => {
                unsupported += 1;
                println!("UNSUPPORTED {}: {}", case.name, why);
            }
            None => {}
        }
    }
    if specialized > 0 {
        println!(
            "{specialized} of the {passed} passes were compiled specialized to their data's values"
        );
    }
    println!("{passed} passed, {failed} failed, {unsupported} unsupported");
    Ok(if failed > 0 || (args.strict && unsupported > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn check_case(
    i: usize,
    case: &Case,
    data_root: &Path,
    errors: &std::collections::HashMap<String, String>,
    args: &Args,
) -> Outcome {
    let Some(compiled) = &case.compiled else {
        return Outcome::Fail("internal: no compiled model".into());
    };
    let graph = &compiled.graph;
    let mut notes = Vec::new();
    for (j, set) in case.data.iter().enumerate() {
        let dir = data_root.join(format!("case_{i}/set_{j}"));
        if let Some(e) = errors.get(&dir.display().to_string()) {
            return Outcome::Fail(format!("{}: {e}", set_name(set)));
        }
        for (k, (&id, (name, expected))) in graph.outputs.iter().zip(&set.outputs).enumerate() {
            let value = graph.value(id);
            let label = if name.is_empty() {
                format!("output {k}")
            } else {
                format!("output {k} ({name})")
            };
            let shape = if value.is_dynamic() {
                // Known at run time: the harness wrote it beside the values.
                let path = dir.join(format!("out_{k}.shape"));
                std::fs::read_to_string(&path).ok().and_then(|text| {
                    text.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .split(',')
                        .filter(|d| !d.trim().is_empty())
                        .map(|d| d.trim().parse::<usize>().ok())
                        .collect::<Option<Vec<usize>>>()
                })
            } else {
                value.shape.clone()
            };
            if shape.as_deref() != Some(expected.shape.as_slice()) {
                return Outcome::Fail(format!(
                    "{}: {label} has shape {:?}, expected {:?}",
                    set_name(set),
                    shape.unwrap_or_default(),
                    expected.shape
                ));
            }
            let path = dir.join(format!("out_{k}.bin"));
            let Ok(got) = std::fs::read(&path) else {
                return Outcome::Fail(format!(
                    "{}: the harness did not write {label}",
                    set_name(set)
                ));
            };
            let dtype = value.dtype.unwrap_or(DType::F32);
            if let (Some(min), true) = (args.cosine, dtype.is_float()) {
                match similarity(expected, &got, dtype) {
                    Err(why) => return Outcome::Fail(format!("{}: {label}: {why}", set_name(set))),
                    Ok((cosine, top1)) => {
                        let note = format!(
                            "{}: {label}: cosine {cosine:.6}, top-1 {}",
                            set_name(set),
                            if top1 { "agrees" } else { "differs" }
                        );
                        if cosine < min || cosine.is_nan() {
                            return Outcome::Fail(format!("{note} (below {min})"));
                        }
                        notes.push(note);
                    }
                }
                continue;
            }
            if let Err(why) = compare(expected, &got, dtype, args.rtol, args.atol) {
                return Outcome::Fail(format!("{}: {label}: {why}", set_name(set)));
            }
        }
    }
    Outcome::Pass(notes)
}

/// The cosine similarity of a float output with its reference, and whether their largest
/// elements are at the same index (top-1 agreement).
fn similarity(
    expected: &Tensor,
    got: &[u8],
    dtype: DType,
) -> std::result::Result<(f64, bool), String> {
    if expected.dtype != dtype || got.len() != expected.bytes.len() {
        return Err(format!(
            "type or size differs from the reference ({} vs {})",
            dtype, expected.dtype
        ));
    }
    let got = Tensor {
        dtype,
        shape: expected.shape.clone(),
        bytes: got.to_vec(),
    };
    let (want, have) = (expected.to_f64s(), got.to_f64s());
    let dot: f64 = want.iter().zip(&have).map(|(a, b)| a * b).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (nw, nh) = (norm(&want), norm(&have));
    let cosine = if nw == 0.0 && nh == 0.0 {
        1.0
    } else {
        dot / (nw * nh)
    };
    let argmax = |v: &[f64]| {
        v.iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 {
                    (i, x)
                } else {
                    best
                }
            })
            .0
    };
    Ok((cosine, argmax(&want) == argmax(&have)))
}

fn set_name(set: &DataSet) -> String {
    set.dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}
