//! Runs the bundled tiny CNN, compiled by this crate's `build.rs` with `sinter::Builder`, on
//! its reference input and compares with ONNX Runtime's output.
//!
//! `cargo run --release --example cnn`

use sinter_examples::tiny_cnn;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tiny_cnn/test_data_set_0");
    let (_, input) = sinter::onnx::read_tensor_file(&dir.join("input_0.pb"))?;
    let (_, expected) = sinter::onnx::read_tensor_file(&dir.join("output_0.pb"))?;
    let input = input.as_f32().ok_or("input is not float32")?;
    let expected = expected.as_f32().ok_or("output is not float32")?;

    let mut model = tiny_cnn::Model::new();
    let start = std::time::Instant::now();
    let logits = model.run_slices(&input)?;
    let elapsed = start.elapsed();
    let max_err = logits
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("logits:    {logits:?}");
    println!("reference: {expected:?}");
    println!("max abs difference from ONNX Runtime: {max_err:.2e}; first run took {elapsed:?}");
    Ok(())
}
