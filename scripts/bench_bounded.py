#!/usr/bin/env python3
"""Bounded dims: one sinter build for every batch size up to a bound, beside the fixed-size
build and ONNX Runtime, on the folders `scripts/make_bounded_zoo.py` writes.

For each model and batch size B (folders NAME_nB), each round runs `sinter bench --json` on
the fixed build (`--dim N=B`) and on the bounded build (`--dim N<=MAX`, the same for every B),
and ONNX Runtime (one thread, ORT_ENABLE_ALL, the model's dynamic batch) on the same input,
then prints a markdown table: medians over rounds, the bounded/fixed ratio (the cost of not
knowing B when compiling) and the bounded time at B over its time at MAX (cost follows size).

    /tmp/venv/bin/python scripts/bench_bounded.py [--zoo /tmp/bounded_zoo] [--models resnet18,...]
        [--sizes 1,4,8] [--max 8] [--rounds 2] [--iters 10] [--dim-name N]

Several dims can take the size together (an image's height and width), beside fixed ones; PP-OCR
det (`scripts/make_bounded_hw.py --zoo /tmp/det_zoo` writes ppocr_det_n160, _n320 and _n640):

    /tmp/venv/bin/python scripts/bench_bounded.py --zoo /tmp/det_zoo --models ppocr_det
        --sizes 160,320,640 --max 640 --step 32
        --dim-name p2o.DynamicDimension.1,p2o.DynamicDimension.2 --fixed-dim p2o.DynamicDimension.0=1

Encoders with a run-time sequence length (`scripts/make_encoder_lengths.py /tmp/encoders
--size base` writes NAME_n32 and NAME_n128):

    /tmp/venv/bin/python scripts/bench_bounded.py --zoo /tmp/encoders --models distilbert_seq,bert_seq
        --sizes 32,128 --max 128 --dim-name seq
"""
import argparse, json, os, statistics, subprocess, time

import numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper as nh

ap = argparse.ArgumentParser()
ap.add_argument("--zoo", default="/tmp/bounded_zoo")
ap.add_argument("--models", default="resnet18,mobilenet_v3_small")
ap.add_argument("--sizes", default="1,4,8")
ap.add_argument("--max", type=int, default=8)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--iters", type=int, default=10)
ap.add_argument("--dim-name", default="N",
                help="the bounded dim (N for a batch, seq for encoders), or several, comma-separated, "
                     "that all take the size")
ap.add_argument("--fixed-dim", action="append", default=[], help="NAME=VALUE for every build")
ap.add_argument("--step", type=int, default=1, help="the bound's step (sizes are multiples of it)")
args = ap.parse_args()
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def sinter(case, dims, cache):
    # One cache folder per build, so that rounds (and the bounded build's sizes) reuse it.
    dim_args = [a for d in dims + args.fixed_dim for a in ("--dim", d)]
    out = subprocess.run(
        ["cargo", "run", "--release", "-q", "-p", "sinter", "--", "bench", "--json", *dim_args,
         "--iters", str(args.iters), "--warmup", "2", "--cache-dir",
         os.path.join(root, "target", "sinter-bench-bounded", cache), case],
        cwd=root, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["median_us"] / 1000


def onnxruntime(case):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(case, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    feeds = {
        i.name: nh.to_array(onnx.load_tensor(os.path.join(case, "test_data_set_0", f"input_{k}.pb")))
        for k, i in enumerate(sess.get_inputs())
    }
    for _ in range(2):
        sess.run(None, feeds)
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


sizes = [int(s) for s in args.sizes.split(",")]
rows = []
for model in args.models.split(","):
    results = {}
    for _ in range(args.rounds):
        for b in sizes:
            case = os.path.join(args.zoo, f"{model}_n{b}")
            names = args.dim_name.split(",")
            step = f":{args.step}" if args.step > 1 else ""
            fixed = [f"{d}={b}" for d in names]
            bounded = [f"{d}<={args.max}{step}" for d in names]
            for key, fn in [("fixed", lambda: sinter(case, fixed, f"{model}_fixed{b}")),
                            ("bounded", lambda: sinter(case, bounded, f"{model}_bounded")),
                            ("ort", lambda: onnxruntime(case))]:
                results.setdefault((b, key), []).append(fn())
    med = {k: statistics.median(v) for k, v in results.items()}
    spread = {k: (min(v), max(v)) for k, v in results.items()}
    top = med[(max(sizes), "bounded")]
    for b in sizes:
        f, bd, o = med[(b, "fixed")], med[(b, "bounded")], med[(b, "ort")]
        lo, hi = spread[(b, "bounded")]
        rows.append(f"| {model} | {b} | {f:.1f} | {bd:.1f} ({lo:.1f}-{hi:.1f}) | {bd / f:.2f} | "
                    f"{bd / top:.2f} | {o:.1f} | {bd / o:.2f} |")
print(f"| model | {args.dim_name} | fixed build ms | bounded build ({args.dim_name}<={args.max}) ms | bounded/fixed | "
      f"bounded at N / at {max(sizes)} | ORT ms | bounded/ORT |")
print("|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
