#!/usr/bin/env python3
"""Int8 GEMM throughput beside float32, in one run: sinter's u8 x s8 product (a one-node
MatMulInteger model with constant int8 weights, through `sinter bench`), sinter's float32
product (a one-node MatMul), and ONNX Runtime running the same two models (ORT_ENABLE_ALL,
one thread). Prints a Markdown table of GOP/s (two operations per multiply-add) and the ratios
that matter: sinter int8 / sinter f32, and sinter / ORT for each type.

    /tmp/venv/bin/python scripts/bench_int8_gemm.py --sizes 1024 128x384x1536 --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def make_case(root, m, k, n, int8):
    rng = np.random.default_rng(0)
    if int8:
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        b = rng.integers(-127, 128, (k, n), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "b", "za"], ["y"])
        inits = [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(128, np.uint8), "za")]
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        inits = [numpy_helper.from_array(b, "b")]
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", a_type, [m, k])],
                              [helper.make_tensor_value_info("y", y_type, [m, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    os.makedirs(os.path.join(root, "test_data_set_0"), exist_ok=True)
    onnx.save(model, os.path.join(root, "model.onnx"))
    with open(os.path.join(root, "test_data_set_0", "input_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(a, "a").SerializeToString())
    return a


def sinter_us(repo, case, threads):
    out = subprocess.run(["cargo", "run", "--release", "-q", "-p", "sinter", "--", "bench", case, "--json",
                          "--iters", "20", "--warmup", "3", "--threads", str(threads)],
                         cwd=repo, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["median_us"]


def ort_us(case, a, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(os.path.join(case, "model.onnx"), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, {"a": a})
    t = []
    for _ in range(20):
        s = time.perf_counter()
        sess.run(None, {"a": a})
        t.append((time.perf_counter() - s) * 1e6)
    return statistics.median(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["1024"], help="N (cube) or MxKxN")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    args = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print("| shape | threads | sinter int8 GOP/s | sinter f32 GFLOP/s | int8/f32 | ORT int8 GOP/s | ORT f32 GFLOP/s | sinter/ORT int8 (throughput) | sinter/ORT f32 (throughput) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        dims = [int(v) for v in size.split("x")]
        m, k, n = dims * 3 if len(dims) == 1 else dims
        ops = 2.0 * m * k * n
        with tempfile.TemporaryDirectory() as tmp:
            cases = {}
            for kind in ("int8", "f32"):
                root = os.path.join(tmp, kind)
                cases[kind] = (root, make_case(root, m, k, n, kind == "int8"))
            for threads in args.threads:
                rates = {key: [] for key in ("si", "sf", "oi", "of")}
                for _ in range(args.rounds):
                    rates["si"].append(ops / sinter_us(repo, cases["int8"][0], threads) / 1e3)
                    rates["oi"].append(ops / ort_us(cases["int8"][0], cases["int8"][1], threads) / 1e3)
                    rates["sf"].append(ops / sinter_us(repo, cases["f32"][0], threads) / 1e3)
                    rates["of"].append(ops / ort_us(cases["f32"][0], cases["f32"][1], threads) / 1e3)
                med = {key: statistics.median(v) for key, v in rates.items()}
                spread = {key: f"{min(v):.0f}-{max(v):.0f}" for key, v in rates.items()}
                print(f"| {m}x{k}x{n} | {threads} | {med['si']:.0f} ({spread['si']}) | {med['sf']:.0f} ({spread['sf']}) | "
                      f"{med['si'] / med['sf']:.2f} | {med['oi']:.0f} ({spread['oi']}) | {med['of']:.0f} ({spread['of']}) | "
                      f"{med['si'] / med['oi']:.2f} | {med['sf'] / med['of']:.2f} |")


if __name__ == "__main__":
    main()
