#!/usr/bin/env python3
"""A Llama-shaped decoder as ONNX Runtime GenAI's model builder writes it
(`onnxruntime_genai.models.builder`, float32, CPU): packed QKV projections into
`com.microsoft:GroupQueryAttention` with rotary embeddings and grouped heads,
`SkipSimplifiedLayerNormalization`, `SimplifiedLayerNormalization`, SiLU MLPs. Random
initialisation (seeded), 2 layers, 32 wide, 4 query heads and 2 key/value heads of 16.

Two cases in the ONNX test-data layout with ORT 1.32's outputs, one model file each (weights
inlined):

- `genai_llama_prompt`: a 5-token prompt on an empty cache (past length 0);
- `genai_llama_decode`: the next token, its past the prompt step's present caches as ORT
  computed them (past 5, total 6); and in `decode/`, 16 random tokens ORT decoded one at a
  time from an empty cache (the cache growing a row a step): the tokens and every step's
  logits, which examples/genai_decoder and tests/genai_decoder.rs replay with one build of a
  fixed-capacity cache.

    /tmp/venv/bin/python scripts/make_genai_cases.py tests/data/contrib
    /tmp/venv/bin/python scripts/make_genai_cases.py /tmp/genai_base --size base

`--size base` writes benchmark cases instead (kept out of git): a 4-layer, 512-wide model
(8 query and 2 key/value heads of 64, vocabulary 4096), one decoding step at past lengths 64
and 512 (`genai_llama_base_p64`, `_p512`) with random past caches, and the same steps in one
build's shapes (`genai_llama_base_cap1024_t64`, `_t512`: a 1023-row cache holding 64 or 512
tokens, the mask carrying the length), for `scripts/bench_vs_ort.py` (tokens per second at
that length is one over the step's time).

Needs `onnxruntime-genai` (the builder), `transformers`, `tokenizers` and torch in the venv.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from onnx import numpy_helper as nh
from tokenizers import Tokenizer, models, pre_tokenizers

SIZES = {
    "tiny": dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 max_position_embeddings=64),
    "base": dict(vocab_size=4096, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                 max_position_embeddings=1024),
}


def build(tmp, size):
    """The builder's model.onnx for a random Llama saved in `tmp`, weights inlined."""
    cfg = transformers.LlamaConfig(**SIZES[size])
    vocab = cfg.vocab_size
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # random-init norms are all ones; make them matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape))
    hf = os.path.join(tmp, "hf")
    model.save_pretrained(hf)
    # The builder writes the tokenizer files too; a word-level one is enough.
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="t0", bos_token="t1", eos_token="t2").save_pretrained(hf)
    out = os.path.join(tmp, "out")
    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", hf, "-o", out,
                    "-p", "fp32", "-e", "cpu", "-c", os.path.join(tmp, "cache")],
                   check=True, stdout=subprocess.DEVNULL)
    inlined = os.path.join(tmp, "model.onnx")
    onnx.save(onnx.load(os.path.join(out, "model.onnx")), inlined)
    return inlined


def write_case(case_dir, model_path, feeds):
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(os.path.join(case_dir, "test_data_set_0"))
    shutil.copyfile(model_path, os.path.join(case_dir, "model.onnx"))
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    outputs = sess.run(None, feeds)
    data = os.path.join(case_dir, "test_data_set_0")
    for k, name in enumerate(names):
        onnx.save_tensor(nh.from_array(feeds[name], name), os.path.join(data, f"input_{k}.pb"))
    for k, (o, y) in enumerate(zip(sess.get_outputs(), outputs)):
        onnx.save_tensor(nh.from_array(y, o.name), os.path.join(data, f"output_{k}.pb"))
    print(case_dir)
    return dict(zip([o.name for o in sess.get_outputs()], outputs))


def decode(folder, model, pasts, rng, vocab, kv, head, steps=16):
    """ORT decoding `steps` random tokens one at a time from an empty cache, each step's
    presents the next step's past (the cache growing by one row a step): the tokens and every
    step's logits, for examples/genai_decoder and tests/genai_decoder.rs."""
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in sess.get_outputs()]
    tokens = rng.integers(0, vocab, steps).astype(np.int64)
    cache = {p: np.zeros((1, kv, 0, head), np.float32) for p in pasts}
    logits = []
    for t, token in enumerate(tokens):
        feeds = {"input_ids": np.array([[token]], np.int64),
                 "attention_mask": np.ones((1, t + 1), np.int64), **cache}
        results = dict(zip(outputs, sess.run(None, feeds)))
        logits.append(results["logits"].reshape(-1))
        cache = {p: results[p.replace("past_key_values", "present")] for p in pasts}
    os.makedirs(folder, exist_ok=True)
    onnx.save_tensor(nh.from_array(tokens, "tokens"), os.path.join(folder, "tokens.pb"))
    onnx.save_tensor(nh.from_array(np.stack(logits), "logits"), os.path.join(folder, "logits.pb"))
    print(folder)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    args = ap.parse_args()
    out, size = args.out, SIZES[args.size]
    vocab, kv, head = size["vocab_size"], size["num_key_value_heads"], size["head_dim"]
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory(prefix="genai_") as tmp:
        model = build(tmp, args.size)
        graph = onnx.load(model).graph
        pasts = [i.name for i in graph.input if i.name.startswith("past_key_values")]
        if args.size == "base":
            for past in (64, 512):
                feeds = {"input_ids": rng.integers(0, vocab, (1, 1)).astype(np.int64),
                         "attention_mask": np.ones((1, past + 1), np.int64)}
                feeds.update({p: rng.standard_normal((1, kv, past, head)).astype(np.float32)
                              for p in pasts})
                write_case(os.path.join(out, f"genai_llama_base_p{past}"), model, feeds)
            # One build for every length: a 1023-row cache holding `held` tokens, the mask
            # carrying the length (the attention reads only those rows).
            for held in (64, 512):
                mask = np.zeros((1, 1024), np.int64)
                mask[0, :held + 1] = 1
                feeds = {"input_ids": rng.integers(0, vocab, (1, 1)).astype(np.int64),
                         "attention_mask": mask}
                for p in pasts:
                    cache = np.zeros((1, kv, 1023, head), np.float32)
                    cache[:, :, :held] = rng.standard_normal((1, kv, held, head))
                    feeds[p] = cache
                write_case(os.path.join(out, f"genai_llama_base_cap1024_t{held}"), model, feeds)
            return
        prompt = rng.integers(0, vocab, (1, 5)).astype(np.int64)
        feeds = {"input_ids": prompt, "attention_mask": np.ones((1, 5), np.int64)}
        feeds.update({p: np.zeros((1, kv, 0, head), np.float32) for p in pasts})
        results = write_case(os.path.join(out, "genai_llama_prompt"), model, feeds)
        feeds = {"input_ids": rng.integers(0, vocab, (1, 1)).astype(np.int64),
                 "attention_mask": np.ones((1, 6), np.int64)}
        feeds.update({p: results[p.replace("past_key_values", "present")] for p in pasts})
        case = os.path.join(out, "genai_llama_decode")
        write_case(case, model, feeds)
        decode(os.path.join(case, "decode"), model, pasts, rng, vocab, kv, head)


if __name__ == "__main__":
    main()
