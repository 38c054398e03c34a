//! Conversions for `Cast`/`CastLike` that plain `as` casts do not cover: f64 to binary16 and
//! bfloat16 with a single rounding (through f32 rounded to odd, which makes the second
//! rounding exact).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Cast.html> (Cast-1/6/9/13/19/21/23/24/25).

use crate::half::{f32_to_bf16, f32_to_f16};
pub use crate::lowp::f64_to_f32_odd;

/// f64 to binary16 bits, rounding once to nearest even.
#[inline]
pub fn f64_to_f16(v: f64) -> u16 {
    f32_to_f16(f64_to_f32_odd(v))
}

/// f64 to bfloat16 bits, rounding once to nearest even.
#[inline]
pub fn f64_to_bf16(v: f64) -> u16 {
    f32_to_bf16(f64_to_f32_odd(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_double_rounding() {
        // 1 + 2^-11 + 2^-40 lies just above the f16 tie between 1 and 1 + 2^-10: it must
        // round up, though rounding to f32 first would land on the tie and round to even.
        // Powers of two written out (`powi` is not specified to be exact).
        let v = 1.0 + f64::from_bits(1012 << 52) + f64::from_bits(983 << 52);
        assert_eq!(f64_to_f16(v), 0x3c01);
        assert_eq!(f64_to_f16(1.0), 0x3c00);
        assert_eq!(f64_to_bf16(-2.0), 0xc000);
    }
}
