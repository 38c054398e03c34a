//! Custom ops: a model with two `com.example` nodes runs the user's Rust types
//! (`examples/custom_op/ops.rs`), checked against ONNX Runtime running the same graph with the
//! two ops replaced by standard ones (`scripts/make_custom_op_case.py`); and the compile-time
//! side: undeclared ops listed, shape functions, typed errors naming the node.

use std::path::{Path, PathBuf};

use sinter::ops::custom::{CustomShape, OutputRule};
use sinter::ops::TypeShape;
use sinter::{Builder, ErrorKind};

#[path = "../examples/custom_op/ops.rs"]
mod ops;

sinter_rt::include_onnx!(
    "tests/data/custom_op/model.onnx",
    custom_ops(
        "com.example:ScaledTanh" = crate::ops::ScaledTanh => [like(0)],
        "com.example:ArgMaxRows" = crate::ops::ArgMaxRows => [i64[1]],
    )
);

fn case() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/custom_op")
}

fn tensor(set: usize, file: &str) -> sinter::ir::Tensor {
    let path = case().join(format!("test_data_set_{set}")).join(file);
    sinter::onnx::read_tensor_file(&path)
        .expect("reference tensor")
        .1
}

#[test]
fn custom_ops_in_the_model_match_ort_running_standard_equivalents() {
    let mut model = custom_op::Model::new();
    for set in 0..3 {
        let x = tensor(set, "input_0.pb").as_f32().expect("f32 input");
        let want_probs = tensor(set, "output_0.pb").as_f32().expect("f32 probs");
        let want_label = tensor(set, "output_1.pb").to_i64s().expect("i64 label");
        let (probs, label) = model.run_slices(&x).expect("runs");
        for (i, (&g, &w)) in probs.iter().zip(&want_probs).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-3 * w.abs(),
                "set {set} probs[{i}]: got {g}, want {w}"
            );
        }
        assert_eq!(&label[..], &want_label[..], "set {set}");
    }
}

#[test]
fn an_error_from_a_custom_op_names_its_node_and_the_model_runs_on() {
    let mut model = custom_op::Model::new();
    let mut x = [0.25f32; 16];
    x[5] = f32::NAN;
    match model.run_slices(&x) {
        Err(sinter_rt::Error::InvalidValue { node, reason }) => {
            assert_eq!(node, "label");
            assert!(reason.contains("NaN"), "{reason}");
        }
        other => panic!("expected InvalidValue from ArgMaxRows, got {other:?}"),
    }
    x[5] = 0.25;
    assert!(model.run_slices(&x).is_ok());
}

fn builder() -> Builder {
    Builder::new(case().join("model.onnx"))
}

#[test]
fn undeclared_custom_ops_are_listed_together() {
    let err = builder()
        .custom_op(
            "com.example",
            "ScaledTanh",
            "crate::A",
            vec![OutputRule::Like(0)],
        )
        .compile()
        .expect_err("ArgMaxRows is not declared");
    let ErrorKind::UnsupportedOps(list) = &err.kind else {
        panic!("expected UnsupportedOps, got {err}");
    };
    assert_eq!(list.len(), 1, "{err}");
    assert_eq!(list[0].node.name, "label");
    assert!(err.kind.hint().contains("custom op"), "{}", err.kind.hint());
    let err = builder().compile().expect_err("nothing declared");
    assert!(
        matches!(&err.kind, ErrorKind::UnsupportedOps(l) if l.len() == 2),
        "{err}"
    );
}

/// The model with both custom ops declared as `ops::ScaledTanh` and `ops::ArgMaxRows` (or
/// `a_path` for the first), with these shapes.
fn declared(a_path: &str, a: impl Into<CustomShape>, b: impl Into<CustomShape>) -> Builder {
    builder()
        .custom_op("com.example", "ScaledTanh", a_path, a)
        .custom_op("com.example", "ArgMaxRows", "crate::ops::ArgMaxRows", b)
}

const SCALED_TANH: &str = "crate::ops::ScaledTanh";

#[test]
fn a_shape_function_gives_the_code_the_rules_give() {
    let rules = declared(
        SCALED_TANH,
        OutputRule::parse_list("like(0)").expect("rule"),
        OutputRule::parse_list("i64[1]").expect("rule"),
    );
    let functions = declared(
        SCALED_TANH,
        CustomShape::from_fn(|cx| Ok(vec![cx.input(0)?.clone()])),
        CustomShape::from_fn(|cx| {
            let rows = *cx.input(0)?.shape.first().ok_or("expected a matrix")?;
            Ok(vec![TypeShape::new(sinter::ir::DType::I64, vec![rows])])
        }),
    );
    let by_rules = rules.tokens().expect("compiles").to_string();
    assert_eq!(by_rules, functions.tokens().expect("compiles").to_string());
    assert!(by_rules.contains(
        "< crate :: ops :: ArgMaxRows as :: sinter_rt :: custom :: CustomOp > :: compute"
    ));
}

#[test]
fn compile_time_mistakes_are_typed_errors_naming_the_node() {
    let like = |k| vec![OutputRule::Like(k)];
    // The shape function refuses.
    let refuses = CustomShape::from_fn(|_| Err("rows must be even".into()));
    let err = declared(SCALED_TANH, like(0), refuses)
        .compile()
        .expect_err("the shape function fails");
    assert_eq!(err.node.as_ref().map(|n| n.name.as_str()), Some("label"));
    assert!(err.to_string().contains("rows must be even"), "{err}");

    // A rule reading an input the node does not have.
    let err = declared(SCALED_TANH, like(1), like(0))
        .compile()
        .expect_err("no input 1");
    assert_eq!(err.node.as_ref().map(|n| n.name.as_str()), Some("act"));
    assert!(matches!(err.kind, ErrorKind::Shape(_)), "{err}");

    // An element type custom ops cannot take.
    let float8 = vec![OutputRule::Fixed(sinter::ir::DType::F8E4M3FN, vec![1])];
    let err = declared(SCALED_TANH, like(0), float8)
        .compile()
        .expect_err("float8 output");
    assert!(
        err.is_unsupported() && err.to_string().contains("float8"),
        "{err}"
    );

    // A path that is not Rust.
    let err = declared("not a path!", like(0), like(0))
        .compile()
        .expect_err("bad path");
    assert!(matches!(err.kind, ErrorKind::Option(_)), "{err}");
}
