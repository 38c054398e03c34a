//! Outputs whose shapes depend on the input values (NonMaxSuppression, a run-time TopK k, a
//! Reshape to a run-time target): compiled once with a static capacity, returned with their
//! actual shapes, and invalid values are errors rather than panics or garbage.
#![deny(warnings)]

sinter_rt::include_onnx!(
    "tests/data/node/test_nonmaxsuppression_two_classes/model.onnx",
    name = nms
);
sinter_rt::include_onnx!("tests/data/node/test_top_k/model.onnx", name = top_k);
sinter_rt::include_onnx!(
    "tests/data/node/test_reshape_reordered_all_dims/model.onnx",
    name = reshape
);

/// Six boxes of one image, two classes: boxes 0 and 1 overlap almost entirely, box 2 stands
/// apart, boxes 3 to 5 are far away and score low.
fn nms_inputs() -> ([f32; 24], [f32; 12]) {
    let boxes = [
        0.0, 0.0, 1.0, 1.0, // 0
        0.0, 0.05, 1.0, 1.05, // 1: IoU with 0 about 0.9
        0.0, 2.0, 1.0, 3.0, // 2
        5.0, 5.0, 6.0, 6.0, // 3
        7.0, 7.0, 8.0, 8.0, // 4
        9.0, 9.0, 10.0, 10.0, // 5
    ];
    let scores = [
        0.9, 0.8, 0.7, 0.1, 0.1, 0.1, // class 0
        0.2, 0.95, 0.3, 0.05, 0.05, 0.05, // class 1
    ];
    (boxes, scores)
}

#[test]
fn non_max_suppression_returns_the_selected_boxes_with_their_count() {
    let (boxes, scores) = nms_inputs();
    let mut model = nms::Model::new();
    // Up to 3 per class, IoU above 0.5 suppresses, scores must exceed 0.15.
    let out = model.run(&boxes, &scores, &[3], &[0.5], &[0.15]);
    assert_eq!(out.shape(), [4, 3]);
    // Class 0: box 0 (0.9) suppresses box 1, then box 2; class 1: box 1 (0.95) suppresses
    // box 0, then box 2 (0.3) and box 0 is gone; box 0's 0.2 was suppressed.
    assert_eq!(out.data(), &[0, 0, 0, 0, 0, 2, 0, 1, 1, 0, 1, 2]);
    // The same model with one box per class.
    let out = model.run(&boxes, &scores, &[1], &[0.5], &[0.15]);
    assert_eq!(out.shape(), [2, 3]);
    assert_eq!(&out[..], &[0, 0, 0, 0, 1, 1]);
    // A threshold above every score selects nothing: an empty [0, 3] output.
    let out = model.run(&boxes, &scores, &[3], &[0.5], &[1.0]);
    assert_eq!((out.shape(), out.len()), ([0, 3], 0));
    // Without the IoU test (threshold 1) every box above the score threshold is kept.
    let out = model.run(&boxes, &scores, &[10], &[1.0], &[0.0]);
    assert_eq!(out.shape(), [12, 3]);
}

#[test]
fn top_k_with_a_run_time_k() {
    let x: [f32; 12] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0];
    let mut model = top_k::Model::new();
    let (values, indices) = model.run(&x, &[2]);
    assert_eq!(values.shape(), [3, 2]);
    assert_eq!(values.data(), &[3.0, 2.0, 7.0, 6.0, 11.0, 10.0]);
    assert_eq!(indices.data(), &[3, 2, 3, 2, 3, 2]);
    let (values, _) = model.run(&x, &[4]);
    assert_eq!(values.shape(), [3, 4]);
    // k beyond the axis, or negative: a typed error naming the node, never a panic.
    for k in [5, -1] {
        match model.run_slices(&x, &[k]) {
            Err(sinter_rt::Error::InvalidValue { reason, .. }) => {
                assert!(reason.contains("k"), "{reason}")
            }
            other => panic!("k = {k}: expected InvalidValue, got {other:?}"),
        }
    }
    // The model still runs after an error.
    assert_eq!(model.run(&x, &[1]).0.data(), &[3.0, 7.0, 11.0]);
}

#[test]
#[should_panic(expected = "k is negative or larger than the axis")]
fn run_panics_where_run_slices_returns_the_error() {
    let mut model = top_k::Model::new();
    let _ = model.run(&[0.0; 12], &[13]);
}

#[test]
fn reshape_to_a_run_time_target() {
    let data: [f32; 24] = core::array::from_fn(|i| i as f32);
    let mut model = reshape::Model::new();
    let out = model.run(&data, &[4, 2, 3]);
    assert_eq!(out.shape(), [4, 2, 3]);
    assert_eq!(out.data(), &data[..]);
    let out = model.run(&data, &[0, -1, 2]);
    assert_eq!(out.shape(), [2, 6, 2]);
    // A target that does not hold 24 elements is an error.
    assert!(matches!(
        model.run_slices(&data, &[5, 5, 1]),
        Err(sinter_rt::Error::InvalidValue { .. })
    ));
    // ndarray views carry the run-time shape.
    let x = sinter_rt::ndarray::ArrayView3::from_shape((2, 3, 4), &data).expect("2x3x4");
    let target = sinter_rt::ndarray::ArrayView1::from_shape(3, &[6i64, 2, 2]).expect("3");
    let view = model.run_ndarray(x, target).expect("valid");
    assert_eq!(view.shape(), &[6, 2, 2]);
}

sinter_rt::include_onnx!(
    "tests/data/postprocess_dynamic/model.onnx",
    name = postprocess
);

/// A reference tensor of `tests/data/postprocess_dynamic`, with its shape.
fn reference(set: usize, file: &str) -> sinter::ir::Tensor {
    reference_in("postprocess_dynamic", set, file)
}

#[test]
fn post_processing_runs_on_the_run_time_counts() {
    // NonMaxSuppression's selection flows through Gather, Mul/Add, Cast, Unsqueeze, Concat,
    // Reshape, Transpose and Shape, each on the actual count; one set selects no box.
    let mut model = postprocess::Model::new();
    for set in 0..3 {
        let boxes = reference(set, "input_0.pb").as_f32().expect("f32");
        let scores = reference(set, "input_1.pb").as_f32().expect("f32");
        let (dets, dets_shape, _, dets_t, _, nonzero) =
            model.run_slices(&boxes, &scores).expect("valid inputs");
        let want = reference(set, "output_0.pb");
        assert_eq!(dets.shape().to_vec(), want.shape, "set {set}");
        assert_eq!(dets.data(), want.as_f32().expect("f32").as_slice());
        assert_eq!(dets_shape, &[want.shape[0] as i64, 6]);
        assert_eq!(dets_t.shape(), [6, want.shape[0]]);
        assert_eq!(
            nonzero.shape().to_vec(),
            reference(set, "output_5.pb").shape,
            "set {set}"
        );
    }
}

sinter_rt::include_onnx!(
    "tests/data/bounded/mlp/model.onnx",
    name = bounded_mlp,
    dims(N <= 8)
);

#[test]
fn a_bounded_batch_runs_at_any_size_up_to_its_bound() {
    // One build for N up to 8: each run takes its N and returns outputs of that many rows.
    let mut model = bounded_mlp::Model::new();
    for set in 0..3 {
        let dir = "bounded/mlp";
        let x = reference_in(dir, set, "input_0.pb");
        let want = reference_in(dir, set, "output_0.pb");
        let n = want.shape[0];
        let (probs, logits) = model.run(bounded_mlp::Dims { n }, &x.as_f32().expect("f32"));
        assert_eq!(probs.shape(), [n, 10]);
        assert_eq!(logits.shape(), [n, 4, 6]);
        for (got, want) in probs.iter().zip(want.as_f32().expect("f32")) {
            assert!((got - want).abs() <= 1e-5, "N = {n}: {got} vs {want}");
        }
    }
    // Above the bound, or an input of the wrong length for N: typed errors.
    assert_eq!(
        model
            .run_slices(bounded_mlp::Dims { n: 9 }, &[0.0; 144])
            .err(),
        Some(sinter_rt::Error::DimOutOfRange {
            dim: "N",
            value: 9,
            max: 8,
            step: 1
        })
    );
    assert!(matches!(
        model.run_slices(bounded_mlp::Dims { n: 2 }, &[0.0; 48]),
        Err(sinter_rt::Error::InputLength {
            input: "x",
            expected: 32,
            found: 48
        })
    ));
}

#[test]
fn bounded_models_take_ndarray_views_of_any_size_up_to_the_bound() {
    use sinter_rt::ndarray::Array2;
    let mut model = bounded_mlp::Model::new();
    let x = Array2::<f32>::from_shape_fn((3, 16), |(i, j)| (i * 16 + j) as f32 / 48.0);
    let (probs, logits) = model.run_ndarray(x.view()).expect("3 rows fit");
    assert_eq!(
        (probs.shape(), logits.shape()),
        (&[3, 10][..], &[3, 4, 6][..])
    );
    // The same values through the slice API.
    let want = {
        let mut again = bounded_mlp::Model::new();
        let (p, _) = again.run(
            bounded_mlp::Dims { n: 3 },
            x.as_slice().expect("contiguous"),
        );
        p.to_vec()
    };
    assert_eq!(probs.as_slice().expect("standard layout"), &want[..]);
    // Over the bound, or a fixed axis of another size: a typed error.
    for shape in [(9, 16), (3, 15)] {
        let x = Array2::<f32>::zeros(shape);
        assert_eq!(
            model.run_ndarray(x.view()).err(),
            Some(sinter_rt::Error::InputShape {
                input: "x",
                expected: &[8, 16]
            })
        );
    }
}

sinter_rt::include_onnx!(
    "tests/data/bounded/loops/model.onnx",
    name = bounded_loops,
    dims(N <= 8)
);

#[test]
fn loops_run_as_many_iterations_as_the_data_asks() {
    // Loop A's trip count is N (Shape + Gather of a bounded dim); loop B runs while a value
    // computed from the data stays below a limit, at most 10 times, and on set 2 not at all.
    // One build; the scan outputs come back with one row per iteration run (ORT's shapes).
    let mut model = bounded_loops::Model::new();
    let dir = "bounded/loops";
    // Set 1 after set 2 too: a run that stops early leaves nothing behind for the next.
    for set in [0, 1, 2, 1] {
        let x = reference_in(dir, set, "input_0.pb");
        let n = x.shape[0];
        let (acc_a, rows_a, y_b, steps_b) = model
            .run_slices(bounded_loops::Dims { n }, &x.as_f32().expect("f32"))
            .expect("valid inputs");
        let want: Vec<sinter::ir::Tensor> = (0..4)
            .map(|k| reference_in(dir, set, &format!("output_{k}.pb")))
            .collect();
        assert_eq!(rows_a.shape().to_vec(), want[1].shape, "set {set}");
        assert_eq!(steps_b.shape().to_vec(), want[3].shape, "set {set}");
        let got: [&[f32]; 4] = [&acc_a[..], rows_a.data(), &y_b[..], steps_b.data()];
        for (k, (got, want)) in got.iter().zip(&want).enumerate() {
            assert_close(got, want, &format!("set {set}, output {k}"));
        }
    }
}

/// Asserts `got` has `want`'s values within 1e-5, relative above 1.
fn assert_close(got: &[f32], want: &sinter::ir::Tensor, what: &str) {
    let want = want.as_f32().expect("f32");
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}: {g} vs {w}"
        );
    }
}

sinter_rt::include_onnx!(
    "tests/data/bounded/reductions/model.onnx",
    name = bounded_reductions,
    dims(N <= 8)
);

#[test]
fn reductions_over_a_bounded_axis_count_its_run_time_size() {
    // Means divide by the run-time count, and outputs that keep the bounded axis come back
    // with its run-time size; against ONNX Runtime at N = 1, 3 and 8 from one build.
    let mut model = bounded_reductions::Model::new();
    let dir = "bounded/reductions";
    for set in 0..3 {
        let x = reference_in(dir, set, "input_0.pb");
        let n = x.shape[0];
        let (mean0, sum1, _, _, prod1, argmax0, argmin1, mean02) = model
            .run_slices(bounded_reductions::Dims { n }, &x.as_f32().expect("f32"))
            .expect("valid inputs");
        let close = |k: usize, got: &[f32]| {
            let want = reference_in(dir, set, &format!("output_{k}.pb"));
            assert_close(got, &want, &format!("set {set}, output {k}"));
        };
        close(0, &mean0[..]);
        assert_eq!(sum1.shape(), [n, 1]);
        close(1, sum1.data());
        assert_eq!(prod1.shape(), [n]);
        close(4, prod1.data());
        close(7, &mean02[..]);
        let ints = |k: usize| reference_in(dir, set, &format!("output_{k}.pb")).to_i64s();
        assert_eq!(Some(argmax0.to_vec()), ints(5), "set {set}");
        assert_eq!(argmin1.shape(), [n, 1]);
        assert_eq!(Some(argmin1.data().to_vec()), ints(6), "set {set}");
    }
    // No rows: ArgMax over the empty axis has no answer, a typed error naming the node.
    match model.run_slices(bounded_reductions::Dims { n: 0 }, &[]) {
        Err(sinter_rt::Error::InvalidValue { node, reason }) => {
            assert_eq!(node, "#5");
            assert!(reason.contains("empty"), "{reason}");
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

/// A reference tensor of a case under `tests/data`.
fn reference_in(case: &str, set: usize, file: &str) -> sinter::ir::Tensor {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(case)
        .join(format!("test_data_set_{set}"))
        .join(file);
    sinter::onnx::read_tensor_file(&path)
        .expect("reference tensor")
        .1
}

sinter_rt::include_onnx!(
    "tests/data/bounded/attention/model.onnx",
    name = bounded_attention,
    dims(N <= 8)
);

#[test]
fn attention_over_a_run_time_sequence_length() {
    // Q x K^T, Softmax and P x V on a sequence whose length arrives with each run, against
    // ONNX Runtime at N = 1, 3 and 8 from one build.
    let mut model = bounded_attention::Model::new();
    for set in 0..3 {
        let dir = "bounded/attention";
        let x = reference_in(dir, set, "input_0.pb");
        let want = reference_in(dir, set, "output_0.pb");
        let n = x.shape[0];
        let out = model.run(bounded_attention::Dims { n }, &x.as_f32().expect("f32"));
        assert_eq!(out.shape().to_vec(), want.shape);
        for (got, want) in out.iter().zip(want.as_f32().expect("f32")) {
            assert!((got - want).abs() <= 1e-4, "N = {n}: {got} vs {want}");
        }
    }
}

sinter_rt::include_onnx!(
    "tests/data/contrib/op_gqa_ragged_batch_interleaved/model.onnx",
    name = group_query
);

#[test]
fn group_query_attention_refuses_lengths_its_caches_cannot_hold() {
    // Two entries, 4 query and 2 key/value heads of 32, a past cache of 6 rows, a present one
    // of 7; seqlens_k is each entry's token count after the step, minus one.
    let q = [0.5f32; 2 * 4 * 32];
    let kv = [0.25f32; 2 * 2 * 32];
    let past = [1.0f32; 2 * 2 * 6 * 32];
    let mut model = group_query::Model::new();
    let (y, present_k, _) = model
        .run_slices(&q, &kv, &kv, &past, &past, &[4, 6])
        .expect("lengths within the caches");
    assert!(y.iter().all(|v| v.is_finite()));
    // Entry 0 holds 4 past rows, the new one at row 4, zeros after it.
    let row = |b: usize, j: usize| &present_k[(b * 2 * 7 + j) * 32..][..32];
    assert!(row(0, 3).iter().all(|&v| v == 1.0));
    assert!(row(0, 5).iter().all(|&v| v == 0.0));
    for (lens, what) in [([7, 6], "longer than the present"), ([-1, 6], "negative")] {
        match model.run_slices(&q, &kv, &kv, &past, &past, &lens) {
            Err(sinter_rt::Error::InvalidValue { reason, .. }) => {
                assert!(reason.contains(what), "{lens:?}: {reason}")
            }
            other => panic!("{lens:?}: expected InvalidValue, got {other:?}"),
        }
    }
}
