//! Element types, with their ONNX codes and Rust storage types.

use std::fmt;

use super::lowp;

/// An element type the IR can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// Signed integers.
    I8,
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// Signed 64-bit.
    I64,
    /// Unsigned 8-bit.
    U8,
    /// Unsigned 16-bit.
    U16,
    /// Unsigned 32-bit.
    U32,
    /// Unsigned 64-bit.
    U64,
    /// Boolean, stored as one byte 0 or 1.
    Bool,
    /// float8 E4M3FN, its bits in a `u8`.
    F8E4M3FN,
    /// float8 E4M3FNUZ, its bits in a `u8`.
    F8E4M3FNUZ,
    /// float8 E5M2, its bits in a `u8`.
    F8E5M2,
    /// float8 E5M2FNUZ, its bits in a `u8`.
    F8E5M2FNUZ,
    /// float8 E8M0 (a power of two), its bits in a `u8`.
    F8E8M0,
    /// float4 E2M1, its bits in the low nibble of a `u8` (unpacked: one element a byte).
    F4E2M1,
    /// Signed 4-bit, one sign-extended `i8` an element (unpacked).
    I4,
    /// Unsigned 4-bit, one `u8` an element (unpacked).
    U4,
    /// Signed 2-bit, one sign-extended `i8` an element (unpacked).
    I2,
    /// Unsigned 2-bit, one `u8` an element (unpacked).
    U2,
}

impl DType {
    /// The type for an ONNX `TensorProto.DataType` code, if the IR supports it.
    pub fn from_onnx(code: i32) -> Option<DType> {
        Some(match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            4 => DType::U16,
            5 => DType::I16,
            6 => DType::I32,
            7 => DType::I64,
            9 => DType::Bool,
            10 => DType::F16,
            11 => DType::F64,
            12 => DType::U32,
            13 => DType::U64,
            16 => DType::BF16,
            17 => DType::F8E4M3FN,
            18 => DType::F8E4M3FNUZ,
            19 => DType::F8E5M2,
            20 => DType::F8E5M2FNUZ,
            21 => DType::U4,
            22 => DType::I4,
            23 => DType::F4E2M1,
            24 => DType::F8E8M0,
            25 => DType::U2,
            26 => DType::I2,
            _ => return None,
        })
    }

    /// The ONNX name of a data type code, for messages about codes the IR does not support.
    pub fn onnx_name(code: i32) -> String {
        crate::onnx::proto::tensor_proto::DataType::try_from(code)
            .map(|t| t.as_str_name().to_lowercase())
            .unwrap_or_else(|_| format!("data type {code}"))
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8
            | DType::U8
            | DType::Bool
            | DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0
            | DType::F4E2M1
            | DType::I4
            | DType::U4
            | DType::I2
            | DType::U2 => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// Whether this is one of the sub-byte or 8-bit float types that the IR stores one byte
    /// an element and only `Cast`, the quantization ops and data movement handle.
    pub fn is_low_precision(self) -> bool {
        self.is_small_float() || self.narrow_int().is_some()
    }

    /// The format of a float8/float4 type with a sign (all but E8M0).
    pub fn minifloat(self) -> Option<lowp::MiniFloat> {
        Some(match self {
            DType::F8E4M3FN => lowp::E4M3FN,
            DType::F8E4M3FNUZ => lowp::E4M3FNUZ,
            DType::F8E5M2 => lowp::E5M2,
            DType::F8E5M2FNUZ => lowp::E5M2FNUZ,
            DType::F4E2M1 => lowp::E2M1,
            _ => return None,
        })
    }

    /// `(bits, signed)` of `int4`, `uint4`, `int2` and `uint2`.
    pub fn narrow_int(self) -> Option<(u32, bool)> {
        Some(match self {
            DType::I4 => (4, true),
            DType::U4 => (4, false),
            DType::I2 => (2, true),
            DType::U2 => (2, false),
            _ => return None,
        })
    }

    /// Whether this is a float8/float4 type (values that decode to floats).
    pub fn is_small_float(self) -> bool {
        self.minifloat().is_some() || self == DType::F8E8M0
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// The Rust type of one element in arena storage (`u8` for booleans and the float8/float4
    /// bit patterns, `i8`/`u8` for the 4-bit and 2-bit integers, one element a byte).
    pub fn storage_type(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 | DType::BF16 | DType::U16 => "u16",
            DType::I8 | DType::I4 | DType::I2 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8
            | DType::Bool
            | DType::U4
            | DType::U2
            | DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0
            | DType::F4E2M1 => "u8",
            DType::U32 => "u32",
            DType::U64 => "u64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
            DType::F8E4M3FN => "float8e4m3fn",
            DType::F8E4M3FNUZ => "float8e4m3fnuz",
            DType::F8E5M2 => "float8e5m2",
            DType::F8E5M2FNUZ => "float8e5m2fnuz",
            DType::F8E8M0 => "float8e8m0",
            DType::F4E2M1 => "float4e2m1",
            DType::I4 => "int4",
            DType::U4 => "uint4",
            DType::I2 => "int2",
            DType::U2 => "uint2",
        };
        f.write_str(name)
    }
}
