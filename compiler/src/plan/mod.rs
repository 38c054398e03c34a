//! The static memory plan: where every constant sits in the weights blob and every
//! intermediate (and scratch buffer) in the arena.
//!
//! Liveness is an interval of node indices over the final schedule: from the producing node to
//! the last consumer (graph outputs live to the end). Offsets come from greedy-by-size
//! placement: largest buffers first, each at the lowest 64-byte-aligned offset that does not
//! collide with a placed buffer whose interval overlaps. A node's outputs never share bytes
//! with its inputs (their intervals meet at the node).

use crate::error::{CompileError, Result};
use crate::ir::Graph;
use crate::ops::TypeShape;
use crate::passes::infer_shapes_cx;

/// Every region is aligned to (and padded to a multiple of) this many bytes.
pub const ALIGN: usize = 64;

/// Where a value lives at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Byte offset in the weights blob.
    Weights(usize),
    /// Byte offset in the arena.
    Arena(usize),
    /// Graph input number `i` (read straight from the caller's array).
    Input(usize),
}

/// The memory plan of a graph.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Per value (by `ValueId` index): where it lives, if anywhere.
    pub locations: Vec<Option<Location>>,
    /// Per node: the arena offset and type of its scratch buffer, if it has one.
    pub scratch: Vec<Option<(usize, TypeShape)>>,
    /// Per node: true when the node is a view (its output shares its input's bytes) and
    /// emits no code.
    pub skip: Vec<bool>,
    /// Per node: the input whose buffer its output 0 reuses (elementwise ops whose input dies
    /// there), if any; the node's code then updates its output in place.
    pub in_place: Vec<Option<usize>>,
    /// Per graph output: the arena region its value is copied into at the end of `run`, for
    /// outputs whose value lives elsewhere (a constant or a graph input).
    pub output_copy: Vec<Option<usize>>,
    /// Arena regions `Model::new()` fills with one repeated value (big uniform constants).
    pub fills: Vec<Fill>,
    /// Arena size in bytes.
    pub arena_bytes: usize,
    /// The peak of bytes live at once over the schedule: no plan can use less.
    pub arena_lower_bound: usize,
    /// The weights blob.
    pub weights: Vec<u8>,
}

struct Buffer {
    size: usize,
    first: usize,
    last: usize,
    offset: usize,
}

fn padded(bytes: usize) -> usize {
    bytes.div_ceil(ALIGN).max(1) * ALIGN
}

/// Plans the graph's memory.
pub fn plan(graph: &Graph) -> Result<Plan> {
    let n_nodes = graph.nodes.len();
    let mut locations = vec![None; graph.values.len()];
    for (i, &id) in graph.inputs.iter().enumerate() {
        locations[id.index()] = Some(Location::Input(i));
    }

    // Constants that code reads: in node inputs and graph outputs, in first-use order. Big
    // constants that repeat one value (ConstantOfShape, Expand of a scalar) are not stored:
    // they get an arena region that `Model::new()` fills.
    let mut weights = Vec::new();
    let mut fill_values: Vec<crate::ir::ValueId> = Vec::new();
    let mut place_constant = |id: crate::ir::ValueId, locations: &mut Vec<Option<Location>>| {
        if locations[id.index()].is_none() && !fill_values.contains(&id) {
            if let Some(t) = &graph.value(id).constant {
                if is_uniform(t) {
                    fill_values.push(id);
                    return;
                }
                let offset = weights.len();
                weights.extend_from_slice(&t.bytes);
                weights.resize(offset + padded(t.bytes.len()), 0);
                locations[id.index()] = Some(Location::Weights(offset));
            }
        }
    };
    for node in &graph.nodes {
        for &id in node
            .inputs
            .iter()
            .flatten()
            .chain(node.guards.iter().map(|(g, _)| g))
        {
            place_constant(id, &mut locations);
        }
    }
    for &id in &graph.outputs {
        place_constant(id, &mut locations);
    }

    // Views: the output of a Reshape-like node is its input's bytes; it shares the input's
    // location and the node emits no code.
    let mut root: Vec<usize> = (0..graph.values.len()).collect();
    let mut skip = vec![false; n_nodes];
    for (i, node) in graph.nodes.iter().enumerate() {
        if let (true, Some(Some(input)), Some(Some(output))) = (
            is_view(graph, node),
            node.inputs.first(),
            node.outputs.first(),
        ) {
            root[output.index()] = root[input.index()];
            skip[i] = true;
        }
    }

    // Arena buffers: node outputs, then scratch.
    let mut last_use = vec![0usize; graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for id in node
            .inputs
            .iter()
            .flatten()
            .chain(node.guards.iter().map(|(g, _)| g))
        {
            last_use[id.index()] = i;
        }
    }
    for id in &graph.outputs {
        last_use[id.index()] = n_nodes;
    }
    // A buffer lives until the last use of any value that views it.
    for v in 0..graph.values.len() {
        let r = root[v];
        if r != v {
            last_use[r] = last_use[r].max(last_use[v]);
        }
    }
    let (slice_of, concat_first) = concat_in_place(graph, &root, &mut skip);
    // ConstantOfShape outputs too big to fold (the weights of the onnx package's light
    // models) are filled once by `Model::new()` as well: the node emits no code.
    let mut hoisted: Vec<(crate::ir::ValueId, Vec<u8>)> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let (Some(crate::ops::Op::Generate(g)), Some(Some(out))) = (&node.op, node.outputs.first())
        else {
            continue;
        };
        let constant_inputs = node
            .inputs
            .iter()
            .flatten()
            .all(|id| graph.value(*id).constant.is_some());
        if let (Some(v), true) = (g.constant_fill(), constant_inputs) {
            if graph.value(*out).dtype == Some(v.dtype) && !graph.outputs.contains(out) {
                skip[i] = true;
                hoisted.push((*out, v.bytes.clone()));
            }
        }
    }
    let in_place = elementwise_in_place(graph, &mut root, &mut last_use, &skip, &slice_of)?;
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut owners: Vec<Owner> = Vec::new();
    for (id, element) in &hoisted {
        buffers.push(Buffer {
            size: padded(graph.value(*id).bytes()),
            first: 0,
            last: n_nodes,
            offset: 0,
        });
        owners.push(Owner::Hoisted(*id, element.clone()));
    }
    for &id in &fill_values {
        buffers.push(Buffer {
            size: padded(graph.value(id).bytes()),
            first: 0,
            last: n_nodes,
            offset: 0,
        });
        owners.push(Owner::Fill(id));
    }
    let mut scratch = vec![None; n_nodes];
    for (i, node) in graph.nodes.iter().enumerate() {
        for &id in node.outputs.iter().flatten() {
            let value = graph.value(id);
            if value.constant.is_some()
                || root[id.index()] != id.index()
                || hoisted.iter().any(|(h, _)| *h == id)
                || slice_of[id.index()].is_some()
            {
                continue;
            }
            buffers.push(Buffer {
                size: padded(value.bytes()),
                first: concat_first[id.index()].unwrap_or(i).min(i),
                last: last_use[id.index()].max(i),
                offset: 0,
            });
            owners.push(Owner::Value(id.index()));
        }
        if let Some(op) = &node.op {
            let cx = infer_shapes_cx(graph, node, true).map_err(|e| e.at(node.node_ref()))?;
            if let Some(t) = op.scratch(&cx) {
                let bytes = t
                    .len()
                    .checked_mul(t.dtype.size())
                    .ok_or_else(|| CompileError::shape("scratch size overflows"))?;
                buffers.push(Buffer {
                    size: padded(bytes),
                    first: i,
                    last: i,
                    offset: 0,
                });
                owners.push(Owner::Scratch(i, t));
            }
        }
    }

    // Graph outputs whose bytes are not in the arena (constants, graph inputs, views of
    // them) get a region there, filled by a copy at the end of `run`, so that `run` can
    // return references into the arena.
    let mut output_copy = vec![None; graph.outputs.len()];
    for (k, &id) in graph.outputs.iter().enumerate() {
        let r = root[id.index()];
        let root_id = crate::ir::ValueId(u32::try_from(r).unwrap_or(u32::MAX));
        let in_arena = (graph.value(root_id).constant.is_none() || fill_values.contains(&root_id))
            && !graph.inputs.iter().any(|i| i.index() == r);
        if !in_arena {
            buffers.push(Buffer {
                size: padded(graph.value(id).bytes()),
                first: n_nodes,
                last: n_nodes,
                offset: 0,
            });
            owners.push(Owner::OutputCopy(k));
        }
    }

    let arena_lower_bound = (0..=n_nodes)
        .map(|t| {
            buffers
                .iter()
                .filter(|b| b.first <= t && t <= b.last)
                .map(|b| b.size)
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);

    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by(|&a, &b| {
        buffers[b]
            .size
            .cmp(&buffers[a].size)
            .then(buffers[a].first.cmp(&buffers[b].first))
    });
    let mut placed: Vec<usize> = Vec::new();
    let mut arena_bytes = 0;
    for &b in &order {
        let mut taken: Vec<(usize, usize)> = placed
            .iter()
            .map(|&p| &buffers[p])
            .filter(|p| p.first <= buffers[b].last && buffers[b].first <= p.last)
            .map(|p| (p.offset, p.offset + p.size))
            .collect();
        taken.sort_unstable();
        let size = buffers[b].size;
        let mut offset = 0;
        for (start, end) in taken {
            if offset + size <= start {
                break;
            }
            offset = offset.max(end);
        }
        buffers[b].offset = offset;
        arena_bytes = arena_bytes.max(offset + size);
        placed.push(b);
    }
    let mut fills = Vec::new();
    for (buffer, owner) in buffers.iter().zip(owners) {
        match owner {
            Owner::Value(v) => locations[v] = Some(Location::Arena(buffer.offset)),
            Owner::Scratch(node, t) => scratch[node] = Some((buffer.offset, t)),
            Owner::OutputCopy(k) => output_copy[k] = Some(buffer.offset),
            Owner::Hoisted(id, element) => {
                locations[id.index()] = Some(Location::Arena(buffer.offset));
                let value = graph.value(id);
                fills.push(Fill {
                    offset: buffer.offset,
                    dtype: value.dtype.unwrap_or(crate::ir::DType::F32),
                    len: value.len(),
                    element,
                });
            }
            Owner::Fill(id) => {
                locations[id.index()] = Some(Location::Arena(buffer.offset));
                if let Some(t) = &graph.value(id).constant {
                    fills.push(Fill {
                        offset: buffer.offset,
                        dtype: t.dtype,
                        len: t.len(),
                        element: t.bytes[..t.dtype.size()].to_vec(),
                    });
                }
            }
        }
    }
    for (v, slice) in slice_of.iter().enumerate() {
        if let (Some((out, offset)), None) = (slice, locations[v]) {
            if let Some(Location::Arena(base)) = locations[*out] {
                locations[v] = Some(Location::Arena(base + offset));
            }
        }
    }
    for v in 0..graph.values.len() {
        if root[v] != v {
            locations[v] = locations[root[v]];
        }
    }
    Ok(Plan {
        locations,
        scratch,
        skip,
        in_place,
        output_copy,
        fills,
        arena_bytes,
        arena_lower_bound,
        weights,
    })
}

/// Ops whose first output holds their first input's elements unchanged, in order.
const VIEW_OPS: &[&str] = &[
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Dropout",
];

/// Whether `node` can be planned as a view: a view op, in the default domain, with only its
/// first output used and the same element type in and out.
/// Elementwise ops in place: when a node's op can update one input's buffer into its output
/// ([`crate::ops::OpDef::in_place_input`]) and that input dies at the node (no later reader,
/// no view of it, not a graph input, output or constant, read once by the node), the output
/// becomes that buffer (its root) and the buffer lives until the output's last use.
fn elementwise_in_place(
    graph: &Graph,
    root: &mut [usize],
    last_use: &mut [usize],
    skip: &[bool],
    slice_of: &[Option<(usize, usize)>],
) -> Result<Vec<Option<usize>>> {
    let n_values = graph.values.len();
    let mut viewed = vec![false; n_values];
    for (v, &r) in root.iter().enumerate() {
        if r != v {
            viewed[r] = true;
        }
    }
    let mut produced = vec![false; n_values];
    for (i, node) in graph.nodes.iter().enumerate() {
        if !skip[i] {
            for out in node.outputs.iter().flatten() {
                produced[out.index()] = true;
            }
        }
    }
    let mut in_place = vec![None; graph.nodes.len()];
    // Outputs already updated in place: a chain of such nodes (a residual network's blocks)
    // keeps updating the first one's buffer.
    let mut chained = vec![false; n_values];
    for (i, node) in graph.nodes.iter().enumerate() {
        let Some(op) = &node.op else { continue };
        if skip[i] || !node.guards.is_empty() {
            continue;
        }
        let cx = infer_shapes_cx(graph, node, true).map_err(|e| e.at(node.node_ref()))?;
        let Some(k) = op.in_place_input(&cx) else {
            continue;
        };
        let (Some(Some(x)), Some(Some(out))) = (node.inputs.get(k), node.outputs.first()) else {
            continue;
        };
        let (xi, oi) = (x.index(), out.index());
        // The buffer `x` lies in: its own, or the one an in-place chain ending in `x` updates.
        let buffer = root[xi];
        let read_once = node.inputs.iter().flatten().filter(|&&v| v == *x).count() == 1;
        let (xv, ov) = (graph.value(*x), graph.value(*out));
        if !read_once
            || !produced[xi]
            || xv.constant.is_some()
            || ov.constant.is_some()
            || xv.bytes() != ov.bytes()
            || (buffer != xi && !chained[xi])
            || root[oi] != oi
            || (viewed[xi] && !chained[xi])
            || viewed[oi]
            || last_use[buffer] != i
            || slice_of[xi].is_some()
            || slice_of[oi].is_some()
            || graph.inputs.contains(x)
            || graph.outputs.contains(x)
        {
            continue;
        }
        root[oi] = buffer;
        last_use[buffer] = last_use[buffer].max(last_use[oi]);
        viewed[buffer] = true;
        chained[oi] = true;
        in_place[i] = Some(k);
    }
    Ok(in_place)
}

/// Concat in place: when every input of a Concat is a value that only the Concat reads,
/// produced earlier by a node that writes it (not a view, constant or graph input), and the
/// inputs are contiguous slices of the output (every axis before the concatenation axis has
/// size 1), each producer writes straight into its slice of the output and the Concat emits
/// no code (it is marked in `skip`).
///
/// Returns, per value, the Concat output it is a slice of with the byte offset, and per
/// Concat output the first node that writes into it (its buffer must live from there).
#[allow(
    clippy::type_complexity,
    reason = "two per-value tables, documented above"
)]
fn concat_in_place(
    graph: &Graph,
    root: &[usize],
    skip: &mut [bool],
) -> (Vec<Option<(usize, usize)>>, Vec<Option<usize>>) {
    let n_values = graph.values.len();
    let mut slice_of: Vec<Option<(usize, usize)>> = vec![None; n_values];
    let mut first: Vec<Option<usize>> = vec![None; n_values];
    let uses = graph.use_counts();
    let mut producer = vec![None; n_values];
    for (i, node) in graph.nodes.iter().enumerate() {
        for out in node.outputs.iter().flatten() {
            producer[out.index()] = Some(i);
        }
    }
    let mut viewed = vec![false; n_values];
    for (v, &r) in root.iter().enumerate() {
        if r != v {
            viewed[r] = true;
        }
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        if node.op_type != "Concat" || !node.domain.is_empty() || skip[i] || !node.guards.is_empty()
        {
            continue;
        }
        let Some(Some(out)) = node.outputs.first() else {
            continue;
        };
        let out_value = graph.value(*out);
        let (Some(shape), Some(dtype)) = (&out_value.shape, out_value.dtype) else {
            continue;
        };
        // Extents known only at run time move each input's block with them: the blocks are
        // at their capacity's offsets only when the extents are at their bounds.
        if out_value.is_dynamic()
            || node
                .inputs
                .iter()
                .flatten()
                .any(|&v| graph.value(v).is_dynamic())
        {
            continue;
        }
        // The parsed op's axis: passes may have moved it (channels last).
        let Some(crate::ops::Op::Concat(concat)) = &node.op else {
            continue;
        };
        let axis = concat.axis;
        let Ok(axis) = crate::ops::normalize_axis(axis, shape.len(), "axis") else {
            continue;
        };
        let outer_is_one = shape[..axis].iter().all(|&d| d == 1);
        let inputs: Vec<_> = node.inputs.iter().flatten().copied().collect();
        let qualifies = |id: crate::ir::ValueId| {
            let value = graph.value(id);
            let k = id.index();
            value.constant.is_none()
                && value.dtype == Some(dtype)
                && uses[k] == 1
                && root[k] == k
                && !viewed[k]
                && !graph.outputs.contains(&id)
                && !graph.inputs.contains(&id)
                && slice_of[k].is_none()
                && producer[k]
                    .is_some_and(|p| p < i && !skip[p] && graph.nodes[p].guards.is_empty())
        };
        if out_value.constant.is_some()
            || root[out.index()] != out.index()
            || !outer_is_one
            || inputs.len() != node.inputs.len()
            || inputs.len() < 2
            || !inputs.iter().all(|&id| qualifies(id))
        {
            continue;
        }
        let mut offset = 0;
        for &id in &inputs {
            slice_of[id.index()] = Some((out.index(), offset));
            offset += graph.value(id).bytes();
        }
        first[out.index()] = inputs.iter().filter_map(|id| producer[id.index()]).min();
        skip[i] = true;
    }
    (slice_of, first)
}

fn is_view(graph: &Graph, node: &crate::ir::Node) -> bool {
    let (Some(Some(input)), Some(Some(output))) = (node.inputs.first(), node.outputs.first())
    else {
        return false;
    };
    node.domain.is_empty()
        && VIEW_OPS.contains(&node.op_type.as_str())
        && node.outputs.iter().skip(1).all(Option::is_none)
        && graph.value(*input).dtype == graph.value(*output).dtype
        && graph.value(*input).len() == graph.value(*output).len()
        && graph.value(*output).constant.is_none()
        && !graph.value(*output).is_dynamic()
}

/// A big constant that repeats one value, materialized in the arena by `Model::new()`
/// instead of being stored in the weights blob.
#[derive(Debug, Clone)]
pub struct Fill {
    /// Arena offset.
    pub offset: usize,
    /// Element type.
    pub dtype: crate::ir::DType,
    /// Elements.
    pub len: usize,
    /// The repeated element's little-endian bytes.
    pub element: Vec<u8>,
}

/// Constants at least this big that repeat one value are filled at load time, not stored.
const FILL_MIN_BYTES: usize = 4096;

/// Whether `t` is big and every element equals the first.
fn is_uniform(t: &crate::ir::Tensor) -> bool {
    let size = t.dtype.size();
    t.bytes.len() >= FILL_MIN_BYTES && t.bytes.chunks_exact(size).all(|c| c == &t.bytes[..size])
}

enum Owner {
    Fill(crate::ir::ValueId),
    Hoisted(crate::ir::ValueId, Vec<u8>),
    OutputCopy(usize),
    Value(usize),
    Scratch(usize, TypeShape),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{run_passes, OptLevel, PassCx};

    /// A bundled real model (tests/data/models/NAME) through the -O3 passes, and its plan.
    fn planned(name: &str, opt_level: OptLevel) -> (Graph, Plan) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../tests/data/models/{name}/model.onnx"));
        // PP-OCR det's image size is symbolic: its data's 320 x 320.
        let mut builder = crate::Builder::new(path).opt_level(opt_level);
        if name == "ppocr_det_v4" {
            let dims = (1..3).map(|i| (format!("p2o.DynamicDimension.{i}"), 320));
            builder = builder.dims(dims.chain([("p2o.DynamicDimension.0".to_string(), 1)]));
        }
        let crate::Compiled { graph, plan, .. } = builder.compile().expect("compiles");
        (graph, plan)
    }

    #[test]
    fn concat_inputs_are_written_into_their_slices() {
        // Every fire module of the light SqueezeNet ends in a Concat of two convolutions. (At
        // -O1: from -O2 on, they run channels last and join on the last axis, by a copy.)
        let (graph, plan) = planned("light_squeezenet", OptLevel::O1);
        let mut concats = 0;
        for (i, node) in graph.nodes.iter().enumerate() {
            if node.op_type != "Concat" {
                continue;
            }
            concats += 1;
            assert!(plan.skip[i], "the Concat emits no code");
            let out = node.outputs[0].expect("output");
            let Some(Location::Arena(base)) = plan.locations[out.index()] else {
                panic!("the Concat output lives in the arena");
            };
            let mut offset = base;
            for input in node.inputs.iter().flatten() {
                assert_eq!(plan.locations[input.index()], Some(Location::Arena(offset)));
                offset += graph.value(*input).bytes();
            }
            assert_eq!(offset - base, graph.value(out).bytes());
        }
        assert_eq!(concats, 8);
    }

    #[test]
    fn concats_in_place_follow_their_axis_once_channels_last() {
        // Quantized statically, the light SqueezeNet's fire modules end in float Concats of
        // two channels-last convolutions: they join on the last axis, and their inputs are
        // no longer contiguous slices of the output. (The planner once read the axis from the
        // node's attributes, which still said 1, and laid the inputs end to end.) Every value
        // gets the range [-8, 8]: a layout check, not an accuracy one.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/models/light_squeezenet/model.onnx");
        let graph = crate::Builder::new(path).load().expect("loads");
        let mut table = crate::passes::Calibration::new();
        for value in &graph.values {
            table.insert(value.name.clone(), -8.0, 8.0);
        }
        let cx = PassCx {
            opt_level: OptLevel::O3,
            quantize: crate::passes::Quantize::Static,
            calibration: Some(std::sync::Arc::new(table)),
            ..PassCx::default()
        };
        let graph = run_passes(graph, &cx).expect("compiles").0;
        let plan = plan(&graph).expect("plans");
        let mut channels_last = 0;
        for (i, node) in graph.nodes.iter().enumerate() {
            let Some(crate::ops::Op::Concat(concat)) = &node.op else {
                continue;
            };
            let out = node.outputs[0].expect("output");
            let shape = graph.value(out).shape.clone().expect("shape");
            let axis = crate::ops::normalize_axis(concat.axis, shape.len(), "axis").expect("axis");
            if axis == shape.len() - 1 {
                channels_last += 1;
            }
            let attribute = node.attributes.iter().find(|a| a.name() == "axis");
            assert_eq!(attribute.map(|a| a.i()), Some(concat.axis), "{}", node.name);
            if plan.skip[i] {
                assert!(shape[..axis].iter().all(|&d| d == 1), "{}", node.name);
            }
        }
        assert_eq!(
            channels_last, 8,
            "the fire modules' Concats run channels last"
        );
    }

    #[test]
    fn elementwise_ops_write_over_inputs_that_die_there() {
        // PP-OCR det's residual Adds and SE-gate Muls read tensors nothing reads afterwards.
        let (graph, plan) = planned("ppocr_det_v4", OptLevel::O3);
        let mut count = 0;
        for (i, node) in graph.nodes.iter().enumerate() {
            let Some(k) = plan.in_place[i] else { continue };
            count += 1;
            let (x, out) = (
                node.inputs[k].expect("input"),
                node.outputs[0].expect("output"),
            );
            assert_eq!(plan.locations[x.index()], plan.locations[out.index()]);
            // The input is read by no later node.
            assert!(graph.nodes[i + 1..]
                .iter()
                .all(|n| !n.inputs.contains(&Some(x))));
        }
        assert!(count > 0, "no elementwise op ran in place");
    }
}
