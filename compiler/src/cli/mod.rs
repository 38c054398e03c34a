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

/// The optimization level flag shared by the subcommands.
fn opt_level(n: u8) -> crate::Result<crate::OptLevel> {
    crate::OptLevel::from_number(n).ok_or_else(|| {
        crate::CompileError::new(crate::ErrorKind::Option(format!(
            "-O{n}: levels are 0 to 3"
        )))
    })
}
