//! A GPT-2-shaped decoder with a KV cache (tests/data/bounded_kv, scripts/make_kv_decoder.py),
//! compiled once with its cache length bounded and run token by token, the cache carried
//! between runs: every step's logits match ONNX Runtime's, and a cache past the bound is a
//! typed error.

#[path = "../examples/kv_decoder/decode.rs"]
mod decode;

use decode::{argmax, reference, step, Cache, MAX_PAST, VOCAB};

sinter_rt::include_onnx!(
    "tests/data/bounded_kv/gpt2_kv/model.onnx",
    dims(past <= 64, total = past + 1)
);

#[test]
fn every_step_matches_ort_with_the_cache_carried_between_runs() {
    let tokens = reference("tokens.pb").to_i64s().expect("int64 tokens");
    let logits = reference("logits.pb").as_f32().expect("float logits");
    assert_eq!(logits.len(), tokens.len() * VOCAB);
    let mut model = gpt2_kv::Model::new();
    let mut cache = Cache::new();
    let mut all = Vec::new();
    for (t, (&token, want)) in tokens.iter().zip(logits.chunks_exact(VOCAB)).enumerate() {
        let got = step(&mut model, &mut cache, token).expect("within the bound");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-3 * w.abs(),
                "step {t} logit {i}: got {g}, want {w}"
            );
        }
        assert_eq!(argmax(&got), argmax(want), "step {t}");
        all.push(got);
    }
    // A second model replaying the steps gives the same bits.
    let (mut again, mut cache) = (gpt2_kv::Model::new(), Cache::new());
    for (&token, first) in tokens.iter().zip(&all) {
        assert_eq!(&step(&mut again, &mut cache, token).expect("runs"), first);
    }
}

#[test]
fn a_cache_past_the_bound_is_an_error() {
    let mut model = gpt2_kv::Model::new();
    let mut cache = Cache::new();
    while cache.len() <= MAX_PAST {
        step(&mut model, &mut cache, 3).expect("within the bound");
    }
    match step(&mut model, &mut cache, 3) {
        Err(sinter_rt::Error::DimOutOfRange {
            dim, value, max, ..
        }) => {
            assert_eq!((dim, value, max), ("past", MAX_PAST + 1, MAX_PAST));
        }
        other => panic!("expected DimOutOfRange, got {other:?}"),
    }
}
