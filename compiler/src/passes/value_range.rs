//! Value ranges of shape arithmetic: for the small integer (and boolean) tensors a model
//! computes at run time from extents only known then (`Shape` of a value with a bounded dim,
//! then `Gather`, `Cast`, `Concat`, `Add`, `Equal`, `Where`, ...), the smallest and largest
//! value of each element, and which bounded dim's size it is when it is one.
//!
//! Exporters build attention masks, position ids and reshape targets this way, and the ops
//! whose output shape such a tensor decides (`Range`, `Expand`, a `Reshape` target) need a
//! capacity at compile time: the range's upper end gives it; an element whose range is one
//! value is a constant after all (the pass folds a tensor of such elements); and a `Reshape`
//! target's `-1` is a fixed extent when the bounded dims it divides out are the input's. Interval
//! arithmetic, saturating; anything not understood is `None` (untracked), which leaves those
//! ops unsupported as before.

use crate::ir::{Bounds, DType, Graph};
use crate::ops::elementwise::{BinaryKind, VariadicKind};
use crate::ops::movement::IndexKind;
use crate::ops::{Op, OpCx, Operand, TypeShape};

/// Tensors with more elements than this are not tracked.
const MAX_TRACKED: usize = 64;

/// Whether values of this type are tracked.
fn tracked(dtype: DType) -> bool {
    matches!(dtype, DType::I64 | DType::I32 | DType::Bool)
}

/// The bounds of a tracked operand: its constant values, or its tracked range.
fn of(o: &Operand<'_>) -> Option<Vec<Bounds>> {
    if !tracked(o.dtype) {
        return None;
    }
    match o.constant {
        Some(t) if t.len() <= MAX_TRACKED => {
            let values = if o.dtype == DType::Bool {
                t.bytes.iter().map(|&b| i64::from(b != 0)).collect()
            } else {
                t.to_i64s()?
            };
            Some(values.into_iter().map(Bounds::exact).collect())
        }
        Some(_) => None,
        None => o.range.map(<[Bounds]>::to_vec),
    }
}

/// The bounds of output 0 of a node whose inputs `cx` describes, when it is a small tracked
/// tensor the rules below understand.
pub(super) fn infer(op: &Op, cx: &OpCx<'_>, out: &TypeShape) -> Option<Vec<Bounds>> {
    if !tracked(out.dtype) || out.len() > MAX_TRACKED || !out.dynamic.is_empty() {
        return None;
    }
    let input = |i: usize| cx.opt_input(i).and_then(|o| of(&o));
    let ranges = match op {
        Op::ShapeOf(shape) => {
            let x = cx.input(0).ok()?;
            let extent = |a: usize| -> Bounds {
                let cap = i64::try_from(x.shape[a]).unwrap_or(i64::MAX);
                if x.dynamic.get(a).copied().unwrap_or(false) {
                    Bounds {
                        lo: 0,
                        hi: cap,
                        sym: x.syms.get(a).copied().flatten(),
                    }
                } else {
                    Bounds::exact(cap)
                }
            };
            if shape.size {
                let (mut lo, mut hi) = (1i64, 1i64);
                for a in 0..x.shape.len() {
                    let b = extent(a);
                    (lo, hi) = (lo.saturating_mul(b.lo), hi.saturating_mul(b.hi));
                }
                vec![Bounds::between(lo, hi)]
            } else {
                let rank = i64::try_from(x.shape.len()).ok()?;
                let fix = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank);
                let (s, e) = (fix(shape.start), fix(shape.end.unwrap_or(rank)));
                (usize::try_from(s).ok()?..usize::try_from(e).ok()?)
                    .map(extent)
                    .collect()
            }
        }
        Op::Cast(_) => {
            let x = input(0)?;
            if out.dtype == DType::Bool {
                x.iter()
                    .map(|b| match (b.lo, b.hi) {
                        (0, 0) => Bounds::exact(0),
                        (l, h) if l > 0 || h < 0 => Bounds::exact(1),
                        _ => Bounds::between(0, 1),
                    })
                    .collect()
            } else {
                x
            }
        }
        Op::Reshape(_) | Op::Squeeze(_) => input(0)?,
        Op::Indexing(ix) if ix.kind == IndexKind::Gather => {
            let data = input(0)?;
            let x = cx.input(0).ok()?;
            let indices = cx.input(1).ok()?.constant?.to_i64s()?;
            if x.shape.len() != 1 {
                return None;
            }
            let n = i64::try_from(data.len()).ok()?;
            indices
                .iter()
                .map(|&i| {
                    let i = if i < 0 { i + n } else { i };
                    usize::try_from(i).ok().and_then(|i| data.get(i).copied())
                })
                .collect::<Option<Vec<_>>>()?
        }
        Op::Concat(_) => {
            // Only 1-D pieces (what shape vectors are).
            let mut all = Vec::new();
            for (i, o) in cx.inputs.iter().enumerate() {
                if (*o)?.shape.len() != 1 {
                    return None;
                }
                all.extend(input(i)?);
            }
            all
        }
        Op::Slice(_) => {
            // A 1-D shape vector sliced by constant starts and ends with positive steps (as
            // `x.shape[:-1]` exports).
            let data = input(0)?;
            let constant = |i: usize| -> Option<Option<i64>> {
                match cx.opt_input(i) {
                    None => Some(None),
                    Some(o) => Some(Some(*o.constant?.to_i64s()?.first()?)),
                }
            };
            let (start, end) = (constant(1)??, constant(2)??);
            let (axis, step) = (constant(3)?.unwrap_or(0), constant(4)?.unwrap_or(1));
            if cx.input(0).ok()?.shape.len() != 1 || !(axis == 0 || axis == -1) || step <= 0 {
                return None;
            }
            let n = i64::try_from(data.len()).ok()?;
            let fix = |v: i64| (if v < 0 { v.saturating_add(n) } else { v }).clamp(0, n);
            let (mut k, end) = (fix(start), fix(end));
            let mut picked = Vec::new();
            while k < end {
                picked.push(*data.get(usize::try_from(k).ok()?)?);
                k = k.saturating_add(step);
            }
            picked
        }
        Op::Binary(b) => zip(&input(0)?, &input(1)?, |x, y| binary(b.kind, x, y))?,
        Op::Variadic(v) if cx.inputs.len() == 2 => {
            let (a, c) = (input(0)?, input(1)?);
            match v.kind {
                VariadicKind::Max => zip(&a, &c, |x, y| {
                    Some(Bounds::between(x.lo.max(y.lo), x.hi.max(y.hi)))
                })?,
                VariadicKind::Min => zip(&a, &c, |x, y| {
                    Some(Bounds::between(x.lo.min(y.lo), x.hi.min(y.hi)))
                })?,
                _ => return None,
            }
        }
        Op::Where(_) => {
            let (c, a, b) = (input(0)?, input(1)?, input(2)?);
            let ab = zip(&a, &b, |x, y| Some((x, y)))?;
            let n = c.len().max(ab.len());
            if !(c.len() == n || c.len() == 1) || !(ab.len() == n || ab.len() == 1) {
                return None;
            }
            (0..n)
                .map(|i| {
                    let (cond, (x, y)) = (c[i.min(c.len() - 1)], ab[i.min(ab.len() - 1)]);
                    match (cond.lo, cond.hi) {
                        (1, 1) => x,
                        (0, 0) => y,
                        _ => Bounds::between(x.lo.min(y.lo), x.hi.max(y.hi)),
                    }
                })
                .collect()
        }
        _ => return None,
    };
    (ranges.len() == out.len()).then_some(ranges)
}

/// One element of a binary op on bounds.
fn binary(kind: BinaryKind, x: Bounds, y: Bounds) -> Option<Bounds> {
    let corners = |g: fn(i64, i64) -> i64| {
        let v = [g(x.lo, y.lo), g(x.lo, y.hi), g(x.hi, y.lo), g(x.hi, y.hi)];
        Bounds::between(
            v.iter().copied().min().unwrap_or(0),
            v.iter().copied().max().unwrap_or(0),
        )
    };
    // A comparison is decided when the intervals do not overlap (or are one equal value).
    let compare = |yes: bool, no: bool| match (yes, no) {
        (true, _) => Bounds::exact(1),
        (_, true) => Bounds::exact(0),
        _ => Bounds::between(0, 1),
    };
    Some(match kind {
        BinaryKind::Add => Bounds::between(x.lo.saturating_add(y.lo), x.hi.saturating_add(y.hi)),
        BinaryKind::Sub => Bounds::between(x.lo.saturating_sub(y.hi), x.hi.saturating_sub(y.lo)),
        BinaryKind::Mul => {
            // Times a constant 1 keeps what the value is.
            if y.is_exact() && y.lo == 1 {
                x
            } else if x.is_exact() && x.lo == 1 {
                y
            } else {
                corners(i64::saturating_mul)
            }
        }
        // Division truncating toward zero, by a divisor that cannot be 0.
        BinaryKind::Div if y.lo > 0 || y.hi < 0 => corners(|p, q| p / q),
        BinaryKind::Equal => compare(
            x.is_exact() && y.is_exact() && x.lo == y.lo,
            x.hi < y.lo || y.hi < x.lo,
        ),
        BinaryKind::Less => compare(x.hi < y.lo, x.lo >= y.hi),
        BinaryKind::LessOrEqual => compare(x.hi <= y.lo, x.lo > y.hi),
        BinaryKind::Greater => compare(x.lo > y.hi, x.hi <= y.lo),
        BinaryKind::GreaterOrEqual => compare(x.lo >= y.hi, x.hi < y.lo),
        BinaryKind::And => Bounds::between(x.lo.min(y.lo), x.hi.min(y.hi)),
        BinaryKind::Or => Bounds::between(x.lo.max(y.lo), x.hi.max(y.hi)),
        _ => return None,
    })
}

/// `f` elementwise over two lists of equal length or one of length 1 (a broadcast scalar).
fn zip<T: Copy, U>(a: &[T], b: &[T], f: impl Fn(T, T) -> Option<U>) -> Option<Vec<U>> {
    let n = a.len().max(b.len());
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
        return None;
    }
    (0..n)
        .map(|i| f(a[i.min(a.len() - 1)], b[i.min(b.len() - 1)]))
        .collect()
}

/// The constant a tensor of exact bounds is, as the bytes of `dtype`.
pub(super) fn as_constant(bounds: &[Bounds], t: &TypeShape) -> Option<crate::ir::Tensor> {
    if !bounds.iter().all(Bounds::is_exact) {
        return None;
    }
    let values: Vec<i64> = bounds.iter().map(|b| b.lo).collect();
    Some(match t.dtype {
        DType::I64 => crate::ir::Tensor::from_i64(t.shape.clone(), &values),
        DType::I32 => crate::ir::Tensor {
            dtype: DType::I32,
            shape: t.shape.clone(),
            bytes: values
                .iter()
                .flat_map(|&v| i32::try_from(v).unwrap_or(0).to_le_bytes())
                .collect(),
        },
        DType::Bool => crate::ir::Tensor {
            dtype: DType::Bool,
            shape: t.shape.clone(),
            bytes: values.iter().map(|&v| u8::from(v != 0)).collect(),
        },
        _ => return None,
    })
}

/// Ops whose dynamic output axes do not simply carry their inputs' run-time sizes (a slice
/// of one, a count of selected elements, ...): [`axis_syms`] gives them none.
fn reshapes_extents(op: &Op) -> bool {
    matches!(
        op,
        Op::Slice(_)
            | Op::Pad(_)
            | Op::Select(_)
            | Op::Unique(_)
            | Op::TopK(_)
            | Op::Nms(_)
            | Op::Resize(_)
            | Op::Generate(_)
            | Op::Reshape(_)
            | Op::Repeat(_)
            | Op::Concat(_)
            | Op::Conv(_)
            | Op::Pool(_)
    )
}

/// Which bounded dim each dynamic axis of a node's output has: when the node's dynamic inputs
/// all have one bounded dim (known on every dynamic axis), an output axis whose capacity
/// reaches that dim's bound has it (an axis that cannot hold that many is something else). `Reshape`, `Range` and `Expand` take theirs from the bounds of the tensor that
/// decides their shape. A wrong guess cannot give wrong results: the extents the compiler
/// fixes from these are checked when the model runs.
pub(super) fn axis_syms(
    graph: &Graph,
    op: &Op,
    cx: &OpCx<'_>,
    out: &TypeShape,
) -> Vec<Option<u16>> {
    if !out.dynamic.iter().any(|&d| d) {
        return Vec::new();
    }
    let bound = |s: u16| graph.bounds.values().nth(usize::from(s)).map(|b| b.max);
    let from_target = |i: usize| -> Option<Vec<Option<u16>>> {
        let target = cx.opt_input(i)?.range?;
        let lead = out.shape.len().checked_sub(target.len())?;
        Some(
            (0..out.shape.len())
                .map(|a| {
                    let sym = a.checked_sub(lead).and_then(|t| target[t].sym)?;
                    (out.dynamic[a] && bound(sym) == Some(out.shape[a])).then_some(sym)
                })
                .collect(),
        )
    };
    match op {
        Op::Reshape(_) | Op::Repeat(_) => return from_target(1).unwrap_or_default(),
        Op::Generate(g) if g.value.is_some() => {
            // ConstantOfShape: the extents its shape operand holds.
            return from_target(0).unwrap_or_default();
        }
        Op::Generate(_) => {
            // Range(0, n, 1) of a bounded dim's size n.
            let starts_at_zero = cx
                .opt_input(0)
                .and_then(|o| o.constant?.to_i64s())
                .is_some_and(|v| v == [0]);
            let unit = cx
                .opt_input(2)
                .and_then(|o| o.constant?.to_i64s())
                .is_some_and(|v| v == [1]);
            let sym = cx.opt_input(1).and_then(|o| o.range?.first()?.sym);
            return match sym {
                Some(s) if starts_at_zero && unit && bound(s) == out.shape.first().copied() => {
                    vec![Some(s)]
                }
                _ => Vec::new(),
            };
        }
        Op::Slice(_) => {
            // `x[0:n]` along an axis, with n a bounded dim's size (no larger than the axis).
            let zeros = |i: usize| {
                cx.opt_input(i)
                    .and_then(|o| o.constant?.to_i64s())
                    .map(|v| v.iter().all(|&x| x == 0))
            };
            let ones = cx.opt_input(4).map_or(Some(true), |o| {
                Some(o.constant?.to_i64s()?.iter().all(|&x| x == 1))
            });
            let (Some(true), Some(true), Some(ends), Ok(x)) = (
                zeros(1),
                ones,
                cx.opt_input(2).and_then(|o| o.range),
                cx.input(0),
            ) else {
                return Vec::new();
            };
            let rank = i64::try_from(x.shape.len()).unwrap_or(0);
            let axes: Vec<i64> = match cx.opt_input(3) {
                Some(o) => match o.constant.and_then(crate::ir::Tensor::to_i64s) {
                    Some(v) => v,
                    None => return Vec::new(),
                },
                None => (0..i64::try_from(ends.len()).unwrap_or(0)).collect(),
            };
            let mut syms = vec![None; out.shape.len()];
            for (&axis, end) in axes.iter().zip(ends) {
                let axis = if axis < 0 { axis + rank } else { axis };
                let Ok(a) = usize::try_from(axis) else {
                    continue;
                };
                if let (Some(sym), Some(&extent)) = (end.sym, x.shape.get(a)) {
                    if out.dynamic.get(a) == Some(&true) && bound(sym).is_some_and(|b| b <= extent)
                    {
                        syms[a] = Some(sym);
                    }
                }
            }
            return syms;
        }
        Op::Concat(c) => {
            // Off the axis every input has the output's extent (and its bounded dim); along it
            // the extents add up, which no one bounded dim is.
            let Ok(axis) = crate::ops::normalize_axis(c.axis, out.shape.len(), "axis") else {
                return Vec::new();
            };
            let sources: Vec<Vec<(usize, usize)>> = (0..out.shape.len())
                .map(|a| {
                    if a == axis {
                        Vec::new()
                    } else {
                        (0..cx.inputs.len()).map(|i| (i, a)).collect()
                    }
                })
                .collect();
            return syms_from(graph, cx, out, &sources);
        }
        _ if reshapes_extents(op) => return Vec::new(),
        _ => {}
    }
    // Ops whose output axes each come from known input axes: each dynamic output axis has
    // the bounded dim of those axes, when every dynamic one of them names the same.
    if let Some(sources) = axis_sources(op, cx, out) {
        return syms_from(graph, cx, out, &sources);
    }
    let mut only = None;
    for o in cx.inputs.iter().flatten() {
        for (a, &d) in o.dynamic.iter().enumerate() {
            if !d {
                continue;
            }
            match (o.syms.get(a).copied().flatten(), only) {
                (None, _) => return Vec::new(),
                (Some(s), None) => only = Some(s),
                (Some(s), Some(t)) if s != t => return Vec::new(),
                _ => {}
            }
        }
    }
    let Some(s) = only else { return Vec::new() };
    out.shape
        .iter()
        .zip(&out.dynamic)
        .map(|(&e, &d)| (d && bound(s).is_some_and(|b| e >= b)).then_some(s))
        .collect()
}

/// Per output axis of `out`, the bounded dim of the `(input, axis)` pairs it comes from
/// (`sources`), when every dynamic one of them names the same and the axis is dynamic.
fn syms_from(
    graph: &Graph,
    cx: &OpCx<'_>,
    out: &TypeShape,
    sources: &[Vec<(usize, usize)>],
) -> Vec<Option<u16>> {
    let bound = |s: u16| graph.bounds.values().nth(usize::from(s)).map(|b| b.max);
    sources
        .iter()
        .enumerate()
        .map(|(a, from)| {
            if !out.dynamic.get(a).copied().unwrap_or(false) {
                return None;
            }
            let mut sym = None;
            for &(i, ia) in from {
                let o = cx.opt_input(i)?;
                if !o.dynamic.get(ia).copied().unwrap_or(false) {
                    continue;
                }
                match (o.syms.get(ia).copied().flatten(), sym) {
                    (None, _) => return None,
                    (Some(s), None) => sym = Some(s),
                    (Some(s), Some(t)) if s != t => return None,
                    _ => {}
                }
            }
            sym.filter(|&s| bound(s).is_some_and(|b| out.shape[a] >= b))
        })
        .collect()
}

/// For an op whose output axes each come from known axes of its inputs (elementwise ops,
/// broadcasting from the right; reductions' kept axes; a transpose's permuted ones): per
/// output axis, the `(input, axis)` pairs it comes from. `None` for other ops.
fn axis_sources(op: &Op, cx: &OpCx<'_>, out: &TypeShape) -> Option<Vec<Vec<(usize, usize)>>> {
    let rank = out.shape.len();
    let x = cx.opt_input(0)?;
    match op {
        Op::Binary(_)
        | Op::Unary(_)
        | Op::Variadic(_)
        | Op::Where(_)
        | Op::Clip(_)
        | Op::Cast(_)
        | Op::Softmax(_)
        | Op::LayerNorm(_) => Some(
            (0..rank)
                .map(|a| {
                    cx.inputs
                        .iter()
                        .enumerate()
                        .filter_map(|(i, o)| {
                            let lead = rank.checked_sub(o.as_ref()?.shape.len())?;
                            Some((i, a.checked_sub(lead)?))
                        })
                        .collect()
                })
                .collect(),
        ),
        Op::MatMul(_) => {
            // Batch axes broadcast from the right; then A's rows and B's columns.
            let b = cx.opt_input(1)?;
            let (ra, rb) = (x.shape.len(), b.shape.len());
            if ra < 2 || rb < 2 || rank < 2 {
                return None;
            }
            let mut from: Vec<Vec<(usize, usize)>> = (0..rank - 2)
                .map(|a| {
                    [(0, ra), (1, rb)]
                        .into_iter()
                        .filter_map(|(i, r)| Some((i, (a + r).checked_sub(rank)?)))
                        .collect()
                })
                .collect();
            from.push(vec![(0, ra - 2)]);
            from.push(vec![(1, rb - 1)]);
            Some(from)
        }
        Op::Transpose(t) => {
            let perm = t.perm(x.shape.len()).ok()?;
            Some(perm.iter().map(|&p| vec![(0, p)]).collect())
        }
        Op::Reduce(r) => {
            let kept = r.kept_axes(cx).ok()?;
            Some(kept.into_iter().map(|a| vec![(0, a)]).collect())
        }
        Op::Indexing(g) if g.kind == IndexKind::Gather => {
            // data[..axis], then the indices' axes, then data[axis + 1..].
            let axis = crate::ops::normalize_axis(g.axis, x.shape.len(), "axis").ok()?;
            let indices = cx.opt_input(1)?.shape.len();
            let mut from: Vec<Vec<(usize, usize)>> = (0..axis).map(|a| vec![(0, a)]).collect();
            from.extend((0..indices).map(|a| vec![(1, a)]));
            from.extend((axis + 1..x.shape.len()).map(|a| vec![(0, a)]));
            (from.len() == rank).then_some(from)
        }
        Op::Squeeze(_) => {
            // Only size-1 axes come and go: the dynamic axes keep their order.
            let inputs = (0..x.shape.len()).filter(|&a| x.dynamic.get(a).copied().unwrap_or(false));
            let outputs = (0..rank).filter(|&a| out.dynamic.get(a).copied().unwrap_or(false));
            let mut from = vec![Vec::new(); rank];
            let (mut ins, mut outs) = (inputs.collect::<Vec<_>>(), outputs.collect::<Vec<_>>());
            if ins.len() != outs.len() {
                return None;
            }
            for (i, o) in ins.drain(..).zip(outs.drain(..)) {
                from[o].push((0, i));
            }
            Some(from)
        }
        _ => None,
    }
}

/// Tightens what a bounded dim's size cannot exceed: an element that is that size holds at
/// most the bound, and a `Slice` `x[0:n]` of a longer axis (a position table sliced to the
/// sequence length) needs only the bound's room.
pub(super) fn clamp_to_bounds(
    graph: &Graph,
    op: &Op,
    types: &mut [TypeShape],
    syms: &[Vec<Option<u16>>],
    range: Option<&mut [Bounds]>,
) {
    let bound = |s: u16| {
        graph
            .bounds
            .values()
            .nth(usize::from(s))
            .and_then(|b| i64::try_from(b.max).ok())
    };
    for b in range.into_iter().flatten() {
        if let Some(max) = b.sym.and_then(bound) {
            b.hi = b.hi.min(max);
        }
    }
    if matches!(op, Op::Slice(_)) {
        for (t, syms) in types.iter_mut().zip(syms) {
            for (extent, sym) in t.shape.iter_mut().zip(syms) {
                if let Some(max) = sym.and_then(bound).and_then(|m| usize::try_from(m).ok()) {
                    *extent = (*extent).min(max);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_decide_when_intervals_do_not_overlap() {
        let (seq, one) = (Bounds::between(0, 64), Bounds::exact(1));
        let eq = binary(BinaryKind::Equal, Bounds::exact(-1), Bounds::exact(-1));
        assert_eq!(eq, Some(Bounds::exact(1)));
        let eq = binary(BinaryKind::Equal, seq, Bounds::exact(-1));
        assert_eq!(eq, Some(Bounds::exact(0)));
        let ge = binary(BinaryKind::GreaterOrEqual, seq, one);
        assert_eq!(ge, Some(Bounds::between(0, 1)));
        assert_eq!(
            binary(BinaryKind::Mul, seq, one).map(|b| (b.lo, b.hi)),
            Some((0, 64))
        );
    }

    #[test]
    fn scalars_broadcast_and_mismatched_lengths_are_untracked() {
        let add = |x: i64, y: i64| Some(x + y);
        assert_eq!(zip(&[1, 3], &[10], add), Some(vec![11, 13]));
        assert_eq!(zip(&[1, 3], &[0; 3], add), None);
    }
}
