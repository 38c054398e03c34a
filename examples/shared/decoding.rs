//! What the decoder examples (`kv_decoder`, `genai_decoder`) and their tests share: the
//! greedy pick and ONNX Runtime's reference tensors.

/// The index of the largest logit.
pub(crate) fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// Reference tensor `file` that ONNX Runtime saved in `folder` (relative to the repository).
pub(crate) fn reference_in(folder: &str, file: &str) -> sinter::ir::Tensor {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(folder)
        .join(file);
    sinter::onnx::read_tensor_file(&path)
        .expect("reference data")
        .1
}
