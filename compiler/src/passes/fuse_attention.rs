//! Recognizes scaled dot-product attention as the exporters write it out and replaces it with
//! one `Attention` node on the blocked kernel (`sinter_rt::attention::attention_f32_exec`):
//!
//! ```text
//! scores = MatMul(Q, K^T)      (or MatMul with `trans_b` on K, after fuse_transpose_matmul)
//! scores = scores * s          (optional; or / s; or Q and K each scaled by a constant first)
//! scores = scores + mask       (optional)
//! Y      = MatMul(Softmax(scores, axis = -1), V)
//! ```
//!
//! over 4-D `[B, H, S, D]` float32 operands of equal batch and head counts. The scores never
//! leave the cache: the kernel takes a block of query rows at a time.
//!
//! The Transpose and Reshape nodes that split the heads out of the projections and merge
//! them back are folded too, as long as every operand stays a strided view with a contiguous
//! head axis: the node reads Q, K and V where the projections wrote them and writes its output
//! where the graph's last reshape wants it, so the per-head copies go.
//!
//! Semantics are kept exactly up to float32 rounding, with one condition: the kernel gives a
//! row whose keys are all masked zero weights where Softmax gives NaN, so a mask is taken only
//! when its values are provably finite (constants, integer casts, `Where` between finite
//! values, and sums and products of those within float32's range). Every intermediate must
//! have no reader outside the pattern. Anything else is left alone.

use super::pattern::{input, output, producers, splice};
use super::{infer_shapes_cx, PassCx};
use crate::error::Result;
use crate::ir::{DType, Graph, Node, ValueId};
use crate::ops::attention::{Attention, AttentionViews};
use crate::ops::elementwise::BinaryKind;
use crate::ops::softmax::SoftmaxKind;
use crate::ops::Op;

/// Ops whose output holds their input's elements in the same order (what the planner makes
/// views of).
const RESHAPES: &[&str] = &["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"];

/// A strided view of a buffer: element strides per logical axis (0 for axes of extent 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    shape: [usize; 4],
    strides: [usize; 4],
}

impl View {
    /// The contiguous view of a `shape` buffer.
    fn contiguous(shape: [usize; 4]) -> Self {
        let mut strides = [0; 4];
        let mut acc = 1;
        for a in (0..4).rev() {
            strides[a] = if shape[a] == 1 { 0 } else { acc };
            acc *= shape[a];
        }
        Self { shape, strides }
    }

    /// The same elements when the buffer's multi-index axes move: the view lies in a buffer of
    /// shape `dims` (contiguous), and axis `a` of that buffer takes stride `to[a]` in the new
    /// one. Each logical stride is split into steps along the buffer's axes; the view maps
    /// linearly only if no walk along the logical axes carries from one buffer axis into the
    /// next, else `None`.
    fn restride(self, dims: &[usize], to: &[usize]) -> Option<Self> {
        let rank = dims.len();
        let mut contiguous = vec![1usize; rank];
        for a in (0..rank.saturating_sub(1)).rev() {
            contiguous[a] = contiguous[a + 1] * dims[a + 1];
        }
        let mut reach = vec![0usize; rank];
        let mut strides = [0usize; 4];
        for ((&extent, &stride), new) in self.shape.iter().zip(&self.strides).zip(&mut strides) {
            if extent <= 1 {
                continue;
            }
            let mut rest = stride;
            for ((&unit, &target), reached) in contiguous.iter().zip(to).zip(&mut reach) {
                let steps = rest / unit;
                rest %= unit;
                *reached += steps * (extent - 1);
                *new += steps * target;
            }
        }
        (reach.iter().zip(dims).all(|(&r, &d)| r < d.max(1))).then_some(Self {
            shape: self.shape,
            strides,
        })
    }

    /// The view in the input of a movement node whose output it lies in: a reshape keeps the
    /// offsets, a transpose by `perm` sends output axis `a` to input axis `perm[a]`.
    fn through_input(
        self,
        out_dims: &[usize],
        in_dims: &[usize],
        perm: Option<&[usize]>,
    ) -> Option<Self> {
        let Some(perm) = perm else {
            return Some(self);
        };
        let inner = contiguous_strides(in_dims);
        let to: Vec<usize> = perm.iter().map(|&p| inner[p]).collect();
        self.restride(out_dims, &to)
    }

    /// The view in the output of a movement node whose input it lies in.
    fn through_output(
        self,
        in_dims: &[usize],
        out_dims: &[usize],
        perm: Option<&[usize]>,
    ) -> Option<Self> {
        let Some(perm) = perm else {
            return Some(self);
        };
        let outer = contiguous_strides(out_dims);
        let mut to = vec![0; perm.len()];
        for (a, &p) in perm.iter().enumerate() {
            to[p] = outer[a];
        }
        self.restride(in_dims, &to)
    }

    /// Whether the head axis is contiguous (what the kernel needs).
    fn rows_contiguous(&self) -> bool {
        self.shape[3] <= 1 || self.strides[3] == 1
    }

    fn outer_strides(&self) -> [usize; 3] {
        [self.strides[0], self.strides[1], self.strides[2]]
    }
}

fn contiguous_strides(dims: &[usize]) -> Vec<usize> {
    let mut out = vec![1; dims.len()];
    for a in (0..dims.len().saturating_sub(1)).rev() {
        out[a] = out[a + 1] * dims[a + 1];
    }
    out
}

/// The graph as this pass reads it.
struct Cx<'a> {
    graph: &'a Graph,
    producer: &'a [Option<usize>],
    readers: &'a [Vec<usize>],
    guards: &'a [(ValueId, bool)],
}

impl<'a> Cx<'a> {
    fn shape(&self, v: ValueId) -> Option<&'a [usize]> {
        let value = self.graph.value(v);
        (!value.is_dynamic() && value.dtype == Some(DType::F32))
            .then_some(value.shape.as_deref())
            .flatten()
    }

    fn shape4(&self, v: ValueId) -> Option<[usize; 4]> {
        self.shape(v)?.try_into().ok()
    }

    /// The node producing `v` if `v` has no other reader, is not a graph output, and the node
    /// runs under the pattern's guards.
    fn private_producer(&self, v: ValueId) -> Option<(usize, &'a Node)> {
        let index = self.producer[v.index()]?;
        let node = &self.graph.nodes[index];
        (self.readers[v.index()].len() == 1
            && !self.graph.outputs.contains(&v)
            && node.guards == self.guards
            && node.outputs.iter().skip(1).all(Option::is_none))
        .then_some((index, node))
    }

    /// The only reader of `v`, when `v` is not a graph output.
    fn only_reader(&self, v: ValueId) -> Option<(usize, &'a Node)> {
        match self.readers[v.index()][..] {
            [index] if !self.graph.outputs.contains(&v) => {
                let node = &self.graph.nodes[index];
                (node.guards == self.guards).then_some((index, node))
            }
            _ => None,
        }
    }

    /// A movement node's permutation: `None` for a reshape, `Some` for a transpose; not a
    /// movement node (or one that reads more than its data) gives `Err`.
    fn movement(&self, node: &Node) -> std::result::Result<Option<Vec<usize>>, ()> {
        if !node.domain.is_empty() {
            return Err(());
        }
        let data = input(node, 0).ok_or(())?;
        let rank = self.shape(data).ok_or(())?.len();
        match &node.op {
            Some(Op::Transpose(t)) => t.perm(rank).map(Some).map_err(|_| ()),
            _ if RESHAPES.contains(&node.op_type.as_str()) => Ok(None),
            _ => Err(()),
        }
    }

    /// If `v` is a product by a one-element constant (`x * c`, `c * x` or, with `divide`,
    /// `x / c`) with no other reader: the node, `x` and the factor.
    fn scaled(&self, v: ValueId) -> Option<(usize, ValueId, f64)> {
        let (index, node) = self.private_producer(v)?;
        let Some(Op::Binary(b)) = &node.op else {
            return None;
        };
        let constant = |v: ValueId| {
            let t = self.graph.value(v).constant.as_ref()?;
            let values = t.to_f64s();
            (values.len() == 1 && values[0].is_finite() && values[0] != 0.0).then(|| values[0])
        };
        let (a, c) = (input(node, 0)?, input(node, 1)?);
        if !node.domain.is_empty() || b.legacy_axis.is_some() || self.shape(a) != self.shape(v) {
            return None;
        }
        match b.kind {
            BinaryKind::Mul => match (constant(a), constant(c)) {
                (None, Some(s)) => Some((index, a, s)),
                (Some(s), None) if self.shape(c) == self.shape(v) => Some((index, c, s)),
                _ => None,
            },
            BinaryKind::Div => constant(c).map(|s| (index, a, 1.0 / s)),
            _ => None,
        }
    }

    /// An upper bound on the magnitude of every element of `v`, when one follows from how
    /// `v` is computed (see the module docs); `None` when it may be infinite or NaN.
    fn magnitude(&self, v: ValueId, depth: usize) -> Option<f64> {
        let value = self.graph.value(v);
        if let Some(t) = &value.constant {
            return t
                .to_f64s()
                .iter()
                .try_fold(0.0f64, |m, x| x.is_finite().then(|| m.max(x.abs())));
        }
        let dtype = value.dtype?;
        if let Some(bound) = integer_magnitude(dtype) {
            return Some(bound);
        }
        if !matches!(dtype, DType::F32 | DType::F64) {
            return None;
        }
        let index = self.producer[v.index()]?;
        let node = &self.graph.nodes[index];
        if depth == 0 || !node.domain.is_empty() {
            return None;
        }
        let arg = |i: usize| self.magnitude(input(node, i)?, depth - 1);
        let bound = match (&node.op, node.op_type.as_str()) {
            (Some(Op::Binary(b)), _) => match b.kind {
                BinaryKind::Add | BinaryKind::Sub => arg(0)? + arg(1)?,
                BinaryKind::Mul => arg(0)? * arg(1)?,
                _ => return None,
            },
            (_, "Where") => arg(1)?.max(arg(2)?),
            (_, "Cast") => arg(0)?,
            (_, "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "Expand")
            | (_, "Transpose" | "Slice" | "Gather" | "Concat" | "Neg") => (0..node.inputs.len())
                .filter(|&i| i == 0 || node.op_type == "Concat")
                .map(arg)
                .try_fold(0.0f64, |m, b| b.map(|b| m.max(b)))?,
            _ => return None,
        };
        (bound <= f64::from(f32::MAX)).then_some(bound)
    }
}

/// The largest magnitude of an integer or boolean type.
fn integer_magnitude(dtype: DType) -> Option<f64> {
    Some(match dtype {
        DType::Bool | DType::U2 | DType::I2 => 3.0,
        DType::I4 | DType::U4 => 15.0,
        DType::I8 | DType::U8 => 255.0,
        DType::I16 | DType::U16 => 65_535.0,
        DType::I32 | DType::U32 => 4_294_967_295.0,
        DType::I64 | DType::U64 => 18_446_744_073_709_551_615.0,
        _ => return None,
    })
}

/// Follows movement nodes back from `v` (read through `view`) while each reads a value with
/// no other reader; the furthest value the view still reaches with a contiguous head axis,
/// its view, and the nodes passed on the way there.
fn walk_back(cx: &Cx<'_>, mut v: ValueId, mut view: View) -> Option<(ValueId, View, Vec<usize>)> {
    let mut best = view.rows_contiguous().then(|| (v, view, Vec::new()));
    let mut nodes = Vec::new();
    while let Some((index, node)) = cx.private_producer(v) {
        let Ok(perm) = cx.movement(node) else {
            break;
        };
        let Some(from) = input(node, 0) else {
            break;
        };
        let (Some(out_dims), Some(in_dims)) = (cx.shape(v), cx.shape(from)) else {
            break;
        };
        let Some(next) = view.through_input(out_dims, in_dims, perm.as_deref()) else {
            break;
        };
        nodes.push(index);
        (v, view) = (from, next);
        if view.rows_contiguous() {
            best = Some((v, view, nodes.clone()));
        }
    }
    best
}

/// Follows movement nodes forward from the output `v` while each is `v`'s only reader; the
/// furthest value with a contiguous head axis, its view, and the nodes on the way.
fn walk_forward(cx: &Cx<'_>, mut v: ValueId, mut view: View) -> (ValueId, View, Vec<usize>) {
    let mut best = (v, view, Vec::new());
    let mut nodes = Vec::new();
    while let Some((index, node)) = cx.only_reader(v) {
        let (Ok(perm), Some(to)) = (cx.movement(node), output(node, 0)) else {
            break;
        };
        if input(node, 0) != Some(v) || node.outputs.iter().skip(1).any(Option::is_some) {
            break;
        }
        let (Some(in_dims), Some(out_dims)) = (cx.shape(v), cx.shape(to)) else {
            break;
        };
        let Some(next) = view.through_output(in_dims, out_dims, perm.as_deref()) else {
            break;
        };
        nodes.push(index);
        (v, view) = (to, next);
        if view.rows_contiguous() {
            best = (v, view, nodes.clone());
        }
    }
    best
}

/// The attention ending at the Softmax node `index`, if the graph has one there: the nodes it
/// replaces, the last of them, and the replacement.
fn find(
    graph: &Graph,
    producer: &[Option<usize>],
    readers: &[Vec<usize>],
    index: usize,
) -> Option<(Vec<usize>, usize, Node)> {
    let softmax = &graph.nodes[index];
    let Some(Op::Softmax(op)) = &softmax.op else {
        return None;
    };
    let cx = Cx {
        graph,
        producer,
        readers,
        guards: &softmax.guards,
    };
    let scores_in = input(softmax, 0)?;
    let probs = output(softmax, 0)?;
    let [b, h, sq, sk] = cx.shape4(scores_in)?;
    if !softmax.domain.is_empty()
        || op.kind != SoftmaxKind::Softmax
        || !(op.axis == -1 || op.axis == 3)
    {
        return None;
    }
    // Y = P V.
    let (pv_index, pv) = cx.only_reader(probs)?;
    let (Some(Op::MatMul(pv_op)), Some(v)) = (&pv.op, input(pv, 1)) else {
        return None;
    };
    if pv_op.trans_b || input(pv, 0) != Some(probs) || v == probs {
        return None;
    }
    let [vb, vh, vs, dv] = cx.shape4(v)?;
    let y = output(pv, 0)?;
    if [vb, vh, vs] != [b, h, sk] || cx.shape4(y)? != [b, h, sq, dv] {
        return None;
    }
    let mut nodes = vec![index, pv_index];
    // scores + mask.
    let mut scores = scores_in;
    let mut mask = None;
    if let Some((add_index, add)) = cx.private_producer(scores) {
        if let Some(Op::Binary(bin)) = &add.op {
            if bin.kind == BinaryKind::Add && bin.legacy_axis.is_none() && add.domain.is_empty() {
                let (x0, x1) = (input(add, 0)?, input(add, 1)?);
                let is_scores = |x: ValueId| {
                    cx.shape(x) == Some(&[b, h, sq, sk][..])
                        && cx.private_producer(x).is_some_and(|(_, n)| {
                            matches!(n.op, Some(Op::MatMul(_)) | Some(Op::Binary(_)))
                        })
                };
                let (chain, m) = if is_scores(x0) { (x0, x1) } else { (x1, x0) };
                if !is_scores(chain) || cx.magnitude(m, 12).is_none() {
                    return None;
                }
                // The mask must cover every key: the Attention op masks out keys past a
                // shorter mask's last axis, where the Add would broadcast it.
                let mr = cx.shape(m)?;
                let target = [b, h, sq, sk];
                if mr.len() > 4
                    || mr.last() != Some(&sk)
                    || mr
                        .iter()
                        .rev()
                        .zip(target.iter().rev())
                        .any(|(&n, &t)| n != t && n != 1)
                {
                    return None;
                }
                nodes.push(add_index);
                (scores, mask) = (chain, Some(m));
            }
        }
    }
    // scores * s.
    let mut scale = 1.0f64;
    if let Some((s_index, x, s)) = cx.scaled(scores) {
        nodes.push(s_index);
        scale *= s;
        scores = x;
    }
    // Q K^T.
    let (qk_index, qk) = cx.private_producer(scores)?;
    let Some(Op::MatMul(qk_op)) = &qk.op else {
        return None;
    };
    nodes.push(qk_index);
    let (mut q, mut k) = (input(qk, 0)?, input(qk, 1)?);
    for operand in [&mut q, &mut k] {
        if let Some((s_index, x, s)) = cx.scaled(*operand) {
            nodes.push(s_index);
            scale *= s;
            *operand = x;
        }
    }
    let [qb, qh, qs, d] = cx.shape4(q)?;
    if [qb, qh, qs] != [b, h, sq] {
        return None;
    }
    let k_view = if qk_op.trans_b {
        if cx.shape4(k)? != [b, h, sk, d] {
            return None;
        }
        View::contiguous([b, h, sk, d])
    } else {
        if cx.shape4(k)? != [b, h, d, sk] {
            return None;
        }
        let kt = View::contiguous([b, h, d, sk]);
        View {
            shape: [b, h, sk, d],
            strides: [kt.strides[0], kt.strides[1], kt.strides[3], kt.strides[2]],
        }
    };
    let (q, q_view, q_nodes) = walk_back(&cx, q, View::contiguous([b, h, sq, d]))?;
    let (k, k_view, k_nodes) = walk_back(&cx, k, k_view)?;
    let (v, v_view, v_nodes) = walk_back(&cx, v, View::contiguous([b, h, sk, dv]))?;
    let (out, y_view, y_nodes) = walk_forward(&cx, y, View::contiguous([b, h, sq, dv]));
    let last = y_nodes.last().copied().unwrap_or(pv_index);
    nodes.extend(
        q_nodes
            .into_iter()
            .chain(k_nodes)
            .chain(v_nodes)
            .chain(y_nodes),
    );
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the scale in float32, as the graph had it"
    )]
    let scale = scale as f32;
    if !scale.is_finite() || scale == 0.0 {
        return None;
    }
    let views = AttentionViews {
        shapes: [q_view.shape, k_view.shape, v_view.shape, y_view.shape],
        strides: [q_view, k_view, v_view, y_view].map(|v| v.outer_strides()),
        out_shape: cx.shape(out)?.to_vec(),
    };
    let node = Node {
        name: format!("{}/attention", softmax.name),
        op_type: "Attention".into(),
        domain: String::new(),
        opset: 23,
        inputs: vec![Some(q), Some(k), Some(v), mask],
        outputs: vec![Some(out)],
        attributes: Vec::new(),
        op: Some(Op::Attention(Attention::fused(scale, views))),
        guards: softmax.guards.clone(),
    };
    // The replacement must compute what the graph's output value holds.
    let (Some(op), Ok(op_cx)) = (&node.op, infer_shapes_cx(graph, &node, false)) else {
        return None;
    };
    let types = op.infer(&op_cx).ok()?;
    let want = graph.value(out);
    (types
        .first()
        .is_some_and(|t| Some(t.dtype) == want.dtype && Some(&t.shape) == want.shape.as_ref()))
    .then_some((nodes, last, node))
}

/// Replaces written-out attention with `Attention` nodes.
pub fn fuse_attention(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    let producer = producers(&graph);
    let mut readers = vec![Vec::new(); graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for v in node.inputs.iter().flatten() {
            if readers[v.index()].last() != Some(&i) {
                readers[v.index()].push(i);
            }
        }
        for (g, _) in &node.guards {
            readers[g.index()].push(i);
        }
    }
    let mut remove = vec![false; graph.nodes.len()];
    let mut replacements = Vec::new();
    for index in 0..graph.nodes.len() {
        let Some((nodes, last, node)) = find(&graph, &producer, &readers, index) else {
            continue;
        };
        if nodes.iter().any(|&i| remove[i]) {
            continue;
        }
        for &i in &nodes {
            remove[i] = true;
        }
        replacements.push((last, node));
    }
    splice(&mut graph, &remove, replacements);
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpDef;
    use crate::passes::testing::ModelBuilder;

    #[test]
    fn views_follow_transposes_and_reshapes() {
        // Q [1, 12, 197, 64] = Reshape(Transpose([197, 12, 64], perm [1, 0, 2])), as ViT has it.
        let q = View::contiguous([1, 12, 197, 64]);
        let before_reshape = q.through_input(&[1, 12, 197, 64], &[12, 197, 64], None);
        assert_eq!(before_reshape, Some(q));
        let heads = q.through_input(&[12, 197, 64], &[197, 12, 64], Some(&[1, 0, 2]));
        assert_eq!(heads.map(|v| v.strides), Some([0, 64, 768, 1]));
        // The output [B, H, S, D] written through Transpose(perm [0, 2, 1, 3]) to [B, S, H, D].
        let y = View::contiguous([2, 4, 8, 16]);
        let merged = y.through_output(&[2, 4, 8, 16], &[2, 8, 4, 16], Some(&[0, 2, 1, 3]));
        assert_eq!(merged.map(|v| v.strides), Some([512, 16, 64, 1]));
    }

    #[test]
    fn a_walk_that_would_carry_across_axes_is_refused() {
        // Eight consecutive elements of a transposed [2, 4] buffer are no strided view of it.
        let flat = View {
            shape: [1, 1, 1, 8],
            strides: [0, 0, 0, 1],
        };
        assert_eq!(flat.through_input(&[4, 2], &[2, 4], Some(&[1, 0])), None);
        // Four of them are: a column of the original.
        let column = View {
            shape: [1, 1, 4, 1],
            strides: [0, 0, 2, 0],
        };
        let strides = column.through_input(&[4, 2], &[2, 4], Some(&[1, 0]));
        assert_eq!(strides.map(|v| v.strides), Some([0, 0, 1, 0]));
    }

    /// Self-attention over `x [2, 8, 16]` split into 2 heads of 8 (Q, K and V all `x`),
    /// written out: `mask` names the
    /// additive mask (or none), `scale_first` puts the scaling before the mask.
    fn written_out(mask: Option<&str>, scale_first: bool) -> Graph {
        let mut b = ModelBuilder::new()
            .input("x", &[2, 8, 16])
            .input("fm", &[2, 1, 1, 8])
            .ints("heads", &[4], &[2, 8, 2, 8])
            .ints("merged", &[3], &[2, 8, 16])
            .floats("scale", &[], &[0.25])
            .floats("bias", &[2, 1, 1, 8], &[0.0; 16])
            .floats("key_bias", &[2, 1, 8, 1], &[0.5; 16])
            .node("Reshape", &["x", "heads"], &["xq"])
            .node("Reshape", &["x", "heads"], &["xk"])
            .node("Reshape", &["x", "heads"], &["xv"])
            .transpose("xq", "q", &[0, 2, 1, 3])
            .transpose("xk", "kt", &[0, 2, 3, 1])
            .transpose("xv", "v", &[0, 2, 1, 3])
            .node("MatMul", &["q", "kt"], &["s0"]);
        let last = match (mask, scale_first) {
            (None, _) => {
                b = b.node("Mul", &["s0", "scale"], &["s2"]);
                "s2"
            }
            (Some(m), true) => {
                b = b
                    .node("Mul", &["s0", "scale"], &["s1"])
                    .node("Add", &["s1", m], &["s2"]);
                "s2"
            }
            (Some(m), false) => {
                b = b
                    .node("Add", &["s0", m], &["s1"])
                    .node("Mul", &["s1", "scale"], &["s2"]);
                "s2"
            }
        };
        b.node_with(
            "Softmax",
            &[last],
            &["p"],
            vec![crate::passes::testing::int_attr("axis", -1)],
        )
        .node("MatMul", &["p", "v"], &["o4"])
        .transpose("o4", "o3", &[0, 2, 1, 3])
        .node("Reshape", &["o3", "merged"], &["y"])
        .output("y")
        .build()
    }

    fn ops(graph: &Graph) -> Vec<&str> {
        graph.nodes.iter().map(|n| n.op_type.as_str()).collect()
    }

    #[test]
    fn written_out_attention_becomes_one_node_reading_its_operands_in_place() {
        for mask in [None, Some("bias")] {
            let after = fuse_attention(written_out(mask, true), &PassCx::default()).expect("runs");
            assert_eq!(ops(&after), ["Attention"], "mask {mask:?}");
            let node = &after.nodes[0];
            let x = after.inputs[0];
            assert_eq!(node.inputs[..3], [Some(x); 3]);
            let Some(Op::Attention(op)) = &node.op else {
                panic!("not an attention")
            };
            let cx = infer_shapes_cx(&after, node, false).expect("operands");
            let types = op.infer(&cx).expect("infers");
            assert_eq!(types[0].shape, [2, 8, 16]);
        }
    }

    #[test]
    fn a_mask_of_unknown_values_scaled_with_the_scores_or_broadcast_over_the_keys_stays_written_out(
    ) {
        for (mask, scale_first) in [("fm", true), ("bias", false), ("key_bias", true)] {
            let before = written_out(Some(mask), scale_first);
            let n = before.nodes.len();
            let after = fuse_attention(before, &PassCx::default()).expect("runs");
            assert_eq!(
                after.nodes.len(),
                n,
                "mask {mask}, scale first {scale_first}"
            );
        }
    }
}
