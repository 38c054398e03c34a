//! The bundled models through all three doors, against ONNX Runtime's reference outputs.

use std::path::Path;

sinter_rt::include_onnx!("tests/data/tiny_mlp/model.onnx", dims(N = 2));
sinter_rt::include_onnx!("tests/data/tiny_cnn/model.onnx", name = tiny_cnn_macro);
sinter_rt::include_onnx!(
    "tests/data/tiny_cnn/model.onnx",
    name = tiny_cnn_int8,
    quantize = dynamic
);
// Ranges measured by `sinter calibrate` on tests/data/tiny_cnn/calibration (augmented copies
// of the input, not the input itself; see scripts/make_calibration_sets.py).
sinter_rt::include_onnx!(
    "tests/data/tiny_cnn/model.onnx",
    name = tiny_cnn_static,
    quantize = static,
    calibration = "tests/data/tiny_cnn/calibration.tsv"
);

fn reference(case: &str, file: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(case)
        .join("test_data_set_0")
        .join(file);
    let (_, tensor) = sinter::onnx::read_tensor_file(&path).expect("reference tensor");
    tensor.as_f32().expect("float32 tensor")
}

/// numpy's `allclose` with the README's tolerances for these models.
fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-3 * w.abs(),
            "element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn mlp_through_the_macro_matches_reference() {
    let input = reference("tiny_mlp", "input_0.pb");
    let mut model = tiny_mlp::Model::new();
    // `run` returns a reference into the model's arena; copy it to keep it past the next run.
    let probs: [f32; 20] = *model.run(input.as_slice().try_into().expect("2 x 64 inputs"));
    assert_close(&probs, &reference("tiny_mlp", "output_0.pb"));
    // Running again gives the same answer: no state leaks between runs.
    let again = model.run_slices(&input).expect("right length");
    assert_eq!(&probs, again);
}

#[test]
fn cnn_through_macro_and_build_rs_match_reference() {
    let input = reference("tiny_cnn", "input_0.pb");
    let want = reference("tiny_cnn", "output_0.pb");
    let mut from_macro = tiny_cnn_macro::Model::new();
    assert_close(from_macro.run_slices(&input).expect("right length"), &want);
    let mut from_build_rs = sinter_examples::tiny_cnn::Model::new();
    assert_close(
        from_build_rs.run_slices(&input).expect("right length"),
        &want,
    );
}

#[test]
fn wrong_input_lengths_are_errors() {
    let mut model = tiny_mlp::Model::new();
    for len in [0, 127, 129, 1000] {
        let input = vec![0.0f32; len];
        let err = model.run_slices(&input).expect_err("wrong length");
        assert_eq!(
            err,
            sinter_rt::Error::InputLength {
                input: "x",
                expected: 128,
                found: len
            }
        );
    }
    let mut cnn = sinter_examples::tiny_cnn::Model::new();
    assert!(cnn.run_slices(&[1.0; 5]).is_err());
}

#[test]
fn sizes_are_published_as_constants() {
    // The constants a firmware author sizes memory from are the compiler's plan.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_mlp/model.onnx");
    let compiled = sinter::Builder::new(model)
        .dim("N", 2)
        .compile()
        .expect("compiles");
    assert_eq!(tiny_mlp::Model::ARENA_BYTES, compiled.plan.arena_bytes);
    assert_eq!(tiny_mlp::Model::WEIGHTS_BYTES, compiled.plan.weights.len());
    // The constants some node reads (a pass that repacks weights leaves the old value unread).
    let read: std::collections::HashSet<_> = compiled
        .graph
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().flatten().copied())
        .collect();
    let params: usize = read
        .iter()
        .filter_map(|&v| compiled.graph.value(v).constant.as_ref())
        .map(|t| t.bytes.len())
        .sum();
    assert!(
        compiled.plan.weights.len() >= params,
        "every weight is in the blob"
    );
}

/// Asserts that quantized logits point the same way as the float reference's (cosine above
/// `min`) and predict the same class: they are not bit-equal to them.
fn assert_tracks(got: &[f32], want: &[f32], min: f64) {
    let dot: f64 = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    let norm = |v: &[f32]| {
        v.iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
    };
    let cosine = dot / (norm(got) * norm(want));
    assert!(cosine > min, "cosine {cosine}");
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &x)| if x > b.1 { (i, x) } else { b },
            )
            .0
    };
    assert_eq!(argmax(got), argmax(want));
}

#[test]
fn dynamically_quantized_cnn_tracks_the_float_reference() {
    // `quantize = dynamic`: int8 weights per channel, activations quantized at run time.
    let input = reference("tiny_cnn", "input_0.pb");
    let want = reference("tiny_cnn", "output_0.pb");
    let mut model = tiny_cnn_int8::Model::new();
    let got = model.run_slices(&input).expect("right length").to_vec();
    assert_tracks(&got, &want, 0.999);
}

#[test]
fn statically_quantized_cnn_tracks_the_float_reference() {
    // `quantize = static`: activation scales from the calibration table, the two convolutions
    // chained in uint8, on an input the table was not measured on.
    let input = reference("tiny_cnn", "input_0.pb");
    let want = reference("tiny_cnn", "output_0.pb");
    let mut model = tiny_cnn_static::Model::new();
    let got = model.run_slices(&input).expect("right length").to_vec();
    assert_tracks(&got, &want, 0.999);
}

#[test]
fn ndarray_views_in_and_out() {
    // `run_ndarray` (sinter-rt's `ndarray` feature): the reference input as a [2, 64] view
    // gives the reference probabilities as a [2, 10] view; other shapes and strided views are
    // typed errors.
    use sinter_rt::ndarray::{Array2, ArrayView2};
    let input = reference("tiny_mlp", "input_0.pb");
    let view = ArrayView2::from_shape((2, 64), &input).expect("2 x 64");
    let mut model = tiny_mlp::Model::new();
    let probs = model.run_ndarray(view).expect("right shape");
    assert_eq!(probs.shape(), &[2, 10]);
    assert_close(
        probs.as_slice().expect("standard layout"),
        &reference("tiny_mlp", "output_0.pb"),
    );
    let wrong = Array2::<f32>::zeros((1, 64));
    assert_eq!(
        model.run_ndarray(wrong.view()).expect_err("wrong shape"),
        sinter_rt::Error::InputShape {
            input: "x",
            expected: &[2, 64]
        }
    );
    let wide = Array2::<f32>::zeros((2, 128));
    let strided = wide.slice(sinter_rt::ndarray::s![.., ..;2]);
    assert_eq!(
        model.run_ndarray(strided).expect_err("strided"),
        sinter_rt::Error::InputLayout { input: "x" }
    );
}
