//! The structured model mutations shared by `tests/fuzz.rs` (a seeded campaign in `cargo test`)
//! and the libFuzzer target `fuzz/fuzz_targets/compile.rs` (the fuzzer's bytes steer them).

use std::path::{Path, PathBuf};

use prost::Message as _;
use sinter::onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension, type_proto, ModelProto,
};

/// Where a mutation's decisions come from: a seeded generator in `cargo test`, the fuzzer's
/// bytes under libFuzzer (so that coverage feedback steers the decisions).
pub(crate) trait Choices {
    /// 64 fresh bits.
    fn next(&mut self) -> u64;

    /// A value in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// An integer that tends to break things: small, zero, negative, huge.
    fn nasty(&mut self) -> i64 {
        match self.below(8) {
            0 => 0,
            1 => -1,
            2 => i64::MAX,
            3 => i64::MIN,
            4 => 1 << (self.below(40) + 16),
            5 => -(self.below(10) as i64) - 2,
            _ => self.below(9) as i64,
        }
    }
}

/// A deterministic generator (SplitMix64).
#[allow(dead_code, reason = "used by cargo test, not by the libFuzzer targets")]
pub(crate) struct Rng(pub u64);

impl Choices for Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Decisions read from a fuzzer's input, one byte at a time for small choices; zeros once
/// the input runs out.
#[allow(dead_code, reason = "used by the libFuzzer targets, not by cargo test")]
pub(crate) struct Tape<'a>(pub &'a [u8]);

impl Choices for Tape<'_> {
    fn next(&mut self) -> u64 {
        let take = self.0.len().min(8);
        let (head, rest) = self.0.split_at(take);
        self.0 = rest;
        head.iter().rev().fold(0, |v, &b| v << 8 | u64::from(b))
    }

    fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            let Some((&b, rest)) = self.0.split_first() else {
                return 0;
            };
            self.0 = rest;
            usize::from(b) % n.max(1)
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Every `model.onnx` under `dir`.
pub(crate) fn models(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            models(&path, out);
        } else if path.file_name().is_some_and(|n| n == "model.onnx") {
            out.push(path);
        }
    }
}

/// The seeds: the small models under `dir` only (a mutation of a big one spends its time in big kernels'
/// constant folding, not in new code paths).
pub(crate) fn seeds(dir: &Path) -> Vec<ModelProto> {
    let mut paths = Vec::new();
    models(dir, &mut paths);
    paths
        .iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 64 * 1024))
        .filter_map(|p| ModelProto::decode(std::fs::read(p).ok()?.as_slice()).ok())
        .collect()
}

/// One structured mutation of `m`.
pub(crate) fn mutate(m: &mut ModelProto, rng: &mut impl Choices, names: &[String]) {
    let Some(g) = m.graph.as_mut() else {
        return;
    };
    match rng.below(11) {
        // A dim of a graph input or output.
        0 => {
            let list = if rng.below(2) == 0 {
                &mut g.input
            } else {
                &mut g.output
            };
            let n = list.len();
            if let Some(vi) = list.get_mut(rng.below(n)) {
                if let Some(type_proto::Value::TensorType(t)) =
                    vi.r#type.as_mut().and_then(|t| t.value.as_mut())
                {
                    if let Some(shape) = t.shape.as_mut() {
                        let d = shape.dim.len();
                        match (rng.below(4), shape.dim.get_mut(rng.below(d))) {
                            (0, _) => shape.dim.truncate(rng.below(d + 1)),
                            (1, Some(dim)) => {
                                dim.value = Some(dimension::Value::DimParam("Q".into()))
                            }
                            (_, Some(dim)) => {
                                dim.value = Some(dimension::Value::DimValue(rng.nasty()))
                            }
                            _ => {}
                        }
                    }
                    if rng.below(4) == 0 {
                        t.elem_type = Some(rng.below(25) as i32);
                    }
                }
            }
        }
        // An attribute's value or type.
        1..=3 => {
            let n = g.node.len();
            if let Some(node) = g.node.get_mut(rng.below(n)) {
                let a = node.attribute.len();
                if let Some(attr) = node.attribute.get_mut(rng.below(a)) {
                    match rng.below(6) {
                        0 => attr.i = Some(rng.nasty()),
                        1 => {
                            let len = attr.ints.len();
                            if len > 0 && rng.below(2) == 0 {
                                attr.ints[rng.below(len)] = rng.nasty();
                            } else {
                                attr.ints.truncate(rng.below(len + 1));
                                if rng.below(2) == 0 {
                                    attr.ints.push(rng.nasty());
                                }
                            }
                        }
                        2 => {
                            attr.f = Some([f32::NAN, f32::INFINITY, -0.0, 1e30, -3.5][rng.below(5)])
                        }
                        3 => attr.s = Some(b"\xffbogus".to_vec()),
                        4 => attr.r#type = Some(rng.below(15) as i32),
                        _ => {
                            attr.r#type = Some(AttributeType::Ints as i32);
                            attr.ints = (0..rng.below(6)).map(|_| rng.nasty()).collect();
                        }
                    }
                } else {
                    node.attribute.push(sinter::onnx::proto::AttributeProto {
                        name: Some(["axis", "axes", "perm", "group", "pads"][rng.below(5)].into()),
                        r#type: Some(AttributeType::Int as i32),
                        i: Some(rng.nasty()),
                        ..Default::default()
                    });
                }
            }
        }
        // An initializer's data or dims.
        4 => {
            let n = g.initializer.len();
            if let Some(t) = g.initializer.get_mut(rng.below(n)) {
                match rng.below(4) {
                    0 => {
                        let d = t.dims.len();
                        if let Some(dim) = t.dims.get_mut(rng.below(d)) {
                            *dim = rng.nasty();
                        }
                    }
                    1 => {
                        if let Some(raw) = t.raw_data.as_mut() {
                            let len = raw.len();
                            raw.truncate(rng.below(len + 1));
                        }
                    }
                    2 => t.data_type = Some(rng.below(25) as i32),
                    _ => {
                        t.dims.push(rng.below(4) as i64);
                    }
                }
            }
        }
        // Node order, deletion, duplication.
        5 => {
            let n = g.node.len();
            if n > 1 {
                let (i, j) = (rng.below(n), rng.below(n));
                g.node.swap(i, j);
            }
        }
        6 => drop_or_duplicate(&mut g.node, rng),
        // A node input renamed to another known name, a missing one, or dropped.
        7 => {
            let n = g.node.len();
            if let Some(node) = g.node.get_mut(rng.below(n)) {
                let k = node.input.len();
                if let Some(input) = node.input.get_mut(rng.below(k)) {
                    *input = match rng.below(3) {
                        0 => String::new(),
                        1 => "nowhere".into(),
                        _ => names[rng.below(names.len())].clone(),
                    };
                } else if rng.below(2) == 0 {
                    node.input.push(names[rng.below(names.len())].clone());
                }
            }
        }
        // Another op type from the corpus, or an opset change.
        8 => {
            let n = g.node.len();
            let op = [
                "Add", "Reshape", "Conv", "Gather", "Slice", "Concat", "Resize", "Loop",
            ][rng.below(8)];
            if let Some(node) = g.node.get_mut(rng.below(n)) {
                node.op_type = Some(op.into());
            }
        }
        9 => {
            if let Some(opset) = m.opset_import.first_mut() {
                opset.version = Some([1, 6, 11, 13, 18, 22, 99][rng.below(7)]);
            }
        }
        // Graph outputs dropped or duplicated.
        _ => drop_or_duplicate(&mut g.output, rng),
    }
}

/// Removes one random element of `list`, or appends a copy of it.
pub(crate) fn drop_or_duplicate<T: Clone>(list: &mut Vec<T>, rng: &mut impl Choices) {
    let n = list.len();
    if n > 0 {
        let i = rng.below(n);
        if rng.below(2) == 0 {
            list.remove(i);
        } else {
            let copy = list[i].clone();
            list.push(copy);
        }
    }
}

/// The symbolic dims of `m`'s graph inputs, each bound to 1 or 2.
pub(crate) fn dims(m: &ModelProto, rng: &mut impl Choices) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for vi in m.graph.iter().flat_map(|g| &g.input) {
        if let Some(type_proto::Value::TensorType(t)) =
            vi.r#type.as_ref().and_then(|t| t.value.as_ref())
        {
            for d in t.shape.iter().flat_map(|s| &s.dim) {
                if let Some(dimension::Value::DimParam(name)) = &d.value {
                    if !name.is_empty() && !out.iter().any(|(n, _)| n == name) {
                        out.push((name.clone(), 1 + rng.below(2)));
                    }
                }
            }
        }
    }
    out
}
