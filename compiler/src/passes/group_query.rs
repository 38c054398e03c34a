//! ONNX Runtime's `GroupQueryAttention` and `RotaryEmbedding` (`com.microsoft`) expanded into
//! standard ops and one cache update, with the semantics of ORT's CPU kernel.
//!
//! `GroupQueryAttention` over a batch entry `b` that holds `t = seqlens_k[b] + 1` tokens after
//! the step, `q = min(S, t)` of them new and `p = t - q` cached before:
//!
//! - query row `s` is at position `p + s`; with `do_rotary`, query and key rotate by that
//!   position (ONNX `RotaryEmbedding` over the caches, `rotary_embedding_dim` their width);
//! - the present cache (`sinter::KvCache`) holds the past's first `p` rows, the step's rows
//!   from row `p` on, zeros after them; its length is `max(past length,
//!   total_sequence_length)`, which must be known when the model is compiled;
//! - row `s` sees the keys at or before its position (`causal`, the default), the last
//!   `local_window_size` of them with a window, or the whole `t` without `causal`; scores are
//!   scaled, softcapped, then `attention_bias` is added (`sinter::GroupQueryAttention`, on
//!   the blocked attention kernel over the first `t` rows of the present caches, so that the
//!   cost follows `t`, not the caches' length).
//!
//! Inputs that change these semantics and are not computed yet (`position_ids`, `head_sink`,
//! quantized caches, Q/K norms, `query_seqlens`, `smooth_softmax`, a window-sized cache) are
//! refused by name when the op is parsed.

use super::infer_shapes::Expansion;
use super::pattern::{add_constant, int_attr};
use crate::error::{CompileError, Result};
use crate::ir::{DType, Graph, Node, Tensor, ValueId};
use crate::ops::attention::{GroupQueryCore, KvCache};
use crate::ops::contrib::GroupQueryAttrs;
use crate::ops::Op;

/// ONNX's `TensorProto.DataType` of int64, for `Cast`.
const INT64: i64 = 7;

fn shape_of(graph: &Graph, v: ValueId) -> Vec<usize> {
    graph.value(v).shape.clone().unwrap_or_default()
}

fn ints(graph: &mut Graph, node: &Node, what: &str, shape: Vec<usize>, v: &[i64]) -> ValueId {
    add_constant(
        graph,
        format!("{}/{what}", node.name),
        Tensor::from_i64(shape, v),
    )
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `0, 1, .., n - 1` as int64 of `shape` (whose product is `n`).
fn steps(graph: &mut Graph, node: &Node, what: &str, shape: Vec<usize>) -> ValueId {
    let n: usize = shape.iter().product();
    let v: Vec<i64> = (0..n).map(count).collect();
    ints(graph, node, what, shape, &v)
}

/// `GroupQueryAttention`: see the module docs.
pub(super) fn group_query(
    graph: &mut Graph,
    x: &mut Expansion,
    node: &Node,
    a: &GroupQueryAttrs,
) -> Result<()> {
    let op = node.op_type.as_str();
    let get = |i: usize| node.inputs.get(i).copied().flatten();
    let out = |i: usize| node.outputs.get(i).copied().flatten();
    let query = get(0).ok_or_else(|| CompileError::malformed(format!("{op} without query")))?;
    let qs = shape_of(graph, query);
    let [b, s, width] = qs[..] else {
        return Err(CompileError::shape(format!(
            "{op} query must be [batch, sequence, hidden], found {qs:?}"
        )));
    };
    let dtype = graph.value(query).dtype.unwrap_or(DType::F32);
    if dtype != DType::F32 {
        return Err(CompileError::unsupported(format!(
            "{op} on {dtype} (float32 only)"
        )));
    }
    let (n, nk) = (a.num_heads, a.kv_num_heads);
    let packed = get(1).is_none();
    if packed != get(2).is_none() {
        return Err(CompileError::malformed(format!(
            "{op}: key and value must be given together (or both omitted, for packed QKV)"
        )));
    }
    let heads = if packed { n + 2 * nk } else { n };
    if width % heads != 0 {
        return Err(CompileError::shape(format!(
            "{op}: query width {width} is not {heads} heads"
        )));
    }
    let d = width / heads;
    let (mut q, mut k, v) = if packed {
        (
            x.slice(graph, "q", query, 2, [0, n * d])?,
            x.slice(graph, "k", query, 2, [n * d, (n + nk) * d])?,
            x.slice(graph, "v", query, 2, [(n + nk) * d, (n + 2 * nk) * d])?,
        )
    } else {
        let (k, v) = (get(1).unwrap_or(query), get(2).unwrap_or(query));
        for (what, value) in [("key", k), ("value", v)] {
            let vs = shape_of(graph, value);
            if vs != [b, s, nk * d] {
                return Err(CompileError::shape(format!(
                    "{op}: {what} {vs:?} is not [{b}, {s}, {}] ({nk} heads of {d})",
                    nk * d
                )));
            }
        }
        (query, k, v)
    };
    let past = match (get(3), get(4)) {
        (Some(pk), Some(pv)) => {
            let (ks, vs) = (shape_of(graph, pk), shape_of(graph, pv));
            if ks.len() != 4 || ks != vs || ks[..2] != [b, nk] || ks[3] != d {
                return Err(CompileError::shape(format!(
                    "{op}: past_key {ks:?} and past_value {vs:?} are not [{b}, {nk}, _, {d}]"
                )));
            }
            Some((pk, pv, ks[2]))
        }
        (None, None) => None,
        _ => {
            return Err(CompileError::malformed(format!(
                "{op}: past_key and past_value must be given together"
            )))
        }
    };
    let lens = get(5).ok_or_else(|| CompileError::malformed(format!("{op} without seqlens_k")))?;
    let total = get(6)
        .ok_or_else(|| CompileError::malformed(format!("{op} without total_sequence_length")))?;
    let total = graph
        .value(total)
        .constant
        .as_ref()
        .and_then(Tensor::to_i64s)
        .ok_or_else(|| {
            CompileError::unsupported(format!(
                "{op} with a total_sequence_length known only at run time (it sets the present \
                 cache's length): bind the dims it is computed from"
            ))
        })?;
    let total = match total[..] {
        [t] if t > 0 => usize::try_from(t).unwrap_or(usize::MAX),
        _ => {
            return Err(CompileError::shape(format!(
                "{op}: total_sequence_length {total:?} is not one positive length"
            )))
        }
    };
    let cached = past.map_or(0, |p| p.2);
    let present = cached.max(total);

    // Per batch entry: t = seqlens_k + 1 tokens after the step, p = t - min(S, t) before it.
    let lengths = x.step(
        graph,
        "lengths",
        "Cast",
        13,
        vec![lens],
        vec![int_attr("to", INT64)],
    )?;
    let one = ints(graph, node, "one", vec![], &[1]);
    let after = x.step(graph, "after", "Add", 14, vec![lengths, one], vec![])?;
    let chunk = ints(graph, node, "chunk", vec![], &[count(s)]);
    let fresh = x.step(graph, "fresh", "Min", 13, vec![after, chunk], vec![])?;
    let before = x.step(graph, "before", "Sub", 14, vec![after, fresh], vec![])?;

    if a.do_rotary {
        let (Some(cos), Some(sin)) = (get(7), get(8)) else {
            return Err(CompileError::malformed(format!(
                "{op} with do_rotary needs cos_cache and sin_cache"
            )));
        };
        let (cs, ss) = (shape_of(graph, cos), shape_of(graph, sin));
        let [rows, half] = cs[..] else {
            return Err(CompileError::shape(format!(
                "{op}: cos_cache {cs:?} is not [positions, rotary dim / 2]"
            )));
        };
        if ss != cs || half == 0 || 2 * half > d {
            return Err(CompileError::shape(format!(
                "{op}: cos_cache {cs:?} and sin_cache {ss:?} must match and rotate at most the \
                 head size {d}"
            )));
        }
        if rows < present {
            return Err(CompileError::shape(format!(
                "{op}: the caches hold {rows} positions, the present cache reaches {present}"
            )));
        }
        let column = x.dims(graph, "before_column", &[b, 1])?;
        let start = x.step(
            graph,
            "first_position",
            "Reshape",
            14,
            vec![before, column],
            vec![],
        )?;
        let offsets = steps(graph, node, "row_offsets", vec![1, s]);
        let positions = x.step(graph, "positions", "Add", 14, vec![start, offsets], vec![])?;
        let mut rotate = |graph: &mut Graph, what: &str, value: ValueId, heads: usize| {
            x.step(
                graph,
                what,
                "RotaryEmbedding",
                23,
                vec![value, cos, sin, positions],
                vec![
                    int_attr("num_heads", count(heads)),
                    int_attr("interleaved", i64::from(a.rotary_interleaved)),
                    int_attr("rotary_embedding_dim", count(2 * half)),
                ],
            )
        };
        q = rotate(graph, "q_rotated", q, n)?;
        k = rotate(graph, "k_rotated", k, nk)?;
    }

    // The present caches.
    let mut cache = |graph: &mut Graph, what: &str, old: Option<ValueId>, new, slot: usize| {
        let present_value = out(slot).unwrap_or_else(|| x.value(graph, what));
        x.push_op(
            what,
            "KvCache",
            vec![old, Some(new), Some(lens)],
            vec![Some(present_value)],
            Op::KvCache(KvCache::new(nk, present)),
        );
        present_value
    };
    let present_k = cache(graph, "present_key", past.map(|p| p.0), k, 1);
    let present_v = cache(graph, "present_value", past.map(|p| p.1), v, 2);

    // The attention over the first seqlens_k + 1 rows of the present caches.
    if let Some(bias) = get(10) {
        let bs = shape_of(graph, bias);
        let fits = matches!(bs[..], [bb, bn, bq, bk]
            if (bb == 1 || bb == b) && (bn == 1 || bn == n) && bq == s && bk == present);
        if !fits || graph.value(bias).dtype != Some(DType::F32) {
            return Err(CompileError::unsupported(format!(
                "{op} with attention_bias {bs:?} (float32 [{b} or 1, {n} or 1, {s}, {present}] \
                 only: over every row of the present cache)"
            )));
        }
    }
    let core = GroupQueryCore::new(
        [n, nk],
        a.scale,
        a.softcap,
        a.local_window.unwrap_or(0),
        a.causal,
    );
    x.push_op(
        "attention",
        "GroupQueryAttention",
        vec![
            Some(q),
            Some(present_k),
            Some(present_v),
            Some(lens),
            get(10),
        ],
        vec![out(0)],
        Op::GroupQueryCore(core),
    );
    Ok(())
}

/// `RotaryEmbedding` (com.microsoft): inputs `input, position_ids, cos_cache, sin_cache`; a
/// one-element `position_ids` is the first position, the rest following it. ORT's kernels
/// ignore the `scale` attribute, and so does this.
pub(super) fn rotary(
    graph: &mut Graph,
    x: &mut Expansion,
    node: &Node,
    interleaved: bool,
    num_heads: usize,
    rotary_dim: usize,
) -> Result<()> {
    let op = node.op_type.as_str();
    let input = |i: usize, what: &str| {
        node.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| CompileError::malformed(format!("{op} without its {what} input")))
    };
    let (data, ids) = (input(0, "input")?, input(1, "position_ids")?);
    let (cos, sin) = (input(2, "cos_cache")?, input(3, "sin_cache")?);
    let xs = shape_of(graph, data);
    let (b, s) = match xs[..] {
        [b, s, _] => (b, s),
        [b, _, s, _] => (b, s),
        _ => {
            return Err(CompileError::shape(format!(
                "{op} input must be [B, S, hidden] or [B, heads, S, head], found {xs:?}"
            )))
        }
    };
    // ORT's 3-D form without num_heads: heads as wide as the rotation (the caches' rows).
    let mut num_heads = num_heads;
    if let (&[_, _, hidden], 0) = (&xs[..], num_heads) {
        let half = shape_of(graph, cos).last().copied().unwrap_or(0);
        let head = if rotary_dim > 0 { rotary_dim } else { 2 * half };
        if head == 0 || hidden % head != 0 {
            return Err(CompileError::shape(format!(
                "{op}: without num_heads, heads of {head} (the rotation) must divide {hidden}"
            )));
        }
        num_heads = hidden / head;
    }
    let is = shape_of(graph, ids);
    let positions = if is.iter().product::<usize>() == 1 && is.len() <= 1 {
        // The first position: b rows of first + 0..S.
        let column = x.dims(graph, "first_shape", &[1, 1])?;
        let first = x.step(graph, "first", "Reshape", 14, vec![ids, column], vec![])?;
        let offsets = steps(graph, node, "offsets", vec![1, s]);
        let row = x.step(graph, "row", "Add", 14, vec![first, offsets], vec![])?;
        let full = x.dims(graph, "positions_shape", &[b, s])?;
        x.step(graph, "positions", "Expand", 13, vec![row, full], vec![])?
    } else if is == [b, s] {
        ids
    } else {
        return Err(CompileError::shape(format!(
            "{op}: position_ids {is:?} is neither [1] nor [{b}, {s}]"
        )));
    };
    x.push(
        "rotary",
        ("", "RotaryEmbedding", 23),
        vec![Some(data), Some(cos), Some(sin), Some(positions)],
        vec![node.outputs.first().copied().flatten()],
        vec![
            int_attr("interleaved", i64::from(interleaved)),
            int_attr("num_heads", count(num_heads)),
            int_attr("rotary_embedding_dim", count(rotary_dim)),
        ],
    )
}
