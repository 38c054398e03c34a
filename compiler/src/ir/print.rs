//! A compact text form of a graph, one line per node (`y: f32[2,3] = Mul(x, c)`), for pass
//! snapshots and debugging. Constants the nodes read are listed first with their values when
//! small; guarded nodes end with their conditions.

use std::fmt::Write as _;

use super::{Graph, Tensor, ValueId};
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::AttributeProto;

/// Constants with at most this many elements are printed with their values.
const MAX_PRINTED_ELEMENTS: usize = 8;

impl Graph {
    /// The graph as text: inputs, the constants nodes read, one line per node, outputs.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for &id in &self.inputs {
            let _ = writeln!(out, "input {}", self.typed_name(id));
        }
        let mut listed = vec![false; self.values.len()];
        for node in &self.nodes {
            for &id in node.inputs.iter().flatten() {
                let value = self.value(id);
                let Some(t) = &value.constant else { continue };
                if std::mem::replace(&mut listed[id.index()], true) {
                    continue;
                }
                let _ = writeln!(out, "const {} = {}", self.typed_name(id), tensor_text(t));
            }
        }
        for node in &self.nodes {
            let outputs: Vec<String> = node
                .outputs
                .iter()
                .map(|o| o.map_or_else(|| "_".to_string(), |id| self.typed_name(id)))
                .collect();
            let inputs: Vec<&str> = node
                .inputs
                .iter()
                .map(|i| i.map_or("_", |id| self.value(id).name.as_str()))
                .collect();
            let _ = write!(
                out,
                "{} = {}({})",
                outputs.join(", "),
                node.node_ref().op_type,
                inputs.join(", ")
            );
            for attr in &node.attributes {
                let _ = write!(out, " {}={}", attr.name(), attr_text(attr));
            }
            match &node.op {
                Some(crate::ops::Op::Conv(conv)) => {
                    for act in &conv.activations {
                        let _ = write!(out, " +{act:?}");
                    }
                }
                Some(crate::ops::Op::Gemm(crate::ops::gemm::Gemm {
                    activation: Some(act),
                    ..
                })) => {
                    let _ = write!(out, " +{act:?}");
                }
                _ => {}
            }
            for (cond, polarity) in &node.guards {
                let _ = write!(out, " if {}={polarity}", self.value(*cond).name);
            }
            out.push('\n');
        }
        for &id in &self.outputs {
            let _ = writeln!(out, "output {}", self.value(id).name);
        }
        out
    }

    /// `name: dtype[d0,d1]`, with `?` for what is not known yet.
    fn typed_name(&self, id: ValueId) -> String {
        let value = self.value(id);
        let dtype = value
            .dtype
            .map_or_else(|| "?".to_string(), |d| d.to_string());
        let shape = value.shape.as_ref().map_or_else(
            || "?".to_string(),
            |s| s.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        );
        format!("{}: {dtype}[{shape}]", value.name)
    }
}

/// The values of a small tensor (`[1, 2]`), or its element count.
fn tensor_text(t: &Tensor) -> String {
    if t.len() > MAX_PRINTED_ELEMENTS {
        return format!("<{} elements>", t.len());
    }
    // Float32 prints as float32 (`0.044715`, not its f64 widening).
    let items: Vec<String> = match (t.as_f32(), t.to_i64s()) {
        (Some(floats), _) => floats.iter().map(f32::to_string).collect(),
        (None, Some(ints)) => ints.iter().map(i64::to_string).collect(),
        (None, None) => t.to_f64s().iter().map(f64::to_string).collect(),
    };
    format!("[{}]", items.join(", "))
}

/// An attribute's value as text; graphs and tensors are only named.
fn attr_text(attr: &AttributeProto) -> String {
    let list = |items: Vec<String>| format!("[{}]", items.join(","));
    match attr.r#type() {
        AttributeType::Float => attr.f().to_string(),
        AttributeType::Int => attr.i().to_string(),
        AttributeType::String => format!("{:?}", String::from_utf8_lossy(attr.s())),
        AttributeType::Floats => list(attr.floats.iter().map(f32::to_string).collect()),
        AttributeType::Ints => list(attr.ints.iter().map(i64::to_string).collect()),
        AttributeType::Strings => list(
            attr.strings
                .iter()
                .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
                .collect(),
        ),
        AttributeType::Tensor => "<tensor>".to_string(),
        AttributeType::Graph | AttributeType::Graphs => "<graph>".to_string(),
        _ => "<attribute>".to_string(),
    }
}
