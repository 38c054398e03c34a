//! The checked-in prost output matches `compiler/proto/onnx.proto`: `scripts/gen_proto.sh`
//! records the proto's POSIX `cksum` in the generated file's header.

/// POSIX `cksum`: CRC-32 (polynomial 0x04C11DB7, MSB first) over the bytes and the length.
fn cksum(data: &[u8]) -> u32 {
    fn step(mut crc: u32, byte: u8) -> u32 {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
        crc
    }
    let mut crc = data.iter().fold(0u32, |c, &b| step(c, b));
    let mut len = data.len();
    while len > 0 {
        crc = step(crc, (len & 0xff) as u8);
        len >>= 8;
    }
    !crc
}

#[test]
fn proto_is_fresh() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto = std::fs::read(root.join("proto/onnx.proto")).expect("onnx.proto");
    let generated = std::fs::read_to_string(root.join("src/onnx/proto.rs")).expect("proto.rs");
    let recorded = generated
        .lines()
        .find_map(|l| l.strip_prefix("// source cksum: "))
        .expect("proto.rs records the cksum of its source");
    assert_eq!(
        recorded,
        cksum(&proto).to_string(),
        "compiler/src/onnx/proto.rs is stale: run scripts/gen_proto.sh"
    );
}
