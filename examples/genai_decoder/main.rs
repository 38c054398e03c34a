//! A Llama-shaped decoder from ONNX Runtime GenAI's model builder, with a KV cache: one build
//! for every length up to 16 tokens.
//!
//! `tests/data/contrib/genai_llama_decode/model.onnx` is what `onnxruntime_genai.models.builder`
//! writes for a 2-layer Llama (random weights): packed QKV projections into
//! `com.microsoft:GroupQueryAttention` with rotary embeddings and grouped heads. It is
//! compiled with a past cache of 15 rows; each step passes the cache and a mask of one more
//! ones than the tokens so far, and the attention reads only those rows. The example feeds
//! the 16 tokens ONNX Runtime decoded with a cache that grew a row a step
//! (`scripts/make_genai_cases.py`), checks every step's logits against ORT's, and reports
//! tokens per second.
//!
//! `cargo run --release --example genai_decoder`

mod decode;

use decode::{argmax, genai_llama, reference, step, Cache, StepError, VOCAB};

fn main() -> Result<(), StepError> {
    let tokens = reference("tokens.pb").to_i64s().expect("int64 tokens");
    let logits = reference("logits.pb").as_f32().expect("float logits");
    let mut model = genai_llama::Model::new();
    let mut cache = Cache::new();
    let mut worst = 0.0f32;
    let start = std::time::Instant::now();
    for (t, (&token, want)) in tokens.iter().zip(logits.chunks_exact(VOCAB)).enumerate() {
        let got = step(&mut model, &mut cache, token)?;
        for (&g, &w) in got.iter().zip(want) {
            worst = worst.max((g - w).abs() / (1.0 + w.abs()));
        }
        println!(
            "step {t:2}: fed {token:3}, most likely next {:3} (ORT: {})",
            argmax(&got),
            argmax(want)
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!("largest difference from ORT's logits: {worst:.2e} (relative)");
    println!(
        "{} tokens in {:.2} ms ({:.0} tokens/s, printing included)",
        cache.len(),
        secs * 1e3,
        cache.len() as f64 / secs
    );
    // One more token does not fit the cache.
    match step(&mut model, &mut cache, 3) {
        Err(e) => println!("a 17th token: {e}"),
        Ok(_) => println!("unexpected: a 17th token ran"),
    }
    Ok(())
}
