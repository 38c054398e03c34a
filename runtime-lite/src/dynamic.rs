//! Values whose shapes are only known at run time: the outputs of `NonZero`, `Compress`,
//! `Unique`, `NonMaxSuppression`, a `TopK` whose `k` is an input, and a `Reshape` or `Slice`
//! whose shape operands are inputs.
//!
//! The compiler gives each such value a static *capacity* (the most elements it can have,
//! from the shapes and attributes of the graph) and plans that much memory for it. At run
//! time the kernel here writes the value packed in its actual, row-major shape at the start
//! of that memory and returns the shape, which the generated code keeps beside the arena and
//! hands out with the output as a [`Shaped`].

use core::cmp::Ordering;

use crate::shape::IndexValue;

/// An output whose shape is only known at run time: its elements in row-major order and its
/// shape (`R` axes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shaped<'a, T, const R: usize> {
    data: &'a [T],
    shape: [usize; R],
}

impl<'a, T, const R: usize> Shaped<'a, T, R> {
    /// The first `shape.iter().product()` elements of `storage`, with `shape`.
    ///
    /// Panics if `storage` is shorter (generated code passes the value's planned capacity,
    /// and its kernels never produce more elements than that).
    pub fn new(storage: &'a [T], shape: [usize; R]) -> Self {
        let len = shape.iter().product::<usize>();
        Self {
            data: &storage[..len],
            shape,
        }
    }

    /// The elements, row-major.
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// The shape.
    pub fn shape(&self) -> [usize; R] {
        self.shape
    }
}

impl<'a, const R: usize> Shaped<'a, bool, R> {
    /// Stored booleans (bytes 0 or 1) with `shape`, as `bool`s.
    ///
    /// Panics if a byte is neither 0 nor 1 (see [`crate::elem::bytes_as_bools`]).
    pub fn from_bytes(storage: &'a [u8], shape: [usize; R]) -> Self {
        let bytes = Shaped::new(storage, shape).data;
        assert!(
            bytes.iter().all(|&b| b <= 1),
            "boolean output holds a byte other than 0 or 1"
        );
        // SAFETY: every byte is 0 or 1 (checked), a valid `bool` of the same size and
        // alignment; the result borrows `storage` for the same lifetime and length.
        let data =
            unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<bool>(), bytes.len()) };
        Self { data, shape }
    }
}

impl<T, const R: usize> core::ops::Deref for Shaped<'_, T, R> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.data
    }
}

/// `NonZero`: the coordinates of the elements of `x` (of `shape`) for which `nonzero` holds,
/// written to `out` as `[rank, count]` (the `i`-th coordinates of every hit in one row), in
/// row-major order of the hits. Returns `count`. `out` holds at least `rank * x.len()`.
pub fn nonzero<T: Copy>(
    x: &[T],
    shape: &[usize],
    out: &mut [i64],
    nonzero: impl Fn(T) -> bool,
) -> usize {
    let count = x.iter().filter(|&&v| nonzero(v)).count();
    let rank = shape.len();
    let mut k = 0;
    for (i, &v) in x.iter().enumerate() {
        if !nonzero(v) {
            continue;
        }
        let mut rest = i;
        for a in (0..rank).rev() {
            let d = shape[a].max(1);
            out[a * count + k] = (rest % d) as i64;
            rest /= d;
        }
        k += 1;
    }
    count
}

/// How many of the first `n` entries of a condition are true (non-zero).
pub fn count_true(cond: &[u8], n: usize) -> usize {
    cond.iter().take(n).filter(|&&c| c != 0).count()
}

/// A run-time `k` (or other count read from a tensor) as an index at most `limit`.
///
/// # Errors
/// `what` when `k` is negative or above `limit`.
pub fn count_at_most<I: IndexValue>(
    k: I,
    limit: usize,
    what: &'static str,
) -> Result<usize, &'static str> {
    usize::try_from(k.to_i64())
        .ok()
        .filter(|&k| k <= limit)
        .ok_or(what)
}

/// `Unique` over `x` viewed as `[outer, n, inner]`: the distinct slices `x[:, j, :]` (whole
/// elements when `outer = inner = 1`), compared lexicographically with `cmp`, sorted
/// ascending when `sorted`, else in order of first occurrence. Writes the unique slices to
/// `y` (viewed as `[outer, u, inner]`), the index of each one's first occurrence to `first`,
/// for every `j` the position of its slice among the unique ones to `inverse`, and how often
/// each occurs to `counts`; returns `u`. `order` is working memory of at least `2 * n`.
#[allow(
    clippy::too_many_arguments,
    reason = "the layout, four outputs, scratch and the order"
)]
pub fn unique<T: Copy>(
    x: &[T],
    outer: usize,
    n: usize,
    inner: usize,
    sorted: bool,
    cmp: impl Fn(T, T) -> Ordering,
    order: &mut [i64],
    y: &mut [T],
    first: &mut [i64],
    inverse: &mut [i64],
    counts: &mut [i64],
) -> usize {
    let cmp_slice = |a: usize, b: usize| -> Ordering {
        for o in 0..outer {
            for r in 0..inner {
                let c = cmp(x[(o * n + a) * inner + r], x[(o * n + b) * inner + r]);
                if c.is_ne() {
                    return c;
                }
            }
        }
        Ordering::Equal
    };
    let (order, rank) = order[..2 * n].split_at_mut(n);
    for (j, slot) in order.iter_mut().enumerate() {
        *slot = j as i64;
    }
    order.sort_unstable_by(|&a, &b| cmp_slice(a as usize, b as usize).then(a.cmp(&b)));
    // Groups of equal slices in sorted order: `rank[g]` is group g's first index, and
    // `inverse[j]` j's group.
    let mut groups = 0usize;
    for (p, &j) in order.iter().enumerate() {
        let j = j as usize;
        if p == 0 || cmp_slice(order[p - 1] as usize, j).is_ne() {
            rank[groups] = j as i64;
            counts[groups] = 0;
            groups += 1;
        }
        inverse[j] = (groups - 1) as i64;
        counts[groups - 1] += 1;
    }
    if sorted {
        first[..groups].copy_from_slice(&rank[..groups]);
    } else {
        // Renumber the groups by first occurrence: walking j in order, a group is met first
        // at its first index. `order` (no longer needed) maps old group -> new.
        let mut next = 0usize;
        for (j, &g) in inverse[..n].iter().enumerate() {
            let g = g as usize;
            if rank[g] == j as i64 {
                order[g] = next as i64;
                first[next] = j as i64;
                next += 1;
            }
        }
        for g in inverse[..n].iter_mut() {
            *g = order[*g as usize];
        }
        // Counts follow their groups to the new numbering.
        for g in 0..groups {
            rank[order[g] as usize] = counts[g];
        }
        counts[..groups].copy_from_slice(&rank[..groups]);
    }
    for o in 0..outer {
        for (g, &j) in first[..groups].iter().enumerate() {
            let src = (o * n + j as usize) * inner;
            y[(o * groups + g) * inner..][..inner].copy_from_slice(&x[src..][..inner]);
        }
    }
    groups
}

/// `NonMaxSuppression` on float32 `boxes` (`[batch, n, 4]`) and `scores`
/// (`[batch, classes, n]`): per batch and class, boxes in descending score order (ties by
/// lower index) above `score_threshold` are kept unless their IoU with a kept box exceeds
/// `iou_threshold`, up to `max_per_class`. Writes `[batch, class, box]` triples to `out` and
/// returns how many. Boxes are `[y1, x1, y2, x2]` (either diagonal), or
/// `[x_center, y_center, width, height]` with `center`. `order` is working memory of at least
/// `2 * n`; `out` holds at least `3 * batch * classes * min(n, max_per_class)`.
#[allow(
    clippy::too_many_arguments,
    reason = "the inputs, the layout, the three limits, scratch and output"
)]
pub fn non_max_suppression(
    boxes: &[f32],
    scores: &[f32],
    batch: usize,
    classes: usize,
    n: usize,
    max_per_class: usize,
    iou_threshold: f32,
    score_threshold: Option<f32>,
    center: bool,
    order: &mut [i64],
    out: &mut [i64],
) -> usize {
    let corners = |b: usize, i: usize| -> [f32; 4] {
        let p = &boxes[(b * n + i) * 4..][..4];
        if center {
            let (xc, yc, w, h) = (p[0], p[1], p[2], p[3]);
            [yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0]
        } else {
            [
                p[0].min(p[2]),
                p[1].min(p[3]),
                p[0].max(p[2]),
                p[1].max(p[3]),
            ]
        }
    };
    let overlaps = |a: [f32; 4], b: [f32; 4]| -> bool {
        let iy = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
        let ix = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
        let inter = iy * ix;
        let area_a = (a[2] - a[0]) * (a[3] - a[1]);
        let area_b = (b[2] - b[0]) * (b[3] - b[1]);
        let union = area_a + area_b - inter;
        if inter <= 0.0 || area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
            return false;
        }
        inter / union > iou_threshold
    };
    let (cand, picked) = order[..2 * n].split_at_mut(n);
    let mut rows = 0;
    for b in 0..batch {
        for c in 0..classes {
            let s = &scores[(b * classes + c) * n..][..n];
            let mut m = 0;
            for (i, &score) in s.iter().enumerate() {
                if score_threshold.is_none_or(|t| score > t) {
                    cand[m] = i as i64;
                    m += 1;
                }
            }
            let cand = &mut cand[..m];
            cand.sort_unstable_by(|&x, &y| s[y as usize].total_cmp(&s[x as usize]).then(x.cmp(&y)));
            let mut kept = 0;
            for &i in cand.iter() {
                if kept >= max_per_class {
                    break;
                }
                let bx = corners(b, i as usize);
                if picked[..kept]
                    .iter()
                    .all(|&p| !overlaps(corners(b, p as usize), bx))
                {
                    picked[kept] = i;
                    kept += 1;
                }
            }
            for &p in &picked[..kept] {
                out[rows * 3..][..3].copy_from_slice(&[b as i64, c as i64, p]);
                rows += 1;
            }
        }
    }
    rows
}

/// The shape a `Reshape` with a run-time target produces from `x_shape`: `0` copies the input
/// dimension (unless `allow_zero`), one `-1` takes what is left.
///
/// # Errors
/// When the target is malformed (two `-1`s, a negative size) or does not hold exactly the
/// input's elements.
pub fn reshape_target<I: IndexValue, const R: usize>(
    x_shape: &[usize],
    target: &[I],
    allow_zero: bool,
) -> Result<[usize; R], &'static str> {
    const BAD: &str = "Reshape: the shape input does not fit the data";
    if target.len() != R {
        return Err(BAD);
    }
    let total: usize = x_shape.iter().product();
    let mut out = [0usize; R];
    let mut infer = None;
    for (a, t) in target.iter().enumerate() {
        out[a] = match t.to_i64() {
            -1 if infer.is_none() => {
                infer = Some(a);
                1
            }
            0 if !allow_zero => *x_shape.get(a).ok_or(BAD)?,
            d => usize::try_from(d).map_err(|_| BAD)?,
        };
    }
    let known = out
        .iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d))
        .ok_or(BAD)?;
    if let Some(a) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(BAD);
        }
        out[a] = total / known;
    } else if known != total {
        return Err(BAD);
    }
    Ok(out)
}

/// A resolved `Slice` of rank `R`: per axis the first index and the step, and the output shape.
pub type SlicePlan<const R: usize> = ([i64; R], [i64; R], [usize; R]);

/// A `Slice` with run-time operands, resolved against `x_shape` (rank `R`): per axis the
/// first index and step, and the output shape. `axes` defaults to `0..starts.len()` and
/// `steps` to 1; bounds clamp as the ONNX spec says.
///
/// # Errors
/// When the operands disagree in length, name an axis twice or out of range, or a step is 0.
pub fn slice_plan<I: IndexValue, const R: usize>(
    x_shape: &[usize],
    starts: &[I],
    ends: &[I],
    axes: Option<&[I]>,
    steps: Option<&[I]>,
) -> Result<SlicePlan<R>, &'static str> {
    const BAD: &str = "Slice: the starts, ends, axes or steps inputs are invalid";
    let k = starts.len();
    if ends.len() != k || axes.is_some_and(|a| a.len() != k) || steps.is_some_and(|s| s.len() != k)
    {
        return Err(BAD);
    }
    let mut first = [0i64; R];
    let mut step = [1i64; R];
    let mut shape = [0usize; R];
    shape.copy_from_slice(&x_shape[..R]);
    let mut seen = [false; R];
    for i in 0..k {
        let axis = match axes {
            Some(a) => a[i].to_i64(),
            None => i as i64,
        };
        let axis = if axis < 0 { axis + R as i64 } else { axis };
        let axis = usize::try_from(axis).ok().filter(|&a| a < R).ok_or(BAD)?;
        if core::mem::replace(&mut seen[axis], true) {
            return Err(BAD);
        }
        let s = steps.map_or(1, |s| s[i].to_i64());
        if s == 0 {
            return Err(BAD);
        }
        let dim = x_shape[axis] as i64;
        let resolve = |v: i64, lo: i64, hi: i64| -> i64 {
            let v = if v < 0 { v.saturating_add(dim) } else { v };
            v.max(lo).min(hi)
        };
        let (b, e) = if dim == 0 {
            (0, 0)
        } else if s > 0 {
            (
                resolve(starts[i].to_i64(), 0, dim),
                resolve(ends[i].to_i64(), 0, dim),
            )
        } else {
            (
                resolve(starts[i].to_i64(), 0, dim - 1),
                resolve(ends[i].to_i64(), -1, dim - 1),
            )
        };
        let (span, s_abs) = if s > 0 {
            (e - b, s)
        } else {
            (b - e, s.saturating_neg())
        };
        let len = if span > 0 { (span - 1) / s_abs + 1 } else { 0 };
        first[axis] = b;
        step[axis] = s;
        shape[axis] = len as usize;
    }
    Ok((first, step, shape))
}

/// Copies the elements of `x` (of `x_shape`) at `first[a] + i * step[a]` along every axis `a`
/// into `out`, packed in `out_shape`.
pub fn slice_copy<T: Copy, const R: usize>(
    x: &[T],
    x_shape: &[usize],
    first: &[i64; R],
    step: &[i64; R],
    out_shape: &[usize; R],
    out: &mut [T],
) {
    let total: usize = out_shape.iter().product();
    let mut strides = [0usize; R];
    let mut acc = 1usize;
    for a in (0..R).rev() {
        strides[a] = acc;
        acc *= x_shape[a];
    }
    let mut coord = [0usize; R];
    for slot in out[..total].iter_mut() {
        let mut at = 0i64;
        for a in 0..R {
            at += (first[a] + coord[a] as i64 * step[a]) * strides[a] as i64;
        }
        *slot = x[at as usize];
        for a in (0..R).rev() {
            coord[a] += 1;
            if coord[a] < out_shape[a] {
                break;
            }
            coord[a] = 0;
        }
    }
}

/// A numpy broadcast of two run-time shapes to rank `R`: the output shape and, per output
/// axis, each input's element stride (0 where it repeats).
pub type Broadcast<const R: usize> = ([usize; R], [usize; R], [usize; R]);

/// Broadcasts shapes `a` and `b` (each of rank at most `R`) to rank `R`.
///
/// # Errors
/// When two extents differ and neither is 1.
pub fn broadcast<const R: usize>(a: &[usize], b: &[usize]) -> Result<Broadcast<R>, &'static str> {
    const BAD: &str = "the operands' run-time shapes do not broadcast";
    if a.len() > R || b.len() > R {
        return Err(BAD);
    }
    let at = |s: &[usize], axis: usize| -> usize {
        let lead = R - s.len();
        if axis < lead {
            1
        } else {
            s[axis - lead]
        }
    };
    let mut out = [0usize; R];
    for (axis, o) in out.iter_mut().enumerate() {
        *o = match (at(a, axis), at(b, axis)) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(BAD),
        };
    }
    let strides = |s: &[usize]| -> [usize; R] {
        let mut st = [0usize; R];
        let mut acc = 1;
        for axis in (0..R).rev() {
            let d = at(s, axis);
            st[axis] = if d == 1 && out[axis] != 1 { 0 } else { acc };
            acc *= d;
        }
        st
    };
    Ok((out, strides(a), strides(b)))
}

/// A broadcast of three run-time shapes to rank `R`: the output shape and each input's
/// element strides along it.
pub type Broadcast3<const R: usize> = ([usize; R], [usize; R], [usize; R], [usize; R]);

/// Broadcasts three shapes (`Where`'s condition and branches) to rank `R`: the output shape
/// and each input's element strides along it.
///
/// # Errors
/// When the shapes do not broadcast.
pub fn broadcast3<const R: usize>(
    a: &[usize],
    b: &[usize],
    c: &[usize],
) -> Result<Broadcast3<R>, &'static str> {
    let (ab, _, _) = broadcast::<R>(a, b)?;
    let (out, _, sc) = broadcast::<R>(&ab, c)?;
    // `a` and `b` broadcast to `ab`, which broadcasts to `out`: their strides along `out`.
    let (_, sa, _) = broadcast::<R>(a, &out)?;
    let (_, sb, _) = broadcast::<R>(b, &out)?;
    Ok((out, sa, sb, sc))
}

/// The shape of a `Concat` along `axis` of run-time shapes (each of rank `R`).
///
/// # Errors
/// When the inputs differ in rank or in an extent off the axis.
pub fn concat_shape<const R: usize>(
    shapes: &[&[usize]],
    axis: usize,
) -> Result<[usize; R], &'static str> {
    const BAD: &str = "the inputs' run-time shapes differ off the concatenation axis";
    let mut out = [0usize; R];
    let first = shapes.first().ok_or(BAD)?;
    if first.len() != R {
        return Err(BAD);
    }
    out.copy_from_slice(first);
    out[axis] = 0;
    for s in shapes {
        if s.len() != R || (0..R).any(|a| a != axis && s[a] != out[a]) {
            return Err(BAD);
        }
        out[axis] += s[axis];
    }
    Ok(out)
}

/// A `MatMul` of run-time shapes: the output shape (rank `R`), the broadcast batch shape and
/// each operand's element stride per batch axis (`R - 2` of each, the first entries used),
/// and `(m, n, k)`.
pub type MatMulPlan<const R: usize> = (
    [usize; R],
    [usize; R],
    [usize; R],
    [usize; R],
    (usize, usize, usize),
);

/// Plans a `MatMul` of `a` and `b` (each of rank at least 2, batch axes broadcast numpy-style)
/// into an output of rank `R`.
///
/// # Errors
/// When the inner extents differ or the batch axes do not broadcast.
pub fn matmul_plan<const R: usize>(
    a: &[usize],
    b: &[usize],
) -> Result<MatMulPlan<R>, &'static str> {
    const BAD: &str = "MatMul: the operands' run-time shapes do not multiply";
    let (ra, rb) = (a.len(), b.len());
    if ra < 2 || rb < 2 || R < 2 || ra > R || rb > R {
        return Err(BAD);
    }
    let (m, k, k2, n) = (a[ra - 2], a[ra - 1], b[rb - 2], b[rb - 1]);
    if k != k2 {
        return Err(BAD);
    }
    let (batch, sa, sb) = broadcast::<R>(&a[..ra - 2], &b[..rb - 2])?;
    // `broadcast` aligned the batch axes to rank R; keep the last R - 2 as the batch.
    let nb = R - 2;
    let (mut shape, mut bs, mut bsa, mut bsb) =
        ([0usize; R], [1usize; R], [0usize; R], [0usize; R]);
    for i in 0..nb {
        bs[i] = batch[i + 2];
        bsa[i] = sa[i + 2] * m * k;
        bsb[i] = sb[i + 2] * k * n;
        shape[i] = bs[i];
    }
    shape[nb] = m;
    shape[nb + 1] = n;
    Ok((shape, bs, bsa, bsb, (m, n, k)))
}

/// An `Expand` of an input of shape `x` to the run-time `target`: the output shape (rank `R`)
/// and the input's element strides along it.
///
/// # Errors
/// When a target extent is negative, the shapes do not broadcast, or the output would hold
/// more than `capacity` elements.
pub fn expand_plan<const R: usize>(
    x: &[usize],
    target: &[i64],
    capacity: usize,
) -> Result<([usize; R], [usize; R]), &'static str> {
    let mut t = [0usize; R];
    if target.len() > R {
        return Err("Expand: a target longer than the compiled rank");
    }
    for (slot, &d) in t.iter_mut().zip(target) {
        *slot = usize::try_from(d).map_err(|_| "Expand: a negative target extent")?;
    }
    let (out, sx, _) = broadcast::<R>(x, &t[..target.len()])?;
    if out.iter().product::<usize>() > capacity {
        return Err("Expand: more elements than the bound the model was compiled for");
    }
    Ok((out, sx))
}

/// The length of `Range(start, limit, delta)`: `max(ceil((limit - start) / delta), 0)`.
///
/// # Errors
/// When `delta` is 0 or the length exceeds the `capacity` the model was compiled with.
pub fn range_len(
    start: i64,
    limit: i64,
    delta: i64,
    capacity: usize,
) -> Result<usize, &'static str> {
    if delta == 0 {
        return Err("Range with a zero delta");
    }
    let (span, step) = (i128::from(limit) - i128::from(start), i128::from(delta));
    let n = if step > 0 {
        (span + step - 1).div_euclid(step)
    } else {
        (-span - step - 1).div_euclid(-step)
    };
    let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
    if n > capacity {
        return Err("Range longer than the bound the model was compiled for");
    }
    Ok(n)
}

/// Checks that a run-time extent a `Squeeze` removes is 1.
///
/// # Errors
/// When it is not.
pub fn squeezable(extent: usize) -> Result<(), &'static str> {
    if extent == 1 {
        Ok(())
    } else {
        Err("Squeeze of an axis whose run-time extent is not 1")
    }
}

#[cfg(test)]
mod range_tests {
    use super::range_len;

    #[test]
    fn range_lengths_round_up_and_respect_the_capacity() {
        assert_eq!(range_len(0, 7, 1, 8), Ok(7));
        assert_eq!(range_len(0, 7, 3, 8), Ok(3));
        assert_eq!(range_len(7, 0, -2, 8), Ok(4));
        assert_eq!(range_len(5, 1, 1, 8), Ok(0));
        assert!(range_len(0, 9, 1, 8).is_err());
        assert!(range_len(0, 9, 0, 8).is_err());
    }

    #[test]
    fn expand_and_three_way_broadcast_plans() {
        use super::{broadcast3, expand_plan};
        // [1, 3] to [2, 1, 3]: rows repeat.
        assert_eq!(
            expand_plan::<3>(&[1, 3], &[2, 1, 3], 6),
            Ok(([2, 1, 3], [0, 3, 1]))
        );
        assert!(expand_plan::<2>(&[2, 3], &[4, 3], 12).is_err());
        assert!(expand_plan::<2>(&[1, 3], &[4, 3], 11).is_err());
        assert!(expand_plan::<2>(&[1, 3], &[-1, 3], 12).is_err());
        // A [1, 4] condition, a [3, 1] branch and a scalar: [3, 4].
        let (out, sc, sx, sy) = broadcast3::<2>(&[1, 4], &[3, 1], &[]).expect("broadcasts");
        assert_eq!((out, sc, sx, sy), ([3, 4], [0, 1], [1, 0], [0, 0]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzero_lists_coordinates_by_axis() {
        let x = [0.0f32, 1.0, -0.0, 2.0, 0.0, 3.0];
        let mut out = [0i64; 12];
        let n = nonzero(&x, &[2, 3], &mut out, |v| v != 0.0);
        assert_eq!(n, 3);
        assert_eq!(&out[..6], &[0, 1, 1, 1, 0, 2]);
    }

    #[test]
    fn unique_sorted_and_by_first_occurrence() {
        let x = [2i64, 1, 1, 3, 4, 3];
        let (mut order, mut y, mut first, mut inv, mut counts) =
            ([0i64; 12], [0i64; 6], [0i64; 6], [0i64; 6], [0i64; 6]);
        // (sorted, unique values, first indices, counts, inverse)
        type Expected = (bool, [i64; 4], [i64; 4], [i64; 4], [i64; 6]);
        let expected: [Expected; 2] = [
            (
                true,
                [1, 2, 3, 4],
                [1, 0, 3, 4],
                [2, 1, 2, 1],
                [1, 0, 0, 2, 3, 2],
            ),
            (
                false,
                [2, 1, 3, 4],
                [0, 1, 3, 4],
                [1, 2, 2, 1],
                [0, 1, 1, 2, 3, 2],
            ),
        ];
        for (sorted, values, firsts, count, inverse) in expected {
            let u = unique(
                &x,
                1,
                6,
                1,
                sorted,
                |a, b| a.cmp(&b),
                &mut order,
                &mut y,
                &mut first,
                &mut inv,
                &mut counts,
            );
            assert_eq!(u, 4);
            assert_eq!(
                (&y[..4], &first[..4], &counts[..4]),
                (&values[..], &firsts[..], &count[..])
            );
            assert_eq!(inv, inverse);
        }
    }

    #[test]
    fn matmul_plans_broadcast_batches() {
        let (shape, batch, sa, sb, mnk) = matmul_plan::<4>(&[2, 1, 3, 4], &[5, 4, 6]).unwrap();
        assert_eq!((shape, mnk), ([2, 5, 3, 6], (3, 6, 4)));
        assert_eq!(
            (&batch[..2], &sa[..2], &sb[..2]),
            (&[2, 5][..], &[12, 0][..], &[0, 24][..])
        );
        assert!(matmul_plan::<2>(&[3, 4], &[5, 6]).is_err());
    }

    #[test]
    fn broadcast_and_concat_shapes() {
        let (out, sa, sb) = broadcast::<3>(&[4, 1], &[3, 1, 5]).unwrap();
        assert_eq!((out, sa, sb), ([3, 4, 5], [0, 1, 0], [5, 0, 1]));
        assert!(broadcast::<2>(&[4, 2], &[3, 2]).is_err());
        assert_eq!(concat_shape::<2>(&[&[2, 3], &[5, 3]], 0), Ok([7, 3]));
        assert!(concat_shape::<2>(&[&[2, 3], &[2, 4]], 0).is_err());
    }

    #[test]
    fn reshape_and_slice_resolve_run_time_operands() {
        assert_eq!(
            reshape_target::<i64, 3>(&[2, 3, 4], &[0, -1, 2], false),
            Ok([2, 6, 2])
        );
        assert!(reshape_target::<i64, 2>(&[2, 3], &[4, 2], false).is_err());
        assert!(reshape_target::<i64, 2>(&[2, 3], &[-1, -1], false).is_err());
        let (first, step, shape) =
            slice_plan::<i64, 2>(&[3, 5], &[-1, 1], &[-4, 100], None, Some(&[-1, 2])).unwrap();
        assert_eq!((first, step, shape), ([2, 1], [-1, 2], [3, 2]));
        let x: [i32; 15] = core::array::from_fn(|i| i as i32);
        let mut out = [0i32; 15];
        slice_copy(&x, &[3, 5], &first, &step, &shape, &mut out);
        assert_eq!(&out[..6], &[11, 13, 6, 8, 1, 3]);
    }
}
