//! What a firmware or server author trusts generated models to do, checked on models that
//! cover the main kernel families (channels-last float and int8 convolutions, depthwise and
//! Winograd layers, pooling, GEMM, attention, layer norms, GELU, recurrent layers):
//!
//! - generated code contains no `unsafe`: this file forbids it, and every model below expands
//!   inside it;
//! - outputs are bit-identical across runs, across `Model` instances and across thread counts 1
//!   to 4 (every thread split keeps each output's summation order);
//! - models are `Send`, and several run at once on several OS threads, some with their own
//!   worker pools, each giving its single-threaded result (no deadlock, no cross-talk).
#![forbid(unsafe_code)]

use std::path::Path;

sinter_rt::include_onnx!(
    "tests/data/models/ppocr_cls/model.onnx",
    dims("x.0" = 1, "x.2" = 48, "x.3" = 192),
    name = ppocr_cls
);
sinter_rt::include_onnx!(
    "tests/data/models/light_squeezenet/model.onnx",
    name = squeezenet
);
sinter_rt::include_onnx!("tests/data/contrib/bert_fused/model.onnx", name = bert);
sinter_rt::include_onnx!(
    "tests/data/models/ppocr_cls/model.onnx",
    dims("x.0" = 1, "x.2" = 48, "x.3" = 192),
    name = ppocr_cls_int8,
    quantize = dynamic
);
sinter_rt::include_onnx!(
    "tests/data/models/silero_vad/model.onnx",
    dims("input.0" = 1, "input.1" = 576, "state.1" = 1),
    consts(sr = 16000),
    name = silero
);

/// Input `index` of a case's first data set, as the case stores it.
fn input(case: &str, index: usize) -> sinter::ir::Tensor {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(case)
        .join("test_data_set_0")
        .join(format!("input_{index}.pb"));
    sinter::onnx::read_tensor_file(&path)
        .expect("input tensor")
        .1
}

fn floats(case: &str, index: usize) -> Vec<f32> {
    input(case, index).as_f32().expect("float32 input")
}

fn int64s(case: &str, index: usize) -> Vec<i64> {
    input(case, index).to_i64s().expect("int64 input")
}

/// The bit patterns of every output.
fn bits(outputs: &[&[f32]]) -> Vec<Vec<u32>> {
    outputs
        .iter()
        .map(|o| o.iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// One inference of each model at `threads` threads, as bit patterns.
fn run_all(threads: usize) -> Vec<Vec<Vec<u32>>> {
    let mut out = Vec::new();
    let x = floats("models/ppocr_cls", 0);
    let mut m = ppocr_cls::Model::with_threads(threads);
    out.push(bits(&[m.run_slices(&x).expect("input length")]));
    let mut m = ppocr_cls_int8::Model::with_threads(threads);
    out.push(bits(&[m.run_slices(&x).expect("input length")]));
    let x = floats("models/light_squeezenet", 0);
    let mut m = squeezenet::Model::with_threads(threads);
    out.push(bits(&[m.run_slices(&x).expect("input length")]));
    let (ids, mask, types) = (
        int64s("contrib/bert_fused", 0),
        int64s("contrib/bert_fused", 1),
        int64s("contrib/bert_fused", 2),
    );
    let mut m = bert::Model::with_threads(threads);
    let (hidden, pooled) = m.run_slices(&ids, &mask, &types).expect("input lengths");
    out.push(bits(&[hidden, pooled]));
    let audio = floats("models/silero_vad", 0);
    let state = floats("models/silero_vad", 1);
    let mut m = silero::Model::with_threads(threads);
    let (prob, next) = m.run_slices(&audio, &state).expect("input lengths");
    out.push(bits(&[prob, next]));
    out
}

#[test]
fn outputs_are_identical_across_runs_instances_and_thread_counts() {
    let one = run_all(1);
    assert_eq!(one, run_all(1), "a second instance at one thread differs");
    for threads in 2..=4 {
        let got = run_all(threads);
        for (model, (a, b)) in one.iter().zip(&got).enumerate() {
            assert_eq!(
                a, b,
                "model {model} at {threads} threads differs from one thread"
            );
        }
    }
    // The same instance, run again.
    let x = floats("models/light_squeezenet", 0);
    let mut m = squeezenet::Model::with_threads(3);
    let first = bits(&[m.run_slices(&x).expect("input length")]);
    for _ in 0..3 {
        assert_eq!(first, bits(&[m.run_slices(&x).expect("input length")]));
    }
}

#[test]
fn models_run_concurrently_on_several_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<ppocr_cls::Model>();
    assert_send::<bert::Model>();
    assert_send::<silero::Model>();
    let want = run_all(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| scope.spawn(move || run_all(1 + i % 2)))
            .collect();
        for handle in handles {
            assert_eq!(handle.join().expect("no panic"), want);
        }
    });
    // A model with workers moved to another thread and dropped there joins its workers.
    let m = squeezenet::Model::with_threads(2);
    std::thread::spawn(move || drop(m)).join().expect("dropped");
}
