//! The graph: values (typed, shaped, possibly constant) and the nodes that compute them.

use super::{DType, Tensor};
use crate::error::NodeRef;
use crate::onnx::proto::AttributeProto;
use crate::ops::Op;

/// Index of a [`Value`] in [`Graph::values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a [`Node`] in [`Graph::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl ValueId {
    /// The index into `Graph::values`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl NodeId {
    /// The index into `Graph::nodes`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A declared dimension of a graph input: fixed, or symbolic until bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A known size.
    Fixed(usize),
    /// A named size (`dim_param`, or a generated `input.axis` name for unnamed and `-1` dims).
    Sym(String),
}

/// An upper bound for a symbolic dimension whose size arrives at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimBound {
    /// The largest size.
    pub max: usize,
    /// Sizes must be multiples of this (1: any size up to `max`).
    pub step: usize,
}

/// A tensor flowing through the graph.
#[derive(Debug, Clone)]
pub struct Value {
    /// The ONNX name.
    pub name: String,
    /// Element type, once known.
    pub dtype: Option<DType>,
    /// Concrete shape, once inferred.
    pub shape: Option<Vec<usize>>,
    /// The shape a graph input declares, before binding.
    pub declared: Option<Vec<Dim>>,
    /// The data, for constants.
    pub constant: Option<Tensor>,
    /// Per axis, whether its extent is only known at run time (empty when none is): the value
    /// of a data-dependent op (`NonZero`, `Unique`, ...). Its `shape` is then the capacity the
    /// memory plan reserves, and the generated code keeps the actual shape beside the arena.
    pub dynamic: Vec<bool>,
    /// For a small integer tensor computed at run time from extents known only then (shape
    /// arithmetic: `Shape`, `Gather`, `Concat`, `Add`, ... of a bounded dim), the smallest
    /// and largest value each element can hold; `None` when not tracked. Ops whose output
    /// shape such a tensor decides (`Range`, `Expand`, `Reshape`) size their capacity from it.
    pub range: Option<Vec<Bounds>>,
    /// Per axis (empty when none is known), the bounded dim whose run-time size the axis
    /// has (an index into [`Graph::bounds`]' names in order), where the compiler can tell.
    pub syms: Vec<Option<u16>>,
}

/// What the compiler knows of one element of an integer tensor computed at run time (see
/// [`Value::range`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The smallest value it can hold.
    pub lo: i64,
    /// The largest.
    pub hi: i64,
    /// When it is the run-time size of a bounded dim: that dim (see [`Value::syms`]).
    pub sym: Option<u16>,
}

impl Bounds {
    /// A value known exactly.
    pub fn exact(v: i64) -> Self {
        Self {
            lo: v,
            hi: v,
            sym: None,
        }
    }
    /// A value in `lo..=hi`.
    pub fn between(lo: i64, hi: i64) -> Self {
        Self { lo, hi, sym: None }
    }
    /// Whether it is one known value.
    pub fn is_exact(&self) -> bool {
        self.lo == self.hi
    }
}

impl Value {
    /// Elements in the value (0 until its shape is known).
    pub fn len(&self) -> usize {
        self.shape.as_ref().map_or(0, |s| s.iter().product())
    }

    /// Whether the value has no elements or no known shape.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the value's shape is only known at run time (see [`Value::dynamic`]).
    pub fn is_dynamic(&self) -> bool {
        self.dynamic.iter().any(|&d| d)
    }

    /// Bytes in the value (0 until type and shape are known).
    pub fn bytes(&self) -> usize {
        self.len() * self.dtype.map_or(0, DType::size)
    }
}

/// One operation.
#[derive(Debug, Clone)]
pub struct Node {
    /// The ONNX node name (`#index` when empty).
    pub name: String,
    /// The ONNX op type.
    pub op_type: String,
    /// The op's domain (empty for `ai.onnx`).
    pub domain: String,
    /// The opset version of the node's domain.
    pub opset: i64,
    /// Inputs; `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs; `None` for an omitted optional output.
    pub outputs: Vec<Option<ValueId>>,
    /// Attributes as the model wrote them.
    pub attributes: Vec<AttributeProto>,
    /// The parsed op, once resolved.
    pub op: Option<Op>,
    /// Conditions under which the node runs (all must hold): a boolean scalar value and the
    /// polarity it must have. Set on the nodes of both branches of an `If` whose condition is
    /// only known at run time.
    pub guards: Vec<(ValueId, bool)>,
}

impl Node {
    /// The reference used in error messages.
    pub fn node_ref(&self) -> NodeRef {
        let op_type = if self.domain.is_empty() || self.domain == "ai.onnx" {
            self.op_type.clone()
        } else {
            format!("{}:{}", self.domain, self.op_type)
        };
        NodeRef {
            name: self.name.clone(),
            op_type,
        }
    }
}

/// A model graph: nodes in topological order, values, and the graph's inputs and outputs.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// The model's name (from the file name), used for the generated module.
    pub name: String,
    /// Every value; indexed by [`ValueId`].
    pub values: Vec<Value>,
    /// Every node, in an order where producers precede consumers; indexed by [`NodeId`].
    pub nodes: Vec<Node>,
    /// Graph inputs that are not constants, in model order.
    pub inputs: Vec<ValueId>,
    /// Graph outputs, in model order.
    pub outputs: Vec<ValueId>,
    /// The `ai.onnx` opset version.
    pub opset: i64,
    /// Every opset the model imports, by domain (`""` for `ai.onnx`).
    pub opsets: std::collections::BTreeMap<String, i64>,
    /// The domains of the model's local functions.
    pub function_domains: Vec<String>,
    /// Opsets by domain for nodes inlined from a local function that imports other versions
    /// than the model, keyed by node name (see [`Graph::node_opset`]).
    pub node_opsets: std::collections::HashMap<String, std::collections::BTreeMap<String, i64>>,
    /// Value names to ids; subgraphs imported later (If branches) resolve outer names here.
    pub names: std::collections::HashMap<String, ValueId>,
    /// Where the model file is, for external data of subgraph initializers.
    pub model_dir: Option<std::path::PathBuf>,
    /// The bounded symbolic dims the inputs use (`--dim 'N<=8'`), by name: the generated
    /// `run` takes their sizes.
    pub bounds: std::collections::BTreeMap<String, DimBound>,
    /// Bounded dims tied to another bounded dim (`--dim 'total=past+1'`), by name: the other
    /// and the offset. Their sizes follow the other's at run time; `Dims` leaves them out.
    pub related: std::collections::BTreeMap<String, (String, usize)>,
}

impl Graph {
    /// The value with this id.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    /// The value with this id, mutably.
    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    /// The opset version a node named `node` in `domain` follows: its inlined function's, else
    /// the model's.
    pub fn node_opset(&self, node: &str, domain: &str) -> Option<i64> {
        match self.node_opsets.get(node) {
            Some(opsets) => opsets.get(domain).copied(),
            None => self.opsets.get(domain).copied(),
        }
    }

    /// Every value's id, in order. Each index was handed out by [`Graph::add_value`], which
    /// checks that it fits in a `u32`, so the conversion cannot truncate.
    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        (0..self.values.len()).map(|i| ValueId(i as u32))
    }

    /// Adds a value and returns its id.
    pub fn add_value(&mut self, value: Value) -> ValueId {
        let id = ValueId(u32::try_from(self.values.len()).expect("fewer than 2^32 values"));
        self.values.push(value);
        id
    }

    /// How many times each value is read by a node or is a graph output.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.values.len()];
        for node in &self.nodes {
            for input in node.inputs.iter().flatten() {
                counts[input.index()] += 1;
            }
        }
        for output in &self.outputs {
            counts[output.index()] += 1;
        }
        counts
    }

    /// The op histogram, sorted by op type.
    pub fn op_histogram(&self) -> Vec<(String, usize)> {
        let mut map = std::collections::BTreeMap::new();
        for node in &self.nodes {
            *map.entry(node.node_ref().op_type).or_insert(0) += 1;
        }
        map.into_iter().collect()
    }
}
