//! The `sinter` command line: `compile`, `inspect`, `verify`, `bench`, `profile`, `calibrate`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
pub(crate) mod calibrate;
mod compile;
mod harness;
mod inspect;
mod profile;
mod verify;

/// How the command line exits, per class of failure (also in `sinter --help`).
const EXIT_CODES: &str = "Exit status: 0 success; 1 `verify` found a mismatch; 2 bad usage or \
option; 3 a file cannot be read; 4 the file is not a valid ONNX model; 5 unsupported ops or \
domains; 6 symbolic dimensions need values; 7 a shape-deciding input is only known at run \
time; 8 an attribute or input shape does not fit its op.";

/// sinter: compile ONNX models ahead of time into specialized Rust.
#[derive(Debug, Parser)]
#[command(name = "sinter", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile a model into a Rust module (and a weights file beside it).
    Compile(compile::Args),
    /// Show a model's opset, inputs, outputs, ops, parameters and arena size.
    Inspect(inspect::Args),
    /// Compile test cases (ONNX backend test layout) into one crate, run them, compare.
    Verify(verify::Args),
    /// Measure a compiled model: latency, load time, first run, peak memory, binary size.
    Bench(bench::Args),
    /// Time every node of a compiled model: table sorted by time, JSON or a Chrome trace.
    Profile(profile::Args),
    /// Measure activation ranges on calibration inputs for `--quantize static`; write a table.
    Calibrate(calibrate::Args),
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(args) => compile::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Profile(args) => profile::run(args),
        Command::Calibrate(args) => calibrate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("hint: {}", e.kind.hint());
            ExitCode::from(exit_code(&e.kind))
        }
    }
}

/// The exit status for a failure of this class (see [`EXIT_CODES`]).
fn exit_code(kind: &crate::ErrorKind) -> u8 {
    use crate::ErrorKind as K;
    match kind {
        K::Option(_) => 2,
        K::Io { .. } => 3,
        K::Decode { .. }
        | K::Malformed(_)
        | K::DanglingName { .. }
        | K::DataSize { .. }
        | K::Cycle { .. } => 4,
        K::UnsupportedOps(_) | K::Unsupported(_) => 5,
        K::UnboundDims { .. } => 6,
        K::NotConstant(_) => 7,
        K::Attribute { .. } | K::Shape(_) => 8,
    }
}

/// The quantization flags shared by the subcommands.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct QuantArgs {
    /// Quantize the model's products: `none` (default), `dynamic` (int8 weights per output
    /// channel, activations quantized at run time) or `static` (activation scales measured
    /// ahead of time: needs `--calibrate` or `--calibration-table`).
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub(super) quantize: String,
    /// Keep this node in float32 when quantizing (repeatable).
    #[arg(long = "quantize-exclude", value_name = "NODE")]
    pub(super) quantize_exclude: Vec<String>,
    /// `--quantize static`: measure activation ranges on these inputs (case folders with
    /// `test_data_set_N/input_K.pb`, or `test_data_set_N` folders; repeatable).
    #[arg(long = "calibrate", value_name = "DIR")]
    pub(super) calibrate: Vec<std::path::PathBuf>,
    /// `--quantize static`: read activation ranges from this table (`sinter calibrate` writes
    /// one).
    #[arg(long = "calibration-table", value_name = "FILE")]
    pub(super) calibration_table: Option<std::path::PathBuf>,
    /// How `--calibrate` takes a range: `minmax` (default), `percentile` (99.999) or
    /// `percentile=P`.
    #[arg(
        long = "calibration-method",
        value_name = "METHOD",
        default_value = "minmax"
    )]
    pub(super) calibration_method: String,
}

impl QuantArgs {
    /// Applies the flags to a builder.
    pub(super) fn apply(&self, mut builder: crate::Builder) -> crate::Result<crate::Builder> {
        let mode = self.mode()?;
        builder = builder.quantize(mode);
        for name in &self.quantize_exclude {
            builder = builder.quantize_exclude(name.clone());
        }
        let calibrated = !self.calibrate.is_empty() || self.calibration_table.is_some();
        if calibrated && mode != crate::Quantize::Static {
            return Err(crate::CompileError::new(crate::ErrorKind::Option(
                "--calibrate and --calibration-table are for --quantize static".into(),
            )));
        }
        if let Some(path) = &self.calibration_table {
            builder = builder.calibration_table(path.clone());
        }
        builder
            .calibrate(self.calibrate.iter().cloned())
            .calibration_method(calibrate::method(&self.calibration_method)?)
            .calibrated()
    }

    /// The mode asked for.
    pub(super) fn mode(&self) -> crate::Result<crate::Quantize> {
        crate::Quantize::from_name(&self.quantize).ok_or_else(|| {
            crate::CompileError::new(crate::ErrorKind::Option(format!(
                "--quantize {}: expected none, dynamic or static",
                self.quantize
            )))
        })
    }

    /// Whether a quantization mode other than `none` was asked for.
    pub(super) fn enabled(&self) -> bool {
        !matches!(self.quantize.as_str(), "none" | "off")
    }
}

/// The optimization level flag shared by the subcommands.
fn opt_level(n: u8) -> crate::Result<crate::OptLevel> {
    crate::OptLevel::from_number(n).ok_or_else(|| {
        crate::CompileError::new(crate::ErrorKind::Option(format!(
            "-O{n}: levels are 0 to 3"
        )))
    })
}
