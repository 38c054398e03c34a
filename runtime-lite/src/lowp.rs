//! Low-precision element types: the float8 formats (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ,
//! E8M0), float4 E2M1, and the 4-bit and 2-bit integers. Each element takes one byte in the
//! arena: the float formats their raw bit pattern in the low bits of a `u8`, `int4`/`int2` a
//! sign-extended `i8`, `uint4`/`uint2` a `u8`. Packing two or four elements to a byte happens
//! only where ONNX tensors are read.
//!
//! Conversions follow ONNX `Cast` (opset 19 `saturate`, opset 25 `round_mode`) and the
//! reference implementation's numbers: float to minifloat rounds to nearest, ties to even;
//! a finite value beyond the largest one (or an infinity) becomes that largest value when
//! saturating, else infinity (E5M2) or NaN (the formats without infinities).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Cast.html>,
//! <https://onnx.ai/onnx/technical/float8.html>, <https://onnx.ai/onnx/technical/float4.html>.
//!
//! This file is also compiled into the `sinter` compiler (as `sinter::ir::lowp`), so constant
//! folding and generated code convert with the same functions: it uses `core` only and no
//! other module of this crate.

/// How a minifloat format spends its all-ones and negative-zero encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specials {
    /// IEEE style: the all-ones exponent holds infinities (mantissa 0) and NaNs (E5M2).
    Ieee,
    /// No infinities; only the all-ones pattern `S.1111.111` is NaN (E4M3FN).
    AllOnesNan,
    /// No infinities and no negative zero: `0x80` is the one NaN (the `FNUZ` formats).
    NegZeroNan,
    /// Neither infinities nor NaN: everything saturates (E2M1).
    Finite,
}

/// A sign-exponent-mantissa format of at most 8 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiniFloat {
    /// Exponent bits.
    pub exp_bits: u32,
    /// Mantissa (fraction) bits.
    pub man_bits: u32,
    /// Exponent bias.
    pub bias: i32,
    /// Special values.
    pub specials: Specials,
}

/// float8 E4M3FN: bias 7, largest 448, NaN `S.1111.111`, no infinities.
pub const E4M3FN: MiniFloat = MiniFloat::new(4, 3, 7, Specials::AllOnesNan);
/// float8 E4M3FNUZ: bias 8, largest 240, NaN `0x80`, no infinities or negative zero.
pub const E4M3FNUZ: MiniFloat = MiniFloat::new(4, 3, 8, Specials::NegZeroNan);
/// float8 E5M2: bias 15, largest 57344, IEEE infinities and NaNs.
pub const E5M2: MiniFloat = MiniFloat::new(5, 2, 15, Specials::Ieee);
/// float8 E5M2FNUZ: bias 16, largest 57344, NaN `0x80`, no infinities or negative zero.
pub const E5M2FNUZ: MiniFloat = MiniFloat::new(5, 2, 16, Specials::NegZeroNan);
/// float4 E2M1: bias 1, values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}, no infinities or NaN.
pub const E2M1: MiniFloat = MiniFloat::new(2, 1, 1, Specials::Finite);

/// `2^e` for `-149 <= e <= 127` (exact; subnormal below -126).
#[inline]
fn pow2(e: i32) -> f32 {
    if e >= -126 {
        f32::from_bits(((e + 127) as u32) << 23)
    } else {
        f32::from_bits(1u32 << (e + 149))
    }
}

impl MiniFloat {
    /// A format from its field widths, bias and special values.
    pub const fn new(exp_bits: u32, man_bits: u32, bias: i32, specials: Specials) -> Self {
        Self {
            exp_bits,
            man_bits,
            bias,
            specials,
        }
    }

    /// The sign bit.
    #[inline]
    pub const fn sign_bit(self) -> u8 {
        1 << (self.exp_bits + self.man_bits)
    }

    /// The bits of the largest finite magnitude.
    #[inline]
    pub const fn max_bits(self) -> u8 {
        let all = self.sign_bit() - 1;
        match self.specials {
            // The all-ones exponent is special: largest exponent below it, full mantissa.
            Specials::Ieee => all - (1 << self.man_bits),
            Specials::AllOnesNan => all - 1,
            Specials::NegZeroNan | Specials::Finite => all,
        }
    }

    /// The value of `bits` (exact).
    #[inline]
    pub fn decode(self, bits: u8) -> f32 {
        let sign = bits & self.sign_bit();
        let mag = bits & (self.sign_bit() - 1);
        let exp = i32::from(mag >> self.man_bits);
        let man = mag & ((1 << self.man_bits) - 1);
        let max_exp = (1 << self.exp_bits) - 1;
        match self.specials {
            Specials::NegZeroNan if bits == self.sign_bit() => return f32::NAN,
            Specials::AllOnesNan if mag == self.sign_bit() - 1 => return f32::NAN,
            Specials::Ieee if exp == max_exp => {
                let v = if man == 0 { f32::INFINITY } else { f32::NAN };
                return if sign != 0 { -v } else { v };
            }
            _ => {}
        }
        let m = self.man_bits as i32;
        let v = if exp == 0 {
            f32::from(man) * pow2(1 - self.bias - m)
        } else {
            f32::from(man | (1 << self.man_bits)) * pow2(exp - self.bias - m)
        };
        if sign != 0 {
            -v
        } else {
            v
        }
    }

    /// [`MiniFloat::encode`] of an f64, rounding once.
    #[inline]
    pub fn encode_f64(self, value: f64, saturate: bool) -> u8 {
        self.encode(f64_to_f32_odd(value), saturate)
    }

    /// The bits of `value` rounded to nearest, ties to even. Beyond the largest finite value
    /// (infinities included) it saturates when `saturate` is set or the format has neither
    /// infinities nor NaN; otherwise it becomes infinity (IEEE style) or NaN.
    #[inline]
    pub fn encode(self, value: f32, saturate: bool) -> u8 {
        let bits = value.to_bits();
        let negative = bits >> 31 != 0;
        let sign = if negative { self.sign_bit() } else { 0 };
        let all = self.sign_bit() - 1;
        if value.is_nan() {
            return match self.specials {
                Specials::Ieee => sign | (all & !((1 << (self.man_bits - 1)) - 1)),
                Specials::AllOnesNan => sign | all,
                Specials::NegZeroNan => self.sign_bit(),
                // The reference (ml_dtypes) gives the zero of the opposite sign.
                Specials::Finite => self.sign_bit() ^ sign,
            };
        }
        let overflow = || -> u8 {
            match self.specials {
                _ if saturate => sign | self.max_bits(),
                Specials::Finite => sign | self.max_bits(),
                Specials::Ieee => sign | (all & !((1 << self.man_bits) - 1)),
                Specials::AllOnesNan => sign | all,
                Specials::NegZeroNan => self.sign_bit(),
            }
        };
        if value.is_infinite() {
            return overflow();
        }
        let exp32 = ((bits >> 23) & 0xff) as i32;
        let mag = if exp32 == 0 {
            // f32 subnormals lie far below half the smallest minifloat: they round to zero.
            0
        } else {
            let mant = (bits & 0x007f_ffff) | 0x0080_0000;
            let e = exp32 - 127;
            let min_exp = 1 - self.bias;
            // Bits of the 24-bit mantissa dropped: more below the normal range.
            let shift = 23 - self.man_bits as i32 + (min_exp - e).max(0);
            let q = if shift > 24 {
                0
            } else {
                let shift = shift as u32;
                let half = 1u32 << (shift - 1);
                let rem = mant & ((1u32 << shift) - 1);
                let q = mant >> shift;
                if rem > half || (rem == half && q & 1 == 1) {
                    q + 1
                } else {
                    q
                }
            };
            if e < min_exp {
                // Subnormal: exponent field 0 (a carry into bit `man_bits` makes it normal).
                q
            } else {
                // q holds the implicit bit, so its carry moves into the exponent field.
                (((e + self.bias - 1) as u32) << self.man_bits) + q
            }
        };
        if mag > u32::from(self.max_bits()) {
            return overflow();
        }
        if mag == 0 && self.specials == Specials::NegZeroNan {
            return 0;
        }
        sign | mag as u8
    }
}

/// f64 to f32 rounded to odd: truncate toward zero, and set the lowest mantissa bit when the
/// conversion was inexact. Rounding that value again to a narrower format (at most 22
/// mantissa bits: binary16, bfloat16, the minifloats) gives the correctly rounded result of
/// the f64, where rounding to nearest twice could land on a false tie.
#[inline]
pub fn f64_to_f32_odd(v: f64) -> f32 {
    let f = v as f32;
    if !f.is_finite() || f64::from(f) == v {
        return f;
    }
    let mut bits = f.to_bits();
    if f64::from(f).abs() > v.abs() {
        // Rounded away from zero: step back toward zero.
        bits -= 1;
    }
    f32::from_bits(bits | 1)
}

/// How `Cast` to float8 E8M0 rounds a value that is not a power of two (opset 25
/// `round_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundMode {
    /// Up to the next power of two (the default).
    Up,
    /// Down: the exponent of the value.
    Down,
    /// To the nearest power of two, ties (to the exponent's parity) as the reference does.
    Nearest,
}

/// float8 E8M0 bits to f32: `2^(bits - 127)`, `0xFF` NaN (exact).
#[inline]
pub fn e8m0_to_f32(bits: u8) -> f32 {
    if bits == 0xff {
        f32::NAN
    } else {
        pow2(i32::from(bits) - 127)
    }
}

/// f32 to float8 E8M0 bits: the f32 exponent field, rounded by `mode` from the mantissa.
/// The sign is dropped, zero gives `2^-127`, NaN and infinities `0xFF` (NaN); rounding past
/// `2^127` gives NaN unless `saturate`.
#[inline]
pub fn f32_to_e8m0(value: f32, saturate: bool, mode: RoundMode) -> u8 {
    let bits = value.to_bits();
    let exp = (bits >> 23) & 0xff;
    if exp == 0xff {
        return 0xff;
    }
    let up = match mode {
        RoundMode::Down => false,
        RoundMode::Up => bits & 0x007f_ffff != 0,
        RoundMode::Nearest => {
            let guard = bits & 0x0040_0000 != 0;
            let rest = bits & 0x003f_ffff != 0;
            // The reference takes "the exponent is non-zero" as the bit that breaks ties.
            guard && (rest || exp > 0)
        }
    };
    if up && !(saturate && exp == 0xfe) {
        exp as u8 + 1
    } else {
        exp as u8
    }
}

/// An integer wrapped to `bits` bits, two's complement, sign-extended (`int4`, `int2`).
#[inline]
pub fn wrap_signed(value: i64, bits: u32) -> i8 {
    let shift = 64 - bits;
    ((value << shift) >> shift) as i8
}

/// An integer wrapped to `bits` bits (`uint4`, `uint2`).
#[inline]
pub fn wrap_unsigned(value: i64, bits: u32) -> u8 {
    (value & ((1i64 << bits) - 1)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `2^e`, exactly (by halving or doubling, which IEEE arithmetic rounds exactly for powers
    /// of two in range; `powi`'s precision is unspecified, and Miri perturbs it).
    fn pow2(e: i32) -> f32 {
        let (step, n) = if e < 0 { (0.5, -e) } else { (2.0, e) };
        (0..n).fold(1.0, |v, _| v * step)
    }

    #[test]
    fn decodes_hand_checked_values() {
        assert_eq!(E4M3FN.decode(0x7e), 448.0);
        assert!(E4M3FN.decode(0x7f).is_nan() && E4M3FN.decode(0xff).is_nan());
        assert_eq!(E4M3FN.decode(0x01), pow2(-9));
        assert_eq!(E4M3FN.decode(0x38), 1.0);
        assert_eq!(E4M3FN.decode(0xb8), -1.0);
        assert_eq!(E4M3FNUZ.decode(0x7f), 240.0);
        assert!(E4M3FNUZ.decode(0x80).is_nan());
        assert_eq!(E4M3FNUZ.decode(0x40), 1.0);
        assert_eq!(E5M2.decode(0x7b), 57344.0);
        assert_eq!(E5M2.decode(0x7c), f32::INFINITY);
        assert_eq!(E5M2.decode(0xfc), f32::NEG_INFINITY);
        assert!(E5M2.decode(0x7e).is_nan());
        assert_eq!(E5M2.decode(0x01), pow2(-16));
        assert_eq!(E5M2FNUZ.decode(0x7f), 57344.0);
        assert_eq!(E5M2FNUZ.decode(0x01), pow2(-17));
        let e2m1: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
        for (bits, want) in e2m1.iter().enumerate() {
            assert_eq!(E2M1.decode(bits as u8), *want);
            assert_eq!(E2M1.decode(bits as u8 | 8), -*want);
        }
        assert_eq!(e8m0_to_f32(127), 1.0);
        assert_eq!(e8m0_to_f32(0), pow2(-127));
        assert_eq!(e8m0_to_f32(254), pow2(127));
        assert!(e8m0_to_f32(255).is_nan());
    }

    #[test]
    fn every_finite_pattern_round_trips() {
        for format in [E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E2M1] {
            let n = 1u16 << (format.exp_bits + format.man_bits + 1);
            for bits in 0..n {
                let bits = bits as u8;
                let v = format.decode(bits);
                if v.is_finite() {
                    assert_eq!(format.encode(v, false), bits, "{format:?} {bits:#04x} {v}");
                }
            }
        }
    }

    #[test]
    fn rounds_to_nearest_even_and_saturates() {
        // 1 + 1/16 lies halfway between 1 and 1.125 in E4M3: ties to even (1).
        assert_eq!(E4M3FN.encode(1.0625, true), 0x38);
        assert_eq!(E4M3FN.encode(1.0626, true), 0x39);
        // 1.1875 is halfway between 1.125 (odd) and 1.25: up.
        assert_eq!(E4M3FN.encode(1.1875, true), 0x3a);
        // Subnormals: 2^-10 is half the smallest E4M3FN subnormal: ties to zero.
        assert_eq!(E4M3FN.encode(pow2(-10), true), 0x00);
        assert_eq!(E4M3FN.encode(1.5 * pow2(-10), true), 0x01);
        assert_eq!(E4M3FN.encode(-1e-7, true), 0x80);
        assert_eq!(E4M3FNUZ.encode(-1e-7, true), 0x00);
        // Overflow and infinities.
        assert_eq!(E4M3FN.encode(1e6, true), 0x7e);
        assert_eq!(E4M3FN.encode(1e6, false), 0x7f);
        assert_eq!(
            E4M3FN.encode(464.0, false),
            0x7e,
            "rounds down to the largest"
        );
        assert_eq!(E4M3FN.encode(f32::NEG_INFINITY, true), 0xfe);
        assert_eq!(E4M3FNUZ.encode(f32::INFINITY, false), 0x80);
        assert_eq!(E5M2.encode(f32::INFINITY, false), 0x7c);
        assert_eq!(E5M2.encode(-1e6, false), 0xfc);
        assert_eq!(E5M2.encode(-1e6, true), 0xfb);
        assert_eq!(E5M2FNUZ.encode(1e6, false), 0x80);
        assert_eq!(E5M2.encode(f32::NAN, true), 0x7e);
        assert_eq!(E4M3FN.encode(f32::NAN, true), 0x7f);
        assert_eq!(E4M3FNUZ.encode(-f32::NAN, true), 0x80);
        // E2M1: 0.25 ties to 0, 1.25 ties to 1, 2.5 to 2, 5 to 4, beyond 6 saturates.
        assert_eq!(E2M1.encode(0.25, false), 0x0);
        assert_eq!(E2M1.encode(1.25, false), 0x2);
        assert_eq!(E2M1.encode(2.5, false), 0x4);
        assert_eq!(E2M1.encode(5.0, false), 0x6);
        assert_eq!(E2M1.encode(-3.5, false), 0xe);
        assert_eq!(E2M1.encode(1e6, false), 0x7);
        assert_eq!(E2M1.encode(f32::NEG_INFINITY, false), 0xf);
        assert_eq!(E2M1.encode(f32::NAN, false), 0x8);
    }

    #[test]
    fn e8m0_rounding_modes() {
        assert_eq!(f32_to_e8m0(1.1, true, RoundMode::Up), 128);
        assert_eq!(f32_to_e8m0(1.1, true, RoundMode::Down), 127);
        assert_eq!(f32_to_e8m0(1.1, true, RoundMode::Nearest), 127);
        assert_eq!(f32_to_e8m0(1.5, true, RoundMode::Nearest), 128);
        assert_eq!(f32_to_e8m0(2.0, true, RoundMode::Up), 128);
        assert_eq!(f32_to_e8m0(-0.25, true, RoundMode::Up), 125);
        assert_eq!(f32_to_e8m0(0.0, true, RoundMode::Up), 0);
        assert_eq!(f32_to_e8m0(f32::INFINITY, true, RoundMode::Up), 255);
        assert_eq!(f32_to_e8m0(f32::MAX, true, RoundMode::Up), 254);
        assert_eq!(f32_to_e8m0(f32::MAX, false, RoundMode::Up), 255);
    }

    #[test]
    fn narrow_integers_wrap() {
        assert_eq!(wrap_signed(-9, 4), 7);
        assert_eq!(wrap_signed(8, 4), -8);
        assert_eq!(wrap_signed(-3, 2), 1);
        assert_eq!(wrap_unsigned(-9, 4), 7);
        assert_eq!(wrap_unsigned(-1, 2), 3);
    }
}
