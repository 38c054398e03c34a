//! Compiles the bundled tiny CNN with `sinter::Builder`: the `build.rs` door into the compiler.

use std::path::PathBuf;

fn main() {
    let model = "tests/data/tiny_cnn/model.onnx";
    println!("cargo:rerun-if-changed={model}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(e) = sinter::Builder::new(model).write_to(out.join("tiny_cnn.rs")) {
        panic!("sinter failed to compile {model}: {e}");
    }
}
