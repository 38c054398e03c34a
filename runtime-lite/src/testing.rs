//! Random kernel cases, each checked against a reference: the property tests run them under
//! `proptest` in `cargo test`, and the `kernels` libFuzzer target (`fuzz/`) runs them on the
//! fuzzer's bytes. Not part of the API: this module exists only in tests and in builds with
//! `--cfg fuzzing` (which `cargo fuzz` sets).
//!
//! Every case draws its geometry from a [`Source`] and panics when a kernel disagrees with its
//! reference. A [`Tape`] reads the decisions from bytes, one byte per small choice and zeros
//! once the bytes run out, so that an empty tape is the smallest case and proptest's shrinking
//! (towards fewer, smaller bytes) and the fuzzer's coverage feedback both steer the geometry.

/// Where a random case's decisions come from.
pub trait Source {
    /// A value in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize;

    /// A value in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

/// Decisions read from bytes: one byte for a choice among at most 256, four otherwise.
#[derive(Debug)]
pub struct Tape<'a>(pub &'a [u8]);

impl Source for Tape<'_> {
    fn below(&mut self, n: usize) -> usize {
        let take = if n <= 256 { 1 } else { 4 };
        let (head, rest) = self.0.split_at(take.min(self.0.len()));
        self.0 = rest;
        let v = head
            .iter()
            .rev()
            .fold(0usize, |v, &b| v << 8 | usize::from(b));
        v % n.max(1)
    }
}

/// One random convolution (1-D to 3-D, dense, grouped or depthwise, strides, dilations,
/// asymmetric padding, a residual and an activation chain): the channels-first kernel against
/// the definition, then every channels-last kernel against it, on one and two threads, with
/// AVX-512 on and reported absent.
pub fn conv(s: &mut impl Source) {
    crate::conv_nhwc::tests::random_case(s);
}

/// One random 3x3 stride-1 convolution through the Winograd kernel against the direct one,
/// on one and two threads, with AVX-512 on and reported absent.
pub fn winograd(s: &mut impl Source) {
    crate::conv_winograd::tests::random_case(s);
}

/// One random float matrix product (`m x n x k` up to 300, either operand transposed) on every
/// microkernel path (AVX-512, AVX2, portable, dispatch) against the reference.
pub fn gemm(s: &mut impl Source) {
    crate::gemm::tests::random_case(s);
}

/// One random 8-bit product (unsigned or signed rows, random zero points, depth up to 3 000)
/// on every kernel family this CPU has, bit for bit against the reference.
pub fn int8(s: &mut impl Source) {
    crate::int8::tests::random_case(s);
}

/// One random max or average pooling (1-D to 3-D, strides, asymmetric padding, 1 to 70
/// channels): the channels-last kernels against the channels-first ones, bit for bit, with
/// AVX-512 on and reported absent.
pub fn pool(s: &mut impl Source) {
    crate::pool::tests::random_case(s);
}

/// One random elementwise function over a random slice (awkward values: NaN, infinities,
/// signed zeros, subnormals, huge and tiny magnitudes) on every vector implementation, bit for
/// bit against the scalar function.
pub fn elementwise(s: &mut impl Source) {
    crate::math::tests::random_case(s);
}

/// One random dynamic quantization (the row's range, scale and zero point, then every byte) on
/// the dispatched kernel, bit for bit against the scalar one.
pub fn quantize(s: &mut impl Source) {
    crate::quant::tests::random_case(s);
}

/// How many cases each property test runs: `SINTER_PROPTEST_CASES`, else `default` (modest,
/// for CI; a long run sets the variable).
#[cfg(test)]
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("SINTER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A proptest configuration of [`cases`]`(default)` cases.
#[cfg(test)]
pub(crate) fn config(default: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: cases(default),
        ..proptest::test_runner::Config::default()
    }
}

/// The bytes of a [`Tape`]: enough for the largest case's decisions.
#[cfg(test)]
pub(crate) fn tape() -> impl proptest::strategy::Strategy<Value = std::vec::Vec<u8>> {
    proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..96)
}

/// The inputs that once crashed the `kernels` fuzz target (`fuzz/fuzz_targets/kernels.rs`:
/// the first byte picks the family, the rest is the tape), run again by a unit test.
#[cfg(test)]
const FUZZ_REGRESSIONS: &[&[u8]] = &[
    // Family 6 (27 % 7), quantization: a row of one subnormal and zeros, whose dynamic scale
    // underflows to 0 (the vector and scalar forms disagreed on the zero point of 0 / 0).
    &[
        0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0xfc, 0xfd, 0xff, 0xff, 0xff, 0xff, 0x60, 0x00, 0x00,
        0x00, 0x00, 0xff, 0xff, 0xff, 0x60, 0x08, 0x00, 0xff, 0x06, 0x0c,
    ],
    // Family 1 (246 % 7), Winograd: F(4x4, 3x3) on 2 images of 33 channels, 16x15 outputs,
    // 1.4e-4 off the direct convolution's -0.198, past the relative bound the test holds
    // F(2x2, 3x3) to. F(4x4, 3x3) is held to first-order rounding bounds on its own terms
    // (`conv_winograd::tests::abs_winograd`).
    &[0xf6, 0x1f, 0x10, 0xb1, 0x20, 0xff, 0x20, 0xff],
    // Family 1, Winograd: F(4x4, 3x3) on one input channel, without AVX-512: 81 epsilons of
    // sum |x| |w| off, past a bound scaled by that sum (the transforms' own terms are larger).
    &[
        0xf6, 0xd1, 0x05, 0xe0, 0x27, 0x00, 0x00, 0xea, 0x00, 0xde, 0x81, 0x81, 0x81, 0x81, 0x81,
        0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
        0x81, 0x81, 0x81, 0x07, 0xdd,
    ],
];

/// The `kernels` fuzz target's dispatch: the first byte picks the family.
pub fn run(data: &[u8]) {
    let Some((&family, rest)) = data.split_first() else {
        return;
    };
    let tape = &mut Tape(rest);
    match family % 7 {
        0 => conv(tape),
        1 => winograd(tape),
        2 => gemm(tape),
        3 => int8(tape),
        4 => pool(tape),
        5 => elementwise(tape),
        _ => quantize(tape),
    }
}

#[cfg(test)]
mod tests {
    use super::{Source, Tape};

    #[test]
    fn fuzz_regressions_pass() {
        for input in super::FUZZ_REGRESSIONS {
            super::run(input);
        }
    }

    #[test]
    fn a_tape_reads_bytes_then_zeros() {
        let mut t = Tape(&[5, 200, 1, 0, 0, 0]);
        assert_eq!(t.below(10), 5);
        assert_eq!(t.below(256), 200);
        assert_eq!(t.below(1000), 1);
        assert_eq!(t.below(7), 0);
        assert_eq!(t.range(3, 9), 3);
    }
}
