//! Softmax, LogSoftmax and Hardmax along one axis of a tensor viewed as `[outer, axis, inner]`.
//!
//! The f32 Softmax and LogSoftmax run on sixteen lanes (`math::lanes`): along the
//! last axis (`inner == 1`) each row's maximum, exponentials and sum are vectors over the row
//! (the sum in sixteen partial sums combined in a fixed tree, so the result is the same on
//! every CPU); along another axis, sixteen neighbouring columns are processed as one vector,
//! each column's sum taken in axis order as before.

use crate::math;
use crate::math::lanes::{self, Kernel, Lanes, LANES};

/// Which of the two f32 kernels [`Rows`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `e^(x - max) / sum`.
    Softmax,
    /// `x - max - ln(sum)`.
    LogSoftmax,
}

/// Softmax or LogSoftmax over `[outer, len, inner]` ([`Kernel`]).
struct Rows<'a> {
    mode: Mode,
    x: &'a [f32],
    out: &'a mut [f32],
    outer: usize,
    len: usize,
    inner: usize,
}

impl Kernel for Rows<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Lanes>(self, s: S) {
        let Rows {
            mode,
            x,
            out,
            outer,
            len,
            inner,
        } = self;
        let block = len * inner;
        if block == 0 {
            return;
        }
        let blocks = x.chunks_exact(block).zip(out.chunks_exact_mut(block));
        for (xb, ob) in blocks.take(outer) {
            if inner == 1 {
                row(s, mode, xb, ob);
            } else {
                columns(s, mode, xb, ob, len, inner);
            }
        }
    }
}

/// One contiguous row.
#[inline(always)]
fn row<S: Lanes>(s: S, mode: Mode, x: &[f32], out: &mut [f32]) {
    let mut max = s.splat(f32::NEG_INFINITY);
    for chunk in x.chunks(LANES) {
        max = s.max(max, s.load_or(chunk, f32::NEG_INFINITY));
    }
    let max = s.max_lane(max);
    let max_v = s.splat(max);
    // e^(x - max) into `out`; lanes past the end hold -inf, whose exponential adds 0.
    let mut sum = s.splat(0.0);
    for (xc, oc) in x.chunks(LANES).zip(out.chunks_mut(LANES)) {
        let e = lanes::exp(s, s.sub(s.load_or(xc, f32::NEG_INFINITY), max_v));
        s.store(oc, e);
        sum = s.add(sum, e);
    }
    match mode {
        Mode::Softmax => {
            let inv = s.splat(1.0 / s.sum(sum));
            for oc in out.chunks_mut(LANES) {
                let v = s.mul(s.load(oc), inv);
                s.store(oc, v);
            }
        }
        Mode::LogSoftmax => {
            // The sum in f64, as the scalar form: exact enough that ln adds the only error.
            let shift = s.splat(max + math::ln_f64(sum_f64(out)) as f32);
            for (xc, oc) in x.chunks(LANES).zip(out.chunks_mut(LANES)) {
                s.store(oc, s.sub(s.load(xc), shift));
            }
        }
    }
}

/// The sum of `values` in f64, in eight partial sums (element `i` into sum `i % 8`) combined
/// in a fixed order.
#[inline(always)]
fn sum_f64(values: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f64::from(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f64::from(v);
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// One `[len, inner]` block, sixteen columns at a time; each column's maximum and sum are
/// taken in axis order (what the scalar loop over one column computes).
#[inline(always)]
fn columns<S: Lanes>(s: S, mode: Mode, x: &[f32], out: &mut [f32], len: usize, inner: usize) {
    for first in (0..inner).step_by(LANES) {
        let width = (inner - first).min(LANES);
        let at = |a: usize| a * inner + first;
        let mut max = s.splat(f32::NEG_INFINITY);
        for a in 0..len {
            max = s.max(max, s.load(&x[at(a)..][..width]));
        }
        let mut sum = s.splat(0.0);
        for a in 0..len {
            let e = lanes::exp(s, s.sub(s.load(&x[at(a)..][..width]), max));
            s.store(&mut out[at(a)..][..width], e);
            sum = s.add(sum, e);
        }
        match mode {
            Mode::Softmax => {
                let inv = s.div(s.splat(1.0), sum);
                for a in 0..len {
                    let o = &mut out[at(a)..][..width];
                    s.store(o, s.mul(s.load(o), inv));
                }
            }
            Mode::LogSoftmax => {
                let mut sums = [0.0f64; LANES];
                for a in 0..len {
                    for (acc, &e) in sums.iter_mut().zip(&out[at(a)..][..width]) {
                        *acc += f64::from(e);
                    }
                }
                let mut shift = [0.0f32; LANES];
                s.store(&mut shift, max);
                for (sh, &acc) in shift.iter_mut().zip(&sums) {
                    *sh += math::ln_f64(acc) as f32;
                }
                let shift = s.load(&shift);
                for a in 0..len {
                    let v = s.sub(s.load(&x[at(a)..][..width]), shift);
                    s.store(&mut out[at(a)..][..width], v);
                }
            }
        }
    }
}

/// Checks the buffers of an `[outer, len, inner]` kernel.
fn check(x: &[f32], out: &[f32], outer: usize, len: usize, inner: usize) {
    let n = outer * len * inner;
    assert!(
        x.len() >= n && out.len() >= n,
        "softmax buffers too short: {} and {} for {n}",
        x.len(),
        out.len()
    );
}

/// `out = softmax(x)` along the middle axis of `[outer, axis_len, inner]`.
pub fn softmax_f32(x: &[f32], out: &mut [f32], outer: usize, axis_len: usize, inner: usize) {
    check(x, out, outer, axis_len, inner);
    lanes::dispatch(Rows {
        mode: Mode::Softmax,
        x,
        out,
        outer,
        len: axis_len,
        inner,
    });
}

/// Elements a task of [`softmax_f32_exec`] takes, in whole blocks of the outer axis.
const EXEC_TASK: usize = 1 << 14;

/// [`softmax_f32`] (or [`log_softmax_f32`] when `log`) with runs of the outer axis split
/// across `exec`'s threads: each `[axis_len, inner]` block is computed as in one call, so
/// the results are the same bits.
pub fn softmax_f32_exec(
    exec: &crate::threads::Exec,
    log: bool,
    x: &[f32],
    out: &mut [f32],
    outer: usize,
    axis_len: usize,
    inner: usize,
) {
    check(x, out, outer, axis_len, inner);
    let block = axis_len * inner;
    if block == 0 || outer == 0 {
        return;
    }
    let per = EXEC_TASK.div_ceil(block).max(1);
    exec.for_each_chunk(&mut out[..outer * block], per * block, &|t, part| {
        let n = part.len() / block;
        let src = &x[t * per * block..][..n * block];
        if log {
            log_softmax_f32(src, part, n, axis_len, inner);
        } else {
            softmax_f32(src, part, n, axis_len, inner);
        }
    });
}

/// `out = log_softmax(x) = x - max - ln(sum(e^(x - max)))` along the middle axis of
/// `[outer, axis_len, inner]` (the sum in f64).
pub fn log_softmax_f32(x: &[f32], out: &mut [f32], outer: usize, axis_len: usize, inner: usize) {
    check(x, out, outer, axis_len, inner);
    lanes::dispatch(Rows {
        mode: Mode::LogSoftmax,
        x,
        out,
        outer,
        len: axis_len,
        inner,
    });
}

/// `out = hardmax(x)`: 1 at the first maximum along the middle axis of
/// `[outer, axis_len, inner]`, 0 elsewhere.
pub fn hardmax_f32(x: &[f32], out: &mut [f32], outer: usize, axis_len: usize, inner: usize) {
    let block = axis_len * inner;
    if block == 0 {
        return;
    }
    for o in 0..outer {
        let xb = &x[o * block..][..block];
        let ob = &mut out[o * block..][..block];
        for i in 0..inner {
            let mut best = 0;
            for a in 1..axis_len {
                if xb[a * inner + i] > xb[best * inner + i] {
                    best = a;
                }
            }
            for a in 0..axis_len {
                ob[a * inner + i] = if a == best { 1.0 } else { 0.0 };
            }
        }
    }
}

/// Which of the three functions [`softmax_via`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxKind {
    /// `e^x / sum(e^x)`.
    Softmax,
    /// `x - ln(sum(e^x))`.
    LogSoftmax,
    /// 1 at the first maximum, 0 elsewhere.
    Hardmax,
}

/// Softmax, LogSoftmax or Hardmax for any storage type (float16/bfloat16 bits, f64): each
/// element is widened with `dec`, computed in f64 and stored with `enc`.
pub fn softmax_via<T: Copy>(
    kind: SoftmaxKind,
    x: &[T],
    out: &mut [T],
    [outer, axis_len, inner]: [usize; 3],
    dec: impl Fn(T) -> f64,
    enc: impl Fn(f64) -> T,
) {
    let block = axis_len * inner;
    if block == 0 {
        return;
    }
    for o in 0..outer {
        let xb = &x[o * block..][..block];
        let ob = &mut out[o * block..][..block];
        for i in 0..inner {
            let mut max = f64::NEG_INFINITY;
            let mut best = 0;
            for a in 0..axis_len {
                let v = dec(xb[a * inner + i]);
                if v > max || a == 0 {
                    max = v;
                    best = a;
                }
            }
            if kind == SoftmaxKind::Hardmax {
                for a in 0..axis_len {
                    ob[a * inner + i] = enc(if a == best { 1.0 } else { 0.0 });
                }
                continue;
            }
            let mut sum = 0.0;
            for a in 0..axis_len {
                sum += math::exp_f64(dec(xb[a * inner + i]) - max);
            }
            let (inv, shift) = (1.0 / sum, max + math::ln_f64(sum));
            for a in 0..axis_len {
                let v = dec(xb[a * inner + i]);
                ob[a * inner + i] = enc(match kind {
                    SoftmaxKind::Softmax => math::exp_f64(v - max) * inv,
                    _ => v - shift,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "std")]
    #[test]
    fn softmax_exec_matches_one_call_on_two_threads() {
        // Attention scores (rows of 197) and a middle axis with inner 5, softmax and log
        // (under Miri 4 rows of 40 and 4 x 6 x 5: one task).
        let exec = crate::threads::Exec::with_threads(2);
        let cases = if cfg!(miri) {
            [(4, 40, 1), (4, 6, 5)]
        } else {
            [(12 * 197, 197, 1), (40, 30, 5)]
        };
        for (outer, len, inner) in cases {
            let n = outer * len * inner;
            let x: std::vec::Vec<f32> = (0..n).map(|i| (i % 101) as f32 * 0.1 - 5.0).collect();
            for log in [false, true] {
                let (mut one, mut split) = (std::vec![0f32; n], std::vec![0f32; n]);
                if log {
                    log_softmax_f32(&x, &mut one, outer, len, inner);
                } else {
                    softmax_f32(&x, &mut one, outer, len, inner);
                }
                softmax_f32_exec(&exec, log, &x, &mut split, outer, len, inner);
                assert_eq!(split, one, "{outer}x{len}x{inner} log {log}");
            }
        }
    }

    /// The scalar loops the vector kernels replace: per column, the maximum, then `e^(x -
    /// max)` summed in axis order (f32 for softmax, f64 for log-softmax). With `tree`, a row
    /// (`inner == 1`) is summed instead in sixteen partial sums combined as `Lanes::sum`
    /// combines them.
    fn reference(
        mode: Mode,
        x: &[f32],
        outer: usize,
        len: usize,
        inner: usize,
        tree: bool,
    ) -> std::vec::Vec<f32> {
        let mut out = std::vec![0.0f32; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |a: usize| (o * len + a) * inner + i;
                let max = (0..len).fold(f32::NEG_INFINITY, |m, a| m.max(x[at(a)]));
                let e: std::vec::Vec<f32> = (0..len).map(|a| math::exp(x[at(a)] - max)).collect();
                if mode == Mode::LogSoftmax {
                    let sum: f64 = e.iter().map(|&v| f64::from(v)).sum();
                    let shift = max + math::ln_f64(sum) as f32;
                    for a in 0..len {
                        out[at(a)] = x[at(a)] - shift;
                    }
                    continue;
                }
                let sum = if tree && inner == 1 {
                    let mut partial = [0.0f32; LANES];
                    for (k, &v) in e.iter().enumerate() {
                        partial[k % LANES] += v;
                    }
                    let w: [f32; 8] = core::array::from_fn(|j| partial[j] + partial[j + 8]);
                    let u: [f32; 4] = core::array::from_fn(|j| w[j] + w[j + 4]);
                    (u[0] + u[2]) + (u[1] + u[3])
                } else {
                    e.iter().sum()
                };
                let inv = 1.0 / sum;
                for a in 0..len {
                    out[at(a)] = e[a] * inv;
                }
            }
        }
        out
    }

    /// Deterministic values in roughly [-scale, scale].
    fn data(n: usize, scale: f32) -> std::vec::Vec<f32> {
        let mut state = 0x2545_f491_u32;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn close(a: f32, b: f32) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn vector_softmax_matches_the_scalar_loops() {
        // Under Miri, fewer lengths and inner sizes, on and off the vector boundaries.
        let (inners, lens): (&[usize], std::vec::Vec<usize>) = if cfg!(miri) {
            (&[1, 2, 17], std::vec![0, 1, LANES, LANES + 1])
        } else {
            (&[1, 2, 15, 16, 17, 40], (0..=3 * LANES + 1).collect())
        };
        for isa in lanes::Isa::ALL {
            for &inner in inners {
                for &len in &lens {
                    let outer = 3;
                    let n = outer * len * inner;
                    let mut x = data(n, 30.0);
                    if n > 8 {
                        // A row of one value, and large values that overflow e^x unshifted.
                        x[0] = 100.0;
                        x[n / 2] = -95.0;
                    }
                    for mode in [Mode::Softmax, Mode::LogSoftmax] {
                        let want = reference(mode, &x, outer, len, inner, true);
                        let mut got = std::vec![f32::NAN; n];
                        let kernel = Rows {
                            mode,
                            x: &x,
                            out: &mut got,
                            outer,
                            len,
                            inner,
                        };
                        if isa.run(kernel).is_none() {
                            return;
                        }
                        for (k, (&g, &w)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                close(g, w),
                                "{mode:?} {isa:?} [{outer}, {len}, {inner}] at {k}: {g:e} vs {w:e}"
                            );
                        }
                        // And against the plain serial sum, within a few ulp.
                        let serial = reference(mode, &x, outer, len, inner, false);
                        for (&g, &w) in got.iter().zip(&serial) {
                            assert!((g - w).abs() <= 4.0 * f32::EPSILON * w.abs().max(1e-30));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn softmax_rows_with_specials() {
        let inf = f32::INFINITY;
        // A NaN among the values of more than one vector.
        let mut nan_row = [2.0f32; 17];
        nan_row[1] = f32::NAN;
        let rows: [&[f32]; 5] = [
            &[f32::NEG_INFINITY; 20],
            &[1.0, inf, 2.0],
            &nan_row,
            &[-inf, 0.0, -inf],
            &[3.0; 33],
        ];
        for x in rows {
            for isa in lanes::Isa::ALL {
                for mode in [Mode::Softmax, Mode::LogSoftmax] {
                    let want = reference(mode, x, 1, x.len(), 1, true);
                    let mut got = std::vec![0.0f32; x.len()];
                    let kernel = Rows {
                        mode,
                        x,
                        out: &mut got,
                        outer: 1,
                        len: x.len(),
                        inner: 1,
                    };
                    if isa.run(kernel).is_some() {
                        assert!(
                            got.iter().zip(&want).all(|(&g, &w)| close(g, w)),
                            "{mode:?} {isa:?} {x:?}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn softmax_is_accurate() {
        // Against f64 on a BERT-sized row and a strided block (under Miri, smaller).
        let cases = if cfg!(miri) {
            [(2, 40, 1), (2, 5, 24)]
        } else {
            [(4, 384, 1), (2, 50, 24)]
        };
        for (outer, len, inner) in cases {
            let x = data(outer * len * inner, 12.0);
            let mut got = std::vec![0.0f32; x.len()];
            softmax_f32(&x, &mut got, outer, len, inner);
            let mut want = std::vec![0.0f64; x.len()];
            let wide: std::vec::Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            softmax_via(
                SoftmaxKind::Softmax,
                &wide,
                &mut want,
                [outer, len, inner],
                |v| v,
                |v| v,
            );
            // A few ulp, plus what rounding `x - max` (at most 24 here) costs: 24 * 2^-24.
            for (&g, &w) in got.iter().zip(&want) {
                assert!((f64::from(g) - w).abs() <= 2e-6 * w, "{g} vs {w}");
            }
        }
    }

    #[test]
    fn log_softmax_and_hardmax_rows() {
        let x = [1.0f32, 2.0, 3.0, 3.0, 0.0, -1.0];
        let mut out = [0.0f32; 6];
        log_softmax_f32(&x, &mut out, 2, 3, 1);
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() as f32;
        assert!((out[0] - (1.0 - lse)).abs() < 1e-6);
        assert!((out[2] - (3.0 - lse)).abs() < 1e-6);
        // Column-wise (inner = 3): each column has two elements.
        hardmax_f32(&x, &mut out, 1, 2, 3);
        assert_eq!(out, [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let ties = [2.0f32, 2.0];
        let mut o = [0.0f32; 2];
        hardmax_f32(&ties, &mut o, 1, 2, 1);
        assert_eq!(o, [1.0, 0.0]);
    }

    #[test]
    fn generic_kernel_matches_f32_kernels() {
        let x = [1.0f32, 2.0, 3.0, 3.0, 0.0, -1.0];
        for (kind, reference) in [
            (
                SoftmaxKind::Softmax,
                softmax_f32 as fn(&[f32], &mut [f32], usize, usize, usize),
            ),
            (SoftmaxKind::LogSoftmax, log_softmax_f32),
            (SoftmaxKind::Hardmax, hardmax_f32),
        ] {
            let (mut want, mut got) = ([0.0f32; 6], [0.0f32; 6]);
            reference(&x, &mut want, 1, 2, 3);
            softmax_via(kind, &x, &mut got, [1, 2, 3], f64::from, |v| v as f32);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-6, "{kind:?}: {got:?} vs {want:?}");
            }
        }
    }
}
