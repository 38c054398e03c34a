#!/usr/bin/env python3
"""A GPT-2-shaped decoder step with a KV cache, as `transformers` and the torch exporter write
it: inputs `input_ids [1, 1]`, `attention_mask [1, total]` and each layer's past key and value
`[1, heads, past, head_dim]`; outputs the logits and each layer's present key and value
`[1, heads, total, head_dim]` (total = past + 1). Random initialisation (seeded).

One model file, compiled once by sinter with `--dim 'past<=64' --dim 'total<=65'`; data sets
with ONNX Runtime's outputs at past lengths 0, 17 and 64, for `sinter verify`, and `decode/`:
a 16-token sequence fed one token at a time by ORT from an empty cache (the tokens and every
step's logits), which `examples/kv_decoder.rs` and `tests/kv_decoder.rs` replay with sinter:

    /tmp/venv/bin/python scripts/make_kv_decoder.py tests/data/bounded_kv
    /tmp/venv/bin/python scripts/make_kv_decoder.py /tmp/kv_base --size base

`--size base` writes a 4-layer, 256-wide model (positions up to 1088) for benchmarks instead,
kept out of git: one folder per past length (`gpt2_kv_p16`, `_p256`, `_p1008`) sharing the
model, each a one-step case for `scripts/bench_vs_ort.py` with
`--sinter-arg=--dim=past<=1024 --sinter-arg=--dim=total<=1025` (tokens per second at that
cache length is one over the step's latency).
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from onnx import numpy_helper as nh

SIZES = {
    "tiny": dict(vocab=128, embd=32, layers=2, heads=4, positions=128, pasts=[0, 17, 64]),
    "base": dict(vocab=1024, embd=256, layers=4, heads=8, positions=1088, pasts=[16, 256, 1008]),
}


class Step(torch.nn.Module):
    """One decoding step: the model with its cache passed as plain tensors."""

    def __init__(self, model, layers):
        super().__init__()
        self.model, self.layers = model, layers

    def forward(self, input_ids, attention_mask, *past):
        cache = transformers.DynamicCache()
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         past_key_values=cache, use_cache=True)
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/bounded_kv"
    size = sys.argv[sys.argv.index("--size") + 1] if "--size" in sys.argv else "tiny"
    p = SIZES[size]
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=p["vocab"], n_embd=p["embd"], n_layer=p["layers"],
                                  n_head=p["heads"], n_positions=p["positions"])
    model = transformers.GPT2LMHeadModel(cfg).eval()
    layers, heads, dim = p["layers"], p["heads"], p["embd"] // p["heads"]
    names = [f"past_{i}_{kv}" for i in range(layers) for kv in ("key", "value")]
    outs = ["logits"] + [f"present_{i}_{kv}" for i in range(layers) for kv in ("key", "value")]
    axes = {"attention_mask": {1: "total"}, **{n: {2: "past"} for n in names},
            **{n: {2: "total"} for n in outs[1:]}}
    d = os.path.join(out, "gpt2_kv")
    os.makedirs(d, exist_ok=True)
    example = (torch.zeros(1, 1, dtype=torch.int64), torch.ones(1, 6, dtype=torch.int64),
               *[torch.zeros(1, heads, 5, dim) for _ in names])
    path = os.path.join(d, "model.onnx")
    torch.onnx.export(Step(model, layers), example, path, input_names=["input_ids", "attention_mask"] + names,
                      output_names=outs, dynamic_axes=axes, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for k, past in enumerate(p["pasts"]):
        feeds = {"input_ids": rng.integers(0, p["vocab"], (1, 1)).astype(np.int64),
                 "attention_mask": np.ones((1, past + 1), np.int64)}
        for n in names:
            feeds[n] = rng.standard_normal((1, heads, past, dim)).astype(np.float32)
        results = sess.run(None, feeds)
        sd = os.path.join(d, f"test_data_set_{k}")
        if size == "base":
            per = os.path.join(out, f"gpt2_kv_p{past}")
            os.makedirs(per, exist_ok=True)
            if not os.path.exists(os.path.join(per, "model.onnx")):
                os.symlink(os.path.abspath(path), os.path.join(per, "model.onnx"))
            sd = os.path.join(per, "test_data_set_0")
        os.makedirs(sd, exist_ok=True)
        for i, (name, v) in enumerate(feeds.items()):
            onnx.save_tensor(nh.from_array(v, name), os.path.join(sd, f"input_{i}.pb"))
        for i, (name, v) in enumerate(zip(outs, results)):
            onnx.save_tensor(nh.from_array(v, name), os.path.join(sd, f"output_{i}.pb"))
    if size == "tiny":
        # A 16-token sequence fed one token at a time from an empty cache (random weights
        # make greedy decoding repeat one token, so the sequence is fixed), with the logits
        # ORT gives at every step, for the example and test that decode with sinter.
        fed = [int(t) for t in rng.integers(0, p["vocab"], 16)]
        past = [np.zeros((1, heads, 0, dim), np.float32) for _ in names]
        logits = []
        for t, token in enumerate(fed):
            feeds = {"input_ids": np.array([[token]], np.int64),
                     "attention_mask": np.ones((1, t + 1), np.int64),
                     **dict(zip(names, past))}
            results = sess.run(None, feeds)
            logits.append(results[0][0, -1])
            past = results[1:]
        sd = os.path.join(d, "decode")
        os.makedirs(sd, exist_ok=True)
        onnx.save_tensor(nh.from_array(np.array(fed, np.int64), "tokens"), os.path.join(sd, "tokens.pb"))
        onnx.save_tensor(nh.from_array(np.stack(logits), "logits"), os.path.join(sd, "logits.pb"))
    print("wrote", d, "past lengths", p["pasts"])


if __name__ == "__main__":
    main()
