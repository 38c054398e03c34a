#!/usr/bin/env python3
"""ONNX Runtime's throughput on one MatMul with constant weights (hot: the same session and
weights every call), at 1 and 2 threads, for the shapes of `sinter-rt`'s `products` example
(a transformer's projections). For scale beside
`cargo run --release -p sinter-rt --features std --example products [THREADS]`.

    /tmp/venv/bin/python scripts/bench_matmul_ort.py      (needs onnx, onnxruntime, numpy)
"""
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SHAPES = [(197, 768, 2304), (197, 768, 768), (197, 768, 3072), (197, 3072, 768), (128, 768, 768),
          (169, 512, 1000)]

for m, k, n in SHAPES:
    w = np.random.default_rng(0).random((k, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "W"], ["Y"])], "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    a = np.random.default_rng(1).random((m, k), dtype=np.float32)
    reps = int(2e9 / (2 * m * n * k)) + 1
    for threads in (1, 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                sess.run(None, {"A": a})
            best = min(best, (time.perf_counter() - t) / reps)
        print(f"{m} x {k} x {n}, {threads} thread(s): {2 * m * n * k / best / 1e9:.0f} GFLOP/s")
