//! Malformed and unsupported models get typed errors naming what and where; nothing panics.

use prost::Message as _;
use sinter::onnx::proto::{
    self, tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use sinter::{Builder, CompileError, ErrorKind};

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
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

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// `y = Relu(x)` with x: [N, 4].
fn valid_model() -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: vec![node("Relu", "relu", &["x"], &["y"])],
            input: vec![value_info("x", &[None, Some(4)])],
            output: vec![value_info("y", &[None, Some(4)])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn compile_bytes(bytes: &[u8], dims: &[(&str, usize)]) -> Result<sinter::Compiled, CompileError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, bytes).expect("write model");
    let mut builder = Builder::new(&path);
    for (name, value) in dims {
        builder = builder.dim(*name, *value);
    }
    builder.compile()
}

fn compile(model: &ModelProto) -> Result<sinter::Compiled, CompileError> {
    compile_bytes(&model.encode_to_vec(), &[("N", 1)])
}

#[test]
fn the_valid_model_compiles() {
    let compiled = compile(&valid_model()).expect("valid");
    assert_eq!(compiled.graph.nodes.len(), 1);
}

#[test]
fn truncated_and_garbage_files_are_decode_errors() {
    let bytes = valid_model().encode_to_vec();
    for cut in [1, bytes.len() / 3, bytes.len() - 1] {
        let err = compile_bytes(&bytes[..cut], &[("N", 1)]).expect_err("truncated");
        assert!(
            matches!(err.kind, ErrorKind::Decode { .. } | ErrorKind::Malformed(_)),
            "cut {cut}: {err}"
        );
    }
    let err = compile_bytes(b"this is not an onnx model at all", &[]).expect_err("text");
    assert!(
        matches!(err.kind, ErrorKind::Decode { .. } | ErrorKind::Malformed(_)),
        "{err}"
    );
    let err = compile_bytes(b"", &[]).expect_err("empty");
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn missing_graph_and_dangling_names() {
    let mut m = valid_model();
    m.graph = None;
    assert!(compile(&m)
        .expect_err("no graph")
        .to_string()
        .contains("no graph"));

    let mut m = valid_model();
    m.graph.as_mut().expect("graph").node[0].input[0] = "nowhere".into();
    let err = compile(&m).expect_err("dangling input");
    assert!(
        matches!(&err.kind, ErrorKind::DanglingName { name } if name == "nowhere"),
        "{err}"
    );
    assert_eq!(err.node.as_ref().map(|n| n.name.as_str()), Some("relu"));

    let mut m = valid_model();
    m.graph.as_mut().expect("graph").output[0].name = Some("ghost".into());
    assert!(matches!(
        compile(&m).expect_err("dangling output").kind,
        ErrorKind::DanglingName { .. }
    ));
}

#[test]
fn wrong_initializer_sizes() {
    let mut m = valid_model();
    let g = m.graph.as_mut().expect("graph");
    g.node = vec![node("Add", "add", &["x", "w"], &["y"])];
    g.initializer.push(TensorProto {
        name: Some("w".into()),
        data_type: Some(1),
        dims: vec![4],
        raw_data: Some(vec![0; 7]),
        ..Default::default()
    });
    let err = compile(&m).expect_err("short raw_data");
    assert!(
        matches!(
            err.kind,
            ErrorKind::DataSize {
                expected: 16,
                found: 7,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn cycles_are_reported_with_their_nodes() {
    let mut m = valid_model();
    let g = m.graph.as_mut().expect("graph");
    g.node = vec![
        node("Relu", "a", &["b_out"], &["a_out"]),
        node("Relu", "b", &["a_out"], &["b_out"]),
    ];
    g.output[0].name = Some("a_out".into());
    let err = compile(&m).expect_err("cycle");
    match &err.kind {
        ErrorKind::Cycle { nodes } => assert_eq!(nodes, &["a", "b"]),
        other => panic!("expected a cycle error, got {other:?}"),
    }
}

#[test]
fn unknown_domains_and_unsupported_ops_are_listed_at_once() {
    // A node of a domain sinter does not know is an unsupported op that names its domain.
    let mut m = valid_model();
    let n = &mut m.graph.as_mut().expect("graph").node[0];
    n.domain = Some("com.example.custom".into());
    let err = compile(&m).expect_err("unknown domain");
    assert!(err.is_unsupported(), "{err}");
    assert!(
        matches!(&err.kind, ErrorKind::UnsupportedOps(list) if list.len() == 1
            && list[0].reason == "unknown opset domain \"com.example.custom\""),
        "{err}"
    );

    // Every unsupported node at once, a foreign domain's among them.
    let mut m = valid_model();
    let g = m.graph.as_mut().expect("graph");
    let mut foreign = node("Custom", "third", &["v"], &["y"]);
    foreign.domain = Some("com.example".into());
    g.node = vec![
        node("FancyOp", "first", &["x"], &["t"]),
        node("Relu", "ok", &["t"], &["u"]),
        node("OtherOp", "second", &["u"], &["v"]),
        foreign,
    ];
    let err = compile(&m).expect_err("unsupported");
    assert!(err.is_unsupported());
    let ErrorKind::UnsupportedOps(list) = &err.kind else {
        panic!("expected UnsupportedOps, got {err}")
    };
    let names: Vec<(&str, &str)> = list
        .iter()
        .map(|u| (u.node.op_type.as_str(), u.node.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("FancyOp", "first"),
            ("OtherOp", "second"),
            ("com.example:Custom", "third")
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("unsupported op FancyOp (opset 17) at node \"first\""),
        "{text}"
    );
    for part in [
        "unsupported op com.example:Custom (opset 1) at node \"third\"",
        "unknown opset domain \"com.example\"",
    ] {
        assert!(text.contains(part), "{text}");
    }
}

#[test]
fn unbound_dims_name_what_to_bind() {
    let bytes = valid_model().encode_to_vec();
    let err = compile_bytes(&bytes, &[]).expect_err("unbound");
    match &err.kind {
        ErrorKind::UnboundDims { names } => assert_eq!(
            names,
            &[("N".to_string(), "input \"x\" axis 0".to_string())]
        ),
        other => panic!("expected UnboundDims, got {other:?}"),
    }
    assert!(err.to_string().contains("--dim"), "{err}");
    let err = compile_bytes(&bytes, &[("N", 1), ("M", 3)]).expect_err("unknown dim");
    assert!(err.to_string().contains("unknown dim"), "{err}");
}

#[test]
fn a_bounded_dim_reaching_an_op_without_a_run_time_path_names_the_node() {
    // Relu takes a batch of run-time size; a transposed Gemm operand does not (yet): `y`
    // ([N, 4]) transposed is [4, N] times `w` ([8, 2]), which fits when N is 8.
    let mut model = valid_model();
    let graph = model.graph.as_mut().expect("graph");
    graph.node.push(NodeProto {
        attribute: vec![proto::AttributeProto {
            name: Some("transA".into()),
            i: Some(1),
            r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
            ..Default::default()
        }],
        ..node("Gemm", "gemm", &["y", "w"], &["z"])
    });
    graph.initializer.push(TensorProto {
        name: Some("w".into()),
        dims: vec![8, 2],
        data_type: Some(1),
        float_data: vec![0.5; 16],
        ..Default::default()
    });
    graph.output = vec![value_info("z", &[Some(4), Some(2)])];
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, model.encode_to_vec()).expect("write model");
    let bounded = Builder::new(&path).dim_max("N", 8).compile();
    let err = bounded.expect_err("transposed A of run-time rows");
    assert!(err.is_unsupported(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("gemm") && text.contains("bounded dims N") && text.contains("--dim N="),
        "{text}"
    );
    // The same model with N fixed compiles, and the bounded Relu alone does too.
    assert!(Builder::new(&path).dim("N", 8).compile().is_ok());
    let relu = dir.path().join("relu.onnx");
    std::fs::write(&relu, valid_model().encode_to_vec()).expect("write model");
    assert!(Builder::new(&relu).dim_max("N", 8).compile().is_ok());
}

#[test]
fn bad_attributes_and_shapes_name_the_node() {
    let mut m = valid_model();
    let g = m.graph.as_mut().expect("graph");
    let mut t = node("Transpose", "tr", &["x"], &["y"]);
    t.attribute.push(proto::AttributeProto {
        name: Some("perm".into()),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ints: vec![0, 0],
        ..Default::default()
    });
    g.node = vec![t];
    let err = compile(&m).expect_err("bad perm");
    assert_eq!(err.node.as_ref().map(|n| n.name.as_str()), Some("tr"));
    assert!(err.to_string().contains("perm"), "{err}");

    let mut m = valid_model();
    let g = m.graph.as_mut().expect("graph");
    g.node = vec![node("MatMul", "mm", &["x", "x"], &["y"])];
    let err = compile(&m).expect_err("bad matmul");
    assert!(err.to_string().starts_with("node \"mm\" (MatMul)"), "{err}");
}

#[test]
fn arithmetic_on_low_precision_types_is_unsupported() {
    // Relu on float8 would compute on the stored bit patterns: it must be refused, naming
    // the node, while Cast from float8 compiles.
    let mut m = valid_model();
    let g = m.graph.as_mut().expect("graph");
    for v in g.input.iter_mut() {
        if let Some(type_proto::Value::TensorType(t)) =
            v.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.elem_type = Some(proto::tensor_proto::DataType::Float8e4m3fn as i32);
        }
    }
    let mut with_output_type = |elem_type: i32| {
        if let Some(type_proto::Value::TensorType(t)) =
            g.output[0].r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.elem_type = Some(elem_type);
        }
    };
    with_output_type(proto::tensor_proto::DataType::Float8e4m3fn as i32);
    let relu = m.clone();
    let err = compile(&relu).expect_err("relu on float8");
    assert!(err.is_unsupported(), "{err}");
    assert!(
        err.to_string().starts_with("node \"relu\" (Relu)")
            && err.to_string().contains("float8e4m3fn"),
        "{err}"
    );

    let g = m.graph.as_mut().expect("graph");
    let mut cast = node("Cast", "cast", &["x"], &["y"]);
    cast.attribute.push(proto::AttributeProto {
        name: Some("to".into()),
        r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
        i: Some(1),
        ..Default::default()
    });
    g.node = vec![cast];
    if let Some(type_proto::Value::TensorType(t)) =
        g.output[0].r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = Some(1);
    }
    compile(&m).expect("cast from float8");
}

#[test]
fn random_bytes_never_panic() {
    // A cheap deterministic fuzz: flip bytes of a valid model; every outcome is Ok or Err.
    let bytes = valid_model().encode_to_vec();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % b.len() as u64) as usize;
            b[i] = (state >> 32) as u8;
        }
        let _ = compile_bytes(&b, &[("N", 1)]);
    }
}

#[test]
fn a_dim_tied_to_an_unbound_one_names_both() {
    // `N = past + 1` needs `past` fixed or bounded.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, valid_model().encode_to_vec()).expect("write model");
    let err = Builder::new(&path)
        .dim_follows("N", "past", 1)
        .compile()
        .expect_err("past is unbound");
    let text = err.to_string();
    assert!(
        text.contains("N = past + 1") && text.contains("--dim past"),
        "{text}"
    );
    // Tied to a fixed dim, it is fixed too (an unused fixed dim is an unknown name, so the
    // tie's base must be the model's: N = N is refused as a tie to itself).
    let err = Builder::new(&path)
        .dim("N", 1)
        .dim_follows("N", "N", 0)
        .compile()
        .expect_err("N is fixed and tied");
    assert!(err.to_string().contains("also fixed or bounded"), "{err}");
}
