//! Token-by-token decoding with a KV cache carried between runs of one compiled model (the
//! generated `crate::gpt2_kv`, compiled with `dims(past <= 64, total = past + 1)`). Shared by the
//! example and `tests/kv_decoder.rs`.

#[path = "../shared/decoding.rs"]
mod decoding;
pub(crate) use decoding::argmax;

use crate::gpt2_kv;

/// Layers, heads, head width and vocabulary of the bundled decoder.
pub(crate) const LAYERS: usize = 2;
const HEADS: usize = 4;
const HEAD_DIM: usize = 8;
/// Entries in the logits.
pub(crate) const VOCAB: usize = 128;
/// The longest cache the model was compiled for.
pub(crate) const MAX_PAST: usize = 64;

/// The keys and values of every layer for the tokens so far, `[heads, len, head_dim]` each.
pub(crate) struct Cache {
    kv: Vec<Vec<f32>>,
    len: usize,
}

impl Cache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        Self {
            kv: (0..2 * LAYERS)
                .map(|_| Vec::with_capacity(HEADS * (MAX_PAST + 1) * HEAD_DIM))
                .collect(),
            len: 0,
        }
    }

    /// Tokens in the cache.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Runs one step: feeds `token` after the cached ones, returns the next-token logits and
/// stores the step's keys and values in `cache`.
///
/// # Errors
/// When the cache is full (the model was compiled for at most [`MAX_PAST`] past tokens).
pub(crate) fn step(
    model: &mut gpt2_kv::Model,
    cache: &mut Cache,
    token: i64,
) -> Result<[f32; VOCAB], sinter_rt::Error> {
    let (past, total) = (cache.len, cache.len + 1);
    let mask = [1i64; MAX_PAST + 1];
    let dims = gpt2_kv::Dims { past };
    let k = &cache.kv;
    // Past the bound the model refuses `dims` before it reads the (then short) mask.
    let mask = mask.get(..total).unwrap_or(&mask);
    let (logits, p0k, p0v, p1k, p1v) =
        model.run_slices(dims, &[token], mask, &k[0], &k[1], &k[2], &k[3])?;
    let logits = *logits;
    // The presents hold past + 1 positions: they are the next step's past.
    for (slot, present) in cache.kv.iter_mut().zip([p0k, p0v, p1k, p1v]) {
        debug_assert_eq!(present.shape(), [1, HEADS, total, HEAD_DIM]);
        slot.clear();
        slot.extend_from_slice(present.data());
    }
    cache.len = total;
    Ok(logits)
}

/// A reference tensor ONNX Runtime saved beside the bundled decoder
/// (`tests/data/bounded_kv/gpt2_kv/decode/`, `scripts/make_kv_decoder.py`).
pub(crate) fn reference(file: &str) -> sinter::ir::Tensor {
    decoding::reference_in("tests/data/bounded_kv/gpt2_kv/decode", file)
}
