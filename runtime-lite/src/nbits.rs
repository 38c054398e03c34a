//! Products with 4-bit or 8-bit block-quantized weights, read in place: ONNX Runtime's
//! `com.microsoft:MatMulNBits` (`Y = A · dequant(B)ᵀ + bias`).
//!
//! 8-bit weights ([`matmul_nbits_bytes_f32`]) are one a byte, `B: [N, blocks, block]`, with one
//! zero point a byte per block (128 when there are none); each 16 of them are widened,
//! offset and scaled in registers and multiplied with up to four rows of `A` where it lies.
//! 2-bit weights (the same function) go the same way, four a byte (the first in the low
//! bits), zero points four a byte (2 when there are none): 16 codes are one 32-bit word,
//! shifted apart per lane. The rest of this page is about 4-bit weights.
//!
//! `B` is `[N, blocks, block / 2]` bytes: column `n` of the product holds `K` weights (padded to
//! whole blocks), two a byte, the even element in the low nibble. Each block of `block`
//! weights has a float scale and a 4-bit zero point (packed two a byte, the even block in the
//! low nibble; 8 when there are none), and a weight is `(code - zero_point) * scale`.
//!
//! The kernel never expands `B`: it walks each column in chunks of 32 weights (16 bytes),
//! turns the chunk's low and high nibbles into two vectors of 16 weights, and multiplies them
//! with the matching elements of up to eight rows of `A` at once. Because the low nibbles hold
//! the even elements, `A` is first copied once into a scratch layout with, per chunk, its 16
//! even elements then its 16 odd ones (zero past `K`), so that the inner loop loads both
//! halves straight. Columns are split across threads; each column's sum has one order on every
//! thread count. The AVX-512 path uses intrinsics; other CPUs run the portable body, compiled
//! for AVX2+FMA where present.

use crate::threads::{Exec, SharedMut};

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

/// Weights per chunk (16 bytes of 4-bit codes).
const CHUNK: usize = 32;
/// Rows of `A` multiplied with one decoded chunk at a time, at most.
const MAX_ROWS: usize = 8;
/// Columns decoded side by side when there are few rows.
const COLS: usize = 4;

/// Each block's zero point in a block-quantized product.
#[derive(Debug, Clone, Copy)]
pub enum ZeroPoints<'a> {
    /// None given: the middle code, 8 for 4-bit weights and 128 for 8-bit ones.
    Default,
    /// Integer codes: for 4-bit weights two a byte (the even block in the low nibble),
    /// `[n, ceil(blocks / 2)]`; for 8-bit weights one a byte, `[n, blocks]`.
    Codes(&'a [u8]),
    /// Floats, one a block, `[n, blocks]`: a weight is `(code - zero_point) * scale` in f32.
    Floats(&'a [f32]),
}

/// The shape of one 4-bit product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NBits {
    /// Rows of `A` and `Y`.
    pub m: usize,
    /// Columns of `Y` (rows of `B`).
    pub n: usize,
    /// The reduction length.
    pub k: usize,
    /// Weights per block: a power of two, at least 16.
    pub block: usize,
}

impl NBits {
    /// Blocks per column.
    pub const fn blocks(&self) -> usize {
        self.k.div_ceil(self.block)
    }
    /// 32-weight chunks per column (whole blocks, rounded up to a chunk).
    pub const fn chunks(&self) -> usize {
        (self.blocks() * self.block).div_ceil(CHUNK)
    }
    /// Bytes of `B`.
    pub const fn b_len(&self) -> usize {
        self.n * self.blocks() * self.block / 2
    }
    /// Bytes of 8-bit `B` ([`matmul_nbits_bytes_f32`]): one weight a byte.
    pub const fn b8_len(&self) -> usize {
        self.n * self.blocks() * self.block
    }
    /// Bytes of 2-bit `B` ([`matmul_nbits_bytes_f32`]): four weights a byte.
    pub const fn b2_len(&self) -> usize {
        self.n * self.blocks() * self.block / 4
    }
    /// Bytes of packed zero points.
    pub const fn zero_points_len(&self) -> usize {
        self.n * self.blocks().div_ceil(2)
    }
    /// Columns per task on `threads` threads: a few tasks per thread, of whole groups of
    /// [`COLS`] columns, each at least 64 K weights.
    fn columns_per_task(&self, threads: usize) -> usize {
        let min_cols = (65536 / (self.k * self.m).max(1)).max(COLS);
        self.n
            .div_ceil(threads * 2)
            .max(min_cols)
            .next_multiple_of(COLS)
            .min(self.n.max(1))
    }
    /// Checks what both widths' products share: the block size and the lengths of `a`, `y`
    /// and `bias`.
    fn check(&self, a: &[f32], y: &[f32], bias: Option<&[f32]>) {
        assert!(
            self.block >= 16 && self.block.is_power_of_two(),
            "block size"
        );
        assert!(
            a.len() >= self.m * self.k && y.len() >= self.m * self.n,
            "A or Y too short"
        );
        assert!(bias.is_none_or(|b| b.len() >= self.n), "bias too short");
    }
    /// Floats of scratch [`matmul_nbits4_f32`] needs: `A` rearranged by chunks.
    pub const fn scratch_len(&self) -> usize {
        self.m * self.chunks() * CHUNK
    }
}

/// `y = a · dequant(b)ᵀ (+ bias)` for `a: [m, k]`, `b` in ONNX Runtime's 4-bit layout (see the
/// module docs), `scales: [n, blocks]`, `zero_points` (see [`ZeroPoints`]), `bias: [n]`,
/// `y: [m, n]`; `scratch` holds [`NBits::scratch_len`] floats.
///
/// # Panics
/// When a slice is shorter than the shape needs.
#[allow(
    clippy::too_many_arguments,
    reason = "the operands of the ONNX op, each a plain slice"
)]
pub fn matmul_nbits4_f32(
    exec: &Exec,
    a: &[f32],
    b: &[u8],
    scales: &[f32],
    zero_points: ZeroPoints<'_>,
    bias: Option<&[f32]>,
    scratch: &mut [f32],
    y: &mut [f32],
    p: &NBits,
) {
    p.check(a, y, bias);
    assert!(
        b.len() >= p.b_len() && scales.len() >= p.n * p.blocks(),
        "B or scales too short"
    );
    assert!(
        match zero_points {
            ZeroPoints::Default => true,
            ZeroPoints::Codes(z) => z.len() >= p.zero_points_len(),
            ZeroPoints::Floats(z) => z.len() >= p.n * p.blocks(),
        },
        "zero points"
    );
    let stride = p.chunks() * CHUNK;
    let scratch = &mut scratch[..p.m * stride];
    // Per chunk: the even elements (the low nibbles' partners), then the odd ones.
    for (row, out) in a
        .chunks_exact(p.k)
        .take(p.m)
        .zip(scratch.chunks_exact_mut(stride))
    {
        for (c, chunk) in out.chunks_exact_mut(CHUNK).enumerate() {
            for l in 0..CHUNK / 2 {
                let e = c * CHUNK + 2 * l;
                chunk[l] = row.get(e).copied().unwrap_or(0.0);
                chunk[CHUNK / 2 + l] = row.get(e + 1).copied().unwrap_or(0.0);
            }
        }
    }
    let scratch: &[f32] = scratch;
    let operands = Operands {
        a: scratch,
        stride,
        b,
        scales,
        zero_points,
        p: *p,
    };
    let avx512 = crate::gemm_x86_64::has_avx512();
    let avx2 = crate::gemm_x86_64::has_avx2_fma();
    for_column_tiles::<MAX_ROWS>(exec, p, bias, y, &|n, width, row, rows| {
        operands.tile(n, width, row, rows, avx512, avx2)
    });
}

/// Runs `tile(n, width, row, rows)`, the sums of columns `n..n + width` (`width` 1 or
/// [`COLS`]) with rows `row..row + rows` (at most `R`) indexed `[column][row]`, over the whole
/// product, and writes them plus `bias` into `y: [m, n]`. Threads split the columns, a few
/// tasks each of whole groups of [`COLS`] ([`NBits::columns_per_task`]); each column's sums
/// are one task's, so every thread count gives the same bits.
fn for_column_tiles<const R: usize>(
    exec: &Exec,
    p: &NBits,
    bias: Option<&[f32]>,
    y: &mut [f32],
    tile: &(dyn Fn(usize, usize, usize, usize) -> [[f32; R]; COLS] + Sync),
) {
    let per_task = p.columns_per_task(exec.threads());
    let tasks = p.n.div_ceil(per_task);
    let shared = SharedMut::new(&mut y[..p.m * p.n]);
    exec.for_each(tasks, &|t| {
        let n0 = t * per_task;
        let cols = per_task.min(p.n - n0);
        let mut row = 0;
        while row < p.m {
            let rows = (p.m - row).min(R);
            let mut outs: [&mut [f32]; R] = core::array::from_fn(|r| {
                if r < rows {
                    // SAFETY: each task writes columns [n0, n0 + cols) of its rows, and no
                    // other task those columns: the ranges of tasks and rows are disjoint.
                    unsafe { shared.slice((row + r) * p.n + n0, cols) }
                } else {
                    &mut []
                }
            });
            let mut j = 0;
            while j < cols {
                let width = if cols - j >= COLS { COLS } else { 1 };
                let sums = tile(n0 + j, width, row, rows);
                for (c, sums) in sums.iter().enumerate().take(width) {
                    for (r, out) in outs.iter_mut().take(rows).enumerate() {
                        out[j + c] = sums[r] + bias.map_or(0.0, |b| b[n0 + j + c]);
                    }
                }
                j += width;
            }
            row += rows;
        }
    });
}

/// Everything one column's sums read.
struct Operands<'a> {
    a: &'a [f32],
    stride: usize,
    b: &'a [u8],
    scales: &'a [f32],
    zero_points: ZeroPoints<'a>,
    p: NBits,
}

impl Operands<'_> {
    /// The zero point of block `blk` of column `n`.
    #[inline(always)]
    fn zero_point(&self, n: usize, blk: usize) -> f32 {
        match self.zero_points {
            ZeroPoints::Default => 8.0,
            ZeroPoints::Codes(z) => {
                let byte = z[n * self.p.blocks().div_ceil(2) + blk / 2];
                f32::from((byte >> (4 * (blk % 2))) & 15)
            }
            ZeroPoints::Floats(z) => z[n * self.p.blocks() + blk],
        }
    }

    /// Chunk `c` of column `n`: its 16 bytes (zero past the column's last block) and, per
    /// lane, the scale and zero point (lanes 0..8 and 8..16 differ for 16-weight blocks).
    #[inline(always)]
    fn chunk(&self, n: usize, c: usize) -> ([u8; 16], [f32; 2], [f32; 2]) {
        let blocks = self.p.blocks();
        let column = n * blocks * self.p.block / 2;
        let end = column + blocks * self.p.block / 2;
        let start = column + c * 16;
        let mut bytes = [0u8; 16];
        let have = (end - start).min(16);
        bytes[..have].copy_from_slice(&self.b[start..start + have]);
        let first = c * CHUNK / self.p.block;
        let second = (c * CHUNK + 16) / self.p.block;
        let scale = |blk: usize| {
            if blk < blocks {
                self.scales[n * blocks + blk]
            } else {
                0.0
            }
        };
        let zp = |blk: usize| {
            if blk < blocks {
                self.zero_point(n, blk)
            } else {
                8.0
            }
        };
        (
            bytes,
            [scale(first), scale(second)],
            [zp(first), zp(second)],
        )
    }

    /// The sums of columns `n..n + width` (`width` 1 or [`COLS`]) with rows
    /// `row..row + rows` (at most [`MAX_ROWS`]), indexed `[column][row]`.
    fn tile(
        &self,
        n: usize,
        width: usize,
        row: usize,
        rows: usize,
        avx512: bool,
        avx2: bool,
    ) -> [[f32; MAX_ROWS]; COLS] {
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            // SAFETY: AVX-512F is present (checked at run time).
            return unsafe {
                match (width == COLS, self.p.block == 16) {
                    (true, true) => self.rows_avx512::<COLS, true>(n, row, rows),
                    (true, false) => self.rows_avx512::<COLS, false>(n, row, rows),
                    (false, true) => self.rows_avx512::<1, true>(n, row, rows),
                    (false, false) => self.rows_avx512::<1, false>(n, row, rows),
                }
            };
        }
        let mut sums = [[0.0f32; MAX_ROWS]; COLS];
        for (c, sums) in sums.iter_mut().enumerate().take(width) {
            *sums = self.column(n + c, row, rows, avx2);
        }
        sums
    }

    /// The sums of column `n` with rows `row..row + rows` on the portable path.
    fn column(&self, n: usize, row: usize, rows: usize, avx2: bool) -> [f32; MAX_ROWS] {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2 and FMA are present (checked at run time).
            return unsafe { self.column_avx2(n, row, rows) };
        }
        let _ = avx2;
        self.column_portable(n, row, rows)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn column_avx2(&self, n: usize, row: usize, rows: usize) -> [f32; MAX_ROWS] {
        self.column_portable(n, row, rows)
    }

    /// The portable body: one 32-weight chunk decoded into two arrays, then multiplied with
    /// every row.
    #[inline(always)]
    fn column_portable(&self, n: usize, row: usize, rows: usize) -> [f32; MAX_ROWS] {
        let mut acc = [[0.0f32; 16]; MAX_ROWS];
        for c in 0..self.p.chunks() {
            let (bytes, scale, zp) = self.chunk(n, c);
            let (mut lo, mut hi) = ([0.0f32; 16], [0.0f32; 16]);
            for l in 0..16 {
                let half = l / 8;
                lo[l] = (f32::from(bytes[l] & 15) - zp[half]) * scale[half];
                hi[l] = (f32::from(bytes[l] >> 4) - zp[half]) * scale[half];
            }
            for (r, acc) in acc.iter_mut().take(rows).enumerate() {
                let base = (row + r) * self.stride + c * CHUNK;
                let (even, odd) = self.a[base..base + CHUNK].split_at(16);
                for l in 0..16 {
                    acc[l] += even[l] * lo[l] + odd[l] * hi[l];
                }
            }
        }
        let mut sums = [0.0f32; MAX_ROWS];
        for (s, acc) in sums.iter_mut().zip(&acc) {
            *s = acc.iter().sum();
        }
        sums
    }

    /// [`Operands::tile_avx512`] over `rows` rows (at most [`MAX_ROWS`]) in tiles of 4, 3, 2 or
    /// 1 rows (8 for one column).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn rows_avx512<const C: usize, const SIXTEEN: bool>(
        &self,
        n: usize,
        row: usize,
        rows: usize,
    ) -> [[f32; MAX_ROWS]; COLS] {
        match rows {
            8.. if C == 1 => self.tile_avx512::<8, C, SIXTEEN>(n, row),
            4.. => self.tile_avx512::<4, C, SIXTEEN>(n, row).rows(rows, 4, || {
                self.rows_avx512::<C, SIXTEEN>(n, row + 4, rows - 4)
            }),
            3 => self.tile_avx512::<3, C, SIXTEEN>(n, row),
            2 => self.tile_avx512::<2, C, SIXTEEN>(n, row),
            _ => self.tile_avx512::<1, C, SIXTEEN>(n, row),
        }
    }

    /// `R` rows by `C` columns, from `row` and `n`; `SIXTEEN`: 16-weight blocks (two per
    /// chunk). Each column's chunk is decoded by looking its 4-bit codes up in a table of the
    /// block's 16 weights, `(code - zero_point) * scale` (two tables for 16-weight blocks).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn tile_avx512<const R: usize, const C: usize, const SIXTEEN: bool>(
        &self,
        n: usize,
        row: usize,
    ) -> [[f32; MAX_ROWS]; COLS] {
        use crate::gemm_x86_64::unroll;
        let p = &self.p;
        let (blocks, chunks) = (p.blocks(), p.chunks());
        let column_bytes = blocks * p.block / 2;
        // Only whole chunks are loaded 16 bytes at once; 16-weight blocks in odd number leave
        // a last half chunk, loaded 8 bytes.
        let half_last = SIXTEEN && blocks % 2 == 1;
        let per_block = (p.block / CHUNK).max(1);
        let iota = _mm512_cvtepi32_ps(_mm512_setr_epi32(
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        ));
        let second = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
        let low = _mm512_set1_epi32(15);
        let table = |col: usize, blk: usize| {
            if blk < blocks {
                let zp = _mm512_set1_ps(self.zero_point(col, blk));
                let s = _mm512_set1_ps(self.scales[col * blocks + blk]);
                _mm512_mul_ps(_mm512_sub_ps(iota, zp), s)
            } else {
                _mm512_setzero_ps()
            }
        };
        assert!(n + C <= p.n && row + R <= p.m, "tile outside the product");
        assert!(self.b.len() >= p.n * column_bytes, "B too short");
        let a = self.a[row * self.stride..(row + R) * self.stride].as_ptr();
        let mut acc = [[[_mm512_setzero_ps(); 2]; COLS]; MAX_ROWS];
        // Two accumulators a column and row (even and odd halves) when there are few of them,
        // so that enough multiply-adds run independently; else one.
        let split = R * C < 8;
        let mut tables = [[_mm512_setzero_ps(); 2]; COLS];
        for c in 0..chunks {
            let mut lo = [_mm512_setzero_ps(); COLS];
            let mut hi = [_mm512_setzero_ps(); COLS];
            unroll!(j in [0, 1, 2, 3] {
                if j < C {
                    let col = n + j;
                    if SIXTEEN {
                        tables[j] = [table(col, 2 * c), table(col, 2 * c + 1)];
                    } else if c % per_block == 0 {
                        tables[j][0] = table(col, c / per_block);
                    }
                    let at = col * column_bytes + c * 16;
                    // SAFETY: column `col` (< N) holds `column_bytes` bytes from `col *
                    // column_bytes` inside B (asserted); chunk `c` starts 16 * c bytes in and
                    // has 16 of them, or 8 for the last half chunk.
                    let bytes = unsafe {
                        let ptr = self.b.as_ptr().add(at).cast();
                        if half_last && c + 1 == chunks {
                            _mm_loadl_epi64(ptr)
                        } else {
                            _mm_loadu_si128(ptr)
                        }
                    };
                    let q = _mm512_cvtepu8_epi32(bytes);
                    let (qlo, qhi) = (_mm512_and_si512(q, low), _mm512_srli_epi32::<4>(q));
                    if SIXTEEN {
                        let [t0, t1] = tables[j];
                        lo[j] = _mm512_permutex2var_ps(t0, _mm512_or_si512(qlo, second), t1);
                        hi[j] = _mm512_permutex2var_ps(t0, _mm512_or_si512(qhi, second), t1);
                    } else {
                        lo[j] = _mm512_permutexvar_ps(qlo, tables[j][0]);
                        hi[j] = _mm512_permutexvar_ps(qhi, tables[j][0]);
                    }
                }
            });
            unroll!(r in [0, 1, 2, 3, 4, 5, 6, 7] {
                if r < R {
                    // SAFETY: rows `row..row + R` of the scratch hold `chunks * 32` floats
                    // each and `c < chunks`: both 16-float loads are inside the slice above.
                    let (even, odd) = unsafe {
                        let base = a.add(r * self.stride + c * CHUNK);
                        (_mm512_loadu_ps(base), _mm512_loadu_ps(base.add(16)))
                    };
                    unroll!(j in [0, 1, 2, 3] {
                        if j < C {
                            let half = usize::from(split);
                            acc[r][j][0] = _mm512_fmadd_ps(even, lo[j], acc[r][j][0]);
                            acc[r][j][half] = _mm512_fmadd_ps(odd, hi[j], acc[r][j][half]);
                        }
                    });
                }
            });
        }
        let mut sums = [[0.0f32; MAX_ROWS]; COLS];
        for (j, sums) in sums.iter_mut().enumerate().take(C) {
            for (r, s) in sums.iter_mut().enumerate().take(R) {
                *s = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][j][0], acc[r][j][1]));
            }
        }
        sums
    }
}

/// Rows of `A` an 8-bit tile multiplies at once.
const ROWS8: usize = 4;

/// `y = a · dequant(b)ᵀ (+ bias)` for 8-bit (`BITS = 8`) or 2-bit (`BITS = 2`) weights:
/// `a: [m, k]`, `b: [n, blocks, block * BITS / 8]` bytes (8-bit: one code a byte; 2-bit: four
/// a byte, the first in the low bits; each column's last block padded), `scales: [n, blocks]`,
/// `zero_points` (see [`ZeroPoints`]: codes packed as `b`'s, `[n, ceil(blocks * BITS / 8)]`;
/// 128 or 2 when there are none), `bias: [n]`, `y: [m, n]`; a weight is
/// `(code - zero_point) * scale`. `A` is read where it lies (no working memory). Columns are
/// split across threads; each column's sum has one order on every thread count.
///
/// # Panics
/// When a slice is shorter than the shape needs; `BITS` other than 2 or 8 does not compile.
#[allow(
    clippy::too_many_arguments,
    reason = "the operands of the ONNX op, each a plain slice"
)]
pub fn matmul_nbits_bytes_f32<const BITS: usize>(
    exec: &Exec,
    a: &[f32],
    b: &[u8],
    scales: &[f32],
    zero_points: ZeroPoints<'_>,
    bias: Option<&[f32]>,
    y: &mut [f32],
    p: &NBits,
) {
    const { assert!(BITS == 2 || BITS == 8, "2- or 8-bit codes") };
    p.check(a, y, bias);
    assert!(
        b.len() >= p.n * p.blocks() * p.block * BITS / 8 && scales.len() >= p.n * p.blocks(),
        "B or scales too short"
    );
    assert!(
        match zero_points {
            ZeroPoints::Default => true,
            ZeroPoints::Codes(z) => z.len() >= p.n * (p.blocks() * BITS).div_ceil(8),
            ZeroPoints::Floats(z) => z.len() >= p.n * p.blocks(),
        },
        "zero points"
    );
    let w8 = Weights8::<BITS> {
        a,
        b,
        scales,
        zero_points,
        p: *p,
        blocks: p.blocks(),
        zp_row: (p.blocks() * BITS).div_ceil(8),
    };
    let avx512 = crate::gemm_x86_64::has_avx512();
    for_column_tiles::<ROWS8>(exec, p, bias, y, &|n, width, row, rows| {
        w8.tile(n, width, row, rows, avx512)
    });
}

/// Everything an 8-bit (or 2-bit: `BITS`) product's sums read.
struct Weights8<'a, const BITS: usize> {
    a: &'a [f32],
    b: &'a [u8],
    scales: &'a [f32],
    zero_points: ZeroPoints<'a>,
    p: NBits,
    /// Blocks per column (`p.blocks()`, a division: computed once).
    blocks: usize,
    /// Bytes of zero-point codes per column.
    zp_row: usize,
}

impl<const BITS: usize> Weights8<'_, BITS> {
    /// Codes a byte.
    const PER_BYTE: usize = 8 / BITS;

    /// The zero point and scale of block `blk` of column `n`.
    #[inline(always)]
    fn block(&self, n: usize, blk: usize) -> (f32, f32) {
        let i = n * self.blocks + blk;
        let zp = match self.zero_points {
            ZeroPoints::Default => (1u32 << (BITS - 1)) as f32,
            ZeroPoints::Codes(z) => {
                let byte = z[n * self.zp_row + blk / Self::PER_BYTE];
                let shift = BITS * (blk % Self::PER_BYTE);
                f32::from((byte >> shift) & ((1u16 << BITS) - 1) as u8)
            }
            ZeroPoints::Floats(z) => z[i],
        };
        (zp, self.scales[i])
    }

    /// Code `k` of column `n`.
    #[inline(always)]
    fn code(&self, n: usize, k: usize) -> u8 {
        let column = n * self.blocks * self.p.block / Self::PER_BYTE;
        let byte = self.b[column + k / Self::PER_BYTE];
        (byte >> (BITS * (k % Self::PER_BYTE))) & ((1u16 << BITS) - 1) as u8
    }

    /// The sums of columns `n..n + width` (`width` 1 or [`COLS`]) with rows `row..row + rows`
    /// (at most [`ROWS8`]), indexed `[column][row]`.
    fn tile(
        &self,
        n: usize,
        width: usize,
        row: usize,
        rows: usize,
        avx512: bool,
    ) -> [[f32; ROWS8]; COLS] {
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            // SAFETY: AVX-512F is present (checked at run time).
            return unsafe {
                match (width == COLS, rows) {
                    (true, 4) => self.tile_avx512::<4, COLS>(n, row),
                    (true, 3) => self.tile_avx512::<3, COLS>(n, row),
                    (true, 2) => self.tile_avx512::<2, COLS>(n, row),
                    (true, _) => self.tile_avx512::<1, COLS>(n, row),
                    (false, 4) => self.tile_avx512::<4, 1>(n, row),
                    (false, 3) => self.tile_avx512::<3, 1>(n, row),
                    (false, 2) => self.tile_avx512::<2, 1>(n, row),
                    (false, _) => self.tile_avx512::<1, 1>(n, row),
                }
            };
        }
        let _ = avx512;
        let mut sums = [[0.0f32; ROWS8]; COLS];
        for (c, sums) in sums.iter_mut().enumerate().take(width) {
            *sums = self.column(n + c, row, rows);
        }
        sums
    }

    /// The sums of column `n` with rows `row..row + rows`, portable: per 16 weights, the
    /// dequantized weights times each row, in 16 partial sums.
    fn column(&self, n: usize, row: usize, rows: usize) -> [f32; ROWS8] {
        let p = &self.p;
        let mut acc = [[0.0f32; 16]; ROWS8];
        for blk in 0..self.blocks {
            let (zp, scale) = self.block(n, blk);
            let start = blk * p.block;
            for k0 in (start..(start + p.block).min(p.k)).step_by(16) {
                let lanes = (p.k - k0).min(16);
                let mut w = [0.0f32; 16];
                for (l, w) in w.iter_mut().enumerate().take(lanes) {
                    *w = (f32::from(self.code(n, k0 + l)) - zp) * scale;
                }
                for (r, acc) in acc.iter_mut().take(rows).enumerate() {
                    let a = &self.a[(row + r) * p.k + k0..][..lanes];
                    for ((acc, &a), &w) in acc.iter_mut().zip(a).zip(&w) {
                        *acc += a * w;
                    }
                }
            }
        }
        let mut sums = [0.0f32; ROWS8];
        for (s, acc) in sums.iter_mut().zip(&acc) {
            *s = acc.iter().sum();
        }
        sums
    }

    /// `R` rows by `C` columns from `row` and `n` on AVX-512: each 16 codes widened to 32-bit
    /// lanes, offset by the block's zero point, converted and scaled, then multiplied with
    /// the 16 matching floats of each row (masked past K).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn tile_avx512<const R: usize, const C: usize>(
        &self,
        n: usize,
        row: usize,
    ) -> [[f32; ROWS8]; COLS] {
        use crate::gemm_x86_64::unroll;
        let p = &self.p;
        let blocks = self.blocks;
        // Bytes per column.
        let column = blocks * p.block / Self::PER_BYTE;
        // 2-bit codes: each lane's shift within the 32-bit word of 16 codes.
        let shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let two_bits = _mm512_set1_epi32(3);
        assert!(n + C <= p.n && row + R <= p.m, "tile outside the product");
        assert!(
            self.b.len() >= p.n * column && self.a.len() >= p.m * p.k,
            "B or A too short"
        );
        let mut acc = [[_mm512_setzero_ps(); COLS]; ROWS8];
        for blk in 0..blocks {
            let mut zp = [_mm512_setzero_ps(); COLS];
            let mut scale = [_mm512_setzero_ps(); COLS];
            unroll!(j in [0, 1, 2, 3] {
                if j < C {
                    let (z, s) = self.block(n + j, blk);
                    zp[j] = _mm512_set1_ps(z);
                    scale[j] = _mm512_set1_ps(s);
                }
            });
            let start = blk * p.block;
            let mut k0 = start;
            while k0 < (start + p.block).min(p.k) {
                let lanes = (p.k - k0).min(16);
                let mask: __mmask16 = if lanes == 16 {
                    0xffff
                } else {
                    (1 << lanes) - 1
                };
                let mut w = [_mm512_setzero_ps(); COLS];
                unroll!(j in [0, 1, 2, 3] {
                    if j < C {
                        // SAFETY: column n + j (< N) holds `column` bytes from `(n + j) *
                        // column` (asserted), and the 16 codes from k0 end by (blk + 1) *
                        // block, inside the column.
                        let at = unsafe { self.b.as_ptr().add((n + j) * column + k0 / Self::PER_BYTE) };
                        let q = if BITS == 8 {
                            // SAFETY: 16 bytes from `at` (above).
                            _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(at.cast()) })
                        } else {
                            // SAFETY: 4 bytes from `at` (above).
                            let word = unsafe { at.cast::<u32>().read_unaligned() };
                            _mm512_and_si512(
                                _mm512_srlv_epi32(_mm512_set1_epi32(word as i32), shifts),
                                two_bits,
                            )
                        };
                        let q = _mm512_cvtepi32_ps(q);
                        w[j] = _mm512_mul_ps(_mm512_sub_ps(q, zp[j]), scale[j]);
                    }
                });
                unroll!(r in [0, 1, 2, 3] {
                    if r < R {
                        // SAFETY: row + r < M and the lanes of `mask` stay below K, inside
                        // A (asserted).
                        let a = unsafe {
                            _mm512_maskz_loadu_ps(mask, self.a.as_ptr().add((row + r) * p.k + k0))
                        };
                        unroll!(j in [0, 1, 2, 3] {
                            if j < C {
                                acc[r][j] = _mm512_fmadd_ps(a, w[j], acc[r][j]);
                            }
                        });
                    }
                });
                k0 += 16;
            }
        }
        let mut sums = [[0.0f32; ROWS8]; COLS];
        for (j, sums) in sums.iter_mut().enumerate().take(C) {
            for (r, s) in sums.iter_mut().enumerate().take(R) {
                *s = _mm512_reduce_add_ps(acc[r][j]);
            }
        }
        sums
    }
}

/// Sums of a tile whose rows past `done` come from another call.
trait MoreRows {
    /// These sums for rows `..done`, then `rest()`'s (which starts at row `done`) for the
    /// rows up to `rows`.
    fn rows(self, rows: usize, done: usize, rest: impl FnOnce() -> Self) -> Self;
}

impl MoreRows for [[f32; MAX_ROWS]; COLS] {
    fn rows(mut self, rows: usize, done: usize, rest: impl FnOnce() -> Self) -> Self {
        if rows > done {
            let more = rest();
            for (sums, more) in self.iter_mut().zip(&more) {
                sums[done..rows].copy_from_slice(&more[..rows - done]);
            }
        }
        self
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A seeded pseudo-random stream.
    fn stream(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// The definition: dequantize every weight, then sum in f64.
    #[allow(clippy::too_many_arguments, reason = "the operands")]
    fn reference(
        a: &[f32],
        b: &[u8],
        scales: &[f32],
        zps: ZeroPoints<'_>,
        bias: Option<&[f32]>,
        p: &NBits,
    ) -> Vec<f32> {
        let blocks = p.blocks();
        let mut y = vec![0.0f32; p.m * p.n];
        for m in 0..p.m {
            for n in 0..p.n {
                let mut sum = 0.0f64;
                for k in 0..p.k {
                    let byte = b[n * blocks * p.block / 2 + k / 2];
                    let code = f32::from(if k % 2 == 0 { byte & 15 } else { byte >> 4 });
                    let blk = k / p.block;
                    let zp = match zps {
                        ZeroPoints::Default => 8.0,
                        ZeroPoints::Codes(z) => {
                            f32::from((z[n * blocks.div_ceil(2) + blk / 2] >> (4 * (blk % 2))) & 15)
                        }
                        ZeroPoints::Floats(z) => z[n * blocks + blk],
                    };
                    let w = (code - zp) * scales[n * blocks + blk];
                    sum += f64::from(a[m * p.k + k]) * f64::from(w);
                }
                y[m * p.n + n] = sum as f32 + bias.map_or(0.0, |b| b[n]);
            }
        }
        y
    }

    /// `zero_points`: 0 none, 1 packed codes, 2 floats.
    fn check(p: NBits, zero_points: u8, with_bias: bool, threads: usize) {
        let mut next = stream((p.m * 131 + p.n * 7 + p.k + p.block) as u64);
        let mut unit = || (next() % 2001) as f32 / 1000.0 - 1.0;
        let a: Vec<f32> = (0..p.m * p.k).map(|_| unit()).collect();
        let scales: Vec<f32> = (0..p.n * p.blocks()).map(|_| unit() * 0.1).collect();
        let bias: Vec<f32> = (0..p.n).map(|_| unit()).collect();
        let mut bytes = stream(99);
        let b: Vec<u8> = (0..p.b_len()).map(|_| bytes() as u8).collect();
        let zps: Vec<u8> = (0..p.zero_points_len()).map(|_| bytes() as u8).collect();
        let floats: Vec<f32> = (0..p.n * p.blocks()).map(|_| unit() * 8.0 + 7.5).collect();
        let zps = match zero_points {
            0 => ZeroPoints::Default,
            1 => ZeroPoints::Codes(&zps),
            _ => ZeroPoints::Floats(&floats),
        };
        let bias = with_bias.then_some(bias.as_slice());
        let want = reference(&a, &b, &scales, zps, bias, &p);
        let run = |exec: &Exec| {
            let mut scratch = vec![f32::NAN; p.scratch_len()];
            let mut y = vec![f32::NAN; p.m * p.n];
            matmul_nbits4_f32(exec, &a, &b, &scales, zps, bias, &mut scratch, &mut y, &p);
            y
        };
        let exec = Exec::with_threads(threads);
        let got = run(&exec);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{p:?} element {i}: got {g}, want {w}"
            );
        }
        // One thread or several: the same bits.
        assert_eq!(got, run(&Exec::single()), "{p:?}");
        // The portable path (AVX2 or plain) agrees with the definition too.
        let portable = crate::gemm_x86_64::without_avx512(|| run(&Exec::single()));
        for (i, (&g, &w)) in portable.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{p:?} portable element {i}: got {g}, want {w}"
            );
        }
    }

    /// The 8-bit kernel against its definition (f64 sums of the dequantized weights), with
    /// and without zero points and bias, at several thread counts and without AVX-512.
    #[test]
    fn eight_and_two_bit_products_match_the_definition() {
        for bits in [8usize, 2] {
            byte_code_products(bits);
        }
    }

    /// [`matmul_nbits_bytes_f32`] at `bits` bits against the definition.
    fn byte_code_products(bits: usize) {
        let per_byte = 8 / bits;
        let mask = ((1u16 << bits) - 1) as u8;
        for (m, n, k, block) in [
            (1, 5, 64, 32),
            (2, 9, 40, 16), // K inside the last block
            (3, 33, 300, 128),
            (5, 4, 100, 32), // more rows than one tile
            (1, 6, 256, 256),
        ] {
            // Under Miri (some thousand times slower) only the products of at most 1 000
            // multiply-adds.
            if cfg!(miri) && m * n * k > 1_000 {
                continue;
            }
            let p = NBits { m, n, k, block };
            let mut next = stream((m * 31 + n * 7 + k + block) as u64);
            let mut unit = || (next() % 2001) as f32 / 1000.0 - 1.0;
            let a: Vec<f32> = (0..m * k).map(|_| unit()).collect();
            let scales: Vec<f32> = (0..n * p.blocks()).map(|_| unit() * 0.01).collect();
            let bias: Vec<f32> = (0..n).map(|_| unit()).collect();
            let mut bytes = stream(7);
            let b: Vec<u8> = (0..p.b8_len() / per_byte).map(|_| bytes() as u8).collect();
            let zp_row = (p.blocks() * bits).div_ceil(8);
            let codes: Vec<u8> = (0..n * zp_row).map(|_| bytes() as u8).collect();
            let middle = f32::from(1u8 << (bits - 1));
            let floats: Vec<f32> = (0..n * p.blocks())
                .map(|_| unit() * middle + middle)
                .collect();
            let code_of =
                |bytes: &[u8], i: usize| (bytes[i / per_byte] >> (bits * (i % per_byte))) & mask;
            for (zps, bias) in [
                (ZeroPoints::Codes(&codes), Some(&bias[..])),
                (ZeroPoints::Default, None),
                (ZeroPoints::Floats(&floats), Some(&bias[..])),
            ] {
                let mut want = vec![0.0f32; m * n];
                for (i, want) in want.iter_mut().enumerate() {
                    let (r, c) = (i / n, i % n);
                    let mut sum = 0.0f64;
                    for kk in 0..k {
                        let blk = kk / block;
                        let zp = match zps {
                            ZeroPoints::Default => middle,
                            ZeroPoints::Codes(z) => f32::from(code_of(&z[c * zp_row..], blk)),
                            ZeroPoints::Floats(z) => z[c * p.blocks() + blk],
                        };
                        let code = f32::from(code_of(&b, c * p.blocks() * block + kk));
                        let w = (code - zp) * scales[c * p.blocks() + blk];
                        sum += f64::from(a[r * k + kk]) * f64::from(w);
                    }
                    *want = sum as f32 + bias.map_or(0.0, |b| b[c]);
                }
                let run = |exec: &Exec| {
                    let mut y = vec![f32::NAN; m * n];
                    let f = if bits == 8 {
                        matmul_nbits_bytes_f32::<8>
                    } else {
                        matmul_nbits_bytes_f32::<2>
                    };
                    f(exec, &a, &b, &scales, zps, bias, &mut y, &p);
                    y
                };
                let got = run(&Exec::with_threads(2));
                let portable = crate::gemm_x86_64::without_avx512(|| run(&Exec::single()));
                for (what, got) in [("simd", &got), ("portable", &portable)] {
                    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "{bits} bits {p:?} {what} element {i}: got {g}, want {w}"
                        );
                    }
                }
                assert_eq!(got, run(&Exec::single()), "{p:?}: threads change the bits");
                assert_eq!(got, run(&Exec::with_threads(3)), "{p:?}");
            }
        }
    }

    #[test]
    fn four_bit_products_match_the_definition() {
        for (m, n, k, block) in [
            (1, 5, 64, 32),
            (1, 33, 256, 128),
            (3, 7, 40, 16),  // 3 blocks of 16: the last chunk is half a chunk
            (2, 9, 50, 16),  // K inside the last block
            (9, 4, 100, 32), // more rows than one group
            (4, 3, 300, 256),
            (17, 6, 48, 16),
        ] {
            // Under Miri (some thousand times slower) only the products of at most 1 000
            // multiply-adds.
            if cfg!(miri) && m * n * k > 1_000 {
                continue;
            }
            let p = NBits { m, n, k, block };
            check(p, 1, true, 2);
            check(p, 0, false, 3);
            check(p, 2, true, 2);
        }
    }
}
