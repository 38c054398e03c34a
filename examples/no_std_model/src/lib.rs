//! Two sinter models in a `#![no_std]` crate that uses no allocator: the bundled tiny CNN and
//! Silero VAD, compiled by `include_onnx!`, each in a `static` whose arena (inline, since
//! `sinter-rt` is built without `std`) lands in `.bss`. What firmware does: no heap, no
//! stack-sized arenas, the RAM and flash figures known at compile time.
//!
//! `cargo test --release` (from this folder) runs one inference of each on the host and checks
//! it against ONNX Runtime's outputs; a third, tiny model checks that a `static` model fills
//! the constants its arena holds on its first run.
#![no_std]

sinter_rt::include_onnx!("../../tests/data/tiny_cnn/model.onnx", name = tiny_cnn);
sinter_rt::include_onnx!(
    "../../tests/data/models/silero_vad/model.onnx",
    dims("input.0" = 1, "input.1" = 576, "state.1" = 1),
    consts(sr = 16000),
    name = silero
);

// `y = x + 0.25` over 8192 values, the constant from a `ConstantOfShape`: big and uniform, so
// it lives in the arena, which `new_static` leaves zeroed and the first run fills.
sinter_rt::include_onnx!("uniform_add.onnx", name = uniform_add);

use sinter_rt::StaticModel;

/// The classifier, built at compile time: zeroed arena, in `.bss`.
static CNN: StaticModel<tiny_cnn::Model> = StaticModel::new(tiny_cnn::Model::new_static());
/// The voice-activity detector, likewise.
static VAD: StaticModel<silero::Model> = StaticModel::new(silero::Model::new_static());

/// A model whose arena holds a constant, likewise.
pub static ADD: StaticModel<uniform_add::Model> =
    StaticModel::new(uniform_add::Model::new_static());

/// Bytes of RAM the two models' arenas take (`.bss`).
pub const ARENA_BYTES: usize = tiny_cnn::Model::ARENA_BYTES + silero::Model::ARENA_BYTES;
/// Bytes of flash their weights take (read-only data).
pub const WEIGHTS_BYTES: usize = tiny_cnn::Model::WEIGHTS_BYTES + silero::Model::WEIGHTS_BYTES;

/// The models, the first time (`None` after: each `static` hands out one `&'static mut`).
pub fn models() -> Option<(&'static mut tiny_cnn::Model, &'static mut silero::Model)> {
    Some((CNN.take()?, VAD.take()?))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::path::Path;
    use std::vec::Vec;

    fn floats(case: &str, file: &str) -> Vec<f32> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data")
            .join(case)
            .join("test_data_set_0")
            .join(file);
        let (_, tensor) = sinter::onnx::read_tensor_file(&path).expect("test data");
        tensor.as_f32().expect("float32").to_vec()
    }

    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 + 1e-4 * b.abs(),
                "value {i}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn arena_constants_are_filled_on_the_first_run() {
        let model = super::ADD.take().expect("first take");
        let x: Vec<f32> = (0..8192).map(|i| i as f32 / 64.0).collect();
        for _ in 0..2 {
            let y = model.run_slices(&x).expect("input length");
            for (i, (&a, &b)) in y.iter().zip(&x).enumerate() {
                assert_eq!(a, b + 0.25, "value {i}");
            }
        }
    }

    #[test]
    fn both_models_run_from_their_statics() {
        let (cnn, vad) = super::models().expect("first take");
        assert!(
            super::models().is_none(),
            "the statics hand out one reference each"
        );

        let logits = cnn
            .run_slices(&floats("tiny_cnn", "input_0.pb"))
            .expect("input length");
        close(logits, &floats("tiny_cnn", "output_0.pb"));

        let audio = floats("models/silero_vad", "input_0.pb");
        let state = floats("models/silero_vad", "input_1.pb");
        let (prob, next) = vad.run_slices(&audio, &state).expect("input lengths");
        close(prob, &floats("models/silero_vad", "output_0.pb"));
        close(next, &floats("models/silero_vad", "output_1.pb"));

        // The figures firmware sizes memory from.
        std::println!(
            "tiny_cnn: arena {} B, weights {} B; silero: arena {} B, weights {} B",
            super::tiny_cnn::Model::ARENA_BYTES,
            super::tiny_cnn::Model::WEIGHTS_BYTES,
            super::silero::Model::ARENA_BYTES,
            super::silero::Model::WEIGHTS_BYTES
        );
        const { assert!(super::ARENA_BYTES > 0 && super::WEIGHTS_BYTES > 0) };
    }
}
