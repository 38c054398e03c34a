//! Elementwise kernels: unary maps and numpy-broadcasting n-ary zips.
//!
//! Broadcasting is described by strides: for each input, one stride per output axis, in
//! elements, 0 on an axis the input broadcasts along. The compiler computes them as constants,
//! so these kernels do no shape arithmetic beyond walking the output index.

/// `out[i] = f(x[i])`. The slices have equal lengths (the compiler guarantees it).
#[inline]
pub fn map<T: Copy, U>(x: &[T], out: &mut [U], f: impl Fn(T) -> U) {
    debug_assert_eq!(x.len(), out.len());
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}

/// `out[i] = f(out[i])`, in place.
#[inline]
pub fn map_in_place<T: Copy>(out: &mut [T], f: impl Fn(T) -> T) {
    for o in out.iter_mut() {
        *o = f(*o);
    }
}

/// Elements a task of [`map_exec`] and [`map_in_place_exec`] takes.
const MAP_TASK: usize = 1 << 14;

/// [`map`] with the output split across `exec`'s threads.
pub fn map_exec<T: Copy + Sync, U: Send>(
    exec: &crate::threads::Exec,
    x: &[T],
    out: &mut [U],
    f: impl Fn(T) -> U + Sync,
) {
    let n = x.len().min(out.len());
    exec.for_each_chunk(&mut out[..n], MAP_TASK, &|t, part| {
        map(&x[t * MAP_TASK..][..part.len()], part, &f);
    });
}

/// [`map_in_place`] with the buffer split across `exec`'s threads.
pub fn map_in_place_exec<T: Copy + Send>(
    exec: &crate::threads::Exec,
    out: &mut [T],
    f: impl Fn(T) -> T + Sync,
) {
    exec.for_each_chunk(out, MAP_TASK, &|_, part| map_in_place(part, &f));
}

/// Calls `f(out_index, offsets)` for every element of `out_shape`, in row-major order, where
/// `offsets[k]` is the element offset into input `k` given its `strides[k]`.
#[inline]
pub fn for_each_index<const K: usize>(
    out_shape: &[usize],
    strides: [&[usize]; K],
    mut f: impl FnMut(usize, [usize; K]),
) {
    let rank = out_shape.len();
    if out_shape.contains(&0) {
        return;
    }
    if rank == 0 {
        f(0, [0; K]);
        return;
    }
    let inner = out_shape[rank - 1];
    let inner_strides: [usize; K] = core::array::from_fn(|k| strides[k][rank - 1]);
    let outer: usize = out_shape[..rank - 1].iter().product();
    // The odometer over the outer axes, at most 8 of them inline.
    let mut index = [0usize; 16];
    assert!(rank <= 16, "broadcast of rank {rank} exceeds 16");
    let mut base = [0usize; K];
    let mut out_index = 0;
    for _ in 0..outer {
        let mut offsets = base;
        for _ in 0..inner {
            f(out_index, offsets);
            out_index += 1;
            for k in 0..K {
                offsets[k] += inner_strides[k];
            }
        }
        // Advance the odometer over axes rank-2 down to 0.
        let mut axis = rank - 1;
        while axis > 0 {
            axis -= 1;
            index[axis] += 1;
            for k in 0..K {
                base[k] += strides[k][axis];
            }
            if index[axis] < out_shape[axis] {
                break;
            }
            for k in 0..K {
                base[k] -= strides[k][axis] * out_shape[axis];
            }
            index[axis] = 0;
        }
    }
}

/// `out = f(a, b)` with numpy broadcasting (see the module docs for the stride convention).
#[inline]
pub fn zip<A: Copy, B: Copy, O>(
    a: &[A],
    a_strides: &[usize],
    b: &[B],
    b_strides: &[usize],
    out: &mut [O],
    out_shape: &[usize],
    f: impl Fn(A, B) -> O,
) {
    let n = out.len();
    if a.len() == n && b.len() == n {
        zip_same(a, b, out, &f);
    } else if a.len() == n && b.len() == 1 {
        let y = b[0];
        for (o, &x) in out.iter_mut().zip(a) {
            *o = f(x, y);
        }
    } else if a.len() == 1 && b.len() == n {
        let x = a[0];
        for (o, &y) in out.iter_mut().zip(b) {
            *o = f(x, y);
        }
    } else {
        zip_rows(a, a_strides, b, b_strides, out, out_shape, 0, &f);
    }
}

/// `out[i] = f(a[i], b[i])` over equal lengths.
#[inline]
fn zip_same<A: Copy, B: Copy, O>(a: &[A], b: &[B], out: &mut [O], f: &impl Fn(A, B) -> O) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
}

/// Elements below which [`zip_exec`] stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;

/// [`zip`] with the output split across `exec`'s threads when it is big.
#[allow(
    clippy::too_many_arguments,
    reason = "zip's operands plus the executor"
)]
pub fn zip_exec<A: Copy + Sync, B: Copy + Sync, O: Send>(
    exec: &crate::threads::Exec,
    a: &[A],
    a_strides: &[usize],
    b: &[B],
    b_strides: &[usize],
    out: &mut [O],
    out_shape: &[usize],
    f: impl Fn(A, B) -> O + Sync,
) {
    let n = out.len();
    let inner = out_shape.last().copied().unwrap_or(1).max(1);
    if exec.threads() == 1 || n < PARALLEL_MIN || !n.is_multiple_of(inner) {
        return zip(a, a_strides, b, b_strides, out, out_shape, f);
    }
    // Whole rows of the innermost axis per task, a few tasks per thread.
    let rows_per_task = (n / inner).div_ceil(4 * exec.threads()).max(1);
    let full = a.len() == n && b.len() == n;
    exec.for_each_chunk(out, rows_per_task * inner, &|t, part| {
        let start = t * rows_per_task * inner;
        if full {
            zip_same(
                &a[start..][..part.len()],
                &b[start..][..part.len()],
                part,
                &f,
            );
        } else {
            zip_rows(
                a,
                a_strides,
                b,
                b_strides,
                part,
                out_shape,
                start / inner,
                &f,
            );
        }
    });
}

/// The broadcasting zip over whole rows of the innermost axis, `out` holding the rows from
/// `first_row` on: each row runs a loop specialized for its operands' inner strides
/// (contiguous, or one operand constant along the row), which the compiler vectorizes.
#[allow(
    clippy::too_many_arguments,
    reason = "zip's operands plus the first row"
)]
fn zip_rows<A: Copy, B: Copy, O>(
    a: &[A],
    a_strides: &[usize],
    b: &[B],
    b_strides: &[usize],
    out: &mut [O],
    out_shape: &[usize],
    first_row: usize,
    f: &impl Fn(A, B) -> O,
) {
    let rank = out_shape.len();
    if rank == 0 {
        if let Some(o) = out.first_mut() {
            *o = f(a[0], b[0]);
        }
        return;
    }
    if out_shape.contains(&0) {
        return;
    }
    let inner = out_shape[rank - 1];
    let (sa, sb) = (a_strides[rank - 1], b_strides[rank - 1]);
    // The odometer over the outer axes, started at `first_row`.
    let mut index = [0usize; 16];
    assert!(rank <= 16, "broadcast of rank {rank} exceeds 16");
    let (mut base_a, mut base_b) = (0, 0);
    let mut rest = first_row;
    for axis in (0..rank - 1).rev() {
        index[axis] = rest % out_shape[axis];
        rest /= out_shape[axis];
        base_a += index[axis] * a_strides[axis];
        base_b += index[axis] * b_strides[axis];
    }
    for row in out.chunks_exact_mut(inner) {
        match (sa, sb) {
            (1, 1) => {
                let (x, y) = (&a[base_a..][..inner], &b[base_b..][..inner]);
                for ((o, &p), &q) in row.iter_mut().zip(x).zip(y) {
                    *o = f(p, q);
                }
            }
            (1, 0) => {
                let (x, q) = (&a[base_a..][..inner], b[base_b]);
                for (o, &p) in row.iter_mut().zip(x) {
                    *o = f(p, q);
                }
            }
            (0, 1) => {
                let (p, y) = (a[base_a], &b[base_b..][..inner]);
                for (o, &q) in row.iter_mut().zip(y) {
                    *o = f(p, q);
                }
            }
            _ => {
                for (i, o) in row.iter_mut().enumerate() {
                    *o = f(a[base_a + i * sa], b[base_b + i * sb]);
                }
            }
        }
        let mut axis = rank - 1;
        while axis > 0 {
            axis -= 1;
            index[axis] += 1;
            base_a += a_strides[axis];
            base_b += b_strides[axis];
            if index[axis] < out_shape[axis] {
                break;
            }
            base_a -= a_strides[axis] * out_shape[axis];
            base_b -= b_strides[axis] * out_shape[axis];
            index[axis] = 0;
        }
    }
}

/// `out = f(out, b)` in place, `b` broadcast to `out`'s shape: the step that folds the third
/// and later inputs of a variadic op (Sum, Max, ...) into the output.
#[inline]
pub fn zip_assign<T: Copy, B: Copy>(
    out: &mut [T],
    out_shape: &[usize],
    b: &[B],
    b_strides: &[usize],
    f: impl Fn(T, B) -> T,
) {
    if b.len() == out.len() {
        for (o, &y) in out.iter_mut().zip(b) {
            *o = f(*o, y);
        }
    } else if let [y] = b {
        // A scalar operand (`x / 6` in hard-swish): one loop the compiler vectorizes.
        for o in out.iter_mut() {
            *o = f(*o, *y);
        }
    } else {
        for_each_index(out_shape, [b_strides], |i, [ib]| {
            out[i] = f(out[i], b[ib]);
        });
    }
}

/// `out = f(a, b, c)` with numpy broadcasting (Where, Clip with tensor bounds, ...).
#[allow(
    clippy::too_many_arguments,
    reason = "three strided inputs, one output and the function"
)]
#[inline]
pub fn zip3<A: Copy, B: Copy, C: Copy, O>(
    a: &[A],
    a_strides: &[usize],
    b: &[B],
    b_strides: &[usize],
    c: &[C],
    c_strides: &[usize],
    out: &mut [O],
    out_shape: &[usize],
    f: impl Fn(A, B, C) -> O,
) {
    let rank = out_shape.len();
    let inner = out_shape.last().copied().unwrap_or(1);
    let unit = |s: &[usize]| s.last().is_some_and(|&st| st <= 1);
    if rank > 1 && inner > 1 && unit(a_strides) && unit(b_strides) && unit(c_strides) {
        // Whole rows at a time: along the last axis each input either runs (stride 1) or
        // repeats one element (stride 0), so a row is a slice or a value.
        let (sa, sb, sc) = (
            a_strides[rank - 1],
            b_strides[rank - 1],
            c_strides[rank - 1],
        );
        let outer = [
            &a_strides[..rank - 1],
            &b_strides[..rank - 1],
            &c_strides[..rank - 1],
        ];
        for_each_index(&out_shape[..rank - 1], outer, |row, [ia, ib, ic]| {
            let o = &mut out[row * inner..(row + 1) * inner];
            let (ra, rb, rc) = (
                &a[ia..ia + 1 + (inner - 1) * sa],
                &b[ib..ib + 1 + (inner - 1) * sb],
                &c[ic..ic + 1 + (inner - 1) * sc],
            );
            // One loop per pattern, each over plain slices (`$a` names a running input, `$s`
            // a repeated one), so that the compiler sees contiguous runs.
            macro_rules! rows {
                ($(($pa:literal, $pb:literal, $pc:literal)),*) => {
                    match (sa, sb, sc) {
                        $(($pa, $pb, $pc) => {
                            for (j, o) in o.iter_mut().enumerate() {
                                *o = f(ra[j * $pa], rb[j * $pb], rc[j * $pc]);
                            }
                        })*
                        _ => {
                            for (j, o) in o.iter_mut().enumerate() {
                                *o = f(ra[j * sa], rb[j * sb], rc[j * sc]);
                            }
                        }
                    }
                };
            }
            rows!(
                (1, 1, 1),
                (1, 0, 0),
                (1, 0, 1),
                (1, 1, 0),
                (0, 1, 1),
                (0, 0, 1),
                (0, 1, 0)
            );
        });
        return;
    }
    for_each_index(
        out_shape,
        [a_strides, b_strides, c_strides],
        |i, [ia, ib, ic]| {
            out[i] = f(a[ia], b[ib], c[ic]);
        },
    );
}

/// Copies `src` into `out`, broadcast to `out_shape` (Expand, and graph outputs that alias a
/// broadcast value).
#[inline]
pub fn broadcast_copy<T: Copy>(
    src: &[T],
    src_strides: &[usize],
    out: &mut [T],
    out_shape: &[usize],
) {
    if src.len() == out.len() {
        out.copy_from_slice(src);
    } else {
        for_each_index(out_shape, [src_strides], |i, [is]| out[i] = src[is]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip3_rows_match_element_by_element() {
        // cond [2, 1, 4] (runs along the last axis), x [3, 1] (repeats), y scalar: [2, 3, 4].
        let cond: [u8; 8] = [1, 0, 1, 1, 0, 0, 1, 0];
        let (x, y) = ([10.0f32, 20.0, 30.0], [-1.0f32]);
        let shape = [2usize, 3, 4];
        let (sc, sx, sy) = ([4usize, 0, 1], [0usize, 1, 0], [0usize, 0, 0]);
        let mut rows = [0.0f32; 24];
        zip3(
            &cond,
            &sc,
            &x,
            &sx,
            &y,
            &sy,
            &mut rows,
            &shape,
            |c, a, b| if c != 0 { a } else { b },
        );
        let mut want = [0.0f32; 24];
        for (i, w) in want.iter_mut().enumerate() {
            let (p, q, r) = (i / 12, (i / 4) % 3, i % 4);
            *w = if cond[p * 4 + r] != 0 { x[q] } else { y[0] };
        }
        assert_eq!(rows, want);
    }

    #[test]
    fn zip_broadcasts_rows_and_columns() {
        // a: [2, 1] = [1, 2]; b: [3] = [10, 20, 30]; out: [2, 3].
        let a = [1.0f32, 2.0];
        let b = [10.0f32, 20.0, 30.0];
        let mut out = [0.0f32; 6];
        zip(&a, &[1, 0], &b, &[0, 1], &mut out, &[2, 3], |x, y| x + y);
        assert_eq!(out, [11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    }

    #[test]
    fn threaded_zip_matches_the_serial_one() {
        // [2, 3, 128, 200] with operands broadcast along every pattern the row loops have
        // (under Miri [2, 3, 4, 20]: one call).
        let (h, w) = if cfg!(miri) { (4, 20) } else { (128, 200) };
        let shape = [2usize, 3, h, w];
        let n: usize = shape.iter().product();
        let full: std::vec::Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.5).collect();
        let per_channel: std::vec::Vec<f32> = (0..6).map(|i| i as f32 - 2.0).collect();
        let column: std::vec::Vec<f32> = (0..w).map(|i| i as f32 * 0.25).collect();
        let strides_full = [3 * h * w, h * w, w, 1];
        let cases: [(&[f32], [usize; 4]); 3] = [
            (&full, strides_full),
            (&per_channel, [3, 1, 0, 0]),
            (&column, [0, 0, 0, 1]),
        ];
        for (b, sb) in cases {
            let mut serial = std::vec![0.0f32; n];
            zip(&full, &strides_full, b, &sb, &mut serial, &shape, |x, y| {
                x * y + 1.0
            });
            let threads: &[usize] = if cfg!(miri) { &[2] } else { &[1, 2, 3] };
            for &threads in threads {
                let exec = crate::threads::Exec::with_threads(threads);
                let mut parallel = std::vec![0.0f32; n];
                zip_exec(
                    &exec,
                    &full,
                    &strides_full,
                    b,
                    &sb,
                    &mut parallel,
                    &shape,
                    |x, y| x * y + 1.0,
                );
                assert_eq!(serial, parallel, "{threads} threads, b strides {sb:?}");
                // And the operands swapped (the constant-along-the-row operand first).
                zip_exec(
                    &exec,
                    b,
                    &sb,
                    &full,
                    &strides_full,
                    &mut parallel,
                    &shape,
                    |y, x| x * y + 1.0,
                );
                assert_eq!(
                    serial, parallel,
                    "{threads} threads, swapped, b strides {sb:?}"
                );
            }
        }
    }

    #[test]
    fn odometer_covers_rank_three() {
        let shape = [2, 3, 2];
        let strides = [6, 2, 1];
        let mut seen = std::vec::Vec::new();
        for_each_index(&shape, [&strides[..]], |i, [o]| seen.push((i, o)));
        assert_eq!(seen.len(), 12);
        assert!(seen.iter().all(|&(i, o)| i == o));
        // Broadcast along the middle axis.
        let mut offsets = std::vec::Vec::new();
        for_each_index(&shape, [&[2usize, 0, 1][..]], |_, [o]| offsets.push(o));
        assert_eq!(offsets, [0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3]);
    }

    #[test]
    fn empty_and_scalar_shapes() {
        let mut out: [f32; 0] = [];
        zip(
            &[1.0f32],
            &[0],
            &[],
            &[1],
            &mut out,
            &[0],
            |x: f32, y: f32| x + y,
        );
        let mut scalar = [0i64];
        zip3(
            &[1u8],
            &[],
            &[5i64],
            &[],
            &[7i64],
            &[],
            &mut scalar,
            &[],
            |c, x, y| if c != 0 { x } else { y },
        );
        assert_eq!(scalar, [5]);
    }
}
