//! Sixteen f32 lanes behind one trait, [`Lanes`], and the vector forms of [`super`]'s functions
//! written once over it ([`Func`]'s kernels: `exp`, `ln`, `sigmoid`, `tanh`, `erf`, GELU,
//! softplus, Swish, Mish, rounding, square root).
//!
//! Every implementation (the portable arrays here; AVX-512 and AVX2 with FMA in
//! `crate::math_x86_64`) performs the same IEEE operations in the same order on each lane,
//! fused multiply-adds exactly where the scalar functions have them ([`Lanes::mul_add`],
//! rounded once), so a kernel returns bit for bit what the scalar function in [`super`]
//! returns, on every CPU. Reductions ([`Lanes::sum`], [`Lanes::max_lane`]) combine the
//! sixteen lanes in one fixed tree, so row sums are also the same everywhere.
//!
//! A kernel is a [`Kernel`]: [`dispatch`] runs it with the best implementation the CPU has,
//! inside a `#[target_feature]` function, so that the `#[inline(always)]` code below (and any
//! plain loops in the kernel) compile for that instruction set.

use super::Func;

/// Sixteen lanes of f32 arithmetic. Operations act lane by lane with IEEE semantics;
/// comparisons are ordered and quiet (false on NaN), `min`/`max` are x86's
/// (`a < b ? a : b`, `a > b ? a : b`).
pub(crate) trait Lanes: Copy {
    /// Sixteen f32 values.
    type F: Copy;
    /// Sixteen 32-bit patterns.
    type I: Copy;
    /// A mask of sixteen lanes.
    type M: Copy;

    /// Every lane `v`.
    fn splat(self, v: f32) -> Self::F;
    /// The first `min(src.len(), 16)` elements of `src`, the other lanes 0.
    fn load(self, src: &[f32]) -> Self::F;
    /// Stores the first `min(dst.len(), 16)` lanes into `dst`.
    fn store(self, dst: &mut [f32], v: Self::F);
    /// The lanes below `n`.
    fn first(self, n: usize) -> Self::M;
    /// `a + b`.
    fn add(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a - b`.
    fn sub(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b`.
    fn mul(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, rounded once ([`super::fma`]).
    fn mul_add(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `a / b`.
    fn div(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a < b ? a : b`.
    fn min(self, a: Self::F, b: Self::F) -> Self::F;
    /// `a > b ? a : b`.
    fn max(self, a: Self::F, b: Self::F) -> Self::F;
    /// The correctly rounded square root.
    fn sqrt(self, a: Self::F) -> Self::F;
    /// Rounds toward zero.
    fn trunc(self, a: Self::F) -> Self::F;
    /// Rounds down.
    fn floor(self, a: Self::F) -> Self::F;
    /// Rounds up.
    fn ceil(self, a: Self::F) -> Self::F;
    /// Rounds to nearest, ties to even.
    fn round_even(self, a: Self::F) -> Self::F;
    /// `a < b`.
    fn lt(self, a: Self::F, b: Self::F) -> Self::M;
    /// `a > b`.
    fn gt(self, a: Self::F, b: Self::F) -> Self::M;
    /// `a >= b`.
    fn ge(self, a: Self::F, b: Self::F) -> Self::M;
    /// `a == b`.
    fn eq(self, a: Self::F, b: Self::F) -> Self::M;
    /// `a` is NaN.
    fn is_nan(self, a: Self::F) -> Self::M;
    /// `m ? a : b`.
    fn select(self, m: Self::M, a: Self::F, b: Self::F) -> Self::F;
    /// `|a|` (the sign bit cleared).
    fn abs(self, a: Self::F) -> Self::F;
    /// The magnitude of `magnitude` with the sign bit of `sign`.
    fn copysign(self, magnitude: Self::F, sign: Self::F) -> Self::F;
    /// The bit patterns.
    fn to_bits(self, a: Self::F) -> Self::I;
    /// The floats with these bit patterns.
    fn float_of_bits(self, a: Self::I) -> Self::F;
    /// `a & mask`.
    fn and_bits(self, a: Self::I, mask: u32) -> Self::I;
    /// `a | bits`.
    fn or_bits(self, a: Self::I, bits: u32) -> Self::I;
    /// `a >> 23`, logical: an f32's biased exponent and sign.
    fn shr23(self, a: Self::I) -> Self::I;
    /// Each pattern as a signed integer, converted to f32 (exact below 2^24).
    fn int_to_f32(self, a: Self::I) -> Self::F;
    /// `y * 2^n` rounded once, for integral `n` in [-252, 254] (other lanes: anything).
    fn scale2(self, y: Self::F, n: Self::F) -> Self::F;
    /// The sum of the lanes in the fixed tree `(v[j] + v[j + 8])`, then `+ [j + 4]`,
    /// `+ [j + 2]`, `+ [j + 1]`.
    fn sum(self, v: Self::F) -> f32;
    /// The largest lane, by [`Lanes::max`] in the tree of [`Lanes::sum`].
    fn max_lane(self, v: Self::F) -> f32;

    /// The first `min(src.len(), 16)` elements of `src`, the other lanes `fill`.
    #[inline(always)]
    fn load_or(self, src: &[f32], fill: f32) -> Self::F {
        let v = self.load(src);
        if src.len() >= LANES {
            v
        } else {
            self.select(self.first(src.len()), v, self.splat(fill))
        }
    }
}

/// Lanes per vector.
pub(crate) const LANES: usize = 16;

/// Work written over any [`Lanes`], run by [`dispatch`].
pub(crate) trait Kernel {
    /// What the work returns.
    type Output;
    /// Does the work with `lanes`; implementations are `#[inline(always)]`, so that they
    /// compile for the instruction set of the `#[target_feature]` function calling them.
    fn run<S: Lanes>(self, lanes: S) -> Self::Output;
}

/// Runs `kernel` with AVX-512 or AVX2 when the CPU has them, else with [`Portable`].
#[inline]
pub(crate) fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(token) = crate::math_x86_64::Avx512::detect() {
            return crate::math_x86_64::run_avx512(token, kernel);
        }
        if let Some(token) = crate::math_x86_64::Avx2::detect() {
            return crate::math_x86_64::run_avx2(token, kernel);
        }
    }
    kernel.run(Portable)
}

/// [`Lanes`] on arrays, for any CPU (the compiler vectorizes what it can).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

/// Sixteen values from a function of the lane index.
#[inline(always)]
fn lanes<T>(f: impl FnMut(usize) -> T) -> [T; LANES] {
    core::array::from_fn(f)
}

impl Lanes for Portable {
    type F = [f32; LANES];
    type I = [u32; LANES];
    type M = [bool; LANES];

    #[inline(always)]
    fn splat(self, v: f32) -> Self::F {
        [v; LANES]
    }
    #[inline(always)]
    fn load(self, src: &[f32]) -> Self::F {
        let mut v = [0.0; LANES];
        let n = src.len().min(LANES);
        v[..n].copy_from_slice(&src[..n]);
        v
    }
    #[inline(always)]
    fn store(self, dst: &mut [f32], v: Self::F) {
        let n = dst.len().min(LANES);
        dst[..n].copy_from_slice(&v[..n]);
    }
    #[inline(always)]
    fn first(self, n: usize) -> Self::M {
        lanes(|j| j < n)
    }
    #[inline(always)]
    fn add(self, a: Self::F, b: Self::F) -> Self::F {
        lanes(|j| a[j] + b[j])
    }
    #[inline(always)]
    fn sub(self, a: Self::F, b: Self::F) -> Self::F {
        lanes(|j| a[j] - b[j])
    }
    #[inline(always)]
    fn mul(self, a: Self::F, b: Self::F) -> Self::F {
        lanes(|j| a[j] * b[j])
    }
    #[inline(always)]
    fn mul_add(self, a: Self::F, b: Self::F, c: Self::F) -> Self::F {
        lanes(|j| super::fma(a[j], b[j], c[j]))
    }
    #[inline(always)]
    fn div(self, a: Self::F, b: Self::F) -> Self::F {
        lanes(|j| a[j] / b[j])
    }
    #[inline(always)]
    fn min(self, a: Self::F, b: Self::F) -> Self::F {
        lanes(|j| if a[j] < b[j] { a[j] } else { b[j] })
    }
    #[inline(always)]
    fn max(self, a: Self::F, b: Self::F) -> Self::F {
        lanes(|j| if a[j] > b[j] { a[j] } else { b[j] })
    }
    #[inline(always)]
    fn sqrt(self, a: Self::F) -> Self::F {
        lanes(|j| super::sqrt(a[j]))
    }
    #[inline(always)]
    fn trunc(self, a: Self::F) -> Self::F {
        lanes(|j| super::trunc(a[j]))
    }
    #[inline(always)]
    fn floor(self, a: Self::F) -> Self::F {
        lanes(|j| super::floor(a[j]))
    }
    #[inline(always)]
    fn ceil(self, a: Self::F) -> Self::F {
        lanes(|j| super::ceil(a[j]))
    }
    #[inline(always)]
    fn round_even(self, a: Self::F) -> Self::F {
        lanes(|j| super::round_even(a[j]))
    }
    #[inline(always)]
    fn lt(self, a: Self::F, b: Self::F) -> Self::M {
        lanes(|j| a[j] < b[j])
    }
    #[inline(always)]
    fn gt(self, a: Self::F, b: Self::F) -> Self::M {
        lanes(|j| a[j] > b[j])
    }
    #[inline(always)]
    fn ge(self, a: Self::F, b: Self::F) -> Self::M {
        lanes(|j| a[j] >= b[j])
    }
    #[inline(always)]
    fn eq(self, a: Self::F, b: Self::F) -> Self::M {
        lanes(|j| a[j] == b[j])
    }
    #[inline(always)]
    fn is_nan(self, a: Self::F) -> Self::M {
        lanes(|j| a[j].is_nan())
    }
    #[inline(always)]
    fn select(self, m: Self::M, a: Self::F, b: Self::F) -> Self::F {
        lanes(|j| if m[j] { a[j] } else { b[j] })
    }
    #[inline(always)]
    fn abs(self, a: Self::F) -> Self::F {
        lanes(|j| f32::from_bits(a[j].to_bits() & 0x7fff_ffff))
    }
    #[inline(always)]
    fn copysign(self, magnitude: Self::F, sign: Self::F) -> Self::F {
        lanes(|j| {
            f32::from_bits((magnitude[j].to_bits() & 0x7fff_ffff) | (sign[j].to_bits() & SIGN))
        })
    }
    #[inline(always)]
    fn to_bits(self, a: Self::F) -> Self::I {
        lanes(|j| a[j].to_bits())
    }
    #[inline(always)]
    fn float_of_bits(self, a: Self::I) -> Self::F {
        lanes(|j| f32::from_bits(a[j]))
    }
    #[inline(always)]
    fn and_bits(self, a: Self::I, mask: u32) -> Self::I {
        lanes(|j| a[j] & mask)
    }
    #[inline(always)]
    fn or_bits(self, a: Self::I, bits: u32) -> Self::I {
        lanes(|j| a[j] | bits)
    }
    #[inline(always)]
    fn shr23(self, a: Self::I) -> Self::I {
        lanes(|j| a[j] >> 23)
    }
    #[inline(always)]
    fn int_to_f32(self, a: Self::I) -> Self::F {
        #[allow(
            clippy::cast_possible_wrap,
            reason = "the pattern is reinterpreted as a signed integer, as the vector forms do"
        )]
        lanes(|j| a[j] as i32 as f32)
    }
    #[inline(always)]
    fn scale2(self, y: Self::F, n: Self::F) -> Self::F {
        lanes(|j| scale2(y[j], n[j]))
    }
    #[inline(always)]
    fn sum(self, v: Self::F) -> f32 {
        tree(v, |a, b| a + b)
    }
    #[inline(always)]
    fn max_lane(self, v: Self::F) -> f32 {
        tree(v, |a, b| if a > b { a } else { b })
    }
}

/// The sign bit of an f32.
const SIGN: u32 = 0x8000_0000;

/// `y * 2^n` for integral `n` in [-252, 254], rounded once: two exact power-of-two factors
/// (each a normal number), the second product the only rounding. Outside that range (lanes
/// whose result is replaced anyway) the factors are meaningless but nothing overflows.
#[inline(always)]
pub(crate) fn scale2(y: f32, n: f32) -> f32 {
    let n = n as i32;
    let half = n >> 1;
    let pow2 = |k: i32| f32::from_bits((k.wrapping_add(127) as u32).wrapping_shl(23));
    y * pow2(half) * pow2(n.wrapping_sub(half))
}

/// Combines sixteen lanes pairwise in the order of [`Lanes::sum`].
#[inline(always)]
fn tree(v: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let w: [f32; 8] = core::array::from_fn(|j| f(v[j], v[j + 8]));
    let u: [f32; 4] = core::array::from_fn(|j| f(w[j], w[j + 4]));
    let t: [f32; 2] = core::array::from_fn(|j| f(u[j], u[j + 2]));
    f(t[0], t[1])
}

/// `c[0] t^(n-1) + ... + c[n-1]` by Horner's rule, one fused multiply-add a step.
#[inline(always)]
fn horner<S: Lanes>(s: S, t: S::F, c: &[f32]) -> S::F {
    let mut p = s.splat(c[0]);
    for &ck in &c[1..] {
        p = s.mul_add(p, t, s.splat(ck));
    }
    p
}

/// [`super::exp`].
#[inline(always)]
pub(crate) fn exp<S: Lanes>(s: S, x: S::F) -> S::F {
    let mut result = exp_in_range(s, x);
    result = s.select(
        s.gt(x, s.splat(super::EXP_MAX)),
        s.splat(f32::INFINITY),
        result,
    );
    result = s.select(s.lt(x, s.splat(super::EXP_MIN)), s.splat(0.0), result);
    s.select(s.is_nan(x), x, result)
}

/// [`super::exp`] for `EXP_MIN <= x <= EXP_MAX`; elsewhere a meaningless value (NaN in,
/// NaN out). For callers whose other lanes a select replaces anyway (`tanh` past its
/// saturation, `erf`'s clamped argument), which so skip [`exp`]'s three selects.
#[inline(always)]
fn exp_in_range<S: Lanes>(s: S, x: S::F) -> S::F {
    let v = s.mul(x, s.splat(super::LOG2E));
    // Round to nearest, ties away from zero: add 0.5 with the sign, truncate.
    let n = s.trunc(s.add(v, s.copysign(s.splat(0.5), v)));
    s.scale2(exp_mantissa(s, x, n, &super::EXP_POLY), n)
}

/// [`super::exp_negative`].
#[inline(always)]
fn exp_negative<S: Lanes>(s: S, x: S::F, poly: &[f32]) -> S::F {
    let magic = s.splat(super::ROUND_MAGIC);
    let n = s.sub(s.mul_add(x, s.splat(super::LOG2E), magic), magic);
    s.scale2(exp_mantissa(s, x, n, poly), n)
}

/// [`super::exp_mantissa`]: `e^(x - n ln 2)` for the integer `n` nearest `x / ln 2`, by the
/// polynomial `poly`.
#[inline(always)]
fn exp_mantissa<S: Lanes>(s: S, x: S::F, n: S::F, poly: &[f32]) -> S::F {
    let minus_n = s.sub(s.splat(0.0), n);
    let r = s.mul_add(
        minus_n,
        s.splat(super::LN2_LO),
        s.mul_add(minus_n, s.splat(super::LN2_HI), x),
    );
    let p = horner(s, r, poly);
    s.add(s.mul_add(p, s.mul(r, r), r), s.splat(1.0))
}

/// [`super::ln`].
#[inline(always)]
pub(crate) fn ln<S: Lanes>(s: S, x: S::F) -> S::F {
    // Subnormals scaled into the normal range first.
    let tiny = s.lt(x, s.splat(f32::MIN_POSITIVE));
    let xs = s.select(tiny, s.mul(x, s.splat(16_777_216.0)), x);
    let bits = s.to_bits(xs);
    let biased = s.int_to_f32(s.and_bits(s.shr23(bits), 0xff));
    let e = s.sub(biased, s.splat(126.0));
    let e = s.select(tiny, s.sub(e, s.splat(24.0)), e);
    // The mantissa in [0.5, 1).
    let m = s.float_of_bits(s.or_bits(s.and_bits(bits, 0x007f_ffff), 0x3f00_0000));
    let low = s.lt(m, s.splat(core::f32::consts::FRAC_1_SQRT_2));
    let e = s.select(low, s.sub(e, s.splat(1.0)), e);
    let m = s.select(
        low,
        s.sub(s.add(m, m), s.splat(1.0)),
        s.sub(m, s.splat(1.0)),
    );
    let z = s.mul(m, m);
    let p = horner(s, m, &super::LN_POLY);
    let mut y = s.mul(s.mul(m, z), p);
    y = s.add(y, s.mul(e, s.splat(super::LN2_LO)));
    y = s.sub(y, s.mul(s.splat(0.5), z));
    let mut result = s.add(s.add(m, y), s.mul(e, s.splat(super::LN2_HI)));
    result = s.select(
        s.eq(x, s.splat(f32::INFINITY)),
        s.splat(f32::INFINITY),
        result,
    );
    result = s.select(s.eq(x, s.splat(0.0)), s.splat(f32::NEG_INFINITY), result);
    result = s.select(s.lt(x, s.splat(0.0)), s.splat(f32::NAN), result);
    s.select(s.is_nan(x), s.splat(f32::NAN), result)
}

/// [`super::sigmoid`].
#[inline(always)]
pub(crate) fn sigmoid<S: Lanes>(s: S, x: S::F) -> S::F {
    let one = s.splat(1.0);
    // e^-|x|, clamped where it underflows (a NaN passes).
    let a = s.copysign(x, s.splat(-1.0));
    let a = s.max(s.splat(super::SIGMOID_MIN), a);
    let e = exp_negative(s, a, &super::SIGMOID_EXP_POLY);
    let numerator = s.select(s.ge(x, s.splat(0.0)), one, e);
    s.div(numerator, s.add(one, e))
}

/// [`super::tanh`].
#[inline(always)]
pub(crate) fn tanh<S: Lanes>(s: S, x: S::F) -> S::F {
    let a = s.abs(x);
    let z = s.mul(x, x);
    let p = horner(s, z, &super::TANH_POLY);
    let small = s.mul_add(s.mul(x, z), p, x);
    // Lanes outside [TANH_SMALL, TANH_ONE] are replaced below (NaN stays NaN).
    let e = exp_in_range(s, s.mul(s.splat(2.0), a));
    let one = s.splat(1.0);
    let middle = s.sub(one, s.div(s.splat(2.0), s.add(e, one)));
    let mut result = s.copysign(middle, x);
    result = s.select(
        s.gt(a, s.splat(super::TANH_ONE)),
        s.copysign(one, x),
        result,
    );
    s.select(s.lt(a, s.splat(super::TANH_SMALL)), small, result)
}

/// [`super::erf`].
#[inline(always)]
pub(crate) fn erf<S: Lanes>(s: S, x: S::F) -> S::F {
    let a = s.abs(x);
    let small = s.mul_add(x, horner(s, s.mul(x, x), &super::ERF_SMALL), x);
    let clamped = s.min(a, s.splat(4.0));
    let r = s.mul_add(clamped, horner(s, clamped, &super::ERF_LARGE), clamped);
    // r is at most about 18 (at a = 4): in range (a NaN x clamps to 4; replaced below).
    let large = s.copysign(
        s.sub(
            s.splat(1.0),
            exp_negative(s, s.sub(s.splat(0.0), r), &super::EXP_POLY),
        ),
        x,
    );
    let result = s.select(s.lt(a, s.splat(super::ERF_SPLIT)), small, large);
    s.select(s.is_nan(x), x, result)
}

/// [`super::softplus`].
#[inline(always)]
pub(crate) fn softplus<S: Lanes>(s: S, x: S::F) -> S::F {
    let one = s.splat(1.0);
    let e = exp(s, x);
    let w = s.add(one, e);
    let general = s.mul(ln(s, w), s.div(e, s.sub(w, one)));
    let result = s.select(s.eq(w, one), e, general);
    let big = s.add(x, exp(s, s.sub(s.splat(0.0), x)));
    s.select(s.gt(x, s.splat(20.0)), big, result)
}

/// [`super::gelu`].
#[inline(always)]
pub(crate) fn gelu<S: Lanes>(s: S, x: S::F) -> S::F {
    let e = erf(s, s.mul(x, s.splat(core::f32::consts::FRAC_1_SQRT_2)));
    let half = s.mul(s.splat(0.5), x);
    s.mul_add(half, e, half)
}

/// [`super::gelu_tanh`].
#[inline(always)]
pub(crate) fn gelu_tanh<S: Lanes>(s: S, x: S::F) -> S::F {
    let cubic = s.mul(s.mul(s.mul(s.splat(super::GELU_CUBIC), x), x), x);
    let t = tanh(s, s.mul(s.splat(super::GELU_SCALE), s.add(x, cubic)));
    let half = s.mul(s.splat(0.5), x);
    s.mul_add(half, t, half)
}

impl Func {
    /// The function on sixteen lanes (bit for bit [`Func::apply`] on each).
    #[inline(always)]
    pub(crate) fn eval<S: Lanes>(self, s: S, x: S::F) -> S::F {
        match self {
            Func::Exp => exp(s, x),
            Func::Ln => ln(s, x),
            Func::Sqrt => s.sqrt(x),
            Func::Floor => s.floor(x),
            Func::Ceil => s.ceil(x),
            Func::RoundEven => s.round_even(x),
            Func::Sigmoid => sigmoid(s, x),
            Func::Tanh => tanh(s, x),
            Func::Erf => erf(s, x),
            Func::Gelu => gelu(s, x),
            Func::GeluTanh => gelu_tanh(s, x),
            Func::Softplus => softplus(s, x),
            Func::Mish => s.mul(x, tanh(s, softplus(s, x))),
            Func::Swish(alpha) => s.mul(x, sigmoid(s, s.mul(s.splat(alpha), x))),
        }
    }
}

/// `out[i] = f(x[i])` ([`Kernel`]); `x` and `out` have one length.
pub(crate) struct Map<'a> {
    /// The function.
    pub(crate) f: Func,
    /// The input.
    pub(crate) x: &'a [f32],
    /// The output.
    pub(crate) out: &'a mut [f32],
}

impl Kernel for Map<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Lanes>(self, s: S) {
        let Map { f, x, out } = self;
        for (xc, oc) in x.chunks(LANES).zip(out.chunks_mut(LANES)) {
            s.store(oc, f.eval(s, s.load(xc)));
        }
    }
}

/// `values[i] = f(values[i])` ([`Kernel`]).
pub(crate) struct MapInPlace<'a> {
    /// The function.
    pub(crate) f: Func,
    /// The values.
    pub(crate) values: &'a mut [f32],
}

impl Kernel for MapInPlace<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Lanes>(self, s: S) {
        let MapInPlace { f, values } = self;
        for chunk in values.chunks_mut(LANES) {
            let v = f.eval(s, s.load(chunk));
            s.store(chunk, v);
        }
    }
}

/// An implementation of [`Lanes`], for tests that run a kernel on each.
#[cfg(any(test, all(fuzzing, feature = "std")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// [`Portable`].
    Portable,
    /// `crate::math_x86_64::Avx2`.
    Avx2,
    /// `crate::math_x86_64::Avx512`.
    Avx512,
}

#[cfg(any(test, all(fuzzing, feature = "std")))]
impl Isa {
    /// Every implementation.
    pub(crate) const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// Runs `kernel` with this implementation, or returns `None` (and says so) when the CPU
    /// lacks it.
    pub(crate) fn run<K: Kernel>(self, kernel: K) -> Option<K::Output> {
        #[cfg(target_arch = "x86_64")]
        use crate::math_x86_64::{run_avx2, run_avx512, Avx2, Avx512};
        let out = match self {
            Isa::Portable => Some(kernel.run(Portable)),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Avx2::detect().map(|token| run_avx2(token, kernel)),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Avx512::detect().map(|token| run_avx512(token, kernel)),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        };
        if out.is_none() {
            std::println!("skipped {self:?}: not supported by this CPU");
        }
        out
    }
}
