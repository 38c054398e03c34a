//! Assorted kernels: `CumProd`, `Det`, `CenterCropPad`.

use crate::shape::{for_each_coord, resolve_index};

/// Cumulative `f`-fold of `x` (shape `shape`) along the run-time `axis` starting from `init`
/// (CumProd with `init` 1 and multiplication). An axis out of range leaves the output at `init`.
#[allow(
    clippy::too_many_arguments,
    reason = "kernel parameters are compile-time constants passed positionally"
)]
pub fn cumulate<T: Copy>(
    x: &[T],
    out: &mut [T],
    shape: &[usize],
    axis: i64,
    exclusive: bool,
    reverse: bool,
    init: T,
    f: impl Fn(T, T) -> T,
) {
    let Some(axis) = resolve_index(axis, shape.len()) else {
        out.fill(init);
        return;
    };
    let outer: usize = shape[..axis].iter().product();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    for o in 0..outer {
        for r in 0..inner {
            let mut acc = init;
            for step in 0..n {
                let j = if reverse { n - 1 - step } else { step };
                let p = (o * n + j) * inner + r;
                if exclusive {
                    out[p] = acc;
                    acc = f(acc, x[p]);
                } else {
                    acc = f(acc, x[p]);
                    out[p] = acc;
                }
            }
        }
    }
}

/// Determinants of `batch` square `n`×`n` matrices (LU with partial pivoting in f64).
pub fn det_f32(x: &[f32], out: &mut [f32], batch: usize, n: usize) {
    let mut a = [0f64; 256];
    for b in 0..batch {
        let m = &x[b * n * n..(b + 1) * n * n];
        out[b] = if n * n <= a.len() {
            for (d, &s) in a.iter_mut().zip(m) {
                *d = f64::from(s);
            }
            det_in_place(&mut a[..n * n], n) as f32
        } else {
            det_large(m, n) as f32
        };
    }
}

fn det_large(m: &[f32], n: usize) -> f64 {
    #[cfg(feature = "std")]
    {
        let mut a: alloc::vec::Vec<f64> = m.iter().map(|&v| f64::from(v)).collect();
        det_in_place(&mut a, n)
    }
    #[cfg(not(feature = "std"))]
    {
        let _ = (m, n);
        f64::NAN
    }
}

fn det_in_place(a: &mut [f64], n: usize) -> f64 {
    let mut det = 1.0;
    for c in 0..n {
        let mut p = c;
        for r in c + 1..n {
            if a[r * n + c].abs() > a[p * n + c].abs() {
                p = r;
            }
        }
        if a[p * n + c] == 0.0 {
            return 0.0;
        }
        if p != c {
            for k in 0..n {
                a.swap(p * n + k, c * n + k);
            }
            det = -det;
        }
        let pivot = a[c * n + c];
        det *= pivot;
        for r in c + 1..n {
            let f = a[r * n + c] / pivot;
            for k in c..n {
                a[r * n + k] -= f * a[c * n + k];
            }
        }
    }
    det
}

/// CenterCropPad: output coordinate `c` reads input coordinate `c + offsets[axis]` on each
/// axis, or writes the default (zero) where that falls outside the input.
pub fn crop_pad<T: Copy + Default>(
    x: &[T],
    out: &mut [T],
    in_shape: &[usize],
    out_shape: &[usize],
    offsets: &[i64],
) {
    for_each_coord(out_shape, |i, c| {
        let mut src = 0usize;
        for axis in 0..c.len() {
            let Some(v) = resolve_nonneg(c[axis] as i64 + offsets[axis], in_shape[axis]) else {
                out[i] = T::default();
                return;
            };
            src = src * in_shape[axis] + v;
        }
        out[i] = x[src];
    });
}

#[inline]
fn resolve_nonneg(i: i64, dim: usize) -> Option<usize> {
    if i < 0 {
        None
    } else {
        resolve_index(i, dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumprod_exclusive_reverse() {
        let x = [1.0f64, 2.0, 3.0, 4.0];
        let mut out = [0.0; 4];
        cumulate(&x, &mut out, &[4], 0, false, false, 1.0, |a, b| a * b);
        assert_eq!(out, [1.0, 2.0, 6.0, 24.0]);
        cumulate(&x, &mut out, &[4], -1, true, true, 1.0, |a, b| a * b);
        assert_eq!(out, [24.0, 12.0, 4.0, 1.0]);
    }

    #[test]
    fn det_small() {
        let x = [2.0f32, 1.0, 1.0, 3.0, 0.0, 1.0, 1.0, 0.0];
        let mut out = [0.0; 2];
        det_f32(&x, &mut out, 2, 2);
        assert!((out[0] - 5.0).abs() < 1e-6);
        assert!((out[1] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn crop_and_pad() {
        let x = [1, 2, 3, 4, 5, 6];
        let mut out = [9; 4];
        crop_pad(&x, &mut out, &[2, 3], &[4, 1], &[-1, 1]);
        assert_eq!(out, [0, 2, 5, 0]);
    }
}

/// TfIdfVectorizer weighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TfIdfMode {
    /// Raw counts.
    Tf,
    /// 1 where the count is positive.
    Idf,
    /// Counts (times unit weights).
    TfIdf,
}

/// TfIdfVectorizer over integer tokens: `x` is `rows` rows of `row_len` tokens; `grams` lists
/// the pool's n-grams as `[n, offset into pool, output index]`; `out` is `[rows, out_len]`.
/// Unigrams are counted once; longer n-grams for every skip `0..=max_skip`.
#[allow(
    clippy::too_many_arguments,
    reason = "kernel parameters are compile-time constants passed positionally"
)]
pub fn tfidf<I: crate::shape::IndexValue>(
    x: &[I],
    out: &mut [f32],
    rows: usize,
    row_len: usize,
    [min_n, max_n, max_skip]: [usize; 3],
    pool: &[i64],
    grams: &[[usize; 3]],
    mode: TfIdfMode,
) {
    let out_len = out.len().checked_div(rows).unwrap_or(0);
    out.fill(0.0);
    for r in 0..rows {
        let row = &x[r * row_len..(r + 1) * row_len];
        let dst = &mut out[r * out_len..(r + 1) * out_len];
        let mut start_n = min_n.max(1);
        for skip in 0..=max_skip {
            let step = skip + 1;
            if start_n > max_n {
                break;
            }
            for s in 0..row_len {
                for n in start_n..=max_n {
                    let last = s + (n - 1) * step;
                    if last >= row_len {
                        break;
                    }
                    for g in grams.iter().filter(|g| g[0] == n) {
                        let hit = (0..n).all(|k| row[s + k * step].to_i64() == pool[g[1] + k]);
                        if hit {
                            dst[g[2]] += 1.0;
                        }
                    }
                }
            }
            if start_n == 1 {
                start_n = 2;
            }
        }
        if mode == TfIdfMode::Idf {
            for v in dst.iter_mut() {
                if *v > 0.0 {
                    *v = 1.0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tfidf_tests {
    use super::*;

    #[test]
    fn counts_unigrams_once_and_skip_bigrams() {
        // pool: unigram 7 -> 0, bigram (7, 8) -> 1.
        let pool = [7i64, 7, 8];
        let grams = [[1, 0, 0], [2, 1, 1]];
        let x = [7i64, 8, 7, 9, 8];
        let mut out = [0f32; 2];
        tfidf(&x, &mut out, 1, 5, [1, 2, 1], &pool, &grams, TfIdfMode::Tf);
        assert_eq!(out, [2.0, 2.0]);
    }
}
