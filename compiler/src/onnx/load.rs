//! `ModelProto` bytes -> IR [`Graph`]: decoding, local function inlining, opset resolution,
//! name binding and a topological order, with a typed error for every malformed input.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use prost::Message;

use super::proto::{type_proto, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use super::tensor::tensor_from_proto;
use crate::error::{CompileError, ErrorKind, NodeRef, Result};
use crate::ir::{DType, Dim, Graph, Node, Value, ValueId};

/// Op domains the compiler knows by name. Nodes of other domains load (their opset is the one
/// the model imports, else 1), and `passes::resolve_ops` lists them with the unsupported ops.
pub(crate) const KNOWN_DOMAINS: &[&str] = &[
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.preview",
    "ai.onnx.preview.training",
    "com.microsoft",
];

/// Reads and decodes an ONNX model file.
pub fn read_model(path: &Path) -> Result<ModelProto> {
    let bytes = std::fs::read(path).map_err(|source| {
        CompileError::new(ErrorKind::Io {
            path: path.to_path_buf(),
            source,
        })
    })?;
    decode_model(&bytes, &path.display().to_string())
}

/// Decodes ONNX model bytes; `what` names them in errors.
pub fn decode_model(bytes: &[u8], what: &str) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(CompileError::malformed(format!("{what} is empty")));
    }
    let model = ModelProto::decode(bytes).map_err(|source| {
        CompileError::new(ErrorKind::Decode {
            what: format!("model {what}"),
            source,
        })
    })?;
    if model.graph.is_none() {
        return Err(CompileError::malformed(format!(
            "{what} has no graph (is it an ONNX model?)"
        )));
    }
    Ok(model)
}

/// Builds the IR graph of a decoded model. `model_dir` is where external data lives.
pub fn import_model(model: &ModelProto, name: &str, model_dir: Option<&Path>) -> Result<Graph> {
    let proto = model
        .graph
        .as_ref()
        .ok_or_else(|| CompileError::malformed("the model has no graph"))?;

    let mut opsets = BTreeMap::new();
    for import in &model.opset_import {
        let domain = match import.domain() {
            "ai.onnx" => "",
            d => d,
        };
        opsets.insert(domain.to_string(), import.version());
    }
    let inlined = super::functions::inline_functions(model, &opsets)?;
    let (proto, node_opsets) = match &inlined {
        Some(i) => (&i.graph, i.node_opsets.clone()),
        None => (proto, HashMap::new()),
    };
    let mut graph = Graph {
        name: name.to_string(),
        opset: opsets.get("").copied().unwrap_or(0),
        opsets,
        function_domains: model
            .functions
            .iter()
            .map(|f| f.domain().to_string())
            .collect(),
        node_opsets,
        model_dir: model_dir.map(Path::to_path_buf),
        ..Graph::default()
    };

    import_initializers(&mut graph, proto, false)?;
    for input in &proto.input {
        if graph.names.contains_key(input.name()) {
            // A graph input with an initializer of the same name: the initializer is its value.
            continue;
        }
        let (dtype, declared) = declared_type(input)?;
        let id = graph.add_value(Value {
            dynamic: Vec::new(),
            name: input.name().to_string(),
            dtype: Some(dtype),
            shape: None,
            declared: Some(declared),
            range: None,
            syms: Vec::new(),
            constant: None,
        });
        graph.names.insert(input.name().to_string(), id);
        graph.inputs.push(id);
    }
    graph.nodes = import_nodes(&mut graph, &proto.node, false)?;
    for output in &proto.output {
        let id = graph.names.get(output.name()).copied().ok_or_else(|| {
            CompileError::new(ErrorKind::DanglingName {
                name: output.name().to_string(),
            })
        })?;
        graph.outputs.push(id);
    }
    if graph.outputs.is_empty() {
        return Err(CompileError::malformed("the graph has no outputs"));
    }
    Ok(graph)
}

/// Imports a subgraph (an `If` branch) into `graph`: its initializers become constants, its
/// nodes are returned in topological order (names resolve to the subgraph's own values first,
/// then to the enclosing graph's), and its outputs are returned as value ids. The subgraph
/// may not have inputs.
pub fn import_subgraph(graph: &mut Graph, proto: &GraphProto) -> Result<(Vec<Node>, Vec<ValueId>)> {
    import_subgraph_with(graph, proto, &[])
}

/// Imports a subgraph whose inputs are bound to `inputs` (a `Scan` or `Loop` body, once per
/// iteration): the subgraph's input names resolve to those values.
pub fn import_subgraph_with(
    graph: &mut Graph,
    proto: &GraphProto,
    inputs: &[ValueId],
) -> Result<(Vec<Node>, Vec<ValueId>)> {
    if proto.input.len() != inputs.len() {
        return Err(CompileError::malformed(format!(
            "subgraph \"{}\" has {} inputs, {} are bound",
            proto.name(),
            proto.input.len(),
            inputs.len()
        )));
    }
    for (info, &id) in proto.input.iter().zip(inputs) {
        graph.names.insert(info.name().to_string(), id);
    }
    import_initializers(graph, proto, true)?;
    let nodes = import_nodes(graph, &proto.node, true)?;
    let outputs = proto
        .output
        .iter()
        .map(|o| {
            graph.names.get(o.name()).copied().ok_or_else(|| {
                CompileError::new(ErrorKind::DanglingName {
                    name: o.name().to_string(),
                })
            })
        })
        .collect::<Result<_>>()?;
    Ok((nodes, outputs))
}

fn import_initializers(graph: &mut Graph, proto: &GraphProto, shadowing: bool) -> Result<()> {
    for init in &proto.initializer {
        let tensor = tensor_from_proto(init, graph.model_dir.as_deref())?;
        let id = graph.add_value(Value {
            dynamic: Vec::new(),
            name: init.name().to_string(),
            dtype: Some(tensor.dtype),
            shape: Some(tensor.shape.clone()),
            declared: None,
            range: None,
            syms: Vec::new(),
            constant: Some(tensor),
        });
        if graph.names.insert(init.name().to_string(), id).is_some() && !shadowing {
            return Err(CompileError::malformed(format!(
                "initializer \"{}\" is defined twice",
                init.name()
            )));
        }
    }
    if !proto.sparse_initializer.is_empty() {
        return Err(CompileError::unsupported("sparse initializers"));
    }
    Ok(())
}

/// Creates the nodes' output values and resolves their inputs by name; returns the nodes in
/// topological order. With `shadowing` (subgraphs), a name may redefine an outer one.
fn import_nodes(graph: &mut Graph, protos: &[NodeProto], shadowing: bool) -> Result<Vec<Node>> {
    let mut local: HashMap<String, ValueId> = HashMap::new();
    let mut nodes = Vec::with_capacity(protos.len());
    for node in protos {
        let index = graph.nodes.len() + nodes.len();
        let node_name = if node.name().is_empty() {
            format!("#{index}")
        } else {
            node.name().to_string()
        };
        let node_ref = || NodeRef {
            name: node_name.clone(),
            op_type: node.op_type().to_string(),
        };
        let domain = match node.domain() {
            "ai.onnx" => "",
            d => d,
        };
        let is_local_function = graph.function_domains.iter().any(|d| d == domain);
        let opset = match graph.node_opset(&node_name, domain) {
            Some(v) => v,
            None if is_local_function || !KNOWN_DOMAINS.contains(&domain) => 1,
            None => {
                let kind = ErrorKind::Malformed(format!(
                    "the model does not import an opset for domain \"{domain}\""
                ));
                return Err(CompileError::new(kind).at(node_ref()));
            }
        };
        let mut outputs = Vec::with_capacity(node.output.len());
        for output in &node.output {
            if output.is_empty() {
                outputs.push(None);
                continue;
            }
            if local.contains_key(output) {
                return Err(CompileError::malformed(format!(
                    "tensor \"{output}\" is defined twice (again by node \"{node_name}\")"
                )));
            }
            let id = graph.add_value(Value {
                dynamic: Vec::new(),
                name: output.clone(),
                dtype: None,
                shape: None,
                declared: None,
                range: None,
                syms: Vec::new(),
                constant: None,
            });
            local.insert(output.clone(), id);
            outputs.push(Some(id));
        }
        nodes.push(Node {
            name: node_name,
            op_type: node.op_type().to_string(),
            domain: domain.to_string(),
            opset,
            inputs: Vec::new(),
            outputs,
            attributes: node.attribute.clone(),
            op: None,
            guards: Vec::new(),
        });
    }
    for (name, id) in &local {
        if graph.names.insert(name.clone(), *id).is_some() && !shadowing {
            let node = nodes
                .iter()
                .find(|n| n.outputs.contains(&Some(*id)))
                .map(Node::node_ref);
            let err = CompileError::malformed(format!("tensor \"{name}\" is defined twice"));
            return Err(match node {
                Some(n) => err.at(n),
                None => err,
            });
        }
    }
    for (node, proto_node) in nodes.iter_mut().zip(protos) {
        for input in &proto_node.input {
            if input.is_empty() {
                node.inputs.push(None);
                continue;
            }
            let id = graph.names.get(input).copied().ok_or_else(|| {
                CompileError::new(ErrorKind::DanglingName {
                    name: input.clone(),
                })
                .at(node.node_ref())
            })?;
            node.inputs.push(Some(id));
        }
    }
    topological_order(nodes)
}

/// The element type and declared dims of a graph input.
fn declared_type(info: &ValueInfoProto) -> Result<(DType, Vec<Dim>)> {
    let name = info.name();
    let tensor = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        Some(_) => {
            return Err(CompileError::unsupported(format!(
                "graph input \"{name}\" is not a tensor"
            )))
        }
        None => {
            return Err(CompileError::malformed(format!(
                "graph input \"{name}\" has no type"
            )))
        }
    };
    let code = tensor.elem_type();
    let dtype = DType::from_onnx(code).ok_or_else(|| {
        CompileError::unsupported(format!(
            "graph input \"{name}\" has element type {}",
            DType::onnx_name(code)
        ))
    })?;
    let shape = tensor.shape.as_ref().ok_or_else(|| {
        CompileError::unsupported(format!(
            "graph input \"{name}\" has no declared shape (its rank is unknown)"
        ))
    })?;
    let dims = shape
        .dim
        .iter()
        .enumerate()
        .map(|(axis, d)| {
            use super::proto::tensor_shape_proto::dimension::Value;
            match &d.value {
                Some(Value::DimValue(v)) if *v >= 0 => {
                    Dim::Fixed(usize::try_from(*v).unwrap_or(usize::MAX))
                }
                // "?" is what some exporters write for "unknown": unnamed, like a missing value.
                Some(Value::DimParam(p)) if !p.is_empty() && p != "?" => Dim::Sym(p.clone()),
                _ => Dim::Sym(format!("{name}.{axis}")),
            }
        })
        .collect();
    Ok((dtype, dims))
}

/// Orders nodes so that every producer precedes its consumers (Kahn's algorithm, keeping the
/// file order among ready nodes); a cycle is an error naming the nodes left over.
fn topological_order(nodes: Vec<Node>) -> Result<Vec<Node>> {
    // Keyed by value, not a table of every value in the graph: a subgraph imported once per
    // unrolled step costs its own size, not the whole graph's.
    let mut producer = std::collections::HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for out in node.outputs.iter().flatten() {
            producer.insert(out.index(), i);
        }
    }
    let mut pending: Vec<usize> = nodes
        .iter()
        .map(|n| {
            n.inputs
                .iter()
                .flatten()
                .filter(|v| producer.contains_key(&v.index()))
                .count()
        })
        .collect();
    let mut consumers = vec![Vec::new(); nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        for v in node.inputs.iter().flatten() {
            if let Some(&p) = producer.get(&v.index()) {
                consumers[p].push(i);
            }
        }
    }
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..nodes.len())
        .filter(|&i| pending[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for &c in &consumers[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(std::cmp::Reverse(c));
            }
        }
    }
    if order.len() != nodes.len() {
        let names = (0..nodes.len())
            .filter(|&i| pending[i] > 0)
            .map(|i| nodes[i].name.clone())
            .collect();
        return Err(CompileError::new(ErrorKind::Cycle { nodes: names }));
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}
