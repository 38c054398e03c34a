//! `include_onnx!` failures are compile errors at the macro call, as a user sees them: a
//! small crate per case is checked by cargo (offline, one shared target directory), and
//! rustc's message must point at the call in the user's file and carry the compiler's error
//! and its hint. The cases: a missing file, a dim left unbound, unsupported ops (all listed at
//! once with their nodes, a foreign domain's among them), a file that is not a model.

use prost::Message as _;
use sinter::onnx::proto::{
    tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::path::Path;
use std::process::Command;

/// A float tensor `[N, 4]`.
fn value_info(name: &str) -> ValueInfoProto {
    let dim = |value| Dimension {
        value: Some(value),
        ..Default::default()
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim(dimension::Value::DimParam("N".into())),
                        dim(dimension::Value::DimValue(4)),
                    ],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model of `(op, domain, node name)` nodes chained from `x` to `y`.
fn model(nodes: &[(&str, &str, &str)]) -> Vec<u8> {
    let names: Vec<String> = (0..=nodes.len())
        .map(|i| match i {
            0 => "x".to_string(),
            i if i == nodes.len() => "y".to_string(),
            i => format!("t{i}"),
        })
        .collect();
    let node = nodes
        .iter()
        .enumerate()
        .map(|(i, (op, domain, name))| NodeProto {
            op_type: Some((*op).into()),
            domain: Some((*domain).into()),
            name: Some((*name).into()),
            input: vec![names[i].clone()],
            output: vec![names[i + 1].clone()],
            ..Default::default()
        })
        .collect();
    let opset = |domain: &str, version| OperatorSetIdProto {
        domain: Some(domain.into()),
        version: Some(version),
    };
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![opset("", 17), opset("com.example", 1)],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node,
            input: vec![value_info("x")],
            output: vec![value_info("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Checks a crate whose `src/main.rs` holds `include_onnx!(<args>)` on line 2 (with `model`
/// written to `model.onnx` beside its manifest, if any); returns rustc's messages, which must
/// report a failure.
fn check(crate_dir: &Path, args: &str, model: Option<&[u8]>) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model_path = crate_dir.join("model.onnx");
    let _ = std::fs::remove_file(&model_path);
    if let Some(bytes) = model {
        std::fs::write(&model_path, bytes).expect("write the model");
    }
    let main = format!(
        "// A case of tests/macro_errors.rs.\nsinter_rt::include_onnx!({args});\nfn main() {{}}\n"
    );
    std::fs::write(crate_dir.join("src/main.rs"), main).expect("write main.rs");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["check", "--offline", "--quiet", "--message-format", "short"])
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", root.join("target/macro-errors"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{args}: the crate compiled:\n{stderr}"
    );
    stderr
}

#[test]
fn macro_failures_are_compile_errors_at_the_call() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("src")).expect("src");
    let runtime = root.join("runtime-lite");
    let manifest = format!(
        "[package]\nname = \"macro-error-case\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[dependencies]\nsinter-rt = {{ path = {:?}, features = [\"macros\"] }}\n\n\
         [workspace]\n",
        runtime.display().to_string()
    );
    std::fs::write(dir.path().join("Cargo.toml"), manifest).expect("Cargo.toml");
    // The workspace's versions of every dependency, so that it resolves offline.
    std::fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).expect("Cargo.lock");
    let at_call = "src/main.rs:2:";
    let expect = |stderr: &str, what: &str, needles: &[&str]| {
        assert!(
            stderr.contains(at_call),
            "{what}: not at the call:\n{stderr}"
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{what}: no {needle:?} in:\n{stderr}"
            );
        }
    };

    let stderr = check(dir.path(), r#""no/such/model.onnx", dims(N = 1)"#, None);
    expect(&stderr, "missing file", &["no/such/model.onnx"]);

    let relu = model(&[("Relu", "", "relu")]);
    let stderr = check(dir.path(), r#""model.onnx""#, Some(&relu));
    expect(
        &stderr,
        "unbound dim",
        &["N", "hint: bind it with --dim N=1"],
    );

    // Every unsupported node at once, a foreign domain's among them.
    let unsupported = model(&[
        ("FancyOp", "", "first"),
        ("Relu", "", "fine"),
        ("OtherOp", "", "second"),
        ("Custom", "com.example", "third"),
    ]);
    let args = r#""model.onnx", dims(N = 1)"#;
    let stderr = check(dir.path(), args, Some(&unsupported));
    let listed = [
        "3 unsupported op(s)",
        "FancyOp",
        "\"first\"",
        "OtherOp",
        "\"second\"",
        "Custom",
        "\"third\"",
        "unknown opset domain \"com.example\"",
        "hint:",
    ];
    expect(&stderr, "unsupported ops", &listed);

    // A custom op: a rule that does not parse, then a path that names no type.
    let custom = model(&[("Relu", "", "fine"), ("Custom", "com.example", "mine")]);
    let args =
        r#""model.onnx", dims(N = 1), custom_ops("com.example:Custom" = crate::Mine => [like])"#;
    let stderr = check(dir.path(), args, Some(&custom));
    expect(
        &stderr,
        "bad rule",
        &["output rule `like`", "com.example:Custom"],
    );
    let args =
        r#""model.onnx", dims(N = 1), custom_ops("com.example:Custom" = crate::Mine => [like(0)])"#;
    let stderr = check(dir.path(), args, Some(&custom));
    expect(&stderr, "no such type", &["Mine"]);

    let stderr = check(
        dir.path(),
        r#""model.onnx", dims(N = 1)"#,
        Some(b"this is not an onnx model at all"),
    );
    expect(&stderr, "not a model", &["model.onnx", "hint:"]);
}
