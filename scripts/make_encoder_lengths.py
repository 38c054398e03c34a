#!/usr/bin/env python3
"""Transformer encoders exported with a dynamic sequence length, as `transformers` and the
torch exporter write them (the mask and position ids built by Shape/Gather/Range/Expand
arithmetic on the run-time length), with ONNX Runtime's outputs at several lengths from one
model file: the cases `sinter verify --dim 'seq<=64'` checks with one build.

- `distilbert_seq`: a 2-layer, 32-wide DistilBERT (random initialisation);
- `bert_seq`: a 2-layer, 32-wide BERT with token type ids.

Data sets at lengths 5, 17 and 64; the 17-token set pads its last 4 tokens (attention mask 0).

    /tmp/venv/bin/python scripts/make_encoder_lengths.py tests/data/bounded_seq
    /tmp/venv/bin/python scripts/make_encoder_lengths.py /tmp/encoders --size base

`--size base` writes 6-layer, 384-wide models for benchmarks instead (kept out of git), one
folder per length sharing the model, as `scripts/bench_bounded.py` reads them:
`NAME_n32/` and `NAME_n128/`.
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
    "tiny": dict(layers=2, hidden=32, heads=4, inter=64, vocab=128, positions=64, lengths=[5, 17, 64]),
    "base": dict(layers=6, hidden=384, heads=12, inter=1536, vocab=30522, positions=512, lengths=[32, 128]),
}


class ByName(torch.nn.Module):
    """Calls the model with its inputs by name (positional orders differ between models)."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        return self.model(**dict(zip(self.names, args))).last_hidden_state


def export(name, model, inputs, path):
    names = list(inputs)
    model = ByName(model, names)
    axes = {n: {1: "seq"} for n in names}
    axes["last_hidden_state"] = {1: "seq"}
    torch.onnx.export(
        model, tuple(inputs.values()), path, input_names=names,
        output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False,
    )


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/bounded_seq"
    size = sys.argv[sys.argv.index("--size") + 1] if "--size" in sys.argv else "tiny"
    p = SIZES[size]
    torch.manual_seed(0)
    models = {
        "distilbert_seq": transformers.DistilBertModel(transformers.DistilBertConfig(
            vocab_size=p["vocab"], dim=p["hidden"], n_layers=p["layers"], n_heads=p["heads"],
            hidden_dim=p["inter"], max_position_embeddings=p["positions"])),
        "bert_seq": transformers.BertModel(transformers.BertConfig(
            vocab_size=p["vocab"], hidden_size=p["hidden"], num_hidden_layers=p["layers"],
            num_attention_heads=p["heads"], intermediate_size=p["inter"],
            max_position_embeddings=p["positions"]), add_pooling_layer=False),
    }
    for name, model in models.items():
        model.eval()
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        bert = name.startswith("bert")

        def feeds(n, pad=0, seed=0):
            rng = np.random.default_rng(seed)
            ids = rng.integers(0, p["vocab"], (1, n)).astype(np.int64)
            mask = np.ones((1, n), np.int64)
            if pad:
                mask[0, n - pad:] = 0
            f = {"input_ids": ids, "attention_mask": mask}
            if bert:
                f["token_type_ids"] = (np.arange(n) >= n // 2).astype(np.int64)[None, :]
            return f

        example = {k: torch.from_numpy(v) for k, v in feeds(8).items()}
        export(name, model, example, os.path.join(d, "model.onnx"))
        sess = ort.InferenceSession(os.path.join(d, "model.onnx"), providers=["CPUExecutionProvider"])
        for k, n in enumerate(p["lengths"]):
            f = feeds(n, pad=4 if n == 17 else 0, seed=k + 1)
            (y,) = sess.run(None, f)
            if size == "base":
                per = os.path.join(out, f"{name}_n{n}")
                os.makedirs(per, exist_ok=True)
                if not os.path.exists(os.path.join(per, "model.onnx")):
                    os.symlink(os.path.abspath(os.path.join(d, "model.onnx")), os.path.join(per, "model.onnx"))
                sd = os.path.join(per, "test_data_set_0")
            else:
                sd = os.path.join(d, f"test_data_set_{k}")
            os.makedirs(sd, exist_ok=True)
            for i, (iname, v) in enumerate(f.items()):
                onnx.save_tensor(nh.from_array(v, iname), os.path.join(sd, f"input_{i}.pb"))
            onnx.save_tensor(nh.from_array(y, "last_hidden_state"), os.path.join(sd, "output_0.pb"))
        print("wrote", d, "lengths", p["lengths"])


if __name__ == "__main__":
    main()
