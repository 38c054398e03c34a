//! A Llama-shaped decoder from ONNX Runtime GenAI's model builder (tests/data/contrib,
//! scripts/make_genai_cases.py), compiled once with a 15-row past cache and run token by
//! token with the cache carried between runs: every step's logits match those ONNX Runtime
//! computed with a cache that grew a row a step, and invalid lengths are typed errors.

#[path = "../examples/genai_decoder/decode.rs"]
mod decode;

use decode::{argmax, genai_llama, reference, step, Cache, StepError, CAPACITY, VOCAB};

#[test]
fn every_step_matches_ort_with_the_cache_carried_between_runs() {
    let tokens = reference("tokens.pb").to_i64s().expect("int64 tokens");
    let logits = reference("logits.pb").as_f32().expect("float logits");
    assert_eq!(tokens.len(), CAPACITY + 1);
    assert_eq!(logits.len(), tokens.len() * VOCAB);
    let mut model = genai_llama::Model::new();
    let mut cache = Cache::new();
    for (t, (&token, want)) in tokens.iter().zip(logits.chunks_exact(VOCAB)).enumerate() {
        let got = step(&mut model, &mut cache, token).expect("within the capacity");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-3 * w.abs(),
                "step {t} logit {i}: got {g}, want {w}"
            );
        }
        assert_eq!(argmax(&got), argmax(want), "step {t}");
    }
    assert_eq!(cache.len(), CAPACITY + 1);
    assert!(matches!(
        step(&mut model, &mut cache, 3),
        Err(StepError::Full)
    ));
}

#[test]
fn a_mask_longer_than_the_cache_holds_is_an_error() {
    // Ones past the cache's rows make seqlens_k reach beyond the present caches: the
    // attention refuses them instead of reading past the cache.
    let mut model = genai_llama::Model::new();
    let past = vec![0.0f32; 2 * CAPACITY * 16];
    let mask = [2i64; CAPACITY + 1];
    match model.run_slices(&[1], &mask, &past, &past, &past, &past) {
        Err(sinter_rt::Error::InvalidValue { reason, .. }) => {
            assert!(reason.contains("seqlens_k"), "{reason}")
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}
