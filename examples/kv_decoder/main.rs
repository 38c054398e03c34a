//! A GPT-2-shaped decoder with a KV cache: one build for every cache length up to 64.
//!
//! `tests/data/bounded_kv/gpt2_kv/model.onnx` is a 2-layer decoder step exported from
//! `transformers` (random weights) with its past keys and values as inputs of a dynamic
//! length. `include_onnx!` compiles it once with that length bounded and the mask's length
//! tied to it (`dims(past <= 64, total = past + 1)`); each step passes the cache's length in
//! `Dims`, and the step's presents become the next step's past. The example feeds the 16-token sequence ONNX Runtime decoded
//! (`scripts/make_kv_decoder.py`), checks every step's logits against ORT's, then decodes
//! greedily on its own until the cache is full and reports tokens per second.
//!
//! `cargo run --release --example kv_decoder`

mod decode;

use decode::{argmax, reference, step, Cache, MAX_PAST, VOCAB};

sinter_rt::include_onnx!(
    "tests/data/bounded_kv/gpt2_kv/model.onnx",
    dims(past <= 64, total = past + 1)
);

fn main() -> Result<(), sinter_rt::Error> {
    let tokens = reference("tokens.pb").to_i64s().expect("int64 tokens");
    let logits = reference("logits.pb").as_f32().expect("float logits");
    let mut model = gpt2_kv::Model::new();
    let mut cache = Cache::new();
    let mut worst = 0.0f32;
    for (t, (&token, want)) in tokens.iter().zip(logits.chunks_exact(VOCAB)).enumerate() {
        let got = step(&mut model, &mut cache, token)?;
        for (&g, &w) in got.iter().zip(want) {
            worst = worst.max((g - w).abs() / (1.0 + w.abs()));
        }
        let next = argmax(&got);
        println!(
            "step {t:2}: fed {token:3}, most likely next {next:3} (ORT: {})",
            argmax(want)
        );
    }
    println!("largest difference from ORT's logits: {worst:.2e} (relative)");

    // Keep decoding greedily until the cache is full, and time it.
    let mut token = i64::try_from(argmax(&step(&mut model, &mut cache, 7)?)).unwrap_or(0);
    let start = std::time::Instant::now();
    let mut produced = 0;
    while cache.len() <= MAX_PAST {
        token = i64::try_from(argmax(&step(&mut model, &mut cache, token)?)).unwrap_or(0);
        produced += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{produced} more tokens, to a cache of {}: {:.0} tokens/s",
        cache.len(),
        f64::from(produced) / secs
    );
    // One more token does not fit the bound: a typed error, not a panic.
    match step(&mut model, &mut cache, token) {
        Err(e) => println!("past the bound: {e}"),
        Ok(_) => println!("unexpected: a step past the bound ran"),
    }
    Ok(())
}
