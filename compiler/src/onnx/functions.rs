//! Inlining of model-local functions (`ModelProto.functions`): before import, every node that
//! calls one is replaced by the function's body, in the main graph, in the subgraphs of
//! `If`/`Loop`/`Scan` nodes and, recursively, in function bodies.
//!
//! The body's formal inputs become the call's actual inputs (a missing or empty actual input is
//! an absent value), its formal outputs the call's outputs, and every other value and node of the
//! body gets a fresh name (`{call}/{function}/{name}`, made unique). Attribute references
//! (`ref_attr_name`) take the call's attribute of that name, else the function's default, else
//! the attribute is dropped. Inlined nodes keep the opsets the function imports, recorded by
//! node name when they differ from the model's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use super::proto::{AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto};
use crate::error::{CompileError, NodeRef, Result};

/// How deeply function calls may nest (a call inside a body counts one level); deeper means a
/// recursive function, which is an error.
const MAX_DEPTH: usize = 64;

/// The main graph with every local function call expanded, and the opsets of inlined nodes
/// whose function imports other versions than the model (by node name).
pub(crate) struct Inlined {
    /// The main graph, without calls to local functions.
    pub graph: GraphProto,
    /// Opsets by domain for inlined nodes whose function imports different versions.
    pub node_opsets: HashMap<String, BTreeMap<String, i64>>,
}

/// The opset domain as the graph keys it (`"ai.onnx"` is `""`).
fn norm_domain(d: &str) -> &str {
    if d == "ai.onnx" {
        ""
    } else {
        d
    }
}

/// Expands the calls of `model.functions` in the model's graph; `opsets` are the model's.
/// Returns `Ok(None)` when the model has no local functions.
pub(crate) fn inline_functions(
    model: &ModelProto,
    opsets: &BTreeMap<String, i64>,
) -> Result<Option<Inlined>> {
    let Some(graph) = model.graph.as_ref() else {
        return Err(CompileError::malformed("the model has no graph"));
    };
    if model.functions.is_empty() {
        return Ok(None);
    }
    let mut functions = HashMap::new();
    for f in &model.functions {
        let key = (
            norm_domain(f.domain()).to_string(),
            f.name().to_string(),
            f.overload().to_string(),
        );
        if functions.insert(key, f).is_some() {
            return Err(CompileError::malformed(format!(
                "local function \"{}\" (domain \"{}\") is defined twice",
                f.name(),
                f.domain()
            )));
        }
    }
    let mut used = HashSet::new();
    collect_names(graph, &mut used);
    let mut inliner = Inliner {
        functions,
        model_opsets: opsets,
        used,
        node_opsets: HashMap::new(),
    };
    let graph = inliner.expand_graph(graph, None, 0)?;
    Ok(Some(Inlined {
        graph,
        node_opsets: inliner.node_opsets,
    }))
}

/// Every value and node name of a graph and its subgraphs.
fn collect_names(g: &GraphProto, used: &mut HashSet<String>) {
    for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
        used.insert(v.name().to_string());
    }
    for t in &g.initializer {
        used.insert(t.name().to_string());
    }
    for n in &g.node {
        used.insert(n.name().to_string());
        used.extend(n.input.iter().cloned());
        used.extend(n.output.iter().cloned());
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                collect_names(sub, used);
            }
        }
    }
}

struct Inliner<'a> {
    functions: HashMap<(String, String, String), &'a FunctionProto>,
    model_opsets: &'a BTreeMap<String, i64>,
    used: HashSet<String>,
    node_opsets: HashMap<String, BTreeMap<String, i64>>,
}

impl Inliner<'_> {
    /// `base`, or `base_1`, `base_2`, ... whichever is not used yet (and is now).
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.used.insert(name.clone());
        name
    }

    /// A copy of `g` with calls expanded in its nodes; `opsets` is the enclosing function's.
    fn expand_graph(
        &mut self,
        g: &GraphProto,
        opsets: Option<&Rc<BTreeMap<String, i64>>>,
        depth: usize,
    ) -> Result<GraphProto> {
        let mut out = g.clone();
        out.node = self.expand_nodes(&g.node, opsets, depth)?;
        Ok(out)
    }

    fn expand_nodes(
        &mut self,
        nodes: &[NodeProto],
        opsets: Option<&Rc<BTreeMap<String, i64>>>,
        depth: usize,
    ) -> Result<Vec<NodeProto>> {
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let key = (
                norm_domain(node.domain()).to_string(),
                node.op_type().to_string(),
                node.overload().to_string(),
            );
            if let Some(&f) = self.functions.get(&key) {
                out.extend(self.inline_call(node, f, depth)?);
                continue;
            }
            let mut node = node.clone();
            for a in &mut node.attribute {
                if let Some(sub) = a.g.as_mut() {
                    *sub = self.expand_graph(sub, opsets, depth)?;
                }
                for sub in &mut a.graphs {
                    *sub = self.expand_graph(sub, opsets, depth)?;
                }
            }
            if let Some(o) = opsets {
                self.node_opsets
                    .insert(node.name().to_string(), (**o).clone());
            }
            out.push(node);
        }
        Ok(out)
    }

    /// The body of `f` for the call `call`, renamed and with its own calls expanded.
    fn inline_call(
        &mut self,
        call: &NodeProto,
        f: &FunctionProto,
        depth: usize,
    ) -> Result<Vec<NodeProto>> {
        let node_ref = || NodeRef {
            name: call.name().to_string(),
            op_type: call.op_type().to_string(),
        };
        if depth >= MAX_DEPTH {
            return Err(CompileError::malformed(format!(
                "local function \"{}\" calls itself (calls nest deeper than {MAX_DEPTH})",
                f.name()
            ))
            .at(node_ref()));
        }
        if call.input.len() > f.input.len() || call.output.len() > f.output.len() {
            return Err(CompileError::malformed(format!(
                "the call has {} inputs and {} outputs, local function \"{}\" takes at most {} and {}",
                call.input.len(),
                call.output.len(),
                f.name(),
                f.input.len(),
                f.output.len()
            ))
            .at(node_ref()));
        }
        let call_name = if call.name().is_empty() {
            call.op_type()
        } else {
            call.name()
        };
        let prefix = format!("{call_name}/{}", f.name());

        // Formal names -> actual names ("" = absent).
        let mut rename: HashMap<String, String> = HashMap::new();
        for (i, formal) in f.input.iter().enumerate() {
            let actual = call.input.get(i).cloned().unwrap_or_default();
            rename.insert(formal.clone(), actual);
        }
        for (i, formal) in f.output.iter().enumerate() {
            let actual = match call.output.get(i) {
                Some(a) if !a.is_empty() => a.clone(),
                _ => self.fresh(&format!("{prefix}/{formal}")),
            };
            rename.insert(formal.clone(), actual);
        }

        // Attribute values: the call's, then the function's defaults.
        let mut attrs: HashMap<&str, &AttributeProto> =
            call.attribute.iter().map(|a| (a.name(), a)).collect();
        for a in &f.attribute_proto {
            attrs.entry(a.name()).or_insert(a);
        }

        // The function's opsets over the model's.
        let mut opsets = self.model_opsets.clone();
        for import in &f.opset_import {
            opsets.insert(norm_domain(import.domain()).to_string(), import.version());
        }
        let opsets = (opsets != *self.model_opsets).then(|| Rc::new(opsets));

        let mut body = Vec::with_capacity(f.node.len());
        for node in &f.node {
            let mut new = node.clone();
            let base = if node.name().is_empty() {
                node.op_type()
            } else {
                node.name()
            };
            new.name = Some(self.fresh(&format!("{prefix}/{base}")));
            for name in new.input.iter_mut().chain(new.output.iter_mut()) {
                *name = self.rename_value(name, &mut rename, &prefix);
            }
            new.attribute = substitute_attributes(&node.attribute, &attrs);
            for a in &mut new.attribute {
                if let Some(sub) = a.g.as_mut() {
                    *sub = self.rename_subgraph(sub, &rename, &prefix, &attrs);
                }
                for sub in &mut a.graphs {
                    *sub = self.rename_subgraph(sub, &rename, &prefix, &attrs);
                }
            }
            body.push(new);
        }
        self.expand_nodes(&body, opsets.as_ref(), depth + 1)
    }

    /// The new name of body value `name`: its mapping, or a fresh one (recorded).
    fn rename_value(
        &mut self,
        name: &str,
        rename: &mut HashMap<String, String>,
        prefix: &str,
    ) -> String {
        if name.is_empty() {
            return String::new();
        }
        if let Some(n) = rename.get(name) {
            return n.clone();
        }
        let n = self.fresh(&format!("{prefix}/{name}"));
        rename.insert(name.to_string(), n.clone());
        n
    }

    /// A subgraph of a body node with the body's names mapped, its own names made fresh, and
    /// attribute references substituted.
    fn rename_subgraph(
        &mut self,
        g: &GraphProto,
        outer: &HashMap<String, String>,
        prefix: &str,
        attrs: &HashMap<&str, &AttributeProto>,
    ) -> GraphProto {
        let mut scope = outer.clone();
        let mut out = g.clone();
        // Names the subgraph defines shadow the body's.
        let define = |this: &mut Self, name: &str, scope: &mut HashMap<String, String>| {
            if name.is_empty() {
                return String::new();
            }
            let n = this.fresh(&format!("{prefix}/{name}"));
            scope.insert(name.to_string(), n.clone());
            n
        };
        for v in &mut out.input {
            v.name = Some(define(self, v.name(), &mut scope));
        }
        for t in &mut out.initializer {
            t.name = Some(define(self, t.name(), &mut scope));
        }
        for n in &mut out.node {
            for o in &mut n.output {
                *o = define(self, o, &mut scope);
            }
        }
        let lookup = |scope: &HashMap<String, String>, name: &str| {
            scope.get(name).cloned().unwrap_or_else(|| name.to_string())
        };
        for n in &mut out.node {
            let base = if n.name().is_empty() {
                n.op_type().to_string()
            } else {
                n.name().to_string()
            };
            n.name = Some(self.fresh(&format!("{prefix}/{base}")));
            for i in &mut n.input {
                *i = lookup(&scope, i);
            }
            n.attribute = substitute_attributes(&n.attribute, attrs);
            for a in &mut n.attribute {
                if let Some(sub) = a.g.as_mut() {
                    *sub = self.rename_subgraph(sub, &scope, prefix, attrs);
                }
                for sub in &mut a.graphs {
                    *sub = self.rename_subgraph(sub, &scope, prefix, attrs);
                }
            }
        }
        for v in out.output.iter_mut().chain(out.value_info.iter_mut()) {
            v.name = Some(lookup(&scope, v.name()));
        }
        out
    }
}

/// A body node's attributes with references resolved: the referenced attribute renamed to the
/// body attribute's name, or nothing when neither the call nor the function's defaults have it.
fn substitute_attributes(
    body: &[AttributeProto],
    attrs: &HashMap<&str, &AttributeProto>,
) -> Vec<AttributeProto> {
    body.iter()
        .filter_map(|a| match a.ref_attr_name.as_deref() {
            Some(r) if !r.is_empty() => attrs.get(r).map(|&value| {
                let mut value = value.clone();
                value.name = a.name.clone();
                value.ref_attr_name = None;
                value
            }),
            _ => Some(a.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::proto::{
        tensor_shape_proto, type_proto, OperatorSetIdProto, TensorShapeProto, TypeProto,
        ValueInfoProto,
    };
    use super::*;
    use crate::error::ErrorKind;
    use crate::ir::Graph;

    fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
        OperatorSetIdProto {
            domain: Some(domain.into()),
            version: Some(version),
        }
    }

    fn node(op: &str, domain: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            domain: Some(domain.into()),
            name: Some(name.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn float_attr(name: &str, value: f32) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            f: Some(value),
            r#type: Some(1),
            ..Default::default()
        }
    }

    fn ref_attr(name: &str, reference: &str) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            ref_attr_name: Some(reference.into()),
            r#type: Some(1),
            ..Default::default()
        }
    }

    fn function(
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        nodes: Vec<NodeProto>,
        opsets: Vec<OperatorSetIdProto>,
    ) -> FunctionProto {
        FunctionProto {
            name: Some(name.into()),
            domain: Some("local".into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            node: nodes,
            opset_import: opsets,
            ..Default::default()
        }
    }

    fn value(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// A model with float input `x` [2, 3], a scalar initializer `s`, `nodes`, the outputs
    /// and the functions.
    fn model(nodes: Vec<NodeProto>, outputs: &[&str], functions: Vec<FunctionProto>) -> ModelProto {
        let mut x = value("x");
        x.r#type = Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: [2, 3]
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        });
        let s = super::super::proto::TensorProto {
            name: Some("s".into()),
            data_type: Some(1),
            float_data: vec![3.0],
            ..Default::default()
        };
        ModelProto {
            opset_import: vec![opset("", 17), opset("local", 1)],
            graph: Some(GraphProto {
                input: vec![x],
                initializer: vec![s],
                node: nodes,
                output: outputs.iter().map(|o| value(o)).collect(),
                ..Default::default()
            }),
            functions,
            ..Default::default()
        }
    }

    /// `ScaledLeaky(x, s) = Mul(LeakyRelu(x, alpha = @alpha), s)`, alpha defaults to 0.01.
    fn scaled_leaky() -> FunctionProto {
        let mut leaky = node("LeakyRelu", "", "leaky", &["x"], &["l"]);
        leaky.attribute.push(ref_attr("alpha", "alpha"));
        let mut f = function(
            "ScaledLeaky",
            &["x", "s"],
            &["y"],
            vec![leaky, node("Mul", "", "", &["l", "s"], &["y"])],
            vec![opset("", 17)],
        );
        f.attribute_proto.push(float_attr("alpha", 0.01));
        f
    }

    fn import(model: &ModelProto) -> Result<Graph> {
        crate::onnx::import_model(model, "test", None)
    }

    fn alpha(node: &crate::ir::Node) -> Option<f32> {
        node.attributes
            .iter()
            .find(|a| a.name() == "alpha")
            .map(|a| a.f())
    }

    #[test]
    fn calls_are_replaced_by_renamed_bodies_with_their_attributes() {
        let mut call1 = node("ScaledLeaky", "local", "call1", &["x", "s"], &["y1"]);
        call1.attribute.push(float_attr("alpha", 0.2));
        let call2 = node("ScaledLeaky", "local", "call2", &["x", "s"], &["y2"]);
        let m = model(vec![call1, call2], &["y1", "y2"], vec![scaled_leaky()]);
        let graph = import(&m).expect("imports");
        let ops: Vec<&str> = graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["LeakyRelu", "Mul", "LeakyRelu", "Mul"]);
        let names: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "call1/ScaledLeaky/leaky",
                "call1/ScaledLeaky/Mul",
                "call2/ScaledLeaky/leaky",
                "call2/ScaledLeaky/Mul"
            ]
        );
        assert_eq!(alpha(&graph.nodes[0]), Some(0.2));
        assert_eq!(alpha(&graph.nodes[2]), Some(0.01));
        assert!(graph.nodes[0].attributes[0].ref_attr_name.is_none());
        // The internal value is fresh per call; the formal output is the call's output.
        let l1 = graph.nodes[0].outputs[0].expect("l");
        let l2 = graph.nodes[2].outputs[0].expect("l");
        assert_eq!(graph.value(l1).name, "call1/ScaledLeaky/l");
        assert_eq!(graph.value(l2).name, "call2/ScaledLeaky/l");
        assert_eq!(graph.nodes[1].inputs[0], Some(l1));
        assert_eq!(graph.value(graph.outputs[0]).name, "y1");
        assert_eq!(graph.nodes[1].outputs[0], Some(graph.outputs[0]));
        assert_eq!(graph.nodes[3].outputs[0], Some(graph.outputs[1]));
        assert_eq!(graph.value(graph.nodes[0].inputs[0].expect("x")).name, "x");
    }

    #[test]
    fn nested_calls_missing_inputs_and_function_opsets() {
        // Outer(x, s, b) = Clip(ScaledLeaky(x, s, alpha = @slope), b, absent) at opset 13;
        // the call leaves out b, Outer has no default for slope (so alpha falls back to
        // ScaledLeaky's default only through ScaledLeaky's own attribute_proto).
        let mut inner = node("ScaledLeaky", "local", "inner", &["x", "s"], &["t"]);
        inner.attribute.push(ref_attr("alpha", "slope"));
        let outer = function(
            "Outer",
            &["x", "s", "b"],
            &["y"],
            vec![inner, node("Clip", "", "clip", &["t", "b", ""], &["y"])],
            vec![opset("", 13), opset("local", 1)],
        );
        let mut call = node("Outer", "local", "call", &["x", "s"], &["y"]);
        call.attribute.push(float_attr("slope", 0.5));
        let m = model(vec![call], &["y"], vec![outer, scaled_leaky()]);
        let graph = import(&m).expect("imports");
        let ops: Vec<&str> = graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["LeakyRelu", "Mul", "Clip"]);
        assert_eq!(graph.nodes[0].name, "call/Outer/inner/ScaledLeaky/leaky");
        assert_eq!(alpha(&graph.nodes[0]), Some(0.5));
        // ScaledLeaky imports opset 17 itself; Outer's Clip follows Outer's opset 13.
        assert_eq!(graph.nodes[0].opset, 17);
        assert_eq!(graph.nodes[2].opset, 13);
        assert_eq!(graph.nodes[2].inputs[1], None);
        assert_eq!(graph.nodes[2].inputs[2], None);
        assert_eq!(graph.nodes[2].outputs[0], Some(graph.outputs[0]));

        // Without the call's slope, the inner reference is dropped and ScaledLeaky's default
        // for alpha applies.
        let call = node("Outer", "local", "call", &["x", "s"], &["y"]);
        let m = model(
            vec![call],
            &["y"],
            vec![m.functions[0].clone(), scaled_leaky()],
        );
        let graph = import(&m).expect("imports");
        assert_eq!(alpha(&graph.nodes[0]), Some(0.01));
    }

    #[test]
    fn compiles_end_to_end() {
        let mut call1 = node("ScaledLeaky", "local", "call1", &["x", "s"], &["y1"]);
        call1.attribute.push(float_attr("alpha", 0.2));
        let call2 = node("ScaledLeaky", "local", "call2", &["x", "s"], &["y2"]);
        let m = model(vec![call1, call2], &["y1", "y2"], vec![scaled_leaky()]);
        let graph = import(&m).expect("imports");
        let cx = crate::passes::PassCx::default();
        let (graph, _) = crate::passes::run_passes(graph, &cx).expect("compiles");
        assert!(graph.nodes.iter().all(|n| n.domain.is_empty()));
    }

    #[test]
    fn recursion_and_arity_are_typed_errors() {
        let f = function(
            "Loopy",
            &["x"],
            &["y"],
            vec![node("Loopy", "local", "again", &["x"], &["y"])],
            vec![opset("", 17), opset("local", 1)],
        );
        let m = model(
            vec![node("Loopy", "local", "call", &["x"], &["y"])],
            &["y"],
            vec![f],
        );
        let err = import(&m).expect_err("recursive");
        assert!(matches!(err.kind, ErrorKind::Malformed(_)), "{err}");
        assert!(err.to_string().contains("calls itself"), "{err}");

        let m = model(
            vec![node(
                "ScaledLeaky",
                "local",
                "wide",
                &["x", "s", "s"],
                &["y"],
            )],
            &["y"],
            vec![scaled_leaky()],
        );
        let err = import(&m).expect_err("too many inputs");
        assert!(matches!(err.kind, ErrorKind::Malformed(_)), "{err}");
        assert_eq!(err.node.as_ref().map(|n| n.name.as_str()), Some("wide"));
    }

    #[test]
    fn calls_inside_if_branches_are_inlined() {
        let branch = GraphProto {
            node: vec![node(
                "ScaledLeaky",
                "local",
                "in_branch",
                &["x", "s"],
                &["o"],
            )],
            output: vec![value("o")],
            ..Default::default()
        };
        let mut cond = node("If", "", "if", &["c"], &["y"]);
        cond.attribute.push(AttributeProto {
            name: Some("then_branch".into()),
            g: Some(branch.clone()),
            r#type: Some(5),
            ..Default::default()
        });
        cond.attribute.push(AttributeProto {
            name: Some("else_branch".into()),
            g: Some(branch),
            r#type: Some(5),
            ..Default::default()
        });
        let m = model(vec![cond], &["y"], vec![scaled_leaky()]);
        let opsets = BTreeMap::from([(String::new(), 17), ("local".to_string(), 1)]);
        let inlined = inline_functions(&m, &opsets)
            .expect("inlines")
            .expect("has functions");
        let attrs = &inlined.graph.node[0].attribute;
        let then = attrs[0].g.as_ref().expect("then");
        let other = attrs[1].g.as_ref().expect("else");
        let ops: Vec<&str> = then.node.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["LeakyRelu", "Mul"]);
        assert_eq!(then.node[1].output, ["o"]);
        // Both branches' copies get distinct internal names.
        assert_ne!(then.node[0].output, other.node[0].output);
        assert_eq!(alpha_of(&then.node[0]), Some(0.01));
        assert!(inlined.node_opsets.is_empty());
    }

    fn alpha_of(node: &NodeProto) -> Option<f32> {
        node.attribute
            .iter()
            .find(|a| a.name() == "alpha")
            .map(|a| a.f())
    }
}
