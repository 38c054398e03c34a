//! The `sinter` command: compile, inspect and verify ONNX models.

fn main() -> std::process::ExitCode {
    sinter::cli::main()
}
