//! The command line's failures: a distinct exit status per class of error and a one-line hint.

use std::path::Path;
use std::process::Command;

use prost::Message as _;
use sinter::onnx::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// A float tensor's value info; `None` dims are symbolic (`N`).
fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `y = op(x)` with `x: dims`, written to `dir/name.onnx`.
fn model(dir: &Path, name: &str, op: &str, dims: &[Option<i64>]) -> std::path::PathBuf {
    let m = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: vec![NodeProto {
                name: Some("the_node".into()),
                op_type: Some(op.into()),
                input: vec!["x".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            input: vec![value("x", dims)],
            output: vec![value("y", dims)],
            ..Default::default()
        }),
        ..Default::default()
    };
    let path = dir.join(format!("{name}.onnx"));
    std::fs::write(&path, m.encode_to_vec()).expect("write the model");
    path
}

/// Runs `sinter compile` on `model` with `extra` arguments: the exit status and stderr.
fn compile(model: &Path, extra: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sinter"))
        .arg("compile")
        .arg(model)
        .arg("-o")
        .arg(dir.join("out.rs"))
        .args(extra)
        .output()
        .expect("sinter runs");
    (
        out.status.code().expect("an exit status"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_class_of_failure_has_its_exit_status_and_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    let ok = model(d, "relu", "Relu", &[Some(1), Some(4)]);
    let (code, err) = compile(&ok, &[], d);
    assert_eq!(code, 0, "{err}");

    let (code, err) = compile(&d.join("missing.onnx"), &[], d);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("hint: check the path"), "{err}");

    let garbage = d.join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xff\xff not a protobuf").expect("write");
    let (code, err) = compile(&garbage, &[], d);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("hint:") && err.contains("onnx.checker"),
        "{err}"
    );

    let unknown = model(d, "unknown", "NoSuchOp", &[Some(1), Some(4)]);
    let (code, err) = compile(&unknown, &[], d);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("the_node") && err.contains("NoSuchOp"),
        "{err}"
    );
    assert!(
        err.contains("hint:") && err.contains("CONFORMANCE.md"),
        "{err}"
    );

    let symbolic = model(d, "symbolic", "Relu", &[None, Some(4)]);
    let (code, err) = compile(&symbolic, &[], d);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("hint: bind it with --dim N=1 "), "{err}");
    let (code, err) = compile(&symbolic, &["--dim", "N=2"], d);
    assert_eq!(code, 0, "{err}");

    let (code, err) = compile(&ok, &["--dim", "M=2"], d);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("hint:"), "{err}");

    // A while loop that nothing bounds (no trip count, a run-time condition) cannot be
    // unrolled: unsupported, naming the node and why (scripts/make_dynamic_cases.py).
    let unbounded =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/unsupported/loop_unbounded.onnx");
    let (code, err) = compile(&unbounded, &[], d);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("\"while_loop\" (Loop)") && err.contains("no trip count"),
        "{err}"
    );
}
