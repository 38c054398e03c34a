//! Integer kernels: the 8-bit GEMM behind every quantized product and convolution
//! (MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv, QGemm, the dynamically quantized
//! products of `--quantize dynamic`), its depthwise convolution, and vectorized quantize,
//! dequantize and dynamic-quantize.
//!
//! Every product runs as `u8 x s8 -> i32`, the operand order of `vpdpbusd`:
//! - a signed activation `x` (zero point `z`) becomes the unsigned `x + 128` with zero point
//!   `z + 128` as it is packed; unsigned weights `w` become signed `w - 128` with zero point
//!   `zw - 128` when the compiler packs them. Products of the shifted operands are unchanged.
//! - zero points are corrected after the product, never subtracted in the inner loop:
//!   `sum (u - zu)(s - zs) = sum u s - zu sum s - zs sum u + k zu zs`, with the weights' sums
//!   packed beside them and the activations' sums taken only when a weight zero point is not
//!   zero.
//! - accumulation is exact in `i32` (wrapping, as ONNX's integer ops define it). No
//!   instruction here saturates: the AVX2 path multiplies 16-bit lanes with `vpmaddwd`, never
//!   `vpmaddubsw`, whose saturating pair sums give wrong results on u8 x s8 data.
//!
//! Kernels, by what the CPU has (chosen at run time with `std`, else at compile time): AVX-512
//! VNNI (6 rows x 64 columns), AVX-VNNI (6 x 16), AVX2 (2 x 16, 16-bit multiplies) and a
//! portable one. All read the same packed layouts ([`pack`]).
//!
//! The result of each tile is finished in place by its [`Output`]: the corrected `i32` sums,
//! `f32` after scales, bias, residual and activations (the dequantizing epilogue), or `u8`/`i8`
//! requantized as ONNX Runtime does it (`f32` multiply, round half to even, saturate).

mod conv;
mod nhwc;
pub mod pack;
mod quantize;
mod rnn;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use crate::epilogue::Activation;
use crate::threads::{Exec, SharedMut};
pub use conv::{conv_exec, conv_reference, padded_len};
pub use nhwc::{
    conv_nhwc_exec, conv_nhwc_from_nchw_exec, depthwise_nhwc_exec,
    padded_len as conv_nhwc_padded_len,
};
use pack::{padded_depth, panel_bytes, GROUP, PANEL};
pub use quantize::{dequantize_linear, gather_rows_dequant, quantize_linear, Byte};
pub use rnn::{rnn_exec, rnn_int8_scratch_len, RnnMatrix, RnnWeights};

/// Rows of the largest tile any kernel computes.
const MR_MAX: usize = 8;
/// Columns of the widest tile (four panels).
const NR_MAX: usize = 64;
/// Accumulators of one tile, row-major.
pub(crate) type TileAcc = [[i32; NR_MAX]; MR_MAX];
/// Bytes of packed weights a product sweeps with every row tile before moving on: a share of a
/// typical L2 cache, so that large weight matrices are read from memory once per block of
/// columns rather than once per row tile.
const B_BLOCK_BYTES: usize = 384 * 1024;
/// Column tiles whose parameters a product task keeps at once (the most columns it sweeps per
/// block).
const COL_PARAMS: usize = 16;
/// Bytes of depth a tile's broadcast rows are copied in at once.
const KC_BYTES: usize = 2048;

/// An 8-bit tensor as stored: unsigned or signed bytes.
#[derive(Clone, Copy, Debug)]
pub enum Bytes<'a> {
    /// `uint8`.
    U8(&'a [u8]),
    /// `int8`.
    I8(&'a [i8]),
}

impl Bytes<'_> {
    /// Elements.
    pub fn len(&self) -> usize {
        match self {
            Bytes::U8(v) => v.len(),
            Bytes::I8(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` in the unsigned domain (`i8` shifted by 128).
    #[inline(always)]
    fn unsigned(&self, i: usize) -> u8 {
        match self {
            Bytes::U8(v) => v[i],
            Bytes::I8(v) => (v[i] as u8) ^ 0x80,
        }
    }

    /// The shift that maps this type's zero point into the unsigned domain.
    fn shift(&self) -> i32 {
        match self {
            Bytes::U8(_) => 0,
            Bytes::I8(_) => 128,
        }
    }
}

/// The first `len` bytes of an uninitialized stack buffer, zeroed: a kernel's packing buffer
/// costs only what it uses.
///
/// Panics if `len > N`.
fn zeroed_prefix<const N: usize>(
    storage: &mut [core::mem::MaybeUninit<u8>; N],
    len: usize,
) -> &mut [u8] {
    let prefix = &mut storage[..len];
    for b in prefix.iter_mut() {
        b.write(0);
    }
    // SAFETY: every byte of `prefix` was just written; MaybeUninit<u8> and u8 share a layout.
    unsafe { core::slice::from_raw_parts_mut(prefix.as_mut_ptr().cast::<u8>(), len) }
}

/// The bytes of an `i8` slice.
fn bytes_of_i8(v: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len()) }
}

/// Signed 8-bit weights packed ahead of time, with what the zero-point correction needs.
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    /// The packed bytes: column panels for products ([`pack::pack_cols`], `k x n`), padded
    /// rows for convolutions ([`pack::pack_rows`], `M x C/groups * kernel`).
    pub data: &'a [i8],
    /// Per output channel, the sum of its (signed) weights over the depth.
    pub sums: &'a [i32],
    /// Per output channel (or one for all), the weights' zero point in the signed domain
    /// (the original zero point minus 128 for `uint8` weights); empty means zero.
    pub zero: &'a [i32],
}

impl Weights<'_> {
    #[inline(always)]
    fn zero_of(&self, channel: usize) -> i32 {
        match self.zero.len() {
            0 => 0,
            1 => self.zero[0],
            _ => self.zero[channel],
        }
    }

    fn has_zero(&self) -> bool {
        self.zero.iter().any(|&z| z != 0)
    }
}

/// The dequantizing epilogue: `acts(sum * scale * channel_scale[c] + bias[c] + residual)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dequant<'a> {
    /// The activations' scale (known at run time for dynamically quantized inputs).
    pub scale: f32,
    /// The weights' scale per output channel, or one for all.
    pub channel_scale: &'a [f32],
    /// Per output channel, added after scaling.
    pub bias: Option<&'a [f32]>,
    /// Added element by element after the bias (a fused skip connection).
    pub residual: Option<&'a [f32]>,
    /// Applied last, in order.
    pub acts: &'a [Activation],
}

/// The requantizing epilogue: `saturate(round_half_even((sum + bias[c]) * multiplier[c]) +
/// zero)`, in `f32` like ONNX Runtime's (the multiplier is `x_scale * w_scale[c] / y_scale`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Requant<'a> {
    /// Per output channel, or one for all.
    pub multiplier: &'a [f32],
    /// Per output channel, added to the sum before scaling.
    pub bias: Option<&'a [i32]>,
    /// The output's zero point.
    pub zero: i32,
}

/// The quantizing step after a float epilogue: `saturate(round_half_even(x / scale) + zero)`,
/// `QuantizeLinear`'s formula.
#[derive(Clone, Copy, Debug)]
pub struct Quant {
    /// The output's scale.
    pub scale: f32,
    /// The output's zero point.
    pub zero: i32,
}

/// Where a product's results go and what is done to them on the way.
#[derive(Debug)]
pub enum Output<'a> {
    /// The zero-point-corrected sums (MatMulInteger, ConvInteger).
    I32(&'a mut [i32]),
    /// Dequantized floats.
    F32(&'a mut [f32], Dequant<'a>),
    /// Requantized to `uint8`.
    U8(&'a mut [u8], Requant<'a>),
    /// Requantized to `int8`.
    I8(&'a mut [i8], Requant<'a>),
    /// Dequantized as [`Output::F32`] (bias, residual and activations included), then
    /// quantized to `uint8`: for activations the requantizing clamp cannot compute.
    U8Float(&'a mut [u8], Dequant<'a>, Quant),
}

impl Output<'_> {
    fn len(&self) -> usize {
        match self {
            Output::I32(o) => o.len(),
            Output::F32(o, _) => o.len(),
            Output::U8(o, _) | Output::U8Float(o, ..) => o.len(),
            Output::I8(o, _) => o.len(),
        }
    }
}

/// The output shared by parallel tasks, each finishing disjoint tiles.
enum Sink<'a> {
    I32(SharedMut<'a, i32>),
    F32(SharedMut<'a, f32>, Dequant<'a>),
    U8(SharedMut<'a, u8>, Requant<'a>),
    I8(SharedMut<'a, i8>, Requant<'a>),
    U8Float(SharedMut<'a, u8>, Dequant<'a>, Quant),
}

impl<'a> Sink<'a> {
    fn new(out: Output<'a>) -> Self {
        match out {
            Output::I32(o) => Sink::I32(SharedMut::new(o)),
            Output::F32(o, d) => Sink::F32(SharedMut::new(o), d),
            Output::U8(o, r) => Sink::U8(SharedMut::new(o), r),
            Output::I8(o, r) => Sink::I8(SharedMut::new(o), r),
            Output::U8Float(o, d, q) => Sink::U8Float(SharedMut::new(o), d, q),
        }
    }
}

// SAFETY: the shared buffers are written at disjoint tiles only (see `finish`), and the rest
// is shared references.
unsafe impl Sync for Sink<'_> {}

/// One finished tile: `rows x cols` sums at `out[start + r * ld + c]`.
struct TilePlace {
    start: usize,
    ld: usize,
    rows: usize,
    cols: usize,
}

/// What a tile's raw sums need for the zero points and the output conversion, per row and
/// per column of the tile: `v = sum + add + zero_row * zero_col`, then the output channel's
/// scale and bias (per row for convolutions, per column for products).
struct TileParams<const N: usize> {
    add: [i32; N],
    zero: [i32; N],
    scale: [f32; N],
    bias_f: [f32; N],
    bias_i: [i32; N],
}

impl<const N: usize> TileParams<N> {
    const fn new() -> Self {
        Self {
            add: [0; N],
            zero: [0; N],
            scale: [0.0; N],
            bias_f: [0.0; N],
            bias_i: [0; N],
        }
    }

    /// The channel part of the parameters of `len` channels from `chan0`: the sums'
    /// correction `k zu zs - zu sum(s)`, `-zs` (times the other side's activation sums), and
    /// the output's scale and bias.
    fn channels(
        &mut self,
        sink: &Sink<'_>,
        w: &Weights<'_>,
        k: usize,
        zu: i32,
        chan0: usize,
        len: usize,
    ) {
        for i in 0..len {
            let ch = chan0 + i;
            let zs = w.zero_of(ch);
            self.add[i] = (k as i32)
                .wrapping_mul(zu)
                .wrapping_mul(zs)
                .wrapping_sub(zu.wrapping_mul(w.sums[ch]));
            self.zero[i] = zs.wrapping_neg();
            let pick = |v: &[f32]| v[if v.len() == 1 { 0 } else { ch }];
            match sink {
                Sink::I32(_) => {}
                Sink::F32(_, d) | Sink::U8Float(_, d, _) => {
                    self.scale[i] = d.scale * pick(d.channel_scale);
                    self.bias_f[i] = d.bias.map_or(0.0, |b| b[ch]);
                }
                Sink::U8(_, q) | Sink::I8(_, q) => {
                    self.scale[i] = pick(q.multiplier);
                    self.bias_i[i] = q.bias.map_or(0, |b| b[ch]);
                }
            }
        }
    }

    /// The activation part: no correction, `zero` the activations' sums (when a weight zero
    /// point needs them), scale 1 and bias 0.
    fn activations(&mut self, sums: Option<&[i32]>, len: usize) {
        for i in 0..len {
            self.add[i] = 0;
            self.zero[i] = sums.map_or(0, |s| s[i]);
            self.scale[i] = 1.0;
            self.bias_f[i] = 0.0;
            self.bias_i[i] = 0;
        }
    }
}

/// `1.5 * 2^23`: adding and subtracting it rounds an `f32` below `2^22` in magnitude to the
/// nearest integer, ties to even (the default rounding mode).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `x` rounded to the nearest integer, ties to even, for `|x| < 2^22`: adding the magic
/// constant leaves the integer in the low mantissa bits, read without a float-to-int
/// conversion (whose saturating form does not vectorize).
#[inline(always)]
pub(crate) fn round_small(x: f32) -> i32 {
    (x + ROUND_MAGIC).to_bits() as i32 - ROUND_MAGIC.to_bits() as i32
}

/// `x` clamped to `[lo, hi]` with plain comparisons (NaN becomes `hi`; callers pass none).
#[inline(always)]
pub(crate) fn clamp_fast(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x > lo { x } else { lo };
    if x < hi {
        x
    } else {
        hi
    }
}

/// Requantizes one corrected sum.
#[inline(always)]
fn requant_one(v: i32, bias: i32, mult: f32, zero: i32, lo: i32, hi: i32) -> i32 {
    let f = (v.wrapping_add(bias) as f32) * mult;
    // Clamp before rounding (as MLAS does), so the magic constant stays exact.
    round_small(clamp_fast(f, (lo - zero) as f32, (hi - zero) as f32)) + zero
}

impl Sink<'_> {
    /// For an 8-bit requantized output, tile `at` as a kernel that requantizes in registers
    /// writes it, with the columns' correction plus integer bias `add` and multipliers
    /// `scale`; `None` for other outputs.
    #[cfg(target_arch = "x86_64")]
    fn requant_tile<'p>(
        &self,
        at: &TilePlace,
        add: &'p [i32; NR_MAX],
        scale: &'p [f32; NR_MAX],
    ) -> Option<x86_64::TileRequant<'p>> {
        let span = (at.rows.max(1) - 1) * at.ld + at.cols;
        let (out, zero, range) = match self {
            Sink::U8(out, q) => (out.span_ptr(at.start, span), q.zero, (0, 255)),
            Sink::I8(out, q) => (out.span_ptr(at.start, span).cast(), q.zero, (-128, 127)),
            _ => return None,
        };
        Some(x86_64::TileRequant {
            add,
            scale,
            zero,
            range,
            out,
            ld: at.ld,
            tile: (at.rows, at.cols),
        })
    }

    /// How a kernel that finishes tiles in registers writes tile `at` (requantized, or in
    /// float), with the columns' correction `add` and their parameters `col`; `Fused::No` when
    /// `allowed` is false or the output needs the generic epilogue.
    #[cfg(target_arch = "x86_64")]
    fn fused<'p>(
        &'p self,
        at: &TilePlace,
        add: &'p [i32; NR_MAX],
        col: &'p TileParams<NR_MAX>,
        allowed: bool,
    ) -> Fused<'p> {
        if !allowed {
            return Fused::No;
        }
        if let Some(q) = self.requant_tile(at, add, &col.scale) {
            return Fused::Requant(q);
        }
        match self.float_tile(at, add, col) {
            Some(f) => Fused::Float(f),
            None => Fused::No,
        }
    }

    /// For a float output (`f32`, or quantized after a float epilogue) whose activations all
    /// run in registers, tile `at` as a kernel that finishes it in registers writes it, with
    /// the columns' correction `add` and their parameters; `None` otherwise.
    #[cfg(target_arch = "x86_64")]
    fn float_tile<'p>(
        &'p self,
        at: &TilePlace,
        add: &'p [i32; NR_MAX],
        col: &'p TileParams<NR_MAX>,
    ) -> Option<x86_64::TileFloat<'p>> {
        let span = (at.rows.max(1) - 1) * at.ld + at.cols;
        let (out, d) = match self {
            Sink::F32(out, d) => (x86_64::FloatOut::F32(out.span_ptr(at.start, span)), d),
            Sink::U8Float(out, d, q) => (
                x86_64::FloatOut::U8(out.span_ptr(at.start, span), q.scale, q.zero),
                d,
            ),
            _ => return None,
        };
        if !d.acts.iter().all(crate::gemm::Finish::in_register) {
            return None;
        }
        let residual = match d.residual {
            Some(r) => {
                assert!(r.len() >= at.start + span, "int8: residual too short");
                Some(r[at.start..].as_ptr())
            }
            None => None,
        };
        Some(x86_64::TileFloat {
            add,
            scale: &col.scale,
            bias: &col.bias_f,
            residual,
            acts: d.acts,
            out,
            ld: at.ld,
            tile: (at.rows, at.cols),
        })
    }

    /// Corrects the tile `acc` with the row and column parameters and writes it to its place.
    ///
    /// # Safety
    /// No other task writes the same tile at the same time.
    #[inline(always)]
    unsafe fn finish(
        &self,
        acc: &mut TileAcc,
        at: &TilePlace,
        row: &TileParams<MR_MAX>,
        col: &TileParams<NR_MAX>,
    ) {
        let cols = at.cols;
        for (r, v) in acc.iter_mut().enumerate().take(at.rows) {
            let v = &mut v[..cols];
            let (radd, rzero) = (row.add[r], row.zero[r]);
            for ((v, &cadd), &czero) in v.iter_mut().zip(&col.add[..cols]).zip(&col.zero[..cols]) {
                *v = v
                    .wrapping_add(radd.wrapping_add(cadd))
                    .wrapping_add(rzero.wrapping_mul(czero));
            }
            let row_out = (row.scale[r], row.bias_f[r], row.bias_i[r]);
            // SAFETY: forwarded contract.
            unsafe { self.store(at.start + r * at.ld, v, row_out, col) };
        }
    }

    /// Converts corrected sums `v` (at most [`NR_MAX`]) and writes them at `out[start..]`,
    /// with the row's `(scale, float bias, integer bias)` and the columns' parameters.
    ///
    /// # Safety
    /// No other task writes the same elements at the same time.
    #[inline(always)]
    unsafe fn store(
        &self,
        start: usize,
        v: &[i32],
        (rs, rbf, rbi): (f32, f32, i32),
        col: &TileParams<NR_MAX>,
    ) {
        let cols = v.len();
        match self {
            Sink::I32(out) => {
                // SAFETY: this task's elements (the contract).
                let dst = unsafe { out.slice(start, cols) };
                dst.copy_from_slice(v);
            }
            Sink::F32(out, d) => {
                // SAFETY: as above.
                let dst = unsafe { out.slice(start, cols) };
                for (((o, &v), &cs), &cb) in dst
                    .iter_mut()
                    .zip(v)
                    .zip(&col.scale[..cols])
                    .zip(&col.bias_f[..cols])
                {
                    *o = v as f32 * (rs * cs) + (rbf + cb);
                }
                if let Some(res) = d.residual {
                    for (o, &x) in dst.iter_mut().zip(&res[start..start + cols]) {
                        *o += x;
                    }
                }
                Activation::apply_chain(d.acts, dst);
            }
            Sink::U8(out, q) => {
                // SAFETY: as above.
                requant_row(unsafe { out.slice(start, cols) }, v, (rs, rbi), col, q.zero);
            }
            Sink::U8Float(out, d, q) => {
                let mut row = [0f32; NR_MAX];
                let row = &mut row[..cols];
                for (((o, &v), &cs), &cb) in row
                    .iter_mut()
                    .zip(v)
                    .zip(&col.scale[..cols])
                    .zip(&col.bias_f[..cols])
                {
                    *o = v as f32 * (rs * cs) + (rbf + cb);
                }
                if let Some(res) = d.residual {
                    for (o, &x) in row.iter_mut().zip(&res[start..start + cols]) {
                        *o += x;
                    }
                }
                Activation::apply_chain(d.acts, row);
                // SAFETY: as above.
                quantize::quantize_run(row, q.scale, q.zero, unsafe { out.slice(start, cols) });
            }
            Sink::I8(out, q) => {
                // SAFETY: as above.
                requant_row(unsafe { out.slice(start, cols) }, v, (rs, rbi), col, q.zero);
            }
        }
    }
}

/// A tile a kernel finishes in registers, or not (see [`Sink::fused`]).
#[cfg(target_arch = "x86_64")]
enum Fused<'p> {
    Requant(x86_64::TileRequant<'p>),
    Float(x86_64::TileFloat<'p>),
    No,
}

#[cfg(target_arch = "x86_64")]
impl Fused<'_> {
    /// Where the kernel puts the tile: finished in registers, or its raw sums into `acc`.
    fn target<'a>(&'a self, acc: &'a mut TileAcc) -> x86_64::TapsOut<'a> {
        match self {
            Fused::Requant(q) => x86_64::TapsOut::Requant(q),
            Fused::Float(f) => x86_64::TapsOut::Float(f),
            Fused::No => x86_64::TapsOut::Acc(acc),
        }
    }

    /// Whether the kernel stores the tile itself.
    fn stored(&self) -> bool {
        !matches!(self, Fused::No)
    }
}

/// Requantizes one row of corrected sums into `dst` with the row's `(scale, integer bias)`,
/// the columns' parameters and the output zero point, saturating to `T`'s range.
#[inline(always)]
fn requant_row<T: Byte>(
    dst: &mut [T],
    v: &[i32],
    (rs, rbi): (f32, i32),
    col: &TileParams<NR_MAX>,
    zero: i32,
) {
    let cols = dst.len();
    for (((o, &v), &cs), &cb) in dst
        .iter_mut()
        .zip(v)
        .zip(&col.scale[..cols])
        .zip(&col.bias_i[..cols])
    {
        *o = T::from_i32(requant_one(v, rbi + cb, rs * cs, zero, T::LO, T::HI));
    }
}

/// The broadcast operand of a microkernel: group `g` of row `r` is the four bytes at
/// `base + r * row_stride + g * group_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Rows {
    base: *const u8,
    row_stride: usize,
    group_stride: usize,
}

impl Rows {
    /// Where group `g` of row `r` starts.
    ///
    /// # Safety
    /// The address is inside the operand's allocation.
    #[inline(always)]
    unsafe fn at(self, r: usize, g: usize) -> *const u8 {
        // SAFETY: the caller's contract.
        unsafe { self.base.add(r * self.row_stride + g * self.group_stride) }
    }
}

/// The kernel family the CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512 with VNNI: 6 x 64 tiles of `vpdpbusd` on zmm.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// AVX-VNNI: 6 x 16 tiles of `vpdpbusd` on ymm.
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// AVX2: 2 x 16 tiles, bytes widened to 16 bits and multiplied with `vpmaddwd`.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Plain Rust.
    Portable,
}

#[cfg(all(any(test, fuzzing), feature = "std"))]
std::thread_local! {
    /// Set by tests: the kernel family this thread uses instead of the detected one.
    static FORCED: core::cell::Cell<Option<Isa>> = const { core::cell::Cell::new(None) };
}

impl Isa {
    fn detect() -> Self {
        #[cfg(all(any(test, fuzzing), feature = "std"))]
        if let Some(isa) = FORCED.with(core::cell::Cell::get) {
            return isa;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if x86_64::has_avx512_vnni() {
                return Isa::Avx512Vnni;
            }
            if x86_64::has_avx_vnni() {
                return Isa::AvxVnni;
            }
            if x86_64::has_avx2() {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Every family this CPU can run (for tests).
    #[cfg(all(any(test, fuzzing), feature = "std"))]
    fn available() -> std::vec::Vec<Isa> {
        let mut all = std::vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if x86_64::has_avx2() {
                all.push(Isa::Avx2);
            }
            if x86_64::has_avx_vnni() {
                all.push(Isa::AvxVnni);
            }
            if x86_64::has_avx512_vnni() {
                all.push(Isa::Avx512Vnni);
            }
        }
        all
    }

    /// Rows of a tile.
    fn mr(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => 8,
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => 6,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => 2,
            Isa::Portable => 4,
        }
    }

    /// Panels (of [`PANEL`] columns) of a tile.
    fn panels(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => 3,
            _ => 1,
        }
    }

    /// `acc[r][c] (+)= sum over kg groups of row r . panel column c`, for `r < mr()` and
    /// `np` panels.
    ///
    /// # Safety
    /// Groups `0..kg` of rows `0..mr()` are readable; `cols + p * stride` is
    /// readable for `64 * kg` bytes for each `p < np`; `np <= panels()`; the CPU has the
    /// family's features (as [`Isa::detect`] found).
    #[allow(clippy::too_many_arguments, reason = "the microkernel's operands")]
    unsafe fn kernel(
        self,
        rows_unsigned: bool,
        kg: usize,
        rows: Rows,
        cols: *const u8,
        stride: usize,
        np: usize,
        acc: &mut TileAcc,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512Vnni => x86_64::kernel_vnni512(
                    rows_unsigned,
                    kg,
                    rows,
                    cols,
                    stride,
                    np,
                    acc,
                    accumulate,
                ),
                #[cfg(target_arch = "x86_64")]
                Isa::AvxVnni => {
                    x86_64::kernel_vnni256(rows_unsigned, kg, rows, cols, acc, accumulate)
                }
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => x86_64::kernel_avx2(rows_unsigned, kg, rows, cols, acc, accumulate),
                Isa::Portable => {
                    let panel = core::slice::from_raw_parts(cols, kg * PANEL * GROUP);
                    let quad = |r: usize, g: usize| -> [u8; GROUP] {
                        core::ptr::read_unaligned(rows.at(r, g).cast::<[u8; GROUP]>())
                    };
                    kernel_portable(rows_unsigned, self.mr(), quad, panel, acc, accumulate);
                }
            }
        }
    }
}

/// The portable microkernel over one panel.
fn kernel_portable(
    rows_unsigned: bool,
    mr: usize,
    quad: impl Fn(usize, usize) -> [u8; GROUP],
    panel: &[u8],
    acc: &mut TileAcc,
    accumulate: bool,
) {
    for (r, out) in acc.iter_mut().enumerate().take(mr) {
        let mut sums = [0i32; PANEL];
        if accumulate {
            sums.copy_from_slice(&out[..PANEL]);
        }
        for (g, block) in panel.chunks_exact(PANEL * GROUP).enumerate() {
            let quad = quad(r, g);
            for (sum, col) in sums.iter_mut().zip(block.chunks_exact(GROUP)) {
                let mut dot = 0i32;
                for (&x, &y) in quad.iter().zip(col) {
                    dot += if rows_unsigned {
                        i32::from(x) * i32::from(y as i8)
                    } else {
                        i32::from(x as i8) * i32::from(y)
                    };
                }
                *sum = sum.wrapping_add(dot);
            }
        }
        out[..PANEL].copy_from_slice(&sums);
    }
}

/// `out = a x b` for `a: [m, k]` (8-bit activations with zero point `a_zero`, rows `lda`
/// apart) and `b`: weights packed as `k x n` column panels, on `exec`'s threads; `out` is
/// `[m, n]` row-major, the output channel its column.
///
/// Panics if a buffer is too short for the shapes.
#[allow(
    clippy::too_many_arguments,
    reason = "geometry, operands and the output"
)]
pub fn matmul_exec(
    exec: &Exec,
    [m, k, n]: [usize; 3],
    a: Bytes<'_>,
    lda: usize,
    a_zero: i32,
    b: &Weights<'_>,
    out: Output<'_>,
) {
    assert!(
        m == 0 || a.len() >= (m - 1) * lda + k,
        "int8 matmul: A too short"
    );
    assert!(
        b.data.len() >= pack::packed_cols_len(k, n) && b.sums.len() >= n,
        "int8 matmul: packed B too short"
    );
    assert!(out.len() >= m * n, "int8 matmul: output too short");
    if m == 0 || n == 0 {
        return;
    }
    let isa = Isa::detect();
    // With AVX-512 VNNI and a float or 8-bit output, contiguous unsigned rows whose depth
    // fills whole groups run as a pointwise channels-last convolution over `m` pixels: the
    // same kernel, with the epilogue (dequantization, bias, residual, activations,
    // requantization) applied to the tile in registers.
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && lda == k && !matches!(out, Output::I32(_)) {
        let p = crate::conv::ConvParams {
            batch: 1,
            in_channels: k,
            out_channels: n,
            groups: 1,
            input: [m, 1, 1],
            output: [m, 1, 1],
            kernel: [1, 1, 1],
            strides: [1; 3],
            dilations: [1; 3],
            pads: [0; 3],
            packed_weights: true,
        };
        if matches!(a, Bytes::U8(_))
            && nhwc::padded_len(&p, true) == 0
            && padded_depth(k) <= pack::CHANNELS_LAST_MAX_DEPTH
        {
            nhwc::conv_nhwc_exec(exec, &p, a, a_zero, b, &mut [], out);
            return;
        }
    }
    let (mr, nr) = (isa.mr(), isa.panels() * PANEL);
    let row_tiles = m.div_ceil(mr);
    let col_tiles = n.div_ceil(nr);
    // Split columns too when there are few rows, so every thread has work.
    let threads = exec.threads();
    let col_split = if row_tiles >= 2 * threads || threads == 1 {
        1
    } else {
        col_tiles.min(threads * 2)
    };
    // Alone, one task (its working memory set up once); with workers, four per thread.
    let rows_per_task = if threads == 1 {
        row_tiles
    } else if col_split == 1 {
        row_tiles.div_ceil(threads * 4).max(1)
    } else {
        row_tiles
    };
    let row_tasks = row_tiles.div_ceil(rows_per_task);
    let cols_per_task = col_tiles.div_ceil(col_split);
    let sink = Sink::new(out);
    let zu = a_zero + a.shift();
    let w_zero = b.has_zero();
    exec.for_each(row_tasks * col_split, &|task| {
        let (rt, ct) = (task / col_split, task % col_split);
        let tiles = (
            rt * rows_per_task,
            ((rt + 1) * rows_per_task).min(row_tiles),
        );
        let cols = (
            ct * cols_per_task,
            ((ct + 1) * cols_per_task).min(col_tiles),
        );
        // Column blocks whose packed weights stay in the L2 cache while every row tile of the
        // task passes over them.
        let block = (B_BLOCK_BYTES / (padded_depth(k) * nr).max(1)).clamp(1, COL_PARAMS);
        let mut params = [const { None::<TileParams<NR_MAX>> }; COL_PARAMS];
        // Working memory reused by every row tile of the task.
        let mut storage = [core::mem::MaybeUninit::<u8>::uninit(); MR_MAX * KC_BYTES];
        let rows_buf = zeroed_prefix(&mut storage, MR_MAX * padded_depth(k).min(KC_BYTES));
        let mut acc: TileAcc = [[0; NR_MAX]; MR_MAX];
        for c0 in (cols.0..cols.1).step_by(block) {
            let cols = (c0, (c0 + block).min(cols.1));
            // The column tiles' parameters, computed once for all the row tiles below.
            for (i, ct) in (cols.0..cols.1).enumerate().take(COL_PARAMS) {
                let first = ct * nr;
                let mut p = TileParams::new();
                p.channels(&sink, b, k, zu, first, nr.min(n - first));
                params[i] = Some(p);
            }
            for tile in tiles.0..tiles.1 {
                let r0 = tile * mr;
                let rows = mr.min(m - r0);
                // SAFETY: tiles of different tasks are disjoint.
                unsafe {
                    matmul_tile(
                        isa,
                        [m, k, n],
                        a,
                        lda,
                        zu,
                        w_zero,
                        b,
                        &sink,
                        (r0, rows),
                        cols,
                        nr,
                        &params,
                        (&mut *rows_buf, &mut acc),
                    );
                }
            }
        }
    });
}

/// One row tile of [`matmul_exec`] against the column tiles `cols` (of `nr` columns).
///
/// # Safety
/// No other task finishes the same rows and columns at the same time.
#[allow(clippy::too_many_arguments, reason = "the product's state")]
unsafe fn matmul_tile(
    isa: Isa,
    [_m, k, n]: [usize; 3],
    a: Bytes<'_>,
    lda: usize,
    zu: i32,
    w_zero: bool,
    b: &Weights<'_>,
    sink: &Sink<'_>,
    (r0, rows): (usize, usize),
    cols: (usize, usize),
    nr: usize,
    col_params: &[Option<TileParams<NR_MAX>>],
    (buf, acc): (&mut [u8], &mut TileAcc),
) {
    let kp = padded_depth(k);
    let chunk = kp.min(KC_BYTES);
    let chunks = kp.div_ceil(chunk.max(1));
    // `buf` takes the tile's rows, a chunk of depth at a time, interleaved by group
    // (`[g][row][4]`) so the kernel's broadcasts read one stream; unsigned domain, zero-padded
    // to whole groups. It holds `MR_MAX * chunk` bytes.
    // Row sums in the unsigned domain, needed only for a weight zero point.
    let mut usum = [0i32; MR_MAX];
    if w_zero {
        for (r, s) in usum.iter_mut().enumerate().take(rows) {
            let base = (r0 + r) * lda;
            *s = (0..k).map(|d| i32::from(a.unsigned(base + d))).sum();
        }
    }
    // Where each of the tile's rows starts (rows past the tile repeat its first row: read,
    // never stored).
    let starts: [usize; MR_MAX] =
        core::array::from_fn(|r| (r0 + if r < rows { r } else { 0 }) * lda);
    let flip = a.shift() as u8;
    let copy = |buf: &mut [u8], c: usize| {
        let d0 = c * chunk;
        let len = chunk.min(kp - d0);
        let valid = len.min(k.saturating_sub(d0));
        let full = valid / GROUP;
        let bytes: &[u8] = match a {
            Bytes::U8(bytes) => bytes,
            // The same bytes; the sign flip happens below.
            Bytes::I8(bytes) => bytes_of_i8(bytes),
        };
        let flip4 = u32::from_ne_bytes([flip; GROUP]);
        for (r, &start) in starts.iter().enumerate() {
            // Whole groups: one 32-bit word each, into the row's slot of every group.
            let src = &bytes[start + d0..][..full * GROUP];
            for (g, quad) in src.chunks_exact(GROUP).enumerate() {
                let word = u32::from_ne_bytes([quad[0], quad[1], quad[2], quad[3]]) ^ flip4;
                buf[(g * MR_MAX + r) * GROUP..][..GROUP].copy_from_slice(&word.to_ne_bytes());
            }
            // The depth's last, partial group and the zero groups of padding after it.
            for g in full..len / GROUP {
                let have = valid.saturating_sub(g * GROUP).min(GROUP);
                let dst = &mut buf[(g * MR_MAX + r) * GROUP..][..GROUP];
                for (i, v) in dst.iter_mut().enumerate() {
                    *v = if i < have {
                        bytes[start + d0 + g * GROUP + i] ^ flip
                    } else {
                        0
                    };
                }
            }
        }
    };
    // A full tile of unsigned rows is read where it lies (the kernel's broadcasts follow
    // `mr` row streams): no copy. Bytes a row reads past its depth meet zero weight padding,
    // and the last row's padded depth stays inside `a`.
    let direct = match a {
        Bytes::U8(bytes) if rows == isa.mr() && (r0 + rows - 1) * lda + kp <= bytes.len() => {
            Some(bytes.as_ptr())
        }
        _ => None,
    };
    if chunks == 1 && direct.is_none() {
        copy(buf, 0);
    }
    let pb = panel_bytes(k);
    let mut row_params = TileParams::<MR_MAX>::new();
    row_params.activations(w_zero.then_some(&usum[..]), rows);
    for ct in cols.0..cols.1 {
        let c0 = ct * nr;
        let width = nr.min(n - c0);
        let np = width.div_ceil(PANEL);
        for c in 0..chunks {
            if chunks > 1 && direct.is_none() {
                copy(buf, c);
            }
            let len = chunk.min(kp - c * chunk);
            let tile_rows = match direct {
                Some(base) => Rows {
                    // SAFETY: inside `a`: `direct` checked the tile's last byte.
                    base: unsafe { base.add(r0 * lda + c * chunk) },
                    row_stride: lda,
                    group_stride: GROUP,
                },
                None => Rows {
                    base: buf.as_ptr(),
                    row_stride: GROUP,
                    group_stride: MR_MAX * GROUP,
                },
            };
            // SAFETY: the rows hold `len / 4` groups of every row (`buf`: `len <= chunk`; in place: `direct`); the panels
            // of columns c0.. hold `pb` bytes each, and this chunk starts `c * chunk / 4`
            // groups in, within the packed length the caller asserted; `isa` was detected.
            unsafe {
                isa.kernel(
                    true,
                    len / GROUP,
                    tile_rows,
                    b.data
                        .as_ptr()
                        .cast::<u8>()
                        .add((c0 / PANEL) * pb + c * chunk * PANEL),
                    pb,
                    np,
                    acc,
                    c > 0,
                );
            }
        }
        let fresh;
        let col = match col_params.get(ct - cols.0) {
            Some(Some(p)) => p,
            _ => {
                let mut p = TileParams::new();
                p.channels(sink, b, k, zu, c0, width);
                fresh = p;
                &fresh
            }
        };
        let place = TilePlace {
            start: r0 * n + c0,
            ld: n,
            rows,
            cols: width,
        };
        // SAFETY: forwarded contract.
        unsafe { sink.finish(acc, &place, &row_params, col) };
    }
}

/// `DynamicQuantizeLinear` to `uint8`: writes `round_half_even(x / scale) + zero`
/// (saturated) into `out` and returns `(scale, zero)`, where `scale = (max - min) / 255` over
/// the range of `x` widened to include 0 (1/255 when that range is empty) and `zero` rounds
/// `-min / scale`. Min/max scan and quantization run over 16-lane chunks the compiler
/// vectorizes; results are bit for bit those of the scalar formula.
///
/// Panics if `out` is shorter than `x`.
pub fn quantize_dynamic(x: &[f32], out: &mut [u8]) -> (f32, i32) {
    assert!(out.len() >= x.len(), "quantize_dynamic: output too short");
    const LANES: usize = 16;
    let mut lo = [0f32; LANES];
    let mut hi = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(chunk) {
            *l = if v < *l { v } else { *l };
            *h = if v > *h { v } else { *h };
        }
    }
    for (i, &v) in tail.iter().enumerate() {
        lo[i] = if v < lo[i] { v } else { lo[i] };
        hi[i] = if v > hi[i] { v } else { hi[i] };
    }
    let min = lo.iter().fold(0f32, |m, &v| if v < m { v } else { m });
    let max = hi.iter().fold(0f32, |m, &v| if v > m { v } else { m });
    let scale = (if max == min { 1.0 } else { max - min }) / 255.0;
    let initial = (0.0 - min / scale).clamp(0.0, 255.0);
    // A range so small that its scale underflows to 0 gives 0 / 0 here: zero point 0 (then
    // positive values saturate to 255 and zeros stay 0, as the formula gives).
    let zero = if initial.is_nan() {
        0
    } else {
        round_small(initial)
    };
    let zf = zero as f32;
    for (o, &v) in out.iter_mut().zip(x) {
        let q = v / scale;
        // NaN quantizes to 0, as the scalar formula's saturating conversion gives.
        let q = if q.is_nan() { -zf } else { q };
        *o = (round_small(clamp_fast(q, -zf, 255.0 - zf)) + zero) as u8;
    }
    (scale, zero)
}

/// Scalar reference of [`matmul_exec`] with plain (unpacked) `b: [k, n]`, `i32` results.
pub fn matmul_reference(
    [m, k, n]: [usize; 3],
    a: Bytes<'_>,
    a_zero: i32,
    b: Bytes<'_>,
    b_zero: &[i32],
    out: &mut [i32],
) {
    for i in 0..m {
        for j in 0..n {
            let zb = match b_zero.len() {
                0 => 0,
                1 => b_zero[0],
                _ => b_zero[j],
            };
            let mut acc = 0i32;
            for d in 0..k {
                let x = i32::from(a.unsigned(i * k + d)) - a.shift() - a_zero;
                let w = i32::from(b.unsigned(j + d * n)) - b.shift() - zb;
                acc = acc.wrapping_add(x.wrapping_mul(w));
            }
            out[i * n + j] = acc;
        }
    }
}

#[cfg(all(any(test, fuzzing), feature = "std"))]
#[cfg_attr(
    fuzzing,
    allow(dead_code, reason = "helpers of tests that fuzzing builds drop")
)]
pub(crate) mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// The largest fixed product (in multiply-adds) the tests run under Miri, whose
    /// interpreter is some thousand times slower than native code.
    pub(super) const MIRI_MACS: usize = 5_000;

    /// The thread counts the tests run on: 1 and 2, or only 2 under Miri.
    pub(super) fn thread_counts() -> &'static [usize] {
        if cfg!(miri) {
            &[2]
        } else {
            &[1, 2]
        }
    }

    /// A deterministic byte stream.
    pub(super) fn bytes(len: usize, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as u8
            })
            .collect()
    }

    /// Packs plain `b: [k, n]` (signed domain) for [`matmul_exec`].
    fn pack_b(b: &[i8], k: usize, n: usize) -> (Vec<i8>, Vec<i32>) {
        let mut packed = vec![0i8; pack::packed_cols_len(k, n)];
        pack::pack_cols(k, n, |d, j| b[d * n + j], &mut packed);
        let sums = (0..n)
            .map(|j| (0..k).map(|d| i32::from(b[d * n + j])).sum())
            .collect();
        (packed, sums)
    }

    pub(super) fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
        FORCED.with(|c| c.set(Some(isa)));
        let r = f();
        FORCED.with(|c| c.set(None));
        r
    }

    /// `a` times `b: [k, n]` (weight zero point `b_zero`) on `isa`'s kernel with `exec`,
    /// against [`matmul_reference`], bit for bit.
    fn check_product(
        isa: Isa,
        exec: &Exec,
        [m, k, n]: [usize; 3],
        a: Bytes<'_>,
        a_zero: i32,
        b: &[i8],
        b_zero: i32,
    ) {
        let mut want = vec![0i32; m * n];
        matmul_reference([m, k, n], a, a_zero, Bytes::I8(b), &[b_zero], &mut want);
        let (packed, sums) = pack_b(b, k, n);
        let zero = [b_zero];
        let weights = Weights {
            data: &packed,
            sums: &sums,
            zero: &zero,
        };
        let mut got = vec![0i32; m * n];
        with_isa(isa, || {
            matmul_exec(
                exec,
                [m, k, n],
                a,
                k,
                a_zero,
                &weights,
                Output::I32(&mut got),
            )
        });
        assert_eq!(
            got, want,
            "{isa:?} m={m} k={k} n={n} za={a_zero} zb={b_zero}"
        );
    }

    #[test]
    fn matmul_matches_reference_on_every_kernel() {
        let shapes = [
            [1, 1, 1],
            [1, 5, 3],
            [2, 4, 16],
            [3, 7, 17],
            [6, 64, 64],
            [7, 33, 65],
            [13, 130, 100],
            [1, 300, 20],
            [25, 9, 130],
            [5, 4100, 19],
            // Full tiles read in place: the last one's padded depth would overrun (k = 9),
            // and with more than one chunk of depth.
            [8, 9, 5],
            [16, 2500, 70],
        ];
        for isa in Isa::available() {
            for (case, &[m, k, n]) in shapes.iter().enumerate() {
                if cfg!(miri) && m * k * n > MIRI_MACS {
                    continue;
                }
                for (signed_a, a_zero, b_zero) in
                    [(false, 0, 0), (false, 131, 0), (true, -3, 0), (true, 5, -7)]
                {
                    let a_raw = bytes(m * k, case as u32);
                    let b: Vec<i8> = bytes(k * n, 99 + case as u32)
                        .iter()
                        .map(|&v| v as i8)
                        .collect();
                    let a_i8: Vec<i8> = a_raw.iter().map(|&v| v as i8).collect();
                    let a = if signed_a {
                        Bytes::I8(&a_i8)
                    } else {
                        Bytes::U8(&a_raw)
                    };
                    for &threads in thread_counts() {
                        let exec = Exec::with_threads(threads);
                        check_product(isa, &exec, [m, k, n], a, a_zero, &b, b_zero);
                    }
                }
            }
        }
    }

    /// One random case of [`crate::testing::int8`].
    pub(crate) fn random_case(rng: &mut impl crate::testing::Source) {
        let big = rng.below(6) == 5;
        // Under Miri at most 4 x 100 x 8 (big) or 4 x 20 x 8.
        let miri = cfg!(miri);
        let (m, k, n) = if big {
            let (m, k, n) = if miri { (4, 100, 8) } else { (80, 3000, 90) };
            (rng.range(1, m), rng.range(1, k), rng.range(1, n))
        } else {
            let (m, k, n) = if miri { (4, 20, 8) } else { (20, 80, 40) };
            (rng.range(1, m), rng.range(1, k), rng.range(1, n))
        };
        let signed_a = rng.below(2) == 1;
        let a_zero = rng.range(0, 255) as i32 - if signed_a { 128 } else { 0 };
        let b_zero = rng.range(0, 20) as i32 - 10;
        let seed = rng.below(1 << 16) as u32;
        let a_raw = bytes(m * k, 7 * seed);
        let a_i8: Vec<i8> = a_raw.iter().map(|&v| v as i8).collect();
        let a = if signed_a {
            Bytes::I8(&a_i8)
        } else {
            Bytes::U8(&a_raw)
        };
        let b: Vec<i8> = bytes(k * n, 13 * seed + 1)
            .iter()
            .map(|&v| v as i8)
            .collect();
        let exec = Exec::with_threads(1 + rng.below(2));
        for isa in Isa::available() {
            check_product(isa, &exec, [m, k, n], a, a_zero, &b, b_zero);
        }
    }

    #[cfg(test)]
    proptest::proptest! {
        #![proptest_config(crate::testing::config(30))]
        #[test]
        fn random_shapes_match_reference_on_every_kernel(tape in crate::testing::tape()) {
            random_case(&mut crate::testing::Tape(&tape));
        }
    }

    #[test]
    fn every_kernel_finishes_products_alike() {
        // Float and 8-bit outputs (on AVX-512 VNNI, unsigned rows whose depth fills whole
        // groups run on the channels-last kernel with its epilogue in registers) against the
        // portable kernel's generic epilogue: bias, residual and an activation,
        // requantization with a per-channel multiplier and bias, and `Output::U8Float`, which
        // must be `Output::F32` followed by QuantizeLinear, element for element.
        for (case, &(m, k, n)) in [
            (9, 36, 70),
            (9, 37, 70),
            (130, 384, 100),
            (1, 64, 16),
            (17, 8, 200),
        ]
        .iter()
        .enumerate()
        {
            if cfg!(miri) && m * k * n > MIRI_MACS {
                continue;
            }
            let a = bytes(m * k, 20 + case as u32);
            let b: Vec<i8> = bytes(k * n, 40 + case as u32)
                .iter()
                .map(|&v| v as i8)
                .collect();
            let (packed, sums) = pack_b(&b, k, n);
            let weights = Weights {
                data: &packed,
                sums: &sums,
                zero: &[],
            };
            let channel: Vec<f32> = (0..n).map(|j| 1e-3 * (1.0 + j as f32 / 7.0)).collect();
            let bias: Vec<f32> = (0..n).map(|j| (j as f32 - 30.0) / 9.0).collect();
            let residual: Vec<f32> = (0..m * n).map(|i| ((i % 13) as f32 - 6.0) / 5.0).collect();
            let acts = [Activation::HardSwish];
            let dequant = Dequant {
                scale: 0.02,
                channel_scale: &channel,
                bias: Some(&bias),
                residual: Some(&residual),
                acts: &acts,
            };
            let quant = Quant {
                scale: 0.031,
                zero: 17,
            };
            let multiplier: Vec<f32> = (0..n).map(|j| 2e-4 * (1.0 + j as f32 / 5.0)).collect();
            let int_bias: Vec<i32> = (0..n).map(|j| j as i32 * 37 - 900).collect();
            let requant = Requant {
                multiplier: &multiplier,
                bias: Some(&int_bias),
                zero: 9,
            };
            let run = |isa: Isa| {
                let exec = Exec::with_threads(2);
                let (mut f, mut q, mut r) = (vec![0f32; m * n], vec![0u8; m * n], vec![0u8; m * n]);
                with_isa(isa, || {
                    let u = Bytes::U8(&a);
                    matmul_exec(
                        &exec,
                        [m, k, n],
                        u,
                        k,
                        3,
                        &weights,
                        Output::F32(&mut f, dequant),
                    );
                    let out = Output::U8Float(&mut q, dequant, quant);
                    matmul_exec(&exec, [m, k, n], u, k, 3, &weights, out);
                    matmul_exec(
                        &exec,
                        [m, k, n],
                        u,
                        k,
                        3,
                        &weights,
                        Output::U8(&mut r, requant),
                    );
                });
                (f, q, r)
            };
            let want = run(Isa::Portable);
            assert!(
                want.2.iter().any(|&v| v != 0 && v != 255),
                "a meaningful range"
            );
            let mut quantized = vec![0u8; m * n];
            quantize::quantize_run(&want.0, quant.scale, quant.zero, &mut quantized);
            assert_eq!(want.1, quantized, "U8Float is F32 quantized");
            for isa in Isa::available() {
                assert_eq!(run(isa), want, "{isa:?} m={m} k={k} n={n}");
            }
        }
    }

    #[test]
    fn quantize_dynamic_matches_the_scalar_formula() {
        for len in [0usize, 1, 15, 16, 17, 100, 1000] {
            let x: Vec<f32> = bytes(len, len as u32)
                .iter()
                .map(|&b| (f32::from(b) - 100.0) * 0.37)
                .collect();
            let mut got = vec![0u8; len];
            let (scale, zero) = quantize_dynamic(&x, &mut got);
            let mut want = vec![0u8; len];
            let (mut s, mut z) = ([0f32], [0u8]);
            crate::quant::dynamic_quantize_f32_scalar(&x, &mut want, &mut s, &mut z);
            assert_eq!(
                (got, scale, zero),
                (want, s[0], i32::from(z[0])),
                "len {len}"
            );
        }
    }

    #[test]
    fn requantize_rounds_half_even_and_saturates() {
        assert_eq!(requant_one(5, 0, 0.5, 0, 0, 255), 2);
        assert_eq!(requant_one(7, 0, 0.5, 0, 0, 255), 4);
        assert_eq!(requant_one(-7, 0, 0.5, 10, 0, 255), 6);
        assert_eq!(requant_one(100_000, 0, 1.0, 3, -128, 127), 127);
        assert_eq!(requant_one(-100_000, 0, 1.0, 3, -128, 127), -128);
        assert_eq!(requant_one(-5, 0, 0.5, 0, -128, 127), -2);
    }
}
