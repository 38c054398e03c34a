//! Token-by-token decoding with a fixed-capacity KV cache, carried between runs of one
//! compiled model (`genai_llama`, a Llama-shaped decoder from ONNX Runtime GenAI's model
//! builder, compiled for a past of [`CAPACITY`] rows). Shared by the example and
//! `tests/genai_decoder.rs`.
//!
//! The model's `GroupQueryAttention` reads each entry's length from the attention mask (its
//! ones), not from the cache's shape: a step passes the whole cache with the first `len` rows
//! filled and a mask of `len + 1` ones, and the attention reads only those rows. So one build
//! serves every length up to the capacity, and a step's cost follows the tokens so far.

#[path = "../shared/decoding.rs"]
mod decoding;
pub(crate) use decoding::argmax;

sinter_rt::include_onnx!(
    "tests/data/contrib/genai_llama_decode/model.onnx",
    dims(
        batch_size = 1,
        sequence_length = 1,
        past_sequence_length = 15,
        total_sequence_length = 16,
        kv_cache_dim = 16
    ),
    name = genai_llama
);

/// Layers, key/value heads, head width and vocabulary of the bundled decoder.
const LAYERS: usize = 2;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 16;
/// Entries in the logits.
pub(crate) const VOCAB: usize = 128;
/// Rows of the past cache the model was compiled for (`past_sequence_length`); a step's
/// present caches have one more.
pub(crate) const CAPACITY: usize = 15;

/// Why a step did not run.
#[derive(Debug)]
pub(crate) enum StepError {
    /// The cache holds [`CAPACITY`] + 1 tokens already.
    Full,
    /// The model refused its inputs.
    Model(sinter_rt::Error),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Full => write!(f, "the cache is full ({} tokens)", CAPACITY + 1),
            StepError::Model(e) => write!(f, "the model refused the step: {e}"),
        }
    }
}

impl std::error::Error for StepError {}

/// The keys and values of every layer, `[KV_HEADS, CAPACITY, HEAD_DIM]` each, the first `len`
/// rows of each head filled.
pub(crate) struct Cache {
    kv: Vec<Vec<f32>>,
    len: usize,
}

impl Cache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        Self {
            kv: vec![vec![0.0; KV_HEADS * CAPACITY * HEAD_DIM]; 2 * LAYERS],
            len: 0,
        }
    }

    /// Tokens in the cache.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Runs one step: feeds `token` after the cached ones, returns the next-token logits and
/// stores the step's keys and values (row `len` of the present caches) in `cache`.
///
/// # Errors
/// [`StepError::Full`] when `CAPACITY + 1` tokens have been fed.
pub(crate) fn step(
    model: &mut genai_llama::Model,
    cache: &mut Cache,
    token: i64,
) -> Result<[f32; VOCAB], StepError> {
    let len = cache.len;
    if len > CAPACITY {
        return Err(StepError::Full);
    }
    let mut mask = [0i64; CAPACITY + 1];
    mask[..=len].fill(1);
    let k = &cache.kv;
    let (logits, k0, k1, v0, v1) = model
        .run_slices(&[token], &mask, &k[0], &k[1], &k[2], &k[3])
        .map_err(StepError::Model)?;
    let logits = *logits;
    if len < CAPACITY {
        // Only row `len` of each head is new; the rows before it are the past as passed.
        for (slot, present) in cache.kv.iter_mut().zip([k0, k1, v0, v1]) {
            for h in 0..KV_HEADS {
                let row = &present[(h * (CAPACITY + 1) + len) * HEAD_DIM..][..HEAD_DIM];
                slot[(h * CAPACITY + len) * HEAD_DIM..][..HEAD_DIM].copy_from_slice(row);
            }
        }
    }
    cache.len = len + 1;
    Ok(logits)
}

/// A reference tensor ONNX Runtime saved beside the bundled decoder
/// (`tests/data/contrib/genai_llama_decode/decode/`, `scripts/make_genai_cases.py`).
pub(crate) fn reference(file: &str) -> sinter::ir::Tensor {
    decoding::reference_in("tests/data/contrib/genai_llama_decode/decode", file)
}
