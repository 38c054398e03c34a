//! The `sinter` command line: `compile`, `inspect`, `verify`, `bench`, `profile`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod compile;
mod harness;
mod inspect;
mod profile;
mod verify;

/// sinter: compile ONNX models ahead of time into specialized Rust.
#[derive(Debug, Parser)]
#[command(name = "sinter", version, about)]
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The quantization flags shared by the subcommands.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct QuantArgs {
    /// Quantize the model's products: `none` (default) or `dynamic` (int8 weights per output
    /// channel, activations quantized at run time).
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub(super) quantize: String,
    /// Keep this node in float32 when quantizing (repeatable).
    #[arg(long = "quantize-exclude", value_name = "NODE")]
    pub(super) quantize_exclude: Vec<String>,
}

impl QuantArgs {
    /// Applies the flags to a builder.
    pub(super) fn apply(&self, mut builder: crate::Builder) -> crate::Result<crate::Builder> {
        builder = builder.quantize(self.mode()?);
        for name in &self.quantize_exclude {
            builder = builder.quantize_exclude(name.clone());
        }
        Ok(builder)
    }

    /// The mode asked for.
    pub(super) fn mode(&self) -> crate::Result<crate::Quantize> {
        crate::Quantize::from_name(&self.quantize).ok_or_else(|| {
            crate::CompileError::new(crate::ErrorKind::Option(format!(
                "--quantize {}: expected none or dynamic",
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
