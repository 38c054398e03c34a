//! Data movement: transpose, concatenation, split, slice, pad, tile, the gathers and
//! scatters, Trilu, EyeLike, CumSum, ReverseSequence and OneHot.
//!
//! Index data read at run time (Gather*, Scatter*, OneHot, ReverseSequence) never panics or
//! reads out of bounds: negative indices count from the end as the ONNX spec says, and an
//! index still out of range yields zeros (gathers, OneHot) or is skipped (scatters).

/// Permutes the axes of `x` (shape `in_shape`) into `out`: output axis `i` is input axis
/// `perm[i]`.
pub fn transpose<T: Copy>(x: &[T], out: &mut [T], in_shape: &[usize], perm: &[usize]) {
    let rank = in_shape.len();
    assert!(rank <= 16 && perm.len() == rank, "transpose rank");
    let mut in_strides = [0usize; 16];
    let mut acc = 1;
    for axis in (0..rank).rev() {
        in_strides[axis] = acc;
        acc *= in_shape[axis];
    }
    let mut out_shape = [0usize; 16];
    let mut strides = [0usize; 16];
    for (i, &p) in perm.iter().enumerate() {
        out_shape[i] = in_shape[p];
        strides[i] = in_strides[p];
    }
    // Trailing axes the permutation leaves in place move as whole contiguous blocks (a
    // channel shuffle moves planes of h x w pixels).
    let tail = (0..rank)
        .rev()
        .take_while(|&axis| perm[axis] == axis)
        .count();
    if tail == rank {
        let n = out.len().min(x.len());
        out[..n].copy_from_slice(&x[..n]);
        return;
    }
    // Axes `lead..split` and `split..rank` trading places after `lead` fixed ones (NCHW to
    // NHWC and back): a batch of matrix transposes, done in cache-sized tiles.
    if let Some((batch, rows, cols)) = rotation(in_shape, perm) {
        let n = batch * rows * cols;
        assert!(
            x.len() >= n && out.len() >= n,
            "transpose buffers too short"
        );
        let out = crate::threads::SharedMut::new(&mut out[..n]);
        for b in 0..batch {
            transpose_band(x, &out, (batch, rows, cols), b, (0, rows));
        }
        return;
    }
    let block: usize = in_shape[rank - tail..].iter().product();
    if tail > 0 && block > 1 {
        let outer = rank - tail;
        crate::elementwise::for_each_index(&out_shape[..outer], [&strides[..outer]], |i, [src]| {
            out[i * block..][..block].copy_from_slice(&x[src..][..block]);
        });
        return;
    }
    crate::elementwise::for_each_index(&out_shape[..rank], [&strides[..rank]], |i, [src]| {
        out[i] = x[src];
    });
}

/// [`transpose`] with the output split across `exec`'s threads when it moves whole blocks
/// (the permutation keeps trailing axes in place, as attention's head splits and merges do):
/// tasks take runs of indices of the first output axis longer than 1, each copying its
/// blocks from where they lie; or when it is a batch of matrix transposes (NCHW to NHWC and
/// back): tasks take bands of input rows, writing their segment of every output row. Other
/// permutations run in one call.
pub fn transpose_exec<T: Copy + Send + Sync>(
    exec: &crate::threads::Exec,
    x: &[T],
    out: &mut [T],
    in_shape: &[usize],
    perm: &[usize],
) {
    /// Elements a task copies.
    const TASK: usize = 1 << 14;
    let rank = in_shape.len();
    let n: usize = in_shape.iter().product();
    let tail = (0..rank)
        .rev()
        .take_while(|&axis| perm.get(axis) == Some(&axis))
        .count();
    let outer = rank - tail;
    let block: usize = in_shape[outer..].iter().product();
    // The first output axis with more than one index (those before it have one).
    let first = perm[..outer.min(perm.len())]
        .iter()
        .position(|&p| in_shape.get(p).is_some_and(|&d| d > 1));
    if let Some((batch, rows, cols)) = rotation(in_shape, perm)
        .filter(|_| exec.threads() > 1 && n >= 1 << 15 && x.len() >= n && out.len() >= n)
    {
        // Bands of whole 8 x 8 blocks; small matrices (a channel shuffle's, one per pixel) go
        // several to a task.
        let band = TASK.div_ceil(cols).next_multiple_of(8).min(rows);
        let bands = rows.div_ceil(band);
        let units = batch * bands;
        let per_task = TASK.div_ceil(band * cols).max(1);
        let out = crate::threads::SharedMut::new(&mut out[..n]);
        exec.for_each(units.div_ceil(per_task), &|t| {
            for unit in t * per_task..((t + 1) * per_task).min(units) {
                let (b, r0) = (unit / bands, unit % bands * band);
                transpose_band(x, &out, (batch, rows, cols), b, (r0, (r0 + band).min(rows)));
            }
        });
        return;
    }
    let Some(a) = first.filter(|_| {
        exec.threads() > 1
            && rank <= 16
            && perm.len() == rank
            && tail >= 1
            && outer >= 1
            && block >= 16
            && n >= 1 << 16
            && x.len() >= n
            && out.len() >= n
    }) else {
        return transpose(x, out, in_shape, perm);
    };
    let mut in_strides = [0usize; 16];
    let mut acc = 1;
    for axis in (0..rank).rev() {
        in_strides[axis] = acc;
        acc *= in_shape[axis];
    }
    let (mut out_shape, mut strides) = ([0usize; 16], [0usize; 16]);
    for (i, &p) in perm.iter().enumerate() {
        out_shape[i] = in_shape[p];
        strides[i] = in_strides[p];
    }
    let (inner_shape, inner_strides) = (&out_shape[a + 1..outer], &strides[a + 1..outer]);
    let rest = inner_shape.iter().product::<usize>() * block;
    let per = TASK.div_ceil(rest).max(1);
    exec.for_each_chunk(&mut out[..n], per * rest, &|t, part| {
        for (j, dst) in part.chunks_exact_mut(rest).enumerate() {
            let base = (t * per + j) * strides[a];
            crate::elementwise::for_each_index(inner_shape, [inner_strides], |i, [src]| {
                dst[i * block..][..block].copy_from_slice(&x[base + src..][..block]);
            });
        }
    });
}

/// The permutation as a batch of matrix transposes, `(batch, rows, cols)`: axes
/// `lead..split` and `split..rank` trading places after `lead` fixed ones, the last axis
/// moving (NCHW to NHWC and back); `None` for any other permutation.
fn rotation(in_shape: &[usize], perm: &[usize]) -> Option<(usize, usize, usize)> {
    let rank = in_shape.len();
    let lead = perm
        .iter()
        .enumerate()
        .take_while(|&(i, &a)| i == a)
        .count();
    if lead >= rank || perm.len() != rank || perm[rank - 1] == rank - 1 {
        return None;
    }
    let split = perm[lead];
    let rotated = (lead..rank).all(|i| {
        let want = if i < lead + rank - split {
            split + (i - lead)
        } else {
            lead + (i - lead - (rank - split))
        };
        perm[i] == want
    });
    rotated.then(|| {
        (
            in_shape[..lead].iter().product(),
            in_shape[lead..split].iter().product(),
            in_shape[split..].iter().product(),
        )
    })
}

/// Rows `r0..r1` of matrix `b` of a batch of `rows x cols` transposes of `x`, written where
/// they go in the output at `out` (its element `(b, c, r)` at `(b * cols + c) * rows + r`), in
/// tiles that stay in the L1 cache; elements of four bytes (f32, i32, u32) move as 8 x 8
/// blocks of vector lanes where the CPU has AVX.
///
/// Panics if `x` is too short or `r1 > rows`; `out` must hold the whole output (checked by
/// the callers, which also keep other writers off these rows' elements).
fn transpose_band<T: Copy>(
    x: &[T],
    out: &crate::threads::SharedMut<'_, T>,
    (batch, rows, cols): (usize, usize, usize),
    b: usize,
    (r0, r1): (usize, usize),
) {
    // Input rows per pass (each output row takes runs of up to this many elements) and
    // columns per tile: a 1024 x 64 tile measured 1.3x faster than 64 x 64 on a 112 x 112
    // x 64 image, whose output does not fit in the L2 cache.
    const ROWS: usize = 1024;
    const COLS: usize = 64;
    assert!(
        b < batch && r1 <= rows && x.len() >= batch * rows * cols,
        "transpose buffers too short"
    );
    if r0 >= r1 || cols == 0 {
        return;
    }
    let src = &x[b * rows * cols..][..rows * cols];
    if rows == 2 {
        // Two rows interleaved (a two-group channel shuffle): one pass, no index math.
        // SAFETY: the matrix's output is this call's alone (the callers' contract).
        let dst = unsafe { out.slice(b * 2 * cols, 2 * cols) };
        let (top, bottom) = src.split_at(cols);
        for (pair, (&p, &q)) in dst.chunks_exact_mut(2).zip(top.iter().zip(bottom)) {
            pair[0] = p;
            pair[1] = q;
        }
        return;
    }
    // The matrix's output: every element this call writes lies inside it.
    let dst = out.span_ptr(b * rows * cols, rows * cols);
    for t0 in (r0..r1).step_by(ROWS) {
        let t1 = (t0 + ROWS).min(r1);
        for c0 in (0..cols).step_by(COLS) {
            let c1 = (c0 + COLS).min(cols);
            // SAFETY: the tile's rows t0..t1 of columns c0..c1 lie inside the matrix, their
            // transposes inside its output (t1 <= rows, c1 <= cols), written by this call only.
            unsafe {
                transpose_block(
                    &src[t0 * cols + c0..],
                    cols,
                    dst.add(c0 * rows + t0),
                    rows,
                    (t1 - t0, c1 - c0),
                    true,
                );
            }
        }
    }
}

/// `dst[j * ld_dst + i] = src[i * ld_src + j]` for `i < rows`, `j < cols`: a `rows x cols`
/// block whose rows lie `ld_src` apart (planes of a channels-first image) transposed into one
/// whose rows lie `ld_dst` apart (pixels of a channels-last one), 8 x 8 at a time with AVX for
/// four-byte elements.
///
/// Panics if a block does not fit its buffer.
pub(crate) fn transpose_strided<T: Copy>(
    src: &[T],
    ld_src: usize,
    dst: &mut [T],
    ld_dst: usize,
    (rows, cols): (usize, usize),
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        src.len() >= (rows - 1) * ld_src + cols
            && dst.len() >= (cols - 1) * ld_dst + rows
            && ld_src >= cols
            && ld_dst >= rows,
        "transpose block outside its buffer"
    );
    // SAFETY: the block and its transpose lie inside `src` and `dst` (asserted above).
    unsafe { transpose_block(src, ld_src, dst.as_mut_ptr(), ld_dst, (rows, cols), false) };
}

/// [`transpose_strided`] into a raw destination, which other writers may share (the bands of a
/// threaded transpose): 8 x 8 blocks with AVX for four-byte elements, the rest one by one.
/// With `columns_outside` the blocks go column block by column block, each filling eight
/// destination rows front to back (long destination rows: a band of a matrix transpose);
/// otherwise row block by row block, each reading eight source rows front to back (a padded
/// row's channel planes), whichever measured faster for its caller.
///
/// # Safety
/// `src` holds the `rows x cols` block (rows `ld_src` apart); `dst` is writable at
/// `j * ld_dst + i` for every `i < rows`, `j < cols`, and no one else touches those elements
/// meanwhile.
unsafe fn transpose_block<T: Copy>(
    src: &[T],
    ld_src: usize,
    dst: *mut T,
    ld_dst: usize,
    (rows, cols): (usize, usize),
    columns_outside: bool,
) {
    let lanes =
        size_of::<T>() == 4 && align_of::<T>() == 4 && cfg!(target_arch = "x86_64") && has_avx();
    let (i0, j_end) = if lanes {
        (rows / 8 * 8, cols / 8 * 8)
    } else {
        (0, 0)
    };
    let block = |i: usize, j: usize| {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX is present (`lanes`); rows i..i + 8 of columns j..j + 8 lie inside `src`
        // and their transposes inside `dst` (the contract); T is four bytes aligned to four,
        // moved as bits.
        unsafe {
            transpose8x8_avx(
                src.as_ptr().add(i * ld_src + j).cast::<f32>(),
                ld_src,
                dst.add(j * ld_dst + i).cast::<f32>(),
                ld_dst,
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (i, j);
    };
    if columns_outside {
        for j in (0..j_end).step_by(8) {
            for i in (0..i0).step_by(8) {
                block(i, j);
            }
        }
    } else {
        for i in (0..i0).step_by(8) {
            for j in (0..j_end).step_by(8) {
                block(i, j);
            }
        }
    }
    // What the blocks left: the last rows over every column, the last columns of the others.
    for i in 0..rows {
        let from = if i < i0 { j_end } else { 0 };
        for j in from..cols {
            // SAFETY: (j, i) lies inside the destination block (the contract).
            unsafe { dst.add(j * ld_dst + i).write(src[i * ld_src + j]) };
        }
    }
}

/// Whether the 8 x 8 AVX transpose runs (on CPUs with AVX2, which have AVX).
fn has_avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::math_x86_64::Avx2::detect().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Transposes the 8 x 8 block at `src` (rows `ld_src` floats apart) into `dst` (rows `ld_dst`
/// apart): unpack pairs of rows, shuffle pairs of pairs, swap 128-bit halves. Only bits move.
///
/// # Safety
/// The CPU has AVX; both blocks lie inside their buffers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose8x8_avx(src: *const f32, ld_src: usize, dst: *mut f32, ld_dst: usize) {
    use core::arch::x86_64::*;
    // SAFETY: the contract: eight rows of eight floats readable at `src`, writable at `dst`.
    unsafe {
        let r: [__m256; 8] = core::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ld_src)));
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        for j in 0..4 {
            _mm256_storeu_ps(
                dst.add(j * ld_dst),
                _mm256_permute2f128_ps::<0x20>(u[j], u[j + 4]),
            );
            _mm256_storeu_ps(
                dst.add((j + 4) * ld_dst),
                _mm256_permute2f128_ps::<0x31>(u[j], u[j + 4]),
            );
        }
    }
}

/// Copies one concatenation input, viewed as `[outer, in_block]`, into its column range
/// `[offset, offset + in_block)` of the output viewed as `[outer, out_block]`.
pub fn concat_part<T: Copy>(
    x: &[T],
    out: &mut [T],
    outer: usize,
    in_block: usize,
    out_block: usize,
    offset: usize,
) {
    for o in 0..outer {
        out[o * out_block + offset..][..in_block].copy_from_slice(&x[o * in_block..][..in_block]);
    }
}

/// A whole concatenation: each input of `parts`, viewed as `[outer, in_block]` with its
/// `in_block`, goes to the next column range of the output viewed as `[outer, out_block]`
/// (the ranges follow one another from column 0). Runs of output rows split across `exec`'s
/// threads, each task copying every input's part of its rows.
///
/// Panics if an input is shorter than `outer * in_block` or the blocks overrun `out_block`.
pub fn concat_exec<T: Copy + Send + Sync>(
    exec: &crate::threads::Exec,
    parts: &[(&[T], usize)],
    out: &mut [T],
    outer: usize,
    out_block: usize,
) {
    /// Elements a task copies: enough to amortize waking a worker.
    const TASK: usize = 1 << 14;
    assert!(
        parts.iter().map(|&(_, b)| b).sum::<usize>() <= out_block
            && parts.iter().all(|&(x, b)| x.len() >= outer * b),
        "concat: inputs do not fit the output"
    );
    if out_block == 0 {
        return;
    }
    let rows = TASK.div_ceil(out_block).max(1);
    exec.for_each_chunk(
        &mut out[..outer * out_block],
        rows * out_block,
        &|t, dst| {
            let first = t * rows;
            let n = dst.len() / out_block;
            let mut offset = 0;
            for &(x, block) in parts {
                concat_part(
                    &x[first * block..],
                    &mut dst[..],
                    n,
                    block,
                    out_block,
                    offset,
                );
                offset += block;
            }
        },
    );
}

/// An integer (or float, for `OneHot`) element used as an index; kernels read every index
/// through this, so one kernel serves `int32` and `int64` index tensors.
pub trait IndexValue: Copy {
    /// The value as `i64` (floats truncate toward zero, saturating).
    fn to_i64(self) -> i64;
}

macro_rules! index_values {
    ($($t:ty),*) => {$(
        impl IndexValue for $t {
            #[inline]
            fn to_i64(self) -> i64 {
                self as i64
            }
        }
    )*};
}
index_values!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

/// Resolves a run-time index against a dimension: negative values count from the end.
/// Returns `None` when the index is still out of `[0, dim)`: the kernels then write the
/// element type's default (zero) for gathers and skip the update for scatters, so that bad
/// index data never panics or reads out of bounds.
#[inline]
pub fn resolve_index(index: i64, dim: usize) -> Option<usize> {
    let d = i64::try_from(dim).ok()?;
    let i = if index < 0 {
        index.checked_add(d)?
    } else {
        index
    };
    if (0..d).contains(&i) {
        usize::try_from(i).ok()
    } else {
        None
    }
}

/// Row-major strides of `shape` into a fixed array (rank at most 16).
#[inline]
fn strides_of(shape: &[usize]) -> [usize; 16] {
    assert!(shape.len() <= 16, "rank exceeds 16");
    let mut strides = [0usize; 16];
    let mut acc = 1;
    for axis in (0..shape.len()).rev() {
        strides[axis] = acc;
        acc *= shape[axis];
    }
    strides
}

/// Calls `f(flat_index, coords)` for every position of `shape` in row-major order.
#[inline]
pub fn for_each_coord(shape: &[usize], mut f: impl FnMut(usize, &[usize])) {
    let rank = shape.len();
    assert!(rank <= 16, "rank exceeds 16");
    if shape.contains(&0) {
        return;
    }
    let n: usize = shape.iter().product();
    let mut coords = [0usize; 16];
    for i in 0..n {
        f(i, &coords[..rank]);
        let mut axis = rank;
        while axis > 0 {
            axis -= 1;
            coords[axis] += 1;
            if coords[axis] < shape[axis] {
                break;
            }
            coords[axis] = 0;
        }
    }
}

/// Copies a strided view of `x` into `out` (Slice, with possibly negative steps):
/// element `c` of the output (shape `out_shape`) is `x[base + sum(c[a] * strides[a])]`.
pub fn strided_copy<T: Copy>(
    x: &[T],
    out: &mut [T],
    out_shape: &[usize],
    base: usize,
    strides: &[isize],
) {
    let rank = out_shape.len();
    if rank > 0 && strides[rank - 1] == 1 {
        // Contiguous rows: one copy per row.
        let row = out_shape[rank - 1];
        for_each_coord(&out_shape[..rank - 1], |r, c| {
            let mut off = base as isize;
            for (&ci, &s) in c.iter().zip(strides) {
                off += ci as isize * s;
            }
            let start = off as usize;
            out[r * row..][..row].copy_from_slice(&x[start..][..row]);
        });
        return;
    }
    for_each_coord(out_shape, |i, c| {
        let mut off = base as isize;
        for (&ci, &s) in c.iter().zip(strides) {
            off += ci as isize * s;
        }
        out[i] = x[off as usize];
    });
}

/// Copies the column range `[offset, offset + out_block)` of `x` viewed as
/// `[outer, in_block]` into `out` viewed as `[outer, out_block]` (one output of Split).
pub fn split_part<T: Copy>(
    x: &[T],
    out: &mut [T],
    outer: usize,
    in_block: usize,
    out_block: usize,
    offset: usize,
) {
    for o in 0..outer {
        out[o * out_block..][..out_block].copy_from_slice(&x[o * in_block + offset..][..out_block]);
    }
}

/// How `pad` fills positions outside the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// A constant value.
    Constant,
    /// Mirror without repeating the edge element.
    Reflect,
    /// Repeat the edge element.
    Edge,
    /// Wrap around (periodic).
    Wrap,
}

/// Pads (or crops, with negative pads) `x` of shape `in_shape` into `out` of shape
/// `out_shape`; `begin[a]` is the (signed) number of positions added before axis `a`.
/// Non-constant modes need every input dimension non-empty (the compiler checks).
pub fn pad<T: Copy>(
    x: &[T],
    out: &mut [T],
    in_shape: &[usize],
    out_shape: &[usize],
    begin: &[isize],
    mode: PadMode,
    value: T,
) {
    let strides = strides_of(in_shape);
    if mode == PadMode::Constant {
        pad_constant(x, out, in_shape, out_shape, begin, value);
        return;
    }
    let rank = in_shape.len();
    if rank == 0 || out_shape.contains(&0) {
        if rank == 0 && !out.is_empty() && !x.is_empty() {
            out[0] = x[0];
        }
        return;
    }
    // Where coordinate `c` of an output axis reads along input axis `a`.
    let source = |a: usize, c: usize| -> usize {
        let n = in_shape[a] as isize;
        let p = c as isize - begin[a];
        if (0..n).contains(&p) {
            return p as usize;
        }
        (match mode {
            PadMode::Constant | PadMode::Edge => p.clamp(0, n - 1),
            PadMode::Wrap => p.rem_euclid(n),
            PadMode::Reflect => {
                if n == 1 {
                    0
                } else {
                    let period = 2 * (n - 1);
                    let q = p.rem_euclid(period);
                    if q >= n {
                        period - q
                    } else {
                        q
                    }
                }
            }
        }) as usize
    };
    // Row by row along the last axis: the outer coordinates map once per row, the row's
    // inside part is one copy and only its borders map element by element.
    let (last, n_last) = (rank - 1, in_shape[rank - 1]);
    let row_len = out_shape[last];
    let lo = begin[last].clamp(0, row_len as isize) as usize;
    let hi = (begin[last] + n_last as isize).clamp(lo as isize, row_len as isize) as usize;
    for_each_coord(&out_shape[..last], |row, c| {
        let base: usize = c
            .iter()
            .enumerate()
            .map(|(a, &ci)| source(a, ci) * strides[a])
            .sum();
        let dst = &mut out[row * row_len..][..row_len];
        let src = &x[base..][..n_last];
        for (j, d) in dst[..lo].iter_mut().enumerate() {
            *d = src[source(last, j)];
        }
        let start = (lo as isize - begin[last]) as usize;
        dst[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
        for (j, d) in dst[hi..].iter_mut().enumerate() {
            *d = src[source(last, hi + j)];
        }
    });
}

/// Constant padding: fills `out`, then copies the overlap of input and output as rows.
fn pad_constant<T: Copy>(
    x: &[T],
    out: &mut [T],
    in_shape: &[usize],
    out_shape: &[usize],
    begin: &[isize],
    value: T,
) {
    out.fill(value);
    let rank = in_shape.len();
    let (in_strides, out_strides) = (strides_of(in_shape), strides_of(out_shape));
    let mut len = [0usize; 16];
    let (mut in_off, mut out_off) = (0usize, 0usize);
    for a in 0..rank {
        let b = begin[a];
        let in_start = if b < 0 { b.unsigned_abs() } else { 0 };
        let out_start = if b > 0 { b as usize } else { 0 };
        len[a] = in_shape[a]
            .saturating_sub(in_start)
            .min(out_shape[a].saturating_sub(out_start));
        if len[a] == 0 {
            return;
        }
        in_off += in_start * in_strides[a];
        out_off += out_start * out_strides[a];
    }
    if rank == 0 {
        out[0] = x[0];
        return;
    }
    let row = len[rank - 1];
    for_each_coord(&len[..rank - 1], |_, c| {
        let (mut i, mut o) = (in_off, out_off);
        for (a, &ci) in c.iter().enumerate() {
            i += ci * in_strides[a];
            o += ci * out_strides[a];
        }
        out[o..][..row].copy_from_slice(&x[i..][..row]);
    });
}

/// Repeats `x` (shape `in_shape`) into `out` (shape `out_shape`, each dim a multiple).
pub fn tile<T: Copy>(x: &[T], out: &mut [T], in_shape: &[usize], out_shape: &[usize]) {
    let strides = strides_of(in_shape);
    for_each_coord(out_shape, |i, c| {
        let off: usize = c
            .iter()
            .enumerate()
            .map(|(a, &ci)| (ci % in_shape[a]) * strides[a])
            .sum();
        out[i] = x[off];
    });
}

/// Gather along one axis: `x` viewed as `[outer, axis_dim, inner]`, `out` as
/// `[outer, indices.len(), inner]`. Negative indices count from the end; an index still out
/// of range yields zeros (the type's default) for its slice.
pub fn gather<T: Copy + Default, I: IndexValue>(
    x: &[T],
    indices: &[I],
    out: &mut [T],
    outer: usize,
    axis_dim: usize,
    inner: usize,
) {
    let n = indices.len();
    for o in 0..outer {
        for (j, &idx) in indices.iter().enumerate() {
            let dst = &mut out[(o * n + j) * inner..][..inner];
            match resolve_index(idx.to_i64(), axis_dim) {
                Some(k) => dst.copy_from_slice(&x[(o * axis_dim + k) * inner..][..inner]),
                None => dst.fill(T::default()),
            }
        }
    }
}

/// GatherElements: `out` has the shape of `indices` (`idx_shape`); each element reads `x`
/// (shape `x_shape`) at its own coordinates with the `axis` coordinate replaced by the index.
/// Out-of-range indices yield zero.
pub fn gather_elements<T: Copy + Default, I: IndexValue>(
    x: &[T],
    indices: &[I],
    out: &mut [T],
    x_shape: &[usize],
    idx_shape: &[usize],
    axis: usize,
) {
    let strides = strides_of(x_shape);
    for_each_coord(idx_shape, |i, c| {
        let mut off = 0;
        for (a, &ci) in c.iter().enumerate() {
            if a != axis {
                off += ci * strides[a];
            }
        }
        out[i] = match resolve_index(indices[i].to_i64(), x_shape[axis]) {
            Some(k) => x[off + k * strides[axis]],
            None => T::default(),
        };
    });
}

/// ScatterElements: `out` (already holding a copy of the data, shape `out_shape`) gets
/// `out[pos] = f(out[pos], updates[i])` where `pos` is the coordinates of index element `i`
/// with the `axis` coordinate replaced by the index. Out-of-range indices are skipped.
pub fn scatter_elements<T: Copy, I: IndexValue>(
    out: &mut [T],
    indices: &[I],
    updates: &[T],
    out_shape: &[usize],
    idx_shape: &[usize],
    axis: usize,
    f: impl Fn(T, T) -> T,
) {
    let strides = strides_of(out_shape);
    for_each_coord(idx_shape, |i, c| {
        let mut off = 0;
        for (a, &ci) in c.iter().enumerate() {
            if a != axis {
                off += ci * strides[a];
            }
        }
        if let Some(k) = resolve_index(indices[i].to_i64(), out_shape[axis]) {
            let p = off + k * strides[axis];
            out[p] = f(out[p], updates[i]);
        }
    });
}

/// GatherND: `batch` is the product of the batch dims; each batch has `tuples` index tuples
/// of `x_dims.len()` integers addressing the dims `x_dims` of `x` that follow the batch dims,
/// and each tuple selects a contiguous slice of `slice` elements. Tuples with an
/// out-of-range component yield zeros.
#[allow(
    clippy::too_many_arguments,
    reason = "the layout of the gather, all compile-time constants"
)]
pub fn gather_nd<T: Copy + Default, I: IndexValue>(
    x: &[T],
    indices: &[I],
    out: &mut [T],
    batch: usize,
    tuples: usize,
    x_dims: &[usize],
    slice: usize,
) {
    let k = x_dims.len();
    let batch_block: usize = x_dims.iter().product::<usize>() * slice;
    for b in 0..batch {
        for t in 0..tuples {
            let tuple = &indices[(b * tuples + t) * k..][..k];
            let dst = &mut out[(b * tuples + t) * slice..][..slice];
            match nd_offset(tuple, x_dims, slice) {
                Some(off) => dst.copy_from_slice(&x[b * batch_block + off..][..slice]),
                None => dst.fill(T::default()),
            }
        }
    }
}

/// The element offset of an index tuple into dims `dims` whose elements are `slice` long.
fn nd_offset<I: IndexValue>(tuple: &[I], dims: &[usize], slice: usize) -> Option<usize> {
    let mut off = 0;
    for (&v, &d) in tuple.iter().zip(dims) {
        off = off * d + resolve_index(v.to_i64(), d)?;
    }
    Some(off * slice)
}

/// ScatterND: `out` (a copy of the data) gets, for each of the `tuples` index tuples of
/// `x_dims.len()` integers, its slice of `slice` elements combined with the matching update
/// slice by `f(old, update)`. Tuples with an out-of-range component are skipped.
pub fn scatter_nd<T: Copy, I: IndexValue>(
    out: &mut [T],
    indices: &[I],
    updates: &[T],
    tuples: usize,
    x_dims: &[usize],
    slice: usize,
    f: impl Fn(T, T) -> T,
) {
    let k = x_dims.len();
    for t in 0..tuples {
        if let Some(off) = nd_offset(&indices[t * k..][..k], x_dims, slice) {
            for (o, &u) in out[off..][..slice]
                .iter_mut()
                .zip(&updates[t * slice..][..slice])
            {
                *o = f(*o, u);
            }
        }
    }
}

/// TensorScatter (KV-cache update): `out` (a copy of the past cache) viewed as
/// `[outer, max_seq, inner]`, `update` as `[outer, seq, inner]`; row `s` of outer slice `o`
/// goes to sequence position `write[b] + s` (modulo `max_seq` when `circular`), where
/// `b = o / per_batch` and `write` is empty for all zeros. Rows landing outside the cache
/// (linear mode with a bad index) are skipped.
#[allow(clippy::too_many_arguments, reason = "layout constants and the mode")]
pub fn tensor_scatter<T: Copy, I: IndexValue>(
    out: &mut [T],
    update: &[T],
    write: &[I],
    outer: usize,
    per_batch: usize,
    max_seq: usize,
    seq: usize,
    inner: usize,
    circular: bool,
) {
    for o in 0..outer {
        let start = write.get(o / per_batch.max(1)).map_or(0, |w| w.to_i64());
        for s in 0..seq {
            let Some(p) = start.checked_add(s as i64) else {
                continue;
            };
            let p = if circular && max_seq > 0 {
                p.rem_euclid(max_seq as i64)
            } else {
                p
            };
            let Some(p) = usize::try_from(p).ok().filter(|&p| p < max_seq) else {
                continue;
            };
            out[(o * max_seq + p) * inner..][..inner]
                .copy_from_slice(&update[(o * seq + s) * inner..][..inner]);
        }
    }
}

/// Compress: `x` viewed as `[outer, n, inner]`; the blocks `j` with a non-zero `cond[j]`
/// (positions past the end of `cond` count as false) go to `out` in order.
pub fn compress<T: Copy>(
    x: &[T],
    cond: &[u8],
    out: &mut [T],
    outer: usize,
    n: usize,
    inner: usize,
) {
    let mut w = 0;
    for o in 0..outer {
        for (j, _) in cond.iter().take(n).enumerate().filter(|(_, &c)| c != 0) {
            out[w..][..inner].copy_from_slice(&x[(o * n + j) * inner..][..inner]);
            w += inner;
        }
    }
}

/// Trilu on `batch` matrices of `rows x cols`: keeps the upper (`j - i >= k`) or lower
/// (`j - i <= k`) triangle and zeroes the rest.
pub fn trilu<T: Copy + Default>(
    x: &[T],
    out: &mut [T],
    batch: usize,
    rows: usize,
    cols: usize,
    k: i64,
    upper: bool,
) {
    for b in 0..batch {
        for i in 0..rows {
            for j in 0..cols {
                let p = (b * rows + i) * cols + j;
                let d = j as i64 - i as i64;
                let keep = if upper { d >= k } else { d <= k };
                out[p] = if keep { x[p] } else { T::default() };
            }
        }
    }
}

/// EyeLike: ones on the diagonal `j - i == k` of a `rows x cols` matrix, zeros elsewhere.
pub fn eye<T: Copy>(out: &mut [T], rows: usize, cols: usize, k: i64, zero: T, one: T) {
    for i in 0..rows {
        for j in 0..cols {
            out[i * cols + j] = if j as i64 - i as i64 == k { one } else { zero };
        }
    }
}

/// CumSum / CumProd of `x` (shape `shape`) along the run-time `axis` (negative counts from
/// the end): `op` is the type's addition or multiplication and `init` its identity. An axis
/// out of range leaves the output zeroed.
#[allow(
    clippy::too_many_arguments,
    reason = "layout, flags, identity and operation"
)]
pub fn cumulative<T: Copy + Default>(
    x: &[T],
    out: &mut [T],
    shape: &[usize],
    axis: i64,
    exclusive: bool,
    reverse: bool,
    init: T,
    op: impl Fn(T, T) -> T,
) {
    let Some(axis) = resolve_index(axis, shape.len()) else {
        out.fill(T::default());
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
                    acc = op(acc, x[p]);
                } else {
                    acc = op(acc, x[p]);
                    out[p] = acc;
                }
            }
        }
    }
}

/// ReverseSequence: for each batch entry `b` (along `batch_axis`), reverses the first
/// `lens[b]` elements along `time_axis` (lengths clamped to `[0, time_dim]`).
pub fn reverse_sequence<T: Copy, I: IndexValue>(
    x: &[T],
    lens: &[I],
    out: &mut [T],
    shape: &[usize],
    batch_axis: usize,
    time_axis: usize,
) {
    let strides = strides_of(shape);
    let steps = shape[time_axis];
    for_each_coord(shape, |i, c| {
        let len = usize::try_from(lens[c[batch_axis]].to_i64().max(0))
            .unwrap_or(0)
            .min(steps);
        let t = c[time_axis];
        out[i] = if t < len {
            x[i - t * strides[time_axis] + (len - 1 - t) * strides[time_axis]]
        } else {
            x[i]
        };
    });
}

/// OneHot: `out` viewed as `[outer, depth, inner]`, `indices` as `[outer, inner]`; the
/// position of each index (negative ones count from the end) gets `on`, the rest `off`.
#[allow(clippy::too_many_arguments, reason = "layout constants and two values")]
pub fn one_hot<T: Copy, I: IndexValue>(
    indices: &[I],
    out: &mut [T],
    outer: usize,
    depth: usize,
    inner: usize,
    off: T,
    on: T,
) {
    out.fill(off);
    for o in 0..outer {
        for r in 0..inner {
            if let Some(k) = resolve_index(indices[o * inner + r].to_i64(), depth) {
                out[(o * depth + k) * inner + r] = on;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "std")]
    #[test]
    fn transpose_exec_matches_one_call_on_two_threads() {
        // Attention's head split and merge, a block move behind a unit axis, and a matrix
        // transpose (which stays one call).
        let exec = crate::threads::Exec::with_threads(2);
        let cases: &[(&[usize], &[usize])] = if cfg!(miri) {
            // Under Miri (some thousand times slower), a small block move and matrix
            // transpose: below the sizes that split across threads, so one call each.
            &[
                (&[1, 5, 3, 8], &[0, 2, 1, 3]),
                (&[1, 4, 5, 6], &[0, 2, 3, 1]),
            ]
        } else {
            &[
                (&[1, 197, 12, 64], &[0, 2, 1, 3]),
                (&[1, 12, 197, 64], &[0, 2, 1, 3]),
                (&[2, 6, 50, 7, 32], &[0, 3, 1, 2, 4]),
                (&[1, 64, 40, 40], &[0, 2, 3, 1]),
            ]
        };
        for &(shape, perm) in cases {
            let n: usize = shape.iter().product();
            let x: std::vec::Vec<u32> = (0..n as u32).collect();
            let (mut one, mut split) = (std::vec![0u32; n], std::vec![0u32; n]);
            transpose(&x, &mut one, shape, perm);
            transpose_exec(&exec, &x, &mut split, shape, perm);
            assert_eq!(split, one, "{shape:?} {perm:?}");
        }
    }

    /// Index by index: output element `i` of `perm` applied to `shape`.
    fn naive<T: Copy>(x: &[T], shape: &[usize], perm: &[usize]) -> std::vec::Vec<T> {
        let rank = shape.len();
        let mut strides = std::vec![1usize; rank];
        for a in (0..rank.saturating_sub(1)).rev() {
            strides[a] = strides[a + 1] * shape[a + 1];
        }
        let out_shape: std::vec::Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let n: usize = shape.iter().product();
        (0..n)
            .map(|mut i| {
                let mut src = 0;
                for a in (0..rank).rev() {
                    src += (i % out_shape[a]) * strides[perm[a]];
                    i /= out_shape[a];
                }
                x[src]
            })
            .collect()
    }

    /// The matrix transposes (NCHW to NHWC and back, with sizes off the 8 x 8 blocks and two
    /// rows) against the index-by-index definition, in 1-, 4- and 8-byte elements, in one call
    /// and on two threads.
    #[cfg(feature = "std")]
    #[test]
    fn matrix_transposes_match_the_definition() {
        let exec = crate::threads::Exec::with_threads(2);
        let cases: &[(&[usize], &[usize])] = if cfg!(miri) {
            // Under Miri, small forms of each case (below the sizes that split across
            // threads).
            &[
                (&[2, 5, 9, 11], &[0, 2, 3, 1]),
                (&[1, 9, 5, 8], &[0, 3, 1, 2]),
                (&[3, 2, 37], &[0, 2, 1]),
                (&[1, 10, 9, 3], &[0, 3, 1, 2]),
                (&[7, 30], &[1, 0]),
            ]
        } else {
            &[
                (&[1, 64, 40, 40], &[0, 2, 3, 1]),
                (&[1, 40, 40, 64], &[0, 3, 1, 2]),
                (&[2, 13, 19, 21], &[0, 2, 3, 1]),
                (&[3, 2, 37], &[0, 2, 1]),
                (&[1, 150, 9, 3], &[0, 3, 1, 2]),
                (&[70, 1000], &[1, 0]),
            ]
        };
        for &(shape, perm) in cases {
            let n: usize = shape.iter().product();
            let x: std::vec::Vec<u32> = (0..n as u32).collect();
            let want = naive(&x, shape, perm);
            let mut got = std::vec![0u32; n];
            transpose(&x, &mut got, shape, perm);
            assert_eq!(got, want, "{shape:?} {perm:?}");
            let mut got = std::vec![0u32; n];
            transpose_exec(&exec, &x, &mut got, shape, perm);
            assert_eq!(got, want, "two threads {shape:?} {perm:?}");
            let xf: std::vec::Vec<f32> =
                x.iter().map(|&v| f32::from_bits(v | 0x7fc0_0000)).collect();
            let mut gotf = std::vec![0f32; n];
            transpose_exec(&exec, &xf, &mut gotf, shape, perm);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
            assert_eq!(
                bits(&gotf),
                bits(&naive(&xf, shape, perm)),
                "NaN payloads {shape:?}"
            );
            let xb: std::vec::Vec<u8> = x.iter().map(|&v| v as u8).collect();
            let mut gotb = std::vec![0u8; n];
            transpose(&xb, &mut gotb, shape, perm);
            assert_eq!(gotb, naive(&xb, shape, perm), "bytes {shape:?} {perm:?}");
            let xl: std::vec::Vec<i64> = x.iter().map(|&v| -i64::from(v)).collect();
            let mut gotl = std::vec![0i64; n];
            transpose_exec(&exec, &xl, &mut gotl, shape, perm);
            assert_eq!(gotl, naive(&xl, shape, perm), "i64 {shape:?} {perm:?}");
        }
    }

    /// Strided blocks (channels-first planes into channels-last pixels), sizes on and off the
    /// 8 x 8 blocks, against the definition.
    #[test]
    fn strided_blocks_transpose() {
        // Under Miri, a smaller first block (still a whole number of 8 x 8 blocks).
        let big = if cfg!(miri) {
            (16, 16, 40, 16)
        } else {
            (96, 80, 6400, 96)
        };
        for (rows, cols, ld_src, ld_dst) in [big, (13, 21, 30, 17), (8, 8, 8, 8), (5, 3, 3, 5)] {
            let src: std::vec::Vec<f32> =
                (0..(rows - 1) * ld_src + cols).map(|i| i as f32).collect();
            let mut dst = std::vec![-1.0f32; (cols - 1) * ld_dst + rows];
            transpose_strided(&src, ld_src, &mut dst, ld_dst, (rows, cols));
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(
                        dst[j * ld_dst + i],
                        src[i * ld_src + j],
                        "{rows}x{cols} ({i}, {j})"
                    );
                }
            }
            let bytes: std::vec::Vec<u8> = src.iter().map(|&v| v as u8).collect();
            let mut out = std::vec![0u8; dst.len()];
            transpose_strided(&bytes, ld_src, &mut out, ld_dst, (rows, cols));
            assert!(
                (0..rows).all(|i| (0..cols).all(|j| out[j * ld_dst + i] == bytes[i * ld_src + j]))
            );
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn concat_exec_matches_the_parts_one_by_one_on_two_threads() {
        // Three inputs of 5, 1 and 7 columns over 9000 rows (several tasks per thread; 100
        // rows, one task, under Miri).
        let outer = if cfg!(miri) { 100 } else { 9000 };
        let blocks = [5usize, 1, 7];
        let inputs: std::vec::Vec<std::vec::Vec<u32>> = blocks
            .iter()
            .enumerate()
            .map(|(k, &b)| (0..outer * b).map(|i| (k * 1_000_000 + i) as u32).collect())
            .collect();
        let out_block = 13;
        let mut expected = std::vec![0u32; outer * out_block];
        let mut offset = 0;
        for (x, &b) in inputs.iter().zip(&blocks) {
            concat_part(x, &mut expected, outer, b, out_block, offset);
            offset += b;
        }
        let parts: std::vec::Vec<(&[u32], usize)> = inputs
            .iter()
            .map(std::vec::Vec::as_slice)
            .zip(blocks)
            .collect();
        let mut out = std::vec![0u32; outer * out_block];
        concat_exec(
            &crate::threads::Exec::with_threads(2),
            &parts,
            &mut out,
            outer,
            out_block,
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn row_wise_pad_matches_the_element_formula() {
        // Edge, reflect and wrap, growing and cropping (negative begins) on 1 to 3 axes.
        let cases: [(&[usize], &[isize], &[isize]); 4] = [
            (&[5], &[3], &[2]),
            (&[3, 4], &[1, -1], &[2, 3]),
            (&[2, 3, 5], &[0, 2, 4], &[1, 0, -2]),
            (&[4, 1], &[-1, 0], &[0, 0]),
        ];
        for (shape, begin, end) in cases {
            let out_shape: std::vec::Vec<usize> = shape
                .iter()
                .zip(begin.iter().zip(end))
                .map(|(&n, (&b, &e))| (n as isize + b + e) as usize)
                .collect();
            let x: std::vec::Vec<f32> = (0..shape.iter().product::<usize>())
                .map(|v| v as f32)
                .collect();
            for mode in [PadMode::Edge, PadMode::Reflect, PadMode::Wrap] {
                let mut got = std::vec![f32::NAN; out_shape.iter().product()];
                pad(&x, &mut got, shape, &out_shape, begin, mode, 0.0);
                let strides = strides_of(shape);
                for_each_coord(&out_shape, |i, c| {
                    let mut off = 0;
                    for (a, &ci) in c.iter().enumerate() {
                        let n = shape[a] as isize;
                        let p = ci as isize - begin[a];
                        let q = match mode {
                            PadMode::Edge => p.clamp(0, n - 1),
                            PadMode::Wrap => p.rem_euclid(n),
                            _ if n == 1 => 0,
                            _ => {
                                let r = p.rem_euclid(2 * (n - 1));
                                if r >= n {
                                    2 * (n - 1) - r
                                } else {
                                    r
                                }
                            }
                        };
                        off += q as usize * strides[a];
                    }
                    assert_eq!(got[i], x[off], "{mode:?} {shape:?} {begin:?} at {c:?}");
                });
            }
        }
    }

    #[test]
    fn transpose_2x3() {
        let x = [1, 2, 3, 4, 5, 6];
        let mut out = [0; 6];
        transpose(&x, &mut out, &[2, 3], &[1, 0]);
        assert_eq!(out, [1, 4, 2, 5, 3, 6]);
    }

    /// Rotations of trailing axes (the matrix-tile path) against the index formula.
    #[test]
    fn axis_rotations_match_the_index_formula() {
        // Under Miri, smaller rows and columns.
        let miri = cfg!(miri);
        let (a, b, c) = if miri { (7, 9, 10) } else { (37, 41, 70) };
        let (d, e, f) = if miri { (9, 17, 3) } else { (33, 65, 7) };
        for (shape, perm) in [
            (&[2, 3, a, b][..], &[0, 2, 3, 1][..]),
            (&[2, a, b, 3][..], &[0, 3, 1, 2][..]),
            (&[1, 5, 4, 6, c][..], &[0, 4, 1, 2, 3][..]),
            (&[d, e][..], &[1, 0][..]),
            (&[3, 4, 5][..], &[1, 2, 0][..]),
            // Two rows interleaved: a channels-last two-group channel shuffle.
            (&[1, f, 6, 2, 29][..], &[0, 1, 2, 4, 3][..]),
            (&[2, 58][..], &[1, 0][..]),
        ] {
            let len: usize = shape.iter().product();
            let x: std::vec::Vec<u32> = (0..len as u32).collect();
            let mut out = std::vec![0u32; len];
            transpose(&x, &mut out, shape, perm);
            let out_shape: std::vec::Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            for (i, &v) in out.iter().enumerate() {
                // The output index's coordinates, then the input element they name.
                let mut rest = i;
                let mut coords = std::vec![0usize; shape.len()];
                for axis in (0..shape.len()).rev() {
                    coords[axis] = rest % out_shape[axis];
                    rest /= out_shape[axis];
                }
                let mut src = 0;
                for (axis, &n) in shape.iter().enumerate() {
                    let at = perm.iter().position(|&p| p == axis).unwrap_or(0);
                    src = src * n + coords[at];
                }
                assert_eq!(v, x[src], "{shape:?} {perm:?} at {i}");
            }
        }
    }

    #[test]
    fn channel_shuffle_moves_planes_and_identity_copies() {
        // [1, g=2, c=3, 2, 2] -> [1, c, g, 2, 2]: each 2x2 plane moves whole.
        let shape = [1, 2, 3, 2, 2];
        let x: std::vec::Vec<i32> = (0..24).collect();
        let mut out = [0; 24];
        transpose(&x, &mut out, &shape, &[0, 2, 1, 3, 4]);
        for c in 0..3 {
            for g in 0..2 {
                for p in 0..4 {
                    assert_eq!(out[(c * 2 + g) * 4 + p], x[(g * 3 + c) * 4 + p]);
                }
            }
        }
        let mut same = [0; 24];
        transpose(&x, &mut same, &shape, &[0, 1, 2, 3, 4]);
        assert_eq!(same[..], x[..]);
    }

    #[test]
    fn concat_two_parts() {
        let mut out = [0; 6];
        concat_part(&[1, 2], &mut out, 2, 1, 3, 0);
        concat_part(&[3, 4, 5, 6], &mut out, 2, 2, 3, 1);
        assert_eq!(out, [1, 3, 4, 2, 5, 6]);
    }

    #[test]
    fn slice_with_negative_steps() {
        // x: [3, 4]; rows 2..0 step -1, columns 3..0 step -2 -> [[11, 9], [7, 5]].
        let x: [i32; 12] = core::array::from_fn(|i| i as i32);
        let mut out = [0; 4];
        strided_copy(&x, &mut out, &[2, 2], 2 * 4 + 3, &[-4, -2]);
        assert_eq!(out, [11, 9, 7, 5]);
        // Contiguous rows: rows 0 and 2, columns 1..3.
        strided_copy(&x, &mut out, &[2, 2], 1, &[8, 1]);
        assert_eq!(out, [1, 2, 9, 10]);
    }

    #[test]
    fn split_inverts_concat() {
        let x = [1, 3, 4, 2, 5, 6];
        let (mut a, mut b) = ([0; 2], [0; 4]);
        split_part(&x, &mut a, 2, 3, 1, 0);
        split_part(&x, &mut b, 2, 3, 2, 1);
        assert_eq!((a, b), ([1, 2], [3, 4, 5, 6]));
    }

    #[test]
    fn pad_modes_match_numpy() {
        let x = [1, 2, 3];
        let mut out = [0; 9];
        let run = |mode, out: &mut [i32]| pad(&x, out, &[3], &[9], &[3], mode, -1);
        run(PadMode::Constant, &mut out);
        assert_eq!(out, [-1, -1, -1, 1, 2, 3, -1, -1, -1]);
        run(PadMode::Edge, &mut out);
        assert_eq!(out, [1, 1, 1, 1, 2, 3, 3, 3, 3]);
        run(PadMode::Reflect, &mut out);
        assert_eq!(out, [2, 3, 2, 1, 2, 3, 2, 1, 2]);
        run(PadMode::Wrap, &mut out);
        assert_eq!(out, [1, 2, 3, 1, 2, 3, 1, 2, 3]);
        // Negative pads crop.
        let mut small = [0; 1];
        pad(&x, &mut small, &[3], &[1], &[-1], PadMode::Constant, 0);
        assert_eq!(small, [2]);
        // 2-D: crop a column on the left, pad a row on top and a column on the right.
        let x2 = [1, 2, 3, 4, 5, 6]; // [2, 3]
        let mut out2 = [0; 9]; // [3, 3]
        pad(
            &x2,
            &mut out2,
            &[2, 3],
            &[3, 3],
            &[1, -1],
            PadMode::Constant,
            9,
        );
        assert_eq!(out2, [9, 9, 9, 2, 3, 9, 5, 6, 9]);
        // The same through the general path (edge mode), for comparison of the layout.
        pad(&x2, &mut out2, &[2, 3], &[3, 3], &[1, -1], PadMode::Edge, 0);
        assert_eq!(out2, [2, 3, 3, 2, 3, 3, 5, 6, 6]);
    }

    #[test]
    fn tile_repeats() {
        let mut out = [0; 8];
        tile(&[1, 2], &mut out, &[1, 2], &[2, 4]);
        assert_eq!(out, [1, 2, 1, 2, 1, 2, 1, 2]);
    }

    #[test]
    fn gathers_wrap_negative_and_zero_out_of_range() {
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // [3, 2]
        let mut out = [9.0f32; 6];
        gather(&x, &[-1i64, 7, 0], &mut out, 1, 3, 2);
        assert_eq!(out, [5.0, 6.0, 0.0, 0.0, 1.0, 2.0]);
        let mut out = [0.0f32; 2];
        gather_elements(&x, &[1i32, -1], &mut out, &[3, 2], &[1, 2], 0);
        assert_eq!(out, [3.0, 6.0]);
        let mut out = [0.0f32; 4];
        gather_nd(&x, &[2i64, 1, 5, 0], &mut out, 1, 2, &[3, 2], 1);
        assert_eq!(out[..2], [6.0, 0.0]);
    }

    #[test]
    fn scatters_skip_out_of_range() {
        let mut out = [0i64; 4];
        scatter_elements(
            &mut out,
            &[1i64, 9, -1],
            &[5, 6, 7],
            &[4],
            &[3],
            0,
            |a, u| a + u,
        );
        assert_eq!(out, [0, 5, 0, 7]);
        let mut out = [1i64; 4]; // [2, 2]
        scatter_nd(&mut out, &[1i64, 3], &[8, 9, 4, 4], 2, &[2], 2, |_, u| u);
        assert_eq!(out, [1, 1, 8, 9]);
    }

    #[test]
    fn tensor_scatter_linear_and_circular() {
        // Two batches, cache of 4 positions, one element each; updates of 2 rows.
        let mut out = [0; 8];
        tensor_scatter(&mut out, &[1, 2, 3, 4], &[1i64, 3], 2, 1, 4, 2, 1, false);
        assert_eq!(out, [0, 1, 2, 0, 0, 0, 0, 3]);
        let mut out = [0; 8];
        tensor_scatter(&mut out, &[1, 2, 3, 4], &[1i64, 3], 2, 1, 4, 2, 1, true);
        assert_eq!(out, [0, 1, 2, 0, 4, 0, 0, 3]);
        let mut out = [0; 8];
        tensor_scatter(&mut out, &[1, 2, 3, 4], &[] as &[i64], 2, 1, 4, 2, 1, false);
        assert_eq!(out, [1, 2, 0, 0, 3, 4, 0, 0]);
    }

    #[test]
    fn compress_selects_blocks() {
        let x = [1, 2, 3, 4, 5, 6]; // [2, 3]
        let mut out = [0; 4];
        compress(&x, &[1, 0, 1], &mut out, 2, 3, 1);
        assert_eq!(out, [1, 3, 4, 6]);
        let mut out = [0; 3];
        compress(&x, &[0, 1], &mut out, 1, 2, 3);
        assert_eq!(out, [4, 5, 6]);
    }

    #[test]
    fn triangles_and_eye() {
        let x = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut out = [0; 9];
        trilu(&x, &mut out, 1, 3, 3, 0, true);
        assert_eq!(out, [1, 2, 3, 0, 5, 6, 0, 0, 9]);
        trilu(&x, &mut out, 1, 3, 3, -1, false);
        assert_eq!(out, [0, 0, 0, 4, 0, 0, 7, 8, 0]);
        let mut e = [0; 6];
        eye(&mut e, 2, 3, 1, 0, 1);
        assert_eq!(e, [0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn cumsum_variants() {
        let x = [1.0f64, 2.0, 3.0];
        let mut out = [0.0; 3];
        let add = |a: f64, b: f64| a + b;
        cumulative(&x, &mut out, &[3], 0, false, false, 0.0, add);
        assert_eq!(out, [1.0, 3.0, 6.0]);
        cumulative(&x, &mut out, &[3], -1, true, true, 0.0, add);
        assert_eq!(out, [5.0, 3.0, 0.0]);
        cumulative(&x, &mut out, &[3], 4, false, false, 0.0, add);
        assert_eq!(out, [0.0; 3]);
        cumulative(&x, &mut out, &[3], 0, true, false, 1.0, |a, b| a * b);
        assert_eq!(out, [1.0, 1.0, 2.0]);
    }

    #[test]
    fn reverse_sequence_and_one_hot() {
        // x: [time 3, batch 2].
        let x = [1, 2, 3, 4, 5, 6];
        let mut out = [0; 6];
        reverse_sequence(&x, &[3i64, 9], &mut out, &[3, 2], 1, 0);
        assert_eq!(out, [5, 6, 3, 4, 1, 2]);
        reverse_sequence(&x, &[2i64, -1], &mut out, &[3, 2], 1, 0);
        assert_eq!(out, [3, 2, 1, 4, 5, 6]);
        let mut hot = [0; 6];
        one_hot(&[-1i64, 5], &mut hot, 2, 3, 1, 0, 1);
        assert_eq!(hot, [0, 0, 1, 0, 0, 0]);
    }
}
