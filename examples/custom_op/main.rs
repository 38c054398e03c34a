//! A model with ops no runtime knows, run by your own Rust code.
//!
//! `tests/data/custom_op/model.onnx` is a small classifier whose graph holds two nodes of a
//! made-up domain, `com.example`: `ScaledTanh` (an activation with attributes) and
//! `ArgMaxRows` (int64 labels from float scores). Without declarations sinter refuses the model,
//! listing both nodes; with `custom_ops(...)` each node becomes a direct call of the type that
//! implements it (`ops.rs`), and the rule after `=>` gives each output's type and shape:
//! `like(0)` (as input 0) or `i64[1]` (fixed). `Builder::custom_op` is the `build.rs` form,
//! where a closure may compute the shapes instead.
//!
//! `cargo run --release --example custom_op`

mod ops;

sinter_rt::include_onnx!(
    "tests/data/custom_op/model.onnx",
    custom_ops(
        "com.example:ScaledTanh" = crate::ops::ScaledTanh => [like(0)],
        "com.example:ArgMaxRows" = crate::ops::ArgMaxRows => [i64[1]],
    )
);

fn main() {
    let mut model = custom_op::Model::new();
    let x: [f32; 16] = std::array::from_fn(|i| ((i as f32) * 0.7).sin());
    let (probs, label) = model.run(&x);
    println!("probabilities: {probs:.4?}");
    println!("label (from com.example:ArgMaxRows): {}", label[0]);

    // An error from a custom op stops the run with the node's name, not a panic.
    let mut bad = x;
    bad[3] = f32::NAN;
    match model.run_slices(&bad) {
        Ok(_) => println!("unexpected: a NaN input gave a label"),
        Err(e) => println!("a NaN input: {e}"),
    }
}
