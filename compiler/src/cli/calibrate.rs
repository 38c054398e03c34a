//! Calibration for `--quantize static`: `sinter calibrate MODEL --data DIR... -o TABLE`, and
//! what `--calibrate DIR` and `Builder::calibrate` run.
//!
//! The model is compiled in float32 with every value static quantization needs a range for
//! added to its outputs (`passes::probe_values`), built once in release, and run on every data
//! set; each output's range (min/max, or a percentile read from a histogram over min/max in a
//! second pass over the same files) goes into the table, by value name.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use quote::{format_ident, quote};

use super::harness::{self, io_err, write_if_changed, DataSet};
use crate::codegen::{format_tokens, generate, CodegenOptions, WeightsMode};
use crate::error::{CompileError, ErrorKind};
use crate::ir::DType;
use crate::passes::{Calibration, CalibrationMethod, RangeStats};
use crate::{parse_consts, parse_dims, Builder, Result};

/// Arguments of `sinter calibrate`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Calibration inputs: case folders with `test_data_set_N/input_K.pb`, or
    /// `test_data_set_N` folders (repeatable).
    #[arg(long = "data", value_name = "DIR", required = true)]
    data: Vec<PathBuf>,
    /// Where to write the table (`name<TAB>min<TAB>max` per line).
    #[arg(short, long)]
    output: PathBuf,
    /// `minmax` (default), `percentile` (99.999) or `percentile=P`.
    #[arg(long, default_value = "minmax")]
    method: String,
    /// Bind a symbolic dimension (otherwise bound from the data's input shapes).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// Turn a graph input into a constant, e.g. `--const sr=16000`.
    #[arg(long = "const", value_name = "NAME=VALUE")]
    consts: Vec<String>,
    /// Optimization level, 0 to 3 (use the level you compile with).
    #[arg(short = 'O', default_value_t = 3)]
    opt: u8,
    /// Keep this node in float32 (repeatable; nothing is measured for it).
    #[arg(long = "quantize-exclude", value_name = "NODE")]
    quantize_exclude: Vec<String>,
    /// Where the calibration crate is built.
    #[arg(long, default_value = "target/sinter-calibrate")]
    cache_dir: PathBuf,
}

/// Parses a `--calibration-method`.
pub(super) fn method(name: &str) -> Result<CalibrationMethod> {
    CalibrationMethod::from_name(name).ok_or_else(|| {
        CompileError::new(ErrorKind::Option(format!(
            "calibration method {name:?}: expected minmax, percentile or percentile=P (50 to 100)"
        )))
    })
}

pub(super) fn run(args: Args) -> Result<ExitCode> {
    let mut builder = Builder::new(&args.model)
        .dims(parse_dims(&args.dims)?)
        .constants(parse_consts(&args.consts)?)
        .opt_level(super::opt_level(args.opt)?);
    for name in &args.quantize_exclude {
        builder = builder.quantize_exclude(name.clone());
    }
    let table = measure(&builder, &args.data, method(&args.method)?, &args.cache_dir)?;
    let path = &args.output;
    std::fs::write(path, table.to_text()).map_err(io_err(path))?;
    eprintln!("wrote {} ({} ranges)", path.display(), table.len());
    Ok(ExitCode::SUCCESS)
}

/// Measures the activation ranges of `builder`'s model on the data sets in `dirs`, building
/// the calibration crate in `cache`.
pub(crate) fn measure(
    builder: &Builder,
    dirs: &[PathBuf],
    method: CalibrationMethod,
    cache: &Path,
) -> Result<Calibration> {
    let option = |m: String| CompileError::new(ErrorKind::Option(m));
    let mut sets: Vec<DataSet> = Vec::new();
    for dir in dirs {
        let found = harness::data_sets_in(dir)?;
        if found.is_empty() {
            return Err(option(format!(
                "calibration data {}: no test_data_set_N folder or input_K.pb file",
                dir.display()
            )));
        }
        sets.extend(found);
    }
    let Some(first) = sets.first() else {
        return Err(option("calibration needs at least one data folder".into()));
    };
    let shapes: Vec<Vec<usize>> = first.inputs.iter().map(|(_, t)| t.shape.clone()).collect();
    if let Some(odd) = sets
        .iter()
        .find(|s| s.inputs.iter().map(|(_, t)| &t.shape).ne(shapes.iter()))
    {
        return Err(option(format!(
            "calibration data {} has other input shapes than {}; a compiled model has one",
            odd.dir.display(),
            first.dir.display()
        )));
    }
    let mut probe = builder.probing().module_name("calibration");
    let original: Vec<String> = {
        let g = probe.load()?;
        g.inputs
            .iter()
            .map(|&id| g.value(id).name.clone())
            .collect()
    };
    if probe.bound_input_shapes().is_none() && shapes.len() == original.len() {
        probe = probe.input_shapes(shapes);
    }
    let compiled = probe.compile()?;
    let graph = &compiled.graph;

    // For each compiled input, the data's input of the same name (position as a fallback).
    let mut input_files = Vec::new();
    for (k, &id) in graph.inputs.iter().enumerate() {
        let name = &graph.value(id).name;
        let j = original.iter().position(|n| n == name).unwrap_or(k);
        if j >= first.inputs.len() {
            return Err(option(format!(
                "calibration data {} has no input {j} (for graph input {name:?})",
                first.dir.display()
            )));
        }
        input_files.push(j);
    }

    // The crate: read the inputs, run, write every float32 output.
    let root = std::path::absolute(cache).map_err(io_err(cache))?;
    let src = root.join("src");
    std::fs::create_dir_all(&src).map_err(io_err(&src))?;
    let weights_path = src.join("calibration.weights.bin");
    write_if_changed(&weights_path, &compiled.plan.weights)?;
    let opts = CodegenOptions {
        module_name: "calibration".into(),
        weights: WeightsMode::File(weights_path.display().to_string()),
        track_model: None,
        source: builder.path().display().to_string(),
        profile: false,
        ndarray: false,
    };
    let module = format_tokens(generate(graph, &compiled.plan, &opts)?)?;
    write_if_changed(&src.join("calibration.rs"), module.as_bytes())?;
    let reads = graph.inputs.iter().enumerate().map(|(k, &id)| {
        let var = format_ident!("in{}", k);
        let t = harness::api_type(graph.value(id).dtype.unwrap_or(DType::F32));
        let file = input_files[k];
        quote!(let #var: Vec<#t> = read_input(dir, #file)?;)
    });
    let args = (0..graph.inputs.len()).map(|k| format_ident!("in{}", k));
    let n_out = graph.outputs.len();
    let measured: Vec<usize> = (0..n_out)
        .filter(|&k| graph.value(graph.outputs[k]).dtype == Some(DType::F32))
        .collect();
    let writes = measured.iter().map(|&k| {
        if n_out == 1 {
            quote!(write_output(dir, #k, &out[..])?;)
        } else {
            let idx = syn::Index::from(k);
            quote!(write_output(dir, #k, &out.#idx[..])?;)
        }
    });
    let elem_io = harness::elem_io(true);
    let main = quote! {
        use std::path::Path;
        include!("calibration.rs");
        #elem_io
        fn run(dir: &Path) -> Result<(), String> {
            #(#reads)*
            let mut model = calibration::Model::new();
            let out = model.run_slices(#(&#args),*).map_err(|e| e.to_string())?;
            #(#writes)*
            Ok(())
        }
        fn main() {
            for dir in std::env::args().skip(1) {
                if let Err(e) = run(Path::new(&dir)) {
                    eprintln!("{dir}: {e}");
                    std::process::exit(1);
                }
            }
        }
    };
    let main = format!(
        "// @generated by `sinter calibrate`.\n#![allow(clippy::all)]\n{}",
        format_tokens(main)?
    );
    write_if_changed(&src.join("main.rs"), main.as_bytes())?;
    eprintln!(
        "calibration: building {} with {} measured values ...",
        builder.path().display(),
        measured.len()
    );
    let exe = match harness::build_crate(&root, "sinter-calibrate")? {
        Ok(exe) => exe,
        Err(log) => {
            return Err(option(format!(
                "the calibration crate failed to build:\n{log}"
            )))
        }
    };

    // Run every set, then read the measured values back (twice for a percentile).
    let data_root = root.join("data");
    let mut stats: Vec<RangeStats> = vec![RangeStats::default(); n_out];
    let mut set_dirs = Vec::new();
    for (j, set) in sets.iter().enumerate() {
        let dir = data_root.join(format!("set_{j}"));
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for (k, (_, t)) in set.inputs.iter().enumerate() {
            let path = dir.join(format!("in_{k}.bin"));
            std::fs::write(&path, &t.bytes).map_err(io_err(&path))?;
        }
        set_dirs.push(dir);
    }
    let output = Command::new(&exe)
        .args(&set_dirs)
        .output()
        .map_err(io_err(&exe))?;
    if !output.status.success() {
        return Err(option(format!(
            "the calibration run failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let read = |dir: &Path, k: usize| -> Result<Vec<f32>> {
        let path = dir.join(format!("out_{k}.bin"));
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    for dir in &set_dirs {
        for &k in &measured {
            stats[k].observe(&read(dir, k)?);
        }
    }
    let second: Vec<usize> = measured
        .iter()
        .copied()
        .filter(|&k| stats[k].needs_histogram(method))
        .collect();
    if !second.is_empty() {
        for dir in &set_dirs {
            for &k in &second {
                stats[k].count(&read(dir, k)?);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&data_root);
    let mut table = Calibration::new();
    let mut summary = String::new();
    for &k in &measured {
        let name = &graph.value(graph.outputs[k]).name;
        if let Some((lo, hi)) = stats[k].range(method) {
            table.insert(name.clone(), lo, hi);
        } else {
            let _ = write!(summary, " {name:?}");
        }
    }
    if !summary.is_empty() {
        eprintln!("calibration: no finite value seen for{summary}; they stay float32");
    }
    Ok(table)
}
