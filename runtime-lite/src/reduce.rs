//! Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare (one generic
//! kernel with the op's fold and finish as closures), ArgMax/ArgMin and TopK.
//!
//! Spec: <https://onnx.ai/onnx/operators/> (ReduceSum-1/11/13, the other reductions
//! -1/11/13/18/20, ArgMax/ArgMin-1/11/12/13, TopK-1/10/11/24).

use crate::elementwise::for_each_index;

/// Reduces `x` into `out`: output element `i` (walking `kept_shape`, whose strides into `x`
/// are `kept_strides`) folds, starting from `init`, every input element of the reduced
/// sub-box (`red_shape`, strides `red_strides`), then applies `finish`.
#[allow(
    clippy::too_many_arguments,
    reason = "the layout and the three closures"
)]
pub fn reduce<T: Copy, A: Copy>(
    x: &[T],
    out: &mut [T],
    kept_shape: &[usize],
    kept_strides: &[usize],
    red_shape: &[usize],
    red_strides: &[usize],
    init: A,
    fold: impl Fn(A, T) -> A,
    finish: impl Fn(A) -> T,
) {
    for_each_index(kept_shape, [kept_strides], |i, [base]| {
        let mut acc = init;
        for_each_index(red_shape, [red_strides], |_, [off]| {
            acc = fold(acc, x[base + off]);
        });
        out[i] = finish(acc);
    });
}

/// A float32 reduction that [`reduce_f32`] runs on vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Reduce {
    /// `ReduceSum`.
    Sum,
    /// `ReduceMean`.
    Mean,
    /// `ReduceSumSquare`.
    SumSquare,
    /// `ReduceL1`.
    L1,
    /// `ReduceL2`.
    L2,
    /// `ReduceMax` (NaN wins).
    Max,
    /// `ReduceMin` (NaN wins).
    Min,
}

/// `x` viewed as `[outer, count, inner]` reduced over its middle axis into `out: [outer,
/// inner]`: what [`reduce`] computes for a float32 reduction whose reduced axes are one
/// contiguous run, on vectors. Sums accumulate in f64 as [`reduce`]'s do (in sixteen partial
/// sums, added pairwise at the end, when `inner` is 1; column by column otherwise), Max and
/// Min are exact and propagate NaN. An empty reduction gives the identity (the mean of
/// nothing is NaN).
///
/// Panics if `x` holds fewer than `outer * count * inner` floats or `out` fewer than
/// `outer * inner`.
pub fn reduce_f32(x: &[f32], out: &mut [f32], dims: (usize, usize, usize), kind: F32Reduce) {
    let (outer, count, inner) = dims;
    assert!(
        x.len() >= outer * count * inner && out.len() >= outer * inner,
        "reduce: buffers too short"
    );
    /// The work as a kernel, compiled for the widest vectors the CPU has.
    struct Rows<'a> {
        x: &'a [f32],
        out: &'a mut [f32],
        dims: (usize, usize, usize),
        kind: F32Reduce,
    }
    impl crate::math::lanes::Kernel for Rows<'_> {
        type Output = ();
        #[inline(always)]
        fn run<S: crate::math::lanes::Lanes>(self, _lanes: S) {
            reduce_f32_body(self.x, self.out, self.dims, self.kind);
        }
    }
    crate::math::lanes::dispatch(Rows { x, out, dims, kind });
}

/// [`reduce_f32`]'s work, inlined into each instruction set's copy.
#[inline(always)]
fn reduce_f32_body(x: &[f32], out: &mut [f32], dims: (usize, usize, usize), kind: F32Reduce) {
    let n = dims.1 as f64;
    let add = |a: f64, b: f64| a + b;
    let pick_max = |a: f32, v: f32| if v > a || v.is_nan() { v } else { a };
    let pick_min = |a: f32, v: f32| if v < a || v.is_nan() { v } else { a };
    match kind {
        F32Reduce::Sum => fold_rows(
            x,
            out,
            dims,
            0.0,
            |a, v| a + f64::from(v),
            add,
            |a| a as f32,
        ),
        F32Reduce::Mean => fold_rows(
            x,
            out,
            dims,
            0.0,
            |a, v| a + f64::from(v),
            add,
            |a| (a / n) as f32,
        ),
        F32Reduce::SumSquare => {
            let sq = |a: f64, v: f32| a + f64::from(v) * f64::from(v);
            fold_rows(x, out, dims, 0.0, sq, add, |a| a as f32)
        }
        F32Reduce::L1 => {
            let abs = |a: f64, v: f32| a + f64::from(v).abs();
            fold_rows(x, out, dims, 0.0, abs, add, |a| a as f32)
        }
        F32Reduce::L2 => {
            let sq = |a: f64, v: f32| a + f64::from(v) * f64::from(v);
            fold_rows(x, out, dims, 0.0, sq, add, |a| sqrt_f64(a) as f32)
        }
        F32Reduce::Max => fold_rows(x, out, dims, f32::NEG_INFINITY, pick_max, pick_max, |a| a),
        F32Reduce::Min => fold_rows(x, out, dims, f32::INFINITY, pick_min, pick_min, |a| a),
    }
}

/// Folds the middle axis of `x: [outer, count, inner]` into `out: [outer, inner]` in lanes of
/// sixteen independent accumulators: along a contiguous run when `inner` is 1 (the lanes
/// merged pairwise at the end), else across sixteen columns at a time.
#[inline(always)]
#[allow(
    clippy::too_many_arguments,
    reason = "the layout and the fold's three closures"
)]
fn fold_rows<A: Copy>(
    x: &[f32],
    out: &mut [f32],
    (outer, count, inner): (usize, usize, usize),
    init: A,
    step: impl Fn(A, f32) -> A + Copy,
    merge: impl Fn(A, A) -> A + Copy,
    finish: impl Fn(A) -> f32 + Copy,
) {
    const W: usize = 16;
    for o in 0..outer {
        let src = &x[o * count * inner..][..count * inner];
        let dst = &mut out[o * inner..][..inner];
        if inner == 1 {
            let mut acc = [init; W];
            let mut chunks = src.chunks_exact(W);
            for chunk in &mut chunks {
                for (a, &v) in acc.iter_mut().zip(chunk) {
                    *a = step(*a, v);
                }
            }
            for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
                *a = step(*a, v);
            }
            let mut width = W;
            while width > 1 {
                width /= 2;
                for l in 0..width {
                    acc[l] = merge(acc[l], acc[l + width]);
                }
            }
            dst[0] = finish(acc[0]);
            continue;
        }
        for (j, cols) in dst.chunks_mut(W).enumerate() {
            let mut acc = [init; W];
            let width = cols.len();
            for r in 0..count {
                let row = &src[r * inner + j * W..][..width];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a = step(*a, v);
                }
            }
            for (d, &a) in cols.iter_mut().zip(&acc) {
                *d = finish(a);
            }
        }
    }
}

/// ArgMax/ArgMin over the middle axis of `x` viewed as `[outer, n, inner]`: `better(a, b)`
/// says `a` beats `b` strictly; ties go to the first index, or the last with `last`.
pub fn arg_reduce<T: Copy>(
    x: &[T],
    out: &mut [i64],
    outer: usize,
    n: usize,
    inner: usize,
    last: bool,
    better: impl Fn(T, T) -> bool,
) {
    for o in 0..outer {
        for r in 0..inner {
            let mut best = 0usize;
            for j in 1..n {
                let (v, b) = (x[(o * n + j) * inner + r], x[(o * n + best) * inner + r]);
                if better(v, b) || (last && !better(b, v)) {
                    best = j;
                }
            }
            out[o * inner + r] = best as i64;
        }
    }
}

/// TopK over the middle axis of `x` viewed as `[outer, n, inner]`, writing `k` values and
/// their indices per lane (outputs viewed as `[outer, k, inner]`), best first. `before(a, b)`
/// says `a` ranks strictly before `b`; equal values rank by lower index. Selection is by
/// repeated scans (no scratch memory), `O(k * n)` per lane.
#[allow(
    clippy::too_many_arguments,
    reason = "layout constants, two outputs and the order"
)]
pub fn top_k<T: Copy>(
    x: &[T],
    values: &mut [T],
    indices: &mut [i64],
    outer: usize,
    n: usize,
    inner: usize,
    k: usize,
    before: impl Fn(T, T) -> bool,
) {
    // (a, i) precedes (b, j) in the total order.
    let precedes = |a: T, i: usize, b: T, j: usize| before(a, b) || (!before(b, a) && i < j);
    for o in 0..outer {
        for r in 0..inner {
            let at = |j: usize| x[(o * n + j) * inner + r];
            let mut prev: Option<usize> = None;
            for slot in 0..k.min(n) {
                let mut best: Option<usize> = None;
                for j in 0..n {
                    let v = at(j);
                    if let Some(p) = prev {
                        if !precedes(at(p), p, v, j) {
                            continue;
                        }
                    }
                    if best.is_none_or(|b| precedes(v, j, at(b), b)) {
                        best = Some(j);
                    }
                }
                let Some(b) = best else { break };
                values[(o * k + slot) * inner + r] = at(b);
                indices[(o * k + slot) * inner + r] = b as i64;
                prev = Some(b);
            }
        }
    }
}

/// TopK like [`top_k`], in `O(n + k log k)` per lane with `order` (length `n`) as working
/// memory for the candidate indices: a selection of the best `k`, then a sort of those.
#[allow(
    clippy::too_many_arguments,
    reason = "layout constants, two outputs, scratch, order"
)]
pub fn top_k_scratch<T: Copy>(
    x: &[T],
    values: &mut [T],
    indices: &mut [i64],
    outer: usize,
    n: usize,
    inner: usize,
    k: usize,
    order: &mut [i64],
    before: impl Fn(T, T) -> bool,
) {
    use core::cmp::Ordering;
    let k = k.min(n);
    for o in 0..outer {
        for r in 0..inner {
            let at = |j: i64| x[(o * n + j as usize) * inner + r];
            let cmp = |&i: &i64, &j: &i64| {
                let (a, b) = (at(i), at(j));
                if before(a, b) {
                    Ordering::Less
                } else if before(b, a) {
                    Ordering::Greater
                } else {
                    i.cmp(&j)
                }
            };
            let order = &mut order[..n];
            for (j, slot) in order.iter_mut().enumerate() {
                *slot = j as i64;
            }
            if k == 0 {
                continue;
            }
            if k < n {
                order.select_nth_unstable_by(k - 1, cmp);
            }
            order[..k].sort_unstable_by(cmp);
            for (slot, &j) in order[..k].iter().enumerate() {
                values[(o * k + slot) * inner + r] = at(j);
                indices[(o * k + slot) * inner + r] = j;
            }
        }
    }
}

/// One step of a streaming log-sum-exp: the accumulator is `(m, s)` with the running sum
/// equal to `s * e^m`, so no exponential overflows. Start from `(-inf, 0)`.
#[inline]
pub fn log_sum_exp_step(acc: (f64, f64), v: f64) -> (f64, f64) {
    let (m, s) = acc;
    if v == f64::NEG_INFINITY {
        (m, s)
    } else if v > m {
        (v, s * exp_f64(m - v) + 1.0)
    } else {
        (m, s + exp_f64(v - m))
    }
}

/// The log-sum-exp of a streaming accumulator (`-inf` when nothing was added).
#[inline]
pub fn log_sum_exp_finish(acc: (f64, f64)) -> f64 {
    let (m, s) = acc;
    if s == 0.0 {
        return f64::NEG_INFINITY;
    }
    m + ln_f64(s)
}

/// `e^x` in f64 (the standard library's with `std`, otherwise through f32).
#[inline]
pub fn exp_f64(x: f64) -> f64 {
    #[cfg(any(feature = "std", test))]
    {
        std::primitive::f64::exp(x)
    }
    #[cfg(not(any(feature = "std", test)))]
    {
        f64::from(crate::math::exp(x as f32))
    }
}

/// `ln x` in f64 (the standard library's with `std`, otherwise through f32).
#[inline]
pub fn ln_f64(x: f64) -> f64 {
    #[cfg(any(feature = "std", test))]
    {
        std::primitive::f64::ln(x)
    }
    #[cfg(not(any(feature = "std", test)))]
    {
        f64::from(crate::math::ln(x as f32))
    }
}

/// `sqrt x` in f64, correctly rounded: [`crate::math64::sqrt_f64`] (the standard library's
/// result, with or without `std`).
#[inline]
pub fn sqrt_f64(x: f64) -> f64 {
    crate::math64::sqrt_f64(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn sum_over_middle_axis() {
        // x: [2, 3, 2]; reduce axis 1 keeping [2, 1, 2].
        let x: [i64; 12] = core::array::from_fn(|i| i as i64);
        let mut out = [0i64; 4];
        reduce(
            &x,
            &mut out,
            &[2, 2],
            &[6, 1],
            &[3],
            &[2],
            0i64,
            |a, v| a + v,
            |a| a,
        );
        assert_eq!(out, [6, 9, 24, 27]);
    }

    /// The vector kernel against the generic one on every kind, on runs along the last axis
    /// and across columns, with lengths around the lane count and a NaN.
    #[test]
    fn f32_kernel_matches_generic_reduce() {
        let kinds = [
            F32Reduce::Sum,
            F32Reduce::Mean,
            F32Reduce::SumSquare,
            F32Reduce::L1,
            F32Reduce::L2,
            F32Reduce::Max,
            F32Reduce::Min,
        ];
        for (outer, count, inner) in [(3, 49, 1), (2, 1, 1), (1, 33, 37), (2, 5, 16), (1, 0, 3)] {
            let len = outer * count * inner;
            for nan in [false, true] {
                let mut x: Vec<f32> = (0..len)
                    .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.37)
                    .collect();
                if nan && len > 7 {
                    x[7] = f32::NAN;
                }
                for kind in kinds {
                    let mut fast = vec![0.0; outer * inner];
                    reduce_f32(&x, &mut fast, (outer, count, inner), kind);
                    let mut slow = vec![0.0f32; outer * inner];
                    let n = count as f64;
                    let (shape, strides) = ([outer, inner], [count * inner, 1]);
                    let (red, red_st) = ([count], [inner]);
                    match kind {
                        F32Reduce::Max | F32Reduce::Min => {
                            let max = kind == F32Reduce::Max;
                            let init = if max {
                                f32::NEG_INFINITY
                            } else {
                                f32::INFINITY
                            };
                            let fold = |a: f32, v: f32| {
                                let better = if max { v > a } else { v < a };
                                if better || v.is_nan() {
                                    v
                                } else {
                                    a
                                }
                            };
                            reduce(
                                &x,
                                &mut slow,
                                &shape,
                                &strides,
                                &red,
                                &red_st,
                                init,
                                fold,
                                |a| a,
                            );
                        }
                        _ => {
                            let fold = |a: f64, v: f32| {
                                let v = f64::from(v);
                                match kind {
                                    F32Reduce::SumSquare | F32Reduce::L2 => a + v * v,
                                    F32Reduce::L1 => a + v.abs(),
                                    _ => a + v,
                                }
                            };
                            let finish = |a: f64| match kind {
                                F32Reduce::Mean => (a / n) as f32,
                                F32Reduce::L2 => sqrt_f64(a) as f32,
                                _ => a as f32,
                            };
                            reduce(
                                &x, &mut slow, &shape, &strides, &red, &red_st, 0.0f64, fold,
                                finish,
                            );
                        }
                    }
                    for (f, s) in fast.iter().zip(&slow) {
                        assert!(
                            f == s
                                || (f.is_nan() && s.is_nan())
                                || (f - s).abs() <= 1e-6 * s.abs().max(1.0),
                            "{kind:?} {outer}x{count}x{inner} nan={nan}: {f} vs {s}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn empty_reduction_gives_init() {
        let mut out = [1.0f32; 2];
        reduce(
            &[],
            &mut out,
            &[2],
            &[0],
            &[0],
            &[1],
            f32::NEG_INFINITY,
            f32::max,
            |a| a,
        );
        assert_eq!(out, [f32::NEG_INFINITY; 2]);
    }

    #[test]
    fn log_sum_exp_is_stable() {
        let mut acc = (f64::NEG_INFINITY, 0.0);
        assert_eq!(log_sum_exp_finish(acc), f64::NEG_INFINITY);
        for v in [1000.0, 1000.0, f64::NEG_INFINITY] {
            acc = log_sum_exp_step(acc, v);
        }
        assert!((log_sum_exp_finish(acc) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        let mut acc = (f64::NEG_INFINITY, 0.0);
        for v in [0.5, -1.0, 2.0] {
            acc = log_sum_exp_step(acc, v);
        }
        let naive = (0.5f64.exp() + (-1.0f64).exp() + 2.0f64.exp()).ln();
        assert!((log_sum_exp_finish(acc) - naive).abs() < 1e-12);
    }

    #[test]
    fn topk_scratch_matches_scan() {
        // A pseudo-random lane with many ties, in a [2, 37, 3] layout.
        let x: [i32; 222] = core::array::from_fn(|i| ((i * 7919) % 13) as i32);
        for k in [0, 1, 5, 37] {
            for largest in [true, false] {
                let before = |a: i32, b: i32| if largest { a > b } else { a < b };
                let (mut v1, mut i1) = ([0; 222], [0i64; 222]);
                let (mut v2, mut i2) = ([0; 222], [0i64; 222]);
                top_k(&x, &mut v1, &mut i1, 2, 37, 3, k, before);
                let mut order = [0i64; 37];
                top_k_scratch(&x, &mut v2, &mut i2, 2, 37, 3, k, &mut order, before);
                assert_eq!((v1, i1), (v2, i2), "k {k} largest {largest}");
            }
        }
    }

    #[test]
    fn argmax_ties() {
        let x = [1, 3, 3, 0];
        let mut out = [0i64];
        arg_reduce(&x, &mut out, 1, 4, 1, false, |a, b| a > b);
        assert_eq!(out, [1]);
        arg_reduce(&x, &mut out, 1, 4, 1, true, |a, b| a > b);
        assert_eq!(out, [2]);
    }

    #[test]
    fn topk_ties_by_index() {
        let x = [1, 5, 3, 5, 3];
        let (mut v, mut i) = ([0; 3], [0i64; 3]);
        top_k(&x, &mut v, &mut i, 1, 5, 1, 3, |a, b| a > b);
        assert_eq!((v, i), ([5, 5, 3], [1, 3, 2]));
        top_k(&x, &mut v, &mut i, 1, 5, 1, 3, |a, b| a < b);
        assert_eq!((v, i), ([1, 3, 3], [0, 2, 4]));
    }
}
