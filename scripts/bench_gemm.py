#!/usr/bin/env python3
"""Single-thread f32 GEMM throughput: sinter's kernel (through a one-MatMul model and
`sinter bench`) beside numpy/OpenBLAS, in one run, as GFLOP/s and as a share of the core's
FMA peak (given with --peak-gflops, or estimated from /proc/cpuinfo's MHz and AVX-512).

    OPENBLAS_NUM_THREADS=1 /tmp/venv/bin/python scripts/bench_gemm.py --size 1024

With `--paired PAIRS` (for a machine whose speed drifts), the compiled model stays loaded
(`sinter bench --serve`, the binary given by `--sinter-bin`) and alternates with numpy in
blocks of 10 products, the order swapped every pair; the ratio is the median of the pairs'
ratios, with its interquartile range.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_ort import SinterServer, alternate  # noqa: E402


def numpy_block(a, b, runs):
    """The median seconds of `runs` products `a @ b`."""
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        a @ b
        t.append(time.perf_counter() - s)
    return statistics.median(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--peak-gflops", type=float, default=None)
    ap.add_argument("--paired", type=int, default=0, metavar="PAIRS",
                    help="alternate loaded blocks PAIRS times (see above)")
    ap.add_argument("--sinter-bin", default="target/release/sinter", help="with --paired: the sinter binary")
    args = ap.parse_args()
    n = args.size
    flops = 2.0 * n ** 3
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "g",
                                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
                                  [numpy_helper.from_array(b, "b")])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), os.path.join(tmp, "model.onnx"))
        os.makedirs(os.path.join(tmp, "test_data_set_0"))
        with open(os.path.join(tmp, "test_data_set_0", "input_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(a, "a").SerializeToString())
        sinter, numpy_t = [], []
        if args.paired:
            server = SinterServer([args.sinter_bin, "bench", tmp, "--serve", "--iters", "1", "--warmup", "3"])
            try:
                sinter, numpy_t = alternate((lambda: server.block(10) * 1e-6, lambda: numpy_block(a, b, 10)),
                                            args.paired, 30.0)
            finally:
                server.close()
        for _ in range(0 if args.paired else args.rounds):
            out = subprocess.run(["cargo", "run", "--release", "-q", "-p", "sinter", "--", "bench", tmp, "--json",
                                  "--iters", "10", "--warmup", "2"], cwd=root, check=True, capture_output=True, text=True).stdout
            sinter.append(json.loads(out.strip().splitlines()[-1])["median_us"] * 1e-6)
            t = []
            for _ in range(10):
                s = time.perf_counter(); a @ b; t.append(time.perf_counter() - s)
            numpy_t.append(sorted(t)[len(t) // 2])
    peak = args.peak_gflops
    if peak is None:
        mhz = max(float(l.split(":")[1]) for l in open("/proc/cpuinfo") if l.startswith("cpu MHz"))
        lanes = 16 if "avx512f" in open("/proc/cpuinfo").read() else 8
        peak = mhz * 1e-3 * lanes * 2 * 2  # GHz x lanes x 2 FLOP per FMA x 2 FMA units
    s_g = flops / sorted(sinter)[len(sinter) // 2] / 1e9
    n_g = flops / sorted(numpy_t)[len(numpy_t) // 2] / 1e9
    if args.paired:
        ratios = [y / x for x, y in zip(sinter, numpy_t)]
        q = statistics.quantiles(ratios, n=4, method="inclusive")
        print(f"sinter/OpenBLAS throughput, median of {args.paired} pairs: {statistics.median(ratios):.2f} "
              f"({q[0]:.2f}-{q[2]:.2f})")
    print(f"| {n}x{n}x{n} f32, 1 thread | sinter {s_g:.1f} GFLOP/s ({100 * s_g / peak:.0f}% of peak) | "
          f"numpy/OpenBLAS {n_g:.1f} GFLOP/s ({100 * n_g / peak:.0f}%) | sinter/OpenBLAS {s_g / n_g:.2f} | peak {peak:.0f} GFLOP/s |")


if __name__ == "__main__":
    main()
