//! f32 matrix multiplication: `out (+)= alpha * A x B` over strided operands.
//!
//! Large products are cache-blocked: panels of A (`MC x KC`, in groups of `MR` rows) and B
//! (`KC x NR`) are packed into stack buffers, and an `MR x NR` register tile accumulates each
//! output block. The tile is a hand-written microkernel per ISA (`gemm_x86_64.rs`: AVX-512
//! 8x48, AVX2+FMA 6x16), chosen by run-time detection with `std` and by `target_feature`
//! otherwise, with a portable fallback (4x16) the compiler vectorizes. Constant operands come
//! pre-packed by the compiler (convolution weights as A in 8-row panels, the B of a Gemm or
//! MatMul in 48-column panels) and are read where they lie. Products with few rows or columns
//! (matrix-vector work such as a recurrent step) skip packing entirely, with AVX-512 kernels
//! of their own.

use core::mem::MaybeUninit;

/// Depth of a packed panel.
const KC: usize = 192;
/// Strides of a matrix operand, in elements: `element(i, j) = data[i * rows + j * cols]`.
#[derive(Clone, Copy, Debug)]
pub struct Strides {
    /// Distance between consecutive rows.
    pub rows: usize,
    /// Distance between consecutive columns.
    pub cols: usize,
}

/// A microkernel: `out[r][j] (+)= alpha * sum_p a[p * lda + r] * b[p * ldb + j]` for
/// `r < mr`, `j < nr` of `tile`, then `tile.finish` if any.
///
/// # Safety
/// `a` holds `kc` groups of `MR` initialized floats at stride `lda` and `b` `kc` rows of `NR`
/// at stride `ldb`; `tile` satisfies [`Tile`]'s contract; the CPU supports the kernel's
/// features.
pub(crate) type Kernel =
    unsafe fn(kc: usize, a: *const f32, lda: usize, b: *const f32, ldb: usize, tile: &Tile<'_>);

/// Where a microkernel writes its `mr x nr` output tile, and how.
///
/// Contract: `out` is valid for reads and writes of `mr` rows of `nr` floats at stride `ldo`,
/// and, with a finish, `finish.residual` (unless null) for reads of the same extent and
/// `finish.bias` holds at least `mr` floats.
#[derive(Clone, Copy)]
pub(crate) struct Tile<'a> {
    /// The tile's first element.
    pub out: *mut f32,
    /// Row stride of `out` (and of the residual).
    pub ldo: usize,
    /// Rows to write.
    pub mr: usize,
    /// Columns to write.
    pub nr: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Write the product rather than add it to what `out` holds.
    pub overwrite: bool,
    /// After the last block of depth: the epilogue the kernel applies before its store.
    pub finish: Option<Finish<'a>>,
    /// The A panel the next tile reads (`kc` groups of `MR` floats, like this one's), which
    /// the kernel may prefetch while it computes; null if none. A hint only: never read.
    pub next_a: *const f32,
}

/// The part of an [`Epilogue`] a microkernel applies to a finished tile while it is still in
/// registers.
#[derive(Clone, Copy)]
pub(crate) struct Finish<'a> {
    /// Bias of the tile's rows.
    pub bias: Option<&'a [f32]>,
    /// The residual's element at the tile's origin (row stride `Tile::ldo`), or null.
    pub residual: *const f32,
    /// Leading activations of the chain that [`Finish::in_register`] accepts.
    pub acts: &'a [crate::epilogue::Activation],
}

impl Finish<'_> {
    /// `acts` split into the leading activations a kernel applies in registers and the rest
    /// of the chain, from the first one it does not, which runs over the stored output.
    pub(crate) fn split(
        acts: &[crate::epilogue::Activation],
    ) -> (
        &[crate::epilogue::Activation],
        &[crate::epilogue::Activation],
    ) {
        acts.split_at(acts.iter().take_while(|act| Self::in_register(act)).count())
    }

    /// Whether a kernel applies `act` in registers (a few vector operations, or the vector
    /// form of a `crate::math` function).
    pub(crate) fn in_register(act: &crate::epilogue::Activation) -> bool {
        use crate::epilogue::Activation as A;
        matches!(
            act,
            A::Relu
                | A::Clip(..)
                | A::LeakyRelu(_)
                | A::Affine(..)
                | A::HardSigmoid(..)
                | A::HardSwish
                | A::Sigmoid
                | A::Tanh
                | A::Gelu
                | A::GeluTanh
                | A::Swish(_)
        )
    }

    /// Whether the depthwise kernels apply all of `acts` as they store each vector: the cheap
    /// in-register ones. A transcendental one (sigmoid, tanh, the GELUs, Swish) runs over each
    /// finished row instead, in cache, where the slice kernel overlaps many vectors'
    /// evaluations; one vector at a time in the depthwise tiles, it made EfficientNet's
    /// depthwise layers with SiLU up to a third slower than a separate pass.
    pub(crate) fn in_store(acts: &[crate::epilogue::Activation]) -> bool {
        use crate::epilogue::Activation as A;
        acts.iter().all(|act| {
            Self::in_register(act)
                && !matches!(
                    act,
                    A::Sigmoid | A::Tanh | A::Gelu | A::GeluTanh | A::Swish(_)
                )
        })
    }
}

impl Tile<'_> {
    /// Applies `finish` to the stored tile (for kernels that do not apply it in registers).
    ///
    /// # Safety
    /// The tile's contract.
    pub(crate) unsafe fn finish_in_memory(&self) {
        let Some(finish) = self.finish else {
            return;
        };
        for r in 0..self.mr {
            // SAFETY: row r of the tile, nr floats (the contract).
            let row =
                unsafe { core::slice::from_raw_parts_mut(self.out.add(r * self.ldo), self.nr) };
            // SAFETY: the residual's row r, nr floats (the contract).
            let residual = (!finish.residual.is_null()).then(|| unsafe {
                core::slice::from_raw_parts(finish.residual.add(r * self.ldo), self.nr)
            });
            finish_row(row, finish.bias.map(|b| b[r]), residual, finish.acts);
        }
    }
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
    gemm_f32_act(
        m, n, k, alpha, a, a_strides, b, b_strides, accumulate, out, None,
    );
}

/// [`gemm_f32`] with an activation applied to each output tile as it is finished (while it is
/// still in cache): the epilogue of fused Conv/Gemm + activation.
#[allow(
    clippy::too_many_arguments,
    reason = "gemm_f32's operands plus the activation"
)]
pub fn gemm_f32_act(
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
    act: Option<crate::epilogue::Activation>,
) {
    gemm_f32_act_exec(
        &crate::threads::Exec::single(),
        m,
        n,
        k,
        alpha,
        a,
        a_strides,
        b,
        b_strides,
        accumulate,
        out,
        act,
    );
}

/// [`gemm_f32`] split across `exec`'s threads when the product is big enough to pay for it.
#[allow(
    clippy::too_many_arguments,
    reason = "gemm_f32's operands plus the executor"
)]
pub fn gemm_f32_exec(
    exec: &crate::threads::Exec,
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
    gemm_f32_act_exec(
        exec, m, n, k, alpha, a, a_strides, b, b_strides, accumulate, out, None,
    );
}

/// [`gemm_f32_act`] split across `exec`'s threads.
#[allow(
    clippy::too_many_arguments,
    reason = "gemm_f32's operands plus executor and activation"
)]
pub fn gemm_f32_act_exec(
    exec: &crate::threads::Exec,
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
    act: Option<crate::epilogue::Activation>,
) {
    let epilogue = Epilogue {
        row_bias: None,
        residual: None,
        acts: act.as_slice(),
    };
    gemm_matrix_exec(
        exec, m, n, k, alpha, a, a_strides, b, b_strides, accumulate, out, epilogue,
    );
}

/// [`gemm_f32_act_exec`] with a full epilogue (per-row bias, then activation).
#[allow(
    clippy::too_many_arguments,
    reason = "gemm_f32's operands plus executor and epilogue"
)]
pub(crate) fn gemm_matrix_exec(
    exec: &crate::threads::Exec,
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
    epilogue: Epilogue<'_>,
) {
    assert!(out.len() >= m * n, "gemm output too short");
    if m == 0 || n == 0 {
        return;
    }
    let last = |s: Strides, r: usize, c: usize| (r - 1) * s.rows + (c - 1) * s.cols;
    let tiny = k == 0 || m <= 2 || (n <= 8 && a_strides.cols == 1 && k * n <= NARROW_BUF);
    if tiny {
        if k == 0 {
            if !accumulate {
                out[..m * n].fill(0.0);
            }
        } else {
            assert!(a.len() > last(a_strides, m, k), "gemm A too short");
            assert!(b.len() > last(b_strides, k, n), "gemm B too short");
            if m == 1 && exec.threads() > 1 && k * n >= GEMV_SPLIT {
                // One row (a batch-1 linear layer): memory-bound on B, so the columns are
                // split across the threads, each streaming its own part of B.
                let chunk = n.div_ceil(exec.threads()).next_multiple_of(16);
                exec.for_each_chunk(&mut out[..n], chunk, &|t, part| {
                    let b = &b[t * chunk * b_strides.cols..];
                    gemm_small(
                        1,
                        part.len(),
                        k,
                        alpha,
                        a,
                        a_strides,
                        b,
                        b_strides,
                        accumulate,
                        part,
                    );
                });
            } else if m <= 2 {
                gemm_small(m, n, k, alpha, a, a_strides, b, b_strides, accumulate, out);
            } else {
                gemm_narrow(m, n, k, alpha, a, a_strides, b, b_strides, accumulate, out);
            }
        }
        epilogue.apply(&mut out[..m * n], n);
        return;
    }
    assert!(b.len() > last(b_strides, k, n), "gemm B too short");
    let source = MatrixPanels::new(b, b_strides, m);
    gemm_panels_exec(
        exec,
        m,
        n,
        k,
        alpha,
        AOperand::Matrix(a, a_strides),
        &source,
        accumulate,
        out,
        epilogue,
    );
}

/// Multiply-adds from which a one-row product splits its columns across threads.
const GEMV_SPLIT: usize = 1 << 16;

/// What the blocked product does to each finished output tile: add a per-row bias (a
/// convolution's per-channel bias), then a residual tensor, then apply activations.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// `out[i][j] += row_bias[i]`.
    pub row_bias: Option<&'a [f32]>,
    /// `out[i][j] += residual[i * n + j]` (`n` the output's row length): a skip connection
    /// added before the activations.
    pub residual: Option<&'a [f32]>,
    /// Applied after the bias, in order (an activation, then e.g. the scale and shift of a
    /// following affine op).
    pub acts: &'a [crate::epilogue::Activation],
}

impl Epilogue<'_> {
    /// Applies the epilogue to a whole row-major output with rows of `row_len`.
    pub fn apply(&self, out: &mut [f32], row_len: usize) {
        if self.is_empty() {
            return;
        }
        for (i, row) in out.chunks_exact_mut(row_len.max(1)).enumerate() {
            let residual = self.residual.map(|r| &r[i * row_len..][..row.len()]);
            finish_row(row, self.row_bias.map(|b| b[i]), residual, self.acts);
        }
    }

    /// Whether the epilogue does nothing.
    fn is_empty(&self) -> bool {
        self.row_bias.is_none() && self.residual.is_none() && self.acts.is_empty()
    }
}

/// One row of an epilogue over memory: `row += bias`, `row += residual`, then `acts` in order.
#[inline]
fn finish_row(
    row: &mut [f32],
    bias: Option<f32>,
    residual: Option<&[f32]>,
    acts: &[crate::epilogue::Activation],
) {
    if let Some(v) = bias {
        row.iter_mut().for_each(|d| *d += v);
    }
    if let Some(add) = residual {
        row.iter_mut().zip(add).for_each(|(d, &r)| *d += r);
    }
    crate::epilogue::Activation::apply_chain(acts, row);
}

/// Where the blocked product gets its B operand: panels of `KC` rows by `NR` columns.
pub(crate) trait PanelSource: Sync {
    /// Whether panels must start at multiples of `NR` columns (B pre-packed in panels), which
    /// rules out rebalancing the last two panels' widths.
    const ALIGNED: bool = false;

    /// Writes rows `k0..k0 + kc`, columns `j0..j0 + nr` of B as `pack[p * NR + j]`, zero in
    /// columns `nr..NR`.
    fn pack<const NR: usize>(
        &self,
        k0: usize,
        kc: usize,
        j0: usize,
        nr: usize,
        pack: &mut [MaybeUninit<f32>],
    );

    /// A full panel (`NR` columns) read where it lies: a pointer to element `(k0, j0)` with
    /// `kc` rows of `NR` floats readable at the returned row stride.
    fn in_place<const NR: usize>(
        &self,
        k0: usize,
        kc: usize,
        j0: usize,
    ) -> Option<(*const f32, usize)> {
        let _ = (k0, kc, j0);
        None
    }
}

/// B as a strided matrix.
pub(crate) struct MatrixPanels<'a> {
    b: &'a [f32],
    strides: Strides,
    in_place: bool,
}

impl<'a> MatrixPanels<'a> {
    /// B for a product with `m` rows of A.
    pub(crate) fn new(b: &'a [f32], strides: Strides, m: usize) -> Self {
        Self {
            b,
            strides,
            // With few rows of A to reuse a B panel (convolutions with few output channels),
            // full panels of a row-major B are read in place instead of being copied.
            in_place: m <= 96 && strides.cols == 1,
        }
    }
}

impl PanelSource for MatrixPanels<'_> {
    fn pack<const NR: usize>(
        &self,
        k0: usize,
        kc: usize,
        j0: usize,
        nr: usize,
        pack: &mut [MaybeUninit<f32>],
    ) {
        let (b, s) = (self.b, self.strides);
        for p in 0..kc {
            let dst = &mut pack[p * NR..][..NR];
            let base = (k0 + p) * s.rows + j0 * s.cols;
            if s.cols == 1 && nr == NR {
                // A full panel row: a constant-size copy, which compiles to vector moves
                // rather than a call to memcpy.
                let src: &[f32; NR] = b[base..base + NR].try_into().expect("NR floats");
                for (d, &v) in dst.iter_mut().zip(src) {
                    d.write(v);
                }
                continue;
            } else if s.cols == 1 {
                for (d, &v) in dst.iter_mut().zip(&b[base..base + nr]) {
                    d.write(v);
                }
            } else {
                for (j, d) in dst.iter_mut().enumerate().take(nr) {
                    d.write(b[base + j * s.cols]);
                }
            }
            for d in &mut dst[nr..] {
                d.write(0.0);
            }
        }
    }

    fn in_place<const NR: usize>(
        &self,
        k0: usize,
        kc: usize,
        j0: usize,
    ) -> Option<(*const f32, usize)> {
        if !self.in_place {
            return None;
        }
        let start = k0 * self.strides.rows + j0;
        assert!(
            start + (kc - 1) * self.strides.rows + NR <= self.b.len(),
            "gemm B panel out of bounds"
        );
        // SAFETY: `start` is inside `b` (asserted just above with the whole panel).
        Some((unsafe { self.b.as_ptr().add(start) }, self.strides.rows))
    }
}

/// Columns of a pre-packed B panel ([`gemm_packed_b_exec`]): the AVX-512 tile's width, a
/// whole number of the narrower kernels' (16).
pub const PACKED_B_COLUMNS: usize = 48;

/// Floats of B (`k x n`) pre-packed for [`gemm_packed_b_exec`].
pub const fn packed_b_len(k: usize, n: usize) -> usize {
    n.div_ceil(PACKED_B_COLUMNS) * PACKED_B_COLUMNS * k
}

/// B pre-packed (by the compiler, for constant weights) in panels of [`PACKED_B_COLUMNS`]
/// columns: element `(p, j)` at `((j / 48) * k + p) * 48 + j % 48`, zero past column `n`.
struct PackedB<'a> {
    data: &'a [f32],
    k: usize,
}

impl PanelSource for PackedB<'_> {
    const ALIGNED: bool = true;

    fn pack<const NR: usize>(
        &self,
        k0: usize,
        kc: usize,
        j0: usize,
        nr: usize,
        pack: &mut [MaybeUninit<f32>],
    ) {
        // The panel holding column j0 is a k x 48 row-major matrix.
        let len = self.k * PACKED_B_COLUMNS;
        let panel = MatrixPanels {
            b: &self.data[j0 / PACKED_B_COLUMNS * len..][..len],
            strides: Strides {
                rows: PACKED_B_COLUMNS,
                cols: 1,
            },
            in_place: false,
        };
        panel.pack::<NR>(k0, kc, j0 % PACKED_B_COLUMNS, nr, pack);
    }

    fn in_place<const NR: usize>(
        &self,
        k0: usize,
        kc: usize,
        j0: usize,
    ) -> Option<(*const f32, usize)> {
        let offset = j0 % PACKED_B_COLUMNS;
        if offset + NR > PACKED_B_COLUMNS {
            return None;
        }
        let start = (j0 / PACKED_B_COLUMNS * self.k + k0) * PACKED_B_COLUMNS + offset;
        assert!(
            start + (kc - 1) * PACKED_B_COLUMNS + NR <= self.data.len(),
            "gemm B panel out of bounds"
        );
        // SAFETY: `start` is inside `data` (asserted just above with the whole panel).
        Some((unsafe { self.data.as_ptr().add(start) }, PACKED_B_COLUMNS))
    }
}

/// [`gemm_f32_act_exec`] with B pre-packed in panels (see [`packed_b_len`]): the constant
/// weights of a MatMul or Gemm, packed by the compiler so that no run repacks them.
#[allow(
    clippy::too_many_arguments,
    reason = "gemm_f32's operands plus executor and activation"
)]
pub fn gemm_packed_b_exec(
    exec: &crate::threads::Exec,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    a_strides: Strides,
    b_panels: &[f32],
    accumulate: bool,
    out: &mut [f32],
    act: Option<crate::epilogue::Activation>,
) {
    assert!(out.len() >= m * n, "gemm output too short");
    assert!(
        b_panels.len() >= packed_b_len(k, n),
        "gemm packed B too short"
    );
    let epilogue = Epilogue {
        row_bias: None,
        residual: None,
        acts: act.as_slice(),
    };
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        epilogue.apply(&mut out[..m * n], n);
        return;
    }
    let source = PackedB { data: b_panels, k };
    gemm_panels_exec(
        exec,
        m,
        n,
        k,
        alpha,
        AOperand::Matrix(a, a_strides),
        &source,
        accumulate,
        out,
        epilogue,
    );
}

/// Packs `b` (`k x n`, strided) into the panels [`gemm_packed_b_exec`] reads.
pub fn pack_b(b: &[f32], strides: Strides, k: usize, n: usize, out: &mut [f32]) {
    assert!(out.len() >= packed_b_len(k, n), "packed B buffer too short");
    if k == 0 {
        return;
    }
    // Panel by panel, row by row: contiguous writes; a row of B with unit column stride is
    // one copy.
    let len = packed_b_len(k, n);
    for (panel, dst) in out[..len]
        .chunks_exact_mut(k * PACKED_B_COLUMNS)
        .enumerate()
    {
        let j0 = panel * PACKED_B_COLUMNS;
        let width = (n - j0).min(PACKED_B_COLUMNS);
        if strides.rows == 1 && strides.cols >= k {
            // B's columns are rows of memory (B = K^T of attention's keys): the panel is
            // their transpose, in 8 x 8 vector blocks.
            crate::shape::transpose_strided(
                &b[j0 * strides.cols..],
                strides.cols,
                dst,
                PACKED_B_COLUMNS,
                (width, k),
            );
            for row in dst.chunks_exact_mut(PACKED_B_COLUMNS) {
                row[width..].fill(0.0);
            }
            continue;
        }
        for (p, row) in dst.chunks_exact_mut(PACKED_B_COLUMNS).enumerate() {
            let start = p * strides.rows + j0 * strides.cols;
            if strides.cols == 1 {
                row[..width].copy_from_slice(&b[start..start + width]);
            } else {
                for (jj, x) in row[..width].iter_mut().enumerate() {
                    *x = b[start + jj * strides.cols];
                }
            }
            row[width..].fill(0.0);
        }
    }
}

/// The output matrix as a raw pointer, so that parallel tasks can each write their own
/// block of rows and columns.
#[derive(Clone, Copy)]
struct OutView {
    ptr: *mut f32,
    /// Row stride.
    ld: usize,
}

// SAFETY: tasks write disjoint blocks only (the contract of `blocked`).
unsafe impl Send for OutView {}
// SAFETY: as above.
unsafe impl Sync for OutView {}

/// `out[m x n] (+)= alpha * A x B` for any panel source, rows or columns split across
/// `exec`'s threads when the product is big enough.
#[allow(
    clippy::too_many_arguments,
    reason = "gemm_f32's operands plus executor and epilogue"
)]
pub(crate) fn gemm_panels_exec<B: PanelSource>(
    exec: &crate::threads::Exec,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: AOperand<'_>,
    b: &B,
    accumulate: bool,
    out: &mut [f32],
    epilogue: Epilogue<'_>,
) {
    assert!(out.len() >= m * n, "gemm output too short");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    a.check(m, k);
    if let Some(bias) = epilogue.row_bias {
        assert!(bias.len() >= m, "gemm row bias too short");
    }
    if let Some(residual) = epilogue.residual {
        assert!(residual.len() >= m * n, "gemm residual too short");
    }
    let isa = Isa::detect();
    let view = OutView {
        ptr: out.as_mut_ptr(),
        ld: n,
    };
    let threads = exec.threads();
    let run = |rows: (usize, usize), cols: (usize, usize)| {
        // SAFETY: `rows x cols` lies inside the m x n output (asserted above), and every call
        // below gets a block disjoint from the others'.
        unsafe { isa.blocked(rows, cols, k, alpha, a, b, accumulate, view, epilogue) }
    };
    if threads == 1 || m * n * k < (1 << 18) {
        return run((0, m), (0, n));
    }
    // Columns when there are many and A is the smaller operand (each task then packs only
    // its share of B, and reads all of A); rows otherwise (each task streams only its share
    // of A: the weights of a layer with many channels over few pixels, which would otherwise
    // go through memory once per thread).
    let col_tasks = n / 64;
    if col_tasks >= threads && m <= n {
        let tasks = col_tasks.min(2 * threads);
        let chunk = n.div_ceil(tasks).next_multiple_of(isa.nr());
        exec.for_each(n.div_ceil(chunk), &|t| {
            run((0, m), (t * chunk, n.min((t + 1) * chunk)));
        });
    } else {
        let chunk = m.div_ceil(threads).next_multiple_of(8);
        exec.for_each(m.div_ceil(chunk), &|t| {
            run((t * chunk, m.min((t + 1) * chunk)), (0, n));
        });
    }
}

/// The microkernel family the CPU runs best.
#[derive(Clone, Copy)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::gemm_x86_64::has_avx512() {
                return Isa::Avx512;
            }
            if crate::gemm_x86_64::has_avx2_fma() {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Columns of this ISA's tile.
    fn nr(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 48,
            _ => 16,
        }
    }

    /// [`blocked`] with this ISA's tile shape and microkernel.
    ///
    /// # Safety
    /// As for [`blocked`].
    #[allow(clippy::too_many_arguments, reason = "blocked's operands")]
    unsafe fn blocked<B: PanelSource>(
        self,
        rows: (usize, usize),
        cols: (usize, usize),
        k: usize,
        alpha: f32,
        a: AOperand<'_>,
        b: &B,
        accumulate: bool,
        out: OutView,
        epilogue: Epilogue<'_>,
    ) {
        // SAFETY: forwarded contract; each kernel matches the CPU `detect` found.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => blocked::<8, 48, B>(
                    rows,
                    cols,
                    k,
                    alpha,
                    a,
                    b,
                    accumulate,
                    out,
                    crate::gemm_x86_64::kernel_avx512,
                    epilogue,
                ),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => blocked::<6, 16, B>(
                    rows,
                    cols,
                    k,
                    alpha,
                    a,
                    b,
                    accumulate,
                    out,
                    crate::gemm_x86_64::kernel_avx2,
                    epilogue,
                ),
                Isa::Portable => blocked::<4, 16, B>(
                    rows,
                    cols,
                    k,
                    alpha,
                    a,
                    b,
                    accumulate,
                    out,
                    kernel_portable::<4, 16>,
                    epilogue,
                ),
            }
        }
    }
}

/// Floats of B a narrow product gathers (`k * n`).
const NARROW_BUF: usize = 8 * 1024;

/// Few columns (a convolution over a handful of pixels): B's columns are gathered once and
/// every output is a contiguous dot product of an A row with one of them, so A (usually the
/// weights, and much larger) is read once and never packed.
#[allow(clippy::too_many_arguments, reason = "same operands as gemm_f32")]
fn gemm_narrow(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    sa: Strides,
    b: &[f32],
    sb: Strides,
    accumulate: bool,
    out: &mut [f32],
) {
    if n > 8 {
        return gemm_small(m, n, k, alpha, a, sa, b, sb, accumulate, out);
    }
    assert!(n * k <= NARROW_BUF, "narrow product too deep");
    let mut gathered = [MaybeUninit::<f32>::uninit(); NARROW_BUF];
    for (j, column) in gathered[..n * k].chunks_exact_mut(k.max(1)).enumerate() {
        for (p, d) in column.iter_mut().enumerate() {
            d.write(b[p * sb.rows + j * sb.cols]);
        }
    }
    // SAFETY: the loops above wrote the first n * k floats.
    let columns = unsafe { core::slice::from_raw_parts(gathered.as_ptr().cast::<f32>(), n * k) };
    narrow_columns(m, n, k, alpha, a, sa, columns, accumulate, out);
}

/// `out (m x n) (+)= alpha * A (m x k) * B` for `n <= 8` with B given as its columns,
/// `columns[j * k..][..k]` (a narrow product whose B is already gathered, such as a
/// convolution's im2col over a few output pixels).
#[allow(clippy::too_many_arguments, reason = "same operands as gemm_f32")]
pub(crate) fn narrow_columns(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    sa: Strides,
    columns: &[f32],
    accumulate: bool,
    out: &mut [f32],
) {
    assert!(columns.len() >= n * k, "gemm columns too short");
    match n {
        0 => {}
        1 => narrow_gathered::<1>(m, k, alpha, a, sa, columns, accumulate, out),
        2 => narrow_gathered::<2>(m, k, alpha, a, sa, columns, accumulate, out),
        3 => narrow_gathered::<3>(m, k, alpha, a, sa, columns, accumulate, out),
        4 => narrow_gathered::<4>(m, k, alpha, a, sa, columns, accumulate, out),
        5 => narrow_gathered::<5>(m, k, alpha, a, sa, columns, accumulate, out),
        6 => narrow_gathered::<6>(m, k, alpha, a, sa, columns, accumulate, out),
        7 => narrow_gathered::<7>(m, k, alpha, a, sa, columns, accumulate, out),
        8 => narrow_gathered::<8>(m, k, alpha, a, sa, columns, accumulate, out),
        _ => panic!("narrow product wider than 8 columns"),
    }
}

/// [`narrow_columns`] for `N` columns: each A row is read once, 16 floats at a time, into `N`
/// vector accumulators (one per column).
#[allow(clippy::too_many_arguments, reason = "same operands as gemm_f32")]
fn narrow_gathered<const N: usize>(
    m: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    sa: Strides,
    columns: &[f32],
    accumulate: bool,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm_x86_64::has_avx512() && sa.cols == 1 {
        assert!(
            m == 0 || a.len() >= (m - 1) * sa.rows + k,
            "gemm A too short"
        );
        assert!(out.len() >= m * N, "gemm output too short");
        // SAFETY: the CPU has AVX-512F; A holds m rows of k floats at stride sa.rows
        // (asserted), `columns` N * k floats, `out` m * N (asserted).
        unsafe {
            if N <= 4 {
                crate::gemm_x86_64::narrow_avx512::<N, 4>(
                    m,
                    k,
                    alpha,
                    a.as_ptr(),
                    sa.rows,
                    columns.as_ptr(),
                    accumulate,
                    out.as_mut_ptr(),
                );
            } else {
                crate::gemm_x86_64::narrow_avx512::<N, 2>(
                    m,
                    k,
                    alpha,
                    a.as_ptr(),
                    sa.rows,
                    columns.as_ptr(),
                    accumulate,
                    out.as_mut_ptr(),
                );
            }
        }
        return;
    }
    let chunks = k / 16;
    for i in 0..m {
        let a_row = &a[i * sa.rows..][..k];
        let mut acc = [[0.0f32; 16]; N];
        for c in 0..chunks {
            let av: &[f32; 16] = a_row[c * 16..c * 16 + 16].try_into().expect("16 floats");
            for (j, lanes) in acc.iter_mut().enumerate() {
                let col = &columns[j * k + c * 16..][..16];
                for l in 0..16 {
                    lanes[l] += av[l] * col[l];
                }
            }
        }
        let row = &mut out[i * N..][..N];
        for (j, o) in row.iter_mut().enumerate() {
            let col = &columns[j * k..][..k];
            let tail: f32 = (chunks * 16..k).map(|p| a_row[p] * col[p]).sum();
            let v = alpha * (acc[j].iter().sum::<f32>() + tail);
            *o = if accumulate { *o + v } else { v };
        }
    }
}

/// Few rows: each output row is a sum of B rows scaled by A (row-major B) or of dot products
/// (column-major B), with no packing.
#[allow(clippy::too_many_arguments, reason = "same operands as gemm_f32")]
fn gemm_small(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    sa: Strides,
    b: &[f32],
    sb: Strides,
    accumulate: bool,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm_x86_64::has_avx512() && sb.rows == 1 && sa.cols == 1 && k > 0 && n > 0 {
        // Column-major B (the transposed weights of a recurrent step): each output row is B's
        // columns dotted with A's row, the narrow product with B as its rows and A's row as
        // the one column.
        for i in 0..m {
            let b_rows = Strides {
                rows: sb.cols,
                cols: 1,
            };
            let row = &mut out[i * n..][..n];
            narrow_columns(
                n,
                1,
                k,
                alpha,
                b,
                b_rows,
                &a[i * sa.rows..][..k],
                accumulate,
                row,
            );
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::gemm_x86_64::has_avx512() && sb.cols == 1 && k > 0 && n > 0 {
        assert!(b.len() >= (k - 1) * sb.rows + n, "gemm B too short");
        assert!(out.len() >= m * n, "gemm output too short");
        for i in 0..m {
            assert!(
                a.len() > i * sa.rows + (k - 1) * sa.cols,
                "gemm A too short"
            );
            // SAFETY: the CPU has AVX-512F; A's row i holds k floats at stride sa.cols, B k
            // rows of n at stride sb.rows, and row i of `out` n floats (all asserted).
            unsafe {
                crate::gemm_x86_64::row_times_matrix_avx512(
                    n,
                    k,
                    alpha,
                    a.as_ptr().add(i * sa.rows),
                    sa.cols,
                    b.as_ptr(),
                    sb.rows,
                    accumulate,
                    out.as_mut_ptr().add(i * n),
                );
            }
        }
        return;
    }
    for i in 0..m {
        let row = &mut out[i * n..][..n];
        if !accumulate {
            row.fill(0.0);
        }
        if sb.cols == 1 {
            for p in 0..k {
                let av = alpha * a[i * sa.rows + p * sa.cols];
                let brow = &b[p * sb.rows..][..n];
                for (o, &bv) in row.iter_mut().zip(brow) {
                    *o += av * bv;
                }
            }
        } else if sb.rows == 1 && sa.cols == 1 {
            let arow = &a[i * sa.rows..][..k];
            for (j, o) in row.iter_mut().enumerate() {
                *o += alpha * dot(arow, &b[j * sb.cols..][..k]);
            }
        } else {
            for (j, o) in row.iter_mut().enumerate() {
                let mut s = 0.0;
                for p in 0..k {
                    s += a[i * sa.rows + p * sa.cols] * b[p * sb.rows + j * sb.cols];
                }
                *o += alpha * s;
            }
        }
    }
}

/// A dot product in 16 independent lanes, so that it vectorizes.
#[inline]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = x.len() / 16;
    for c in 0..chunks {
        let (xs, ys) = (&x[c * 16..c * 16 + 16], &y[c * 16..c * 16 + 16]);
        for l in 0..16 {
            lanes[l] += xs[l] * ys[l];
        }
    }
    let mut tail = 0.0;
    for i in chunks * 16..x.len() {
        tail += x[i] * y[i];
    }
    lanes.iter().sum::<f32>() + tail
}

/// Floats in the packed-A buffer: `MC x KC` with `MC` the largest multiple of `MR` that fits.
const A_BUF: usize = 128 * KC;
/// Floats in the packed-B buffer: `KC x NR` for the widest `NR` (48).
const B_BUF: usize = 48 * KC;

/// The width of the next panel of B when `left` columns remain: `NR`, except that with the
/// AVX-512 tile a last panel of at most one vector (16 columns) shares the panel before it
/// instead (48 + 1 becomes 32 + 17). A tile costs the same per vector of
/// columns either way, but a one-vector tile streams a whole panel of A for a third of the
/// work.
pub(crate) fn panel_width<const NR: usize>(left: usize) -> usize {
    if NR == 48 && left > NR && left <= NR + 16 {
        (left / 2).next_multiple_of(16).min(NR)
    } else {
        left.min(NR)
    }
}

/// The blocked product with an `MR x NR` microkernel over output rows `rows.0..rows.1` and
/// columns `cols.0..cols.1`.
///
/// # Safety
/// `out` is valid for writes at `ptr + i * ld + j` for every `(i, j)` of the block, and no
/// other thread accesses the block during the call; `kernel` runs on this CPU.
#[allow(
    clippy::too_many_arguments,
    reason = "same operands as gemm_f32, plus the block, kernel and epilogue"
)]
unsafe fn blocked<const MR: usize, const NR: usize, B: PanelSource>(
    rows: (usize, usize),
    cols: (usize, usize),
    k: usize,
    alpha: f32,
    a: AOperand<'_>,
    b: &B,
    accumulate: bool,
    out: OutView,
    kernel: Kernel,
    epilogue: Epilogue<'_>,
) {
    // Pre-packed panels are read where they lie when their groups are this kernel's;
    // otherwise A is packed, a block of rows at a time.
    let a_in_place = matches!(a, AOperand::Panels8(..)) && MR == 8;
    let mc_max = if a_in_place {
        // Nothing to pack: one block of all rows, so that each B panel is packed once.
        (rows.1 - rows.0).max(1)
    } else {
        A_BUF / KC / MR * MR
    };
    // Uninitialized: packing writes every float a kernel reads (zero-padding included), and
    // skipping the memset matters for the many small products of a real model.
    let mut a_pack = [MaybeUninit::<f32>::uninit(); A_BUF];
    let mut b_pack = [MaybeUninit::<f32>::uninit(); B_BUF];
    let (in_register, in_memory) = Finish::split(epilogue.acts);
    // Loop order k -> rows -> columns: each A block is packed once, each B panel once per
    // row block (a small fraction of the work for MC rows of reuse).
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let overwrite = k0 == 0 && !accumulate;
        let finished = k0 + kc == k;
        let mut i0 = rows.0;
        while i0 < rows.1 {
            let mc = mc_max.min(rows.1 - i0);
            if !a_in_place {
                pack_a::<MR>(a, i0, mc, k0, kc, &mut a_pack);
            }
            let mut j0 = cols.0;
            while j0 < cols.1 {
                let nr = if B::ALIGNED {
                    NR.min(cols.1 - j0)
                } else {
                    panel_width::<NR>(cols.1 - j0)
                };
                // A pre-packed last panel is zero past the product's columns: it is read in
                // place too.
                let in_place = if nr == NR || B::ALIGNED {
                    b.in_place::<NR>(k0, kc, j0)
                } else {
                    None
                };
                let (b_panel, ldb) = in_place.unwrap_or_else(|| {
                    b.pack::<NR>(k0, kc, j0, nr, &mut b_pack);
                    (b_pack.as_ptr().cast::<f32>(), NR)
                });
                let mut r0 = 0;
                while r0 < mc {
                    let mr = MR.min(mc - r0);
                    let row = i0 + r0;
                    // SAFETY: the tile's rows and columns are inside the block (the caller's
                    // contract).
                    let tile = unsafe { out.ptr.add(row * out.ld + j0) };
                    let (a_panel, lda) = match a {
                        AOperand::Panels8(data, k) if a_in_place => {
                            let start = (i0 + r0) * k + k0 * 8;
                            assert!(
                                (i0 + r0).is_multiple_of(8) && start + kc * 8 <= data.len(),
                                "gemm A panel out of bounds"
                            );
                            // SAFETY: inside `data` (asserted just above with the whole panel).
                            (unsafe { data.as_ptr().add(start) }, 8)
                        }
                        // SAFETY: the packed group holds kc * MR floats written by pack_a.
                        _ => (unsafe { a_pack.as_ptr().add(r0 * KC).cast::<f32>() }, MR),
                    };
                    // The A panel of the next row group, for the kernel to prefetch: the
                    // pre-packed weights stream from memory, a group 8 * k floats apart,
                    // which the hardware prefetcher does not follow.
                    let next_a = match a {
                        AOperand::Panels8(data, k) if a_in_place && r0 + MR < mc => {
                            data[(i0 + r0 + MR) * k + k0 * 8..].as_ptr()
                        }
                        _ => core::ptr::null(),
                    };
                    let finish = finished.then(|| Finish {
                        bias: epilogue.row_bias.map(|bias| &bias[row..]),
                        residual: epilogue
                            .residual
                            .map_or(core::ptr::null(), |res| res[row * out.ld + j0..].as_ptr()),
                        acts: in_register,
                    });
                    let tile_spec = Tile {
                        out: tile,
                        ldo: out.ld,
                        mr,
                        nr,
                        alpha,
                        overwrite,
                        finish,
                        next_a,
                    };
                    // SAFETY: the A panel holds kc groups of MR floats at stride lda (in the
                    // pre-packed panels, asserted, or packed above); the B panel is kc rows of
                    // NR floats at stride ldb, packed above or in place (checked by the
                    // source); the tile's mr rows of nr floats at stride ld are writable (the
                    // caller's contract) and the residual, asserted to cover the whole output
                    // by the caller, is readable there; the kernel runs on this CPU.
                    unsafe { kernel(kc, a_panel, lda, b_panel, ldb, &tile_spec) };
                    if finished && !in_memory.is_empty() {
                        for r in 0..mr {
                            // SAFETY: row r of the tile, nr floats, inside the block.
                            let dst = unsafe {
                                core::slice::from_raw_parts_mut(tile.add(r * out.ld), nr)
                            };
                            crate::epilogue::Activation::apply_chain(in_memory, dst);
                        }
                    }
                    r0 += MR;
                }
                j0 += nr;
            }
            i0 += mc;
        }
        k0 += KC;
    }
}

/// Packs rows `i0..i0+mc`, columns `k0..k0+kc` of A into groups of `MR` rows, each group
/// stored k-major at `pack[group * MR * KC + p * MR + r]`. Rows past `mc` are zero.
fn pack_a<const MR: usize>(
    a: AOperand<'_>,
    i0: usize,
    mc: usize,
    k0: usize,
    kc: usize,
    pack: &mut [MaybeUninit<f32>],
) {
    for g in 0..mc.div_ceil(MR) {
        let dst = &mut pack[g * MR * KC..][..kc * MR];
        // Eight whole rows of a row-major matrix: 8 x 8 transposes, then the depth's tail.
        #[cfg(target_arch = "x86_64")]
        let done = match a {
            AOperand::Matrix(data, s)
                if MR == 8
                    && s.cols == 1
                    && (g + 1) * MR <= mc
                    && crate::gemm_x86_64::has_avx() =>
            {
                let base = (i0 + g * MR) * s.rows + k0;
                let whole = kc / 8 * 8;
                if whole > 0 {
                    assert!(
                        base + 7 * s.rows + whole <= data.len(),
                        "gemm A block out of bounds"
                    );
                }
                for p in (0..whole).step_by(8) {
                    // SAFETY: rows base + r * s.rows hold `whole` floats from k0 (asserted);
                    // dst holds kc * 8 floats and p + 8 <= kc; AVX was detected.
                    unsafe {
                        crate::gemm_x86_64::transpose8x8(
                            data.as_ptr().add(base + p),
                            s.rows,
                            dst.as_mut_ptr().add(p * MR).cast::<f32>(),
                        );
                    }
                }
                whole
            }
            _ => 0,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        for r in 0..MR {
            let row = g * MR + r;
            if row >= mc {
                for p in 0..kc {
                    dst[p * MR + r].write(0.0);
                }
                continue;
            }
            let i = i0 + row;
            let (base, step) = match a {
                AOperand::Matrix(_, s) => (i * s.rows + k0 * s.cols, s.cols),
                AOperand::Panels8(_, k) => (i / 8 * 8 * k + k0 * 8 + i % 8, 8),
            };
            let data = a.data();
            for p in done..kc {
                dst[p * MR + r].write(data[base + p * step]);
            }
        }
    }
}

/// The A operand of the blocked product.
#[derive(Clone, Copy)]
pub(crate) enum AOperand<'a> {
    /// A strided matrix.
    Matrix(&'a [f32], Strides),
    /// Panels packed ahead of time (constant weights, by the compiler): rows in groups of 8,
    /// each group stored k-major, so element `(i, p)` of an `m x k` matrix is at
    /// `(i / 8) * 8 * k + p * 8 + i % 8`; zero rows pad the last group. The second field is
    /// `k`.
    Panels8(&'a [f32], usize),
}

impl AOperand<'_> {
    fn data(&self) -> &[f32] {
        match self {
            AOperand::Matrix(a, _) | AOperand::Panels8(a, _) => a,
        }
    }

    /// Panics unless an `m x k` matrix fits.
    fn check(&self, m: usize, k: usize) {
        let needed = match self {
            AOperand::Matrix(_, s) => (m - 1) * s.rows + (k - 1) * s.cols + 1,
            AOperand::Panels8(_, pk) => {
                assert!(*pk == k, "gemm A panels hold k = {pk}, not {k}");
                m.div_ceil(8) * 8 * k
            }
        };
        assert!(self.data().len() >= needed, "gemm A too short");
    }
}

/// The portable microkernel: plain loops over a register tile that the compiler vectorizes.
///
/// # Safety
/// As for [`Kernel`].
unsafe fn kernel_portable<const MR: usize, const NR: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    tile: &Tile<'_>,
) {
    // SAFETY: the caller guarantees kc groups of MR and kc rows of NR initialized floats.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts(a, (kc - 1) * lda + MR),
            core::slice::from_raw_parts(b, (kc - 1) * ldb + NR),
        )
    };
    let mut acc = [[0.0f32; NR]; MR];
    for p in 0..kc {
        let (av, bv) = (&a[p * lda..p * lda + MR], &b[p * ldb..p * ldb + NR]);
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] += av[r] * bv[j];
            }
        }
    }
    let alpha = tile.alpha;
    for (r, row) in acc.iter().enumerate().take(tile.mr) {
        // SAFETY: the caller guarantees mr rows of nr writable floats at stride ldo.
        let o = unsafe { core::slice::from_raw_parts_mut(tile.out.add(r * tile.ldo), tile.nr) };
        for (d, &v) in o.iter_mut().zip(row) {
            *d = if tile.overwrite {
                alpha * v
            } else {
                *d + alpha * v
            };
        }
    }
    // SAFETY: the tile's contract (the caller's).
    unsafe { tile.finish_in_memory() };
}

/// A batch of row-major products `out[i] = A[ia] x B[ib]` (MatMul): for each index of
/// `batch_shape`, `ia` and `ib` are that index dotted with `a_strides` / `b_strides` (element
/// offsets, 0 along broadcast axes), and `out` holds the `m x n` results back to back. With
/// `trans_b`, each B is stored transposed, `[n, k]` (a MatMul by the transpose of its input's
/// last two axes, as attention's `Q x K^T`): the transpose is never made.
#[allow(
    clippy::too_many_arguments,
    reason = "batch geometry, matrix shape and the operands"
)]
pub fn batched_gemm_f32(
    exec: &crate::threads::Exec,
    batch_shape: &[usize],
    a_strides: &[usize],
    b_strides: &[usize],
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    trans_b: bool,
    out: &mut [f32],
) {
    // A transposed B (`[n, k]` in memory) is read through its strides, never copied.
    let sb = if trans_b {
        Strides { rows: 1, cols: k }
    } else {
        Strides { rows: n, cols: 1 }
    };
    let sa = Strides { rows: k, cols: 1 };
    let product = |exec: &crate::threads::Exec, ia: usize, ib: usize, dst: &mut [f32]| {
        gemm_f32_exec(exec, m, n, k, 1.0, &a[ia..], sa, &b[ib..], sb, false, dst);
    };
    let count: usize = batch_shape.iter().product();
    if exec.threads() > 1 && count >= 2 * exec.threads() && m * n > 0 {
        // Enough products (attention's heads) to give each thread whole ones: one section
        // for the batch, each product on one thread, instead of a section per product.
        assert!(out.len() >= count * m * n, "batched gemm: output too short");
        let shared = crate::threads::SharedMut::new(&mut out[..count * m * n]);
        let single = crate::threads::Exec::single();
        exec.for_each(count, &|i| {
            let (mut rem, mut ia, mut ib) = (i, 0, 0);
            for d in (0..batch_shape.len()).rev() {
                let index = rem % batch_shape[d];
                rem /= batch_shape[d];
                ia += index * a_strides[d];
                ib += index * b_strides[d];
            }
            // SAFETY: product i alone writes its m x n block.
            let dst = unsafe { shared.slice(i * m * n, m * n) };
            product(&single, ia, ib, dst);
        });
        return;
    }
    crate::elementwise::for_each_index(batch_shape, [a_strides, b_strides], |i, [ia, ib]| {
        product(exec, ia, ib, &mut out[i * m * n..]);
    });
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

#[cfg(any(test, all(fuzzing, feature = "std")))]
#[cfg_attr(
    fuzzing,
    allow(dead_code, reason = "helpers of tests that fuzzing builds drop")
)]
pub(crate) mod tests {
    use super::*;

    #[cfg(feature = "std")]
    #[test]
    fn batched_heads_on_two_threads_match_one_thread() {
        // 12 heads of 70x50x33 with B broadcast over the first batch axis, and 3 products
        // (fewer than two per thread: each product splits instead). Under Miri, 6x5x3.
        let (m, n, k) = if cfg!(miri) {
            (6usize, 5usize, 3usize)
        } else {
            (70, 50, 33)
        };
        let a: std::vec::Vec<f32> = (0..2 * 6 * m * k)
            .map(|i| (i % 37) as f32 * 0.1 - 1.8)
            .collect();
        let b: std::vec::Vec<f32> = (0..6 * k * n)
            .map(|i| (i % 23) as f32 * 0.05 - 0.5)
            .collect();
        let two = crate::threads::Exec::with_threads(2);
        let one = crate::threads::Exec::single();
        for (shape, sa, sb) in [
            (&[2usize, 6][..], &[6 * m * k, m * k][..], &[0, k * n][..]),
            (&[3], &[m * k], &[k * n]),
        ] {
            let count: usize = shape.iter().product();
            let (mut want, mut got) = (
                std::vec![0f32; count * m * n],
                std::vec![0f32; count * m * n],
            );
            batched_gemm_f32(&one, shape, sa, sb, (m, n, k), &a, &b, false, &mut want);
            batched_gemm_f32(&two, shape, sa, sb, (m, n, k), &a, &b, false, &mut got);
            assert_eq!(got, want, "{shape:?}");
        }
    }
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    /// The largest fixed product (in multiply-adds) the tests run under Miri, whose
    /// interpreter is some thousand times slower than native code.
    const MIRI_MACS: usize = 3_000;

    /// Whether a fixed `m x n x k` case is left out under Miri.
    fn too_big_for_miri(m: usize, n: usize, k: usize) -> bool {
        cfg!(miri) && m * n * k > MIRI_MACS
    }

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

    /// Every kernel path this CPU can run, by name.
    /// A GEMM path under test: `(m, n, k, a, a_strides, b, b_strides, out)`.
    type Path = Box<dyn Fn(usize, usize, usize, &[f32], Strides, &[f32], Strides, &mut [f32])>;

    /// The blocked driver with one ISA's kernel over the whole output, reading full panels of a
    /// row-major B in place if `in_place`, and A from pre-packed panels if `packed`.
    fn isa_path(isa: Isa, in_place: bool, packed: bool) -> Path {
        Box::new(move |m, n, k, a, sa, b, sb, out| {
            assert!(out.len() >= m * n);
            let source = MatrixPanels {
                b,
                strides: sb,
                in_place: in_place && sb.cols == 1,
            };
            let view = OutView {
                ptr: out.as_mut_ptr(),
                ld: n,
            };
            let mut panels = vec![0.0f32; m.div_ceil(8) * 8 * k];
            for i in 0..m {
                for p in 0..k {
                    panels[(i / 8 * k + p) * 8 + i % 8] = a[i * sa.rows + p * sa.cols];
                }
            }
            let a = if packed {
                AOperand::Panels8(&panels, k)
            } else {
                AOperand::Matrix(a, sa)
            };
            // SAFETY: the whole m x n output, on this thread; `paths` adds an ISA only when
            // the CPU runs it.
            unsafe {
                isa.blocked(
                    (0, m),
                    (0, n),
                    k,
                    1.0,
                    a,
                    &source,
                    false,
                    view,
                    Epilogue::default(),
                )
            }
        })
    }

    fn paths() -> Vec<(&'static str, Path)> {
        let mut paths: Vec<(&'static str, Path)> = vec![
            (
                "dispatch",
                Box::new(|m, n, k, a, sa, b, sb, out| {
                    gemm_f32(m, n, k, 1.0, a, sa, b, sb, false, out)
                }),
            ),
            (
                "small",
                Box::new(|m, n, k, a, sa, b, sb, out| {
                    gemm_small(m, n, k, 1.0, a, sa, b, sb, false, out)
                }),
            ),
            (
                "narrow",
                Box::new(|m, n, k, a, sa, b, sb, out| {
                    if sa.cols == 1 && k * n <= NARROW_BUF {
                        gemm_narrow(m, n, k, 1.0, a, sa, b, sb, false, out)
                    } else {
                        gemm_f32(m, n, k, 1.0, a, sa, b, sb, false, out)
                    }
                }),
            ),
            ("portable", isa_path(Isa::Portable, false, false)),
            ("portable, B in place", isa_path(Isa::Portable, true, false)),
            (
                "portable, A pre-packed",
                isa_path(Isa::Portable, false, true),
            ),
        ];
        #[cfg(feature = "std")]
        paths.push((
            "two threads",
            Box::new(|m, n, k, a, sa, b, sb, out| {
                let exec = crate::threads::Exec::with_threads(2);
                gemm_f32_exec(&exec, m, n, k, 1.0, a, sa, b, sb, false, out)
            }),
        ));
        #[cfg(target_arch = "x86_64")]
        {
            if crate::gemm_x86_64::has_avx512() {
                paths.push(("avx512", isa_path(Isa::Avx512, false, false)));
                paths.push(("avx512, B in place", isa_path(Isa::Avx512, true, false)));
                paths.push(("avx512, A pre-packed", isa_path(Isa::Avx512, false, true)));
            } else {
                std::println!("skipped the AVX-512 kernel: this CPU lacks avx512f (or std is off)");
            }
            if crate::gemm_x86_64::has_avx2_fma() {
                paths.push(("avx2", isa_path(Isa::Avx2, false, false)));
                paths.push(("avx2, A pre-packed", isa_path(Isa::Avx2, false, true)));
            } else {
                std::println!("skipped the AVX2 kernel: this CPU lacks avx2/fma (or std is off)");
            }
        }
        paths
    }

    /// A one-row product large enough to split its columns across threads gives the
    /// one-thread result, with both layouts of B and a tail of columns.
    #[cfg(feature = "std")]
    #[test]
    fn one_row_products_split_across_threads_agree() {
        // Under Miri 16 x 70 (one call).
        let (k, n) = if cfg!(miri) { (16, 70) } else { (300, 1000) };
        let a: std::vec::Vec<f32> = (0..k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let b: std::vec::Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0)
            .collect();
        let row_major = Strides { rows: n, cols: 1 };
        let col_major = Strides { rows: 1, cols: k };
        for sb in [row_major, col_major] {
            let sa = Strides { rows: k, cols: 1 };
            let mut want = std::vec![0.5f32; n];
            let mut got = want.clone();
            let one = crate::threads::Exec::with_threads(1);
            let two = crate::threads::Exec::with_threads(2);
            gemm_f32_act_exec(&one, 1, n, k, 1.5, &a, sa, &b, sb, true, &mut want, None);
            gemm_f32_act_exec(&two, 1, n, k, 1.5, &a, sa, &b, sb, true, &mut got, None);
            assert_eq!(got, want);
        }
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

    /// The strides of a row-major `m x k` A and `k x n` B, or of their column-major forms.
    fn layouts(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> (Strides, Strides) {
        let sa = if trans_a {
            Strides { rows: 1, cols: m }
        } else {
            Strides { rows: k, cols: 1 }
        };
        let sb = if trans_b {
            Strides { rows: 1, cols: k }
        } else {
            Strides { rows: n, cols: 1 }
        };
        (sa, sb)
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
            (130, 70, 19),
            (9, 33, 257),
            // Big enough to be split across threads: by columns, then by rows.
            (40, 300, 30),
            (200, 70, 40),
        ];
        for (name, path) in paths() {
            for &(m, n, k) in &shapes {
                if too_big_for_miri(m, n, k) {
                    continue;
                }
                for (trans_a, trans_b) in [(false, false), (false, true), (true, false)] {
                    let (a, b) = operands(m, n, k);
                    // A transposed (column-major) is what constant weights are stored as.
                    let (sa, sb) = layouts(m, n, k, trans_a, trans_b);
                    let want = reference(m, n, k, &a, sa, &b, sb);
                    let mut out = std::vec![f32::NAN; m * n];
                    if (k == 0 || m == 0 || n == 0) && name != "dispatch" {
                        continue;
                    }
                    path(m, n, k, &a, sa, &b, sb, &mut out);
                    for (x, y) in out.iter().zip(&want) {
                        assert!(
                            (x - y).abs() <= 1e-3 * y.abs().max(1.0),
                            "{name} {m}x{n}x{k} (A transposed {trans_a}): {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    /// One random case of [`crate::testing::gemm`]: mostly small sizes (every tail of every
    /// tile), sometimes big enough for threads.
    pub(crate) fn random_case(rng: &mut impl crate::testing::Source) {
        let big = rng.below(8) == 7;
        // Under Miri at most 12 (big) or 8.
        let (big_max, small_max) = if cfg!(miri) { (12, 8) } else { (300, 70) };
        let mut dim = || {
            if big {
                rng.range(1, big_max)
            } else {
                rng.range(1, small_max)
            }
        };
        let (m, n, k) = (dim(), dim(), dim());
        let (trans_a, trans_b) = (rng.below(2) == 1, rng.below(2) == 1);
        let (a, b) = operands(m, n, k);
        let (sa, sb) = layouts(m, n, k, trans_a, trans_b);
        let want = reference(m, n, k, &a, sa, &b, sb);
        for (name, path) in paths() {
            let mut out = std::vec![f32::NAN; m * n];
            path(m, n, k, &a, sa, &b, sb, &mut out);
            for (x, y) in out.iter().zip(&want) {
                assert!(
                    (x - y).abs() <= 1e-3 * y.abs().max(1.0),
                    "{name} {m}x{n}x{k} (A transposed {trans_a}, B {trans_b}): {x} vs {y}"
                );
            }
        }
    }

    #[cfg(test)]
    proptest::proptest! {
        #![proptest_config(crate::testing::config(40))]
        #[test]
        fn random_shapes_match_reference(tape in crate::testing::tape()) {
            random_case(&mut crate::testing::Tape(&tape));
        }
    }

    #[test]
    fn fused_activation_matches_a_second_pass() {
        for &(m, n, k) in &[
            (3, 5, 7),
            (65, 70, 300),
            (130, 33, 19),
            (2, 40, 9),
            (20, 4, 16),
        ] {
            if too_big_for_miri(m, n, k) {
                continue;
            }
            let (a, b) = operands(m, n, k);
            let (sa, sb) = (Strides { rows: k, cols: 1 }, Strides { rows: n, cols: 1 });
            let mut plain = vec![0.0f32; m * n];
            gemm_f32(m, n, k, 1.0, &a, sa, &b, sb, false, &mut plain);
            for act in [
                crate::epilogue::Activation::Relu,
                crate::epilogue::Activation::Clip(-1.0, 2.0),
                crate::epilogue::Activation::HardSwish,
            ] {
                let mut fused = vec![0.0f32; m * n];
                gemm_f32_act(m, n, k, 1.0, &a, sa, &b, sb, false, &mut fused, Some(act));
                let want: Vec<f32> = plain.iter().map(|&v| act.apply(v)).collect();
                assert_eq!(fused, want, "{act:?} {m}x{n}x{k}");
            }
        }
    }

    /// Deterministic `m x k` and `k x n` operands with small exact values.
    fn operands(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.25)
            .collect();
        let b = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.5)
            .collect();
        (a, b)
    }

    /// The blocked product of row-major `a` (`m x k`) and `b` (`k x n`) with one ISA's
    /// kernel and an epilogue.
    fn blocked_with(
        isa: Isa,
        (m, n, k): (usize, usize, usize),
        a: &[f32],
        b: &[f32],
        epilogue: Epilogue<'_>,
    ) -> Vec<f32> {
        let mut out = vec![f32::NAN; m * n];
        let source = MatrixPanels::new(b, Strides { rows: n, cols: 1 }, m);
        let view = OutView {
            ptr: out.as_mut_ptr(),
            ld: n,
        };
        let a = AOperand::Matrix(a, Strides { rows: k, cols: 1 });
        // SAFETY: the whole m x n output, on this thread; the caller picks an ISA the CPU runs.
        unsafe { isa.blocked((0, m), (0, n), k, 0.5, a, &source, false, view, epilogue) };
        out
    }

    fn packed_b_cases() {
        for &(m, n, k) in &[
            (3, 9, 5),
            (17, 48, 40),
            (9, 100, 300),
            (40, 130, 7),
            (64, 200, 64),
        ] {
            if too_big_for_miri(m, n, k) {
                continue;
            }
            let (a, b) = operands(m, n, k);
            let sa = Strides { rows: k, cols: 1 };
            let sb = Strides { rows: n, cols: 1 };
            let mut want = vec![0.0f32; m * n];
            gemm_f32(m, n, k, 0.5, &a, sa, &b, sb, false, &mut want);
            let mut panels = vec![f32::NAN; packed_b_len(k, n)];
            pack_b(&b, sb, k, n, &mut panels);
            // B stored by columns, `ld` apart (attention's keys, read as K^T): the same
            // panels, from the transposing path.
            for ld in [k, k + 3] {
                let mut by_columns = vec![f32::NAN; (n - 1) * ld + k];
                for (j, column) in by_columns.chunks_mut(ld).enumerate() {
                    for (p, x) in column.iter_mut().take(k).enumerate() {
                        *x = b[p * n + j];
                    }
                }
                let mut transposed = vec![f32::NAN; packed_b_len(k, n)];
                let st = Strides { rows: 1, cols: ld };
                pack_b(&by_columns, st, k, n, &mut transposed);
                assert_eq!(transposed, panels, "{m}x{n}x{k}, columns {ld} apart");
            }
            for threads in [1, 2] {
                #[cfg(feature = "std")]
                let exec = crate::threads::Exec::with_threads(threads);
                #[cfg(not(feature = "std"))]
                let exec = crate::threads::Exec::single();
                let mut got = vec![f32::NAN; m * n];
                let act = Some(crate::epilogue::Activation::Relu);
                gemm_packed_b_exec(&exec, m, n, k, 0.5, &a, sa, &panels, false, &mut got, act);
                let relu: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
                for (x, y) in got.iter().zip(&relu) {
                    assert!(
                        (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                        "{m}x{n}x{k}, {threads} threads: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn packed_b_matches_the_plain_product() {
        packed_b_cases();
    }

    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri no CPU feature is detected: the same paths as the test above"
    )]
    fn packed_b_matches_the_plain_product_without_avx512() {
        crate::gemm_x86_64::without_avx512(packed_b_cases);
    }

    #[test]
    fn kernel_epilogue_matches_a_second_pass() {
        use crate::epilogue::Activation as A;
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if crate::gemm_x86_64::has_avx512() {
                isas.push(Isa::Avx512);
            }
            if crate::gemm_x86_64::has_avx2_fma() {
                isas.push(Isa::Avx2);
            }
        }
        // Chains applied in registers, and one that leaves registers at the Sigmoid.
        let chains: [&[A]; 3] = [
            &[A::Relu],
            &[
                A::LeakyRelu(0.1),
                A::Affine(0.5, 0.25),
                A::HardSwish,
                A::Clip(-0.5, 3.0),
            ],
            &[A::HardSigmoid(0.2, 0.5), A::Sigmoid, A::Relu],
        ];
        // Widths covering one, two and three vectors of the AVX-512 tile and their tails;
        // depths below and above a panel's.
        for &(m, n, k) in &[
            (13, 1, 5),
            (9, 16, 40),
            (17, 31, 300),
            (8, 48, 7),
            (21, 100, 70),
        ] {
            if too_big_for_miri(m, n, k) {
                continue;
            }
            let (a, b) = operands(m, n, k);
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.5 - 3.0).collect();
            let residual: Vec<f32> = (0..m * n).map(|i| (i % 9) as f32 - 4.0).collect();
            for &isa in &isas {
                let plain = blocked_with(isa, (m, n, k), &a, &b, Epilogue::default());
                for acts in chains {
                    let epilogue = Epilogue {
                        row_bias: Some(&bias),
                        residual: Some(&residual),
                        acts,
                    };
                    let mut want = plain.clone();
                    epilogue.apply(&mut want, n);
                    let got = blocked_with(isa, (m, n, k), &a, &b, epilogue);
                    assert_eq!(got, want, "{m}x{n}x{k} with {acts:?}");
                }
            }
        }
    }
}
