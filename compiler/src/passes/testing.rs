//! Test helpers for passes: a small model builder that goes through the ONNX importer and the
//! `-O0` pipeline (so values have types and shapes, as a pass sees them), and a before/after
//! dump for snapshots.

pub(super) use super::pattern::{float_attr, int_attr, ints_attr};
use super::{run_passes, OptLevel, PassCx};
use crate::error::Result;
use crate::ir::Graph;
use crate::onnx::proto::{
    tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Builds a model graph node by node.
pub(super) struct ModelBuilder {
    opset: i64,
    graph: GraphProto,
}

/// The ONNX element type code of float32.
const FLOAT: i32 = 1;
/// The ONNX element type code of int64.
const INT64: i32 = 7;

impl ModelBuilder {
    /// An empty graph at opset 17.
    pub(super) fn new() -> Self {
        Self {
            opset: 17,
            graph: GraphProto::default(),
        }
    }

    /// A float32 graph input.
    pub(super) fn input(self, name: &str, dims: &[i64]) -> Self {
        self.typed_input(name, FLOAT, dims)
    }

    /// A graph input of ONNX element type `elem_type`.
    pub(super) fn typed_input(mut self, name: &str, elem_type: i32, dims: &[i64]) -> Self {
        self.graph.input.push(ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(elem_type),
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| tensor_shape_proto::Dimension {
                                value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        });
        self
    }

    /// A float32 initializer.
    pub(super) fn floats(mut self, name: &str, dims: &[i64], data: &[f32]) -> Self {
        self.graph.initializer.push(TensorProto {
            name: Some(name.into()),
            data_type: Some(FLOAT),
            dims: dims.to_vec(),
            float_data: data.to_vec(),
            ..Default::default()
        });
        self
    }

    /// An int64 initializer.
    pub(super) fn ints(mut self, name: &str, dims: &[i64], data: &[i64]) -> Self {
        self.graph.initializer.push(TensorProto {
            name: Some(name.into()),
            data_type: Some(INT64),
            dims: dims.to_vec(),
            int64_data: data.to_vec(),
            ..Default::default()
        });
        self
    }

    /// A node without attributes; `""` stands for an omitted input.
    pub(super) fn node(self, op: &str, inputs: &[&str], outputs: &[&str]) -> Self {
        self.node_with(op, inputs, outputs, Vec::new())
    }

    /// A node with attributes.
    pub(super) fn node_with(
        mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> Self {
        let index = self.graph.node.len();
        self.graph.node.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{}_{index}", op.to_lowercase())),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attributes,
            ..Default::default()
        });
        self
    }

    /// A Transpose node with `perm`.
    pub(super) fn transpose(self, input: &str, output: &str, perm: &[i64]) -> Self {
        self.node_with(
            "Transpose",
            &[input],
            &[output],
            vec![ints_attr("perm", perm)],
        )
    }

    /// A graph output.
    pub(super) fn output(mut self, name: &str) -> Self {
        self.graph.output.push(ValueInfoProto {
            name: Some(name.into()),
            ..Default::default()
        });
        self
    }

    /// Imports the model and runs the `-O0` pipeline on it.
    pub(super) fn build(self) -> Graph {
        let model = ModelProto {
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(self.opset),
            }],
            graph: Some(self.graph),
            ..Default::default()
        };
        let graph = crate::onnx::import_model(&model, "test", None).expect("imports");
        let cx = PassCx {
            opt_level: OptLevel::O0,
            ..PassCx::default()
        };
        run_passes(graph, &cx).expect("compiles").0
    }
}

/// Runs `pass` on `graph` and returns the graph after it with the text of both dumps.
pub(super) fn before_after(
    graph: Graph,
    pass: fn(Graph, &PassCx) -> Result<Graph>,
) -> (Graph, String) {
    let before = graph.dump();
    let after = pass(graph, &PassCx::default()).expect("runs");
    let text = format!("before:\n{before}\nafter:\n{}", after.dump());
    (after, text)
}
