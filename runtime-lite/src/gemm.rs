//! f32 matrix multiplication: `out (+)= alpha * A x B` over strided operands.
//!
//! A cache-blocked kernel: panels of A (`MC x KC`) and B (`KC x NR`) are packed into stack
//! buffers, and an `MR x NR` register tile accumulates each output block. Written so that the
//! compiler vectorizes the tile for whatever the target enables; hand-written SIMD
//! microkernels slot in behind the same entry point.

const MR: usize = 4;
const NR: usize = 16;
const KC: usize = 256;
const MC: usize = 64;

/// Strides of a matrix operand, in elements: `element(i, j) = data[i * rows + j * cols]`.
#[derive(Clone, Copy, Debug)]
pub struct Strides {
    /// Distance between consecutive rows.
    pub rows: usize,
    /// Distance between consecutive columns.
    pub cols: usize,
}

/// `out[m x n] = alpha * A[m x k] * B[k x n]`, or `+=` when `accumulate` is set (the caller
/// has already written `beta * C` into `out`). `out` is row-major and contiguous.
///
/// Panics if an operand is too short for its shape and strides.
#[allow(
    clippy::too_many_arguments,
    reason = "a BLAS-style signature: shapes, operands, strides"
)]
pub fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    a_strides: Strides,
    b: &[f32],
    b_strides: Strides,
    accumulate: bool,
    out: &mut [f32],
) {
    assert!(out.len() >= m * n, "gemm output too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    let last = |s: Strides, r: usize, c: usize| (r - 1) * s.rows + (c - 1) * s.cols;
    assert!(a.len() > last(a_strides, m, k), "gemm A too short");
    assert!(b.len() > last(b_strides, k, n), "gemm B too short");

    let mut a_pack = [0.0f32; MC * KC];
    let mut b_pack = [0.0f32; KC * NR];
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let overwrite = k0 == 0 && !accumulate;
        let mut i0 = 0;
        while i0 < m {
            let mc = MC.min(m - i0);
            pack_a(a, a_strides, i0, mc, k0, kc, &mut a_pack);
            let mut j0 = 0;
            while j0 < n {
                let nr = NR.min(n - j0);
                pack_b(b, b_strides, k0, kc, j0, nr, &mut b_pack);
                let mut r0 = 0;
                while r0 < mc {
                    let mr = MR.min(mc - r0);
                    let tile = micro_tile(&a_pack[r0 * KC..], &b_pack, kc);
                    for (r, row) in tile.iter().enumerate().take(mr) {
                        let o = &mut out[(i0 + r0 + r) * n + j0..][..nr];
                        if overwrite {
                            for (dst, &v) in o.iter_mut().zip(row) {
                                *dst = alpha * v;
                            }
                        } else {
                            for (dst, &v) in o.iter_mut().zip(row) {
                                *dst += alpha * v;
                            }
                        }
                    }
                    r0 += MR;
                }
                j0 += NR;
            }
            i0 += MC;
        }
        k0 += KC;
    }
}

/// A batch of row-major products `out[i] = A[ia] x B[ib]` (MatMul): for each index of
/// `batch_shape`, `ia` and `ib` are that index dotted with `a_strides` / `b_strides` (element
/// offsets, 0 along broadcast axes), and `out` holds the `m x n` results back to back.
#[allow(
    clippy::too_many_arguments,
    reason = "batch geometry, matrix shape and the operands"
)]
pub fn batched_gemm_f32(
    batch_shape: &[usize],
    a_strides: &[usize],
    b_strides: &[usize],
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
) {
    let (sa, sb) = (Strides { rows: k, cols: 1 }, Strides { rows: n, cols: 1 });
    crate::elementwise::for_each_index(batch_shape, [a_strides, b_strides], |i, [ia, ib]| {
        gemm_f32(
            m,
            n,
            k,
            1.0,
            &a[ia..],
            sa,
            &b[ib..],
            sb,
            false,
            &mut out[i * m * n..],
        );
    });
}

/// Packs rows `i0..i0+mc`, columns `k0..k0+kc` of A into groups of `MR` rows, each group
/// stored k-major: `pack[group * MR * KC + p * MR + r]`. Rows past `mc` are zero.
fn pack_a(a: &[f32], s: Strides, i0: usize, mc: usize, k0: usize, kc: usize, pack: &mut [f32]) {
    let groups = mc.div_ceil(MR);
    for g in 0..groups {
        let dst = &mut pack[g * MR * KC..][..kc * MR];
        for r in 0..MR {
            let row = g * MR + r;
            if row < mc {
                let base = (i0 + row) * s.rows + k0 * s.cols;
                for p in 0..kc {
                    dst[p * MR + r] = a[base + p * s.cols];
                }
            } else {
                for p in 0..kc {
                    dst[p * MR + r] = 0.0;
                }
            }
        }
    }
}

/// Packs rows `k0..k0+kc`, columns `j0..j0+nr` of B as `pack[p * NR + j]`, zero past `nr`.
fn pack_b(b: &[f32], s: Strides, k0: usize, kc: usize, j0: usize, nr: usize, pack: &mut [f32]) {
    for p in 0..kc {
        let dst = &mut pack[p * NR..][..NR];
        let base = (k0 + p) * s.rows + j0 * s.cols;
        if s.cols == 1 {
            dst[..nr].copy_from_slice(&b[base..base + nr]);
        } else {
            for (j, d) in dst.iter_mut().enumerate().take(nr) {
                *d = b[base + j * s.cols];
            }
        }
        dst[nr..].fill(0.0);
    }
}

/// One `MR x NR` output tile over `kc` packed steps (the part `a` points at is one A group).
#[inline(always)]
fn micro_tile(a: &[f32], b: &[f32], kc: usize) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for p in 0..kc {
        let bv: &[f32; NR] = b[p * NR..p * NR + NR]
            .try_into()
            .expect("NR-wide panel row");
        let av: &[f32; MR] = a[p * MR..p * MR + MR]
            .try_into()
            .expect("MR-wide panel column");
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] += av[r] * bv[j];
            }
        }
    }
    acc
}

/// A batch of row-major products for element types without a blocked kernel (MatMul on
/// f64 and integers, MatMulInteger): as [`batched_gemm_f32`], with each element of A and B
/// read through `load_a` / `load_b` into the accumulator type `Acc` and combined by
/// `mul_add(acc, a, b)`.
#[allow(
    clippy::too_many_arguments,
    reason = "batch geometry, matrix shape, the operands and the arithmetic"
)]
pub fn batched_matmul<A: Copy, B: Copy, Acc: Copy>(
    batch_shape: &[usize],
    a_strides: &[usize],
    b_strides: &[usize],
    m: usize,
    n: usize,
    k: usize,
    a: &[A],
    b: &[B],
    out: &mut [Acc],
    zero: Acc,
    mul_add: impl Fn(Acc, A, B) -> Acc,
) {
    crate::elementwise::for_each_index(batch_shape, [a_strides, b_strides], |i, [ia, ib]| {
        let (a, b) = (&a[ia..][..m * k], &b[ib..][..k * n]);
        let o = &mut out[i * m * n..][..m * n];
        o.fill(zero);
        for r in 0..m {
            let row = &mut o[r * n..][..n];
            for p in 0..k {
                let av = a[r * k + p];
                for (dst, &bv) in row.iter_mut().zip(&b[p * n..][..n]) {
                    *dst = mul_add(*dst, av, bv);
                }
            }
        }
    });
}

/// `out[m x n] = A[m x k] * B[k x n]` over strided operands for element types without a
/// blocked kernel (Gemm on f64 and integers), combining through `mul_add(acc, a, b)`.
#[allow(
    clippy::too_many_arguments,
    reason = "a BLAS-style signature plus the arithmetic"
)]
pub fn gemm_generic<T: Copy>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_strides: Strides,
    b: &[T],
    b_strides: Strides,
    out: &mut [T],
    zero: T,
    mul_add: impl Fn(T, T, T) -> T,
) {
    let o = &mut out[..m * n];
    o.fill(zero);
    for r in 0..m {
        let row = &mut o[r * n..][..n];
        for p in 0..k {
            let av = a[r * a_strides.rows + p * a_strides.cols];
            for (j, dst) in row.iter_mut().enumerate() {
                *dst = mul_add(*dst, av, b[p * b_strides.rows + j * b_strides.cols]);
            }
        }
    }
}

/// `QLinearMatMul` with scalar quantization parameters: for each product element,
/// `acc = sum (a - a_zero) * (b - b_zero)` in i32, then `store(rint(acc * multiplier) +
/// y_zero)` (`store` saturates to the output type). Batch geometry as [`batched_gemm_f32`].
#[allow(
    clippy::too_many_arguments,
    reason = "batch geometry, matrix shape, operands and quantization parameters"
)]
pub fn qlinear_matmul<T: Copy, O>(
    batch_shape: &[usize],
    a_strides: &[usize],
    b_strides: &[usize],
    (m, n, k): (usize, usize, usize),
    a: &[T],
    b: &[T],
    out: &mut [O],
    (a_zero, b_zero, y_zero): (i32, i32, i32),
    multiplier: f64,
    load: impl Fn(T) -> i32,
    store: impl Fn(f64) -> O,
) {
    crate::elementwise::for_each_index(batch_shape, [a_strides, b_strides], |bi, [ia, ib]| {
        let (a, b) = (&a[ia..][..m * k], &b[ib..][..k * n]);
        let o = &mut out[bi * m * n..][..m * n];
        for r in 0..m {
            for j in 0..n {
                let mut acc = 0i32;
                for p in 0..k {
                    let x = load(a[r * k + p]) - a_zero;
                    let y = load(b[p * n + j]) - b_zero;
                    acc = acc.wrapping_add(x.wrapping_mul(y));
                }
                let v = crate::math64::round_half_even_f64(f64::from(acc) * multiplier);
                o[r * n + j] = store(v + f64::from(y_zero));
            }
        }
    });
}

/// A batch of row-major products of a storage type converted to f32 (MatMul on float16):
/// each output element is an f32 dot product of `load`ed elements, written through `store`.
/// Batch geometry as [`batched_gemm_f32`].
#[allow(
    clippy::too_many_arguments,
    reason = "batch geometry, matrix shape, the operands and the conversions"
)]
pub fn batched_matmul_converted<T: Copy>(
    batch_shape: &[usize],
    a_strides: &[usize],
    b_strides: &[usize],
    (m, n, k): (usize, usize, usize),
    a: &[T],
    b: &[T],
    out: &mut [T],
    load: impl Fn(T) -> f32,
    store: impl Fn(f32) -> T,
) {
    crate::elementwise::for_each_index(batch_shape, [a_strides, b_strides], |i, [ia, ib]| {
        let (a, b) = (&a[ia..][..m * k], &b[ib..][..k * n]);
        let o = &mut out[i * m * n..][..m * n];
        for r in 0..m {
            for j in 0..n {
                let mut acc = 0.0f32;
                for p in 0..k {
                    acc += load(a[r * k + p]) * load(b[p * n + j]);
                }
                o[r * n + j] = store(acc);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn reference(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        sa: Strides,
        b: &[f32],
        sb: Strides,
    ) -> Vec<f32> {
        let mut out = std::vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    s += a[i * sa.rows + p * sa.cols] as f64 * b[p * sb.rows + j * sb.cols] as f64;
                }
                out[i * n + j] = s as f32;
            }
        }
        out
    }

    #[test]
    fn qlinear_and_converted_matmul() {
        // (a - 1) . (b - 2) = [1, 2] . [3, 4] = 11; * 0.5 -> 5.5 rounds to even 6; + 10.
        let mut out = [0u8];
        qlinear_matmul(
            &[],
            &[],
            &[],
            (1, 1, 2),
            &[2u8, 3],
            &[5u8, 6],
            &mut out,
            (1, 2, 10),
            0.5,
            i32::from,
            |v: f64| v.clamp(0.0, 255.0) as u8,
        );
        assert_eq!(out, [16]);
        let mut o = [0.0f32];
        batched_matmul_converted(
            &[],
            &[],
            &[],
            (1, 1, 2),
            &[1.0f32, 2.0],
            &[3.0f32, 4.0],
            &mut o,
            |v| v,
            |v| v,
        );
        assert_eq!(o, [11.0]);
    }

    #[test]
    fn generic_matmul_of_integers() {
        let a = [1i32, 2, 3, 4];
        let b = [5i32, 6, 7, 8];
        let mut out = [0i32; 4];
        batched_matmul(&[], &[], &[], 2, 2, 2, &a, &b, &mut out, 0, |acc, x, y| {
            acc.wrapping_add(x.wrapping_mul(y))
        });
        assert_eq!(out, [19, 22, 43, 50]);
    }

    #[test]
    fn awkward_shapes_match_reference() {
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (4, 16, 256),
            (65, 17, 300),
            (2, 33, 1),
            (0, 3, 3),
            (3, 0, 2),
            (5, 4, 0),
        ];
        for &(m, n, k) in &shapes {
            for trans_b in [false, true] {
                let a: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.25)
                    .collect();
                let b: Vec<f32> = (0..k * n)
                    .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.5)
                    .collect();
                let sa = Strides { rows: k, cols: 1 };
                let sb = if trans_b {
                    Strides { rows: 1, cols: k }
                } else {
                    Strides { rows: n, cols: 1 }
                };
                let want = reference(m, n, k, &a, sa, &b, sb);
                let mut out = std::vec![f32::NAN; m * n];
                gemm_f32(m, n, k, 1.0, &a, sa, &b, sb, false, &mut out);
                for (x, y) in out.iter().zip(&want) {
                    assert!(
                        (x - y).abs() <= 1e-3 * y.abs().max(1.0),
                        "{m}x{n}x{k}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
