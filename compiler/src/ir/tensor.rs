//! Constant tensors: a type, a shape and little-endian bytes.

use super::lowp;
use super::DType;

/// A constant tensor. `bytes` holds `shape.product() * dtype.size()` little-endian bytes,
/// the layout of ONNX `raw_data` and of the generated weights blob.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Dimensions; empty for a scalar.
    pub shape: Vec<usize>,
    /// The data.
    pub bytes: Vec<u8>,
}

macro_rules! typed_constructors {
    ($($from:ident, $to:ident, $t:ty, $dt:expr;)*) => {$(
        /// A tensor from typed values; `values.len()` must equal the shape's product.
        pub fn $from(shape: Vec<usize>, values: &[$t]) -> Tensor {
            debug_assert_eq!(shape.iter().product::<usize>(), values.len());
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Tensor { dtype: $dt, shape, bytes }
        }
        /// The elements, if the tensor has exactly this type.
        pub fn $to(&self) -> Option<Vec<$t>> {
            if self.dtype != $dt {
                return None;
            }
            const N: usize = std::mem::size_of::<$t>();
            Some(self.bytes.chunks_exact(N).map(|c| {
                let mut b = [0u8; N];
                b.copy_from_slice(c);
                <$t>::from_le_bytes(b)
            }).collect())
        }
    )*};
}

impl Tensor {
    typed_constructors! {
        from_f32, as_f32, f32, DType::F32;
        from_f64, as_f64, f64, DType::F64;
        from_i64, as_i64, i64, DType::I64;
        from_i32, as_i32, i32, DType::I32;
    }

    /// A tensor of `dtype` from numbers (rounded toward zero and wrapped for integer types,
    /// `!= 0` for booleans, rounded to nearest for float16/bfloat16 and the float8/float4
    /// types, saturating; float8 E8M0 rounds up).
    pub fn from_numbers(dtype: DType, shape: Vec<usize>, values: &[f64]) -> Tensor {
        let mut bytes = Vec::with_capacity(values.len() * dtype.size());
        for &v in values {
            match dtype {
                DType::F32 => bytes.extend_from_slice(&(v as f32).to_le_bytes()),
                DType::F64 => bytes.extend_from_slice(&v.to_le_bytes()),
                DType::F16 => bytes.extend_from_slice(&f64_to_f16(v).to_le_bytes()),
                DType::BF16 => {
                    let bits = (v as f32).to_bits();
                    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
                    bytes.extend_from_slice(&rounded.to_le_bytes());
                }
                DType::I8 | DType::U8 => bytes.push(v as i64 as u8),
                DType::Bool => bytes.push(u8::from(v != 0.0)),
                DType::I16 | DType::U16 => {
                    bytes.extend_from_slice(&(v as i64 as u16).to_le_bytes())
                }
                DType::I32 | DType::U32 => {
                    bytes.extend_from_slice(&(v as i64 as u32).to_le_bytes())
                }
                DType::I64 => bytes.extend_from_slice(&(v as i64).to_le_bytes()),
                DType::U64 => bytes.extend_from_slice(&(v as u64).to_le_bytes()),
                DType::F8E4M3FN
                | DType::F8E4M3FNUZ
                | DType::F8E5M2
                | DType::F8E5M2FNUZ
                | DType::F4E2M1 => bytes.push(
                    dtype
                        .minifloat()
                        .map_or(0, |format| format.encode_f64(v, true)),
                ),
                DType::F8E8M0 => bytes.push(lowp::f32_to_e8m0(v as f32, true, lowp::RoundMode::Up)),
                DType::I4 | DType::I2 | DType::U4 | DType::U2 => {
                    let (bits, signed) = dtype.narrow_int().unwrap_or((8, false));
                    bytes.push(if signed {
                        lowp::wrap_signed(v as i64, bits) as u8
                    } else {
                        lowp::wrap_unsigned(v as i64, bits)
                    })
                }
            }
        }
        Tensor {
            dtype,
            shape,
            bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as i64, for integer tensors that carry shapes, axes and indices.
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        let n = self.dtype.size();
        let iter = self.bytes.chunks_exact(n);
        Some(match self.dtype {
            DType::I64 => iter
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            DType::I32 => iter
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
            DType::I16 => iter
                .map(|c| i64::from(i16::from_le_bytes(c.try_into().unwrap_or([0; 2]))))
                .collect(),
            DType::I8 | DType::I4 | DType::I2 => iter.map(|c| i64::from(c[0] as i8)).collect(),
            DType::U8 | DType::Bool | DType::U4 | DType::U2 => {
                iter.map(|c| i64::from(c[0])).collect()
            }
            DType::U16 => iter
                .map(|c| i64::from(u16::from_le_bytes(c.try_into().unwrap_or([0; 2]))))
                .collect(),
            DType::U32 => iter
                .map(|c| i64::from(u32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
            DType::U64 => iter
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as i64)
                .collect(),
            _ => return None,
        })
    }

    /// The elements as f64 (exact for every type but u64/i64 beyond 2^53).
    pub fn to_f64s(&self) -> Vec<f64> {
        let n = self.dtype.size();
        let iter = self.bytes.chunks_exact(n);
        match self.dtype {
            DType::F32 => iter
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
            DType::F64 => iter
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            DType::F16 => iter
                .map(|c| f16_to_f64(u16::from_le_bytes(c.try_into().unwrap_or([0; 2]))))
                .collect(),
            DType::BF16 => iter
                .map(|c| {
                    f64::from(f32::from_bits(
                        u32::from(u16::from_le_bytes(c.try_into().unwrap_or([0; 2]))) << 16,
                    ))
                })
                .collect(),
            DType::F8E8M0 => iter.map(|c| f64::from(lowp::e8m0_to_f32(c[0]))).collect(),
            d => match d.minifloat() {
                Some(format) => iter.map(|c| f64::from(format.decode(c[0]))).collect(),
                None => self
                    .to_i64s()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v as f64)
                    .collect(),
            },
        }
    }

    /// The same data with another shape of equal element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> Tensor {
        Tensor {
            dtype: self.dtype,
            shape,
            bytes: self.bytes.clone(),
        }
    }
}

/// Converts IEEE binary16 bits to f64.
pub(crate) fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Converts f64 to IEEE binary16 bits, rounding to nearest even.
fn f64_to_f16(v: f64) -> u16 {
    let f = v as f32;
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if f.is_nan() {
        return sign | 0x7e00;
    }
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let frac = bits & 0x007f_ffff;
    if exp >= 31 {
        return sign | 0x7c00;
    }
    if exp <= 0 {
        if exp < -10 {
            return sign;
        }
        let m = frac | 0x0080_0000;
        let shift = (14 - exp) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1u32 << shift) - 1);
        let mut out = m >> shift;
        if rem > half || (rem == half && out & 1 == 1) {
            out += 1;
        }
        return sign | out as u16;
    }
    let mut out = ((exp as u32) << 10) | (frac >> 13);
    let rem = frac & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && out & 1 == 1) {
        out += 1;
    }
    sign | out as u16
}
