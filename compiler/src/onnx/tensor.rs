//! `TensorProto` -> [`Tensor`]: raw_data, the typed repeated fields, and external data files.

use std::path::{Component, Path};

use prost::Message;

use super::proto::{tensor_proto::DataLocation, TensorProto};
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{DType, Tensor};

/// Reads a serialized `TensorProto` file (the `input_N.pb` of ONNX test cases).
pub fn read_tensor_file(path: &Path) -> Result<(String, Tensor)> {
    let bytes = std::fs::read(path).map_err(|source| {
        CompileError::new(ErrorKind::Io {
            path: path.to_path_buf(),
            source,
        })
    })?;
    decode_tensor(&bytes, &path.display().to_string())
}

/// Decodes a serialized `TensorProto`; returns its name and data.
pub fn decode_tensor(bytes: &[u8], what: &str) -> Result<(String, Tensor)> {
    let proto = TensorProto::decode(bytes).map_err(|source| {
        CompileError::new(ErrorKind::Decode {
            what: format!("tensor file {what}"),
            source,
        })
    })?;
    let tensor = tensor_from_proto(&proto, None)?;
    Ok((proto.name().to_string(), tensor))
}

/// Converts a `TensorProto` to a [`Tensor`]. `model_dir` is where external data files are
/// looked up; without it, external data is an error.
pub fn tensor_from_proto(proto: &TensorProto, model_dir: Option<&Path>) -> Result<Tensor> {
    let name = proto.name();
    let code = proto.data_type();
    let dtype = DType::from_onnx(code).ok_or_else(|| {
        CompileError::unsupported(format!(
            "tensor \"{name}\" has element type {}",
            DType::onnx_name(code)
        ))
    })?;
    let mut shape = Vec::with_capacity(proto.dims.len());
    for &d in &proto.dims {
        let d = usize::try_from(d).map_err(|_| {
            CompileError::malformed(format!("tensor \"{name}\" has negative dimension {d}"))
        })?;
        shape.push(d);
    }
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            CompileError::malformed(format!(
                "tensor \"{name}\" has an element count that overflows"
            ))
        })?;
    // 4-bit and 2-bit types are packed in the file (low bits first) and one a byte in the IR.
    let per_byte = packed_per_byte(dtype);
    let expected = if per_byte > 1 {
        count.div_ceil(per_byte)
    } else {
        count
            .checked_mul(dtype.size())
            .ok_or_else(|| CompileError::malformed(format!("tensor \"{name}\" is too large")))?
    };
    if proto.segment.is_some() {
        return Err(CompileError::unsupported(format!(
            "tensor \"{name}\" is segmented"
        )));
    }

    let size_error = |found: usize| {
        CompileError::new(ErrorKind::DataSize {
            tensor: name.to_string(),
            expected,
            found,
        })
    };
    let bytes = if proto.data_location() == DataLocation::External {
        read_external(proto, model_dir, expected)?
    } else if let Some(raw) = &proto.raw_data {
        raw.clone()
    } else {
        typed_field_bytes(proto, dtype)
    };
    if bytes.len() != expected {
        return Err(size_error(bytes.len()));
    }
    let bytes = if per_byte > 1 {
        unpack(&bytes, dtype, count)
    } else {
        bytes
    };
    Ok(Tensor {
        dtype,
        shape,
        bytes,
    })
}

/// How many elements of `dtype` an ONNX tensor packs into one byte.
fn packed_per_byte(dtype: DType) -> usize {
    match dtype {
        DType::I4 | DType::U4 | DType::F4E2M1 => 2,
        DType::I2 | DType::U2 => 4,
        _ => 1,
    }
}

/// Unpacks `count` elements of a 4-bit or 2-bit type (first element in the lowest bits) to
/// one byte each: signed integers sign-extended, the rest zero-extended.
fn unpack(packed: &[u8], dtype: DType, count: usize) -> Vec<u8> {
    let per_byte = packed_per_byte(dtype);
    let bits = 8 / per_byte;
    let signed = dtype.narrow_int().is_some_and(|(_, signed)| signed);
    packed
        .iter()
        .flat_map(|&byte| (0..per_byte).map(move |k| byte >> (k * bits)))
        .take(count)
        .map(|field| {
            let shift = 8 - bits;
            if signed {
                (((field << shift) as i8) >> shift) as u8
            } else {
                (field << shift) >> shift
            }
        })
        .collect()
}

/// The data of the typed repeated field that holds `dtype`, as little-endian bytes (4-bit
/// and 2-bit types still packed, one packed byte an entry).
fn typed_field_bytes(proto: &TensorProto, dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => proto
            .float_data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F64 => proto
            .double_data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I64 => proto
            .int64_data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I32 => proto
            .int32_data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        // Narrow types travel in int32_data, one element per entry; keep the low bytes.
        DType::I16 | DType::U16 | DType::F16 | DType::BF16 => proto
            .int32_data
            .iter()
            .flat_map(|&v| (v as u16).to_le_bytes())
            .collect(),
        DType::Bool => proto.int32_data.iter().map(|&v| u8::from(v != 0)).collect(),
        DType::U32 => proto
            .uint64_data
            .iter()
            .flat_map(|&v| (v as u32).to_le_bytes())
            .collect(),
        DType::U64 => proto
            .uint64_data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        // The one-byte types: int8, uint8 and the low-precision ones.
        _ => proto.int32_data.iter().map(|&v| v as u8).collect(),
    }
}

/// Reads a tensor stored outside the model (`data_location: EXTERNAL`).
fn read_external(
    proto: &TensorProto,
    model_dir: Option<&Path>,
    expected: usize,
) -> Result<Vec<u8>> {
    let name = proto.name();
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for entry in &proto.external_data {
        let parse = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                CompileError::malformed(format!(
                    "tensor \"{name}\": external data {} is not a number: {v:?}",
                    entry.key()
                ))
            })
        };
        match entry.key() {
            "location" => location = Some(entry.value().to_string()),
            "offset" => offset = parse(entry.value())?,
            "length" => length = Some(parse(entry.value())?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| {
        CompileError::malformed(format!(
            "tensor \"{name}\": external data without a location"
        ))
    })?;
    let relative = Path::new(&location);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(CompileError::malformed(format!(
            "tensor \"{name}\": external data location {location:?} must be a relative path inside the model's folder"
        )));
    }
    let dir = model_dir.ok_or_else(|| {
        CompileError::unsupported(format!(
            "tensor \"{name}\" uses external data, but the model was not read from a file"
        ))
    })?;
    let path = dir.join(relative);
    let data = std::fs::read(&path).map_err(|source| {
        CompileError::new(ErrorKind::Io {
            path: path.clone(),
            source,
        })
    })?;
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let len = length
        .map_or(Some(expected), |l| usize::try_from(l).ok())
        .unwrap_or(usize::MAX);
    let end = start
        .checked_add(len)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| {
            CompileError::malformed(format!(
                "tensor \"{name}\": external data [{start}, +{len}) is outside {} ({} bytes)",
                path.display(),
                data.len()
            ))
        })?;
    Ok(data[start..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(dtype: i32, dims: Vec<i64>) -> TensorProto {
        TensorProto {
            name: Some("t".into()),
            data_type: Some(dtype),
            dims,
            ..Default::default()
        }
    }

    #[test]
    fn typed_fields_and_raw_data_agree() {
        let mut p = proto(1, vec![2]);
        p.float_data = vec![1.5, -2.0];
        let typed = tensor_from_proto(&p, None).expect("float_data");
        let mut r = proto(1, vec![2]);
        r.raw_data = Some(
            [1.5f32, -2.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        assert_eq!(typed, tensor_from_proto(&r, None).expect("raw_data"));

        let mut b = proto(9, vec![3]);
        b.int32_data = vec![1, 0, 1];
        assert_eq!(tensor_from_proto(&b, None).expect("bool").bytes, [1, 0, 1]);
    }

    #[test]
    fn wrong_sizes_are_typed_errors() {
        let mut p = proto(1, vec![3]);
        p.float_data = vec![1.0];
        let e = tensor_from_proto(&p, None).expect_err("too few floats");
        assert!(
            matches!(
                e.kind,
                ErrorKind::DataSize {
                    expected: 12,
                    found: 4,
                    ..
                }
            ),
            "{e}"
        );
        let e = tensor_from_proto(&proto(1, vec![-1]), None).expect_err("negative dim");
        assert!(e.to_string().contains("negative dimension"), "{e}");
        let e = tensor_from_proto(&proto(8, vec![1]), None).expect_err("string tensor");
        assert!(e.is_unsupported(), "{e}");
    }

    #[test]
    fn sub_byte_types_unpack_low_bits_first() {
        // int4: 7, -8, -1 (odd count: the last high nibble is padding).
        let mut p = proto(22, vec![3]);
        p.raw_data = Some(vec![0x87, 0x0f]);
        let t = tensor_from_proto(&p, None).expect("int4");
        assert_eq!(t.bytes, [7, 0xf8, 0xff]);
        assert_eq!(t.to_i64s(), Some(vec![7, -8, -1]));
        // The same packed bytes in int32_data.
        let mut q = proto(22, vec![3]);
        q.int32_data = vec![0x87, 0x0f];
        assert_eq!(tensor_from_proto(&q, None).expect("int4 typed"), t);
        // uint2: 0, 1, 2, 3, 3.
        let mut p = proto(25, vec![5]);
        p.raw_data = Some(vec![0b1110_0100, 0b11]);
        assert_eq!(
            tensor_from_proto(&p, None).expect("uint2").bytes,
            [0, 1, 2, 3, 3]
        );
        // int2: 1, -2, -1.
        let mut p = proto(26, vec![3]);
        p.raw_data = Some(vec![0b11_10_01]);
        let t = tensor_from_proto(&p, None).expect("int2");
        assert_eq!(t.to_i64s(), Some(vec![1, -2, -1]));
        // float4 e2m1: 0.5, -6.
        let mut p = proto(23, vec![2]);
        p.raw_data = Some(vec![0xf1]);
        assert_eq!(
            tensor_from_proto(&p, None).expect("float4").to_f64s(),
            [0.5, -6.0]
        );
        // Too few packed bytes is a size error in bytes.
        let mut p = proto(21, vec![5]);
        p.raw_data = Some(vec![0x21, 0x43]);
        let e = tensor_from_proto(&p, None).expect_err("short uint4");
        assert!(
            matches!(
                e.kind,
                ErrorKind::DataSize {
                    expected: 3,
                    found: 2,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn external_data_is_read_and_confined() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("w.bin"), [0u8, 0, 0, 0, 0, 0, 128, 63]).expect("write");
        let mut p = proto(1, vec![1]);
        p.data_location = Some(DataLocation::External as i32);
        p.external_data = vec![
            super::super::proto::StringStringEntryProto {
                key: Some("location".into()),
                value: Some("w.bin".into()),
            },
            super::super::proto::StringStringEntryProto {
                key: Some("offset".into()),
                value: Some("4".into()),
            },
        ];
        let t = tensor_from_proto(&p, Some(dir.path())).expect("external");
        assert_eq!(t.as_f32(), Some(vec![1.0]));
        p.external_data[0].value = Some("../w.bin".into());
        let e = tensor_from_proto(&p, Some(dir.path())).expect_err("escape");
        assert!(e.to_string().contains("relative path"), "{e}");
    }
}
