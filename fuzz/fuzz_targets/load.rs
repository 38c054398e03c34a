//! Arbitrary bytes as an ONNX file: decoding, then import into the IR. Any outcome but a typed
//! error or a graph is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = sinter::onnx::decode_model(data, "the fuzz input") {
        let _ = sinter::onnx::import_model(&model, "fuzzed", None);
    }
});
