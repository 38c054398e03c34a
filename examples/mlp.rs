//! Classifies a vector with the bundled 3-layer MLP, compiled by `include_onnx!` while this
//! example compiles.
//!
//! `cargo run --release --example mlp`

sinter_rt::include_onnx!("tests/data/tiny_mlp/model.onnx", dims(N = 1));

fn main() {
    // A deterministic input: a smooth ramp over the 64 features.
    let input: [f32; 64] = std::array::from_fn(|i| ((i as f32) * 0.37).sin());
    let mut model = tiny_mlp::Model::new();
    let probs = model.run(&input);
    let (best, p) =
        probs.iter().enumerate().fold(
            (0, f32::MIN),
            |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc },
        );
    println!("class probabilities: {probs:?}");
    println!("predicted class {best} (p = {p:.4})");
    println!(
        "arena {} bytes, weights {} bytes (in the binary's read-only data)",
        tiny_mlp::Model::ARENA_BYTES,
        tiny_mlp::Model::WEIGHTS_BYTES
    );
    // The slice API checks lengths instead of trusting them.
    match model.run_slices(&input[..10]) {
        Ok(_) => println!("unexpected: a 10-element input was accepted"),
        Err(e) => println!("run_slices with 10 elements: {e}"),
    }
}
