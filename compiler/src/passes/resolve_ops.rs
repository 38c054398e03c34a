//! Parses every node into its typed [`Op`](crate::ops::Op). Ops the compiler lacks are
//! collected, all of them, into one [`ErrorKind::UnsupportedOps`] error.

use super::PassCx;
use crate::error::{CompileError, ErrorKind, Result, Unsupported};
use crate::ir::Graph;
use crate::ops::{self, NodeCx};

/// Every node the compiler cannot compile, with the reason; empty when all are supported.
/// Attribute errors of supported ops are returned as errors, not listed.
pub fn unsupported_ops(graph: &Graph) -> Result<Vec<Unsupported>> {
    let mut list = Vec::new();
    for node in &graph.nodes {
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
                reason: "no such op in sinter's op table".to_string(),
            }),
        }
    }
    Ok(list)
}

/// Sets `Node::op` on every node, or fails listing every unsupported op.
pub fn resolve_ops(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let unsupported = unsupported_ops(&graph)?;
    if !unsupported.is_empty() {
        return Err(CompileError::new(ErrorKind::UnsupportedOps(unsupported)));
    }
    for node in &mut graph.nodes {
        let op = ops::parse(&NodeCx { node }).and_then(std::result::Result::ok);
        node.op = op;
    }
    Ok(graph)
}
