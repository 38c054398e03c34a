#!/usr/bin/env python3
"""Encoders exported by the current `transformers` (its masks built from `Range`, `Min`,
`Where`, `ConstantOfShape` ... on the run-time shape) with BOTH the batch `B` and the sequence
length `S` dynamic, and ONNX Runtime's outputs at several (B, S) from one model file: the
cases `sinter verify --dim 'B<=2' --dim 'S<=16'` checks with one build (tests/data/bounded_two).

- `t5_encoder`: a 1-layer, 32-wide T5 encoder (relative position buckets), random weights;
- `bert_mean_pool`: a 1-layer, 32-wide BERT (its token types gathered by `GatherElements` from
  a buffer expanded to the batch) with a sentence embedding's masked mean pooling (`ReduceSum`
  over the length, divided by the mask's count).

Data sets at (B, S) = (1, 5), (2, 9) with the second row's last 3 tokens padded, and (2, 16).

Also `vit_tiny` under tests/data/bounded (checked with `--dim 'N<=8'` at N = 1, 3, 8): a
1-layer torchvision VisionTransformer on 32 x 32 images with a dynamic batch N, whose
attention torch exports with `x.shape[:-1]`-style slices of shape vectors and a class token
concatenated to the patches.

    /tmp/venv/bin/python scripts/make_two_dim_encoders.py [OUT_DIR]   (default tests/data/bounded_two)
    /tmp/venv/bin/python scripts/make_two_dim_encoders.py /tmp/encoders2 --size base

`--size base` writes a 6-layer, 384-wide mean-pooled BERT for benchmarks instead (kept out of
git): one folder per length at batch 1 sharing the model, `bert_mean_pool_n32/` and
`bert_mean_pool_n128/`, as `scripts/bench_bounded.py` reads them (`--dim-name S --fixed-dim
B=1 --sizes 32,128 --max 128`).

Needs torch, transformers, onnx, onnxruntime and numpy; runs offline (random initialisation).
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from onnx import numpy_helper as nh

VOCAB = 64


class Encoder(torch.nn.Module):
    """The encoder's last hidden state from ids and mask."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class MeanPool(torch.nn.Module):
    """A sentence embedding: the mean of the last hidden state over the unmasked tokens."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        h = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).expand(h.size()).float()
        return (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)


def write(out, name, module, output, output_axes):
    """Exports `module` with B and S dynamic and saves ORT's outputs at three (B, S)."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    axes = {"input_ids": {0: "B", 1: "S"}, "attention_mask": {0: "B", 1: "S"}, output: output_axes}
    example = (torch.zeros(2, 8, dtype=torch.int64), torch.ones(2, 8, dtype=torch.int64))
    torch.onnx.export(module, example, path, input_names=["input_ids", "attention_mask"],
                      output_names=[output], dynamic_axes=axes, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for k, (b, s, pad) in enumerate([(1, 5, 0), (2, 9, 3), (2, 16, 0)]):
        rng = np.random.default_rng(k + 1)
        ids = rng.integers(0, VOCAB, (b, s)).astype(np.int64)
        mask = np.ones((b, s), np.int64)
        if pad:
            mask[-1, s - pad:] = 0
        (y,) = sess.run(None, {"input_ids": ids, "attention_mask": mask})
        sd = os.path.join(d, f"test_data_set_{k}")
        os.makedirs(sd, exist_ok=True)
        onnx.save_tensor(nh.from_array(ids, "input_ids"), os.path.join(sd, "input_0.pb"))
        onnx.save_tensor(nh.from_array(mask, "attention_mask"), os.path.join(sd, "input_1.pb"))
        onnx.save_tensor(nh.from_array(y, output), os.path.join(sd, "output_0.pb"))
    print("wrote", d)


def write_base(out):
    """The benchmark model: 6 layers, 384 wide, one folder per length at batch 1."""
    bert = transformers.BertModel(transformers.BertConfig(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
        add_pooling_layer=False).eval()
    base = os.path.join(out, "bert_mean_pool")
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, "model.onnx")
    axes = {"input_ids": {0: "B", 1: "S"}, "attention_mask": {0: "B", 1: "S"},
            "sentence_embedding": {0: "B"}}
    example = (torch.zeros(1, 8, dtype=torch.int64), torch.ones(1, 8, dtype=torch.int64))
    torch.onnx.export(MeanPool(bert), example, path, input_names=["input_ids", "attention_mask"],
                      output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=17,
                      dynamo=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for s in [32, 128]:
        case = os.path.join(out, f"bert_mean_pool_n{s}")
        sd = os.path.join(case, "test_data_set_0")
        os.makedirs(sd, exist_ok=True)
        if not os.path.exists(os.path.join(case, "model.onnx")):
            os.symlink(os.path.abspath(path), os.path.join(case, "model.onnx"))
        ids = np.random.default_rng(s).integers(0, 30522, (1, s)).astype(np.int64)
        mask = np.ones((1, s), np.int64)
        (y,) = sess.run(None, {"input_ids": ids, "attention_mask": mask})
        onnx.save_tensor(nh.from_array(ids, "input_ids"), os.path.join(sd, "input_0.pb"))
        onnx.save_tensor(nh.from_array(mask, "attention_mask"), os.path.join(sd, "input_1.pb"))
        onnx.save_tensor(nh.from_array(y, "sentence_embedding"), os.path.join(sd, "output_0.pb"))
    print("wrote", base, "lengths 32, 128")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/bounded_two"
    torch.manual_seed(0)
    if "--size" in sys.argv and sys.argv[sys.argv.index("--size") + 1] == "base":
        write_base(out)
        return
    t5 = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=VOCAB, d_model=32, d_ff=64, num_heads=4, d_kv=8, num_layers=1,
        relative_attention_num_buckets=8, relative_attention_max_distance=16)).eval()
    write(out, "t5_encoder", Encoder(t5), "last_hidden_state", {0: "B", 1: "S"})
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=32), add_pooling_layer=False).eval()
    write(out, "bert_mean_pool", MeanPool(bert), "sentence_embedding", {0: "B"})
    write_vit(os.path.join(out, "..", "bounded", "vit_tiny"))


def write_vit(d):
    """A tiny ViT with a dynamic batch N and ORT's outputs at N = 1, 3, 8."""
    import torchvision
    vit = torchvision.models.vision_transformer.VisionTransformer(
        image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=5).eval()
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    torch.onnx.export(vit, (torch.zeros(2, 3, 32, 32),), path, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                      opset_version=17, dynamo=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for k, n in enumerate([1, 3, 8]):
        x = np.random.default_rng(80 + k).standard_normal((n, 3, 32, 32)).astype(np.float32)
        (y,) = sess.run(None, {"x": x})
        sd = os.path.join(d, f"test_data_set_{k}")
        os.makedirs(sd, exist_ok=True)
        onnx.save_tensor(nh.from_array(x, "x"), os.path.join(sd, "input_0.pb"))
        onnx.save_tensor(nh.from_array(y, "logits"), os.path.join(sd, "output_0.pb"))
    print("wrote", d)


if __name__ == "__main__":
    main()
