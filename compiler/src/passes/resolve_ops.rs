//! Parses every node into its typed [`Op`](crate::ops::Op). Ops the compiler lacks are
//! collected, all of them, into one [`ErrorKind::UnsupportedOps`] error.

use super::PassCx;
use crate::error::{CompileError, ErrorKind, Result, Unsupported};
use crate::ir::Graph;
use std::sync::Arc;

use crate::ops::custom::{Custom, CustomOpDecl};
use crate::ops::{self, NodeCx, Op};

/// Every node the compiler cannot compile, with the reason; empty when all are supported.
/// Attribute errors of supported ops are returned as errors, not listed.
pub fn unsupported_ops(graph: &Graph) -> Result<Vec<Unsupported>> {
    unsupported_ops_with(graph, &[])
}

/// Like [`unsupported_ops`], with the nodes `custom` covers counted as supported (at the top
/// level of the graph; a subgraph's nodes cannot be custom ops yet).
pub(super) fn unsupported_ops_with(
    graph: &Graph,
    custom: &[Arc<CustomOpDecl>],
) -> Result<Vec<Unsupported>> {
    let mut list = Vec::new();
    collect_unsupported(graph, &graph.nodes, custom, &mut list)?;
    Ok(list)
}

/// The declared custom op covering `node`, if any.
fn custom_decl<'a>(
    custom: &'a [Arc<CustomOpDecl>],
    node: &crate::ir::Node,
) -> Option<&'a Arc<CustomOpDecl>> {
    custom
        .iter()
        .find(|d| d.covers(&node.domain, &node.op_type))
}

/// Lists the unsupported ops of `nodes` and, recursively, of their subgraphs.
fn collect_unsupported(
    graph: &Graph,
    nodes: &[crate::ir::Node],
    custom: &[Arc<CustomOpDecl>],
    list: &mut Vec<Unsupported>,
) -> Result<()> {
    for node in nodes {
        if let Some(decl) = custom_decl(custom, node) {
            match Custom::new(&NodeCx { node }, Arc::clone(decl)) {
                Ok(_) => {}
                Err(e) if e.is_unsupported() => list.push(Unsupported {
                    node: node.node_ref(),
                    opset: node.opset,
                    reason: e.to_string(),
                }),
                Err(e) => return Err(e.at(node.node_ref())),
            }
            continue;
        }
        for attr in &node.attributes {
            for sub in attr.g.iter().chain(&attr.graphs) {
                let sub_nodes: Vec<crate::ir::Node> = sub
                    .node
                    .iter()
                    .enumerate()
                    .map(|(i, n)| stub_node(graph, n, i))
                    .collect();
                collect_unsupported(graph, &sub_nodes, &[], list)?;
            }
        }
        match ops::parse(&NodeCx { node }) {
            Some(Ok(_)) => {}
            Some(Err(e)) if e.is_unsupported() => list.push(Unsupported {
                node: node.node_ref(),
                opset: node.opset,
                reason: e.to_string(),
            }),
            Some(Err(e)) => return Err(e.at(node.node_ref())),
            None => list.push(Unsupported {
                node: node.node_ref(),
                opset: node.opset,
                reason: if crate::onnx::KNOWN_DOMAINS.contains(&node.domain.as_str()) {
                    "no such op in sinter's op table".to_string()
                } else {
                    format!("unknown opset domain \"{}\"", node.domain)
                },
            }),
        }
    }
    Ok(())
}

/// A node of a subgraph with its attributes but no values, enough to parse its op.
fn stub_node(
    graph: &Graph,
    proto: &crate::onnx::proto::NodeProto,
    index: usize,
) -> crate::ir::Node {
    let domain = if proto.domain() == "ai.onnx" {
        ""
    } else {
        proto.domain()
    };
    let name = if proto.name().is_empty() {
        format!("#{index}")
    } else {
        proto.name().to_string()
    };
    crate::ir::Node {
        opset: graph.node_opset(&name, domain).unwrap_or(0),
        name,
        op_type: proto.op_type().to_string(),
        domain: domain.to_string(),
        inputs: proto.input.iter().map(|_| None).collect(),
        outputs: proto.output.iter().map(|_| None).collect(),
        attributes: proto.attribute.clone(),
        op: None,
        guards: Vec::new(),
    }
}

/// Sets `Node::op` on every node, or fails listing every unsupported op.
pub fn resolve_ops(mut graph: Graph, cx: &PassCx) -> Result<Graph> {
    let unsupported = unsupported_ops_with(&graph, &cx.custom_ops)?;
    if !unsupported.is_empty() {
        return Err(CompileError::new(ErrorKind::UnsupportedOps(unsupported)));
    }
    for node in &mut graph.nodes {
        let op = match custom_decl(&cx.custom_ops, node) {
            Some(decl) => Some(Op::Custom(Custom::new(&NodeCx { node }, Arc::clone(decl))?)),
            None => ops::parse(&NodeCx { node }).and_then(std::result::Result::ok),
        };
        node.op = op;
    }
    Ok(graph)
}
