#!/usr/bin/env python3
"""Writes one scaled dot-product attention layer as torch exports it (per-head Reshape and
Transpose of Q, K and V, MatMul, scale, Softmax, MatMul, heads merged back), at BERT-base
sizes (12 heads of 64) and three sequence lengths, with ONNX Runtime's outputs: the cases
BENCHMARKS.md times fuse_attention on ("Fused attention, session 18").

    python3 scripts/make_attention_cases.py OUT_DIR     (needs onnx, onnxruntime, numpy)

Then, for example, `sinter bench OUT_DIR/seq128 --threads 1` (and the same with the previous
build for the unfused graph).
"""
import os, sys

import numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh

N = h.make_node


def make(out, name, b, s, e, heads, rng):
    d = e // heads
    nodes = [N("Reshape", ["q0", "heads"], ["q2"]), N("Transpose", ["q2"], ["q"], perm=[0, 2, 1, 3]),
             N("Reshape", ["k0", "heads"], ["k2"]), N("Transpose", ["k2"], ["kt"], perm=[0, 2, 3, 1]),
             N("Reshape", ["v0", "heads"], ["v2"]), N("Transpose", ["v2"], ["v"], perm=[0, 2, 1, 3]),
             N("MatMul", ["q", "kt"], ["s0"]), N("Mul", ["s0", "sc"], ["s1"]), N("Softmax", ["s1"], ["p"], axis=-1),
             N("MatMul", ["p", "v"], ["o4"]), N("Transpose", ["o4"], ["o3"], perm=[0, 2, 1, 3]),
             N("Reshape", ["o3", "merged"], ["y"])]
    for i, n in enumerate(nodes):
        n.name = f"n{i}_{n.op_type}"
    inits = [nh.from_array(np.array([b, s, heads, d], np.int64), "heads"),
             nh.from_array(np.array([b, s, e], np.int64), "merged"), nh.from_array(np.float32(d ** -0.5), "sc")]
    inputs = [h.make_tensor_value_info(n, T.FLOAT, [b, s, e]) for n in ["q0", "k0", "v0"]]
    g = h.make_graph(nodes, name, inputs, [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    folder = os.path.join(out, name)
    os.makedirs(os.path.join(folder, "test_data_set_0"), exist_ok=True)
    onnx.save(m, os.path.join(folder, "model.onnx"))
    feeds = {n: rng.standard_normal((b, s, e)).astype(np.float32) for n in ["q0", "k0", "v0"]}
    y = ort.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for i, n in enumerate(["q0", "k0", "v0"]):
        onnx.save_tensor(nh.from_array(feeds[n], n), os.path.join(folder, "test_data_set_0", f"input_{i}.pb"))
    onnx.save_tensor(nh.from_array(y, "y"), os.path.join(folder, "test_data_set_0", "output_0.pb"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/attn_cases"
    rng = np.random.default_rng(1)
    for seq in (128, 197, 512):
        make(out, f"seq{seq}", 1, seq, 768, 12, rng)


if __name__ == "__main__":
    main()
